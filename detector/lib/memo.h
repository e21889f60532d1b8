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

struct memo {
	struct memo_entry e[MEMO_ENTRIES];
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
 * host:port, else the slot expiring first). */
void memo_store(struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, PRTime now, PRTime ttl);

#endif
