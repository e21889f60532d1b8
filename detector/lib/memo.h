/*
 * memo.h - verdicts remembered in this process, so that a second handshake
 * with the same server key does not probe again.  (The persistent cache
 * shared between processes replaces this later.)
 */
#ifndef DETECTOR_MEMO_H
#define DETECTOR_MEMO_H

#include <prtime.h>

#include "detector.h"

#define MEMO_ENTRIES 512
#define MEMO_HOST_MAX 256

struct memo_entry {
	char host[MEMO_HOST_MAX];
	unsigned int port;
	unsigned char spki[DETECTOR_SHA256_LEN];
	enum detector_verdict verdict;
	PRTime expires;                 /* 0: unused slot */
};

struct memo {
	struct memo_entry e[MEMO_ENTRIES];
};

/* The remembered verdict for exactly this key at host:port, if not
 * expired: 1 and *v set, else 0.  Pure; the caller locks. */
int memo_lookup(const struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, PRTime now, enum detector_verdict *v);
/* Remembers a verdict for ttl microseconds (replaces any entry for
 * host:port, else the slot expiring first). */
void memo_store(struct memo *m, const char *host, unsigned int port,
    const unsigned char *spki, enum detector_verdict v, PRTime now,
    PRTime ttl);

#endif
