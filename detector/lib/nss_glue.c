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
 * Verdicts are remembered by the engine (memory.c): the host name is
 * checked, `exclude` matched and the certificate read once per handshake,
 * and a remembered verdict answers before any thread is started.
 *
 * The state below is process-wide because it belongs to the process's NSS:
 * the configuration read once, the error table and the worker pool.
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

#include "certinfo.h"
#include "check.h"
#include "config.h"
#include "detector_nss.h"
#include "log.h"


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
	PRLock *lock;                   /* guards the worker pool */
	PRInt32 cfg_error_said;         /* the configuration error, once */
} glue;

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
	} else if (config_check(cfg, glue.cfg_error,
	    sizeof(glue.cfg_error)) == 0) {
		glue.cfg = cfg;
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

/* A context for one handshake to port; NULL with err set. */
static struct detector *
glue_context(unsigned int port, char *err, size_t errlen)
{
	const struct detector_config *cfg = glue.cfg;
	struct detector *ctx = detector_new();

	/* The application spoke the port's plaintext preamble itself before
	 * handing the socket to NSS (Pidgin's XMPP on 5222, a mail client on
	 * 587): the probes must speak it too. */
	if (ctx == NULL || detector_configure(ctx, cfg) == -1 ||
	    detector_set_starttls(ctx, config_starttls_for_port(cfg, port)) ==
	    -1) {
		snprintf(err, errlen, "%s", ctx ? detector_error(ctx) :
		    "out of memory");
		detector_free(ctx);
		return NULL;
	}
	return ctx;
}

/* What the verdict memory has to say, said once. */
static void
glue_note(const struct detector_result *res)
{
	if (res != NULL && res->note != NULL)
		detector_log(glue.cfg, LOG_ERRORS, "%s", res->note);
}

/* Decides on a verdict and says so: the refusal code, 0 accepts. */
static int
decided(const char *host, unsigned int port, enum detector_verdict v,
    const char *reason)
{
	int error = decide(v);

	if (error != 0)
		detector_log(glue.cfg, LOG_ERRORS, "%s:%u REFUSED (%s): %s",
		    host, port, detector_verdict_name(v), reason);
	else
		detector_log(glue.cfg, LOG_DECISIONS, "%s:%u accepted (%s%s): "
		    "%s", host, port, detector_verdict_name(v),
		    v == DETECTOR_UNDECIDED ? ", on_undecided = accept" : "",
		    reason);
	return error;
}

/* Probes the spheres (blocking, bounded by the deadline) and decides. */
static int
probe_and_decide(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci)
{
	const struct detector_config *cfg = glue.cfg;
	struct detector_result *res = NULL;
	enum detector_verdict v = DETECTOR_UNDECIDED;
	char err[1024];
	int error;

	if (ctx == NULL)
		ctx = glue_context(port, err, sizeof(err));
	else
		err[0] = '\0';
	if (ctx == NULL || check_probe(ctx, host, port, ci, &res) == -1) {
		detector_log(cfg, LOG_ERRORS, "%s:%u: the check could not be "
		    "made: %s", host, port, ctx ? detector_error(ctx) : err);
	} else {
		v = res->verdict;
		glue_note(res);
	}
	error = decided(host, port, v, res ? res->reason : "no verdict");
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
	struct certinfo ci;
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
		deliver(c, abandoned(c) ? 0 : probe_and_decide(NULL, c->host,
		    c->port, &c->ci));
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
    const struct certinfo *ci)
{
	for (; c != NULL; c = c->next) {
		if (c->port == port && strcmp(c->host, host) == 0 &&
		    memcmp(c->ci.spki_sha256, ci->spki_sha256,
		    DETECTOR_SHA256_LEN) == 0)
			return c;
	}
	return NULL;
}

/* Makes a waiter for host:port and key: joins a check already queued or
 * running, or starts one.  Returns 1 if it joined one. */
static int
start_job(const char *host, unsigned int port, const struct certinfo *ci,
    detector_nss_done_fn done, void *arg, void **pending)
{
	struct waiter *w = calloc(1, sizeof(*w));
	struct check *c, *fresh = calloc(1, sizeof(*fresh));
	int joined = 0;

	if (w == NULL || fresh == NULL || (fresh->host = strdup(host)) == NULL)
		goto fail;
	fresh->ci = *ci;
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
	if ((c = find_check(glue_jobs.running, host, port, ci)) != NULL ||
	    (c = find_check(glue_jobs.queued, host, port, ci)) != NULL) {
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
	struct detector_result *res = NULL;
	struct detector *ctx;
	struct certinfo ci;
	char err[1024];
	const char *rule;
	int found;

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
	if (certinfo_read(der, der_len, &ci, err, sizeof(err)) == -1) {
		*error = decide(DETECTOR_UNDECIDED);
		detector_log(cfg, LOG_ERRORS, "%s:%u %s: certificate not "
		    "understood: %s", host, port, *error ? "REFUSED" :
		    "accepted (on_undecided = accept)", err);
		return DETECTOR_NSS_DECIDED;
	}
	if ((ctx = glue_context(port, err, sizeof(err))) == NULL ||
	    check_target(ctx, host, port) == -1 ||
	    (found = check_recall(ctx, host, port, &ci, &res)) == -1) {
		detector_log(cfg, LOG_ERRORS, "%s:%u: the check could not be "
		    "made: %s", host, port, ctx ? detector_error(ctx) : err);
		detector_free(ctx);
		*error = decided(host, port, DETECTOR_UNDECIDED, "no verdict");
		return DETECTOR_NSS_DECIDED;
	}
	if (found) {
		glue_note(res);
		*error = decide(res->verdict);
		detector_log(cfg, *error ? LOG_ERRORS : LOG_DECISIONS,
		    "%s:%u %s: remembered verdict '%s' for this key, no probe",
		    host, port, *error ? "REFUSED" : "accepted",
		    detector_verdict_name(res->verdict));
		detector_result_free(res);
		detector_free(ctx);
		return DETECTOR_NSS_DECIDED;
	}
	if (may_block) {
		*error = probe_and_decide(ctx, host, port, &ci);
		return DETECTOR_NSS_DECIDED;
	}
	detector_free(ctx);
	switch (start_job(host, port, &ci, done, arg, pending)) {
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
