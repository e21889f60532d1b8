/*
 * starttls.c - the STARTTLS preambles as pure, lock-step state machines.
 *
 *   SMTP  220 greeting, EHLO, 250 with STARTTLS among the extensions,
 *         STARTTLS, 220                                        (RFC 3207)
 *   IMAP  "* OK" greeting, "a STARTTLS", "a OK"                (RFC 3501)
 *   POP3  "+OK" greeting, "STLS", "+OK"                        (RFC 2595)
 *   XMPP  client stream header, stream features offering <starttls/>,
 *         <starttls/>, <proceed/>                              (RFC 6120)
 *   LDAP  StartTLS ExtendedRequest (1.3.6.1.4.1.1466.20037), an
 *         ExtendedResponse with resultCode success             (RFC 4511)
 *
 * Every step reads one complete reply and nothing else.  We never pipeline,
 * so a server has no reason to send anything after a complete reply: extra
 * bytes are an error, and after the go-ahead they would be plaintext that a
 * careless client might later take for TLS-protected data (the STARTTLS
 * command injection of CVE-2011-0411, seen from the client side).  Replies
 * are bounded (STARTTLS_LINE_MAX per line, STARTTLS_REPLY_MAX per reply, a
 * fixed number of steps); the caller's deadline bounds the time.
 */
#include "starttls.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define LDAP_STARTTLS_OID "1.3.6.1.4.1.1466.20037"
#define XMPP_TLS_NS "urn:ietf:params:xml:ns:xmpp-tls"
#define XML_DEPTH_MAX 16
#define QUOTE_MAX 160           /* server text quoted in an error */

static enum starttls_status
fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum starttls_status
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return STARTTLS_ERROR;
}

/* Server text made safe to print: printable ASCII as is, the rest \xNN,
 * cut at QUOTE_MAX characters. */
static const char *
quote(const unsigned char *s, size_t n, char *buf, size_t size)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 5 < size && o < QUOTE_MAX; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
			buf[o++] = (char)s[i];
		else
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x",
			    s[i]);
	}
	if (i < n && o + 4 < size) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

static const char *
proto_name(enum detector_starttls proto)
{
	switch (proto) {
	case DETECTOR_STARTTLS_SMTP: return "SMTP";
	case DETECTOR_STARTTLS_IMAP: return "IMAP";
	case DETECTOR_STARTTLS_POP3: return "POP3";
	case DETECTOR_STARTTLS_XMPP: return "XMPP";
	case DETECTOR_STARTTLS_LDAP: return "LDAP";
	default: return "TLS";
	}
}

const char *
starttls_stage(enum detector_starttls proto)
{
	switch (proto) {
	case DETECTOR_STARTTLS_SMTP: return "SMTP STARTTLS preamble";
	case DETECTOR_STARTTLS_IMAP: return "IMAP STARTTLS preamble";
	case DETECTOR_STARTTLS_POP3: return "POP3 STLS preamble";
	case DETECTOR_STARTTLS_XMPP: return "XMPP STARTTLS preamble";
	case DETECTOR_STARTTLS_LDAP: return "LDAP StartTLS preamble";
	default: return "TLS preamble";
	}
}

/* The public names and port defaults. */

const char *
detector_starttls_name(enum detector_starttls proto)
{
	switch (proto) {
	case DETECTOR_STARTTLS_NONE: return "none";
	case DETECTOR_STARTTLS_SMTP: return "smtp";
	case DETECTOR_STARTTLS_IMAP: return "imap";
	case DETECTOR_STARTTLS_POP3: return "pop3";
	case DETECTOR_STARTTLS_XMPP: return "xmpp";
	case DETECTOR_STARTTLS_LDAP: return "ldap";
	}
	return "unknown";
}

int
detector_starttls_parse(const char *name, enum detector_starttls *proto)
{
	static const struct {
		const char *name;
		enum detector_starttls proto;
	} names[] = {
		{ "none", DETECTOR_STARTTLS_NONE },
		{ "tls", DETECTOR_STARTTLS_NONE },
		{ "smtp", DETECTOR_STARTTLS_SMTP },
		{ "imap", DETECTOR_STARTTLS_IMAP },
		{ "pop3", DETECTOR_STARTTLS_POP3 },
		{ "xmpp", DETECTOR_STARTTLS_XMPP },
		{ "ldap", DETECTOR_STARTTLS_LDAP },
	};
	size_t i;

	if (name == NULL || proto == NULL)
		return -1;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i].name) == 0) {
			*proto = names[i].proto;
			return 0;
		}
	}
	return -1;
}

enum detector_starttls
detector_starttls_for_port(unsigned int port)
{
	switch (port) {
	case 25:
	case 587: return DETECTOR_STARTTLS_SMTP;
	case 143: return DETECTOR_STARTTLS_IMAP;
	case 110: return DETECTOR_STARTTLS_POP3;
	case 5222: return DETECTOR_STARTTLS_XMPP;
	case 389: return DETECTOR_STARTTLS_LDAP;
	default: return DETECTOR_STARTTLS_NONE;
	}
}

unsigned int
detector_starttls_port(enum detector_starttls proto)
{
	switch (proto) {
	case DETECTOR_STARTTLS_NONE: return 443;
	case DETECTOR_STARTTLS_SMTP: return 25;
	case DETECTOR_STARTTLS_IMAP: return 143;
	case DETECTOR_STARTTLS_POP3: return 110;
	case DETECTOR_STARTTLS_XMPP: return 5222;
	case DETECTOR_STARTTLS_LDAP: return 389;
	}
	return 443;
}

int
starttls_init(struct starttls *st, enum detector_starttls proto,
    const char *host, char *err, size_t errlen)
{
	size_t i, n = host != NULL ? strlen(host) : 0;

	memset(st, 0, sizeof(*st));
	if (proto < DETECTOR_STARTTLS_SMTP || proto > DETECTOR_STARTTLS_LDAP) {
		fail(err, errlen, "unknown STARTTLS protocol %d", (int)proto);
		return -1;
	}
	if (n == 0 || n >= sizeof(st->host)) {
		fail(err, errlen, "no usable host name for the %s preamble",
		    proto_name(proto));
		return -1;
	}
	/* The name goes into XMPP's stream header: only what a domain or an
	 * address literal is made of, so it never needs XML escaping. */
	for (i = 0; proto == DETECTOR_STARTTLS_XMPP && i < n; i++) {
		if (!isalnum((unsigned char)host[i]) && host[i] != '.' &&
		    host[i] != '-' && host[i] != ':' && host[i] != '_') {
			fail(err, errlen, "XMPP: '%s' is not a domain name (byte "
			    "0x%02x at offset %zu)", host,
			    (unsigned char)host[i], i);
			return -1;
		}
	}
	st->proto = proto;
	memcpy(st->host, host, n + 1);
	return 0;
}

static enum starttls_status
send_str(const char *s, unsigned char *out, size_t outsize, size_t *outlen,
    char *err, size_t errlen)
{
	size_t n = strlen(s);

	if (n > outsize)
		return fail(err, errlen, "command buffer too small");
	memcpy(out, s, n);
	*outlen = n;
	return STARTTLS_SEND;
}

/* Bytes left after a complete reply: the server spoke out of turn. */
static enum starttls_status
trailing(const char *proto, int go_ahead, const unsigned char *rest,
    size_t n, char *err, size_t errlen)
{
	char q[4 * QUOTE_MAX];

	if (go_ahead)
		return fail(err, errlen, "%s server sent %zu bytes after "
		    "agreeing to start TLS, before the handshake ('%s'): "
		    "refusing (possible STARTTLS command injection)", proto,
		    n, quote(rest, n, q, sizeof(q)));
	return fail(err, errlen, "%s server sent %zu unexpected bytes after "
	    "its reply, before our next command ('%s')", proto, n,
	    quote(rest, n, q, sizeof(q)));
}

/*
 * Text protocols.  A line ends with CRLF; it may not hold NUL, a bare CR or
 * LF, or other control bytes except TAB.  Returns 1 with the line [*start,
 * *start + *len) and *next after its CRLF, 0 if incomplete, -1 if malformed.
 */
static int
next_line(const unsigned char *in, size_t inlen, size_t off, size_t *len,
    size_t *next, const char **why)
{
	size_t i;

	for (i = off; i < inlen; i++) {
		if (i - off + 1 > STARTTLS_LINE_MAX) {
			*why = "a reply line longer than the limit";
			return -1;
		}
		if (in[i] == '\r') {
			if (i + 1 == inlen)
				return 0;
			if (in[i + 1] != '\n') {
				*why = "a bare CR inside a reply line";
				return -1;
			}
			*len = i - off;
			*next = i + 2;
			return 1;
		}
		if (in[i] == '\n') {
			*why = "a reply line ended by LF without CR";
			return -1;
		}
		if ((in[i] < 0x20 && in[i] != '\t') || in[i] == 0x7f) {
			*why = "a control byte inside a reply line";
			return -1;
		}
	}
	if (inlen - off >= STARTTLS_LINE_MAX) {
		*why = "a reply line longer than the limit";
		return -1;
	}
	return 0;
}

/* The end of the input must not cut a reply short forever. */
static enum starttls_status
need_more(const char *proto, size_t inlen, char *err, size_t errlen)
{
	if (inlen >= STARTTLS_REPLY_MAX)
		return fail(err, errlen, "%s server reply exceeds %d bytes",
		    proto, STARTTLS_REPLY_MAX);
	return STARTTLS_NEED_MORE;
}

/* One line, the whole reply (IMAP, POP3 greetings and answers). */
static enum starttls_status
one_line(const char *proto, const unsigned char *in, size_t inlen,
    size_t *len, size_t *next, char *err, size_t errlen)
{
	const char *why = NULL;
	int r = next_line(in, inlen, 0, len, next, &why);

	if (r == 0)
		return need_more(proto, inlen, err, errlen);
	if (r < 0)
		return fail(err, errlen, "%s server sent %s", proto, why);
	return STARTTLS_SEND;   /* a complete line */
}

/*
 * An SMTP reply (RFC 5321 4.2): lines "NNN-text", the last "NNN text" or
 * "NNN", every line with the same code.  On a complete reply returns
 * STARTTLS_SEND with *code, the first line's text and *end.
 */
static enum starttls_status
smtp_reply(const unsigned char *in, size_t inlen, int *code, size_t *end,
    size_t *first_len, char *err, size_t errlen)
{
	size_t off = 0, len, next;
	const char *why = NULL;
	char q[4 * QUOTE_MAX];
	int c, r, nlines = 0;

	for (;;) {
		r = next_line(in, inlen, off, &len, &next, &why);
		if (r == 0)
			return need_more("SMTP", inlen, err, errlen);
		if (r < 0)
			return fail(err, errlen, "SMTP server sent %s", why);
		if (len < 3 || !isdigit(in[off]) || !isdigit(in[off + 1]) ||
		    !isdigit(in[off + 2]) || in[off] < '2' || in[off] > '5' ||
		    (len > 3 && in[off + 3] != '-' && in[off + 3] != ' '))
			return fail(err, errlen, "SMTP server sent a malformed "
			    "reply line '%s'", quote(in + off, len, q,
			    sizeof(q)));
		c = (in[off] - '0') * 100 + (in[off + 1] - '0') * 10 +
		    (in[off + 2] - '0');
		if (nlines == 0) {
			*code = c;
			*first_len = len;
		} else if (c != *code)
			return fail(err, errlen, "SMTP server changed the reply "
			    "code inside one reply (%d, then %d)", *code, c);
		nlines++;
		if (len == 3 || in[off + 3] == ' ') {
			*end = next;
			return STARTTLS_SEND;
		}
		off = next;
	}
}

/* Does the EHLO reply list the STARTTLS keyword (RFC 3207)? */
static int
smtp_has_starttls(const unsigned char *in, size_t end)
{
	size_t off = 0, len, next;
	const char *why;
	int first = 1;

	while (off < end && next_line(in, end, off, &len, &next, &why) == 1) {
		/* "250-KEYWORD params"; the first line is the greeting. */
		if (!first && len >= 12 && strncasecmp((const char *)in + off +
		    4, "STARTTLS", 8) == 0 && (len == 12 ||
		    in[off + 12] == ' '))
			return 1;
		first = 0;
		off = next;
	}
	return 0;
}

/* The extension keywords of an EHLO reply, for the "not offered" error. */
static void
smtp_keywords(const unsigned char *in, size_t end, char *buf, size_t size)
{
	size_t off = 0, len, next, o = 0, k;
	const char *why;
	char q[4 * QUOTE_MAX];
	int first = 1;

	buf[0] = '\0';
	while (off < end && next_line(in, end, off, &len, &next, &why) == 1) {
		if (!first && len > 4) {
			for (k = 4; k < len && in[off + k] != ' '; k++)
				;
			quote(in + off + 4, k - 4, q, sizeof(q));
			if (o + strlen(q) + 3 < size) {
				o += (size_t)snprintf(buf + o, size - o, "%s%s",
				    o ? " " : "", q);
			}
		}
		first = 0;
		off = next;
	}
	if (o == 0)
		snprintf(buf, size, "none");
}

static enum starttls_status
smtp_step(struct starttls *st, const unsigned char *in, size_t inlen,
    unsigned char *out, size_t outsize, size_t *outlen, char *err,
    size_t errlen)
{
	char q[4 * QUOTE_MAX], kw[512];
	size_t end = 0, first = 0;
	enum starttls_status r;
	int code = 0;

	if (inlen == 0)
		return STARTTLS_NEED_MORE;
	r = smtp_reply(in, inlen, &code, &end, &first, err, errlen);
	if (r != STARTTLS_SEND)
		return r;
	quote(in, first, q, sizeof(q));
	if (end < inlen)
		return trailing("SMTP", st->step == 2, in + end, inlen - end,
		    err, errlen);
	switch (st->step) {
	case 0:
		if (code != 220)
			return fail(err, errlen, "SMTP server refused the "
			    "connection: %s", q);
		st->step = 1;
		return send_str("EHLO " STARTTLS_EHLO_NAME "\r\n", out, outsize,
		    outlen, err, errlen);
	case 1:
		if (code != 250)
			return fail(err, errlen, "SMTP server refused EHLO: %s",
			    q);
		if (!smtp_has_starttls(in, end)) {
			smtp_keywords(in, end, kw, sizeof(kw));
			return fail(err, errlen, "SMTP server does not offer "
			    "STARTTLS (its EHLO extensions: %s)", kw);
		}
		st->step = 2;
		return send_str("STARTTLS\r\n", out, outsize, outlen, err,
		    errlen);
	default:
		if (code != 220)
			return fail(err, errlen, "SMTP server refused STARTTLS: "
			    "%s", q);
		st->step = 3;
		return STARTTLS_READY;
	}
}

/* Does line (len bytes) start with word, followed by a space or its end?
 * Case-insensitive, as IMAP atoms and POP3 status indicators are. */
static int
starts_word(const unsigned char *line, size_t len, const char *word)
{
	size_t n = strlen(word);

	return len >= n && strncasecmp((const char *)line, word, n) == 0 &&
	    (len == n || line[n] == ' ');
}

static enum starttls_status
imap_step(struct starttls *st, const unsigned char *in, size_t inlen,
    unsigned char *out, size_t outsize, size_t *outlen, char *err,
    size_t errlen)
{
	char q[4 * QUOTE_MAX];
	const unsigned char *line;
	size_t off = 0, len = 0, next = 0;
	enum starttls_status r;

	if (inlen == 0)
		return STARTTLS_NEED_MORE;
	if (st->step == 0) {
		r = one_line("IMAP", in, inlen, &len, &next, err, errlen);
		if (r != STARTTLS_SEND)
			return r;
		quote(in, len, q, sizeof(q));
		if (starts_word(in, len, "* PREAUTH"))
			return fail(err, errlen, "IMAP server greeted with "
			    "PREAUTH, where STARTTLS is not allowed: %s", q);
		if (!starts_word(in, len, "* OK"))
			return fail(err, errlen, "IMAP server refused the "
			    "connection: %s", q);
		if (next < inlen)
			return trailing("IMAP", 0, in + next, inlen - next,
			    err, errlen);
		st->step = 1;
		return send_str("a STARTTLS\r\n", out, outsize, outlen, err,
		    errlen);
	}
	/* Untagged "* ..." lines may come before our tagged answer. */
	for (;;) {
		line = in + off;
		r = one_line("IMAP", line, inlen - off, &len, &next, err,
		    errlen);
		if (r == STARTTLS_NEED_MORE)
			return need_more("IMAP", inlen, err, errlen);
		if (r != STARTTLS_SEND)
			return r;
		off += next;
		quote(line, len, q, sizeof(q));
		if (len < 2 || line[0] != '*' || line[1] != ' ')
			break;
		if (starts_word(line, len, "* BYE"))
			return fail(err, errlen, "IMAP server closed the "
			    "session: %s", q);
	}
	if (starts_word(line, len, "a OK")) {
		if (off < inlen)
			return trailing("IMAP", 1, in + off, inlen - off, err,
			    errlen);
		st->step = 2;
		return STARTTLS_READY;
	}
	if (starts_word(line, len, "a NO") || starts_word(line, len, "a BAD"))
		return fail(err, errlen, "IMAP server refused STARTTLS: %s", q);
	return fail(err, errlen, "IMAP server sent an unexpected answer to "
	    "STARTTLS: %s", q);
}

static enum starttls_status
pop3_step(struct starttls *st, const unsigned char *in, size_t inlen,
    unsigned char *out, size_t outsize, size_t *outlen, char *err,
    size_t errlen)
{
	char q[4 * QUOTE_MAX];
	size_t len = 0, next = 0;
	enum starttls_status r;

	if (inlen == 0)
		return STARTTLS_NEED_MORE;
	r = one_line("POP3", in, inlen, &len, &next, err, errlen);
	if (r != STARTTLS_SEND)
		return r;
	quote(in, len, q, sizeof(q));
	if (!starts_word(in, len, "+OK")) {
		if (st->step == 0)
			return fail(err, errlen, "POP3 server refused the "
			    "connection: %s", q);
		return fail(err, errlen, "POP3 server refused STLS: %s", q);
	}
	if (next < inlen)
		return trailing("POP3", st->step == 1, in + next, inlen - next,
		    err, errlen);
	if (st->step == 0) {
		st->step = 1;
		return send_str("STLS\r\n", out, outsize, outlen, err, errlen);
	}
	st->step = 2;
	return STARTTLS_READY;
}

/*
 * XMPP: just enough XML for a stream header and a few small elements.
 * Comments, DTDs, CDATA and processing instructions (other than the XML
 * declaration) are not allowed in XMPP (RFC 6120 11.1) and are errors.
 */
enum xml_kind { XML_DECL, XML_START, XML_EMPTY, XML_END, XML_TEXT };

struct xml_tok {
	enum xml_kind kind;
	const unsigned char *name;
	size_t namelen;
	const unsigned char *attrs;
	size_t attrslen;
	int blank;              /* XML_TEXT: whitespace only */
};

static int
xml_namechar(unsigned char c)
{
	return isalnum(c) || c == '_' || c == ':' || c == '.' || c == '-' ||
	    c >= 0x80;
}

static int
xml_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Moves *j past XML white space; 1 if a byte follows, 0 if the input
 * ends first (the token is incomplete). */
static int
xml_skip_space(const unsigned char *in, size_t inlen, size_t *j)
{
	while (*j < inlen && xml_space(in[*j]))
		(*j)++;
	return *j < inlen;
}

/* One token at *off: 1 (and *off moves past it), 0 incomplete, -1 bad. */
static int
xml_next(const unsigned char *in, size_t inlen, size_t *off,
    struct xml_tok *t, const char **why)
{
	size_t i = *off, j;

	memset(t, 0, sizeof(*t));
	if (in[i] != '<') {
		t->kind = XML_TEXT;
		t->blank = 1;
		for (j = i; j < inlen && in[j] != '<'; j++) {
			if (in[j] < 0x20 && !xml_space(in[j])) {
				*why = "a control byte in XML text";
				return -1;
			}
			if (!xml_space(in[j]))
				t->blank = 0;
		}
		if (j == inlen && !t->blank)
			return 0;       /* text runs on: wait for its end */
		*off = j;
		return 1;
	}
	if (i + 1 >= inlen)
		return 0;
	if (in[i + 1] == '!') {
		*why = "a comment, DTD or CDATA section (not allowed in XMPP)";
		return -1;
	}
	if (in[i + 1] == '?') {
		for (j = i + 2; j + 1 < inlen; j++) {
			if (in[j] == '?' && in[j + 1] == '>') {
				t->kind = XML_DECL;
				t->name = in + i + 2;
				t->namelen = j - i - 2;
				*off = j + 2;
				return 1;
			}
		}
		return 0;
	}
	j = i + 1;
	if (in[j] == '/') {
		t->kind = XML_END;
		j++;
	}
	t->name = in + j;
	while (j < inlen && xml_namechar(in[j]))
		j++;
	t->namelen = (size_t)(in + j - t->name);
	if (j == inlen)
		return 0;
	if (t->namelen == 0) {
		*why = "a tag without a name";
		return -1;
	}
	t->attrs = in + j;
	if (t->kind == XML_END) {
		if (!xml_skip_space(in, inlen, &j))
			return 0;
		if (in[j] != '>') {
			*why = "a malformed end tag";
			return -1;
		}
		*off = j + 1;
		return 1;
	}
	/* Attributes: name = 'value' or "value", separated by space. */
	for (;;) {
		size_t sp = j;
		unsigned char qc;

		if (!xml_skip_space(in, inlen, &j))
			return 0;
		if (in[j] == '>' || in[j] == '/') {
			t->attrslen = (size_t)(in + j - t->attrs);
			if (in[j] == '/') {
				if (j + 1 == inlen)
					return 0;
				if (in[j + 1] != '>') {
					*why = "a malformed empty-element tag";
					return -1;
				}
				t->kind = XML_EMPTY;
				*off = j + 2;
			} else {
				t->kind = XML_START;
				*off = j + 1;
			}
			return 1;
		}
		if (sp == j || !xml_namechar(in[j])) {
			*why = "a malformed attribute";
			return -1;
		}
		while (j < inlen && xml_namechar(in[j]))
			j++;
		if (!xml_skip_space(in, inlen, &j))
			return 0;
		if (in[j] != '=') {
			*why = "an attribute without a value";
			return -1;
		}
		j++;
		if (!xml_skip_space(in, inlen, &j))
			return 0;
		if (in[j] != '\'' && in[j] != '"') {
			*why = "an unquoted attribute value";
			return -1;
		}
		qc = in[j++];
		while (j < inlen && in[j] != qc) {
			if (in[j] == '<' || (in[j] < 0x20 &&
			    !xml_space(in[j]))) {
				*why = "a malformed attribute value";
				return -1;
			}
			j++;
		}
		if (j == inlen)
			return 0;
		j++;
	}
}

/* The value of attribute name in a token's (already checked) attributes. */
static int
xml_attr(const struct xml_tok *t, const char *name, const unsigned char **v,
    size_t *vlen)
{
	size_t i = 0, n = strlen(name), s, e;
	const unsigned char *a = t->attrs;

	while (i < t->attrslen) {
		while (i < t->attrslen && xml_space(a[i]))
			i++;
		s = i;
		while (i < t->attrslen && xml_namechar(a[i]))
			i++;
		e = i;
		while (i < t->attrslen && a[i] != '\'' && a[i] != '"')
			i++;
		if (i >= t->attrslen)
			return 0;
		{
			unsigned char qc = a[i++];
			size_t vs = i;

			while (i < t->attrslen && a[i] != qc)
				i++;
			if (e - s == n && memcmp(a + s, name, n) == 0) {
				*v = a + vs;
				*vlen = i - vs;
				return 1;
			}
			i++;
		}
	}
	return 0;
}

static int
xml_local_is(const struct xml_tok *t, const char *local)
{
	const unsigned char *c = memchr(t->name, ':', t->namelen);
	const unsigned char *l = c != NULL ? c + 1 : t->name;
	size_t n = (size_t)(t->name + t->namelen - l);

	return n == strlen(local) && memcmp(l, local, n) == 0;
}

static int
xml_attr_is(const struct xml_tok *t, const char *name, const char *want)
{
	const unsigned char *v;
	size_t n;

	return xml_attr(t, name, &v, &n) && n == strlen(want) &&
	    memcmp(v, want, n) == 0;
}

/*
 * Walks the server's stream: step 1 reads the stream header and the stream
 * features, step 2 the answer to <starttls/>.  Elements are tracked by
 * depth below the stream element (which stays open).
 */
static enum starttls_status
xmpp_reply(struct starttls *st, const unsigned char *in, size_t inlen,
    int *offered, size_t *end, char *err, size_t errlen)
{
	const unsigned char *stack[XML_DEPTH_MAX];
	size_t stacklen[XML_DEPTH_MAX];
	char q[4 * QUOTE_MAX];
	size_t off = 0, depth = 0;
	int opened = st->step == 2, ntok = 0;
	struct xml_tok t;
	const char *why = NULL;
	const char *what = st->step == 2 ? "its answer to <starttls/>" :
	    "its stream features";
	const unsigned char *errcond = NULL;
	size_t errcondlen = 0;
	int in_error = 0;

	*offered = 0;
	while (off < inlen) {
		int r = xml_next(in, inlen, &off, &t, &why);

		if (r == 0)
			break;
		if (r < 0)
			return fail(err, errlen, "XMPP server sent %s in %s",
			    why, what);
		ntok++;
		if (t.kind == XML_TEXT) {
			if (!t.blank && depth == 0)
				return fail(err, errlen, "XMPP server sent text "
				    "outside any element in %s", what);
			continue;
		}
		if (t.kind == XML_DECL) {
			if (ntok != 1 || opened || t.namelen < 4 ||
			    memcmp(t.name, "xml ", 4) != 0)
				return fail(err, errlen, "XMPP server sent a "
				    "processing instruction in %s", what);
			continue;
		}
		if (!opened) {
			if (t.kind != XML_START || !xml_local_is(&t, "stream"))
				return fail(err, errlen, "XMPP server did not "
				    "open a stream: '%s'", quote(t.name,
				    t.namelen, q, sizeof(q)));
			opened = 1;
			continue;
		}
		if (t.kind == XML_END) {
			if (depth == 0)
				return fail(err, errlen, "XMPP server closed the "
				    "stream in %s", what);
			depth--;
			if (stacklen[depth] != t.namelen || memcmp(stack[depth],
			    t.name, t.namelen) != 0)
				return fail(err, errlen, "XMPP server sent a "
				    "mismatched end tag '%s'", quote(t.name,
				    t.namelen, q, sizeof(q)));
			if (depth == 0)
				goto element_done;
			continue;
		}
		/* A start or empty element. */
		if (depth == 0) {
			in_error = xml_local_is(&t, "error");
			if (st->step == 1 && !in_error &&
			    !xml_local_is(&t, "features"))
				return fail(err, errlen, "XMPP server sent <%s> "
				    "where stream features belong",
				    quote(t.name, t.namelen, q, sizeof(q)));
			if (st->step == 2 && !in_error) {
				if (xml_local_is(&t, "failure"))
					return fail(err, errlen, "XMPP server "
					    "refused STARTTLS (<failure/>)");
				if (!xml_local_is(&t, "proceed") ||
				    !xml_attr_is(&t, "xmlns", XMPP_TLS_NS))
					return fail(err, errlen, "XMPP server "
					    "answered <starttls/> with <%s>",
					    quote(t.name, t.namelen, q,
					    sizeof(q)));
			}
		} else if (depth == 1) {
			if (in_error && errcond == NULL) {
				errcond = t.name;
				errcondlen = t.namelen;
			}
			if (st->step == 1 && xml_local_is(&t, "starttls") &&
			    xml_attr_is(&t, "xmlns", XMPP_TLS_NS))
				*offered = 1;
		}
		if (t.kind == XML_EMPTY) {
			if (depth == 0)
				goto element_done;
			continue;
		}
		if (depth == XML_DEPTH_MAX)
			return fail(err, errlen, "XMPP server nests elements "
			    "deeper than %d", XML_DEPTH_MAX);
		stack[depth] = t.name;
		stacklen[depth] = t.namelen;
		depth++;
		continue;
element_done:
		if (in_error)
			return fail(err, errlen, "XMPP server sent a stream "
			    "error: %s", errcond != NULL ? quote(errcond,
			    errcondlen, q, sizeof(q)) : "(no condition)");
		*end = off;
		return STARTTLS_SEND;
	}
	return need_more("XMPP", inlen, err, errlen);
}

static enum starttls_status
xmpp_step(struct starttls *st, const unsigned char *in, size_t inlen,
    unsigned char *out, size_t outsize, size_t *outlen, char *err,
    size_t errlen)
{
	enum starttls_status r;
	size_t end = 0;
	int offered = 0, n;

	if (st->step == 0) {
		n = snprintf((char *)out, outsize, "<?xml version='1.0'?>"
		    "<stream:stream to='%s' version='1.0' "
		    "xmlns='jabber:client' "
		    "xmlns:stream='http://etherx.jabber.org/streams'>",
		    st->host);
		if (n < 0 || (size_t)n >= outsize)
			return fail(err, errlen, "command buffer too small");
		*outlen = (size_t)n;
		st->step = 1;
		return STARTTLS_SEND;
	}
	if (inlen == 0)
		return STARTTLS_NEED_MORE;
	r = xmpp_reply(st, in, inlen, &offered, &end, err, errlen);
	if (r != STARTTLS_SEND)
		return r;
	if (end < inlen)
		return trailing("XMPP", st->step == 2, in + end, inlen - end,
		    err, errlen);
	if (st->step == 2) {
		st->step = 3;
		return STARTTLS_READY;
	}
	if (!offered)
		return fail(err, errlen, "XMPP server does not offer STARTTLS "
		    "in its stream features");
	st->step = 2;
	return send_str("<starttls xmlns='" XMPP_TLS_NS "'/>", out, outsize,
	    outlen, err, errlen);
}

/*
 * LDAP: BER with definite lengths only, low tag numbers only.  One TLV at
 * *off inside [0, len): 1 with *tag, the value at *voff and *vlen; 0 if
 * incomplete; -1 if malformed.
 */
static int
ber_tlv(const unsigned char *p, size_t len, size_t *off, unsigned int *tag,
    size_t *voff, size_t *vlen, const char **why)
{
	size_t i = *off, n, l = 0, k;

	if (i + 2 > len)
		return 0;
	*tag = p[i];
	if ((p[i] & 0x1f) == 0x1f) {
		*why = "a multi-byte BER tag";
		return -1;
	}
	if (p[i + 1] < 0x80) {
		l = p[i + 1];
		i += 2;
	} else {
		n = p[i + 1] & 0x7f;
		if (n == 0) {
			*why = "an indefinite BER length";
			return -1;
		}
		if (n > 3) {
			*why = "a BER length of more than 3 bytes";
			return -1;
		}
		if (i + 2 + n > len)
			return 0;
		for (k = 0; k < n; k++)
			l = (l << 8) | p[i + 2 + k];
		i += 2 + n;
	}
	if (l > STARTTLS_REPLY_MAX) {
		*why = "a BER element longer than the reply limit";
		return -1;
	}
	if (i + l > len)
		return 0;
	*voff = i;
	*vlen = l;
	*off = i + l;
	return 1;
}

/* A non-negative INTEGER or ENUMERATED of at most 4 bytes, or -1. */
static long
ber_uint(const unsigned char *p, size_t len)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 4 || (p[0] & 0x80))
		return -1;
	for (i = 0; i < len; i++)
		v = (v << 8) | p[i];
	return v;
}

static const char *
ldap_result_name(long code)
{
	switch (code) {
	case 0: return "success";
	case 1: return "operationsError";
	case 2: return "protocolError";
	case 3: return "timeLimitExceeded";
	case 7: return "authMethodNotSupported";
	case 8: return "strongerAuthRequired";
	case 11: return "adminLimitExceeded";
	case 12: return "unavailableCriticalExtension";
	case 13: return "confidentialityRequired";
	case 51: return "busy";
	case 52: return "unavailable";
	case 53: return "unwillingToPerform";
	case 80: return "other";
	default: return "?";
	}
}

/* The ExtendedRequest: LDAPMessage { messageID 1, [APPLICATION 23]
 * { requestName [0] "1.3.6.1.4.1.1466.20037" } }. */
static const unsigned char ldap_request[] = {
	0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16,
	'1', '.', '3', '.', '6', '.', '1', '.', '4', '.', '1', '.',
	'1', '4', '6', '6', '.', '2', '0', '0', '3', '7',
};

#define BER_NEXT(p, len, off, tag, voff, vlen)				\
	do {								\
		int r_ = ber_tlv(p, len, off, tag, voff, vlen, &why);	\
		if (r_ <= 0)						\
			goto malformed;					\
	} while (0)

static enum starttls_status
ldap_step(struct starttls *st, const unsigned char *in, size_t inlen,
    unsigned char *out, size_t outsize, size_t *outlen, char *err,
    size_t errlen)
{
	const char *why = "a truncated element";
	char q[4 * QUOTE_MAX];
	size_t off = 0, voff, vlen, end, mend, ooff, olen, oend;
	size_t diag_off = 0, diag_len = 0;
	unsigned int tag;
	long msgid, code;
	int r, last;

	if (st->step == 0) {
		if (outsize < sizeof(ldap_request))
			return fail(err, errlen, "command buffer too small");
		memcpy(out, ldap_request, sizeof(ldap_request));
		*outlen = sizeof(ldap_request);
		st->step = 1;
		return STARTTLS_SEND;
	}
	if (inlen == 0)
		return STARTTLS_NEED_MORE;
	r = ber_tlv(in, inlen, &off, &tag, &voff, &vlen, &why);
	if (r == 0)
		return need_more("LDAP", inlen, err, errlen);
	if (r < 0 || tag != 0x30)
		return fail(err, errlen, "LDAP server sent a reply that is not "
		    "an LDAPMessage (%s)", r < 0 ? why : "not a SEQUENCE");
	end = off;
	mend = voff + vlen;
	off = voff;
	BER_NEXT(in, mend, &off, &tag, &voff, &vlen);
	if (tag != 0x02 || (msgid = ber_uint(in + voff, vlen)) < 0) {
		why = "a bad messageID";
		goto malformed;
	}
	BER_NEXT(in, mend, &off, &tag, &ooff, &olen);
	if (tag != 0x78)
		return fail(err, errlen, "LDAP server answered StartTLS with "
		    "protocol operation 0x%02x, not an ExtendedResponse", tag);
	oend = ooff + olen;
	/* Optional controls [0], then nothing. */
	if (off < mend) {
		BER_NEXT(in, mend, &off, &tag, &voff, &vlen);
		if (tag != 0xa0) {
			why = "an unknown element after the response";
			goto malformed;
		}
	}
	if (off != mend) {
		why = "bytes after the controls";
		goto malformed;
	}
	/* ExtendedResponse: resultCode, matchedDN, diagnosticMessage,
	 * [3] referral, [10] responseName, [11] responseValue. */
	off = ooff;
	BER_NEXT(in, oend, &off, &tag, &voff, &vlen);
	if (tag != 0x0a || (code = ber_uint(in + voff, vlen)) < 0) {
		why = "a bad resultCode";
		goto malformed;
	}
	BER_NEXT(in, oend, &off, &tag, &voff, &vlen);
	if (tag != 0x04) {
		why = "a bad matchedDN";
		goto malformed;
	}
	BER_NEXT(in, oend, &off, &tag, &diag_off, &diag_len);
	if (tag != 0x04) {
		why = "a bad diagnosticMessage";
		goto malformed;
	}
	quote(in + diag_off, diag_len, q, sizeof(q));
	/* The optional fields, each at most once and in order. */
	for (last = 0; off < oend; ) {
		BER_NEXT(in, oend, &off, &tag, &voff, &vlen);
		if (tag == 0xa3 && last < 1)
			last = 1;
		else if (tag == 0x8a && last < 2) {
			if (vlen != strlen(LDAP_STARTTLS_OID) || memcmp(in +
			    voff, LDAP_STARTTLS_OID, vlen) != 0) {
				why = "a responseName that is not StartTLS";
				goto malformed;
			}
			last = 2;
		} else if (tag == 0x8b) {
			why = "a responseValue (StartTLS has none)";
			goto malformed;
		} else {
			why = "an unknown or repeated element in the "
			    "ExtendedResponse";
			goto malformed;
		}
	}
	if (msgid == 0)
		return fail(err, errlen, "LDAP server sent an unsolicited "
		    "notification instead of answering StartTLS: resultCode "
		    "%ld (%s): '%s'", code, ldap_result_name(code), q);
	if (msgid != 1)
		return fail(err, errlen, "LDAP server answered message %ld; "
		    "we sent message 1", msgid);
	if (code != 0)
		return fail(err, errlen, "LDAP server refused StartTLS: "
		    "resultCode %ld (%s): '%s'", code, ldap_result_name(code),
		    q);
	if (end < inlen)
		return trailing("LDAP", 1, in + end, inlen - end, err, errlen);
	st->step = 2;
	return STARTTLS_READY;
malformed:
	return fail(err, errlen, "LDAP server sent a malformed StartTLS "
	    "response: %s", why);
}

/* Each protocol's machine and the last step at which it still reads. */
typedef enum starttls_status step_fn(struct starttls *st,
    const unsigned char *in, size_t inlen, unsigned char *out,
    size_t outsize, size_t *outlen, char *err, size_t errlen);

static const struct {
	step_fn *step;
	int last;
} machines[] = {
	[DETECTOR_STARTTLS_SMTP] = { smtp_step, 2 },
	[DETECTOR_STARTTLS_IMAP] = { imap_step, 1 },
	[DETECTOR_STARTTLS_POP3] = { pop3_step, 1 },
	[DETECTOR_STARTTLS_XMPP] = { xmpp_step, 2 },
	[DETECTOR_STARTTLS_LDAP] = { ldap_step, 1 },
};

enum starttls_status
starttls_step(struct starttls *st, const unsigned char *in, size_t inlen,
    unsigned char *out, size_t outsize, size_t *outlen, char *err,
    size_t errlen)
{
	*outlen = 0;
	if (inlen > STARTTLS_REPLY_MAX)
		return fail(err, errlen, "%s server reply exceeds %d bytes",
		    proto_name(st->proto), STARTTLS_REPLY_MAX);
	if ((size_t)st->proto < sizeof(machines) / sizeof(machines[0]) &&
	    machines[st->proto].step != NULL &&
	    st->step <= machines[st->proto].last)
		return machines[st->proto].step(st, in, inlen, out, outsize,
		    outlen, err, errlen);
	return fail(err, errlen, "the %s preamble is already over",
	    proto_name(st->proto));
}
