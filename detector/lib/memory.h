/*
 * memory.h - what DetecTor remembers: the verdict reached for a host:port
 * and the key it presented, so that the next handshake with the same key
 * is answered without probing.
 */
#ifndef DETECTOR_MEMORY_H
#define DETECTOR_MEMORY_H

#include <stdint.h>

#include "cache.h"
#include "config.h"

struct memory;

/*
 * The process's verdict memory for cfg's `cache` setting: the per-user
 * cache file by default, the file named, or (cache = off, or no HOME)
 * this process's memory only.  Opened on first use and then shared by
 * every context configured with the same setting: LMDB allows one handle
 * per file and process.  NULL only when out of memory.
 */
struct memory *memory_for(const struct detector_config *cfg);

/* The policy cfg reaches verdicts for host under (cache.h): the quorum in
 * force for host (its [site] section's, else the global one: host as
 * check_target() normalised it, NULL for the global one), the number of
 * spheres and a digest of its sphere list (SHA-256 through NSS, which
 * must be initialised) of the sorted "addr:port" texts.  0, or -1 if
 * the digest cannot be made (then nothing is recalled or recorded). */
int memory_policy(const struct detector_config *cfg, const char *host,
    struct cache_policy *pol);

/* A remembered verdict for exactly this key at host:port that has not
 * expired, was reached under a policy covering pol and, if an ACCEPT, was
 * verified less than validity_s (the asker's cache_validity) ago: 1 with
 * *v and *verified_at (unix seconds) set, else 0.  A key other than the
 * remembered one is never answered from memory: "a mismatch is the
 * natural cue" to probe again. */
int memory_recall(struct memory *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    unsigned int validity_s, enum detector_verdict *v, int64_t *verified_at);

/* Remembers a verdict reached under pol: ACCEPT for validity_s (and the
 * key as confirmed by a quorum in host:port's key history), REJECT for
 * CACHE_TTL_REJECT; an UNDECIDED is not remembered at all (cache.h).  In
 * the cache file if it can be written, else in this process's memory. */
void memory_record(struct memory *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, unsigned int validity_s);

/* The key history of host:port (cache.h): the cache file's, with what
 * this process kept in memory only (a read-only cache, a failed write, no
 * file) merged in.  1 with *h set, else 0 (h empty). */
int memory_history(struct memory *m, const char *host, unsigned int port,
    struct cache_history *h);

/*
 * What the memory has to tell the user, each thing once per process: the
 * cache file was damaged and set aside, is read-only, could not be opened
 * or written (verdicts are then kept in memory).  Copies the oldest
 * unsaid note into buf and returns 1, or returns 0.
 */
int memory_note(struct memory *m, char *buf, size_t size);

/* The cache file itself, for listing and forgetting; NULL with err set
 * when there is none (cache = off, no HOME, it cannot be opened). */
struct cache *memory_cache(struct memory *m, char *err, size_t errlen);

/* cache_sync() on every cache file this process has open (after a
 * verdict was handed over: see "Crash consistency" in cache.c). */
void memory_sync(void);

/* memory_record(), with the nseen keys spheres saw (tolerance =
 * survey; cache.h "Sightings") recorded in the same transaction; v may be
 * UNDECIDED (only the sightings are then recorded).  In memory when the
 * file cannot be written. */
void memory_record_seen(struct memory *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, unsigned int validity_s,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen);

/* The sightings of host:port: the file's, with what this process kept in
 * memory only merged in.  1 with *s set, else 0 (s empty). */
int memory_sightings(struct memory *m, const char *host, unsigned int port,
    struct cache_sightings *s);

#endif
