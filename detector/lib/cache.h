/*
 * cache.h - the verdict cache: one LMDB file per user (or per system
 * service), shared by every process at once, crash-safe.
 *
 * Key "host:port" (host lower-cased); value a fixed 64-byte record
 * (version 2; version 1's 48-byte records are still read, see below).
 */
#ifndef DETECTOR_CACHE_H
#define DETECTOR_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "detector.h"

#define CACHE_RECORD_LEN 64
#define CACHE_RECORD_V1_LEN 48
#define CACHE_KEY_MAX 264               /* 253 + ':' + 5 digits, rounded */
#define CACHE_SPHERES_DIGEST_LEN 16

/*
 * The policy a verdict was reached under: the quorum k, the number of
 * spheres n, and the first 16 bytes of the SHA-256 of the sphere list
 * (sorted, one "addr:port" a line: memory_policy()).  Every process of a
 * user shares the cache, and not all of them ask the same question:
 * `sphere-probe --quorum 1` must not leave an ACCEPT that a browser
 * configured with quorum 4 then believes.
 */
struct cache_policy {
	unsigned int quorum;            /* 0: unknown (a version 1 record) */
	unsigned int nspheres;
	unsigned char spheres[CACHE_SPHERES_DIGEST_LEN];
};

/*
 * May a verdict reached under policy `had` answer for `want`?  Only if the
 * asker would have reached it too from the same answers: the same spheres,
 * and for ACCEPT (k matches) a quorum at least the asker's, for REJECT
 * (n-k+1 mismatches) a quorum at most the asker's, for UNDECIDED the same
 * quorum.  An unknown policy answers nothing.  Pure.
 */
int cache_policy_covers(const struct cache_policy *had,
    const struct cache_policy *want, enum detector_verdict v);

struct cache_record {
	enum detector_verdict verdict;  /* ACCEPT, REJECT or UNDECIDED */
	uint32_t first_seen;            /* unix seconds: key first verified */
	uint32_t last_verified;         /* unix seconds: last probe */
	uint32_t expires;               /* unix seconds */
	unsigned char spki[DETECTOR_SHA256_LEN];
	struct cache_policy policy;
};

/*
 * Pure, and strict: a record that is not exactly right is refused.
 * Layout (version 2, CACHE_RECORD_LEN bytes, integers big-endian):
 *   0 version (2)   1 verdict   2 quorum   3 number of spheres
 *   4 first_seen    8 last_verified   12 expires
 *   16 SHA-256 of the key (32)   48 digest of the sphere list (16)
 * A version 1 record (48 bytes: bytes 2-3 zero, no digest) decodes with
 * an unknown policy (quorum 0), which answers nothing: it is listed, and
 * replaced by the next verdict for its name.  Encoding writes version 2.
 */
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
 * so.  A read-only file opens read-only.  Waits up to 2 s while another
 * process creates or checks the file.  Returns NULL with err set if no
 * cache can be had at all (the caller keeps verdicts in memory instead).
 *
 * One handle per file per process (LMDB's rule: a second environment in
 * the same process shares, and on closing drops, the first one's locks):
 * opening a file this process has open already, under any spelling,
 * returns the same handle, counted; each cache_open() needs its
 * cache_close().  *note is then empty.
 * A handle opened before fork() is refused in the child (every call fails,
 * cache_recall() answers nothing); cache_close() there lets go of it
 * without touching the parent's LMDB environment, and the child may open
 * its own.
 */
struct cache *cache_open(const char *path, char *note, size_t notelen,
    char *err, size_t errlen);
void cache_close(struct cache *c);
int cache_readonly(const struct cache *c);
/* 1 if this process may use c (it was not opened before a fork()). */
int cache_usable(const struct cache *c);

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
 * verdict for exactly this key at host:port if not expired and reached
 * under a policy that covers pol (cache_policy_covers()) (1), else 0;
 * a different key is never answered from the cache.  An ACCEPT answers
 * only an asker whose own validity (its cache_validity, validity_s) it is
 * within: last verified at most now and less than validity_s ago (the
 * recorder's validity set expires, and another process may trust an
 * ACCEPT less long: cache_fresh()).  REJECT and UNDECIDED keep their
 * fixed lifetimes (the same for every asker).  cache_remember():
 * ACCEPT is kept for validity_s, REJECT for CACHE_TTL_REJECT, UNDECIDED for
 * CACHE_TTL_UNDECIDED; first_seen survives re-verification of the same key.
 */
#define CACHE_TTL_REJECT 600
#define CACHE_TTL_UNDECIDED 30
int cache_recall(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    uint32_t validity_s, uint32_t now, struct cache_record *r);
/* May a verdict v last verified at `verified` (unix seconds) that expires
 * at `expires` answer at now an asker trusting an ACCEPT for validity_s?
 * (See cache_recall().)  Pure; memo.c asks it too. */
int cache_fresh(enum detector_verdict v, int64_t verified, int64_t expires,
    uint32_t validity_s, int64_t now);
int cache_remember(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, uint32_t now, uint32_t validity_s, char *err,
    size_t errlen);

/* The per-user default: $XDG_CACHE_HOME/detector/verdicts.mdb or
 * ~/.cache/detector/verdicts.mdb; 0 if neither can be formed. */
int cache_default_path(char *out, size_t size);

#endif
