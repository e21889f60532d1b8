/*
 * libFuzzer target: verdict cache records, key histories and sightings
 * (tolerance = survey) as read back from the file (every input is given
 * to the three decoders).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The newest confirmation of h, one second on (may wrap: fine). */
static uint32_t
get_last(const struct cache_history *h)
{
	return h->e[0].last_confirmed + 1;
}

/*
 * A history that decodes is exactly what encoding gives back, and keeps
 * every rule the decoder checks: 1..8 entries, newest first, no key twice,
 * first <= last, a possible quorum; confirming a key and merging it into
 * itself keeps them too, and judging it cannot read past it.
 */
static void
history(const uint8_t *data, size_t size)
{
	unsigned char again[CACHE_HISTORY_LEN(CACHE_HISTORY_MAX)];
	struct cache_history h, copy;
	struct cache_policy pol = { 1, 1, { 0 } };
	uint32_t when;
	unsigned int i;

	if (cache_history_decode(data, size, &h) != 0) {
		if (h.n != 0)
			__builtin_trap();
		return;
	}
	if (h.n < 1 || h.n > CACHE_HISTORY_MAX ||
	    cache_history_encode(&h, again) != size ||
	    memcmp(again, data, size) != 0)
		__builtin_trap();
	(void)cache_history_judge(&h, h.e[0].spki, &pol, 30,
	    h.e[0].last_confirmed, &when);
	copy = h;
	cache_history_merge(&copy, &h);
	cache_history_confirm(&copy, data, &pol, get_last(&h));
	if (copy.n < 1 || copy.n > CACHE_HISTORY_MAX)
		__builtin_trap();
	for (i = 0; i < copy.n; i++) {
		if (copy.e[i].first_confirmed > copy.e[i].last_confirmed ||
		    (i > 0 && copy.e[i].last_confirmed >
		    copy.e[i - 1].last_confirmed))
			__builtin_trap();
	}
	if (cache_history_decode(again, cache_history_encode(&copy, again),
	    &h) != 0)
		__builtin_trap();
}

/*
 * Sightings that decode are exactly what encoding gives back and keep the
 * decoder's rules (1..16 entries, newest first, first <= last, no key and
 * sphere list twice); adding a key and merging them into themselves keeps
 * them too, bounded, and judging cannot read past them.
 */
static void
sightings(const uint8_t *data, size_t size)
{
	unsigned char again[CACHE_SIGHTINGS_LEN(CACHE_SIGHTINGS_MAX)];
	struct cache_sightings s, copy;
	struct cache_policy pol = { 1, 1, { 0 } };
	uint32_t when;
	unsigned int i;

	if (cache_sightings_decode(data, size, &s) != 0) {
		if (s.n != 0)
			__builtin_trap();
		return;
	}
	if (s.n < 1 || s.n > CACHE_SIGHTINGS_MAX ||
	    cache_sightings_encode(&s, again) != size ||
	    memcmp(again, data, size) != 0)
		__builtin_trap();
	pol.nspheres = s.e[0].nspheres;
	memcpy(pol.spheres, s.e[0].spheres, CACHE_SPHERES_DIGEST_LEN);
	if (!cache_sightings_judge(&s, s.e[0].spki, &pol, 1,
	    s.e[0].last_seen, &when) || when != s.e[0].last_seen)
		__builtin_trap();
	copy = s;
	cache_sightings_merge(&copy, &s);
	cache_sightings_add(&copy, data, &pol, s.e[0].last_seen + 1);
	if (copy.n < 1 || copy.n > CACHE_SIGHTINGS_MAX)
		__builtin_trap();
	for (i = 0; i < copy.n; i++) {
		if (copy.e[i].first_seen > copy.e[i].last_seen ||
		    (i > 0 && copy.e[i].last_seen > copy.e[i - 1].last_seen))
			__builtin_trap();
	}
	if (cache_sightings_decode(again, cache_sightings_encode(&copy, again),
	    &s) != 0)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cache_record r;

	history(data, size);
	sightings(data, size);
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
