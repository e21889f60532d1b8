/*
 * libFuzzer target: detector-monitor's state file (JSON through jansson,
 * then our strict field checks).  A file that parses must hold only what
 * the limits allow.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../detector/monitor/monitor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mon_state st;
	char err[1024];
	size_t i;

	if (history_parse(&st, (const char *)data, size, "fuzz", err,
	    sizeof(err)) == 0) {
		for (i = 0; i < st.n; i++) {
			const struct mon_svc_state *ss = &st.svcs[i];
			if (ss->nkeys > MON_MAX_HISTORY ||
			    ss->npaths > MON_MAX_PATHS ||
			    ss->nalerted > MON_MAX_HISTORY ||
			    ss->port < 1 || ss->port > 65535 ||
			    strlen(ss->host) >= sizeof(ss->host))
				__builtin_trap();
		}
		history_free(&st);
	} else if (err[0] == '\0' || st.svcs != NULL) {
		__builtin_trap();   /* a refusal says why and holds nothing */
	}
	return 0;
}
