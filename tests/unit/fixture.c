/*
 * The unit tests' shared fixture: see fixture.h.
 */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>
#include <nss.h>

#include "fixture.h"

/* What fixture_setup made, for fixture_teardown. */
static const char *made_dir;
static int made_flags;

int
fixture_setup(char *template, int flags)
{
	made_dir = template;
	made_flags = flags;
	if (mkdtemp(template) == NULL)
		return -1;
	if ((flags & FIXTURE_NSS) && NSS_NoDB_Init(NULL) != SECSuccess)
		return -1;
	return 0;
}

static int removed_all;

/* As rm -rf: goes on past what it cannot remove, and says so at the end. */
static int
remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(path) == -1)
		removed_all = 0;
	return 0;
}

int
fixture_teardown(void **state)
{
	(void)state;
	if (made_flags & FIXTURE_NSS)
		NSS_Shutdown();
	removed_all = 1;
	if (nftw(made_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) == -1)
		return -1;
	return removed_all ? 0 : -1;
}

const char *
fixture_write(const char *dir, const char *name, const char *text)
{
	static char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	return path;
}

size_t
fixture_slurp(const char *dir, const char *name, unsigned char *buf,
    size_t size)
{
	char path[1024];
	FILE *f;
	size_t n;

	if (dir != NULL)
		snprintf(path, sizeof(path), "%s/%s", dir, name);
	else
		snprintf(path, sizeof(path), "%s", name);
	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "cannot open %s\n", path);
		return 0;
	}
	n = fread(buf, 1, size, f);
	fclose(f);
	return n;
}

int
fixture_testworld(const char *script, const char *dir)
{
	const char *src = getenv("DETECTOR_SRC");
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/tests/testworld/%s' "
	    "'%s'", src ? src : ".", script, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "fixture: '%s' failed\n", cmd);
		return -1;
	}
	return 0;
}
