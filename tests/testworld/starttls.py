"""The STARTTLS preambles of SMTP, IMAP, POP3, XMPP and LDAP in Python: the
client side (readiness checks, the MITM's upstream) and the server side
(the MITM's face to its victim).

starttls_peer_cert() is the independent check: the certificate a server
shows after its preamble, seen with Python's ssl (no verification), not
with DetecTor.
"""

import socket
import ssl
import time

from . import WorldError
from .ports import HOST, START_TIMEOUT

PROTOCOLS = ("smtp", "imap", "pop3", "xmpp", "ldap")
IO_TIMEOUT = 5.0            # seconds for any one read in a preamble
LINE_MAX = 4096

XMPP_HEADER = ("<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
               "xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams'>")
XMPP_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
LDAP_STARTTLS = (bytes.fromhex("301d02010177188016") + b"1.3.6.1.4.1.1466.20037")
LDAP_SUCCESS = bytes.fromhex("300c02010178070a010004000400")


# --------------------------------------------------------------------------
# The preambles in Python: client side (readiness, the MITM's upstream) and
# server side (the MITM's face to its victim).


def read_line(sock):
    buf = b""
    while not buf.endswith(b"\r\n"):
        b = sock.recv(1)
        if not b:
            raise WorldError("connection closed after %r" % buf)
        buf += b
        if len(buf) > LINE_MAX:
            raise WorldError("line too long: %r" % buf[:80])
    return buf.decode(errors="replace")


def _read_until(sock, marker):
    buf = b""
    while marker not in buf:
        b = sock.recv(4096)
        if not b:
            raise WorldError("connection closed after %r" % buf[-200:])
        buf += b
        if len(buf) > 65536:
            raise WorldError("no %r in 64 KiB" % marker)
    return buf


def _smtp_reply(sock):
    lines = [read_line(sock)]
    while lines[-1][3:4] == "-":
        lines.append(read_line(sock))
    return lines


def _ber_message(sock):
    head = b""
    while len(head) < 2:
        b = sock.recv(2 - len(head))
        if not b:
            raise WorldError("LDAP connection closed")
        head += b
    n = head[1]
    if n & 0x80:
        ext = b""
        while len(ext) < (n & 0x7f):
            ext += sock.recv((n & 0x7f) - len(ext))
        head += ext
        n = int.from_bytes(ext, "big")
    body = b""
    while len(body) < n:
        b = sock.recv(n - len(body))
        if not b:
            raise WorldError("LDAP connection closed")
        body += b
    return head + body


def starttls_client(proto, sock, host=HOST):
    """Run proto's preamble as a client on a connected socket; raise
    WorldError unless the server agrees to start TLS."""
    if proto == "smtp":
        if not _smtp_reply(sock)[0].startswith("220"):
            raise WorldError("SMTP greeting refused")
        sock.sendall(b"EHLO client.test\r\n")
        ehlo = _smtp_reply(sock)
        if not any(l[4:12].upper() == "STARTTLS" for l in ehlo[1:]):
            raise WorldError("SMTP server offers no STARTTLS: %r" % ehlo)
        sock.sendall(b"STARTTLS\r\n")
        reply = _smtp_reply(sock)
        if not reply[0].startswith("220"):
            raise WorldError("SMTP STARTTLS refused: %r" % reply)
    elif proto == "imap":
        if not read_line(sock).startswith("* OK"):
            raise WorldError("IMAP greeting refused")
        sock.sendall(b"t1 STARTTLS\r\n")
        while True:
            line = read_line(sock)
            if line.startswith("t1 "):
                break
        if not line.startswith("t1 OK"):
            raise WorldError("IMAP STARTTLS refused: %r" % line)
    elif proto == "pop3":
        if not read_line(sock).startswith("+OK"):
            raise WorldError("POP3 greeting refused")
        sock.sendall(b"STLS\r\n")
        line = read_line(sock)
        if not line.startswith("+OK"):
            raise WorldError("POP3 STLS refused: %r" % line)
    elif proto == "xmpp":
        sock.sendall((XMPP_HEADER % host).encode())
        features = _read_until(sock, b"</stream:features>")
        if XMPP_TLS.encode() not in features:
            raise WorldError("XMPP server offers no STARTTLS: %r" % features)
        sock.sendall(("<starttls xmlns='%s'/>" % XMPP_TLS).encode())
        if b"<proceed" not in _read_until(sock, b"/>"):
            raise WorldError("XMPP STARTTLS refused")
    elif proto == "ldap":
        sock.sendall(LDAP_STARTTLS)
        reply = _ber_message(sock)
        if reply[:2] != b"\x30" + bytes([len(reply) - 2]) or \
                b"\x0a\x01\x00" not in reply:
            raise WorldError("LDAP StartTLS refused: %s" % reply.hex())
    else:
        raise ValueError(proto)


def starttls_server(proto, sock):
    """Play the server's side of proto's preamble (canned answers) until the
    client may start TLS.  The MITM's face."""
    if proto == "smtp":
        sock.sendall(b"220 server.test ESMTP\r\n")
        read_line(sock)                                 # EHLO
        sock.sendall(b"250-server.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        read_line(sock)                                 # STARTTLS
        sock.sendall(b"220 2.0.0 Ready to start TLS\r\n")
    elif proto == "imap":
        sock.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready.\r\n")
        tag = read_line(sock).split(" ", 1)[0]
        sock.sendall(tag.encode() + b" OK Begin TLS negotiation now.\r\n")
    elif proto == "pop3":
        sock.sendall(b"+OK ready.\r\n")
        read_line(sock)
        sock.sendall(b"+OK Begin TLS negotiation now.\r\n")
    elif proto == "xmpp":
        _read_until(sock, b"xmlns:stream='http://etherx.jabber.org/streams'>")
        sock.sendall(("<?xml version='1.0'?><stream:stream "
                      "xmlns='jabber:client' xmlns:stream='http://etherx."
                      "jabber.org/streams' version='1.0' from='server.test' "
                      "id='mitm'><stream:features><starttls xmlns='%s'>"
                      "<required/></starttls></stream:features>"
                      % XMPP_TLS).encode())
        _read_until(sock, b"/>")
        sock.sendall(("<proceed xmlns='%s'/>" % XMPP_TLS).encode())
    elif proto == "ldap":
        _ber_message(sock)
        sock.sendall(LDAP_SUCCESS)
    else:
        raise ValueError(proto)


def starttls_peer_cert(addr, port, proto, timeout=IO_TIMEOUT):
    """The leaf certificate (DER) the server at addr:port shows after proto's
    preamble, seen with Python's ssl (no verification)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection((addr, port), timeout=timeout)
    try:
        sock.settimeout(timeout)
        starttls_client(proto, sock)
        with ctx.wrap_socket(sock, server_hostname=HOST) as tls:
            return tls.getpeercert(binary_form=True)
    finally:
        sock.close()


def wait_starttls(addr, port, proto, proc=None, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise WorldError("%s exited while starting:\n%s" % (proc.name, proc.log()))
        try:
            return starttls_peer_cert(addr, port, proto, timeout=2)
        except (OSError, ssl.SSLError, WorldError) as e:
            if time.monotonic() > deadline:
                raise WorldError("%s:%d: no %s STARTTLS handshake after %ss: %s%s"
                                 % (addr, port, proto, timeout, e,
                                    "\n" + proc.log() if proc else ""))
            time.sleep(0.1)
