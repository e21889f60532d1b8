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
		/* Whatever is accepted is exactly what encoding gives back
		 * (version 2), or a version 1 record with an unknown policy,
		 * which then answers no asker. */
		cache_record_encode(&r, again);
		if (size == CACHE_RECORD_V1_LEN) {
			if (data[0] != 1 || r.policy.quorum != 0 ||
			    cache_policy_covers(&r.policy, &r.policy,
			    r.verdict) ||
			    memcmp(again + 4, data + 4, 44) != 0)
				__builtin_trap();
		} else if (size != CACHE_RECORD_LEN ||
		    memcmp(again, data, size) != 0 || r.policy.quorum < 1 ||
		    r.policy.quorum > r.policy.nspheres ||
		    !cache_policy_covers(&r.policy, &r.policy, r.verdict))
			__builtin_trap();
	}
	return 0;
}
