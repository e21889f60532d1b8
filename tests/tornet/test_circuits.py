"""Circuit hygiene through the private Tor network (issue 16 item 3).

Every DetecTor check reaches a sphere with fresh SOCKS credentials, so tor
builds it a circuit no other check may use. `detector-spheres start` runs
the circuit janitor (`detector-spheres tend`, hygiene.py) that closes such
a circuit once its streams have ended; without it the circuits stay open
for tor's MaxCircuitDirtiness (10 minutes) and pile up.

Here: checks with distinct credentials through a sphere (a SOCKS5
username/password CONNECT and a TLS handshake, what libdetector does),
then the sphere's open circuits counted through Stem.
"""

import json
import os
import signal
import socket
import struct
import time
import uuid

import pytest

from testworld import tornet as tn
from testworld.processes import cmdline, pid_state
from testworld.socks5 import REPLIES, recv_exact

from detector_spheres import hygiene

CHECKS = 40          # sequential checks per sphere, each its own credentials
HELD = 6             # checks kept open while the janitor runs
USED_BOUND = 4       # used circuits (conflux legs counted) left afterwards
EXTRA_BOUND = 12     # open circuits afterwards beyond those before
SETTLE = hygiene.GRACE + hygiene.SWEEP_INTERVAL + 4.0


def connect_isolated(proxy, host, port, password, timeout=30.0):
    """SOCKS5 CONNECT with username/password authentication (RFC 1929),
    user 'detector' as libdetector sends it; returns the socket."""
    sock = socket.create_connection(proxy, timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x02")
        assert sock.recv(2) == b"\x05\x02", "proxy refused user/password auth"
        user, pw = b"detector", password.encode()
        sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(pw)])
                     + pw)
        assert sock.recv(2) == b"\x01\x00", "proxy refused the credentials"
        name = host.encode()
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name
                     + struct.pack(">H", port))
        head = recv_exact(sock, 4)
        assert head[1] == 0, "CONNECT refused: %s" % REPLIES.get(
            head[1], head[1])
        recv_exact(sock, 6 if head[3] == 1 else 18)
        return sock
    except BaseException:
        sock.close()
        raise


def check(net, sphere, password=None):
    """One check through the sphere: CONNECT with fresh credentials, then a
    TLS handshake with the test server (which closes the connection)."""
    sock = connect_isolated(sphere["socks"], tn.SERVER_NAME, net.server[2],
                            password or uuid.uuid4().hex)
    net._tls_handshake(sock)


def counts(net, sphere):
    with net.controller(sphere["name"]) as ctl:
        return hygiene.count_circuits(ctl)


def wait_counts(net, sphere, ok, timeout):
    deadline = time.monotonic() + timeout
    while True:
        got = counts(net, sphere)
        if ok(*got) or time.monotonic() >= deadline:
            return got
        time.sleep(0.5)


def tend_pid(net):
    try:
        with open(os.path.join(net.dir, "spheres", "tend.json")) as f:
            pid = json.load(f)["pid"]
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid_state(pid) == "alive" else None


def test_start_runs_the_circuit_janitor(net):
    pid = tend_pid(net)
    assert pid, "detector-spheres start left no circuit janitor running " \
        "(%s/spheres/tend.json)" % net.dir
    assert "tend" in cmdline(pid)


@pytest.mark.parametrize("index", [0, 3])
def test_circuits_of_finished_checks_are_closed(net, index):
    sphere = net.spheres[index]
    total0, used0 = counts(net, sphere)
    # Checks still open keep their circuits, however long they last.
    held = [connect_isolated(sphere["socks"], tn.SERVER_NAME, net.server[2],
                             uuid.uuid4().hex) for _ in range(HELD)]
    try:
        time.sleep(SETTLE)
        total, used = counts(net, sphere)
        assert used >= HELD, (total, used)
        for sock in held:      # their circuits still work: TLS handshake
            net._tls_handshake(sock)
    finally:
        for sock in held:
            sock.close()
    t0 = time.monotonic()
    for _ in range(CHECKS):
        check(net, sphere)
    elapsed = time.monotonic() - t0
    total, used = wait_counts(
        net, sphere, lambda t, u: u <= USED_BOUND and
        t <= total0 + EXTRA_BOUND, SETTLE)
    print("%s: before %d open (%d used); after %d checks in %.1f s: %d open "
          "(%d used)" % (sphere["name"], total0, used0, CHECKS, elapsed,
                         total, used))
    assert used <= USED_BOUND, "%d used circuits still open after %d " \
        "finished checks" % (used, CHECKS)
    assert total <= total0 + EXTRA_BOUND, (total0, total)


def test_without_the_janitor_circuits_pile_up_until_it_sweeps_them(net):
    """The control experiment: with the janitor stopped, every finished
    check leaves its circuit open (what tor does by itself); `start` runs
    the janitor again, and its first sweep closes them."""
    sphere = net.spheres[1]
    pid = tend_pid(net)
    assert pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_state(pid) == "alive" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid_state(pid) != "alive"
    try:
        for _ in range(CHECKS):
            check(net, sphere)
        time.sleep(SETTLE)
        total, used = counts(net, sphere)
        print("%s without janitor: %d open (%d used) after %d checks"
              % (sphere["name"], total, used, CHECKS))
        assert used >= CHECKS, (total, used)
    finally:
        p = net.spheres_cli("start", "--timeout", "30")
    assert "circuit janitor started" in p.stdout
    assert tend_pid(net) not in (None, pid)
    total, used = wait_counts(net, sphere, lambda t, u: u <= USED_BOUND,
                              SETTLE)
    print("%s after the janitor's sweep: %d open (%d used)"
          % (sphere["name"], total, used))
    assert used <= USED_BOUND, (total, used)
