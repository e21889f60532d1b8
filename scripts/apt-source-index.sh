#!/bin/bash
# apt-source-index.sh: make apt list a Debian source package version, adding
# a deb-src twin of the system's Debian entries if needed (shared by
# scripts/nss-prepare.sh and scripts/corelease-prepare.sh).
#
#   scripts/apt-source-index.sh PACKAGE VERSION LOG [RERUN [HINT]]
#
# LOG receives apt-get update's output; RERUN is the command the user runs
# again after fixing a problem (default: make nss); HINT says what to do when
# the archive no longer lists VERSION. Exits 0 once `apt-cache showsrc
# PACKAGE` lists VERSION; otherwise prints what to do and exits 1.
set -euo pipefail

me=${DETECTOR_SCRIPT:-apt-source-index}
# die, say
. "$(dirname "$0")/common.sh"

[ $# -ge 3 ] || die "usage: scripts/apt-source-index.sh PACKAGE VERSION LOG [RERUN [HINT]]"
package=$1 version=$2 log=$3 rerun=${4:-make nss}
hint=${5:-"upgrade libnss3 ('make deps' or apt-get upgrade), add a descriptor for the new version, run '$rerun' again"}

# The source index must list the exact version; if it does not, add a
# deb-src twin of the system's Debian entries and refresh it.
source_listed() {
	# Not grep -q: it would stop reading, apt-cache would die of SIGPIPE and
	# pipefail would turn a match into a failure.
	apt-cache showsrc "$package" 2>/dev/null | grep -x "Version: $version" >/dev/null
}
ensure_source_index() {
	source_listed && return 0
	[ "$(id -u)" = 0 ] || die "apt knows no source package $package $version, and only root can add a deb-src entry" \
		"run '$rerun' once as root (it writes /etc/apt/sources.list.d/detector-src.sources and runs apt-get update)," \
		"or add a deb-src entry for the Debian archive yourself and run 'apt-get update'"
	local out
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		out=/etc/apt/sources.list.d/detector-src.sources
		{
			echo "# Written by DetecTor (scripts/apt-source-index.sh): the deb-src twin of"
			echo "# debian.sources, so that 'apt-get source' can fetch the source of the"
			echo "# installed NSS (and of applications that bundle NSS). Safe to delete."
			# Each deb822 stanza whose Types include "deb", again as deb-src.
			awk 'BEGIN { RS = ""; FS = "\n" }
			{
				keep = 0; out = ""
				for (i = 1; i <= NF; i++) {
					line = $i
					if (line ~ /^Types:/) {
						n = split(substr(line, 7), t, /[ \t]+/)
						for (j = 1; j <= n; j++) if (t[j] == "deb") keep = 1
						line = "Types: deb-src"
					}
					out = out line "\n"
				}
				if (keep) printf "\n%s", out
			}' \
				/etc/apt/sources.list.d/debian.sources
		} >"$out.tmp"
	elif grep -qs '^deb ' /etc/apt/sources.list; then
		out=/etc/apt/sources.list.d/detector-src.list
		{
			echo "# Written by DetecTor (scripts/apt-source-index.sh): deb-src twins of"
			echo "# /etc/apt/sources.list, for 'apt-get source'. Safe to delete."
			sed -n 's/^deb /deb-src /p' /etc/apt/sources.list
		} >"$out.tmp"
	else
		die "found no Debian apt sources (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)" \
			"add a deb-src entry for the Debian archive that serves $package $version, run 'apt-get update', then '$rerun'"
	fi
	grep -q '^Types: deb-src\|^deb-src ' "$out.tmp" || die "found no 'deb' entry to mirror in the system's apt sources" \
		"add a deb-src entry for the Debian archive yourself and run 'apt-get update'"
	mv "$out.tmp" "$out"
	say "added $out; refreshing its source index"
	# Refresh only the new entry: the binary indexes are not ours to touch.
	if ! apt-get update -q -o DPkg::Lock::Timeout=120 -o Dir::Etc::SourceList="$out" -o Dir::Etc::SourceParts=- \
		-o APT::Get::List-Cleanup=0 >>"$log" 2>&1; then
		tail -n 15 "$log" >&2
		die "apt-get update of $out failed (output above, full log: $log)" \
			"check that this machine reaches the Debian archive, then run '$rerun' again"
	fi
	source_listed ||
		die "the Debian archive no longer lists $package $version (superseded by a newer update?)" \
			"$hint"
}

ensure_source_index
