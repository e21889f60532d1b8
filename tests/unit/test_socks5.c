/*
 * SOCKS5 framing and the strict reply parsers, with malformed replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "socks5.h"

static char err[256];

static void
test_greeting_offers_noauth_and_userpass(void **state)
{
	unsigned char b[8];
	static const unsigned char want[] = { 5, 2, 0, 2 };

	(void)state;
	assert_int_equal(socks5_greeting(b, sizeof(b)), 4);
	assert_memory_equal(b, want, 4);
	assert_int_equal(socks5_greeting(b, 3), 0);
}

static void
test_method_reply(void **state)
{
	size_t need;
	int m = -1;

	(void)state;
	assert_int_equal(socks5_parse_method((unsigned char *)"\x05", 1,
	    &need, &m, err, sizeof(err)), SOCKS5_NEED_MORE);
	assert_int_equal(need, 2);
	assert_int_equal(socks5_parse_method((unsigned char *)"\x05\x02", 2,
	    &need, &m, err, sizeof(err)), SOCKS5_OK);
	assert_int_equal(m, SOCKS5_METHOD_USERPASS);
	assert_int_equal(socks5_parse_method((unsigned char *)"\x05\xff", 2,
	    &need, &m, err, sizeof(err)), SOCKS5_ERROR);
	assert_non_null(strstr(err, "authentication"));
	assert_int_equal(socks5_parse_method((unsigned char *)"\x04\x00", 2,
	    &need, &m, err, sizeof(err)), SOCKS5_ERROR);
	assert_non_null(strstr(err, "not a SOCKS5 server"));
	/* A method we did not offer (GSSAPI). */
	assert_int_equal(socks5_parse_method((unsigned char *)"\x05\x01", 2,
	    &need, &m, err, sizeof(err)), SOCKS5_ERROR);
	/* HTTP server on the sphere port. */
	assert_int_equal(socks5_parse_method((unsigned char *)"HT", 2,
	    &need, &m, err, sizeof(err)), SOCKS5_ERROR);
}

static void
test_auth(void **state)
{
	unsigned char b[SOCKS5_MSG_MAX];
	char longname[300];
	size_t need, n;

	(void)state;
	n = socks5_auth_request(b, sizeof(b), "detector", "abc");
	assert_int_equal(n, 3 + 8 + 3);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[1], 8);
	assert_memory_equal(b + 2, "detector", 8);
	assert_int_equal(b[10], 3);
	memset(longname, 'a', 256);
	longname[256] = '\0';
	assert_int_equal(socks5_auth_request(b, sizeof(b), longname, "x"), 0);
	assert_int_equal(socks5_auth_request(b, sizeof(b), "", "x"), 0);
	assert_int_equal(socks5_parse_auth_reply((unsigned char *)"\x01\x00",
	    2, &need, err, sizeof(err)), SOCKS5_OK);
	assert_int_equal(socks5_parse_auth_reply((unsigned char *)"\x01\x01",
	    2, &need, err, sizeof(err)), SOCKS5_ERROR);
	assert_non_null(strstr(err, "refused"));
	assert_int_equal(socks5_parse_auth_reply((unsigned char *)"\x05\x00",
	    2, &need, err, sizeof(err)), SOCKS5_ERROR);
}

static void
test_connect_request_sends_names_not_addresses(void **state)
{
	unsigned char b[SOCKS5_MSG_MAX];
	char big[300];
	size_t n;

	(void)state;
	n = socks5_connect_request(b, sizeof(b), "bank.test", 443, err,
	    sizeof(err));
	assert_int_equal(n, 4 + 1 + 9 + 2);
	assert_int_equal(b[3], 3);      /* ATYP domain name */
	assert_int_equal(b[4], 9);
	assert_memory_equal(b + 5, "bank.test", 9);
	assert_int_equal(b[14], 0x01);
	assert_int_equal(b[15], 0xbb);
	n = socks5_connect_request(b, sizeof(b), "192.0.2.1", 8443, err,
	    sizeof(err));
	assert_int_equal(n, 10);
	assert_int_equal(b[3], 1);
	n = socks5_connect_request(b, sizeof(b), "2001:db8::1", 443, err,
	    sizeof(err));
	assert_int_equal(n, 22);
	assert_int_equal(b[3], 4);
	memset(big, 'a', 256);
	big[256] = '\0';
	assert_int_equal(socks5_connect_request(b, sizeof(b), big, 443, err,
	    sizeof(err)), 0);
	assert_int_equal(socks5_connect_request(b, sizeof(b), "", 443, err,
	    sizeof(err)), 0);
	assert_int_equal(socks5_connect_request(b, sizeof(b), "a.test", 0,
	    err, sizeof(err)), 0);
	assert_int_equal(socks5_connect_request(b, sizeof(b), "a.test", 65536,
	    err, sizeof(err)), 0);
}

static void
test_reply_success_lengths(void **state)
{
	static const unsigned char v4[] = { 5, 0, 0, 1, 127, 0, 0, 1, 1, 187 };
	static const unsigned char name[] = { 5, 0, 0, 3, 3, 'a', 'b', 'c',
	    0, 80 };
	unsigned char v6[22] = { 5, 0, 0, 4 };
	size_t need, i;
	int rep;

	(void)state;
	for (i = 0; i < 5; i++) {
		assert_int_equal(socks5_parse_reply(v4, i, &need, &rep, err,
		    sizeof(err)), SOCKS5_NEED_MORE);
		assert_int_equal(need, 5);
	}
	assert_int_equal(socks5_parse_reply(v4, 5, &need, &rep, err,
	    sizeof(err)), SOCKS5_NEED_MORE);
	assert_int_equal(need, 10);
	assert_int_equal(socks5_parse_reply(v4, 10, &need, &rep, err,
	    sizeof(err)), SOCKS5_OK);
	assert_int_equal(socks5_parse_reply(v6, 5, &need, &rep, err,
	    sizeof(err)), SOCKS5_NEED_MORE);
	assert_int_equal(need, 22);
	assert_int_equal(socks5_parse_reply(v6, 22, &need, &rep, err,
	    sizeof(err)), SOCKS5_OK);
	assert_int_equal(socks5_parse_reply(name, 5, &need, &rep, err,
	    sizeof(err)), SOCKS5_NEED_MORE);
	assert_int_equal(need, 10);
	assert_int_equal(socks5_parse_reply(name, 10, &need, &rep, err,
	    sizeof(err)), SOCKS5_OK);
}

static void
test_reply_malformed(void **state)
{
	static const struct {
		unsigned char b[5];
		const char *mention;
	} bad[] = {
		{ { 4, 0, 0, 1, 0 }, "version" },
		{ { 'H', 'T', 'T', 'P', '/' }, "version" },
		{ { 5, 0, 1, 1, 0 }, "reserved" },
		{ { 5, 0, 0, 2, 0 }, "address type" },
		{ { 5, 0, 0, 0xff, 0 }, "address type" },
		{ { 5, 0, 0, 3, 0 }, "empty" },
	};
	size_t need, i;
	int rep;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(socks5_parse_reply(bad[i].b, 5, &need, &rep,
		    err, sizeof(err)), SOCKS5_ERROR);
		assert_non_null(strstr(err, bad[i].mention));
	}
}

static void
test_reply_codes_are_readable(void **state)
{
	unsigned char b[10] = { 5, 0, 0, 1 };
	size_t need;
	int code, rep;

	(void)state;
	for (code = 1; code <= 0xff; code++) {
		b[1] = (unsigned char)code;
		assert_int_equal(socks5_parse_reply(b, 5, &need, &rep, err,
		    sizeof(err)), SOCKS5_ERROR);
		assert_int_equal(rep, code);
		assert_non_null(strstr(err, "refused"));
	}
	assert_non_null(strstr(socks5_reply_str(4), "unreachable"));
	assert_non_null(strstr(socks5_reply_str(5), "refused"));
	assert_non_null(strstr(socks5_reply_str(6), "TTL"));
	assert_non_null(strstr(socks5_reply_str(0xf0), "Tor"));
	assert_non_null(strstr(socks5_reply_str(0xf7), "Tor"));
	assert_string_equal(socks5_reply_str(0x42), "unknown reply code");
	for (code = 1; code <= 8; code++)
		assert_string_not_equal(socks5_reply_str(code),
		    "unknown reply code");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_offers_noauth_and_userpass),
		cmocka_unit_test(test_method_reply),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_connect_request_sends_names_not_addresses),
		cmocka_unit_test(test_reply_success_lengths),
		cmocka_unit_test(test_reply_malformed),
		cmocka_unit_test(test_reply_codes_are_readable),
	};
	return cmocka_run_group_tests_name("socks5", tests, NULL, NULL);
}
