/*
 * glue.h - the NSS integration's files, to each other: the policy
 * (policy.c) hands a check that must wait to the worker pool (workers.c),
 * whose workers hand it back to be probed and decided.
 */
#ifndef DETECTOR_GLUE_H
#define DETECTOR_GLUE_H

#include "certinfo.h"
#include "detector_nss.h"

/* policy.c: probes the spheres for host:port and this key with ctx (the
 * context the check was started with; freed here), blocking (bounded by
 * the deadline), says the decision and returns the refusal code, 0 to
 * accept. */
int glue_probe_and_decide(struct detector *ctx, const char *host,
    unsigned int port, const struct certinfo *ci);

/*
 * workers.c: makes a waiter for host:port and key that calls done(arg,
 * error) once, from a worker thread: joins a check already queued or
 * running (returns 1) or starts one (0) that probes with ctx; -1 if it
 * cannot (out of memory or threads).  ctx is always taken (freed unless
 * the check it started uses it).  *pending is the handle for
 * workers_cancel(), the ops' cancel().
 */
int workers_start(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, detector_nss_done_fn done, void *arg,
    void **pending);
void workers_cancel(void *pending);

#endif
