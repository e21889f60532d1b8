/*
 * check.h - detector_check() in its steps, for the NSS integration, which
 * normalises the host, matches `exclude` and reads the certificate once
 * per handshake, and decides between the steps whether the handshake
 * waits on a worker thread.  The steps take the host as check_target()
 * wrote it.
 */
#ifndef DETECTOR_CHECK_H
#define DETECTOR_CHECK_H

#include "certinfo.h"
#include "detector.h"

#define CHECK_HOST_SIZE 256

/* The arguments every entry point checks: somewhere to put the result, a
 * configured context, a host DetecTor can check, a port.  0 with the host
 * as NSS reads it (host_normalise()) in name, or -1 (detector_error()). */
int check_target(struct detector *ctx, int have_result, const char *host,
    unsigned int port, char name[CHECK_HOST_SIZE]);

/* The remembered verdict for this key: 1 with *result set (cached), 0 if
 * there is none, -1 on error. */
int check_recall(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, struct detector_result **result);

/* Probes the spheres and remembers the verdict: 0 with *result set, or
 * -1 on error.  The host is not matched against `exclude` here. */
int check_probe(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci, struct detector_result **result);

#endif
