/*
 * detector.h - libdetector, the DetecTor engine.
 *
 * DetecTor asks: "is the certificate my direct connection got for host:port
 * the one the rest of the world sees?"  It probes host:port through several
 * SOCKS5 "spheres" (Tor clients, each exiting on a different continent),
 * compares the server key each sphere sees with the key seen directly, and
 * returns a verdict:
 *
 *   ACCEPT     at least k spheres saw the same key (k = quorum, default 4 of 5)
 *   REJECT     at least n-k+1 spheres saw a different key: likely MITM;
 *              or a validly signed stapled OCSP response, on any path,
 *              says the direct certificate is revoked (result->revoked)
 *   UNDECIDED  neither, because spheres failed or timed out
 *
 * A sphere that fails or times out is never counted as a disagreement, and a
 * single lying sphere cannot flip the verdict at the default quorum.
 *
 * Usage, in the style of libtls:
 *
 *	struct detector_config *cfg = detector_config_new();
 *	if (detector_config_load_default(cfg) == -1)
 *		errx(3, "%s", detector_config_error(cfg));
 *	struct detector *ctx = detector_new();
 *	if (detector_configure(ctx, cfg) == -1)
 *		errx(3, "%s", detector_error(ctx));
 *	struct detector_result *res;
 *	if (detector_check(ctx, "bank.test", 443, der, der_len, &res) == -1)
 *		errx(3, "%s", detector_error(ctx));
 *	if (res->verdict == DETECTOR_REJECT) ...
 *	detector_result_free(res);
 *	detector_free(ctx);
 *	detector_config_free(cfg);
 *
 * NSS must be initialised by the caller (NSS_Init, NSS_NoDB_Init, ...) before
 * detector_configure(): probes are real TLS handshakes made with NSS.
 *
 * Functions returning int return 0 on success and -1 on failure; the reason
 * is then available from detector_error() or detector_config_error() until
 * the next call on the same object.  One struct detector is used by one
 * thread at a time; separate contexts are independent.
 */
#ifndef DETECTOR_H
#define DETECTOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DETECTOR_API __attribute__((visibility("default")))
#else
#define DETECTOR_API
#endif

/* detector-spheres' five spheres, named by the region each exits in. */
#define DETECTOR_DEFAULT_SPHERES \
	"asia=127.0.0.1:9160,europe=127.0.0.1:9162,north-america=127.0.0.1:9164,africa-south-america=127.0.0.1:9166,oceania-antarctica=127.0.0.1:9168"
#define DETECTOR_DEFAULT_QUORUM 4
#define DETECTOR_DEFAULT_PROBE_TIMEOUT_MS 20000
#define DETECTOR_DEFAULT_DEADLINE_MS 30000
#define DETECTOR_DEFAULT_CACHE_VALIDITY_S 86400
#define DETECTOR_DEFAULT_HISTORY_DAYS 30        /* key continuity */
#define DETECTOR_MAX_HISTORY_DAYS 3650
#define DETECTOR_DEFAULT_SURVEY_DAYS 7          /* tolerance = survey */
#define DETECTOR_MAX_SPHERES 16
#define DETECTOR_SHA256_LEN 32

enum detector_verdict {
	DETECTOR_ACCEPT = 0,   /* consistent with at least k spheres */
	DETECTOR_REJECT,       /* inconsistent with n-k+1 spheres: likely MITM */
	DETECTOR_UNDECIDED,    /* not enough spheres answered */
	DETECTOR_EXCLUDED,     /* host matches an `exclude` rule: not probed */
};

enum detector_path_status {
	DETECTOR_PATH_MATCH = 0,  /* same certificate as the direct path */
	DETECTOR_PATH_KEY_MATCH,  /* same key, different certificate: a match */
	DETECTOR_PATH_MISMATCH,   /* a different key */
	DETECTOR_PATH_FAILED,     /* no certificate: see error */
	DETECTOR_PATH_TIMEOUT,    /* no certificate before the probe timeout */
	DETECTOR_PATH_SKIPPED,    /* not awaited: the verdict was already reached */
	DETECTOR_PATH_SEEN,       /* a direct fetch that captured a certificate */
};

/* What was done with a connection after its verdict. */
enum detector_outcome {
	DETECTOR_OUTCOME_NONE = 0,   /* not applied (a bare detector_check()) */
	DETECTOR_OUTCOME_ACCEPTED,   /* the direct connection went on */
	DETECTOR_OUTCOME_REFUSED,    /* refused (on_mitm = refuse, or a reroute
	                             * that failed) */
	DETECTOR_OUTCOME_REROUTED,   /* made again through a sphere that saw
	                             * the quorum key, and that key was shown */
};

enum detector_undecided_policy {
	DETECTOR_UNDECIDED_ACCEPT = 0,
	DETECTOR_UNDECIDED_REJECT,
};

/* What a REJECT verdict (likely MITM) does to the connection checked. */
enum detector_mitm_policy {
	DETECTOR_MITM_REFUSE = 0,       /* refuse it: the default */
	DETECTOR_MITM_REROUTE,          /* re-establish it through a sphere
	                                 * that saw the quorum's key; not
	                                 * available yet: such a connection is
	                                 * refused, and the result's note says
	                                 * so (never silently) */
};

/*
 * The policy in force for one host: the global settings, or those of the
 * most specific [site NAME] section that covers it (see detector.conf(5)).
 */
struct detector_policy {
	unsigned int quorum;
	enum detector_undecided_policy on_undecided;
	enum detector_mitm_policy on_mitm;
	char site[256];                 /* NAME of that section; "": global */
};

/* A DER object (certificate or OCSP response) as captured from the network. */
struct detector_der {
	const unsigned char *data;
	size_t len;
};

/*
 * What a stapled OCSP response (RFC 6960) said about the direct
 * certificate.  A response counts only when its signature verifies with the
 * key of the certificate's issuer (the chain certificate whose signature on
 * the direct certificate verifies), or of a responder that issuer delegated
 * to (id-kp-OCSPSigning), and when it names the direct certificate (issuer
 * name and key hashes, serial number).  Anything else is INVALID: ignored,
 * never trusted, with the reason in error.
 */
enum detector_ocsp_status {
	DETECTOR_OCSP_NONE = 0,   /* nothing stapled (or nothing known) */
	DETECTOR_OCSP_GOOD,       /* the issuer says: not revoked */
	DETECTOR_OCSP_REVOKED,    /* the issuer says: revoked */
	DETECTOR_OCSP_UNKNOWN,    /* the responder does not know it */
	DETECTOR_OCSP_INVALID,    /* stapled but unusable: see error */
};

struct detector_ocsp {
	enum detector_ocsp_status status;
	/* GOOD/REVOKED/UNKNOWN: thisUpdate is not in the future (5 minutes'
	 * slack) and nextUpdate has not passed (no nextUpdate: thisUpdate
	 * within the last 24 hours).  0: stale. */
	int fresh;
	int64_t produced_at;              /* unix seconds */
	int64_t this_update;
	int64_t next_update;              /* 0: absent */
	int64_t revoked_at;               /* REVOKED: revocationTime */
	const char *error;                /* INVALID: why it was ignored */
};

/*
 * Where the attack sits, as far as the paths tell:
 *   CONSISTENT        every path that saw a certificate saw the same key
 *   LOCAL_PATH        the spheres agree with each other and only the direct
 *                     path differs: the attacker is on the user's own path
 *   REGIONAL          some spheres (named in locality_detail) see another
 *                     key than the others: an attacker on some regions'
 *                     paths, or a site serving regional keys
 *   SERVER_OR_GLOBAL  every path agrees, on a key other than the one last
 *                     accepted for host:port (the key history is the
 *                     verdict cache: none with cache = off or no earlier
 *                     ACCEPT, and CONSISTENT then says so): an attacker
 *                     next to the server, a global DNS hijack, or the
 *                     operator's own key rotation, which only the
 *                     operator's monitor can settle.  The verdict is
 *                     unchanged.
 *   UNKNOWN           too few paths answered to tell
 */
enum detector_locality {
	DETECTOR_LOCALITY_UNKNOWN = 0,
	DETECTOR_LOCALITY_CONSISTENT,
	DETECTOR_LOCALITY_LOCAL_PATH,
	DETECTOR_LOCALITY_REGIONAL,
	DETECTOR_LOCALITY_SERVER_OR_GLOBAL,
};

/* What one path (the direct connection or one sphere) saw of host:port. */
struct detector_path {
	const char *via;                  /* "direct" or the sphere "ip:port" */
	enum detector_path_status status;
	const char *error;                /* why it failed; NULL otherwise */
	int have_cert;                    /* the hashes and chain below are set */
	unsigned char spki_sha256[DETECTOR_SHA256_LEN];
	unsigned char cert_sha256[DETECTOR_SHA256_LEN];
	unsigned int ms;                  /* elapsed time of this path */
	size_t ncerts;                    /* chain as sent, leaf first */
	const struct detector_der *certs;
	struct detector_der ocsp;         /* stapled OCSP response; len 0: none */
	uint16_t tls_version;             /* e.g. 0x0304; 0 if unknown */
	/* Appended: the region the sphere exits in, as detector.conf names
	 * it ("europe" from "spheres = europe=127.0.0.1:9162, ..."); NULL
	 * for the direct path and for an unnamed sphere. */
	const char *region;
};

/*
 * Key continuity (docs/design.md "Key continuity"): what the key history
 * of host:port (the keys a quorum of spheres confirmed there, kept in the
 * verdict cache) said about an UNDECIDED.  Only an UNDECIDED just reached
 * by probing asks it, or one reached without asking the spheres because
 * every sphere was silent a moment ago (backoff_until); the verdict stays UNDECIDED either way, so that a
 * caller that treats only DETECTOR_ACCEPT as confirmed (a TLS session
 * made resumable, say) still does.
 */
enum detector_history {
	DETECTOR_HISTORY_NONE = 0,     /* not asked (the spheres decided, or
	                                * the verdict was remembered), or no
	                                * key confirmed within history_days:
	                                * on_undecided applies */
	DETECTOR_HISTORY_ACCEPTED,     /* a quorum confirmed this very key
	                                * within history_days: accept,
	                                * whatever on_undecided says */
	DETECTOR_HISTORY_KEY_CHANGED,  /* a quorum confirmed another key
	                                * within history_days, never this one:
	                                * refuse (DETECTOR_ERROR_KEY_CHANGED),
	                                * whatever on_undecided says */
};

/*
 * Tolerance for a site that serves several keys (detector.conf(5), a
 * [site NAME] section's `tolerance`; off by default).  A REJECT whose
 * direct key differs from the spheres' may be accepted instead when:
 *   SAME_ISSUER  at least a quorum of spheres saw either the direct key or
 *                a certificate with the direct certificate's subject whose
 *                issuing key (a certificate in that sphere's own chain
 *                whose key verifies both leaves' signatures) also signed
 *                the direct certificate; and the direct path staples a
 *                fresh good OCSP response signed by that issuing key (or
 *                its delegated responder).
 *   SURVEY       a sphere saw the direct key within survey_days, in a
 *                check where at least a quorum of spheres answered and no
 *                other key was seen by a quorum (the sighting was not
 *                contradicted), through the same spheres.
 * Never for a revoked certificate.  Such an ACCEPT is logged as tolerated
 * (result->tolerated, the reason), not remembered in the verdict cache and
 * never added to the key history.
 */
enum detector_tolerance {
	DETECTOR_TOLERANCE_OFF = 0,
	DETECTOR_TOLERANCE_SAME_ISSUER,
	DETECTOR_TOLERANCE_SURVEY,
};

/* The outcome of one detector_check(); read-only, freed with
 * detector_result_free(). */
struct detector_result {
	enum detector_verdict verdict;
	unsigned int quorum;              /* k */
	unsigned int matches;             /* spheres that saw the same key */
	unsigned int mismatches;          /* spheres that saw another key */
	unsigned int failures;            /* failed, timed out or skipped */
	unsigned int ms;                  /* time to the verdict */
	const char *reason;               /* one line, for humans */
	size_t nspheres;
	const struct detector_path *spheres;
	/* Appended fields. */
	int cached;                       /* remembered: no sphere was asked
	                                   * (backoff_until: neither) */
	int64_t verified_at;              /* cached: unix time of that check */
	const char *note;                 /* about the verdict memory (a cache
	                                   * set aside, read-only, unwritable),
	                                   * each said once per process, and
	                                   * that a REJECT could not be
	                                   * rerouted; NULL */
	/* Appended: OCSP evidence (see struct detector_ocsp). */
	int revoked;                      /* a validly signed staple says the
	                                   * direct certificate is revoked: the
	                                   * verdict is REJECT whatever the keys */
	const char *revoked_via;          /* "direct" or the sphere; NULL */
	int ocsp_direct_missing;          /* spheres stapled a fresh good
	                                   * response, the direct path none or a
	                                   * stale one (detector_check_path()
	                                   * only: the direct staple is known) */
	struct detector_ocsp ocsp_direct; /* the direct path's staple */
	const struct detector_ocsp *ocsp_spheres; /* nspheres entries, or NULL */
	/* Appended: where the attack sits. */
	enum detector_locality locality;
	const char *locality_detail;      /* one line, for humans, naming the
	                                   * spheres that differ; NULL for a
	                                   * remembered or excluded result */
	/* Appended: what was done with the verdict (see detector_reroute()).
	 * detector_check() leaves DETECTOR_OUTCOME_NONE: it only judges. */
	enum detector_outcome outcome;
	const char *rerouted_via;         /* REROUTED: the sphere "ip:port" */
	unsigned char rerouted_spki_sha256[DETECTOR_SHA256_LEN];
	                                  /* the key the reroute must show */
	/* Appended: the policy this check ran under (see
	 * detector_config_policy()). */
	struct detector_policy policy;    /* quorum above is policy.quorum */
	/* Appended: key continuity (enum detector_history). */
	enum detector_history history;
	int64_t history_confirmed;        /* unix seconds: the last quorum
	                                   * confirmation of this key
	                                   * (ACCEPTED), or of the newest other
	                                   * key (KEY_CHANGED); else 0 */
	/* Appended: a fresh REJECT whose spheres agree on another key (a
	 * quorum of them, more than any rival): 1 if on_mitm = reroute
	 * would make the connection again through them (docs/reroute.md),
	 * else 0 (a refusal whatever on_mitm says). */
	int reroute_planned;
	/* Not 0: the spheres were not asked.  Every sphere failed to answer
	 * this host, port and key a moment ago and the key history decided
	 * (history says how); it decides again until this unix time, unless
	 * a sphere answers another check first (docs/detector.conf.5,
	 * history_days). */
	int64_t backoff_until;
	/* Appended: the evidence options of the host's [site] section
	 * (detector.conf(5)) and what they did. */
	int require_direct_staple;        /* in force for this host */
	enum detector_tolerance tolerance; /* in force for this host */
	int staple_refused;               /* a REJECT because the direct path
	                                   * stapled no fresh good response
	                                   * while the spheres' did
	                                   * (ocsp_direct_missing) under
	                                   * require_direct_staple = yes;
	                                   * the key itself matched */
	enum detector_tolerance tolerated; /* not OFF: an ACCEPT only by that
	                                   * tolerance (the spheres saw
	                                   * another key): see the reason */
};

struct detector_config;
struct detector;

/*
 * Configuration.  detector_config_new() returns the defaults: the five
 * standard spheres, quorum 4, the default timeouts, nothing excluded.
 */
DETECTOR_API struct detector_config *detector_config_new(void);
DETECTOR_API void detector_config_free(struct detector_config *cfg);
DETECTOR_API const char *detector_config_error(struct detector_config *cfg);

/* Comma or space separated "ip:port" / "[ipv6]:port" SOCKS5 endpoints.
 * Host names are refused: resolving them would leak and could be spoofed. */
DETECTOR_API int detector_config_set_spheres(struct detector_config *cfg,
    const char *list);
DETECTOR_API int detector_config_set_quorum(struct detector_config *cfg,
    unsigned int k);
DETECTOR_API int detector_config_set_probe_timeout(struct detector_config *cfg,
    unsigned int ms);
DETECTOR_API int detector_config_set_deadline(struct detector_config *cfg,
    unsigned int ms);
DETECTOR_API unsigned int detector_config_deadline(
    const struct detector_config *cfg);
/* The spheres configured: how many, and the i-th as "ip:port" or
 * "[ipv6]:port", a sphere group as its members joined by '|'
 * ("127.0.0.1:9160|127.0.0.1:9170": one vote, each check through one
 * member) (NULL when i is out of range). */
DETECTOR_API unsigned int detector_config_nspheres(
    const struct detector_config *cfg);
DETECTOR_API const char *detector_config_sphere(
    const struct detector_config *cfg, unsigned int i);
/* The i-th sphere's region name ("europe" for "europe=127.0.0.1:9162"),
 * or NULL when it has none or i is out of range. */
DETECTOR_API const char *detector_config_sphere_region(
    const struct detector_config *cfg, unsigned int i);
/*
 * Where verdicts are remembered: an absolute path to the cache file, "off"
 * (this process's memory only), or NULL or "" for the per-user default
 * ($XDG_CACHE_HOME/detector/verdicts.mdb, else
 * ~/.cache/detector/verdicts.mdb).  See detector_check().
 */
DETECTOR_API int detector_config_set_cache(struct detector_config *cfg,
    const char *path);
/* 0: nothing is remembered, every check probes (sphere-probe --no-cache,
 * benchmarks); 1, the default: as set by detector_config_set_cache(). */
DETECTOR_API void detector_config_set_remember(struct detector_config *cfg,
    int remember);
/* Adds exclusion rules (comma or space separated): a domain suffix such as
 * "corp.example" (matches it and every name below it) or a CIDR such as
 * "10.0.0.0/8" / "fd00::/8" (matches IP-literal hosts). */
DETECTOR_API int detector_config_add_exclude(struct detector_config *cfg,
    const char *rules);
DETECTOR_API int detector_config_set_on_undecided(struct detector_config *cfg,
    enum detector_undecided_policy policy);
DETECTOR_API enum detector_undecided_policy detector_config_on_undecided(
    const struct detector_config *cfg);
/* The global `on_mitm` (DETECTOR_MITM_REFUSE by default). */
DETECTOR_API int detector_config_set_on_mitm(struct detector_config *cfg,
    enum detector_mitm_policy policy);
/*
 * The policy in force for host (read as detector_check() reads it): the
 * global quorum, on_undecided and on_mitm, each overridden by the most
 * specific [site NAME] section covering host that sets it.  0, or -1 for
 * a host DetecTor cannot check (the global policy is then in *policy).
 */
DETECTOR_API int detector_config_policy(const struct detector_config *cfg,
    const char *host, struct detector_policy *policy);
/* The name of a policy value, as the configuration file spells it:
 * "accept"/"reject", "refuse"/"reroute". */
DETECTOR_API const char *detector_undecided_name(
    enum detector_undecided_policy policy);
DETECTOR_API const char *detector_mitm_name(enum detector_mitm_policy policy);

/* Reads an INI file.  Every error names the file, the line and the key. */
DETECTOR_API int detector_config_load_file(struct detector_config *cfg,
    const char *path);
/*
 * Loads the first file found of $DETECTOR_CONFIG (which must exist if set),
 * ~/.config/detector/detector.conf and /etc/detector/detector.conf (none is
 * fine), then applies $DETECTOR_SPHERES if set.  The path loaded, if any, is
 * returned by detector_config_path() (which also names the file last loaded
 * by detector_config_load_file()).
 */
DETECTOR_API int detector_config_load_default(struct detector_config *cfg);
DETECTOR_API const char *detector_config_path(const struct detector_config *cfg);

/* The configuration file's value syntax, for tools whose own files should
 * read the same: a strict unsigned decimal up to max (digits only, no
 * sign, no overflow), and yes/true/on/1 or no/false/off/0.  0, or -1 if
 * s is not one. */
DETECTOR_API int detector_config_parse_uint(const char *s, unsigned long max,
    unsigned int *out);
DETECTOR_API int detector_config_parse_bool(const char *s, int *out);

/*
 * Contexts.
 */
DETECTOR_API struct detector *detector_new(void);
DETECTOR_API void detector_free(struct detector *ctx);
DETECTOR_API const char *detector_error(struct detector *ctx);
/* Copies cfg into ctx; cfg may be freed or reused afterwards. */
DETECTOR_API int detector_configure(struct detector *ctx,
    const struct detector_config *cfg);

/* Does an `exclude` rule match host?  Returns the rule or NULL. */
DETECTOR_API const char *detector_excluded(struct detector *ctx,
    const char *host);

/*
 * Probes host:port through every sphere at once and compares what each sees
 * with observed_der, the leaf certificate the caller's direct connection got.
 * Returns 0 and a result (whatever the verdict), or -1 if the check could not
 * be made at all (bad arguments, unparsable certificate, out of memory).
 * Blocks for at most the configured deadline.
 *
 * The host is read the way NSS's certificate name matching reads it: any
 * inet_aton spelling of an IPv4 address ("2130706434", "127.2") and an
 * IPv4-mapped IPv6 address are that address, which the spheres are asked
 * for as an address; a name is lower-cased.  A host that is no DNS name
 * and no address (a space, a non-ASCII byte, ...) is an error.  The same
 * holds for detector_survey() and detector_fetch(); detector_excluded()
 * and detector_cache_forget() read the host the same way.
 *
 * A verdict is remembered (see detector_config_set_cache()) for exactly
 * this key at host:port: ACCEPT for the configured validity, REJECT for
 * ten minutes; an UNDECIDED is not remembered.  While it lasts, a check of
 * the same key is answered from memory without probing (result->cached,
 * no spheres); a different key is always probed.  An ACCEPT also adds the
 * key to host:port's key history, which an UNDECIDED then consults
 * (result->history).
 */
DETECTOR_API int detector_check(struct detector *ctx, const char *host,
    unsigned int port, const unsigned char *observed_der, size_t der_len,
    struct detector_result **result);
DETECTOR_API void detector_result_free(struct detector_result *result);

/*
 * As detector_check(), with everything the direct connection saw: the
 * leaf is direct->certs[0]; the rest of its chain helps find the issuer
 * that OCSP responses must be signed by; direct->ocsp is the response the
 * server stapled (len 0: none), checked like every sphere's.  A direct path
 * from detector_fetch() fits, as does one filled in by the caller from its
 * own TLS library.  Only here is result->ocsp_direct_missing decided: with
 * detector_check() the direct staple is not known.
 */
DETECTOR_API int detector_check_path(struct detector *ctx, const char *host,
    unsigned int port, const struct detector_path *direct,
    struct detector_result **result);

/*
 * The verdict cache file of a configured context (cache management, no
 * network).  detector_cache_list() calls fn for every entry; one that is
 * not well-formed has malformed set and nothing else.
 * detector_cache_forget() removes host:port, or every port of host when
 * port is 0, and returns how many entries it removed.  Both return -1
 * (see detector_error()) when there is no cache file: cache = off, no
 * HOME, or it cannot be opened.
 */
struct detector_cache_entry {
	const char *key;                  /* "host:port", host lower-cased */
	int malformed;
	enum detector_verdict verdict;
	unsigned char spki_sha256[DETECTOR_SHA256_LEN];
	int64_t first_seen;               /* unix seconds: key first verified */
	int64_t last_verified;            /* unix seconds: last probe */
	int64_t expires;                  /* unix seconds */
};
DETECTOR_API int detector_cache_list(struct detector *ctx,
    void (*fn)(void *arg, const struct detector_cache_entry *entry),
    void *arg);
DETECTOR_API int detector_cache_forget(struct detector *ctx, const char *host,
    unsigned int port);

/* SHA-256 of a DER certificate's SubjectPublicKeyInfo (the key DetecTor
 * compares) and of the whole certificate.  NSS must be initialised.
 * 0, or -1 with a reason in err. */
DETECTOR_API int detector_cert_hashes(const unsigned char *der, size_t len,
    unsigned char spki_sha256[DETECTOR_SHA256_LEN],
    unsigned char cert_sha256[DETECTOR_SHA256_LEN], char *err,
    size_t errlen);

/*
 * Connects directly to host:port (to connect_addr instead when not NULL:
 * an IP literal; otherwise the name is resolved by the system resolver), does
 * the TLS handshake up to the server's certificate and returns what was seen.
 * Returns 0 with *path set (check path->status), -1 on bad arguments.
 */
DETECTOR_API int detector_fetch(struct detector *ctx, const char *host,
    unsigned int port, const char *connect_addr, struct detector_path **path);
DETECTOR_API void detector_path_free(struct detector_path *path);

/*
 * STARTTLS.  Many services speak a plaintext preamble before the TLS
 * handshake.  A context probes with the preamble set by
 * detector_set_starttls() (DETECTOR_STARTTLS_NONE, plain TLS, by default);
 * it applies to every later detector_check(), detector_survey() and
 * detector_fetch() on that context, on the direct path and through every
 * sphere alike.
 */
enum detector_starttls {
	DETECTOR_STARTTLS_NONE = 0,  /* TLS from the first byte */
	DETECTOR_STARTTLS_SMTP,      /* EHLO, STARTTLS (RFC 3207) */
	DETECTOR_STARTTLS_IMAP,      /* a STARTTLS (RFC 3501) */
	DETECTOR_STARTTLS_POP3,      /* STLS (RFC 2595) */
	DETECTOR_STARTTLS_XMPP,      /* client stream, <starttls/> (RFC 6120) */
	DETECTOR_STARTTLS_LDAP,      /* StartTLS extended operation (RFC 4511) */
};

DETECTOR_API int detector_set_starttls(struct detector *ctx,
    enum detector_starttls proto);
/* "none"/"tls", "smtp", "imap", "pop3", "xmpp", "ldap": 0, or -1 if unknown. */
DETECTOR_API int detector_starttls_parse(const char *name,
    enum detector_starttls *proto);
DETECTOR_API const char *detector_starttls_name(enum detector_starttls proto);
/* The port's usual preamble: 25 and 587 SMTP, 143 IMAP, 110 POP3, 5222 XMPP,
 * 389 LDAP; DETECTOR_STARTTLS_NONE for any other port (465, 993, 995, 5223,
 * 636 and 443 are TLS from the first byte). */
DETECTOR_API enum detector_starttls detector_starttls_for_port(
    unsigned int port);
/* The protocol's usual port: 443 (none), 25 (smtp), 143 (imap), 110
 * (pop3), 5222 (xmpp), 389 (ldap). */
DETECTOR_API unsigned int detector_starttls_port(enum detector_starttls proto);

/*
 * For operators watching their own servers: probes host:port through every
 * sphere and waits for all of them (no early decision; each bounded by the
 * probe timeout, the whole by the deadline).  Each result->spheres[i] is
 * DETECTOR_PATH_SEEN with the chain, or FAILED/TIMEOUT with an error; the
 * caller compares the keys with what it deployed.  result->verdict is
 * DETECTOR_UNDECIDED and matches/mismatches are 0: a survey has no
 * reference certificate.  Returns -1 only if no survey could be made.
 */
DETECTOR_API int detector_survey(struct detector *ctx, const char *host,
    unsigned int port, struct detector_result **result);

/*
 * Files DetecTor obeys (its configuration, the verdict cache,
 * detector-monitor's hooks) must not be changeable by anyone but their user:
 * not a symlink, owned by the calling user or root, not writable by group
 * or others.  detector_file_trusted() checks the entry path itself (lstat():
 * a symlink is refused, not followed); detector_fd_trusted() checks what fd
 * refers to (opened by the caller with O_NOFOLLOW), so that the file checked
 * is the file then used; path only names it in the message.  With
 * DETECTOR_TRUST_DIR it must be a folder.  Both return 0, or -1 with a
 * message in err naming the file, the rule it breaks and what to do.
 */
#define DETECTOR_TRUST_DIR 0x4
DETECTOR_API int detector_file_trusted(const char *path, unsigned int flags,
    char *err, size_t errlen);
DETECTOR_API int detector_fd_trusted(int fd, const char *path,
    unsigned int flags, char *err, size_t errlen);
/*
 * Opens the regular file path for reading under the same rules, checked
 * without a race: its folder is opened and checked first, the file is then
 * opened inside that folder (never through a symlink) and the descriptor
 * itself checked, so what is read is what was checked.  Returns the
 * descriptor (close-on-exec), or -1 with err set and errno kept: ENOENT if
 * the file or its folder is missing, EPERM if a rule is broken, else why
 * open() failed.
 */
DETECTOR_API int detector_open_trusted(const char *path, char *err,
    size_t errlen);

/*
 * Rerouting (docs/reroute.md): when the direct path is intercepted, the
 * connection is made again through one of the spheres that saw the key the
 * spheres agree on (the quorum key: seen by at least n-k+1 spheres, and by
 * more than any other key but the direct one).
 *
 * detector_reroute() takes a REJECT for host:port and the certificate the
 * direct path showed, opens a fresh TCP connection to the fastest such
 * sphere, asks it (SOCKS5 CONNECT, a fresh isolation token) for the host
 * *name*, never resolved locally, and speaks the context's STARTTLS
 * preamble (detector_set_starttls()) through the tunnel; a sphere that
 * fails is replaced by the next one that saw the key.  All of it within
 * deadline_ms (0: the configured deadline).  Returns 0 with *fd a
 * connected, blocking, close-on-exec descriptor on which the caller starts
 * its TLS handshake from the ClientHello, result->rerouted_via and
 * result->rerouted_spki_sha256 set; or -1 (detector_error(): every sphere
 * tried and why) with result->outcome DETECTOR_OUTCOME_REFUSED: the caller
 * must then refuse, never fall back to the direct path.
 *
 * A result remembered from an earlier check (result->cached) has no
 * spheres: the plan of the check that found this rogue key is used (kept
 * by the process for ten minutes, as long as the REJECT), with no probe.
 * Without one, -1.
 *
 * detector_reroute_verify() then judges the certificate the rerouted
 * handshake got (call it from the certificate callback, before any
 * application data is sent): 0 if its key is the quorum key (result->outcome
 * becomes DETECTOR_OUTCOME_REROUTED), else -1 with the reason and
 * DETECTOR_OUTCOME_REFUSED: a lying sphere or a key change.
 */
DETECTOR_API int detector_reroute(struct detector *ctx, const char *host,
    unsigned int port, const unsigned char *observed_der, size_t der_len,
    struct detector_result *result, unsigned int deadline_ms, int *fd);
DETECTOR_API int detector_reroute_verify(struct detector *ctx,
    struct detector_result *result, const unsigned char *der,
    size_t der_len);

/* Names for the enums ("accept", "key-match", "rerouted", ...). */
DETECTOR_API const char *detector_verdict_name(enum detector_verdict v);
DETECTOR_API const char *detector_path_status_name(
    enum detector_path_status s);
/* "none", "good", "revoked", "unknown", "invalid". */
DETECTOR_API const char *detector_ocsp_status_name(
    enum detector_ocsp_status s);
/* "unknown", "consistent", "local-path", "regional", "server-or-global". */
DETECTOR_API const char *detector_locality_name(enum detector_locality l);
DETECTOR_API const char *detector_outcome_name(enum detector_outcome p);
/* "none", "accepted-by-history", "key-changed". */
DETECTOR_API const char *detector_history_name(enum detector_history h);
/* "off", "same-issuer", "survey". */
DETECTOR_API const char *detector_tolerance_name(enum detector_tolerance t);

#ifdef __cplusplus
}
#endif
#endif /* DETECTOR_H */
