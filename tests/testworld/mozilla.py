"""A Mozilla application (Debian's Firefox ESR, Thunderbird) as a test
subject, for tests/firefox and tests/thunderbird: which co-release fits the
installed package, a copy of its folder with one libssl3.so swapped, a
fresh profile trusting the test CA, the smallest Marionette client, one
headless start with a private /etc/hosts, and what the tests read back
(which libssl3.so was loaded, DetecTor's log lines, the spheres' probes).
Nothing here changes /usr.
"""

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import time

from .ports import HOST, free_low_port

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(ROOT, "build")
CORELEASE_BUILD = os.environ.get("DETECTOR_CORELEASE_BUILD") or os.path.join(BUILD, "corelease")
LIBDETECTOR = os.path.join(BUILD, "lib", "libdetector.so.0")

# Quiet, offline prefs: the application talks to nothing but what it is
# given (Firefox's; Thunderbird's adds its own).
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


# -- which co-release, and the application's folder with it


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

    def missing(self):
        """What to build first (a message naming the file and the make
        target), or None when the co-release and libdetector are built."""
        for path, target in ((self.library, "make corelease"), (LIBDETECTOR, "make")):
            if not os.path.isfile(path):
                return "%s is missing: run `%s`" % (path, target)
        return None

    def copy(self, work, program):
        """program in a copy of the application's folder under work, with
        the co-release libssl3.so in it (swapped_folder())."""
        folder = swapped_folder(self.folder, os.path.join(work, os.path.basename(self.folder)),
                                self.library)
        return os.path.join(folder, program)


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


# -- the profile


def js_value(v):
    """v as a JavaScript literal in user.js."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')


def make_profile(directory, ca_crt, prefs):
    """A fresh profile whose cert9.db trusts ca_crt for TLS, with prefs in
    its user.js."""
    os.mkdir(directory, 0o700)
    for argv in (["certutil", "-N", "-d", "sql:" + directory, "--empty-password"],
                 ["certutil", "-A", "-d", "sql:" + directory, "-n", "detector-test-ca",
                  "-t", "C,,", "-i", ca_crt]):
        subprocess.run(argv, check=True, capture_output=True)
    with open(os.path.join(directory, "user.js"), "w") as f:
        for k, v in prefs.items():
            f.write("user_pref(%s, %s);\n" % (js_value(k), js_value(v)))
    return directory


# -- one headless run


class Marionette:
    """The smallest client of Mozilla's Marionette protocol (length-prefixed
    JSON over TCP on 127.0.0.1): enough to navigate, read the page, take a
    screenshot and run chrome-context scripts.  (--screenshot never
    finishes on an error page.)"""

    def __init__(self, port, proc, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Marionette never listened on port %d" % port)
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


def start_headless(argv, profile, addr, workdir, env_extra, **popen):
    """Starts argv (the program, --marionette, --profile profile ...) in
    its own session with the test name resolving to addr (a private
    /etc/hosts in a mount namespace), Marionette on a free port written to
    the profile, and a clean environment plus env_extra; the dynamic
    loader's library log (LD_DEBUG=libs) goes to files read_ld_debug()
    collects.  Returns (Popen, the Marionette port, the LD_DEBUG_OUTPUT
    prefix); popen goes to subprocess.Popen (stdout, stderr)."""
    hosts = os.path.join(workdir, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1\tlocalhost\n%s\t%s\n" % (addr, HOST))
    home = os.path.join(workdir, "home")
    os.makedirs(home, 0o700, exist_ok=True)
    lddebug = os.path.join(workdir, "ld-debug")
    port = free_low_port("127.0.0.1")
    with open(os.path.join(profile, "user.js"), "a") as f:
        f.write("user_pref(\"marionette.port\", %d);\n" % port)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
           "TMPDIR": workdir, "MOZ_CRASHREPORTER_DISABLE": "1",
           "MOZ_HEADLESS": "1", "LD_DEBUG": "libs", "LD_DEBUG_OUTPUT": lddebug}
    env.update(env_extra or {})
    full = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', hosts] + argv
    proc = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True, **popen)
    return proc, port, lddebug


def read_ld_debug(lddebug):
    """The dynamic loader's log of a start_headless run (its files are
    removed)."""
    libs = ""
    for path in glob.glob(lddebug + ".*"):
        with open(path, errors="replace") as f:
            libs += f.read()
        os.unlink(path)
    return libs


def libssl_loaded(libs):
    """The libssl3.so paths the dynamic loader initialised, from its log."""
    return sorted({line.split("calling init: ", 1)[1].strip()
                   for line in libs.splitlines()
                   if "calling init: " in line and line.rstrip().endswith("/libssl3.so")})


# -- what the tests read back


def detector_env(world, directory, enabled=True, config=None):
    """The environment that has the co-release load libdetector and log its
    decisions, probing the world's honest spheres (none if not enabled);
    with config, that text as DETECTOR_CONFIG (directory/detector.conf)."""
    env = {}
    if enabled:
        env = {"NSS_DETECTOR_LIBRARY": LIBDETECTOR, "DETECTOR_LOG": "decisions",
               "DETECTOR_SPHERES": world.sphere_list(*world.honest)}
    if config is not None:
        env["DETECTOR_CONFIG"] = os.path.join(directory, "detector.conf")
        with open(env["DETECTOR_CONFIG"], "w") as f:
            f.write(config)
    return env


def sphere_marks(world):
    """Where each honest sphere's log ends now, for probes_seen()."""
    return [s.log_size() for s in world.honest]


def probes_seen(world, since, port):
    """How many probes of HOST:port the honest spheres saw after since
    (sphere_marks())."""
    return sum(1 for s, m in zip(world.honest, since) for t in s.targets(m)
               if t == (HOST, port))


def detector_lines(err):
    """The lines of an application's stderr that mention DetecTor."""
    return [l for l in err.splitlines() if "detector" in l.lower()]


def libssl_beside(program):
    """What libssl_loaded() says for a program that loads the libssl3.so
    of its own folder."""
    return [os.path.join(os.path.dirname(program), "libssl3.so")]


def refused_lines(err, port):
    """The lines of DetecTor's log that refuse HOST:port with a REJECT."""
    return [l for l in err.splitlines()
            if re.search(r"%s:%d REFUSED \(reject\)" % (re.escape(HOST), port), l)]


def accepted(err, port):
    """Whether DetecTor's log accepts HOST:port with an ACCEPT."""
    return re.search(r"%s:%d accepted \(accept\)" % (re.escape(HOST), port), err) is not None


def checks(err, port):
    """How many checks of HOST:port DetecTor's log shows."""
    return err.count("%s:%d probing the spheres" % (HOST, port))


def assert_refused_by_probes(world, since, program, port, run):
    """What every refusal of the MITM by the co-release shows: program
    loaded the co-release libssl3.so beside it, DetecTor's log names the
    host and the verdict, and real probes (after since: sphere_marks())
    decided.  run: the finished Load or Session."""
    assert run.libssl_loaded() == libssl_beside(program), \
        "the copy must load the co-release libssl3.so:\n%s" % run
    assert refused_lines(run.err, port), \
        "DetecTor's log must name the host and the verdict:\n%s" % run
    assert probes_seen(world, since, port) >= 2, "the refusal must come from real probes"


def assert_stock(world, since, program, port, run):
    """What the unmodified application shows: program loaded its own
    libssl3.so, DetecTor said nothing and no sphere probed HOST:port
    (after since: sphere_marks())."""
    assert run.libssl_loaded() == libssl_beside(program), run
    assert not detector_lines(run.err), run
    assert probes_seen(world, since, port) == 0, "the stock application probes nothing"
