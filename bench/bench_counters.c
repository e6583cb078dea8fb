/* SPDX-License-Identifier: MIT */
/*
 * bench_counters: what statistics cost on the fault path. The workload of
 * bench_fault (random first touches of 4 KiB pages whose data is in RAM: a
 * mem: store and a cache that never evicts, one page per fault), run with
 * counting on and off in the same process, alternating run by run (on, off,
 * off, on, ...) so that drift of a shared machine falls on both alike.
 * "Off" is what HMMAP_STATS=0 gives: no counter is added, no fault is timed;
 * the library switches it at run time here (hm__stats_set(), an internal
 * call) so that both sides share one process, one cache and one store.
 *
 * Each fault mode runs in its own child (the mode is fixed per process).
 * Printed: faults/s median [min..max] for each side, the ratio on/off, and
 * the cost in percent (target: at most 2%).
 *
 * A last child measures what the live segment costs a process that does
 * nothing: a large region (64 GiB, 8 GiB with --quick) with one page touched
 * in every 16 MiB, so that all of its page entries exist, then the process's
 * CPU time over a few idle seconds, and one full walk of those entries.
 */
#include <sys/resource.h>

#include "bench_common.h"

#include "hmmap.h"
#include "core/internal.h"

static struct opts O;

static const char usage[] =
	"usage: bench_counters [--threads N[,N...]] [--runs N] [--size SIZE] [--quick]\n"
	"  The fault benchmark with statistics on and off in the same process.\n"
	"  --threads  faulting threads (1,2)\n"
	"  --runs     runs per side and configuration (11)\n"
	"  --size     bytes touched per run (128M)\n"
	"  --quick    16M and 5 runs\n";

struct touch {
	char *base;
	uint64_t npages;
	uint32_t **perm;
};

static void *touch_fn(void *arg)
{
	struct worker *w = arg;
	struct touch *t = w->arg;
	uint64_t lo = t->npages * (uint64_t)w->id / (uint64_t)w->n;
	uint64_t hi = t->npages * (uint64_t)(w->id + 1) / (uint64_t)w->n;
	uint32_t *perm = t->perm[w->id];
	uint64_t bad = 0;

	worker_start(w);
	for (uint64_t i = 0; i < hi - lo; i++) {
		uint64_t p = lo + perm[i];
		if (*(volatile uint64_t *)(t->base + p * PG) != gen(p))
			bad++;
	}
	w->t_end = now();
	w->done = hi - lo;
	w->bad = bad;
	return NULL;
}

static uint32_t **make_perms(uint64_t npages, int n, unsigned run)
{
	uint32_t **perm = calloc((size_t)n, sizeof *perm);

	for (int t = 0; t < n; t++) {
		uint64_t lo = npages * (uint64_t)t / (uint64_t)n;
		uint64_t cnt = npages * (uint64_t)(t + 1) / (uint64_t)n - lo;
		uint64_t s = seed_of(run, (unsigned)t);
		perm[t] = malloc(cnt * sizeof **perm);
		for (uint64_t i = 0; i < cnt; i++)
			perm[t][i] = (uint32_t)i;
		for (uint64_t i = cnt; i > 1; i--) {
			uint64_t j = xs64(&s) % i;
			uint32_t x = perm[t][i - 1];
			perm[t][i - 1] = perm[t][j];
			perm[t][j] = x;
		}
	}
	return perm;
}

static void free_perms(uint32_t **perm, int n)
{
	for (int t = 0; t < n; t++)
		free(perm[t]);
	free(perm);
}

static int die_hm(const char *what, int rc)
{
	printf("%s: %s (%s)\n", what, strerror(-rc), hm_errormsg());
	return 1;
}

/* One timed run: map, touch every page once in random order, unmap. */
static int one_run(struct hm_cache *c, struct hm_store *st, int n, unsigned run, double *rate,
		   uint64_t *bad, uint64_t *faults)
{
	struct worker w[MAX_THREADS];
	struct hm_region *r;
	struct hm_stats s;
	uint32_t **perm = make_perms(O.size / PG, n, run);
	struct touch t = { .npages = O.size / PG, .perm = perm };
	uint64_t done = 0;
	double dt;
	int rc;

	if ((rc = hm_region_map(&r, c, st, 0, O.size, PROT_READ, HM_CACHED, 4096)))
		return die_hm("hm_region_map", rc);
	hm_advise(hm_region_addr(r), O.size, HM_ADV_RANDOM);
	t.base = hm_region_addr(r);
	dt = run_threads(n, touch_fn, &t, w);
	for (int i = 0; i < n; i++) {
		done += w[i].done;
		*bad += w[i].bad;
	}
	*rate = (double)done / dt;
	hm_region_stats(r, &s);
	*faults = s.faults_missing;
	if ((rc = hm_region_unmap(r)))
		return die_hm("hm_region_unmap", rc);
	free_perms(perm, n);
	return 0;
}

/* The idle child: the publisher's cost with a large region mapped. */
static int idle_main(void)
{
	uint64_t size = (O.quick ? 8ull : 64ull) << 30;
	struct hm_store *st;
	struct hm_cache *c;
	struct hm_region *r;
	struct hm_stats s;
	struct rusage u0, u1;
	char uri[64];
	double v[1];
	int rc;

	snprintf(uri, sizeof uri, "mem:%llu", (unsigned long long)size);
	if ((rc = hm_store_open(&st, uri, 0)))
		return die_hm("hm_store_open", rc);
	if ((rc = hm_cache_new(&c, 64ull << 20, NULL)))
		return die_hm("hm_cache_new", rc);
	if ((rc = hm_region_map(&r, c, st, 0, size, PROT_READ | PROT_WRITE, HM_CACHED, PG)))
		return die_hm("hm_region_map", rc);
	for (uint64_t off = 0; off < size; off += 16ull << 20)
		((volatile char *)hm_region_addr(r))[off] = 1;
	double t = now();
	hm_region_stats(r, &s);
	v[0] = (now() - t) * 1e3;
	res_emit("idle.walk_ms", v, 1);
	v[0] = (double)(size >> 30);
	res_emit("idle.gib", v, 1);
	getrusage(RUSAGE_SELF, &u0);
	t = now();
	sleep(4);
	getrusage(RUSAGE_SELF, &u1);
	double cpu = (double)(u1.ru_utime.tv_sec - u0.ru_utime.tv_sec) +
		     (double)(u1.ru_stime.tv_sec - u0.ru_stime.tv_sec) +
		     (double)(u1.ru_utime.tv_usec - u0.ru_utime.tv_usec) * 1e-6 +
		     (double)(u1.ru_stime.tv_usec - u0.ru_stime.tv_usec) * 1e-6;
	v[0] = 100.0 * cpu / (now() - t);
	res_emit("idle.cpu_pct", v, 1);
	if ((rc = hm_region_unmap(r)) || (rc = hm_cache_free(c)) || (rc = hm_store_close(st)))
		return die_hm("teardown", rc);
	return 0;
}

static int child_main(void)
{
	const char *mode = O.child;
	struct hm_store *st;
	struct hm_cache *c;
	struct hm_region *r;
	char uri[64], key[96];
	int rc, fm = hm_fault_mode();

	if (fm < 0)
		return die_hm("hm_fault_mode", fm);
	snprintf(uri, sizeof uri, "mem:%llu", (unsigned long long)O.size);
	if ((rc = hm_store_open(&st, uri, 0)))
		return die_hm("hm_store_open", rc);
	if ((rc = hm_cache_new(&c, 2 * O.size, NULL)))
		return die_hm("hm_cache_new", rc);
	if ((rc = hm_region_map(&r, c, st, 0, O.size, PROT_READ | PROT_WRITE, HM_CACHED,
				O.size % (2 << 20) ? 4096 : (2 << 20))))
		return die_hm("hm_region_map (fill)", rc);
	for (uint64_t p = 0; p < O.size / PG; p++)
		*(uint64_t *)((char *)hm_region_addr(r) + p * PG) = gen(p);
	if ((rc = hm_region_unmap(r)))
		return die_hm("hm_region_unmap (fill)", rc);

	for (int ti = 0; ti < O.nthreads; ti++) {
		int n = O.threads[ti];
		double on[MAX_RUNS], off[MAX_RUNS], ratio[MAX_RUNS], dns[MAX_RUNS], v[1];
		uint64_t bad = 0, f_on = 0, f_off = 0, f;
		double warm;

		/* One untimed run first: thread stacks, bounce buffers, page tables. */
		hm__stats_set(true);
		if (one_run(c, st, n, 999, &warm, &bad, &f))
			return 1;
		for (int run = 0; run < O.runs; run++) {
			/* Alternate which side goes first: on,off then off,on. */
			for (int k = 0; k < 2; k++) {
				bool stats = (k == 0) == (run % 2 == 0);
				hm__stats_set(stats);
				if (one_run(c, st, n, (unsigned)run, stats ? &on[run] : &off[run], &bad,
					    &f))
					return 1;
				if (stats)
					f_on += f;
				else
					f_off += f;
			}
		}
		hm__stats_set(true);
		/*
		 * Each pair ran back to back: its ratio and the time it adds per
		 * fault cancel the slow drift of a shared machine.
		 */
		for (int run = 0; run < O.runs; run++) {
			ratio[run] = on[run] / off[run];
			dns[run] = (1.0 / on[run] - 1.0 / off[run]) * 1e9 * n;
		}
		snprintf(key, sizeof key, "%s.ratio.%d", mode, n);
		res_emit(key, ratio, O.runs);
		snprintf(key, sizeof key, "%s.dns.%d", mode, n);
		res_emit(key, dns, O.runs);
		snprintf(key, sizeof key, "%s.on.%d", mode, n);
		res_emit(key, on, O.runs);
		snprintf(key, sizeof key, "%s.off.%d", mode, n);
		res_emit(key, off, O.runs);
		snprintf(key, sizeof key, "%s.%d.bad", mode, n);
		v[0] = (double)bad;
		res_emit(key, v, 1);
		/* Sanity: counting on counts every fault, off counts none. */
		snprintf(key, sizeof key, "%s.%d.faults_on", mode, n);
		v[0] = (double)f_on / O.runs;
		res_emit(key, v, 1);
		snprintf(key, sizeof key, "%s.%d.faults_off", mode, n);
		v[0] = (double)f_off / O.runs;
		res_emit(key, v, 1);
	}
	hm_cache_free(c);
	hm_store_close(st);
	return 0;
}

static struct results R;

/*
 * The counting a missing fault does, alone, in a loop: what it costs per
 * fault on this CPU, free of the fault path's noise. The same calls as
 * hm__fault() and load() make for a one-page miss: two clock reads, two
 * histogram updates, and the counters of the region, cache and store.
 */
static double counting_ns(bool on, uint64_t iters)
{
	struct hm_counters *rc, *cc, *sc;
	double t0, t1;

	if (posix_memalign((void **)&rc, 64, sizeof *rc) ||
	    posix_memalign((void **)&cc, 64, sizeof *cc) ||
	    posix_memalign((void **)&sc, 64, sizeof *sc))
		return -1;
	memset(rc, 0, sizeof *rc);
	memset(cc, 0, sizeof *cc);
	memset(sc, 0, sizeof *sc);
	hm__stats_set(on);
	t0 = now();
	for (uint64_t i = 0; i < iters; i++) {
		uint64_t a = 0, dt;
		if (hm__stats_enabled())
			a = hm__now_ns();
		hm__count(rc, faults_missing, 1);
		hm__count(cc, faults_missing, 1);
		hm__count(rc, misses, 1);
		hm__count(cc, misses, 1);
		hm__count(rc, readahead, 0);
		hm__count(cc, readahead, 0);
		hm__count(rc, bytes_read, 4096);
		hm__count(cc, bytes_read, 4096);
		hm__count(sc, bytes_read, 4096);
		if (hm__stats_enabled()) {
			dt = hm__now_ns() - a;
			hm__lat_record(rc, dt);
			hm__lat_record(cc, dt);
			hm__count(rc, fault_ns_total, dt);
			hm__count(cc, fault_ns_total, dt);
		}
		__asm__ volatile("" ::: "memory");
	}
	t1 = now();
	hm__stats_set(true);
	free(rc);
	free(cc);
	free(sc);
	return (t1 - t0) * 1e9 / (double)iters;
}

static void row(const char *mode, int n)
{
	char k_on[96], k_off[96], k[96], a[32], b[32], lo[32], hi[32];
	double on, off;
	int i;

	snprintf(k_on, sizeof k_on, "%s.on.%d", mode, n);
	snprintf(k_off, sizeof k_off, "%s.off.%d", mode, n);
	on = res_med(&R, k_on);
	off = res_med(&R, k_off);
	if (on < 0 || off <= 0) {
		printf("  %-8s %2d thread%s  (not run)\n", mode, n, n > 1 ? "s" : " ");
		return;
	}
	snprintf(k, sizeof k, "%s.%d.bad", mode, n);
	if (res_med(&R, k) > 0) {
		printf("  %-8s %2d  VERIFY FAIL: %.0f pages had wrong contents\n", mode, n,
		       res_med(&R, k));
		return;
	}
	fmt_rate(a, sizeof a, on);
	fmt_rate(b, sizeof b, off);
	printf("  %-8s %2d thread%s  on %8s/s", mode, n, n > 1 ? "s" : " ", a);
	for (i = 0; i < R.n && strcmp(R.e[i].key, k_on); i++)
		;
	fmt_rate(lo, sizeof lo, vmin(R.e[i].v, R.e[i].nv));
	fmt_rate(hi, sizeof hi, vmax(R.e[i].v, R.e[i].nv));
	printf(" [%s..%s]", lo, hi);
	printf("   off %8s/s", b);
	for (i = 0; i < R.n && strcmp(R.e[i].key, k_off); i++)
		;
	fmt_rate(lo, sizeof lo, vmin(R.e[i].v, R.e[i].nv));
	fmt_rate(hi, sizeof hi, vmax(R.e[i].v, R.e[i].nv));
	printf(" [%s..%s]", lo, hi);
	snprintf(k, sizeof k, "%s.%d.faults_on", mode, n);
	double fon = res_med(&R, k);
	snprintf(k, sizeof k, "%s.%d.faults_off", mode, n);
	double foff = res_med(&R, k);
	snprintf(k, sizeof k, "%s.ratio.%d", mode, n);
	double pr = res_med(&R, k);
	snprintf(k, sizeof k, "%s.dns.%d", mode, n);
	double dns = res_med(&R, k);
	double direct = res_med(&R, "direct.on") - res_med(&R, "direct.off");
	/* The fastest run's fault time: the least a fault cost here, where counting weighs most. */
	double best = 1e9 * n / vmax(R.e[i].v, R.e[i].nv);
	printf("\n           on/off of medians %.3f; median of paired on/off %.3f: cost %+.1f%% "
	       "(target <= 2%%), %+.0f ns per fault of %.0f\n"
	       "           counting alone %.0f ns = %.2f%% of the median fault (%.0f ns), %.2f%% of "
	       "the fastest run's (%.0f ns)\n"
	       "           counted faults per run: on %.0f, off %.0f\n",
	       on / off, pr, (1 - pr) * 100, dns, 1e9 * n / off, direct, 100 * direct / (1e9 * n / off),
	       1e9 * n / off, 100 * direct / best, best, fon, foff);
}

int main(int argc, char **argv)
{
	O.runs = 11;
	O.size = 128ull << 20;
	parse_threads(&O, "1,2");
	parse_opts(&O, argc, argv, usage);
	if (O.quick) {
		if (!O.size_set)
			O.size = 16ull << 20;
		if (!O.runs_set)
			O.runs = 5;
	}
	O.size &= ~(PG - 1);
	if (O.child)
		return strcmp(O.child, "idle") ? child_main() : idle_main();

	print_header("bench_counters: the cost of statistics on the fault path",
		     "Random first touches of 4 KiB pages of a mem: store through a cache that "
		     "never evicts,\nstatistics on (default) and off (HMMAP_STATS=0) alternating "
		     "run by run in one process.");
	printf("size %llu MiB per run (%llu faults), %d runs per side, median [min..max]\n\n",
	       (unsigned long long)(O.size >> 20), (unsigned long long)(O.size / PG), O.runs);
	{
		double on[MAX_RUNS], off[MAX_RUNS];
		for (int i = 0; i < O.runs; i++) {
			on[i] = counting_ns(true, 2000000);
			off[i] = counting_ns(false, 2000000);
		}
		/* Preemption only adds time: the least of the runs is the cost itself. */
		res_add(&R, "direct.on", vmin(on, O.runs));
		res_add(&R, "direct.off", vmin(off, O.runs));
		printf("-- the counting of one missing fault alone, in a loop: %.1f ns on, %.1f ns off "
		       "(least of %d runs; medians %.1f / %.1f)\n\n",
		       vmin(on, O.runs), vmin(off, O.runs), O.runs, median(on, O.runs),
		       median(off, O.runs));
	}
	run_child(&O, "thread", "thread", &R);
	run_child(&O, "sigbus", "sigbus", &R);
	printf("-- faults/s with statistics on and off; cost = 1 - on/off\n");
	for (int m = 0; m < 2; m++)
		for (int ti = 0; ti < O.nthreads; ti++)
			row(m ? "sigbus" : "thread", O.threads[ti]);
	printf("  Explanation: 'on' counts every fault by kind in per-thread shards and times it "
	       "into a latency\n  histogram (two clock reads); 'off' skips both (HMMAP_STATS=0). "
	       "The cost is read from the median of\n  the ratios of runs done back to back, which "
	       "cancels the drift of a shared machine; ns per fault\n  is the time counting adds to "
	       "each fault (per thread). A negative cost is noise.\n");
	run_child(&O, "idle", NULL, &R);
	printf("\n-- an idle process with a %.0f GiB region, one page touched in every 16 MiB: "
	       "%.1f%% of a CPU\n   for the live statistics (one walk of the region's page "
	       "entries for dirty pages: %.1f ms;\n   the publisher repeats a walk that long "
	       "only after 100 times its length)\n",
	       res_med(&R, "idle.gib"), res_med(&R, "idle.cpu_pct"), res_med(&R, "idle.walk_ms"));
	return 0;
}
