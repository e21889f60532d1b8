"""The verdicts end to end: real TLS servers, a real MITM, real SOCKS5
spheres.  Every key hash is compared with one computed by the openssl CLI
from the certificate files (testworld/tls.py), never with DetecTor's own output."""

import re
import time

from testworld.ports import HOST, MITM_ADDR, REAL_ADDR

EXIT_ACCEPT, EXIT_UNDECIDED, EXIT_REJECT = 0, 1, 2
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def probe_args(world, spheres, addr=REAL_ADDR, port=None, *extra):
    port = port or world.port
    return ["--json", "--resolve", "%s:%d:%s" % (HOST, port, addr),
            "--spheres", world.sphere_list(*spheres), *extra, "%s:%d" % (HOST, port)]


def assert_well_formed(run, world, port, quorum):
    """The JSON object the contract promises, whatever the verdict."""
    j = run.json
    assert j["host"] == HOST, run
    assert j["port"] == port, run
    assert j["quorum"] == quorum, run
    assert j["verdict"] in ("accept", "reject", "undecided"), run
    assert isinstance(j["reason"], str) and j["reason"].strip(), run
    assert HEX64.match(j["direct"]["spki_sha256"]), run
    assert HEX64.match(j["direct"]["cert_sha256"]), run
    for s in j["spheres"]:
        assert s["status"] in ("match", "key-match", "mismatch", "failed",
                               "timeout", "skipped"), run
        assert isinstance(s["ms"], (int, float)) and s["ms"] >= 0, run
        if s["status"] in ("match", "key-match", "mismatch"):
            assert HEX64.match(s["spki_sha256"]) and HEX64.match(s["cert_sha256"]), run
        if s["status"] in ("failed", "timeout"):
            assert isinstance(s["error"], str) and s["error"].strip(), \
                "a %s sphere must say why:\n%s" % (s["status"], run)


def assert_saw(entry, cert, run, status):
    assert entry["status"] == status, run
    assert entry["spki_sha256"] == cert.spki_sha256, run
    assert entry["cert_sha256"] == cert.cert_sha256, run


# 1 -------------------------------------------------------------------------

def test_clean_path_accepts(world, probe):
    run = probe.run(*probe_args(world, world.honest))
    assert run.rc == EXIT_ACCEPT, run
    assert_well_formed(run, world, world.port, 4)
    j = run.json
    assert j["verdict"] == "accept", run
    assert j["direct"]["spki_sha256"] == world.real.spki_sha256, run
    assert j["direct"]["cert_sha256"] == world.real.cert_sha256, run
    assert [s["address"] for s in j["spheres"]] == [s.address for s in world.honest], run
    # Decided at the 4th match: the 5th may have been left behind.
    assert run.statuses().count("match") >= 4, run
    assert set(run.statuses()) <= {"match", "skipped"}, run
    for s in j["spheres"]:
        if s["status"] == "match":
            assert_saw(s, world.real, run, "match")


def test_clean_path_all_five_match_at_quorum_5(world, probe):
    run = probe.run(*probe_args(world, world.honest, REAL_ADDR, None, "--quorum", "5"))
    assert run.rc == EXIT_ACCEPT, run
    assert_well_formed(run, world, world.port, 5)
    assert run.json["verdict"] == "accept", run
    assert run.json["direct"]["spki_sha256"] == world.real.spki_sha256, run
    for sphere in world.honest:
        assert_saw(run.sphere(sphere), world.real, run, "match")


# 2 -------------------------------------------------------------------------

def test_direct_path_through_mitm_rejects(world, probe):
    run = probe.run(*probe_args(world, world.honest, MITM_ADDR))
    assert run.rc == EXIT_REJECT, run
    assert_well_formed(run, world, world.port, 4)
    j = run.json
    assert j["verdict"] == "reject", run
    # The direct path saw the CA-valid rogue certificate...
    assert j["direct"]["spki_sha256"] == world.rogue.spki_sha256, run
    assert j["direct"]["cert_sha256"] == world.rogue.cert_sha256, run
    # ...every sphere that answered saw the real key; n-k+1 = 2 suffice.
    assert run.statuses().count("mismatch") >= 2, run
    assert set(run.statuses()) <= {"mismatch", "skipped"}, run
    for s in j["spheres"]:
        if s["status"] == "mismatch":
            assert_saw(s, world.real, run, "mismatch")
    assert re.search(r"mismatch|disagree|differ", j["reason"], re.I), run


def test_reject_under_reroute_reports_the_reroute_only_if_the_spheres_agree(
        world, probe, tmp_path):
    """sphere-probe's policy.action is what an NSS application would do
    (issue 12): with on_mitm = reroute, 'reroute' when a quorum of spheres
    agrees on the real key; 'refuse' when the REJECT has no such quorum
    (three honest spheres and a lying one at quorum 4)."""
    conf = tmp_path / "reroute.conf"
    conf.write_text("[detector]\non_mitm = reroute\n")
    run = probe.run(*probe_args(world, world.honest, MITM_ADDR, None,
                                "--config", str(conf)))
    assert run.rc == EXIT_REJECT, run
    assert run.json["policy"]["on_mitm"] == "reroute", run
    assert run.json["policy"]["action"] == "reroute", run
    mixed = world.honest[:3] + [world.lying]
    run = probe.run(*probe_args(world, mixed, MITM_ADDR, None,
                                "--config", str(conf)))
    assert run.rc == EXIT_REJECT, run
    assert run.json["policy"]["action"] == "refuse", run
    plain = probe.run(*probe_args(world, world.honest, MITM_ADDR))
    assert plain.json["policy"]["action"] == "refuse", plain


def test_mitm_text_report_names_the_mismatch(world, probe):
    run = probe.run("--resolve", world.resolve(MITM_ADDR), "--spheres",
                    world.sphere_list(*world.honest), "%s:%d" % (HOST, world.port))
    assert run.rc == EXIT_REJECT, run
    assert re.search(r"\breject", run.out, re.I), run
    assert "mismatch" in run.out.lower(), run


# 3 -------------------------------------------------------------------------

def test_one_lying_exit_does_not_flip_the_verdict(world, probe):
    """On slow_port the honest paths are slow and the MITM path is fast, so
    the lying sphere's answer is in before any honest one: it must be
    reported as a mismatch and still not decide anything."""
    spheres = world.honest[:4] + [world.lying]
    run = probe.run(*probe_args(world, spheres, REAL_ADDR, world.slow_port))
    assert run.rc == EXIT_ACCEPT, run
    assert_well_formed(run, world, world.slow_port, 4)
    assert run.json["verdict"] == "accept", run
    assert run.json["direct"]["spki_sha256"] == world.real.spki_sha256, run
    assert_saw(run.sphere(world.lying), world.rogue, run, "mismatch")
    for sphere in world.honest[:4]:
        assert_saw(run.sphere(sphere), world.real, run, "match")


def test_same_key_in_another_certificate_is_a_key_match(world, probe):
    """A sphere that sees the real key in a re-issued certificate reports
    key-match, and that agreement counts (quorum 5 needs it)."""
    spheres = world.honest[:4] + [world.keymatch]
    run = probe.run(*probe_args(world, spheres, REAL_ADDR, None, "--quorum", "5"))
    assert run.rc == EXIT_ACCEPT, run
    assert_well_formed(run, world, world.port, 5)
    assert run.json["verdict"] == "accept", run
    assert_saw(run.sphere(world.keymatch), world.reissued, run, "key-match")


# 4 -------------------------------------------------------------------------

def wait_for(cond, timeout=2.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.02)
    return cond()


def test_blackhole_sphere_is_not_waited_for(world, probe):
    hole = world.blackholes[0]
    before = hole.connections
    spheres = world.honest[:4] + [hole.address]
    run = probe.run(*probe_args(world, spheres, REAL_ADDR, None, "--timeout", "10000"))
    assert run.rc == EXIT_ACCEPT, run
    assert_well_formed(run, world, world.port, 4)
    assert run.json["verdict"] == "accept", run
    assert run.elapsed < 3.0, "waited for the blackhole:\n%s" % run
    assert run.sphere(hole.address)["status"] in ("skipped", "timeout"), run
    assert wait_for(lambda: hole.connections > before), "the blackhole was never contacted"


# 5 -------------------------------------------------------------------------

def test_garbage_and_refused_spheres_fail_with_reasons(world, probe):
    """On slow_port, so the three matches cannot all be in (and the verdict
    reached) before the two failures are: both must be reported."""
    garbage, refused = world.garbage[0].address, world.refused[0]
    spheres = world.honest[:3] + [garbage, refused]
    run = probe.run(*probe_args(world, spheres, REAL_ADDR, world.slow_port, "--quorum", "3"))
    assert run.rc == EXIT_ACCEPT, run
    assert_well_formed(run, world, world.slow_port, 3)
    assert run.json["verdict"] == "accept", run
    for sphere in world.honest[:3]:
        assert_saw(run.sphere(sphere), world.real, run, "match")
    g, r = run.sphere(garbage), run.sphere(refused)
    assert g["status"] == "failed", run
    assert re.search(r"socks|reply", g["error"], re.I), run
    assert r["status"] == "failed", run
    assert re.search(r"refused", r["error"], re.I), run
    for s in (g, r):
        assert not s.get("spki_sha256"), run


# 6 -------------------------------------------------------------------------

def test_every_sphere_down_is_undecided(world, probe):
    """Refused, garbage and silent spheres: nothing agrees, nothing disagrees."""
    spheres = world.refused[:2] + [world.garbage[1].address] + \
        [b.address for b in world.blackholes[1:3]]
    run = probe.run(*probe_args(world, spheres, REAL_ADDR, None,
                                "--timeout", "1000", "--deadline", "3000"))
    assert run.rc == EXIT_UNDECIDED, run
    assert_well_formed(run, world, world.port, 4)
    assert run.json["verdict"] == "undecided", run
    assert run.json["direct"]["spki_sha256"] == world.real.spki_sha256, run
    assert run.elapsed < 3.0 + 1.0, "past the deadline:\n%s" % run
    for addr in world.refused[:2] + [world.garbage[1].address]:
        assert run.sphere(addr)["status"] == "failed", run
    for b in world.blackholes[1:3]:
        assert run.sphere(b.address)["status"] == "timeout", run


def test_every_sphere_silent_ends_at_the_deadline(world, probe):
    """Five blackholes, a 10 s probe timeout and a 1.5 s deadline: the
    deadline wins."""
    run = probe.run(*probe_args(world, [b.address for b in world.blackholes], REAL_ADDR,
                                None, "--timeout", "10000", "--deadline", "1500"))
    assert run.rc == EXIT_UNDECIDED, run
    assert_well_formed(run, world, world.port, 4)
    assert run.json["verdict"] == "undecided", run
    assert 1.3 < run.elapsed < 1.5 + 1.5, "deadline not kept:\n%s" % run
    assert set(run.statuses()) == {"timeout"}, run


def test_every_sphere_refusing_is_undecided_at_once(world, probe):
    run = probe.run(*probe_args(world, world.refused))
    assert run.rc == EXIT_UNDECIDED, run
    assert_well_formed(run, world, world.port, 4)
    assert run.elapsed < 2.0, run
    # Once four have failed the last one cannot change the outcome.
    assert run.statuses().count("failed") >= 4, run
    assert set(run.statuses()) <= {"failed", "skipped"}, run
    for s in run.json["spheres"]:
        if s["status"] == "failed":
            assert re.search(r"refused", s["error"], re.I), run


def test_name_the_spheres_cannot_resolve_is_undecided(world, probe):
    """The spheres have no address for unknown.test (their hosts files only
    know server.test); the SOCKS5 error reply is reported, not a mismatch."""
    marks = [s.log_size() for s in world.honest]
    run = probe.run("--json", "--resolve", "unknown.test:%d:%s" % (world.port, REAL_ADDR),
                    "--spheres", world.sphere_list(*world.honest),
                    "unknown.test:%d" % world.port)
    assert run.rc == EXIT_UNDECIDED, run
    assert run.json["verdict"] == "undecided", run
    assert run.json["direct"]["spki_sha256"] == world.real.spki_sha256, run
    assert run.statuses().count("failed") >= 4, run
    assert set(run.statuses()) <= {"failed", "skipped"}, run
    for s, m in zip(world.honest, marks):
        assert s.targets(m) == [], "sphere %s connected somewhere" % s
