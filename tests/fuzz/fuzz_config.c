/*
 * libFuzzer target: configuration files (through libinih and our
 * handler), sphere lists and exclusion rules.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct detector_config *cfg;
	char *text;
	FILE *f;

	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/fuzz-config-%ld.conf",
		    (long)getpid());
	if ((f = fopen(path, "wb")) == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	cfg = detector_config_new();
	(void)detector_config_load_file(cfg, path);
	text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	(void)detector_config_set_spheres(cfg, text);
	(void)detector_config_add_exclude(cfg, text);
	(void)exclude_match(&cfg->exclude, text);
	free(text);
	detector_config_free(cfg);
	return 0;
}
