"""Unit tests of the circuit janitor (hygiene.py) against a fake controller:
which circuits it closes, and when. No tor needed (tests/tornet/
test_circuits.py shows the same against real tor)."""

import os
import subprocess
import sys
import time
from types import SimpleNamespace as NS

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import stem  # noqa: E402

from detector_spheres import hygiene  # noqa: E402

CRED = {"SOCKS_USERNAME": "detector", "SOCKS_PASSWORD": "00ff"}


class FakeController:
    def __init__(self):
        self.circuits, self.streams, self.closed = [], [], []

    def close_circuit(self, circ, flag=""):
        assert flag == "IfUnused"
        self.circuits = [c for c in self.circuits if c.id != circ]
        if circ == "gone":
            raise stem.InvalidArguments("552", "Unknown circuit")
        self.closed.append(circ)

    def get_circuits(self):
        return self.circuits

    def get_streams(self):
        return self.streams

    def add_event_listener(self, *_):
        pass


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


def stream(sid, status, circ, isolated=True):
    return NS(id=sid, status=status, circ_id=circ,
              keyword_args=dict(CRED) if isolated else {})


def circ(cid, status="BUILT", conflux=None, isolated=False):
    kw = {"CONFLUX_ID": conflux} if conflux else {}
    if isolated:
        kw.update(CRED)
    return NS(id=cid, status=status, keyword_args=kw,
              socks_username=kw.get("SOCKS_USERNAME"),
              socks_password=kw.get("SOCKS_PASSWORD"))


def janitor():
    clock = Clock()
    j = hygiene.CircuitJanitor("t", FakeController(), grace=1.0, clock=clock)
    return j, j.ctl, clock


def test_used_circuit_closed_grace_after_its_stream_ends():
    j, ctl, clock = janitor()
    j.on_stream(stream("1", "SENTCONNECT", "7"))
    j.on_stream(stream("1", "SUCCEEDED", "7"))
    assert j.close_idle() == 0
    j.on_stream(stream("1", "CLOSED", "7"))
    assert j.close_idle() == 0 and ctl.closed == []     # grace not over
    clock.t += 1.0
    assert j.close_idle() == 1 and ctl.closed == ["7"]
    clock.t += 5
    assert j.close_idle() == 0 and ctl.closed == ["7"]  # once


def test_circuit_with_another_open_stream_is_kept():
    j, ctl, clock = janitor()
    j.on_stream(stream("1", "SUCCEEDED", "7"))
    j.on_stream(stream("2", "SUCCEEDED", "7"))
    j.on_stream(stream("1", "CLOSED", "7"))
    clock.t += 10
    assert j.close_idle() == 0
    j.on_stream(stream("2", "FAILED", "7"))
    clock.t += 1
    assert j.close_idle() == 1 and ctl.closed == ["7"]


def test_reuse_within_grace_keeps_the_circuit():
    j, ctl, clock = janitor()
    j.on_stream(stream("1", "SUCCEEDED", "7"))
    j.on_stream(stream("1", "CLOSED", "7"))
    clock.t += 0.5
    j.on_stream(stream("2", "SENTCONNECT", "7"))       # same credentials
    clock.t += 5
    assert j.close_idle() == 0 and ctl.closed == []


def test_circuits_without_socks_credentials_are_left_to_tor():
    j, ctl, clock = janitor()
    j.on_stream(stream("1", "SUCCEEDED", "7", isolated=False))
    j.on_stream(stream("1", "CLOSED", "7", isolated=False))
    clock.t += 10
    assert j.close_idle() == 0 and ctl.closed == []


def test_both_legs_of_a_used_conflux_set_are_closed():
    j, ctl, clock = janitor()
    for c in ("7", "8"):
        j.on_circ(circ(c, "BUILT", conflux="CF1"))
    j.on_circ(circ("9", "BUILT", conflux="CF2"))        # a clean set
    j.on_stream(stream("1", "SUCCEEDED", "7"))
    j.on_stream(stream("1", "CLOSED", "7"))
    clock.t += 1
    assert j.close_idle() == 2 and sorted(ctl.closed) == ["7", "8"]


def test_a_leg_with_a_stream_keeps_its_set():
    j, ctl, clock = janitor()
    for c in ("7", "8"):
        j.on_circ(circ(c, "BUILT", conflux="CF1"))
    j.on_stream(stream("1", "SUCCEEDED", "7"))
    j.on_stream(stream("2", "SUCCEEDED", "8"))
    j.on_stream(stream("1", "CLOSED", "7"))
    clock.t += 3
    assert j.close_idle() == 0


def test_circuit_tor_closed_itself_is_forgotten():
    j, ctl, clock = janitor()
    j.on_stream(stream("1", "SUCCEEDED", "7"))
    j.on_stream(stream("1", "CLOSED", "7"))
    j.on_circ(circ("7", "CLOSED"))
    clock.t += 2
    assert j.close_idle() == 0 and ctl.closed == []


def test_sweep_finds_used_circuits_from_before_and_skips_busy_ones():
    j, ctl, clock = janitor()
    ctl.circuits = [circ("3", isolated=True, conflux="CF"),
                    circ("4", conflux="CF"),            # its partner leg
                    circ("5", isolated=True),           # carries a stream
                    circ("6"),                          # clean
                    circ("gone", isolated=True)]        # closes under us
    ctl.streams = [NS(id="9", circ_id="5")]
    j.sweep()
    clock.t += 1
    assert j.close_idle() == 2
    assert sorted(ctl.closed) == ["3", "4"]
    ctl.streams = []
    j.sweep()                                           # stream 9 ended
    clock.t += 1
    assert j.close_idle() == 1 and ctl.closed[-1] == "5"


def test_count_circuits_counts_partner_legs_as_used():
    ctl = FakeController()
    ctl.circuits = [circ("3", isolated=True, conflux="CF"),
                    circ("4", conflux="CF"), circ("6", conflux="X"),
                    circ("7"), circ("8", "CLOSED")]
    assert hygiene.count_circuits(ctl) == (4, 2)


# ---- the background janitor's record (cli.py) -------------------------
def _record(state, pid):
    (state / "tend.json").write_text('{"pid": %d}' % pid)


def test_stop_tend_signals_only_the_janitor_it_recorded(tmp_path):
    from detector_spheres import cli
    state = tmp_path / "state"
    state.mkdir()
    other = subprocess.Popen(["sleep", "30"])        # not a janitor
    fake = subprocess.Popen([sys.executable, "-c", "import time; "
                             "time.sleep(30)", "tend", "--state-dir",
                             str(state)])            # looks like ours
    try:
        _record(state, other.pid)
        assert cli._tend_pid(str(state)) is None
        assert cli.stop_tend(str(state)) is None
        assert other.poll() is None                  # untouched
        assert not (state / "tend.json").exists()
        _record(state, fake.pid)
        for _ in range(100):        # until the child has exec'd
            if b"tend" in open("/proc/%d/cmdline" % fake.pid, "rb").read():
                break
            time.sleep(0.02)
        assert cli._tend_pid(str(state)) == fake.pid
        assert cli.stop_tend(str(state)) == "stopped (pid %d)" % fake.pid
        assert fake.wait(5) == -15                   # SIGTERM
        _record(state, 999999999)                    # no such process
        assert cli._tend_pid(str(state)) is None
    finally:
        for p in (other, fake):
            p.kill()
            p.wait()
