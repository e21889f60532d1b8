/*
 * probe.c - one probe as a non-blocking state machine.
 *
 *   CONNECTING -> [SOCKS_METHOD -> SOCKS_AUTH -> SOCKS_CONNECT]
 *              -> [STARTTLS] -> TLS -> DONE
 *
 * The engine drives many probes from one PR_Poll loop, so nothing here
 * blocks: each step does what it can and returns, and probe_poll_flags()
 * tells the loop what to wait for.  The TLS handshake is NSS's own
 * (TLS 1.2 and 1.3, SNI = host, no session cache so the server must send
 * its certificate).  Our certificate hook copies the chain and any stapled
 * OCSP response, then suspends the handshake (SECWouldBlock) and the probe
 * closes the socket: the handshake never completes and no application data
 * is ever sent through a sphere.
 *
 * The STARTTLS state runs the plaintext preamble of starttls.c (SMTP, IMAP,
 * POP3, XMPP, LDAP) over the same socket: it sends each command, collects
 * the server's reply into a bounded buffer and lets the pure state machine
 * judge it.  Only when the server has said "go ahead" with nothing after it
 * is NSS pushed onto the socket.
 */
#include "probe.h"

#include <cert.h>
#include <keyhi.h>
#include <secoid.h>
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

/* The formatted text in a new string, or NULL (out of memory). */
static char *
strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n == -1 ? NULL : s;
}

static unsigned int
elapsed_ms(PRIntervalTime since)
{
	return PR_IntervalToMilliseconds((PRIntervalTime)(PR_IntervalNow() -
	    since));
}

static const char *
stage_name(enum probe_state s, int via_socks, enum detector_starttls proto)
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
	case PROBE_STARTTLS: return starttls_stage(proto);
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
	free(p->stbuf);
	p->stbuf = NULL;
	p->path->ms = elapsed_ms(p->start);
	p->state = PROBE_DONE;
}

/* Ends the probe as failed, saying msg (strdupf()'s; NULL: out of memory),
 * which the path takes. */
static void
probe_fail(struct probe *p, char *msg)
{
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
	probe_fail(p, strdupf("%s: %s [%s]%s", doing, text, name ? name : "?",
	    hint));
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
	if (n > 0 && detector_cert_hashes(certs[0].data, certs[0].len,
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

/*
 * Offers only the signature schemes (and, for TLS 1.2, the cipher suites)
 * that a key of type kt can serve, so that a server holding certificates of
 * several key types shows this probe the one the direct path saw.
 */
static SECStatus
restrict_key_type(PRFileDesc *ssl, enum probe_keytype kt)
{
	static const SSLSignatureScheme rsa[] = {
		ssl_sig_rsa_pss_rsae_sha256, ssl_sig_rsa_pss_rsae_sha384,
		ssl_sig_rsa_pss_rsae_sha512, ssl_sig_rsa_pkcs1_sha256,
		ssl_sig_rsa_pkcs1_sha384, ssl_sig_rsa_pkcs1_sha512,
		ssl_sig_rsa_pkcs1_sha1,
	};
	static const SSLSignatureScheme ec[] = {
		ssl_sig_ecdsa_secp256r1_sha256, ssl_sig_ecdsa_secp384r1_sha384,
		ssl_sig_ecdsa_secp521r1_sha512, ssl_sig_ecdsa_sha1,
	};
	const SSLSignatureScheme *schemes = ec;
	unsigned int n = sizeof(ec) / sizeof(ec[0]);
	const PRUint16 *suites = SSL_GetImplementedCiphers();
	PRUint16 i, nsuites = SSL_GetNumImplementedCiphers();
	SSLCipherSuiteInfo info;

	switch (kt) {
	case PROBE_KEY_ANY:
		return SECSuccess;
	case PROBE_KEY_RSA:
		schemes = rsa;
		n = sizeof(rsa) / sizeof(rsa[0]);
		break;
	case PROBE_KEY_EC_P256:
	case PROBE_KEY_EC_P384:
	case PROBE_KEY_EC_P521:
		/* TLS 1.3 ties each ECDSA scheme to one curve. */
		schemes = &ec[kt - PROBE_KEY_EC_P256];
		n = 1;
		break;
	case PROBE_KEY_EC:
		break;
	}
	if (SSL_SignatureSchemePrefSet(ssl, schemes, n) != SECSuccess)
		return SECFailure;
	/* TLS 1.2 picks the certificate with the cipher suite too. */
	for (i = 0; i < nsuites; i++) {
		int keep;

		if (SSL_GetCipherSuiteInfo(suites[i], &info, sizeof(info)) !=
		    SECSuccess)
			continue;
		if (info.authType == ssl_auth_tls13_any)
			continue;
		keep = kt == PROBE_KEY_RSA ?
		    info.authType == ssl_auth_rsa_sign ||
		    info.authType == ssl_auth_rsa_decrypt :
		    info.authType == ssl_auth_ecdsa;
		if (!keep && SSL_CipherPrefSet(ssl, suites[i], PR_FALSE) !=
		    SECSuccess)
			return SECFailure;
	}
	return SECSuccess;
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
	    restrict_key_type(ssl, p->keytype) != SECSuccess ||
	    SSL_SetURL(ssl, p->host) != SECSuccess ||
	    SSL_AuthCertificateHook(ssl, probe_auth_certificate, p) !=
	    SECSuccess ||
	    SSL_ResetHandshake(ssl, PR_FALSE) != SECSuccess) {
		probe_fail_nspr(p, "cannot configure TLS");
		return;
	}
	p->state = PROBE_TLS;
}

/*
 * A probe steered to the direct path's key type failed its handshake: the
 * server may have no key of that type at all (a MITM with an RSA key in
 * front of an ECDSA-only server).  That is exactly what must show as a
 * mismatch, not a failure, so the probe starts over, once, offering every
 * signature scheme, within the same deadline.
 */
static void
probe_retry_any(struct probe *p)
{
	char *via = strdupf("%s", p->path->via ? p->path->via : "?");

	if (p->fd != NULL) {
		PR_Close(p->fd);
		p->fd = NULL;
	}
	free(p->stbuf);
	p->stbuf = NULL;
	path_release(p->path);
	p->keytype = PROBE_KEY_ANY;
	p->captured = 0;
	p->outlen = p->outoff = p->inlen = p->need = p->stlen = 0;
	probe_start(p, &p->addr, via != NULL ? via : "?");
	free(via);
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
		probe_fail(p, strdupf("TLS handshake finished without a "
		    "certificate check"));
		return;
	}
	if (PR_GetError() == PR_WOULD_BLOCK_ERROR)
		return;
	if (p->keytype != PROBE_KEY_ANY) {
		probe_retry_any(p);
		return;
	}
	probe_fail_nspr(p, "TLS handshake failed");
}

_Static_assert(sizeof(((struct probe *)0)->out) >= STARTTLS_OUT_MAX,
    "the probe's output buffer holds any STARTTLS command");

/* Acts on one verdict of the preamble machine over the reply so far.
 * Returns 1 to keep going, 0 when the probe moved on (TLS) or ended. */
static int
starttls_feed(struct probe *p)
{
	char err[512];
	size_t outlen = 0;

	switch (starttls_step(&p->st, p->stbuf, p->stlen, p->out,
	    sizeof(p->out), &outlen, err, sizeof(err))) {
	case STARTTLS_NEED_MORE:
		return 1;
	case STARTTLS_SEND:
		p->outlen = outlen;
		p->outoff = 0;
		p->stlen = 0;
		return 1;
	case STARTTLS_READY:
		free(p->stbuf);
		p->stbuf = NULL;
		p->outlen = p->outoff = 0;
		tls_begin(p);
		if (p->state == PROBE_TLS)
			tls_step(p);
		return 0;
	case STARTTLS_ERROR:
	default:
		probe_fail(p, strdupf("%s", err));
		return 0;
	}
}

/* Sends what is left of p->out.  Returns 1 once all of it is sent, 0 when
 * the socket would block (try again when writable) or the send failed (the
 * probe is then over, the failure recorded as `doing`). */
static int
send_pending(struct probe *p, const char *doing)
{
	PRInt32 n;

	while (p->outoff < p->outlen) {
		n = PR_Send(p->fd, p->out + p->outoff,
		    (PRInt32)(p->outlen - p->outoff), 0, PR_INTERVAL_NO_WAIT);
		if (n < 0) {
			if (PR_GetError() != PR_WOULD_BLOCK_ERROR)
				probe_fail_nspr(p, doing);
			return 0;
		}
		p->outoff += (size_t)n;
	}
	return 1;
}

/* Sends the pending command, or reads what the server has said so far. */
static void
starttls_run(struct probe *p)
{
	char q[256];
	PRInt32 n;
	size_t i;

	for (;;) {
		if (!send_pending(p, starttls_stage(p->starttls)))
			return;
		/* The machine fails a reply that fills the buffer; this is
		 * only a backstop. */
		if (p->stlen >= STARTTLS_REPLY_MAX) {
			probe_fail(p, strdupf("the server's reply in the %s "
			    "exceeds %d bytes", starttls_stage(p->starttls),
			    STARTTLS_REPLY_MAX));
			return;
		}
		n = PR_Recv(p->fd, p->stbuf + p->stlen,
		    (PRInt32)(STARTTLS_REPLY_MAX - p->stlen), 0,
		    PR_INTERVAL_NO_WAIT);
		if (n < 0) {
			if (PR_GetError() != PR_WOULD_BLOCK_ERROR)
				probe_fail_nspr(p, starttls_stage(p->starttls));
			return;
		}
		if (n == 0) {
			for (i = 0; i < p->stlen && i < 80; i++)
				q[i] = p->stbuf[i] >= 0x20 && p->stbuf[i] < 0x7f ?
				    (char)p->stbuf[i] : '.';
			q[i] = '\0';
			probe_fail(p, strdupf("the connection was closed "
			    "during the %s (%zu bytes of the server's reply"
			    "%s%s%s)",
			    starttls_stage(p->starttls), p->stlen,
			    p->stlen ? ": '" : "", q, p->stlen ? "'" : ""));
			return;
		}
		p->stlen += (size_t)n;
		if (!starttls_feed(p))
			return;
	}
}

/* The byte stream to the server is open (directly or through the sphere):
 * speak the preamble, if any, then TLS. */
static void
tunnel_ready(struct probe *p)
{
	char err[512];

	if (p->starttls == DETECTOR_STARTTLS_NONE) {
		tls_begin(p);
		if (p->state == PROBE_TLS)
			tls_step(p);
		return;
	}
	if (starttls_init(&p->st, p->starttls, p->host, err,
	    sizeof(err)) == -1) {
		probe_fail(p, strdupf("%s", err));
		return;
	}
	if ((p->stbuf = malloc(STARTTLS_REPLY_MAX)) == NULL) {
		probe_fail(p, strdupf("out of memory"));
		return;
	}
	p->state = PROBE_STARTTLS;
	p->stlen = 0;
	p->outlen = p->outoff = 0;
	/* XMPP and LDAP speak first. */
	if (starttls_feed(p))
		starttls_run(p);
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
			probe_fail(p, strdupf("cannot build SOCKS5 request: %s",
			    err));
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
		if (!send_pending(p, "SOCKS5 send failed"))
			return;
		if (p->inlen < p->need) {
			n = PR_Recv(p->fd, p->in + p->inlen,
			    (PRInt32)(p->need - p->inlen), 0,
			    PR_INTERVAL_NO_WAIT);
			if (n < 0) {
				if (PR_GetError() != PR_WOULD_BLOCK_ERROR)
					probe_fail_nspr(p, stage_name(p->state,
					    1, p->starttls));
				return;
			}
			if (n == 0) {
				probe_fail(p, strdupf("the sphere closed the "
				    "connection during the %s (after %zu reply "
				    "bytes)",
				    stage_name(p->state, 1, p->starttls),
				    p->inlen));
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
			probe_fail(p, strdupf("%s", err));
			return;
		}
		if (p->state == PROBE_SOCKS_METHOD &&
		    method == SOCKS5_METHOD_USERPASS)
			socks_enter(p, PROBE_SOCKS_AUTH);
		else if (p->state != PROBE_SOCKS_CONNECT)
			socks_enter(p, PROBE_SOCKS_CONNECT);
		else {
			tunnel_ready(p);
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
	} else
		tunnel_ready(p);
}

void
probe_start(struct probe *p, const PRNetAddr *addr, const char *via)
{
	PRSocketOptionData opt;

	if (addr != &p->addr)
		p->addr = *addr;
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
		probe_fail_nspr(p, stage_name(PROBE_CONNECTING, p->via_socks,
		    p->starttls));
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
	case PROBE_STARTTLS:
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
			    p->via_socks, p->starttls));
		break;
	case PROBE_SOCKS_METHOD:
	case PROBE_SOCKS_AUTH:
	case PROBE_SOCKS_CONNECT:
		socks_step(p);
		break;
	case PROBE_STARTTLS:
		starttls_run(p);
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
	    stage_name(p->state, p->via_socks, p->starttls));
	probe_close(p);
	p->path->status = status;
}

/* ---- Admission control (probe.h says why) ---- */

void
probe_gate_init(struct probe_gate *g, unsigned int limit,
    unsigned int queue_max, unsigned int deadline_ms)
{
	memset(g, 0, sizeof(*g));
	g->limit = limit > 0 ? limit : 1;
	g->queue_max = queue_max > 0 ? queue_max : 1;
	g->deadline_ms = deadline_ms;
	g->cap = g->limit;
}

/* The time from now to the verdict of the waiting check at `position`, by
 * the pace so far: it starts once the checks before it have gone through
 * the cap's slots in waves of one service time each (counting the checks
 * running now as just started: the forecast errs on the late side, so a
 * check the gate keeps does make its deadline), then takes its own
 * service time.  0: no pace known yet. */
static unsigned long long
gate_forecast_ms(const struct probe_gate *g, unsigned int position)
{
	unsigned long long ahead = (unsigned long long)position + 1;
	unsigned int free_slots = g->running < g->cap ? g->cap - g->running : 0;

	if (g->service_ms == 0)
		return 0;
	if (ahead <= free_slots)
		return g->service_ms;
	return ((ahead - free_slots + g->cap - 1) / g->cap + 1) *
	    (unsigned long long)g->service_ms;
}

static void
gate_late_note(const struct probe_gate *g, unsigned long long forecast,
    unsigned int left_ms, char *why, size_t whylen)
{
	snprintf(why, whylen, PROBE_GATE_NOTE ": at the spheres' pace "
	    "(%u ms per check, %u at once, %u waiting) this check would get "
	    "its verdict in %llu ms, after its deadline (%u ms left)",
	    g->service_ms, g->cap, g->waiting, forecast, left_ms);
}

enum probe_gate_answer
probe_gate_arrive(struct probe_gate *g, char *why, size_t whylen)
{
	unsigned long long forecast;

	if (g->waiting == 0 && g->running < g->cap) {
		g->running++;
		g->started++;
		return PROBE_GATE_START;
	}
	if (g->waiting >= g->queue_max) {
		snprintf(why, whylen, PROBE_GATE_NOTE ": %u checks running "
		    "and %u waiting, as many as the queue holds", g->running,
		    g->waiting);
		g->refused++;
		return PROBE_GATE_REFUSE;
	}
	forecast = gate_forecast_ms(g, g->waiting);
	if (forecast > g->deadline_ms) {
		gate_late_note(g, forecast, g->deadline_ms, why, whylen);
		g->refused++;
		return PROBE_GATE_REFUSE;
	}
	g->waiting++;
	return PROBE_GATE_WAIT;
}

enum probe_gate_answer
probe_gate_next(struct probe_gate *g, unsigned int position,
    unsigned int left_ms, char *why, size_t whylen)
{
	unsigned long long forecast;

	if (g->waiting == 0 || position >= g->waiting)
		return PROBE_GATE_WAIT;         /* not ours: a caller's slip */
	if (position == 0 && g->running < g->cap) {
		g->waiting--;
		g->running++;
		g->started++;
		return PROBE_GATE_START;
	}
	forecast = gate_forecast_ms(g, position);
	if (forecast > left_ms) {
		gate_late_note(g, forecast, left_ms, why, whylen);
		g->waiting--;
		g->refused++;
		return PROBE_GATE_REFUSE;
	}
	return PROBE_GATE_WAIT;
}

void
probe_gate_done(struct probe_gate *g, unsigned int service_ms)
{
	if (g->running > 0)
		g->running--;
	if (service_ms == 0)
		service_ms = 1;
	g->service_ms = g->service_ms == 0 ? service_ms :
	    (unsigned int)(((unsigned long long)g->service_ms * 7 +
	    service_ms) / 8);
	if (++g->since_adjust < g->cap)
		return;
	if (g->service_ms > g->deadline_ms / 2 && g->cap > 1) {
		g->cap -= g->cap / 4 > 0 ? g->cap / 4 : 1;
		g->since_adjust = 0;
	} else if (g->service_ms < g->deadline_ms / 4 && g->cap < g->limit) {
		g->cap++;
		g->since_adjust = 0;
	}
}
