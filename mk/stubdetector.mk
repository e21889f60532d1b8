# mk/stubdetector.mk: a stand-in for libdetector, for tests of the patched
# libssl's side alone.
#
# $(BUILD)/tests/libstubdetector.so answers every check after
# STUB_DELAY_MS (default 1) from a thread of its own, accepting; loaded
# through NSS_DETECTOR_LIBRARY and LD_PRELOAD (its PR_Poll times the
# handover).  tests/integration/test_nss_hook_wake.py uses it to time the
# handover from the verdict to the waiting handshake without probes.

STUBDETECTOR := $(BUILD)/tests/libstubdetector.so

all: $(STUBDETECTOR)

$(STUBDETECTOR): tests/hook/stubdetector.c detector/include/detector_nss.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -Idetector/include -fPIC -shared -o $@ $< \
	  $(LDFLAGS) $(shell pkg-config --cflags --libs nspr) -ldl -lpthread
