/* SPDX-License-Identifier: MIT */
/*
 * Data integrity under eviction: four threads read and write a file many
 * times larger than the cache (8-byte words, whole 4 KiB blocks, whole region
 * pages), checked against a reference copy in ordinary memory; then the
 * file on disk after hmsync(MS_SYNC), and the contents through a fresh
 * mapping after unmap and map again. For page sizes 4K, 64K and 2M (also
 * with frames from the huge page pool, HM_HUGETLB), several policies, and
 * both fault modes; the mode is process-wide, so each mode runs in its own
 * child.
 *
 * Also: hm_sync() racing with eviction (test_sync_races_eviction), and
 * writers, a syncer, DONTNEED and the sampler all at once
 * (test_writers_sync_drop_sample).
 *
 * Writes are partitioned: 4 KiB block b belongs to thread b % 4, which alone
 * writes it and checks it, so every check is exact while threads still share
 * region pages (at 64K and 2M) and so race on faults, write tracking and
 * eviction of the same page.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define NTHREADS 4
#define BLK 4096u

static char path[512];
static size_t file_len;
static unsigned char *ref; /* what the file must hold */
static unsigned ops_scale = 1;

struct run {
	unsigned char *base;
	size_t len;
	size_t ps;
	unsigned ops;
	uint64_t seed;
	_Atomic long long bad; /* first wrong offset, or -1 */
	_Atomic int bad_kind;
};

struct worker {
	struct run *run;
	int id;
};

static uint64_t own_block(struct run *ru, int id, uint64_t *s)
{
	uint64_t nblk = ru->len / BLK;
	uint64_t b = tu_rnd(s) % nblk;

	return b - (b % NTHREADS) + (uint64_t)id < nblk ? b - (b % NTHREADS) + (uint64_t)id
							 : (uint64_t)id;
}

static void report(struct run *ru, long long off, int kind)
{
	long long none = -1;

	if (atomic_compare_exchange_strong(&ru->bad, &none, off))
		atomic_store(&ru->bad_kind, kind);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *ru = w->run;
	uint64_t s = tu_seed(ru->seed * 7919 + (uint64_t)w->id + 1);
	unsigned char *buf = malloc(ru->ps > BLK ? ru->ps : BLK);

	if (!buf) {
		report(ru, -2, 9);
		return NULL;
	}
	for (unsigned i = 0; i < ru->ops && atomic_load(&ru->bad) == -1; i++) {
		uint64_t b = own_block(ru, w->id, &s);
		size_t off = (size_t)(b * BLK);
		unsigned op = (unsigned)(tu_rnd(&s) % 10);
		size_t wo = off + (tu_rnd(&s) % (BLK / 8)) * 8;

		switch (op) {
		case 0:
		case 1:
		case 2: { /* read a word */
			uint64_t v = *(volatile uint64_t *)(ru->base + wo), r;
			memcpy(&r, ref + wo, 8);
			if (v != r)
				report(ru, (long long)wo, 1);
			break;
		}
		case 3:
		case 4:
		case 5: { /* write a word */
			uint64_t v = tu_rnd(&s);
			*(volatile uint64_t *)(ru->base + wo) = v;
			memcpy(ref + wo, &v, 8);
			break;
		}
		case 6: /* read a block */
			memcpy(buf, ru->base + off, BLK);
			if (memcmp(buf, ref + off, BLK))
				report(ru, (long long)off + tu_cmp_mem(buf, ref + off, BLK), 2);
			break;
		case 7: /* write a block */
			tu_fill(ref + off, BLK, tu_rnd(&s));
			memcpy(ru->base + off, ref + off, BLK);
			break;
		case 8: { /* read a whole region page, check the own blocks in it */
			size_t po = off & ~(ru->ps - 1);
			size_t n = po + ru->ps <= ru->len ? ru->ps : ru->len - po;
			memcpy(buf, ru->base + po, n);
			for (size_t k = 0; k < n; k += BLK) {
				if (((po + k) / BLK) % NTHREADS != (size_t)w->id)
					continue;
				if (memcmp(buf + k, ref + po + k, BLK)) {
					report(ru, (long long)(po + k), 3);
					break;
				}
			}
			break;
		}
		case 9: { /* write every own word of one line in a region page */
			size_t po = off & ~(ru->ps - 1);
			size_t n = po + ru->ps <= ru->len ? ru->ps : ru->len - po;
			size_t line = (tu_rnd(&s) % (BLK / 64)) * 64;
			for (size_t k = 0; k < n; k += BLK) {
				if (((po + k) / BLK) % NTHREADS != (size_t)w->id)
					continue;
				uint64_t v = tu_rnd(&s);
				*(volatile uint64_t *)(ru->base + po + k + line) = v;
				memcpy(ref + po + k + line, &v, 8);
			}
			break;
		}
		}
	}
	free(buf);
	return NULL;
}

static int run_threads(unsigned char *base, size_t len, size_t ps, unsigned ops, uint64_t seed,
		       long long *bad, int *kind)
{
	struct run ru = { .base = base, .len = len, .ps = ps, .ops = ops, .seed = seed };
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];

	atomic_store(&ru.bad, -1);
	for (int i = 0; i < NTHREADS; i++) {
		w[i].run = &ru;
		w[i].id = i;
		if (pthread_create(&t[i], NULL, worker_main, &w[i]))
			return -1;
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	*bad = atomic_load(&ru.bad);
	*kind = atomic_load(&ru.bad_kind);
	return 0;
}

struct cfg {
	size_t ps;
	const char *policy;
	size_t budget;
	unsigned ops; /* per thread, per phase */
	int flags;    /* HM_CACHED, or with HM_HUGETLB */
};

/* Why HM_HUGETLB cases skip, if they do (the pool is set up in main). */
static char hugetlb_why[256];

static void integrity(const struct cfg *cf)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	long long bad;
	int kind;
	unsigned ops = cf->ops / ops_scale;

	if ((cf->flags & HM_HUGETLB) && hugetlb_why[0])
		SKIP("%s", hugetlb_why);
	CHECKF(hm_cache_new(&c, cf->budget, cf->policy) == 0, "%s", hm_errormsg());
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 0, file_len, PROT_READ | PROT_WRITE, cf->flags, cf->ps) == 0,
	       "%s", hm_errormsg());

	/* Phase 1: random traffic, then MS_SYNC and the file on disk. */
	CHECK(run_threads(hm_region_addr(r), file_len, cf->ps, ops, cf->ps ^ cf->budget, &bad,
			  &kind) == 0);
	CHECKF(bad == -1, "phase 1: wrong data at offset %lld (check %d)", bad, kind);
	CHECKF(hm_sync(hm_region_addr(r), file_len, MS_SYNC) == 0, "%s", hm_errormsg());
	bad = tu_cmp_file(path, ref, file_len);
	CHECKF(bad == -1, "after MS_SYNC the file differs at %lld", bad);
	CHECK(hm_cache_stats(c, &st) == 0);
	CHECKF(st.evictions > 0 && st.writebacks > 0 && st.misses > 0,
	       "evictions %llu writebacks %llu misses %llu", (unsigned long long)st.evictions,
	       (unsigned long long)st.writebacks, (unsigned long long)st.misses);
	CHECK(st.resident_bytes <= cf->budget);
	CHECK(st.writeback_errors == 0 && st.read_errors == 0);

	/* Phase 2: more traffic, no sync; unmap writes back. */
	CHECK(run_threads(hm_region_addr(r), file_len, cf->ps, ops / 2, cf->ps + 1, &bad,
			  &kind) == 0);
	CHECKF(bad == -1, "phase 2: wrong data at offset %lld (check %d)", bad, kind);
	CHECKF(hm_region_unmap(r) == 0, "%s", hm_errormsg());
	bad = tu_cmp_file(path, ref, file_len);
	CHECKF(bad == -1, "after unmap the file differs at %lld", bad);

	/* Map again: everything reads back through the mapping. */
	CHECK(hm_region_map(&r, c, s, 0, file_len, PROT_READ, cf->flags, cf->ps) == 0);
	bad = tu_cmp_mem(hm_region_addr(r), ref, file_len);
	CHECKF(bad == -1, "after remap the mapping differs at %lld", bad);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* The mmap-shaped calls on the default cache (HMMAP_CACHE_SIZE=4M). */
static void test_hmmap_calls(void)
{
	unsigned char *p;
	long long bad;
	int kind;
	unsigned ops = 3000 / ops_scale;

	p = hmmap(NULL, file_len, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(run_threads(p, file_len, 4096, ops, 99, &bad, &kind) == 0);
	CHECKF(bad == -1, "wrong data at offset %lld (check %d)", bad, kind);
	CHECKF(hmsync(p, file_len, MS_SYNC) == 0, "%s", hm_errormsg());
	bad = tu_cmp_file(path, ref, file_len);
	CHECKF(bad == -1, "after hmsync the file differs at %lld", bad);
	CHECK(run_threads(p, file_len, 4096, ops / 2, 100, &bad, &kind) == 0);
	CHECKF(bad == -1, "wrong data at offset %lld (check %d)", bad, kind);
	CHECKF(hmunmap(p, file_len) == 0, "%s", hm_errormsg());
	bad = tu_cmp_file(path, ref, file_len);
	CHECKF(bad == -1, "after hmunmap the file differs at %lld", bad);
	/* Remapped at a free address asked for: there, as mmap places a hint. */
	void *hint = mmap(NULL, file_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(hint != MAP_FAILED);
	munmap(hint, file_len);
	p = hmmap(hint, file_len, PROT_READ, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECKF((void *)p == hint, "mapped at %p, asked for %p", (void *)p, hint);
	bad = tu_cmp_mem(p, ref, file_len);
	CHECKF(bad == -1, "after remap the mapping differs at %lld", bad);
	/* A hint over a mapping in use is only a hint: elsewhere, nothing clobbered. */
	unsigned char *q = hmmap(p, 4096, PROT_READ, HM_CACHED, path, 0);
	CHECKF(q != MAP_FAILED && q != p, "%p", (void *)q);
	if (q != MAP_FAILED)
		CHECK(hmunmap(q, 4096) == 0);
	bad = tu_cmp_mem(p, ref, file_len);
	CHECKF(bad == -1, "after a second map the first differs at %lld", bad);
	CHECK(hmunmap(p, file_len) == 0);
}

/*
 * hm_sync() racing with eviction: one thread writes every page of a region
 * four times its cache once, while another syncs the region over and over;
 * then every page must read back what was written. A sync's dirty-page scan
 * consumes the kernel's "written" state of the pages it finds; before the
 * region's harvest lock, one that fell between an eviction's zap and scan
 * took that state from a page being evicted, the eviction found the page
 * clean and freed it, and a whole eviction batch read back as zeros in about
 * one run of six.
 */
struct syncer {
	unsigned char *p;
	size_t len;
	atomic_int stop;
	long syncs;
};

static void *syncer_main(void *arg)
{
	struct syncer *s = arg;

	while (!atomic_load(&s->stop))
		if (hm_sync(s->p, s->len, MS_ASYNC) == 0)
			s->syncs++;
	return NULL;
}

static void test_sync_races_eviction(void)
{
	const size_t len = 16u << 20, page = 4096;
	int iters = tu_sanitizer() ? 12 : 30, lost = 0;
	long syncs = 0;

	for (int it = 0; it < iters && !lost; it++) {
		struct hm_store *s;
		struct hm_cache *c;
		struct hm_region *r;
		struct syncer sy = { 0 };
		pthread_t t;
		char uri[64];
		long long bad = -1;

		snprintf(uri, sizeof uri, "mem:%zu", len);
		CHECK(hm_store_open(&s, uri, 0) == 0);
		CHECK(hm_cache_new(&c, len / 4, "clock") == 0);
		CHECKF(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, page) == 0,
		       "%s", hm_errormsg());
		sy.p = hm_region_addr(r);
		sy.len = len;
		CHECK(pthread_create(&t, NULL, syncer_main, &sy) == 0);
		for (size_t pg = 0; pg < len / page; pg++)
			*(volatile uint64_t *)(sy.p + pg * page) = ((uint64_t)it << 32) | (pg + 1);
		atomic_store(&sy.stop, 1);
		pthread_join(t, NULL);
		syncs += sy.syncs;
		CHECKF(hm_sync(sy.p, len, MS_SYNC) == 0, "%s", hm_errormsg());
		CHECKF(hm_advise(sy.p, len, HM_ADV_DONTNEED) == 0, "%s", hm_errormsg());
		for (size_t pg = 0; pg < len / page && bad < 0; pg++)
			if (*(volatile uint64_t *)(sy.p + pg * page) != (((uint64_t)it << 32) | (pg + 1)))
				bad = (long long)pg;
		CHECKF(bad < 0, "run %d: page %lld lost its write", it, bad);
		lost += bad >= 0;
		CHECK(hm_region_unmap(r) == 0);
		CHECK(hm_cache_free(c) == 0);
		CHECK(hm_store_close(s) == 0);
	}
	CHECKF(syncs > iters, "the syncer ran only %ld times", syncs);
}

/*
 * Everything at once on one region four times its cache: two threads write
 * their own pages at random (remembering the last value of each), one
 * syncs the region over and over, one drops random small ranges with
 * DONTNEED, and the sampler unmaps pages for hint faults; then every page
 * must read back its last write. Before the harvest lock it lost a page in
 * about one run of three.
 */
struct chaos {
	unsigned char *p;
	size_t len, page;
	atomic_int stop;
	uint64_t *last; /* per 4 KiB block: the value its writer put last */
};

struct chaos_writer {
	struct chaos *c;
	unsigned id;
};

static uint64_t chaos_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *chaos_write(void *arg)
{
	struct chaos_writer *w = arg;
	struct chaos *c = w->c;
	uint64_t s = tu_seed(0x9E3779B97F4A7C15ull * (w->id + 1)), gen = 1;
	size_t nblk = c->len / BLK;

	while (!atomic_load(&c->stop)) {
		size_t b = (size_t)(chaos_next(&s) % nblk);
		if (b % 2 != w->id)
			continue;
		uint64_t v = (gen++ << 24) | b;
		*(volatile uint64_t *)(c->p + b * BLK) = v;
		c->last[b] = v;
	}
	return NULL;
}

static void *chaos_sync(void *arg)
{
	struct chaos *c = arg;

	while (!atomic_load(&c->stop))
		hm_sync(c->p, c->len, MS_ASYNC);
	return NULL;
}

static void *chaos_drop(void *arg)
{
	struct chaos *c = arg;
	uint64_t s = tu_seed(12345);
	size_t npages = c->len / c->page;

	while (!atomic_load(&c->stop)) {
		size_t pg = (size_t)(chaos_next(&s) % npages), n = 1 + chaos_next(&s) % 8;
		if (pg + n > npages)
			n = npages - pg;
		hm_advise(c->p + pg * c->page, n * c->page, HM_ADV_DONTNEED);
	}
	return NULL;
}

static void chaos_run(size_t page, int flags)
{
	struct chaos c = { .len = 16u << 20, .page = page };
	struct chaos_writer w[2];
	struct hm_store *s;
	struct hm_cache *cache;
	struct hm_region *r;
	pthread_t t[4];
	char uri[64];
	long long bad = -1;

	c.last = calloc(c.len / BLK, sizeof *c.last);
	CHECK(c.last);
	snprintf(uri, sizeof uri, "mem:%zu", c.len);
	CHECK(hm_store_open(&s, uri, 0) == 0);
	CHECK(hm_cache_new(&cache, c.len / 4, "clock") == 0);
	CHECKF(hm_region_map(&r, cache, s, 0, c.len, PROT_READ | PROT_WRITE, flags, page) == 0,
	       "%s", hm_errormsg());
	c.p = hm_region_addr(r);
	for (unsigned i = 0; i < 2; i++) {
		w[i] = (struct chaos_writer){ &c, i };
		CHECK(pthread_create(&t[i], NULL, chaos_write, &w[i]) == 0);
	}
	CHECK(pthread_create(&t[2], NULL, chaos_sync, &c) == 0);
	CHECK(pthread_create(&t[3], NULL, chaos_drop, &c) == 0);
	struct timespec ts = { 1, 500 * 1000 * 1000 };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	atomic_store(&c.stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECKF(hm_sync(c.p, c.len, MS_SYNC) == 0, "%s", hm_errormsg());
	CHECKF(hm_advise(c.p, c.len, HM_ADV_DONTNEED) == 0, "%s", hm_errormsg());
	for (size_t b = 0; b < c.len / BLK && bad < 0; b++)
		if (c.last[b] && *(volatile uint64_t *)(c.p + b * BLK) != c.last[b])
			bad = (long long)b;
	CHECKF(bad < 0, "page size %zu: block %lld lost its last write", page, bad);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(cache) == 0);
	CHECK(hm_store_close(s) == 0);
	free(c.last);
}

static void test_writers_sync_drop_sample(void)
{
	chaos_run(4096, HM_CACHED);
	chaos_run(65536, HM_CACHED);
	chaos_run(2u << 20, HM_CACHED); /* huge tmpfs frames as root (test_thp_frames) */
}

static void test_writers_sync_drop_sample_hugetlb(void)
{
	if (hugetlb_why[0])
		SKIP("%s", hugetlb_why);
	chaos_run(2u << 20, HM_CACHED | HM_HUGETLB);
}

#define CFG(name, ps, pol, budget, ops)                                                  \
	static void name(void)                                                           \
	{                                                                                \
		static const struct cfg cf = { ps, pol, budget, ops, HM_CACHED };        \
		integrity(&cf);                                                          \
	}

CFG(test_4k_fifo, 4096, "fifo", 4 << 20, 3000)
CFG(test_4k_clock, 4096, "clock", 4 << 20, 3000)
CFG(test_4k_lru, 4096, "lru", 4 << 20, 1500)
CFG(test_4k_s3fifo, 4096, "s3fifo", 4 << 20, 1500)
CFG(test_4k_sieve, 4096, "sieve", 4 << 20, 1500)
CFG(test_4k_arc, 4096, "arc", 4 << 20, 1500)
CFG(test_64k_fifo, 65536, "fifo", 4 << 20, 1500)
CFG(test_64k_clock, 65536, "clock", 4 << 20, 1500)
CFG(test_64k_2q, 65536, "2q", 4 << 20, 1000)
CFG(test_64k_lirs, 65536, "lirs", 4 << 20, 1000)
CFG(test_2m_fifo, 2 << 20, "fifo", 16 << 20, 200)
CFG(test_2m_clock, 2 << 20, "clock", 16 << 20, 200)

/* Frames from the huge page pool (HM_HUGETLB). */
#define CFGH(name, pol, budget, ops)                                                     \
	static void name(void)                                                           \
	{                                                                                \
		static const struct cfg cf = { 2 << 20, pol, budget, ops,                \
					       HM_CACHED | HM_HUGETLB };                 \
		integrity(&cf);                                                          \
	}

CFGH(test_2m_hugetlb_fifo, "fifo", 16 << 20, 200)
CFGH(test_2m_hugetlb_s3fifo, "s3fifo", 16 << 20, 200)

static int mode_child(void *arg)
{
	const char *mode = arg;
	int want = !strcmp(mode, "sigbus") ? HM_FAULT_SIGBUS : HM_FAULT_THREAD;

	if (hm_fault_mode() != want) {
		printf("fault mode %d, not %s: %s\n", hm_fault_mode(), mode, hm_errormsg());
		return 1;
	}
	RUN(test_4k_fifo);
	RUN(test_4k_clock);
	RUN(test_4k_lru);
	RUN(test_4k_s3fifo);
	RUN(test_4k_sieve);
	RUN(test_4k_arc);
	RUN(test_64k_fifo);
	RUN(test_64k_clock);
	RUN(test_64k_2q);
	RUN(test_64k_lirs);
	RUN(test_2m_fifo);
	RUN(test_2m_clock);
	RUN(test_2m_hugetlb_fifo);
	RUN(test_2m_hugetlb_s3fifo);
	RUN(test_hmmap_calls);
	RUN(test_sync_races_eviction);
	RUN(test_writers_sync_drop_sample);
	RUN(test_writers_sync_drop_sample_hugetlb);
	return test_done();
}

static void test_thread_mode(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=thread", "HMMAP_CACHE_SIZE=4M",
			      "HMMAP_PAGE_SIZE=4K", "HMMAP_POLICY=clock", NULL };

	TU_CHILD_RESULT(tu_child(env, mode_child, "thread"));
}

static void test_sigbus_mode(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=sigbus", "HMMAP_CACHE_SIZE=4M",
			      "HMMAP_PAGE_SIZE=4K", "HMMAP_POLICY=fifo", NULL };

	TU_CHILD_RESULT(tu_child(env, mode_child, "sigbus"));
}

/* Thread mode with a handler polling for the next fault (HMMAP_FAULT_SPIN). */
static void test_thread_mode_polling(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=thread", "HMMAP_FAULT_SPIN=200",
			      "HMMAP_CACHE_SIZE=4M", "HMMAP_PAGE_SIZE=4K", "HMMAP_POLICY=s3fifo",
			      NULL };

	TU_CHILD_RESULT(tu_child(env, mode_child, "thread"));
}

int main(void)
{
	file_len = 64u << 20;
	if (tu_sanitizer()) {
		/* Same coverage, less traffic: sanitizers cost 3-10x. */
		ops_scale = 4;
		file_len = 32u << 20;
	}
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	ref = tu_make_file(path, file_len, 42);
	if (!ref) {
		printf("cannot create %s\n", path);
		return 1;
	}
	/* 16 MiB budgets of 2 MiB pages, and the chaos test's 4 MiB. */
	tu_hugetlb_pool(16, hugetlb_why, sizeof hugetlb_why);
	RUN(test_thread_mode);
	/*
	 * The reference the thread child updated lived in the child; the
	 * sigbus child starts from the file as it was left (checked there).
	 */
	int fd = open(path, O_RDONLY);
	if (fd < 0 || tu_read_all(fd, ref, file_len, 0))
		return 1;
	close(fd);
	RUN(test_sigbus_mode);
	fd = open(path, O_RDONLY);
	if (fd < 0 || tu_read_all(fd, ref, file_len, 0))
		return 1;
	close(fd);
	RUN(test_thread_mode_polling);
	free(ref);
	tu_cleanup();
	return test_done();
}
