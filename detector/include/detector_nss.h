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

/*
 * NSPR error codes DetecTor adds (PR_ErrorToString and PR_ErrorToName know
 * them once libdetector is loaded).  An ABI constant: libssl passes them
 * through to the application unchanged, and applications and logs see the
 * numbers.
 *
 * They sit in the top slice of NSS's SSL error range, SSL_ERROR_BASE
 * (-0x3000) + 0x380 .. + 0x3e7 (SSL_ERROR_LIMIT is SSL_ERROR_BASE + 1000),
 * so that applications which classify errors by NSS's ranges treat them as
 * TLS errors.  Firefox shows an error page only for codes inside
 * IS_SSL_ERROR / IS_SEC_ERROR / mozilla::pkix's range
 * (NSSErrorsService.cpp IsNSSErrorCode); anything else becomes
 * NS_ERROR_FAILURE and a blank tab.  Inside SSL's range a code that is not
 * in its overridable list is ERROR_CLASS_SSL_PROTOCOL: the "Secure
 * Connection Failed" page without an "accept the risk" button, naming the
 * code (PR_ErrorToName), and no TLS-intolerance fallback retry (not in
 * nsNSSIOLayer.cpp's tlsIntoleranceTelemetryBucket).  NSS's own table ends
 * at SSL_ERROR_END_OF_LIST (SSL_ERROR_BASE + 193 in NSS 3.112, + 192 in
 * 3.87) and grows from the bottom; NSPR's table lookup takes the table
 * whose [base, base + count) holds the code, so the two never overlap
 * while NSS stays under 0x380 codes (detector/nss/policy.c checks it at
 * compile time against the sslerr.h it is built with).  The values were
 * -0x3800 + n before 2026-12 (outside every NSS range).
 */
#define DETECTOR_ERROR_BASE (-0x3000 + 0x380)  /* SSL_ERROR_BASE + 0x380 */
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

/*
 * Rerouting (docs/reroute.md), a separate and separately versioned entry so
 * that struct detector_nss_ops and every libssl built against it stay as
 * they are.  A libssl that looks up detector_nss_reroute_v1() declares that
 * it can reroute: only then does check() refuse a handshake with
 * DETECTOR_ERROR_REROUTE, meaning "refused on this path; on_mitm = reroute
 * asks to make the connection again through a sphere".  libssl then calls
 * open() with the same host, port and certificate, and never lets the
 * handshake go on over the direct path.
 */
#define DETECTOR_ERROR_REROUTE (DETECTOR_ERROR_BASE + 5)
/*
 * Key continuity (issue 14): the spheres could not decide, and the key
 * seen directly differs from every key a quorum confirmed for the site
 * within history_days: refused whatever on_undecided says.
 */
#define DETECTOR_ERROR_KEY_CHANGED (DETECTOR_ERROR_BASE + 6)
/*
 * require_direct_staple = yes for the site (issue 17): the spheres' paths
 * staple a fresh good OCSP response for the certificate and the direct
 * path none, a stale or an unusable one (result->staple_refused).
 */
#define DETECTOR_ERROR_STAPLE_MISSING (DETECTOR_ERROR_BASE + 7)
/* The highest code DetecTor uses; all lie below SSL_ERROR_LIMIT. */
#define DETECTOR_ERROR_LAST DETECTOR_ERROR_STAPLE_MISSING
#if DETECTOR_ERROR_LAST >= -0x3000 + 1000
#error "DETECTOR_ERROR_* must stay inside NSS's SSL error range"
#endif

/* Called once, from another thread, with 0 and a descriptor ready for the
 * ClientHello (now the caller's to close), or a refusal code and -1.  It
 * may run before open() has returned (libssl holds the socket's handshake
 * locks across open(), so it waits for them). */
typedef void (*detector_nss_reroute_fn)(void *arg, int error, int fd);

struct detector_nss_reroute_ops {
	unsigned int version;   /* 1 */
	/*
	 * Opens a fresh connection to host:port through a sphere that saw the
	 * quorum key when the check refused this certificate (der: the direct
	 * path's leaf): SOCKS5 to the host name with a fresh isolation token,
	 * then the port's STARTTLS preamble.  The descriptor is connected,
	 * blocking and close-on-exec; libssl dup2()s it onto the application's
	 * descriptor number and starts the handshake over from ClientHello.
	 * may_block: open it now, on the caller's thread, bounded by the
	 * reroute deadline; DETECTOR_NSS_DECIDED with *fd, or *error
	 * (DETECTOR_ERROR_MITM: no reroute possible; never the direct path).
	 * Otherwise DETECTOR_NSS_PENDING and done(arg, error, fd) later.
	 * *handle is set whenever *error is 0: the reroute's identity, for
	 * verify() and release().
	 */
	int (*open)(const char *host, unsigned int port,
	    const unsigned char *der, unsigned int der_len, int may_block,
	    detector_nss_reroute_fn done, void *arg, void **handle, int *fd,
	    int *error);
	/*
	 * The rerouted handshake's server certificate, after the application's
	 * own check accepted it (instead of check(): a rerouted connection is
	 * never rerouted again).  0 if its key is the quorum key (logged as
	 * "REROUTED host:port via sphere"), else DETECTOR_ERROR_MITM.
	 */
	int (*verify)(void *handle, const unsigned char *der,
	    unsigned int der_len);
	/*
	 * Exactly once per handle, when the socket is closed or reset.  After
	 * it returns, done() is not running and never will (an unused
	 * descriptor is closed), except when called from inside done(), which
	 * it cannot wait for.  A handle inherited through fork() is never
	 * delivered in the child.
	 */
	void (*release)(void *handle);
};

/* NULL when DetecTor is disabled (enabled = no) or cannot reroute. */
DETECTOR_API const struct detector_nss_reroute_ops *detector_nss_reroute_v1(
    void);

/*
 * No unchecked resumption (issue 14), a separate and separately versioned
 * entry as for rerouting.  A libssl that calls detector_nss_unconfirmed_v1()
 * declares that it understands one more answer of check() (as *error, or
 * as done()'s error): DETECTOR_NSS_ACCEPT_UNCONFIRMED, "accepted, but no
 * quorum of spheres confirmed this key (an UNDECIDED accepted by
 * on_undecided = accept, or by the key's history): keep the session out of
 * the session cache", so that the next connection shows its certificate
 * and is checked again instead of resuming.  Positive: every refusal code
 * is negative.  Any other libssl is answered 0 for such an acceptance, as
 * before.
 */
#define DETECTOR_NSS_ACCEPT_UNCONFIRMED 1

/* 1 (the version of this answer); 0 when DetecTor is disabled. */
DETECTOR_API unsigned int detector_nss_unconfirmed_v1(void);

/*
 * Getting ready early (issue 16 item 5), a separate entry as above.  A
 * libssl calls it once, right after detector_nss_v1(), when it loads
 * libdetector at its first ClientHello: the verdict cache is opened on a
 * thread of its own while the server answers, so that the first check
 * does not wait for it.  Returns at once; probes nothing.  An older
 * libssl never calls it: the cache is then opened by the first check.
 */
DETECTOR_API void detector_nss_prepare_v1(void);

/*
 * Whether check() would look at host:port at all: 0 when DetecTor is
 * disabled or an `exclude` rule covers the host, else 1.  A libssl holds a
 * TLS 1.2 client's second round back, while the application's own
 * certificate check runs, only for a host DetecTor wants; one that does
 * not look it up holds every host's.
 */
DETECTOR_API unsigned int detector_nss_wants_v1(const char *host,
    unsigned int port);

#ifdef __cplusplus
}
#endif
#endif
