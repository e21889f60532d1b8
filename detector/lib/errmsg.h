/*
 * errmsg.h - how the engine's pure functions say why they failed: the
 * message goes into the caller's buffer (never to a log or stderr), and
 * the function returns -1.
 */
#ifndef DETECTOR_ERRMSG_H
#define DETECTOR_ERRMSG_H

#include <stddef.h>

/* Writes the printf-style message into err (errlen bytes, cut to fit) and
 * returns -1, so that `return errmsg(err, errlen, ...)` fails with why. */
int errmsg(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
