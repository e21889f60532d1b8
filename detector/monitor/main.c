/*
 * detector-monitor - watch your own TLS services from every sphere.
 *
 * Client-side checks cannot see an attacker next to the server or a
 * global DNS hijack: every sphere sees the attacker's key.  The operator
 * can: they know which keys they deployed.  detector-monitor probes each
 * configured service through every sphere (and directly, unless
 * --tor-only), compares what each path saw with the expected keys and
 * with its own history, and alerts once per change through hooks,
 * stdout and syslog.
 *
 *   detector-monitor [-c FILE]          daemon: every service on its
 *                                       interval, until SIGTERM
 *   detector-monitor --once [--json]    one cycle; Nagios/Icinga plugin:
 *                                       exit 0 OK, 1 WARNING,
 *                                       2 CRITICAL, 3 UNKNOWN
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <nss.h>
#include <prinit.h>
#include <signal.h>
#include <ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"
#include "monotonic.h"

struct options {
	const char *config;
	const char *detector_config;
	const char *spheres;
	const char *state;
	int once, json, tor_only, check, syslog_, verbose;
	long cycles;              /* 0: forever */
	long interval;            /* -1: as configured */
};

/* One loaded configuration: the monitor's file, the engine's, the context,
 * and the state of each service. */
struct setup {
	struct mon_config mc;
	struct detector_config *dcfg;
	struct detector *ctx;
	struct mon_svc_state **ss;
	struct mon_cycle_service *cs;
	int64_t *due_ms;          /* monotonic, per service */
};

static struct {
	struct options o;
	struct setup s;
	struct mon_state st;
	int lock_fd;
	int nss_up;
} run = { .lock_fd = -1 };

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: detector-monitor [options]\n"
	    "  -c, --config FILE          monitor configuration (default "
	    MON_DEFAULT_CONFIG ")\n"
	    "      --detector-config FILE engine settings: spheres, timeouts "
	    "(default:\n"
	    "                             [monitor] detector_config, else "
	    "the usual search)\n"
	    "  -s, --spheres LIST         SOCKS5 spheres, ip:port,ip:port,...\n"
	    "      --state FILE           state file (overrides [monitor] "
	    "state)\n"
	    "      --once                 one cycle, Nagios plugin exit "
	    "status and output\n"
	    "      --json                 one JSON object per cycle on stdout\n"
	    "      --tor-only             no direct connection, spheres only\n"
	    "      --cycles N             stop after N cycles (daemon mode)\n"
	    "      --interval SECONDS     every service's interval, no "
	    "jitter (testing)\n"
	    "      --syslog               events to syslog as well\n"
	    "      --check-config         load the configuration, print it, "
	    "exit\n"
	    "  -v, --verbose              a status line after every cycle\n"
	    "  -h, --help                 this text\n"
	    "Exit (--once): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n");
}

static void
release(void)
{
	size_t i;

	if (run.s.cs != NULL)
		for (i = 0; i < run.s.mc.nservices; i++) {
			detector_result_free(run.s.cs[i].res);
			detector_path_free(run.s.cs[i].direct);
		}
	free(run.s.cs);
	free(run.s.ss);
	free(run.s.due_ms);
	mconfig_free(&run.s.mc);
	detector_free(run.s.ctx);
	detector_config_free(run.s.dcfg);
	memset(&run.s, 0, sizeof(run.s));
	history_free(&run.st);
	if (run.lock_fd != -1)
		close(run.lock_fd);
	if (run.nss_up && NSS_Shutdown() != SECSuccess)
		fprintf(stderr, "detector-monitor: NSS shutdown reported "
		    "leaked references\n");
	PR_Cleanup();
}

/* A fatal error (cli_die()): in --once mode also the UNKNOWN status line
 * Nagios needs, and syslog. */
static void
on_die(const char *msg)
{
	if (run.o.once && !run.o.json)
		printf("DETECTOR-MONITOR UNKNOWN - %s\n", msg);
	else if (run.o.once) {
		json_t *j = json_pack("{s:s, s:i, s:s}", "status", "UNKNOWN",
		    "exit", MON_UNKNOWN, "error", msg);
		char *text = j ? json_dumps(j, JSON_PRESERVE_ORDER |
		    JSON_COMPACT) : NULL;
		printf("%s\n", text ? text : "{\"status\":\"UNKNOWN\","
		    "\"exit\":3}");
		free(text);
		json_decref(j);
	}
	if (run.s.mc.syslog || run.o.syslog_)
		syslog(LOG_ERR, "%s", msg);
}

static void
parse_args(int argc, char **argv, struct options *o)
{
	enum { OPT_DCONFIG = 256, OPT_STATE, OPT_ONCE, OPT_JSON, OPT_TOR_ONLY,
	    OPT_CYCLES, OPT_INTERVAL, OPT_SYSLOG, OPT_CHECK };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "detector-config", required_argument, NULL, OPT_DCONFIG },
		{ "spheres", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, OPT_STATE },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "tor-only", no_argument, NULL, OPT_TOR_ONLY },
		{ "cycles", required_argument, NULL, OPT_CYCLES },
		{ "interval", required_argument, NULL, OPT_INTERVAL },
		{ "syslog", no_argument, NULL, OPT_SYSLOG },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->config = MON_DEFAULT_CONFIG;
	o->interval = -1;
	/* Nagios reads stdout: know --once before any error is printed. */
	for (c = 1; c < argc; c++)
		if (strcmp(argv[c], "--once") == 0)
			o->once = 1;
	while ((c = getopt_long(argc, argv, "c:s:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o->config = optarg; break;
		case OPT_DCONFIG: o->detector_config = optarg; break;
		case 's': o->spheres = optarg; break;
		case OPT_STATE: o->state = optarg; break;
		case OPT_ONCE: o->once = 1; break;
		case OPT_JSON: o->json = 1; break;
		case OPT_TOR_ONLY: o->tor_only = 1; break;
		case OPT_CYCLES: o->cycles = cli_parse_num(optarg, "--cycles", 1,
		    1000000); break;
		case OPT_INTERVAL: o->interval = cli_parse_num(optarg,
		    "--interval", 1, 365L * 86400); break;
		case OPT_SYSLOG: o->syslog_ = 1; break;
		case OPT_CHECK: o->check = 1; break;
		case 'v': o->verbose = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(MON_UNKNOWN);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(MON_UNKNOWN);
	}
	if (o->once && o->cycles)
		cli_die("--once and --cycles exclude each other");
}

static void
setup_free(struct setup *s)
{
	free(s->cs);
	free(s->ss);
	free(s->due_ms);
	mconfig_free(&s->mc);
	detector_free(s->ctx);
	detector_config_free(s->dcfg);
	memset(s, 0, sizeof(*s));
}

/* Loads both configuration files and builds a context; -1 with err. */
static int
setup_load(const struct options *o, struct setup *s, char *err, size_t size)
{
	const char *dpath;
	const char *rule;
	size_t i;

	memset(s, 0, sizeof(*s));
	if (mconfig_load(&s->mc, o->config) == -1) {
		snprintf(err, size, "%s", s->mc.err);
		return -1;
	}
	if (o->state != NULL)
		snprintf(s->mc.state_path, sizeof(s->mc.state_path), "%s",
		    o->state);
	if (o->syslog_)
		s->mc.syslog = 1;
	if ((s->dcfg = detector_config_new()) == NULL) {
		snprintf(err, size, "out of memory");
		return -1;
	}
	dpath = o->detector_config ? o->detector_config :
	    s->mc.detector_config[0] ? s->mc.detector_config : NULL;
	if ((dpath ? detector_config_load_file(s->dcfg, dpath) :
	    detector_config_load_default(s->dcfg)) == -1 ||
	    (o->spheres && detector_config_set_spheres(s->dcfg,
	    o->spheres) == -1)) {
		snprintf(err, size, "%s", detector_config_error(s->dcfg));
		return -1;
	}
	if ((s->ctx = detector_new()) == NULL) {
		snprintf(err, size, "out of memory");
		return -1;
	}
	if (detector_configure(s->ctx, s->dcfg) == -1) {
		snprintf(err, size, "%s", detector_error(s->ctx));
		return -1;
	}
	for (i = 0; i < s->mc.nservices; i++) {
		const struct mon_service *svc = &s->mc.services[i];
		if ((rule = detector_excluded(s->ctx, svc->host)) != NULL) {
			snprintf(err, size, "%s:%d: [%s]: host %s is excluded "
			    "from probing by the rule '%s' of the engine "
			    "configuration; it could never be monitored",
			    s->mc.path, svc->line, svc->name, svc->host, rule);
			return -1;
		}
	}
	s->ss = calloc(s->mc.nservices, sizeof(*s->ss));
	s->cs = calloc(s->mc.nservices, sizeof(*s->cs));
	s->due_ms = calloc(s->mc.nservices, sizeof(*s->due_ms));
	if (s->ss == NULL || s->cs == NULL || s->due_ms == NULL) {
		snprintf(err, size, "out of memory");
		return -1;
	}
	return 0;
}

/* Binds each configured service to its state (after the state is loaded:
 * history_service may move the array, so all lookups come first). */
static int
setup_bind(struct setup *s, struct mon_state *st)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		st->svcs[i].used = 0;
	for (i = 0; i < s->mc.nservices; i++)
		if (history_service(st, &s->mc.services[i]) == NULL)
			return -1;
	for (i = 0; i < s->mc.nservices; i++) {
		s->ss[i] = history_service(st, &s->mc.services[i]);
		s->cs[i].svc = &s->mc.services[i];
	}
	return 0;
}

static void
obs_add(struct mon_observation *obs, const struct detector_path *p,
    const char *via, const char *region, int direct, const char *error)
{
	struct mon_obs_path *op;

	if (obs->npaths == MON_MAX_PATHS)
		return;
	op = &obs->paths[obs->npaths++];
	memset(op, 0, sizeof(*op));
	snprintf(op->via, sizeof(op->via), "%s", via);
	snprintf(op->region, sizeof(op->region), "%s", region ? region : "");
	op->direct = direct;
	if (p == NULL) {
		op->error = error;
		return;
	}
	op->raw = p;
	op->ms = p->ms;
	op->ok = p->status == DETECTOR_PATH_SEEN && p->have_cert &&
	    p->ncerts > 0;
	if (op->ok) {
		memcpy(op->spki, p->spki_sha256, MON_KEY_LEN);
		memcpy(op->cert, p->cert_sha256, MON_KEY_LEN);
	} else {
		op->error = p->error ? p->error : "no certificate";
	}
}

/* Probes one service: directly (unless --tor-only), then every sphere. */
static void
probe_service(struct setup *s, size_t i, int tor_only)
{
	struct mon_cycle_service *cs = &s->cs[i];
	const struct mon_service *svc = cs->svc;
	struct mon_observation *obs = &cs->obs;
	unsigned int port = mconfig_port(svc);
	size_t k;

	detector_result_free(cs->res);
	detector_path_free(cs->direct);
	cs->res = NULL;
	cs->direct = NULL;
	cs->report[0] = '\0';
	memset(obs, 0, sizeof(*obs));
	obs->now = (int64_t)time(NULL);
	if (detector_set_starttls(s->ctx, svc->proto) == -1) {
		snprintf(cs->survey_err, sizeof(cs->survey_err), "%s",
		    detector_error(s->ctx));
		snprintf(cs->direct_err, sizeof(cs->direct_err), "%s",
		    cs->survey_err);
	} else {
		if (!tor_only && detector_fetch(s->ctx, svc->host, port,
		    svc->address[0] ? svc->address : NULL, &cs->direct) == -1)
			snprintf(cs->direct_err, sizeof(cs->direct_err), "%s",
			    detector_error(s->ctx));
		if (detector_survey(s->ctx, svc->host, port, &cs->res) == -1)
			snprintf(cs->survey_err, sizeof(cs->survey_err), "%s",
			    detector_error(s->ctx));
	}
	if (!tor_only)
		obs_add(obs, cs->direct, "direct", NULL, 1, cs->direct_err);
	if (cs->res != NULL) {
		for (k = 0; k < cs->res->nspheres; k++)
			obs_add(obs, &cs->res->spheres[k],
			    cs->res->spheres[k].via,
			    cs->res->spheres[k].region, 0, NULL);
	} else {
		/* No survey at all: every sphere is down, by name. */
		for (k = 0; k < detector_config_nspheres(s->dcfg); k++)
			obs_add(obs, NULL, detector_config_sphere(s->dcfg,
			    (unsigned int)k), detector_config_sphere_region(
			    s->dcfg, (unsigned int)k), 0, cs->survey_err);
	}
	cs->probed = 1;
}

/* Takes the state's lock file for the whole run: two monitors writing one
 * state would each forget what the other alerted. */
static void
lock_state(const char *state)
{
	char path[PATH_MAX + 8], dir[PATH_MAX];
	const char *slash = strrchr(state, '/');

	if (slash != NULL && slash != state) {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - state), state);
		if (mkdir(dir, 0700) == -1 && errno != EEXIST)
			cli_die("state folder %s: %s", dir, strerror(errno));
	}
	snprintf(path, sizeof(path), "%s.lock", state);
	run.lock_fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (run.lock_fd == -1)
		cli_die("lock file %s: %s", path, strerror(errno));
	if (flock(run.lock_fd, LOCK_EX | LOCK_NB) == -1)
		cli_die("lock file %s: %s (is another detector-monitor using the "
		    "state file %s? give each its own --state)", path,
		    errno == EWOULDBLOCK ? "locked" : strerror(errno), state);
}

/* After a cycle: assess, remember, alert, and the heartbeat when due. */
static enum mon_status
finish_cycle(struct setup *s, unsigned int ms, int *save_failed)
{
	struct mon_alert_opts ao = { &s->mc, !run.o.once && !run.o.json,
	    run.o.once || run.o.json };
	char err[MON_ERR_MAX], summary[2048];
	enum mon_status st;
	int64_t now = (int64_t)time(NULL);
	size_t i;

	for (i = 0; i < s->mc.nservices; i++) {
		if (!s->cs[i].probed)
			continue;
		assess(s->cs[i].svc, s->mc.down_after, s->ss[i],
		    &s->cs[i].obs, &s->cs[i].a);
		s->cs[i].assessed = 1;
	}
	for (i = 0; i < s->mc.nservices; i++)
		if (s->cs[i].probed)
			alert_service(&ao, &s->cs[i]);
	st = report_status(s->cs, s->mc.nservices, 0);
	if (s->mc.heartbeat_s > 0 &&
	    now - run.st.heartbeat_last >= (int64_t)s->mc.heartbeat_s) {
		/* Every service as last seen, not only those due now. */
		report_summary(summary, sizeof(summary), s->cs,
		    s->mc.nservices, 1);
		alert_heartbeat(&ao, report_status(s->cs, s->mc.nservices, 1),
		    summary);
		run.st.heartbeat_last = now;
	}
	*save_failed = 0;
	if (history_save(&run.st, s->mc.state_path, err, sizeof(err)) == -1) {
		mon_log(&s->mc, LOG_ERR, "%s", err);
		*save_failed = 1;
	}
	if (run.o.json)
		report_json(stdout, s->cs, s->mc.nservices, ms, now);
	else if (run.o.once || run.o.verbose) {
		report_nagios(run.o.once ? stdout : stderr, s->cs,
		    s->mc.nservices, ms);
	}
	fflush(stdout);
	return st;
}

static int
run_once(struct setup *s)
{
	int64_t t0 = monotonic_ms();
	enum mon_status st;
	int save_failed;
	size_t i;

	for (i = 0; i < s->mc.nservices; i++)
		probe_service(s, i, run.o.tor_only);
	st = finish_cycle(s, (unsigned int)(monotonic_ms() - t0), &save_failed);
	if (save_failed && st == MON_OK)
		st = MON_UNKNOWN;
	return (int)st;
}

static int64_t
next_due(const struct setup *s, size_t i, int64_t now)
{
	unsigned int interval, jitter;
	uint64_t r = 0;

	if (run.o.interval > 0) {
		interval = (unsigned int)run.o.interval;
		jitter = 0;
	} else {
		interval = mconfig_interval(&s->mc, &s->mc.services[i]);
		jitter = mconfig_jitter(&s->mc, &s->mc.services[i]);
	}
	if (jitter > 0 && getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (uint64_t)random();
	return now + (int64_t)interval * 1000 +
	    (jitter ? (int64_t)(r % ((uint64_t)jitter * 1000 + 1)) : 0);
}

/* SIGHUP: a new configuration, or (if it does not load) the old one. */
static void
reload(struct setup *s)
{
	struct setup n;
	char err[MON_ERR_MAX];
	size_t i, j;

	if (setup_load(&run.o, &n, err, sizeof(err)) == -1) {
		mon_log(&s->mc, LOG_ERR, "reload: %s; keeping the running "
		    "configuration", err);
		setup_free(&n);
		return;
	}
	if (strcmp(n.mc.state_path, s->mc.state_path) != 0) {
		mon_log(&s->mc, LOG_WARNING, "reload: a new state file needs "
		    "a restart; still using %s", s->mc.state_path);
		snprintf(n.mc.state_path, sizeof(n.mc.state_path), "%s",
		    s->mc.state_path);
	}
	if (setup_bind(&n, &run.st) == -1) {
		mon_log(&s->mc, LOG_ERR, "reload: out of memory");
		setup_free(&n);
		return;
	}
	/* Services that stay keep their schedule; new ones are due now. */
	for (i = 0; i < n.mc.nservices; i++) {
		n.due_ms[i] = monotonic_ms();
		for (j = 0; j < s->mc.nservices; j++)
			if (strcmp(s->mc.services[j].name,
			    n.mc.services[i].name) == 0)
				n.due_ms[i] = s->due_ms[j];
	}
	for (i = 0; i < s->mc.nservices; i++) {
		detector_result_free(s->cs[i].res);
		detector_path_free(s->cs[i].direct);
	}
	setup_free(s);
	*s = n;
	mon_log(&s->mc, LOG_NOTICE, "reloaded %s: %zu services",
	    s->mc.path, s->mc.nservices);
}

static int
run_daemon(struct setup *s)
{
	sigset_t set;
	long cycles = 0;
	size_t i;
	int save_failed;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Signals wait for us: a probe is never cut short by one. */
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < s->mc.nservices; i++)
		s->due_ms[i] = monotonic_ms();
	mon_log(&s->mc, LOG_NOTICE, "watching %zu service%s from %u "
	    "sphere%s%s; state %s", s->mc.nservices, s->mc.nservices == 1 ?
	    "" : "s", detector_config_nspheres(s->dcfg),
	    detector_config_nspheres(s->dcfg) == 1 ? "" : "s",
	    run.o.tor_only ? " (no direct path)" : " and directly",
	    s->mc.state_path);
	for (;;) {
		int64_t now = monotonic_ms(), first = INT64_MAX, t0;
		struct timespec ts;
		siginfo_t info;
		int sig, any = 0, stop = 0;

		for (i = 0; i < s->mc.nservices; i++)
			if (s->due_ms[i] < first)
				first = s->due_ms[i];
		if (first > now) {
			ts.tv_sec = (time_t)((first - now) / 1000);
			ts.tv_nsec = (long)((first - now) % 1000) * 1000000;
			sig = sigtimedwait(&set, &info, &ts);
			if (sig == SIGHUP)
				reload(s);
			else if (sig == SIGTERM || sig == SIGINT)
				break;
			continue;
		}
		t0 = monotonic_ms();
		for (i = 0; i < s->mc.nservices; i++) {
			sigset_t pending;

			s->cs[i].probed = 0;
			if (stop || s->due_ms[i] > t0)
				continue;
			probe_service(s, i, run.o.tor_only);
			s->due_ms[i] = next_due(s, i, monotonic_ms());
			any = 1;
			/* SIGTERM during a long cycle: finish this service,
			 * save, stop. */
			sigpending(&pending);
			if (sigismember(&pending, SIGTERM) ||
			    sigismember(&pending, SIGINT))
				stop = 1;
		}
		if (any)
			finish_cycle(s, (unsigned int)(monotonic_ms() - t0),
			    &save_failed);
		if (stop || (run.o.cycles > 0 && ++cycles >= run.o.cycles))
			break;
	}
	mon_log(&s->mc, LOG_NOTICE, "stopping");
	return 0;
}

static void
check_config(const struct setup *s)
{
	char hex[2 * MON_KEY_LEN + 1], target[MON_HOST_MAX + 32];
	size_t i, k;

	printf("%s: %zu service%s, spheres from %s (%u), state %s, hooks %s\n",
	    s->mc.path, s->mc.nservices, s->mc.nservices == 1 ? "" : "s",
	    run.o.spheres ? "--spheres" : detector_config_path(s->dcfg) ?
	    detector_config_path(s->dcfg) : run.o.detector_config ?
	    run.o.detector_config : s->mc.detector_config[0] ?
	    s->mc.detector_config : "built-in defaults",
	    detector_config_nspheres(s->dcfg),
	    s->mc.state_path, s->mc.hooks_dir[0] ? s->mc.hooks_dir : "none");
	for (i = 0; i < s->mc.nservices; i++) {
		const struct mon_service *v = &s->mc.services[i];
		mconfig_target(v, target, sizeof(target));
		printf("[%s] %s%s%s, every %us (+%us jitter)\n", v->name,
		    target, v->address[0] ? ", direct to " : "", v->address,
		    mconfig_interval(&s->mc, v), mconfig_jitter(&s->mc, v));
		for (k = 0; k < v->nexpected; k++) {
			cli_hex(v->expected[k], MON_KEY_LEN, hex);
			printf("  expected %s\n", hex);
		}
	}
}

int
main(int argc, char **argv)
{
	char err[MON_ERR_MAX];

	cli_init("detector-monitor", MON_UNKNOWN, on_die);
	parse_args(argc, argv, &run.o);
	atexit(release);
	if (NSS_NoDB_Init(NULL) != SECSuccess ||
	    NSS_SetDomesticPolicy() != SECSuccess)
		cli_die("cannot initialise NSS");
	run.nss_up = 1;
	if (setup_load(&run.o, &run.s, err, sizeof(err)) == -1)
		cli_die("%s", err);
	if (run.s.mc.syslog)
		openlog("detector-monitor", LOG_PID, LOG_DAEMON);
	if (run.o.check) {
		check_config(&run.s);
		return 0;
	}
	lock_state(run.s.mc.state_path);
	if (history_load(&run.st, run.s.mc.state_path, err, sizeof(err)) == -1)
		cli_die("%s", err);
	if (setup_bind(&run.s, &run.st) == -1)
		cli_die("out of memory");
	if (run.o.once)
		return run_once(&run.s);
	return run_daemon(&run.s);
}
