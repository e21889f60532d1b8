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
# The tests run their own mail, XMPP and LDAP servers (unprivileged, on
# loopback, with their own configuration): installing the packages must not
# configure or start the system's instances.  Postfix is installed with "No
# configuration"; a policy-rc.d we add (only if none exists) refuses every
# service start during this install and is removed afterwards.
debconf-set-selections <<'EOP'
postfix postfix/main_mailer_type select No configuration
slapd slapd/no_configuration boolean true
EOP
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	policy=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\n# make deps: no service starts while installing\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT
	trap 'exit 1' INT TERM
fi
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
