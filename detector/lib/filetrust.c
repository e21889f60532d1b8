/*
 * filetrust.c - the rules for files DetecTor believes (see filetrust.h).
 *
 * One function, judge(), holds the rules; the others only obtain a struct
 * stat for it: lstat() for a check by name, fstat() on a descriptor opened
 * with O_NOFOLLOW for a check of what is actually read.
 */
#include "filetrust.h"
#include "detector.h"
#include "errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
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

/* judge() of what an lstat()-like call returning rc found in sb; a file
 * that is not there passes when flags allow it. */
static int
judge_stat(int rc, const struct stat *sb, const char *path,
    unsigned int flags, char *err, size_t errlen)
{
	if (rc == -1) {
		if (errno == ENOENT && (flags & FILETRUST_MISSING_OK))
			return 0;
		return errmsg(err, errlen, "%s: %s", path, strerror(errno));
	}
	return judge(sb, path, flags, err, errlen);
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
	return judge_stat(lstat(entry, &sb), &sb, path, flags, err, errlen);
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
 * The file is opened relative to a folder the caller holds open and has
 * checked, so it is looked up in the folder that was checked even if the
 * path is re-pointed meanwhile.  O_NONBLOCK keeps a FIFO from blocking
 * the open; judge() refuses it next, and the flag is then taken off again.
 * O_TRUNC is held back until the file has passed.
 */
int
filetrust_openat(int dfd, const char *name, const char *shown, int oflags,
    unsigned int mode, unsigned int flags, char *err, size_t errlen)
{
	int fd, saved;

	/* O_TRUNC would act before the check: done after it instead. */
	fd = openat(dfd, name, (oflags & ~O_TRUNC) | O_NOFOLLOW | O_CLOEXEC |
	    O_NOCTTY | O_NONBLOCK, (mode_t)mode);
	if (fd == -1) {
		saved = errno;
		if (saved == ELOOP)
			snprintf(err, errlen, "%s is not a regular file (a "
			    "symlink or special file is refused): replace it "
			    "with a file of your own", shown);
		else
			snprintf(err, errlen, "%s: %s", shown, strerror(saved));
		errno = saved;
		return -1;
	}
	if (filetrust_check_fd(fd, shown, flags & ~(unsigned int)FILETRUST_DIR,
	    err, errlen) == -1) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	if ((!(oflags & O_NONBLOCK) &&
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == -1) ||
	    ((oflags & O_TRUNC) && ftruncate(fd, 0) == -1)) {
		saved = errno;
		snprintf(err, errlen, "%s: %s", shown, strerror(errno));
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
filetrust_checkat(int dfd, const char *name, const char *shown,
    unsigned int flags, char *err, size_t errlen)
{
	struct stat sb;

	return judge_stat(fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW), &sb,
	    shown, flags, err, errlen);
}

/*
 * The folder is held open (O_PATH needs no read permission and, with
 * O_NOFOLLOW, yields the symlink itself if it is one, which judge() then
 * refuses), and the file opened relative to it (filetrust_openat).
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
	fd = filetrust_openat(dfd, base, path, oflags, mode, flags, err,
	    errlen);
	saved = errno;
	close(dfd);
	errno = saved;
	return fd;
}

/*
 * May we believe what folder d (fstat) says entry e (fstat of what the
 * name gave, not followed) is?  Only if nobody but us and root can change
 * d's entries: d is ours or root's and not writable by group or others,
 * or it is a sticky folder (/tmp) and the entry itself is ours or root's
 * (the sticky bit keeps others from renaming or removing it, though not
 * from planting a name that is missing).
 */
static int
holds(const struct stat *d, const struct stat *e)
{
	uid_t me = geteuid();

	if (d->st_uid != me && d->st_uid != 0)
		return 0;
	if (!(d->st_mode & (S_IWGRP | S_IWOTH)))
		return 1;
	return (d->st_mode & S_ISVTX) && (e->st_uid == me || e->st_uid == 0);
}

#define WALK_LINKS_MAX 40

/*
 * Walks path from "/" one component at a time, each opened O_PATH|
 * O_NOFOLLOW relative to the folder before it, so no step can be
 * redirected once taken; see filetrust.h.  rest holds what is still to
 * walk, done what was walked (for messages).
 */
int
filetrust_open_dir(const char *path, unsigned int create, char *err,
    size_t errlen)
{
	char rest[8192], done[4096], comp[NAME_MAX + 1], target[4096];
	struct stat dsb, sb;
	unsigned int links = 0, left;
	const char *p;
	size_t n;
	int dfd, fd, saved, up;

	if (path[0] == '/')
		n = (size_t)snprintf(rest, sizeof(rest), "%s", path);
	else {
		if (getcwd(done, sizeof(done)) == NULL) {
			snprintf(err, errlen, "%s: the current folder: %s",
			    path, strerror(errno));
			return -1;
		}
		n = (size_t)snprintf(rest, sizeof(rest), "%s/%s", done, path);
	}
	if (n >= sizeof(rest)) {
		snprintf(err, errlen, "%s: path too long", path);
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fstat(dfd, &dsb) == -1) {
		saved = errno;
		snprintf(err, errlen, "/: %s", strerror(errno));
		if (dfd != -1)
			close(dfd);
		errno = saved;
		return -1;
	}
	done[0] = '\0';
	for (;;) {
		p = rest;
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		n = strcspn(p, "/");
		if (n > NAME_MAX) {
			snprintf(err, errlen, "%s: a name too long", path);
			saved = ENAMETOOLONG;
			goto fail;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		memmove(rest, p + n, strlen(p + n) + 1);
		if (strcmp(comp, ".") == 0)
			continue;
		/* Components still to walk after this one. */
		for (left = 0, p = rest; *p != '\0'; ) {
			while (*p == '/')
				p++;
			if (*p != '\0')
				left++;
			p += strcspn(p, "/");
		}
		up = strcmp(comp, "..") == 0;
		if (up) {
			/* The folder's real parent: nothing to redirect. */
			fd = openat(dfd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
			char *slash = strrchr(done, '/');
			if (slash != NULL)
				*slash = '\0';
		} else {
			fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			if (fd == -1 && errno == ENOENT && left < create &&
			    (mkdirat(dfd, comp, 0700) == 0 || errno == EEXIST))
				fd = openat(dfd, comp, O_PATH | O_NOFOLLOW |
				    O_CLOEXEC);
			if (strlen(done) + n + 2 < sizeof(done)) {
				strcat(done, "/");
				strcat(done, comp);
			}
		}
		if (fd == -1 || fstat(fd, &sb) == -1) {
			saved = errno;
			snprintf(err, errlen, "%s: %s", done, strerror(errno));
			if (fd != -1)
				close(fd);
			goto fail;
		}
		if (!up && !holds(&dsb, &sb)) {
			char parent[4096], who[4300];

			if (!filetrust_dirname(done, parent, sizeof(parent)))
				parent[0] = '\0';
			if (dsb.st_uid != geteuid() && dsb.st_uid != 0)
				snprintf(who, sizeof(who), "%s belongs to "
				    "another user (uid %lu)", parent,
				    (unsigned long)dsb.st_uid);
			else if (dsb.st_mode & S_ISVTX)
				snprintf(who, sizeof(who), "%s belongs to uid "
				    "%lu, in a folder everyone may write",
				    done, (unsigned long)sb.st_uid);
			else
				snprintf(who, sizeof(who), "%s is writable by "
				    "others (mode %04o)", parent,
				    (unsigned int)(dsb.st_mode & 07777));
			snprintf(err, errlen, "%s: refused, %s: that user "
			    "could swap %s for a symlink to a file DetecTor "
			    "must not touch; use a path whose folders belong "
			    "to you (uid %lu) or root and are not writable by "
			    "others", path, who, done,
			    (unsigned long)geteuid());
			close(fd);
			saved = EPERM;
			goto fail;
		}
		if (S_ISLNK(sb.st_mode)) {
			ssize_t len;

			len = readlinkat(fd, "", target, sizeof(target) - 1);
			saved = errno;
			close(fd);
			if (++links > WALK_LINKS_MAX || len <= 0 ||
			    (size_t)len >= sizeof(target) - 1 ||
			    (size_t)len + strlen(rest) + 2 > sizeof(rest)) {
				snprintf(err, errlen, "%s: %s", done,
				    len < 0 ? strerror(saved) :
				    "too many or too long symlinks");
				saved = ELOOP;
				goto fail;
			}
			target[len] = '\0';
			n = strlen(rest);
			memmove(rest + len + 1, rest, n + 1);
			memcpy(rest, target, (size_t)len);
			rest[len] = '/';
			if (target[0] == '/') {
				close(dfd);
				if ((dfd = open("/", O_PATH | O_DIRECTORY |
				    O_CLOEXEC)) == -1 || fstat(dfd, &dsb) == -1) {
					saved = errno;
					snprintf(err, errlen, "/: %s",
					    strerror(errno));
					goto fail;
				}
				done[0] = '\0';
			} else {
				char *slash = strrchr(done, '/');
				if (slash != NULL)
					*slash = '\0';
			}
			continue;
		}
		if (!S_ISDIR(sb.st_mode)) {
			snprintf(err, errlen, "%s is not a directory", done);
			close(fd);
			saved = ENOTDIR;
			goto fail;
		}
		close(dfd);
		dfd = fd;
		dsb = sb;
	}
	if (judge(&dsb, path, FILETRUST_DIR, err, errlen) == -1) {
		saved = EPERM;
		goto fail;
	}
	return dfd;
fail:
	if (dfd != -1)
		close(dfd);
	errno = saved;
	return -1;
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

/* 1 if path is base or lies under it (both resolved). */
static int
path_under(const char *path, const char *base)
{
	size_t n = strlen(base);

	/* A home of "/" (systemd-network, systemd-timesync) would hold
	 * every folder: it vouches for none (security review, Low 3). */
	if (strcmp(base, "/") == 0)
		return 0;
	return strncmp(path, base, n) == 0 &&
	    (path[n] == '\0' || path[n] == '/');
}

int
filetrust_env_dir(const char *var, const char *dir, char *why,
    size_t whylen)
{
	char at[PATH_MAX], real[PATH_MAX], home[PATH_MAX];
	struct passwd pw, *pwp = NULL;
	char buf[4096];
	struct stat sb;
	uid_t me = geteuid();

	why[0] = '\0';
	if (dir == NULL || dir[0] != '/' ||
	    (size_t)snprintf(at, sizeof(at), "%s", dir) >= sizeof(at)) {
		snprintf(why, whylen, "%s (%s) is not an absolute path", var,
		    dir != NULL ? dir : "");
		return 0;
	}
	/* ".." in a folder that does not exist yet would be climbed by text
	 * below, not by the kernel (security review, Low 2). */
	if (strcmp(dir, "..") == 0 || strncmp(dir, "../", 3) == 0 ||
	    strstr(dir, "/../") != NULL || (strlen(dir) >= 3 &&
	    strcmp(dir + strlen(dir) - 3, "/..") == 0)) {
		snprintf(why, whylen, "%s (%s) contains \"..\": write the "
		    "folder itself", var, dir);
		return 0;
	}
	/* The nearest folder that exists: a missing one is made there. */
	while (realpath(at, real) == NULL) {
		char up[PATH_MAX];

		if (errno != ENOENT || strcmp(at, "/") == 0 ||
		    !filetrust_dirname(at, up, sizeof(up))) {
			snprintf(why, whylen, "%s (%s): %s", var, dir,
			    strerror(errno));
			return 0;
		}
		snprintf(at, sizeof(at), "%s", up);
	}
	if (stat(real, &sb) == -1) {
		snprintf(why, whylen, "%s (%s): %s", var, dir, strerror(errno));
		return 0;
	}
	if (getpwuid_r(me, &pw, buf, sizeof(buf), &pwp) == 0 && pwp != NULL &&
	    pw.pw_dir != NULL && pw.pw_dir[0] == '/' &&
	    realpath(pw.pw_dir, home) != NULL && path_under(real, home))
		return 1;
	if (sb.st_uid == me && (me != 0 || (sb.st_mode & 077) == 0))
		return 1;
	if (sb.st_uid != me)
		snprintf(why, whylen, "%s (%s) belongs to uid %lu, not to this "
		    "process (uid %lu; sudo keeps the caller's HOME), and is "
		    "not under this user's home %s: it is not used, so that "
		    "uid %lu cannot choose what this process writes or "
		    "believes", var, dir, (unsigned long)sb.st_uid,
		    (unsigned long)me, pwp != NULL ? pw.pw_dir : "(none)",
		    (unsigned long)sb.st_uid);
	else
		snprintf(why, whylen, "%s (%s) is neither under root's home "
		    "%s nor a private folder of root's (%s is mode %03o; "
		    "sudo keeps the caller's HOME): it is not used, so that "
		    "another user cannot choose where root writes or which "
		    "file root believes", var, dir, pwp != NULL ? pw.pw_dir :
		    "(none)", real, (unsigned int)(sb.st_mode & 0777));
	return 0;
}
