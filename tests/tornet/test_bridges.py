"""`[spheres] bridges` on the private Tor network (issue 14, bridges part):
a sphere configured with one relay of the network as its (plain) bridge
bootstraps through it, every one of its circuits starts at the bridge, and
sphere-probe through it refuses the test world's MITM (REJECT: the sphere
saw the real server's key); the same with an obfs4 bridge: a bridge relay
started here, serving obfs4 through Debian's obfs4proxy. (test_blocked.py:
the same behind nftables.)"""

import json
import os
import re
import subprocess
import time

import pytest
import stem.control

from testworld import tornet as tn
from testworld.ports import HOST, MITM_ADDR
from testworld.processes import stop_child

SOCKS_PORT = 9192      # control 9193



def first_hops(control_port, timeout=30):
    """{first relay of every BUILT circuit} of a sphere, once it has one."""
    deadline = time.monotonic() + timeout
    with stem.control.Controller.from_port(port=control_port) as ctl:
        ctl.authenticate()
        while True:
            hops = {c.path[0][0] for c in ctl.get_circuits()
                    if c.status == "BUILT" and c.path}
            if hops or time.monotonic() > deadline:
                return hops
            time.sleep(0.5)


def bridged_tor_section(net):
    """The network's [tor] section without UseMicrodescriptors 0: with it
    and a bridge, tor 0.4.9.11 builds no circuit ("Not enough acceptable
    routers (0/3 direct ...)"), which detector-spheres now refuses."""
    tor = net.tor_section()
    assert "UseMicrodescriptors = 0\n" in tor
    return tor.replace("UseMicrodescriptors = 0\n", "")


def assert_mitm_refused(sphere_probe, world, socks_port, tries=10):
    """sphere-probe, with this one sphere (quorum 1), of server.test while
    the direct path goes to the world's MITM: REJECT, and the sphere saw
    the real server's key (a stream through the bridged sphere carried the
    TLS handshake). Without UseMicrodescriptors 0 the sphere sees only the
    exits' microdescriptor policy summary; before tornet.py's exits accepted
    every address that summary was "reject 1-65535" and no stream left a
    bridged sphere. Retried while the sphere fails (an exit may refuse
    streams in the first seconds, pitfall 5 of tornet.py)."""
    args = ["--json", "--quorum", "1",
            "--spheres", "%s:%d" % (tn.RELAY_ADDR, socks_port),
            "--resolve", "%s:%d:%s" % (HOST, world.cport, MITM_ADDR),
            "%s:%d" % (HOST, world.cport)]
    for attempt in range(tries):
        run = sphere_probe.run(*args)
        (s,) = run.json["spheres"]
        if s["status"] not in ("failed", "timeout") or attempt == tries - 1:
            break
        time.sleep(2)
    assert (run.rc, run.json["verdict"]) == (2, "reject"), run
    assert run.json["direct"]["spki_sha256"] == world.rogue.spki_sha256, run
    assert s["status"] == "mismatch", run
    assert s["spki_sha256"] == world.real.spki_sha256, run


def test_sphere_through_a_plain_bridge(net, world, sphere_probe, tmp_path):
    bridge = next(n for n in net.nodes if n.kind == "middle")
    exit_fp = net.exits[1].fingerprint
    conf = tmp_path / "bridged.conf"
    conf.write_text("[spheres]\nbridges = %s:%d %s\n\n"
                    % (tn.RELAY_ADDR, bridge.orport, bridge.fingerprint)
                    + tn.sphere_section("bridged", exit_fp, SOCKS_PORT)
                    + bridged_tor_section(net))
    state = str(tmp_path / "state")
    run = tn.spheres_tool(state, conf)
    p = run("start", "--timeout", "90")
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        torrc = open(os.path.join(state, "bridged", "torrc")).read()
        assert "UseBridges 1\n" in torrc
        assert "Bridge %s:%d %s\n" % (tn.RELAY_ADDR, bridge.orport,
                                      bridge.fingerprint) in torrc
        p = run("status", "--json")
        (st,) = json.loads(p.stdout)["spheres"]
        assert st["bootstrap"]["progress"] == 100 and st["usable"], st
        assert first_hops(SOCKS_PORT + 1) == {bridge.fingerprint}
        assert_mitm_refused(sphere_probe, world, SOCKS_PORT)
        assert first_hops(SOCKS_PORT + 1) == {bridge.fingerprint}
    finally:
        run("stop")


OBFS4PROXY = "/usr/bin/obfs4proxy"
BRIDGE_ORPORT = 7190        # the network's relays use 7000-7150
BRIDGE_OBFS4PORT = 7191
OBFS4_SOCKS_PORT = 9194     # control 9195


def start_obfs4_bridge(net, d):
    """A bridge relay of the private network that serves obfs4 (through
    Debian's obfs4proxy); returns (Popen, fingerprint, cert)."""
    os.makedirs(d, mode=0o700)
    torrc = os.path.join(d, "torrc")
    with open(torrc, "w") as f:
        f.write("\n".join(net.common_torrc() + [
            "DataDirectory " + d, "Log notice file " + d + "/notice.log",
            "Nickname obfs4bridge", "Address " + tn.RELAY_ADDR,
            "ORPort %s:%d" % (tn.RELAY_ADDR, BRIDGE_ORPORT), "SocksPort 0",
            "BridgeRelay 1", "PublishServerDescriptor 0", "AssumeReachable 1",
            "ExitRelay 0", "ExitPolicy reject *:*",
            "ServerTransportPlugin obfs4 exec " + OBFS4PROXY,
            "ServerTransportListenAddr obfs4 %s:%d" % (tn.RELAY_ADDR,
                                                        BRIDGE_OBFS4PORT),
            "ExtORPort auto"]) + "\n")
    proc = subprocess.Popen([tn.TOR, "-f", torrc], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    line = os.path.join(d, "pt_state", "obfs4_bridgeline.txt")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(os.path.join(d, "fingerprint")) as f:
                fp = f.read().split()[1]
            with open(line) as f:
                cert = re.search(r"cert=(\S+)", f.read()).group(1)
            return proc, fp, cert
        except (OSError, AttributeError, IndexError):
            time.sleep(0.5)
    proc.kill()
    proc.wait()
    pytest.fail("the obfs4 bridge did not come up: see %s/notice.log" % d,
                pytrace=False)


@pytest.mark.skipif(not os.access(OBFS4PROXY, os.X_OK),
                    reason="obfs4proxy is not installed (Debian package "
                    "obfs4proxy)")
def test_sphere_through_an_obfs4_bridge(net, world, sphere_probe, tmp_path):
    proc, fp, cert = start_obfs4_bridge(net, str(tmp_path / "bridge"))
    try:
        conf = tmp_path / "obfs4.conf"
        conf.write_text(
            "[spheres]\nbridges = obfs4 %s:%d %s cert=%s iat-mode=0\n\n"
            % (tn.RELAY_ADDR, BRIDGE_OBFS4PORT, fp, cert)
            + tn.sphere_section("hidden", net.exits[2].fingerprint, OBFS4_SOCKS_PORT)
            + bridged_tor_section(net))
        state = str(tmp_path / "state")
        run = tn.spheres_tool(state, conf, timeout=150)
        p = run("start", "--timeout", "120")
        try:
            assert p.returncode == 0, p.stdout + p.stderr
            torrc = open(os.path.join(state, "hidden", "torrc")).read()
            assert "ClientTransportPlugin obfs4 exec %s\n" % OBFS4PROXY \
                in torrc
            p = run("status", "--json")
            (st,) = json.loads(p.stdout)["spheres"]
            assert st["bootstrap"]["progress"] == 100 and st["usable"], st
            assert first_hops(OBFS4_SOCKS_PORT + 1) == {fp}
            assert_mitm_refused(sphere_probe, world, OBFS4_SOCKS_PORT)
            assert first_hops(OBFS4_SOCKS_PORT + 1) == {fp}
        finally:
            run("stop")
    finally:
        stop_child(proc, 15)
