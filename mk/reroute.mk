# mk/reroute.mk: rerouting through a sphere (docs/reroute.md).
#
# $(BUILD)/tests/reroute_driver drives libdetector's public reroute entry
# points end to end with NSS, as the patched libssl will:
# tests/integration/test_reroute.py runs it (in `make integration`, so in
# `make test` and again under ASan/UBSan in `make test-asan`).

REROUTE_DRIVER := $(BUILD)/tests/reroute_driver

all: $(REROUTE_DRIVER)

$(REROUTE_DRIVER): tests/hook/reroute_driver.c $(LIB_A)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(PKG_LIBS)
