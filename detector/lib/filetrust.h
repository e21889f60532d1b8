/*
 * filetrust.h - may DetecTor believe what a file says?
 *
 * DetecTor's decisions come from files: verdicts (the cache), settings (the
 * configuration), programs it runs as root (monitor hooks).  A local user
 * who can change one of them can switch DetecTor off or make it accept a
 * MITM's key.  So a file is trusted only if all of these hold:
 *
 *   - it is what it claims to be: a regular file, or a directory; never a
 *     symlink (which could point anywhere, even at a file we must not
 *     touch) nor a device or FIFO;
 *   - it belongs to us (the effective user) or to root; with
 *     FILETRUST_OWNER_SELF, to us only (root's files refused too);
 *   - neither its group nor everyone else may write it;
 *
 * and the folder holding it passes the same rules (a folder others can
 * write lets them replace the file; the sticky bit does not help, they can
 * still plant a name that is missing).  filetrust_check*() check only the
 * one folder holding the file; filetrust_open_dir() checks every folder
 * from "/" down and pins the result.
 *
 * Every function returns 0 if the rules hold, else -1 with err saying which
 * file broke which rule and what to do ("chmod go-w PATH").
 */
#ifndef DETECTOR_FILETRUST_H
#define DETECTOR_FILETRUST_H

#include <stddef.h>

#define FILETRUST_MISSING_OK 0x1        /* a missing file passes */
#define FILETRUST_OWNER_SELF 0x2        /* ours only: root's file refused */
#define FILETRUST_DIR        0x4        /* must be a directory */

/* A folder (its own entry only: a symlink to a folder is refused). */
int filetrust_check_dir(const char *path, char *err, size_t errlen);

/* A regular file that must exist, and the folder holding it. */
int filetrust_check_file(const char *path, char *err, size_t errlen);

/* One entry alone (not its folder), by lstat(), with the flags above.
 * For a check made before a library opens the file by name; prefer
 * filetrust_open() when the file is read by this process. */
int filetrust_check(const char *path, unsigned int flags, char *err,
    size_t errlen);

/* What fd refers to (opened by the caller with O_NOFOLLOW), by fstat(); path
 * only names it in the message.  FILETRUST_MISSING_OK is meaningless here. */
int filetrust_check_fd(int fd, const char *path, unsigned int flags,
    char *err, size_t errlen);

/*
 * Opens path without a race between check and use: the folder is opened
 * (O_PATH|O_NOFOLLOW) and checked, the file opened relative to that folder
 * with O_NOFOLLOW|O_CLOEXEC|O_NOCTTY added to oflags (mode applies with
 * O_CREAT), and the descriptor itself checked with fstat().  So the file
 * read is the file checked, whatever is renamed meanwhile.  O_TRUNC, if
 * given, is applied only once the file has passed.  Returns the
 * descriptor, or -1 with err set and errno kept (ENOENT: missing).
 */
int filetrust_open(const char *path, int oflags, unsigned int mode,
    unsigned int flags, char *err, size_t errlen);

/* filetrust_open() for the entry name in folder dfd, which the caller
 * holds open and has checked (filetrust_open_dir()); shown names the file
 * in messages. */
int filetrust_openat(int dfd, const char *name, const char *shown,
    int oflags, unsigned int mode, unsigned int flags, char *err,
    size_t errlen);

/* filetrust_check() for the entry name in folder dfd (not followed). */
int filetrust_checkat(int dfd, const char *name, const char *shown,
    unsigned int flags, char *err, size_t errlen);

/*
 * The folder path, pinned: walked from "/" one name at a time, each opened
 * relative to the folder before it without following it, so nothing
 * renamed or swapped for a symlink meanwhile can redirect the walk, and
 * every later openat() on the descriptor lands in the folder checked.
 * Each folder walked through must be one whose entries nobody but us and
 * root can change (ours or root's, not writable by group or others; or
 * sticky, as /tmp, with the entry in it ours or root's); a symlink is
 * followed only where it lies in such a folder, so nobody else can have
 * placed or re-pointed it.  The folder itself must pass the rules above
 * (FILETRUST_DIR).  The last `create` names, if missing, are made (mode
 * 0700).  A relative path is taken from the current folder.
 *
 * This closes the hole filetrust_check_dir() leaves: a root process told
 * to use /home/alice/.cache/detector checked that folder, but alice could
 * swap /home/alice/.cache for a symlink between the check and the open.
 * Returns an O_PATH descriptor (close-on-exec), or -1 with err and errno.
 */
int filetrust_open_dir(const char *path, unsigned int create, char *err,
    size_t errlen);

/*
 * May this process keep its per-user default files (verdict cache,
 * configuration) in dir, the folder the environment variable var (HOME,
 * XDG_CACHE_HOME, XDG_CONFIG_HOME) names?  sudo and `su -m` keep the
 * caller's HOME, so the caller would choose where root writes and which
 * root-owned file root reads as its configuration.  dir (or, if missing,
 * the nearest folder above it that exists), resolved with realpath(), must
 * be, or lie under, this user's home in the password database; or belong
 * to this user and, for root, be private too (mode 0700 or stricter:
 * nobody else can have chosen a folder that only root can see into, e.g.
 * a test's mkdtemp() HOME).  1 if so, else 0 with why set.
 */
int filetrust_env_dir(const char *var, const char *dir, char *why,
    size_t whylen);

/* The folder holding path ("." for a bare name, "/" for "/x");
 * 0 if it does not fit in size. */
int filetrust_dirname(const char *path, char *out, size_t size);

#endif
