/*
 * Configuration: defaults, setters, the INI file (errors name file, line
 * and key), the search order and DETECTOR_SPHERES, exclusion rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"

static char dir[] = "/tmp/detector-test-config-XXXXXX";

static const char *
write_file(const char *name, const char *text)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	unsetenv("DETECTOR_CONFIG");
	unsetenv("DETECTOR_SPHERES");
	unsetenv("XDG_CONFIG_HOME");
	setenv("HOME", dir, 1);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[600];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_defaults(void **state)
{
	struct detector_config *c = detector_config_new();

	(void)state;
	assert_non_null(c);
	assert_int_equal(c->nspheres, 5);
	assert_string_equal(c->spheres[0].text, "127.0.0.1:9160");
	assert_string_equal(c->spheres[4].text, "127.0.0.1:9168");
	assert_int_equal(c->quorum, 4);
	assert_int_equal(c->on_undecided, DETECTOR_UNDECIDED_ACCEPT);
	detector_config_free(c);
}

static void
test_sphere_lists(void **state)
{
	struct detector_config *c = detector_config_new();

	(void)state;
	assert_int_equal(detector_config_set_spheres(c,
	    "127.0.0.1:1, [::1]:2 10.0.0.1:3"), 0);
	assert_int_equal(c->nspheres, 3);
	assert_string_equal(c->spheres[1].text, "[::1]:2");
	/* Names would be resolved outside Tor: refused, list unchanged. */
	assert_int_equal(detector_config_set_spheres(c, "localhost:9160"), -1);
	assert_non_null(strstr(detector_config_error(c), "not an IP"));
	assert_int_equal(c->nspheres, 3);
	assert_int_equal(detector_config_set_spheres(c, "127.0.0.1:0"), -1);
	assert_int_equal(detector_config_set_spheres(c, "127.0.0.1:65536"), -1);
	assert_int_equal(detector_config_set_spheres(c, "127.0.0.1:9x"), -1);
	assert_int_equal(detector_config_set_spheres(c, "127.0.0.1"), -1);
	assert_int_equal(detector_config_set_spheres(c, ""), -1);
	assert_int_equal(detector_config_set_spheres(c,
	    "127.0.0.1:5,127.0.0.1:5"), -1);
	assert_non_null(strstr(detector_config_error(c), "twice"));
	assert_int_equal(detector_config_set_quorum(c, 0), -1);
	assert_int_equal(detector_config_set_probe_timeout(c, 0), -1);
	detector_config_free(c);
}

static void
test_file_ok(void **state)
{
	struct detector_config *c = detector_config_new();
	const char *p = write_file("ok.conf",
	    "; comment\n[detector]\nspheres = 127.0.0.1:1,127.0.0.1:2,"
	    "127.0.0.1:3\nquorum = 2\nprobe_timeout_ms = 1500\n"
	    "deadline_ms = 3000\nexclude = corp.example, 10.0.0.0/8\n"
	    "exclude = .intra.test\non_undecided = reject\n");

	(void)state;
	assert_int_equal(detector_config_load_file(c, p), 0);
	assert_int_equal(c->nspheres, 3);
	assert_int_equal(c->quorum, 2);
	assert_int_equal(c->probe_timeout_ms, 1500);
	assert_int_equal(c->deadline_ms, 3000);
	assert_int_equal(c->exclude.n, 3);
	assert_int_equal(c->on_undecided, DETECTOR_UNDECIDED_REJECT);
	detector_config_free(c);
}

static void
test_file_errors_name_file_line_key(void **state)
{
	static const struct {
		const char *text, *line, *mention;
	} bad[] = {
		{ "quorum = 4\nquorum = four\n", ":2:", "key 'quorum'" },
		{ "quorum = -1\n", ":1:", "key 'quorum'" },
		{ "[detector]\nprobe_timeout_ms = 10s\n", ":2:",
		    "probe_timeout_ms" },
		{ "deadline_ms = 99999999999999999999\n", ":1:", "deadline_ms" },
		{ "\n\nspheres = tor.example:9050\n", ":3:", "key 'spheres'" },
		{ "exclude = 10.0.0.0/33\n", ":1:", "key 'exclude'" },
		{ "exclude = bad!name\n", ":1:", "key 'exclude'" },
		{ "on_undecided = maybe\n", ":1:", "on_undecided" },
		{ "qourum = 3\n", ":1:", "unknown key" },
		{ "[tor]\nquorum = 3\n", ":2:", "unknown section" },
		{ "quorum\n", ":1:", "syntax error" },
		{ "[detector\n", ":1:", "syntax error" },
	};
	struct detector_config *c = detector_config_new();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *p = write_file("bad.conf", bad[i].text);
		char want[600];

		assert_int_equal(detector_config_load_file(c, p), -1);
		snprintf(want, sizeof(want), "%s%s", p, bad[i].line);
		if (strstr(detector_config_error(c), want) == NULL ||
		    strstr(detector_config_error(c), bad[i].mention) == NULL)
			fail_msg("case %zu: '%s'", i, detector_config_error(c));
		/* A bad file changes nothing. */
		assert_int_equal(c->quorum, 4);
		assert_int_equal(c->nspheres, 5);
	}
	detector_config_free(c);
}

static void
test_file_other_errors(void **state)
{
	struct detector_config *c = detector_config_new();
	char longline[400];
	const char *p;

	(void)state;
	assert_int_equal(detector_config_load_file(c, "/nonexistent/x.conf"),
	    -1);
	assert_non_null(strstr(detector_config_error(c), "/nonexistent/x.conf"));
	assert_int_equal(detector_config_load_file(c, dir), -1);
	assert_non_null(strstr(detector_config_error(c), "regular file"));
	memset(longline, 'a', sizeof(longline) - 2);
	memcpy(longline, "exclude=", 8);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	p = write_file("long.conf", longline);
	assert_int_equal(detector_config_load_file(c, p), -1);
	assert_non_null(strstr(detector_config_error(c), ":1: line longer"));
	p = write_file("q.conf", "quorum = 6\n");
	assert_int_equal(detector_config_load_file(c, p), -1);
	assert_non_null(strstr(detector_config_error(c), "more than the 5"));
	detector_config_free(c);
}

static void
test_search_order_and_env(void **state)
{
	struct detector_config *c = detector_config_new();
	char path[600];

	(void)state;
	/* No file anywhere: defaults. */
	assert_int_equal(detector_config_load_default(c), 0);
	assert_null(detector_config_path(c));
	/* The per-user file. */
	snprintf(path, sizeof(path), "%s/.config", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/.config/detector", dir);
	mkdir(path, 0700);
	write_file(".config/detector/detector.conf", "quorum = 3\n");
	assert_int_equal(detector_config_load_default(c), 0);
	assert_int_equal(c->quorum, 3);
	assert_non_null(strstr(detector_config_path(c), ".config/detector"));
	/* $DETECTOR_CONFIG wins, and must exist. */
	setenv("DETECTOR_CONFIG", write_file("env.conf", "quorum = 2\n"), 1);
	assert_int_equal(detector_config_load_default(c), 0);
	assert_int_equal(c->quorum, 2);
	setenv("DETECTOR_CONFIG", "/nonexistent/detector.conf", 1);
	assert_int_equal(detector_config_load_default(c), -1);
	unsetenv("DETECTOR_CONFIG");
	/* $DETECTOR_SPHERES overrides the list. */
	setenv("DETECTOR_SPHERES", "127.0.0.1:7000,127.0.0.1:7002", 1);
	assert_int_equal(detector_config_load_default(c), 0);
	assert_int_equal(c->nspheres, 2);
	assert_string_equal(c->spheres[1].text, "127.0.0.1:7002");
	setenv("DETECTOR_SPHERES", "nonsense", 1);
	detector_config_free(c);
	c = detector_config_new();
	assert_int_equal(detector_config_load_default(c), -1);
	assert_non_null(strstr(detector_config_error(c), "DETECTOR_SPHERES"));
	unsetenv("DETECTOR_SPHERES");
	detector_config_free(c);
}

static void
test_exclude_matching(void **state)
{
	struct exclude_list l = { NULL, 0 };
	char err[256];

	(void)state;
	assert_int_equal(exclude_add(&l, "Corp.Example, *.intra.test "
	    "10.0.0.0/8 fd00::/8 192.0.2.7", err, sizeof(err)), 0);
	assert_int_equal(l.n, 5);
	assert_non_null(exclude_match(&l, "corp.example"));
	assert_non_null(exclude_match(&l, "mail.CORP.example."));
	assert_null(exclude_match(&l, "evilcorp.example"));
	assert_null(exclude_match(&l, "corp.example.evil.test"));
	assert_non_null(exclude_match(&l, "a.b.intra.test"));
	assert_null(exclude_match(&l, "intra.test.com"));
	assert_non_null(exclude_match(&l, "10.1.2.3"));
	assert_null(exclude_match(&l, "11.1.2.3"));
	assert_non_null(exclude_match(&l, "fd12::1"));
	assert_non_null(exclude_match(&l, "[fd12::1]"));
	assert_null(exclude_match(&l, "fe80::1"));
	assert_non_null(exclude_match(&l, "192.0.2.7"));
	assert_null(exclude_match(&l, "192.0.2.8"));
	/* A name that looks like a number is not an address. */
	assert_null(exclude_match(&l, "10.example"));
	/* All or nothing: one bad rule adds none. */
	assert_int_equal(exclude_add(&l, "ok.test 1.2.3.4/40", err,
	    sizeof(err)), -1);
	assert_int_equal(l.n, 5);
	assert_int_equal(exclude_add(&l, "10.0.0.0/", err, sizeof(err)), -1);
	assert_int_equal(exclude_add(&l, "*.", err, sizeof(err)), -1);
	exclude_clear(&l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_sphere_lists),
		cmocka_unit_test(test_file_ok),
		cmocka_unit_test(test_file_errors_name_file_line_key),
		cmocka_unit_test(test_file_other_errors),
		cmocka_unit_test(test_search_order_and_env),
		cmocka_unit_test(test_exclude_matching),
	};
	return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
