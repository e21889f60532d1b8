/*
 * libFuzzer target: configuration files (through libinih, our line
 * reader and handler: config_load_string(), what detector_config_load_file()
 * calls after reading the file), sphere lists and exclusion rules.
 *
 * Invariants checked beyond "no crash": a refused text leaves the
 * configuration exactly as it was (all or nothing), and an accepted one
 * is internally consistent (quorum within the sphere count).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct detector_config *cfg;
	unsigned int q, n;
	char *text;

	if ((cfg = detector_config_new()) == NULL)
		return 0;
	q = cfg->quorum;
	n = cfg->nspheres;
	if (config_load_string(cfg, (const char *)data, size, "fuzz") == 0) {
		if (cfg->quorum < 1 || cfg->quorum > cfg->nspheres ||
		    cfg->nspheres > DETECTOR_MAX_SPHERES)
			__builtin_trap();
	} else if (cfg->quorum != q || cfg->nspheres != n ||
	    cfg->exclude.n != 0 || cfg->err[0] == '\0') {
		__builtin_trap();
	}
	text = malloc(size + 1);
	if (text != NULL) {
		memcpy(text, data, size);
		text[size] = '\0';
		(void)detector_config_set_spheres(cfg, text);
		(void)detector_config_add_exclude(cfg, text);
		(void)exclude_match(&cfg->exclude, text);
		free(text);
	}
	detector_config_free(cfg);
	return 0;
}
