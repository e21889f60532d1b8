"""STARTTLS through sphere-probe against real Debian servers on loopback
(testworld/mailservers.py, the fixture `mail`): postfix (SMTP), dovecot
(IMAP, POP3), prosody (XMPP) and slapd (LDAP), each presenting the world's
real server.test certificate on 127.0.0.2, where the honest spheres
resolve server.test.  On 127.0.0.3, at
the same port, a STARTTLS-aware MITM with the rogue certificate: where the
client's path or the lying sphere is sent.

Also the dual-certificate case (review I4): a server with an ECDSA and an
RSA key shows each client the one its signature schemes ask for; the
spheres must be steered to the key type the client saw.

The servers start once for this module (about 2 s).
"""

import pytest

from conftest import PROBE  # noqa: F401  (the binary under test)
from test_nss_hook import run_app, tstclnt
from testworld.mailservers import PROTOCOLS, HostileSmtp
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR
from testworld.starttls import starttls_peer_cert
from testworld.tls import DualCertServer, cert_sha256_der


def target(mail, proto, port=None):
    return "%s:%d" % (HOST, port or mail.port[proto])


def resolve(mail, proto, addr, port=None):
    return "%s:%d:%s" % (HOST, port or mail.port[proto], addr)


def probe_json(probe, world, mail, proto, addr, spheres, *extra):
    return probe.run("--json", "--starttls", proto, "-s", world.sphere_list(*spheres),
                     "--resolve", resolve(mail, proto, addr), *extra,
                     target(mail, proto))


# -- the world as the tests assume it, checked without DetecTor

@pytest.mark.parametrize("proto", PROTOCOLS)
def test_servers_and_mitm_show_what_we_assume(world, mail, proto):
    """Python's own STARTTLS client sees the real certificate on 127.0.0.2
    and the rogue one through the MITM on 127.0.0.3."""
    port = mail.port[proto]
    assert cert_sha256_der(starttls_peer_cert(REAL_ADDR, port, proto)) == \
        world.real.cert_sha256
    assert cert_sha256_der(starttls_peer_cert(MITM_ADDR, port, proto)) == \
        world.rogue.cert_sha256


# -- the clean path: direct and every sphere see the real key

@pytest.mark.parametrize("proto", PROTOCOLS)
def test_clean_path_is_accepted(world, probe, mail, proto):
    run = probe_json(probe, world, mail, proto, REAL_ADDR, world.honest)
    assert run.rc == 0, run
    j = run.json
    assert j["verdict"] == "accept" and j["starttls"] == proto, run
    assert j["direct"]["spki_sha256"] == world.real.spki_sha256, run
    matched = [s for s in j["spheres"] if s["status"] == "match"]
    assert len(matched) >= 4, run
    assert all(s["spki_sha256"] == world.real.spki_sha256 for s in matched), run
    assert all(s["status"] in ("match", "skipped") for s in j["spheres"]), run


def test_text_report_names_the_protocol(world, probe, mail):
    run = probe.run("--starttls", "imap", "-s", world.sphere_list(*world.honest),
                    "--resolve", resolve(mail, "imap", REAL_ADDR),
                    target(mail, "imap"))
    assert run.rc == 0, run
    assert run.out.startswith("sphere-probe %s STARTTLS imap\n" % target(mail, "imap")), run
    assert "verdict: ACCEPT" in run.out, run


# -- the MITM on the client's path

@pytest.mark.parametrize("proto", PROTOCOLS)
def test_mitm_on_the_direct_path_is_rejected(world, probe, mail, proto):
    before = mail.mitm[proto].intercepted
    run = probe_json(probe, world, mail, proto, MITM_ADDR, world.honest)
    assert run.rc == 2, run
    j = run.json
    assert j["verdict"] == "reject", run
    assert j["direct"]["spki_sha256"] == world.rogue.spki_sha256, run
    mism = [s for s in j["spheres"] if s["status"] == "mismatch"]
    assert len(mism) >= 2, run          # n - k + 1 = 2 at quorum 4 of 5
    assert all(s["spki_sha256"] == world.real.spki_sha256 for s in mism), run
    assert all(s["status"] in ("mismatch", "skipped") for s in j["spheres"]), run
    assert mail.mitm[proto].intercepted == before + 1


# -- the MITM on a sphere's path (a lying exit)

@pytest.mark.parametrize("proto", ["smtp", "imap"])
def test_lying_sphere_alone_rejects(world, probe, mail, proto):
    """One sphere, resolving server.test to the MITM, quorum 1: REJECT,
    and that sphere saw the rogue key."""
    run = probe_json(probe, world, mail, proto, REAL_ADDR, [world.lying], "-k", "1")
    assert run.rc == 2, run
    s = run.sphere(world.lying)
    assert s["status"] == "mismatch" and s["spki_sha256"] == world.rogue.spki_sha256, run


@pytest.mark.parametrize("proto", ["smtp", "imap"])
def test_survey_shows_each_spheres_key(world, probe, mail, proto):
    """--survey awaits every sphere: four honest ones see the real key, the
    lying one the rogue key; two distinct keys is exit 2."""
    spheres = world.honest[:4] + [world.lying]
    run = probe.run("--json", "--survey", "--starttls", proto, "-s",
                    world.sphere_list(*spheres), target(mail, proto))
    assert run.rc == 2, run
    j = run.json
    assert j["survey"] is True and j["distinct_keys"] == 2, run
    for s in world.honest[:4]:
        e = run.sphere(s)
        assert e["status"] == "seen" and e["spki_sha256"] == world.real.spki_sha256, run
    e = run.sphere(world.lying)
    assert e["status"] == "seen" and e["spki_sha256"] == world.rogue.spki_sha256, run


def test_survey_of_honest_spheres_agrees(world, probe, mail):
    run = probe.run("--survey", "--starttls", "xmpp", "-s",
                    world.sphere_list(*world.honest), target(mail, "xmpp"))
    assert run.rc == 0, run
    assert "5 of 5 spheres returned a certificate" in run.out, run
    assert "1 distinct key\n" in run.out, run
    assert run.out.count(world.real.spki_sha256[:16]) == 5, run


# -- failures are clear, never silent

def test_server_without_starttls_is_a_clear_failure(world, probe, mail):
    run = probe.run("--starttls", "smtp", "-s", world.sphere_list(*world.honest),
                    "--resolve", resolve(mail, "smtp", REAL_ADDR, mail.smtp_plain),
                    target(mail, "smtp", mail.smtp_plain))
    assert run.rc == 3, run
    assert "SMTP server does not offer STARTTLS" in run.err, run


def test_spheres_report_a_server_without_starttls(world, probe, mail):
    run = probe.run("--json", "--survey", "--starttls", "smtp", "-s",
                    world.sphere_list(*world.honest),
                    target(mail, "smtp", mail.smtp_plain))
    assert run.rc == 1, run
    for s in run.json["spheres"]:
        assert s["status"] == "failed", run
        assert "SMTP server does not offer STARTTLS" in s["error"], run


def test_plain_tls_on_a_starttls_port_fails(world, probe, mail):
    """--starttls none forces TLS from the first byte: the SMTP greeting is
    not a TLS record (NSS reads its first bytes as a record header and may
    wait for the 8 KiB "record", hence the short timeout)."""
    run = probe.run("--starttls", "none", "-t", "2000", "-s",
                    world.sphere_list(*world.honest),
                    "--resolve", resolve(mail, "smtp", REAL_ADDR),
                    target(mail, "smtp"))
    assert run.rc == 3, run
    assert "direct connection" in run.err, run
    assert "TLS handshake failed" in run.err or \
        "timed out during the TLS handshake" in run.err, run
    assert run.elapsed < 10, run


def test_wrong_protocol_names_what_the_server_said(world, probe, mail):
    """IMAP spoken to a POP3 server: the error quotes the server."""
    run = probe.run("--starttls", "imap", "-s", world.sphere_list(*world.honest),
                    "--resolve", resolve(mail, "pop3", REAL_ADDR),
                    target(mail, "pop3"))
    assert run.rc == 3, run
    assert "IMAP server refused the connection: +OK" in run.err, run


def test_unknown_protocol_is_a_usage_error(probe):
    run = probe.run("--starttls", "ftp", "server.test:21")
    assert run.rc == 3 and "--starttls 'ftp'" in run.err, run


# -- review I4: a server with an ECDSA and an RSA certificate

@pytest.fixture(scope="module")
def dual(world):
    """server.test on 127.0.0.2 with the real (ECDSA) certificate and a
    second, RSA one from the same CA."""
    rsa = world.pki._issue("dual-rsa", HOST, world.pki._newkey("dual-rsa", "rsa"))
    srv = DualCertServer(world.real, rsa)
    srv.rsa = rsa
    yield srv
    srv.stop()


@pytest.mark.parametrize("schemes", ["rsa_pss_rsae_sha256,rsa_pkcs1_sha256",
                                     "ecdsa_secp256r1_sha256"])
@pytest.mark.parametrize("versions", ["tls1.2:tls1.3", "tls1.2:tls1.2"])
def test_dual_certificate_server_is_accepted(world, nssdb, tmpdir_, dual, schemes,
                                             versions):
    """tstclnt under detector-run offering only RSA (or only ECDSA)
    signature schemes gets that certificate; the spheres must be shown the
    same one, or every sphere would report a mismatch (a false REJECT)."""
    argv = tstclnt(nssdb, dual.port) + ["-J", schemes, "-V", versions]
    app = run_app(world, tmpdir_, argv, REAL_ADDR)
    assert app.rc == 0, app
    assert "DETECTOR_ERROR" not in app.err, app
    assert "hello" in app.out, app
    assert "accept" in app.err.lower(), app


def test_cached_verdict_names_the_protocol(world, probe, mail):
    """The second run is answered from the verdict cache, after the direct
    STARTTLS fetch saw the same key."""
    args = ["--starttls", "pop3", "-s", world.sphere_list(*world.honest),
            "--resolve", resolve(mail, "pop3", REAL_ADDR), target(mail, "pop3")]
    first = probe.run(*args, cache=True)
    assert first.rc == 0 and "(cached)" not in first.out, first
    second = probe.run("--json", *args, cache=True)
    assert second.rc == 0, second
    assert second.json.get("cached") is True, second
    assert second.json["starttls"] == "pop3", second


# -- hostile servers: the probe's I/O is bounded and strict

@pytest.fixture(scope="module")
def hostile(world):
    servers = {m: HostileSmtp(m) for m in ("inject", "endless", "silent")}
    yield servers
    for s in servers.values():
        s.stop()


def hostile_run(probe, world, srv, *extra):
    return probe.run("--starttls", "smtp", "-s", world.sphere_list(*world.honest),
                     "--resolve", "%s:%d:%s" % (HOST, srv.port, REAL_ADDR), *extra,
                     "%s:%d" % (HOST, srv.port))


def test_bytes_after_the_go_ahead_are_refused(world, probe, hostile):
    run = hostile_run(probe, world, hostile["inject"])
    assert run.rc == 3, run
    assert "SMTP server sent 20 bytes after agreeing to start TLS" in run.err, run
    assert "possible STARTTLS command injection" in run.err, run


def test_an_endless_greeting_is_cut_off(world, probe, hostile):
    run = hostile_run(probe, world, hostile["endless"])
    assert run.rc == 3, run
    assert "SMTP server reply exceeds 8192 bytes" in run.err, run
    assert run.elapsed < 5, run


def test_a_silent_server_times_out_in_the_preamble(world, probe, hostile):
    run = hostile_run(probe, world, hostile["silent"], "-t", "1000")
    assert run.rc == 3, run
    assert "timed out during the SMTP STARTTLS preamble" in run.err, run
    assert run.elapsed < 5, run


def test_spheres_refuse_bytes_after_the_go_ahead(world, probe, hostile):
    srv = hostile["inject"]
    run = probe.run("--json", "--survey", "--starttls", "smtp", "-s",
                    world.sphere_list(*world.honest), "%s:%d" % (HOST, srv.port))
    assert run.rc == 1, run
    for s in run.json["spheres"]:
        assert s["status"] == "failed", run
        assert "possible STARTTLS command injection" in s["error"], run
