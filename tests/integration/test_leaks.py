"""Leaks and memory errors on the NSS-hook path, under valgrind.

Unmodified NSS applications (Debian's tstclnt, tests/hook/nbclient.c) run
under build/detector-run, i.e. against the enhanced libssl3.so and
libdetector.so.0, inside valgrind's memcheck: a clean handshake (probed),
the same again in a new process (answered from the persistent cache), a
MITM refusal, and two handshakes in one process with the in-process memo.
Every run must end with no memory error and no leaked block (definite,
indirect or possible), apart from the one suppression in valgrind.supp,
which is explained there.  NSS and NSPR need no suppression: nbclient and
tstclnt call NSS_Shutdown (and nbclient PR_Cleanup).

Run by `make test-leaks` (DETECTOR_LEAK_CHECK=1); skipped otherwise, and
skipped in the ASan build (valgrind and ASan do not mix).
"""

import os
import re
import shutil

import pytest

from test_nss_hook import PRELOAD, nb_results, nbclient, run_app, tstclnt
from testworld.ports import MITM_ADDR, REAL_ADDR

HERE = os.path.dirname(os.path.abspath(__file__))
SUPP = os.path.join(HERE, "valgrind.supp")

pytestmark = [
    pytest.mark.skipif(os.environ.get("DETECTOR_LEAK_CHECK") != "1",
                       reason="run by `make test-leaks`"),
    pytest.mark.skipif(PRELOAD is not None, reason="the ASan build is checked by ASan"),
    pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed"),
]


def valgrind(log):
    return ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--show-leak-kinds=definite,indirect,possible",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--suppressions=" + SUPP, "--num-callers=40",
            "--gen-suppressions=all", "--log-file=" + log]


def check_clean(app, log):
    """No memcheck error, no leak; the log explains any failure."""
    with open(log) as f:
        text = f.read()
    detail = "%s\n--- valgrind log\n%s" % (app, text[-12000:])
    assert app.rc != 99, detail
    assert re.search(r"ERROR SUMMARY: 0 errors", text), detail
    for kind in ("definitely lost", "indirectly lost", "possibly lost"):
        m = re.search(r"%s: ([\d,]+) bytes" % kind, text)
        assert m is None or m.group(1) == "0", detail
    assert "DetecTor[" in app.err, "DetecTor was not loaded:\n" + detail
    return text


def test_tstclnt_clean_then_cached_then_mitm(world, nssdb, tmpdir_):
    """tstclnt three times with one HOME (one verdict cache): clean path
    (probed, connects), clean again (cache hit: no probe, connects),
    through the MITM (refused, DETECTOR_ERROR_MITM).  Expected: each run
    valgrind-clean."""
    steps = [("probe", REAL_ADDR, "probing the spheres", 0),
             ("cache-hit", REAL_ADDR, "remembered verdict 'accept'", 0),
             ("mitm", MITM_ADDR, "DETECTOR_ERROR_MITM", 1)]
    for name, addr, want, fails in steps:
        log = os.path.join(tmpdir_, "valgrind-%s.log" % name)
        app = run_app(world, tmpdir_, valgrind(log) + tstclnt(nssdb, world.cport), addr)
        check_clean(app, log)
        assert want in app.err, app
        if fails:
            assert app.rc != 0 and "hello" not in app.out, app
        else:
            assert app.rc == 0 and "hello" in app.out, app


@pytest.mark.parametrize("addr", [REAL_ADDR, MITM_ADDR], ids=["clean", "mitm"])
def test_nbclient_two_handshakes(world, nssdb, tmpdir_, addr):
    """nbclient (non-blocking, handshake suspended while DetecTor decides),
    two full handshakes in one process: the first probed, the second
    answered from memory.  Expected: both ok (clean) or both refused
    (MITM), valgrind-clean."""
    log = os.path.join(tmpdir_, "valgrind-nb.log")
    app = run_app(world, tmpdir_, valgrind(log) +
                  nbclient(nssdb, world.cport, addr, count=2, cache=False), addr)
    check_clean(app, log)
    res = [r for r, _ in nb_results(app)]
    if addr == REAL_ADDR:
        assert res == ["ok", "ok"], app
    else:
        assert len(res) == 2 and all(r.startswith("failed DETECTOR_ERROR_MITM") for r in res), app
