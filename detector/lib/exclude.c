/*
 * exclude.c - hosts never probed.
 *
 * Intranet names cannot be reached from Tor exits, and probing them would
 * leak internal names to the Tor network: such hosts are excluded by domain
 * suffix ("corp.example" matches corp.example and *.corp.example, never
 * "evilcorp.example") or, for IP-literal hosts, by CIDR range.
 */
#include "exclude.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Strips [brackets] from an IPv6 literal into out; returns out. */
static const char *
unbracket(const char *host, char *out, size_t size)
{
	size_t n = strlen(host);

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < size) {
		memcpy(out, host + 1, n - 2);
		out[n - 2] = '\0';
		return out;
	}
	return host;
}

/*
 * A CIDR prefix length: plain decimal digits, no sign, no white space, no
 * leading zero (strtoul would take "-0", "+8" and " 8"), at most max.
 */
static int
parse_prefix(const char *s, unsigned int max, unsigned int *out)
{
	unsigned int v = 0;
	size_t i;

	if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
		return -1;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 3)
			return -1;
		v = v * 10 + (unsigned int)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

static int
parse_rule(const char *tok, struct exclude_rule *r, char *err, size_t errlen)
{
	char buf[EXCLUDE_RULE_MAX];
	const char *slash;
	size_t i, n = strlen(tok);

	memset(r, 0, sizeof(*r));
	if (n == 0 || n >= sizeof(r->text)) {
		snprintf(err, errlen, "exclude rule '%.64s' is empty or "
		    "longer than %d characters", tok, EXCLUDE_RULE_MAX - 1);
		return -1;
	}
	for (i = 0; i < n; i++)
		r->text[i] = (char)tolower((unsigned char)tok[i]);
	if ((slash = strchr(r->text, '/')) != NULL) {
		unsigned int max;
		size_t alen = (size_t)(slash - r->text);

		memcpy(buf, r->text, alen);
		buf[alen] = '\0';
		if (inet_pton(AF_INET, buf, r->net) == 1)
			r->family = AF_INET;
		else if (inet_pton(AF_INET6, buf, r->net) == 1)
			r->family = AF_INET6;
		else {
			snprintf(err, errlen, "exclude rule '%s': '%s' is not "
			    "an IPv4 or IPv6 address", r->text, buf);
			return -1;
		}
		max = r->family == AF_INET ? 32u : 128u;
		if (parse_prefix(slash + 1, max, &r->prefix) == -1) {
			snprintf(err, errlen, "exclude rule '%s': bad prefix "
			    "length (a decimal number from 0 to %u)", r->text,
			    max);
			return -1;
		}
		return 0;
	}
	if (inet_pton(AF_INET, r->text, r->net) == 1) {
		r->family = AF_INET;
		r->prefix = 32;
		return 0;
	}
	if (inet_pton(AF_INET6, unbracket(r->text, buf, sizeof(buf)),
	    r->net) == 1) {
		r->family = AF_INET6;
		r->prefix = 128;
		return 0;
	}
	/* A domain suffix: letters, digits, '-', '.', '_'; a leading "." or
	 * "*." is accepted and dropped. */
	if (strncmp(r->text, "*.", 2) == 0)
		memmove(r->text, r->text + 2, strlen(r->text + 2) + 1);
	else if (r->text[0] == '.')
		memmove(r->text, r->text + 1, strlen(r->text + 1) + 1);
	n = strlen(r->text);
	if (n > 0 && r->text[n - 1] == '.')
		r->text[--n] = '\0';
	if (n == 0) {
		snprintf(err, errlen, "exclude rule '%s' names no domain", tok);
		return -1;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)r->text[i];
		if (!isalnum(c) && c != '-' && c != '.' && c != '_') {
			snprintf(err, errlen, "exclude rule '%s': character "
			    "'%c' is not allowed in a domain name", tok, c);
			return -1;
		}
	}
	return 0;
}

int
exclude_add(struct exclude_list *l, const char *spec, char *err,
    size_t errlen)
{
	char tok[EXCLUDE_RULE_MAX + 1];
	const char *p = spec;
	size_t added = 0, cap = l->n;
	struct exclude_rule *rules = NULL;

	while (*p) {
		size_t n = strcspn(p, ", \t");
		struct exclude_rule *grown;

		if (n == 0) {
			p++;
			continue;
		}
		if (n > EXCLUDE_RULE_MAX) {
			snprintf(err, errlen, "exclude rule '%.64s...' is "
			    "longer than %d characters", p,
			    EXCLUDE_RULE_MAX - 1);
			free(rules);
			return -1;
		}
		memcpy(tok, p, n);
		tok[n] = '\0';
		p += n;
		grown = realloc(rules, (cap + added + 1) * sizeof(*rules));
		if (grown == NULL) {
			snprintf(err, errlen, "out of memory");
			free(rules);
			return -1;
		}
		rules = grown;
		if (added == 0 && l->n > 0)
			memcpy(rules, l->rules, l->n * sizeof(*rules));
		if (parse_rule(tok, &rules[cap + added], err, errlen) == -1) {
			free(rules);
			return -1;
		}
		added++;
	}
	if (added == 0)
		return 0;
	free(l->rules);
	l->rules = rules;
	l->n = cap + added;
	return 0;
}

static int
cidr_match(const struct exclude_rule *r, const unsigned char *addr)
{
	unsigned int full = r->prefix / 8, rest = r->prefix % 8;

	if (memcmp(r->net, addr, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((r->net[full] ^ addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

const char *
exclude_match(const struct exclude_list *l, const char *host)
{
	char name[256], buf[64];
	unsigned char a4[4], a6[16];
	int family = 0;
	size_t i, n = strlen(host);

	if (l->n == 0 || n == 0 || n >= sizeof(name))
		return NULL;
	if (inet_pton(AF_INET, host, a4) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, unbracket(host, buf, sizeof(buf)),
	    a6) == 1)
		family = AF_INET6;
	for (i = 0; i < n; i++)
		name[i] = (char)tolower((unsigned char)host[i]);
	name[n] = '\0';
	if (n > 1 && name[n - 1] == '.')
		name[--n] = '\0';
	for (i = 0; i < l->n; i++) {
		const struct exclude_rule *r = &l->rules[i];

		if (r->family != 0) {
			if (r->family == family &&
			    cidr_match(r, family == AF_INET ? a4 : a6))
				return r->text;
			continue;
		}
		if (family != 0)
			continue;
		size_t rl = strlen(r->text);
		if (n == rl && strcmp(name, r->text) == 0)
			return r->text;
		if (n > rl && name[n - rl - 1] == '.' &&
		    strcmp(name + n - rl, r->text) == 0)
			return r->text;
	}
	return NULL;
}

void
exclude_clear(struct exclude_list *l)
{
	free(l->rules);
	l->rules = NULL;
	l->n = 0;
}

int
exclude_copy(struct exclude_list *dst, const struct exclude_list *src)
{
	dst->rules = NULL;
	dst->n = 0;
	if (src->n == 0)
		return 0;
	dst->rules = malloc(src->n * sizeof(*src->rules));
	if (dst->rules == NULL)
		return -1;
	memcpy(dst->rules, src->rules, src->n * sizeof(*src->rules));
	dst->n = src->n;
	return 0;
}
