"""make bench-gateway: a corporate gateway's checks through the private Tor
network (issue 16 items 1, 2 and 4).

    flock /tmp/detector-heavy.lock env PYTHONPATH=tests DETECTOR_BUILD=build \
        /usr/bin/python3 -m testworld.tornet isolate -- \
        /usr/bin/python3 tests/tornet/measure_gateway.py

The gateway is libdetector's engine on one thread: bench/probe_scale keeps
C checks in flight (a closed loop: C users, each asking again as soon as
its check ends), each check one SOCKS5 + TLS probe per sphere with fresh
isolation credentials and the 4-of-5 rule, every probe on one PR_Poll
loop, with the engine's admission control (probe.h's probe_gate: at most
GATEWAY_LIMIT checks running, the rest queued, refused at once when they
could not make their deadline).  The spheres are the five tor clients of
tests/testworld/tornet.py, started by detector-spheres with its circuit
janitor; the server is bench/tls_server (concurrent; openssl s_server
serves one connection at a time) with the network's server.test
certificate on 127.0.0.2.

Measured, each with the 1-minute load average beside it (figures taken
while it exceeds the core count are flagged unreliable):

  levels      checks/s, verdict p50/p95/p99 (from the check's arrival,
              queueing included), sphere tor CPU per check (utime + stime
              of the five tor processes / checks answered), at 1, 8, 32,
              64 and 128 checks in flight; 64 and 128 also without
              admission control, for comparison
  collapse    at 4x the saturating concurrency (the smallest level within
              90% of the peak), throughput / peak
  steady      GATEWAY_STEADY_SECONDS (default 600) at the saturating
              concurrency, in one-minute chunks: tor CPU per check, first
              minute vs last
  instances   `instances = 2` for every sphere (detector-spheres), checks
              spread over both tor processes of each sphere, at the
              saturating concurrency and 4x it, vs one instance

Environment: GATEWAY_STEADY_SECONDS, GATEWAY_LEVEL_SECONDS (about how long
each level runs, default 25), GATEWAY_LIMIT (default 32),
GATEWAY_INSTANCES=no to skip the instances phase, GATEWAY_ONLY=instances
to measure only 1 vs 2 instances (at GATEWAY_SAT, default 8, and 4x it),
BENCH_RESULTS (default
bench/results.md; the section between the gateway markers is replaced).
"""

import hashlib
import json
import os
import subprocess
import sys
import time

from testworld import tornet as tn
from testworld.ports import wait_tls

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(ROOT, "build")
PROBE_SCALE = os.path.join(BUILD, "bench", "probe_scale")
TLS_SERVER = os.path.join(BUILD, "bench", "tls_server")
RESULTS = os.environ.get("BENCH_RESULTS") or os.path.join(ROOT, "bench", "results.md")

LEVELS = (1, 8, 32, 64, 128)
UNGATED = (64, 128)
STEADY_SECONDS = int(os.environ.get("GATEWAY_STEADY_SECONDS", "600"))
LEVEL_SECONDS = float(os.environ.get("GATEWAY_LEVEL_SECONDS", "25"))
LIMIT = int(os.environ.get("GATEWAY_LIMIT", "32"))
QUEUE = 4096
TIMEOUT_MS = 20000          # the library's default probe timeout
QUORUM = 4
SERVER_PORT = 8453
CORES = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")
BEGIN = "<!-- bench-gateway: begin -->"
END = "<!-- bench-gateway: end -->"


def log(msg):
    print("bench-gateway: " + msg, file=sys.stderr, flush=True)


def load_note(x):
    if x > CORES:
        return "%.2f (unreliable)" % x
    return "%.2f" % x


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def spki_sha256(cert):
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


class Gateway:
    def __init__(self, net):
        self.net = net
        self.spki = spki_sha256(net.server_cert)
        self.server = subprocess.Popen(
            [TLS_SERVER, tn.SERVER_ADDR, str(SERVER_PORT), net.server_cert,
             net.path("tls", "key.pem"), "1"],
            stdout=subprocess.DEVNULL, stderr=open(net.path("tls_server.log"), "w"))
        wait_tls(tn.SERVER_ADDR, SERVER_PORT, None)
        self.set_spheres()
        self.rate = 15.0        # checks/s, first guess (issue 16's peak)

    def set_spheres(self):
        st = json.loads(self.net.spheres_cli("status", "--json").stdout)["spheres"]
        self.pids = [s["pid"] for s in st if s.get("pid")]
        self.addrs = self.net.spheres_cli("list").stdout.strip().split("=", 1)[1]
        self.addrs = self.addrs.replace(" ", "")
        log("spheres %s (tor pids %s)" % (self.addrs, self.pids))

    def stop(self):
        self.server.terminate()
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()

    def run(self, inflight, seconds=None, checks=None, limit=LIMIT):
        """One probe_scale run; its key/values plus tor CPU and load."""
        if checks is None:
            checks = max(2 * inflight, 20, int(self.rate * (seconds or LEVEL_SECONDS)))
        cpu0 = sum(cpu_seconds(p) for p in self.pids)
        load0 = os.getloadavg()[0]
        p = subprocess.run([PROBE_SCALE, "-l", str(limit), "-q", str(QUEUE), tn.SERVER_NAME,
                            str(SERVER_PORT), self.spki, str(inflight), str(checks),
                            str(TIMEOUT_MS), str(QUORUM), "socks", self.addrs],
                           capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            raise RuntimeError("probe_scale: exit %d: %s" % (p.returncode, p.stderr[-500:]))
        kv = {}
        for line in p.stdout.splitlines():
            k, _, v = line.partition(" ")
            try:
                kv[k] = float(v)
            except ValueError:
                kv[k] = v
        answered = kv["checks"] - kv["refused"]
        kv["tor_ms"] = 1000 * (sum(cpu_seconds(p) for p in self.pids) - cpu0) / max(answered, 1)
        kv["load"] = max(load0, os.getloadavg()[0])
        if kv["checks_per_s"] > 0 and limit:
            self.rate = kv["checks_per_s"]
        log("%d in flight (limit %d): %.1f checks/s, p50/p95/p99 %d/%d/%d ms, tor %.1f ms/check, "
            "%d accepted, %d undecided (%d refused), %d probes timed out, load %.2f%s" % (
                inflight, limit, kv["checks_per_s"], kv["latency_p50_ms"], kv["latency_p95_ms"],
                kv["latency_p99_ms"], kv["tor_ms"], kv["accept"], kv["undecided"], kv["refused"],
                kv["timedout"], kv["load"], "; " + kv["first_refusal"]
                if "first_refusal" in kv else ""))
        return kv


def row(label, c, kv, limit=LIMIT):
    return "| %s | %d | %s | %.1f | %d / %d / %d ms | %.1f ms | %d / %d / %d | %d | %s |" % (
        label, c, "%d" % limit if limit else "none", kv["checks_per_s"], kv["latency_p50_ms"],
        kv["latency_p95_ms"], kv["latency_p99_ms"], kv["tor_ms"], kv["accept"],
        kv["undecided"], kv["refused"], kv["timedout"], load_note(kv["load"]))


HEAD = ["| run | checks in flight | admission limit | checks/s | verdict p50 / p95 / p99 "
        "| sphere tor CPU per check | accepted / undecided / of which refused | probes timed "
        "out | load avg (1 min) |", "|---|---|---|---|---|---|---|---|---|"]


def write_results(text):
    try:
        with open(RESULTS) as f:
            old = f.read()
    except OSError:
        old = "# DetecTor benchmarks\n"
    block = BEGIN + "\n" + text.rstrip() + "\n" + END + "\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip() + "\n\n" + block
    with open(RESULTS + ".tmp", "w") as f:
        f.write(new)
    os.replace(RESULTS + ".tmp", RESULTS)


class Report:
    """What has been measured so far; written out after every phase, so
    that a run cut short still leaves its figures."""

    def __init__(self):
        self.t_start = time.monotonic()
        self.load_start = os.getloadavg()
        self.rows = []
        self.summary = []

    def write(self, final=False):
        text = ["## Gateway through the private Tor network (`make bench-gateway`)", "",
                "Written by `make bench-gateway` (tests/tornet/measure_gateway.py, which "
                "says how): libdetector's engine on one thread (bench/probe_scale) with "
                "admission control (at most %d checks running, the rest queued; \"none\" "
                "starts every check as it arrives), five tor spheres with detector-spheres' "
                "circuit janitor, all on this %d-core machine together with the private "
                "Tor network's 10 relays.  Figures taken while the load average exceeded "
                "the core count are flagged unreliable: they measure the machine's "
                "contention as much as the gateway.%s" % (
                    LIMIT, CORES, "" if final else "  **(run cut short: partial)**"), "",
                "- date (UTC): %s; commit: %s; run time %.0f s; load average at start %s, "
                "now %s" % (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                            subprocess.run(["git", "-C", ROOT, "rev-parse", "--short",
                                            "HEAD"], capture_output=True,
                                           text=True).stdout.strip(),
                            time.monotonic() - self.t_start,
                            " ".join("%.2f" % x for x in self.load_start),
                            " ".join("%.2f" % x for x in os.getloadavg()))]
        text += ["- " + x for x in self.summary]
        text += [""] + HEAD + self.rows
        md = "\n".join(text) + "\n"
        write_results(md)
        return md


def main():
    rep = Report()
    with tn.session_network() as net:
        g = Gateway(net)
        try:
            phases(net, g, rep)
        finally:
            g.stop()
            md = rep.write(final=True)
    print(md)
    log("wrote %s" % RESULTS)


def phases(net, g, rep):
    rows = rep.rows
    # Warm up (first circuits, the exits' DNS).
    g.run(8, checks=40)
    if os.environ.get("GATEWAY_ONLY") == "instances":
        # 1 vs 2 instances alone, at GATEWAY_SAT and 4x it, with the same
        # warm-up for both.
        sat = int(os.environ.get("GATEWAY_SAT", "8"))
        one = {}
        g.run(8, checks=200)
        for c in (sat, 4 * sat):
            one[c] = g.run(c)
            rows.append(row("1 instance per sphere", c, one[c]))
        instances(net, g, rep, sat, one, None)
        return
    levels = {}
    for c in LEVELS:
        levels[c] = g.run(c)
        rows.append(row("levels", c, levels[c]))
        rep.write()
    ungated = {}
    for c in UNGATED:
        ungated[c] = g.run(c, limit=0)
        rows.append(row("no admission control", c, ungated[c], limit=0))
        rep.write()
    peak_c = max(levels, key=lambda c: levels[c]["checks_per_s"])
    peak = levels[peak_c]["checks_per_s"]
    sat = min(c for c in LEVELS if levels[c]["checks_per_s"] >= 0.9 * peak)
    over = levels.get(4 * sat) or g.run(4 * sat)
    over_ungated = ungated.get(4 * sat) or g.run(4 * sat, limit=0)
    if 4 * sat not in levels:
        rows.append(row("4x saturation", 4 * sat, over))
    if 4 * sat not in ungated:
        rows.append(row("4x saturation, no admission control", 4 * sat, over_ungated,
                        limit=0))
    rep.summary += [
        "peak %.1f checks/s at %d in flight; saturating concurrency (the smallest level "
        "within 90%% of the peak): %d" % (peak, peak_c, sat),
        "no collapse: at %d in flight (4x) %.1f checks/s = %.0f%% of the peak with admission "
        "control (goal >= 90%%: %s); without it %.1f checks/s = %.0f%%" % (
            4 * sat, over["checks_per_s"], 100 * over["checks_per_s"] / peak,
            "met" if over["checks_per_s"] >= 0.9 * peak else "MISSED",
            over_ungated["checks_per_s"], 100 * over_ungated["checks_per_s"] / peak)]
    rep.write()
    # The steady run, minute by minute.
    steady = []
    chunks = max(1, STEADY_SECONDS // 60)
    for i in range(chunks):
        kv = g.run(sat, seconds=min(60, STEADY_SECONDS))
        steady.append(kv)
        rows.append(row("steady, minute %d" % (i + 1), sat, kv))
        rep.write()
    rep.summary.append(
        "steady run: %d chunks of about %d s at %d in flight; sphere tor CPU per check, "
        "first chunk %.1f ms, last %.1f ms (%+.0f%%; goal within 20%%); checks/s first "
        "%.1f, last %.1f" % (
            len(steady), min(60, STEADY_SECONDS), sat, steady[0]["tor_ms"],
            steady[-1]["tor_ms"], 100 * (steady[-1]["tor_ms"] / steady[0]["tor_ms"] - 1)
            if steady[0]["tor_ms"] else 0, steady[0]["checks_per_s"],
            steady[-1]["checks_per_s"]))
    rep.write()
    # Two tor processes per sphere.
    if os.environ.get("GATEWAY_INSTANCES", "yes") != "no":
        instances(net, g, rep, sat, levels, over)


def instances(net, g, rep, sat, levels, over):
    rows = rep.rows
    conf = net.path("spheres.conf")
    text = open(conf).read()
    net.spheres_cli("stop")
    with open(conf, "w") as f:
        f.write(text.replace("[spheres]\n", "[spheres]\ninstances = 2\n", 1))
    net.spheres_cli("start", "--timeout", "120")
    g.set_spheres()
    g.run(8, checks=200)        # warm up the new instances
    inst = {}
    for c in sorted({sat, 4 * sat}):
        inst[c] = g.run(c)
        rows.append(row("2 instances per sphere", c, inst[c]))
        rep.write()
    rep.summary.append("2 instances per sphere: " + "; ".join(
        "%d in flight %.1f checks/s (1 instance: %.1f)" % (
            c, inst[c]["checks_per_s"], (levels.get(c) or over or {}).get("checks_per_s", 0))
        for c in sorted(inst)))


if __name__ == "__main__":
    main()
