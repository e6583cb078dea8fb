/* SPDX-License-Identifier: MIT */
/*
 * Replacement policies on a live region (issue 3, "Policies on live
 * regions"): a file 4x larger than the cache, a hot set of half the cache
 * touched repeatedly, and a full sequential scan of the whole file between
 * hot-set bursts. Every registered online policy runs the same operations
 * from the same seed, and its misses and throughput are printed beside FIFO.
 *
 * Workload, one thread (the same thread alternates; no second thread):
 *
 *   repeat warm-up + --cycles times:
 *     hot burst   --ops operations on uniformly random pages of the hot set
 *                 (a contiguous range of hot-frac x cache bytes starting a
 *                 quarter into the file); each reads word 0 and checks it
 *                 against the generator, and --write-pct of them also write
 *                 word 1 (to ~gen(p)); the others check word 1 is either the
 *                 file's filler or that written value;
 *     scan        one read of word 0 of every page of the file, in order,
 *                 checked against the generator.
 *
 * The number of operations is fixed (not the time), so misses compare
 * across policies. By default --ops is calibrated once per process, before
 * any policy runs, so that a burst over a resident hot set lasts about
 * --duration seconds ("a full sequential scan every few seconds"); it is
 * printed and can be given explicitly to repeat a run exactly.
 *
 * Advice, as a real user would give it (--no-advice turns it off):
 * hm_advise(HM_ADV_RANDOM) over the region before each burst and
 * HM_ADV_SEQUENTIAL before each scan.
 *
 * The first cycle is a warm-up and is not counted (it fills the cache and
 * lets ARC/LIRS/S3-FIFO learn); figures are over the --cycles that follow.
 * Figures per policy: demand misses (faults_missing) in the hot bursts and
 * in total, pages read from the file (misses + readahead), hint faults
 * (faults_minor: sampled references and readahead markers), evictions,
 * write-backs, the share of the hot set still resident right after each
 * scan (mincore on the region), and operations per second (all hot-burst
 * operations plus one per scanned page, over the measured cycles). Median
 * over --runs; runs interleave the policies so that machine noise spreads
 * over all of them.
 *
 * hmmap reads with O_DIRECT, so the kernel's page cache does not matter;
 * it is dropped before every policy run anyway when root. The data file is
 * created once and reused (the writes only change word 1 of pages).
 */
#include <stdatomic.h>

#include "hmmap.h"
#include "bench_common.h"

static const char usage[] =
	"usage: bench_live_policies [--cache 64M] [--file-size 256M]\n"
	"         [--file /tmp/hmmap-live-256m.dat] [--duration 2] [--ops N]\n"
	"         [--cycles 4] [--runs 3] [--policies all|P,P...] [--hot-frac 0.5]\n"
	"         [--write-pct 10] [--no-advice] [--trace DIR] [--quick]\n"
	"  --cache      cache budget\n"
	"  --file-size  size of the data file (created once, reused)\n"
	"  --duration   seconds a hot burst lasts over a resident hot set (sets --ops)\n"
	"  --ops        hot-burst operations per cycle (overrides --duration)\n"
	"  --cycles     measured cycles (burst + scan) after one warm-up cycle\n"
	"  --runs       runs per policy; medians are printed\n"
	"  --policies   comma-separated policy specs; default every online policy\n"
	"  --hot-frac   hot set size as a fraction of the cache\n"
	"  --write-pct  percent of hot operations that also write\n"
	"  --no-advice  no hm_advise() around the phases\n"
	"  --trace DIR  record each policy's fault trace of run 1 to DIR/<policy>.trace\n"
	"  --quick      a short smoke run (16M cache, 64M file, 1 run, 2 cycles, 0.3 s)\n"
	"Environment: HMMAP_SAMPLE_RATE (default auto), HMMAP_FAULT_MODE, HMMAP_READAHEAD apply.\n";

#define MAX_POL 32

static struct {
	uint64_t cache, fsize, ops;
	double duration, hot_frac;
	int cycles, runs, write_pct, advice, quick;
	const char *file, *trace_dir;
	char *pol[MAX_POL];
	int npol;
} O = {
	.cache = 64ull << 20,
	.fsize = 256ull << 20,
	.duration = 2,
	.hot_frac = 0.5,
	.cycles = 4,
	.runs = 3,
	.write_pct = 10,
	.advice = 1,
	.file = "/tmp/hmmap-live-256m.dat",
};

/* Word 1 of page p as the file holds it (see fill_page()). */
static inline uint64_t filler1(uint64_t p)
{
	return 0x5a5a5a5a00000000ull | (p << 9) | 1;
}

struct work {
	char *base;
	uint64_t npages, hot_lo, hot_n;
	uint64_t rng;
	uint64_t bad;
};

static void hot_burst(struct work *w, uint64_t ops)
{
	uint64_t s = w->rng, bad = 0;
	const uint64_t wthr = (uint64_t)O.write_pct * 655; /* of 65536 */

	for (uint64_t i = 0; i < ops; i++) {
		uint64_t x = xs64(&s);
		uint64_t p = w->hot_lo + (x >> 20) % w->hot_n;
		volatile uint64_t *pg = (volatile uint64_t *)(w->base + p * PG);
		uint64_t g = gen(p);

		if (pg[0] != g)
			bad++;
		if ((x & 0xffff) < wthr) {
			pg[1] = ~g;
		} else {
			uint64_t v = pg[1];
			if (v != ~g && v != filler1(p))
				bad++;
		}
	}
	w->rng = s;
	w->bad += bad;
}

static void scan(struct work *w)
{
	uint64_t bad = 0;

	for (uint64_t p = 0; p < w->npages; p++)
		if (*(volatile uint64_t *)(w->base + p * PG) != gen(p))
			bad++;
	w->bad += bad;
}

/* Pages of the hot set resident in the cache now (mapped or sampled out). */
static uint64_t hot_resident(struct work *w)
{
	static unsigned char *vec;
	static size_t nvec;
	uint64_t n = 0;

	if (nvec < w->hot_n) {
		free(vec);
		vec = malloc(w->hot_n);
		nvec = vec ? w->hot_n : 0;
		if (!vec)
			return 0;
	}
	if (mincore(w->base + w->hot_lo * PG, w->hot_n * PG, vec))
		return 0;
	for (uint64_t i = 0; i < w->hot_n; i++)
		n += vec[i] & 1;
	return n;
}

struct fig {
	double hot_miss, miss, pages_read, hint, hits, evict, wb, hot_res, secs, ops, bad;
};

static void advise(struct work *w, int adv)
{
	if (O.advice)
		hm_advise(w->base, w->npages * PG, adv);
}

static int one_cycle(struct work *w, struct hm_region *r, uint64_t ops, struct fig *f)
{
	struct hm_stats a, b;

	hm_region_stats(r, &a);
	advise(w, HM_ADV_RANDOM);
	hot_burst(w, ops);
	hm_region_stats(r, &b);
	if (f)
		f->hot_miss += (double)(b.faults_missing - a.faults_missing);
	advise(w, HM_ADV_SEQUENTIAL);
	scan(w);
	if (f)
		f->hot_res += (double)hot_resident(w) / (double)w->hot_n;
	return 0;
}

/* One policy, one run: fills *f. Returns 0 or -1 (message printed). */
static int run_policy(const char *spec, int run, uint64_t ops, struct fig *f)
{
	struct hm_store *st = NULL;
	struct hm_cache *c = NULL;
	struct hm_region *r = NULL;
	struct hm_stats s0, s1;
	struct work w;
	char uri[4200];
	double t0, t1;
	int rc;

	memset(f, 0, sizeof *f);
	drop_caches();
	snprintf(uri, sizeof uri, "file:%s", O.file);
	if ((rc = hm_store_open(&st, uri, 0)) || (rc = hm_cache_new(&c, O.cache, spec)) ||
	    (rc = hm_region_map(&r, c, st, 0, O.fsize, PROT_READ | PROT_WRITE, HM_CACHED, 4096))) {
		printf("%s: %s\n", spec, hm_errormsg());
		goto out;
	}
	if (O.trace_dir && run == 0) {
		char tp[4200], name[64];
		snprintf(name, sizeof name, "%s", spec);
		name[strcspn(name, ":")] = 0;
		snprintf(tp, sizeof tp, "%s/%s.trace", O.trace_dir, name);
		if (hm_region_trace(r, tp))
			printf("%s: cannot trace to %s: %s\n", spec, tp, hm_errormsg());
	}
	w = (struct work){ .base = hm_region_addr(r), .npages = O.fsize / PG };
	w.hot_n = (uint64_t)((double)(O.cache / PG) * O.hot_frac);
	if (w.hot_n < 1)
		w.hot_n = 1;
	w.hot_lo = w.npages / 4;
	if (w.hot_lo + w.hot_n > w.npages)
		w.hot_lo = w.npages - w.hot_n;
	w.rng = seed_of((unsigned)run, 0);

	one_cycle(&w, r, ops, NULL); /* warm-up, not counted */
	hm_region_stats(r, &s0);
	t0 = now();
	for (int i = 0; i < O.cycles; i++)
		one_cycle(&w, r, ops, f);
	t1 = now();
	hm_region_stats(r, &s1);
	f->secs = t1 - t0;
	f->ops = (double)O.cycles * (double)(ops + w.npages) / f->secs;
	f->miss = (double)(s1.faults_missing - s0.faults_missing);
	f->pages_read = (double)(s1.bytes_read - s0.bytes_read) / (double)PG;
	f->hint = (double)(s1.faults_minor - s0.faults_minor);
	f->hits = (double)(s1.hits - s0.hits);
	f->evict = (double)(s1.evictions - s0.evictions);
	f->wb = (double)(s1.writebacks - s0.writebacks);
	f->hot_res /= O.cycles;
	f->bad = (double)w.bad;
	if (O.trace_dir && run == 0)
		hm_region_trace(r, NULL);
	rc = 0;
out:
	if (r && hm_region_unmap(r))
		printf("%s: unmap: %s\n", spec, hm_errormsg());
	if (c)
		hm_cache_free(c);
	if (st)
		hm_store_close(st);
	return rc ? -1 : 0;
}

/*
 * Hot-burst operations per --duration seconds over a resident hot set: a
 * cache as large as the hot set plus room, the hot set warmed, then timed.
 */
static uint64_t calibrate(void)
{
	struct hm_store *st = NULL;
	struct hm_cache *c = NULL;
	struct hm_region *r = NULL;
	struct work w;
	char uri[4200];
	uint64_t n = 0, step = 1 << 20;
	double t0, dt = 0;

	snprintf(uri, sizeof uri, "file:%s", O.file);
	if (hm_store_open(&st, uri, 0) || hm_cache_new(&c, O.cache, "fifo") ||
	    hm_region_map(&r, c, st, 0, O.fsize, PROT_READ | PROT_WRITE, HM_CACHED, 4096)) {
		printf("calibrate: %s\n", hm_errormsg());
		exit(1);
	}
	w = (struct work){ .base = hm_region_addr(r), .npages = O.fsize / PG, .rng = 42 };
	w.hot_n = (uint64_t)((double)(O.cache / PG) * O.hot_frac);
	w.hot_lo = w.npages / 4;
	if (w.hot_lo + w.hot_n > w.npages)
		w.hot_lo = w.npages - w.hot_n;
	hm_advise(w.base + w.hot_lo * PG, w.hot_n * PG, HM_ADV_WILLNEED);
	hot_burst(&w, 4 * w.hot_n); /* maps what WILLNEED read */
	t0 = now();
	while ((dt = now() - t0) < 0.5) {
		hot_burst(&w, step);
		n += step;
	}
	hm_region_unmap(r);
	hm_cache_free(c);
	hm_store_close(st);
	if (w.bad) {
		printf("calibrate: %llu wrong words\n", (unsigned long long)w.bad);
		exit(1);
	}
	uint64_t ops = (uint64_t)((double)n / dt * O.duration);
	ops = (ops + 500000) / 1000000 * 1000000;
	return ops ? ops : 1000000;
}

/* ------------------------------------------------------------- options */

static void parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "cache", required_argument, NULL, 'c' },
		{ "file-size", required_argument, NULL, 's' },
		{ "file", required_argument, NULL, 'f' },
		{ "duration", required_argument, NULL, 'd' },
		{ "ops", required_argument, NULL, 'n' },
		{ "cycles", required_argument, NULL, 'y' },
		{ "runs", required_argument, NULL, 'r' },
		{ "policies", required_argument, NULL, 'p' },
		{ "hot-frac", required_argument, NULL, 'H' },
		{ "write-pct", required_argument, NULL, 'w' },
		{ "no-advice", no_argument, NULL, 'A' },
		{ "trace", required_argument, NULL, 'T' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pols = "all";
	int c, cache_set = 0, size_set = 0, dur_set = 0, cyc_set = 0, runs_set = 0;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (parse_size(optarg, &O.cache) || O.cache < 64 * PG)
				goto bad;
			cache_set = 1;
			break;
		case 's':
			if (parse_size(optarg, &O.fsize) || O.fsize < 64 * PG)
				goto bad;
			O.fsize &= ~(PG - 1);
			size_set = 1;
			break;
		case 'f':
			O.file = optarg;
			break;
		case 'd':
			O.duration = strtod(optarg, NULL);
			if (!(O.duration > 0))
				goto bad;
			dur_set = 1;
			break;
		case 'n':
			if (parse_size(optarg, &O.ops) || !O.ops)
				goto bad;
			break;
		case 'y':
			O.cycles = atoi(optarg);
			if (O.cycles < 1)
				goto bad;
			cyc_set = 1;
			break;
		case 'r':
			O.runs = atoi(optarg);
			if (O.runs < 1 || O.runs > MAX_RUNS)
				goto bad;
			runs_set = 1;
			break;
		case 'p':
			pols = optarg;
			break;
		case 'H':
			O.hot_frac = strtod(optarg, NULL);
			if (!(O.hot_frac > 0 && O.hot_frac <= 1))
				goto bad;
			break;
		case 'w':
			O.write_pct = atoi(optarg);
			if (O.write_pct < 0 || O.write_pct > 100)
				goto bad;
			break;
		case 'A':
			O.advice = 0;
			break;
		case 'T':
			O.trace_dir = optarg;
			break;
		case 'q':
			O.quick = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (optind != argc)
		goto bad;
	if (O.quick) {
		if (!cache_set)
			O.cache = 16ull << 20;
		if (!size_set)
			O.fsize = 64ull << 20;
		if (!dur_set)
			O.duration = 0.3;
		if (!cyc_set)
			O.cycles = 2;
		if (!runs_set)
			O.runs = 1;
		if (!strcmp(O.file, "/tmp/hmmap-live-256m.dat"))
			O.file = "/tmp/hmmap-live-64m.dat";
	}
	if (!strcmp(pols, "all")) {
		size_t n;
		const struct hm_policy_ops *const *l = hm_policy_list(&n);
		for (size_t i = 0; i < n && O.npol < MAX_POL; i++)
			if (!(l[i]->flags & HM_POLICY_REPLAY_ONLY))
				O.pol[O.npol++] = strdup(l[i]->name);
	} else {
		char *buf = strdup(pols), *save = NULL, *tok;
		for (tok = strtok_r(buf, ",", &save); tok && O.npol < MAX_POL;
		     tok = strtok_r(NULL, ",", &save))
			O.pol[O.npol++] = tok;
	}
	if (!O.npol)
		goto bad;
	return;
bad:
	fputs(usage, stderr);
	exit(2);
}

/* -------------------------------------------------------------- report */

static struct results R;

static void add(const char *pol, const char *what, double v)
{
	char key[128];

	snprintf(key, sizeof key, "%s.%s", pol, what);
	res_add(&R, key, v);
}

static double med(const char *pol, const char *what)
{
	char key[128];

	snprintf(key, sizeof key, "%s.%s", pol, what);
	return res_med(&R, key);
}

static void range(const char *pol, const char *what, double *lo, double *hi)
{
	char key[128];

	snprintf(key, sizeof key, "%s.%s", pol, what);
	*lo = *hi = -1;
	for (int i = 0; i < R.n; i++)
		if (!strcmp(R.e[i].key, key)) {
			*lo = vmin(R.e[i].v, R.e[i].nv);
			*hi = vmax(R.e[i].v, R.e[i].nv);
		}
}

static const char *base_pol(void)
{
	for (int i = 0; i < O.npol; i++)
		if (!strcmp(O.pol[i], "fifo"))
			return "fifo";
	return O.pol[0];
}

int main(int argc, char **argv)
{
	const char *env_rate = getenv("HMMAP_SAMPLE_RATE");
	const char *env_mode = getenv("HMMAP_FAULT_MODE");
	char b1[32], b2[32], b3[32], disk[512];
	struct fig f;
	int rc, mode;

	parse(argc, argv);
	print_header("bench_live_policies: replacement policies on a live region",
		     "hot set of half the cache touched at random, a full sequential scan between "
		     "bursts; every policy runs the same operations, beside FIFO");
	if ((rc = ensure_file(O.file, O.fsize))) {
		printf("cannot create %s: %s\n", O.file, strerror(-rc));
		return 1;
	}
	disk_of(O.file, disk, sizeof disk);
	mode = hm_fault_mode();
	if (mode < 0) {
		printf("skip: userfaultfd unavailable: %s\n", hm_errormsg());
		return 77;
	}
	if (!O.ops)
		O.ops = calibrate();
	uint64_t hot_n = (uint64_t)((double)(O.cache / PG) * O.hot_frac);
	printf("file %s, %.0f MiB on %s\n", O.file, (double)O.fsize / (1 << 20), disk);
	printf("cache %.0f MiB (%llu pages), hot set %llu pages (%.0f%% of the cache) from page "
	       "%llu, file %.1fx the cache\n",
	       (double)O.cache / (1 << 20), (unsigned long long)(O.cache / PG),
	       (unsigned long long)hot_n, O.hot_frac * 100,
	       (unsigned long long)(O.fsize / PG / 4), (double)O.fsize / (double)O.cache);
	printf("per cycle: %llu hot operations (%d%% also write) then a scan of %llu pages; "
	       "1 warm-up + %d measured cycles; %d runs\n",
	       (unsigned long long)O.ops, O.write_pct, (unsigned long long)(O.fsize / PG),
	       O.cycles, O.runs);
	printf("fault mode %s (HMMAP_FAULT_MODE=%s), HMMAP_SAMPLE_RATE=%s, advice %s\n",
	       mode == HM_FAULT_SIGBUS ? "sigbus" : "thread", env_mode ? env_mode : "unset",
	       env_rate ? env_rate : "unset (auto)",
	       O.advice ? "RANDOM before bursts, SEQUENTIAL before scans" : "none");
	fflush(stdout);

	for (int run = 0; run < O.runs; run++) {
		for (int i = 0; i < O.npol; i++) {
			if (run_policy(O.pol[i], run, O.ops, &f))
				continue;
			printf("  run %d %-8s %7.2f s  %8.0f hot misses  %8.0f misses  %8.0f pages "
			       "read  %7.0f hints  %3.0f%% hot resident%s\n",
			       run + 1, O.pol[i], f.secs, f.hot_miss, f.miss, f.pages_read, f.hint,
			       f.hot_res * 100, f.bad ? "  VERIFY FAIL" : "");
			fflush(stdout);
			add(O.pol[i], "hot_miss", f.hot_miss);
			add(O.pol[i], "miss", f.miss);
			add(O.pol[i], "read", f.pages_read);
			add(O.pol[i], "hint", f.hint);
			add(O.pol[i], "hits", f.hits);
			add(O.pol[i], "evict", f.evict);
			add(O.pol[i], "wb", f.wb);
			add(O.pol[i], "hotres", f.hot_res * 100);
			add(O.pol[i], "ops", f.ops);
			add(O.pol[i], "secs", f.secs);
			add(O.pol[i], "bad", f.bad);
		}
	}

	const char *B = base_pol();
	printf("\nmedians of %d runs over %d measured cycles; ratios are policy / %s (misses: "
	       "lower is better, ops/s: higher is better)\n",
	       O.runs, O.cycles, B);
	printf("%-8s %10s %7s %10s %7s %10s %7s %8s %8s %8s %8s %6s %9s %7s  %s\n", "policy",
	       "hot-miss", "ratio", "dmd-miss", "ratio", "pg-read", "ratio", "hints", "hits",
	       "evict", "wback", "hot%", "ops/s", "ratio", "ops/s range");
	for (int i = 0; i < O.npol; i++) {
		const char *p = O.pol[i];
		double lo, hi;
		if (med(p, "ops") < 0) {
			printf("%-8s (failed)\n", p);
			continue;
		}
		if (med(p, "bad") > 0 || (range(p, "bad", &lo, &hi), hi > 0)) {
			printf("%-8s VERIFY FAIL: %.0f wrong words; no figures\n", p, hi);
			continue;
		}
		range(p, "ops", &lo, &hi);
		fmt_rate(b1, sizeof b1, lo);
		fmt_rate(b2, sizeof b2, hi);
		fmt_rate(b3, sizeof b3, med(p, "ops"));
		printf("%-8s %10.0f %6.2fx %10.0f %6.2fx %10.0f %6.2fx %8.0f %8.0f %8.0f %8.0f %5.0f%% "
		       "%9s %6.2fx  [%s..%s]\n",
		       p, med(p, "hot_miss"), med(p, "hot_miss") / (med(B, "hot_miss") ?: 1),
		       med(p, "miss"), med(p, "miss") / (med(B, "miss") ?: 1), med(p, "read"),
		       med(p, "read") / (med(B, "read") ?: 1), med(p, "hint"), med(p, "hits"),
		       med(p, "evict"), med(p, "wb"), med(p, "hotres"), b3,
		       med(p, "ops") / (med(B, "ops") ?: 1), b1, b2);
	}

	/* The target, beside the best scan-resistant policy. */
	static const char *const sr[] = { "s3fifo", "arc", "lirs" };
	const char *best = NULL;
	for (size_t i = 0; i < sizeof sr / sizeof sr[0]; i++)
		if (med(sr[i], "ops") >= 0 && med(sr[i], "bad") == 0 &&
		    (!best || med(sr[i], "miss") < med(best, "miss")))
			best = sr[i];
	if (best && strcmp(B, "fifo") == 0) {
		double dm = 1 - med(best, "miss") / med(B, "miss");
		double pr = 1 - med(best, "read") / med(B, "read");
		double tp = med(best, "ops") / med(B, "ops");
		printf("\ntarget: the best scan-resistant policy has >= 25%% fewer misses than FIFO "
		       "and >= 1.2x its throughput\n");
		printf("  best by demand misses: %s: %.0f%% fewer demand misses, %.0f%% fewer pages "
		       "read, %.2fx throughput\n",
		       best, dm * 100, pr * 100, tp);
		printf("  demand misses %s, pages read %s, throughput %s\n",
		       dm >= 0.25 ? "met" : "NOT met", pr >= 0.25 ? "met" : "NOT met",
		       tp >= 1.2 ? "met" : "NOT met");
		/* The best by misses is not always the fastest: each one that meets both. */
		for (size_t i = 0; i < sizeof sr / sizeof sr[0]; i++) {
			if (med(sr[i], "ops") < 0 || med(sr[i], "bad") != 0)
				continue;
			double d = 1 - med(sr[i], "miss") / med(B, "miss");
			double t = med(sr[i], "ops") / med(B, "ops");
			printf("  %-7s %3.0f%% fewer demand misses, %.2fx throughput: %s\n", sr[i],
			       d * 100, t, d >= 0.25 && t >= 1.2 ? "both met" : "not both");
		}
	}
	return 0;
}
