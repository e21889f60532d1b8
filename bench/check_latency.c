/*
 * check_latency - how long detector_check() takes to reach its verdict.
 *
 * usage: check_latency CERT.der HOST PORT SPHERES QUORUM TIMEOUT_MS TRIALS
 *
 * Runs TRIALS checks of HOST:PORT, one after the other, through the
 * SPHERES ("ip:port,...") with the given QUORUM and probe timeout (the
 * overall deadline is the probe timeout plus one second), comparing with
 * the leaf certificate in CERT.der.  Only the public API is used: this is
 * what an application sees.
 *
 * prints per trial:
 *   trial N us WALL verdict NAME spheres VIA=STATUS/MS,...
 * where WALL is the wall-clock time of the detector_check() call in
 * microseconds.  Exit 1 if a check could not be made at all.
 */
#include <nss.h>
#include <ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "detector.h"

static unsigned char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) != NULL &&
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	} else if (buf != NULL)
		*len = (size_t)n;
	fclose(f);
	return buf;
}

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int
main(int argc, char **argv)
{
	struct detector_config *cfg;
	struct detector *ctx;
	struct detector_result *res;
	unsigned char *der;
	size_t der_len = 0, s;
	unsigned int timeout;
	int i, trials, rc = 0;
	double t0, t;

	if (argc != 8 || (trials = atoi(argv[7])) < 1) {
		fprintf(stderr, "usage: check_latency CERT.der HOST PORT "
		    "SPHERES QUORUM TIMEOUT_MS TRIALS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((der = read_file(argv[1], &der_len)) == NULL) {
		fprintf(stderr, "check_latency: cannot read %s\n", argv[1]);
		return 2;
	}
	if (NSS_NoDB_Init(NULL) != SECSuccess ||
	    NSS_SetDomesticPolicy() != SECSuccess) {
		fprintf(stderr, "check_latency: NSS_NoDB_Init failed\n");
		return 2;
	}
	timeout = (unsigned int)atoi(argv[6]);
	cfg = detector_config_new();
	ctx = detector_new();
	if (cfg == NULL || ctx == NULL ||
	    detector_config_set_spheres(cfg, argv[4]) == -1 ||
	    detector_config_set_quorum(cfg, (unsigned int)atoi(argv[5])) ==
	    -1 || detector_config_set_probe_timeout(cfg, timeout) == -1 ||
	    detector_config_set_deadline(cfg, timeout + 1000) == -1) {
		fprintf(stderr, "check_latency: %s\n", cfg ?
		    detector_config_error(cfg) : "out of memory");
		return 2;
	}
	/* Every trial probes: nothing is answered from the verdict memory. */
	detector_config_set_remember(cfg, 0);
	if (detector_configure(ctx, cfg) == -1) {
		fprintf(stderr, "check_latency: %s\n", detector_error(ctx));
		return 2;
	}
	for (i = 0; i < trials; i++) {
		t0 = now_us();
		if (detector_check(ctx, argv[2], (unsigned int)atoi(argv[3]),
		    der, der_len, &res) == -1) {
			fprintf(stderr, "check_latency: %s\n",
			    detector_error(ctx));
			rc = 1;
			break;
		}
		t = now_us() - t0;
		printf("trial %d us %.0f verdict %s spheres", i, t,
		    detector_verdict_name(res->verdict));
		for (s = 0; s < res->nspheres; s++)
			printf("%c%s=%s/%u", s ? ',' : ' ', res->spheres[s].via,
			    detector_path_status_name(res->spheres[s].status),
			    res->spheres[s].ms);
		printf("\n");
		detector_result_free(res);
	}
	detector_free(ctx);
	detector_config_free(cfg);
	free(der);
	NSS_Shutdown();
	return rc;
}
