/* SPDX-License-Identifier: MIT */
/*
 * The page-state machine through the internal calls, and the metadata
 * bound: at most 16 bytes per page of mapping, allocated only where touched,
 * so that a 1 TiB sparse mapping costs under 64 MiB before any touch.
 *
 * The sampler is off (HMMAP_SAMPLE_RATE=0) so that nothing else holds a
 * page BUSY while a case checks its state.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

/*
 * The page's state once the thread that owns a transition has finished it:
 * in thread mode the faulting thread may resume before its handler marks
 * the page RESIDENT.
 */
static uint32_t state(struct hm_region *r, uint64_t idx)
{
	struct hm_page *p = hm__page(r, idx, false);
	uint32_t st;

	if (!p)
		return 0xffu;
	while ((st = atomic_load(&p->st) & HM_ST_MASK) == HM_ST_LOADING ||
	       st == HM_ST_EVICTING)
		sched_yield();
	return st;
}

static uint32_t flags(struct hm_region *r, uint64_t idx)
{
	struct hm_page *p = hm__page(r, idx, false);

	return p ? atomic_load(&p->st) & ~HM_ST_MASK : 0;
}

static size_t chunks(struct hm_region *r)
{
	size_t n = 0;

	for (size_t d = 0; d < r->ndir; d++)
		if (atomic_load(&r->dir[d]))
			n++;
	return n;
}

static void test_metadata_size(void)
{
	/* The bound: 16 bytes per page of mapping at most. */
	CHECK(sizeof(struct hm_page) <= 16);
	CHECK(HM_CHUNK_PAGES * sizeof(struct hm_page) <= (64u << 10));
}

/* A fresh region has no chunk; touching page N allocates N's chunk only. */
static void test_lazy_chunks(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	const uint64_t len = 1ull << 30; /* 262144 pages, 64 chunks */
	volatile char *b;

	CHECK(hm_cache_new(&c, 4 << 20, "fifo") == 0);
	CHECK(hm_store_open(&s, "mem:1G", 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0,
	       "%s", hm_errormsg());
	b = hm_region_addr(r);
	CHECK(r->npages == len / 4096);
	CHECK(r->ndir == (r->npages + HM_CHUNK_PAGES - 1) / HM_CHUNK_PAGES);
	CHECK(chunks(r) == 0);
	CHECK(hm__page(r, 0, false) == NULL);
	CHECK(hm__page(r, r->npages - 1, false) == NULL);
	CHECK(hm__page(r, r->npages, true) == NULL); /* past the end */

	/* Page in the middle of chunk 10: only that chunk appears. */
	uint64_t n = 10 * (uint64_t)HM_CHUNK_PAGES + 77;
	(void)b[n * 4096];
	CHECK(chunks(r) == 1);
	CHECK(atomic_load(&r->dir[10]) != NULL);
	CHECK(state(r, n) == HM_ST_RESIDENT);
	/* Readahead stays inside the region, and maybe the next chunk; no further. */
	CHECK(hm__page(r, 0, false) == NULL);

	/* The last page of the region. */
	(void)b[len - 1];
	CHECK(atomic_load(&r->dir[r->ndir - 1]) != NULL);
	CHECK(chunks(r) == 2);
	CHECK(state(r, r->npages - 1) == HM_ST_RESIDENT);

	/* A sync of the whole region does not allocate chunks. */
	CHECK(hm_sync(hm_region_addr(r), len, MS_SYNC) == 0);
	CHECK(hm_advise(hm_region_addr(r), len, HM_ADV_DONTNEED) == 0);
	CHECK(chunks(r) == 2);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* EMPTY -> LOADING -> RESIDENT -> (dirty) -> EVICTING -> EMPTY, via the calls. */
static void test_transitions(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	char *b;

	CHECK(hm_cache_new(&c, 1 << 20, "clock") == 0);
	CHECK(hm_store_open(&s, "mem:4M", 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, 4 << 20, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0);
	b = hm_region_addr(r);

	/* populate: EMPTY -> RESIDENT, clean. */
	CHECK(hm__populate(r, 5, 1, false, false) == 0);
	CHECK(state(r, 5) == HM_ST_RESIDENT);
	CHECK(!(flags(r, 5) & (HM_PG_DIRTY | HM_PG_PINNED)));
	CHECK(state(r, 4) == HM_ST_EMPTY && state(r, 6) == HM_ST_EMPTY);

	/* A write is found by the harvest. */
	b[5 * 4096 + 1] = 9;
	CHECK(hm__harvest(r, 0, r->npages) == 0);
	CHECK(flags(r, 5) & HM_PG_DIRTY);
	/* Sync cleans it, the page stays. */
	CHECK(hm__region_sync(r, 0, r->npages, true) == 0);
	CHECK(state(r, 5) == HM_ST_RESIDENT);
	CHECK(!(flags(r, 5) & HM_PG_DIRTY));
	CHECK(hm_region_stats(r, &st) == 0 && st.writebacks == 1 && st.dirty_pages == 0);

	/* A clean drop: RESIDENT -> EMPTY without a write-back. */
	CHECK(hm__cache_drop_range(c, r, 5, 1, false) == 0);
	CHECK(state(r, 5) == HM_ST_EMPTY);
	CHECK(hm_region_stats(r, &st) == 0 && st.writebacks == 1 && st.resident_bytes == 0);
	/* The data came back from the store. */
	CHECK(b[5 * 4096 + 1] == 9);
	CHECK(state(r, 5) == HM_ST_RESIDENT);

	/* A dirty drop writes back first. */
	b[5 * 4096 + 2] = 10;
	CHECK(hm__cache_drop_range(c, r, 5, 1, false) == 0);
	CHECK(state(r, 5) == HM_ST_EMPTY);
	CHECK(hm_region_stats(r, &st) == 0 && st.writebacks == 2);
	/* clean_only leaves a dirty page alone. */
	b[5 * 4096 + 3] = 11;
	CHECK(hm__harvest(r, 5, 1) == 0);
	CHECK(hm__cache_drop_range(c, r, 5, 1, true) == 0);
	CHECK(state(r, 5) == HM_ST_RESIDENT && (flags(r, 5) & HM_PG_DIRTY));

	/* Pin: out of the policy; an EMPTY page cannot be pinned. */
	CHECK(hm__cache_pin(c, r, 5) == 0);
	CHECK(flags(r, 5) & HM_PG_PINNED);
	CHECK(hm__cache_pin(c, r, 5) == 0); /* twice is once */
	CHECK(hm_cache_stats(c, &st) == 0 && st.pinned_pages == 1);
	CHECK(hm__cache_drop_range(c, r, 5, 1, false) == 0);
	CHECK(state(r, 5) == HM_ST_RESIDENT); /* pinned pages are not dropped */
	CHECK(hm__cache_pin(c, r, 100) == -EAGAIN);
	hm__cache_unpin(c, r, 5);
	CHECK(!(flags(r, 5) & HM_PG_PINNED));
	CHECK(hm_cache_stats(c, &st) == 0 && st.pinned_pages == 0);
	hm__cache_unpin(c, r, 5); /* unpinning an unpinned page is harmless */
	CHECK(hm_cache_stats(c, &st) == 0 && st.pinned_pages == 0);

	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* A read error leaves the page EMPTY (never RESIDENT, never stuck LOADING). */
static void test_read_error_state(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;

	CHECK(hm_cache_new(&c, 1 << 20, "fifo") == 0);
	CHECK(hm_store_open(&s, "fault:1M", 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0);
	CHECK(hm_store_ctl(s, "fail_read_at=12288") == 0);
	CHECK(hm__populate(r, 0, 8, false, false) < 0);
	CHECK(state(r, 3) == HM_ST_EMPTY);
	/* The good pages before the bad one are there. */
	CHECK(state(r, 0) == HM_ST_RESIDENT);
	CHECK(hm_region_stats(r, &st) == 0 && st.read_errors >= 1);
	CHECK(hm_cache_stats(c, &st) == 0 && st.resident_bytes == 3 * 4096);
	CHECK(hm_store_ctl(s, "fail_read_at=off") == 0);
	CHECK(hm__populate(r, 0, 8, false, false) == 0);
	for (uint64_t i = 0; i < 8; i++)
		CHECK(state(r, i) == HM_ST_RESIDENT);
	CHECK(hm_cache_stats(c, &st) == 0 && st.resident_bytes >= 8 * 4096);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* A failed write-back keeps the page RESIDENT and DIRTY. */
static void test_writeback_error_state(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	char *b;

	CHECK(hm_cache_new(&c, 1 << 20, "fifo") == 0);
	CHECK(hm_store_open(&s, "fault:1M", 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0);
	b = hm_region_addr(r);
	b[2 * 4096] = 1;
	CHECK(hm_store_ctl(s, "fail_write") == 0);
	CHECK(hm__cache_drop_range(c, r, 0, 16, false) < 0);
	CHECK(state(r, 2) == HM_ST_RESIDENT);
	CHECK(flags(r, 2) & HM_PG_DIRTY);
	CHECK(hm__region_sync(r, 0, r->npages, true) < 0);
	CHECK(flags(r, 2) & HM_PG_DIRTY);
	CHECK(hm_region_stats(r, &st) == 0 && st.writeback_errors >= 2 && st.dirty_pages == 1);
	CHECK(hm_store_ctl(s, "fail_write=off") == 0);
	CHECK(hm__region_sync(r, 0, r->npages, true) == 0);
	CHECK(!(flags(r, 2) & HM_PG_DIRTY));
	CHECK(hm__cache_drop_range(c, r, 0, 16, false) == 0);
	CHECK(state(r, 2) == HM_ST_EMPTY);
	CHECK(b[2 * 4096] == 1);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/*
 * 1 TiB of sparse store mapped read/write with 4 KiB pages: the resident
 * size grows by less than 64 MiB before any touch and after a few touches.
 */
static void sparse_tib(const char *uri)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	const uint64_t tib = 1ull << 40;
	uint64_t before, mapped, touched;
	volatile char *b;

	bool tsan = getenv("HMMAP_TEST_SANITIZER") && !strcmp(getenv("HMMAP_TEST_SANITIZER"), "tsan");
	CHECK(hm_cache_new(&c, 8 << 20, "clock") == 0);
	int orc = hm_store_open(&s, uri, 0);
	if (orc == -ENOMEM && tsan) {
		/* TSan's fixed memory layout leaves no room for 1 TiB of address space. */
		hm_cache_free(c);
		SKIP("ThreadSanitizer cannot reserve 1 TiB of address space");
	}
	CHECKF(orc == 0, "%s: %s", uri, hm_errormsg());
	CHECK(hm_store_size(s) == tib);
	before = tu_rss();
	CHECK(before > 0);
	int rc = hm_region_map(&r, c, s, 0, tib, PROT_READ | PROT_WRITE, HM_CACHED, 4096);
	if (rc == -ENOMEM && tsan) {
		/* TSan's fixed memory layout leaves no room for a 1 TiB mapping. */
		hm_store_close(s);
		hm_cache_free(c);
		SKIP("ThreadSanitizer cannot map 1 TiB of address space");
	}
	CHECKF(rc == 0, "%s", hm_errormsg());
	mapped = tu_rss();
	CHECKF(mapped < before + (64ull << 20), "mapping 1 TiB grew RSS by %llu KiB",
	       (unsigned long long)((mapped - before) >> 10));
	b = hm_region_addr(r);
	for (int i = 0; i < 16; i++) {
		uint64_t off = (tib / 16) * (uint64_t)i + 4096 * (uint64_t)i;
		b[off] = (char)(i + 1);
	}
	CHECK(chunks(r) <= 32);
	touched = tu_rss();
	CHECKF(touched < before + (64ull << 20), "touching grew RSS by %llu KiB",
	       (unsigned long long)((touched - before) >> 10));
	CHECK(hm_sync(hm_region_addr(r), tib, MS_SYNC) == 0);
	CHECK(hm_advise(hm_region_addr(r), tib, HM_ADV_DONTNEED) == 0);
	for (int i = 0; i < 16; i++) {
		uint64_t off = (tib / 16) * (uint64_t)i + 4096 * (uint64_t)i;
		CHECK(b[off] == (char)(i + 1));
	}
	CHECKF(tu_rss() < before + (64ull << 20), "RSS grew by %llu KiB",
	       (unsigned long long)((tu_rss() - before) >> 10));
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/*
 * hm_unpin() over a sparse region of 2^32 pages (16 TiB) unpins the one
 * page pinned. It asked the cache about every page and took 11.6 s here;
 * it now skips chunks never touched (a cost measured, not asserted).
 */
static void test_sparse_unpin(void)
{
	const uint64_t len = 1ull << 44;
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;

	CHECK(hm_cache_new(&c, 8 << 20, "clock") == 0);
	int rc = hm_store_open(&s, "mem:16T", 0);
	if (rc == -ENOMEM && tu_under("tsan")) {
		hm_cache_free(c);
		SKIP("ThreadSanitizer cannot reserve 16 TiB of address space");
	}
	CHECKF(rc == 0, "%s", hm_errormsg());
	rc = hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096);
	if (rc == -ENOMEM && tu_under("tsan")) {
		/* TSan's fixed memory layout leaves no room for such a mapping. */
		hm_store_close(s);
		hm_cache_free(c);
		SKIP("ThreadSanitizer cannot map 16 TiB of address space");
	}
	CHECKF(rc == 0, "%s", hm_errormsg());
	char *p = hm_region_addr(r);
	p[len - 4096] = 1;
	CHECKF(hm_prefault(p + len - 4096, 4096, HM_PREFAULT_PIN) == 0, "%s", hm_errormsg());
	CHECK(hm_region_stats(r, &st) == 0 && st.pinned_pages == 1);
	CHECK(hm_unpin(p, len) == 0);
	CHECK(hm_region_stats(r, &st) == 0 && st.pinned_pages == 0);
	CHECK(p[len - 4096] == 1);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/*
 * Chunks hmunmap() took out whole share one chunk of GONE pages. A walk
 * (hm__page() without alloc) sees them absent, so it skips 4096 pages at
 * a time instead of going through that chunk entry by entry; the fault
 * path (with alloc) still finds each page there and GONE.
 */
static void test_gone_chunk_skipped(void)
{
	const size_t len = 4 * ((size_t)HM_CHUNK_PAGES << 12);
	unsigned char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, "mem:64M", 0);
	struct hm_region *r;

	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	if (t_case_failed)
		return;
	p[0] = 1;
	p[len - 1] = 2;
	r = hm_region_find(p);
	CHECK(r != NULL);
	/* Chunks 1 and 2 go whole; chunk 0 and 3 stay. */
	CHECKF(hmunmap(p + len / 4, len / 2) == 0, "%s", hm_errormsg());
	for (uint64_t i = HM_CHUNK_PAGES; r && i < 3 * (uint64_t)HM_CHUNK_PAGES; i += 1000)
		CHECKF(hm__page(r, i, false) == NULL, "page %llu of a chunk unmapped whole is "
		       "there for a walk", (unsigned long long)i);
	struct hm_page *g = r ? hm__page(r, HM_CHUNK_PAGES + 7, true) : NULL;
	CHECK(g && (atomic_load(&g->st) & HM_ST_MASK) == HM_ST_GONE);
	CHECK(r && hm__page(r, 0, false) != NULL);
	CHECK(p[0] == 1 && p[len - 1] == 2);
	CHECK(hmunmap(p, len) == 0);
}

static void test_sparse_tib_mem(void)
{
	sparse_tib("mem:1T");
}

static void test_sparse_tib_file(void)
{
	char path[512], uri[600];
	int fd;

	tu_path(path, sizeof path, "sparse");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	if (ftruncate(fd, (off_t)1 << 40)) {
		close(fd);
		unlink(path);
		SKIP("this file system cannot hold a 1 TiB sparse file");
	}
	close(fd);
	snprintf(uri, sizeof uri, "file:%s", path);
	sparse_tib(uri);
	unlink(path);
}

int main(void)
{
	/*
	 * No sampler: it holds resident pages BUSY for a moment, and a drop
	 * skips a BUSY page, which would make the state checks racy.
	 */
	setenv("HMMAP_SAMPLE_RATE", "0", 1);
	if (!tu_tmpdir())
		return 1;
	RUN(test_metadata_size);
	RUN(test_lazy_chunks);
	RUN(test_transitions);
	RUN(test_read_error_state);
	RUN(test_writeback_error_state);
	RUN(test_sparse_tib_mem);
	RUN(test_sparse_tib_file);
	RUN(test_sparse_unpin);
	RUN(test_gone_chunk_skipped);
	tu_cleanup();
	return test_done();
}
