/*
 * memory.c - what DetecTor remembers: the verdict cache first, this
 * process's memory (memo.c) when there is no cache or it cannot be
 * written, and every problem with either said once.
 *
 * The policy of when a remembered verdict answers lives in cache.c
 * (cache_recall) and memo.c (memo_lookup): only for exactly the key that
 * was checked, and only until the verdict expires.
 *
 * This is the engine's one piece of process-wide state, and it is there
 * because LMDB imposes it: one handle per file and process (its locks are
 * per process).  Every context configured with the same `cache` setting
 * shares one struct memory; a handle opened before fork() is never used
 * in the child, which keeps verdicts in its memory instead.
 */
#include "memory.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pk11pub.h>

#include "cache.h"
#include "filetrust.h"
#include "memo.h"

#define MEMORY_NOTES 4
#define MEMORY_NOTE_MAX 1024

/*
 * When the cache file is opened
 * -----------------------------
 * Lazily, by the first lookup or record that needs it, and never under
 * memory_lock: opening may wait (MEMORY_WAIT in cache.c: for a process
 * that is creating or checking the file), and every other thread must go
 * on meanwhile with this process's memory.  One thread opens (opening);
 * the others do not wait for it.  If it fails, it is tried again by the
 * first call after 1 s, then 2, 4, ... up to MEMORY_RETRY_MAX_MS between
 * tries, so that a process that outlives a stuck or damaged cache uses it
 * again once it is usable, without paying an open on every handshake.  After fork() the
 * child does not use the parent's handle (cache.c refuses it); it opens
 * its own the same way.
 */
#define MEMORY_RETRY_MAX_MS 60000

struct memory {
	char where[PATH_MAX];           /* the cache file; "" none */
	int can_open;                   /* where names a file to try */
	int opening;                    /* a thread is opening it now */
	unsigned int failures;          /* opens failed in a row */
	int64_t retry_at;               /* monotonic ms: next try after */
	struct cache *cache;            /* NULL: none, or it failed */
	char cache_err[MEMORY_NOTE_MAX];        /* why there is no cache */
	int write_failed;               /* reported once */
	char notes[MEMORY_NOTES][MEMORY_NOTE_MAX];
	unsigned int nnotes;
	struct memo memo;
	struct memory *next;
};

static pthread_mutex_t memory_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t memory_once = PTHREAD_ONCE_INIT;
static struct memory *memories;

/* fork() waits for memory_lock (taken in prepare): the child must not
 * inherit a verdict half written by another thread (a key and the
 * verdict of another).  The forking thread holds it in both processes
 * and lets go. */
static void
memory_atfork_prepare(void)
{
	pthread_mutex_lock(&memory_lock);
}

static void
memory_atfork_parent(void)
{
	pthread_mutex_unlock(&memory_lock);
}

static void
memory_atfork_child(void)
{
	struct memory *m;

	/* A thread that was opening a cache is not in the child. */
	for (m = memories; m != NULL; m = m->next) {
		m->opening = 0;
		m->retry_at = 0;
	}
	pthread_mutex_unlock(&memory_lock);
}

static int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
memory_init(void)
{
	(void)pthread_atfork(memory_atfork_prepare, memory_atfork_parent,
	    memory_atfork_child);
}

/* Queues a note (under the lock); the last slot is overwritten when full. */
static void
note_locked(struct memory *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
note_locked(struct memory *m, const char *fmt, ...)
{
	unsigned int i = m->nnotes < MEMORY_NOTES ? m->nnotes++ :
	    MEMORY_NOTES - 1;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->notes[i], sizeof(m->notes[i]), fmt, ap);
	va_end(ap);
}

/*
 * Whose cache a per-user default names: filetrust_env_dir().  sudo keeps
 * the caller's HOME; a root process that took the caller's cache would let
 * the caller choose where root writes (and feed root verdicts).  0 with
 * why set if the folder is not ours to use.
 */
static int
env_dir_ours(const char *var, const char *dir, char *why, size_t whylen)
{
	char reason[MEMORY_NOTE_MAX - 128];

	if (filetrust_env_dir(var, dir, reason, sizeof(reason)))
		return 1;
	snprintf(why, whylen, "%s; name a verdict cache with `cache = PATH`",
	    reason);
	return 0;
}

/* The cache file cfg names: "off", the file, or the per-user default
 * ("" when there is none; why set, with out naming the file, when the
 * default is someone else's). */
static void
cache_where(const struct detector_config *cfg, char *out, size_t size,
    char *why, size_t whylen)
{
	const char *xdg = secure_getenv("XDG_CACHE_HOME");
	const char *home = secure_getenv("HOME");

	why[0] = '\0';
	if (cfg->cache_path[0] != '\0')
		snprintf(out, size, "%s", cfg->cache_path);
	else if (!config_xdg_path("XDG_CACHE_HOME", ".cache",
	    "detector/verdicts.mdb", out, size))
		out[0] = '\0';
	else if (xdg != NULL && xdg[0] == '/')
		(void)env_dir_ours("XDG_CACHE_HOME", xdg, why, whylen);
	else if (home != NULL)
		(void)env_dir_ours("HOME", home, why, whylen);
}

static struct memory *
memory_new_locked(const char *where, const char *refused)
{
	struct memory *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	snprintf(m->where, sizeof(m->where), "%s", where);
	if (strcmp(where, "off") == 0) {
		snprintf(m->cache_err, sizeof(m->cache_err), "the verdict "
		    "cache is turned off (cache = off)");
	} else if (refused[0] != '\0') {
		snprintf(m->cache_err, sizeof(m->cache_err), "%s", refused);
		note_locked(m, "%s; verdicts are kept in memory", m->cache_err);
	} else if (where[0] == '\0') {
		snprintf(m->cache_err, sizeof(m->cache_err), "no verdict "
		    "cache: neither XDG_CACHE_HOME nor HOME is set");
		note_locked(m, "%s; verdicts are kept in memory", m->cache_err);
	} else {
		m->can_open = 1;        /* by usable_cache(), outside the lock */
	}
	m->next = memories;
	memories = m;
	return m;
}

struct memory *
memory_for(const struct detector_config *cfg)
{
	char where[PATH_MAX], refused[MEMORY_NOTE_MAX - 64];
	struct memory *m;

	(void)pthread_once(&memory_once, memory_init);
	cache_where(cfg, where, sizeof(where), refused, sizeof(refused));
	pthread_mutex_lock(&memory_lock);
	for (m = memories; m != NULL; m = m->next) {
		if (strcmp(m->where, where) == 0)
			break;
	}
	if (m == NULL)
		m = memory_new_locked(where, refused);
	pthread_mutex_unlock(&memory_lock);
	return m;
}

/* The cache handle, if there is one this process may use: opened now if
 * it is time to (see "When the cache file is opened"). */
static struct cache *
usable_cache(struct memory *m)
{
	char note[MEMORY_NOTE_MAX], err[MEMORY_NOTE_MAX];
	struct cache *c, *stale = NULL;
	int64_t now, delay;

	pthread_mutex_lock(&memory_lock);
	/* Not getpid(): a pid can be reused (cache_usable()). */
	if ((c = m->cache) != NULL && cache_usable(c)) {
		pthread_mutex_unlock(&memory_lock);
		return c;
	}
	if (c != NULL) {
		/* Opened before fork(): this process opens its own. */
		stale = c;
		m->cache = NULL;
		m->write_failed = 0;
	}
	now = monotonic_ms();
	if (!m->can_open || m->opening || now < m->retry_at) {
		pthread_mutex_unlock(&memory_lock);
		cache_close(stale);
		return NULL;
	}
	m->opening = 1;
	pthread_mutex_unlock(&memory_lock);
	cache_close(stale);
	c = cache_open(m->where, note, sizeof(note), err, sizeof(err));
	pthread_mutex_lock(&memory_lock);
	m->opening = 0;
	if (c != NULL) {
		m->cache = c;
		m->cache_err[0] = '\0';
		if (m->failures > 0)
			note_locked(m, "the verdict cache %s is used again",
			    m->where);
		m->failures = 0;
		if (note[0] != '\0')
			note_locked(m, "%s", note);
	} else {
		snprintf(m->cache_err, sizeof(m->cache_err), "%s", err);
		delay = (int64_t)1000 << (m->failures < 6 ? m->failures : 6);
		m->retry_at = monotonic_ms() + (delay < MEMORY_RETRY_MAX_MS ?
		    delay : MEMORY_RETRY_MAX_MS);
		if (m->failures++ == 0)
			note_locked(m, "%s; verdicts are kept in memory (the "
			    "cache is tried again later)", err);
	}
	pthread_mutex_unlock(&memory_lock);
	return c;
}

static int
by_text(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int
memory_policy(const struct detector_config *cfg, const char *host,
    struct cache_policy *pol)
{
	unsigned char digest[DETECTOR_SHA256_LEN];
	struct detector_policy site;
	const char *texts[DETECTOR_MAX_SPHERES];
	char list[DETECTOR_MAX_SPHERES * 66];
	size_t len = 0;
	unsigned int i;

	memset(pol, 0, sizeof(*pol));
	/* The quorum the check decides under: host's [site] one if any
	 * (result_new() in detector.c asks the same question). */
	config_policy_for(cfg, host, &site);
	if (cfg->nspheres == 0 || cfg->nspheres > DETECTOR_MAX_SPHERES ||
	    site.quorum < 1 || site.quorum > cfg->nspheres)
		return -1;
	for (i = 0; i < cfg->nspheres; i++)
		texts[i] = cfg->spheres[i].text;
	/* The same set in another order is the same policy. */
	qsort(texts, cfg->nspheres, sizeof(texts[0]), by_text);
	for (i = 0; i < cfg->nspheres; i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s\n",
		    texts[i]);
	if (len >= sizeof(list) || PK11_HashBuf(SEC_OID_SHA256, digest,
	    (const unsigned char *)list, (PRInt32)len) != SECSuccess)
		return -1;
	pol->quorum = site.quorum;
	pol->nspheres = cfg->nspheres;
	memcpy(pol->spheres, digest, CACHE_SPHERES_DIGEST_LEN);
	return 0;
}

int
memory_recall(struct memory *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    unsigned int validity_s, enum detector_verdict *v, int64_t *verified_at)
{
	struct cache *c = usable_cache(m);
	struct cache_record r;
	enum detector_verdict mv;
	int64_t mwhen, newest;
	int in_file, in_memo, newer_unwritten;

	in_file = c != NULL && cache_recall(c, host, port, spki, pol,
	    validity_s, (uint32_t)time(NULL), &r);
	/* Both: a verdict that could not be written (a read-only cache, a
	 * write that failed) is kept in memory only, and may be newer than
	 * the file's.  The newer answers, a REJECT on a tie: a fresh REJECT
	 * must not be hidden by an older ACCEPT in the file. */
	pthread_mutex_lock(&memory_lock);
	in_memo = memo_lookup(&m->memo, host, port, spki, pol, validity_s,
	    PR_Now(), &mv, &mwhen);
	/* Once that memory has expired, the file's older record must not
	 * answer again (its ACCEPT outlives a REJECT kept 10 minutes): probe
	 * again instead.  (Security review of the cache, Medium 1.) */
	newer_unwritten = in_file && !in_memo && memo_newest(&m->memo, host,
	    port, &newest) && newest >= (int64_t)r.last_verified;
	pthread_mutex_unlock(&memory_lock);
	if (in_memo && (!in_file || mwhen > (int64_t)r.last_verified ||
	    (mwhen == (int64_t)r.last_verified && mv == DETECTOR_REJECT))) {
		*v = mv;
		*verified_at = mwhen;
		return 1;
	}
	if (in_file && !newer_unwritten) {
		*v = r.verdict;
		*verified_at = r.last_verified;
		return 1;
	}
	return 0;
}

void
memory_record(struct memory *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, unsigned int validity_s)
{
	memory_record_seen(m, host, port, spki, pol, v, validity_s, NULL, 0);
}

void
memory_record_seen(struct memory *m, const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_verdict v, unsigned int validity_s,
    const unsigned char (*seen)[DETECTOR_SHA256_LEN], size_t nseen)
{
	PRTime ttl = (PRTime)(v == DETECTOR_ACCEPT ? validity_s :
	    CACHE_TTL_REJECT) * PR_USEC_PER_SEC;
	struct cache *c;
	char err[256] = "";
	uint32_t now = (uint32_t)time(NULL);

	/* Not a verdict about the key: remembering it would either accept
	 * the key unchecked or hide the spheres' coming back. */
	if (v != DETECTOR_ACCEPT && v != DETECTOR_REJECT &&
	    (v != DETECTOR_UNDECIDED || nseen == 0))
		return;
	c = usable_cache(m);
	if (c != NULL && !cache_readonly(c) && cache_remember_seen(c, host,
	    port, spki, pol, v, now, validity_s, seen, nseen, err,
	    sizeof(err)) == 0)
		return;
	pthread_mutex_lock(&memory_lock);
	memo_sight(&m->memo, host, port, seen, nseen, pol, now);
	memo_store(&m->memo, host, port, spki, pol, v, PR_Now(), ttl);
	if (v == DETECTOR_ACCEPT)
		memo_confirm(&m->memo, host, port, spki, pol, now);
	if (c != NULL && !cache_readonly(c) && !m->write_failed) {
		m->write_failed = 1;
		note_locked(m, "cannot write the verdict cache (%s); verdicts "
		    "are kept in memory", err);
	}
	pthread_mutex_unlock(&memory_lock);
}

int
memory_history(struct memory *m, const char *host, unsigned int port,
    struct cache_history *h)
{
	struct cache *c = usable_cache(m);
	struct cache_history mine;
	char err[256];

	if (c == NULL || cache_history_get(c, host, port, h, err,
	    sizeof(err)) != 1)
		memset(h, 0, sizeof(*h));
	pthread_mutex_lock(&memory_lock);
	if (memo_history(&m->memo, host, port, &mine))
		cache_history_merge(h, &mine);
	pthread_mutex_unlock(&memory_lock);
	return h->n > 0;
}

int
memory_note(struct memory *m, char *buf, size_t size)
{
	int found = 0;

	pthread_mutex_lock(&memory_lock);
	if (m->nnotes > 0) {
		snprintf(buf, size, "%s", m->notes[0]);
		memmove(m->notes[0], m->notes[1],
		    (MEMORY_NOTES - 1) * sizeof(m->notes[0]));
		m->nnotes--;
		found = 1;
	}
	pthread_mutex_unlock(&memory_lock);
	return found;
}

struct cache *
memory_cache(struct memory *m, char *err, size_t errlen)
{
	struct cache *c = usable_cache(m);

	if (c == NULL) {
		pthread_mutex_lock(&memory_lock);
		snprintf(err, errlen, "%s", m->cache_err[0] != '\0' ?
		    m->cache_err : m->opening ? "the verdict cache is being "
		    "opened by another thread: try again" : "no verdict cache");
		pthread_mutex_unlock(&memory_lock);
	}
	return c;
}

/*
 * Makes the verdicts this process wrote durable: cache_sync() on every
 * cache file it has open (see "Crash consistency" in cache.c).  Called
 * once a verdict has been handed over, so that the wait for the disk is
 * not on the way to the verdict.  Never opens a file; a failure is only
 * a lost durability (the next commit syncs again) and is not reported.
 */
void
memory_sync(void)
{
	struct cache *caches[16];
	char err[256];
	struct memory *m;
	unsigned int i, n = 0;

	pthread_mutex_lock(&memory_lock);
	for (m = memories; m != NULL && n < 16; m = m->next) {
		if (m->cache != NULL && cache_usable(m->cache) &&
		    !cache_readonly(m->cache))
			caches[n++] = m->cache;
	}
	pthread_mutex_unlock(&memory_lock);
	for (i = 0; i < n; i++)
		(void)cache_sync(caches[i], err, sizeof(err));
}

int
memory_sightings(struct memory *m, const char *host, unsigned int port,
    struct cache_sightings *s)
{
	struct cache *c = usable_cache(m);
	struct cache_sightings mine;
	char err[256];

	if (c == NULL || cache_sightings_get(c, host, port, s, err,
	    sizeof(err)) != 1)
		memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&memory_lock);
	if (memo_sightings(&m->memo, host, port, &mine))
		cache_sightings_merge(s, &mine);
	pthread_mutex_unlock(&memory_lock);
	return s->n > 0;
}
