/*
 * evidence.c - what a check weighs besides the k-of-n count of keys: the
 * stapled OCSP responses every path carried (staple.c checks each, the
 * rule is verdict_ocsp()), and the key history that tells a consistent
 * result from one where every path agrees on a new key.
 */
#include "evidence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "staple.h"
#include "verdict.h"

/*
 * OCSP evidence.  Each path's staple is checked against the certificate
 * seen directly (the caller's leaf, else a sphere's byte-identical one),
 * with its issuer found among every chain the paths sent.
 */
struct candidate {
	struct detector_der der;
	size_t paths;           /* how many paths' chains carry it */
	size_t first;           /* its first position */
};

static int
by_paths(const void *a, const void *b)
{
	const struct candidate *x = a, *y = b;

	if (x->paths != y->paths)
		return x->paths > y->paths ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

static int
same_der(const struct detector_der *a, const struct detector_der *b)
{
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Adds one path's chain (its certificates after the leaf) to c, counting
 * each distinct certificate once per path. */
static void
add_chain(const struct detector_path *path, struct candidate *c,
    size_t *count)
{
	size_t j, k, m;

	for (j = 1; j < path->ncerts; j++) {
		for (m = 1; m < j && !same_der(&path->certs[m],
		    &path->certs[j]); m++)
			;
		if (m < j)
			continue;       /* repeated within this chain */
		for (k = 0; k < *count && !same_der(&c[k].der,
		    &path->certs[j]); k++)
			;
		if (k == *count) {
			c[k].der = path->certs[j];
			c[k].paths = 0;
			c[k].first = k;
			(*count)++;
		}
		c[k].paths++;
	}
}

/* Every certificate the chains sent, once each, those carried by the most
 * paths first: an issuer's certificate sent by every honest path comes
 * before any a lying path or two made up, whatever their number. */
static struct detector_der *
issuer_candidates(const struct detector_path *direct,
    const struct detector_path *paths, size_t n, size_t *count)
{
	struct candidate *c;
	struct detector_der *d;
	size_t i, total = direct != NULL && direct->ncerts > 1 ?
	    direct->ncerts - 1 : 0;

	for (i = 0; i < n; i++)
		total += paths[i].ncerts > 1 ? paths[i].ncerts - 1 : 0;
	*count = 0;
	if (total == 0 || (c = calloc(total, sizeof(*c))) == NULL)
		return NULL;
	if (direct != NULL)
		add_chain(direct, c, count);
	for (i = 0; i < n; i++)
		add_chain(&paths[i], c, count);
	qsort(c, *count, sizeof(*c), by_paths);
	if ((d = calloc(*count, sizeof(*d))) != NULL) {
		for (i = 0; i < *count; i++)
			d[i] = c[i].der;
	} else
		*count = 0;
	free(c);
	return d;
}

static void
read_staple(const struct detector_der *staple, const struct detector_der *leaf,
    const struct detector_der *cands, size_t ncands, int64_t now,
    struct detector_ocsp *o)
{
	char err[256];

	memset(o, 0, sizeof(*o));
	if (staple->len == 0)
		return;
	if (leaf == NULL) {
		o->status = DETECTOR_OCSP_INVALID;
		o->error = strdup("no copy of the certificate seen directly "
		    "to check it against");
		return;
	}
	if (ocsp_check(staple->data, staple->len, leaf->data, leaf->len,
	    cands, ncands, now, o, err, sizeof(err)) == -1) {
		memset(o, 0, sizeof(*o));
		o->status = DETECTOR_OCSP_INVALID;
		o->error = strdup(err);
	}
}

/* "2026-12-03 05:07:45 UTC" */
static void
utc(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, size, "@%lld", (long long)t);
}

/*
 * Weighs the staples of every path that answered (spheres skipped by the
 * early decision staple nothing) into res: revoked wins, missing freshness
 * is noted, and the reason says both.  leaf: the certificate seen directly
 * (NULL: taken from a sphere that saw the very same certificate); direct:
 * the direct path with its chain and staple (NULL: not known).
 */
void
evidence_staples(const char *host, unsigned int port,
    const struct detector_der *leaf, const struct detector_path *direct,
    struct detector_result *res)
{
	const struct detector_path *paths = res->spheres;
	struct detector_ocsp *o;
	struct detector_der *cands, none = { NULL, 0 };
	struct ocsp_weight w;
	int64_t now = (int64_t)time(NULL);
	size_t i, ncands = 0;
	char when[40], *s;
	int any;

	if (res->nspheres == 0)
		return;
	for (i = 0, any = direct != NULL && direct->ocsp.len > 0;
	    i < res->nspheres; i++)
		any |= paths[i].ocsp.len > 0;
	for (i = 0; leaf == NULL && i < res->nspheres; i++) {
		if (paths[i].status == DETECTOR_PATH_MATCH &&
		    paths[i].ncerts > 0)
			leaf = &paths[i].certs[0];
	}
	if ((o = calloc(res->nspheres, sizeof(*o))) == NULL)
		return;
	/* The issuers, found once for every staple (the chains a lying
	 * sphere sends may be long): every distinct key that verifies the
	 * leaf, not the first, as a staple is valid under any of them. */
	cands = any ? issuer_candidates(direct, paths, res->nspheres,
	    &ncands) : NULL;
	if (cands != NULL && leaf != NULL)
		ncands = ocsp_issuers(leaf->data, leaf->len, cands, ncands);
	read_staple(direct != NULL ? &direct->ocsp : &none, leaf, cands,
	    ncands, now, &res->ocsp_direct);
	for (i = 0; i < res->nspheres; i++)
		read_staple(&paths[i].ocsp, leaf, cands, ncands, now, &o[i]);
	free(cands);
	res->ocsp_spheres = o;
	verdict_ocsp(&res->ocsp_direct, direct != NULL, o, res->nspheres, &w);
	res->ocsp_direct_missing = w.direct_missing;
	if (w.revoked) {
		const struct detector_ocsp *r = w.revoked_path < 0 ?
		    &res->ocsp_direct : &o[w.revoked_path];

		res->revoked = 1;
		res->verdict = DETECTOR_REJECT;
		res->revoked_via = strdup(w.revoked_path < 0 ? "direct" :
		    paths[w.revoked_path].via);
		utc(r->revoked_at, when, sizeof(when));
		free((void *)res->reason);
		res->reason = NULL;
		if (asprintf(&s, "the certificate seen directly for %s:%u is "
		    "revoked: a stapled OCSP response signed by its issuer, "
		    "seen on the %s path, says so (revoked %s)", host, port,
		    res->revoked_via ? res->revoked_via : "?", when) != -1)
			res->reason = s;
	}
	if (w.direct_missing && res->reason != NULL &&
	    asprintf(&s, "%s; the spheres' paths staple a fresh good OCSP "
	    "response, the direct path %s (ocsp_direct_missing)", res->reason,
	    res->ocsp_direct.status == DETECTOR_OCSP_NONE ? "none" :
	    res->ocsp_direct.status == DETECTOR_OCSP_INVALID ?
	    "an unusable one" : "a stale one") != -1) {
		free((void *)res->reason);
		res->reason = s;
	}
}

static void
bound_by(const struct detector_ocsp *o, int64_t *until)
{
	int64_t end;

	if (o->status != DETECTOR_OCSP_GOOD || !o->fresh)
		return;
	end = o->next_update != 0 ? o->next_update :
	    o->this_update + OCSP_MAX_AGE_S;
	if (end < *until)
		*until = end;
}

unsigned int
evidence_accept_validity(const struct detector_result *res,
    unsigned int validity_s, int64_t now)
{
	int64_t until = now + (int64_t)validity_s;
	size_t i;

	bound_by(&res->ocsp_direct, &until);
	for (i = 0; res->ocsp_spheres != NULL && i < res->nspheres; i++)
		bound_by(&res->ocsp_spheres[i], &until);
	return until - now < 1 ? 1 : (unsigned int)(until - now);
}

/*
 * Key history: the key last accepted for host:port, read from the verdict
 * cache before this check records its own.  When every path agrees on a
 * key other than that one, no path-based comparison can see an attacker
 * next to the server (or a global DNS hijack), and neither can it tell one
 * from the operator's own key rotation: the result says so
 * (SERVER_OR_GLOBAL), the verdict is unchanged.
 */
int
evidence_history(struct memory *m, const char *host, unsigned int port,
    struct cache_record *r)
{
	struct cache *c;
	char err[256];

	if (m == NULL || (c = memory_cache(m, err, sizeof(err))) == NULL)
		return 0;
	return cache_get(c, host, port, r, err, sizeof(err)) == 1 &&
	    r->verdict == DETECTOR_ACCEPT;
}

void
evidence_weigh_history(const char *host, unsigned int port, const struct certinfo *ci,
    int have, const struct cache_record *r, struct detector_result *res)
{
	char *s, when[40];

	if (res->locality != DETECTOR_LOCALITY_CONSISTENT)
		return;
	if (have && memcmp(r->spki, ci->spki_sha256,
	    DETECTOR_SHA256_LEN) != 0) {
		utc(r->first_seen, when, sizeof(when));
		if (asprintf(&s, "every path agrees on a key other than the "
		    "one accepted for %s:%u since %s: an attacker next to the "
		    "server, a global DNS hijack, or the operator's own key "
		    "rotation (only the operator's monitor can tell)", host,
		    port, when) == -1)
			return;
		res->locality = DETECTOR_LOCALITY_SERVER_OR_GLOBAL;
	} else if (have) {
		utc(r->first_seen, when, sizeof(when));
		if (asprintf(&s, "every path that answered sees the key "
		    "accepted for %s:%u since %s", host, port, when) == -1)
			return;
	} else
		return;         /* verdict_locality() said why not */
	free((void *)res->locality_detail);
	res->locality_detail = s;
}

/*
 * Key continuity (docs/design.md): Perspectives' temporal safety, on the
 * client.  An attacker who can intercept the direct path can usually also
 * block Tor, so an UNDECIDED is exactly what an interception looks like
 * to a user whose spheres are cut off.  A key that a quorum confirmed for
 * this site recently is the best evidence left: the same key is accepted,
 * another one refused, whatever on_undecided says.  A site never confirmed
 * has no such evidence and follows on_undecided.
 */
void
evidence_weigh_continuity(const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_history *h,
    const struct cache_policy *pol, unsigned int days, int64_t now,
    struct detector_result *res)
{
	enum cache_history_answer answer;
	uint32_t when = 0;
	char date[40], *s;
	int rc;

	if (res->verdict != DETECTOR_UNDECIDED || now < 0 || now > UINT32_MAX)
		return;
	answer = cache_history_judge(h, spki, pol, days, (uint32_t)now, &when);
	if (answer == CACHE_HISTORY_NONE)
		return;
	utc(when, date, sizeof(date));
	res->history_confirmed = when;
	if (answer == CACHE_HISTORY_MATCH) {
		res->history = DETECTOR_HISTORY_ACCEPTED;
		rc = asprintf(&s, "%s; accepted by history (confirmed by a "
		    "quorum on %s)", res->reason ? res->reason : "", date);
	} else {
		res->history = DETECTOR_HISTORY_KEY_CHANGED;
		rc = asprintf(&s, "%s; the key changed and no quorum could "
		    "confirm the new one (the key of %s:%u was last confirmed "
		    "by a quorum on %s, within history_days = %u)",
		    res->reason ? res->reason : "", host, port, date, days);
	}
	if (rc == -1)
		return;
	free((void *)res->reason);
	res->reason = s;
}
