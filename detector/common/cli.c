/*
 * cli.c - the command-line tools' shared helpers; see cli.h.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "detector.h"

static struct {
	const char *prog;
	int code;
	void (*on_die)(const char *msg);
} cli = { "detector", 3, NULL };

void
cli_init(const char *prog, int die_code, void (*on_die)(const char *msg))
{
	cli.prog = prog;
	cli.code = die_code;
	cli.on_die = on_die;
}

void
cli_die(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", cli.prog, msg);
	if (cli.on_die != NULL)
		cli.on_die(msg);
	exit(cli.code);
}

long
cli_parse_num(const char *s, const char *what, long min, long max)
{
	unsigned int v;

	if (detector_config_parse_uint(s, (unsigned long)max, &v) == -1 ||
	    (long)v < min)
		cli_die("%s '%s': expected a number from %ld to %ld", what, s,
		    min, max);
	return (long)v;
}

void
cli_iso_time(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "%lld", (long long)t);
}

void
cli_hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}
