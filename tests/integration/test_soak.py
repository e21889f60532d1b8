"""The soak: many handshakes in one long-running, unmodified NSS application
(tests/soak/soakclient.c, system NSS) under the enhanced libssl3.so with
DetecTor active, watching the process's own file descriptors, resident
memory and threads.

Run by `make test-soak` (a short run, part of `make test`) and `make soak`
(10,000 sequential + 1,000 concurrent handshakes); DETECTOR_SOAK=SEQ,CONC
sets the counts, and without it this file is skipped.

The mix: three names (server.test and other.test probed, excluded.test
excluded by the configuration) on four ports of forking real servers: 12
targets in turn.  cache_validity = 3 s, so each of the 8 probed host:port
keys is probed again every few seconds: cache misses (probes through five
real microsocks spheres), persistent-cache hits and exclusions all through
the run.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import BUILD
from testworld.ports import HOST, REAL_ADDR, free_port
from testworld.world import Sphere, World

SOAK = os.environ.get("DETECTOR_SOAK")
pytestmark = pytest.mark.skipif(not SOAK, reason="run by `make test-soak` or `make soak`")

SOAKCLIENT = os.path.join(BUILD, "tests", "soakclient")
DETECTOR_RUN = os.path.join(BUILD, "detector-run")
NAMES = ["other.test", "excluded.test"]

# Stability thresholds (see docs/testing.md):
FD_SLACK = 2            # descriptors: back to the warm figure +- this after
                        # each phase (DetecTor keeps its cache's two
                        # descriptors open; nothing else may stay)
FD_INFLIGHT = 12        # sequential phase: one check in flight = five
                        # sphere sockets + the application's own + slack
THREAD_SLACK = 2        # threads after 3 s idle: the warm figure + this
RSS_PER_HANDSHAKE = 64  # bytes: the RSS growth allowed per handshake
                        # after the first 10% (a leak of one small
                        # allocation per handshake is >= 64 bytes)
RSS_FLOOR_KB = 2048     # ...but never less than this (malloc arenas and
                        # page-granular growth)
CONC_ROUND_GROWTH = 0.25  # a second concurrent round may add at most this
                        # share of what the first one left in the heap


@pytest.fixture(scope="module")
def soak_world():
    w = World(minimal=True, names=NAMES)
    w.start()
    try:
        ports = [w.cport, w.cport12]
        for i in range(2):
            p = free_port(REAL_ADDR)
            w._socat_server("soak%d" % i, p, w.real)
            ports.append(p)
        spheres = [Sphere(w, "soak%d" % i, {HOST: REAL_ADDR, "other.test": REAL_ADDR})
                   for i in range(5)]
        for s in spheres:
            s.wait()
        db = os.path.join(w.dir, "nssdb")
        os.mkdir(db, 0o700)
        subprocess.run(["certutil", "-N", "-d", "sql:" + db, "--empty-password"],
                       check=True, capture_output=True)
        subprocess.run(["certutil", "-A", "-d", "sql:" + db, "-n", "testca", "-t", "C,,",
                        "-i", w.ca.crt], check=True, capture_output=True)
        yield {"world": w, "ports": ports, "spheres": spheres, "db": db}
    finally:
        w.stop()


def parse(out):
    stats = [dict(phase=m[0], n=int(m[1]), fds=int(m[2]), rss_kb=int(m[3]),
                  threads=int(m[4]))
             for m in re.findall(r"^stats (\S+) n=(\d+) fds=(\d+) rss_kb=(\d+) threads=(\d+)$",
                                 out, re.M)]
    results = {m[0]: (int(m[1]), int(m[2]))
               for m in re.findall(r"^result (\S+) ok=(\d+) failed=(\d+)$", out, re.M)}
    return stats, results


def test_soak(soak_world):
    """Expected: every handshake succeeds; probes, cache hits and
    exclusions all happen; after each phase the descriptors are back to
    the warm figure (+-FD_SLACK); threads stay within the glue's 32 workers
    and after idling are back to the warm figure (+THREAD_SLACK); the
    resident memory of the sequential phase grows by at most
    RSS_PER_HANDSHAKE bytes per handshake after the first 10% (floor
    RSS_FLOOR_KB), and a second concurrent round adds at most
    CONC_ROUND_GROWTH of what the first left."""
    seq, conc = (int(x) for x in SOAK.split(","))
    w, home = soak_world["world"], soak_world["world"].dir
    targets = ["%s:%d:%s" % (name, port, REAL_ADDR)
               for port in soak_world["ports"] for name in [HOST] + NAMES]
    conf = os.path.join(home, "detector.conf")
    with open(conf, "w") as f:
        f.write("[detector]\nspheres = %s\ncache_validity = 3\nexclude = excluded.test\n"
                % w.sphere_list(*soak_world["spheres"]))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DETECTOR_") and k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    env.update(HOME=home, DETECTOR_CONFIG=conf, DETECTOR_LOG="decisions")
    # A private copy of the enhanced libraries, so that a long run is not
    # at the mercy of other builds of build/lib (an in-place rewrite of a
    # mapped library kills the process: it did, before the Makefile
    # replaced them atomically).
    libdir = os.path.join(home, "lib")
    os.makedirs(libdir, exist_ok=True)
    for name in ("libssl3.so", "libdetector.so.0"):
        shutil.copy2(os.path.join(BUILD, "lib", name), os.path.join(libdir, name))
    env["DETECTOR_LIBDIR"] = libdir
    # Each concurrent round starts after every cached verdict expired: its
    # first handshakes for each key probe, and the rest join that check.
    env["SOAKCLIENT_PAUSE_MS"] = "3500"
    every = max(seq // 20, 1)
    # DETECTOR_SOAK_WRAP: a debugger or tracer put before the client, e.g.
    # "gdb -batch -ex run -ex 'thread apply all bt' --args".
    wrap = os.environ.get("DETECTOR_SOAK_WRAP", "").split()
    argv = [DETECTOR_RUN] + wrap + [SOAKCLIENT, soak_world["db"], str(seq), str(conc),
                                     str(every)] + targets
    limit = 120 + seq * 0.05 + conc * 0.4
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=limit,
                          stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - t0
    stats, results = parse(proc.stdout)
    by = {s["phase"]: s for s in stats}
    during = [s for s in stats if s["phase"] == "during"]
    probes = proc.stderr.count("probing the spheres")
    hits = proc.stderr.count("remembered verdict")
    excluded = proc.stderr.count("not probed: excluded")
    joined = proc.stderr.count("joined the check already running")
    report = ["soak: %d sequential + 2 x %d concurrent handshakes, %d targets, %.1f s"
              % (seq, conc, len(targets), elapsed),
              "decisions: %d probed, %d joined a running check, %d from the cache, "
              "%d excluded" % (probes, joined, hits, excluded)]
    for s in stats:
        report.append("  %-7s n=%-6d fds=%-5d rss_kb=%-7d threads=%d"
                      % (s["phase"], s["n"], s["fds"], s["rss_kb"], s["threads"]))
    for phase, (ok, failed) in results.items():
        report.append("  result %-5s ok=%d failed=%d" % (phase, ok, failed))
    report += re.findall(r"^error .*$", proc.stdout, re.M)
    text = "\n".join(report)
    print(text)
    if os.environ.get("DETECTOR_SOAK_REPORT"):
        with open(os.environ["DETECTOR_SOAK_REPORT"], "w") as f:
            f.write(text + "\n")
    detail = "%s\n--- exit %s; stderr tail\n%s" % (text, proc.returncode, proc.stderr[-3000:])

    assert proc.returncode == 0, detail
    assert results.get("seq") == (seq, 0) and results.get("conc") == (conc, 0) and \
        results.get("conc2") == (conc, 0), detail
    assert {"start", "warm", "seq", "peak", "conc", "peak2", "conc2", "idle"} <= set(by), detail
    # The mix really happened.
    assert probes >= 8 and hits > probes and excluded >= (seq + conc) // 12 - 1, detail
    assert "AddressSanitizer" not in proc.stderr, detail
    # File descriptors.
    warm = by["warm"]
    for s in during:
        assert s["fds"] <= warm["fds"] + FD_INFLIGHT, "fds during the sequential phase\n" + detail
    for phase in ("seq", "conc", "conc2", "idle"):
        assert abs(by[phase]["fds"] - warm["fds"]) <= FD_SLACK, \
            "fds after %s: %d, warm %d\n%s" % (phase, by[phase]["fds"], warm["fds"], detail)
    # Threads: at most the glue's 32 workers while checks run; none left.
    assert max(by["peak"]["threads"], by["peak2"]["threads"]) <= warm["threads"] + 32, detail
    assert by["idle"]["threads"] <= warm["threads"] + THREAD_SLACK, detail
    # Memory: from the first sample past 10% of the sequential phase to its end.
    base = next((s for s in during if s["n"] >= seq // 10), warm)
    growth_kb = by["seq"]["rss_kb"] - base["rss_kb"]
    allowed_kb = max(RSS_FLOOR_KB, RSS_PER_HANDSHAKE * (by["seq"]["n"] - base["n"]) // 1024)
    assert growth_kb <= allowed_kb, \
        "RSS grew %d kB over %d handshakes (allowed %d kB)\n%s" % (
            growth_kb, by["seq"]["n"] - base["n"], allowed_kb, detail)
    # The second concurrent round reuses what the allocator kept from the
    # first: it may not grow by more than CONC_ROUND_GROWTH of it.
    first = by["conc"]["rss_kb"] - by["seq"]["rss_kb"]
    assert by["conc2"]["rss_kb"] - by["conc"]["rss_kb"] <= max(RSS_FLOOR_KB,
                                                                CONC_ROUND_GROWTH * first), detail
