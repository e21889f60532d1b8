/*
 * Finding and hashing the key: agrees with openssl's SPKI for real RSA and
 * EC certificates, and refuses every truncation and malformed encoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cert.h>
#include <nss.h>

#include "certinfo.h"
#include "fixture.h"

static char dir[] = "/tmp/detector-test-certinfo-XXXXXX";

static int
setup(void **state)
{
	(void)state;
	return fixture_setup(dir, FIXTURE_NSS);
}

/* Makes a self-signed certificate with openssl; returns its DER length and
 * openssl's own SHA-256 of the SPKI in hex. */
static size_t
make_cert(const char *keyopt, unsigned char *der, size_t size, char *hex)
{
	char cmd[2048];
	size_t n;

	snprintf(cmd, sizeof(cmd),
	    "cd '%s' && openssl req -x509 %s -nodes -keyout k.pem -out c.pem "
	    "-days 1 -subj /CN=unit.test 2>/dev/null && "
	    "openssl x509 -in c.pem -outform der -out c.der && "
	    "openssl x509 -in c.pem -pubkey -noout | openssl pkey -pubin "
	    "-outform der | sha256sum | cut -c1-64 > spki.hex", dir, keyopt);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(fixture_slurp(dir, "spki.hex", (unsigned char *)hex,
	    64), 64);
	hex[64] = '\0';
	n = fixture_slurp(dir, "c.der", der, size);
	assert_true(n > 0);
	return n;
}

static void
check_matches_openssl(const char *keyopt)
{
	unsigned char der[8192], spki[32], cert[32];
	char want[65], got[65], err[256];
	size_t n = make_cert(keyopt, der, sizeof(der), want), i;

	assert_int_equal(detector_cert_hashes(der, n, spki, cert, err, sizeof(err)),
	    0);
	for (i = 0; i < 32; i++)
		sprintf(got + 2 * i, "%02x", spki[i]);
	assert_string_equal(got, want);
}

static void
test_rsa_and_ec_match_openssl(void **state)
{
	(void)state;
	check_matches_openssl("-newkey rsa:2048");
	check_matches_openssl("-newkey ec -pkeyopt ec_paramgen_curve:P-256");
	check_matches_openssl("-newkey ed25519");
}

static void
test_every_truncation_and_extension_fails(void **state)
{
	unsigned char der[8192], spki[32], cert[32];
	char hex[65], err[256];
	size_t n = make_cert("-newkey ec -pkeyopt ec_paramgen_curve:P-256",
	    der, sizeof(der) - 1, hex), i;

	(void)state;
	for (i = 0; i < n; i++)
		assert_int_equal(detector_cert_hashes(der, i, spki, cert, err,
		    sizeof(err)), -1);
	der[n] = 0;
	assert_int_equal(detector_cert_hashes(der, n + 1, spki, cert, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "trailing"));
}

static void
test_malformed_encodings(void **state)
{
	static const struct {
		unsigned char b[12];
		size_t n;
	} bad[] = {
		{ { 0x30, 0x80, 0x00, 0x00 }, 4 },              /* indefinite */
		{ { 0x30, 0x81, 0x05, 1, 2, 3, 4, 5 }, 8 },     /* not minimal */
		{ { 0x30, 0x82, 0x00, 0x85 }, 4 },              /* not minimal */
		{ { 0x30, 0x85, 1, 1, 1, 1, 1 }, 7 },           /* too long */
		{ { 0x31, 0x00 }, 2 },                          /* SET */
		{ { 0x30, 0x02, 0x30, 0x00 }, 4 },              /* empty tbs */
		{ { 0x30, 0x04, 0x30, 0x02, 0x02, 0x00 }, 6 },  /* no sig alg */
		{ { 0x3f, 0x01, 0x00 }, 3 },                    /* high tag */
		{ { 0 }, 0 },
	};
	const unsigned char *spki;
	size_t i, len;
	char err[256];

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(certinfo_spki(bad[i].b, bad[i].n, &spki, &len,
		    err, sizeof(err)), -1);
		assert_non_null(strstr(err, "not a DER certificate"));
	}
}

/*
 * The walker must not be stricter than NSS: a certificate NSS accepts but
 * the walker refuses would turn a check into "undecided" (and, with
 * on_undecided = accept, let a MITM pass unprobed).  A non-minimal length
 * (here in the serial number) is refused by both.
 */
static void
test_walker_is_no_stricter_than_nss(void **state)
{
	unsigned char der[8192], odd[8200], spki[32], cert[32];
	char hex[65], err[256];
	const unsigned char *p;
	size_t n = make_cert("-newkey rsa:2048", der, sizeof(der), hex), len;
	size_t outer, tbs;
	SECItem item = { siDERCertBuffer, der, 0 };
	CERTCertificate *c;

	(void)state;
	/* 30 82 LL LL | 30 82 LL LL | a0 03 02 01 02 | 02 NN serial... */
	assert_true(der[0] == 0x30 && der[1] == 0x82 && der[4] == 0x30 &&
	    der[5] == 0x82 && der[8] == 0xa0 && der[13] == 0x02 &&
	    der[14] < 0x80);
	outer = ((size_t)der[2] << 8 | der[3]) + 1;
	tbs = ((size_t)der[6] << 8 | der[7]) + 1;
	memcpy(odd, der, 14);
	odd[2] = (unsigned char)(outer >> 8);
	odd[3] = (unsigned char)outer;
	odd[6] = (unsigned char)(tbs >> 8);
	odd[7] = (unsigned char)tbs;
	odd[14] = 0x81;                 /* long form for a short length */
	odd[15] = der[14];
	memcpy(odd + 16, der + 15, n - 15);

	/* NSS: the original decodes, the odd one does not. */
	item.len = (unsigned int)n;
	c = CERT_NewTempCertificate(CERT_GetDefaultCertDB(), &item, NULL,
	    PR_FALSE, PR_TRUE);
	assert_non_null(c);
	CERT_DestroyCertificate(c);
	item.data = odd;
	item.len = (unsigned int)n + 1;
	assert_null(CERT_NewTempCertificate(CERT_GetDefaultCertDB(), &item,
	    NULL, PR_FALSE, PR_TRUE));
	/* The walker: the same answers. */
	assert_int_equal(detector_cert_hashes(der, n, spki, cert, err, sizeof(err)),
	    0);
	assert_int_equal(certinfo_spki(odd, n + 1, &p, &len, err,
	    sizeof(err)), -1);
}

static enum probe_keytype
keytype_of(const char *keyopt)
{
	unsigned char der[8192];
	char hex[65], err[256];
	size_t n = make_cert(keyopt, der, sizeof(der), hex);
	struct certinfo ci;

	assert_int_equal(certinfo_read(der, n, &ci, err, sizeof(err)), 0);
	return ci.keytype;
}

/* The key type is read from the SPKI the hashes were taken of, without
 * a second parse; it agrees with what NSS makes of each key. */
static void
test_key_type_of_each_key(void **state)
{
	static const unsigned char other_curve[] = {
		0x30, 0x13, 0x30, 0x10,
		0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a,       /* secp256k1 */
		0x03, 0x00 };

	(void)state;
	assert_int_equal(keytype_of("-newkey rsa:2048"), PROBE_KEY_RSA);
	assert_int_equal(keytype_of("-newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256"), PROBE_KEY_EC_P256);
	assert_int_equal(keytype_of("-newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-384"), PROBE_KEY_EC_P384);
	assert_int_equal(keytype_of("-newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-521"), PROBE_KEY_EC_P521);
	assert_int_equal(keytype_of("-newkey ed25519"), PROBE_KEY_ANY);
	assert_int_equal(certinfo_keytype(other_curve, sizeof(other_curve)),
	    PROBE_KEY_EC);
	assert_int_equal(certinfo_keytype(other_curve, 5), PROBE_KEY_ANY);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsa_and_ec_match_openssl),
		cmocka_unit_test(test_key_type_of_each_key),
		cmocka_unit_test(test_every_truncation_and_extension_fails),
		cmocka_unit_test(test_malformed_encodings),
		cmocka_unit_test(test_walker_is_no_stricter_than_nss),
	};
	return cmocka_run_group_tests_name("certinfo", tests, setup, fixture_teardown);
}
