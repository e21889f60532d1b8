/*
 * events_format ERROR HOST PORT APP REASON [SIZE] - prints what
 * events_format() (detector/nss/events.c) makes of its arguments, in a
 * buffer of SIZE bytes (default EVENTS_MAX): the event line, or nothing if
 * it returned 0.  Built with ASan/UBSan by tests/notify/test_notify.py,
 * which feeds it hostile host names and reasons.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"

int
main(int argc, char **argv)
{
	size_t size = argc > 6 ? strtoul(argv[6], NULL, 10) : EVENTS_MAX;
	char *out;
	size_t len;

	if (argc < 6) {
		fprintf(stderr, "usage: events_format ERROR HOST PORT APP "
		    "REASON [SIZE]\n");
		return 2;
	}
	if ((out = malloc(size ? size : 1)) == NULL)
		return 1;
	len = events_format(out, size, atoi(argv[1]), argv[2],
	    (unsigned int)strtoul(argv[3], NULL, 10), argv[4], 4242, 1764706000,
	    argv[5]);
	if (len != 0 && (len >= size || strlen(out) != len))
		return 3;       /* the length it returns is not the line's */
	fwrite(out, 1, len, stdout);
	free(out);
	return 0;
}
