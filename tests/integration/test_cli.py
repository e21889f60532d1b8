"""sphere-probe as a command: the text report, -p, -D, --config and
DETECTOR_SPHERES, usage errors and a failing direct connection."""

import base64
import os
import re
import stat
import subprocess

import pytest

from testworld.ports import BROKEN_ADDR, HOST, MITM_ADDR, REAL_ADDR
from testworld.tls import pem_to_der, spki_sha256_der, split_pem

EXIT_USAGE = 3


def fingerprint_in(text, spki_hex):
    """Whether a key fingerprint shows in a report, as hex (any case, with
    or without colons, possibly shortened to 16+ digits) or base64."""
    flat = re.sub(r"[:\s]", "", text).lower()
    b64 = base64.b64encode(bytes.fromhex(spki_hex)).decode()
    return spki_hex[:16] in flat or b64[:16] in text


def report_row(out, label):
    """The report lines that mention label (direct, a sphere address)."""
    return [line for line in out.splitlines() if label in line.lower() or label in line]


def test_text_report_has_a_row_per_path(world, probe):
    run = probe.run("--resolve", world.resolve(REAL_ADDR), "--quorum", "5",
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, world.port))
    assert run.rc == 0, run
    assert re.search(r"\baccept", run.out, re.I), run
    assert report_row(run.out, "direct"), "no row for the direct path:\n%s" % run
    assert fingerprint_in(run.out, world.real.spki_sha256), run
    for sphere in world.honest:
        rows = report_row(run.out, sphere.address)
        assert rows, "no row for sphere %s:\n%s" % (sphere.address, run)
        assert any(re.search(r"\bmatch\b", r, re.I) for r in rows), run


def test_text_report_through_the_mitm(world, probe):
    # Quorum 4 of 5: REJECT needs n-k+1 = 2 spheres seeing another key.
    run = probe.run("--resolve", world.resolve(MITM_ADDR),
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, world.port))
    assert run.rc == 2, run
    assert re.search(r"\breject", run.out, re.I), run
    assert fingerprint_in(run.out, world.rogue.spki_sha256), run
    assert fingerprint_in(run.out, world.real.spki_sha256), run
    mism = [s for s in world.honest
            if any("mismatch" in r.lower() for r in report_row(run.out, s.address))]
    assert len(mism) >= 2, run


def test_port_option(world, probe):
    run = probe.run("--json", "-p", world.port, "--resolve", world.resolve(REAL_ADDR),
                    "--spheres", world.sphere_list(*world.honest), HOST)
    assert run.rc == 0, run
    assert run.json["port"] == world.port, run
    assert run.json["direct"]["spki_sha256"] == world.real.spki_sha256, run


def test_verbose_still_decides(world, probe):
    run = probe.run("-v", "--resolve", world.resolve(REAL_ADDR),
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, world.port))
    assert run.rc == 0, run


def test_dump_writes_private_parsable_pems(world, probe, tmpdir_):
    """-D DIR: every certificate seen, direct (rogue) and spheres (real)."""
    run = probe.run("--json", "-D", tmpdir_,
                    "--resolve", world.resolve(MITM_ADDR),
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, world.port))
    assert run.rc == 2, run
    files = sorted(os.listdir(tmpdir_))
    assert files, "-D wrote nothing:\n%s" % run
    dumped = []
    for name in files:
        path = os.path.join(tmpdir_, name)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600, "%s has mode %o" % (name, mode)
        out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-subject"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, "%s: %s" % (name, out.stderr)
        with open(path) as f:
            blocks = split_pem(f.read())
        assert blocks, name
        dumped += [spki_sha256_der(pem_to_der(b)) for b in blocks]
    assert world.rogue.spki_sha256 in dumped, (files, run)
    assert world.real.spki_sha256 in dumped, (files, run)
    # One leaf per path that saw one (our servers send no chain): the direct
    # path and every sphere that reported a key, no more, no fewer.
    seen = [run.json["direct"]["spki_sha256"]] + \
        [s["spki_sha256"] for s in run.json["spheres"] if s.get("spki_sha256")]
    assert sorted(dumped) == sorted(seen), (files, run)


# Configuration --------------------------------------------------------------

def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def test_config_file_sets_spheres_and_quorum(world, probe, tmpdir_):
    conf = write(os.path.join(tmpdir_, "detector.conf"),
                 "[detector]\nspheres = %s\nquorum = 5\n" % world.sphere_list(*world.honest))
    run = probe.run("--json", "--config", conf, "--resolve", world.resolve(REAL_ADDR),
                    "%s:%d" % (HOST, world.port))
    assert run.rc == 0, run
    assert run.json["quorum"] == 5, run
    assert [s["address"] for s in run.json["spheres"]] == [s.address for s in world.honest], run
    assert run.statuses() == ["match"] * 5, run


def test_env_spheres_override_the_config_file(world, probe, tmpdir_):
    conf = write(os.path.join(tmpdir_, "detector.conf"),
                 "[detector]\nspheres = %s\n" % world.sphere_list(*world.refused))
    env = probe.env(DETECTOR_CONFIG=conf, DETECTOR_SPHERES=world.sphere_list(*world.honest))
    run = probe.run("--json", "--resolve", world.resolve(REAL_ADDR),
                    "%s:%d" % (HOST, world.port), env=env)
    assert run.rc == 0, run
    assert [s["address"] for s in run.json["spheres"]] == [s.address for s in world.honest], run


def test_config_in_home_is_read(world, probe):
    d = os.path.join(probe.home, ".config", "detector")
    os.makedirs(d, exist_ok=True)
    conf = write(os.path.join(d, "detector.conf"),
                 "[detector]\nspheres = %s\nquorum = 5\n" % world.sphere_list(*world.honest))
    try:
        run = probe.run("--json", "--resolve", world.resolve(REAL_ADDR),
                        "%s:%d" % (HOST, world.port))
        assert run.rc == 0, run
        assert run.json["quorum"] == 5, run
    finally:
        os.unlink(conf)


@pytest.mark.parametrize("line,key", [("quorum = banana", "quorum"),
                                      ("probe_timeout_ms = -1", "probe_timeout_ms"),
                                      ("spheres = 127.0.0.1:notaport", "spheres"),
                                      ("no_such_key = 1", "no_such_key")])
def test_bad_config_is_an_error_naming_file_line_and_key(world, probe, tmpdir_, line, key):
    conf = write(os.path.join(tmpdir_, "bad.conf"), "# DetecTor\n[detector]\n%s\n" % line)
    run = probe.run("--config", conf, "--resolve", world.resolve(REAL_ADDR),
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, world.port))
    assert run.rc == EXIT_USAGE, run
    assert conf in run.err, run
    assert re.search(r"\b3\b", run.err), "line 3 not named:\n%s" % run
    assert key in run.err, run


# Usage errors and a failing direct connection ----------------------------------

USAGE_ERRORS = {
    "missing host": [],
    "quorum zero": ["--quorum", "0", "server.test"],
    "quorum word": ["--quorum", "abc", "server.test"],
    "quorum above spheres": ["--quorum", "6", "server.test"],
    "spheres word": ["--spheres", "nonsense", "server.test"],
    "spheres bad port": ["--spheres", "127.0.0.1:99999", "server.test"],
    "spheres empty": ["--spheres", "", "server.test"],
    "timeout negative": ["--timeout", "-5", "server.test"],
    "resolve malformed": ["--resolve", "server.test", "server.test"],
    "unknown option": ["--no-such-option", "server.test"],
    "two hosts": ["server.test", "other.test"],
    "bad port": ["server.test:0"],
}


@pytest.mark.parametrize("args", list(USAGE_ERRORS.values()), ids=list(USAGE_ERRORS))
def test_usage_errors(world, probe, args):
    if "--spheres" not in args and args:
        args = ["--spheres", world.sphere_list(*world.honest)] + args
    run = probe.run(*args, timeout=10)
    assert run.rc == EXIT_USAGE, run
    assert run.err.strip(), "no message on stderr:\n%s" % run
    assert not re.search(r"\b(accept|reject|undecided)\b", run.out, re.I), run
    assert run.elapsed < 2.0, run


def test_direct_connection_failure_is_an_error(world, probe):
    """Nothing listens on 127.0.0.5: there is no key to compare."""
    run = probe.run("--json", "--resolve", world.resolve("127.0.0.5"),
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, world.port))
    assert run.rc == EXIT_USAGE, run
    assert re.search(r"direct|connect", run.err, re.I), run
    assert re.search(r"refused", run.err, re.I), run


def test_direct_server_not_speaking_tls_is_an_error(world, probe):
    port = world.http_server.port
    run = probe.run("--resolve", "%s:%d:%s" % (HOST, port, BROKEN_ADDR),
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, port))
    assert run.rc == EXIT_USAGE, run
    assert re.search(r"direct", run.err, re.I) and re.search(r"TLS", run.err), run
    assert run.elapsed < 2.0, run


def test_silent_direct_server_is_bounded_by_the_deadline(world, probe):
    """A direct path that accepts TCP and never answers the ClientHello: the
    run ends within --deadline (the overall bound), here well under the
    per-probe --timeout."""
    port = world.silent_server.port
    run = probe.run("--resolve", "%s:%d:%s" % (HOST, port, BROKEN_ADDR),
                    "--timeout", "10000", "--deadline", "1500",
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, port))
    assert run.rc == EXIT_USAGE, run
    assert re.search(r"direct", run.err, re.I), run
    assert re.search(r"time", run.err, re.I), run
    assert run.elapsed < 1.5 + 1.5, "--deadline 1500 not kept:\n%s" % run


def test_silent_direct_server_is_bounded_by_the_timeout(world, probe):
    port = world.silent_server.port
    run = probe.run("--resolve", "%s:%d:%s" % (HOST, port, BROKEN_ADDR),
                    "--timeout", "1000",
                    "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, port))
    assert run.rc == EXIT_USAGE, run
    assert run.elapsed < 1.0 + 1.5, run


def test_early_reject_says_its_counts_are_a_lower_bound(world, probe):
    # Two honest spheres see the real key while the direct path meets the
    # MITM; the three others hang.  Quorum 4 of 5: two disagreements decide
    # REJECT at once, so the hanging three are never awaited and might have
    # disagreed too: "at least 2 of 5", never "2 of 5 spheres see".
    spheres = world.sphere_list(world.honest[0], world.honest[1], *world.blackholes[:3])
    run = probe.run("--json", "--resolve", world.resolve(MITM_ADDR), "-t", "20000",
                    "--spheres", spheres, "%s:%d" % (HOST, world.port))
    assert run.rc == 2, run
    assert run.json["verdict"] == "reject", run
    skipped = [s for s in run.json["spheres"] if s["status"] == "skipped"]
    assert len(skipped) == 3, run
    assert "differs from what at least 2 of 5 spheres see" in run.json["reason"], run
