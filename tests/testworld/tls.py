"""TLS for the test world: the test PKI, certificate hashes, TLS servers in
Python, and the record types of a TLS byte stream.

The PKI is made with the openssl CLI (independent of the code under test),
in a directory of the caller's, files mode 0600:

  ca        the test CA (EC P-256)
  real      server.test (EC P-256), the real server's certificate
  reissued  the real key in a second certificate (a routine renewal)
  rogue     server.test from the same CA over another key (RSA 2048): what
            a compelled CA gives an attacker
  default   default.test (the SNI test)

Every hash a test compares with DetecTor's output is computed here from
these files with the openssl CLI, never taken from DetecTor.
"""

import hashlib
import os
import re
import ssl
import struct

from .ports import HOST, REAL_ADDR
from .processes import run
from .services import TcpService

IO_TIMEOUT = 5.0            # seconds for any one read of a Python TLS server


def pem_to_der(pem):
    """DER bytes of the first certificate in a PEM text (bytes or str)."""
    if isinstance(pem, str):
        pem = pem.encode()
    return run(["openssl", "x509", "-outform", "der"], data=pem)


def der_to_pem(der):
    return run(["openssl", "x509", "-inform", "der", "-outform", "pem"], data=der).decode()


def spki_sha256_der(der):
    """Hex SHA-256 of a certificate's SubjectPublicKeyInfo, as in HPKP:
    openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256."""
    pub = run(["openssl", "x509", "-inform", "der", "-pubkey", "-noout"], data=der)
    spki = run(["openssl", "pkey", "-pubin", "-outform", "der"], data=pub)
    return hashlib.sha256(spki).hexdigest()


def cert_sha256_der(der):
    """Hex SHA-256 of a certificate's DER encoding."""
    return hashlib.sha256(der).hexdigest()


def split_pem(text):
    """The PEM certificate blocks in a text, in order."""
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                      text, re.S)


class Cert:
    """A certificate and key on disk, with the hashes a test compares."""

    def __init__(self, name, crt, key):
        self.name, self.crt, self.key = name, crt, key
        with open(crt) as f:
            self.pem = f.read()
        self.der = pem_to_der(self.pem)
        self.spki_sha256 = spki_sha256_der(self.der)
        self.cert_sha256 = cert_sha256_der(self.der)

    def __repr__(self):
        return "<Cert %s spki=%s...>" % (self.name, self.spki_sha256[:16])


class Pki:
    """The test CA and every certificate the world serves.  `names`: more
    DNS names (besides HOST) in the server.test certificates."""

    def __init__(self, directory, names=()):
        self.dir = directory
        self.names = list(names)

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _newkey(self, name, kind):
        key = self._path(name + ".key")
        if kind == "rsa":
            run(["openssl", "genpkey", "-algorithm", "RSA",
                  "-pkeyopt", "rsa_keygen_bits:2048", "-out", key])
        else:
            run(["openssl", "genpkey", "-algorithm", "EC",
                  "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key])
        os.chmod(key, 0o600)
        return key

    def _issue(self, name, cn, key):
        """A CA-signed leaf for cn (SAN DNS:cn, plus self.names when cn is
        HOST) over an existing key."""
        csr, crt, ext = (self._path(name + s) for s in (".csr", ".crt", ".ext"))
        sans = [cn] + (self.names if cn == HOST else [])
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % ",".join("DNS:" + n for n in sans))
        run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca_crt,
              "-CAkey", self.ca_key, "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
              "-days", "2", "-sha256", "-extfile", ext, "-out", crt])
        for p in (csr, ext):
            os.unlink(p)
        os.chmod(crt, 0o600)
        return Cert(name, crt, key)

    def build(self):
        self.ca_key = self._newkey("ca", "ec")
        self.ca_crt = self._path("ca.crt")
        run(["openssl", "req", "-x509", "-new", "-key", self.ca_key, "-sha256",
              "-days", "2", "-subj", "/CN=DetecTor Test CA",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-out", self.ca_crt])
        os.chmod(self.ca_crt, 0o600)
        self.ca = Cert("ca", self.ca_crt, self.ca_key)
        real_key = self._newkey("real", "ec")
        self.real = self._issue("real", HOST, real_key)
        # Same key, second certificate: what a routine renewal looks like.
        self.reissued = self._issue("reissued", HOST, real_key)
        # A compelled CA: valid chain, same name, a key the attacker holds.
        # RSA, so the probes see both key types.
        self.rogue = self._issue("rogue", HOST, self._newkey("rogue", "rsa"))
        self.default = self._issue("default", "default.test", self._newkey("default", "ec"))
        return self

    def new_key(self, name):
        """A CA-signed certificate for server.test over a fresh EC key: what
        the server presents after a key rotation."""
        return self._issue(name, HOST, self._newkey(name, "ec"))


def tls_record_types(data):
    """The content types of the TLS records in a byte stream, in order
    (22 handshake, 20 change_cipher_spec, 21 alert, 23 application_data)."""
    types, i = [], 0
    while i + 5 <= len(data):
        types.append(data[i])
        i += 5 + struct.unpack(">H", data[i + 3:i + 5])[0]
    return types


class DualCertServer(TcpService):
    """A TLS server for server.test holding an ECDSA and an RSA certificate
    at once (OpenSSL, through Python's ssl: one certificate per key type),
    as many real servers do; OpenSSL shows each client the certificate that
    fits the signature schemes the client offers.  Serves connections
    concurrently (an application held by DetecTor's check must not keep
    the spheres' probes out): reads a request, answers, closes."""
    kind = "dual-cert"

    def __init__(self, ec, rsa, addr=REAL_ADDR, port=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(ec.crt, ec.key)
        self.ctx.load_cert_chain(rsa.crt, rsa.key)
        super().__init__(addr, port)

    def handle(self, conn):
        self._spawn(self._serve, conn)

    def _serve(self, conn):
        try:
            conn.settimeout(IO_TIMEOUT)
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(64)
                tls.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello\n")
        except (OSError, ssl.SSLError):
            pass
