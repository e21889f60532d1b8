/*
 * events.h - tells the user's desktop that DetecTor refused a connection.
 *
 * An application only says "SSL connect error"; the refusal's reason goes
 * to its stderr or syslog, where a desktop user never looks.  So each
 * refusal is also sent, as one datagram, to a per-user socket that a
 * session agent (detector-notify) may be listening on:
 *
 *     $XDG_RUNTIME_DIR/detector/events     (a folder 0700 of the user)
 *
 * The payload is one line of JSON (docs/nss-hook.md, "Notifications"):
 *
 *     {"v":1,"event":"refused-mitm","host":"example.com","port":443,
 *      "app":"firefox-esr","pid":1234,"time":1764700000,"reason":"..."}
 *
 * Sending never blocks nor slows the handshake (MSG_DONTWAIT), and is
 * skipped silently when there is no runtime folder, the folder breaks the
 * filetrust rules (a symlink, not ours, writable by others), the socket is
 * not ours, or nothing listens.  The refusal itself never depends on it.
 */
#ifndef DETECTOR_EVENTS_H
#define DETECTOR_EVENTS_H

#include <stddef.h>

/* The largest event sent: detector-notify rejects anything longer. */
#define EVENTS_MAX 4096

/*
 * Writes the event for refusal code error (a DETECTOR_ERROR_*, or
 * DETECTOR_NSS_ACCEPT_UNCONFIRMED for a connection accepted although the
 * spheres could not decide) of host:port by application app into out: one
 * line of JSON, NUL-ended, reason cut to fit.  Returns its length, or 0 if
 * error is none of these.
 * Pure (no I/O), for the tests and fuzzers.
 */
size_t events_format(char *out, size_t size, int error, const char *host,
    unsigned int port, const char *app, long pid, long long when,
    const char *reason);

/* Sends the event for a refusal (or an unconfirmed acceptance, as
 * events_format() says) to the session's agent, if one listens. */
void events_refused(int error, const char *host, unsigned int port,
    const char *reason);

#endif
