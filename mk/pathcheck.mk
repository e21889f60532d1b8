# mk/pathcheck.mk: $(BUILD)/tests/pathcheck, a long-running client of
# libdetector's public API (detector_fetch + detector_check_path for
# several direct addresses in one process), as a gateway would be:
# tests/integration/test_backoff_staple.py runs it (in `make integration`,
# so also under ASan/UBSan in `make test-asan`).

PATHCHECK := $(BUILD)/tests/pathcheck

all: $(PATHCHECK)

$(PATHCHECK): tests/hook/pathcheck.c $(LIB_A)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(PKG_LIBS)
