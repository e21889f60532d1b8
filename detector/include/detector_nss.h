/*
 * detector_nss.h - the interface between NSS's libssl (patched by
 * nss-patches/) and libdetector.
 *
 * The patched libssl3.so dlopen()s libdetector.so.0 and calls
 * detector_nss_v1() once.  It then asks ops->check() about every server
 * certificate the application's own check has already accepted.  The
 * structures below are an ABI: fields are only ever appended, and
 * `version` says which exist.  nss-patches/ mirrors this declaration so that
 * NSS builds without DetecTor's headers.
 */
#ifndef DETECTOR_NSS_H
#define DETECTOR_NSS_H

#include "detector.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NSPR error codes DetecTor adds (PR_ErrorToString knows them once
 * libdetector is loaded).  A range no NSS or NSPR table uses. */
#define DETECTOR_ERROR_BASE (-0x3800)
#define DETECTOR_ERROR_MITM (DETECTOR_ERROR_BASE + 0)
#define DETECTOR_ERROR_UNDECIDED (DETECTOR_ERROR_BASE + 1)
#define DETECTOR_ERROR_CONFIG (DETECTOR_ERROR_BASE + 2)
/* A handshake the application accepted but DetecTor cannot check at all
 * (a host name it cannot read, a certificate it cannot parse, no check
 * possible): refused unless an `exclude` rule covers the host. */
#define DETECTOR_ERROR_UNCHECKABLE (DETECTOR_ERROR_BASE + 3)
/* A stapled OCSP response, validly signed by the certificate's issuer and
 * seen on the direct path or through a sphere, says the certificate is
 * revoked (result->revoked). */
#define DETECTOR_ERROR_REVOKED (DETECTOR_ERROR_BASE + 4)

#define DETECTOR_NSS_DECIDED 0   /* *error is the answer: 0 accepts */
#define DETECTOR_NSS_PENDING 1   /* done() will be called, or cancel() */

/* Called once, from another thread, with 0 (accept) or a refusal code.
 * It may run before check() has returned (libssl holds the socket's
 * handshake locks across check(), so it waits for them). */
typedef void (*detector_nss_done_fn)(void *arg, int error);

struct detector_nss_ops {
	unsigned int version;   /* 1 */
	/*
	 * host: the name the application connected to (SSL_SetURL), or the
	 * peer's IP address; der: the leaf certificate.  may_block: the
	 * socket is blocking, so the check may run on the caller's thread
	 * (bounded by the configured deadline).  Otherwise a check that needs
	 * probes returns DETECTOR_NSS_PENDING with *pending set and calls
	 * done(arg, error) later from another thread.
	 */
	int (*check)(const char *host, unsigned int port,
	    const unsigned char *der, unsigned int der_len, int may_block,
	    detector_nss_done_fn done, void *arg, void **pending,
	    int *error);
	/*
	 * Called exactly once per pending check, also after done() ran (it
	 * releases the handle).  After cancel() returns, done() is not
	 * running and never will, with one exception: called from inside
	 * done() itself (an application callback that closes its socket
	 * from within the handshake), it cannot wait for done() to return.
	 * A handle inherited through fork() is never delivered in the child.
	 */
	void (*cancel)(void *pending);
};

/* NULL when DetecTor is disabled by its configuration (enabled = no). */
DETECTOR_API const struct detector_nss_ops *detector_nss_v1(void);

#ifdef __cplusplus
}
#endif
#endif
