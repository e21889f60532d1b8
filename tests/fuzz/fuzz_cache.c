/*
 * libFuzzer target: verdict cache records as read back from the file.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cache_record r;
	unsigned char again[CACHE_RECORD_LEN];

	if (cache_record_decode(data, size, &r) == 0) {
		/* Whatever is accepted is exactly what encoding gives back. */
		cache_record_encode(&r, again);
		if (size != CACHE_RECORD_LEN || memcmp(again, data, size) != 0)
			__builtin_trap();
	}
	return 0;
}
