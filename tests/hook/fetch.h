/*
 * fetch.h - what the test clients (nbclient, asyncclient) do after a
 * handshake when asked: report whether it resumed a session, and exchange
 * one request and its answer, as an application would.  Header-only: each
 * client is one C file linking the system NSS only.
 *
 *   fetch_session(fd)     prints "resumed: 0|1" (SSL_GetChannelInfo)
 *   fetch_response(fd, smtp)
 *                         sends "GET / HTTP/1.0" (or, after SMTP STARTTLS,
 *                         "EHLO client.test"), reads the answer until the
 *                         server closes (or 10 s), prints
 *                         "response: <bytes, non-printable as '.'>";
 *                         -1 if sending or reading failed
 */
#ifndef FETCH_H
#define FETCH_H

#include <prerror.h>
#include <prio.h>
#include <ssl.h>
#include <stdio.h>
#include <string.h>

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

static int
fetch_response(PRFileDesc *fd, int smtp)
{
	const char *req = smtp ? "EHLO client.test\r\n" :
	    "GET / HTTP/1.0\r\n\r\n";
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
		if (n == 0 || len == sizeof(buf) - 1 || (smtp && len > 0 &&
		    buf[len - 1] == '\n'))
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
