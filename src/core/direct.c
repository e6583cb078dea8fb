/* SPDX-License-Identifier: MIT */
/*
 * Direct regions (HM_DIRECT) and what every byte-addressable region shares:
 * mapping the medium, sync (durability and endurance counting), advice,
 * prefault, hm_protect() and the persistence query.
 *
 * A direct region is the store's medium mapped shared at the region's
 * address by the store's map hook: loads and stores run at the medium's
 * speed with no fault of hmmap's. The span past the store's end (a read-only
 * region may pass it) is anonymous memory that reads as zeros.
 *
 * Endurance counting. A writable direct region is registered with
 * userfaultfd for write protection only, in asynchronous mode (which the
 * kernel allows on any memory, file mappings included): the kernel resolves
 * the first write to each protected page by itself, and at each hmsync a
 * PAGEMAP_SCAN collects the pages written since the last one and protects
 * them again in the same call. Each such page adds the region's page size
 * (clipped to the mapped end) to bytes_written of the region and the store:
 * the bytes the medium may have absorbed, at page granularity, a page
 * written many times between two syncs counting once. Without asynchronous
 * write protection (or for a region over 64 GiB, whose markers alone would
 * cost 128 MiB of page tables) nothing is counted, and hm_store_stats()
 * says so by leaving bytes_written at zero.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "core/direct.h"

#define TRACK_MAX (64ull << 30)

int hm__bam_check(const struct hm_store *s, int flags, int prot)
{
	const char *mode = flags == HM_DIRECT ? "HM_DIRECT" : "HM_HYBRID";

	if (!(s->info.props & HM_PROP_BYTE_ADDRESSABLE))
		return hm__error(-ENOTSUP, "%s needs a byte-addressable store (pmem:, numa:); '%s' "
					   "is not one (map it HM_CACHED, or a file as pmem:PATH)",
				 mode, s->uri);
	if (!s->ops->map || !s->ops->addr)
		return hm__error(-ENOTSUP, "%s: store '%s' is byte-addressable but cannot be mapped "
					   "at a region's address (use pmem: or numa:, or HM_CACHED)",
				 mode, s->uri);
	return 0;
}

static void count_written(void *ctx, uintptr_t addr, size_t len)
{
	struct hm_region *r = ctx;
	uint64_t off = r->offset + (addr - (uintptr_t)r->base);
	uint64_t n;

	if (off >= r->wb_limit)
		return;
	n = off + len > r->wb_limit ? r->wb_limit - off : len;
	hm__count_rc(r, bytes_written, n);
	hm__count(&r->store->ctr, bytes_written, n);
	hm__count_rc(r, writebacks, (len + r->ps - 1) >> r->ps_shift);
	hm__count(&r->store->ctr, writebacks, (len + r->ps - 1) >> r->ps_shift);
}

/* Collects written pages of [idx, idx+n) into the counters; caller holds sync_lock. */
static int harvest(struct hm_region *r, uint64_t idx, uint64_t n)
{
	struct hm_bam *b = r->bam;
	uint64_t start = idx << r->ps_shift, end = (idx + n) << r->ps_shift;

	if (!b->track)
		return 0;
	if (end > b->medium_len)
		end = b->medium_len;
	if (start >= end)
		return 0;
	return hm__pagemap_harvest((uintptr_t)r->base + start, (uintptr_t)r->base + end, false,
				   count_written, r);
}

int hm__bam_map_medium(struct hm_region *r, int prot)
{
	struct hm_store *s = r->store;
	struct hm_bam *b = r->bam;
	int rc;

	if (r->offset < s->info.size) {
		uint64_t left = s->info.size - r->offset;
		b->medium_len = left < r->span ? ((left + 4095) & ~4095ull) : r->span;
	}
	/* The reservation: zeros past the store's end, replaced by the medium before it. */
	r->base = mmap(r->hint, r->span, r->prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		       0);
	if (r->base == MAP_FAILED)
		return hm__error_errno(-errno, "mmap of %zu bytes", r->span);
	if (b->medium_len) {
		rc = s->ops->map(s->priv, r->base, b->medium_len, r->offset, prot);
		if (rc)
			return hm__error_errno(rc, "cannot map %llu bytes of store '%s' at offset %llu",
					       (unsigned long long)b->medium_len, s->uri,
					       (unsigned long long)r->offset);
	}
	return 0;
}

int hm__bam_map(struct hm_region *r)
{
	const struct hm_engine_info *info;
	struct hm_bam *b;
	int rc;

	b = calloc(1, sizeof *b);
	if (!b)
		return hm__error(-ENOMEM, "out of memory");
	r->bam = b;
	if (r->flags == HM_HYBRID) {
		r->memfd = -1;
		return hm__hybrid_init(r);
	}
	rc = hm__bam_map_medium(r, r->prot);
	if (rc)
		return rc;
	/* A child process does not inherit regions (as cached ones). */
	madvise(r->base, r->span, MADV_DONTFORK);
	/*
	 * Dirty tracking for endurance counting, where the kernel offers it
	 * cheaply; with HMMAP_STATS=0 nothing would be counted, so stores run
	 * with no write-protect faults and no fault engine is started for them.
	 */
	const struct hm_env *env;
	if ((r->prot & PROT_WRITE) && b->medium_len && b->medium_len <= TRACK_MAX &&
	    !hm__env(&env) && env->stats && !hm__engine_start(&info) && info->wp_async &&
	    !hm__uffd_register_wp_async(r->base, b->medium_len))
		b->track = true;
	return 0;
}

void hm__bam_teardown(struct hm_region *r)
{
	struct hm_bam *b = r->bam;

	if (!b)
		return;
	if (b->hybrid)
		hm__hybrid_free(r);
	free(b);
	r->bam = NULL;
}

int hm__bam_sync(struct hm_region *r, uint64_t idx, uint64_t n, int flags)
{
	struct hm_bam *b = r->bam;
	struct hm_store *s = r->store;
	uint64_t start = idx << r->ps_shift, len = n << r->ps_shift;
	int err = 0, rc;

	if (!(r->prot & PROT_WRITE))
		return 0;
	pthread_mutex_lock(&r->sync_lock);
	if (b->hybrid)
		err = hm__hybrid_writeback(r, idx, n);
	else
		err = harvest(r, idx, n);
	if (!err && (flags & MS_SYNC) && s->ops->persist && start < b->medium_len) {
		if (start + len > b->medium_len)
			len = b->medium_len - start;
		rc = s->ops->persist(s->priv, r->offset + start, (size_t)len);
		if (rc)
			err = hm__error_errno(rc, "making stores to '%s' durable failed", s->uri);
	}
	pthread_mutex_unlock(&r->sync_lock);
	return err;
}

int hm__bam_advise(struct hm_region *r, uint64_t idx, uint64_t n, int advice)
{
	struct hm_bam *b = r->bam;
	char *a = r->base + (idx << r->ps_shift);
	size_t len = (size_t)n << r->ps_shift;
	int rc, adv;

	switch (advice) {
	case HM_ADV_NORMAL:
		adv = MADV_NORMAL;
		break;
	case HM_ADV_RANDOM:
		adv = MADV_RANDOM;
		break;
	case HM_ADV_SEQUENTIAL:
	case HM_ADV_NOREUSE: /* the kernel's reclaim already ignores references of such a VMA */
		adv = MADV_SEQUENTIAL;
		break;
	case HM_ADV_WILLNEED:
		adv = MADV_WILLNEED;
		break;
	case HM_ADV_DONTNEED:
		/* Written pages are counted and hybrid pages returned before the drop. */
		rc = hm__bam_sync(r, idx, n, 0);
		if (rc)
			return rc;
		if (madvise(a, len, MADV_DONTNEED) < 0)
			return hm__error_errno(-errno, "madvise(MADV_DONTNEED)");
		/* Protect again: a zapped page must not read as written. */
		if (b->track)
			hm__uffd_writeprotect(a, len < b->medium_len ? len : b->medium_len, true);
		return 0;
	default:
		return hm__error(-EINVAL, "unknown advice %d", advice);
	}
	/* The kernel's readahead for the file under the mapping. */
	if (madvise(a, len, adv) < 0)
		return hm__error_errno(-errno, "madvise");
	return 0;
}

int hm__bam_prefault(struct hm_region *r, uint64_t idx, uint64_t n, int flags)
{
	/*
	 * Direct pages are the medium's: the kernel serves every fault on them,
	 * system calls included, so populating is only a speed-up. Read faults
	 * only, so that the prefault does not count as writes.
	 */
	if (((struct hm_bam *)r->bam)->hybrid)
		return hm__hybrid_take(r, idx, n, flags & HM_PREFAULT_PIN);
	if (madvise(r->base + (idx << r->ps_shift), (size_t)n << r->ps_shift,
		    MADV_POPULATE_READ) < 0 && errno != EINVAL)
		return hm__error_errno(-errno, "madvise(MADV_POPULATE_READ)");
	return 0;
}

int hm__bam_unpin(struct hm_region *r, uint64_t idx, uint64_t n)
{
	if (((struct hm_bam *)r->bam)->hybrid)
		hm__hybrid_unpin(r, idx, n);
	return 0;
}

/* ---- hm_protect ---- */

static int protect_one(struct hm_region *r, uint64_t idx, uint64_t n, int prot)
{
	char *a = r->base + (idx << r->ps_shift);
	size_t len = (size_t)n << r->ps_shift;

	if (r->bam && ((struct hm_bam *)r->bam)->hybrid)
		return hm__hybrid_protect(r, idx, n, !(prot & PROT_WRITE));
	/*
	 * Cached and direct regions: the page tables say it. For a cached
	 * region, userfaultfd write protection (dirty tracking) survives
	 * mprotect: making a page writable again never clears it.
	 */
	if (mprotect(a, len, prot | (r->prot & PROT_EXEC)) < 0)
		return hm__error_errno(-errno, "mprotect");
	return 0;
}

int hm_protect(void *addr, size_t length, int prot)
{
	uintptr_t a = (uintptr_t)addr, end;
	int err = 0;

	if (a & 4095)
		return hm__error(-EINVAL, "hm_protect: address %p is not page-aligned", addr);
	if (length == 0)
		return hm__error(-EINVAL, "hm_protect: length is zero");
	if (prot != PROT_READ && prot != (PROT_READ | PROT_WRITE))
		return hm__error(-EINVAL, "hm_protect: prot must be PROT_READ or PROT_READ | "
					  "PROT_WRITE (got %#x)", prot);
	if (a + length < a)
		return hm__error(-EINVAL, "hm_protect: range wraps around");
	end = a + length;
	/* Check the whole range first: change nothing on bad input. */
	for (uintptr_t cur = a; cur < end;) {
		struct hm_region *r = hm_region_find((void *)cur);
		if (!r)
			return hm__error(-ENOMEM, "hm_protect: %p is not in an hmmap region",
					 (void *)cur);
		if ((prot & PROT_WRITE) && !(r->prot & PROT_WRITE))
			return hm__error(-EACCES, "hm_protect: the region at %p was mapped without "
						  "PROT_WRITE", (void *)r->base);
		if (hm__region_holed_at(r, cur, end))
			return hm__error(-ENOMEM, "hm_protect: part of %p+%zu was unmapped by "
						  "hmunmap()", addr, length);
		cur = (uintptr_t)r->base + r->span;
	}
	for (uintptr_t cur = a; cur < end;) {
		struct hm_region *r = hm__region_get(cur);
		if (!r)
			return hm__error(-ENOMEM, "hm_protect: %p was unmapped meanwhile", (void *)cur);
		uintptr_t rend = (uintptr_t)r->base + r->span;
		uintptr_t stop = end < rend ? end : rend;
		uint64_t first = (cur - (uintptr_t)r->base) >> r->ps_shift;
		uint64_t last = (stop - 1 - (uintptr_t)r->base) >> r->ps_shift;
		int rc = protect_one(r, first, last - first + 1, prot);
		hm__region_put(r);
		if (rc && !err)
			err = rc;
		cur = rend;
	}
	return err;
}

/* ---- persistence ---- */

int hm_store_persistence(const struct hm_store *s)
{
	if (!s)
		return hm__error(-EINVAL, "hm_store_persistence: NULL store");
	if (!(s->info.props & HM_PROP_PERSISTENT))
		return HM_PERSIST_NONE;
	return (s->info.props & HM_PROP_MAP_SYNC) ? HM_PERSIST_FLUSH : HM_PERSIST_MSYNC;
}

const char *hm_persistence_name(int p)
{
	switch (p) {
	case HM_PERSIST_NONE:
		return "none";
	case HM_PERSIST_MSYNC:
		return "msync";
	case HM_PERSIST_FLUSH:
		return hm__cpu_flush_name();
	}
	return "?";
}
