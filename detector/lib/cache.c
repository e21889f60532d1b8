/*
 * cache.c - the persistent verdict cache, on LMDB.
 *
 * LMDB gives what a cache shared by every NSS process of a user needs:
 * many readers and one writer across processes at once, O(log n) lookups
 * without a server, and crash safety (copy-on-write B+tree, no recovery
 * step).  What LMDB cannot protect against is a file damaged from outside:
 * truncated, overwritten, or not LMDB at all.  Such a file is detected
 * before any page is touched (a truncated map would raise SIGBUS), moved
 * aside, and replaced; nothing else is lost.
 *
 * Two kinds of entries share the one database (cache.h says it in full):
 * the verdict record under "host:port" (ACCEPT or REJECT; an UNDECIDED is
 * never written), and the key history under "\0h" "host:port": the keys a
 * quorum confirmed there, written only by an ACCEPT, in the same write
 * transaction as its record (cache_remember()), never shortened by
 * anything else.  Both decoders are strict and fuzzed; everything below
 * (file trust, the guard, fork generations, read-only files, damage)
 * applies to both alike, since they live in the same file.
 */
#include "cache.h"
#include "filetrust.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE_VERSION 2
#define CACHE_MAP_SIZE ((size_t)1 << 30)   /* sparse: only used pages count */

struct cache {
	MDB_env *env;
	MDB_dbi dbi;
	int readonly;
	int guard;      /* PATH-guard, locked shared while open; -1: none */
	unsigned long generation;       /* cache_generation at open */
	struct cache *next;             /* on stale_caches */
	/* On open_caches: the folder's device and inode and the file's name
	 * in it (base) say which file this is, whatever the spelling. */
	dev_t dev;
	ino_t ino;
	unsigned int refs;              /* cache_open()s not yet closed */
	struct cache *next_open;
	/* While cache_open() runs: where the files are (see pin()). */
	int dfd;                        /* the folder, pinned; -1: none */
	char path[4096];                /* as given: for messages */
	char base[NAME_MAX + 1];        /* the data file's name in dfd */
	char mdb[64 + NAME_MAX];        /* the name LMDB is given */
};

/*
 * fork()
 * ------
 * LMDB's rule: an environment is used only by the process that opened it.
 * A child after fork() shares the parent's map and reader slot, but not
 * its fcntl() locks: a lookup there may read pages the parent's writer is
 * reusing, and a commit there corrupts the lock table.  So every handle
 * remembers the fork generation it was opened in; a child starts a new
 * generation (pthread_atfork) and every call on an older handle fails.
 * A generation rather than getpid(): a pid can be reused (a grandchild may
 * get the pid of the process that opened the handle), a generation never
 * is.  (A process that forks with a raw clone() syscall bypasses
 * pthread_atfork; so does its libc, which is why nobody does.)
 *
 * An older handle is never closed with mdb_env_close() in the child: its
 * descriptors are the lock file's, and closing any descriptor of a file
 * drops every fcntl() lock the process holds on it, so it would silently
 * unlock a handle the child opened since on the same file.  cache_close()
 * keeps such a handle on stale_caches (its memory stays reachable, not
 * leaked) and only closes its guard descriptor (the guard's OFD lock
 * belongs to the open file description the parent still holds).
 */
static unsigned long cache_generation;
static struct cache *stale_caches;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

/*
 * One handle per file and process
 * -------------------------------
 * LMDB's rule too: a second environment on the same file in one process
 * shares its fcntl() locks (they are per process), and closing it drops
 * the first one's.  "x/verdicts.mdb", "x//verdicts.mdb" and a path through
 * a symlink name one file; so open handles are found by what the file is
 * (the pinned folder's device and inode, and the name in it), and a second
 * cache_open() of the same file returns the same handle, counted; it is
 * closed with its last cache_close().  open_caches and every handle's
 * refs are guarded by registry; cache_open() holds it throughout, so two
 * threads cannot both open one file.
 */
static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct cache *open_caches;

/* fork() waits for the registry (taken in prepare), so that the child
 * never sees open_caches or stale_caches half changed; the forking thread
 * holds it in both processes and lets go. */
static void
cache_atfork_prepare(void)
{
	pthread_mutex_lock(&registry);
}

static void
cache_atfork_parent(void)
{
	pthread_mutex_unlock(&registry);
}

static void
cache_atfork_child(void)
{
	/* The parent's handles are not the child's (stale). */
	open_caches = NULL;
	cache_generation++;
	pthread_mutex_unlock(&registry);
}

static void
cache_init(void)
{
	(void)pthread_atfork(cache_atfork_prepare, cache_atfork_parent,
	    cache_atfork_child);
}

/* May this process use c?  0, or -1 with err set. */
static int
mine(const struct cache *c, char *err, size_t errlen)
{
	if (c->generation == cache_generation)
		return 0;
	snprintf(err, errlen, "verdict cache: this handle was opened before "
	    "fork() and is not used in this process");
	return -1;
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

void
cache_record_encode(const struct cache_record *r,
    unsigned char out[CACHE_RECORD_LEN])
{
	out[0] = CACHE_VERSION;
	out[1] = (unsigned char)r->verdict;
	out[2] = (unsigned char)r->policy.quorum;
	out[3] = (unsigned char)r->policy.nspheres;
	put32(out + 4, r->first_seen);
	put32(out + 8, r->last_verified);
	put32(out + 12, r->expires);
	memcpy(out + 16, r->spki, DETECTOR_SHA256_LEN);
	memcpy(out + 48, r->policy.spheres, CACHE_SPHERES_DIGEST_LEN);
}

int
cache_record_decode(const unsigned char *in, size_t len,
    struct cache_record *r)
{
	memset(&r->policy, 0, sizeof(r->policy));
	if (len == CACHE_RECORD_V1_LEN && in[0] == 1) {
		if (in[2] != 0 || in[3] != 0)
			return -1;
	} else if (len == CACHE_RECORD_LEN && in[0] == CACHE_VERSION) {
		if (in[2] < 1 || in[3] < in[2] || in[3] > DETECTOR_MAX_SPHERES)
			return -1;
		r->policy.quorum = in[2];
		r->policy.nspheres = in[3];
		memcpy(r->policy.spheres, in + 48, CACHE_SPHERES_DIGEST_LEN);
	} else
		return -1;
	if (in[1] != DETECTOR_ACCEPT && in[1] != DETECTOR_REJECT &&
	    in[1] != DETECTOR_UNDECIDED)
		return -1;
	r->verdict = (enum detector_verdict)in[1];
	r->first_seen = get32(in + 4);
	r->last_verified = get32(in + 8);
	r->expires = get32(in + 12);
	if (r->first_seen > r->last_verified || r->last_verified > r->expires)
		return -1;
	memcpy(r->spki, in + 16, DETECTOR_SHA256_LEN);
	return 0;
}

/*
 * Key history codec (layout in cache.h).  Strict like the records: a
 * history is read from a file other code (an older or newer DetecTor, a
 * damaged disk) may have written, and what it says decides whether a key
 * is refused, so anything not exactly as this version writes it is
 * refused as a whole, never read in part.
 */
size_t
cache_history_encode(const struct cache_history *h,
    unsigned char out[CACHE_HISTORY_LEN(CACHE_HISTORY_MAX)])
{
	unsigned int i;

	if (h->n == 0 || h->n > CACHE_HISTORY_MAX)
		return 0;
	memset(out, 0, CACHE_HISTORY_LEN(h->n));
	out[0] = CACHE_HISTORY_VERSION;
	out[1] = (unsigned char)h->n;
	for (i = 0; i < h->n; i++) {
		const struct cache_history_entry *e = &h->e[i];
		unsigned char *p = out + CACHE_HISTORY_LEN(i);

		memcpy(p, e->spki, DETECTOR_SHA256_LEN);
		put32(p + 32, e->first_confirmed);
		put32(p + 36, e->last_confirmed);
		p[40] = (unsigned char)e->policy.quorum;
		p[41] = (unsigned char)e->policy.nspheres;
		memcpy(p + 48, e->policy.spheres, CACHE_SPHERES_DIGEST_LEN);
	}
	return CACHE_HISTORY_LEN(h->n);
}

static int
all_zero(const unsigned char *p, size_t n)
{
	while (n-- > 0)
		if (*p++ != 0)
			return 0;
	return 1;
}

int
cache_history_decode(const unsigned char *in, size_t len,
    struct cache_history *h)
{
	unsigned int i, j, n;

	memset(h, 0, sizeof(*h));
	if (len < CACHE_HISTORY_HEADER_LEN || in[0] != CACHE_HISTORY_VERSION ||
	    (n = in[1]) < 1 || n > CACHE_HISTORY_MAX ||
	    len != CACHE_HISTORY_LEN(n) || in[2] != 0 || in[3] != 0)
		return -1;
	for (i = 0; i < n; i++) {
		const unsigned char *p = in + CACHE_HISTORY_LEN(i);
		struct cache_history_entry *e = &h->e[i];

		if (p[40] < 1 || p[41] < p[40] ||
		    p[41] > DETECTOR_MAX_SPHERES || !all_zero(p + 42, 6))
			goto bad;
		memcpy(e->spki, p, DETECTOR_SHA256_LEN);
		e->first_confirmed = get32(p + 32);
		e->last_confirmed = get32(p + 36);
		e->policy.quorum = p[40];
		e->policy.nspheres = p[41];
		memcpy(e->policy.spheres, p + 48, CACHE_SPHERES_DIGEST_LEN);
		if (e->first_confirmed > e->last_confirmed ||
		    (i > 0 && e->last_confirmed > h->e[i - 1].last_confirmed))
			goto bad;
		for (j = 0; j < i; j++)
			if (memcmp(h->e[j].spki, e->spki,
			    DETECTOR_SHA256_LEN) == 0)
				goto bad;
	}
	h->n = n;
	return 0;
bad:
	memset(h, 0, sizeof(*h));
	return -1;
}

/* Moves entry i up to its place by last_confirmed (newest first). */
static void
history_reorder(struct cache_history *h, unsigned int i)
{
	struct cache_history_entry e = h->e[i];

	while (i > 0 && h->e[i - 1].last_confirmed < e.last_confirmed) {
		h->e[i] = h->e[i - 1];
		i--;
	}
	h->e[i] = e;
}

/* Adds or refreshes one key: first and last as given widen what is kept
 * (under the same quorum; a larger one starts the entry again). */
static void
history_add(struct cache_history *h, const unsigned char *spki,
    const struct cache_policy *pol, uint32_t first, uint32_t last)
{
	struct cache_history_entry *e;
	unsigned int i;

	for (i = 0; i < h->n; i++) {
		e = &h->e[i];
		if (memcmp(e->spki, spki, DETECTOR_SHA256_LEN) != 0)
			continue;
		/* A smaller quorum than the one recorded says less: it
		 * neither refreshes nor widens what that quorum vouched
		 * for (an asker judges by the quorum recorded). */
		if (pol->quorum < e->policy.quorum)
			return;
		if (pol->quorum > e->policy.quorum) {
			/* What the smaller quorum said counts for nothing
			 * under the larger: the entry starts again. */
			e->policy = *pol;
			e->first_confirmed = first;
			e->last_confirmed = last;
		} else if (first < e->first_confirmed)
			e->first_confirmed = first;
		if (last > e->last_confirmed)
			e->last_confirmed = last;
		if (e->first_confirmed > e->last_confirmed)
			e->first_confirmed = e->last_confirmed;
		history_reorder(h, i);
		return;
	}
	/* A new key when full: the weakest entry (smallest quorum, then
	 * confirmed longest ago) makes room, but only for one that says
	 * more (a larger quorum, or as large and newer): confirmations by a
	 * lax process (sphere-probe --quorum 1) cannot push out what a
	 * stricter quorum confirmed. */
	if (h->n == CACHE_HISTORY_MAX) {
		unsigned int weakest = 0;

		for (i = 1; i < h->n; i++) {
			if (h->e[i].policy.quorum <
			    h->e[weakest].policy.quorum ||
			    (h->e[i].policy.quorum ==
			    h->e[weakest].policy.quorum &&
			    h->e[i].last_confirmed <=
			    h->e[weakest].last_confirmed))
				weakest = i;
		}
		if (pol->quorum < h->e[weakest].policy.quorum ||
		    (pol->quorum == h->e[weakest].policy.quorum &&
		    last < h->e[weakest].last_confirmed))
			return;
		/* Drop it, keeping the order of the rest. */
		memmove(&h->e[weakest], &h->e[weakest + 1],
		    (h->n - weakest - 1) * sizeof(h->e[0]));
		h->n--;
	}
	e = &h->e[h->n];
	memcpy(e->spki, spki, DETECTOR_SHA256_LEN);
	e->first_confirmed = first;
	e->last_confirmed = last;
	e->policy = *pol;
	history_reorder(h, h->n++);
}

void
cache_history_confirm(struct cache_history *h, const unsigned char *spki,
    const struct cache_policy *pol, uint32_t now)
{
	unsigned int i;

	/* Confirmations dated after now (a clock that was wrong forward,
	 * or is now set back) are brought back to now: one stuck in the
	 * future would otherwise never age out nor be pushed out.  They
	 * are newest first, so the order holds. */
	for (i = 0; i < h->n; i++) {
		if (h->e[i].last_confirmed > now)
			h->e[i].last_confirmed = now;
		if (h->e[i].first_confirmed > h->e[i].last_confirmed)
			h->e[i].first_confirmed = h->e[i].last_confirmed;
	}
	history_add(h, spki, pol, now, now);
}

void
cache_history_merge(struct cache_history *h, const struct cache_history *src)
{
	unsigned int i;

	for (i = 0; i < src->n; i++)
		history_add(h, src->e[i].spki, &src->e[i].policy,
		    src->e[i].first_confirmed, src->e[i].last_confirmed);
}

enum cache_history_answer
cache_history_judge(const struct cache_history *h, const unsigned char *spki,
    const struct cache_policy *pol, unsigned int days, uint32_t now,
    uint32_t *when)
{
	uint64_t window = (uint64_t)days * 86400;
	enum cache_history_answer answer = CACHE_HISTORY_NONE;
	uint32_t last, changed = 0;
	unsigned int i;

	for (i = 0; days > 0 && i < h->n; i++) {
		const struct cache_history_entry *e = &h->e[i];

		/* A confirmation dated in the future (the clock was set
		 * back, perhaps by a spoofed time server) counts as made
		 * now: ignoring it would turn continuity off. */
		last = e->last_confirmed > now ? now : e->last_confirmed;
		/* The quorum that confirmed it is at least the asker's, and
		 * it lies within the window. */
		if (e->policy.quorum < pol->quorum ||
		    (uint64_t)(now - last) > window)
			continue;
		if (memcmp(e->spki, spki, DETECTOR_SHA256_LEN) == 0) {
			/* Accepted only if confirmed through the asker's own
			 * spheres.  A run with other spheres, whoever chose
			 * them, vouches for nothing: its entry for this key
			 * neither accepts it nor cancels a refusal that
			 * another confirmed key gives (security review 2,
			 * M1: one such run for the rogue key turned the
			 * browser's KEY_CHANGED into on_undecided). */
			if (e->policy.nspheres == pol->nspheres &&
			    memcmp(e->policy.spheres, pol->spheres,
			    CACHE_SPHERES_DIGEST_LEN) == 0) {
				*when = last;
				return CACHE_HISTORY_MATCH;
			}
			continue;
		}
		/* Another key, through any spheres: a refusal only. */
		if (answer == CACHE_HISTORY_NONE || last > changed)
			changed = last;
		answer = CACHE_HISTORY_CHANGED;
	}
	if (answer == CACHE_HISTORY_NONE)
		return CACHE_HISTORY_NONE;
	*when = changed;
	return answer;
}

int
cache_policy_covers(const struct cache_policy *had,
    const struct cache_policy *want, enum detector_verdict v)
{
	if (had->quorum == 0 || had->nspheres != want->nspheres ||
	    memcmp(had->spheres, want->spheres, CACHE_SPHERES_DIGEST_LEN) != 0)
		return 0;
	switch (v) {
	case DETECTOR_ACCEPT:
		return had->quorum >= want->quorum;
	case DETECTOR_REJECT:
		return had->quorum <= want->quorum;
	default:
		return had->quorum == want->quorum;
	}
}

size_t
cache_key(const char *host, unsigned int port, char *out, size_t size)
{
	size_t n = strlen(host), i;
	int len;

	if (n > 1 && host[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || port < 1 || port > 65535 || size < n + 7)
		return 0;
	for (i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)host[i]);
	len = snprintf(out + n, size - n, ":%u", port);
	return len > 0 ? n + (size_t)len : 0;
}

/* prefix (plen bytes) then cache_key(); its length, or 0. */
static size_t
prefixed_key(const char *prefix, size_t plen, const char *host,
    unsigned int port, char *out, size_t size)
{
	size_t n;

	if (size < plen + 1)
		return 0;
	memcpy(out, prefix, plen);
	n = cache_key(host, port, out + plen, size - plen);
	return n == 0 ? 0 : n + plen;
}

/* The history key of host:port: CACHE_HISTORY_PREFIX then cache_key();
 * its length, or 0. */
static size_t
history_key(const char *host, unsigned int port, char *out, size_t size)
{
	return prefixed_key(CACHE_HISTORY_PREFIX, CACHE_HISTORY_PREFIX_LEN,
	    host, port, out, size);
}

int
cache_default_path(char *out, size_t size)
{
	const char *xdg = secure_getenv("XDG_CACHE_HOME");
	const char *home = secure_getenv("HOME");
	int n;

	if (xdg != NULL && xdg[0] == '/')
		n = snprintf(out, size, "%s/detector/verdicts.mdb", xdg);
	else if (home != NULL && home[0] == '/')
		n = snprintf(out, size, "%s/.cache/detector/verdicts.mdb",
		    home);
	else
		return 0;
	return n > 0 && (size_t)n < size;
}

/*
 * Sharing one cache between many processes
 * ----------------------------------------
 * LMDB itself makes concurrent reads and writes safe.  What it cannot make
 * safe is our own repair: moving a damaged file aside is only right if the
 * file really is damaged, and only harmless if no process still has it
 * mapped.  Issue 13 found both broken under load: a check that compared
 * the file's size with a meta page another process had just committed
 * "found" a truncated file, and the healthy file was moved aside and its
 * lock file unlinked while 200 processes used them (verdicts lost, two
 * writers on two lock files, once a SIGBUS).
 *
 * So every process that opens the cache holds a lock on a third file,
 * PATH-guard, for as long as it has the cache open:
 *
 *   - exclusive ("alone"): taken only if nobody else holds the guard, i.e.
 *     no other process has the cache open.  Only then is the file created,
 *     its lock file's blocks reserved, the file checked for damage (nothing
 *     can commit meanwhile: check_tree()), and, if damaged, moved aside and
 *     replaced.
 *     Then the lock is turned into a shared one (atomically: nobody can
 *     slip in between) and kept.
 *   - shared: everyone else.  They wait while someone is alone, then open
 *     a file that a process alone has checked.  If such a process still
 *     sees damage (the file was damaged from outside while in use), it
 *     reports an error and keeps its verdicts in memory; the file is set
 *     aside by the next process that finds it alone.
 *
 * The locks are open-file-description locks (F_OFD_SETLK): unlike
 * fcntl()'s process locks they are not dropped when the process closes some
 * other descriptor of the file, and two handles in one process exclude
 * each other like two processes do; unlike flock(), turning exclusive into
 * shared is atomic.  A process that dies releases its lock with its last
 * descriptor, so no stale lock is ever left behind.  The guard file is
 * never removed or renamed; neither is the lock file any more.
 */
/* For a process alone to finish: creating and checking the file takes
 * milliseconds; one that holds the guard longer is stuck (stopped, or
 * hung on a dead file system), and waiting for it only stalls the
 * caller, which keeps verdicts in memory instead and tries later. */
#define CACHE_WAIT_MS 2000

enum hold {
	HOLD_NONE,      /* no guard (read-only folder, none made yet) */
	HOLD_READ,      /* shared, on a guard we cannot write: read only */
	HOLD_SHARED,    /* others may have the cache open */
	HOLD_ALONE,     /* nobody else has it open */
};

/* Takes an OFD lock on the whole guard file without waiting: 0 or errno. */
static int
guard_lock(int fd, short type)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;         /* l_start = l_len = 0: whole file */
	return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : errno;
}

/*
 * Opens PATH-guard under the trust rules (filetrust_open: no symlink, ours,
 * 0600) and locks it: alone if nobody holds it, else shared, waiting up to
 * CACHE_WAIT_MS while a process alone finishes.  A guard that cannot be
 * written (read-only folder or mount) is locked shared only (HOLD_READ);
 * none at all (a read-only folder where none was ever made) gives
 * HOLD_NONE and fd -1.
 * Returns the descriptor, -1 with *hold = HOLD_NONE, or -2 with err set.
 */
static int make_private(int fd, int dfd, const char *name,
    const char *shown, char *err, size_t errlen);

static int
guard_open(const struct cache *c, enum hold *hold, char *err, size_t errlen)
{
	char guard[4200], name[NAME_MAX + 8];
	struct timespec pause = { 0, 1000000 };  /* 1 ms, doubling to 16 */
	struct timespec start, now;
	long waited_ms = 0;
	int fd, writable = 1, rc;

	*hold = HOLD_NONE;
	snprintf(guard, sizeof(guard), "%s-guard", c->path);
	snprintf(name, sizeof(name), "%s-guard", c->base);
	fd = filetrust_openat(c->dfd, name, guard, O_RDWR | O_CREAT, 0600,
	    FILETRUST_OWNER_SELF, err, errlen);
	if (fd == -1 && (errno == EROFS || errno == EACCES)) {
		writable = 0;
		fd = filetrust_openat(c->dfd, name, guard, O_RDONLY, 0,
		    FILETRUST_OWNER_SELF, err, errlen);
		if (fd == -1 && errno == ENOENT)
			return -1;
	}
	if (fd == -1)
		return -2;
	if (make_private(fd, -1, NULL, guard, err, errlen) == -1) {
		close(fd);
		return -2;
	}
	for (;;) {
		if (writable && (rc = guard_lock(fd, F_WRLCK)) == 0) {
			*hold = HOLD_ALONE;
			return fd;
		}
		if ((rc = guard_lock(fd, F_RDLCK)) == 0) {
			*hold = writable ? HOLD_SHARED : HOLD_READ;
			return fd;
		}
		if ((rc != EAGAIN && rc != EACCES) ||
		    waited_ms >= CACHE_WAIT_MS)
			break;
		/* The bound is wall time: on a loaded machine the sleeps
		 * overrun, and counting them would stretch the wait. */
		if (waited_ms == 0)
			clock_gettime(CLOCK_MONOTONIC, &start);
		nanosleep(&pause, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited_ms = (now.tv_sec - start.tv_sec) * 1000 +
		    (now.tv_nsec - start.tv_nsec) / 1000000 + 1;
		if (pause.tv_nsec < 16000000)
			pause.tv_nsec *= 2;
	}
	if (rc == EAGAIN || rc == EACCES)
		snprintf(err, errlen, "%s: another process has been checking "
		    "or repairing the verdict cache for over %d s", guard,
		    CACHE_WAIT_MS / 1000);
	else
		snprintf(err, errlen, "%s: cannot lock: %s", guard,
		    strerror(rc));
	close(fd);
	return -2;
}

/*
 * A data file shorter than the pages its meta page claims would fault on
 * access: check before anything is read through the map.  The meta page is
 * read first and the size second: a commit in between only makes the file
 * longer (LMDB writes a commit's pages before its meta page, and never
 * shrinks the file), so a healthy file can never look truncated, even while
 * others write.  (The reverse order did, under load: issue 13.)
 */
static int
truncated(MDB_env *env)
{
	MDB_envinfo info;
	MDB_stat st;
	struct stat sb;
	int fd;

	if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &st) != 0 ||
	    mdb_env_get_fd(env, &fd) != 0 || fstat(fd, &sb) == -1)
		return 1;
	return (unsigned long long)sb.st_size <
	    ((unsigned long long)info.me_last_pgno + 1) * st.ms_psize;
}

/*
 * LMDB sizes its lock file with ftruncate() and then writes to it through
 * a shared mapping: on a full file system the first write has no block to
 * land on and the process dies of SIGBUS (found by the fault matrix).  So
 * the blocks are allocated here first, where a full disk is an error.
 * 16 KiB holds LMDB's reader table (8 KiB for its default 126 readers);
 * LMDB takes a larger existing file as room for more readers (about 250).
 *
 * Only called alone (no other process of ours has the cache open).  It
 * also asks the kernel whether any process holds LMDB's own lock on the
 * file (byte 0, taken by every process with the environment open): one
 * that does is using the cache without our guard (an older DetecTor, or
 * mdb_stat), and *busy tells the caller not to repair anything.  This
 * process holds no lock of its own on the file here, so opening and closing
 * it cannot drop one (fcntl locks are per process).
 */
#define CACHE_LOCK_SIZE 16384

static int
reserve_lock(const struct cache *c, int *busy)
{
	char lock[NAME_MAX + 8];
	struct flock fl;
	struct stat sb;
	int fd, rc = 0;

	*busy = 0;
	snprintf(lock, sizeof(lock), "%s-lock", c->base);
	if ((fd = openat(c->dfd, lock, O_RDWR | O_CREAT | O_CLOEXEC |
	    O_NOFOLLOW | O_NOCTTY, 0600)) == -1)
		return errno;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_len = 1;
	if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
		*busy = 1;
	if (fstat(fd, &sb) == -1)
		rc = errno;
	else if (sb.st_size < CACHE_LOCK_SIZE)
		rc = posix_fallocate(fd, 0, CACHE_LOCK_SIZE);
	close(fd);
	return rc;
}

/*
 * Alone only: follows the tree from its root to its first and to its last
 * entry, so a damaged root or branch page is found now, while the file can
 * still be set aside, rather than by every later lookup.  Not every page:
 * reading a cache of a million entries takes a third of a second, and
 * each process that opens the cache alone would pay it.  This cannot fault:
 * LMDB refuses page numbers past the last one the meta page names, and
 * truncated() has checked that those are inside the file.
 */
static int
check_tree(struct cache *c)
{
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn)) != 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, c->dbi, &cur)) == 0) {
		if ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0)
			rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Opens the LMDB environment at path and checks it.  The data file LMDB
 * opened by name is checked again through LMDB's own descriptor (ours, not
 * writable by others), so a file swapped in after check_files() is caught.
 * Returns 0, or -1 with *mdb_rc an errno or MDB_* code (see is_damage())
 * and err set.
 */
static int
try_open(struct cache *c, int readonly, int alone, int *mdb_rc, char *err,
    size_t errlen)
{
	const char *path = c->path;
	char why[512];
	MDB_txn *txn;
	int rc, fd, dead;

	if ((rc = mdb_env_create(&c->env)) != 0)
		goto fail;
	if ((rc = mdb_env_set_mapsize(c->env, CACHE_MAP_SIZE)) != 0)
		goto fail_env;
	/* MDB_NOMETASYNC: the commit before a verdict is handed over syncs
	 * its data pages only; cache_sync() (after the handover) makes the
	 * meta page durable.  See cache_sync(). */
	rc = mdb_env_open(c->env, c->mdb, MDB_NOSUBDIR | MDB_NOTLS |
	    MDB_NOMETASYNC | (readonly ? MDB_RDONLY : 0), 0600);
	if (rc != 0)
		goto fail_env;
	if (mdb_env_get_fd(c->env, &fd) != 0 || filetrust_check_fd(fd, path,
	    FILETRUST_OWNER_SELF, why, sizeof(why)) == -1) {
		mdb_env_close(c->env);
		c->env = NULL;
		*mdb_rc = EPERM;
		snprintf(err, errlen, "cannot use the verdict cache: %s", why);
		return -1;
	}
	if (truncated(c->env)) {
		rc = MDB_CORRUPTED;
		goto fail_env;
	}
	if ((rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn)) != 0)
		goto fail_env;
	if ((rc = mdb_dbi_open(txn, NULL, 0, &c->dbi)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		if (rc != 0)
			mdb_txn_abort(txn);
		goto fail_env;
	}
	if (alone && (rc = check_tree(c)) != 0)
		goto fail_env;
	/* Reader slots left by processes that died mid-lookup. */
	(void)mdb_reader_check(c->env, &dead);
	c->readonly = readonly;
	return 0;
fail_env:
	mdb_env_close(c->env);
	c->env = NULL;
fail:
	*mdb_rc = rc;
	snprintf(err, errlen, "cannot open the verdict cache %s: %s", path,
	    mdb_strerror(rc));
	return -1;
}

/*
 * Verdicts decide whether connections are accepted, so the cache must be
 * the user's own (filetrust.h): a file another user can write could be
 * poisoned with ACCEPTs for a MITM key, and a planted symlink would make us
 * (perhaps as root) create, overwrite or move aside a file we never meant
 * to touch.  The folder must belong to us (or root) and be writable by
 * nobody else; the data and lock files, if present, must be regular files
 * (not symlinks) that we own (root's too are refused: we write them) and
 * nobody else can write.  The guard file is checked as it is opened.
 * The folder, and every folder above it, has been checked by pin().
 */
/*
 * A cache file others may read tells them which hosts we visit, and a guard
 * they can open lets them hold a shared lock on it for ever: made 0600 if
 * group or others have any access (the file is ours, checked just before;
 * nobody else can swap the name in the pinned folder).  0, or -1 with err
 * set when that fails (a read-only file system): refused.
 */
static int
make_private(int fd, int dfd, const char *name, const char *shown, char *err,
    size_t errlen)
{
	struct stat sb;

	if ((fd >= 0 ? fstat(fd, &sb) : fstatat(dfd, name, &sb,
	    AT_SYMLINK_NOFOLLOW)) == -1)
		return errno == ENOENT ? 0 : -1;
	if ((sb.st_mode & 077) == 0)
		return 0;
	if ((fd >= 0 ? fchmod(fd, 0600) : fchmodat(dfd, name, 0600, 0)) == 0)
		return 0;
	snprintf(err, errlen, "%s is readable by others (mode %04o) and "
	    "cannot be made private (%s): refused; chmod 600 %s", shown,
	    (unsigned int)(sb.st_mode & 07777), strerror(errno), shown);
	return -1;
}

static int
check_files(const struct cache *c, char *err, size_t errlen)
{
	char lock[4200], name[NAME_MAX + 8];

	snprintf(lock, sizeof(lock), "%s-lock", c->path);
	snprintf(name, sizeof(name), "%s-lock", c->base);
	return filetrust_checkat(c->dfd, c->base, c->path,
	    FILETRUST_MISSING_OK | FILETRUST_OWNER_SELF, err, errlen) == -1 ||
	    filetrust_checkat(c->dfd, name, lock, FILETRUST_MISSING_OK |
	    FILETRUST_OWNER_SELF, err, errlen) == -1 ||
	    make_private(-1, c->dfd, c->base, c->path, err, errlen) == -1 ||
	    make_private(-1, c->dfd, name, lock, err, errlen) == -1 ? -1 : 0;
}

static int
is_damage(int rc)
{
	return rc == MDB_INVALID || rc == MDB_CORRUPTED ||
	    rc == MDB_VERSION_MISMATCH || rc == MDB_PAGE_NOTFOUND ||
	    rc == MDB_BAD_DBI || rc == MDB_INCOMPATIBLE;
}

/*
 * Moves a damaged data file aside as "path.corrupt-<time>", never over an
 * earlier one (RENAME_NOREPLACE; the number is counted up if taken).  Only
 * called alone, so no process has the file mapped.  The lock file stays:
 * LMDB re-initialises it when the first process opens the new file.
 */
static int
set_aside(const struct cache *c, char *aside, size_t size)
{
	char name[NAME_MAX + 32];
	long t = (long)time(NULL);
	int i;

	for (i = 0; i < 100; i++) {
		snprintf(aside, size, "%s.corrupt-%ld", c->path, t + i);
		snprintf(name, sizeof(name), "%s.corrupt-%ld", c->base, t + i);
		if (renameat2(c->dfd, c->base, c->dfd, name,
		    RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/*
 * Alone: create or check the file, repair it if damaged, fall back to
 * read-only if it cannot be written.  Returns 0, or -1 with err set.
 */
static int
open_alone(struct cache *c, char *note, size_t notelen, char *err,
    size_t errlen)
{
	const char *path = c->path;
	char aside[4300];
	int rc, busy;

	if ((rc = reserve_lock(c, &busy)) != 0 && rc != EROFS &&
	    rc != EACCES) {
		snprintf(err, errlen, "cannot open the verdict cache %s: its "
		    "lock file: %s", path, strerror(rc));
		return -1;
	}
	if (try_open(c, 0, !busy, &rc, err, errlen) == 0)
		return 0;
	if (is_damage(rc) && busy) {
		snprintf(err, errlen, "cannot open the verdict cache %s: %s; "
		    "a process that does not take DetecTor's guard (an older "
		    "version, or an LMDB tool) has it open, so it is left as "
		    "it is", path, mdb_strerror(rc));
		return -1;
	}
	if (is_damage(rc)) {
		if (set_aside(c, aside, sizeof(aside)) == -1) {
			snprintf(err, errlen, "the verdict cache %s is damaged "
			    "(%s) and cannot be moved aside: %s; remove it",
			    path, mdb_strerror(rc), strerror(errno));
			return -1;
		}
		snprintf(note, notelen, "the verdict cache %s was damaged (%s); "
		    "moved it aside to %s and started a new one", path,
		    mdb_strerror(rc), aside);
		if ((rc = reserve_lock(c, &busy)) != 0) {
			snprintf(err, errlen, "cannot open the verdict cache "
			    "%s: its lock file: %s", path, strerror(rc));
			return -1;
		}
		return try_open(c, 0, 1, &rc, err, errlen);
	}
	if ((rc == EACCES || rc == EROFS) &&
	    try_open(c, 1, !busy, &rc, err, errlen) == 0) {
		snprintf(note, notelen, "the verdict cache %s is read-only: "
		    "verdicts are looked up there but kept in memory", path);
		return 0;
	}
	return -1;
}

/*
 * Shared (others have the file open, and one alone checked it): open it,
 * never create or repair it.  Without a writable guard (hold NONE, or a
 * read-only guard) it is opened read-only: writing unguarded could race a
 * repair.  Returns 0, or -1 with err set.
 */
static int
open_shared(struct cache *c, int may_write, char *note, size_t notelen,
    char *err, size_t errlen)
{
	const char *path = c->path;
	char lock[NAME_MAX + 8];
	struct stat sb;
	int rc;

	/* A process alone made both files, and the lock file's blocks; if
	 * they are gone, they were removed from outside while in use, and
	 * LMDB must not re-make them here (concurrently, through a map). */
	snprintf(lock, sizeof(lock), "%s-lock", c->base);
	if (fstatat(c->dfd, c->base, &sb, AT_SYMLINK_NOFOLLOW) == -1 ||
	    (may_write && (fstatat(c->dfd, lock, &sb,
	    AT_SYMLINK_NOFOLLOW) == -1 ||
	    sb.st_size < CACHE_LOCK_SIZE))) {
		snprintf(err, errlen, "cannot open the verdict cache %s: it or "
		    "its lock file was removed or cut short while other "
		    "processes use it; it is made again when none does", path);
		return -1;
	}
	if (may_write && try_open(c, 0, 0, &rc, err, errlen) == 0)
		return 0;
	if ((!may_write || rc == EACCES || rc == EROFS) &&
	    try_open(c, 1, 0, &rc, err, errlen) == 0) {
		snprintf(note, notelen, "the verdict cache %s is read-only: "
		    "verdicts are looked up there but kept in memory", path);
		return 0;
	}
	if (is_damage(rc))
		snprintf(err, errlen, "cannot open the verdict cache %s: %s; "
		    "other processes are using it, so it is left as it is "
		    "(it is set aside when none does)", path, mdb_strerror(rc));
	return -1;
}

/*
 * Pins the folder holding the cache (filetrust_open_dir(): walked from "/"
 * without following anything another user could have placed, and every
 * folder on the way one nobody else can change), and names the data file
 * to LMDB through the pinned descriptor, /proc/self/fd/N/NAME: LMDB opens
 * its data and lock files by name, following symlinks, and a name through
 * the path as given could be redirected between our checks and its open
 * by whoever owns a folder above (a root process running with a user's
 * HOME: the user swaps ~/.cache for a symlink, and root creates or
 * truncates a file of the user's choosing).  /proc/self/fd/N is the
 * folder itself, whatever is renamed meanwhile.  Without /proc the path
 * as given is used: every folder on it was found to be changeable by
 * nobody but us and root, so no one else can redirect it either.
 * Creates the last two folders (~/.cache/detector) if missing.
 */
static int
pin(struct cache *c, const char *path, char *err, size_t errlen)
{
	char dir[4096], proc[64];
	const char *base = strrchr(path, '/');
	struct stat a, b;

	base = base == NULL ? path : base + 1;
	if (strlen(path) >= sizeof(c->path) || strlen(base) > NAME_MAX - 32 ||
	    base[0] == '\0' || strcmp(base, ".") == 0 ||
	    strcmp(base, "..") == 0 ||
	    !filetrust_dirname(path, dir, sizeof(dir))) {
		snprintf(err, errlen, "%s: not a file name for the verdict "
		    "cache", path);
		return -1;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	snprintf(c->base, sizeof(c->base), "%s", base);
	if ((c->dfd = filetrust_open_dir(dir, 2, err, errlen)) == -1)
		return -1;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", c->dfd);
	if (fstat(c->dfd, &a) == 0 && stat(proc, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		snprintf(c->mdb, sizeof(c->mdb), "%s/%s", proc, base);
	else if (snprintf(c->mdb, sizeof(c->mdb), "%s", path) >=
	    (int)sizeof(c->mdb)) {
		snprintf(err, errlen, "%s: path too long (and no /proc to "
		    "shorten it)", path);
		return -1;
	}
	return 0;
}

/* The open handle of this process for the file c names, if any (under
 * registry; c pinned). */
static struct cache *
already_open(struct cache *c)
{
	struct cache *o;
	struct stat sb;

	if (fstat(c->dfd, &sb) == -1)
		return NULL;
	c->dev = sb.st_dev;
	c->ino = sb.st_ino;
	for (o = open_caches; o != NULL; o = o->next_open) {
		if (o->dev == c->dev && o->ino == c->ino &&
		    strcmp(o->base, c->base) == 0 &&
		    o->generation == cache_generation)
			return o;
	}
	return NULL;
}

struct cache *
cache_open(const char *path, char *note, size_t notelen, char *err,
    size_t errlen)
{
	struct cache *c = calloc(1, sizeof(*c)), *other;
	char reason[4400];
	enum hold hold;
	int rc;

	note[0] = '\0';
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	(void)pthread_once(&cache_once, cache_init);
	c->generation = cache_generation;
	c->dfd = c->guard = -1;
	if (pin(c, path, reason, sizeof(reason)) == -1) {
		snprintf(err, errlen, "cannot use the verdict cache: %s",
		    reason);
		goto fail_unlocked;
	}
	pthread_mutex_lock(&registry);
	if ((other = already_open(c)) != NULL) {
		other->refs++;
		pthread_mutex_unlock(&registry);
		close(c->dfd);
		free(c);
		return other;
	}
	if (check_files(c, reason, sizeof(reason)) == -1 ||
	    (c->guard = guard_open(c, &hold, reason, sizeof(reason))) == -2) {
		snprintf(err, errlen, "cannot use the verdict cache: %s",
		    reason);
		c->guard = -1;
		goto fail;
	}
	if (hold == HOLD_ALONE) {
		if (open_alone(c, note, notelen, err, errlen) == -1)
			goto fail;
		/* Now others may open it too (atomic: nobody slips in). */
		if ((rc = guard_lock(c->guard, F_RDLCK)) != 0) {
			snprintf(err, errlen, "cannot use the verdict cache %s: "
			    "cannot share its guard: %s", path, strerror(rc));
			mdb_env_close(c->env);
			goto fail;
		}
	} else if (open_shared(c, hold == HOLD_SHARED, note, notelen,
	    err, errlen) == -1)
		goto fail;
	close(c->dfd);
	c->dfd = -1;
	c->refs = 1;
	c->next_open = open_caches;
	open_caches = c;
	pthread_mutex_unlock(&registry);
	return c;
fail:
	pthread_mutex_unlock(&registry);
fail_unlocked:
	if (c->guard >= 0)
		close(c->guard);
	if (c->dfd >= 0)
		close(c->dfd);
	free(c);
	return NULL;
}

/* The environment is closed before the guard: until then this process
 * counts as a user, and nobody may repair the file under its map. */
void
cache_close(struct cache *c)
{
	struct cache **p;

	if (c == NULL)
		return;
	if (c->generation != cache_generation) {
		/* Opened before fork(): see "fork()" above. */
		pthread_mutex_lock(&registry);
		if (c->guard >= 0)
			close(c->guard);
		c->guard = -1;
		c->next = stale_caches;
		stale_caches = c;
		pthread_mutex_unlock(&registry);
		return;
	}
	pthread_mutex_lock(&registry);
	if (--c->refs > 0) {
		pthread_mutex_unlock(&registry);
		return;
	}
	for (p = &open_caches; *p != NULL; p = &(*p)->next_open) {
		if (*p == c) {
			*p = c->next_open;
			break;
		}
	}
	/* Held through the close: a cache_open() of the same file meanwhile
	 * would open a second environment while this one still holds the
	 * file's fcntl() locks (which closing it then drops), and the guard
	 * must go only after the environment. */
	if (c->env != NULL)
		mdb_env_close(c->env);
	if (c->guard >= 0)
		close(c->guard);
	pthread_mutex_unlock(&registry);
	free(c);
}

int
cache_readonly(const struct cache *c)
{
	return c->readonly;
}

int
cache_usable(const struct cache *c)
{
	return c->generation == cache_generation;
}

static int
fail(int rc, char *err, size_t errlen)
{
	snprintf(err, errlen, "verdict cache: %s", mdb_strerror(rc));
	return -1;
}

int
cache_get(struct cache *c, const char *host, unsigned int port,
    struct cache_record *r, char *err, size_t errlen)
{
	char key[CACHE_KEY_MAX];
	MDB_val k, v;
	MDB_txn *txn;
	int rc, found;

	if (mine(c, err, errlen) == -1)
		return -1;
	if ((k.mv_size = cache_key(host, port, key, sizeof(key))) == 0)
		return 0;
	k.mv_data = key;
	if ((rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn)) != 0)
		return fail(rc, err, errlen);
	rc = mdb_get(txn, c->dbi, &k, &v);
	found = rc == 0 && cache_record_decode(v.mv_data, v.mv_size, r) == 0;
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return fail(rc, err, errlen);
	return found;
}

/* Checks that c may be written; 0, or -1 with err set. */
static int
writable(const struct cache *c, char *err, size_t errlen)
{
	if (mine(c, err, errlen) == -1)
		return -1;
	if (c->readonly) {
		snprintf(err, errlen, "verdict cache is read-only");
		return -1;
	}
	return 0;
}

static int
put_value(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t klen,
    const unsigned char *val, size_t vlen)
{
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };

	return mdb_put(txn, dbi, &k, &v, 0);
}

/* Aborts txn and says why, or commits it: 0 or -1 with err set. */
static int
end_write(MDB_txn *txn, int rc, char *err, size_t errlen)
{
	if (rc != 0) {
		mdb_txn_abort(txn);
		return fail(rc, err, errlen);
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return fail(rc, err, errlen);
	return 0;
}

int
cache_put(struct cache *c, const char *host, unsigned int port,
    const struct cache_record *r, char *err, size_t errlen)
{
	unsigned char rec[CACHE_RECORD_LEN];
	char key[CACHE_KEY_MAX];
	size_t klen;
	MDB_txn *txn;
	int rc;

	if (writable(c, err, errlen) == -1)
		return -1;
	if ((klen = cache_key(host, port, key, sizeof(key))) == 0) {
		snprintf(err, errlen, "verdict cache: bad key");
		return -1;
	}
	cache_record_encode(r, rec);
	if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)) != 0)
		return fail(rc, err, errlen);
	return end_write(txn, put_value(txn, c->dbi, key, klen, rec,
	    sizeof(rec)), err, errlen);
}

/* A strict decoder of a key history or sightings record (cache.h), which
 * leaves out empty when it refuses in. */
typedef int (*decode_fn)(const unsigned char *in, size_t len, void *out);

static int
decode_history(const unsigned char *in, size_t len, void *out)
{
	return cache_history_decode(in, len, out);
}

/* The value under key in txn, decoded into out (size bytes): 0 with out
 * set (empty when absent or malformed: the next write replaces it), or
 * an MDB error. */
static int
value_in(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t klen,
    decode_fn decode, void *out, size_t size)
{
	MDB_val k = { klen, (void *)key }, v;
	int rc = mdb_get(txn, dbi, &k, &v);

	if (rc != 0 || decode(v.mv_data, v.mv_size, out) != 0)
		memset(out, 0, size);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
history_in(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t klen,
    struct cache_history *h)
{
	return value_in(txn, dbi, key, klen, decode_history, h, sizeof(*h));
}

/* value_in() in a read transaction of its own: 0 or an MDB error. */
static int
value_get(struct cache *c, const char *key, size_t klen, decode_fn decode,
    void *out, size_t size)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn)) != 0)
		return rc;
	rc = value_in(txn, c->dbi, key, klen, decode, out, size);
	mdb_txn_abort(txn);
	return rc;
}

int
cache_history_get(struct cache *c, const char *host, unsigned int port,
    struct cache_history *h, char *err, size_t errlen)
{
	char key[CACHE_KEY_MAX + CACHE_HISTORY_PREFIX_LEN];
	size_t klen;
	int rc;

	memset(h, 0, sizeof(*h));
	if (mine(c, err, errlen) == -1)
		return -1;
	if ((klen = history_key(host, port, key, sizeof(key))) == 0)
		return 0;
	if ((rc = value_get(c, key, klen, decode_history, h,
	    sizeof(*h))) != 0)
		return fail(rc, err, errlen);
	return h->n > 0;
}

/* Deletes, in txn, the entries whose key is key (exact) or, with prefix
 * set, begins with it; adds how many to *removed. */
static int
delete_keys(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t klen,
    int prefix, int *removed)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return rc;
	for (;;) {
		k.mv_data = (void *)key;
		k.mv_size = klen;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc != 0 || k.mv_size < klen ||
		    memcmp(k.mv_data, key, klen) != 0 ||
		    (!prefix && k.mv_size != klen))
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		(*removed)++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int sightings_forget(MDB_txn *txn, MDB_dbi dbi, const char *name,
    size_t nlen, int prefix, int *removed);

int
cache_forget(struct cache *c, const char *host, unsigned int port,
    char *err, size_t errlen)
{
	char key[CACHE_KEY_MAX + CACHE_HISTORY_PREFIX_LEN];
	size_t klen;
	MDB_txn *txn;
	int rc, removed = 0, histories = 0;

	if (writable(c, err, errlen) == -1)
		return -1;
	/* With port 0 the key is the prefix "host:", matching every port. */
	if ((klen = history_key(host, port ? port : 1, key,
	    sizeof(key))) == 0) {
		snprintf(err, errlen, "verdict cache: bad host '%s'", host);
		return -1;
	}
	if (port == 0)
		klen -= 1;
	if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)) != 0)
		return fail(rc, err, errlen);
	/* The records ("host:port"), then the histories ("\0hhost:port"). */
	rc = delete_keys(txn, c->dbi, key + CACHE_HISTORY_PREFIX_LEN,
	    klen - CACHE_HISTORY_PREFIX_LEN, port == 0, &removed);
	if (rc == 0)
		rc = delete_keys(txn, c->dbi, key, klen, port == 0,
		    &histories);
	if (rc == 0)
		rc = sightings_forget(txn, c->dbi, key + CACHE_HISTORY_PREFIX_LEN,
		    klen - CACHE_HISTORY_PREFIX_LEN, port == 0, &histories);
	if (end_write(txn, rc, err, errlen) == -1)
		return -1;
	return removed;
}

int
cache_list(struct cache *c, void (*fn)(void *arg, const char *key,
    const struct cache_record *r), void *arg, char *err, size_t errlen)
{
	char key[CACHE_KEY_MAX];
	struct cache_record r;
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_txn *txn;
	int rc;

	if (mine(c, err, errlen) == -1)
		return -1;
	if ((rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn)) != 0)
		return fail(rc, err, errlen);
	if ((rc = mdb_cursor_open(txn, c->dbi, &cur)) != 0) {
		mdb_txn_abort(txn);
		return fail(rc, err, errlen);
	}
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		size_t n = k.mv_size < sizeof(key) - 1 ? k.mv_size :
		    sizeof(key) - 1;

		/* A key history: not a verdict (cache_history_get()). */
		if (k.mv_size >= CACHE_HISTORY_PREFIX_LEN &&
		    memcmp(k.mv_data, CACHE_HISTORY_PREFIX,
		    CACHE_HISTORY_PREFIX_LEN) == 0)
			continue;
		memcpy(key, k.mv_data, n);
		key[n] = '\0';
		fn(arg, key, cache_record_decode(v.mv_data, v.mv_size, &r) ==
		    0 ? &r : NULL);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rc == MDB_NOTFOUND ? 0 : fail(rc, err, errlen);
}

int
cache_fresh(enum detector_verdict v, int64_t verified, int64_t expires,
    uint32_t validity_s, int64_t now)
{
	if (expires <= now || v == DETECTOR_UNDECIDED)
		return 0;
	if (v != DETECTOR_ACCEPT)
		return 1;
	/* The asker's validity, not the recorder's: a lax process's
	 * year-long ACCEPT must not answer a 60-second asker for a year.
	 * A verification in the future (clock set back) answers nobody. */
	return verified <= now && now - verified < (int64_t)validity_s;
}

int
cache_recall(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    uint32_t validity_s, uint32_t now, struct cache_record *r)
{
	char err[256];

	if (cache_get(c, host, port, r, err, sizeof(err)) != 1)
		return 0;
	return cache_fresh(r->verdict, r->last_verified, r->expires,
	    validity_s, now) &&
	    memcmp(r->spki, spki, DETECTOR_SHA256_LEN) == 0 &&
	    cache_policy_covers(&r->policy, pol, r->verdict);
}

int
cache_remember(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, uint32_t now, uint32_t validity_s, char *err,
    size_t errlen)
{
	return cache_remember_seen(c, host, port, spki, pol, v, now,
	    validity_s, NULL, 0, err, errlen);
}

static int sightings_put(MDB_txn *txn, MDB_dbi dbi, const char *host,
    unsigned int port, const unsigned char (*seen)[DETECTOR_SHA256_LEN],
    size_t nseen, const struct cache_policy *pol, uint32_t now);

int
cache_remember_seen(struct cache *c, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, uint32_t now, uint32_t validity_s,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen,
    char *err, size_t errlen)
{
	char key[CACHE_KEY_MAX + CACHE_HISTORY_PREFIX_LEN];
	unsigned char rec[CACHE_RECORD_LEN];
	unsigned char hist[CACHE_HISTORY_LEN(CACHE_HISTORY_MAX)];
	struct cache_record old, r;
	struct cache_history h;
	uint32_t ttl = v == DETECTOR_ACCEPT ? validity_s : CACHE_TTL_REJECT;
	const char *name;
	size_t klen, hlen;
	MDB_val k, val;
	MDB_txn *txn;
	int rc;

	if (v != DETECTOR_ACCEPT && v != DETECTOR_REJECT &&
	    (v != DETECTOR_UNDECIDED || nseen == 0)) {
		snprintf(err, errlen, "verdict cache: only an ACCEPT or a "
		    "REJECT is remembered (%s:%u)", host, port);
		return -1;
	}
	if (pol->quorum < 1 || pol->nspheres < pol->quorum ||
	    pol->nspheres > DETECTOR_MAX_SPHERES) {
		snprintf(err, errlen, "verdict cache: no policy for %s:%u",
		    host, port);
		return -1;
	}
	if (writable(c, err, errlen) == -1)
		return -1;
	if ((klen = history_key(host, port, key, sizeof(key))) == 0) {
		snprintf(err, errlen, "verdict cache: bad key");
		return -1;
	}
	name = key + CACHE_HISTORY_PREFIX_LEN;
	memset(&r, 0, sizeof(r));
	r.verdict = v;
	r.first_seen = now;
	r.last_verified = now;
	r.expires = now + ttl < now ? UINT32_MAX : now + ttl;
	memcpy(r.spki, spki, DETECTOR_SHA256_LEN);
	r.policy = *pol;
	/* One write transaction: the record and the history it confirms
	 * are never seen apart, and no other writer runs in between. */
	if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)) != 0)
		return fail(rc, err, errlen);
	k.mv_data = (void *)name;
	k.mv_size = klen - CACHE_HISTORY_PREFIX_LEN;
	/* What the spheres saw (tolerance = survey), with the verdict, if
	 * any, in the same transaction; an UNDECIDED writes only that. */
	if (nseen > 0 && (rc = sightings_put(txn, c->dbi, host, port, seen,
	    nseen, pol, now)) != 0)
		return end_write(txn, rc, err, errlen);
	if (v == DETECTOR_UNDECIDED)
		return end_write(txn, 0, err, errlen);
	if (mdb_get(txn, c->dbi, &k, &val) == 0 &&
	    cache_record_decode(val.mv_data, val.mv_size, &old) == 0 &&
	    memcmp(old.spki, spki, DETECTOR_SHA256_LEN) == 0 &&
	    old.verdict == v && old.first_seen <= now)
		r.first_seen = old.first_seen;
	cache_record_encode(&r, rec);
	rc = put_value(txn, c->dbi, name, k.mv_size, rec, sizeof(rec));
	if (rc == 0 && v == DETECTOR_ACCEPT &&
	    (rc = history_in(txn, c->dbi, key, klen, &h)) == 0) {
		cache_history_confirm(&h, spki, pol, now);
		hlen = cache_history_encode(&h, hist);
		rc = put_value(txn, c->dbi, key, klen, hist, hlen);
	}
	return end_write(txn, rc, err, errlen);
}

/*
 * Crash consistency (issue 16 item 5, the first visit).  The environment
 * is opened with MDB_NOMETASYNC: a commit writes its data pages and waits
 * for them to reach the disk (fdatasync), then writes the meta page that
 * points at them without waiting.  LMDB keeps two meta pages and only ever
 * writes the older one, so the file is never corrupt: after a crash of the
 * machine before the meta page reached the disk the file is as it was
 * before that commit (the last verdicts are lost; the next visit probes
 * again).  A crash of the process loses nothing: the written pages are in
 * the kernel's page cache.  This saves the commit's second wait for the
 * disk, before the verdict is handed over; cache_sync() waits for it
 * afterwards (the NSS worker calls it once a verdict has been handed over;
 * any later write commit also makes it durable).  Read-only handles have
 * nothing to sync.  0, or -1 with err set.
 */
int
cache_sync(struct cache *c, char *err, size_t errlen)
{
	int rc;

	if (mine(c, err, errlen) == -1)
		return -1;
	if (c->readonly)
		return 0;
	if ((rc = mdb_env_sync(c->env, 1)) != 0)
		return fail(rc, err, errlen);
	return 0;
}

/*
 * Sightings (tolerance = survey; layout and rules in cache.h).  Strict
 * like the history: a record not exactly as this version writes it is
 * refused whole and treated as absent (no key is tolerated by it).
 */
size_t
cache_sightings_encode(const struct cache_sightings *s,
    unsigned char out[CACHE_SIGHTINGS_LEN(CACHE_SIGHTINGS_MAX)])
{
	unsigned int i;

	if (s->n == 0 || s->n > CACHE_SIGHTINGS_MAX)
		return 0;
	memset(out, 0, CACHE_SIGHTINGS_LEN(s->n));
	out[0] = CACHE_SIGHTINGS_VERSION;
	out[1] = (unsigned char)s->n;
	for (i = 0; i < s->n; i++) {
		const struct cache_sighting *e = &s->e[i];
		unsigned char *p = out + CACHE_SIGHTINGS_LEN(i);

		memcpy(p, e->spki, DETECTOR_SHA256_LEN);
		put32(p + 32, e->first_seen);
		put32(p + 36, e->last_seen);
		p[40] = (unsigned char)e->nspheres;
		memcpy(p + 48, e->spheres, CACHE_SPHERES_DIGEST_LEN);
	}
	return CACHE_SIGHTINGS_LEN(s->n);
}

int
cache_sightings_decode(const unsigned char *in, size_t len,
    struct cache_sightings *s)
{
	unsigned int i, j, n;

	memset(s, 0, sizeof(*s));
	if (len < CACHE_SIGHTINGS_HEADER_LEN ||
	    in[0] != CACHE_SIGHTINGS_VERSION || (n = in[1]) < 1 ||
	    n > CACHE_SIGHTINGS_MAX || len != CACHE_SIGHTINGS_LEN(n) ||
	    in[2] != 0 || in[3] != 0)
		return -1;
	for (i = 0; i < n; i++) {
		const unsigned char *p = in + CACHE_SIGHTINGS_LEN(i);
		struct cache_sighting *e = &s->e[i];

		if (p[40] < 1 || p[40] > DETECTOR_MAX_SPHERES ||
		    !all_zero(p + 41, 7))
			goto bad;
		memcpy(e->spki, p, DETECTOR_SHA256_LEN);
		e->first_seen = get32(p + 32);
		e->last_seen = get32(p + 36);
		e->nspheres = p[40];
		memcpy(e->spheres, p + 48, CACHE_SPHERES_DIGEST_LEN);
		if (e->first_seen > e->last_seen ||
		    (i > 0 && e->last_seen > s->e[i - 1].last_seen))
			goto bad;
		for (j = 0; j < i; j++)
			if (memcmp(s->e[j].spki, e->spki,
			    DETECTOR_SHA256_LEN) == 0 &&
			    s->e[j].nspheres == e->nspheres &&
			    memcmp(s->e[j].spheres, e->spheres,
			    CACHE_SPHERES_DIGEST_LEN) == 0)
				goto bad;
	}
	s->n = n;
	return 0;
bad:
	memset(s, 0, sizeof(*s));
	return -1;
}

/* One sighting: refreshed if its key and spheres are known (first_seen
 * kept, the earliest), else added, the oldest dropped when full; newest
 * first.  A time after now (clock set back) is brought back to now. */
static void
sighting_add(struct cache_sightings *s, const unsigned char *spki,
    unsigned int nspheres, const unsigned char *spheres, uint32_t first,
    uint32_t last)
{
	struct cache_sighting e;
	unsigned int i;

	for (i = 0; i < s->n; i++) {
		if (memcmp(s->e[i].spki, spki, DETECTOR_SHA256_LEN) == 0 &&
		    s->e[i].nspheres == nspheres &&
		    memcmp(s->e[i].spheres, spheres,
		    CACHE_SPHERES_DIGEST_LEN) == 0)
			break;
	}
	if (i < s->n) {
		e = s->e[i];
		if (first < e.first_seen)
			e.first_seen = first;
		if (last > e.last_seen)
			e.last_seen = last;
		memmove(&s->e[i], &s->e[i + 1], (s->n - i - 1) * sizeof(e));
		s->n--;
	} else {
		memset(&e, 0, sizeof(e));
		memcpy(e.spki, spki, DETECTOR_SHA256_LEN);
		e.nspheres = nspheres;
		memcpy(e.spheres, spheres, CACHE_SPHERES_DIGEST_LEN);
		e.first_seen = first;
		e.last_seen = last;
		if (s->n == CACHE_SIGHTINGS_MAX) {
			if (s->e[s->n - 1].last_seen > last)
				return;         /* older than all kept */
			s->n--;
		}
	}
	if (e.first_seen > e.last_seen)
		e.first_seen = e.last_seen;
	for (i = s->n; i > 0 && s->e[i - 1].last_seen < e.last_seen; i--)
		s->e[i] = s->e[i - 1];
	s->e[i] = e;
	s->n++;
}

void
cache_sightings_add(struct cache_sightings *s, const unsigned char *spki,
    const struct cache_policy *pol, uint32_t now)
{
	unsigned int i;

	for (i = 0; i < s->n; i++) {
		if (s->e[i].last_seen > now)
			s->e[i].last_seen = now;
		if (s->e[i].first_seen > s->e[i].last_seen)
			s->e[i].first_seen = s->e[i].last_seen;
	}
	if (pol->nspheres < 1 || pol->nspheres > DETECTOR_MAX_SPHERES)
		return;
	sighting_add(s, spki, pol->nspheres, pol->spheres, now, now);
}

void
cache_sightings_merge(struct cache_sightings *s,
    const struct cache_sightings *src)
{
	unsigned int i;

	for (i = 0; i < src->n; i++)
		sighting_add(s, src->e[i].spki, src->e[i].nspheres,
		    src->e[i].spheres, src->e[i].first_seen,
		    src->e[i].last_seen);
}

int
cache_sightings_judge(const struct cache_sightings *s,
    const unsigned char *spki, const struct cache_policy *pol,
    unsigned int days, uint32_t now, uint32_t *when)
{
	uint64_t window = (uint64_t)days * 86400;
	uint32_t last;
	unsigned int i;

	for (i = 0; days > 0 && i < s->n; i++) {
		const struct cache_sighting *e = &s->e[i];

		last = e->last_seen > now ? now : e->last_seen;
		/* Through the asker's own spheres only: a run through
		 * spheres someone else chose vouches for nothing. */
		if (memcmp(e->spki, spki, DETECTOR_SHA256_LEN) != 0 ||
		    e->nspheres != pol->nspheres ||
		    memcmp(e->spheres, pol->spheres,
		    CACHE_SPHERES_DIGEST_LEN) != 0 ||
		    (uint64_t)(now - last) > window)
			continue;
		*when = last;
		return 1;
	}
	return 0;
}

/* "\0h\0s" then cache_key(): a name never holds a NUL, so this never
 * meets a history key ("\0h" then the name); older versions skip it when
 * listing (it begins with the history prefix).  Its length, or 0. */
static size_t
sightings_key(const char *host, unsigned int port, char *out, size_t size)
{
	return prefixed_key(CACHE_SIGHTINGS_PREFIX, CACHE_SIGHTINGS_PREFIX_LEN,
	    host, port, out, size);
}

static int
decode_sightings(const unsigned char *in, size_t len, void *out)
{
	return cache_sightings_decode(in, len, out);
}

static int
sightings_put(MDB_txn *txn, MDB_dbi dbi, const char *host, unsigned int port,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen,
    const struct cache_policy *pol, uint32_t now)
{
	char key[CACHE_KEY_MAX + CACHE_SIGHTINGS_PREFIX_LEN];
	unsigned char out[CACHE_SIGHTINGS_LEN(CACHE_SIGHTINGS_MAX)];
	struct cache_sightings s;
	size_t klen, i, len;
	int rc;

	if ((klen = sightings_key(host, port, key, sizeof(key))) == 0)
		return 0;
	if ((rc = value_in(txn, dbi, key, klen, decode_sightings, &s,
	    sizeof(s))) != 0)
		return rc;
	for (i = 0; i < nseen; i++)
		cache_sightings_add(&s, seen[i], pol, now);
	if ((len = cache_sightings_encode(&s, out)) == 0)
		return 0;
	return put_value(txn, dbi, key, klen, out, len);
}

static int
sightings_forget(MDB_txn *txn, MDB_dbi dbi, const char *name, size_t nlen,
    int prefix, int *removed)
{
	char key[CACHE_KEY_MAX + CACHE_SIGHTINGS_PREFIX_LEN];

	if (nlen > CACHE_KEY_MAX)
		return 0;
	memcpy(key, CACHE_SIGHTINGS_PREFIX, CACHE_SIGHTINGS_PREFIX_LEN);
	memcpy(key + CACHE_SIGHTINGS_PREFIX_LEN, name, nlen);
	return delete_keys(txn, dbi, key, nlen + CACHE_SIGHTINGS_PREFIX_LEN,
	    prefix, removed);
}

int
cache_sightings_get(struct cache *c, const char *host, unsigned int port,
    struct cache_sightings *s, char *err, size_t errlen)
{
	char key[CACHE_KEY_MAX + CACHE_SIGHTINGS_PREFIX_LEN];
	size_t klen;
	int rc;

	memset(s, 0, sizeof(*s));
	if (mine(c, err, errlen) == -1)
		return -1;
	if ((klen = sightings_key(host, port, key, sizeof(key))) == 0)
		return 0;
	if ((rc = value_get(c, key, klen, decode_sightings, s,
	    sizeof(*s))) != 0)
		return fail(rc, err, errlen);
	return s->n > 0;
}
