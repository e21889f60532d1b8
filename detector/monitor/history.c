/*
 * history.c - what the monitor remembers between cycles and runs: for each
 * service the keys it has seen (first and last time), the unexpected keys
 * already alerted, and whether each path (direct, every sphere) was last
 * up or down.  "Alert once per change" and "a key that comes back" both
 * need this memory, and it must survive restarts and `--once` runs.
 *
 * The file is JSON (jansson), small enough to read and rewrite whole.  It
 * is replaced atomically (a temporary file in the same folder, fsync,
 * rename, fsync of the folder) and is always mode 0600.  A damaged file is
 * an error that names the file and the field, never a silent reset: a
 * reset would forget the history that makes a returning key suspicious.
 */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_VERSION 1
#define STATE_MAX_SIZE (16 << 20)

static const char *const mode_names[] = { "unknown", "up", "down" };

static int
unhex(const char *s, unsigned char out[MON_KEY_LEN])
{
	size_t i;

	if (strlen(s) != 2 * MON_KEY_LEN)
		return -1;
	for (i = 0; i < 2 * MON_KEY_LEN; i++) {
		char c = s[i];
		int v = c >= '0' && c <= '9' ? c - '0' :
		    c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (v < 0)
			return -1;
		if (i % 2 == 0)
			out[i / 2] = (unsigned char)(v << 4);
		else
			out[i / 2] |= (unsigned char)v;
	}
	return 0;
}

struct perr {
	char *buf;
	size_t size;
	const char *name;
};

static int
bad(struct perr *pe, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
bad(struct perr *pe, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(pe->buf, pe->size, "state file %s: %s (fix or remove the "
	    "file; removing it forgets the key history)", pe->name, msg);
	return -1;
}

static int
get_time(json_t *obj, const char *key, int64_t *out)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

/* Service name's member key as a JSON array of at most max things, or
 * NULL (pe says so). */
static json_t *
get_list(struct perr *pe, const char *name, json_t *svc, const char *key,
    int max, const char *things)
{
	json_t *v = json_object_get(svc, key);

	if (!json_is_array(v) || json_array_size(v) > (size_t)max) {
		bad(pe, "services.%s.%s: not a list of at most %d %s", name,
		    key, max, things);
		return NULL;
	}
	return v;
}

/* obj's member key, a string shorter than size, copied to out; 0, or -1
 * when it is not one. */
static int
get_string(json_t *obj, const char *key, char *out, size_t size)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v) || strlen(json_string_value(v)) >= size)
		return -1;
	snprintf(out, size, "%s", json_string_value(v));
	return 0;
}

/* Which of names[0..n) obj's member key is, or -1. */
static int
get_choice(json_t *obj, const char *key, const char *const names[], int n)
{
	json_t *v = json_object_get(obj, key);
	int i;

	for (i = 0; i < n && json_is_string(v); i++)
		if (strcmp(names[i], json_string_value(v)) == 0)
			return i;
	return -1;
}

static int
parse_service(struct perr *pe, const char *name, json_t *o,
    struct mon_svc_state *ss)
{
	json_t *v, *item;
	size_t i;

	memset(ss, 0, sizeof(*ss));
	if (!json_is_object(o))
		return bad(pe, "services.%s: not an object", name);
	if (strlen(name) >= sizeof(ss->name) || name[0] == '\0')
		return bad(pe, "services: bad service name");
	snprintf(ss->name, sizeof(ss->name), "%s", name);
	if (get_string(o, "host", ss->host, sizeof(ss->host)) == -1)
		return bad(pe, "services.%s.host: not a host name", name);
	v = json_object_get(o, "port");
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > 65535)
		return bad(pe, "services.%s.port: not a port", name);
	ss->port = (unsigned int)json_integer_value(v);
	if (get_string(o, "protocol", ss->proto, sizeof(ss->proto)) == -1)
		return bad(pe, "services.%s.protocol: not a protocol", name);
	if (get_time(o, "last_data", &ss->last_data) == -1)
		return bad(pe, "services.%s.last_data: not a time", name);
	if (get_time(o, "seq", &ss->seq) == -1)
		return bad(pe, "services.%s.seq: not a count", name);

	v = get_list(pe, name, o, "alerted", MON_MAX_HISTORY, "keys");
	if (v == NULL)
		return -1;
	json_array_foreach(v, i, item) {
		if (!json_is_string(item) || unhex(json_string_value(item),
		    ss->alerted[i]) == -1)
			return bad(pe, "services.%s.alerted[%zu]: expected 64 "
			    "lowercase hex digits", name, i);
	}
	ss->nalerted = json_array_size(v);

	v = get_list(pe, name, o, "paths", MON_MAX_PATHS, "paths");
	if (v == NULL)
		return -1;
	json_array_foreach(v, i, item) {
		struct mon_path_state *p = &ss->paths[i];
		int m = get_choice(item, "mode", mode_names, 3);
		int64_t fails;

		if (get_string(item, "via", p->via, sizeof(p->via)) == -1 ||
		    p->via[0] == '\0')
			return bad(pe, "services.%s.paths[%zu].via: not a "
			    "path name", name, i);
		if (m == -1)
			return bad(pe, "services.%s.paths[%zu].mode: not one "
			    "of unknown, up, down", name, i);
		p->mode = (enum mon_path_mode)m;
		if (get_time(item, "fails", &fails) == -1 || fails > 1000000)
			return bad(pe, "services.%s.paths[%zu].fails: not a "
			    "count", name, i);
		p->fails = (unsigned int)fails;
	}
	ss->npaths = json_array_size(v);

	v = get_list(pe, name, o, "keys", MON_MAX_HISTORY, "keys");
	if (v == NULL)
		return -1;
	json_array_foreach(v, i, item) {
		struct mon_key_hist *k = &ss->keys[i];
		json_t *spki = json_object_get(item, "spki_sha256");
		json_t *ret = json_object_get(item, "returned");

		if (!json_is_string(spki) ||
		    unhex(json_string_value(spki), k->spki) == -1)
			return bad(pe, "services.%s.keys[%zu].spki_sha256: "
			    "expected 64 lowercase hex digits", name, i);
		if (get_time(item, "first_seen", &k->first_seen) == -1 ||
		    get_time(item, "last_seen", &k->last_seen) == -1 ||
		    k->first_seen > k->last_seen)
			return bad(pe, "services.%s.keys[%zu]: first_seen and "
			    "last_seen must be times, first <= last", name, i);
		if (get_time(item, "last_seq", &k->last_seq) == -1 ||
		    k->last_seq > ss->seq)
			return bad(pe, "services.%s.keys[%zu].last_seq: not a "
			    "cycle number up to seq", name, i);
		if (!json_is_boolean(ret))
			return bad(pe, "services.%s.keys[%zu].returned: not "
			    "true or false", name, i);
		k->returned = json_is_true(ret);
	}
	ss->nkeys = json_array_size(v);
	return 0;
}

int
history_parse(struct mon_state *st, const char *text, size_t len,
    const char *name, char *err, size_t errlen)
{
	struct perr pe = { err, errlen, name };
	json_error_t jerr;
	json_t *root, *v, *svc;
	const char *key;
	size_t i = 0;
	int rc = -1;

	memset(st, 0, sizeof(*st));
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return bad(&pe, "line %d: %s", jerr.line, jerr.text);
	if (!json_is_object(root)) {
		bad(&pe, "not a JSON object");
		goto out;
	}
	v = json_object_get(root, "version");
	if (!json_is_integer(v) || json_integer_value(v) != STATE_VERSION) {
		bad(&pe, "version: expected %d", STATE_VERSION);
		goto out;
	}
	if (get_time(root, "heartbeat_last", &st->heartbeat_last) == -1) {
		bad(&pe, "heartbeat_last: not a time");
		goto out;
	}
	v = json_object_get(root, "services");
	if (!json_is_object(v) || json_object_size(v) > 4 * MON_MAX_SERVICES) {
		bad(&pe, "services: not an object of at most %d services",
		    4 * MON_MAX_SERVICES);
		goto out;
	}
	if (json_object_size(v) > 0 && (st->svcs = calloc(json_object_size(v),
	    sizeof(*st->svcs))) == NULL) {
		bad(&pe, "out of memory");
		goto out;
	}
	json_object_foreach(v, key, svc) {
		if (parse_service(&pe, key, svc, &st->svcs[i]) == -1)
			goto out;
		i++;
	}
	st->n = i;
	rc = 0;
out:
	json_decref(root);
	if (rc == -1)
		history_free(st);
	return rc;
}

int
history_load(struct mon_state *st, const char *path, char *err,
    size_t errlen)
{
	struct stat sb;
	char *text;
	ssize_t got;
	size_t len = 0;
	int fd, rc;

	memset(st, 0, sizeof(*st));
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;   /* first run */
		snprintf(err, errlen, "state file %s: cannot open: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
		close(fd);
		snprintf(err, errlen, "state file %s: not a regular file",
		    path);
		return -1;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 022)) {
		close(fd);
		snprintf(err, errlen, "state file %s: owned by another user "
		    "or writable by others: refusing to trust it", path);
		return -1;
	}
	if (sb.st_size > STATE_MAX_SIZE || (text = malloc((size_t)sb.st_size +
	    1)) == NULL) {
		close(fd);
		snprintf(err, errlen, "state file %s: too large", path);
		return -1;
	}
	while (len < (size_t)sb.st_size && (got = read(fd, text + len,
	    (size_t)sb.st_size - len)) > 0)
		len += (size_t)got;
	close(fd);
	rc = history_parse(st, text, len, path, err, errlen);
	free(text);
	return rc;
}

static json_t *
hexstr(const unsigned char *k)
{
	char buf[2 * MON_KEY_LEN + 1];

	cli_hex(k, MON_KEY_LEN, buf);
	return json_string(buf);
}

static json_t *
service_json(const struct mon_svc_state *ss)
{
	json_t *alerted = json_array(), *paths = json_array();
	json_t *keys = json_array();
	size_t i;

	for (i = 0; i < ss->nalerted; i++)
		json_array_append_new(alerted, hexstr(ss->alerted[i]));
	for (i = 0; i < ss->npaths; i++)
		json_array_append_new(paths, json_pack("{s:s, s:s, s:I}",
		    "via", ss->paths[i].via,
		    "mode", mode_names[ss->paths[i].mode],
		    "fails", (json_int_t)ss->paths[i].fails));
	for (i = 0; i < ss->nkeys; i++)
		json_array_append_new(keys, json_pack("{s:o, s:I, s:I, s:I, "
		    "s:b}", "spki_sha256", hexstr(ss->keys[i].spki),
		    "first_seen", (json_int_t)ss->keys[i].first_seen,
		    "last_seen", (json_int_t)ss->keys[i].last_seen,
		    "last_seq", (json_int_t)ss->keys[i].last_seq,
		    "returned", ss->keys[i].returned));
	return json_pack("{s:s, s:I, s:s, s:I, s:I, s:o, s:o, s:o}",
	    "host", ss->host, "port", (json_int_t)ss->port,
	    "protocol", ss->proto, "last_data", (json_int_t)ss->last_data,
	    "seq", (json_int_t)ss->seq,
	    "alerted", alerted, "paths", paths, "keys", keys);
}

/* Creates the state file's folder (one level, 0700) if it is missing. */
static void
make_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (slash == NULL || slash == path ||
	    (size_t)(slash - path) >= sizeof(dir))
		return;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	(void)mkdir(dir, 0700);
}

int
history_save(const struct mon_state *st, const char *path, char *err,
    size_t errlen)
{
	char tmp[PATH_MAX + 16], dir[PATH_MAX];
	const char *slash;
	json_t *root, *svcs;
	char *text;
	size_t i, len, off = 0;
	int fd, dfd;

	svcs = json_object();
	for (i = 0; i < st->n; i++)
		if (st->svcs[i].used)
			json_object_set_new(svcs, st->svcs[i].name,
			    service_json(&st->svcs[i]));
	root = json_pack("{s:i, s:I, s:o}", "version", STATE_VERSION,
	    "heartbeat_last", (json_int_t)st->heartbeat_last,
	    "services", svcs);
	text = root ? json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
	json_decref(root);
	if (text == NULL) {
		snprintf(err, errlen, "state file %s: out of memory", path);
		return -1;
	}
	len = strlen(text);
	make_parent(path);
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "state file %s: cannot create %s: %s",
		    path, tmp, strerror(errno));
		free(text);
		return -1;
	}
	if (fchmod(fd, 0600) == -1)
		goto fail;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (write(fd, "\n", 1) != 1 || fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto fail;
	free(text);
	slash = strrchr(path, '/');
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1,
	    slash ? (slash == path ? "/" : path) : ".");
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	snprintf(err, errlen, "state file %s: cannot write it: %s", path,
	    strerror(errno));
	if (fd != -1)
		close(fd);
	unlink(tmp);
	free(text);
	return -1;
}

void
history_free(struct mon_state *st)
{
	free(st->svcs);
	st->svcs = NULL;
	st->n = 0;
}

struct mon_svc_state *
history_service(struct mon_state *st, const struct mon_service *svc)
{
	const char *proto = mconfig_proto_name(svc->proto);
	unsigned int port = mconfig_port(svc);
	struct mon_svc_state *ss = NULL, *n;
	size_t i;

	for (i = 0; i < st->n; i++)
		if (strcmp(st->svcs[i].name, svc->name) == 0)
			ss = &st->svcs[i];
	if (ss == NULL) {
		n = realloc(st->svcs, (st->n + 1) * sizeof(*n));
		if (n == NULL)
			return NULL;
		st->svcs = n;
		ss = &st->svcs[st->n++];
		memset(ss, 0, sizeof(*ss));
	}
	/* Another target under the same name: its history is not ours. */
	if (strcmp(ss->host, svc->host) != 0 || ss->port != port ||
	    strcmp(ss->proto, proto) != 0) {
		memset(ss, 0, sizeof(*ss));
		snprintf(ss->name, sizeof(ss->name), "%s", svc->name);
		snprintf(ss->host, sizeof(ss->host), "%s", svc->host);
		ss->port = port;
		snprintf(ss->proto, sizeof(ss->proto), "%s", proto);
	}
	ss->used = 1;
	return ss;
}

struct mon_key_hist *
history_key(struct mon_svc_state *ss, const unsigned char spki[MON_KEY_LEN])
{
	size_t i;

	for (i = 0; i < ss->nkeys; i++)
		if (memcmp(ss->keys[i].spki, spki, MON_KEY_LEN) == 0)
			return &ss->keys[i];
	return NULL;
}
