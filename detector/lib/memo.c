/*
 * memo.c - a small fixed table of recent verdicts.
 *
 * A presented key that differs from the remembered one is never answered
 * from memory: "a mismatch is the natural cue" to probe again.
 */
#include "memo.h"

#include <string.h>
#include <strings.h>

int
memo_lookup(const struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    uint32_t validity_s, PRTime now, enum detector_verdict *v,
    int64_t *stored_s)
{
	size_t i;

	for (i = 0; i < MEMO_ENTRIES; i++) {
		const struct memo_entry *e = &m->e[i];

		if (e->expires <= now || e->port != port ||
		    strcasecmp(e->host, host) != 0)
			continue;
		if (memcmp(e->spki, spki, DETECTOR_SHA256_LEN) != 0 ||
		    !cache_policy_covers(&e->policy, pol, e->verdict) ||
		    !cache_fresh(e->verdict, e->stored / PR_USEC_PER_SEC,
		    e->expires / PR_USEC_PER_SEC, validity_s,
		    now / PR_USEC_PER_SEC))
			return 0;
		*v = e->verdict;
		*stored_s = e->stored / PR_USEC_PER_SEC;
		return 1;
	}
	return 0;
}

int
memo_newest(const struct memo *m, const char *host, unsigned int port,
    int64_t *stored_s)
{
	PRTime newest = 0;
	int found = 0;
	size_t i;

	for (i = 0; i < MEMO_ENTRIES; i++) {
		const struct memo_entry *e = &m->e[i];

		if (e->expires == 0 || e->port != port ||
		    strcasecmp(e->host, host) != 0)
			continue;
		if (!found || e->stored > newest)
			newest = e->stored;
		found = 1;
	}
	if (found)
		*stored_s = newest / PR_USEC_PER_SEC;
	return found;
}

void
memo_store(struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, PRTime now, PRTime ttl)
{
	struct memo_entry *slot = NULL;
	size_t i;

	if (strlen(host) >= MEMO_HOST_MAX || v == DETECTOR_UNDECIDED)
		return;
	for (i = 0; i < MEMO_ENTRIES; i++) {
		struct memo_entry *e = &m->e[i];

		if (e->expires > now && e->port == port &&
		    strcasecmp(e->host, host) == 0) {
			slot = e;
			break;
		}
		if (slot == NULL || e->expires < slot->expires)
			slot = e;
	}
	strcpy(slot->host, host);
	slot->port = port;
	memcpy(slot->spki, spki, DETECTOR_SHA256_LEN);
	slot->verdict = v;
	slot->policy = *pol;
	slot->stored = now;
	slot->expires = now + ttl;
}

int
memo_history(const struct memo *m, const char *host, unsigned int port,
    struct cache_history *h)
{
	size_t i;

	for (i = 0; i < MEMO_HISTORIES; i++) {
		const struct memo_history *e = &m->hist[i];

		if (e->h.n > 0 && e->port == port &&
		    strcasecmp(e->host, host) == 0) {
			*h = e->h;
			return 1;
		}
	}
	memset(h, 0, sizeof(*h));
	return 0;
}

void
memo_confirm(struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol, uint32_t now)
{
	struct memo_history *slot = NULL;
	size_t i;

	if (strlen(host) >= MEMO_HOST_MAX)
		return;
	for (i = 0; i < MEMO_HISTORIES; i++) {
		struct memo_history *e = &m->hist[i];

		if (e->h.n > 0 && e->port == port &&
		    strcasecmp(e->host, host) == 0) {
			slot = e;
			break;
		}
		/* Unused first, else the newest confirmation oldest. */
		if (slot == NULL || (slot->h.n > 0 && (e->h.n == 0 ||
		    e->h.e[0].last_confirmed < slot->h.e[0].last_confirmed)))
			slot = e;
	}
	/* A site whose history may still count is not pushed out (security
	 * review L3: a page visiting 256 names must not evict the bank's):
	 * the new site then has none in this process. */
	if (slot->h.n > 0 && (slot->port != port ||
	    strcasecmp(slot->host, host) != 0) &&
	    slot->h.e[0].last_confirmed <= now &&
	    now - slot->h.e[0].last_confirmed <
	    (uint32_t)MEMO_HISTORY_KEEP_DAYS * 86400)
		return;
	if (slot->h.n == 0 || slot->port != port ||
	    strcasecmp(slot->host, host) != 0) {
		memset(slot, 0, sizeof(*slot));
		strcpy(slot->host, host);
		slot->port = port;
	}
	cache_history_confirm(&slot->h, spki, pol, now);
}

int
memo_sightings(const struct memo *m, const char *host, unsigned int port,
    struct cache_sightings *s)
{
	size_t i;

	for (i = 0; i < MEMO_SIGHTINGS; i++) {
		const struct memo_sightings *e = &m->sight[i];

		if (e->s.n > 0 && e->port == port &&
		    strcasecmp(e->host, host) == 0) {
			*s = e->s;
			return 1;
		}
	}
	memset(s, 0, sizeof(*s));
	return 0;
}

void
memo_sight(struct memo *m, const char *host, unsigned int port,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen,
    const struct cache_policy *pol, uint32_t now)
{
	struct memo_sightings *slot = NULL;
	size_t i;

	if (strlen(host) >= MEMO_HOST_MAX || nseen == 0)
		return;
	for (i = 0; i < MEMO_SIGHTINGS; i++) {
		struct memo_sightings *e = &m->sight[i];

		if (e->s.n > 0 && e->port == port &&
		    strcasecmp(e->host, host) == 0) {
			slot = e;
			break;
		}
		/* Unused first, else the one seen longest ago. */
		if (slot == NULL || (slot->s.n > 0 && (e->s.n == 0 ||
		    e->s.e[0].last_seen < slot->s.e[0].last_seen)))
			slot = e;
	}
	if (slot->s.n == 0 || slot->port != port ||
	    strcasecmp(slot->host, host) != 0) {
		memset(slot, 0, sizeof(*slot));
		strcpy(slot->host, host);
		slot->port = port;
	}
	for (i = 0; i < nseen; i++)
		cache_sightings_add(&slot->s, seen[i], pol, now);
}
