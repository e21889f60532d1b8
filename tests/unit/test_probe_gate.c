/*
 * Admission control (probe.h's probe_gate) on a simulated clock: checks
 * beyond the limit wait their turn and all complete; beyond the queue, or
 * when the pace says a check cannot make its deadline, it is refused at
 * once with the note, never after a wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "probe.h"

#define MAXSIM 64

static char why[512];           /* what the gate said last */

/* A check arrives at g: the gate's answer (why: its reason). */
static enum probe_gate_answer
arrive(struct probe_gate *g)
{
	return probe_gate_arrive(g, why, sizeof(why));
}

/* The waiting check at position, left_ms before its deadline, asks again. */
static enum probe_gate_answer
next(struct probe_gate *g, unsigned int position, unsigned int left_ms)
{
	return probe_gate_next(g, position, left_ms, why, sizeof(why));
}

/* One simulated check: when it arrived, started and got its answer. */
struct simcheck {
	int state;              /* 0 not arrived, 1 waiting, 2 running, 3 done,
	                         * 4 refused */
	unsigned int arrived, started, ended;
	char why[512];
};

/*
 * Runs n checks that all arrive at time 0, each needing service_ms once
 * started, through a gate, the way bench/probe_scale's loop does: arrivals
 * first, then the queue from its head, then time moves to the next
 * verdict.  Returns the largest number running at once.
 */
static unsigned int
simulate(struct probe_gate *g, struct simcheck *c, size_t n,
    unsigned int service_ms, unsigned int deadline_ms)
{
	unsigned int now = 0, most = 0, running;
	size_t i, pos;
	int guard;

	for (i = 0; i < n; i++) {
		switch (probe_gate_arrive(g, c[i].why, sizeof(c[i].why))) {
		case PROBE_GATE_START:
			c[i].state = 2;
			break;
		case PROBE_GATE_WAIT:
			c[i].state = 1;
			break;
		case PROBE_GATE_REFUSE:
			c[i].state = 4;
			break;
		}
	}
	for (guard = 0; guard < 10000; guard++) {
		unsigned int next = 0xffffffffu;

		/* The queue, from its head. */
		for (i = 0, pos = 0; i < n; i++) {
			if (c[i].state != 1)
				continue;
			switch (probe_gate_next(g, (unsigned int)pos,
			    now < deadline_ms ? deadline_ms - now : 0,
			    c[i].why, sizeof(c[i].why))) {
			case PROBE_GATE_START:
				c[i].state = 2;
				c[i].started = now;
				break;
			case PROBE_GATE_REFUSE:
				c[i].state = 4;
				c[i].ended = now;
				break;
			case PROBE_GATE_WAIT:
				pos++;
				break;
			}
		}
		for (i = 0, running = 0; i < n; i++) {
			if (c[i].state == 2) {
				running++;
				if (c[i].started + service_ms < next)
					next = c[i].started + service_ms;
			}
		}
		if (running > most)
			most = running;
		if (running == 0)
			break;
		now = next;
		for (i = 0; i < n; i++) {
			if (c[i].state == 2 &&
			    c[i].started + service_ms == now) {
				c[i].state = 3;
				c[i].ended = now;
				probe_gate_done(g, service_ms);
			}
		}
	}
	return most;
}

static size_t
count(const struct simcheck *c, size_t n, int state)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++)
		k += c[i].state == state;
	return k;
}

/* A limit of 2, ten checks at once: never more than 2 run, in arrival
 * order, and all ten get their verdict. */
static void
test_limit_two_all_complete(void **state)
{
	struct probe_gate g;
	struct simcheck c[10];
	size_t i;

	(void)state;
	memset(c, 0, sizeof(c));
	probe_gate_init(&g, 2, 100, 20000);
	assert_int_equal(simulate(&g, c, 10, 100, 20000), 2);
	assert_int_equal(count(c, 10, 3), 10);
	assert_int_equal(g.refused, 0);
	assert_int_equal(g.started, 10);
	assert_int_equal(g.running, 0);
	assert_int_equal(g.waiting, 0);
	for (i = 0; i < 10; i++)
		assert_int_equal(c[i].started, (i / 2) * 100);
}

/* Beyond the queue a check is refused at its arrival, with the note. */
static void
test_overflow_refused_at_once(void **state)
{
	struct probe_gate g;
	struct simcheck c[10];
	size_t i;

	(void)state;
	memset(c, 0, sizeof(c));
	probe_gate_init(&g, 2, 3, 20000);
	simulate(&g, c, 10, 100, 20000);
	assert_int_equal(count(c, 10, 3), 5);
	assert_int_equal(count(c, 10, 4), 5);
	assert_int_equal(g.refused, 5);
	for (i = 5; i < 10; i++) {
		assert_int_equal(c[i].state, 4);
		assert_int_equal(c[i].ended, 0);        /* at once */
		assert_non_null(strstr(c[i].why, PROBE_GATE_NOTE));
		assert_non_null(strstr(c[i].why, "as many as the queue holds"));
	}
}

/*
 * Once the pace is known (400 ms per check, 2 at once, 1,000 ms to each
 * deadline), a check that would get its verdict after its deadline is
 * refused when it arrives, not when the deadline passes; the checks the
 * gate keeps all finish in time.
 */
static void
test_hopeless_refused_early(void **state)
{
	struct probe_gate g;
	struct simcheck c[12];
	size_t i;

	(void)state;
	memset(c, 0, sizeof(c));
	probe_gate_init(&g, 2, 100, 1000);
	/* Learn the pace. */
	assert_int_equal(arrive(&g), PROBE_GATE_START);
	probe_gate_done(&g, 400);
	assert_int_equal(g.service_ms, 400);
	simulate(&g, c, 12, 400, 1000);
	for (i = 0; i < 12; i++) {
		if (c[i].state == 3) {
			assert_true(c[i].ended <= 1000);
			continue;
		}
		assert_int_equal(c[i].state, 4);
		assert_int_equal(c[i].ended, 0);
		assert_non_null(strstr(c[i].why, PROBE_GATE_NOTE));
		assert_non_null(strstr(c[i].why, "after its deadline"));
	}
	/* 2 at once, 400 ms each: two waves fit in 1,000 ms. */
	assert_int_equal(count(c, 12, 3), 4);
	assert_int_equal(count(c, 12, 4), 8);
}

/* A waiting check whose deadline comes closer than the forecast is
 * refused while waiting, long before the deadline itself. */
static void
test_waiting_check_refused_before_deadline(void **state)
{
	struct probe_gate g;

	(void)state;
	probe_gate_init(&g, 1, 10, 1000);
	assert_int_equal(arrive(&g), PROBE_GATE_START);
	probe_gate_done(&g, 300);
	assert_int_equal(arrive(&g), PROBE_GATE_START);
	assert_int_equal(arrive(&g), PROBE_GATE_WAIT);
	/* 900 ms left: 300 ms ahead of it, 300 ms its own: wait. */
	assert_int_equal(next(&g, 0, 900), PROBE_GATE_WAIT);
	/* The running check is slow; 500 ms left: it cannot make it. */
	assert_int_equal(next(&g, 0, 500), PROBE_GATE_REFUSE);
	assert_non_null(strstr(why, PROBE_GATE_NOTE));
	assert_int_equal(g.waiting, 0);
	assert_int_equal(g.running, 1);
}

/* Checks slower than half their deadline bring the cap down; fast ones
 * bring it back up to the limit, never above. */
static void
test_cap_follows_the_pace(void **state)
{
	struct probe_gate g;
	int i;

	(void)state;
	probe_gate_init(&g, 16, 100, 1000);
	assert_int_equal(g.cap, 16);
	for (i = 0; i < 200; i++) {
		(void)arrive(&g);
		probe_gate_done(&g, 900);
	}
	assert_true(g.cap < 4);
	assert_true(g.cap >= 1);
	for (i = 0; i < 2000; i++) {
		(void)arrive(&g);
		probe_gate_done(&g, 50);
	}
	assert_int_equal(g.cap, 16);
}

static void
test_zero_limits_mean_one(void **state)
{
	struct probe_gate g;

	(void)state;
	probe_gate_init(&g, 0, 0, 1000);
	assert_int_equal(arrive(&g), PROBE_GATE_START);
	assert_int_equal(arrive(&g), PROBE_GATE_WAIT);
	assert_int_equal(arrive(&g), PROBE_GATE_REFUSE);
	/* Nobody is told to start out of turn. */
	assert_int_equal(next(&g, 1, 1000), PROBE_GATE_WAIT);
	probe_gate_done(&g, 10);
	assert_int_equal(next(&g, 0, 1000), PROBE_GATE_START);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit_two_all_complete),
		cmocka_unit_test(test_overflow_refused_at_once),
		cmocka_unit_test(test_hopeless_refused_early),
		cmocka_unit_test(test_waiting_check_refused_before_deadline),
		cmocka_unit_test(test_cap_follows_the_pace),
		cmocka_unit_test(test_zero_limits_mean_one),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
