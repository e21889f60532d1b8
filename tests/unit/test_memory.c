/*
 * What DetecTor remembers (memory.c): the cache file first, this process's
 * memory when there is none, each problem said once, and only ever the
 * verdict for exactly the key that was checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <nss.h>
#include <prtime.h>

#include "cache.h"
#include "filetrust.h"
#include "fixture.h"
#include "memory.h"
#include "memo.h"

static char dir[] = "/tmp/detector-test-memory-XXXXXX";

/* The clock memory.c, cache.c and memo.c read, moved by clock_skew seconds
 * (0 but in ro_shadow_child). */
static long clock_skew;

time_t
time(time_t *t)
{
	struct timespec ts;
	time_t v;

	syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
	v = ts.tv_sec + clock_skew;
	if (t != NULL)
		*t = v;
	return v;
}

PRTime
PR_Now(void)
{
	struct timespec ts;

	syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
	return (PRTime)(ts.tv_sec + clock_skew) * PR_USEC_PER_SEC +
	    ts.tv_nsec / 1000;
}
static const unsigned char key_a[DETECTOR_SHA256_LEN] = { 0xaa };
static const unsigned char key_b[DETECTOR_SHA256_LEN] = { 0xbb };

static int
setup(void **state)
{
	(void)state;
	return fixture_setup(dir, FIXTURE_NSS);
}

static int
teardown(void **state)
{
	return fixture_teardown(state);
}

static struct detector_config *
config_with_cache(const char *path)
{
	struct detector_config *cfg = detector_config_new();

	assert_non_null(cfg);
	assert_int_equal(detector_config_set_cache(cfg, path), 0);
	return cfg;
}

static void
test_cache_off_remembers_in_this_process(void **state)
{
	struct detector_config *cfg = config_with_cache("off");
	struct memory *m = memory_for(cfg);
	struct cache_policy pol;
	enum detector_verdict v;
	int64_t when;
	char note[256], err[256];

	(void)state;
	assert_non_null(m);
	assert_ptr_equal(memory_for(cfg), m);           /* one per setting */
	assert_int_equal(memory_policy(cfg, NULL, &pol), 0);
	assert_int_equal(memory_recall(m, "a.test", 443, key_a, &pol, 3600, &v,
	    &when), 0);
	memory_record(m, "a.test", 443, key_a, &pol, DETECTOR_ACCEPT, 3600);
	assert_int_equal(memory_recall(m, "A.test", 443, key_a, &pol, 3600, &v,
	    &when), 1);
	assert_int_equal(v, DETECTOR_ACCEPT);
	assert_true(when > 0);
	/* another key, another port: probe again */
	assert_int_equal(memory_recall(m, "a.test", 443, key_b, &pol, 3600, &v,
	    &when), 0);
	assert_int_equal(memory_recall(m, "a.test", 8443, key_a, &pol, 3600, &v,
	    &when), 0);

	/* Review High 2: the asker's validity, not the recorder's, bounds
	 * an ACCEPT in this process's memory too. */
	memory_record(m, "a2.test", 443, key_a, &pol, DETECTOR_ACCEPT,
	    31536000);
	assert_int_equal(memory_recall(m, "a2.test", 443, key_a, &pol, 0, &v,
	    &when), 0);
	assert_int_equal(memory_recall(m, "a2.test", 443, key_a, &pol, 3600,
	    &v, &when), 1);
	assert_int_equal(memory_note(m, note, sizeof(note)), 0);
	assert_null(memory_cache(m, err, sizeof(err)));
	assert_string_equal(err, "the verdict cache is turned off (cache = off)");
	detector_config_free(cfg);
}

static void
test_cache_file_is_written_and_read(void **state)
{
	char path[600], err[256];
	struct detector_config *cfg;
	struct memory *m;
	struct cache *c;
	struct cache_record r;
	struct cache_policy pol;
	enum detector_verdict v;
	int64_t when;

	(void)state;
	snprintf(path, sizeof(path), "%s/verdicts.mdb", dir);
	cfg = config_with_cache(path);
	m = memory_for(cfg);
	assert_int_equal(memory_policy(cfg, NULL, &pol), 0);
	memory_record(m, "b.test", 443, key_a, &pol, DETECTOR_REJECT, 3600);
	assert_int_equal(memory_recall(m, "b.test", 443, key_a, &pol, 3600, &v,
	    &when), 1);
	assert_int_equal(v, DETECTOR_REJECT);
	c = memory_cache(m, err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(cache_get(c, "b.test", 443, &r, err, sizeof(err)), 1);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	assert_int_equal((int64_t)r.last_verified, when);
	detector_config_free(cfg);
}

static void
test_no_home_is_said_once(void **state)
{
	struct detector_config *cfg = config_with_cache(NULL);
	struct memory *m;
	char note[256];
	struct cache_policy pol;
	enum detector_verdict v;
	int64_t when;

	(void)state;
	unsetenv("XDG_CACHE_HOME");
	unsetenv("HOME");
	m = memory_for(cfg);
	assert_int_equal(memory_policy(cfg, NULL, &pol), 0);
	assert_int_equal(memory_note(m, note, sizeof(note)), 1);
	assert_string_equal(note, "no verdict cache: neither XDG_CACHE_HOME "
	    "nor HOME is set; verdicts are kept in memory");
	assert_int_equal(memory_note(m, note, sizeof(note)), 0);
	memory_record(m, "c.test", 443, key_a, &pol, DETECTOR_REJECT, 3600);
	assert_int_equal(memory_recall(m, "c.test", 443, key_a, &pol, 3600, &v,
	    &when), 1);
	assert_int_equal(v, DETECTOR_REJECT);
	assert_int_equal(memory_note(m, note, sizeof(note)), 0);
	detector_config_free(cfg);
}

/*
 * Security review F1: a root process run with another user's HOME (sudo
 * keeps it) does not use that user's cache: the user could choose where
 * root writes, and what root believes.  It says so, keeps verdicts in
 * memory, and creates nothing in the user's HOME.
 */
static void
test_others_home_is_not_used(void **state)
{
	struct detector_config *cfg = config_with_cache(NULL);
	char home[600], p[700], note[1024];
	struct cache_policy pol;
	enum detector_verdict v;
	struct memory *m;
	int64_t when;

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(home, sizeof(home), "%s/alice", dir);
	assert_int_equal(mkdir(home, 0755), 0);
	assert_int_equal(chown(home, 65534, 65534), 0);
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", home, 1);
	m = memory_for(cfg);
	assert_int_equal(memory_policy(cfg, NULL, &pol), 0);
	assert_int_equal(memory_note(m, note, sizeof(note)), 1);
	if (strstr(note, "HOME (") == NULL ||
	    strstr(note, "belongs to uid 65534") == NULL ||
	    strstr(note, "verdicts are kept in memory") == NULL)
		fail_msg("note '%s'", note);
	memory_record(m, "d.test", 443, key_a, &pol, DETECTOR_ACCEPT, 3600);
	assert_int_equal(memory_recall(m, "d.test", 443, key_a, &pol, 3600, &v,
	    &when), 1);
	snprintf(p, sizeof(p), "%s/.cache", home);
	assert_int_equal(access(p, F_OK), -1);
	unsetenv("HOME");
	detector_config_free(cfg);
}

/*
 * Review Low 3: root with a kept HOME (or XDG_CACHE_HOME) naming any
 * root-owned folder (/etc) would create its cache folders there.  As root,
 * a HOME outside root's home is used only if private (0700: nobody else
 * can have chosen it, as a test's mkdtemp() HOME); under root's home
 * always (filetrust_env_dir()).
 */
static void
test_roots_open_folder_is_not_used(void **state)
{
	struct detector_config *cfg = config_with_cache(NULL);
	char home[600], p[700], note[1024], why[1024];

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(home, sizeof(home), "%s/etc-like", dir);
	assert_int_equal(mkdir(home, 0755), 0);
	assert_int_equal(chmod(home, 0755), 0);
	assert_int_equal(filetrust_env_dir("HOME", home, why, sizeof(why)), 0);
	if (strstr(why, "mode 755") == NULL)
		fail_msg("why '%s'", why);
	/* A missing XDG_CACHE_HOME under it: judged by that folder. */
	snprintf(p, sizeof(p), "%s/new/cache", home);
	assert_int_equal(filetrust_env_dir("XDG_CACHE_HOME", p, why,
	    sizeof(why)), 0);
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", home, 1);
	(void)memory_for(cfg);
	assert_int_equal(memory_note(memory_for(cfg), note, sizeof(note)), 1);
	if (strstr(note, "HOME (") == NULL ||
	    strstr(note, "kept in memory") == NULL)
		fail_msg("note '%s'", note);
	snprintf(p, sizeof(p), "%s/.cache", home);
	assert_int_equal(access(p, F_OK), -1);
	/* Private, or root's own home: used. */
	assert_int_equal(chmod(home, 0700), 0);
	assert_int_equal(filetrust_env_dir("HOME", home, why, sizeof(why)), 1);
	/* Review Low 2: ".." through a missing folder was climbed by text
	 * (/root/missing/../../tmp was judged as /root). */
	snprintf(p, sizeof(p), "%s/missing/../../../../../tmp", home);
	assert_int_equal(filetrust_env_dir("HOME", p, why, sizeof(why)), 0);
	if (strstr(why, "\"..\"") == NULL)
		fail_msg("why '%s'", why);
	assert_int_equal(filetrust_env_dir("HOME", "/root/missing/../../tmp",
	    why, sizeof(why)), 0);
	assert_int_equal(filetrust_env_dir("HOME", "/root", why,
	    sizeof(why)), 1);
	assert_int_equal(filetrust_env_dir("HOME", "/", why, sizeof(why)), 0);
	unsetenv("HOME");
	detector_config_free(cfg);
}

/*
 * Security review F5: `sphere-probe --quorum 1` and a browser with the
 * default quorum 4 share the user's cache.  The ACCEPT the first leaves
 * must not answer the second (nor one with other spheres), in the cache
 * file or in this process's memory; the browser's own ACCEPT answers
 * both.
 */
static void
test_policy_is_remembered(void **state)
{
	struct detector_config *lax, *strict, *other;
	struct cache_policy p1, p4, po;
	char path[600];
	enum detector_verdict v;
	struct memory *m;
	int64_t when;
	int round;

	(void)state;
	for (round = 0; round < 2; round++) {
		snprintf(path, sizeof(path), "%s/policy.mdb", dir);
		lax = config_with_cache(round == 0 ? path : "off");
		strict = config_with_cache(round == 0 ? path : "off");
		other = config_with_cache(round == 0 ? path : "off");
		assert_int_equal(detector_config_set_quorum(lax, 1), 0);
		assert_int_equal(detector_config_set_spheres(other,
		    "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,"
		    "127.0.0.1:5"), 0);
		assert_int_equal(memory_policy(lax, NULL, &p1), 0);
		assert_int_equal(memory_policy(strict, NULL, &p4), 0);
		assert_int_equal(memory_policy(other, NULL, &po), 0);
		m = memory_for(lax);
		assert_ptr_equal(m, memory_for(strict));
		memory_record(m, "e.test", 443, key_a, &p1, DETECTOR_ACCEPT,
		    3600);
		assert_int_equal(memory_recall(m, "e.test", 443, key_a, &p1,
		    3600, &v, &when), 1);
		assert_int_equal(memory_recall(m, "e.test", 443, key_a, &p4,
		    3600, &v, &when), 0);
		memory_record(m, "e.test", 443, key_a, &p4, DETECTOR_ACCEPT,
		    3600);
		assert_int_equal(memory_recall(m, "e.test", 443, key_a, &p4,
		    3600, &v, &when), 1);
		assert_int_equal(memory_recall(m, "e.test", 443, key_a, &p1,
		    3600, &v, &when), 1);
		assert_int_equal(memory_recall(m, "e.test", 443, key_a, &po,
		    3600, &v, &when), 0);
		detector_config_free(lax);
		detector_config_free(strict);
		detector_config_free(other);
	}
}

/*
 * A [site] quorum is the one the check decides under, so it is the one
 * remembered: an ACCEPT reached with one match under a site's quorum 1
 * must not answer a process that needs two for that host (review: it was
 * stamped with the global quorum 2), and a strict site's REJECT must not
 * answer a laxer asker.
 */
static void
test_site_quorum_is_remembered(void **state)
{
	static const char lax_text[] = "[detector]\nquorum = 2\n\n"
	    "[site status.partner.example]\nquorum = 1\n";
	static const char strict_text[] = "[detector]\nquorum = 2\n";
	struct detector_config *lax, *strict;
	struct cache_policy pl, ps, pg;
	char path[600];
	enum detector_verdict v;
	struct memory *m;
	int64_t when;
	int round;

	(void)state;
	for (round = 0; round < 2; round++) {
		snprintf(path, sizeof(path), "%s/site.mdb", dir);
		lax = config_with_cache(round == 0 ? path : "off");
		strict = config_with_cache(round == 0 ? path : "off");
		assert_int_equal(config_load_string(lax, lax_text,
		    strlen(lax_text), "lax"), 0);
		assert_int_equal(config_load_string(strict, strict_text,
		    strlen(strict_text), "strict"), 0);
		assert_int_equal(memory_policy(lax, "status.partner.example",
		    &pl), 0);
		assert_int_equal(memory_policy(strict,
		    "status.partner.example", &ps), 0);
		assert_int_equal(memory_policy(lax, "other.example", &pg), 0);
		assert_int_equal(pl.quorum, 1);
		assert_int_equal(ps.quorum, 2);
		assert_int_equal(pg.quorum, 2);
		m = memory_for(lax);
		assert_ptr_equal(m, memory_for(strict));
		memory_record(m, "status.partner.example", 443, key_a, &pl,
		    DETECTOR_ACCEPT, 3600);
		assert_int_equal(memory_recall(m, "status.partner.example",
		    443, key_a, &ps, 3600, &v, &when), 0);
		assert_int_equal(memory_recall(m, "status.partner.example",
		    443, key_a, &pl, 3600, &v, &when), 1);
		detector_config_free(lax);
		detector_config_free(strict);
	}
}

/*
 * A child as nobody (as root the file is writable whatever its mode) with
 * a read-only cache file holding an ACCEPT of key_a for HOST:443, made a
 * moment ago: then check(memory, pol) in that process.  Its exit status:
 * check()'s, or 10-15 if the set-up failed.
 */
static int
read_only_child(const struct cache_policy *pol, const char *host,
    int (*check)(struct memory *, const struct cache_policy *))
{
	char folder[] = "/tmp/detector-test-ro-XXXXXX", path[600], note[512],
	    err[512], cmd[600];
	struct cache *c;
	struct memory *m;
	int rc;

	if (geteuid() == 0 && (setgid(65534) == -1 || setuid(65534) == -1))
		return 10;
	if (mkdtemp(folder) == NULL)
		return 11;
	snprintf(path, sizeof(path), "%s/verdicts.mdb", folder);
	if ((c = cache_open(path, note, sizeof(note), err,
	    sizeof(err))) == NULL)
		return 12;
	if (cache_remember(c, host, 443, key_a, pol, DETECTOR_ACCEPT,
	    (uint32_t)time(NULL) - 10, 86400, err, sizeof(err)) != 0)
		return 13;
	cache_close(c);
	if (chmod(path, 0400) == -1)
		return 14;
	m = memory_for(config_with_cache(path));
	if ((c = memory_cache(m, err, sizeof(err))) == NULL ||
	    !cache_readonly(c))
		rc = 15;        /* the set-up did not make it read-only */
	else
		rc = check(m, pol);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", folder);
	(void)!system(cmd);
	return rc;
}

/* Runs read_only_child() in a child process; asserts it exits 0. */
static void
in_read_only_child(const char *host,
    int (*check)(struct memory *, const struct cache_policy *))
{
	struct detector_config *cfg = config_with_cache("off");
	struct cache_policy pol;
	int status;
	pid_t pid;

	/* The policy before fork(): NSS is not used in the child. */
	assert_int_equal(memory_policy(cfg, NULL, &pol), 0);
	if ((pid = fork()) == 0)
		_exit(read_only_child(&pol, host, check));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	detector_config_free(cfg);
}

/*
 * Review Medium: a REJECT that cannot be written (here: a read-only cache
 * file) is kept in memory, and must not be hidden by the older ACCEPT the
 * file holds for the same key.
 */
static int
reject_not_shadowed(struct memory *m, const struct cache_policy *pol)
{
	enum detector_verdict v;
	int64_t when;
	int rc = 0;

	memory_record(m, "ro.test", 443, key_a, pol, DETECTOR_REJECT, 86400);
	if (memory_recall(m, "ro.test", 443, key_a, pol, 86400, &v,
	    &when) != 1)
		rc = 16;
	else if (v != DETECTOR_REJECT)
		rc = 17;        /* the file's older ACCEPT answered */
	else {
		/* Security review Medium 1: ten minutes on, the REJECT kept
		 * in memory has expired; the file's older ACCEPT must not
		 * answer again (no answer: probe again). */
		clock_skew = 601;
		if (memory_recall(m, "ro.test", 443, key_a, pol, 86400, &v,
		    &when) != 0)
			rc = v == DETECTOR_ACCEPT ? 18 : 19;
		clock_skew = 0;
	}
	return rc;
}

static void
test_unwritten_reject_is_not_shadowed(void **state)
{
	(void)state;
	in_read_only_child("ro.test", reject_not_shadowed);
}

static long
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 +
	    (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

struct opener {
	struct memory *m;
	struct cache_policy pol;
	long ms;
	int found;
};

static void *
open_in_thread(void *arg)
{
	struct opener *o = arg;
	struct timespec t0;
	enum detector_verdict v;
	int64_t when;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	o->found = memory_recall(o->m, "t.test", 443, key_a, &o->pol, 3600, &v,
	    &when);
	o->ms = ms_since(&t0);
	return NULL;
}

/*
 * Security review F4: a process stuck holding the cache's guard
 * exclusively (stopped while creating or checking the file) used to make
 * every process wait 10 s inside memory_lock (every thread of it stalled),
 * and then run without the cache for good.  Now: memory_for() does not
 * open the file; the first lookup that needs it waits at most about 2 s,
 * while other threads go on with this process's memory; the open is
 * tried again later and the cache is used once the holder is gone; and a
 * child after fork() opens its own handle and writes the file.
 */
static void
test_stuck_guard_holder(void **state)
{
	char path[600], guard[620], note[1024], err[1024], b;
	struct detector_config *cfg;
	struct cache_record r;
	struct opener o;
	struct timespec t0;
	enum detector_verdict v;
	int64_t when;
	int go[2], release[2], status, notes = 0, used_again = 0;
	pthread_t th;
	struct cache *c;
	pid_t pid;

	(void)state;
	snprintf(path, sizeof(path), "%s/stuck/verdicts.mdb", dir);
	snprintf(guard, sizeof(guard), "%s-guard", path);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(release), 0);
	if ((pid = fork()) == 0) {
		struct flock fl;
		int fd;

		close(go[0]);
		close(release[1]);
		snprintf(note, sizeof(note), "%s/stuck", dir);
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if (mkdir(note, 0700) == -1 ||
		    (fd = open(guard, O_RDWR | O_CREAT, 0600)) == -1 ||
		    fcntl(fd, F_OFD_SETLK, &fl) == -1)
			_exit(1);
		(void)!write(go[1], "x", 1);
		alarm(30);
		(void)!read(release[0], &b, 1);   /* EOF: let go */
		_exit(0);
	}
	close(go[1]);
	close(release[0]);
	assert_int_equal(read(go[0], &b, 1), 1);

	cfg = config_with_cache(path);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	o.m = memory_for(cfg);
	if (ms_since(&t0) > 500)
		fail_msg("memory_for() took %ld ms while another process held "
		    "the guard", ms_since(&t0));
	assert_int_equal(memory_policy(cfg, NULL, &o.pol), 0);
	assert_int_equal(pthread_create(&th, NULL, open_in_thread, &o), 0);
	usleep(300000);
	/* Meanwhile another thread is not held up. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	memory_record(o.m, "u.test", 443, key_a, &o.pol, DETECTOR_ACCEPT,
	    3600);
	assert_int_equal(memory_recall(o.m, "u.test", 443, key_a, &o.pol, 3600,
	    &v, &when), 1);
	if (ms_since(&t0) > 300)
		fail_msg("another thread waited %ld ms for the opening one",
		    ms_since(&t0));
	assert_int_equal(pthread_join(th, NULL), 0);
	if (o.ms < 1500 || o.ms > 5000)
		fail_msg("the open waited %ld ms for a stuck holder (want "
		    "about 2 s)", o.ms);
	assert_int_equal(memory_note(o.m, note, sizeof(note)), 1);
	if (strstr(note, "for over 2 s") == NULL ||
	    strstr(note, "kept in memory") == NULL)
		fail_msg("note '%s'", note);
	assert_null(memory_cache(o.m, err, sizeof(err)));   /* not yet */

	/* The holder goes; within the back-off the cache is used again. */
	close(release[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	usleep(1200000);
	c = memory_cache(o.m, err, sizeof(err));
	if (c == NULL)
		fail_msg("cache not used again: %s", err);
	while (memory_note(o.m, note, sizeof(note)) == 1) {
		notes++;
		used_again += strstr(note, "is used again") != NULL;
	}
	assert_int_equal(used_again, 1);

	/* A child opens its own handle (not the parent's) and writes. */
	if ((pid = fork()) == 0) {
		struct cache *mine;

		memory_record(o.m, "child.test", 443, key_a, &o.pol,
		    DETECTOR_REJECT, 3600);
		mine = memory_cache(o.m, err, sizeof(err));
		_exit(mine == NULL || mine == c || cache_get(mine, "child.test",
		    443, &r, err, sizeof(err)) != 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(cache_get(c, "child.test", 443, &r, err, sizeof(err)),
	    1);
	assert_int_equal(r.verdict, DETECTOR_REJECT);
	(void)notes;
	detector_config_free(cfg);
}

/*
 * Issue 14: the key history exists without a cache file too (cache = off:
 * this process's memory).  An ACCEPT confirms the key; a REJECT and an
 * UNDECIDED leave the history alone, and an UNDECIDED is not remembered
 * at all (it answers nothing: the next check probes).
 */
static void
test_history_in_memory_only(void **state)
{
	struct detector_config *cfg = config_with_cache("off");
	struct memory *m = memory_for(cfg);
	struct cache_history h;
	struct cache_policy pol;
	enum detector_verdict v;
	int64_t when;

	(void)state;
	assert_int_equal(memory_policy(cfg, NULL, &pol), 0);
	assert_int_equal(memory_history(m, "hm.test", 443, &h), 0);
	assert_int_equal(h.n, 0);
	memory_record(m, "hm.test", 443, key_a, &pol, DETECTOR_ACCEPT, 3600);
	assert_int_equal(memory_history(m, "HM.test", 443, &h), 1);
	assert_int_equal(h.n, 1);
	assert_memory_equal(h.e[0].spki, key_a, DETECTOR_SHA256_LEN);
	assert_int_equal(h.e[0].policy.quorum, pol.quorum);
	memory_record(m, "hm.test", 443, key_b, &pol, DETECTOR_UNDECIDED, 3600);
	assert_int_equal(memory_recall(m, "hm.test", 443, key_b, &pol, 3600,
	    &v, &when), 0);
	memory_record(m, "hm.test", 443, key_b, &pol, DETECTOR_REJECT, 3600);
	assert_int_equal(memory_history(m, "hm.test", 443, &h), 1);
	assert_int_equal(h.n, 1);
	/* The ACCEPT it replaced in memory: the history still holds it. */
	memory_record(m, "hm.test", 443, key_b, &pol, DETECTOR_ACCEPT, 3600);
	assert_int_equal(memory_history(m, "hm.test", 443, &h), 1);
	assert_int_equal(h.n, 2);
	assert_int_equal(memory_history(m, "hm.test", 8443, &h), 0);
	detector_config_free(cfg);
}

/* A read-only cache file: its history (key_a, written before) and the
 * confirmation kept in memory (key_b) are both there. */
static int
history_merged(struct memory *m, const struct cache_policy *pol)
{
	struct cache_history h;

	memory_record(m, "roh.test", 443, key_b, pol, DETECTOR_ACCEPT, 86400);
	if (memory_history(m, "roh.test", 443, &h) != 1 || h.n != 2)
		return 16;
	if (memcmp(h.e[0].spki, key_b, DETECTOR_SHA256_LEN) != 0 ||
	    memcmp(h.e[1].spki, key_a, DETECTOR_SHA256_LEN) != 0)
		return 17;
	return 0;
}

static void
test_history_with_a_read_only_cache(void **state)
{
	(void)state;
	in_read_only_child("roh.test", history_merged);
}

/* Security review L3: a full table of recent histories pushes none out:
 * the 257th site is not kept, the first one still is. */
static void
test_memo_history_is_not_pushed_out(void **state)
{
	static struct memo memo;        /* large: not on the stack */
	struct cache_policy pol = { 4, 5, { 0 } };
	struct cache_history h;
	char host[64];
	unsigned int i;

	(void)state;
	for (i = 0; i <= MEMO_HISTORIES; i++) {
		snprintf(host, sizeof(host), "s%u.test", i);
		memo_confirm(&memo, host, 443, key_a, &pol, 100000 + i);
	}
	assert_int_equal(memo_history(&memo, "s0.test", 443, &h), 1);
	assert_int_equal(memo_history(&memo, "s256.test", 443, &h), 0);
	/* Once the oldest is older than MEMO_HISTORY_KEEP_DAYS, it goes. */
	memo_confirm(&memo, "late.test", 443, key_a, &pol,
	    100000 + MEMO_HISTORY_KEEP_DAYS * 86400);
	assert_int_equal(memo_history(&memo, "late.test", 443, &h), 1);
	assert_int_equal(memo_history(&memo, "s0.test", 443, &h), 0);
	assert_int_equal(memo_history(&memo, "s1.test", 443, &h), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_off_remembers_in_this_process),
		cmocka_unit_test(test_cache_file_is_written_and_read),
		cmocka_unit_test(test_no_home_is_said_once),
		cmocka_unit_test(test_others_home_is_not_used),
		cmocka_unit_test(test_roots_open_folder_is_not_used),
		cmocka_unit_test(test_policy_is_remembered),
		cmocka_unit_test(test_site_quorum_is_remembered),
		cmocka_unit_test(test_unwritten_reject_is_not_shadowed),
		cmocka_unit_test(test_stuck_guard_holder),
		cmocka_unit_test(test_history_in_memory_only),
		cmocka_unit_test(test_history_with_a_read_only_cache),
		cmocka_unit_test(test_memo_history_is_not_pushed_out),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
