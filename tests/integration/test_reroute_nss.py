"""Rerouting through the NSS patch (issue 12, docs/reroute.md section 4):
unmodified NSS applications under detector-run, whose direct path to
server.test goes to a rogue-CA MITM, reach the real server through a sphere
with `on_mitm = reroute`, and the MITM receives no byte of application data.

The parts are real: Debian's tstclnt, the non-blocking and blocking
tests/hook/nbclient, the asynchronously authenticating tests/hook/asyncclient
(as Firefox: SSL_AuthCertificateComplete) and libpurple's NSS plugin
(tests/hook/purple_client, its descriptor watched by glib), each with the
patched libssl3.so; a real TLS server that answers with a marker only it
knows; a MITM on another address with a certificate from the same CA that
counts the application bytes it receives and answers with its own marker;
five Tor-like SOCKS5 spheres that resolve the names to the real server.
The clients' name resolution sends server.test (and other.test) to the
MITM (a private /etc/hosts, as an attacker on the network would).

Spheres that turn after the check (TurningSphere) stand in for what can go
wrong between the check and the reroute: a lying exit, spheres too slow for
the reroute's deadline, spheres gone."""

import os
import re
import secrets
import shutil
import subprocess
import tempfile

import pytest

from conftest import BUILD
from test_nss_hook import DETECTOR_RUN, NBCLIENT, TSTCLNT, run_app
from test_reroute import MarkerServer
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, free_port
from testworld.socks5 import Socks5Server
from testworld.tls import Pki

ASYNCCLIENT = os.path.join(BUILD, "tests", "asyncclient")
PURPLE_CLIENT = os.path.join(BUILD, "tests", "purple_client")
OTHER = "other.test"
REROUTE = "[detector]\non_mitm = reroute\n"
REFUSE = "[detector]\non_mitm = refuse\n"


class TurningSphere(Socks5Server):
    """A sphere honest for the check, then `turn` for the reroute, which it
    tells apart by its fresh SOCKS5 isolation token (the check's probes all
    use the first one it sees): "lie" (the names go to the MITM, as an exit
    behind the interceptor), "stall" (no answer to the CONNECT) or "down"
    (hangs up)."""

    def __init__(self, hosts, turn):
        self.turn, self.first_token, self.turned = turn, None, 0
        super().__init__(hosts)

    def _request(self, conn, rec):
        with self._lock:
            if self.first_token is None:
                self.first_token = rec["password"]
            turned = rec["password"] != self.first_token
            self.turned += turned
        if turned and self.turn == "down":
            raise OSError("down")
        if turned and self.turn == "stall":
            self._stop.wait(30)
            raise OSError("stalled")
        if turned and self.turn == "lie":
            self.hosts = {HOST: MITM_ADDR, OTHER: MITM_ADDR}
        return super()._request(conn, rec)


class NssRerouteWorld:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="detector-reroute-nss-")
        self.pki = Pki(self.dir, names=[OTHER]).build()
        self.port = free_port(REAL_ADDR, MITM_ADDR)
        self.real_marker = "REAL-" + secrets.token_hex(8)
        self.mitm_marker = "MITM-" + secrets.token_hex(8)
        self.real = MarkerServer(REAL_ADDR, self.port, self.pki.real, self.real_marker)
        self.mitm = MarkerServer(MITM_ADDR, self.port, self.pki.rogue, self.mitm_marker)
        self.db = os.path.join(self.dir, "nssdb")
        os.mkdir(self.db, 0o700)
        subprocess.run(["certutil", "-N", "-d", "sql:" + self.db, "--empty-password"],
                       check=True, capture_output=True)
        subprocess.run(["certutil", "-A", "-d", "sql:" + self.db, "-n", "testca", "-t",
                        "C,,", "-i", self.pki.ca_crt], check=True, capture_output=True)
        self.request = os.path.join(self.dir, "request")
        with open(self.request, "w") as f:
            f.write("GET / HTTP/1.0\r\n\r\n")
        self.spheres = []

    def start_spheres(self, turn=None):
        """Five spheres for one test (the last test's stop): honest, or
        turning after the check."""
        hosts = {HOST: REAL_ADDR, OTHER: REAL_ADDR}
        self.stop_spheres()
        self.spheres = [TurningSphere(hosts, turn) if turn else Socks5Server(hosts)
                        for _ in range(5)]
        with self.mitm._lock:
            self.mitm.app_bytes = 0
            self.mitm.handshakes = 0
        return ",".join(s.address for s in self.spheres)

    def stop_spheres(self):
        for s in self.spheres:
            s.stop()
        self.spheres = []

    def stop(self):
        self.stop_spheres()
        self.real.stop()
        self.mitm.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # The clients, each told to exchange one request after the handshake.
    def tstclnt(self, *extra):
        return [TSTCLNT, "-h", HOST, "-p", str(self.port), "-d", "sql:" + self.db,
                "-A", self.request, *extra]

    def nbclient(self, *words, hosts=HOST, count=1):
        return [NBCLIENT, self.db, hosts, str(self.port), MITM_ADDR, str(count),
                "nocache", "fetch", *words]

    def asyncclient(self, *options):
        return [ASYNCCLIENT, "--fetch", *options, self.db, HOST, str(self.port), MITM_ADDR]

    def purple(self):
        return [PURPLE_CLIENT, "--fetch", self.pki.ca_crt, HOST, str(self.port), "30"]


@pytest.fixture(scope="module")
def nw():
    for tool in (DETECTOR_RUN, NBCLIENT, ASYNCCLIENT, PURPLE_CLIENT):
        if not os.path.exists(tool):
            pytest.fail("%s is missing: run `make`" % tool)
    w = NssRerouteWorld()
    yield w
    w.stop()


def run(nw, tmpdir, argv, config, turn=None, log="decisions"):
    spheres = nw.start_spheres(turn)
    return run_app(None, tmpdir, argv, MITM_ADDR, config=config, spheres=spheres,
                   log=log)


def assert_rerouted(nw, app):
    assert app.rc == 0, app
    assert nw.real_marker in app.out, "the real server's answer must arrive:\n%s" % app
    assert nw.mitm_marker not in app.out, app
    assert re.search(r"REROUTED %s:%d via 127\.0\.0\.1:\d+" % (re.escape(HOST), nw.port),
                     app.err), app
    assert nw.mitm.app_bytes == 0, "the MITM received application data:\n%s" % app
    assert nw.mitm.handshakes == 0, "the MITM completed a handshake:\n%s" % app


def assert_refused(nw, app):
    assert nw.real_marker not in app.out and nw.mitm_marker not in app.out, app
    assert "DETECTOR_ERROR_MITM" in app.out + app.err, app
    assert nw.mitm.app_bytes == 0, "the MITM received application data:\n%s" % app
    assert nw.mitm.handshakes == 0, "the MITM completed a handshake:\n%s" % app


# -- acceptance 1: unmodified tstclnt

@pytest.mark.parametrize("version", ["tls1.3", "tls1.2"])
def test_tstclnt_is_rerouted_to_the_real_server(nw, tmpdir_, version):
    app = run(nw, tmpdir_, nw.tstclnt("-V", "%s:%s" % (version, version)), REROUTE)
    assert_rerouted(nw, app)


def test_tstclnt_with_refuse_fails_as_before(nw, tmpdir_):
    app = run(nw, tmpdir_, nw.tstclnt(), REFUSE)
    assert app.rc != 0, app
    assert_refused(nw, app)
    assert "REROUTED" not in app.err and "rerouting" not in app.err, app


# -- acceptance 2: the other kinds of application

@pytest.mark.parametrize("words", [(), ("tls12",), ("blocking",), ("blocking", "tls12")],
                         ids=["nonblocking", "nonblocking-tls12", "blocking",
                              "blocking-tls12"])
def test_nbclient_is_rerouted(nw, tmpdir_, words):
    app = run(nw, tmpdir_, nw.nbclient(*words), REROUTE)
    assert_rerouted(nw, app)
    assert "resumed: 0" in app.out, app


def test_nonblocking_client_is_never_blocked_by_the_reroute(nw, tmpdir_):
    app = run(nw, tmpdir_, nw.nbclient(), REROUTE)
    assert_rerouted(nw, app)
    [max_call] = [int(x) for x in re.findall(r"^max_call_ms: (\d+)$", app.out, re.M)]
    assert max_call <= 200, "a call kept the application's thread %d ms" % max_call


def test_async_client_is_rerouted_on_its_own_thread(nw, tmpdir_):
    app = run(nw, tmpdir_, nw.asyncclient(), REROUTE)
    assert_rerouted(nw, app)
    assert "handshake_callbacks: 1 on the application's thread, 0 on others" in app.out, app


def test_libpurple_client_is_rerouted(nw, tmpdir_):
    app = run(nw, tmpdir_, nw.purple(), REROUTE)
    assert_rerouted(nw, app)
    assert "result: connected" in app.out, app
    # glib was already polling the descriptor when it was swapped: the
    # interceptor's connection is shut down, which wakes it (libpurple's own
    # 5 s timer would otherwise be what wakes it).
    [elapsed] = [int(x) for x in re.findall(r"^elapsed_ms: (\d+)$", app.out, re.M)]
    assert elapsed < 3000, "libpurple took %d ms:\n%s" % (elapsed, app)


@pytest.mark.parametrize("words", [(), ("tls12",)], ids=["tls13", "tls12"])
def test_a_rerouted_session_is_not_resumed(nw, tmpdir_, words):
    # NSS's session cache on: the rerouted session (its peer a sphere) is
    # never cached, so the second connection is rerouted again, not resumed.
    argv = [a for a in nw.nbclient(*words, count=2) if a != "nocache"] + ["cache"]
    app = run(nw, tmpdir_, argv, REROUTE)
    assert re.findall(r"^resumed: (\d)$", app.out, re.M) == ["0", "0"], app
    assert app.err.count("REROUTED %s:%d via" % (HOST, nw.port)) == 2, app
    assert nw.mitm.app_bytes == 0, app


# -- acceptance 5: per-site policy, one process

def test_one_site_reroutes_another_refuses_in_one_process(nw, tmpdir_):
    config = REFUSE + "[site %s]\non_mitm = reroute\n" % HOST
    app = run(nw, tmpdir_, nw.nbclient(hosts="%s,%s" % (HOST, OTHER), count=2), config)
    results = re.findall(r"^result: (.*)$", app.out, re.M)
    assert len(results) == 2, app
    assert results[0] == "ok" and results[1].startswith("failed DETECTOR_ERROR_MITM"), app
    assert app.out.count(nw.real_marker) == 1, app
    assert "REROUTED %s:%d" % (HOST, nw.port) in app.err, app
    assert "REROUTED %s" % OTHER not in app.err, app
    assert re.search(r"%s:%d REFUSED \(reject\)" % (re.escape(OTHER), nw.port), app.err), app
    assert nw.mitm.app_bytes == 0, app


# -- acceptance 6: what can go wrong between the check and the reroute

@pytest.mark.parametrize("client", ["tstclnt", "nbclient", "blocking", "asyncclient"])
def test_a_lying_sphere_at_reroute_time_is_refused(nw, tmpdir_, client):
    argv = {"tstclnt": nw.tstclnt(), "nbclient": nw.nbclient(),
            "blocking": nw.nbclient("blocking"), "asyncclient": nw.asyncclient()}[client]
    app = run(nw, tmpdir_, argv, REROUTE, turn="lie")
    assert app.rc != 0, app
    assert_refused(nw, app)
    assert "REFUSED (reroute)" in app.err, app
    # Refused on the rerouted key, not for want of a tunnel: a sphere was
    # asked again after the check.
    assert sum(s.turned for s in nw.spheres) >= 1, app


def test_reroute_deadline_refuses(nw, tmpdir_):
    config = REROUTE + "deadline_ms = 1500\n"
    app = run(nw, tmpdir_, nw.nbclient(), config, turn="stall")
    assert app.rc != 0, app
    assert_refused(nw, app)
    assert "REFUSED (reroute)" in app.err, app
    assert app.elapsed < 10, app


@pytest.mark.parametrize("client", ["nbclient", "blocking"])
def test_every_sphere_down_at_reroute_time_refuses(nw, tmpdir_, client):
    argv = nw.nbclient("blocking") if client == "blocking" else nw.nbclient()
    app = run(nw, tmpdir_, argv, REROUTE, turn="down")
    assert app.rc != 0, app
    assert_refused(nw, app)
    assert "REFUSED (reroute)" in app.err, app


@pytest.mark.parametrize("client", ["nbclient", "asyncclient"])
def test_a_remembered_rogue_key_reroutes_at_once(nw, tmpdir_, client):
    # Two connections in one process: the second shows the same rogue key,
    # the REJECT and its plan are remembered, so it is rerouted without a
    # new check (one probe per sphere for the check, one tunnel per
    # connection).
    argv = nw.nbclient(count=2) if client == "nbclient" else nw.asyncclient("-r", "2")
    app = run(nw, tmpdir_, argv, REROUTE + "cache = off\n")
    assert re.findall(r"^result: (.*)$", app.out, re.M) == ["ok", "ok"], app
    assert app.out.count(nw.real_marker) == 2, app
    assert app.err.count("probing the spheres") == 1, app
    assert "remembered verdict 'reject' for this key, no probe" in app.err, app
    assert app.err.count("REROUTED %s:%d via" % (HOST, nw.port)) == 2, app
    tokens = {r["password"] for s in nw.spheres for r in s.sessions_since(0)}
    assert len(tokens) == 3, "one isolation token for the check, one per reroute:\n%s" % app
    assert nw.mitm.app_bytes == 0, app
