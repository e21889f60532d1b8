/*
 * log.c - one line per event, prefixed so it can be found in an
 * application's stderr or in syslog.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

void
detector_log(const struct detector_config *cfg, enum log_level level,
    const char *fmt, ...)
{
	char msg[1024], *p;
	va_list ap;

	if (cfg->log_level < level || level == LOG_OFF)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Host names come from applications and certificates: a newline or
	 * terminal escape in one must not forge or hide log lines. */
	for (p = msg; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	if (cfg->log_syslog)
		syslog(LOG_USER | (level == LOG_ERRORS ? LOG_WARNING :
		    LOG_INFO), "DetecTor: %s", msg);
	else
		fprintf(stderr, "DetecTor[%ld]: %s\n", (long)getpid(), msg);
}
