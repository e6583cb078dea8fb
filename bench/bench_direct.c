/* SPDX-License-Identifier: MIT */
/*
 * Byte-addressable media, each figure beside its baseline, measured in the
 * same run on the same file:
 *
 *   1. STREAM triad (a[i] = b[i] + q * c[i]) on an HM_DIRECT region of a
 *      pmem: store against a plain mmap(MAP_SHARED) of the same file.
 *      Target: direct >= 0.95x mmap.
 *   2. Reading (a sum over every word) an HM_HYBRID region with no page in
 *      DRAM against the HM_DIRECT region. Target: hybrid >= 0.95x direct.
 *   3. The first write to a page: HM_HYBRID (SIGSEGV, copy the page into a
 *      DRAM frame, map it) against an HM_CACHED region's write fault on an
 *      absent page of the same pmem: store (userfaultfd; readahead off so each page is one
 *      fault), pages in random order, fresh mappings each run. Target:
 *      hybrid <= 2x cached. Also shown: a hybrid first write that must
 *      first write back a victim (the held set full).
 *
 *   bench_direct [--quick] [--dir DIR] [--size SIZE] [--runs N]
 *
 * Each figure is the median over the runs; each ratio is the median of the
 * per-run ratios (the two sides of a run are measured back to back).
 *
 * The file lives in DIR (default $TMPDIR or /tmp); on a machine without
 * persistent memory it is in the page cache, so both sides of figure 1 run
 * at DRAM speed: the figure measures what hmmap adds, not the medium.
 */
#include <stdatomic.h>

#include "hmmap.h"
#include "bench_common.h"

static char path[512], uri[600];
static int runs = 7;
static uint64_t size = 96ull << 20;

static double triad(double *a, const double *b, const double *c, size_t n)
{
	const double q = 3.0;
	double t0 = now();

	for (size_t i = 0; i < n; i++)
		a[i] = b[i] + q * c[i];
	return now() - t0;
}

static double read_sum(const uint64_t *p, size_t n, uint64_t *out)
{
	uint64_t s = 0;
	double t0 = now();

	for (size_t i = 0; i < n; i++)
		s += p[i];
	*out = s;
	return now() - t0;
}

static void shuffle(uint32_t *v, uint32_t n, uint64_t seed)
{
	for (uint32_t i = 0; i < n; i++)
		v[i] = i;
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(xs64(&seed) % (i + 1));
		uint32_t t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}

/*
 * The median of the per-run ratios a[r] / b[r]: each pair was measured back
 * to back, so a slow spell of the shared machine moves both sides of a pair.
 */
static double ratio(const double *a, const double *b, int n)
{
	double v[MAX_RUNS];

	for (int i = 0; i < n; i++)
		v[i] = a[i] / b[i];
	return median(v, n);
}

/* Time per first write of `pages` pages (random order) of a fresh region of `mode`. */
static double first_writes(int mode, const char *u, uint32_t pages, size_t budget, uint64_t seed)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	uint32_t *order = malloc(pages * sizeof *order);
	double t;
	char *p;

	if (!order || hm_cache_new(&c, budget, NULL) || hm_store_open(&s, u, 0) ||
	    hm_region_map(&r, c, s, 0, (size_t)pages * PG, PROT_READ | PROT_WRITE, mode, 0)) {
		fprintf(stderr, "map: %s\n", hm_errormsg());
		exit(1);
	}
	p = hm_region_addr(r);
	if (mode == HM_CACHED)
		hm_advise(p, (size_t)pages * PG, HM_ADV_RANDOM);
	shuffle(order, pages, seed);
	t = now();
	for (uint32_t i = 0; i < pages; i++)
		p[(size_t)order[i] * PG + 8] = (char)i;
	t = now() - t;
	if (hm_region_unmap(r) || hm_store_close(s) || hm_cache_free(c)) {
		fprintf(stderr, "unmap: %s\n", hm_errormsg());
		exit(1);
	}
	free(order);
	return t / pages;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	double t_mmap[MAX_RUNS], t_direct[MAX_RUNS], t_hy[MAX_RUNS], t_dr[MAX_RUNS];
	double w_hy[MAX_RUNS], w_ca[MAX_RUNS], w_hyfull[MAX_RUNS];
	uint64_t s1, s2;
	int fd;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			size = 24ull << 20;
			runs = 3;
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			if (parse_size(argv[++i], &size) || size < (3u << 20)) {
				fprintf(stderr, "bench_direct: bad --size\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
			runs = atoi(argv[++i]);
			if (runs < 1 || runs > MAX_RUNS) {
				fprintf(stderr, "bench_direct: --runs from 1 to %d\n", MAX_RUNS);
				return 2;
			}
		} else {
			fprintf(stderr, "usage: bench_direct [--quick] [--dir DIR] [--size SIZE] "
					"[--runs N]\n");
			return 2;
		}
	}
	size &= ~(uint64_t)(3 * PG - 1);
	snprintf(path, sizeof path, "%s/hmmap-bench-direct-%d", dir, (int)getpid());
	snprintf(uri, sizeof uri, "pmem:%s", path);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size)) {
		perror(path);
		return 1;
	}
	printf("file %s, %llu MiB, %d runs, fault mode %d, %s\n", path,
	       (unsigned long long)(size >> 20), runs, hm_fault_mode(),
	       "medians (figures are noisy on a shared machine)");

	/* 1. triad: plain mmap and direct, alternating, same file. */
	double *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	double *d = hmmap(NULL, size, PROT_READ | PROT_WRITE, HM_DIRECT, uri, 0);
	if (m == MAP_FAILED || d == MAP_FAILED) {
		fprintf(stderr, "map: %s\n", hm_errormsg());
		return 1;
	}
	size_t n = size / 8 / 3;
	for (size_t i = 0; i < 3 * n; i++)
		m[i] = (double)(i & 1023);
	triad(d, d + n, d + 2 * n, n); /* warm: page tables of both */
	triad(m, m + n, m + 2 * n, n);
	for (int r = 0; r < runs; r++) {
		t_mmap[r] = triad(m, m + n, m + 2 * n, n);
		t_direct[r] = triad(d, d + n, d + 2 * n, n);
	}
	double bw_m = 24.0 * n / median(t_mmap, runs) / 1e9;
	double bw_d = 24.0 * n / median(t_direct, runs) / 1e9;
	printf("triad    mmap %6.2f GB/s   direct %6.2f GB/s   direct/mmap %.3f  (target >= 0.95)\n",
	       bw_m, bw_d, ratio(t_mmap, t_direct, runs));

	/* 2. reads: hybrid (nothing in DRAM) against direct. */
	uint64_t *h = hmmap(NULL, size, PROT_READ | PROT_WRITE, HM_HYBRID, uri, 0);
	if (h == MAP_FAILED) {
		fprintf(stderr, "hybrid map: %s\n", hm_errormsg());
		return 1;
	}
	read_sum(h, size / 8, &s1);
	for (int r = 0; r < runs; r++) {
		t_dr[r] = read_sum((uint64_t *)d, size / 8, &s1);
		t_hy[r] = read_sum(h, size / 8, &s2);
		if (s1 != s2) {
			fprintf(stderr, "hybrid and direct read different data\n");
			return 1;
		}
	}
	double rd_d = size / median(t_dr, runs) / 1e9, rd_h = size / median(t_hy, runs) / 1e9;
	printf("read     direct %6.2f GB/s   hybrid %6.2f GB/s   hybrid/direct %.3f  (target >= 0.95)\n",
	       rd_d, rd_h, ratio(t_dr, t_hy, runs));
	hmunmap(h, size);
	hmunmap(d, size);
	munmap(m, size);

	/* 3. first writes: hybrid against a cached region's write faults. */
	uint32_t pages = (uint32_t)((size / PG) < 8192 ? size / PG : 8192);
	for (int r = 0; r < runs; r++) {
		/* Room for every page: no eviction (and no write-back) inside the timing. */
		w_ca[r] = first_writes(HM_CACHED, uri, pages, (size_t)pages * 2 * PG, 100 + r);
		w_hy[r] = first_writes(HM_HYBRID, uri, pages, (size_t)pages * 2 * PG, 200 + r);
		w_hyfull[r] = first_writes(HM_HYBRID, uri, pages, 256 * PG, 300 + r);
	}
	double ca = median(w_ca, runs) * 1e6, hy = median(w_hy, runs) * 1e6;
	printf("1st write cached fault %6.2f us   hybrid %6.2f us   hybrid/cached %.2f  (target <= 2)\n",
	       ca, hy, ratio(w_hy, w_ca, runs));
	printf("          hybrid with a write-back per write (256 pages held at most) %6.2f us\n",
	       median(w_hyfull, runs) * 1e6);
	close(fd);
	unlink(path);
	return 0;
}
