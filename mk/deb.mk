# mk/deb.mk: Debian packages (debian/), and their lifecycle test.
#
#   make deb        build the source package and the binary packages
#                   libdetector0, detector-tools, detector-spheres and
#                   libnss3-detector with debhelper (dpkg-buildpackage -us
#                   -uc -b) in a copy of the tree under $(DEB_OUT), then run
#                   lintian (an error fails the target)
#   make test-deb   tests/deb: install, use, remove, purge, reinstall and
#                   an NSS update, in a throwaway bookworm root
#                   (mmdebstrap; the base tarball is cached in
#                   $(DEB_ROOT_CACHE))
#
# docs/packaging.md explains the packages, the diversion and what happens
# on an NSS security update.

DEB_OUT        ?= build/deb
DEB_ROOT_CACHE ?= /var/cache/detector
DEB_VERSION    := $(shell dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null)
DEB_SRC        := $(DEB_OUT)/detector-$(DEB_VERSION)
DEB_JOBS       ?= 2

.PHONY: deb deb-deps test-deb

deb-deps:
	@scripts/install-deps.sh mk/deb-packages.txt

# The tree is copied as git sees it (tracked and untracked files, minus
# what .gitignore names), so build/ and editor files never reach the
# source package, and dpkg-buildpackage's clean never touches this tree.
deb: deps deb-deps
	rm -rf $(DEB_OUT) && mkdir -p $(DEB_SRC)
	git ls-files -z --cached --others --exclude-standard | \
	  xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
	  tar -c --null -T - | tar -x -C $(DEB_SRC)
	cd $(DEB_OUT) && dpkg-source -b detector-$(DEB_VERSION)
	@# The package build sees none of this make's variables (MAKEFLAGS
	@# would hand them to debian/rules' make).
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	  DETECTOR_NSS_SRC_CACHE=$(abspath $(NSS_BUILD))/src \
	  DEB_BUILD_OPTIONS="parallel=$(DEB_JOBS) $(DEB_BUILD_OPTIONS)" \
	  dpkg-buildpackage -us -uc -b
	lintian --fail-on error \
	  $(DEB_OUT)/detector_$(DEB_VERSION).dsc \
	  $(DEB_OUT)/detector_$(DEB_VERSION)_$(shell dpkg --print-architecture).changes
	@ls -1 $(DEB_OUT)/*.deb

test-deb: deb
	DETECTOR_DEB_DIR=$(abspath $(DEB_OUT)) DETECTOR_ROOT_CACHE=$(DEB_ROOT_CACHE) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs -s tests/deb
