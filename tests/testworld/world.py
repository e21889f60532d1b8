"""The loopback test world: real TLS servers, a real MITM, real SOCKS5 spheres.

Everything DetecTor's integration tests and `make demo` need, built from real
parts on loopback only:

  PKI        a test CA (openssl CLI); a certificate for `server.test`; a
             *rogue* certificate for the same name from the same CA with a
             different key (a compelled CA); the real key re-issued in a second
             certificate (same key, different certificate); a "default"
             certificate for another name (the SNI test).
  servers    `openssl s_server` on 127.0.0.2: TLS 1.2+1.3, TLS 1.2 only,
             TLS 1.3 only, and one that shows the real certificate only when
             the client sends SNI server.test.
  MITM       socat on 127.0.0.3, terminating TLS with the rogue certificate
             and relaying to the real server (a TLS-intercepting proxy).
  spheres    Debian's microsocks, each in its own mount namespace with a
             private /etc/hosts and /etc/nsswitch.conf (files only, no DNS), so
             each sphere resolves `server.test` itself: honest spheres to
             127.0.0.2, the "lying exit" to 127.0.0.3 (the MITM), the
             "key-match" sphere to 127.0.0.4 (the re-issued certificate).
  misfits    python listeners on 127.0.0.1: a blackhole (accepts, never
             answers), a garbage answerer, refused ports (nothing listening),
             a slow link (a relay that delays each connection), and a
             Tor-like SOCKS5 sphere that records what clients send it
             (authentication offered, credentials, target, TLS records);
             on 127.0.0.5 a silent and a plain-HTTP "server.test" for the
             direct path.

Every port is picked free at start; every wait is bounded; every process is
ended by its PID (SIGTERM, then SIGKILL after a grace period, then the same
for anything left in its own process group, e.g. socat's forked children);
the temporary directory is removed.  We need root (or CAP_SYS_ADMIN) for the
mount namespaces.

Use:

    with World() as w:
        w.port, w.real.spki_sha256, w.honest[0].address, ...

or World(minimal=True) for just the PKI, the main server, the MITM and the
five honest spheres.  World(spheres=False) builds no microsocks spheres (and
needs no root): for tests whose spheres are real Tor clients
(tests/tornet), where the exits, not mount namespaces, resolve the names.
World(names=[...]) adds names to the server certificates (real, re-issued,
rogue): the Tor tests need a fresh name per scenario, because Tor exits
cache what they resolved.

The parts come from the package's modules (tls: the PKI; mitm: the socat
MITM; socks5: the Tor-like sphere; faults and relay: the misfits and the
slow link; processes: how every process is started and stopped); this
module assembles them, and adds the microsocks spheres (Sphere).  By hand:
`cd tests && python3 -m testworld.world [--minimal]` prints what is where.
"""

import atexit
import os
import re
import shutil
import signal
import tempfile

from . import WorldError
from .faults import Blackhole, Garbage
from .mitm import socat_mitm
from .ports import (HOST, MITM_ADDR, REAL_ADDR, REISSUE_ADDR, BROKEN_ADDR,
                    SPHERE_ADDR, free_port, wait_tcp, wait_tls)
from .processes import Process, exit_on_signals
from .relay import SlowLink
from .socks5 import Socks5Server
from .tls import Pki


class Sphere:
    """A real SOCKS5 proxy (microsocks) that resolves names from its own
    private hosts file, in its own mount namespace."""

    def __init__(self, world, name, hosts):
        self.name = name
        self.port = free_port(SPHERE_ADDR)
        self.address = "%s:%d" % (SPHERE_ADDR, self.port)
        d = os.path.join(world.dir, "sphere-" + name)
        os.mkdir(d, 0o700)
        self.hosts_file = os.path.join(d, "hosts")
        with open(self.hosts_file, "w") as f:
            f.write("127.0.0.1\tlocalhost\n")
            for n, a in hosts.items():
                f.write("%s\t%s\n" % (a, n))
        nss = os.path.join(d, "nsswitch.conf")
        with open(nss, "w") as f:
            f.write("hosts: files\n")      # no DNS: a name not in hosts fails fast
        script = ('mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/nsswitch.conf '
                  '&& exec microsocks -i "$3" -p "$4"')
        self.proc = Process("sphere " + name,
                            ["unshare", "--mount", "--propagation", "private",
                             "sh", "-c", script, "sh", self.hosts_file, nss,
                             SPHERE_ADDR, str(self.port)],
                            os.path.join(d, "microsocks.log"))
        world._procs.append(self.proc)

    def wait(self):
        wait_tcp(SPHERE_ADDR, self.port, self.proc)

    def log_size(self):
        """A marker: pass it to targets() to see only later connections."""
        try:
            return os.path.getsize(self.proc.log_path)
        except OSError:
            return 0

    def targets(self, since=0):
        """The (host, port) targets microsocks logged as connected to."""
        with open(self.proc.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [(h, int(p)) for h, p in re.findall(r"connected to (\S+):(\d+)", text)]

    def __repr__(self):
        return "<Sphere %s %s>" % (self.name, self.address)


class World:
    """The whole loopback world.  start() builds it, stop() tears it down
    (idempotent, also run at interpreter exit)."""

    def __init__(self, minimal=False, spheres=True, names=()):
        self.minimal = minimal
        self.with_spheres = spheres
        self.names = list(names)
        self.host = HOST
        self.dir = None
        self._procs = []
        self._services = []
        self._stopped = False

    # -- lifecycle

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="detector-world-")
        atexit.register(self.stop)
        exit_on_signals()
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        for svc in self._services:
            svc.stop()
        for p in reversed(self._procs):
            p.stop()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _check_tools(self):
        tools = ["openssl", "socat"]
        if self.with_spheres:
            tools += ["microsocks", "unshare", "mount"]
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            raise WorldError("missing tools: %s (run `make deps`)" % ", ".join(missing))
        if self.with_spheres and os.geteuid() != 0:
            raise WorldError("the sphere mount namespaces need root "
                             "(unshare -m, mount --bind)")

    def _build(self):
        self._check_tools()
        pki_dir = os.path.join(self.dir, "pki")
        os.mkdir(pki_dir, 0o700)
        self.pki = Pki(pki_dir, self.names).build()
        self.ca, self.real, self.rogue = self.pki.ca, self.pki.real, self.pki.rogue
        self.reissued, self.default = self.pki.reissued, self.pki.default

        # The main name server.test:port on three addresses: the real server,
        # the MITM in front of it, and the re-issued certificate.
        self.port = free_port(REAL_ADDR, MITM_ADDR, REISSUE_ADDR)
        self.server = self._s_server("server", REAL_ADDR, self.port, self.real)
        self.mitm = self._mitm("mitm", self.port, self.port)

        # server.test:cport (TLS 1.2+1.3) and :cport12 (TLS 1.2 only): real
        # servers that serve connections concurrently (a forking socat), with
        # a MITM in front of each.  An application whose handshake DetecTor
        # holds open must not keep the spheres' probes from the server, as a
        # one-at-a-time s_server would.
        self.cport = free_port(REAL_ADDR, MITM_ADDR)
        self._socat_server("concurrent", self.cport, self.real)
        self.cmitm = self._mitm("mitm-concurrent", self.cport, self.cport)
        self.cport12 = free_port(REAL_ADDR, MITM_ADDR)
        self._socat_server("concurrent-tls12", self.cport12, self.real,
                           ",openssl-max-proto-version=TLS1.2")
        self.cmitm12 = self._mitm("mitm-concurrent-tls12", self.cport12, self.cport12)

        self.honest = []
        if self.with_spheres:
            self.honest = [Sphere(self, "honest%d" % i, {HOST: REAL_ADDR})
                           for i in range(5)]
        spheres = list(self.honest)

        if not self.minimal:
            self.reissue_server = self._s_server("reissued", REISSUE_ADDR, self.port,
                                                 self.reissued)
            self.tls12_port = free_port(REAL_ADDR)
            self._s_server("tls12", REAL_ADDR, self.tls12_port, self.real, ["-tls1_2"])
            self.tls13_port = free_port(REAL_ADDR)
            self._s_server("tls13", REAL_ADDR, self.tls13_port, self.real, ["-tls1_3"])
            # Real certificate only for SNI server.test, "default" otherwise.
            self.sni_port = free_port(REAL_ADDR)
            self._s_server("sni", REAL_ADDR, self.sni_port, self.default,
                           ["-servername", HOST, "-cert2", self.real.crt,
                            "-key2", self.real.key])
            # server.test:slow_port: the honest path is a slow link to the real
            # server, the MITM's path is fast.  A lying exit's answer then
            # arrives first, so the engine must report it (mismatch) and still
            # not let it flip the verdict.
            self.slow_port = free_port(REAL_ADDR, MITM_ADDR)
            self._services.append(SlowLink(REAL_ADDR, (REAL_ADDR, self.port),
                                           port=self.slow_port))
            self.slow_mitm = self._mitm("mitm-slowport", self.slow_port, self.port)
            wait_tls(REAL_ADDR, self.slow_port)

            if self.with_spheres:
                self.lying = Sphere(self, "lying", {HOST: MITM_ADDR})
                self.keymatch = Sphere(self, "keymatch", {HOST: REISSUE_ADDR})
                spheres += [self.lying, self.keymatch]

            self.torlike = self._service(Socks5Server({HOST: REAL_ADDR}))
            self.blackholes = [self._service(Blackhole()) for _ in range(5)]
            self.garbage = [self._service(Garbage()) for _ in range(2)]
            self.refused = ["%s:%d" % (SPHERE_ADDR, free_port(SPHERE_ADDR)) for _ in range(5)]
            # For the direct path: a "server" that never answers the
            # ClientHello, and one that answers it in plain HTTP.
            self.silent_server = self._service(Blackhole(BROKEN_ADDR))
            self.http_server = self._service(Garbage(BROKEN_ADDR))

        for s in spheres:
            s.wait()
        self.spheres = spheres

    def _service(self, svc):
        self._services.append(svc)
        return svc

    def _s_server(self, name, addr, port, cert, extra=()):
        proc = Process("s_server " + name,
                       ["openssl", "s_server", "-accept", "%s:%d" % (addr, port),
                        "-cert", cert.crt, "-key", cert.key, "-www", *extra],
                       os.path.join(self.dir, "s_server-%s.log" % name))
        self._procs.append(proc)
        wait_tls(addr, port, proc)
        return proc

    def _socat_server(self, name, port, cert, options=""):
        """A forking TLS server on REAL_ADDR:port: reads 16 bytes (the
        first line of "GET / HTTP/1.0"), answers "hello", closes."""
        answer = "echo hello"   # no ',' or ':': socat would parse them
        proc = Process("socat server " + name,
                       ["socat",
                        "OPENSSL-LISTEN:%d,bind=%s,reuseaddr,fork,cert=%s,key=%s,verify=0%s"
                        % (port, REAL_ADDR, cert.crt, cert.key, options),
                        "SYSTEM:head -c 16 >/dev/null && %s" % answer],
                       os.path.join(self.dir, "socat-server-%s.log" % name))
        self._procs.append(proc)
        wait_tls(REAL_ADDR, port, proc)
        return proc

    def _mitm(self, name, listen_port, upstream_port):
        """The MITM (mitm.socat_mitm) on MITM_ADDR:listen_port in front of
        the real server's upstream_port."""
        proc = socat_mitm(name, self.dir, listen_port, upstream_port, self.rogue)
        self._procs.append(proc)
        return proc

    # -- helpers for tests

    def tls_server(self, name, cert, port=None, addr=REAL_ADDR):
        """One more openssl s_server presenting `cert` on addr:port (a free
        port if None), up when this returns.  Returns the Process: stop() it
        to take the server down early (a key rotation); World.stop() ends
        it otherwise.  Its .port is the port."""
        port = port or free_port(addr)
        proc = self._s_server(name, addr, port, cert)
        proc.port = port
        return proc

    def sphere_list(self, *spheres):
        """The --spheres value for a list of Sphere objects or address strings."""
        return ",".join(s if isinstance(s, str) else s.address for s in spheres)

    def resolve(self, addr, port=None):
        """The --resolve value sending the direct connection for
        server.test:port to addr."""
        return "%s:%d:%s" % (HOST, port or self.port, addr)


if __name__ == "__main__":
    # Bring the world up and print what is where, until ^C.
    import sys
    with World(minimal="--minimal" in sys.argv) as w:
        print("world in", w.dir)
        print("server.test port", w.port, "real spki", w.real.spki_sha256,
              "rogue spki", w.rogue.spki_sha256)
        print("spheres", w.sphere_list(*w.spheres))
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
