# mk/thunderbird.mk: Debian's Thunderbird, unmodified, with DetecTor's
# co-release libssl3.so (mk/corelease.mk), tested as a mail user meets it.
#
#   make test-thunderbird   headless thunderbird (Marionette, chrome context)
#                           with an IMAP account (implicit TLS) against a real
#                           dovecot on loopback, through the test world's
#                           rogue-CA MITM: stock Thunderbird fetches the mail,
#                           the co-release refuses the MITM (no IMAP command
#                           reaches the server), the clean path fetches it
#                           (tests/thunderbird/test_thunderbird.py, ~40 s;
#                           the same over STARTTLS)
#   make thunderbird-deps   (part of `make deps`) installs thunderbird at the
#                           version of its coreleases/*.bundled descriptor
#                           when Debian's archive serves it, and says why not
#                           else
#
# When the installed thunderbird has no co-release, the test skips loudly,
# naming the missing co-release and the NSS version Thunderbird bundles.
# Nothing under /usr is changed: the test runs a copy of Thunderbird's folder.

.PHONY: test-thunderbird thunderbird-deps
EXTRA_TESTS += test-thunderbird
deps: thunderbird-deps

thunderbird-deps:
	@scripts/bundled-app-deps.sh thunderbird test-thunderbird

test-thunderbird: corelease $(BUILD)/lib/libdetector.so.0
	cd tests/thunderbird && DETECTOR_BUILD=$(abspath $(BUILD)) \
	  DETECTOR_CORELEASE_BUILD=$(abspath $(CORELEASE_BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs test_thunderbird.py
