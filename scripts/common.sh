# scripts/common.sh: sourced by DetecTor's bash scripts (never run).
# The caller sets `me` (its name, the prefix of every line it prints) first.
#
#   die MESSAGE [DETAIL...]   MESSAGE and each DETAIL on stderr, exit 1
#   say TEXT...               one line on stdout

die() {
	{
		echo "$me: error: $1"
		shift
		for line in "$@"; do echo "$me:   $line"; done
	} >&2
	exit 1
}
say() { echo "$me: $*"; }
