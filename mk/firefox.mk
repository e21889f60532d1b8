# mk/firefox.mk: Debian's Firefox ESR, unmodified, with DetecTor's co-release
# libssl3.so (mk/corelease.mk), tested as a user would see it.
#
#   make test-firefox    headless firefox-esr through the test world's
#                        rogue-CA MITM: stock Firefox loads the page, the
#                        co-release refuses it, the clean path loads
#                        (tests/firefox/test_firefox.py; the screenshots go
#                        to tests/firefox/output/)
#                        (and tests/firefox/test_deploy.py: detector-deploy
#                        against a fake root)
#   make firefox-deps    (part of `make deps`) installs firefox-esr at the
#                        version of its coreleases/*.bundled descriptor when
#                        Debian's archive serves it, and says why not else
#
# When the installed firefox-esr has no co-release, the test skips loudly,
# naming the missing co-release and the NSS version that Firefox bundles.
# Nothing under /usr is changed: the test runs a copy of Firefox's folder.

.PHONY: test-firefox firefox-deps
EXTRA_TESTS += test-firefox
deps: firefox-deps

firefox-deps:
	@scripts/bundled-app-deps.sh firefox-esr test-firefox

test-firefox: corelease
	cd tests/firefox && DETECTOR_BUILD=$(abspath $(BUILD)) \
	  DETECTOR_CORELEASE_BUILD=$(abspath $(CORELEASE_BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs test_deploy.py test_firefox.py
