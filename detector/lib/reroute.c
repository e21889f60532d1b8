/*
 * reroute.c - the engine side of rerouting (docs/reroute.md).
 *
 * reroute_open() is written with plain POSIX sockets, not NSPR, because
 * its result is handed to NSS's libssl as a raw descriptor that the patch
 * dup2()s onto the application's own descriptor number.  It reuses the
 * pure SOCKS5 framing (socks5.c) and STARTTLS machine (starttls.c) of the
 * probes, in a simpler lock-step loop: one connection at a time, each
 * wait bounded by the one deadline and interruptible by cancel_fd.
 */
#include "reroute.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "certinfo.h"
#include "detector_nss.h"
#include "errmsg.h"
#include "host.h"
#include "log.h"
#include "monotonic.h"
#include "socks5.h"
#include "starttls.h"

/* ------------------------------------------------------------------ */
/* The plan (pure). */

static int
saw_other_key(const struct detector_path *p)
{
	return p->status == DETECTOR_PATH_MISMATCH && p->have_cert;
}

int
reroute_plan(const struct detector_result *res,
    const struct sphere *spheres, size_t nspheres, const char *host,
    unsigned int port, enum detector_starttls starttls,
    unsigned int deadline_ms, struct reroute_plan *plan, char *err,
    size_t errlen)
{
	unsigned int count[DETECTOR_MAX_SPHERES] = { 0 }, need, best = 0,
	    second = 0;
	size_t i, j, n, bi = 0, idx[DETECTOR_MAX_SPHERES];

	memset(plan, 0, sizeof(*plan));
	if (res == NULL || res->verdict != DETECTOR_REJECT)
		return errmsg(err, errlen, "%s:%u: no reroute without a REJECT "
		    "verdict", host, port);
	n = res->nspheres;
	if (n == 0 || res->spheres == NULL)
		return errmsg(err, errlen, "%s:%u: the verdict was remembered, "
		    "no sphere was asked: no key to reroute to", host, port);
	if (n > nspheres || n > DETECTOR_MAX_SPHERES)
		return errmsg(err, errlen, "%s:%u: the result names %zu "
		    "spheres, %zu are configured", host, port, n, nspheres);
	if (strlen(host) >= sizeof(plan->host) || port < 1 || port > 65535)
		return errmsg(err, errlen, "bad host or port to reroute");
	/* For each sphere that saw another key: how many saw that key. */
	for (i = 0; i < n; i++) {
		if (!saw_other_key(&res->spheres[i]))
			continue;
		for (j = 0; j < n; j++)
			count[i] += saw_other_key(&res->spheres[j]) &&
			    memcmp(res->spheres[i].spki_sha256,
			    res->spheres[j].spki_sha256,
			    DETECTOR_SHA256_LEN) == 0;
	}
	for (i = 0; i < n; i++) {
		if (count[i] > best) {
			best = count[i];
			bi = i;
		}
	}
	for (i = 0; i < n; i++) {
		if (count[i] > second && count[i] <= best &&
		    memcmp(res->spheres[i].spki_sha256,
		    res->spheres[bi].spki_sha256, DETECTOR_SHA256_LEN) != 0)
			second = count[i];
	}
	/* The ACCEPT bar, not the REJECT one: n-k+1 spheres (2 of 5) may be
	 * the liars themselves, and a plan sends the connection to them.
	 * No quorum that n spheres can reach: no plan (fail closed). */
	if (res->quorum == 0 || res->quorum > n)
		return errmsg(err, errlen, "%s:%u: quorum %u with %zu spheres: "
		    "no key can be agreed on, no reroute", host, port,
		    res->quorum, n);
	need = res->quorum;
	if (best == 0)
		return errmsg(err, errlen, "%s:%u: no sphere saw another key",
		    host, port);
	if (best < need || second == best)
		return errmsg(err, errlen, "%s:%u: the spheres do not agree on "
		    "one other key (%u saw the most common one, %u needed, "
		    "%u saw a rival): no key to reroute to", host, port, best,
		    need, second);
	snprintf(plan->host, sizeof(plan->host), "%s", host);
	plan->port = port;
	plan->starttls = starttls;
	plan->deadline_ms = deadline_ms;
	plan->agree = best;
	memcpy(plan->key, res->spheres[bi].spki_sha256, DETECTOR_SHA256_LEN);
	/* The spheres that saw it, fastest first (insertion sort, n <= 16;
	 * stable, so ties keep the configured order). */
	for (i = 0; i < n; i++) {
		if (!saw_other_key(&res->spheres[i]) ||
		    memcmp(res->spheres[i].spki_sha256, plan->key,
		    DETECTOR_SHA256_LEN) != 0)
			continue;
		for (j = plan->nvia; j > 0 &&
		    res->spheres[idx[j - 1]].ms > res->spheres[i].ms; j--)
			idx[j] = idx[j - 1];
		idx[j] = i;
		plan->nvia++;
	}
	for (i = 0; i < plan->nvia; i++)
		plan->via[i] = spheres[idx[i]];
	return 0;
}

int
reroute_verify(const unsigned char key[DETECTOR_SHA256_LEN],
    const char *via, const unsigned char *der, size_t len, char *err,
    size_t errlen)
{
	struct certinfo ci;
	char why[256];

	if (der == NULL || len == 0)
		return errmsg(err, errlen, "the rerouted server (via %s) sent "
		    "no certificate", via);
	if (certinfo_read(der, len, &ci, why, sizeof(why)) == -1)
		return errmsg(err, errlen, "the rerouted server's certificate "
		    "(via %s) cannot be read: %s", via, why);
	if (memcmp(ci.spki_sha256, key, DETECTOR_SHA256_LEN) != 0)
		return errmsg(err, errlen, "the rerouted server (via %s) "
		    "showed a key other than the one the spheres agreed on (a "
		    "lying sphere, or the server changed its key)", via);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Opening the tunnel (I/O). */

/* Why one attempt stopped: the next sphere may do better, or not. */
enum attempt_end {
	ATTEMPT_FAILED = -1,    /* this sphere: try the next one */
	ATTEMPT_TIMEOUT = -2,   /* the deadline: stop */
	ATTEMPT_CANCELLED = -3, /* cancel_fd: stop */
};

struct attempt {
	int fd;
	int cancel_fd;
	int64_t deadline;       /* monotonic_ms() value */
	char *err;
	size_t errlen;
};

static int
attempt_fail(struct attempt *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
attempt_fail(struct attempt *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->err, a->errlen, fmt, ap);
	va_end(ap);
	return ATTEMPT_FAILED;
}

/* Waits until a->fd has events; 0, or an ATTEMPT_* end. */
static int
wait_for(struct attempt *a, short events, const char *doing)
{
	struct pollfd pfd[2];
	int64_t left;
	int rc;

	for (;;) {
		left = a->deadline - monotonic_ms();
		if (left <= 0) {
			snprintf(a->err, a->errlen, "reroute deadline reached "
			    "during the %s", doing);
			return ATTEMPT_TIMEOUT;
		}
		pfd[0].fd = a->fd;
		pfd[0].events = events;
		pfd[0].revents = 0;
		pfd[1].fd = a->cancel_fd;
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		rc = poll(pfd, a->cancel_fd >= 0 ? 2 : 1,
		    left > 1000 ? 1000 : (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return attempt_fail(a, "poll failed during the %s: %s",
			    doing, strerror(errno));
		if (a->cancel_fd >= 0 && pfd[1].revents != 0) {
			snprintf(a->err, a->errlen, "cancelled during the %s",
			    doing);
			return ATTEMPT_CANCELLED;
		}
		if (pfd[0].revents != 0)
			return 0;
	}
}

static int
send_all(struct attempt *a, const unsigned char *buf, size_t len,
    const char *doing)
{
	ssize_t n;
	int rc;

	while (len > 0) {
		n = send(a->fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((rc = wait_for(a, POLLOUT, doing)) != 0)
				return rc;
			continue;
		}
		return attempt_fail(a, "sending during the %s: %s", doing,
		    strerror(errno));
	}
	return 0;
}

/* Reads at most max bytes (at least one); the count, or an ATTEMPT_*. */
static ssize_t
recv_some(struct attempt *a, unsigned char *buf, size_t max,
    const char *doing)
{
	ssize_t n;
	int rc;

	for (;;) {
		n = recv(a->fd, buf, max, 0);
		if (n > 0)
			return n;
		if (n == 0)
			return attempt_fail(a, "the connection was closed during "
			    "the %s", doing);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return attempt_fail(a, "receiving during the %s: %s",
			    doing, strerror(errno));
		if ((rc = wait_for(a, POLLIN, doing)) != 0)
			return rc;
	}
}

/* Reads one SOCKS5 reply exactly (never a byte of what follows it). */
static int
socks_reply(struct attempt *a, unsigned char *in, int which, int *method,
    const char *doing)
{
	char err[256];
	size_t have = 0, need = 2;
	enum socks5_status st;
	int rep;
	ssize_t n;

	for (;;) {
		while (have < need) {
			n = recv_some(a, in + have, need - have, doing);
			if (n < 0)
				return (int)n;
			have += (size_t)n;
		}
		if (which == 0)
			st = socks5_parse_method(in, have, &need, method, err,
			    sizeof(err));
		else if (which == 1)
			st = socks5_parse_auth_reply(in, have, &need, err,
			    sizeof(err));
		else
			st = socks5_parse_reply(in, have, &need, &rep, err,
			    sizeof(err));
		if (st == SOCKS5_OK)
			return 0;
		if (st == SOCKS5_ERROR)
			return attempt_fail(a, "%s", err);
		if (need > SOCKS5_MSG_MAX)
			return attempt_fail(a, "SOCKS5 reply too long");
	}
}

/* A fresh random SOCKS username/password: Tor's IsolateSOCKSAuth puts the
 * reroute on circuits of its own, shared with no check and no other
 * reroute. */
static int
fresh_token(char *pass, size_t size)
{
	unsigned char rnd[16];
	size_t i;

	if (size < 2 * sizeof(rnd) + 1 ||
	    getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -1;
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(pass + 2 * i, 3, "%02x", rnd[i]);
	return 0;
}

static int
socks_connect(struct attempt *a, const struct reroute_plan *plan)
{
	unsigned char out[SOCKS5_MSG_MAX], in[SOCKS5_MSG_MAX];
	char err[256], pass[40];
	size_t len;
	int rc, method = -1;

	len = socks5_greeting(out, sizeof(out));
	if ((rc = send_all(a, out, len, "SOCKS5 greeting")) != 0 ||
	    (rc = socks_reply(a, in, 0, &method, "SOCKS5 greeting")) != 0)
		return rc;
	if (method == SOCKS5_METHOD_USERPASS) {
		if (fresh_token(pass, sizeof(pass)) == -1)
			return attempt_fail(a, "cannot generate a random "
			    "isolation token");
		len = socks5_auth_request(out, sizeof(out), "detector", pass);
		if ((rc = send_all(a, out, len, "SOCKS5 authentication")) !=
		    0 || (rc = socks_reply(a, in, 1, NULL,
		    "SOCKS5 authentication")) != 0)
			return rc;
	}
	/* The host as the check probed it: a name goes to the sphere as a
	 * name (ATYP 3), never resolved here. */
	len = socks5_connect_request(out, sizeof(out), plan->host, plan->port,
	    err, sizeof(err));
	if (len == 0)
		return attempt_fail(a, "cannot build the SOCKS5 request: %s",
		    err);
	if ((rc = send_all(a, out, len, "SOCKS5 CONNECT")) != 0)
		return rc;
	return socks_reply(a, in, 2, NULL, "SOCKS5 CONNECT (the sphere "
	    "resolves the name and builds a circuit)");
}

static int
starttls_preamble(struct attempt *a, const struct reroute_plan *plan)
{
	struct starttls st;
	unsigned char out[STARTTLS_OUT_MAX], *buf;
	const char *stage = starttls_stage(plan->starttls);
	char err[512];
	size_t have = 0, outlen;
	ssize_t n;
	int rc = 0;

	if (starttls_init(&st, plan->starttls, plan->host, err,
	    sizeof(err)) == -1)
		return attempt_fail(a, "%s", err);
	if ((buf = malloc(STARTTLS_REPLY_MAX)) == NULL)
		return attempt_fail(a, "out of memory");
	for (;;) {
		outlen = 0;
		switch (starttls_step(&st, buf, have, out, sizeof(out), &outlen,
		    err, sizeof(err))) {
		case STARTTLS_READY:
			goto out;
		case STARTTLS_SEND:
			have = 0;
			if ((rc = send_all(a, out, outlen, stage)) != 0)
				goto out;
			continue;
		case STARTTLS_NEED_MORE:
			if (have >= STARTTLS_REPLY_MAX) {
				rc = attempt_fail(a, "the server's reply in the "
				    "%s exceeds %d bytes", stage,
				    STARTTLS_REPLY_MAX);
				goto out;
			}
			n = recv_some(a, buf + have, STARTTLS_REPLY_MAX - have,
			    stage);
			if (n < 0) {
				rc = (int)n;
				goto out;
			}
			have += (size_t)n;
			continue;
		case STARTTLS_ERROR:
		default:
			rc = attempt_fail(a, "%s", err);
			goto out;
		}
	}
out:
	free(buf);
	return rc;
}

/* One sphere (through one member of its group: a reroute is a single
 * connection, there is no load to spread): connect, SOCKS5, preamble.  0
 * with a->fd open, or an ATTEMPT_* end with a->fd closed. */
static int
attempt(struct attempt *a, const struct reroute_plan *plan,
    const struct sphere_member *s)
{
	socklen_t alen = s->addr.ss_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	socklen_t elen = sizeof(int);
	int rc, soerr = 0;

	a->fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (a->fd < 0)
		return attempt_fail(a, "cannot create a socket: %s",
		    strerror(errno));
	if (connect(a->fd, (const struct sockaddr *)&s->addr, alen) == -1) {
		if (errno != EINPROGRESS) {
			rc = attempt_fail(a, "cannot connect to the sphere: %s",
			    strerror(errno));
			goto out;
		}
		if ((rc = wait_for(a, POLLOUT, "connection to the sphere")) !=
		    0)
			goto out;
		if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) ==
		    -1 || soerr != 0) {
			rc = attempt_fail(a, "cannot connect to the sphere: %s%s",
			    strerror(soerr ? soerr : errno),
			    soerr == ECONNREFUSED ? " (is its Tor client "
			    "running?)" : "");
			goto out;
		}
	}
	if ((rc = socks_connect(a, plan)) != 0)
		goto out;
	if (plan->starttls != DETECTOR_STARTTLS_NONE &&
	    (rc = starttls_preamble(a, plan)) != 0)
		goto out;
	/* Handed over in blocking mode: the patch gives the descriptor the
	 * application's own O_NONBLOCK when it takes its place. */
	if (fcntl(a->fd, F_SETFL, fcntl(a->fd, F_GETFL) & ~O_NONBLOCK) == -1) {
		rc = attempt_fail(a, "fcntl: %s", strerror(errno));
		goto out;
	}
	return 0;
out:
	close(a->fd);
	a->fd = -1;
	return rc;
}

int
reroute_open(const struct reroute_plan *plan, int cancel_fd,
    unsigned int *via, char *err, size_t errlen)
{
	struct attempt a;
	char one[512];
	size_t used = 0;
	unsigned int i;
	int rc = ATTEMPT_FAILED;

	if (plan->nvia == 0)
		return errmsg(err, errlen, "%s:%u: no sphere to reroute "
		    "through", plan->host, plan->port);
	err[0] = '\0';
	a.cancel_fd = cancel_fd;
	a.deadline = monotonic_ms() + plan->deadline_ms;
	a.err = one;
	a.errlen = sizeof(one);
	for (i = 0; i < plan->nvia; i++) {
		one[0] = '\0';
		rc = attempt(&a, plan, &plan->via[i].member[0]);
		if (rc == 0) {
			*via = i;
			return a.fd;
		}
		if (used < errlen)
			used += (size_t)snprintf(err + used, errlen - used,
			    "%s%s: %s", i ? "; " : "", plan->via[i].text, one);
		if (rc != ATTEMPT_FAILED)
			break;
	}
	if (rc == ATTEMPT_FAILED && used < errlen)
		snprintf(err + used, errlen - used, " (every sphere that saw "
		    "the key was tried)");
	return -1;
}

/* ------------------------------------------------------------------ */
/* The rogue keys' plans.  Process-wide like the verdict memory: a later
 * handshake, on any context and thread, that shows the same rogue key is
 * rerouted at once. */

struct remembered {
	int used;
	uint64_t seq;           /* order of remembering: the oldest goes */
	int64_t expires;        /* monotonic_ms() value */
	unsigned char rogue[DETECTOR_SHA256_LEN];
	struct reroute_plan plan;
};

static pthread_mutex_t memory_lock = PTHREAD_MUTEX_INITIALIZER;
static struct remembered memory[REROUTE_MEMORY_MAX];
static uint64_t memory_seq;
static pthread_once_t memory_once = PTHREAD_ONCE_INIT;

/* A child made by fork() while another thread held the lock would wait
 * for it forever: the child's lock starts free (the plans stay valid). */
static void
memory_after_fork(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;

	memory_lock = fresh;
}

static void
memory_init(void)
{
	(void)pthread_atfork(NULL, NULL, memory_after_fork);
}

static void
memory_lock_take(void)
{
	pthread_once(&memory_once, memory_init);
	pthread_mutex_lock(&memory_lock);
}

static int
same_entry(const struct remembered *r, const char *host, unsigned int port,
    const unsigned char *rogue)
{
	return r->used && r->plan.port == port &&
	    strcmp(r->plan.host, host) == 0 &&
	    memcmp(r->rogue, rogue, DETECTOR_SHA256_LEN) == 0;
}

void
reroute_remember(const struct reroute_plan *plan,
    const unsigned char rogue[DETECTOR_SHA256_LEN])
{
	size_t i, slot = 0;
	int64_t now = monotonic_ms();

	memory_lock_take();
	for (i = 0; i < REROUTE_MEMORY_MAX; i++) {
		if (same_entry(&memory[i], plan->host, plan->port, rogue) ||
		    !memory[i].used || memory[i].expires <= now) {
			slot = i;
			break;
		}
		if (memory[i].seq < memory[slot].seq)
			slot = i;
	}
	memory[slot].used = 1;
	memory[slot].seq = ++memory_seq;
	memory[slot].expires = now + (int64_t)REROUTE_MEMORY_S * 1000;
	memcpy(memory[slot].rogue, rogue, DETECTOR_SHA256_LEN);
	memory[slot].plan = *plan;
	pthread_mutex_unlock(&memory_lock);
}

int
reroute_recall(const char *host, unsigned int port,
    const unsigned char rogue[DETECTOR_SHA256_LEN],
    struct reroute_plan *plan)
{
	size_t i;
	int found = 0;
	int64_t now = monotonic_ms();

	memory_lock_take();
	for (i = 0; i < REROUTE_MEMORY_MAX && !found; i++) {
		if (same_entry(&memory[i], host, port, rogue) &&
		    memory[i].expires > now) {
			*plan = memory[i].plan;
			found = 1;
		}
	}
	pthread_mutex_unlock(&memory_lock);
	return found;
}

void
reroute_forget_all(void)
{
	memory_lock_take();
	memset(memory, 0, sizeof(memory));
	pthread_mutex_unlock(&memory_lock);
}

/* ------------------------------------------------------------------ */
/* The NSS integration's entry (detector_nss.h).  A handle is one
 * reroute: its plan, and while a descriptor is being opened for a socket
 * that must not block, the thread opening it. */

struct reroute_handle {
	pthread_mutex_t mu;
	struct reroute_plan plan;
	unsigned int via;               /* index into plan.via, once open */
	pid_t pid;                      /* the process that made it */
	int have_thread;
	pthread_t thread;
	int cancel[2];                  /* pipe: release() wakes the opener */
	int cancelled;
	int detached;                   /* released from inside done() */
	detector_nss_reroute_fn done;
	void *arg;
};

static int nss_wanted;

int
reroute_nss_wanted(void)
{
	return __atomic_load_n(&nss_wanted, __ATOMIC_ACQUIRE);
}

/* detector_log() wants a configuration; the plan carries its settings. */
static void
plan_log(const struct reroute_plan *plan, enum log_level level,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
plan_log(const struct reroute_plan *plan, enum log_level level,
    const char *fmt, ...)
{
	static const struct detector_config none;
	struct detector_config *cfg;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((cfg = malloc(sizeof(*cfg))) == NULL)
		return;
	*cfg = none;
	cfg->log_level = plan->log_level;
	cfg->log_syslog = plan->log_syslog;
	detector_log(cfg, level, "%s", msg);
	free(cfg);
}

static void
handle_free(struct reroute_handle *h)
{
	if (h->cancel[0] >= 0)
		close(h->cancel[0]);
	if (h->cancel[1] >= 0)
		close(h->cancel[1]);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

static void *
opener(void *arg)
{
	struct reroute_handle *h = arg;
	char err[2048];
	int fd, detached;

	fd = reroute_open(&h->plan, h->cancel[0], &h->via, err, sizeof(err));
	pthread_mutex_lock(&h->mu);
	if (h->cancelled) {
		pthread_mutex_unlock(&h->mu);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	pthread_mutex_unlock(&h->mu);
	if (fd < 0) {
		plan_log(&h->plan, LOG_ERRORS, "%s:%u REFUSED (reroute): %s",
		    h->plan.host, h->plan.port, err);
		h->done(h->arg, DETECTOR_ERROR_MITM, -1);
	} else
		h->done(h->arg, 0, fd);
	pthread_mutex_lock(&h->mu);
	detached = h->detached;
	pthread_mutex_unlock(&h->mu);
	if (detached)
		handle_free(h);
	return NULL;
}

static int
nss_open(const char *host, unsigned int port, const unsigned char *der,
    unsigned int der_len, int may_block, detector_nss_reroute_fn done,
    void *arg, void **handle, int *fd, int *error)
{
	struct reroute_handle *h;
	struct certinfo ci;
	char name[256], err[2048];

	*handle = NULL;
	*fd = -1;
	*error = DETECTOR_ERROR_MITM;
	if (host == NULL || host_normalise(host, name, sizeof(name), err,
	    sizeof(err)) == -1 || der == NULL ||
	    certinfo_read(der, der_len, &ci, err, sizeof(err)) == -1)
		return DETECTOR_NSS_DECIDED;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return DETECTOR_NSS_DECIDED;
	h->cancel[0] = h->cancel[1] = -1;
	h->pid = getpid();
	pthread_mutex_init(&h->mu, NULL);
	if (!reroute_recall(name, port, ci.spki_sha256, &h->plan)) {
		/* The policy re-probes before asking for a reroute when it
		 * has no plan: this is a caller's mistake, and refused. */
		struct reroute_plan quiet = { .log_level = LOG_ERRORS };

		plan_log(&quiet, LOG_ERRORS, "%s:%u REFUSED (reroute): no "
		    "spheres' key is known for this certificate", name, port);
		handle_free(h);
		return DETECTOR_NSS_DECIDED;
	}
	if (may_block) {
		*fd = reroute_open(&h->plan, -1, &h->via, err, sizeof(err));
		if (*fd < 0) {
			plan_log(&h->plan, LOG_ERRORS, "%s:%u REFUSED "
			    "(reroute): %s", name, port, err);
			handle_free(h);
			return DETECTOR_NSS_DECIDED;
		}
		*error = 0;
		*handle = h;
		return DETECTOR_NSS_DECIDED;
	}
	h->done = done;
	h->arg = arg;
	if (pipe2(h->cancel, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    pthread_create(&h->thread, NULL, opener, h) != 0) {
		plan_log(&h->plan, LOG_ERRORS, "%s:%u REFUSED (reroute): "
		    "cannot start a thread", name, port);
		handle_free(h);
		return DETECTOR_NSS_DECIDED;
	}
	h->have_thread = 1;
	plan_log(&h->plan, LOG_DECISIONS, "%s:%u rerouting through a sphere; "
	    "handshake suspended", name, port);
	*error = 0;
	*handle = h;
	return DETECTOR_NSS_PENDING;
}

static int
nss_verify(void *handle, const unsigned char *der, unsigned int der_len)
{
	struct reroute_handle *h = handle;
	const char *via;
	char err[512];

	if (h == NULL)
		return DETECTOR_ERROR_MITM;
	via = h->via < h->plan.nvia ? h->plan.via[h->via].text : "?";
	if (reroute_verify(h->plan.key, via, der, der_len, err,
	    sizeof(err)) == -1) {
		plan_log(&h->plan, LOG_ERRORS, "%s:%u REFUSED (reroute): %s",
		    h->plan.host, h->plan.port, err);
		return DETECTOR_ERROR_MITM;
	}
	plan_log(&h->plan, LOG_ERRORS, "REROUTED %s:%u via %s", h->plan.host,
	    h->plan.port, via);
	return 0;
}

static void
nss_release(void *handle)
{
	struct reroute_handle *h = handle;

	if (h == NULL)
		return;
	if (!h->have_thread || h->pid != getpid()) {
		handle_free(h);         /* no thread (of this process) */
		return;
	}
	pthread_mutex_lock(&h->mu);
	h->cancelled = 1;
	if (pthread_equal(pthread_self(), h->thread)) {
		/* From inside done(): the opener frees it on return. */
		h->detached = 1;
		pthread_detach(h->thread);
		pthread_mutex_unlock(&h->mu);
		return;
	}
	pthread_mutex_unlock(&h->mu);
	(void)!write(h->cancel[1], "x", 1);
	pthread_join(h->thread, NULL);
	handle_free(h);
}

static const struct detector_nss_reroute_ops nss_ops = {
	1, nss_open, nss_verify, nss_release,
};

const struct detector_nss_reroute_ops *
detector_nss_reroute_v1(void)
{
	if (detector_nss_v1() == NULL)
		return NULL;
	__atomic_store_n(&nss_wanted, 1, __ATOMIC_RELEASE);
	return &nss_ops;
}
