# mk/nss-gtest.mk: NSS's own SSL test suite as the gate for a co-release.
#
#   make test-nss-gtest   build gtests/ssl_gtest from the co-release's NSS
#                         source twice (as Debian released it, and with the
#                         current nss-patches series) and run it three ways:
#                         unpatched; patched without libdetector; patched
#                         with libdetector loaded but every host excluded.
#                         Fails unless every test ends the same way in all
#                         three.  scripts/nss-gtest.sh; docs/testing.md has
#                         the counts and what it costs.
#
# Not part of `make test`: on a fresh 2-core machine the first run costs
# far more than `make test` can spare (docs/testing.md, "NSS's own test
# suite").  Run it before every co-release (docs/nss-build.md).
#
#   make test-nss-gtest NSS_GTEST_FILTER='*Ech*'   only some tests

NSS_GTEST_FILTER ?= *

.PHONY: test-nss-gtest nss-gtest-deps

nss-gtest-deps:
	@scripts/install-deps.sh mk/nss-gtest-packages.txt

# libdetector from the plain build (an ASan one cannot be loaded into the
# uninstrumented ssl_gtest), whatever BUILD says.
test-nss-gtest: deps nss-gtest-deps nss
	$(MAKE) --no-print-directory BUILD=build SANITIZE= build/lib/libdetector.so.0
	scripts/nss-gtest.sh --filter='$(NSS_GTEST_FILTER)'
