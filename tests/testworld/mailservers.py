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
server.test), a mitm.StarttlsMitm per protocol speaks the plaintext
preamble itself, then terminates TLS with the world's rogue certificate and
relays to the real server (doing the preamble and TLS there as a client).
It is the attacker, not the component under test.

Readiness and the independent check use a small Python STARTTLS client
(starttls.starttls_peer_cert), not DetecTor.

HostileSmtp: an SMTP server that misbehaves, for the probe's I/O layer.
"""

import os
import pwd
import shutil
import tempfile
import time

from . import WorldError
from .mitm import StarttlsMitm
from .ports import MITM_ADDR, REAL_ADDR, free_port, wait_tcp
from .processes import Process
from .services import TcpService, close_quietly
from .starttls import IO_TIMEOUT, PROTOCOLS, read_line, wait_starttls


def _user(name):
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def dovecot_conf(d, crt, key, protocols, ssl, password, home, logins, extra=""):
    """dovecot.conf for a test server whose folder d holds run/ and state/:
    on REAL_ADDR, with crt/key, `ssl` yes or required, one static user
    with password and home, `extra` settings, and for each (protocol,
    port, implicit TLS port or 0 for none) in logins its login service."""
    services = ""
    for proto, port, tls_port in logins:
        tls = ("    address = %s\n    port = %d\n    ssl = yes\n" % (REAL_ADDR, tls_port)
               if tls_port else "    port = 0\n")
        services += ("service {p}-login {{\n  inet_listener {p} {{\n    address = {a}\n"
                     "    port = {port}\n  }}\n  inet_listener {p}s {{\n{tls}  }}\n}}\n"
                     .format(p=proto, a=REAL_ADDR, port=port, tls=tls))
    return """\
base_dir = {d}/run
state_dir = {d}/state
log_path = /dev/stderr
listen = {a}
protocols = {protocols}
ssl = {ssl}
ssl_cert = <{crt}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
default_internal_user = dovecot
default_login_user = dovenull
{extra}passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={home}
}}
""".format(d=d, a=REAL_ADDR, protocols=protocols, ssl=ssl, crt=crt, key=key, extra=extra,
           password=password, home=home) + services


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
        self._write(conf, dovecot_conf(
            d, crt, key, "imap pop3", "yes", "unused-" + os.urandom(8).hex(), d + "/home",
            [("imap", self.port["imap"], 0), ("pop3", self.port["pop3"], 0)],
            extra="disable_plaintext_auth = yes\n"))
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
# Hostile STARTTLS servers (python threads), for the probe's I/O layer


class HostileSmtp(TcpService):
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
            read_line(conn)
            conn.sendall(b"250-server.test\r\n250 STARTTLS\r\n")
            read_line(conn)
            conn.sendall(b"220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n")
            conn.recv(1024)
        except (OSError, WorldError):
            pass
        finally:
            close_quietly(conn)
