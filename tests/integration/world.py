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
"""

import atexit
import ctypes
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

HOST = "server.test"
REAL_ADDR = "127.0.0.2"      # the real servers
MITM_ADDR = "127.0.0.3"      # the TLS-terminating MITM (rogue certificate)
REISSUE_ADDR = "127.0.0.4"   # the real key in a re-issued certificate
BROKEN_ADDR = "127.0.0.5"    # servers that are not TLS servers (direct path)
SPHERE_ADDR = "127.0.0.1"    # spheres and misbehaving listeners

START_TIMEOUT = 10.0         # seconds to wait for any one service to come up
STOP_GRACE = 2.0             # seconds between SIGTERM and SIGKILL
CMD_TIMEOUT = 30.0           # seconds for any one openssl CLI command
SLOW_LINK_DELAY = 0.4        # seconds the slow link holds each connection


class WorldError(RuntimeError):
    """The world could not be built; the message says which part and why."""


# --------------------------------------------------------------------------
# Hashes, computed with the openssl CLI (independent of the code under test)


def _run(argv, data=None, cwd=None):
    """Run a short command; return stdout bytes or raise WorldError."""
    try:
        p = subprocess.run(argv, input=data, cwd=cwd, capture_output=True,
                           timeout=CMD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise WorldError("%s: timed out after %ss" % (" ".join(argv), CMD_TIMEOUT))
    if p.returncode != 0:
        raise WorldError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                              p.stderr.decode(errors="replace").strip()))
    return p.stdout


def pem_to_der(pem):
    """DER bytes of the first certificate in a PEM text (bytes or str)."""
    if isinstance(pem, str):
        pem = pem.encode()
    return _run(["openssl", "x509", "-outform", "der"], data=pem)


def der_to_pem(der):
    return _run(["openssl", "x509", "-inform", "der", "-outform", "pem"], data=der).decode()


def spki_sha256_der(der):
    """Hex SHA-256 of a certificate's SubjectPublicKeyInfo, as in HPKP:
    openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256."""
    pub = _run(["openssl", "x509", "-inform", "der", "-pubkey", "-noout"], data=der)
    spki = _run(["openssl", "pkey", "-pubin", "-outform", "der"], data=pub)
    return hashlib.sha256(spki).hexdigest()


def cert_sha256_der(der):
    """Hex SHA-256 of a certificate's DER encoding."""
    return hashlib.sha256(der).hexdigest()


def split_pem(text):
    """The PEM certificate blocks in a text, in order."""
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                      text, re.S)


class Cert:
    """A certificate and key on disk, with the hashes a test compares."""

    def __init__(self, name, crt, key):
        self.name, self.crt, self.key = name, crt, key
        with open(crt) as f:
            self.pem = f.read()
        self.der = pem_to_der(self.pem)
        self.spki_sha256 = spki_sha256_der(self.der)
        self.cert_sha256 = cert_sha256_der(self.der)

    def __repr__(self):
        return "<Cert %s spki=%s...>" % (self.name, self.spki_sha256[:16])


class Pki:
    """The test CA and every certificate the world serves.  `names`: more
    DNS names (besides HOST) in the server.test certificates."""

    def __init__(self, directory, names=()):
        self.dir = directory
        self.names = list(names)

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _newkey(self, name, kind):
        key = self._path(name + ".key")
        if kind == "rsa":
            _run(["openssl", "genpkey", "-algorithm", "RSA",
                  "-pkeyopt", "rsa_keygen_bits:2048", "-out", key])
        else:
            _run(["openssl", "genpkey", "-algorithm", "EC",
                  "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key])
        os.chmod(key, 0o600)
        return key

    def _issue(self, name, cn, key):
        """A CA-signed leaf for cn (SAN DNS:cn, plus self.names when cn is
        HOST) over an existing key."""
        csr, crt, ext = (self._path(name + s) for s in (".csr", ".crt", ".ext"))
        sans = [cn] + (self.names if cn == HOST else [])
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % ",".join("DNS:" + n for n in sans))
        _run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr])
        _run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca_crt,
              "-CAkey", self.ca_key, "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
              "-days", "2", "-sha256", "-extfile", ext, "-out", crt])
        for p in (csr, ext):
            os.unlink(p)
        os.chmod(crt, 0o600)
        return Cert(name, crt, key)

    def build(self):
        self.ca_key = self._newkey("ca", "ec")
        self.ca_crt = self._path("ca.crt")
        _run(["openssl", "req", "-x509", "-new", "-key", self.ca_key, "-sha256",
              "-days", "2", "-subj", "/CN=DetecTor Test CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-out", self.ca_crt])
        os.chmod(self.ca_crt, 0o600)
        self.ca = Cert("ca", self.ca_crt, self.ca_key)
        real_key = self._newkey("real", "ec")
        self.real = self._issue("real", HOST, real_key)
        # Same key, second certificate: what a routine renewal looks like.
        self.reissued = self._issue("reissued", HOST, real_key)
        # A compelled CA: valid chain, same name, a key the attacker holds.
        # RSA, so the probes see both key types.
        self.rogue = self._issue("rogue", HOST, self._newkey("rogue", "rsa"))
        self.default = self._issue("default", "default.test", self._newkey("default", "ec"))
        return self

    def new_key(self, name):
        """A CA-signed certificate for server.test over a fresh EC key: what
        the server presents after a key rotation."""
        return self._issue(name, HOST, self._newkey(name, "ec"))


# --------------------------------------------------------------------------
# Ports and readiness


_taken_ports = set()
_taken_lock = threading.Lock()


def free_port(*addrs):
    """A TCP port currently free on every address in addrs (never one this
    process has already handed out)."""
    addrs = addrs or (SPHERE_ADDR,)
    for _ in range(200):
        socks = []
        try:
            s = socket.socket()
            socks.append(s)
            s.bind((addrs[0], 0))
            port = s.getsockname()[1]
            for a in addrs[1:]:
                t = socket.socket()
                socks.append(t)
                t.bind((a, port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        with _taken_lock:
            if port not in _taken_ports:
                _taken_ports.add(port)
                return port
    raise WorldError("no free TCP port on %s" % ", ".join(addrs))


def wait_tcp(addr, port, proc=None, timeout=START_TIMEOUT):
    """Wait until addr:port accepts TCP connections."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise WorldError("%s exited while starting:\n%s" % (proc.name, proc.log()))
        try:
            socket.create_connection((addr, port), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise WorldError("%s:%d not accepting after %ss: %s" % (addr, port, timeout, e))
            time.sleep(0.05)


def tls_peer_cert(sock_or_addr, sni=HOST, timeout=5.0, min_version=None, max_version=None):
    """Do a TLS handshake (no verification) and return the peer's leaf
    certificate as DER.  sock_or_addr is a connected socket or (addr, port)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    sock = sock_or_addr
    if isinstance(sock_or_addr, tuple):
        sock = socket.create_connection(sock_or_addr, timeout=timeout)
    sock.settimeout(timeout)
    try:
        with ctx.wrap_socket(sock, server_hostname=sni) as tls:
            return tls.getpeercert(binary_form=True), tls.version()
    finally:
        sock.close()


def wait_tls(addr, port, proc=None, sni=HOST, timeout=START_TIMEOUT):
    """Wait until addr:port completes a TLS handshake."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise WorldError("%s exited while starting:\n%s" % (proc.name, proc.log()))
        try:
            return tls_peer_cert((addr, port), sni=sni, timeout=2)
        except (OSError, ssl.SSLError) as e:
            if time.monotonic() > deadline:
                raise WorldError("%s:%d: no TLS handshake after %ss: %s" % (addr, port, timeout, e))
            time.sleep(0.05)


def socks5_connect(sphere, host, port, timeout=5.0):
    """A minimal RFC 1928 client (no auth, CONNECT by name, ATYP 3), used to
    check the world independently of DetecTor.  Returns the connected socket."""
    a, p = sphere.rsplit(":", 1)
    s = socket.create_connection((a, int(p)), timeout=timeout)
    try:
        s.sendall(b"\x05\x01\x00")
        if _recv_exact(s, 2) != b"\x05\x00":
            raise WorldError("sphere %s refused the no-auth method" % sphere)
        name = host.encode()
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port))
        ver, rep, _, atyp = _recv_exact(s, 4)
        if ver != 5 or rep != 0:
            raise WorldError("sphere %s: CONNECT %s:%d failed, reply %d" % (sphere, host, port, rep))
        _recv_exact(s, {1: 4, 4: 16}.get(atyp) or _recv_exact(s, 1)[0])
        _recv_exact(s, 2)
        return s
    except BaseException:
        s.close()
        raise


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise WorldError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


# --------------------------------------------------------------------------
# Processes we start


def _die_with_parent():
    """In the child before exec: get SIGTERM if the test process dies, even
    by SIGKILL, so no server outlives a crashed run (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _group_members(pgid):
    """PIDs of the live (not zombie) processes in process group pgid."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


class Process:
    """One child process, its output in a log file, ended by PID."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log = open(log_path, "ab")
        # Own session: its process group id is its PID, so stop() can end the
        # children it forks (socat) by that id, and a ^C to the test run does
        # not reach it before we do.
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_die_with_parent)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, grace=STOP_GRACE):
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                    self.popen.wait(grace)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        # Whatever is left in the process group we created: socat's
        # per-connection children.  Zombies (whose new parent does not reap
        # them) do not count.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _group_members(self.pid):
                break
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            end = time.monotonic() + grace
            while _group_members(self.pid) and time.monotonic() < end:
                time.sleep(0.05)
        self._log.close()


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


# --------------------------------------------------------------------------
# Misbehaving listeners (python threads)


class _TcpService:
    """A listener on a free loopback port, served by daemon threads and shut
    by stop(): listener closed, every accepted connection closed."""

    kind = "service"

    def __init__(self, addr=SPHERE_ADDR, port=None):
        self.addr = addr
        self.port = port or free_port(addr)
        self.address = "%s:%d" % (addr, self.port)
        self.connections = 0
        self._stop = threading.Event()
        self._conns = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((addr, self.port))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True,
                                          name="%s %s" % (self.kind, self.address))]
        self._threads[0].start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            self.handle(conn)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def handle(self, conn):
        raise NotImplementedError

    def stop(self):
        self._stop.set()
        self._sock.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        for t in threads:
            t.join(2)


class Blackhole(_TcpService):
    """Accepts TCP connections and never sends a byte."""
    kind = "blackhole"

    def handle(self, conn):
        pass       # held open until stop()


class Garbage(_TcpService):
    """Reads the SOCKS greeting and answers like an HTTP server would."""
    kind = "garbage"
    REPLY = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"

    def handle(self, conn):
        self._spawn(self._answer, conn)

    def _answer(self, conn):
        try:
            conn.settimeout(5)
            conn.recv(512)
            conn.sendall(self.REPLY)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(512)
        except OSError:
            pass


class SlowLink(_TcpService):
    """A relay that holds each connection for `delay` seconds before
    connecting to upstream and copying bytes both ways: a slow network path
    in front of a real server."""
    kind = "slow-link"
    LIFETIME = 30.0

    def __init__(self, addr, upstream, delay=SLOW_LINK_DELAY, port=None):
        self.upstream, self.delay = upstream, delay
        super().__init__(addr, port)

    def handle(self, conn):
        self._spawn(self._relay, conn)

    def _relay(self, conn):
        up = None
        try:
            if self._stop.wait(self.delay):
                return
            up = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._conns.append(up)
            end = time.monotonic() + self.LIFETIME
            peer = {conn: up, up: conn}
            while not self._stop.is_set() and time.monotonic() < end:
                r, _, _ = select.select([conn, up], [], [], 0.2)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    peer[s].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for s in (conn, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass


class TorLikeSphere(_TcpService):
    """A SOCKS5 sphere that behaves like Tor's SocksPort where it matters to
    DetecTor and records what each client sent:

      - picks username/password (RFC 1929) whenever the client offers it, as
        Tor does, and accepts any credentials (IsolateSOCKSAuth);
      - resolves names from its own map only; an unknown name gets reply
        0x04 (host unreachable), an address (ATYP 1/4) is refused with 0x02;
      - relays to the target and keeps the first 64 KiB the client sent
        through the tunnel, so a test can read the TLS record types.

    `sessions` is a list of dicts: methods, username, password, atyp, host,
    port, reply, upstream (bytes the client sent through the tunnel)."""
    kind = "tor-like"
    KEEP = 65536

    def __init__(self, hosts):
        self.hosts = dict(hosts)
        self.sessions = []
        super().__init__()

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _serve(self, conn):
        rec = {"methods": None, "username": None, "password": None, "atyp": None,
               "host": None, "port": None, "reply": None, "upstream": b""}
        with self._lock:
            self.sessions.append(rec)
        up = None
        try:
            conn.settimeout(10)
            ver, n = _recv_exact(conn, 2)
            rec["methods"] = list(_recv_exact(conn, n))
            if ver != 5:
                return
            if 2 in rec["methods"]:
                conn.sendall(b"\x05\x02")
                sub, ulen = _recv_exact(conn, 2)
                rec["username"] = _recv_exact(conn, ulen).decode(errors="replace")
                plen = _recv_exact(conn, 1)[0]
                rec["password"] = _recv_exact(conn, plen).decode(errors="replace")
                conn.sendall(b"\x01\x00")
            elif 0 in rec["methods"]:
                conn.sendall(b"\x05\x00")
            else:
                conn.sendall(b"\x05\xff")
                return
            ver, cmd, _, atyp = _recv_exact(conn, 4)
            rec["atyp"] = atyp
            if atyp == 3:
                rec["host"] = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode(errors="replace")
            elif atyp == 1:
                rec["host"] = socket.inet_ntop(socket.AF_INET, _recv_exact(conn, 4))
            elif atyp == 4:
                rec["host"] = socket.inet_ntop(socket.AF_INET6, _recv_exact(conn, 16))
            rec["port"] = struct.unpack(">H", _recv_exact(conn, 2))[0]
            addr = self.hosts.get(rec["host"]) if atyp == 3 else None
            if cmd != 1:
                rec["reply"] = 0x07
            elif atyp != 3:
                rec["reply"] = 0x02
            elif addr is None:
                rec["reply"] = 0x04
            else:
                try:
                    up = socket.create_connection((addr, rec["port"]), timeout=5)
                    with self._lock:
                        self._conns.append(up)
                    rec["reply"] = 0x00
                except ConnectionRefusedError:
                    rec["reply"] = 0x05
                except OSError:
                    rec["reply"] = 0x01
            conn.sendall(bytes([5, rec["reply"], 0, 1, 0, 0, 0, 0, 0, 0]))
            if up is None:
                return
            end = time.monotonic() + 30
            while not self._stop.is_set() and time.monotonic() < end:
                r, _, _ = select.select([conn, up], [], [], 0.2)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is conn and len(rec["upstream"]) < self.KEEP:
                        rec["upstream"] += data[:self.KEEP - len(rec["upstream"])]
                    (up if s is conn else conn).sendall(data)
        except (OSError, ValueError, WorldError):
            pass
        finally:
            for s in (conn, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def sessions_since(self, mark):
        with self._lock:
            return list(self.sessions[mark:])


def tls_record_types(data):
    """The content types of the TLS records in a byte stream, in order
    (22 handshake, 20 change_cipher_spec, 21 alert, 23 application_data)."""
    types, i = [], 0
    while i + 5 <= len(data):
        types.append(data[i])
        i += 5 + struct.unpack(">H", data[i + 3:i + 5])[0]
    return types


# --------------------------------------------------------------------------
# The world


def _exit_on_signals():
    """Turn SIGTERM/SIGHUP into SystemExit so finally-blocks and atexit run
    and the world is torn down; only where nobody else handles them."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, handler)


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
        _exit_on_signals()
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

            self.torlike = self._service(TorLikeSphere({HOST: REAL_ADDR}))
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
        """socat: TLS in with the rogue certificate, TLS out to the real server
        (SNI server.test, no verification), one child per connection."""
        proc = Process("socat " + name,
                       ["socat",
                        "OPENSSL-LISTEN:%d,bind=%s,reuseaddr,fork,cert=%s,key=%s,verify=0"
                        % (listen_port, MITM_ADDR, self.rogue.crt, self.rogue.key),
                        "OPENSSL:%s:%d,verify=0,snihost=%s" % (REAL_ADDR, upstream_port, HOST)],
                       os.path.join(self.dir, "socat-%s.log" % name))
        self._procs.append(proc)
        wait_tls(MITM_ADDR, listen_port, proc)
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
