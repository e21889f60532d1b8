/*
 * asyncclient - a non-blocking NSS TLS client that authenticates the
 * server asynchronously, as Firefox does: its certificate hook returns
 * SECWouldBlock, and its event loop later verifies the chain and calls
 * SSL_AuthCertificateComplete.  No DetecTor code; it links the system NSS.
 *
 * It drives N connections at once from one PR_Poll loop and can misbehave
 * in the ways the NSS API allows while DetecTor decides:
 *
 *   --twice        call SSL_AuthCertificateComplete(fd, 0) again on every
 *                  turn of the loop after the first
 *   --refuse-late  after accepting, call it again with
 *                  SEC_ERROR_REVOKED_CERTIFICATE (the application changed
 *                  its mind, e.g. a late OCSP answer)
 *   --reset        after accepting, call SSL_ResetHandshake on the socket
 *   --reset-own    call SSL_ResetHandshake instead of accepting (the same
 *                  misuse while the application's own check is pending)
 *
 *   --raw-wait     after accepting, wait (up to 5 s per turn) on the raw
 *                  socket for it to become readable, not on NSS's layer, as
 *                  an event loop watching the OS descriptor does
 *
 *   --fetch        after the handshake, send a request and print the answer
 *                  (fetch.h: an HTTP GET, with --smtp an EHLO, with --xmpp
 *                  the stream header, answered by the server's features)
 *
 * usage: asyncclient [-n N] [-r ROUNDS] [-t MS] [-a MS] [--smtp|--xmpp] [--fetch] [--raw-wait] [--twice|--refuse-late|--reset|--reset-own] DBDIR HOST PORT ADDR
 * -t MS gives up after MS milliseconds (default 60000).
 * -a MS: the application's own check takes MS milliseconds (a slow
 * verification: OCSP, a user's answer); the loop goes on meanwhile.
 * -r ROUNDS: the N connections, then N more once they have ended, ROUNDS
 * times in all (default 1), in one process.
 * --smtp speaks SMTP's plaintext EHLO/STARTTLS first (blocking), as a mail
 * client does, then hands the socket to NSS; --xmpp the same with XMPP's
 * stream header, <starttls/> and <proceed/> (RFC 6120, 5.4).
 * prints per connection "result: ok" or "result: failed <NAME>: <text>",
 * then "max_poll_ms: N" (the longest single PR_Poll call), "polls: N",
 * "total_ms: N" and "handshake_callbacks: N on the application's thread,
 * M on others" (NSS's handshake callback: an application that authenticates
 * asynchronously expects it on the thread that drives the socket, as
 * Firefox does).  Exit 0 if every connection succeeded.
 */
#include <cert.h>
#include <nss.h>
#include <prerror.h>
#include <prinit.h>
#include <prio.h>
#include <prnetdb.h>
#include <prthread.h>
#include <secerr.h>
#include <ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"

#define MAX_CONNS 64
#define POLL_MS 50
#define LIMIT_MS 60000

enum misbehaviour { NONE, TWICE, REFUSE_LATE, RESET, RESET_OWN };

struct conn {
	PRFileDesc *fd;
	int auth_wanted;        /* the hook asked; verify on the next turn */
	PRIntervalTime auth_asked;      /* when (for -a) */
	int auth_done;          /* SSL_AuthCertificateComplete(fd, 0) called */
	int misbehaved;
	int handshake_done;     /* NSS's handshake callback ran */
	int finished;
	int ok;
};

static enum misbehaviour misbehaviour = NONE;
static PRThread *app_thread;
static unsigned int callbacks_here, callbacks_elsewhere;
static int limit_ms = LIMIT_MS;
static unsigned int auth_delay_ms;     /* -a */
static enum fetch_proto proto;  /* FETCH_HTTP: TLS from the first byte */
static int fetch;

static SECStatus
auth_later(void *arg, PRFileDesc *fd, PRBool checksig, PRBool is_server)
{
	struct conn *c = arg;

	(void)fd;
	(void)checksig;
	(void)is_server;
	c->auth_wanted = 1;
	c->auth_asked = PR_IntervalNow();
	return SECWouldBlock;
}

/* NSS calls it with the socket's locks held; main() reads the counts after
 * every connection has ended, i.e. after those locks were released. */
static void
handshake_done(PRFileDesc *fd, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	c->handshake_done = 1;
	if (PR_GetCurrentThread() == app_thread)
		callbacks_here++;
	else
		callbacks_elsewhere++;
}

static void
finish(struct conn *c, int ok, const char *what)
{
	PRErrorCode e = PR_GetError();

	c->finished = 1;
	c->ok = ok;
	if (ok) {
		printf("result: ok\n");
		fetch_session(c->fd);
		if (fetch && fetch_response(c->fd, proto) == -1) {
			c->ok = 0;
			e = PR_GetError();
			printf("fetch: failed %s\n", PR_ErrorToName(e) ?
			    PR_ErrorToName(e) : "?");
		}
		return;
	}
	printf("result: failed %s: %s (%s)\n", PR_ErrorToName(e) ?
	    PR_ErrorToName(e) : "?", PR_ErrorToString(e,
	    PR_LANGUAGE_I_DEFAULT), what);
}

/* The application's own check, then its answer to NSS. */
static void
authenticate(struct conn *c)
{
	SECStatus rv;

	c->auth_wanted = 0;
	rv = SSL_AuthCertificate(CERT_GetDefaultCertDB(), c->fd, PR_TRUE,
	    PR_FALSE);
	if (SSL_AuthCertificateComplete(c->fd, rv == SECSuccess ? 0 :
	    PR_GetError()) != SECSuccess) {
		finish(c, 0, "SSL_AuthCertificateComplete");
		return;
	}
	c->auth_done = rv == SECSuccess;
}

/* What a careless or changing application may do afterwards. */
static void
misbehave(struct conn *c)
{
	switch (misbehaviour) {
	case TWICE:
		(void)SSL_AuthCertificateComplete(c->fd, 0);
		break;
	case REFUSE_LATE:
		if (!c->misbehaved)
			(void)SSL_AuthCertificateComplete(c->fd,
			    SEC_ERROR_REVOKED_CERTIFICATE);
		break;
	case RESET:
		if (!c->misbehaved)
			(void)SSL_ResetHandshake(c->fd, PR_FALSE);
		break;
	case NONE:
	case RESET_OWN:
		return;
	}
	c->misbehaved = 1;
}

/* Reads one SMTP reply (all its lines); returns its code or -1. */
static int
smtp_reply(PRFileDesc *tcp)
{
	char line[1024];
	size_t n = 0;

	for (;;) {
		char ch;

		if (PR_Recv(tcp, &ch, 1, 0, PR_SecondsToInterval(10)) != 1 ||
		    n + 1 >= sizeof(line))
			return -1;
		line[n++] = ch;
		if (ch != '\n')
			continue;
		line[n] = '\0';
		if (n < 4)
			return -1;
		if (line[3] == ' ')
			return atoi(line);
		n = 0;                  /* "250-..." : more lines follow */
	}
}

static int
plain_send(PRFileDesc *tcp, const char *cmd)
{
	int len = (int)strlen(cmd);

	return PR_Send(tcp, cmd, len, 0, PR_SecondsToInterval(10)) == len ?
	    0 : -1;
}

/* Reads, a byte at a time so that nothing of the TLS that follows is
 * consumed, until buf ends with `end`; 0 then, -1 after 10 s, on close or
 * when buf is full. */
static int
plain_recv_until(PRFileDesc *tcp, char *buf, size_t size, const char *end)
{
	PRIntervalTime until = PR_IntervalNow() + PR_SecondsToInterval(10);
	size_t n = 0;

	while (n + 1 < size) {
		PRIntervalTime now = PR_IntervalNow();

		if ((PRInt32)(now - until) >= 0 ||
		    PR_Recv(tcp, buf + n, 1, 0, until - now) != 1)
			return -1;
		buf[++n] = '\0';
		if (fetch_ends_with(buf, n, end))
			return 0;
	}
	return -1;
}

/* XMPP's plaintext part (RFC 6120, 5.4): the stream header, the server's
 * features offering STARTTLS, <starttls/>, and its <proceed/>. */
static int
xmpp_preamble(PRFileDesc *tcp)
{
	char buf[4096];

	return plain_send(tcp, FETCH_XMPP_STREAM) ||
	    plain_recv_until(tcp, buf, sizeof(buf), "</stream:features>") ||
	    strstr(buf, "urn:ietf:params:xml:ns:xmpp-tls") == NULL ||
	    plain_send(tcp,
	    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>") ||
	    plain_recv_until(tcp, buf, sizeof(buf), "/>") ||
	    strncmp(buf, "<proceed ", 9) != 0 ? -1 : 0;
}

/* The plaintext part of STARTTLS (SMTP: RFC 3207), as a mail or chat
 * client does before it hands the socket to NSS. */
static int
starttls(PRFileDesc *tcp, const PRNetAddr *addr)
{
	if (PR_Connect(tcp, addr, PR_SecondsToInterval(10)) != PR_SUCCESS)
		return -1;
	if (proto == FETCH_XMPP)
		return xmpp_preamble(tcp);
	return smtp_reply(tcp) != 220 ||
	    plain_send(tcp, "EHLO client.test\r\n") ||
	    smtp_reply(tcp) != 250 || plain_send(tcp, "STARTTLS\r\n") ||
	    smtp_reply(tcp) != 220 ? -1 : 0;
}

static int
open_conn(struct conn *c, const char *host, const PRNetAddr *addr)
{
	PRSocketOptionData opt;
	PRFileDesc *tcp = PR_OpenTCPSocket(PR_AF_INET);

	if (tcp == NULL)
		return -1;
	if (proto != FETCH_HTTP && starttls(tcp, addr) == -1) {
		PR_Close(tcp);
		return -1;
	}
	opt.option = PR_SockOpt_Nonblocking;
	opt.value.non_blocking = PR_TRUE;
	PR_SetSocketOption(tcp, &opt);
	if ((c->fd = SSL_ImportFD(NULL, tcp)) == NULL) {
		PR_Close(tcp);
		return -1;
	}
	if (SSL_SetURL(c->fd, host) != SECSuccess ||
	    SSL_OptionSet(c->fd, SSL_NO_CACHE, PR_TRUE) != SECSuccess ||
	    SSL_AuthCertificateHook(c->fd, auth_later, c) != SECSuccess ||
	    SSL_HandshakeCallback(c->fd, handshake_done, c) != SECSuccess ||
	    SSL_ResetHandshake(c->fd, PR_FALSE) != SECSuccess)
		return -1;
	if (proto == FETCH_HTTP && PR_Connect(c->fd, addr, PR_INTERVAL_NO_WAIT) !=
	    PR_SUCCESS && PR_GetError() != PR_IN_PROGRESS_ERROR)
		return -1;
	return 0;
}

static void
step(struct conn *c)
{
	PRErrorCode e;

	if (c->auth_wanted && misbehaviour == RESET_OWN) {
		/* The same, but while the application's own check is pending:
		 * what stock NSS does here is the reference. */
		c->auth_wanted = 0;
		(void)SSL_ResetHandshake(c->fd, PR_FALSE);
	} else if (c->auth_wanted && PR_IntervalToMilliseconds(PR_IntervalNow() -
	    c->auth_asked) >= auth_delay_ms)
		authenticate(c);
	else if (c->auth_done)
		misbehave(c);
	if (c->finished)
		return;
	/* A TLS 1.2 handshake whose server finished while the application
	 * was still checking (-a) completes inside SSL_AuthCertificateComplete;
	 * SSL_ForceHandshake would then wait for a record that never comes. */
	if (c->handshake_done || SSL_ForceHandshake(c->fd) == SECSuccess) {
		finish(c, 1, "");
		return;
	}
	e = PR_GetError();
	if (e != PR_WOULD_BLOCK_ERROR && e != PR_IN_PROGRESS_ERROR &&
	    e != PR_NOT_CONNECTED_ERROR)
		finish(c, 0, "handshake");
}

int
main(int argc, char **argv)
{
	static struct conn conns[MAX_CONNS];
	PRPollDesc pds[MAX_CONNS];
	unsigned int max_poll_ms = 0, polls = 0;
	PRIntervalTime t0;
	PRNetAddr addr;
	int i, n = 1, left, failed = 0, a = 1, raw_wait = 0, rounds = 1;

	for (; a < argc && argv[a][0] == '-'; a++) {
		if (strcmp(argv[a], "-n") == 0 && a + 1 < argc)
			n = atoi(argv[++a]);
		else if (strcmp(argv[a], "-t") == 0 && a + 1 < argc)
			limit_ms = atoi(argv[++a]);
		else if (strcmp(argv[a], "-a") == 0 && a + 1 < argc)
			auth_delay_ms = (unsigned int)atoi(argv[++a]);
		else if (strcmp(argv[a], "-r") == 0 && a + 1 < argc)
			rounds = atoi(argv[++a]);
		else if (strcmp(argv[a], "--twice") == 0)
			misbehaviour = TWICE;
		else if (strcmp(argv[a], "--refuse-late") == 0)
			misbehaviour = REFUSE_LATE;
		else if (strcmp(argv[a], "--reset") == 0)
			misbehaviour = RESET;
		else if (strcmp(argv[a], "--reset-own") == 0)
			misbehaviour = RESET_OWN;
		else if (strcmp(argv[a], "--smtp") == 0)
			proto = FETCH_SMTP;
		else if (strcmp(argv[a], "--xmpp") == 0)
			proto = FETCH_XMPP;
		else if (strcmp(argv[a], "--raw-wait") == 0)
			raw_wait = 1;
		else if (strcmp(argv[a], "--fetch") == 0)
			fetch = 1;
		else
			break;
	}
	if (argc - a != 4 || n < 1 || n > MAX_CONNS) {
		fprintf(stderr, "usage: asyncclient [-n N] [-r ROUNDS] [-t MS] [-a MS] "
		    "[--smtp|--xmpp] [--fetch] [--raw-wait] [--twice|"
		    "--refuse-late|--reset|--reset-own] DBDIR HOST PORT ADDR\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (NSS_Init(argv[a]) != SECSuccess || NSS_SetDomesticPolicy() !=
	    SECSuccess || PR_StringToNetAddr(argv[a + 3], &addr) !=
	    PR_SUCCESS || PR_InitializeNetAddr(PR_IpAddrNull,
	    (PRUint16)atoi(argv[a + 2]), &addr) != PR_SUCCESS) {
		fprintf(stderr, "asyncclient: setup: %s\n",
		    PR_ErrorToName(PR_GetError()));
		return 2;
	}
	app_thread = PR_GetCurrentThread();
	t0 = PR_IntervalNow();
next_round:
	for (i = 0; i < n; i++) {
		if (open_conn(&conns[i], argv[a + 1], &addr) == -1)
			finish(&conns[i], 0, "connect");
	}
	for (;;) {
		PRIntervalTime start;
		int npd = 0, raw = 0;

		for (i = 0, left = 0; i < n; i++) {
			if (!conns[i].finished)
				step(&conns[i]);
			if (!conns[i].finished) {
				if (raw_wait && conns[i].auth_done) {
					pds[npd].fd = PR_GetIdentitiesLayer(
					    conns[i].fd, PR_NSPR_IO_LAYER);
					pds[npd].in_flags = PR_POLL_READ;
					raw = 1;
				} else {
					pds[npd].fd = conns[i].fd;
					pds[npd].in_flags = PR_POLL_READ |
					    PR_POLL_WRITE;
				}
				pds[npd++].out_flags = 0;
				left++;
			}
		}
		if (left == 0)
			break;
		if (PR_IntervalToMilliseconds(PR_IntervalNow() - t0) >
		    (PRUint32)limit_ms) {
			printf("result: failed TIMEOUT: %d connections without "
			    "an outcome after %d ms\n", left, limit_ms);
			failed = 1;
			break;
		}
		start = PR_IntervalNow();
		PR_Poll(pds, npd, PR_MillisecondsToInterval(raw ? 5000 :
		    POLL_MS));
		start = PR_IntervalToMilliseconds(PR_IntervalNow() - start);
		if (start > max_poll_ms)
			max_poll_ms = start;
		polls++;
	}
	for (i = 0; i < n; i++) {
		failed |= !conns[i].ok;
		if (conns[i].fd != NULL)
			PR_Close(conns[i].fd);
	}
	if (--rounds > 0 && left == 0) {
		memset(conns, 0, sizeof(conns));
		goto next_round;
	}
	printf("max_poll_ms: %u\npolls: %u\ntotal_ms: %u\n", max_poll_ms,
	    polls, PR_IntervalToMilliseconds(PR_IntervalNow() - t0));
	printf("handshake_callbacks: %u on the application's thread, %u on "
	    "others\n", callbacks_here, callbacks_elsewhere);
	NSS_Shutdown();
	PR_Cleanup();
	return failed;
}
