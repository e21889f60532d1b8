/*
 * The verdict cache: the record codec (strict), the store, the verdict
 * policy, damage handling (never while another process has the file
 * open), and several processes writing at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "cache.h"
#include "fixture.h"

static char dir[] = "/tmp/detector-test-cache-XXXXXX";
static char path[600];
static char note[1024], err[1024];

static int
setup(void **state)
{
	(void)state;
	if (fixture_setup(dir, 0) == -1)
		return -1;
	snprintf(path, sizeof(path), "%s/sub/verdicts.mdb", dir);
	return 0;
}

static int
teardown(void **state)
{
	return fixture_teardown(state);
}

static struct cache_policy
policy(unsigned int k, unsigned int n, unsigned char set)
{
	struct cache_policy p;

	memset(&p, 0, sizeof(p));
	p.quorum = k;
	p.nspheres = n;
	memset(p.spheres, set, sizeof(p.spheres));
	return p;
}

static struct cache_record
record(enum detector_verdict v, unsigned char fill)
{
	struct cache_record r;

	memset(&r, 0, sizeof(r));
	r.verdict = v;
	r.first_seen = 1000;
	r.last_verified = 2000;
	r.expires = 3000;
	memset(r.spki, fill, sizeof(r.spki));
	r.policy = policy(4, 5, 0x55);
	return r;
}

static void
test_record_codec(void **state)
{
	struct cache_record r = record(DETECTOR_REJECT, 0xab), back;
	unsigned char buf[CACHE_RECORD_LEN];
	size_t i;

	(void)state;
	cache_record_encode(&r, buf);
	assert_int_equal(cache_record_decode(buf, sizeof(buf), &back), 0);
	assert_memory_equal(&r, &back, sizeof(r));
	assert_int_equal(CACHE_RECORD_LEN, 64);   /* <= 64 bytes per entry */
	/* Wrong length, version, reserved bytes, verdict, time order. */
	assert_int_equal(cache_record_decode(buf, sizeof(buf) - 1, &back), -1);
	for (i = 0; i < 4; i++) {
		unsigned char bad[CACHE_RECORD_LEN];
		memcpy(bad, buf, sizeof(bad));
		bad[i] ^= 0x80;
		assert_int_equal(cache_record_decode(bad, sizeof(bad), &back),
		    -1);
	}
	r.last_verified = 5000;   /* after expires */
	cache_record_encode(&r, buf);
	assert_int_equal(cache_record_decode(buf, sizeof(buf), &back), -1);
}

static void
test_keys(void **state)
{
	char k[CACHE_KEY_MAX];
	char big[300];

	(void)state;
	assert_int_equal(cache_key("Bank.Example.", 443, k, sizeof(k)), 16);
	assert_string_equal(k, "bank.example:443");
	memset(big, 'a', 254);
	big[254] = '\0';
	assert_int_equal(cache_key(big, 443, k, sizeof(k)), 0);
	assert_int_equal(cache_key("a", 0, k, sizeof(k)), 0);
}

static void
test_store_recall_forget(void **state)
{
	struct cache *c = cache_open(path, note, sizeof(note), err, sizeof(err));
	struct cache_record r = record(DETECTOR_ACCEPT, 1), got;
	unsigned char other[DETECTOR_SHA256_LEN];
	struct stat sb;

	(void)state;
	assert_non_null(c);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(cache_get(c, "a.test", 443, &got, err, sizeof(err)), 0);
	assert_int_equal(cache_put(c, "A.test", 443, &r, err, sizeof(err)), 0);
	assert_int_equal(cache_get(c, "a.TEST", 443, &got, err, sizeof(err)), 1);
	assert_memory_equal(&r, &got, sizeof(r));
	/* Policy: same key and not expired only. */
	assert_int_equal(cache_recall(c, "a.test", 443, r.spki, &r.policy,
	    UINT32_MAX, 2500, &got), 1);
	assert_int_equal(cache_recall(c, "a.test", 443, r.spki, &r.policy,
	    UINT32_MAX, 3000, &got), 0);
	memset(other, 2, sizeof(other));
	assert_int_equal(cache_recall(c, "a.test", 443, other, &r.policy,
	    UINT32_MAX, 2500, &got), 0);
	/* first_seen survives re-verification of the same key. */
	assert_int_equal(cache_remember(c, "b.test", 443, r.spki,
	    &r.policy, DETECTOR_ACCEPT, 10000, 86400, err, sizeof(err)), 0);
	assert_int_equal(cache_remember(c, "b.test", 443, r.spki,
	    &r.policy, DETECTOR_ACCEPT, 20000, 86400, err, sizeof(err)), 0);
	assert_int_equal(cache_get(c, "b.test", 443, &got, err, sizeof(err)), 1);
	assert_int_equal(got.first_seen, 10000);
	assert_int_equal(got.last_verified, 20000);
	assert_int_equal(got.expires, 20000 + 86400);
	/* REJECT is kept briefly; an UNDECIDED not at all (issue 14). */
	assert_int_equal(cache_remember(c, "c.test", 443, r.spki,
	    &r.policy, DETECTOR_REJECT, 100, 86400, err, sizeof(err)), 0);
	assert_int_equal(cache_get(c, "c.test", 443, &got, err, sizeof(err)), 1);
	assert_int_equal(got.expires, 100 + CACHE_TTL_REJECT);
	assert_int_equal(cache_remember(c, "d.test", 443, r.spki,
	    &r.policy, DETECTOR_UNDECIDED, 100, 86400, err, sizeof(err)), -1);
	assert_int_equal(cache_get(c, "d.test", 443, &got, err, sizeof(err)), 0);
	/* Forget one port, or all ports of a host, and nothing else. */
	assert_int_equal(cache_put(c, "a.test", 8443, &r, err, sizeof(err)), 0);
	assert_int_equal(cache_put(c, "a.testing", 443, &r, err, sizeof(err)), 0);
	assert_int_equal(cache_forget(c, "a.test", 8443, err, sizeof(err)), 1);
	assert_int_equal(cache_put(c, "a.test", 8443, &r, err, sizeof(err)), 0);
	assert_int_equal(cache_forget(c, "a.test", 0, err, sizeof(err)), 2);
	assert_int_equal(cache_get(c, "a.testing", 443, &got, err,
	    sizeof(err)), 1);
	cache_close(c);
}

/*
 * Review Low 4: a cache file others may read leaks the hosts visited, and
 * a guard they can open lets them hold a shared lock for ever.  Opening
 * makes the data, lock and guard files private (0600) again.
 */
static void
test_readable_files_made_private(void **state)
{
	static const char *const suffix[] = { "", "-lock", "-guard" };
	char p[700];
	struct cache *c;
	struct stat sb;
	size_t i;

	(void)state;
	c = cache_open(path, note, sizeof(note), err, sizeof(err));
	assert_non_null(c);
	cache_close(c);
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		assert_int_equal(chmod(p, 0644), 0);
	}
	c = cache_open(path, note, sizeof(note), err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		assert_int_equal(stat(p, &sb), 0);
		if ((sb.st_mode & 0777) != 0600)
			fail_msg("%s is mode %03o", p,
			    (unsigned int)(sb.st_mode & 0777));
	}
	cache_close(c);
}

/*
 * Review High 2: the asker's cache_validity bounds a remembered ACCEPT.
 * A lax process (cache_validity one year) leaves an ACCEPT; a process
 * trusting ACCEPTs for 60 s is answered only within 60 s of the probe.
 * REJECT and UNDECIDED keep their fixed lifetimes.  A verification in the
 * future (the clock went back) answers no ACCEPT.
 */
static void
test_asker_validity_bounds_accept(void **state)
{
	struct cache *c = cache_open(path, note, sizeof(note), err, sizeof(err));
	struct cache_policy pol = policy(2, 3, 0x66);
	unsigned char spki[DETECTOR_SHA256_LEN];
	struct cache_record got;

	(void)state;
	assert_non_null(c);
	memset(spki, 0x43, sizeof(spki));
	assert_int_equal(cache_remember(c, "v.test", 443, spki, &pol,
	    DETECTOR_ACCEPT, 100000, 31536000, err, sizeof(err)), 0);
	assert_int_equal(cache_recall(c, "v.test", 443, spki, &pol, 60,
	    100030, &got), 1);
	assert_int_equal(cache_recall(c, "v.test", 443, spki, &pol, 60,
	    100060, &got), 0);
	assert_int_equal(cache_recall(c, "v.test", 443, spki, &pol, 60,
	    100000 + 30 * 86400, &got), 0);
	assert_int_equal(cache_recall(c, "v.test", 443, spki, &pol,
	    31536000, 100000 + 30 * 86400, &got), 1);
	assert_int_equal(cache_recall(c, "v.test", 443, spki, &pol,
	    31536000, 99000, &got), 0);
	/* REJECT: its own 600 s, whatever the asker's validity. */
	assert_int_equal(cache_remember(c, "w.test", 443, spki, &pol,
	    DETECTOR_REJECT, 100000, 31536000, err, sizeof(err)), 0);
	assert_int_equal(cache_recall(c, "w.test", 443, spki, &pol, 60,
	    100300, &got), 1);
	assert_int_equal(got.verdict, DETECTOR_REJECT);
	assert_int_equal(cache_recall(c, "w.test", 443, spki, &pol, 60,
	    100000 + CACHE_TTL_REJECT, &got), 0);
	/* The same rule, pure. */
	assert_int_equal(cache_fresh(DETECTOR_ACCEPT, 10, 1000, 60, 69), 1);
	assert_int_equal(cache_fresh(DETECTOR_ACCEPT, 10, 1000, 60, 70), 0);
	assert_int_equal(cache_fresh(DETECTOR_ACCEPT, 10, 1000, 0, 10), 0);
	/* An UNDECIDED (left by an older version) answers nobody. */
	assert_int_equal(cache_fresh(DETECTOR_UNDECIDED, 10, 40, 5, 39), 0);
	assert_int_equal(cache_fresh(DETECTOR_REJECT, 10, 40, 5, 39), 1);
	assert_int_equal(cache_fresh(DETECTOR_REJECT, 10, 40, 5, 40), 0);
	cache_close(c);
}

/*
 * Security review F5: a verdict answers only an asker whose policy would
 * have reached it too.  `sphere-probe --quorum 1` leaves an ACCEPT; a
 * browser with quorum 4 of the same spheres must probe again, and so must
 * one with other spheres.  A REJECT reached under quorum 4 (2 of 5
 * spheres saw another key) holds for quorum 5 (1 is enough there) but not
 * for quorum 3 (3 needed).  A version 1 record (no policy) answers
 * nobody, and a record saying quorum > spheres is refused.
 */
static void
test_policy_of_remembered_verdicts(void **state)
{
	struct cache *c = cache_open(path, note, sizeof(note), err, sizeof(err));
	struct cache_policy q1 = policy(1, 5, 0x11), q4 = policy(4, 5, 0x11),
	    q3 = policy(3, 5, 0x11), q5 = policy(5, 5, 0x11),
	    other = policy(4, 5, 0x22), six = policy(4, 6, 0x11);
	struct cache_record r = record(DETECTOR_ACCEPT, 7), got;
	unsigned char buf[CACHE_RECORD_LEN];

	(void)state;
	assert_non_null(c);
	assert_int_equal(cache_remember(c, "p.test", 443, r.spki, &q1,
	    DETECTOR_ACCEPT, 1000, 86400, err, sizeof(err)), 0);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &q4, UINT32_MAX,
	    2000, &got), 0);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &q1, UINT32_MAX,
	    2000, &got), 1);
	assert_int_equal(cache_remember(c, "p.test", 443, r.spki, &q4,
	    DETECTOR_ACCEPT, 1000, 86400, err, sizeof(err)), 0);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &q4, UINT32_MAX,
	    2000, &got), 1);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &q3, UINT32_MAX,
	    2000, &got), 1);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &q5, UINT32_MAX,
	    2000, &got), 0);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &other,
	    UINT32_MAX, 2000, &got), 0);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &six,
	    UINT32_MAX, 2000, &got), 0);
	/* REJECT: n-k+1 mismatches; under k = 4 that is 2, enough for 5. */
	assert_int_equal(cache_remember(c, "p.test", 443, r.spki, &q4,
	    DETECTOR_REJECT, 1000, 86400, err, sizeof(err)), 0);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &q5, UINT32_MAX,
	    1100, &got), 1);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &q3, UINT32_MAX,
	    1100, &got), 0);
	/* UNDECIDED: an older version's record answers no one. */
	r.verdict = DETECTOR_UNDECIDED;
	r.first_seen = r.last_verified = 1000;
	r.expires = 1030;
	r.policy = q4;
	assert_int_equal(cache_put(c, "p.test", 443, &r, err, sizeof(err)), 0);
	assert_int_equal(cache_recall(c, "p.test", 443, r.spki, &q4, UINT32_MAX,
	    1010, &got), 0);
	/* No policy, no record. */
	memset(&q1, 0, sizeof(q1));
	assert_int_equal(cache_remember(c, "p.test", 443, r.spki, &q1,
	    DETECTOR_ACCEPT, 1000, 86400, err, sizeof(err)), -1);
	/* Version 1 (48 bytes): read, with an unknown policy. */
	cache_record_encode(&r, buf);
	buf[0] = 1;
	buf[2] = buf[3] = 0;
	assert_int_equal(cache_record_decode(buf, CACHE_RECORD_V1_LEN, &got),
	    0);
	assert_int_equal(got.policy.quorum, 0);
	assert_int_equal(cache_policy_covers(&got.policy, &q4,
	    DETECTOR_ACCEPT), 0);
	buf[2] = 1;
	assert_int_equal(cache_record_decode(buf, CACHE_RECORD_V1_LEN, &got),
	    -1);
	/* Version 2 with a quorum above its spheres, or too many spheres. */
	cache_record_encode(&r, buf);
	buf[2] = 6;
	assert_int_equal(cache_record_decode(buf, sizeof(buf), &got), -1);
	buf[2] = 4;
	buf[3] = DETECTOR_MAX_SPHERES + 1;
	assert_int_equal(cache_record_decode(buf, sizeof(buf), &got), -1);
	cache_close(c);
}

/*
 * Security review F7a: a child after fork() must not use the parent's
 * LMDB environment (shared map and reader slot, none of the parent's
 * fcntl locks).  Every call on the inherited handle fails there; closing
 * it leaves the parent's environment alone; the child can open its own;
 * the parent's handle keeps working.
 */
static void
test_handle_is_not_used_after_fork(void **state)
{
	struct cache *c = cache_open(path, note, sizeof(note), err, sizeof(err));
	struct cache_record r = record(DETECTOR_ACCEPT, 9), got;
	int status;
	pid_t pid;

	(void)state;
	assert_non_null(c);
	assert_int_equal(cache_put(c, "fork.test", 443, &r, err, sizeof(err)),
	    0);
	if ((pid = fork()) == 0) {
		struct cache *mine;
		int bad = 0;

		if (cache_get(c, "fork.test", 443, &got, err, sizeof(err)) != -1 ||
		    strstr(err, "before fork()") == NULL)
			bad |= 1;
		if (cache_recall(c, "fork.test", 443, r.spki, &r.policy,
		    UINT32_MAX, 2500, &got) != 0)
			bad |= 2;
		if (cache_put(c, "child.test", 443, &r, err, sizeof(err)) != -1)
			bad |= 4;
		cache_close(c);
		mine = cache_open(path, note, sizeof(note), err, sizeof(err));
		if (mine == NULL || cache_get(mine, "fork.test", 443, &got, err,
		    sizeof(err)) != 1 || cache_put(mine, "child.test", 443, &r,
		    err, sizeof(err)) != 0)
			bad |= 8;
		cache_close(mine);
		_exit(bad);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("child: failed checks 0x%x (1 get, 2 recall, 4 put on "
		    "the parent's handle; 8 its own handle)",
		    WEXITSTATUS(status));
	assert_int_equal(cache_get(c, "child.test", 443, &got, err,
	    sizeof(err)), 1);
	assert_int_equal(cache_put(c, "parent.test", 443, &r, err,
	    sizeof(err)), 0);
	cache_close(c);
}

/* Does some process hold LMDB's lock (byte 0) on p's lock file?  Asked
 * from a child: fcntl() never reports the asking process's own locks. */
static int
lmdb_lock_held(const char *p)
{
	char lock[800];
	int status;
	pid_t pid;

	snprintf(lock, sizeof(lock), "%s-lock", p);
	if ((pid = fork()) == 0) {
		struct flock fl;
		int fd = open(lock, O_RDWR);

		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		fl.l_len = 1;
		if (fd == -1 || fcntl(fd, F_GETLK, &fl) == -1)
			_exit(2);
		_exit(fl.l_type != F_UNLCK);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) < 2);
	return WEXITSTATUS(status);
}

/*
 * Security review F6: one handle per file and process is kept by what the
 * file is, not by how its path is spelled.  Two spellings used to give
 * two LMDB environments on one file in one process; closing one dropped
 * the other's fcntl locks (they are per process), so other processes saw
 * the file as unused by anyone (and a process alone could repair it under
 * the first one's map).  Now both spellings give one counted handle.
 */
static void
test_two_spellings_one_handle(void **state)
{
	char p2[700], p3[700], link_[700];
	struct cache *a, *b, *c;
	struct cache_record r = record(DETECTOR_ACCEPT, 3), got;

	(void)state;
	snprintf(p2, sizeof(p2), "%s/spell/verdicts.mdb", dir);
	snprintf(p3, sizeof(p3), "%s//spell/../spell/./verdicts.mdb", dir);
	a = cache_open(p2, note, sizeof(note), err, sizeof(err));
	assert_non_null(a);
	b = cache_open(p3, note, sizeof(note), err, sizeof(err));
	assert_non_null(b);
	assert_int_equal(lmdb_lock_held(p2), 1);
	cache_close(b);
	if (!lmdb_lock_held(p2))
		fail_msg("closing the second spelling's handle dropped the "
		    "first one's LMDB lock");
	assert_int_equal(cache_put(a, "s.test", 443, &r, err, sizeof(err)), 0);
	/* Through a symlink too, and the same handle each time. */
	snprintf(link_, sizeof(link_), "%s/spell-link", dir);
	assert_int_equal(symlink("spell", link_), 0);
	snprintf(p3, sizeof(p3), "%s/spell-link/verdicts.mdb", dir);
	c = cache_open(p3, note, sizeof(note), err, sizeof(err));
	assert_ptr_equal(c, a);
	assert_int_equal(cache_get(c, "s.test", 443, &got, err, sizeof(err)),
	    1);
	cache_close(c);
	assert_int_equal(lmdb_lock_held(p2), 1);
	cache_close(a);
	assert_int_equal(lmdb_lock_held(p2), 0);
}

static void
test_damaged_file_is_moved_aside(void **state)
{
	char p2[700], cmd[800];
	struct cache *c;
	FILE *f;

	(void)state;
	snprintf(p2, sizeof(p2), "%s/garbage.mdb", dir);
	f = fopen(p2, "w");
	assert_non_null(f);
	for (int i = 0; i < 4096; i++)
		fputc(i * 7, f);
	fclose(f);
	c = cache_open(p2, note, sizeof(note), err, sizeof(err));
	assert_non_null(c);
	assert_non_null(strstr(note, "damaged"));
	assert_non_null(strstr(note, "garbage.mdb.corrupt-"));
	cache_close(c);
	snprintf(cmd, sizeof(cmd), "ls %s/garbage.mdb.corrupt-* >/dev/null", dir);
	assert_int_equal(system(cmd), 0);
	/* Damaged again within the same second: the first file set aside is
	 * kept, not overwritten by the second. */
	f = fopen(p2, "w");
	assert_non_null(f);
	for (int i = 0; i < 4096; i++)
		fputc(i * 11, f);
	fclose(f);
	c = cache_open(p2, note, sizeof(note), err, sizeof(err));
	assert_non_null(c);
	assert_non_null(strstr(note, "damaged"));
	cache_close(c);
	snprintf(cmd, sizeof(cmd), "test $(ls %s | grep -c "
	    "'^garbage.mdb.corrupt-[0-9]*$') = 2", dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * Issue 13: a file is set aside only when no other process has it open.
 * A child holds a healthy cache open; the file is then cut short from
 * outside.  Opening it now must fail (no SIGBUS, verdicts in memory) and
 * leave the file where it is; once the child has closed it, the next open
 * is alone and sets it aside.
 */
static void
test_damage_in_use_is_left_alone(void **state)
{
	struct cache_record r = record(DETECTOR_REJECT, 9);
	char p2[700], cmd[800], host[32], buf[1];
	int go[2], ready[2], status, i;
	struct cache *c;
	struct stat sb;
	pid_t pid;

	(void)state;
	snprintf(p2, sizeof(p2), "%s/inuse.mdb", dir);
	c = cache_open(p2, note, sizeof(note), err, sizeof(err));
	assert_non_null(c);
	for (i = 0; i < 200; i++) {
		snprintf(host, sizeof(host), "h%d.test", i);
		assert_int_equal(cache_put(c, host, 443, &r, err, sizeof(err)),
		    0);
	}
	cache_close(c);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(ready), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cache *mine = cache_open(p2, note, sizeof(note), err,
		    sizeof(err));
		close(go[1]);
		(void)write(ready[1], mine != NULL ? "y" : "n", 1);
		(void)read(go[0], buf, 1);      /* until the parent is done */
		cache_close(mine);
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);        /* a child that fails ends the read below */
	assert_int_equal(read(ready[0], buf, 1), 1);
	assert_int_equal(buf[0], 'y');
	assert_int_equal(stat(p2, &sb), 0);
	assert_int_equal(truncate(p2, sb.st_size / 3), 0);
	assert_null(cache_open(p2, note, sizeof(note), err, sizeof(err)));
	if (strstr(err, "other processes are using it") == NULL)
		fail_msg("error '%s' does not say it is in use", err);
	snprintf(cmd, sizeof(cmd), "ls %s | grep -q inuse.mdb.corrupt", dir);
	assert_int_not_equal(system(cmd), 0);
	close(go[1]);                           /* the child closes it */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	c = cache_open(p2, note, sizeof(note), err, sizeof(err));
	assert_non_null(c);
	assert_non_null(strstr(note, "inuse.mdb was damaged"));
	cache_close(c);
	assert_int_equal(system(cmd), 0);
	close(ready[0]);
}

/* Opening must fail with this in the error, and leave victim untouched. */
static void
refused(const char *p, const char *why, const char *victim)
{
	struct stat before, after;

	assert_int_equal(lstat(victim, &before), 0);
	assert_null(cache_open(p, note, sizeof(note), err, sizeof(err)));
	if (strstr(err, why) == NULL)
		fail_msg("error '%s' does not say '%s'", err, why);
	assert_int_equal(lstat(victim, &after), 0);
	assert_int_equal(before.st_ino, after.st_ino);
	assert_int_equal(before.st_size, after.st_size);
	assert_int_equal(before.st_mode, after.st_mode);
}

/*
 * Review finding C1: a cache path that is a symlink, another user's file,
 * or writable by others is refused before anything is created, opened,
 * or moved aside (a damaged-looking victim would otherwise be renamed).
 */
static void
test_unsafe_files_are_refused(void **state)
{
	char victim[700], p2[700], d2[700];
	FILE *f;

	(void)state;
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	f = fopen(victim, "w");
	assert_non_null(f);
	fputs("not a cache, and not ours to move\n", f);
	fclose(f);

	/* The data file is a symlink to a victim (which looks damaged). */
	snprintf(p2, sizeof(p2), "%s/link.mdb", dir);
	assert_int_equal(symlink(victim, p2), 0);
	refused(p2, "is not a regular file", victim);

	/* The lock file is a symlink. */
	snprintf(p2, sizeof(p2), "%s/locked.mdb-lock", dir);
	assert_int_equal(symlink(victim, p2), 0);
	snprintf(p2, sizeof(p2), "%s/locked.mdb", dir);
	refused(p2, "locked.mdb-lock is not a regular file", victim);

	/* The guard file is a symlink. */
	snprintf(p2, sizeof(p2), "%s/guarded.mdb-guard", dir);
	assert_int_equal(symlink(victim, p2), 0);
	snprintf(p2, sizeof(p2), "%s/guarded.mdb", dir);
	refused(p2, "guarded.mdb-guard is not a regular file", victim);

	/* Group-writable, then another user's. */
	snprintf(p2, sizeof(p2), "%s/victim", dir);
	assert_int_equal(chmod(victim, 0620), 0);
	refused(p2, "writable by its group", victim);
	assert_int_equal(chmod(victim, 0600), 0);
	if (geteuid() == 0) {
		assert_int_equal(chown(victim, 65534, 65534), 0);
		refused(p2, "belongs to uid 65534", victim);
	}

	/* A folder everyone can write to (as /tmp itself). */
	snprintf(d2, sizeof(d2), "%s/open", dir);
	assert_int_equal(mkdir(d2, 0700), 0);
	assert_int_equal(chmod(d2, 01777), 0);
	snprintf(p2, sizeof(p2), "%s/open/verdicts.mdb", dir);
	refused(p2, "writable by everyone", d2);
	assert_int_equal(access(p2, F_OK), -1);
}

/* Names in folder d (not "." and ".."), or -1. */
static int
entries(const char *d)
{
	struct dirent *e;
	DIR *dp = opendir(d);
	int n = 0;

	if (dp == NULL)
		return -1;
	while ((e = readdir(dp)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(dp);
	return n;
}

/* Finding F1's setting: a root process using the HOME of uid 65534, whose
 * folders that user may change.  T/home (65534's), T/victim/detector
 * (root's, 0700: where the user wants root to write). */
static void
f1_tree(const char *tag, char *home, char *victim, size_t size)
{
	char d[700];

	assert_int_equal(chmod(dir, 0755), 0);
	snprintf(home, size, "%s/%s-home", dir, tag);
	assert_int_equal(mkdir(home, 0755), 0);
	assert_int_equal(chown(home, 65534, 65534), 0);
	snprintf(victim, size, "%s/%s-victim", dir, tag);
	assert_int_equal(mkdir(victim, 0700), 0);
	snprintf(d, sizeof(d), "%s/detector", victim);
	assert_int_equal(mkdir(d, 0700), 0);
}

/*
 * Security review F1 (planted): ~/.cache is a symlink its owner planted
 * to a folder of root's.  The old checks judged only the last folder
 * (~/.cache/detector, through the link: root's own) and root created the
 * cache in the folder the user chose.  Now the walk refuses a path through
 * a folder another user can change, and nothing is written anywhere.
 */
static void
test_folder_above_planted_symlink(void **state)
{
	char home[700], victim[700], p2[800], d[900];

	(void)state;
	if (geteuid() != 0)
		skip();
	f1_tree("planted", home, victim, sizeof(home));
	snprintf(p2, sizeof(p2), "%s/.cache", home);
	assert_int_equal(symlink(victim, p2), 0);
	assert_int_equal(lchown(p2, 65534, 65534), 0);
	snprintf(p2, sizeof(p2), "%s/.cache/detector/verdicts.mdb", home);
	assert_null(cache_open(p2, note, sizeof(note), err, sizeof(err)));
	if (strstr(err, "belongs to another user (uid 65534)") == NULL)
		fail_msg("error '%s' does not name the user's folder", err);
	snprintf(d, sizeof(d), "%s/detector", victim);
	assert_int_equal(entries(d), 0);
	assert_int_equal(entries(victim), 1);
}

/*
 * Security review F1 (race): the user swaps ~/.cache (a real folder
 * holding root's ~/.cache/detector, as root left it) with a symlink to
 * root's folder, as fast as it can, while root opens the cache again and
 * again.  Root must never write in the victim folder (before the fix: 17
 * of 643 runs did).
 */
static void
test_folder_above_swapped_during_open(void **state)
{
	char home[700], victim[700], real[800], evil[800], d[900];
	struct timespec stop;
	int i, status, opened = 0;
	struct cache *c;
	pid_t pid;

	(void)state;
	if (geteuid() != 0)
		skip();
	f1_tree("swapped", home, victim, sizeof(home));
	snprintf(real, sizeof(real), "%s/.cache", home);
	assert_int_equal(mkdir(real, 0755), 0);
	assert_int_equal(chown(real, 65534, 65534), 0);
	snprintf(d, sizeof(d), "%s/detector", real);
	assert_int_equal(mkdir(d, 0700), 0);
	snprintf(evil, sizeof(evil), "%s/.evil", home);
	assert_int_equal(symlink(victim, evil), 0);
	assert_int_equal(lchown(evil, 65534, 65534), 0);
	if ((pid = fork()) == 0) {
		/* The user: swap the two names for at most 30 s. */
		clock_gettime(CLOCK_MONOTONIC, &stop);
		stop.tv_sec += 30;
		if (setgid(65534) == -1 || setuid(65534) == -1)
			_exit(2);
		for (;;) {
			struct timespec now;

			for (i = 0; i < 1000; i++)
				(void)renameat2(AT_FDCWD, real, AT_FDCWD, evil,
				    RENAME_EXCHANGE);
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > stop.tv_sec)
				_exit(0);
		}
	}
	assert_true(pid > 0);
	snprintf(d, sizeof(d), "%s/.cache/detector/verdicts.mdb", home);
	for (i = 0; i < 300; i++) {
		if ((c = cache_open(d, note, sizeof(note), err,
		    sizeof(err))) != NULL) {
			opened++;
			cache_close(c);
		}
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	snprintf(d, sizeof(d), "%s/detector", victim);
	if (entries(d) != 0)
		fail_msg("root wrote %d file(s) in %s (opened %d of 300)",
		    entries(d), d, opened);
	assert_int_equal(opened, 0);
}

/*
 * What the walk still allows: a symlink that only root could have placed
 * (in root's own folder), and a folder of root's inside a sticky one that
 * everyone may write (as /tmp).  Another user's entry in the sticky
 * folder is refused.
 */
static void
test_trusted_symlink_and_sticky_folder(void **state)
{
	char real[700], link_[700], sticky[700], p2[800];
	struct cache *c;

	(void)state;
	snprintf(real, sizeof(real), "%s/real", dir);
	assert_int_equal(mkdir(real, 0700), 0);
	snprintf(link_, sizeof(link_), "%s/link", dir);
	assert_int_equal(symlink("real", link_), 0);
	snprintf(p2, sizeof(p2), "%s/link/verdicts.mdb", dir);
	c = cache_open(p2, note, sizeof(note), err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	cache_close(c);
	snprintf(p2, sizeof(p2), "%s/verdicts.mdb", real);
	assert_int_equal(access(p2, F_OK), 0);

	snprintf(sticky, sizeof(sticky), "%s/sticky", dir);
	assert_int_equal(mkdir(sticky, 0700), 0);
	assert_int_equal(chmod(sticky, 01777), 0);
	snprintf(p2, sizeof(p2), "%s/mine/verdicts.mdb", sticky);
	c = cache_open(p2, note, sizeof(note), err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	cache_close(c);
	if (geteuid() == 0) {
		snprintf(p2, sizeof(p2), "%s/theirs", sticky);
		assert_int_equal(mkdir(p2, 0700), 0);
		assert_int_equal(chown(p2, 65534, 65534), 0);
		snprintf(p2, sizeof(p2), "%s/theirs/sub/verdicts.mdb", sticky);
		assert_null(cache_open(p2, note, sizeof(note), err,
		    sizeof(err)));
		if (strstr(err, "uid 65534") == NULL)
			fail_msg("error '%s' does not name the owner", err);
		snprintf(p2, sizeof(p2), "%s/theirs/sub", sticky);
		assert_int_equal(access(p2, F_OK), -1);
	}
}

/*
 * While one process is alone with the cache (holding PATH-guard
 * exclusively: creating, checking or repairing it), another waits for it
 * rather than opening a file in the making; then opens it.
 */
static void
test_open_waits_while_another_is_alone(void **state)
{
	char p2[700], guard[720], buf[1];
	struct timespec t0, t1;
	struct flock fl;
	int ready[2], status, fd;
	struct cache *c;
	pid_t pid;
	long ms;

	(void)state;
	snprintf(p2, sizeof(p2), "%s/waits.mdb", dir);
	snprintf(guard, sizeof(guard), "%s-guard", p2);
	c = cache_open(p2, note, sizeof(note), err, sizeof(err));
	assert_non_null(c);
	cache_close(c);
	assert_int_equal(pipe(ready), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fd = open(guard, O_RDWR);
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if (fd == -1 || fcntl(fd, F_OFD_SETLK, &fl) == -1)
			_exit(2);
		(void)write(ready[1], "y", 1);
		usleep(400000);
		_exit(0);               /* the lock goes with the process */
	}
	close(ready[1]);        /* a child that fails ends the read below */
	assert_int_equal(read(ready[0], buf, 1), 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	c = cache_open(p2, note, sizeof(note), err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_non_null(c);
	cache_close(c);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) /
	    1000000;
	if (ms < 300)
		fail_msg("opened after %ld ms, while another held the guard "
		    "for 400 ms", ms);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(ready[0]);
}

/* Several processes write distinct entries at once: none is lost. */
static void
test_concurrent_writers_lose_nothing(void **state)
{
	enum { WRITERS = 4, EACH = 200 };
	struct cache *c;
	int w, i, status, found = 0;

	(void)state;
	for (w = 0; w < WRITERS; w++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct cache *mine = cache_open(path, note, sizeof(note),
			    err, sizeof(err));
			struct cache_record r = record(DETECTOR_ACCEPT, (unsigned
			    char)w);
			char host[64];
			if (mine == NULL)
				_exit(2);
			for (i = 0; i < EACH; i++) {
				snprintf(host, sizeof(host), "w%d-%d.test", w, i);
				if (cache_put(mine, host, 443, &r, err,
				    sizeof(err)) != 0)
					_exit(3);
			}
			cache_close(mine);
			_exit(0);
		}
	}
	for (w = 0; w < WRITERS; w++) {
		assert_true(wait(&status) > 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	c = cache_open(path, note, sizeof(note), err, sizeof(err));
	assert_non_null(c);
	for (w = 0; w < WRITERS; w++) {
		for (i = 0; i < EACH; i++) {
			struct cache_record got;
			char host[64];
			snprintf(host, sizeof(host), "w%d-%d.test", w, i);
			found += cache_get(c, host, 443, &got, err,
			    sizeof(err)) == 1 && got.spki[0] == w;
		}
	}
	cache_close(c);
	assert_int_equal(found, WRITERS * EACH);
}

/* Issue 14: key continuity. */

static void
key(unsigned char *spki, unsigned char fill)
{
	memset(spki, fill, DETECTOR_SHA256_LEN);
}

/* A history of n keys 1..n, key i last confirmed at 1000 - i. */
static struct cache_history
history_of(unsigned int n)
{
	struct cache_history h;
	struct cache_policy q = policy(4, 5, 0x55);
	unsigned char spki[DETECTOR_SHA256_LEN];
	unsigned int i;

	memset(&h, 0, sizeof(h));
	for (i = n; i >= 1; i--) {
		key(spki, (unsigned char)i);
		cache_history_confirm(&h, spki, &q, 1000 - i);
	}
	return h;
}

/*
 * The history codec: what encoding gives decodes to the same, and every
 * departure from the layout is refused as a whole: a length that is not
 * 4 + 64 n, n 0 or above 8, another version, non-zero reserved bytes, an
 * impossible quorum, first after last, entries out of order, a key twice.
 */
static void
test_history_codec(void **state)
{
	struct cache_history h = history_of(3), back;
	unsigned char buf[CACHE_HISTORY_LEN(CACHE_HISTORY_MAX) + 64], bad[
	    sizeof(buf)];
	size_t len, i;

	(void)state;
	len = cache_history_encode(&h, buf);
	assert_int_equal(len, CACHE_HISTORY_LEN(3));
	assert_int_equal(cache_history_decode(buf, len, &back), 0);
	assert_memory_equal(&h, &back, sizeof(h));
	assert_int_equal(back.e[0].spki[0], 1);  /* newest first */
	assert_int_equal(back.e[0].last_confirmed, 999);
	/* Lengths: one byte short or long, a whole entry too many. */
	assert_int_equal(cache_history_decode(buf, len - 1, &back), -1);
	assert_int_equal(cache_history_decode(buf, len + 1, &back), -1);
	assert_int_equal(cache_history_decode(buf, 0, &back), -1);
	assert_int_equal(cache_history_decode(buf, 3, &back), -1);
	assert_int_equal(back.n, 0);
	/* Header: version, n = 0 or 9, reserved. */
	static const size_t header[] = { 0, 1, 2, 3 };
	for (i = 0; i < 4; i++) {
		memcpy(bad, buf, len);
		bad[header[i]] ^= 0x40;
		assert_int_equal(cache_history_decode(bad, len, &back), -1);
	}
	memcpy(bad, buf, len);
	bad[1] = 0;
	assert_int_equal(cache_history_decode(bad, 4, &back), -1);
	memset(bad, 0, sizeof(bad));
	memcpy(bad, buf, len);
	bad[1] = CACHE_HISTORY_MAX + 1;
	assert_int_equal(cache_history_decode(bad,
	    CACHE_HISTORY_LEN(CACHE_HISTORY_MAX + 1), &back), -1);
	/* Each entry's reserved bytes 42-47. */
	for (i = 42; i < 48; i++) {
		memcpy(bad, buf, len);
		bad[CACHE_HISTORY_LEN(1) + i] = 1;
		assert_int_equal(cache_history_decode(bad, len, &back), -1);
	}
	/* Quorum 0, above the spheres, spheres above the maximum. */
	memcpy(bad, buf, len);
	bad[4 + 40] = 0;
	assert_int_equal(cache_history_decode(bad, len, &back), -1);
	memcpy(bad, buf, len);
	bad[4 + 40] = 6;
	assert_int_equal(cache_history_decode(bad, len, &back), -1);
	memcpy(bad, buf, len);
	bad[4 + 41] = DETECTOR_MAX_SPHERES + 1;
	assert_int_equal(cache_history_decode(bad, len, &back), -1);
	/* first_confirmed after last_confirmed. */
	memcpy(bad, buf, len);
	bad[4 + 32] = 0xff;
	assert_int_equal(cache_history_decode(bad, len, &back), -1);
	/* Out of order: the second newer than the first. */
	memcpy(bad, buf, len);
	memcpy(bad + 4, buf + 4 + 64, 64);
	memcpy(bad + 4 + 64, buf + 4, 64);
	assert_int_equal(cache_history_decode(bad, len, &back), -1);
	/* A key twice (same times, so the order holds). */
	memcpy(bad, buf, len);
	memcpy(bad + 4 + 64, buf + 4, 64);
	assert_int_equal(cache_history_decode(bad, len, &back), -1);
	/* An empty history is not encoded. */
	memset(&h, 0, sizeof(h));
	assert_int_equal(cache_history_encode(&h, buf), 0);
}

/*
 * Bounds and rotation: at most 8 keys, the one confirmed longest ago
 * dropped; a key confirmed again moves to the front keeping its first
 * confirmation; a smaller quorum changes nothing; a rotation keeps both
 * keys.  The judge: the same key matches, another within the window is a
 * key change, nothing within the window (or days 0) says nothing; only
 * quorums at least the asker's count, and no confirmation from the future.
 */
static void
test_history_bounds_and_rotation(void **state)
{
	struct cache_history h = history_of(CACHE_HISTORY_MAX);
	struct cache_policy q4 = policy(4, 5, 0x55), q1 = policy(1, 5, 0x55),
	    q5 = policy(5, 5, 0x55), elsewhere = policy(4, 7, 0x99);
	unsigned char a[DETECTOR_SHA256_LEN], b[DETECTOR_SHA256_LEN],
	    rogue[DETECTOR_SHA256_LEN];
	uint32_t when = 0;
	unsigned int i;

	(void)state;
	assert_int_equal(h.n, CACHE_HISTORY_MAX);
	key(a, 0xa0);
	cache_history_confirm(&h, a, &q4, 2000);
	assert_int_equal(h.n, CACHE_HISTORY_MAX);
	assert_memory_equal(h.e[0].spki, a, sizeof(a));
	for (i = 0; i < h.n; i++)
		assert_int_not_equal(h.e[i].spki[0], CACHE_HISTORY_MAX);
	/* Key 3 again: to the front, first confirmation kept. */
	key(b, 3);
	cache_history_confirm(&h, b, &q4, 3000);
	assert_memory_equal(h.e[0].spki, b, sizeof(b));
	assert_int_equal(h.e[0].first_confirmed, 997);
	assert_int_equal(h.e[0].last_confirmed, 3000);
	assert_int_equal(h.n, CACHE_HISTORY_MAX);
	/* A smaller quorum neither refreshes nor adds strength. */
	cache_history_confirm(&h, a, &q1, 4000);
	assert_memory_equal(h.e[0].spki, b, sizeof(b));
	assert_int_equal(h.e[1].last_confirmed, 2000);
	/* A clock set back: what is dated after now comes back to now
	 * (security review M2: it would never age out otherwise). */
	struct cache_history back = h;
	cache_history_confirm(&back, b, &q4, 10);
	assert_int_equal(back.n, CACHE_HISTORY_MAX);
	assert_memory_equal(back.e[0].spki, b, sizeof(b));
	for (i = 0; i < back.n; i++)
		assert_true(back.e[i].first_confirmed <=
		    back.e[i].last_confirmed && back.e[i].last_confirmed <= 10);
	/* Full: a lax process's new key (quorum 1) pushes out nothing, even
	 * newer; a stricter one (quorum 5) pushes out the oldest of the
	 * weakest, even older. */
	key(rogue, 0xee);
	cache_history_confirm(&h, rogue, &q1, 5000);
	assert_int_equal(h.n, CACHE_HISTORY_MAX);
	for (i = 0; i < h.n; i++)
		assert_int_not_equal(h.e[i].spki[0], 0xee);
	struct cache_history weak = h;
	cache_history_confirm(&h, rogue, &q5, 1);
	assert_int_equal(h.n, CACHE_HISTORY_MAX);
	assert_int_equal(h.e[h.n - 1].spki[0], 0xee);
	for (i = 0; i < h.n; i++)
		assert_int_not_equal(h.e[i].spki[0], weak.e[h.n - 1].spki[0]);
	/* Then a quorum-4 key cannot push out the quorum-5 one. */
	key(rogue, 0xef);
	cache_history_confirm(&h, rogue, &q4, 6000);
	assert_int_equal(h.e[0].spki[0], 0xef);
	assert_int_equal(h.e[h.n - 1].spki[0], 0xee);

	/* Rotation: the old key and the new one both stay. */
	memset(&h, 0, sizeof(h));
	cache_history_confirm(&h, a, &q4, 100000);
	cache_history_confirm(&h, b, &q4, 200000);
	assert_int_equal(h.n, 2);
	key(rogue, 0xee);
	assert_int_equal(cache_history_judge(&h, a, &q4, 30, 200100, &when),
	    CACHE_HISTORY_MATCH);
	assert_int_equal(when, 100000);
	assert_int_equal(cache_history_judge(&h, b, &q4, 30, 200100, &when),
	    CACHE_HISTORY_MATCH);
	assert_int_equal(cache_history_judge(&h, rogue, &q4, 30, 200100,
	    &when), CACHE_HISTORY_CHANGED);
	assert_int_equal(when, 200000);         /* the newest */
	/* A quorum below the asker's says nothing; days 0 turns it off.
	 * Entries from other spheres (security review M3) refuse another
	 * key but accept none, not even their own key (review 2, M1: a
	 * foreign entry for a key must not cancel the refusal another
	 * confirmed key gives). */
	assert_int_equal(cache_history_judge(&h, rogue, &q5, 30, 200100,
	    &when), CACHE_HISTORY_NONE);
	assert_int_equal(cache_history_judge(&h, a, &q1, 30, 200100, &when),
	    CACHE_HISTORY_MATCH);
	assert_int_equal(cache_history_judge(&h, a, &elsewhere, 30, 200100,
	    &when), CACHE_HISTORY_CHANGED);
	assert_int_equal(cache_history_judge(&h, rogue, &elsewhere, 30, 200100,
	    &when), CACHE_HISTORY_CHANGED);
	assert_int_equal(when, 200000);
	assert_int_equal(cache_history_judge(&h, a, &q4, 0, 200100, &when),
	    CACHE_HISTORY_NONE);
	/* The window: a's confirmation ages out first, then b's. */
	assert_int_equal(cache_history_judge(&h, a, &q4, 1, 200001,
	    &when), CACHE_HISTORY_CHANGED);
	assert_int_equal(cache_history_judge(&h, a, &q4, 1, 200000 + 86401,
	    &when), CACHE_HISTORY_NONE);
	/* A confirmation in the future (clock set back) counts as made now
	 * (security review M2: a spoofed clock must not turn it off). */
	assert_int_equal(cache_history_judge(&h, b, &q4, 30, 150000, &when),
	    CACHE_HISTORY_MATCH);
	assert_int_equal(when, 150000);
	assert_int_equal(cache_history_judge(&h, rogue, &q4, 30, 99999,
	    &when), CACHE_HISTORY_CHANGED);
	assert_int_equal(when, 99999);
	/* Security review L1: a larger quorum starts the entry again,
	 * last confirmation included. */
	struct cache_history up;
	memset(&up, 0, sizeof(up));
	cache_history_confirm(&up, a, &q1, 9000);
	struct cache_history strict;
	memset(&strict, 0, sizeof(strict));
	cache_history_confirm(&strict, a, &q4, 1000);
	cache_history_merge(&strict, &up);
	assert_int_equal(strict.e[0].last_confirmed, 1000);
	cache_history_merge(&up, &strict);
	assert_int_equal(up.e[0].policy.quorum, 4);
	assert_int_equal(up.e[0].last_confirmed, 1000);
	assert_int_equal(up.e[0].first_confirmed, 1000);
	/* A merge keeps each key's earliest first and latest last. */
	struct cache_history other;
	memset(&other, 0, sizeof(other));
	cache_history_confirm(&other, a, &q4, 300000);
	cache_history_merge(&h, &other);
	assert_int_equal(h.n, 2);
	assert_memory_equal(h.e[0].spki, a, sizeof(a));
	assert_int_equal(h.e[0].first_confirmed, 100000);
	assert_int_equal(h.e[0].last_confirmed, 300000);
}

/*
 * Security review 2, M1: the browser's spheres confirmed the real key; a
 * run through other spheres (sphere-probe --spheres ... behind the
 * interceptor) recorded the rogue key.  With Tor blocked, the rogue key
 * is still a key change for the browser, whichever entry is newer, and is
 * accepted by history only by whoever confirmed it through the same
 * spheres.  (Before the fix the foreign entry cancelled the refusal: NONE,
 * and on_undecided = accept let the interceptor through.)
 */
static void
test_history_foreign_entry_cancels_no_refusal(void **state)
{
	struct cache_policy mine = policy(4, 5, 0x55),
	    foreign = policy(4, 5, 0x99);
	unsigned char real[DETECTOR_SHA256_LEN], rogue[DETECTOR_SHA256_LEN];
	struct cache_history h;
	uint32_t when = 0;
	int order;

	(void)state;
	memset(real, 0x21, sizeof(real));
	memset(rogue, 0x66, sizeof(rogue));
	for (order = 0; order < 2; order++) {
		memset(&h, 0, sizeof(h));
		/* Confirmations come in time order: foreign newer, then
		 * the browser's own newer. */
		if (order == 0) {
			cache_history_confirm(&h, real, &mine, 1000);
			cache_history_confirm(&h, rogue, &foreign, 2000);
		} else {
			cache_history_confirm(&h, rogue, &foreign, 1000);
			cache_history_confirm(&h, real, &mine, 2000);
		}
		assert_int_equal(cache_history_judge(&h, rogue, &mine, 30, 3000,
		    &when), CACHE_HISTORY_CHANGED);
		assert_int_equal(when, order ? 2000 : 1000);
		assert_int_equal(cache_history_judge(&h, real, &mine, 30, 3000,
		    &when), CACHE_HISTORY_MATCH);
		assert_int_equal(cache_history_judge(&h, rogue, &foreign, 30,
		    3000, &when), CACHE_HISTORY_MATCH);
	}
}

static int
history_of_file(struct cache *c, const char *host, struct cache_history *h)
{
	return cache_history_get(c, host, 443, h, err, sizeof(err));
}

static void
count_entries(void *arg, const char *k, const struct cache_record *r)
{
	(void)r;
	assert_true(k[0] != '\0');
	if (strncmp(k, "h.test:", 7) == 0)
		(*(int *)arg)++;
}

/*
 * In the file: an ACCEPT confirms the key in the history (same
 * transaction), a REJECT leaves it, an UNDECIDED is refused and leaves
 * both the history and a planted 400-day ACCEPT as they were.  Listing
 * shows records only; forgetting a port or a host takes the history too.
 * A malformed history is absent, and the next ACCEPT replaces it.  A
 * handle from before fork() reads no history.
 */
static void
test_history_in_the_file(void **state)
{
	struct cache *c = cache_open(path, note, sizeof(note), err, sizeof(err));
	struct cache_policy q4 = policy(4, 5, 0x55);
	struct cache_record planted = record(DETECTOR_ACCEPT, 0x11), got;
	struct cache_history h;
	unsigned char real[DETECTOR_SHA256_LEN], rogue[DETECTOR_SHA256_LEN];
	uint32_t now = 1700000000;
	int n = 0, status;
	pid_t pid;

	(void)state;
	assert_non_null(c);
	key(real, 0x11);
	key(rogue, 0xee);
	assert_int_equal(history_of_file(c, "h.test", &h), 0);
	assert_int_equal(cache_remember(c, "h.test", 443, real, &q4,
	    DETECTOR_ACCEPT, now, 86400, err, sizeof(err)), 0);
	assert_int_equal(history_of_file(c, "h.test", &h), 1);
	assert_int_equal(h.n, 1);
	assert_memory_equal(h.e[0].spki, real, sizeof(real));
	assert_int_equal(h.e[0].first_confirmed, now);
	/* A REJECT of the rogue key: the record changes, the history not. */
	assert_int_equal(cache_remember(c, "h.test", 443, rogue, &q4,
	    DETECTOR_REJECT, now + 10, 86400, err, sizeof(err)), 0);
	assert_int_equal(history_of_file(c, "h.test", &h), 1);
	assert_int_equal(h.n, 1);
	assert_int_equal(h.e[0].last_confirmed, now);
	/* A planted 400-day ACCEPT for the real key survives an UNDECIDED
	 * of the rogue key (it was overwritten before issue 14). */
	planted.first_seen = planted.last_verified = now;
	planted.expires = now + 400 * 86400;
	planted.policy = q4;
	assert_int_equal(cache_put(c, "h.test", 443, &planted, err,
	    sizeof(err)), 0);
	assert_int_equal(cache_remember(c, "h.test", 443, rogue, &q4,
	    DETECTOR_UNDECIDED, now + 20, 86400, err, sizeof(err)), -1);
	assert_int_equal(cache_get(c, "h.test", 443, &got, err, sizeof(err)),
	    1);
	assert_memory_equal(&got, &planted, sizeof(got));
	assert_int_equal(cache_recall(c, "h.test", 443, rogue, &q4,
	    UINT32_MAX, now + 30, &got), 0);
	assert_int_equal(history_of_file(c, "h.test", &h), 1);
	assert_int_equal(h.n, 1);
	/* Rotation: a quorum confirms a new key; both stay. */
	key(rogue, 0x22);
	assert_int_equal(cache_remember(c, "h.test", 443, rogue, &q4,
	    DETECTOR_ACCEPT, now + 40, 86400, err, sizeof(err)), 0);
	assert_int_equal(history_of_file(c, "h.test", &h), 1);
	assert_int_equal(h.n, 2);
	assert_memory_equal(h.e[0].spki, rogue, sizeof(rogue));
	assert_memory_equal(h.e[1].spki, real, sizeof(real));
	/* Listing: records only. */
	assert_int_equal(cache_list(c, count_entries, &n, err, sizeof(err)),
	    0);
	assert_int_equal(n, 1);
	/* A handle from before fork() reads nothing in the child. */
	if ((pid = fork()) == 0)
		_exit(cache_history_get(c, "h.test", 443, &h, err,
		    sizeof(err)) == -1 && h.n == 0 ? 0 : 1);
	assert_true(waitpid(pid, &status, 0) == pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Forgetting the port, then a whole host, takes the history. */
	assert_int_equal(cache_forget(c, "h.test", 443, err, sizeof(err)), 1);
	assert_int_equal(history_of_file(c, "h.test", &h), 0);
	assert_int_equal(cache_remember(c, "h.test", 8443, real, &q4,
	    DETECTOR_ACCEPT, now, 86400, err, sizeof(err)), 0);
	assert_int_equal(cache_remember(c, "h.testing", 443, real, &q4,
	    DETECTOR_ACCEPT, now, 86400, err, sizeof(err)), 0);
	assert_int_equal(cache_forget(c, "h.test", 0, err, sizeof(err)), 1);
	assert_int_equal(cache_history_get(c, "h.test", 8443, &h, err,
	    sizeof(err)), 0);
	assert_int_equal(history_of_file(c, "h.testing", &h), 1);
	cache_close(c);
}

/*
 * cache_sync() (issue 16 item 5): the commit waits for its data pages only
 * (MDB_NOMETASYNC); the sync after the verdict's handover makes the rest
 * durable.  It succeeds on a writable handle, repeatedly, and refuses a
 * handle inherited through fork() as every other call does.
 */
static void
test_sync_after_commit(void **state)
{
	struct cache *c = cache_open(path, note, sizeof(note), err, sizeof(err));
	struct cache_record r = record(DETECTOR_REJECT, 7), got;
	int status;
	pid_t pid;

	(void)state;
	assert_non_null(c);
	assert_int_equal(cache_put(c, "sync.test", 443, &r, err, sizeof(err)),
	    0);
	assert_int_equal(cache_sync(c, err, sizeof(err)), 0);
	assert_int_equal(cache_sync(c, err, sizeof(err)), 0);
	if ((pid = fork()) == 0)
		_exit(cache_sync(c, err, sizeof(err)) == -1 &&
		    strstr(err, "before fork()") != NULL ? 0 : 1);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(cache_get(c, "sync.test", 443, &got, err, sizeof(err)),
	    1);
	assert_memory_equal(&r, &got, sizeof(r));
	cache_close(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_codec),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_store_recall_forget),
		cmocka_unit_test(test_policy_of_remembered_verdicts),
		cmocka_unit_test(test_asker_validity_bounds_accept),
		cmocka_unit_test(test_readable_files_made_private),
		cmocka_unit_test(test_handle_is_not_used_after_fork),
		cmocka_unit_test(test_two_spellings_one_handle),
		cmocka_unit_test(test_damaged_file_is_moved_aside),
		cmocka_unit_test(test_damage_in_use_is_left_alone),
		cmocka_unit_test(test_open_waits_while_another_is_alone),
		cmocka_unit_test(test_unsafe_files_are_refused),
		cmocka_unit_test(test_folder_above_planted_symlink),
		cmocka_unit_test(test_folder_above_swapped_during_open),
		cmocka_unit_test(test_trusted_symlink_and_sticky_folder),
		cmocka_unit_test(test_concurrent_writers_lose_nothing),
		cmocka_unit_test(test_history_codec),
		cmocka_unit_test(test_history_bounds_and_rotation),
		cmocka_unit_test(test_history_foreign_entry_cancels_no_refusal),
		cmocka_unit_test(test_history_in_the_file),
		cmocka_unit_test(test_sync_after_commit),
	};
	return cmocka_run_group_tests_name("cache", tests, setup, teardown);
}
