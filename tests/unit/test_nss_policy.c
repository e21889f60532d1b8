/*
 * The NSS integration's decision (detector/nss/policy.c), through the
 * interface the patched libssl calls: a handshake DetecTor cannot check
 * is refused with DETECTOR_ERROR_UNCHECKABLE, never accepted as a routine
 * UNDECIDED, unless `exclude` covers the host; and the host is read as
 * NSS's name matching read it before it is excluded.
 *
 * Each case runs in a child process: the integration reads its
 * configuration once per process, as inside an application.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <nss.h>
#include <prerror.h>

#include "detector_nss.h"
#include "fixture.h"
#include "glue.h"

static char dir[] = "/tmp/detector-test-policy-XXXXXX";
static unsigned char der[8192];
static size_t der_len;

static int
setup(void **state)
{
	char cmd[1024];

	(void)state;
	if (fixture_setup(dir, 0) == -1)
		return -1;
	snprintf(cmd, sizeof(cmd), "cd '%s' && openssl req -x509 -newkey ec "
	    "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem -out c.pem "
	    "-days 1 -subj '/CN=bank test' 2>/dev/null && openssl x509 -in "
	    "c.pem -outform der -out c.der", dir);
	if (system(cmd) != 0)
		return -1;
	der_len = fixture_slurp(dir, "c.der", der, sizeof(der));
	return der_len > 0 ? 0 : -1;
}

/*
 * One handshake's check in a fresh process configured with conf (the one
 * sphere refuses connections: anything probed is UNDECIDED).  Returns the
 * refusal code, 0 for accepted.
 */
static int
check_in_child(const char *conf, const char *host, const unsigned char *cert,
    size_t len)
{
	char path[600];
	int fds[2], error = -1, status;
	pid_t pid;
	FILE *f;

	snprintf(path, sizeof(path), "%s/detector.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "[detector]\nspheres = 127.0.0.1:1\nquorum = 1\n"
	    "deadline_ms = 2000\ncache = off\n%s", conf);
	fclose(f);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		const struct detector_nss_ops *ops;
		void *pending = NULL;
		int rc;

		close(fds[0]);
		setenv("DETECTOR_CONFIG", path, 1);
		unsetenv("DETECTOR_SPHERES");
		if (NSS_NoDB_Init(NULL) != SECSuccess ||
		    (ops = detector_nss_v1()) == NULL)
			_exit(2);
		rc = ops->check(host, 443, cert, (unsigned int)len, 1, NULL,
		    NULL, &pending, &error);
		if (rc != DETECTOR_NSS_DECIDED || pending != NULL)
			_exit(3);
		if (write(fds[1], &error, sizeof(error)) != sizeof(error))
			_exit(4);
		_exit(0);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &error, sizeof(error)), sizeof(error));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return error;
}

static void
test_a_host_that_cannot_be_checked_is_refused(void **state)
{
	(void)state;
	/* NSS accepts CN "bank test" for the name "bank test"; DetecTor
	 * cannot ask the spheres about it.  Even with on_undecided = accept
	 * that is no UNDECIDED to accept. */
	assert_int_equal(check_in_child("", "bank test", der, der_len),
	    DETECTOR_ERROR_UNCHECKABLE);
	assert_int_equal(check_in_child("", "b\xc3\xa4nk.test", der, der_len),
	    DETECTOR_ERROR_UNCHECKABLE);
	/* ... unless `exclude` covers it as it stands. */
	assert_int_equal(check_in_child("exclude = corp.example\n",
	    "intranet host.corp.example", der, der_len), 0);
	/* A name it can check is probed, and UNDECIDED follows the policy. */
	assert_int_equal(check_in_child("", "bank.test", der, der_len), 0);
	assert_int_equal(check_in_child("on_undecided = reject\n",
	    "bank.test", der, der_len), DETECTOR_ERROR_UNDECIDED);
}

static void
test_a_certificate_that_cannot_be_read_is_refused(void **state)
{
	static const unsigned char junk[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };

	(void)state;
	assert_int_equal(check_in_child("", "bank.test", junk, sizeof(junk)),
	    DETECTOR_ERROR_UNCHECKABLE);
	assert_int_equal(check_in_child("exclude = bank.test\n", "bank.test",
	    junk, sizeof(junk)), 0);
}

static void
test_addresses_are_excluded_as_nss_reads_them(void **state)
{
	static const char *const spellings[] = {
		"2130706434", "127.2", "0x7f.0.0.2", "::ffff:127.0.0.2",
		"127.0.0.2",
	};
	size_t i;

	(void)state;
	/* Probed, each would be UNDECIDED and refused by this policy;
	 * excluded, each is accepted without a probe. */
	for (i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
		assert_int_equal(check_in_child("on_undecided = reject\n"
		    "exclude = 127.0.0.0/8\n", spellings[i], der, der_len), 0);
		assert_int_equal(check_in_child("on_undecided = reject\n"
		    "exclude = 10.0.0.0/8\n", spellings[i], der, der_len),
		    DETECTOR_ERROR_UNDECIDED);
	}
}

static void
test_the_code_has_a_name(void **state)
{
	char path[600];

	(void)state;
	snprintf(path, sizeof(path), "%s/detector.conf", dir);
	setenv("DETECTOR_CONFIG", path, 1);
	assert_int_equal(NSS_NoDB_Init(NULL), SECSuccess);
	assert_non_null(detector_nss_v1());
	assert_string_equal(PR_ErrorToName(DETECTOR_ERROR_UNCHECKABLE),
	    "DETECTOR_ERROR_UNCHECKABLE");
	assert_non_null(strstr(PR_ErrorToString(DETECTOR_ERROR_UNCHECKABLE,
	    PR_LANGUAGE_I_DEFAULT), "cannot be checked"));
	/* The codes before it keep their numbers. */
	assert_string_equal(PR_ErrorToName(DETECTOR_ERROR_BASE + 2),
	    "DETECTOR_ERROR_CONFIG");
	assert_int_equal(DETECTOR_ERROR_UNCHECKABLE, DETECTOR_ERROR_BASE + 3);
	assert_int_equal(NSS_Shutdown(), SECSuccess);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_host_that_cannot_be_checked_is_refused),
		cmocka_unit_test(test_a_certificate_that_cannot_be_read_is_refused),
		cmocka_unit_test(test_addresses_are_excluded_as_nss_reads_them),
		cmocka_unit_test(test_the_code_has_a_name),
	};

	return cmocka_run_group_tests(tests, setup, fixture_teardown);
}
