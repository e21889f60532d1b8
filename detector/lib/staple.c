/*
 * staple.c - stapled OCSP responses as evidence.
 *
 * (Not ocsp.c/ocsp.h: NSS has its own <ocsp.h>, which this file includes.)
 *
 * A server staples its CA's signed statement that its certificate is (or
 * is not) revoked.  DetecTor sees one per path, and an honest server
 * reached through a sphere staples what its CA really says, so a revoked
 * certificate replayed to the user with its stolen key shows up as soon
 * as one path carries the CA's word.  That word is only believed once
 * checked: the response is read by a strict DER walker (ocsp_parse(),
 * fuzzed), NSS's own decoder must accept it too, and its signature must
 * verify with the key of the certificate's issuer, found among the chains
 * the paths sent and proven by its signature on the certificate -- or with
 * a responder certificate that issuer signed for OCSP.  Trust in the issuer
 * itself is the application's business (it accepted the certificate);
 * DetecTor only asks whether the issuer said "revoked".
 */
#include "staple.h"

#include <cert.h>
#include <cryptohi.h>
#include <ocsp.h>
#include <hasht.h>
#include <pk11pub.h>
#include <prerror.h>
#include <secasn1.h>
#include <secerr.h>
#include <secoid.h>
#include <stdio.h>
#include <string.h>

#include "certinfo.h"

#define TAG_BOOLEAN 0x01
#define TAG_INTEGER 0x02
#define TAG_BITSTRING 0x03
#define TAG_OCTETSTRING 0x04
#define TAG_OID 0x06
#define TAG_ENUMERATED 0x0a
#define TAG_GENTIME 0x18
#define TAG_SEQUENCE 0x30
#define TAG_CTX0 0xa0           /* [0] constructed */
#define TAG_CTX1 0xa1
#define TAG_CTX2 0xa2
#define TAG_IMPL0 0x80          /* [0] IMPLICIT NULL: good */
#define TAG_IMPL2 0x82          /* [2] IMPLICIT NULL: unknown */

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } \
    while (0)

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, unsigned int m, unsigned int d)
{
	int64_t era;
	unsigned int yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned int)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* A DER GeneralizedTime as RFC 5280 allows it: YYYYMMDDHHMMSSZ. */
static int
gentime(const unsigned char *v, size_t len, int64_t *t)
{
	static const unsigned int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31,
	    30, 31, 30, 31 };
	unsigned int n[7], i, j, k = 0;
	static const unsigned int width[] = { 4, 2, 2, 2, 2, 2 };

	if (len != 15 || v[14] != 'Z')
		return -1;
	for (i = 0; i < 6; i++) {
		n[i] = 0;
		for (j = 0; j < width[i]; j++, k++) {
			if (v[k] < '0' || v[k] > '9')
				return -1;
			n[i] = n[i] * 10 + (unsigned int)(v[k] - '0');
		}
	}
	if (n[1] < 1 || n[1] > 12 || n[2] < 1 || n[2] > mdays[n[1] - 1] ||
	    n[3] > 23 || n[4] > 59 || n[5] > 59)
		return -1;
	if (n[1] == 2 && n[2] == 29 && !(n[0] % 4 == 0 &&
	    (n[0] % 100 != 0 || n[0] % 400 == 0)))
		return -1;
	*t = days_from_civil(n[0], n[1], n[2]) * 86400 +
	    (int64_t)n[3] * 3600 + n[4] * 60 + n[5];
	return 0;
}

static int
next_tagged(struct der_cursor *c, unsigned char want,
    const unsigned char **whole, size_t *wlen, const unsigned char **val,
    size_t *vlen)
{
	unsigned char tag;

	if (der_next(c, &tag, whole, wlen, val, vlen) == -1 || tag != want)
		return -1;
	return 0;
}

/* The next element of c, which must be of type want and c's last: its
 * contents in val/vlen.  0, or -1. */
static int
next_only(struct der_cursor *c, unsigned char want,
    const unsigned char **val, size_t *vlen)
{
	const unsigned char *w;
	size_t wl;

	if (next_tagged(c, want, &w, &wl, val, vlen) == -1 || c->left != 0)
		return -1;
	return 0;
}

/* A cursor over an element's contents. */
static struct der_cursor
inside(const unsigned char *val, size_t vlen)
{
	struct der_cursor c = { val, vlen };

	return c;
}

/* An EXPLICIT [n] element (tag outer) holding exactly one element of type
 * inner: the inner one's contents in val/vlen.  0, or -1. */
static int
next_explicit(struct der_cursor *c, unsigned char outer, unsigned char inner,
    const unsigned char **val, size_t *vlen)
{
	const unsigned char *w, *x;
	size_t wl, xl;
	struct der_cursor in;

	if (next_tagged(c, outer, &w, &wl, &x, &xl) == -1)
		return -1;
	in = inside(x, xl);
	return next_only(&in, inner, val, vlen);
}

static int
peek(const struct der_cursor *c, unsigned char tag)
{
	return c->left > 0 && c->p[0] == tag;
}

/* RevokedInfo ::= SEQUENCE { revocationTime GeneralizedTime,
 *     revocationReason [0] EXPLICIT CRLReason OPTIONAL } (contents) */
static int
parse_revoked(const unsigned char *v, size_t len, struct ocsp_single *s)
{
	struct der_cursor c = { v, len };
	const unsigned char *w, *x;
	size_t wl, xl;

	if (next_tagged(&c, TAG_GENTIME, &w, &wl, &x, &xl) == -1 ||
	    gentime(x, xl, &s->revoked_at) == -1)
		return -1;
	if (peek(&c, TAG_CTX0) &&
	    next_tagged(&c, TAG_CTX0, &w, &wl, &x, &xl) == -1)
		return -1;
	return c.left == 0 ? 0 : -1;
}

static int
parse_single(const unsigned char *v, size_t len, struct ocsp_single *s,
    char *err, size_t errlen)
{
	struct der_cursor c = { v, len }, id, alg;
	const unsigned char *w, *x;
	size_t wl, xl;
	unsigned char tag;

	memset(s, 0, sizeof(*s));
	/* CertID ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier,
	 *     issuerNameHash, issuerKeyHash OCTET STRING, serialNumber } */
	if (next_tagged(&c, TAG_SEQUENCE, &w, &wl, &x, &xl) == -1)
		FAIL("bad CertID");
	id = inside(x, xl);
	if (next_tagged(&id, TAG_SEQUENCE, &w, &wl, &x, &xl) == -1)
		FAIL("bad CertID hash algorithm");
	alg = inside(x, xl);
	if (next_tagged(&alg, TAG_OID, &w, &wl, &s->hash_oid,
	    &s->hash_oid_len) == -1)
		FAIL("bad CertID hash algorithm");
	if (next_tagged(&id, TAG_OCTETSTRING, &w, &wl, &s->name_hash,
	    &s->name_hash_len) == -1 ||
	    next_tagged(&id, TAG_OCTETSTRING, &w, &wl, &s->key_hash,
	    &s->key_hash_len) == -1 ||
	    next_tagged(&id, TAG_INTEGER, &w, &wl, &s->serial,
	    &s->serial_len) == -1 || s->serial_len == 0 || id.left != 0)
		FAIL("bad CertID");
	/* certStatus: good [0] IMPLICIT NULL, revoked [1] IMPLICIT
	 * RevokedInfo, unknown [2] IMPLICIT NULL */
	if (der_next(&c, &tag, &w, &wl, &x, &xl) == -1)
		FAIL("bad certStatus");
	if (tag == TAG_IMPL0 && xl == 0)
		s->status = DETECTOR_OCSP_GOOD;
	else if (tag == TAG_CTX1 && parse_revoked(x, xl, s) == 0)
		s->status = DETECTOR_OCSP_REVOKED;
	else if (tag == TAG_IMPL2 && xl == 0)
		s->status = DETECTOR_OCSP_UNKNOWN;
	else
		FAIL("bad certStatus");
	if (next_tagged(&c, TAG_GENTIME, &w, &wl, &x, &xl) == -1 ||
	    gentime(x, xl, &s->this_update) == -1)
		FAIL("bad thisUpdate");
	if (peek(&c, TAG_CTX0)) {
		struct der_cursor nu;

		if (next_tagged(&c, TAG_CTX0, &w, &wl, &x, &xl) == -1)
			FAIL("bad nextUpdate");
		nu = inside(x, xl);
		if (next_tagged(&nu, TAG_GENTIME, &w, &wl, &x, &xl) == -1 ||
		    gentime(x, xl, &s->next_update) == -1 || nu.left != 0 ||
		    s->next_update == 0)
			FAIL("bad nextUpdate");
	}
	if (peek(&c, TAG_CTX1) &&
	    next_tagged(&c, TAG_CTX1, &w, &wl, &x, &xl) == -1)
		FAIL("bad singleExtensions");
	if (c.left != 0)
		FAIL("trailing data in a SingleResponse");
	return 0;
}

/* ResponseData ::= SEQUENCE { version [0] EXPLICIT DEFAULT v1,
 *     responderID, producedAt, responses SEQUENCE OF SingleResponse,
 *     responseExtensions [1] EXPLICIT OPTIONAL } (contents) */
static int
parse_tbs(const unsigned char *v, size_t len, struct ocsp_parsed *p,
    char *err, size_t errlen)
{
	struct der_cursor c = { v, len }, r, list;
	const unsigned char *w, *x;
	size_t wl, xl;
	unsigned char tag;

	if (peek(&c, TAG_CTX0)) {
		/* v1 is 0 and DER omits a DEFAULT value: any version
		 * present is one this reader does not know. */
		if (next_explicit(&c, TAG_CTX0, TAG_INTEGER, &x, &xl) == -1)
			FAIL("bad version");
		FAIL("unsupported ResponseData version");
	}
	if (der_next(&c, &tag, &w, &wl, &x, &xl) == -1 ||
	    (tag != TAG_CTX1 && tag != TAG_CTX2))
		FAIL("bad responderID");
	r = inside(x, xl);
	if (tag == TAG_CTX1) {
		if (next_tagged(&r, TAG_SEQUENCE, &p->responder,
		    &p->responder_len, &x, &xl) == -1 || r.left != 0)
			FAIL("bad responderID byName");
	} else {
		p->responder_by_key = 1;
		if (next_tagged(&r, TAG_OCTETSTRING, &w, &wl, &p->responder,
		    &p->responder_len) == -1 || r.left != 0 ||
		    p->responder_len != 20)
			FAIL("bad responderID byKey");
	}
	if (next_tagged(&c, TAG_GENTIME, &w, &wl, &x, &xl) == -1 ||
	    gentime(x, xl, &p->produced_at) == -1)
		FAIL("bad producedAt");
	if (next_tagged(&c, TAG_SEQUENCE, &w, &wl, &x, &xl) == -1)
		FAIL("bad responses");
	list = inside(x, xl);
	while (list.left > 0) {
		if (p->nsingle == OCSP_MAX_SINGLE)
			FAIL("more than %d SingleResponses", OCSP_MAX_SINGLE);
		if (next_tagged(&list, TAG_SEQUENCE, &w, &wl, &x, &xl) == -1)
			FAIL("bad SingleResponse");
		if (parse_single(x, xl, &p->single[p->nsingle], err,
		    errlen) == -1)
			return -1;
		p->nsingle++;
	}
	if (p->nsingle == 0)
		FAIL("no SingleResponse");
	if (peek(&c, TAG_CTX1) &&
	    next_tagged(&c, TAG_CTX1, &w, &wl, &x, &xl) == -1)
		FAIL("bad responseExtensions");
	if (c.left != 0)
		FAIL("trailing data in ResponseData");
	return 0;
}

int
ocsp_parse(const unsigned char *der, size_t len, struct ocsp_parsed *p,
    char *err, size_t errlen)
{
	/* id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1 */
	static const unsigned char basic[] = { 0x2b, 0x06, 0x01, 0x05, 0x05,
	    0x07, 0x30, 0x01, 0x01 };
	static const char *const statuses[] = { "successful",
	    "malformedRequest", "internalError", "tryLater", "(4)",
	    "sigRequired", "unauthorized" };
	struct der_cursor c = { der, len }, b;
	const unsigned char *w, *x;
	size_t wl, xl;

	memset(p, 0, sizeof(*p));
	if (next_only(&c, TAG_SEQUENCE, &x, &xl) == -1)
		FAIL("not a DER OCSPResponse");
	c = inside(x, xl);
	if (next_tagged(&c, TAG_ENUMERATED, &w, &wl, &x, &xl) == -1 ||
	    xl != 1)
		FAIL("bad responseStatus");
	if (x[0] != 0)
		FAIL("the responder answered %s, not a status",
		    x[0] < sizeof(statuses) / sizeof(statuses[0]) ?
		    statuses[x[0]] : "an unknown responseStatus");
	/* responseBytes [0] EXPLICIT SEQUENCE { responseType OID,
	 *     response OCTET STRING } */
	if (next_only(&c, TAG_CTX0, &x, &xl) == -1)
		FAIL("bad responseBytes");
	b = inside(x, xl);
	if (next_only(&b, TAG_SEQUENCE, &x, &xl) == -1)
		FAIL("bad responseBytes");
	b = inside(x, xl);
	if (next_tagged(&b, TAG_OID, &w, &wl, &x, &xl) == -1)
		FAIL("bad responseType");
	if (xl != sizeof(basic) || memcmp(x, basic, xl) != 0)
		FAIL("not a basic OCSP response (id-pkix-ocsp-basic)");
	if (next_only(&b, TAG_OCTETSTRING, &x, &xl) == -1)
		FAIL("bad response OCTET STRING");
	/* BasicOCSPResponse ::= SEQUENCE { tbsResponseData,
	 *     signatureAlgorithm, signature BIT STRING,
	 *     certs [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL } */
	b = inside(x, xl);
	if (next_only(&b, TAG_SEQUENCE, &x, &xl) == -1)
		FAIL("bad BasicOCSPResponse");
	b = inside(x, xl);
	if (next_tagged(&b, TAG_SEQUENCE, &p->tbs, &p->tbs_len, &x,
	    &xl) == -1)
		FAIL("bad tbsResponseData");
	if (parse_tbs(x, xl, p, err, errlen) == -1)
		return -1;
	if (next_tagged(&b, TAG_SEQUENCE, &p->sigalg, &p->sigalg_len, &x,
	    &xl) == -1)
		FAIL("bad signatureAlgorithm");
	if (next_tagged(&b, TAG_BITSTRING, &w, &wl, &x, &xl) == -1 ||
	    xl < 2 || x[0] != 0)
		FAIL("bad signature");
	p->sig = x + 1;
	p->sig_len = xl - 1;
	if (peek(&b, TAG_CTX0)) {
		struct der_cursor certs;

		if (next_explicit(&b, TAG_CTX0, TAG_SEQUENCE, &x, &xl) == -1)
			FAIL("bad certs");
		certs = inside(x, xl);
		while (certs.left > 0) {
			if (p->ncerts == OCSP_MAX_CERTS)
				FAIL("more than %d responder certificates",
				    OCSP_MAX_CERTS);
			if (next_tagged(&certs, TAG_SEQUENCE,
			    &p->certs[p->ncerts], &p->certs_len[p->ncerts],
			    &x, &xl) == -1)
				FAIL("bad responder certificate");
			p->ncerts++;
		}
	}
	if (b.left != 0)
		FAIL("trailing data in BasicOCSPResponse");
	return 0;
}

/*
 * Verification, with NSS.
 */

/* A temporary certificate, as libssl makes of a peer's chain: NSS keeps
 * one copy per issuer and serial number and drops it with the last
 * reference.  While another certificate with the same issuer and serial
 * lives (any peer of this process may have sent one), NSS refuses these
 * bytes or returns that one: then these very bytes are decoded on their
 * own, outside NSS's store (security review L1). */
/* libnss3 exports CERT_DecodeDERCertificate() (cert.h) under this name
 * only (nss.def, NSS_3.2). */
extern CERTCertificate *__CERT_DecodeDERCertificate(SECItem *der,
    PRBool copy, char *nickname);

static CERTCertificate *
decode_cert(const unsigned char *der, size_t len)
{
	SECItem item = { siBuffer, (unsigned char *)der, (unsigned int)len };
	CERTCertificate *c;

	if (len == 0 || len > 1 << 20)
		return NULL;
	c = CERT_NewTempCertificate(CERT_GetDefaultCertDB(), &item, NULL,
	    PR_FALSE, PR_TRUE);
	if (c != NULL && SECITEM_CompareItem(&c->derCert, &item) == SECEqual)
		return c;
	if (c != NULL)
		CERT_DestroyCertificate(c);
	/* NSS refuses (NULL) or returns the other one. */
	c = __CERT_DecodeDERCertificate(&item, PR_TRUE, NULL);
	if (c != NULL && SECITEM_CompareItem(&c->derCert, &item) != SECEqual) {
		CERT_DestroyCertificate(c);
		c = NULL;
	}
	return c;
}

/* Did issuer sign cert?  Names and signature. */
static int
signed_by(CERTCertificate *cert, CERTCertificate *issuer)
{
	return SECITEM_CompareItem(&cert->derIssuer, &issuer->derSubject) ==
	    SECEqual && CERT_VerifySignedDataWithPublicKeyInfo(
	    &cert->signatureWrap, &issuer->subjectPublicKeyInfo, NULL) ==
	    SECSuccess;
}

/* The certificate's public key as hashed in a CertID or responderID: the
 * BIT STRING's bytes. */
static int
hash_key(SECOidTag alg, CERTCertificate *cert, unsigned char *out)
{
	SECItem key = cert->subjectPublicKeyInfo.subjectPublicKey;

	return PK11_HashBuf(alg, out, key.data, (PRInt32)((key.len + 7) / 8)) ==
	    SECSuccess ? 0 : -1;
}

static int
responder_is(const struct ocsp_parsed *p, CERTCertificate *cert)
{
	unsigned char h[20];

	if (!p->responder_by_key)
		return p->responder_len == cert->derSubject.len &&
		    memcmp(p->responder, cert->derSubject.data,
		    p->responder_len) == 0;
	return hash_key(SEC_OID_SHA1, cert, h) == 0 &&
	    memcmp(h, p->responder, sizeof(h)) == 0;
}

static int
ocsp_signing(CERTCertificate *cert)
{
	SECItem ext = { siBuffer, NULL, 0 };
	CERTOidSequence *seq;
	int ok = 0;
	size_t i;

	if (CERT_FindCertExtension(cert, SEC_OID_X509_EXT_KEY_USAGE,
	    &ext) != SECSuccess)
		return 0;
	if ((seq = CERT_DecodeOidSequence(&ext)) != NULL) {
		for (i = 0; seq->oids != NULL && seq->oids[i] != NULL; i++)
			ok |= SECOID_FindOIDTag(seq->oids[i]) ==
			    SEC_OID_OCSP_RESPONDER;
		CERT_DestroyOidSequence(seq);
	}
	SECITEM_FreeItem(&ext, PR_FALSE);
	return ok;
}

/* Verifies the response's signature with signer's key. */
static int
signature_ok(const struct ocsp_parsed *p, CERTCertificate *signer)
{
	PLArenaPool *arena = PORT_NewArena(1024);
	SECItem algder = { siBuffer, (unsigned char *)p->sigalg,
	    (unsigned int)p->sigalg_len };
	CERTSignedData sd;
	int ok = 0;

	if (arena == NULL)
		return 0;
	memset(&sd, 0, sizeof(sd));
	if (SEC_QuickDERDecodeItem(arena, &sd.signatureAlgorithm,
	    SECOID_AlgorithmIDTemplate, &algder) == SECSuccess) {
		sd.data.data = (unsigned char *)p->tbs;
		sd.data.len = (unsigned int)p->tbs_len;
		sd.signature.data = (unsigned char *)p->sig;
		sd.signature.len = (unsigned int)p->sig_len * 8; /* bits */
		ok = CERT_VerifySignedDataWithPublicKeyInfo(&sd,
		    &signer->subjectPublicKeyInfo, NULL) == SECSuccess;
	}
	PORT_FreeArena(arena, PR_FALSE);
	return ok;
}

/* Is s about leaf, issued by issuer? */
static int
names(const struct ocsp_single *s, CERTCertificate *leaf,
    CERTCertificate *issuer)
{
	SECItem oid = { siBuffer, (unsigned char *)s->hash_oid,
	    (unsigned int)s->hash_oid_len };
	unsigned char h[HASH_LENGTH_MAX];
	SECOidTag alg = SECOID_FindOIDTag(&oid);
	unsigned int hlen;

	switch (alg) {
	case SEC_OID_SHA1: hlen = 20; break;
	case SEC_OID_SHA256: hlen = 32; break;
	case SEC_OID_SHA384: hlen = 48; break;
	case SEC_OID_SHA512: hlen = 64; break;
	default: return 0;
	}
	if (s->serial_len != leaf->serialNumber.len ||
	    memcmp(s->serial, leaf->serialNumber.data, s->serial_len) != 0)
		return 0;
	if (s->name_hash_len != hlen || s->key_hash_len != hlen)
		return 0;
	if (PK11_HashBuf(alg, h, issuer->derSubject.data,
	    (PRInt32)issuer->derSubject.len) != SECSuccess ||
	    memcmp(h, s->name_hash, hlen) != 0)
		return 0;
	return hash_key(alg, issuer, h) == 0 &&
	    memcmp(h, s->key_hash, hlen) == 0;
}

/* NSS's own decoder must read the response as well: two parsers that
 * disagree are a reason to believe neither. */
static int
nss_accepts(const unsigned char *der, size_t len, char *err, size_t errlen)
{
	SECItem item = { siBuffer, (unsigned char *)der, (unsigned int)len };
	CERTOCSPResponse *r = CERT_DecodeOCSPResponse(&item);
	int ok;

	if (r == NULL)
		FAIL("NSS cannot decode it: %s", PR_ErrorToString(
		    PR_GetError(), PR_LANGUAGE_I_DEFAULT));
	ok = CERT_GetOCSPResponseStatus(r) == SECSuccess;
	CERT_DestroyOCSPResponse(r);
	if (!ok)
		FAIL("NSS reads an unsuccessful response status");
	return 0;
}

static void
freshness(const struct ocsp_single *s, int64_t now, struct detector_ocsp *o)
{
	o->this_update = s->this_update;
	o->next_update = s->next_update;
	o->revoked_at = s->revoked_at;
	if (s->next_update != 0)
		o->fresh = now <= s->next_update;
	else
		o->fresh = now - s->this_update <= OCSP_MAX_AGE_S;
}

/* Is c a distinct issuer of leaf: its subject names the leaf's issuer, its
 * key verifies the leaf's signature, and no earlier one has its key? */
static int
new_issuer(CERTCertificate *leaf, CERTCertificate *c,
    CERTCertificate **seen, size_t nseen)
{
	size_t i;

	for (i = 0; i < nseen; i++) {
		if (SECITEM_CompareItem(&seen[i]->derPublicKey,
		    &c->derPublicKey) == SECEqual)
			return 0;
	}
	return signed_by(leaf, c);
}

size_t
ocsp_issuers(const unsigned char *leaf_der, size_t leaf_len,
    struct detector_der *candidates, size_t ncandidates)
{
	CERTCertificate *leaf = decode_cert(leaf_der, leaf_len), *c;
	CERTCertificate *seen[OCSP_MAX_ISSUERS];
	size_t i, n = 0;

	for (i = 0; leaf != NULL && i < ncandidates && n < OCSP_MAX_ISSUERS;
	    i++) {
		if ((c = decode_cert(candidates[i].data,
		    candidates[i].len)) == NULL)
			continue;
		if (new_issuer(leaf, c, seen, n)) {
			candidates[n] = candidates[i];
			seen[n++] = c;
		} else
			CERT_DestroyCertificate(c);
	}
	for (i = 0; i < n; i++)
		CERT_DestroyCertificate(seen[i]);
	if (leaf != NULL)
		CERT_DestroyCertificate(leaf);
	return n;
}

/* The stages of one issuer's check, in order: a failure reported is the
 * one of the issuer that got furthest. */
enum { STAGE_SIGNER = 1, STAGE_SIGNATURE, STAGE_NAMES, STAGE_TIME };

/* The response checked with issuer as the leaf's issuer: 0, or the stage
 * that failed. */
static int
check_issuer(const struct ocsp_parsed *p, CERTCertificate *leaf,
    CERTCertificate *issuer, const struct ocsp_single **single)
{
	CERTCertificate *signer = NULL;
	const struct ocsp_single *s = NULL;
	int stage;
	size_t i;

	/* The issuer itself, or a delegated responder (ours to destroy). */
	if (responder_is(p, issuer))
		signer = issuer;
	for (i = 0; i < p->ncerts && signer == NULL; i++) {
		CERTCertificate *d = decode_cert(p->certs[i], p->certs_len[i]);

		if (d == NULL)
			continue;
		if (responder_is(p, d) && signed_by(d, issuer) &&
		    ocsp_signing(d) && CERT_CheckCertValidTimes(d,
		    (PRTime)p->produced_at * PR_USEC_PER_SEC, PR_FALSE) ==
		    secCertTimeValid)
			signer = d;
		else
			CERT_DestroyCertificate(d);
	}
	if (signer == NULL)
		return STAGE_SIGNER;
	stage = signature_ok(p, signer) ? 0 : STAGE_SIGNATURE;
	if (signer != issuer)
		CERT_DestroyCertificate(signer);
	if (stage != 0)
		return stage;
	for (i = 0; i < p->nsingle && s == NULL; i++) {
		if (names(&p->single[i], leaf, issuer))
			s = &p->single[i];
	}
	if (s == NULL)
		return STAGE_NAMES;
	*single = s;
	return 0;
}

int
ocsp_check(const unsigned char *staple, size_t staple_len,
    const unsigned char *leaf_der, size_t leaf_len,
    const struct detector_der *candidates, size_t ncandidates, int64_t now,
    struct detector_ocsp *out, char *err, size_t errlen)
{
	static const char *const why[] = {
		"no certificate in the chains sent issued the certificate: "
		    "the signature cannot be checked",
		"signed by neither the certificate's issuer nor a responder "
		    "it delegated to (id-kp-OCSPSigning)",
		"its signature does not verify",
		"it is about another certificate",
		"its thisUpdate is in the future",
	};
	struct ocsp_parsed p;
	CERTCertificate *leaf = NULL, *issuer;
	CERTCertificate *seen[OCSP_MAX_ISSUERS];
	const struct ocsp_single *s = NULL;
	int best = 0, stage;
	size_t i, nseen = 0;

	memset(out, 0, sizeof(*out));
	if (staple_len > 1 << 20)
		FAIL("larger than 1 MiB");
	if (ocsp_parse(staple, staple_len, &p, err, errlen) == -1)
		return -1;
	if (nss_accepts(staple, staple_len, err, errlen) == -1)
		return -1;
	if ((leaf = decode_cert(leaf_der, leaf_len)) == NULL)
		FAIL("the certificate it is about cannot be decoded");
	/* Every distinct issuer is tried, not the first found: a chain may
	 * carry a key made to verify the leaf's own (EC)DSA signature (for
	 * ECDSA anyone can compute one from (r,s)), which must not hide the
	 * real issuer's response. */
	for (i = 0; i < ncandidates && nseen < OCSP_MAX_ISSUERS; i++) {
		if ((issuer = decode_cert(candidates[i].data,
		    candidates[i].len)) == NULL)
			continue;
		if (!new_issuer(leaf, issuer, seen, nseen)) {
			CERT_DestroyCertificate(issuer);
			continue;
		}
		seen[nseen++] = issuer;
		stage = check_issuer(&p, leaf, issuer, &s);
		if (stage == 0 && s->this_update > now + OCSP_SLACK_S) {
			stage = STAGE_TIME;
			s = NULL;
		}
		if (stage == 0)
			break;
		if (stage > best)
			best = stage;
	}
	for (i = 0; i < nseen; i++)
		CERT_DestroyCertificate(seen[i]);
	CERT_DestroyCertificate(leaf);
	if (s == NULL) {
		snprintf(err, errlen, "%s", why[best]);
		return -1;
	}
	out->status = s->status;
	out->produced_at = p.produced_at;
	freshness(s, now, out);
	return 0;
}
