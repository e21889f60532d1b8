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


/*
 * Admission control for many checks driven from one PR_Poll loop (a
 * gateway checking for many users; bench/probe_scale).
 *
 * Why: every probe in flight costs CPU for as long as it lasts (NSS's
 * handshake state, PR_Poll over every descriptor), and a sphere's tor
 * builds circuits at a bounded pace.  Started all at once, a thousand
 * checks slow each other down until most miss their deadline (issue 16:
 * 3,271 of 15,000 probes timed out at 1,000 checks in flight).  The gate
 * lets at most `cap` checks run (their probes started); the others wait in
 * the caller's first-in first-out queue, at most `queue_max` of them.  A
 * check the queue cannot hold, or one that by the pace measured so far
 * could not finish before its deadline, is refused at once: the caller
 * ends it UNDECIDED with the gate's note, never after a long wait.
 *
 * `cap` starts at `limit` and comes down (by a quarter, at most once per
 * `cap` verdicts) while checks take more than half their deadline from
 * start to verdict, and goes back up one by one while they take less than
 * a quarter: the gate never keeps more checks running than can finish in
 * time, whatever the spheres' pace.
 *
 * The gate is bookkeeping only (no sockets, no clock: the caller passes the
 * times), so its rules are unit-tested with a simulated clock
 * (tests/unit/test_probe_gate.c).
 */
struct probe_gate {
	unsigned int limit;             /* checks running at once, at most */
	unsigned int queue_max;         /* checks waiting at once, at most */
	unsigned int deadline_ms;       /* a check's whole time budget */
	unsigned int cap;               /* the current limit, 1..limit */
	unsigned int running, waiting;
	unsigned int service_ms;        /* moving average of start-to-verdict
	                                 * times; 0 before the first verdict */
	unsigned int since_adjust;      /* verdicts since cap last changed */
	unsigned long started, refused;
};

enum probe_gate_answer {
	PROBE_GATE_START,               /* start the check's probes now */
	PROBE_GATE_WAIT,                /* keep it waiting in the queue */
	PROBE_GATE_REFUSE,              /* end it now, UNDECIDED, with why */
};

/* The note a refused check carries starts with this. */
#define PROBE_GATE_NOTE "too many checks in flight (spheres overloaded)"

/* limit and queue_max at least 1 (0 is taken as 1); deadline_ms is the
 * checks' budget from arrival to verdict. */
void probe_gate_init(struct probe_gate *g, unsigned int limit,
    unsigned int queue_max, unsigned int deadline_ms);
/* A new check arrives.  START counts it as running, WAIT as the last of the
 * waiting; REFUSE counts it as neither and writes why. */
enum probe_gate_answer probe_gate_arrive(struct probe_gate *g, char *why,
    size_t whylen);
/* Asks about the waiting check at `position` (0 = the head of the queue),
 * which has left_ms until its deadline.  START (only ever for the head, when
 * a slot is free) moves it to running; REFUSE removes it from the waiting
 * (it could no longer finish in time) and writes why; WAIT leaves it.
 * Ask from the head on, each time the loop turns. */
enum probe_gate_answer probe_gate_next(struct probe_gate *g,
    unsigned int position, unsigned int left_ms, char *why, size_t whylen);
/* A running check reached its verdict service_ms after it started. */
void probe_gate_done(struct probe_gate *g, unsigned int service_ms);

/* Frees what a detector_path owns (not the struct itself). */
void path_release(struct detector_path *path);

#endif
