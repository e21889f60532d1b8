/*
 * tls_server - the benchmarks' TLS server: lean, concurrent, loopback only.
 *
 * usage: tls_server ADDR PORT CERT KEY WORKERS
 *
 * WORKERS processes share one listening socket; each runs an epoll loop of
 * non-blocking OpenSSL connections (TLS 1.2-1.3, no session cache, no
 * tickets, so every handshake is full and carries the certificate).  After
 * the handshake it reads until the client closes.  Thousands of connections
 * can be open at once, and a connection costs no fork: the handshake rate
 * is bounded by the TLS work, not by the server's plumbing, so the
 * benchmarks' ratios are not diluted by a slow server.
 *
 * Ends on SIGTERM (the parent ends its workers by PID); a worker also gets
 * SIGTERM if the parent dies (PR_SET_PDEATHSIG).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_WORKERS 16
#define MAX_EVENTS 256
#define BACKLOG 4096

struct conn {
	int fd;
	SSL *ssl;
	int done;               /* handshake finished */
};

static volatile sig_atomic_t stopping;

static void
on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

static void
die(const char *what)
{
	fprintf(stderr, "tls_server: %s: %s\n", what, strerror(errno));
	ERR_print_errors_fp(stderr);
	exit(1);
}

static SSL_CTX *
make_ctx(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_print_errors_fp(stderr);
		fprintf(stderr, "tls_server: cannot load %s / %s\n", cert, key);
		exit(1);
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
}

static void
conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

/* Wait for what OpenSSL wants next; 0 to keep the connection. */
static int
conn_want(int ep, struct conn *c, int rc)
{
	struct epoll_event ev = { 0 };

	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		ev.events = EPOLLIN;
		break;
	case SSL_ERROR_WANT_WRITE:
		ev.events = EPOLLOUT;
		break;
	default:
		ERR_clear_error();
		return -1;
	}
	ev.data.ptr = c;
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
conn_step(int ep, struct conn *c)
{
	char buf[4096];
	int rc;

	if (!c->done) {
		rc = SSL_do_handshake(c->ssl);
		if (rc != 1) {
			if (conn_want(ep, c, rc) == -1)
				conn_close(ep, c);
			return;
		}
		c->done = 1;
	}
	/* Handshake done: read (and drop) until the client goes away. */
	for (;;) {
		rc = SSL_read(c->ssl, buf, sizeof(buf));
		if (rc > 0)
			continue;
		if (conn_want(ep, c, rc) == -1)
			conn_close(ep, c);
		return;
	}
}

static void
accept_all(int ep, int lfd, SSL_CTX *ctx)
{
	for (;;) {
		struct epoll_event ev = { 0 };
		struct conn *c;
		int one = 1;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1)
			return;         /* EAGAIN, or another worker won it */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL || (c->ssl = SSL_new(ctx)) == NULL) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		SSL_set_fd(c->ssl, fd);
		SSL_set_accept_state(c->ssl);
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			SSL_free(c->ssl);
			close(fd);
			free(c);
		}
	}
}

static void
worker(int lfd, SSL_CTX *ctx, const sigset_t *mask)
{
	struct epoll_event evs[MAX_EVENTS], lev = { 0 };
	int ep = epoll_create1(EPOLL_CLOEXEC), i, n;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigprocmask(SIG_SETMASK, mask, NULL);
	if (ep == -1)
		die("epoll_create1");
	lev.events = EPOLLIN | EPOLLEXCLUSIVE;
	lev.data.ptr = NULL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) == -1)
		die("epoll_ctl listen");
	while (!stopping) {
		n = epoll_wait(ep, evs, MAX_EVENTS, 500);
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				accept_all(ep, lfd, ctx);
			else
				conn_step(ep, evs[i].data.ptr);
		}
	}
	_exit(0);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sin = { 0 };
	struct sigaction sa = { 0 };
	pid_t pids[MAX_WORKERS];
	sigset_t block, old;
	SSL_CTX *ctx;
	int lfd, one = 1, i, nworkers;

	if (argc != 6 || (nworkers = atoi(argv[5])) < 1 ||
	    nworkers > MAX_WORKERS) {
		fprintf(stderr, "usage: tls_server ADDR PORT CERT KEY WORKERS"
		    " (1-%d)\n", MAX_WORKERS);
		return 2;
	}
	/* Blocked until sigsuspend() (or the worker's loop): no lost wakeup. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	ctx = make_ctx(argv[3], argv[4]);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1) {
		fprintf(stderr, "tls_server: %s is not an IPv4 address\n",
		    argv[1]);
		return 2;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		die("bind");
	if (listen(lfd, BACKLOG) == -1)
		die("listen");
	for (i = 0; i < nworkers; i++) {
		pids[i] = fork();
		if (pids[i] == -1)
			die("fork");
		if (pids[i] == 0)
			worker(lfd, ctx, &old);
	}
	fprintf(stderr, "tls_server: %d workers on %s:%s\n", nworkers,
	    argv[1], argv[2]);
	while (!stopping)
		sigsuspend(&old);
	for (i = 0; i < nworkers; i++)
		kill(pids[i], SIGTERM);
	for (i = 0; i < nworkers; i++)
		waitpid(pids[i], NULL, 0);
	SSL_CTX_free(ctx);
	return 0;
}
