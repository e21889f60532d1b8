/*
 * gluefork - libdetector's NSS interface across fork(): a process with a
 * check in flight forks, and the child (which re-initialises NSS, as it
 * must) checks the same host, port and key.  The child's check must run
 * and call done() within its deadline; before the fix it joined the
 * parent's check, whose worker thread did not exist in the child, and
 * its handshake would have waited forever.
 *
 * usage: gluefork LIBDETECTOR CERT.der      (DetecTor's configuration
 * from the environment, as in any application; use short timeouts)
 * exit 0: both done() calls came; 1: the child's never did; 2: setup.
 */
#include <dlfcn.h>
#include <nss.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "detector_nss.h"

#define WAIT_S 10

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int got, got_error;

static void
done(void *arg, int error)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	got = 1;
	got_error = error;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static int
wait_done(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAIT_S;
	pthread_mutex_lock(&mu);
	while (!got && pthread_cond_timedwait(&cv, &mu, &ts) == 0)
		;
	pthread_mutex_unlock(&mu);
	return got;
}

static int
check(const struct detector_nss_ops *ops, const unsigned char *der, int n,
    const char *who, void **pending)
{
	int error = 0, rv;

	got = 0;
	rv = ops->check("fork.test", 443, der, (unsigned int)n, 0, done,
	    NULL, pending, &error);
	printf("%s: check %s\n", who, rv == DETECTOR_NSS_PENDING ? "pending" :
	    "decided");
	if (rv != DETECTOR_NSS_PENDING)
		return 1;
	if (!wait_done()) {
		printf("%s: done() NOT called within %d s\n", who, WAIT_S);
		return 0;
	}
	printf("%s: done(%d)\n", who, got_error);
	return 1;
}

int
main(int argc, char **argv)
{
	const struct detector_nss_ops *(*v1)(void);
	const struct detector_nss_ops *ops;
	unsigned char der[8192];
	void *lib, *pending = NULL;
	int n, status, ok;
	FILE *f;
	pid_t pid;

	if (argc != 3 || (f = fopen(argv[2], "rb")) == NULL)
		return 2;
	n = (int)fread(der, 1, sizeof(der), f);
	fclose(f);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (NSS_NoDB_Init(NULL) != SECSuccess ||
	    (lib = dlopen(argv[1], RTLD_NOW)) == NULL ||
	    (v1 = (const struct detector_nss_ops *(*)(void))dlsym(lib,
	    "detector_nss_v1")) == NULL || (ops = v1()) == NULL)
		return 2;
	/* The parent's check is in flight when the process forks. */
	if (ops->check("fork.test", 443, der, (unsigned int)n, 0, done, NULL,
	    &pending, &status) != DETECTOR_NSS_PENDING)
		return 2;
	usleep(100 * 1000);
	if ((pid = fork()) == 0) {
		void *mine = NULL;

		NSS_Shutdown();
		if (NSS_NoDB_Init(NULL) != SECSuccess)
			_exit(2);
		ok = check(ops, der, n, "child", &mine);
		if (mine != NULL)
			ops->cancel(mine);
		/* _exit: the parent's threads' memory came along through
		 * fork() and is nobody's here; no leak report for it. */
		_exit(ok ? 0 : 1);
	}
	ok = wait_done();
	printf("parent: %s\n", ok ? "done() called" : "done() NOT called");
	ops->cancel(pending);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return 1;
	if (NSS_Shutdown() != SECSuccess)
		printf("parent: NSS_Shutdown failed: NSS objects still held\n");
	return ok && WEXITSTATUS(status) == 0 ? 0 : 1;
}
