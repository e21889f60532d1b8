"""7: the spheres receive the host NAME (SOCKS5 ATYP 3) and resolve it
themselves; the client never hands them an address, not even the one
--resolve gave the direct connection.  Checked in microsocks's own log of
the targets it connected to."""

import ipaddress

import pytest

from testworld.ports import HOST, MITM_ADDR, REAL_ADDR


def is_address(host):
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def test_spheres_receive_names_not_addresses(world, probe):
    marks = [s.log_size() for s in world.honest]
    for addr in (REAL_ADDR, MITM_ADDR):      # a clean run and a MITM'd one
        run = probe.run("--json", "--quorum", "5", "--resolve", world.resolve(addr),
                        "--spheres", world.sphere_list(*world.honest),
                        "%s:%d" % (HOST, world.port))
        assert run.rc in (0, 2), run
    for sphere, mark in zip(world.honest, marks):
        targets = sphere.targets(mark)
        assert targets, "sphere %s logged no connection" % sphere
        assert all(t == (HOST, world.port) for t in targets), (sphere, targets)
        with open(sphere.proc.log_path) as f:
            log = f.read()
        assert REAL_ADDR not in log and MITM_ADDR not in log, log


@pytest.mark.last
def test_no_sphere_ever_got_an_address(world):
    """Over every probe of the whole session (this test runs last)."""
    for sphere in world.spheres:
        for host, _ in sphere.targets():
            assert not is_address(host), "sphere %s was sent address %s" % (sphere, host)
