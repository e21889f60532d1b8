/*
 * filetrust.c - the rules for files DetecTor believes (see filetrust.h).
 *
 * One function, judge(), holds the rules; the others only obtain a struct
 * stat for it: lstat() for a check by name, fstat() on a descriptor opened
 * with O_NOFOLLOW for a check of what is actually read.
 */
#include "filetrust.h"
#include "detector.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The rules, applied to what lstat()/fstat() said about path. */
static int
judge(const struct stat *sb, const char *path, unsigned int flags, char *err,
    size_t errlen)
{
	int want_dir = (flags & FILETRUST_DIR) != 0;
	uid_t me = geteuid();

	if (want_dir ? !S_ISDIR(sb->st_mode) : !S_ISREG(sb->st_mode)) {
		snprintf(err, errlen, "%s is not a %s (a symlink or special "
		    "file is refused): replace it with a %s of your own",
		    path, want_dir ? "directory" : "regular file",
		    want_dir ? "directory" : "file");
		return -1;
	}
	/* Root can change any file anyway: trusting it loses nothing,
	 * except where the caller must be able to write the file itself. */
	if (sb->st_uid != me && (sb->st_uid != 0 ||
	    (!want_dir && (flags & FILETRUST_OWNER_SELF)))) {
		snprintf(err, errlen, "%s belongs to uid %lu, not to us (uid "
		    "%lu)%s: refused, another user could change what DetecTor "
		    "decides; remove it, or chown it to uid %lu",
		    path, (unsigned long)sb->st_uid, (unsigned long)me,
		    want_dir || !(flags & FILETRUST_OWNER_SELF) ? " nor root" :
		    "", (unsigned long)me);
		return -1;
	}
	if (sb->st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s is writable by %s (mode %04o): "
		    "refused, another user could change what DetecTor "
		    "decides; chmod go-w %s", path,
		    sb->st_mode & S_IWOTH ? "everyone" : "its group",
		    (unsigned int)(sb->st_mode & 07777), path);
		return -1;
	}
	return 0;
}

int
filetrust_dirname(const char *path, char *out, size_t size)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (slash == NULL)
		return snprintf(out, size, ".") == 1;
	n = slash == path ? 1 : (size_t)(slash - path);
	/* "a/link//f": the folder is "a/link", not "a/link/" (a trailing
	 * slash makes O_NOFOLLOW and lstat() follow a symlink). */
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n >= size)
		return 0;
	memcpy(out, path, n);
	out[n] = '\0';
	return 1;
}

int
filetrust_check(const char *path, unsigned int flags, char *err,
    size_t errlen)
{
	struct stat sb;
	char entry[4096];
	size_t n = strlen(path);

	/* lstat("link/") follows the link: judge the entry itself. */
	if (n >= sizeof(entry)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	memcpy(entry, path, n + 1);
	while (n > 1 && entry[n - 1] == '/')
		entry[--n] = '\0';
	if (lstat(entry, &sb) == -1) {
		if (errno == ENOENT && (flags & FILETRUST_MISSING_OK))
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return judge(&sb, path, flags, err, errlen);
}

int
filetrust_check_fd(int fd, const char *path, unsigned int flags, char *err,
    size_t errlen)
{
	struct stat sb;

	if (fstat(fd, &sb) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return judge(&sb, path, flags, err, errlen);
}

int
filetrust_check_dir(const char *path, char *err, size_t errlen)
{
	return filetrust_check(path, FILETRUST_DIR, err, errlen);
}

int
filetrust_check_file(const char *path, char *err, size_t errlen)
{
	char dir[4096];

	if (!filetrust_dirname(path, dir, sizeof(dir))) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	return filetrust_check_dir(dir, err, errlen) == -1 ||
	    filetrust_check(path, 0, err, errlen) == -1 ? -1 : 0;
}

/*
 * The folder is held open (O_PATH needs no read permission and, with
 * O_NOFOLLOW, yields the symlink itself if it is one, which judge() then
 * refuses), so the file is looked up in the folder that was checked even if
 * the path is re-pointed meanwhile.  O_NONBLOCK keeps a FIFO from blocking
 * the open; judge() refuses it next, and the flag is then taken off again.
 * O_TRUNC is held back until the file has passed.
 */
int
filetrust_open(const char *path, int oflags, unsigned int mode,
    unsigned int flags, char *err, size_t errlen)
{
	char dir[4096];
	const char *base = strrchr(path, '/');
	int dfd, fd, saved;

	base = base == NULL ? path : base + 1;
	if (!filetrust_dirname(path, dir, sizeof(dir)) || base[0] == '\0') {
		snprintf(err, errlen, "%s: not a file name", path);
		errno = EINVAL;
		return -1;
	}
	if ((dfd = open(dir, O_PATH | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		saved = errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		errno = saved;
		return -1;
	}
	if (filetrust_check_fd(dfd, dir, FILETRUST_DIR, err, errlen) == -1) {
		close(dfd);
		errno = EPERM;
		return -1;
	}
	/* O_TRUNC would act before the check: done after it instead. */
	fd = openat(dfd, base, (oflags & ~O_TRUNC) | O_NOFOLLOW | O_CLOEXEC |
	    O_NOCTTY | O_NONBLOCK, (mode_t)mode);
	saved = errno;
	close(dfd);
	if (fd == -1) {
		if (saved == ELOOP)
			snprintf(err, errlen, "%s is not a regular file (a "
			    "symlink or special file is refused): replace it "
			    "with a file of your own", path);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(saved));
		errno = saved;
		return -1;
	}
	if (filetrust_check_fd(fd, path, flags & ~(unsigned int)FILETRUST_DIR,
	    err, errlen) == -1) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	if ((!(oflags & O_NONBLOCK) &&
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == -1) ||
	    ((oflags & O_TRUNC) && ftruncate(fd, 0) == -1)) {
		saved = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* The public door (detector.h) for programs such as detector-monitor. */
DETECTOR_API int
detector_file_trusted(const char *path, unsigned int flags, char *err,
    size_t errlen)
{
	return filetrust_check(path, flags & FILETRUST_DIR, err, errlen);
}

DETECTOR_API int
detector_open_trusted(const char *path, char *err, size_t errlen)
{
	int fd = filetrust_open(path, O_RDONLY, 0, 0, err, errlen);

	if (fd == -1 && errno == ELOOP)
		errno = EPERM;          /* a symlink: a rule broken too */
	return fd;
}

DETECTOR_API int
detector_fd_trusted(int fd, const char *path, unsigned int flags, char *err,
    size_t errlen)
{
	return filetrust_check_fd(fd, path, flags & FILETRUST_DIR, err, errlen);
}

_Static_assert(DETECTOR_TRUST_DIR == FILETRUST_DIR,
    "detector.h and filetrust.h must agree on the folder flag");
