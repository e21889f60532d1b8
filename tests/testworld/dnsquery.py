"""The smallest DNS client the tests need: one A query over UDP.

Used to check that the test DNS responder (dnsmasq) answers what its hosts
file says, i.e. what the Tor exits will see.
"""

import random
import socket
import struct


def query_a(name, server, timeout=2.0):
    """Return the IPv4 addresses `server` (host, port) gives for `name`.

    An empty list means NXDOMAIN or no A record. Raises OSError on timeout.
    """
    qid = random.randrange(65536)
    qname = b"".join(bytes([len(p)]) + p
                     for p in name.encode("idna").split(b".") if p) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + \
        struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, server)
        data = sock.recv(4096)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    if rid != qid:
        raise OSError("DNS reply id %d does not match query id %d" % (rid, qid))
    if flags & 0x000F:
        return []
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    addrs = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(data[pos:pos + 4]))
        pos += rdlen
    return addrs


def _skip_name(data, pos):
    while True:
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + length
