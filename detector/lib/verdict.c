/*
 * verdict.c - the k-of-n rule.
 *
 * ACCEPT when at least k spheres saw the direct key, REJECT when at least
 * n-k+1 saw another key, UNDECIDED otherwise.  Failures and timeouts are
 * neither agreement nor disagreement: an attacker who can only make spheres
 * fail can at most force UNDECIDED, never ACCEPT.  Because k + (n-k+1) > n
 * the two thresholds can never both be reached.
 *
 * Also here: what stapled OCSP responses add to a verdict (revoked wins).
 */
#include "verdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
verdict_decide(const struct tally *t, enum detector_verdict *v)
{
	unsigned int reject_at = t->n - t->k + 1;

	if (t->matches >= t->k) {
		*v = DETECTOR_ACCEPT;
		return 1;
	}
	if (t->mismatches >= reject_at) {
		*v = DETECTOR_REJECT;
		return 1;
	}
	*v = DETECTOR_UNDECIDED;
	/* Final once neither threshold can be reached by the pending ones. */
	return t->matches + t->pending < t->k &&
	    t->mismatches + t->pending < reject_at;
}

static int
fresh_good(const struct detector_ocsp *o)
{
	return o->status == DETECTOR_OCSP_GOOD && o->fresh;
}

void
verdict_ocsp(const struct detector_ocsp *direct, int direct_known,
    const struct detector_ocsp *spheres, size_t n, struct ocsp_weight *w)
{
	int sphere_fresh = 0;
	size_t i;

	w->revoked = 0;
	w->revoked_path = -1;
	w->direct_missing = 0;
	if (direct->status == DETECTOR_OCSP_REVOKED)
		w->revoked = 1;
	for (i = 0; i < n; i++) {
		if (spheres[i].status == DETECTOR_OCSP_REVOKED && !w->revoked) {
			w->revoked = 1;
			w->revoked_path = (int)i;
		}
		sphere_fresh |= fresh_good(&spheres[i]);
	}
	w->direct_missing = direct_known && sphere_fresh &&
	    !fresh_good(direct) && direct->status != DETECTOR_OCSP_REVOKED;
}
