"""Misbehaving spheres and servers for the fault matrix (test_faults.py),
in addition to world.py's Blackhole, Garbage, SlowLink and TorLikeSphere.

Each is a python listener on a free loopback port (world._TcpService: daemon
threads, every connection closed by stop()).  The SOCKS5 side behaves like
Tor's SocksPort (username/password picked when offered, no authentication
otherwise) until the point where it misbehaves:

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

import select
import socket
import struct
import time

from world import SPHERE_ADDR, WorldError, _recv_exact, _TcpService

TLS_ALERT_HANDSHAKE_FAILURE = b"\x15\x03\x03\x00\x02\x02\x28"


def _close(*socks):
    for s in socks:
        if s is not None:
            try:
                s.close()
            except OSError:
                pass


class _Socks5(_TcpService):
    """Negotiates SOCKS5 as Tor does; subclasses decide what follows."""

    kind = "socks5-misfit"

    def __init__(self, hosts, addr=SPHERE_ADDR):
        self.hosts = dict(hosts)
        self.requests = []          # (host, port) per connection
        super().__init__(addr)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _send(self, conn, data):
        conn.sendall(data)

    def _negotiate(self, conn):
        """Returns (host, port) of the CONNECT request, or None."""
        ver, n = _recv_exact(conn, 2)
        methods = _recv_exact(conn, n)
        if ver != 5:
            return None
        if 2 in methods:
            self._send(conn, b"\x05\x02")
            _, ulen = _recv_exact(conn, 2)
            _recv_exact(conn, ulen)
            _recv_exact(conn, _recv_exact(conn, 1)[0])
            self._send(conn, b"\x01\x00")
        else:
            self._send(conn, b"\x05\x00")
        _, cmd, _, atyp = _recv_exact(conn, 4)
        if atyp != 3 or cmd != 1:
            self._send(conn, b"\x05\x02\x00\x01" + b"\x00" * 6)
            return None
        host = _recv_exact(conn, _recv_exact(conn, 1)[0]).decode(errors="replace")
        port = struct.unpack(">H", _recv_exact(conn, 2))[0]
        with self._lock:
            self.requests.append((host, port))
        return host, port

    def _upstream(self, host, port):
        addr = self.hosts.get(host)
        if addr is None:
            return None
        up = socket.create_connection((addr, port), timeout=5)
        with self._lock:
            self._conns.append(up)
        return up

    def _serve(self, conn):
        try:
            conn.settimeout(30)
            req = self._negotiate(conn)
            if req is not None:
                self.after(conn, *req)
        except (OSError, ValueError, WorldError):
            pass
        finally:
            _close(conn)

    def after(self, conn, host, port):
        raise NotImplementedError

    def _relay(self, conn, up, limit=None, drip=None, lifetime=30.0):
        """Copies both ways; the server's answer is cut after `limit`
        bytes, or sent one byte per `drip` seconds."""
        sent = 0
        end = time.monotonic() + lifetime
        while not self._stop.is_set() and time.monotonic() < end:
            r, _, _ = select.select([conn, up], [], [], 0.2)
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                if s is conn:
                    up.sendall(data)
                    continue
                if limit is not None:
                    data = data[:limit - sent]
                if drip is None:
                    conn.sendall(data)
                    sent += len(data)
                else:
                    for b in data:
                        if self._stop.wait(drip):
                            return
                        conn.sendall(bytes([b]))
                        sent += 1
                if limit is not None and sent >= limit:
                    return


class SlowlorisSphere(_Socks5):
    """Every byte of its SOCKS5 replies comes `interval` seconds after the
    previous one; the relay that follows (if a client waits that long) is
    correct."""

    kind = "slowloris"

    def __init__(self, hosts, interval=1.0):
        self.interval = interval
        super().__init__(hosts)

    def _send(self, conn, data):
        for b in data:
            if self._stop.wait(self.interval):
                raise OSError("stopped")
            conn.sendall(bytes([b]))

    def after(self, conn, host, port):
        up = self._upstream(host, port)
        self._send(conn, b"\x05\x00\x00\x01" + b"\x00" * 6 if up else
                   b"\x05\x04\x00\x01" + b"\x00" * 6)
        if up is not None:
            self._relay(conn, up)
            _close(up)


class SocksMisfit(_Socks5):
    """A correct SOCKS5 handshake, then the misbehaviour named by mode."""

    MODES = ("alert", "close-mid", "drip", "nul-bound")

    def __init__(self, hosts, mode, limit=100, interval=1.0):
        assert mode in self.MODES, mode
        self.mode, self.limit, self.interval = mode, limit, interval
        self.kind = "socks5-" + mode
        super().__init__(hosts)

    def after(self, conn, host, port):
        ok = b"\x05\x00\x00\x01" + b"\x00" * 6
        if self.mode == "alert":
            conn.sendall(ok)
            conn.recv(65536)                 # the ClientHello
            conn.sendall(TLS_ALERT_HANDSHAKE_FAILURE)
            return
        up = self._upstream(host, port)
        if up is None:
            conn.sendall(b"\x05\x04\x00\x01" + b"\x00" * 6)
            return
        try:
            if self.mode == "nul-bound":
                name = b"\x00" * 100 + b"evil.test" + b"\x00" * 146
                conn.sendall(b"\x05\x00\x00\x03" + bytes([len(name)]) + name +
                             struct.pack(">H", port))
                self._relay(conn, up)
            else:
                conn.sendall(ok)
                if self.mode == "close-mid":
                    self._relay(conn, up, limit=self.limit)
                else:
                    self._relay(conn, up, drip=self.interval)
        finally:
            _close(up)


class CuttingServer(_TcpService):
    """A direct-path "server": relays to upstream (a real TLS server) and
    closes after `limit` bytes of the answer, so the client never gets the
    whole certificate."""

    kind = "cutting-server"

    def __init__(self, addr, upstream, limit=60, port=None):
        self.upstream, self.limit = upstream, limit
        super().__init__(addr, port)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _serve(self, conn):
        up = None
        try:
            up = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._conns.append(up)
            sent = 0
            end = time.monotonic() + 10
            while sent < self.limit and time.monotonic() < end and not self._stop.is_set():
                r, _, _ = select.select([conn, up], [], [], 0.2)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is conn:
                        up.sendall(data)
                    else:
                        data = data[:self.limit - sent]
                        conn.sendall(data)
                        sent += len(data)
        except OSError:
            pass
        finally:
            _close(conn, up)
