/*
 * pathcheck - a long-running libdetector client (a gateway, say): one
 * process, one context, detector_fetch() + detector_check_path() for each
 * direct address in turn, through the public API only.
 *
 * usage: pathcheck CONFIG HOST PORT ADDR [ADDR...]
 * CONFIG is a detector.conf (spheres, quorum, cache, timeouts).
 * prints per check one line:
 *   "check ADDR: verdict=V history=H revoked=0|1 backoff=0|1 staple=N
 *    ms=N" and "reason: ..."
 * exit 0 once every check ran, 2 on usage, 1 on an error (said on stderr).
 */
#include <nss.h>
#include <stdio.h>
#include <stdlib.h>

#include "detector.h"

int
main(int argc, char **argv)
{
	struct detector_config *cfg;
	struct detector *ctx;
	int i;

	if (argc < 5) {
		fprintf(stderr, "usage: pathcheck CONFIG HOST PORT ADDR "
		    "[ADDR...]\n");
		return 2;
	}
	if (NSS_NoDB_Init(NULL) != SECSuccess)
		return 1;
	if ((cfg = detector_config_new()) == NULL ||
	    detector_config_load_file(cfg, argv[1]) == -1) {
		fprintf(stderr, "pathcheck: %s\n", cfg ?
		    detector_config_error(cfg) : "out of memory");
		return 1;
	}
	if ((ctx = detector_new()) == NULL || detector_configure(ctx, cfg)) {
		fprintf(stderr, "pathcheck: %s\n", ctx ? detector_error(ctx) :
		    "out of memory");
		return 1;
	}
	for (i = 4; i < argc; i++) {
		struct detector_path *p = NULL;
		struct detector_result *r = NULL;
		unsigned int port = (unsigned int)atoi(argv[3]);

		if (detector_fetch(ctx, argv[2], port, argv[i], &p) == -1 ||
		    p->status != DETECTOR_PATH_SEEN ||
		    detector_check_path(ctx, argv[2], port, p, &r) == -1) {
			fprintf(stderr, "pathcheck: %s: %s\n", argv[i],
			    p != NULL && p->error ? p->error :
			    detector_error(ctx));
			return 1;
		}
		printf("check %s: verdict=%s history=%s revoked=%d backoff=%d "
		    "staple=%zu ms=%u\nreason: %s\n", argv[i],
		    detector_verdict_name(r->verdict),
		    detector_history_name(r->history), r->revoked,
		    r->backoff_until != 0, p->ocsp.len, r->ms, r->reason);
		fflush(stdout);
		detector_result_free(r);
		detector_path_free(p);
	}
	detector_free(ctx);
	detector_config_free(cfg);
	NSS_Shutdown();
	return 0;
}
