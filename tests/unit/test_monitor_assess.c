/*
 * detector-monitor's pure logic: one cycle against the expected keys and
 * the history (assess.c), and the state file's round trip (history.c).
 * The monitor is a program, not part of libdetector: the test links its
 * archive (build/libdetector-monitor.a).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../detector/monitor/monitor.h"

#define A 0xA1
#define B 0xB2
#define R 0xEE   /* a rogue key */
#define S 0xE5   /* a second rogue key */

static struct mon_service svc;
static struct mon_svc_state ss;
static int64_t now;

static void
setup_service(const unsigned char *keys, size_t n)
{
	size_t i;

	memset(&svc, 0, sizeof(svc));
	snprintf(svc.name, sizeof(svc.name), "web");
	snprintf(svc.host, sizeof(svc.host), "server.test");
	for (i = 0; i < n; i++)
		memset(svc.expected[svc.nexpected++], keys[i], MON_KEY_LEN);
	memset(&ss, 0, sizeof(ss));
	now = 1000;
}

/* One cycle: keys[i] is what path i saw (0: down); path 0 is direct. */
static void
cycle(const unsigned char *keys, size_t n, unsigned int down_after,
    struct mon_assessment *a)
{
	struct mon_observation obs;
	size_t i;

	memset(&obs, 0, sizeof(obs));
	obs.now = now;     /* the same second every time: order by cycle */
	for (i = 0; i < n; i++) {
		struct mon_obs_path *p = &obs.paths[obs.npaths++];
		if (i == 0)
			snprintf(p->via, sizeof(p->via), "direct");
		else
			snprintf(p->via, sizeof(p->via), "127.0.0.1:%zu",
			    9160 + i);
		p->direct = i == 0;
		p->ok = keys[i] != 0;
		p->error = p->ok ? NULL : "refused";
		memset(p->spki, keys[i], MON_KEY_LEN);
	}
	assess(&svc, down_after, &ss, &obs, a);
}

static int
nevents(const struct mon_assessment *a)
{
	int ev, n = 0;

	for (ev = 0; ev < MON_EV_COUNT; ev++)
		n += a->events[ev];
	return n;
}

static void
test_rogue_alerts_once_then_recovers(void **state)
{
	const unsigned char exp[] = { A };
	const unsigned char good[] = { A, A, A, A };
	const unsigned char rogue[] = { R, R, R, R };
	struct mon_assessment a;
	int i;

	(void)state;
	setup_service(exp, 1);
	cycle(good, 4, 1, &a);
	assert_int_equal(a.status, MON_OK);
	assert_int_equal(nevents(&a), 0);
	for (i = 0; i < 3; i++) {
		cycle(rogue, 4, 1, &a);
		assert_int_equal(a.status, MON_CRITICAL);
		assert_int_equal(a.unexpected.n, 1);
		assert_int_equal(a.events[MON_EV_UNEXPECTED_KEY], i == 0);
		assert_int_equal(nevents(&a), i == 0);
	}
	assert_int_equal(a.new_unexpected.n, 0);
	cycle(good, 4, 1, &a);
	assert_int_equal(a.status, MON_OK);
	assert_int_equal(a.events[MON_EV_RECOVERED], 1);
	assert_int_equal(nevents(&a), 1);
	assert_int_equal(ss.nalerted, 0);
	cycle(good, 4, 1, &a);
	assert_int_equal(nevents(&a), 0);
	/* The same rogue key again: alerted again, and known as returning. */
	cycle(rogue, 4, 1, &a);
	assert_int_equal(a.events[MON_EV_UNEXPECTED_KEY], 1);
	assert_int_equal(a.returning.n, 1);
	assert_int_equal(a.returning.k[0][0], R);
}

static void
test_second_rogue_key_is_a_new_event(void **state)
{
	const unsigned char exp[] = { A };
	const unsigned char r1[] = { R, R, A };
	const unsigned char r2[] = { S, R, A };
	struct mon_assessment a;

	(void)state;
	setup_service(exp, 1);
	cycle(r1, 3, 1, &a);
	assert_int_equal(a.events[MON_EV_UNEXPECTED_KEY], 1);
	cycle(r2, 3, 1, &a);
	assert_int_equal(a.events[MON_EV_UNEXPECTED_KEY], 1);
	assert_int_equal(a.new_unexpected.n, 1);
	assert_int_equal(a.new_unexpected.k[0][0], S);
	assert_int_equal(a.unexpected.n, 2);
	/* No recovery while any path still sees a rogue key. */
	cycle(r1, 3, 1, &a);
	assert_int_equal(nevents(&a), 0);
	assert_int_equal(a.status, MON_CRITICAL);
}

static void
test_no_recovery_without_data(void **state)
{
	const unsigned char exp[] = { A };
	const unsigned char rogue[] = { R, R };
	const unsigned char none[] = { 0, 0 };
	struct mon_assessment a;

	(void)state;
	setup_service(exp, 1);
	cycle(rogue, 2, 1, &a);
	cycle(none, 2, 1, &a);
	assert_int_equal(a.status, MON_WARNING);
	assert_int_equal(a.events[MON_EV_RECOVERED], 0);
	assert_int_equal(a.events[MON_EV_DIRECT_DOWN], 1);
	assert_int_equal(a.events[MON_EV_SPHERE_DOWN], 1);
	/* The rogue key is still the alerted one: no second alert. */
	cycle(rogue, 2, 1, &a);
	assert_int_equal(a.events[MON_EV_UNEXPECTED_KEY], 0);
	assert_int_equal(a.events[MON_EV_DIRECT_UP], 1);
}

static void
test_rotation_then_old_key_back(void **state)
{
	const unsigned char exp[] = { A, B };
	const unsigned char ka[] = { A, A, A };
	const unsigned char kb[] = { B, B, B };
	struct mon_assessment a;

	(void)state;
	setup_service(exp, 2);
	cycle(ka, 3, 1, &a);
	cycle(ka, 3, 1, &a);
	cycle(kb, 3, 1, &a);      /* the rotation: quiet */
	assert_int_equal(a.status, MON_OK);
	assert_int_equal(nevents(&a), 0);
	cycle(ka, 3, 1, &a);      /* the old key back */
	assert_int_equal(a.status, MON_WARNING);
	assert_int_equal(a.events[MON_EV_SUSPICIOUS_RETURN], 1);
	assert_int_equal(a.suspicious.n, 1);
	assert_int_equal(a.suspicious.k[0][0], A);
	cycle(ka, 3, 1, &a);      /* still there: not again */
	assert_int_equal(a.status, MON_OK);
	cycle(kb, 3, 1, &a);      /* B back after A: B's first return */
	assert_int_equal(a.events[MON_EV_SUSPICIOUS_RETURN], 1);
	cycle(ka, 3, 1, &a);      /* A again: reported once per key */
	assert_int_equal(a.events[MON_EV_SUSPICIOUS_RETURN], 0);
}

static void
test_recovery_is_not_a_suspicious_return(void **state)
{
	const unsigned char exp[] = { A };
	const unsigned char ka[] = { A, A };
	const unsigned char kr[] = { R, R };
	struct mon_assessment a;

	(void)state;
	setup_service(exp, 1);
	cycle(ka, 2, 1, &a);
	cycle(kr, 2, 1, &a);
	cycle(ka, 2, 1, &a);
	assert_int_equal(a.events[MON_EV_RECOVERED], 1);
	assert_int_equal(a.events[MON_EV_SUSPICIOUS_RETURN], 0);
}

static void
test_down_after(void **state)
{
	const unsigned char exp[] = { A };
	const unsigned char up[] = { A, A, A };
	const unsigned char down[] = { A, A, 0 };
	struct mon_assessment a;

	(void)state;
	setup_service(exp, 1);
	cycle(up, 3, 2, &a);
	cycle(down, 3, 2, &a);    /* the status says it, the event waits */
	assert_int_equal(a.status, MON_WARNING);
	assert_int_equal(a.spheres_down, 1);
	assert_int_equal(nevents(&a), 0);
	cycle(up, 3, 2, &a);      /* one failure, then fine: no events */
	assert_int_equal(nevents(&a), 0);
	cycle(down, 3, 2, &a);
	cycle(down, 3, 2, &a);
	assert_int_equal(a.events[MON_EV_SPHERE_DOWN], 1);
	assert_int_equal(a.nwent_down, 1);
	assert_int_equal(a.went_down[0], 2);
	cycle(down, 3, 2, &a);
	assert_int_equal(nevents(&a), 0);
	cycle(up, 3, 2, &a);
	assert_int_equal(a.events[MON_EV_SPHERE_UP], 1);
	assert_int_equal(a.ncame_up, 1);
}

static void
test_new_sphere_down_on_first_cycle(void **state)
{
	const unsigned char exp[] = { A };
	const unsigned char k[] = { A, 0 };
	struct mon_assessment a;

	(void)state;
	setup_service(exp, 1);
	cycle(k, 2, 1, &a);
	assert_int_equal(a.events[MON_EV_SPHERE_DOWN], 1);
	/* A sphere removed from the list is forgotten. */
	cycle(k, 1, 1, &a);
	assert_int_equal(ss.npaths, 1);
}

static void
test_history_is_bounded(void **state)
{
	const unsigned char exp[] = { A };
	unsigned char k[2];
	struct mon_assessment a;
	int i;

	(void)state;
	setup_service(exp, 1);
	for (i = 1; i <= 3 * MON_MAX_HISTORY; i++) {
		k[0] = A;
		k[1] = (unsigned char)(i % 200 + 20);
		cycle(k, 2, 1, &a);
	}
	assert_true(ss.nkeys <= MON_MAX_HISTORY);
	/* The key seen in every cycle survived every eviction. */
	assert_non_null(history_key(&ss, svc.expected[0]));
}

static void
test_state_round_trip(void **state)
{
	const unsigned char exp[] = { A, B };
	const unsigned char k[] = { A, R, 0 };
	struct mon_assessment a;
	struct mon_state st = { 0 }, back;
	struct mon_svc_state *p;
	char dir[] = "/tmp/test-monitor-XXXXXX", path[64], err[1024];

	(void)state;
	setup_service(exp, 2);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state.json", dir);
	p = history_service(&st, &svc);
	assert_non_null(p);
	assert_string_equal(p->proto, "tls");
	assert_int_equal(p->port, 443);
	ss = *p;
	cycle(k, 3, 1, &a);
	*p = ss;
	p->used = 1;
	st.heartbeat_last = 42;
	assert_int_equal(history_save(&st, path, err, sizeof(err)), 0);
	assert_int_equal(history_load(&back, path, err, sizeof(err)), 0);
	assert_int_equal(back.n, 1);
	assert_int_equal(back.heartbeat_last, 42);
	assert_string_equal(back.svcs[0].name, "web");
	assert_int_equal(back.svcs[0].nkeys, 2);
	assert_int_equal(back.svcs[0].nalerted, 1);
	assert_int_equal(back.svcs[0].npaths, 3);
	assert_int_equal(back.svcs[0].paths[2].mode, MON_PATH_DOWN);
	assert_int_equal(back.svcs[0].seq, 1);
	/* Another port under the same name: a fresh history. */
	svc.port = 8443;
	p = history_service(&back, &svc);
	assert_int_equal(p->nkeys, 0);
	history_free(&back);
	history_free(&st);
	unlink(path);
	snprintf(path, sizeof(path), "%s/state.json.lock", dir);
	unlink(path);
	rmdir(dir);
}

static void
test_pins(void **state)
{
	unsigned char k[MON_KEY_LEN], want[MON_KEY_LEN];
	size_t i;

	(void)state;
	for (i = 0; i < MON_KEY_LEN; i++)
		want[i] = (unsigned char)(i * 7 + 1);
	assert_int_equal(mconfig_parse_pin("01080f161d242b323940474e555c636a"
	    "71787f868d949ba2a9b0b7bec5ccd3da", k), 0);
	assert_memory_equal(k, want, MON_KEY_LEN);
	assert_int_equal(mconfig_parse_pin("01:08:0F:16:1D:24:2B:32:39:40:47:"
	    "4E:55:5C:63:6A:71:78:7F:86:8D:94:9B:A2:A9:B0:B7:BE:C5:CC:D3:DA",
	    k), 0);
	assert_memory_equal(k, want, MON_KEY_LEN);
	assert_int_equal(mconfig_parse_pin(
	    "AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09o=", k), 0);
	assert_memory_equal(k, want, MON_KEY_LEN);
	/* Not canonical (low bits set before '='), wrong length, bad chars. */
	assert_int_equal(mconfig_parse_pin(
	    "AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09p=", k), -1);
	assert_int_equal(mconfig_parse_pin("0108", k), -1);
	assert_int_equal(mconfig_parse_pin("01080f161d242b323940474e555c636a"
	    "71787f868d949ba2a9b0b7bec5ccd3dz", k), -1);
	assert_int_equal(mconfig_parse_pin("01:08:0F:16:1D:24:2B:32:39:40:47:"
	    "4E:55:5C:63:6A:71:78:7F:86:8D:94:9B:A2:A9:B0:B7:BE:C5:CC:D3-DA",
	    k), -1);
	assert_int_equal(mconfig_parse_pin(
	    "AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM0==", k), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rogue_alerts_once_then_recovers),
		cmocka_unit_test(test_second_rogue_key_is_a_new_event),
		cmocka_unit_test(test_no_recovery_without_data),
		cmocka_unit_test(test_rotation_then_old_key_back),
		cmocka_unit_test(test_recovery_is_not_a_suspicious_return),
		cmocka_unit_test(test_down_after),
		cmocka_unit_test(test_new_sphere_down_on_first_cycle),
		cmocka_unit_test(test_history_is_bounded),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_pins),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
