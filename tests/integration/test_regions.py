"""Where the attack sits, with spheres named by region (issue 17): the
`spheres =` line that `detector-spheres list` prints ("europe=ADDR") makes
every report name the region of a sphere that differs: sphere-probe's
text and --json, the NSS integration's log line for an unmodified tstclnt,
detector-monitor's reports and hooks.

The world's microsocks spheres stand in for the continents: honest ones
resolve server.test to the real server, "lying" ones (an interceptor on
that region's exits) to the MITM.  A second lying sphere is started here
so that two regions differ from three.
"""

import json
import os
import subprocess
import sys

import pytest

from test_monitor import Monitor, service
from test_nss_hook import run_app, tstclnt
from testworld.ports import HOST, MITM_ADDR, REAL_ADDR
from testworld.world import Sphere

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPHERES_TOOL = os.path.join(TOP, "sphere-controller", "detector-spheres")
REGIONS = ["asia", "europe", "north-america", "africa-south-america",
           "oceania-antarctica"]
EXIT_REJECT = 2
# Quorum 5 of 5: one sphere that differs is a REJECT.  A REJECT that may be
# rerouted awaits every sphere (its plan needs them), so every region is
# in the report, not only those that answered before the verdict.
AWAIT_ALL = "quorum = 5\non_mitm = reroute\n"


@pytest.fixture(scope="module")
def lying2(world):
    """A second sphere whose exit reaches the MITM (stopped with the world)."""
    s = Sphere(world, "lying2", {HOST: MITM_ADDR})
    s.wait()
    return s


def listed(tmpdir, spheres):
    """The `spheres =` line detector-spheres list prints for spheres named
    REGIONS in order, each with the SOCKS port of one world sphere."""
    conf = os.path.join(tmpdir, "spheres.conf")
    with open(conf, "w") as f:
        for name, s in zip(REGIONS, spheres):
            f.write("[sphere %s]\ncountries = %s\nsocks_port = %d\n\n"
                    % (name, {"asia": "jp", "europe": "de", "north-america": "us",
                              "africa-south-america": "br",
                              "oceania-antarctica": "au"}[name], s.port))
    p = subprocess.run([sys.executable, SPHERES_TOOL, "list", "--config", conf,
                        "--state-dir", os.path.join(tmpdir, "state")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    line = p.stdout.strip()
    assert line == "spheres = " + ", ".join(
        "%s=%s" % (n, s.address) for n, s in zip(REGIONS, spheres)), line
    return line


def label(region, sphere):
    return "%s (%s)" % (region, sphere.address)


def test_regional_attack_names_the_regions(world, probe, lying2, tmpdir_):
    """Two regions' exits lead to the MITM, three to the real server: the
    report names each group by region, in text and in JSON."""
    spheres = [world.honest[0], world.lying, world.honest[1], lying2, world.honest[2]]
    dconf = os.path.join(tmpdir_, "detector.conf")
    with open(dconf, "w") as f:
        f.write("[detector]\n%s\n%s" % (listed(tmpdir_, spheres), AWAIT_ALL))
    env = probe.env(DETECTOR_CONFIG=dconf)
    args = ["--resolve", "%s:%d:%s" % (HOST, world.port, REAL_ADDR),
            "%s:%d" % (HOST, world.port)]
    r = probe.run("--json", *args, env=env)
    j = r.json
    assert r.rc == EXIT_REJECT, r
    assert j["locality"] == "regional", r
    assert ("asia (%s), north-america (%s) and oceania-antarctica (%s) see the "
            "direct path's key" % (world.honest[0].address, world.honest[1].address,
                                   world.honest[2].address)) in j["locality_detail"], r
    assert ("europe (%s) and africa-south-america (%s) see another key"
            % (world.lying.address, lying2.address)) in j["locality_detail"], r
    assert [s["region"] for s in j["spheres"]] == REGIONS, r
    assert r.sphere(world.lying)["status"] == "mismatch", r

    t = probe.run(*args, env=env)
    assert t.rc == EXIT_REJECT, t
    assert "where: regional: " in t.out, t
    rows = {ln.split()[0]: ln for ln in t.out.splitlines()
            if ln.startswith("  ") and "(127.0.0.1:" in ln}
    assert set(rows) == set(REGIONS), t
    assert label("europe", world.lying) in rows["europe"] and \
        "mismatch" in rows["europe"], t
    assert "match" in rows["asia"].split(), t


def test_unnamed_spheres_still_work(world, probe, tmpdir_):
    """A list without names is valid and reports addresses, as before."""
    dconf = os.path.join(tmpdir_, "detector.conf")
    with open(dconf, "w") as f:
        f.write("[detector]\nspheres = %s\n%s" % (
            world.sphere_list(*world.honest[:4], world.lying), AWAIT_ALL))
    r = probe.run("--json", "--resolve", "%s:%d:%s" % (HOST, world.port, REAL_ADDR),
                  "%s:%d" % (HOST, world.port), env=probe.env(DETECTOR_CONFIG=dconf))
    assert r.json["locality"] == "regional", r
    assert "%s sees another key" % world.lying.address in r.json["locality_detail"], r
    assert [s["region"] for s in r.json["spheres"]] == [None] * 5, r


def test_a_bad_name_is_refused_with_what_to_write(world, probe, tmpdir_):
    dconf = os.path.join(tmpdir_, "detector.conf")
    with open(dconf, "w") as f:
        f.write("[detector]\n\nspheres = Europe=%s\n" % world.honest[0].address)
    r = probe.run("%s:%d" % (HOST, world.port), env=probe.env(DETECTOR_CONFIG=dconf))
    assert r.rc == 3, r
    assert "%s:3: key 'spheres'" % dconf in r.err, r
    assert "write NAME=ip:port" in r.err, r


# -- the NSS integration's log line

def named(world, spheres):
    return ",".join("%s=%s" % (n, s.address) for n, s in zip(REGIONS, spheres))


def test_nss_refusal_names_the_locality(world, nssdb, tmpdir_):
    """An unmodified tstclnt whose own network sends it to the MITM: the
    refusal's log line says the attack is on its own path."""
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR,
                  spheres=named(world, world.honest), log="errors")
    assert app.rc != 0 and "hello" not in app.out, app
    lines = [ln for ln in app.err.splitlines() if "REFUSED" in ln]
    assert len(lines) == 1, app
    assert "; where: local-path: all " in lines[0], app
    assert "agree on one key and only the direct path differs" in lines[0], app
    assert len(lines[0]) < 1100, app


def test_nss_reroute_names_the_locality(world, nssdb, tmpdir_):
    """The same with on_mitm = reroute, and spheres without names."""
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR,
                  spheres=world.sphere_list(*world.honest), log="errors",
                  config="[detector]\non_mitm = reroute\n")
    assert app.rc == 0 and "hello" in app.out, app
    lines = [ln for ln in app.err.splitlines() if "rerouting through a sphere" in ln]
    assert len(lines) == 1, app
    assert "; where: local-path: " in lines[0], app


def test_nss_regional_refusal_names_regions(world, nssdb, lying2, tmpdir_):
    """The direct path reaches the real server, two regions' exits the
    MITM: a refusal at quorum 5 that names them."""
    spheres = [world.honest[0], world.lying, world.honest[1], lying2, world.honest[2]]
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), REAL_ADDR,
                  spheres=named(world, spheres), log="errors",
                  config="[detector]\n" + AWAIT_ALL)
    assert app.rc != 0, app
    lines = [ln for ln in app.err.splitlines() if "REFUSED" in ln]
    assert len(lines) == 1, app
    assert "; where: regional: " in lines[0], app
    assert "europe (%s)" % world.lying.address in lines[0], app


# -- detector-monitor

def monitor(world, tmpdir, spheres, names=True):
    mon = Monitor(world, tmpdir, spheres)
    if not names:
        return mon
    with open(mon.dconfig, "w") as f:
        f.write("[detector]\nspheres = %s\nprobe_timeout_ms = 5000\n"
                "deadline_ms = 8000\n" % named(world, spheres))
    return mon


def test_monitor_regional_names_regions(world, lying2, tmpdir_):
    spheres = [world.honest[0], world.lying, world.honest[1], lying2, world.honest[2]]
    mon = monitor(world, tmpdir_, spheres)
    mon.write({"main": service(world.port, pin=world.real.spki_sha256)})
    r = mon.run("--once", "--json")
    assert r.rc == 2, r
    [svc] = r.json()[0]["services"]
    assert svc["locality"] == "regional", r
    assert ("europe (%s) and africa-south-america (%s) see a key you did not deploy"
            % (world.lying.address, lying2.address)) in svc["locality_detail"], r
    assert "(regional)" in svc["summary"], r
    assert {p["via"]: p["region"] for p in svc["paths"]} == dict(
        [("direct", None)] + [(s.address, n) for n, s in zip(REGIONS, spheres)]), r
    [e] = mon.events()
    assert e["DETECTOR_LOCALITY"] == "regional", e
    assert "europe (%s)" % world.lying.address in e["DETECTOR_LOCALITY_DETAIL"], e
    assert "; where: regional: " in e["DETECTOR_SUMMARY"], e
    with open(e["DETECTOR_REPORT"]) as f:
        report = f.read()
    assert "\nwhere:    regional: " in report, report
    assert label("europe", world.lying) in report, report
    # Nagios long output.
    r = mon.run("--once")
    assert "(regional)" in r.status_line, r
    assert "  where: regional: " in r.out, r


def test_monitor_server_and_local_path(world, tmpdir_):
    """A rogue key at the server: every path, the direct one too, sees it.
    The monitor's own network intercepting: only the direct path does."""
    srv = world.tls_server("mon-regions-rogue", world.rogue)
    mon = monitor(world, tmpdir_, world.honest, names=False)
    mon.write({"web": service(srv.port, pin=world.real.spki_sha256),
               "main": service(world.port, pin=world.real.spki_sha256,
                               address=MITM_ADDR)})
    r = mon.run("--once", "--json")
    assert r.rc == 2, r
    by = {s["name"]: s for s in r.json()[0]["services"]}
    assert by["web"]["locality"] == "server-or-global", r
    assert "the server itself" in by["web"]["locality_detail"], r
    assert by["main"]["locality"] == "local-path", r
    assert "only the direct path sees a key you did not deploy" in \
        by["main"]["locality_detail"], r
    events = {e["DETECTOR_SERVICE"]: e for e in mon.events()}
    assert events["web"]["DETECTOR_LOCALITY"] == "server-or-global", events
    assert events["main"]["DETECTOR_LOCALITY"] == "local-path", events
    srv.stop()
