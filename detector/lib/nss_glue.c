/*
 * nss_glue.c - DetecTor inside NSS's libssl: the decision for one handshake.
 *
 * The patched libssl3.so calls check() once the application's own
 * certificate check has accepted a server certificate.  DetecTor can only
 * add a refusal here; it never sees, let alone overturns, a certificate the
 * application rejected.
 *
 *   disabled / excluded host      -> accept (stock NSS behaviour)
 *   same key remembered           -> the remembered verdict, no probe
 *   blocking socket               -> probe now, bounded by the deadline
 *   non-blocking socket           -> probe on a worker thread; the socket's
 *                                    handshake is suspended (SECWouldBlock)
 *                                    and resumed by done()
 *
 * An UNDECIDED verdict follows `on_undecided`; a REJECT is never turned
 * into an accept by a timeout.  An invalid configuration refuses every
 * handshake (fail closed) and says why once.
 *
 * Verdicts are remembered in the verdict cache shared by every process of
 * the user (cache.c); if it cannot be opened or written, in this process's
 * memory (memo.c), and the problem is reported once.
 *
 * The state below is process-wide because it belongs to the process's NSS:
 * the configuration read once, the error table, the cache handle (LMDB
 * allows one per process) and the in-memory fallback.
 */
#include <nss.h>
#include <prerror.h>
#include <prinit.h>
#include <prcvar.h>
#include <prlock.h>
#include <pratom.h>
#include <prthread.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "certinfo.h"
#include "config.h"
#include "detector_nss.h"
#include "log.h"
#include "memo.h"


static const struct PRErrorMessage glue_messages[] = {
	{ "DETECTOR_ERROR_MITM", "DetecTor: the server's certificate differs "
	    "from what the Tor spheres see (possible man-in-the-middle); "
	    "connection refused" },
	{ "DETECTOR_ERROR_UNDECIDED", "DetecTor: too few Tor spheres could "
	    "confirm the server's certificate, and the policy "
	    "(on_undecided = reject) refuses unconfirmed servers" },
	{ "DETECTOR_ERROR_CONFIG", "DetecTor: its configuration is invalid, "
	    "so connections are refused (run 'sphere-probe -v' to see the "
	    "error)" },
};

static const struct PRErrorTable glue_error_table = {
	glue_messages, "detector", DETECTOR_ERROR_BASE,
	sizeof(glue_messages) / sizeof(glue_messages[0]),
};

static struct {
	PRCallOnceType once;
	struct detector_config *cfg;    /* NULL: the configuration is bad */
	char cfg_error[1024];
	PRLock *lock;                   /* guards memo and the flags below */
	struct memo memo;
	struct cache *cache;            /* NULL: none, or it failed */
	pid_t cache_pid;                /* LMDB handles do not survive fork() */
	int cache_write_failed;         /* reported once */
	PRInt32 cfg_error_said;         /* the configuration error, once */
} glue;

/* Opens the verdict cache named by the configuration, if any. */
static void
glue_open_cache(const struct detector_config *cfg)
{
	char path[PATH_MAX], note[1024], err[1024];

	if (strcmp(cfg->cache_path, "off") == 0)
		return;
	if (cfg->cache_path[0] != '\0')
		snprintf(path, sizeof(path), "%s", cfg->cache_path);
	else if (!cache_default_path(path, sizeof(path))) {
		detector_log(cfg, LOG_ERRORS, "no verdict cache: neither "
		    "XDG_CACHE_HOME nor HOME is set; verdicts are kept in "
		    "memory");
		return;
	}
	glue.cache = cache_open(path, note, sizeof(note), err, sizeof(err));
	glue.cache_pid = getpid();
	if (glue.cache == NULL)
		detector_log(cfg, LOG_ERRORS, "%s; verdicts are kept in "
		    "memory", err);
	else if (note[0] != '\0')
		detector_log(cfg, LOG_ERRORS, "%s", note);
}

/* The worker pool's lists (see "Checks for non-blocking sockets" below),
 * guarded by glue.lock. */
struct check;
static struct {
	PRCondVar *changed;             /* a waiter left RUNNING */
	struct check *running, *queued, **queued_tail;
	unsigned int nworkers;
} glue_jobs;

/*
 * After fork() the child has one thread: the parent's workers, and any lock
 * one of them held, did not come along.  The child starts an empty pool
 * with fresh locks; what the parent's pool held is left alone (a few
 * bytes), and the parent's waiters are never waited for (glue_cancel).
 */
static void
glue_atfork_child(void)
{
	PRLock *lock = PR_NewLock();

	if (lock == NULL)
		return;         /* keep the old one: better than none */
	glue.lock = lock;
	glue_jobs.changed = NULL;       /* re-made on first use */
	glue_jobs.running = glue_jobs.queued = NULL;
	glue_jobs.queued_tail = &glue_jobs.queued;
	glue_jobs.nworkers = 0;
}

/* The process's DetecTor settings, read once. */
static PRStatus
glue_init(void)
{
	struct detector_config *cfg = detector_config_new();

	(void)PR_ErrorInstallTable(&glue_error_table);
	(void)pthread_atfork(NULL, NULL, glue_atfork_child);
	glue.lock = PR_NewLock();
	if (cfg == NULL || glue.lock == NULL) {
		snprintf(glue.cfg_error, sizeof(glue.cfg_error),
		    "out of memory");
	} else if (detector_config_load_default(cfg) == -1) {
		snprintf(glue.cfg_error, sizeof(glue.cfg_error), "%s",
		    detector_config_error(cfg));
	} else if (cfg->quorum > cfg->nspheres) {
		snprintf(glue.cfg_error, sizeof(glue.cfg_error), "quorum %u "
		    "is more than the %u spheres configured", cfg->quorum,
		    cfg->nspheres);
	} else {
		glue.cfg = cfg;
		glue_open_cache(cfg);
		return PR_SUCCESS;
	}
	detector_config_free(cfg);
	return PR_SUCCESS;
}

/* The refusal code for a verdict: 0 accepts. */
static int
decide(enum detector_verdict v)
{
	switch (v) {
	case DETECTOR_REJECT:
		return DETECTOR_ERROR_MITM;
	case DETECTOR_UNDECIDED:
		return glue.cfg->on_undecided == DETECTOR_UNDECIDED_REJECT ?
		    DETECTOR_ERROR_UNDECIDED : 0;
	default:
		return 0;
	}
}

static int
remembered(const char *host, unsigned int port, const unsigned char *spki,
    enum detector_verdict *v)
{
	struct cache_record r;
	int found;

	if (glue.cache != NULL && glue.cache_pid == getpid() &&
	    cache_recall(glue.cache, host, port, spki, (uint32_t)time(NULL), &r)) {
		*v = r.verdict;
		return 1;
	}
	PR_Lock(glue.lock);
	found = memo_lookup(&glue.memo, host, port, spki, PR_Now(), v);
	PR_Unlock(glue.lock);
	return found;
}

static void
remember(const char *host, unsigned int port, const unsigned char *spki,
    enum detector_verdict v)
{
	PRTime ttl = v == DETECTOR_ACCEPT ? (PRTime)glue.cfg->cache_validity_s *
	    PR_USEC_PER_SEC : v == DETECTOR_REJECT ? (PRTime)CACHE_TTL_REJECT *
	    PR_USEC_PER_SEC : (PRTime)CACHE_TTL_UNDECIDED * PR_USEC_PER_SEC;
	char err[256] = "the cache handle was opened before fork()";
	int report = 0;

	if (glue.cache != NULL && glue.cache_pid == getpid() &&
	    !cache_readonly(glue.cache) && cache_remember(glue.cache, host, port, spki, v,
	    (uint32_t)time(NULL), glue.cfg->cache_validity_s, err,
	    sizeof(err)) == 0)
		return;
	PR_Lock(glue.lock);
	memo_store(&glue.memo, host, port, spki, v, PR_Now(), ttl);
	if (glue.cache != NULL && !cache_readonly(glue.cache) &&
	    !glue.cache_write_failed)
		report = glue.cache_write_failed = 1;
	PR_Unlock(glue.lock);
	if (report)
		detector_log(glue.cfg, LOG_ERRORS, "cannot write the verdict "
		    "cache (%s); verdicts are kept in memory", err);
}

/* Probes the spheres (blocking, bounded by the deadline) and decides. */
static int
probe_and_decide(const char *host, unsigned int port,
    const unsigned char *der, unsigned int len, const unsigned char *spki)
{
	const struct detector_config *cfg = glue.cfg;
	struct detector *ctx = detector_new();
	struct detector_result *res = NULL;
	enum detector_verdict v = DETECTOR_UNDECIDED;
	int error;

	/* The application spoke the port's plaintext preamble itself before
	 * handing the socket to NSS (Pidgin's XMPP on 5222, a mail client on
	 * 587): the probes must speak it too. */
	if (ctx == NULL || detector_configure(ctx, cfg) == -1 ||
	    detector_set_starttls(ctx, config_starttls_for_port(cfg, port)) ==
	    -1 || detector_check(ctx, host, port, der, len, &res) == -1) {
		detector_log(cfg, LOG_ERRORS, "%s:%u: the check could not be "
		    "made: %s", host, port, ctx ? detector_error(ctx) :
		    "out of memory");
	} else {
		v = res->verdict;
		remember(host, port, spki, v);
	}
	error = decide(v);
	if (error != 0)
		detector_log(cfg, LOG_ERRORS, "%s:%u REFUSED (%s): %s", host,
		    port, detector_verdict_name(v), res ? res->reason :
		    "no verdict");
	else
		detector_log(cfg, LOG_DECISIONS, "%s:%u accepted (%s%s): %s",
		    host, port, detector_verdict_name(v),
		    v == DETECTOR_UNDECIDED ? ", on_undecided = accept" : "",
		    res ? res->reason : "no verdict");
	detector_result_free(res);
	detector_free(ctx);
	return error;
}

/*
 * Checks for non-blocking sockets run on worker threads.  A check is one
 * host:port and key; every socket waiting for it is a waiter, so that ten
 * handshakes to the same server at once make one set of probes.  At most
 * GLUE_MAX_WORKERS checks run at a time; more wait in a FIFO and start as
 * workers free up (each check is bounded by the configured deadline, so the
 * queue always drains).  The lists below are guarded by glue.lock.
 *
 * A waiter is PENDING until its check has decided, then RUNNING while its
 * done() is called (without any DetecTor lock held: done() takes the
 * socket's NSS locks and may call the application back), then DONE.
 * cancel() turns a PENDING waiter into CANCELLED, or waits until a RUNNING
 * one is DONE, so that after cancel() returns done() is not running and
 * never will: the socket may be freed.
 */
#define GLUE_MAX_WORKERS 32

enum waiter_state { W_PENDING, W_RUNNING, W_DONE, W_CANCELLED };

struct waiter {
	struct check *check;
	detector_nss_done_fn done;
	void *arg;
	enum waiter_state state;
	PRThread *runner;               /* the thread calling done() */
	pid_t pid;                      /* the process whose pool has it */
	struct waiter *next;
	int refs;                       /* the socket's and the check's */
};

struct check {
	char *host;
	unsigned int port;
	unsigned char *der;
	unsigned int len;
	unsigned char spki[DETECTOR_SHA256_LEN];
	struct waiter *waiters;
	struct check *next;             /* in glue_jobs.queued / .running */
};


static void
waiter_unref_locked(struct waiter *w)
{
	if (--w->refs == 0)
		free(w);
}

static void
check_free(struct check *c)
{
	free(c->host);
	free(c->der);
	free(c);
}

static void
list_remove(struct check **head, struct check *c)
{
	for (; *head != NULL; head = &(*head)->next) {
		if (*head == c) {
			*head = c->next;
			return;
		}
	}
}

/* Tells every waiter still interested; frees the check. */
static void
deliver(struct check *c, int error)
{
	struct waiter *w, *next;

	PR_Lock(glue.lock);
	list_remove(&glue_jobs.running, c);
	for (w = c->waiters; w != NULL; w = next) {
		next = w->next;
		if (w->state == W_PENDING) {
			w->state = W_RUNNING;
			w->runner = PR_GetCurrentThread();
			PR_Unlock(glue.lock);
			w->done(w->arg, error);
			PR_Lock(glue.lock);
			w->state = W_DONE;
			PR_NotifyAllCondVar(glue_jobs.changed);
		}
		waiter_unref_locked(w);
	}
	PR_Unlock(glue.lock);
	check_free(c);
}

/* Every socket that waited has given up (closed, reset): skip probing.
 * The check leaves the running list in the same critical section, so that
 * no new handshake can join it and be "accepted" without a probe. */
static int
abandoned(struct check *c)
{
	const struct waiter *w;
	int all = 1;

	PR_Lock(glue.lock);
	for (w = c->waiters; w != NULL; w = w->next)
		all &= w->state == W_CANCELLED;
	if (all)
		list_remove(&glue_jobs.running, c);
	PR_Unlock(glue.lock);
	return all;
}

static void
worker(void *arg)
{
	struct check *c = arg;

	while (c != NULL) {
		deliver(c, abandoned(c) ? 0 : probe_and_decide(c->host,
		    c->port, c->der, c->len, c->spki));
		PR_Lock(glue.lock);
		if ((c = glue_jobs.queued) != NULL) {
			glue_jobs.queued = c->next;
			if (glue_jobs.queued == NULL)
				glue_jobs.queued_tail = &glue_jobs.queued;
			c->next = glue_jobs.running;
			glue_jobs.running = c;
		} else
			glue_jobs.nworkers--;
		PR_Unlock(glue.lock);
	}
}

static void
glue_cancel(void *pending)
{
	struct waiter *w = pending;

	if (w->pid != getpid())
		return;         /* the parent's, inherited by fork(): no thread
				 * here will ever deliver it; leave it be */
	PR_Lock(glue.lock);
	if (w->state == W_PENDING)
		w->state = W_CANCELLED;
	while (w->state == W_RUNNING && w->runner != PR_GetCurrentThread())
		PR_WaitCondVar(glue_jobs.changed, PR_INTERVAL_NO_TIMEOUT);
	waiter_unref_locked(w);
	PR_Unlock(glue.lock);
}

static struct check *
find_check(struct check *c, const char *host, unsigned int port,
    const unsigned char *spki)
{
	for (; c != NULL; c = c->next) {
		if (c->port == port && strcmp(c->host, host) == 0 &&
		    memcmp(c->spki, spki, sizeof(c->spki)) == 0)
			return c;
	}
	return NULL;
}

/* Makes a waiter for host:port and key: joins a check already queued or
 * running, or starts one.  Returns 1 if it joined one. */
static int
start_job(const char *host, unsigned int port, const unsigned char *der,
    unsigned int len, const unsigned char *spki, detector_nss_done_fn done,
    void *arg, void **pending)
{
	struct waiter *w = calloc(1, sizeof(*w));
	struct check *c, *fresh = calloc(1, sizeof(*fresh));
	int joined = 0;

	if (w == NULL || fresh == NULL || (fresh->host = strdup(host)) == NULL ||
	    (fresh->der = malloc(len)) == NULL)
		goto fail;
	memcpy(fresh->der, der, len);
	memcpy(fresh->spki, spki, sizeof(fresh->spki));
	fresh->len = len;
	fresh->port = port;
	w->done = done;
	w->arg = arg;
	w->refs = 2;
	w->pid = getpid();

	PR_Lock(glue.lock);
	if (glue_jobs.changed == NULL) {
		glue_jobs.changed = PR_NewCondVar(glue.lock);
		glue_jobs.queued_tail = &glue_jobs.queued;
	}
	if (glue_jobs.changed == NULL) {
		PR_Unlock(glue.lock);
		goto fail;
	}
	if ((c = find_check(glue_jobs.running, host, port, spki)) != NULL ||
	    (c = find_check(glue_jobs.queued, host, port, spki)) != NULL) {
		joined = 1;
	} else if (glue_jobs.nworkers < GLUE_MAX_WORKERS) {
		c = fresh;
		if (PR_CreateThread(PR_SYSTEM_THREAD, worker, c,
		    PR_PRIORITY_NORMAL, PR_GLOBAL_THREAD, PR_UNJOINABLE_THREAD,
		    0) == NULL) {
			PR_Unlock(glue.lock);
			goto fail;
		}
		glue_jobs.nworkers++;
		c->next = glue_jobs.running;
		glue_jobs.running = c;
		fresh = NULL;
	} else {
		c = fresh;
		*glue_jobs.queued_tail = c;
		glue_jobs.queued_tail = &c->next;
		fresh = NULL;
	}
	/* The new thread cannot deliver before we let go of the lock. */
	w->check = c;
	w->next = c->waiters;
	c->waiters = w;
	PR_Unlock(glue.lock);
	if (fresh != NULL)
		check_free(fresh);
	*pending = w;
	return joined;
fail:
	if (fresh != NULL)
		check_free(fresh);
	free(w);
	return -1;
}

static int
glue_check(const char *host, unsigned int port, const unsigned char *der,
    unsigned int der_len, int may_block, detector_nss_done_fn done,
    void *arg, void **pending, int *error)
{
	const struct detector_config *cfg = glue.cfg;
	unsigned char spki[DETECTOR_SHA256_LEN], cert[DETECTOR_SHA256_LEN];
	char err[256];
	enum detector_verdict v;
	const char *rule;

	*pending = NULL;
	*error = 0;
	if (cfg == NULL) {
		struct detector_config quiet = { .log_level = LOG_ERRORS };

		/* Every handshake is refused; the reason is said once. */
		if (PR_ATOMIC_SET(&glue.cfg_error_said, 1) == 0)
			detector_log(&quiet, LOG_ERRORS, "%s:%u REFUSED, and "
			    "every other connection of this process: invalid "
			    "configuration: %s", host, port, glue.cfg_error);
		*error = DETECTOR_ERROR_CONFIG;
		return DETECTOR_NSS_DECIDED;
	}
	if ((rule = exclude_match(&cfg->exclude, host)) != NULL) {
		detector_log(cfg, LOG_DECISIONS, "%s:%u not probed: excluded "
		    "by '%s'", host, port, rule);
		return DETECTOR_NSS_DECIDED;
	}
	if (certinfo_hash(der, der_len, spki, cert, err, sizeof(err)) == -1) {
		*error = decide(DETECTOR_UNDECIDED);
		detector_log(cfg, LOG_ERRORS, "%s:%u %s: certificate not "
		    "understood: %s", host, port, *error ? "REFUSED" :
		    "accepted (on_undecided = accept)", err);
		return DETECTOR_NSS_DECIDED;
	}
	if (remembered(host, port, spki, &v)) {
		*error = decide(v);
		detector_log(cfg, *error ? LOG_ERRORS : LOG_DECISIONS,
		    "%s:%u %s: remembered verdict '%s' for this key, no probe",
		    host, port, *error ? "REFUSED" : "accepted",
		    detector_verdict_name(v));
		return DETECTOR_NSS_DECIDED;
	}
	if (may_block) {
		*error = probe_and_decide(host, port, der, der_len, spki);
		return DETECTOR_NSS_DECIDED;
	}
	switch (start_job(host, port, der, der_len, spki, done, arg, pending)) {
	case -1:
		*error = decide(DETECTOR_UNDECIDED);
		detector_log(cfg, LOG_ERRORS, "%s:%u %s: cannot start the "
		    "check (out of memory or threads)", host, port,
		    *error ? "REFUSED" : "accepted (on_undecided = accept)");
		return DETECTOR_NSS_DECIDED;
	case 1:
		detector_log(cfg, LOG_DECISIONS, "%s:%u joined the check "
		    "already running for this key; handshake suspended", host,
		    port);
		return DETECTOR_NSS_PENDING;
	default:
		detector_log(cfg, LOG_DECISIONS, "%s:%u probing the spheres; "
		    "handshake suspended", host, port);
		return DETECTOR_NSS_PENDING;
	}
}

static const struct detector_nss_ops glue_ops = {
	1, glue_check, glue_cancel,
};

const struct detector_nss_ops *
detector_nss_v1(void)
{
	if (PR_CallOnce(&glue.once, glue_init) != PR_SUCCESS)
		return NULL;
	if (glue.cfg != NULL && !glue.cfg->enabled)
		return NULL;
	return &glue_ops;
}
