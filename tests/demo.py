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
  4. runs an unmodified NSS application (Debian's tstclnt) under
     detector-run, its name resolution sending server.test to a MITM:
     with `on_mitm = refuse` it is refused (DETECTOR_ERROR_MITM), with
     `on_mitm = reroute` its connection is made again through a Tor sphere
     and it prints the real server's marker, the MITM receiving nothing
     (docs/reroute.md);
  5. stops every process it started and removes its files.

The whole demo runs inside private network, mount and PID namespaces
(`testworld.tornet isolate`, entered by re-running this script there): nothing it
starts can reach beyond this machine's loopback, clash with a real Tor or
DetecTor on the same ports, or outlive it.

Run it as `python3 tests/demo.py` (as `make demo` does): the test-world
package tests/testworld sits next to it, so `import testworld` needs no
path set up.

Exits 0 when every outcome is as expected, 1 otherwise."""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from integration.test_reroute import MarkerServer
from testworld import WorldError, tornet
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, free_port
from testworld.world import World

HERE = os.path.dirname(os.path.abspath(__file__))

BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(HERE, "..", "build")
PROBE = os.path.join(BUILD, "sphere-probe")
DETECTOR_RUN = os.path.join(BUILD, "detector-run")
TSTCLNT = "/usr/bin/tstclnt"
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


class NssApp:
    """Step 5: tstclnt under detector-run against marker servers (the real
    one answers with a marker only it knows; the MITM, with the world's
    rogue certificate, with its own, and counts the application bytes it
    receives), tstclnt's /etc/hosts sending server.test to the MITM."""

    def __init__(self, world, tmp):
        self.tmp = tmp
        self.port = free_port(REAL_ADDR, MITM_ADDR)
        self.real_marker = "REAL-" + secrets.token_hex(6)
        self.mitm_marker = "MITM-" + secrets.token_hex(6)
        self.real = MarkerServer(REAL_ADDR, self.port, world.real,
                                 self.real_marker)
        self.mitm = MarkerServer(MITM_ADDR, self.port, world.rogue,
                                 self.mitm_marker)
        self.db = "sql:" + os.path.join(tmp, "nssdb")
        os.mkdir(self.db[4:], 0o700)
        for argv in (["-N", "--empty-password"],
                     ["-A", "-n", "testca", "-t", "C,,", "-i",
                      world.pki.ca_crt]):
            subprocess.run(["certutil", "-d", self.db] + argv, check=True,
                           capture_output=True)
        with open(os.path.join(tmp, "request"), "w") as f:
            f.write("GET / HTTP/1.0\r\n\r\n")
        with open(os.path.join(tmp, "hosts"), "w") as f:
            f.write("127.0.0.1\tlocalhost\n%s\t%s\n" % (MITM_ADDR, HOST))

    def run(self, net, policy):
        """tstclnt with on_mitm = policy; prints DetecTor's log lines and
        what tstclnt received.  Returns (exit status, real marker seen,
        MITM application bytes), or None if it did not finish."""
        conf = os.path.join(self.tmp, "detector-%s.conf" % policy)
        with open(conf, "w") as f:
            f.write("[detector]\non_mitm = %s\n" % policy)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DETECTOR_", "XDG_"))}
        env.update(HOME=self.tmp, DETECTOR_CONFIG=conf, DETECTOR_LOG="decisions",
                   DETECTOR_SPHERES=net.socks_addresses)
        app = [DETECTOR_RUN, TSTCLNT, "-h", HOST, "-p", str(self.port),
               "-d", self.db, "-A", os.path.join(self.tmp, "request")]
        with self.mitm._lock:
            self.mitm.app_bytes = 0
        print("$ printf '[detector]\\non_mitm = %s\\n' > detector.conf" % policy)
        print("$ detector-run tstclnt -h %s -p %d -d sql:nssdb -A request"
              % (HOST, self.port), flush=True)
        t = time.monotonic()
        try:
            p = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind "$0" /etc/hosts && exec "$@"',
                 os.path.join(self.tmp, "hosts")] + app,
                env=env, stdin=subprocess.DEVNULL, capture_output=True,
                text=True, timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            print("tstclnt did not finish within %d s" % PROBE_TIMEOUT)
            return None
        for line in p.stderr.splitlines():
            if line.startswith("DetecTor") or "DETECTOR_ERROR" in line:
                print("  " + line)
        got = [m for m in (self.real_marker, self.mitm_marker) if m in p.stdout]
        print("  tstclnt received: %s" % (", ".join(got) or "nothing"))
        print("(exit status %d, %.0f ms; application bytes at the MITM: %d)"
              % (p.returncode, (time.monotonic() - t) * 1000,
                 self.mitm.app_bytes), flush=True)
        return p.returncode, self.real_marker in p.stdout, self.mitm.app_bytes

    def stop(self):
        self.real.stop()
        self.mitm.stop()


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
    for tool in (PROBE, DETECTOR_RUN):
        if not os.access(tool, os.X_OK):
            print("demo: %s is missing; run `make` first" % tool,
                  file=sys.stderr)
            return 1
    if os.environ.get("DETECTOR_TORNET_ISOLATED") != "1":
        print("demo: entering private network/mount/PID namespaces "
              "(testworld.tornet isolate)", flush=True)
        tornet.isolate([sys.executable, os.path.abspath(__file__)]
                       + sys.argv[1:])          # does not return

    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupted)
    t_start = time.monotonic()
    net = world = home = nss = None
    clean = mitm = refused = rerouted = None
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
                    "hook refuses this connection; step 5 shows one.")

        heading("5. An unmodified NSS application: Debian's tstclnt under "
                "detector-run (which gives it DetecTor's libssl3.so), its own "
                "name resolution sending %s to the MITM. The real server "
                "answers with %s, the MITM with %s. First with on_mitm = "
                "refuse (the default), then with on_mitm = reroute."
                % (HOST, "REAL-...", "MITM-..."))
        nss = NssApp(world, home)
        refused = nss.run(net, "refuse")
        if refused and refused[0] != 0:
            explain("Refused: tstclnt's certificate check accepted the rogue "
                    "certificate (it is CA-valid), DetecTor's did not, and "
                    "the handshake ended with DETECTOR_ERROR_MITM before any "
                    "application byte was sent.")
        print()
        rerouted = nss.run(net, "reroute")
        if rerouted and rerouted[1]:
            explain("Rerouted: the same application, the same descriptor, "
                    "but the handshake was started over from ClientHello "
                    "through a fresh Tor circuit of a sphere that saw the "
                    "real key; tstclnt checked the real certificate and got "
                    "the real server's marker. The MITM got no application "
                    "byte. The user loses speed, not safety. (The first "
                    "run's REJECT was in the verdict cache; a new process "
                    "has no reroute plan for it, so it probed once more.)")
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        t = time.monotonic()
        if nss is not None:
            nss.stop()
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

    nss_refused = bool(refused) and refused[0] != 0 and not refused[1] \
        and refused[2] == 0
    nss_rerouted = bool(rerouted) and rerouted[0] == 0 and rerouted[1] \
        and rerouted[2] == 0
    ok = clean == 0 and mitm == 2 and nss_refused and nss_rerouted
    heading("Result: %s (clean path exit %s, expected 0; MITM path exit %s, "
            "expected 2; tstclnt %s with refuse, %s with reroute). "
            "Whole demo: %.0f s."
            % ("MITM detected through real Tor, clean path accepted, the "
               "application refused, then rerouted to the real server" if ok
               else "UNEXPECTED OUTCOME", clean, mitm,
               "refused" if nss_refused else "NOT refused",
               "rerouted" if nss_rerouted else "NOT rerouted",
               time.monotonic() - t_start))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
