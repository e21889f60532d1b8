/*
 * memo.h - verdicts remembered in this process only: memory.c's fallback
 * when there is no verdict cache file or it cannot be written.
 */
#ifndef DETECTOR_MEMO_H
#define DETECTOR_MEMO_H

#include <prtime.h>
#include <stdint.h>

#include "cache.h"
#include "detector.h"

#define MEMO_ENTRIES 512
#define MEMO_HOST_MAX 256

struct memo_entry {
	char host[MEMO_HOST_MAX];
	unsigned int port;
	unsigned char spki[DETECTOR_SHA256_LEN];
	enum detector_verdict verdict;
	struct cache_policy policy;     /* reached under (cache.h) */
	PRTime stored;                  /* when the verdict was reached */
	PRTime expires;                 /* 0: unused slot */
};

/* A key history kept in memory (cache.h "Key history"): when the cache
 * file cannot be had or written, the keys a quorum confirmed must still
 * count for the rest of the process's life. */
#define MEMO_HISTORIES 256
/* A history confirmed more recently than this is never pushed out of a
 * full table (the new site is not kept instead): the default
 * history_days; a process rarely lives that long. */
#define MEMO_HISTORY_KEEP_DAYS DETECTOR_DEFAULT_HISTORY_DAYS

struct memo_history {
	char host[MEMO_HOST_MAX];
	unsigned int port;
	struct cache_history h;         /* h.n == 0: unused slot */
};

/* Sightings kept in memory (cache.h "Sightings"), for the same reason:
 * tolerance = survey with cache = off or an unwritable cache.  A small
 * table: only sites with tolerance = survey record any. */
#define MEMO_SIGHTINGS 64

struct memo_sightings {
	char host[MEMO_HOST_MAX];
	unsigned int port;
	struct cache_sightings s;       /* s.n == 0: unused slot */
};

struct memo {
	struct memo_entry e[MEMO_ENTRIES];
	struct memo_history hist[MEMO_HISTORIES];
	struct memo_sightings sight[MEMO_SIGHTINGS];
};

/* The remembered verdict for exactly this key at host:port, if not
 * expired, fresh enough for an asker trusting an ACCEPT for validity_s
 * (cache_fresh()) and reached under a policy covering pol
 * (cache_policy_covers()): 1 with *v and *stored_s (unix seconds) set,
 * else 0.  Pure; the caller locks. */
int memo_lookup(const struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    uint32_t validity_s, PRTime now, enum detector_verdict *v,
    int64_t *stored_s);
/* The newest verdict this process reached for host:port, for any key and
 * expired or not (until its slot is reused): 1 with *stored_s (unix
 * seconds) set, else 0.  memory_recall() lets no older record of the cache
 * file answer over it.  Pure; the caller locks. */
int memo_newest(const struct memo *m, const char *host, unsigned int port,
    int64_t *stored_s);
/* Remembers a verdict for ttl microseconds (replaces any entry for
 * host:port, else the slot expiring first).  An UNDECIDED is not
 * remembered (cache.h). */
void memo_store(struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, PRTime now, PRTime ttl);

/* The key history kept for host:port: 1 with *h set, else 0 (h empty).
 * Pure; the caller locks. */
int memo_history(const struct memo *m, const char *host, unsigned int port,
    struct cache_history *h);
/* A quorum under pol confirmed spki for host:port at now
 * (cache_history_confirm()).  A host:port without a slot takes an unused
 * one, else the one whose newest confirmation is the oldest if that is
 * MEMO_HISTORY_KEEP_DAYS old, else it is not kept.  The caller locks. */
void memo_confirm(struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol, uint32_t now);

/* The sightings kept for host:port: 1 with *s set, else 0 (s empty).
 * Pure; the caller locks. */
int memo_sightings(const struct memo *m, const char *host, unsigned int port,
    struct cache_sightings *s);
/* The nseen keys were seen through pol's spheres for host:port at now
 * (cache_sightings_add()).  A host:port without a slot takes an unused
 * one, else the one seen longest ago.  The caller locks. */
void memo_sight(struct memo *m, const char *host, unsigned int port,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen,
    const struct cache_policy *pol, uint32_t now);

#endif
