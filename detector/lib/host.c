/*
 * host.c - one spelling per host.
 *
 * An attacker chooses the name an application connects to as much as the
 * certificate: if NSS reads "2130706434" as 127.0.0.2 while DetecTor reads
 * it as a name, the host escapes `exclude = 127.0.0.0/8`, the spheres are
 * asked about a name nobody resolves, and the verdict is UNDECIDED.  So
 * DetecTor reads every host exactly as NSS's name matching does, and a
 * host it cannot read that way is not checked at all (the NSS integration
 * refuses it).
 */
#include "host.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "errmsg.h"

/*
 * inet_aton exactly as NSPR's pr_inet_aton (the BSD original) reads it,
 * overflow included: one to four parts separated by dots, each decimal,
 * octal (leading 0) or hex (0x), computed modulo 2^32; every part but the
 * last at most 255, and the last fills the remaining bytes ("127.2" is
 * 127.0.0.2, "2130706434" is 127.0.0.2, "4294967298" is 0.0.0.2); white
 * space ends the address and whatever follows it is ignored (host_normalise
 * refuses white space before it gets here).  1 with *addr (host order) set,
 * else 0.
 */
static int
host_aton(const char *s, uint32_t *addr)
{
	uint32_t parts[3], val = 0;
	unsigned int n = 0, base;
	int digit = 0;
	unsigned char c = (unsigned char)*s;

	for (;;) {
		if (c < '0' || c > '9')
			return 0;
		val = 0;
		base = 10;
		digit = 0;
		if (c == '0') {
			c = (unsigned char)*++s;
			if (c == 'x' || c == 'X') {
				base = 16;
				c = (unsigned char)*++s;
			} else {
				base = 8;
				digit = 1;
			}
		}
		for (;;) {
			if (c >= '0' && c <= '9') {
				if (base == 8 && c >= '8')
					return 0;
				val = val * base + (c - '0');
			} else if (base == 16 && c >= 'a' && c <= 'f')
				val = (val << 4) + (c - 'a' + 10);
			else if (base == 16 && c >= 'A' && c <= 'F')
				val = (val << 4) + (c - 'A' + 10);
			else
				break;
			c = (unsigned char)*++s;
			digit = 1;
		}
		if (c != '.')
			break;
		if (n == 3 || val > 0xff)
			return 0;
		parts[n++] = val;
		c = (unsigned char)*++s;
	}
	if (c != '\0' && c != ' ' && c != '\t' && c != '\n' && c != '\v' &&
	    c != '\f' && c != '\r')
		return 0;
	if (!digit)
		return 0;
	switch (n) {
	case 0:                                 /* a: 32 bits */
		break;
	case 1:                                 /* a.b: 8.24 */
		if (val > 0xffffff)
			return 0;
		val |= parts[0] << 24;
		break;
	case 2:                                 /* a.b.c: 8.8.16 */
		if (val > 0xffff)
			return 0;
		val |= parts[0] << 24 | parts[1] << 16;
		break;
	default:                                /* a.b.c.d */
		if (val > 0xff)
			return 0;
		val |= parts[0] << 24 | parts[1] << 16 | parts[2] << 8;
		break;
	}
	*addr = val;
	return 1;
}

int
host_normalise(const char *in, char *out, size_t size, char *err,
    size_t errlen)
{
	unsigned char a6[16];
	uint32_t a4;
	size_t n, i;

	if (in == NULL || (n = strlen(in)) == 0)
		return errmsg(err, errlen, "no host name given");
	if (size < HOST_MAX + 2)
		return errmsg(err, errlen, "host buffer too small");
	/* NSPR reads "2130706433 %.bank.com" as a name (a '%' sends it to
	 * getaddrinfo, which refuses the trailing text) but "2130706433 x" as
	 * 127.0.0.1 (inet_aton stops at white space): no DNS name holds
	 * either byte, so neither is read at all rather than guessed. */
	i = strcspn(in, " \t\n\v\f\r%");
	if (in[i] != '\0')
		return errmsg(err, errlen, "host name contains byte 0x%02x at "
		    "offset %zu (white space and '%%' are in no DNS name, and "
		    "NSS reads such a host as an address or a name depending "
		    "on the rest of it)", (unsigned char)in[i], i);
	if (host_aton(in, &a4)) {
		snprintf(out, size, "%u.%u.%u.%u", a4 >> 24, (a4 >> 16) & 0xff,
		    (a4 >> 8) & 0xff, a4 & 0xff);
		return HOST_IPV4;
	}
	if (n < INET6_ADDRSTRLEN && inet_pton(AF_INET6, in, a6) == 1) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0,
		    0, 0, 0, 0, 0xff, 0xff };

		if (memcmp(a6, mapped, sizeof(mapped)) == 0) {
			snprintf(out, size, "%u.%u.%u.%u", a6[12], a6[13],
			    a6[14], a6[15]);
			return HOST_IPV4;
		}
		if (inet_ntop(AF_INET6, a6, out, (socklen_t)size) == NULL)
			return errmsg(err, errlen, "host buffer too small");
		return HOST_IPV6;
	}
	if (n > HOST_MAX + 1 || (n == HOST_MAX + 1 && in[n - 1] != '.'))
		return errmsg(err, errlen, "host name is %zu bytes long; DNS "
		    "names have at most %d", n, HOST_MAX);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_')
			out[i] = (char)c;
		else if (c >= 'A' && c <= 'Z')
			out[i] = (char)(c - 'A' + 'a');
		else
			return errmsg(err, errlen, "host name contains byte "
			    "0x%02x at offset %zu (non-ASCII names must be "
			    "given in their IDNA A-label form, xn--...)", c, i);
	}
	out[n] = '\0';
	return HOST_NAME;
}
