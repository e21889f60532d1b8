"""Rerouting end to end with real parts, without the NSS patch: libdetector's
public entry points (detector_check, detector_reroute,
detector_reroute_verify) driven by tests/hook/reroute_driver.c, which does
the rerouted TLS handshake with NSS over the descriptor the engine hands
back, as the patched libssl will (docs/reroute.md).

The world here is its own and needs no root: a real TLS server (Python ssl,
the real certificate) that answers with a marker only it knows, a MITM on
another address with the rogue certificate (same CA, other key) that counts
every byte of application data it receives and answers with its own
marker, and five Tor-like SOCKS5 spheres (testworld.socks5) that resolve
server.test to the real server and record what each client sent them.  The
driver's direct path goes to the MITM.  Between the check and the reroute
the test can turn the spheres into liars, slow them or stop them
(--pause-file)."""

import os
import secrets
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from testworld import WorldError
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, free_port
from testworld.services import TcpService
from testworld.socks5 import Socks5Server
from testworld.starttls import read_line, starttls_server
from testworld.tls import Pki

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(HERE, "..", "..", "build")
DRIVER = os.path.join(BUILD, "tests", "reroute_driver")
RUN_TIMEOUT = 60


class MarkerServer(TcpService):
    """A TLS server (optionally after a STARTTLS preamble) that answers the
    client's first bytes with `marker`; counts handshakes completed and the
    application bytes received after them."""
    kind = "marker-server"

    def __init__(self, addr, port, cert, marker, proto=None):
        self.cert, self.marker, self.proto = cert, marker, proto
        self.handshakes = 0
        self.app_bytes = 0
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.crt, cert.key)
        super().__init__(addr, port)

    def handle(self, conn):
        t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
        t.start()

    def _serve(self, conn):
        try:
            conn.settimeout(10)
            if self.proto:
                starttls_server(self.proto, conn)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            with self._lock:
                self.handshakes += 1
            if self.proto == "smtp":
                line = read_line(tls)
                with self._lock:
                    self.app_bytes += len(line)
                tls.sendall(b"250 " + self.marker.encode() + b"\r\n")
            else:
                data = tls.recv(4096)
                with self._lock:
                    self.app_bytes += len(data)
                tls.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + self.marker.encode())
            tls.close()
        except (OSError, ValueError, ssl.SSLError, WorldError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


class RerouteWorld:
    def __init__(self, proto=None):
        self.proto = proto
        self.dir = tempfile.mkdtemp(prefix="detector-reroute-")
        self.pki = Pki(self.dir).build()
        self.port = free_port(REAL_ADDR, MITM_ADDR)
        self.real_marker = "REAL-" + secrets.token_hex(8)
        self.mitm_marker = "MITM-" + secrets.token_hex(8)
        self.real = MarkerServer(REAL_ADDR, self.port, self.pki.real,
                                 self.real_marker, proto)
        self.mitm = MarkerServer(MITM_ADDR, self.port, self.pki.rogue,
                                 self.mitm_marker, proto)
        self.spheres = [Socks5Server({HOST: REAL_ADDR}) for _ in range(5)]

    def reset(self):
        for s in self.spheres:
            s.hosts = {HOST: REAL_ADDR}
            s.interval = None
        with self.mitm._lock:
            self.mitm.app_bytes = 0
            self.mitm.handshakes = 0

    def stop(self):
        for s in self.spheres + [self.real, self.mitm]:
            s.stop()
        subprocess.run(["rm", "-rf", self.dir], check=False)

    def run(self, *extra, between=None, spheres=None, direct=None):
        """Runs the driver; `between()` runs after the check, before the
        reroute.  Returns (rc, {key: value} of its output, output, secs)."""
        pause = os.path.join(self.dir, "go-%s" % secrets.token_hex(4))
        argv = [DRIVER, "--spheres", ",".join(s.address for s in (spheres or self.spheres)),
                "--host", HOST, "--port", str(self.port), "--direct", direct or MITM_ADDR,
                "--deadline", "10000", "--pause-file", pause, *extra]
        if self.proto:
            argv += ["--starttls", self.proto]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = None
        try:
            if between is None:
                open(pause, "w").close()
                t0 = time.monotonic()
            else:
                # Wait for the verdict line, then act, then let it go on.
                line = p.stdout.readline()
                head = line
                while line and not line.startswith(("cached:", "check_error:")):
                    line = p.stdout.readline()
                    head += line
                between()
                t0 = time.monotonic()
                open(pause, "w").close()
            out, err = p.communicate(timeout=RUN_TIMEOUT)
            if between is not None:
                out = head + out
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        secs = time.monotonic() - t0
        fields = {}
        for line in out.splitlines():
            k, _, v = line.partition(": ")
            fields.setdefault(k, v)
            if line.startswith("REROUTED "):
                fields["REROUTED"] = line[len("REROUTED "):]
        return p.returncode, fields, out + err, secs

    def mark(self):
        return [len(s.sessions_since(0)) for s in self.spheres]

    def sessions(self, mark):
        """Every sphere's sessions since mark (from mark())."""
        return [rec for s, m in zip(self.spheres, mark) for rec in s.sessions_since(m)]


@pytest.fixture(scope="module")
def rw():
    if not os.path.exists(DRIVER):
        pytest.fail("%s is missing: run `make`" % DRIVER)
    w = RerouteWorld()
    yield w
    w.stop()


@pytest.fixture(autouse=True)
def _fresh(request):
    if "rw" in request.fixturenames:
        request.getfixturevalue("rw").reset()


def test_reroute_reaches_the_real_server_and_the_mitm_gets_nothing(rw):
    before = rw.mark()
    rc, f, out, _ = rw.run()
    assert rc == 0, out
    assert f["verdict"] == "reject", out
    assert f["REROUTED"].startswith("%s:%d via 127.0.0.1:" % (HOST, rw.port)), out
    assert rw.real_marker in f["RESPONSE"], out
    assert rw.mitm_marker not in out
    assert f["policy"] == "rerouted", out
    # The MITM saw the direct fetch's handshake attempt, never a byte of
    # application data.
    assert rw.mitm.app_bytes == 0
    # The check's probes (one token; a probe steered to the direct path's
    # RSA key type is retried offering every type, so 5 to 10 sessions),
    # then one more session: the reroute, to the host by name, with an
    # isolation token of its own.
    # (A probe abandoned by the early decision may end before its
    # credentials: no password.)
    new = [s for s in rw.sessions(before) if s["password"]]
    pws = [s["password"] for s in new]
    check_pw = max(set(pws), key=pws.count)
    rer = [s for s in new if s["password"] != check_pw]
    assert 5 <= len(new) - len(rer) <= 10, new
    assert len(rer) == 1, new
    assert rer[0]["atyp"] == 3 and rer[0]["host"] == HOST and rer[0]["port"] == rw.port
    assert rer[0]["password"], rer[0]
    assert 2 in rer[0]["methods"], rer[0]


def test_remembered_reject_reroutes_without_probing(rw):
    before = rw.mark()
    rc, f, out, _ = rw.run("--again")
    assert rc == 0, out
    assert "cached: 0" in out and "cached: 1" in out, out
    assert rw.real_marker in f["RESPONSE"], out
    # One check's probes (one token) and the reroute (another): the
    # remembered REJECT asked no sphere.
    new = [s for s in rw.sessions(before) if s["password"]]
    assert len({s["password"] for s in new}) == 2, new
    assert rw.mitm.app_bytes == 0


def test_lying_sphere_at_reroute_time_is_refused(rw):
    def lie():
        for s in rw.spheres:
            s.hosts = {HOST: MITM_ADDR}
    rc, f, out, _ = rw.run(between=lie)
    assert rc == 3, out
    assert "key other than the one the spheres agreed on" in f["REFUSED"], out
    assert f["policy"] == "refused", out
    assert rw.mitm_marker not in out and rw.real_marker not in out
    assert rw.mitm.app_bytes == 0


def test_reroute_deadline_refuses(rw):
    def slow():
        for s in rw.spheres:
            s.interval = 1.0        # one SOCKS5 reply byte a second
    rc, f, out, secs = rw.run("--reroute-deadline", "700", between=slow)
    assert rc == 2, out
    assert "deadline" in f["REFUSED"], out
    assert f["policy"] == "refused", out
    assert secs < 5, secs
    assert rw.mitm.app_bytes == 0


def test_every_sphere_down_refuses():
    w = RerouteWorld()
    try:
        def down():
            for s in w.spheres:
                s.stop()
        rc, f, out, _ = w.run(between=down)
        assert rc == 2, out
        assert "every sphere that saw the key was tried" in f["REFUSED"], out
        # Every sphere that saw the real key (at least the 2 a REJECT
        # needs; the early decision may skip others) was tried and named.
        assert sum(s.address in f["REFUSED"] for s in w.spheres) >= 2, out
        assert w.mitm.app_bytes == 0
    finally:
        w.stop()


def test_spheres_that_side_with_the_direct_path_are_never_used(rw):
    """Quorum 3 of 3: two lying spheres (they see the MITM, as the direct
    path does) and one honest one.  The one mismatch makes a REJECT, but a
    reroute needs k = 3 spheres that agree (security review H1): refused,
    and no sphere is dialled again."""
    liars = [Socks5Server({HOST: MITM_ADDR}) for _ in range(2)]
    honest = rw.spheres[0]
    try:
        before = len(honest.sessions_since(0))
        rc, f, out, _ = rw.run("--quorum", "3", spheres=[liars[0], honest, liars[1]])
        assert f["verdict"] == "reject", out
        assert rc == 2, out
        assert "1 saw the most common one, 3 needed" in f["REFUSED"], out
        assert "REROUTED" not in f, out
        # Every sphere: the probe's token only.
        assert len({s["password"] for s in honest.sessions_since(before)
                    if s["password"]}) == 1
        assert all(len({s["password"] for s in l.sessions_since(0) if s["password"]}) == 1
                   for l in liars)
        assert rw.mitm.app_bytes == 0
    finally:
        for l in liars:
            l.stop()


def test_two_colluding_liars_get_no_plan(rw):
    """Security review H1: quorum 4 of 5, two lying exits see a key of
    their own (the rogue server's), three see the real one, as the direct
    path does.  Two mismatches make a REJECT; a reroute to the liars' key
    would need 4 spheres that agree: refused, no tunnel to the liars."""
    rogue = Socks5Server({HOST: MITM_ADDR})
    liar2 = Socks5Server({HOST: MITM_ADDR})
    honest = rw.spheres[:3]
    try:
        # The direct path here is the real server; the liars show the MITM.
        rc, f, out, _ = rw.run(spheres=[rogue, liar2] + honest, direct=REAL_ADDR)
        assert f["verdict"] == "reject", out
        assert rc == 2, out
        assert "2 saw the most common one, 4 needed" in f["REFUSED"], out
        for l in (rogue, liar2):
            assert len({s["password"] for s in l.sessions_since(0) if s["password"]}) == 1
        assert rw.mitm.app_bytes == 0
    finally:
        rogue.stop()
        liar2.stop()


def test_smtp_preamble_is_replayed_through_the_tunnel():
    w = RerouteWorld(proto="smtp")
    try:
        rc, f, out, _ = w.run()
        assert rc == 0, out
        assert f["verdict"] == "reject", out
        # The real server's answer to the EHLO sent after STARTTLS.
        assert f["RESPONSE"].startswith("250 " + w.real_marker), out
        assert w.mitm.app_bytes == 0
    finally:
        w.stop()


# ---- The same through the NSS integration's entry points (what the patched
# libssl calls): detector_nss_v1()->check asks for a reroute, then
# detector_nss_reroute_v1()->open/verify/release.

def ops_run(w, mode, between=None):
    conf = os.path.join(w.dir, "detector.conf")
    with open(conf, "w") as f:
        f.write("spheres = %s\nquorum = 4\ndeadline_ms = 10000\n"
                "probe_timeout_ms = 10000\ncache = off\nlog = decisions\n"
                "on_mitm = reroute\n"
                % ",".join(s.address for s in w.spheres))
    os.chmod(conf, 0o600)
    os.environ["DETECTOR_CONFIG"] = conf
    try:
        return w.run("--ops", mode, between=between)
    finally:
        del os.environ["DETECTOR_CONFIG"]


@pytest.mark.parametrize("mode", ["block", "async"])
def test_nss_ops_reroute(rw, mode):
    rc, f, out, _ = ops_run(rw, mode)
    assert rc == 0, out
    assert f["check_error"] == str(-0x3000 + 0x380 + 5), out  # DETECTOR_ERROR_REROUTE
    assert rw.real_marker in f["RESPONSE"], out
    assert "REROUTED %s:%d via 127.0.0.1:" % (HOST, rw.port) in out, out   # the log line
    assert rw.mitm.app_bytes == 0


def test_nss_ops_verify_refuses_a_lying_sphere(rw):
    def lie():
        for s in rw.spheres:
            s.hosts = {HOST: MITM_ADDR}
    rc, f, out, _ = ops_run(rw, "async", between=lie)
    assert rc == 3, out
    assert "REFUSED (reroute)" in out and "key other than" in out, out
    assert "REROUTED" not in out, out
    assert rw.mitm.app_bytes == 0


def test_nss_ops_release_while_pending_returns_at_once(rw):
    def slow():
        for s in rw.spheres:
            s.interval = 2.0
    rc, f, out, _ = ops_run(rw, "cancel", between=slow)
    assert rc == 0, out
    assert int(f["cancelled_ms"]) < 1500, out
    assert f["done_calls"] == "0", out


def test_nss_ops_release_from_inside_done(rw):
    """An application that closes its socket from its own callback during
    the handshake: release() runs inside done(); the opener frees the handle
    after done() returns (ASan/UBSan builds see any use after free)."""
    rc, f, out, _ = ops_run(rw, "inside")
    assert rc == 0, out
    assert f["done_calls"] == "1", out
