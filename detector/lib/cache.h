/*
 * cache.h - the verdict cache: one LMDB file per user (or per system
 * service), shared by every process at once, crash-safe.
 *
 * Key "host:port" (host lower-cased); value a fixed 48-byte record.
 */
#ifndef DETECTOR_CACHE_H
#define DETECTOR_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "detector.h"

#define CACHE_RECORD_LEN 48
#define CACHE_KEY_MAX 264               /* 253 + ':' + 5 digits, rounded */

struct cache_record {
	enum detector_verdict verdict;  /* ACCEPT, REJECT or UNDECIDED */
	uint32_t first_seen;            /* unix seconds: key first verified */
	uint32_t last_verified;         /* unix seconds: last probe */
	uint32_t expires;               /* unix seconds */
	unsigned char spki[DETECTOR_SHA256_LEN];
};

/* Pure, and strict: a record that is not exactly right is refused. */
void cache_record_encode(const struct cache_record *r,
    unsigned char out[CACHE_RECORD_LEN]);
int cache_record_decode(const unsigned char *in, size_t len,
    struct cache_record *r);
/* "host:port" with the host lower-cased and any final dot dropped;
 * returns the length, or 0 if it does not fit. */
size_t cache_key(const char *host, unsigned int port, char *out, size_t size);

struct cache;

/*
 * Opens (creating, mode 0600, in a 0700 folder) the cache at path, with its
 * files path-lock (LMDB's) and path-guard (held locked while the handle is
 * open: see "Sharing one cache" in cache.c).  Files another user could
 * change are refused (filetrust.h).  A file that is not a valid LMDB
 * environment, or is truncated, is moved aside to "path.corrupt-<time>" and
 * a new one started, *note then saying so, but only by a process that
 * finds no other process using the cache; otherwise NULL with err saying
 * so.  A read-only file opens read-only.  Waits up to 10 s while another
 * process creates or checks the file.  Returns NULL with err set if no
 * cache can be had at all (the caller keeps verdicts in memory instead).
 *
 * One handle per file per process at a time (LMDB's rule: a second
 * environment in the same process re-initialises the first one's locks);
 * a handle is not used across fork().
 */
struct cache *cache_open(const char *path, char *note, size_t notelen,
    char *err, size_t errlen);
void cache_close(struct cache *c);
int cache_readonly(const struct cache *c);

/* 1 found (and well-formed), 0 not found, -1 error (err set). */
int cache_get(struct cache *c, const char *host, unsigned int port,
    struct cache_record *r, char *err, size_t errlen);
int cache_put(struct cache *c, const char *host, unsigned int port,
    const struct cache_record *r, char *err, size_t errlen);
/* Forgets host:port, or every port of host when port is 0; returns the
 * number of entries removed, or -1. */
int cache_forget(struct cache *c, const char *host, unsigned int port,
    char *err, size_t errlen);
/* Calls fn for every entry (malformed ones are reported with r == NULL). */
int cache_list(struct cache *c, void (*fn)(void *arg, const char *key,
    const struct cache_record *r), void *arg, char *err, size_t errlen);

/*
 * The verdict policy on top of the store.  cache_recall(): the remembered
 * verdict for exactly this key at host:port if not expired (1), else 0;
 * a different key is never answered from the cache.  cache_remember():
 * ACCEPT is kept for validity_s, REJECT for CACHE_TTL_REJECT, UNDECIDED for
 * CACHE_TTL_UNDECIDED; first_seen survives re-verification of the same key.
 */
#define CACHE_TTL_REJECT 600
#define CACHE_TTL_UNDECIDED 30
int cache_recall(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, uint32_t now, struct cache_record *r);
int cache_remember(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, enum detector_verdict v, uint32_t now,
    uint32_t validity_s, char *err, size_t errlen);

/* The per-user default: $XDG_CACHE_HOME/detector/verdicts.mdb or
 * ~/.cache/detector/verdicts.mdb; 0 if neither can be formed. */
int cache_default_path(char *out, size_t size);

#endif
