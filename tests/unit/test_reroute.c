/*
 * reroute.c: the quorum key of a REJECT (pure, fake results), the memory
 * of rogue keys' plans, and reroute_open() against fake spheres on
 * loopback (a thread speaking SOCKS5 and SMTP's preamble, one that never
 * answers, a port nothing listens on).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "detector_nss.h"
#include "reroute.h"

/* Security review: the ocsp and reroute merges both took BASE+4. */
#define DISTINCT2(a, b) ((a) != (b))
_Static_assert(DISTINCT2(DETECTOR_ERROR_REVOKED, DETECTOR_ERROR_REROUTE) &&
    DISTINCT2(DETECTOR_ERROR_MITM, DETECTOR_ERROR_REROUTE) &&
    DISTINCT2(DETECTOR_ERROR_UNDECIDED, DETECTOR_ERROR_REROUTE) &&
    DISTINCT2(DETECTOR_ERROR_CONFIG, DETECTOR_ERROR_REROUTE) &&
    DISTINCT2(DETECTOR_ERROR_UNCHECKABLE, DETECTOR_ERROR_REROUTE),
    "DETECTOR_ERROR_REROUTE shares a value with another DETECTOR_ERROR_*");

static const unsigned char ROGUE = 0xaa, REAL = 0x11, OTHER = 0x77;

/* A result of n spheres; kinds[i]: 'r' saw REAL, 'o' saw OTHER, 'm' matched
 * the direct (rogue) key, 'f' failed, 's' skipped. */
static struct detector_path paths[DETECTOR_MAX_SPHERES];
static struct sphere spheres[DETECTOR_MAX_SPHERES];

static struct detector_result
result_of(const char *kinds, unsigned int quorum, const unsigned int *ms)
{
	struct detector_result r;
	size_t i, n = strlen(kinds);

	memset(&r, 0, sizeof(r));
	memset(paths, 0, sizeof(paths));
	r.verdict = DETECTOR_REJECT;
	r.quorum = quorum;
	r.nspheres = n;
	r.spheres = paths;
	for (i = 0; i < n; i++) {
		struct sockaddr_in *sin = (void *)&spheres[i].member[0].addr;

		memset(&spheres[i], 0, sizeof(spheres[i]));
		spheres[i].nmembers = 1;
		snprintf(spheres[i].member[0].text,
		    sizeof(spheres[i].member[0].text), "127.0.0.1:%zu",
		    9160 + i);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons((uint16_t)(9160 + i));
		snprintf(spheres[i].text, sizeof(spheres[i].text),
		    "127.0.0.1:%zu", 9160 + i);
		paths[i].ms = ms ? ms[i] : 100;
		switch (kinds[i]) {
		case 'r':
		case 'o':
			paths[i].status = DETECTOR_PATH_MISMATCH;
			paths[i].have_cert = 1;
			memset(paths[i].spki_sha256, kinds[i] == 'r' ? REAL :
			    OTHER, DETECTOR_SHA256_LEN);
			break;
		case 'm':
			paths[i].status = DETECTOR_PATH_MATCH;
			paths[i].have_cert = 1;
			memset(paths[i].spki_sha256, ROGUE, DETECTOR_SHA256_LEN);
			break;
		case 's':
			paths[i].status = DETECTOR_PATH_SKIPPED;
			break;
		default:
			paths[i].status = DETECTOR_PATH_FAILED;
		}
	}
	return r;
}

/* reroute_plan() of r over the first n spheres, for h.test:443 with no
 * STARTTLS and 1000 ms. */
static int
plan_of(const struct detector_result *r, size_t n, struct reroute_plan *plan,
    char *err, size_t errlen)
{
	return reroute_plan(r, spheres, n, "h.test", 443,
	    DETECTOR_STARTTLS_NONE, 1000, plan, err, errlen);
}

/* plan_of() a result of kinds with quorum k (result_of()). */
static int
plan_for(const char *kinds, unsigned int k, size_t n,
    struct reroute_plan *plan, char *err, size_t errlen)
{
	struct detector_result r = result_of(kinds, k, NULL);

	return plan_of(&r, n, plan, err, errlen);
}

static void
test_plan_takes_the_agreed_key_fastest_first(void **state)
{
	unsigned int ms[] = { 300, 50, 20, 40, 10 };
	struct detector_result r = result_of("rrfrs", 3, ms);
	struct reroute_plan plan;
	unsigned char real[DETECTOR_SHA256_LEN];
	char err[256];

	(void)state;
	memset(real, REAL, sizeof(real));
	assert_int_equal(reroute_plan(&r, spheres, 5, "server.test", 443,
	    DETECTOR_STARTTLS_SMTP, 5000, &plan, err, sizeof(err)), 0);
	assert_memory_equal(plan.key, real, DETECTOR_SHA256_LEN);
	assert_int_equal(plan.agree, 3);
	assert_int_equal(plan.nvia, 3);
	/* 40 ms (sphere 3), 50 ms (sphere 1), 300 ms (sphere 0). */
	assert_string_equal(plan.via[0].text, "127.0.0.1:9163");
	assert_string_equal(plan.via[1].text, "127.0.0.1:9161");
	assert_string_equal(plan.via[2].text, "127.0.0.1:9160");
	assert_string_equal(plan.host, "server.test");
	assert_int_equal(plan.port, 443);
	assert_int_equal(plan.starttls, DETECTOR_STARTTLS_SMTP);
	assert_int_equal(plan.deadline_ms, 5000);
}

static void
test_plan_needs_the_quorum(void **state)
{
	struct reroute_plan plan;
	char err[256];

	(void)state;
	/* Quorum 4 of 5: a REJECT needs 2 mismatches, a plan 4 that agree
	 * (security review H1: two colluding lying exits make a REJECT,
	 * never a plan; whether the others were skipped or saw the direct
	 * key). */
	assert_int_equal(plan_for("rrsss", 4, 5, &plan, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "4 needed"));
	assert_int_equal(plan_for("rrmmm", 4, 5, &plan, err, sizeof(err)), -1);
	assert_int_equal(plan_for("rrrmm", 4, 5, &plan, err, sizeof(err)), -1);
	assert_int_equal(plan_for("rrrrm", 4, 5, &plan, err, sizeof(err)), 0);
	assert_int_equal(plan.agree, 4);
	/* Security review L2: a quorum above n (or 0) plans nothing. */
	assert_int_equal(plan_for("rrr", 4, 3, &plan, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "quorum 4 with 3 spheres"));
	assert_int_equal(plan_for("rrr", 0, 3, &plan, err, sizeof(err)), -1);
	/* Two mismatches that disagree: one liar and one honest sphere. */
	assert_int_equal(plan_for("rossm", 4, 5, &plan, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "do not agree"));
	/* Quorum 3 of 5: 3 needed. */
	assert_int_equal(plan_for("rrmmm", 3, 5, &plan, err, sizeof(err)), -1);
	assert_int_equal(plan_for("rrrmm", 3, 5, &plan, err, sizeof(err)), 0);
	/* A tie between two other keys: no reroute. */
	assert_int_equal(plan_for("rroos", 2, 5, &plan, err, sizeof(err)), -1);
	/* A clear majority over a rival still reroutes, never via the rival. */
	assert_int_equal(plan_for("rrros", 3, 5, &plan, err, sizeof(err)), 0);
	assert_int_equal(plan.nvia, 3);
	assert_string_not_equal(plan.via[0].text, "127.0.0.1:9163");
	assert_string_not_equal(plan.via[1].text, "127.0.0.1:9163");
	assert_string_not_equal(plan.via[2].text, "127.0.0.1:9163");
}

static void
test_plan_only_for_a_probed_reject(void **state)
{
	struct detector_result r;
	struct reroute_plan plan;
	char err[256];

	(void)state;
	r = result_of("rrrrr", 4, NULL);
	r.verdict = DETECTOR_ACCEPT;
	assert_int_equal(plan_of(&r, 5, &plan, err, sizeof(err)), -1);
	r.verdict = DETECTOR_UNDECIDED;
	assert_int_equal(plan_of(&r, 5, &plan, err, sizeof(err)), -1);
	/* Remembered: no spheres. */
	assert_int_equal(plan_for("", 4, 5, &plan, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "remembered"));
	/* More spheres in the result than configured. */
	assert_int_equal(plan_for("rrrrr", 4, 3, &plan, err, sizeof(err)), -1);
	/* Failed and skipped spheres never count. */
	assert_int_equal(plan_for("rffss", 4, 5, &plan, err, sizeof(err)), -1);
}

static void
test_memory_by_exact_rogue_key(void **state)
{
	struct detector_result r = result_of("rrrrs", 4, NULL);
	struct reroute_plan plan, got;
	unsigned char rogue[DETECTOR_SHA256_LEN], other[DETECTOR_SHA256_LEN];
	char err[256];
	unsigned int i;

	(void)state;
	reroute_forget_all();
	memset(rogue, ROGUE, sizeof(rogue));
	memset(other, OTHER, sizeof(other));
	assert_int_equal(plan_of(&r, 5, &plan, err, sizeof(err)), 0);
	assert_int_equal(reroute_recall("h.test", 443, rogue, &got), 0);
	reroute_remember(&plan, rogue);
	assert_int_equal(reroute_recall("h.test", 443, rogue, &got), 1);
	assert_memory_equal(got.key, plan.key, DETECTOR_SHA256_LEN);
	assert_int_equal(reroute_recall("h.test", 443, other, &got), 0);
	assert_int_equal(reroute_recall("h.test", 444, rogue, &got), 0);
	assert_int_equal(reroute_recall("g.test", 443, rogue, &got), 0);
	/* Full: the oldest plans give way, the newest stay. */
	for (i = 0; i < 2 * REROUTE_MEMORY_MAX; i++) {
		snprintf(plan.host, sizeof(plan.host), "n%u.test", i);
		reroute_remember(&plan, rogue);
	}
	assert_int_equal(reroute_recall("n127.test", 443, rogue, &got), 1);
	assert_int_equal(reroute_recall("n0.test", 443, rogue, &got), 0);
	reroute_forget_all();
	assert_int_equal(reroute_recall("n127.test", 443, rogue, &got), 0);
}

/* ---- reroute_open() against fake spheres on loopback. */

enum fake_mode { FAKE_SMTP_SPHERE, FAKE_SILENT, FAKE_REFUSING_SOCKS };

struct fake {
	int lfd;
	unsigned short port;
	enum fake_mode mode;
	pthread_t thread;
	/* What the client sent, for the assertions. */
	unsigned char connect_req[300];
	size_t connect_len;
	char pass[64];
	char smtp[512];
	size_t smtp_len;
	int after_ready;        /* bytes sent after the go-ahead: must be 0 */
};

static ssize_t
read_n(int fd, void *buf, size_t n)
{
	size_t have = 0;
	ssize_t r;

	while (have < n) {
		r = read(fd, (char *)buf + have, n - have);
		if (r <= 0)
			return -1;
		have += (size_t)r;
	}
	return (ssize_t)have;
}

static int
read_line(int fd, struct fake *f)
{
	char c;

	do {
		if (read(fd, &c, 1) != 1 || f->smtp_len + 1 >= sizeof(f->smtp))
			return -1;
		f->smtp[f->smtp_len++] = c;
	} while (c != '\n');
	f->smtp[f->smtp_len] = '\0';
	return 0;
}

static void *
fake_serve(void *arg)
{
	struct fake *f = arg;
	unsigned char b[300];
	int c = accept(f->lfd, NULL, NULL);
	struct timeval tv = { 2, 0 };

	if (c < 0)
		return NULL;
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (f->mode == FAKE_SILENT) {
		while (read(c, b, sizeof(b)) > 0)
			;                       /* until the client gives up */
		close(c);
		return NULL;
	}
	if (read_n(c, b, 4) < 0 || write(c, "\x05\x02", 2) != 2)
		goto out;
	/* RFC 1929: ver, ulen, user, plen, pass. */
	if (read_n(c, b, 2) < 0 || read_n(c, b + 2, b[1] + 1u) < 0)
		goto out;
	{
		size_t ul = b[1], pl = b[2 + ul];

		if (read_n(c, f->pass, pl) < 0)
			goto out;
		f->pass[pl] = '\0';
	}
	if (write(c, "\x01\x00", 2) != 2)
		goto out;
	/* CONNECT: ver cmd rsv atyp=3 len name port. */
	if (read_n(c, f->connect_req, 5) < 0 ||
	    read_n(c, f->connect_req + 5, f->connect_req[4] + 2u) < 0)
		goto out;
	f->connect_len = 5 + f->connect_req[4] + 2u;
	if (f->mode == FAKE_REFUSING_SOCKS) {
		(void)write(c, "\x05\x04\x00\x01\0\0\0\0\0\0", 10);
		goto out;
	}
	if (write(c, "\x05\x00\x00\x01\x7f\0\0\x01\0\0", 10) != 10)
		goto out;
	/* SMTP, server side. */
	if (write(c, "220 real.test ESMTP\r\n", 21) != 21 ||
	    read_line(c, f) < 0 ||
	    write(c, "250-real.test\r\n250 STARTTLS\r\n", 29) != 29 ||
	    read_line(c, f) < 0 ||
	    write(c, "220 go ahead\r\n", 14) != 14)
		goto out;
	/* Nothing may follow the go-ahead from the engine itself. */
	tv.tv_sec = 0;
	tv.tv_usec = 200000;
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	f->after_ready = (int)read(c, b, sizeof(b));
	if (f->after_ready < 0)
		f->after_ready = 0;
	/* The caller's own bytes come next: echo one line. */
	tv.tv_sec = 2;
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	{
		ssize_t n = read(c, b, sizeof(b));

		if (n > 0)
			(void)write(c, b, (size_t)n);
	}
out:
	close(c);
	return NULL;
}

static void
fake_start(struct fake *f, enum fake_mode mode)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->lfd, (void *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	assert_int_equal(getsockname(f->lfd, (void *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void
fake_stop(struct fake *f)
{
	shutdown(f->lfd, SHUT_RDWR);
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

static struct sphere
sphere_at(unsigned short port)
{
	struct sphere s;
	struct sockaddr_in *sin = (void *)&s.member[0].addr;

	memset(&s, 0, sizeof(s));
	s.nmembers = 1;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(port);
	snprintf(s.member[0].text, sizeof(s.member[0].text), "127.0.0.1:%u",
	    port);
	snprintf(s.text, sizeof(s.text), "127.0.0.1:%u", port);
	return s;
}

/* A port nothing listens on (bound, never listened, then closed). */
static unsigned short
dead_port(void)
{
	struct fake f;
	unsigned short p;

	f.lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f.lfd, (void *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f.lfd, (void *)&sin, &len), 0);
	p = ntohs(sin.sin_port);
	close(f.lfd);
	return p;
}

static struct reroute_plan
plan_via(const struct sphere *via, unsigned int n, unsigned int deadline_ms)
{
	struct reroute_plan plan;

	memset(&plan, 0, sizeof(plan));
	snprintf(plan.host, sizeof(plan.host), "server.test");
	plan.port = 25;
	plan.starttls = DETECTOR_STARTTLS_SMTP;
	plan.deadline_ms = deadline_ms;
	plan.nvia = n;
	memcpy(plan.via, via, n * sizeof(*via));
	return plan;
}

static void
test_open_speaks_socks_and_smtp_then_hands_over(void **state)
{
	struct fake f, g;
	struct sphere via[3];
	struct reroute_plan plan;
	char err[1024], echo[16];
	char pass1[64];
	unsigned int used = 99;
	int fd, fl;

	(void)state;
	fake_start(&f, FAKE_SMTP_SPHERE);
	/* First a sphere nothing listens on, then one that refuses the
	 * CONNECT: both are passed over for the next. */
	fake_start(&g, FAKE_REFUSING_SOCKS);
	via[0] = sphere_at(dead_port());
	via[1] = sphere_at(g.port);
	via[2] = sphere_at(f.port);
	plan = plan_via(via, 3, 5000);
	fd = reroute_open(&plan, -1, &used, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(used, 2);
	fl = fcntl(fd, F_GETFL);
	assert_int_equal(fl & O_NONBLOCK, 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	/* The caller's first byte is the first byte after the preamble
	 * (written once the fake has seen that nothing else came). */
	usleep(400000);
	assert_int_equal(write(fd, "HELLO\n", 6), 6);
	assert_int_equal(read_n(fd, echo, 6), 6);
	assert_memory_equal(echo, "HELLO\n", 6);
	close(fd);
	fake_stop(&f);
	fake_stop(&g);
	/* The host went as a name (ATYP 3), with the port. */
	assert_int_equal(f.connect_req[3], 3);
	assert_int_equal(f.connect_req[4], strlen("server.test"));
	assert_memory_equal(f.connect_req + 5, "server.test", 11);
	assert_int_equal(f.connect_req[16], 0);
	assert_int_equal(f.connect_req[17], 25);
	assert_non_null(strstr(f.smtp, "EHLO detector.invalid\r\n"));
	assert_non_null(strstr(f.smtp, "STARTTLS\r\n"));
	assert_int_equal(f.after_ready, 0);
	assert_int_equal(strlen(f.pass), 32);
	/* A fresh token each time. */
	snprintf(pass1, sizeof(pass1), "%s", f.pass);
	fake_start(&f, FAKE_SMTP_SPHERE);
	via[0] = sphere_at(f.port);
	plan = plan_via(via, 1, 5000);
	fd = reroute_open(&plan, -1, &used, err, sizeof(err));
	assert_true(fd >= 0);
	close(fd);
	fake_stop(&f);
	assert_int_equal(strlen(f.pass), 32);
	assert_string_not_equal(f.pass, pass1);
}

static void
test_open_fails_closed(void **state)
{
	struct fake f;
	struct sphere via[2];
	struct reroute_plan plan;
	char err[1024];
	unsigned int used;
	struct timespec t0, t1;
	long ms;
	int p[2];

	(void)state;
	/* Every sphere down. */
	via[0] = sphere_at(dead_port());
	via[1] = sphere_at(dead_port());
	plan = plan_via(via, 2, 2000);
	assert_int_equal(reroute_open(&plan, -1, &used, err, sizeof(err)), -1);
	assert_non_null(strstr(err, via[0].text));
	assert_non_null(strstr(err, via[1].text));
	assert_non_null(strstr(err, "every sphere"));
	/* A sphere that never answers: the deadline ends it, on time. */
	fake_start(&f, FAKE_SILENT);
	via[0] = sphere_at(f.port);
	plan = plan_via(via, 1, 300);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(reroute_open(&plan, -1, &used, err, sizeof(err)), -1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 290 && ms < 1500);
	assert_non_null(strstr(err, "deadline"));
	fake_stop(&f);
	/* Cancelled: at once, whatever the deadline. */
	fake_start(&f, FAKE_SILENT);
	via[0] = sphere_at(f.port);
	plan = plan_via(via, 1, 60000);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(reroute_open(&plan, p[0], &used, err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "cancelled"));
	close(p[0]);
	close(p[1]);
	fake_stop(&f);
	/* No sphere at all. */
	plan = plan_via(via, 0, 1000);
	assert_int_equal(reroute_open(&plan, -1, &used, err, sizeof(err)), -1);
}

/* Every DETECTOR_ERROR_* in detector_nss.h, those added later included,
 * is BASE + a distinct offset (read from the header itself). */
static void
test_error_codes_distinct(void **state)
{
	const char *src = getenv("DETECTOR_SRC");
	char path[600], line[512], name[128], seen_names[64][128];
	int offs[64], off, n = 0, i;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/detector/include/detector_nss.h",
	    src ? src : ".");
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s (set DETECTOR_SRC)", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "#define %127s (DETECTOR_ERROR_BASE + %d)",
		    name, &off) != 2)
			continue;
		assert_true(n < 64);
		for (i = 0; i < n; i++) {
			if (offs[i] == off)
				fail_msg("%s and %s are both DETECTOR_ERROR_BASE "
				    "+ %d", seen_names[i], name, off);
		}
		snprintf(seen_names[n], sizeof(seen_names[n]), "%s", name);
		offs[n++] = off;
	}
	fclose(f);
	assert_true(n >= 6);    /* MITM .. REROUTE */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_takes_the_agreed_key_fastest_first),
		cmocka_unit_test(test_plan_needs_the_quorum),
		cmocka_unit_test(test_plan_only_for_a_probed_reject),
		cmocka_unit_test(test_memory_by_exact_rogue_key),
		cmocka_unit_test(test_open_speaks_socks_and_smtp_then_hands_over),
		cmocka_unit_test(test_open_fails_closed),
		cmocka_unit_test(test_error_codes_distinct),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
