"""Misbehaving peers: for the fault matrix (tests/integration/test_faults.py)
and the world's misfits.

Each is a python listener on a free loopback port (services.TcpService:
daemon threads, every connection closed by stop()).  The SOCKS5 ones are
the one SOCKS5 test server (socks5.Socks5Server, Tor-like: username/
password picked when offered, no authentication otherwise) with the option
that makes it misbehave:

  Blackhole         accepts TCP connections and never sends a byte
  Garbage           answers the SOCKS greeting like an HTTP server would
  SlowlorisSphere   sends its SOCKS5 replies one byte per `interval` seconds
  SocksMisfit       a correct SOCKS5 handshake, then by `mode`:
                      "alert"      a TLS fatal alert (handshake_failure)
                      "close-mid"  relays to the real server and closes
                                   after `limit` bytes of the server's answer
                      "drip"       relays, but the server's answer one byte
                                   per `interval` seconds
                      "nul-bound"  replies success with a 255-byte bound
                                   *name* (ATYP 3) full of NUL bytes, then
                                   relays normally
  CuttingServer     the direct path: relays to the real server and closes
                    after `limit` bytes of its answer (before the
                    certificate is complete)

A `hosts` map gives where each name goes (as a sphere would resolve it).
"""

import socket

from .ports import SPHERE_ADDR
from .relay import Relay
from .services import TcpService
from .socks5 import Socks5Server

MISFIT_TIMEOUT = 30          # seconds a misfit waits for the client


class Blackhole(TcpService):
    """Accepts TCP connections and never sends a byte."""
    kind = "blackhole"

    def handle(self, conn):
        pass       # held open until stop()


class Garbage(TcpService):
    """Reads the SOCKS greeting and answers like an HTTP server would."""
    kind = "garbage"
    REPLY = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"

    def handle(self, conn):
        self._spawn(self._answer, conn)

    def _answer(self, conn):
        try:
            conn.settimeout(5)
            conn.recv(512)
            conn.sendall(self.REPLY)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(512)
        except OSError:
            pass


class SlowlorisSphere(Socks5Server):
    """Every byte of its SOCKS5 replies comes `interval` seconds after the
    previous one; the relay that follows (if a client waits that long) is
    correct."""
    kind = "slowloris"

    def __init__(self, hosts, interval=1.0):
        super().__init__(hosts, interval=interval, timeout=MISFIT_TIMEOUT)


class SocksMisfit(Socks5Server):
    """A correct SOCKS5 handshake, then the misbehaviour named by mode."""

    MODES = ("alert", "close-mid", "drip", "nul-bound")

    def __init__(self, hosts, mode, limit=100, interval=1.0):
        assert mode in self.MODES, mode
        self.kind = "socks5-" + mode
        super().__init__(hosts, SPHERE_ADDR, mode=mode, limit=limit, drip=interval,
                         timeout=MISFIT_TIMEOUT)


class CuttingServer(Relay):
    """A direct-path "server": relays to upstream (a real TLS server) and
    closes after `limit` bytes of the answer, so the client never gets the
    whole certificate."""
    kind = "cutting-server"

    def __init__(self, addr, upstream, limit=60, port=None):
        super().__init__(addr, upstream, limit=limit, lifetime=10, port=port)
