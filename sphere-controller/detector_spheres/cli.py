"""detector-spheres: start, stop, status, newnym, wait, tend, list.

Exit status: 0 success; 1 a sphere failed, is stuck or is not running;
2 bad usage or configuration (nothing was started).
"""

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import stem
import stem.control
from stem import Signal

from . import config as configmod
from . import hygiene
from . import sphere as spheremod
from .progress import Progress
from .sphere import Sphere, SphereError

PROG = "detector-spheres"
TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "detector-spheres")
TEND_RECORD = "tend.json"       # in the state directory: the janitor's PID
TEND_IDLE_EXIT = 15.0           # seconds without a running sphere: tend ends


class UsageError(Exception):
    pass


def say(msg):
    print("%s: %s" % (PROG, msg), flush=True)


def err(msg):
    print("%s: error: %s" % (PROG, msg), file=sys.stderr, flush=True)


# ---- which spheres a command acts on ---------------------------------
def resolve(args, need_config=False, recorded_only=False):
    """(config, state_dir, [Sphere]) for the command line.

    With --config (or for start) the spheres are the configured ones; without
    it, the spheres recorded in the state directory by an earlier start (the
    five defaults when nothing was recorded). recorded_only (stop): always
    every recorded sphere, so that a sphere dropped from the config since it
    was started is still stopped.
    """
    cfg = configmod.load(args.config, listen=getattr(args, "listen", None),
                         allow=getattr(args, "allow", None))
    state_dir = os.path.abspath(args.state_dir or cfg.state_dir or
                                spheremod.default_state_dir())
    if (args.config or need_config) and not recorded_only:
        spheres = [Sphere(state_dir, s.name, s, cfg) for s in cfg.processes]
    else:
        recorded = []
        if os.path.isdir(state_dir):
            for name in sorted(os.listdir(state_dir)):
                if os.path.exists(os.path.join(state_dir, name, "sphere.json")):
                    recorded.append(name)
        if recorded or recorded_only:
            order = {s.name: i for i, s in enumerate(cfg.processes)}
            recorded.sort(key=lambda n: (order.get(n, 999), n))
            spheres = [Sphere(state_dir, n, cfg.sphere(n), cfg) for n in recorded]
            spheres = [s for s in spheres if s.record]
            if recorded_only:       # configured but not running: "not running"
                spheres += [Sphere(state_dir, s.name, s, cfg)
                            for s in cfg.processes if s.name not in recorded]
        else:
            spheres = [Sphere(state_dir, s.name, s, cfg) for s in cfg.processes]
    if args.sphere:
        # a sphere's name selects all its instances; "asia.2" just that one
        want = [n for n in args.sphere.split(",") if n]
        unknown = [n for n in want if not any(n in (s.name, s.group)
                                              for s in spheres)]
        if unknown:
            raise UsageError("no sphere named %s (spheres: %s)" % (
                ", ".join(repr(n) for n in unknown),
                ", ".join(s.name for s in spheres)))
        spheres = [s for s in spheres if s.name in want or s.group in want]
    return cfg, state_dir, spheres


class StateLock:
    """flock on STATE_DIR/.lock so two commands never start or stop the same
    sphere at once."""

    def __init__(self, state_dir):
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(state_dir, ".lock"),
                          os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self):
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another detector-spheres holds %s; waiting" % "the state lock")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ---- waiting for usable spheres --------------------------------------
def _last_problem(log):
    """The last warning or error line of a tor log, to say why tor died."""
    try:
        with open(log, errors="replace") as f:
            lines = f.readlines()[-200:]
    except OSError:
        return None
    for line in reversed(lines):
        if "[err]" in line or "[warn]" in line:
            return line.strip()
    return None


def wait_usable(spheres, timeout, stream=None):
    """Poll every sphere until it is usable (bootstrapped 100% and at least
    one running exit of the consensus matches its ExitNodes) or the deadline
    passes. Returns {name: None if usable else why}."""
    progress = Progress([s.name for s in spheres], stream=stream)
    deadline = time.monotonic() + timeout
    ctls, warnings, why = {}, {}, {}
    pending = list(spheres)
    next_exit_check = {}
    try:
        while pending:
            for s in list(pending):
                if s.pid() is None:
                    problem = _last_problem(s.log)
                    why[s.name] = "tor exited" + (
                        ": " + problem if problem else "") + " (log: %s)" % s.log
                    progress.update(s.name, None, "tor exited")
                    pending.remove(s)
                    continue
                try:
                    ctl = ctls.get(s.name)
                    if ctl is None:
                        ctl = ctls[s.name] = s.controller()
                        ctl.add_event_listener(
                            lambda ev, n=s.name: warnings.__setitem__(
                                n, ev.message), stem.control.EventType.WARN)
                    b = spheremod.bootstrap(ctl)
                except (stem.ControllerError, stem.SocketError, OSError) as e:
                    ctls.pop(s.name, None)
                    why[s.name] = "control port %d does not answer: %s" % (
                        s.control_port, e)
                    progress.update(s.name, None, "no controller yet")
                    continue
                text = b.get("summary") or b.get("tag") or ""
                if b.get("warning"):
                    text += " (problem: %s)" % b["warning"]
                why[s.name] = "stuck at %d%%: %s (%s)" % (
                    b["progress"], text, _hint(b["progress"]))
                if warnings.get(s.name):
                    why[s.name] += "; last tor warning: " + warnings[s.name]
                if b["progress"] == 100 and \
                        time.monotonic() >= next_exit_check.get(s.name, 0):
                    exits = spheremod.usable_exits(ctl, s.exit_restriction())
                    if exits:
                        why[s.name] = None
                        progress.update(s.name, 100, "usable: %d exit relay%s" % (
                            len(exits), "" if len(exits) == 1 else "s"))
                        pending.remove(s)
                        continue
                    next_exit_check[s.name] = time.monotonic() + 5
                    why[s.name] = ("bootstrapped, but no running exit relay in "
                                   "the consensus matches its ExitNodes (%s)"
                                   % _describe(s.exit_restriction()))
                    text = "no matching exit relay yet"
                progress.update(s.name, b["progress"], text)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    finally:
        progress.finish()
        for ctl in ctls.values():
            ctl.close()
    return {s.name: why.get(s.name) for s in spheres}


def _hint(progress):
    """What a bootstrap percentage that stops moving usually means."""
    if progress < 10:
        return "Tor unreachable (possible blocking): tor reached no Tor " \
               "relay; is the network up? If this network blocks Tor, set " \
               "'bridges =' in [spheres] (plain or obfs4 bridges)"
    if progress < 75:
        return "tor is still fetching the directory: slow or flaky link"
    return "tor cannot build circuits: relays unreachable or refusing"


def _describe(restriction):
    if restriction.get("fingerprints"):
        return "exits %s" % ", ".join(restriction["fingerprints"])
    c = restriction.get("countries", [])
    return "countries %s%s" % (" ".join(c[:12]), " ..." if len(c) > 12 else "")


def _report_wait(result, timeout):
    stuck = {n: w for n, w in result.items() if w}
    if not stuck:
        say("all %d spheres usable" % len(result))
        return 0
    for n, w in stuck.items():
        err("sphere %s not usable after %.0f s: %s" % (n, timeout, w))
    err("%d of %d spheres not usable; see '%s status' and the logs named above"
        % (len(stuck), len(result), PROG))
    return 1


# ---- commands --------------------------------------------------------
def cmd_start(args):
    cfg, state_dir, spheres = resolve(args, need_config=True)
    try:
        tor = spheremod.find_tor(cfg.tor)
        spheremod.find_obfs4proxy(cfg)
    except SphereError as e:
        raise configmod.ConfigError([str(e)])
    timeout = args.timeout or cfg.timeout
    with StateLock(state_dir):
        to_start = []
        for s in spheres:
            pid = s.pid()
            if pid:
                note = ""
                try:
                    with open(s.torrc) as f:
                        if f.read().split("\n")[1:-1] != s.torrc_lines():
                            note = "; its config changed: stop and start it " \
                                   "to apply"
                except OSError:
                    pass
                say("%s: already running (pid %d)%s" % (s.name, pid, note))
            else:
                s.check_ports()
                to_start.append(s)
        started = []
        try:
            for s in to_start:
                pid = s.launch(tor)
                started.append(s)
                say("%s: started tor (pid %d), SOCKS %s, exits: %s" % (
                    s.name, pid, s.socks, _describe(s.exit_restriction())))
        except SphereError:
            for s in started:         # all or nothing
                s.stop()
            raise
        if any(s.pid() for s in spheres):
            start_tend(state_dir)
    if args.no_wait:
        return 0
    return _report_wait(wait_usable(spheres, timeout), timeout)


def cmd_wait(args):
    cfg, _, spheres = resolve(args)
    timeout = args.timeout or cfg.timeout
    down = [s.name for s in spheres if s.pid() is None]
    if down:
        raise SphereError("not running: %s (start them with '%s start')"
                          % (", ".join(down), PROG))
    return _report_wait(wait_usable(spheres, timeout), timeout)


def cmd_stop(args):
    _, state_dir, spheres = resolve(args, recorded_only=True)
    if not os.path.isdir(state_dir):
        say("nothing to stop: no state directory %s" % state_dir)
        return 0
    with StateLock(state_dir):
        for s in spheres:
            say("%s: %s" % (s.name, s.stop()))
        if not args.sphere:
            note = stop_tend(state_dir)
            if note:
                say("circuit janitor: %s" % note)
    return 0


# ---- circuit hygiene (hygiene.py) ------------------------------------
def _tend_pid(state_dir):
    """PID of the `tend` started for this state directory, if it runs."""
    try:
        with open(os.path.join(state_dir, TEND_RECORD)) as f:
            pid = int(json.load(f)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    argv = spheremod._cmdline(pid)
    if spheremod._pid_alive(pid) and b"tend" in argv and \
            os.path.abspath(state_dir).encode() in argv:
        return pid
    return None


def start_tend(state_dir):
    """Run `tend` for the state directory in the background (its own
    session, log STATE/tend.log) unless one already runs."""
    if _tend_pid(state_dir):
        return
    state_dir = os.path.abspath(state_dir)
    fd = os.open(os.path.join(state_dir, "tend.log"),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, TOOL, "tend", "--state-dir", state_dir],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
            start_new_session=True, close_fds=True)
    finally:
        os.close(fd)
    tmp = os.path.join(state_dir, TEND_RECORD + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"pid": proc.pid, "started": time.time()}, f)
    os.replace(tmp, os.path.join(state_dir, TEND_RECORD))
    say("circuit janitor started (pid %d, log %s)"
        % (proc.pid, os.path.join(state_dir, "tend.log")))


def stop_tend(state_dir):
    pid = _tend_pid(state_dir)
    try:
        os.unlink(os.path.join(state_dir, TEND_RECORD))
    except FileNotFoundError:
        pass
    if not pid:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while spheremod._pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if spheremod._pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    return "stopped (pid %d)" % pid


def _recorded(state_dir):
    """Every sphere recorded in the state directory, as Sphere objects."""
    out = []
    if os.path.isdir(state_dir):
        for name in sorted(os.listdir(state_dir)):
            if os.path.exists(os.path.join(state_dir, name, "sphere.json")):
                s = Sphere(state_dir, name)
                if s.record:
                    out.append(s)
    return out


def cmd_tend(args):
    """Stay in the foreground and close, in every running sphere of the
    state directory, the circuits whose isolated streams have ended
    (hygiene.py). Follows spheres as they stop and start; ends on SIGTERM,
    or once no sphere has run for TEND_IDLE_EXIT seconds."""
    _, state_dir, _ = resolve(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    janitors, reported = {}, {}
    last_running = time.monotonic()
    next_scan = next_report = 0.0
    say("tending the spheres of %s (closing used isolated circuits %.0f s "
        "after their last stream)" % (state_dir, hygiene.GRACE))
    try:
        while True:
            now = time.monotonic()
            if now >= next_scan:
                next_scan = now + 1.0
                running = {}
                for s in _recorded(state_dir):
                    pid = s.pid()
                    if pid:
                        running[(s.name, pid, s.control_port)] = s
                for key in [k for k in janitors if k not in running]:
                    janitors.pop(key).close()
                for key, s in running.items():
                    if key in janitors:
                        continue
                    try:
                        j = hygiene.CircuitJanitor(s.name, s.controller())
                        j.start()
                    except (stem.ControllerError, stem.SocketError,
                            OSError):
                        continue        # not answering yet: next scan
                    janitors[key] = j
                    say("%s: watching (pid %d, control port %d)"
                        % (s.name, key[1], s.control_port))
                if running:
                    last_running = now
                elif now - last_running > TEND_IDLE_EXIT:
                    say("no sphere has run for %.0f s; done" % TEND_IDLE_EXIT)
                    return 0
            for key, j in list(janitors.items()):
                try:
                    j.close_idle()
                    if now - j.last_sweep >= hygiene.SWEEP_INTERVAL:
                        j.sweep()
                        j.close_idle()
                except (stem.ControllerError, stem.SocketError, OSError):
                    janitors.pop(key).close()
            if now >= next_report:
                next_report = now + 60
                for key, j in janitors.items():
                    if reported.get(key) != j.closed:
                        reported[key] = j.closed
                        say("%s: %d used circuits closed so far"
                            % (j.name, j.closed))
            time.sleep(0.2)
    finally:
        for j in janitors.values():
            j.close()


def sphere_status(s):
    """Everything `status` reports about one sphere, as a dict."""
    pid = s.pid()
    out = {"name": s.name, "sphere": s.group, "instance": s.instance,
           "running": bool(pid), "pid": pid,
           "socks": s.socks, "control_port": s.control_port,
           "exit_restriction": s.exit_restriction(),
           "bootstrap": None, "usable": False, "usable_exits": [],
           "circuits": [], "error": None}
    if not pid:
        return out
    try:
        with s.controller() as ctl:
            out["bootstrap"] = spheremod.bootstrap(ctl)
            if out["bootstrap"]["progress"] == 100:
                out["usable_exits"] = [
                    {"fingerprint": fp, "nickname": n, "address": a,
                     "country": c}
                    for fp, n, a, c in spheremod.usable_exits(
                        ctl, s.exit_restriction())]
                out["usable"] = bool(out["usable_exits"])
            out["circuits"] = spheremod.circuits(ctl)
    except (stem.ControllerError, stem.SocketError, OSError) as e:
        out["error"] = "control port %d: %s" % (s.control_port, e)
    return out


def cmd_status(args):
    _, state_dir, spheres = resolve(args)
    result = [sphere_status(s) for s in spheres]
    tend = _tend_pid(state_dir)
    if args.json:
        json.dump({"state_dir": state_dir, "spheres": result,
                   "janitor": {"running": bool(tend), "pid": tend}},
                  sys.stdout, indent=2)
        print()
    else:
        print("%-22s %-8s %-5s %-22s %s" % ("SPHERE", "STATE", "BOOT",
                                            "SOCKS", "CIRCUITS  EXITS (country)"))
        for r in result:
            state = "running" if r["running"] else "stopped"
            if r["running"] and not r["usable"]:
                state = "starting" if not r["error"] else "broken"
            boot = "%d%%" % r["bootstrap"]["progress"] if r["bootstrap"] else "-"
            exits = {}
            for c in r["circuits"]:
                exits.setdefault("%s (%s)" % (c["exit"]["nickname"],
                                              c["exit"]["country"]), 0)
            circs = "%-9d %s" % (len(r["circuits"]), ", ".join(exits) or "-")
            print("%-22s %-8s %-5s %-22s %s" % (r["name"], state, boot,
                                                r["socks"], circs))
            if r["error"]:
                print("    error: " + r["error"])
        print("circuit janitor: %s" % ("running (pid %d)" % tend if tend
                                       else "not running (it starts with "
                                       "'%s start')" % PROG))
    return 0 if result and all(r["usable"] for r in result) else 1


def cmd_list(args):
    """The spheres as libdetector's configuration lists them: one entry per
    sphere, named by the sphere (the region it exits in), its instances'
    SOCKS addresses joined by '|': "europe=127.0.0.1:9162|127.0.0.1:9172"
    (see docs/tor-network.md, "Several tor processes per sphere"). The name
    is what DetecTor's reports show ("europe (127.0.0.1:9162)"); sphere
    names are already restricted to what detector.conf accepts (NAME_RE)."""
    _, _, spheres = resolve(args)
    groups = {}
    for s in spheres:
        groups.setdefault(s.group, []).append(s)
    entries = [list_entry(g, [s.socks for s in members])
               for g, members in groups.items()]
    if args.json:
        json.dump([{"sphere": g, "socks": [s.socks for s in members],
                    "entry": e} for (g, members), e in zip(groups.items(),
                                                          entries)],
                  sys.stdout, indent=1)
        print()
    else:
        print("spheres = " + ", ".join(entries))
    return 0


def list_entry(name, socks):
    """One sphere of detector.conf's `spheres =`: "europe=ADDR|ADDR". A name
    detector.conf would refuse (a sphere.json edited by hand) is left out
    rather than printed into a line DetecTor cannot read."""
    addrs = "|".join(socks)
    return "%s=%s" % (name, addrs) if configmod.NAME_RE.fullmatch(name) else addrs


def cmd_newnym(args):
    """NEWNYM every sphere at once, then close its idle exit circuits, then
    wait (briefly, all together) until each shows a circuit it did not have
    before.

    NEWNYM alone keeps clean circuits built earlier (tor 0.4.9 keeps its
    prebuilt conflux sets), so the next probe could still leave through a
    path chosen before the request. Closing every exit circuit that carries
    no stream makes the next connection use a path chosen afterwards; live
    connections are left alone (NEWNYM already bars their circuits from new
    streams). Tor builds new circuits lazily, so a sphere may only get one
    with its next connection; that is reported, not an error."""
    _, _, spheres = resolve(args)
    rc = 0
    ctls, before = {}, {}
    try:
        for s in spheres:
            if not s.pid():
                err("%s: not running" % s.name)
                rc = 1
                continue
            ctl = ctls[s.name] = s.controller()
            before[s.name] = {c["id"] for c in spheremod.circuits(ctl)}
            if not ctl.is_newnym_available():
                wait = ctl.get_newnym_wait()
                say("%s: tor rate-limits NEWNYM; waiting %.1f s" % (s.name, wait))
                time.sleep(wait)
            ctl.signal(Signal.NEWNYM)
            busy = {st.circ_id for st in ctl.get_streams() if st.circ_id}
            for c in spheremod.circuits(ctl):
                if c["id"] not in busy:
                    try:
                        ctl.close_circuit(c["id"])
                    except (stem.InvalidArguments, stem.ControllerError):
                        pass        # already gone (a closed conflux partner)
        deadline = time.monotonic() + args.timeout
        new = {}
        while True:
            for name, ctl in ctls.items():
                if name not in new:
                    fresh = [c for c in spheremod.circuits(ctl)
                             if c["id"] not in before[name]]
                    if fresh:
                        new[name] = fresh
            if len(new) == len(ctls) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        for ctl in ctls.values():
            ctl.close()
    for name in ctls:
        old = ", ".join(sorted(before[name], key=int)) or "none"
        if name in new:
            say("%s: new circuit%s %s (replacing %s)"
                % (name, "s" if len(new[name]) > 1 else "",
                   ", ".join("%s via %s" % (c["id"], c["exit"]["nickname"])
                             for c in new[name]), old))
        else:
            say("%s: NEWNYM done; old circuits (%s) take no new connections, "
                "the next connection gets a fresh one" % (name, old))
    return rc


def build_parser():
    ap = argparse.ArgumentParser(
        prog=PROG, description="Start, watch and stop DetecTor's Tor spheres: "
        "one tor client per continent, each exiting only there.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    helps = {
        "start": "start the spheres; wait until each one is usable",
        "stop": "stop the spheres this tool started",
        "status": "show bootstrap, circuits and exits of each sphere",
        "newnym": "ask each sphere for new circuits (tor NEWNYM)",
        "wait": "wait until every sphere is usable",
        "tend": "close circuits whose isolated streams ended (foreground; "
                "start runs it in the background)",
        "list": "print the spheres' SOCKS addresses for detector.conf",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", metavar="FILE",
                       help="INI configuration (see detector-spheres(1))")
        p.add_argument("--state-dir", metavar="DIR",
                       help="where spheres keep their data (default "
                       "$XDG_STATE_HOME/detector/spheres)")
        p.add_argument("--sphere", metavar="NAME[,NAME]",
                       help="act on these spheres only")
        if name in ("start", "wait"):
            p.add_argument("--timeout", type=float, metavar="SECONDS",
                           help="give up waiting after this long (default: "
                           "config timeout, else %.0f)" % configmod.DEFAULT_TIMEOUT)
        if name == "start":
            p.add_argument("--listen", metavar="ADDR",
                           help="gateway mode: bind the SOCKS ports on ADDR")
            p.add_argument("--allow", metavar="CIDR[,CIDR]",
                           help="gateway mode: only these networks may connect")
            p.add_argument("--no-wait", action="store_true",
                           help="return once the tor processes are launched")
        if name in ("status", "list"):
            p.add_argument("--json", action="store_true",
                           help="machine-readable output")
        if name == "newnym":
            p.add_argument("--timeout", type=float, default=5.0,
                           metavar="SECONDS",
                           help="how long to wait for new circuits (5)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return {"start": cmd_start, "stop": cmd_stop, "status": cmd_status,
                "newnym": cmd_newnym, "wait": cmd_wait,
                "tend": cmd_tend, "list": cmd_list}[args.command](args)
    except configmod.ConfigError as e:
        for p in e.problems:
            err(p)
        return 2
    except UsageError as e:
        err(str(e))
        return 2
    except SphereError as e:
        err(str(e))
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        err("interrupted; spheres already launched keep running "
            "('%s stop' ends them)" % PROG)
        return 1
