/*
 * alert.c - telling someone: a report file with the certificates, a line
 * on stdout (or stderr) and in syslog, and every executable in the hooks
 * folder, run once per event with the event in its environment (as
 * certspotter's hooks).
 *
 * Hooks are run with execve(2): never through a shell, so nothing a server
 * sends (a certificate, an error text) can become a command.  Each runs in
 * its own process group with stdin from /dev/null and stdout on our
 * stderr (stdout may carry --json), and is killed, group and all, when it
 * outlives hook_timeout.
 *
 * A hook runs with the monitor's rights (root, as a service), so the folder
 * and each hook must pass filetrust.h's rules: not a symlink, ours or
 * root's, writable by nobody else.  A hook that fails them is not run and
 * the refusal is logged (stderr, syslog) every time, never skipped in
 * silence.  The checks are made on descriptors (the folder opened with
 * O_PATH|O_NOFOLLOW, each hook opened relative to it with O_NOFOLLOW and
 * fstat'd) and the hook is executed through that same descriptor
 * (fexecve), so what runs is exactly what was checked, whatever is renamed
 * in between.
 */
#include "monitor.h"

#include <cert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <plbase64.h>
#include <prmem.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>


extern char **environ;

#define LIST_MAX 4096

void
mon_log(const struct mon_config *mc, int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "detector-monitor: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (mc != NULL && mc->syslog) {
		va_start(ap, fmt);
		vsyslog(prio, fmt, ap);
		va_end(ap);
	}
}

/* Appends to a space separated list in buf. */
static void
list_add(char *buf, size_t size, const char *item)
{
	size_t len = strlen(buf);

	snprintf(buf + len, size - len, "%s%s", len ? " " : "", item);
}

static void
keys_text(const unsigned char (*keys)[MON_KEY_LEN], size_t n, char *buf,
    size_t size)
{
	char hex[2 * MON_KEY_LEN + 1];
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		cli_hex(keys[i], MON_KEY_LEN, hex);
		list_add(buf, size, hex);
	}
}

/* The paths that saw any key of the list. */
static void
seen_by(const struct mon_observation *obs, const struct mon_keylist *l,
    char *buf, size_t size)
{
	size_t i, j;

	buf[0] = '\0';
	for (i = 0; i < obs->npaths; i++) {
		if (!obs->paths[i].ok)
			continue;
		for (j = 0; j < l->n; j++)
			if (memcmp(obs->paths[i].spki, l->k[j],
			    MON_KEY_LEN) == 0)
				break;
		if (j < l->n)
			list_add(buf, size, obs->paths[i].via);
	}
}

/*
 * The report file: everything a person needs to judge the event, with
 * each distinct certificate chain in PEM.
 */
static void
pem_out(FILE *f, const struct detector_der *der)
{
	char *b64 = PL_Base64Encode((const char *)der->data,
	    (PRUint32)der->len, NULL);
	size_t i, len;

	if (b64 == NULL)
		return;
	fprintf(f, "-----BEGIN CERTIFICATE-----\n");
	len = strlen(b64);
	for (i = 0; i < len; i += 64)
		fprintf(f, "%.64s\n", b64 + i);
	fprintf(f, "-----END CERTIFICATE-----\n");
	PR_Free(b64);
}

/* Subject, issuer and validity of a leaf, for people reading a report. */
static void
cert_names(FILE *f, const struct detector_der *der)
{
	CERTCertificate *c;
	PRTime before, after;
	char b[32], a[32];

	c = CERT_DecodeCertFromPackage((char *)der->data, (int)der->len);
	if (c == NULL) {
		fprintf(f, "#   (not decodable by NSS)\n");
		return;
	}
	fprintf(f, "#   subject %s\n#   issuer  %s\n",
	    c->subjectName ? c->subjectName : "?",
	    c->issuerName ? c->issuerName : "?");
	if (CERT_GetCertTimes(c, &before, &after) == SECSuccess) {
		cli_iso_time((int64_t)(before / PR_USEC_PER_SEC), b, sizeof(b));
		cli_iso_time((int64_t)(after / PR_USEC_PER_SEC), a, sizeof(a));
		fprintf(f, "#   valid   %s to %s\n", b, a);
	}
	CERT_DestroyCertificate(c);
}

static void
reports_dir(const struct mon_config *mc, char *buf, size_t size)
{
	const char *slash;

	if (mc->reports_dir[0] != '\0') {
		snprintf(buf, size, "%s", mc->reports_dir);
		return;
	}
	slash = strrchr(mc->state_path, '/');
	if (slash == NULL)
		snprintf(buf, size, "reports");
	else
		snprintf(buf, size, "%.*s/reports",
		    (int)(slash - mc->state_path), mc->state_path);
}

static void
write_report(const struct mon_config *mc, struct mon_cycle_service *cs)
{
	const struct mon_service *s = cs->svc;
	const struct mon_observation *obs = &cs->obs;
	char dir[PATH_MAX], when[32], stamp[32], hex[2 * MON_KEY_LEN + 1];
	char cert[2 * MON_KEY_LEN + 1], target[MON_HOST_MAX + 32];
	time_t tt = (time_t)obs->now;
	struct tm tm;
	size_t i, j, k;
	FILE *f = NULL;
	int fd = -1, ev;

	reports_dir(mc, dir, sizeof(dir));
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		mon_log(mc, LOG_ERR, "reports folder %s: %s", dir,
		    strerror(errno));
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	for (i = 0; i < 100 && fd == -1; i++) {
		snprintf(cs->report, sizeof(cs->report), i ? "%s/%s-%s-%zu.txt"
		    : "%s/%s-%s.txt", dir, stamp, s->name, i);
		fd = open(cs->report, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
		if (fd == -1 && errno != EEXIST)
			break;
	}
	if (fd == -1 || (f = fdopen(fd, "w")) == NULL) {
		mon_log(mc, LOG_ERR, "report %s: %s", cs->report,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		cs->report[0] = '\0';
		return;
	}
	cli_iso_time(obs->now, when, sizeof(when));
	mconfig_target(s, target, sizeof(target));
	fprintf(f, "detector-monitor report\n\nservice:  %s\ntarget:   %s\n"
	    "time:     %s\nstatus:   %s\nwhere:    %s: %s\nevents:  ", s->name,
	    target, when, mon_status_name(cs->a.status),
	    detector_locality_name(cs->a.locality), cs->a.where);
	for (ev = 0; ev < MON_EV_COUNT; ev++)
		if (cs->a.events[ev])
			fprintf(f, " %s", mon_event_name(ev));
	fprintf(f, "\n\nexpected keys (SPKI SHA-256):\n");
	for (i = 0; i < s->nexpected; i++) {
		cli_hex(s->expected[i], MON_KEY_LEN, hex);
		fprintf(f, "  %s\n", hex);
	}
	fprintf(f, "\npaths:\n");
	for (i = 0; i < obs->npaths; i++) {
		const struct mon_obs_path *p = &obs->paths[i];
		char label[2 * MON_VIA_MAX + 4];

		report_path_label(p, label, sizeof(label));
		if (p->ok) {
			cli_hex(p->spki, MON_KEY_LEN, hex);
			cli_hex(p->cert, MON_KEY_LEN, cert);
			fprintf(f, "  %-24s %s key %s\n  %-24s cert %s "
			    "(%u ms)\n", label, p->expected ? "expected  " :
			    "UNEXPECTED", hex, "", cert, p->ms);
		} else {
			fprintf(f, "  %-24s down       %s (%u ms)\n", label,
			    p->error ? p->error : "no certificate", p->ms);
		}
	}
	fprintf(f, "\ncertificates (each distinct chain, leaf first):\n");
	for (i = 0; i < obs->npaths; i++) {
		const struct mon_obs_path *p = &obs->paths[i];
		if (!p->ok || p->raw == NULL)
			continue;
		for (j = 0; j < i; j++)
			if (obs->paths[j].ok && memcmp(obs->paths[j].cert,
			    p->cert, MON_KEY_LEN) == 0)
				break;
		if (j < i)
			continue;
		cli_hex(p->cert, MON_KEY_LEN, cert);
		fprintf(f, "\n# certificate %s, seen by", cert);
		for (j = i; j < obs->npaths; j++)
			if (obs->paths[j].ok && memcmp(obs->paths[j].cert,
			    p->cert, MON_KEY_LEN) == 0)
				fprintf(f, " %s", obs->paths[j].via);
		fprintf(f, "\n");
		if (p->raw->ncerts > 0)
			cert_names(f, &p->raw->certs[0]);
		for (k = 0; k < p->raw->ncerts; k++)
			pem_out(f, &p->raw->certs[k]);
	}
	if (fclose(f) != 0) {
		mon_log(mc, LOG_ERR, "report %s: %s", cs->report,
		    strerror(errno));
		cs->report[0] = '\0';
	}
}

/*
 * Hooks.
 */

void
alert_env_set(struct alert_hook_env *e, const char *name, const char *value)
{
	char *v;

	if (e->n == HOOK_ENV_MAX || asprintf(&v, "%s=%s", name, value) < 0)
		return;
	e->vars[e->n++] = v;
}

void
alert_env_free(struct alert_hook_env *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->vars[i]);
	e->n = 0;
}

/* Our variables, then the inherited ones whose names we do not set; one
 * free slot at the end for DETECTOR_HOOK, set by alert_run_hook(). */
static char **
env_build(const struct alert_hook_env *e)
{
	static const char hook[] = "DETECTOR_HOOK=";
	size_t n = 0, i, j, total = e->n;
	char **envp;

	while (environ[n] != NULL)
		n++;
	if ((envp = calloc(total + n + 2, sizeof(*envp))) == NULL)
		return NULL;
	for (i = 0; i < e->n; i++)
		envp[i] = e->vars[i];
	for (i = 0; i < n; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		for (j = 0; j < e->n; j++)
			if (strncmp(e->vars[j], environ[i], len) == 0 &&
			    e->vars[j][len] == '=')
				break;
		if (j == e->n && strncmp(environ[i], hook, sizeof(hook) - 1))
			envp[total++] = environ[i];
	}
	envp[total] = NULL;
	return envp;
}

void
alert_run_hook(const struct mon_config *mc, int fd, const char *path, char **envp,
    const char *event)
{
	struct timespec tick = { 0, 10 * 1000 * 1000 }, start, now;
	int64_t waited_ms, limit = (int64_t)mc->hook_timeout_s * 1000;
	int status, null;
	pid_t pid, r;

	clock_gettime(CLOCK_MONOTONIC, &start);
	if ((pid = fork()) == -1) {
		mon_log(mc, LOG_ERR, "hook %s: cannot fork: %s", path,
		    strerror(errno));
		return;
	}
	if (pid == 0) {
		char *argv[] = { (char *)path, (char *)event, NULL };
		char self[PATH_MAX + 16];
		sigset_t none;
		size_t k = 0;

		/* Out of the way of the standard descriptors set below. */
		if (fd <= 2)
			fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		setpgid(0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if ((null = open("/dev/null", O_RDONLY)) != -1) {
			dup2(null, 0);
			if (null != 0)
				close(null);
		}
		dup2(2, 1);
		/* A script sees $0 = /dev/fd/N: say where it lives. */
		snprintf(self, sizeof(self), "DETECTOR_HOOK=%s", path);
		while (envp[k] != NULL)
			k++;
		envp[k] = self;
		/* A program gets no descriptor of itself (close-on-exec); a
		 * script's interpreter reads it as /dev/fd/N, which the
		 * kernel refuses for a close-on-exec fd (ENOENT): only then
		 * is fd kept open across the exec. */
		fexecve(fd, argv, envp);
		if (errno == ENOENT) {
			fcntl(fd, F_SETFD, 0);
			fexecve(fd, argv, envp);
		}
		fprintf(stderr, "detector-monitor: hook %s: cannot run it: "
		    "%s\n", path, strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	for (;;) {
		r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r == -1 && errno != EINTR) {
			mon_log(mc, LOG_ERR, "hook %s: waitpid: %s", path,
			    strerror(errno));
			return;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited_ms = (int64_t)(now.tv_sec - start.tv_sec) * 1000 +
		    (now.tv_nsec - start.tv_nsec) / 1000000;
		if (waited_ms >= limit) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			mon_log(mc, LOG_ERR, "hook %s (%s): still running after "
			    "%u s: killed", path, event, mc->hook_timeout_s);
			return;
		}
		nanosleep(&tick, NULL);
	}
	/* Whatever the hook left running in its group goes with it. */
	kill(-pid, SIGKILL);
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		mon_log(mc, LOG_ERR, "hook %s (%s): exit status %d", path,
		    event, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		mon_log(mc, LOG_ERR, "hook %s (%s): killed by signal %d",
		    path, event, WTERMSIG(status));
}

/*
 * One entry of the hooks folder (dfd, checked): a descriptor of the hook to
 * run (O_PATH, close-on-exec), or -1 and why not in err ("" for an entry
 * that is no hook at all: a folder, or a file without an execute bit).
 */
int
alert_hook_open(int dfd, const char *path, const char *name, char *err,
    size_t errlen)
{
	char why[PATH_MAX + 256];
	const char *rule;
	struct stat sb;
	uid_t me = geteuid();
	int fd;

	err[0] = '\0';
	if ((fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)) == -1 ||
	    fstat(fd, &sb) == -1) {
		snprintf(err, errlen, "hook %s: %s: not run", path,
		    strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	if (S_ISDIR(sb.st_mode) || (S_ISREG(sb.st_mode) &&
	    !(sb.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)))) {
		close(fd);
		return -1;
	}
	if (detector_fd_trusted(fd, path, 0, why, sizeof(why)) == 0)
		return fd;
	close(fd);
	if (S_ISLNK(sb.st_mode))
		rule = "a symlink";
	else if (!S_ISREG(sb.st_mode))
		rule = "not a regular file";
	else if (sb.st_uid != me && sb.st_uid != 0)
		rule = "another user's";
	else
		rule = "writable by group or others";
	snprintf(err, errlen, "hook %s is %s: not run, it would run as uid %lu "
	    "(%s)", path, rule, (unsigned long)me, why);
	return -1;
}

static int
hook_filter(const struct dirent *d)
{
	size_t len = strlen(d->d_name);

	return d->d_name[0] != '.' && len > 0 && d->d_name[len - 1] != '~';
}

/*
 * The hooks folder, opened without following a symlink and checked: a
 * descriptor to look hooks up in, or -1 with err (no hook may run).
 */
int
alert_hooks_dir_open(const char *dir, char *err, size_t errlen)
{
	char why[PATH_MAX + 256];
	int dfd;

	if ((dfd = open(dir, O_PATH | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "hooks folder %s: %s: no hook run", dir,
		    strerror(errno));
		return -1;
	}
	if (detector_fd_trusted(dfd, dir, DETECTOR_TRUST_DIR, why, sizeof(why)) ==
	    -1) {
		close(dfd);
		snprintf(err, errlen, "hooks folder refused: %s: no hook run",
		    why);
		return -1;
	}
	return dfd;
}

/* Every executable regular file in the hooks folder, in name order. */
void
alert_run_hooks(const struct mon_config *mc, const struct alert_hook_env *e,
    const char *event)
{
	struct dirent **names;
	char path[PATH_MAX], err[2 * PATH_MAX + 512];
	char **envp;
	int n, i, dfd, fd;

	if (mc->hooks_dir[0] == '\0')
		return;
	if ((dfd = alert_hooks_dir_open(mc->hooks_dir, err, sizeof(err))) == -1) {
		mon_log(mc, LOG_ERR, "%s", err);
		return;
	}
	if ((n = scandirat(dfd, ".", &names, hook_filter, alphasort)) == -1) {
		mon_log(mc, LOG_ERR, "hooks folder %s: %s: no hook run",
		    mc->hooks_dir, strerror(errno));
		close(dfd);
		return;
	}
	if ((envp = env_build(e)) == NULL)
		mon_log(mc, LOG_ERR, "hooks: out of memory: no hook run");
	for (i = 0; i < n; i++) {
		int len = snprintf(path, sizeof(path), "%s/%s",
		    mc->hooks_dir, names[i]->d_name);
		if (envp != NULL && len > 0 && (size_t)len < sizeof(path)) {
			fd = alert_hook_open(dfd, path, names[i]->d_name, err,
			    sizeof(err));
			if (fd != -1) {
				alert_run_hook(mc, fd, path, envp, event);
				close(fd);
			} else if (err[0] != '\0') {
				mon_log(mc, LOG_ERR, "%s", err);
			}
		} else if (envp != NULL) {
			mon_log(mc, LOG_ERR, "hook %s/%s: path too long: not "
			    "run", mc->hooks_dir, names[i]->d_name);
		}
		free(names[i]);
	}
	free(names);
	free(envp);
	close(dfd);
}

static int
event_prio(int ev)
{
	switch (ev) {
	case MON_EV_UNEXPECTED_KEY: return LOG_CRIT;
	case MON_EV_SUSPICIOUS_RETURN:
	case MON_EV_SPHERE_DOWN:
	case MON_EV_DIRECT_DOWN: return LOG_WARNING;
	case MON_EV_HEARTBEAT: return LOG_INFO;
	default: return LOG_NOTICE;
	}
}

static void
tell(const struct mon_alert_opts *o, int ev, int64_t now, const char *line)
{
	char when[32];

	cli_iso_time(now, when, sizeof(when));
	if (o->to_stdout || o->to_stderr) {
		FILE *f = o->to_stdout ? stdout : stderr;
		fprintf(f, "%s %s %s\n", when, mon_event_name(ev), line);
		fflush(f);
	}
	if (o->mc->syslog)
		syslog(event_prio(ev), "%s %s", mon_event_name(ev), line);
}

/* The paths that went down or came up, and their errors. */
static void
moved_paths(const struct mon_cycle_service *cs, const size_t *idx, size_t n,
    int direct, char *list, size_t lsize, char *errs, size_t esize)
{
	size_t i;

	list[0] = errs[0] = '\0';
	for (i = 0; i < n; i++) {
		const struct mon_obs_path *p = &cs->obs.paths[idx[i]];
		size_t len = strlen(errs);
		if (p->direct != direct)
			continue;
		list_add(list, lsize, p->via);
		if (!p->ok)
			snprintf(errs + len, esize - len, "%s%s: %s",
			    len ? "; " : "", p->via, p->error ? p->error :
			    "no certificate");
	}
}

void
alert_service(const struct mon_alert_opts *o, struct mon_cycle_service *cs)
{
	const struct mon_service *s = cs->svc;
	const struct mon_assessment *a = &cs->a;
	char expected[LIST_MAX], seen[LIST_MAX], unexpected[LIST_MAX];
	char returning[LIST_MAX], suspicious[LIST_MAX], paths[LIST_MAX];
	char errs[LIST_MAX], line[3 * LIST_MAX];
	char target[MON_NAME_MAX + MON_HOST_MAX + 32];
	char hostport[MON_HOST_MAX + 32];
	char num[32], when[32];
	int ev, any = 0;

	for (ev = 0; ev < MON_EV_COUNT; ev++)
		any |= a->events[ev];
	if (!any)
		return;
	write_report(o->mc, cs);
	keys_text(s->expected, s->nexpected, expected, sizeof(expected));
	keys_text(a->seen.k, a->seen.n, seen, sizeof(seen));
	keys_text(a->returning.k, a->returning.n, returning,
	    sizeof(returning));
	keys_text(a->suspicious.k, a->suspicious.n, suspicious,
	    sizeof(suspicious));
	mconfig_target(s, hostport, sizeof(hostport));
	snprintf(target, sizeof(target), "%s %s", s->name, hostport);
	cli_iso_time(cs->obs.now, when, sizeof(when));

	for (ev = 0; ev < MON_EV_COUNT; ev++) {
		struct alert_hook_env e = { 0 };

		if (!a->events[ev])
			continue;
		paths[0] = errs[0] = '\0';
		keys_text(a->unexpected.k, a->unexpected.n, unexpected,
		    sizeof(unexpected));
		switch (ev) {
		case MON_EV_UNEXPECTED_KEY:
			keys_text(a->new_unexpected.k, a->new_unexpected.n,
			    unexpected, sizeof(unexpected));
			seen_by(&cs->obs, &a->new_unexpected, paths,
			    sizeof(paths));
			snprintf(line, sizeof(line), "%s: unexpected key %s%s "
			    "seen by %s (expected %s); where: %s: %s", target,
			    unexpected, a->returning.n ? " (seen before: it is "
			    "back)" : "", paths, expected,
			    detector_locality_name(a->locality), a->where);
			break;
		case MON_EV_RECOVERED: {
			struct mon_keylist exp = { 0 };
			size_t i;
			for (i = 0; i < a->seen.n; i++)
				memcpy(exp.k[exp.n++], a->seen.k[i],
				    MON_KEY_LEN);
			seen_by(&cs->obs, &exp, paths, sizeof(paths));
			snprintf(line, sizeof(line), "%s: recovered: only "
			    "expected keys seen (%s) by %s", target, seen,
			    paths);
			break;
		}
		case MON_EV_SUSPICIOUS_RETURN:
			seen_by(&cs->obs, &a->suspicious, paths,
			    sizeof(paths));
			snprintf(line, sizeof(line), "%s: key %s is back after "
			    "another key had replaced it, seen by %s", target,
			    suspicious, paths);
			break;
		case MON_EV_SPHERE_DOWN:
		case MON_EV_DIRECT_DOWN:
			moved_paths(cs, a->went_down, a->nwent_down,
			    ev == MON_EV_DIRECT_DOWN, paths, sizeof(paths),
			    errs, sizeof(errs));
			snprintf(line, sizeof(line), "%s: %s down: %s", target,
			    paths, errs);
			break;
		default:
			moved_paths(cs, a->came_up, a->ncame_up,
			    ev == MON_EV_DIRECT_UP, paths, sizeof(paths), errs,
			    sizeof(errs));
			snprintf(line, sizeof(line), "%s: %s up again", target,
			    paths);
			break;
		}
		tell(o, ev, cs->obs.now, line);

		alert_env_set(&e, "DETECTOR_EVENT", mon_event_name(ev));
		alert_env_set(&e, "DETECTOR_SERVICE", s->name);
		alert_env_set(&e, "DETECTOR_HOST", s->host);
		snprintf(num, sizeof(num), "%u", mconfig_port(s));
		alert_env_set(&e, "DETECTOR_PORT", num);
		alert_env_set(&e, "DETECTOR_PROTOCOL", mconfig_proto_name(s->proto));
		alert_env_set(&e, "DETECTOR_STATUS", mon_status_name(a->status));
		alert_env_set(&e, "DETECTOR_TIME", when);
		alert_env_set(&e, "DETECTOR_EXPECTED_KEYS", expected);
		alert_env_set(&e, "DETECTOR_SEEN_KEYS", seen);
		alert_env_set(&e, "DETECTOR_UNEXPECTED_KEYS", unexpected);
		alert_env_set(&e, "DETECTOR_RETURNING_KEYS", returning);
		alert_env_set(&e, "DETECTOR_SUSPICIOUS_KEYS", suspicious);
		alert_env_set(&e, "DETECTOR_PATHS", paths);
		alert_env_set(&e, "DETECTOR_ERRORS", errs);
		snprintf(num, sizeof(num), "%u", a->spheres_ok);
		alert_env_set(&e, "DETECTOR_SPHERES_OK", num);
		snprintf(num, sizeof(num), "%u", a->spheres_down);
		alert_env_set(&e, "DETECTOR_SPHERES_DOWN", num);
		alert_env_set(&e, "DETECTOR_REPORT", cs->report);
		alert_env_set(&e, "DETECTOR_LOCALITY",
		    detector_locality_name(a->locality));
		alert_env_set(&e, "DETECTOR_LOCALITY_DETAIL", a->where);
		alert_env_set(&e, "DETECTOR_SUMMARY", line);
		alert_run_hooks(o->mc, &e, mon_event_name(ev));
		alert_env_free(&e);
	}
}

void
alert_heartbeat(const struct mon_alert_opts *o, enum mon_status st,
    const char *summary)
{
	struct alert_hook_env e = { 0 };
	char when[32];
	int64_t now = (int64_t)time(NULL);

	cli_iso_time(now, when, sizeof(when));
	tell(o, MON_EV_HEARTBEAT, now, summary);
	static const char *const unset[] = { "DETECTOR_SERVICE",
	    "DETECTOR_HOST", "DETECTOR_PORT", "DETECTOR_PROTOCOL",
	    "DETECTOR_EXPECTED_KEYS", "DETECTOR_SEEN_KEYS",
	    "DETECTOR_UNEXPECTED_KEYS", "DETECTOR_RETURNING_KEYS",
	    "DETECTOR_SUSPICIOUS_KEYS", "DETECTOR_PATHS", "DETECTOR_ERRORS",
	    "DETECTOR_SPHERES_OK", "DETECTOR_SPHERES_DOWN", "DETECTOR_REPORT",
	    "DETECTOR_LOCALITY", "DETECTOR_LOCALITY_DETAIL" };
	size_t i;

	alert_env_set(&e, "DETECTOR_EVENT", "heartbeat");
	alert_env_set(&e, "DETECTOR_STATUS", mon_status_name(st));
	alert_env_set(&e, "DETECTOR_TIME", when);
	alert_env_set(&e, "DETECTOR_SUMMARY", summary);
	/* Empty, so that nothing inherited under these names misleads. */
	for (i = 0; i < sizeof(unset) / sizeof(unset[0]); i++)
		alert_env_set(&e, unset[i], "");
	alert_run_hooks(o->mc, &e, "heartbeat");
	alert_env_free(&e);
}
