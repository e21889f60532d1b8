/*
 * What the verdict takes from more than the keys (verdict.c, pure): revoked
 * wins over any key count, missing freshness on the direct path is noted,
 * and every result says where the attack sits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "evidence.h"
#include "staple.h"
#include "verdict.h"

static const struct detector_ocsp none = { DETECTOR_OCSP_NONE, 0, 0, 0, 0,
    0, NULL };
static const struct detector_ocsp good = { DETECTOR_OCSP_GOOD, 1, 0, 0, 0,
    0, NULL };
static const struct detector_ocsp stale = { DETECTOR_OCSP_GOOD, 0, 0, 0, 0,
    0, NULL };
static const struct detector_ocsp revoked = { DETECTOR_OCSP_REVOKED, 1, 0,
    0, 0, 0, NULL };
static const struct detector_ocsp old_revoked = { DETECTOR_OCSP_REVOKED, 0,
    0, 0, 0, 0, NULL };
static const struct detector_ocsp invalid = { DETECTOR_OCSP_INVALID, 0, 0,
    0, 0, 0, "forged" };

static void
test_revoked_wins(void **state)
{
	struct detector_ocsp s[5] = { good, good, good, good, good };
	struct ocsp_weight w;

	(void)state;
	verdict_ocsp(&good, 1, s, 5, &w);
	assert_false(w.revoked);
	assert_false(w.direct_missing);
	/* One sphere's path only. */
	s[3] = revoked;
	verdict_ocsp(&good, 1, s, 5, &w);
	assert_true(w.revoked);
	assert_int_equal(w.revoked_path, 3);
	/* The direct path, with a stale revocation: still revoked. */
	s[3] = good;
	verdict_ocsp(&old_revoked, 1, s, 5, &w);
	assert_true(w.revoked);
	assert_int_equal(w.revoked_path, -1);
	assert_false(w.direct_missing);
	/* An unusable response saying anything is nothing. */
	s[0] = invalid;
	verdict_ocsp(&invalid, 1, s, 5, &w);
	assert_false(w.revoked);
}

static void
test_direct_missing(void **state)
{
	struct detector_ocsp s[3] = { good, none, stale };
	struct ocsp_weight w;

	(void)state;
	verdict_ocsp(&none, 1, s, 3, &w);
	assert_true(w.direct_missing);
	verdict_ocsp(&stale, 1, s, 3, &w);
	assert_true(w.direct_missing);
	verdict_ocsp(&invalid, 1, s, 3, &w);
	assert_true(w.direct_missing);
	verdict_ocsp(&good, 1, s, 3, &w);
	assert_false(w.direct_missing);
	/* The direct staple not known (detector_check): nothing to say. */
	verdict_ocsp(&none, 0, s, 3, &w);
	assert_false(w.direct_missing);
	/* Spheres only stale or none: nothing withheld. */
	s[0] = none;
	verdict_ocsp(&none, 1, s, 3, &w);
	assert_false(w.direct_missing);
}

static void
set(struct detector_path *p, const char *via, enum detector_path_status st,
    unsigned char key)
{
	memset(p, 0, sizeof(*p));
	p->via = via;
	p->status = st;
	memset(p->spki_sha256, key, DETECTOR_SHA256_LEN);
}

static enum detector_locality
locate(const struct detector_path *p, size_t n, const char *want1,
    const char *want2)
{
	char *detail;
	enum detector_locality l = verdict_locality(p, n, &detail);

	assert_non_null(detail);
	if (want1 && strstr(detail, want1) == NULL)
		fail_msg("'%s' lacks '%s'", detail, want1);
	if (want2 && strstr(detail, want2) == NULL)
		fail_msg("'%s' lacks '%s'", detail, want2);
	free(detail);
	return l;
}

static void
test_locality(void **state)
{
	struct detector_path p[5];
	size_t i;

	(void)state;
	for (i = 0; i < 5; i++)
		set(&p[i], "s", DETECTOR_PATH_MATCH, 1);
	p[0].via = "A";
	p[1].via = "B";
	p[2].via = "C";
	p[3].via = "D";
	p[4].via = "E";
	p[4].status = DETECTOR_PATH_KEY_MATCH;
	assert_int_equal(locate(p, 5, "all 5", "detector-monitor"),
	    DETECTOR_LOCALITY_CONSISTENT);
	/* Every sphere sees one other key: the user's own path. */
	for (i = 0; i < 5; i++)
		set(&p[i], p[i].via, DETECTOR_PATH_MISMATCH, 2);
	p[4].status = DETECTOR_PATH_TIMEOUT;
	assert_int_equal(locate(p, 5, "all 4", "own path"),
	    DETECTOR_LOCALITY_LOCAL_PATH);
	/* One lying exit: regional, named. */
	for (i = 0; i < 5; i++)
		set(&p[i], p[i].via, DETECTOR_PATH_MATCH, 1);
	set(&p[2], "C", DETECTOR_PATH_MISMATCH, 7);
	assert_int_equal(locate(p, 5, "A, B, D and E see the direct",
	    "C sees another key (07070707...)"), DETECTOR_LOCALITY_REGIONAL);
	/* The direct path alone, and the spheres split in two. */
	set(&p[0], "A", DETECTOR_PATH_MISMATCH, 8);
	set(&p[1], "B", DETECTOR_PATH_MISMATCH, 8);
	set(&p[3], "D", DETECTOR_PATH_MISMATCH, 7);
	set(&p[4], "E", DETECTOR_PATH_FAILED, 0);
	assert_int_equal(locate(p, 5, "A and B see another key (0808",
	    "C and D see another key (0707"), DETECTOR_LOCALITY_REGIONAL);
	/* Nobody answered. */
	for (i = 0; i < 5; i++)
		set(&p[i], "x", DETECTOR_PATH_TIMEOUT, 0);
	assert_int_equal(locate(p, 5, "cannot be told", NULL),
	    DETECTOR_LOCALITY_UNKNOWN);
	assert_int_equal(locate(p, 0, "cannot be told", NULL),
	    DETECTOR_LOCALITY_UNKNOWN);
}

/* Security review M2: a cached ACCEPT lasts no longer than the fresh good
 * staples it weighed. */
static void
test_accept_validity(void **state)
{
	const int64_t now = 1800000000;
	struct detector_ocsp sph[3];
	struct detector_result r;

	(void)state;
	memset(&r, 0, sizeof(r));
	memset(sph, 0, sizeof(sph));
	r.nspheres = 3;
	r.ocsp_spheres = sph;
	/* No staple: the configured validity. */
	assert_int_equal(evidence_accept_validity(&r, 86400, now), 86400);
	/* A good one with nextUpdate in an hour. */
	sph[1] = good;
	sph[1].next_update = now + 3600;
	assert_int_equal(evidence_accept_validity(&r, 86400, now), 3600);
	/* The direct one, without nextUpdate: thisUpdate + a day. */
	r.ocsp_direct = good;
	r.ocsp_direct.this_update = now - 86400 + 600;
	assert_int_equal(evidence_accept_validity(&r, 86400, now), 600);
	/* Longer than the validity: the validity. */
	r.ocsp_direct = none;
	sph[1].next_update = now + 7 * 86400;
	assert_int_equal(evidence_accept_validity(&r, 86400, now), 86400);
	/* Stale, invalid and unknown staples bound nothing. */
	sph[0] = stale;
	sph[0].next_update = now - 10;
	sph[2] = invalid;
	sph[2].next_update = now + 5;
	assert_int_equal(evidence_accept_validity(&r, 86400, now), 86400);
	/* Never below a second. */
	sph[1].next_update = now;
	assert_int_equal(evidence_accept_validity(&r, 86400, now), 1);
}

/*
 * Issue 14, key continuity: an UNDECIDED whose key a quorum confirmed
 * within the window is accepted by history, one whose key differs is a
 * key change; the verdict stays UNDECIDED and the reason says which, with
 * the date.  No history, another verdict, or a window of 0: untouched.
 */
/* An UNDECIDED with reason, weighed against h (a.test:443, quorum 4). */
static struct detector_result
weigh(const struct cache_history *h, const unsigned char *spki,
    unsigned int days, int64_t now, const char *reason)
{
	struct cache_policy q4 = { 4, 5, { 0 } };
	struct detector_result r;

	memset(&r, 0, sizeof(r));
	r.verdict = DETECTOR_UNDECIDED;
	r.reason = reason ? strdup(reason) : NULL;
	evidence_weigh_continuity("a.test", 443, spki, h, &q4, days, now, &r);
	return r;
}

static void
test_continuity(void **state)
{
	struct cache_policy q4 = { 4, 5, { 0 } };
	struct cache_history h;
	struct detector_result r;
	unsigned char real[DETECTOR_SHA256_LEN], rogue[DETECTOR_SHA256_LEN];
	const int64_t day = 86400, t0 = 1764720000;   /* 2025-12-03 00:00 */
	size_t i;

	(void)state;
	memset(real, 1, sizeof(real));
	memset(rogue, 2, sizeof(rogue));
	memset(&h, 0, sizeof(h));
	cache_history_confirm(&h, real, &q4, (uint32_t)t0);

	/* The real key: accepted by history; another: a key change. */
	static const struct {
		unsigned char fill;
		enum detector_history want;
		const char *reason;
	} cases[] = {
		{ 1, DETECTOR_HISTORY_ACCEPTED, "r; accepted by history "
		    "(confirmed by a quorum on 2025-12-03 00:00:00 UTC)" },
		{ 2, DETECTOR_HISTORY_KEY_CHANGED, "r; the key changed and no "
		    "quorum could confirm the new one (the key of a.test:443 "
		    "was last confirmed by a quorum on 2025-12-03 00:00:00 "
		    "UTC, within history_days = 30)" },
	};
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char spki[DETECTOR_SHA256_LEN];

		memset(spki, cases[i].fill, sizeof(spki));
		r = weigh(&h, spki, 30, t0 + day, "r");
		assert_int_equal(r.verdict, DETECTOR_UNDECIDED);
		assert_int_equal(r.history, cases[i].want);
		assert_int_equal(r.history_confirmed, t0);
		assert_string_equal(r.reason, cases[i].reason);
		free((void *)r.reason);
	}

	/* Outside the window, off, or not an UNDECIDED: nothing. */
	r = weigh(&h, rogue, 30, t0 + 31 * day, NULL);
	assert_int_equal(r.history, DETECTOR_HISTORY_NONE);
	r = weigh(&h, rogue, 0, t0, NULL);
	assert_int_equal(r.history, DETECTOR_HISTORY_NONE);
	assert_null(r.reason);
	r.verdict = DETECTOR_REJECT;
	evidence_weigh_continuity("a.test", 443, rogue, &h, &q4, 30, t0, &r);
	assert_int_equal(r.history, DETECTOR_HISTORY_NONE);
	r.verdict = DETECTOR_ACCEPT;
	evidence_weigh_continuity("a.test", 443, real, &h, &q4, 30, t0, &r);
	assert_int_equal(r.history, DETECTOR_HISTORY_NONE);
	assert_string_equal(detector_history_name(DETECTOR_HISTORY_ACCEPTED),
	    "accepted-by-history");
	assert_string_equal(detector_history_name(
	    DETECTOR_HISTORY_KEY_CHANGED), "key-changed");
	assert_string_equal(detector_history_name(DETECTOR_HISTORY_NONE),
	    "none");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_revoked_wins),
		cmocka_unit_test(test_direct_missing),
		cmocka_unit_test(test_locality),
		cmocka_unit_test(test_accept_validity),
		cmocka_unit_test(test_continuity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
