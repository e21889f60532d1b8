"""Where the test world listens, and how a test waits for it.

The loopback addresses each part of the world uses, free_port() (a TCP port
free on every address asked for, never handed out twice by this process),
and bounded waits: wait_tcp() until a port accepts, wait_tls() until it
completes a TLS handshake (tls_peer_cert(), Python's ssl without
verification: independent of the code under test).
"""

import random
import socket
import ssl
import threading
import time

from . import WorldError

HOST = "server.test"
REAL_ADDR = "127.0.0.2"      # the real servers
MITM_ADDR = "127.0.0.3"      # the TLS-terminating MITM (rogue certificate)
REISSUE_ADDR = "127.0.0.4"   # the real key in a re-issued certificate
BROKEN_ADDR = "127.0.0.5"    # servers that are not TLS servers (direct path)
SPHERE_ADDR = "127.0.0.1"    # spheres and misbehaving listeners

START_TIMEOUT = 10.0         # seconds to wait for any one service to come up

_taken_ports = set()
_taken_lock = threading.Lock()


def _bind_all(addrs, port):
    """port (0: the first address picks one) once it was bound on every
    address in addrs, or None."""
    socks = []
    try:
        for a in addrs:
            s = socket.socket()
            socks.append(s)
            s.bind((a, port))
            port = s.getsockname()[1]
        return port
    except OSError:
        return None
    finally:
        for s in socks:
            s.close()


def _free(addrs, candidate):
    for _ in range(200):
        port = _bind_all(addrs, candidate())
        if port is None:
            continue
        with _taken_lock:
            if port not in _taken_ports:
                _taken_ports.add(port)
                return port
    raise WorldError("no free TCP port on %s" % ", ".join(addrs))


def free_port(*addrs):
    """A TCP port currently free on every address in addrs (never one this
    process has already handed out)."""
    return _free(addrs or (SPHERE_ADDR,), lambda: 0)


def free_low_port(*addrs):
    """free_port() below 32768, where no connection's ephemeral port can
    take it before the program given it listens (ephemeral ports start at
    32768 here)."""
    return _free(addrs or (SPHERE_ADDR,), lambda: random.randint(20000, 32000))


def wait_tcp(addr, port, proc=None, timeout=START_TIMEOUT):
    """Wait until addr:port accepts TCP connections."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise WorldError("%s exited while starting:\n%s" % (proc.name, proc.log()))
        try:
            socket.create_connection((addr, port), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise WorldError("%s:%d not accepting after %ss: %s" % (addr, port, timeout, e))
            time.sleep(0.05)


def tls_peer_cert(sock_or_addr, sni=HOST, timeout=5.0, min_version=None, max_version=None):
    """Do a TLS handshake (no verification) and return the peer's leaf
    certificate as DER.  sock_or_addr is a connected socket or (addr, port)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    sock = sock_or_addr
    if isinstance(sock_or_addr, tuple):
        sock = socket.create_connection(sock_or_addr, timeout=timeout)
    sock.settimeout(timeout)
    try:
        with ctx.wrap_socket(sock, server_hostname=sni) as tls:
            return tls.getpeercert(binary_form=True), tls.version()
    finally:
        sock.close()


def wait_tls(addr, port, proc=None, sni=HOST, timeout=START_TIMEOUT):
    """Wait until addr:port completes a TLS handshake."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise WorldError("%s exited while starting:\n%s" % (proc.name, proc.log()))
        try:
            return tls_peer_cert((addr, port), sni=sni, timeout=2)
        except (OSError, ssl.SSLError) as e:
            if time.monotonic() > deadline:
                raise WorldError("%s:%d: no TLS handshake after %ss: %s" % (addr, port, timeout, e))
            time.sleep(0.05)
