/*
 * libFuzzer target: the SOCKS5 reply parsers, fed exactly as the probe
 * feeds them (growing prefixes until they stop asking for more).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "socks5.h"

static void
feed(const uint8_t *data, size_t size, int which)
{
	char err[256];
	size_t len = 0, need = which == 2 ? 5 : 2;
	int method, rep;
	enum socks5_status st;

	for (;;) {
		if (need > size || need > SOCKS5_MSG_MAX)
			return;
		len = need;
		switch (which) {
		case 0:
			st = socks5_parse_method(data, len, &need, &method,
			    err, sizeof(err));
			break;
		case 1:
			st = socks5_parse_auth_reply(data, len, &need, err,
			    sizeof(err));
			break;
		default:
			st = socks5_parse_reply(data, len, &need, &rep, err,
			    sizeof(err));
			break;
		}
		if (st != SOCKS5_NEED_MORE)
			return;
		if (need <= len)
			__builtin_trap();   /* must always ask for more */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char buf[SOCKS5_MSG_MAX];
	char err[256];

	if (size < 1)
		return 0;
	feed(data + 1, size - 1, data[0] % 3);
	/* The request builders take names of any shape. */
	if (size < 300) {
		char host[300];
		memcpy(host, data + 1, size - 1);
		host[size - 1] = '\0';
		(void)socks5_connect_request(buf, sizeof(buf), host, 443, err,
		    sizeof(err));
	}
	return 0;
}
