# Hardening: leaks under valgrind, the soak.  (The fault matrix is
# tests/integration/test_faults.py, part of `make integration`; fuzzing is
# mk/fuzz.mk.)  See docs/testing.md.
#
#   make test-leaks   unmodified NSS clients (tstclnt, nbclient) under the
#                     enhanced libssl3.so, run by valgrind: a clean
#                     handshake, a MITM refusal, a persistent-cache hit,
#                     an in-process repeat; no error and no leak (a minute)
#   make test-soak    a short soak (SOAK_TEST_SEQ sequential, SOAK_TEST_CONC
#                     concurrent handshakes) in one NSS process: fds, RSS,
#                     threads stable
#   make soak         the full soak: SOAK_SEQ=10000 sequential and
#                     SOAK_CONC=1000 concurrent handshakes (a few minutes)

SOAK_SEQ       ?= 10000
SOAK_CONC      ?= 1000
SOAK_TEST_SEQ  ?= 1500
SOAK_TEST_CONC ?= 200
SOAKCLIENT     := $(BUILD)/tests/soakclient

.PHONY: test-leaks test-soak soak
EXTRA_TESTS += test-leaks test-soak

# An unmodified NSS application: links the system NSS only.
$(SOAKCLIENT): tests/soak/soakclient.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs nss nspr)

test-leaks: all
	cd tests/integration && DETECTOR_LEAK_CHECK=1 \
	  DETECTOR_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs test_leaks.py

test-soak: all $(SOAKCLIENT)
	cd tests/integration && DETECTOR_SOAK=$(SOAK_TEST_SEQ),$(SOAK_TEST_CONC) \
	  DETECTOR_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs -s test_soak.py

soak: all $(SOAKCLIENT)
	cd tests/integration && DETECTOR_SOAK=$(SOAK_SEQ),$(SOAK_CONC) \
	  DETECTOR_SOAK_REPORT=$(abspath $(BUILD))/soak-report.txt \
	  DETECTOR_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs -s test_soak.py
