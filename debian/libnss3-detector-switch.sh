# libnss3-detector's switch between DetecTor's libssl3.so and the system's,
# with dpkg-divert: the one copy of this logic.  debian/rules pastes it into
# the postinst, prerm and postrm (at their #DETECTOR_SWITCH# line) and into
# /usr/lib/detector/libnss3-detector-switch (`status`, for the
# administrator), and fills in the @...@ values.
#
#   reconcile   DetecTor's libssl3.so if the installed libnss3 is the
#               version it was built for, the system's own otherwise
#               (postinst: configure, and the trigger on libnss3's files)
#   deactivate  the system's own libssl3.so, unconditionally (prerm, postrm)
#
# The libssl3.so of one NSS version is never left in place with another
# version's libnss3: a libnss3 upgrade without a matching libnss3-detector
# makes the trigger put the system's own libssl3.so back, say so in apt's
# output and in syslog (tag "detector"), and lets the upgrade proceed.  The
# switch is atomic both ways (a rename over the old name): there is always
# a libssl3.so.  docs/packaging.md explains the design.

pkg=libnss3-detector
arch=@ARCH@
built_for=@NSS_VERSION@
lib=/usr/lib/@MULTIARCH@/libssl3.so
# Outside ldconfig's directories: there, a second file whose SONAME is
# libssl3.so would make ldconfig point the name libssl3.so at it.
orig=/usr/lib/detector/libssl3.so.detector-orig
link=../detector/libssl3.so            # $lib -> /usr/lib/detector/libssl3.so
# detector-run's cheap check that libnss3 is still $built_for: this
# libnss3.so's modification time, copied once dpkg said so (detector-run
# asks dpkg itself when the file has changed since).  Not shipped: written
# here, under dpkg's lock, and removed whenever DetecTor is switched off.
checked=/usr/lib/detector/libssl3.so.checked-against
nss=/usr/lib/@MULTIARCH@/libnss3.so

say() {
	echo "$pkg: $*" >&2
}

# Tells the administrator: apt's output, and syslog when there is one.
tell() {
	say "$*"
	logger -t detector -p user.warning -- "$pkg: $*" 2>/dev/null || true
}

installed_nss() {
	dpkg-query -W -f='${Version}' "libnss3:$arch" 2>/dev/null || true
}

diverted_by_us() {
	[ "$(dpkg-divert --listpackage "$lib")" = "$pkg" ]
}

active() {
	diverted_by_us && [ -L "$lib" ] && [ "$(readlink "$lib")" = "$link" ]
}

activate() {
	if active; then
		return 0
	fi
	if [ ! -f "$lib" ] || [ -L "$lib" ]; then
		tell "$lib is missing or not the file libnss3 installed:" \
			"DetecTor's libssl3.so is NOT in place (reinstall libnss3, then libnss3-detector)"
		return 1
	fi
	dpkg-divert --package "$pkg" --no-rename --divert "$orig" --add "$lib" >/dev/null
	# The system's file stays reachable under the diverted name (a hard
	# link: same file system), then the name is switched in one rename.
	ln -f "$lib" "$orig"
	ln -sfn "$link" "$lib.detector-new"
	mv -fT "$lib.detector-new" "$lib"
	say "NSS applications now use DetecTor's libssl3.so (built for libnss3 $built_for)"
}

# Writes $checked for detector-run when libnss3 is $built_for (NOW).
record_checked() {
	rm -f "$checked"
	if [ "$1" = "$built_for" ] && [ -f "$nss" ]; then
		{ printf '%s\n%s\n' "$built_for" "$nss" >"$checked.new" &&
			touch -r "$nss" "$checked.new" && mv -f "$checked.new" "$checked"; } ||
			rm -f "$checked.new"
	fi
}

deactivate() {
	rm -f "$checked"
	if ! diverted_by_us; then
		return 0
	fi
	dpkg-divert --package "$pkg" --no-rename --divert "$orig" --remove "$lib" >/dev/null
	if [ -f "$orig" ]; then
		mv -fT "$orig" "$lib"
		say "NSS applications use the system's own libssl3.so again"
		return 0
	fi
	# Only if someone deleted it: never leave our library in place of
	# another version's, even if that leaves none.
	if [ -L "$lib" ] && [ "$(readlink "$lib")" = "$link" ]; then
		rm -f "$lib"
	fi
	tell "the system's libssl3.so ($orig) was missing:" \
		"run 'apt-get install --reinstall libnss3' to restore it"
}

reconcile() {
	now=$(installed_nss)
	record_checked "$now"
	if [ "$now" = "$built_for" ]; then
		activate
	elif diverted_by_us; then
		deactivate
		tell "libnss3 is now ${now:-not installed}, but DetecTor's libssl3.so was built for libnss3 $built_for:" \
			"the system's own libssl3.so is back in place and NSS applications are NOT checked by DetecTor" \
			"until a libnss3-detector built for libnss3 ${now:-?} is installed (apt-get install libnss3-detector)."
	else
		say "libnss3 is ${now:-not installed}, DetecTor's libssl3.so is built for $built_for:" \
			"not put in place; NSS applications are NOT checked by DetecTor"
	fi
}
