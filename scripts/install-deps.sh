#!/bin/sh
# Install the Debian packages listed in mk/debian-packages.txt that are not
# installed yet. Runs `apt-get update` first whenever something is missing.
set -eu
list=${1:-mk/debian-packages.txt}
pkgs=$(grep -v '^[[:space:]]*#' "$list" | grep -v '^[[:space:]]*$')
missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "deps: all $(echo $pkgs | wc -w) Debian packages present"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing" >&2
	echo "deps: run 'make deps' as root (it calls apt-get install)" >&2
	exit 1
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
