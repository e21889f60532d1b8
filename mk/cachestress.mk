# mk/cachestress.mk: the verdict cache under many processes at once.
#
# $(BUILD)/tests/cachestress forks N processes that open one cache together
# and read and write through libdetector's cache API (cache.h);
# tests/integration/test_cache_stress.py runs it in `make test`.

CACHESTRESS := $(BUILD)/tests/cachestress

all: $(CACHESTRESS)

$(CACHESTRESS): tests/hook/cachestress.c $(LIB_A)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(PKG_LIBS)
