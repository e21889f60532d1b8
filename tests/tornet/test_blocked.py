"""The attacker who blocks Tor (issue 14): a sphere whose connections to
every relay of the private network are dropped by nftables, without and
with an obfs4 bridge.

The blocking applies to one user: detector-spheres (and so its tor and
obfs4proxy) runs as uid 65534 here, and an nftables rule in the test's
private network namespace drops that user's TCP to every relay port
(7000-7190, the bridge's own ORPort included), leaving only the bridge's
obfs4 port. Without bridges, `start` gives up naming the sphere "Tor
unreachable (possible blocking)"; with the obfs4 bridge it bootstraps,
every circuit starts at the bridge, and it carries TLS to server.test.
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

import socks5
import tornet as tn
from test_bridges import BRIDGE_OBFS4PORT, OBFS4PROXY, start_obfs4_bridge

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


def test_blocked_sphere_is_unreachable_until_an_obfs4_bridge(blocked,
                                                             tmp_path):
    net = blocked
    proc, fp, cert = start_obfs4_bridge(net, str(tmp_path / "bridge"))
    work = tempfile.mkdtemp(prefix="tornet-blocked-", dir="/tmp")
    try:
        os.chmod(work, 0o711)
        state = os.path.join(work, "state")
        os.mkdir(state, 0o700)
        os.chown(state, UID, UID)
        geoip = os.path.join(work, "geoip-empty")
        shutil.copy(net.path("geoip-empty"), geoip)
        os.chmod(geoip, 0o644)
        text = open(os.path.join(net.dir, "spheres.conf")).read()
        tor = text[text.index("[tor]"):].replace(net.path("geoip-empty"),
                                                 geoip)
        sphere = ("[sphere walled]\nexit_nodes = $%s\nsocks_port = %d\n\n"
                  % (net.exits[3].fingerprint, SOCKS_PORT))
        plain = os.path.join(work, "plain.conf")
        bridged = os.path.join(work, "bridged.conf")
        with open(plain, "w") as f:
            f.write(sphere + tor)
        with open(bridged, "w") as f:
            f.write("[spheres]\nbridges = obfs4 %s:%d %s cert=%s "
                    "iat-mode=0\n\n%s%s" % (tn.RELAY_ADDR, BRIDGE_OBFS4PORT,
                                            fp, cert, sphere, tor))
        for c in (plain, bridged):
            os.chmod(c, 0o644)

        def run(conf, *args, timeout=150):
            return subprocess.run(
                ["setpriv", "--reuid=%d" % UID, "--regid=%d" % UID,
                 "--clear-groups", sys.executable, tn.SPHERES_TOOL]
                + list(args) + ["--config", conf, "--state-dir", state],
                capture_output=True, text=True, timeout=timeout,
                env={"PATH": "/usr/bin:/bin", "HOME": work,
                     "PYTHONDONTWRITEBYTECODE": "1"})

        p = run(plain, "start", "--timeout", "25")
        try:
            assert p.returncode == 1, p.stdout + p.stderr
            assert "sphere walled not usable after 25 s: stuck at" in p.stderr
            assert "Tor unreachable (possible blocking)" in p.stderr, p.stderr
            assert "'bridges ='" in p.stderr
        finally:
            run(plain, "stop")

        p = run(bridged, "start", "--timeout", "120")
        try:
            assert p.returncode == 0, p.stdout + p.stderr
            sock = socks5.connect((tn.RELAY_ADDR, SOCKS_PORT),
                                  tn.SERVER_NAME, net.server[2])
            assert net._tls_handshake(sock)
            p = run(bridged, "status", "--json")
            (st,) = json.loads(p.stdout)["spheres"]
            assert st["usable"] and st["circuits"]
            assert all(c["path"][0]["fingerprint"] == fp
                       for c in st["circuits"]), st["circuits"]
        finally:
            run(bridged, "stop")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
