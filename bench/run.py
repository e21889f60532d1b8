#!/usr/bin/python3
"""make bench: DetecTor's performance, measured side by side on loopback.

Prints one table and writes it to bench/results.md with a description of the
machine.  Every figure is a ratio or a rate of two things measured in this
same run on this machine (or, for the cache, a time per call measured here);
nothing is compared with numbers from elsewhere.  The Convergence paper's
figures are printed beside ours for context only, labelled as such.  A goal
that is not met says MISSED: the loops below are fixed in advance, and are
not to be tuned until a goal passes.

  P1  handshakes/s of an unmodified NSS client with the enhanced libssl3.so
      + libdetector (verdict cached) / with the stock libssl3.so; and the
      time of one verdict-cache lookup.
  P2  detector_check()'s cold verdict time / the k-th fastest sphere's own
      time, with spheres of staggered delays and one that never answers;
      beside it, a wait-for-all check (quorum n).
  P3  bytes per sphere probe, counted on the SOCKS side / the bytes of a
      direct handshake up to the server's Certificate.
  P4  probes/s with 1,000 checks in flight on one thread / the handshake
      rate of the same server for a plain NSS client loop; peak RSS.
  P5  verdict cache at 1M entries: bytes per entry on disk, lookup
      p50/p99, lookups/s from one and from two processes.
  P6  first visit: an unmodified tstclnt under detector-run with a cold
      cache minus stock tstclnt, against the verdict time of the same
      check (detector_check() in a running process); and where the rest
      goes (the detector-run wrapper, the cache's sync, a warm run).
  P7  reroute: time to the first response byte of an unmodified tstclnt
      rerouted through a sphere (its direct path a rogue-CA MITM) ÷ the
      same on the clean path; context, no goal.

Everything runs on loopback in the test world of tests/testworld/world.py
(test CA, microsocks spheres each in a mount namespace: root is needed) plus
bench/tls_server, a lean concurrent TLS server.  Every process started here
is ended by its PID; every loop is bounded.  The whole run takes a few
minutes on 2 cores.  It imports the test-world package: run it with
tests/ on PYTHONPATH, as `make bench` does.
"""

import os
import platform
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time

from testworld import WorldError
from testworld.faults import Blackhole
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, SPHERE_ADDR, free_port, wait_tls
from testworld.processes import Process
from testworld.relay import SlowLink
from testworld.tlsbytes import CountingRelay, TlsParseError, handshake_bytes_to_certificate
from testworld.world import World

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(ROOT, "build")
BIN = os.path.join(BUILD, "bench")
RESULTS = os.environ.get("BENCH_RESULTS") or os.path.join(HERE, "results.md")

# The loops, fixed in advance (a run of about 4-5 minutes on 2 cores).
P1_ROUNDS = 7             # rounds of (stock, enhanced, enhanced-disabled), order rotated
P1_HANDSHAKES = 1000      # timed full handshakes per client run (after 20 untimed)
P1_LOOKUPS = 2000000      # cache_recall() calls timed in one loop
P2_DELAYS = (0.05, 0.10, 0.15, 0.20)   # seconds added by the four slow spheres
P2_QUORUM = 4             # the default k of 5
P2_TIMEOUT_MS = 2000      # probe timeout (the silent sphere costs this)
P2_TRIALS = 7             # checks per configuration (the median is used)
P2_SILENT_TRIALS = 2      # the silent sphere alone always takes the timeout
P2_WAITALL_TRIALS = 3
P3_PROBES = 20
P4_INFLIGHT = 1000
P4_CHECKS = 3000          # checks made in all, INFLIGHT at a time
P4_DIRECT_CHECKS = 2000
P4_SMALL_INFLIGHT = 100   # the same at a tenth of the load, for comparison
P4_SMALL_CHECKS = 2000
P4_RAW_HANDSHAKES = 1000
P4_TIMEOUT_MS = 20000     # the library's default probe timeout
P4_LIMIT = 64             # the engine's admission control: checks running at once
P4_QUEUE = 4096           # and checks waiting (probe_scale's defaults)
P6_TRIALS = 9             # rounds of (stock, cold, warm, verdict), alternating
P6_TRACE_TRIALS = 7       # cold runs under strace: where the time goes
P7_TRIALS = 9             # rounds of (stock, direct, rerouted), time to the first byte
TSTCLNT = "/usr/bin/tstclnt"
P5_ENTRIES = 1000000
P5_SAMPLES = 200000
P5_SECONDS = 1.5
P5_ALTERNATIONS = 5       # 1 process, 2 processes, repeated (the median is used)
CMD_TIMEOUT = 300         # seconds for any one benchmark program

# The Convergence paper (Carpenter et al., IMC 2014), for context only.
PAPER = {
    "lookup": "108 ms local cache hit",
    "cold": "1,006 ms notary cache miss, 743 ms notary hit (continental); "
            "260 ms average per validation",
    "scale": "1,051 req/s cached notary (199 req/s uncached)",
    "size": "≈34 B per entry (20 B fingerprint + name); 100,000 in ≈3.2 MB",
}


class BenchError(RuntimeError):
    """A measurement could not be made; the message says which and why."""


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def run(argv, env=None, timeout=CMD_TIMEOUT, what=None):
    """Run a benchmark program; return its stdout, or raise BenchError."""
    try:
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("%s: still running after %ss (killed)" % (what or argv[0], timeout))
    if p.returncode != 0:
        raise BenchError("%s: exit %d: %s" % (what or " ".join(argv), p.returncode,
                                              (p.stderr or p.stdout).strip()[-800:]))
    return p.stdout, p.stderr


def keyvals(text):
    """The "key value" lines of a benchmark program's output."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k and v:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def fmt_rate(x):
    return "{:,.0f}".format(x)


# --------------------------------------------------------------------------
# The machine


def _cmd(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        if m:
            cpu = m.group(1)
    with open("/proc/meminfo") as f:
        kib = int(re.search(r"MemTotal:\s*(\d+)", f.read()).group(1))
    nss = _cmd(["pkg-config", "--modversion", "nss"])
    nss_pkg = _cmd(["dpkg-query", "-W", "-f=${Version}", "libnss3"])
    commit = _cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    return [
        ("date (UTC)", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())),
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu),
        ("memory", "%.1f GiB" % (kib / 1024 / 1024)),
        ("kernel", "%s %s" % (platform.system(), platform.release())),
        ("NSS", "%s (Debian libnss3 %s), NSPR %s" % (nss, nss_pkg or "?",
                                                    _cmd(["pkg-config", "--modversion", "nspr"]))),
        ("LMDB", _cmd(["pkg-config", "--modversion", "lmdb"])),
        ("OpenSSL (bench server)", _cmd(["pkg-config", "--modversion", "openssl"])),
        ("commit", commit or "?"),
    ]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


CORES = os.cpu_count() or 1


def load_note(load=None):
    """The 1-minute load average, to stand beside a figure: above the core
    count the machine was busy with other work and the figure measures that
    contention as much as DetecTor (flagged unreliable)."""
    if load is None:
        load = os.getloadavg()[0]
    if load > CORES:
        return "%.2f (unreliable: above %d cores)" % (load, CORES)
    return "%.2f" % load


# --------------------------------------------------------------------------
# The measurements


class Bench:
    def __init__(self, w):
        self.w = w
        self.rows = []
        self.notes = []
        self.raw = []
        self.procs = []
        self.services = []
        self.home = os.path.join(w.dir, "bench-home")
        os.mkdir(self.home, 0o700)
        self.cert_der = os.path.join(w.dir, "real.der")
        with open(self.cert_der, "wb") as f:
            f.write(w.real.der)
        self.nssdb = os.path.join(w.dir, "bench-nssdb")
        os.mkdir(self.nssdb, 0o700)
        run(["certutil", "-N", "-d", "sql:" + self.nssdb, "--empty-password"])
        run(["certutil", "-A", "-d", "sql:" + self.nssdb, "-n", "testca", "-t", "C,,",
             "-i", w.ca.crt])
        self.disabled_conf = os.path.join(w.dir, "disabled.conf")
        with open(self.disabled_conf, "w") as f:
            f.write("[detector]\nenabled = no\n")
        self.spheres = w.sphere_list(*w.honest)
        self.port = free_port(REAL_ADDR)
        self.server = Process("bench tls_server",
                              [os.path.join(BIN, "tls_server"), REAL_ADDR, str(self.port),
                               w.real.crt, w.real.key, str(os.cpu_count() or 1)],
                              os.path.join(w.dir, "tls_server.log"))
        self.procs.append(self.server)
        wait_tls(REAL_ADDR, self.port, self.server)

    def stop(self):
        for s in self.services:
            s.stop()
        for p in self.procs:
            p.stop()

    def row(self, pid, what, ours, goal="—", status="—", paper="—", load=None):
        self.rows.append((pid, what, ours, load_note(load), goal, status, paper))

    def failed(self, pid, what, err):
        self.row(pid, what, "not measured: %s" % err, status="FAILED")

    # -- the client runs

    def env(self, variant):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DETECTOR_", "XDG_")) and
               k not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "NSS_DETECTOR_LIBRARY")}
        env["HOME"] = self.home
        env["DETECTOR_SPHERES"] = self.spheres
        if variant == "disabled":
            env["DETECTOR_CONFIG"] = self.disabled_conf
        return env

    def handshakes(self, variant, count, warmup=20, addr=REAL_ADDR, port=None, env=None):
        """hsclient's handshakes/s; variant: stock, enhanced or disabled."""
        argv = [os.path.join(BIN, "hsclient"), self.nssdb, HOST, addr,
                str(port or self.port), str(count), str(warmup)]
        if variant != "stock":
            argv = [os.path.join(BUILD, "detector-run")] + argv
        out, err = run(argv, env=env or self.env(variant), what="hsclient (%s)" % variant)
        m = re.search(r"handshakes (\d+) failed (\d+) seconds ([\d.]+) rate ([\d.]+)", out)
        if not m or int(m.group(2)) != 0:
            raise BenchError("hsclient (%s): %s %s" % (variant, out.strip(), err.strip()[-300:]))
        return float(m.group(4)), err

    def sphere_marks(self):
        return [s.log_size() for s in self.w.honest]

    def sphere_connections(self, marks):
        return sum(len(s.targets(m)) for s, m in zip(self.w.honest, marks))

    # -- P1

    def p1(self):
        what = "handshakes/s, enhanced libssl3.so + libdetector (verdict cached) ÷ stock libssl3.so"
        try:
            # The verdict for server.test's key is made once, then cached.
            env = self.env("enhanced")
            env["DETECTOR_LOG"] = "decisions"
            _, err = self.handshakes("enhanced", 1, warmup=0, env=env)
            if "accepted (accept)" not in err:
                raise BenchError("the first enhanced handshake was not probed and "
                                 "accepted: %s" % err.strip()[-300:])
            _, err = self.handshakes("enhanced", 1, warmup=0, env=env)
            if "remembered verdict 'accept' for this key, no probe" not in err:
                raise BenchError("the verdict was not answered from the cache: %s"
                                 % err.strip()[-300:])
            variants = ["stock", "enhanced", "disabled"]
            rates = {v: [] for v in variants}
            marks = self.sphere_marks()
            for r in range(P1_ROUNDS):
                order = variants[r % 3:] + variants[:r % 3]
                for v in order:
                    rates[v].append(self.handshakes(v, P1_HANDSHAKES)[0])
                log("P1 round %d/%d: %s" % (r + 1, P1_ROUNDS, ", ".join(
                    "%s %.0f/s" % (v, rates[v][-1]) for v in variants)))
            probes = self.sphere_connections(marks)
            if probes:
                raise BenchError("the spheres saw %d connections during the timed "
                                 "enhanced runs: the verdict was not cached" % probes)
            ratios = [e / s for e, s in zip(rates["enhanced"], rates["stock"])]
            dratios = [d / s for d, s in zip(rates["disabled"], rates["stock"])]
            ratio = statistics.median(ratios)
            self.row("P1", what,
                     "%.3f (%.1f%% %s; rounds %.3f–%.3f; %s vs %s handshakes/s)"
                     % (ratio, abs(1 - ratio) * 100, "slower" if ratio < 1 else "faster",
                        min(ratios), max(ratios),
                        fmt_rate(statistics.median(rates["enhanced"])),
                        fmt_rate(statistics.median(rates["stock"]))),
                     "≥ 0.98 (≤ 2% slower)", "met" if ratio >= 0.98 else "MISSED")
            self.row("P1", "(diagnostic) the enhanced libssl3.so with `enabled = no` ÷ stock",
                     "%.3f (rounds %.3f–%.3f)" % (statistics.median(dratios), min(dratios),
                                                  max(dratios)))
            self.raw.append("P1 handshakes/s per round (%d timed full handshakes each, "
                            "SSL_NO_CACHE): %s" % (P1_HANDSHAKES, "; ".join(
                                "%s %s" % (v, ", ".join("%.0f" % x for x in rates[v]))
                                for v in variants)))
            self.raw.append("P1 spheres contacted during the timed enhanced runs: %d" % probes)
        except (BenchError, WorldError, OSError) as e:
            self.failed("P1", what, e)

        what = "verdict lookup: cache_recall() on a warm LMDB cache"
        try:
            d = os.path.join(self.w.dir, "p1-cache")
            out, _ = run([os.path.join(BIN, "cache_bench"), "lookup",
                          os.path.join(d, "verdicts.mdb"), str(P1_LOOKUPS)])
            ns = keyvals(out)["lookup_ns_per_call"]
            self.row("P1", what, "%.2f µs per call (%s lookups/s)" % (ns / 1000,
                                                                     fmt_rate(1e9 / ns)),
                     "≤ 2 µs", "met" if ns <= 2000 else "MISSED", PAPER["lookup"])
        except (BenchError, KeyError) as e:
            self.failed("P1", what, e)

    # -- P2

    def checks(self, spheres, quorum, trials, port=None):
        out, _ = run([os.path.join(BIN, "check_latency"), self.cert_der, HOST,
                      str(port or self.port),
                      spheres, str(quorum), str(P2_TIMEOUT_MS), str(trials)],
                     what="check_latency %s quorum %d" % (spheres, quorum))
        res = re.findall(r"^trial \d+ us (\d+) verdict (\S+) spheres (.*)$", out, re.M)
        if len(res) != trials:
            raise BenchError("check_latency: %d of %d trials reported" % (len(res), trials))
        return [(int(us) / 1000.0, verdict, detail) for us, verdict, detail in res]

    def p2(self):
        what = ("cold verdict time ÷ the %s-fastest sphere's own time (quorum %d of 5; "
                "spheres +%s ms and one silent)" % (
                    {1: "1st", 2: "2nd", 3: "3rd"}.get(P2_QUORUM, "%dth" % P2_QUORUM),
                    P2_QUORUM, "/".join("%d" % (d * 1000) for d in P2_DELAYS)))
        try:
            slow = [SlowLink(SPHERE_ADDR, (SPHERE_ADDR, s.port), delay=d)
                    for s, d in zip(self.w.honest, P2_DELAYS)]
            self.services.extend(slow)
            silent = Blackhole(SPHERE_ADDR)
            self.services.append(silent)
            spheres = [s.address for s in slow] + [silent.address]
            alone = []
            for addr, label in zip(spheres, ["+%d ms" % (d * 1000) for d in P2_DELAYS] +
                                   ["silent"]):
                trials = self.checks(addr, 1, P2_SILENT_TRIALS if addr == silent.address
                                     else P2_TRIALS)
                verdicts = {v for _, v, _ in trials}
                want = "undecided" if addr == silent.address else "accept"
                if verdicts != {want}:
                    raise BenchError("sphere %s alone: verdicts %s, expected %s"
                                     % (label, verdicts, want))
                alone.append((statistics.median(t for t, _, _ in trials), label))
            alone.sort()
            kth, kth_label = alone[P2_QUORUM - 1]
            full = self.checks(",".join(spheres), P2_QUORUM, P2_TRIALS)
            if {v for _, v, _ in full} != {"accept"}:
                raise BenchError("the quorum-%d check did not accept: %s"
                                 % (P2_QUORUM, full[0][2]))
            t_full = statistics.median(t for t, _, _ in full)
            waitall = self.checks(",".join(spheres), len(spheres), P2_WAITALL_TRIALS)
            t_all = statistics.median(t for t, _, _ in waitall)
            ratio = t_full / kth
            self.row("P2", what, "%.3f (verdict %.0f ms; sphere %s alone %.0f ms)"
                     % (ratio, t_full, kth_label, kth),
                     "≤ 1.1", "met" if ratio <= 1.1 else "MISSED", PAPER["cold"])
            self.row("P2", "(comparison) wait for all (quorum 5, the same spheres) ÷ the "
                     "same sphere's time",
                     "%.2f (%.0f ms, verdict %s; the silent sphere's %d ms timeout)"
                     % (t_all / kth, t_all, waitall[0][1], P2_TIMEOUT_MS))
            self.raw.append("P2 median time of each sphere alone (quorum 1): %s" % ", ".join(
                "%s %.1f ms" % (label, t) for t, label in alone))
            self.raw.append("P2 quorum-%d verdict times (ms): %s" % (
                P2_QUORUM, ", ".join("%.1f" % t for t, _, _ in full)))
            self.raw.append("P2 quorum-%d last trial, per sphere (status/ms since the "
                            "check's start): %s" % (P2_QUORUM, full[-1][2]))
            self.raw.append("P2 wait-for-all verdict times (ms): %s" % ", ".join(
                "%.1f" % t for t, _, _ in waitall))
        except (BenchError, WorldError, OSError) as e:
            self.failed("P2", what, e)

    # -- P3

    def p3(self):
        what = ("bytes per sphere probe (SOCKS side, both ways) ÷ a direct handshake's "
                "bytes up to the server's Certificate")
        try:
            relay = CountingRelay(SPHERE_ADDR, (SPHERE_ADDR, self.w.honest[4].port))
            self.services.append(relay)
            mark = relay.mark()
            trials = self.checks(relay.address, 1, P3_PROBES)
            if {v for _, v, _ in trials} != {"accept"}:
                raise BenchError("probes through the counting relay failed: %s"
                                 % trials[0][2])
            conns = relay.wait_closed(mark, P3_PROBES)
            if len(conns) != P3_PROBES:
                raise BenchError("%d connections for %d probes" % (len(conns), P3_PROBES))
            probe = sum(c["c2s"] + c["s2c"] for c in conns) / len(conns)
            probe_up = sum(c["c2s"] for c in conns) / len(conns)

            direct = CountingRelay(SPHERE_ADDR, (REAL_ADDR, self.port))
            self.services.append(direct)
            mark = direct.mark()
            self.handshakes("stock", P3_PROBES, warmup=0, addr=SPHERE_ADDR, port=direct.port)
            conns = direct.wait_closed(mark, P3_PROBES)
            parts = [handshake_bytes_to_certificate(c["c2s_data"], c["s2c_data"],
                                                    len(self.w.real.der)) for c in conns]
            base = sum(c + s for c, s, _ in parts) / len(parts)
            full = sum(c["c2s"] + c["s2c"] for c in conns) / len(conns)
            versions = sorted({v for _, _, v in parts})
            ratio = probe / base
            self.row("P3", what, "%.3f (%.0f B per probe vs %.0f B, %s)"
                     % (ratio, probe, base, "/".join(versions)),
                     "≤ 1.2", "met" if ratio <= 1.2 else "MISSED")
            self.raw.append("P3 per probe: %.0f B sent to the sphere, %.0f B received; "
                            "direct handshake: ClientHello %.0f B, server up to its "
                            "Certificate %.0f B, whole handshake with close %.0f B"
                            % (probe_up, probe - probe_up,
                               sum(c for c, _, _ in parts) / len(parts),
                               sum(s for _, s, _ in parts) / len(parts), full))
        except (BenchError, TlsParseError, WorldError, OSError) as e:
            self.failed("P3", what, e)

    # -- P4

    def scale(self, mode, inflight, checks, limit=P4_LIMIT, must_accept=True):
        """probe_scale's figures; limit 0: no admission control (every check
        started as it arrives, as before issue 16)."""
        addrs = self.spheres if mode == "socks" else ",".join(
            ["%s:%d" % (REAL_ADDR, self.port)] * len(self.w.honest))
        load0 = os.getloadavg()[0]
        out, _ = run([os.path.join(BIN, "probe_scale"), "-l", str(limit), "-q", str(P4_QUEUE),
                      HOST, str(self.port),
                      self.w.real.spki_sha256, str(inflight), str(checks),
                      str(P4_TIMEOUT_MS), str(P2_QUORUM), mode, addrs],
                     what="probe_scale %s %d" % (mode, inflight))
        kv = keyvals(out)
        # The load average over the run: the larger of its values at the
        # start and at the end.
        kv["load"] = max(load0, os.getloadavg()[0])
        if must_accept and (kv.get("checks") != checks or kv.get("accept") != checks
                            or kv.get("timedout") != 0):
            raise BenchError("probe_scale %s %d: not every check accepted in time: %s"
                             % (mode, inflight, out.strip().replace("\n", ", ")))
        log("P4 %s, %d in flight, limit %d: %.0f probes/s, %d timed out, %d undecided, "
            "peak RSS %.0f MiB (load %.2f)" % (
                mode, inflight, limit, kv["probes_per_s"], kv["timedout"], kv["undecided"],
                kv["peak_rss_kib"] / 1024, kv["load"]))
        return kv

    def p4(self):
        what = ("probes/s, %s checks in flight on one thread (5 microsocks spheres) ÷ "
                "the same server's handshakes/s for a plain NSS client loop"
                % fmt_rate(P4_INFLIGHT))
        try:
            raw = [self.handshakes("stock", P4_RAW_HANDSHAKES)[0]]
            raw_load = [os.getloadavg()[0]]
            # Without admission control first ("before"), then with it.
            before = self.scale("socks", P4_INFLIGHT, P4_CHECKS, limit=0, must_accept=False)
            socks = self.scale("socks", P4_INFLIGHT, P4_CHECKS)
            direct = self.scale("direct", P4_INFLIGHT, P4_DIRECT_CHECKS)
            small = self.scale("socks", P4_SMALL_INFLIGHT, P4_SMALL_CHECKS)
            small_before = self.scale("socks", P4_SMALL_INFLIGHT, P4_SMALL_CHECKS, limit=0,
                                      must_accept=False)
            raw.append(self.handshakes("stock", P4_RAW_HANDSHAKES)[0])
            raw_load.append(os.getloadavg()[0])
            base = statistics.mean(raw)
            for kv, label, goal in (
                    (socks, what + "; admission control: %d checks running at most, the "
                     "rest queued" % P4_LIMIT, True),
                    (direct, "the same with direct probes (no SOCKS relays: the engine "
                     "and the server alone)", True),
                    (before, "(before issue 16) the same through the spheres without "
                     "admission control (every check started at once)", False),
                    (small, "(diagnostic) the same through the spheres with %d checks in "
                     "flight" % P4_SMALL_INFLIGHT, False),
                    (small_before, "(diagnostic) %d checks in flight without admission "
                     "control" % P4_SMALL_INFLIGHT, False)):
                ratio = kv["probes_per_s"] / base
                self.row("P4", label, "%.2f (%s probes/s vs %s handshakes/s; %d of %d "
                         "checks accepted, %d probes timed out)"
                         % (ratio, fmt_rate(kv["probes_per_s"]), fmt_rate(base),
                            kv["accept"], kv["checks"], kv["timedout"]),
                         "≥ 0.8, every check accepted, none timed out" if goal else "—",
                         ("met" if ratio >= 0.8 else "MISSED") if goal else "—",
                         PAPER["scale"] if kv is socks else "—", load=kv["load"])
            self.row("P4", "peak RSS of the one-thread driver, %s checks (%s probes) in flight"
                     % (fmt_rate(P4_INFLIGHT), fmt_rate(P4_INFLIGHT * len(self.w.honest))),
                     "%.0f MiB through the spheres (%.0f KiB per check), %.0f MiB direct; "
                     "%.0f MiB without admission control"
                     % (socks["peak_rss_kib"] / 1024, socks["peak_rss_kib"] / P4_INFLIGHT,
                        direct["peak_rss_kib"] / 1024, before["peak_rss_kib"] / 1024),
                     load=socks["load"])
            self.raw.append("P4 plain NSS client loop (stock, %d full handshakes) before and "
                            "after: %s handshakes/s (load average %s)" % (
                                P4_RAW_HANDSHAKES, ", ".join("%.0f" % r for r in raw),
                                ", ".join(load_note(x) for x in raw_load)))
            for name, kv in (("through the spheres, %d in flight, admission control"
                              % P4_INFLIGHT, socks),
                             ("direct, %d in flight, admission control" % P4_INFLIGHT, direct),
                             ("through the spheres, %d in flight, no admission control"
                              % P4_INFLIGHT, before),
                             ("through the spheres, %d in flight, admission control"
                              % P4_SMALL_INFLIGHT, small),
                             ("through the spheres, %d in flight, no admission control"
                              % P4_SMALL_INFLIGHT, small_before)):
                self.raw.append(
                    "P4 %s: %d checks in %.1f s (%d accepted, %d undecided of which %d "
                    "refused by the gate), %d certificates captured, %d skipped, "
                    "%d failed, %d timed out; %.0f checks/s; verdict p50/p95/p99 "
                    "%d/%d/%d ms from arrival (queueing included); at most %d checks "
                    "running; %d PR_Poll calls over %.0f descriptors on average; the "
                    "driver's CPU time %.2f ms per captured certificate; peak RSS %.0f MiB; "
                    "load average %s"
                    % (name, kv["checks"], kv["seconds"], kv["accept"], kv["undecided"],
                       kv["refused"], kv["captured"], kv["skipped"],
                       kv["failed"], kv["timedout"], kv["checks_per_s"],
                       kv["latency_p50_ms"], kv["latency_p95_ms"], kv["latency_p99_ms"],
                       kv["running_max"], kv["polls"],
                       kv["fds_per_poll"], kv["cpu_us_per_probe"] / 1000,
                       kv["peak_rss_kib"] / 1024, load_note(kv["load"])))
        except (BenchError, KeyError, WorldError, OSError) as e:
            self.failed("P4", what, e)

    # -- P6

    def tstclnt(self, home, detector, conf=None, strace=None,
                trace="fdatasync,fsync,msync", wrapper=None, env_extra=None,
                addr=REAL_ADDR, first_byte=False):
        """Wall time of one unmodified tstclnt (server.test resolving to
        ADDR, the concurrent server or its MITM, in a private /etc/hosts),
        stock or under detector-run (WRAPPER: another one); STRACE: the file
        for an strace of the TRACE system calls (timestamps and durations).
        FIRST_BYTE: the time to the first byte of the server's answer on
        tstclnt's stdout instead (its diagnostics go to stderr)."""
        env = self.env("enhanced")
        env["HOME"] = home
        env.update(env_extra or {})
        if conf:
            env["DETECTOR_CONFIG"] = conf
        hosts = os.path.join(home, "hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1\tlocalhost\n%s\t%s\n" % (addr, HOST))
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', hosts]
        if strace:
            argv += ["strace", "-f", "--seccomp-bpf", "-ttt", "-T", "-e",
                     "trace=" + trace, "-o", strace]
        argv += ([wrapper or os.path.join(BUILD, "detector-run")] if detector else []) + [
            TSTCLNT, "-h", HOST, "-p", str(self.w.cport), "-d", "sql:" + self.nssdb,
            "-A", self.request]
        t = time.monotonic()
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = None
        try:
            if first_byte and select.select([p.stdout], [], [], CMD_TIMEOUT)[0]:
                if os.read(p.stdout.fileno(), 1):
                    first = 1000 * (time.monotonic() - t)
            out, err = p.communicate(timeout=CMD_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise BenchError("tstclnt: still running after %ss (killed)" % CMD_TIMEOUT)
        ms = 1000 * (time.monotonic() - t)
        if p.returncode != 0 or (first_byte and first is None):
            raise BenchError("tstclnt (%s): exit %d: %s" % (
                "detector-run" if detector else "stock", p.returncode, err[-600:]))
        self.last_err = err
        return first if first_byte else ms

    def p6(self):
        self.request = os.path.join(self.w.dir, "request")
        with open(self.request, "w") as f:
            f.write("GET / HTTP/1.0\r\n\r\n")
        what = ("first visit: cold unmodified tstclnt under detector-run − stock tstclnt, "
                "beyond the verdict time (5 microsocks spheres, quorum %d)" % P2_QUORUM)
        try:
            res = {"stock": [], "cold": [], "warm": [], "verdict": []}
            for i in range(P6_TRIALS):
                res["stock"].append(self.tstclnt(tempfile.mkdtemp(dir=self.home), False))
                home = tempfile.mkdtemp(dir=self.home)
                res["cold"].append(self.tstclnt(home, True))
                res["warm"].append(self.tstclnt(home, True))
                res["verdict"].append(self.checks(self.spheres, P2_QUORUM, 1,
                                                  port=self.w.cport)[0][0])
            med = {k: statistics.median(v) for k, v in res.items()}
            extra = med["cold"] - med["stock"]
            beyond = extra - med["verdict"]
            self.row("P6", what, "%.0f ms beyond the verdict (cold %.0f ms − stock %.0f ms = "
                     "%.0f ms; verdict %.0f ms)" % (beyond, med["cold"], med["stock"], extra,
                                                     med["verdict"]),
                     "≤ 10 ms", "met" if beyond <= 10 else "MISSED")
            self.row("P6", "(diagnostic) warm: tstclnt under detector-run, verdict cached, − "
                     "stock", "%.0f ms (%.0f − %.0f ms)" % (
                         med["warm"] - med["stock"], med["warm"], med["stock"]))
            # The wrapper alone: detector-run /bin/true − /bin/true.
            env = self.env("enhanced")
            a, b = [], []
            for _ in range(15):
                t = time.monotonic()
                subprocess.run(["/bin/true"], env=env, check=True)
                a.append(time.monotonic() - t)
                t = time.monotonic()
                subprocess.run([os.path.join(BUILD, "detector-run"), "/bin/true"], env=env,
                               check=True)
                b.append(time.monotonic() - t)
            wrapper = 1000 * (statistics.median(b) - statistics.median(a))
            self.row("P6", "(diagnostic) the detector-run wrapper: detector-run /bin/true − "
                     "/bin/true", "%.1f ms" % wrapper)
            if subprocess.run(["which", "strace"], capture_output=True).returncode == 0:
                sphere_ports = [int(s.rsplit(":", 1)[1]) for s in self.spheres.split(",")]
                traced = []
                for i in range(P6_TRACE_TRIALS):
                    home = tempfile.mkdtemp(dir=self.home)
                    out = os.path.join(home, "strace")
                    self.tstclnt(home, True, strace=out, trace=P6_TRACED)
                    traced.append(p6_phases(out, self.w.cport, sphere_ports))
                ph = {k: [1000 * t[k] for t in traced] for k in P6_PHASES}
                self.row("P6", "(diagnostic) where a cold run's time goes, under strace "
                         "(medians of %d runs; bench/first_visit.py says what each is)"
                         % len(traced), "; ".join("%s %.1f ms" % (k, statistics.median(v))
                                                  for k, v in ph.items()))
                self.row("P6", "(diagnostic) the verdict cache's sync calls in a cold run "
                         "(on the way to the verdict)", "%.1f ms (median; %s)" % (
                             statistics.median(ph["sync"]),
                             ", ".join("%.1f" % x for x in ph["sync"])))
                self.raw.append("P6 under strace, per run (ms): " + "; ".join(
                    "%s %s" % (k, ", ".join("%.1f" % x for x in v)) for k, v in ph.items()))
            self.raw.append("P6 per round (ms): " + "; ".join(
                "%s %s" % (k, ", ".join("%.0f" % x for x in v)) for k, v in res.items()))
        except (BenchError, KeyError, OSError, subprocess.SubprocessError) as e:
            self.failed("P6", what, e)

    # -- P7

    def p7(self):
        """Time to the first response byte, rerouted ÷ direct (issue 12;
        context, no goal)."""
        if not hasattr(self, "request"):
            self.request = os.path.join(self.w.dir, "request")
            with open(self.request, "w") as f:
                f.write("GET / HTTP/1.0\r\n\r\n")
        conf = os.path.join(self.w.dir, "reroute.conf")
        with open(conf, "w") as f:
            f.write("[detector]\non_mitm = reroute\n")
        what = ("reroute: time to the first response byte, unmodified tstclnt under "
                "detector-run with on_mitm = reroute through the rogue-CA MITM (check + "
                "reroute through a microsocks sphere) ÷ the same on the clean path "
                "(check + accept); cold cache both, 5 spheres, quorum %d" % P2_QUORUM)
        try:
            res = {"stock": [], "direct": [], "rerouted": []}
            load = []
            for i in range(P7_TRIALS):
                load.append(os.getloadavg()[0])
                res["stock"].append(self.tstclnt(tempfile.mkdtemp(dir=self.home), False,
                                                 first_byte=True))
                res["direct"].append(self.tstclnt(tempfile.mkdtemp(dir=self.home), True,
                                                  conf=conf, first_byte=True))
                res["rerouted"].append(self.tstclnt(tempfile.mkdtemp(dir=self.home), True,
                                                    conf=conf, addr=MITM_ADDR,
                                                    first_byte=True))
                if not re.search(r"REROUTED %s:%d via" % (re.escape(HOST), self.w.cport),
                                 self.last_err):
                    raise BenchError("tstclnt through the MITM was not rerouted: %s"
                                     % self.last_err[-600:])
            load.append(os.getloadavg()[0])
            med = {k: statistics.median(v) for k, v in res.items()}
            self.row("P7", what, "%.2f× (rerouted %.0f ms ÷ direct %.0f ms; +%.0f ms)" % (
                med["rerouted"] / med["direct"], med["rerouted"], med["direct"],
                med["rerouted"] - med["direct"]), load=max(load))
            self.row("P7", "(diagnostic) the same ÷ stock tstclnt on the clean path (no "
                     "DetecTor)", "%.2f× (rerouted %.0f ms ÷ stock %.0f ms)" % (
                         med["rerouted"] / med["stock"], med["rerouted"], med["stock"]),
                     load=max(load))
            self.raw.append("P7 time to the first response byte per round (ms): " + "; ".join(
                "%s %s" % (k, ", ".join("%.0f" % x for x in v)) for k, v in res.items()))
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            self.failed("P7", what, e)

    # -- P5

    def p5(self):
        cb = os.path.join(BIN, "cache_bench")
        path = os.path.join(self.w.dir, "p5-cache", "verdicts.mdb")
        what = "bytes per entry on disk, %s entries" % fmt_rate(P5_ENTRIES)
        try:
            out, _ = run([cb, "fill", path, str(P5_ENTRIES)], what="cache_bench fill")
            fill = keyvals(out)
            self.row("P5", what, "%.0f B (file %.1f MiB; key %.0f B + record %d B per entry)"
                     % (fill["fill_file_bytes"] / P5_ENTRIES,
                        fill["fill_file_bytes"] / 2 ** 20, fill["fill_key_bytes_mean"],
                        fill["fill_record_bytes"]),
                     paper=PAPER["size"])
            self.raw.append("P5 fill: %s entries, one write transaction each (as cache_put), "
                            "%.1f s; B-tree depth %d, %.0f B of B-tree pages per entry"
                            % (fmt_rate(P5_ENTRIES), fill["fill_seconds"], fill["fill_depth"],
                               fill["fill_tree_bytes"] / P5_ENTRIES))
        except (BenchError, KeyError) as e:
            self.failed("P5", what, e)
            return
        what = "lookup p50 / p99 at %s entries" % fmt_rate(P5_ENTRIES)
        try:
            out, _ = run([cb, "latency", path, str(P5_ENTRIES), str(P5_SAMPLES)],
                         what="cache_bench latency")
            lat = keyvals(out)
            for phase, label in (("fresh", "first lookups of a new process"),
                                 ("warm", "after one pass over every entry")):
                p99 = lat[phase + "_p99_ns"]
                self.row("P5", "%s, %s" % (what, label),
                         "%.2f / %.2f µs" % (lat[phase + "_p50_ns"] / 1000, p99 / 1000),
                         "p99 ≤ 5 µs", "met" if p99 <= 5000 else "MISSED")
            self.raw.append("P5 lookup times over %s random entries (each timed alone, the "
                            "clock's own %.0f ns included): fresh p99.9 %.2f µs, max %.0f µs; "
                            "warm p99.9 %.2f µs, max %.0f µs; a pass over every entry "
                            "%.2f µs per lookup"
                            % (fmt_rate(P5_SAMPLES), lat["clock_ns"],
                               lat["fresh_p999_ns"] / 1000, lat["fresh_max_ns"] / 1000,
                               lat["warm_p999_ns"] / 1000, lat["warm_max_ns"] / 1000,
                               lat["sweep_ns_per_call"] / 1000))
        except (BenchError, KeyError) as e:
            self.failed("P5", what, e)
        what = "lookups/s, 2 processes at once (random entries of %s)" % fmt_rate(P5_ENTRIES)
        try:
            rates = {1: [], 2: []}
            for _ in range(P5_ALTERNATIONS):
                for procs in (1, 2):
                    out, _ = run([cb, "multi", path, str(P5_ENTRIES), str(P5_SECONDS),
                                  str(procs)], what="cache_bench multi %d" % procs)
                    rates[procs].append(keyvals(out)["multi_lookups_per_s"])
            one, two = statistics.median(rates[1]), statistics.median(rates[2])
            self.row("P5", what, "%s/s together, %.2f× one process alone (%s/s)"
                     % (fmt_rate(two), two / one, fmt_rate(one)))
            self.raw.append("P5 lookups/s, %.1f s each: 1 process %s; 2 processes %s"
                            % (P5_SECONDS, ", ".join(fmt_rate(r) for r in rates[1]),
                               ", ".join(fmt_rate(r) for r in rates[2])))
        except (BenchError, KeyError) as e:
            self.failed("P5", what, e)


# P6's breakdown: the system calls that mark each phase of a cold run
# (bench/first_visit.py says which), and strace -ttt -f's lines,
# "PID SECONDS.USEC syscall(args) = ret <dur>".
P6_TRACED = "execve,connect,openat,fdatasync,fsync,msync,pwrite64,write,sendto,sendmsg,exit_group"
P6_PHASES = ("wrapper", "to-cert", "setup", "probes", "sync", "handover", "rest")
P6_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")


def p6_phases(path, server_port, sphere_ports):
    """The phase boundaries of one traced cold run (seconds), or raise."""
    ev, unfinished = [], {}
    with open(path) as f:
        for line in f:
            m = P6_LINE.match(line)
            if not m:
                continue
            t, pid, call = float(m.group(2)), int(m.group(1)), m.group(3)
            # A call another thread interrupted: its start, the whole text.
            if call.endswith("<unfinished ...>"):
                unfinished[pid] = len(ev)
                ev.append((t, pid, call[:-len("<unfinished ...>")]))
                continue
            if call.startswith("<... ") and pid in unfinished:
                i = unfinished.pop(pid)
                ev[i] = (ev[i][0], pid, ev[i][2] + call[call.index("resumed>") + 8:])
                continue
            ev.append((t, pid, call))
    if not ev:
        raise BenchError("%s: empty trace" % path)
    t0 = ev[0][0]

    def first(pred, after=0.0):
        for t, pid, call in ev:
            if t >= after and pred(pid, call):
                return t, pid, call
        raise BenchError("%s: no event after %.6f" % (path, after))

    execs = [(t, call) for t, pid, call in ev if call.startswith("execve(")]
    t_app = [t for t, call in execs if "tstclnt" in call.split(",")[0]][0]
    t_conn, app_pid, call = first(lambda p, c: c.startswith("connect(") and
                                  "htons(%d)" % server_port in c, t_app)
    fd = re.match(r"connect\((\d+)", call).group(1)
    t_end = ev[-1][0]
    if not sphere_ports:
        # Stock: from the start to the connection, and the connection's life.
        return {"start": t_conn - t0, "connected": t_end - t_conn, "total": t_end - t0}
    t_lib = first(lambda p, c: c.startswith("openat(") and "libdetector.so.0" in c and
                  "= -1" not in c, t_conn)[0]
    t_probe = first(lambda p, c: c.startswith("connect(") and any(
        "htons(%d)" % sp in c for sp in sphere_ports), t_lib)[0]
    # The verdict cache's commit (LMDB: the data pages written, fdatasync,
    # the meta page written through an O_DSYNC descriptor): after the probes,
    # before the handshake goes on (a write on the server's socket).
    def on_socket(p, c):
        return re.match(r"(write|sendto|sendmsg)\(%s," % fd, c) is not None

    t_next = first(on_socket, t_probe)[0]
    syncs = []
    for t, pid, call in ev:
        if t_probe <= t < t_next and re.match(r"(fdatasync|fsync|msync|pwrite64)\(", call):
            dur = re.findall(r"<(\d+\.\d+)>$", call)
            end = t + (float(dur[0]) if dur else 0.0)
            # Only what ends before the handshake goes on: the worker's
            # sync after the handover (cache_sync()) may start first.
            if end <= t_next:
                syncs.append((t, end))
    sync_ms = 1000 * sum(b - a for a, b in syncs)
    t_sync0 = syncs[0][0] if syncs else None
    t_sync1 = max(b for _, b in syncs) if syncs else None
    # The verdict reaches the handshake: the next write on the server's
    # socket after the verdict (the client's Finished, or the request).
    after = t_sync1 if t_sync1 is not None else t_probe
    t_go = first(on_socket, after)[0]
    return {
        "start": t_conn - t0,
        "connected": t_end - t_conn,
        "wrapper": t_app - t0,
        "to-cert": t_lib - t_conn,
        "setup": t_probe - t_lib,
        "probes": (t_sync0 if t_sync0 is not None else t_go) - t_probe,
        "sync": sync_ms / 1000,
        "handover": t_go - after,
        "rest": t_end - t_go,
        "total": t_end - t0,
    }


# --------------------------------------------------------------------------
# The report


def table(rows):
    head = ("", "measured side by side in this run", "ours", "load avg (1 min)", "goal",
            "status", "from the paper (context only)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


METHOD = """\
## How each figure was measured

All traffic is on loopback.  The TLS server is `bench/tls_server` (OpenSSL,
one epoll worker per core, TLS 1.2–1.3, no session cache, no tickets) with
the test world's `server.test` certificate (ECDSA P-256, signed by the test
CA); the spheres are the test world's microsocks SOCKS5 proxies, each
resolving `server.test` in its own mount namespace.  A fork-per-connection
server (the test world's socat) would add its own cost to every handshake
and dilute P1, and could not hold P4's thousands of connections.

- **P1**: `bench/hsclient`, an NSS client with no DetecTor code, makes
  full handshakes one after the other (blocking sockets, `SSL_NO_CACHE`, the
  certificate verified by NSS against a database trusting the test CA).
  *Stock* runs it as it is; *enhanced* under `detector-run` (the enhanced
  libssl3.so and libdetector) after one handshake has probed the five
  spheres and cached ACCEPT in the per-user LMDB cache, so every timed
  handshake is answered from the cache (checked: the spheres saw no
  connection during the timed runs); *disabled* is the enhanced library
  with `enabled = no`.  The three run in turn, in a rotating order, for
  several rounds; the figure is the median of the per-round ratios.  The
  lookup time is `cache_recall()` of one remembered verdict in a loop.
- **P2**: `bench/check_latency` calls `detector_check()` (public API) and
  times it.  Four spheres are microsocks behind a relay that holds each
  connection for 50/100/150/200 ms before relaying (testworld.relay.SlowLink), the
  fifth accepts and never answers.  Each sphere is first timed alone
  (quorum 1, median of the trials); the k-th fastest of those times is the
  yardstick for the 5-sphere check at the default quorum.  The wait-for-all
  comparison runs the same check with quorum 5, which cannot conclude until
  the silent sphere's probe times out.
- **P3**: a counting relay (`tests/testworld/tlsbytes.py`) in front of one sphere
  counts every byte a probe sends to and receives from it (SOCKS5 greeting,
  RFC 1929 isolation token, CONNECT, TLS); the baseline is a plain NSS
  handshake through a counting relay to the server directly, counted up to
  the end of the server's Certificate message (the client's ClientHello
  plus the server's bytes through the record carrying the Certificate).
  TCP/IP headers are not counted on either side.
- **P4**: `bench/probe_scale` keeps 1,000 checks in flight (5 probes each,
  the k-of-n rule after every probe, the rest abandoned once the verdict is
  final, a new check in its place: 1,000 clients in a closed loop) with the
  probe state machines of `detector/lib/probe.h`, all on one `PR_Poll` loop
  in one thread (`RLIMIT_NOFILE` raised to the hard limit).  The engine's
  admission control (`probe_gate` in probe.h) lets at most 64 of those
  checks run at once and queues the others in arrival order (at most 4,096;
  a check that could not make its deadline by the measured pace is refused
  at once, UNDECIDED, "too many checks in flight (spheres overloaded)");
  each check's 20 s deadline counts from its arrival, queueing included.
  The same run without admission control (every check started as it
  arrives, as before issue 16) stands beside it.  Probes/s counts captured
  server certificates over the whole run, ramp-up and drain included.  The
  yardstick is `hsclient` against the same server with the stock library,
  measured just before and after; that loop is bound by its own CPU (a full
  NSS handshake with certificate verification, one at a time), so the ratio
  compares one engine thread with one plain NSS client thread against the
  same server.  Client, server and spheres share the same 2 cores, and the
  machine may be shared with other work (see the load average beside each
  figure).  The diagnostic rows (direct probes, and a tenth of the checks
  in flight) and the driver's CPU time per certificate below show how the
  cost of a probe depends on how many handshakes NSS holds open at once.
- **P5**: `bench/cache_bench` fills a cache with 1M entries
  (`h<8 hex>.example.com:443`, one write transaction per entry as
  `cache_put()` makes them, without the per-entry fsync), then times random
  `cache_recall()` calls one by one, and counts the lookups/s of one and of
  two processes with their own handles at once.
- **P6**: an unmodified `tstclnt` (Debian's, linked with the system
  NSS) sends one HTTP request to the test world's concurrent server
  (a forking socat that reads the request and closes, as in the
  integration tests; the bench server reads until the client closes, and
  `tstclnt -Q` then waits forever), `server.test`
  resolving to it through a private /etc/hosts (a mount namespace; both
  variants pay for it): *stock* as it is, *cold* under `detector-run` with
  a fresh HOME (no verdict cache yet: the five microsocks spheres are
  probed), *warm* the same HOME again (the verdict cached).  The verdict
  time is `check_latency`'s `detector_check()` of the same site through the
  same spheres in a running process: the goal is that a first visit costs
  the verdict and at most 10 ms more.  The diagnostic rows split the rest:
  `detector-run /bin/true` − `/bin/true` (the wrapper script), and cold
  runs under `strace -f -ttt -T --seccomp-bpf` tracing only the system
  calls that mark each phase (`p6_phases`): the wrapper (detector-run's
  execve to tstclnt's), ClientHello to DetecTor consulted (the connect()
  to the server to the patched libssl opening libdetector.so.0), setup
  (that to the first probe's connect(): loading, configuration, cache
  creation, the worker thread), the probes (to the verdict cache's
  commit), the commit's sync calls (LMDB's data pwrite, fdatasync and
  O_DSYNC meta-page write, before the waiting handshake is told the
  verdict), the handover (the commit's end to the client's next write on
  the server's socket: the enhanced libssl's 10 ms poll pause), and the
  rest.  `make bench-first-visit` (bench/first_visit.py) runs the same
  with more rounds and another detector-run and libraries side by side
  (before/after: OTHER_RUN, OTHER_LIB).
- **P7**: the same `tstclnt` and concurrent server, timed from its start
  to the first byte of the server's answer on its stdout (its diagnostics
  go to stderr), with a fresh HOME each run (a cold verdict cache) and
  `on_mitm = reroute`.  *Direct*: server.test resolves to the real server
  (check, ACCEPT).  *Rerouted*: it resolves to the test world's MITM in
  front of the same server (rogue certificate from the same CA): the check
  REJECTs, awaiting every sphere (a reroute plan is made from all the
  answers), and the patched libssl starts the handshake over through a
  fresh SOCKS5 tunnel to a microsocks sphere that saw the real key
  (docs/reroute.md); every rerouted run is checked for DetecTor's
  `REROUTED server.test:port via` line.  *Stock*: tstclnt without
  DetecTor on the clean path.  The three alternate for several rounds;
  medians.  Loopback spheres cost no Tor circuit: through Tor the reroute
  adds a circuit's latency (docs/tor-network.md).
"""


def main():
    if os.geteuid() != 0:
        sys.exit("bench: the test world's spheres need root (mount namespaces)")
    if not os.access(TSTCLNT, os.X_OK):
        sys.exit("bench: %s is missing: run `make bench` (libnss3-tools)" % TSTCLNT)
    for prog in ("tls_server", "hsclient", "check_latency", "probe_scale", "cache_bench"):
        if not os.access(os.path.join(BIN, prog), os.X_OK):
            sys.exit("bench: %s/%s is missing: run `make bench`" % (BIN, prog))
    t0 = time.monotonic()
    desc = machine()
    load_start = loadavg()
    w = World(minimal=True)
    try:
        w.start()
    except WorldError as e:
        sys.exit("bench: could not build the test world: %s" % e)
    bench = None
    try:
        bench = Bench(w)
        only = [x.strip().lower() for x in os.environ.get("BENCH_ONLY", "").split(",")
                if x.strip()]
        for section in (bench.p1, bench.p2, bench.p3, bench.p4, bench.p5, bench.p6,
                        bench.p7):
            if only and section.__name__ not in only:
                continue
            log("%s ..." % section.__name__.upper())
            section()
    finally:
        if bench is not None:
            bench.stop()
        w.stop()
    desc.append(("load average (1/5/15 min) at start / end", "%s / %s"
                 % (load_start, loadavg())))
    desc.append(("bench run time", "%.0f s" % (time.monotonic() - t0)))
    machine_md = "\n".join(["| machine | |", "|---|---|"] +
                           ["| %s | %s |" % kv for kv in desc])
    tab = table(bench.rows)
    print(machine_md + "\n\n" + tab)
    missed = [r for r in bench.rows if r[5] in ("MISSED", "FAILED")]
    # The sections of make bench-gateway (tests/tornet/measure_gateway.py)
    # and make bench-first-visit (bench/first_visit.py): kept as they are.
    gateway = ""
    try:
        with open(RESULTS) as f:
            old = f.read()
        for name in ("bench-first-visit", "bench-gateway"):
            b, e = "<!-- %s: begin -->" % name, "<!-- %s: end -->" % name
            if b in old and e in old:
                gateway += "\n" + old[old.index(b):old.index(e) + len(e)] + "\n"
    except OSError:
        pass
    with open(RESULTS + ".tmp", "w") as f:
        f.write("# DetecTor benchmarks\n\n"
                "Written by `make bench` (bench/run.py); every figure is a ratio or a rate "
                "of things measured side by side in the same run, on loopback, on this "
                "machine.  The paper's figures are the Convergence client and notary "
                "measured over the Internet (Carpenter et al., IMC 2014), shown for "
                "context only: they are not comparable with loopback figures.  A goal not "
                "met says MISSED.\n\n"
                + machine_md + "\n\n## Results\n\n" + tab + "\n\n" + METHOD +
                "\n## The measurements behind the table\n\n" +
                "\n".join("- " + r for r in bench.raw) + "\n" + gateway)
    os.replace(RESULTS + ".tmp", RESULTS)
    log("wrote %s (%d goals missed or not measured)" % (RESULTS, len(missed)))
    return 1 if any(r[5] == "FAILED" for r in bench.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
