/*
 * libstubdetector.so - a stand-in for libdetector behind the patched
 * libssl (NSS_DETECTOR_LIBRARY), for tests of libssl's side alone: every
 * check is pending, and a thread of its own accepts it after STUB_DELAY_MS
 * milliseconds (default 1).  No probe, no cache, no configuration.
 *
 * Also preloaded (LD_PRELOAD), it times the handover: the time from the
 * verdict (just before done() is called) to the end of the application's
 * next PR_Poll, printed as "stub: handover_us N" on stderr for each
 * verdict.  tests/integration/test_nss_hook_wake.py uses it (issue 16 item
 * 5: ssl_Poll's pause must end when the verdict comes, not after 10 ms).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <prio.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "detector_nss.h"

/* When the last verdict came (CLOCK_MONOTONIC ns), until a PR_Poll ends. */
static int64_t verdict_ns;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef PRInt32 (*poll_fn)(PRPollDesc *, PRIntn, PRIntervalTime);

PRInt32
PR_Poll(PRPollDesc *pds, PRIntn npds, PRIntervalTime timeout)
{
	static poll_fn real;
	poll_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
	PRInt32 n;
	int64_t when;

	if (fn == NULL) {
		fn = (poll_fn)dlsym(RTLD_NEXT, "PR_Poll");
		if (fn == NULL)
			abort();
		__atomic_store_n(&real, fn, __ATOMIC_RELEASE);
	}
	n = fn(pds, npds, timeout);
	when = __atomic_exchange_n(&verdict_ns, 0, __ATOMIC_ACQ_REL);
	if (when != 0)
		fprintf(stderr, "stub: handover_us %lld\n",
		    (long long)((now_ns() - when) / 1000));
	return n;
}

struct pending {
	pthread_t thread;
	detector_nss_done_fn done;
	void *arg;
	long delay_ms;
};

static void *
answer(void *p)
{
	struct pending *c = p;
	struct timespec ts = { c->delay_ms / 1000,
	    (c->delay_ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
	__atomic_store_n(&verdict_ns, now_ns(), __ATOMIC_RELEASE);
	c->done(c->arg, 0);
	return NULL;
}

static int
stub_check(const char *host, unsigned int port, const unsigned char *der,
    unsigned int der_len, int may_block, detector_nss_done_fn done,
    void *arg, void **pending, int *error)
{
	const char *d = getenv("STUB_DELAY_MS");
	struct pending *c = calloc(1, sizeof(*c));

	(void)host, (void)port, (void)der, (void)der_len, (void)may_block;
	*pending = NULL;
	*error = 0;
	if (c == NULL)
		return DETECTOR_NSS_DECIDED;    /* accepted, at once */
	c->done = done;
	c->arg = arg;
	c->delay_ms = d != NULL ? atol(d) : 1;
	if (pthread_create(&c->thread, NULL, answer, c) != 0) {
		free(c);
		return DETECTOR_NSS_DECIDED;
	}
	*pending = c;
	return DETECTOR_NSS_PENDING;
}

/* After it returns, done() is not running and never will (joined), unless
 * called from inside done() itself. */
static void
stub_cancel(void *p)
{
	struct pending *c = p;

	if (pthread_equal(c->thread, pthread_self())) {
		(void)pthread_detach(c->thread);
		free(c);        /* answer() no longer touches it */
		return;
	}
	(void)pthread_join(c->thread, NULL);
	free(c);
}

static const struct detector_nss_ops stub_ops = { 1, stub_check,
    stub_cancel };

const struct detector_nss_ops *
detector_nss_v1(void)
{
	return &stub_ops;
}
