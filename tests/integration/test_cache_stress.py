"""The verdict cache under many processes at once (issue 13 item 2).

An adversarial run found that 200 NSS applications starting together on a
fresh cache made one of them declare the healthy cache damaged, move it
aside and unlink its lock file while the others used it: verdicts were
lost, processes fell back to memory, one died of SIGBUS.  Here:

- tests/hook/cachestress forks 200 processes that open one fresh cache
  together, remember verdicts under their own names and one shared name,
  read them back, close, open again and read again (libdetector's cache
  API, the calls the NSS hook makes).  Ten rounds, each on a fresh cache in
  a private tmpfs (no fsync: the races are tighter and a round takes about
  a second), and one round on the disk the tests use.  Every round must
  end with no file moved aside, no "damaged" note, no process that fell
  back to memory or died of a signal, every verdict readable afterwards.
  Before the fix this failed in every tmpfs round (2 processes killed by
  SIGABRT in LMDB in one, up to 800 of 800 verdicts lost).
- 100 unmodified tstclnt under detector-run at once, half through the MITM
  and half on the clean path, same name, fresh cache: the clean path
  connects, the MITM is refused, none is killed by a signal or reports a
  cache problem, nothing is moved aside, the cache is readable after.
  The crowd's probes all go out at once, and on a busy machine some of
  them fail (a run saw 13 of 100 apps find no sphere answering): such an
  app is UNDECIDED, which is not the cache's doing.  So the MITM's half
  runs with on_undecided = reject (refused either way: once the clean half
  has had the real key confirmed, an undecided MITM app is refused as a
  key change, DETECTOR_ERROR_KEY_CHANGED) and the clean half with the
  default (connects either way, by history once confirmed); two spheres,
  quorum 2, keep the burst at 200 probes.
"""

import os
import re
import stat
import subprocess
import time

from conftest import BUILD, Probe
from test_nss_hook import DETECTOR_RUN, PRELOAD, tstclnt
from world import MITM_ADDR, REAL_ADDR

CACHESTRESS = os.path.join(BUILD, "tests", "cachestress")
PROCS = 200
# Under ASan (make test-asan: PRELOAD is set) a round takes ten times as
# long; the ten rounds are the uninstrumented pass's, three check the
# instrumented code.
ROUNDS = 3 if PRELOAD else 10
CROWD = 100
COUNTS = re.compile(r"^procs=(\d+) (.*)$", re.M)


def run_stress(folder, tmpfs):
    """One round of cachestress on a fresh cache in folder (a private tmpfs
    mounted there if tmpfs); returns (its output, the cache folder's
    listing as 'name mode' lines)."""
    script = ('%s"$1" "$0/c/verdicts.mdb" "$2"; rc=$?; echo "-- files"; '
              'stat -c "%%n %%a" "$0"/c/*; exit $rc'
              % ('mount -t tmpfs -o size=64m,mode=0700 tmpfs "$0" && '
                 if tmpfs else ""))
    argv = ["sh", "-c", script, folder, CACHESTRESS, str(PROCS)]
    if tmpfs:
        argv = ["unshare", "--mount", "--propagation", "private"] + argv
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out, _, files = proc.stdout.partition("-- files\n")
    return proc, out, files


def check_round(label, proc, out, files):
    what = "%s\nexit %s\n--- stdout\n%s--- stderr\n%s" % (
        label, proc.returncode, out[-4000:], proc.stderr[-2000:])
    m = COUNTS.search(out)
    assert m, "no counts line:\n" + what
    counts = dict(kv.split("=") for kv in m.group(2).split())
    assert int(m.group(1)) == PROCS, what
    assert all(v == "0" for v in counts.values()), what
    assert "damaged" not in out and "corrupt" not in out, what
    assert "died of signal" not in out, what
    assert proc.returncode == 0, what
    names = {line.split()[0].rsplit("/", 1)[-1]: line.split()[1]
             for line in files.splitlines() if line.strip()}
    assert not [n for n in names if ".corrupt-" in n], what + files
    assert set(names) == {"verdicts.mdb", "verdicts.mdb-lock",
                          "verdicts.mdb-guard"}, what + files
    assert set(names.values()) == {"600"}, what + files


def test_200_processes_ten_rounds_nothing_set_aside_nothing_lost(tmpdir_):
    assert os.access(CACHESTRESS, os.X_OK), "build it first (`make`)"
    t0 = time.monotonic()
    for r in range(ROUNDS):
        folder = os.path.join(tmpdir_, "round%d" % r)
        os.mkdir(folder, 0o700)
        t = time.monotonic()
        check_round("tmpfs round %d" % r, *run_stress(folder, tmpfs=True))
        print("tmpfs round %d: %.1f s" % (r, time.monotonic() - t))
    # And once on the real file system (fsync, the tests' disk).
    folder = os.path.join(tmpdir_, "disk")
    os.mkdir(folder, 0o700)
    t = time.monotonic()
    check_round("disk round", *run_stress(folder, tmpfs=False))
    print("disk round: %.1f s" % (time.monotonic() - t))
    print("%d rounds of %d processes in %.1f s" % (ROUNDS + 1, PROCS,
                                                   time.monotonic() - t0))


def start_app(world, tmpdir, i, argv, addr, config):
    """run_app's command (test_nss_hook.py), started without waiting: the
    app's own /etc/hosts sends server.test to addr, HOME is the shared
    tmpdir (so one cache), DETECTOR_CONFIG is config, stdout/stderr go to
    files."""
    hosts = os.path.join(tmpdir, "hosts-%d" % i)
    with open(hosts, "w") as f:
        f.write("127.0.0.1\tlocalhost\n%s\tserver.test\n" % addr)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DETECTOR_") and k != "LD_LIBRARY_PATH"}
    env["HOME"] = tmpdir
    # Two spheres, both needed (quorum 2 in config): see the docstring.
    env["DETECTOR_SPHERES"] = world.sphere_list(*world.honest[:2])
    env["DETECTOR_CONFIG"] = config
    env["DETECTOR_LOG"] = "decisions"
    if PRELOAD:
        env["LD_PRELOAD"] = PRELOAD
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    full = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', hosts,
            DETECTOR_RUN] + argv
    out = open(os.path.join(tmpdir, "out-%d" % i), "w+")
    err = open(os.path.join(tmpdir, "err-%d" % i), "w+")
    return subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err), out, err


def test_100_tstclnt_at_once_same_name_fresh_cache(world, nssdb, tmpdir_):
    config = {REAL_ADDR: "[detector]\nquorum = 2\n",
              MITM_ADDR: "[detector]\nquorum = 2\non_undecided = reject\n"}
    for addr, text in config.items():
        config[addr] = os.path.join(tmpdir_, "detector-%s.conf" % addr)
        with open(config[addr], "w") as f:
            f.write(text)
    apps = []
    undecided = 0
    t0 = time.monotonic()
    for i in range(CROWD):
        addr = MITM_ADDR if i % 2 else REAL_ADDR
        apps.append((addr,) + start_app(world, tmpdir_, i,
                                        tstclnt(nssdb, world.cport), addr,
                                        config[addr]))
    problems = []
    for i, (addr, proc, out, err) in enumerate(apps):
        try:
            rc = proc.wait(timeout=max(1, 120 - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            problems.append("app %d: still running after 120 s" % i)
        out.seek(0)
        err.seek(0)
        o, e = out.read(), err.read()
        out.close()
        err.close()
        what = "app %d (%s) exit %s:\n%s" % (i, addr, rc, e[-1500:])
        if rc < 0 or "signal" in e.lower():
            problems.append("killed by a signal: " + what)
        elif addr == REAL_ADDR and (rc != 0 or "hello" not in o):
            problems.append("the clean path was not accepted: " + what)
        elif addr == MITM_ADDR and (rc == 0 or not re.search(
                r"DETECTOR_ERROR_(MITM|UNDECIDED|KEY_CHANGED)", e)):
            problems.append("the MITM was not refused: " + what)
        undecided += "(undecided" in e
        if re.search(r"damaged|corrupt|kept in memory|verdict cache", e):
            problems.append("a cache problem: " + what)
    elapsed = time.monotonic() - t0
    assert not problems, "%d of %d apps:\n%s" % (len(problems), CROWD,
                                                 "\n".join(problems[:5]))
    d = os.path.join(tmpdir_, ".cache", "detector")
    names = sorted(os.listdir(d))
    assert names == ["verdicts.mdb", "verdicts.mdb-guard", "verdicts.mdb-lock"], names
    for n in names:
        assert stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode) == 0o600, n
    # The shared name holds one of the two verdicts written, whole.
    listed = Probe(tmpdir_).run("--cache-list", cache=True)
    assert listed.rc == 0, listed
    m = re.search(r"^server\.test:%d\s+(accept|reject|undecided)\s+([0-9a-f]{16})"
                  % world.cport, listed.out, re.M)
    assert m, listed
    real, rogue = world.real.spki_sha256[:16], world.rogue.spki_sha256[:16]
    want = {"accept": (real,), "reject": (rogue,), "undecided": (real, rogue)}
    assert m.group(2) in want[m.group(1)], listed
    print("%d tstclnt in %.1f s, %d undecided" % (CROWD, elapsed, undecided))
