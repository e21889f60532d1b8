# mk/corelease.mk: drop-in libssl3.so for the NSS an application bundles
# (Firefox ESR and Thunderbird ship their own NSS in /usr/lib/<app>/ and load
# it by absolute path, so the system drop-in of mk/nss.mk never reaches them).
#
#   make corelease                      every coreleases/*.bundled whose
#                                       application is installed at the
#                                       descriptor's version
#   make corelease CORELEASE=coreleases/X.bundled   just that one
#   make test-corelease                 also the preparation's failure paths
#
# For each: scripts/corelease-prepare.sh fetches the application's Debian
# source once per machine, verifies it, extracts NSS's lib/ssl and headers and
# applies the descriptor's series; mk/nss.mk's rules compile and link it
# (make nss-compile with NSS_BUILD and NSS_VARS); tests/nss/test_corelease.py
# proves the result is a drop-in for the application's own libssl3.so.
# Output: build/corelease/<descriptor name>/lib/libssl3.so. Not part of
# `make test` (the first run downloads and unpacks a 683 MB tarball).
# docs/nss-build.md, "Co-releases for application-bundled NSS".

CORELEASE       ?=
CORELEASE_BUILD ?= build/corelease

.PHONY: corelease test-corelease

# The drop-in checks run as part of corelease; this adds the failure paths
# of the preparation (offline: wrong checksum, unknown key, application
# missing).
test-corelease: corelease
	$(PYTHON) tests/nss/test_corelease_prepare.py

corelease:
	@set -e; list='$(CORELEASE)'; \
	if [ -z "$$list" ]; then \
	  list=$$(scripts/corelease-prepare.sh --installed); \
	  if [ -z "$$list" ]; then \
	    echo "corelease: no application a coreleases/*.bundled descriptor is for is installed at its version; nothing to build"; \
	    awk '$$1 == "app" { printf "corelease:   %s: apt-get install --no-install-recommends %s=%s\n", FILENAME, $$2, $$3 }' coreleases/*.bundled; \
	    exit 0; \
	  fi; \
	fi; \
	for d in $$list; do \
	  b=$(CORELEASE_BUILD)/$$(basename "$$d" .bundled); \
	  t0=$$(date +%s); \
	  scripts/corelease-prepare.sh "$$d" "$$b"; \
	  t1=$$(date +%s); \
	  $(MAKE) --no-print-directory nss-compile NSS_BUILD="$$b" NSS_VARS="$$b/vars.mk"; \
	  t2=$$(date +%s); \
	  echo "corelease: $$b/lib/libssl3.so (prepare $$((t1 - t0)) s, build $$((t2 - t1)) s)"; \
	  $(PYTHON) tests/nss/test_corelease.py "$$d" "$$b/lib/libssl3.so"; \
	done
