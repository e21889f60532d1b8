"""Debian's Thunderbird as a test subject: a real IMAP server (Debian's
dovecot, implicit TLS, one message carrying a marker), a TLS-terminating
MITM that logs the plaintext it relays, a fresh Thunderbird profile with an
IMAP account trusting the test CA, and one bounded headless session that
lists the account's folders and fetches the message through Marionette in
chrome context.

What firefox.py already does for Firefox (which co-release fits the
installed package, a copy of the folder with one libssl3.so swapped, the
Marionette wire protocol) is imported from it, not repeated.  Nothing here
changes /usr.
"""

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "firefox"))
sys.path.insert(0, os.path.join(HERE, ".."))

from firefox import PREFS as FIREFOX_PREFS  # noqa: E402
from firefox import Marionette, _free_local_port, _js  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402

from testworld import WorldError  # noqa: E402
from testworld.mitm import StarttlsMitm  # noqa: E402
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR, wait_tls  # noqa: E402
from testworld.processes import Process, stop_group  # noqa: E402
from testworld.relay import relay  # noqa: E402
from testworld.services import close_quietly  # noqa: E402
from testworld.starttls import IO_TIMEOUT, starttls_client, starttls_server, \
    wait_starttls  # noqa: E402

START_TIMEOUT = 60     # seconds for Thunderbird's Marionette to listen
MAIL_TIMEOUT = 20      # seconds for the folder list and the message
QUIT_TIMEOUT = 15      # seconds for Thunderbird to exit after Quit
USER = "detector"

# Thunderbird talks to nothing but the account it is given.
PREFS = dict((k, v) for k, v in FIREFOX_PREFS.items()
             if not k.startswith("browser."))
PREFS.update({
    "mail.shell.checkDefaultClient": False,
    "mail.rights.version": 1,
    "mail.provider.enabled": False,
    "mail.cloud_files.enabled": False,
    "mailnews.start_page.enabled": False,
    "mailnews.auto_config.fetchFromISP.enabled": False,
    "mail.startup.enabledMailCheckOnce": True,
    "mail.spotlight.firstRunDone": True,
    "mail.winsearch.firstRunDone": True,
    "mail.server.default.check_new_mail": False,
    "mail.server.default.login_at_startup": False,
    "mail.server.default.autosync_offline_stores": False,
    "mail.biff.play_sound": False,
    "mail.biff.show_alert": False,
    "mailnews.headers.showUserAgent": False,
    "mail.inbox.addonstart": False,
    "app.donation.eoy.version.viewed": 999,
    "datareporting.policy.dataSubmissionPolicyBypassNotification": True,
    "mail.account.account1.identities": "id1",
    "mail.account.account1.server": "server1",
    "mail.accountmanager.accounts": "account1",
    "mail.accountmanager.defaultaccount": "account1",
    "mail.identity.id1.fullName": "DetecTor Test",
    "mail.identity.id1.useremail": USER + "@" + HOST,
    "mail.identity.id1.valid": True,
    "mail.server.server1.hostname": HOST,
    "mail.server.server1.name": "DetecTor test account",
    "mail.server.server1.type": "imap",
    "mail.server.server1.userName": USER,
    "mail.server.server1.socketType": 3,        # SSL/TLS (implicit TLS, "993-style")
    "mail.server.server1.authMethod": 3,        # cleartext password (inside TLS)
    "mail.server.server1.check_new_mail": False,
    "mail.server.server1.login_at_startup": False,
    "mail.server.server1.offline_download": False,
    "mail.server.server1.using_subscription": False,     # LIST every folder
    "mail.server.server1.directory-rel": "[ProfD]ImapMail/server.test",
})


# -- the real IMAP server


class ImapServer:
    """Debian's dovecot on REAL_ADDR: implicit TLS on port, STARTTLS (the
    plain IMAP port, TLS required before login) on starttls_port, with the
    world's real certificate; one user (USER, a random password) whose INBOX holds
    one message with .marker in its subject and body.  Its log records
    each login ("Login: user=<detector>")."""

    def __init__(self, world, directory, port, starttls_port):
        if shutil.which("dovecot") is None:
            raise RuntimeError("dovecot is missing (run `make deps`)")
        self.port, self.starttls_port = port, starttls_port
        self.marker = "detector-imap-marker-" + uuid.uuid4().hex[:12]
        self.password = uuid.uuid4().hex
        d = self.dir = os.path.join(directory, "dovecot")
        os.mkdir(d)
        os.chmod(d, 0o755)
        uid, gid = pwd.getpwnam("dovecot").pw_uid, pwd.getpwnam("dovecot").pw_gid
        for sub in ("run", "state"):
            os.mkdir(os.path.join(d, sub), 0o755)
        crt, key = os.path.join(d, "server.crt"), os.path.join(d, "server.key")
        shutil.copyfile(world.real.crt, crt)
        shutil.copyfile(world.real.key, key)
        os.chmod(key, 0o600)
        home = os.path.join(d, "home")
        for sub in ("", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"):
            os.mkdir(os.path.join(home, sub), 0o700)
            os.chown(os.path.join(home, sub), uid, gid)
        msg = os.path.join(home, "Maildir", "new", "1700000000.M1P1.server.test")
        with open(msg, "w", newline="") as f:
            f.write("From: The real server <real@server.test>\r\n"
                    "To: %s@server.test\r\n"
                    "Subject: %s\r\n"
                    "Date: Thu, 03 Dec 2026 05:00:00 +0000\r\n"
                    "Message-ID: <%s@server.test>\r\n"
                    "\r\n"
                    "Body of the real server's message: %s\r\n"
                    % (USER, self.marker, self.marker, self.marker))
        os.chown(msg, uid, gid)
        conf = os.path.join(d, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""\
base_dir = {d}/run
state_dir = {d}/state
log_path = /dev/stderr
listen = {a}
protocols = imap
ssl = required
ssl_cert = <{crt}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
default_internal_user = dovecot
default_login_user = dovenull
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = static
  args = password={pw}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={home}
}}
service imap-login {{
  inet_listener imap {{
    address = {a}
    port = {sport}
  }}
  inet_listener imaps {{
    address = {a}
    port = {port}
    ssl = yes
  }}
}}
""".format(d=d, a=REAL_ADDR, crt=crt, key=key, pw=self.password, home=home, port=port, sport=starttls_port, uid=uid))
        os.chmod(conf, 0o600)
        self.log_path = os.path.join(directory, "dovecot.log")
        self.proc = Process("dovecot", ["dovecot", "-F", "-c", conf], self.log_path)
        try:
            wait_tls(REAL_ADDR, port, self.proc)
            wait_starttls(REAL_ADDR, starttls_port, "imap", self.proc)
        except BaseException:
            self.proc.stop()
            raise

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def logins(self, since=0):
        return self.log()[since:].count("Login: user=<%s>" % USER)

    def stop(self):
        self.proc.stop()


class LoggingMitm:
    """socat on MITM_ADDR:port: TLS in with the rogue certificate, TLS out
    to the real server (no verification), like testworld.mitm.socat_mitm,
    but with -v: every plaintext chunk it relays is in its log, '>' from
    the victim to the real server, '<' back.  So the log shows whether any
    IMAP command of the victim reached the real server."""

    def __init__(self, directory, port, rogue):
        self.port = port
        self.log_path = os.path.join(directory, "socat-imap-mitm.log")
        self.proc = Process("socat imap mitm",
                            ["socat", "-v",
                             "OPENSSL-LISTEN:%d,bind=%s,reuseaddr,fork,cert=%s,key=%s,verify=0"
                             % (port, MITM_ADDR, rogue.crt, rogue.key),
                             "OPENSSL:%s:%d,verify=0,snihost=%s" % (REAL_ADDR, port, HOST)],
                            self.log_path)
        try:
            wait_tls(MITM_ADDR, port, self.proc)
        except BaseException:
            self.proc.stop()
            raise

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def to_server(self, since=0):
        """The plaintext the victim sent through the MITM to the real
        server, after `since` bytes of the log."""
        out, take = [], False
        for line in self.log()[since:].splitlines():
            if line.startswith("> ") and "length=" in line:
                take = True
                continue
            if line.startswith("< ") and "length=" in line:
                take = False
                continue
            if take:
                out.append(line)
        return "\n".join(out)

    def size(self):
        return os.path.getsize(self.log_path)

    def stop(self):
        self.proc.stop()
        stop_group(self.proc.popen.pid)


class CountingStarttlsMitm(StarttlsMitm):
    """testworld.mitm.StarttlsMitm (the IMAP preamble, TLS with the rogue
    certificate to the victim, relayed to the real server) that also
    counts the victims whose TLS handshake with it completed: only those
    can send it an IMAP command, and only then does it connect to the real
    server.  (_serve is StarttlsMitm's, with the count added.)"""

    def __init__(self, *args):
        self.tls_done = 0
        super().__init__(*args)

    def _serve(self, conn):
        up = None
        try:
            conn.settimeout(IO_TIMEOUT)
            starttls_server(self.proto, conn)
            with self._lock:
                self.intercepted += 1
            victim = self.ctx.wrap_socket(conn, server_side=True)
            with self._lock:
                self.tls_done += 1
            up = socket.create_connection(self.upstream, timeout=IO_TIMEOUT)
            starttls_client(self.proto, up)
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.check_hostname = False
            cctx.verify_mode = ssl.CERT_NONE
            up = cctx.wrap_socket(up, server_hostname=HOST)
            relay(victim, up, self._stop, self.LIFETIME, bufsize=16384)
        except (OSError, ssl.SSLError, WorldError):
            pass
        finally:
            close_quietly(up, conn)


# -- the profile


def make_profile(directory, ca_crt, port, starttls=False):
    """A fresh Thunderbird profile whose cert9.db trusts ca_crt for TLS,
    with one IMAP account for USER at server.test:port (implicit TLS, or
    STARTTLS if starttls)."""
    os.mkdir(directory, 0o700)
    for argv in (["certutil", "-N", "-d", "sql:" + directory, "--empty-password"],
                 ["certutil", "-A", "-d", "sql:" + directory, "-n", "detector-test-ca",
                  "-t", "C,,", "-i", ca_crt]):
        subprocess.run(argv, check=True, capture_output=True)
    prefs = dict(PREFS)
    prefs["mail.server.server1.port"] = port
    if starttls:
        prefs["mail.server.server1.socketType"] = 2     # STARTTLS, required
    with open(os.path.join(directory, "user.js"), "w") as f:
        for k, v in prefs.items():
            f.write("user_pref(%s, %s);\n" % (_js(k), _js(v)))
    return directory


# -- one session

# Chrome-context script: the password (in memory only), then the folder
# list (LIST through discoverAllFolders), INBOX's headers
# (updateFolderWithListener) and the first message's full text
# (streamMessage).  Resolves with what it got and every failure status.
FETCH_SCRIPT = r"""
const password = arguments[0], timeoutMs = arguments[1];
const resolve = arguments[arguments.length - 1];
const { MailServices } = ChromeUtils.importESModule(
  "resource:///modules/MailServices.sys.mjs");
const out = { folders: [], subjects: [], body: "", steps: [], error: null };
const { setTimeout } = ChromeUtils.importESModule("resource://gre/modules/Timer.sys.mjs");
const timer = Cc["@mozilla.org/timer;1"].createInstance(Ci.nsITimer);
let done = false;
function finish(error) {
  if (done) return;
  done = true;
  timer.cancel();
  if (error) out.error = String(error);
  resolve(out);
}
timer.initWithCallback({ notify() { finish("timed out after " + timeoutMs + " ms"); } },
                       timeoutMs, Ci.nsITimer.TYPE_ONE_SHOT);
function step(name, start) {
  return new Promise((ok, fail) => {
    const listener = {
      QueryInterface: ChromeUtils.generateQI(["nsIUrlListener"]),
      OnStartRunningUrl() {},
      OnStopRunningUrl(url, status) {
        out.steps.push([name, status]);
        if (Components.isSuccessCode(status)) ok();
        else fail(name + " failed: 0x" + (status >>> 0).toString(16));
      },
    };
    try { start(listener); } catch (e) { fail(name + " threw: " + e); }
  });
}
(async () => {
  const server = MailServices.accounts.getIncomingServer("server1");
  server.password = password;
  const root = server.rootFolder;
  await step("list", l => MailServices.imap.discoverAllFolders(root, l, null));
  // The folders the LIST found are added as the replies are parsed.
  let inbox = null;
  for (let i = 0; i < 50 && !inbox; i++) {
    inbox = root.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
    if (!inbox) await new Promise(r => setTimeout(r, 100));
  }
  for (const f of root.descendants) out.folders.push(f.name);
  if (!inbox) throw new Error("no INBOX after the folder list");
  await step("select", l => MailServices.imap.selectFolder(inbox, l, null));
  // The headers land in the folder's database as the FETCH replies come.
  let hdrs = [];
  for (let i = 0; i < 100 && !hdrs.length; i++) {
    hdrs = [...inbox.msgDatabase.enumerateMessages()];
    if (!hdrs.length) await new Promise(r => setTimeout(r, 100));
  }
  for (const h of hdrs) out.subjects.push(h.mime2DecodedSubject || h.subject);
  if (!hdrs.length) throw new Error("INBOX is empty");
  const uri = inbox.getUriForMsg(hdrs[0]);
  let body = "";
  const consumer = {
    QueryInterface: ChromeUtils.generateQI(["nsIStreamListener", "nsIRequestObserver"]),
    onStartRequest() {},
    onStopRequest() {},
    onDataAvailable(request, stream, offset, count) {
      const s = Cc["@mozilla.org/scriptableinputstream;1"]
        .createInstance(Ci.nsIScriptableInputStream);
      s.init(stream);
      body += s.read(count);
    },
  };
  await step("message", l => MailServices.messageServiceFromURI(uri)
    .streamMessage(uri, consumer, null, l, false, "", false));
  out.body = body;
})().then(() => finish(null), e => finish(e));
"""


class Session:
    """One finished headless Thunderbird session."""

    def __init__(self, argv, rc, err, elapsed, result, libs):
        self.argv, self.rc, self.err, self.elapsed = argv, rc, err, elapsed
        self.result, self.libs = result or {}, libs

    def libssl_loaded(self):
        """The libssl3.so paths the dynamic loader initialised."""
        return sorted({line.split("calling init: ", 1)[1].strip()
                       for line in self.libs.splitlines()
                       if "calling init: " in line and line.rstrip().endswith("/libssl3.so")})

    def __str__(self):
        # GTK's complaints about the missing display are noise.
        err = "\n".join(l for l in self.err.splitlines()
                        if l.strip() and not any(n in l for n in (
                            "Gtk-CRITICAL", "glib warning", "GFX1-", "(t=")))
        return ("%s\n  exit %s after %.1fs\n  result %s\n--- stderr (last 6000)\n%s\n---"
                % (" ".join(self.argv), self.rc, self.elapsed,
                   json.dumps(self.result)[:3000], err[-6000:]))

    __repr__ = __str__


def fetch_mail(program, profile, password, addr, workdir, env_extra=None):
    """Starts `program --headless --marionette --profile profile` with
    server.test resolving to addr (a private /etc/hosts in a mount
    namespace) and a clean environment plus env_extra; in chrome context
    sets the account's password, lists its folders and fetches INBOX's
    first message (at most MAIL_TIMEOUT seconds); quits.  Every step is
    bounded; Thunderbird is killed by its process group if it does not
    quit.  The dynamic loader's log (LD_DEBUG=libs) shows which libssl3.so
    was loaded."""
    hosts = os.path.join(workdir, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1\tlocalhost\n%s\t%s\n" % (addr, HOST))
    home = os.path.join(workdir, "home")
    os.makedirs(home, 0o700, exist_ok=True)
    lddebug = os.path.join(workdir, "ld-debug")
    port = _free_local_port()
    with open(os.path.join(profile, "user.js"), "a") as f:
        f.write("user_pref(\"marionette.port\", %d);\n" % port)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
           "TMPDIR": workdir, "MOZ_CRASHREPORTER_DISABLE": "1",
           "MOZ_HEADLESS": "1", "LD_DEBUG": "libs", "LD_DEBUG_OUTPUT": lddebug}
    env.update(env_extra or {})
    argv = [program, "--headless", "--no-remote", "--marionette", "-remote-allow-system-access",
            "--profile", profile]
    full = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', hosts] + argv
    t0 = time.monotonic()
    errlog = os.path.join(workdir, "thunderbird.stderr")
    with open(errlog, "w") as errf:
        proc = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL,
                                stdout=errf, stderr=subprocess.STDOUT,
                                start_new_session=True)
    result, note, stepname = None, "", "connect"
    try:
        m = Marionette(port, proc, START_TIMEOUT)
        m.sock.settimeout(MAIL_TIMEOUT + 10)
        stepname = "NewSession"
        err, _ = m.call("WebDriver:NewSession", {"capabilities": {}})
        if err:
            raise RuntimeError("NewSession: %s" % err)
        stepname = "SetContext"
        m.call("Marionette:SetContext", {"value": "chrome"})
        m.call("WebDriver:SetTimeouts", {"script": (MAIL_TIMEOUT + 5) * 1000})
        # The window Marionette picked at start may be replaced by the main
        # window (mail:3pane): take a chrome window that answers.
        stepname = "find a chrome window"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            _, handles = m.call("WebDriver:GetWindowHandles")
            handles = handles if isinstance(handles, list) else handles.get("value", [])
            ok = False
            for h in handles:
                if m.call("WebDriver:SwitchToWindow", {"handle": h, "focus": False})[0]:
                    continue
                err, res = m.call("WebDriver:ExecuteScript", {
                    "script": "return document.documentElement.getAttribute('windowtype')",
                    "args": []})
                if not err and res.get("value") == "mail:3pane":
                    ok = True
                    break
            if ok:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no mail:3pane window among %s" % handles)
            time.sleep(0.5)
        stepname = "fetch"
        err, res = m.call("WebDriver:ExecuteAsyncScript", {
            "script": FETCH_SCRIPT, "args": [password, MAIL_TIMEOUT * 1000]})
        if err:
            raise RuntimeError("fetch script: %s" % err)
        result = res.get("value")
        stepname = "Quit"
        m.call("Marionette:Quit", {"flags": ["eForceQuit"]})
        m.close()
    except (OSError, RuntimeError, ValueError) as e:
        note = "\n[test: at %s: %s]\n" % (stepname, e)
    try:
        proc.wait(timeout=QUIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        note += "[test: killed, Thunderbird did not quit within %ds]\n" % QUIT_TIMEOUT
    elapsed = time.monotonic() - t0
    stop_group(proc.pid)
    proc.wait(timeout=10)
    with open(errlog, errors="replace") as f:
        err = f.read()
    libs = ""
    for path in glob.glob(lddebug + ".*"):
        with open(path, errors="replace") as f:
            libs += f.read()
        os.unlink(path)
    return Session(argv, proc.returncode, err + note, elapsed, result, libs)
