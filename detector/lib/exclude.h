/*
 * exclude.h - hosts never probed: domain suffixes and CIDR ranges.
 */
#ifndef DETECTOR_EXCLUDE_H
#define DETECTOR_EXCLUDE_H

#include <stddef.h>

#define EXCLUDE_RULE_MAX 256

struct exclude_rule {
	char text[EXCLUDE_RULE_MAX];    /* as written, lower-cased */
	int family;                     /* 0: domain suffix; AF_INET/AF_INET6 */
	unsigned char net[16];
	unsigned int prefix;
};

struct exclude_list {
	struct exclude_rule *rules;
	size_t n;
};

/* Adds every comma/space separated rule of spec; all or nothing. */
int exclude_add(struct exclude_list *l, const char *spec, char *err,
    size_t errlen);
/* The matching rule's text, or NULL. */
const char *exclude_match(const struct exclude_list *l, const char *host);
void exclude_clear(struct exclude_list *l);
int exclude_copy(struct exclude_list *dst, const struct exclude_list *src);

#endif
