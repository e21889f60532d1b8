"""detector-monitor's hooks run with the monitor's rights (root, as a
service), so the hooks folder and every hook must be as trustworthy as the
monitor itself (issue 13, item 4): not a symlink, owned by the monitor's
user or root, writable by nobody else.  A folder that breaks a rule stops
the configuration from loading (file:line: key 'hooks'); a hook that breaks
one is not run and the refusal is logged on every event.

No sphere or server is needed: the service is a closed port on 127.0.0.1
and the only sphere is 127.0.0.1:1, so the first cycle raises two events
(sphere-down, direct-down) and runs every hook for each.  Each hook appends
"EVENT NAME" to a log; assertions read that log.  Ownership by another user
needs root (chown): those tests are skipped otherwise.
"""

import os
import shutil
import subprocess
import time

import pytest

from conftest import BUILD
from world import free_port

MONITOR = os.path.join(BUILD, "detector-monitor")
RUN_TIMEOUT = 60
NOBODY = 65534
ROOT = os.geteuid() == 0

# Appends "EVENT NAME" to $HOOK_TEST_LOG; NAME is this hook's file name.
RECORD = """#!/bin/sh
echo "$1 %(name)s" >> "$HOOK_TEST_LOG"
"""

needs_root = pytest.mark.skipif(not ROOT, reason="chown to another user needs root")


class Setup:
    """A monitor config, engine config and hooks folder in one temp dir."""

    def __init__(self, d):
        self.dir = d
        self.hooks = os.path.join(d, "hooks")
        os.mkdir(self.hooks, 0o700)
        os.chmod(self.hooks, 0o700)
        self.log = os.path.join(d, "hooks.log")
        self.config = os.path.join(d, "monitor.conf")
        self.dconfig = os.path.join(d, "detector.conf")
        self.state = os.path.join(d, "state.json")
        with open(self.dconfig, "w") as f:
            f.write("[detector]\nspheres = 127.0.0.1:1\nquorum = 1\n"
                    "probe_timeout_ms = 3000\ndeadline_ms = 5000\n")
        os.chmod(self.dconfig, 0o600)
        self.write()

    def write(self, hooks=None):
        pin = "ab" * 32
        with open(self.config, "w") as f:
            f.write("[monitor]\nstate = %s\nhooks = %s\nhook_timeout = 10s\n\n"
                    "[closed]\nhost = closed.test\naddress = 127.0.0.1\nport = %d\n"
                    "pin = %s\n" % (self.state, hooks or self.hooks,
                                    free_port("127.0.0.1"), pin))
        os.chmod(self.config, 0o600)

    def hook(self, name, text=RECORD, mode=0o700, where=None):
        path = os.path.join(where or self.hooks, name)
        with open(path, "w") as f:
            f.write(text.replace("%(name)s", name))
        os.chmod(path, mode)
        return path

    def run(self, *args, cwd=None):
        if not os.access(MONITOR, os.X_OK):
            pytest.fail("%s is missing: build it first (`make`)" % MONITOR, pytrace=False)
        env = {k: v for k, v in os.environ.items()
               if k not in ("DETECTOR_CONFIG", "DETECTOR_SPHERES")}
        env["HOME"] = self.dir
        env["HOOK_TEST_LOG"] = self.log
        argv = [MONITOR, "-c", self.config, "--detector-config", self.dconfig, "--once"]
        argv += list(args)
        t0 = time.monotonic()
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=RUN_TIMEOUT, cwd=cwd or self.dir)
        print("%s\n  exit %s after %.2fs\n--- stdout\n%s--- stderr\n%s---"
              % (" ".join(argv), p.returncode, time.monotonic() - t0, p.stdout, p.stderr))
        return p

    def ran(self):
        """[(event, hook name)] in the order the hooks ran."""
        try:
            with open(self.log) as f:
                return [tuple(ln.split()) for ln in f if ln.strip()]
        except FileNotFoundError:
            return []


@pytest.fixture
def setup(tmpdir_):
    os.chmod(tmpdir_, 0o700)
    return Setup(tmpdir_)


EVENTS = {"sphere-down", "direct-down"}


def assert_ran(s, p, names):
    """Exactly these hooks ran, once for each of the two events."""
    assert p.returncode == 1, p          # WARNING: every path down
    got = s.ran()
    assert sorted(got) == sorted((ev, n) for ev in EVENTS for n in names), (got, p.stderr)


def refusal_lines(p, path):
    return [ln for ln in p.stderr.splitlines() if ("hook %s is " % path) in ln and "not run" in ln]


# --------------------------------------------------------------------------
# What is right runs


@needs_root
def test_root_owned_0700_and_0755_hooks_run(setup):
    setup.hook("10-private", mode=0o700)
    setup.hook("20-readable", mode=0o755)
    setup.hook("README", "not a hook\n", mode=0o600)     # no x bit: not a hook
    os.mkdir(os.path.join(setup.hooks, "disabled"), 0o700)
    setup.hook("30-off", mode=0o700, where=os.path.join(setup.hooks, "disabled"))
    p = setup.run()
    assert_ran(setup, p, ["10-private", "20-readable"])
    assert "not run" not in p.stderr, p.stderr
    # In name order, for each event.
    got = setup.ran()
    assert [n for _, n in got] == ["10-private", "20-readable"] * 2, got


def test_hook_is_told_its_path(setup):
    """A script run through its descriptor sees $0 = /dev/fd/N; DETECTOR_HOOK
    names the file (inherited values do not leak through)."""
    where = os.path.join(setup.dir, "where")
    hook = setup.hook("10-where", '#!/bin/sh\necho "$DETECTOR_HOOK" >> %s\n' % where)
    os.environ["DETECTOR_HOOK"] = "inherited"
    try:
        p = setup.run()
    finally:
        del os.environ["DETECTOR_HOOK"]
    assert p.returncode == 1, p
    with open(where) as f:
        assert f.read().split() == [hook, hook], p.stderr


def test_a_binary_hook_runs_through_its_descriptor(setup):
    """Not only scripts: an ELF hook runs too (tee EVENT creates a file named
    after the event in the monitor's working folder)."""
    work = os.path.join(setup.dir, "work")
    os.mkdir(work, 0o700)
    tee = os.path.join(setup.hooks, "10-tee")
    shutil.copyfile(shutil.which("tee"), tee)
    os.chmod(tee, 0o700)
    p = setup.run(cwd=work)
    assert p.returncode == 1, p
    assert "not run" not in p.stderr and "cannot run" not in p.stderr, p.stderr
    assert set(os.listdir(work)) == EVENTS, p.stderr


# --------------------------------------------------------------------------
# Hooks that break a rule: not run, and said so on every event


@needs_root
def test_hook_owned_by_another_user_is_refused(setup):
    setup.hook("10-good")
    bad = setup.hook("20-nobody", mode=0o755)
    os.chown(bad, NOBODY, -1)
    p = setup.run()
    assert_ran(setup, p, ["10-good"])
    lines = refusal_lines(p, bad)
    assert len(lines) == 2, p.stderr       # once per event
    assert "another user's" in lines[0], lines
    assert "belongs to uid %d" % NOBODY in lines[0], lines
    assert "chown it to uid %d" % os.geteuid() in lines[0], lines


@pytest.mark.parametrize("mode,who", [(0o775, "its group"), (0o757, "everyone"),
                                      (0o722, "everyone")], ids=["0775", "0757", "0722"])
def test_hook_writable_by_group_or_others_is_refused(setup, mode, who):
    setup.hook("10-good")
    bad = setup.hook("20-writable", mode=mode)
    p = setup.run()
    assert_ran(setup, p, ["10-good"])
    lines = refusal_lines(p, bad)
    assert len(lines) == 2, p.stderr
    assert "writable by group or others: not run" in lines[0], lines
    assert "writable by %s (mode %04o)" % (who, mode) in lines[0], lines
    assert "chmod go-w %s" % bad in lines[0], lines


@needs_root
def test_symlinked_hook_is_refused(setup):
    """A symlink is refused even to a file that would pass every rule: the
    target could be changed, or be any program on the system."""
    outside = setup.hook("outside-hook", mode=0o755, where=setup.dir)
    link = os.path.join(setup.hooks, "20-link")
    os.symlink(outside, link)
    setup.hook("10-good")
    p = setup.run()
    assert_ran(setup, p, ["10-good"])
    lines = refusal_lines(p, link)
    assert len(lines) == 2, p.stderr
    assert "is a symlink: not run" in lines[0], lines
    assert "symlink or special file is refused" in lines[0], lines


def test_fifo_in_hooks_folder_is_refused_without_blocking(setup):
    fifo = os.path.join(setup.hooks, "20-fifo")
    os.mkfifo(fifo, 0o700)
    setup.hook("10-good")
    p = setup.run()
    assert_ran(setup, p, ["10-good"])
    assert len(refusal_lines(p, fifo)) == 2, p.stderr


# --------------------------------------------------------------------------
# The folder: refused when the configuration is loaded


def _refused_at_load(setup, p, want):
    assert p.returncode == 3, p
    assert setup.ran() == [], p
    assert (setup.config + ":3: key 'hooks': ") in p.stderr, p.stderr
    assert want in p.stderr, (want, p.stderr)
    assert p.stdout.startswith("DETECTOR-MONITOR UNKNOWN - " + setup.config + ":3: key 'hooks'"), p
    assert not os.path.exists(setup.state)


@pytest.mark.parametrize("mode,who", [(0o775, "its group"), (0o757, "everyone"),
                                      (0o770, "its group"), (0o1777, "everyone")],
                         ids=["0775", "0757", "0770", "1777"])
def test_hooks_folder_writable_by_group_or_others_is_refused(setup, mode, who):
    setup.hook("10-good")
    os.chmod(setup.hooks, mode)
    p = setup.run()
    _refused_at_load(setup, p, "%s is writable by %s (mode %04o): refused" % (setup.hooks, who, mode))
    assert "chmod go-w %s" % setup.hooks in p.stderr, p.stderr


@needs_root
def test_hooks_folder_owned_by_another_user_is_refused(setup):
    setup.hook("10-good")
    os.chown(setup.hooks, NOBODY, -1)
    p = setup.run()
    _refused_at_load(setup, p, "%s belongs to uid %d" % (setup.hooks, NOBODY))


def test_hooks_folder_symlink_is_refused(setup):
    setup.hook("10-good")
    link = os.path.join(setup.dir, "hooks-link")
    os.symlink(setup.hooks, link)
    setup.write(hooks=link)
    p = setup.run()
    _refused_at_load(setup, p, "%s is not a directory (a symlink or special file is refused)" % link)


def test_hooks_folder_loosened_after_load_runs_no_hook(setup):
    """Checked again before every event: the first hook of the first event
    makes the folder group-writable; the second event runs no hook and
    says why."""
    setup.hook("10-loosen", RECORD + "chmod 0775 %s\n" % setup.hooks)
    setup.hook("20-good")
    p = setup.run()
    assert p.returncode == 1, p
    got = setup.ran()
    assert len(got) == 2 and [n for _, n in got] == ["10-loosen", "20-good"], (got, p.stderr)
    assert got[0][0] == got[1][0] and got[0][0] in EVENTS, got
    assert ("hooks folder refused: %s is writable by its group (mode 0775)" % setup.hooks) \
        in p.stderr, p.stderr
    assert p.stderr.count("no hook run") == 1, p.stderr
