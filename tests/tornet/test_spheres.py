"""detector-spheres against the private Tor network: the spheres of the
session were started by it; here status --json, newnym, stopping and
starting single spheres, and that stop ends exactly what start started."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import stem.control

from testworld import socks5
from testworld import tornet as tn
from testworld.processes import pid_state


def status(net, *args):
    p = net.spheres_cli("status", "--json", *args, check=False)
    return p.returncode, json.loads(p.stdout)


def test_status_json_lists_every_sphere_usable_on_its_own_exits(net):
    rc, st = status(net)
    assert rc == 0
    assert [s["name"] for s in st["spheres"]] == [s["name"] for s in net.spheres]
    for got, want in zip(st["spheres"], net.spheres):
        assert got["running"] and got["usable"] and got["error"] is None
        assert got["socks"] == "%s:%d" % want["socks"]
        assert got["bootstrap"]["progress"] == 100
        assert got["exit_restriction"] == {"fingerprints": want["exits"]}
        assert [e["fingerprint"] for e in got["usable_exits"]] == want["exits"]
        assert got["circuits"], got["name"] + " has no exit circuit"
        for c in got["circuits"]:
            assert c["exit"]["fingerprint"] in want["exits"]
            assert c["exit"]["address"] == tn.RELAY_ADDR


def circuit_of_probe(net, sphere):
    """The id of the circuit that carried a probe through the sphere."""
    got = []
    with net.controller(sphere["name"]) as ctl:
        ctl.add_event_listener(
            lambda ev: got.append(ev.circ_id) if ev.status == "SUCCEEDED"
            and ev.target_port == net.server[2] else None,
            stem.control.EventType.STREAM)
        net.probe(sphere)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    assert got, "no SUCCEEDED stream event"
    return got[0]


def test_newnym_gives_new_circuits(net):
    _, before = status(net)
    old = {s["name"]: {c["id"] for c in s["circuits"]} for s in before["spheres"]}
    p = net.spheres_cli("newnym")
    assert p.stdout.count("new circuit") + p.stdout.count("NEWNYM done") == 5
    _, after = status(net)
    for s in after["spheres"]:
        ids = {c["id"] for c in s["circuits"]}
        assert not ids & old[s["name"]], "%s: old circuits %s still there" % (
            s["name"], ids & old[s["name"]])
    for sphere in net.spheres:        # new connections take new circuits
        circ = circuit_of_probe(net, sphere)
        assert circ not in old[sphere["name"]], (sphere["name"], circ)


def test_stop_and_start_one_sphere(net):
    europe = net.sphere("europe")
    pid = json.loads(open(os.path.join(net.dir, "spheres", "europe",
                                       "sphere.json")).read())["pid"]
    p = net.spheres_cli("stop", "--sphere", "europe")
    assert "europe: stopped (pid %d)" % pid in p.stdout
    assert pid_state(pid) != "alive"
    with pytest.raises(ConnectionRefusedError):
        socks5.connect(europe["socks"], tn.SERVER_NAME, net.server[2])
    rc, st = status(net)
    assert rc == 1
    by = {s["name"]: s for s in st["spheres"]}
    assert not by["europe"]["running"] and by["europe"]["pid"] is None
    assert all(by[n]["usable"] for n in by if n != "europe")
    for sphere in net.spheres:
        if sphere["name"] != "europe":
            net.probe(sphere)
    p = net.spheres_cli("start", "--sphere", "europe", "--timeout", "60")
    assert "europe: started tor" in p.stdout
    assert "asia" not in p.stdout          # the others were not touched
    net.probe(europe)


def test_start_again_starts_nothing_new(net):
    before = {n: pid for n, pid, _ in net._sphere_pids()}
    p = net.spheres_cli("start", "--timeout", "30")
    assert p.stdout.count("already running") == 5
    assert {n: pid for n, pid, _ in net._sphere_pids()} == before


def test_stop_never_signals_a_process_it_did_not_start(net, tmp_path):
    """A record whose PID now belongs to someone else is dropped, not
    killed (the PID must still run the sphere's torrc)."""
    state = tmp_path / "state"
    (state / "ghost").mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        (state / "ghost" / "sphere.json").write_text(json.dumps({
            "name": "ghost", "pid": other.pid,
            "torrc": str(state / "ghost" / "torrc"), "socks": "127.0.0.1:9190",
            "control_port": 9191, "countries": [], "fingerprints": ["A" * 40]}))
        p = subprocess.run([sys.executable, tn.SPHERES_TOOL, "stop",
                            "--state-dir", str(state)],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0
        assert "ghost: not running (recorded pid %d is gone or no longer " \
        "its tor)" % other.pid \
            in p.stdout
        assert other.poll() is None            # still alive
        assert not (state / "ghost" / "sphere.json").exists()
    finally:
        other.kill()
        other.wait()


def test_port_in_use_is_reported_and_nothing_is_left_running(net, tmp_path):
    conf = tmp_path / "busy.conf"
    # same network, one sphere, on a SOCKS port somebody else holds
    conf.write_text(tn.sphere_section("busy", net.exits[0].fingerprint, 9180)
                    + net.tor_section())
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 9180))
        holder.listen(1)
        p = tn.spheres_tool(tmp_path / "state", conf, timeout=60)("start")
    assert p.returncode == 1
    assert "sphere busy: SOCKS port 127.0.0.1:9180 is already in use" in p.stderr
    assert not (tmp_path / "state" / "busy" / "sphere.json").exists()


def test_stop_also_ends_spheres_dropped_from_the_config(net, tmp_path):
    kept = tn.sphere_section("kept", net.exits[0].fingerprint, 9182)
    before = tmp_path / "two.conf"
    before.write_text(kept + tn.sphere_section("dropped", net.exits[1].fingerprint, 9184)
                      + net.tor_section())
    after = tmp_path / "one.conf"
    after.write_text(kept + net.tor_section())
    state = str(tmp_path / "state")
    run = tn.spheres_tool(state, timeout=90)
    p = run("start", "--config", str(before), "--timeout", "60")
    assert p.returncode == 0, p.stdout + p.stderr
    pids = [json.load(open(os.path.join(state, n, "sphere.json")))["pid"]
            for n in ("kept", "dropped")]
    p = run("stop", "--config", str(after))
    assert p.returncode == 0
    assert "kept: stopped" in p.stdout and "dropped: stopped" in p.stdout
    assert all(pid_state(pid) != "alive" for pid in pids)
