/*
 * fetch.h - what the test clients (nbclient, asyncclient) do after a
 * handshake when asked: report whether it resumed a session, and exchange
 * one request and its answer, as an application would.  Header-only: each
 * client is one C file linking the system NSS only.
 *
 *   fetch_session(fd)     prints "resumed: 0|1" (SSL_GetChannelInfo)
 *   fetch_response(fd, proto)
 *                         sends "GET / HTTP/1.0" (FETCH_HTTP), or after
 *                         STARTTLS "EHLO client.test" (FETCH_SMTP) or
 *                         XMPP's stream header again (FETCH_XMPP), reads
 *                         the answer until the server closes, the SMTP
 *                         line ends or the XMPP features end (or 10 s),
 *                         prints "response: <bytes, non-printable as '.'>";
 *                         -1 if sending or reading failed
 */
#ifndef FETCH_H
#define FETCH_H

#include <prerror.h>
#include <prio.h>
#include <ssl.h>
#include <stdio.h>
#include <string.h>

enum fetch_proto { FETCH_HTTP, FETCH_SMTP, FETCH_XMPP };

/* What an XMPP client sends first, in plaintext and again inside TLS
 * (RFC 6120, 5.4.3.3: the stream restarts after STARTTLS). */
#define FETCH_XMPP_STREAM "<?xml version='1.0'?><stream:stream " \
	"to='server.test' version='1.0' xmlns='jabber:client' " \
	"xmlns:stream='http://etherx.jabber.org/streams'>"

static void
fetch_session(PRFileDesc *fd)
{
	SSLChannelInfo info;

	if (SSL_GetChannelInfo(fd, &info, sizeof(info)) != SECSuccess)
		printf("resumed: ?\n");
	else
		printf("resumed: %d\n", info.resumed ? 1 : 0);
}

/* Waits until `until` for how on fd; 0 when ready (or polled). */
static int
fetch_wait(PRFileDesc *fd, PRInt16 how, PRIntervalTime until)
{
	PRPollDesc pd = { fd, how, 0 };
	PRIntervalTime now = PR_IntervalNow();

	if ((PRInt32)(now - until) >= 0)
		return -1;
	return PR_Poll(&pd, 1, until - now) < 0 ? -1 : 0;
}

/* 1 when buf[0..len) ends with end. */
static int
fetch_ends_with(const char *buf, size_t len, const char *end)
{
	size_t n = strlen(end);

	return len >= n && memcmp(buf + len - n, end, n) == 0;
}

static int
fetch_response(PRFileDesc *fd, enum fetch_proto proto)
{
	static const char *const req_end[][2] = {
		[FETCH_HTTP] = { "GET / HTTP/1.0\r\n\r\n", NULL },
		[FETCH_SMTP] = { "EHLO client.test\r\n", "\n" },
		[FETCH_XMPP] = { FETCH_XMPP_STREAM, "</stream:features>" },
	};
	const char *req = req_end[proto][0], *end = req_end[proto][1];
	PRIntervalTime until = PR_IntervalNow() + PR_SecondsToInterval(10);
	char buf[4096];
	size_t len = 0, sent = 0, i;

	while (sent < strlen(req)) {
		PRInt32 n = PR_Write(fd, req + sent, (PRInt32)(strlen(req) -
		    sent));

		if (n > 0)
			sent += (size_t)n;
		else if (n < 0 && PR_GetError() == PR_WOULD_BLOCK_ERROR &&
		    fetch_wait(fd, PR_POLL_WRITE, until) == 0)
			continue;
		else
			return -1;
	}
	for (;;) {
		PRInt32 n = PR_Read(fd, buf + len, (PRInt32)(sizeof(buf) - 1 -
		    len));

		if (n > 0)
			len += (size_t)n;
		if (n == 0 || len == sizeof(buf) - 1 || (end != NULL &&
		    fetch_ends_with(buf, len, end)))
			break;
		if (n < 0 && (PR_GetError() != PR_WOULD_BLOCK_ERROR ||
		    fetch_wait(fd, PR_POLL_READ, until) == -1))
			return -1;
	}
	for (i = 0; i < len; i++) {
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			buf[i] = '.';
	}
	buf[len] = '\0';
	printf("response: %s\n", buf);
	return 0;
}

#endif
