/*
 * libFuzzer target: the five STARTTLS preamble parsers, fed as the probe
 * feeds them.  data[0] picks the protocol, data[1] the size of each read;
 * the rest is what the server sends.  A reply starts afresh after every
 * command we send, exactly as in probe.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "starttls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct starttls st;
	unsigned char out[STARTTLS_OUT_MAX];
	char err[512];
	size_t outlen, start, pos, chunk;
	enum starttls_status s;
	enum detector_starttls proto;

	if (size < 2)
		return 0;
	proto = (enum detector_starttls)(DETECTOR_STARTTLS_SMTP +
	    data[0] % 5);
	chunk = (size_t)(data[1] % 64) + 1;
	data += 2;
	size -= 2;
	if (starttls_init(&st, proto, "server.test", err, sizeof(err)) != 0)
		__builtin_trap();
	s = starttls_step(&st, data, 0, out, sizeof(out), &outlen, err,
	    sizeof(err));
	start = pos = 0;
	while (s == STARTTLS_SEND || s == STARTTLS_NEED_MORE) {
		if (outlen > sizeof(out))
			__builtin_trap();
		if (s == STARTTLS_SEND)
			start = pos;
		if (pos == size)
			return 0;
		pos = pos + chunk < size ? pos + chunk : size;
		if (pos - start > STARTTLS_REPLY_MAX)
			pos = start + STARTTLS_REPLY_MAX;   /* the probe's buffer */
		s = starttls_step(&st, data + start, pos - start, out,
		    sizeof(out), &outlen, err, sizeof(err));
		/* A full buffer never waits for more. */
		if (s == STARTTLS_NEED_MORE && pos - start >= STARTTLS_REPLY_MAX)
			__builtin_trap();
	}
	if (s == STARTTLS_ERROR && (err[0] == '\0' ||
	    memchr(err, '\0', sizeof(err)) == NULL))
		__builtin_trap();
	/* READY only when the reply ended exactly at what was read. */
	return 0;
}
