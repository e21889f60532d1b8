"""The enhanced NSS: unmodified NSS clients run against DetecTor's
libssl3.so (detector-run) refuse a rogue-CA MITM, accept the clean path,
and never accept what stock NSS refuses.

The clients are real and unmodified: Debian's tstclnt (libnss3-tools) and
tests/hook/nbclient.c, a plain non-blocking NSS client that links only the
system NSS.  The client's own name resolution is changed the way it would be
by an attacker on its network: a private /etc/hosts in a mount namespace
sends server.test to the MITM (127.0.0.3) or to the real server
(127.0.0.2).  The spheres (microsocks, each resolving server.test itself)
see the real server.
"""

import os
import re
import subprocess
import time

import pytest

from conftest import BUILD
from testworld.ports import MITM_ADDR, REAL_ADDR

DETECTOR_RUN = os.path.join(BUILD, "detector-run")
NBCLIENT = os.path.join(BUILD, "tests", "nbclient")
TSTCLNT = "/usr/bin/tstclnt"
APP_TIMEOUT = 60
POLL_MS = 50          # nbclient's PR_Poll interval


class App:
    """One finished application run."""

    def __init__(self, argv, proc, elapsed):
        self.argv, self.rc, self.elapsed = argv, proc.returncode, elapsed
        self.out, self.err = proc.stdout, proc.stderr

    def __str__(self):
        return ("%s\n  exit %s after %.2fs\n--- stdout\n%s--- stderr\n%s---"
                % (" ".join(self.argv), self.rc, self.elapsed, self.out[-3000:],
                   self.err[-3000:]))

    __repr__ = __str__


def sanitizer_preload():
    """The sanitizer runtimes an instrumented libdetector needs preloaded
    into an uninstrumented application (make test-asan), or None."""
    lib = os.path.join(BUILD, "lib", "libdetector.so.0")
    needed = subprocess.run(["objdump", "-p", lib], capture_output=True,
                            text=True).stdout
    runtimes = re.findall(r"NEEDED\s+(lib(?:asan|ubsan)\.so[.0-9]*)", needed)
    if not runtimes:
        return None
    paths = [subprocess.run(["gcc", "-print-file-name=" + r], capture_output=True,
                            text=True).stdout.strip() for r in runtimes]
    return ":".join(paths)


PRELOAD = sanitizer_preload()


def run_app(world, tmpdir, argv, addr, detector=True, config=None,
            spheres=None, log="decisions", setup=""):
    """Runs argv with server.test resolving to addr, under detector-run
    unless detector is False.  config: text of a DetecTor config file;
    setup: shell commands run first inside the app's mount namespace."""
    hosts = os.path.join(tmpdir, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1\tlocalhost\n%s\tserver.test\n" % addr)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DETECTOR_") and k != "LD_LIBRARY_PATH"}
    env["HOME"] = tmpdir
    env["DETECTOR_SPHERES"] = spheres or world.sphere_list(*world.honest)
    env["DETECTOR_LOG"] = log
    if config is not None:
        path = os.path.join(tmpdir, "detector.conf")
        with open(path, "w") as f:
            f.write(config)
        env["DETECTOR_CONFIG"] = path
    if detector and PRELOAD:
        # The application's own leaks are not ours to report here.
        env["LD_PRELOAD"] = PRELOAD
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    runner = [DETECTOR_RUN] if detector else []
    full = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && %s exec "$@"'
            % (setup + " &&" if setup else ""), hosts] + runner + argv
    t0 = time.monotonic()
    proc = subprocess.run(full, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=APP_TIMEOUT)
    app = App(runner + argv, proc, time.monotonic() - t0)
    print(app)
    return app


def tstclnt(nssdb, port, db="trusting"):
    return [TSTCLNT, "-h", "server.test", "-p", str(port), "-d", "sql:" + nssdb[db],
            "-A", nssdb["request"]]


def nbclient(nssdb, port, addr, count=1, db="trusting", cache=True):
    return [NBCLIENT, nssdb[db], "server.test", str(port), addr, str(count)] + \
        ([] if cache else ["nocache"])


def probes_seen(world, marks):
    """Connections the honest spheres made since the marks."""
    return sum(len(s.targets(m)) for s, m in zip(world.honest, marks))


def marks(world):
    return [s.log_size() for s in world.honest]


def nb_results(app):
    """Per connection: (result line, max_call_ms)."""
    results = re.findall(r"^result: (.*)$", app.out, re.M)
    calls = [int(x) for x in re.findall(r"^max_call_ms: (\d+)$", app.out, re.M)]
    return list(zip(results, calls))


# -- 1. unmodified tstclnt through the rogue-CA MITM

def test_tstclnt_mitm_works_stock_and_is_refused_with_detector(world, nssdb, tmpdir_):
    stock = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR, detector=False)
    assert stock.rc == 0 and "hello" in stock.out, \
        "the attack must work against stock NSS (the rogue certificate is CA-valid):\n%s" % stock
    m = marks(world)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR)
    assert app.rc != 0, app
    assert "hello" not in app.out, app
    assert "DETECTOR_ERROR_MITM" in app.err, app
    assert "differs from what the Tor spheres see (possible man-in-the-middle)" in app.err, app
    assert "REFUSED" in app.err, app
    assert probes_seen(world, m) >= 2, "the refusal must come from real probes"


def test_tstclnt_tls12_mitm_refused(world, nssdb, tmpdir_):
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport12), MITM_ADDR)
    assert app.rc != 0 and "DETECTOR_ERROR_MITM" in app.err, app


# -- 2. the clean path, and no second probe for the same key

def test_tstclnt_clean_path_connects(world, nssdb, tmpdir_):
    m = marks(world)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR)
    assert app.rc == 0 and "hello" in app.out, app
    assert re.search(r"server\.test:%d accepted \(accept\)" % world.cport, app.err), app
    assert probes_seen(world, m) >= 4, "quorum 4 needs four real probes"


def test_second_connection_makes_no_probe(world, nssdb, tmpdir_):
    # Two full handshakes (no session resumption) in one process: the
    # verdict memory is per process until the persistent cache exists.
    m = marks(world)
    app = run_app(world, tmpdir_, nbclient(nssdb, world.cport, REAL_ADDR, count=2,
                                           cache=False), REAL_ADDR)
    res = nb_results(app)
    assert [r for r, _ in res] == ["ok", "ok"], app
    assert app.err.count("probing the spheres") == 1, app
    assert "remembered verdict 'accept' for this key, no probe" in app.err, app
    first = probes_seen(world, m)
    assert 4 <= first <= 5, app
    # and the spheres saw nothing more
    app2_marks = marks(world)
    assert probes_seen(world, app2_marks) == 0


# -- 3. a non-blocking client is never blocked by the probes

@pytest.mark.parametrize("tls12", [False, True], ids=["tls13", "tls12"])
def test_nonblocking_client_clean_and_mitm(world, nssdb, tmpdir_, tls12):
    port = world.cport12 if tls12 else world.cport
    slow = world.sphere_list(*world.honest)
    clean = run_app(world, tmpdir_, nbclient(nssdb, port, REAL_ADDR), REAL_ADDR,
                    spheres=slow)
    [(result, max_call)] = nb_results(clean)
    assert result == "ok", clean
    assert "handshake suspended" in clean.err, "the check must run asynchronously:\n%s" % clean
    assert max_call <= POLL_MS + 30, \
        "a call kept the application's thread %d ms (poll interval %d ms)" % (max_call, POLL_MS)
    mitm = run_app(world, tmpdir_, nbclient(nssdb, port, MITM_ADDR), MITM_ADDR)
    [(result, max_call)] = nb_results(mitm)
    assert result.startswith("failed DETECTOR_ERROR_MITM"), mitm
    assert max_call <= POLL_MS + 30, mitm


def test_nonblocking_client_not_blocked_by_a_slow_sphere(world, nssdb, tmpdir_):
    # Four blackholes and one honest sphere: the check runs until the probe
    # timeout (3 s) and ends UNDECIDED (accepted by default).  Meanwhile the
    # application's thread keeps returning from every call within a poll
    # interval.
    spheres = world.sphere_list(world.honest[0], *world.blackholes[:4])
    app = run_app(world, tmpdir_, nbclient(nssdb, world.cport, REAL_ADDR), REAL_ADDR,
                  spheres=spheres,
                  config="[detector]\nprobe_timeout_ms = 3000\ndeadline_ms = 3000\n")
    [(result, max_call)] = nb_results(app)
    assert result == "ok", app
    assert app.elapsed >= 2.5, "the check should have waited for the timeout:\n%s" % app
    assert max_call <= POLL_MS + 30, app
    polls = int(re.search(r"^polls: (\d+)$", app.out, re.M).group(1))
    assert polls >= 20, "the application kept running its loop while probes ran:\n%s" % app
    assert "on_undecided = accept" in app.err, app


# -- 5. excluded hosts: never probed, stock behaviour

def test_excluded_host_is_not_probed(world, nssdb, tmpdir_):
    m = marks(world)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR,
                  config="[detector]\nexclude = test\n")
    assert app.rc == 0 and "hello" in app.out, app
    assert "not probed: excluded by 'test'" in app.err, app
    assert probes_seen(world, m) == 0


# -- 6. never accepts what stock NSS rejects

def test_untrusted_certificate_still_fails_with_the_stock_error(world, nssdb, tmpdir_):
    m = marks(world)
    stock = run_app(world, tmpdir_, tstclnt(nssdb, world.cport, db="empty"), REAL_ADDR,
                    detector=False)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport, db="empty"), REAL_ADDR)
    assert stock.rc != 0 and "SEC_ERROR_UNKNOWN_ISSUER" in stock.err, stock
    assert app.rc != 0 and "SEC_ERROR_UNKNOWN_ISSUER" in app.err, app
    assert "DETECTOR_ERROR" not in app.err and "DetecTor[" not in app.err, app
    assert probes_seen(world, m) == 0, "DetecTor must not even look at a rejected certificate"
    nb = run_app(world, tmpdir_, nbclient(nssdb, world.cport, REAL_ADDR, db="empty"),
                 REAL_ADDR)
    [(result, _)] = nb_results(nb)
    assert result.startswith("failed SEC_ERROR_UNKNOWN_ISSUER"), nb


# -- configuration: disabled, invalid, undecided policy

def test_disabled_by_configuration_is_stock(world, nssdb, tmpdir_):
    m = marks(world)
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR,
                  config="[detector]\nenabled = no\n")
    assert app.rc == 0 and "hello" in app.out, app
    assert "DetecTor[" not in app.err, app
    assert probes_seen(world, m) == 0


def test_invalid_configuration_fails_closed(world, nssdb, tmpdir_):
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR,
                  config="[detector]\nquorum = lots\n")
    assert app.rc != 0 and "DETECTOR_ERROR_CONFIG" in app.err, app
    assert re.search(r"detector\.conf:2: key 'quorum'", app.err), app


def test_undecided_follows_the_policy(world, nssdb, tmpdir_):
    down = ",".join(world.refused)
    accept = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR, spheres=down)
    assert accept.rc == 0 and "hello" in accept.out, accept
    assert "on_undecided = accept" in accept.err, accept
    reject = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR, spheres=down,
                     config="[detector]\non_undecided = reject\n")
    assert reject.rc != 0 and "DETECTOR_ERROR_UNDECIDED" in reject.err, reject


def test_timeouts_never_turn_a_reject_into_an_accept(world, nssdb, tmpdir_):
    # Two spheres see the real key (they disagree with the MITM), three never
    # answer: at quorum 4 of 5 that is already REJECT (2 >= n-k+1).
    spheres = world.sphere_list(world.honest[0], world.honest[1], *world.blackholes[:3])
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR, spheres=spheres,
                  config="[detector]\nprobe_timeout_ms = 2000\n")
    assert app.rc != 0 and "DETECTOR_ERROR_MITM" in app.err, app
