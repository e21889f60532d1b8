/*
 * libFuzzer target: configuration files (through libinih, the shared line
 * reader and our handler: config_load_string(), what
 * detector_config_load_file() calls after reading the file), [site NAME]
 * sections and the policy lookup, sphere lists (groups, region names:
 * "europe=127.0.0.1:9162|127.0.0.1:9172") and exclusion rules.
 *
 * Invariants checked beyond "no crash": a refused text leaves the
 * configuration exactly as it was (all or nothing), and an accepted one
 * is internally consistent (quorum within the sphere count, every site's
 * quorum too, every sphere with 1 to SPHERE_MEMBERS_MAX members and a
 * region name of the safe charset and length, or none), and a
 * copy answers policy lookups as the original does.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A sphere's region name: "" or 1-32 of [a-z0-9-], not starting with '-'
 * (it reaches logs and hook environments unquoted). */
static int
name_ok(const char *name)
{
	size_t i, len = strnlen(name, SPHERE_NAME_MAX + 1);

	if (len > SPHERE_NAME_MAX || name[0] == '-')
		return 0;
	for (i = 0; i < len; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		    (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
			return 0;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct detector_config *cfg, *copy;
	struct detector_policy p1, p2;
	unsigned int q, n, i;
	char *text;

	if ((cfg = detector_config_new()) == NULL)
		return 0;
	q = cfg->quorum;
	n = cfg->nspheres;
	if (config_load_string(cfg, (const char *)data, size, "fuzz") == 0) {
		if (cfg->quorum < 1 || cfg->quorum > cfg->nspheres ||
		    cfg->nspheres > DETECTOR_MAX_SPHERES)
			__builtin_trap();
		for (i = 0; i < cfg->nspheres; i++)
			if (cfg->spheres[i].nmembers < 1 ||
			    cfg->spheres[i].nmembers > SPHERE_MEMBERS_MAX ||
			    !name_ok(cfg->spheres[i].name))
				__builtin_trap();
		for (i = 0; i < cfg->nsites; i++)
			if (cfg->sites[i].quorum > cfg->nspheres ||
			    cfg->sites[i].match.n != 1)
				__builtin_trap();
		copy = detector_config_new();
		if (copy != NULL && config_copy(copy, cfg) == 0) {
			static const char *const hosts[] = { "a.example",
			    "www.bank.example", "10.1.2.3", "server.test" };
			for (i = 0; i < 4; i++) {
				detector_config_policy(cfg, hosts[i], &p1);
				detector_config_policy(copy, hosts[i], &p2);
				if (memcmp(&p1, &p2, sizeof(p1)) != 0 ||
				    p1.quorum < 1 || p1.quorum > cfg->nspheres)
					__builtin_trap();
			}
			exclude_clear(&copy->exclude);
		}
		detector_config_free(copy);
	} else if (cfg->quorum != q || cfg->nspheres != n ||
	    cfg->exclude.n != 0 || cfg->nsites != 0 || cfg->err[0] == '\0') {
		__builtin_trap();
	}
	text = malloc(size + 1);
	if (text != NULL) {
		memcpy(text, data, size);
		text[size] = '\0';
		(void)detector_config_set_spheres(cfg, text);
		(void)detector_config_add_exclude(cfg, text);
		(void)exclude_match(&cfg->exclude, text);
		(void)detector_config_policy(cfg, text, &p1);
		free(text);
	}
	detector_config_free(cfg);
	return 0;
}
