/*
 * certinfo.c - locating the key in a certificate, and hashing.
 *
 * The key is what a man in the middle cannot copy, so DetecTor compares the
 * SHA-256 of the SubjectPublicKeyInfo exactly as the server sent it.  Only
 * the path to that field is walked (RFC 5280 4.1: Certificate, tbsCertificate,
 * [0] version, serial, signature, issuer, validity, subject, SPKI); the certificate
 * is not otherwise interpreted, and any encoding this walker does not
 * accept is an error, never a guess.
 */
#include "certinfo.h"

#include <pk11pub.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TAG_SEQUENCE 0x30
#define TAG_INTEGER 0x02
#define TAG_CTX0 0xa0
#define TAG_OID 0x06

int
der_next(struct der_cursor *c, unsigned char *tag, const unsigned char **whole,
    size_t *whole_len, const unsigned char **val, size_t *vlen)
{
	size_t len, hdr = 2, i, nbytes;

	if (c->left < 2)
		return -1;
	*tag = c->p[0];
	if ((*tag & 0x1f) == 0x1f)
		return -1;              /* high tag numbers: not in our path */
	if (c->p[1] < 0x80) {
		len = c->p[1];
	} else {
		nbytes = c->p[1] & 0x7f;
		if (nbytes == 0 || nbytes > 4 || c->left < 2 + nbytes)
			return -1;      /* indefinite, or absurdly long */
		if (c->p[2] == 0)
			return -1;      /* not minimal */
		len = 0;
		for (i = 0; i < nbytes; i++)
			len = (len << 8) | c->p[2 + i];
		if (len < 0x80)
			return -1;      /* not minimal */
		hdr += nbytes;
	}
	if (len > c->left - hdr)
		return -1;
	*whole = c->p;
	*whole_len = hdr + len;
	*val = c->p + hdr;
	*vlen = len;
	c->p += hdr + len;
	c->left -= hdr + len;
	return 0;
}

int
certinfo_spki(const unsigned char *der, size_t len,
    const unsigned char **spki, size_t *spki_len, char *err, size_t errlen)
{
	static const char *const field[] = { "serial number",
	    "signature algorithm", "issuer", "validity", "subject",
	    "subjectPublicKeyInfo" };
	static const unsigned char want[] = { TAG_INTEGER, TAG_SEQUENCE,
	    TAG_SEQUENCE, TAG_SEQUENCE, TAG_SEQUENCE, TAG_SEQUENCE };
	struct der_cursor c = { der, len }, tbs;
	const unsigned char *whole, *val;
	size_t wlen, vlen, i;
	unsigned char tag;

	if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1 ||
	    tag != TAG_SEQUENCE) {
		snprintf(err, errlen, "not a DER certificate (bad outer "
		    "SEQUENCE)");
		return -1;
	}
	if (c.left != 0) {
		snprintf(err, errlen, "not a DER certificate (%zu bytes of "
		    "trailing data)", c.left);
		return -1;
	}
	c.p = val;
	c.left = vlen;
	if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1 ||
	    tag != TAG_SEQUENCE) {
		snprintf(err, errlen, "not a DER certificate (bad "
		    "tbsCertificate)");
		return -1;
	}
	tbs.p = val;
	tbs.left = vlen;
	if (tbs.left > 0 && tbs.p[0] == TAG_CTX0 &&
	    der_next(&tbs, &tag, &whole, &wlen, &val, &vlen) == -1) {
		snprintf(err, errlen, "not a DER certificate (bad version)");
		return -1;
	}
	for (i = 0; i < sizeof(want); i++) {
		if (der_next(&tbs, &tag, &whole, &wlen, &val, &vlen) == -1 ||
		    tag != want[i]) {
			snprintf(err, errlen, "not a DER certificate (bad %s)",
			    field[i]);
			return -1;
		}
	}
	*spki = whole;
	*spki_len = wlen;
	return 0;
}

enum probe_keytype
certinfo_keytype(const unsigned char *spki, size_t len)
{
	static const unsigned char rsa[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7,
	    0x0d, 0x01, 0x01, 0x01 };                   /* 1.2.840.113549.1.1.1 */
	static const unsigned char ec[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d,
	    0x02, 0x01 };                               /* 1.2.840.10045.2.1 */
	static const struct {
		unsigned char oid[8];
		size_t len;
		enum probe_keytype kt;
	} curves[] = {
		{ { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 }, 8,
		    PROBE_KEY_EC_P256 },                /* prime256v1 */
		{ { 0x2b, 0x81, 0x04, 0x00, 0x22 }, 5, PROBE_KEY_EC_P384 },
		{ { 0x2b, 0x81, 0x04, 0x00, 0x23 }, 5, PROBE_KEY_EC_P521 },
	};
	struct der_cursor c = { spki, len };
	const unsigned char *whole, *val;
	size_t wlen, vlen, i;
	unsigned char tag;

	/* SEQUENCE { SEQUENCE { OID algorithm, parameters }, BIT STRING } */
	if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1 ||
	    tag != TAG_SEQUENCE)
		return PROBE_KEY_ANY;
	c.p = val;
	c.left = vlen;
	if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1 ||
	    tag != TAG_SEQUENCE)
		return PROBE_KEY_ANY;
	c.p = val;
	c.left = vlen;
	if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1 ||
	    tag != TAG_OID)
		return PROBE_KEY_ANY;
	if (vlen == sizeof(rsa) && memcmp(val, rsa, vlen) == 0)
		return PROBE_KEY_RSA;
	if (vlen != sizeof(ec) || memcmp(val, ec, vlen) != 0)
		return PROBE_KEY_ANY;
	if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == 0 &&
	    tag == TAG_OID) {
		for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
			if (vlen == curves[i].len &&
			    memcmp(val, curves[i].oid, vlen) == 0)
				return curves[i].kt;
		}
	}
	return PROBE_KEY_EC;
}

int
certinfo_read(const unsigned char *der, size_t len, struct certinfo *ci,
    char *err, size_t errlen)
{
	const unsigned char *spki;
	size_t spki_len;

	if (len > INT32_MAX) {
		snprintf(err, errlen, "certificate too large");
		return -1;
	}
	if (certinfo_spki(der, len, &spki, &spki_len, err, errlen) == -1)
		return -1;
	if (PK11_HashBuf(SEC_OID_SHA256, ci->spki_sha256, spki,
	    (PRInt32)spki_len) != SECSuccess ||
	    PK11_HashBuf(SEC_OID_SHA256, ci->cert_sha256, der,
	    (PRInt32)len) != SECSuccess) {
		snprintf(err, errlen, "SHA-256 failed (is NSS initialised?)");
		return -1;
	}
	ci->keytype = certinfo_keytype(spki, spki_len);
	return 0;
}

int
detector_cert_hashes(const unsigned char *der, size_t len,
    unsigned char spki_sha256[DETECTOR_SHA256_LEN],
    unsigned char cert_sha256[DETECTOR_SHA256_LEN], char *err,
    size_t errlen)
{
	struct certinfo ci;

	if (certinfo_read(der, len, &ci, err, errlen) == -1)
		return -1;
	memcpy(spki_sha256, ci.spki_sha256, DETECTOR_SHA256_LEN);
	memcpy(cert_sha256, ci.cert_sha256, DETECTOR_SHA256_LEN);
	return 0;
}

/*
 * The DER subject Name of a certificate (tolerance = same-issuer compares
 * it byte for byte): the fifth field of tbsCertificate after the optional
 * version, walked as certinfo_spki() walks it.  0, or -1.
 */
int
certinfo_subject(const unsigned char *der, size_t len,
    const unsigned char **subject, size_t *subject_len)
{
	struct der_cursor c = { der, len };
	const unsigned char *whole, *val;
	size_t wlen, vlen, i;
	unsigned char tag;

	if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1 ||
	    tag != TAG_SEQUENCE || c.left != 0)
		return -1;
	c.p = val;
	c.left = vlen;
	if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1 ||
	    tag != TAG_SEQUENCE)
		return -1;
	c.p = val;
	c.left = vlen;
	if (c.left > 0 && c.p[0] == TAG_CTX0 &&
	    der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1)
		return -1;
	/* serial, signature, issuer, validity, subject */
	for (i = 0; i < 5; i++) {
		if (der_next(&c, &tag, &whole, &wlen, &val, &vlen) == -1 ||
		    (i > 0 && tag != TAG_SEQUENCE) ||
		    (i == 0 && tag != TAG_INTEGER))
			return -1;
	}
	*subject = whole;
	*subject_len = wlen;
	return 0;
}
