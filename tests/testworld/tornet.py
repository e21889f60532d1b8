"""A private Tor network on loopback, for DetecTor's tests and demo.

Run as a module of the test-world package, with tests/ on PYTHONPATH
(mk/tor.mk does this; below, `tornet` stands for
`PYTHONPATH=tests /usr/bin/python3 -m testworld.tornet`):

    tornet up --dir D [--socks-ports 9160,9162,...] [--exits 5]
    tornet down --dir D
    tornet status --dir D
    tornet run --dir D -- CMD...      up, run CMD, down (whatever CMD does)
    tornet isolate -- CMD...          run CMD in a private network, mount
                                      and PID namespace (see docs/tor-network.md)

`up` builds, in order: a DNS responder for the exits (dnsmasq on
127.0.0.53:5353, its own hosts file: server.test -> 127.0.0.2), a TLS check
server (openssl s_server on 127.0.0.2), three directory authorities (keys from
tor-gencert), two middle relays and the exit relays, all with
`TestingTorNetwork 1` on 127.0.0.1; once the consensus lists every relay,
`detector-spheres start` starts the five sphere clients, each pinned by
`ExitNodes` + `StrictNodes 1` to its own disjoint set of exits; finally it
probes server.test through each sphere until the TLS handshake succeeds.
Every stage is bounded and timed.

    tornet probe --socks H:P --cafile F server.test 8443
                                      one SOCKS5 + TLS probe, JSON result

Every process is recorded by PID in D/state.json; `down` (or TorNetwork.down)
sends SIGTERM, then SIGKILL after a grace period, and removes D
(processes.stop_pids).

The options come from ../../shared/notes/private-tor-network.md; each pitfall
named there is handled where the option is set (look for "pitfall").

From pytest, see tests/tornet/conftest.py: the session fixture `tornet` returns the
TorNetwork object below.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from . import dnsquery, socks5
from .processes import (cmdline, pid_state, python_env, python_module, reap_children,
                        rss_kib, spawn, stop_pids)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SPHERES_TOOL = os.path.join(REPO, "sphere-controller", "detector-spheres")

TOR = "/usr/bin/tor"
TOR_GENCERT = "/usr/bin/tor-gencert"
DNSMASQ = "/usr/sbin/dnsmasq"
OPENSSL = "/usr/bin/openssl"

RELAY_ADDR = "127.0.0.1"        # every Tor node
SERVER_ADDR = "127.0.0.2"       # test servers (pitfall 3: never the relays' address)
DNS_ADDR = ("127.0.0.53", 5353)  # the exits' resolver
RESOLVER_CHECKS = 40            # names tried (0.5 s apart) after an exit's SIGHUP
SERVER_NAME = "server.test"
SPHERE_NAMES = ["asia", "europe", "north-america", "africa-south-america",
                "oceania-antarctica"]
DEFAULT_SOCKS_PORTS = [9160, 9162, 9164, 9166, 9168]

GRACE = 10.0        # seconds between SIGTERM and SIGKILL

# binary -> the Debian package that has it (all in mk/debian-packages.txt)
TOOLS = {TOR: "tor", TOR_GENCERT: "tor", DNSMASQ: "dnsmasq-base",
         OPENSSL: "openssl"}



class TornetError(Exception):
    """A stage of the network failed or missed its deadline."""


def _log(msg):
    print("tornet: " + msg, file=sys.stderr, flush=True)


def _controller(port):
    import stem.control
    ctl = stem.control.Controller.from_port(address=RELAY_ADDR, port=port)
    ctl.authenticate()          # cookie authentication
    return ctl


class Node:
    """One tor relay or directory authority of the private network."""

    def __init__(self, net, kind, index, orport, dirport, controlport):
        self.kind = kind            # "authority", "middle" or "exit"
        self.nickname = {"authority": "auth", "middle": "middle",
                         "exit": "exit"}[kind] + str(index)
        self.orport, self.dirport, self.controlport = orport, dirport, controlport
        self.dir = os.path.join(net.dir, self.nickname)
        self.torrc = os.path.join(self.dir, "torrc")
        self.pidfile = os.path.join(self.dir, "tor.pid")
        self.fingerprint = None
        self.v3ident = None
        self.pid = None

    def to_json(self):
        return {k: getattr(self, k) for k in (
            "kind", "nickname", "orport", "dirport", "controlport", "dir",
            "fingerprint", "v3ident", "pid")}

    def dir_authority_line(self):
        return "%s orport=%d no-v2 v3ident=%s %s:%d %s" % (
            self.nickname, self.orport, self.v3ident, RELAY_ADDR, self.dirport,
            self.fingerprint)


def sphere_section(name, exit_fp, socks_port):
    """A detector-spheres [sphere NAME] section pinned to one exit."""
    return "[sphere %s]\nexit_nodes = $%s\nsocks_port = %d\n\n" % (name, exit_fp, socks_port)


def spheres_tool(state, conf=None, timeout=120):
    """run(*args): detector-spheres ARGS [--config conf] --state-dir state
    as a CompletedProcess (text stdout/stderr), for a test's own spheres
    (TorNetwork.spheres_cli() runs the network's)."""
    def run(*args):
        return subprocess.run(
            [sys.executable, SPHERES_TOOL] + list(args)
            + (["--config", str(conf)] if conf is not None else [])
            + ["--state-dir", str(state)],
            capture_output=True, text=True, timeout=timeout)
    return run


class TorNetwork:
    """A private Tor network and its spheres.

    Attributes useful to tests (valid after up()):
      spheres          [{'name', 'socks': (host, port), 'control_port',
                         'exits': [fingerprint, ...]}]
      socks_addresses  "127.0.0.1:9160,127.0.0.1:9162,..." for sphere-probe
      exits            the exit Nodes; .fingerprint, .nickname
      dns              (addr, port) of the exits' resolver
      server           (name, addr, port) of the TLS check server
      server_cert      PEM file of the check server's self-signed certificate
    """

    def __init__(self, directory, socks_ports=None, n_exits=5, base_port=7000,
                 server_port=8443, quiet=False):
        self.dir = os.path.abspath(directory)
        self.socks_ports = list(socks_ports or DEFAULT_SOCKS_PORTS)
        if not 1 <= len(self.socks_ports) <= len(SPHERE_NAMES):
            raise TornetError("between 1 and %d spheres, got %d"
                              % (len(SPHERE_NAMES), len(self.socks_ports)))
        if n_exits < len(self.socks_ports):
            raise TornetError("%d exits cannot give %d spheres disjoint exits"
                              % (n_exits, len(self.socks_ports)))
        self.n_exits = n_exits
        self.base_port = base_port
        self.server = (SERVER_NAME, SERVER_ADDR, server_port)
        self.dns = DNS_ADDR
        self.quiet = quiet
        self.nodes = []
        self.spheres = []
        self.procs = []              # [(name, pid, marker)] everything we started
        self.popens = []
        self.timings = {}
        self.hosts = {SERVER_NAME: SERVER_ADDR}
        self.t0 = None

    # ---- paths -------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def hosts_file(self):
        return self.path("dns", "hosts")

    @property
    def server_cert(self):
        return self.path("tls", "cert.pem")

    @property
    def exits(self):
        return [n for n in self.nodes if n.kind == "exit"]

    @property
    def exit_fingerprints(self):
        return [n.fingerprint for n in self.exits]

    @property
    def socks_addresses(self):
        return ",".join("%s:%d" % s["socks"] for s in self.spheres)

    def _say(self, msg):
        if not self.quiet:
            el = time.monotonic() - self.t0 if self.t0 else 0.0
            _log("[%6.1fs] %s" % (el, msg))

    def _stage(self, name, start):
        self.timings[name] = round(time.monotonic() - start, 2)

    # ---- bring-up ----------------------------------------------------
    def up(self, timeout=180.0, keep_on_failure=False):
        """Start everything; return when every sphere carried a real probe.

        Raises TornetError when a stage fails or the whole bring-up misses
        `timeout` seconds, after stopping whatever it started and removing
        the directory (kept, logs and all, with keep_on_failure).
        """
        self.t0 = time.monotonic()
        deadline = self.t0 + timeout
        if os.path.exists(self.dir) and os.listdir(self.dir):
            raise TornetError("%s exists and is not empty: pick a fresh "
                              "directory or run 'python3 -m testworld.tornet down --dir %s'"
                              % (self.dir, self.dir))
        missing = ["%s (Debian package %s)" % kv for kv in TOOLS.items()
                   if not os.access(kv[0], os.X_OK)]
        if missing:
            raise TornetError("missing: %s; run 'make deps'" % ", ".join(missing))
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        try:
            self._up(deadline)
        except BaseException:
            self._say("bring-up failed; stopping what was started")
            self.down(remove=not keep_on_failure)
            if keep_on_failure:
                self._say("logs kept in %s (*/notice.log, dns/, tls/)" % self.dir)
            raise
        self.timings["total"] = round(time.monotonic() - self.t0, 2)
        self._save()
        self._say("network ready in %.1f s (%s)" % (
            self.timings["total"], ", ".join(
                "%s %.1f s" % kv for kv in self.timings.items()
                if kv[0] != "total")))
        return self

    def _up(self, deadline):
        t = time.monotonic()
        self._prepare_files()
        self._start_dns()
        self._start_check_server()
        self._stage("dns+tls", t)

        t = time.monotonic()
        self._make_nodes()
        self._make_keys(deadline)
        self._stage("keys", t)
        self._say("keys ready: %d authorities, %d middles, %d exits" % (
            3, 2, self.n_exits))

        t = time.monotonic()
        auths = [n for n in self.nodes if n.kind == "authority"]
        # Start all authorities together: one >1 s late loses the first vote.
        self._start_nodes(auths, deadline)
        self._start_nodes([n for n in self.nodes if n.kind != "authority"],
                          deadline)
        self._stage("relays started", t)

        t = time.monotonic()
        self._wait_consensus(auths[0], deadline)
        self._stage("consensus", t)

        t = time.monotonic()
        self._start_spheres(deadline)
        self._stage("spheres usable", t)

        t = time.monotonic()
        for sphere in self.spheres:
            self._first_probe(sphere, deadline)
        self._stage("first probes", t)

    def _prepare_files(self):
        os.makedirs(self.path("dns"))
        os.makedirs(self.path("tls"))
        open(self.path("geoip-empty"), "w").close()
        open(self.path("empty-torrc"), "w").close()   # tor refuses -f /dev/null
        self._write_hosts()
        subprocess.run(
            [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=" + SERVER_NAME,
             "-addext", "subjectAltName=DNS:" + SERVER_NAME,
             "-keyout", self.path("tls", "key.pem"),
             "-out", self.server_cert],
            check=True, capture_output=True, timeout=30)

    def _spawn(self, name, argv, marker, logname):
        # Not dying with its parent: `tornet up` returns, the network stays.
        p = spawn(argv, self.path(logname), die_with_parent=False)
        self.popens.append(p)
        self.procs.append((name, p.pid, marker))
        return p

    def _start_dns(self, name="dnsmasq", addr=None, hosts_file=None):
        """A dnsmasq answering only from its hosts file (everything else is
        NXDOMAIN, nothing is forwarded)."""
        addr = addr or self.dns
        hosts_file = hosts_file or self.hosts_file
        argv = [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--addn-hosts=" + hosts_file,
                "--listen-address=" + addr[0], "--bind-interfaces",
                "--port=%d" % addr[1], "--local=/#/", "--pid-file=",
                "--log-facility=" + hosts_file + ".log"]
        if os.geteuid() == 0:
            argv.append("--user=root")   # it must re-read hosts files under 0700
        p = self._spawn(name, argv, hosts_file, os.path.relpath(
            hosts_file + ".out", self.dir))
        deadline = time.monotonic() + 10
        while True:
            if p.poll() is not None:
                raise TornetError("%s exited with %d: see %s.out" % (
                    name, p.returncode, hosts_file))
            try:
                dnsquery.query_a("probe.invalid", addr, timeout=0.5)
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TornetError("%s on %s:%d does not answer" % ((name,) + addr))
            time.sleep(0.1)
        self._say("%s on %s:%d answers from %s" % ((name,) + addr + (hosts_file,)))

    def _start_check_server(self):
        name, addr, port = self.server
        p = self._spawn("check-server", [
            OPENSSL, "s_server", "-accept", "%s:%d" % (addr, port),
            "-cert", self.server_cert, "-key", self.path("tls", "key.pem"),
            "-www", "-quiet", "-naccept", "1000000"],
            self.server_cert, "tls/s_server.log")
        deadline = time.monotonic() + 10
        while True:
            if p.poll() is not None:
                raise TornetError("openssl s_server exited with %d: see %s" % (
                    p.returncode, self.path("tls", "s_server.log")))
            try:
                self._tls_handshake(socket.create_connection(
                    (addr, port), timeout=2))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TornetError("TLS check server %s:%d does not answer"
                                      % (addr, port))
                time.sleep(0.1)

    def _tls_handshake(self, sock):
        ctx = ssl.create_default_context(cafile=self.server_cert)
        with ctx.wrap_socket(sock, server_hostname=SERVER_NAME) as tls:
            return tls.version()

    def _make_nodes(self):
        b = self.base_port
        kinds = ["authority"] * 3 + ["middle"] * 2 + ["exit"] * self.n_exits
        count = {}
        for i, kind in enumerate(kinds):
            idx = count[kind] = count.get(kind, -1) + 1
            self.nodes.append(Node(self, kind, idx, orport=b + i,
                                   dirport=b + 50 + i if kind == "authority" else None,
                                   controlport=b + 100 + i))
        for n in self.nodes:
            os.makedirs(os.path.join(n.dir, "keys"), mode=0o700)
            os.chmod(n.dir, 0o700)
            self._write_resolv_conf(n, self.dns)

    @staticmethod
    def _write_resolv_conf(node, server):
        """Each relay has its own resolv.conf, so that one exit can be given
        a resolver of its own (set_exit_hosts)."""
        path = os.path.join(node.dir, "resolv.conf")
        try:
            old = int(os.stat(path).st_mtime)
        except FileNotFoundError:
            old = 0
        with open(path + ".tmp", "w") as f:
            f.write("nameserver %s:%d\n" % server)
        # tor re-reads it on SIGHUP only if its mtime (whole seconds) moved
        mtime = max(int(time.time()), old + 1)
        os.utime(path + ".tmp", (mtime, mtime))
        os.replace(path + ".tmp", path)

    def _make_keys(self, deadline):
        gencerts = []
        for n in self.nodes:
            if n.kind != "authority":
                continue
            k = os.path.join(n.dir, "keys")
            gencerts.append(subprocess.Popen(
                [TOR_GENCERT, "--create-identity-key", "-m", "12",
                 "-a", "%s:%d" % (RELAY_ADDR, n.dirport),
                 "-i", os.path.join(k, "authority_identity_key"),
                 "-s", os.path.join(k, "authority_signing_key"),
                 "-c", os.path.join(k, "authority_certificate"),
                 "--passphrase-fd", "0"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE))
        fps = [subprocess.Popen(
            [TOR, "--list-fingerprint", "--ORPort", "1", "--DataDirectory",
             n.dir, "-f", self.path("empty-torrc"), "--GeoIPFile", self.path("geoip-empty"),
             "--GeoIPv6File", self.path("geoip-empty")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for n in self.nodes]
        for p in gencerts:
            _, err = p.communicate(b"\n", timeout=max(1, deadline - time.monotonic()))
            if p.returncode:
                raise TornetError("tor-gencert failed: %s" % err.decode().strip())
        for p in fps:
            _, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            if p.returncode:
                raise TornetError("tor --list-fingerprint failed: %s"
                                  % err.decode().strip())
        for n in self.nodes:
            with open(os.path.join(n.dir, "fingerprint")) as f:
                n.fingerprint = f.read().split()[1]   # "<nickname> <FP>"
            if n.kind == "authority":
                with open(os.path.join(n.dir, "keys", "authority_certificate")) as f:
                    n.v3ident = next(line.split()[1] for line in f
                                     if line.startswith("fingerprint "))

    def common_torrc(self):
        """Options every tor of this network needs (relays and spheres)."""
        lines = ["TestingTorNetwork 1",
                 "ShutdownWaitLength 0",
                 "GeoIPFile " + self.path("geoip-empty"),
                 "GeoIPv6File " + self.path("geoip-empty")]
        lines += ["DirAuthority " + n.dir_authority_line()
                  for n in self.nodes if n.kind == "authority"]
        return lines

    def _node_torrc(self, n):
        lines = self.common_torrc() + [
            "DataDirectory " + n.dir,
            "RunAsDaemon 1",
            "PidFile " + n.pidfile,
            "Log notice file " + os.path.join(n.dir, "notice.log"),
            "Nickname " + n.nickname,
            "Address " + RELAY_ADDR,
            "ORPort %s:%d" % (RELAY_ADDR, n.orport),
            "SocksPort 0",                 # else relays open 9050
            "ControlPort %s:%d" % (RELAY_ADDR, n.controlport),
            "CookieAuthentication 1",
            "AssumeReachable 1",
            "TestingDirAuthVoteExit *",
            "TestingDirAuthVoteGuard *",
            "TestingMinExitFlagThreshold 0",
            "PathsNeededToBuildCircuits 0.25",
            "V3AuthNIntervalsValid 2",
            # Every relay gets the test resolver, and no hijack detection:
            # otherwise they use the system resolver and probe www.google.com.
            "ServerDNSResolvConfFile " + os.path.join(n.dir, "resolv.conf"),
            "ServerDNSDetectHijacking 0",
        ]
        if n.kind == "authority":
            lines += ["AuthoritativeDirectory 1",
                      "V3AuthoritativeDirectory 1",
                      "ContactInfo tornet@%s" % SERVER_NAME,
                      "DirPort %s:%d" % (RELAY_ADDR, n.dirport),
                      "TestingV3AuthInitialVotingInterval 10",
                      "TestingV3AuthInitialVoteDelay 2",
                      "TestingV3AuthInitialDistDelay 2",
                      "V3AuthVotingInterval 10",
                      "V3AuthVoteDelay 2",
                      "V3AuthDistDelay 2",
                      "ExitPolicy reject *:*"]
        elif n.kind == "middle":
            lines += ["ExitRelay 0", "ExitPolicy reject *:*"]
        else:
            # Pitfall 1: a policy that accepts only 127.0.0.0/8 makes clients
            # see no exit at all: clients using microdescriptors (bridged
            # spheres must) see only the policy summary, and a summary counts
            # public addresses only (any policy rejecting most of them is
            # "reject 1-65535"). So the policy accepts every IPv4 address
            # and containment is the kernel's: exit connections start from
            # 127.0.0.1, which Linux refuses (EINVAL) towards any
            # non-loopback address; tor skips the bind for loopback targets.
            lines += ["ExitRelay 1",
                      "ExitPolicyRejectPrivate 0",
                      "OutboundBindAddressExit " + RELAY_ADDR,
                      "ExitPolicy accept *:*"]
        return lines

    def _start_nodes(self, nodes, deadline):
        parents = []
        for n in nodes:
            with open(n.torrc, "w") as f:
                f.write("\n".join(self._node_torrc(n)) + "\n")
            out = open(os.path.join(n.dir, "startup.log"), "wb")
            parents.append((n, subprocess.Popen(
                [TOR, "-f", n.torrc], stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT)))
            out.close()
        # RunAsDaemon: the parent exits once the daemon has initialised.
        for n, p in parents:
            try:
                rc = p.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise TornetError("%s did not daemonize in time" % n.nickname)
            if rc:
                raise TornetError("%s failed to start (exit %d): see %s" % (
                    n.nickname, rc, os.path.join(n.dir, "startup.log")))
            n.pid = self._read_pid(n.pidfile, n.nickname)
            self.procs.append((n.nickname, n.pid, n.torrc))
        self._save()           # so that 'down' works even if up dies later
        self._say("started %s" % ", ".join(n.nickname for n in nodes))

    @staticmethod
    def _read_pid(pidfile, name):
        for _ in range(50):
            try:
                with open(pidfile) as f:
                    return int(f.read().strip())
            except (OSError, ValueError):
                time.sleep(0.1)
        raise TornetError("%s wrote no pid file %s" % (name, pidfile))

    def _wait_consensus(self, auth, deadline):
        """Until the authorities' consensus lists every relay, exits as Exit."""
        import stem
        want = {n.fingerprint for n in self.nodes}
        exits = set(self.exit_fingerprints)
        seen = -1
        while True:
            try:
                with _controller(auth.controlport) as ctl:
                    entries = list(ctl.get_network_statuses())
                have = {e.fingerprint for e in entries if "Running" in e.flags}
                have_exit = {e.fingerprint for e in entries
                             if "Exit" in e.flags and "BadExit" not in e.flags}
                if want <= have and exits <= have_exit:
                    self._say("consensus lists all %d relays" % len(want))
                    return
                if len(have) != seen:
                    seen = len(have)
                    self._say("consensus: %d/%d relays running" % (seen, len(want)))
            except (stem.ControllerError, stem.SocketError, OSError):
                pass                  # no consensus yet
            self._check_alive()
            if time.monotonic() > deadline:
                raise TornetError("no consensus listing all relays in time: see "
                                  "%s/*/notice.log" % self.dir)
            time.sleep(1.0)

    def _check_alive(self):
        for name, pid, _ in self.procs:
            if pid_state(pid) != "alive":
                raise TornetError("%s (pid %d) died: see its log under %s"
                                  % (name, pid, self.dir))

    # ---- spheres -----------------------------------------------------
    def _plan_spheres(self):
        self.spheres = []
        for i, port in enumerate(self.socks_ports):
            self.spheres.append({
                "name": SPHERE_NAMES[i],
                "socks": (RELAY_ADDR, port),
                "control_port": port + 1,
                "exits": [e.fingerprint for j, e in enumerate(self.exits)
                          if j % len(self.socks_ports) == i],
            })

    def spheres_config(self):
        """The detector-spheres INI config that pins each sphere to its exits
        and points it at this network (the [tor] section)."""
        lines = ["# written by tests/testworld/tornet.py", "[spheres]",
                 "timeout = 120", ""]
        for s in self.spheres:
            lines += ["[sphere %s]" % s["name"],
                      "exit_nodes = " + " ".join("$" + fp for fp in s["exits"]),
                      "socks_port = %d" % s["socks"][1],
                      "control_port = %d" % s["control_port"], ""]
        lines.append("[tor]")
        opts = {}
        # No learned circuit build timeout: on loopback circuits build in
        # ~10 ms, tor learns a timeout of ~60 ms, then declares a slower
        # build timed out and retries a second later -- every sphere-probe
        # run needs a new circuit (fresh SOCKS credentials), so 1-3 s
        # outliers (measured: CIRC FAILED reason=TIMEOUT, then a new circuit
        # 0.9 s later). Real Tor's timeouts are seconds.
        for line in self.common_torrc() + ["UseMicrodescriptors 0",
                                           "LearnCircuitBuildTimeout 0",
                                           "CircuitBuildTimeout 10"]:
            k, v = line.split(" ", 1)
            opts.setdefault(k, []).append(v)
        for k, vs in opts.items():
            lines.append("%s = %s" % (k, "\n    ".join(vs)))
        return "\n".join(lines) + "\n"

    def tor_section(self):
        """The [tor] section of the spheres.conf it wrote, for a test's own
        detector-spheres config on this network."""
        with open(self.path("spheres.conf")) as f:
            text = f.read()
        return text[text.index("[tor]"):]

    def spheres_cli(self, *args, timeout=150, check=True):
        """Run detector-spheres on this network's spheres; CompletedProcess
        (text stdout/stderr). `args` e.g. ('status', '--json')."""
        cmd = [sys.executable, SPHERES_TOOL, args[0],
               "--config", self.path("spheres.conf"),
               "--state-dir", self.path("spheres")] + list(args[1:])
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        with open(self.path("detector-spheres.log"), "a") as f:
            f.write("$ %s\n%s%s(exit %d)\n" % (" ".join(cmd), p.stdout,
                                               p.stderr, p.returncode))
        if check and p.returncode != 0:
            raise TornetError("detector-spheres %s failed (exit %d):\n%s%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def _sphere_pids(self):
        """[(name, pid, torrc)] of the spheres detector-spheres has running."""
        out = []
        for s in self.spheres:
            try:
                with open(self.path("spheres", s["name"], "sphere.json")) as f:
                    rec = json.load(f)
                out.append(("sphere " + s["name"], rec["pid"], rec["torrc"]))
            except (OSError, ValueError, KeyError):
                pass
        return out

    def _start_spheres(self, deadline):
        """The spheres are started by the real controller, detector-spheres,
        which also waits (via Stem) until each one bootstraps and sees its
        exits."""
        self._plan_spheres()
        with open(self.path("spheres.conf"), "w") as f:
            f.write(self.spheres_config())
        left = max(5, int(deadline - time.monotonic()))
        rc, err = self._spheres_start_live(left)
        for s, (_, pid, _) in zip(self.spheres, self._sphere_pids()):
            s["pid"] = pid
        if rc != 0:
            raise TornetError("detector-spheres start failed (exit %s): %s"
                              % (rc, err.strip()))

    def _spheres_start_live(self, timeout):
        """`detector-spheres start`, its lines (bootstrap progress per sphere)
        shown as they come, not when it is done. Returns (exit status,
        stderr); killed (status None) if it outlives its own timeout by 30 s.
        """
        cmd = [sys.executable, SPHERES_TOOL, "start",
               "--config", self.path("spheres.conf"),
               "--state-dir", self.path("spheres"), "--timeout", str(timeout)]
        with tempfile.TemporaryFile("w+") as errf, \
                open(self.path("detector-spheres.log"), "a") as log:
            log.write("$ %s\n" % " ".join(cmd))
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=errf,
                                 text=True)
            killer = threading.Timer(timeout + 30, p.kill)
            killer.start()
            try:
                for line in p.stdout:
                    log.write(line)
                    self._say(line.rstrip("\n"))
                rc = p.wait()
            finally:
                killer.cancel()
                p.stdout.close()
                if p.poll() is None:
                    p.kill()
                    p.wait()
            rc = None if rc < 0 else rc
            errf.seek(0)
            err = errf.read()
            log.write("%s(exit %s)\n" % (err, rc))
        return rc, err

    def stop_sphere(self, name):
        """Stop one sphere's tor (as detector-spheres stop --sphere NAME)."""
        self.spheres_cli("stop", "--sphere", name)

    def start_sphere(self, name, timeout=60):
        """Start one sphere again and wait until it is usable."""
        self.spheres_cli("start", "--sphere", name, "--timeout", str(timeout),
                         timeout=timeout + 30)

    def sphere(self, name):
        return next(s for s in self.spheres if s["name"] == name)

    def sphere_running(self, name):
        return any(n == "sphere " + name and pid_state(pid) == "alive"
                   and marker in cmdline(pid)
                   for n, pid, marker in self._sphere_pids())

    def ensure_spheres(self, timeout=60):
        """Start whichever spheres a previous test stopped; wait until usable."""
        down = [s["name"] for s in self.spheres
                if not self.sphere_running(s["name"])]
        if down:
            self.spheres_cli("start", "--sphere", ",".join(down), "--timeout",
                             str(timeout), timeout=timeout + 30)

    def controller(self, name):
        """An authenticated Stem controller of a sphere (caller closes it)."""
        return _controller(self.sphere(name)["control_port"])

    def probe(self, sphere, host=SERVER_NAME, port=None, timeout=30.0):
        """SOCKS5 CONNECT host:port through a sphere, then a TLS handshake
        verified against the check server's certificate. Returns seconds."""
        port = port or self.server[2]
        t = time.monotonic()
        sock = socks5.connect(sphere["socks"], host, port, timeout=timeout)
        self._tls_handshake(sock)
        return time.monotonic() - t

    def _first_probe(self, sphere, deadline):
        # Pitfall 5: right after bootstrap an exit once refused streams for
        # ~10 s, so retry until the first probe works.
        tries, why = 0, None
        while True:
            tries += 1
            try:
                latency = self.probe(sphere, timeout=min(
                    30.0, max(1.0, deadline - time.monotonic())))
                sphere["first_probe_s"] = round(latency, 3)
                self._say("sphere %s: probe %s:%d ok in %.0f ms (try %d)" % (
                    sphere["name"], SERVER_NAME, self.server[2],
                    latency * 1000, tries))
                return
            except (OSError, socks5.SocksError, ssl.SSLError) as e:
                why = e
            if time.monotonic() > deadline:
                raise TornetError("sphere %s: no probe got through after %d "
                                  "tries: %s" % (sphere["name"], tries, why))
            time.sleep(1.0)

    # ---- control for tests -------------------------------------------
    @staticmethod
    def _write_hosts_file(path, mapping):
        with open(path + ".tmp", "w") as f:
            for name, addr in sorted(mapping.items()):
                f.write("%s %s\n" % (addr, name))
        os.replace(path + ".tmp", path)

    def _write_hosts(self):
        self._write_hosts_file(self.hosts_file, self.hosts)

    def _reload_dns(self, name, addr, mapping):
        """SIGHUP dnsmasq `name` (it re-reads its hosts file); wait until it
        answers the new mapping."""
        for n, pid, marker in self.procs:
            if n == name and marker in cmdline(pid):
                os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        for host, want in mapping.items():
            while dnsquery.query_a(host, addr) != [want]:
                if time.monotonic() > deadline:
                    raise TornetError("%s still does not say %s -> %s"
                                      % (name, host, want))
                time.sleep(0.05)

    def set_hosts(self, mapping):
        """Replace what the exits' resolver answers: {name: IPv4 address}.

        dnsmasq re-reads its hosts file on SIGHUP. Tor exits cache answers
        (see docs/tor-network.md), so give a changed mapping a fresh name.
        """
        self.hosts = dict(mapping)
        self._write_hosts()
        self._reload_dns("dnsmasq", self.dns, self.hosts)

    def _exit(self, nickname):
        for n in self.exits:
            if nickname in (n.nickname, n.fingerprint):
                return n
        raise TornetError("no exit %r (exits: %s)" % (
            nickname, ", ".join(n.nickname for n in self.exits)))

    def set_exit_hosts(self, exit, overrides):
        """Give ONE exit (nickname or fingerprint) its own view of names: the
        shared hosts plus `overrides` ({name: address}), served by a dnsmasq
        of its own on 127.0.0.(60+i):5353. This is the malicious (or
        misconfigured) exit: e.g. {"server.test": "127.0.0.3"} sends only
        that exit's sphere to a MITM on 127.0.0.3. The exit re-reads its
        resolv.conf on SIGHUP; use a name it has not resolved yet (exits
        cache answers)."""
        n = self._exit(exit)
        idx = self.exits.index(n)
        addr = ("127.0.0.%d" % (60 + idx), self.dns[1])
        hosts = self.path("dns", "hosts-" + n.nickname)
        mapping = dict(self.hosts, **overrides)
        self._write_hosts_file(hosts, mapping)
        name = "dnsmasq-" + n.nickname
        if any(p[0] == name and pid_state(p[1]) == "alive" for p in self.procs):
            self._reload_dns(name, addr, mapping)
        else:
            self._start_dns(name, addr, hosts)
        self._write_resolv_conf(n, addr)
        self._save()
        self._reload_exit_resolver(n, hosts, name, addr, mapping)

    def reset_exit_hosts(self, exit):
        """Point an exit back at the shared resolver."""
        n = self._exit(exit)
        self._write_resolv_conf(n, self.dns)
        self._reload_exit_resolver(n, self.hosts_file, "dnsmasq", self.dns,
                                   self.hosts)

    def _reload_exit_resolver(self, n, hosts_file, dns_name, addr, mapping):
        """SIGHUP the exit, then wait until a probe of a never-used name that
        only its (new) resolver knows gets through the exit's sphere."""
        self._checks = getattr(self, "_checks", 0) + 1
        # A fresh name for every attempt: an exit that answers before its
        # resolver switched caches the failure ("host unreachable"), and
        # asking the same name again would only get the cached answer.
        checks = ["check%d-%d.%s.tornet.test" % (self._checks, i, n.nickname)
                  for i in range(RESOLVER_CHECKS)]
        mapping = dict(mapping, **{c: SERVER_ADDR for c in checks})
        self._write_hosts_file(hosts_file, mapping)
        if hosts_file == self.hosts_file:
            self.hosts = {k: v for k, v in mapping.items()
                          if not k.endswith(".tornet.test")}
        self._reload_dns(dns_name, addr, mapping)
        os.kill(n.pid, signal.SIGHUP)     # tor re-reads ServerDNSResolvConfFile
        sphere = next((s for s in self.spheres if n.fingerprint in s["exits"]),
                      None)
        if sphere is None:
            return
        deadline = time.monotonic() + 20
        for check in checks:
            try:
                self.probe(sphere, host=check, timeout=10)
                return
            except (OSError, socks5.SocksError, ssl.SSLError) as e:
                if time.monotonic() > deadline or check == checks[-1]:
                    raise TornetError("exit %s did not switch resolver to "
                                      "%s:%d: %s" % ((n.nickname,) + addr + (e,)))
                time.sleep(0.5)

    def rss(self):
        """{process name: RSS in KiB} for every live process we started."""
        return {name: rss_kib(pid)
                for name, pid, _ in self.procs + self._sphere_pids()
                if pid_state(pid) == "alive"}

    # ---- teardown ----------------------------------------------------
    def _save(self):
        state = {"dir": self.dir, "procs": self.procs,
                 "nodes": [n.to_json() for n in self.nodes],
                 "spheres": self.spheres, "server": self.server,
                 "dns": self.dns, "timings": self.timings}
        tmp = self.path("state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, self.path("state.json"))

    @classmethod
    def load(cls, directory):
        with open(os.path.join(directory, "state.json")) as f:
            state = json.load(f)
        net = cls(state["dir"], quiet=True)
        net.procs = [tuple(p) for p in state["procs"]]
        net.spheres = state["spheres"]
        for s in net.spheres:
            s["socks"] = tuple(s["socks"])
        net.timings = state["timings"]
        return net

    def down(self, remove=True):
        """Stop every process started, by PID; then delete the directory.

        The spheres are stopped with detector-spheres first (that is part of
        what the tests check); whatever is left is signalled by PID."""
        if os.path.exists(self.path("spheres.conf")):
            try:
                self.spheres_cli("stop", timeout=60, check=False)
            except (OSError, subprocess.SubprocessError) as e:
                _log("detector-spheres stop: %s" % e)
        killed = stop_pids(self._sphere_pids() + list(reversed(self.procs)), GRACE,
                           reap=reap_children)
        if killed:
            _log("needed SIGKILL: %s" % ", ".join(killed))
        for p in self.popens:
            p.poll()
        reap_children()
        self.procs = []
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


class session_network:
    """Context manager for pytest session fixtures:

        @pytest.fixture(scope="session")
        def tornet(tmp_path_factory):
            with tornet.session_network() as net:
                yield net

    Teardown stops everything by PID. If the test process itself is killed,
    `tornet isolate` (its PID namespace) ends whatever is left; outside
    it, `tornet down --dir DIR` does (DIR is printed at start).

    (__OwningControllerProcess is no use here: Stem then issues TAKEOWNERSHIP
    on every controller connection, and tor exits when it closes.)
    """

    def __init__(self, **kwargs):
        self.timeout = kwargs.pop("timeout", 240.0)
        self.dir = tempfile.mkdtemp(prefix="tornet-")
        self.net = TorNetwork(self.dir, **kwargs)
        _log("network directory " + self.dir)

    def __enter__(self):
        self.net.up(timeout=self.timeout)
        return self.net

    def __exit__(self, *exc):
        self.net.down()


# ---- isolation -------------------------------------------------------
def isolate(cmd):
    """Run cmd in fresh network, mount and PID namespaces (see the docs).

    Inside: only a loopback interface (brought up), a private /run/netns for
    `ip netns add`, and a PID namespace whose end kills every process left.
    """
    # --kill-child: if unshare itself is killed (make timeout), so is PID 1,
    # and with it every process of the namespace.
    argv = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
            "--kill-child"]
    if os.geteuid() != 0:
        argv.append("--map-root-user")
    os.environ["PYTHONPATH"] = python_env()["PYTHONPATH"]
    os.execvp("unshare", argv + python_module("testworld.tornet", "_init", "--") + cmd)


def _namespace_init(cmd):
    """PID 1 of the isolated namespace: set up, run cmd, reap orphans."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    try:
        os.makedirs("/run/netns", exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs",
                        "/run/netns"], check=True)
        os.environ["DETECTOR_TORNET_NETNS"] = "1"     # 'ip netns add' is private
    except (OSError, subprocess.CalledProcessError) as e:
        _log("no private /run/netns (%s): tests needing 'ip netns' will skip" % e)
    os.environ["DETECTOR_TORNET_ISOLATED"] = "1"
    child = subprocess.Popen(cmd)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    status = None
    while True:                     # reap orphans (daemonized tor) too
        try:
            pid, st = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child.pid:
            status = st
            break
    # Leaving PID 1 makes the kernel SIGKILL whatever is left in here.
    sys.exit(os.waitstatus_to_exitcode(status) if status is not None else 1)


def probe_main(args):
    """One SOCKS5 CONNECT + verified TLS handshake; JSON result, exit 0/1."""
    host, _, port = args.socks.rpartition(":")
    t = time.monotonic()
    try:
        sock = socks5.connect((host, int(port)), args.host, args.port,
                              timeout=args.timeout)
        ctx = ssl.create_default_context(cafile=args.cafile)
        with ctx.wrap_socket(sock, server_hostname=args.name) as tls:
            version = tls.version()
        print(json.dumps({"ok": True, "tls": version,
                          "seconds": round(time.monotonic() - t, 3)}))
        return 0
    except (OSError, socks5.SocksError, ssl.SSLError) as e:
        print(json.dumps({"ok": False, "error": "%s: %s" % (
            type(e).__name__, e)}))
        return 1


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m testworld.tornet",
                                 description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status", "run"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True, help="network directory")
        if name in ("up", "run"):
            p.add_argument("--socks-ports", default=",".join(
                map(str, DEFAULT_SOCKS_PORTS)),
                help="sphere SOCKS ports; control port is each +1")
            p.add_argument("--exits", type=int, default=5)
            p.add_argument("--base-port", type=int, default=7000,
                           help="relays use base..base+150")
            p.add_argument("--server-port", type=int, default=8443)
            p.add_argument("--timeout", type=float, default=180.0)
            p.add_argument("--keep-on-failure", action="store_true",
                           help="keep the directory and its logs if up fails")
        if name == "run":
            p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("probe", help="SOCKS5 CONNECT + TLS handshake, print "
                       "JSON (used from other network namespaces)")
    p.add_argument("--socks", required=True, help="proxy HOST:PORT")
    p.add_argument("--cafile", required=True, help="CA to verify the server")
    p.add_argument("--name", default=SERVER_NAME, help="expected server name")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("host")
    p.add_argument("port", type=int)
    for name in ("isolate", "_init"):
        sub.add_parser(name).add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    command = getattr(args, "command", None)
    if command and command[0] == "--":
        command = command[1:]

    if args.cmd == "probe":
        return probe_main(args)
    if args.cmd == "isolate":
        isolate(command or ["/bin/sh"])
    if args.cmd == "_init":
        _namespace_init(command)
    if args.cmd in ("down", "status"):
        try:
            net = TorNetwork.load(args.dir)
        except OSError as e:
            _log("no network state in %s: %s" % (args.dir, e))
            return 1
        if args.cmd == "status":
            for name, pid, _ in net.procs + net._sphere_pids():
                print("%-24s pid %-7d %s" % (name, pid, pid_state(pid)))
            print("socks: " + net.socks_addresses)
            return 0
        net.down()
        _log("stopped; removed %s" % args.dir)
        return 0

    net = TorNetwork(args.dir, [int(p) for p in args.socks_ports.split(",")],
                     n_exits=args.exits, base_port=args.base_port,
                     server_port=args.server_port)
    try:
        net.up(timeout=args.timeout, keep_on_failure=args.keep_on_failure)
    except TornetError as e:
        _log("error: %s" % e)
        return 1
    print("socks: " + net.socks_addresses)
    if args.cmd == "up":
        return 0
    try:
        return subprocess.call(command or ["/bin/true"])
    finally:
        net.down()


if __name__ == "__main__":
    sys.exit(main())
