/*
 * detector-monitor: where a key the operator did not deploy is seen, from
 * the monitor's vantage (assess.c, assess_locality()), each sphere named
 * by its region (issue 17).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../detector/monitor/monitor.h"

#define A 0xA1   /* deployed */
#define R 0xEE   /* a rogue key */

static const char *const regions[] = { "", "asia", "europe",
    "north-america", "", "oceania-antarctica" };

/* keys[i]: what path i saw (0: down, -1: no such path); path 0 is the
 * direct one, 1-5 spheres (4 unnamed). */
static enum detector_locality
locate(const int *keys, struct mon_assessment *a)
{
	static struct mon_service svc;
	static struct mon_svc_state ss;
	struct mon_observation obs;
	size_t i;

	memset(&svc, 0, sizeof(svc));
	memset(&ss, 0, sizeof(ss));
	snprintf(svc.name, sizeof(svc.name), "web");
	memset(svc.expected[svc.nexpected++], A, MON_KEY_LEN);
	memset(&obs, 0, sizeof(obs));
	for (i = 0; i < 6; i++) {
		struct mon_obs_path *p;

		if (keys[i] < 0)
			continue;
		p = &obs.paths[obs.npaths++];
		p->direct = i == 0;
		snprintf(p->via, sizeof(p->via), i == 0 ? "direct" :
		    "127.0.0.1:%zu", 9158 + 2 * i);
		snprintf(p->region, sizeof(p->region), "%s", regions[i]);
		p->ok = keys[i] != 0;
		memset(p->spki, keys[i], MON_KEY_LEN);
	}
	assess(&svc, 1, &ss, &obs, a);
	return a->locality;
}

static void
has(const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		fail_msg("'%s' lacks '%s'", text, want);
}

static void
test_consistent_and_unknown(void **state)
{
	struct mon_assessment a;
	const int all[6] = { A, A, A, A, A, A };
	const int none[6] = { 0, 0, 0, 0, 0, 0 };
	const int direct_only[6] = { R, 0, 0, 0, 0, 0 };

	(void)state;
	assert_int_equal(locate(all, &a), DETECTOR_LOCALITY_CONSISTENT);
	has(a.where, "every path that answered sees a deployed key "
	    "(5 spheres and the direct path)");
	assert_int_equal(locate(none, &a), DETECTOR_LOCALITY_UNKNOWN);
	/* The direct path alone tells nothing about where. */
	assert_int_equal(locate(direct_only, &a), DETECTOR_LOCALITY_UNKNOWN);
	has(a.where, "only the direct path did");
	assert_int_equal(a.status, MON_CRITICAL);
}

/* Next to the server, only the monitor's own network sees the rogue. */
static void
test_local_path(void **state)
{
	struct mon_assessment a;
	const int keys[6] = { R, A, A, 0, A, A };

	(void)state;
	assert_int_equal(locate(keys, &a), DETECTOR_LOCALITY_LOCAL_PATH);
	has(a.where, "only the direct path sees a key you did not deploy; "
	    "the 4 spheres that answered see a deployed key");
	has(a.where, "next to the server");
}

static void
test_regional_names_regions(void **state)
{
	struct mon_assessment a;
	const int keys[6] = { A, A, R, A, R, 0 };
	const int tor_only[6] = { -1, R, A, A, A, A };

	(void)state;
	assert_int_equal(locate(keys, &a), DETECTOR_LOCALITY_REGIONAL);
	has(a.where, "europe (127.0.0.1:9162) and 127.0.0.1:9166 see a key "
	    "you did not deploy, asia (127.0.0.1:9160) and north-america "
	    "(127.0.0.1:9164) a deployed one");
	assert_int_equal(locate(tor_only, &a), DETECTOR_LOCALITY_REGIONAL);
	has(a.where, "asia (127.0.0.1:9160) sees a key");
}

/* Every sphere: the server itself, or the world sent elsewhere. */
static void
test_server_or_global(void **state)
{
	struct mon_assessment a;
	const int at_server[6] = { R, R, R, R, R, R };
	const int upstream[6] = { A, R, R, 0, R, R };
	const int tor_only[6] = { -1, R, R, R, R, R };

	(void)state;
	assert_int_equal(locate(at_server, &a),
	    DETECTOR_LOCALITY_SERVER_OR_GLOBAL);
	has(a.where, "the server itself");
	has(a.where, "pin or pem");
	assert_int_equal(locate(upstream, &a),
	    DETECTOR_LOCALITY_SERVER_OR_GLOBAL);
	has(a.where, "every sphere that answered (4) sees a key you did not "
	    "deploy while the direct path sees a deployed one");
	has(a.where, "global DNS hijack");
	assert_int_equal(locate(tor_only, &a),
	    DETECTOR_LOCALITY_SERVER_OR_GLOBAL);
	has(a.where, "no direct path to compare with");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_consistent_and_unknown),
		cmocka_unit_test(test_local_path),
		cmocka_unit_test(test_regional_names_regions),
		cmocka_unit_test(test_server_or_global),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
