/*
 * libFuzzer target: the host an application or a certificate names, read
 * as NSS reads it (host_normalise).  Checks that the result is always a
 * host DetecTor can send to a sphere: NUL-terminated, at most a DNS name
 * long, only the bytes of a name or an address, and stable (normalising
 * it again gives it back).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1);
	char out[HOST_MAX + 2], again[HOST_MAX + 2], err[256];
	int kind, kind2;
	size_t i, n;

	if (in == NULL)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	kind = host_normalise(in, out, sizeof(out), err, sizeof(err));
	if (kind != -1) {
		n = strlen(out);
		if (n == 0 || n > HOST_MAX + 1)
			__builtin_trap();
		for (i = 0; i < n; i++) {
			unsigned char c = (unsigned char)out[i];
			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			    c == '-' || c == '.' || c == '_' || c == ':'))
				__builtin_trap();
		}
		kind2 = host_normalise(out, again, sizeof(again), err,
		    sizeof(err));
		if (kind2 != kind || strcmp(again, out) != 0)
			__builtin_trap();
	}
	free(in);
	return 0;
}
