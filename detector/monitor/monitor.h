/*
 * monitor.h - detector-monitor: server operators watch their own services
 * from every sphere and are alerted when the world sees a key they did not
 * deploy.  Shared by the monitor's files, one concept each:
 *
 *   mconfig.c  the INI file: [monitor] settings, one section per service
 *   history.c  the state file: per-service key history, path states
 *   assess.c   one cycle's observations against expectation and history:
 *              status and events (pure)
 *   alert.c    events out: hooks, report files, stdout, syslog
 *   report.c   one cycle as a Nagios status line or a JSON object
 *   main.c     command line, probing, scheduling, signals
 */
#ifndef DETECTOR_MONITOR_H
#define DETECTOR_MONITOR_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "cli.h"
#include "detector.h"

#define MON_KEY_LEN DETECTOR_SHA256_LEN
#define MON_MAX_EXPECTED 16            /* expected keys per service */
#define MON_MAX_SERVICES 256
#define MON_MAX_PATHS (DETECTOR_MAX_SPHERES + 1)   /* spheres + direct */
#define MON_MAX_HISTORY 64             /* keys remembered per service */
#define MON_NAME_MAX 64
#define MON_HOST_MAX 254
#define MON_VIA_MAX 64
#define MON_ERR_MAX 1024

#define MON_DEFAULT_CONFIG "/etc/detector/monitor.conf"
#define MON_DEFAULT_STATE "/var/lib/detector-monitor/state.json"
#define MON_DEFAULT_INTERVAL_S 3600u
#define MON_MIN_INTERVAL_S 10u         /* in the file; --interval may go lower */
#define MON_DEFAULT_HOOK_TIMEOUT_S 30u

/* Nagios plugin exit codes, also the status of a service and of a cycle. */
enum mon_status {
	MON_OK = 0,
	MON_WARNING = 1,
	MON_CRITICAL = 2,
	MON_UNKNOWN = 3,
};

/*
 * Configuration (mconfig.c).
 */
struct mon_service {
	char name[MON_NAME_MAX];        /* the section name */
	int line;                       /* line of its [section] header */
	char host[MON_HOST_MAX];
	unsigned int port;              /* 0: the protocol's usual port */
	int proto_set;
	enum detector_starttls proto;
	char address[64];               /* direct path connects here; "" */
	size_t nexpected;
	unsigned char expected[MON_MAX_EXPECTED][MON_KEY_LEN];
	unsigned int interval_s;        /* 0: [monitor]'s */
	int jitter_set;
	unsigned int jitter_s;
};

struct mon_config {
	char path[PATH_MAX];            /* the file read */
	char state_path[PATH_MAX];
	char hooks_dir[PATH_MAX];       /* "": no hooks */
	char reports_dir[PATH_MAX];     /* "": next to the state file */
	char detector_config[PATH_MAX]; /* "": the usual search path */
	unsigned int hook_timeout_s;
	unsigned int heartbeat_s;       /* 0: no heartbeat */
	unsigned int down_after;        /* failed cycles before sphere-down */
	int syslog;
	unsigned int interval_s;
	int jitter_set;
	unsigned int jitter_s;
	size_t nservices;
	struct mon_service *services;
	char err[MON_ERR_MAX];
};

/* Reads and checks the whole file; on error mc->err names file:line: key.
 * Relative paths in the file are relative to the file's directory.  NSS
 * must be initialised (PEM files are hashed). */
int mconfig_load(struct mon_config *mc, const char *path);
/* The same on an open stream; name is used in messages and to resolve
 * relative paths. */
int mconfig_parse(struct mon_config *mc, FILE *f, const char *name);
void mconfig_free(struct mon_config *mc);

/* A pin: 64 hex digits (colons allowed between bytes) or 44 characters of
 * base64, the SHA-256 of the SubjectPublicKeyInfo.  0 or -1. */
int mconfig_parse_pin(const char *s, unsigned char out[MON_KEY_LEN]);
/* The first certificate of a PEM text, as DER (malloc'd).  0 or -1. */
int mconfig_pem_first_cert(const char *text, size_t len, unsigned char **der,
    size_t *der_len, char *err, size_t errlen);
/* "tls", "smtp", "imap", "pop3", "xmpp", "ldap"; the port's usual. */
const char *mconfig_proto_name(enum detector_starttls proto);
/* "host:port/proto", "[v6]:port/proto": how messages name a service. */
void mconfig_target(const struct mon_service *s, char *buf, size_t size);
/* The effective port, interval and jitter of a service. */
unsigned int mconfig_port(const struct mon_service *s);
unsigned int mconfig_interval(const struct mon_config *mc,
    const struct mon_service *s);
unsigned int mconfig_jitter(const struct mon_config *mc,
    const struct mon_service *s);

/*
 * State (history.c).
 */
enum mon_path_mode {
	MON_PATH_UNKNOWN = 0,           /* never probed (new path) */
	MON_PATH_UP,
	MON_PATH_DOWN,                  /* reported down */
};

struct mon_path_state {
	char via[MON_VIA_MAX];          /* "direct" or the sphere's ip:port */
	enum mon_path_mode mode;
	unsigned int fails;             /* consecutive failed cycles */
};

struct mon_key_hist {
	unsigned char spki[MON_KEY_LEN];
	int64_t first_seen, last_seen;  /* Unix time, for people */
	int64_t last_seq;               /* the last cycle (seq) that saw it */
	int returned;                   /* reported as returning already */
};

struct mon_svc_state {
	char name[MON_NAME_MAX];
	char host[MON_HOST_MAX];
	unsigned int port;
	char proto[8];
	int64_t last_data;              /* last cycle in which a key was seen */
	int64_t seq;                    /* cycles with data so far: the clock
	                                   of the history (seconds are too
	                                   coarse to order cycles) */
	size_t nalerted;                /* unexpected keys alerted since the */
	unsigned char alerted[MON_MAX_HISTORY][MON_KEY_LEN];   /* recovery */
	size_t npaths;
	struct mon_path_state paths[MON_MAX_PATHS];
	size_t nkeys;
	struct mon_key_hist keys[MON_MAX_HISTORY];
	int used;                       /* configured now (kept when saved) */
};

struct mon_state {
	int64_t heartbeat_last;
	size_t n;
	struct mon_svc_state *svcs;
};

/* Reads the state file; a missing file is an empty state.  -1 with err
 * naming the file and what is wrong with it (never a silent reset). */
int history_load(struct mon_state *st, const char *path, char *err,
    size_t errlen);
/* The same from memory (for the fuzzer). */
int history_parse(struct mon_state *st, const char *text, size_t len,
    const char *name, char *err, size_t errlen);
/* Atomically replaces the file (mode 0600, written to a temporary file in
 * the same directory, fsync'd, renamed); only services marked used. */
int history_save(const struct mon_state *st, const char *path, char *err,
    size_t errlen);
void history_free(struct mon_state *st);
/* The state of a configured service, created (or reset, if its host, port
 * or protocol changed) as needed; marks it used.  NULL: out of memory. */
struct mon_svc_state *history_service(struct mon_state *st,
    const struct mon_service *svc);
struct mon_key_hist *history_key(struct mon_svc_state *ss,
    const unsigned char spki[MON_KEY_LEN]);

/*
 * One cycle of one service (assess.c).
 */
struct mon_obs_path {
	char via[MON_VIA_MAX];
	int direct;
	int ok;                         /* a certificate was seen */
	const char *error;              /* why not */
	unsigned int ms;
	unsigned char spki[MON_KEY_LEN];
	unsigned char cert[MON_KEY_LEN];
	int expected;                   /* set by assess() */
	const struct detector_path *raw;   /* the chain, for reports */
	char region[MON_VIA_MAX];       /* the sphere's region ("europe",
	                                   detector.conf's spheres = NAME=);
	                                   "" for direct or unnamed */
};

struct mon_observation {
	int64_t now;
	size_t npaths;
	struct mon_obs_path paths[MON_MAX_PATHS];
};

enum mon_event_type {
	MON_EV_UNEXPECTED_KEY = 0,
	MON_EV_RECOVERED,
	MON_EV_SUSPICIOUS_RETURN,
	MON_EV_SPHERE_DOWN,
	MON_EV_SPHERE_UP,
	MON_EV_DIRECT_DOWN,
	MON_EV_DIRECT_UP,
	MON_EV_HEARTBEAT,
	MON_EV_COUNT,
};

struct mon_keylist {
	size_t n;
	unsigned char k[MON_MAX_PATHS][MON_KEY_LEN];
};

struct mon_assessment {
	enum mon_status status;
	const char *why;                /* for a non-OK status */
	unsigned int paths_ok, paths_down, spheres_ok, spheres_down;
	struct mon_keylist seen;        /* distinct keys seen */
	struct mon_keylist unexpected;  /* distinct keys outside the set */
	struct mon_keylist suspicious;  /* expected keys seen again */
	int events[MON_EV_COUNT];       /* which events this cycle raises */
	struct mon_keylist new_unexpected;   /* for MON_EV_UNEXPECTED_KEY */
	struct mon_keylist returning;   /* of those, seen before */
	size_t nwent_down, ncame_up;
	size_t went_down[MON_MAX_PATHS], came_up[MON_MAX_PATHS];  /* indices */
	/* Where a key the operator did not deploy is seen, from the
	 * monitor's vantage (assess_locality()); "where" is one line naming
	 * the paths, spheres by region: "europe (127.0.0.1:9162)". */
	enum detector_locality locality;
	char where[1024];
};

/* Compares obs with svc's expected keys and ss's history, fills a, and
 * updates ss (history, alert state, path states).  Pure. */
void assess(const struct mon_service *svc, unsigned int down_after,
    struct mon_svc_state *ss, struct mon_observation *obs,
    struct mon_assessment *a);

/*
 * Where the unexpected keys sit, from what the paths saw against the
 * expected keys (not against the direct path: the operator knows the
 * right keys).  The monitor runs next to the server or anywhere; its
 * direct path is its own network's way to the server:
 *   CONSISTENT        every path that answered sees a deployed key
 *   LOCAL_PATH        only the direct path sees another key: the monitor's
 *                     own network (next to the server: the server's LAN,
 *                     its hosting network, this host) intercepts
 *   REGIONAL          some spheres see another key, others a deployed
 *                     one: an interceptor on those regions' paths
 *   SERVER_OR_GLOBAL  every sphere that answered sees another key: the
 *                     server itself serves it when the direct path sees it
 *                     too (a compromise, or a key deployed without being
 *                     listed), else a global DNS hijack or the server's
 *                     upstream network (the direct path sees a deployed
 *                     key)
 *   UNKNOWN           no sphere answered, or no path at all
 * Fills a->locality and a->where.  Pure; called by assess().
 */
void assess_locality(const struct mon_observation *obs,
    struct mon_assessment *a);

const char *mon_event_name(enum mon_event_type ev);
const char *mon_status_name(enum mon_status st);

/*
 * Output (alert.c, report.c).
 */
struct mon_cycle_service {
	const struct mon_service *svc;
	struct mon_observation obs;
	struct mon_assessment a;
	int probed;                     /* due this cycle */
	int assessed;                   /* a, obs hold its last cycle */
	char report[PATH_MAX];          /* report file written, if any */
	/* What the engine returned; obs points into them until released. */
	struct detector_path *direct;
	struct detector_result *res;
	char direct_err[256], survey_err[256];
};

struct mon_alert_opts {
	const struct mon_config *mc;
	int to_stdout;                  /* event lines on stdout */
	int to_stderr;                  /* ... or on stderr */
};

/* Writes the report file (if the service has events) and runs every hook
 * for every event of the service, logs each event. */
void alert_service(const struct mon_alert_opts *o,
    struct mon_cycle_service *cs);
/* The heartbeat: one hook call, no service. */
void alert_heartbeat(const struct mon_alert_opts *o, enum mon_status st,
    const char *summary);
/*
 * The hook runner inside alert_service() and alert_heartbeat(), declared
 * for its unit test (tests/unit/test_monitor_hooks.c).
 */
#define HOOK_ENV_MAX 32
struct alert_hook_env {              /* the DETECTOR_* variables of a run */
	size_t n;
	char *vars[HOOK_ENV_MAX];
};
void alert_env_set(struct alert_hook_env *e, const char *name,
    const char *value);
void alert_env_free(struct alert_hook_env *e);
/* The hooks folder, opened without following a symlink and checked: a
 * descriptor to look hooks up in, or -1 with err (no hook may run). */
int alert_hooks_dir_open(const char *dir, char *err, size_t errlen);
/* One entry of that folder: a descriptor of the hook (O_PATH), or -1 and
 * why not in err ("" for an entry that is no hook at all). */
int alert_hook_open(int dfd, const char *path, const char *name, char *err,
    size_t errlen);
/* Runs the checked hook fd (named path) with envp and argument event,
 * bounded by mc's hook_timeout. */
void alert_run_hook(const struct mon_config *mc, int fd, const char *path,
    char **envp, const char *event);
/* Every executable regular file in mc's hooks folder, in name order. */
void alert_run_hooks(const struct mon_config *mc,
    const struct alert_hook_env *e, const char *event);

/* Messages of the monitor itself (errors, start, stop). */
void mon_log(const struct mon_config *mc, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Over the services probed this cycle, or (all) every service with a
 * last cycle, as the heartbeat reports them. */
enum mon_status report_status(const struct mon_cycle_service *cs, size_t n,
    int all);
/* The Nagios status line with performance data (and long output). */
void report_nagios(FILE *out, const struct mon_cycle_service *cs, size_t n,
    unsigned int ms);
/* One line of JSON for the cycle. */
int report_json(FILE *out, const struct mon_cycle_service *cs, size_t n,
    unsigned int ms, int64_t now);
/* How reports name a path: "direct", "127.0.0.1:9164", or by region
 * "europe (127.0.0.1:9162)". */
void report_path_label(const struct mon_obs_path *p, char *buf,
    size_t size);
/* "2 services OK, 1 CRITICAL (web: unexpected key ...)" */
void report_summary(char *buf, size_t size, const struct mon_cycle_service *cs,
    size_t n, int all);

#endif
