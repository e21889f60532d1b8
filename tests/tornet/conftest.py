"""pytest fixtures for tests that need real Tor.

`tornet` (session): the private Tor network of tornet.py, up once per test
session, spheres started by detector-spheres. Run the session inside the
private namespaces (`make test-tor` does):

    /usr/bin/python3 tests/tornet/tornet.py isolate -- /usr/bin/python3 -m pytest tests/tornet

`net` (per test): the same network, with every sphere a previous test
stopped started again.

Other test directories get the same fixture with three lines in their
conftest.py (see docs/tor-network.md).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tornet as tornet_mod  # noqa: E402


@pytest.fixture(scope="session")
def tornet():
    with tornet_mod.session_network() as net:
        yield net


@pytest.fixture
def net(tornet):
    tornet.ensure_spheres()
    return tornet


def pytest_configure(config):
    # Stem 1.8 calls Thread.setDaemon(), deprecated since Python 3.10.
    config.addinivalue_line("filterwarnings",
                            "ignore:setDaemon:DeprecationWarning")
