/*
 * The STARTTLS preambles: each protocol's happy path (fed whole and byte by
 * byte), refusals, servers that never offer STARTTLS, malformed and hostile
 * replies, and bytes sent out of turn (STARTTLS command injection).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "starttls.h"

struct reply {
	const char *s;
	size_t n;
};
#define R(lit) { lit, sizeof(lit) - 1 }

static char err[512];
static char sent[4096];
static size_t sentlen;

/*
 * Runs a preamble against the server's replies: the first call with no
 * input, then each reply (whole, or one byte more per call when bytewise:
 * every shorter prefix must ask for more).  Commands sent are collected in
 * sent.  Returns the last status.
 */
static enum starttls_status
run(enum detector_starttls proto, const char *host, const struct reply *r,
    size_t nr, int bytewise)
{
	struct starttls st;
	unsigned char out[STARTTLS_OUT_MAX];
	size_t outlen, i, k;
	enum starttls_status s;

	err[0] = '\0';
	sentlen = 0;
	assert_int_equal(starttls_init(&st, proto, host, err, sizeof(err)), 0);
	s = starttls_step(&st, NULL, 0, out, sizeof(out), &outlen, err,
	    sizeof(err));
	for (i = 0;; i++) {
		if (s == STARTTLS_SEND) {
			assert_true(sentlen + outlen < sizeof(sent));
			memcpy(sent + sentlen, out, outlen);
			sentlen += outlen;
			sent[sentlen] = '\0';
		} else if (s != STARTTLS_NEED_MORE)
			return s;
		if (i == nr)
			return s;
		for (k = bytewise ? 1 : r[i].n; k <= r[i].n; k++) {
			s = starttls_step(&st, (const unsigned char *)r[i].s, k,
			    out, sizeof(out), &outlen, err, sizeof(err));
			if (k < r[i].n && s == STARTTLS_ERROR)
				return s;       /* an error before the end */
			if (k < r[i].n)
				assert_int_equal(s, STARTTLS_NEED_MORE);
		}
	}
}

static void
expect_error(enum starttls_status s, const char *needle)
{
	assert_int_equal(s, STARTTLS_ERROR);
	if (strstr(err, needle) == NULL)
		fail_msg("error '%s' lacks '%s'", err, needle);
}

/*
 * A server that must be refused: the test's replies with the one at `at`
 * replaced by `reply` (reply.s NULL: as they are), a part of the error,
 * and whether the replies are fed byte by byte.
 */
struct refusal {
	size_t at;
	struct reply reply;
	const char *says;
	int bytewise;
};

#define REPLIES_MAX 3

/* Runs each refusal against the nr replies of base (NULL: each case
 * gives the one reply there is). */
static void
expect_refusals(enum detector_starttls proto, const char *host,
    const struct reply *base, size_t nr, const struct refusal *cases,
    size_t ncases)
{
	struct reply r[REPLIES_MAX];
	size_t i;

	assert_true(nr <= REPLIES_MAX);
	for (i = 0; i < ncases; i++) {
		if (base != NULL)
			memcpy(r, base, nr * sizeof(*r));
		if (cases[i].reply.s != NULL)
			r[cases[i].at] = cases[i].reply;
		expect_error(run(proto, host, r, nr, cases[i].bytewise),
		    cases[i].says);
	}
}

#define NCASES(a) (sizeof(a) / sizeof((a)[0]))

/* SMTP */

static const struct reply smtp_ok[] = {
	R("220-mx.example ESMTP\r\n220 ready\r\n"),
	R("250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
	  "250-STARTTLS\r\n250 8BITMIME\r\n"),
	R("220 2.0.0 Ready to start TLS\r\n"),
};

static void
test_smtp_happy(void **state)
{
	(void)state;
	assert_int_equal(run(DETECTOR_STARTTLS_SMTP, "mx.example", smtp_ok,
	    3, 0), STARTTLS_READY);
	assert_string_equal(sent, "EHLO detector.invalid\r\nSTARTTLS\r\n");
	assert_int_equal(run(DETECTOR_STARTTLS_SMTP, "mx.example", smtp_ok,
	    3, 1), STARTTLS_READY);
	assert_string_equal(sent, "EHLO detector.invalid\r\nSTARTTLS\r\n");
}

static void
test_smtp_refusals(void **state)
{
	static const struct reply r[3] = { R("220 hi\r\n"),
	    R("250-x\r\n250 STARTTLS\r\n"),
	    R("454 4.7.0 TLS not available\r\n") };
	static const struct refusal cases[] = {
		{ 0, { NULL, 0 },
		  "SMTP server refused STARTTLS: 454 4.7.0 TLS not available",
		  0 },
		{ 0, R("554 5.7.1 no service here\r\n"),
		  "SMTP server refused the connection: 554 5.7.1 no service "
		  "here", 0 },
		{ 1, R("502 5.5.2 EHLO what?\r\n"),
		  "SMTP server refused EHLO: 502", 0 },
	};

	(void)state;
	expect_refusals(DETECTOR_STARTTLS_SMTP, "h", r, 3, cases,
	    NCASES(cases));
}

static void
test_smtp_not_offered(void **state)
{
	struct reply r[3] = { R("220 hi\r\n"),
	    R("250-mx\r\n250-PIPELINING\r\n250-XSTARTTLS\r\n250-STARTTLSX\r\n"
	    "250 SIZE 1000\r\n"), R("220 go\r\n") };

	(void)state;
	expect_error(run(DETECTOR_STARTTLS_SMTP, "h", r, 3, 0),
	    "SMTP server does not offer STARTTLS (its EHLO extensions: "
	    "PIPELINING XSTARTTLS STARTTLSX SIZE)");
	/* The greeting line is not an extension. */
	r[1] = (struct reply)R("250 STARTTLS\r\n");
	expect_error(run(DETECTOR_STARTTLS_SMTP, "h", r, 3, 0),
	    "does not offer STARTTLS");
	/* Case-insensitive keyword, as RFC 5321 says. */
	r[1] = (struct reply)R("250-mx\r\n250 starttls\r\n");
	assert_int_equal(run(DETECTOR_STARTTLS_SMTP, "h", r, 3, 0),
	    STARTTLS_READY);
}

static void
test_smtp_out_of_turn(void **state)
{
	static const struct reply r[3] = { R("220 hi\r\n"),
	    R("250-mx\r\n250 STARTTLS\r\n"),
	    R("220 go ahead\r\n250 injected\r\n") };
	static const struct refusal cases[] = {
		{ 0, { NULL, 0 }, "possible STARTTLS command injection", 0 },
		/* Even one byte after the go-ahead. */
		{ 2, R("220 go ahead\r\n\x16"),
		  "sent 1 bytes after agreeing to start TLS", 0 },
		{ 0, R("220 hi\r\n250 early\r\n"),
		  "unexpected bytes after its reply", 0 },
	};

	(void)state;
	expect_refusals(DETECTOR_STARTTLS_SMTP, "h", r, 3, cases,
	    NCASES(cases));
}

static void
test_smtp_malformed(void **state)
{
	static const struct refusal cases[] = {
		{ 0, R("HTTP/1.1 400 Bad Request\r\n"),
		  "malformed reply line 'HTTP/1.1 400 Bad Request'", 0 },
		{ 0, R("220 hi\n"), "LF without CR", 0 },
		{ 0, R("220 h\ri\r\n"), "bare CR", 0 },
		{ 0, R("220 h\0i\r\n"), "control byte", 0 },
		{ 0, R("220-a\r\n250 b\r\n"), "changed the reply code", 0 },
		{ 0, R("22\r\n"), "malformed", 0 },
		{ 0, R("220x\r\n"), "malformed", 0 },
		{ 0, R("120 x\r\n"), "malformed", 0 },
		/* Server text is quoted safely in errors. */
		{ 0, R("554 \x1b[31mred\r\n"), "control byte", 0 },
		{ 0, R("554 caf\xc3\xa9\r\n"), "554 caf\\xc3\\xa9", 0 },
	};
	struct reply r[1];
	char *big;
	size_t i;

	(void)state;
	expect_refusals(DETECTOR_STARTTLS_SMTP, "h", NULL, 1, cases,
	    NCASES(cases));
	/* A line that never ends. */
	big = malloc(STARTTLS_REPLY_MAX + 1);
	assert_non_null(big);
	memset(big, 'a', STARTTLS_REPLY_MAX);
	memcpy(big, "220 ", 4);
	r[0].s = big;
	r[0].n = STARTTLS_LINE_MAX + 10;
	expect_error(run(DETECTOR_STARTTLS_SMTP, "h", r, 1, 0),
	    "longer than the limit");
	/* A reply that never ends: many continuation lines. */
	for (i = 0; i + 10 <= STARTTLS_REPLY_MAX; i += 10)
		memcpy(big + i, "220-xxxx\r\n", 10);
	memcpy(big + i, "220-xxxx\r\n", STARTTLS_REPLY_MAX - i);
	r[0].n = STARTTLS_REPLY_MAX;
	expect_error(run(DETECTOR_STARTTLS_SMTP, "h", r, 1, 0),
	    "reply exceeds 8192 bytes");
	free(big);
}

static void
test_over_after_ready(void **state)
{
	struct starttls st;
	unsigned char out[STARTTLS_OUT_MAX];
	size_t n;
	static const char *steps[] = { "+OK hi\r\n", "+OK go\r\n" };

	(void)state;
	assert_int_equal(starttls_init(&st, DETECTOR_STARTTLS_POP3, "h", err,
	    sizeof(err)), 0);
	assert_int_equal(starttls_step(&st, NULL, 0, out, sizeof(out), &n,
	    err, sizeof(err)), STARTTLS_NEED_MORE);
	assert_int_equal(starttls_step(&st, (const unsigned char *)steps[0],
	    8, out, sizeof(out), &n, err, sizeof(err)), STARTTLS_SEND);
	assert_int_equal(starttls_step(&st, (const unsigned char *)steps[1],
	    8, out, sizeof(out), &n, err, sizeof(err)), STARTTLS_READY);
	assert_int_equal(starttls_step(&st, (const unsigned char *)steps[1],
	    8, out, sizeof(out), &n, err, sizeof(err)), STARTTLS_ERROR);
	assert_non_null(strstr(err, "already over"));
	assert_int_equal(starttls_init(&st, DETECTOR_STARTTLS_NONE, "h", err,
	    sizeof(err)), -1);
	assert_int_equal(starttls_init(&st, DETECTOR_STARTTLS_SMTP, "", err,
	    sizeof(err)), -1);
}

/* IMAP */

static const struct reply imap_ok[2] = {
	R("* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n"),
	R("a OK Begin TLS negotiation now.\r\n"),
};

static void
test_imap(void **state)
{
	static const struct refusal cases[] = {
		{ 1, R("a NO [UNAVAILABLE] no TLS today\r\n"),
		  "IMAP server refused STARTTLS: a NO [UNAVAILABLE] no TLS "
		  "today", 0 },
		{ 1, R("a BAD unknown command\r\n"), "refused STARTTLS: a BAD",
		  0 },
		{ 1, R("b OK not ours\r\n"), "unexpected answer", 0 },
		{ 1, R("a OKAY\r\n"), "unexpected answer", 0 },
		{ 1, R("+ go on\r\n"), "unexpected answer", 0 },
		{ 1, R("* BYE shutting down\r\n"), "closed the session", 0 },
		{ 1, R("a OK go\r\n* OK [ALERT] injected\r\n"),
		  "possible STARTTLS command injection", 0 },
		{ 0, R("* PREAUTH logged in\r\n"), "PREAUTH", 0 },
		{ 0, R("* BYE too many connections\r\n"),
		  "IMAP server refused the connection: * BYE too many", 0 },
		{ 0, R("* OK hi\r\na OK early\r\n"),
		  "unexpected bytes after its reply", 0 },
		{ 0, R("SSH-2.0-OpenSSH_9.2\r\n"),
		  "refused the connection: SSH-2.0", 0 },
	};
	struct reply r[2] = { imap_ok[0], imap_ok[1] };

	(void)state;
	assert_int_equal(run(DETECTOR_STARTTLS_IMAP, "h", r, 2, 1),
	    STARTTLS_READY);
	assert_string_equal(sent, "a STARTTLS\r\n");
	r[1] = (struct reply)R("* CAPABILITY IMAP4rev1\r\na ok go\r\n");
	assert_int_equal(run(DETECTOR_STARTTLS_IMAP, "h", r, 2, 1),
	    STARTTLS_READY);
	expect_refusals(DETECTOR_STARTTLS_IMAP, "h", imap_ok, 2, cases,
	    NCASES(cases));
}

/* POP3 */

static void
test_pop3(void **state)
{
	static const struct reply r[2] = { R("+OK Dovecot ready.\r\n"),
	    R("+OK Begin TLS negotiation now.\r\n") };
	static const struct refusal cases[] = {
		{ 1, R("-ERR TLS support not enabled\r\n"),
		  "POP3 server refused STLS: -ERR TLS support not enabled", 0 },
		{ 1, R("+OKAY\r\n"), "refused STLS", 0 },
		{ 1, R("+OK go\r\n+OK injected\r\n"),
		  "possible STARTTLS command injection", 0 },
		{ 0, R("-ERR go away\r\n"),
		  "POP3 server refused the connection: -ERR go away", 0 },
	};

	(void)state;
	assert_int_equal(run(DETECTOR_STARTTLS_POP3, "h", r, 2, 1),
	    STARTTLS_READY);
	assert_string_equal(sent, "STLS\r\n");
	expect_refusals(DETECTOR_STARTTLS_POP3, "h", r, 2, cases,
	    NCASES(cases));
}

/* XMPP */

#define XSTREAM "<?xml version='1.0'?><stream:stream " \
	"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/" \
	"streams' id='abc' version=\"1.0\" from='server.test' xml:lang='en'>"
#define XTLS "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>" \
	"<required/></starttls>"
#define XSASL "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" \
	"<mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism>" \
	"</mechanisms>"
#define XPROCEED "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"

static void
test_xmpp(void **state)
{
	struct reply r[2] = {
	    R(XSTREAM "\n<stream:features>" XTLS XSASL "</stream:features>"),
	    R(XPROCEED) };

	(void)state;
	assert_int_equal(run(DETECTOR_STARTTLS_XMPP, "server.test", r, 2, 1),
	    STARTTLS_READY);
	assert_non_null(strstr(sent, "<stream:stream to='server.test' "
	    "version='1.0' xmlns='jabber:client'"));
	assert_non_null(strstr(sent, "><starttls xmlns='urn:ietf:params:xml:"
	    "ns:xmpp-tls'/>"));
	/* Features in their own segment; <proceed></proceed> form. */
	r[0] = (struct reply)R(XSTREAM "<stream:features><starttls "
	    "xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/></stream:features>");
	r[1] = (struct reply)R("<proceed xmlns='urn:ietf:params:xml:ns:"
	    "xmpp-tls'></proceed>");
	assert_int_equal(run(DETECTOR_STARTTLS_XMPP, "server.test", r, 2, 1),
	    STARTTLS_READY);
}

/* What test_xmpp_refusals and test_xmpp_hostile change, one reply at a
 * time. */
static const struct reply xmpp_ok[2] = {
	R(XSTREAM "<stream:features>" XTLS "</stream:features>"),
	R(XPROCEED),
};

static void
test_xmpp_refusals(void **state)
{
	static const struct refusal cases[] = {
		{ 0, R(XSTREAM "<stream:features>" XSASL "</stream:features>"),
		  "XMPP server does not offer STARTTLS", 0 },
		/* starttls in the wrong namespace, or not a direct child. */
		{ 0, R(XSTREAM "<stream:features><starttls xmlns='"
		  "urn:evil'/></stream:features>"), "does not offer STARTTLS", 0 },
		{ 0, R(XSTREAM "<stream:features><x>" XTLS "</x>"
		  "</stream:features>"), "does not offer STARTTLS", 0 },
		{ 0, R(XSTREAM "<stream:features/>"), "does not offer STARTTLS",
		  0 },
		{ 0, R(XSTREAM "<stream:error><host-unknown xmlns='"
		  "urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"),
		  "XMPP server sent a stream error: host-unknown", 1 },
		{ 0, R(XSTREAM "</stream:stream>"), "closed the stream", 0 },
		{ 1, R("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
		  "XMPP server refused STARTTLS (<failure/>)", 0 },
		{ 1, R("<proceed xmlns='urn:evil'/>"),
		  "answered <starttls/> with <proceed>", 0 },
	};

	(void)state;
	expect_refusals(DETECTOR_STARTTLS_XMPP, "s.test", xmpp_ok, 2, cases,
	    NCASES(cases));
}

static void
test_xmpp_hostile(void **state)
{
	static const struct refusal cases[] = {
		{ 1, R(XPROCEED "<message>injected</message>"),
		  "possible STARTTLS command injection", 0 },
		{ 0, R(XSTREAM "<!DOCTYPE x [<!ENTITY a 'b'>]>"),
		  "not allowed in XMPP", 0 },
		{ 0, R(XSTREAM "<stream:features><!-- hi -->"
		  "</stream:features>"), "not allowed in XMPP", 0 },
		{ 0, R(XSTREAM "<stream:features></stream:feature>"),
		  "mismatched end tag", 0 },
		{ 0, R(XSTREAM "<stream:features a=b>"), "unquoted attribute",
		  0 },
		{ 0, R("<html><body>hello</body></html>"),
		  "did not open a stream", 0 },
		{ 0, R(XSTREAM "<message/>"), "where stream features belong", 0 },
		{ 0, R(XSTREAM "hello<x/>"), "text outside any element", 0 },
		{ 0, R(XSTREAM "<stream:features>" XTLS
		  "</stream:features><extra/>"),
		  "unexpected bytes after its reply", 0 },
		{ 0, R(" <?xml version='1.0'?>"), "processing instruction", 0 },
	};
	struct reply r[2] = { xmpp_ok[0], xmpp_ok[1] };
	struct starttls st;
	char deep[2048];
	size_t i, o;

	(void)state;
	expect_refusals(DETECTOR_STARTTLS_XMPP, "s.test", xmpp_ok, 2, cases,
	    NCASES(cases));
	/* Nesting beyond the limit. */
	o = (size_t)snprintf(deep, sizeof(deep), "%s<stream:features>",
	    XSTREAM);
	for (i = 0; i < 20; i++)
		o += (size_t)snprintf(deep + o, sizeof(deep) - o, "<a>");
	r[0].s = deep;
	r[0].n = o;
	expect_error(run(DETECTOR_STARTTLS_XMPP, "s.test", r, 2, 0),
	    "deeper than");
	/* A name that would need escaping in the stream header. */
	assert_int_equal(starttls_init(&st, DETECTOR_STARTTLS_XMPP,
	    "a'b.test", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a domain name"));
	assert_int_equal(starttls_init(&st, DETECTOR_STARTTLS_XMPP,
	    "a<b", err, sizeof(err)), -1);
}

/* LDAP */

static const unsigned char ldap_req[] = {
	0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16,
	'1', '.', '3', '.', '6', '.', '1', '.', '4', '.', '1', '.',
	'1', '4', '6', '6', '.', '2', '0', '0', '3', '7',
};

static void
test_ldap(void **state)
{
	struct reply r[1] = {
	    R("\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00") };

	(void)state;
	assert_int_equal(run(DETECTOR_STARTTLS_LDAP, "h", r, 1, 1),
	    STARTTLS_READY);
	assert_int_equal(sentlen, sizeof(ldap_req));
	assert_memory_equal(sent, ldap_req, sizeof(ldap_req));
	/* With the responseName, as OpenLDAP sends it; long-form length. */
	r[0] = (struct reply)R("\x30\x81\x24\x02\x01\x01\x78\x1f\x0a\x01\x00"
	    "\x04\x00\x04\x00\x8a\x16" "1.3.6.1.4.1.1466.20037");
	assert_int_equal(run(DETECTOR_STARTTLS_LDAP, "h", r, 1, 1),
	    STARTTLS_READY);
	/* With controls after the response. */
	r[0] = (struct reply)R("\x30\x0e\x02\x01\x01\x78\x07\x0a\x01\x00\x04"
	    "\x00\x04\x00\xa0\x00");
	assert_int_equal(run(DETECTOR_STARTTLS_LDAP, "h", r, 1, 0),
	    STARTTLS_READY);
}

static void
test_ldap_refusals(void **state)
{
	static const struct refusal cases[] = {
		{ 0, R("\x30\x2a\x02\x01\x01\x78\x25\x0a\x01\x02\x04\x00\x04\x1e"
		  "unsupported extended operation"),
		  "LDAP server refused StartTLS: resultCode 2 (protocolError): "
		  "'unsupported extended operation'", 0 },
		/* Notice of disconnection (message 0). */
		{ 0, R("\x30\x0c\x02\x01\x00\x78\x07\x0a\x01\x34\x04\x00\x04"
		  "\x00"), "unsolicited notification", 0 },
		{ 0, R("\x30\x0c\x02\x01\x02\x78\x07\x0a\x01\x00\x04\x00\x04"
		  "\x00"), "answered message 2", 0 },
		/* A BindResponse instead. */
		{ 0, R("\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04"
		  "\x00"), "protocol operation 0x61", 0 },
	};

	(void)state;
	expect_refusals(DETECTOR_STARTTLS_LDAP, "h", NULL, 1, cases,
	    NCASES(cases));
}

static void
test_ldap_hostile(void **state)
{
	static const struct refusal cases[] = {
		{ 0, R("\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04"
		  "\x00\x16\x03\x01"), "possible STARTTLS command injection", 0 },
		{ 0, R("\x30\x80\x02\x01\x01"), "indefinite", 0 },
		{ 0, R("\x30\x83\xff\xff\xff"), "longer", 0 },
		{ 0, R("\x30\x84\x00\x00\x00\x0c"), "3 bytes", 0 },
		{ 0, R("\x31\x00"), "not an LDAPMessage", 0 },
		/* Inner element longer than its container. */
		{ 0, R("\x30\x0c\x02\x01\x01\x78\x09\x0a\x01\x00\x04\x00\x04"
		  "\x00"), "truncated", 0 },
		/* A negative resultCode, a 5-byte messageID. */
		{ 0, R("\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x80\x04\x00\x04"
		  "\x00"), "resultCode", 0 },
		{ 0, R("\x30\x10\x02\x05\x01\x00\x00\x00\x01\x78\x07\x0a\x01"
		  "\x00\x04\x00\x04\x00"), "messageID", 0 },
		/* A responseValue, a foreign responseName, a repeated element. */
		{ 0, R("\x30\x0e\x02\x01\x01\x78\x09\x0a\x01\x00\x04\x00\x04"
		  "\x00\x8b\x00"), "responseValue", 0 },
		{ 0, R("\x30\x0f\x02\x01\x01\x78\x0a\x0a\x01\x00\x04\x00\x04"
		  "\x00\x8a\x01" "1"), "not StartTLS", 0 },
		{ 0, R("\x30\x10\x02\x01\x01\x78\x0b\x0a\x01\x00\x04\x00\x04"
		  "\x00\xa3\x00\xa3\x00"), "repeated", 0 },
		/* Extra bytes inside the message, after the controls. */
		{ 0, R("\x30\x10\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04"
		  "\x00\xa0\x00\x04\x00"), "bytes after", 0 },
		/* A multi-byte tag. */
		{ 0, R("\x3f\x81\x00"), "multi-byte", 0 },
	};

	(void)state;
	expect_refusals(DETECTOR_STARTTLS_LDAP, "h", NULL, 1, cases,
	    NCASES(cases));
}

/* The public names and the port defaults. */

static void
test_names_and_ports(void **state)
{
	enum detector_starttls p;

	(void)state;
	assert_int_equal(detector_starttls_parse("smtp", &p), 0);
	assert_int_equal(p, DETECTOR_STARTTLS_SMTP);
	assert_int_equal(detector_starttls_parse("IMAP", &p), 0);
	assert_int_equal(p, DETECTOR_STARTTLS_IMAP);
	assert_int_equal(detector_starttls_parse("tls", &p), 0);
	assert_int_equal(p, DETECTOR_STARTTLS_NONE);
	assert_int_equal(detector_starttls_parse("none", &p), 0);
	assert_int_equal(detector_starttls_parse("ldap", &p), 0);
	assert_int_equal(p, DETECTOR_STARTTLS_LDAP);
	assert_int_equal(detector_starttls_parse("ftp", &p), -1);
	assert_int_equal(detector_starttls_parse("", &p), -1);
	assert_int_equal(detector_starttls_parse(NULL, &p), -1);
	for (p = DETECTOR_STARTTLS_NONE; p <= DETECTOR_STARTTLS_LDAP; p++) {
		enum detector_starttls q;
		assert_int_equal(detector_starttls_parse(
		    detector_starttls_name(p), &q), 0);
		assert_int_equal(q, p);
	}
	assert_int_equal(detector_starttls_for_port(25), DETECTOR_STARTTLS_SMTP);
	assert_int_equal(detector_starttls_for_port(587),
	    DETECTOR_STARTTLS_SMTP);
	assert_int_equal(detector_starttls_for_port(143),
	    DETECTOR_STARTTLS_IMAP);
	assert_int_equal(detector_starttls_for_port(110),
	    DETECTOR_STARTTLS_POP3);
	assert_int_equal(detector_starttls_for_port(5222),
	    DETECTOR_STARTTLS_XMPP);
	assert_int_equal(detector_starttls_for_port(389),
	    DETECTOR_STARTTLS_LDAP);
	assert_int_equal(detector_starttls_for_port(465),
	    DETECTOR_STARTTLS_NONE);
	assert_int_equal(detector_starttls_for_port(993),
	    DETECTOR_STARTTLS_NONE);
	assert_int_equal(detector_starttls_for_port(443),
	    DETECTOR_STARTTLS_NONE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smtp_happy),
		cmocka_unit_test(test_smtp_refusals),
		cmocka_unit_test(test_smtp_not_offered),
		cmocka_unit_test(test_smtp_out_of_turn),
		cmocka_unit_test(test_smtp_malformed),
		cmocka_unit_test(test_over_after_ready),
		cmocka_unit_test(test_imap),
		cmocka_unit_test(test_pop3),
		cmocka_unit_test(test_xmpp),
		cmocka_unit_test(test_xmpp_refusals),
		cmocka_unit_test(test_xmpp_hostile),
		cmocka_unit_test(test_ldap),
		cmocka_unit_test(test_ldap_refusals),
		cmocka_unit_test(test_ldap_hostile),
		cmocka_unit_test(test_names_and_ports),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
