/*
 * starttls.h - the plaintext preambles that come before TLS on mail, chat
 * and directory ports: SMTP (RFC 3207), IMAP (RFC 3501), POP3 (RFC 2595),
 * XMPP (RFC 6120) and LDAP (RFC 4511).  Pure: no sockets here.
 *
 * The machine is lock-step: it says what to send, the caller sends it and
 * collects the server's reply, the machine reads the complete reply and says
 * what to send next, until the server says "go ahead with TLS".  A server
 * that speaks out of turn (bytes after a complete reply, above all after the
 * go-ahead: STARTTLS command injection, CVE-2011-0411) is an error, as is
 * any reply that is malformed, too long or refuses.
 */
#ifndef DETECTOR_STARTTLS_H
#define DETECTOR_STARTTLS_H

#include <stddef.h>

#include "detector.h"

#define STARTTLS_LINE_MAX 2048  /* one text line, CRLF included */
#define STARTTLS_REPLY_MAX 8192 /* one complete reply (the caller's buffer) */
#define STARTTLS_OUT_MAX 512    /* longest command we send */
/* The name given in SMTP's EHLO: fixed and neutral, so a probe never tells
 * the server (or a sphere's exit) the local host's name. */
#define STARTTLS_EHLO_NAME "detector.invalid"

enum starttls_status {
	STARTTLS_ERROR = -1,    /* malformed, refused or out of turn: see err */
	STARTTLS_NEED_MORE = 0, /* read more of the reply, then call again */
	STARTTLS_SEND = 1,      /* send out, then collect the next reply */
	STARTTLS_READY = 2,     /* the server waits for the TLS ClientHello */
};

struct starttls {
	enum detector_starttls proto;
	int step;
	char host[256];         /* XMPP: the stream's 'to' domain */
};

/* Prepares a preamble for proto to host.  -1 (err says why) for a host the
 * protocol cannot name (XMPP needs a plain domain or address). */
int starttls_init(struct starttls *st, enum detector_starttls proto,
    const char *host, char *err, size_t errlen);

/*
 * One step.  in/inlen is everything received since the last STARTTLS_SEND
 * (call first with inlen 0: XMPP and LDAP speak first).  STARTTLS_SEND puts
 * the next command in out (*outlen bytes; outsize >= STARTTLS_OUT_MAX): the
 * caller sends it and starts a fresh reply buffer.  STARTTLS_NEED_MORE: read
 * more (a reply reaching STARTTLS_REPLY_MAX without ending is an error).
 * STARTTLS_READY: start the TLS handshake.  STARTTLS_ERROR: err names the
 * protocol and what the server said.
 */
enum starttls_status starttls_step(struct starttls *st,
    const unsigned char *in, size_t inlen, unsigned char *out,
    size_t outsize, size_t *outlen, char *err, size_t errlen);

/* "the SMTP preamble" and the like, for progress and timeout messages. */
const char *starttls_stage(enum detector_starttls proto);

#endif
