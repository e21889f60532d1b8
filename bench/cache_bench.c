/*
 * cache_bench - the verdict cache (detector/lib/cache.c) under load.
 *
 *   cache_bench lookup PATH CALLS
 *	one remembered verdict, then CALLS cache_recall() of it in a loop
 *	(a warm LMDB, as in a long-running NSS process): time per call.
 *   cache_bench fill PATH ENTRIES
 *	a cache of ENTRIES verdicts; prints its size on disk.
 *   cache_bench latency PATH ENTRIES SAMPLES
 *	SAMPLES cache_recall() of random entries, each timed on its own:
 *	first in a fresh process ("fresh": pages not yet mapped by it), then
 *	again after one pass over every entry ("warm").
 *   cache_bench multi PATH ENTRIES SECONDS PROCS
 *	PROCS processes, each with its own handle (as every NSS application
 *	has), doing random cache_recall() for SECONDS at once.
 *
 * Entries are "h<8 hex>.example.com:443" with the hex a bijective hash of
 * the entry number, so that they are inserted and looked up in an order
 * that has nothing to do with the key order.  fill writes as cache_put()
 * does (the library's own key and record encoders, one write transaction
 * per entry, so the file has the free pages such a history leaves) but
 * through LMDB directly with MDB_NOSYNC and one sync at the end: a million
 * fsync()s would take the benchmark's whole time budget.  Every lookup
 * goes through the library's cache_recall().
 *
 * Output: "key value" lines, for bench/run.py.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"

#define NOW ((uint32_t)time(NULL))

/* The default policy's shape: quorum 4 of 5 spheres. */
static const struct cache_policy bench_policy = { 4, 5, { 0x5f } };

/* "cache_bench: what[: detail]" and exit. */
static void
fatal(const char *what, const char *detail)
{
	fprintf(stderr, "cache_bench: %s%s%s\n", what, detail ? ": " : "",
	    detail ? detail : "");
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* murmur3's finaliser: a bijection on 32-bit integers. */
static uint32_t
mix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t
rng(uint32_t bound)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % bound);
}

static void
entry_host(uint32_t i, char *host, size_t size)
{
	snprintf(host, size, "h%08x.example.com", mix32(i));
}

static void
entry_spki(uint32_t i, unsigned char spki[DETECTOR_SHA256_LEN])
{
	uint32_t w;
	int j;

	for (j = 0; j < DETECTOR_SHA256_LEN / 4; j++) {
		w = mix32(i * 8u + (uint32_t)j + 1u);
		memcpy(spki + 4 * j, &w, 4);
	}
}

static struct cache *
open_cache(const char *path)
{
	char note[1024], err[1024];
	struct cache *c = cache_open(path, note, sizeof(note), err,
	    sizeof(err));

	if (c == NULL)
		fatal(err, NULL);
	if (note[0] != '\0')
		fprintf(stderr, "cache_bench: %s\n", note);
	return c;
}

/* One random lookup that must hit; returns its time in ns (0 untimed). */
static uint64_t
random_recall(struct cache *c, uint32_t entries, int timed)
{
	char host[64];
	unsigned char spki[DETECTOR_SHA256_LEN];
	struct cache_record r;
	uint32_t i = rng(entries);
	uint64_t t0 = 0, t1 = 0;
	int hit;

	entry_host(i, host, sizeof(host));
	entry_spki(i, spki);
	if (timed)
		t0 = now_ns();
	hit = cache_recall(c, host, 443, spki, &bench_policy, 86400, NOW, &r);
	if (timed)
		t1 = now_ns();
	if (!hit)
		fatal("an entry is missing (was the cache filled?)", host);
	return t1 - t0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
print_percentiles(const char *name, uint64_t *ns, size_t n)
{
	double sum = 0;
	size_t i;

	qsort(ns, n, sizeof(*ns), cmp_u64);
	for (i = 0; i < n; i++)
		sum += (double)ns[i];
	printf("%s_p50_ns %llu\n%s_p99_ns %llu\n%s_p999_ns %llu\n"
	    "%s_max_ns %llu\n%s_mean_ns %.1f\n",
	    name, (unsigned long long)ns[n / 2],
	    name, (unsigned long long)ns[n * 99 / 100],
	    name, (unsigned long long)ns[n * 999 / 1000],
	    name, (unsigned long long)ns[n - 1], name, sum / (double)n);
}

static int
cmd_lookup(const char *path, long calls)
{
	unsigned char spki[DETECTOR_SHA256_LEN];
	struct cache_record r;
	char err[256];
	struct cache *c = open_cache(path);
	uint64_t t0, t;
	long i, hits = 0;

	entry_spki(7, spki);
	if (cache_remember(c, "server.test", 443, spki, &bench_policy,
	    DETECTOR_ACCEPT, NOW, 86400, err, sizeof(err)) == -1)
		fatal(err, NULL);
	for (i = 0; i < 1000; i++)              /* warm up */
		hits += cache_recall(c, "server.test", 443, spki,
		    &bench_policy, 86400, NOW, &r);
	t0 = now_ns();
	for (i = 0; i < calls; i++)
		hits += cache_recall(c, "server.test", 443, spki,
		    &bench_policy, 86400, NOW, &r);
	t = now_ns() - t0;
	if (hits != calls + 1000)
		fatal("cache_recall missed the remembered verdict", NULL);
	printf("lookup_calls %ld\nlookup_ns_per_call %.1f\n", calls,
	    (double)t / (double)calls);
	cache_close(c);
	return 0;
}

static int
cmd_fill(const char *path, uint32_t entries)
{
	unsigned char rec[CACHE_RECORD_LEN];
	struct cache_record r;
	char host[64], key[CACHE_KEY_MAX];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	MDB_stat st;
	struct stat sb;
	uint64_t keybytes = 0, t0 = now_ns();
	uint32_t i, now = NOW;
	int rc;

	cache_close(open_cache(path));          /* created as the library does */
	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, (size_t)1 << 30)) != 0 ||
	    (rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOTLS |
	    MDB_NOSYNC, 0600)) != 0)
		fatal("lmdb", mdb_strerror(rc));
	memset(&r, 0, sizeof(r));
	r.verdict = DETECTOR_ACCEPT;
	r.first_seen = r.last_verified = now;
	r.expires = now + 86400;
	r.policy = bench_policy;
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0)
		fatal("lmdb", mdb_strerror(rc));
	for (i = 0; i < entries; i++) {
		entry_host(i, host, sizeof(host));
		entry_spki(i, r.spki);
		k.mv_size = cache_key(host, 443, key, sizeof(key));
		k.mv_data = key;
		keybytes += k.mv_size;
		cache_record_encode(&r, rec);
		v.mv_data = rec;
		v.mv_size = sizeof(rec);
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
		    (rc = mdb_put(txn, dbi, &k, &v, 0)) != 0 ||
		    (rc = mdb_txn_commit(txn)) != 0)
			fatal("lmdb put", mdb_strerror(rc));
	}
	if ((rc = mdb_env_sync(env, 1)) != 0 ||
	    (rc = mdb_env_stat(env, &st)) != 0)
		fatal("lmdb", mdb_strerror(rc));
	mdb_env_close(env);
	if (stat(path, &sb) == -1)
		fatal("cannot stat", path);
	printf("fill_entries %u\nfill_seconds %.3f\nfill_file_bytes %lld\n"
	    "fill_tree_bytes %llu\nfill_key_bytes_mean %.2f\n"
	    "fill_record_bytes %d\nfill_depth %u\n",
	    entries, (double)(now_ns() - t0) / 1e9, (long long)sb.st_size,
	    (unsigned long long)(st.ms_branch_pages + st.ms_leaf_pages +
	    st.ms_overflow_pages) * st.ms_psize,
	    (double)keybytes / entries, CACHE_RECORD_LEN, st.ms_depth);
	return 0;
}

static int
cmd_latency(const char *path, uint32_t entries, size_t samples)
{
	struct cache *c = open_cache(path);
	uint64_t *ns = calloc(samples, sizeof(*ns)), t0, t;
	unsigned char spki[DETECTOR_SHA256_LEN];
	struct cache_record r;
	char host[64];
	size_t j;
	uint32_t i;

	if (ns == NULL)
		fatal("out of memory", NULL);
	/* The clock's own cost, included in every sample below. */
	t0 = now_ns();
	for (j = 0; j < 100000; j++)
		(void)now_ns();
	printf("clock_ns %.1f\n", (double)(now_ns() - t0) / 100000.0);
	for (j = 0; j < samples; j++)
		ns[j] = random_recall(c, entries, 1);
	print_percentiles("fresh", ns, samples);
	t0 = now_ns();
	for (i = 0; i < entries; i++) {
		entry_host(i, host, sizeof(host));
		entry_spki(i, spki);
		if (!cache_recall(c, host, 443, spki, &bench_policy, 86400, NOW, &r))
			fatal("an entry is missing", host);
	}
	t = now_ns() - t0;
	printf("sweep_ns_per_call %.1f\n", (double)t / entries);
	for (j = 0; j < samples; j++)
		ns[j] = random_recall(c, entries, 1);
	print_percentiles("warm", ns, samples);
	free(ns);
	cache_close(c);
	return 0;
}

/* One process of `multi`: its own handle, a start signal, a fixed time. */
static void
multi_child(const char *path, uint32_t entries, double seconds, int start_fd,
    int out_fd, unsigned int seed)
{
	struct cache *c;
	unsigned long long count = 0;
	uint64_t t0, end, t;
	char buf[128], go;
	int j, n;

	rng_state ^= (uint64_t)seed * 0x2545f4914f6cdd1du;
	c = open_cache(path);
	for (j = 0; j < 20000; j++)             /* map some pages first */
		(void)random_recall(c, entries, 0);
	if (read(start_fd, &go, 1) < 0)
		_exit(1);
	t0 = now_ns();
	end = t0 + (uint64_t)(seconds * 1e9);
	do {
		for (j = 0; j < 1024; j++)
			(void)random_recall(c, entries, 0);
		count += 1024;
	} while ((t = now_ns()) < end);
	n = snprintf(buf, sizeof(buf), "%llu %llu\n", count,
	    (unsigned long long)(t - t0));
	if (write(out_fd, buf, (size_t)n) != n)
		_exit(1);
	cache_close(c);
	_exit(0);
}

static int
cmd_multi(const char *path, uint32_t entries, double seconds, int procs)
{
	int start[2], out[2], p, status, failed = 0;
	double total = 0;
	pid_t pid[64];
	FILE *f;

	if (procs < 1 || procs > 64 || pipe(start) == -1 || pipe(out) == -1)
		fatal("bad process count, or no pipe", NULL);
	for (p = 0; p < procs; p++) {
		if ((pid[p] = fork()) == -1)
			fatal("fork", strerror(errno));
		if (pid[p] == 0) {
			close(start[1]);
			close(out[0]);
			multi_child(path, entries, seconds, start[0], out[1],
			    (unsigned int)p + 1);
		}
	}
	close(start[0]);
	close(out[1]);
	usleep(200000);         /* every child has opened and warmed up */
	close(start[1]);        /* go: every read() returns 0 at once */
	f = fdopen(out[0], "r");
	for (p = 0; p < procs; p++) {
		unsigned long long count, ns;

		if (f == NULL || fscanf(f, "%llu %llu", &count, &ns) != 2) {
			failed = 1;
			break;
		}
		total += (double)count / ((double)ns / 1e9);
	}
	for (p = 0; p < procs; p++) {
		if (waitpid(pid[p], &status, 0) == -1 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed = 1;
	}
	if (failed)
		fatal("a lookup process failed", NULL);
	printf("multi_procs %d\nmulti_lookups_per_s %.0f\n", procs, total);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && strcmp(argv[1], "lookup") == 0)
		return cmd_lookup(argv[2], atol(argv[3]));
	if (argc == 4 && strcmp(argv[1], "fill") == 0)
		return cmd_fill(argv[2], (uint32_t)atol(argv[3]));
	if (argc == 5 && strcmp(argv[1], "latency") == 0)
		return cmd_latency(argv[2], (uint32_t)atol(argv[3]),
		    (size_t)atol(argv[4]));
	if (argc == 6 && strcmp(argv[1], "multi") == 0)
		return cmd_multi(argv[2], (uint32_t)atol(argv[3]),
		    atof(argv[4]), atoi(argv[5]));
	fprintf(stderr, "usage: cache_bench lookup PATH CALLS\n"
	    "       cache_bench fill PATH ENTRIES\n"
	    "       cache_bench latency PATH ENTRIES SAMPLES\n"
	    "       cache_bench multi PATH ENTRIES SECONDS PROCS\n");
	return 2;
}
