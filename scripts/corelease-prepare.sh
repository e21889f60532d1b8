#!/bin/bash
# corelease-prepare.sh: stage lib/ssl of the NSS an application bundles
# (Firefox ESR, Thunderbird) for the lib/ssl-only build in mk/nss.mk: fetch
# the application's Debian source into a per-machine cache, prove it is the
# one the descriptor pins, extract only NSS's lib/ssl and headers, apply
# DetecTor's series for that NSS release line.
#
#   scripts/corelease-prepare.sh DESCRIPTOR BUILD_DIR
#   scripts/corelease-prepare.sh --installed   descriptors whose application
#                                              is installed, one a line
#
# DESCRIPTOR is a coreleases/*.bundled file (format: coreleases/README.md).
#
# Environment:
#   DETECTOR_SOURCE_CACHE  where the (large) source files are kept, once per
#                          machine (default: /var/cache/detector/sources as
#                          root, else ~/.cache/detector/sources)
#
# What it leaves in BUILD_DIR:
#   src/prepare.log   output of apt, tar and patch
#   src/tree/         NSS_DIR/lib/ssl and NSS_DIR/lib/*/*.h of the source
#   ssl/              the patched lib/ssl (a file is rewritten only when its
#                     content changed); ssl/.prepared says what went in
#   vars.mk           make variables for mk/nss.mk: include directories,
#                     the application's build defines, its library folder
set -euo pipefail

me=corelease-prepare
root=$(cd "$(dirname "$0")/.." && pwd)

# die, say
. "$(dirname "$0")/common.sh"

# The headers lib/ssl includes live in these directories of NSS's lib/ (NSS's
# own build exports them to dist/public/nss and dist/private/nss).
header_dirs="util nss certdb certhigh cryptohi pk11wrap freebl freebl/ecl pkcs7 smime"

# app_version PACKAGE: the installed version, or nothing.
app_version() {
	dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null | awk '$1 == "ii" { print $2 }'
}

if [ "${1:-}" = "--installed" ]; then
	for f in "$root"/coreleases/*.bundled; do
		[ -f "$f" ] || continue
		awk '$1 == "app" { print $2, $3 }' "$f" | while read -r pkg ver; do
			[ "$(app_version "$pkg")" = "$ver" ] && echo "${f#"$root"/}"
		done
	done | sort -u
	exit 0
fi

[ $# -eq 2 ] || die "usage: scripts/corelease-prepare.sh DESCRIPTOR BUILD_DIR | --installed"
release=$1
[ -f "$release" ] || release=$root/coreleases/$1
[ -f "$release" ] || die "no descriptor $1 (the coreleases/*.bundled files are: $(cd "$root/coreleases" && echo *.bundled))"
release=$(cd "$(dirname "$release")" && pwd)/$(basename "$release")
rel_name=${release#"$root"/}
mkdir -p "$2"
build=$(cd "$2" && pwd)
src=$build/src
stage=$build/ssl
mkdir -p "$src" "$stage"
log=$src/prepare.log

if command -v flock >/dev/null; then
	exec 9>"$build/.lock"
	flock 9
fi

# --- Read the descriptor -----------------------------------------------------

kind="" package="" version="" nss="" nss_dir="" series="" defines=""
apps=() files=() sums=()
while read -r key rest; do
	case "$key" in
	'' | '#'*) continue ;;
	esac
	read -r a b c extra <<<"$rest"
	case "$key" in
	kind) kind=$a ;;
	package) package=$a ;;
	version) version=$a ;;
	nss) nss=$a ;;
	nss-dir) nss_dir=$a ;;
	series) series=$a ;;
	defines) defines=$rest ;;
	app)
		[[ -n "$c" && "$c" == /* && -z "$extra" ]] || die "$rel_name: 'app' needs PACKAGE VERSION /FOLDER, got: $rest"
		apps+=("$a $b $c")
		;;
	sha256)
		[[ "$a" =~ ^[0-9a-f]{64}$ ]] || die "$rel_name: '$a' is not a sha256 (64 lowercase hex digits)"
		[[ -n "$b" && "$b" != */* && "$b" != .* && -z "$c" ]] || die "$rel_name: bad sha256 line: $rest"
		sums+=("$a")
		files+=("$b")
		;;
	*) die "$rel_name: unknown key '$key' (known: kind package version nss nss-dir app defines sha256 series)" ;;
	esac
done <"$release"
[ "$kind" = bundled ] || die "$rel_name: 'kind bundled' missing (system libnss3 descriptors are coreleases/*.release, built by 'make nss')"
for v in package version nss nss_dir series; do
	[ -n "${!v}" ] || die "$rel_name: no '${v/_/-}' line"
done
[[ "$nss_dir" != /* && "$nss_dir" != *..* ]] || die "$rel_name: nss-dir must be a relative path inside the source"
[ ${#apps[@]} -gt 0 ] || die "$rel_name: no 'app' line"
orig="" debian="" dsc=""
for f in "${files[@]}"; do
	case "$f" in
	*.dsc) dsc=$f ;;
	*.orig.tar.*) orig=$f ;;
	*.debian.tar.*) debian=$f ;;
	*) die "$rel_name pins $f: only the .dsc, the .orig tarball and the .debian tarball are used" ;;
	esac
done
[ -n "$dsc" ] && [ -n "$orig" ] && [ -n "$debian" ] ||
	die "$rel_name: needs sha256 lines for the .dsc, the .orig.tar.* and the .debian.tar.* files"

# The application whose libraries the drop-in links against: the first one
# installed at exactly the descriptor's version.
app_dir=""
for a in "${apps[@]}"; do
	read -r pkg ver dir <<<"$a"
	if [ "$(app_version "$pkg")" = "$ver" ] && [ -f "$dir/libnss3.so" ]; then
		app_dir=$dir
		break
	fi
done
if [ -z "$app_dir" ]; then
	want=$(for a in "${apps[@]}"; do read -r pkg ver dir <<<"$a"; printf "%s " "$pkg=$ver"; done)
	die "none of the applications $rel_name is for is installed at its version (${want% })" \
		"the drop-in links against the application's own libnss3, so install one:" \
		"apt-get install --no-install-recommends ${want% }" \
		"(or, if Debian has moved on, add a descriptor for the version it serves: coreleases/README.md)"
fi

series_file=$root/$series
[ -f "$series_file" ] || die "$rel_name names the series $series, which does not exist"
patch_dir=$(dirname "$series_file")
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
	# Only lib/ssl is extracted and built: a change elsewhere would be lost.
	for path in $(awk '/^\+\+\+ / { print $2 }' "$patch_dir/$name" | sort -u); do
		case "$(echo "$path" | cut -d/ -f$((level + 1))-)" in
		nss/lib/ssl/*) ;;
		*) die "${patch_dir#"$root"/}/$name changes $path: a co-release builds only nss/lib/ssl/" ;;
		esac
	done
	patches+=("$name $level")
done <"$series_file"

# --- Fast path: nothing changed since the last run --------------------------

key=$(
	{
		echo "$app_dir"
		sha256sum "$root/scripts/${0##*/}" "$release" "$series_file"
		for p in "${patches[@]}"; do sha256sum "$patch_dir/${p% *}"; done
	} | sed "s|$root/||" | sha256sum | cut -d' ' -f1
)
if [ "$(cat "$stage/.prepared" 2>/dev/null)" = "$key" ] && [ -f "$build/vars.mk" ]; then
	exit 0
fi
: >"$log"

# --- Fetch and verify, into the per-machine cache ----------------------------

if [ -n "${DETECTOR_SOURCE_CACHE:-}" ]; then
	cache=$DETECTOR_SOURCE_CACHE
elif [ "$(id -u)" = 0 ]; then
	cache=/var/cache/detector/sources
else
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/detector/sources
fi
mkdir -p "$cache" || die "cannot create the source cache $cache" "set DETECTOR_SOURCE_CACHE to a writable folder"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

uris=""
fetch() { # fetch INDEX: download files[INDEX] into the cache, checked
	local name=${files[$1]} want=${sums[$1]} line uri size hash
	if [ -z "$uris" ]; then
		DETECTOR_SCRIPT=$me "$root/scripts/apt-source-index.sh" "$package" "$version" "$log" "make corelease" \
			"Debian no longer serves $package $version: add a descriptor for the version it serves (coreleases/README.md)"
		uris=$(apt-get source -q --print-uris "$package=$version" 2>>"$log") ||
			die "apt-get source --print-uris $package=$version failed (full log: $log)"
	fi
	line=$(echo "$uris" | awk -v n="$name" '$2 == n')
	[ -n "$line" ] || die "apt's source index for $package $version does not list $name, which $rel_name pins" \
		"fix $rel_name from 'apt-cache showsrc $package' (Checksums-Sha256 of version $version)"
	read -r uri _ size hash <<<"$line"
	uri=${uri//\'/}
	[ "$hash" = "SHA256:$want" ] || die "apt's authenticated source index gives $name the checksum ${hash#SHA256:}," \
		"but $rel_name pins $want: the descriptor is wrong, or the archive changed the file: build nothing from it"
	say "downloading $name ($((size / 1000000)) MB) into $cache"
	rm -f "$cache/$name.part"
	# As root, apt would otherwise warn that its _apt sandbox user cannot
	# write to the cache and then download as root anyway.
	sandbox=()
	[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
	if ! /usr/lib/apt/apt-helper "${sandbox[@]}" download-file "$uri" "$cache/$name.part" "$hash" >>"$log" 2>&1; then
		rm -f "$cache/$name.part"
		tail -n 5 "$log" >&2
		die "the Debian archive did not serve $uri (output above; 404 means it no longer has $package $version)" \
			"check the network to the Debian archive; if the file is gone, add a descriptor for the version Debian serves"
	fi
	mv -f "$cache/$name.part" "$cache/$name"
}

t0=$SECONDS
for i in "${!files[@]}"; do
	f=$cache/${files[$i]}
	if [ -f "$f" ] && [ "$(sha_of "$f")" = "${sums[$i]}" ]; then
		continue
	fi
	[ -f "$f" ] && say "$f does not have the checksum $rel_name pins: fetching it again"
	fetch "$i"
	got=$(sha_of "$f")
	[ "$got" = "${sums[$i]}" ] || die "checksum mismatch for $f" \
		"expected sha256 ${sums[$i]} ($rel_name)" "got      sha256 $got" \
		"nothing was built from it; delete it and run 'make corelease' again"
done
say "${#files[@]} source files of $package $version verified in $cache ($((SECONDS - t0)) s)"

# The .dsc (checked above) must list the tarballs with the same checksums.
for i in "${!files[@]}"; do
	[ "${files[$i]}" = "$dsc" ] && continue
	awk -v n="${files[$i]}" -v s="${sums[$i]}" '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 }
		on && $3 == n && $1 == s { found = 1 } END { exit !found }' "$cache/$dsc" ||
		die "$dsc does not list ${files[$i]} with the sha256 $rel_name pins"
done

# Debian's packaging must leave NSS alone: its patches are not applied here.
rm -rf "$src/debian"
tar -xJf "$cache/$debian" -C "$src" debian/patches 2>>"$log" || die "cannot read debian/patches from $debian (full log: $log)"
touching=$(grep -rl "^+++ [^ ]*$nss_dir/" "$src/debian/patches" || true)
[ -z "$touching" ] || die "Debian's patches of $package change $nss_dir: ${touching//$src\//}" \
	"a co-release must include them; this script does not apply them yet"
rm -rf "$src/debian"

# --- Extract only what lib/ssl's build needs --------------------------------

tree=$src/tree
orig_sum=""
for i in "${!files[@]}"; do
	if [ "${files[$i]}" = "$orig" ]; then orig_sum=${sums[$i]}; fi
done
if [ "$(cat "$tree/.extracted" 2>/dev/null)" != "$orig_sum $nss_dir $header_dirs" ]; then
	rm -rf "$tree"
	mkdir -p "$tree"
	say "extracting $nss_dir/lib/ssl and NSS's headers from $orig (it reads the whole tarball: about a minute)"
	t0=$SECONDS
	tar -xf "$cache/$orig" -C "$tree" --strip-components=1 --wildcards --no-wildcards-match-slash \
		"*/$nss_dir/lib/ssl/*" $(for d in $header_dirs; do echo "*/$nss_dir/lib/$d/*.h"; done) >>"$log" 2>&1 ||
		die "tar could not extract $nss_dir from $cache/$orig (full log: $log)" \
			"if nss-dir is right, the tarball is damaged: delete it and run 'make corelease' again"
	echo "$orig_sum $nss_dir $header_dirs" >"$tree/.extracted"
	say "extracted in $((SECONDS - t0)) s"
fi
[ -f "$tree/$nss_dir/lib/ssl/ssl.def" ] || die "$orig has no $nss_dir/lib/ssl/ssl.def: is nss-dir ($nss_dir) right?"
got=$(sed -n 's/^#define NSS_VERSION "\([0-9.]*\)".*/\1/p' "$tree/$nss_dir/lib/nss/nss.h")
[ "$got" = "$nss" ] || die "$package $version contains NSS $got, but $rel_name says $nss" \
	"fix the 'nss' line and use the series for NSS ${got%.*}"

# --- Patch and stage ---------------------------------------------------------

work=$build/.work.$$
trap 'rm -rf "$work"' EXIT
rm -rf "$work"
mkdir -p "$work/nss/lib"
cp -a "$tree/$nss_dir/lib/ssl" "$work/nss/lib/"
for p in "${patches[@]}"; do
	name=${p% *} level=${p#* }
	shown=${patch_dir#"$root"/}/$name
	if ! out=$(patch -d "$work" -p"$level" --dry-run --batch --forward --fuzz=0 <"$patch_dir/$name" 2>&1); then
		echo "$out" | sed "s/^/$me:   | /" >&2
		rm -rf "$build/rebase"
		mv "$work" "$build/rebase"
		die "$shown does not apply to NSS $nss from $package $version (report above; no fuzz is allowed)" \
			"${build#"$root"/}/rebase/ holds lib/ssl with the series up to it applied: rebase the patch there" \
			"(docs/nss-build.md, 'Writing a patch')"
	fi
	patch -d "$work" -p"$level" --batch --forward --fuzz=0 --no-backup-if-mismatch -s <"$patch_dir/$name" >>"$log" 2>&1 ||
		die "$shown passed --dry-run but failed to apply (full log: $log)"
	say "applied $shown"
done

for f in "$work"/nss/lib/ssl/*; do
	[ -f "$f" ] && { cmp -s "$f" "$stage/${f##*/}" || cp "$f" "$stage/${f##*/}"; }
done
for f in "$stage"/*; do
	[ -f "$f" ] && [ ! -e "$work/nss/lib/ssl/${f##*/}" ] && rm -f "$f"
done

# What mk/nss.mk compiles and links with: NSS's headers from this source
# (not the system's libnss3-dev, another NSS version), the system NSPR that
# Debian builds these applications with, the application's own libnss3.
{
	echo "# Written by scripts/corelease-prepare.sh for $rel_name"
	printf 'NSS_INCLUDES :='
	for d in $header_dirs; do printf ' -I%s' "$tree/$nss_dir/lib/$d"; done
	echo " $(pkg-config --cflags nspr)"
	echo "NSS_EXTRA_DEFINES := $defines"
	echo "NSS_LIBS := -L$app_dir $(pkg-config --libs-only-L nspr) -Wl,--as-needed -lnss3 -lnssutil3 -lplc4 -lplds4 -lnspr4 -lpthread -ldl"
} >"$build/vars.mk"
echo "$key" >"$stage/.prepared"
say "staged lib/ssl of NSS $nss ($package $version) with ${#patches[@]} DetecTor patch(es) in ${stage#"$root"/}, to link against $app_dir"
