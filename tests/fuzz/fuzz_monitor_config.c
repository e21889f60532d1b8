/*
 * libFuzzer target: detector-monitor's configuration file (through libinih
 * and our line-counting reader and handlers), SPKI pins and PEM text.
 * Relative pem paths resolve under a folder that does not exist.
 */
#include <nss.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../detector/monitor/monitor.h"
#include "certinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int nss_up;
	struct mon_config mc;
	unsigned char pin[MON_KEY_LEN], spki[32], cert[32], *der;
	size_t der_len;
	char err[256], *text;
	FILE *f;

	if (!nss_up) {
		if (NSS_NoDB_Init(NULL) != SECSuccess)
			abort();
		nss_up = 1;
	}
	if ((f = fmemopen((void *)data, size, "r")) != NULL) {
		if (mconfig_parse(&mc, f, "/nonexistent-fuzz/monitor.conf") ==
		    0 && mc.nservices == 0)
			__builtin_trap();   /* a valid file watches something */
		mconfig_free(&mc);
		fclose(f);
	}
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	(void)mconfig_parse_pin(text, pin);
	if (mconfig_pem_first_cert(text, size, &der, &der_len, err,
	    sizeof(err)) == 0) {
		(void)detector_cert_hashes(der, der_len, spki, cert, err, sizeof(err));
		free(der);
	}
	free(text);
	return 0;
}
