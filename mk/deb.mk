# mk/deb.mk: Debian packages (debian/), and their lifecycle test.
#
#   make deb        build the source package and the binary packages
#                   libdetector0, detector-tools, detector-spheres and
#                   libnss3-detector with debhelper (dpkg-buildpackage -us
#                   -uc -b) in a copy of the tree under $(DEB_OUT), then run
#                   lintian (an error fails the target); again only when a
#                   file of the tree or the installed libnss3 changed
#   make test-deb   tests/deb: the conffile against the engine's keys, then
#                   install, use, remove, purge, reinstall and an NSS update
#                   in a throwaway bookworm root (mmdebstrap; the base
#                   tarball is cached in $(DEB_ROOT_CACHE))
#
# docs/packaging.md explains the packages, the diversion and what happens
# on an NSS security update.

DEB_OUT        ?= build/deb
DEB_ROOT_CACHE ?= /var/cache/detector
DEB_JOBS       ?= 2
DEB_VERSION    := $(shell dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null)
DEB_ARCH       := $(shell dpkg --print-architecture)
DEB_SRC        := $(DEB_OUT)/detector-$(DEB_VERSION)
# What goes into the packages: the tree as git sees it (tracked and
# untracked files, minus what .gitignore names; the ones that exist), and
# the installed libnss3, which libnss3-detector is built for (its version
# is in the stamp's name: a new libnss3 means a new build).
DEB_NSS        := $(shell dpkg-query -W -f='$${Version}' libnss3:$(DEB_ARCH) 2>/dev/null)
DEB_STAMP      := $(DEB_OUT)/.built-nss-$(subst :,_,$(DEB_NSS))
# (tests/deb only tests the packages: editing it rebuilds nothing.)
DEB_INPUTS     := $(filter-out tests/deb/%,$(wildcard \
                    $(shell git ls-files --cached --others --exclude-standard 2>/dev/null)))
# Source files, never made: without this, make's built-in rule for `.sh`
# overwrote debian/libnss3-detector-switch with debian/libnss3-detector-switch.sh
# whenever the latter was the newer (the status command was lost).
$(DEB_INPUTS): ;

.PHONY: deb deb-deps test-deb
EXTRA_TESTS += test-deb

deb-deps:
	@scripts/install-deps.sh mk/deb-packages.txt

deb: deps deb-deps
	@$(MAKE) --no-print-directory $(DEB_STAMP)

# The copy keeps build/ and editor files out of the source package, and
# dpkg-buildpackage's clean away from this tree.  The package build sees
# none of this make's variables (MAKEFLAGS would hand them to debian/rules'
# make), and reuses the NSS source `make nss` downloaded, if any.
# The stamp gets the time the copy was made: a file edited during the
# build is newer, and makes the next `make deb` build again.
$(DEB_STAMP): $(DEB_INPUTS)
	rm -rf $(DEB_OUT) && mkdir -p $(DEB_SRC) && touch $@.new
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
	  tar -c --null -T - | tar -x -C $(DEB_SRC)
	cd $(DEB_OUT) && dpkg-source -b detector-$(DEB_VERSION)
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	  DETECTOR_NSS_SRC_CACHE=$(abspath $(NSS_BUILD))/src \
	  DEB_BUILD_OPTIONS="parallel=$(DEB_JOBS) $(DEB_BUILD_OPTIONS)" \
	  dpkg-buildpackage -us -uc -b
	lintian --fail-on error $(DEB_OUT)/detector_$(DEB_VERSION).dsc \
	  $(DEB_OUT)/detector_$(DEB_VERSION)_$(DEB_ARCH).changes
	@ls -1 $(DEB_OUT)/*.deb
	mv $@.new $@

test-deb: deb
	DETECTOR_BUILD=$(abspath $(DEB_SRC))/build \
	  DETECTOR_DEB_DIR=$(abspath $(DEB_OUT)) DETECTOR_ROOT_CACHE=$(DEB_ROOT_CACHE) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs -s tests/deb
