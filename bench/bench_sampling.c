/* SPDX-License-Identifier: MIT */
/*
 * The cost of sampling references (issue 3: "its overhead on a workload
 * that only touches resident pages ... stays <= 5% at the default rate").
 *
 * A region over a mem: store of --ws bytes on a cache of --cache bytes
 * (larger, so nothing is ever evicted) is warmed by writing the generator
 * word into every page; then one thread reads word 0 of uniformly random
 * pages for --duration seconds, checking each against the generator. The
 * only faults left are the sampler's hint faults: the sampler unmaps
 * HMMAP_SAMPLE_RATE resident pages per second and the next touch of each is
 * a minor fault.
 *
 * HMMAP_SAMPLE_RATE and HMMAP_FAULT_MODE are read once per process, so every
 * (fault mode, rate) pair runs in its own child (this program re-executed
 * with the variables set); runs interleave all pairs so that machine noise
 * spreads over them. The rate `auto` is the default (the variable unset
 * behaves the same): a cost budget that picks a rate per fault mode
 * (src/core/env.c; nothing is evicted here, so it is the budget rate, not
 * the higher one of an evicting cache), and the one the target applies to. Printed: reads per
 * second (median of --runs, with the range), the overhead against rate 0 in
 * the same fault mode, the hint faults per second observed, and the cost of
 * one hint fault this implies: the extra time per read over the hint faults
 * per read (from the medians).
 */
#include "hmmap.h"
#include "bench_common.h"

static const char usage[] =
	"usage: bench_sampling [--ws 64M] [--cache 128M] [--duration 3] [--runs 5]\n"
	"                      [--rates 0,auto,1024,4096,16384] [--modes thread,sigbus] [--quick]\n"
	"  --ws        working set (a mem: store of this size, all resident)\n"
	"  --cache     cache budget (must hold the working set)\n"
	"  --duration  seconds of random reads per run\n"
	"  --runs      runs per figure; the median is printed\n"
	"  --rates     HMMAP_SAMPLE_RATE values (the first should be 0: the baseline;\n"
	"              auto is the default rate, the one the <= 5% target is about)\n"
	"  --modes     HMMAP_FAULT_MODE values\n"
	"  --quick     a short smoke run (16M working set, 1 s, 1 run)\n";

static struct {
	uint64_t ws, cache;
	double duration;
	int runs, quick;
	char *rates[16], *modes[4];
	int nrates, nmodes;
	const char *child;
} O = { .ws = 64ull << 20, .cache = 128ull << 20, .duration = 3, .runs = 5 };

static int split(char *s, char **out, int max)
{
	char *save = NULL, *tok;
	int n = 0;

	for (tok = strtok_r(s, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save))
		out[n++] = tok;
	return n;
}

static void parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ws", required_argument, NULL, 'w' },
		{ "cache", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'd' },
		{ "runs", required_argument, NULL, 'r' },
		{ "rates", required_argument, NULL, 'R' },
		{ "modes", required_argument, NULL, 'M' },
		{ "quick", no_argument, NULL, 'q' },
		{ "child", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *rates = strdup("0,auto,1024,4096,16384"), *modes = strdup("thread,sigbus");
	int c, ws_set = 0, cache_set = 0, dur_set = 0, runs_set = 0;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'w':
			if (parse_size(optarg, &O.ws) || O.ws < PG)
				goto bad;
			ws_set = 1;
			break;
		case 'c':
			if (parse_size(optarg, &O.cache) || O.cache < PG)
				goto bad;
			cache_set = 1;
			break;
		case 'd':
			O.duration = strtod(optarg, NULL);
			if (!(O.duration > 0))
				goto bad;
			dur_set = 1;
			break;
		case 'r':
			O.runs = atoi(optarg);
			if (O.runs < 1 || O.runs > MAX_RUNS)
				goto bad;
			runs_set = 1;
			break;
		case 'R':
			rates = strdup(optarg);
			break;
		case 'M':
			modes = strdup(optarg);
			break;
		case 'q':
			O.quick = 1;
			break;
		case 'C':
			O.child = optarg;
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
		if (!ws_set)
			O.ws = 16ull << 20;
		if (!cache_set)
			O.cache = 32ull << 20;
		if (!dur_set)
			O.duration = 1;
		if (!runs_set)
			O.runs = 1;
	}
	O.nrates = split(rates, O.rates, 16);
	O.nmodes = split(modes, O.modes, 4);
	if (!O.nrates || !O.nmodes || O.cache < O.ws)
		goto bad;
	return;
bad:
	fputs(usage, stderr);
	exit(2);
}

/* ------------------------------------------------------------- child */

/* CPU seconds of the whole process: the reader, the sampler, fault handlers. */
static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int child_main(void)
{
	struct hm_store *st = NULL;
	struct hm_cache *c = NULL;
	struct hm_region *r = NULL;
	struct hm_stats s0, s1;
	uint64_t np = O.ws / PG, bad = 0, ops = 0, rng = seed_of(1, 0);
	char uri[64], key[128];
	double t0, t1, c0, c1, v;
	char *base;

	snprintf(uri, sizeof uri, "mem:%llu", (unsigned long long)O.ws);
	if (hm_store_open(&st, uri, 0) || hm_cache_new(&c, O.cache, "clock") ||
	    hm_region_map(&r, c, st, 0, O.ws, PROT_READ | PROT_WRITE, HM_CACHED, 4096)) {
		printf("%s\n", hm_errormsg());
		return 1;
	}
	base = hm_region_addr(r);
	for (uint64_t p = 0; p < np; p++)
		*(volatile uint64_t *)(base + p * PG) = gen(p);
	/*
	 * Let the sampler settle into its steady state, reading as measured:
	 * pages it unmapped while nobody read would fault in the measured
	 * period and overstate the hint faults.
	 */
	t0 = now();
	while (now() < t0 + 0.3)
		for (int i = 0; i < 4096; i++) {
			uint64_t p = (xs64(&rng) >> 16) % np;
			if (*(volatile uint64_t *)(base + p * PG) != gen(p))
				bad++;
		}
	hm_region_stats(r, &s0);
	c0 = cpu_now();
	t0 = now();
	t1 = t0 + O.duration;
	for (;;) {
		for (int i = 0; i < 4096; i++) {
			uint64_t p = (xs64(&rng) >> 16) % np;
			if (*(volatile uint64_t *)(base + p * PG) != gen(p))
				bad++;
		}
		ops += 4096;
		if (now() >= t1)
			break;
	}
	t1 = now();
	c1 = cpu_now();
	hm_region_stats(r, &s1);
	snprintf(key, sizeof key, "%s.ops", O.child);
	v = (double)ops / (t1 - t0);
	res_emit(key, &v, 1);
	snprintf(key, sizeof key, "%s.opscpu", O.child);
	v = (double)ops / (c1 - c0);
	res_emit(key, &v, 1);
	snprintf(key, sizeof key, "%s.hint", O.child);
	v = (double)(s1.faults_minor - s0.faults_minor) / (t1 - t0);
	res_emit(key, &v, 1);
	snprintf(key, sizeof key, "%s.missing", O.child);
	v = (double)(s1.faults_missing - s0.faults_missing);
	res_emit(key, &v, 1);
	snprintf(key, sizeof key, "%s.bad", O.child);
	v = (double)bad;
	res_emit(key, &v, 1);
	hm_region_unmap(r);
	hm_cache_free(c);
	hm_store_close(st);
	return 0;
}

/* ------------------------------------------------------------ parent */

static struct results R;

static double get(const char *mode, const char *rate, const char *what, int which)
{
	char key[128];

	snprintf(key, sizeof key, "%s.%s.%s", mode, rate, what);
	for (int i = 0; i < R.n; i++)
		if (!strcmp(R.e[i].key, key))
			return which == 0   ? median(R.e[i].v, R.e[i].nv)
			       : which < 0 ? vmin(R.e[i].v, R.e[i].nv)
					   : vmax(R.e[i].v, R.e[i].nv);
	return -1;
}

int main(int argc, char **argv)
{
	struct opts co = { .argc = argc, .argv = argv };
	char name[128], b1[32], b2[32], b3[32], rng[80];
	uint64_t feat;

	parse(argc, argv);
	if (O.child)
		return child_main();
	print_header("bench_sampling: the cost of sampling references",
		     "random reads of resident pages, HMMAP_SAMPLE_RATE=0 beside other rates, "
		     "each fault mode and rate in its own process");
	if (hm_features(&feat)) {
		printf("skip: userfaultfd unavailable: %s\n", hm_errormsg());
		return 77;
	}
	printf("working set %.0f MiB (%llu pages, mem: store), cache %.0f MiB, %.1f s of reads "
	       "per run, %d runs\n",
	       (double)O.ws / (1 << 20), (unsigned long long)(O.ws / PG),
	       (double)O.cache / (1 << 20), O.duration, O.runs);
	fflush(stdout);
	for (int run = 0; run < O.runs; run++)
		for (int m = 0; m < O.nmodes; m++)
			for (int k = 0; k < O.nrates; k++) {
				snprintf(name, sizeof name, "%s.%s", O.modes[m], O.rates[k]);
				setenv("HMMAP_SAMPLE_RATE", O.rates[k], 1);
				run_child(&co, name, O.modes[m], &R);
			}
	unsetenv("HMMAP_SAMPLE_RATE");

	for (int pass = 0; pass < 2; pass++) {
		const char *what = pass ? "opscpu" : "ops";
		if (pass == 0)
			printf("\nwall-clock reads per second, median of %d runs; overhead is "
			       "1 - reads/s / reads/s at rate %s (same mode)\n", O.runs, O.rates[0]);
		else
			printf("\nreads per CPU-second of the whole process (reader + sampler + fault "
			       "handlers), median of %d runs: the same overhead, robust to other work "
			       "on the machine taking CPUs away\n", O.runs);
		printf("%-7s %8s %10s %-22s %9s %9s %8s  %s\n", "mode", "rate", pass ? "reads/cpu-s" :
		       "reads/s", "  range", "overhead", "hints/s", "us/hint", "target");
		for (int m = 0; m < O.nmodes; m++) {
			double base = get(O.modes[m], O.rates[0], what, 0);
			for (int k = 0; k < O.nrates; k++) {
				const char *md = O.modes[m], *rt = O.rates[k];
				double ops = get(md, rt, what, 0);
				char tgt[64] = "";
				if (ops < 0) {
					printf("%-7s %8s %10s\n", md, rt, "(failed)");
					continue;
				}
				if (get(md, rt, "bad", 1) > 0) {
					printf("%-7s %8s VERIFY FAIL (%.0f wrong words): no figure\n", md,
					       rt, get(md, rt, "bad", 1));
					continue;
				}
				if (pass == 0 && get(md, rt, "missing", 1) > 0)
					printf("  note: %s rate %s had %.0f missing faults: pages left the "
					       "cache\n", md, rt, get(md, rt, "missing", 1));
				fmt_rate(b1, sizeof b1, ops);
				fmt_rate(b2, sizeof b2, get(md, rt, what, -1));
				fmt_rate(b3, sizeof b3, get(md, rt, what, 1));
				if (!strcmp(rt, "auto"))
					snprintf(tgt, sizeof tgt, "<= 5%% at the default rate: %s",
						 1 - ops / base <= 0.05 ? "met" : "NOT met");
				snprintf(rng, sizeof rng, "  [%s..%s]", b2, b3);
				/*
				 * Extra time (wall or CPU) per read over hint faults per
				 * read: what one hint fault costs, all threads included.
				 */
				double hint = get(md, rt, "hint", 0), wall = get(md, rt, "ops", 0);
				double us = k && hint > 0 ? (1 / ops - 1 / base) * wall / hint * 1e6 : 0;
				printf("%-7s %8s %10s %-22s %8.1f%% %9.0f %8.1f  %s\n", md, rt, b1, rng,
				       k ? (1 - ops / base) * 100 : 0.0, hint, us, tgt);
			}
		}
	}
	return 0;
}
