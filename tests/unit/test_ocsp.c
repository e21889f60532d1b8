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
#include <cert.h>
#include <nss.h>

#include "evidence.h"
#include "fixture.h"
#include "staple.h"

static char dir[] = "/tmp/detector-test-ocsp-XXXXXX";
static unsigned char leaf[4096], ca[4096], other[4096], evil[4096];
static size_t leaf_len, ca_len, other_len, evil_len;
/* tests/testworld/ocsp_confusion.py: an ECDSA leaf, its CA, the CA's
 * "revoked" for it, a false issuer whose key verifies the leaf, and a
 * certificate with the CA's issuer and serial but another key. */
static unsigned char ec_leaf[4096], ec_ca[4096], ec_fake[4096],
    ec_revoked[4096], ec_twin[4096];
static size_t ec_leaf_len, ec_ca_len, ec_fake_len, ec_revoked_len,
    ec_twin_len;
static int64_t now;

static size_t
slurp(const char *name, unsigned char *buf, size_t size)
{
	return fixture_slurp(dir, name, buf, size);
}

static int
setup(void **state)
{
	(void)state;
	if (fixture_setup(dir, FIXTURE_NSS) == -1 ||
	    fixture_testworld("ocsp.py", dir) == -1 ||
	    fixture_testworld("ocsp_confusion.py", dir) == -1)
		return -1;
	ec_leaf_len = slurp("ec-leaf.cder", ec_leaf, sizeof(ec_leaf));
	ec_ca_len = slurp("ec-ca.cder", ec_ca, sizeof(ec_ca));
	ec_fake_len = slurp("ec-fake.cder", ec_fake, sizeof(ec_fake));
	ec_revoked_len = slurp("ec-revoked.ocsp", ec_revoked,
	    sizeof(ec_revoked));
	ec_twin_len = slurp("ec-twin.cder", ec_twin, sizeof(ec_twin));
	if (!ec_leaf_len || !ec_ca_len || !ec_fake_len || !ec_revoked_len ||
	    !ec_twin_len)
		return -1;
	leaf_len = slurp("leaf.cder", leaf, sizeof(leaf));
	ca_len = slurp("ca.cder", ca, sizeof(ca));
	other_len = slurp("other.cder", other, sizeof(other));
	evil_len = slurp("evil.cder", evil, sizeof(evil));
	now = (int64_t)time(NULL);
	return leaf_len && ca_len && other_len && evil_len ? 0 : -1;
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

/* check_at() of name at t reads a response with status want into o. */
static void
reads(const char *name, int64_t t, struct detector_ocsp *o,
    enum detector_ocsp_status want)
{
	char err[256] = "";

	if (check_at(name, t, o, err, sizeof(err)) != 0)
		fail_msg("%s: %s", name, err);
	assert_int_equal(o->status, want);
}

static void
test_good(void **state)
{
	struct detector_ocsp o;

	(void)state;
	reads("good.der", now, &o, DETECTOR_OCSP_GOOD);
	assert_true(o.fresh);
	/* openssl ocsp: thisUpdate = producedAt = now, nextUpdate 7 days on */
	assert_true(o.this_update <= now && o.this_update > now - 600);
	assert_true(o.produced_at <= now && o.produced_at > now - 600);
	assert_int_equal(o.next_update - o.this_update, 7 * 86400);
	assert_int_equal(o.revoked_at, 0);
	/* The same response read after its nextUpdate: stale. */
	reads("good.der", now + 8 * 86400, &o, DETECTOR_OCSP_GOOD);
	assert_false(o.fresh);
	reads("good-bykey.der", now, &o, DETECTOR_OCSP_GOOD);
}

static void
test_revoked(void **state)
{
	struct detector_ocsp o;

	(void)state;
	reads("revoked.der", now, &o, DETECTOR_OCSP_REVOKED);
	assert_true(o.fresh);
	/* the index said: revoked an hour ago */
	assert_true(o.revoked_at < o.this_update &&
	    o.revoked_at > o.this_update - 3700);
	/* Revoked and old: still revoked, not fresh. */
	reads("stale-revoked.der", now, &o, DETECTOR_OCSP_REVOKED);
	assert_false(o.fresh);
}

static void
test_stale(void **state)
{
	struct detector_ocsp o;
	char err[256] = "";

	(void)state;
	reads("stale.der", now, &o, DETECTOR_OCSP_GOOD);
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

	(void)state;
	reads("delegated.der", now, &o, DETECTOR_OCSP_GOOD);
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

/*
 * Security review C1: a chain may carry, before the real issuer, a
 * certificate with the issuer's name and a key computed from the leaf's
 * ECDSA signature alone that verifies it.  The CA's genuine "revoked"
 * must still be read as revoked, whichever comes first.
 */
static void
test_issuer_confusion(void **state)
{
	struct detector_der fake = { ec_fake, ec_fake_len },
	    ca_ = { ec_ca, ec_ca_len };
	struct detector_der fake_first[2] = { fake, ca_ },
	    ca_first[2] = { ca_, fake }, fakes[3] = { fake, fake, ca_ };
	struct detector_ocsp o;
	char err[256] = "";

	(void)state;
	assert_int_equal(ocsp_check(ec_revoked, ec_revoked_len, ec_leaf,
	    ec_leaf_len, fake_first, 2, now, &o, err, sizeof(err)), 0);
	assert_int_equal(o.status, DETECTOR_OCSP_REVOKED);
	assert_int_equal(ocsp_check(ec_revoked, ec_revoked_len, ec_leaf,
	    ec_leaf_len, ca_first, 2, now, &o, err, sizeof(err)), 0);
	assert_int_equal(o.status, DETECTOR_OCSP_REVOKED);
	/* Under the false issuer alone the response is not believed. */
	assert_int_equal(ocsp_check(ec_revoked, ec_revoked_len, ec_leaf,
	    ec_leaf_len, &fake, 1, now, &o, err, sizeof(err)), -1);
	/* Both issuers are kept, the false one once. */
	assert_int_equal(ocsp_issuers(ec_leaf, ec_leaf_len, fakes, 3), 2);
	assert_ptr_equal(fakes[0].data, ec_fake);
	assert_ptr_equal(fakes[1].data, ec_ca);
}

/*
 * Security review L1: NSS's temporary certificates are one per issuer and
 * serial.  While a certificate with the CA's issuer and serial but another
 * key is alive in this process (a peer sent it), decoding the CA's bytes
 * must still give the CA, and its "revoked" must still be read.
 */
static void
test_issuer_serial_twin(void **state)
{
	SECItem item = { siBuffer, ec_twin, 0 };
	struct detector_der ca_ = { ec_ca, ec_ca_len };
	CERTCertificate *twin;
	struct detector_ocsp o;
	char err[256] = "";

	(void)state;
	item.len = (unsigned int)ec_twin_len;
	twin = CERT_NewTempCertificate(CERT_GetDefaultCertDB(), &item, NULL,
	    PR_FALSE, PR_TRUE);
	assert_non_null(twin);
	if (ocsp_check(ec_revoked, ec_revoked_len, ec_leaf, ec_leaf_len, &ca_,
	    1, now, &o, err, sizeof(err)) != 0)
		fail_msg("the CA's response, with its twin alive: %s", err);
	assert_int_equal(o.status, DETECTOR_OCSP_REVOKED);
	assert_int_equal(ocsp_issuers(ec_leaf, ec_leaf_len, &ca_, 1), 1);
	CERT_DestroyCertificate(twin);
}

static void
free_result(struct detector_result *res)
{
	size_t i;

	for (i = 0; i < res->nspheres; i++)
		free((void *)res->ocsp_spheres[i].error);
	free((void *)res->ocsp_spheres);
	free((void *)res->ocsp_direct.error);
	free((void *)res->reason);
	free((void *)res->revoked_via);
}

/* The same through evidence_staples(): a MITM's direct chain [leaf, FAKE,
 * CA], or a lying sphere's in hook mode (no direct chain), while three
 * spheres staple the CA's "revoked": REJECT. */
static void
test_issuer_confusion_evidence(void **state)
{
	struct detector_der l = { ec_leaf, ec_leaf_len },
	    fake = { ec_fake, ec_fake_len }, ca_ = { ec_ca, ec_ca_len },
	    rev = { ec_revoked, ec_revoked_len };
	struct detector_der honest[2] = { l, ca_ }, mitm[3] = { l, fake, ca_ };
	struct detector_path sp[3], direct;
	struct detector_result res;
	int hook;
	size_t i;

	(void)state;
	for (hook = 0; hook <= 1; hook++) {
		memset(sp, 0, sizeof(sp));
		for (i = 0; i < 3; i++) {
			sp[i].via = "127.0.0.1:9050";
			sp[i].status = DETECTOR_PATH_MATCH;
			sp[i].have_cert = 1;
			sp[i].ncerts = 2;
			sp[i].certs = honest;
			sp[i].ocsp = rev;
		}
		memset(&direct, 0, sizeof(direct));
		direct.via = "direct";
		direct.status = DETECTOR_PATH_SEEN;
		direct.certs = mitm;
		direct.ncerts = 3;
		if (hook) {             /* sphere 0 lies, staples nothing */
			sp[0].certs = mitm;
			sp[0].ncerts = 3;
			sp[0].ocsp.len = 0;
		}
		memset(&res, 0, sizeof(res));
		res.verdict = DETECTOR_ACCEPT;
		res.reason = strdup("3 of 3 spheres saw the same key");
		res.nspheres = 3;
		res.spheres = sp;
		evidence_staples("bank.test", 443, hook ? NULL : &l,
		    hook ? NULL : &direct, &res);
		assert_int_equal(res.verdict, DETECTOR_REJECT);
		assert_true(res.revoked);
		for (i = hook; i < 3; i++)
			assert_int_equal(res.ocsp_spheres[i].status,
			    DETECTOR_OCSP_REVOKED);
		free_result(&res);
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
		cmocka_unit_test(test_issuer_confusion),
		cmocka_unit_test(test_issuer_confusion_evidence),
		cmocka_unit_test(test_issuer_serial_twin),
	};

	return cmocka_run_group_tests(tests, setup, fixture_teardown);
}
