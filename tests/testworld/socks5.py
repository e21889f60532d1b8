"""SOCKS5 (RFC 1928) for the tests: the one client and the one test server.

connect() is a minimal client: no authentication, CONNECT by host name (so
the sphere or the Tor exit resolves the name, never the client) or by IP
address.  It checks the world independently of DetecTor.

Socks5Server is a sphere that behaves like Tor's SocksPort where it matters
to DetecTor, and records what each client sent:

  - picks username/password (RFC 1929) whenever the client offers it, as
    Tor does, and accepts any credentials (IsolateSOCKSAuth);
  - resolves names from its own map only; an unknown name gets reply 0x04
    (host unreachable), an address (ATYP 1/4) is refused with 0x02;
  - relays to the target and keeps the first 64 KiB the client sent
    through the tunnel, so a test can read the TLS record types.

Its variants are options: `interval` sends every byte of its SOCKS5
replies that many seconds after the previous one (a slowloris); `mode`
says what follows a successful CONNECT (see MODES).
"""

import ipaddress
import socket
import struct

from . import WorldError
from .ports import SPHERE_ADDR
from .relay import LIFETIME, relay
from .services import TcpService, close_quietly

REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}

TLS_ALERT_HANDSHAKE_FAILURE = b"\x15\x03\x03\x00\x02\x02\x28"


class SocksError(WorldError):
    """The proxy refused the request or broke the protocol."""


def recv_exact(sock, n):
    """Exactly n bytes from sock, or SocksError if it closes first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SocksError("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def _proxy_addr(proxy):
    if isinstance(proxy, str):
        a, p = proxy.rsplit(":", 1)
        return a, int(p)
    return tuple(proxy)


def connect(proxy, host, port, timeout=30.0):
    """Open a TCP connection to host:port through the SOCKS5 proxy, given
    as (host, port) or "host:port".

    Returns the connected socket. Raises SocksError with the proxy's reason,
    or OSError when the proxy itself cannot be reached.
    """
    proxy = _proxy_addr(proxy)
    sock = socket.create_connection(proxy, timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        ver, method = recv_exact(sock, 2)
        if ver != 5 or method != 0:
            raise SocksError("proxy %s:%d wants method %d, we offer only 'no auth'"
                             % (proxy + (method,)))
        try:
            ip = ipaddress.ip_address(host)
            atyp = b"\x01" if ip.version == 4 else b"\x04"
            addr = atyp + ip.packed
        except ValueError:
            name = host.encode("idna")
            addr = b"\x03" + bytes([len(name)]) + name
        sock.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
        ver, rep, _, atyp = recv_exact(sock, 4)
        if ver != 5:
            raise SocksError("bad reply version %d" % ver)
        if atyp == 1:
            recv_exact(sock, 4 + 2)
        elif atyp == 4:
            recv_exact(sock, 16 + 2)
        elif atyp == 3:
            recv_exact(sock, recv_exact(sock, 1)[0] + 2)
        if rep != 0:
            raise SocksError("proxy %s:%d: CONNECT %s:%d refused: %s (reply %d)" % (
                proxy + (host, port, REPLIES.get(rep, "reply code %d" % rep), rep)))
        return sock
    except BaseException:
        sock.close()
        raise


def _reply(rep):
    return bytes([5, rep, 0, 1, 0, 0, 0, 0, 0, 0])


class Socks5Server(TcpService):
    """A Tor-like SOCKS5 sphere (see the module's docstring).

    hosts     {name: address}: where each name goes
    interval  seconds between the bytes of its SOCKS5 replies (None: at once)
    mode      what follows a successful CONNECT (MODES)
    limit     "close-mid": bytes of the server's answer before it closes
    drip      "drip": seconds between the bytes of the server's answer
    timeout   seconds any one read from the client may take

    `sessions` is a list of dicts: methods, username, password, atyp, host,
    port, reply, upstream (bytes the client sent through the tunnel)."""
    kind = "tor-like"
    KEEP = 65536
    MODES = {
        "relay": "relay to the target",
        "alert": "a TLS fatal alert (handshake_failure) after the ClientHello",
        "close-mid": "relay, close after `limit` bytes of the server's answer",
        "drip": "relay, the server's answer one byte per `drip` seconds",
        "nul-bound": "success with a 255-byte bound *name* (ATYP 3) full of "
                     "NUL bytes, then relay",
    }

    def __init__(self, hosts, addr=SPHERE_ADDR, port=None, interval=None, mode="relay",
                 limit=None, drip=None, timeout=10):
        assert mode in self.MODES, mode
        self.hosts = dict(hosts)
        self.sessions = []
        self.interval, self.mode, self.limit, self.drip = interval, mode, limit, drip
        self.timeout = timeout
        super().__init__(addr, port)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _send(self, conn, data):
        if self.interval is None:
            conn.sendall(data)
            return
        for b in data:
            if self._stop.wait(self.interval):
                raise OSError("stopped")
            conn.sendall(bytes([b]))

    def _serve(self, conn):
        rec = {"methods": None, "username": None, "password": None, "atyp": None,
               "host": None, "port": None, "reply": None, "upstream": b""}
        with self._lock:
            self.sessions.append(rec)
        up = None
        try:
            conn.settimeout(self.timeout)
            if self._negotiate(conn, rec):
                up = self._request(conn, rec)
            if up is not None or rec["reply"] == 0:
                self._after(conn, up, rec)
        except (OSError, ValueError, WorldError):
            pass
        finally:
            close_quietly(conn, up)

    def _negotiate(self, conn, rec):
        """The greeting and, when offered, RFC 1929; False to hang up."""
        ver, n = recv_exact(conn, 2)
        rec["methods"] = list(recv_exact(conn, n))
        if ver != 5:
            return False
        if 2 in rec["methods"]:
            self._send(conn, b"\x05\x02")
            sub, ulen = recv_exact(conn, 2)
            rec["username"] = recv_exact(conn, ulen).decode(errors="replace")
            plen = recv_exact(conn, 1)[0]
            rec["password"] = recv_exact(conn, plen).decode(errors="replace")
            self._send(conn, b"\x01\x00")
        elif 0 in rec["methods"]:
            self._send(conn, b"\x05\x00")
        else:
            self._send(conn, b"\x05\xff")
            return False
        return True

    def _request(self, conn, rec):
        """The CONNECT request: sets rec's target and reply, sends the reply
        unless the mode sends its own; returns the upstream socket or None."""
        ver, cmd, _, atyp = recv_exact(conn, 4)
        rec["atyp"] = atyp
        if atyp == 3:
            rec["host"] = recv_exact(conn, recv_exact(conn, 1)[0]).decode(errors="replace")
        elif atyp == 1:
            rec["host"] = socket.inet_ntop(socket.AF_INET, recv_exact(conn, 4))
        elif atyp == 4:
            rec["host"] = socket.inet_ntop(socket.AF_INET6, recv_exact(conn, 16))
        rec["port"] = struct.unpack(">H", recv_exact(conn, 2))[0]
        addr = self.hosts.get(rec["host"]) if atyp == 3 else None
        up = None
        if cmd != 1:
            rec["reply"] = 0x07
        elif atyp != 3:
            rec["reply"] = 0x02
        elif addr is None:
            rec["reply"] = 0x04
        elif self.mode == "alert":
            rec["reply"] = 0x00          # no server behind it
        else:
            try:
                up = self._connect((addr, rec["port"]))
                rec["reply"] = 0x00
            except ConnectionRefusedError:
                rec["reply"] = 0x05
            except OSError:
                rec["reply"] = 0x01
        if rec["reply"] != 0 or self.mode != "nul-bound":
            self._send(conn, _reply(rec["reply"]))
        return up

    def _after(self, conn, up, rec):
        if self.mode == "alert":
            conn.recv(65536)                 # the ClientHello
            conn.sendall(TLS_ALERT_HANDSHAKE_FAILURE)
            return
        if self.mode == "nul-bound":
            name = b"\x00" * 100 + b"evil.test" + b"\x00" * 146
            conn.sendall(b"\x05\x00\x00\x03" + bytes([len(name)]) + name +
                         struct.pack(">H", rec["port"]))

        def keep(from_client, data):
            if from_client and len(rec["upstream"]) < self.KEEP:
                rec["upstream"] += data[:self.KEEP - len(rec["upstream"])]
        relay(conn, up, self._stop, LIFETIME, observe=keep,
              limit=self.limit if self.mode == "close-mid" else None,
              drip=self.drip if self.mode == "drip" else None)

    def sessions_since(self, mark):
        with self._lock:
            return list(self.sessions[mark:])

