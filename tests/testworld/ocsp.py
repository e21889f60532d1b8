"""OCSP for the test world: responses made by a real OCSP responder for the
test CA (`openssl ocsp`, its index-file responder), and the responses no
honest responder makes (stale ones, backdated with python3-cryptography's
OCSP builder, which can set any time; forged ones, signed by a look-alike
CA).  Servers staple them with `openssl s_server -status_file`.

By hand, `python3 tests/testworld/ocsp.py DIR` makes a small standalone PKI
in DIR and one response of each kind (tests/unit/test_ocsp.c uses it):

  ca.crt/key          the CA (EC P-256, CN=OCSP Test CA)
  leaf.crt/key        a leaf it issued; other.crt another one
  responder.crt/key   a delegated responder (id-kp-OCSPSigning) of the CA
  noeku.crt/key       a CA-issued certificate without id-kp-OCSPSigning
  evil.crt/key        a look-alike CA: same name as the CA, another key
  good.der            leaf good, signed by the CA (byName), 7 days
  good-bykey.der      the same, responderID byKey
  revoked.der         leaf revoked, signed by the CA
  delegated.der       leaf good, signed by the responder (carried)
  noeku.der           leaf good, signed by noeku (carried): not authorised
  forged.der          leaf revoked, signed by the look-alike CA
  otherleaf.der       other.crt good: not about leaf
  stale.der           leaf good, thisUpdate 10 days ago, nextUpdate 3 days ago
  stale-revoked.der   leaf revoked, as old
  nonext.der          leaf good, no nextUpdate, thisUpdate now
  unauthorized.der    responseStatus unauthorized (6), no body
"""

import datetime
import os
import re
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from testworld.processes import run
else:
    from .processes import run


def serial_hex(crt):
    """The certificate's serial number, upper-case hex, as in an index."""
    out = run(["openssl", "x509", "-in", crt, "-noout", "-serial"]).decode()
    return re.search(r"serial=([0-9A-Fa-f]+)", out).group(1).upper()


def subject(crt):
    out = run(["openssl", "x509", "-in", crt, "-noout", "-subject",
               "-nameopt", "compat"]).decode()
    return out.strip().split("=", 1)[1].strip()


def respond(directory, name, ca_crt, cert_crt, signer_crt, signer_key,
            revoked=False, ndays=7, by_key=False, carry_signer=False):
    """Asks `openssl ocsp`, the responder, about cert_crt (issued by
    ca_crt) with an index saying good or revoked; the response is signed
    by signer_crt/key.  Returns the path of the DER response (0600)."""
    idx = os.path.join(directory, name + ".index")
    req = os.path.join(directory, name + ".req")
    out = os.path.join(directory, name + ".der")
    now = datetime.datetime.now(datetime.timezone.utc)
    when = (now - datetime.timedelta(hours=1)).strftime("%y%m%d%H%M%SZ")
    with open(idx, "w") as f:
        f.write("%s\t301231235959Z\t%s\t%s\tunknown\t%s\n" % (
            "R" if revoked else "V", when if revoked else "",
            serial_hex(cert_crt), subject(cert_crt)))
    run(["openssl", "ocsp", "-issuer", ca_crt, "-cert", cert_crt, "-no_nonce",
         "-reqout", req])
    argv = ["openssl", "ocsp", "-index", idx, "-CA", ca_crt, "-rsigner", signer_crt,
            "-rkey", signer_key, "-reqin", req, "-respout", out, "-ndays", str(ndays)]
    if by_key:
        argv.append("-resp_key_id")
    if not carry_signer:
        argv.append("-resp_no_certs")
    run(argv)
    for p in (idx, req):
        os.unlink(p)
    os.chmod(out, 0o600)
    return out


def backdated(directory, name, ca_crt, ca_key, cert_crt, revoked=False,
              this_days=-10, next_days=-3):
    """A response the responder made long ago (python3-cryptography's
    builder, signed with the CA's key): thisUpdate this_days and nextUpdate
    next_days from now (None: no nextUpdate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    def load(path):
        with open(path, "rb") as f:
            return f.read()

    ca = x509.load_pem_x509_certificate(load(ca_crt))
    cert = x509.load_pem_x509_certificate(load(cert_crt))
    key = serialization.load_pem_private_key(load(ca_key), None)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    this = now + datetime.timedelta(days=this_days)
    nxt = None if next_days is None else now + datetime.timedelta(days=next_days)
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=ca, algorithm=hashes.SHA1(),
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=this, next_update=nxt,
        revocation_time=this - datetime.timedelta(hours=1) if revoked else None,
        revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.NAME, ca)
    der = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    out = os.path.join(directory, name + ".der")
    with open(out, "wb") as f:
        f.write(der)
    os.chmod(out, 0o600)
    return out


def _key(directory, name):
    key = os.path.join(directory, name + ".key")
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-out", key])
    os.chmod(key, 0o600)
    return key


def _ca(directory, name, cn):
    key = _key(directory, name)
    crt = os.path.join(directory, name + ".crt")
    run(["openssl", "req", "-x509", "-new", "-key", key, "-sha256", "-days", "30",
         "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", crt])
    return crt, key


def _issue(directory, name, ca_crt, ca_key, ext):
    key = _key(directory, name)
    csr = os.path.join(directory, name + ".csr")
    crt = os.path.join(directory, name + ".crt")
    extf = os.path.join(directory, name + ".ext")
    with open(extf, "w") as f:
        f.write(ext)
    run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + name + ".test",
         "-out", csr])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
         "-sha256", "-extfile", extf, "-out", crt])
    os.unlink(csr)
    os.unlink(extf)
    return crt, key


def standalone(directory):
    """The standalone PKI and responses listed in the module's docstring."""
    d = directory
    ca, ca_key = _ca(d, "ca", "OCSP Test CA")
    evil, evil_key = _ca(d, "evil", "OCSP Test CA")
    leaf_ext = "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:leaf.test\n"
    leaf, _ = _issue(d, "leaf", ca, ca_key, leaf_ext)
    other, _ = _issue(d, "other", ca, ca_key, leaf_ext)
    resp, resp_key = _issue(d, "responder", ca, ca_key,
                            "basicConstraints=critical,CA:FALSE\n"
                            "extendedKeyUsage=OCSPSigning\n")
    noeku, noeku_key = _issue(d, "noeku", ca, ca_key,
                              "basicConstraints=critical,CA:FALSE\n"
                              "extendedKeyUsage=serverAuth\n")
    respond(d, "good", ca, leaf, ca, ca_key)
    respond(d, "good-bykey", ca, leaf, ca, ca_key, by_key=True)
    respond(d, "revoked", ca, leaf, ca, ca_key, revoked=True)
    respond(d, "delegated", ca, leaf, resp, resp_key, carry_signer=True)
    respond(d, "noeku", ca, leaf, noeku, noeku_key, carry_signer=True)
    respond(d, "forged", ca, leaf, evil, evil_key, revoked=True)
    respond(d, "otherleaf", ca, other, ca, ca_key)
    backdated(d, "stale", ca, ca_key, leaf)
    backdated(d, "stale-revoked", ca, ca_key, leaf, revoked=True)
    backdated(d, "nonext", ca, ca_key, leaf, this_days=0, next_days=None)
    # OCSPResponse { responseStatus unauthorized }
    with open(os.path.join(d, "unauthorized.der"), "wb") as f:
        f.write(bytes([0x30, 0x03, 0x0a, 0x01, 0x06]))
    for name in ("ca", "leaf", "other", "evil", "responder"):
        der = run(["openssl", "x509", "-in", os.path.join(d, name + ".crt"),
                   "-outform", "der"])
        with open(os.path.join(d, name + ".cder"), "wb") as f:
            f.write(der)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ocsp.py DIR")
    standalone(sys.argv[1])
