/*
 * soakclient - many TLS handshakes in one long-running NSS application,
 * reporting its own file descriptors, resident memory and threads.
 *
 * An ordinary non-blocking NSS client with no DetecTor code; it links the
 * system NSS, so run with the enhanced libssl3.so first on the library path
 * (build/detector-run, or LD_LIBRARY_PATH=build/lib) every handshake goes
 * through DetecTor.  It makes SEQ handshakes one after the other, then
 * twice CONC handshakes all in flight at once (one PR_Poll loop over every
 * socket, as an event-driven application would), cycling through the
 * targets; $SOAKCLIENT_PAUSE_MS (default 0) is slept before each
 * concurrent round (to let cached verdicts expire).  Every
 * handshake is a full one (SSL_NO_CACHE), and each connection is closed
 * once its handshake is done.
 *
 * usage: soakclient DBDIR SEQ CONC REPORT_EVERY NAME:PORT:ADDR...
 *
 * Prints "stats <phase> n=<handshakes> fds=<n> rss_kb=<n> threads=<n>" at
 * start (after NSS_Init), warm (after one handshake per target), every
 * REPORT_EVERY sequential handshakes, after the sequential phase (seq),
 * during and after each concurrent round (peak, conc, peak2, conc2), and
 * after 3 s idle (idle); and "result <phase> ok=<n> failed=<n>" with one
 * "error <phase> <NAME> <count>" line per kind of failure.
 * Exit 0 if every handshake succeeded, 1 otherwise, 2 on a usage error.
 */
#include <dirent.h>
#include <nss.h>
#include <prerror.h>
#include <prinit.h>
#include <prio.h>
#include <prnetdb.h>
#include <ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define LIMIT_MS 90000          /* one handshake, at most */
#define POLL_MS 20
#define MAX_TARGETS 32
#define MAX_ERRORS 16

struct target {
	char name[256];
	PRNetAddr addr;
};

struct conn {
	PRFileDesc *fd;
	const struct target *t;
	PRIntervalTime start;
};

struct tally {
	unsigned long ok, failed;
	struct {
		PRErrorCode code;
		unsigned long n;
	} err[MAX_ERRORS];
	unsigned int nerr;
};

static struct target targets[MAX_TARGETS];
static unsigned int ntargets;
static unsigned long done_total;

static unsigned long
count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	unsigned long n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static unsigned long
rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long kb = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

struct sample {
	unsigned long fds, rss_kb, threads;
};

static struct sample
sample_now(void)
{
	struct sample s;

	/* opendir's own descriptor is counted: subtract it. */
	s.fds = count_dir("/proc/self/fd") - 1;
	s.rss_kb = rss_kb();
	s.threads = count_dir("/proc/self/task");
	return s;
}

static void
stats_print(const char *phase, struct sample s)
{
	printf("stats %s n=%lu fds=%lu rss_kb=%lu threads=%lu\n", phase,
	    done_total, s.fds, s.rss_kb, s.threads);
}

static void
stats(const char *phase)
{
	stats_print(phase, sample_now());
}

static void
tally_fail(struct tally *t, PRErrorCode code)
{
	unsigned int i;

	t->failed++;
	for (i = 0; i < t->nerr; i++) {
		if (t->err[i].code == code) {
			t->err[i].n++;
			return;
		}
	}
	if (t->nerr < MAX_ERRORS) {
		t->err[t->nerr].code = code;
		t->err[t->nerr++].n = 1;
	}
}

static void
tally_print(const char *phase, const struct tally *t)
{
	unsigned int i;

	printf("result %s ok=%lu failed=%lu\n", phase, t->ok, t->failed);
	for (i = 0; i < t->nerr; i++) {
		const char *name = PR_ErrorToName(t->err[i].code);
		printf("error %s %s %lu\n", phase, name ? name : "?",
		    t->err[i].n);
	}
}

/* Starts one non-blocking connection and handshake; 0 or -1 (tallied). */
static int
conn_start(struct conn *c, const struct target *t, struct tally *ty)
{
	PRSocketOptionData opt;
	PRFileDesc *tcp;

	memset(c, 0, sizeof(*c));
	if ((tcp = PR_OpenTCPSocket(PR_AF_INET)) == NULL) {
		tally_fail(ty, PR_GetError());
		return -1;
	}
	opt.option = PR_SockOpt_Nonblocking;
	opt.value.non_blocking = PR_TRUE;
	PR_SetSocketOption(tcp, &opt);
	if ((c->fd = SSL_ImportFD(NULL, tcp)) == NULL) {
		tally_fail(ty, PR_GetError());
		PR_Close(tcp);
		return -1;
	}
	c->t = t;
	c->start = PR_IntervalNow();
	if (SSL_SetURL(c->fd, t->name) != SECSuccess ||
	    SSL_OptionSet(c->fd, SSL_NO_CACHE, PR_TRUE) != SECSuccess ||
	    SSL_ResetHandshake(c->fd, PR_FALSE) != SECSuccess ||
	    (PR_Connect(c->fd, &t->addr, PR_INTERVAL_NO_WAIT) != PR_SUCCESS &&
	    PR_GetError() != PR_IN_PROGRESS_ERROR)) {
		tally_fail(ty, PR_GetError());
		PR_Close(c->fd);
		c->fd = NULL;
		return -1;
	}
	return 0;
}

/* Drives one handshake a step; 1 when it is over (tallied, closed). */
static int
conn_step(struct conn *c, struct tally *ty)
{
	PRErrorCode e;

	if (SSL_ForceHandshake(c->fd) == SECSuccess) {
		ty->ok++;
	} else {
		e = PR_GetError();
		if (e == PR_WOULD_BLOCK_ERROR || e == PR_IN_PROGRESS_ERROR ||
		    e == PR_NOT_CONNECTED_ERROR) {
			if (PR_IntervalToMilliseconds(PR_IntervalNow() -
			    c->start) < LIMIT_MS)
				return 0;
			e = PR_IO_TIMEOUT_ERROR;
		}
		tally_fail(ty, e);
	}
	PR_Close(c->fd);
	c->fd = NULL;
	done_total++;
	return 1;
}

/*
 * count handshakes, at most width in flight at once, targets in turn
 * from *next.  With width 1 this is the sequential phase; report_every
 * prints stats every so many handshakes (0: never), peak prints the
 * largest figures seen while all were in flight.
 */
static void
run(unsigned long count, unsigned long width, unsigned long report_every,
    unsigned int *next, struct tally *ty, const char *peak)
{
	struct conn *c = calloc(width, sizeof(*c));
	PRPollDesc *pd = calloc(width, sizeof(*pd));
	unsigned long started = 0, i, finished = 0, loops = 0;
	struct sample max = { 0, 0, 0 }, now;

	if (c == NULL || pd == NULL) {
		fprintf(stderr, "soakclient: out of memory\n");
		exit(1);
	}
	while (finished < count) {
		unsigned long n = 0;

		for (i = 0; i < width && started < count; i++) {
			if (c[i].fd != NULL)
				continue;
			if (conn_start(&c[i], &targets[*next], ty) == -1) {
				finished++;
				done_total++;
			}
			*next = (*next + 1) % ntargets;
			started++;
		}
		if (peak != NULL && loops % 2 == 0) {
			now = sample_now();
			max.fds = now.fds > max.fds ? now.fds : max.fds;
			max.rss_kb = now.rss_kb > max.rss_kb ? now.rss_kb :
			    max.rss_kb;
			max.threads = now.threads > max.threads ? now.threads :
			    max.threads;
		}
		for (i = 0; i < width; i++) {
			if (c[i].fd == NULL)
				continue;
			pd[n].fd = c[i].fd;
			pd[n].in_flags = PR_POLL_READ | PR_POLL_WRITE;
			pd[n].out_flags = 0;
			n++;
		}
		if (n == 0)
			continue;
		PR_Poll(pd, (PRIntn)n, PR_MillisecondsToInterval(POLL_MS));
		loops++;
		for (i = 0, n = 0; i < width; i++) {
			if (c[i].fd == NULL)
				continue;
			/* Every connection that polled ready, and all of them
			 * every tenth turn (a suspended handshake is woken
			 * by DetecTor, but a step too many costs nothing). */
			if ((pd[n++].out_flags != 0 || loops % 10 == 0) &&
			    conn_step(&c[i], ty)) {
				finished++;
				if (report_every && done_total % report_every == 0)
					stats("during");
			}
		}
	}
	if (peak != NULL)
		stats_print(peak, max);
	free(c);
	free(pd);
}

static int
parse_target(const char *arg, struct target *t)
{
	char buf[300], *port, *addr;

	if (strlen(arg) >= sizeof(buf))
		return -1;
	strcpy(buf, arg);
	if ((port = strchr(buf, ':')) == NULL ||
	    (addr = strchr(port + 1, ':')) == NULL)
		return -1;
	*port++ = '\0';
	*addr++ = '\0';
	if (strlen(buf) >= sizeof(t->name))
		return -1;
	strcpy(t->name, buf);
	if (PR_StringToNetAddr(addr, &t->addr) != PR_SUCCESS ||
	    PR_InitializeNetAddr(PR_IpAddrNull, (PRUint16)atoi(port),
	    &t->addr) != PR_SUCCESS)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	struct tally warm = { 0 }, seq = { 0 }, conc = { 0 }, conc2 = { 0 };
	const char *pause = getenv("SOAKCLIENT_PAUSE_MS");
	unsigned int pause_ms = pause ? (unsigned int)atoi(pause) : 0;
	unsigned long nseq, nconc, every;
	unsigned int next = 0, i;
	struct rlimit rl;

	if (argc < 6 || argc - 5 > MAX_TARGETS) {
		fprintf(stderr, "usage: soakclient DBDIR SEQ CONC REPORT_EVERY "
		    "NAME:PORT:ADDR...\n");
		return 2;
	}
	nseq = strtoul(argv[2], NULL, 10);
	nconc = strtoul(argv[3], NULL, 10);
	every = strtoul(argv[4], NULL, 10);
	for (i = 5; i < (unsigned int)argc; i++) {
		if (parse_target(argv[i], &targets[ntargets++]) == -1) {
			fprintf(stderr, "soakclient: bad target '%s'\n",
			    argv[i]);
			return 2;
		}
	}
	/* CONC sockets at once need as many descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (NSS_Init(argv[1]) != SECSuccess ||
	    NSS_SetDomesticPolicy() != SECSuccess) {
		fprintf(stderr, "soakclient: NSS_Init: %s\n",
		    PR_ErrorToName(PR_GetError()));
		return 1;
	}
	stats("start");
	run(ntargets, 1, 0, &next, &warm, NULL);
	tally_print("warm", &warm);
	stats("warm");
	run(nseq, 1, every, &next, &seq, NULL);
	tally_print("seq", &seq);
	stats("seq");
	/* Two concurrent rounds: memory the allocator keeps after the first
	 * is reused by the second; a leak would grow again. */
	PR_Sleep(PR_MillisecondsToInterval(pause_ms));
	run(nconc, nconc ? nconc : 1, 0, &next, &conc, "peak");
	tally_print("conc", &conc);
	stats("conc");
	PR_Sleep(PR_MillisecondsToInterval(pause_ms));
	run(nconc, nconc ? nconc : 1, 0, &next, &conc2, "peak2");
	tally_print("conc2", &conc2);
	stats("conc2");
	PR_Sleep(PR_SecondsToInterval(3));
	stats("idle");
	if (NSS_Shutdown() != SECSuccess)
		fprintf(stderr, "soakclient: NSS_Shutdown: %s\n",
		    PR_ErrorToName(PR_GetError()));
	PR_Cleanup();
	return warm.failed || seq.failed || conc.failed || conc2.failed;
}
