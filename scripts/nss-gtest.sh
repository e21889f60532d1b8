#!/bin/bash
# nss-gtest.sh: NSS's own SSL test suite (gtests/ssl_gtest) as the gate for a
# co-release: built from the co-release's source and run three ways,
#   unpatched   the Debian source as released (Debian's patches, not ours)
#   patched     with DetecTor's series applied, libdetector not loadable
#   excluded    the same binary with libdetector loaded, configured to
#               exclude every host ssl_gtest uses
# and every test must end the same way in all three (docs/testing.md).
#
#   scripts/nss-gtest.sh [--filter=GTEST_FILTER] [--build-only]
#
# `make test-nss-gtest` runs it after `make nss` (which fetched, verified and
# patched the source in build/nss/src with whatever series coreleases/ names
# today) and `make build/lib/libdetector.so.0`.  No download: the unpatched
# tree is extracted from the .dsc that nss-prepare.sh verified.
#
# Environment:
#   NSS_GTEST_DIR   where the trees, the test database and the results go
#                   (default build/nss-gtest)
#   NSS_GTEST_JOBS  ninja's jobs and the number of ssl_gtest shards run at
#                   once (default 2); everything runs under nice -n 15
#   DETECTOR_LIB    the libdetector to load (default build/lib/libdetector.so.0)
#
# Layout (the first run builds everything; later runs rebuild only what the
# series changed):
#   NSS_GTEST_DIR/VERSION/unpatched/   dpkg-source tree + out/ + dist/
#   NSS_GTEST_DIR/VERSION/patched/     a copy of unpatched/ (objects
#                                      included), synced with nss-prepare's
#                                      patched tree
#   NSS_GTEST_DIR/VERSION/cur          symlink to the tree being built: gyp
#                                      writes absolute paths only for dist/,
#                                      and through cur they are the same in
#                                      both trees, so the copy's objects stay
#                                      valid and ninja rebuilds only what the
#                                      patch touched
#   NSS_GTEST_DIR/VERSION/db/          the test certificates (NSS's own
#                                      tests/ssl_gtests/ssl_gtests.sh list)
#   NSS_GTEST_DIR/VERSION/results/     XML reports, logs, summary
set -euo pipefail

me=nss-gtest
root=$(cd "$(dirname "$0")/.." && pwd)
# die, say
. "$(dirname "$0")/common.sh"

filter='*'
build_only=""
for a in "$@"; do
	case "$a" in
	--filter=*) filter=${a#--filter=} ;;
	--build-only) build_only=1 ;;
	*) die "usage: scripts/nss-gtest.sh [--filter=GTEST_FILTER] [--build-only]" ;;
	esac
done

jobs=${NSS_GTEST_JOBS:-2}
[[ "$jobs" =~ ^[1-9][0-9]?$ ]] || die "NSS_GTEST_JOBS must be a number from 1 to 99, not '$jobs'"
detector_lib=${DETECTOR_LIB:-$root/build/lib/libdetector.so.0}
[ -n "$build_only" ] || [ -f "$detector_lib" ] ||
	die "$detector_lib does not exist" "run 'make' first (or set DETECTOR_LIB)"
src=$root/build/nss/src
nice=(nice -n 15)

for tool in gyp ninja dpkg-source certutil; do
	command -v "$tool" >/dev/null ||
		die "$tool is not installed" "run 'make nss-gtest-deps' (as root): mk/nss-gtest-packages.txt lists what this needs"
done

# --- The source: what `make nss` prepared -----------------------------------

# nss-prepare.sh keeps exactly one tree, patched with the current series, and
# the verified .dsc it came from.
ref=""
for d in "$src"/nss-*/; do
	[ -d "$d" ] && ref=${d%/}
done
if [ -z "$ref" ] || [ ! -f "$root/build/nss/ssl/.prepared" ]; then
	die "no prepared NSS source in build/nss/src" "run 'make nss' first (it fetches, verifies and patches it)"
fi
tree_name=${ref##*/}
dsc=$src/nss_${tree_name#nss-}.dsc
[ -f "$dsc" ] || die "$dsc is missing" "run 'make nss' again"

top=${NSS_GTEST_DIR:-$root/build/nss-gtest}
mkdir -p "$top"
top=$(cd "$top" && pwd)
g=$top/$tree_name
mkdir -p "$g/results"
exec 9>"$top/.lock"
flock 9
# Trees of other NSS versions are of no further use.
for old in "$top"/nss-*/; do
	[ "${old%/}" = "$g" ] || rm -rf "$old"
done

# --- Build ------------------------------------------------------------------

# gyp with build.sh's arguments for `build.sh --opt --system-nspr
# --system-sqlite --disable-keylog -Dsign_libs=0` (Debian's libssl3.so has no
# SSLKEYLOGFILE support either), then ninja for the ssl_gtest target only.
# <(python) names the interpreter for the gyp files' own helper scripts;
# through a wrapper such as pyenv's shim gyp takes three times as long.
build_tree() {
	local t=$1 what=$2 start gyp_args stamp
	start=$(date +%s)
	ln -sfn "${t##*/}" "$g/cur"
	# gyp relates paths through its (physical) working directory: the
	# source is named relative to it, so that the tree's own path appears
	# nowhere; only dist/ is named absolutely, through cur.  (A source named
	# through cur would put both configurations' ninja files in one place.)
	gyp_args=(-f ninja --depth=. --generator-output=.
		-Dpython=/usr/bin/python3
		-Dtarget_arch="$(/usr/bin/python3 "$t/nss/coreconf/detect_host_arch.py")"
		-Denable_sslkeylogfile=0 -Dsign_libs=0 -Duse_system_sqlite=1
		-Dnspr_include_dir=/usr/include/nspr -Dnspr_lib_dir=
		-Dnss_dist_dir="$g/cur/dist" -Dnss_dist_obj_dir="$g/cur/dist/Release")
	# Regenerate when the arguments or any gyp file changed (the series
	# adds a source to lib/ssl/ssl.gyp).
	stamp=$(
		{
			printf '%s\n' "${gyp_args[@]}"
			cd "$t/nss" && find . -path ./out -prune -o \( -name '*.gyp' -o -name '*.gypi' \) -print |
				LC_ALL=C sort | xargs sha256sum
		} | sha256sum | cut -d' ' -f1
	)
	if [ "$(cat "$t/nss/out/gyp.stamp" 2>/dev/null)" != "$stamp" ]; then
		say "$what: gyp"
		(cd -P "$t/nss" && "${nice[@]}" gyp "${gyp_args[@]}" nss.gyp) \
			>"$g/results/gyp-$what.log" 2>&1 ||
			{ tail -n 20 "$g/results/gyp-$what.log" >&2; die "gyp failed for the $what tree (log: $g/results/gyp-$what.log)"; }
		echo "$stamp" >"$t/nss/out/gyp.stamp"
	fi
	say "$what: ninja ssl_gtest (-j$jobs)"
	if ! "${nice[@]}" ninja -C "$g/cur/nss/out/Release" -j"$jobs" ssl_gtest >"$g/results/build-$what.log" 2>&1; then
		tail -n 30 "$g/results/build-$what.log" >&2
		die "building ssl_gtest failed for the $what tree (log: $g/results/build-$what.log)"
	fi
	say "$what: built in $(($(date +%s) - start)) s ($(grep -c '^\[' "$g/results/build-$what.log" || true) steps)"
}

if [ ! -d "$g/unpatched" ]; then
	say "extracting the unpatched source from ${dsc#"$root"/} (Debian's patches only)"
	rm -rf "$g/unpatched.tmp"
	dpkg-source -x "$dsc" "$g/unpatched.tmp" >"$g/results/dpkg-source.log" 2>&1 ||
		die "dpkg-source -x $dsc failed (log: $g/results/dpkg-source.log)"
	mv "$g/unpatched.tmp" "$g/unpatched"
	# dpkg-source copies the tarballs next to the tree it makes.
	rm -f "$g"/nss_*.tar.*
fi
build_tree "$g/unpatched" unpatched

# The patched tree starts as a copy of the built unpatched one (timestamps
# kept), then takes every file in which nss-prepare's tree differs.  Done on
# every run, so a changed series (or a patch taken out) is followed.
if [ ! -d "$g/patched" ]; then
	rm -rf "$g/patched.tmp"
	cp -a "$g/unpatched" "$g/patched.tmp"
	mv "$g/patched.tmp" "$g/patched"
fi
synced=0
while IFS= read -r line; do
	case "$line" in
	"Files $ref/"*" and $g/patched/"*" differ")
		f=${line#"Files $ref/"}
		f=${f%% and *}
		# Not -p: the file must be newer than the objects made from the
		# unpatched one, or ninja would keep them.
		cp "$ref/$f" "$g/patched/$f"
		;;
	"Only in $ref"*)
		d=${line#"Only in "}
		f=${d#*: }
		d=${d%%: *}
		rel=${d#"$ref"}
		cp -R "$d/$f" "$g/patched$rel/$f"
		;;
	"Only in $g/patched"*)
		d=${line#"Only in "}
		f=${d#*: }
		d=${d%%: *}
		rm -rf "${d:?}/$f"
		;;
	*) die "cannot sync the patched tree: diff said: $line" ;;
	esac
	synced=$((synced + 1))
done < <(diff -rq -x out "$ref/nss" "$g/patched/nss" || true)
[ "$synced" = 0 ] || say "patched: $synced file(s) taken from ${ref#"$root"/} (the current series)"
diff -rq -x out "$ref/nss" "$g/patched/nss" >/dev/null ||
	die "the patched tree still differs from ${ref#"$root"/} after syncing"
build_tree "$g/patched" patched
rm -f "$g/cur"
if [ "$synced" != 0 ] || [ -n "$(diff -rq -x out "$g/unpatched/nss" "$g/patched/nss" | head -1)" ]; then
	! cmp -s "$g/unpatched/dist/Release/bin/ssl_gtest" "$g/patched/dist/Release/bin/ssl_gtest" ||
		die "the patched ssl_gtest is the unpatched one although the sources differ (stale objects?)" \
			"delete $g/patched and run again"
fi
[ -z "$build_only" ] || exit 0

# --- The test database ------------------------------------------------------

# The certificates NSS's own driver makes (ssl_gtest_certs in
# tests/ssl_gtests/ssl_gtests.sh, with tests/common/certsetup.sh), made with
# the installed certutil of the same NSS release.
db=$g/db
if [ ! -f "$db/.done" ]; then
	say "making the test certificates (once; the RSA 8192 key takes a while)"
	rm -rf "$db"
	mkdir -p "$db"
	head -c 2048 /dev/urandom >"$g/results/noise"
	(
		set +eu
		fail=0
		# shellcheck disable=SC2317  # called by the eval'd function
		html_msg() { [ "$1" = "$2" ] || { echo "$me: $3 failed (status $1)" >&2; fail=1; }; }
		# shellcheck disable=SC2034  # read by the eval'd function
		SSLGTESTDIR=$db BINDIR=/usr/bin QADIR=$g/unpatched/nss/tests
		# shellcheck disable=SC2034
		R_NOISE_FILE=$g/results/noise
		eval "$(sed -n '/^ssl_gtest_certs()/,/^}/p' "$g/unpatched/nss/tests/ssl_gtests/ssl_gtests.sh")"
		ssl_gtest_certs
		exit $fail
	) >"$g/results/certs.log" 2>&1 || die "making the test certificates failed (log: $g/results/certs.log)"
	touch "$db/.done"
fi

# --- Run --------------------------------------------------------------------

# The excluded run's configuration: no probe can leave the process (spheres
# on a closed loopback port, no cache), every decision logged to stderr.
# ssl_gtest names its server with SSL_SetURL: "server" (tls_agent.cc), other
# literals, a long name of 56-character labels (ssl_extension_unittest.cc)
# and names of N times 'a' for the ECH padding tests (tls_ech_unittest.cc,
# k*SNILengths), or not at all (the peer address is checked then).  A name
# whose rule would not fit in a detector.conf line (199 characters) cannot
# be excluded: nss-gtest-report.py says which tests that explains.  Any
# host this list misses shows up in the report as not excluded.
run=$g/run
rm -rf "$run"
mkdir -p "$run/home"
chmod 0700 "$run" "$run/home"
tests_dir=$g/unpatched/nss/gtests/ssl_gtest
names=$(
	{
		echo server
		echo public.name
		grep -rhoE 'SSL_SetURL\([^,]*, *"[^"]+"' "$tests_dir" | sed -E 's/.*"([^"]+)"/\1/'
		sed -n '/long_name =/,/;/p' "$tests_dir/ssl_extension_unittest.cc" |
			grep -oE '"[^"]*"' | tr -d '"\n'
		echo
		grep -hE 'k[A-Za-z]*SNILengths\[\] *=' "$tests_dir/tls_ech_unittest.cc" |
			sed -E 's/.*\{(.*)\}.*/\1/' | tr ',' '\n' | while read -r n; do
			[[ "$n" =~ ^[0-9]+$ ]] && printf "%${n}s\n" "" | tr ' ' a
		done
	} | grep -v '^$' | sort -u
)
{
	echo "# written by scripts/nss-gtest.sh: exclude every host ssl_gtest uses"
	echo "spheres = 127.0.0.1:1"
	echo "quorum = 1"
	echo "cache = off"
	echo "log = decisions,stderr"
	echo "exclude = 0.0.0.0/0, ::/0"
	for n in $names; do
		[ $((${#n} + 10)) -le 199 ] && echo "exclude = $n"
	done
} >"$run/detector.conf"
chmod 0600 "$run/detector.conf"

# ssl_gtest needs no network, loopback included (in-memory sockets; no
# socket() call under strace): where a network namespace can be made (root),
# each run gets one of its own, with no interface up.
netns=()
if unshare -n true 2>/dev/null; then
	netns=(unshare -n)
fi

# run_suite NAME TREE [ENV...]: NSS_GTEST_JOBS shards at once, as NSS's
# driver runs them with GNU parallel.  ssl_gtest links NSS statically except
# libnssutil3.so, which comes from its own build (as in NSS's driver).
run_suite() {
	local name=$1 dist=$g/$2/dist/Release i pids=() rc=0 start
	shift 2
	start=$(date +%s)
	rm -f "$g/results/$name".*
	for ((i = 0; i < jobs; i++)); do
		"${netns[@]}" env -u DETECTOR_CONFIG -u DETECTOR_LOG -u DETECTOR_SPHERES -u NSS_DETECTOR_LIBRARY \
			HOME="$run/home" XDG_CONFIG_HOME="$run/home/.config" XDG_CACHE_HOME="$run/home/.cache" \
			GTEST_SHARD_INDEX="$i" GTEST_TOTAL_SHARDS="$jobs" LD_LIBRARY_PATH="$dist/lib" "$@" \
			"${nice[@]}" "$dist/bin/ssl_gtest" -d "$db" --gtest_filter="$filter" \
			--gtest_output="xml:$g/results/$name.$i.xml" \
			>"$g/results/$name.$i.log" 2>&1 &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || rc=1; done
	echo "$(($(date +%s) - start))" >"$g/results/$name.seconds"
	return $rc
}

say "running ssl_gtest ($jobs shards each, filter '$filter'): unpatched"
run_suite unpatched unpatched || true
say "patched, libdetector not loadable"
run_suite patched patched NSS_DETECTOR_LIBRARY="$run/no-such-libdetector.so.0" || true
say "patched, libdetector loaded, every host excluded"
run_suite excluded patched NSS_DETECTOR_LIBRARY="$detector_lib" \
	DETECTOR_CONFIG="$run/detector.conf" || true

exec /usr/bin/python3 "$root/scripts/nss-gtest-report.py" "$g/results" "$tree_name"
