"""The attacker who blocks Tor (issue 14): a sphere whose connections to
every relay of the private network are dropped by nftables, without and
with an obfs4 bridge.

The blocking applies to one user: detector-spheres (and so its tor and
obfs4proxy) runs as uid 65534 here, and an nftables rule in the test's
private network namespace drops that user's TCP to every relay port
(7000-7190, the bridge's own ORPort included), leaving only the bridge's
obfs4 port. Without bridges, `start` gives up naming the sphere "Tor
unreachable (possible blocking)"; with the obfs4 bridge it
bootstraps, every circuit starts at the bridge, and sphere-probe through
it refuses the test world's MITM (REJECT).
Runs only inside `tornet.py isolate` (never touches the machine's own
firewall).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from testworld import tornet as tn
from testworld.processes import stop_child
from test_bridges import (BRIDGE_OBFS4PORT, OBFS4PROXY, assert_mitm_refused,
                          bridged_tor_section, first_hops, start_obfs4_bridge)

UID = 65534                 # nobody
SOCKS_PORT = 9196           # control 9197
NFT = shutil.which("nft") or "/usr/sbin/nft"
TABLE = "detector_blocked"

pytestmark = pytest.mark.skipif(
    os.environ.get("DETECTOR_TORNET_ISOLATED") != "1" or os.geteuid() != 0
    or not os.access(NFT, os.X_OK) or not os.access(OBFS4PROXY, os.X_OK),
    reason="needs root inside `tornet.py isolate`, nftables and obfs4proxy")


def nft(*args):
    subprocess.run([NFT] + list(args), check=True, capture_output=True)


@pytest.fixture
def blocked(net):
    """Drop uid 65534's TCP to the relays' ports while the test runs."""
    nft("add", "table", "inet", TABLE)
    nft("add", "chain", "inet", TABLE, "out",
        "{ type filter hook output priority 0; }")
    nft("add", "rule", "inet", TABLE, "out", "meta", "skuid", str(UID),
        "tcp", "dport", "7000-%d" % (BRIDGE_OBFS4PORT - 1), "drop")
    try:
        yield net
    finally:
        nft("delete", "table", "inet", TABLE)


class Walled:
    """A sphere 'walled' whose detector-spheres, tor and obfs4proxy run as
    uid 65534, its files in a folder that user can reach."""

    def __init__(self, net):
        self.net = net
        self.work = tempfile.mkdtemp(prefix="tornet-blocked-", dir="/tmp")
        os.chmod(self.work, 0o711)
        self.state = os.path.join(self.work, "state")
        os.mkdir(self.state, 0o700)
        os.chown(self.state, UID, UID)
        geoip = os.path.join(self.work, "geoip-empty")
        shutil.copy(net.path("geoip-empty"), geoip)
        os.chmod(geoip, 0o644)
        self.tor = bridged_tor_section(net).replace(net.path("geoip-empty"),
                                                    geoip)
        self.sphere = tn.sphere_section("walled", net.exits[3].fingerprint, SOCKS_PORT)

    def config(self, name, spheres_section=""):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(spheres_section + self.sphere + self.tor)
        os.chmod(path, 0o644)
        return path

    def run(self, conf, *args, timeout=150):
        return subprocess.run(
            ["setpriv", "--reuid=%d" % UID, "--regid=%d" % UID,
             "--clear-groups", sys.executable, tn.SPHERES_TOOL]
            + list(args) + ["--config", conf, "--state-dir", self.state],
            capture_output=True, text=True, timeout=timeout,
            env={"PATH": "/usr/bin:/bin", "HOME": self.work,
                 "PYTHONDONTWRITEBYTECODE": "1"})

    def remove(self):
        shutil.rmtree(self.work, ignore_errors=True)


def test_blocked_sphere_is_reported_as_tor_unreachable(blocked):
    walled = Walled(blocked)
    plain = walled.config("plain.conf")
    try:
        p = walled.run(plain, "start", "--timeout", "25")
        assert p.returncode == 1, p.stdout + p.stderr
        assert "sphere walled not usable after 25 s: stuck at" in p.stderr
        assert "Tor unreachable (possible blocking)" in p.stderr, p.stderr
        assert "'bridges ='" in p.stderr
    finally:
        walled.run(plain, "stop")
        walled.remove()


def test_blocked_sphere_gets_through_an_obfs4_bridge(blocked, world,
                                                    sphere_probe, tmp_path):
    net = blocked
    proc, fp, cert = start_obfs4_bridge(net, str(tmp_path / "bridge"))
    walled = Walled(net)
    try:
        bridged = walled.config(
            "bridged.conf", "[spheres]\nbridges = obfs4 %s:%d %s cert=%s "
            "iat-mode=0\n\n" % (tn.RELAY_ADDR, BRIDGE_OBFS4PORT, fp, cert))
        p = walled.run(bridged, "start", "--timeout", "120")
        try:
            assert p.returncode == 0, p.stdout + p.stderr
            p = walled.run(bridged, "status", "--json")
            (st,) = json.loads(p.stdout)["spheres"]
            assert st["bootstrap"]["progress"] == 100 and st["usable"], st
            assert first_hops(SOCKS_PORT + 1) == {fp}
            assert_mitm_refused(sphere_probe, world, SOCKS_PORT)
            assert first_hops(SOCKS_PORT + 1) == {fp}
        finally:
            walled.run(bridged, "stop")
    finally:
        walled.remove()
        stop_child(proc, 15)
