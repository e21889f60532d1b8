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

FIREFOX_DESCRIPTOR = $(firstword $(shell awk '$$1 == "app" && $$2 == "firefox-esr" { print FILENAME; exit }' coreleases/*.bundled 2>/dev/null))
FIREFOX_VERSION    = $(shell awk '$$1 == "app" && $$2 == "firefox-esr" { print $$3; exit }' coreleases/*.bundled 2>/dev/null)

firefox-deps:
	@set -e; want='$(FIREFOX_VERSION)'; \
	if [ -z "$$want" ]; then \
	  echo "firefox-deps: no coreleases/*.bundled names firefox-esr; not installing it"; exit 0; \
	fi; \
	have=$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Version}' firefox-esr 2>/dev/null | awk '$$1 == "ii" { print $$2 }'); \
	if [ "$$have" = "$$want" ]; then \
	  echo "firefox-deps: firefox-esr $$want installed ($(FIREFOX_DESCRIPTOR))"; exit 0; \
	fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "firefox-deps: firefox-esr $${have:-not installed}; the co-release $(FIREFOX_DESCRIPTOR) is for $$want: run 'make deps' as root to install it"; exit 0; \
	fi; \
	if ! apt-cache madison firefox-esr | awk -F'|' '{ gsub(/ /, "", $$2); print $$2 }' | grep -qxF "$$want"; then \
	  echo "firefox-deps: Debian's archive no longer serves firefox-esr $$want (the version $(FIREFOX_DESCRIPTOR) is for; it serves: $$(apt-cache madison firefox-esr | awk -F'|' '{ gsub(/ /, "", $$2); printf "%s ", $$2 }'))"; \
	  echo "firefox-deps: keeping firefox-esr $${have:-not installed}; make test-firefox will skip until a descriptor for a served version exists (coreleases/README.md)"; \
	  exit 0; \
	fi; \
	echo "firefox-deps: installing firefox-esr=$$want (co-release $(FIREFOX_DESCRIPTOR))"; \
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y \
	  --no-install-recommends --allow-downgrades "firefox-esr=$$want"

test-firefox: corelease
	cd tests/firefox && DETECTOR_BUILD=$(abspath $(BUILD)) \
	  DETECTOR_CORELEASE_BUILD=$(abspath $(CORELEASE_BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs test_deploy.py test_firefox.py
