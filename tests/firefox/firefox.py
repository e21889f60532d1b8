"""Debian's Firefox ESR as a test subject: a fresh profile trusting the
test CA, and one headless page load with a private /etc/hosts.  What it
shares with Thunderbird (the co-release, the folder swap, Marionette, the
headless start) is testworld.mozilla.

Used by test_firefox.py; nothing here changes /usr.
"""

import base64
import os
import subprocess
import time

from testworld.mozilla import PREFS, Marionette, libssl_loaded, read_ld_debug, start_headless
from testworld.mozilla import make_profile as _make_profile
from testworld.processes import stop_group

FIREFOX_TIMEOUT = 60          # seconds for any one Marionette command
PAGE_TIMEOUT = 30             # seconds for the page load itself


def make_profile(directory, ca_crt):
    """A fresh Firefox profile whose cert9.db trusts ca_crt for TLS."""
    return _make_profile(directory, ca_crt, PREFS)


class Load:
    """One finished headless page load."""

    def __init__(self, argv, rc, out, err, elapsed, screenshot, libs):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err
        self.elapsed, self.screenshot, self.libs = elapsed, screenshot, libs

    def libssl_loaded(self):
        """The libssl3.so paths the dynamic loader initialised."""
        return libssl_loaded(self.libs)

    def __str__(self):
        return ("%s\n  exit %s after %.1fs, navigation error %s, at %s\n--- stdout\n%s--- stderr (last 6000)\n%s---"
                % (" ".join(self.argv), self.rc, self.elapsed, getattr(self, "nav_error", None),
                   getattr(self, "url", None), self.out[-3000:],
                   self.err[-6000:]))

    __repr__ = __str__


def load_page(program, profile, url, addr, workdir, screenshot, env_extra=None):
    """Starts `program --headless --marionette` with the test name
    resolving to addr (a private /etc/hosts in a mount namespace) and a
    clean environment plus env_extra, navigates to url, records where it
    ended (load.url: about:neterror?e=... on an error page), the page's
    source and a screenshot, and quits.  The dynamic loader's library log
    (LD_DEBUG=libs) is kept to show which libssl3.so was loaded."""
    env = dict(env_extra or {})
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
    t0 = time.monotonic()
    proc, port, lddebug = start_headless(argv, profile, addr, workdir, env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
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
    load = Load(argv, proc.returncode, out, err + note, elapsed, screenshot,
                read_ld_debug(lddebug))
    load.nav_error, load.url, load.source = nav_error, where, source
    load.state = load_state
    return load
