"""The test world itself, checked with independent clients (Python's ssl
module, a minimal SOCKS5 client, openssl s_client): if one of these fails,
a sphere-probe failure elsewhere says nothing about DetecTor."""

import socket
import ssl
import stat
import subprocess

import pytest

from world import (HOST, MITM_ADDR, REAL_ADDR, REISSUE_ADDR, socks5_connect,
                   spki_sha256_der, cert_sha256_der, tls_peer_cert)


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
        der, _ = tls_peer_cert(socks5_connect(sphere.address, HOST, world.port))
        assert cert_sha256_der(der) == cert_hash, sphere
        assert sphere.targets(mark) == [(HOST, world.port)]


def test_spheres_cannot_resolve_other_names(world):
    """Hosts file only, no DNS: an unknown name fails fast at the sphere."""
    with pytest.raises(Exception, match="reply"):
        socks5_connect(world.honest[0].address, "unknown.test", world.port)


def test_slow_port_paths(world):
    """server.test:slow_port: honest path slow, the MITM path fast."""
    import time
    t = time.monotonic()
    der, _ = tls_peer_cert(socks5_connect(world.honest[0].address, HOST, world.slow_port))
    slow = time.monotonic() - t
    assert spki_sha256_der(der) == world.real.spki_sha256
    t = time.monotonic()
    der, _ = tls_peer_cert(socks5_connect(world.lying.address, HOST, world.slow_port))
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
