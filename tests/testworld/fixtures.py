"""pytest fixtures that several test folders share (the one module of the
test world that imports pytest).  A test module takes them by importing
them: `from testworld.fixtures import world, work  # noqa: F401`.

  world      (module) the loopback test world, World(minimal=True)
  work       (module) a folder for the module's files, removed afterwards
  protected  (module) the module's application (its CORELEASE, a
             testworld.mozilla.Corelease, and PROGRAM, the file to run)
             from a copy of its folder with the co-release libssl3.so
"""

import os
import shutil
import tempfile

import pytest

from .world import World


@pytest.fixture(scope="module")
def world():
    with World(minimal=True) as w:
        yield w


@pytest.fixture(scope="module")
def work(request):
    """/tmp/detector-NAME-XXXXXX for test_NAME.py, mode 755 (an unprivileged
    server, such as dovecot's login processes, reaches what it holds);
    kept when DETECTOR_KEEP is set."""
    name = request.module.__name__.rpartition(".")[2]
    d = tempfile.mkdtemp(prefix="detector-%s-" % name.replace("test_", "", 1))
    os.chmod(d, 0o755)
    yield d
    if not os.environ.get("DETECTOR_KEEP"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def protected(request, work):
    """The path of the module's PROGRAM in a copy of its CORELEASE's folder
    with the co-release libssl3.so; the test fails, naming what to build,
    when the co-release or libdetector is not built."""
    corelease = request.module.CORELEASE
    if corelease.missing():
        pytest.fail(corelease.missing(), pytrace=False)
    return corelease.copy(work, request.module.PROGRAM)
