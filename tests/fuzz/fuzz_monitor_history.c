/*
 * libFuzzer target: detector-monitor's state file (JSON through jansson,
 * then our strict field checks).  A file that parses must hold only what
 * the limits allow, and a cycle assessed against it (assess(), which
 * trusts the loaded history) must keep within them too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../detector/monitor/monitor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A cycle whose paths and keys come from the input's last bytes. */
static void
cycle(struct mon_svc_state *ss, const uint8_t *data, size_t size)
{
	struct mon_service svc;
	struct mon_observation obs;
	struct mon_assessment a;
	size_t i, n = size ? data[size - 1] % (MON_MAX_PATHS + 1) : 0;

	memset(&svc, 0, sizeof(svc));
	svc.nexpected = 2;
	memset(svc.expected[0], 0xA1, MON_KEY_LEN);
	memset(svc.expected[1], 0xB2, MON_KEY_LEN);
	memset(&obs, 0, sizeof(obs));
	obs.now = 1;
	for (i = 0; i < n && i < size; i++) {
		struct mon_obs_path *p = &obs.paths[obs.npaths++];
		uint8_t b = data[i];
		snprintf(p->via, sizeof(p->via), i ? "127.0.0.1:%u" : "direct",
		    (unsigned int)(b & 7));
		p->direct = i == 0;
		p->ok = (b & 0x30) != 0;
		memset(p->spki, (b & 0x30) == 0x10 ? 0xA1 : (b & 0x30) ==
		    0x20 ? 0xB2 : b, MON_KEY_LEN);
	}
	assess(&svc, (unsigned int)(size % 3), ss, &obs, &a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mon_state st;
	char err[1024];
	size_t i;

	if (history_parse(&st, (const char *)data, size, "fuzz", err,
	    sizeof(err)) == 0) {
		for (i = 0; i < st.n; i++) {
			struct mon_svc_state *ss = &st.svcs[i];
			if (ss->nkeys > MON_MAX_HISTORY ||
			    ss->npaths > MON_MAX_PATHS ||
			    ss->nalerted > MON_MAX_HISTORY ||
			    ss->port < 1 || ss->port > 65535 ||
			    strlen(ss->host) >= sizeof(ss->host))
				__builtin_trap();
			cycle(ss, data, size);
			if (ss->nkeys > MON_MAX_HISTORY ||
			    ss->npaths > MON_MAX_PATHS ||
			    ss->nalerted > MON_MAX_HISTORY)
				__builtin_trap();
		}
		history_free(&st);
	} else if (err[0] == '\0' || st.svcs != NULL) {
		__builtin_trap();   /* a refusal says why and holds nothing */
	}
	return 0;
}
