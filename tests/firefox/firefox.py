"""Debian's Firefox ESR as a test subject: which co-release fits the
installed firefox-esr, a copy of its folder with one libssl3.so swapped, a
fresh profile trusting the test CA, and one headless page load with a
private /etc/hosts.

Used by test_firefox.py; nothing here changes /usr.
"""

import base64
import glob
import json
import os
import random
import shutil
import socket
import subprocess
import time

from testworld.processes import stop_group

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(ROOT, "build")
CORELEASE_BUILD = os.environ.get("DETECTOR_CORELEASE_BUILD") or os.path.join(BUILD, "corelease")
LIBDETECTOR = os.path.join(BUILD, "lib", "libdetector.so.0")
FIREFOX_TIMEOUT = 60          # seconds for any one Marionette command
PAGE_TIMEOUT = 30             # seconds for the page load itself

# Quiet, offline prefs: Firefox talks to nothing but the page it is given.
PREFS = {
    "app.normandy.enabled": False,
    "app.update.auto": False,
    "app.update.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.region.network.url": "",
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "extensions.blocklist.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.update.enabled": False,
    "geo.provider.network.url": "",
    "media.gmp-manager.url": "http://127.0.0.1:1/",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.http.http3.enable": False,
    "network.http.speculative-parallel-limit": 0,
    "network.predictor.enabled": False,
    "network.prefetch-next": False,
    "network.proxy.type": 0,
    "network.trr.mode": 5,
    "security.OCSP.enabled": 0,
    "security.certerrors.mitm.priming.enabled": False,
    "security.enterprise_roots.enabled": False,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "services.settings.server": "http://127.0.0.1:1/",
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.server": "http://127.0.0.1:1/",
    "toolkit.telemetry.unified": False,
}


def read_descriptor(path):
    """(package, version, nss, [(app, app_version, folder)]) of a
    coreleases/*.bundled file."""
    fields, apps = {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            tok = line.split()
            if not tok or tok[0].startswith("#"):
                continue
            if tok[0] == "app" and len(tok) == 4:
                apps.append(tuple(tok[1:]))
            elif len(tok) >= 2:
                fields.setdefault(tok[0], tok[1])
    return fields.get("package"), fields.get("version"), fields.get("nss"), apps


def installed_version(package):
    p = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", package],
                       capture_output=True, text=True)
    tok = p.stdout.split()
    return tok[1] if p.returncode == 0 and len(tok) == 2 and tok[0] == "ii" else None


def bundled_nss_version(folder):
    """NSS_GetVersion() of folder/libnss3.so, or None."""
    probe = ("import ctypes, sys; l = ctypes.CDLL(sys.argv[1]); "
             "l.NSS_GetVersion.restype = ctypes.c_char_p; print(l.NSS_GetVersion().decode())")
    p = subprocess.run(["/usr/bin/python3", "-c", probe, os.path.join(folder, "libnss3.so")],
                       env={"LD_LIBRARY_PATH": folder}, capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


class Corelease:
    """The co-release for the installed application: descriptor, its NSS
    version, the application's folder and the built libssl3.so."""

    def __init__(self, descriptor, nss, folder):
        self.descriptor, self.nss, self.folder = descriptor, nss, folder
        name = os.path.basename(descriptor)[:-len(".bundled")]
        self.library = os.path.join(CORELEASE_BUILD, name, "lib", "libssl3.so")


def find_corelease(package):
    """(Corelease, None) for the installed `package`, or (None, why): a
    reason naming the missing co-release and the bundled NSS version."""
    have = installed_version(package)
    known = []
    for d in sorted(glob.glob(os.path.join(ROOT, "coreleases", "*.bundled"))):
        _, _, nss, apps = read_descriptor(d)
        for app, version, folder in apps:
            if app != package:
                continue
            if version == have:
                return Corelease(d, nss, folder), None
            known.append("%s %s (NSS %s, %s)" % (app, version, nss,
                                                 os.path.relpath(d, ROOT)))
    known_s = "; co-releases exist only for: " + ", ".join(known) if known else \
        "; no coreleases/*.bundled names %s at all" % package
    if have is None:
        return None, ("NO CO-RELEASE TO TEST: %s is not installed%s "
                      "(make deps installs it when the archive serves that version)"
                      % (package, known_s))
    folder = "/usr/lib/" + package
    nss = bundled_nss_version(folder) or "unknown"
    return None, ("NO CO-RELEASE FOR THE INSTALLED %s %s: it bundles NSS %s in %s and "
                  "coreleases/ has no descriptor for it%s; add one "
                  "(coreleases/README.md, scripts/corelease-prepare.sh) when Debian's "
                  "archive serves its source" % (package, have, nss, folder, known_s))


def swapped_folder(app_folder, dest, libssl):
    """dest: a folder that is app_folder with libssl (a file) in place of
    its libssl3.so.  The program (a symlink would lead Firefox back to its
    real folder) and libssl3.so are copies, everything else symlinks to
    the original; a relative symlink of the original is made absolute."""
    os.mkdir(dest)
    for name in os.listdir(app_folder):
        src, dst = os.path.join(app_folder, name), os.path.join(dest, name)
        if name == "libssl3.so":
            shutil.copy2(libssl, dst)
        elif os.path.islink(src):
            target = os.readlink(src)
            if not os.path.isabs(target):
                target = os.path.normpath(os.path.join(app_folder, target))
            os.symlink(target, dst)
        elif os.path.isfile(src) and os.access(src, os.X_OK) and not name.endswith(".so"):
            shutil.copy2(src, dst)
        else:
            os.symlink(src, dst)
    return dest


def make_profile(directory, ca_crt):
    """A fresh Firefox profile whose cert9.db trusts ca_crt for TLS."""
    os.mkdir(directory, 0o700)
    for argv in (["certutil", "-N", "-d", "sql:" + directory, "--empty-password"],
                 ["certutil", "-A", "-d", "sql:" + directory, "-n", "detector-test-ca",
                  "-t", "C,,", "-i", ca_crt]):
        subprocess.run(argv, check=True, capture_output=True)
    with open(os.path.join(directory, "user.js"), "w") as f:
        for k, v in PREFS.items():
            f.write("user_pref(%s, %s);\n" % (_js(k), _js(v)))
    return directory


def _js(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')


class Load:
    """One finished headless page load."""

    def __init__(self, argv, rc, out, err, elapsed, screenshot, libs):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err
        self.elapsed, self.screenshot, self.libs = elapsed, screenshot, libs

    def libssl_loaded(self):
        """The libssl3.so paths the dynamic loader initialised."""
        return sorted({line.split("calling init: ", 1)[1].strip()
                       for line in self.libs.splitlines()
                       if "calling init: " in line and line.rstrip().endswith("/libssl3.so")})

    def __str__(self):
        return ("%s\n  exit %s after %.1fs, navigation error %s, at %s\n--- stdout\n%s--- stderr (last 6000)\n%s---"
                % (" ".join(self.argv), self.rc, self.elapsed, getattr(self, "nav_error", None),
                   getattr(self, "url", None), self.out[-3000:],
                   self.err[-6000:]))

    __repr__ = __str__


def _free_local_port():
    """A port below 32768 free on 127.0.0.1 (ephemeral ports start there)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port below 32768 on 127.0.0.1")


class Marionette:
    """The smallest client of Firefox's Marionette protocol (length-prefixed
    JSON over TCP on 127.0.0.1): enough to navigate, read the page and take
    a screenshot.  (--screenshot never finishes on an error page.)"""

    def __init__(self, port, proc, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Firefox's Marionette never listened on port %d" % port)
                time.sleep(0.2)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.msgid = 0
        self._read()          # the greeting

    def _read(self):
        while b":" not in self.buf:
            self._fill()
        n, rest = self.buf.split(b":", 1)
        n = int(n)
        while len(rest) < n:
            self._fill()
            rest = self.buf.split(b":", 1)[1]
        self.buf = rest[n:]
        return json.loads(rest[:n])

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("Marionette connection closed")
        self.buf += data

    def call(self, name, params=None):
        """(error or None, result) of one command."""
        self.msgid += 1
        msg = json.dumps([0, self.msgid, name, params or {}]).encode()
        self.sock.sendall(b"%d:%s" % (len(msg), msg))
        while True:
            reply = self._read()
            if reply[0] == 1 and reply[1] == self.msgid:
                return reply[2], reply[3]

    def close(self):
        self.sock.close()


def load_page(program, profile, url, addr, workdir, screenshot, env_extra=None):
    """Starts `program --headless --marionette` with the test name
    resolving to addr (a private /etc/hosts in a mount namespace) and a
    clean environment plus env_extra, navigates to url, records where it
    ended (load.url: about:neterror?e=... on an error page), the page's
    source and a screenshot, and quits.  The dynamic loader's library log
    (LD_DEBUG=libs) is kept to show which libssl3.so was loaded."""
    from testworld.ports import HOST
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
    # DETECTOR_TEST_MOZ_LOG=pipnss:5,nsHttp:5 keeps Firefox's own log (its
    # release builds write it too) as <DETECTOR_TEST_MOZ_LOG_DIR or the
    # test's folder>/<page>.moz.log: how the hang after DetecTor's verdict
    # was diagnosed.
    if os.environ.get("DETECTOR_TEST_MOZ_LOG"):
        logdir = os.environ.get("DETECTOR_TEST_MOZ_LOG_DIR") or workdir
        env["MOZ_LOG"] = os.environ["DETECTOR_TEST_MOZ_LOG"] + ",timestamp"
        env["MOZ_LOG_FILE"] = os.path.join(logdir, os.path.basename(workdir) + ".moz.log")
    argv = [program, "--headless", "--no-remote", "--marionette", "--profile", profile,
            "about:blank"]
    full = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', hosts] + argv
    t0 = time.monotonic()
    proc = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    nav_error, where, source, note, step, load_state = None, None, "", "", "connect", None
    try:
        m = Marionette(port, proc, FIREFOX_TIMEOUT)
        step = "NewSession"
        err, _ = m.call("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {
            "pageLoadStrategy": "none"}}})
        if err:
            raise RuntimeError("NewSession: %s" % err)
        # Navigate returns at once ("none"); then wait for the document to
        # be complete (the page or Firefox's error page), at most
        # PAGE_TIMEOUT seconds, and take what is there.
        step = "Navigate"
        nav_error, _ = m.call("WebDriver:Navigate", {"url": url})
        step = "wait for the page"
        deadline = time.monotonic() + PAGE_TIMEOUT
        while True:
            where = m.call("WebDriver:GetCurrentURL")[1].get("value")
            state = m.call("WebDriver:ExecuteScript", {
                "script": "return document.readyState", "args": []})[1].get("value")
            if (where != "about:blank" and state == "complete") or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.3)
        if state != "complete":
            note += "\n[test: page still '%s' at %s after %ds]\n" % (state, where, PAGE_TIMEOUT)
        load_state = state
        step = "read the page"
        source = m.call("WebDriver:GetPageSource")[1].get("value") or ""
        step = "TakeScreenshot"
        err, shot = m.call("WebDriver:TakeScreenshot", {"full": False, "hash": False})
        if not err:
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["value"]))
        m.call("Marionette:Quit", {"flags": ["eForceQuit"]})
        m.close()
    except (OSError, RuntimeError, ValueError) as e:
        note = "\n[test: at %s: %s]\n" % (step, e)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        stop_group(proc.pid)
        out, err = proc.communicate()
        note += "[test: killed, Firefox did not quit]\n"
    elapsed = time.monotonic() - t0
    stop_group(proc.pid)          # a crash helper or content process left over
    libs = ""
    for path in glob.glob(lddebug + ".*"):
        with open(path, errors="replace") as f:
            libs += f.read()
        os.unlink(path)
    load = Load(argv, proc.returncode, out, err + note, elapsed, screenshot, libs)
    load.nav_error, load.url, load.source = nav_error, where, source
    load.state = load_state
    return load
