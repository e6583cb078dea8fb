/* SPDX-License-Identifier: MIT */
/*
 * The budget and the range calls: resident memory of all regions on a cache
 * never exceeds the budget (checked both from the cache's own count and from
 * the frames that really exist, the regions' memfd blocks); shrinking a cache
 * evicts and keeps the data; hm_advise() advice; hm_prefault() and pins make
 * ranges safe for system calls; in thread mode system calls on non-resident
 * region memory work as on mmap memory.
 *
 * Mode-specific cases run in children (the fault mode is process-wide).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

static char path[512];

/* Bytes of frames that exist in a region's memfd right now. */
static uint64_t frames(struct hm_region *r)
{
	struct stat st;

	return fstat(r->memfd, &st) ? 0 : (uint64_t)st.st_blocks * 512;
}

struct budget_run {
	struct hm_cache *c;
	struct hm_region *r[2];
	uint64_t budget, slack;
	_Atomic int stop;
	_Atomic uint64_t worst_count, worst_frames, samples;
};

static void *toucher(void *arg)
{
	struct budget_run *b = ((void **)arg)[0];
	int id = (int)(intptr_t)((void **)arg)[1];
	uint64_t s = tu_seed((uint64_t)id + 5);

	for (int i = 0; i < 30000 && !atomic_load(&b->stop); i++) {
		struct hm_region *r = b->r[tu_rnd(&s) & 1];
		size_t len = hm_region_length(r);
		size_t off = (tu_rnd(&s) % (len / 8)) * 8;
		volatile uint64_t *w = (volatile uint64_t *)((char *)hm_region_addr(r) + off);
		if (tu_rnd(&s) & 1)
			*w = off;
		else
			(void)*w;
	}
	return NULL;
}

static void *sampler(void *arg)
{
	struct budget_run *b = arg;

	while (!atomic_load(&b->stop)) {
		struct hm_stats st;
		if (hm_cache_stats(b->c, &st) == 0 && st.resident_bytes > atomic_load(&b->worst_count))
			atomic_store(&b->worst_count, st.resident_bytes);
		uint64_t f = frames(b->r[0]) + frames(b->r[1]);
		if (f > atomic_load(&b->worst_frames))
			atomic_store(&b->worst_frames, f);
		atomic_fetch_add(&b->samples, 1);
	}
	return NULL;
}

static void test_budget_two_regions(void)
{
	struct budget_run b = { .budget = 2 << 20 };
	struct hm_store *s[2];
	pthread_t t[2], smp;
	void *args[2][2];

	CHECK(hm_cache_new(&b.c, b.budget, "clock") == 0);
	/* One eviction batch of the largest page size mapped here (64 KiB). */
	b.slack = (uint64_t)b.c->batch * 65536;
	CHECK(hm_store_open(&s[0], "mem:32M", 0) == 0);
	CHECK(hm_store_open(&s[1], path, 0) == 0);
	CHECK(hm_region_map(&b.r[0], b.c, s[0], 0, 32 << 20, PROT_READ | PROT_WRITE, HM_CACHED,
			    4096) == 0);
	CHECK(hm_region_map(&b.r[1], b.c, s[1], 0, 16 << 20, PROT_READ | PROT_WRITE, HM_CACHED,
			    65536) == 0);
	CHECK(pthread_create(&smp, NULL, sampler, &b) == 0);
	for (int i = 0; i < 2; i++) {
		args[i][0] = &b;
		args[i][1] = (void *)(intptr_t)i;
		CHECK(pthread_create(&t[i], NULL, toucher, args[i]) == 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	atomic_store(&b.stop, 1);
	pthread_join(smp, NULL);
	CHECK(atomic_load(&b.samples) > 0);
	CHECKF(atomic_load(&b.worst_count) <= b.budget + b.slack,
	       "the cache counted %llu resident bytes, budget %llu",
	       (unsigned long long)b.worst_count, (unsigned long long)b.budget);
	CHECKF(atomic_load(&b.worst_frames) <= b.budget + b.slack,
	       "%llu bytes of frames existed, budget %llu", (unsigned long long)b.worst_frames,
	       (unsigned long long)b.budget);
	struct hm_stats st;
	CHECK(hm_cache_stats(b.c, &st) == 0 && st.evictions > 0);
	/* Data: every written word holds its offset. */
	for (int k = 0; k < 2; k++) {
		CHECK(hm_region_unmap(b.r[k]) == 0);
		CHECK(hm_store_close(s[k]) == 0);
	}
	CHECK(hm_cache_free(b.c) == 0);
}

static void test_resize(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	const size_t len = 16 << 20;
	unsigned char *ref = tu_make_file(path, len, 77), *b;

	CHECK(ref);
	CHECK(hm_cache_new(&c, 8 << 20, "fifo") == 0);
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0);
	b = hm_region_addr(r);
	/* 8 MiB of dirty pages. */
	for (size_t i = 0; i < (8u << 20); i += 4096) {
		b[i + 1] = (unsigned char)(i >> 12);
		ref[i + 1] = (unsigned char)(i >> 12);
	}
	CHECK(hm_cache_stats(c, &st) == 0 && st.resident_bytes > (4u << 20));
	CHECKF(hm_cache_resize(c, 1 << 20) == 0, "%s", hm_errormsg());
	CHECK(hm_cache_budget(c) == 1 << 20);
	CHECK(hm_cache_stats(c, &st) == 0 && st.resident_bytes <= (1u << 20));
	CHECK(st.budget_bytes == 1 << 20);
	CHECK(frames(r) <= (1u << 20));
	/* The evicted dirty pages reached the file. */
	CHECK(tu_cmp_file(path, ref, 4 << 20) == -1 || hm_sync(b, len, MS_SYNC) == 0);
	/* Everything reads back, through the smaller cache. */
	CHECK(tu_cmp_mem(b, ref, len) == -1);
	CHECK(hm_cache_stats(c, &st) == 0 && st.resident_bytes <= (1u << 20));
	/* Grow back to the creation budget, not beyond. */
	CHECK(hm_cache_resize(c, 8 << 20) == 0);
	CHECK(hm_cache_resize(c, 16 << 20) == -EINVAL);
	CHECK(hm_cache_budget(c) == 8 << 20);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(tu_cmp_file(path, ref, len) == -1);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

/*
 * Only reading a writable region writes nothing back, however its pages
 * came in: asynchronous readahead leaves an unmapped marker page in each
 * window, which a harvest must not take for a written page.
 */
static void test_reads_write_nothing(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	const size_t len = 16 << 20;
	unsigned char *ref = tu_make_file(path, len, 91), *b;
	uint64_t sum = 0;

	CHECK(ref);
	CHECK(hm_cache_new(&c, 2 << 20, "clock") == 0);
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0);
	b = hm_region_addr(r);
	CHECK(hm_advise(b, len, HM_ADV_SEQUENTIAL) == 0);
	/* Stop mid-region: the windows read ahead past the stop keep their markers. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < len / 2 + 12345; i += 4096)
			sum += b[i + 7];
	CHECK(hm_sync(b, len, MS_SYNC) == 0);
	CHECK(hm_region_stats(r, &st) == 0);
	CHECK(st.readahead > 0 && st.evictions > 0);
	CHECKF(st.writebacks == 0 && st.bytes_written == 0,
	       "%llu pages written back after reads only (sum %llu)",
	       (unsigned long long)st.writebacks, (unsigned long long)sum);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(tu_cmp_file(path, ref, len) == -1);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

/*
 * Three sequential streams interleaved in one region (STREAM's arrays) are
 * each read ahead: the region's last-stream tracking sees only one of them,
 * so the others need the page history behind a miss (context readahead).
 */
static void test_interleaved_streams(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	const size_t len = 12 << 20, third = len / 3;
	unsigned char *ref = tu_make_file(path, len, 93), *b;
	int bad = 0;

	CHECK(ref);
	CHECK(hm_cache_new(&c, 32 << 20, "clock") == 0);
	CHECK(hm_store_open(&s, path, HM_STORE_RDONLY) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ, HM_CACHED, 4096) == 0);
	b = hm_region_addr(r);
	for (size_t i = 0; i < third; i += 4096)
		for (int k = 0; k < 3; k++)
			bad += b[k * third + i] != ref[k * third + i];
	CHECK(bad == 0);
	CHECK(hm_region_stats(r, &st) == 0);
	/* 3072 pages: one miss a page without readahead. */
	CHECKF(st.misses < (len >> 12) / 8, "%llu misses for %zu pages in three streams",
	       (unsigned long long)st.misses, len >> 12);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

/*
 * A second pass over a region advised SEQUENTIAL or NOREUSE reads ahead as
 * the first did. The first pass runs to the region's end, where the area
 * read ahead asynchronously ends too; a later stream must start windows of
 * its own there, not take that end for its own (every window of the second
 * pass was then a demand miss that the reader waited for).
 */
static void second_pass(int advice, uint64_t *first, uint64_t *second)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats a, z;
	const size_t len = 48 << 20;
	unsigned char *ref = tu_make_file(path, len, 71), *b;
	uint64_t bad = 0;

	*first = *second = 0;
	CHECK(ref);
	CHECK(hm_cache_new(&c, 16 << 20, "clock") == 0);
	CHECK(hm_store_open(&s, path, HM_STORE_RDONLY) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ, HM_CACHED, 4096) == 0);
	CHECK(hm_advise(hm_region_addr(r), len, advice) == 0);
	b = hm_region_addr(r);
	for (int pass = 0; pass < 2; pass++) {
		CHECK(hm_region_stats(r, &a) == 0);
		for (size_t i = 0; i < len; i += 4096)
			bad += b[i + 7] != ref[i + 7];
		CHECK(hm_region_stats(r, &z) == 0);
		*(pass ? second : first) = z.misses - a.misses;
	}
	CHECKF(bad == 0, "%llu pages read back wrong", (unsigned long long)bad);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

static void test_second_pass_reads_ahead(void)
{
	static const int advice[] = { HM_ADV_SEQUENTIAL, HM_ADV_NOREUSE };

	for (size_t k = 0; k < sizeof advice / sizeof *advice; k++) {
		uint64_t first, second;
		second_pass(advice[k], &first, &second);
		/* 12288 pages in windows of at most 512: 24 if each one waits. */
		CHECKF(second <= 2 * first + 8,
		       "advice %d: %llu demand misses in the first pass, %llu in the second",
		       advice[k], (unsigned long long)first, (unsigned long long)second);
		printf("  advice %d: %llu and %llu demand misses\n", advice[k],
		       (unsigned long long)first, (unsigned long long)second);
	}
}

/*
 * A stream of 2 MiB pages reads ahead too: HMMAP_READAHEAD (2M) is one such
 * page, and the window never falls under four pages (while four pages are
 * at most an eighth of the budget), so most pages of a sequential pass
 * arrive before the reader asks for them.
 */
static void test_large_page_readahead(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	const size_t len = 32 << 20, ps = 2 << 20;
	unsigned char *ref = tu_make_file(path, len, 57), *b;
	int bad = 0;

	CHECK(ref);
	CHECK(hm_cache_new(&c, 64 << 20, "clock") == 0);
	CHECK(hm_store_open(&s, path, HM_STORE_RDONLY) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ, HM_CACHED, ps) == 0);
	b = hm_region_addr(r);
	for (size_t i = 0; i < len; i += 4096)
		bad += b[i] != ref[i];
	CHECK(bad == 0);
	CHECK(hm_region_stats(r, &st) == 0);
	CHECKF(st.readahead >= len / ps / 2 && st.misses <= len / ps / 2,
	       "%llu misses and %llu pages read ahead of %zu", (unsigned long long)st.misses,
	       (unsigned long long)st.readahead, len / ps);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

/*
 * An eviction batch is bytes: with 2 MiB pages it is one page, not 64,
 * which would empty this cache of 16 pages at every miss once it is full.
 */
static void test_large_page_batches(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats a, z;
	const size_t ps = 2 << 20, cap = 16;
	unsigned char *b;

	CHECK(hm_cache_new(&c, cap * ps, "fifo") == 0);
	CHECK(hm_store_open(&s, "mem:64M", 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, 64 << 20, PROT_READ | PROT_WRITE, HM_CACHED, ps) == 0);
	b = hm_region_addr(r);
	CHECK(hm_advise(b, 64 << 20, HM_ADV_RANDOM) == 0); /* no readahead */
	for (size_t pg = 0; pg < 2 * cap; pg++)
		b[pg * ps] = (unsigned char)pg;
	CHECK(hm_region_stats(r, &a) == 0);
	CHECKF(a.resident_bytes >= (cap - 3) * ps, "%llu bytes resident in a cache of %zu",
	       (unsigned long long)a.resident_bytes, cap * ps);
	/*
	 * The last 16 pages touched are still there, but for the evictor's
	 * room (newest first: FIFO would evict each next one to load the last).
	 */
	for (size_t pg = 2 * cap; pg-- > cap;)
		CHECK(b[pg * ps] == (unsigned char)pg);
	CHECK(hm_region_stats(r, &z) == 0);
	CHECKF(z.misses - a.misses <= 2, "%llu misses on the %zu pages touched last",
	       (unsigned long long)(z.misses - a.misses), cap);
	for (size_t pg = 0; pg < 2 * cap; pg++)
		CHECK(b[pg * ps] == (unsigned char)pg);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

static void test_advise(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats a, z;
	const size_t len = 16 << 20;
	unsigned char *ref = tu_make_file(path, len, 78), *b;

	CHECK(ref);
	CHECK(hm_cache_new(&c, 4 << 20, "clock") == 0);
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0);
	b = hm_region_addr(r);

	/* WILLNEED reads the range in now: touching it costs no miss. */
	CHECK(hm_advise(b, 256 << 10, HM_ADV_WILLNEED) == 0);
	CHECK(hm_region_stats(r, &a) == 0 && a.resident_bytes >= (256u << 10));
	CHECK(tu_cmp_mem(b, ref, 256 << 10) == -1);
	CHECK(hm_region_stats(r, &z) == 0 && z.misses == a.misses &&
	      z.faults_missing == a.faults_missing);

	/* DONTNEED writes back, then drops. */
	memset(b, 0x5c, 64 << 10);
	memset(ref, 0x5c, 64 << 10);
	CHECK(hm_region_stats(r, &a) == 0);
	CHECK(hm_advise(b, 256 << 10, HM_ADV_DONTNEED) == 0);
	CHECK(hm_region_stats(r, &z) == 0);
	CHECKF(z.writebacks - a.writebacks == 16, "%llu pages written back, want 16",
	       (unsigned long long)(z.writebacks - a.writebacks));
	CHECK(z.resident_bytes == 0 && z.dirty_pages == 0);
	CHECK(tu_cmp_file(path, ref, 256 << 10) == -1);
	CHECK(tu_cmp_mem(b, ref, 256 << 10) == -1);
	CHECK(hm_region_stats(r, &a) == 0 && a.misses > z.misses);

	/* RANDOM: no readahead; every page is its own miss. */
	CHECK(hm_advise(b, len, HM_ADV_DONTNEED) == 0);
	CHECK(hm_advise(b, len, HM_ADV_RANDOM) == 0);
	CHECK(hm_region_stats(r, &a) == 0);
	for (size_t i = 0; i < (1u << 20); i += 4096)
		CHECK(b[i] == ref[i]);
	CHECK(hm_region_stats(r, &z) == 0);
	CHECK(z.readahead == a.readahead);
	/*
	 * Not == 256: DONTNEED skips a page the sampler holds BUSY at that
	 * moment (reported), so a few pages may still be resident.
	 */
	CHECKF(z.misses - a.misses <= 256 && z.misses - a.misses >= 192, "%llu misses",
	       (unsigned long long)(z.misses - a.misses));

	/* SEQUENTIAL: a scan takes far fewer misses than pages. */
	CHECK(hm_advise(b, len, HM_ADV_DONTNEED) == 0);
	CHECK(hm_advise(b, len, HM_ADV_SEQUENTIAL) == 0);
	CHECK(hm_region_stats(r, &a) == 0);
	for (size_t i = 0; i < (2u << 20); i += 4096)
		CHECK(b[i] == ref[i]);
	CHECK(hm_region_stats(r, &z) == 0);
	CHECKF(z.misses - a.misses <= 512 / 4, "%llu misses for 512 pages",
	       (unsigned long long)(z.misses - a.misses));
	CHECK(z.readahead > a.readahead);

	/* NORMAL: a sequential stream still gets readahead. */
	CHECK(hm_advise(b, len, HM_ADV_DONTNEED) == 0);
	CHECK(hm_advise(b, len, HM_ADV_NORMAL) == 0);
	CHECK(hm_region_stats(r, &a) == 0);
	for (size_t i = 0; i < (2u << 20); i += 4096)
		CHECK(b[i] == ref[i]);
	CHECK(hm_region_stats(r, &z) == 0);
	CHECK(z.readahead > a.readahead && z.misses - a.misses < 512);

	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

/*
 * A forward scan that needs one page in eight never has resident pages
 * behind its misses; once misses make a chain (each a short jump past the
 * one before), windows cover the gaps ahead (a level of a BFS over a CSR
 * file). One short jump is not a chain, and uniform random misses over a
 * large region almost never make one: they keep their one-page loads.
 */
static void test_sparse_scan(void)
{
	struct hm_cache *c;
	struct hm_store *s, *m;
	struct hm_region *r, *big;
	struct hm_stats a, z;
	const size_t len = 32 << 20;
	unsigned char *ref = tu_make_file(path, len, 79), *b;

	CHECK(ref);
	CHECK(hm_cache_new(&c, 8 << 20, "clock") == 0);
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ, HM_CACHED, 4096) == 0);
	b = hm_region_addr(r);
	/* Away from page 0, where a region's first stream is expected to start. */
	CHECK(hm_region_stats(r, &a) == 0);
	for (size_t pg = 2048; pg < 3072; pg += 8)
		CHECK(b[pg * 4096 + 5] == ref[pg * 4096 + 5]);
	CHECK(hm_region_stats(r, &z) == 0);
	CHECKF(z.misses - a.misses <= 32 && z.readahead > a.readahead,
	       "%llu misses and %llu pages read ahead for 128 pages one in eight",
	       (unsigned long long)(z.misses - a.misses),
	       (unsigned long long)(z.readahead - a.readahead));
	/* Pairs 20 pages apart, 256 pages between pairs: a jump each, never a chain. */
	CHECK(hm_advise(b, len, HM_ADV_DONTNEED) == 0);
	CHECK(hm_region_stats(r, &a) == 0);
	for (size_t pg = 4096; pg < 4096 + 16 * 256; pg += 256) {
		CHECK(b[pg * 4096] == ref[pg * 4096]);
		CHECK(b[(pg + 20) * 4096] == ref[(pg + 20) * 4096]);
	}
	CHECK(hm_region_stats(r, &z) == 0);
	CHECKF(z.readahead == a.readahead && z.misses - a.misses == 32,
	       "%llu misses and %llu pages read ahead for 16 pairs of pages",
	       (unsigned long long)(z.misses - a.misses),
	       (unsigned long long)(z.readahead - a.readahead));
	/* Two jumps in a row make a chain. */
	for (size_t pg = 100; pg <= 140; pg += 20)
		CHECK(b[pg * 4096] == ref[pg * 4096]);
	CHECK(hm_region_stats(r, &a) == 0);
	CHECKF(a.readahead > z.readahead && a.misses - z.misses == 3,
	       "%llu misses and %llu pages read ahead for a chain of three",
	       (unsigned long long)(a.misses - z.misses),
	       (unsigned long long)(a.readahead - z.readahead));
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	/* 256 uniform random misses over 1 GiB. */
	CHECK(hm_store_open(&m, "mem:1G", 0) == 0);
	CHECK(hm_region_map(&big, c, m, 0, 1 << 30, PROT_READ, HM_CACHED, 4096) == 0);
	b = hm_region_addr(big);
	CHECK(hm_region_stats(big, &a) == 0);
	uint64_t seed = tu_seed(79);
	for (int i = 0; i < 256; i++)
		CHECK(b[(tu_rnd(&seed) % (1u << 18)) * 4096] == 0);
	CHECK(hm_region_stats(big, &z) == 0);
	CHECKF(z.readahead - a.readahead < 64, "%llu pages read ahead for 256 random misses",
	       (unsigned long long)(z.readahead - a.readahead));
	CHECK(hm_region_unmap(big) == 0);
	CHECK(hm_store_close(m) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

/* ---- system calls on region memory (per fault mode) ---- */

static int out_fd(void)
{
	char p[600];

	tu_path(p, sizeof p, "out");
	return open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
}

static void test_prefault_pin(void)
{
	const size_t len = 16 << 20;
	unsigned char *ref = tu_make_file(path, len, 79);
	unsigned char *p, *buf = malloc(256 << 10);
	int fd = out_fd();
	struct hm_stats st;

	CHECK(ref && buf && fd >= 0);
	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_cache *c = hm_region_cache(hm_region_find(p));

	/* Prefaulted: write(2) from the range works in every mode. */
	CHECKF(hm_prefault(p, 256 << 10, 0) == 0, "%s", hm_errormsg());
	CHECK(write(fd, p, 256 << 10) == 256 << 10);
	CHECK(pread(fd, buf, 256 << 10, 0) == 256 << 10);
	CHECK(!memcmp(buf, ref, 256 << 10));

	/* Pinned: survives heavy eviction, and stays usable by system calls. */
	CHECKF(hm_prefault(p + (1 << 20), 256 << 10, HM_PREFAULT_PIN) == 0, "%s", hm_errormsg());
	CHECK(hm_cache_stats(c, &st) == 0 && st.pinned_pages == 64);
	for (size_t i = 2 << 20; i < len; i += 4096)
		CHECK(p[i] == ref[i]);
	CHECK(hm_cache_stats(c, &st) == 0 && st.pinned_pages == 64 && st.evictions > 0);
	CHECK(pwrite(fd, p + (1 << 20), 256 << 10, 0) == 256 << 10);
	CHECK(pread(fd, buf, 256 << 10, 0) == 256 << 10);
	CHECK(!memcmp(buf, ref + (1 << 20), 256 << 10));
	/* read(2) into a pinned range, then it is written back like any write. */
	tu_fill(buf, 256 << 10, 5);
	CHECK(pwrite(fd, buf, 256 << 10, 0) == 256 << 10);
	CHECK(pread(fd, p + (1 << 20), 256 << 10, 0) == 256 << 10);
	memcpy(ref + (1 << 20), buf, 256 << 10);
	CHECK(hm_unpin(p + (1 << 20), 256 << 10) == 0);
	CHECK(hm_cache_stats(c, &st) == 0 && st.pinned_pages == 0);
	CHECK(hmsync(p, len, MS_SYNC) == 0);
	CHECK(tu_cmp_file(path, ref, len) == -1);

	/* Pinning more than the budget: -ENOMEM, and the cache stays usable. */
	CHECK(hm_prefault(p, 8 << 20, HM_PREFAULT_PIN) == -ENOMEM);
	CHECK(*hm_errormsg());
	CHECK(hm_cache_stats(c, &st) == 0);
	CHECKF(st.pinned_pages == 0, "a failed pin left %llu pages pinned",
	       (unsigned long long)st.pinned_pages);
	/* Cumulative: 3 MiB pinned, 2 MiB more fails and undoes only its own pins. */
	CHECK(hm_prefault(p, 3 << 20, HM_PREFAULT_PIN) == 0);
	CHECK(hm_prefault(p + (3 << 20), 2 << 20, HM_PREFAULT_PIN) == -ENOMEM);
	CHECK(hm_cache_stats(c, &st) == 0);
	CHECKF(st.pinned_pages == 768, "%llu pages pinned, want 768",
	       (unsigned long long)st.pinned_pages);
	CHECK(hm_unpin(p, len) == 0);
	CHECK(hm_cache_stats(c, &st) == 0 && st.pinned_pages == 0);
	for (size_t i = 0; i < len; i += 64 << 10)
		CHECK(p[i] == ref[i]);
	CHECK(hmunmap(p, len) == 0);
	close(fd);
	free(buf);
	free(ref);
}

/* Thread mode: system calls on non-resident region memory wait for the page. */
static void test_syscalls_thread_mode(void)
{
	const size_t len = 16 << 20;
	unsigned char *ref = tu_make_file(path, len, 80);
	unsigned char *p, *buf = malloc(1 << 20);
	int fd = out_fd();

	CHECK(ref && buf && fd >= 0);
	if (hm_fault_mode() != HM_FAULT_THREAD)
		SKIP("not in thread mode");
	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(write(fd, p + (5 << 20), 1 << 20) == 1 << 20);
	CHECK(pread(fd, buf, 1 << 20, 0) == 1 << 20);
	CHECK(!memcmp(buf, ref + (5 << 20), 1 << 20));
	tu_fill(buf, 1 << 20, 6);
	CHECK(pwrite(fd, buf, 1 << 20, 0) == 1 << 20);
	CHECK(pread(fd, p + (9 << 20), 1 << 20, 0) == 1 << 20);
	memcpy(ref + (9 << 20), buf, 1 << 20);
	CHECK(!memcmp(p + (9 << 20), buf, 1 << 20));
	CHECK(hmunmap(p, len) == 0);
	CHECK(tu_cmp_file(path, ref, len) == -1);
	close(fd);
	free(buf);
	free(ref);
}

/* Sigbus mode: without a prefault a system call fails with EFAULT (documented). */
static void test_syscalls_sigbus_mode(void)
{
	const size_t len = 4 << 20;
	unsigned char *ref = tu_make_file(path, len, 81);
	unsigned char *p;
	int fd = out_fd();

	CHECK(ref && fd >= 0);
	if (hm_fault_mode() != HM_FAULT_SIGBUS)
		SKIP("not in sigbus mode");
	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	errno = 0;
	CHECK(write(fd, p + (1 << 20), 65536) == -1 && errno == EFAULT);
	CHECK(hm_prefault(p + (1 << 20), 65536, 0) == 0);
	CHECK(write(fd, p + (1 << 20), 65536) == 65536);
	CHECK(hmunmap(p, len) == 0);
	close(fd);
	free(ref);
}

static int mapped(struct hm_region *r, uint64_t idx);

/*
 * A prefaulted range stays safe for system calls while the reference
 * sampler runs (here at 20,000 pages a second, a sweep of the whole cache
 * every tick): it leaves the range's pages mapped. Before, it unmapped them
 * again, and a write() from the range failed with EFAULT.
 *
 * The cache holds twice the region, so nothing is evicted: hm_prefault()
 * promises a page stays mapped only until the cache evicts it. In a cache
 * the size of the region the background evictor took prefaulted pages
 * about one run in 30: a round the scan had started, run late, or its
 * 100 ms top-up to the high watermark after the prefault had read back
 * pages that round evicted.
 */
static void prefault_sampled(void)
{
	const size_t len = 4 << 20, part = 1 << 20;
	unsigned char *ref = tu_make_file(path, len, 83);
	unsigned char *p;
	int fd = out_fd();
	struct timespec ts = {.tv_nsec = 100 * 1000 * 1000};
	struct hm_stats st;
	uint64_t sampled = 0;

	CHECK(ref && fd >= 0);
	if (hm_fault_mode() != HM_FAULT_SIGBUS)
		SKIP("not in sigbus mode");
	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	/* The rest of the region resident too, so the sampler has pages to pick from. */
	for (size_t off = 0; off < len; off += 4096)
		(void)*(volatile unsigned char *)(p + off);
	CHECK(hm_prefault(p + part, part, 0) == 0);
	for (int round = 0; round < 5 && !t_case_failed; round++) {
		nanosleep(&ts, NULL);
		errno = 0;
		ssize_t n = pwrite(fd, p + part, part, 0);
		CHECKF(n == (ssize_t)part, "round %d: write() of a prefaulted range: %zd (%s)", round,
		       n, strerror(errno));
		n = pread(fd, p + part, part, 0); /* and into it */
		CHECKF(n == (ssize_t)part, "round %d: read() into it: %zd (%s)", round, n,
		       strerror(errno));
	}
	CHECK(!memcmp(p + part, ref + part, part));
	CHECK(hm_region_stats(hm_region_find(p), &st) == 0);
	CHECKF(st.evictions == 0, "%llu pages evicted: the case needs a cache that evicts nothing",
	       (unsigned long long)st.evictions);
	/* The sampler did run: it unmapped pages outside the range. */
	for (uint64_t i = 0; i < len / 4096; i++)
		if (i < part / 4096 || i >= 2 * part / 4096)
			sampled += mapped(hm_region_find(p), i) == 0;
	CHECKF(sampled > 0, "no page outside the range was sampled");
	CHECK(hmunmap(p, len) == 0);
	close(fd);
	free(ref);
}

static int prefault_sampled_child(void *arg)
{
	(void)arg;
	RUN(prefault_sampled);
	return test_done();
}

static void test_prefault_while_sampling(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=sigbus", "HMMAP_CACHE_SIZE=8M",
			      "HMMAP_SAMPLE_RATE=20000", NULL };

	TU_CHILD_RESULT(tu_child(env, prefault_sampled_child, NULL));
}

static int mode_child(void *arg)
{
	RUN(test_prefault_pin);
	RUN(test_syscalls_thread_mode);
	RUN(test_syscalls_sigbus_mode);
	return test_done();
}

/*
 * Scattered victims are zapped in one process_madvise() per batch, or a
 * madvise() per run where the kernel refuses that: both ways, random writes
 * over a region 16 times its cache (no readahead, so every batch is
 * scattered) come back whole after a sync and a second pass of reads, and a
 * read-only region of the same data (whose victims are zapped only when a
 * batch has several runs) reads right through eviction too.
 */
static uint64_t scatter_word(uint64_t page, int pass)
{
	return (page + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)pass;
}

static void scatter_pass(int vector)
{
	const size_t len = 16u << 20, np = len / 4096;
	struct hm_store *st = NULL;
	struct hm_cache *c = NULL;
	struct hm_region *r = NULL, *ro = NULL;
	uint64_t rng = 99, bad = 0;
	char *base;

	hm__zap_vector(vector);
	CHECK(hm_store_open(&st, "mem:16M", 0) == 0);
	CHECK(hm_cache_new(&c, 1u << 20, "fifo") == 0);
	CHECKF(hm_region_map(&r, c, st, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0,
	       "%s", hm_errormsg());
	base = hm_region_addr(r);
	hm_advise(base, len, HM_ADV_RANDOM);
	for (size_t p = 0; p < np; p++)
		*(volatile uint64_t *)(base + p * 4096) = scatter_word(p, 0);
	for (int i = 0; i < 20000; i++) {
		uint64_t p = (tu_rnd(&rng) >> 16) % np;
		*(volatile uint64_t *)(base + p * 4096) = scatter_word(p, 1);
		*(volatile uint64_t *)(base + p * 4096 + 8) = 1;
	}
	CHECK(hm_sync(base, len, HM_SYNC_SYNC) == 0);
	for (size_t p = 0; p < np; p++) {
		uint64_t w = *(volatile uint64_t *)(base + p * 4096);
		uint64_t m = *(volatile uint64_t *)(base + p * 4096 + 8);
		bad += w != scatter_word(p, m ? 1 : 0);
	}
	CHECKF(bad == 0, "%llu pages wrong (vector %d)", (unsigned long long)bad, vector);
	CHECK(hm_region_unmap(r) == 0);
	CHECKF(hm_region_map(&ro, c, st, 0, len, PROT_READ, HM_CACHED, 4096) == 0, "%s",
	       hm_errormsg());
	base = hm_region_addr(ro);
	hm_advise(base, len, HM_ADV_RANDOM);
	for (int i = 0; i < 20000; i++) {
		uint64_t p = (tu_rnd(&rng) >> 16) % np;
		uint64_t m = *(volatile uint64_t *)(base + p * 4096 + 8);
		bad += *(volatile uint64_t *)(base + p * 4096) != scatter_word(p, m ? 1 : 0);
	}
	CHECKF(bad == 0, "%llu read-only reads wrong (vector %d)", (unsigned long long)bad, vector);
	/* The way asked for was the way taken (this kernel has process_madvise). */
	CHECKF(hm__zap_vector(0) == vector, "zap state %d, asked %d", hm__zap_vector(0), vector);
	CHECK(hm_region_unmap(ro) == 0);
	CHECK(hm_cache_free(c) == 0);
	hm_store_close(st);
}

/* Whether page idx of r is mapped now (/proc/self/pagemap's present bit), or -1. */
static int mapped(struct hm_region *r, uint64_t idx)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	off_t at = (off_t)(((uintptr_t)hm_region_addr(r) >> 12) + idx) * 8;

	if (fd < 0)
		return -1;
	ssize_t n = pread(fd, &e, sizeof e, at);
	close(fd);
	return n == (ssize_t)sizeof e ? (int)(e >> 63) : -1;
}

/* hm__zap_runs() unmaps exactly the runs it is given, one call or many. */
static void zap_exact(int vector)
{
	static const struct hm_run runs[] = { { 2, 1 }, { 5, 3 }, { 20, 1 }, { 40, 8 } };
	struct hm_store *st = NULL;
	struct hm_cache *c = NULL;
	struct hm_region *r = NULL;
	char *base;

	hm__zap_vector(vector);
	CHECK(hm_store_open(&st, "mem:256K", 0) == 0);
	CHECK(hm_cache_new(&c, 1u << 20, "fifo") == 0);
	CHECK(hm_region_map(&r, c, st, 0, 64 * 4096, PROT_READ | PROT_WRITE, HM_CACHED, 4096) ==
	      0);
	base = hm_region_addr(r);
	for (uint64_t p = 0; p < 64; p++)
		*(volatile uint64_t *)(base + p * 4096) = scatter_word(p, 2);
	for (uint64_t p = 0; p < 64; p++)
		CHECKF(mapped(r, p) == 1, "page %llu not mapped after its write (%d)",
		       (unsigned long long)p, mapped(r, p));
	hm__zap_runs(r, runs, sizeof runs / sizeof runs[0]);
	/* The runs' pages are gone, and only they. */
	for (uint64_t p = 0; p < 64; p++) {
		int in = 0;
		for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
			in |= p >= runs[i].idx && p < runs[i].idx + runs[i].n;
		CHECKF(mapped(r, p) == !in, "page %llu %s (vector %d)", (unsigned long long)p,
		       in ? "still mapped" : "unmapped too", vector);
	}
	CHECKF(hm__zap_vector(0) == vector, "zap state %d, asked %d", hm__zap_vector(0), vector);
	/* Written before the zap: harvested, so a sync writes them and they read back. */
	CHECK(hm_sync(base, 64 * 4096, HM_SYNC_SYNC) == 0);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_region_map(&r, c, st, 0, 64 * 4096, PROT_READ, HM_CACHED, 4096) == 0);
	base = hm_region_addr(r);
	for (uint64_t p = 0; p < 64; p++)
		CHECKF(*(volatile uint64_t *)(base + p * 4096) == scatter_word(p, 2),
		       "page %llu lost its write", (unsigned long long)p);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(c) == 0);
	hm_store_close(st);
}

static void zap_runs_exact(void)
{
	zap_exact(1);
	if (!t_case_failed)
		zap_exact(-1);
	hm__zap_vector(1);
}

static int zap_child(void *arg)
{
	(void)arg;
	RUN(zap_runs_exact);
	return test_done();
}

/*
 * In a process whose sampler is off: nothing else unmaps a page, so the
 * pages zapped are exactly the runs' (with the sampler on, it could unmap
 * one between the checks).
 */
static void test_zap_runs(void)
{
	const char *env[] = { "HMMAP_SAMPLE_RATE=0", NULL };

	TU_CHILD_RESULT(tu_child(env, zap_child, NULL));
}

static void test_scattered_eviction(void)
{
	scatter_pass(1);
	if (!t_case_failed)
		scatter_pass(-1);
	hm__zap_vector(1);
}

/*
 * A store whose reads wait while the gate is shut: the prefetch workers
 * that read it hold still, and windows queued behind theirs stay queued.
 */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_shut;

static int gate_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	*priv = NULL;
	info->size = 1 << 20;
	info->props = 0;
	info->align = 1;
	return 0;
}

static void gate_close(void *priv)
{
}

static int gate_read(void *priv, void *buf, size_t len, uint64_t off)
{
	pthread_mutex_lock(&gate_lock);
	while (gate_shut)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
	memset(buf, 0, len);
	return 0;
}

static int gate_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	return 0;
}

static const struct hm_store_ops gate_ops = {
	.abi = HM_STORE_ABI,
	.scheme = "gate",
	.summary = "zeros, read only while the test lets it (tests)",
	.open = gate_open,
	.close = gate_close,
	.read = gate_read,
	.write = gate_write,
};

static void gate_set(bool shut)
{
	pthread_mutex_lock(&gate_lock);
	gate_shut = shut;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

/*
 * Readahead reads no page behind its reader. With the prefetch workers held
 * on another region's windows, a scan faults in every page itself while its
 * own windows wait in the queue; the cache then evicts the scan's pages,
 * and the gate opens. The workers must find nothing left of those windows:
 * the scan has passed them. (Before, they read 60 of its 64 pages a second
 * time.)
 */
static void test_readahead_behind_reader(void)
{
	const size_t len = 256 << 10;
	struct hm_store *gs = NULL, *ms = NULL;
	struct hm_cache *gc = NULL, *c = NULL;
	struct hm_region *g = NULL, *r = NULL;
	struct hm_stats st;
	int evicted = -1;

	CHECKF(hm_store_register(&gate_ops) == 0, "%s", hm_errormsg());
	CHECK(hm_store_open(&gs, "gate:", 0) == 0);
	CHECK(hm_store_open(&ms, "mem:256K", 0) == 0);
	CHECK(hm_cache_new(&gc, 1 << 20, "fifo") == 0);
	CHECK(hm_cache_new(&c, 1 << 20, "fifo") == 0);
	CHECK(hm_region_map(&g, gc, gs, 0, len, PROT_READ, HM_CACHED, 4096) == 0);
	CHECK(hm_region_map(&r, c, ms, 0, len, PROT_READ, HM_CACHED, 4096) == 0);
	/*
	 * More windows than there are workers (4): every worker waits on one,
	 * and the scan's windows queue behind the rest.
	 */
	gate_set(true);
	for (uint64_t i = 0; i < 16; i++)
		hm__prefetch_queue(g, i, 1, atomic_load(&g->ra_gen));
	for (size_t off = 0; off < len; off += 4096)
		(void)*(volatile char *)((char *)hm_region_addr(r) + off);
	/* Evicted by the cache, not dropped by advice (which cancels readahead). */
	if (!hm_cache_resize(c, 4096))
		evicted = hm_cache_resize(c, 1 << 20);
	gate_set(false);
	CHECKF(evicted == 0, "%s", hm_errormsg());
	/* An unmap waits for the queued windows of its region. */
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_stats(c, &st) == 0);
	CHECKF(st.bytes_read == len, "a scan of %zu bytes read %llu (readahead %llu pages)", len,
	       (unsigned long long)st.bytes_read, (unsigned long long)st.readahead);
	CHECK(hm_region_unmap(g) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_cache_free(gc) == 0);
	hm_store_close(ms);
	hm_store_close(gs);
}

/*
 * HM_ADV_NOREUSE is drop-behind: a region read or written front to back
 * gives up the pages its reader has passed before the policy is asked, so a
 * scan of far more than the cache leaves another region's pages resident
 * (with SEQUENTIAL advice the same scan evicts them), and a loop keeps what
 * it read first. Written pages dropped that way are written back first.
 */
static void behind_pass(int advice, uint64_t *hot_left, uint64_t *loop_misses)
{
	const size_t hot_len = 1 << 20, scan_len = 96 << 20, loop_len = 64 << 20;
	struct hm_store *hs = NULL, *ss = NULL;
	struct hm_cache *c = NULL;
	struct hm_region *h = NULL, *sr = NULL;
	struct hm_stats st;
	uint64_t bad = 0, misses0;
	char *hb, *sb;

	CHECK(hm_cache_new(&c, 32 << 20, "clock") == 0);
	CHECK(hm_store_open(&hs, "mem:1M", 0) == 0);
	CHECK(hm_store_open(&ss, "mem:96M", 0) == 0);
	CHECK(hm_region_map(&h, c, hs, 0, hot_len, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0);
	CHECK(hm_region_map(&sr, c, ss, 0, scan_len, PROT_READ | PROT_WRITE, HM_CACHED, 4096) ==
	      0);
	if (t_case_failed)
		goto out;
	hb = hm_region_addr(h);
	sb = hm_region_addr(sr);
	for (size_t i = 0; i < hot_len; i += 4096)
		(void)*(volatile char *)(hb + i);
	/* hmmap's own value, beside madvise()'s; the one after it is unknown. */
	CHECK(hm_advise(sb, scan_len, HM_ADV_NOREUSE + 1) == -EINVAL);
	CHECK(hm_advise(sb, scan_len, advice) == 0);
	/* One writing pass and one reading pass over three times the cache. */
	for (size_t i = 0; i < scan_len; i += 4096)
		*(volatile uint64_t *)(sb + i + 16) = scatter_word(i / 4096, 7);
	for (size_t i = 0; i < scan_len; i += 4096)
		bad += *(volatile uint64_t *)(sb + i + 16) != scatter_word(i / 4096, 7);
	CHECKF(bad == 0, "%llu pages read back wrong", (unsigned long long)bad);
	CHECK(hm_region_stats(h, &st) == 0);
	*hot_left = st.resident_bytes;
	/*
	 * A loop over twice the cache: its second and third passes. About 10 MiB
	 * of the cache are the reader's readahead and lag (5 windows of 2 MiB).
	 */
	for (size_t i = 0; i < loop_len; i += 4096)
		bad += *(volatile uint64_t *)(sb + i + 16) != scatter_word(i / 4096, 7);
	CHECK(hm_region_stats(sr, &st) == 0);
	misses0 = st.misses + st.readahead;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < loop_len; i += 4096)
			bad += *(volatile uint64_t *)(sb + i + 16) != scatter_word(i / 4096, 7);
	CHECK(hm_region_stats(sr, &st) == 0);
	*loop_misses = st.misses + st.readahead - misses0;
	CHECKF(bad == 0, "%llu pages read back wrong in the loop", (unsigned long long)bad);
	CHECK(hm_sync(sb, scan_len, HM_SYNC_SYNC) == 0);
out:
	if (sr)
		CHECK(hm_region_unmap(sr) == 0);
	if (h)
		CHECK(hm_region_unmap(h) == 0);
	if (c)
		CHECK(hm_cache_free(c) == 0);
	/* What was written reached the store, whichever way it left the cache. */
	for (size_t i = 0; ss && !t_case_failed && i < scan_len; i += 4096) {
		uint64_t w = 0;
		CHECK(hm_store_read(ss, &w, sizeof w, i + 16) == 0);
		CHECKF(w == scatter_word(i / 4096, 7), "page %zu not on the store", i / 4096);
	}
	hm_store_close(hs);
	hm_store_close(ss);
}

/*
 * A cache's metadata follows what it holds, not its budget: a cache of
 * 1 TiB (HMMAP_CACHE_SIZE=1T is allowed) over a 1 MiB region costs little
 * memory to make, fill and unmap. Before, making it wrote 1 GB of free-slot
 * list and every unmap walked all 268 million slots.
 */
/* A 1 TiB cache over 1 MiB: 256 pages written, read back after a remap. */
static void huge_budget_with(const char *policy)
{
	struct hm_cache *hc;
	struct hm_store *s;
	struct hm_region *r;
	uint64_t rss0 = tu_rss();

	CHECKF(hm_cache_new(&hc, 1ull << 40, policy) == 0, "%s: %s", policy, hm_errormsg());
	if (t_case_failed)
		return;
	CHECKF(hm_store_open(&s, "mem:1M", 0) == 0, "%s", hm_errormsg());
	CHECKF(hm_region_map(&r, hc, s, 0, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0,
	       "%s", hm_errormsg());
	char *p = hm_region_addr(r);
	for (int i = 0; i < 256; i++)
		p[(size_t)i * 4096] = (char)(i + 1);
	CHECK(hm_region_unmap(r) == 0);
	uint64_t grew = tu_rss() - rss0;
	/* TSan maps shadow for the slot arrays (266 MiB here): its figure is its own. */
	if (!tu_under("tsan"))
		CHECKF(grew < (64u << 20), "a 1 TiB %s cache over 1 MiB grew the process by %llu MiB",
		       policy, (unsigned long long)(grew >> 20));
	/* The slots given back are used again. */
	CHECK(hm_region_map(&r, hc, s, 0, 1 << 20, PROT_READ, HM_CACHED, 4096) == 0);
	p = hm_region_addr(r);
	for (int i = 0; i < 256; i++)
		CHECKF(p[(size_t)i * 4096] == (char)(i + 1), "%s: page %d", policy, i);
	CHECK(hm_region_unmap(r) == 0);
	hm_cache_free(hc);
	hm_store_close(s);
}

static void test_huge_budget(void)
{
	static const char *const policies[] = {
		"clock", "fifo", "lru", "sieve", "arc", "lirs", "s3fifo", "2q",
	};

	for (size_t i = 0; i < sizeof policies / sizeof policies[0] && !t_case_failed; i++)
		huge_budget_with(policies[i]);
}

/* The largest budget works; one page more is refused, never wrapped. */
static void test_budget_limit(void)
{
	const size_t most = (((size_t)1 << 32) - 64) * 4096;
	const size_t over[] = { most + 4096, ((size_t)1 << 44) - 4096, (size_t)1 << 44,
				(size_t)1 << 50, SIZE_MAX };
	struct hm_cache *hc;

	CHECKF(hm_cache_new(&hc, most, "clock") == 0, "%s", hm_errormsg());
	if (!t_case_failed) {
		CHECK(hm_cache_budget(hc) == most);
		hm_cache_free(hc);
	}
	for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
		hc = (struct hm_cache *)1;
		CHECKF(hm_cache_new(&hc, over[i], "clock") == -EINVAL, "budget %zu: %s", over[i],
		       hm_errormsg());
		CHECK(hc == NULL);
		CHECKF(strstr(hm_errormsg(), "16 TiB"), "%s", hm_errormsg());
	}
	/* Ghost queues past what a table holds are refused by name, not overflowed. */
	hc = NULL;
	CHECK(hm_cache_new(&hc, (size_t)1 << 40, "s3fifo:ghost=16") == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "s3fifo") && strstr(hm_errormsg(), "ghost"), "%s",
	       hm_errormsg());
	CHECK(hm_cache_new(&hc, (size_t)1 << 43, "arc") == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "arc"), "%s", hm_errormsg());
	CHECK(hc == NULL);
}

static void test_drop_behind(void)
{
	uint64_t nr_hot, seq_hot, nr_loop, seq_loop;
	const uint64_t loop_pages = 2 * (64 << 20) / 4096;

	behind_pass(HM_ADV_NOREUSE, &nr_hot, &nr_loop);
	if (t_case_failed)
		return;
	behind_pass(HM_ADV_SEQUENTIAL, &seq_hot, &seq_loop);
	/* The hot 1 MiB survives the scan only with drop-behind. */
	CHECKF(nr_hot >= (1 << 20) * 9 / 10, "a NOREUSE scan left %llu of 1 MiB of another "
					     "region resident",
	       (unsigned long long)nr_hot);
	CHECKF(seq_hot < (1 << 20) / 2, "a SEQUENTIAL scan left %llu of 1 MiB resident: the "
					 "control does not show what drop-behind changes",
	       (unsigned long long)seq_hot);
	/* CLOCK reads the whole loop again; drop-behind keeps its first part. */
	CHECKF(seq_loop >= loop_pages * 9 / 10, "SEQUENTIAL loop read %llu of %llu pages",
	       (unsigned long long)seq_loop, (unsigned long long)loop_pages);
	CHECKF(nr_loop <= loop_pages * 85 / 100, "NOREUSE loop read %llu of %llu pages",
	       (unsigned long long)nr_loop, (unsigned long long)loop_pages);
}

static void test_thread_mode(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=thread", "HMMAP_CACHE_SIZE=4M", NULL };

	TU_CHILD_RESULT(tu_child(env, mode_child, NULL));
}

static void test_sigbus_mode(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=sigbus", "HMMAP_CACHE_SIZE=4M", NULL };

	TU_CHILD_RESULT(tu_child(env, mode_child, NULL));
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	unsigned char *ref = tu_make_file(path, 16 << 20, 1);
	if (!ref)
		return 1;
	free(ref);
	/* Children first: this process must not have started the engine. */
	RUN(test_thread_mode);
	RUN(test_sigbus_mode);
	RUN(test_prefault_while_sampling);
	RUN(test_zap_runs);
	RUN(test_budget_two_regions);
	RUN(test_resize);
	RUN(test_reads_write_nothing);
	RUN(test_interleaved_streams);
	RUN(test_second_pass_reads_ahead);
	RUN(test_readahead_behind_reader);
	RUN(test_large_page_readahead);
	RUN(test_large_page_batches);
	RUN(test_advise);
	RUN(test_sparse_scan);
	RUN(test_scattered_eviction);
	RUN(test_drop_behind);
	RUN(test_huge_budget);
	RUN(test_budget_limit);
	tu_cleanup();
	return test_done();
}
