/* SPDX-License-Identifier: MIT */
/*
 * Remote stores: hmmap's faults on a redis:// store beside what the same
 * client gets from Redis directly, measured in one run against servers this
 * program starts on loopback (and stops):
 *
 *   1. sequential faults (4 KiB pages, the core's readahead) against
 *      pipelined GETs of 4 KiB values on one connection (depth 64 and 256,
 *      the better one is the baseline); target >= 0.8x;
 *   2. random faults on one thread (readahead off), p50 latency, against
 *      the p50 of one GET round trip of an ordinary (blocking) client;
 *      target <= 1.3x; also beside a client that spins for its reply, as
 *      the store does by default, and the store with spin=0;
 *   3. a cluster of three masters against a one-master cluster, sequential
 *      faults from several threads; target >= 2x (needs CPUs for three
 *      servers and the client: on 2 CPUs it cannot be met, see the note);
 *   and, to explain the design: strided faults with the store's prefetch on
 *   and off, encrypted pages against plain ones, and single-page writes
 *   through the store (hm_store_write: a new key per version, the dead ones
 *   deleted in batches) against one SET round trip.
 *
 * The fault-serving mode is process-wide, so each mode (thread, sigbus)
 * runs the hmmap parts in a forked child that reports "key value" lines
 * through a pipe. Figures are medians of --runs runs.
 *
 *   bench_remote [--size 64M] [--runs 3] [--threads 4] [--quick]
 */
#include <hiredis/hiredis.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "bench_common.h"
#include "../tests/harness.h"
#include "../tests/testutil.h"
#include "../tests/remote_util.h"

static const char usage[] =
	"usage: bench_remote [--size BYTES] [--runs N] [--threads N] [--quick]\n"
	"  sequential and random faults on redis:// beside pipelined GETs and GET\n"
	"  round trips; a 3-master cluster beside a 1-master one (servers started here)\n";

static struct opts O = { .runs = 3, .size = 64ull << 20 };
static int nthreads = 4;
static int port_single = -1, cl3[3], cl1 = -1;

/* ------------------------------------------------------------ baselines */

static redisContext *conn(int port)
{
	struct timeval tv = { 5, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	if (!c || c->err) {
		fprintf(stderr, "cannot connect to redis on %d\n", port);
		exit(1);
	}
	return c;
}

static void populate(redisContext *c, uint64_t n)
{
	unsigned char page[PG];
	redisReply *r;

	for (uint64_t i = 0; i < n; i++) {
		fill_page(page, i);
		redisAppendCommand(c, "SET bench:%llu %b", (unsigned long long)i, page, (size_t)PG);
		if ((i & 255) == 255 || i + 1 == n) {
			for (uint64_t k = i & ~255ull; k <= i; k++) {
				redisGetReply(c, (void **)&r);
				freeReplyObject(r);
			}
		}
	}
}

/* Pages per second of GETs of n pages pipelined `depth` deep on one connection. */
static double pipelined_gets(redisContext *c, uint64_t n, unsigned depth)
{
	redisReply *r;
	uint64_t bad = 0;
	double t0 = now();

	for (uint64_t i = 0; i < n; i += depth) {
		uint64_t m = n - i < depth ? n - i : depth;
		for (uint64_t k = 0; k < m; k++)
			redisAppendCommand(c, "GET bench:%llu", (unsigned long long)(i + k));
		for (uint64_t k = 0; k < m; k++) {
			redisGetReply(c, (void **)&r);
			uint64_t w;
			memcpy(&w, r->str, 8);
			bad += w != gen(i + k);
			freeReplyObject(r);
		}
	}
	double t = now() - t0;
	if (bad)
		printf("  !! %llu GETs returned wrong data\n", (unsigned long long)bad);
	return (double)n / t;
}

/*
 * p50 of one GET round trip, in microseconds: as an ordinary client waits
 * (asleep in read()), or with spin, busy-polling the socket until the reply
 * is there first, as the store does by default (spin=).
 */
static double get_rtt_p50(redisContext *c, uint64_t n, int samples, int spin)
{
	static double lat[20000];
	uint64_t s = 99;

	for (int i = 0; i < samples; i++) {
		uint64_t k = xs64(&s) % n;
		redisReply *r = NULL;
		int done = 0;
		char b;
		double t0 = now();
		redisAppendCommand(c, "GET bench:%llu", (unsigned long long)k);
		while (!done && redisBufferWrite(c, &done) == REDIS_OK)
			;
		while (spin && recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN)
			;
		redisGetReply(c, (void **)&r);
		lat[i] = (now() - t0) * 1e6;
		freeReplyObject(r);
	}
	return p50(lat, samples);
}

/* p50 of one SET of a 4 KiB value, in microseconds (an ordinary client). */
static double set_rtt_p50(redisContext *c, uint64_t n, int samples)
{
	static double lat[20000];
	unsigned char page[PG];
	uint64_t s = 5;

	memset(page, 0x5a, sizeof page);
	for (int i = 0; i < samples; i++) {
		uint64_t k = xs64(&s) % n;
		double t0 = now();
		redisReply *r = redisCommand(c, "SET benchw:%llu %b", (unsigned long long)k, page,
					     (size_t)PG);
		lat[i] = (now() - t0) * 1e6;
		freeReplyObject(r);
	}
	return p50(lat, samples);
}

/* ------------------------------------------------------------ hmmap side */

static FILE *rep; /* the child's report pipe */

static void report(const char *key, double v)
{
	fprintf(rep, "%s %.6f\n", key, v);
	fflush(rep);
}

struct region {
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	unsigned char *p;
	uint64_t len;
};

static int region_open(struct region *g, const char *uri, uint64_t len, uint64_t budget)
{
	memset(g, 0, sizeof *g);
	if (hm_store_open(&g->s, uri, 0) || hm_cache_new(&g->c, budget, "clock") ||
	    hm_region_map(&g->r, g->c, g->s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, PG)) {
		fprintf(stderr, "  !! %s: %s\n", uri, hm_errormsg());
		return -1;
	}
	g->p = hm_region_addr(g->r);
	g->len = len;
	/* Write every page (through eviction), sync, drop: the data lives remotely. */
	for (uint64_t pg = 0; pg < len / PG; pg++)
		fill_page(g->p + pg * PG, pg);
	if (hm_sync(g->p, len, MS_SYNC) || hm_advise(g->p, len, HM_ADV_DONTNEED)) {
		fprintf(stderr, "  !! populating %s: %s\n", uri, hm_errormsg());
		return -1;
	}
	return 0;
}

static void region_close(struct region *g)
{
	if (g->r)
		hm_region_unmap(g->r);
	if (g->c)
		hm_cache_free(g->c);
	if (g->s)
		hm_store_close(g->s);
}

struct scan {
	struct region *g;
	uint64_t stride;
	int parts;
};

static void *scan_worker(void *arg)
{
	struct worker *w = arg;
	struct scan *sc = w->arg;
	uint64_t pages = sc->g->len / PG, per = pages / (uint64_t)w->n;
	uint64_t lo = per * (uint64_t)w->id, hi = lo + per;

	worker_start(w);
	/* Strided: all residues of the stride, each a strided pass. */
	for (uint64_t r = 0; r < sc->stride; r++) {
		for (uint64_t pg = lo + r; pg < hi; pg += sc->stride) {
			uint64_t v = *(volatile uint64_t *)(sc->g->p + pg * PG);
			w->bad += v != gen(pg);
			w->done++;
		}
	}
	w->t_end = now();
	return NULL;
}

/* Pages per second of a scan over the region by n threads (after dropping it). */
static double scan(struct region *g, int n, uint64_t stride)
{
	struct worker w[MAX_THREADS];
	struct scan sc = { g, stride, n };
	uint64_t done = 0, bad = 0;

	hm_advise(g->p, g->len, HM_ADV_DONTNEED);
	hm_advise(g->p, g->len, stride == 1 ? HM_ADV_NORMAL : HM_ADV_RANDOM);
	double t = run_threads(n, scan_worker, &sc, w);
	for (int i = 0; i < n; i++) {
		done += w[i].done;
		bad += w[i].bad;
	}
	if (bad)
		printf("  !! %llu pages read wrong\n", (unsigned long long)bad);
	return (double)done / t;
}

/*
 * n threads, each scanning its own region (one per thread, on the same store
 * and cache: the core keeps one readahead stream per region, so threads
 * sharing a region would break each other's streams into single faults).
 */
struct multi {
	struct region *g;
	struct hm_region *r[MAX_THREADS];
	uint64_t per; /* bytes per region */
};

static void *multi_worker(void *arg)
{
	struct worker *w = arg;
	struct multi *m = w->arg;
	unsigned char *p = hm_region_addr(m->r[w->id]);
	uint64_t first = m->per / PG * (uint64_t)w->id;

	worker_start(w);
	for (uint64_t pg = 0; pg < m->per / PG; pg++) {
		uint64_t v = *(volatile uint64_t *)(p + pg * PG);
		w->bad += v != gen(first + pg);
		w->done++;
	}
	w->t_end = now();
	return NULL;
}

static double scan_multi(struct region *g, int n)
{
	struct worker w[MAX_THREADS];
	struct multi m = { .g = g, .per = g->len / (uint64_t)n / PG * PG };
	uint64_t done = 0, bad = 0;
	double t;

	hm_advise(g->p, g->len, HM_ADV_DONTNEED);
	for (int i = 0; i < n; i++)
		if (hm_region_map(&m.r[i], g->c, g->s, m.per * (uint64_t)i, m.per, PROT_READ,
				  HM_CACHED, PG)) {
			fprintf(stderr, "  !! map: %s\n", hm_errormsg());
			exit(1);
		}
	t = run_threads(n, multi_worker, &m, w);
	for (int i = 0; i < n; i++) {
		done += w[i].done;
		bad += w[i].bad;
		hm_region_unmap(m.r[i]);
	}
	if (bad)
		printf("  !! %llu pages read wrong\n", (unsigned long long)bad);
	return (double)done / t;
}

/* p50 of a random fault on an absent page, microseconds. */
static double random_fault_p50(struct region *g, int samples)
{
	static double lat[20000];
	uint64_t pages = g->len / PG, s = 7;
	unsigned char *seen = calloc(pages, 1);
	int k = 0;

	hm_advise(g->p, g->len, HM_ADV_DONTNEED);
	hm_advise(g->p, g->len, HM_ADV_RANDOM);
	while (k < samples && k < (int)pages / 2) {
		uint64_t pg = xs64(&s) % pages;
		if (seen[pg])
			continue;
		seen[pg] = 1;
		double t0 = now();
		uint64_t v = *(volatile uint64_t *)(g->p + pg * PG);
		lat[k++] = (now() - t0) * 1e6;
		if (v != gen(pg))
			printf("  !! page %llu read wrong\n", (unsigned long long)pg);
	}
	free(seen);
	return p50(lat, k);
}

static void child_single(const char *mode)
{
	char uri[256], key[64];
	struct region g, g0;
	struct hm_remote_stats st;
	uint64_t budget = O.size / 4;

	/*
	 * The default store, and one sleeping in read() for every reply
	 * (spin=0), run by turns so that neither gains from going later.
	 */
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/bench?conns=4,spin=0", port_single);
	if (region_open(&g0, uri, O.size, budget))
		exit(1);
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/bench?conns=4", port_single);
	if (region_open(&g, uri, O.size, budget))
		exit(1);
	for (int r = 0; r < O.runs; r++) {
		snprintf(key, sizeof key, "seq.%s", mode);
		report(key, scan(&g, 1, 1));
		snprintf(key, sizeof key, "seq.nospin.%s", mode);
		report(key, scan(&g0, 1, 1));
		snprintf(key, sizeof key, "rand.%s", mode);
		report(key, random_fault_p50(&g, O.quick ? 500 : 2000));
		snprintf(key, sizeof key, "rand.nospin.%s", mode);
		report(key, random_fault_p50(&g0, O.quick ? 500 : 2000));
	}
	region_close(&g);
	region_close(&g0);
	/* The same with a cache that holds the data: no eviction on the way. */
	if (region_open(&g, uri, O.size, O.size * 2))
		exit(1);
	for (int r = 0; r < O.runs; r++) {
		snprintf(key, sizeof key, "seqfit.%s", mode);
		report(key, scan(&g, 1, 1));
	}
	region_close(&g);
	if (region_open(&g, uri, O.size, budget))
		exit(1);
	hm_remote_stats(g.s, &st);
	/* The strided scan with the store's prefetch, and without it. */
	for (int r = 0; r < O.runs; r++) {
		snprintf(key, sizeof key, "stride.on.%s", mode);
		report(key, scan(&g, 1, 4));
	}
	region_close(&g);
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/bench?prefetch=0", port_single);
	if (region_open(&g, uri, O.size, budget))
		exit(1);
	for (int r = 0; r < O.runs; r++) {
		snprintf(key, sizeof key, "stride.off.%s", mode);
		report(key, scan(&g, 1, 4));
	}
	region_close(&g);
}

/*
 * Single-page writes through the store at random pages of 256 (each a
 * rewrite: its old version becomes dead): p50 microseconds, and round trips
 * per write, which counts the batched deletes of dead versions too.
 */
static void store_writes(const char *uri, int samples)
{
	static double lat[20000];
	static unsigned char page[PG];
	struct hm_store *s;
	struct hm_remote_stats a, b;
	uint64_t x = 3;

	if (hm_store_open(&s, uri, 0)) {
		fprintf(stderr, "  !! %s: %s\n", uri, hm_errormsg());
		exit(1);
	}
	for (uint64_t pg = 0; pg < 256; pg++)
		if (hm_store_write(s, page, PG, pg * PG)) {
			fprintf(stderr, "  !! %s: %s\n", uri, hm_errormsg());
			exit(1);
		}
	hm_remote_stats(s, &a);
	for (int i = 0; i < samples; i++) {
		memset(page, i, 64);
		double t0 = now();
		int rc = hm_store_write(s, page, PG, (xs64(&x) % 256) * PG);
		lat[i] = (now() - t0) * 1e6;
		if (rc) {
			fprintf(stderr, "  !! %s: %s\n", uri, hm_errormsg());
			exit(1);
		}
	}
	hm_remote_stats(s, &b);
	hm_store_close(s);
	report("write.p50", p50(lat, samples));
	report("write.trips", (double)(b.round_trips - a.round_trips) / samples);
}

static void child_more(void)
{
	char uri[512];
	struct region g;
	uint64_t budget = O.size / 4;
	char keyf[300];

	/* Encrypted pages. */
	{
		unsigned char k[32];
		tu_path(keyf, sizeof keyf, "bench.key");
		FILE *f = fopen(keyf, "w");
		tu_fill(k, sizeof k, 1);
		for (int i = 0; f && i < 32; i++)
			fprintf(f, "%02x", k[i]);
		if (f)
			fclose(f);
		chmod(keyf, 0600);
	}
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/benchw", port_single);
	for (int r = 0; r < O.runs; r++)
		store_writes(uri, O.quick ? 500 : 2000);
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/benchc?key_file=%s", port_single, keyf);
	if (region_open(&g, uri, O.size, budget))
		exit(1);
	for (int r = 0; r < O.runs; r++)
		report("seq.crypt", scan(&g, 1, 1));
	region_close(&g);
	/*
	 * Clusters: three masters against one, the same threads, with a cache
	 * that holds the data (several streams on a small cache would measure
	 * readahead thrashing, not the servers).
	 */
	snprintf(uri, sizeof uri,
		 "redis-cluster://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/benchk?conns=4", cl3[0],
		 cl3[1], cl3[2]);
	if (region_open(&g, uri, O.size, O.size * 2))
		exit(1);
	for (int r = 0; r < O.runs; r++) {
		report("cl3.t1", scan(&g, 1, 1));
		report("cl3.tn", scan_multi(&g, nthreads));
	}
	region_close(&g);
	snprintf(uri, sizeof uri, "redis-cluster://127.0.0.1:%d/benchk?conns=4", cl1);
	if (region_open(&g, uri, O.size, O.size * 2))
		exit(1);
	for (int r = 0; r < O.runs; r++) {
		report("cl1.t1", scan(&g, 1, 1));
		report("cl1.tn", scan_multi(&g, nthreads));
	}
	region_close(&g);
}

/* Runs fn in a child with HMMAP_FAULT_MODE=mode; collects its lines into res. */
static void in_child(struct results *res, const char *mode, void (*fn1)(const char *),
		     void (*fn2)(void))
{
	int pfd[2], st;
	pid_t pid;

	if (pipe(pfd))
		exit(1);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		rep = fdopen(pfd[1], "w");
		setenv("HMMAP_FAULT_MODE", mode, 1);
		if (fn1)
			fn1(mode);
		if (fn2)
			fn2();
		fclose(rep);
		_exit(0);
	}
	close(pfd[1]);
	FILE *f = fdopen(pfd[0], "r");
	char key[128];
	double v;
	while (f && fscanf(f, "%127s %lf", key, &v) == 2)
		res_add(res, key, v);
	if (f)
		fclose(f);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		printf("  !! the %s child failed (%s)\n", mode, tu_status_str(st));
}

static int make_cluster(int *ports, int n)
{
	char cmd[512], out[4096];
	size_t k;

	for (int i = 0; i < n; i++) {
		char cf[64];
		ports[i] = ru_free_port();
		snprintf(cf, sizeof cf, "nodes-%d.conf", ports[i]);
		if (ports[i] < 0 || ru_redis_start(ports[i], "--cluster-enabled", "yes",
						   "--cluster-config-file", cf, "--appendonly", "no",
						   NULL) < 0)
			return -1;
	}
	if (n == 1) {
		if (ru_sh(out, sizeof out, "redis-cli -p %d CLUSTER ADDSLOTSRANGE 0 16383", ports[0]))
			return -1;
	} else {
		k = (size_t)snprintf(cmd, sizeof cmd, "redis-cli --cluster create");
		for (int i = 0; i < n; i++)
			k += (size_t)snprintf(cmd + k, sizeof cmd - k, " 127.0.0.1:%d", ports[i]);
		snprintf(cmd + k, sizeof cmd - k, " --cluster-replicas 0 --cluster-yes >/dev/null 2>&1");
		if (ru_sh(NULL, 0, "%s", cmd))
			return -1;
	}
	for (int t = 0; t < 200; t++) {
		int ok = 0;
		for (int i = 0; i < n; i++) {
			ru_sh(out, sizeof out, "redis-cli -p %d CLUSTER INFO", ports[i]);
			ok += strstr(out, "cluster_state:ok") != NULL;
		}
		if (ok == n)
			return 0;
		ru_sleep_ms(50);
	}
	return -1;
}

/*
 * One row per fault mode: the medians of PREFIX1.MODE and PREFIX2.MODE side
 * by side with their ratio, as rates, or (us) as microseconds.
 */
static void mode_rows(const struct results *res, const char *pre, const char *post,
		      const char *key1, const char *key2, int us)
{
	static const char *const modes[] = { "thread", "sigbus" };
	char k1[64], k2[64], a[32], b[32], c[32];

	for (int m = 0; m < 2; m++) {
		snprintf(k1, sizeof k1, "%s.%s", key1, modes[m]);
		snprintf(k2, sizeof k2, "%s.%s", key2, modes[m]);
		double v1 = res_med(res, k1), v2 = res_med(res, k2);
		if (us) {
			snprintf(a, sizeof a, "%.1f", v1);
			snprintf(b, sizeof b, "%.1f", v2);
		} else {
			fmt_rate(a, sizeof a, v1);
			fmt_rate(b, sizeof b, v2);
		}
		fmt_ratio(c, sizeof c, v1, v2);
		printf("%s%-6s%s%12s %12s %8s\n", pre, modes[m], post, a, b, c);
	}
}

/* n runs of every baseline on rc. */
static void baselines(struct results *res, redisContext *rc, uint64_t pages, int n)
{
	for (int r = 0; r < n; r++) {
		res_add(res, "get.pipe64", pipelined_gets(rc, pages, 64));
		res_add(res, "get.pipe256", pipelined_gets(rc, pages, 256));
		res_add(res, "get.rtt", get_rtt_p50(rc, pages, O.quick ? 500 : 2000, 0));
		res_add(res, "get.rtt.spin", get_rtt_p50(rc, pages, O.quick ? 500 : 2000, 1));
		res_add(res, "set.rtt", set_rtt_p50(rc, 256, O.quick ? 500 : 2000));
	}
}

int main(int argc, char **argv)
{
	struct results res = { 0 };
	char a[32], b[32], c[32];

	/* harness.h comes along with the server helpers; its counters are unused here. */
	(void)t_case_failed;
	(void)t_case_skipped;
	(void)t_reason;
	parse_opts(&O, argc, argv, usage);
	if (O.quick && !O.size_set)
		O.size = 16ull << 20;
	if (O.quick && !O.runs_set)
		O.runs = 1;
	if (O.threads_set)
		nthreads = O.threads[0];
	if (!ru_have("redis-server") || !ru_have("redis-cli")) {
		printf("bench_remote: redis-server not installed, skipped\n");
		return 77;
	}
	print_header("remote stores: redis:// faults beside direct Redis access",
		     "servers on loopback started by this program; 4 KiB pages");
	port_single = ru_free_port();
	if (ru_redis_start(port_single, "--appendonly", "no", NULL) < 0 || make_cluster(cl3, 3) ||
	    make_cluster(&cl1, 1)) {
		printf("cannot start the servers\n");
		ru_kill_all();
		ru_cleanup();
		return 1;
	}
	uint64_t pages = O.size / PG;
	printf("data %llu MiB (%llu pages), cache budget %llu MiB (clusters: twice the data), %d runs, "
	       "%d threads\n",
	       (unsigned long long)(O.size >> 20), (unsigned long long)pages,
	       (unsigned long long)(O.size >> 22), O.runs, nthreads);
	/*
	 * Baselines, from this process (no hmmap), half of the runs before the
	 * hmmap runs and half after: this machine's speed drifts by tens of
	 * percent within minutes, and a baseline taken only before would
	 * weigh a drift on one side of every ratio.
	 */
	redisContext *rc = conn(port_single);
	populate(rc, pages);
	baselines(&res, rc, pages, (O.runs + 1) / 2);
	in_child(&res, "thread", child_single, NULL);
	in_child(&res, "sigbus", child_single, child_more);
	baselines(&res, rc, pages, O.runs / 2 > 0 ? O.runs / 2 : 1);
	redisFree(rc);

	double base = res_med(&res, "get.pipe64") > res_med(&res, "get.pipe256")
			      ? res_med(&res, "get.pipe64")
			      : res_med(&res, "get.pipe256");
	double rtt = res_med(&res, "get.rtt");
	printf("\n%-58s %12s %12s %8s\n", "", "hmmap", "baseline", "ratio");
	const char *modes[] = { "thread", "sigbus" };
	for (int m = 0; m < 2; m++) {
		char k[64];
		snprintf(k, sizeof k, "seq.%s", modes[m]);
		fmt_rate(a, sizeof a, res_med(&res, k));
		fmt_rate(b, sizeof b, base);
		fmt_ratio(c, sizeof c, res_med(&res, k), base);
		printf("sequential faults, pages/s (%-6s) vs pipelined GETs     %12s %12s %8s  (target >= 0.80x)\n",
		       modes[m], a, b, c);
	}
	for (int m = 0; m < 2; m++) {
		char k[64];
		snprintf(k, sizeof k, "seqfit.%s", modes[m]);
		fmt_rate(a, sizeof a, res_med(&res, k));
		fmt_rate(b, sizeof b, base);
		fmt_ratio(c, sizeof c, res_med(&res, k), base);
		printf("  the same (%-6s), cache holds the data (no eviction)  %12s %12s %8s\n",
		       modes[m], a, b, c);
	}
	for (int m = 0; m < 2; m++) {
		char k[64];
		snprintf(k, sizeof k, "rand.%s", modes[m]);
		fmt_ratio(c, sizeof c, res_med(&res, k), rtt);
		printf("random fault p50, us (%-6s) vs one GET round trip p50  %12.1f %12.1f %8s  (target <= 1.30x)\n",
		       modes[m], res_med(&res, k), rtt, c);
	}
	for (int m = 0; m < 2; m++) {
		char k[64];
		snprintf(k, sizeof k, "rand.%s", modes[m]);
		fmt_ratio(c, sizeof c, res_med(&res, k), res_med(&res, "get.rtt.spin"));
		printf("  the same vs a GET that spins for its reply too          %12.1f %12.1f %8s\n",
		       res_med(&res, k), res_med(&res, "get.rtt.spin"), c);
	}
	mode_rows(&res, "random fault p50, us (", ") spin=50 (default) vs spin=0 ", "rand",
		  "rand.nospin", 1);
	mode_rows(&res, "sequential faults, pages/s (", ") spin=50 vs spin=0   ", "seq",
		  "seq.nospin", 0);
	mode_rows(&res, "stride-4 faults, pages/s (", ") prefetch on vs off     ", "stride.on",
		  "stride.off", 0);
	fmt_rate(a, sizeof a, res_med(&res, "seq.crypt"));
	fmt_rate(b, sizeof b, res_med(&res, "seq.sigbus"));
	fmt_ratio(c, sizeof c, res_med(&res, "seq.crypt"), res_med(&res, "seq.sigbus"));
	printf("sequential faults, pages/s (sigbus) encrypted vs plain     %12s %12s %8s\n", a, b, c);
	fmt_ratio(c, sizeof c, res_med(&res, "write.p50"), res_med(&res, "set.rtt"));
	printf("random page writes, p50 us (store API) vs one SET p50      %12.1f %12.1f %8s\n"
	       "  round trips per write (dead versions deleted 64 at a time) %10.3f\n",
	       res_med(&res, "write.p50"), res_med(&res, "set.rtt"), c,
	       res_med(&res, "write.trips"));
	fmt_rate(a, sizeof a, res_med(&res, "cl3.t1"));
	fmt_rate(b, sizeof b, res_med(&res, "cl1.t1"));
	fmt_ratio(c, sizeof c, res_med(&res, "cl3.t1"), res_med(&res, "cl1.t1"));
	printf("cluster 3 masters vs 1, sequential pages/s, 1 thread       %12s %12s %8s\n", a, b, c);
	fmt_rate(a, sizeof a, res_med(&res, "cl3.tn"));
	fmt_rate(b, sizeof b, res_med(&res, "cl1.tn"));
	fmt_ratio(c, sizeof c, res_med(&res, "cl3.tn"), res_med(&res, "cl1.tn"));
	printf("cluster 3 masters vs 1, sequential pages/s, %d threads      %12s %12s %8s  (target >= 2x)\n"
	       "  (each thread scans its own region of the store)\n",
	       nthreads, a, b, c);
	printf("\nbaselines: pipelined GET depth 64 %.0f/s, depth 256 %.0f/s (min..max over runs "
	       "%.0f..%.0f); GET round trip p50 %.1f us (%.1f us spinning for the reply)\n",
	       res_med(&res, "get.pipe64"), res_med(&res, "get.pipe256"),
	       vmin(res.e[0].v, res.e[0].nv), vmax(res.e[0].v, res.e[0].nv), rtt,
	       res_med(&res, "get.rtt.spin"));
	printf("note: %ld CPUs run the client, its fault threads and every server; a 3-master "
	       "cluster can only scale with CPUs for three servers\n",
	       sysconf(_SC_NPROCESSORS_ONLN));
	ru_kill_all();
	ru_cleanup();
	return 0;
}
