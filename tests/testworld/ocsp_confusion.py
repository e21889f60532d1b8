"""ECDSA issuer confusion (security review C1), for tests/unit/test_ocsp.c.

Writes into DIR: ec-ca.cder, ec-leaf.cder (issued by it), ec-revoked.ocsp
(the CA's genuine "revoked" for the leaf), ec-fake.cder (same subject as the
CA, a key Q' = -Q - 2*u1/u2*G computed from the leaf's signature (r,s)
alone, no private key, under which that signature also verifies) and
ec-twin.cder (the CA's issuer and serial, another key: NSS's temporary
certificate cache keys on issuer+serial).  Usage: ocsp_confusion.py DIR
"""
import datetime, sys
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# P-256
p = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
a = p - 3
n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
G = (0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
     0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5)
def add(P, Q):
    if P is None: return Q
    if Q is None: return P
    if P[0] == Q[0] and (P[1] + Q[1]) % p == 0: return None
    if P == Q: l = (3*P[0]*P[0] + a) * pow(2*P[1], -1, p) % p
    else: l = (Q[1]-P[1]) * pow(Q[0]-P[0], -1, p) % p
    x = (l*l - P[0] - Q[0]) % p
    return (x, (l*(P[0]-x) - P[1]) % p)
def mul(k, P):
    R = None
    while k:
        if k & 1: R = add(R, P)
        P = add(P, P); k >>= 1
    return R
neg = lambda P: (P[0], (-P[1]) % p)

now = datetime.datetime.now(datetime.timezone.utc)
if len(sys.argv) != 2:
    sys.exit("usage: ocsp_confusion.py DIR")
d = sys.argv[1]
cakey = ec.generate_private_key(ec.SECP256R1())
caname = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Review CA E1")])
ca = (x509.CertificateBuilder().subject_name(caname).issuer_name(caname)
      .public_key(cakey.public_key()).serial_number(1)
      .not_valid_before(now - datetime.timedelta(days=1))
      .not_valid_after(now + datetime.timedelta(days=30))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
      .sign(cakey, hashes.SHA256()))
lkey = ec.generate_private_key(ec.SECP256R1())
leaf = (x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.test")]))
        .issuer_name(caname).public_key(lkey.public_key()).serial_number(0x1234567)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.test")]), False)
        .sign(cakey, hashes.SHA256()))
# The CA's genuine "revoked", as an honest server stapled it on the spheres' paths.
resp = (ocsp.OCSPResponseBuilder()
        .add_response(cert=leaf, issuer=ca, algorithm=hashes.SHA1(),
                      cert_status=ocsp.OCSPCertStatus.REVOKED,
                      this_update=now - datetime.timedelta(hours=1),
                      next_update=now + datetime.timedelta(days=3),
                      revocation_time=now - datetime.timedelta(hours=2),
                      revocation_reason=x509.ReasonFlags.key_compromise)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
        .sign(cakey, hashes.SHA256()))
# Attacker: a public key Q' != Q under which the leaf's signature also verifies.
r, s = decode_dss_signature(leaf.signature)
h = hashes.Hash(hashes.SHA256()); h.update(leaf.tbs_certificate_bytes)
e = int.from_bytes(h.finalize(), "big")
w = pow(s, -1, n); u1 = e * w % n; u2 = r * w % n
Q = (cakey.public_key().public_numbers().x, cakey.public_key().public_numbers().y)
Qf = add(neg(Q), mul((-2 * u1 * pow(u2, -1, n)) % n, G))
assert Qf != Q
fakepub = ec.EllipticCurvePublicNumbers(Qf[0], Qf[1], ec.SECP256R1()).public_key()
junk = ec.generate_private_key(ec.SECP256R1())   # the fake's own signature is never checked
fake = (x509.CertificateBuilder().subject_name(caname).issuer_name(caname)
        .public_key(fakepub).serial_number(666)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(junk, hashes.SHA256()))
# sanity: the leaf's signature verifies under the fake key
fakepub.verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
tkey = ec.generate_private_key(ec.SECP256R1())
twin = (x509.CertificateBuilder().subject_name(caname).issuer_name(caname)
        .public_key(tkey.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(tkey, hashes.SHA256()))
for name, obj in (("leaf", leaf), ("ca", ca), ("fake", fake), ("twin", twin)):
    with open(f"{d}/ec-{name}.cder", "wb") as f:
        f.write(obj.public_bytes(serialization.Encoding.DER))
with open(f"{d}/ec-revoked.ocsp", "wb") as f:
    f.write(resp.public_bytes(serialization.Encoding.DER))
