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

/*
 * The evidence options of the host's [site] section (detector.conf(5)),
 * applied in this order once the staples are weighed.
 *
 * evidence_require_staple(): with require_direct_staple, an ACCEPT or
 * UNDECIDED whose direct path lacks the fresh good staple the spheres'
 * paths carry (ocsp_direct_missing) becomes a REJECT (staple_refused),
 * the reason saying why.
 *
 * evidence_same_issuer(): with tolerance = same-issuer, a REJECT (not
 * revoked, not staple_refused) becomes a tolerated ACCEPT when at least
 * a quorum of spheres saw the direct key or a certificate with the
 * direct certificate's subject whose issuing key, a certificate in that
 * sphere's own chain, also verifies the direct certificate's signature,
 * and the direct path (direct, leaf: the direct certificate) staples a
 * fresh good OCSP response signed by that key or its delegated
 * responder.  Otherwise the reason says why not.  NSS must be up.
 */
void evidence_require_staple(const char *host, unsigned int port,
    struct detector_result *res);

/*
 * With require_direct_staple, an UNDECIDED (the spheres could not decide,
 * so no sphere's staple was there to compare with: Tor blocked, say),
 * also one the key history or the back-off accepted, whose direct path
 * does not staple a fresh good response becomes a REJECT
 * (staple_refused): an attacker replaying a stolen key without its
 * revoked status must not pass by blocking Tor.  Applied after the key
 * history.
 */
void evidence_require_staple_undecided(const char *host, unsigned int port,
    struct detector_result *res);
void evidence_same_issuer(const char *host, unsigned int port,
    const struct detector_der *leaf, const struct detector_path *direct,
    struct detector_result *res);

/*
 * The keys the spheres of res saw (the direct key for a MATCH or
 * KEY_MATCH) that count as sightings for tolerance = survey: none unless
 * every sphere answered (and at least a quorum); else every key at least
 * two spheres saw (one, with a single sphere) that no other key
 * outnumbered with a quorum (a key contradicted by a quorum at the same
 * time is not a sighting).  Written to out (DETECTOR_MAX_SPHERES room);
 * how many.  Pure.
 */
size_t evidence_sightings(const struct detector_result *res,
    const unsigned char *direct_spki,
    unsigned char (*out)[DETECTOR_SHA256_LEN]);

/*
 * tolerance = survey: a REJECT (not revoked, not staple_refused) of the
 * direct key spki becomes a tolerated ACCEPT when this check's sightings
 * (seen, nseen: evidence_sightings()) hold it, or the kept ones (s, may
 * be NULL) hold it seen through pol's spheres within days of now
 * (cache_sightings_judge()).  With require_direct_staple, only if the
 * direct path stapled a fresh good response.  Pure.
 */
void evidence_weigh_survey(const unsigned char *spki,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen,
    const struct cache_sightings *s, const struct cache_policy *pol,
    unsigned int days, int64_t now, struct detector_result *res);

#endif
