/* SPDX-License-Identifier: MIT */
/*
 * `hmmap bench` - workloads on hmmap beside the kernel's mmap of the same
 * data and a pread buffer pool of the same budget, in one run.
 *
 * The parent parses the options into a grid of rows (workload x system x
 * cache x page size x policy x fault mode x threads), generates each data
 * file once, and runs every (row, repetition) in its own forked child:
 * hmmap reads HMMAP_FAULT_MODE once per process, a child gives each run a
 * fresh process (no cache, no mapping, no allocator state left from the
 * previous one), and the parent can drop the kernel's caches between cold
 * runs. The parent itself never starts hmmap's engine. A child sends one
 * `struct cres` through a pipe; a child that dies sends nothing, and its
 * run is reported as failed.
 *
 * Repetitions are interleaved (run 1 of every row, then run 2, ...), so a
 * change in the machine's load spreads over all rows instead of landing on
 * one. Every row reports the median over its runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hmmap.h"
#include "core/error.h"
#include "bench.h"
#include "cli.h"

#define MAXL         16 /* entries per option list */
#define MAX_RUNS     99
#define MAX_THREADS  64
#define TMPFS_MAGIC_ 0x01021994

static const char *const wl_names[W_COUNT] = {
    "seq", "rand", "zipf", "hotset", "hotscan", "chase", "rwmix", "bfs", "sort", "stream",
};
static const char *const sys_names[S_COUNT] = {"hmmap", "mmap-cold", "mmap-warm", "pread"};
static const char *const kind_names[] = {"array", "graph", "keys", "stream"};

/* What a child sends back. */
struct cres {
	struct bout o;
	uint64_t faults, misses, evictions, writebacks, bytes_read;
	int has_stats;
};

struct row {
	int wl, sys, threads;
	char cache_spec[32];
	uint64_t cache, page;
	const char *policy, *fmode, *mode, *advice;
	const char *store; /* --store URI as given, or NULL: the data file */
	int nrun, nfail;
	struct cres run[MAX_RUNS];
	char err[256];
	/* summary */
	double secs, rate, ratio;
	double best_rate; /* stream: median of the runs' best pass after the first */
	int has_ratio, med, has_best;
	uint64_t bad;
	int cross_bad;
};

struct opts {
	int wl[W_COUNT], nwl;
	int sys[S_COUNT], nsys;
	char *cache[MAXL];
	int ncache;
	uint64_t page[MAXL];
	int npage;
	char *policy[MAXL];
	int npolicy;
	char *fmode[MAXL];
	int nfmode;
	char *mode[MAXL];
	int nmode;
	char *advice[MAXL];
	int nadvice;
	int threads[MAXL];
	int nthreads;
	const char *store[MAXL];
	int nstore;
	const char *file, *dir, *plot;
	uint64_t size, scale, ops, scan_every;
	int runs, passes, baseline, csv, json, progress, keep, timeout;
	double alpha, hot_frac, hot_share, wfrac;
};

static char *dup_list_buf[32];
/* The --policy specs, split as `hmmap replay` splits them; o->policy points into it. */
static struct hm_cli_strs policy_specs;

/*
 * What a signal that stops the parent must clean up: the running child
 * (which would go on reading and writing) and the generated data files.
 */
static volatile pid_t cur_child;
static char gen_paths[4][4200];
static volatile int gen_live[4];

static void on_signal(int sig)
{
	if (cur_child > 0)
		kill(cur_child, SIGKILL);
	for (int i = 0; i < 4; i++)
		if (gen_live[i])
			unlink(gen_paths[i]);
	signal(sig, SIG_DFL);
	raise(sig);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "hmmap bench: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(`hmmap bench --help` lists the options)\n");
	return 2;
}

static void bench_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: hmmap bench [OPTIONS]\n"
	    "\n"
	    "Runs workloads on hmmap, the kernel's mmap of the same data (cold and warm)\n"
	    "and a pread buffer pool of the same budget, side by side in one run, and\n"
	    "prints a table of medians with the ratio to a baseline. Options that take a\n"
	    "LIST accept comma-separated values; every combination is run (a grid).\n"
	    "\n"
	    "What to run:\n"
	    "  --workload LIST     seq, rand, zipf, hotset, hotscan, chase, rwmix, bfs, sort,\n"
	    "                      stream, or all (default all)\n"
	    "  --system LIST       hmmap, mmap-cold, mmap-warm, pread, or all (default all)\n"
	    "  --baseline SYSTEM   the ratio column divides by this system's rate: its row\n"
	    "                      of the same workload and threads, and of the same cache\n"
	    "                      and page size where both rows have them (else its\n"
	    "                      first such row); default mmap-cold, or the first\n"
	    "                      system listed\n"
	    "  --runs N            repetitions of every row; the table shows medians (3)\n"
	    "  --timeout S         stop a run after S seconds and report it as failed\n"
	    "  --threads LIST      worker threads, 1..%d (1)\n"
	    "\n"
	    "hmmap and the pool:\n"
	    "  --cache LIST        budget: a size (64M) or a share of the data (25%%); also the\n"
	    "                      pool's budget (default 25%%, a quarter of the data)\n"
	    "  --page-size LIST    4K..2M, a power of two; hmmap's region page and the\n"
	    "                      pool's frame (4K)\n"
	    "  --policy LIST       hmmap's replacement policies (clock); `hmmap policies`.\n"
	    "                      A policy is NAME or NAME:k=v,k=v; the list is split\n"
	    "                      at a comma only where the next token is a policy\n"
	    "                      name (or `all`), as `hmmap replay` splits it, so\n"
	    "                      \"s3fifo:small=0.2,threshold=1,lru\" is two policies.\n"
	    "                      Repeated, --policy adds to the list\n"
	    "  --fault-mode LIST   auto, thread, sigbus (default $HMMAP_FAULT_MODE or auto)\n"
	    "  --mode LIST         region mode: cached, hugetlb (cached with HM_HUGETLB: 2M\n"
	    "                      pages, frames from the huge page pool), direct, hybrid\n"
	    "                      (when the store supports them)\n"
	    "  --advice LIST       hm_advise() of the whole region before the run: normal\n"
	    "                      (adaptive readahead), random (none), sequential (the\n"
	    "                      largest windows), noreuse (as sequential, and pages\n"
	    "                      the reader has passed leave the cache first)\n"
	    "  --store URI         hmmap's store (default file: of the data file). The data\n"
	    "                      is copied into it before timing; %%s in URI is replaced\n"
	    "                      by the data file's size, e.g. 'mem:%%s,read_ns=2000'.\n"
	    "                      Given several times, each store is a row of the grid\n"
	    "                      (a URI may hold commas, so it is not a LIST)\n"
	    "\n"
	    "Data (generated in DIR, deleted afterwards unless --keep):\n"
	    "  --size SIZE         data of seq..rwmix, keys of sort, the three arrays of\n"
	    "                      stream together (256M)\n"
	    "  --scale N           bfs graph: 2^N vertices, 16 edges each way (16; 20 is\n"
	    "                      264 MiB)\n"
	    "  --dir DIR           where data files go (default $TMPDIR, else /tmp; a tmpfs\n"
	    "                      is replaced by /var/tmp: a cold mmap needs a disk)\n"
	    "  --file PATH         the data file itself (one data kind only); kept, and\n"
	    "                      reused when it holds the same data\n"
	    "  --keep              keep the generated files, and reuse kept ones; with\n"
	    "                      --plot, keep its gnuplot script and data too\n"
	    "\n"
	    "Workload parameters:\n"
	    "  --ops N             operations per thread of rand..rwmix and chase (100000)\n"
	    "  --alpha A           zipf exponent (0.99)\n"
	    "  --hot-fraction F    hotset/hotscan: share of items that are hot (0.1)\n"
	    "  --hot-share F       hotset/hotscan: share of operations on them (0.9)\n"
	    "  --rw R:W            read:write mix of rand..rwmix (defaults: rand, zipf,\n"
	    "                      hotscan 1:0; hotset 0:1, GUPS updates; rwmix 1:1)\n"
	    "  --scan-every N      hotscan: operations between scans of 1/(4*threads) of\n"
	    "                      the data (ops/4)\n"
	    "  --passes N          stream: triad passes per run (4); with 2 or more the\n"
	    "                      best pass after the first, STREAM's own figure, is\n"
	    "                      listed too\n"
	    "\n"
	    "Output:\n"
	    "  --csv | --json      machine-readable results on stdout instead of the table\n"
	    "  --plot FILE.png     a bar chart of every row's speed relative to the\n"
	    "                      baseline (gnuplot) on a log axis that reaches below 1,\n"
	    "                      so the baseline's own bars show\n"
	    "  --progress          a progress bar with the time left on stderr, fitted to\n"
	    "                      its width (80 columns when it is not a terminal);\n"
	    "                      default when stderr is a terminal\n"
	    "\n"
	    "Workloads verify what they read (the table's check column; BAD is a wrong\n"
	    "answer). Rates: seq, sort, stream MB/s; bfs traversed edges/s; others ops/s.\n"
	    "hmmap's figures include its faults, misses and evictions; the kernel's, the\n"
	    "process's page faults (misses: major faults). As root the kernel's page\n"
	    "cache is dropped before every run except mmap-warm, whose file is read\n"
	    "into it first. Exit status: 0 all rows verified, 1 a run failed or\n"
	    "verified BAD, 2 bad usage.\n",
	    MAX_THREADS);
}

/* ---------------------------------------------------------------- options */

/* Splits a comma list in place into at most MAXL entries. */
static int split(char *s, char **out, int max)
{
	int n = 0;

	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		if (n == max)
			return -1;
		out[n++] = tok;
	}
	return n;
}

/*
 * Whether a store URI names a registered scheme, read as hm_store_open()
 * reads it: the text before a ':' that comes before any '/', else a path
 * (file:). Its options are the store's to check when it opens.
 */
static int store_scheme_known(const char *uri)
{
	const struct hm_store_ops *const *ops;
	const char *colon = strchr(uri, ':'), *slash = strchr(uri, '/');
	size_t count, n;

	if (!colon || (slash && slash < colon))
		return 1;
	n = (size_t)(colon - uri);
	ops = hm_store_list(&count);
	for (size_t i = 0; i < count; i++)
		if (strlen(ops[i]->scheme) == n && !strncmp(ops[i]->scheme, uri, n))
			return 1;
	return 0;
}

static int lookup(const char *const *names, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(names[i], s))
			return i;
	return -1;
}

static int parse_frac(const char *s, double *out)
{
	double v;

	if (hm_parse_double(s, &v) || !(v >= 0 && v <= 1))
		return -1;
	*out = v;
	return 0;
}

static int parse_cache_spec(const char *s)
{
	uint64_t v;
	size_t n = strlen(s);

	if (n > 1 && s[n - 1] == '%') {
		char tmp[32];
		double d;
		if (n >= sizeof tmp)
			return -1;
		memcpy(tmp, s, n - 1);
		tmp[n - 1] = 0;
		return hm_parse_double(tmp, &d) || !(d > 0 && d <= 1000) ? -1 : 0;
	}
	return hm_parse_size(s, &v) || v < 4096 || n >= 32 ? -1 : 0;
}

/* The budget a cache spec means for data of `data` bytes, in whole pages. */
static uint64_t resolve_cache(const char *spec, uint64_t data, uint64_t page)
{
	size_t n = strlen(spec);
	uint64_t v;

	if (spec[n - 1] == '%') {
		char tmp[32];
		double d;
		memcpy(tmp, spec, n - 1);
		tmp[n - 1] = 0;
		hm_parse_double(tmp, &d);
		v = (uint64_t)((double)data * d / 100.0);
	} else {
		hm_parse_size(spec, &v);
	}
	v = v / page * page;
	return v < page ? page : v;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum {
		O_WL = 256,
		O_SYS,
		O_STORE,
		O_FILE,
		O_SIZE,
		O_CACHE,
		O_POLICY,
		O_PAGE,
		O_FMODE,
		O_MODE,
		O_THREADS,
		O_RUNS,
		O_BASE,
		O_ALPHA,
		O_HOTF,
		O_HOTS,
		O_SCALE,
		O_RW,
		O_OPS,
		O_SCAN,
		O_PASSES,
		O_CSV,
		O_JSON,
		O_PLOT,
		O_PROG,
		O_KEEP,
		O_DIR,
		O_HELP,
		O_ADV,
		O_TIMEOUT,
	};
	static const struct option lo[] = {
	    {"workload", required_argument, 0, O_WL},
	    {"system", required_argument, 0, O_SYS},
	    {"store", required_argument, 0, O_STORE},
	    {"file", required_argument, 0, O_FILE},
	    {"size", required_argument, 0, O_SIZE},
	    {"cache", required_argument, 0, O_CACHE},
	    {"policy", required_argument, 0, O_POLICY},
	    {"page-size", required_argument, 0, O_PAGE},
	    {"fault-mode", required_argument, 0, O_FMODE},
	    {"mode", required_argument, 0, O_MODE},
	    {"advice", required_argument, 0, O_ADV},
	    {"threads", required_argument, 0, O_THREADS},
	    {"runs", required_argument, 0, O_RUNS},
	    {"baseline", required_argument, 0, O_BASE},
	    {"alpha", required_argument, 0, O_ALPHA},
	    {"hot-fraction", required_argument, 0, O_HOTF},
	    {"hot-share", required_argument, 0, O_HOTS},
	    {"scale", required_argument, 0, O_SCALE},
	    {"rw", required_argument, 0, O_RW},
	    {"ops", required_argument, 0, O_OPS},
	    {"scan-every", required_argument, 0, O_SCAN},
	    {"passes", required_argument, 0, O_PASSES},
	    {"csv", no_argument, 0, O_CSV},
	    {"json", no_argument, 0, O_JSON},
	    {"plot", required_argument, 0, O_PLOT},
	    {"progress", no_argument, 0, O_PROG},
	    {"keep", no_argument, 0, O_KEEP},
	    {"timeout", required_argument, 0, O_TIMEOUT},
	    {"dir", required_argument, 0, O_DIR},
	    {"help", no_argument, 0, O_HELP},
	    {0, 0, 0, 0},
	};
	const char *base = NULL, *env_mode = getenv("HMMAP_FAULT_MODE");
	static char def_cache[] = "25%", def_policy[] = "clock", def_mode[] = "cached";
	static char def_adv[] = "normal";
	static char def_fmode[16];
	char *list[MAXL];
	int opt, n, ndup = 0;
	uint64_t v;

	memset(o, 0, sizeof *o);
	o->size = 256ull << 20;
	o->scale = 16;
	o->ops = 100000;
	o->runs = 3;
	o->passes = 4;
	o->alpha = 0.99;
	o->hot_frac = 0.1;
	o->hot_share = 0.9;
	o->wfrac = -1;
	o->baseline = -1;
	optind = 1;
	opterr = 0;
	hm_cli_strs_free(&policy_specs);
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		char *arg = optarg;
		if (arg && (opt == O_WL || opt == O_SYS || opt == O_CACHE || opt == O_PAGE ||
		            opt == O_FMODE || opt == O_MODE ||
		            opt == O_THREADS || opt == O_ADV || opt == O_RW)) {
			/* Lists are split in place: keep a private copy of the argument. */
			if (ndup == (int)(sizeof dup_list_buf / sizeof dup_list_buf[0]))
				return usage_err("too many list options%s", "");
			arg = dup_list_buf[ndup++] = strdup(optarg);
			if (!arg)
				return 1;
		}
		switch (opt) {
		case O_WL:
		case O_SYS:
			n = split(arg, list, MAXL);
			if (n <= 0)
				return usage_err("empty or too long list '%s'", optarg);
			if (opt == O_WL)
				o->nwl = 0;
			else
				o->nsys = 0;
			for (int i = 0; i < n; i++) {
				int all = !strcmp(list[i], "all");
				int lim = opt == O_WL ? W_COUNT : S_COUNT;
				int k = lookup(opt == O_WL ? wl_names : sys_names, lim, list[i]);
				if (k < 0 && !all)
					return usage_err(opt == O_WL
					                     ? "unknown workload '%s' (seq, rand, "
					                       "zipf, hotset, hotscan, chase, "
					                       "rwmix, bfs, sort, stream, all)"
					                     : "unknown system '%s' (hmmap, "
					                       "mmap-cold, mmap-warm, pread, all)",
					                 list[i]);
				for (int x = all ? 0 : k; x < (all ? lim : k + 1); x++) {
					int *arr = opt == O_WL ? o->wl : o->sys;
					int *cnt = opt == O_WL ? &o->nwl : &o->nsys;
					int dupl = 0;
					for (int y = 0; y < *cnt; y++)
						dupl |= arr[y] == x;
					if (!dupl)
						arr[(*cnt)++] = x;
				}
			}
			break;
		case O_STORE:
			if (!*optarg)
				return usage_err("empty store URI%s", "");
			if (o->nstore == MAXL)
				return usage_err("more than %d --store options", MAXL);
			if (!store_scheme_known(optarg))
				return usage_err("--store '%s': unknown store scheme '%.*s' (`hmmap "
				                 "stores` lists them)",
				                 optarg, (int)strcspn(optarg, ":"), optarg);
			o->store[o->nstore++] = optarg;
			break;
		case O_FILE:
			if (!*optarg)
				return usage_err("empty file name%s", "");
			o->file = optarg;
			break;
		case O_DIR:
			o->dir = optarg;
			break;
		case O_PLOT:
			if (!*optarg)
				return usage_err("empty plot file name%s", "");
			o->plot = optarg;
			break;
		case O_SIZE:
			if (hm_parse_size(arg, &o->size) || o->size < (64u << 10) ||
			    o->size > (1ull << 40))
				return usage_err("bad --size '%s' (64K..1T)", optarg);
			break;
		case O_CACHE:
			n = split(arg, o->cache, MAXL);
			if (n <= 0)
				return usage_err("empty or too long list '%s'", optarg);
			for (int i = 0; i < n; i++)
				if (parse_cache_spec(o->cache[i]))
					return usage_err(
					    "bad cache size '%s' (a size of at least 4K, "
					    "or a share like 25%%)",
					    o->cache[i]);
			o->ncache = n;
			break;
		case O_PAGE:
			n = split(arg, list, MAXL);
			if (n <= 0)
				return usage_err("empty or too long list '%s'", optarg);
			for (int i = 0; i < n; i++) {
				if (hm_parse_size(list[i], &v) || v < 4096 || v > (2u << 20) ||
				    (v & (v - 1)))
					return usage_err(
					    "bad page size '%s' (a power of two from 4K "
					    "to 2M)",
					    list[i]);
				o->page[i] = v;
			}
			o->npage = n;
			break;
		case O_POLICY: {
			/* Repeated, it appends: `--policy lru --policy s3fifo:small=0.2` is two. */
			size_t first = policy_specs.n;
			int err = hm_cli_policy_split(&policy_specs, "bench", optarg, 1);
			if (err == -ENOMEM)
				return 1;
			if (err)
				return usage_err("bad --policy '%s'", optarg);
			for (size_t i = first; i < policy_specs.n; i++) {
				/* Options and replay-only policies too: a bad spec is no failed run. */
				int bad = hm_cli_policy_check(policy_specs.v[i], 1);
				if (bad == 2)
					return usage_err("--policy '%s': %s", policy_specs.v[i],
					                 hm_errormsg());
				if (bad) {
					fprintf(stderr, "hmmap bench: --policy '%s': %s\n",
					        policy_specs.v[i], hm_errormsg());
					return 1;
				}
				if (o->npolicy == MAXL)
					return usage_err("more than %d policies", MAXL);
				o->policy[o->npolicy++] = policy_specs.v[i];
			}
			break;
		}
		case O_FMODE:
			n = split(arg, o->fmode, MAXL);
			if (n <= 0)
				return usage_err("empty or too long list '%s'", optarg);
			for (int i = 0; i < n; i++)
				if (strcmp(o->fmode[i], "auto") && strcmp(o->fmode[i], "thread") &&
				    strcmp(o->fmode[i], "sigbus"))
					return usage_err(
					    "bad fault mode '%s' (auto, thread, sigbus)",
					    o->fmode[i]);
			o->nfmode = n;
			break;
		case O_MODE:
			n = split(arg, o->mode, MAXL);
			if (n <= 0)
				return usage_err("empty or too long list '%s'", optarg);
			for (int i = 0; i < n; i++)
				if (strcmp(o->mode[i], "cached") && strcmp(o->mode[i], "direct") &&
				    strcmp(o->mode[i], "hybrid") && strcmp(o->mode[i], "hugetlb"))
					return usage_err("bad mode '%s' (cached, hugetlb, direct, "
					                 "hybrid)", o->mode[i]);
			o->nmode = n;
			break;
		case O_ADV:
			n = split(arg, o->advice, MAXL);
			if (n <= 0)
				return usage_err("empty or too long list '%s'", optarg);
			for (int i = 0; i < n; i++)
				if (strcmp(o->advice[i], "normal") &&
				    strcmp(o->advice[i], "random") &&
				    strcmp(o->advice[i], "sequential") &&
				    strcmp(o->advice[i], "noreuse"))
					return usage_err("bad advice '%s' (normal, random, "
					                 "sequential, noreuse)",
					                 o->advice[i]);
			o->nadvice = n;
			break;
		case O_THREADS:
			n = split(arg, list, MAXL);
			if (n <= 0)
				return usage_err("empty or too long list '%s'", optarg);
			for (int i = 0; i < n; i++) {
				if (hm_parse_u64(list[i], &v) || v < 1 || v > MAX_THREADS)
					return usage_err("bad thread count '%s' (1..64)", list[i]);
				o->threads[i] = (int)v;
			}
			o->nthreads = n;
			break;
		case O_RUNS:
			if (hm_parse_u64(arg, &v) || v < 1 || v > MAX_RUNS)
				return usage_err("bad --runs '%s' (1..99)", optarg);
			o->runs = (int)v;
			break;
		case O_TIMEOUT:
			if (hm_parse_u64(arg, &v) || v < 1 || v > 86400)
				return usage_err("bad --timeout '%s' (1..86400 seconds)", optarg);
			o->timeout = (int)v;
			break;
		case O_PASSES:
			if (hm_parse_u64(arg, &v) || v < 1 || v > 1000)
				return usage_err("bad --passes '%s' (1..1000)", optarg);
			o->passes = (int)v;
			break;
		case O_BASE:
			base = optarg;
			if (lookup(sys_names, S_COUNT, base) < 0)
				return usage_err("unknown baseline system '%s' (hmmap, mmap-cold, "
				                 "mmap-warm, pread)",
				                 optarg);
			break;
		case O_ALPHA:
			if (hm_parse_double(arg, &o->alpha) || !(o->alpha > 0 && o->alpha <= 10))
				return usage_err("bad --alpha '%s' (more than 0, at most 10)",
				                 optarg);
			break;
		case O_HOTF:
			if (parse_frac(arg, &o->hot_frac) || o->hot_frac <= 0)
				return usage_err("bad --hot-fraction '%s' (more than 0, at most 1)",
				                 optarg);
			break;
		case O_HOTS:
			if (parse_frac(arg, &o->hot_share))
				return usage_err("bad --hot-share '%s' (0..1)", optarg);
			break;
		case O_SCALE:
			if (hm_parse_u64(arg, &o->scale) || o->scale < 4 || o->scale > 24)
				return usage_err("bad --scale '%s' (4..24)", optarg);
			break;
		case O_OPS:
			if (hm_parse_u64(arg, &o->ops) || o->ops < 1 || o->ops > (1ull << 40))
				return usage_err("bad --ops '%s' (a positive count)", optarg);
			break;
		case O_SCAN:
			if (hm_parse_u64(arg, &o->scan_every) || o->scan_every < 1)
				return usage_err("bad --scan-every '%s' (a positive count)",
				                 optarg);
			break;
		case O_RW: {
			char *colon = strchr(arg, ':');
			uint64_t r, w;
			if (!colon)
				return usage_err("bad --rw '%s' (R:W, e.g. 3:1)", optarg);
			*colon = 0;
			if (hm_parse_u64(arg, &r) || hm_parse_u64(colon + 1, &w) || r + w == 0 ||
			    r > 1000000 || w > 1000000)
				return usage_err("bad --rw '%s' (R:W, e.g. 3:1)", optarg);
			o->wfrac = (double)w / (double)(r + w);
			break;
		}
		case O_CSV:
			o->csv = 1;
			break;
		case O_JSON:
			o->json = 1;
			break;
		case O_PROG:
			o->progress = 1;
			break;
		case O_KEEP:
			o->keep = 1;
			break;
		case O_HELP:
		case 'h':
			bench_usage(stdout);
			return -1;
		default:
			if (optopt >= 256)
				return usage_err("option '%s' needs a value", argv[optind - 1]);
			if (optopt)
				return usage_err("unknown option '-%c'", optopt);
			return usage_err("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_err("unexpected argument '%s'", argv[optind]);
	if (o->csv && o->json)
		return usage_err("--csv and --json exclude each other%s", "");
	if (!o->nwl)
		for (int i = 0; i < W_COUNT; i++)
			o->wl[o->nwl++] = i;
	if (!o->nsys)
		for (int i = 0; i < S_COUNT; i++)
			o->sys[o->nsys++] = i;
	if (!o->ncache) {
		o->cache[0] = def_cache;
		o->ncache = 1;
	}
	if (!o->npage) {
		o->page[0] = 4096;
		o->npage = 1;
	}
	if (!o->npolicy) {
		o->policy[0] = def_policy;
		o->npolicy = 1;
	}
	if (!o->nfmode) {
		snprintf(def_fmode, sizeof def_fmode, "%s",
		         env_mode && (!strcmp(env_mode, "thread") || !strcmp(env_mode, "sigbus"))
		             ? env_mode
		             : "auto");
		o->fmode[0] = def_fmode;
		o->nfmode = 1;
	}
	if (!o->nmode) {
		o->mode[0] = def_mode;
		o->nmode = 1;
	}
	if (!o->nadvice) {
		o->advice[0] = def_adv;
		o->nadvice = 1;
	}
	if (!o->nthreads) {
		o->threads[0] = 1;
		o->nthreads = 1;
	}
	if (base) {
		int run = 0;
		o->baseline = lookup(sys_names, S_COUNT, base);
		for (int i = 0; i < o->nsys; i++)
			run |= o->sys[i] == o->baseline;
		/* Every ratio would be '-', and --plot would fail after the whole grid. */
		if (!run)
			return usage_err("--baseline %s is not one of the systems run (--system)",
			                 base);
	} else {
		o->baseline = o->sys[0];
		for (int i = 0; i < o->nsys; i++)
			if (o->sys[i] == S_MMAP_COLD)
				o->baseline = S_MMAP_COLD;
	}
	if (o->file) {
		int k0 = bench_data_kind(o->wl[0]);
		for (int i = 1; i < o->nwl; i++)
			if (bench_data_kind(o->wl[i]) != k0)
				return usage_err(
				    "--file holds one kind of data; the workloads listed "
				    "need several%s",
				    "");
	}
	return 0;
}

/* ---------------------------------------------------------------- the grid */

/* Appends one row; -ENOMEM if the array cannot grow. */
static int push_row(struct row **rows, int *n, int *cap, const struct row *x)
{
	if (*n == *cap) {
		int ncap = *cap ? 2 * *cap : 16;
		struct row *nr = realloc(*rows, (size_t)ncap * sizeof *nr);
		if (!nr)
			return -ENOMEM;
		*rows = nr;
		*cap = ncap;
	}
	(*rows)[(*n)++] = *x;
	return 0;
}

/*
 * The grid: for each workload, thread count and system, every combination
 * of the lists that apply to that system (cache and page size to hmmap and
 * the pool; store, policy, fault mode, mode and advice to hmmap only). Index k is
 * decoded into one entry of each list, the last list varying fastest.
 */
static int add_rows(const struct opts *o, struct row **rows, int *nrows)
{
	int cap = 0, n = 0;

	*rows = NULL;
	for (int w = 0; w < o->nwl; w++)
		for (int t = 0; t < o->nthreads; t++)
			for (int s = 0; s < o->nsys; s++) {
				int sys = o->sys[s], hm = sys == S_HMMAP;
				int sized = hm || sys == S_PREAD;
				int len[7] = {hm && o->nstore ? o->nstore : 1,
				              sized ? o->ncache : 1, sized ? o->npage : 1,
				              hm ? o->npolicy : 1,   hm ? o->nfmode : 1,
				              hm ? o->nmode : 1,     hm ? o->nadvice : 1};
				int total = 1, idx[7];
				for (int i = 0; i < 7; i++)
					total *= len[i];
				for (int k = 0; k < total; k++) {
					struct row x;
					int rest = k;
					for (int i = 6; i >= 0; i--) {
						idx[i] = rest % len[i];
						rest /= len[i];
					}
					memset(&x, 0, sizeof x);
					x.wl = o->wl[w];
					x.sys = sys;
					x.threads = o->threads[t];
					x.store = hm && o->nstore ? o->store[idx[0]] : NULL;
					snprintf(x.cache_spec, sizeof x.cache_spec, "%s",
					         sized ? o->cache[idx[1]] : "-");
					x.page = sized ? o->page[idx[2]] : 4096;
					x.policy = hm ? o->policy[idx[3]] : "-";
					x.fmode = hm ? o->fmode[idx[4]] : "-";
					x.mode = hm ? o->mode[idx[5]] : "-";
					x.advice = hm ? o->advice[idx[6]] : "-";
					if (push_row(rows, &n, &cap, &x)) {
						free(*rows);
						*rows = NULL;
						return -ENOMEM;
					}
				}
			}
	*nrows = n;
	return 0;
}

/* ---------------------------------------------------------------- children */

static int sync_hmmap(struct bmem *m)
{
	return hm_sync(m->base, m->sync_len, MS_SYNC);
}

static int sync_mmap(struct bmem *m)
{
	return msync(m->base, m->sync_len, MS_SYNC) ? -errno : 0;
}

static int sync_pool(struct bmem *m)
{
	return bpool_flush(m->pool);
}

/* Copies the data file into a store that is not the file itself. */
static int copy_into(struct hm_store *st, const char *path, uint64_t bytes, char *err, size_t len)
{
	struct hm_cache *c = NULL;
	struct hm_region *r = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0) {
		snprintf(err, len, "cannot open %.200s: %s", path, strerror(errno));
		return -errno;
	}
	if ((rc = hm_cache_new(&c, bytes < (64u << 20) ? bytes : 64u << 20, NULL)) ||
	    (rc = hm_region_map(&r, c, st, 0, bytes, PROT_READ | PROT_WRITE, HM_CACHED, 0))) {
		snprintf(err, len, "cannot map the store to fill it: %s", hm_errormsg());
		goto out;
	}
	/*
	 * Through a private buffer: in sigbus mode a system call cannot fault
	 * region pages in, so pread() straight into the region would fail.
	 */
	char *dst = hm_region_addr(r), *buf = malloc(1u << 20);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, len, "out of memory");
		goto out;
	}
	for (uint64_t off = 0; off < bytes;) {
		ssize_t n =
		    pread(fd, buf, bytes - off < (1u << 20) ? bytes - off : 1u << 20, (off_t)off);
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			snprintf(err, len, "cannot copy the data into the store: %s",
			         strerror(-rc));
			free(buf);
			goto out;
		}
		memcpy(dst + off, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	if ((rc = hm_sync(dst, bytes, MS_SYNC)))
		snprintf(err, len, "cannot sync the store: %s", hm_errormsg());
out:
	if (r)
		hm_region_unmap(r);
	if (c)
		hm_cache_free(c);
	close(fd);
	return rc;
}

static void run_hmmap(const struct opts *o, const struct row *r, const struct bdata *d,
                      const struct bparams *p, struct cres *c)
{
	struct hm_cache *hc = NULL;
	struct hm_store *st = NULL;
	struct hm_region *reg = NULL;
	struct hm_stats s;
	struct bmem m = {0};
	char uri[4200];
	int rc, flags = !strcmp(r->mode, "direct")    ? HM_DIRECT
	                : !strcmp(r->mode, "hybrid")  ? HM_HYBRID
	                : !strcmp(r->mode, "hugetlb") ? HM_CACHED | HM_HUGETLB
	                                              : HM_CACHED;

	if (strcmp(r->fmode, "auto"))
		setenv("HMMAP_FAULT_MODE", r->fmode, 1);
	else
		unsetenv("HMMAP_FAULT_MODE");
	if (r->store) {
		char sz[32];
		const char *pc = strstr(r->store, "%s");
		snprintf(sz, sizeof sz, "%llu", (unsigned long long)d->file_bytes);
		if (pc)
			snprintf(uri, sizeof uri, "%.*s%s%s", (int)(pc - r->store), r->store, sz,
			         pc + 2);
		else
			snprintf(uri, sizeof uri, "%s", r->store);
	} else {
		snprintf(uri, sizeof uri, "file:%s", d->path);
	}
	if ((rc = hm_store_open(&st, uri, 0))) {
		char *shown = hm__uri_redact(uri);
		snprintf(c->o.err, sizeof c->o.err, "store %.100s: %s", shown ? shown : "",
		         hm_errormsg());
		free(shown);
		goto out;
	}
	if (r->store) {
		if (hm_store_size(st) < d->file_bytes) {
			snprintf(c->o.err, sizeof c->o.err,
			         "store %.100s holds %llu bytes; the data needs %llu", hm_store_uri(st),
			         (unsigned long long)hm_store_size(st),
			         (unsigned long long)d->file_bytes);
			goto out;
		}
		if (copy_into(st, d->path, d->file_bytes, c->o.err, sizeof c->o.err))
			goto out;
	}
	if ((rc = hm_cache_new(&hc, r->cache, r->policy)) ||
	    (rc = hm_region_map(&reg, hc, st, 0, d->file_bytes, PROT_READ | PROT_WRITE, flags,
	                        r->page))) {
		snprintf(c->o.err, sizeof c->o.err, "%s", hm_errormsg());
		goto out;
	}
	if (strcmp(r->advice, "normal") &&
	    (rc = hm_advise(hm_region_addr(reg), d->file_bytes,
	                    !strcmp(r->advice, "random")       ? HM_ADV_RANDOM
	                    : !strcmp(r->advice, "sequential") ? HM_ADV_SEQUENTIAL
	                                                       : HM_ADV_NOREUSE))) {
		snprintf(c->o.err, sizeof c->o.err, "advise: %s", hm_errormsg());
		goto out;
	}
	m.base = hm_region_addr(reg);
	m.nwords = d->file_bytes / 8;
	m.sync = sync_hmmap;
	m.sync_len = d->file_bytes;
	if ((rc = bench_workload(r->wl, &m, d, p, &c->o))) {
		snprintf(c->o.err, sizeof c->o.err, "workload: %s", strerror(-rc));
		goto out;
	}
	if (!hm_region_stats(reg, &s)) {
		c->has_stats = 1;
		c->faults = s.faults_missing + s.faults_minor + s.faults_wp;
		c->misses = s.misses;
		c->evictions = s.evictions;
		c->writebacks = s.writebacks;
		c->bytes_read = s.bytes_read;
	}
out:
	if (reg && hm_region_unmap(reg) && !c->o.err[0])
		snprintf(c->o.err, sizeof c->o.err, "unmap: %s", hm_errormsg());
	if (hc)
		hm_cache_free(hc);
	if (st)
		hm_store_close(st);
}

static void run_mmap(const struct row *r, const struct bdata *d, const struct bparams *p,
                     struct cres *c)
{
	int fd = open(d->path, O_RDWR | O_CLOEXEC), rc;
	struct rusage r0, r1;
	struct bmem m = {0};
	void *base;

	if (fd < 0) {
		snprintf(c->o.err, sizeof c->o.err, "open: %s", strerror(errno));
		return;
	}
	base = mmap(NULL, d->file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED) {
		snprintf(c->o.err, sizeof c->o.err, "mmap: %s", strerror(errno));
		return;
	}
	m.base = base;
	m.nwords = d->file_bytes / 8;
	m.sync = sync_mmap;
	m.sync_len = d->file_bytes;
	getrusage(RUSAGE_SELF, &r0);
	rc = bench_workload(r->wl, &m, d, p, &c->o);
	getrusage(RUSAGE_SELF, &r1);
	if (rc)
		snprintf(c->o.err, sizeof c->o.err, "workload: %s", strerror(-rc));
	c->has_stats = 1;
	c->faults = (uint64_t)(r1.ru_minflt - r0.ru_minflt + r1.ru_majflt - r0.ru_majflt);
	c->misses = (uint64_t)(r1.ru_majflt - r0.ru_majflt);
	munmap(base, d->file_bytes);
}

static void run_pool(const struct row *r, const struct bdata *d, const struct bparams *p,
                     struct cres *c)
{
	struct bpool *pool;
	struct bmem m = {0};
	int rc;

	if (bpool_new(&pool, d->path, r->cache, r->page, r->threads, c->o.err, sizeof c->o.err))
		return;
	m.pool = pool;
	m.nwords = d->file_bytes / 8;
	m.wshift = (unsigned)__builtin_ctzll(r->page / 8);
	m.sync = sync_pool;
	if ((rc = bench_workload(r->wl, &m, d, p, &c->o)))
		snprintf(c->o.err, sizeof c->o.err, "workload: %s", strerror(-rc));
	c->has_stats = 1;
	bpool_stats(pool, &c->misses, &c->evictions, &c->writebacks, &c->bytes_read);
	c->faults = 0;
	bpool_free(pool);
}

/* Before a run: a cold system starts with nothing of the file in the page cache. */
static void prepare(int sys, const char *path, uint64_t bytes, int root)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (sys == S_MMAP_WARM) {
		char *buf = malloc(1u << 20);
		for (uint64_t off = 0; buf && off < bytes;) {
			ssize_t n = pread(fd, buf, 1u << 20, (off_t)off);
			if (n <= 0)
				break;
			off += (uint64_t)n;
		}
		free(buf);
	} else {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		if (root) {
			int dc = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
			if (dc >= 0) {
				if (write(dc, "1", 1) < 0)
					(void)0; /* not allowed here (a container): fadvise did the
					            file */
				close(dc);
			}
		}
	}
	close(fd);
}

/* Runs one repetition of a row in a child; 0 with *c filled, or -1. */
static int run_child(const struct opts *o, const struct row *r, const struct bdata *d,
                     const struct bparams *p, struct cres *c)
{
	int pfd[2], st;
	pid_t pid;
	ssize_t n;

	memset(c, 0, sizeof *c);
	if (pipe2(pfd, O_CLOEXEC)) {
		snprintf(c->o.err, sizeof c->o.err, "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		snprintf(c->o.err, sizeof c->o.err, "fork: %s", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		struct cres res;
		memset(&res, 0, sizeof res);
		close(pfd[0]);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		if (r->sys == S_HMMAP)
			run_hmmap(o, r, d, p, &res);
		else if (r->sys == S_PREAD)
			run_pool(r, d, p, &res);
		else
			run_mmap(r, d, p, &res);
		n = write(pfd[1], &res, sizeof res);
		_exit(n == (ssize_t)sizeof res ? 0 : 1);
	}
	close(pfd[1]);
	cur_child = pid;
	n = -1;
	{
		struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
		int pr;
		do
			pr = poll(&pf, 1, o->timeout > 0 ? o->timeout * 1000 : -1);
		while (pr < 0 && errno == EINTR);
		if (pr == 0)
			kill(pid, SIGKILL);
		else
			n = read(pfd[0], c, sizeof *c);
	}
	close(pfd[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	cur_child = 0;
	if (n != (ssize_t)sizeof *c) {
		memset(c, 0, sizeof *c);
		if (n < 0 && o->timeout > 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
			snprintf(c->o.err, sizeof c->o.err, "timeout: stopped after %d s",
			         o->timeout);
		else if (WIFSIGNALED(st))
			snprintf(c->o.err, sizeof c->o.err, "the run died of signal %d (%s)",
			         WTERMSIG(st), strsignal(WTERMSIG(st)));
		else
			snprintf(c->o.err, sizeof c->o.err, "the run failed (exit %d)",
			         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return -1;
	}
	return c->o.err[0] ? -1 : 0;
}

/* ---------------------------------------------------------------- summary */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof v[0], cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * The row r is compared with: the baseline system's row of the same
 * workload and thread count, and - when both rows have a cache budget and
 * a page size (hmmap and the pread pool) - the same budget and page size,
 * so that each grid point is divided by its own baseline. Without such a
 * row (mmap rows have no budget), the first row of that workload and
 * thread count. NULL if the baseline system has none.
 */
static const struct row *base_row(const struct row *rows, int nrows, int baseline,
                                  const struct row *r)
{
	const struct row *first = NULL;
	int sized = r->sys == S_HMMAP || r->sys == S_PREAD;

	for (int k = 0; k < nrows; k++) {
		const struct row *b = &rows[k];
		if (b->sys != baseline || b->wl != r->wl || b->threads != r->threads)
			continue;
		if (sized && (b->sys == S_HMMAP || b->sys == S_PREAD) && b->cache == r->cache &&
		    b->page == r->page)
			return b;
		if (!first)
			first = b;
	}
	return first;
}

static void summarise(struct row *rows, int nrows, int baseline, int passes)
{
	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		double secs[MAX_RUNS], rates[MAX_RUNS], bests[MAX_RUNS];
		int n = 0, nbest = 0;
		r->bad = 0;
		for (int k = 0; k < r->nrun; k++) {
			const struct bout *o = &r->run[k].o;
			if (o->err[0] || o->secs <= 0)
				continue;
			secs[n] = o->secs;
			rates[n] = o->units / o->secs;
			if (o->best_pass_secs > 0 && passes > 1)
				bests[nbest++] = o->units / passes / o->best_pass_secs;
			r->bad += o->bad;
			n++;
		}
		r->med = -1;
		r->has_best = 0;
		if (!n)
			continue;
		r->secs = median(secs, n);
		r->rate = median(rates, n);
		if (nbest) {
			r->best_rate = median(bests, nbest);
			r->has_best = 1;
		}
		if (!strcmp(bench_unit(r->wl), "MB/s")) {
			r->rate /= 1e6;
			r->best_rate /= 1e6;
		}
		/* The counters shown are those of the run nearest the median time. */
		double best = 1e300;
		for (int k = 0; k < r->nrun; k++)
			if (!r->run[k].o.err[0] && fabs(r->run[k].o.secs - r->secs) < best) {
				best = fabs(r->run[k].o.secs - r->secs);
				r->med = k;
			}
	}
	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		const struct row *b = base_row(rows, nrows, baseline, r);
		r->has_ratio = 0;
		if (b && b->med >= 0 && r->med >= 0 && b->rate > 0) {
			r->ratio = r->rate / b->rate;
			r->has_ratio = 1;
		}
	}
}

static const char *check_word(const struct row *r)
{
	if (r->med < 0)
		return "FAILED";
	if (r->bad || r->cross_bad)
		return "BAD";
	if (r->nfail)
		return "some-failed";
	return "ok";
}

static void human(char *buf, size_t n, double v)
{
	if (v >= 1e9)
		snprintf(buf, n, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, n, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, n, "%.1fk", v / 1e3);
	else
		snprintf(buf, n, "%.1f", v);
}

/* A count: whole below 10k, then as human() shortens it. */
static void human_count(char *buf, size_t n, uint64_t v)
{
	if (v < 10000)
		snprintf(buf, n, "%llu", (unsigned long long)v);
	else
		human(buf, n, (double)v);
}

static void size_str(char *buf, size_t n, uint64_t v)
{
	if (v && v % (1ull << 30) == 0)
		snprintf(buf, n, "%lluG", (unsigned long long)(v >> 30));
	else if (v && v % (1ull << 20) == 0)
		snprintf(buf, n, "%lluM", (unsigned long long)(v >> 20));
	else if (v && v % 1024 == 0)
		snprintf(buf, n, "%lluK", (unsigned long long)(v >> 10));
	else
		snprintf(buf, n, "%llu", (unsigned long long)v);
}

/*
 * stream's rate above covers every pass, the first (cold) one included.
 * STREAM itself reports the best pass after the first, and so do the
 * published figures made with it (UMap's among them): list that too.
 */
static void print_best_passes(const struct opts *o, struct row *rows, int nrows)
{
	int any = 0;

	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		char cache[24] = "-", page[24] = "-", ratio[24] = "-";
		if (!r->has_best)
			continue;
		if (!any++)
			printf("stream, the best pass after the first (STREAM's own figure), "
			       "medians:\n");
		if (r->sys == S_HMMAP || r->sys == S_PREAD) {
			size_str(cache, sizeof cache, r->cache);
			size_str(page, sizeof page, r->page);
		}
		const struct row *b = base_row(rows, nrows, o->baseline, r);
		if (b && b->has_best && b->best_rate > 0)
			snprintf(ratio, sizeof ratio, "%.2fx", r->best_rate / b->best_rate);
		printf("  %-9s %-7s %-5s %-6s %-6s %-7s %3d %9.1f MB/s %7s\n", sys_names[r->sys],
		       cache, page, r->policy, r->fmode,
		       !strcmp(r->advice, "sequential") ? "seq" : r->advice, r->threads,
		       r->best_rate, ratio);
	}
}

/* The row's --store URI with any password hidden, into buf ("" without one). */
static const char *store_shown(const struct row *r, char *buf, size_t len)
{
	char *shown = r->store ? hm__uri_redact(r->store) : NULL;

	snprintf(buf, len, "%s", shown ? shown : r->store ? "***" : "");
	free(shown);
	return buf;
}

/*
 * The system column: a region mode other than cached is part of the name,
 * and so is the store's number when several were given (the list is
 * printed below the table).
 */
static const char *sys_label(const struct opts *o, const struct row *r, char *buf, size_t len)
{
	char num[16] = "";

	if (r->sys == S_HMMAP && o->nstore > 1)
		for (int k = 0; k < o->nstore; k++)
			if (r->store == o->store[k])
				snprintf(num, sizeof num, "[%d]", k + 1);
	snprintf(buf, len, "%s%s%s%s", sys_names[r->sys],
		 r->sys == S_HMMAP && strcmp(r->mode, "cached") ? "/" : "",
		 r->sys == S_HMMAP && strcmp(r->mode, "cached") ? r->mode : "", num);
	return buf;
}

static void print_table(const struct opts *o, struct row *rows, int nrows)
{
	printf("%-8s %-9s %-7s %-5s %-6s %-6s %-7s %3s %9s %9s %-7s %7s %9s %9s %9s %s\n",
	       "workload", "system", "cache", "page", "policy", "fault", "advice", "thr", "seconds",
	       "rate", "unit", "ratio", "faults", "misses", "evicted", "check");
	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		char cache[24] = "-", page[24] = "-", rate[24] = "-", ratio[24] = "-";
		char f[24] = "-", mi[24] = "-", ev[24] = "-", secs[24] = "-", sys[32];
		sys_label(o, r, sys, sizeof sys);
		if (r->sys == S_HMMAP || r->sys == S_PREAD) {
			size_str(cache, sizeof cache, r->cache);
			size_str(page, sizeof page, r->page);
		}
		if (r->med >= 0) {
			const struct cres *c = &r->run[r->med];
			snprintf(secs, sizeof secs, "%.3f", r->secs);
			human(rate, sizeof rate, r->rate);
			if (r->has_ratio)
				snprintf(ratio, sizeof ratio, "%.2fx", r->ratio);
			if (r->sys != S_PREAD)
				human_count(f, sizeof f, c->faults);
			human_count(mi, sizeof mi, c->misses);
			if (r->sys == S_HMMAP || r->sys == S_PREAD)
				human_count(ev, sizeof ev, c->evictions);
		}
		printf("%-8s %-9s %-7s %-5s %-6s %-6s %-7s %3d %9s %9s %-7s %7s %9s %9s %9s %s\n",
		       wl_names[r->wl], sys, cache, page, r->policy, r->fmode,
		       !strcmp(r->advice, "sequential") ? "seq" : r->advice, r->threads, secs, rate,
		       bench_unit(r->wl), ratio, f, mi, ev, check_word(r));
	}
	for (int i = 0; i < nrows; i++)
		if (rows[i].err[0]) {
			char sys[48];
			printf("  %s %s: %s\n", wl_names[rows[i].wl],
			       sys_label(o, &rows[i], sys, sizeof sys), rows[i].err);
		}
	print_best_passes(o, rows, nrows);
	for (int k = 0; o->nstore > 1 && k < o->nstore; k++) {
		struct row x = { .store = o->store[k] };
		char st[512];
		printf("%s  hmmap[%d] %s\n", k ? "" : "stores:\n", k + 1,
		       store_shown(&x, st, sizeof st));
	}
	printf("medians of %d run%s; ratio: rate / %s's rate (higher is better)\n", o->runs,
	       o->runs == 1 ? "" : "s", sys_names[o->baseline]);
}

/* A quoted CSV field: s without its quotes and newlines. */
static void csv_text(const char *s)
{
	putchar('"');
	for (; *s; s++)
		if (*s != '"' && *s != '\n')
			putchar(*s);
	putchar('"');
}

static void print_csv(struct row *rows, int nrows)
{
	printf(
	    "workload,system,cache_bytes,page_size,policy,fault_mode,mode,threads,runs,ok_runs,"
	    "advice,seconds,rate,unit,ratio,faults,misses,evictions,writebacks,bytes_read,verified,"
	    "best_pass_rate,error,store\n");
	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		const struct cres *c = r->med >= 0 ? &r->run[r->med] : NULL;
		char ratio[32] = "";
		if (r->has_ratio)
			snprintf(ratio, sizeof ratio, "%.4f", r->ratio);
		printf(
		    "%s,%s,%llu,%llu,", wl_names[r->wl], sys_names[r->sys],
		    (unsigned long long)(r->sys == S_HMMAP || r->sys == S_PREAD ? r->cache : 0),
		    (unsigned long long)r->page);
		/* Quoted where needed: "s3fifo:small=0.2,threshold=1" has a comma. */
		if (strpbrk(r->policy, ",\"\n"))
			csv_text(r->policy);
		else
			fputs(r->policy, stdout);
		printf(
		    ",%s,%s,%d,%d,%d,%s,%.6f,%.6g,%s,%s,%llu,%llu,%llu,%llu,%llu,"
		    "%s,",
		    r->fmode, r->mode, r->threads, r->nrun,
		    r->nrun - r->nfail, r->advice, r->secs, r->rate, bench_unit(r->wl), ratio,
		    (unsigned long long)(c ? c->faults : 0),
		    (unsigned long long)(c ? c->misses : 0),
		    (unsigned long long)(c ? c->evictions : 0),
		    (unsigned long long)(c ? c->writebacks : 0),
		    (unsigned long long)(c ? c->bytes_read : 0),
		    r->med >= 0 && !r->bad && !r->cross_bad ? "true" : "false");
		if (r->has_best)
			printf("%.6g", r->best_rate);
		char st[512];
		putchar(',');
		csv_text(r->err);
		putchar(',');
		csv_text(store_shown(r, st, sizeof st));
		putchar('\n');
	}
}


static void machine(int *cpus, uint64_t *mem, char *kernel, size_t klen, double load[3])
{
	struct utsname u;

	*cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	*mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	if (!uname(&u))
		snprintf(kernel, klen, "%s %s %s", u.sysname, u.release, u.machine);
	else
		snprintf(kernel, klen, "unknown");
	if (getloadavg(load, 3) != 3)
		load[0] = load[1] = load[2] = -1;
}

static void print_json(const struct opts *o, struct row *rows, int nrows, const char *dir)
{
	int cpus;
	uint64_t mem;
	char kernel[256];
	double load[3];

	machine(&cpus, &mem, kernel, sizeof kernel, load);
	printf("{\n  \"tool\": \"hmmap bench\",\n  \"version\": ");
	hm_cli_json_str(hm_version());
	printf(",\n  \"machine\": {\"cpus\": %d, \"memory_bytes\": %llu, \"kernel\": ", cpus,
	       (unsigned long long)mem);
	hm_cli_json_str(kernel);
	printf(", \"load\": [%.2f, %.2f, %.2f]},\n  \"data_dir\": ", load[0], load[1], load[2]);
	hm_cli_json_str(dir);
	printf(",\n  \"runs\": %d,\n  \"baseline\": \"%s\",\n  \"results\": [\n", o->runs,
	       sys_names[o->baseline]);
	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		const struct cres *c = r->med >= 0 ? &r->run[r->med] : NULL;
		printf("    {\"workload\": \"%s\", \"system\": \"%s\", ", wl_names[r->wl],
		       sys_names[r->sys]);
		if (r->sys == S_HMMAP || r->sys == S_PREAD)
			printf("\"cache_bytes\": %llu, \"page_size\": %llu, ",
			       (unsigned long long)r->cache, (unsigned long long)r->page);
		else
			printf("\"cache_bytes\": null, \"page_size\": %llu, ",
			       (unsigned long long)r->page);
		printf("\"policy\": \"%s\", \"fault_mode\": \"%s\", \"mode\": \"%s\", \"advice\": "
		       "\"%s\", "
		       "\"threads\": %d, \"runs\": %d, \"ok_runs\": %d, ",
		       r->policy, r->fmode, r->mode, r->advice, r->threads, r->nrun,
		       r->nrun - r->nfail);
		printf("\"store\": ");
		if (r->store) {
			char st[512];
			hm_cli_json_str(store_shown(r, st, sizeof st));
			printf(", ");
		} else {
			printf("null, ");
		}
		if (c)
			printf("\"seconds\": %.6f, \"rate\": %.6g, ", r->secs, r->rate);
		else
			printf("\"seconds\": null, \"rate\": null, ");
		printf("\"unit\": \"%s\", \"seconds_all\": [", bench_unit(r->wl));
		for (int k = 0, first = 1; k < r->nrun; k++)
			if (!r->run[k].o.err[0]) {
				printf("%s%.6f", first ? "" : ", ", r->run[k].o.secs);
				first = 0;
			}
		printf("], ");
		if (r->has_ratio)
			printf("\"ratio\": %.6g, ", r->ratio);
		else
			printf("\"ratio\": null, ");
		if (r->has_best)
			printf("\"best_pass_rate\": %.6g, ", r->best_rate);
		else
			printf("\"best_pass_rate\": null, ");
		printf("\"faults\": %llu, \"misses\": %llu, \"evictions\": %llu, \"writebacks\": "
		       "%llu, "
		       "\"bytes_read\": %llu, \"bad\": %llu, \"verified\": %s, \"error\": ",
		       (unsigned long long)(c ? c->faults : 0),
		       (unsigned long long)(c ? c->misses : 0),
		       (unsigned long long)(c ? c->evictions : 0),
		       (unsigned long long)(c ? c->writebacks : 0),
		       (unsigned long long)(c ? c->bytes_read : 0), (unsigned long long)r->bad,
		       c && !r->bad && !r->cross_bad ? "true" : "false");
		if (r->err[0])
			hm_cli_json_str(r->err);
		else
			printf("null");
		printf("}%s\n", i + 1 < nrows ? "," : "");
	}
	printf("  ]\n}\n");
}

/* ---------------------------------------------------------------- plot */

static const char no_gnuplot[] =
    "hmmap bench: cannot plot: gnuplot is not installed (apt-get install gnuplot-nox)\n";

/*
 * s as the inside of a gnuplot single-quoted string, where a quote is
 * written twice and nothing else is special. Returns -1 if it does not
 * fit in out or holds a newline, which ends a gnuplot command anywhere.
 */
static int gp_quote(char *out, size_t cap, const char *s)
{
	size_t k = 0;

	for (; *s; s++) {
		if (*s == '\n' || k + 3 > cap)
			return -1;
		if (*s == '\'')
			out[k++] = '\'';
		out[k++] = *s;
	}
	out[k] = 0;
	return 0;
}

static int plot(const struct opts *o, struct row *rows, int nrows, const char *dir)
{
	char dat[4200], gp[4200];
	FILE *f;
	int rc, st;

	snprintf(dat, sizeof dat, "%s/hmmap-bench-plot-%d.dat", dir, (int)getpid());
	snprintf(gp, sizeof gp, "%s/hmmap-bench-plot-%d.gp", dir, (int)getpid());
	f = fopen(dat, "w");
	if (!f) {
		fprintf(stderr, "hmmap bench: cannot write %s: %s\n", dat, strerror(errno));
		return 1;
	}
	int n = 0;
	for (int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		char cache[24] = "", page[24] = "";
		if (r->med < 0 || !r->has_ratio)
			continue;
		if (r->sys == S_HMMAP || r->sys == S_PREAD) {
			size_str(cache, sizeof cache, r->cache);
			size_str(page, sizeof page, r->page);
		}
		/* What else tells hmmap's rows apart: the lists given more than one entry. */
		char more[600] = "", shown[512];
		if (r->sys == S_HMMAP) {
			const char *part[4] = { o->npolicy > 1 ? r->policy : NULL,
						o->nmode > 1 ? r->mode : NULL,
						o->nadvice > 1 ? r->advice : NULL,
						o->nstore > 1 ? store_shown(r, shown, sizeof shown) : NULL };
			for (int k = 0; k < 4; k++) {
				size_t at = strlen(more);
				if (part[k])
					snprintf(more + at, sizeof more - at, " %s", part[k]);
			}
			for (char *c = more; *c; c++)
				if (*c == '"' || *c == '\\')
					*c = '_';
		}
		if (o->nthreads > 1) {
			size_t at = strlen(more);
			snprintf(more + at, sizeof more - at, " %dT", r->threads);
		}
		fprintf(f, "\"%s %s%s%s%s%s%s%s%s\" %d %.6g\n", wl_names[r->wl], sys_names[r->sys],
		        cache[0] ? " " : "", cache, page[0] ? "/" : "", page,
		        r->sys == S_HMMAP && strcmp(r->fmode, "auto") ? " " : "",
		        r->sys == S_HMMAP && strcmp(r->fmode, "auto") ? r->fmode : "", more,
		        r->sys + 1, r->ratio);
		n++;
	}
	fclose(f);
	if (!n) {
		unlink(dat);
		fprintf(stderr, "hmmap bench: nothing to plot (no row has a baseline figure)\n");
		return 1;
	}
	/*
	 * Boxes on a log axis rise from its bottom: the range must reach below
	 * 1, or the baseline's own bars (ratio 1) have no height when every
	 * other ratio is at least 1; and above the highest bar.
	 */
	double lo = 1, hi = 1;
	for (int i = 0; i < nrows; i++) {
		if (rows[i].med < 0 || !rows[i].has_ratio || rows[i].ratio <= 0)
			continue;
		lo = rows[i].ratio < lo ? rows[i].ratio : lo;
		hi = rows[i].ratio > hi ? rows[i].ratio : hi;
	}
	char qplot[8400], qdat[8400];
	if (gp_quote(qplot, sizeof qplot, o->plot) || gp_quote(qdat, sizeof qdat, dat)) {
		unlink(dat);
		fprintf(stderr, "hmmap bench: cannot pass %s to gnuplot\n", o->plot);
		return 1;
	}
	/* Wide enough for the title (about 85 characters of 9-point text). */
	int width = n * 28 + 300;
	width = width < 640 ? 640 : width > 3000 ? 3000 : width;
	f = fopen(gp, "w");
	if (!f) {
		unlink(dat);
		fprintf(stderr, "hmmap bench: cannot write %s: %s\n", gp, strerror(errno));
		return 1;
	}
	fprintf(
	    f,
	    "set terminal pngcairo size %d,600 font 'sans,9'\n"
	    "set output '%s'\n"
	    "set title 'hmmap bench: speed relative to %s (higher is better), medians of %d "
	    "runs'\n"
	    "set style fill solid 0.8 border -1\n"
	    "set boxwidth 0.7\n"
	    "set logscale y 2\n"
	    "set grid ytics\n"
	    "set ylabel 'rate / %s rate'\n"
	    "set xtics rotate by -45 left noenhanced\n"
	    "set bmargin 12\n"
	    "unset key\n"
	    "set xrange [-0.7:%d]\n"
	    "set yrange [%.6g:%.6g]\n"
	    "plot '%s' using 0:3:2:xtic(1) with boxes lc variable, 1 with lines dt 2 lc 'black'\n",
	    width, qplot, sys_names[o->baseline], o->runs, sys_names[o->baseline], n, lo / 1.5,
	    hi * 1.5, qdat);
	fclose(f);
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, 1);
		execlp("gnuplot", "gnuplot", gp, (char *)NULL);
		_exit(127);
	}
	rc = 1;
	if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st)) {
		if (WEXITSTATUS(st) == 0)
			rc = 0;
		else if (WEXITSTATUS(st) == 127)
			fputs(no_gnuplot, stderr);
		else
			fprintf(stderr, "hmmap bench: gnuplot failed to draw %s\n", o->plot);
	}
	if (o->keep) {
		/* To draw it again in another style: gnuplot SCRIPT. */
		fprintf(stderr, "hmmap bench: kept the plot's gnuplot script %s and data %s\n", gp,
		        dat);
	} else {
		unlink(dat);
		unlink(gp);
	}
	return rc;
}

/* ---------------------------------------------------------------- progress */

/*
 * The columns a status line may use: one less than the width of the
 * terminal on stderr (80 when stderr is not a terminal), so that a line
 * never wraps - a wrapped line is left behind by the next \r redraw - and
 * the cursor never waits in the last column.
 */
static int status_cols(void)
{
	struct winsize ws;
	int cols = 80;

	if (!ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) && ws.ws_col)
		cols = ws.ws_col;
	return cols > 20 ? cols - 1 : 19;
}

/* Draws text over the status line: cut to fit, blanks over what was there. */
static void status_line(const char *text)
{
	int cols = status_cols();

	fprintf(stderr, "\r%-*.*s", cols, cols, text);
}

static void status_clear(void)
{
	fprintf(stderr, "\r%*s\r", status_cols(), "");
}

/* The bar shrinks (30 to 10 cells) before the line is cut to the terminal. */
static void progress(int done, int total, double t0, const struct row *r)
{
	char bar[31], text[256], line[320];
	double el = now() - t0, left = done ? el / done * (total - done) : 0;
	int cells, fill;

	snprintf(text, sizeof text, "] %d/%d runs, %.0fs elapsed, about %.0fs left  %s %s", done,
	         total, el, left, r ? wl_names[r->wl] : "", r ? sys_names[r->sys] : "");
	cells = status_cols() - 1 - (int)strlen(text);
	cells = cells > 30 ? 30 : cells < 10 ? 10 : cells;
	fill = total ? done * cells / total : cells;
	for (int i = 0; i < cells; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[cells] = 0;
	snprintf(line, sizeof line, "[%s%s", bar, text);
	status_line(line);
	if (done == total)
		fprintf(stderr, "\n");
	fflush(stderr);
}

/* ---------------------------------------------------------------- main */

static const char *data_dir(const struct opts *o, char *buf, size_t n)
{
	const char *d = o->dir;
	struct statfs sf;

	if (o->file) {
		const char *slash = strrchr(o->file, '/');
		if (!slash)
			return ".";
		snprintf(buf, n, "%.*s", (int)(slash - o->file), o->file);
		return buf[0] ? buf : "/";
	}
	if (!d) {
		d = getenv("TMPDIR");
		if (!d || !*d)
			d = "/tmp";
		if (!statfs(d, &sf) && (unsigned long)sf.f_type == TMPFS_MAGIC_) {
			fprintf(stderr,
			        "hmmap bench: %s is a tmpfs; data files go to /var/tmp so that "
			        "a cold mmap reads a disk\n",
			        d);
			d = "/var/tmp";
		}
	} else if (!statfs(d, &sf) && (unsigned long)sf.f_type == TMPFS_MAGIC_) {
		fprintf(stderr, "hmmap bench: note: %s is a tmpfs: mmap-cold is not cold there\n",
		        d);
	}
	snprintf(buf, n, "%s", d);
	return buf;
}

/*
 * Before minutes of runs: --plot needs gnuplot and a directory it can
 * write the image into. Returns 0, or 2 after saying what is missing.
 */
static int plot_ready(const char *file)
{
	char dir[4096];
	const char *slash = strrchr(file, '/');

	/* A quote is escaped for gnuplot; a newline cannot be. */
	if (strchr(file, '\n')) {
		fprintf(stderr, "hmmap bench: gnuplot cannot write to a path with a newline\n");
		return 2;
	}
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else
		snprintf(dir, sizeof dir, "%.*s", slash == file ? 1 : (int)(slash - file), file);
	if (access(dir, W_OK | X_OK)) {
		fprintf(stderr, "hmmap bench: cannot write the plot into %s: %s\n", dir,
		        strerror(errno));
		return 2;
	}
	/* The shell finds gnuplot on PATH as plot()'s execlp() will. */
	if (system("command -v gnuplot >/dev/null 2>&1")) {
		fputs(no_gnuplot, stderr);
		return 2;
	}
	return 0;
}

int hm_cli_bench(int argc, char **argv)
{
	struct opts o;
	struct row *rows = NULL;
	int nrows = 0, rc, status = 0, root = geteuid() == 0;
	char dirbuf[4096];
	const char *dir;
	struct bdata data[4];
	int have[4] = {0}, last_use[4] = {-1, -1, -1, -1};
	int show_progress, done = 0, total;
	double t0;

	rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (o.plot && (rc = plot_ready(o.plot)))
		return rc;
	dir = data_dir(&o, dirbuf, sizeof dirbuf);
	if (o.plot && strchr(dir, '\n')) {
		/* The plot's data file goes there, and gnuplot is given its name. */
		fprintf(stderr, "hmmap bench: --plot needs a data directory without a newline\n");
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	if (add_rows(&o, &rows, &nrows))
		return 1;
	show_progress = o.progress || isatty(2);
	total = nrows * o.runs;
	for (int w = 0; w < o.nwl; w++)
		last_use[bench_data_kind(o.wl[w])] = w;
	if (!o.csv && !o.json) {
		int cpus;
		uint64_t mem;
		char kernel[256];
		double load[3];
		machine(&cpus, &mem, kernel, sizeof kernel, load);
		printf("hmmap bench %s: %s, %d CPUs, %.1f GiB, load %.2f; data in %s%s\n",
		       hm_version(), kernel, cpus, (double)mem / (1ull << 30), load[0], dir,
		       root ? "; page cache dropped before cold runs" : "");
		fflush(stdout);
	}
	t0 = now();
	for (int w = 0; w < o.nwl; w++) {
		int wl = o.wl[w], kind = bench_data_kind(wl);
		struct bdata *d = &data[kind];
		char path[4200], err[512];
		uint64_t param = kind == D_GRAPH ? o.scale : o.size;
		double *cdf = NULL;

		if (!have[kind]) {
			if (o.file)
				snprintf(path, sizeof path, "%s", o.file);
			else if (o.keep)
				snprintf(path, sizeof path, "%s/hmmap-bench-%s-%llu.dat", dir,
				         kind_names[kind], (unsigned long long)param);
			else
				snprintf(path, sizeof path, "%s/hmmap-bench-%s-%llu-%d.dat", dir,
				         kind_names[kind], (unsigned long long)param,
				         (int)getpid());
			if (show_progress) {
				char text[4400];
				snprintf(text, sizeof text, "generating %s data (%s)...",
				         kind_names[kind], path);
				status_line(text);
				fflush(stderr);
			}
			rc = bdata_make(d, kind, path, param, o.file || o.keep, err, sizeof err);
			if (show_progress)
				status_clear();
			if (rc) {
				fprintf(stderr, "hmmap bench: %s\n", err);
				status = 1;
				goto out;
			}
			have[kind] = 1;
			if (!o.file && !o.keep) {
				snprintf(gen_paths[kind], sizeof gen_paths[kind], "%s", d->path);
				gen_live[kind] = 1;
			}
		}
		if (wl == W_ZIPF && !(cdf = bench_zipf_cdf(d->items, o.alpha))) {
			status = 1;
			goto out;
		}
		/* Budgets are shares of this workload's data, in whole pages. */
		for (int i = 0; i < nrows; i++)
			if (rows[i].wl == wl)
				rows[i].cache =
				    resolve_cache(rows[i].sys == S_HMMAP || rows[i].sys == S_PREAD
				                      ? rows[i].cache_spec
				                      : o.cache[0],
				                  d->data_bytes, rows[i].page);
		for (int run = 0; run < o.runs; run++) {
			for (int i = 0; i < nrows; i++) {
				struct row *r = &rows[i];
				struct bparams p = {
				    .threads = r->threads,
				    .ops = o.ops,
				    .alpha = o.alpha,
				    .hot_frac = o.hot_frac,
				    .hot_share = o.hot_share,
				    .wfrac = o.wfrac,
				    .scan_every = o.scan_every,
				    .passes = o.passes,
				    .run_bytes = r->cache / 2,
				    .seed = 1000 + (uint64_t)run,
				    .zipf_cdf = cdf,
				};
				struct cres *c;
				if (r->wl != wl)
					continue;
				c = &r->run[r->nrun++];
				if (wl == W_SORT && bdata_reset_keys(d, err, sizeof err)) {
					snprintf(c->o.err, sizeof c->o.err, "%.200s", err);
				} else {
					prepare(r->sys, d->path, d->file_bytes, root);
					run_child(&o, r, d, &p, c);
				}
				if (c->o.err[0]) {
					r->nfail++;
					snprintf(r->err, sizeof r->err, "%s", c->o.err);
				}
				done++;
				if (show_progress)
					progress(done, total, t0, r);
			}
		}
		free(cdf);
		/* BFS levels are unique: every system must have found the same ones. */
		if (wl == W_BFS) {
			const uint64_t *ref = NULL;
			for (int i = 0; i < nrows; i++)
				for (int k = 0; k < rows[i].nrun; k++) {
					struct cres *c = &rows[i].run[k];
					if (rows[i].wl != W_BFS || c->o.err[0])
						continue;
					if (!ref)
						ref = c->o.check;
					else if (memcmp(ref, c->o.check, sizeof c->o.check))
						rows[i].cross_bad = 1;
				}
		}
		if (last_use[kind] == w && !o.file && !o.keep) {
			gen_live[kind] = 0;
			unlink(d->path);
			have[kind] = 0;
		}
	}
	summarise(rows, nrows, o.baseline, o.passes);
	if (o.csv)
		print_csv(rows, nrows);
	else if (o.json)
		print_json(&o, rows, nrows, dir);
	else
		print_table(&o, rows, nrows);
	for (int i = 0; i < nrows; i++)
		if (rows[i].med < 0 || rows[i].nfail || rows[i].bad || rows[i].cross_bad)
			status = 1;
	if (o.plot && plot(&o, rows, nrows, dir))
		status = 1;
out:
	for (int k = 0; k < 4; k++) {
		gen_live[k] = 0;
		if (have[k] && !o.file && !o.keep)
			unlink(data[k].path);
	}
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	for (size_t i = 0; i < sizeof dup_list_buf / sizeof dup_list_buf[0]; i++) {
		free(dup_list_buf[i]);
		dup_list_buf[i] = NULL;
	}
	hm_cli_strs_free(&policy_specs);
	free(rows);
	return status;
}
