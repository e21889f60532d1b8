/*
 * backoff.h - when every sphere was silent, do not make the user wait for
 * them again at once.
 *
 * A check whose spheres all failed ends UNDECIDED; with a key history it
 * is then decided by the history (accepted by history, or refused: the key
 * changed).  Such a check costs the whole probe timeout, and an attacker
 * who blocks Tor makes every connection of the user pay it.  This table,
 * kept in the process only (never in the cache file: an UNDECIDED is never
 * remembered), says for how long a host:port, key and policy whose spheres
 * were all silent is decided by its history again without waiting for the
 * spheres: a refusal (key changed) 15 s, doubling to 5 min while the
 * spheres stay silent; an acceptance by history 5 s, doubling to 30 s, so
 * that a key the spheres would now refuse is not kept accepted for long.
 * Any sphere answering any check ends every back-off: Tor is reachable.
 * Sites without a history always wait for the spheres, and so does a
 * direct path that staples an OCSP response (what it says is news).  The
 * clock is CLOCK_BOOTTIME: a back-off does not outlive a suspend.
 * docs/design.md ("Key continuity") says why an acceptance may back off.
 */
#ifndef DETECTOR_BACKOFF_H
#define DETECTOR_BACKOFF_H

#include <stdint.h>

#include "cache.h"
#include "detector.h"

#define BACKOFF_ENTRIES 64

/* The back-off after `silent` checks in a row (1, 2, ...) all of whose
 * spheres were silent, decided as h says: milliseconds; 0 for a check the
 * history did not decide.  Pure. */
int64_t backoff_delay_ms(enum detector_history h, unsigned int silent);

/* Is host:port with this key and policy in a back-off at now_ms?  1 with
 * *since_ms (when the spheres were last all silent), *until_ms and
 * *silent (checks in a row) set, else 0.  host is normalised already. */
int backoff_active(const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol, int64_t now_ms,
    int64_t *since_ms, int64_t *until_ms, unsigned int *silent);

/* Milliseconds on CLOCK_BOOTTIME (counts a suspend), the clock of every
 * *_ms above and below. */
int64_t backoff_now_ms(void);

/* Changes at every backoff_clear(): read when a check starts, handed to
 * backoff_note() when it ends. */
uint64_t backoff_generation(void);

/*
 * A check that started at start_ms (generation gen) and ended at now_ms
 * with every sphere silent, decided by history as h says
 * (DETECTOR_HISTORY_NONE: nothing is kept).  Nothing either when a sphere
 * answered another check meanwhile (gen is old).  The back-off doubles
 * only for a check that started after the last one ended; one that
 * started long after (more than that back-off's length) starts over.
 */
void backoff_note(const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_history h, int64_t start_ms, uint64_t gen, int64_t now_ms);

/* A sphere answered a check: every back-off ends. */
void backoff_clear(void);

#endif
