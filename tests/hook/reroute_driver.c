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
 * --ops block|async|cancel|inside: the same through the NSS integration's entry
 * points instead (detector_nss_v1()->check, then detector_nss_reroute_v1():
 * open, verify, release), configured by $DETECTOR_CONFIG as libssl's
 * would be.  block: open() on this thread; async: open() pending, done()
 * from another thread; cancel: release() while open() is pending, which
 * must return at once and never call done() (prints "cancelled_ms: N");
 * inside: done() itself calls release() (prints "done_calls: 1").
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

#include "detector_nss.h"

#include <pthread.h>

static struct {
	struct detector *ctx;
	struct detector_result *res;
	char why[1024];
	int refused;
	/* --ops */
	const struct detector_nss_reroute_ops *ops;
	void *handle;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done_calls, done_error, done_fd;
	int release_inside;             /* --ops inside */
	struct detector_path *path;
} drv = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void
reroute_done(void *arg, int error, int fd)
{
	(void)arg;
	/* The caller holds mu across open(), as libssl holds the socket's
	 * locks: the handle is known here. */
	pthread_mutex_lock(&drv.mu);
	if (drv.release_inside) {
		/* An application callback that closes its socket from within
		 * the handshake: release() from inside done(). */
		drv.ops->release(drv.handle);
		drv.handle = NULL;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	drv.done_calls++;
	drv.done_error = error;
	drv.done_fd = fd;
	pthread_cond_broadcast(&drv.cv);
	pthread_mutex_unlock(&drv.mu);
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* The NSS integration's way: check() asks for a reroute (it refuses with
 * DETECTOR_ERROR_REROUTE, since this process looked the reroute entry up
 * and on_mitm = reroute), open() gives the descriptor.
 * Returns the descriptor, or -1 after printing why (exit code in *rc). */
static void wait_file(const char *path);

static int
ops_reroute(const char *mode, const char *host, unsigned int port,
    const struct detector_der *der, const char *pause, int *rc)
{
	const struct detector_nss_ops *v1 = detector_nss_v1();
	struct timespec until;
	void *pending = NULL;
	long t0;
	int error = 0, fd = -1, r;

	*rc = 1;
	drv.ops = detector_nss_reroute_v1();
	if (v1 == NULL || drv.ops == NULL || drv.ops->version < 1) {
		fprintf(stderr, "no NSS ops (enabled = no?)\n");
		return -1;
	}
	r = v1->check(host, port, der->data, (unsigned int)der->len, 1, NULL,
	    NULL, &pending, &error);
	printf("check_error: %d\n", error);
	if (r != DETECTOR_NSS_DECIDED || error != DETECTOR_ERROR_REROUTE) {
		printf("REFUSED: the check did not ask for a reroute\n");
		*rc = 2;
		return -1;
	}
	if (pause != NULL)
		wait_file(pause);
	drv.release_inside = strcmp(mode, "inside") == 0;
	pthread_mutex_lock(&drv.mu);
	r = drv.ops->open(host, port, der->data, (unsigned int)der->len,
	    strcmp(mode, "block") == 0, reroute_done, NULL, &drv.handle, &fd,
	    &error);
	pthread_mutex_unlock(&drv.mu);
	if (r == DETECTOR_NSS_DECIDED) {
		if (error != 0) {
			printf("REFUSED: open() refused (%d)\n", error);
			*rc = 2;
			return -1;
		}
		return fd;
	}
	if (strcmp(mode, "cancel") == 0) {
		t0 = now_ms();
		drv.ops->release(drv.handle);
		drv.handle = NULL;
		printf("cancelled_ms: %ld\n", now_ms() - t0);
		usleep(300000);
		printf("done_calls: %d\n", drv.done_calls);
		*rc = drv.done_calls == 0 ? 0 : 1;
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 60;
	pthread_mutex_lock(&drv.mu);
	while (drv.done_calls == 0 &&
	    pthread_cond_timedwait(&drv.cv, &drv.mu, &until) == 0)
		;
	pthread_mutex_unlock(&drv.mu);
	if (drv.release_inside) {
		usleep(300000);         /* the opener frees the handle */
		printf("done_calls: %d\n", drv.done_calls);
		*rc = drv.done_calls == 1 && drv.done_error == 0 ? 0 : 1;
		return -1;
	}
	if (drv.done_calls != 1 || drv.done_error != 0) {
		printf("REFUSED: done(%d, %d) called %d times\n", drv.done_error,
		    drv.done_fd, drv.done_calls);
		*rc = 2;
		return -1;
	}
	return drv.done_fd;
}

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
	if (drv.ops != NULL) {
		rc = drv.ops->verify(drv.handle, cert->derCert.data,
		    cert->derCert.len) == 0 ? 0 : -1;
		if (rc == -1)
			snprintf(drv.why, sizeof(drv.why), "verify() refused "
			    "the rerouted key");
	} else
		rc = detector_reroute_verify(drv.ctx, drv.res,
		    cert->derCert.data, cert->derCert.len);
	CERT_DestroyCertificate(cert);
	if (rc == -1) {
		if (drv.ops == NULL)
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
	if (drv.ops != NULL)
		printf("policy: %s\n", code == 0 ? "rerouted" : "refused");
	else
		printf("policy: %s\n", drv.res ?
		    detector_outcome_name(drv.res->outcome) : "none");
	if (drv.ops != NULL && drv.handle != NULL)
		drv.ops->release(drv.handle);
	drv.handle = NULL;
	detector_result_free(drv.res);
	drv.res = NULL;
	detector_path_free(drv.path);
	drv.path = NULL;
	detector_free(drv.ctx);
	drv.ctx = NULL;
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
	const char *ops = NULL;
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
		else if (strcmp(a, "--ops") == 0)
			ops = v;
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
	    detector_config_set_on_mitm(cfg, DETECTOR_MITM_REROUTE) == -1 ||
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
	drv.path = path;
	if (ops != NULL) {
		int rc;

		if ((fd = ops_reroute(ops, host, port, &path->certs[0], pause,
		    &rc)) < 0)
			return done(rc);
		goto handshake;
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
handshake:
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
	printf("REROUTED %s:%u via %s\n", host, port, drv.res ?
	    drv.res->rerouted_via : "(see the log)");
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
	return done(0);
usage:
	fprintf(stderr, "usage: reroute_driver --spheres LIST --host H --port P "
	    "--direct ADDR [--quorum K] [--starttls PROTO] [--deadline MS] "
	    "[--reroute-deadline MS] [--again] [--pause-file PATH]\n");
	return 1;
}
