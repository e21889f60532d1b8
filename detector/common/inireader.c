/*
 * inireader.c - counted lines for libinih; see inireader.h for why.
 */
#include "inireader.h"

#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct inireader {
	const struct inireader_ops *ops;
	void *user;
	const char *p, *end;
	int line;
	int prev_key_line;              /* a key line since the last header */
	int failed;
	int fail_line;
	char what[1024];
};

int
inireader_fail(struct inireader *r, const char *fmt, ...)
{
	va_list ap;

	if (r->failed)
		return 0;       /* the first error is the one reported */
	va_start(ap, fmt);
	vsnprintf(r->what, sizeof(r->what), fmt, ap);
	va_end(ap);
	r->failed = 1;
	r->fail_line = r->line;
	return 0;
}

int
inireader_line(const struct inireader *r)
{
	return r->line;
}

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* A header, as inih sees one: '[' ... ']'; the name is what lies between. */
static int
header(struct inireader *r, const char *s)
{
	const char *close = strchr(s, ']');
	char name[INIREADER_LINE_MAX + 1];
	size_t len;

	r->prev_key_line = 0;
	if (r->ops->section == NULL || close == NULL)
		return 1;       /* no ']': inih reports the syntax error */
	len = (size_t)(close - s - 1);
	memcpy(name, s + 1, len);
	name[len] = '\0';
	return r->ops->section(r, r->user, name);
}

/*
 * inih's reader callback (fgets-like): one line of the text per call,
 * without its newline, counted.  Returning NULL ends inih's parse: after a
 * failure nothing more is read.
 */
static char *
read_line(char *str, int num, void *stream)
{
	struct inireader *r = stream;
	const char *nl, *s, *t;
	size_t len;

	if (r->failed || r->p >= r->end || num < 1)
		return NULL;
	nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
	len = (size_t)((nl != NULL ? nl : r->end) - r->p);
	r->line++;
	if (memchr(r->p, '\0', len) != NULL) {
		inireader_fail(r, "NUL byte in the file");
		return NULL;
	}
	if (len > INIREADER_LINE_MAX || len > (size_t)num - 1) {
		inireader_fail(r, "line longer than %d characters (split it%s%s)",
		    INIREADER_LINE_MAX, r->ops->repeat_hint ? ": " : "",
		    r->ops->repeat_hint ? r->ops->repeat_hint : "");
		return NULL;
	}
	memcpy(str, r->p, len);
	str[len] = '\0';
	r->p = nl != NULL ? nl + 1 : r->end;

	s = str;
	if (r->line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;                 /* inih skips a UTF-8 BOM there */
	t = s;
	while (is_space(*t))
		t++;
	if (*t == '\0' || *t == ';' || *t == '#')
		return str;             /* blank or comment */
	if (t > s && (r->prev_key_line > 0 || r->ops->strict_indent)) {
		/* inih would take it as more of the previous key's value
		 * ("spheres = ..." then "  quorum = 3" reads as a sphere). */
		char after[128] = "";

		if (r->prev_key_line > 0)
			snprintf(after, sizeof(after), " (inih would read it "
			    "as a continuation of the key on line %d)",
			    r->prev_key_line);
		if (*t == '[')
			inireader_fail(r, "indented section header: remove "
			    "the white space before '['%s", after);
		else
			inireader_fail(r, "indented line: remove the leading "
			    "white space%s; continuation lines are not "
			    "supported%s%s", after, r->ops->repeat_hint ?
			    "; " : "", r->ops->repeat_hint ?
			    r->ops->repeat_hint : "");
		return NULL;
	}
	if (*t == '[')
		return header(r, t) ? str : NULL;
	r->prev_key_line = r->line;
	return str;
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct inireader *r = user;

	if (r->failed)
		return 0;
	return r->ops->key(r, r->user, section, name, value);
}

int
inireader_parse(const char *text, size_t len, const struct inireader_ops *ops,
    void *user, int *line, char *err, size_t errlen)
{
	struct inireader r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.ops = ops;
	r.user = user;
	r.p = text;
	r.end = text + len;
	rc = ini_parse_stream(read_line, &r, handler, &r);
	/* inih goes on after a syntax error; a callback's refusal may come
	 * later or earlier: the first line at fault is reported. */
	if (r.failed && (rc <= 0 || r.fail_line <= rc)) {
		*line = r.fail_line;
		snprintf(err, errlen, "%s", r.what);
		return -1;
	}
	if (rc > 0) {
		*line = rc;
		snprintf(err, errlen, "syntax error: expected 'key = value' "
		    "or '[section]'");
		return -1;
	}
	if (rc < 0) {
		*line = 0;
		snprintf(err, errlen, "cannot parse (out of memory)");
		return -1;
	}
	return 0;
}
