/*
 * socks5.h - SOCKS5 (RFC 1928) and username/password auth (RFC 1929)
 * message framing and strict reply parsing.  Pure: no sockets here.
 */
#ifndef DETECTOR_SOCKS5_H
#define DETECTOR_SOCKS5_H

#include <stddef.h>
#include <stdint.h>

#define SOCKS5_MSG_MAX 600      /* largest message either side sends */

enum socks5_status {
	SOCKS5_OK = 0,          /* a complete, valid message */
	SOCKS5_NEED_MORE = 1,   /* read *need bytes in total, then call again */
	SOCKS5_ERROR = -1,      /* invalid or refused; see err */
};

#define SOCKS5_METHOD_NONE 0x00
#define SOCKS5_METHOD_USERPASS 0x02

/* Client greeting offering "no auth" and "username/password". */
size_t socks5_greeting(unsigned char *buf, size_t size);

/* Server's method choice: 2 bytes.  *method is the chosen method. */
enum socks5_status socks5_parse_method(const unsigned char *buf, size_t len,
    size_t *need, int *method, char *err, size_t errlen);

/* RFC 1929 request; user and pass 1..255 bytes.  Returns length or 0. */
size_t socks5_auth_request(unsigned char *buf, size_t size, const char *user,
    const char *pass);

/* RFC 1929 reply: 2 bytes, status 0 means success. */
enum socks5_status socks5_parse_auth_reply(const unsigned char *buf,
    size_t len, size_t *need, char *err, size_t errlen);

/*
 * CONNECT request.  IPv4/IPv6 literals are sent as such (ATYP 1/4); any
 * other host is sent as a name (ATYP 3) for the proxy to resolve: the name
 * is never resolved locally.  Returns length or 0 (err says why).
 */
size_t socks5_connect_request(unsigned char *buf, size_t size,
    const char *host, unsigned int port, char *err, size_t errlen);

/* CONNECT reply: VER REP RSV ATYP BND.ADDR BND.PORT.  On SOCKS5_OK the
 * reply said "succeeded"; a failure code gives SOCKS5_ERROR and *rep. */
enum socks5_status socks5_parse_reply(const unsigned char *buf, size_t len,
    size_t *need, int *rep, char *err, size_t errlen);

/* Readable text for a reply code, including Tor's extended codes. */
const char *socks5_reply_str(int rep);

#endif
