"""Key continuity (issue 14): the attacker who blocks Tor.

An attacker on the local network who intercepts the direct path can
usually also block Tor (its relays' addresses are public).  Every check
then ends UNDECIDED.  The verdict cache keeps, per host:port, the keys a
quorum of spheres confirmed; when the spheres cannot decide, the key seen
directly is accepted if a quorum confirmed it within history_days, and
refused with DETECTOR_ERROR_KEY_CHANGED if a quorum confirmed another key
and never this one, whatever on_undecided says.  A site never confirmed
follows on_undecided.  An UNDECIDED is never remembered.

Through the unmodified tstclnt under detector-run.  The five spheres are
the world's honest ones behind gates this module opens and closes: "up"
relays to the sphere, "refuse" resets every connection at once (Tor's
relays blocked with a reset), "hang" holds it without a byte (blocked by
dropping).  The sphere list (and so the policy digest the cache records)
is the same whether the gates are open or not, as for a user whose Tor is
blocked and comes back.
"""

import datetime
import importlib.machinery
import importlib.util
import json
import os
import re
import socket
import struct
import time

import pytest

from conftest import HERE
from test_nss_hook import marks, nbclient, probes_seen, run_app, tstclnt
from testworld.ports import MITM_ADDR, REAL_ADDR, SPHERE_ADDR
from testworld.relay import Relay

HANG = "[detector]\nprobe_timeout_ms = 1500\ndeadline_ms = 1500\n"
# The remembered ACCEPT outlives the test's wait by less than the history:
# the real key then reaches the spheres (and the history) again.
SHORT = "[detector]\ncache_validity = 1\n"
KEY_CHANGED = "DETECTOR_ERROR_KEY_CHANGED"
BY_HISTORY = re.compile(r"accepted \(undecided, accepted by history\): .*"
                        r"accepted by history \(confirmed by a quorum on "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)")


class Gate(Relay):
    """The way to one sphere, opened and closed by the test (mode)."""
    kind = "gate"

    def __init__(self, sphere):
        addr, port = sphere.address.rsplit(":", 1)
        self.mode = "up"
        super().__init__(SPHERE_ADDR, (addr, int(port)))

    def handle(self, conn):
        if self.mode == "up":
            return super().handle(conn)
        if self.mode == "refuse":
            # A reset, as a firewall rejecting Tor's relays gives.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
            conn.close()
        # "hang": held open, silent, until stop()


@pytest.fixture
def gates(world):
    gs = [Gate(s) for s in world.honest]
    yield gs
    for g in gs:
        g.stop()


def block(gates, mode, n=5):
    for i, g in enumerate(gates):
        g.mode = mode if i < n else "up"


def run(world, nssdb, home, gates, addr, config=None):
    return run_app(world, home, tstclnt(nssdb, world.cport), addr,
                   spheres=world.sphere_list(*gates), config=config)


def confirmed(world, nssdb, home, gates, config=None):
    """The site as a quorum confirms it: the real key, spheres up."""
    block(gates, "up")
    app = run(world, nssdb, home, gates, REAL_ADDR, config)
    assert app.rc == 0 and "hello" in app.out, app
    assert "accepted (accept)" in app.err, app
    return app


def refused_key_changed(app):
    assert app.rc != 0 and KEY_CHANGED in app.err, app
    assert "REFUSED (undecided, key changed)" in app.err, app
    assert "the key changed and no quorum could confirm the new one" in app.err, app
    assert "hello" not in app.out, app


# -- (a) a site confirmed earlier, the MITM on the direct path, every
#    sphere blocked: refused, whatever on_undecided says

@pytest.mark.parametrize("mode", ["refuse", "hang"])
@pytest.mark.parametrize("policy", ["accept", "reject"])
def test_confirmed_site_under_attack_is_refused(world, nssdb, tmpdir_, gates,
                                                mode, policy):
    config = HANG + "on_undecided = %s\n" % policy
    confirmed(world, nssdb, tmpdir_, gates, config)
    block(gates, mode)
    app = run(world, nssdb, tmpdir_, gates, MITM_ADDR, config)
    refused_key_changed(app)
    # Not remembered as anything: the next attempt checks again.
    again = run(world, nssdb, tmpdir_, gates, MITM_ADDR, config)
    refused_key_changed(again)
    assert "remembered verdict" not in again.err, again


def test_key_change_event_and_notification_text(world, nssdb, tmpdir_, gates,
                                                monkeypatch):
    """The refusal reaches the session agent as refused-key-changed, and
    detector-notify has words for it."""
    confirmed(world, nssdb, tmpdir_, gates)
    runtime = os.path.join(tmpdir_, "run")
    os.makedirs(os.path.join(runtime, "detector"), 0o700)
    os.chmod(runtime, 0o700)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(os.path.join(runtime, "detector", "events"))
    s.setblocking(False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    try:
        block(gates, "refuse")
        app = run(world, nssdb, tmpdir_, gates, MITM_ADDR)
        refused_key_changed(app)
        ev = json.loads(s.recv(65536))
    finally:
        s.close()
    assert ev["event"] == "refused-key-changed" and ev["host"] == "server.test", ev
    assert ev["port"] == world.cport and ev["app"] == "tstclnt", ev
    assert "the key changed" in ev["reason"], ev
    path = os.path.join(HERE, "..", "..", "detector", "tools", "detector-notify")
    loader = importlib.machinery.SourceFileLoader("detector_notify", path)
    spec = importlib.util.spec_from_loader("detector_notify", loader)
    notify = importlib.util.module_from_spec(spec)
    loader.exec_module(notify)
    summary, body = notify.message(ev, 0)
    assert summary == "The key of server.test:%d changed: refused" % world.cport, summary
    assert "no quorum could confirm the new one" in body, body


# -- (b) the same site on the clean path, spheres still blocked: accepted
#    by history, even with on_undecided = reject

@pytest.mark.parametrize("policy", ["accept", "reject"])
def test_confirmed_site_on_the_clean_path_is_accepted_by_history(
        world, nssdb, tmpdir_, gates, policy):
    config = SHORT + "on_undecided = %s\n" % policy
    confirmed(world, nssdb, tmpdir_, gates, config)
    time.sleep(1.2)     # the ACCEPT (1 s) is gone, the history is not
    block(gates, "refuse")
    app = run(world, nssdb, tmpdir_, gates, REAL_ADDR, config)
    assert app.rc == 0 and "hello" in app.out, app
    assert BY_HISTORY.search(app.err), app
    # history_days = 0 turns key continuity off: on_undecided again.
    off = run(world, nssdb, tmpdir_, gates, MITM_ADDR,
              config + "history_days = 0\n")
    if policy == "accept":
        assert off.rc == 0 and "on_undecided = accept" in off.err, off
    else:
        assert off.rc != 0 and "DETECTOR_ERROR_UNDECIDED" in off.err, off


# -- (c) a site never confirmed: on_undecided

@pytest.mark.parametrize("policy", ["accept", "reject"])
def test_never_seen_site_follows_on_undecided(world, nssdb, tmpdir_, gates,
                                              policy):
    block(gates, "refuse")
    app = run(world, nssdb, tmpdir_, gates, MITM_ADDR,
              "[detector]\non_undecided = %s\n" % policy)
    assert KEY_CHANGED not in app.err and "by history" not in app.err, app
    if policy == "accept":
        assert app.rc == 0 and "accepted (undecided, on_undecided = accept)" in app.err, app
    else:
        assert app.rc != 0 and "DETECTOR_ERROR_UNDECIDED" in app.err, app


# -- (d) only 4 of the 5 spheres blocked: still UNDECIDED, same rules

def test_four_of_five_blocked(world, nssdb, tmpdir_, gates):
    confirmed(world, nssdb, tmpdir_, gates, SHORT)
    time.sleep(1.2)
    block(gates, "refuse", n=4)
    mitm = run(world, nssdb, tmpdir_, gates, MITM_ADDR, SHORT)
    refused_key_changed(mitm)
    assert "4 failed" in mitm.err, mitm    # decided before the 5th answered
    clean = run(world, nssdb, tmpdir_, gates, REAL_ADDR, SHORT)
    assert clean.rc == 0 and BY_HISTORY.search(clean.err), clean


# -- (e) once the spheres are back, the rogue key is probed, not answered
#    from memory

def test_rogue_key_is_probed_once_spheres_are_back(world, nssdb, tmpdir_, gates):
    # Never seen: the block lets the MITM through (on_undecided = accept),
    # and must not be remembered as if it were an acceptance (before issue
    # 14: "remembered verdict 'undecided' for this key" for 30 s, accepted).
    block(gates, "refuse")
    first = run(world, nssdb, tmpdir_, gates, MITM_ADDR)
    assert first.rc == 0 and "on_undecided = accept" in first.err, first
    block(gates, "up")
    m = marks(world)
    back = run(world, nssdb, tmpdir_, gates, MITM_ADDR)
    assert back.rc != 0 and "DETECTOR_ERROR_MITM" in back.err, back
    assert "remembered verdict" not in back.err, back
    assert probes_seen(world, m) > 0, "the rogue key must be probed again"


def test_refused_key_change_then_spheres_back(world, nssdb, tmpdir_, gates):
    confirmed(world, nssdb, tmpdir_, gates)
    block(gates, "refuse")
    refused_key_changed(run(world, nssdb, tmpdir_, gates, MITM_ADDR))
    block(gates, "up")
    m = marks(world)
    back = run(world, nssdb, tmpdir_, gates, MITM_ADDR)
    assert back.rc != 0 and "DETECTOR_ERROR_MITM" in back.err, back
    assert probes_seen(world, m) > 0, back


# -- (f) a long ACCEPT for the real key survives an UNDECIDED

def test_long_accept_survives_an_undecided(world, nssdb, probe, tmpdir_, gates):
    year = "[detector]\ncache_validity = 31536000\n"
    confirmed(world, nssdb, tmpdir_, gates, year)
    block(gates, "refuse")
    refused_key_changed(run(world, nssdb, tmpdir_, gates, MITM_ADDR, year))
    listed = probe.run("--cache-list", env=probe.env(HOME=tmpdir_), cache=True)
    line = re.search(r"^server\.test:%d\s+(\w+)\s+([0-9a-f]{16})\s+first \S+\s+"
                     r"verified (\S+)\s+expires (\S+)$" % world.cport, listed.out, re.M)
    assert line, listed
    assert line.group(1) == "accept", listed
    assert line.group(2) == world.real.spki_sha256[:16], listed
    verified, expires = (datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ")
                         for t in line.group(3, 4))
    assert (expires - verified).days == 365, listed
    # and it answers the real key at once, with no probe
    clean = run(world, nssdb, tmpdir_, gates, REAL_ADDR, year)
    assert clean.rc == 0 and "remembered verdict 'accept'" in clean.err, clean


# -- sphere-probe shows what the history did

def test_sphere_probe_reports_history(world, probe, tmpdir_, gates):
    env = probe.env(HOME=tmpdir_)
    target = "server.test:%d" % world.cport
    spheres = ["--spheres", world.sphere_list(*gates)]
    config = os.path.join(tmpdir_, "short.conf")
    with open(config, "w") as f:
        f.write(SHORT)
    spheres += ["--config", config]
    block(gates, "up")
    first = probe.run(*spheres, "--resolve", world.resolve(REAL_ADDR, world.cport),
                      target, env=env, cache=True)
    assert first.rc == 0, first
    time.sleep(1.2)
    block(gates, "refuse")
    mitm = probe.run("--json", *spheres, "--resolve",
                     world.resolve(MITM_ADDR, world.cport), target, env=env, cache=True)
    assert mitm.rc == 1 and mitm.json["verdict"] == "undecided", mitm
    assert mitm.json["history"] == "key-changed", mitm
    assert isinstance(mitm.json["history_confirmed"], int), mitm
    assert mitm.json["policy"]["action"] == "refuse", mitm
    assert "the key changed and no quorum" in mitm.json["reason"], mitm
    clean = probe.run(*spheres, "--resolve", world.resolve(REAL_ADDR, world.cport),
                      target, env=env, cache=True)
    assert clean.rc == 1 and "verdict: UNDECIDED" in clean.out, clean
    assert re.search(r"^history: accepted-by-history \(this key was confirmed "
                     r"by a quorum on \d{4}-", clean.out, re.M), clean
    assert re.search(r"^policy: .*: accept$", clean.out, re.M), clean
    other = os.path.join(tmpdir_, "other")
    os.mkdir(other, 0o700)
    fresh = probe.run("--json", *spheres, "--resolve",
                      world.resolve(REAL_ADDR, world.cport), target,
                      env=probe.env(HOME=other), cache=True)
    assert fresh.json["history"] == "none" and fresh.json["history_confirmed"] is None, fresh


# -- (g) the spheres all silent (Tor blocked by dropping): an application
#    that stays up (a browser, a mail client) waits the probe timeout once,
#    not at every connection (detector/lib/backoff.h).  nbclient makes
#    several connections in one process.

SLOW = "[detector]\nprobe_timeout_ms = 3000\ndeadline_ms = 3000\n"
NOT_ASKED = "spheres not asked: every sphere failed to answer"


def nb_run(world, nssdb, home, gates, addr, count, config):
    app = run_app(world, home, nbclient(nssdb, world.cport, addr, count=count,
                                        cache=False),
                  addr, spheres=world.sphere_list(*gates), config=config)
    results = re.findall(r"^result: (.*)$", app.out, re.M)
    totals = [int(t) for t in re.findall(r"^total_ms: (\d+)$", app.out, re.M)]
    assert len(results) == count and len(totals) == count, app
    return app, results, totals


def test_silent_spheres_history_accept_waits_once(world, nssdb, tmpdir_, gates):
    confirmed(world, nssdb, tmpdir_, gates, SLOW + "cache_validity = 1\n")
    time.sleep(1.2)
    block(gates, "hang")
    app, results, totals = nb_run(world, nssdb, tmpdir_, gates, REAL_ADDR, 3,
                                  SLOW + "cache_validity = 1\n")
    assert results == ["ok"] * 3, app
    assert len(BY_HISTORY.findall(app.err)) == 3, app
    assert totals[0] >= 2900, app            # the spheres' whole timeout once
    assert max(totals[1:]) < 1500, app       # then decided by history at once
    assert app.err.count(NOT_ASKED) == 2, app


def test_silent_spheres_key_change_refused_at_once(world, nssdb, tmpdir_, gates):
    confirmed(world, nssdb, tmpdir_, gates, SLOW)
    block(gates, "hang")
    app, results, totals = nb_run(world, nssdb, tmpdir_, gates, MITM_ADDR, 3,
                                  SLOW)
    assert all(r.startswith("failed %s" % KEY_CHANGED) for r in results), app
    assert totals[0] >= 2900, app
    assert max(totals[1:]) < 1500, app
    assert app.err.count(NOT_ASKED) == 2, app
    assert app.err.count("REFUSED (undecided, key changed)") == 3, app


def test_silent_spheres_never_seen_site_always_waits(world, nssdb, tmpdir_,
                                                     gates):
    # No history: nothing to decide by, so every connection asks the
    # spheres (and follows on_undecided).
    block(gates, "hang")
    config = SLOW + "on_undecided = accept\n"
    app, results, totals = nb_run(world, nssdb, tmpdir_, gates, MITM_ADDR, 2,
                                  config)
    assert results == ["ok"] * 2, app
    assert min(totals) >= 2900, app
    assert NOT_ASKED not in app.err, app
