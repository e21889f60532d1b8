/*
 * inireader.h - the one INI line reader under DetecTor's configuration
 * files (libdetector's detector.conf, detector-monitor's monitor.conf).
 *
 * libinih parses the INI syntax.  This reader feeds it the text one
 * counted line at a time and refuses, with the exact line, the habits of
 * inih a security tool must not inherit: a line longer than inih's buffer
 * (it would be split in two, shifting every later line number), a NUL byte
 * (the rest of the line would vanish), and an indented line after a key
 * (inih would hand it to that key as another value).  It also reports every
 * [section] header, with its line, even one without keys (inih reports only
 * sections that hold keys).  Keys set twice, and what a key means, are the
 * caller's.
 */
#ifndef DETECTOR_INIREADER_H
#define DETECTOR_INIREADER_H

#include <stddef.h>

#define INIREADER_LINE_MAX 199      /* inih's line buffer is 200 */

struct inireader;

struct inireader_ops {
	/* Every [NAME] header (name without brackets, as written between
	 * '[' and the first ']').  Returns 1, or 0 after inireader_fail().
	 * NULL: headers are only seen through the keys' section. */
	int (*section)(struct inireader *r, void *user, const char *name);
	/* Every "key = value".  Returns 1, or 0 after inireader_fail(). */
	int (*key)(struct inireader *r, void *user, const char *section,
	    const char *name, const char *value);
	/* Refuse every indented line that is not blank or a comment (not
	 * only those inih would read as continuations). */
	int strict_indent;
	/* Said after "split it:" and "continuation lines are not
	 * supported;", e.g. "'exclude' may be repeated". */
	const char *repeat_hint;
};

/*
 * Parses len bytes of text (no terminator needed).  Returns 0, or -1 with
 * *line set to the line at fault (0: none, e.g. out of memory) and err to
 * what was wrong with it, without the file name or line: the caller says
 * "FILE:LINE: ERR".
 */
int inireader_parse(const char *text, size_t len,
    const struct inireader_ops *ops, void *user, int *line, char *err,
    size_t errlen);

/* Records the first failure, on the current line; returns 0 (what a
 * callback returns to stop). */
int inireader_fail(struct inireader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The line being read (the current key's or header's), from 1. */
int inireader_line(const struct inireader *r);

#endif
