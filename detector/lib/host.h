/*
 * host.h - the host a check is about, read the way NSS's certificate name
 * matching reads it, so that what DetecTor excludes, remembers and probes
 * is the host the certificate was accepted for.
 */
#ifndef DETECTOR_HOST_H
#define DETECTOR_HOST_H

#include <stddef.h>

#define HOST_MAX 253            /* longest DNS name, without a final dot */

enum host_kind {
	HOST_NAME = 0,          /* a DNS name, lower-cased */
	HOST_IPV4,              /* dotted quad: probed as an address */
	HOST_IPV6,              /* RFC 5952 text: probed as an address */
};

/*
 * Writes into out (size at least HOST_MAX + 2) the host in the one form
 * DetecTor uses.  NSS (PR_StringToNetAddr, then CERT_VerifyCertName)
 * takes any inet_aton spelling of an IPv4 address for that address
 * ("2130706434", "127.2", "0x7f.0.0.2", even followed by white space and
 * anything), and an IPv4-mapped IPv6 address ("::ffff:127.0.0.2") for the
 * IPv4 one: each becomes a dotted quad.  Another IPv6 address becomes its
 * RFC 5952 text; a DNS name is lower-cased.
 *
 * Returns the kind, or -1 with a reason in err when the host is one
 * DetecTor cannot check: empty, longer than a DNS name, or with a byte no
 * DNS name has (a space, a control or non-ASCII byte, '/', '@', ...).
 * Pure.
 */
int host_normalise(const char *in, char *out, size_t size, char *err,
    size_t errlen);

#endif
