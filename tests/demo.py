#!/usr/bin/python3
"""make demo: DetecTor catching a real TLS man-in-the-middle, through real Tor.

  1. starts a private Tor network on loopback (tests/testworld/tornet.py: three
     directory authorities, two middle relays, five exit relays) and the five
     DetecTor spheres on it -- real tor clients, started by detector-spheres,
     each pinned to its own exit relay;
  2. builds the loopback test world (tests/testworld/world.py): a test CA,
     the real server for server.test, and a MITM holding a rogue certificate
     for the same name from the same CA (what a compelled CA gives);
  3. runs sphere-probe on the clean path (expect ACCEPT, exit 0) and with
     the client's connection going through the MITM (expect REJECT, exit 2);
  4. stops every process it started and removes its files.

The whole demo runs inside private network, mount and PID namespaces
(`testworld.tornet isolate`, entered by re-running this script there): nothing it
starts can reach beyond this machine's loopback, clash with a real Tor or
DetecTor on the same ports, or outlive it.

Run it as `python3 tests/demo.py` (as `make demo` does): the test-world
package tests/testworld sits next to it, so `import testworld` needs no
path set up.

Exits 0 when both verdicts are as expected, 1 otherwise."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from testworld import WorldError, tornet
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR
from testworld.world import World

HERE = os.path.dirname(os.path.abspath(__file__))

BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(HERE, "..", "build")
PROBE = os.path.join(BUILD, "sphere-probe")
PROBE_TIMEOUT = 60          # seconds for one sphere-probe run
NETWORK_TIMEOUT = 180       # seconds for the Tor network to come up


def heading(text):
    print("\n" + "=" * 78)
    print(textwrap.fill(text, 78))
    print("=" * 78, flush=True)


def explain(text):
    print(textwrap.fill(text, 78, initial_indent="  ", subsequent_indent="  "),
          flush=True)


def run_probe(net, world, direct_addr, home):
    """sphere-probe through the five Tor spheres, the direct connection sent
    to direct_addr. Prints the command and its report; returns the exit
    status (None if it did not finish)."""
    argv = [PROBE, "--spheres", net.socks_addresses,
            "--resolve", world.resolve(direct_addr),
            "%s:%d" % (HOST, world.port)]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DETECTOR_CONFIG", "DETECTOR_SPHERES", "XDG_CACHE_HOME",
                        "XDG_CONFIG_HOME")}
    env["HOME"] = home
    print("$ sphere-probe " + " ".join(argv[1:]), flush=True)
    t = time.monotonic()
    try:
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True,
                           timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        print("sphere-probe did not finish within %d s" % PROBE_TIMEOUT)
        return None
    sys.stdout.write(p.stdout + p.stderr)
    print("(exit status %d, %.0f ms)" % (p.returncode,
                                         (time.monotonic() - t) * 1000),
          flush=True)
    return p.returncode


def start_network():
    heading("1. A private Tor network on loopback: 3 directory authorities, "
            "2 middle relays, 5 exit relays (their resolver: a test DNS that "
            "says %s is %s), then the five DetecTor spheres, started by "
            "detector-spheres and each pinned to its own exit. Progress "
            "lines come from the harness and from detector-spheres."
            % (HOST, REAL_ADDR))
    net = tornet.TorNetwork(tempfile.mkdtemp(prefix="detector-demo-tor-"))
    try:
        net.up(timeout=NETWORK_TIMEOUT)
    except tornet.TornetError as e:
        print("demo: the Tor network did not come up: %s" % e, file=sys.stderr)
        return None
    print("\nTor network up in %.1f s; every sphere carried a test probe."
          % net.timings["total"])
    print("\n$ detector-spheres status")
    p = net.spheres_cli("status", check=False, timeout=60)
    sys.stdout.write(p.stdout)
    explain("Each sphere is a tor client whose circuits all end at its own "
            "exit relay (country '??': this private network has no GeoIP "
            "data). sphere-probe talks SOCKS5 to these ports.")
    return net


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupted(signum, _frame):
    """The first ^C (or SIGTERM) unwinds into the cleanup; later ones --
    ^C reaches us twice, from the terminal and forwarded by the namespace's
    init -- must not interrupt it."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def main():
    sys.stdout.reconfigure(line_buffering=True)   # in order with stderr
    if not os.access(PROBE, os.X_OK):
        print("demo: %s is missing; run `make` first" % PROBE, file=sys.stderr)
        return 1
    if os.environ.get("DETECTOR_TORNET_ISOLATED") != "1":
        print("demo: entering private network/mount/PID namespaces "
              "(testworld.tornet isolate)", flush=True)
        tornet.isolate([sys.executable, os.path.abspath(__file__)]
                       + sys.argv[1:])          # does not return

    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupted)
    t_start = time.monotonic()
    net = world = home = None
    clean = mitm = None
    try:
        net = start_network()
        if net is None:
            return 1

        heading("2. The test world: a test CA; the real server for %s on %s; "
                "a TLS-terminating MITM on %s holding a rogue certificate for "
                "the same name, signed by the same CA (a compelled CA: a "
                "browser would accept it)." % (HOST, REAL_ADDR, MITM_ADDR))
        t = time.monotonic()
        try:
            world = World(minimal=True, spheres=False).start()
        except WorldError as e:
            print("demo: could not build the test world: %s" % e,
                  file=sys.stderr)
            return 1
        print("built in %.1f s: %s port %d" % (time.monotonic() - t, HOST,
                                               world.port))
        print("real key  (SPKI SHA-256): %s" % world.real.spki_sha256)
        print("rogue key (SPKI SHA-256): %s" % world.rogue.spki_sha256)
        home = tempfile.mkdtemp(prefix="detector-demo-home-")

        heading("3. Clean path. The direct connection reaches the real "
                "server; each sphere asks its Tor exit to connect to %s, the "
                "exit resolves the name itself and reaches the same server. "
                "Expected: ACCEPT, exit 0." % HOST)
        clean = run_probe(net, world, REAL_ADDR, home)
        if clean == 0:
            explain("All spheres that answered saw the key the direct connection "
                    "saw. One may be listed as 'skipped': four agreeing spheres "
                    "already make the quorum, so sphere-probe does not wait for "
                    "the fifth.")

        heading("4. Intercepted path. The client's connection goes to the "
                "MITM (as on a hostile network, or with poisoned DNS), which "
                "presents a certificate valid for %s from the same CA but "
                "with another key. The Tor exits are not on that path: they "
                "still reach the real server. Expected: REJECT, exit 2."
                % HOST)
        mitm = run_probe(net, world, MITM_ADDR, home)
        if mitm == 2:
            explain("The spheres see the real key, the direct connection sees "
                    "the rogue one: 'mismatch'. Two disagreeing spheres are "
                    "enough to reject (with 5 spheres and a quorum of 4), so the "
                    "rest may be 'skipped'. An application using DetecTor's NSS "
                    "hook would refuse this connection.")
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        t = time.monotonic()
        if world is not None:
            world.stop()
        if net is not None:
            net.down()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
        if net is not None or world is not None:
            print("\ncleaned up in %.1f s: every tor, dnsmasq, server and "
                  "MITM stopped by PID, their files removed"
                  % (time.monotonic() - t), flush=True)

    ok = clean == 0 and mitm == 2
    heading("Result: %s (clean path exit %s, expected 0; MITM path exit %s, "
            "expected 2). Whole demo: %.0f s."
            % ("MITM detected through real Tor, clean path accepted" if ok
               else "UNEXPECTED VERDICT", clean, mitm,
               time.monotonic() - t_start))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
