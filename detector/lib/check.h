/*
 * check.h - detector_check() in its steps, for the NSS integration, which
 * has already validated the host, matched `exclude` and read the
 * certificate, once per handshake, and decides between the steps whether
 * the handshake waits on a worker thread.
 */
#ifndef DETECTOR_CHECK_H
#define DETECTOR_CHECK_H

#include "certinfo.h"
#include "detector.h"

/* The arguments every entry point checks: a configured context, a host
 * name DetecTor can probe, a port.  0, or -1 (detector_error()). */
int check_target(struct detector *ctx, const char *host, unsigned int port);

/* The remembered verdict for this key: 1 with *result set (cached), 0 if
 * there is none, -1 on error. */
int check_recall(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, struct detector_result **result);

/* Probes the spheres and remembers the verdict: 0 with *result set, or
 * -1 on error.  The host is not matched against `exclude` here. */
int check_probe(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, struct detector_result **result);

#endif
