/*
 * evidence.h - what a check weighs besides the count of keys: stapled OCSP
 * responses and the key history.
 */
#ifndef DETECTOR_EVIDENCE_H
#define DETECTOR_EVIDENCE_H

#include "cache.h"
#include "certinfo.h"
#include "detector.h"
#include "memory.h"

/*
 * Weighs the staples of every path that answered (spheres skipped by the
 * early decision staple nothing) into res: revoked wins (verdict REJECT,
 * revoked, revoked_via, the reason), missing freshness on the direct path
 * is noted (ocsp_direct_missing), and ocsp_direct/ocsp_spheres say what
 * each staple was.  leaf: the certificate seen directly (NULL: a sphere's
 * byte-identical copy is used); direct: the direct path with its chain and
 * staple (NULL: not known).
 */
void evidence_staples(const char *host, unsigned int port,
    const struct detector_der *leaf, const struct detector_path *direct,
    struct detector_result *res);

/*
 * How long an ACCEPT of res may be remembered: validity_s, or less when a
 * fresh good staple it weighed says so sooner (its nextUpdate, else
 * thisUpdate + OCSP_MAX_AGE_S): a remembered ACCEPT is not probed again,
 * so it must not outlive the responses that vouched for it.  At least 1.
 * Pure.
 */
unsigned int evidence_accept_validity(const struct detector_result *res,
    unsigned int validity_s, int64_t now);

/* The key last accepted for host:port in the verdict cache, read before a
 * check records its own: 1 with *r set, else 0 (no cache, no ACCEPT). */
int evidence_history(struct memory *m, const char *host, unsigned int port,
    struct cache_record *r);

/* A CONSISTENT result whose key differs from the history's becomes
 * SERVER_OR_GLOBAL; with history, the detail says since when the key is
 * known.  The verdict is unchanged. */
void evidence_weigh_history(const char *host, unsigned int port,
    const struct certinfo *ci, int have, const struct cache_record *r,
    struct detector_result *res);

/*
 * Key continuity: when res is an UNDECIDED, what the key history h of
 * host:port (memory_history()) says about the key seen directly (spki)
 * for an asker under pol, counting confirmations within days days of now
 * (cache_history_judge()).  Sets res->history and res->history_confirmed
 * and adds it to the reason: "accepted by history (confirmed by a quorum
 * on DATE)", or "the key changed and no quorum could confirm the new one
 * (...)".  The verdict stays UNDECIDED.  Any other verdict is left alone.
 * Out of memory for the reason, the old one stays; the fields are set.
 * Pure.
 */
void evidence_weigh_continuity(const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_history *h,
    const struct cache_policy *pol, unsigned int days, int64_t now,
    struct detector_result *res);

#endif
