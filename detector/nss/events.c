/*
 * events.c - one datagram per refusal to the user's session agent
 * (events.h says what and why).
 *
 * Why a datagram socket in $XDG_RUNTIME_DIR: it is per user and per login,
 * needs no daemon of ours to be running, and a send to it either succeeds
 * at once or fails at once (nobody listens, queue full): the handshake
 * never waits for the desktop.
 */
#include "events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "detector_nss.h"
#include "filetrust.h"

#define EVENTS_DIR  "/detector"
#define EVENTS_NAME "/events"

static const char *
event_kind(int error)
{
	switch (error) {
	case DETECTOR_ERROR_MITM:
	case DETECTOR_ERROR_REVOKED:    /* the reason says "revoked" */
	case DETECTOR_ERROR_STAPLE_MISSING:     /* ... "require_direct_staple" */
		return "refused-mitm";
	case DETECTOR_ERROR_REROUTE:    /* refused on the direct path */
		return "rerouted";
	case DETECTOR_ERROR_UNDECIDED:
		return "refused-undecided";
	case DETECTOR_ERROR_KEY_CHANGED:
		return "refused-key-changed";
	case DETECTOR_ERROR_UNCHECKABLE:
		return "refused-uncheckable";
	case DETECTOR_ERROR_CONFIG:
		return "config-error";
	/* Not a refusal: accepted although the spheres could not decide
	 * (on_undecided = accept, or by the key history).  The user learns
	 * that the protection is degraded: Tor unreachable, possibly
	 * blocked (issue 14). */
	case DETECTOR_NSS_ACCEPT_UNCONFIRMED:
		return "accepted-unconfirmed";
	default:
		return NULL;
	}
}

/*
 * s as the inside of a JSON string, into out (size > 0), cut to fit.  Host
 * names come from applications and certificates: quotes, backslashes and
 * control characters are escaped, and a byte outside ASCII becomes '?' so
 * the line is always valid UTF-8 whatever the certificate held.
 */
static void
json_escape(char *out, size_t size, const char *s)
{
	size_t n = 0;

	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[7];
		size_t len;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			len = 2;
		} else if (c < 0x20 || c == 0x7f) {
			len = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
		} else {
			esc[0] = c > 0x7f ? '?' : (char)c;
			len = 1;
		}
		if (n + len >= size)
			break;
		memcpy(out + n, esc, len);
		n += len;
	}
	out[n] = '\0';
}

size_t
events_format(char *out, size_t size, int error, const char *host,
    unsigned int port, const char *app, long pid, long long when,
    const char *reason)
{
	const char *kind = event_kind(error);
	char h[1024], a[128], r[EVENTS_MAX];
	int head, len;

	if (kind == NULL || size == 0)
		return 0;
	json_escape(h, sizeof(h), host);
	json_escape(a, sizeof(a), app);
	head = snprintf(out, size, "{\"v\":1,\"event\":\"%s\",\"host\":\"%s\","
	    "\"port\":%u,\"app\":\"%s\",\"pid\":%ld,\"time\":%lld,"
	    "\"reason\":\"", kind, h, port, a, pid, when);
	if (head < 0 || (size_t)head + 4 > size)
		return 0;
	/* The reason takes what is left, less the closing "}\n. */
	json_escape(r, size - (size_t)head - 3 < sizeof(r) ?
	    size - (size_t)head - 3 : sizeof(r), reason);
	len = snprintf(out + head, size - (size_t)head, "%s\"}\n", r);
	if (len < 0 || (size_t)(head + len) >= size)
		return 0;
	return (size_t)(head + len);
}

void
events_refused(int error, const char *host, unsigned int port,
    const char *reason)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	const char *runtime = secure_getenv("XDG_RUNTIME_DIR");
	char dir[sizeof(sun.sun_path)], msg[EVENTS_MAX], err[512];
	struct stat st;
	size_t len;
	int fd, saved = errno;

	if (runtime == NULL || runtime[0] != '/' ||
	    (size_t)snprintf(dir, sizeof(dir), "%s" EVENTS_DIR, runtime) >=
	    sizeof(dir) ||
	    (size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s"
	    EVENTS_NAME, dir) >= sizeof(sun.sun_path))
		return;
	/* Only a folder of ours nobody else may write (a symlink refused),
	 * holding a socket of ours: the event tells the desktop which sites
	 * the user visits, and must not be handed to someone else. */
	if (filetrust_check_dir(dir, err, sizeof(err)) == -1 || lstat(sun.sun_path, &st) == -1 ||
	    !S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
		goto out;
	len = events_format(msg, sizeof(msg), error, host, port,
	    program_invocation_short_name, (long)getpid(),
	    (long long)time(NULL), reason);
	if (len == 0)
		goto out;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		goto out;
	/* Nobody listening (ECONNREFUSED) or a full queue (EAGAIN): the
	 * refusal was logged already, the desktop just is not told. */
	(void)sendto(fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL,
	    (const struct sockaddr *)&sun, sizeof(sun));
	close(fd);
out:
	errno = saved;          /* NSS reads its own error, not ours */
}
