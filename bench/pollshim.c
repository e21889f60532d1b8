/*
 * pollshim.so - an LD_PRELOAD stand-in for a change to the NSS patch,
 * measured without building it (bench/first_visit.py, issue 16 item 5).
 *
 * While a DetecTor verdict is awaited, the patched libssl's ssl_Poll
 * pauses with PR_Sleep(10 ms) and then reports the socket ready; a verdict
 * that arrives during a pause waits for the pause to end.  This shim makes
 * every PR_Sleep of the process POLLSHIM_DIVISOR times shorter (default
 * 10: 1 ms pauses), which is what waking at the verdict (a condition
 * variable instead of the sleep) would approach.  tstclnt itself does not
 * sleep on the way (stock, strace shows no
 * clock_nanosleep), so only the patch's
 * pause changes.  A benchmark tool only: never installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>

#include <prinrval.h>
#include <prthread.h>

typedef PRStatus (*sleep_fn)(PRIntervalTime);

PRStatus
PR_Sleep(PRIntervalTime ticks)
{
	static sleep_fn real;
	sleep_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
	const char *d = getenv("POLLSHIM_DIVISOR");
	unsigned long div = d != NULL ? strtoul(d, NULL, 10) : 10;

	if (fn == NULL) {
		fn = (sleep_fn)dlsym(RTLD_NEXT, "PR_Sleep");
		if (fn == NULL)
			abort();
		__atomic_store_n(&real, fn, __ATOMIC_RELEASE);
	}
	if (div > 1 && ticks != PR_INTERVAL_NO_WAIT && ticks != PR_INTERVAL_NO_TIMEOUT)
		ticks = ticks / div > 0 ? ticks / div : 1;
	return fn(ticks);
}
