/*
 * log.h - what the NSS integration tells the user, to stderr or syslog.
 */
#ifndef DETECTOR_LOG_H
#define DETECTOR_LOG_H

#include "config.h"

void detector_log(const struct detector_config *cfg, enum log_level level,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
