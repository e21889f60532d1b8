"""The processes a test world starts, and how they end: by PID, always.

  spawn()       start a program in its own session (its process group id is
                its PID), output appended to a log file, optionally dying
                with its parent (PR_SET_PDEATHSIG)
  Process       one such child with its log, as the loopback world uses it
  stop_pids()   end processes by PID: SIGTERM, SIGKILL after a grace period,
                never signalling a recycled PID (a marker must still be on
                its command line)
  stop_child()  the same for one subprocess.Popen child
  stop_group()  the same for whatever is left in a process group (socat's
                per-connection children)

The private Tor network (tornet.py) records its PIDs in a state file and
ends them from another process with stop_pids(); the loopback world ends
each Process it owns the same way, then its process group.
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

from . import WorldError

STOP_GRACE = 2.0             # seconds between SIGTERM and SIGKILL
KILL_WAIT = 5.0              # seconds to wait for a SIGKILLed process to go
CMD_TIMEOUT = 30.0           # seconds for any one short command


def run(argv, data=None, cwd=None):
    """Run a short command; return stdout bytes or raise WorldError."""
    try:
        p = subprocess.run(argv, input=data, cwd=cwd, capture_output=True,
                           timeout=CMD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise WorldError("%s: timed out after %ss" % (" ".join(argv), CMD_TIMEOUT))
    if p.returncode != 0:
        raise WorldError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                              p.stderr.decode(errors="replace").strip()))
    return p.stdout


def _die_with_parent():
    """In the child before exec: get SIGTERM if the test process dies, even
    by SIGKILL, so no server outlives a crashed run (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def spawn(argv, log_path, die_with_parent=True):
    """Start argv with stdin from /dev/null and stdout+stderr appended to
    log_path, in its own session: its process group id is its PID, so its
    children can be ended by that id, and a ^C to the test run does not
    reach it before we do.  die_with_parent=False for processes that must
    outlive the starting process (`tornet up`).  Returns the Popen."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent if die_with_parent else None)


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state first),
    or None if the process is gone; comm may contain spaces and ')'."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def pid_state(pid):
    """'alive', 'zombie' or 'gone' for a PID (zombies are as good as gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return "gone"
    return "zombie" if fields[0] in "ZX" else "alive"


def cmdline(pid):
    """A process's command line, arguments joined by spaces ('' if gone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def reap_children():
    """Collect every exited child so none lingers as a zombie.  Only for a
    process that starts no other children it waits for itself (the Tor
    network's CLI, the namespace's init): it steals their exit status."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def stop_pids(procs, grace=STOP_GRACE, reap=None):
    """End processes [(name, pid, marker)]: SIGTERM, SIGKILL after `grace` s.

    A PID is only signalled while its command line still contains `marker`
    (e.g. a path under the network's directory), so a recycled PID is never
    hit; marker None skips that check (for our own unreaped children, whose
    PID cannot be recycled).  reap() is called while waiting, to collect
    the exited children of this process.  Returns the names that needed
    SIGKILL.
    """
    reap = reap or (lambda: None)
    live = []
    for name, pid, marker in procs:
        if pid_state(pid) == "alive" and (marker is None or marker in cmdline(pid)):
            try:
                os.kill(pid, signal.SIGTERM)
                live.append((name, pid))
            except ProcessLookupError:
                pass
    live = _wait_gone(live, grace, reap)
    killed = []
    for name, pid in live:           # tornet pitfall 6: one exit once hung on SIGTERM
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(name)
        except ProcessLookupError:
            pass
    _wait_gone(live, KILL_WAIT, reap)
    reap()
    return killed


def stop_child(popen, grace=STOP_GRACE):
    """A subprocess.Popen child of this process: SIGTERM, SIGKILL after
    `grace` s; reaped."""
    if popen.poll() is None:
        stop_pids([(" ".join(map(str, popen.args[:1])), popen.pid, None)], grace,
                  reap=popen.poll)
    popen.poll()


def _wait_gone(live, seconds, reap):
    """Wait up to `seconds` until no (name, pid) of live is alive, reaping;
    returns those still alive."""
    deadline = time.monotonic() + seconds
    while live and time.monotonic() < deadline:
        reap()
        live = [(n, p) for n, p in live if pid_state(p) == "alive"]
        if live:
            time.sleep(0.05)
    return live


def group_members(pgid):
    """PIDs of the live (not zombie) processes in process group pgid."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        # state ppid pgrp ...
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def stop_group(pgid, grace=STOP_GRACE):
    """SIGTERM, then SIGKILL after `grace` s, to whatever is left in the
    process group we created (pgid: its leader's PID, see spawn()).
    Zombies (whose new parent does not reap them) do not count."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not group_members(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            break
        end = time.monotonic() + grace
        while group_members(pgid) and time.monotonic() < end:
            time.sleep(0.05)


def rss_kib(pid):
    """Resident set size of a process in KiB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Process:
    """One child process, its output in a log file, ended by PID."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.popen = spawn(argv, log_path)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, grace=STOP_GRACE):
        """SIGTERM, SIGKILL after `grace` s, then the same for what is left
        in its process group."""
        stop_child(self.popen, grace)
        stop_group(self.pid, grace)


def exit_on_signals():
    """Turn SIGTERM/SIGHUP into SystemExit so finally-blocks and atexit run
    and what we started is torn down; only where nobody else handles them."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, handler)


def python_env(env=None):
    """A copy of env (default os.environ) whose PYTHONPATH starts with the
    folder holding this package, for a Python child that imports testworld
    (`python3 -m testworld.tornet ...`) wherever it runs."""
    env = dict(os.environ if env is None else env)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root] + parts)
    return env


def python_module(module, *args):
    """argv running `module` of this package with this interpreter."""
    return [sys.executable, "-m", module] + list(args)
