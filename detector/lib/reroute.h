/*
 * reroute.h - the third outcome: when the direct path is intercepted, the
 * application's connection is made again through a sphere that saw the
 * quorum key (docs/reroute.md).
 *
 *   reroute_plan()      pure: from a REJECT's result, the key the spheres
 *                       agree on and the spheres that saw it, fastest first
 *   reroute_open()      I/O: a fresh TCP connection to one of those spheres,
 *                       SOCKS5 CONNECT to the host *name* with a fresh
 *                       isolation token, the STARTTLS preamble if any; the
 *                       descriptor is then ready for the ClientHello
 *   reroute_verify()    the rerouted certificate's key must be that key
 *   reroute_remember()  the rogue key's plan, so that a later handshake
 *   reroute_recall()    showing the same rogue key reroutes with no probe
 *
 * Nothing here decides *whether* to reroute: that is the policy's
 * (`on_mitm`).  Every failure is reported, never papered over: the caller
 * then refuses (DETECTOR_ERROR_MITM), never falls back to the direct path.
 */
#ifndef DETECTOR_REROUTE_H
#define DETECTOR_REROUTE_H

#include <stddef.h>

#include "config.h"
#include "detector.h"

/* How long a rogue key's plan is kept: as long as its REJECT
 * (CACHE_TTL_REJECT). */
#define REROUTE_MEMORY_S 600
/* Plans kept at once per process; the one expiring first is replaced. */
#define REROUTE_MEMORY_MAX 64

/* Where and how one connection is rerouted. */
struct reroute_plan {
	char host[256];                 /* as check_target() wrote it */
	unsigned int port;
	enum detector_starttls starttls;        /* the preamble to speak */
	unsigned char key[DETECTOR_SHA256_LEN]; /* the quorum key (SPKI) */
	unsigned int agree;             /* spheres that saw it */
	unsigned int nvia;              /* spheres to try, fastest first */
	struct sphere via[DETECTOR_MAX_SPHERES];
	unsigned int deadline_ms;       /* for reroute_open() */
	enum log_level log_level;       /* how the NSS integration logs it */
	int log_syslog;
};

/*
 * The quorum key of a REJECT: the key most spheres saw instead of the
 * direct one, seen by at least k of them (res->quorum, the ACCEPT bar: 4
 * of 5 by default; not the REJECT threshold n-k+1, which two colluding
 * lying exits reach) and by strictly more spheres than any other
 * non-direct key.  A quorum of 0 or above n: no plan.  spheres[] are the configured spheres, in the order of
 * res->spheres.  0 with *plan filled, or -1 with err saying why no reroute
 * is possible (not a REJECT, a remembered verdict with no spheres, the
 * spheres disagree among themselves).  Pure.
 */
int reroute_plan(const struct detector_result *res,
    const struct sphere *spheres, size_t nspheres, const char *host,
    unsigned int port, enum detector_starttls starttls,
    unsigned int deadline_ms, struct reroute_plan *plan, char *err,
    size_t errlen);

/*
 * Opens the rerouted connection: tries plan->via[] in order until one gives
 * a tunnel ready for the TLS ClientHello, all within plan->deadline_ms.
 * cancel_fd, when not -1, aborts the attempt as soon as it is readable.
 * Returns a connected, blocking, close-on-exec descriptor with *via set to
 * the index of the sphere used, or -1 with err naming every sphere tried
 * and what failed.  No byte of the application's reaches any socket here.
 */
int reroute_open(const struct reroute_plan *plan, int cancel_fd,
    unsigned int *via, char *err, size_t errlen);

/* 0 if the DER certificate's key is key; -1 with err otherwise (also for a
 * certificate that cannot be read).  NSS must be initialised. */
int reroute_verify(const unsigned char key[DETECTOR_SHA256_LEN],
    const char *via, const unsigned char *der, size_t len, char *err,
    size_t errlen);

/* Keeps plan for REROUTE_MEMORY_S, found again by host, port and the rogue
 * key (the key the direct path showed).  Process-wide, thread-safe. */
void reroute_remember(const struct reroute_plan *plan,
    const unsigned char rogue[DETECTOR_SHA256_LEN]);
/* 1 with *plan set if a plan is remembered for exactly this rogue key at
 * host:port and has not expired, else 0. */
int reroute_recall(const char *host, unsigned int port,
    const unsigned char rogue[DETECTOR_SHA256_LEN],
    struct reroute_plan *plan);
/* Forgets every plan (tests). */
void reroute_forget_all(void);

/*
 * The NSS integration's side (detector_nss_reroute_v1() in detector_nss.h).
 * reroute_nss_wanted(): 1 once the process's libssl has asked for the
 * reroute ops, i.e. it can act on DETECTOR_ERROR_REROUTE.  The policy
 * (on_mitm = reroute) must return that code to no other libssl: an older
 * one would show it as a refusal with a confusing message.
 */
int reroute_nss_wanted(void);

#endif
