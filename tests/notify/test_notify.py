"""The user is told (issue 14): a refusal by DetecTor inside an unmodified
NSS application becomes one desktop notification.

Real parts end to end: Debian's unmodified tstclnt under build/detector-run
is refused through the test world's rogue-CA MITM; libdetector sends the
event to $XDG_RUNTIME_DIR/detector/events (detector/nss/events.c);
detector/tools/detector-notify receives it and calls
org.freedesktop.Notifications.Notify on a real session dbus-daemon, where
capture_notifications.py owns the name and records each call (a real
notification daemon needs a display; the call is the same).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from conftest import nssdb, scratch, tmpdir_, world  # noqa: E402,F401
from test_nss_hook import nb_results, nbclient, run_app, tstclnt  # noqa: E402
from testworld.ports import MITM_ADDR, REAL_ADDR  # noqa: E402
from testworld.processes import stop_child  # noqa: E402

AGENT = os.path.join(HERE, "..", "..", "detector", "tools", "detector-notify")
CAPTURE = os.path.join(HERE, "capture_notifications.py")
PYTHON = "/usr/bin/python3"
SETTLE = 1.5          # seconds to wait for something that must NOT happen


def wait_for(what, cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail("timed out after %ss waiting for %s" % (timeout, what), pytrace=False)


def stop(proc):
    stop_child(proc, 5)


class Desktop:
    """A session bus and a recorder owning org.freedesktop.Notifications."""

    def __init__(self, d):
        self.dir = d
        self.calls_file = os.path.join(d, "notifications.jsonl")
        open(self.calls_file, "w").close()
        self.bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1",
             "--address=unix:path=" + os.path.join(d, "bus")],
            stdout=subprocess.PIPE, text=True)
        self.address = self.bus.stdout.readline().strip()
        assert self.address.startswith("unix:"), "dbus-daemon did not start"
        self.env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.address)
        self.capture = subprocess.Popen([PYTHON, CAPTURE, self.calls_file],
                                        env=self.env, stdout=subprocess.PIPE,
                                        text=True)
        assert self.capture.stdout.readline().strip() == "ready", \
            "the notification recorder did not own its name"

    def calls(self):
        with open(self.calls_file) as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        stop(self.capture)
        stop(self.bus)


class Agent:
    """detector-notify with its own runtime folder and log."""

    def __init__(self, desktop, runtime, interval=60):
        self.runtime = runtime
        self.socket = os.path.join(runtime, "detector", "events")
        self.log_file = os.path.join(runtime, "..", "agent.log")
        self.proc = subprocess.Popen(
            [PYTHON, AGENT, "--interval", str(interval)],
            env=dict(desktop.env, XDG_RUNTIME_DIR=runtime),
            stdout=subprocess.DEVNULL, stderr=open(self.log_file, "w"))
        wait_for("the agent's socket", lambda: "listening on" in self.log())

    def log(self):
        with open(self.log_file) as f:
            return f.read()

    def send(self, data):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.sendto(data, self.socket)
        finally:
            s.close()


def runtime_dir(base):
    d = os.path.join(base, "run")
    os.mkdir(d, 0o700)
    return d


@pytest.fixture
def desktop(tmpdir_):
    d = Desktop(tmpdir_)
    yield d
    d.stop()


@pytest.fixture
def agent(desktop, tmpdir_, monkeypatch):
    runtime = runtime_dir(tmpdir_)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)   # seen by run_app's apps
    a = Agent(desktop, runtime)
    yield a
    stop(a.proc)


def refused(world, nssdb, d):
    app = run_app(world, d, tstclnt(nssdb, world.cport), MITM_ADDR)
    assert app.rc != 0 and "DETECTOR_ERROR_MITM" in app.err, app
    return app


def fresh(base, name):
    d = os.path.join(base, name)
    os.mkdir(d, 0o700)
    return d


# -- 1. one refusal, one notification; the same site again is held back

def test_refusal_gives_exactly_one_notification_then_rate_limited(
        world, nssdb, tmpdir_, desktop, agent):
    site = "server.test:%d" % world.cport
    refused(world, nssdb, fresh(tmpdir_, "app1"))
    calls = wait_for("a notification", desktop.calls)
    time.sleep(SETTLE)
    calls = desktop.calls()
    assert len(calls) == 1, calls
    n = calls[0]
    assert n["app"] == "DetecTor" and n["urgency"] == 2, n
    assert site in n["summary"] and "man-in-the-middle" in n["summary"], n
    assert "tstclnt tried to connect to " + site in n["body"], n
    assert "differs from what the Tor spheres see" in n["body"], n
    assert "What the Tor spheres saw: " in n["body"] and "spheres" in \
        n["body"].split("What the Tor spheres saw: ")[1], n
    assert "refused-mitm %s by tstclnt: notified" % site in agent.log()

    # The same site within the rate window: the event arrives (the agent
    # says so) but no second notification is shown.
    refused(world, nssdb, fresh(tmpdir_, "app2"))
    wait_for("the agent to hold back the second refusal",
             lambda: "refused-mitm %s by tstclnt: suppressed (1 within" % site
             in agent.log())
    time.sleep(SETTLE)
    assert len(desktop.calls()) == 1, desktop.calls()
    assert agent.proc.poll() is None


# -- 2. garbage on the socket: no notification, the agent keeps running

def event(**over):
    ev = {"v": 1, "event": "refused-mitm", "host": "other.test", "port": 443,
          "app": "firefox-esr", "pid": 42, "time": 1764700000,
          "reason": "0 of 5 spheres see this key"}
    ev.update(over)
    return json.dumps(ev).encode()


GARBAGE = [
    b"",
    b"\xff\xfe\x00garbage",
    b"{",
    b"[1, 2, 3]",
    b"null",
    b"{" * 5000,                                  # too long, and too deep
    b"x" * 4097,                                  # one byte too long
    event(event="refused-everything"),
    event(port=70000),
    event(port=True),
    event(v=2),
    event(host=""),
    event(host="evil.test\nDetecTor: all is well"),
    json.dumps({"v": 1}).encode(),
    event()[:-1] + b', "extra": 1}',
    b'{"v":1,"v":1}' + b" " * 100,
]


def test_garbage_is_rejected_and_the_agent_survives(desktop, agent):
    for data in GARBAGE:
        agent.send(data)
    wait_for("every datagram rejected",
             lambda: agent.log().count("rejected a datagram") == len(GARBAGE))
    time.sleep(SETTLE)
    assert desktop.calls() == [], desktop.calls()
    assert agent.proc.poll() is None, agent.log()
    # Still working, and the untrusted text reaches the desktop as text,
    # never as markup.
    agent.send(event(host="other.test", reason="<b>0 of 5</b> & more"))
    calls = wait_for("a notification after the garbage", desktop.calls)
    assert len(calls) == 1 and "other.test:443" in calls[0]["summary"], calls
    assert "&lt;b&gt;0 of 5&lt;/b&gt; &amp; more" in calls[0]["body"], calls


def test_count_of_held_back_refusals_in_the_next_notice(desktop, tmpdir_):
    runtime = runtime_dir(tmpdir_)
    agent = Agent(desktop, runtime, interval=1)
    try:
        for _ in range(3):
            agent.send(event())
        wait_for("two held back", lambda: "suppressed (2 within" in agent.log())
        time.sleep(1.1)
        agent.send(event())
        calls = wait_for("the second notice",
                         lambda: len(desktop.calls()) == 2 and desktop.calls())
        assert "(2 more refusals of this site since the last notice)" in \
            calls[1]["body"], calls
    finally:
        stop(agent.proc)


def test_no_notification_daemon_then_one(desktop, agent):
    """The notification daemon gone: the agent logs it and carries on; the
    site is not held back, so the next refusal is shown once it is back."""
    stop(desktop.capture)
    agent.send(event())
    wait_for("the agent to say it could not show it",
             lambda: "refused-mitm other.test:443 by firefox-esr: not shown"
             in agent.log())
    assert agent.proc.poll() is None, agent.log()
    desktop.capture = subprocess.Popen([PYTHON, CAPTURE, desktop.calls_file],
                                       env=desktop.env, stdout=subprocess.PIPE,
                                       text=True)
    assert desktop.capture.stdout.readline().strip() == "ready"
    agent.send(event())
    calls = wait_for("the notification", desktop.calls)
    assert len(calls) == 1 and "other.test:443" in calls[0]["summary"], calls

def test_reroute_and_unconfirmed_acceptance_are_told_as_such(desktop, agent):
    """Not every event is a refusal: a reroute and an acceptance the
    spheres could not confirm (Tor unreachable) each give their own
    notice, never the words 'DetecTor refused'."""
    agent.send(event(event="rerouted", host="r.test"))
    agent.send(event(event="accepted-unconfirmed", host="u.test",
                     reason="only 0 of 5 spheres confirmed the key"))
    calls = wait_for("two notifications",
                     lambda: desktop.calls() if len(desktop.calls()) >= 2
                     else None)
    assert len(calls) == 2, calls
    rerouted = [c for c in calls if "r.test:443" in c["summary"]]
    unconfirmed = [c for c in calls if "u.test:443" in c["summary"]]
    assert len(rerouted) == 1 and len(unconfirmed) == 1, calls
    assert "rerouted through Tor" in rerouted[0]["summary"], rerouted
    assert "DetecTor rerouted the connection" in rerouted[0]["body"], rerouted
    assert "Tor spheres unreachable" in unconfirmed[0]["summary"], unconfirmed
    assert "DetecTor accepted it unconfirmed" in unconfirmed[0]["body"]
    assert "Tor may be blocked" in unconfirmed[0]["body"], unconfirmed
    assert not any("refused" in c["body"] for c in calls), calls


# -- 3. what libdetector sends, and where it refuses to send

def listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setblocking(False)
    return s


def event_listener(base, monkeypatch):
    """listener() where libdetector sends its events for this test:
    XDG_RUNTIME_DIR (set) /detector/events."""
    runtime = runtime_dir(base)
    os.mkdir(os.path.join(runtime, "detector"), 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    return listener(os.path.join(runtime, "detector", "events"))


def received(s):
    out = []
    while True:
        try:
            out.append(s.recv(65536))
        except BlockingIOError:
            return out


def test_event_sent_by_libdetector(world, nssdb, tmpdir_, monkeypatch):
    s = event_listener(tmpdir_, monkeypatch)
    try:
        app = refused(world, nssdb, fresh(tmpdir_, "app"))
        got = received(s)
    finally:
        s.close()
    assert len(got) == 1, got
    assert got[0].endswith(b"\n") and got[0].count(b"\n") == 1, got
    ev = json.loads(got[0])
    assert set(ev) == {"v", "event", "host", "port", "app", "pid", "time", "reason"}, ev
    assert ev["event"] == "refused-mitm" and ev["host"] == "server.test", ev
    assert ev["port"] == world.cport and ev["app"] == "tstclnt" and ev["v"] == 1, ev
    assert abs(ev["time"] - time.time()) < 120, ev
    assert ev["reason"] and ev["reason"] in app.err, (ev, app)


def test_remembered_refusal_sends_its_event_too(world, nssdb, tmpdir_, monkeypatch):
    """Two handshakes in one non-blocking process: the first refused by the
    spheres' probes (on a worker thread), the second by the remembered
    verdict with no probe: one event each."""
    s = event_listener(tmpdir_, monkeypatch)
    try:
        app = run_app(world, fresh(tmpdir_, "nb"),
                      nbclient(nssdb, world.cport, MITM_ADDR, count=2, cache=False),
                      MITM_ADDR)
        got = [json.loads(d) for d in received(s)]
    finally:
        s.close()
    assert [r.startswith("failed DETECTOR_ERROR_MITM:") for r, _ in nb_results(app)] \
        == [True, True], app
    assert "remembered verdict 'reject'" in app.err, app
    assert [(e["event"], e["host"], e["app"]) for e in got] == \
        [("refused-mitm", "server.test", "nbclient")] * 2, got
    assert "differs from what" in got[0]["reason"], got
    assert got[1]["reason"], got

def test_no_event_through_a_symlinked_folder(world, nssdb, tmpdir_, monkeypatch):
    runtime = runtime_dir(tmpdir_)
    real = os.path.join(tmpdir_, "elsewhere")
    os.mkdir(real, 0o700)
    os.symlink(real, os.path.join(runtime, "detector"))
    s = listener(os.path.join(real, "events"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    try:
        refused(world, nssdb, fresh(tmpdir_, "app"))
        assert received(s) == []
        os.chmod(real, 0o777)           # and not a folder others may write
        os.unlink(os.path.join(runtime, "detector"))
        os.rename(real, os.path.join(runtime, "detector"))
        refused(world, nssdb, fresh(tmpdir_, "app2"))
        assert received(s) == []
    finally:
        s.close()


# -- 4. no agent: the refusal is unchanged and quick

def test_without_an_agent_the_refusal_is_unchanged_and_quick(
        world, nssdb, tmpdir_, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    base = refused(world, nssdb, fresh(tmpdir_, "base"))

    runtime = runtime_dir(tmpdir_)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    folder = os.path.join(runtime, "detector")
    path = os.path.join(folder, "events")
    cases = []
    cases.append(("no folder", refused(world, nssdb, fresh(tmpdir_, "a1"))))
    os.mkdir(folder, 0o700)
    listener(path).close()                       # a stale socket: nobody reads
    cases.append(("stale socket", refused(world, nssdb, fresh(tmpdir_, "a2"))))
    os.unlink(path)
    # A listener that never reads, its queue full: a blocking send would
    # hang the handshake until tstclnt's own timeout.
    s = listener(path)
    w = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    w.setblocking(False)
    try:
        while True:
            w.sendto(b"x" * 1024, path)
    except BlockingIOError:
        pass
    finally:
        w.close()
    try:
        cases.append(("full queue", refused(world, nssdb, fresh(tmpdir_, "a3"))))
    finally:
        s.close()

    def refusal_lines(app):
        return re.findall(r"server\.test:\d+ REFUSED \(\w+\)|DETECTOR_ERROR_\w+",
                          app.err)

    for what, app in cases:
        assert refusal_lines(app) == refusal_lines(base), (what, app, base)
        assert app.elapsed < base.elapsed + 3.0, \
            "%s: %.2fs, %.2fs without any socket" % (what, app.elapsed, base.elapsed)


# -- 5. the event line itself, for hostile input (ASan/UBSan build)

ROOT = os.path.join(HERE, "..", "..")
# detector_nss.h: DETECTOR_ERROR_BASE is SSL_ERROR_BASE (-0x3000) + 0x380.
MITM, UNDECIDED, CONFIG, UNCHECKABLE = (-0x3000 + 0x380 + i for i in range(4))


@pytest.fixture(scope="module")
def formatter(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("fmt") / "events_format")
    flags = subprocess.run(["pkg-config", "--cflags", "nss", "nspr"],
                           capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                    "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                    "-I" + os.path.join(ROOT, "detector/include"),
                    "-I" + os.path.join(ROOT, "detector/lib"),
                    "-I" + os.path.join(ROOT, "detector/nss")] + flags +
                   ["-o", exe, os.path.join(HERE, "events_format.c"),
                    os.path.join(ROOT, "detector/nss/events.c"),
                    os.path.join(ROOT, "detector/lib/filetrust.c"),
                    os.path.join(ROOT, "detector/lib/errmsg.c")], check=True)

    def run(error, host, port, app, reason, size=None):
        argv = [exe, str(error), host, str(port), app, reason] + \
            ([str(size)] if size is not None else [])
        p = subprocess.run(argv, capture_output=True)
        assert p.returncode == 0 and p.stderr == b"", p
        return p.stdout
    return run


def test_event_line_escapes_and_fits(formatter):
    kinds = {MITM: "refused-mitm", UNDECIDED: "refused-undecided",
             CONFIG: "config-error", UNCHECKABLE: "refused-uncheckable"}
    for code, kind in kinds.items():
        ev = json.loads(formatter(code, "a.test", 443, "curl", "why"))
        assert ev == {"v": 1, "event": kind, "host": "a.test", "port": 443,
                      "app": "curl", "pid": 4242, "time": 1764706000,
                      "reason": "why"}
    assert formatter(0, "a.test", 443, "curl", "accepted") == b""
    hostile = [b'a"b\\c', b"evil.test\n{\"v\":1}", b"\x1b[2Jx\x7f\x01",
               "b\u00e4nk.test".encode(), b"\xff\xfe\xc3", b"}" * 300]
    for h in hostile:
        line = formatter(MITM, h, 1, h[:100], h * 3)
        assert line.endswith(b"\n") and line.count(b"\n") == 1, line
        line.decode("ascii")                    # never other bytes
        ev = json.loads(line)
        expect = "".join(c if ord(c) < 0x80 else "?"
                         for c in h.decode("latin-1"))
        assert ev["host"] == expect and ev["reason"] == expect * 3, (h, ev)
    # A reason longer than the event: cut, still one valid line.
    line = formatter(MITM, "a.test", 443, "curl", "\n" * 5000)
    assert len(line) <= 4096 and line.endswith(b"}\n"), line[-40:]
    assert set(json.loads(line)["reason"]) == {"\n"}
    # Buffers too small for the head: nothing, never an overflow.
    for size in (0, 1, 10, 100):
        assert formatter(MITM, "a.test", 443, "curl", "why", size) == b""
    line = formatter(MITM, "a.test", 443, "curl", "why" * 100, 150)
    assert len(line) < 150 and json.loads(line)["reason"].startswith("why")


# -- 6. the other refusals reach the socket too

def test_config_error_and_undecided_events(world, nssdb, tmpdir_, monkeypatch):
    s = event_listener(tmpdir_, monkeypatch)
    try:
        app = run_app(world, fresh(tmpdir_, "cfg"), tstclnt(nssdb, world.cport),
                      MITM_ADDR, config="[detector]\nquorum = many\n")
        assert app.rc != 0 and "DETECTOR_ERROR_CONFIG" in app.err, app
        [ev] = [json.loads(d) for d in received(s)]
        assert ev["event"] == "config-error" and ev["host"] == "server.test", ev
        assert "quorum" in ev["reason"], ev

        spheres = world.sphere_list(world.honest[0], *world.blackholes[:4])
        app = run_app(world, fresh(tmpdir_, "und"), tstclnt(nssdb, world.cport),
                      REAL_ADDR, spheres=spheres,
                      config="[detector]\non_undecided = reject\n"
                      "probe_timeout_ms = 1500\ndeadline_ms = 1500\n")
        assert app.rc != 0 and "DETECTOR_ERROR_UNDECIDED" in app.err, app
        [ev] = [json.loads(d) for d in received(s)]
        assert ev["event"] == "refused-undecided" and ev["port"] == world.cport, ev
        assert ev["reason"] in app.err, (ev, app)
    finally:
        s.close()


def test_unconfirmed_acceptance_sends_its_event(world, nssdb, tmpdir_,
                                                monkeypatch):
    """Tor unreachable (issue 14): four of five spheres black holes, the
    default on_undecided = accept lets the clean connection through, and
    the desktop is told it was not confirmed: one accepted-unconfirmed
    event, no refusal."""
    s = event_listener(tmpdir_, monkeypatch)
    try:
        spheres = world.sphere_list(world.honest[0], *world.blackholes[:4])
        app = run_app(world, fresh(tmpdir_, "unc"), tstclnt(nssdb, world.cport),
                      REAL_ADDR, spheres=spheres,
                      config="[detector]\nprobe_timeout_ms = 1500\n"
                      "deadline_ms = 1500\n")
        assert app.rc == 0 and "DETECTOR_ERROR" not in app.err, app
        [ev] = [json.loads(d) for d in received(s)]
        assert ev["event"] == "accepted-unconfirmed", ev
        assert ev["host"] == "server.test" and ev["port"] == world.cport, ev
        assert "1 of 5" in ev["reason"] or "spheres" in ev["reason"], ev
    finally:
        s.close()
