# mk/bench.mk: DetecTor's performance, measured side by side on loopback.
#
#   make bench         build the benchmark programs and run bench/run.py:
#                      prints one table and writes bench/results.md with the
#                      machine's description (a few minutes on 2 cores; root,
#                      for the test world's sphere mount namespaces)
#   make bench-build   only build them, into $(BUILD)/bench
#   make bench-gateway a gateway's checks through the private Tor network
#                      (see below; GATEWAY_STEADY_SECONDS=600 by default)
#   make bench-first-visit
#                      where a first visit's time goes, before and after a
#                      change to detector-run (see below; about 3 minutes)
#
# Not part of `make test`.  bench/run.py says what each figure is; it
# imports the test world (tests/testworld), hence PYTHONPATH.

BENCH_BIN    := $(BUILD)/bench
# Drivers of the engine: check_latency through detector.h like any
# program; probe_scale and cache_bench measure internal modules, with the
# internal headers of detector/lib.
BENCH_ENGINE := $(BENCH_BIN)/check_latency
BENCH_INTERNAL := $(BENCH_BIN)/probe_scale $(BENCH_BIN)/cache_bench
BENCH_PROGS  := $(BENCH_BIN)/tls_server $(BENCH_BIN)/hsclient $(BENCH_ENGINE) \
                $(BENCH_INTERNAL)

.PHONY: bench bench-build bench-deps

bench: deps bench-deps
	$(MAKE) all
	$(MAKE) bench-build
	DETECTOR_BUILD=$(abspath $(BUILD)) PYTHONPATH=$(CURDIR)/tests $(PYTHON) bench/run.py

bench-deps:
	@scripts/install-deps.sh bench/debian-packages.txt

bench-build: $(BENCH_PROGS)

# The TLS server the benchmarks measure against: OpenSSL only.
$(BENCH_BIN)/tls_server: bench/tls_server.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs openssl)

# An unmodified NSS application: links the system NSS only, so that
# detector-run can swap in the enhanced libssl3.so.
$(BENCH_BIN)/hsclient: bench/hsclient.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs nss nspr)

# make bench-first-visit: where a first visit's time goes (issue 16 items
# 5 and 7), before and after a change: OTHER_RUN names the other
# detector-run (default: main's), OTHER_LIB the folder of the other
# libssl3.so and libdetector.so.0 (default: this build's; e.g. a copy of
# main's build/lib).  bench/first_visit.py says how;
# prints a table and writes its section of bench/results.md.  Root; about
# 3 minutes.  Not part of make test.
OTHER_RUN ?=
OTHER_LIB ?=
FIRST_VISIT_MAIN := $(BENCH_BIN)/detector-run.main

.PHONY: bench-first-visit
bench-first-visit: deps bench-deps
	$(MAKE) all
	$(MAKE) bench-build
	o='$(OTHER_RUN)'; [ -n "$$o" ] || { git show main:detector/tools/detector-run \
	  >$(FIRST_VISIT_MAIN) 2>/dev/null && o=$(abspath $(FIRST_VISIT_MAIN)); }; \
	OTHER_RUN=$$o OTHER_LIB='$(OTHER_LIB)' DETECTOR_BUILD=$(abspath $(BUILD)) \
	  FIRST_VISIT_OUT=$(CURDIR)/bench/results.md \
	  PYTHONPATH=$(CURDIR)/tests $(PYTHON) bench/first_visit.py

$(BENCH_ENGINE): $(BENCH_BIN)/%: bench/%.c $(LIB_A) \
    $(wildcard detector/include/*.h)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(PKG_LIBS)

$(BENCH_INTERNAL): $(BENCH_BIN)/%: bench/%.c $(LIB_A) \
    $(wildcard detector/include/*.h detector/lib/*.h)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(INTERNAL_CFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(PKG_LIBS)

# make bench-gateway: a gateway's checks through the private Tor network
# (tests/tornet/measure_gateway.py says what and how): checks/s, verdict
# p50/p95/p99 and tor CPU per check at 1-128 checks in flight, with and
# without the engine's admission control, a steady run at saturation of
# GATEWAY_STEADY_SECONDS (in one-minute chunks), and 1 vs 2 tor processes
# per sphere.  Writes its section of bench/results.md.  Root (private
# namespaces); about 6 minutes plus the steady run.  Not part of make test.
GATEWAY_STEADY_SECONDS ?= 600

.PHONY: bench-gateway
bench-gateway: deps bench-deps
	$(MAKE) all
	$(MAKE) bench-build
	GATEWAY_STEADY_SECONDS=$(GATEWAY_STEADY_SECONDS) \
	  DETECTOR_BUILD=$(abspath $(BUILD)) PYTHONPATH=$(CURDIR)/tests \
	  timeout --kill-after=30 $$(( $(GATEWAY_STEADY_SECONDS) + 1800 )) \
	  $(PYTHON) -m testworld.tornet isolate -- \
	  $(PYTHON) tests/tornet/measure_gateway.py
