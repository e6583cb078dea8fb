/* SPDX-License-Identifier: MIT */
/*
 * Write-back: harvesting dirty pages and writing them to the store.
 *
 * A page is dirty when its DIRTY flag is set (by a harvest, a write-protect
 * fault, or a failed write-back) or when its mapped PTE says it was written
 * since it was last write-protected. hm__harvest() folds the second into the
 * first and write-protects the pages again in the same system call, so a
 * write that happens after the harvest dirties the page anew.
 *
 * A page is written back while BUSY, so eviction leaves it alone and no two
 * syncs write it at once; DIRTY is cleared before the write and set again if
 * the write fails, so a failed page is never mistaken for a clean one.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "core/direct.h"

/*
 * PAGEMAP_SCAN callback: pages [addr, addr+len) of the region ctx were
 * written; record it on every page that holds data (not EMPTY).
 */
void hm__mark_written(void *ctx, uintptr_t addr, size_t len)
{
	struct hm_region *r = ctx;
	uint64_t first = (addr - (uintptr_t)r->base) >> r->ps_shift;
	uint64_t last = (addr + len - 1 - (uintptr_t)r->base) >> r->ps_shift;

	for (uint64_t i = first; i <= last; i++) {
		struct hm_page *p = hm__page(r, i, false);
		uint32_t st = p ? atomic_load(&p->st) : HM_ST_EMPTY;

		/*
		 * An asynchronous readahead marker has a frame but was never
		 * mapped: with neither a PTE nor a uffd-wp marker it looks
		 * written, yet nothing could have written it. Writing it back
		 * would cost the store a write (a remote round trip) for nothing.
		 */
		if ((st & (HM_PG_RAMARK | HM_PG_UNMAPPED)) == (HM_PG_RAMARK | HM_PG_UNMAPPED))
			continue;
		if ((st & HM_ST_MASK) != HM_ST_EMPTY && (st & HM_ST_MASK) != HM_ST_GONE) {
			uint32_t old = atomic_fetch_or(&p->st, HM_PG_DIRTY);
			/*
			 * Written, so reached (an unmapped readahead marker only
			 * looks written). So does a page still LOADING, not mapped
			 * yet: DIRTY costs it at most a write-back, but only a
			 * resident page can have been used.
			 */
			if ((old & (HM_PG_RA | HM_PG_RAMARK)) == HM_PG_RA &&
			    (old & HM_ST_MASK) == HM_ST_RESIDENT)
				hm__ra_used(r, p);
		}
	}
}

/*
 * The kernel unmapped a resident page that hmmap did not zap: reclaim
 * swapped the frame out (swap, MADV_PAGEOUT, a memory cgroup's limit).
 * It leaves a write-protected PTE as a uffd-wp marker, a written one as
 * nothing, which the present-only harvest cannot see; such a page is
 * written. It is marked DIRTY before it is protected again (a marker), so
 * a write in between is in the data the sync writes back, and the next
 * sync does not take it for written again.
 */
static void note_hole(void *ctx, uintptr_t addr, size_t len)
{
	*(bool *)ctx = true;
}

static void mark_reclaimed(void *ctx, uintptr_t addr, size_t len)
{
	struct hm_region *r = ctx;
	uint64_t first = (addr - (uintptr_t)r->base) >> r->ps_shift;
	uint64_t last = (addr + len - 1 - (uintptr_t)r->base) >> r->ps_shift;

	for (uint64_t i = first; i <= last; i++) {
		struct hm_page *p = hm__page(r, i, false);
		if (!p) {
			i = (i | (HM_CHUNK_PAGES - 1)); /* an absent chunk: nothing resident */
			continue;
		}
		uint32_t st = atomic_load(&p->st);
		/* hmmap's own zaps (samples, markers) were harvested when made. */
		if ((st & HM_ST_MASK) != HM_ST_RESIDENT || (st & HM_PG_UNMAPPED))
			continue;
		/*
		 * The walk saw the hole before this saw the page resident: a
		 * readahead worker may have mapped and finished loading it in
		 * between, and a clean page would be written back for nothing.
		 * Resident now, no load can map it any more, so a hole seen now
		 * is a page the kernel unmapped.
		 */
		uintptr_t a = (uintptr_t)r->base + (i << r->ps_shift);
		bool hole = false;
		if (hm__pagemap_holes(a, a + r->ps, note_hole, &hole) == 0 && !hole)
			continue;
		atomic_fetch_or(&p->st, HM_PG_DIRTY);
		hm__uffd_writeprotect(r->base + (i << r->ps_shift), r->ps, true);
	}
}

int hm__harvest(struct hm_region *r, uint64_t idx, uint64_t n)
{
	const struct hm_engine_info *info;
	int rc;

	if (!r->wp)
		return 0;
	rc = hm__engine_start(&info);
	if (rc)
		return rc;
	if (!info->wp_async)
		return 0; /* synchronous tracking: DIRTY is set by the faults */
	uintptr_t start = (uintptr_t)r->base + (idx << r->ps_shift);
	uintptr_t end = (uintptr_t)r->base + ((idx + n) << r->ps_shift);
	pthread_mutex_lock(&r->harvest_lock);
	rc = hm__pagemap_harvest(start, end, true, hm__mark_written, r);
	if (!rc && !(r->flags & HM_HUGETLB)) /* huge pages are never swapped */
		rc = hm__pagemap_holes(start, end, mark_reclaimed, r);
	pthread_mutex_unlock(&r->harvest_lock);
	return rc;
}

/*
 * Writes back held (BUSY, DIRTY cleared) pages [idx, idx+n); releases them.
 * The first failure is kept in *err; after it, the rest fail at once with
 * it and stay dirty, as msync(2) stops at the first error: a store that has
 * had its whole timeout would make a sync of k runs wait k timeouts.
 */
static void flush_run(struct hm_region *r, uint64_t idx, uint64_t n, int *err)
{
	int rc = *err ? *err : hm__writeback_run(r, idx, n);

	*err = rc;

	for (uint64_t i = idx; i < idx + n; i++) {
		struct hm_page *p = hm__page(r, i, false);
		if (rc)
			atomic_fetch_or(&p->st, HM_PG_DIRTY);
		uint32_t old = atomic_fetch_and(&p->st, ~(HM_PG_BUSY | HM_PG_WAITERS));
		if (old & HM_PG_WAITERS)
			hm__page_wake(r, i, 1);
	}
}

/*
 * Writes back every DIRTY page of [idx, idx+n) in runs. A page in a
 * transient state may be dirty without the pass being able to take it: one
 * being evicted (its PTE was zapped before the harvest could see it; the
 * eviction writes it back before it leaves), one held by another operation,
 * or one still LOADING although already mapped (in thread mode UFFDIO_COPY
 * wakes the application before the handler marks the page resident, so the
 * application may have written it and called hmsync already). The pass
 * waits for such a page to settle and looks again.
 */
static int sync_pass(struct hm_region *r, uint64_t idx, uint64_t n)
{
	const struct hm_engine_info *info;
	uint64_t run = 0, run_start = 0;
	const uint64_t max_run = (4u << 20) >> r->ps_shift; /* 4 MiB requests at most */
	int err = 0;
	bool sync_wp = r->wp && !hm__engine_start(&info) && !info->wp_async;

	for (uint64_t i = idx; i < idx + n; i++) {
		struct hm_page *p = hm__page(r, i, false);
		bool take = false;

		if (!p) {
			/* An absent chunk holds no page: skip it whole. */
			i = (i | (HM_CHUNK_PAGES - 1));
			if (run) {
				flush_run(r, run_start, run, &err);
				run = 0;
			}
			continue;
		}
		uint32_t st = atomic_load(&p->st);
		for (;;) {
			if ((st & HM_ST_MASK) == HM_ST_EVICTING ||
			    (st & HM_ST_MASK) == HM_ST_LOADING || (st & HM_PG_BUSY)) {
				/* Write out what we hold first: the owner may wait on it. */
				if (run) {
					flush_run(r, run_start, run, &err);
					run = 0;
				}
				if (hm__page_set_waiters(p, st))
					hm__page_wait(p, st | HM_PG_WAITERS);
				st = atomic_load(&p->st);
				continue;
			}
			if ((st & HM_ST_MASK) != HM_ST_RESIDENT || !(st & HM_PG_DIRTY))
				break;
			if (atomic_compare_exchange_weak(&p->st, &st,
							 (st | HM_PG_BUSY) & ~HM_PG_DIRTY)) {
				take = true;
				break;
			}
		}
		if (take && sync_wp) {
			/* Protect before writing, so a racing write faults again. */
			hm__uffd_writeprotect(r->base + (i << r->ps_shift), r->ps, true);
		}
		if (take && run && run_start + run == i && run < max_run) {
			run++;
			continue;
		}
		if (run) {
			flush_run(r, run_start, run, &err);
			run = 0;
		}
		if (take) {
			run_start = i;
			run = 1;
		}
	}
	if (run) {
		flush_run(r, run_start, run, &err);
	}
	return err;
}

int hm__region_sync(struct hm_region *r, uint64_t idx, uint64_t n, bool flush)
{
	int err, rc;

	if (r->bam)
		return hm__bam_sync(r, idx, n, flush ? MS_SYNC : MS_ASYNC);
	if (!r->wp)
		return 0;
	pthread_mutex_lock(&r->sync_lock);
	err = hm__harvest(r, idx, n);
	if (!err)
		err = sync_pass(r, idx, n);
	if (!err && flush && r->store->ops->flush) {
		hm__error_clear();
		rc = r->store->ops->flush(r->store->priv);
		if (rc)
			err = hm__error_wrap(rc, "flushing '%s' failed", r->store->uri);
	}
	pthread_mutex_unlock(&r->sync_lock);
	return err;
}
