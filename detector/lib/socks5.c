/*
 * socks5.c - SOCKS5 framing and strict reply parsing.
 *
 * Every parser takes what has been read so far and either asks for an exact
 * number of further bytes (so the caller never reads past the SOCKS reply
 * into the TLS stream), accepts, or rejects with a message that names what
 * was wrong.  Lengths are bounded by the protocol; nothing here allocates.
 */
#include "socks5.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define SOCKS5_VERSION 0x05
#define SOCKS5_CMD_CONNECT 0x01
#define SOCKS5_ATYP_IPV4 0x01
#define SOCKS5_ATYP_NAME 0x03
#define SOCKS5_ATYP_IPV6 0x04

size_t
socks5_greeting(unsigned char *buf, size_t size)
{
	if (size < 4)
		return 0;
	buf[0] = SOCKS5_VERSION;
	buf[1] = 2;
	buf[2] = SOCKS5_METHOD_NONE;
	buf[3] = SOCKS5_METHOD_USERPASS;
	return 4;
}

enum socks5_status
socks5_parse_method(const unsigned char *buf, size_t len, size_t *need,
    int *method, char *err, size_t errlen)
{
	*need = 2;
	if (len < 2)
		return SOCKS5_NEED_MORE;
	if (buf[0] != SOCKS5_VERSION) {
		snprintf(err, errlen, "not a SOCKS5 server (greeting reply "
		    "version 0x%02x, expected 0x05)", buf[0]);
		return SOCKS5_ERROR;
	}
	if (buf[1] == 0xff) {
		snprintf(err, errlen, "SOCKS5 server accepts neither "
		    "no-auth nor username/password authentication");
		return SOCKS5_ERROR;
	}
	if (buf[1] != SOCKS5_METHOD_NONE && buf[1] != SOCKS5_METHOD_USERPASS) {
		snprintf(err, errlen, "SOCKS5 server chose method 0x%02x, "
		    "which was not offered", buf[1]);
		return SOCKS5_ERROR;
	}
	*method = buf[1];
	return SOCKS5_OK;
}

size_t
socks5_auth_request(unsigned char *buf, size_t size, const char *user,
    const char *pass)
{
	size_t ul = strlen(user), pl = strlen(pass);

	if (ul < 1 || ul > 255 || pl < 1 || pl > 255 || size < 3 + ul + pl)
		return 0;
	buf[0] = 0x01;  /* RFC 1929 sub-negotiation version */
	buf[1] = (unsigned char)ul;
	memcpy(buf + 2, user, ul);
	buf[2 + ul] = (unsigned char)pl;
	memcpy(buf + 3 + ul, pass, pl);
	return 3 + ul + pl;
}

enum socks5_status
socks5_parse_auth_reply(const unsigned char *buf, size_t len, size_t *need,
    char *err, size_t errlen)
{
	*need = 2;
	if (len < 2)
		return SOCKS5_NEED_MORE;
	if (buf[0] != 0x01) {
		snprintf(err, errlen, "bad SOCKS5 authentication reply "
		    "(version 0x%02x, expected 0x01)", buf[0]);
		return SOCKS5_ERROR;
	}
	if (buf[1] != 0x00) {
		snprintf(err, errlen, "SOCKS5 server refused the "
		    "username/password (status 0x%02x)", buf[1]);
		return SOCKS5_ERROR;
	}
	return SOCKS5_OK;
}

size_t
socks5_connect_request(unsigned char *buf, size_t size, const char *host,
    unsigned int port, char *err, size_t errlen)
{
	unsigned char addr[16];
	size_t n = 0, hl = strlen(host);

	if (port == 0 || port > 65535) {
		snprintf(err, errlen, "port %u out of range 1-65535", port);
		return 0;
	}
	if (size < 4 + 1 + 255 + 2) {
		snprintf(err, errlen, "SOCKS5 buffer too small");
		return 0;
	}
	buf[n++] = SOCKS5_VERSION;
	buf[n++] = SOCKS5_CMD_CONNECT;
	buf[n++] = 0x00;
	if (inet_pton(AF_INET, host, addr) == 1) {
		buf[n++] = SOCKS5_ATYP_IPV4;
		memcpy(buf + n, addr, 4);
		n += 4;
	} else if (inet_pton(AF_INET6, host, addr) == 1) {
		buf[n++] = SOCKS5_ATYP_IPV6;
		memcpy(buf + n, addr, 16);
		n += 16;
	} else {
		if (hl < 1 || hl > 255) {
			snprintf(err, errlen, "host name length %zu out of "
			    "range 1-255", hl);
			return 0;
		}
		buf[n++] = SOCKS5_ATYP_NAME;
		buf[n++] = (unsigned char)hl;
		memcpy(buf + n, host, hl);
		n += hl;
	}
	buf[n++] = (unsigned char)(port >> 8);
	buf[n++] = (unsigned char)(port & 0xff);
	return n;
}

enum socks5_status
socks5_parse_reply(const unsigned char *buf, size_t len, size_t *need,
    int *rep, char *err, size_t errlen)
{
	*rep = -1;
	*need = 5;  /* up to and including the first address byte */
	if (len < 5)
		return SOCKS5_NEED_MORE;
	if (buf[0] != SOCKS5_VERSION) {
		snprintf(err, errlen, "bad SOCKS5 reply (version 0x%02x, "
		    "expected 0x05)", buf[0]);
		return SOCKS5_ERROR;
	}
	if (buf[2] != 0x00) {
		snprintf(err, errlen, "bad SOCKS5 reply (reserved byte "
		    "0x%02x, expected 0x00)", buf[2]);
		return SOCKS5_ERROR;
	}
	switch (buf[3]) {
	case SOCKS5_ATYP_IPV4:
		*need = 4 + 4 + 2;
		break;
	case SOCKS5_ATYP_IPV6:
		*need = 4 + 16 + 2;
		break;
	case SOCKS5_ATYP_NAME:
		if (buf[4] == 0) {
			snprintf(err, errlen, "bad SOCKS5 reply (empty bound "
			    "address name)");
			return SOCKS5_ERROR;
		}
		*need = 4 + 1 + buf[4] + 2;
		break;
	default:
		snprintf(err, errlen, "bad SOCKS5 reply (address type "
		    "0x%02x)", buf[3]);
		return SOCKS5_ERROR;
	}
	/* A refusal is reported as soon as its code is known: servers often
	 * close right after a short failure reply. */
	if (buf[1] != 0x00) {
		*rep = buf[1];
		snprintf(err, errlen, "SOCKS5 CONNECT refused: %s (reply "
		    "0x%02x)", socks5_reply_str(buf[1]), buf[1]);
		return SOCKS5_ERROR;
	}
	if (len < *need)
		return SOCKS5_NEED_MORE;
	*rep = 0;
	return SOCKS5_OK;
}

const char *
socks5_reply_str(int rep)
{
	switch (rep) {
	case 0x00: return "succeeded";
	case 0x01: return "general SOCKS server failure";
	case 0x02: return "connection not allowed by ruleset (exit policy)";
	case 0x03: return "network unreachable";
	case 0x04: return "host unreachable (name did not resolve or no route)";
	case 0x05: return "connection refused by the destination";
	case 0x06: return "TTL expired (timed out building the connection)";
	case 0x07: return "command not supported";
	case 0x08: return "address type not supported";
	/* Tor's extended errors (SocksPort ExtendedErrors, onion services). */
	case 0xf0: return "Tor: onion service descriptor not found";
	case 0xf1: return "Tor: onion service descriptor is invalid";
	case 0xf2: return "Tor: onion service introduction failed";
	case 0xf3: return "Tor: onion service rendezvous failed";
	case 0xf4: return "Tor: onion service client authorization missing";
	case 0xf5: return "Tor: onion service client authorization wrong";
	case 0xf6: return "Tor: invalid onion service address";
	case 0xf7: return "Tor: onion service introduction timed out";
	default: return "unknown reply code";
	}
}
