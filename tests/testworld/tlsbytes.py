"""Bytes on the wire, for P3: a counting TCP relay, and where in a TLS byte
stream the server's Certificate message ends.

CountingRelay sits between a client and its upstream (a SOCKS5 sphere, or the
TLS server itself) and counts, per connection, the bytes it read from the
client and the bytes it delivered to the client, keeping the first 64 KiB of
each direction so that the TLS records can be read afterwards.

handshake_bytes_to_certificate() reads those streams: the bytes the client
sent up to the end of its ClientHello, plus the bytes the server sent up to
the end of its Certificate message.  TLS 1.2 is read in the clear.  Under
TLS 1.3 the Certificate is encrypted; it is the second encrypted record
(after EncryptedExtensions) when the server writes one handshake message per
record, as OpenSSL does, and the record's length is checked against the
certificate's size so that a server that packs messages differently is
reported rather than mis-measured.
"""

import struct
import time

from .relay import Relay

CONTENT_CCS, CONTENT_HANDSHAKE, CONTENT_APPDATA = 20, 22, 23
HS_CLIENT_HELLO, HS_CERTIFICATE = 1, 11
# A TLS 1.3 Certificate record around one certificate of N bytes: handshake
# header 4, context 1, list length 3, entry length 3, extensions 2, inner
# content type 1, AEAD tag 16 (plus up to 256 bytes of padding, unused here).
TLS13_CERT_OVERHEAD = (4 + 1 + 3 + 3 + 2 + 1 + 16, 4 + 1 + 3 + 3 + 2 + 1 + 16 + 64)


class TlsParseError(ValueError):
    pass


class CountingRelay(Relay):
    """A TCP relay to `upstream` that counts what passes, per connection.
    `conns`: dicts with c2s / s2c byte counts, the first KEEP bytes of each
    direction (c2s_data / s2c_data) and `closed`."""
    kind = "counting-relay"
    KEEP = 65536

    def __init__(self, addr, upstream):
        self.conns = []
        self._recs = {}
        super().__init__(addr, upstream)

    def observer(self, conn):
        rec = {"c2s": 0, "s2c": 0, "c2s_data": b"", "s2c_data": b"", "closed": False}
        with self._lock:
            self.conns.append(rec)
            self._recs[conn] = rec

        def observe(from_client, data):
            key = "c2s" if from_client else "s2c"
            rec[key] += len(data)
            rec[key + "_data"] += data[:self.KEEP - len(rec[key + "_data"])]
        return observe

    def closed(self, conn):
        with self._lock:
            rec = self._recs.pop(conn)
        rec["closed"] = True

    def mark(self):
        with self._lock:
            return len(self.conns)

    def wait_closed(self, since, count, timeout=10.0):
        """The `count` connections accepted after mark `since`, once all have
        closed (or raise after timeout seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                conns = self.conns[since:]
            if len(conns) >= count and all(c["closed"] for c in conns):
                return conns
            if time.monotonic() > deadline:
                raise TlsParseError("relay: %d of %d connections closed after %ss"
                                    % (sum(c["closed"] for c in conns), count, timeout))
            time.sleep(0.05)


def records(data):
    """(content type, offset, total length incl. header, fragment) for each
    complete TLS record at the start of data."""
    out, i = [], 0
    while i + 5 <= len(data):
        n = struct.unpack(">H", data[i + 3:i + 5])[0]
        if i + 5 + n > len(data):
            break
        out.append((data[i], i, 5 + n, data[i + 5:i + 5 + n]))
        i += 5 + n
    return out


def _end_of_message(recs, msg_type):
    """Offset just past the first plaintext handshake message of msg_type,
    reading handshake records in order (messages may span records)."""
    buf, base = b"", []      # handshake bytes, and their stream offsets
    for typ, off, total, frag in recs:
        if typ != CONTENT_HANDSHAKE:
            if typ == CONTENT_CCS:
                continue
            return None
        base.extend(range(off + 5, off + total))
        buf += frag
        i = 0
        while i + 4 <= len(buf):
            n = int.from_bytes(buf[i + 1:i + 4], "big")
            if i + 4 + n > len(buf):
                break
            if buf[i] == msg_type:
                return base[i + 4 + n - 1] + 1
            i += 4 + n
    return None


def handshake_bytes_to_certificate(c2s, s2c, cert_len):
    """Bytes of one handshake up to the server's Certificate: the client's
    ClientHello plus the server's bytes through its Certificate message.
    Returns (client_bytes, server_bytes, tls_version_label)."""
    crecs, srecs = records(c2s), records(s2c)
    client = _end_of_message(crecs, HS_CLIENT_HELLO)
    if client is None:
        raise TlsParseError("no complete ClientHello in the client's bytes")
    if not srecs or srecs[0][0] != CONTENT_HANDSHAKE:
        raise TlsParseError("the server's bytes do not start with a handshake record")
    # TLS 1.2: the Certificate is in the clear, in the server's first flight.
    server = _end_of_message(srecs, HS_CERTIFICATE)
    if server is not None:
        return client, server, "TLS 1.2"
    # TLS 1.3: ServerHello, (CCS), then encrypted records: EE, Certificate.
    enc = [r for r in srecs if r[0] == CONTENT_APPDATA]
    if len(enc) < 2:
        raise TlsParseError("fewer than two encrypted server records")
    typ, off, total, frag = enc[1]
    lo, hi = TLS13_CERT_OVERHEAD
    if not cert_len + lo <= len(frag) <= cert_len + hi:
        raise TlsParseError("the second encrypted record has %d bytes; a Certificate "
                            "of a %d-byte certificate would have %d-%d"
                            % (len(frag), cert_len, cert_len + lo, cert_len + hi))
    return client, off + total, "TLS 1.3"
