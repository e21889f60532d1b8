/*
 * purple_client - a Pidgin-family client: libpurple opens one TLS
 * connection with purple_ssl_connect, exactly as a protocol plugin does,
 * and reports whether libpurple called the connect or the error callback.
 * No DetecTor code: the TLS is libpurple's NSS plugin (ssl-nss.so, which
 * links the system libssl3.so), its certificate check is libpurple's own
 * "tls_cached" verifier with its CA pool.  Run under detector-run, the same
 * plugin gets DetecTor's libssl3.so.
 *
 * usage: purple_client [--fetch] CA_FILE HOST PORT [LIMIT_S]
 * --fetch: once connected, write an HTTP request through libpurple and
 * print the answer as "response: ..." (read from libpurple's input watch on
 * the raw descriptor, as a protocol plugin reads) before the result line.
 * CA_FILE (PEM) is added to libpurple's CA pool, as a user trusting a
 * private CA would ("-": none, only the system's CAs are trusted).  HOST
 * is resolved by libpurple itself.  libpurple's user directory is a fresh
 * temporary directory, removed at exit, so no certificate cached by an
 * earlier run is ever consulted.  A certificate prompt (an unknown CA, a
 * name mismatch) is answered "Reject", as a careful user would.
 *
 * prints "libssl3: PATH" (the libssl3.so the process really mapped, from
 * /proc/self/maps), on a handshake failure "nss_error: NAME: text", then
 * "elapsed_ms: N" and exactly one of
 *	result: connected
 *	result: failed PURPLE_SSL_HANDSHAKE_FAILED | PURPLE_SSL_CONNECT_FAILED |
 *	    PURPLE_SSL_CERTIFICATE_INVALID
 *	result: timeout			(no callback after LIMIT_S seconds,
 *					default 60)
 * exit 0 when connected, 1 otherwise (SIGTERM/SIGINT: no result line),
 * 2 when libpurple could not be set up.
 * PURPLE_CLIENT_DEBUG=1 in the environment shows all of libpurple's debug
 * output on stderr (warnings and errors are always shown).
 */
#include <errno.h>
#include <ftw.h>
#include <glib-unix.h>
#include <prerror.h>
#include <purple.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LIMIT_S 60
#define UI_ID "detector-purple-client"

static GMainLoop *loop;
static gboolean done;
static int outcome = 1;
static gint64 t0;
static gboolean verbose;

/* ASan/LSan (make test-asan): what libpurple and its plugins still hold at
 * exit is not ours to report, and would turn every run into a failure. */
__attribute__((visibility("default"))) const char *__asan_default_options(void);

const char *
__asan_default_options(void)
{
	return "detect_leaks=0";
}

/* -- the glib main loop as libpurple's event loop */

struct watch {
	PurpleInputFunction func;
	gpointer data;
};

static gboolean
watch_fired(GIOChannel *ch, GIOCondition cond, gpointer data)
{
	struct watch *w = data;
	int pcond = 0;

	if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR))
		pcond |= PURPLE_INPUT_READ;
	if (cond & (G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL))
		pcond |= PURPLE_INPUT_WRITE;
	w->func(w->data, g_io_channel_unix_get_fd(ch),
	    (PurpleInputCondition)pcond);
	return TRUE;
}

static guint
input_add(int fd, PurpleInputCondition cond, PurpleInputFunction func,
    gpointer data)
{
	struct watch *w = g_new0(struct watch, 1);
	GIOChannel *ch = g_io_channel_unix_new(fd);
	int gcond = 0;
	guint id;

	if (cond & PURPLE_INPUT_READ)
		gcond |= G_IO_IN | G_IO_HUP | G_IO_ERR;
	if (cond & PURPLE_INPUT_WRITE)
		gcond |= G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL;
	w->func = func;
	w->data = data;
	id = g_io_add_watch_full(ch, G_PRIORITY_DEFAULT, (GIOCondition)gcond,
	    watch_fired, w, g_free);
	g_io_channel_unref(ch);
	return id;
}

static PurpleEventLoopUiOps eventloop_ops = {
	.timeout_add = g_timeout_add,
	.timeout_remove = g_source_remove,
	.input_add = input_add,
	.input_remove = g_source_remove,
	.timeout_add_seconds = g_timeout_add_seconds,
};

/* -- the user interface: stderr, and "Reject" to every prompt */

static void
debug_print(PurpleDebugLevel level, const char *category, const char *text)
{
	static const char *names[] = { "all", "misc", "info", "warning",
	    "error", "fatal" };

	fprintf(stderr, "purple %s %s: %s", names[level <= PURPLE_DEBUG_FATAL ?
	    level : 0], category ? category : "-", text);
}

static gboolean
debug_enabled(PurpleDebugLevel level, const char *category)
{
	(void)category;
	return verbose || level >= PURPLE_DEBUG_WARNING;
}

static PurpleDebugUiOps debug_ops = {
	.print = debug_print,
	.is_enabled = debug_enabled,
};

static void *
notify_message(PurpleNotifyMsgType type, const char *title,
    const char *primary, const char *secondary)
{
	(void)type;
	fprintf(stderr, "notify: %s: %s: %s\n", title ? title : "",
	    primary ? primary : "", secondary ? secondary : "");
	return NULL;
}

static PurpleNotifyUiOps notify_ops = {
	.notify_message = notify_message,
};

struct answer {
	PurpleRequestActionCb cb;
	void *data;
	int index;
};

static gboolean
answer_prompt(gpointer data)
{
	struct answer *a = data;

	a->cb(a->data, a->index);
	g_free(a);
	return FALSE;
}

/* Picks the action labelled "Reject" (or "Cancel"/"No") and answers it
 * from the main loop, as a user clicking it would. */
static void *
request_action(const char *title, const char *primary, const char *secondary,
    int default_action, PurpleAccount *account, const char *who,
    PurpleConversation *conv, void *user_data, size_t count, va_list actions)
{
	struct answer *a;
	size_t i;

	(void)default_action, (void)account, (void)who, (void)conv;
	fprintf(stderr, "prompt: %s: %s: %s\n", title ? title : "",
	    primary ? primary : "", secondary ? secondary : "");
	for (i = 0; i < count; i++) {
		const char *label = va_arg(actions, const char *);
		PurpleRequestActionCb cb = va_arg(actions, PurpleRequestActionCb);

		if (label && (strcasestr(label, "reject") ||
		    strcasestr(label, "cancel") || strcmp(label, "_No") == 0)) {
			fprintf(stderr, "prompt: answered \"%s\"\n", label);
			a = g_new0(struct answer, 1);
			a->cb = cb;
			a->data = user_data;
			a->index = (int)i;
			g_idle_add(answer_prompt, a);
			return a;
		}
	}
	fprintf(stderr, "prompt: no action to reject with; left open\n");
	return NULL;
}

static PurpleRequestUiOps request_ops = {
	.request_action = request_action,
};

static PurpleCoreUiOps core_ops;

/* -- the connection */

static void
finish(const char *result, int rc)
{
	if (done)
		return;
	done = TRUE;
	printf("elapsed_ms: %" G_GINT64_FORMAT "\n",
	    (g_get_monotonic_time() - t0) / 1000);
	printf("result: %s\n", result);
	outcome = rc;
	g_main_loop_quit(loop);
}

static gboolean fetch;
static GString *response;

/* libpurple's input watch: the answer, until the server closes. */
static void
readable(gpointer data, PurpleSslConnection *gsc, PurpleInputCondition cond)
{
	char buf[1024];
	size_t n, i;

	(void)data, (void)cond;
	while ((n = purple_ssl_read(gsc, buf, sizeof(buf))) > 0 &&
	    n != (size_t)-1)
		g_string_append_len(response, buf, (gssize)n);
	if (n == (size_t)-1 && errno == EAGAIN)
		return;
	for (i = 0; i < response->len; i++) {
		if (response->str[i] < 0x20 || response->str[i] > 0x7e)
			response->str[i] = '.';
	}
	printf("response: %s\n", response->str);
	g_string_free(response, TRUE);
	purple_ssl_close(gsc);
	finish("connected", 0);
}

static void
connected(gpointer data, PurpleSslConnection *gsc, PurpleInputCondition cond)
{
	static const char req[] = "GET / HTTP/1.0\r\n\r\n";

	(void)data, (void)cond;
	if (fetch) {
		response = g_string_new("");
		if (purple_ssl_write(gsc, req, sizeof(req) - 1) ==
		    sizeof(req) - 1) {
			purple_ssl_input_add(gsc, readable, NULL);
			return;
		}
		g_string_free(response, TRUE);
	}
	purple_ssl_close(gsc);
	finish("connected", 0);
}

static void
failed(PurpleSslConnection *gsc, PurpleSslErrorType error, gpointer data)
{
	/* libpurple's NSS plugin calls this right after SSL_ForceHandshake
	 * failed: NSPR's error code is still the reason. */
	PRErrorCode e = PR_GetError();

	(void)gsc, (void)data;
	if (error == PURPLE_SSL_HANDSHAKE_FAILED && e != 0)
		printf("nss_error: %s: %s\n", PR_ErrorToName(e) ?
		    PR_ErrorToName(e) : "?", PR_ErrorToString(e,
		    PR_LANGUAGE_I_DEFAULT));
	finish(error == PURPLE_SSL_HANDSHAKE_FAILED ?
	    "failed PURPLE_SSL_HANDSHAKE_FAILED" :
	    error == PURPLE_SSL_CONNECT_FAILED ?
	    "failed PURPLE_SSL_CONNECT_FAILED" :
	    error == PURPLE_SSL_CERTIFICATE_INVALID ?
	    "failed PURPLE_SSL_CERTIFICATE_INVALID" : "failed UNKNOWN", 1);
}

static gboolean
timed_out(gpointer data)
{
	(void)data;
	finish("timeout", 1);
	return FALSE;
}

/* SIGTERM/SIGINT: no result, but the temporary user dir is removed. */
static gboolean
interrupted(gpointer data)
{
	(void)data;
	fprintf(stderr, "purple_client: interrupted\n");
	done = TRUE;
	g_main_loop_quit(loop);
	return TRUE;
}

/* The libssl3.so this process mapped: which NSS ssl-nss.so really got. */
static void
print_libssl(void)
{
	char line[4096];
	FILE *f = fopen("/proc/self/maps", "r");

	if (f == NULL)
		return;
	while (fgets(line, sizeof line, f) != NULL) {
		char *path = strchr(line, '/');

		if (path && strstr(path, "/libssl3.so")) {
			printf("libssl3: %s", path);
			break;
		}
	}
	fclose(f);
}

/* Adds the PEM certificate in path to libpurple's CA pool (in memory). */
static int
trust_ca(const char *path)
{
	PurpleCertificateScheme *x509 = purple_certificate_find_scheme("x509");
	PurpleCertificatePool *ca = purple_certificate_find_pool("x509", "ca");
	PurpleCertificate *crt;
	gchar *id;
	int ok;

	if (x509 == NULL || ca == NULL) {
		fprintf(stderr, "purple_client: libpurple has no X.509 scheme "
		    "or CA pool (is ssl-nss.so loaded?)\n");
		return -1;
	}
	crt = purple_certificate_import(x509, path);
	if (crt == NULL) {
		fprintf(stderr, "purple_client: %s: not a PEM certificate\n",
		    path);
		return -1;
	}
	id = purple_certificate_get_unique_id(crt);
	ok = purple_certificate_pool_store(ca, id, crt);
	g_free(id);
	purple_certificate_destroy(crt);
	if (!ok) {
		fprintf(stderr, "purple_client: could not add %s to the CA "
		    "pool\n", path);
		return -1;
	}
	return 0;
}

static int
remove_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

/* libpurple set up, the test CA trusted, one connection; the outcome. */
static int
run(const char *ca_file, const char *host, int port, int limit_s)
{
	purple_debug_set_ui_ops(&debug_ops);
	purple_core_set_ui_ops(&core_ops);
	purple_eventloop_set_ui_ops(&eventloop_ops);
	purple_notify_set_ui_ops(&notify_ops);
	purple_request_set_ui_ops(&request_ops);
	/* Where ssl.so and ssl-nss.so live; purple_core_init probes it. */
	purple_plugins_add_search_path(PURPLE_PLUGIN_DIR);
	if (!purple_core_init(UI_ID)) {
		fprintf(stderr, "purple_client: purple_core_init failed\n");
		return 2;
	}
	if (!purple_ssl_is_supported()) {
		fprintf(stderr, "purple_client: libpurple has no SSL plugin "
		    "(looked in %s)\n", PURPLE_PLUGIN_DIR);
		purple_core_quit();
		return 2;
	}
	print_libssl();
	if (strcmp(ca_file, "-") != 0 && trust_ca(ca_file) != 0) {
		purple_core_quit();
		return 2;
	}

	loop = g_main_loop_new(NULL, FALSE);
	t0 = g_get_monotonic_time();
	g_timeout_add_seconds((guint)limit_s, timed_out, NULL);
	g_unix_signal_add(SIGTERM, interrupted, NULL);
	g_unix_signal_add(SIGINT, interrupted, NULL);
	if (purple_ssl_connect(NULL, host, port, connected, failed,
	    NULL) == NULL)
		finish("failed PURPLE_SSL_CONNECT_FAILED", 1);
	if (!done)
		g_main_loop_run(loop);
	purple_core_quit();
	g_main_loop_unref(loop);
	return outcome;
}

int
main(int argc, char **argv)
{
	gchar *userdir;
	int port, limit_s, rc;

	if (argc > 1 && strcmp(argv[1], "--fetch") == 0) {
		fetch = TRUE;
		argc--;
		argv++;
	}
	if (argc < 4 || argc > 5 || (port = atoi(argv[3])) <= 0 ||
	    port > 65535 ||
	    (limit_s = argc == 5 ? atoi(argv[4]) : LIMIT_S) <= 0) {
		fprintf(stderr, "usage: purple_client [--fetch] CA_FILE HOST PORT "
		    "[LIMIT_S]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	verbose = g_getenv("PURPLE_CLIENT_DEBUG") != NULL;
	userdir = g_dir_make_tmp("purple-client-XXXXXX", NULL);
	if (userdir == NULL) {
		perror("purple_client: temporary user directory");
		return 2;
	}
	purple_util_set_user_dir(userdir);
	/* libpurple's media code (GStreamer, PulseAudio) starts with the core
	 * and, without a runtime dir, leaves a /tmp/pulse-* behind per HOME. */
	if (g_getenv("XDG_RUNTIME_DIR") == NULL)
		g_setenv("XDG_RUNTIME_DIR", userdir, TRUE);

	rc = run(argv[1], argv[2], port, limit_s);

	nftw(userdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	g_free(userdir);
	return rc;
}
