/*
 * What the verdict takes from more than the keys (verdict.c, pure): revoked
 * wins over any key count, missing freshness on the direct path is noted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_revoked_wins),
		cmocka_unit_test(test_direct_missing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
