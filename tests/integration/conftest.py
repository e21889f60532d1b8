"""pytest fixtures: the loopback world (once per session, tests/testworld),
the STARTTLS servers (once per module that asks for `mail`) and a runner
for the sphere-probe binary under test ($DETECTOR_BUILD/sphere-probe)."""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from testworld import runs
from testworld.mailservers import PROTOCOLS, MailServers
from testworld.runs import started
from testworld.world import World

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("DETECTOR_BUILD") or os.path.join(HERE, "..", "..", "build")
PROBE = os.path.join(BUILD, "sphere-probe")
RUN_TIMEOUT = 60      # seconds: no single sphere-probe run may take longer


def pytest_configure(config):
    config.addinivalue_line("markers", "last: run after every other test")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session")
def world():
    w = started(World(), "build the test world")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def mail(world):
    """The STARTTLS servers and their MITMs (testworld.mailservers), once
    per test module (about 2 s); .protocols: the protocols they speak."""
    m = started(MailServers(world), "start the STARTTLS servers")
    m.protocols = PROTOCOLS
    yield m
    m.stop()


class Run(runs.Run):
    """One finished sphere-probe run."""

    name = "sphere-probe"

    @property
    def json(self):
        assert isinstance(self.data, dict), "no JSON object on stdout:\n%s" % self
        return self.data

    def sphere(self, sphere):
        """The JSON entry for one sphere (a Sphere or an address string)."""
        addr = sphere if isinstance(sphere, str) else sphere.address
        found = [s for s in self.json.get("spheres", []) if s.get("address") == addr]
        assert len(found) == 1, "expected one entry for sphere %s:\n%s" % (addr, self)
        return found[0]

    def statuses(self):
        return [s.get("status") for s in self.json.get("spheres", [])]


class Probe:
    """Runs sphere-probe with a clean environment: HOME in a temp dir, no
    DETECTOR_CONFIG, no DETECTOR_SPHERES, so only the arguments count."""

    def __init__(self, home):
        self.home = str(home)
        self.path = PROBE

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("DETECTOR_CONFIG", "DETECTOR_SPHERES")}
        env["HOME"] = self.home
        env.update(extra)
        return env

    def run(self, *args, env=None, timeout=RUN_TIMEOUT, cache=False):
        """cache=False adds --no-cache: tests of the verdict itself must not
        be answered from what an earlier test left in the cache."""
        if not os.access(self.path, os.X_OK):
            pytest.fail("%s is missing: build it first (`make`)" % self.path, pytrace=False)
        argv = [str(a) for a in args]
        if not cache and "--no-cache" not in argv:
            argv.insert(0, "--no-cache")
        t0 = time.monotonic()
        try:
            proc = subprocess.run([self.path] + argv, env=env or self.env(),
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            pytest.fail("sphere-probe %s: still running after %ss (killed)\n--- stdout\n%s"
                        % (" ".join(argv), timeout, e.stdout), pytrace=False)
        run = Run(argv, proc, time.monotonic() - t0)
        print(run)        # shown by pytest only when the test fails
        return run


@pytest.fixture(scope="session")
def scratch():
    """A private temp dir for the whole session, removed at the end
    (pytest's own tmp_path dirs are kept around; ours are not)."""
    d = tempfile.mkdtemp(prefix="detector-tests-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tmpdir_(scratch, request):
    """A fresh empty directory for one test, inside scratch."""
    return tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=scratch)


@pytest.fixture(scope="session")
def probe(scratch):
    home = os.path.join(scratch, "home")
    os.mkdir(home, 0o700)
    return Probe(home)


@pytest.fixture(scope="session")
def nssdb(world, scratch):
    """NSS databases: one trusting the test CA, one trusting nothing."""
    dbs = {}
    for name, trust in (("trusting", True), ("empty", False)):
        d = os.path.join(scratch, "nssdb-" + name)
        os.mkdir(d, 0o700)
        subprocess.run(["certutil", "-N", "-d", "sql:" + d, "--empty-password"],
                       check=True, capture_output=True)
        if trust:
            subprocess.run(["certutil", "-A", "-d", "sql:" + d, "-n", "testca",
                            "-t", "C,,", "-i", world.ca.crt], check=True,
                           capture_output=True)
        dbs[name] = d
    request = os.path.join(scratch, "request")
    with open(request, "w") as f:
        f.write("GET / HTTP/1.0\r\n\r\n")
    dbs["request"] = request
    return dbs
