/*
 * nbclient - a plain non-blocking NSS TLS client, as an application would
 * write it: no DetecTor code.  It connects, drives the handshake with
 * SSL_ForceHandshake and PR_Poll (POLL_MS per wait), and reports the
 * outcome and the longest time any single NSS call kept its thread.  Run
 * under detector-run, the longest call shows whether DetecTor's probes ever
 * blocked the application's thread.
 *
 * usage: nbclient DBDIR HOST[,HOST...] PORT ADDR [COUNT [nocache|cache]
 *        [fetch] [blocking] [tls12]]
 * Makes COUNT (default 1) connections one after the other, in one process;
 * "nocache" turns NSS's session cache off, so that every connection makes
 * a full handshake (otherwise the second one resumes the first session).
 * "fetch": after each handshake, sends an HTTP request and prints the
 * answer (fetch.h).  "blocking": a blocking socket instead (the handshake
 * is one SSL_ForceHandshake call).  "tls12": TLS 1.2 at most.  Connection i goes to the i-th HOST of
 * the list (round robin), always at ADDR.
 * prints per connection: "result: ok" or "result: failed <NAME>: <text>",
 *         after a handshake "resumed: 0|1" (and with fetch "response: ..."),
 *         then "max_call_ms: N", "polls: N", "total_ms: N"
 */
#include <nss.h>
#include <prerror.h>
#include <prinit.h>
#include <prio.h>
#include <prnetdb.h>
#include <ssl.h>
#include <sslproto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"

#define POLL_MS 50
#define LIMIT_MS 60000
#define MAX_HOSTS 8

static unsigned int max_call_ms;
static int no_cache;
static int fetch;
static int blocking;
static int tls12;

static PRIntervalTime
call_start(void)
{
	return PR_IntervalNow();
}

static void
call_end(PRIntervalTime start)
{
	unsigned int ms = PR_IntervalToMilliseconds(PR_IntervalNow() - start);

	if (ms > max_call_ms)
		max_call_ms = ms;
}

static int
fail(const char *what)
{
	PRErrorCode e = PR_GetError();

	printf("result: failed %s: %s (%s)\n", PR_ErrorToName(e) ?
	    PR_ErrorToName(e) : "?", PR_ErrorToString(e,
	    PR_LANGUAGE_I_DEFAULT), what);
	return 1;
}

/* One connection and handshake; returns 0 when the handshake succeeded. */
static int
handshake(const char *host, const PRNetAddr *addr)
{
	SSLVersionRange range12 = { SSL_LIBRARY_VERSION_TLS_1_2,
	    SSL_LIBRARY_VERSION_TLS_1_2 };
	PRSocketOptionData opt;
	PRFileDesc *tcp, *fd;
	PRIntervalTime t0, start;
	unsigned int polls = 0;
	int rc = 0;

	max_call_ms = 0;
	tcp = PR_OpenTCPSocket(PR_AF_INET);
	if (tcp == NULL)
		return fail("socket");
	opt.option = PR_SockOpt_Nonblocking;
	opt.value.non_blocking = !blocking;
	PR_SetSocketOption(tcp, &opt);
	fd = SSL_ImportFD(NULL, tcp);
	if (fd == NULL || SSL_SetURL(fd, host) != SECSuccess ||
	    SSL_OptionSet(fd, SSL_NO_CACHE, no_cache) != SECSuccess ||
	    (tls12 && SSL_VersionRangeSet(fd, &range12) != SECSuccess) ||
	    SSL_ResetHandshake(fd, PR_FALSE) != SECSuccess)
		return fail("SSL setup");
	t0 = PR_IntervalNow();
	if (PR_Connect(fd, addr, blocking ? PR_SecondsToInterval(10) :
	    PR_INTERVAL_NO_WAIT) != PR_SUCCESS &&
	    PR_GetError() != PR_IN_PROGRESS_ERROR) {
		rc = fail("connect");
		goto out;
	}
	for (;;) {
		PRPollDesc pd = { fd, PR_POLL_READ | PR_POLL_WRITE, 0 };
		SECStatus rv;

		if (PR_IntervalToMilliseconds(PR_IntervalNow() - t0) >
		    LIMIT_MS) {
			printf("result: failed TIMEOUT: no outcome after %d ms\n",
			    LIMIT_MS);
			rc = 1;
			break;
		}
		start = call_start();
		rv = SSL_ForceHandshake(fd);
		call_end(start);
		if (rv == SECSuccess) {
			printf("result: ok\n");
			fetch_session(fd);
			if (fetch && fetch_response(fd, 0) == -1)
				rc = fail("fetch");
			break;
		}
		if (PR_GetError() != PR_WOULD_BLOCK_ERROR &&
		    PR_GetError() != PR_IN_PROGRESS_ERROR &&
		    PR_GetError() != PR_NOT_CONNECTED_ERROR) {
			rc = fail("handshake");
			break;
		}
		start = call_start();
		PR_Poll(&pd, 1, PR_MillisecondsToInterval(POLL_MS));
		call_end(start);
		polls++;
	}
out:
	printf("max_call_ms: %u\npolls: %u\ntotal_ms: %u\n", max_call_ms,
	    polls, PR_IntervalToMilliseconds(PR_IntervalNow() - t0));
	PR_Close(fd);
	return rc;
}

int
main(int argc, char **argv)
{
	PRNetAddr addr;
	const char *hosts[MAX_HOSTS];
	char *host;
	int i, nhosts, count = argc >= 6 ? atoi(argv[5]) : 1, rc = 0;

	if (argc < 5 || argc > 10) {
		fprintf(stderr, "usage: nbclient DBDIR HOST[,HOST...] PORT ADDR "
		    "[COUNT [nocache|cache] [fetch] [blocking] [tls12]]\n");
		return 2;
	}
	for (i = 6; i < argc; i++) {
		no_cache |= strcmp(argv[i], "nocache") == 0;
		fetch |= strcmp(argv[i], "fetch") == 0;
		blocking |= strcmp(argv[i], "blocking") == 0;
		tls12 |= strcmp(argv[i], "tls12") == 0;
	}
	for (nhosts = 0, host = strtok(argv[2], ","); host != NULL &&
	    nhosts < MAX_HOSTS; host = strtok(NULL, ","))
		hosts[nhosts++] = host;
	if (nhosts == 0)
		return fail("no host");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (NSS_Init(argv[1]) != SECSuccess || NSS_SetDomesticPolicy() !=
	    SECSuccess)
		return fail("NSS_Init");
	if (PR_StringToNetAddr(argv[4], &addr) != PR_SUCCESS ||
	    PR_InitializeNetAddr(PR_IpAddrNull, (PRUint16)atoi(argv[3]),
	    &addr) != PR_SUCCESS)
		return fail("address");
	for (i = 0; i < count; i++)
		rc |= handshake(hosts[i % nhosts], &addr);
	NSS_Shutdown();
	PR_Cleanup();
	return rc;
}
