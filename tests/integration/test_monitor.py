"""detector-monitor against the loopback world: real openssl servers whose
certificate the tests swap, the world's microsocks spheres, a real hook
program, the state file on disk.

The monitored services are extra `openssl s_server`s on 127.0.0.2 (which
the honest spheres resolve server.test to); a test replaces the server's
certificate by stopping it and starting another on the same port, so every
path (direct and all spheres) sees the change, as with an attacker at the
server.  The hook is a small Python program that appends its DETECTOR_*
environment to a JSON-lines file; every assertion on alerts reads that file.
"""

import base64
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import time

import pytest

from conftest import BUILD
from testworld.ports import HOST, REAL_ADDR, SPHERE_ADDR, free_port
from testworld.runs import Run
from testworld.socks5 import Socks5Server

MONITOR = os.path.join(BUILD, "detector-monitor")
RUN_TIMEOUT = 60

HOOK = """#!/usr/bin/python3
import json, os, sys
rec = {k: v for k, v in os.environ.items() if k.startswith("DETECTOR_")}
rec["argv"] = sys.argv[1:]
rec["inherited"] = os.environ.get("MONITOR_TEST_MARK")
with open(os.environ["MONITOR_HOOK_LOG"], "a") as f:
    f.write(json.dumps(rec) + "\\n")
"""


class LateSphere(Socks5Server):
    """A Tor-like SOCKS5 sphere started on a port chosen in advance: down
    until it is created, then up (a sphere coming back)."""

    def __init__(self, hosts, port):
        super().__init__(hosts, SPHERE_ADDR, port)


class MonRun(Run):
    name = "detector-monitor"

    @property
    def status_line(self):
        return self.out.splitlines()[0] if self.out else ""

    def perf(self):
        """Nagios performance data as a dict of strings."""
        assert "|" in self.status_line, self
        return dict(kv.split("=", 1) for kv in self.status_line.split("|", 1)[1].split())

    def json(self):
        lines = [ln for ln in self.out.splitlines() if ln.strip()]
        assert lines, self
        return [json.loads(ln) for ln in lines]


class Monitor:
    """One monitor setup in its own folder: config, engine config, hooks,
    state, and the hook's log."""

    def __init__(self, world, d, spheres=None):
        self.world, self.dir = world, d
        self.hooks = os.path.join(d, "hooks")
        os.mkdir(self.hooks, 0o700)
        self.hook_log = os.path.join(d, "hook.log")
        self.add_hook("50-record", HOOK)
        self.state = os.path.join(d, "state", "state.json")
        self.config = os.path.join(d, "monitor.conf")
        self.dconfig = os.path.join(d, "detector.conf")
        self.spheres = spheres or world.honest
        with open(self.dconfig, "w") as f:
            f.write("[detector]\nspheres = %s\nprobe_timeout_ms = 5000\n"
                    "deadline_ms = 8000\n" % world.sphere_list(*self.spheres))

    def add_hook(self, name, text, mode=0o700):
        path = os.path.join(self.hooks, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def write(self, services, monitor=""):
        """services: {name: {key: value or [values]}}"""
        text = "[monitor]\nstate = %s\nhooks = %s\n%s\n" % (self.state, self.hooks, monitor)
        for name, keys in services.items():
            text += "\n[%s]\n" % name
            for k, v in keys.items():
                for item in (v if isinstance(v, list) else [v]):
                    text += "%s = %s\n" % (k, item)
        with open(self.config, "w") as f:
            f.write(text)

    def run(self, *args, timeout=RUN_TIMEOUT):
        if not os.access(MONITOR, os.X_OK):
            pytest.fail("%s is missing: build it first (`make`)" % MONITOR, pytrace=False)
        argv = ["-c", self.config, "--detector-config", self.dconfig] + [str(a) for a in args]
        env = {k: v for k, v in os.environ.items()
               if k not in ("DETECTOR_CONFIG", "DETECTOR_SPHERES")}
        env["HOME"] = self.dir
        env["MONITOR_HOOK_LOG"] = self.hook_log
        env["MONITOR_TEST_MARK"] = "passed-through"
        env["DETECTOR_EVENT"] = "inherited-must-be-replaced"
        t0 = time.monotonic()
        try:
            proc = subprocess.run([MONITOR] + argv, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            pytest.fail("detector-monitor %s: still running after %ss\n%s"
                        % (" ".join(argv), timeout, e.stdout), pytrace=False)
        r = MonRun(argv, proc, time.monotonic() - t0)
        print(r)
        assert "leaked references" not in r.err, r     # NSS_Shutdown's verdict
        return r

    def events(self):
        try:
            with open(self.hook_log) as f:
                return [json.loads(ln) for ln in f if ln.strip()]
        except FileNotFoundError:
            return []


@pytest.fixture
def mon(world, tmpdir_):
    return Monitor(world, tmpdir_)


def service(port, **keys):
    s = {"host": HOST, "port": port, "address": REAL_ADDR}
    s.update(keys)
    return s


def b64pin(hexpin):
    return base64.b64encode(bytes.fromhex(hexpin)).decode()


def paths_of(event):
    return set(event["DETECTOR_PATHS"].split())


def swap(world, server, name, cert):
    """The server on server.port now presents cert (stop, start again)."""
    port = server.port
    server.stop()
    return world.tls_server(name, cert, port=port)


# --------------------------------------------------------------------------
# The acceptance path: rogue certificate at the server, then restored


def test_rogue_key_alerts_once_then_recovers(world, mon):
    srv = world.tls_server("mon-rogue-swap", world.real)
    mon.write({"web": service(srv.port, pem=world.real.crt)})
    honest = {s.address for s in world.honest}

    r = mon.run("--once")
    assert r.rc == 0, r
    assert r.status_line.startswith("DETECTOR-MONITOR OK - "), r
    perf = r.perf()
    assert perf["spheres_ok"] == "5" and perf["spheres_down"] == "0", r
    assert perf["time"].endswith("s"), r
    assert mon.events() == [], r

    srv = swap(world, srv, "mon-rogue-swap-rogue", world.rogue)
    for _ in range(2):
        r = mon.run("--once")
        assert r.rc == 2, r
        assert r.status_line.startswith("DETECTOR-MONITOR CRITICAL - web: unexpected key %s"
                                        % world.rogue.spki_sha256[:16]), r
    # Daemon mode on the same state: still the same rogue key, no new alert.
    r = mon.run("--cycles", "3", "--interval", "1")
    assert r.rc == 0, r
    assert "unexpected-key" not in r.out, r

    events = mon.events()
    assert [e["DETECTOR_EVENT"] for e in events] == ["unexpected-key"], events
    e = events[0]
    assert e["argv"] == ["unexpected-key"]
    assert e["DETECTOR_SERVICE"] == "web"
    assert e["DETECTOR_HOST"] == HOST
    assert e["DETECTOR_PORT"] == str(srv.port)
    assert e["DETECTOR_PROTOCOL"] == "tls"
    assert e["DETECTOR_STATUS"] == "CRITICAL"
    assert e["DETECTOR_EXPECTED_KEYS"] == world.real.spki_sha256
    assert e["DETECTOR_UNEXPECTED_KEYS"] == world.rogue.spki_sha256
    assert e["DETECTOR_SEEN_KEYS"] == world.rogue.spki_sha256
    assert e["DETECTOR_RETURNING_KEYS"] == ""
    assert paths_of(e) == honest | {"direct"}
    assert e["DETECTOR_SPHERES_OK"] == "5" and e["DETECTOR_SPHERES_DOWN"] == "0"
    assert e["inherited"] == "passed-through"      # the monitor's environment
    # The report: 0600, names the keys, holds the rogue certificate as PEM.
    report = e["DETECTOR_REPORT"]
    assert os.path.dirname(report) == os.path.join(os.path.dirname(mon.state), "reports")
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(report)).st_mode) == 0o700
    with open(report) as f:
        text = f.read()
    assert world.rogue.spki_sha256 in text and world.real.spki_sha256 in text
    assert "".join(world.rogue.pem.split()) in "".join(text.split())
    assert "#   subject CN=server.test\n#   issuer  CN=DetecTor Test CA\n" in text, text

    srv = swap(world, srv, "mon-rogue-swap-real", world.real)
    r = mon.run("--once")
    assert r.rc == 0, r
    events = mon.events()
    assert [e["DETECTOR_EVENT"] for e in events] == ["unexpected-key", "recovered"], events
    rec = events[1]
    assert rec["DETECTOR_STATUS"] == "OK"
    assert rec["DETECTOR_SEEN_KEYS"] == world.real.spki_sha256
    assert paths_of(rec) == honest | {"direct"}
    r = mon.run("--once")
    assert r.rc == 0 and len(mon.events()) == 2, r

    # The state file: 0600, valid JSON, no temporary files left behind.
    assert stat.S_IMODE(os.stat(mon.state).st_mode) == 0o600
    with open(mon.state) as f:
        state = json.load(f)
    assert state["services"]["web"]["alerted"] == []
    keys = {k["spki_sha256"] for k in state["services"]["web"]["keys"]}
    assert keys == {world.real.spki_sha256, world.rogue.spki_sha256}
    assert sorted(os.listdir(os.path.dirname(mon.state))) == \
        ["reports", "state.json", "state.json.lock"]
    srv.stop()


def test_daemon_alerts_once_over_several_cycles(world, mon):
    srv = world.tls_server("mon-daemon-rogue", world.rogue)
    mon.write({"web": service(srv.port, pin=world.real.spki_sha256)})
    r = mon.run("--cycles", "3", "--interval", "1")
    assert r.rc == 0, r
    events = mon.events()
    assert [e["DETECTOR_EVENT"] for e in events] == ["unexpected-key"], (events, r)
    assert events[0]["DETECTOR_UNEXPECTED_KEYS"] == world.rogue.spki_sha256
    # stdout: one line per event, not per cycle.
    lines = [ln for ln in r.out.splitlines() if " unexpected-key " in ln]
    assert len(lines) == 1, r
    assert world.rogue.spki_sha256 in lines[0] and "web %s:%d/tls" % (HOST, srv.port) in lines[0]
    # Three cycles, one second apart: bounded, not a sleep of minutes.
    assert 1.5 < r.elapsed < 30, r
    # --json in daemon mode: one line per cycle on stdout, events on stderr.
    r = mon.run("--cycles", "2", "--interval", "1", "--json")
    docs = r.json()
    assert [d["status"] for d in docs] == ["CRITICAL", "CRITICAL"], r
    assert [d["services"][0]["events"] for d in docs] == [[], []], r
    assert len(mon.events()) == 1
    srv.stop()


def test_json_output_and_one_lying_sphere(world, mon):
    """The world's lying sphere resolves server.test to the MITM: one path
    of six sees the rogue key, and only that path is named."""
    mon.spheres = world.honest + [world.lying]
    with open(mon.dconfig, "w") as f:
        f.write("[detector]\nspheres = %s\n" % world.sphere_list(*mon.spheres))
    mon.write({"main": service(world.port, pin=world.real.spki_sha256)})
    r = mon.run("--once", "--json")
    assert r.rc == 2, r
    [doc] = r.json()
    assert doc["status"] == "CRITICAL" and doc["exit"] == 2, doc
    [svc] = doc["services"]
    assert svc["name"] == "main" and svc["port"] == world.port
    assert svc["events"] == ["unexpected-key"]
    by_via = {p["via"]: p for p in svc["paths"]}
    assert by_via[world.lying.address]["status"] == "unexpected"
    assert by_via[world.lying.address]["spki_sha256"] == world.rogue.spki_sha256
    for s in world.honest:
        assert by_via[s.address]["status"] == "expected"
        assert by_via[s.address]["spki_sha256"] == world.real.spki_sha256
    assert by_via["direct"]["status"] == "expected"
    [e] = mon.events()
    assert paths_of(e) == {world.lying.address}, e

    # --tor-only: no direct path at all.
    r = mon.run("--once", "--json", "--tor-only")
    [doc] = r.json()
    assert "direct" not in {p["via"] for p in doc["services"][0]["paths"]}, r
    assert len(doc["services"][0]["paths"]) == 6


# --------------------------------------------------------------------------
# Spheres down and up


def test_sphere_down_is_reported_then_up(world, mon):
    srv = world.tls_server("mon-sphere-down", world.real)
    late_port = free_port(SPHERE_ADDR)
    late_addr = "%s:%d" % (SPHERE_ADDR, late_port)
    with open(mon.dconfig, "w") as f:
        f.write("[detector]\nspheres = %s,%s\nprobe_timeout_ms = 5000\n"
                % (world.sphere_list(*world.honest), late_addr))
    mon.write({"web": service(srv.port, pin=world.real.spki_sha256)})

    r = mon.run("--once")
    assert r.rc == 1, r
    assert r.status_line.startswith("DETECTOR-MONITOR WARNING - web: 1 of 7 paths down"), r
    perf = r.perf()
    assert perf["spheres_ok"] == "5" and perf["spheres_down"] == "1", r
    assert late_addr in r.out and "down" in r.out, r
    [e] = mon.events()
    assert e["DETECTOR_EVENT"] == "sphere-down", e
    assert paths_of(e) == {late_addr}
    assert e["DETECTOR_ERRORS"].startswith(late_addr + ": "), e
    assert e["DETECTOR_SPHERES_DOWN"] == "1"

    r = mon.run("--once")
    assert r.rc == 1 and len(mon.events()) == 1, r      # still down: no new alert

    late = LateSphere({HOST: REAL_ADDR}, late_port)
    try:
        r = mon.run("--once")
    finally:
        late.stop()
    assert r.rc == 0, r
    events = mon.events()
    assert [e["DETECTOR_EVENT"] for e in events] == ["sphere-down", "sphere-up"], events
    assert paths_of(events[1]) == {late_addr}
    srv.stop()


def test_no_path_reaches_the_service(world, mon):
    port = free_port(REAL_ADDR)       # nothing listens there
    mon.write({"gone": service(port, pin=world.real.spki_sha256)})
    r = mon.run("--once")
    assert r.rc == 1, r
    assert "gone: no path reached the service" in r.status_line, r
    kinds = sorted(e["DETECTOR_EVENT"] for e in mon.events())
    assert kinds == ["direct-down", "sphere-down"], kinds


# --------------------------------------------------------------------------
# History: an old key coming back


def test_suspicious_return_of_an_old_key(world, mon):
    new = world.pki.new_key("mon-rotated")
    srv = world.tls_server("mon-return-a", world.real)
    # Both keys expected (a rotation): hex pin for one, base64 for the other.
    mon.write({"web": service(srv.port, pin=[world.real.spki_sha256, b64pin(new.spki_sha256)])})
    assert mon.run("--once").rc == 0
    srv = swap(world, srv, "mon-return-b", new)
    r = mon.run("--once")
    assert r.rc == 0 and mon.events() == [], r
    srv = swap(world, srv, "mon-return-a2", world.real)
    r = mon.run("--once")
    assert r.rc == 1, r
    assert "old key %s is back" % world.real.spki_sha256[:16] in r.status_line, r
    [e] = mon.events()
    assert e["DETECTOR_EVENT"] == "suspicious-return", e
    assert e["DETECTOR_SUSPICIOUS_KEYS"] == world.real.spki_sha256
    assert paths_of(e) == {s.address for s in world.honest} | {"direct"}
    # Reported once: the next cycle sees the same key and is OK.
    r = mon.run("--once")
    assert r.rc == 0 and len(mon.events()) == 1, r
    srv.stop()


def test_rogue_key_returning_is_alerted_again(world, mon):
    srv = world.tls_server("mon-rr-real", world.real)
    mon.write({"web": service(srv.port, pin=world.real.spki_sha256)})
    assert mon.run("--once").rc == 0
    srv = swap(world, srv, "mon-rr-rogue", world.rogue)
    assert mon.run("--once").rc == 2
    srv = swap(world, srv, "mon-rr-real2", world.real)
    assert mon.run("--once").rc == 0
    srv = swap(world, srv, "mon-rr-rogue2", world.rogue)
    r = mon.run("--once")
    assert r.rc == 2, r
    events = mon.events()
    assert [e["DETECTOR_EVENT"] for e in events] == \
        ["unexpected-key", "recovered", "unexpected-key"], events
    assert events[2]["DETECTOR_RETURNING_KEYS"] == world.rogue.spki_sha256
    srv.stop()


# --------------------------------------------------------------------------
# Heartbeat, hooks


def test_heartbeat(world, mon):
    srv = world.tls_server("mon-heartbeat", world.real)
    mon.write({"web": service(srv.port, pin=world.real.spki_sha256)}, "heartbeat = 1d\n")
    assert mon.run("--once").rc == 0
    assert mon.run("--once").rc == 0
    events = mon.events()
    assert [e["DETECTOR_EVENT"] for e in events] == ["heartbeat"], events
    assert events[0]["DETECTOR_STATUS"] == "OK"
    assert "every path sees an expected key" in events[0]["DETECTOR_SUMMARY"]
    srv.stop()


def test_hook_timeout_kills_the_hook(world, mon):
    pidfile = os.path.join(mon.dir, "hook.pid")
    mon.add_hook("10-slow", "#!/bin/sh\necho $$ > %s\nexec sleep 60\n" % pidfile)
    # Writable by others: must not run.
    mon.add_hook("20-unsafe", "#!/bin/sh\ntouch %s/unsafe-ran\n" % mon.dir, mode=0o777)
    os.chmod(os.path.join(mon.hooks, "20-unsafe"), 0o777)
    port = free_port(REAL_ADDR)
    mon.write({"gone": service(port, pin=world.real.spki_sha256)}, "hook_timeout = 1s\n")
    r = mon.run("--once")
    assert r.rc == 1, r
    # Two events (direct-down, sphere-down), each hook bounded by 1 s.
    assert r.elapsed < 15, r
    assert r.err.count("still running after 1 s: killed") == 2, r
    assert "writable by group or others: not run" in r.err, r
    assert not os.path.exists(os.path.join(mon.dir, "unsafe-ran"))
    with open(pidfile) as f:
        pid = int(f.read())
    assert not os.path.exists("/proc/%d" % pid) or \
        open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z"
    assert len(mon.events()) == 2      # the recording hook still ran for both


# --------------------------------------------------------------------------
# Configuration errors: precise, and UNKNOWN for Nagios


def _bad_configs(world, d):
    garbage = os.path.join(d, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a certificate\n")
    pin = world.real.spki_sha256
    return [
        ("[web]\nhost = a.test\npem = /nonexistent/cert.pem\n",
         ":3: key 'pem': /nonexistent/cert.pem: cannot open: No such file or directory"),
        ("[web]\nhost = a.test\npem = %s\n" % garbage,
         ":3: key 'pem': %s: no certificate in it" % garbage),
        ("[web]\nhost = a.test\npin = abc123\n",
         ":3: key 'pin': 'abc123' is not a SPKI SHA-256 pin"),
        ("[web]\nhost = a.test\npin = %s\n" % (pin[:-1] + "g"),
         ":3: key 'pin': '%s' is not a SPKI SHA-256 pin" % (pin[:-1] + "g")),
        ("[web]\nhost = a.test\nprotocol = smtps\npin = %s\n" % pin,
         ":3: key 'protocol': unknown protocol 'smtps' (known: tls, smtp, imap, pop3, xmpp, ldap)"),
        ("[web]\nhost = a.test\nport = 70000\npin = %s\n" % pin,
         ":3: key 'port': '70000' is not a port number from 1 to 65535"),
        ("[web]\nhost = a.test\nport = 0\npin = %s\n" % pin,
         ":3: key 'port': '0' is not a port number"),
        ("[web]\nhost = a.test\npin = %s\n\n[web]\nhost = b.test\n" % pin,
         ":5: section [web] given twice (first on line 1)"),
        ("[web]\nhost = a.test\n", ":1: [web]: no expected key"),
        ("[web]\nport = 443\npin = %s\n" % pin, ":1: [web]: no 'host'"),
        ("[web]\nhost = a.test\nhostname = b.test\npin = %s\n" % pin,
         ":3: key 'hostname': unknown in a service section"),
        ("[web]\nhost = a.test\nhost = b.test\npin = %s\n" % pin,
         ":3: key 'host': given twice in this section"),
        ("[web]\nhost = a.test\naddress = a.test\npin = %s\n" % pin,
         ":3: key 'address': 'a.test' is not an IP address"),
        ("[web]\nhost = a.test\ninterval = 5s\npin = %s\n" % pin,
         ":3: key 'interval': '5s' is not a duration from 10s to 365d"),
        ("[web]\nhost = a.test\ninterval = 1m\njitter = 2m\npin = %s\n" % pin,
         ":1: [web]: jitter (120s) must be shorter than the interval (60s)"),
        ("[monitor]\nhook_timeout = forever\n[web]\nhost = a.test\npin = %s\n" % pin,
         ":2: key 'hook_timeout': 'forever' is not a duration"),
        ("host = a.test\n", ":1: key 'host' before any section"),
        ("[monitor]\nheartbeat = 1d\n", ": no service to monitor"),
        ("[monitor]\nhooks = /nonexistent/hooks.d\n[web]\nhost = a.test\npin = %s\n" % pin,
         ":2: key 'hooks': /nonexistent/hooks.d: No such file or directory"),
        ("[monitor]\nhooks = %s\n[web]\nhost = a.test\npin = %s\n" % (garbage, pin),
         ":2: key 'hooks': %s: not a folder" % garbage),
        ("[web\nhost = a.test\n", ":1: syntax error"),
        ("[we b]\nhost = a.test\n", ":1: section [we b]: a service name is letters"),
        ("[web]\nhost = a.test\npin = %s\n" % ("a" * 194),
         ":3: line longer than 199 characters"),
        ("[web]\nhost = a.test\n  [mail]\n", ":3: indented section header"),
        ("[web]\nhost = a.test\n  pin = %s\n" % pin, ":3: indented line: remove the leading"),
    ]


def test_config_errors_are_precise(world, tmpdir_):
    for i, (text, want) in enumerate(_bad_configs(world, tmpdir_)):
        path = os.path.join(tmpdir_, "bad%d.conf" % i)
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([MONITOR, "-c", path, "--once", "--spheres", "127.0.0.1:1",
                            "--state", os.path.join(tmpdir_, "state.json")],
                           capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert p.returncode == 3, (text, p.stdout, p.stderr)
        assert (path + want) in p.stderr, (text, want, p.stderr)
        assert p.stdout.startswith("DETECTOR-MONITOR UNKNOWN - " + path + want), p.stdout
    # Nothing was written: a bad configuration never touches the state.
    assert not os.path.exists(os.path.join(tmpdir_, "state.json"))


def test_missing_config_and_engine_errors(world, tmpdir_):
    missing = os.path.join(tmpdir_, "nope.conf")
    p = subprocess.run([MONITOR, "-c", missing, "--once"], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    assert p.returncode == 3
    assert "%s: cannot open: No such file or directory" % missing in p.stderr
    good = os.path.join(tmpdir_, "good.conf")
    with open(good, "w") as f:
        f.write("[web]\nhost = a.test\npin = %s\n" % world.real.spki_sha256)
    p = subprocess.run([MONITOR, "-c", good, "--once", "--spheres", "a.test:9050"],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert p.returncode == 3 and "is not an IP address" in p.stderr, p.stderr


def test_state_file_damage_and_permissions(world, mon):
    srv = world.tls_server("mon-state", world.real)
    mon.write({"web": service(srv.port, pin=world.real.spki_sha256)})
    assert mon.run("--once").rc == 0
    assert stat.S_IMODE(os.stat(mon.state).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(mon.state + ".lock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(mon.state)).st_mode) == 0o700
    with open(mon.state) as f:
        good = f.read()

    os.chmod(mon.state, 0o666)
    r = mon.run("--once")
    assert r.rc == 3 and "writable by others: refusing to trust it" in r.err, r
    os.chmod(mon.state, 0o600)

    with open(mon.state, "w") as f:
        f.write(good.replace('"version": 1', '"version": 7'))
    r = mon.run("--once")
    assert r.rc == 3, r
    assert "state file %s: version: expected 1" % mon.state in r.err, r
    assert r.status_line.startswith("DETECTOR-MONITOR UNKNOWN - state file"), r

    with open(mon.state, "w") as f:
        f.write(good[:len(good) // 2])
    r = mon.run("--once")
    assert r.rc == 3 and "state file %s: line " % mon.state in r.err, r

    with open(mon.state, "w") as f:
        f.write(good)
    # A second monitor on the same state is refused while one holds it.
    with open(mon.state + ".lock", "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = mon.run("--once")
        assert r.rc == 3 and "locked" in r.err, r
    assert mon.run("--once").rc == 0
    srv.stop()


def test_check_config_prints_the_services(world, mon):
    # A line of exactly 199 characters (the limit) is fine.
    long_pin = world.real.spki_sha256 + " " * (199 - len("pin = ") - 64)
    # A relative pem path is relative to the configuration file's folder.
    shutil.copy(world.real.crt, os.path.join(mon.dir, "real.pem"))
    mon.write({"mail": {"host": "mail.test", "port": 25, "pin": long_pin},
               "imap": {"host": "mail.test", "protocol": "imap", "pem": "real.pem",
                        "interval": "10m", "jitter": "0"}})
    r = mon.run("--check-config")
    assert r.rc == 0, r
    assert "[mail] mail.test:25/smtp, every 3600s (+360s jitter)" in r.out, r
    assert "[imap] mail.test:143/imap, every 600s (+0s jitter)" in r.out, r
    assert r.out.count("expected " + world.real.spki_sha256) == 2, r
    assert not os.path.exists(mon.state)


# --------------------------------------------------------------------------
# STARTTLS services: real postfix, dovecot, prosody and slapd (the
# fixture `mail`, in conftest.py)


def test_starttls_services(world, mon, mail):
    """Every protocol against its real server: OK through the honest
    spheres; with the lying sphere added (it reaches the STARTTLS MITM on
    127.0.0.3, rogue certificate), CRITICAL naming that sphere alone."""
    mon.write({p: service(mail.port[p], protocol=p, pin=world.real.spki_sha256)
               for p in mail.protocols})
    r = mon.run("--once", "--json")
    assert r.rc == 0, r
    [doc] = r.json()
    assert {s["name"]: s["status"] for s in doc["services"]} == \
        {p: "OK" for p in mail.protocols}, doc
    for s in doc["services"]:
        assert s["protocol"] == s["name"]
        assert {p["spki_sha256"] for p in s["paths"]} == {world.real.spki_sha256}, s
        assert len(s["paths"]) == 6, s

    with open(mon.dconfig, "w") as f:
        f.write("[detector]\nspheres = %s\nprobe_timeout_ms = 5000\n"
                % world.sphere_list(*world.honest, world.lying))
    r = mon.run("--once", "--json")
    assert r.rc == 2, r
    [doc] = r.json()
    for s in doc["services"]:
        assert s["status"] == "CRITICAL", s
        bad = {p["via"]: p["spki_sha256"] for p in s["paths"] if p["status"] != "expected"}
        assert bad == {world.lying.address: world.rogue.spki_sha256}, s
    events = mon.events()
    assert sorted(e["DETECTOR_SERVICE"] for e in events) == sorted(mail.protocols), events
    for e in events:
        assert e["DETECTOR_EVENT"] == "unexpected-key"
        assert e["DETECTOR_PROTOCOL"] == e["DETECTOR_SERVICE"]
        assert paths_of(e) == {world.lying.address}


# --------------------------------------------------------------------------
# The daemon's signals


def _wait_for(pred, what, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    pytest.fail("timed out after %ss waiting for %s" % (timeout, what), pytrace=False)


def _state_services(mon):
    try:
        with open(mon.state) as f:
            return set(json.load(f)["services"])
    except (OSError, ValueError):
        return set()


def test_daemon_reloads_on_sighup_and_stops_on_sigterm(world, mon):
    srv = world.tls_server("mon-signals", world.real)
    mon.write({"one": service(srv.port, pin=world.real.spki_sha256)})
    err_path = os.path.join(mon.dir, "daemon.err")
    env = dict(os.environ, MONITOR_HOOK_LOG=mon.hook_log)
    env.pop("DETECTOR_CONFIG", None)
    env.pop("DETECTOR_SPHERES", None)
    with open(err_path, "w") as err:
        proc = subprocess.Popen([MONITOR, "-c", mon.config, "--detector-config", mon.dconfig,
                                 "--interval", "1"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        _wait_for(lambda: _state_services(mon) == {"one"}, "the first cycle")
        # A broken configuration is refused; the running one goes on.
        with open(mon.config, "a") as f:
            f.write("\n[broken]\nhost = b.test\n")
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: "keeping the running configuration" in open(err_path).read(),
                  "the refused reload")
        assert proc.poll() is None
        mon.write({"one": service(srv.port, pin=world.real.spki_sha256),
                   "two": service(srv.port, pin=world.real.spki_sha256)})
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: _state_services(mon) == {"one", "two"}, "the reloaded services")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    with open(err_path) as f:
        err = f.read()
    assert rc == 0, err
    assert "[broken]: no expected key" in err, err
    assert "reloaded %s: 2 services" % mon.config in err, err
    assert err.rstrip().endswith("detector-monitor: stopping"), err
    assert mon.events() == []
    srv.stop()
