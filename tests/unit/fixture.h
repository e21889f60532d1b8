/*
 * What the unit tests share: a private folder for each test program, files
 * written into it and read back, and NSS for the tests that need it.
 * Linked into every unit test (Makefile: UNIT_FIXTURE).
 */
#ifndef DETECTOR_TESTS_FIXTURE_H
#define DETECTOR_TESTS_FIXTURE_H

#include <stddef.h>

/* fixture_setup/fixture_teardown: NSS without a database is started
 * (NSS_NoDB_Init) / shut down (NSS_Shutdown). */
#define FIXTURE_NSS 1

/*
 * Makes the folder named by template, whose trailing XXXXXX is replaced as
 * by mkdtemp(3) (so template is edited in place), and with FIXTURE_NSS
 * starts NSS.  Returns 0, or -1 (cmocka then skips the group).
 */
int fixture_setup(char *template, int flags);

/*
 * A cmocka group teardown: undoes the last fixture_setup (shuts NSS down if
 * it started it, then removes the folder and everything in it; symlinks are
 * removed, not followed).  Returns 0, or -1.
 */
int fixture_teardown(void **state);

/* Writes text to dir/name (the test fails if it cannot); returns the
 * file's path, in a buffer the next call overwrites. */
const char *fixture_write(const char *dir, const char *name,
    const char *text);

/* Reads at most size bytes of dir/name (or of name when dir is NULL) into
 * buf; returns how many, or 0 (and says so on stderr) when it cannot be
 * opened. */
size_t fixture_slurp(const char *dir, const char *name, unsigned char *buf,
    size_t size);

/* Runs /usr/bin/python3 tests/testworld/SCRIPT DIR (the source tree:
 * $DETECTOR_SRC, else the working folder), the generators of test PKIs
 * (ocsp.py, ocsp_confusion.py).  0, or -1 (and says so on stderr). */
int fixture_testworld(const char *script, const char *dir);

#endif
