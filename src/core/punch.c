/* SPDX-License-Identifier: MIT */
/*
 * Partial unmaps: hmunmap() of part of a region, as munmap(2) allows.
 *
 * The range leaves the region but the region stays one object: its pages
 * become GONE (a page state nothing leaves) and its addresses PROT_NONE,
 * so a touch gets SIGSEGV as after munmap(). The range stays reserved (and
 * registered with userfaultfd) until the whole region is unmapped: nothing
 * else can be mapped where a prefetch worker, the evictor or the tiering
 * engine of this region might still act, and every walk of the region
 * (PAGEMAP_SCAN) still meets only registered memory.
 *
 * The order keeps data and makes every concurrent path meet a GONE page:
 *   1. PROT_NONE: no new access; writes made so far are in the PTEs, which
 *      the drop's harvest still reads.
 *   2. Readahead cancelled; then, until every page is GONE: hot pages and
 *      pins released, EMPTY pages made GONE (a claim needs EMPTY), the rest
 *      dropped: written back to the store, or for anonymous memory (the
 *      chain hmmap() made for the region) discarded.
 *   3. The range joins the region's holes: hm_sync(), hm_advise(),
 *      hm_prefault(), hm_bind() and hm_move() treat it as unmapped.
 * A write-back that fails undoes it all: the range is mapped and readable
 * again, its pages dirty in the cache as before, and hmunmap() says why.
 *
 * An HM_DIRECT region has no cache: its part is closed, its written pages
 * counted, its page-table entries dropped, and it joins the holes. An
 * HM_HYBRID region's part first has its pages held in DRAM written back to
 * the medium, and is then unmapped as a direct part.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "core/direct.h"
#include "core/tier.h"

/* Passes of the drop before a range that keeps being loaded is given up. */
#define PUNCH_PASSES 200

/* Index of the first hole that ends after page idx (holes_lock held). */
static uint32_t hole_after(const struct hm_region *r, uint64_t idx)
{
	uint32_t lo = 0, hi = r->nholes;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (r->holes[mid].first + r->holes[mid].n <= idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t hm__region_hole_pages(struct hm_region *r, uint64_t idx, uint64_t n)
{
	uint64_t end = idx + n, got = 0;

	pthread_mutex_lock(&r->holes_lock);
	for (uint32_t h = hole_after(r, idx); h < r->nholes && r->holes[h].first < end; h++) {
		uint64_t a = r->holes[h].first > idx ? r->holes[h].first : idx;
		uint64_t b = r->holes[h].first + r->holes[h].n;
		got += (b < end ? b : end) - a;
	}
	pthread_mutex_unlock(&r->holes_lock);
	return got;
}

bool hm__region_holed(struct hm_region *r, uint64_t idx, uint64_t n)
{
	return n && hm__region_hole_pages(r, idx, n) > 0;
}

bool hm__region_holed_at(struct hm_region *r, uintptr_t a, uintptr_t end)
{
	uintptr_t base = (uintptr_t)r->base, rend = base + r->span;

	if (a < base)
		a = base;
	if (end > rend)
		end = rend;
	if (a >= end)
		return false;
	uint64_t first = (a - base) >> r->ps_shift, last = (end - 1 - base) >> r->ps_shift;
	return hm__region_holed(r, first, last - first + 1);
}

bool hm__region_next_piece(struct hm_region *r, uint64_t *idx, uint64_t end, uint64_t *n)
{
	uint64_t at = *idx;
	bool found = false;

	pthread_mutex_lock(&r->holes_lock);
	uint32_t h = hole_after(r, at);
	if (h < r->nholes && r->holes[h].first <= at) {
		at = r->holes[h].first + r->holes[h].n;
		h++;
	}
	if (at < end) {
		uint64_t stop = h < r->nholes && r->holes[h].first < end ? r->holes[h].first : end;
		*idx = at;
		*n = stop - at;
		found = true;
	}
	pthread_mutex_unlock(&r->holes_lock);
	return found;
}

/* Adds [idx, idx+n), which overlaps no hole, merging with its neighbours. */
static int hole_add(struct hm_region *r, uint64_t idx, uint64_t n)
{
	pthread_mutex_lock(&r->holes_lock);
	uint32_t h = hole_after(r, idx);
	bool left = h > 0 && r->holes[h - 1].first + r->holes[h - 1].n == idx;
	bool right = h < r->nholes && r->holes[h].first == idx + n;

	if (left && right) {
		r->holes[h - 1].n += n + r->holes[h].n;
		memmove(&r->holes[h], &r->holes[h + 1], (r->nholes - h - 1) * sizeof *r->holes);
		r->nholes--;
	} else if (left) {
		r->holes[h - 1].n += n;
	} else if (right) {
		r->holes[h].first = idx;
		r->holes[h].n += n;
	} else {
		struct hm_hole *t = realloc(r->holes, (r->nholes + 1) * sizeof *t);
		if (!t) {
			pthread_mutex_unlock(&r->holes_lock);
			return hm__error(-ENOMEM, "out of memory");
		}
		r->holes = t;
		memmove(&r->holes[h + 1], &r->holes[h], (r->nholes - h) * sizeof *r->holes);
		r->holes[h].first = idx;
		r->holes[h].n = n;
		r->nholes++;
	}
	r->gone_pages += n;
	pthread_mutex_unlock(&r->holes_lock);
	return 0;
}

uint64_t hm__region_gone_pages(struct hm_region *r)
{
	pthread_mutex_lock(&r->holes_lock);
	uint64_t n = r->gone_pages;
	pthread_mutex_unlock(&r->holes_lock);
	return n;
}

/*
 * Releases the user's pins in [idx, idx+n): an unmapped page is not pinned,
 * and a chunk never touched is skipped whole (asking the cache about every
 * page made hm_unpin() of a sparse 32 TiB region take 32 s).
 */
void hm__unpin_range(struct hm_region *r, uint64_t idx, uint64_t n)
{
	for (uint64_t i = idx; i < idx + n; i++) {
		struct hm_page *p = hm__page(r, i, false);
		if (!p) {
			i |= HM_CHUNK_PAGES - 1;
			continue;
		}
		if (atomic_load(&p->st) & HM_PG_PINNED)
			hm__cache_unpin(r->cache, r, i);
	}
}

/*
 * An HM_DIRECT region's part: its pages are the medium's, so what was
 * written is there already. The written pages are counted (endurance) with
 * the range closed to writes, then the page-table entries go.
 *
 * An HM_HYBRID region's part first has its pages marked so that no write
 * takes one into DRAM again, and its pages held in DRAM written back to the
 * medium; then it is a direct part (read-only).
 */
static int punch_direct(struct hm_region *r, uint64_t idx, uint64_t n)
{
	char *a = r->base + (idx << r->ps_shift);
	size_t len = (size_t)n << r->ps_shift;
	bool hybrid = r->bam->hybrid != NULL;
	int rc;

	if (hybrid && (rc = hm__hybrid_gone(r, idx, n)))
		return hm__error_wrap(rc, "hmunmap: writing back the range failed");
	if (mprotect(a, len, PROT_NONE) < 0) {
		rc = hm__error_errno(-errno, "hmunmap: mprotect(%p, %zu)", (void *)a, len);
		goto undo_gone;
	}
	rc = hm__bam_sync(r, idx, n, 0);
	if (!rc && madvise(a, len, MADV_DONTNEED) < 0)
		rc = hm__error_errno(-errno, "hmunmap: madvise(MADV_DONTNEED)");
	if (!rc)
		rc = hole_add(r, idx, n);
	if (!rc)
		return 0;
	if (!hybrid)
		mprotect(a, len, r->prot);
undo_gone:
	if (hybrid)
		hm__hybrid_ungone(r, idx, n); /* and its protections */
	return rc;
}

int hm__region_punch(struct hm_region *r, uint64_t idx, uint64_t n)
{
	/* hmmap()'s own chain holds anonymous memory: what leaves is dropped. */
	bool discard = hm__chain_of(r->store) && r->own_store;
	char *a = r->base + (idx << r->ps_shift);
	size_t len = (size_t)n << r->ps_shift;
	int rc = 0;

	if (r->bam)
		return punch_direct(r, idx, n);

	if (mprotect(a, len, PROT_NONE) < 0)
		return hm__error_errno(-errno, "hmunmap: mprotect(%p, %zu)", (void *)a, len);
	hm__readahead_cancel(r);
	for (int pass = 0;; pass++) {
		hm__tier_forget(r, idx, n, false);
		hm__unpin_range(r, idx, n);
		int64_t left = hm__pages_gone(r, idx, n);
		if (left < 0) {
			rc = hm__error(-ENOMEM, "hmunmap: cannot allocate page metadata");
			break;
		}
		if (left == 0)
			break;
		if (pass == PUNCH_PASSES) {
			rc = hm__error(-EBUSY, "hmunmap: %lld pages of the range kept being loaded",
				       (long long)left);
			break;
		}
		rc = hm__cache_drop_range(r->cache, r, idx, n, discard ? HM_DROP_DISCARD : 0);
		if (rc) {
			rc = hm__error_wrap(rc, "hmunmap: writing back the range failed");
			break;
		}
	}
	if (!rc)
		rc = hole_add(r, idx, n);
	if (rc) {
		hm__pages_ungone(r, idx, n);
		mprotect(a, len, r->prot);
		return rc;
	}
	if (discard)
		hm__tier_forget(r, idx, n, true);
	return 0;
}
