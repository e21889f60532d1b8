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

#include "probe.h"
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

/*
 * The evidence options of a [site] section (issue 17; detector.conf(5)),
 * each off by default.
 */

/* "; (tolerance = same-issuer, [site NAME])" and the like, for reasons. */
static const char *
site_of(const struct detector_result *res)
{
	return res->policy.site[0] ? res->policy.site : "(global)";
}

/*
 * require_direct_staple = yes: a server that staples a fresh good
 * response on every sphere's path but not on this one is withholding it
 * here, which is what an attacker holding an old or revoked certificate's
 * key (and no fresh response for it) looks like.  An ACCEPT or an
 * UNDECIDED becomes a REJECT of its own (staple_refused), never
 * remembered: the key itself matched.
 */
void
evidence_require_staple(const char *host, unsigned int port,
    struct detector_result *res)
{
	char *s;

	if (!res->require_direct_staple || !res->ocsp_direct_missing ||
	    res->revoked || (res->verdict != DETECTOR_ACCEPT &&
	    res->verdict != DETECTOR_UNDECIDED))
		return;
	res->verdict = DETECTOR_REJECT;
	res->staple_refused = 1;
	if (asprintf(&s, "refused by require_direct_staple = yes ([site %s]): "
	    "the spheres' paths staple a fresh good OCSP response for %s:%u "
	    "and the direct path %s: %s", site_of(res), host, port,
	    res->ocsp_direct.status == DETECTOR_OCSP_NONE ? "staples none" :
	    res->ocsp_direct.status == DETECTOR_OCSP_INVALID ?
	    "an unusable one" : "a stale one", res->reason ? res->reason :
	    "") == -1)
		return;
	free((void *)res->reason);
	res->reason = s;
}

void
evidence_require_staple_undecided(const char *host, unsigned int port,
    struct detector_result *res)
{
	char *s;

	/* A key change is refused as such already. */
	if (!res->require_direct_staple || res->verdict != DETECTOR_UNDECIDED ||
	    res->history == DETECTOR_HISTORY_KEY_CHANGED ||
	    (res->ocsp_direct.status == DETECTOR_OCSP_GOOD &&
	    res->ocsp_direct.fresh))
		return;
	if (asprintf(&s, "refused by require_direct_staple = yes ([site %s]): "
	    "the spheres could not decide, so no sphere's staple could vouch "
	    "for %s:%u, and the direct path staples no fresh good OCSP "
	    "response itself: %s", site_of(res), host, port, res->reason ?
	    res->reason : "") == -1)
		s = NULL;       /* the refusal stands, said shorter */
	res->verdict = DETECTOR_REJECT;
	res->staple_refused = 1;
	if (s != NULL) {
		free((void *)res->reason);
		res->reason = s;
	}
}

/* The REJECT a tolerance may turn into an ACCEPT. */
static int
tolerable(const struct detector_result *res, enum detector_tolerance t)
{
	return res->tolerance == t && res->verdict == DETECTOR_REJECT &&
	    !res->revoked && !res->staple_refused;
}

static void
tolerate(struct detector_result *res, enum detector_tolerance t,
    const char *why)
{
	char *s;

	if (asprintf(&s, "tolerated (tolerance = %s, [site %s]): %s; the "
	    "spheres did not confirm this key: %s", detector_tolerance_name(t),
	    site_of(res), why, res->reason ? res->reason : "") == -1)
		return;             /* out of memory: the REJECT stands */
	free((void *)res->reason);
	res->reason = s;
	res->verdict = DETECTOR_ACCEPT;
	res->tolerated = t;
}

/*
 * Whether path p's own chain carries a certificate whose key verified
 * both p's leaf and the direct leaf (so both were signed by one issuing
 * key, and ocsp_issuers() also required each leaf's issuer name to be
 * that certificate's subject).  Each such certificate is added to out
 * (once; at most max in all).
 */
static int
common_issuers(const struct detector_der *leaf, const struct detector_path *p,
    struct detector_der *out, size_t *have, size_t max)
{
	struct detector_der cands[PROBE_MAX_CERTS], one;
	size_t n, i, j;
	int found = 0;

	if (p->ncerts < 2 || p->certs == NULL)
		return 0;
	n = p->ncerts - 1 < PROBE_MAX_CERTS ? p->ncerts - 1 : PROBE_MAX_CERTS;
	memcpy(cands, p->certs + 1, n * sizeof(cands[0]));
	n = ocsp_issuers(leaf->data, leaf->len, cands, n);
	for (i = 0; i < n; i++) {
		one = cands[i];
		if (ocsp_issuers(p->certs[0].data, p->certs[0].len, &one,
		    1) != 1)
			continue;
		found = 1;
		for (j = 0; j < *have && !same_der(&out[j], &cands[i]); j++)
			;
		if (j == *have && *have < max)
			out[(*have)++] = cands[i];
	}
	return found;
}

/*
 * tolerance = same-issuer.  The issuing CA is its key, not its name: an
 * attacker can make a CA certificate with any name, so the issuer that
 * counts is a certificate carried in the spheres' own chains whose key
 * verifies the signature on both the sphere's certificate and the direct
 * one; the direct path's chain is never asked.  At least a quorum of
 * spheres must vouch (the direct key itself, or a certificate with the
 * direct certificate's subject from that issuing key), and the direct
 * path must staple a fresh good OCSP response signed by that key (or its
 * delegated responder) about the direct certificate.
 */
void
evidence_same_issuer(const char *host, unsigned int port,
    const struct detector_der *leaf, const struct detector_path *direct,
    struct detector_result *res)
{
	struct detector_der issuers[OCSP_MAX_ISSUERS];
	const unsigned char *subj, *psubj;
	size_t slen, pslen, i, nissuers = 0;
	unsigned int vouch = 0;
	struct detector_ocsp o;
	char err[256], why[512];

	(void)host;
	(void)port;
	if (!tolerable(res, DETECTOR_TOLERANCE_SAME_ISSUER) || leaf == NULL ||
	    certinfo_subject(leaf->data, leaf->len, &subj, &slen) == -1)
		return;
	for (i = 0; i < res->nspheres; i++) {
		const struct detector_path *p = &res->spheres[i];

		if (p->status == DETECTOR_PATH_MATCH ||
		    p->status == DETECTOR_PATH_KEY_MATCH) {
			vouch++;
			continue;
		}
		if (p->status != DETECTOR_PATH_MISMATCH || p->ncerts < 2 ||
		    certinfo_subject(p->certs[0].data, p->certs[0].len,
		    &psubj, &pslen) == -1 || pslen != slen ||
		    memcmp(psubj, subj, slen) != 0)
			continue;
		vouch += common_issuers(leaf, p, issuers, &nissuers,
		    OCSP_MAX_ISSUERS);
	}
	if (vouch < res->quorum || nissuers == 0) {
		snprintf(why, sizeof(why), "%u of %zu spheres vouch for the "
		    "direct certificate's subject and issuing key (quorum %u)",
		    vouch, res->nspheres, res->quorum);
		goto not_tolerated;
	}
	if (direct == NULL || direct->ocsp.len == 0) {
		snprintf(why, sizeof(why), "the direct path staples no OCSP "
		    "response");
		goto not_tolerated;
	}
	memset(&o, 0, sizeof(o));
	if (ocsp_check(direct->ocsp.data, direct->ocsp.len, leaf->data,
	    leaf->len, issuers, nissuers, (int64_t)time(NULL), &o, err,
	    sizeof(err)) == -1) {
		snprintf(why, sizeof(why), "the direct path's OCSP response "
		    "is not one the spheres' issuing key signed: %s", err);
		goto not_tolerated;
	}
	if (o.status != DETECTOR_OCSP_GOOD || !o.fresh) {
		snprintf(why, sizeof(why), "the direct path's OCSP response "
		    "from that issuer is %s%s", o.fresh ? "" : "stale, ",
		    detector_ocsp_status_name(o.status));
		goto not_tolerated;
	}
	snprintf(why, sizeof(why), "%u of %zu spheres see a certificate with "
	    "the same subject from the same issuing key (quorum %u), and the "
	    "direct path staples a fresh good OCSP response signed by it",
	    vouch, res->nspheres, res->quorum);
	tolerate(res, DETECTOR_TOLERANCE_SAME_ISSUER, why);
	return;
not_tolerated:
	{
		char *s;

		if (asprintf(&s, "%s; not tolerated (tolerance = same-issuer):"
		    " %s", res->reason ? res->reason : "", why) != -1) {
			free((void *)res->reason);
			res->reason = s;
		}
	}
}

size_t
evidence_sightings(const struct detector_result *res,
    const unsigned char *direct_spki,
    unsigned char (*out)[DETECTOR_SHA256_LEN])
{
	const unsigned char *keys[DETECTOR_MAX_SPHERES];
	unsigned int count[DETECTOR_MAX_SPHERES];
	size_t i, j, nkeys = 0, answered = 0, n = 0;

	for (i = 0; i < res->nspheres && i < DETECTOR_MAX_SPHERES; i++) {
		const struct detector_path *p = &res->spheres[i];
		const unsigned char *k;

		if (p->status == DETECTOR_PATH_MATCH ||
		    p->status == DETECTOR_PATH_KEY_MATCH)
			k = direct_spki;
		else if (p->status == DETECTOR_PATH_MISMATCH)
			k = p->spki_sha256;
		else
			continue;
		answered++;
		for (j = 0; j < nkeys; j++)
			if (memcmp(keys[j], k, DETECTOR_SHA256_LEN) == 0)
				break;
		if (j == nkeys) {
			keys[nkeys] = k;
			count[nkeys++] = 0;
		}
		count[j]++;
	}
	/* Every sphere must have answered: blocking some spheres (the
	 * local attacker can drop their Tor traffic) must not leave one
	 * lying path's key uncontradicted, nor may a run at a lower quorum
	 * (sphere-probe -k 1) with most spheres failing.  Security review of
	 * issue 17, M1 and M2. */
	if (answered < res->quorum || answered < res->nspheres)
		return 0;
	for (i = 0; i < nkeys; i++) {
		/* One path alone is one exit, one possible liar. */
		if (count[i] < 2 && answered >= 2)
			continue;
		for (j = 0; j < nkeys; j++)
			if (j != i && count[j] >= res->quorum)
				break;
		if (j < nkeys)
			continue;       /* a quorum saw another key */
		memcpy(out[n++], keys[i], DETECTOR_SHA256_LEN);
	}
	return n;
}

void
evidence_weigh_survey(const unsigned char *spki,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen,
    const struct cache_sightings *s, const struct cache_policy *pol,
    unsigned int days, int64_t now, struct detector_result *res)
{
	uint32_t when = 0;
	char why[256], date[40];
	size_t i;

	if (!tolerable(res, DETECTOR_TOLERANCE_SURVEY) || now < 0 ||
	    now > UINT32_MAX)
		return;
	/* With require_direct_staple, a tolerated key needs its staple
	 * too. */
	if (res->require_direct_staple &&
	    (res->ocsp_direct.status != DETECTOR_OCSP_GOOD ||
	    !res->ocsp_direct.fresh))
		return;
	for (i = 0; i < nseen; i++) {
		if (memcmp(seen[i], spki, DETECTOR_SHA256_LEN) == 0) {
			snprintf(why, sizeof(why), "a sphere sees this key now "
			    "and no quorum sees another");
			tolerate(res, DETECTOR_TOLERANCE_SURVEY, why);
			return;
		}
	}
	if (s == NULL || !cache_sightings_judge(s, spki, pol, days,
	    (uint32_t)now, &when))
		return;
	utc(when, date, sizeof(date));
	snprintf(why, sizeof(why), "a sphere saw this key on %s, within "
	    "survey_days = %u, and no quorum saw another then", date, days);
	tolerate(res, DETECTOR_TOLERANCE_SURVEY, why);
}
