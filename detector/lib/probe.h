/*
 * probe.h - one probe: TCP connect, optional SOCKS5 tunnel, optional
 * STARTTLS preamble, then a TLS handshake up to the server's certificate,
 * all non-blocking.
 */
#ifndef DETECTOR_PROBE_H
#define DETECTOR_PROBE_H

#include <prio.h>

#include "certinfo.h"
#include "detector.h"
#include "socks5.h"
#include "starttls.h"

#define PROBE_MAX_CERTS 32      /* chain entries kept; more are dropped */

/*
 * The kind of key the direct connection saw.  A server with both an RSA and
 * an ECDSA certificate picks one from the client's signature schemes, so
 * the probes offer only the schemes of the key type seen directly: every
 * path is then shown the same certificate (otherwise a sphere could see the
 * server's other, equally genuine key and report a false mismatch).
 */
/* enum probe_keytype: certinfo.h, read with the certificate's hashes. */

enum probe_state {
	PROBE_IDLE = 0,
	PROBE_CONNECTING,
	PROBE_SOCKS_METHOD,
	PROBE_SOCKS_AUTH,
	PROBE_SOCKS_CONNECT,
	PROBE_STARTTLS,
	PROBE_TLS,
	PROBE_DONE,
};

struct probe {
	/* Set by the caller before probe_start(). */
	const char *host;
	unsigned int port;
	int via_socks;                  /* tunnel through the proxy at addr */
	const char *user, *pass;        /* RFC 1929 isolation token */
	PRIntervalTime start;           /* the check's start, for path.ms */
	PRIntervalTime deadline;        /* absolute */
	enum detector_starttls starttls;        /* preamble before TLS */
	enum probe_keytype keytype;     /* steer the server to this key type */

	enum probe_state state;
	PRNetAddr addr;                 /* where probe_start() connected */
	PRFileDesc *fd;
	unsigned char out[SOCKS5_MSG_MAX];
	size_t outlen, outoff;
	unsigned char in[SOCKS5_MSG_MAX];
	size_t inlen, need;
	int captured;                   /* the certificate step was reached */
	struct starttls st;             /* the preamble's state */
	unsigned char *stbuf;           /* the server's reply so far */
	size_t stlen;

	/* Where the outcome goes (the caller's storage); what it points to is
	 * released by path_release(). */
	struct detector_path *path;
};

/* Opens the socket and starts connecting to addr (the sphere or, for a
 * direct probe, the server), recording into *p->path.  Failures end the
 * probe (state DONE). */
void probe_start(struct probe *p, const PRNetAddr *addr, const char *via);
/* PR_Poll flags the probe waits for; 0 when done. */
PRInt16 probe_poll_flags(const struct probe *p);
/* Makes progress after PR_Poll reported out_flags. */
void probe_advance(struct probe *p, PRInt16 out_flags);
/* Ends an unfinished probe with status (TIMEOUT or SKIPPED) and why. */
void probe_abandon(struct probe *p, enum detector_path_status status,
    const char *why);


/* Frees what a detector_path owns (not the struct itself). */
void path_release(struct detector_path *path);

#endif
