/*
 * backoff.c - how long a history decision stands while every sphere is
 * silent (backoff.h).  One small table per process, behind a mutex that
 * fork() cannot leave held in the child.
 */
#include "backoff.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "check.h"

#define KEY_CHANGED_FIRST_MS 15000
#define KEY_CHANGED_MAX_MS (5 * 60 * 1000)
#define ACCEPTED_FIRST_MS 5000
#define ACCEPTED_MAX_MS 30000

struct backoff_entry {
	char host[CHECK_HOST_SIZE];
	unsigned int port;
	unsigned char spki[DETECTOR_SHA256_LEN];
	struct cache_policy pol;
	enum detector_history h;
	unsigned int silent;          /* checks in a row; 0: a free slot */
	int64_t since_ms, until_ms;
};

static struct backoff_entry table[BACKOFF_ENTRIES];
static uint64_t generation;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
atfork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

static void
atfork_release(void)
{
	pthread_mutex_unlock(&lock);
}

static void
install(void)
{
	(void)pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

int64_t
backoff_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
		return 0;       /* never on Linux; 0 only ever shortens */
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
backoff_generation(void)
{
	uint64_t g;

	pthread_once(&once, install);
	pthread_mutex_lock(&lock);
	g = generation;
	pthread_mutex_unlock(&lock);
	return g;
}

int64_t
backoff_delay_ms(enum detector_history h, unsigned int silent)
{
	int64_t first, max, d;

	if (h == DETECTOR_HISTORY_KEY_CHANGED) {
		first = KEY_CHANGED_FIRST_MS;
		max = KEY_CHANGED_MAX_MS;
	} else if (h == DETECTOR_HISTORY_ACCEPTED) {
		first = ACCEPTED_FIRST_MS;
		max = ACCEPTED_MAX_MS;
	} else
		return 0;
	for (d = first; silent > 1 && d < max; silent--)
		d *= 2;
	return d < max ? d : max;
}

static int
same_policy(const struct cache_policy *a, const struct cache_policy *b)
{
	return a->quorum == b->quorum && a->nspheres == b->nspheres &&
	    memcmp(a->spheres, b->spheres, sizeof(a->spheres)) == 0;
}

/* The entry for host:port (any key, any policy), or NULL.  Locked. */
static struct backoff_entry *
find(const char *host, unsigned int port)
{
	size_t i;

	for (i = 0; i < BACKOFF_ENTRIES; i++) {
		if (table[i].silent != 0 && table[i].port == port &&
		    strcasecmp(table[i].host, host) == 0)
			return &table[i];
	}
	return NULL;
}

int
backoff_active(const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol, int64_t now_ms,
    int64_t *since_ms, int64_t *until_ms, unsigned int *silent)
{
	const struct backoff_entry *e;
	int active = 0;

	pthread_once(&once, install);
	pthread_mutex_lock(&lock);
	e = find(host, port);
	if (e != NULL && now_ms >= e->since_ms && now_ms < e->until_ms &&
	    memcmp(e->spki, spki, DETECTOR_SHA256_LEN) == 0 &&
	    same_policy(&e->pol, pol)) {
		*since_ms = e->since_ms;
		*until_ms = e->until_ms;
		*silent = e->silent;
		active = 1;
	}
	pthread_mutex_unlock(&lock);
	return active;
}

void
backoff_note(const char *host, unsigned int port,
    const unsigned char *spki, const struct cache_policy *pol,
    enum detector_history h, int64_t start_ms, uint64_t gen, int64_t now_ms)
{
	struct backoff_entry *e;
	unsigned int silent = 1;
	size_t i;

	if (h == DETECTOR_HISTORY_NONE || strlen(host) >= CHECK_HOST_SIZE)
		return;
	pthread_once(&once, install);
	pthread_mutex_lock(&lock);
	if (gen != generation) {
		/* A sphere answered another check meanwhile. */
		pthread_mutex_unlock(&lock);
		return;
	}
	if ((e = find(host, port)) != NULL && e->h == h &&
	    memcmp(e->spki, spki, DETECTOR_SHA256_LEN) == 0 &&
	    same_policy(&e->pol, pol)) {
		/* The same question asked again.  A check that ran alongside
		 * the one that made the entry leaves it as it is. */
		if (start_ms < e->until_ms) {
			pthread_mutex_unlock(&lock);
			return;
		}
		if (start_ms - e->until_ms <= backoff_delay_ms(h, e->silent) &&
		    e->silent < 64)
			silent = e->silent + 1;
	} else if (e == NULL) {
		/* A free slot, else the one whose back-off ends first. */
		e = &table[0];
		for (i = 0; i < BACKOFF_ENTRIES; i++) {
			if (table[i].silent == 0) {
				e = &table[i];
				break;
			}
			if (table[i].until_ms < e->until_ms)
				e = &table[i];
		}
	}
	memset(e, 0, sizeof(*e));
	strcpy(e->host, host);
	e->port = port;
	memcpy(e->spki, spki, DETECTOR_SHA256_LEN);
	e->pol = *pol;
	e->h = h;
	e->silent = silent;
	e->since_ms = now_ms;
	e->until_ms = now_ms + backoff_delay_ms(h, silent);
	pthread_mutex_unlock(&lock);
}

void
backoff_clear(void)
{
	pthread_once(&once, install);
	pthread_mutex_lock(&lock);
	memset(table, 0, sizeof(table));
	generation++;
	pthread_mutex_unlock(&lock);
}
