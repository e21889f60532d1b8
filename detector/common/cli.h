/*
 * cli.h - what DetecTor's command-line tools (sphere-probe,
 * detector-monitor) share: a fatal error, numbers from the command line,
 * times and fingerprints as they print them.  Not part of libdetector.
 */
#ifndef DETECTOR_CLI_H
#define DETECTOR_CLI_H

#include <stddef.h>
#include <stdint.h>

/*
 * The program's name (the prefix of every message), the exit code of a
 * fatal error, and what else a fatal error must do before the exit (the
 * monitor prints the status line Nagios needs); on_die may be NULL.
 */
void cli_init(const char *prog, int die_code, void (*on_die)(const char *msg));

/* "PROG: MSG" on stderr, on_die(MSG), exit(die_code). */
void cli_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* A whole number from min to max (min >= 0), else cli_die() naming what
 * and the range. */
long cli_parse_num(const char *s, const char *what, long min, long max);

/* Unix time t as "2026-12-03T05:00:00Z" (the number itself if it cannot
 * be formatted). */
void cli_iso_time(int64_t t, char *buf, size_t size);

/* n bytes as 2n lower-case hex digits and a NUL into out. */
void cli_hex(const unsigned char *b, size_t n, char *out);

#endif
