/*
 * sphere-probe - is the certificate I get for HOST the one the world sees?
 *
 * Connects to HOST:PORT directly, then through every Tor sphere, and
 * prints one row per path and the verdict.  Mail, chat and directory ports
 * speak their STARTTLS preamble first (--starttls, or the port's usual one).
 * --survey asks the spheres only and shows each one's key.  Exit codes follow the Nagios
 * plugin convention so it drops into monitoring as it is:
 *   0 consistent (ACCEPT), 1 UNDECIDED, 2 inconsistent (REJECT: likely
 *   MITM), 3 usage or internal error (UNKNOWN).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <nss.h>
#include <plbase64.h>
#include <prinit.h>
#include <prmem.h>
#include <ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "detector.h"

#define EXIT_ACCEPT 0
#define EXIT_UNDECIDED 1
#define EXIT_REJECT 2
#define EXIT_UNKNOWN 3

struct options {
	const char *host_arg;
	char host[256];
	unsigned int port;
	const char *spheres, *config, *resolve, *dump_dir;
	long quorum, timeout, deadline;
	int json, verbose;
	int no_cache, cache_list, survey;
	const char *cache_forget, *starttls_arg;
	enum detector_starttls starttls;
	char resolve_addr[64];
};

/* What a run holds; released at exit whichever way the run ends. */
static struct {
	struct detector_config *cfg;
	struct detector *ctx;
	struct detector_path *direct;
	struct detector_result *res;
} run;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sphere-probe [options] HOST[:PORT]\n"
	    "  -p, --port PORT          server port (default 443)\n"
	    "  -s, --spheres LIST       SOCKS5 spheres, ip:port,ip:port,...\n"
	    "  -k, --quorum K           spheres that must agree (default 4)\n"
	    "  -t, --timeout MS         per-sphere probe timeout\n"
	    "      --deadline MS        overall deadline for the verdict\n"
	    "      --resolve HOST:PORT:ADDR  connect the direct path to ADDR\n"
	    "                           (the spheres still resolve HOST)\n"
	    "      --starttls PROTO     plaintext preamble before TLS: smtp, imap,\n"
	    "                           pop3, xmpp, ldap or none (default: the\n"
	    "                           port's usual one: 25/587 smtp, 143 imap,\n"
	    "                           110 pop3, 5222 xmpp, 389 ldap; else none)\n"
	    "      --survey             no direct connection: show the key each\n"
	    "                           sphere sees (exit 0 all agree, 1 some\n"
	    "                           failed, 2 they disagree)\n"
	    "  -c, --config FILE        configuration file to read\n"
	    "      --json               print one JSON object\n"
	    "  -D, --dump-certs DIR     write every certificate seen as PEM\n"
	    "  -v, --verbose            full fingerprints and details\n"
	    "      --no-cache           probe even if a verdict is cached; "
	    "do not record\n"
	    "      --cache-list         list the verdict cache and exit\n"
	    "      --cache-forget HOST[:PORT]  remove cached verdicts and exit\n"
	    "  -h, --help               this text\n"
	    "Exit: 0 consistent, 1 undecided, 2 inconsistent (likely MITM), "
	    "3 error.\n");
}

/* HOST, HOST:PORT, [V6] or [V6]:PORT; a bare IPv6 literal is a host. */
static void
parse_target(struct options *o)
{
	const char *a = o->host_arg, *colon, *port = NULL;
	size_t hl;

	if (a[0] == '[') {
		const char *rb = strchr(a, ']');
		if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
			cli_die("bad target '%s': expected [IPv6]:PORT", a);
		hl = (size_t)(rb - a - 1);
		a++;
		if (rb[1] == ':')
			port = rb + 2;
	} else if ((colon = strchr(a, ':')) != NULL &&
	    strchr(colon + 1, ':') == NULL) {
		hl = (size_t)(colon - a);
		port = colon + 1;
	} else {
		hl = strlen(a);
	}
	if (hl == 0 || hl >= sizeof(o->host))
		cli_die("bad target '%s': host name empty or too long",
		    o->host_arg);
	memcpy(o->host, a, hl);
	o->host[hl] = '\0';
	if (port != NULL)
		o->port = (unsigned int)cli_parse_num(port, "port", 1, 65535);
}

/* curl's --resolve HOST:PORT:ADDR, for the direct path only. */
static void
parse_resolve(struct options *o)
{
	const char *r = o->resolve, *c1, *c2;
	char host[256];
	char portbuf[8];
	size_t hl, pl, al;

	c1 = strchr(r, ':');
	c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (c1 == NULL || c2 == NULL)
		cli_die("--resolve '%s': expected HOST:PORT:ADDR", r);
	hl = (size_t)(c1 - r);
	pl = (size_t)(c2 - c1 - 1);
	if (hl == 0 || hl >= sizeof(host) || pl == 0 || pl >= sizeof(portbuf))
		cli_die("--resolve '%s': expected HOST:PORT:ADDR", r);
	memcpy(host, r, hl);
	host[hl] = '\0';
	memcpy(portbuf, c1 + 1, pl);
	portbuf[pl] = '\0';
	if (strcasecmp(host, o->host) != 0 ||
	    cli_parse_num(portbuf, "--resolve port", 1, 65535) != o->port)
		cli_die("--resolve '%s' does not name the target %s:%u", r,
		    o->host, o->port);
	c2++;
	al = strlen(c2);
	if (al >= 2 && c2[0] == '[' && c2[al - 1] == ']') {
		c2++;
		al -= 2;
	}
	if (al == 0 || al >= sizeof(o->resolve_addr))
		cli_die("--resolve '%s': bad address", r);
	memcpy(o->resolve_addr, c2, al);
	o->resolve_addr[al] = '\0';
}

static const char *
version_name(uint16_t v)
{
	switch (v) {
	case 0x0303: return "TLS 1.2";
	case 0x0304: return "TLS 1.3";
	case 0: return "-";
	default: return "other";
	}
}

/* How the reports name a path: "direct", "127.0.0.1:9164", or with the
 * sphere's region (detector.conf's "europe=127.0.0.1:9162") "europe
 * (127.0.0.1:9162)", as the locality detail does. */
static const char *
path_label(const struct detector_path *p, char *buf, size_t size)
{
	if (p->region == NULL)
		return p->via;
	snprintf(buf, size, "%s (%s)", p->region, p->via);
	return buf;
}

/* The width of the path column: the longest label, at least 22. */
static int
label_width(const struct detector_result *r)
{
	char buf[128];
	size_t i, w = 22, len;

	for (i = 0; r != NULL && i < r->nspheres; i++) {
		len = strlen(path_label(&r->spheres[i], buf, sizeof(buf)));
		if (len > w)
			w = len;
	}
	return (int)w;
}

static void
print_row(const struct detector_path *p, int verbose, int w)
{
	char spki[65], cert[65], label[128];
	const char *name = path_label(p, label, sizeof(label));

	if (p->have_cert) {
		cli_hex(p->spki_sha256, 32, spki);
		cli_hex(p->cert_sha256, 32, cert);
	} else {
		strcpy(spki, "-");
		strcpy(cert, "-");
	}
	if (verbose) {
		printf("  %-*s %-10s %6u ms  %s\n", w, name,
		    detector_path_status_name(p->status), p->ms,
		    version_name(p->tls_version));
		printf("  %*s spki sha256 %s\n", w, "", spki);
		printf("  %*s cert sha256 %s\n", w, "", cert);
		if (p->have_cert)
			printf("  %*s chain %zu certificate(s), OCSP "
			    "staple %s\n", w, "", p->ncerts,
			    p->ocsp.len ? "present" : "none");
		if (p->error != NULL)
			printf("  %*s %s\n", w, "", p->error);
		return;
	}
	if (p->have_cert)
		spki[16] = '\0';
	printf("  %-*s %-10s %-17s %6u ms%s%s\n", w, name,
	    detector_path_status_name(p->status), spki, p->ms,
	    p->error ? "  " : "", p->error ? p->error : "");
}

/* One stapled OCSP response, as text: "good, fresh (next update ...)". */
static void
print_ocsp(const char *via, const struct detector_ocsp *oc)
{
	char when[32] = "-";
	time_t t = (time_t)(oc->status == DETECTOR_OCSP_REVOKED ?
	    oc->revoked_at : oc->next_update);
	struct tm tm;

	if (oc->status == DETECTOR_OCSP_NONE)
		return;
	if (t != 0 && gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
	if (oc->status == DETECTOR_OCSP_INVALID)
		printf("  %-22s ignored: %s\n", via, oc->error ? oc->error : "");
	else
		printf("  %-22s %s, %s (%s %s)\n", via,
		    detector_ocsp_status_name(oc->status),
		    oc->fresh ? "fresh" : "stale",
		    oc->status == DETECTOR_OCSP_REVOKED ? "revoked" :
		    "next update", when);
}

/* Where the attack sits, and the stapled OCSP responses seen. */
static void
print_evidence(const struct detector_result *r)
{
	char label[128];
	size_t i;
	int any = r->ocsp_direct.status != DETECTOR_OCSP_NONE;

	if (r->locality_detail != NULL)
		printf("where: %s: %s\n", detector_locality_name(r->locality),
		    r->locality_detail);
	for (i = 0; r->ocsp_spheres != NULL && i < r->nspheres; i++)
		any |= r->ocsp_spheres[i].status != DETECTOR_OCSP_NONE;
	if (!any)
		return;
	printf("stapled OCSP responses:\n");
	print_ocsp("direct", &r->ocsp_direct);
	for (i = 0; r->ocsp_spheres != NULL && i < r->nspheres; i++)
		print_ocsp(path_label(&r->spheres[i], label, sizeof(label)),
		    &r->ocsp_spheres[i]);
}

static json_t *
ocsp_json(const struct detector_ocsp *oc)
{
	return json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:o}",
	    "status", detector_ocsp_status_name(oc->status),
	    "fresh", oc->fresh, "produced_at", (json_int_t)oc->produced_at,
	    "this_update", (json_int_t)oc->this_update,
	    "next_update", (json_int_t)oc->next_update,
	    "revoked_at", (json_int_t)oc->revoked_at,
	    "error", oc->error ? json_string(oc->error) : json_null());
}

/* What an application under DetecTor's NSS integration does with this
 * result: its policy applied to the verdict. */
static const char *
action_name(const struct detector_result *r)
{
	switch (r->verdict) {
	case DETECTOR_REJECT:
		/* Rerouted only when the spheres agree on the real key (and
		 * never a revoked certificate), as policy.c decides. */
		return r->policy.on_mitm == DETECTOR_MITM_REROUTE &&
		    r->reroute_planned ? "reroute" : "refuse";
	case DETECTOR_UNDECIDED:
		/* Key continuity first, as detector/nss/policy.c decides. */
		if (r->history == DETECTOR_HISTORY_KEY_CHANGED)
			return "refuse";
		if (r->history == DETECTOR_HISTORY_ACCEPTED)
			return "accept";
		return r->policy.on_undecided == DETECTOR_UNDECIDED_REJECT ?
		    "refuse" : "accept";
	default:
		return "accept";
	}
}

/* "history: key-changed (last confirmed by a quorum 2026-12-02 ...)":
 * only when the key history decided an UNDECIDED. */
static void
print_history(const struct detector_result *r)
{
	char when[40];
	time_t t = (time_t)r->history_confirmed;
	struct tm tm;

	if (r->history == DETECTOR_HISTORY_NONE)
		return;
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(when, sizeof(when), "@%lld",
		    (long long)r->history_confirmed);
	printf("history: %s (%s confirmed by a quorum on %s)\n",
	    detector_history_name(r->history),
	    r->history == DETECTOR_HISTORY_ACCEPTED ? "this key was" :
	    "another key was last", when);
}

/* "policy: quorum 4, on_undecided accept, on_mitm refuse ([site x]):
 * accept" */
static void
print_policy(const struct detector_result *r)
{
	const struct detector_policy *p = &r->policy;

	printf("policy: quorum %u, on_undecided %s, on_mitm %s (%s%s%s): "
	    "%s\n", p->quorum, detector_undecided_name(p->on_undecided),
	    detector_mitm_name(p->on_mitm), p->site[0] ? "[site " : "global",
	    p->site, p->site[0] ? "]" : "", action_name(r));
}

static json_t *
policy_json(const struct detector_result *r)
{
	const struct detector_policy *p = &r->policy;

	return json_pack("{s:I, s:s, s:s, s:o, s:s, s:o}",
	    "quorum", (json_int_t)p->quorum,
	    "on_undecided", detector_undecided_name(p->on_undecided),
	    "on_mitm", detector_mitm_name(p->on_mitm),
	    "site", p->site[0] ? json_string(p->site) : json_null(),
	    "action", action_name(r),
	    "note", r->note ? json_string(r->note) : json_null());
}

/* The text report's first lines: what was asked (mode: "" or
 * "--survey "), then the column names unless verbose. */
static void
print_head(const struct options *o, const char *mode, int w)
{
	printf("sphere-probe %s%s:%u%s%s\n\n", mode, o->host, o->port,
	    o->starttls ? " STARTTLS " : "", o->starttls ?
	    detector_starttls_name(o->starttls) : "");
	if (!o->verbose)
		printf("  %-*s %-10s %-17s %9s\n", w, "path", "status",
		    "key (SPKI SHA-256)", "time");
}

static void
print_text(const struct options *o, const struct detector_path *direct,
    const struct detector_result *r)
{
	size_t i;
	const char *v = detector_verdict_name(r->verdict);

	int w = label_width(r);

	print_head(o, "", w);
	print_row(direct, o->verbose, w);
	for (i = 0; i < r->nspheres; i++)
		print_row(&r->spheres[i], o->verbose, w);
	printf("\nverdict: ");
	for (; *v; v++)
		putchar(*v >= 'a' && *v <= 'z' ? *v - 'a' + 'A' : *v);
	printf(" (%u ms): %s\n", r->ms, r->reason);
	print_evidence(r);
	print_history(r);
	print_policy(r);
}

static json_t *
json_hash(int have, const unsigned char *h)
{
	char buf[65];

	if (!have)
		return json_null();
	cli_hex(h, 32, buf);
	return json_string(buf);
}

static json_t *
spheres_json(const struct detector_result *r)
{
	json_t *spheres;
	size_t i;

	spheres = json_array();
	for (i = 0; i < r->nspheres; i++) {
		const struct detector_path *p = &r->spheres[i];
		json_t *one = json_pack(
		    "{s:s, s:s, s:o, s:o, s:o, s:I, s:o, s:I}",
		    "address", p->via,
		    "status", detector_path_status_name(p->status),
		    "spki_sha256", json_hash(p->have_cert, p->spki_sha256),
		    "cert_sha256", json_hash(p->have_cert, p->cert_sha256),
		    "error", p->error ? json_string(p->error) : json_null(),
		    "ms", (json_int_t)p->ms,
		    "tls_version", p->tls_version ?
		    json_string(version_name(p->tls_version)) : json_null(),
		    "chain_length", (json_int_t)p->ncerts);
		json_object_set_new(one, "region", p->region ?
		    json_string(p->region) : json_null());
		if (r->ocsp_spheres != NULL)
			json_object_set_new(one, "ocsp",
			    ocsp_json(&r->ocsp_spheres[i]));
		json_array_append_new(spheres, one);
	}
	return spheres;
}

static void
print_root(json_t *root)
{
	char *out;

	if (root == NULL)
		cli_die("cannot build the JSON report");
	out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (out == NULL)
		cli_die("cannot build the JSON report");
	printf("%s\n", out);
	free(out);
	json_decref(root);
}

static void
print_json(const struct options *o, const struct detector_path *direct,
    const struct detector_result *r)
{
	json_t *root, *spheres = spheres_json(r), *d;

	d = json_pack("{s:o, s:o, s:I, s:b}",
	    "spki_sha256", json_hash(direct->have_cert, direct->spki_sha256),
	    "cert_sha256", json_hash(direct->have_cert, direct->cert_sha256),
	    "ms", (json_int_t)direct->ms,
	    "ocsp_stapled", direct->ocsp.len > 0);
	json_object_set_new(d, "ocsp", ocsp_json(&r->ocsp_direct));
	root = json_pack("{s:s, s:I, s:s, s:s, s:I, s:o, s:o, s:s, s:I, s:o}",
	    "host", o->host, "port", (json_int_t)o->port,
	    "starttls", detector_starttls_name(o->starttls),
	    "verdict", detector_verdict_name(r->verdict),
	    "quorum", (json_int_t)r->quorum,
	    "direct", d, "spheres", spheres,
	    "reason", r->reason, "ms", (json_int_t)r->ms,
	    "policy", policy_json(r));
	json_object_set_new(root, "revoked", json_boolean(r->revoked));
	json_object_set_new(root, "revoked_via", r->revoked_via ?
	    json_string(r->revoked_via) : json_null());
	json_object_set_new(root, "ocsp_direct_missing",
	    json_boolean(r->ocsp_direct_missing));
	json_object_set_new(root, "locality",
	    json_string(detector_locality_name(r->locality)));
	json_object_set_new(root, "locality_detail", r->locality_detail ?
	    json_string(r->locality_detail) : json_null());
	json_object_set_new(root, "history",
	    json_string(detector_history_name(r->history)));
	json_object_set_new(root, "history_confirmed",
	    r->history != DETECTOR_HISTORY_NONE ?
	    json_integer((json_int_t)r->history_confirmed) : json_null());
	/* The site's evidence options (issue 17) and what they did. */
	json_object_set_new(root, "evidence", json_pack("{s:b, s:s, s:b, s:o}",
	    "require_direct_staple", r->require_direct_staple,
	    "tolerance", detector_tolerance_name(r->tolerance),
	    "staple_refused", r->staple_refused,
	    "tolerated", r->tolerated != DETECTOR_TOLERANCE_OFF ?
	    json_string(detector_tolerance_name(r->tolerated)) :
	    json_null()));
	print_root(root);
}

/*
 * --survey: what every sphere sees, with no direct connection to compare
 * with.  Exit 0 when every sphere saw the same key, 1 when some failed
 * (and those that answered agree), 2 when spheres saw different keys.
 */
static int
survey_exit(const struct detector_result *r, unsigned int *nkeys)
{
	unsigned int seen = 0, distinct = 0;
	size_t i, j;

	for (i = 0; i < r->nspheres; i++) {
		const struct detector_path *p = &r->spheres[i];

		if (p->status != DETECTOR_PATH_SEEN || !p->have_cert)
			continue;
		seen++;
		for (j = 0; j < i; j++) {
			if (r->spheres[j].status == DETECTOR_PATH_SEEN &&
			    r->spheres[j].have_cert &&
			    memcmp(r->spheres[j].spki_sha256, p->spki_sha256,
			    DETECTOR_SHA256_LEN) == 0)
				break;
		}
		if (j == i)
			distinct++;
	}
	*nkeys = distinct;
	if (distinct > 1)
		return EXIT_REJECT;
	if (seen == 0 || seen < r->nspheres)
		return EXIT_UNDECIDED;
	return EXIT_ACCEPT;
}

static int
print_survey(const struct options *o, const struct detector_result *r)
{
	unsigned int nkeys;
	int rc = survey_exit(r, &nkeys);
	size_t i;

	if (o->json) {
		print_root(json_pack("{s:s, s:I, s:s, s:b, s:o, s:I, s:s, s:I}",
		    "host", o->host, "port", (json_int_t)o->port,
		    "starttls", detector_starttls_name(o->starttls),
		    "survey", 1, "spheres", spheres_json(r),
		    "distinct_keys", (json_int_t)nkeys,
		    "reason", r->reason, "ms", (json_int_t)r->ms));
		return rc;
	}
	print_head(o, "--survey ", label_width(r));
	for (i = 0; i < r->nspheres; i++)
		print_row(&r->spheres[i], o->verbose, label_width(r));
	printf("\nsurvey (%u ms): %s; %u distinct key%s\n", r->ms, r->reason,
	    nkeys, nkeys == 1 ? "" : "s");
	return rc;
}

/* Writes one DER object as PEM, mode 0600, never through a symlink. */
static void
write_pem(const char *dir, const char *name, const char *label,
    const struct detector_der *der)
{
	char path[4096];
	char *b64;
	size_t i, len;
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	b64 = PL_Base64Encode((const char *)der->data, (PRUint32)der->len,
	    NULL);
	if (b64 == NULL)
		cli_die("%s: cannot encode", path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd == -1 || fchmod(fd, 0600) == -1 ||
	    (f = fdopen(fd, "w")) == NULL) {
		PR_Free(b64);
		cli_die("%s: %s", path, strerror(errno));
	}
	fprintf(f, "-----BEGIN %s-----\n", label);
	len = strlen(b64);
	for (i = 0; i < len; i += 64)
		fprintf(f, "%.64s\n", b64 + i);
	fprintf(f, "-----END %s-----\n", label);
	PR_Free(b64);
	if (fclose(f) != 0)
		cli_die("%s: %s", path, strerror(errno));
}

static void
dump_path(const char *dir, const char *tag, const struct detector_path *p)
{
	char name[128];
	size_t i;

	for (i = 0; i < p->ncerts; i++) {
		snprintf(name, sizeof(name), "%s-%zu.pem", tag, i);
		write_pem(dir, name, "CERTIFICATE", &p->certs[i]);
	}
	if (p->ocsp.len > 0) {
		snprintf(name, sizeof(name), "%s-ocsp.pem", tag);
		write_pem(dir, name, "OCSP RESPONSE", &p->ocsp);
	}
}

static void
dump_all(const char *dir, const struct detector_path *direct,
    const struct detector_result *r)
{
	char tag[96];
	size_t i, j;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		cli_die("%s: %s", dir, strerror(errno));
	if (direct != NULL)
		dump_path(dir, "direct", direct);
	for (i = 0; i < r->nspheres; i++) {
		snprintf(tag, sizeof(tag), "sphere%zu-%s", i,
		    r->spheres[i].via);
		for (j = 0; tag[j]; j++)
			if (tag[j] == ':' || tag[j] == '[' || tag[j] == ']')
				tag[j] = '_';
		dump_path(dir, tag, &r->spheres[i]);
	}
}

static void
parse_args(int argc, char **argv, struct options *o)
{
	enum { OPT_DEADLINE = 256, OPT_RESOLVE, OPT_JSON, OPT_NO_CACHE,
	    OPT_CACHE_LIST, OPT_CACHE_FORGET, OPT_STARTTLS, OPT_SURVEY };
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "spheres", required_argument, NULL, 's' },
		{ "quorum", required_argument, NULL, 'k' },
		{ "timeout", required_argument, NULL, 't' },
		{ "deadline", required_argument, NULL, OPT_DEADLINE },
		{ "resolve", required_argument, NULL, OPT_RESOLVE },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "no-cache", no_argument, NULL, OPT_NO_CACHE },
		{ "cache-list", no_argument, NULL, OPT_CACHE_LIST },
		{ "cache-forget", required_argument, NULL, OPT_CACHE_FORGET },
		{ "dump-certs", required_argument, NULL, 'D' },
		{ "starttls", required_argument, NULL, OPT_STARTTLS },
		{ "survey", no_argument, NULL, OPT_SURVEY },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long port = -1;
	int c;

	memset(o, 0, sizeof(*o));
	o->port = 443;
	o->quorum = o->timeout = o->deadline = -1;
	while ((c = getopt_long(argc, argv, "p:s:k:t:c:D:vh", longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'p': port = cli_parse_num(optarg, "port", 1, 65535); break;
		case 's': o->spheres = optarg; break;
		case 'k': o->quorum = cli_parse_num(optarg, "quorum", 1,
		    DETECTOR_MAX_SPHERES); break;
		case 't': o->timeout = cli_parse_num(optarg, "timeout", 1,
		    600000); break;
		case OPT_DEADLINE: o->deadline = cli_parse_num(optarg, "deadline",
		    1, 600000); break;
		case OPT_RESOLVE: o->resolve = optarg; break;
		case 'c': o->config = optarg; break;
		case OPT_JSON: o->json = 1; break;
		case OPT_NO_CACHE: o->no_cache = 1; break;
		case OPT_CACHE_LIST: o->cache_list = 1; break;
		case OPT_CACHE_FORGET: o->cache_forget = optarg; break;
		case 'D': o->dump_dir = optarg; break;
		case OPT_STARTTLS:
			o->starttls_arg = optarg;
			if (detector_starttls_parse(optarg, &o->starttls) == -1)
				cli_die("--starttls '%s': expected smtp, imap, pop3, "
				    "xmpp, ldap or none", optarg);
			break;
		case OPT_SURVEY: o->survey = 1; break;
		case 'v': o->verbose = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(EXIT_UNKNOWN);
		}
	}
	if (o->cache_list || o->cache_forget) {
		if (optind != argc) {
			usage(stderr);
			exit(EXIT_UNKNOWN);
		}
		if (o->cache_forget) {
			o->host_arg = o->cache_forget;
			o->port = 0;   /* every port unless one is given */
			parse_target(o);
		}
		return;
	}
	if (optind != argc - 1) {
		usage(stderr);
		exit(EXIT_UNKNOWN);
	}
	o->host_arg = argv[optind];
	parse_target(o);
	if (port != -1)
		o->port = (unsigned int)port;
	if (o->starttls_arg == NULL)
		o->starttls = detector_starttls_for_port(o->port);
	if (o->resolve != NULL && o->survey)
		cli_die("--resolve names the direct path, which --survey does not "
		    "use");
	if (o->resolve != NULL)
		parse_resolve(o);
}

static void
load_config(const struct options *o)
{
	struct detector_config *cfg = run.cfg = detector_config_new();

	if (cfg == NULL)
		cli_die("out of memory");
	if ((o->config ? detector_config_load_file(cfg, o->config) :
	    detector_config_load_default(cfg)) == -1)
		cli_die("%s", detector_config_error(cfg));
	if ((o->spheres && detector_config_set_spheres(cfg, o->spheres) == -1) ||
	    (o->quorum > 0 &&
	    detector_config_set_quorum(cfg, (unsigned int)o->quorum) == -1) ||
	    (o->timeout > 0 && detector_config_set_probe_timeout(cfg,
	    (unsigned int)o->timeout) == -1) ||
	    (o->deadline > 0 && detector_config_set_deadline(cfg,
	    (unsigned int)o->deadline) == -1))
		cli_die("%s", detector_config_error(cfg));
	if (o->no_cache)
		detector_config_set_remember(cfg, 0);
	if (o->verbose && !o->json)
		printf("configuration: %s\n", detector_config_path(cfg) ?
		    detector_config_path(cfg) : o->config ? o->config :
		    "built-in defaults");
}

static void
run_release(void)
{
	detector_result_free(run.res);
	detector_path_free(run.direct);
	detector_free(run.ctx);
	detector_config_free(run.cfg);
	if (NSS_IsInitialized() && NSS_Shutdown() != SECSuccess)
		fprintf(stderr, "sphere-probe: NSS shutdown reported leaked "
		    "references\n");
	PR_Cleanup();
}

static void
list_entry(void *arg, const struct detector_cache_entry *e)
{
	char spki[65], first[32], last[32], exp[32];

	(void)arg;
	if (e->malformed) {
		printf("%-40s (malformed entry, ignored)\n", e->key);
		return;
	}
	cli_hex(e->spki_sha256, 32, spki);
	cli_iso_time(e->first_seen, first, sizeof(first));
	cli_iso_time(e->last_verified, last, sizeof(last));
	cli_iso_time(e->expires, exp, sizeof(exp));
	printf("%-40s %-9s %.16s  first %s  verified %s  expires %s\n",
	    e->key, detector_verdict_name(e->verdict), spki, first, last, exp);
}

/* --cache-list and --cache-forget: no network at all. */
static int
cache_command(const struct options *o)
{
	int n;

	if ((run.ctx = detector_new()) == NULL)
		cli_die("out of memory");
	if (detector_configure(run.ctx, run.cfg) == -1)
		cli_die("%s", detector_error(run.ctx));
	if (o->cache_list) {
		if (detector_cache_list(run.ctx, list_entry, NULL) == -1)
			cli_die("%s", detector_error(run.ctx));
		return 0;
	}
	if ((n = detector_cache_forget(run.ctx, o->host, o->port)) == -1)
		cli_die("%s", detector_error(run.ctx));
	printf("forgot %d cached verdict%s for %s%s%.0u\n", n, n == 1 ? "" :
	    "s", o->host, o->port ? ":" : "", o->port);
	return 0;
}

/* A verdict remembered for the key seen directly. */
static int
report_cached(const struct options *o, const struct detector_result *r)
{
	const struct detector_path *d = run.direct;
	char when[32], spki[65];

	cli_iso_time(r->verified_at, when, sizeof(when));
	if (o->json) {
		json_t *root = json_pack("{s:s, s:I, s:s, s:s, s:I, "
		    "s:{s:o, s:o}, s:[], s:s, s:b, s:s, s:o}", "host", o->host,
		    "port", (json_int_t)o->port, "starttls",
		    detector_starttls_name(o->starttls), "verdict",
		    detector_verdict_name(r->verdict), "quorum",
		    (json_int_t)r->quorum, "direct", "spki_sha256",
		    json_hash(d->have_cert, d->spki_sha256), "cert_sha256",
		    json_hash(d->have_cert, d->cert_sha256), "spheres",
		    "reason", r->reason, "cached", 1, "verified_at", when,
		    "policy", policy_json(r));
		char *out = root ? json_dumps(root, JSON_INDENT(2) |
		    JSON_PRESERVE_ORDER) : NULL;
		if (out == NULL)
			cli_die("cannot build the JSON report");
		printf("%s\n", out);
		free(out);
		json_decref(root);
	} else {
		cli_hex(d->spki_sha256, 32, spki);
		printf("sphere-probe %s:%u%s%s\n\n  direct key %s\n\n"
		    "verdict: %s (cached): remembered verdict for this key, "
		    "last verified %s; --no-cache probes again\n", o->host,
		    o->port, o->starttls ? " STARTTLS " : "", o->starttls ?
		    detector_starttls_name(o->starttls) : "", spki,
		    detector_verdict_name(r->verdict), when);
		print_policy(r);
	}
	return r->verdict == DETECTOR_ACCEPT ? EXIT_ACCEPT :
	    r->verdict == DETECTOR_REJECT ? EXIT_REJECT : EXIT_UNDECIDED;
}

int
main(int argc, char **argv)
{
	struct options o;
	const char *rule;
	unsigned int deadline, remaining;

	cli_init("sphere-probe", EXIT_UNKNOWN, NULL);
	parse_args(argc, argv, &o);
	atexit(run_release);
	if (NSS_NoDB_Init(NULL) != SECSuccess ||
	    NSS_SetDomesticPolicy() != SECSuccess)
		cli_die("cannot initialise NSS");
	load_config(&o);
	if (o.cache_list || o.cache_forget)
		return cache_command(&o);
	deadline = detector_config_deadline(run.cfg);
	if (o.dump_dir != NULL && mkdir(o.dump_dir, 0700) == -1 &&
	    errno != EEXIST)
		cli_die("%s: %s", o.dump_dir, strerror(errno));
	if (o.dump_dir != NULL && access(o.dump_dir, W_OK) == -1)
		cli_die("%s: %s", o.dump_dir, strerror(errno));
	if ((run.ctx = detector_new()) == NULL)
		cli_die("out of memory");
	if (detector_configure(run.ctx, run.cfg) == -1 ||
	    detector_set_starttls(run.ctx, o.starttls) == -1)
		cli_die("%s", detector_error(run.ctx));
	if ((rule = detector_excluded(run.ctx, o.host)) != NULL)
		cli_die("%s is excluded from probing by the rule '%s' in the "
		    "configuration; not probed", o.host, rule);
	if (o.survey) {
		int rc;

		if (detector_survey(run.ctx, o.host, o.port, &run.res) == -1)
			cli_die("%s", detector_error(run.ctx));
		rc = print_survey(&o, run.res);
		if (o.dump_dir != NULL)
			dump_all(o.dump_dir, NULL, run.res);
		return rc;
	}
	if (detector_fetch(run.ctx, o.host, o.port, o.resolve ?
	    o.resolve_addr : NULL, &run.direct) == -1)
		cli_die("%s", detector_error(run.ctx));
	if (run.direct->status != DETECTOR_PATH_SEEN)
		cli_die("direct connection to %s:%u failed: %s", o.host, o.port,
		    run.direct->error ? run.direct->error : "no certificate");
	/* The deadline covers the whole run: the spheres get what is left. */
	remaining = run.direct->ms < deadline ? deadline - run.direct->ms : 1;
	if (detector_config_set_deadline(run.cfg, remaining) == -1 ||
	    detector_configure(run.ctx, run.cfg) == -1)
		cli_die("%s", detector_error(run.ctx));
	if (detector_check_path(run.ctx, o.host, o.port, run.direct,
	    &run.res) == -1)
		cli_die("%s", detector_error(run.ctx));
	if (run.res->note != NULL)
		fprintf(stderr, "sphere-probe: %s\n", run.res->note);
	if (run.res->cached)
		return report_cached(&o, run.res);
	if (o.json)
		print_json(&o, run.direct, run.res);
	else
		print_text(&o, run.direct, run.res);
	if (o.dump_dir != NULL)
		dump_all(o.dump_dir, run.direct, run.res);
	switch (run.res->verdict) {
	case DETECTOR_ACCEPT: return EXIT_ACCEPT;
	case DETECTOR_REJECT: return EXIT_REJECT;
	case DETECTOR_UNDECIDED: return EXIT_UNDECIDED;
	default: return EXIT_UNKNOWN;
	}
}
