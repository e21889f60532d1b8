# DetecTor: the one entry point.
#
#   make deps    install the Debian packages the project needs (root)
#   make         build libdetector, its tools and the tests
#   make test    run every test (unit + integration), after deps and build
#   make demo    the main job: detect a real MITM on loopback, through real Tor
#   make asan    build everything with AddressSanitizer + UBSan into build-asan/
#
# Fragments in mk/*.mk add further targets (NSS build, Tor network, ...).

PYTHON   ?= /usr/bin/python3
BUILD    ?= build
SANITIZE ?=

PKGS     := nss nspr inih jansson lmdb
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC       ?= cc
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
            -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -fPIC \
            -fvisibility=hidden -Idetector/include -Idetector/common $(PKG_CFLAGS)
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

# Programs see libdetector through detector/include/detector.h only.  The
# library itself (the engine in detector/lib, the NSS integration in
# detector/nss), and the unit tests, fuzzers and micro-benchmarks of its
# internal modules, also see its private headers.
INTERNAL_CFLAGS = $(CFLAGS) -Idetector/lib -Idetector/nss

# detector/common: small files shared by the library and the programs that
# are no part of the API (the INI line reader, the monotonic clock; the
# tools' helpers).
LIB_SRCS := $(wildcard detector/lib/*.c detector/nss/*.c) \
            detector/common/inireader.c detector/common/monotonic.c
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB_A    := $(BUILD)/libdetector.a
LIB_SO   := $(BUILD)/libdetector.so.0

TOOLS    := $(BUILD)/sphere-probe $(BUILD)/detector-run $(BUILD)/tests/nbclient \
            $(BUILD)/tests/asyncclient $(BUILD)/tests/gluefork \
            $(BUILD)/tests/gluequeue \
            $(BUILD)/tests/purple_client \
            $(BUILD)/detector-monitor
# What detector-run puts first on LD_LIBRARY_PATH: the enhanced libssl3.so
# (mk/nss.mk) next to libdetector.so.0.
RUNLIBS  := $(BUILD)/lib/libssl3.so $(BUILD)/lib/libdetector.so.0

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test unit integration demo asan test-asan clean
all: $(LIB_A) $(LIB_SO) $(TOOLS) $(UNIT_TESTS) $(RUNLIBS)

deps:
	@scripts/install-deps.sh mk/debian-packages.txt

# `make V=1` shows the full commands.
Q := $(if $(V),,@)

$(LIB_OBJS): $(BUILD)/%.o: %.c $(wildcard detector/include/*.h detector/lib/*.h detector/nss/*.h detector/common/*.h)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(INTERNAL_CFLAGS) -c -o $@ $<

$(BUILD)/detector/tools/%.o: detector/tools/%.c $(wildcard detector/include/*.h detector/common/*.h)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# The command-line tools' shared helpers (die, numbers, times).
CLI_OBJ := $(BUILD)/detector/common/cli.o
$(CLI_OBJ): detector/common/cli.c $(wildcard detector/include/*.h detector/common/*.h)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# detector-monitor: every file but main.c in an archive, which main.c and
# the monitor's unit tests link.
MON_SRCS := $(filter-out detector/monitor/main.c,$(wildcard detector/monitor/*.c))
MON_OBJS := $(MON_SRCS:%.c=$(BUILD)/%.o)
MON_A    := $(BUILD)/libdetector-monitor.a
$(BUILD)/detector/monitor/%.o: detector/monitor/%.c $(wildcard detector/include/*.h detector/common/*.h detector/monitor/*.h)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# The monitor's own copy of the INI reader and the clock: libdetector.so.0
# (TOOLS_LIB=shared, the Debian package) exports only the public API.
$(MON_A): $(MON_OBJS) $(CLI_OBJ) $(BUILD)/detector/common/inireader.o \
          $(BUILD)/detector/common/monotonic.o
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(LIB_A): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,-soname,libdetector.so.0 -Wl,-z,defs -o $@ $^ $(LDFLAGS) $(PKG_LIBS)
	ln -sf libdetector.so.0 $(BUILD)/libdetector.so

# The tools link libdetector statically by default (the tests and the
# sanitizer build run them from build/ with no library path); TOOLS_LIB=shared
# links them against libdetector.so.0 instead, as the Debian package does
# (debian/rules): one copy of the library, in libdetector0, for every program.
TOOLS_LIBDETECTOR := $(if $(filter shared,$(TOOLS_LIB)),$(LIB_SO),$(LIB_A))

$(BUILD)/sphere-probe: $(BUILD)/detector/tools/sphere-probe.o $(CLI_OBJ) $(TOOLS_LIBDETECTOR)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/detector-monitor: $(BUILD)/detector/monitor/main.o $(MON_A) $(TOOLS_LIBDETECTOR)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

# Copied atomically (rename): a program running from build/lib while make
# runs must never map a half-written library.
$(BUILD)/lib/libdetector.so.0: $(LIB_SO)
	@mkdir -p $(@D)
	cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/lib/libssl3.so: nss
	@mkdir -p $(@D)
	@cmp -s $(NSS_SSL_SO) $@ || { cp $(NSS_SSL_SO) $@.tmp && mv -f $@.tmp $@; }
	@cp $(NSS_SSL_SO).built-for $@.built-for.tmp && mv -f $@.built-for.tmp $@.built-for
	@$(call CHECKED_AGAINST,$@)

# libssl3.so.checked-against: detector-run's cheap check that the system's
# libnss3 is still the built-for version (see detector-run).  Written only
# when dpkg says so (fully installed), with the time of the libnss3.so file
# it vouches for, taken before asking and compared again after.
NSS_LIBNSS3 := $(shell pkg-config --variable=libdir nss)/libnss3.so
define CHECKED_AGAINST
rm -f $(1).checked-against; \
v=$$(cat $(1).built-for); n=$(NSS_LIBNSS3); t=$(1).checked-against.tmp; \
printf '%s\n%s\n' "$$v" "$$n" >$$t && touch -r $$n $$t && \
[ "$$(dpkg-query -W -f='$${db:Status-Abbrev}$${Version}' \
  libnss3:$$(dpkg --print-architecture) 2>/dev/null)" = "ii $$v" ] && \
[ ! $$n -nt $$t ] && [ ! $$n -ot $$t ] && mv -f $$t $(1).checked-against || \
{ rm -f $$t; echo "note: libnss3 is not $$v: detector-run will ask dpkg at every start"; }
endef

$(BUILD)/detector-run: detector/tools/detector-run
	install -m 0755 $< $@

# An unmodified NSS application: links the system NSS only.
$(BUILD)/tests/nbclient: tests/hook/nbclient.c tests/hook/fetch.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs nss nspr)

# An asynchronous-authentication NSS application (as Firefox): system NSS only.
$(BUILD)/tests/asyncclient: tests/hook/asyncclient.c tests/hook/fetch.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs nss nspr)

# libdetector's NSS interface across fork() (loads the library itself).
$(BUILD)/tests/gluefork: tests/hook/gluefork.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs nss nspr) -ldl -lpthread

# libdetector's NSS interface with more checks than workers.
$(BUILD)/tests/gluequeue: tests/hook/gluequeue.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs nss nspr) -ldl -lpthread

# A Pidgin-family application: libpurple's TLS through its ssl-nss.so plugin,
# which links the system NSS.  The driver itself links NSPR only to print
# the NSS error code libpurple does not report.
PURPLE_PKGS := purple glib-2.0 nspr
$(BUILD)/tests/purple_client: tests/hook/purple_client.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) $(shell pkg-config --cflags $(PURPLE_PKGS)) \
	  -DPURPLE_PLUGIN_DIR='"$(shell pkg-config --variable=plugindir purple)"' \
	  -o $@ $< $(LDFLAGS) $(shell pkg-config --libs $(PURPLE_PKGS))

# Every unit test links the shared fixture (temporary folder, files, NSS).
UNIT_FIXTURE := $(BUILD)/tests/fixture.o
$(UNIT_FIXTURE): tests/unit/fixture.c tests/unit/fixture.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# The monitor's unit tests link its archive.
$(BUILD)/tests/test_monitor_%: tests/unit/test_monitor_%.c $(MON_A) $(LIB_A) $(UNIT_FIXTURE) tests/unit/fixture.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(UNIT_FIXTURE) $(MON_A) $(LIB_A) $(LDFLAGS) $(PKG_LIBS) -lcmocka

$(BUILD)/tests/test_%: tests/unit/test_%.c $(LIB_A) $(UNIT_FIXTURE) tests/unit/fixture.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(INTERNAL_CFLAGS) -o $@ $< $(UNIT_FIXTURE) $(LIB_A) $(LDFLAGS) $(PKG_LIBS) -lcmocka

unit: $(UNIT_TESTS)
	@fail=0; for t in $(UNIT_TESTS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

integration: all
	cd tests/integration && DETECTOR_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs .

# Fragments in mk/*.mk append further test targets to EXTRA_TESTS.
EXTRA_TESTS ?=
test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) test-asan
	@for t in $(EXTRA_TESTS); do $(MAKE) $$t || exit 1; done

# The whole unit + integration suite again with ASan/UBSan (leaks included).
test-asan: deps
	$(MAKE) BUILD=build-asan SANITIZE=1 all
	$(MAKE) BUILD=build-asan SANITIZE=1 unit
	$(MAKE) BUILD=build-asan SANITIZE=1 integration

asan: deps
	$(MAKE) BUILD=build-asan SANITIZE=1 all

demo: deps
	$(MAKE) all
	DETECTOR_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/demo.py

clean:
	rm -rf build build-asan

-include mk/*.mk
