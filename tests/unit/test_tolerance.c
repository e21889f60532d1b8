/*
 * A site's evidence options (issue 17): require_direct_staple, tolerance
 * = same-issuer and tolerance = survey.  The decisions (evidence.c), the
 * sightings they keep (cache.c's codec, memo.c), and the [site] keys
 * (config.c).  same-issuer is checked with real signatures: the PKI and
 * responses of tests/testworld/ocsp.py (openssl CLI, independent of the
 * code under test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "cache.h"
#include "config.h"
#include "evidence.h"
#include "fixture.h"
#include "memo.h"

static char dir[] = "/tmp/detector-test-tolerance-XXXXXX";
static unsigned char leaf[4096], ca[4096], other[4096], evil[4096],
    good[16384], stale[16384], otherleaf[16384];
static size_t leaf_len, ca_len, other_len, evil_len, good_len, stale_len,
    otherleaf_len;

static int
setup(void **state)
{
	(void)state;
	if (fixture_setup(dir, FIXTURE_NSS) == -1 ||
	    fixture_testworld("ocsp.py", dir) == -1)
		return -1;
	leaf_len = fixture_slurp(dir, "leaf.cder", leaf, sizeof(leaf));
	ca_len = fixture_slurp(dir, "ca.cder", ca, sizeof(ca));
	other_len = fixture_slurp(dir, "other.cder", other, sizeof(other));
	evil_len = fixture_slurp(dir, "evil.cder", evil, sizeof(evil));
	good_len = fixture_slurp(dir, "good.der", good, sizeof(good));
	stale_len = fixture_slurp(dir, "stale.der", stale, sizeof(stale));
	otherleaf_len = fixture_slurp(dir, "otherleaf.der", otherleaf,
	    sizeof(otherleaf));
	return leaf_len && ca_len && other_len && evil_len && good_len &&
	    stale_len && otherleaf_len ? 0 : -1;
}

/* A result of n spheres, all with status st and key fill, under
 * quorum k, verdict v, with a reason. */
static void
result(struct detector_result *r, struct detector_path *p, size_t n,
    unsigned int k, enum detector_verdict v, enum detector_path_status st,
    unsigned char fill)
{
	size_t i;

	memset(r, 0, sizeof(*r));
	memset(p, 0, n * sizeof(*p));
	for (i = 0; i < n; i++) {
		p[i].via = "127.0.0.1:9160";
		p[i].status = st;
		memset(p[i].spki_sha256, fill, DETECTOR_SHA256_LEN);
	}
	r->spheres = p;
	r->nspheres = n;
	r->quorum = k;
	r->verdict = v;
	r->reason = strdup("r");
	snprintf(r->policy.site, sizeof(r->policy.site), "a.test");
}

static void
test_require_direct_staple(void **state)
{
	struct detector_path p[5];
	struct detector_result r;

	(void)state;
	/* Off: only noted. */
	result(&r, p, 5, 4, DETECTOR_ACCEPT, DETECTOR_PATH_MATCH, 1);
	r.ocsp_direct_missing = 1;
	evidence_require_staple("a.test", 443, &r);
	assert_int_equal(r.verdict, DETECTOR_ACCEPT);
	assert_false(r.staple_refused);
	/* On: an ACCEPT and an UNDECIDED become a REJECT of its own. */
	r.require_direct_staple = 1;
	evidence_require_staple("a.test", 443, &r);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_true(r.staple_refused);
	assert_string_equal(r.reason, "refused by require_direct_staple = yes "
	    "([site a.test]): the spheres' paths staple a fresh good OCSP "
	    "response for a.test:443 and the direct path staples none: r");
	free((void *)r.reason);
	result(&r, p, 5, 4, DETECTOR_UNDECIDED, DETECTOR_PATH_TIMEOUT, 1);
	r.require_direct_staple = r.ocsp_direct_missing = 1;
	r.ocsp_direct.status = DETECTOR_OCSP_GOOD;      /* stale */
	evidence_require_staple("a.test", 443, &r);
	assert_true(r.staple_refused);
	assert_non_null(strstr(r.reason, "direct path a stale one"));
	free((void *)r.reason);
	/* Nothing missing, a REJECT already, a revoked certificate: left. */
	result(&r, p, 5, 4, DETECTOR_ACCEPT, DETECTOR_PATH_MATCH, 1);
	r.require_direct_staple = 1;
	evidence_require_staple("a.test", 443, &r);
	assert_false(r.staple_refused);
	r.verdict = DETECTOR_REJECT;
	r.ocsp_direct_missing = 1;
	evidence_require_staple("a.test", 443, &r);
	assert_false(r.staple_refused);
	r.verdict = DETECTOR_ACCEPT;
	r.revoked = 1;
	evidence_require_staple("a.test", 443, &r);
	assert_false(r.staple_refused);
	assert_string_equal(r.reason, "r");
	free((void *)r.reason);
}

static void
test_sightings_of_a_check(void **state)
{
	unsigned char out[DETECTOR_MAX_SPHERES][DETECTOR_SHA256_LEN];
	unsigned char direct[DETECTOR_SHA256_LEN];
	struct detector_path p[5];
	struct detector_result r;

	(void)state;
	memset(direct, 9, sizeof(direct));
	/* Four agree on key 1, one lies with key 2: 2 is contradicted. */
	result(&r, p, 5, 4, DETECTOR_REJECT, DETECTOR_PATH_MISMATCH, 1);
	memset(p[4].spki_sha256, 2, DETECTOR_SHA256_LEN);
	assert_int_equal(evidence_sightings(&r, direct, out), 1);
	assert_int_equal(out[0][0], 1);
	/* Three and two: neither reaches the quorum, both are sightings. */
	memset(p[3].spki_sha256, 2, DETECTOR_SHA256_LEN);
	assert_int_equal(evidence_sightings(&r, direct, out), 2);
	/* A match is the direct key; one path alone is no sighting (one
	 * exit, one possible liar). */
	p[0].status = DETECTOR_PATH_MATCH;
	assert_int_equal(evidence_sightings(&r, direct, out), 2);
	assert_int_equal(out[0][0], 1);
	assert_int_equal(out[1][0], 2);
	p[1].status = DETECTOR_PATH_MATCH;
	assert_int_equal(evidence_sightings(&r, direct, out), 2);
	assert_int_equal(out[0][0], 9);
	assert_int_equal(out[1][0], 2);
	/* One lying sphere and one blocked, the other three honest: no
	 * quorum contradicts the liar, but not every sphere answered, so
	 * nothing is a sighting (security review of issue 17, M2). */
	free((void *)r.reason);
	result(&r, p, 5, 4, DETECTOR_REJECT, DETECTOR_PATH_MISMATCH, 1);
	memset(p[0].spki_sha256, 2, DETECTOR_SHA256_LEN);
	p[1].status = DETECTOR_PATH_TIMEOUT;
	assert_int_equal(evidence_sightings(&r, direct, out), 0);
	/* Fewer than a quorum answered (the rest blocked): none at all, so
	 * blocking spheres cannot let one path's key in. */
	p[0].status = p[1].status = DETECTOR_PATH_TIMEOUT;
	assert_int_equal(evidence_sightings(&r, direct, out), 0);
	free((void *)r.reason);
}

static void
test_survey(void **state)
{
	struct cache_policy pol = { 4, 5, { 7 } }, others = { 4, 5, { 8 } };
	unsigned char seen[1][DETECTOR_SHA256_LEN], key[DETECTOR_SHA256_LEN];
	struct cache_sightings s;
	struct detector_path p[5];
	struct detector_result r;
	const int64_t day = 86400, t0 = 1764720000;   /* 2025-12-03 00:00 */

	(void)state;
	memset(key, 5, sizeof(key));
	memset(&s, 0, sizeof(s));
	cache_sightings_add(&s, key, &pol, (uint32_t)t0);
	/* Off: nothing. */
	result(&r, p, 5, 4, DETECTOR_REJECT, DETECTOR_PATH_MISMATCH, 1);
	evidence_weigh_survey(key, NULL, 0, &s, &pol, 7, t0 + day, &r);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	/* Seen two days ago within 7: tolerated, and said. */
	r.tolerance = DETECTOR_TOLERANCE_SURVEY;
	evidence_weigh_survey(key, NULL, 0, &s, &pol, 7, t0 + 2 * day, &r);
	assert_int_equal(r.verdict, DETECTOR_ACCEPT);
	assert_int_equal(r.tolerated, DETECTOR_TOLERANCE_SURVEY);
	assert_string_equal(r.reason, "tolerated (tolerance = survey, [site "
	    "a.test]): a sphere saw this key on 2025-12-03 00:00:00 UTC, "
	    "within survey_days = 7, and no quorum saw another then; the "
	    "spheres did not confirm this key: r");
	free((void *)r.reason);
	/* Outside the window; through other spheres; another key; a
	 * revoked certificate; with require_direct_staple and no staple. */
	result(&r, p, 5, 4, DETECTOR_REJECT, DETECTOR_PATH_MISMATCH, 1);
	r.tolerance = DETECTOR_TOLERANCE_SURVEY;
	evidence_weigh_survey(key, NULL, 0, &s, &pol, 7, t0 + 8 * day, &r);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	evidence_weigh_survey(key, NULL, 0, &s, &others, 7, t0, &r);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	evidence_weigh_survey(p[0].spki_sha256, NULL, 0, &s, &pol, 7, t0, &r);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	r.revoked = 1;
	evidence_weigh_survey(key, NULL, 0, &s, &pol, 7, t0, &r);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	r.revoked = 0;
	r.require_direct_staple = 1;
	evidence_weigh_survey(key, NULL, 0, &s, &pol, 7, t0, &r);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_int_equal(r.tolerated, DETECTOR_TOLERANCE_OFF);
	r.require_direct_staple = 0;
	/* Seen now, nothing kept. */
	memcpy(seen[0], key, sizeof(key));
	evidence_weigh_survey(key, (const unsigned char (*)[32])seen, 1, NULL,
	    &pol, 7, t0, &r);
	assert_int_equal(r.tolerated, DETECTOR_TOLERANCE_SURVEY);
	assert_non_null(strstr(r.reason, "a sphere sees this key now"));
	free((void *)r.reason);
}

static void
test_sightings_codec(void **state)
{
	unsigned char buf[CACHE_SIGHTINGS_LEN(CACHE_SIGHTINGS_MAX)];
	struct cache_policy pol = { 4, 5, { 7 } };
	struct cache_sightings s, back;
	unsigned char key[DETECTOR_SHA256_LEN];
	uint32_t when;
	size_t len;
	unsigned int i;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(cache_sightings_encode(&s, buf), 0);
	/* Bounded: 20 keys keep the 16 seen last, newest first. */
	for (i = 0; i < 20; i++) {
		memset(key, (int)i + 1, sizeof(key));
		cache_sightings_add(&s, key, &pol, 1000 + i);
	}
	assert_int_equal(s.n, CACHE_SIGHTINGS_MAX);
	assert_int_equal(s.e[0].last_seen, 1019);
	assert_int_equal(s.e[15].last_seen, 1004);
	memset(key, 1, sizeof(key));
	assert_false(cache_sightings_judge(&s, key, &pol, 1, 1019, &when));
	memset(key, 20, sizeof(key));
	assert_true(cache_sightings_judge(&s, key, &pol, 1, 1019, &when));
	assert_int_equal(when, 1019);
	/* Refreshing a key keeps its first sighting and moves it up. */
	memset(key, 10, sizeof(key));
	cache_sightings_add(&s, key, &pol, 2000);
	assert_int_equal(s.n, CACHE_SIGHTINGS_MAX);
	assert_int_equal(s.e[0].first_seen, 1009);
	assert_int_equal(s.e[0].last_seen, 2000);
	/* Round trip, exactly. */
	len = cache_sightings_encode(&s, buf);
	assert_int_equal(len, CACHE_SIGHTINGS_LEN(16));
	assert_int_equal(cache_sightings_decode(buf, len, &back), 0);
	assert_memory_equal(&back, &s, sizeof(s));
	/* Strict: length, version, padding, order, count, duplicates. */
	assert_int_equal(cache_sightings_decode(buf, len - 1, &back), -1);
	assert_int_equal(back.n, 0);
	buf[0] = 2;
	assert_int_equal(cache_sightings_decode(buf, len, &back), -1);
	buf[0] = 1;
	buf[4 + 41] = 1;
	assert_int_equal(cache_sightings_decode(buf, len, &back), -1);
	buf[4 + 41] = 0;
	buf[4 + 40] = 0;                /* no spheres */
	assert_int_equal(cache_sightings_decode(buf, len, &back), -1);
	buf[4 + 40] = 5;
	memcpy(buf + 4 + 64, buf + 4, 64);      /* the same key twice */
	assert_int_equal(cache_sightings_decode(buf, len, &back), -1);
	len = cache_sightings_encode(&s, buf);
	memset(buf + 4 + 64 + 36, 0xff, 4);     /* newer than the first */
	assert_int_equal(cache_sightings_decode(buf, len, &back), -1);
	len = cache_sightings_encode(&s, buf);
	memset(buf + 4 + 36, 0, 4);     /* seen last before first */
	assert_int_equal(cache_sightings_decode(buf, len, &back), -1);
	buf[1] = 17;                    /* more than kept */
	assert_int_equal(cache_sightings_decode(buf, len, &back), -1);
	/* A sighting dated after now (clock set back) counts as now. */
	memset(&s, 0, sizeof(s));
	cache_sightings_add(&s, key, &pol, 5000);
	assert_true(cache_sightings_judge(&s, key, &pol, 1, 100, &when));
	assert_int_equal(when, 100);
	assert_false(cache_sightings_judge(&s, key, &pol, 0, 5000, &when));
}

static void
test_memo_sightings(void **state)
{
	static struct memo m;
	struct cache_policy pol = { 4, 5, { 7 } };
	unsigned char seen[2][DETECTOR_SHA256_LEN];
	struct cache_sightings s;
	char host[32];
	unsigned int i;

	(void)state;
	memset(seen, 3, sizeof(seen));
	memset(seen[1], 4, DETECTOR_SHA256_LEN);
	assert_false(memo_sightings(&m, "a.test", 443, &s));
	memo_sight(&m, "A.test", 443, (const unsigned char (*)[32])seen, 2,
	    &pol, 1000);
	assert_true(memo_sightings(&m, "a.test", 443, &s));
	assert_int_equal(s.n, 2);
	assert_false(memo_sightings(&m, "a.test", 444, &s));
	/* Bounded: more sites than slots push out the one seen longest
	 * ago. */
	for (i = 0; i < MEMO_SIGHTINGS; i++) {
		snprintf(host, sizeof(host), "h%u.test", i);
		memo_sight(&m, host, 443, (const unsigned char (*)[32])seen, 1,
		    &pol, 2000 + i);
	}
	assert_false(memo_sightings(&m, "a.test", 443, &s));
	assert_true(memo_sightings(&m, "h0.test", 443, &s));
}

static void
test_config_keys(void **state)
{
	static const char text[] =
	    "survey_days = 3\n"
	    "[site a.test]\ntolerance = same-issuer\n"
	    "[site www.a.test]\nrequire_direct_staple = yes\n"
	    "[site b.test]\ntolerance = survey\nrequire_direct_staple = no\n";
	static const struct {
		const char *text, *error;
	} bad[] = {
		{ "[site a.test]\ntolerance = any\n", "'any' is not one of "
		    "off, same-issuer, survey" },
		{ "[site a.test]\nrequire_direct_staple = maybe\n",
		    "neither 'yes' nor 'no'" },
		{ "[site a.test]\ntolerance = off\ntolerance = survey\n",
		    "set twice in [site a.test] (lines 2 and 3)" },
		{ "survey_days = 0\n", "from 1 to 3650" },
		{ "tolerance = survey\n", "unknown key" },
		{ "[site a.test]\ntolerate = survey\n", "known: quorum, "
		    "on_undecided, on_mitm, require_direct_staple, tolerance" },
	};
	struct detector_config *cfg = detector_config_new();
	enum detector_tolerance t;
	int req;
	size_t i;

	(void)state;
	assert_non_null(cfg);
	assert_int_equal(cfg->survey_days, DETECTOR_DEFAULT_SURVEY_DAYS);
	config_evidence_for(cfg, "a.test", &req, &t);
	assert_int_equal(req, 0);
	assert_int_equal(t, DETECTOR_TOLERANCE_OFF);
	assert_int_equal(config_load_string(cfg, text, strlen(text), "t"), 0);
	assert_int_equal(cfg->survey_days, 3);
	/* Each from the most specific section that sets it. */
	config_evidence_for(cfg, "www.a.test", &req, &t);
	assert_int_equal(req, 1);
	assert_int_equal(t, DETECTOR_TOLERANCE_SAME_ISSUER);
	config_evidence_for(cfg, "a.test", &req, &t);
	assert_int_equal(req, 0);
	config_evidence_for(cfg, "b.test", &req, &t);
	assert_int_equal(t, DETECTOR_TOLERANCE_SURVEY);
	config_evidence_for(cfg, "c.test", &req, &t);
	assert_int_equal(t, DETECTOR_TOLERANCE_OFF);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct detector_config *c = detector_config_new();

		assert_int_equal(config_load_string(c, bad[i].text,
		    strlen(bad[i].text), "t"), -1);
		if (strstr(detector_config_error(c), bad[i].error) == NULL)
			fail_msg("'%s' lacks '%s'", detector_config_error(c),
			    bad[i].error);
		detector_config_free(c);
	}
	detector_config_free(cfg);
	assert_string_equal(detector_tolerance_name(
	    DETECTOR_TOLERANCE_SAME_ISSUER), "same-issuer");
}

/* A same-issuer check of the direct certificate d (with staple st)
 * against n spheres that each saw a MISMATCH showing sl with the chain
 * [sl, issuer]. */
static struct detector_result
same_issuer(const unsigned char *d, size_t dlen, const unsigned char *st,
    size_t stlen, const unsigned char *sl, size_t sllen,
    const unsigned char *issuer, size_t ilen, size_t n)
{
	static struct detector_path p[5];
	static struct detector_der chain[2];
	struct detector_der leaf_der = { d, dlen };
	struct detector_path direct;
	struct detector_result r;
	size_t i;

	chain[0].data = sl;
	chain[0].len = sllen;
	chain[1].data = issuer;
	chain[1].len = ilen;
	result(&r, p, 5, 4, DETECTOR_REJECT, DETECTOR_PATH_TIMEOUT, 1);
	for (i = 0; i < n; i++) {
		p[i].status = DETECTOR_PATH_MISMATCH;
		p[i].ncerts = 2;
		p[i].certs = chain;
	}
	memset(&direct, 0, sizeof(direct));
	direct.ocsp.data = st;
	direct.ocsp.len = stlen;
	r.tolerance = DETECTOR_TOLERANCE_SAME_ISSUER;
	evidence_same_issuer("a.test", 443, &leaf_der, &direct, &r);
	return r;
}

static void
assert_reason(struct detector_result *r, const char *want)
{
	if (strstr(r->reason, want) == NULL)
		fail_msg("'%s' lacks '%s'", r->reason, want);
	free((void *)r->reason);
}

static void
test_same_issuer(void **state)
{
	struct detector_result r;

	(void)state;
	/* Four spheres show a certificate with the subject, from the CA's
	 * key in their own chain; the direct staple is the CA's, fresh. */
	r = same_issuer(leaf, leaf_len, good, good_len, leaf, leaf_len, ca,
	    ca_len, 4);
	assert_int_equal(r.verdict, DETECTOR_ACCEPT);
	assert_int_equal(r.tolerated, DETECTOR_TOLERANCE_SAME_ISSUER);
	assert_reason(&r, "tolerated (tolerance = same-issuer, [site a.test]): "
	    "4 of 5 spheres see a certificate with the same subject");
	/* Three: under the quorum. */
	r = same_issuer(leaf, leaf_len, good, good_len, leaf, leaf_len, ca,
	    ca_len, 3);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_reason(&r, "3 of 5 spheres vouch");
	/* The spheres' chain carries the look-alike CA (the CA's name,
	 * another key): its key verifies neither leaf. */
	r = same_issuer(leaf, leaf_len, good, good_len, leaf, leaf_len, evil,
	    evil_len, 5);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_reason(&r, "0 of 5 spheres vouch");
	/* Another subject (other.test) from the same CA. */
	r = same_issuer(other, other_len, otherleaf, otherleaf_len, leaf,
	    leaf_len, ca, ca_len, 5);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_reason(&r, "0 of 5 spheres vouch");
	/* No staple, a stale one, one about another certificate. */
	r = same_issuer(leaf, leaf_len, NULL, 0, leaf, leaf_len, ca, ca_len, 5);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_reason(&r, "the direct path staples no OCSP response");
	r = same_issuer(leaf, leaf_len, stale, stale_len, leaf, leaf_len, ca,
	    ca_len, 5);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_reason(&r, "is stale, good");
	r = same_issuer(leaf, leaf_len, otherleaf, otherleaf_len, leaf,
	    leaf_len, ca, ca_len, 5);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_reason(&r, "not one the spheres' issuing key signed");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_require_direct_staple),
		cmocka_unit_test(test_sightings_of_a_check),
		cmocka_unit_test(test_survey),
		cmocka_unit_test(test_sightings_codec),
		cmocka_unit_test(test_memo_sightings),
		cmocka_unit_test(test_config_keys),
		cmocka_unit_test(test_same_issuer),
	};

	return cmocka_run_group_tests(tests, setup, fixture_teardown);
}
