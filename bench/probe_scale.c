/*
 * probe_scale - many checks in flight on one thread: the engine at scale.
 *
 * usage: probe_scale [-l LIMIT] [-q QUEUE] HOST PORT SPKI_HEX INFLIGHT CHECKS
 *                    TIMEOUT_MS QUORUM socks|direct ADDRS
 *
 * Keeps INFLIGHT checks of HOST:PORT in flight until CHECKS have been
 * made (a closed loop: INFLIGHT clients, each asking again as soon as its
 * check ends).  A check is what detector_check() does: one probe per
 * address in ADDRS ("ip:port,..."; SOCKS5 spheres with `socks`, or the TLS
 * server itself with `direct`; "ip:port|ip:port" for the instances of one
 * sphere, taken in turn, check by check), a fresh isolation token, and the k-of-n
 * rule (verdict.h) after every probe that ends; once the verdict is final
 * the check's other probes are abandoned ("skipped") and a new check takes
 * its place.  Every probe of every check is driven by the probe state
 * machine of probe.h, all from ONE PR_Poll loop on this one thread.
 *
 * Admission control (probe.h's probe_gate): at most LIMIT checks run at
 * once (default 64), at most QUEUE wait (default 4096); a check that
 * cannot be held or could not finish before its deadline (TIMEOUT_MS from
 * its arrival, queueing included) ends UNDECIDED at once with the gate's
 * note.  -l 0 starts every check as it arrives (no admission control).
 *
 * The soft RLIMIT_NOFILE is raised to the hard limit; INFLIGHT times the
 * number of addresses must fit in it.
 *
 * prints "key value" lines: probes captured (a certificate was seen),
 * failed, timed out, skipped; checks per verdict and refused by the gate;
 * seconds; probes/s; checks/s; latency from arrival to verdict (p50, p95,
 * p99, max) and the longest time a refused check took to be refused; peak
 * RSS; PR_Poll calls and descriptors per call; this thread's CPU time per
 * captured probe.
 */
#include <nss.h>
#include <ssl.h>
#include <pk11pub.h>
#include <prerror.h>
#include <prnetdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"
#include "verdict.h"

#define MAX_ADDRS DETECTOR_MAX_SPHERES
#define MAX_INSTANCES 8         /* tor processes per sphere ("a|b") */

enum check_state { CHECK_FREE = 0, CHECK_WAITING, CHECK_RUNNING };

struct check {
	struct probe probes[MAX_ADDRS];
	struct detector_path paths[MAX_ADDRS];
	char user[16], pass[40];
	enum check_state state;
	PRIntervalTime arrived, started;
};

static struct {
	const char *host;
	unsigned int port;
	unsigned char spki[DETECTOR_SHA256_LEN];
	int via_socks;
	unsigned int quorum, timeout_ms;
	size_t naddrs;                  /* spheres */
	size_t ninst[MAX_ADDRS];        /* instances of each */
	PRNetAddr addrs[MAX_ADDRS][MAX_INSTANCES];
	char *via[MAX_ADDRS][MAX_INSTANCES];
	long arrived, done;
	long captured, failed, timedout, skipped, matches, refused;
	long verdicts[4];
	const char *first_error, *first_refusal;
	unsigned int *latency_ms;       /* arrival to verdict, per check */
	unsigned int refuse_ms_max;     /* arrival to refusal, the longest */
	unsigned int running_max;
	struct probe_gate gate;
	int gated;
} run;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned int
ms_since(PRIntervalTime since, PRIntervalTime now)
{
	return PR_IntervalToMilliseconds((PRIntervalTime)(now - since));
}

/* "ip:port,ip:port|ip:port,...": spheres separated by ',', the instances
 * of one sphere (tor processes sharing its exits) by '|'. */
static int
parse_addrs(char *list)
{
	char *tok, *save = NULL, *inst, *isave, *colon;
	size_t k;

	for (tok = strtok_r(list, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if (run.naddrs == MAX_ADDRS)
			return -1;
		for (inst = strtok_r(tok, "|", &isave); inst != NULL;
		    inst = strtok_r(NULL, "|", &isave)) {
			k = run.ninst[run.naddrs];
			if (k == MAX_INSTANCES ||
			    (colon = strrchr(inst, ':')) == NULL)
				return -1;
			run.via[run.naddrs][k] = strdup(inst);
			*colon = '\0';
			if (run.via[run.naddrs][k] == NULL ||
			    PR_StringToNetAddr(inst, &run.addrs[run.naddrs][k])
			    != PR_SUCCESS || PR_InitializeNetAddr(PR_IpAddrNull,
			    (PRUint16)atoi(colon + 1),
			    &run.addrs[run.naddrs][k]) != PR_SUCCESS)
				return -1;
			run.ninst[run.naddrs]++;
		}
		if (run.ninst[run.naddrs] == 0)
			return -1;
		run.naddrs++;
	}
	return run.naddrs > 0 ? 0 : -1;
}

static int
parse_hex(const char *hex, unsigned char *out, size_t len)
{
	size_t i;
	unsigned int b;

	if (strlen(hex) != 2 * len)
		return -1;
	for (i = 0; i < len; i++) {
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (unsigned char)b;
	}
	return 0;
}

/* A fresh isolation token, as detector_check() makes for every check. */
static void
token(struct check *c)
{
	unsigned char rnd[16];
	size_t i;

	if (PK11_GenerateRandom(rnd, sizeof(rnd)) != SECSuccess)
		memset(rnd, 0x5a, sizeof(rnd));
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(c->pass + 2 * i, 3, "%02x", rnd[i]);
	snprintf(c->user, sizeof(c->user), "detector");
}

/* Starts the check's probes; its deadline counts from its arrival. */
static void
check_start(struct check *c, PRIntervalTime now)
{
	size_t i, k;

	token(c);
	c->state = CHECK_RUNNING;
	c->started = now;
	for (i = 0; i < run.naddrs; i++) {
		struct probe *p = &c->probes[i];

		memset(p, 0, sizeof(*p));
		p->host = run.host;
		p->port = run.port;
		p->via_socks = run.via_socks;
		p->user = c->user;
		p->pass = c->pass;
		p->start = c->arrived;
		p->deadline = c->arrived +
		    PR_MillisecondsToInterval(run.timeout_ms);
		p->path = &c->paths[i];
		/* Round robin over the sphere's instances. */
		k = (size_t)run.arrived % run.ninst[i];
		probe_start(p, &run.addrs[i][k], run.via[i][k]);
	}
}

/* The gate refused the check: it ends UNDECIDED now, with the gate's note. */
static void
check_refused(struct check *c, PRIntervalTime now, const char *why)
{
	unsigned int ms = ms_since(c->arrived, now);

	run.refused++;
	run.verdicts[DETECTOR_UNDECIDED]++;
	if (ms > run.refuse_ms_max)
		run.refuse_ms_max = ms;
	if (run.first_refusal == NULL)
		run.first_refusal = strdup(why);
	c->state = CHECK_FREE;
	run.done++;
}

/* The k-of-n rule over the check's probes; on a final verdict, closes the
 * rest, counts the outcome and frees the slot. */
static void
check_evaluate(struct check *c, PRIntervalTime now)
{
	struct tally t = { (unsigned int)run.naddrs, run.quorum, 0, 0, 0 };
	enum detector_verdict v;
	size_t i;

	if (c->state != CHECK_RUNNING)
		return;
	for (i = 0; i < run.naddrs; i++) {
		if (c->probes[i].state != PROBE_DONE)
			t.pending++;
		else if (c->paths[i].status == DETECTOR_PATH_SEEN &&
		    memcmp(c->paths[i].spki_sha256, run.spki,
		    DETECTOR_SHA256_LEN) == 0)
			t.matches++;
		else if (c->paths[i].status == DETECTOR_PATH_SEEN)
			t.mismatches++;
	}
	if (!verdict_decide(&t, &v))
		return;
	run.verdicts[v]++;
	run.matches += t.matches;
	for (i = 0; i < run.naddrs; i++) {
		probe_abandon(&c->probes[i], DETECTOR_PATH_SKIPPED,
		    "not awaited (verdict already reached)");
		switch (c->paths[i].status) {
		case DETECTOR_PATH_SEEN: run.captured++; break;
		case DETECTOR_PATH_SKIPPED: run.skipped++; break;
		case DETECTOR_PATH_TIMEOUT: run.timedout++; break;
		default:
			run.failed++;
			if (run.first_error == NULL && c->paths[i].error)
				run.first_error = strdup(c->paths[i].error);
			break;
		}
		path_release(&c->paths[i]);
	}
	if (run.gated)
		probe_gate_done(&run.gate, ms_since(c->started, now));
	run.latency_ms[run.done - run.refused] = ms_since(c->arrived, now);
	c->state = CHECK_FREE;
	run.done++;
}

static int
cmp_uint(const void *a, const void *b)
{
	unsigned int x = *(const unsigned int *)a, y = *(const unsigned int *)b;

	return x < y ? -1 : x > y;
}

static unsigned int
percentile(const unsigned int *sorted, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(q * (double)(n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

static void
usage(void)
{
	fprintf(stderr, "usage: probe_scale [-l LIMIT] [-q QUEUE] HOST PORT "
	    "SPKI_HEX INFLIGHT CHECKS TIMEOUT_MS QUORUM socks|direct ADDRS\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct rlimit rl;
	struct rusage ru;
	struct check *checks;
	PRPollDesc *pds;
	struct probe **owner;
	size_t *queue, nqueue = 0;
	long inflight, total, polls = 0, polled = 0, ready_sum = 0;
	long limit = 64, queue_max = 4096;
	size_t i, j, npd, maxpd, nlat;
	double t0, t, cpu;
	char why[512];
	int opt;

	while ((opt = getopt(argc, argv, "l:q:")) != -1) {
		if (opt == 'l')
			limit = atol(optarg);
		else if (opt == 'q')
			queue_max = atol(optarg);
		else
			usage();
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (argc != 10 || (inflight = atol(argv[4])) < 1 ||
	    (total = atol(argv[5])) < inflight || limit < 0 || queue_max < 1 ||
	    (strcmp(argv[8], "socks") != 0 && strcmp(argv[8], "direct") != 0))
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	run.host = argv[1];
	run.port = (unsigned int)atoi(argv[2]);
	run.timeout_ms = (unsigned int)atoi(argv[6]);
	run.quorum = (unsigned int)atoi(argv[7]);
	run.via_socks = strcmp(argv[8], "socks") == 0;
	run.gated = limit > 0;
	if (run.gated)
		probe_gate_init(&run.gate, (unsigned int)limit,
		    (unsigned int)queue_max, run.timeout_ms);
	if (parse_hex(argv[3], run.spki, sizeof(run.spki)) == -1 ||
	    parse_addrs(argv[9]) == -1 || run.quorum < 1 ||
	    run.quorum > run.naddrs) {
		fprintf(stderr, "probe_scale: bad SPKI hash, address list or "
		    "quorum\n");
		return 2;
	}
	/* One descriptor per running probe, plus NSS's own files and stdio. */
	maxpd = (size_t)(run.gated && limit < inflight ? limit : inflight) *
	    run.naddrs;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < maxpd + 64) {
		fprintf(stderr, "probe_scale: %zu probes in flight need %zu "
		    "descriptors; the limit is %llu (raise ulimit -Hn)\n",
		    maxpd, maxpd + 64, (unsigned long long)rl.rlim_cur);
		return 2;
	}
	printf("nofile_limit %llu\n", (unsigned long long)rl.rlim_cur);
	if (NSS_NoDB_Init(NULL) != SECSuccess ||
	    NSS_SetDomesticPolicy() != SECSuccess) {
		fprintf(stderr, "probe_scale: NSS_NoDB_Init failed\n");
		return 2;
	}
	maxpd = (size_t)inflight * run.naddrs;
	checks = calloc((size_t)inflight, sizeof(*checks));
	pds = calloc(maxpd, sizeof(*pds));
	owner = calloc(maxpd, sizeof(*owner));
	queue = calloc((size_t)inflight, sizeof(*queue));
	run.latency_ms = calloc((size_t)total, sizeof(*run.latency_ms));
	if (checks == NULL || pds == NULL || owner == NULL || queue == NULL ||
	    run.latency_ms == NULL) {
		fprintf(stderr, "probe_scale: out of memory\n");
		return 2;
	}
	t0 = now_s();
	for (;;) {
		PRIntervalTime now = PR_IntervalNow(), wait;
		unsigned int running = 0;
		int any = 0;
		PRInt32 ready;
		size_t keep;

		/* Verdicts free slots; each free slot's client asks again. */
		for (i = 0; i < (size_t)inflight; i++) {
			struct check *c = &checks[i];

			check_evaluate(c, now);
			while (c->state == CHECK_FREE && run.arrived < total) {
				c->arrived = now;
				run.arrived++;
				switch (run.gated ? probe_gate_arrive(&run.gate,
				    why, sizeof(why)) : PROBE_GATE_START) {
				case PROBE_GATE_START:
					check_start(c, now);
					check_evaluate(c, now);
					break;
				case PROBE_GATE_WAIT:
					c->state = CHECK_WAITING;
					queue[nqueue++] = i;
					break;
				case PROBE_GATE_REFUSE:
					check_refused(c, now, why);
					break;
				}
			}
		}
		/* The queue, from its head: start, keep waiting or refuse. */
		for (i = 0, keep = 0; i < nqueue; i++) {
			struct check *c = &checks[queue[i]];
			unsigned int age = ms_since(c->arrived, now);

			switch (probe_gate_next(&run.gate, (unsigned int)keep,
			    age < run.timeout_ms ? run.timeout_ms - age : 0,
			    why, sizeof(why))) {
			case PROBE_GATE_START:
				check_start(c, now);
				check_evaluate(c, now);
				break;
			case PROBE_GATE_REFUSE:
				check_refused(c, now, why);
				break;
			case PROBE_GATE_WAIT:
				queue[keep++] = queue[i];
				break;
			}
		}
		nqueue = keep;
		wait = PR_SecondsToInterval(1);
		npd = 0;
		for (i = 0; i < (size_t)inflight; i++) {
			if (checks[i].state == CHECK_FREE)
				continue;
			any = 1;
			if (checks[i].state != CHECK_RUNNING)
				continue;
			running++;
			for (j = 0; j < run.naddrs; j++) {
				struct probe *p = &checks[i].probes[j];

				if (p->state == PROBE_DONE)
					continue;
				if ((PRInt32)(now - p->deadline) >= 0) {
					probe_abandon(p, DETECTOR_PATH_TIMEOUT,
					    "probe timed out");
					continue;
				}
				if ((PRIntervalTime)(p->deadline - now) < wait)
					wait = p->deadline - now;
				pds[npd].fd = p->fd;
				pds[npd].in_flags = probe_poll_flags(p);
				pds[npd].out_flags = 0;
				owner[npd++] = p;
			}
		}
		if (running > run.running_max)
			run.running_max = running;
		if (!any)
			break;
		if (npd == 0)
			continue;
		ready = PR_Poll(pds, (PRIntn)npd, wait);
		polls++;
		polled += (long)npd;
		if (ready < 0) {
			fprintf(stderr, "probe_scale: PR_Poll failed: %s\n",
			    PR_ErrorToName(PR_GetError()));
			return 1;
		}
		ready_sum += ready;
		for (i = 0; i < npd; i++) {
			if (pds[i].out_flags != 0 &&
			    owner[i]->state != PROBE_DONE)
				probe_advance(owner[i], pds[i].out_flags);
		}
	}
	t = now_s() - t0;
	getrusage(RUSAGE_SELF, &ru);
	cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	nlat = (size_t)(run.done - run.refused);
	qsort(run.latency_ms, nlat, sizeof(*run.latency_ms), cmp_uint);
	printf("checks %ld\nprobes_per_check %zu\ninflight %ld\nlimit %ld\n"
	    "queue_max %ld\nrunning_max %u\nseconds %.3f\n"
	    "captured %ld\nmatches %ld\nfailed %ld\ntimedout %ld\nskipped %ld\n"
	    "accept %ld\nreject %ld\nundecided %ld\nrefused %ld\n"
	    "probes_per_s %.1f\nchecks_per_s %.1f\n"
	    "latency_p50_ms %u\nlatency_p95_ms %u\nlatency_p99_ms %u\n"
	    "latency_max_ms %u\nrefuse_max_ms %u\npeak_rss_kib %ld\n"
	    "polls %ld\nfds_per_poll %.1f\nready_per_poll %.1f\n"
	    "cpu_seconds %.3f\ncpu_us_per_probe %.1f\n",
	    run.done, run.naddrs, inflight, run.gated ? limit : 0,
	    run.gated ? queue_max : 0, run.running_max, t, run.captured,
	    run.matches, run.failed, run.timedout, run.skipped,
	    run.verdicts[DETECTOR_ACCEPT], run.verdicts[DETECTOR_REJECT],
	    run.verdicts[DETECTOR_UNDECIDED], run.refused,
	    (double)run.captured / t, (double)run.done / t,
	    percentile(run.latency_ms, nlat, 0.50),
	    percentile(run.latency_ms, nlat, 0.95),
	    percentile(run.latency_ms, nlat, 0.99),
	    nlat ? run.latency_ms[nlat - 1] : 0, run.refuse_ms_max,
	    ru.ru_maxrss, polls, polls ? (double)polled / (double)polls : 0.0,
	    polls ? (double)ready_sum / (double)polls : 0.0, cpu,
	    run.captured ? cpu * 1e6 / (double)run.captured : 0.0);
	if (run.first_error != NULL)
		printf("first_error %s\n", run.first_error);
	if (run.first_refusal != NULL)
		printf("first_refusal %s\n", run.first_refusal);
	free(checks);
	free(pds);
	free(owner);
	free(queue);
	free(run.latency_ms);
	for (i = 0; i < run.naddrs; i++) {
		for (j = 0; j < run.ninst[i]; j++)
			free(run.via[i][j]);
	}
	free((char *)run.first_error);
	free((char *)run.first_refusal);
	NSS_Shutdown();
	return 0;
}
