"""Real STARTTLS servers on loopback, and a STARTTLS-aware MITM.

Debian's own servers, each with its own configuration in a temporary
directory, in the foreground, ended by PID, presenting the world's real
server.test certificate on 127.0.0.2 (where the world's honest spheres
resolve server.test):

  smtp    postfix (master as root, as Postfix requires; smtpd drops to the
          postfix user); a second smtpd on smtp_plain offers no STARTTLS
  imap,   dovecot (master as root, login processes as dovenull)
  pop3
  xmpp    prosody, as the prosody user
  ldap    slapd, as the openldap user

On 127.0.0.3, at the same port (where the world's lying sphere resolves
server.test), a Python MITM per protocol speaks the plaintext preamble
itself, then terminates TLS with the world's rogue certificate and relays
to the real server (doing the preamble and TLS there as a client).  It is
the attacker, not the component under test.

Readiness and the independent check use a small Python STARTTLS client
(starttls_peer_cert), not DetecTor.
"""

import os
import pwd
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time

from world import (HOST, MITM_ADDR, REAL_ADDR, START_TIMEOUT, Process,
                   WorldError, _TcpService, free_port, wait_tcp)

PROTOCOLS = ("smtp", "imap", "pop3", "xmpp", "ldap")
IO_TIMEOUT = 5.0            # seconds for any one read in a preamble
LINE_MAX = 4096

XMPP_HEADER = ("<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
               "xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams'>")
XMPP_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
LDAP_STARTTLS = (bytes.fromhex("301d02010177188016") + b"1.3.6.1.4.1.1466.20037")
LDAP_SUCCESS = bytes.fromhex("300c02010178070a010004000400")


# --------------------------------------------------------------------------
# The preambles in Python: client side (readiness, the MITM's upstream) and
# server side (the MITM's face to its victim).


def _read_line(sock):
    buf = b""
    while not buf.endswith(b"\r\n"):
        b = sock.recv(1)
        if not b:
            raise WorldError("connection closed after %r" % buf)
        buf += b
        if len(buf) > LINE_MAX:
            raise WorldError("line too long: %r" % buf[:80])
    return buf.decode(errors="replace")


def _read_until(sock, marker):
    buf = b""
    while marker not in buf:
        b = sock.recv(4096)
        if not b:
            raise WorldError("connection closed after %r" % buf[-200:])
        buf += b
        if len(buf) > 65536:
            raise WorldError("no %r in 64 KiB" % marker)
    return buf


def _smtp_reply(sock):
    lines = [_read_line(sock)]
    while lines[-1][3:4] == "-":
        lines.append(_read_line(sock))
    return lines


def _ber_message(sock):
    head = b""
    while len(head) < 2:
        b = sock.recv(2 - len(head))
        if not b:
            raise WorldError("LDAP connection closed")
        head += b
    n = head[1]
    if n & 0x80:
        ext = b""
        while len(ext) < (n & 0x7f):
            ext += sock.recv((n & 0x7f) - len(ext))
        head += ext
        n = int.from_bytes(ext, "big")
    body = b""
    while len(body) < n:
        b = sock.recv(n - len(body))
        if not b:
            raise WorldError("LDAP connection closed")
        body += b
    return head + body


def starttls_client(proto, sock, host=HOST):
    """Run proto's preamble as a client on a connected socket; raise
    WorldError unless the server agrees to start TLS."""
    if proto == "smtp":
        if not _smtp_reply(sock)[0].startswith("220"):
            raise WorldError("SMTP greeting refused")
        sock.sendall(b"EHLO client.test\r\n")
        ehlo = _smtp_reply(sock)
        if not any(l[4:12].upper() == "STARTTLS" for l in ehlo[1:]):
            raise WorldError("SMTP server offers no STARTTLS: %r" % ehlo)
        sock.sendall(b"STARTTLS\r\n")
        reply = _smtp_reply(sock)
        if not reply[0].startswith("220"):
            raise WorldError("SMTP STARTTLS refused: %r" % reply)
    elif proto == "imap":
        if not _read_line(sock).startswith("* OK"):
            raise WorldError("IMAP greeting refused")
        sock.sendall(b"t1 STARTTLS\r\n")
        while True:
            line = _read_line(sock)
            if line.startswith("t1 "):
                break
        if not line.startswith("t1 OK"):
            raise WorldError("IMAP STARTTLS refused: %r" % line)
    elif proto == "pop3":
        if not _read_line(sock).startswith("+OK"):
            raise WorldError("POP3 greeting refused")
        sock.sendall(b"STLS\r\n")
        line = _read_line(sock)
        if not line.startswith("+OK"):
            raise WorldError("POP3 STLS refused: %r" % line)
    elif proto == "xmpp":
        sock.sendall((XMPP_HEADER % host).encode())
        features = _read_until(sock, b"</stream:features>")
        if XMPP_TLS.encode() not in features:
            raise WorldError("XMPP server offers no STARTTLS: %r" % features)
        sock.sendall(("<starttls xmlns='%s'/>" % XMPP_TLS).encode())
        if b"<proceed" not in _read_until(sock, b"/>"):
            raise WorldError("XMPP STARTTLS refused")
    elif proto == "ldap":
        sock.sendall(LDAP_STARTTLS)
        reply = _ber_message(sock)
        if reply[:2] != b"\x30" + bytes([len(reply) - 2]) or \
                b"\x0a\x01\x00" not in reply:
            raise WorldError("LDAP StartTLS refused: %s" % reply.hex())
    else:
        raise ValueError(proto)


def starttls_server(proto, sock):
    """Play the server's side of proto's preamble (canned answers) until the
    client may start TLS.  The MITM's face."""
    if proto == "smtp":
        sock.sendall(b"220 server.test ESMTP\r\n")
        _read_line(sock)                                 # EHLO
        sock.sendall(b"250-server.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        _read_line(sock)                                 # STARTTLS
        sock.sendall(b"220 2.0.0 Ready to start TLS\r\n")
    elif proto == "imap":
        sock.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready.\r\n")
        tag = _read_line(sock).split(" ", 1)[0]
        sock.sendall(tag.encode() + b" OK Begin TLS negotiation now.\r\n")
    elif proto == "pop3":
        sock.sendall(b"+OK ready.\r\n")
        _read_line(sock)
        sock.sendall(b"+OK Begin TLS negotiation now.\r\n")
    elif proto == "xmpp":
        _read_until(sock, b"xmlns:stream='http://etherx.jabber.org/streams'>")
        sock.sendall(("<?xml version='1.0'?><stream:stream "
                      "xmlns='jabber:client' xmlns:stream='http://etherx."
                      "jabber.org/streams' version='1.0' from='server.test' "
                      "id='mitm'><stream:features><starttls xmlns='%s'>"
                      "<required/></starttls></stream:features>"
                      % XMPP_TLS).encode())
        _read_until(sock, b"/>")
        sock.sendall(("<proceed xmlns='%s'/>" % XMPP_TLS).encode())
    elif proto == "ldap":
        _ber_message(sock)
        sock.sendall(LDAP_SUCCESS)
    else:
        raise ValueError(proto)


def starttls_peer_cert(addr, port, proto, timeout=IO_TIMEOUT):
    """The leaf certificate (DER) the server at addr:port shows after proto's
    preamble, seen with Python's ssl (no verification)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection((addr, port), timeout=timeout)
    try:
        sock.settimeout(timeout)
        starttls_client(proto, sock)
        with ctx.wrap_socket(sock, server_hostname=HOST) as tls:
            return tls.getpeercert(binary_form=True)
    finally:
        sock.close()


def wait_starttls(addr, port, proto, proc=None, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise WorldError("%s exited while starting:\n%s" % (proc.name, proc.log()))
        try:
            return starttls_peer_cert(addr, port, proto, timeout=2)
        except (OSError, ssl.SSLError, WorldError) as e:
            if time.monotonic() > deadline:
                raise WorldError("%s:%d: no %s STARTTLS handshake after %ss: %s%s"
                                 % (addr, port, proto, timeout, e,
                                    "\n" + proc.log() if proc else ""))
            time.sleep(0.1)


# --------------------------------------------------------------------------
# The MITM


class StarttlsMitm(_TcpService):
    """A STARTTLS-aware TLS-intercepting proxy on MITM_ADDR:port: the
    preamble (canned), TLS with the rogue certificate to the victim, and the
    same preamble + TLS as a client to the real server, relayed both ways."""
    kind = "starttls-mitm"
    LIFETIME = 30.0

    def __init__(self, proto, port, rogue, upstream):
        self.proto, self.upstream = proto, upstream
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(rogue.crt, rogue.key)
        self.intercepted = 0            # victims that reached our TLS
        super().__init__(MITM_ADDR, port)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _serve(self, conn):
        up = None
        try:
            conn.settimeout(IO_TIMEOUT)
            starttls_server(self.proto, conn)
            with self._lock:
                self.intercepted += 1
            victim = self.ctx.wrap_socket(conn, server_side=True)
            up = socket.create_connection(self.upstream, timeout=IO_TIMEOUT)
            starttls_client(self.proto, up)
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.check_hostname = False
            cctx.verify_mode = ssl.CERT_NONE
            up = cctx.wrap_socket(up, server_hostname=HOST)
            self._relay(victim, up)
        except (OSError, ssl.SSLError, WorldError):
            pass    # DetecTor's probes hang up after the certificate
        finally:
            for s in (up, conn):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _relay(self, a, b):
        end = time.monotonic() + self.LIFETIME
        peer = {a: b, b: a}
        while time.monotonic() < end and not self._stop.is_set():
            r, _, _ = select.select([a, b], [], [], 0.2)
            for s in r:
                data = s.recv(16384)
                if not data:
                    return
                peer[s].sendall(data)


# --------------------------------------------------------------------------
# The servers


def _user(name):
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


class MailServers:
    """Every STARTTLS server and its MITM.  start() brings them up (each
    checked with a real STARTTLS handshake showing the real certificate);
    stop() ends them by PID and removes the directory.

    .port[proto]   the port on 127.0.0.2 (server) and 127.0.0.3 (MITM)
    .mitm[proto]   the StarttlsMitm
    .smtp_plain    a postfix smtpd port that offers no STARTTLS
    """

    def __init__(self, world):
        self.world = world
        self.dir = None
        self.port, self.mitm, self.procs = {}, {}, {}
        self._services = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        missing = [t for t in ("/usr/sbin/postfix", "/usr/sbin/dovecot",
                               "/usr/bin/prosody", "/usr/sbin/slapd", "setpriv")
                   if shutil.which(t) is None]
        if missing:
            raise WorldError("missing: %s (run `make deps`)" % ", ".join(missing))
        self.dir = tempfile.mkdtemp(prefix="detector-mail-")
        os.chmod(self.dir, 0o711)       # the unprivileged servers reach their dirs
        try:
            for proto in PROTOCOLS:
                self.port[proto] = free_port(REAL_ADDR, MITM_ADDR)
            self.smtp_plain = free_port(REAL_ADDR)
            self._postfix()
            self._dovecot()
            self._prosody()
            self._slapd()
            for proto in PROTOCOLS:
                wait_starttls(REAL_ADDR, self.port[proto], proto,
                              self.procs[proto])
                m = StarttlsMitm(proto, self.port[proto], self.world.rogue,
                                 (REAL_ADDR, self.port[proto]))
                self._services.append(m)
                self.mitm[proto] = m
            wait_tcp(REAL_ADDR, self.smtp_plain, self.procs["smtp"])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for m in self._services:
            m.stop()
        self._services = []
        for p in list(self.procs.values())[::-1]:
            p.stop()
        self.procs = {}
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- helpers

    def _subdir(self, name, owner="root", mode=0o700):
        d = os.path.join(self.dir, name)
        os.mkdir(d)
        os.chmod(d, mode)
        uid, gid = _user(owner)
        os.chown(d, uid, gid)
        return d

    def _cert(self, d, owner="root"):
        """The real certificate and key, copied into d, owned by owner."""
        uid, gid = _user(owner)
        out = []
        for src, name in ((self.world.real.crt, "server.crt"),
                          (self.world.real.key, "server.key")):
            dst = os.path.join(d, name)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            os.chown(dst, uid, gid)
            out.append(dst)
        return out

    def _write(self, path, text, owner="root", mode=0o600):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        uid, gid = _user(owner)
        os.chown(path, uid, gid)

    def _start(self, proto, name, argv, log, *alias):
        p = Process(name, argv, log)
        for k in (proto,) + alias:
            self.procs[k] = p
        return p

    # -- postfix

    def _postfix(self):
        # Postfix's unprivileged daemons reach the queue through it.
        d = self._subdir("postfix", mode=0o755)
        crt, key = self._cert(d)
        os.mkdir(os.path.join(d, "queue"), 0o755)
        os.mkdir(os.path.join(d, "data"), 0o755)
        os.chown(os.path.join(d, "data"), *_user("postfix"))
        self._write(os.path.join(d, "main.cf"), """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
meta_directory = /etc/postfix
mail_owner = postfix
inet_interfaces = all
inet_protocols = ipv4
myhostname = server.test
mydestination =
local_recipient_maps =
smtpd_tls_cert_file = {crt}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
maillog_file = /dev/stdout
""".format(d=d, crt=crt, key=key), mode=0o644)
        self._write(os.path.join(d, "master.cf"), """\
{a}:{p} inet n - n - - smtpd
{a}:{q} inet n - n - - smtpd -o smtpd_tls_security_level=none
tlsmgr unix - - n 1000? 1 tlsmgr
proxymap unix - - n - - proxymap
anvil unix - - n - 1 anvil
postlog unix-dgram n - n - 1 postlogd
""".format(a=REAL_ADDR, p=self.port["smtp"], q=self.smtp_plain), mode=0o644)
        # `postfix check` creates the queue directories; then the master
        # in the foreground (-d), in its own session (Process).
        check = Process("postfix check", ["postfix", "-c", d, "check"],
                        os.path.join(self.dir, "postfix-check.log"))
        check.popen.wait(30)
        check.stop()
        if not os.path.isdir(os.path.join(d, "queue", "private")):
            raise WorldError("postfix check did not create %s/queue:\n%s"
                             % (d, check.log()))
        self._start("smtp", "postfix master",
                    ["/usr/lib/postfix/sbin/master", "-c", d, "-d"],
                    os.path.join(self.dir, "postfix.log"))

    # -- dovecot

    def _dovecot(self):
        d = self._subdir("dovecot", mode=0o755)
        crt, key = self._cert(d)
        for sub in ("run", "state", "home"):
            os.mkdir(os.path.join(d, sub), 0o755)
        conf = os.path.join(d, "dovecot.conf")
        self._write(conf, """\
base_dir = {d}/run
state_dir = {d}/state
log_path = /dev/stderr
listen = {a}
protocols = imap pop3
ssl = yes
ssl_cert = <{crt}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
default_internal_user = dovecot
default_login_user = dovenull
disable_plaintext_auth = yes
passdb {{
  driver = static
  args = password=unused-{rnd}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/home
}}
service imap-login {{
  inet_listener imap {{
    address = {a}
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {a}
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""".format(d=d, a=REAL_ADDR, crt=crt, key=key, rnd=os.urandom(8).hex(),
           imap=self.port["imap"], pop3=self.port["pop3"]))
        self._start("imap", "dovecot", ["dovecot", "-F", "-c", conf],
                    os.path.join(self.dir, "dovecot.log"), "pop3")

    # -- prosody (as the prosody user)

    def _prosody(self):
        d = self._subdir("prosody", "prosody")
        crt, key = self._cert(d, "prosody")
        for sub in ("data", "certs"):
            os.mkdir(os.path.join(d, sub), 0o700)
            os.chown(os.path.join(d, sub), *_user("prosody"))
        conf = os.path.join(d, "prosody.cfg.lua")
        self._write(conf, """\
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
daemonize = false
log = {{ {{ levels = {{ min = "info" }}, to = "console" }} }}
modules_enabled = {{ "tls", "saslauth", "disco" }}
modules_disabled = {{ "s2s", "offline", "c2s_bosh", "posix" }}
c2s_ports = {{ {p} }}
c2s_interfaces = {{ "{a}" }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}
c2s_require_encryption = true
VirtualHost "server.test"
  ssl = {{ certificate = "{crt}", key = "{key}" }}
""".format(d=d, a=REAL_ADDR, p=self.port["xmpp"], crt=crt, key=key),
            owner="prosody")
        self._start("xmpp", "prosody",
                    ["setpriv", "--reuid=prosody", "--regid=prosody",
                     "--init-groups", "prosody", "--config", conf, "-F"],
                    os.path.join(self.dir, "prosody.log"))

    # -- slapd (as the openldap user)

    def _slapd(self):
        d = self._subdir("slapd", "openldap")
        crt, key = self._cert(d, "openldap")
        db = os.path.join(d, "db")
        os.mkdir(db, 0o700)
        os.chown(db, *_user("openldap"))
        conf = os.path.join(d, "slapd.conf")
        self._write(conf, """\
include /etc/ldap/schema/core.schema
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {crt}
TLSCertificateKeyFile {key}
database mdb
suffix "dc=server,dc=test"
directory {db}
maxsize 1048576
""".format(d=d, crt=crt, key=key, db=db), owner="openldap")
        self._start("ldap", "slapd",
                    ["setpriv", "--reuid=openldap", "--regid=openldap",
                     "--init-groups", "slapd", "-d", "0", "-h",
                     "ldap://%s:%d/" % (REAL_ADDR, self.port["ldap"]),
                     "-f", conf],
                    os.path.join(self.dir, "slapd.log"))


# --------------------------------------------------------------------------
# A server with two keys


class DualCertServer(_TcpService):
    """A TLS server for server.test holding an ECDSA and an RSA certificate
    at once (OpenSSL, through Python's ssl: one certificate per key type),
    as many real servers do; OpenSSL shows each client the certificate that
    fits the signature schemes the client offers.  Serves connections
    concurrently (an application held by DetecTor's check must not keep
    the spheres' probes out): reads a request, answers, closes."""
    kind = "dual-cert"

    def __init__(self, ec, rsa, addr=REAL_ADDR, port=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(ec.crt, ec.key)
        self.ctx.load_cert_chain(rsa.crt, rsa.key)
        super().__init__(addr, port)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _serve(self, conn):
        try:
            conn.settimeout(IO_TIMEOUT)
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(64)
                tls.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello\n")
        except (OSError, ssl.SSLError):
            pass


# --------------------------------------------------------------------------
# Hostile STARTTLS servers (python threads), for the probe's I/O layer


class HostileSmtp(_TcpService):
    """An SMTP server on 127.0.0.2 that misbehaves in one way (mode):

      inject   answers STARTTLS with "220 go ahead" and, in the same
               segment, a forged reply (STARTTLS command injection)
      endless  sends "220-" greeting lines forever, a few per 10 ms
      silent   accepts and never greets
    """
    kind = "hostile-smtp"

    def __init__(self, mode):
        self.mode = mode
        super().__init__(REAL_ADDR)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _serve(self, conn):
        try:
            conn.settimeout(IO_TIMEOUT)
            if self.mode == "silent":
                self._stop.wait(IO_TIMEOUT)
                return
            if self.mode == "endless":
                end = time.monotonic() + IO_TIMEOUT
                while time.monotonic() < end and not self._stop.is_set():
                    conn.sendall(b"220-server.test still greeting you\r\n" * 4)
                    time.sleep(0.01)
                return
            conn.sendall(b"220 server.test ESMTP\r\n")
            _read_line(conn)
            conn.sendall(b"250-server.test\r\n250 STARTTLS\r\n")
            _read_line(conn)
            conn.sendall(b"220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n")
            conn.recv(1024)
        except (OSError, WorldError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
