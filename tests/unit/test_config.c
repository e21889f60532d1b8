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
#include "fixture.h"

static char dir[] = "/tmp/detector-test-config-XXXXXX";

static const char *
write_file(const char *name, const char *text)
{
	return fixture_write(dir, name, text);
}

static int
setup(void **state)
{
	(void)state;
	if (fixture_setup(dir, 0) == -1)
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
	return fixture_teardown(state);
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
	assert_string_equal(detector_config_path(c), p);
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
		{ "starttls = 2525\n", ":1:", "not PORT:PROTOCOL" },
		{ "starttls = 0:smtp\n", ":1:", "not a port" },
		{ "starttls = 65536:smtp\n", ":1:", "not a port" },
		{ "starttls = 2525:smtps\n", ":1:", "'smtps' is not one of" },
		{ "starttls = 2525:smtp 2525:imap\n", ":1:", "listed twice" },
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
	char longline[400], sub[600];
	const char *p;

	(void)state;
	assert_int_equal(detector_config_load_file(c, "/nonexistent/x.conf"),
	    -1);
	assert_non_null(strstr(detector_config_error(c), "/nonexistent/x.conf"));
	/* A folder (inside ours: dir's own folder, /tmp, is refused). */
	snprintf(sub, sizeof(sub), "%s/folder.conf", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(detector_config_load_file(c, sub), -1);
	assert_non_null(strstr(detector_config_error(c), "regular file"));
	rmdir(sub);
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

/*
 * Review (config): root under sudo keeps the caller's HOME.  A HOME that
 * is not root's own home nor a private (0700) folder of root's is not
 * where root's configuration comes from: a user could point it (or a
 * ~/.config symlink) at any root-owned .../detector/detector.conf.
 */
static void
test_roots_open_home_config_not_read(void **state)
{
	struct detector_config *c;
	char home[600], path[700];
	FILE *f;

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(home, sizeof(home), "%s/openhome", dir);
	assert_int_equal(mkdir(home, 0755), 0);
	assert_int_equal(chmod(home, 0755), 0);
	snprintf(path, sizeof(path), "%s/.config", home);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/.config/detector", home);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/.config/detector/detector.conf",
	    home);
	assert_non_null(f = fopen(path, "w"));
	fputs("quorum = 3\n", f);
	fclose(f);
	assert_int_equal(chmod(path, 0644), 0);
	unsetenv("XDG_CONFIG_HOME");
	setenv("HOME", home, 1);
	c = detector_config_new();
	assert_int_equal(detector_config_load_default(c), 0);
	assert_int_not_equal(c->quorum, 3);
	assert_null(detector_config_path(c));
	detector_config_free(c);
	/* XDG_CONFIG_HOME in the same folder: the same rule. */
	snprintf(path, sizeof(path), "%s/.config", home);
	setenv("XDG_CONFIG_HOME", path, 1);
	c = detector_config_new();
	assert_int_equal(detector_config_load_default(c), 0);
	assert_int_not_equal(c->quorum, 3);
	detector_config_free(c);
	unsetenv("XDG_CONFIG_HOME");
	/* Private: root's own choice, read. */
	assert_int_equal(chmod(home, 0700), 0);
	c = detector_config_new();
	assert_int_equal(detector_config_load_default(c), 0);
	assert_int_equal(c->quorum, 3);
	detector_config_free(c);
	setenv("HOME", dir, 1);
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

/* Each case: text, the error's "name:line:" and what it must say. */
static void
expect_string_error(const char *text, const char *where, const char *mention)
{
	struct detector_config *c = detector_config_new();

	assert_non_null(c);
	assert_int_equal(config_load_string(c, text, strlen(text), "t.conf"),
	    -1);
	if (strstr(detector_config_error(c), where) == NULL ||
	    strstr(detector_config_error(c), mention) == NULL)
		fail_msg("'%s': got '%s', want '%s' and '%s'", text,
		    detector_config_error(c), where, mention);
	assert_int_equal(c->quorum, 4);        /* all or nothing */
	assert_int_equal(c->nspheres, 5);
	assert_int_equal(c->exclude.n, 0);
	detector_config_free(c);
}

static struct detector_config *
expect_string_ok(const char *text)
{
	struct detector_config *c = detector_config_new();

	assert_non_null(c);
	if (config_load_string(c, text, strlen(text), "t.conf") != 0)
		fail_msg("'%s': %s", text, detector_config_error(c));
	return c;
}

static void
test_repeated_keys_refused(void **state)
{
	struct detector_config *c;

	(void)state;
	expect_string_error("quorum = 3\nquorum = 3\n", "t.conf:2: ",
	    "key 'quorum': set twice (lines 1 and 2)");
	expect_string_error("[detector]\nspheres = 127.0.0.1:1\n; x\n\n"
	    "[detector]\nspheres = 127.0.0.1:2\n", "t.conf:6: ",
	    "key 'spheres': set twice (lines 2 and 6)");
	expect_string_error("on_undecided = reject\ndeadline_ms = 9\n"
	    "on_undecided = accept\n", "t.conf:3: ", "lines 1 and 3");
	/* exclude is a list: it may repeat, and the rules add up. */
	c = expect_string_ok("exclude = a.test\nexclude = b.test\n"
	    "exclude = 10.0.0.0/8\n");
	assert_int_equal(c->exclude.n, 3);
	detector_config_free(c);
}

static void
test_continuation_lines_refused(void **state)
{
	struct detector_config *c;

	(void)state;
	/* libinih (Debian's build: INI_ALLOW_MULTILINE=1) would hand
	 * "quorum = 1" to the spheres key as a second value. */
	expect_string_error("spheres = 127.0.0.1:1\n  quorum = 1\n",
	    "t.conf:2: ", "continuation of the key on line 1");
	expect_string_error("exclude = a.test\n\n\tb.test\n", "t.conf:3: ",
	    "continuation lines are not supported");
	expect_string_error("[detector]\nquorum = 2\n; note\n   [detector]\n",
	    "t.conf:4: ", "key on line 2");
	/* Indentation that inih does not read as a continuation is fine:
	 * before any key, after a section header, comments. */
	c = expect_string_ok("  quorum = 3\n");
	assert_int_equal(c->quorum, 3);
	detector_config_free(c);
	c = expect_string_ok("quorum = 3\n[detector]\n  deadline_ms = 7\n"
	    "   ; indented comment\n\t# another\n  \n");
	assert_int_equal(c->deadline_ms, 7);
	detector_config_free(c);
}

static void
test_line_numbers_exact(void **state)
{
	char text[600];
	struct detector_config *c;

	(void)state;
	/* A line of exactly 199 characters is whole; 200 is refused. */
	memset(text, 0, sizeof(text));
	memcpy(text, "exclude = ", 10);
	memset(text + 10, 'a', 199 - 10 - 5);
	memcpy(text + 199 - 5, ".test\nquorum = x\n", 17);
	assert_int_equal(strchr(text, '\n') - text, 199);
	expect_string_error(text, "t.conf:2: ", "key 'quorum'");
	c = detector_config_new();
	text[199] = 'x';          /* now 200+ characters on line 1 */
	assert_int_equal(config_load_string(c, text, strlen(text), "t.conf"),
	    -1);
	assert_non_null(strstr(detector_config_error(c), "t.conf:1: line "
	    "longer than 199"));
	detector_config_free(c);
	/* CRLF line ends, BOM, comments: counted exactly. */
	expect_string_error("\xef\xbb\xbfquorum = 3\r\n; c\r\n\r\n"
	    "probe_timeout_ms = 10s\r\n", "t.conf:4: ", "probe_timeout_ms");
	expect_string_error("quorum = 3\nbroken line\n", "t.conf:2: ",
	    "syntax error");
	/* The text needs no terminator: only len bytes are read. */
	c = detector_config_new();
	assert_int_equal(config_load_string(c, "quorum = 3\nx\0y\n", 15,
	    "t.conf"), -1);
	assert_non_null(strstr(detector_config_error(c), "t.conf:2: NUL"));
	assert_int_equal(config_load_string(c, "quorum = 2garbage", 10,
	    "t.conf"), 0);
	assert_int_equal(c->quorum, 2);
	assert_int_equal(config_load_string(c, "", 0, "t.conf"), 0);
	detector_config_free(c);
}

static void
test_exclude_prefix_strict(void **state)
{
	static const char *const bad[] = {
		"10.0.0.0/-0", "10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/8x",
		"10.0.0.0/0x8", "10.0.0.0/33", "10.0.0.0/4294967304",
		"10.0.0.0/-4294967288", "fd00::/129", "fd00::/+64",
		"fd00::/0128", "10.0.0.0/", "10.0.0.0/\xd9\xa8",
	};
	static const struct {
		const char *rule;
		unsigned int prefix;
	} good[] = {
		{ "0.0.0.0/0", 0 }, { "10.0.0.0/8", 8 }, { "10.1.2.3/32", 32 },
		{ "::/0", 0 }, { "fd00::/8", 8 }, { "::1/128", 128 },
	};
	struct exclude_list l = { NULL, 0 };
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (exclude_add(&l, bad[i], err, sizeof(err)) != -1)
			fail_msg("'%s' accepted", bad[i]);
		assert_non_null(strstr(err, "prefix length"));
		assert_int_equal(l.n, 0);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (exclude_add(&l, good[i].rule, err, sizeof(err)) != 0)
			fail_msg("'%s': %s", good[i].rule, err);
		assert_int_equal(l.rules[l.n - 1].prefix, good[i].prefix);
	}
	/* /0 covers everything of its family, nothing of the other. */
	exclude_clear(&l);
	assert_int_equal(exclude_add(&l, "0.0.0.0/0", err, sizeof(err)), 0);
	assert_non_null(exclude_match(&l, "203.0.113.9"));
	assert_null(exclude_match(&l, "2001:db8::1"));
	exclude_clear(&l);
	/* Through the file: the error names the line and the key. */
	expect_string_error("quorum = 3\nexclude = 10.0.0.0/+8\n",
	    "t.conf:2: ", "key 'exclude'");
}

/*
 * Whoever can change a configuration file can write "enabled = no" and
 * switch DetecTor off: a file is obeyed only if it is not a symlink, is
 * ours or root's, and is writable by neither group nor others, and so is
 * its folder (filetrust.h).  Otherwise the load fails (the NSS integration
 * then refuses every handshake) naming the file, the rule and the fix.
 */
static const char *const OFF = "[detector]\nenabled = no\n";

/* Expects path refused: -1, nothing applied, the error naming the file
 * loaded, the file or folder at fault (culprit) and the words in want. */
static void
assert_refused(const char *path, const char *culprit, const char *want)
{
	struct detector_config *c = detector_config_new();
	const char *e;

	assert_int_equal(detector_config_load_file(c, path), -1);
	e = detector_config_error(c);
	if (strstr(e, path) == NULL || strstr(e, culprit) == NULL ||
	    strstr(e, want) == NULL || strstr(e, "refused") == NULL)
		fail_msg("want '%s' and '%s' and '%s': '%s'", path, culprit,
		    want, e);
	assert_int_equal(c->enabled, 1);
	assert_null(detector_config_path(c));
	detector_config_free(c);
}

/* A private folder inside dir, mode mode, with name; its path in out. */
static void
make_folder(const char *name, mode_t mode, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", dir, name);
	assert_int_equal(mkdir(out, 0700), 0);
	assert_int_equal(chmod(out, mode), 0);
}

static const char *
write_in(const char *folder, const char *name, const char *text, mode_t mode)
{
	const char *path = fixture_write(folder, name, text);

	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void
test_trust_world_writable_file_refused(void **state)
{
	char d[600], want[700];
	const char *p;

	(void)state;
	make_folder("ww", 0700, d, sizeof(d));
	p = write_in(d, "detector.conf", OFF, 0666);
	snprintf(want, sizeof(want), "chmod go-w %s", p);
	assert_refused(p, "writable by everyone", want);
	/* Group-writable is refused too. */
	assert_int_equal(chmod(p, 0620), 0);
	assert_refused(p, "writable by its group", want);
}

static void
test_trust_other_owner_refused(void **state)
{
	char d[600];
	const char *p;

	(void)state;
	if (geteuid() != 0)
		skip();     /* only root can give a file away */
	make_folder("other", 0755, d, sizeof(d));
	p = write_in(d, "detector.conf", OFF, 0644);
	assert_int_equal(chown(p, 65534, 65534), 0);
	assert_refused(p, "belongs to uid 65534", "chown it");
	/* A folder of another user's is refused as well. */
	assert_int_equal(chown(p, 0, 0), 0);
	assert_int_equal(chown(d, 65534, 65534), 0);
	assert_refused(p, "belongs to uid 65534", d);
}

static void
test_trust_symlink_refused(void **state)
{
	char d[600], link[700];
	const char *p;

	(void)state;
	make_folder("sym", 0700, d, sizeof(d));
	p = write_in(d, "real.conf", "quorum = 2\n", 0600);
	snprintf(link, sizeof(link), "%s/detector.conf", d);
	assert_int_equal(symlink(p, link), 0);
	assert_refused(link, "symlink", "replace it");
	/* A symlinked folder: the folder is refused, not followed. */
	snprintf(link, sizeof(link), "%s/symdir", dir);
	assert_int_equal(symlink(d, link), 0);
	strncat(link, "/real.conf", sizeof(link) - strlen(link) - 1);
	assert_refused(link, "symlink", "symdir");
}

static void
test_trust_group_writable_folder_refused(void **state)
{
	char d[600], want[700];
	const char *p;

	(void)state;
	make_folder("gw", 0775, d, sizeof(d));
	p = write_in(d, "detector.conf", OFF, 0644);
	snprintf(want, sizeof(want), "chmod go-w %s", d);
	assert_refused(p, "writable by its group", want);
	/* The sticky bit does not help: others can still plant the file. */
	assert_int_equal(chmod(d, 01777), 0);
	assert_refused(p, "writable by everyone", want);
}

static void
test_trust_good_file_accepted(void **state)
{
	struct detector_config *c = detector_config_new();
	char d[600];
	const char *p;

	(void)state;
	make_folder("good", 0755, d, sizeof(d));
	p = write_in(d, "detector.conf", "[detector]\nquorum = 2\n", 0644);
	if (geteuid() == 0)
		assert_int_equal(chown(p, 0, 0), 0);   /* root-owned */
	assert_int_equal(detector_config_load_file(c, p), 0);
	assert_int_equal(c->quorum, 2);
	assert_string_equal(detector_config_path(c), p);
	detector_config_free(c);
}

/* The same rules on the search path: $DETECTOR_CONFIG and the per-user
 * file; a missing file or folder is still fine (defaults). */
static void
test_trust_search_path(void **state)
{
	struct detector_config *c;
	char cfgdir[600], xdg[600];
	const char *p;

	(void)state;
	make_folder("env", 0700, cfgdir, sizeof(cfgdir));
	p = write_in(cfgdir, "detector.conf", OFF, 0666);
	setenv("DETECTOR_CONFIG", p, 1);
	c = detector_config_new();
	assert_int_equal(detector_config_load_default(c), -1);
	assert_non_null(strstr(detector_config_error(c), p));
	assert_non_null(strstr(detector_config_error(c), "chmod go-w"));
	assert_int_equal(c->enabled, 1);
	detector_config_free(c);
	unsetenv("DETECTOR_CONFIG");

	/* $XDG_CONFIG_HOME/detector missing: defaults. */
	make_folder("xdg", 0700, xdg, sizeof(xdg));
	setenv("XDG_CONFIG_HOME", xdg, 1);
	c = detector_config_new();
	assert_int_equal(detector_config_load_default(c), 0);
	assert_null(detector_config_path(c));
	/* A world-writable folder, even without the file yet: refused
	 * (anyone could create it). */
	strncat(xdg, "/detector", sizeof(xdg) - strlen(xdg) - 1);
	assert_int_equal(mkdir(xdg, 0700), 0);
	assert_int_equal(chmod(xdg, 0777), 0);
	assert_int_equal(detector_config_load_default(c), -1);
	assert_non_null(strstr(detector_config_error(c), "writable by "
	    "everyone"));
	assert_int_equal(chmod(xdg, 0700), 0);
	/* A trusted folder without the file: defaults. */
	assert_int_equal(detector_config_load_default(c), 0);
	/* A world-writable file: refused, its "enabled = no" not obeyed. */
	p = write_in(xdg, "detector.conf", OFF, 0666);
	assert_int_equal(detector_config_load_default(c), -1);
	assert_non_null(strstr(detector_config_error(c), p));
	assert_int_equal(c->enabled, 1);
	assert_int_equal(chmod(p, 0600), 0);
	assert_int_equal(detector_config_load_default(c), 0);
	assert_int_equal(c->enabled, 0);
	unsetenv("XDG_CONFIG_HOME");
	detector_config_free(c);
}

/* `starttls` maps ports to preambles; other ports keep their usual one. */
static void
test_starttls_ports(void **state)
{
	struct detector_config *c = detector_config_new();
	const char *p = write_file("st.conf",
	    "[detector]\nstarttls = 2525:smtp, 5269:xmpp 587:none\n");

	(void)state;
	assert_int_equal(detector_config_load_file(c, p), 0);
	assert_int_equal(config_starttls_for_port(c, 2525),
	    DETECTOR_STARTTLS_SMTP);
	assert_int_equal(config_starttls_for_port(c, 5269),
	    DETECTOR_STARTTLS_XMPP);
	assert_int_equal(config_starttls_for_port(c, 587),
	    DETECTOR_STARTTLS_NONE);
	assert_int_equal(config_starttls_for_port(c, 143),
	    DETECTOR_STARTTLS_IMAP);
	assert_int_equal(config_starttls_for_port(c, 443),
	    DETECTOR_STARTTLS_NONE);
	detector_config_free(c);
}

/* [site NAME]: NAME and every name below it, label-aligned; the most
 * specific section wins, each value separately; the rest is global. */
static void
test_site_sections(void **state)
{
	struct detector_config *c, *copy;
	struct detector_policy p;

	(void)state;
	c = expect_string_ok("[detector]\nquorum = 3\non_mitm = refuse\n"
	    "[site bank.example]\non_undecided = reject\nquorum = 5\n"
	    "[site www.bank.example]\non_mitm = reroute\n"
	    "[site 10.0.0.0/8]\non_undecided = reject\n"
	    "[site open.example]\non_undecided = accept\nquorum = 1\n");
	assert_int_equal(c->nsites, 4);
	assert_int_equal(c->on_mitm, DETECTOR_MITM_REFUSE);

	/* Global: a host no section covers. */
	assert_int_equal(detector_config_policy(c, "other.example", &p), 0);
	assert_int_equal(p.quorum, 3);
	assert_int_equal(p.on_undecided, DETECTOR_UNDECIDED_ACCEPT);
	assert_int_equal(p.on_mitm, DETECTOR_MITM_REFUSE);
	assert_string_equal(p.site, "");
	/* Label-aligned: evilbank.example is not below bank.example. */
	assert_int_equal(detector_config_policy(c, "evilbank.example", &p), 0);
	assert_string_equal(p.site, "");
	assert_int_equal(p.quorum, 3);
	/* The section itself and a name below it (case as NSS reads it). */
	assert_int_equal(detector_config_policy(c, "Login.Bank.Example", &p),
	    0);
	assert_string_equal(p.site, "bank.example");
	assert_int_equal(p.quorum, 5);
	assert_int_equal(p.on_undecided, DETECTOR_UNDECIDED_REJECT);
	assert_int_equal(p.on_mitm, DETECTOR_MITM_REFUSE);
	/* The most specific section wins; what it leaves unset comes from
	 * the next one that sets it, then the global value. */
	assert_int_equal(detector_config_policy(c, "a.www.bank.example", &p),
	    0);
	assert_string_equal(p.site, "www.bank.example");
	assert_int_equal(p.on_mitm, DETECTOR_MITM_REROUTE);
	assert_int_equal(p.quorum, 5);
	assert_int_equal(p.on_undecided, DETECTOR_UNDECIDED_REJECT);
	/* An address range; an address spelled as NSS reads it. */
	assert_int_equal(detector_config_policy(c, "10.1.2.3", &p), 0);
	assert_string_equal(p.site, "10.0.0.0/8");
	assert_int_equal(p.on_undecided, DETECTOR_UNDECIDED_REJECT);
	assert_int_equal(detector_config_policy(c, "167772161", &p), 0);
	assert_string_equal(p.site, "10.0.0.0/8");
	assert_int_equal(detector_config_policy(c, "open.example", &p), 0);
	assert_int_equal(p.quorum, 1);
	/* A host DetecTor cannot check: -1, the global policy. */
	assert_int_equal(detector_config_policy(c, "bad host", &p), -1);
	assert_int_equal(p.quorum, 3);

	/* Copies carry the sections (the context gets a copy). */
	copy = detector_config_new();
	assert_int_equal(config_copy(copy, c), 0);
	detector_config_free(c);
	assert_int_equal(detector_config_policy(copy, "www.bank.example", &p),
	    0);
	assert_int_equal(p.on_mitm, DETECTOR_MITM_REROUTE);
	exclude_clear(&copy->exclude);
	detector_config_free(copy);

	/* on_mitm globally; the setter; the names. */
	c = expect_string_ok("on_mitm = reroute\n");
	assert_int_equal(detector_config_policy(c, "x.example", &p), 0);
	assert_int_equal(p.on_mitm, DETECTOR_MITM_REROUTE);
	assert_int_equal(detector_config_set_on_mitm(c, DETECTOR_MITM_REFUSE),
	    0);
	assert_int_equal(detector_config_set_on_mitm(c,
	    (enum detector_mitm_policy)7), -1);
	assert_string_equal(detector_mitm_name(DETECTOR_MITM_REROUTE),
	    "reroute");
	assert_string_equal(detector_undecided_name(DETECTOR_UNDECIDED_REJECT),
	    "reject");
	detector_config_free(c);
	/* An empty section is fine; [detector] after a site is global. */
	c = expect_string_ok("[site a.example]\n[detector]\nquorum = 2\n");
	assert_int_equal(c->quorum, 2);
	assert_int_equal(c->sites[0].quorum, 0);
	detector_config_free(c);
}

static void
test_site_errors(void **state)
{
	(void)state;
	expect_string_error("[site a.example]\nquorum = 99\n", "t.conf:2: ",
	    "key 'quorum': '99' is not a number of spheres");
	expect_string_error("[site a.example]\nquorum = 0\n", "t.conf:2: ",
	    "key 'quorum'");
	expect_string_error("[site a.example]\non_undecided = maybe\n",
	    "t.conf:2: ", "key 'on_undecided': 'maybe' is neither");
	expect_string_error("[site a.example]\non_mitm = reroot\n",
	    "t.conf:2: ", "key 'on_mitm': 'reroot' is neither 'refuse' nor "
	    "'reroute'");
	expect_string_error("on_mitm = yes\n", "t.conf:1: ", "key 'on_mitm'");
	expect_string_error("[site a.example]\ndeadline_ms = 5\n",
	    "t.conf:2: ", "key 'deadline_ms': unknown in a [site] section");
	expect_string_error("[site a.example]\nquorum = 2\nquorum = 3\n",
	    "t.conf:3: ", "set twice in [site a.example] (lines 2 and 3)");
	expect_string_error("\n[site a.example]\n[site A.Example]\n",
	    "t.conf:3: ", "given twice (first on line 2)");
	expect_string_error("[site]\nquorum = 2\n", "t.conf:1: ",
	    "name the site");
	expect_string_error("[site bad!name]\n", "t.conf:1: ",
	    "section [site bad!name]");
	expect_string_error("[site a.example b.example]\n", "t.conf:1: ",
	    "one site per section");
	expect_string_error("[sites a.example]\nquorum = 2\n", "t.conf:2: ",
	    "unknown section");
	/* A site's quorum above the spheres configured. */
	expect_string_error("spheres = 127.0.0.1:1 127.0.0.1:2\nquorum = 1\n"
	    "[site a.example]\n\nquorum = 3\n", "t.conf:5: ",
	    "key 'quorum': [site a.example]: quorum 3 is more than the 2 "
	    "spheres");
	expect_string_error("[site a.example]\nquorum = 9\n", "t.conf:2: ",
	    "quorum 9 is more than the 5 spheres");
	expect_string_error("quorum = 2\n  [site a.example]\n", "t.conf:2: ",
	    "indented section header");
}

/* One sphere, several SOCKS ports: one vote, checks spread. */
static void
test_sphere_groups(void **state)
{
	struct detector_config *c;
	unsigned int counts[3] = { 0 }, i, k;
	char err[256];
	struct sphere sp[DETECTOR_MAX_SPHERES];
	unsigned int n;

	(void)state;
	c = expect_string_ok("spheres = 127.0.0.1:9150, "
	    "127.0.0.1:9160|127.0.0.1:9170|[::1]:9180 127.0.0.1:9190\n"
	    "quorum = 3\n");
	assert_int_equal(c->nspheres, 3);
	assert_int_equal(detector_config_nspheres(c), 3);
	assert_int_equal(c->spheres[0].nmembers, 1);
	assert_int_equal(c->spheres[1].nmembers, 3);
	assert_string_equal(detector_config_sphere(c, 1),
	    "127.0.0.1:9160|127.0.0.1:9170|[::1]:9180");
	assert_string_equal(c->spheres[1].member[2].text, "[::1]:9180");
	/* A plain sphere is always its one member. */
	for (i = 0; i < 10; i++)
		assert_ptr_equal(config_sphere_member(&c->spheres[0], i),
		    &c->spheres[0].member[0]);
	/* Spread: every member used, evenly over consecutive picks. */
	for (i = 0; i < 300; i++) {
		const struct sphere_member *m =
		    config_sphere_member(&c->spheres[1], i * 2654435761u);
		k = (unsigned int)(m - c->spheres[1].member);
		assert_true(k < 3);
		counts[k]++;
	}
	for (k = 0; k < 3; k++)
		assert_true(counts[k] >= 80 && counts[k] <= 120);
	detector_config_free(c);

	/* A member counts once across the whole list. */
	assert_int_equal(config_parse_spheres("127.0.0.1:1|127.0.0.1:1", sp,
	    &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "127.0.0.1:1 is listed twice"));
	assert_int_equal(config_parse_spheres("127.0.0.1:1 127.0.0.1:2|"
	    "127.0.0.1:1", sp, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "listed twice"));
	assert_int_equal(config_parse_spheres("127.0.0.1:1||127.0.0.1:2", sp,
	    &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "empty member"));
	assert_int_equal(config_parse_spheres("127.0.0.1:1|", sp, &n, err,
	    sizeof(err)), -1);
	assert_int_equal(config_parse_spheres("|127.0.0.1:1", sp, &n, err,
	    sizeof(err)), -1);
	assert_int_equal(config_parse_spheres("127.0.0.1:1|tor.example:9050",
	    sp, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "host names are not accepted"));
	assert_int_equal(config_parse_spheres("127.0.0.1:1|127.0.0.1:2|"
	    "127.0.0.1:3|127.0.0.1:4|127.0.0.1:5|127.0.0.1:6|127.0.0.1:7|"
	    "127.0.0.1:8|127.0.0.1:9", sp, &n, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than 8 members"));
	/* The quorum counts groups, not members. */
	expect_string_error("spheres = 127.0.0.1:1|127.0.0.1:2\nquorum = 2\n",
	    "t.conf: key 'quorum'", "more than the 1 spheres");
}

/* Issue 14: history_days, 0 (off) to 3650, [detector] only, once. */
static void
test_history_days(void **state)
{
	struct detector_config *c;

	(void)state;
	c = detector_config_new();
	assert_int_equal(c->history_days, DETECTOR_DEFAULT_HISTORY_DAYS);
	assert_int_equal(c->history_days, 30);
	detector_config_free(c);
	c = expect_string_ok("history_days = 0\n");
	assert_int_equal(c->history_days, 0);
	detector_config_free(c);
	c = expect_string_ok("[detector]\nhistory_days = 3650\n");
	assert_int_equal(c->history_days, 3650);
	detector_config_free(c);
	expect_string_error("history_days = 3651\n", "t.conf:1: ",
	    "key 'history_days': '3651' is not a number of days from 0 (key "
	    "continuity off) to 3650");
	expect_string_error("history_days = -1\n", "t.conf:1: ",
	    "key 'history_days'");
	expect_string_error("history_days = 30d\n", "t.conf:1: ",
	    "key 'history_days'");
	expect_string_error("history_days =\n", "t.conf:1: ",
	    "key 'history_days'");
	expect_string_error("history_days = 1\nhistory_days = 2\n",
	    "t.conf:2: ", "key 'history_days': set twice (lines 1 and 2)");
	expect_string_error("[site a.example]\nhistory_days = 5\n",
	    "t.conf:2: ", "key 'history_days': unknown in a [site] section");
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
		cmocka_unit_test(test_roots_open_home_config_not_read),
		cmocka_unit_test(test_exclude_matching),
		cmocka_unit_test(test_repeated_keys_refused),
		cmocka_unit_test(test_continuation_lines_refused),
		cmocka_unit_test(test_line_numbers_exact),
		cmocka_unit_test(test_exclude_prefix_strict),
		cmocka_unit_test(test_starttls_ports),
		cmocka_unit_test(test_trust_world_writable_file_refused),
		cmocka_unit_test(test_trust_other_owner_refused),
		cmocka_unit_test(test_trust_symlink_refused),
		cmocka_unit_test(test_trust_group_writable_folder_refused),
		cmocka_unit_test(test_trust_good_file_accepted),
		cmocka_unit_test(test_trust_search_path),
		cmocka_unit_test(test_site_sections),
		cmocka_unit_test(test_site_errors),
		cmocka_unit_test(test_sphere_groups),
		cmocka_unit_test(test_history_days),
	};
	return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
