"""The back-off while every sphere is silent (detector/lib/backoff.h) in a
long-running libdetector client (tests/hook/pathcheck: one process, one
context, as a gateway): it decides by the key history without asking the
spheres again, except when the direct path staples an OCSP response, whose
"revoked" must still make the verdict REJECT (security review of the
back-off, M2).  The stapling servers are test_ocsp's: the same key, one
stapling "revoked" (127.0.0.7), one stapling nothing (127.0.0.8).
"""

import os
import re
import subprocess
import time

import pytest

from conftest import BUILD
from test_continuity import Gate, block
from test_ocsp import ADDRS, serve_stapling
from testworld.ports import HOST

PATHCHECK = os.path.join(BUILD, "tests", "pathcheck")


@pytest.fixture(scope="module")
def stapling(world, scratch):
    # test_ocsp's servers; the world (and its sphere folders) is shared by
    # the session, so the spheres have names of their own.
    yield from serve_stapling(world, scratch, "backoff-ocsp")


def pathcheck(conf, port, *addrs):
    r = subprocess.run([PATHCHECK, conf, HOST, str(port)] + list(addrs),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    checks = re.findall(r"^check (\S+): verdict=(\w+) history=(\S+) "
                        r"revoked=(\d) backoff=(\d) staple=(\d+) ms=(\d+)$",
                        r.stdout, re.M)
    assert len(checks) == len(addrs), r.stdout
    return checks, r.stdout


def test_silent_spheres_backoff_never_hides_a_revoked_staple(
        world, stapling, tmpdir_):
    gates = [Gate(stapling.sphere("none", i)) for i in range(5)]
    try:
        conf = os.path.join(tmpdir_, "detector.conf")
        with open(conf, "w") as f:
            f.write("[detector]\nspheres = %s\nquorum = 4\ncache = %s\n"
                    "cache_validity = 1\nprobe_timeout_ms = 2000\n"
                    "deadline_ms = 2000\n"
                    % (world.sphere_list(*gates),
                       os.path.join(tmpdir_, "verdicts.mdb")))
        os.chmod(conf, 0o600)
        # A quorum confirms the key (it enters the history).
        [first], out = pathcheck(conf, stapling.port, ADDRS["none"])
        assert first[1] == "accept", out
        time.sleep(1.2)         # the ACCEPT (1 s) is gone, the history is not
        block(gates, "hang")
        checks, out = pathcheck(conf, stapling.port, ADDRS["none"],
                                ADDRS["none"], ADDRS["revoked"])
        silent, backed_off, revoked = checks
        # every sphere silent: accepted by history after the timeout
        assert silent[1:5] == ("undecided", "accepted-by-history", "0", "0"), out
        assert int(silent[6]) >= 1900, out
        # the same question at once: the history again, spheres not asked
        assert backed_off[1:5] == ("undecided", "accepted-by-history", "0",
                                   "1"), out
        assert int(backed_off[6]) < 1000, out
        assert "spheres not asked" in out, out
        # the same key with a "revoked" staple: asked, and refused
        assert int(revoked[5]) > 0, out
        assert revoked[1:5] == ("reject", "none", "1", "0"), out
    finally:
        for g in gates:
            g.stop()
