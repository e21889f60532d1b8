#!/bin/bash
# bundled-app-deps.sh: install an application that bundles its own NSS
# (firefox-esr, thunderbird) at the version its coreleases/*.bundled
# descriptor is for, when Debian's archive serves that version; say why not
# otherwise.  Never fails `make deps` for it: the application's test skips
# loudly instead (mk/firefox.mk, mk/thunderbird.mk).
#
#   scripts/bundled-app-deps.sh PACKAGE TEST-TARGET
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: scripts/bundled-app-deps.sh PACKAGE TEST-TARGET" >&2; exit 2; }
pkg=$1 test_target=$2
me=${test_target#test-}-deps
root=$(cd "$(dirname "$0")/.." && pwd)
# die, say
. "$root/scripts/common.sh"

descriptor= want=
for f in "$root"/coreleases/*.bundled; do
	[ -f "$f" ] || continue
	v=$(awk -v p="$pkg" '$1 == "app" && $2 == p { print $3; exit }' "$f")
	if [ -n "$v" ]; then
		descriptor=${f#"$root"/} want=$v
		break
	fi
done
if [ -z "$want" ]; then
	say "no coreleases/*.bundled names $pkg; not installing it"
	exit 0
fi
have=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$pkg" 2>/dev/null | awk '$1 == "ii" { print $2 }')
if [ "$have" = "$want" ]; then
	say "$pkg $want installed ($descriptor)"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	say "$pkg ${have:-not installed}; the co-release $descriptor is for $want: run 'make deps' as root to install it"
	exit 0
fi
served=$(apt-cache madison "$pkg" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }')
if ! printf '%s\n' "$served" | grep -qxF "$want"; then
	say "Debian's archive no longer serves $pkg $want (the version $descriptor is for; it serves: $(echo $served))"
	say "keeping $pkg ${have:-not installed}; make $test_target will skip until a descriptor for a served version exists (coreleases/README.md)"
	exit 0
fi
say "installing $pkg=$want (co-release $descriptor)"
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y \
	--no-install-recommends --allow-downgrades "$pkg=$want"
