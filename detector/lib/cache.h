/*
 * cache.h - the verdict cache: one LMDB file per user (or per system
 * service), shared by every process at once, crash-safe.
 *
 * Two kinds of entries, both under LMDB's one (unnamed) database:
 *
 *   key "host:port" (host lower-cased): the verdict record, a fixed
 *   64-byte value (version 2; version 1's 48-byte records are still read,
 *   see cache_record_decode()).  ACCEPT and REJECT only: an UNDECIDED is
 *   not a verdict about the key and is never written (older versions
 *   wrote it for 30 s; such a record is listed but answers nothing).
 *
 *   key "\0h" "host:port" (CACHE_HISTORY_PREFIX, then the same text): the
 *   key history of host:port, the keys a quorum of spheres confirmed there
 *   with the first and last time each was confirmed, at most
 *   CACHE_HISTORY_MAX of them (the one confirmed longest ago is dropped).
 *   A record key never begins with a NUL byte (cache_key() makes it from
 *   a C string), so the two kinds never meet; listing skips histories,
 *   forgetting a host forgets its history too.  Fixed-length encoding,
 *   versioned, decoded strictly (cache_history_decode()).
 *
 * Key continuity (docs/design.md "Key continuity"): only a fresh ACCEPT (a
 * quorum confirmed the key now) adds to or refreshes the history, in the
 * same write transaction as its record; nothing else ever changes or
 * shortens it (an UNDECIDED is not written at all, a REJECT leaves the
 * history as it was).  When the spheres cannot decide, the history is
 * asked (cache_history_judge()): the key seen directly is accepted if a
 * quorum confirmed it within history_days, refused as a key change if a
 * quorum confirmed another key within history_days and never this one.
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
/* Forgets host:port, or every port of host when port is 0, with its key
 * history; returns the number of verdict records removed, or -1. */
int cache_forget(struct cache *c, const char *host, unsigned int port,
    char *err, size_t errlen);
/* Calls fn for every verdict record (malformed ones are reported with
 * r == NULL); key histories are not listed. */
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
 * ACCEPT less long: cache_fresh()).  A REJECT keeps its fixed lifetime
 * (the same for every asker); an UNDECIDED answers nobody.
 * cache_remember():
 * ACCEPT is kept for validity_s, and confirms the key in the history (the
 * same transaction); REJECT for CACHE_TTL_REJECT; an UNDECIDED is refused
 * (-1): it is never remembered, so it neither replaces a verdict for the
 * same name nor answers a later check (an UNDECIDED record an older
 * version left answers nothing either).  first_seen survives
 * re-verification of the same key.
 */
#define CACHE_TTL_REJECT 600
int cache_recall(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    uint32_t validity_s, uint32_t now, struct cache_record *r);
/* May a verdict v last verified at `verified` (unix seconds) that expires
 * at `expires` answer at now an asker trusting an ACCEPT for validity_s?
 * (See cache_recall(); an UNDECIDED never does.)  Pure; memo.c asks it
 * too. */
int cache_fresh(enum detector_verdict v, int64_t verified, int64_t expires,
    uint32_t validity_s, int64_t now);
int cache_remember(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, uint32_t now, uint32_t validity_s, char *err,
    size_t errlen);

/*
 * Key history (see the top of this file).  Layout of the value (version 1,
 * integers big-endian): a 4-byte header, then n entries of 64 bytes,
 * newest confirmation first (last_confirmed never increasing), no key
 * twice; the length is exactly 4 + 64 n with 1 <= n <= CACHE_HISTORY_MAX:
 *   header: 0 version (1)   1 n   2-3 zero
 *   entry:  0 SHA-256 of the key (32)   32 first_confirmed
 *           36 last_confirmed (first <= last)   40 quorum
 *           41 number of spheres (1 <= quorum <= it <= DETECTOR_MAX_SPHERES)
 *           42-47 zero   48 digest of the sphere list (16)
 * Anything else is refused: the history is then treated as absent (the
 * site follows on_undecided) and replaced by the next confirmation.
 */
#define CACHE_HISTORY_VERSION 1
#define CACHE_HISTORY_MAX 8
#define CACHE_HISTORY_HEADER_LEN 4
#define CACHE_HISTORY_ENTRY_LEN 64
#define CACHE_HISTORY_LEN(n) \
	(CACHE_HISTORY_HEADER_LEN + (n) * CACHE_HISTORY_ENTRY_LEN)
#define CACHE_HISTORY_PREFIX "\0h"
#define CACHE_HISTORY_PREFIX_LEN 2

struct cache_history_entry {
	unsigned char spki[DETECTOR_SHA256_LEN];
	uint32_t first_confirmed;       /* unix seconds */
	uint32_t last_confirmed;        /* unix seconds */
	struct cache_policy policy;     /* the confirming quorum's */
};

struct cache_history {
	unsigned int n;                 /* 0 .. CACHE_HISTORY_MAX */
	struct cache_history_entry e[CACHE_HISTORY_MAX];  /* newest first */
};

/* Pure; decode is strict (above); encode returns the length written
 * (0 for an empty history, which is not stored). */
size_t cache_history_encode(const struct cache_history *h,
    unsigned char out[CACHE_HISTORY_LEN(CACHE_HISTORY_MAX)]);
int cache_history_decode(const unsigned char *in, size_t len,
    struct cache_history *h);

/*
 * A quorum under pol confirmed spki at now: every confirmation dated after
 * now is first brought back to now; its entry's last_confirmed becomes now
 * and its first_confirmed stays; a quorum smaller than the one
 * recorded for the key changes nothing, a larger one starts the entry
 * again under pol.  A new key is added; when full, the weakest entry
 * (smallest quorum, then confirmed longest ago) makes room if the new one
 * says more (a larger quorum, or as large and not older), else the new
 * key is not kept.  Keeps the order.  Pure.
 */
void cache_history_confirm(struct cache_history *h, const unsigned char *spki,
    const struct cache_policy *pol, uint32_t now);
/* Adds every entry of src to h as cache_history_confirm() would, keeping
 * each key's earliest first and latest last confirmation.  Pure. */
void cache_history_merge(struct cache_history *h,
    const struct cache_history *src);

/*
 * What the history says about spki for an asker under pol, when the
 * spheres could not decide.  Only entries confirmed by a quorum at least
 * the asker's and within days days of now count (one dated after now, the
 * clock set back, counts as confirmed now).  CACHE_HISTORY_MATCH: spki is
 * one of them, confirmed through the asker's own spheres (same number and
 * sphere-list digest) (*when: its last confirmation);
 * CACHE_HISTORY_CHANGED: there are such entries, through any spheres, and
 * spki is none of them (*when: the newest one's last confirmation);
 * CACHE_HISTORY_NONE otherwise (spki known only through other spheres, no
 * entry, days 0).  Asymmetric on purpose: an entry another sphere list
 * left can refuse but never accept.  Pure.
 */
enum cache_history_answer {
	CACHE_HISTORY_NONE = 0,
	CACHE_HISTORY_MATCH,
	CACHE_HISTORY_CHANGED,
};
enum cache_history_answer cache_history_judge(const struct cache_history *h,
    const unsigned char *spki, const struct cache_policy *pol,
    unsigned int days, uint32_t now, uint32_t *when);

/* The history kept for host:port: 1 found and well-formed, 0 none (or
 * malformed), -1 error (err set). */
int cache_history_get(struct cache *c, const char *host, unsigned int port,
    struct cache_history *h, char *err, size_t errlen);

/* Makes the verdicts committed so far durable (the meta page: see "Crash
 * consistency" in cache.c).  0, or -1 with err set. */
int cache_sync(struct cache *c, char *err, size_t errlen);

/* The per-user default: $XDG_CACHE_HOME/detector/verdicts.mdb or
 * ~/.cache/detector/verdicts.mdb; 0 if neither can be formed. */
int cache_default_path(char *out, size_t size);

/*
 * Sightings (tolerance = survey, detector.conf(5)): the keys individual
 * spheres saw for host:port in checks where the sighting was not
 * contradicted (at least a quorum of spheres answered and no other key
 * was seen by a quorum: evidence_sightings()), whether or not the
 * spheres confirmed them.  Kept under its own key, "\0h\0s" "host:port"
 * (CACHE_SIGHTINGS_PREFIX), so that the key history's layout, which
 * older versions sharing the file read strictly, stays as it is; older
 * versions skip it when listing.  Written in the same transaction as the
 * check's verdict (cache_remember_seen()), forgotten with the host.
 * Layout (version 1, integers big-endian): a 4-byte header, then n
 * entries of 64 bytes, newest sighting first (last_seen never
 * increasing), no key and sphere list twice; length exactly 4 + 64 n,
 * 1 <= n <= CACHE_SIGHTINGS_MAX (the one seen longest ago is dropped):
 *   header: 0 version (1)   1 n   2-3 zero
 *   entry:  0 SHA-256 of the key (32)   32 first_seen   36 last_seen
 *           (first <= last)   40 number of spheres (1 ..
 *           DETECTOR_MAX_SPHERES)   41-47 zero   48 digest of the
 *           sphere list (16)
 * Anything else is refused whole: absent, replaced by the next sighting.
 */
#define CACHE_SIGHTINGS_VERSION 1
#define CACHE_SIGHTINGS_MAX 16
#define CACHE_SIGHTINGS_HEADER_LEN 4
#define CACHE_SIGHTINGS_ENTRY_LEN 64
#define CACHE_SIGHTINGS_LEN(n) \
	(CACHE_SIGHTINGS_HEADER_LEN + (n) * CACHE_SIGHTINGS_ENTRY_LEN)
#define CACHE_SIGHTINGS_PREFIX "\0h\0s"
#define CACHE_SIGHTINGS_PREFIX_LEN 4

struct cache_sighting {
	unsigned char spki[DETECTOR_SHA256_LEN];
	uint32_t first_seen;            /* unix seconds */
	uint32_t last_seen;             /* unix seconds */
	unsigned int nspheres;          /* of the sphere list seen through */
	unsigned char spheres[CACHE_SPHERES_DIGEST_LEN];
};

struct cache_sightings {
	unsigned int n;                 /* 0 .. CACHE_SIGHTINGS_MAX */
	struct cache_sighting e[CACHE_SIGHTINGS_MAX];   /* newest first */
};

/* Pure; decode is strict (above); encode returns the length (0 for none,
 * which is not stored). */
size_t cache_sightings_encode(const struct cache_sightings *s,
    unsigned char out[CACHE_SIGHTINGS_LEN(CACHE_SIGHTINGS_MAX)]);
int cache_sightings_decode(const unsigned char *in, size_t len,
    struct cache_sightings *s);
/* spki was seen through pol's spheres at now: refreshed or added (the
 * one seen longest ago makes room); entries dated after now are brought
 * back to now.  Keeps the order.  Pure. */
void cache_sightings_add(struct cache_sightings *s, const unsigned char *spki,
    const struct cache_policy *pol, uint32_t now);
/* Adds every entry of src to s (earliest first, latest last).  Pure. */
void cache_sightings_merge(struct cache_sightings *s,
    const struct cache_sightings *src);
/* 1 with *when (its last sighting, at most now) if spki was seen through
 * pol's own spheres (same number and digest) within days days of now;
 * else 0 (days 0: never).  Pure. */
int cache_sightings_judge(const struct cache_sightings *s,
    const unsigned char *spki, const struct cache_policy *pol,
    unsigned int days, uint32_t now, uint32_t *when);
/* The sightings kept for host:port: 1 found, 0 none (or malformed), -1
 * error (err set). */
int cache_sightings_get(struct cache *c, const char *host, unsigned int port,
    struct cache_sightings *s, char *err, size_t errlen);
/* cache_remember(), and in the same write transaction the nseen keys
 * spheres saw (cache_sightings_add()); v may then be UNDECIDED, which
 * writes the sightings only. */
int cache_remember_seen(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, uint32_t now, uint32_t validity_s,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen,
    char *err, size_t errlen);

#endif
