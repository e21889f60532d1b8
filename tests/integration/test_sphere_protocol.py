"""What a sphere sees of a probe, recorded by a Tor-like SOCKS5 sphere
(world.torlike, a testworld.socks5.Socks5Server): the isolation
credentials, the target by name, and nothing but a TLS handshake through
the tunnel."""

import re

import pytest

from testworld.ports import HOST, REAL_ADDR
from testworld.tls import tls_record_types

HANDSHAKE, CCS, ALERT, APPDATA = 22, 20, 21, 23


def check(world, probe, port=None):
    """One check with the Tor-like sphere as the 5th of 5 (quorum 5, so it is
    always awaited); returns (run, the sphere's sessions of this check)."""
    port = port or world.port
    mark = len(world.torlike.sessions)
    run = probe.run("--json", "--quorum", "5",
                    "--resolve", "%s:%d:%s" % (HOST, port, REAL_ADDR),
                    "--spheres", world.sphere_list(*world.honest[:4], world.torlike.address),
                    "%s:%d" % (HOST, port))
    assert run.rc == 0, run
    assert run.sphere(world.torlike.address)["status"] == "match", run
    sessions = world.torlike.sessions_since(mark)
    assert len(sessions) == 1, sessions
    return run, sessions[0]


def test_isolation_credentials_are_fresh_per_check(world, probe):
    """RFC 1929 username/password offered, a non-empty random token, a new
    one for every check (Tor's IsolateSOCKSAuth then builds a new circuit)."""
    tokens = []
    for _ in range(3):
        run, s = check(world, probe)
        assert 2 in s["methods"], "username/password not offered: %r" % s["methods"]
        assert s["username"] or s["password"], s
        tokens.append((s["username"], s["password"]))
    assert len(set(tokens)) == 3, "isolation token reused across checks: %r" % tokens


def test_target_is_sent_by_name(world, probe):
    run, s = check(world, probe)
    assert s["atyp"] == 3, "CONNECT with ATYP %r, not a domain name" % s["atyp"]
    assert (s["host"], s["port"]) == (HOST, world.port), s


@pytest.mark.parametrize("variant", ["tls12", "tls13"])
def test_only_a_tls_handshake_goes_through_the_sphere(world, probe, variant):
    """The client's bytes through the tunnel are TLS records; none carries
    application data.  (In TLS 1.3 the client's Finished travels in one
    record typed application_data; anything beyond that would be data.)"""
    run, s = check(world, probe, getattr(world, variant + "_port"))
    types = tls_record_types(s["upstream"])
    assert types and types[0] == HANDSHAKE, types
    assert set(types) <= {HANDSHAKE, CCS, ALERT, APPDATA}, types
    allowed = 0 if variant == "tls12" else 1
    assert types.count(APPDATA) <= allowed, \
        "application data sent through the sphere (%s): %r" % (variant, types)


def test_socks_error_reply_is_reported(world, probe):
    """The Tor-like sphere answers 0x04 (host unreachable) for a name it
    cannot resolve: the probe fails with that reason, not a mismatch."""
    run = probe.run("--json",
                    "--resolve", "nowhere.test:%d:%s" % (world.port, REAL_ADDR),
                    "--spheres", world.torlike.address, "--quorum", "1",
                    "nowhere.test:%d" % world.port)
    assert run.rc == 1, run
    s = run.sphere(world.torlike.address)
    assert s["status"] == "failed", run
    assert re.search(r"unreachable", s["error"], re.I), run
