/*
 * The back-off while every sphere is silent (backoff.c): how long a
 * history decision stands, for exactly which question, and that any
 * sphere answering ends it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "backoff.h"

static const struct cache_policy pol = { 4, 5, { 1, 2, 3 } };
static unsigned char key[DETECTOR_SHA256_LEN] = { 0xaa };
static unsigned char other[DETECTOR_SHA256_LEN] = { 0xbb };

static int
reset(void **state)
{
	(void)state;
	backoff_clear();
	return 0;
}

/* A check of host:443 that started at start and ended, every sphere
 * silent, at end. */
static void
note(const char *host, const unsigned char *spki,
    const struct cache_policy *p, enum detector_history h, int64_t start,
    int64_t end)
{
	backoff_note(host, 443, spki, p, h, start, backoff_generation(), end);
}

static int
active(const char *host, unsigned int port, const unsigned char *spki,
    const struct cache_policy *p, int64_t now, unsigned int *silent)
{
	int64_t since, until;
	unsigned int s = 0;
	int a = backoff_active(host, port, spki, p, now, &since, &until, &s);

	if (silent != NULL)
		*silent = s;
	return a;
}

static void
test_delays(void **state)
{
	(void)state;
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_NONE, 1), 0);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_KEY_CHANGED, 1),
	    15000);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_KEY_CHANGED, 2),
	    30000);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_KEY_CHANGED, 5),
	    240000);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_KEY_CHANGED, 6),
	    300000);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_KEY_CHANGED, 64),
	    300000);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_ACCEPTED, 1), 5000);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_ACCEPTED, 3), 20000);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_ACCEPTED, 4), 30000);
	assert_int_equal(backoff_delay_ms(DETECTOR_HISTORY_ACCEPTED, 1000),
	    30000);
}

/* Only the same host, port, key and policy, only within the window. */
static void
test_exact_question_only(void **state)
{
	struct cache_policy quorum3 = pol, more = pol;

	(void)state;
	quorum3.quorum = 3;
	more.spheres[0] ^= 1;
	note("a.test", key, &pol, DETECTOR_HISTORY_KEY_CHANGED, 0, 1000);
	assert_true(active("a.test", 443, key, &pol, 1000, NULL));
	assert_true(active("A.TEST", 443, key, &pol, 15999, NULL));
	assert_false(active("a.test", 443, key, &pol, 16000, NULL));
	assert_false(active("a.test", 443, key, &pol, 999, NULL));
	assert_false(active("a.test", 8443, key, &pol, 2000, NULL));
	assert_false(active("b.test", 443, key, &pol, 2000, NULL));
	assert_false(active("a.test", 443, other, &pol, 2000, NULL));
	assert_false(active("a.test", 443, key, &quorum3, 2000, NULL));
	assert_false(active("a.test", 443, key, &more, 2000, NULL));
}

static void
test_nothing_kept_without_a_history_decision(void **state)
{
	(void)state;
	note("a.test", key, &pol, DETECTOR_HISTORY_NONE, 0, 1000);
	assert_false(active("a.test", 443, key, &pol, 1000, NULL));
}

/* Silent again after the window: twice as long; a new key starts over. */
static void
test_doubles_while_silent(void **state)
{
	unsigned int silent;
	int64_t t = 0;
	int i;

	(void)state;
	/* Each check starts as the last back-off ends and takes 3 s. */
	for (i = 1; i <= 7; i++) {
		note("a.test", key, &pol, DETECTOR_HISTORY_KEY_CHANGED, t,
		    t + 3000);
		t += 3000;
		assert_true(active("a.test", 443, key, &pol, t, &silent));
		assert_int_equal(silent, i);
		t += backoff_delay_ms(DETECTOR_HISTORY_KEY_CHANGED, i);
		assert_false(active("a.test", 443, key, &pol, t, NULL));
	}
	note("a.test", other, &pol, DETECTOR_HISTORY_KEY_CHANGED, t, t + 3000);
	t += 3000;
	assert_true(active("a.test", 443, other, &pol, t, &silent));
	assert_int_equal(silent, 1);
	assert_false(active("a.test", 443, key, &pol, t, NULL));
	/* The history now accepts: the short back-off, from the start. */
	note("a.test", other, &pol, DETECTOR_HISTORY_ACCEPTED, t, t + 3000);
	t += 3000;
	assert_true(active("a.test", 443, other, &pol, t + 4999, &silent));
	assert_int_equal(silent, 1);
	assert_false(active("a.test", 443, other, &pol, t + 5000, NULL));
}

static void
test_a_sphere_answering_ends_every_backoff(void **state)
{
	(void)state;
	note("a.test", key, &pol, DETECTOR_HISTORY_KEY_CHANGED, 0, 0);
	note("b.test", key, &pol, DETECTOR_HISTORY_ACCEPTED, 0, 0);
	backoff_clear();
	assert_false(active("a.test", 443, key, &pol, 1, NULL));
	assert_false(active("b.test", 443, key, &pol, 1, NULL));
}

/* Checks that ran side by side (blocking sockets: one check per thread)
 * count once; a check started after a sphere answered another counts not
 * at all; a silent spell long after the last starts over. */
static void
test_concurrent_stale_and_decay(void **state)
{
	uint64_t gen;
	unsigned int silent;
	int64_t until;

	(void)state;
	note("a.test", key, &pol, DETECTOR_HISTORY_KEY_CHANGED, 0, 3000);
	note("a.test", key, &pol, DETECTOR_HISTORY_KEY_CHANGED, 10, 3010);
	note("a.test", key, &pol, DETECTOR_HISTORY_KEY_CHANGED, 20, 3020);
	assert_true(active("a.test", 443, key, &pol, 3020, &silent));
	assert_int_equal(silent, 1);
	assert_false(active("a.test", 443, key, &pol, 18000, NULL));
	/* The next silent spell, right after: twice as long. */
	note("a.test", key, &pol, DETECTOR_HISTORY_KEY_CHANGED, 18000, 21000);
	assert_true(active("a.test", 443, key, &pol, 21000, &silent));
	assert_int_equal(silent, 2);
	until = 21000 + 30000;
	/* Hours later: from the start. */
	note("a.test", key, &pol, DETECTOR_HISTORY_KEY_CHANGED,
	    until + 3600000, until + 3603000);
	assert_true(active("a.test", 443, key, &pol, until + 3603000,
	    &silent));
	assert_int_equal(silent, 1);
	/* A check that began before a sphere answered: nothing kept. */
	backoff_clear();
	gen = backoff_generation() - 1;
	backoff_note("b.test", 443, key, &pol, DETECTOR_HISTORY_KEY_CHANGED, 0,
	    gen, 3000);
	assert_false(active("b.test", 443, key, &pol, 3000, NULL));
}

/* A full table gives up the entry whose back-off ends first. */
static void
test_bounded(void **state)
{
	char host[32];
	int i, kept = 0;

	(void)state;
	for (i = 0; i < BACKOFF_ENTRIES + 10; i++) {
		snprintf(host, sizeof(host), "h%d.test", i);
		note(host, key, &pol, DETECTOR_HISTORY_KEY_CHANGED, 0, i);
	}
	for (i = 0; i < BACKOFF_ENTRIES + 10; i++) {
		snprintf(host, sizeof(host), "h%d.test", i);
		kept += active(host, 443, key, &pol, 100, NULL);
	}
	assert_int_equal(kept, BACKOFF_ENTRIES);
	assert_false(active("h0.test", 443, key, &pol, 100, NULL));
	assert_true(active("h73.test", 443, key, &pol, 100, NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_delays, reset),
		cmocka_unit_test_setup(test_exact_question_only, reset),
		cmocka_unit_test_setup(test_nothing_kept_without_a_history_decision,
		    reset),
		cmocka_unit_test_setup(test_doubles_while_silent, reset),
		cmocka_unit_test_setup(test_a_sphere_answering_ends_every_backoff,
		    reset),
		cmocka_unit_test_setup(test_concurrent_stale_and_decay, reset),
		cmocka_unit_test_setup(test_bounded, reset),
	};
	return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
