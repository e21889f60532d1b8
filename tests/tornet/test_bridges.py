"""`[spheres] bridges` on the private Tor network (issue 14, bridges part):
a sphere configured with one relay of the network as its (plain) bridge
bootstraps through it, every one of its circuits starts at the bridge, and
it carries a TLS connection to the test server. (Blocking every other
relay with nftables in a namespace, and an obfs4 bridge, are not tested
here yet.)"""

import json
import os
import subprocess
import sys

import socks5
import tornet as tn

SOCKS_PORT = 9192      # control 9193


def test_sphere_through_a_plain_bridge(net, tmp_path):
    bridge = next(n for n in net.nodes if n.kind == "middle")
    exit_fp = net.exits[1].fingerprint
    text = open(os.path.join(net.dir, "spheres.conf")).read()
    conf = tmp_path / "bridged.conf"
    conf.write_text("[spheres]\nbridges = %s:%d %s\n\n[sphere bridged]\n"
                    "exit_nodes = $%s\nsocks_port = %d\n\n%s"
                    % (tn.RELAY_ADDR, bridge.orport, bridge.fingerprint,
                       exit_fp, SOCKS_PORT, text[text.index("[tor]"):]))
    state = str(tmp_path / "state")

    def run(*args):
        return subprocess.run(
            [sys.executable, tn.SPHERES_TOOL] + list(args)
            + ["--config", str(conf), "--state-dir", state],
            capture_output=True, text=True, timeout=120)

    p = run("start", "--timeout", "90")
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        torrc = open(os.path.join(state, "bridged", "torrc")).read()
        assert "UseBridges 1\n" in torrc
        assert "Bridge %s:%d %s\n" % (tn.RELAY_ADDR, bridge.orport,
                                      bridge.fingerprint) in torrc
        sock = socks5.connect((tn.RELAY_ADDR, SOCKS_PORT), tn.SERVER_NAME,
                              net.server[2])
        assert net._tls_handshake(sock)
        p = run("status", "--json")
        assert p.returncode == 0, p.stdout + p.stderr
        (st,) = json.loads(p.stdout)["spheres"]
        assert st["usable"] and st["circuits"]
        for c in st["circuits"]:
            assert c["path"][0]["fingerprint"] == bridge.fingerprint, c
            assert c["exit"]["fingerprint"] == exit_fp, c
    finally:
        run("stop")
