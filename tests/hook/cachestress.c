/*
 * cachestress - many processes open one verdict cache at once, as many NSS
 * applications of one user do, and each reads and writes through the
 * library's cache API (cache.h).  The driver checks what issue 13 found
 * broken under load: a healthy cache declared damaged and moved aside, the
 * data or lock file replaced under processes that use it, verdicts lost,
 * processes killed by signals.
 *
 *   cachestress PATH PROCS
 *
 * PATH is the cache file (its folder is created); it should not exist yet,
 * so that the processes also race to create it.  Each child waits at a
 * common start line, then (half at once, half after a few milliseconds, so
 * that some open while others commit):
 *   - opens the cache (a failure is "fell back to memory"),
 *   - recalls, then remembers, its own names (p<i>-<k>.test) with REJECT or
 *     ACCEPT and a key made of its number: different names,
 *   - remembers "same.test" with its own key: the same name,
 *   - reads its own names back (each must be there) and others' names (an
 *     error is counted, a miss is not: they may not be written yet),
 *   - notes the data and lock file's inode at open and before close: a
 *     change means one was moved aside or unlinked while in use,
 *   - closes the cache, opens it again and reads its names once more (so
 *     that processes come and go while others write).
 * Afterwards the parent opens the cache and reads every name written.
 *
 * Output: the note or error of any child that had one (one line each),
 * then one line of counts, every one of which must be 0 but "procs":
 *   procs=200 signalled=0 open_failed=0 notes=0 put_failed=0 get_errors=0
 *   own_missing=0 replaced=0 lost=0 same_wrong=0
 * Exit 0 if all are 0, else 1.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

#define NAMES 4                 /* own names per process */
#define NOW 1700000000u

struct result {
	int opened, readonly, notes, put_failed, get_errors, own_missing;
	int replaced;
	char note[512];
	char err[512];
};

static void
key_of(int i, unsigned char spki[DETECTOR_SHA256_LEN])
{
	memset(spki, 0, DETECTOR_SHA256_LEN);
	spki[0] = (unsigned char)(i >> 8);
	spki[1] = (unsigned char)i;
	spki[2] = 0x5a;
}

static enum detector_verdict
verdict_of(int i)
{
	return i % 2 ? DETECTOR_REJECT : DETECTOR_ACCEPT;
}

static void
inodes(const char *path, ino_t out[2])
{
	char lock[4200];
	struct stat sb;

	snprintf(lock, sizeof(lock), "%s-lock", path);
	out[0] = stat(path, &sb) == 0 ? sb.st_ino : 0;
	out[1] = stat(lock, &sb) == 0 ? sb.st_ino : 0;
}

/* Quorum 4 of 5 spheres, as the default configuration. */
static const struct cache_policy pol = { 4, 5, { 0x5f } };

static void
child(const char *path, int i, int procs, int start_fd, struct result *res)
{
	unsigned char spki[DETECTOR_SHA256_LEN];
	struct cache_record r;
	struct cache *c;
	char host[64], note[512], buf[1];
	ino_t at_open[2], at_close[2];
	int k, got;

	key_of(i, spki);
	(void)read(start_fd, buf, 1);           /* returns at EOF: go */
	if (i % 2) {
		struct timespec ts = { 0, (long)(i % 20) * 1000000L };
		nanosleep(&ts, NULL);
	}
	c = cache_open(path, res->note, sizeof(res->note), res->err,
	    sizeof(res->err));
	if (c == NULL)
		return;
	res->opened = 1;
	res->notes = res->note[0] != '\0';
	res->readonly = cache_readonly(c);
	inodes(path, at_open);
	for (k = 0; k < NAMES; k++) {
		snprintf(host, sizeof(host), "p%d-%d.test", i, k);
		(void)cache_recall(c, host, 443, spki, &pol, 86400, NOW, &r);
		if (cache_remember(c, host, 443, spki, &pol, verdict_of(i),
		    NOW, 86400, res->err, sizeof(res->err)) != 0)
			res->put_failed++;
	}
	if (cache_remember(c, "same.test", 443, spki, &pol, DETECTOR_ACCEPT,
	    NOW, 86400, res->err, sizeof(res->err)) != 0)
		res->put_failed++;
	for (k = 0; k < NAMES; k++) {
		snprintf(host, sizeof(host), "p%d-%d.test", i, k);
		got = cache_get(c, host, 443, &r, res->err, sizeof(res->err));
		if (got == -1)
			res->get_errors++;
		else if (got == 0 || r.verdict != verdict_of(i))
			res->own_missing++;
		snprintf(host, sizeof(host), "p%d-%d.test", (i + 7 * k + 1) %
		    procs, k);
		if (cache_get(c, host, 443, &r, res->err,
		    sizeof(res->err)) == -1)
			res->get_errors++;
	}
	if (cache_get(c, "same.test", 443, &r, res->err,
	    sizeof(res->err)) != 1)
		res->get_errors++;
	inodes(path, at_close);
	res->replaced = at_open[0] != at_close[0] ||
	    at_open[1] != at_close[1];
	cache_close(c);
	c = cache_open(path, note, sizeof(note), res->err, sizeof(res->err));
	if (note[0] != '\0') {
		res->notes++;
		snprintf(res->note, sizeof(res->note), "%s", note);
	}
	if (c == NULL)
		return;
	res->opened++;
	for (k = 0; k < NAMES; k++) {
		snprintf(host, sizeof(host), "p%d-%d.test", i, k);
		got = cache_get(c, host, 443, &r, res->err, sizeof(res->err));
		if (got == -1)
			res->get_errors++;
		else if (got == 0 || r.verdict != verdict_of(i))
			res->own_missing++;
	}
	cache_close(c);
}

/* The parent, after every child: is every verdict written still there? */
static void
verify(const char *path, int procs, const struct result *res, int *lost,
    int *same_wrong)
{
	unsigned char spki[DETECTOR_SHA256_LEN];
	char note[1024], err[1024], host[64];
	struct cache_record r;
	struct cache *c = cache_open(path, note, sizeof(note), err,
	    sizeof(err));
	int i, k;

	if (c == NULL) {
		printf("verify: %s\n", err);
		*lost = procs * NAMES;
		return;
	}
	if (note[0] != '\0')
		printf("verify: %s\n", note);
	for (i = 0; i < procs; i++) {
		if (!res[i].opened || res[i].readonly || res[i].put_failed)
			continue;               /* counted already */
		key_of(i, spki);
		for (k = 0; k < NAMES; k++) {
			snprintf(host, sizeof(host), "p%d-%d.test", i, k);
			if (cache_get(c, host, 443, &r, err, sizeof(err)) != 1 ||
			    r.verdict != verdict_of(i) ||
			    memcmp(r.spki, spki, sizeof(spki)) != 0)
				(*lost)++;
		}
	}
	/* same.test: one of the writers' keys, whole. */
	if (cache_get(c, "same.test", 443, &r, err, sizeof(err)) != 1 ||
	    r.spki[2] != 0x5a || (r.spki[0] << 8 | r.spki[1]) >= procs)
		*same_wrong = 1;
	cache_close(c);
}

int
main(int argc, char **argv)
{
	int procs, i, status, go[2];
	int signalled = 0, open_failed = 0, notes = 0, put_failed = 0;
	int get_errors = 0, own_missing = 0, replaced = 0, lost = 0;
	int same_wrong = 0;
	struct result *res;
	pid_t pid;

	if (argc != 3 || (procs = atoi(argv[2])) < 1 || procs > 4096) {
		fprintf(stderr, "usage: cachestress PATH PROCS (1..4096)\n");
		return 2;
	}
	res = mmap(NULL, sizeof(*res) * (size_t)procs, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED || pipe(go) == -1) {
		perror("cachestress");
		return 2;
	}
	memset(res, 0, sizeof(*res) * (size_t)procs);
	for (i = 0; i < procs; i++) {
		if ((pid = fork()) == -1) {
			perror("cachestress: fork");
			return 2;
		}
		if (pid == 0) {
			close(go[1]);
			child(argv[1], i, procs, go[0], &res[i]);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);                           /* everyone starts */
	while ((pid = wait(&status)) > 0 || errno == EINTR) {
		if (pid > 0 && WIFSIGNALED(status)) {
			printf("a process died of signal %d (%s)\n",
			    WTERMSIG(status), strsignal(WTERMSIG(status)));
			signalled++;
		}
	}
	for (i = 0; i < procs; i++) {
		open_failed += 2 - res[i].opened;
		notes += res[i].notes;
		put_failed += res[i].put_failed;
		get_errors += res[i].get_errors;
		own_missing += res[i].own_missing;
		replaced += res[i].replaced;
		if (res[i].note[0] != '\0')
			printf("process %d: %s\n", i, res[i].note);
		if (res[i].opened < 2 || res[i].put_failed ||
		    res[i].get_errors)
			printf("process %d: %s\n", i, res[i].err);
	}
	verify(argv[1], procs, res, &lost, &same_wrong);
	printf("procs=%d signalled=%d open_failed=%d notes=%d put_failed=%d "
	    "get_errors=%d own_missing=%d replaced=%d lost=%d same_wrong=%d\n",
	    procs, signalled, open_failed, notes, put_failed, get_errors,
	    own_missing, replaced, lost, same_wrong);
	return signalled || open_failed || notes || put_failed ||
	    get_errors || own_missing || replaced || lost || same_wrong;
}
