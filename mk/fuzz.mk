# mk/fuzz.mk: libFuzzer targets for every parser of outside input.
#
#   make fuzz [FUZZ_SECONDS=60]   run each target for FUZZ_SECONDS
#                                 (FUZZ_SECONDS_<target> for one target)
#                                 (-j2: two targets at once)
#                                 FUZZ_FLAGS / FUZZ_FLAGS_<target>: more
#                                 libFuzzer flags (-fork=2: two processes
#                                 for one slow target)
#   make fuzz-regress             run each target over its seed corpus once
#                                 (part of `make test`)
#
# Seeds live in tests/fuzz/corpus/<target>/; what a run finds is kept in
# build-fuzz/corpus/<target>/ (never written back into the source tree).

FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_TARGETS := socks5 config certinfo cache starttls host
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_CFLAGS  := -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -Idetector/include -Idetector/lib -Idetector/common $(PKG_CFLAGS)

# What each target parses, and the library files that brings in.
FUZZ_SRC_socks5   := detector/lib/socks5.c
FUZZ_SRC_config   := detector/lib/config.c detector/lib/filetrust.c detector/lib/exclude.c \
                     detector/lib/starttls.c detector/lib/host.c detector/lib/errmsg.c \
                     detector/common/inireader.c
FUZZ_SRC_certinfo := detector/lib/certinfo.c
FUZZ_SRC_cache    := detector/lib/cache.c detector/lib/filetrust.c detector/lib/errmsg.c
FUZZ_SRC_starttls := detector/lib/starttls.c
FUZZ_SRC_host     := detector/lib/host.c detector/lib/errmsg.c

.PHONY: fuzz fuzz-build fuzz-regress
EXTRA_TESTS += fuzz-regress

fuzz-build: $(FUZZ_BINS)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard detector/lib/*.c detector/lib/*.h detector/common/*.[ch])
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

# Each target is its own job: `make -j2 fuzz` runs two at once.  The last
# lines of each log are libFuzzer's totals (executions, cov:, ft:, time).
# (Recipes expand after every fragment is read, so targets appended to
# FUZZ_TARGETS anywhere are run too.)
fuzz: $(FUZZ_BINS)
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=fuzz-run-%)
	@for t in $(FUZZ_TARGETS); do \
	  printf 'fuzz_%-10s %s %s\n' $$t \
	    "$$(grep -E '^Done [0-9]+ runs|^#[0-9]+: cov' \
	      $(FUZZ_BUILD)/fuzz-$$t.log | tail -1 | cut -d' ' -f1-5)" \
	    "$$(grep -oE 'cov: [0-9]+ ft: [0-9]+' $(FUZZ_BUILD)/fuzz-$$t.log | \
	      tail -1)"; \
	done

.PHONY: fuzz-force
fuzz-run-%: $(FUZZ_BUILD)/fuzz_% fuzz-force
	@mkdir -p $(FUZZ_BUILD)/corpus/$*
	@echo "== fuzz_$* for $(or $(FUZZ_SECONDS_$*),$(FUZZ_SECONDS)) s"
	@start=$$(date +%s); \
	if ! $(FUZZ_BUILD)/fuzz_$* -max_total_time=$(or $(FUZZ_SECONDS_$*),$(FUZZ_SECONDS)) \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/ \
	    $(FUZZ_FLAGS) $(FUZZ_FLAGS_$*) \
	    $(FUZZ_BUILD)/corpus/$* tests/fuzz/corpus/$* \
	    >$(FUZZ_BUILD)/fuzz-$*.log 2>&1; then \
	  tail -40 $(FUZZ_BUILD)/fuzz-$*.log; exit 1; \
	fi; \
	echo "fuzz_$*: $$(( $$(date +%s) - start )) s"; \
	grep -E "^Done [0-9]+ runs|^#[0-9]+: cov" $(FUZZ_BUILD)/fuzz-$*.log | tail -1

# detector-monitor: its configuration file and its state file.
FUZZ_TARGETS += monitor_config monitor_history
FUZZ_SRC_monitor_config  := detector/monitor/mconfig.c detector/lib/config.c detector/lib/filetrust.c \
                            detector/lib/exclude.c detector/lib/certinfo.c \
                            detector/lib/starttls.c detector/lib/host.c detector/lib/errmsg.c \
                            detector/common/inireader.c
FUZZ_SRC_monitor_history := detector/monitor/history.c detector/monitor/assess.c \
                            detector/monitor/mconfig.c detector/lib/config.c detector/lib/filetrust.c \
                            detector/lib/exclude.c \
                            detector/lib/certinfo.c detector/lib/starttls.c \
                            detector/lib/host.c detector/lib/errmsg.c \
                            detector/common/inireader.c detector/common/cli.c
FUZZ_MONITOR_BINS := $(FUZZ_BUILD)/fuzz_monitor_config $(FUZZ_BUILD)/fuzz_monitor_history
fuzz-build fuzz fuzz-regress: $(FUZZ_MONITOR_BINS)
$(FUZZ_MONITOR_BINS): $(wildcard detector/monitor/*.c detector/monitor/*.h)

# Stapled OCSP responses (staple.c's DER walker).  Seeds: responses made by
# `openssl ocsp` and python3-cryptography (tests/testworld/ocsp.py).
FUZZ_TARGETS += ocsp
FUZZ_SRC_ocsp := detector/lib/staple.c detector/lib/certinfo.c
FUZZ_OCSP_BIN := $(FUZZ_BUILD)/fuzz_ocsp
fuzz-build fuzz fuzz-regress: $(FUZZ_OCSP_BIN)
$(FUZZ_OCSP_BIN): tests/fuzz/ocsp_pki.h
