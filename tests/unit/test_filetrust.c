/*
 * filetrust: which files DetecTor believes.  Each rule is broken once
 * (symlink, group-writable, another user's, a folder everyone can write)
 * and must be refused with a message naming the file, the rule and the
 * fix; what is right (ours, or root's) must pass.  Another user's file and
 * "root's file seen by a user" need root (chown, seteuid): skipped
 * otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "filetrust.h"
#include "fixture.h"

static char dir[] = "/tmp/detector-test-filetrust-XXXXXX";
static char err[1024];

static int
setup(void **state)
{
	(void)state;
	if (fixture_setup(dir, 0) == -1 || chmod(dir, 0755) == -1)
		return -1;
	return 0;
}

/* Makes dir/name with mode (umask aside); returns its path (static). */
static const char *
make(const char *name, mode_t mode)
{
	static char p[4][700];
	static int next;
	char *out = p[next++ % 4];
	FILE *f;

	snprintf(out, sizeof(p[0]), "%s/%s", dir, name);
	f = fopen(out, "w");
	assert_non_null(f);
	fputs("enabled = yes\n", f);
	fclose(f);
	assert_int_equal(chmod(out, mode), 0);
	return out;
}

static void
says(const char *what)
{
	if (strstr(err, what) == NULL)
		fail_msg("error '%s' does not say '%s'", err, what);
}

/* filetrust_check_file(), filetrust_check_dir() and filetrust_open() for
 * reading refuse path, saying what. */
static void
file_refused(const char *path, const char *what)
{
	assert_int_equal(filetrust_check_file(path, err, sizeof(err)), -1);
	says(what);
}

static void
dir_refused(const char *path, const char *what)
{
	assert_int_equal(filetrust_check_dir(path, err, sizeof(err)), -1);
	says(what);
}

static void
open_refused(const char *path, const char *what)
{
	assert_int_equal(filetrust_open(path, O_RDONLY, 0, 0, err,
	    sizeof(err)), -1);
	says(what);
}

static void
test_own_file_passes(void **state)
{
	const char *p = make("ok.conf", 0644);
	int fd;

	(void)state;
	assert_int_equal(filetrust_check_file(p, err, sizeof(err)), 0);
	assert_int_equal(filetrust_check_dir(dir, err, sizeof(err)), 0);
	fd = filetrust_open(p, O_RDONLY, 0, 0, err, sizeof(err));
	assert_true(fd >= 0);
	/* O_NONBLOCK (used against FIFOs) is taken off again. */
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
}

static void
test_symlink_is_refused(void **state)
{
	const char *target = make("target.conf", 0600);
	char link[700], dlink[700], inside[800];

	(void)state;
	snprintf(link, sizeof(link), "%s/link.conf", dir);
	assert_int_equal(symlink(target, link), 0);
	file_refused(link, "link.conf is not a regular file (a symlink");
	open_refused(link, "link.conf is not a regular file");
	assert_int_equal(errno, ELOOP);
	/* A symlinked folder, by name and when opening a file inside it. */
	snprintf(dlink, sizeof(dlink), "%s/dlink", dir);
	assert_int_equal(symlink(dir, dlink), 0);
	dir_refused(dlink, "dlink is not a directory");
	snprintf(inside, sizeof(inside), "%s/target.conf", dlink);
	file_refused(inside, "dlink is not a directory");
	open_refused(inside, "dlink is not a directory");
	/* A trailing slash makes lstat() and O_NOFOLLOW follow the link:
	 * "dlink/" and "dlink//target.conf" are refused all the same. */
	snprintf(inside, sizeof(inside), "%s/", dlink);
	dir_refused(inside, "is not a directory");
	snprintf(inside, sizeof(inside), "%s//target.conf", dlink);
	open_refused(inside, "dlink is not a directory");
}

static void
test_group_writable_file_is_refused(void **state)
{
	const char *p = make("group.conf", 0620);

	(void)state;
	file_refused(p, "group.conf is writable by its group (mode 0620)");
	says("chmod go-w ");
	open_refused(p, "writable by its group");
	/* O_TRUNC waits for the check: the refused file keeps its bytes. */
	assert_int_equal(filetrust_open(p, O_WRONLY | O_TRUNC, 0, 0, err,
	    sizeof(err)), -1);
	{
		struct stat sb;
		assert_int_equal(stat(p, &sb), 0);
		assert_true(sb.st_size > 0);
	}
	p = make("all.conf", 0602);
	file_refused(p, "all.conf is writable by everyone (mode 0602)");
}

static void
test_other_users_file_is_refused(void **state)
{
	const char *p = make("theirs.conf", 0600);

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(chown(p, 65534, 65534), 0);
	file_refused(p, "theirs.conf belongs to uid 65534, not to us (uid 0)");
	open_refused(p, "belongs to uid 65534");
}

static void
test_open_folder_is_refused(void **state)
{
	char d[700], p[800];
	int fd;

	(void)state;
	snprintf(d, sizeof(d), "%s/tmp", dir);
	assert_int_equal(mkdir(d, 0700), 0);
	assert_int_equal(chmod(d, 01777), 0);
	snprintf(p, sizeof(p), "%s/x.conf", d);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	dir_refused(d, "/tmp is writable by everyone (mode 1777)");
	file_refused(p, "/tmp is writable by everyone");
	open_refused(p, "/tmp is writable by everyone");
}

/* Missing files, FIFOs and creation through filetrust_open. */
static void
test_missing_fifo_and_create(void **state)
{
	char p[700];
	struct stat sb;
	int fd;

	(void)state;
	snprintf(p, sizeof(p), "%s/none.conf", dir);
	assert_int_equal(filetrust_check(p, FILETRUST_MISSING_OK, err,
	    sizeof(err)), 0);
	assert_int_equal(filetrust_check_file(p, err, sizeof(err)), -1);
	open_refused(p, "none.conf");
	assert_int_equal(errno, ENOENT);
	fd = filetrust_open(p, O_RDWR | O_CREAT | O_EXCL, 0600, 0, err,
	    sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	close(fd);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	fd = filetrust_open(p, O_WRONLY | O_TRUNC, 0, 0, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 0);
	close(fd);
	/* A FIFO: refused at once, not waited on. */
	snprintf(p, sizeof(p), "%s/fifo.conf", dir);
	assert_int_equal(mkfifo(p, 0600), 0);
	open_refused(p, "fifo.conf is not a regular file");
	assert_int_equal(filetrust_check_file(p, err, sizeof(err)), -1);
}

/*
 * Root's file, seen by another user: trusted (root can change anything
 * anyway), except with FILETRUST_OWNER_SELF; root's folder always.  Run
 * as uid 65534 in a child.
 */
static void
test_roots_file_passes(void **state)
{
	const char *p = make("root.conf", 0644);
	int status;
	pid_t pid;

	(void)state;
	if (geteuid() != 0)
		skip();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd;
		if (setgid(65534) == -1 || setuid(65534) == -1)
			_exit(10);
		if (filetrust_check_file(p, err, sizeof(err)) != 0)
			_exit(11);
		if ((fd = filetrust_open(p, O_RDONLY, 0, 0, err,
		    sizeof(err))) < 0)
			_exit(12);
		close(fd);
		if (filetrust_check(p, FILETRUST_OWNER_SELF, err,
		    sizeof(err)) != -1 || strstr(err, "belongs to uid 0, "
		    "not to us (uid 65534)") == NULL)
			_exit(13);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_dirname(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(filetrust_dirname("/a/b/c", out, sizeof(out)), 1);
	assert_string_equal(out, "/a/b");
	assert_int_equal(filetrust_dirname("/c", out, sizeof(out)), 1);
	assert_string_equal(out, "/");
	assert_int_equal(filetrust_dirname("/a/b//c", out, sizeof(out)), 1);
	assert_string_equal(out, "/a/b");
	assert_int_equal(filetrust_dirname("//c", out, sizeof(out)), 1);
	assert_string_equal(out, "/");
	assert_int_equal(filetrust_dirname("c", out, sizeof(out)), 1);
	assert_string_equal(out, ".");
	assert_int_equal(filetrust_dirname("/0123456789abcdef/x", out,
	    sizeof(out)), 0);
}

/*
 * filetrust_open_dir(): the walk from "/" (security review F1).  Missing
 * trailing folders are made (0700, only as many as asked); "..", "//" and
 * a relative path resolve as the kernel would; a symlink loop, a file on
 * the way and a group-writable folder on the way are refused.
 */
static void
test_open_dir_walk(void **state)
{
	char p[800], q[800], cwd[4096];
	struct stat a, b;
	int fd;

	(void)state;
	snprintf(p, sizeof(p), "%s/w/x/y", dir);
	assert_int_equal(filetrust_open_dir(p, 2, err, sizeof(err)), -1);
	assert_int_equal(errno, ENOENT);
	fd = filetrust_open_dir(p, 3, err, sizeof(err));
	if (fd == -1)
		fail_msg("%s", err);
	assert_int_equal(fstat(fd, &a), 0);
	assert_true(S_ISDIR(a.st_mode));
	assert_int_equal(a.st_mode & 0777, 0700);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(fd);
	snprintf(p, sizeof(p), "%s//w/x/../x/./y/", dir);
	assert_true((fd = filetrust_open_dir(p, 0, err, sizeof(err))) >= 0);
	assert_int_equal(fstat(fd, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	close(fd);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_true((fd = filetrust_open_dir("w/x/y", 0, err, sizeof(err))) >=
	    0);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(fstat(fd, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	close(fd);

	snprintf(p, sizeof(p), "%s/loop", dir);
	assert_int_equal(symlink("loop", p), 0);
	snprintf(q, sizeof(q), "%s/loop/z", dir);
	assert_int_equal(filetrust_open_dir(q, 0, err, sizeof(err)), -1);
	assert_int_equal(errno, ELOOP);

	snprintf(p, sizeof(p), "%s/afile", dir);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	snprintf(q, sizeof(q), "%s/afile/z", dir);
	assert_int_equal(filetrust_open_dir(q, 0, err, sizeof(err)), -1);
	assert_int_equal(errno, ENOTDIR);

	snprintf(p, sizeof(p), "%s/gw", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	assert_int_equal(chmod(p, 0770), 0);
	snprintf(q, sizeof(q), "%s/gw/sub", dir);
	assert_int_equal(mkdir(q, 0700), 0);
	assert_int_equal(filetrust_open_dir(q, 0, err, sizeof(err)), -1);
	if (strstr(err, "is writable by others (mode 0770)") == NULL)
		fail_msg("error '%s'", err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_file_passes),
		cmocka_unit_test(test_symlink_is_refused),
		cmocka_unit_test(test_group_writable_file_is_refused),
		cmocka_unit_test(test_other_users_file_is_refused),
		cmocka_unit_test(test_open_folder_is_refused),
		cmocka_unit_test(test_missing_fifo_and_create),
		cmocka_unit_test(test_roots_file_passes),
		cmocka_unit_test(test_dirname),
		cmocka_unit_test(test_open_dir_walk),
	};
	return cmocka_run_group_tests_name("filetrust", tests, setup,
	    fixture_teardown);
}
