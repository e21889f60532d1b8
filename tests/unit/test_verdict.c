/*
 * The k-of-n rule, exhaustively for n = 5: every quorum, every split of
 * five spheres into matches, mismatches, failures and still-pending.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "verdict.h"

/* The rule written out independently, the way the issue states it. */
static enum detector_verdict
expected(unsigned int n, unsigned int k, unsigned int m, unsigned int x)
{
	if (m >= k)
		return DETECTOR_ACCEPT;
	if (x >= n - k + 1)
		return DETECTOR_REJECT;
	return DETECTOR_UNDECIDED;
}

static void
test_exhaustive_n5(void **state)
{
	unsigned int n = 5, k, m, x, f, pend, checked = 0;

	(void)state;
	for (k = 1; k <= n; k++)
	for (m = 0; m <= n; m++)
	for (x = 0; m + x <= n; x++)
	for (f = 0; m + x + f <= n; f++) {
		pend = n - m - x - f;
		struct tally t = { n, k, m, x, pend };
		enum detector_verdict v;
		int final = verdict_decide(&t, &v);

		if (pend == 0) {
			/* Everything answered: always final, rule as stated. */
			assert_int_equal(final, 1);
			assert_int_equal(v, expected(n, k, m, x));
			checked++;
			continue;
		}
		/* Final only if no way of answering changes the verdict. */
		int can_change = 0;
		for (unsigned int a = 0; a <= pend; a++)
		for (unsigned int b = 0; a + b <= pend; b++)
			if (expected(n, k, m + a, x + b) != v)
				can_change = 1;
		assert_int_equal(final, !can_change);
		checked++;
	}
	assert_true(checked > 200);
}

/* verdict_decide() decides on t at once, and decides want. */
static void
decides(const struct tally *t, enum detector_verdict want)
{
	enum detector_verdict v;

	assert_int_equal(verdict_decide(t, &v), 1);
	assert_int_equal(v, want);
}

static void
test_one_liar_never_flips_default(void **state)
{
	/* Four honest matches and one lying sphere: ACCEPT. */
	struct tally accept = { 5, 4, 4, 1, 0 };
	/* MITM on the direct path, one lying sphere "agrees": still REJECT. */
	struct tally reject = { 5, 4, 1, 4, 0 };

	(void)state;
	decides(&accept, DETECTOR_ACCEPT);
	decides(&reject, DETECTOR_REJECT);
}

static void
test_failures_are_not_disagreements(void **state)
{
	struct tally t = { 5, 4, 3, 0, 0 };   /* two spheres failed */

	(void)state;
	decides(&t, DETECTOR_UNDECIDED);
	struct tally all_down = { 5, 4, 0, 0, 0 };
	decides(&all_down, DETECTOR_UNDECIDED);
}

static void
test_decides_early(void **state)
{
	enum detector_verdict v;
	struct tally t = { 5, 4, 4, 0, 1 };   /* fifth still in flight */
	struct tally r = { 5, 4, 0, 2, 3 };   /* two disagree already */
	struct tally wait = { 5, 4, 3, 0, 2 };

	(void)state;
	decides(&t, DETECTOR_ACCEPT);
	decides(&r, DETECTOR_REJECT);
	assert_int_equal(verdict_decide(&wait, &v), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exhaustive_n5),
		cmocka_unit_test(test_one_liar_never_flips_default),
		cmocka_unit_test(test_failures_are_not_disagreements),
		cmocka_unit_test(test_decides_early),
	};
	return cmocka_run_group_tests_name("verdict", tests, NULL, NULL);
}
