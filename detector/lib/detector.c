/*
 * detector.c - the context, detector_check()'s event loop, and
 * detector_fetch().
 *
 * detector_check() starts one probe per sphere at once and drives them all
 * from a single PR_Poll loop, each with its own deadline inside the overall
 * one.  After every probe that finishes, the k-of-n rule is asked whether
 * the verdict can still change; the moment it cannot, the loop stops and the
 * probes still in flight are closed (reported as "skipped").
 */
#include <nss.h>
#include <pk11pub.h>
#include <prerror.h>
#include <prnetdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "cache.h"
#include "certinfo.h"
#include "check.h"
#include "config.h"
#include "evidence.h"
#include "host.h"
#include "memory.h"
#include "probe.h"
#include "reroute.h"
#include "verdict.h"


struct detector {
	struct detector_config cfg;
	int configured;
	struct memory *memory;          /* found on first use */
	enum detector_starttls starttls;        /* preamble for every probe */
	char err[1024];
};

static int
seterr(struct detector *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
seterr(struct detector *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
	va_end(ap);
	return -1;
}

struct detector *
detector_new(void)
{
	return calloc(1, sizeof(struct detector));
}

void
detector_free(struct detector *ctx)
{
	if (ctx == NULL)
		return;
	/* The configuration's [site] sections too (they were leaked). */
	config_release(&ctx->cfg);
	free(ctx);
}

const char *
detector_error(struct detector *ctx)
{
	return ctx->err[0] ? ctx->err : "no error";
}

int
detector_configure(struct detector *ctx, const struct detector_config *cfg)
{
	struct detector_config copy;

	if (cfg == NULL)
		return seterr(ctx, "no configuration given");
	if (config_check(cfg, ctx->err, sizeof(ctx->err)) == -1)
		return -1;
	if (!NSS_IsInitialized())
		return seterr(ctx, "NSS is not initialised: call NSS_Init() "
		    "or NSS_NoDB_Init() before detector_configure()");
	if (config_copy(&copy, cfg) == -1)
		return seterr(ctx, "out of memory");
	config_release(&ctx->cfg);
	ctx->cfg = copy;
	ctx->configured = 1;
	ctx->memory = NULL;
	return 0;
}

int
detector_set_starttls(struct detector *ctx, enum detector_starttls proto)
{
	if (proto < DETECTOR_STARTTLS_NONE || proto > DETECTOR_STARTTLS_LDAP)
		return seterr(ctx, "unknown STARTTLS protocol %d", (int)proto);
	ctx->starttls = proto;
	return 0;
}

const char *
detector_excluded(struct detector *ctx, const char *host)
{
	char name[CHECK_HOST_SIZE], err[256];

	if (host == NULL)
		return NULL;
	if (host_normalise(host, name, sizeof(name), err, sizeof(err)) == -1)
		return exclude_match(&ctx->cfg.exclude, host);
	return exclude_match(&ctx->cfg.exclude, name);
}

const char *
detector_verdict_name(enum detector_verdict v)
{
	switch (v) {
	case DETECTOR_ACCEPT: return "accept";
	case DETECTOR_REJECT: return "reject";
	case DETECTOR_UNDECIDED: return "undecided";
	case DETECTOR_EXCLUDED: return "excluded";
	}
	return "unknown";
}

const char *
detector_history_name(enum detector_history h)
{
	switch (h) {
	case DETECTOR_HISTORY_NONE: return "none";
	case DETECTOR_HISTORY_ACCEPTED: return "accepted-by-history";
	case DETECTOR_HISTORY_KEY_CHANGED: return "key-changed";
	}
	return "unknown";
}

const char *
detector_tolerance_name(enum detector_tolerance t)
{
	switch (t) {
	case DETECTOR_TOLERANCE_OFF: return "off";
	case DETECTOR_TOLERANCE_SAME_ISSUER: return "same-issuer";
	case DETECTOR_TOLERANCE_SURVEY: return "survey";
	}
	return "unknown";
}

const char *
detector_ocsp_status_name(enum detector_ocsp_status s)
{
	switch (s) {
	case DETECTOR_OCSP_NONE: return "none";
	case DETECTOR_OCSP_GOOD: return "good";
	case DETECTOR_OCSP_REVOKED: return "revoked";
	case DETECTOR_OCSP_UNKNOWN: return "unknown";
	case DETECTOR_OCSP_INVALID: return "invalid";
	}
	return "unknown";
}

const char *
detector_locality_name(enum detector_locality l)
{
	switch (l) {
	case DETECTOR_LOCALITY_UNKNOWN: return "unknown";
	case DETECTOR_LOCALITY_CONSISTENT: return "consistent";
	case DETECTOR_LOCALITY_LOCAL_PATH: return "local-path";
	case DETECTOR_LOCALITY_REGIONAL: return "regional";
	case DETECTOR_LOCALITY_SERVER_OR_GLOBAL: return "server-or-global";
	}
	return "unknown";
}

const char *
detector_path_status_name(enum detector_path_status s)
{
	switch (s) {
	case DETECTOR_PATH_MATCH: return "match";
	case DETECTOR_PATH_KEY_MATCH: return "key-match";
	case DETECTOR_PATH_MISMATCH: return "mismatch";
	case DETECTOR_PATH_FAILED: return "failed";
	case DETECTOR_PATH_TIMEOUT: return "timeout";
	case DETECTOR_PATH_SKIPPED: return "skipped";
	case DETECTOR_PATH_SEEN: return "seen";
	}
	return "unknown";
}

static void
to_netaddr(const struct sockaddr_storage *ss, PRNetAddr *na)
{
	memset(na, 0, sizeof(*na));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;
		na->inet.family = PR_AF_INET;
		na->inet.port = sin->sin_port;
		na->inet.ip = sin->sin_addr.s_addr;
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)ss;
		na->ipv6.family = PR_AF_INET6;
		na->ipv6.port = sin6->sin6_port;
		memcpy(&na->ipv6.ip, &sin6->sin6_addr, 16);
		na->ipv6.scope_id = sin6->sin6_scope_id;
	}
}

/* Arguments every entry point checks the same way; the host as NSS reads
 * it (host.c) into name. */
int
check_target(struct detector *ctx, int have_result, const char *host,
    unsigned int port, char name[CHECK_HOST_SIZE])
{
	if (!have_result)
		return seterr(ctx, "no result pointer given");
	if (!ctx->configured)
		return seterr(ctx, "detector_configure() was not called");
	if (host_normalise(host, name, CHECK_HOST_SIZE, ctx->err,
	    sizeof(ctx->err)) == -1)
		return -1;
	if (port < 1 || port > 65535)
		return seterr(ctx, "port %u out of range 1-65535", port);
	return 0;
}

/* A fresh random SOCKS username/password per check: Tor's
 * IsolateSOCKSAuth then never shares a circuit between two checks. */
static int
isolation_token(char *user, size_t usize, char *pass, size_t psize)
{
	unsigned char rnd[16];
	size_t i;

	if (PK11_GenerateRandom(rnd, sizeof(rnd)) != SECSuccess ||
	    psize < 2 * sizeof(rnd) + 1)
		return -1;
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(pass + 2 * i, 3, "%02x", rnd[i]);
	snprintf(user, usize, "detector");
	return 0;
}

static void
classify(struct detector_path *path, const unsigned char *spki,
    const unsigned char *cert)
{
	if (path->status != DETECTOR_PATH_SEEN)
		return;
	if (memcmp(path->spki_sha256, spki, DETECTOR_SHA256_LEN) != 0)
		path->status = DETECTOR_PATH_MISMATCH;
	else if (memcmp(path->cert_sha256, cert, DETECTOR_SHA256_LEN) != 0)
		path->status = DETECTOR_PATH_KEY_MATCH;
	else
		path->status = DETECTOR_PATH_MATCH;
}

static void
tally_paths(const struct detector_path *paths, const struct probe *probes,
    size_t n, struct tally *t)
{
	size_t i;

	t->matches = t->mismatches = t->pending = 0;
	for (i = 0; i < n; i++) {
		if (probes[i].state != PROBE_DONE)
			t->pending++;
		else if (paths[i].status == DETECTOR_PATH_MATCH ||
		    paths[i].status == DETECTOR_PATH_KEY_MATCH)
			t->matches++;
		else if (paths[i].status == DETECTOR_PATH_MISMATCH)
			t->mismatches++;
	}
}

/*
 * The early decision stops waiting once the outcome is fixed, so the
 * spheres not awaited (SKIPPED) might have agreed with the majority too:
 * the counts are then a lower bound and the reason says "at least".
 */
static char *
make_reason(const char *host, unsigned int port,
    const struct detector_result *r)
{
	char *s = NULL;
	int rc = -1;
	unsigned int n = (unsigned int)r->nspheres;
	unsigned int skipped = 0;
	size_t i;

	for (i = 0; i < r->nspheres; i++)
		skipped += r->spheres[i].status == DETECTOR_PATH_SKIPPED;

	switch (r->verdict) {
	case DETECTOR_ACCEPT:
		rc = asprintf(&s, "%s%u of %u spheres see the same key for "
		    "%s:%u as the direct connection (quorum %u)%s",
		    skipped ? "at least " : "", r->matches, n, host, port,
		    r->quorum, r->mismatches ?
		    "; a minority saw another key" : "");
		break;
	case DETECTOR_REJECT:
		rc = asprintf(&s, "the key seen directly for %s:%u differs "
		    "from what %s%u of %u spheres see (possible "
		    "man-in-the-middle)", host, port, skipped ? "at least " : "",
		    r->mismatches, n);
		break;
	case DETECTOR_UNDECIDED:
		rc = asprintf(&s, "only %u of %u spheres confirmed the key of "
		    "%s:%u (quorum %u), %u disagreed, %u failed or timed "
		    "out%s", r->matches, n, host, port, r->quorum,
		    r->mismatches, r->failures - skipped, skipped ?
		    ", the rest could no longer change the outcome" : "");
		break;
	case DETECTOR_EXCLUDED:
		rc = asprintf(&s, "%s is excluded from probing by the "
		    "configuration", host);
		break;
	}
	return rc == -1 ? NULL : s;
}

static char *
survey_reason(const char *host, unsigned int port,
    const struct detector_result *r)
{
	unsigned int seen = 0;
	char *s = NULL;
	size_t i;

	for (i = 0; i < r->nspheres; i++)
		seen += r->spheres[i].status == DETECTOR_PATH_SEEN;
	if (r->nspheres == 0)
		return strdup("excluded from probing by the configuration");
	if (asprintf(&s, "%u of %u spheres returned a certificate for %s:%u",
	    seen, (unsigned int)r->nspheres, host, port) == -1)
		return NULL;
	return s;
}

void
detector_result_free(struct detector_result *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nspheres; i++) {
		free((void *)r->spheres[i].region);
		path_release((struct detector_path *)&r->spheres[i]);
		if (r->ocsp_spheres != NULL)
			free((void *)r->ocsp_spheres[i].error);
	}
	free((void *)r->spheres);
	free((void *)r->ocsp_spheres);
	free((void *)r->ocsp_direct.error);
	free((void *)r->revoked_via);
	free((void *)r->locality_detail);
	free((void *)r->reason);
	free((void *)r->note);
	free((void *)r->rerouted_via);
	free(r);
}

/*
 * The event loop.  Returns when the verdict is final or time is up.
 */
static void
run_probes(struct detector *ctx, struct probe *probes,
    struct detector_path *paths, size_t n, PRIntervalTime start,
    const unsigned char *spki, const unsigned char *cert,
    struct detector_result *res)
{
	PRPollDesc pds[DETECTOR_MAX_SPHERES];
	size_t idx[DETECTOR_MAX_SPHERES];
	PRIntervalTime overall = start +
	    PR_MillisecondsToInterval(ctx->cfg.deadline_ms);
	struct tally t = { (unsigned int)n, res->quorum, 0, 0, 0 };
	size_t i, npd;

	for (;;) {
		PRIntervalTime now = PR_IntervalNow(), wait;
		PRInt32 ready;

		for (i = 0; spki != NULL && i < n; i++) {
			if (probes[i].state == PROBE_DONE &&
			    paths[i].status == DETECTOR_PATH_SEEN)
				classify(&paths[i], spki, cert);
		}
		tally_paths(paths, probes, n, &t);
		/* A survey (no reference key) awaits every sphere; so does a
		 * REJECT that may be rerouted: its plan needs k spheres that
		 * agree, not the n-k+1 that made it final (reroute.c); and
		 * one a tolerance may accept, which needs a quorum too. */
		if (spki == NULL ? t.pending == 0 :
		    verdict_decide(&t, &res->verdict) && (t.pending == 0 ||
		    res->verdict != DETECTOR_REJECT ||
		    (res->policy.on_mitm != DETECTOR_MITM_REROUTE &&
		    res->tolerance == DETECTOR_TOLERANCE_OFF)))
			break;
		if ((PRInt32)(now - overall) >= 0) {
			for (i = 0; i < n; i++) {
				probe_abandon(&probes[i], DETECTOR_PATH_TIMEOUT,
				    "overall deadline reached");
			}
			continue;
		}
		wait = overall - now;
		npd = 0;
		for (i = 0; i < n; i++) {
			if (probes[i].state == PROBE_DONE)
				continue;
			if ((PRInt32)(now - probes[i].deadline) >= 0) {
				probe_abandon(&probes[i], DETECTOR_PATH_TIMEOUT,
				    "probe timed out");
				continue;
			}
			if ((PRIntervalTime)(probes[i].deadline - now) < wait)
				wait = probes[i].deadline - now;
			pds[npd].fd = probes[i].fd;
			pds[npd].in_flags = probe_poll_flags(&probes[i]);
			pds[npd].out_flags = 0;
			idx[npd++] = i;
		}
		if (npd == 0)
			continue;
		ready = PR_Poll(pds, (PRIntn)npd, wait);
		if (ready < 0) {
			for (i = 0; i < n; i++) {
				probe_abandon(&probes[i], DETECTOR_PATH_FAILED,
				    "poll failed");
			}
			continue;
		}
		for (i = 0; i < npd; i++) {
			if (pds[i].out_flags == 0)
				continue;
			probe_advance(&probes[idx[i]], pds[i].out_flags);
		}
	}
	/* The verdict is final: close what is still in flight. */
	for (i = 0; i < n; i++) {
		probe_abandon(&probes[i], DETECTOR_PATH_SKIPPED,
		    "not awaited (verdict already reached)");
	}
	res->matches = t.matches;
	res->mismatches = t.mismatches;
	res->failures = (unsigned int)n - t.matches - t.mismatches;
}

/* A result, under the policy in force for host (its [site] section). */
static struct detector_result *
result_new(struct detector *ctx, const char *host)
{
	struct detector_result *res = calloc(1, sizeof(*res));

	if (res != NULL) {
		config_policy_for(&ctx->cfg, host, &res->policy);
		config_evidence_for(&ctx->cfg, host,
		    &res->require_direct_staple, &res->tolerance);
		res->quorum = res->policy.quorum;
		res->verdict = DETECTOR_UNDECIDED;
	}
	return res;
}

/*
 * on_mitm = reroute is parsed and reported, but the reroute itself does
 * not exist yet: a REJECT it applies to is refused, and said so, never
 * silently.  Out of memory for the note, the verdict stands.
 */
static void
reroute_note(const char *host, unsigned int port, struct detector_result *res)
{
	char *note;

	if (res->verdict != DETECTOR_REJECT ||
	    res->policy.on_mitm != DETECTOR_MITM_REROUTE ||
	    reroute_nss_wanted())
		return;
	if (asprintf(&note, "%s%s%s:%u: on_mitm = reroute%s%s%s, but "
	    "rerouting is not available in this version: the connection is "
	    "refused", res->note ? res->note : "", res->note ? "; " : "",
	    host, port, res->policy.site[0] ? " ([site " : "",
	    res->policy.site, res->policy.site[0] ? "])" : "") == -1)
		return;
	free((void *)res->note);
	res->note = note;
}

static int
finish(struct detector *ctx, struct detector_result *res,
    struct detector_result **result)
{
	if (res->reason == NULL) {
		detector_result_free(res);
		return seterr(ctx, "out of memory");
	}
	*result = res;
	return 0;
}

/* Hands what the verdict memory has to say, if anything, to the caller
 * with the result: every note not said yet, in one line.  Out of memory
 * for it, the note is lost, the verdict is not. */
static void
take_notes(struct detector *ctx, struct detector_result *res)
{
	char note[1024], *all = NULL, *more;

	while (ctx->memory != NULL && memory_note(ctx->memory, note,
	    sizeof(note))) {
		if (asprintf(&more, "%s%s%s", all ? all : "", all ? "; " : "",
		    note) == -1)
			break;
		free(all);
		all = more;
	}
	if (all != NULL) {
		free((void *)res->note);
		res->note = all;
	}
}

static int
excluded(struct detector *ctx, const char *host, unsigned int port,
    int survey, struct detector_result **result)
{
	struct detector_result *res = result_new(ctx, host);

	if (res == NULL)
		return seterr(ctx, "out of memory");
	if (!survey)
		res->verdict = DETECTOR_EXCLUDED;
	res->reason = survey ? survey_reason(host, port, res) :
	    make_reason(host, port, res);
	return finish(ctx, res, result);
}

/*
 * The direct path again, for the evidence options of the host's [site]
 * section, when the caller gave only the certificate (detector_check(),
 * the NSS integration) and they need the direct staple or chain: with
 * require_direct_staple once a sphere's path stapled a response, with
 * tolerance = same-issuer for a REJECT.  A second direct connection, as
 * the application made (the system resolver); believed only if it shows
 * the very certificate checked.  1 with *out (to free), 0 when not
 * needed, -1 when needed and not had (*why set).
 */
static int
direct_again(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, const struct detector_result *res,
    struct detector_path **out, char *why, size_t whylen)
{
	struct detector_path *p = NULL;
	int stapled = 0;
	size_t i;

	*out = NULL;
	for (i = 0; i < res->nspheres; i++)
		stapled |= res->spheres[i].ocsp.len > 0;
	if (!(res->require_direct_staple && (stapled ||
	    res->verdict == DETECTOR_UNDECIDED)) &&
	    !(res->tolerance == DETECTOR_TOLERANCE_SAME_ISSUER &&
	    res->verdict == DETECTOR_REJECT))
		return 0;
	if (detector_fetch(ctx, host, port, NULL, &p) == -1) {
		snprintf(why, whylen, "%.480s", ctx->err);
		return -1;
	}
	if (p->status != DETECTOR_PATH_SEEN || p->ncerts == 0 ||
	    memcmp(p->cert_sha256, ci->cert_sha256, DETECTOR_SHA256_LEN) != 0) {
		snprintf(why, whylen, "%s", p->status != DETECTOR_PATH_SEEN ?
		    (p->error ? p->error : "no certificate") : "it showed "
		    "another certificate");
		detector_path_free(p);
		return -1;
	}
	*out = p;
	return 1;
}

/*
 * What a check weighs besides the count of keys (evidence.c): the
 * staples (revoked wins, missing freshness), then the site's
 * require_direct_staple and tolerance = same-issuer.  Survey, which needs
 * the verdict memory, is weighed by check_probe_path().
 */
static void
weigh_evidence(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, const struct detector_der *leaf,
    const struct detector_path *direct, struct detector_result *res)
{
	struct detector_path *again = NULL, bare;
	char why[512] = "", *s;
	int rc = 0;

	if (direct == NULL && (rc = direct_again(ctx, host, port, ci, res,
	    &again, why, sizeof(why))) == 1) {
		direct = again;
		leaf = &again->certs[0];
	} else if (rc == -1) {
		const struct detector_der *copy = leaf;
		size_t i;

		/* Not had: the direct path is known to staple nothing we
		 * could read, which require_direct_staple refuses (fail
		 * closed).  Its certificate: the caller's, else a sphere's
		 * byte-identical copy. */
		for (i = 0; copy == NULL && i < res->nspheres; i++)
			if (res->spheres[i].status == DETECTOR_PATH_MATCH &&
			    res->spheres[i].ncerts > 0)
				copy = &res->spheres[i].certs[0];
		if (copy != NULL) {
			memset(&bare, 0, sizeof(bare));
			bare.via = "direct";
			bare.ncerts = 1;
			bare.certs = copy;
			direct = &bare;
			leaf = copy;
		}
	}
	evidence_staples(host, port, leaf, direct, res);
	if (rc == -1 && res->require_direct_staple &&
	    asprintf(&s, "%s (the direct staple was asked of a second direct "
	    "connection, which failed: %s)", res->reason, why) != -1) {
		free((void *)res->reason);
		res->reason = s;
	}
	evidence_require_staple(host, port, res);
	if (rc == -1 && res->tolerance == DETECTOR_TOLERANCE_SAME_ISSUER &&
	    res->verdict == DETECTOR_REJECT && asprintf(&s, "%s; not "
	    "tolerated (tolerance = same-issuer): the direct path's staple "
	    "was asked of a second direct connection, which failed: %s",
	    res->reason, why) != -1) {
		free((void *)res->reason);
		res->reason = s;
	} else if (leaf != NULL)
		evidence_same_issuer(host, port, leaf, direct, res);
	detector_path_free(again);
}

/*
 * Probes host:port through every sphere.  With a reference key (ci), as
 * detector_check(): stops as soon as the verdict is final.  Without
 * (ci == NULL), as detector_survey(): awaits every sphere.
 */
static int
probe_spheres(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, const struct detector_der *leaf,
    const struct detector_path *direct, struct detector_result **result)
{
	struct probe probes[DETECTOR_MAX_SPHERES];
	struct detector_path *paths;
	struct detector_result *res;
	char user[16], pass[40];
	PRIntervalTime start = PR_IntervalNow();
	size_t i, n = ctx->cfg.nspheres;
	unsigned int pick = 2166136261u;

	if (isolation_token(user, sizeof(user), pass, sizeof(pass)) == -1)
		return seterr(ctx, "cannot generate a random isolation token");
	/* The random token also spreads checks across a group's members. */
	for (i = 0; pass[i] != '\0'; i++)
		pick = (pick ^ (unsigned char)pass[i]) * 16777619u;
	res = result_new(ctx, host);
	paths = calloc(n, sizeof(*paths));
	if (res == NULL || paths == NULL) {
		free(res);
		free(paths);
		return seterr(ctx, "out of memory");
	}
	res->nspheres = n;
	res->spheres = paths;
	for (i = 0; i < n; i++) {
		PRNetAddr addr;

		memset(&probes[i], 0, sizeof(probes[i]));
		probes[i].host = host;
		probes[i].port = port;
		probes[i].via_socks = 1;
		probes[i].starttls = ctx->starttls;
		/* Show the spheres the certificate of the key type seen
		 * directly. */
		probes[i].keytype = ci != NULL ? ci->keytype : PROBE_KEY_ANY;
		probes[i].user = user;
		probes[i].pass = pass;
		probes[i].start = start;
		probes[i].path = &paths[i];
		probes[i].deadline = start + PR_MillisecondsToInterval(
		    ctx->cfg.probe_timeout_ms);
		const struct sphere_member *m = config_sphere_member(
		    &ctx->cfg.spheres[i], pick);

		to_netaddr(&m->addr, &addr);
		probe_start(&probes[i], &addr, m->text);
	}
	run_probes(ctx, probes, paths, n, start, ci ? ci->spki_sha256 : NULL,
	    ci ? ci->cert_sha256 : NULL, res);
	/* After the probes: a retry would have cleared it (path_release). */
	for (i = 0; i < n; i++)
		if (ctx->cfg.spheres[i].name[0] != '\0')
			paths[i].region = strdup(ctx->cfg.spheres[i].name);
	res->ms = PR_IntervalToMilliseconds(PR_IntervalNow() - start);
	if (ci == NULL) {
		res->matches = res->mismatches = res->failures = 0;
		for (i = 0; i < res->nspheres; i++)
			res->failures += paths[i].status != DETECTOR_PATH_SEEN;
		res->reason = survey_reason(host, port, res);
	} else {
		res->reason = make_reason(host, port, res);
		if (res->reason != NULL)
			weigh_evidence(ctx, host, port, ci, leaf, direct, res);
		res->locality = verdict_locality(res->spheres, res->nspheres,
		    (char **)&res->locality_detail);
	}
	return finish(ctx, res, result);
}

static struct memory *
memory_of(struct detector *ctx)
{
	if (ctx->memory == NULL && ctx->cfg.remember)
		ctx->memory = memory_for(&ctx->cfg);
	return ctx->memory;
}

/*
 * Whether a remembered verdict v may answer for host under its [site]
 * evidence options.  With require_direct_staple, never: the cache is
 * keyed by the key, and the staple of this connection is what must be
 * seen (an attacker replaying an old certificate of the same key would
 * otherwise pass on a remembered ACCEPT).  With a tolerance, not a
 * REJECT: the next check may tolerate the key, and says so.
 */
static int
recall_allowed(struct detector *ctx, const char *host, enum detector_verdict v)
{
	enum detector_tolerance t;
	int require;

	config_evidence_for(&ctx->cfg, host, &require, &t);
	return !require && (t == DETECTOR_TOLERANCE_OFF ||
	    v != DETECTOR_REJECT);
}

int
check_recall(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, struct detector_result **result)
{
	struct memory *m = memory_of(ctx);
	struct detector_result *res;
	struct cache_policy pol;
	enum detector_verdict v;
	int64_t when;

	*result = NULL;
	if (m == NULL || memory_policy(&ctx->cfg, host, &pol) == -1 ||
	    !memory_recall(m, host, port, ci->spki_sha256, &pol,
	    ctx->cfg.cache_validity_s, &v, &when) ||
	    !recall_allowed(ctx, host, v))
		return 0;
	if ((res = result_new(ctx, host)) == NULL)
		return seterr(ctx, "out of memory");
	res->verdict = v;
	res->cached = 1;
	res->verified_at = when;
	res->reason = strdup("remembered verdict for this key (verdict "
	    "cache)");
	take_notes(ctx, res);
	reroute_note(host, port, res);
	return finish(ctx, res, result) == -1 ? -1 : 1;
}

/* A REJECT whose spheres agree on another key: keep the way around the
 * rogue key, so that the next handshake showing it reroutes at once. */
static void
remember_reroute(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, struct detector_result *res)
{
	struct reroute_plan plan;
	char err[256];

	/* A staple refusal is not about the key: nothing to go around. */
	if (res->verdict == DETECTOR_REJECT && !res->staple_refused &&
	    reroute_plan(res,
	    ctx->cfg.spheres, ctx->cfg.nspheres, host, port, ctx->starttls,
	    ctx->cfg.deadline_ms, &plan, err, sizeof(err)) == 0) {
		plan.log_level = ctx->cfg.log_level;
		plan.log_syslog = ctx->cfg.log_syslog;
		reroute_remember(&plan, ci->spki_sha256);
		res->reroute_planned = !res->revoked;
	}
}

/*
 * Records the verdict of a fresh check under pol, after tolerance =
 * survey had its say (the sightings kept, and this check's, recorded
 * with the verdict).  A tolerated ACCEPT is no quorum's: neither
 * remembered nor in the key history; a staple refusal is not about the
 * key (and would be recalled as a plain REJECT): neither is recorded.
 */
static void
survey_and_record(struct detector *ctx, struct memory *m, const char *host,
    unsigned int port, const struct certinfo *ci,
    const struct cache_policy *pol, int64_t now, struct detector_result *res)
{
	unsigned char seen[DETECTOR_MAX_SPHERES][DETECTOR_SHA256_LEN];
	struct cache_sightings kept;
	size_t nseen = 0;
	enum detector_verdict v;

	if (res->tolerance == DETECTOR_TOLERANCE_SURVEY) {
		nseen = evidence_sightings(res, ci->spki_sha256, seen);
		evidence_weigh_survey(ci->spki_sha256,
		    (const unsigned char (*)[DETECTOR_SHA256_LEN])seen, nseen,
		    memory_sightings(m, host, port, &kept) ? &kept : NULL, pol,
		    ctx->cfg.survey_days, now, res);
	}
	v = res->tolerated != DETECTOR_TOLERANCE_OFF || res->staple_refused ?
	    DETECTOR_UNDECIDED : res->verdict;
	memory_record_seen(m, host, port, ci->spki_sha256, pol, v,
	    evidence_accept_validity(res, ctx->cfg.cache_validity_s, now),
	    (const unsigned char (*)[DETECTOR_SHA256_LEN])seen, nseen);
}

/*
 * Every sphere was silent for this host:port, key and policy a moment ago
 * and its key history decided (backoff.h): decide by the history again
 * without waiting for the spheres, and say so.  1 with *result set, 0 to
 * probe (no back-off, or the history no longer decides), -1 on error.
 */
static int
check_backoff(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, const struct cache_policy *pol,
    const struct cache_history *h, struct detector_result **result)
{
	int64_t t = backoff_now_ms(), since, until;
	int64_t now = (int64_t)(PR_Now() / PR_USEC_PER_SEC);
	struct detector_result *res;
	unsigned int silent;

	if (!backoff_active(host, port, ci->spki_sha256, pol, t, &since,
	    &until, &silent))
		return 0;
	if ((res = result_new(ctx, host)) == NULL)
		return seterr(ctx, "out of memory");
	res->backoff_until = now + (until - t + 999) / 1000;
	if (asprintf((char **)&res->reason, "spheres not asked: every sphere "
	    "failed to answer for %s:%u %.1f s ago (%u time%s in a row); "
	    "they are asked again in %lld s, or at once when a sphere answers "
	    "another check", host, port, (double)(t - since) / 1000.0,
	    silent, silent == 1 ? "" : "s",
	    (long long)((until - t + 999) / 1000)) == -1)
		res->reason = NULL;
	if (res->reason != NULL)
		evidence_weigh_continuity(host, port, ci->spki_sha256, h, pol,
		    ctx->cfg.history_days, now, res);
	if (res->reason != NULL && res->history == DETECTOR_HISTORY_NONE) {
		/* The history no longer decides (its window ended): ask. */
		detector_result_free(res);
		return 0;
	}
	res->ms = (unsigned int)(backoff_now_ms() - t);
	take_notes(ctx, res);
	return finish(ctx, res, result) == -1 ? -1 : 1;
}

/* Did any sphere answer (show a certificate) in this check? */
static int
spheres_answered(const struct detector_result *res)
{
	size_t i;

	for (i = 0; i < res->nspheres; i++) {
		if (res->spheres[i].have_cert)
			return 1;
	}
	return 0;
}

/* check_probe() with the certificate seen directly (leaf) and the direct
 * path (chain and staple), either NULL when not known. */
static int
check_probe_path(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, const struct detector_der *leaf,
    const struct detector_path *direct, struct detector_result **result)
{
	struct memory *m = memory_of(ctx);
	struct cache_record prev;
	int have = evidence_history(m, host, port, &prev);
	struct cache_policy pol;
	struct cache_history h;
	int64_t now, start_ms = backoff_now_ms();
	uint64_t gen = backoff_generation();
	enum detector_tolerance tol;
	int rc, rds, have_pol;

	*result = NULL;
	/* Every sphere silent a moment ago: the history decides again,
	 * unless the direct path staples something (what it says is news)
	 * or must (require_direct_staple: only a probe reads its staple). */
	config_evidence_for(&ctx->cfg, host, &rds, &tol);
	if ((direct == NULL || direct->ocsp.len == 0) && !rds && m != NULL &&
	    memory_policy(&ctx->cfg, host, &pol) == 0 &&
	    memory_history(m, host, port, &h) &&
	    (rc = check_backoff(ctx, host, port, ci, &pol, &h, result)) != 0)
		return rc == 1 ? 0 : -1;
	if (probe_spheres(ctx, host, port, ci, leaf, direct, result) == -1)
		return -1;
	evidence_weigh_history(host, port, ci, have, &prev, *result);
	if (spheres_answered(*result))
		backoff_clear();
	now = (int64_t)(PR_Now() / PR_USEC_PER_SEC);
	have_pol = m != NULL && memory_policy(&ctx->cfg, host, &pol) == 0;
	/* Key continuity: the history as it was before this check (an
	 * UNDECIDED records nothing anyway). */
	if (have_pol && (*result)->verdict == DETECTOR_UNDECIDED &&
	    memory_history(m, host, port, &h)) {
		evidence_weigh_continuity(host, port, ci->spki_sha256, &h,
		    &pol, ctx->cfg.history_days, now, *result);
		if (!spheres_answered(*result))
			backoff_note(host, port, ci->spki_sha256, &pol,
			    (*result)->history, start_ms, gen,
			    backoff_now_ms());
	}
	evidence_require_staple_undecided(host, port, *result);
	if (have_pol)
		survey_and_record(ctx, m, host, port, ci, &pol, now, *result);
	remember_reroute(ctx, host, port, ci, *result);
	take_notes(ctx, *result);
	reroute_note(host, port, *result);
	return 0;
}

int
check_probe(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, struct detector_result **result)
{
	return check_probe_path(ctx, host, port, ci, NULL, NULL, result);
}

/* detector_check() and detector_check_path(): direct is NULL for the
 * former. */
static int
check_with(struct detector *ctx, const char *host, unsigned int port,
    const unsigned char *observed_der, size_t der_len,
    const struct detector_path *direct, struct detector_result **result)
{
	struct detector_der leaf = { observed_der, der_len };
	struct certinfo ci;
	char err[256], name[CHECK_HOST_SIZE];
	int rc;

	if (result != NULL)
		*result = NULL;
	if (check_target(ctx, result != NULL, host, port, name) == -1)
		return -1;
	host = name;
	if (observed_der == NULL || der_len == 0)
		return seterr(ctx, "no certificate given for %s:%u", host,
		    port);
	if (certinfo_read(observed_der, der_len, &ci, err,
	    sizeof(err)) == -1)
		return seterr(ctx, "the certificate given for %s:%u is "
		    "unusable: %s", host, port, err);
	if (exclude_match(&ctx->cfg.exclude, host) != NULL)
		return excluded(ctx, host, port, 0, result);
	/* A direct path that staples anything is always probed: a
	 * remembered ACCEPT must not hide what the staple says now. */
	if ((direct == NULL || direct->ocsp.len == 0) &&
	    (rc = check_recall(ctx, host, port, &ci, result)) != 0)
		return rc == 1 ? 0 : -1;
	return check_probe_path(ctx, host, port, &ci, &leaf, direct, result);
}

int
detector_check(struct detector *ctx, const char *host, unsigned int port,
    const unsigned char *observed_der, size_t der_len,
    struct detector_result **result)
{
	return check_with(ctx, host, port, observed_der, der_len, NULL,
	    result);
}

int
detector_check_path(struct detector *ctx, const char *host,
    unsigned int port, const struct detector_path *direct,
    struct detector_result **result)
{
	if (result != NULL)
		*result = NULL;
	if (direct == NULL || direct->ncerts == 0 || direct->certs == NULL)
		return seterr(ctx, "no direct certificate given for %s:%u",
		    host ? host : "(null)", port);
	return check_with(ctx, host, port, direct->certs[0].data,
	    direct->certs[0].len, direct, result);
}

int
detector_survey(struct detector *ctx, const char *host, unsigned int port,
    struct detector_result **result)
{
	char name[CHECK_HOST_SIZE];

	if (result != NULL)
		*result = NULL;
	if (check_target(ctx, result != NULL, host, port, name) == -1)
		return -1;
	host = name;
	if (exclude_match(&ctx->cfg.exclude, host) != NULL)
		return excluded(ctx, host, port, 1, result);
	return probe_spheres(ctx, host, port, NULL, NULL, NULL, result);
}

/* The cache file, for listing and forgetting. */
static struct cache *
cache_of(struct detector *ctx)
{
	struct memory *m;
	struct cache *c;

	if (!ctx->configured) {
		seterr(ctx, "detector_configure() was not called");
		return NULL;
	}
	if ((m = memory_for(&ctx->cfg)) == NULL) {
		seterr(ctx, "out of memory");
		return NULL;
	}
	if ((c = memory_cache(m, ctx->err, sizeof(ctx->err))) == NULL)
		return NULL;
	return c;
}

struct list_state {
	void (*fn)(void *arg, const struct detector_cache_entry *entry);
	void *arg;
};

static void
list_one(void *arg, const char *key, const struct cache_record *r)
{
	struct list_state *st = arg;
	struct detector_cache_entry e;

	memset(&e, 0, sizeof(e));
	e.key = key;
	if (r == NULL)
		e.malformed = 1;
	else {
		e.verdict = r->verdict;
		memcpy(e.spki_sha256, r->spki, DETECTOR_SHA256_LEN);
		e.first_seen = r->first_seen;
		e.last_verified = r->last_verified;
		e.expires = r->expires;
	}
	st->fn(st->arg, &e);
}

int
detector_cache_list(struct detector *ctx,
    void (*fn)(void *arg, const struct detector_cache_entry *entry),
    void *arg)
{
	struct list_state st = { fn, arg };
	struct cache *c = cache_of(ctx);

	if (c == NULL)
		return -1;
	return cache_list(c, list_one, &st, ctx->err, sizeof(ctx->err));
}

int
detector_cache_forget(struct detector *ctx, const char *host,
    unsigned int port)
{
	struct cache *c = cache_of(ctx);
	char name[CHECK_HOST_SIZE], err[256];

	if (c == NULL)
		return -1;
	if (host == NULL)
		return seterr(ctx, "no host name given");
	if (host_normalise(host, name, sizeof(name), err, sizeof(err)) != -1)
		host = name;
	return cache_forget(c, host, port, ctx->err, sizeof(ctx->err));
}

/* The direct path's address: a literal, or the system resolver's first. */
static int
direct_addr(struct detector *ctx, const char *host, unsigned int port,
    const char *connect_addr, PRNetAddr *addr)
{
	PRAddrInfo *ai;
	const char *name = connect_addr != NULL ? connect_addr : host;

	if (connect_addr != NULL || PR_StringToNetAddr(host, addr) ==
	    PR_SUCCESS) {
		if (PR_StringToNetAddr(name, addr) != PR_SUCCESS)
			return seterr(ctx, "'%s' is not an IP address", name);
	} else {
		ai = PR_GetAddrInfoByName(host, PR_AF_UNSPEC,
		    PR_AI_ADDRCONFIG);
		if (ai == NULL)
			return seterr(ctx, "cannot resolve %s: %s", host,
			    PR_ErrorToString(PR_GetError(),
			    PR_LANGUAGE_I_DEFAULT));
		if (PR_EnumerateAddrInfo(NULL, ai, (PRUint16)port, addr) ==
		    NULL) {
			PR_FreeAddrInfo(ai);
			return seterr(ctx, "%s has no address", host);
		}
		PR_FreeAddrInfo(ai);
	}
	return PR_SetNetAddr(PR_IpAddrNull, PR_NetAddrFamily(addr),
	    (PRUint16)port, addr) == PR_SUCCESS ? 0 :
	    seterr(ctx, "bad port %u", port);
}

int
detector_fetch(struct detector *ctx, const char *host, unsigned int port,
    const char *connect_addr, struct detector_path **out)
{
	struct probe p;
	struct detector_path *path;
	PRNetAddr addr;
	char name[CHECK_HOST_SIZE];

	if (out != NULL)
		*out = NULL;
	if (check_target(ctx, out != NULL, host, port, name) == -1)
		return -1;
	host = name;
	if (direct_addr(ctx, host, port, connect_addr, &addr) == -1)
		return -1;
	if ((path = calloc(1, sizeof(*path))) == NULL)
		return seterr(ctx, "out of memory");
	memset(&p, 0, sizeof(p));
	p.host = host;
	p.port = port;
	p.starttls = ctx->starttls;
	p.start = PR_IntervalNow();
	p.path = path;
	/* One path: both the probe timeout and the deadline bound it. */
	p.deadline = p.start + PR_MillisecondsToInterval(
	    ctx->cfg.probe_timeout_ms < ctx->cfg.deadline_ms ?
	    ctx->cfg.probe_timeout_ms : ctx->cfg.deadline_ms);
	probe_start(&p, &addr, "direct");
	while (p.state != PROBE_DONE) {
		PRIntervalTime now = PR_IntervalNow();
		PRPollDesc pd = { p.fd, probe_poll_flags(&p), 0 };

		if ((PRInt32)(now - p.deadline) >= 0) {
			probe_abandon(&p, DETECTOR_PATH_TIMEOUT, "timed out");
			break;
		}
		if (PR_Poll(&pd, 1, p.deadline - now) < 0) {
			probe_abandon(&p, DETECTOR_PATH_FAILED, "poll failed");
			break;
		}
		if (pd.out_flags != 0)
			probe_advance(&p, pd.out_flags);
	}
	*out = path;
	return 0;
}

void
detector_path_free(struct detector_path *path)
{
	if (path == NULL)
		return;
	path_release(path);
	free(path);
}

/* Rerouting: the context's side (reroute.c does the work). */
int
detector_reroute(struct detector *ctx, const char *host, unsigned int port,
    const unsigned char *observed_der, size_t der_len,
    struct detector_result *result, unsigned int deadline_ms, int *fd)
{
	struct reroute_plan plan;
	struct certinfo ci;
	char name[CHECK_HOST_SIZE], err[2048];
	unsigned int via;
	int s;

	if (fd != NULL)
		*fd = -1;
	if (check_target(ctx, result != NULL && fd != NULL, host, port,
	    name) == -1)
		return -1;
	result->outcome = DETECTOR_OUTCOME_REFUSED;
	if (observed_der == NULL || der_len == 0 || certinfo_read(observed_der,
	    der_len, &ci, err, sizeof(err)) == -1)
		return seterr(ctx, "%s:%u: no usable certificate of the direct "
		    "path given", name, port);
	if (result->nspheres == 0) {
		if (!reroute_recall(name, port, ci.spki_sha256, &plan))
			return seterr(ctx, "%s:%u: cannot reroute: the verdict "
			    "was remembered and no reroute plan is kept for "
			    "this key (check again to find the spheres' key)",
			    name, port);
	} else if (reroute_plan(result, ctx->cfg.spheres, ctx->cfg.nspheres,
	    name, port, ctx->starttls, ctx->cfg.deadline_ms, &plan, err,
	    sizeof(err)) == -1)
		return seterr(ctx, "cannot reroute: %s", err);
	if (deadline_ms != 0)
		plan.deadline_ms = deadline_ms;
	if ((s = reroute_open(&plan, -1, &via, err, sizeof(err))) == -1)
		return seterr(ctx, "%s:%u: cannot reroute through a sphere: %s",
		    name, port, err);
	free((void *)result->rerouted_via);
	if ((result->rerouted_via = strdup(plan.via[via].text)) == NULL) {
		close(s);
		return seterr(ctx, "out of memory");
	}
	memcpy(result->rerouted_spki_sha256, plan.key, DETECTOR_SHA256_LEN);
	*fd = s;
	return 0;
}

int
detector_reroute_verify(struct detector *ctx, struct detector_result *result,
    const unsigned char *der, size_t der_len)
{
	char err[512];

	if (result == NULL || result->rerouted_via == NULL)
		return seterr(ctx, "no reroute to verify");
	if (reroute_verify(result->rerouted_spki_sha256, result->rerouted_via,
	    der, der_len, err, sizeof(err)) == -1) {
		result->outcome = DETECTOR_OUTCOME_REFUSED;
		return seterr(ctx, "%s", err);
	}
	result->outcome = DETECTOR_OUTCOME_REROUTED;
	return 0;
}

const char *
detector_outcome_name(enum detector_outcome p)
{
	switch (p) {
	case DETECTOR_OUTCOME_NONE: return "none";
	case DETECTOR_OUTCOME_ACCEPTED: return "accepted";
	case DETECTOR_OUTCOME_REFUSED: return "refused";
	case DETECTOR_OUTCOME_REROUTED: return "rerouted";
	}
	return "unknown";
}
