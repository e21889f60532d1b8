/*
 * probe.h - one probe: TCP connect, optional SOCKS5 tunnel, then a TLS
 * handshake up to the server's certificate, all non-blocking.
 */
#ifndef DETECTOR_PROBE_H
#define DETECTOR_PROBE_H

#include <prio.h>

#include "detector.h"
#include "socks5.h"

#define PROBE_MAX_CERTS 32      /* chain entries kept; more are dropped */

enum probe_state {
	PROBE_IDLE = 0,
	PROBE_CONNECTING,
	PROBE_SOCKS_METHOD,
	PROBE_SOCKS_AUTH,
	PROBE_SOCKS_CONNECT,
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

	enum probe_state state;
	PRFileDesc *fd;
	unsigned char out[SOCKS5_MSG_MAX];
	size_t outlen, outoff;
	unsigned char in[SOCKS5_MSG_MAX];
	size_t inlen, need;
	int captured;                   /* the certificate step was reached */

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
