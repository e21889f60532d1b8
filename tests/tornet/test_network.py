"""The private Tor network itself: each sphere exits only through its own
exits, exits resolve names with the test DNS responder, and the figures
docs/tor-network.md reports (bootstrap time, probe latency, RSS)."""

import json
import os
import statistics
import threading

import pytest
import stem.control

from testworld import socks5
from testworld import tornet as tn


def exit_of_probe(net, sphere, host=tn.SERVER_NAME):
    """Probe through a sphere; return the fingerprint of the exit relay that
    carried the stream (from the sphere's STREAM events; the exit remaps the
    target to the address it resolved, so match the port)."""
    seen = {}
    done = threading.Event()

    def on_stream(ev):
        if ev.status == "SUCCEEDED" and ev.target_port == net.server[2]:
            seen["circ"] = ev.circ_id
            done.set()

    with net.controller(sphere["name"]) as ctl:
        ctl.add_event_listener(on_stream, stem.control.EventType.STREAM)
        net.probe(sphere, host=host)
        assert done.wait(10), "no SUCCEEDED stream event for " + host
        circ = ctl.get_circuit(seen["circ"])
        return circ.path[-1][0]


def test_each_sphere_exits_only_through_its_own_exits(net):
    used = {}
    for sphere in net.spheres:
        for _ in range(3):
            fp = exit_of_probe(net, sphere)
            assert fp in sphere["exits"], (sphere["name"], fp)
            used.setdefault(fp, set()).add(sphere["name"])
    # the exit sets are disjoint: no exit ever served two spheres
    assert all(len(names) == 1 for names in used.values())
    assert len(net.exits) >= len(net.spheres)


def test_exits_resolve_names_with_the_test_dns(net):
    # a name only the test resolver knows is reachable through every sphere
    net.set_hosts(dict(net.hosts, **{"alias.test": tn.SERVER_ADDR}))
    for sphere in net.spheres:
        net.probe(sphere, host="alias.test")
    # a name it does not know fails at the exit: exits never read /etc/hosts
    with pytest.raises(socks5.SocksError) as e:
        socks5.connect(net.spheres[0]["socks"], "localhost", 8443, timeout=30)
    assert "refused" in str(e.value)


def test_one_exit_can_have_its_own_view_of_names(net):
    """The malicious-exit setup: one exit resolves a name its own way."""
    asia, europe = net.spheres[0], net.spheres[1]
    ex = asia["exits"][0]
    net.set_exit_hosts(ex, {"asia-only.test": tn.SERVER_ADDR})
    try:
        net.probe(asia, host="asia-only.test")
        with pytest.raises(socks5.SocksError):
            socks5.connect(europe["socks"], "asia-only.test", net.server[2],
                           timeout=30)
    finally:
        net.reset_exit_hosts(ex)
    net.probe(asia)                   # back on the shared resolver


def test_servers_by_ip_address_work_too(net):
    # pitfall 2: IP targets need an exit policy that accepts the address
    # (the exits' 'accept *:*', contained by OutboundBindAddressExit)
    for sphere in net.spheres:
        sock = socks5.connect(sphere["socks"], tn.SERVER_ADDR, net.server[2])
        net._tls_handshake(sock)


def test_measurements(net, capsys):
    """Bootstrap time, per-probe latency and RSS, for docs/tor-network.md."""
    lat = {}
    for sphere in net.spheres:
        lat[sphere["name"]] = [net.probe(sphere) for _ in range(20)]
    allp = sorted(x for v in lat.values() for x in v)
    rss = net.rss()
    kinds = {}
    for name, kib in rss.items():
        kind = "sphere" if name.startswith("sphere ") else \
            "authority" if name.startswith("auth") else \
            "relay" if name.startswith(("middle", "exit")) else name
        kinds.setdefault(kind, []).append(kib / 1024)
    report = {
        "bring_up_s": net.timings,
        "probe_ms": {"median": round(statistics.median(allp) * 1000, 1),
                     "p90": round(allp[int(len(allp) * 0.9)] * 1000, 1),
                     "max": round(allp[-1] * 1000, 1),
                     "per_sphere_median": {
                         n: round(statistics.median(v) * 1000, 1)
                         for n, v in lat.items()}},
        "rss_mib": {k: [round(min(v), 1), round(max(v), 1)]
                    for k, v in kinds.items()},
        "rss_total_mib": round(sum(x for v in kinds.values() for x in v)),
    }
    out = os.environ.get("TORNET_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
    with capsys.disabled():
        print("\ntornet measurements: " + json.dumps(report))
    assert statistics.median(allp) < 2.0
    assert all(max(v) < 400 for v in kinds.values())
