/*
 * host.c: every host is read the way NSS's certificate name matching
 * reads it (NSPR's inet_aton, IPv4-mapped IPv6), and a host DetecTor
 * cannot check is refused with a reason, never passed on as a name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <prnetdb.h>

#include "host.h"

/* A host, what host_normalise must read it as, and the text it gives. */
struct reading {
	const char *in;
	int kind;
	const char *want;
};

static void
expect(const struct reading *r, size_t n)
{
	char out[HOST_MAX + 2], err[256];
	size_t i;

	for (i = 0; i < n; i++) {
		int got = host_normalise(r[i].in, out, sizeof(out), err,
		    sizeof(err));

		if (got != r[i].kind)
			fail_msg("'%s': kind %d, expected %d (%s)", r[i].in,
			    got, r[i].kind, got == -1 ? err : out);
		if (r[i].kind != -1)
			assert_string_equal(out, r[i].want);
	}
}

#define NREADINGS(a) (sizeof(a) / sizeof((a)[0]))

static void
test_every_ipv4_spelling_is_the_address(void **state)
{
	static const struct reading r[] = {
		{ "127.0.0.2", HOST_IPV4, "127.0.0.2" },
		{ "2130706434", HOST_IPV4, "127.0.0.2" },
		{ "127.2", HOST_IPV4, "127.0.0.2" },
		{ "127.0.2", HOST_IPV4, "127.0.0.2" },
		{ "0x7f.0.0.2", HOST_IPV4, "127.0.0.2" },
		{ "0X7F000002", HOST_IPV4, "127.0.0.2" },
		{ "0177.0.0.02", HOST_IPV4, "127.0.0.2" },
		{ "017700000002", HOST_IPV4, "127.0.0.2" },
		{ "10.1", HOST_IPV4, "10.0.0.1" },
		{ "0", HOST_IPV4, "0.0.0.0" },
		{ "4294967295", HOST_IPV4, "255.255.255.255" },
		/* NSPR computes each part modulo 2^32, and so NSS matches these. */
		{ "4294967296", HOST_IPV4, "0.0.0.0" },
		{ "4294967298", HOST_IPV4, "0.0.0.2" },
		{ "0x.1", HOST_IPV4, "0.0.0.1" },
		/* NSPR's inet_aton stops at white space, as the BSD original. */
	};

	(void)state;
	expect(r, NREADINGS(r));
}

static void
test_ipv6_and_mapped_ipv4(void **state)
{
	static const struct reading r[] = {
		{ "::ffff:127.0.0.2", HOST_IPV4, "127.0.0.2" },
		{ "::FFFF:7f00:2", HOST_IPV4, "127.0.0.2" },
		{ "0:0:0:0:0:ffff:7f00:0002", HOST_IPV4, "127.0.0.2" },
		{ "::1", HOST_IPV6, "::1" },
		{ "0:0:0:0:0:0:0:1", HOST_IPV6, "::1" },
		{ "FD00:0:0::AB", HOST_IPV6, "fd00::ab" },
	};

	(void)state;
	expect(r, NREADINGS(r));
}

static void
test_names_lower_cased_and_not_addresses(void **state)
{
	static const struct reading r[] = {
		{ "Server.TEST", HOST_NAME, "server.test" },
		{ "xn--bcher-kva.example.", HOST_NAME, "xn--bcher-kva.example." },
		{ "_srv.example", HOST_NAME, "_srv.example" },
		/* Not an address for NSS either: names. */
		{ "1.2.3.4.5", HOST_NAME, "1.2.3.4.5" },
		{ "256.1.1.1", HOST_NAME, "256.1.1.1" },
		{ "1.256.1", HOST_NAME, "1.256.1" },
		{ "08.1.1.1", HOST_NAME, "08.1.1.1" },
		{ "0x", HOST_NAME, "0x" },
		{ "127.0.0.1.", HOST_NAME, "127.0.0.1." },
	};

	(void)state;
	expect(r, NREADINGS(r));
}

static void
test_uncheckable_hosts_are_refused(void **state)
{
	static const char *const bad[] = {
		"", "bank test", "bank\ttest", "127.0.0.2 bank", "127.0.0.2\t",
		"2130706433 %.bank.com", "1\t%x", "2130706433%", "a/b",
		"user@host", "b\xc3\xa4nk.test",
		"host:443", "[::1]", "fe80::1%lo", "a\nb", "*.example", "bank%test",
	};
	char out[HOST_MAX + 2], err[256], longname[300];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (host_normalise(bad[i], out, sizeof(out), err,
		    sizeof(err)) != -1)
			fail_msg("'%s' was accepted as '%s'", bad[i], out);
		assert_true(err[0] != '\0');
	}
	assert_int_equal(host_normalise("bank test", out, sizeof(out), err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "byte 0x20 at offset 4"));
	memset(longname, 'a', sizeof(longname));
	longname[254] = '\0';
	assert_int_equal(host_normalise(longname, out, sizeof(out), err,
	    sizeof(err)), -1);
	longname[253] = '\0';
	assert_int_equal(host_normalise(longname, out, sizeof(out), err,
	    sizeof(err)), HOST_NAME);
}

/* Whatever NSPR reads as an address (PR_StringToNetAddr, which NSS's name
 * matching uses), host_normalise reads as the same address or refuses
 * (white space): never as a name or as another address. */
static void
test_agrees_with_nspr(void **state)
{
	static const char *const spellings[] = {
		"127.0.0.2", "2130706434", "127.2", "0x7f.0.0.2", "0177.1",
		"1.2.3", "0x7fffffff", "10.0.0.1 x", "::ffff:10.0.0.1", "::1",
		"2001:db8::1", "4294967296", "1.2.3.4.5", "08.1", "0x", "a.b",
		"1..2", ".1", "1.", "0x1g", "0x.1", "0x100000000", "99999999999",
		"1.0x", "0.0x", "1.2.3.0400", "255.255.65535", "1.16777216",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
		PRNetAddr na;
		char out[HOST_MAX + 2], err[256], nspr[64];
		int kind = host_normalise(spellings[i], out, sizeof(out), err,
		    sizeof(err));

		if (PR_StringToNetAddr(spellings[i], &na) != PR_SUCCESS) {
			if (kind == HOST_IPV4 || kind == HOST_IPV6)
				fail_msg("'%s': NSPR reads no address, we read %s",
				    spellings[i], out);
			continue;
		}
		if (na.raw.family == PR_AF_INET6 &&
		    PR_IsNetAddrType(&na, PR_IpAddrV4Mapped)) {
			PRNetAddr v4;

			memset(&v4, 0, sizeof(v4));
			v4.inet.family = PR_AF_INET;
			memcpy(&v4.inet.ip, &na.ipv6.ip.pr_s6_addr[12], 4);
			na = v4;
		}
		assert_int_equal(PR_NetAddrToString(&na, nspr, sizeof(nspr)),
		    PR_SUCCESS);
		if (kind == -1)
			continue;               /* refused: never checked */
		if (kind != HOST_IPV4 && kind != HOST_IPV6)
			fail_msg("'%s': NSPR reads %s, we read no address",
			    spellings[i], nspr);
		assert_string_equal(out, nspr);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_ipv4_spelling_is_the_address),
		cmocka_unit_test(test_ipv6_and_mapped_ipv4),
		cmocka_unit_test(test_names_lower_cased_and_not_addresses),
		cmocka_unit_test(test_uncheckable_hosts_are_refused),
		cmocka_unit_test(test_agrees_with_nspr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
