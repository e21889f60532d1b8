# mk/nss.mk: the enhanced libssl3.so, a drop-in for the system's.
#
#   make nss        fetch + verify + patch the Debian source of the installed
#                   NSS (scripts/nss-prepare.sh), compile only its lib/ssl
#   make test-nss   prove the result is a drop-in (tests/nss/test_dropin.py)
#                   and that the patches' copy of libdetector's ops struct
#                   matches detector_nss.h (tests/nss/test_ops_struct.py)
#
# Output: $(NSS_SSL_SO). Always under build/nss, whatever $(BUILD) is: the
# library is never sanitizer-instrumented (an ASan libssl3.so cannot be loaded
# into the stock, uninstrumented NSS clients it exists for), so build-asan
# shares it instead of downloading and compiling NSS a second time.
# docs/nss-build.md explains every step and flag.
#
# mk/corelease.mk reuses the compile and link rules below for the NSS that an
# application bundles: it runs `make nss-compile NSS_BUILD=DIR NSS_VARS=FILE`,
# where FILE (written by scripts/corelease-prepare.sh) sets NSS_INCLUDES,
# NSS_EXTRA_DEFINES and NSS_LIBS for that NSS and application.

NSS_BUILD   ?= build/nss
NSS_SSL_SO  := $(NSS_BUILD)/lib/libssl3.so
NSS_SSL_SRC := $(NSS_BUILD)/ssl
NSS_OBJ_DIR := $(NSS_BUILD)/obj
NSS_CC      ?= gcc

.PHONY: nss nss-compile nss-flags test-nss
all: nss
EXTRA_TESTS += test-nss

# Two steps: the script makes $(NSS_SSL_SRC) (a no-op when nothing changed);
# only then is the list of sources known, so a second make compiles it.
nss:
	@scripts/nss-prepare.sh $(NSS_BUILD)
	@$(MAKE) --no-print-directory nss-compile

test-nss: nss
	$(PYTHON) tests/nss/test_ops_struct.py
	$(PYTHON) tests/nss/test_dropin.py $(NSS_SSL_SO)

ifneq ($(filter nss-compile,$(MAKECMDGOALS)),)

ifneq ($(NSS_VARS),)
include $(NSS_VARS)
endif

# What NSS's own build passes for lib/ssl on Linux, as debian/rules drives it
# (BUILD_OPT=1, NS_USE_GCC=1, OPTIMIZER=dpkg-buildflags' CFLAGS+CPPFLAGS):
# `make -n` in nss/lib/ssl with Debian's arguments prints exactly these.
NSS_BUILDFLAGS = $(shell DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get $(1))
NSS_OPTIMIZER := $(call NSS_BUILDFLAGS,CFLAGS) $(call NSS_BUILDFLAGS,CPPFLAGS) -Wall -pipe
NSS_LDFLAGS   := $(call NSS_BUILDFLAGS,LDFLAGS)
# coreconf/Linux.mk (DSO_CFLAGS, OS_CFLAGS, DEFINES; -m64 is gcc's default)
NSS_OS_CFLAGS := -fPIC -pipe -ffunction-sections -fdata-sections \
                 -DHAVE_STRERROR -DLINUX -Dlinux \
                 -D_DEFAULT_SOURCE -D_BSD_SOURCE -D_POSIX_SOURCE \
                 -DSDB_MEASURE_USE_TEMP_DIR -D_REENTRANT
# coreconf/UNIX.mk, coreconf/config.mk (BUILD_OPT: no DEBUG, no TRACE, no
# SSLKEYLOGFILE support, as in Debian's libssl3.so)
NSS_DEFINES   := -DXP_UNIX -UDEBUG -DNDEBUG -DNSS_NO_INIT_SUPPORT \
                 -DUSE_UTIL_DIRECTLY -DNO_NSPR_10_SUPPORT \
                 -DSSL_DISABLE_DEPRECATED_CIPHER_SUITE_NAMES
# coreconf/Werror.mk: NSS builds with -Werror where its compiler is known
# to be clean (debian/rules turns it off except on x86 and aarch64).
NSS_WERROR    ?= -Werror
# Include order: lib/ssl's own (possibly patched) public headers first, then
# the installed NSS/NSPR ones, then the private headers nss-prepare.sh copied.
NSS_INCLUDES  ?= $(shell pkg-config --cflags nss nspr) -I$(NSS_SSL_SRC)/private
NSS_CFLAGS    := -std=c99 $(NSS_OPTIMIZER) $(NSS_OS_CFLAGS) -Wall -Wshadow \
                 $(NSS_WERROR) $(NSS_DEFINES) $(NSS_EXTRA_DEFINES) \
                 -I$(NSS_SSL_SRC) $(NSS_INCLUDES)
# lib/ssl/config.mk (EXTRA_SHARED_LIBS) and coreconf/Linux.mk (OS_LIBS);
# --as-needed drops libplds4 from NEEDED, as in Debian's libssl3.so.
NSS_LIBS      ?= $(shell pkg-config --libs-only-L nss nspr) -Wl,--as-needed \
                 -lnss3 -lnssutil3 -lplc4 -lplds4 -lnspr4 -lpthread -ldl

# lib/ssl/manifest.mn lists the sources; lib/ssl/Makefile adds unix_err.c.
NSS_CSRCS := $(shell sed -n '/^CSRCS[ \t]*=/,/NULL/p' $(NSS_SSL_SRC)/manifest.mn | \
                     grep -o '[A-Za-z0-9_]*\.c') unix_err.c
NSS_OBJS  := $(NSS_CSRCS:%.c=$(NSS_OBJ_DIR)/%.o)

NSS_Q = $(if $(V),,@)

nss-compile: $(NSS_SSL_SO)
nss-flags:

# Recompile everything when a flag changes (the file changes only then).
$(NSS_OBJ_DIR)/flags: nss-flags
	@mkdir -p $(@D)
	@echo '$(NSS_CC) $(NSS_CFLAGS) ; $(NSS_LDFLAGS) $(NSS_LIBS)' | cmp -s - $@ || \
	  echo '$(NSS_CC) $(NSS_CFLAGS) ; $(NSS_LDFLAGS) $(NSS_LIBS)' > $@

$(NSS_OBJ_DIR)/%.o: $(NSS_SSL_SRC)/%.c $(NSS_OBJ_DIR)/flags
	@echo "nss: CC $*.c"
	$(NSS_Q)$(NSS_CC) $(NSS_CFLAGS) -MMD -MP -c -o $@ $<

# The version script, converted from ssl.def as coreconf/Linux.mk's
# PROCESS_MAP_FILE does it.
$(NSS_OBJ_DIR)/ssl.def: $(NSS_SSL_SRC)/ssl.def
	@mkdir -p $(@D)
	@echo "nss: MAP $@"
	$(NSS_Q)grep -v ';-' $< | sed -e 's,;+,,' -e 's; DATA ;;' -e 's,;;,,' -e 's,;.*,;,' > $@

$(NSS_SSL_SO): $(NSS_OBJS) $(NSS_OBJ_DIR)/ssl.def
	@mkdir -p $(@D)
	@echo "nss: LD $@"
	$(NSS_Q)$(NSS_CC) -shared $(NSS_LDFLAGS) -Wl,-z,defs -Wl,-soname,libssl3.so \
	  -Wl,--version-script,$(NSS_OBJ_DIR)/ssl.def -o $@.tmp $(NSS_OBJS) $(NSS_LIBS)
	@mv $@.tmp $@

-include $(NSS_OBJS:.o=.d)

endif
