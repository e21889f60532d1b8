"""The test world itself, checked with independent clients (Python's ssl
module, a minimal SOCKS5 client, openssl s_client): if one of these fails,
a sphere-probe failure elsewhere says nothing about DetecTor."""

import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time

import pytest

from testworld import socks5
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, REISSUE_ADDR, tls_peer_cert
from testworld.processes import Process, cmdline, group_members, pid_state, stop_pids
from testworld.relay import Relay, relay
from testworld.services import TcpService
from testworld.tls import cert_sha256_der, spki_sha256_der
from testworld.tlsbytes import CountingRelay


def spki_seen(addr, port, **kw):
    der, _ = tls_peer_cert((addr, port), **kw)
    return spki_sha256_der(der)


def test_pki_files_are_private_and_distinct(world):
    for c in (world.ca, world.real, world.rogue, world.reissued, world.default):
        for f in (c.crt, c.key):
            assert stat.S_IMODE(__import__("os").stat(f).st_mode) == 0o600, f
    keys = {world.real.spki_sha256, world.rogue.spki_sha256, world.default.spki_sha256,
            world.ca.spki_sha256}
    assert len(keys) == 4
    # Re-issued: same key, different certificate.
    assert world.reissued.spki_sha256 == world.real.spki_sha256
    assert world.reissued.cert_sha256 != world.real.cert_sha256


def test_rogue_is_issued_by_the_same_ca(world):
    """The compelled-CA case: the rogue chain verifies exactly like the real one."""
    for c in (world.real, world.rogue):
        out = subprocess.run(["openssl", "verify", "-CAfile", world.ca.crt,
                              "-verify_hostname", HOST, c.crt],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr


def test_real_server_mitm_and_reissue_on_the_same_port(world):
    assert spki_seen(REAL_ADDR, world.port) == world.real.spki_sha256
    assert spki_seen(MITM_ADDR, world.port) == world.rogue.spki_sha256
    der, _ = tls_peer_cert((REISSUE_ADDR, world.port))
    assert cert_sha256_der(der) == world.reissued.cert_sha256


def test_mitm_relays_to_the_real_server(world):
    """Through socat, an HTTP request reaches s_server -www."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((MITM_ADDR, world.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while len(data) < 4096:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.0 200"), data[:200]


def test_tls_version_variants(world):
    _, v = tls_peer_cert((REAL_ADDR, world.tls12_port))
    assert v == "TLSv1.2"
    _, v = tls_peer_cert((REAL_ADDR, world.tls13_port))
    assert v == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        tls_peer_cert((REAL_ADDR, world.tls13_port), max_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        tls_peer_cert((REAL_ADDR, world.tls12_port), min_version=ssl.TLSVersion.TLSv1_3)


def test_sni_server_needs_sni(world):
    assert spki_seen(REAL_ADDR, world.sni_port, sni=HOST) == world.real.spki_sha256
    assert spki_seen(REAL_ADDR, world.sni_port, sni="other.test") == world.default.spki_sha256
    # No SNI at all (openssl s_client -noservername): the default certificate.
    out = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (REAL_ADDR, world.sni_port),
                          "-noservername"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=30)
    assert "CN = default.test" in out.stdout, out.stdout


def test_spheres_resolve_the_name_themselves(world):
    """Honest spheres reach the real server, the lying exit the MITM, the
    key-match sphere the re-issued certificate, all by name."""
    expect = [(s, world.real.cert_sha256) for s in world.honest]
    expect += [(world.lying, world.rogue.cert_sha256),
               (world.keymatch, world.reissued.cert_sha256)]
    for sphere, cert_hash in expect:
        mark = sphere.log_size()
        der, _ = tls_peer_cert(socks5.connect(sphere.address, HOST, world.port, timeout=5))
        assert cert_sha256_der(der) == cert_hash, sphere
        assert sphere.targets(mark) == [(HOST, world.port)]


def test_spheres_cannot_resolve_other_names(world):
    """Hosts file only, no DNS: an unknown name fails fast at the sphere."""
    with pytest.raises(Exception, match="reply"):
        socks5.connect(world.honest[0].address, "unknown.test", world.port, timeout=5)


def test_slow_port_paths(world):
    """server.test:slow_port: honest path slow, the MITM path fast."""
    import time
    t = time.monotonic()
    der, _ = tls_peer_cert(socks5.connect(world.honest[0].address, HOST, world.slow_port, timeout=5))
    slow = time.monotonic() - t
    assert spki_sha256_der(der) == world.real.spki_sha256
    t = time.monotonic()
    der, _ = tls_peer_cert(socks5.connect(world.lying.address, HOST, world.slow_port, timeout=5))
    fast = time.monotonic() - t
    assert spki_sha256_der(der) == world.rogue.spki_sha256
    assert slow > 0.3 and fast < slow - 0.2, (slow, fast)


def test_misbehaving_spheres(world):
    # blackhole: connects, says nothing
    a, p = world.blackholes[0].address.rsplit(":", 1)
    with socket.create_connection((a, int(p)), timeout=5) as s:
        s.sendall(b"\x05\x02\x00\x02")
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(1)
    # garbage: not a SOCKS5 reply
    a, p = world.garbage[0].address.rsplit(":", 1)
    with socket.create_connection((a, int(p)), timeout=5) as s:
        s.sendall(b"\x05\x02\x00\x02")
        assert s.recv(2)[:1] != b"\x05"
    # refused: nothing listening
    for r in world.refused:
        a, p = r.rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((a, int(p)), timeout=5).close()


# -- the test world's own machinery (testworld.processes, testworld.relay)

def _wait_for_log(proc, text, timeout=10.0):
    end = time.monotonic() + timeout
    while text not in proc.log():
        assert proc.alive() and time.monotonic() < end, proc.log()
        time.sleep(0.02)


def test_process_stop_kills_a_child_that_ignores_sigterm(tmpdir_):
    """SIGTERM first; SIGKILL once the grace period is over."""
    p = Process("ignores-term", [sys.executable, "-c",
                                 "import signal, time; "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(60)"],
                os.path.join(tmpdir_, "ignores-term.log"))
    _wait_for_log(p, "ready")
    t = time.monotonic()
    p.stop(grace=0.5)
    took = time.monotonic() - t
    assert p.popen.returncode == -signal.SIGKILL
    assert 0.5 <= took < 5.0, took


def test_process_stop_ends_what_is_left_in_its_process_group(tmpdir_):
    """A shell that dies on SIGTERM leaves its two background children
    behind; stop() ends them through the process group."""
    p = Process("group", ["sh", "-c", "sleep 60 & sleep 60 & echo ready; wait"],
                os.path.join(tmpdir_, "group.log"))
    _wait_for_log(p, "ready")
    members = group_members(p.pid)
    assert len(members) == 3 and p.pid in members, members
    p.stop(grace=1.0)
    assert p.popen.returncode == -signal.SIGTERM
    assert group_members(p.pid) == []
    assert all(pid_state(pid) != "alive" for pid in members)


def test_stop_pids_never_signals_a_pid_without_its_marker():
    """A PID whose command line lacks the marker (a recycled PID) is left
    alone; with its marker it is ended, SIGTERM sufficing."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        end = time.monotonic() + 5
        while "sleep 60" not in cmdline(child.pid):     # until it has exec'd
            assert time.monotonic() < end, cmdline(child.pid)
            time.sleep(0.01)
        assert stop_pids([("other", child.pid, "/no/such/marker")], grace=0.2,
                         reap=child.poll) == []
        assert child.poll() is None
        assert stop_pids([("sleep", child.pid, "sleep 60")], grace=2.0,
                         reap=child.poll) == []
        assert child.wait(5) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()


class _Talker(TcpService):
    """Sends 1000 bytes to each client, then reads until it hangs up."""

    def handle(self, conn):
        self._spawn(self._talk, conn)

    def _talk(self, conn):
        try:
            conn.sendall(b"x" * 1000)
            while conn.recv(4096):
                pass
        except OSError:
            pass


def _read_all(address, timeout=10.0):
    a, p = address.rsplit(":", 1)
    data = b""
    with socket.create_connection((a, int(p)), timeout=timeout) as s:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk


def test_relay_cuts_the_answer_after_its_limit():
    talker = _Talker()
    cut = Relay("127.0.0.1", ("127.0.0.1", talker.port), limit=60, lifetime=10)
    try:
        assert _read_all(cut.address) == b"x" * 60
    finally:
        cut.stop()
        talker.stop()


def test_relay_drips_and_shows_each_chunk():
    """relay() itself: the upstream's answer one byte per `drip` seconds,
    every chunk shown to the observer, the client's bytes forwarded."""
    talker = _Talker()
    seen = []
    a, b = socket.socketpair()
    up = socket.create_connection(("127.0.0.1", talker.port), timeout=5)
    stop = threading.Event()
    t = threading.Thread(target=relay, args=(a, up, stop, 10),
                         kwargs={"limit": 5, "drip": 0.05,
                                 "observe": lambda c, d: seen.append((c, len(d)))})
    try:
        t0 = time.monotonic()
        t.start()
        b.settimeout(5)
        got = b""
        while len(got) < 5:
            got += b.recv(5)
        took = time.monotonic() - t0
        t.join(5)
        assert got == b"xxxxx" and not t.is_alive()
        assert took >= 0.2, took
        assert seen and not seen[0][0] and sum(n for _, n in seen) >= 5, seen
    finally:
        stop.set()
        for s in (a, b, up):
            s.close()
        talker.stop()


def test_counting_relay_counts_both_ways():
    """bench P3's relay: per connection, the bytes each way and the first
    of them, once the connection has closed."""
    talker = _Talker()
    counting = CountingRelay("127.0.0.1", ("127.0.0.1", talker.port))
    try:
        mark = counting.mark()
        a, p = counting.address.rsplit(":", 1)
        with socket.create_connection((a, int(p)), timeout=5) as s:
            s.sendall(b"hello")
            got = b""
            while len(got) < 1000:
                got += s.recv(4096)
        [conn] = counting.wait_closed(mark, 1)
        assert (conn["c2s"], conn["s2c"]) == (5, 1000), conn
        assert conn["c2s_data"] == b"hello" and conn["s2c_data"] == b"x" * 1000
    finally:
        counting.stop()
        talker.stop()
