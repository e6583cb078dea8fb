/* SPDX-License-Identifier: MIT */
/*
 * The cost of a fault served from a compressed tier, beside a fault served
 * from mem: (issue 6: "a fault served from the compressed tier costs <= 2x a
 * fault served from mem: at p50; report p50 and p99").
 *
 * Every page holds text-like data that compresses about 3:1 (words drawn
 * from a small dictionary, as in logs and records); --random makes it
 * incompressible instead. Two scenarios, each timing every single touch
 * (one 8-byte read of a page, from the application's side):
 *
 *   cold   DRAM has room: the pages sit in the lower store and each is
 *          touched once, in random order. For mem: a region over a mem:
 *          store (the fault copies from RAM); for lz4/zstd a region over
 *          tiers:dram:WS>lz4:... whose pages were pushed down first (the
 *          fault decompresses, and the page leaves the compressed tier).
 *   steady DRAM holds a quarter of the working set and the reader touches
 *          random pages: every miss also makes room. mem: evicts clean
 *          pages for free; a chain writes each evicted page down
 *          (compression), in the background evictor or on the fault path.
 *
 * Each fault mode runs in its own child process (the mode is process-wide).
 * Printed per mode and scenario: p50, p99 and p99.9 of the touch time over
 * --runs runs (medians), and each store's p50 and p99 over mem:'s.
 */
#include <sys/wait.h>

#include "hmmap.h"
#include "bench_common.h"

static const char usage[] =
	"usage: bench_tiers [--ws 64M] [--runs 3] [--modes thread,sigbus] [--random] [--quick]\n"
	"  --ws      working set per run\n"
	"  --runs    runs per figure (medians printed)\n"
	"  --modes   HMMAP_FAULT_MODE values, one child each\n"
	"  --random  incompressible pages instead of ~3:1 text\n"
	"  --quick   16M working set, 1 run\n";

static uint64_t ws = 64ull << 20;
static int runs = 3, random_data;
static char modes_buf[64] = "thread,sigbus";

static const char *const words[] = {
	"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
	"juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
	"sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "=", ";",
	"id", "status", "ok", "error", "user", "request", "latency", "bytes", "0", "1", "42",
};

static void make_page(char *p, uint64_t i)
{
	uint64_t s = i * 2654435761u + 1;
	size_t k = 0;

	if (random_data) {
		for (size_t w = 0; w < PG / 8; w++)
			((uint64_t *)p)[w] = xs64(&s);
		return;
	}
	while (k < PG) {
		const char *w = words[xs64(&s) % (sizeof words / sizeof words[0])];
		size_t n = strlen(w);
		for (size_t j = 0; j < n && k < PG; j++)
			p[k++] = w[j];
		if (k < PG)
			p[k++] = (xs64(&s) & 7) ? ' ' : '\n';
	}
	/* A unique word per page, so no two pages are the same. */
	memcpy(p, &i, sizeof i);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static uint64_t ns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Touches `count` pages of p (random order from seed), timing each; returns ns in t[]. */
static int touch(char *p, uint64_t npages, uint64_t count, uint64_t seed, uint64_t *t,
		 bool permute)
{
	uint64_t *order = NULL, s = seed | 1, sum = 0;

	if (permute) {
		order = malloc(npages * sizeof *order);
		if (!order)
			return -1;
		for (uint64_t i = 0; i < npages; i++)
			order[i] = i;
		for (uint64_t i = npages - 1; i > 0; i--) {
			uint64_t j = xs64(&s) % (i + 1), x = order[i];
			order[i] = order[j];
			order[j] = x;
		}
	}
	for (uint64_t k = 0; k < count; k++) {
		uint64_t i = permute ? order[k] : xs64(&s) % npages;
		volatile uint64_t *w = (volatile uint64_t *)(p + i * PG);
		uint64_t t0 = ns_now();
		uint64_t v = *w;
		t[k] = ns_now() - t0;
		sum += v;
		if (!random_data && v != i) {
			fprintf(stderr, "page %llu holds %llu: wrong data\n", (unsigned long long)i,
				(unsigned long long)v);
			free(order);
			return -1;
		}
	}
	free(order);
	return sum == 0xdeadbeef ? 1 : 0;
}

static void pct(uint64_t *t, uint64_t n, double out[3])
{
	qsort(t, n, sizeof *t, cmp_u64);
	out[0] = (double)t[n / 2];
	out[1] = (double)t[(uint64_t)((double)n * 0.99)];
	out[2] = (double)t[(uint64_t)((double)n * 0.999)];
}

/* One run of one store: fills *res with p50, p99, p99.9 in ns. */
static int run_one(const char *kind, bool steady, uint64_t seed, double res[3], double *ratio)
{
	uint64_t np = ws / PG, count = steady ? np * 2 : np;
	uint64_t *t = malloc(count * sizeof *t);
	char uri[256], *buf = aligned_alloc(4096, PG);
	struct hm_store *s = NULL;
	struct hm_cache *c = NULL;
	struct hm_region *r = NULL;
	uint64_t dram = steady ? ws / 4 : ws + (4 << 20);
	int rc = -1;

	*ratio = 0;
	if (!t || !buf)
		goto out;
	if (!strcmp(kind, "mem")) {
		snprintf(uri, sizeof uri, "mem:%llu", (unsigned long long)ws);
		if (hm_store_open(&s, uri, 0))
			goto out;
		for (uint64_t i = 0; i < np; i++) {
			make_page(buf, i);
			if (hm_store_write(s, buf, PG, i * PG))
				goto out;
		}
		if (hm_cache_new(&c, dram, "clock"))
			goto out;
	} else {
		/* The pool holds the whole set even raw, plus its class rounding. */
		/* kind is "scheme[,opts]": the options go after the pool size. */
		const char *comma = strchr(kind, ',');
		int n = comma ? (int)(comma - kind) : (int)strlen(kind);
		snprintf(uri, sizeof uri, "tiers:dram:%llu,tiering=none > %.*s:%llu%s",
			 (unsigned long long)dram, n, kind, (unsigned long long)(ws + ws / 8),
			 comma ? comma : "");
		if (hm_store_open(&s, uri, 0) || hm_chain_cache(s, &c))
			goto out;
	}
	if (hm_region_map(&r, c, s, 0, ws, PROT_READ | PROT_WRITE, HM_CACHED, 0))
		goto out;
	hm_advise(hm_region_addr(r), ws, HM_ADV_RANDOM);
	char *p = hm_region_addr(r);
	if (strcmp(kind, "mem")) {
		for (uint64_t i = 0; i < np; i++)
			make_page(p + i * PG, i);
		/* Everything down into the compressed tier. */
		if (hm_advise(p, ws, HM_ADV_DONTNEED))
			goto out;
		struct hm_tier_stats st;
		if (!hm_tier_stats(hm_chain_tier(s, 1), &st))
			*ratio = st.ratio;
	}
	if (touch(p, np, count, seed, t, !steady) < 0)
		goto out;
	if (steady) /* the second half: after the cache filled up */
		pct(t + count / 2, count / 2, res);
	else
		pct(t, count, res);
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "%s: %s\n", kind, hm_errormsg());
	if (r)
		hm_region_unmap(r);
	if (s && strcmp(kind, "mem") == 0 && c)
		hm_cache_free(c);
	if (s)
		hm_store_close(s);
	free(t);
	free(buf);
	return rc;
}

static const char *const kinds[] = { "mem", "lz4", "zstd", "zstd,level=-3" };
#define NKINDS 4

static int child(const char *mode)
{
	double v[2][NKINDS][3][MAX_RUNS], ratio[NKINDS] = { 0 };

	for (int run = 0; run < runs; run++)
		for (int sc = 0; sc < 2; sc++)
			for (int k = 0; k < NKINDS; k++) {
				double res[3], rt;
				if (run_one(kinds[k], sc, 1000 + (uint64_t)run, res, &rt))
					return 1;
				for (int q = 0; q < 3; q++)
					v[sc][k][q][run] = res[q];
				if (rt > 0)
					ratio[k] = rt;
			}
	printf("fault mode %s (%s pages%s)\n", mode, random_data ? "incompressible" : "text",
	       random_data ? "" : ", ~3:1");
	for (int sc = 0; sc < 2; sc++) {
		printf("  %-6s  %-13s %9s %9s %9s   %10s %10s  %s\n", sc ? "steady" : "cold", "store",
		       "p50 us", "p99 us", "p99.9 us", "p50/mem", "p99/mem", "ratio");
		double m50 = median(v[sc][0][0], runs), m99 = median(v[sc][0][1], runs);
		for (int k = 0; k < NKINDS; k++) {
			double a = median(v[sc][k][0], runs), b = median(v[sc][k][1], runs),
			       c = median(v[sc][k][2], runs);
			char rt[16] = "-";
			if (k)
				snprintf(rt, sizeof rt, "%.2f", ratio[k]);
			printf("  %-6s  %-13s %9.2f %9.2f %9.2f   %9.2fx %9.2fx  %s\n", "",
			       kinds[k], a / 1000, b / 1000, c / 1000, a / m50, b / m99, rt);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ws", required_argument, NULL, 'w' },   { "runs", required_argument, NULL, 'r' },
		{ "modes", required_argument, NULL, 'm' }, { "random", no_argument, NULL, 'x' },
		{ "quick", no_argument, NULL, 'q' },      { "child", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },       { NULL, 0, NULL, 0 },
	};
	const char *child_mode = NULL;
	int o;

	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'w':
			if (parse_size(optarg, &ws) || ws < (1 << 20)) {
				fprintf(stderr, "bench_tiers: bad --ws '%s'\n%s", optarg, usage);
				return 2;
			}
			break;
		case 'r':
			runs = atoi(optarg);
			if (runs < 1 || runs > MAX_RUNS) {
				fprintf(stderr, "bench_tiers: bad --runs\n%s", usage);
				return 2;
			}
			break;
		case 'm':
			snprintf(modes_buf, sizeof modes_buf, "%s", optarg);
			break;
		case 'x':
			random_data = 1;
			break;
		case 'q':
			ws = 16ull << 20;
			runs = 1;
			break;
		case 'c':
			child_mode = optarg;
			break;
		case 'h':
			printf("%s", usage);
			return 0;
		default:
			fprintf(stderr, "%s", usage);
			return 2;
		}
	}
	if (child_mode)
		return child(child_mode);
	printf("bench_tiers: a fault served from a compressed tier vs from mem:, working set %llu "
	       "MiB, %d run(s), medians\n",
	       (unsigned long long)(ws >> 20), runs);
	char *save = NULL;
	int bad = 0;
	for (char *m = strtok_r(modes_buf, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			char wsb[32], rb[16];
			snprintf(wsb, sizeof wsb, "%llu", (unsigned long long)ws);
			snprintf(rb, sizeof rb, "%d", runs);
			setenv("HMMAP_FAULT_MODE", m, 1);
			execl("/proc/self/exe", argv[0], "--ws", wsb, "--runs", rb, "--child", m,
			      random_data ? "--random" : NULL, (char *)NULL);
			_exit(127);
		}
		int st;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			bad = 1;
	}
	return bad;
}
