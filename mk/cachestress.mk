# mk/cachestress.mk: the verdict cache under many processes at once.
#
# $(BUILD)/tests/cachestress forks N processes that open one cache together
# and read and write through libdetector's internal cache API (cache.h, a
# test driver of an internal module: INTERNAL_CFLAGS);
# tests/integration/test_cache_stress.py runs it in `make test`.

CACHESTRESS := $(BUILD)/tests/cachestress

all: $(CACHESTRESS)

$(CACHESTRESS): tests/hook/cachestress.c $(LIB_A)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(INTERNAL_CFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(PKG_LIBS)
