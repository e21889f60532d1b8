/*
 * staple.h - what a stapled OCSP response (RFC 6960) says about a
 * certificate, believed only once its signature is checked against the
 * certificate's issuer.
 */
#ifndef DETECTOR_STAPLE_H
#define DETECTOR_STAPLE_H

#include <stddef.h>
#include <stdint.h>

#include "detector.h"

#define OCSP_MAX_SINGLE 8       /* SingleResponses read; more: refused */
#define OCSP_MAX_CERTS 4        /* responder certificates read; more: refused */
#define OCSP_SLACK_S 300        /* clock skew allowed on thisUpdate */
#define OCSP_MAX_ISSUERS 32     /* distinct keys tried as the leaf's issuer */
#define OCSP_MAX_AGE_S 86400    /* no nextUpdate: fresh for a day */

/* One SingleResponse, pointing into the input. */
struct ocsp_single {
	const unsigned char *hash_oid;          /* CertID hashAlgorithm OID */
	size_t hash_oid_len;
	const unsigned char *name_hash, *key_hash, *serial;
	size_t name_hash_len, key_hash_len, serial_len;
	enum detector_ocsp_status status;       /* GOOD, REVOKED or UNKNOWN */
	int64_t this_update, next_update;       /* next_update 0: absent */
	int64_t revoked_at;
};

/* A successful OCSPResponse carrying a BasicOCSPResponse, pointing into
 * the input. */
struct ocsp_parsed {
	const unsigned char *tbs;       /* tbsResponseData, the signed bytes */
	size_t tbs_len;
	const unsigned char *sigalg;    /* signatureAlgorithm, whole TLV */
	size_t sigalg_len;
	const unsigned char *sig;       /* signature, whole bytes */
	size_t sig_len;
	int responder_by_key;           /* byKey (SHA-1 of the key) or byName */
	const unsigned char *responder; /* the key hash, or the Name TLV */
	size_t responder_len;
	int64_t produced_at;
	size_t nsingle;
	struct ocsp_single single[OCSP_MAX_SINGLE];
	size_t ncerts;
	const unsigned char *certs[OCSP_MAX_CERTS];
	size_t certs_len[OCSP_MAX_CERTS];
};

/*
 * Reads a DER OCSPResponse.  Strict (DER, the response must span the input,
 * times as YYYYMMDDHHMMSSZ); pure: nothing is verified here.  A response
 * whose responseStatus is not successful, or whose type is not
 * id-pkix-ocsp-basic, is an error naming it.  0, or -1 with err set.
 */
int ocsp_parse(const unsigned char *der, size_t len, struct ocsp_parsed *p,
    char *err, size_t errlen);

/*
 * Keeps, in place and in order, the candidates (DER certificates) whose
 * subject is the leaf's issuer and whose key verifies the leaf's signature,
 * one per key, at most OCSP_MAX_ISSUERS; returns how many.  More than one
 * is possible: for ECDSA anyone can compute a second key that verifies a
 * given signature, so a chain may carry a false issuer beside the real one.
 * NSS must be initialised.
 */
size_t ocsp_issuers(const unsigned char *leaf, size_t leaf_len,
    struct detector_der *candidates, size_t ncandidates);

/*
 * What the stapled response says about leaf.  An issuer is any of the
 * candidates (DER certificates: the chains the paths sent) whose subject
 * is the leaf's issuer and whose key verifies the leaf's signature; each
 * distinct one (by key, the first OCSP_MAX_ISSUERS) is tried.  The
 * response must be signed by one of them, or by a certificate it carries
 * that this issuer signed for OCSP signing (id-kp-OCSPSigning, valid at
 * producedAt), and must name the leaf as issued by that issuer (CertID).  On success out->status is GOOD, REVOKED or UNKNOWN with its
 * times and freshness at now (unix seconds); on failure -1 with err set
 * (the response is then to be ignored).  NSS must be initialised.
 */
int ocsp_check(const unsigned char *staple, size_t staple_len,
    const unsigned char *leaf, size_t leaf_len,
    const struct detector_der *candidates, size_t ncandidates, int64_t now,
    struct detector_ocsp *out, char *err, size_t errlen);

#endif
