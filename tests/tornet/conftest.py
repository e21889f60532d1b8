"""pytest fixtures for tests that need real Tor.

`tornet` (session): the private Tor network of testworld/tornet.py, up once per test
session, spheres started by detector-spheres. Run the session inside the
private namespaces (`make test-tor` does):

    PYTHONPATH=tests /usr/bin/python3 -m testworld.tornet isolate -- \
        /usr/bin/python3 -m pytest tests/tornet

`net` (per test): the same network, with every sphere a previous test
stopped started again.

`world` (session): the loopback test world of tests/testworld/world.py
without its microsocks spheres (the spheres here are the Tor clients): the
test CA, the real server.test on 127.0.0.2, a MITM with a CA-valid rogue
certificate on 127.0.0.3, a slow link. Its certificates also carry the
fresh names of SCENARIO_NAMES, world.scenario_names (exits cache names,
see test_scenarios.py).

`sphere_probe` (session): runs $DETECTOR_BUILD/sphere-probe (default
build/sphere-probe) with a clean environment; `scenario_report` collects
what test_scenarios.py measured, written to $TORNET_SCENARIO_REPORT and
summed up at the end of the run.

Other test directories get the same fixtures with three lines in their
conftest.py (see docs/tor-network.md).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from testworld import runs
from testworld import tornet as tornet_mod
from testworld.runs import started
from testworld.world import World

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(HERE, "..", "..",
                                                         "build")
PROBE = os.path.join(BUILD, "sphere-probe")
RUN_TIMEOUT = 60      # seconds: no single sphere-probe run may take longer

# One name per scenario that changes what exits resolve: an exit keeps a
# name's first answer for minutes, so a scenario never reuses a name.
SCENARIO_NAMES = {"malicious-exit": "exit-mitm.server.test",
                  "server-attacker": "server-side.server.test"}


@pytest.fixture(scope="session")
def tornet():
    with tornet_mod.session_network() as net:
        yield net


@pytest.fixture
def net(tornet):
    tornet.ensure_spheres()
    return tornet


@pytest.fixture(scope="session")
def world():
    w = World(spheres=False, names=SCENARIO_NAMES.values())
    w.scenario_names = dict(SCENARIO_NAMES)
    started(w, "build the test world")
    yield w
    w.stop()


class Run(runs.Run):
    """One finished sphere-probe run."""

    @property
    def json(self):
        """The --json output (None without it, or if it did not parse)."""
        return self.data

    def sphere(self, address):
        """The JSON entry of the sphere at address ('127.0.0.1:9162')."""
        found = [s for s in self.json["spheres"] if s["address"] == address]
        assert len(found) == 1, "no single entry for %s:\n%s" % (address, self)
        return found[0]

    def statuses(self):
        return {s["address"]: s["status"] for s in self.json["spheres"]}


class SphereProbe:
    """sphere-probe with only its arguments counting: HOME in a private
    directory, no DETECTOR_CONFIG or DETECTOR_SPHERES."""

    def __init__(self, home):
        self.home = home
        self.path = PROBE

    def env(self, home=None):
        env = {k: v for k, v in os.environ.items()
               if k not in ("DETECTOR_CONFIG", "DETECTOR_SPHERES",
                            "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
        env["HOME"] = home or self.home
        return env

    def run(self, *args, cache=False, home=None, prefix=()):
        """cache=False adds --no-cache; prefix: a command the probe runs
        under (e.g. unshare + a bind-mounted /etc/hosts)."""
        if not os.access(self.path, os.X_OK):
            pytest.fail("%s is missing: build it first (`make`)" % self.path,
                        pytrace=False)
        argv = [str(a) for a in args]
        if not cache:
            argv.insert(0, "--no-cache")
        argv = list(prefix) + [self.path] + argv
        t0 = time.monotonic()
        try:
            proc = subprocess.run(argv, env=self.env(home),
                                  stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            pytest.fail("%s: still running after %ss (killed)\n%s"
                        % (" ".join(argv), RUN_TIMEOUT, e.stdout),
                        pytrace=False)
        run = Run(argv, proc, time.monotonic() - t0)
        print(run)            # shown by pytest only when the test fails
        return run


@pytest.fixture(scope="session")
def scratch():
    d = tempfile.mkdtemp(prefix="tornet-tests-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def sphere_probe(scratch):
    home = os.path.join(scratch, "home")
    os.mkdir(home, 0o700)
    return SphereProbe(home)


_REPORT = {}


@pytest.fixture(scope="session")
def scenario_report():
    """{row: {...}}: what each scenario saw, for docs/tor-network.md."""
    yield _REPORT
    out = os.environ.get("TORNET_SCENARIO_REPORT")
    if out and _REPORT:
        with open(out, "w") as f:
            json.dump(_REPORT, f, indent=1)


def pytest_terminal_summary(terminalreporter):
    rows = {k: v for k, v in _REPORT.items() if "verdict" in v}
    if not rows:
        return
    tr = terminalreporter
    tr.section("scenario matrix through real Tor")
    for name, r in rows.items():
        tr.write_line("%-28s exit %s %-9s in %4s ms  spheres: %s%s" % (
            name, r["exit"], r["verdict"], r["ms"], " ".join(r["statuses"]),
            "  (attempt %d)" % r["attempts"] if r.get("attempts", 1) > 1
            else ""))
    if "latency" in _REPORT:
        tr.write_line("latency: " + json.dumps(_REPORT["latency"]))


def pytest_configure(config):
    # Stem 1.8 calls Thread.setDaemon(), deprecated since Python 3.10.
    config.addinivalue_line("filterwarnings",
                            "ignore:setDaemon:DeprecationWarning")
