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

THUNDERBIRD_DESCRIPTOR = $(firstword $(shell awk '$$1 == "app" && $$2 == "thunderbird" { print FILENAME; exit }' coreleases/*.bundled 2>/dev/null))
THUNDERBIRD_VERSION    = $(shell awk '$$1 == "app" && $$2 == "thunderbird" { print $$3; exit }' coreleases/*.bundled 2>/dev/null)

thunderbird-deps:
	@set -e; want='$(THUNDERBIRD_VERSION)'; \
	if [ -z "$$want" ]; then \
	  echo "thunderbird-deps: no coreleases/*.bundled names thunderbird; not installing it"; exit 0; \
	fi; \
	have=$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Version}' thunderbird 2>/dev/null | awk '$$1 == "ii" { print $$2 }'); \
	if [ "$$have" = "$$want" ]; then \
	  echo "thunderbird-deps: thunderbird $$want installed ($(THUNDERBIRD_DESCRIPTOR))"; exit 0; \
	fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "thunderbird-deps: thunderbird $${have:-not installed}; the co-release $(THUNDERBIRD_DESCRIPTOR) is for $$want: run 'make deps' as root to install it"; exit 0; \
	fi; \
	if ! apt-cache madison thunderbird | awk -F'|' '{ gsub(/ /, "", $$2); print $$2 }' | grep -qxF "$$want"; then \
	  echo "thunderbird-deps: Debian's archive no longer serves thunderbird $$want (the version $(THUNDERBIRD_DESCRIPTOR) is for; it serves: $$(apt-cache madison thunderbird | awk -F'|' '{ gsub(/ /, "", $$2); printf "%s ", $$2 }'))"; \
	  echo "thunderbird-deps: keeping thunderbird $${have:-not installed}; make test-thunderbird will skip until a descriptor for a served version exists (coreleases/README.md)"; \
	  exit 0; \
	fi; \
	echo "thunderbird-deps: installing thunderbird=$$want (co-release $(THUNDERBIRD_DESCRIPTOR))"; \
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y \
	  --no-install-recommends --allow-downgrades "thunderbird=$$want"

test-thunderbird: corelease $(BUILD)/lib/libdetector.so.0
	cd tests/thunderbird && DETECTOR_BUILD=$(abspath $(BUILD)) \
	  DETECTOR_CORELEASE_BUILD=$(abspath $(CORELEASE_BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs test_thunderbird.py
