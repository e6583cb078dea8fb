/* SPDX-License-Identifier: MIT */
/*
 * Cold sequential scan of a file on disk, and the memory it costs: hmmap
 * (HMMAP_FAULT_MODE=thread and =sigbus, a child process each; default
 * advice, so its sequential readahead is on) beside kernel mmap (default
 * readahead) and O_DIRECT 1 MiB reads (into a huge-page buffer from
 * hm_io_alloc(), as hmmap's own reads are). The scan reads the first word of
 * every 4 KiB page and checks it against the generator. Kernel caches are
 * dropped before each run.
 *
 * While hmmap scans the file through its cache, a second thread samples
 * hm_cache_stats().resident_bytes and the process RSS (/proc/self/statm)
 * every millisecond; the maxima are printed beside the budget and the
 * "budget + one eviction batch" limit the cache promises.
 *
 * An hmmap run stops after 20 s (5 s with --quick) so that the default run
 * stays within a few minutes even when hmmap is slow; the rate is then over
 * the part scanned and a note says so.
 */
#include <stdatomic.h>

#include "hmmap.h"
#include "bench_common.h"
#include "../tests/hugepool.h"

static const char usage[] =
	"usage: bench_scan [--threads 1] [--runs 3] [--size 4G] [--cache 256M]\n"
	"                  [--file /tmp/hmmap-bench-4g.dat] [--quick]\n"
	"  --threads  thread counts (each thread scans its own slice)\n"
	"  --runs     runs per figure; the median is printed\n"
	"  --size     size of the data file (created once, reused)\n"
	"  --cache    hmmap cache budget\n"
	"  --file     the data file (shared with bench_disk)\n"
	"  --quick    a short smoke run (64M file, 16M cache, 2 runs)\n";

static struct opts O;
static const char *path;

enum kind { K_ODIRECT = 1, K_MMAP, K_HMMAP };

struct scan {
	enum kind kind;
	char *base;
	int fd;
	uint64_t npages;
	double limit; /* seconds a run may take; it stops early after that */
	int cut;      /* set when a run stopped early */
};

static void *scan_fn(void *arg)
{
	struct worker *w = arg;
	struct scan *a = w->arg;
	uint64_t lo = a->npages * (uint64_t)w->id / (uint64_t)w->n;
	uint64_t hi = a->npages * (uint64_t)(w->id + 1) / (uint64_t)w->n, bad = 0;
	const size_t chunk = 1 << 20;
	char *buf = a->kind == K_ODIRECT ? hm_io_alloc(chunk) : NULL;

	worker_start(w);
	if (a->kind == K_ODIRECT) {
		for (uint64_t p = lo; p < hi; p += chunk / PG) {
			uint64_t n = hi - p < chunk / PG ? hi - p : chunk / PG;
			ssize_t got = pread(a->fd, buf, n * PG, (off_t)(p * PG));
			for (uint64_t i = 0; i < n; i++)
				if (got != (ssize_t)(n * PG) || *(uint64_t *)(buf + i * PG) != gen(p + i))
					bad++;
		}
	} else {
		double end = w->t_start + a->limit;
		for (uint64_t p = lo; p < hi; p++) {
			if (*(volatile uint64_t *)(a->base + p * PG) != gen(p))
				bad++;
			if ((p & 4095) == 4095 && now() > end) {
				a->cut = 1;
				hi = p + 1;
				break;
			}
		}
	}
	w->t_end = now();
	w->done = hi - lo;
	w->bad = bad;
	hm_io_free(buf, chunk);
	return NULL;
}

/* ------------------------------------------------- resident-memory sampler */

static struct {
	pthread_t th;
	atomic_int stop;
	struct hm_cache *cache;
	uint64_t max_res, max_rss, samples;
} smp;

static void *sampler(void *arg)
{
	struct timespec ts = { 0, 1000000 };
	struct hm_stats s;

	(void)arg;
	while (!atomic_load(&smp.stop)) {
		uint64_t rss = rss_bytes();
		if (smp.cache && !hm_cache_stats(smp.cache, &s) && s.resident_bytes > smp.max_res)
			smp.max_res = s.resident_bytes;
		if (rss > smp.max_rss)
			smp.max_rss = rss;
		smp.samples++;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void sampler_start(struct hm_cache *c)
{
	smp.cache = c;
	smp.max_res = smp.max_rss = smp.samples = 0;
	atomic_store(&smp.stop, 0);
	pthread_create(&smp.th, NULL, sampler, NULL);
}

static void sampler_stop(void)
{
	atomic_store(&smp.stop, 1);
	pthread_join(smp.th, NULL);
}

/* One run: MB/s (1 MB = 1e6 bytes), adds to *bad. */
static double scan_run(struct scan *a, int n, uint64_t *bad)
{
	struct worker w[MAX_THREADS];
	double dt = run_threads(n, scan_fn, a, w);
	uint64_t done = 0;

	for (int i = 0; i < n; i++) {
		done += w[i].done;
		*bad += w[i].bad;
	}
	return (double)done * PG / dt / 1e6;
}

static void emit1(const char *what, const char *mode, int n, double v)
{
	char key[128];

	snprintf(key, sizeof key, "%s.%d.%s", mode, n, what);
	res_emit(key, &v, 1);
}

/* ------------------------------------------------------- hmmap (child) */

static int child_main(void)
{
	const char *mode = O.child;
	struct hm_store *st;
	struct hm_cache *c;
	struct hm_region *r;
	struct hm_stats s0, s1;
	char uri[4200], key[128];
	double rates[MAX_RUNS], res[MAX_RUNS], rss[MAX_RUNS];
	int rc;

	if ((rc = hm_fault_mode()) < 0) {
		printf("hm_fault_mode: %s\n", hm_errormsg());
		return 1;
	}
	snprintf(uri, sizeof uri, "file:%s", path);
	if ((rc = hm_store_open(&st, uri, HM_STORE_RDONLY)) ||
	    (rc = hm_cache_new(&c, O.cache, NULL))) {
		printf("open: %s\n", hm_errormsg());
		return 1;
	}
	/*
	 * 4 KiB pages; 2 MiB pages with ordinary frames (transparent huge pages
	 * of a private tmpfs when root, HMMAP_THP_FRAMES); 2 MiB pages with
	 * frames from the huge page pool.
	 */
	for (int v = 0; v < 3; v++)
	for (int ti = 0; ti < O.nthreads; ti++) {
		int n = O.threads[ti], flags = v == 2 ? HM_CACHED | HM_HUGETLB : HM_CACHED;
		size_t ps = v ? 2u << 20 : 4096;
		static const char *const sfxs[] = { "", "-2m", "-hugetlb" };
		const char *sfx = sfxs[v];
		uint64_t bad = 0, miss = 0, ra = 0, ev = 0;
		double rss0 = 0;
		if (v && O.size % ps)
			break;
		if (v == 2 && tu_hugetlb_free() < (long)(O.cache / ps))
			break; /* the parent says why */
		for (int run = 0; run < O.runs; run++) {
			struct scan a = { .kind = K_HMMAP, .npages = O.size / PG,
					  .limit = O.quick ? 5 : 20 };
			drop_caches();
			if ((rc = hm_region_map(&r, c, st, 0, O.size, PROT_READ, flags, ps))) {
				printf("hm_region_map: %s\n", hm_errormsg());
				return 1;
			}
			a.base = hm_region_addr(r);
			rss0 = (double)rss_bytes();
			hm_cache_stats(c, &s0);
			sampler_start(c);
			rates[run] = scan_run(&a, n, &bad);
			sampler_stop();
			if (a.cut)
				printf("run %d stopped after %.0f s: the rate is over the part scanned\n",
				       run, a.limit);
			hm_cache_stats(c, &s1);
			res[run] = (double)smp.max_res;
			rss[run] = (double)smp.max_rss;
			miss += s1.misses - s0.misses;
			ra += s1.readahead - s0.readahead;
			ev += s1.evictions - s0.evictions;
			if ((rc = hm_region_unmap(r))) {
				printf("hm_region_unmap: %s\n", hm_errormsg());
				return 1;
			}
		}
		snprintf(key, sizeof key, "%s%s.%d", mode, sfx, n);
		res_emit(key, rates, O.runs);
		snprintf(key, sizeof key, "%s%s.%d.resident", mode, sfx, n);
		res_emit(key, res, O.runs);
		snprintf(key, sizeof key, "%s%s.%d.rss", mode, sfx, n);
		res_emit(key, rss, O.runs);
		snprintf(key, sizeof key, "%s%s", mode, sfx);
		emit1("rss0", key, n, rss0);
		emit1("bad", key, n, (double)bad);
		printf("%d threads, %zu KiB pages%s: per run %.0f misses, %.0f readahead, %.0f "
		       "evictions (%llu pages)\n",
		       n, ps >> 10, v == 2 ? " (HM_HUGETLB)" : "", (double)miss / O.runs,
		       (double)ra / O.runs, (double)ev / O.runs, (unsigned long long)(O.size / ps));
		fflush(stdout);
	}
	hm_cache_free(c);
	hm_store_close(st);
	return 0;
}

/* -------------------------------------------------------------- report */

static struct results R;
static char huge_why[256]; /* why the HM_HUGETLB rows did not run */

static void row(const char *label, const char *key, const char *base, const char *target)
{
	char k[160], r1[32];
	int i;

	for (i = 0; i < R.n && strcmp(R.e[i].key, key); i++)
		;
	if (i == R.n) {
		printf("  %-32s %12s\n", label, "(not run)");
		return;
	}
	snprintf(k, sizeof k, "%s.bad", key);
	if (res_med(&R, k) > 0) {
		printf("  %-32s %12s   %.0f pages had wrong contents: no figure\n", label,
		       "VERIFY FAIL", res_max(&R, k));
		return;
	}
	fmt_ratio(r1, sizeof r1, res_med(&R, key), base ? res_med(&R, base) : -1);
	printf("  %-32s %8.0f MB/s [%.0f..%.0f] %8s  %s\n", label, res_med(&R, key),
	       vmin(R.e[i].v, R.e[i].nv), vmax(R.e[i].v, R.e[i].nv), base ? r1 : "",
	       target ? target : "");
}

int main(int argc, char **argv)
{
	char key[128], disk[512], b1[64];
	double rates[MAX_RUNS], rssv[MAX_RUNS];
	uint64_t batch = 64;
	const char *eb = getenv("HMMAP_EVICT_BATCH");
	int rc;

	O.runs = 3;
	O.size = 4ull << 30;
	O.cache = 256ull << 20;
	parse_threads(&O, "1");
	parse_opts(&O, argc, argv, usage);
	if (O.quick) {
		if (!O.size_set)
			O.size = 64ull << 20;
		if (!O.cache_set)
			O.cache = 16ull << 20;
		if (!O.runs_set)
			O.runs = 2;
	}
	O.size &= ~(PG - 1);
	path = O.file ? O.file
		      : O.quick && !O.size_set ? "/tmp/hmmap-bench-64m.dat"
					       : "/tmp/hmmap-bench-4g.dat";
	if (O.child)
		return child_main();
	if (eb && atoi(eb) > 0)
		batch = (uint64_t)atoi(eb);

	print_header("bench_scan: cold sequential scan from disk, and resident memory",
		     "One word of every 4 KiB page of a file, in order, kernel caches dropped "
		     "before each run: hmmap\n(two fault modes, default advice) beside kernel mmap "
		     "and O_DIRECT 1 MiB reads.");
	if ((rc = ensure_file(path, O.size))) {
		printf("cannot create %s: %s\n", path, strerror(-rc));
		return 1;
	}
	disk_of(path, disk, sizeof disk);
	printf("file %s, %.2f GiB on %s\nhmmap cache %llu MiB, %d runs per figure "
	       "(median [min..max]); MB = 10^6 bytes\n",
	       path, (double)O.size / (1 << 30), disk, (unsigned long long)(O.cache >> 20),
	       O.runs);
	if (geteuid() != 0)
		printf("NOTE: not root: kernel caches are NOT dropped; mmap figures are warm\n");
	printf("\n");

	for (int ti = 0; ti < O.nthreads; ti++) {
		int n = O.threads[ti];
		for (int k = 0; k < 2; k++) {
			uint64_t bad = 0;
			enum kind kind = k ? K_MMAP : K_ODIRECT;
			const char *name = k ? "mmap" : "odirect";
			int fd = open(path, O_RDONLY | (kind == K_ODIRECT ? O_DIRECT : 0));
			if (fd < 0) {
				printf("open %s: %s\n", path, strerror(errno));
				continue;
			}
			for (int run = 0; run < O.runs; run++) {
				struct scan a = { .kind = kind, .fd = fd, .npages = O.size / PG,
						  .limit = 1e9 };
				drop_caches();
				if (kind == K_MMAP) {
					a.base = mmap(NULL, O.size, PROT_READ, MAP_SHARED, fd, 0);
					if (a.base == MAP_FAILED) {
						printf("mmap: %s\n", strerror(errno));
						return 1;
					}
				}
				sampler_start(NULL);
				rates[run] = scan_run(&a, n, &bad);
				sampler_stop();
				rssv[run] = (double)smp.max_rss;
				if (kind == K_MMAP)
					munmap(a.base, O.size);
			}
			close(fd);
			for (int run = 0; run < O.runs; run++) {
				snprintf(key, sizeof key, "%s.%d", name, n);
				res_add(&R, key, rates[run]);
				snprintf(key, sizeof key, "%s.%d.rss", name, n);
				res_add(&R, key, rssv[run]);
			}
			snprintf(key, sizeof key, "%s.%d.bad", name, n);
			res_add(&R, key, (double)bad);
		}
	}
	drop_caches();
	/* Room for the cache in 2 MiB frames; given back when this process exits. */
	tu_hugetlb_pool((long)(O.cache >> 21), huge_why, sizeof huge_why);
	run_child(&O, "hmmap-thread", "thread", &R);
	run_child(&O, "hmmap-sigbus", "sigbus", &R);

	printf("\n-- cold sequential scan: MB/s, median [min..max]; ratio = row / kernel mmap\n");
	for (int ti = 0; ti < O.nthreads; ti++) {
		int n = O.threads[ti];
		printf(" %d thread%s:\n", n, n > 1 ? "s" : "");
		snprintf(b1, sizeof b1, "mmap.%d", n);
		snprintf(key, sizeof key, "odirect.%d", n);
		row("O_DIRECT pread 1 MiB", key, b1, NULL);
		row("kernel mmap (default readahead)", b1, NULL, NULL);
		snprintf(key, sizeof key, "hmmap-thread.%d", n);
		row("hmmap HMMAP_FAULT_MODE=thread", key, b1, "target >= 1.0x mmap");
		snprintf(key, sizeof key, "hmmap-sigbus.%d", n);
		row("hmmap HMMAP_FAULT_MODE=sigbus", key, b1, "target >= 1.0x mmap");
		snprintf(key, sizeof key, "hmmap-thread-2m.%d", n);
		row("hmmap thread, 2M pages", key, b1, "target >= 1.0x mmap");
		snprintf(key, sizeof key, "hmmap-sigbus-2m.%d", n);
		row("hmmap sigbus, 2M pages", key, b1, "target >= 1.0x mmap");
		snprintf(key, sizeof key, "hmmap-thread-hugetlb.%d", n);
		row("hmmap thread, 2M pages, HM_HUGETLB", key, b1, "target >= 1.0x mmap");
		snprintf(key, sizeof key, "hmmap-sigbus-hugetlb.%d", n);
		row("hmmap sigbus, 2M pages, HM_HUGETLB", key, b1, "target >= 1.0x mmap");
	}
	if (huge_why[0])
		printf("  HM_HUGETLB rows not run: %s\n", huge_why);
	printf("  Explanation: MB/s of file scanned (every 4 KiB page read and verified). O_DIRECT "
	       "is one synchronous\n  1 MiB request at a time per thread, into a huge page; kernel "
	       "mmap and hmmap fault and read\n  ahead on their own. 2M rows without HM_HUGETLB "
	       "have transparent huge frames of a private tmpfs\n  when root (HMMAP_THP_FRAMES), "
	       "mapped by 512 PTEs each.\n  HM_HUGETLB rows map 2 MiB pages whose frames come "
	       "from the huge page pool (vm.nr_hugepages,\n  raised for the run when root): one "
	       "fault fills and maps one huge page.\n");

	printf("\n-- resident memory while scanning %.2f GiB through a %llu MiB cache (max over "
	       "1 ms samples, max over runs)\n",
	       (double)O.size / (1 << 30), (unsigned long long)(O.cache >> 20));
	printf("  budget %.1f MiB; limit budget + one batch (%llu pages of 4 KiB) = %.1f MiB\n",
	       (double)O.cache / (1 << 20), (unsigned long long)batch,
	       (double)(O.cache + batch * PG) / (1 << 20));
	for (int ti = 0; ti < O.nthreads; ti++) {
		int n = O.threads[ti];
		for (int m = 0; m < 2; m++) {
			const char *mode = m ? "hmmap-sigbus" : "hmmap-thread";
			double res, rss, rss0;
			snprintf(key, sizeof key, "%s.%d.resident", mode, n);
			res = res_max(&R, key);
			snprintf(key, sizeof key, "%s.%d.rss", mode, n);
			rss = res_max(&R, key);
			snprintf(key, sizeof key, "%s.%d.rss0", mode, n);
			rss0 = res_max(&R, key);
			if (res < 0) {
				printf("  %s: not run\n", mode);
				continue;
			}
			printf("  %s, %d thread%s: max resident_bytes %.1f MiB (%s the limit); max "
			       "RSS %.1f MiB (%.1f MiB before the scan)\n",
			       mode, n, n > 1 ? "s" : "", res / (1 << 20),
			       res <= (double)(O.cache + batch * PG) ? "within" : "OVER", rss / (1 << 20),
			       rss0 / (1 << 20));
		}
		snprintf(key, sizeof key, "mmap.%d.rss", n);
		printf("  kernel mmap, %d thread%s: max RSS %.1f MiB (no cap: the kernel page cache "
		       "holds what memory allows)\n",
		       n, n > 1 ? "s" : "", res_max(&R, key) / (1 << 20));
	}
	printf("  Explanation: resident_bytes is hmmap's own count of cached pages; RSS counts "
	       "every page mapped in the\n  process: the program itself (the 'before' figure), "
	       "hmmap's metadata, and cache frames as mapped\n  in the application's view (a "
	       "frame also mapped in hmmap's I/O view would count twice).\n");
	return 0;
}
