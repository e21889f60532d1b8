/*
 * reroute_driver - libdetector's reroute entry points end to end, without
 * the NSS patch: what the patched libssl will do, done by hand.
 *
 *   1. the direct path's certificate (detector_fetch() to --direct ADDR)
 *   2. detector_check() through the spheres (--again: twice, the second
 *      one answered from memory with no probe)
 *   3. detector_reroute(): a fresh tunnel through a sphere that saw the
 *      quorum key, the STARTTLS preamble spoken
 *   4. a TLS handshake from the ClientHello over that descriptor, with NSS;
 *      the certificate callback calls detector_reroute_verify() and fails
 *      the handshake when the key is not the quorum key
 *   5. the application's first bytes (an HTTP request, or SMTP's EHLO after
 *      STARTTLS) and the server's answer, printed
 *
 * usage: reroute_driver --spheres LIST --host H --port P --direct ADDR
 *          [--quorum K] [--starttls PROTO] [--deadline MS]
 *          [--reroute-deadline MS] [--again] [--pause-file PATH]
 * --pause-file: after the check, wait (at most 10 s) until PATH exists, so
 * the test can change a sphere between the check and the reroute.
 *
 * Prints "verdict: V", "cached: 0|1", then "REROUTED host:port via S" and
 * "RESPONSE: ..." (exit 0), or "REFUSED: why" (exit 2: no reroute; 3: the
 * rerouted key was refused); "policy: P" last.  Exit 1 on setup errors.
 */
#include <nss.h>
#include <prerror.h>
#include <prio.h>
#include <private/pprio.h>
#include <ssl.h>
#include <sslerr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "detector.h"

static struct {
	struct detector *ctx;
	struct detector_result *res;
	char why[1024];
	int refused;
} drv;

static SECStatus
auth_certificate(void *arg, PRFileDesc *fd, PRBool checksig, PRBool isserver)
{
	CERTCertificate *cert = SSL_PeerCertificate(fd);
	int rc;

	(void)arg;
	(void)checksig;
	(void)isserver;
	if (cert == NULL) {
		snprintf(drv.why, sizeof(drv.why), "no certificate");
		drv.refused = 1;
		PORT_SetError(SSL_ERROR_BAD_CERTIFICATE);
		return SECFailure;
	}
	/* The application's own check (chain, name) would run here; the
	 * test is about DetecTor's, which comes after it. */
	rc = detector_reroute_verify(drv.ctx, drv.res, cert->derCert.data,
	    cert->derCert.len);
	CERT_DestroyCertificate(cert);
	if (rc == -1) {
		snprintf(drv.why, sizeof(drv.why), "%s",
		    detector_error(drv.ctx));
		drv.refused = 1;
		PORT_SetError(SSL_ERROR_BAD_CERTIFICATE);
		return SECFailure;
	}
	return SECSuccess;
}

static int
done(int code)
{
	printf("policy: %s\n", drv.res ?
	    detector_policy_name(drv.res->policy) : "none");
	return code;
}

static void
wait_file(const char *path)
{
	int i;

	for (i = 0; i < 1000 && access(path, F_OK) != 0; i++)
		usleep(10000);
}

int
main(int argc, char **argv)
{
	const char *spheres = NULL, *host = NULL, *direct = NULL, *pause = NULL;
	unsigned int port = 0, quorum = 4, deadline = 10000, rdeadline = 0;
	enum detector_starttls proto = DETECTOR_STARTTLS_NONE;
	struct detector_config *cfg;
	struct detector_path *path = NULL;
	PRFileDesc *tcp, *ssl;
	char buf[4096];
	int i, again = 0, fd = -1, n, have = 0;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--again") == 0) {
			again = 1;
			continue;
		}
		if (v == NULL)
			goto usage;
		i++;
		if (strcmp(a, "--spheres") == 0)
			spheres = v;
		else if (strcmp(a, "--host") == 0)
			host = v;
		else if (strcmp(a, "--port") == 0)
			port = (unsigned int)atoi(v);
		else if (strcmp(a, "--direct") == 0)
			direct = v;
		else if (strcmp(a, "--quorum") == 0)
			quorum = (unsigned int)atoi(v);
		else if (strcmp(a, "--deadline") == 0)
			deadline = (unsigned int)atoi(v);
		else if (strcmp(a, "--reroute-deadline") == 0)
			rdeadline = (unsigned int)atoi(v);
		else if (strcmp(a, "--pause-file") == 0)
			pause = v;
		else if (strcmp(a, "--starttls") == 0) {
			if (detector_starttls_parse(v, &proto) == -1)
				goto usage;
		} else
			goto usage;
	}
	if (spheres == NULL || host == NULL || port == 0 || direct == NULL)
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (NSS_NoDB_Init(NULL) != SECSuccess ||
	    NSS_SetDomesticPolicy() != SECSuccess) {
		fprintf(stderr, "NSS_NoDB_Init failed\n");
		return 1;
	}
	cfg = detector_config_new();
	drv.ctx = detector_new();
	if (cfg == NULL || drv.ctx == NULL ||
	    detector_config_set_spheres(cfg, spheres) == -1 ||
	    detector_config_set_quorum(cfg, quorum) == -1 ||
	    detector_config_set_deadline(cfg, deadline) == -1 ||
	    detector_config_set_probe_timeout(cfg, deadline) == -1 ||
	    detector_config_set_cache(cfg, "off") == -1 ||
	    detector_configure(drv.ctx, cfg) == -1 ||
	    detector_set_starttls(drv.ctx, proto) == -1) {
		fprintf(stderr, "setup: %s / %s\n", cfg ?
		    detector_config_error(cfg) : "", drv.ctx ?
		    detector_error(drv.ctx) : "");
		return 1;
	}
	detector_config_free(cfg);
	if (detector_fetch(drv.ctx, host, port, direct, &path) == -1 ||
	    path->ncerts == 0) {
		fprintf(stderr, "direct fetch failed: %s\n", path && path->error ?
		    path->error : detector_error(drv.ctx));
		return 1;
	}
	for (i = 0; i < 1 + again; i++) {
		detector_result_free(drv.res);
		drv.res = NULL;
		if (detector_check(drv.ctx, host, port, path->certs[0].data,
		    path->certs[0].len, &drv.res) == -1) {
			fprintf(stderr, "check: %s\n", detector_error(drv.ctx));
			return 1;
		}
		printf("verdict: %s\ncached: %d\n",
		    detector_verdict_name(drv.res->verdict), drv.res->cached);
	}
	if (pause != NULL)
		wait_file(pause);
	if (detector_reroute(drv.ctx, host, port, path->certs[0].data,
	    path->certs[0].len, drv.res, rdeadline, &fd) == -1) {
		printf("REFUSED: %s\n", detector_error(drv.ctx));
		return done(2);
	}
	/* What the patch does with SSL_ResetHandshake on the application's
	 * socket, done here on a socket of our own. */
	if ((tcp = PR_ImportTCPSocket(fd)) == NULL ||
	    (ssl = SSL_ImportFD(NULL, tcp)) == NULL ||
	    SSL_OptionSet(ssl, SSL_SECURITY, PR_TRUE) != SECSuccess ||
	    SSL_OptionSet(ssl, SSL_HANDSHAKE_AS_CLIENT, PR_TRUE) != SECSuccess ||
	    SSL_OptionSet(ssl, SSL_NO_CACHE, PR_TRUE) != SECSuccess ||
	    SSL_SetURL(ssl, host) != SECSuccess ||
	    SSL_AuthCertificateHook(ssl, auth_certificate, NULL) !=
	    SECSuccess || SSL_ResetHandshake(ssl, PR_FALSE) != SECSuccess) {
		fprintf(stderr, "TLS setup: %s\n",
		    PR_ErrorToName(PR_GetError()));
		return 1;
	}
	if (SSL_ForceHandshake(ssl) != SECSuccess) {
		printf("REFUSED: %s\n", drv.refused ? drv.why :
		    PR_ErrorToName(PR_GetError()));
		PR_Close(ssl);
		return done(drv.refused ? 3 : 2);
	}
	printf("REROUTED %s:%u via %s\n", host, port, drv.res->rerouted_via);
	if (proto == DETECTOR_STARTTLS_SMTP)
		n = snprintf(buf, sizeof(buf), "EHLO driver.test\r\n");
	else
		n = snprintf(buf, sizeof(buf), "GET / HTTP/1.0\r\n\r\n");
	if (PR_Write(ssl, buf, n) != n) {
		printf("REFUSED: write: %s\n", PR_ErrorToName(PR_GetError()));
		PR_Close(ssl);
		return done(2);
	}
	while (have < (int)sizeof(buf) - 1 && (n = PR_Recv(ssl, buf + have,
	    (PRInt32)(sizeof(buf) - 1 - (size_t)have), 0,
	    PR_SecondsToInterval(5))) > 0) {
		have += n;
		if (proto == DETECTOR_STARTTLS_SMTP && have >= 2 &&
		    memcmp(buf + have - 2, "\r\n", 2) == 0)
			break;
	}
	buf[have] = '\0';
	for (i = 0; i < have; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	printf("RESPONSE: %s\n", buf);
	PR_Close(ssl);
	n = done(0);
	detector_result_free(drv.res);
	detector_path_free(path);
	detector_free(drv.ctx);
	return n;
usage:
	fprintf(stderr, "usage: reroute_driver --spheres LIST --host H --port P "
	    "--direct ADDR [--quorum K] [--starttls PROTO] [--deadline MS] "
	    "[--reroute-deadline MS] [--again] [--pause-file PATH]\n");
	return 1;
}
