/*
 * policy.c - DetecTor inside NSS's libssl: the decision for one handshake,
 * and the error codes that say it.
 *
 * The patched libssl3.so calls check() once the application's own
 * certificate check has accepted a server certificate.  DetecTor can only
 * add a refusal here; it never sees, let alone overturns, a certificate the
 * application rejected.
 *
 *   disabled / excluded host      -> accept (stock NSS behaviour)
 *   same key remembered           -> the remembered verdict, no probe
 *   blocking socket               -> probe now, bounded by the deadline
 *   non-blocking socket           -> probe on a worker thread; the socket's
 *                                    handshake is suspended (SECWouldBlock)
 *                                    and resumed by done()
 *
 * An UNDECIDED verdict follows the key history first (key continuity:
 * the key a quorum confirmed recently is accepted, another one refused
 * with DETECTOR_ERROR_KEY_CHANGED), `on_undecided` for a site never
 * confirmed; an UNDECIDED is never remembered.  A REJECT is never turned
 * into an accept by a timeout.  A handshake DetecTor cannot check at all
 * (a host name no DNS name has, such as "bank test"; a certificate it
 * cannot read; no memory or thread for the check) is refused with its own
 * code unless `exclude` covers the host: it is not an UNDECIDED, which
 * means spheres were asked and did not answer.  The host is read the way
 * NSS's name matching read it (host.c) before it is excluded, remembered
 * or probed.  An invalid configuration refuses every handshake (fail
 * closed) and says why once.
 *
 * Verdicts are remembered by the engine (detector/lib/memory.c): the host
 * name is checked, `exclude` matched and the certificate read once per
 * handshake, and a remembered verdict answers before any thread is
 * started.  Checks that wait run on the worker pool (workers.c).
 *
 * The state below is process-wide because it belongs to the process's NSS:
 * the configuration read once and the error table.
 */
#include <prerror.h>
#include <prinit.h>
#include <sslerr.h>
#include <pratom.h>
#include <pthread.h>
#include <prthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "events.h"
#include "glue.h"
#include "host.h"
#include "log.h"
#include "memory.h"
#include "reroute.h"

/* Indexed by code: a code without its message, or two codes sharing one
 * slot, fails to compile (-Werror=override-init, the asserts below). */
#define GLUE_MSG(code) [(code) - DETECTOR_ERROR_BASE]
static const struct PRErrorMessage glue_messages[] = {
	GLUE_MSG(DETECTOR_ERROR_MITM) = { "DETECTOR_ERROR_MITM",
	    "DetecTor: the server's certificate differs from what the Tor "
	    "spheres see (possible man-in-the-middle); connection refused" },
	GLUE_MSG(DETECTOR_ERROR_UNDECIDED) = { "DETECTOR_ERROR_UNDECIDED",
	    "DetecTor: too few Tor spheres could confirm the server's "
	    "certificate, and the policy (on_undecided = reject) refuses "
	    "unconfirmed servers" },
	GLUE_MSG(DETECTOR_ERROR_CONFIG) = { "DETECTOR_ERROR_CONFIG",
	    "DetecTor: its configuration is invalid, so connections are "
	    "refused (run 'sphere-probe -v' to see the error)" },
	GLUE_MSG(DETECTOR_ERROR_UNCHECKABLE) = { "DETECTOR_ERROR_UNCHECKABLE",
	    "DetecTor: this connection cannot be checked (a host name "
	    "DetecTor cannot probe, a certificate it cannot read, or no "
	    "resources for the check), so it is refused; an 'exclude' rule "
	    "for the host lets it through unchecked" },
	GLUE_MSG(DETECTOR_ERROR_REVOKED) = { "DETECTOR_ERROR_REVOKED",
	    "DetecTor: a stapled OCSP response signed by the certificate's "
	    "issuer says the server's certificate is revoked; connection "
	    "refused" },
	GLUE_MSG(DETECTOR_ERROR_REROUTE) = { "DETECTOR_ERROR_REROUTE",
	    "DetecTor: the server's certificate differs from what the Tor "
	    "spheres see; the connection is refused on this path and made "
	    "again through a Tor sphere (on_mitm = reroute)" },
	GLUE_MSG(DETECTOR_ERROR_KEY_CHANGED) = { "DETECTOR_ERROR_KEY_CHANGED",
	    "DetecTor: the key changed and no quorum could confirm the new "
	    "one (the Tor spheres could not decide, and a quorum confirmed "
	    "another key for this server recently); connection refused" },
	GLUE_MSG(DETECTOR_ERROR_STAPLE_MISSING) = {
	    "DETECTOR_ERROR_STAPLE_MISSING",
	    "DetecTor: the Tor spheres receive a fresh OCSP response for the "
	    "server's certificate and this connection did not, and the site "
	    "requires it (require_direct_staple = yes); connection refused" },
};
#undef GLUE_MSG

#define GLUE_COUNT (sizeof(glue_messages) / sizeof(glue_messages[0]))
_Static_assert(GLUE_COUNT == DETECTOR_ERROR_LAST - DETECTOR_ERROR_BASE + 1,
    "every DETECTOR_ERROR_* code needs its message, in order");
/* Inside NSS's SSL range (applications such as Firefox only show errors
 * from NSS's ranges) and above NSS's own table, which NSPR would otherwise
 * search first or instead (detector_nss.h). */
_Static_assert(DETECTOR_ERROR_BASE >= SSL_ERROR_END_OF_LIST &&
    DETECTOR_ERROR_LAST < SSL_ERROR_LIMIT,
    "DETECTOR_ERROR_* must lie in NSS's SSL range, above its own codes");

static const struct PRErrorTable glue_error_table = {
	glue_messages, "detector", DETECTOR_ERROR_BASE, GLUE_COUNT,
};

static struct {
	PRCallOnceType once;
	struct detector_config *cfg;    /* NULL: the configuration is bad */
	char cfg_error[1024];
	PRInt32 cfg_error_said;         /* the configuration error, once */
	PRInt32 unconfirmed_wanted;     /* detector_nss_unconfirmed_v1() */
} glue;

/* The process's DetecTor settings, read once. */
static PRStatus
glue_init(void)
{
	struct detector_config *cfg = detector_config_new();

	(void)PR_ErrorInstallTable(&glue_error_table);
	if (cfg == NULL) {
		snprintf(glue.cfg_error, sizeof(glue.cfg_error),
		    "out of memory");
	} else if (detector_config_load_default(cfg) == -1) {
		snprintf(glue.cfg_error, sizeof(glue.cfg_error), "%s",
		    detector_config_error(cfg));
	} else if (config_check(cfg, glue.cfg_error,
	    sizeof(glue.cfg_error)) == 0) {
		glue.cfg = cfg;
		return PR_SUCCESS;
	}
	detector_config_free(cfg);
	return PR_SUCCESS;
}

/* The refusal code for a result, under the policy it was checked under
 * (the host's [site] section, else the global one): 0 accepts. */
static int
decide(const struct detector_result *res)
{
	switch (res->verdict) {
	case DETECTOR_REJECT:
		/* Revoked (stapled OCSP, evidence.c) is a rejection of its
		 * own: the user is told the certificate is revoked, not that
		 * the spheres disagree. */
		return res->revoked ? DETECTOR_ERROR_REVOKED :
		    res->staple_refused ? DETECTOR_ERROR_STAPLE_MISSING :
		    DETECTOR_ERROR_MITM;
	case DETECTOR_UNDECIDED:
		/* Key continuity, whatever on_undecided says (evidence.c). */
		if (res->history == DETECTOR_HISTORY_KEY_CHANGED)
			return DETECTOR_ERROR_KEY_CHANGED;
		if (res->history == DETECTOR_HISTORY_ACCEPTED)
			return 0;
		return res->policy.on_undecided == DETECTOR_UNDECIDED_REJECT ?
		    DETECTOR_ERROR_UNDECIDED : 0;
	default:
		return 0;
	}
}

/* An acceptance without a quorum's ACCEPT (UNDECIDED accepted by
 * on_undecided, or by history; an ACCEPT only by a site's tolerance)
 * must not leave a resumable session: said
 * to a libssl that understands it (detector_nss_unconfirmed_v1). */
static int
unconfirmed(int error, const struct detector_result *res)
{
	if (error == 0 && (res->verdict != DETECTOR_ACCEPT ||
	    res->tolerated != DETECTOR_TOLERANCE_OFF) &&
	    PR_ATOMIC_ADD(&glue.unconfirmed_wanted, 0) != 0)
		return DETECTOR_NSS_ACCEPT_UNCONFIRMED;
	return error;
}

/* Whether a REJECT of this result may be rerouted: on_mitm = reroute for
 * the host, and the process's libssl asked for the reroute ops (an older
 * one must never be handed DETECTOR_ERROR_REROUTE). */
static int
reroute_applies(int error, const struct detector_result *res)
{
	return error == DETECTOR_ERROR_MITM &&
	    res->policy.on_mitm == DETECTOR_MITM_REROUTE && reroute_nss_wanted();
}

/* The refusal code under on_mitm (docs/reroute.md section 3): a REJECT
 * whose spheres agree on the real key (reroute.c remembered the plan for
 * this rogue key) is rerouted; anything else is refused as it is. */
static int
reroute_or_refuse(int error, const char *host, unsigned int port,
    const struct certinfo *ci, const struct detector_result *res)
{
	struct reroute_plan plan;

	if (reroute_applies(error, res) &&
	    reroute_recall(host, port, ci->spki_sha256, &plan))
		return DETECTOR_ERROR_REROUTE;
	return error;
}

/* A context for one handshake to port; NULL with err set. */
static struct detector *
glue_context(unsigned int port, char *err, size_t errlen)
{
	const struct detector_config *cfg = glue.cfg;
	struct detector *ctx = detector_new();

	/* The application spoke the port's plaintext preamble itself before
	 * handing the socket to NSS (Pidgin's XMPP on 5222, a mail client on
	 * 587): the probes must speak it too. */
	if (ctx == NULL || detector_configure(ctx, cfg) == -1 ||
	    detector_set_starttls(ctx, config_starttls_for_port(cfg, port)) ==
	    -1) {
		snprintf(err, errlen, "%s", ctx ? detector_error(ctx) :
		    "out of memory");
		detector_free(ctx);
		return NULL;
	}
	return ctx;
}

/* What the verdict memory has to say, said once. */
static void
glue_note(const struct detector_result *res)
{
	if (res != NULL && res->note != NULL)
		detector_log(glue.cfg, LOG_ERRORS, "%s", res->note);
}

/* Refuses a handshake that cannot be checked, and says why. */
static int
uncheckable(const char *host, unsigned int port, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
uncheckable(const char *host, unsigned int port, const char *fmt, ...)
{
	char why[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	detector_log(glue.cfg, LOG_ERRORS, "%s:%u REFUSED (uncheckable): the "
	    "check cannot be made: %s", host, port, why);
	events_refused(DETECTOR_ERROR_UNCHECKABLE, host, port, why);
	return DETECTOR_ERROR_UNCHECKABLE;
}

/* Decides on a verdict and says so: the refusal code, 0 accepts. */
static int
decided(const char *host, unsigned int port, const struct certinfo *ci,
    const struct detector_result *res)
{
	enum detector_verdict v = res->verdict;
	const char *reason = res->reason;
	int error = unconfirmed(reroute_or_refuse(decide(res), host, port, ci,
	    res), res);
	/* Where the attack sits (issue 17), on the same line: bounded so
	 * that the line (1 KiB) keeps its start; none for a remembered
	 * verdict, which has no paths to tell. */
	const char *where = res->locality_detail != NULL ? "; where: " : "";
	const char *wname = res->locality_detail != NULL ?
	    detector_locality_name(res->locality) : "";
	const char *wsep = res->locality_detail != NULL ? ": " : "";
	const char *wdetail = res->locality_detail != NULL ?
	    res->locality_detail : "";

	if (error == DETECTOR_ERROR_REROUTE) {
		detector_log(glue.cfg, LOG_ERRORS, "%s:%u REJECTED on this "
		    "path (%s), rerouting through a sphere (on_mitm = "
		    "reroute): %s%s%s%s%.480s", host, port,
		    detector_verdict_name(v), reason, where, wname, wsep,
		    wdetail);
		events_refused(error, host, port, reason);
	} else if (error < 0) {
		detector_log(glue.cfg, LOG_ERRORS, "%s:%u REFUSED (%s%s): "
		    "%s%s%s%s%.480s", host, port, detector_verdict_name(v),
		    error == DETECTOR_ERROR_KEY_CHANGED ? ", key changed" : "",
		    reason, where, wname, wsep, wdetail);
		events_refused(error, host, port, reason);
	} else {
		/* A tolerated ACCEPT is said by default (log = errors). */
		detector_log(glue.cfg, res->tolerated != DETECTOR_TOLERANCE_OFF ?
		    LOG_ERRORS : LOG_DECISIONS, "%s:%u accepted (%s%s): "
		    "%s%s", host, port, detector_verdict_name(v),
		    v != DETECTOR_UNDECIDED ? "" :
		    res->history == DETECTOR_HISTORY_ACCEPTED ?
		    ", accepted by history" : ", on_undecided = accept",
		    reason, error == DETECTOR_NSS_ACCEPT_UNCONFIRMED ? "; "
		    "session not resumable" : "");
		/* The desktop hears of it: the spheres could not decide. */
		if (v == DETECTOR_UNDECIDED)
			events_refused(DETECTOR_NSS_ACCEPT_UNCONFIRMED, host,
			    port, reason);
	}
	return error;
}

/* Probes the spheres (blocking, bounded by the deadline) and decides;
 * with ctx (freed here), or a context of its own. */
static int
probe_and_decide(struct detector *ctx, const char *host, unsigned int port,
    const struct certinfo *ci)
{
	struct detector_result *res = NULL;
	char err[1024];
	int error;

	if (ctx == NULL)
		ctx = glue_context(port, err, sizeof(err));
	if (ctx == NULL)
		return uncheckable(host, port, "%s", err);
	if (check_probe(ctx, host, port, ci, &res) == -1) {
		error = uncheckable(host, port, "%s", detector_error(ctx));
	} else {
		glue_note(res);
		error = decided(host, port, ci, res);
	}
	detector_result_free(res);
	detector_free(ctx);
	return error;
}

static void prepared_wait(void);

/* The host as NSS matched it (*host then points to name); one it cannot
 * be read as (err says why) is matched as it stands.  The `exclude` rule
 * that covers it, or NULL. */
static const char *
glue_excluded(const struct detector_config *cfg, const char **host,
    char name[CHECK_HOST_SIZE], char *err, size_t errlen)
{
	if (host_normalise(*host, name, CHECK_HOST_SIZE, err, errlen) != -1)
		*host = name;
	return exclude_match(&cfg->exclude, *host);
}

static int
glue_check(const char *host, unsigned int port, const unsigned char *der,
    unsigned int der_len, int may_block, detector_nss_done_fn done,
    void *arg, void **pending, int *error)
{
	const struct detector_config *cfg = glue.cfg;
	struct detector_result *res = NULL;
	struct detector *ctx;
	struct certinfo ci;
	char err[1024], name[CHECK_HOST_SIZE], checked[CHECK_HOST_SIZE];
	const char *rule;
	int found;

	*pending = NULL;
	*error = 0;
	if (host == NULL)
		host = "";              /* not from libssl: refused below */
	if (cfg == NULL) {
		struct detector_config quiet = { .log_level = LOG_ERRORS };

		/* Every handshake is refused; the reason is said once. */
		if (PR_ATOMIC_SET(&glue.cfg_error_said, 1) == 0)
			detector_log(&quiet, LOG_ERRORS, "%s:%u REFUSED, and "
			    "every other connection of this process: invalid "
			    "configuration: %s", host, port, glue.cfg_error);
		*error = DETECTOR_ERROR_CONFIG;
		events_refused(*error, host, port, glue.cfg_error);
		return DETECTOR_NSS_DECIDED;
	}
	if ((rule = glue_excluded(cfg, &host, name, err, sizeof(err))) !=
	    NULL) {
		detector_log(cfg, LOG_DECISIONS, "%s:%u not probed: excluded "
		    "by '%s'", host, port, rule);
		return DETECTOR_NSS_DECIDED;
	}
	/* One it cannot be read as is refused unless excluded as it
	 * stands. */
	if (host != name) {
		*error = uncheckable(host, port, "%s", err);
		return DETECTOR_NSS_DECIDED;
	}
	prepared_wait();
	if (certinfo_read(der, der_len, &ci, err, sizeof(err)) == -1) {
		*error = uncheckable(host, port, "certificate not understood: "
		    "%s", err);
		return DETECTOR_NSS_DECIDED;
	}
	if ((ctx = glue_context(port, err, sizeof(err))) == NULL ||
	    check_target(ctx, 1, host, port, checked) == -1 ||
	    (found = check_recall(ctx, host, port, &ci, &res)) == -1) {
		*error = uncheckable(host, port, "%s", ctx ?
		    detector_error(ctx) : err);
		detector_free(ctx);
		return DETECTOR_NSS_DECIDED;
	}
	if (found) {
		glue_note(res);
		*error = unconfirmed(reroute_or_refuse(decide(res), host,
		    port, &ci, res), res);
		if (reroute_applies(*error, res)) {
			/* A REJECT remembered by another process: no plan
			 * here, so one fresh check finds the spheres' key. */
			detector_log(cfg, LOG_DECISIONS, "%s:%u remembered "
			    "verdict 'reject' for this key, but no reroute "
			    "plan in this process: probing again", host, port);
			found = 0;
			*error = 0;
		} else {
			detector_log(cfg, *error < 0 ? LOG_ERRORS :
			    LOG_DECISIONS, "%s:%u %s: remembered verdict '%s' "
			    "for this key, no probe%s", host, port, *error ==
			    DETECTOR_ERROR_REROUTE ? "REJECTED, rerouting" :
			    *error < 0 ? "REFUSED" : "accepted",
			    detector_verdict_name(res->verdict), *error ==
			    DETECTOR_NSS_ACCEPT_UNCONFIRMED ? "; session not "
			    "resumable" : "");
			if (*error < 0)
				events_refused(*error, host, port,
				    res->reason);
		}
		detector_result_free(res);
		res = NULL;
	}
	if (found) {
		detector_free(ctx);
		return DETECTOR_NSS_DECIDED;
	}
	if (may_block) {
		*error = probe_and_decide(ctx, host, port, &ci);
		return DETECTOR_NSS_DECIDED;
	}
	switch (workers_start(ctx, host, port, &ci, done, arg, pending)) {
	case -1:
		*error = uncheckable(host, port, "cannot start the check (out "
		    "of memory or threads)");
		return DETECTOR_NSS_DECIDED;
	case 1:
		detector_log(cfg, LOG_DECISIONS, "%s:%u joined the check "
		    "already running for this key; handshake suspended", host,
		    port);
		return DETECTOR_NSS_PENDING;
	default:
		detector_log(cfg, LOG_DECISIONS, "%s:%u probing the spheres; "
		    "handshake suspended", host, port);
		return DETECTOR_NSS_PENDING;
	}
}

int
glue_probe_and_decide(struct detector *ctx, const char *host,
    unsigned int port, const struct certinfo *ci)
{
	return probe_and_decide(ctx, host, port, ci);
}

static const struct detector_nss_ops glue_ops = {
	1, glue_check, workers_cancel,
};

unsigned int
detector_nss_unconfirmed_v1(void)
{
	if (detector_nss_v1() == NULL)
		return 0;
	(void)PR_ATOMIC_SET(&glue.unconfirmed_wanted, 1);
	return 1;
}

const struct detector_nss_ops *
detector_nss_v1(void)
{
	if (PR_CallOnce(&glue.once, glue_init) != PR_SUCCESS)
		return NULL;
	if (glue.cfg != NULL && !glue.cfg->enabled)
		return NULL;
	return &glue_ops;
}

/*
 * Getting ready at the first ClientHello (detector_nss_prepare_v1, issue 16
 * item 5): a libssl that calls it once it has loaded libdetector, when its
 * first handshake has sent the ClientHello, has the verdict cache opened
 * (the folder and files made, checked and mapped, HOME resolved) on a
 * thread of its own while the server answers, instead of after the
 * certificate came.  Nothing is probed and nothing leaves the machine.  A
 * check that comes while the cache is being opened waits for it, as it
 * would have waited opening it itself (at most PREPARE_WAIT_MS; then it
 * goes on with this process's memory, memory.c).  Per process: a child of
 * fork() opens its own cache when it needs it, as before.
 */
#define PREPARE_WAIT_MS 5000

static struct {
	pthread_mutex_t lock;
	pthread_cond_t ready;
	pid_t running;                  /* whose prepare thread runs; 0 none */
	pid_t started;                  /* who started one */
	pthread_once_t once;
} prep = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
    PTHREAD_ONCE_INIT };

/* After fork() the child has one thread: one of the parent's that held the
 * lock is not there to let go of it. */
static void
prepare_atfork_child(void)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t ready = PTHREAD_COND_INITIALIZER;

	prep.lock = lock;
	prep.ready = ready;
}

static void
prepare_init(void)
{
	(void)pthread_atfork(NULL, NULL, prepare_atfork_child);
}

static void
prepare_thread(void *arg)
{
	struct memory *m;
	char err[256];

	(void)arg;
	if ((m = memory_for(glue.cfg)) != NULL)
		(void)memory_cache(m, err, sizeof(err));
	pthread_mutex_lock(&prep.lock);
	prep.running = 0;
	pthread_cond_broadcast(&prep.ready);
	pthread_mutex_unlock(&prep.lock);
}

/* A check waits for this process's prepare thread, if one runs. */
static void
prepared_wait(void)
{
	struct timespec until;

	pthread_mutex_lock(&prep.lock);
	if (prep.running == getpid()) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += PREPARE_WAIT_MS / 1000;
		while (prep.running == getpid() && pthread_cond_timedwait(
		    &prep.ready, &prep.lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&prep.lock);
}

void
detector_nss_prepare_v1(void)
{
	pid_t me = getpid();

	/* Disabled, or a configuration that refuses everything: nothing
	 * to open. */
	if (detector_nss_v1() == NULL || glue.cfg == NULL ||
	    !glue.cfg->remember)
		return;
	(void)pthread_once(&prep.once, prepare_init);
	pthread_mutex_lock(&prep.lock);
	if (prep.started != me) {
		prep.started = me;
		prep.running = me;
		if (PR_CreateThread(PR_SYSTEM_THREAD, prepare_thread, NULL,
		    PR_PRIORITY_NORMAL, PR_GLOBAL_THREAD, PR_UNJOINABLE_THREAD,
		    0) == NULL)
			prep.running = 0;
	}
	pthread_mutex_unlock(&prep.lock);
}

/*
 * Whether check() would look at host:port at all (M-B of the second patch
 * review): a libssl that asks holds a TLS 1.2 client's second round back
 * only for such hosts, so that an excluded host's handshake goes on as
 * without DetecTor.  0 when DetecTor is disabled or `exclude` covers the
 * host; 1 otherwise (also for a configuration that refuses everything, and
 * for a name DetecTor cannot read, which check() refuses).
 */
unsigned int
detector_nss_wants_v1(const char *host, unsigned int port)
{
	char name[CHECK_HOST_SIZE], err[256];

	(void)port;
	if (detector_nss_v1() == NULL)
		return 0;
	if (glue.cfg == NULL || host == NULL)
		return 1;
	return glue_excluded(glue.cfg, &host, name, err, sizeof(err)) == NULL;
}
