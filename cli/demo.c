/* SPDX-License-Identifier: MIT */
/*
 * `hmmap demo` - the main job on an embedded default, and `hmmap stores`.
 *
 * It writes a data file (1 GiB by default) in $TMPDIR whose every 64-bit
 * word is a function of its offset, maps it through a cache much smaller
 * than the file (128 MiB), and runs two workloads with verified contents:
 *
 *   sequential  read every page once, checking one word per cache line;
 *   random      uniformly random 4 KiB pages on two threads, three reads to
 *               one write; a write stores another function of the offset,
 *               so every read knows both values it may legally see.
 *
 * The same workloads then run on the kernel's mmap of the same file. After
 * the hmmap run the file is synced, unmapped and read back with pread: every
 * written word must be on disk, every other word unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hmmap.h"
#include "cli.h"

#define PAGE 4096u
#define WORDS_PER_PAGE (PAGE / 8)

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The word at index w as written by the demo's generator, and after a write. */
static uint64_t orig(uint64_t w)
{
	return mix(w);
}

static uint64_t updated(uint64_t w)
{
	return mix(w) ^ 0x5555aaaa5555aaaaull;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct run {
	uint64_t *base;
	uint64_t pages;
	uint64_t ops;     /* per thread */
	uint64_t seed;
	_Atomic uint8_t *written; /* one bit per page: the page's first word was updated */
	_Atomic uint64_t bad;
};

struct result {
	double secs;
	uint64_t pages;
	uint64_t bad;
	uint64_t faults;
	uint64_t misses, hits, evictions, writebacks;
	uint64_t resident;
	bool is_hmmap;
};

static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size, res;

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

static void drop_kernel_cache(const char *path)
{
	int fd = open(path, O_RDONLY);

	/* Written pages must reach the disk before they can be dropped. */
	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	/* As root, drop clean page cache too, so that mmap starts as cold as hmmap. */
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "1", 1) < 0)
			(void)0;
		close(fd);
	}
}

static void seq_run(struct run *r)
{
	uint64_t bad = 0;

	for (uint64_t p = 0; p < r->pages; p++) {
		uint64_t *pg = r->base + p * WORDS_PER_PAGE;
		bool upd = atomic_load_explicit(&r->written[p / 8], memory_order_relaxed) &
			   (1u << (p % 8));
		for (uint64_t w = 0; w < WORDS_PER_PAGE; w += 8) {
			uint64_t idx = p * WORDS_PER_PAGE + w;
			uint64_t v = pg[w];
			if (v != orig(idx) && !(w == 0 && upd && v == updated(idx)))
				bad++;
		}
	}
	atomic_fetch_add(&r->bad, bad);
}

static void *rand_thread(void *arg)
{
	struct run *r = arg;
	uint64_t s = r->seed, bad = 0;

	for (uint64_t i = 0; i < r->ops; i++) {
		s = mix(s);
		uint64_t p = s % r->pages;
		uint64_t *pg = r->base + p * WORDS_PER_PAGE;
		uint64_t idx = p * WORDS_PER_PAGE;
		if ((s >> 40) % 4 == 0) {
			/* Mark first, so a reader that sees the new value knows it is legal. */
			atomic_fetch_or(&r->written[p / 8], (uint8_t)(1u << (p % 8)));
			pg[0] = updated(idx);
		} else {
			uint64_t v = pg[0];
			bool upd = atomic_load(&r->written[p / 8]) & (1u << (p % 8));
			if (v != orig(idx) && !(upd && v == updated(idx)))
				bad++;
			if (pg[WORDS_PER_PAGE - 1] != orig(idx + WORDS_PER_PAGE - 1))
				bad++;
		}
	}
	atomic_fetch_add(&r->bad, bad);
	return NULL;
}

static void rand_run(struct run *r, int threads)
{
	pthread_t t[16];
	struct run rr[16];

	for (int i = 0; i < threads; i++) {
		rr[i] = *r;
		rr[i].seed = r->seed + (uint64_t)i * 7919;
		atomic_init(&rr[i].bad, 0);
		pthread_create(&t[i], NULL, rand_thread, &rr[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		atomic_fetch_add(&r->bad, atomic_load(&rr[i].bad));
	}
}

static int make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	const size_t chunk = 4u << 20;
	uint64_t *buf;

	if (fd < 0)
		return -errno;
	buf = malloc(chunk);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
		for (size_t w = 0; w < n / 8; w++)
			buf[w] = orig(off / 8 + w);
		ssize_t w = pwrite(fd, buf, n, (off_t)off);
		if (w != (ssize_t)n) {
			/* A short write to a regular file: the file system is full. */
			int e = w < 0 ? -errno : -ENOSPC;
			free(buf);
			close(fd);
			/* A partial file is of no use, and it holds the space it took. */
			unlink(path);
			return e;
		}
	}
	free(buf);
	if (fsync(fd)) {
		int e = -errno;
		close(fd);
		unlink(path);
		return e;
	}
	close(fd);
	return 0;
}

/* Reads the file back and checks every page's first and last words. */
static uint64_t verify_file(const char *path, uint64_t pages, _Atomic uint8_t *written)
{
	int fd = open(path, O_RDONLY);
	const size_t chunk = 4u << 20;
	uint64_t bad = 0, *buf = malloc(chunk);

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return UINT64_MAX;
	}
	for (uint64_t p0 = 0; p0 < pages; p0 += chunk / PAGE) {
		uint64_t np = pages - p0 < chunk / PAGE ? pages - p0 : chunk / PAGE;
		if (pread(fd, buf, np * PAGE, (off_t)(p0 * PAGE)) != (ssize_t)(np * PAGE)) {
			bad++;
			break;
		}
		for (uint64_t k = 0; k < np; k++) {
			uint64_t p = p0 + k, idx = p * WORDS_PER_PAGE;
			bool upd = atomic_load(&written[p / 8]) & (1u << (p % 8));
			if (buf[k * WORDS_PER_PAGE] != (upd ? updated(idx) : orig(idx)))
				bad++;
			if (buf[k * WORDS_PER_PAGE + WORDS_PER_PAGE - 1] !=
			    orig(idx + WORDS_PER_PAGE - 1))
				bad++;
		}
	}
	free(buf);
	close(fd);
	return bad;
}

static void print_row(const char *sys, const char *work, const struct result *r)
{
	char misses[32], hits[32], ev[32], wb[32];

	if (r->is_hmmap) {
		snprintf(misses, sizeof misses, "%llu", (unsigned long long)r->misses);
		snprintf(hits, sizeof hits, "%llu", (unsigned long long)r->hits);
		snprintf(ev, sizeof ev, "%llu", (unsigned long long)r->evictions);
		snprintf(wb, sizeof wb, "%llu", (unsigned long long)r->writebacks);
	} else {
		strcpy(misses, "-");
		strcpy(hits, "-");
		strcpy(ev, "-");
		strcpy(wb, "-");
	}
	printf("%-7s %-10s %10.0f %8.1f %9llu %9s %8s %9s %11s %12.0f %s\n", sys, work,
	       r->pages / r->secs, r->pages * (double)PAGE / r->secs / 1e6,
	       (unsigned long long)r->faults, misses, hits, ev, wb, r->resident / 1048576.0,
	       r->bad ? "BAD" : "ok");
}

/* The data file, removed by on_signal() when the demo is interrupted. */
static char data_path[4096];

static void on_signal(int sig)
{
	unlink(data_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Ctrl-C, kill or a closed terminal would leave a 1 GiB file in $TMPDIR:
 * those signals remove it first, and then end the demo as they would have.
 * A signal the caller ignores (nohup) stays ignored.
 */
static void remove_on_signals(const char *path)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa = { .sa_handler = on_signal }, old;

	snprintf(data_path, sizeof data_path, "%s", path);
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (!sigaction(sigs[i], NULL, &old) && old.sa_handler == SIG_DFL)
			sigaction(sigs[i], &sa, NULL);
}

static void demo_usage(FILE *f)
{
	fprintf(f, "usage: hmmap demo [--size SIZE] [--cache SIZE] [--ops N] [--threads N]\n"
		   "                  [--dir DIR] [--keep]\n\n"
		   "Creates a data file (default 1G) in DIR (default $TMPDIR or /tmp), maps it\n"
		   "through an hmmap cache much smaller than the file (default 128M), runs a\n"
		   "sequential and a random read/write workload with verified contents, and\n"
		   "prints hmmap beside the kernel's mmap of the same file. Exit status 0\n"
		   "when every check passed, 1 otherwise. The data file is removed at the end,\n"
		   "on failure and on SIGINT, SIGTERM, SIGHUP or SIGQUIT, unless --keep.\n");
}

int hm_cli_demo(int argc, char **argv)
{
	uint64_t size = 1ull << 30, cache = 128ull << 20, ops = 150000;
	int threads = 2, keep = 0, opt, rc, status = 0;
	const char *dir = getenv("TMPDIR");
	static const struct option lo[] = {
		{ "size", required_argument, 0, 's' },	  { "cache", required_argument, 0, 'c' },
		{ "ops", required_argument, 0, 'o' },	  { "threads", required_argument, 0, 't' },
		{ "dir", required_argument, 0, 'd' },	  { "keep", no_argument, 0, 'k' },
		{ "help", no_argument, 0, 'h' },	  { 0, 0, 0, 0 },
	};
	char path[4096];
	struct hm_cache *hc = NULL;
	struct hm_store *st = NULL;
	struct hm_region *reg = NULL;
	struct result res[4];

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		uint64_t v;
		switch (opt) {
		case 's':
		case 'c':
			if (hm_parse_size(optarg, &v) || v < 4 * PAGE) {
				fprintf(stderr, "hmmap demo: bad size '%s'\n", optarg);
				return 2;
			}
			if (opt == 's')
				size = v;
			else
				cache = v;
			break;
		case 'o':
		case 't':
			if (hm_parse_u64(optarg, &v) || v == 0 || (opt == 't' && v > 16)) {
				fprintf(stderr, "hmmap demo: bad number '%s'\n", optarg);
				return 2;
			}
			if (opt == 'o')
				ops = v;
			else
				threads = (int)v;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'k':
			keep = 1;
			break;
		case 'h':
			demo_usage(stdout);
			return 0;
		default:
			demo_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hmmap demo: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!dir || !*dir)
		dir = "/tmp";
	size &= ~(uint64_t)(PAGE - 1);
	snprintf(path, sizeof path, "%s/hmmap-demo-%d.dat", dir, (int)getpid());
	uint64_t pages = size / PAGE;
	/* Before the data file is written: a demo that cannot fault needs none. */
	int mode = hm_fault_mode();
	if (mode < 0) {
		fprintf(stderr, "hmmap demo: cannot start the fault engine: %s\n",
			*hm_errormsg() ? hm_errormsg() : strerror(-mode));
		return 1;
	}
	_Atomic uint8_t *written = calloc((size_t)(pages + 7) / 8, 1);
	if (!written)
		return 1;

	printf("hmmap %s demo: %llu MiB file %s, cache %llu MiB (%s policy), fault mode %s\n",
	       hm_version(), (unsigned long long)(size >> 20), path,
	       (unsigned long long)(cache >> 20),
	       getenv("HMMAP_POLICY") ? getenv("HMMAP_POLICY") : "clock",
	       mode == HM_FAULT_SIGBUS ? "sigbus" : "thread");
	fflush(stdout);
	if (!keep)
		remove_on_signals(path);
	rc = make_file(path, size);
	if (rc) {
		fprintf(stderr, "hmmap demo: cannot write %s: %s\n", path, strerror(-rc));
		free(written);
		return 1;
	}

	/* ---- hmmap ---- */
	if ((rc = hm_cache_new(&hc, cache, getenv("HMMAP_POLICY"))) ||
	    (rc = hm_store_open(&st, path, 0)) ||
	    (rc = hm_region_map(&reg, hc, st, 0, size, PROT_READ | PROT_WRITE, HM_CACHED, PAGE))) {
		fprintf(stderr, "hmmap demo: %s\n", hm_errormsg());
		status = 1;
		goto out;
	}
	struct run run = { .base = hm_region_addr(reg), .pages = pages, .ops = ops, .seed = 42,
			   .written = written };
	struct hm_stats s0, s1;
	uint64_t peak = 0;
	for (int w = 0; w < 2; w++) {
		hm_cache_stats(hc, &s0);
		atomic_store(&run.bad, 0);
		double t0 = now();
		if (w == 0)
			seq_run(&run);
		else
			rand_run(&run, threads);
		double t1 = now();
		hm_cache_stats(hc, &s1);
		struct result *r = &res[w];
		r->is_hmmap = true;
		r->secs = t1 - t0;
		r->pages = w == 0 ? pages : ops * (uint64_t)threads;
		r->bad = atomic_load(&run.bad);
		r->faults = (s1.faults_missing - s0.faults_missing) + (s1.faults_minor - s0.faults_minor);
		r->misses = s1.misses - s0.misses + s1.readahead - s0.readahead;
		/* Touches that found the page resident (readahead included). */
		r->hits = r->pages - (s1.faults_missing - s0.faults_missing);
		r->evictions = s1.evictions - s0.evictions;
		r->writebacks = s1.writebacks - s0.writebacks;
		r->resident = s1.resident_bytes;
		if (s1.resident_bytes > peak)
			peak = s1.resident_bytes;
	}
	/* Sync, write-back time included in the random run's figures. */
	double ts = now();
	rc = hm_sync(hm_region_addr(reg), size, MS_SYNC);
	res[1].secs += now() - ts;
	hm_cache_stats(hc, &s1);
	res[1].writebacks = s1.writebacks - s0.writebacks;
	if (rc) {
		fprintf(stderr, "hmmap demo: sync failed: %s\n", hm_errormsg());
		status = 1;
	}
	rc = hm_region_unmap(reg);
	reg = NULL;
	if (rc) {
		fprintf(stderr, "hmmap demo: unmap failed: %s\n", hm_errormsg());
		status = 1;
	}
	drop_kernel_cache(path);
	uint64_t file_bad = verify_file(path, pages, written);

	/*
	 * ---- kernel mmap of the same file ----
	 * A fresh mapping per workload: the page cache cannot be dropped while
	 * the previous workload's pages are still mapped.
	 */
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		perror("hmmap demo: open");
		status = 1;
		goto out;
	}
	struct run krun = run;
	for (int w = 0; w < 2; w++) {
		uint64_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			perror("hmmap demo: mmap");
			close(fd);
			status = 1;
			goto out;
		}
		krun.base = m;
		drop_kernel_cache(path);
		uint64_t f0 = minflt();
		atomic_store(&krun.bad, 0);
		double t0 = now();
		if (w == 0)
			seq_run(&krun);
		else
			rand_run(&krun, threads);
		if (w == 1)
			msync(m, size, MS_SYNC);
		double t1 = now();
		struct result *r = &res[2 + w];
		r->is_hmmap = false;
		r->secs = t1 - t0;
		r->pages = w == 0 ? pages : ops * (uint64_t)threads;
		r->bad = atomic_load(&krun.bad);
		r->faults = minflt() - f0;
		r->resident = rss_bytes();
		munmap(m, size);
	}
	close(fd);

	printf("\n%-18s %19s\n", "", "---- throughput ---");
	printf("%-7s %-10s %10s %8s %9s %9s %8s %9s %11s %12s %s\n", "system", "workload",
	       "pages/s", "MB/s", "faults", "misses", "hits", "evictions", "write-backs",
	       "resident MiB", "check");
	print_row("hmmap", "sequential", &res[0]);
	print_row("hmmap", "random", &res[1]);
	print_row("mmap", "sequential", &res[2]);
	print_row("mmap", "random", &res[3]);
	printf("\nhmmap: resident memory peaked at %.1f MiB of a %.0f MiB budget; the kernel's "
	       "mmap has no budget (its RSS is shown).\n",
	       peak / 1048576.0, cache / 1048576.0);
	printf("random: %d threads x %llu page touches, 1 in 4 a write. misses: pages read from "
	       "the file\n(readahead included); hits: touches that found their page resident; "
	       "write-backs: pages written back.\n",
	       threads, (unsigned long long)ops);
	if (file_bad) {
		printf("file check after sync and unmap: %llu bad words\n",
		       (unsigned long long)file_bad);
		status = 1;
	} else {
		printf("file check after sync and unmap: every written word is on disk, every other "
		       "word unchanged.\n");
	}
	for (int i = 0; i < 4; i++)
		if (res[i].bad)
			status = 1;
	printf("%s\n", status ? "demo: FAILED" : "demo: all checks passed");
out:
	if (reg)
		hm_region_unmap(reg);
	if (st)
		hm_store_close(st);
	if (hc)
		hm_cache_free(hc);
	if (!keep)
		unlink(path);
	free(written);
	return status;
}

int hm_cli_stores(int argc, char **argv)
{
	const struct hm_store_ops *const *ops;
	size_t n;

	if (argc > 1) {
		if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
			printf("usage: hmmap stores\n\nLists the store kinds compiled in.\n");
			return 0;
		}
		fprintf(stderr, "hmmap stores: unexpected argument '%s'\n", argv[1]);
		return 2;
	}
	ops = hm_store_list(&n);
	int w = 6; /* "scheme"; the column as wide as the longest */
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(ops[i]->scheme) > w)
			w = (int)strlen(ops[i]->scheme);
	printf("%-*s %s\n", w, "scheme", "summary");
	for (size_t i = 0; i < n; i++)
		printf("%-*s %s\n", w, ops[i]->scheme, ops[i]->summary);
	return 0;
}
