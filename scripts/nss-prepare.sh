#!/bin/bash
# nss-prepare.sh: get the exact NSS source the installed libnss3 was built
# from, prove it is the one coreleases/ pins, apply DetecTor's patch series
# and stage lib/ssl for the lib/ssl-only build in mk/nss.mk.
#
#   scripts/nss-prepare.sh BUILD_DIR      (make nss runs it as build/nss)
#
# Environment:
#   NSS_VERSION   Debian version to prepare (default: the installed libnss3).
#                 A different version builds, but is no drop-in for this system.
#   NSS_RELEASE   descriptor to use (default: the coreleases/*.release whose
#                 `version` is NSS_VERSION)
#
# What it leaves in BUILD_DIR:
#   src/                  the Debian source package (cached, verified) and
#                         prepare.log (output of apt-get, dpkg-source, patch)
#   src/nss-VERSION/      dpkg-source tree: Debian's patches, then ours
#   ssl/                  copy of that tree's nss/lib/ssl; a file is rewritten
#                         only when its content changed, so make recompiles
#                         only what a patch touched
#   ssl/private/          the NSS-private headers lib/ssl includes
#   ssl/.prepared         what went into ssl/ (version, hashes of this script,
#                         the descriptor, the series and its patches)
#
# Why a script and not make rules: every step either talks to apt or must stop
# with a precise message; make is good at neither. The fast path (nothing
# changed) hashes a few small files and exits, so `make nss` stays quick.
set -euo pipefail

me=nss-prepare
root=$(cd "$(dirname "$0")/.." && pwd)

# die, say
. "$(dirname "$0")/common.sh"

[ $# -eq 1 ] || die "usage: scripts/nss-prepare.sh BUILD_DIR"
mkdir -p "$1"
build=$(cd "$1" && pwd)
src=$build/src
stage=$build/ssl
mkdir -p "$src" "$stage/private"
log=$src/prepare.log

# Two builds at once (make all and make asan, say) must not interleave.
if command -v flock >/dev/null; then
	exec 9>"$build/.lock"
	flock 9
fi

# Headers outside lib/ssl that lib/ssl includes but libnss3-dev does not ship.
# (NSS's own build exports them to dist/private/nss.)
private_headers="nss/lib/freebl/blapi.h nss/lib/freebl/cmac.h
nss/lib/freebl/alghmac.h nss/lib/nss/nssoptions.h nss/lib/nss/nssrenam.h
nss/lib/util/verref.h"

# --- Which release -----------------------------------------------------------

arch=$(dpkg --print-architecture)
version=${NSS_VERSION:-$(dpkg-query -W -f='${Version}' "libnss3:$arch" 2>/dev/null || true)}
[ -n "$version" ] || die "libnss3 is not installed, so there is nothing to be a drop-in for" \
	"run 'make deps' (as root) first"

release=${NSS_RELEASE:-}
if [ -z "$release" ]; then
	for f in "$root"/coreleases/*.release; do
		[ -f "$f" ] || continue
		if awk -v v="$version" '$1 == "version" && $2 == v { found = 1 } END { exit !found }' "$f"; then
			release=$f
			break
		fi
	done
fi
# Debian moved first: no descriptor names this version (typically a security
# update published after our last co-release).  The build must neither fail
# for that alone nor pretend the result was reviewed: take the patch series
# of the same NSS release line (3.87.1-1+deb12u5 -> nss-patches/3.87), pin
# the source to the checksums of apt's authenticated Sources index, write
# that descriptor under BUILD_DIR/unreviewed/ (never into coreleases/) and
# say loudly that this co-release is unreviewed.  The series must still
# apply without fuzz, and `make test-nss` still proves the drop-in.  A
# version of another release line (3.200.x) has no series that fits: fail.
unreviewed=""
if [ -z "$release" ]; then
	supported=$(awk '$1 == "version" { printf "%s ", $2 }' "$root"/coreleases/*.release 2>/dev/null)
	series_known=$(for f in "$root"/nss-patches/*/series; do [ -f "$f" ] && basename "$(dirname "$f")"; done |
		sort -V | tr '\n' ' ')
	upstream=${version#*:}
	upstream=${upstream%-*}
	line=$(echo "$upstream" | cut -d. -f1,2)
	if [ ! -f "$root/nss-patches/$line/series" ]; then
		die "no descriptor in coreleases/ for the installed NSS $version, and no patch series for its release line $line" \
			"descriptors exist for: ${supported:-none}" \
			"patch series exist for the NSS release lines: ${series_known:-none} (nss-patches/<line>/series)" \
			"what to do: port the patch to NSS $line (docs/nss-build.md, 'Writing a patch') as nss-patches/$line/series" \
			"and add coreleases/<distro>-nss-<version>.release (coreleases/README.md), or install a libnss3 of a" \
			"supported line (apt-get install libnss3=VERSION libnss3-dev=VERSION libnss3-tools=VERSION)." \
			"Meanwhile libnss3-detector's trigger keeps the system's own libssl3.so in place: NSS works, unprotected."
	fi
	unreviewed=$build/unreviewed
	mkdir -p "$unreviewed"
	codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-unknown}")
	release=$unreviewed/debian-$codename-nss-${version#*:}.release
	warn_unreviewed() {
		{
			echo "$me: WARNING: ================================================================"
			echo "$me: WARNING: UNREVIEWED CO-RELEASE: no descriptor in coreleases/ names the installed"
			echo "$me: WARNING: libnss3 $version; building it with nss-patches/$line/series (the series of"
			echo "$me: WARNING: its release line) from the source apt authenticates for that version."
			echo "$me: WARNING: Nobody has reviewed this patch against this source. Review it, then"
			echo "$me: WARNING:   cp ${release#"$root"/} coreleases/"
			echo "$me: WARNING: ================================================================"
		} >&2
	}
	warn_unreviewed
	if [ ! -f "$release" ]; then
		DETECTOR_SCRIPT=$me "$root/scripts/apt-source-index.sh" nss "$version" "$src/prepare.log" "make nss" \
			"no co-release can be built for a version the archive no longer serves: upgrade libnss3 and run 'make nss' again"
		# The Checksums-Sha256 block of the stanza for exactly this version:
		# apt checked the Sources index against the archive's signed Release.
		sums_block=$(apt-cache showsrc nss 2>/dev/null | awk -v v="$version" '
			/^Package:/ { inpkg = 0 }
			/^Version:/ { inpkg = ($2 == v) }
			inpkg && /^Checksums-Sha256:/ { on = 1; next }
			/^[^ ]/ { on = 0 }
			on && NF == 3 { print $1, $3 }')
		[ -n "$sums_block" ] || die "apt-cache showsrc nss lists $version without a Checksums-Sha256 block" \
			"run 'apt-get update' and 'make nss' again"
		{
			echo "# UNREVIEWED: written by scripts/nss-prepare.sh on $(date -u +%Y-%m-%d) for the installed libnss3"
			echo "# $version, for which coreleases/ had no descriptor (Debian moved first)."
			echo "# Checksums: apt's authenticated Sources index (apt-cache showsrc nss)."
			echo "# Series: the one of NSS release line $line. Review, then copy to coreleases/."
			echo "package  nss"
			echo "version  $version"
			echo "$sums_block" | while read -r sum file; do echo "sha256   $sum  $file"; done
			echo "series   nss-patches/$line/series"
		} >"$release.tmp"
		mv "$release.tmp" "$release"
		say "wrote ${release#"$root"/}"
	fi
fi
[ -f "$release" ] || die "descriptor $release does not exist"
rel_name=${release#"$root"/}

# --- Read the descriptor -----------------------------------------------------

package="" rel_version="" series="" files=() sums=()
while read -r key a b rest; do
	case "$key" in
	'' | '#'*) continue ;;
	package) package=$a ;;
	version) rel_version=$a ;;
	series) series=$a ;;
	sha256)
		[[ "$a" =~ ^[0-9a-f]{64}$ ]] || die "$rel_name: '$a' is not a sha256 (64 lowercase hex digits)"
		[[ -n "$b" && "$b" != */* && "$b" != .* ]] || die "$rel_name: bad file name '$b' in a sha256 line"
		sums+=("$a")
		files+=("$b")
		;;
	*) die "$rel_name: unknown key '$key' (known: package version sha256 series)" ;;
	esac
	[ -z "${rest:-}" ] || die "$rel_name: unexpected text after '$key $a $b': $rest"
done <"$release"
[ -n "$package" ] || die "$rel_name: no 'package' line"
[ "$rel_version" = "$version" ] || die "$rel_name describes $package $rel_version, not $version"
[ -n "$series" ] || die "$rel_name: no 'series' line"
dsc=""
for f in "${files[@]}"; do
	case "$f" in *.dsc) dsc=$f ;; esac
done
[ -n "$dsc" ] || die "$rel_name: no sha256 line for the .dsc file"
series_file=$root/$series
[ -f "$series_file" ] || die "$rel_name names the series $series, which does not exist"
patch_dir=$(dirname "$series_file")

# A patch may touch lib/ssl and the private headers copied above: nothing
# else is compiled, so any other change would be silently ignored.
touched_ok() {
	case "$1" in
	nss/lib/ssl/*) return 0 ;;
	esac
	for h in $private_headers; do [ "$1" = "$h" ] && return 0; done
	return 1
}

# Patches in order, with their strip level: "file level" per entry.
patches=()
lineno=0
while read -r name opts; do
	lineno=$((lineno + 1))
	case "$name" in '' | '#'*) continue ;; esac
	level=1
	for o in $opts; do
		case "$o" in
		'#'*) break ;;
		-p[0-9]) level=${o#-p} ;;
		*) die "$series line $lineno: option '$o' is not supported (only -pN)" ;;
		esac
	done
	[ -f "$patch_dir/$name" ] || die "$series line $lineno lists $name, but $patch_dir/$name does not exist"
	# The files a patch touches: the paths of each "--- old" / "+++ new" pair.
	for path in $(awk '/^\+\+\+ / && prev ~ /^--- / { print $2; split(prev, o, /[ \t]+/); print o[2] } { prev = $0 }' \
		"$patch_dir/$name" | grep -v '^/dev/null$' | sort -u); do
		stripped=$(echo "$path" | cut -d/ -f$((level + 1))-)
		touched_ok "$stripped" || die "${patch_dir#"$root"/}/$name changes $stripped" \
			"only nss/lib/ssl/ (and the private headers it includes) is built into libssl3.so," \
			"so that change would have no effect: keep the patch to nss/lib/ssl/"
	done
	patches+=("$name $level")
done <"$series_file"

# --- The version stamp --------------------------------------------------------

# lib/libssl3.so.built-for: the libnss3 version the libssl3.so next to it is a
# drop-in for.  detector-run reads it (and refuses to load the library with
# any other libnss3); debian/rules ships it.  Written before the build: a
# libssl3.so left from another version is deleted, so the two never disagree.
mkdir -p "$build/lib"
if [ "$(cat "$build/lib/libssl3.so.built-for" 2>/dev/null)" != "$version" ]; then
	rm -f "$build/lib/libssl3.so"
	echo "$version" >"$build/lib/libssl3.so.built-for.tmp"
	mv -f "$build/lib/libssl3.so.built-for.tmp" "$build/lib/libssl3.so.built-for"
fi

# --- Fast path: nothing changed since the last run --------------------------

tree_name=$package-${version#*:}
tree=$src/$tree_name
key=$(
	{
		echo "$version"
		sha256sum "$root/scripts/${0##*/}" "$release" "$series_file"
		for p in "${patches[@]}"; do sha256sum "$patch_dir/${p% *}"; done
	} | sed "s|$root/||" | sha256sum | cut -d' ' -f1
)
if [ -d "$tree" ] && [ "$(cat "$stage/.prepared" 2>/dev/null)" = "$key" ]; then
	[ -z "$unreviewed" ] || warn_unreviewed
	exit 0
fi

# --- Fetch and verify --------------------------------------------------------

: >"$log"

# verify: 0 if every file the descriptor pins is in src/ with its checksum.
# With "report", a mismatch is fatal and says what to do.
verify() {
	local i got ok=0
	for i in "${!files[@]}"; do
		if [ ! -f "$src/${files[$i]}" ]; then
			[ "$1" = report ] && die "apt-get source did not produce ${files[$i]}, which $rel_name pins" \
				"the archive's nss $version does not consist of the files the descriptor lists: fix $rel_name"
			ok=1
			continue
		fi
		got=$(sha256sum "$src/${files[$i]}" | cut -d' ' -f1)
		if [ "$got" != "${sums[$i]}" ]; then
			[ "$1" = report ] && die "checksum mismatch for $src/${files[$i]}" \
				"expected sha256 ${sums[$i]} ($rel_name)" \
				"got      sha256 $got" \
				"this is not the NSS source the descriptor pins: nothing was built from it." \
				"If a download was cut short, delete that file and run 'make nss' again; if the mismatch stays," \
				"your apt mirror serves a different file than Debian published: do not use it" \
				"(or, if you just edited $rel_name, the descriptor is wrong)."
			ok=1
		fi
	done
	return $ok
}

if verify quiet; then
	say "source of $package $version already here and verified"
else
	DETECTOR_SCRIPT=$me "$root/scripts/apt-source-index.sh" "$package" "$version" "$log"
	say "downloading $package $version source with apt-get source"
	# As root, apt would otherwise warn that its _apt sandbox user cannot
	# write to src/ and then download as root anyway; say so up front.
	sandbox=()
	[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
	if ! (cd "$src" && apt-get source -q --download-only "${sandbox[@]}" "$package=$version") >>"$log" 2>&1; then
		tail -n 15 "$log" >&2
		die "apt-get source --download-only $package=$version failed: the Debian archive refused or could not serve it" \
			"(output above, full log: $log)" \
			"check the network to the Debian archive and the deb-src entry, run 'apt-get update', then 'make nss' again"
	fi
	verify report
	say "verified ${#files[@]} files against $rel_name"
fi

# The .dsc (whose checksum we just checked) lists its own parts; each must be
# pinned too, or the descriptor would vouch for less than dpkg-source unpacks.
for f in $(awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on { print $3 }' "$src/$dsc"); do
	found=""
	for g in "${files[@]}"; do [ "$g" = "$f" ] && found=1; done
	[ -n "$found" ] || die "$dsc lists $f, which $rel_name does not pin" "add its sha256 to $rel_name"
done

# --- Extract and patch -------------------------------------------------------

work=$src/.tree.$$
rm -rf "$work"
trap 'rm -rf "$work"' EXIT
say "extracting with dpkg-source -x (Debian's own patches applied)"
if ! dpkg-source -x "$src/$dsc" "$work" >>"$log" 2>&1; then
	tail -n 15 "$log" >&2
	die "dpkg-source -x $dsc failed (output above, full log: $log)" \
		"delete $src and run 'make nss' again to download a fresh copy"
fi

for p in "${patches[@]}"; do
	name=${p% *} level=${p#* }
	file=$patch_dir/$name
	shown=${patch_dir#"$root"/}/$name
	if ! out=$(patch -d "$work" -p"$level" --dry-run --batch --forward --fuzz=0 <"$file" 2>&1); then
		echo "$out" | sed "s/^/$me:   | /" >&2
		rm -rf "$tree.rebase"
		mv "$work" "$tree.rebase"
		die "$shown does not apply to $package $version (patch's report above; no fuzz is allowed)" \
			"${tree#"$root"/}.rebase/ holds the source with Debian's patches and the series up to it applied:" \
			"rebase the patch there (docs/nss-build.md, 'Writing a patch'), or take it out of $series"
	fi
	patch -d "$work" -p"$level" --batch --forward --fuzz=0 --no-backup-if-mismatch -s <"$file" >>"$log" 2>&1 ||
		die "$shown passed --dry-run but failed to apply (full log: $log)"
	say "applied $shown"
done

# Keep one tree: the one we just made.
for old in "$src"/*/; do
	[ "$old" = "$work/" ] || rm -rf "$old"
done
mv "$work" "$tree"
trap - EXIT

# --- Stage lib/ssl -----------------------------------------------------------

# copy_if_changed SRC DST: rewrite DST only when its content differs, so an
# unchanged file keeps its timestamp and make does not recompile it.
copy_if_changed() {
	cmp -s "$1" "$2" || cp "$1" "$2"
}

for f in "$tree"/nss/lib/ssl/*; do
	[ -f "$f" ] && copy_if_changed "$f" "$stage/${f##*/}"
done
for f in "$stage"/*; do
	[ -f "$f" ] && [ ! -e "$tree/nss/lib/ssl/${f##*/}" ] && rm -f "$f"
done
for h in $private_headers; do
	[ -f "$tree/$h" ] || die "$tree/$h is missing: this NSS version keeps its private headers elsewhere" \
		"update private_headers in scripts/nss-prepare.sh"
	copy_if_changed "$tree/$h" "$stage/private/${h##*/}"
done
echo "$key" >"$stage/.prepared"
say "staged nss/lib/ssl of $package $version with ${#patches[@]} DetecTor patch(es) in ${stage#"$root"/}"
[ -z "$unreviewed" ] || warn_unreviewed
