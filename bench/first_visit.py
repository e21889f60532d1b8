#!/usr/bin/python3
"""Where a first visit's time goes (issue 16 items 5 and 7).

A first visit is an unmodified `tstclnt` under `detector-run` with a cold
verdict cache.  `make bench`'s P6 (bench/run.py) gives its headline figure:
cold − stock, beyond the verdict.  This script splits that figure into its
parts and measures the time that starting the probes at the ClientHello
(item 7) could save.  Run it as `make bench` runs run.py (root, tests/ on
PYTHONPATH, DETECTOR_BUILD); `BENCH_ROUNDS` and `BENCH_TRACES` set the loops.

  totals       rounds of (stock, cold, cold with OTHER_RUN, warm, verdict)
               in turn, medians: OTHER_RUN is another detector-run (e.g.
               the one before a change: `git show main:detector/tools/
               detector-run`), OTHER_LIB the folder of another libssl3.so
               and libdetector.so.0 for it (e.g. a copy of main's
               build/lib; default: this build's), so that before and after
               share one run
  wrapper      detector-run /bin/true − /bin/true, for both wrappers
  breakdown    cold runs under `strace -f -ttt --seccomp-bpf`, tracing a few
               system calls that mark each phase (only those calls stop:
               the rest of the program runs at full speed).  From the
               traces, per run:
                 wrapper      detector-run's execve → tstclnt's execve
                 to-cert      tstclnt's connect() to the server → the
                              patched libssl opens libdetector.so.0 (before
                              issue 16 item 5's change: the ClientHello, the
                              server's flight, NSS's own certificate check;
                              since, libdetector is loaded at the
                              ClientHello)
                 setup        libdetector.so.0 opened → the first probe's
                              connect() to a sphere (loading, configuration,
                              cache creation, the worker thread; since
                              libdetector is loaded at the ClientHello,
                              also the wait for the server's answer)
                 cert         tstclnt's connect() → its last read of the
                              server's socket before the first probe (the
                              server's flight: the certificate is there)
                 after-cert   that read → the first probe's connect(): what
                              is left of the setup on the way to the probes
                              (NSS's own certificate check included)
                 probes       first probe connect() → the cache's sync
                              starts (the spheres' answers: the verdict)
                 sync         the cache's fdatasync/fsync calls
                 handover     the sync's end → the client's next write on
                              the server's socket (the verdict reaches the
                              waiting handshake: the 10 ms poll pause)
                 rest         that write → exit (the rest of the handshake,
                              the request, the answer)
  item 7       the same traces: to-cert against the verdict, the share of
               the verdict that starting at the ClientHello could hide

Prints a table and the raw figures; with FIRST_VISIT_OUT (make
bench-first-visit: bench/results.md) also writes them as that file's
"bench-first-visit" section, which make bench keeps.
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as bench_run  # noqa: E402  (bench/run.py: the test world, tstclnt)
from testworld import WorldError  # noqa: E402
from testworld.world import World  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "11"))
TRACES = int(os.environ.get("BENCH_TRACES", "9"))
WRAPPER_RUNS = 31
OTHER_RUN = os.environ.get("OTHER_RUN")
OTHER_LIB = os.environ.get("OTHER_LIB")
# The server's flight, for the "cert" mark: reads as well.
TRACED = os.environ.get("FIRST_VISIT_TRACE", bench_run.P6_TRACED + ",read,recvfrom")
CERT_PHASES = ("cert", "after-cert")


def med(xs):
    return statistics.median(xs) if xs else float("nan")


class FirstVisit(bench_run.Bench):
    def __init__(self, w):
        super().__init__(w)
        self.request = os.path.join(w.dir, "request")
        with open(self.request, "w") as f:
            f.write("GET / HTTP/1.0\r\n\r\n")

    def visit(self, home, wrapper, strace=None, env_extra=None):
        """One tstclnt (bench/run.py's), under WRAPPER or stock (None)."""
        if wrapper is None:
            return self.tstclnt(home, False)
        return self.tstclnt(home, True, strace=strace, trace=TRACED, wrapper=wrapper,
                            env_extra=env_extra)

    def wrapper_ms(self, wrapper):
        env = self.env("enhanced")
        a, b = [], []
        for _ in range(WRAPPER_RUNS):
            t = time.monotonic()
            subprocess.run(["/bin/true"], env=env, check=True)
            a.append(time.monotonic() - t)
            t = time.monotonic()
            subprocess.run([wrapper, "/bin/true"], env=env, check=True)
            b.append(time.monotonic() - t)
        return 1000 * (med(b) - med(a))


def other_wrapper(w):
    """OTHER_RUN (default: this build's), next to a lib/ that is OTHER_LIB
    (default: BUILD's, the same libraries)."""
    other = os.path.join(w.dir, "other-run")
    os.mkdir(other)
    os.symlink(os.path.abspath(OTHER_LIB) if OTHER_LIB else os.path.join(bench_run.BUILD, "lib"),
               os.path.join(other, "lib"))
    with open(OTHER_RUN or os.path.join(bench_run.BUILD, "detector-run"), "rb") as src, \
            open(os.path.join(other, "detector-run"), "wb") as dst:
        dst.write(src.read())
    os.chmod(os.path.join(other, "detector-run"), 0o755)
    return os.path.join(other, "detector-run")


def cert_phases(path, server_port, sphere_ports):
    """The "cert" and "after-cert" marks of one traced cold run (seconds):
    tstclnt's connect() to the server, its last read of that socket before
    the first probe's connect(), that probe."""
    conn = fd = cert = None
    for line in open(path):
        m = bench_run.P6_LINE.match(line)
        if not m:
            continue
        t, call = float(m.group(2)), m.group(3)
        if conn is None:
            c = re.match(r"connect\((\d+),.*htons\(%d\)" % server_port, call)
            if c:
                conn, fd = t, c.group(1)
        elif re.match(r"(read|recvfrom)\(%s," % fd, call) and "= -1" not in call:
            cert = t
        elif cert is not None and call.startswith("connect(") and any(
                "htons(%d)" % p in call for p in sphere_ports):
            return {"cert": cert - conn, "after-cert": t - cert}
    raise bench_run.BenchError("%s: no server read before the first probe" % path)


def measure(w):
    fv = FirstVisit(w)
    out = {"load_start": os.getloadavg()[0]}
    try:
        new = os.path.join(bench_run.BUILD, "detector-run")
        variants = [("cold", new, None)]
        if OTHER_RUN or OTHER_LIB:
            variants.append(("cold, other", other_wrapper(w), None))
        res = {k: [] for k in ["stock", "warm", "verdict"] + [v[0] for v in variants]}
        loads = []
        for i in range(ROUNDS):
            # The order turns each round: no variant always follows another.
            order = variants[i % len(variants):] + variants[:i % len(variants)]
            res["stock"].append(fv.visit(tempfile.mkdtemp(dir=fv.home), None))
            for name, wr, env in order:
                home = tempfile.mkdtemp(dir=fv.home)
                res[name].append(fv.visit(home, wr, env_extra=env))
                if name == "cold":
                    res["warm"].append(fv.visit(home, wr))
            res["verdict"].append(fv.checks(fv.spheres, bench_run.P2_QUORUM, 1,
                                            port=w.cport)[0][0])
            loads.append(os.getloadavg()[0])
        out["res"], out["load_rounds"] = res, med(loads)
        out["wrapper"] = {"new": fv.wrapper_ms(new)}
        if OTHER_RUN or OTHER_LIB:
            out["wrapper"]["other"] = fv.wrapper_ms(variants[-1][1])
        out["load_wrapper"] = os.getloadavg()[0]
        sphere_ports = [int(s.rsplit(":", 1)[1]) for s in fv.spheres.split(",")]
        traces = {"stock": []}
        traces.update((name, []) for name, _, _ in variants)
        tloads = []
        for i in range(TRACES):
            for name, wr, env in [("stock", None, None)] + variants:
                home = tempfile.mkdtemp(dir=fv.home)
                path = os.path.join(home, "strace")
                if wr is None:
                    fv.tstclnt(home, False, strace=path, trace=TRACED)
                else:
                    fv.visit(home, wr, strace=path, env_extra=env)
                if os.environ.get("FIRST_VISIT_KEEP"):
                    subprocess.run(["cp", path, "%s.%s.%d" % (os.environ["FIRST_VISIT_KEEP"],
                                                              name[:6].strip(","), i)])
                phases = bench_run.p6_phases(path, w.cport, sphere_ports if wr else [])
                if wr:
                    phases.update(cert_phases(path, w.cport, sphere_ports))
                traces[name].append(phases)
            tloads.append(os.getloadavg()[0])
        out["traces"], out["load_traces"] = traces, med(tloads)
        # Item 7 on the lean server: a whole stock handshake (TCP connect,
        # ClientHello, the server's flight, NSS's certificate check,
        # Finished) bounds the time from the ClientHello to the check.
        rates = [fv.handshakes("stock", 300)[0] for _ in range(3)]
        out["handshake_ms"] = 1000.0 / med(rates)
        out["load_end"] = os.getloadavg()[0]
    finally:
        fv.stop()
    return out


def report(m):
    res, tr = m["res"], m["traces"]
    medr = {k: med(v) for k, v in res.items()}
    lines = []
    note = bench_run.load_note

    def row(what, value, load):
        lines.append("| %s | %s | %s |" % (what, value, note(load)))

    lines += ["| measured side by side in this run | ours | load avg (1 min) |", "|---|---|---|"]
    for k in res:
        if k.startswith("cold"):
            row("first visit beyond the verdict: %s − stock − verdict" % k,
                "%.0f ms (%.0f − %.0f − %.0f ms)" % (medr[k] - medr["stock"] - medr["verdict"],
                                                     medr[k], medr["stock"], medr["verdict"]),
                m["load_rounds"])
    row("warm (verdict cached) − stock", "%.0f ms" % (medr["warm"] - medr["stock"]),
        m["load_rounds"])
    for name, ms in m["wrapper"].items():
        row("wrapper: %s detector-run /bin/true − /bin/true" % (
            "this" if name == "new" else "the other"), "%.1f ms" % ms, m["load_wrapper"])
    for k in res:
        if k.startswith("cold"):
            d = [c - s - v for c, s, v in zip(res[k], res["stock"], res["verdict"])]
            row("(paired) median over rounds of %s − stock − verdict of the same round" % k,
                "%.0f ms" % med(d), m["load_rounds"])
    st = tr["stock"]
    row("under strace, stock (medians of %d runs, ms)" % len(st),
        "start %.1f; connected %.1f; total %.1f" % tuple(
            med([1000 * t[k] for t in st]) for k in ("start", "connected", "total")),
        m["load_traces"])
    for name, runs in tr.items():
        if name == "stock":
            continue
        parts = ["%s %.1f" % (k, med([1000 * t[k] for t in runs]))
                 for k in ("start", "connected", "total") + bench_run.P6_PHASES + CERT_PHASES]
        row("under strace, %s (medians of %d runs, ms)" % (name, len(runs)),
            "; ".join(parts), m["load_traces"])
    cert = med([1000 * t["cert"] for t in tr["cold"]])
    row("item 7: ClientHello → the server's flight read, test world's forking server "
        "(strace: connect → tstclnt's last read of the socket before the probes)",
        "%.1f ms = %.0f%% of the verdict (%.0f ms)" % (cert, 100 * cert / medr["verdict"],
                                                     medr["verdict"]), m["load_traces"])
    row("item 7: one whole stock handshake on the lean server (bench/tls_server; "
        "bounds ClientHello → check)",
        "%.2f ms = %.1f%% of the verdict" % (m["handshake_ms"],
                                             100 * m["handshake_ms"] / medr["verdict"]),
        m["load_end"])
    raw = ["per round (ms): " + "; ".join(
        "%s %s" % (k, ", ".join("%.0f" % x for x in v)) for k, v in res.items())]
    for name, runs in tr.items():
        if name == "stock":
            raw.append("under strace, stock, per run (ms): " + "; ".join(
                "%s %s" % (k, ", ".join("%.1f" % (1000 * t[k]) for t in runs))
                for k in ("start", "connected", "total")))
            continue
        raw.append("under strace, %s, per run (ms): " % name + "; ".join(
            "%s %s" % (k, ", ".join("%.1f" % (1000 * t[k]) for t in runs))
            for k in bench_run.P6_PHASES + CERT_PHASES))
    raw.append("load average (1 min): start %.2f, rounds %.2f, traces %.2f, end %.2f on %d "
               "cores" % (m["load_start"], m["load_rounds"], m["load_traces"], m["load_end"],
                          bench_run.CORES))
    return "\n".join(lines), raw


def main():
    if os.geteuid() != 0:
        sys.exit("first_visit: the test world's spheres need root (mount namespaces)")
    if subprocess.run(["which", "strace"], capture_output=True).returncode != 0:
        sys.exit("first_visit: strace is missing (apt-get install strace)")
    w = World(minimal=True)
    try:
        w.start()
    except WorldError as e:
        sys.exit("first_visit: could not build the test world: %s" % e)
    try:
        m = measure(w)
    finally:
        w.stop()
    table, raw = report(m)
    text = table + "\n\n" + "\n".join("- " + r for r in raw) + "\n"
    print(text)
    if os.environ.get("FIRST_VISIT_OUT"):
        write_section(os.environ["FIRST_VISIT_OUT"], m, text)
    return 0


def other_name():
    name = os.path.basename(OTHER_RUN or "")
    if name == "detector-run.main":
        name = "main's detector-run (`git show main:detector/tools/detector-run`)"
    if OTHER_LIB:
        name = "%s with the libraries in %s" % (name or "this detector-run", OTHER_LIB)
    return name or "not measured"


BEGIN, END = "<!-- bench-first-visit: begin -->", "<!-- bench-first-visit: end -->"


def write_section(path, m, text):
    """Replaces this script's section of PATH (bench/results.md; make bench
    keeps it), or appends it."""
    commit = subprocess.run(["git", "-C", bench_run.ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    section = (BEGIN + "\n## First visit, broken down (`make bench-first-visit`)\n\n"
               "Written by bench/first_visit.py (its docstring says how), %s UTC, commit "
               "%s, %d rounds and %d traced runs per variant; *cold, other* is %s.  "
               "Load average beside every figure: above the core count the figure measures "
               "the machine's contention as much as DetecTor (unreliable).\n\n%s%s\n"
               % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()), commit or "?", ROUNDS,
                  TRACES, other_name(), text, END))
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + section + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path + ".tmp", "w") as f:
        f.write(new)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
