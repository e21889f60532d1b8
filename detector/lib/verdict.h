/*
 * verdict.h - the k-of-n rule, pure logic.
 */
#ifndef DETECTOR_VERDICT_H
#define DETECTOR_VERDICT_H

#include "detector.h"

/* How many spheres agreed, disagreed, and have not answered yet. */
struct tally {
	unsigned int n;          /* spheres configured */
	unsigned int k;          /* quorum */
	unsigned int matches;
	unsigned int mismatches;
	unsigned int pending;    /* still in flight */
};

/*
 * Applies the rule to t and stores the verdict in *v.  Returns 1 when the
 * verdict is final (no answer still pending could change it), 0 when the
 * caller should keep waiting (*v is then the verdict if nothing else came).
 */
int verdict_decide(const struct tally *t, enum detector_verdict *v);

#endif
