"""Gateway mode with network namespaces.

    netns IN  (192.168.150.2) --veth-- 192.168.150.1  this namespace  (spheres,
    netns OUT (192.168.151.2) --veth-- 192.168.151.1                   relays)

A gateway sphere listens on 192.168.150.1 with --allow 192.168.150.0/24: the
client in IN gets through Tor to server.test; the client in OUT, which can
reach 192.168.150.1 (shown with a plain TCP listener), is refused by tor's
SocksPolicy. The namespaces, addresses and links exist only inside the test
session's own network namespace (make test-tor) and are deleted afterwards.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from testworld import tornet as tn
from testworld.processes import python_env, python_module

GW_ADDR = "192.168.150.1"
ALLOWED = "192.168.150.0/24"
LINKS = {"in": ("192.168.150.1", "192.168.150.2"),
         "out": ("192.168.151.1", "192.168.151.2")}
SOCKS_PORT = 9170


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True,
                   timeout=10)


@pytest.fixture(scope="module")
def namespaces():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("gateway test needs root (ip netns add, veth)")
    if not os.environ.get("DETECTOR_TORNET_NETNS"):
        pytest.skip("gateway test adds links and addresses: run it inside "
                    "'python3 -m testworld.tornet isolate' (make test-tor)")
    tag = os.getpid() % 100000
    made = {}
    try:
        for side, (host_addr, ns_addr) in LINKS.items():
            ns = "dtn-%s-%d" % (side, tag)
            host_if, ns_if = "dg%s%d" % (side[0], tag), "dgp%s%d" % (side[0], tag)
            ip("netns", "add", ns)
            made[side] = ns
            ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            ip("link", "set", ns_if, "netns", ns)
            ip("addr", "add", host_addr + "/24", "dev", host_if)
            ip("link", "set", host_if, "up")
            ip("-n", ns, "addr", "add", ns_addr + "/24", "dev", ns_if)
            ip("-n", ns, "link", "set", ns_if, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "route", "add", "default", "via", host_addr)
        yield made
    finally:
        for ns in made.values():      # deleting a netns deletes its veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def gateway(tornet, namespaces, tmp_path_factory):
    """One gateway sphere (pinned to the first exit) on GW_ADDR."""
    d = tmp_path_factory.mktemp("gateway")
    conf = d / "gateway.conf"
    conf.write_text(tn.sphere_section("gateway", tornet.exits[0].fingerprint, SOCKS_PORT)
                    + tornet.tor_section())
    base = [sys.executable, tn.SPHERES_TOOL]
    common = ["--config", str(conf), "--state-dir", str(d / "state")]
    p = subprocess.run(base + ["start"] + common + [
        "--listen", GW_ADDR, "--allow", ALLOWED, "--timeout", "60"],
        capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    yield {"conf": conf, "common": common, "base": base}
    subprocess.run(base + ["stop"] + common, capture_output=True, timeout=60)


def probe_from(tornet, ns):
    p = subprocess.run(
        ["ip", "netns", "exec", ns] + python_module(
            "testworld.tornet", "probe",
            "--socks", "%s:%d" % (GW_ADDR, SOCKS_PORT),
            "--cafile", tornet.server_cert, "--timeout", "30",
            tn.SERVER_NAME, str(tornet.server[2])),
        env=python_env(), capture_output=True, text=True, timeout=60)
    return json.loads(p.stdout)


def test_gateway_torrc_binds_the_gateway_address(gateway):
    state = gateway["common"][3]
    torrc = open(os.path.join(state, "gateway", "torrc")).read().splitlines()
    assert "SocksPort %s:%d" % (GW_ADDR, SOCKS_PORT) in torrc
    assert "ControlPort 127.0.0.1:%d" % (SOCKS_PORT + 1) in torrc
    assert torrc.index("SocksPolicy accept " + ALLOWED) < \
        torrc.index("SocksPolicy reject *")


def test_client_inside_the_allowed_network_gets_through(tornet, namespaces,
                                                         gateway):
    r = probe_from(tornet, namespaces["in"])
    assert r["ok"], r


def test_client_outside_the_allowed_network_is_refused(tornet, namespaces,
                                                       gateway):
    # OUT can reach the gateway address: a plain listener answers it ...
    with socket.socket() as lst:
        lst.bind((GW_ADDR, 9199))
        lst.listen(1)
        p = subprocess.run(
            ["ip", "netns", "exec", namespaces["out"], sys.executable, "-c",
             "import socket; socket.create_connection(('%s', 9199), 5)" % GW_ADDR],
            capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
    # ... but tor's SocksPolicy refuses it
    r = probe_from(tornet, namespaces["out"])
    assert not r["ok"]
    assert "closed" in r["error"] or "reset" in r["error"].lower(), r


def test_gateway_without_allow_list_is_a_config_error(gateway):
    p = subprocess.run(gateway["base"] + ["start", "--config",
                       str(gateway["conf"]), "--state-dir", "/nonexistent/x",
                       "--listen", GW_ADDR],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "gateway mode (listen = %s) needs an allow list" % GW_ADDR in p.stderr
