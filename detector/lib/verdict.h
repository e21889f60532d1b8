/*
 * verdict.h - the k-of-n rule, pure logic.
 */
#ifndef DETECTOR_VERDICT_H
#define DETECTOR_VERDICT_H

#include <stddef.h>

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

/*
 * What the paths' stapled OCSP responses (each already checked, see
 * staple.h) add to a verdict.  Revoked wins: a valid response on any path
 * saying the direct certificate is revoked makes the verdict REJECT,
 * whatever the keys say (revoked_path: -1 the direct path, else the
 * sphere's index).  direct_missing: the direct staple is known
 * (direct_known), is no fresh good response (none, unusable, stale), and
 * some sphere stapled a fresh good one about the same certificate: the
 * freshness a server gives everyone was withheld from this path.
 */
struct ocsp_weight {
	int revoked;
	int revoked_path;
	int direct_missing;
};

void verdict_ocsp(const struct detector_ocsp *direct, int direct_known,
    const struct detector_ocsp *spheres, size_t n, struct ocsp_weight *w);

/*
 * Where the attack sits (enum detector_locality), from the spheres'
 * statuses and keys alone: the spheres that saw a certificate are grouped
 * by key.  *detail is a line for humans naming the spheres that differ
 * (malloc'd; NULL when out of memory).  Pure.
 */
enum detector_locality verdict_locality(const struct detector_path *spheres,
    size_t n, char **detail);

#endif
