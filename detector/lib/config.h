/*
 * config.h - struct detector_config, shared by config.c and the engine.
 */
#ifndef DETECTOR_CONFIG_H
#define DETECTOR_CONFIG_H

#include <limits.h>
#include <netinet/in.h>

#include "detector.h"
#include "exclude.h"

#define CONFIG_STARTTLS_MAX 32    /* `starttls` port mappings */
#define CONFIG_SITES_MAX 256      /* [site NAME] sections */
#define SPHERE_MEMBERS_MAX 8      /* SOCKS ports of one sphere group */
#define SPHERE_NAME_MAX 32        /* "europe": detector-spheres' names */

struct sphere_member {
	struct sockaddr_storage addr;
	char text[64];                  /* "127.0.0.1:9160", "[::1]:9160" */
};

/*
 * One sphere: one vote.  A sphere group ("127.0.0.1:9160|127.0.0.1:9170",
 * the SOCKS ports of several tor processes of one sphere, detector-spheres'
 * `instances = N`) is one sphere whose checks are spread across its
 * members; a plain sphere is a group of one.
 */
struct sphere {
	struct sphere_member member[SPHERE_MEMBERS_MAX];
	unsigned int nmembers;
	char text[SPHERE_MEMBERS_MAX * 48];     /* as listed, '|' between */
	/* Appended: the region the sphere exits in, "europe" from
	 * "europe=127.0.0.1:9160" (detector-spheres list); "" unnamed. */
	char name[SPHERE_NAME_MAX + 1];
};

/* A [site NAME] section: the policy for NAME and every name below it
 * (label-aligned, as `exclude`), or for an address range. */
struct site {
	struct exclude_list match;      /* one rule: NAME */
	int line;                       /* of the section header */
	unsigned int quorum;            /* 0: the global one */
	int on_undecided;               /* -1: the global one */
	int on_mitm;                    /* -1: the global one */
	int key_line[3];                /* quorum, on_undecided, on_mitm */
	/* Appended: the evidence options (config_evidence_for()). */
	int require_direct_staple;      /* -1: the global one (no) */
	int tolerance;                  /* -1: the global one (off) */
	int evidence_line[2];           /* the two keys' lines */
};

enum log_level {
	LOG_OFF = 0,
	LOG_ERRORS,          /* refusals and failures */
	LOG_DECISIONS,       /* every handshake's decision */
};

struct detector_config {
	struct sphere spheres[DETECTOR_MAX_SPHERES];
	unsigned int nspheres;
	unsigned int quorum;
	unsigned int probe_timeout_ms;
	unsigned int deadline_ms;
	enum detector_undecided_policy on_undecided;
	enum detector_mitm_policy on_mitm;
	struct site *sites;             /* heap, nsites of them */
	size_t nsites;
	int enabled;                    /* the NSS integration probes at all */
	enum log_level log_level;       /* NSS integration logging */
	int log_syslog;                 /* to syslog instead of stderr */
	char cache_path[PATH_MAX];      /* "": the per-user default; "off" */
	int remember;                   /* consult and record verdicts */
	unsigned int cache_validity_s;  /* how long an ACCEPT is trusted */
	unsigned int history_days;      /* key continuity window; 0 off */
	struct exclude_list exclude;
	/* `starttls`: ports whose preamble differs from the usual one. */
	struct {
		unsigned int port;
		enum detector_starttls proto;
	} starttls[CONFIG_STARTTLS_MAX];
	unsigned int nstarttls;
	char path[PATH_MAX];            /* file loaded by load_default, if any */
	char err[1024];
	/* Appended: tolerance = survey's window (days, 1 .. history max). */
	unsigned int survey_days;
};

/* Parses one sphere list into out[]; pure, used by the setter and tests.
 * Each entry is "ip:port", a group "ip:port|ip:port", either optionally
 * named by the region it exits in: "europe=127.0.0.1:9160". */
int config_parse_spheres(const char *list, struct sphere *out,
    unsigned int *n, char *err, size_t errlen);

/* The "NAME=" before one sphere entry tok: NAME (1 to SPHERE_NAME_MAX
 * lower-case letters, digits or '-', not starting with '-') into name
 * ("" when tok has no '='), *rest after the '='.  0, or -1 with err
 * saying what to write. */
int config_sphere_name(const char *tok, char name[SPHERE_NAME_MAX + 1],
    const char **rest, char *err, size_t errlen);

/* What every configuration must satisfy however it was made (the quorum
 * is at most the number of spheres): 0, or -1 with err set. */
int config_check(const struct detector_config *cfg, char *err,
    size_t errlen);

/* $xdg_var/leaf, else $HOME/home_dir/leaf (each only if absolute): the
 * XDG base directory rule for the per-user configuration and cache.
 * Returns 0 if neither can be formed. */
int config_xdg_path(const char *xdg_var, const char *home_dir,
    const char *leaf, char *out, size_t size);

/* "off", "errors" or "decisions", optionally ",syslog" or ",stderr". */
int config_parse_log(const char *value, enum log_level *level, int *syslog_);

/*
 * Parses len bytes of INI text (no NUL terminator needed) as if it were
 * the file called name (used in errors: "name:line: key 'k': ...").  All
 * or nothing, like detector_config_load_file(), which reads the file and
 * calls this; the fuzz target calls it directly.
 */
int config_load_string(struct detector_config *cfg, const char *text,
    size_t len, const char *name);

/* The STARTTLS preamble for port: the `starttls` key's mapping, else the
 * port's usual one (detector_starttls_for_port). */
enum detector_starttls config_starttls_for_port(
    const struct detector_config *cfg, unsigned int port);

/* The member of sphere s a check uses, from a number that differs from
 * check to check (a hash of its random isolation token): spread. */
const struct sphere_member *config_sphere_member(const struct sphere *s,
    unsigned int pick);

/* The [site] section that applies to host (normalised), the most specific
 * one, or NULL. */
const struct site *config_site_for(const struct detector_config *cfg,
    const char *host);

/* The policy in force for host (normalised). */
void config_policy_for(const struct detector_config *cfg, const char *host,
    struct detector_policy *out);

/* The evidence options in force for host (normalised): the most
 * specific [site] section's require_direct_staple and tolerance, else
 * no and off (there are no global ones: both are per site, opt-in). */
void config_evidence_for(const struct detector_config *cfg, const char *host,
    int *require_direct_staple, enum detector_tolerance *tolerance);

/* A [site] key's value for `tolerance`: "off", "same-issuer", "survey";
 * 0, or -1 if unknown. */
int config_parse_tolerance(const char *s, enum detector_tolerance *t);

/* Frees what config_copy() allocated in cfg (not cfg itself). */
void config_release(struct detector_config *cfg);

/* Deep copy (the exclude list and the sites are heap memory). */
int config_copy(struct detector_config *dst, const struct detector_config *src);

#endif
