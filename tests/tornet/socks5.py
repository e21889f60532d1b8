"""A minimal SOCKS5 client (RFC 1928) for the Tor network tests.

Only what the tests need: no authentication, CONNECT by host name (so the
Tor exit resolves the name, never the client) or by IP address.
"""

import ipaddress
import socket
import struct

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


class SocksError(Exception):
    """The proxy refused the request or broke the protocol."""


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SocksError("proxy closed the connection after %d of %d bytes"
                             % (len(data), n))
        data += chunk
    return data


def connect(proxy, host, port, timeout=30.0):
    """Open a TCP connection to host:port through the SOCKS5 proxy (host, port).

    Returns the connected socket. Raises SocksError with the proxy's reason,
    or OSError when the proxy itself cannot be reached.
    """
    sock = socket.create_connection(proxy, timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        ver, method = _recv_exact(sock, 2)
        if ver != 5 or method != 0:
            raise SocksError("proxy wants method %d, we offer only 'no auth'"
                             % method)
        try:
            ip = ipaddress.ip_address(host)
            atyp = b"\x01" if ip.version == 4 else b"\x04"
            addr = atyp + ip.packed
        except ValueError:
            name = host.encode("idna")
            addr = b"\x03" + bytes([len(name)]) + name
        sock.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
        ver, rep, _, atyp = _recv_exact(sock, 4)
        if ver != 5:
            raise SocksError("bad reply version %d" % ver)
        if atyp == 1:
            _recv_exact(sock, 4 + 2)
        elif atyp == 4:
            _recv_exact(sock, 16 + 2)
        elif atyp == 3:
            _recv_exact(sock, _recv_exact(sock, 1)[0] + 2)
        if rep != 0:
            raise SocksError("CONNECT %s:%d refused: %s" % (
                host, port, REPLIES.get(rep, "reply code %d" % rep)))
        return sock
    except BaseException:
        sock.close()
        raise
