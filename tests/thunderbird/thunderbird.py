"""Debian's Thunderbird as a test subject: a real IMAP server (Debian's
dovecot, implicit TLS, one message carrying a marker), a TLS-terminating
MITM that logs the plaintext it relays, a fresh Thunderbird profile with an
IMAP account trusting the test CA, and one bounded headless session that
lists the account's folders and fetches the message through Marionette in
chrome context.

What it shares with Firefox (which co-release fits the installed package,
a copy of the folder with one libssl3.so swapped, the Marionette wire
protocol, the headless start) is testworld.mozilla.  Nothing here changes
/usr.
"""

import json
import os
import pwd
import shutil
import subprocess
import time
import uuid

from testworld.mailservers import dovecot_conf
from testworld.mitm import socat_mitm
from testworld.mozilla import PREFS as FIREFOX_PREFS
from testworld.mozilla import Marionette, libssl_loaded, read_ld_debug, start_headless
from testworld.mozilla import make_profile as _make_profile
from testworld.ports import HOST, REAL_ADDR, wait_tls
from testworld.processes import Process, stop_group
from testworld.starttls import wait_starttls

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
            f.write(dovecot_conf(
                d, crt, key, "imap", "required", self.password, home,
                [("imap", starttls_port, port)],
                extra="auth_mechanisms = plain login\nmail_location = maildir:~/Maildir\n"
                      "first_valid_uid = {uid}\nlast_valid_uid = {uid}\n".format(uid=uid)))
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
        return self.proc.log()

    def logins(self, since=0):
        return self.log()[since:].count("Login: user=<%s>" % USER)

    def stop(self):
        self.proc.stop()


class LoggingMitm:
    """testworld.mitm.socat_mitm on MITM_ADDR:port, verbose: its log shows
    whether any IMAP command of the victim reached the real server."""

    def __init__(self, directory, port, rogue):
        self.port = port
        self.proc = socat_mitm("imap-mitm", directory, port, port, rogue, verbose=True)

    def to_server(self, since=0):
        """The plaintext the victim sent through the MITM to the real
        server, after `since` bytes of the log."""
        out, take = [], False
        for line in self.proc.log()[since:].splitlines():
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
        return os.path.getsize(self.proc.log_path)

    def stop(self):
        self.proc.stop()


# -- the profile


def make_profile(directory, ca_crt, port, starttls=False):
    """A fresh Thunderbird profile whose cert9.db trusts ca_crt for TLS,
    with one IMAP account for USER at server.test:port (implicit TLS, or
    STARTTLS if starttls)."""
    prefs = dict(PREFS)
    prefs["mail.server.server1.port"] = port
    if starttls:
        prefs["mail.server.server1.socketType"] = 2     # STARTTLS, required
    return _make_profile(directory, ca_crt, prefs)


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
        return libssl_loaded(self.libs)

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
    argv = [program, "--headless", "--no-remote", "--marionette", "-remote-allow-system-access",
            "--profile", profile]
    t0 = time.monotonic()
    errlog = os.path.join(workdir, "thunderbird.stderr")
    with open(errlog, "w") as errf:
        proc, port, lddebug = start_headless(argv, profile, addr, workdir, env_extra,
                                             stdout=errf, stderr=subprocess.STDOUT)
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
    return Session(argv, proc.returncode, err + note, elapsed, result, read_ld_debug(lddebug))
