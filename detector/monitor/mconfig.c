/*
 * mconfig.c - detector-monitor's configuration file.
 *
 *	[monitor]
 *	state = /var/lib/detector-monitor/state.json
 *	hooks = /etc/detector/monitor-hooks.d
 *
 *	[www]
 *	host = www.example.org
 *	port = 443
 *	pin = 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 *	pem = /etc/ssl/certs/www.pem
 *
 * A monitor that quietly watches nothing is worse than none: every error
 * (unknown key, bad value, a PEM file that is missing or holds no
 * certificate, a service without any expected key, a duplicate section)
 * stops the load and names the file, the line and the key.  libinih parses
 * the INI syntax, through the line reader shared with libdetector's
 * configuration (detector/common/inireader.c), which counts lines, so that
 * a message can name the line of any key and of any [section] header, and
 * which sees every header (inih reports only sections with keys).
 */
#include "monitor.h"
#include "inireader.h"

#include <arpa/inet.h>
#include <errno.h>
#include <nssb64.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define CONFIG_MAX_SIZE (1 << 20)
#define PEM_MAX_SIZE (1 << 20)
#define DURATION_MAX (365u * 86400)

struct pstate {
	struct mon_config *mc;
	struct inireader *r;           /* during a callback */
	char dir[PATH_MAX];            /* for relative paths */
	int section;                   /* 0 none, 1 [monitor], 2 a service */
	int monitor_line;
	struct mon_service *cur;
	size_t cap;
	unsigned int seen;             /* scalar keys already given, bits */
};

static int
pfail(struct pstate *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
pfail(struct pstate *ps, const char *fmt, ...)
{
	char what[MON_ERR_MAX - PATH_MAX / 8];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return inireader_fail(ps->r, "%s", what);
}

/* The monitor's name for plain TLS is "tls" (a service speaks TLS at
 * once); the rest are libdetector's names. */
const char *
mconfig_proto_name(enum detector_starttls proto)
{
	return proto == DETECTOR_STARTTLS_NONE ? "tls" :
	    detector_starttls_name(proto);
}

unsigned int
mconfig_port(const struct mon_service *s)
{
	return s->port ? s->port : detector_starttls_port(s->proto);
}

void
mconfig_target(const struct mon_service *s, char *buf, size_t size)
{
	int v6 = strchr(s->host, ':') != NULL;

	snprintf(buf, size, "%s%s%s:%u/%s", v6 ? "[" : "", s->host,
	    v6 ? "]" : "", mconfig_port(s), mconfig_proto_name(s->proto));
}

unsigned int
mconfig_interval(const struct mon_config *mc, const struct mon_service *s)
{
	return s->interval_s ? s->interval_s : mc->interval_s;
}

unsigned int
mconfig_jitter(const struct mon_config *mc, const struct mon_service *s)
{
	if (s->jitter_set)
		return s->jitter_s;
	if (s->interval_s == 0 && mc->jitter_set)
		return mc->jitter_s;
	return mconfig_interval(mc, s) / 10;
}

/*
 * Values.
 */

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The white space a PEM body may carry between its base64 characters. */
static int
pem_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* a and b are the same text, white space aside. */
static int
same_text(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i = 0, j = 0;

	for (;;) {
		while (i < alen && pem_space(a[i]))
			i++;
		while (j < blen && pem_space(b[j]))
			j++;
		if (i == alen || j == blen)
			return i == alen && j == blen;
		if (a[i++] != b[j++])
			return 0;
	}
}

/*
 * Base64 by NSS (NSSBase64_DecodeBuffer), made strict: NSS passes over any
 * character outside the alphabet and ignores the bits that padding drops,
 * so the text is accepted only if NSS encodes the bytes back to the same
 * text, white space aside.  One spelling per key or certificate: nothing
 * in a file is skipped in silence.  Returns the decoded length (*out
 * malloc'd) or -1.
 */
static long
b64decode(const char *in, size_t len, unsigned char **out)
{
	PLArenaPool *arena;
	SECItem *bin;
	char *back;
	long n = -1;

	*out = NULL;
	if (len == 0 || len > PEM_MAX_SIZE)
		return -1;
	if ((arena = PORT_NewArena(2048)) == NULL)
		return -1;
	bin = NSSBase64_DecodeBuffer(arena, NULL, in, (unsigned int)len);
	if (bin != NULL && bin->len > 0 &&
	    (back = NSSBase64_EncodeItem(arena, NULL, 0, bin)) != NULL &&
	    same_text(in, len, back, strlen(back)) &&
	    (*out = malloc(bin->len)) != NULL) {
		memcpy(*out, bin->data, bin->len);
		n = (long)bin->len;
	}
	PORT_FreeArena(arena, PR_FALSE);
	return n;
}

int
mconfig_parse_pin(const char *s, unsigned char out[MON_KEY_LEN])
{
	size_t len = strlen(s), i;
	unsigned char *buf;
	long got;

	if (len == 64 || len == 95) {
		size_t step = len == 64 ? 2 : 3;
		for (i = 0; i < MON_KEY_LEN; i++) {
			int hi = hexval((unsigned char)s[i * step]);
			int lo = hexval((unsigned char)s[i * step + 1]);
			if (hi < 0 || lo < 0)
				return -1;
			if (step == 3 && i + 1 < MON_KEY_LEN &&
			    s[i * step + 2] != ':')
				return -1;
			out[i] = (unsigned char)(hi << 4 | lo);
		}
		return 0;
	}
	if (len != 44 || strcspn(s, " \t\r\n") != len)
		return -1;
	if ((got = b64decode(s, len, &buf)) == MON_KEY_LEN)
		memcpy(out, buf, MON_KEY_LEN);
	free(buf);
	return got == MON_KEY_LEN ? 0 : -1;
}

int
mconfig_pem_first_cert(const char *text, size_t len, unsigned char **der,
    size_t *der_len, char *err, size_t errlen)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	const char *b = NULL, *e = NULL, *p;
	long got;

	*der = NULL;
	for (p = text; p + sizeof(begin) - 1 <= text + len; p++) {
		if (memcmp(p, begin, sizeof(begin) - 1) == 0 &&
		    (p == text || p[-1] == '\n')) {
			b = p + sizeof(begin) - 1;
			break;
		}
	}
	if (b == NULL) {
		snprintf(err, errlen, "no certificate in it (no line '%s')",
		    begin);
		return -1;
	}
	for (p = b; p + sizeof(end) - 1 <= text + len; p++) {
		if (memcmp(p, end, sizeof(end) - 1) == 0) {
			e = p;
			break;
		}
	}
	if (e == NULL) {
		snprintf(err, errlen, "certificate not terminated by '%s'",
		    end);
		return -1;
	}
	if ((got = b64decode(b, (size_t)(e - b), der)) == -1) {
		snprintf(err, errlen, "the first certificate is not valid "
		    "base64");
		return -1;
	}
	*der_len = (size_t)got;
	return 0;
}

/* "90", "90s", "15m", "2h", "1d" into seconds. */
static int
parse_duration(const char *s, unsigned int *out)
{
	char num[16];
	size_t len = strlen(s);
	unsigned int v;
	unsigned long mul = 1;

	if (len == 0 || len >= sizeof(num))
		return -1;
	memcpy(num, s, len + 1);
	switch (num[len - 1]) {
	case 's': mul = 1; num[--len] = '\0'; break;
	case 'm': mul = 60; num[--len] = '\0'; break;
	case 'h': mul = 3600; num[--len] = '\0'; break;
	case 'd': mul = 86400; num[--len] = '\0'; break;
	default: break;
	}
	if (detector_config_parse_uint(num, DURATION_MAX, &v) == -1 ||
	    v * mul > DURATION_MAX)
		return -1;
	*out = (unsigned int)(v * mul);
	return 0;
}

/* A path from the file: relative ones are relative to the file's folder. */
static int
set_path(struct pstate *ps, char *dst, size_t size, const char *value)
{
	int n;

	if (value[0] == '\0')
		return -1;
	if (value[0] == '/')
		n = snprintf(dst, size, "%s", value);
	else
		n = snprintf(dst, size, "%s/%s", ps->dir, value);
	if (n <= 0 || (size_t)n >= size)
		return -1;
	/* "hooks/" would make O_NOFOLLOW and lstat() follow a symlinked
	 * folder: the path names the entry itself, without trailing slashes. */
	while (n > 1 && dst[n - 1] == '/')
		dst[--n] = '\0';
	return 0;
}

/* Letters, digits and . - _ : @ ; used in file names and environments. */
static int
valid_name(const char *s)
{
	size_t i;

	if (s[0] == '\0' || strlen(s) >= MON_NAME_MAX || s[0] == '.' ||
	    s[0] == '-')
		return 0;
	for (i = 0; s[i]; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		    c == '_' || c == ':' || c == '@'))
			return 0;
	}
	return 1;
}

/* A DNS name or an IP literal: what a SOCKS5 CONNECT and SNI can carry. */
static int
valid_host(const char *s)
{
	unsigned char a6[16];
	size_t i, len = strlen(s);

	if (len == 0 || len >= MON_HOST_MAX)
		return 0;
	if (inet_pton(AF_INET6, s, a6) == 1)
		return 1;
	if (s[0] == '.' || s[0] == '-')
		return 0;
	for (i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		    c == '_'))
			return 0;
		if (c == '.' && s[i + 1] == '.')
			return 0;
	}
	return 1;
}

/*
 * Opens a file the monitor obeys (its configuration, a `pem` naming the key
 * a service must show) under libdetector's trust rules: whoever can change
 * it could make a MITM's key the expected one, or silence the monitor.  The
 * descriptor checked is the one read.  NULL with err set: "cannot open:
 * REASON", or "refused: WHY" (WHY names the file or folder, the rule and
 * what to do).
 */
static FILE *
open_trusted(const char *path, char *err, size_t errlen)
{
	char why[768];
	FILE *f;
	int fd, saved;

	if ((fd = detector_open_trusted(path, why, sizeof(why))) == -1) {
		if (errno == EPERM)
			snprintf(err, errlen, "refused: %s", why);
		else
			snprintf(err, errlen, "cannot open: %s",
			    strerror(errno));
		return NULL;
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		saved = errno;
		close(fd);
		snprintf(err, errlen, "cannot open: %s", strerror(saved));
	}
	return f;
}

/* Reads a whole regular file of at most max bytes. */
static char *
slurp(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
	struct stat sb;
	FILE *f;
	char *buf;

	if ((f = open_trusted(path, err, errlen)) == NULL)
		return NULL;
	if (fstat(fileno(f), &sb) == -1 || !S_ISREG(sb.st_mode)) {
		fclose(f);
		snprintf(err, errlen, "not a regular file");
		return NULL;
	}
	if (sb.st_size > (off_t)max) {
		fclose(f);
		snprintf(err, errlen, "larger than %zu bytes", max);
		return NULL;
	}
	if ((buf = malloc((size_t)sb.st_size + 1)) == NULL) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	*len = fread(buf, 1, (size_t)sb.st_size, f);
	if (ferror(f)) {
		snprintf(err, errlen, "read error: %s", strerror(errno));
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[*len] = '\0';
	return buf;
}

static int
add_expected(struct pstate *ps, const char *key, const char *value,
    const unsigned char spki[MON_KEY_LEN])
{
	struct mon_service *s = ps->cur;
	size_t i;

	for (i = 0; i < s->nexpected; i++)
		if (memcmp(s->expected[i], spki, MON_KEY_LEN) == 0)
			return 1;   /* a PEM and a pin for one key: fine */
	if (s->nexpected == MON_MAX_EXPECTED)
		return pfail(ps, "key '%s': '%s': more than %d expected keys",
		    key, value, MON_MAX_EXPECTED);
	memcpy(s->expected[s->nexpected++], spki, MON_KEY_LEN);
	return 1;
}

static int
add_pem(struct pstate *ps, const char *value)
{
	char path[PATH_MAX], err[1024];
	unsigned char spki[MON_KEY_LEN], cert[MON_KEY_LEN], *der;
	size_t len, der_len;
	char *text;
	int rc;

	if (set_path(ps, path, sizeof(path), value) == -1)
		return pfail(ps, "key 'pem': bad path '%s'", value);
	if ((text = slurp(path, PEM_MAX_SIZE, &len, err, sizeof(err))) ==
	    NULL)
		return pfail(ps, "key 'pem': %s: %s", path, err);
	rc = mconfig_pem_first_cert(text, len, &der, &der_len, err,
	    sizeof(err));
	free(text);
	if (rc == -1)
		return pfail(ps, "key 'pem': %s: %s", path, err);
	rc = detector_cert_hashes(der, der_len, spki, cert, err, sizeof(err));
	free(der);
	if (rc == -1)
		return pfail(ps, "key 'pem': %s: the first certificate is "
		    "unusable: %s", path, err);
	return add_expected(ps, "pem", value, spki);
}

/* Each item of a comma or space separated list. */
static int
add_pins(struct pstate *ps, const char *value)
{
	const char *p = value;
	char tok[128];
	unsigned char spki[MON_KEY_LEN];

	while (*p) {
		size_t len = strcspn(p, ", \t");
		if (len == 0) {
			p++;
			continue;
		}
		if (len >= sizeof(tok))
			return pfail(ps, "key 'pin': '%.20s...' is not a "
			    "SPKI SHA-256 pin: expected 64 hex digits or 44 "
			    "characters of base64", p);
		memcpy(tok, p, len);
		tok[len] = '\0';
		p += len;
		if (mconfig_parse_pin(tok, spki) == -1)
			return pfail(ps, "key 'pin': '%s' is not a SPKI "
			    "SHA-256 pin: expected 64 hex digits or 44 "
			    "characters of base64", tok);
		if (!add_expected(ps, "pin", tok, spki))
			return 0;
	}
	return 1;
}

/* Keys that may be given once per section; bit in ps->seen. */
static int
once(struct pstate *ps, const char *name, unsigned int bit)
{
	if (ps->seen & (1u << bit))
		return pfail(ps, "key '%s': given twice in this section",
		    name);
	ps->seen |= 1u << bit;
	return 1;
}

/*
 * The hooks folder: every executable in it runs with the monitor's rights
 * (root, as a service), so it must be as trustworthy as the monitor's own
 * files: a real folder (not a symlink), ours or root's, writable by nobody
 * else (filetrust.h).  A mistyped folder would swallow every alert, so a
 * missing one is an error too.  alert.c checks it again before each run.
 */
static int
hooks_dir_ok(struct pstate *ps)
{
	const char *dir = ps->mc->hooks_dir;
	char err[PATH_MAX + 256];
	struct stat sb;

	if (stat(dir, &sb) == -1)
		return pfail(ps, "key 'hooks': %s: %s", dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return pfail(ps, "key 'hooks': %s: not a folder", dir);
	if (detector_file_trusted(dir, DETECTOR_TRUST_DIR, err, sizeof(err)) == -1)
		return pfail(ps, "key 'hooks': %s (its hooks would run as uid "
		    "%lu)", err, (unsigned long)geteuid());
	return 1;
}

/*
 * interval and jitter, which [monitor] (the defaults) and each service
 * section take alike.  bit: once()'s bit for interval, jitter's the next.
 * 1 if taken, 0 if wrong (ps says why).
 */
static int
timing_key(struct pstate *ps, const char *name, const char *value,
    unsigned int bit, unsigned int *interval_s, unsigned int *jitter_s,
    int *jitter_set)
{
	if (strcmp(name, "interval") == 0) {
		if (!once(ps, name, bit))
			return 0;
		if (parse_duration(value, interval_s) == -1 ||
		    *interval_s < MON_MIN_INTERVAL_S)
			return pfail(ps, "key 'interval': '%s' is not a "
			    "duration from %us to 365d", value,
			    MON_MIN_INTERVAL_S);
		return 1;
	}
	if (!once(ps, name, bit + 1))
		return 0;
	if (parse_duration(value, jitter_s) == -1)
		return pfail(ps, "key 'jitter': '%s' is not a "
		    "duration such as 0, 30s or 5m", value);
	*jitter_set = 1;
	return 1;
}

static int
monitor_key(struct pstate *ps, const char *name, const char *value)
{
	struct mon_config *mc = ps->mc;
	unsigned int v;

	if (strcmp(name, "state") == 0) {
		if (!once(ps, name, 0))
			return 0;
		if (set_path(ps, mc->state_path, sizeof(mc->state_path),
		    value) == -1)
			return pfail(ps, "key 'state': bad path '%s'", value);
	} else if (strcmp(name, "hooks") == 0) {
		if (!once(ps, name, 1))
			return 0;
		if (set_path(ps, mc->hooks_dir, sizeof(mc->hooks_dir),
		    value) == -1)
			return pfail(ps, "key 'hooks': bad path '%s'", value);
		if (!hooks_dir_ok(ps))
			return 0;
	} else if (strcmp(name, "reports") == 0) {
		if (!once(ps, name, 2))
			return 0;
		if (set_path(ps, mc->reports_dir, sizeof(mc->reports_dir),
		    value) == -1)
			return pfail(ps, "key 'reports': bad path '%s'",
			    value);
	} else if (strcmp(name, "detector_config") == 0) {
		if (!once(ps, name, 3))
			return 0;
		if (set_path(ps, mc->detector_config,
		    sizeof(mc->detector_config), value) == -1)
			return pfail(ps, "key 'detector_config': bad path "
			    "'%s'", value);
	} else if (strcmp(name, "hook_timeout") == 0) {
		if (!once(ps, name, 4))
			return 0;
		if (parse_duration(value, &mc->hook_timeout_s) == -1 ||
		    mc->hook_timeout_s < 1 || mc->hook_timeout_s > 3600)
			return pfail(ps, "key 'hook_timeout': '%s' is not a "
			    "duration from 1s to 1h", value);
	} else if (strcmp(name, "heartbeat") == 0) {
		if (!once(ps, name, 5))
			return 0;
		if (strcmp(value, "off") == 0)
			mc->heartbeat_s = 0;
		else if (parse_duration(value, &mc->heartbeat_s) == -1 ||
		    mc->heartbeat_s < 1)
			return pfail(ps, "key 'heartbeat': '%s' is neither "
			    "'off' nor a duration such as 1d or 12h", value);
	} else if (strcmp(name, "down_after") == 0) {
		if (!once(ps, name, 6))
			return 0;
		if (detector_config_parse_uint(value, 100, &v) == -1 || v < 1)
			return pfail(ps, "key 'down_after': '%s' is not a "
			    "number of cycles from 1 to 100", value);
		mc->down_after = v;
	} else if (strcmp(name, "syslog") == 0) {
		if (!once(ps, name, 7))
			return 0;
		if (detector_config_parse_bool(value, &mc->syslog) == -1)
			return pfail(ps, "key 'syslog': '%s' is neither 'yes' "
			    "nor 'no'", value);
	} else if (strcmp(name, "interval") == 0 ||
	    strcmp(name, "jitter") == 0) {
		return timing_key(ps, name, value, 8, &mc->interval_s,
		    &mc->jitter_s, &mc->jitter_set);
	} else {
		return pfail(ps, "key '%s': unknown in [monitor] (known: "
		    "state, hooks, reports, detector_config, hook_timeout, "
		    "heartbeat, down_after, syslog, interval, jitter)", name);
	}
	return 1;
}

static int
service_key(struct pstate *ps, const char *name, const char *value)
{
	struct mon_service *s = ps->cur;
	unsigned int v;

	if (strcmp(name, "host") == 0) {
		if (!once(ps, name, 0))
			return 0;
		if (!valid_host(value))
			return pfail(ps, "key 'host': '%s' is not a host name "
			    "or IP address", value);
		snprintf(s->host, sizeof(s->host), "%s", value);
	} else if (strcmp(name, "port") == 0) {
		if (!once(ps, name, 1))
			return 0;
		if (detector_config_parse_uint(value, 65535, &v) == -1 || v < 1)
			return pfail(ps, "key 'port': '%s' is not a port "
			    "number from 1 to 65535", value);
		s->port = v;
	} else if (strcmp(name, "protocol") == 0) {
		if (!once(ps, name, 2))
			return 0;
		if (detector_starttls_parse(value, &s->proto) == -1)
			return pfail(ps, "key 'protocol': unknown protocol "
			    "'%s' (known: tls, smtp, imap, pop3, xmpp, ldap)",
			    value);
		s->proto_set = 1;
	} else if (strcmp(name, "address") == 0) {
		unsigned char a[16];
		if (!once(ps, name, 3))
			return 0;
		if (strlen(value) >= sizeof(s->address) ||
		    (inet_pton(AF_INET, value, a) != 1 &&
		    inet_pton(AF_INET6, value, a) != 1))
			return pfail(ps, "key 'address': '%s' is not an IP "
			    "address", value);
		snprintf(s->address, sizeof(s->address), "%s", value);
	} else if (strcmp(name, "pin") == 0) {
		return add_pins(ps, value);
	} else if (strcmp(name, "pem") == 0) {
		return add_pem(ps, value);
	} else if (strcmp(name, "interval") == 0 ||
	    strcmp(name, "jitter") == 0) {
		return timing_key(ps, name, value, 4, &s->interval_s,
		    &s->jitter_s, &s->jitter_set);
	} else {
		return pfail(ps, "key '%s': unknown in a service section "
		    "(known: host, port, protocol, address, pin, pem, "
		    "interval, jitter)", name);
	}
	return 1;
}

static int
handler(struct inireader *r, void *user, const char *section,
    const char *name, const char *value)
{
	struct pstate *ps = user;

	ps->r = r;
	if (ps->section == 0)
		return pfail(ps, "key '%s' before any section (settings go "
		    "under [monitor], services under [NAME])", name);
	if (ps->section == 1)
		return monitor_key(ps, name, value);
	if (ps->cur == NULL || strcmp(section, ps->cur->name) != 0)
		return pfail(ps, "key '%s': cannot tell its section", name);
	return service_key(ps, name, value);
}

/* A [section] header, seen by the reader before inih. */
static int
start_section(struct inireader *r, void *user, const char *name)
{
	struct pstate *ps = user;
	struct mon_config *mc = ps->mc;
	size_t len = strlen(name), i;

	ps->r = r;
	if (len >= MON_NAME_MAX)
		return pfail(ps, "section name '%.*s' longer than %d "
		    "characters", (int)(len > 80 ? 80 : len), name,
		    MON_NAME_MAX - 1);
	ps->seen = 0;
	if (strcmp(name, "monitor") == 0) {
		if (ps->monitor_line)
			return pfail(ps, "section [monitor] given twice "
			    "(first on line %d)", ps->monitor_line);
		ps->monitor_line = inireader_line(r);
		ps->section = 1;
		ps->cur = NULL;
		return 1;
	}
	if (!valid_name(name))
		return pfail(ps, "section [%s]: a service name is letters, "
		    "digits and . - _ : @", name);
	for (i = 0; i < mc->nservices; i++)
		if (strcmp(mc->services[i].name, name) == 0)
			return pfail(ps, "section [%s] given twice (first on "
			    "line %d)", name, mc->services[i].line);
	if (mc->nservices == MON_MAX_SERVICES)
		return pfail(ps, "more than %d services", MON_MAX_SERVICES);
	if (mc->nservices == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 8;
		struct mon_service *n = realloc(mc->services,
		    cap * sizeof(*n));
		if (n == NULL)
			return pfail(ps, "out of memory");
		mc->services = n;
		ps->cap = cap;
	}
	ps->cur = &mc->services[mc->nservices++];
	memset(ps->cur, 0, sizeof(*ps->cur));
	snprintf(ps->cur->name, sizeof(ps->cur->name), "%s", name);
	ps->cur->line = inireader_line(r);
	ps->section = 2;
	return 1;
}

/* What a service needs, checked after the whole file is read. */
static int
check_service(struct mon_config *mc, struct mon_service *s, const char *name)
{
	unsigned int interval, jitter;

	if (s->host[0] == '\0') {
		snprintf(mc->err, sizeof(mc->err), "%s:%d: [%s]: no 'host'",
		    name, s->line, s->name);
		return -1;
	}
	if (s->nexpected == 0) {
		snprintf(mc->err, sizeof(mc->err), "%s:%d: [%s]: no expected "
		    "key: give 'pin = SPKI-SHA256' or 'pem = FILE' (the "
		    "'spki sha256' line of `sphere-probe -v %s` shows the key "
		    "served now)", name, s->line, s->name, s->host);
		return -1;
	}
	if (!s->proto_set)
		s->proto = s->port ? detector_starttls_for_port(s->port) :
		    DETECTOR_STARTTLS_NONE;
	interval = mconfig_interval(mc, s);
	jitter = mconfig_jitter(mc, s);
	if (jitter >= interval) {
		snprintf(mc->err, sizeof(mc->err), "%s:%d: [%s]: jitter (%us) "
		    "must be shorter than the interval (%us)", name, s->line,
		    s->name, jitter, interval);
		return -1;
	}
	return 0;
}

static void
config_defaults(struct mon_config *mc)
{
	memset(mc, 0, sizeof(*mc));
	snprintf(mc->state_path, sizeof(mc->state_path), "%s",
	    MON_DEFAULT_STATE);
	mc->hook_timeout_s = MON_DEFAULT_HOOK_TIMEOUT_S;
	mc->down_after = 1;
	mc->interval_s = MON_DEFAULT_INTERVAL_S;
}

int
mconfig_parse(struct mon_config *mc, FILE *f, const char *name)
{
	static const struct inireader_ops ops = {
		.section = start_section,
		.key = handler,
		.strict_indent = 1,
		.repeat_hint = "'pin' and 'pem' may be repeated",
	};
	struct pstate *ps;
	const char *slash;
	char *text = NULL, what[MON_ERR_MAX - PATH_MAX / 8];
	size_t len = 0, i;
	int line, rc;

	config_defaults(mc);
	snprintf(mc->path, sizeof(mc->path), "%s", name);
	/* One byte more than the limit: a larger file is refused whole. */
	if ((ps = calloc(1, sizeof(*ps))) == NULL ||
	    (text = malloc(CONFIG_MAX_SIZE + 1)) == NULL) {
		free(ps);
		snprintf(mc->err, sizeof(mc->err), "%s: out of memory", name);
		return -1;
	}
	len = fread(text, 1, CONFIG_MAX_SIZE + 1, f);
	if (ferror(f) || len > CONFIG_MAX_SIZE) {
		snprintf(mc->err, sizeof(mc->err), ferror(f) ? "%s: cannot "
		    "read it" : "%s: larger than 1 MiB: not a monitor "
		    "configuration file", name);
		free(text);
		free(ps);
		return -1;
	}
	ps->mc = mc;
	slash = strrchr(name, '/');
	if (slash == NULL)
		snprintf(ps->dir, sizeof(ps->dir), ".");
	else if (slash == name)
		snprintf(ps->dir, sizeof(ps->dir), "/");
	else
		snprintf(ps->dir, sizeof(ps->dir), "%.*s",
		    (int)(slash - name), name);
	rc = inireader_parse(text, len, &ops, ps, &line, what, sizeof(what));
	free(text);
	if (rc == -1) {
		if (line > 0)
			snprintf(mc->err, sizeof(mc->err), "%s:%d: %s", name,
			    line, what);
		else
			snprintf(mc->err, sizeof(mc->err), "%s: %s", name,
			    what);
		free(ps);
		return -1;
	}
	free(ps);
	if (mc->nservices == 0) {
		snprintf(mc->err, sizeof(mc->err), "%s: no service to "
		    "monitor (add a section [NAME] with host and pin or pem)",
		    name);
		return -1;
	}
	if (mc->jitter_set && mc->jitter_s >= mc->interval_s) {
		snprintf(mc->err, sizeof(mc->err), "%s: [monitor]: jitter "
		    "(%us) must be shorter than the interval (%us)", name,
		    mc->jitter_s, mc->interval_s);
		return -1;
	}
	for (i = 0; i < mc->nservices; i++)
		if (check_service(mc, &mc->services[i], name) == -1)
			return -1;
	return 0;
}

int
mconfig_load(struct mon_config *mc, const char *path)
{
	struct stat sb;
	char err[900];
	FILE *f;
	int rc;

	if ((f = open_trusted(path, err, sizeof(err))) == NULL) {
		config_defaults(mc);
		snprintf(mc->err, sizeof(mc->err), "%s: %s", path, err);
		return -1;
	}
	if (fstat(fileno(f), &sb) == -1 || !S_ISREG(sb.st_mode)) {
		fclose(f);
		config_defaults(mc);
		snprintf(mc->err, sizeof(mc->err), "%s: not a regular file",
		    path);
		return -1;
	}
	rc = mconfig_parse(mc, f, path);
	fclose(f);
	return rc;
}

void
mconfig_free(struct mon_config *mc)
{
	free(mc->services);
	mc->services = NULL;
	mc->nservices = 0;
}
