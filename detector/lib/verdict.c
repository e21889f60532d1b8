/*
 * verdict.c - the k-of-n rule.
 *
 * ACCEPT when at least k spheres saw the direct key, REJECT when at least
 * n-k+1 saw another key, UNDECIDED otherwise.  Failures and timeouts are
 * neither agreement nor disagreement: an attacker who can only make spheres
 * fail can at most force UNDECIDED, never ACCEPT.  Because k + (n-k+1) > n
 * the two thresholds can never both be reached.
 */
#include "verdict.h"

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
