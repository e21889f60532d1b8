/*
 * workers.c - the NSS integration's worker pool: checks for non-blocking
 * sockets run on worker threads.
 *
 * A check is one host:port and key; every socket waiting for it is a
 * waiter, so that ten handshakes to the same server at once make one set
 * of probes.  At most WORKERS_MAX checks run at a time; more wait in a
 * FIFO and start as workers free up (each check is bounded by the
 * configured deadline, so the queue always drains).
 *
 * A waiter is PENDING until its check has decided, then RUNNING while its
 * done() is called (without any DetecTor lock held: done() takes the
 * socket's NSS locks and may call the application back), then DONE.
 * workers_cancel() turns a PENDING waiter into CANCELLED, or waits until a
 * RUNNING one is DONE, so that after it returns done() is not running and
 * never will: the socket may be freed.
 *
 * The pool is process-wide state, as the threads it runs are.
 */
#include <prcvar.h>
#include <prinit.h>
#include <prlock.h>
#include <prthread.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "glue.h"
#include "memory.h"

#define WORKERS_MAX 32

struct check;

/* The pool's lists, guarded by pool.lock. */
static struct {
	PRCallOnceType once;
	PRLock *lock;
	PRCondVar *changed;             /* a waiter left RUNNING */
	struct check *running, *queued, **queued_tail;
	unsigned int nworkers;
} pool;

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
	struct detector *ctx;           /* the starter's, for the probes */
	struct waiter *waiters;
	struct check *next;             /* in pool.queued / .running */
};

/*
 * After fork() the child has one thread: the parent's workers, and any lock
 * one of them held, did not come along.  The child starts an empty pool
 * with fresh locks; what the parent's pool held is left alone (a few
 * bytes), and the parent's waiters are never waited for (workers_cancel).
 */
static void
pool_atfork_child(void)
{
	PRLock *lock = PR_NewLock();

	if (lock == NULL)
		return;         /* keep the old one: better than none */
	pool.lock = lock;
	pool.changed = NULL;            /* re-made on first use */
	pool.running = pool.queued = NULL;
	pool.queued_tail = &pool.queued;
	pool.nworkers = 0;
}

static PRStatus
pool_init(void)
{
	(void)pthread_atfork(NULL, NULL, pool_atfork_child);
	pool.lock = PR_NewLock();
	pool.queued_tail = &pool.queued;
	return pool.lock != NULL ? PR_SUCCESS : PR_FAILURE;
}

static void
waiter_unref_locked(struct waiter *w)
{
	if (--w->refs == 0)
		free(w);
}

static void
check_free(struct check *c)
{
	detector_free(c->ctx);
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

	PR_Lock(pool.lock);
	list_remove(&pool.running, c);
	for (w = c->waiters; w != NULL; w = next) {
		next = w->next;
		if (w->state == W_PENDING) {
			w->state = W_RUNNING;
			w->runner = PR_GetCurrentThread();
			PR_Unlock(pool.lock);
			w->done(w->arg, error);
			PR_Lock(pool.lock);
			w->state = W_DONE;
			PR_NotifyAllCondVar(pool.changed);
		}
		waiter_unref_locked(w);
	}
	PR_Unlock(pool.lock);
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

	PR_Lock(pool.lock);
	for (w = c->waiters; w != NULL; w = w->next)
		all &= w->state == W_CANCELLED;
	if (all)
		list_remove(&pool.running, c);
	PR_Unlock(pool.lock);
	return all;
}

static void
worker(void *arg)
{
	struct check *c = arg;

	while (c != NULL) {
		struct detector *ctx = c->ctx;

		c->ctx = NULL;          /* glue_probe_and_decide() frees it */
		if (abandoned(c)) {
			detector_free(ctx);
			deliver(c, 0);
		} else {
			deliver(c, glue_probe_and_decide(ctx, c->host, c->port,
			    &c->ci));
			/* The verdict's commit waited for its data pages only;
			 * the rest waits here, after the handover. */
			memory_sync();
		}
		PR_Lock(pool.lock);
		if ((c = pool.queued) != NULL) {
			pool.queued = c->next;
			if (pool.queued == NULL)
				pool.queued_tail = &pool.queued;
			c->next = pool.running;
			pool.running = c;
		} else
			pool.nworkers--;
		PR_Unlock(pool.lock);
	}
}

void
workers_cancel(void *pending)
{
	struct waiter *w = pending;

	if (w->pid != getpid())
		return;         /* the parent's, inherited by fork(): no thread
				 * here will ever deliver it; leave it be */
	PR_Lock(pool.lock);
	if (w->state == W_PENDING)
		w->state = W_CANCELLED;
	while (w->state == W_RUNNING && w->runner != PR_GetCurrentThread())
		PR_WaitCondVar(pool.changed, PR_INTERVAL_NO_TIMEOUT);
	waiter_unref_locked(w);
	PR_Unlock(pool.lock);
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
 * running, or starts one with ctx (always taken: freed when joining or
 * failing).  Returns 1 if it joined one. */
int
workers_start(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, detector_nss_done_fn done, void *arg,
    void **pending)
{
	struct waiter *w = calloc(1, sizeof(*w));
	struct check *c, *fresh = calloc(1, sizeof(*fresh));
	int joined = 0;

	if (fresh == NULL) {
		detector_free(ctx);
		free(w);
		return -1;
	}
	fresh->ctx = ctx;               /* freed with fresh unless it runs */
	if (w == NULL || (fresh->host = strdup(host)) == NULL)
		goto fail;
	fresh->ci = *ci;
	fresh->port = port;
	w->done = done;
	w->arg = arg;
	w->refs = 2;
	w->pid = getpid();

	if (PR_CallOnce(&pool.once, pool_init) != PR_SUCCESS)
		goto fail;
	PR_Lock(pool.lock);
	if (pool.changed == NULL)
		pool.changed = PR_NewCondVar(pool.lock);
	if (pool.changed == NULL) {
		PR_Unlock(pool.lock);
		goto fail;
	}
	if ((c = find_check(pool.running, host, port, ci)) != NULL ||
	    (c = find_check(pool.queued, host, port, ci)) != NULL) {
		joined = 1;
	} else if (pool.nworkers < WORKERS_MAX) {
		c = fresh;
		if (PR_CreateThread(PR_SYSTEM_THREAD, worker, c,
		    PR_PRIORITY_NORMAL, PR_GLOBAL_THREAD, PR_UNJOINABLE_THREAD,
		    0) == NULL) {
			PR_Unlock(pool.lock);
			goto fail;
		}
		pool.nworkers++;
		c->next = pool.running;
		pool.running = c;
		fresh = NULL;
	} else {
		c = fresh;
		*pool.queued_tail = c;
		pool.queued_tail = &c->next;
		fresh = NULL;
	}
	/* The new thread cannot deliver before we let go of the lock. */
	w->check = c;
	w->next = c->waiters;
	c->waiters = w;
	PR_Unlock(pool.lock);
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
