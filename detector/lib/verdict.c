/*
 * verdict.c - the k-of-n rule.
 *
 * ACCEPT when at least k spheres saw the direct key, REJECT when at least
 * n-k+1 saw another key, UNDECIDED otherwise.  Failures and timeouts are
 * neither agreement nor disagreement: an attacker who can only make spheres
 * fail can at most force UNDECIDED, never ACCEPT.  Because k + (n-k+1) > n
 * the two thresholds can never both be reached.
 *
 * Also here: what stapled OCSP responses add to a verdict (revoked wins),
 * and where an attack sits (locality), both from what the paths saw.
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

/* The spheres of one key, as "a, b and c" appended to *s; a sphere named
 * by its region as "europe (127.0.0.1:9162)". */
static int
name_group(const struct detector_path *p, size_t n,
    const unsigned char *key, int direct_key, char **s)
{
	size_t i, count = 0, said = 0;
	char *more;

	for (i = 0; i < n; i++)
		count += (p[i].status == DETECTOR_PATH_MISMATCH && !direct_key &&
		    memcmp(p[i].spki_sha256, key, DETECTOR_SHA256_LEN) == 0) ||
		    (direct_key && (p[i].status == DETECTOR_PATH_MATCH ||
		    p[i].status == DETECTOR_PATH_KEY_MATCH));
	for (i = 0; i < n; i++) {
		int in = direct_key ? (p[i].status == DETECTOR_PATH_MATCH ||
		    p[i].status == DETECTOR_PATH_KEY_MATCH) :
		    (p[i].status == DETECTOR_PATH_MISMATCH &&
		    memcmp(p[i].spki_sha256, key, DETECTOR_SHA256_LEN) == 0);

		if (!in)
			continue;
		said++;
		if (asprintf(&more, "%s%s%s%s%s%s", *s, said == 1 ? "" :
		    said == count ? " and " : ", ", p[i].region ? p[i].region :
		    "", p[i].region ? " (" : "", p[i].via,
		    p[i].region ? ")" : "") == -1)
			return -1;
		free(*s);
		*s = more;
	}
	return 0;
}

/*
 * Groups: the spheres that saw the direct key (MATCH, KEY_MATCH), and the
 * mismatching spheres by key.  One group in all: CONSISTENT when it is the
 * direct key, LOCAL_PATH when it is another.  Several: REGIONAL.
 */
enum detector_locality
verdict_locality(const struct detector_path *p, size_t n, char **detail)
{
	const unsigned char *keys[DETECTOR_MAX_SPHERES];
	size_t i, j, nkeys = 0, same = 0, other = 0;
	enum detector_locality l;
	char *s = NULL, *more;
	int rc = 0;

	*detail = NULL;
	for (i = 0; i < n && i < DETECTOR_MAX_SPHERES; i++) {
		if (p[i].status == DETECTOR_PATH_MATCH ||
		    p[i].status == DETECTOR_PATH_KEY_MATCH) {
			same++;
			continue;
		}
		if (p[i].status != DETECTOR_PATH_MISMATCH)
			continue;
		other++;
		for (j = 0; j < nkeys; j++) {
			if (memcmp(keys[j], p[i].spki_sha256,
			    DETECTOR_SHA256_LEN) == 0)
				break;
		}
		if (j == nkeys)
			keys[nkeys++] = p[i].spki_sha256;
	}
	if (same + other == 0) {
		*detail = strdup("no sphere saw a certificate: where an attack "
		    "would sit cannot be told");
		return DETECTOR_LOCALITY_UNKNOWN;
	}
	if (other == 0) {
		if (asprintf(detail, "all %zu spheres that answered see the "
		    "direct path's key; an attacker next to the server or a "
		    "global DNS hijack would look the same, and no key was "
		    "accepted here before to compare with (verdict cache off "
		    "or empty for this site; the operator's detector-monitor "
		    "can tell)", same) == -1)
			*detail = NULL;
		return DETECTOR_LOCALITY_CONSISTENT;
	}
	if (same == 0 && nkeys == 1) {
		if (asprintf(detail, "all %zu spheres that answered agree on "
		    "one key and only the direct path differs: the attacker is "
		    "on this machine's own path (its network, ISP or resolver)",
		    other) == -1)
			*detail = NULL;
		return DETECTOR_LOCALITY_LOCAL_PATH;
	}
	/* Spheres disagree among themselves: name every group. */
	l = DETECTOR_LOCALITY_REGIONAL;
	if ((s = strdup("")) == NULL)
		return l;
	if (same > 0) {
		rc |= name_group(p, n, NULL, 1, &s);
		if (rc == 0 && asprintf(&more, "%s see%s the direct path's "
		    "key", s, same == 1 ? "s" : "") != -1) {
			free(s);
			s = more;
		} else
			rc = -1;
	}
	for (j = 0; j < nkeys && rc == 0; j++) {
		size_t count = 0;

		for (i = 0; i < n; i++)
			count += p[i].status == DETECTOR_PATH_MISMATCH &&
			    memcmp(p[i].spki_sha256, keys[j],
			    DETECTOR_SHA256_LEN) == 0;
		if (asprintf(&more, "%s%s", s, *s ? "; " : "") == -1) {
			rc = -1;
			break;
		}
		free(s);
		s = more;
		rc |= name_group(p, n, keys[j], 0, &s);
		if (rc == 0 && asprintf(&more, "%s see%s another key "
		    "(%02x%02x%02x%02x...)", s, count == 1 ? "s" : "",
		    keys[j][0], keys[j][1], keys[j][2], keys[j][3]) != -1) {
			free(s);
			s = more;
		} else
			rc = -1;
	}
	if (rc == 0 && asprintf(&more, "%s: the spheres disagree, so the "
	    "attack (or a site serving regional keys) sits on some regions' "
	    "paths", s) != -1) {
		free(s);
		s = more;
	}
	*detail = rc == 0 ? s : NULL;
	if (rc != 0)
		free(s);
	return l;
}
