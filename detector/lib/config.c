/*
 * config.c - struct detector_config: defaults, setters, and the INI file.
 *
 * A security tool must never fall back to a default because a value was
 * mistyped: every bad file, line, key or value is an error that names the
 * file, the line and the key.  Parsing is done by inih (libinih), through
 * the line reader shared with detector-monitor (detector/common/inireader.c),
 * which counts lines and refuses what inih would misread.
 */
#include "config.h"
#include "filetrust.h"
#include "host.h"
#include "inireader.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MS_MAX 600000u   /* ten minutes */

static int
seterr(struct detector_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
seterr(struct detector_config *cfg, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cfg->err, sizeof(cfg->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* The [site] sections' memory. */
static void
sites_clear(struct detector_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nsites; i++)
		exclude_clear(&cfg->sites[i].match);
	free(cfg->sites);
	cfg->sites = NULL;
	cfg->nsites = 0;
}

static int
sites_copy(struct detector_config *dst, const struct detector_config *src)
{
	size_t i;

	dst->sites = NULL;
	dst->nsites = 0;
	if (src->nsites == 0)
		return 0;
	if ((dst->sites = calloc(src->nsites, sizeof(*dst->sites))) == NULL)
		return -1;
	for (i = 0; i < src->nsites; i++) {
		dst->sites[i] = src->sites[i];
		dst->sites[i].match.rules = NULL;
		dst->sites[i].match.n = 0;
		dst->nsites = i + 1;
		if (exclude_copy(&dst->sites[i].match,
		    &src->sites[i].match) == -1) {
			sites_clear(dst);
			return -1;
		}
	}
	return 0;
}

struct detector_config *
detector_config_new(void)
{
	struct detector_config *cfg = calloc(1, sizeof(*cfg));

	if (cfg == NULL)
		return NULL;
	if (config_parse_spheres(DETECTOR_DEFAULT_SPHERES, cfg->spheres,
	    &cfg->nspheres, cfg->err, sizeof(cfg->err)) == -1) {
		free(cfg);
		return NULL;
	}
	cfg->quorum = DETECTOR_DEFAULT_QUORUM;
	cfg->probe_timeout_ms = DETECTOR_DEFAULT_PROBE_TIMEOUT_MS;
	cfg->deadline_ms = DETECTOR_DEFAULT_DEADLINE_MS;
	cfg->on_undecided = DETECTOR_UNDECIDED_ACCEPT;
	cfg->enabled = 1;
	cfg->log_level = LOG_ERRORS;
	cfg->cache_validity_s = DETECTOR_DEFAULT_CACHE_VALIDITY_S;
	cfg->history_days = DETECTOR_DEFAULT_HISTORY_DAYS;
	cfg->survey_days = DETECTOR_DEFAULT_SURVEY_DAYS;
	cfg->remember = 1;
	return cfg;
}

void
detector_config_free(struct detector_config *cfg)
{
	if (cfg == NULL)
		return;
	exclude_clear(&cfg->exclude);
	sites_clear(cfg);
	free(cfg);
}

const char *
detector_config_error(struct detector_config *cfg)
{
	return cfg->err[0] ? cfg->err : "no error";
}

int
config_check(const struct detector_config *cfg, char *err, size_t errlen)
{
	size_t i;

	if (cfg->quorum > cfg->nspheres) {
		snprintf(err, errlen, "quorum %u is more than the %u spheres "
		    "configured", cfg->quorum, cfg->nspheres);
		return -1;
	}
	for (i = 0; i < cfg->nsites; i++) {
		if (cfg->sites[i].quorum > cfg->nspheres) {
			snprintf(err, errlen, "[site %s] (line %d): quorum %u "
			    "is more than the %u spheres configured",
			    cfg->sites[i].match.rules[0].text,
			    cfg->sites[i].line, cfg->sites[i].quorum,
			    cfg->nspheres);
			return -1;
		}
	}
	return 0;
}

int
config_copy(struct detector_config *dst, const struct detector_config *src)
{
	*dst = *src;
	if (sites_copy(dst, src) == -1) {
		dst->exclude.rules = NULL;
		dst->exclude.n = 0;
		return -1;
	}
	if (exclude_copy(&dst->exclude, &src->exclude) == -1) {
		dst->exclude.rules = NULL;
		dst->exclude.n = 0;
		sites_clear(dst);
		return -1;
	}
	return 0;
}

/* One "ip:port" or "[ipv6]:port" into s. */
static int
parse_member(const char *tok, struct sphere_member *s, char *err,
    size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon;
	char *end;
	unsigned long port;
	size_t hl;

	memset(s, 0, sizeof(*s));
	if (tok[0] == '[') {
		const char *rb = strchr(tok, ']');
		if (rb == NULL || rb[1] != ':') {
			snprintf(err, errlen, "sphere '%s': expected "
			    "[ipv6]:port", tok);
			return -1;
		}
		hl = (size_t)(rb - tok - 1);
		colon = rb + 1;
		tok++;
	} else {
		colon = strrchr(tok, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "sphere '%s': expected ip:port "
			    "(for example 127.0.0.1:9160)", tok);
			return -1;
		}
		hl = (size_t)(colon - tok);
	}
	if (hl == 0 || hl >= sizeof(host)) {
		snprintf(err, errlen, "sphere '%s': bad address", tok);
		return -1;
	}
	memcpy(host, tok, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno ||
	    port < 1 || port > 65535) {
		snprintf(err, errlen, "sphere '%s': port must be 1-65535",
		    tok);
		return -1;
	}
	if (strchr(host, ':') == NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&s->addr;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			snprintf(err, errlen, "sphere '%s': '%s' is not an IP "
			    "address (host names are not accepted: they "
			    "would be resolved outside Tor)", tok, host);
			return -1;
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		snprintf(s->text, sizeof(s->text), "%s:%lu", host, port);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&s->addr;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			snprintf(err, errlen, "sphere '%s': '%s' is not an "
			    "IPv6 address", tok, host);
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		snprintf(s->text, sizeof(s->text), "[%s]:%lu", host, port);
	}
	return 0;
}

/* One sphere: "ip:port", or a group "ip:port|ip:port|..." into s. */
static int
parse_sphere(const char *tok, struct sphere *s, char *err, size_t errlen)
{
	char one[128];
	const char *p = tok;
	size_t len, used = 0;

	memset(s, 0, sizeof(*s));
	for (;;) {
		len = strcspn(p, "|");
		if (len == 0 || len >= sizeof(one)) {
			snprintf(err, errlen, "sphere group '%s': %s", tok,
			    len == 0 ? "empty member (write "
			    "ip:port|ip:port)" : "member too long");
			return -1;
		}
		if (s->nmembers == SPHERE_MEMBERS_MAX) {
			snprintf(err, errlen, "sphere group '%s': more than %d "
			    "members", tok, SPHERE_MEMBERS_MAX);
			return -1;
		}
		memcpy(one, p, len);
		one[len] = '\0';
		if (parse_member(one, &s->member[s->nmembers], err,
		    errlen) == -1)
			return -1;
		used += (size_t)snprintf(s->text + used, sizeof(s->text) -
		    used, "%s%s", s->nmembers ? "|" : "",
		    s->member[s->nmembers].text);
		s->nmembers++;
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
}

/* Is the member m listed already, in one of the n spheres or before
 * itself in its own group? */
static const char *
member_listed(const struct sphere *spheres, unsigned int n,
    const struct sphere *self, unsigned int m)
{
	unsigned int i, j;

	for (i = 0; i <= n; i++) {
		const struct sphere *s = i < n ? &spheres[i] : self;
		unsigned int lim = i < n ? s->nmembers : m;

		for (j = 0; j < lim; j++)
			if (strcmp(s->member[j].text,
			    self->member[m].text) == 0)
				return s->member[j].text;
	}
	return NULL;
}

const struct sphere_member *
config_sphere_member(const struct sphere *s, unsigned int pick)
{
	return &s->member[s->nmembers > 1 ? pick % s->nmembers : 0];
}

int
config_parse_spheres(const char *list, struct sphere *out, unsigned int *n,
    char *err, size_t errlen)
{
	struct sphere *tmp;
	unsigned int count = 0, m;
	const char *p = list, *dup, *addrs;
	char tok[1024], name[SPHERE_NAME_MAX + 1];

	if ((tmp = calloc(DETECTOR_MAX_SPHERES, sizeof(*tmp))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while (*p) {
		size_t len = strcspn(p, ", \t");

		if (len == 0) {
			p++;
			continue;
		}
		if (len >= sizeof(tok)) {
			snprintf(err, errlen, "sphere '%.40s...' is too long",
			    p);
			goto fail;
		}
		if (count == DETECTOR_MAX_SPHERES) {
			snprintf(err, errlen, "more than %d spheres",
			    DETECTOR_MAX_SPHERES);
			goto fail;
		}
		memcpy(tok, p, len);
		tok[len] = '\0';
		p += len;
		if (config_sphere_name(tok, name, &addrs, err, errlen) == -1 ||
		    parse_sphere(addrs, &tmp[count], err, errlen) == -1)
			goto fail;
		memcpy(tmp[count].name, name, sizeof(name));
		for (m = 0; name[0] != '\0' && m < count; m++) {
			if (strcmp(tmp[m].name, name) == 0) {
				snprintf(err, errlen, "sphere name '%s' is "
				    "given to %s and to %s: give each sphere "
				    "its own name (detector-spheres list "
				    "prints them)", name, tmp[m].text,
				    tmp[count].text);
				goto fail;
			}
		}
		for (m = 0; m < tmp[count].nmembers; m++) {
			if ((dup = member_listed(tmp, count, &tmp[count],
			    m)) != NULL) {
				snprintf(err, errlen, "sphere %s is listed "
				    "twice", dup);
				goto fail;
			}
		}
		count++;
	}
	if (count == 0) {
		snprintf(err, errlen, "no spheres given");
		goto fail;
	}
	memcpy(out, tmp, count * sizeof(*tmp));
	*n = count;
	free(tmp);
	return 0;
fail:
	free(tmp);
	return -1;
}

int
detector_config_set_spheres(struct detector_config *cfg, const char *list)
{
	char err[sizeof(cfg->err) - 32];

	if (list == NULL)
		return seterr(cfg, "spheres: no list given");
	if (config_parse_spheres(list, cfg->spheres, &cfg->nspheres, err,
	    sizeof(err)) == -1)
		return seterr(cfg, "spheres: %s", err);
	return 0;
}

int
detector_config_set_quorum(struct detector_config *cfg, unsigned int k)
{
	if (k < 1 || k > DETECTOR_MAX_SPHERES)
		return seterr(cfg, "quorum %u out of range 1-%d", k,
		    DETECTOR_MAX_SPHERES);
	cfg->quorum = k;
	return 0;
}

int
detector_config_set_probe_timeout(struct detector_config *cfg, unsigned int ms)
{
	if (ms < 1 || ms > CONFIG_MS_MAX)
		return seterr(cfg, "probe timeout %u ms out of range 1-%u",
		    ms, CONFIG_MS_MAX);
	cfg->probe_timeout_ms = ms;
	return 0;
}

int
detector_config_set_deadline(struct detector_config *cfg, unsigned int ms)
{
	if (ms < 1 || ms > CONFIG_MS_MAX)
		return seterr(cfg, "deadline %u ms out of range 1-%u", ms,
		    CONFIG_MS_MAX);
	cfg->deadline_ms = ms;
	return 0;
}

unsigned int
detector_config_deadline(const struct detector_config *cfg)
{
	return cfg->deadline_ms;
}

int
detector_config_add_exclude(struct detector_config *cfg, const char *rules)
{
	char err[sizeof(cfg->err) - 32];

	if (rules == NULL)
		return seterr(cfg, "exclude: no rules given");
	if (exclude_add(&cfg->exclude, rules, err, sizeof(err)) == -1)
		return seterr(cfg, "exclude: %s", err);
	return 0;
}

int
detector_config_set_on_undecided(struct detector_config *cfg,
    enum detector_undecided_policy policy)
{
	if (policy != DETECTOR_UNDECIDED_ACCEPT &&
	    policy != DETECTOR_UNDECIDED_REJECT)
		return seterr(cfg, "on_undecided: unknown policy %d",
		    (int)policy);
	cfg->on_undecided = policy;
	return 0;
}

enum detector_undecided_policy
detector_config_on_undecided(const struct detector_config *cfg)
{
	return cfg->on_undecided;
}

int
detector_config_set_on_mitm(struct detector_config *cfg,
    enum detector_mitm_policy policy)
{
	if (policy != DETECTOR_MITM_REFUSE && policy != DETECTOR_MITM_REROUTE)
		return seterr(cfg, "on_mitm: unknown policy %d", (int)policy);
	cfg->on_mitm = policy;
	return 0;
}

const char *
detector_undecided_name(enum detector_undecided_policy policy)
{
	return policy == DETECTOR_UNDECIDED_REJECT ? "reject" : "accept";
}

const char *
detector_mitm_name(enum detector_mitm_policy policy)
{
	return policy == DETECTOR_MITM_REROUTE ? "reroute" : "refuse";
}

/* How specific a site's rule is: the longer name, the longer prefix. */
static size_t
site_weight(const struct site *s)
{
	const struct exclude_rule *r = &s->match.rules[0];

	return r->family == 0 ? strlen(r->text) : r->prefix;
}

const struct site *
config_site_for(const struct detector_config *cfg, const char *host)
{
	const struct site *best = NULL;
	size_t i;

	for (i = 0; host != NULL && i < cfg->nsites; i++) {
		const struct site *s = &cfg->sites[i];

		if (exclude_match(&s->match, host) != NULL &&
		    (best == NULL || site_weight(s) > site_weight(best)))
			best = s;
	}
	return best;
}

/*
 * Each value from the most specific section that sets it: [site
 * a.example] may set the quorum and [site www.a.example] on_mitm only, and
 * www.a.example gets both.
 */
void
config_policy_for(const struct detector_config *cfg, const char *host,
    struct detector_policy *out)
{
	size_t qw = 0, uw = 0, mw = 0, i, w;
	const struct site *named = config_site_for(cfg, host);

	memset(out, 0, sizeof(*out));
	out->quorum = cfg->quorum;
	out->on_undecided = cfg->on_undecided;
	out->on_mitm = cfg->on_mitm;
	for (i = 0; host != NULL && i < cfg->nsites; i++) {
		const struct site *s = &cfg->sites[i];

		if (exclude_match(&s->match, host) == NULL)
			continue;
		w = site_weight(s) + 1;
		if (s->quorum != 0 && w > qw) {
			out->quorum = s->quorum;
			qw = w;
		}
		if (s->on_undecided != -1 && w > uw) {
			out->on_undecided = s->on_undecided;
			uw = w;
		}
		if (s->on_mitm != -1 && w > mw) {
			out->on_mitm = s->on_mitm;
			mw = w;
		}
	}
	if (named != NULL)
		snprintf(out->site, sizeof(out->site), "%s",
		    named->match.rules[0].text);
}

int
detector_config_policy(const struct detector_config *cfg, const char *host,
    struct detector_policy *policy)
{
	char name[HOST_MAX + 2], err[256];

	config_policy_for(cfg, NULL, policy);
	if (host == NULL || host_normalise(host, name, sizeof(name), err,
	    sizeof(err)) == -1)
		return -1;
	config_policy_for(cfg, name, policy);
	return 0;
}

int
detector_config_set_cache(struct detector_config *cfg, const char *path)
{
	if (path == NULL)
		path = "";
	if (path[0] != '\0' && path[0] != '/' && strcmp(path, "off") != 0)
		return seterr(cfg, "'%s' is neither an absolute path nor 'off'",
		    path);
	if (strlen(path) >= sizeof(cfg->cache_path))
		return seterr(cfg, "path too long");
	strcpy(cfg->cache_path, path);
	return 0;
}

void
detector_config_set_remember(struct detector_config *cfg, int remember)
{
	cfg->remember = remember != 0;
}

unsigned int
detector_config_nspheres(const struct detector_config *cfg)
{
	return cfg->nspheres;
}

const char *
detector_config_sphere(const struct detector_config *cfg, unsigned int i)
{
	return i < cfg->nspheres ? cfg->spheres[i].text : NULL;
}

const char *
detector_config_path(const struct detector_config *cfg)
{
	return cfg->path[0] ? cfg->path : NULL;
}

int
config_parse_log(const char *value, enum log_level *level, int *syslog_)
{
	size_t n = strcspn(value, ",");
	const char *to = value[n] == ',' ? value + n + 1 : "stderr";

	if (n == 3 && strncmp(value, "off", n) == 0)
		*level = LOG_OFF;
	else if (n == 6 && strncmp(value, "errors", n) == 0)
		*level = LOG_ERRORS;
	else if (n == 9 && strncmp(value, "decisions", n) == 0)
		*level = LOG_DECISIONS;
	else
		return -1;
	if (strcmp(to, "stderr") == 0)
		*syslog_ = 0;
	else if (strcmp(to, "syslog") == 0)
		*syslog_ = 1;
	else
		return -1;
	return 0;
}

/* "yes"/"no" and their usual spellings. */
int
detector_config_parse_bool(const char *s, int *out)
{
	if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "1") ||
	    !strcmp(s, "on"))
		*out = 1;
	else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "0") ||
	    !strcmp(s, "off"))
		*out = 0;
	else
		return -1;
	return 0;
}

/*
 * The INI file.
 *
 * inih's habits a security tool must not inherit (long lines split in
 * two, indented lines read as continuations) are refused by the shared
 * reader; one more is refused here: a key given twice would simply
 * override the first.
 */

#define CONFIG_FILE_MAX (1024 * 1024)   /* bytes; a config is a few lines */

/* The keys, for "set twice" (exclude is the one list that may repeat). */
static const char *const config_keys[] = {
	"spheres", "quorum", "probe_timeout_ms", "deadline_ms", "exclude",
	"on_undecided", "enabled", "log", "cache", "cache_validity",
	"starttls", "on_mitm", "history_days", "survey_days",
};
#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

struct ini_state {
	struct detector_config *cfg;
	char what[sizeof(((struct detector_config *)0)->err)];
	int quorum_seen;
	int key_line[NKEYS];            /* line each key was set on, or 0 */
	struct site *site;              /* the [site] section being read */
};

int
detector_config_parse_uint(const char *s, unsigned long max, unsigned int *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end != '\0' || v > max)
		return -1;
	*out = (unsigned int)v;
	return 0;
}

static int
key_fail(struct inireader *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "key 'NAME': WHY", on the current line. */
static int
key_fail(struct inireader *r, const char *name, const char *fmt, ...)
{
	char msg[sizeof(((struct detector_config *)0)->err) - 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return inireader_fail(r, "key '%s': %s", name, msg);
}

/*
 * `starttls = 2525:smtp 5269:xmpp 8443:none`: which plaintext preamble the
 * NSS integration's probes speak for a port, where it is not the port's
 * usual one.  Comma or space separated PORT:PROTO pairs.
 */
static int
parse_starttls(struct detector_config *cfg, const char *value, char *why,
    size_t whylen)
{
	char buf[1024], *tok, *save = NULL, *colon;
	enum detector_starttls proto;
	unsigned int port, i;

	if (strlen(value) >= sizeof(buf)) {
		snprintf(why, whylen, "value too long");
		return -1;
	}
	strcpy(buf, value);
	cfg->nstarttls = 0;
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		if ((colon = strchr(tok, ':')) == NULL) {
			snprintf(why, whylen, "'%s' is not PORT:PROTOCOL (e.g. "
			    "2525:smtp)", tok);
			return -1;
		}
		*colon = '\0';
		if (detector_config_parse_uint(tok, 65535, &port) == -1 || port == 0) {
			snprintf(why, whylen, "'%s' is not a port from 1 to "
			    "65535", tok);
			return -1;
		}
		if (detector_starttls_parse(colon + 1, &proto) == -1) {
			snprintf(why, whylen, "'%s' is not one of none, smtp, "
			    "imap, pop3, xmpp, ldap", colon + 1);
			return -1;
		}
		for (i = 0; i < cfg->nstarttls; i++) {
			if (cfg->starttls[i].port == port) {
				snprintf(why, whylen, "port %u is listed twice",
				    port);
				return -1;
			}
		}
		if (cfg->nstarttls == CONFIG_STARTTLS_MAX) {
			snprintf(why, whylen, "more than %d ports",
			    CONFIG_STARTTLS_MAX);
			return -1;
		}
		cfg->starttls[cfg->nstarttls].port = port;
		cfg->starttls[cfg->nstarttls++].proto = proto;
	}
	return 0;
}

enum detector_starttls
config_starttls_for_port(const struct detector_config *cfg,
    unsigned int port)
{
	unsigned int i;

	for (i = 0; i < cfg->nstarttls; i++) {
		if (cfg->starttls[i].port == port)
			return cfg->starttls[i].proto;
	}
	return detector_starttls_for_port(port);
}

/*
 * The two-valued policies, global or per site: on_undecided = accept |
 * reject (DETECTOR_UNDECIDED_*), on_mitm = refuse | reroute
 * (DETECTOR_MITM_*).  1 with *out set, or 0 after key_fail().
 */
static int
policy_key(struct inireader *r, const char *name, const char *value,
    int *out)
{
	int mitm = strcmp(name, "on_mitm") == 0;
	const char *zero = mitm ? "refuse" : "accept";
	const char *one = mitm ? "reroute" : "reject";

	if (strcmp(value, zero) == 0)
		*out = 0;
	else if (strcmp(value, one) == 0)
		*out = 1;
	else
		return key_fail(r, name, "'%s' is neither '%s' nor '%s'",
		    value, zero, one);
	return 1;
}

/*
 * A section header: [detector], or [site NAME] (NAME: a host name, which
 * covers every name below it, or an address range, as in `exclude`).
 * Other sections are refused on their first key, as before.
 */
static int
config_section(struct inireader *r, void *user, const char *section)
{
	struct ini_state *st = user;
	struct detector_config *cfg = st->cfg;
	char err[sizeof(st->what) - 128];
	struct exclude_list one = { NULL, 0 };
	struct site *grown;
	const char *name;
	size_t i;

	st->site = NULL;
	if (strncmp(section, "site", 4) != 0 || (section[4] != '\0' &&
	    section[4] != ' ' && section[4] != '\t'))
		return 1;
	for (name = section + 4; *name == ' ' || *name == '\t'; name++)
		;
	if (*name == '\0')
		return inireader_fail(r, "section [site]: name the site, e.g. "
		    "[site bank.example] (it covers bank.example and every "
		    "name below it)");
	if (exclude_add(&one, name, err, sizeof(err)) == -1 || one.n != 1) {
		const char *why = one.n > 1 ? "one site per section (a host "
		    "name or an address range)" : err;

		/* exclude.c says "exclude rule 'NAME': WHY": here a site. */
		if (one.n <= 1 && strncmp(why, "exclude rule '", 14) == 0 &&
		    strstr(why, "': ") != NULL)
			why = strstr(why, "': ") + 3;
		exclude_clear(&one);
		return inireader_fail(r, "section [%s]: %s", section, why);
	}
	for (i = 0; i < cfg->nsites; i++) {
		if (strcmp(cfg->sites[i].match.rules[0].text,
		    one.rules[0].text) == 0) {
			exclude_clear(&one);
			return inireader_fail(r, "section [%s] given twice "
			    "(first on line %d): merge them", section,
			    cfg->sites[i].line);
		}
	}
	if (cfg->nsites == CONFIG_SITES_MAX ||
	    (grown = realloc(cfg->sites, (cfg->nsites + 1) *
	    sizeof(*grown))) == NULL) {
		exclude_clear(&one);
		return inireader_fail(r, "section [%s]: %s", section,
		    cfg->nsites == CONFIG_SITES_MAX ? "more than 256 [site] "
		    "sections" : "out of memory");
	}
	cfg->sites = grown;
	st->site = &cfg->sites[cfg->nsites++];
	memset(st->site, 0, sizeof(*st->site));
	st->site->match = one;
	st->site->line = inireader_line(r);
	st->site->on_undecided = -1;
	st->site->on_mitm = -1;
	st->site->require_direct_staple = -1;
	st->site->tolerance = -1;
	return 1;
}

static int site_evidence_key(struct inireader *r, struct site *site,
    const char *name, const char *value);

/* A key of a [site NAME] section. */
static int
site_key(struct inireader *r, struct ini_state *st, const char *name,
    const char *value)
{
	static const char *const keys[] = { "quorum", "on_undecided",
	    "on_mitm" };
	struct site *site = st->site;
	int line = inireader_line(r);
	unsigned int v;
	size_t k;

	for (k = 0; k < 3; k++)
		if (strcmp(name, keys[k]) == 0)
			break;
	if (k == 3)
		return site_evidence_key(r, site, name, value);
	if (site->key_line[k] > 0)
		return key_fail(r, name, "set twice in [site %s] (lines %d "
		    "and %d): remove one", site->match.rules[0].text,
		    site->key_line[k], line);
	site->key_line[k] = line;
	if (k == 0) {
		if (detector_config_parse_uint(value, DETECTOR_MAX_SPHERES,
		    &v) == -1 || v < 1)
			return key_fail(r, name, "'%s' is not a number of "
			    "spheres from 1 to %d", value,
			    DETECTOR_MAX_SPHERES);
		site->quorum = v;
	} else if (!policy_key(r, name, value, k == 1 ?
	    &site->on_undecided : &site->on_mitm)) {
		return 0;
	}
	return 1;
}

static int
config_ini_handler(struct inireader *r, void *user, const char *section,
    const char *name, const char *value)
{
	struct ini_state *st = user;
	struct detector_config *cfg = st->cfg;
	int line = inireader_line(r);
	unsigned int v;
	size_t k;

	if (st->site != NULL)
		return site_key(r, st, name, value);
	if (section[0] != '\0' && strcmp(section, "detector") != 0)
		return key_fail(r, name, "unknown section [%s] (DetecTor "
		    "reads [detector] and [site NAME])", section);
	for (k = 0; k < NKEYS; k++)
		if (strcmp(name, config_keys[k]) == 0)
			break;
	if (k < NKEYS && st->key_line[k] > 0 &&
	    strcmp(name, "exclude") != 0)
		return key_fail(r, name, "set twice (lines %d and %d): "
		    "remove one", st->key_line[k], line);
	if (k < NKEYS)
		st->key_line[k] = line;
	if (strcmp(name, "spheres") == 0) {
		if (detector_config_set_spheres(cfg, value) == -1)
			return key_fail(r, name, "%s", cfg->err);
	} else if (strcmp(name, "quorum") == 0) {
		if (detector_config_parse_uint(value, DETECTOR_MAX_SPHERES, &v) == -1 || v < 1)
			return key_fail(r, name, "'%s' is not a number of "
			    "spheres from 1 to %d", value,
			    DETECTOR_MAX_SPHERES);
		cfg->quorum = v;
		st->quorum_seen = 1;
	} else if (strcmp(name, "probe_timeout_ms") == 0 ||
	    strcmp(name, "deadline_ms") == 0) {
		if (detector_config_parse_uint(value, CONFIG_MS_MAX, &v) == -1 || v < 1)
			return key_fail(r, name, "'%s' is not a time in "
			    "milliseconds from 1 to %u", value, CONFIG_MS_MAX);
		if (name[0] == 'p')
			cfg->probe_timeout_ms = v;
		else
			cfg->deadline_ms = v;
	} else if (strcmp(name, "exclude") == 0) {
		if (detector_config_add_exclude(cfg, value) == -1)
			return key_fail(r, name, "%s", cfg->err);
	} else if (strcmp(name, "on_undecided") == 0 ||
	    strcmp(name, "on_mitm") == 0) {
		int p;

		if (!policy_key(r, name, value, &p))
			return 0;
		if (strcmp(name, "on_mitm") == 0)
			cfg->on_mitm = (enum detector_mitm_policy)p;
		else
			cfg->on_undecided = (enum detector_undecided_policy)p;
	} else if (strcmp(name, "cache") == 0) {
		if (detector_config_set_cache(cfg, value) == -1)
			return key_fail(r, name, "%s", cfg->err);
	} else if (strcmp(name, "cache_validity") == 0) {
		if (detector_config_parse_uint(value, 365u * 86400, &v) == -1 || v < 1)
			return key_fail(r, name, "'%s' is not a number of "
			    "seconds from 1 to %u", value, 365u * 86400);
		cfg->cache_validity_s = v;
	} else if (strcmp(name, "history_days") == 0) {
		if (detector_config_parse_uint(value, DETECTOR_MAX_HISTORY_DAYS,
		    &v) == -1)
			return key_fail(r, name, "'%s' is not a number of days "
			    "from 0 (key continuity off) to %u", value,
			    DETECTOR_MAX_HISTORY_DAYS);
		cfg->history_days = v;
	} else if (strcmp(name, "survey_days") == 0) {
		if (detector_config_parse_uint(value, DETECTOR_MAX_HISTORY_DAYS,
		    &v) == -1 || v < 1)
			return key_fail(r, name, "'%s' is not a number of days "
			    "from 1 to %u", value, DETECTOR_MAX_HISTORY_DAYS);
		cfg->survey_days = v;
	} else if (strcmp(name, "enabled") == 0) {
		if (detector_config_parse_bool(value, &cfg->enabled) == -1)
			return key_fail(r, name, "'%s' is neither 'yes' nor "
			    "'no'", value);
	} else if (strcmp(name, "log") == 0) {
		if (config_parse_log(value, &cfg->log_level,
		    &cfg->log_syslog) == -1)
			return key_fail(r, name, "'%s' is not one of off, "
			    "errors, decisions (optionally followed by "
			    "',syslog' or ',stderr')", value);
	} else if (strcmp(name, "starttls") == 0) {
		if (parse_starttls(cfg, value, st->what,
		    sizeof(st->what)) == -1)
			return key_fail(r, name, "%s", st->what);
	} else {
		return key_fail(r, name, "unknown key (known: spheres, "
		    "quorum, probe_timeout_ms, deadline_ms, exclude, "
		    "on_undecided, on_mitm, enabled, log, cache, "
		    "cache_validity, history_days, survey_days, starttls)");
	}
	return 1;
}

int
config_load_string(struct detector_config *cfg, const char *text,
    size_t len, const char *name)
{
	static const struct inireader_ops ops = {
		.section = config_section,
		.key = config_ini_handler,
		.repeat_hint = "'exclude' may be repeated",
	};
	struct detector_config *work;
	struct ini_state *st;
	int line = 0;
	size_t i;

	if (name == NULL)
		name = "(string)";
	/* Parse into a copy: a bad file leaves cfg as it was. */
	work = malloc(sizeof(*work));
	st = calloc(1, sizeof(*st));
	if (work == NULL || st == NULL || config_copy(work, cfg) == -1) {
		free(work);
		free(st);
		return seterr(cfg, "out of memory");
	}
	st->cfg = work;
	if (inireader_parse(text, len, &ops, st, &line, st->what,
	    sizeof(st->what)) == -1) {
		if (line > 0)
			seterr(cfg, "%s:%d: %s", name, line, st->what);
		else
			seterr(cfg, "%s: %s", name, st->what);
		detector_config_free(work);
		free(st);
		return -1;
	}
	for (i = 0; work->quorum <= work->nspheres && i < work->nsites; i++) {
		const struct site *site = &work->sites[i];

		if (site->quorum <= work->nspheres)
			continue;
		seterr(cfg, "%s:%d: key 'quorum': [site %s]: quorum %u is "
		    "more than the %u spheres configured", name,
		    site->key_line[0], site->match.rules[0].text,
		    site->quorum, work->nspheres);
		detector_config_free(work);
		free(st);
		return -1;
	}
	if (config_check(work, st->what, sizeof(st->what)) == -1) {
		seterr(cfg, "%s: key '%s': %s", name, st->quorum_seen ?
		    "quorum" : "spheres", st->what);
		detector_config_free(work);
		free(st);
		return -1;
	}
	exclude_clear(&cfg->exclude);
	sites_clear(cfg);
	*cfg = *work;
	free(work);
	free(st);
	return 0;
}

/*
 * Opens a configuration file under the rules of filetrust.h (not a symlink,
 * the user's or root's, not writable by group or others; its folder too):
 * whoever can change the file can switch DetecTor off ("enabled = no").
 * The descriptor checked is the one read (fdopen), so nothing can be
 * swapped in between.  Returns the stream, or NULL with the error set and
 * errno kept (ENOENT: the file or its folder is missing).
 */
static FILE *
config_open_how(struct detector_config *cfg, const char *path, int pinned)
{
	char why[sizeof(cfg->err) - 64], folder[PATH_MAX];
	const char *name = strrchr(path, '/');
	FILE *f;
	int fd, dfd, saved;

	if (pinned && name != NULL && filetrust_dirname(path, folder,
	    sizeof(folder))) {
		/* Every folder from "/" down (filetrust_open_dir()). */
		if ((dfd = filetrust_open_dir(folder, 0, why,
		    sizeof(why))) == -1)
			fd = -1;
		else {
			fd = filetrust_openat(dfd, name + 1, path, O_RDONLY, 0,
			    0, why, sizeof(why));
			saved = errno;
			close(dfd);
			errno = saved;
		}
	} else
		fd = filetrust_open(path, O_RDONLY, 0, 0, why, sizeof(why));
	if (fd == -1) {
		saved = errno;
		if (saved == EPERM || saved == ELOOP)
			seterr(cfg, "%s: configuration file refused: %s", path,
			    why);
		else
			seterr(cfg, "%s: cannot open: %s", path,
			    strerror(saved));
		errno = saved;
		return NULL;
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		saved = errno;
		close(fd);
		seterr(cfg, "%s: cannot open: %s", path, strerror(saved));
		errno = saved;
	}
	return f;
}

static FILE *
config_open(struct detector_config *cfg, const char *path)
{
	return config_open_how(cfg, path, 0);
}

/* Reads the file opened as f (closed here) and parses it as path. */
static int
config_read(struct detector_config *cfg, FILE *f, const char *path)
{
	struct stat sb;
	char *text;
	size_t len;
	int rc;

	if (fstat(fileno(f), &sb) == -1 || !S_ISREG(sb.st_mode)) {
		fclose(f);
		return seterr(cfg, "%s: not a regular file", path);
	}
	if (sb.st_size > CONFIG_FILE_MAX) {
		fclose(f);
		return seterr(cfg, "%s: larger than %d bytes: not a DetecTor "
		    "configuration file", path, CONFIG_FILE_MAX);
	}
	/* One byte more than the size: a file that grew is not read half. */
	if ((text = malloc((size_t)sb.st_size + 1)) == NULL) {
		fclose(f);
		return seterr(cfg, "out of memory");
	}
	len = fread(text, 1, (size_t)sb.st_size + 1, f);
	if (ferror(f) || len > (size_t)sb.st_size) {
		const char *why = ferror(f) ? strerror(errno) :
		    "the file changed while it was read";
		fclose(f);
		free(text);
		return seterr(cfg, "%s: read error: %s", path, why);
	}
	fclose(f);
	rc = config_load_string(cfg, text, len, path);
	free(text);
	if (rc == 0)
		snprintf(cfg->path, sizeof(cfg->path), "%s", path);
	return rc;
}

int
detector_config_load_file(struct detector_config *cfg, const char *path)
{
	FILE *f;

	if (path == NULL)
		return seterr(cfg, "no configuration file given");
	if ((f = config_open(cfg, path)) == NULL)
		return -1;
	return config_read(cfg, f, path);
}

int
config_xdg_path(const char *xdg_var, const char *home_dir, const char *leaf,
    char *out, size_t size)
{
	const char *xdg = secure_getenv(xdg_var);
	const char *home = secure_getenv("HOME");
	int n;

	if (xdg != NULL && xdg[0] == '/')
		n = snprintf(out, size, "%s/%s", xdg, leaf);
	else if (home != NULL && home[0] == '/')
		n = snprintf(out, size, "%s/%s/%s", home, home_dir, leaf);
	else
		return 0;
	return n > 0 && (size_t)n < size;
}

/*
 * The per-user file only from a folder that is this user's
 * (filetrust_env_dir()): root under sudo with the caller's HOME must not
 * read a configuration the caller chose (~/.config a symlink to any
 * root-owned .../detector/detector.conf).  It then reads
 * /etc/detector/detector.conf.
 */
static int
config_user_dir_ours(void)
{
	const char *xdg = secure_getenv("XDG_CONFIG_HOME");
	char why[512];

	if (xdg != NULL && xdg[0] == '/')
		return filetrust_env_dir("XDG_CONFIG_HOME", xdg, why,
		    sizeof(why));
	return filetrust_env_dir("HOME", secure_getenv("HOME"), why,
	    sizeof(why));
}

int
detector_config_load_default(struct detector_config *cfg)
{
	char user[PATH_MAX];
	const char *env = secure_getenv("DETECTOR_CONFIG");
	const char *candidates[2];
	size_t i, nc = 0;

	cfg->path[0] = '\0';
	if (env != NULL && env[0] != '\0') {
		if (detector_config_load_file(cfg, env) == -1)
			return -1;   /* named explicitly: must load */
		snprintf(cfg->path, sizeof(cfg->path), "%s", env);
	} else {
		if (config_xdg_path("XDG_CONFIG_HOME", ".config",
		    "detector/detector.conf", user, sizeof(user)) &&
		    config_user_dir_ours())
			candidates[nc++] = user;
		candidates[nc++] = "/etc/detector/detector.conf";
		for (i = 0; i < nc; i++) {
			/* Absent (file or folder) is fine; present but
			 * unreadable or untrusted is not. */
			FILE *f = config_open_how(cfg, candidates[i],
			    candidates[i] == user);

			if (f == NULL && errno == ENOENT) {
				cfg->err[0] = '\0';
				continue;
			}
			if (f == NULL || config_read(cfg, f,
			    candidates[i]) == -1)
				return -1;
			snprintf(cfg->path, sizeof(cfg->path), "%s",
			    candidates[i]);
			break;
		}
	}
	env = secure_getenv("DETECTOR_LOG");
	if (env != NULL && env[0] != '\0' &&
	    config_parse_log(env, &cfg->log_level, &cfg->log_syslog) == -1)
		return seterr(cfg, "DETECTOR_LOG: '%s' is not one of off, "
		    "errors, decisions (optionally followed by ',syslog' or "
		    "',stderr')", env);
	env = secure_getenv("DETECTOR_SPHERES");
	if (env != NULL && env[0] != '\0') {
		char err[sizeof(cfg->err) - 32];
		if (config_parse_spheres(env, cfg->spheres, &cfg->nspheres,
		    err, sizeof(err)) == -1)
			return seterr(cfg, "DETECTOR_SPHERES: %s", err);
	}
	return 0;
}

/*
 * The evidence options of a [site NAME] section (issue 17), per site and
 * off by default: require_direct_staple = yes | no, tolerance = off |
 * same-issuer | survey.  1, or 0 after key_fail().
 */
static int
site_evidence_key(struct inireader *r, struct site *site, const char *name,
    const char *value)
{
	int line = inireader_line(r), k, b;
	enum detector_tolerance t;

	if (strcmp(name, "require_direct_staple") == 0)
		k = 0;
	else if (strcmp(name, "tolerance") == 0)
		k = 1;
	else
		return key_fail(r, name, "unknown in a [site] section (known: "
		    "quorum, on_undecided, on_mitm, require_direct_staple, "
		    "tolerance)");
	if (site->evidence_line[k] > 0)
		return key_fail(r, name, "set twice in [site %s] (lines %d "
		    "and %d): remove one", site->match.rules[0].text,
		    site->evidence_line[k], line);
	site->evidence_line[k] = line;
	if (k == 0) {
		if (detector_config_parse_bool(value, &b) == -1)
			return key_fail(r, name, "'%s' is neither 'yes' nor "
			    "'no'", value);
		site->require_direct_staple = b;
	} else {
		if (config_parse_tolerance(value, &t) == -1)
			return key_fail(r, name, "'%s' is not one of off, "
			    "same-issuer, survey", value);
		site->tolerance = (int)t;
	}
	return 1;
}

int
config_parse_tolerance(const char *s, enum detector_tolerance *t)
{
	if (strcmp(s, "off") == 0)
		*t = DETECTOR_TOLERANCE_OFF;
	else if (strcmp(s, "same-issuer") == 0)
		*t = DETECTOR_TOLERANCE_SAME_ISSUER;
	else if (strcmp(s, "survey") == 0)
		*t = DETECTOR_TOLERANCE_SURVEY;
	else
		return -1;
	return 0;
}

/* Each from the most specific section that sets it, as
 * config_policy_for(). */
void
config_evidence_for(const struct detector_config *cfg, const char *host,
    int *require_direct_staple, enum detector_tolerance *tolerance)
{
	size_t rw = 0, tw = 0, i, w;

	*require_direct_staple = 0;
	*tolerance = DETECTOR_TOLERANCE_OFF;
	for (i = 0; host != NULL && i < cfg->nsites; i++) {
		const struct site *s = &cfg->sites[i];

		if (exclude_match(&s->match, host) == NULL)
			continue;
		w = site_weight(s) + 1;
		if (s->require_direct_staple != -1 && w > rw) {
			*require_direct_staple = s->require_direct_staple;
			rw = w;
		}
		if (s->tolerance != -1 && w > tw) {
			*tolerance = (enum detector_tolerance)s->tolerance;
			tw = w;
		}
	}
}

/* The heap memory of a configuration copied into a context (config_copy()),
 * which detector_free() lets go of. */
void
config_release(struct detector_config *cfg)
{
	exclude_clear(&cfg->exclude);
	sites_clear(cfg);
}

/*
 * "europe=127.0.0.1:9160": the region a sphere exits in, as detector-spheres
 * names it, so that reports can say where an attack sits ("europe
 * (127.0.0.1:9160)") rather than only which SOCKS port saw it.  The name
 * reaches logs and hook environments, so it is kept to a charset that
 * needs no quoting anywhere.
 */
int
config_sphere_name(const char *tok, char name[SPHERE_NAME_MAX + 1],
    const char **rest, char *err, size_t errlen)
{
	const char *eq = strchr(tok, '=');
	size_t len, i;

	name[0] = '\0';
	*rest = tok;
	if (eq == NULL)
		return 0;
	len = (size_t)(eq - tok);
	for (i = 0; i < len; i++) {
		char c = tok[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    (c == '-' && i > 0)))
			break;
	}
	if (len == 0 || len > SPHERE_NAME_MAX || i < len ||
	    strchr(eq + 1, '=') != NULL) {
		snprintf(err, errlen, "sphere '%.80s%s': %s; write NAME=ip:port "
		    "(for example europe=127.0.0.1:9162, as 'detector-spheres "
		    "list' prints it), NAME being 1-%d lower-case letters, "
		    "digits or '-'", tok, strlen(tok) > 80 ? "..." : "",
		    strchr(eq + 1, '=') != NULL ? "more than one '='" :
		    len == 0 ? "empty name before '='" : "bad name",
		    SPHERE_NAME_MAX);
		return -1;
	}
	memcpy(name, tok, len);
	name[len] = '\0';
	*rest = eq + 1;
	return 0;
}

const char *
detector_config_sphere_region(const struct detector_config *cfg,
    unsigned int i)
{
	return i < cfg->nspheres && cfg->spheres[i].name[0] != '\0' ?
	    cfg->spheres[i].name : NULL;
}
