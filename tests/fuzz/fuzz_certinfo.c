/*
 * libFuzzer target: locating the SubjectPublicKeyInfo in a certificate
 * received from the network, and reading its key type.
 */
#include <stddef.h>
#include <stdint.h>

#include "certinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *spki;
	size_t len;
	char err[256];

	if (certinfo_spki(data, size, &spki, &len, err, sizeof(err)) == 0 &&
	    (spki < data || spki + len > data + size))
		__builtin_trap();
	/* The key type of whatever came: the input as an SPKI. */
	if (certinfo_keytype(data, size) > PROBE_KEY_EC)
		__builtin_trap();
	return 0;
}
