# mk/fuzz.mk: libFuzzer targets for every parser of outside input.
#
#   make fuzz [FUZZ_SECONDS=60]   run each target for FUZZ_SECONDS
#   make fuzz-regress             run each target over its seed corpus once
#                                 (part of `make test`)
#
# Seeds live in tests/fuzz/corpus/<target>/; what a run finds is kept in
# build-fuzz/corpus/<target>/ (never written back into the source tree).

FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_TARGETS := socks5 config certinfo cache
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_CFLAGS  := -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -Idetector/include -Idetector/lib $(PKG_CFLAGS)

# What each target parses, and the library files that brings in.
FUZZ_SRC_socks5   := detector/lib/socks5.c
FUZZ_SRC_config   := detector/lib/config.c detector/lib/exclude.c
FUZZ_SRC_certinfo := detector/lib/certinfo.c
FUZZ_SRC_cache    := detector/lib/cache.c

.PHONY: fuzz fuzz-build fuzz-regress
EXTRA_TESTS += fuzz-regress

fuzz-build: $(FUZZ_BINS)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard detector/lib/*.c detector/lib/*.h)
	@mkdir -p $(@D)
	@echo "  FUZZCC  $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) $(PKG_LIBS)

fuzz-regress: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	  if ! $(FUZZ_BUILD)/fuzz_$$t -runs=0 tests/fuzz/corpus/$$t \
	      >$(FUZZ_BUILD)/regress-$$t.log 2>&1; then \
	    cat $(FUZZ_BUILD)/regress-$$t.log; \
	    echo "fuzz-regress: fuzz_$$t failed on its corpus"; exit 1; \
	  fi; \
	done; echo "fuzz-regress: $(words $(FUZZ_TARGETS)) passed, 0 failed"

fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  if ! $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	      -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/ \
	      $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t \
	      >$(FUZZ_BUILD)/fuzz-$$t.log 2>&1; then \
	    tail -40 $(FUZZ_BUILD)/fuzz-$$t.log; exit 1; \
	  fi; \
	  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|#[0-9]+ +DONE" \
	    $(FUZZ_BUILD)/fuzz-$$t.log; \
	done
