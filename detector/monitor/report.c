/*
 * report.c - one cycle for machines and for monitoring systems: the
 * Nagios/Icinga plugin status line (one line, performance data after '|',
 * one line per service after it) and a JSON object.
 */
#include "monitor.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum mon_status
report_status(const struct mon_cycle_service *cs, size_t n, int all)
{
	enum mon_status st = MON_OK;
	size_t i;

	for (i = 0; i < n; i++)
		if ((all ? cs[i].assessed : cs[i].probed) &&
		    cs[i].a.status > st)
			st = cs[i].a.status;
	return st;
}

/* Spheres that answered for every service / failed for at least one. */
static void
sphere_counts(const struct mon_cycle_service *cs, size_t n,
    unsigned int *ok, unsigned int *down)
{
	const char *vias[MON_MAX_PATHS];
	int bad[MON_MAX_PATHS];
	size_t nv = 0, i, j, k;

	for (i = 0; i < n; i++) {
		if (!cs[i].probed)
			continue;
		for (j = 0; j < cs[i].obs.npaths; j++) {
			const struct mon_obs_path *p = &cs[i].obs.paths[j];
			if (p->direct)
				continue;
			for (k = 0; k < nv; k++)
				if (strcmp(vias[k], p->via) == 0)
					break;
			if (k == nv) {
				if (nv == MON_MAX_PATHS)
					continue;
				vias[nv] = p->via;
				bad[nv++] = 0;
			}
			bad[k] |= !p->ok;
		}
	}
	*ok = *down = 0;
	for (k = 0; k < nv; k++) {
		if (bad[k])
			(*down)++;
		else
			(*ok)++;
	}
}

/* "web: unexpected key 51c3de6a0b9f7e21 seen by 6 of 6 paths" */
static void
service_text(const struct mon_cycle_service *cs, char *buf, size_t size)
{
	const struct mon_assessment *a = &cs->a;
	char hex[2 * MON_KEY_LEN + 1];
	size_t i, by = 0;

	switch (a->status) {
	case MON_CRITICAL:
		for (i = 0; i < cs->obs.npaths; i++)
			by += cs->obs.paths[i].ok && !cs->obs.paths[i].expected;
		cli_hex(a->unexpected.k[0], MON_KEY_LEN, hex);
		snprintf(buf, size, "%s: unexpected key %.16s%s seen by %zu "
		    "of %zu paths (%s)", cs->svc->name, hex,
		    a->unexpected.n > 1 ? " (and others)" : "", by,
		    cs->obs.npaths, detector_locality_name(a->locality));
		break;
	case MON_WARNING:
		if (a->paths_ok == 0)
			snprintf(buf, size, "%s: no path reached the service",
			    cs->svc->name);
		else if (a->paths_down > 0)
			snprintf(buf, size, "%s: %u of %zu paths down",
			    cs->svc->name, a->paths_down, cs->obs.npaths);
		else {
			cli_hex(a->suspicious.k[0], MON_KEY_LEN, hex);
			snprintf(buf, size, "%s: old key %.16s is back after "
			    "another key replaced it", cs->svc->name, hex);
		}
		break;
	default:
		snprintf(buf, size, "%s: OK", cs->svc->name);
		break;
	}
}

/* The same without the leading "NAME: ". */
static const char *
service_detail(const struct mon_cycle_service *cs, char *buf, size_t size)
{
	size_t len = strlen(cs->svc->name);

	service_text(cs, buf, size);
	return strlen(buf) > len + 2 ? buf + len + 2 : buf;
}

void
report_summary(char *buf, size_t size, const struct mon_cycle_service *cs,
    size_t n, int all)
{
	size_t i, len, probed = 0, bad = 0;
	char one[512];

	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (!(all ? cs[i].assessed : cs[i].probed))
			continue;
		probed++;
		if (cs[i].a.status == MON_OK)
			continue;
		service_text(&cs[i], one, sizeof(one));
		len = strlen(buf);
		snprintf(buf + len, size - len, "%s%s", bad++ ? "; " : "",
		    one);
	}
	if (bad == 0)
		snprintf(buf, size, "%zu service%s, every path sees an expected "
		    "key", probed, probed == 1 ? "" : "s");
}

void
report_nagios(FILE *out, const struct mon_cycle_service *cs, size_t n,
    unsigned int ms)
{
	unsigned int sok, sdown, count[4] = { 0, 0, 0, 0 };
	char summary[2048], one[512], hex[2 * MON_KEY_LEN + 1];
	char target[MON_HOST_MAX + 32];
	enum mon_status st = report_status(cs, n, 0);
	size_t i, j;

	sphere_counts(cs, n, &sok, &sdown);
	for (i = 0; i < n; i++)
		if (cs[i].probed)
			count[cs[i].a.status]++;
	report_summary(summary, sizeof(summary), cs, n, 0);
	fprintf(out, "DETECTOR-MONITOR %s - %s | services=%u ok=%u warning=%u "
	    "critical=%u spheres_ok=%u spheres_down=%u time=%.3fs\n",
	    mon_status_name(st), summary, count[0] + count[1] + count[2],
	    count[0], count[1], count[2], sok, sdown, ms / 1000.0);
	for (i = 0; i < n; i++) {
		if (!cs[i].probed)
			continue;
		mconfig_target(cs[i].svc, target, sizeof(target));
		fprintf(out, "%s %s %s: %s\n",
		    mon_status_name(cs[i].a.status), cs[i].svc->name, target,
		    service_detail(&cs[i], one, sizeof(one)));
		if (cs[i].a.unexpected.n > 0)
			fprintf(out, "  where: %s: %s\n",
			    detector_locality_name(cs[i].a.locality),
			    cs[i].a.where);
		for (j = 0; j < cs[i].obs.npaths; j++) {
			const struct mon_obs_path *p = &cs[i].obs.paths[j];
			char label[2 * MON_VIA_MAX + 4];

			report_path_label(p, label, sizeof(label));
			if (p->ok) {
				cli_hex(p->spki, MON_KEY_LEN, hex);
				fprintf(out, "  %-24s %-10s %.16s\n", label,
				    p->expected ? "expected" : "UNEXPECTED",
				    hex);
			} else {
				fprintf(out, "  %-24s %-10s %s\n", label,
				    "down", p->error ? p->error :
				    "no certificate");
			}
		}
	}
}

static json_t *
key_json(int have, const unsigned char *k)
{
	char hex[2 * MON_KEY_LEN + 1];

	if (!have)
		return json_null();
	cli_hex(k, MON_KEY_LEN, hex);
	return json_string(hex);
}

static json_t *
service_json(const struct mon_cycle_service *cs)
{
	const struct mon_service *s = cs->svc;
	json_t *expected = json_array(), *paths = json_array();
	json_t *events = json_array();
	char text[512];
	size_t i;
	int ev;

	for (i = 0; i < s->nexpected; i++)
		json_array_append_new(expected, key_json(1, s->expected[i]));
	for (ev = 0; ev < MON_EV_COUNT; ev++)
		if (cs->a.events[ev])
			json_array_append_new(events,
			    json_string(mon_event_name(ev)));
	for (i = 0; i < cs->obs.npaths; i++) {
		const struct mon_obs_path *p = &cs->obs.paths[i];
		json_array_append_new(paths, json_pack(
		    "{s:s, s:o, s:s, s:o, s:o, s:o, s:I}",
		    "via", p->via,
		    "region", p->region[0] ? json_string(p->region) :
		    json_null(),
		    "status", !p->ok ? "down" : p->expected ? "expected" :
		    "unexpected",
		    "spki_sha256", key_json(p->ok, p->spki),
		    "cert_sha256", key_json(p->ok, p->cert),
		    "error", !p->ok && p->error ? json_string(p->error) :
		    json_null(),
		    "ms", (json_int_t)p->ms));
	}
	service_text(cs, text, sizeof(text));
	return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:o, s:o, "
	    "s:o, s:I, s:I, s:s, s:s}",
	    "name", s->name, "host", s->host, "port",
	    (json_int_t)mconfig_port(s), "protocol",
	    mconfig_proto_name(s->proto), "status",
	    mon_status_name(cs->a.status), "summary", text,
	    "expected", expected, "events", events, "paths", paths,
	    "report", cs->report[0] ? json_string(cs->report) : json_null(),
	    "spheres_ok", (json_int_t)cs->a.spheres_ok,
	    "spheres_down", (json_int_t)cs->a.spheres_down,
	    "locality", detector_locality_name(cs->a.locality),
	    "locality_detail", cs->a.where);
}

int
report_json(FILE *out, const struct mon_cycle_service *cs, size_t n,
    unsigned int ms, int64_t now)
{
	enum mon_status st = report_status(cs, n, 0);
	json_t *root, *svcs = json_array();
	unsigned int sok, sdown;
	char when[32], summary[2048];
	time_t tt = (time_t)now;
	struct tm tm;
	char *text;
	size_t i;

	gmtime_r(&tt, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	sphere_counts(cs, n, &sok, &sdown);
	report_summary(summary, sizeof(summary), cs, n, 0);
	for (i = 0; i < n; i++)
		if (cs[i].probed)
			json_array_append_new(svcs, service_json(&cs[i]));
	root = json_pack("{s:s, s:s, s:i, s:s, s:I, s:I, s:I, s:o}",
	    "time", when, "status", mon_status_name(st), "exit", (int)st,
	    "summary", summary, "spheres_ok", (json_int_t)sok,
	    "spheres_down", (json_int_t)sdown, "ms", (json_int_t)ms,
	    "services", svcs);
	if (root == NULL)
		return -1;
	text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
	json_decref(root);
	if (text == NULL)
		return -1;
	fprintf(out, "%s\n", text);
	fflush(out);
	free(text);
	return 0;
}

void
report_path_label(const struct mon_obs_path *p, char *buf, size_t size)
{
	if (p->region[0] != '\0')
		snprintf(buf, size, "%s (%s)", p->region, p->via);
	else
		snprintf(buf, size, "%s", p->via);
}
