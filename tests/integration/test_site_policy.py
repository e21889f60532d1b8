"""Per-site policy (issue 12): `[site NAME]` sections of detector.conf(5)
give the hosts under NAME their own quorum, on_undecided and on_mitm, and
the most specific section wins.  One configuration file, unmodified
tstclnt under detector-run: one site's section lets a check through that
the global policy refuses, while the other site is refused.

`on_mitm = reroute` in one site's section reroutes that site
(test_reroute_nss.py tests the reroute itself) while the global refuse
still refuses the others.

The server presents one certificate for server.test and other.test
(tstclnt's -a names the host checked, while it connects to server.test).
This module's own spheres: one resolves both names, four only
server.test, so other.test is seen by one sphere of five.
"""

import os

import pytest

from test_nss_hook import run_app, tstclnt
from test_nss_hook_names import issue, serve
from testworld.world import Sphere
from world import HOST, MITM_ADDR, REAL_ADDR

OTHER = "other.test"


@pytest.fixture(scope="module")
def sites(world, scratch):
    d = os.path.join(scratch, "site-policy")
    os.mkdir(d, 0o700)
    cert = issue(world, d, "sites", HOST, "DNS:%s,DNS:%s" % (HOST, OTHER))
    server, port = serve(d, "sites", cert)
    both = Sphere(world, "sites-both", {HOST: REAL_ADDR, OTHER: REAL_ADDR})
    only = [Sphere(world, "sites-only%d" % i, {HOST: REAL_ADDR}) for i in range(4)]
    for s in [both] + only:
        s.wait()
    yield {"port": port, "spheres": world.sphere_list(both, *only)}
    server.stop()


GLOBAL = ("[detector]\ncache = off\nquorum = 4\non_undecided = reject\n"
          "probe_timeout_ms = 5000\n")
SITES = GLOBAL + ("\n[site %s]\nquorum = 1\n"
                  "\n[site %s]\non_mitm = reroute\n" % (OTHER, HOST))


def as_other(nssdb, port):
    return tstclnt(nssdb, port) + ["-a", OTHER]


def test_a_site_section_applies_its_own_quorum(world, nssdb, tmpdir_, sites):
    port = sites["port"]
    # The global policy alone: one sphere of five saw other.test, quorum 4
    # is not reached, on_undecided = reject refuses.
    plain = run_app(world, tmpdir_, as_other(nssdb, port), REAL_ADDR,
                    spheres=sites["spheres"], config=GLOBAL)
    assert plain.rc != 0 and "hello" not in plain.out, plain
    assert "DETECTOR_ERROR_UNDECIDED" in plain.err, plain
    # [site other.test] quorum = 1: the one sphere's agreement suffices.
    app = run_app(world, tmpdir_, as_other(nssdb, port), REAL_ADDR,
                  spheres=sites["spheres"], config=SITES)
    assert app.rc == 0 and "hello" in app.out, app
    assert "%s:%d accepted (accept)" % (OTHER, port) in app.err, app


def test_another_site_in_the_same_file_is_rerouted(world, nssdb, tmpdir_, sites):
    # server.test through the rogue-CA MITM, under the same file: its own
    # section asks for a reroute: the connection is made again through a
    # sphere and reaches the real server.
    app = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR,
                  spheres=sites["spheres"], config=SITES)
    assert app.rc == 0 and "hello" in app.out, app
    assert "REROUTED %s:%d via" % (HOST, world.cport) in app.err, app
    assert "rerouting is not available" not in app.err, app
    # other.test under the global on_mitm (refuse): no reroute note.
    plain = run_app(world, tmpdir_, tstclnt(nssdb, world.cport), MITM_ADDR,
                    spheres=sites["spheres"], config=GLOBAL)
    assert plain.rc != 0 and "DETECTOR_ERROR_MITM" in plain.err, plain
    assert "reroute" not in plain.err, plain
