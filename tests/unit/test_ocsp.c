/*
 * Stapled OCSP responses (staple.c): what a real responder (`openssl ocsp`)
 * says is read back exactly; a response is believed only when the leaf's
 * issuer (or its delegated responder) signed it about this leaf; forged,
 * misdirected, unauthorised, truncated and malformed responses are errors.
 * The PKI and responses come from tests/testworld/ocsp.py (openssl CLI and
 * python3-cryptography: independent of the code under test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <nss.h>

#include "staple.h"

static char dir[] = "/tmp/detector-test-ocsp-XXXXXX";
static unsigned char leaf[4096], ca[4096], other[4096], evil[4096];
static size_t leaf_len, ca_len, other_len, evil_len;
static int64_t now;

static size_t
slurp(const char *name, unsigned char *buf, size_t size)
{
	char path[600];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "cannot open %s\n", path);
		return 0;
	}
	n = fread(buf, 1, size, f);
	fclose(f);
	return n;
}

static int
setup(void **state)
{
	char cmd[800];
	const char *src = getenv("DETECTOR_SRC");

	(void)state;
	if (mkdtemp(dir) == NULL || NSS_NoDB_Init(NULL) != SECSuccess)
		return -1;
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/testworld/ocsp.py "
	    "'%s'", src ? src : ".", dir);
	if (system(cmd) != 0)
		return -1;
	leaf_len = slurp("leaf.cder", leaf, sizeof(leaf));
	ca_len = slurp("ca.cder", ca, sizeof(ca));
	other_len = slurp("other.cder", other, sizeof(other));
	evil_len = slurp("evil.cder", evil, sizeof(evil));
	now = (int64_t)time(NULL);
	return leaf_len && ca_len && other_len && evil_len ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[600];

	(void)state;
	NSS_Shutdown();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ocsp_check() of a response file about leaf, with the chain candidates
 * (other, ca) as the paths would send them, at time t. */
static int
check_at(const char *name, int64_t t, struct detector_ocsp *o, char *err,
    size_t errlen)
{
	static unsigned char resp[16384];
	struct detector_der cands[2] = { { other, other_len }, { ca, ca_len } };
	size_t len = slurp(name, resp, sizeof(resp));

	assert_true(len > 0);
	return ocsp_check(resp, len, leaf, leaf_len, cands, 2, t, o, err,
	    errlen);
}

static void
assert_ignored(const char *name, const char *why)
{
	struct detector_ocsp o;
	char err[256] = "";

	assert_int_equal(check_at(name, now, &o, err, sizeof(err)), -1);
	if (strstr(err, why) == NULL)
		fail_msg("%s: error '%s' lacks '%s'", name, err, why);
}

static void
test_good(void **state)
{
	struct detector_ocsp o;
	char err[256] = "";

	(void)state;
	assert_int_equal(check_at("good.der", now, &o, err, sizeof(err)), 0);
	assert_int_equal(o.status, DETECTOR_OCSP_GOOD);
	assert_true(o.fresh);
	/* openssl ocsp: thisUpdate = producedAt = now, nextUpdate 7 days on */
	assert_true(o.this_update <= now && o.this_update > now - 600);
	assert_true(o.produced_at <= now && o.produced_at > now - 600);
	assert_int_equal(o.next_update - o.this_update, 7 * 86400);
	assert_int_equal(o.revoked_at, 0);
	/* The same response read after its nextUpdate: stale. */
	assert_int_equal(check_at("good.der", now + 8 * 86400, &o, err,
	    sizeof(err)), 0);
	assert_int_equal(o.status, DETECTOR_OCSP_GOOD);
	assert_false(o.fresh);
	assert_int_equal(check_at("good-bykey.der", now, &o, err,
	    sizeof(err)), 0);
	assert_int_equal(o.status, DETECTOR_OCSP_GOOD);
}

static void
test_revoked(void **state)
{
	struct detector_ocsp o;
	char err[256] = "";

	(void)state;
	assert_int_equal(check_at("revoked.der", now, &o, err, sizeof(err)), 0);
	assert_int_equal(o.status, DETECTOR_OCSP_REVOKED);
	assert_true(o.fresh);
	/* the index said: revoked an hour ago */
	assert_true(o.revoked_at < o.this_update &&
	    o.revoked_at > o.this_update - 3700);
	/* Revoked and old: still revoked, not fresh. */
	assert_int_equal(check_at("stale-revoked.der", now, &o, err,
	    sizeof(err)), 0);
	assert_int_equal(o.status, DETECTOR_OCSP_REVOKED);
	assert_false(o.fresh);
}

static void
test_stale(void **state)
{
	struct detector_ocsp o;
	char err[256] = "";

	(void)state;
	assert_int_equal(check_at("stale.der", now, &o, err, sizeof(err)), 0);
	assert_int_equal(o.status, DETECTOR_OCSP_GOOD);
	assert_false(o.fresh);
	assert_true(o.next_update < now - 2 * 86400);
	/* No nextUpdate: fresh for a day after thisUpdate. */
	assert_int_equal(check_at("nonext.der", now, &o, err, sizeof(err)), 0);
	assert_true(o.fresh);
	assert_int_equal(o.next_update, 0);
	assert_int_equal(check_at("nonext.der", now + 2 * 86400, &o, err,
	    sizeof(err)), 0);
	assert_false(o.fresh);
	/* Read a day before it was made: from the future, ignored. */
	assert_int_equal(check_at("good.der", now - 86400, &o, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "future"));
}

static void
test_delegated(void **state)
{
	struct detector_ocsp o;
	char err[256] = "";

	(void)state;
	assert_int_equal(check_at("delegated.der", now, &o, err, sizeof(err)),
	    0);
	assert_int_equal(o.status, DETECTOR_OCSP_GOOD);
	/* Issued by the CA but not for OCSP signing: not its responder. */
	assert_ignored("noeku.der", "delegated");
}

static void
test_forged(void **state)
{
	(void)state;
	/* Same issuer name, another key: the signature does not verify. */
	assert_ignored("forged.der", "signature does not verify");
	/* A genuine response about another certificate. */
	assert_ignored("otherleaf.der", "another certificate");
	assert_ignored("unauthorized.der", "unauthorized");
}

static void
test_no_issuer(void **state)
{
	static unsigned char resp[16384];
	struct detector_der only_other = { other, other_len };
	struct detector_der lookalike = { evil, evil_len };
	struct detector_ocsp o;
	char err[256] = "";
	size_t len = slurp("revoked.der", resp, sizeof(resp));

	(void)state;
	assert_int_equal(ocsp_check(resp, len, leaf, leaf_len, &only_other, 1,
	    now, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "issued the certificate"));
	/* The look-alike CA has the issuer's name but did not sign the leaf. */
	assert_int_equal(ocsp_check(resp, len, leaf, leaf_len, &lookalike, 1,
	    now, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "issued the certificate"));
	assert_int_equal(ocsp_check(resp, len, leaf, leaf_len, NULL, 0, now,
	    &o, err, sizeof(err)), -1);
}

static void
test_malformed(void **state)
{
	static unsigned char resp[16384], bad[16385];
	struct detector_der cands[1] = { { ca, ca_len } };
	struct ocsp_parsed p;
	struct detector_ocsp o;
	char err[256];
	size_t len = slurp("good.der", resp, sizeof(resp)), i;

	(void)state;
	assert_int_equal(ocsp_parse(resp, len, &p, err, sizeof(err)), 0);
	assert_int_equal(p.nsingle, 1);
	assert_int_equal(p.single[0].status, DETECTOR_OCSP_GOOD);
	/* Every truncation, and trailing data, is refused. */
	for (i = 0; i < len; i++) {
		assert_int_equal(ocsp_parse(resp, i, &p, err, sizeof(err)), -1);
		assert_int_equal(ocsp_check(resp, i, leaf, leaf_len, cands, 1,
		    now, &o, err, sizeof(err)), -1);
	}
	memcpy(bad, resp, len);
	bad[len] = 0;
	assert_int_equal(ocsp_parse(bad, len + 1, &p, err, sizeof(err)), -1);
	/* Any one byte changed: never a GOOD that differs from the original
	 * (a changed signed byte breaks the signature). */
	for (i = 0; i < len; i++) {
		memcpy(bad, resp, len);
		bad[i] ^= 0x01;
		if (ocsp_check(bad, len, leaf, leaf_len, cands, 1, now, &o, err,
		    sizeof(err)) == 0)
			fail_msg("byte %zu flipped: still accepted", i);
	}
}

/* detector_check_path() needs the direct path's certificate. */
static void
test_check_path_arguments(void **state)
{
	struct detector_config *cfg = detector_config_new();
	struct detector *ctx = detector_new();
	struct detector_result *res = (void *)1;
	struct detector_path empty;

	(void)state;
	memset(&empty, 0, sizeof(empty));
	assert_int_equal(detector_configure(ctx, cfg), 0);
	assert_int_equal(detector_check_path(ctx, "server.test", 443, NULL,
	    &res), -1);
	assert_null(res);
	assert_non_null(strstr(detector_error(ctx), "no direct certificate "
	    "given for server.test:443"));
	assert_int_equal(detector_check_path(ctx, "server.test", 443, &empty,
	    &res), -1);
	assert_string_equal(detector_ocsp_status_name(DETECTOR_OCSP_REVOKED),
	    "revoked");
	assert_string_equal(detector_locality_name(
	    DETECTOR_LOCALITY_LOCAL_PATH), "local-path");
	detector_free(ctx);
	detector_config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_stale),
		cmocka_unit_test(test_delegated),
		cmocka_unit_test(test_forged),
		cmocka_unit_test(test_no_issuer),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_check_path_arguments),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
