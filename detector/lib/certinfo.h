/*
 * certinfo.h - what DetecTor compares: SHA-256 of a certificate and of its
 * SubjectPublicKeyInfo.
 */
#ifndef DETECTOR_CERTINFO_H
#define DETECTOR_CERTINFO_H

#include <stddef.h>

/*
 * Finds the DER SubjectPublicKeyInfo inside a DER X.509 certificate.
 * Strict: definite minimal lengths, the certificate must span the input
 * exactly.  Pure; returns 0, or -1 with err set.
 */
int certinfo_spki(const unsigned char *der, size_t len,
    const unsigned char **spki, size_t *spki_len, char *err, size_t errlen);

/* SHA-256 of the SPKI and of the whole certificate (NSS must be up). */
int certinfo_hash(const unsigned char *der, size_t len,
    unsigned char spki_sha256[32], unsigned char cert_sha256[32],
    char *err, size_t errlen);

#endif
