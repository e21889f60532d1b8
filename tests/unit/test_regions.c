/*
 * Issue 17, "where the attack sits": spheres named by their region
 * ("europe=127.0.0.1:9162" in `spheres =`, as detector-spheres list prints
 * it), the name's charset and length, errors that say what to write, and
 * the locality detail naming regions ("europe (127.0.0.1:9162)").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "verdict.h"

static void
has(const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		fail_msg("'%s' lacks '%s'", text, want);
}

static void
test_names_parsed(void **state)
{
	struct sphere sp[DETECTOR_MAX_SPHERES];
	unsigned int n;
	char err[512];

	(void)state;
	assert_int_equal(config_parse_spheres("asia=127.0.0.1:9160, "
	    "europe=127.0.0.1:9162|127.0.0.1:9172 127.0.0.1:9164 "
	    "a-1=[::1]:9166", sp, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 4);
	assert_string_equal(sp[0].name, "asia");
	assert_string_equal(sp[0].text, "127.0.0.1:9160");
	assert_string_equal(sp[1].name, "europe");
	assert_int_equal(sp[1].nmembers, 2);
	assert_string_equal(sp[1].text, "127.0.0.1:9162|127.0.0.1:9172");
	assert_string_equal(sp[2].name, "");          /* unnamed: valid */
	assert_string_equal(sp[3].name, "a-1");
	assert_string_equal(sp[3].member[0].text, "[::1]:9166");
	/* 32 characters is the longest name. */
	assert_int_equal(config_parse_spheres("abcdefghijklmnopqrstuvwxyz012345"
	    "=127.0.0.1:1", sp, &n, err, sizeof(err)), 0);
	assert_int_equal(strlen(sp[0].name), 32);
}

static void
bad(const char *list, const char *want1, const char *want2)
{
	struct sphere sp[DETECTOR_MAX_SPHERES];
	unsigned int n = 99;
	char err[512] = "";

	if (config_parse_spheres(list, sp, &n, err, sizeof(err)) != -1)
		fail_msg("'%s' was accepted", list);
	assert_int_equal(n, 99);
	has(err, want1);
	if (want2 != NULL)
		has(err, want2);
}

static void
test_names_refused(void **state)
{
	(void)state;
	bad("Europe=127.0.0.1:1", "bad name", "europe=127.0.0.1:9162");
	bad("=127.0.0.1:1", "empty name", "NAME=ip:port");
	bad("-eu=127.0.0.1:1", "bad name", "lower-case letters");
	bad("eu_west=127.0.0.1:1", "bad name", NULL);
	bad("eu.2=127.0.0.1:1", "bad name", NULL);
	bad("eu=x=127.0.0.1:1", "more than one '='", NULL);
	bad("abcdefghijklmnopqrstuvwxyz0123456=127.0.0.1:1", "bad name",
	    "1-32");
	bad("eu\x1b[31m=127.0.0.1:1", "bad name", NULL);
	bad("eu=", "empty member", NULL);
	bad("eu=asia=127.0.0.1:1", "more than one '='", NULL);
	bad("eu=tor.example:9050", "host names are not accepted", NULL);
	/* A name says where a sphere exits: two spheres cannot share one. */
	bad("eu=127.0.0.1:1 eu=127.0.0.1:2", "sphere name 'eu' is given to "
	    "127.0.0.1:1 and to 127.0.0.1:2", "its own name");
	/* The group's members are still counted once across the list. */
	bad("eu=127.0.0.1:1|127.0.0.1:2 as=127.0.0.1:2", "listed twice",
	    NULL);
}

/* In the file: the error names file:line and the key. */
static void
test_names_in_file(void **state)
{
	struct detector_config *c = detector_config_new();
	static const char good[] = "[detector]\nspheres = asia=127.0.0.1:9160,"
	    " europe=127.0.0.1:9162|127.0.0.1:9172, 127.0.0.1:9164\n"
	    "quorum = 2\n";
	static const char wrong[] = "[detector]\n\nspheres = Asia=127.0.0.1:1"
	    "\n";

	(void)state;
	assert_non_null(c);
	assert_int_equal(config_load_string(c, good, strlen(good), "t.conf"),
	    0);
	assert_int_equal(detector_config_nspheres(c), 3);
	assert_string_equal(detector_config_sphere_region(c, 0), "asia");
	assert_string_equal(detector_config_sphere_region(c, 1), "europe");
	assert_null(detector_config_sphere_region(c, 2));
	assert_null(detector_config_sphere_region(c, 3));
	/* The address list a cache entry is tied to is unchanged. */
	assert_string_equal(detector_config_sphere(c, 1),
	    "127.0.0.1:9162|127.0.0.1:9172");
	assert_int_equal(config_load_string(c, wrong, strlen(wrong), "t.conf"),
	    -1);
	has(detector_config_error(c), "t.conf:3: key 'spheres'");
	has(detector_config_error(c), "write NAME=ip:port");
	detector_config_free(c);
}

static void
set(struct detector_path *p, const char *via, const char *region,
    enum detector_path_status st, unsigned char key)
{
	memset(p, 0, sizeof(*p));
	p->via = via;
	p->region = region;
	p->status = st;
	memset(p->spki_sha256, key, DETECTOR_SHA256_LEN);
}

/* A regional attack: the detail names each group's regions. */
static void
test_locality_names_regions(void **state)
{
	struct detector_path p[5];
	char *detail;

	(void)state;
	set(&p[0], "127.0.0.1:9160", "asia", DETECTOR_PATH_MISMATCH, 7);
	set(&p[1], "127.0.0.1:9162", "europe", DETECTOR_PATH_MATCH, 1);
	set(&p[2], "127.0.0.1:9164", NULL, DETECTOR_PATH_MATCH, 1);
	set(&p[3], "127.0.0.1:9166", "africa-south-america",
	    DETECTOR_PATH_MISMATCH, 7);
	set(&p[4], "127.0.0.1:9168", "oceania-antarctica",
	    DETECTOR_PATH_MATCH, 1);
	assert_int_equal(verdict_locality(p, 5, &detail),
	    DETECTOR_LOCALITY_REGIONAL);
	assert_non_null(detail);
	has(detail, "europe (127.0.0.1:9162), 127.0.0.1:9164 and "
	    "oceania-antarctica (127.0.0.1:9168) see the direct path's key");
	has(detail, "asia (127.0.0.1:9160) and africa-south-america "
	    "(127.0.0.1:9166) see another key (07070707...)");
	free(detail);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_parsed),
		cmocka_unit_test(test_names_refused),
		cmocka_unit_test(test_names_in_file),
		cmocka_unit_test(test_locality_names_regions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
