"""Measure circuit hygiene and instances on the private Tor network.

    flock /tmp/detector-heavy.lock /usr/bin/python3 tests/tornet/tornet.py \
        isolate -- /usr/bin/python3 tests/tornet/measure_spheres.py [ROUNDS]

Checks as libdetector makes them on one sphere (SOCKS5 CONNECT with fresh
credentials + a TLS handshake with the test server), CONCURRENCY in
flight, in rounds of CHECKS_PER_ROUND; per round: checks/s, the sphere
tor's CPU time per check (/proc utime + stime), its open circuits after
the round, and the load average. Three runs:

  janitor    detector-spheres' circuit janitor running (the default)
  no-janitor the janitor stopped: what tor does by itself
  instances  one sphere with instances = 2, checks alternating between
             the two tor processes (CPU summed over both)

Prints a Markdown table (used in docs/tor-network.md).
"""

import concurrent.futures
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid

import stem.control

from testworld import tornet as tn
from test_circuits import connect_isolated, tend_pid

from detector_spheres import hygiene

CONCURRENCY = 8
CHECKS_PER_ROUND = 200
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def circuits(port):
    with stem.control.Controller.from_port(port=port) as ctl:
        ctl.authenticate()
        return hygiene.count_circuits(ctl)


def one_check(net, socks):
    sock = connect_isolated(socks, tn.SERVER_NAME, net.server[2],
                            uuid.uuid4().hex)
    net._tls_handshake(sock)


def run_rounds(net, label, targets, rounds, out):
    """targets: [(socks address, tor pid, control port)]; checks go to them
    in turn."""
    pool = concurrent.futures.ThreadPoolExecutor(CONCURRENCY)
    for r in range(1, rounds + 1):
        cpu0 = sum(cpu_seconds(pid) for _, pid, _ in targets)
        t0 = time.monotonic()
        it = itertools.cycle([t[0] for t in targets])
        futs = [pool.submit(one_check, net, next(it))
                for _ in range(CHECKS_PER_ROUND)]
        failed = sum(1 for f in futs if f.exception(timeout=120))
        wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(pid) for _, pid, _ in targets) - cpu0
        time.sleep(hygiene.GRACE + 1)
        open_, used = map(sum, zip(*(circuits(c) for _, _, c in targets)))
        row = "| %s | %d | %.1f | %.1f | %d (%d used) | %d | %.2f |" % (
            label, r, CHECKS_PER_ROUND / wall,
            1000 * cpu / CHECKS_PER_ROUND, open_, used, failed,
            os.getloadavg()[0])
        print(row, flush=True)
        out.append(row)
    pool.shutdown()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    out = ["| run | round | checks/s | tor CPU ms/check | circuits after "
           "| failed | load avg |", "|---|---|---|---|---|---|---|"]
    with tn.session_network() as net:
        pids = dict((n.split(" ", 1)[1], pid)
                    for n, pid, _ in net._sphere_pids())
        a, b = net.spheres[0], net.spheres[1]
        run_rounds(net, "janitor", [(a["socks"], pids[a["name"]],
                                     a["control_port"])], rounds, out)
        os.kill(tend_pid(net), signal.SIGTERM)
        time.sleep(1)
        run_rounds(net, "no janitor", [(b["socks"], pids[b["name"]],
                                        b["control_port"])], rounds, out)
        net.spheres_cli("start", "--timeout", "30")        # janitor again
        text = open(os.path.join(net.dir, "spheres.conf")).read()
        conf = os.path.join(net.dir, "twin.conf")
        with open(conf, "w") as f:
            f.write("[spheres]\ninstances = 2\n\n[sphere twin]\nexit_nodes = "
                    "$%s\nsocks_port = 9186\n\n%s" % (
                        net.exits[2].fingerprint,
                        text[text.index("[tor]"):]))
        state = os.path.join(net.dir, "twin-state")
        tool = [sys.executable, tn.SPHERES_TOOL]
        subprocess.run(tool + ["start", "--config", conf, "--state-dir",
                               state, "--timeout", "90"], check=True)
        try:
            twins = []
            for name, port in (("twin", 9186), ("twin.2", 9188)):
                with open(os.path.join(state, name, "tor.pid")) as f:
                    twins.append(((tn.RELAY_ADDR, port), int(f.read()),
                                  port + 1))
            run_rounds(net, "1 of 2 instances", twins[:1], rounds, out)
            run_rounds(net, "2 instances", twins, rounds, out)
        finally:
            subprocess.run(tool + ["stop", "--state-dir", state])
    print("\n".join(out))


if __name__ == "__main__":
    main()
