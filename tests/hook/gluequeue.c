/*
 * gluequeue - libdetector's NSS interface under more distinct checks than
 * it runs at once: N checks for N different host names are started
 * together; every one must end (done() called exactly once each), the
 * ones beyond the worker limit after the first ones, and the process must
 * be back to one thread when they are done.
 *
 * usage: gluequeue LIBDETECTOR CERT.der N
 * prints "done: N of N in MS ms", "threads_peak: T", "threads_after: T";
 * exit 0 if all N ended, 1 if not, 2 on setup errors.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <nss.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "detector_nss.h"

#define MAX_CHECKS 256
#define WAIT_S 30

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int calls[MAX_CHECKS], ndone;

static void
done(void *arg, int error)
{
	int i = (int)(long)arg;

	(void)error;
	pthread_mutex_lock(&mu);
	if (calls[i]++ == 0)
		ndone++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static int
threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int
main(int argc, char **argv)
{
	const struct detector_nss_ops *(*v1)(void);
	const struct detector_nss_ops *ops;
	static void *pending[MAX_CHECKS];
	unsigned char der[8192];
	int i, n, len, peak = 0, twice = 0, err;
	long start;
	void *lib;
	FILE *f;

	if (argc != 4 || (n = atoi(argv[3])) < 1 || n > MAX_CHECKS ||
	    (f = fopen(argv[2], "rb")) == NULL)
		return 2;
	len = (int)fread(der, 1, sizeof(der), f);
	fclose(f);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (NSS_NoDB_Init(NULL) != SECSuccess ||
	    (lib = dlopen(argv[1], RTLD_NOW)) == NULL ||
	    (v1 = (const struct detector_nss_ops *(*)(void))dlsym(lib,
	    "detector_nss_v1")) == NULL || (ops = v1()) == NULL)
		return 2;
	start = now_ms();
	for (i = 0; i < n; i++) {
		char host[64];

		snprintf(host, sizeof(host), "queue%d.test", i);
		if (ops->check(host, 443, der, (unsigned int)len, 0, done,
		    (void *)(long)i, &pending[i], &err) !=
		    DETECTOR_NSS_PENDING)
			return 2;
	}
	pthread_mutex_lock(&mu);
	while (ndone < n && now_ms() - start < WAIT_S * 1000L) {
		struct timespec ts;
		int t;

		pthread_mutex_unlock(&mu);
		if ((t = threads()) > peak)
			peak = t;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&mu);
		pthread_cond_timedwait(&cv, &mu, &ts);
	}
	pthread_mutex_unlock(&mu);
	printf("done: %d of %d in %ld ms\n", ndone, n, now_ms() - start);
	for (i = 0; i < n; i++) {
		twice += calls[i] > 1;
		ops->cancel(pending[i]);
	}
	printf("done_twice: %d\n", twice);
	printf("threads_peak: %d\n", peak);
	usleep(300 * 1000);     /* the last workers return after done() */
	printf("threads_after: %d\n", threads());
	if (NSS_Shutdown() != SECSuccess)
		printf("NSS_Shutdown failed: NSS objects still held\n");
	return ndone == n && twice == 0 ? 0 : 1;
}
