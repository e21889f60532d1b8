"""Rerouting through a real Tor sphere (issue 12, acceptance 4).

Unmodified tstclnt (Debian's) under detector-run, with `on_mitm = reroute`:
its own name resolution (a private /etc/hosts, as a hostile network would
answer) sends server.test to a MITM holding a CA-valid rogue certificate;
the five spheres are the private Tor network's tor clients, whose exits
resolve server.test to the real server. The patched libssl refuses the
direct path and makes the connection again, from ClientHello, through one
of the spheres that saw the real key: a real Tor circuit to a real exit.

The servers are integration/test_reroute.py's MarkerServer: the real one
answers with a marker only it knows, the MITM with its own and counts the
application bytes and the handshakes it completes. The world's test CA and
its two certificates (tornet's conftest `world`) are used, on a port of
their own (a fresh name is not needed: the exits resolve server.test as
every other test here does).

The control (`refuse`) is the same run failing with DETECTOR_ERROR_MITM:
the reroute test fails with main's libssl3.so of before the patch, which
refuses exactly so."""

import os
import re
import secrets
import subprocess
import tempfile

import pytest

from integration.test_nss_hook import DETECTOR_RUN, TSTCLNT, run_app
from integration.test_reroute import MarkerServer
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, free_port

CONFIG = "[detector]\non_mitm = %s\n"


class Servers:
    """The real server and the MITM on one port, an NSS database trusting
    the world's CA, the request tstclnt sends."""

    def __init__(self, world, scratch):
        self.dir = tempfile.mkdtemp(prefix="reroute-", dir=scratch)
        self.port = free_port(REAL_ADDR, MITM_ADDR)
        self.real_marker = "REAL-" + secrets.token_hex(8)
        self.mitm_marker = "MITM-" + secrets.token_hex(8)
        self.real = MarkerServer(REAL_ADDR, self.port, world.real, self.real_marker)
        self.mitm = MarkerServer(MITM_ADDR, self.port, world.rogue, self.mitm_marker)
        self.db = "sql:" + os.path.join(self.dir, "nssdb")
        os.mkdir(self.db[4:], 0o700)
        for argv in (["-N", "--empty-password"],
                     ["-A", "-n", "testca", "-t", "C,,", "-i", world.pki.ca_crt]):
            subprocess.run(["certutil", "-d", self.db] + argv, check=True,
                           capture_output=True)
        self.request = os.path.join(self.dir, "request")
        with open(self.request, "w") as f:
            f.write("GET / HTTP/1.0\r\n\r\n")

    def tstclnt(self):
        return [TSTCLNT, "-h", HOST, "-p", str(self.port), "-d", self.db,
                "-A", self.request]

    def stop(self):
        self.real.stop()
        self.mitm.stop()


@pytest.fixture(scope="module")
def servers(world, scratch):
    if not os.access(DETECTOR_RUN, os.X_OK):
        pytest.fail("%s is missing: run `make`" % DETECTOR_RUN, pytrace=False)
    s = Servers(world, scratch)
    yield s
    s.stop()


def run_tstclnt(net, servers, policy):
    with servers.mitm._lock:
        servers.mitm.app_bytes = servers.mitm.handshakes = 0
    home = tempfile.mkdtemp(prefix=policy + "-", dir=servers.dir)
    return run_app(None, home, servers.tstclnt(), MITM_ADDR,
                   config=CONFIG % policy, spheres=net.socks_addresses)


def assert_mitm_got_nothing(servers, app):
    assert servers.mitm_marker not in app.out, app
    assert servers.mitm.app_bytes == 0, "the MITM received application data:\n%s" % app
    assert servers.mitm.handshakes == 0, "the MITM completed a handshake:\n%s" % app


def test_tstclnt_is_rerouted_through_a_tor_sphere(net, servers):
    app = run_tstclnt(net, servers, "reroute")
    assert app.rc == 0, app
    assert servers.real_marker in app.out, "the real server's answer must arrive:\n%s" % app
    assert_mitm_got_nothing(servers, app)
    via = re.search(r"REROUTED %s:%d via (127\.0\.0\.1:\d+)"
                    % (re.escape(HOST), servers.port), app.err)
    assert via, app
    assert via.group(1) in net.socks_addresses.split(","), app
    print("rerouted via %s in %.2f s" % (via.group(1), app.elapsed))


def test_the_same_run_with_refuse_is_refused(net, servers):
    app = run_tstclnt(net, servers, "refuse")
    assert app.rc != 0, app
    assert servers.real_marker not in app.out, app
    assert "DETECTOR_ERROR_MITM" in app.out + app.err, app
    assert "REROUTED" not in app.err, app
    assert_mitm_got_nothing(servers, app)
