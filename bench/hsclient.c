/*
 * hsclient - an unmodified NSS client that makes full TLS handshakes, one
 * after the other, as fast as it can: the handshake-rate yardstick.
 *
 * usage: hsclient DBDIR HOST ADDR PORT COUNT [WARMUP]
 *
 * Each connection is a blocking socket with SSL_NO_CACHE (no resumption:
 * every handshake carries and verifies the server's certificate with NSS's
 * own certificate check against DBDIR), then closed.  WARMUP handshakes
 * (default 20) come first and are not timed.  Like tests/hook/nbclient.c it
 * links only the system NSS and contains no DetecTor code: run under
 * detector-run it gets the enhanced libssl3.so and libdetector.
 *
 * prints: "handshakes N failed F seconds S rate R"
 * exit: 0 if every handshake succeeded, 1 otherwise (the first error is
 * printed to stderr).
 */
#include <nss.h>
#include <prerror.h>
#include <prinit.h>
#include <prio.h>
#include <prnetdb.h>
#include <ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IO_TIMEOUT_S 30

static int reported;

static void
report(const char *what)
{
	PRErrorCode e = PR_GetError();

	if (reported++)
		return;
	fprintf(stderr, "hsclient: %s: %s (%s)\n", what,
	    PR_ErrorToName(e) ? PR_ErrorToName(e) : "?",
	    PR_ErrorToString(e, PR_LANGUAGE_I_DEFAULT));
}

/* One full handshake; 0 on success. */
static int
handshake(const char *host, const PRNetAddr *addr)
{
	PRIntervalTime limit = PR_SecondsToInterval(IO_TIMEOUT_S);
	PRFileDesc *tcp, *fd;
	int rc = -1;

	if ((tcp = PR_OpenTCPSocket(PR_AF_INET)) == NULL) {
		report("socket");
		return -1;
	}
	fd = SSL_ImportFD(NULL, tcp);
	if (fd == NULL) {
		report("SSL_ImportFD");
		PR_Close(tcp);
		return -1;
	}
	if (SSL_SetURL(fd, host) != SECSuccess ||
	    SSL_OptionSet(fd, SSL_NO_CACHE, PR_TRUE) != SECSuccess ||
	    SSL_ResetHandshake(fd, PR_FALSE) != SECSuccess)
		report("SSL setup");
	else if (PR_Connect(fd, addr, limit) != PR_SUCCESS)
		report("connect");
	else if (SSL_ForceHandshake(fd) != SECSuccess)
		report("handshake");
	else
		rc = 0;
	PR_Close(fd);
	return rc;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	PRNetAddr addr;
	int i, count, warmup = argc == 7 ? atoi(argv[6]) : 20, failed = 0;
	double t0, t;

	if (argc < 6 || argc > 7 || (count = atoi(argv[5])) < 1 ||
	    warmup < 0) {
		fprintf(stderr, "usage: hsclient DBDIR HOST ADDR PORT COUNT "
		    "[WARMUP]\n");
		return 2;
	}
	if (NSS_Init(argv[1]) != SECSuccess ||
	    NSS_SetDomesticPolicy() != SECSuccess) {
		report("NSS_Init");
		return 2;
	}
	if (PR_StringToNetAddr(argv[3], &addr) != PR_SUCCESS ||
	    PR_InitializeNetAddr(PR_IpAddrNull, (PRUint16)atoi(argv[4]),
	    &addr) != PR_SUCCESS) {
		report("address");
		return 2;
	}
	for (i = 0; i < warmup; i++)
		failed += handshake(argv[2], &addr) != 0;
	t0 = now_s();
	for (i = 0; i < count; i++)
		failed += handshake(argv[2], &addr) != 0;
	t = now_s() - t0;
	printf("handshakes %d failed %d seconds %.6f rate %.3f\n", count,
	    failed, t, (double)count / t);
	NSS_Shutdown();
	PR_Cleanup();
	return failed ? 1 : 0;
}
