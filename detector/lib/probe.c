/*
 * probe.c - one probe as a non-blocking state machine.
 *
 *   CONNECTING -> [SOCKS_METHOD -> SOCKS_AUTH -> SOCKS_CONNECT] -> TLS -> DONE
 *
 * The engine drives many probes from one PR_Poll loop, so nothing here
 * blocks: each step does what it can and returns, and probe_poll_flags()
 * tells the loop what to wait for.  The TLS handshake is NSS's own
 * (TLS 1.2 and 1.3, SNI = host, no session cache so the server must send
 * its certificate).  Our certificate hook copies the chain and any stapled
 * OCSP response, then suspends the handshake (SECWouldBlock) and the probe
 * closes the socket: the handshake never completes and no application data
 * is ever sent through a sphere.
 */
#include "probe.h"

#include <nss.h>
#include <prerror.h>
#include <secerr.h>
#include <prnetdb.h>
#include <ssl.h>
#include <sslproto.h>
#include <sslerr.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certinfo.h"

static char *
vstrdupf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *
vstrdupf(const char *fmt, va_list ap)
{
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) == -1)
		s = NULL;
	return s;
}

static char *
strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = vstrdupf(fmt, ap);
	va_end(ap);
	return s;
}

static unsigned int
elapsed_ms(PRIntervalTime since)
{
	return PR_IntervalToMilliseconds((PRIntervalTime)(PR_IntervalNow() -
	    since));
}

static const char *
stage_name(enum probe_state s, int via_socks)
{
	switch (s) {
	case PROBE_CONNECTING:
		return via_socks ? "connecting to the sphere" :
		    "connecting to the server";
	case PROBE_SOCKS_METHOD: return "SOCKS5 greeting";
	case PROBE_SOCKS_AUTH: return "SOCKS5 authentication";
	case PROBE_SOCKS_CONNECT:
		return "SOCKS5 CONNECT (the sphere resolves the name and "
		    "builds a circuit)";
	case PROBE_TLS: return "TLS handshake";
	default: return "idle";
	}
}

static void
probe_close(struct probe *p)
{
	if (p->fd != NULL) {
		PR_Close(p->fd);
		p->fd = NULL;
	}
	p->path->ms = elapsed_ms(p->start);
	p->state = PROBE_DONE;
}

static void
probe_fail(struct probe *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
probe_fail(struct probe *p, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = vstrdupf(fmt, ap);
	va_end(ap);
	free((char *)p->path->error);
	p->path->error = msg != NULL ? msg : strdupf("out of memory");
	p->path->status = DETECTOR_PATH_FAILED;
	probe_close(p);
}

/* Text for the current NSPR/NSS error, with hints where users need them. */
static void
probe_fail_nspr(struct probe *p, const char *doing)
{
	PRErrorCode code = PR_GetError();
	const char *text = PR_ErrorToString(code, PR_LANGUAGE_I_DEFAULT);
	const char *name = PR_ErrorToName(code);
	const char *hint = "";

	if (code == PR_CONNECT_REFUSED_ERROR)
		hint = p->via_socks ? " (nothing listens at the sphere "
		    "address: is its Tor client running?)" : "";
	if (text == NULL || text[0] == '\0')
		text = "unknown error";
	probe_fail(p, "%s: %s [%s]%s", doing, text, name ? name : "?", hint);
}

void
path_release(struct detector_path *path)
{
	size_t i;

	for (i = 0; i < path->ncerts; i++)
		free((void *)path->certs[i].data);
	free((void *)path->certs);
	free((void *)path->ocsp.data);
	free((void *)path->error);
	free((void *)path->via);
	memset(path, 0, sizeof(*path));
}

static int
copy_der(struct detector_der *dst, const SECItem *src)
{
	unsigned char *d = malloc(src->len ? src->len : 1);

	if (d == NULL)
		return -1;
	memcpy(d, src->data, src->len);
	dst->data = d;
	dst->len = src->len;
	return 0;
}

/*
 * NSS's certificate hook: the moment the server's certificate is known.
 * Copies what we came for and suspends the handshake for good.
 */
static SECStatus
probe_auth_certificate(void *arg, PRFileDesc *fd, PRBool checksig,
    PRBool isserver)
{
	struct probe *p = arg;
	struct detector_der *certs;
	CERTCertList *chain;
	CERTCertListNode *node;
	const SECItemArray *ocsp;
	SSLPreliminaryChannelInfo info;
	char err[256];
	size_t n = 0;

	(void)checksig;
	(void)isserver;
	p->captured = 1;
	chain = SSL_PeerCertificateChain(fd);
	if (chain == NULL) {
		free((char *)p->path->error);
		p->path->error = strdupf("the server sent no certificate");
		goto out;
	}
	certs = calloc(PROBE_MAX_CERTS, sizeof(*certs));
	if (certs == NULL)
		goto out_chain;
	for (node = CERT_LIST_HEAD(chain); !CERT_LIST_END(node, chain) &&
	    n < PROBE_MAX_CERTS; node = CERT_LIST_NEXT(node)) {
		if (copy_der(&certs[n], &node->cert->derCert) == -1)
			break;
		n++;
	}
	p->path->certs = certs;
	p->path->ncerts = n;
	if (n > 0 && certinfo_hash(certs[0].data, certs[0].len,
	    p->path->spki_sha256, p->path->cert_sha256, err,
	    sizeof(err)) == 0) {
		p->path->have_cert = 1;
	} else {
		free((char *)p->path->error);
		p->path->error = strdupf("unusable server certificate: %s",
		    n > 0 ? err : "out of memory");
	}
	ocsp = SSL_PeerStapledOCSPResponses(fd);
	if (ocsp != NULL && ocsp->len > 0 && ocsp->items[0].len > 0)
		(void)copy_der(&p->path->ocsp, &ocsp->items[0]);
	if (SSL_GetPreliminaryChannelInfo(fd, &info, sizeof(info)) ==
	    SECSuccess && (info.valuesSet & ssl_preinfo_version))
		p->path->tls_version = info.protocolVersion;
out_chain:
	CERT_DestroyCertList(chain);
out:
	PORT_SetError(PR_WOULD_BLOCK_ERROR);
	return SECWouldBlock;
}

/* Pushes NSS's SSL layer onto the connected (and tunnelled) socket. */
static void
tls_begin(struct probe *p)
{
	SSLVersionRange range = { SSL_LIBRARY_VERSION_TLS_1_2,
	    SSL_LIBRARY_VERSION_TLS_1_3 };
	PRFileDesc *ssl = SSL_ImportFD(NULL, p->fd);

	if (ssl == NULL) {
		probe_fail_nspr(p, "cannot start TLS");
		return;
	}
	p->fd = ssl;
	if (SSL_OptionSet(ssl, SSL_SECURITY, PR_TRUE) != SECSuccess ||
	    SSL_OptionSet(ssl, SSL_HANDSHAKE_AS_CLIENT, PR_TRUE) != SECSuccess ||
	    SSL_OptionSet(ssl, SSL_NO_CACHE, PR_TRUE) != SECSuccess ||
	    SSL_OptionSet(ssl, SSL_ENABLE_SESSION_TICKETS, PR_FALSE) !=
	    SECSuccess ||
	    SSL_OptionSet(ssl, SSL_ENABLE_FALSE_START, PR_FALSE) != SECSuccess ||
	    SSL_OptionSet(ssl, SSL_ENABLE_0RTT_DATA, PR_FALSE) != SECSuccess ||
	    SSL_OptionSet(ssl, SSL_ENABLE_OCSP_STAPLING, PR_TRUE) !=
	    SECSuccess ||
	    SSL_VersionRangeSet(ssl, &range) != SECSuccess ||
	    SSL_SetURL(ssl, p->host) != SECSuccess ||
	    SSL_AuthCertificateHook(ssl, probe_auth_certificate, p) !=
	    SECSuccess ||
	    SSL_ResetHandshake(ssl, PR_FALSE) != SECSuccess) {
		probe_fail_nspr(p, "cannot configure TLS");
		return;
	}
	p->state = PROBE_TLS;
}

static void
tls_step(struct probe *p)
{
	SECStatus rv = SSL_ForceHandshake(p->fd);

	if (p->captured) {
		if (p->path->have_cert)
			p->path->status = DETECTOR_PATH_SEEN;
		else
			p->path->status = DETECTOR_PATH_FAILED;
		probe_close(p);
		return;
	}
	if (rv == SECSuccess) {
		probe_fail(p, "TLS handshake finished without a certificate "
		    "check");
		return;
	}
	if (PR_GetError() == PR_WOULD_BLOCK_ERROR)
		return;
	probe_fail_nspr(p, "TLS handshake failed");
}

/* Prepares the next SOCKS message and how many reply bytes to expect. */
static void
socks_enter(struct probe *p, enum probe_state next)
{
	char err[256];

	p->state = next;
	p->outoff = 0;
	p->inlen = 0;
	switch (next) {
	case PROBE_SOCKS_METHOD:
		p->outlen = socks5_greeting(p->out, sizeof(p->out));
		p->need = 2;
		break;
	case PROBE_SOCKS_AUTH:
		p->outlen = socks5_auth_request(p->out, sizeof(p->out),
		    p->user, p->pass);
		p->need = 2;
		break;
	case PROBE_SOCKS_CONNECT:
		p->outlen = socks5_connect_request(p->out, sizeof(p->out),
		    p->host, p->port, err, sizeof(err));
		p->need = 5;
		if (p->outlen == 0)
			probe_fail(p, "cannot build SOCKS5 request: %s", err);
		break;
	default:
		break;
	}
}

/* Sends what is pending, reads exactly what is needed, parses, moves on. */
static void
socks_step(struct probe *p)
{
	char err[256];
	enum socks5_status st = SOCKS5_ERROR;
	int method = -1, rep = -1;
	PRInt32 n;

	for (;;) {
		if (p->outoff < p->outlen) {
			n = PR_Send(p->fd, p->out + p->outoff,
			    (PRInt32)(p->outlen - p->outoff), 0,
			    PR_INTERVAL_NO_WAIT);
			if (n < 0) {
				if (PR_GetError() != PR_WOULD_BLOCK_ERROR)
					probe_fail_nspr(p, "SOCKS5 send failed");
				return;
			}
			p->outoff += (size_t)n;
			continue;
		}
		if (p->inlen < p->need) {
			n = PR_Recv(p->fd, p->in + p->inlen,
			    (PRInt32)(p->need - p->inlen), 0,
			    PR_INTERVAL_NO_WAIT);
			if (n < 0) {
				if (PR_GetError() != PR_WOULD_BLOCK_ERROR)
					probe_fail_nspr(p, stage_name(p->state,
					    1));
				return;
			}
			if (n == 0) {
				probe_fail(p, "the sphere closed the connection "
				    "during the %s (after %zu reply bytes)",
				    stage_name(p->state, 1), p->inlen);
				return;
			}
			p->inlen += (size_t)n;
			if (p->inlen < p->need)
				continue;
		}
		switch (p->state) {
		case PROBE_SOCKS_METHOD:
			st = socks5_parse_method(p->in, p->inlen, &p->need,
			    &method, err, sizeof(err));
			break;
		case PROBE_SOCKS_AUTH:
			st = socks5_parse_auth_reply(p->in, p->inlen, &p->need,
			    err, sizeof(err));
			break;
		case PROBE_SOCKS_CONNECT:
			st = socks5_parse_reply(p->in, p->inlen, &p->need, &rep,
			    err, sizeof(err));
			break;
		default:
			return;
		}
		if (st == SOCKS5_NEED_MORE)
			continue;
		if (st == SOCKS5_ERROR) {
			probe_fail(p, "%s", err);
			return;
		}
		if (p->state == PROBE_SOCKS_METHOD &&
		    method == SOCKS5_METHOD_USERPASS)
			socks_enter(p, PROBE_SOCKS_AUTH);
		else if (p->state != PROBE_SOCKS_CONNECT)
			socks_enter(p, PROBE_SOCKS_CONNECT);
		else {
			tls_begin(p);
			if (p->state == PROBE_TLS)
				tls_step(p);
			return;
		}
		if (p->state == PROBE_DONE)
			return;
	}
}

static void
connected(struct probe *p)
{
	if (p->via_socks) {
		socks_enter(p, PROBE_SOCKS_METHOD);
		socks_step(p);
	} else {
		tls_begin(p);
		if (p->state == PROBE_TLS)
			tls_step(p);
	}
}

void
probe_start(struct probe *p, const PRNetAddr *addr, const char *via)
{
	PRSocketOptionData opt;

	memset(p->path, 0, sizeof(*p->path));
	p->path->via = strdupf("%s", via);
	p->path->status = DETECTOR_PATH_FAILED;
	p->state = PROBE_CONNECTING;
	p->fd = PR_OpenTCPSocket(PR_NetAddrFamily(addr));
	if (p->fd == NULL) {
		probe_fail_nspr(p, "cannot create a socket");
		return;
	}
	opt.option = PR_SockOpt_Nonblocking;
	opt.value.non_blocking = PR_TRUE;
	if (PR_SetSocketOption(p->fd, &opt) != PR_SUCCESS) {
		probe_fail_nspr(p, "cannot make the socket non-blocking");
		return;
	}
	opt.option = PR_SockOpt_NoDelay;
	opt.value.no_delay = PR_TRUE;
	(void)PR_SetSocketOption(p->fd, &opt);
	if (PR_Connect(p->fd, addr, PR_INTERVAL_NO_WAIT) == PR_SUCCESS) {
		connected(p);
		return;
	}
	if (PR_GetError() != PR_IN_PROGRESS_ERROR)
		probe_fail_nspr(p, stage_name(PROBE_CONNECTING, p->via_socks));
}

PRInt16
probe_poll_flags(const struct probe *p)
{
	switch (p->state) {
	case PROBE_CONNECTING:
		return PR_POLL_WRITE | PR_POLL_EXCEPT;
	case PROBE_SOCKS_METHOD:
	case PROBE_SOCKS_AUTH:
	case PROBE_SOCKS_CONNECT:
		return p->outoff < p->outlen ? PR_POLL_WRITE : PR_POLL_READ;
	case PROBE_TLS:
		return PR_POLL_READ;    /* NSS's poll method adds WRITE */
	default:
		return 0;
	}
}

void
probe_advance(struct probe *p, PRInt16 out_flags)
{
	switch (p->state) {
	case PROBE_CONNECTING:
		if (PR_ConnectContinue(p->fd, out_flags) == PR_SUCCESS)
			connected(p);
		else if (PR_GetError() != PR_IN_PROGRESS_ERROR)
			probe_fail_nspr(p, stage_name(PROBE_CONNECTING,
			    p->via_socks));
		break;
	case PROBE_SOCKS_METHOD:
	case PROBE_SOCKS_AUTH:
	case PROBE_SOCKS_CONNECT:
		socks_step(p);
		break;
	case PROBE_TLS:
		tls_step(p);
		break;
	default:
		break;
	}
}

void
probe_abandon(struct probe *p, enum detector_path_status status,
    const char *why)
{
	if (p->state == PROBE_DONE)
		return;
	free((char *)p->path->error);
	p->path->error = strdupf("%s during the %s", why,
	    stage_name(p->state, p->via_socks));
	probe_close(p);
	p->path->status = status;
}
