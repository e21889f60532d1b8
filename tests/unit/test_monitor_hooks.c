/*
 * detector-monitor's hooks run with its rights (root, as a service): which
 * entries of the hooks folder are run, which are refused and why (alert.c's
 * alert_hooks_dir_open() and alert_hook_open(), on descriptors), and that the program
 * run is the file checked even if its name is re-pointed in between (the
 * hook is executed through its descriptor).  Also the PEM bodies NSS's
 * base64 decoder reads for mconfig.c: as strict as before.
 *
 * Another user's file needs root (chown): skipped otherwise.  The test
 * links the monitor's archive (build/libdetector-monitor.a).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "../../detector/monitor/monitor.h"
#include "fixture.h"

#define NOBODY 65534

static char dir[64];
static char hooks[128], path[PATH_MAX], err[2 * PATH_MAX + 512];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/detector-test-monhooks-XXXXXX");
	if (fixture_setup(dir, 0) == -1 || chmod(dir, 0700) == -1)
		return -1;
	snprintf(hooks, sizeof(hooks), "%s/hooks", dir);
	return mkdir(hooks, 0700);
}

static int
teardown(void **state)
{
	return fixture_teardown(state);
}

/* hooks/name with text and mode; returns its path in path. */
static void
make_hook(const char *name, const char *text, mode_t mode)
{
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", hooks, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

/* alert_hook_open() on hooks/name: the descriptor (closed here) or -1, err set. */
static int
try_hook(const char *name)
{
	char p[PATH_MAX];
	int dfd, fd;

	snprintf(p, sizeof(p), "%s/%s", hooks, name);
	assert_true((dfd = alert_hooks_dir_open(hooks, err, sizeof(err))) >= 0);
	fd = alert_hook_open(dfd, p, name, err, sizeof(err));
	close(dfd);
	if (fd != -1)
		close(fd);
	return fd == -1 ? -1 : 0;
}

static void
assert_has(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("'%s' not in '%s'", needle, haystack);
}

static void
test_hooks_that_run(void **state)
{
	(void)state;
	make_hook("10-private", "#!/bin/sh\n", 0700);
	assert_int_equal(try_hook("10-private"), 0);
	make_hook("20-readable", "#!/bin/sh\n", 0755);
	assert_int_equal(try_hook("20-readable"), 0);
	make_hook("30-owner-only-x", "#!/bin/sh\n", 0500);
	assert_int_equal(try_hook("30-owner-only-x"), 0);
}

static void
test_entries_that_are_no_hooks(void **state)
{
	char sub[PATH_MAX];

	(void)state;
	/* Skipped without a word: not executable, or a folder. */
	make_hook("README", "notes\n", 0644);
	assert_int_equal(try_hook("README"), -1);
	assert_string_equal(err, "");
	snprintf(sub, sizeof(sub), "%s/disabled", hooks);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(try_hook("disabled"), -1);
	assert_string_equal(err, "");
}

static void
test_hooks_refused(void **state)
{
	char target[PATH_MAX], fifo[PATH_MAX];
	static const mode_t writable[] = { 0775, 0757, 0722, 0770, 0702 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(writable) / sizeof(writable[0]); i++) {
		make_hook("20-writable", "#!/bin/sh\n", writable[i]);
		assert_int_equal(try_hook("20-writable"), -1);
		assert_has(err, "is writable by group or others: not run");
		assert_has(err, "chmod go-w");
		assert_has(err, path);
	}
	/* A symlink to a hook that would pass: the link is refused. */
	make_hook("30-target", "#!/bin/sh\n", 0755);
	snprintf(target, sizeof(target), "%s", path);
	snprintf(path, sizeof(path), "%s/31-link", hooks);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(try_hook("31-link"), -1);
	assert_has(err, "is a symlink: not run");
	assert_has(err, "symlink or special file is refused");
	/* A FIFO: refused, and opening it did not block. */
	snprintf(fifo, sizeof(fifo), "%s/40-fifo", hooks);
	assert_int_equal(mkfifo(fifo, 0700), 0);
	assert_int_equal(try_hook("40-fifo"), -1);
	assert_has(err, "is not a regular file: not run");
	/* Gone between the listing and the open: said so. */
	assert_int_equal(try_hook("50-gone"), -1);
	assert_has(err, "No such file or directory: not run");
}

static void
test_hook_of_another_user_refused(void **state)
{
	char want[64];

	(void)state;
	if (geteuid() != 0)
		skip();
	make_hook("20-nobody", "#!/bin/sh\n", 0755);
	assert_int_equal(chown(path, NOBODY, (gid_t)-1), 0);
	assert_int_equal(try_hook("20-nobody"), -1);
	assert_has(err, "is another user's: not run");
	snprintf(want, sizeof(want), "belongs to uid %d", NOBODY);
	assert_has(err, want);
}

static void
test_hooks_folder(void **state)
{
	char link[PATH_MAX];
	static const mode_t loose[] = { 0775, 0757, 0770, 01777, 0707 };
	size_t i;
	int dfd;

	(void)state;
	for (i = 0; i < sizeof(loose) / sizeof(loose[0]); i++) {
		assert_int_equal(chmod(hooks, loose[i]), 0);
		assert_int_equal(alert_hooks_dir_open(hooks, err, sizeof(err)), -1);
		assert_has(err, "hooks folder refused: ");
		assert_has(err, "chmod go-w");
		assert_has(err, "no hook run");
	}
	assert_int_equal(chmod(hooks, 0755), 0);
	assert_true((dfd = alert_hooks_dir_open(hooks, err, sizeof(err))) >= 0);
	close(dfd);
	snprintf(link, sizeof(link), "%s/hooks-link", dir);
	assert_int_equal(symlink(hooks, link), 0);
	assert_int_equal(alert_hooks_dir_open(link, err, sizeof(err)), -1);
	assert_has(err, "symlink or special file is refused");
	if (geteuid() == 0) {
		assert_int_equal(chown(hooks, NOBODY, (gid_t)-1), 0);
		assert_int_equal(alert_hooks_dir_open(hooks, err, sizeof(err)), -1);
		assert_has(err, "belongs to uid 65534");
		assert_int_equal(chown(hooks, 0, (gid_t)-1), 0);
	}
	assert_int_equal(chmod(hooks, 0700), 0);
}

/* What the hooks left in dir/out, "" if nothing. */
static void
read_out(char *buf, size_t size)
{
	char p[PATH_MAX];
	FILE *f;
	size_t n = 0;

	snprintf(p, sizeof(p), "%s/out", dir);
	if ((f = fopen(p, "r")) != NULL) {
		n = fread(buf, 1, size - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

/*
 * The checked hook is what runs: its name is re-pointed (rename) to
 * another program between alert_hook_open() and alert_run_hook(), yet the checked
 * one runs, through its descriptor.
 */
static void
test_the_checked_hook_is_what_runs(void **state)
{
	struct mon_config mc;
	char text[PATH_MAX + 64], swap[PATH_MAX], out[256];
	char *envp[] = { "PATH=/usr/bin:/bin", NULL, NULL };
	int dfd, fd;

	(void)state;
	memset(&mc, 0, sizeof(mc));
	mc.hook_timeout_s = 10;
	snprintf(text, sizeof(text), "#!/bin/sh\necho \"checked $1\" >> %s/out\n",
	    dir);
	make_hook("10-hook", text, 0700);
	snprintf(text, sizeof(text), "#!/bin/sh\necho swapped >> %s/out\n", dir);
	make_hook("swap", text, 0700);
	snprintf(swap, sizeof(swap), "%s", path);
	snprintf(path, sizeof(path), "%s/10-hook", hooks);

	assert_true((dfd = alert_hooks_dir_open(hooks, err, sizeof(err))) >= 0);
	assert_true((fd = alert_hook_open(dfd, path, "10-hook", err, sizeof(err))) >=
	    0);
	assert_int_equal(rename(swap, path), 0);
	alert_run_hook(&mc, fd, path, envp, "test-event");
	close(fd);
	close(dfd);
	read_out(out, sizeof(out));
	assert_string_equal(out, "checked test-event\n");
}

/*
 * Security review F7b: a hook that is a program (not a script) does not
 * inherit detector-monitor's O_PATH descriptor of it (root's descriptor,
 * passed on to whatever the hook runs).  The hook here is a copy of
 * /bin/sh, whose first argument (the event) names a script that lists
 * the hook process's descriptors.
 */
static void
test_program_hook_gets_no_descriptor_of_itself(void **state)
{
	struct mon_config mc;
	char text[PATH_MAX + 128], script[PATH_MAX], cmd[2 * PATH_MAX + 32];
	char out[4096];
	char *envp[] = { "PATH=/usr/bin:/bin", NULL, NULL };
	FILE *f;
	int dfd, fd;

	(void)state;
	memset(&mc, 0, sizeof(mc));
	mc.hook_timeout_s = 10;
	snprintf(path, sizeof(path), "%s/10-program", hooks);
	snprintf(cmd, sizeof(cmd), "cp /bin/sh '%s' && chmod 0700 '%s'", path,
	    path);
	assert_int_equal(system(cmd), 0);
	snprintf(script, sizeof(script), "%s/fds.sh", dir);
	snprintf(text, sizeof(text), "for f in /proc/$$/fd/*; do readlink "
	    "\"$f\"; done > %s/out; exit 0\n", dir);
	assert_non_null(f = fopen(script, "w"));
	fputs(text, f);
	fclose(f);
	assert_true((dfd = alert_hooks_dir_open(hooks, err, sizeof(err))) >= 0);
	assert_true((fd = alert_hook_open(dfd, path, "10-program", err,
	    sizeof(err))) >= 0);
	alert_run_hook(&mc, fd, path, envp, script);
	close(fd);
	close(dfd);
	read_out(out, sizeof(out));
	assert_non_null(strstr(out, "fds.sh"));   /* the listing ran */
	if (strstr(out, "10-program") != NULL)
		fail_msg("the hook inherited a descriptor of itself:\n%s", out);
}

/* alert_run_hooks() over a whole folder: good ones run in name order, refused
 * ones do not. */
static void
test_run_hooks(void **state)
{
	struct mon_config mc;
	struct alert_hook_env e = { 0 };
	char text[PATH_MAX + 64], out[256];

	(void)state;
	memset(&mc, 0, sizeof(mc));
	mc.hook_timeout_s = 10;
	snprintf(mc.hooks_dir, sizeof(mc.hooks_dir), "%s", hooks);
	snprintf(text, sizeof(text), "#!/bin/sh\necho \"a $1 $DETECTOR_EVENT "
	    "${DETECTOR_HOOK##*/}\" >> %s/out\n", dir);
	make_hook("10-a", text, 0700);
	snprintf(text, sizeof(text), "#!/bin/sh\necho b >> %s/out\n", dir);
	make_hook("20-b", text, 0755);
	snprintf(text, sizeof(text), "#!/bin/sh\necho loose >> %s/out\n", dir);
	make_hook("15-loose", text, 0775);
	alert_env_set(&e, "DETECTOR_EVENT", "ev");
	alert_run_hooks(&mc, &e, "ev");
	alert_env_free(&e);
	read_out(out, sizeof(out));
	assert_string_equal(out, "a ev ev 10-a\nb\n");
}

/*
 * PEM bodies: NSS's decoder skips characters outside the alphabet and
 * ignores the bits padding drops; mconfig.c must still refuse both.
 */
static void
test_pem_base64_is_strict(void **state)
{
	static const char *const good[] = {
		"AQID",            /* 01 02 03 */
		" AQ\r\nID\t",
		"AQI=",
		"AQ==",
	};
	static const char *const bad[] = {
		"AQ-ID", "AQID*", "AQ.I D", "AQJ=", "AR==", "AQI", "AQ=I",
		"AQID====", "", "  \n", "=AQI",
	};
	char text[256];
	unsigned char *der;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "junk\n-----BEGIN CERTIFICATE-----\n"
		    "%s\n-----END CERTIFICATE-----\n", good[i]);
		if (mconfig_pem_first_cert(text, strlen(text), &der, &len, err,
		    sizeof(err)) != 0)
			fail_msg("'%s' refused: %s", good[i], err);
		assert_true(len >= 1 && len <= 3);
		assert_int_equal(der[0], 1);
		free(der);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "-----BEGIN CERTIFICATE-----\n%s\n"
		    "-----END CERTIFICATE-----\n", bad[i]);
		if (mconfig_pem_first_cert(text, strlen(text), &der, &len, err,
		    sizeof(err)) == 0)
			fail_msg("'%s' accepted", bad[i]);
		assert_null(der);
		assert_string_equal(err, "the first certificate is not valid "
		    "base64");
	}
	snprintf(text, sizeof(text), "-----BEGIN CERTIFICATE-----\nAQID\n");
	assert_int_equal(mconfig_pem_first_cert(text, strlen(text), &der, &len,
	    err, sizeof(err)), -1);
	assert_has(err, "certificate not terminated by");
	snprintf(text, sizeof(text), "AQID\n");
	assert_int_equal(mconfig_pem_first_cert(text, strlen(text), &der, &len,
	    err, sizeof(err)), -1);
	assert_has(err, "no certificate in it");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hooks_that_run, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_entries_that_are_no_hooks,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_hooks_refused, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_hook_of_another_user_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hooks_folder, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_the_checked_hook_is_what_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_program_hook_gets_no_descriptor_of_itself, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_run_hooks, setup,
		    teardown),
		cmocka_unit_test(test_pem_base64_is_strict),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
