"""8: TLS 1.2-only and TLS 1.3-only servers both work, and a server that
needs SNI gets it, on the direct path and through every sphere."""

import pytest

from testworld.ports import HOST, REAL_ADDR


def run_all_five(world, probe, port):
    return probe.run("--json", "--quorum", "5",
                     "--resolve", "%s:%d:%s" % (HOST, port, REAL_ADDR),
                     "--spheres", world.sphere_list(*world.honest), "%s:%d" % (HOST, port))


@pytest.mark.parametrize("variant", ["tls12", "tls13"])
def test_tls_version_only_servers_accept(world, probe, variant):
    port = getattr(world, variant + "_port")
    run = run_all_five(world, probe, port)
    assert run.rc == 0, run
    assert run.json["verdict"] == "accept", run
    assert run.json["direct"]["spki_sha256"] == world.real.spki_sha256, run
    for sphere in world.honest:
        s = run.sphere(sphere)
        assert s["status"] == "match", run
        assert s["spki_sha256"] == world.real.spki_sha256, run


def test_sni_is_sent_on_every_path(world, probe):
    """The server shows the real certificate only for SNI server.test and
    default.test's otherwise: seeing the real key everywhere proves SNI."""
    run = run_all_five(world, probe, world.sni_port)
    assert run.rc == 0, run
    assert run.json["verdict"] == "accept", run
    assert run.json["direct"]["spki_sha256"] == world.real.spki_sha256, run
    assert run.json["direct"]["spki_sha256"] != world.default.spki_sha256, run
    for sphere in world.honest:
        s = run.sphere(sphere)
        assert s["status"] == "match", run
        assert s["spki_sha256"] == world.real.spki_sha256, run
        assert s["cert_sha256"] == world.real.cert_sha256, run
