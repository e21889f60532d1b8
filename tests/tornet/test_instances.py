"""Several tor processes per sphere (`[spheres] instances = N`, issue 16
item 4) on the private Tor network: every instance bootstraps, exits only
through the sphere's exits, carries a TLS connection to the test server,
is listed for libdetector grouped with its sphere, and is stopped."""

import json

from testworld import socks5
from testworld import tornet as tn
from testworld.processes import pid_state

SOCKS_PORT = 9186      # instance 2: 9188 (one sphere: step 2), controls +1


def test_two_instances_of_one_sphere(net, tmp_path):
    exit_fp = net.exits[0].fingerprint
    conf = tmp_path / "instances.conf"
    conf.write_text("[spheres]\ninstances = 2\n\n"
                    + tn.sphere_section("twin", exit_fp, SOCKS_PORT)
                    + net.tor_section())
    state = str(tmp_path / "state")
    run = tn.spheres_tool(state, conf)
    p = run("start", "--timeout", "90")
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        assert "twin: started tor" in p.stdout
        assert "twin.2: started tor" in p.stdout
        p = run("status", "--json")
        assert p.returncode == 0, p.stdout + p.stderr
        st = json.loads(p.stdout)["spheres"]
        assert [(s["name"], s["sphere"], s["instance"], s["socks"])
                for s in st] == [
            ("twin", "twin", 1, "127.0.0.1:%d" % SOCKS_PORT),
            ("twin.2", "twin", 2, "127.0.0.1:%d" % (SOCKS_PORT + 2))]
        assert st[0]["pid"] != st[1]["pid"]
        for s in st:
            assert s["usable"]
            assert [e["fingerprint"] for e in s["usable_exits"]] == [exit_fp]
            assert all(c["exit"]["fingerprint"] == exit_fp
                       for c in s["circuits"])
        for port in (SOCKS_PORT, SOCKS_PORT + 2):
            sock = socks5.connect((tn.RELAY_ADDR, port), tn.SERVER_NAME,
                                  net.server[2])
            assert net._tls_handshake(sock)
        p = run("list")
        assert p.stdout == "spheres = twin=127.0.0.1:%d|127.0.0.1:%d\n" % (
            SOCKS_PORT, SOCKS_PORT + 2)
    finally:
        p = run("stop")
    assert p.returncode == 0
    assert "twin: stopped" in p.stdout and "twin.2: stopped" in p.stdout
    assert "circuit janitor: stopped" in p.stdout
    for s in st:
        assert pid_state(s["pid"]) != "alive"
