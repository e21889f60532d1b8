/*
 * monotonic.h - the one clock for deadlines and durations, in the library
 * and the tools: milliseconds on CLOCK_MONOTONIC, which the wall clock's
 * steps and adjustments never move.
 */
#ifndef DETECTOR_MONOTONIC_H
#define DETECTOR_MONOTONIC_H

#include <stdint.h>

/* Milliseconds since an unspecified start, never going back. */
int64_t monotonic_ms(void);

#endif
