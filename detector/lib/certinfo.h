/*
 * certinfo.h - what DetecTor compares: SHA-256 of a certificate and of its
 * SubjectPublicKeyInfo.
 */
#ifndef DETECTOR_CERTINFO_H
#define DETECTOR_CERTINFO_H

#include <stddef.h>

#include "detector.h"

/*
 * A strict DER reader, shared by the parsers of what servers send
 * (certificates here, stapled OCSP responses in ocsp.c): definite,
 * minimal lengths, low tag numbers only, nothing read past the input.
 */
struct der_cursor {
	const unsigned char *p;
	size_t left;
};

/* Reads one TLV: its tag, the whole TLV (whole, whole_len) and its
 * contents (val, vlen); the cursor moves past it.  0, or -1 when what is
 * left does not start with a well-formed TLV. */
int der_next(struct der_cursor *c, unsigned char *tag,
    const unsigned char **whole, size_t *whole_len, const unsigned char **val,
    size_t *vlen);

/*
 * Finds the DER SubjectPublicKeyInfo inside a DER X.509 certificate.
 * Strict: definite minimal lengths, the certificate must span the input
 * exactly.  Pure; returns 0, or -1 with err set.
 */
int certinfo_spki(const unsigned char *der, size_t len,
    const unsigned char **spki, size_t *spki_len, char *err, size_t errlen);

/*
 * The key type, so that probes steer a server holding certificates of
 * several key types to the one the direct path saw: the probes then
 * offer only the signature schemes of that type (otherwise a sphere could
 * see the server's other, equally genuine key and report a false
 * mismatch).
 */
enum probe_keytype {
	PROBE_KEY_ANY = 0,      /* no restriction (fetch, survey, unknown) */
	PROBE_KEY_RSA,
	PROBE_KEY_EC_P256,
	PROBE_KEY_EC_P384,
	PROBE_KEY_EC_P521,
	PROBE_KEY_EC,           /* another curve: any ECDSA scheme */
};

/* What a check takes from the certificate its direct connection got. */
struct certinfo {
	unsigned char spki_sha256[DETECTOR_SHA256_LEN];
	unsigned char cert_sha256[DETECTOR_SHA256_LEN];
	enum probe_keytype keytype;
};

/* Reads the certificate once: both hashes (NSS must be up; they are
 * detector_cert_hashes()) and the key type.  0, or -1 with err set. */
int certinfo_read(const unsigned char *der, size_t len, struct certinfo *ci,
    char *err, size_t errlen);

/* The key type named by a DER SubjectPublicKeyInfo's algorithm: RSA
 * (rsaEncryption), EC on a named curve, another EC, else ANY.  Pure. */
enum probe_keytype certinfo_keytype(const unsigned char *spki, size_t len);

/* The DER subject Name (the whole TLV) of a DER certificate, pointing
 * into it.  Strict as certinfo_spki().  Pure; 0, or -1. */
int certinfo_subject(const unsigned char *der, size_t len,
    const unsigned char **subject, size_t *subject_len);

#endif
