/*
 * assess.c - one cycle of one service: what every path saw, against the
 * keys the operator deployed and against the service's own history.
 *
 * Status (the Nagios convention):
 *   CRITICAL  a path saw a key outside the expected set
 *   WARNING   a path is down, no path saw any key, or an expected key
 *             came back after another expected key had replaced it
 *   OK        every path saw an expected key
 *
 * Events, each raised once per change, never on every cycle:
 *   unexpected-key     a key outside the set, not alerted since the last
 *                      recovery (a second rogue key is a second event)
 *   recovered          after unexpected keys: a cycle where paths saw an
 *                      expected key and none saw another
 *   suspicious-return  an expected key seen again after another expected
 *                      key had replaced it (Perspectives' "Lserver"
 *                      reasoning: an old key reappearing is a sign of foul
 *                      play, e.g. a stolen old key, or a rollback); once
 *                      per key
 *   sphere-down/-up, direct-down/-up  a path failed down_after cycles in a
 *                      row (the first cycle counts: a sphere that never
 *                      answered is reported, not skipped) / answers again
 *
 * Pure: no I/O, no clock; main.c probes, alert.c and report.c tell.
 */
#include "monitor.h"

#include <stdio.h>
#include <string.h>

static const char *const event_names[MON_EV_COUNT] = {
	"unexpected-key", "recovered", "suspicious-return", "sphere-down",
	"sphere-up", "direct-down", "direct-up", "heartbeat",
};

const char *
mon_event_name(enum mon_event_type ev)
{
	return ev < MON_EV_COUNT ? event_names[ev] : "?";
}

const char *
mon_status_name(enum mon_status st)
{
	switch (st) {
	case MON_OK: return "OK";
	case MON_WARNING: return "WARNING";
	case MON_CRITICAL: return "CRITICAL";
	default: return "UNKNOWN";
	}
}

/* Whether k is one of the n keys of keys[]. */
static int
has_key(const unsigned char (*keys)[MON_KEY_LEN], size_t n,
    const unsigned char *k)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (memcmp(keys[i], k, MON_KEY_LEN) == 0)
			return 1;
	return 0;
}

static int
in_list(const struct mon_keylist *l, const unsigned char *k)
{
	return has_key(l->k, l->n, k);
}

static void
add_list(struct mon_keylist *l, const unsigned char *k)
{
	if (!in_list(l, k) && l->n < MON_MAX_PATHS)
		memcpy(l->k[l->n++], k, MON_KEY_LEN);
}

static int
is_expected(const struct mon_service *svc, const unsigned char *k)
{
	return has_key(svc->expected, svc->nexpected, k);
}

static int
was_alerted(const struct mon_svc_state *ss, const unsigned char *k)
{
	return has_key(ss->alerted, ss->nalerted, k);
}

/* The path's remembered state, added (mode unknown) if new. */
static struct mon_path_state *
path_state(struct mon_svc_state *ss, const char *via)
{
	size_t i;

	for (i = 0; i < ss->npaths; i++)
		if (strcmp(ss->paths[i].via, via) == 0)
			return &ss->paths[i];
	if (ss->npaths == MON_MAX_PATHS)
		return NULL;
	memset(&ss->paths[ss->npaths], 0, sizeof(ss->paths[0]));
	strncpy(ss->paths[ss->npaths].via, via,
	    sizeof(ss->paths[0].via) - 1);
	return &ss->paths[ss->npaths++];
}

/* Paths no longer probed (a sphere taken out of the list) are forgotten. */
static void
prune_paths(struct mon_svc_state *ss, const struct mon_observation *obs)
{
	size_t i, j, n = 0;

	for (i = 0; i < ss->npaths; i++) {
		for (j = 0; j < obs->npaths; j++)
			if (strcmp(ss->paths[i].via, obs->paths[j].via) == 0)
				break;
		if (j < obs->npaths)
			ss->paths[n++] = ss->paths[i];
	}
	ss->npaths = n;
}

/* Records a key seen now; when the history is full, the key seen least
 * recently makes room. */
static void
remember_key(struct mon_svc_state *ss, const unsigned char *k, int64_t now,
    int64_t seq)
{
	struct mon_key_hist *h = history_key(ss, k);
	size_t i, old = 0;

	if (h == NULL) {
		if (ss->nkeys == MON_MAX_HISTORY) {
			for (i = 1; i < ss->nkeys; i++)
				if (ss->keys[i].last_seq <
				    ss->keys[old].last_seq)
					old = i;
			h = &ss->keys[old];
		} else {
			h = &ss->keys[ss->nkeys++];
		}
		memset(h, 0, sizeof(*h));
		memcpy(h->spki, k, MON_KEY_LEN);
		h->first_seen = now;
	}
	h->last_seen = now;
	h->last_seq = seq;
}

/* An expected key seen now that was absent from the last cycle with data,
 * while another expected key was seen after it. */
static int
returns(const struct mon_service *svc, const struct mon_svc_state *ss,
    const unsigned char *k)
{
	const struct mon_key_hist *h = NULL;
	size_t i;

	for (i = 0; i < ss->nkeys; i++)
		if (memcmp(ss->keys[i].spki, k, MON_KEY_LEN) == 0)
			h = &ss->keys[i];
	if (h == NULL || h->returned || h->last_seq >= ss->seq)
		return 0;
	for (i = 0; i < ss->nkeys; i++) {
		const struct mon_key_hist *o = &ss->keys[i];
		if (o != h && o->last_seq > h->last_seq &&
		    is_expected(svc, o->spki))
			return 1;
	}
	return 0;
}

void
assess(const struct mon_service *svc, unsigned int down_after,
    struct mon_svc_state *ss, struct mon_observation *obs,
    struct mon_assessment *a)
{
	size_t i;
	int expected_seen = 0;

	memset(a, 0, sizeof(*a));
	if (down_after < 1)
		down_after = 1;
	for (i = 0; i < obs->npaths; i++) {
		struct mon_obs_path *p = &obs->paths[i];

		if (!p->ok) {
			a->paths_down++;
			if (!p->direct)
				a->spheres_down++;
			continue;
		}
		a->paths_ok++;
		if (!p->direct)
			a->spheres_ok++;
		add_list(&a->seen, p->spki);
		p->expected = is_expected(svc, p->spki);
		if (p->expected)
			expected_seen = 1;
		else
			add_list(&a->unexpected, p->spki);
	}

	/* Unexpected keys: alert those not alerted since the last recovery. */
	for (i = 0; i < a->unexpected.n; i++) {
		const unsigned char *k = a->unexpected.k[i];
		if (was_alerted(ss, k))
			continue;
		add_list(&a->new_unexpected, k);
		if (history_key(ss, k) != NULL)
			add_list(&a->returning, k);
		if (ss->nalerted < MON_MAX_HISTORY)
			memcpy(ss->alerted[ss->nalerted++], k, MON_KEY_LEN);
	}
	if (a->new_unexpected.n > 0)
		a->events[MON_EV_UNEXPECTED_KEY] = 1;
	if (a->unexpected.n == 0 && expected_seen && ss->nalerted > 0) {
		a->events[MON_EV_RECOVERED] = 1;
		ss->nalerted = 0;
	}

	/* Expected keys coming back after a replacement. */
	if (a->seen.n > 0) {
		for (i = 0; i < a->seen.n; i++) {
			const unsigned char *k = a->seen.k[i];
			if (is_expected(svc, k) && returns(svc, ss, k)) {
				add_list(&a->suspicious, k);
				history_key(ss, k)->returned = 1;
			}
		}
		if (a->suspicious.n > 0)
			a->events[MON_EV_SUSPICIOUS_RETURN] = 1;
		ss->seq++;
		for (i = 0; i < a->seen.n; i++)
			remember_key(ss, a->seen.k[i], obs->now, ss->seq);
		ss->last_data = obs->now;
	}

	/* Paths going down and coming back. */
	prune_paths(ss, obs);
	for (i = 0; i < obs->npaths; i++) {
		struct mon_obs_path *p = &obs->paths[i];
		struct mon_path_state *ps = path_state(ss, p->via);

		if (ps == NULL)
			continue;
		if (p->ok) {
			ps->fails = 0;
			if (ps->mode == MON_PATH_DOWN) {
				a->came_up[a->ncame_up++] = i;
				a->events[p->direct ? MON_EV_DIRECT_UP :
				    MON_EV_SPHERE_UP] = 1;
			}
			ps->mode = MON_PATH_UP;
		} else {
			ps->fails++;
			if (ps->mode != MON_PATH_DOWN &&
			    ps->fails >= down_after) {
				a->went_down[a->nwent_down++] = i;
				a->events[p->direct ? MON_EV_DIRECT_DOWN :
				    MON_EV_SPHERE_DOWN] = 1;
				ps->mode = MON_PATH_DOWN;
			}
		}
	}

	assess_locality(obs, a);
	if (a->unexpected.n > 0) {
		a->status = MON_CRITICAL;
		a->why = "unexpected key";
	} else if (a->paths_ok == 0) {
		a->status = MON_WARNING;
		a->why = "no path reached the service";
	} else if (a->paths_down > 0) {
		a->status = MON_WARNING;
		a->why = "paths down";
	} else if (a->suspicious.n > 0) {
		a->status = MON_WARNING;
		a->why = "an old key is back";
	} else {
		a->status = MON_OK;
		a->why = "";
	}
}

/* Appends the spheres that answered and saw (un)expected keys as "a, b
 * and c", each by region where it has one: "europe (127.0.0.1:9162)". */
static size_t
name_spheres(const struct mon_observation *obs, int expected, char *buf,
    size_t size)
{
	size_t i, count = 0, said = 0, len;

	for (i = 0; i < obs->npaths; i++)
		count += !obs->paths[i].direct && obs->paths[i].ok &&
		    obs->paths[i].expected == expected;
	for (i = 0; i < obs->npaths; i++) {
		const struct mon_obs_path *p = &obs->paths[i];

		if (p->direct || !p->ok || p->expected != expected)
			continue;
		said++;
		len = strlen(buf);
		snprintf(buf + len, size - len, "%s%s%s%s%s", said == 1 ? "" :
		    said == count ? " and " : ", ", p->region, p->region[0] ?
		    " (" : "", p->via, p->region[0] ? ")" : "");
	}
	return count;
}

void
assess_locality(const struct mon_observation *obs, struct mon_assessment *a)
{
	const struct mon_obs_path *direct = NULL;
	char bad[512] = "", good[512] = "";
	size_t i, nbad, ngood;

	for (i = 0; i < obs->npaths; i++)
		if (obs->paths[i].direct)
			direct = &obs->paths[i];
	nbad = name_spheres(obs, 0, bad, sizeof(bad));
	ngood = name_spheres(obs, 1, good, sizeof(good));
	if (nbad == 0 && ngood == 0) {
		a->locality = DETECTOR_LOCALITY_UNKNOWN;
		snprintf(a->where, sizeof(a->where), "no sphere reached the "
		    "service%s: where a key would be intercepted cannot be "
		    "told", direct && direct->ok ? " (only the direct path "
		    "did)" : "");
	} else if (nbad == 0 && direct != NULL && direct->ok &&
	    !direct->expected) {
		a->locality = DETECTOR_LOCALITY_LOCAL_PATH;
		snprintf(a->where, sizeof(a->where), "only the direct path "
		    "sees a key you did not deploy; the %zu sphere%s that "
		    "answered see%s a deployed key: the monitor's own network "
		    "path intercepts (next to the server: its LAN, its hosting "
		    "network or this host), so clients near the server are "
		    "attacked, the rest of the world is not", ngood,
		    ngood == 1 ? "" : "s", ngood == 1 ? "s" : "");
	} else if (nbad == 0) {
		a->locality = DETECTOR_LOCALITY_CONSISTENT;
		snprintf(a->where, sizeof(a->where), "every path that "
		    "answered sees a deployed key (%zu sphere%s%s)", ngood,
		    ngood == 1 ? "" : "s", direct && direct->ok ?
		    " and the direct path" : "");
	} else if (ngood > 0) {
		a->locality = DETECTOR_LOCALITY_REGIONAL;
		snprintf(a->where, sizeof(a->where), "%s see%s a key you did "
		    "not deploy, %s a deployed one: an interceptor on those "
		    "regions' paths (or a DNS hijack seen only there), not at "
		    "the server", bad, nbad == 1 ? "s" : "", good);
	} else {
		a->locality = DETECTOR_LOCALITY_SERVER_OR_GLOBAL;
		if (direct != NULL && direct->ok && direct->expected)
			snprintf(a->where, sizeof(a->where), "every sphere "
			    "that answered (%zu) sees a key you did not "
			    "deploy while the direct path sees a deployed "
			    "one: the world is sent elsewhere, by a global DNS "
			    "hijack of the name or an attacker on the "
			    "server's upstream network (hosting provider, "
			    "transit)", nbad);
		else if (direct != NULL && direct->ok)
			snprintf(a->where, sizeof(a->where), "every path, the "
			    "direct one and %zu sphere%s, sees a key you did "
			    "not deploy: the server itself (or the network "
			    "right in front of it) serves it: a compromise, "
			    "or a key deployed without being listed as a pin "
			    "or pem", nbad, nbad == 1 ? "" : "s");
		else
			snprintf(a->where, sizeof(a->where), "every sphere "
			    "that answered (%zu) sees a key you did not deploy "
			    "and there is no direct path to compare with: the "
			    "server itself serves it, or a global DNS hijack "
			    "sends the world elsewhere", nbad);
	}
}
