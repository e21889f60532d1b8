/*
 * libFuzzer target: a stapled OCSP response received from the network.
 * staple.c's DER walker first; what it accepts then goes through the whole
 * check (NSS's decoder, the issuer, the signature, the CertID) against the
 * leaf and CA the seed responses are about (ocsp_pki.h).
 */
#include <nss.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ocsp_pki.h"
#include "staple.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (NSS_NoDB_Init(NULL) != SECSuccess)
		abort();
	return 0;
}

/* Does [p, p+len) lie inside the input? */
static int
inside(const uint8_t *data, size_t size, const unsigned char *p, size_t len)
{
	return p >= data && len <= size && p - data <= (ptrdiff_t)(size - len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ocsp_parsed p;
	char err[256];
	size_t i;

	if (ocsp_parse(data, size, &p, err, sizeof(err)) == -1)
		return 0;
	if (!inside(data, size, p.tbs, p.tbs_len) ||
	    !inside(data, size, p.sigalg, p.sigalg_len) ||
	    !inside(data, size, p.sig, p.sig_len) ||
	    !inside(data, size, p.responder, p.responder_len) ||
	    p.nsingle == 0 || p.nsingle > OCSP_MAX_SINGLE ||
	    p.ncerts > OCSP_MAX_CERTS)
		__builtin_trap();
	for (i = 0; i < p.nsingle; i++) {
		const struct ocsp_single *s = &p.single[i];

		if (!inside(data, size, s->serial, s->serial_len) ||
		    !inside(data, size, s->name_hash, s->name_hash_len) ||
		    !inside(data, size, s->key_hash, s->key_hash_len) ||
		    (s->status != DETECTOR_OCSP_GOOD &&
		    s->status != DETECTOR_OCSP_REVOKED &&
		    s->status != DETECTOR_OCSP_UNKNOWN))
			__builtin_trap();
	}
	for (i = 0; i < p.ncerts; i++) {
		if (!inside(data, size, p.certs[i], p.certs_len[i]))
			__builtin_trap();
	}
	{
		struct detector_der ca = { fuzz_ca, sizeof(fuzz_ca) };
		struct detector_ocsp o;

		/* At the seeds' making time + 1 h: their thisUpdate is past. */
		if (ocsp_check(data, size, fuzz_leaf, sizeof(fuzz_leaf), &ca,
		    1, p.produced_at + 3600, &o, err, sizeof(err)) == 0 &&
		    o.status != DETECTOR_OCSP_GOOD &&
		    o.status != DETECTOR_OCSP_REVOKED &&
		    o.status != DETECTOR_OCSP_UNKNOWN)
			__builtin_trap();
	}
	return 0;
}
