/* SPDX-License-Identifier: MIT */
/*
 * The fault path, common to both fault-service models.
 *
 * A missing page is read into a bounce buffer and given a frame and a mapping
 * in one UFFDIO_COPY (src/core/io.c), write-protected when the
 * region tracks writes, so that its first write is recorded by the kernel
 * (asynchronous write protection) or reported as a fault (synchronous).
 *
 * Readahead: a region remembers where a sequential stream would fault next;
 * a fault there doubles the window (up to HMMAP_READAHEAD), any other fault
 * starts over with one page. All pages of a window are read with one store
 * request and mapped with one UFFDIO_CONTINUE.
 *
 * Nothing here may touch region memory: the thread may be inside a SIGBUS
 * handler on that very page.
 */
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "core/tier.h"

#define MAX_WINDOW 512
/* The least readahead window while readahead is on, in pages. */
#define MIN_WINDOW 4
/* Asynchronous windows kept in flight ahead of a sequential reader. */
#define RA_DEPTH 3

/* The largest readahead window of r, in pages. */
static uint32_t max_window(struct hm_region *r)
{
	const struct hm_env *env;
	uint32_t max;

	if (hm__env(&env))
		return 1;
	max = (uint32_t)(env->readahead >> r->ps_shift);
	if (max > MAX_WINDOW)
		max = MAX_WINDOW;
	/*
	 * Large pages still read ahead: with a window of one page a stream
	 * of 2 MiB pages would wait for every read (3.5 against 4.4 GB/s).
	 */
	if (env->readahead && max < MIN_WINDOW)
		max = MIN_WINDOW;
	/* A window never takes more than an eighth of the budget. */
	if ((uint64_t)max << r->ps_shift > hm__budget(r->cache) / 8)
		max = (uint32_t)((hm__budget(r->cache) / 8) >> r->ps_shift);
	return max ? max : 1;
}

/*
 * Context readahead (as the kernel's): one region may carry several
 * sequential streams at once - STREAM's three arrays, threads scanning
 * their own parts - while ra_next follows only the last. A miss right
 * after CONTEXT_MIN pages that are all in the cache is taken as a stream
 * of its own: the window is as long as that history (at least 4), so it
 * grows as the stream goes on. A random miss rarely has such a history.
 */
#define CONTEXT_MIN 4

static uint32_t context_window(struct hm_region *r, uint64_t idx, uint32_t max)
{
	uint32_t h = 0;

	while (h < max && h < idx) {
		struct hm_page *p = hm__page(r, idx - h - 1, false);
		if (!p || (atomic_load_explicit(&p->st, memory_order_relaxed) & HM_ST_MASK) ==
				  HM_ST_EMPTY)
			break;
		h++;
	}
	if (h < CONTEXT_MIN)
		return 1;
	return h;
}

/*
 * Sparse forward scans: a pass over a file that needs only some of its
 * pages (a level of a BFS over a CSR file, a filtered scan of records)
 * misses with gaps between its pages, so it never has a context of
 * resident pages behind it and each miss costs a fault and a request. The
 * region remembers where its last SPARSE_HIST context-less misses ended,
 * and for each the length of the chain it ended: how many misses in a row
 * began at most SPARSE_GAP pages past the end of the one before. A miss that
 * makes a chain of two or more reads ahead 4, 16, then 64 times the gap it
 * jumped, up to the largest window. Uniform random misses over n pages
 * continue a recent one with a probability of about
 * p = SPARSE_HIST x SPARSE_GAP / n, and make a chain of k with p^k: over a
 * 32 MiB region (p = 1/16) about one in 250 reads a window, and none over
 * a large one.
 */
#define SPARSE_HIST 8
#define SPARSE_GAP 64
#define SPARSE_CHAIN_MAX 7

/* What window() learnt about a context-less miss, for sparse_note(). */
struct miss_ctx {
	bool noted;     /* the miss had no context: note it */
	uint32_t chain; /* the chain it ends */
};

/*
 * The largest jump that continues a chain: SPARSE_GAP, or less in a region
 * of fewer than 256 x SPARSE_GAP pages, so that p stays at 1/32 there.
 */
static uint64_t sparse_gap(const struct hm_region *r)
{
	uint64_t g = r->npages >> 8;

	return g > SPARSE_GAP ? SPARSE_GAP : g;
}

static uint32_t sparse_window(struct hm_region *r, uint64_t idx, uint32_t max,
			      struct miss_ctx *mc)
{
	uint64_t best = 0, gap_max = sparse_gap(r);

	/* Each entry: (the page after a miss's load + 1) << 3 | its chain. */
	for (int i = 0; i < SPARSE_HIST; i++) {
		uint64_t m = atomic_load_explicit(&r->miss_hist[i], memory_order_relaxed);
		uint64_t next = (m >> 3) - 1;
		if (m >> 3 && next <= idx && idx - next <= gap_max && m > best)
			best = m;
	}
	mc->noted = true;
	mc->chain = best ? (uint32_t)(best & SPARSE_CHAIN_MAX) + 1 : 0;
	if (mc->chain > SPARSE_CHAIN_MAX)
		mc->chain = SPARSE_CHAIN_MAX;
	if (mc->chain < 2)
		return 1;
	uint64_t gap = idx - ((best >> 3) - 1) + 1;
	uint64_t w = gap << (mc->chain < 4 ? 2 * (mc->chain - 1) : 6);
	return w > max ? max : (uint32_t)w;
}

/* Remembers where a context-less miss at idx, whose load took n pages, ended. */
static void sparse_note(struct hm_region *r, uint64_t idx, uint32_t n, const struct miss_ctx *mc)
{
	uint32_t pos = atomic_fetch_add_explicit(&r->miss_pos, 1, memory_order_relaxed);

	atomic_store_explicit(&r->miss_hist[pos % SPARSE_HIST], ((idx + n + 1) << 3) | mc->chain,
			      memory_order_relaxed);
}

static uint32_t window(struct hm_region *r, uint64_t idx, struct miss_ctx *mc)
{
	uint32_t max = max_window(r), w;

	switch (atomic_load_explicit(&r->advice, memory_order_relaxed)) {
	case HM_ADV_RANDOM:
		return 1;
	case HM_ADV_SEQUENTIAL:
	case HM_ADV_NOREUSE:
		w = max;
		break;
	default:
		if (idx == atomic_load_explicit(&r->ra_next, memory_order_relaxed)) {
			w = atomic_load_explicit(&r->ra_window, memory_order_relaxed) * 2;
			if (w < 4)
				w = 4;
		} else {
			w = context_window(r, idx, max);
			if (w == 1)
				w = sparse_window(r, idx, max, mc);
		}
	}
	if (w > max)
		w = max;
	if (w < 1)
		w = 1;
	if (idx + w > r->npages)
		w = (uint32_t)(r->npages - idx);
	return w;
}

/*
 * Leaves LOADING for `to` on pages [idx, idx+n), the first page also taking
 * `first` flags; wakes waiters. Every waiter flags the page it sleeps on,
 * so only flagged pages are woken, a run of them at a time: a reader that
 * caught up with a readahead window waits on one page of it, and waking
 * all 512 (a futex call each) cost a sequential scan of a redis:// store a
 * futex call per two pages it read.
 */
static void finish_ex(struct hm_region *r, uint64_t idx, uint32_t n, uint32_t to, uint32_t first)
{
	uint64_t run = 0;
	uint32_t len = 0;

	for (uint32_t i = 0; i < n; i++) {
		struct hm_page *p = hm__page(r, idx + i, false);
		uint32_t st = atomic_load(&p->st), nst;
		do {
			/*
			 * Keep DIRTY, which a harvest may have seen already, and RA,
			 * which load() sets before the page can be seen (stats).
			 */
			nst = to | (to == HM_ST_EMPTY ? 0 : (st & (HM_PG_DIRTY | HM_PG_RA))) |
			      (i ? 0 : first);
		} while (!atomic_compare_exchange_weak(&p->st, &st, nst));
		if (!(st & HM_PG_WAITERS))
			continue;
		if (len && run + len == idx + i) {
			len++;
			continue;
		}
		if (len)
			hm__page_wake(r, run, len);
		run = idx + i;
		len = 1;
	}
	if (len)
		hm__page_wake(r, run, len);
}

static void finish(struct hm_region *r, uint64_t idx, uint32_t n, uint32_t to)
{
	finish_ex(r, idx, n, to, 0);
}

/* Unmaps and frees whatever part of [idx, idx+n) a failed load mapped. */
static void drop_frames(struct hm_region *r, uint64_t idx, uint64_t n)
{
	madvise(r->base + (idx << r->ps_shift), (size_t)n << r->ps_shift, MADV_DONTNEED);
	fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(idx << r->ps_shift),
		  (off_t)(n << r->ps_shift));
}

/*
 * Counts a load of n pages, the first `demand` of them asked for (a fault's
 * page, or all of a prefault) and the rest read ahead, or takes the count
 * back (undo). A load is counted before its pages are mapped: a thread that
 * has touched them must find them in the statistics, as it finds them in
 * resident_bytes.
 */
static void count_load(struct hm_region *r, uint32_t n, uint32_t demand, bool undo)
{
	uint64_t k = undo ? UINT64_MAX : 1; /* times -1, modulo 2^64 */
	uint64_t bytes = k * ((uint64_t)n << r->ps_shift);

	hm__count_rc(r, misses, k * demand);
	hm__count_rc(r, readahead, k * (n - demand));
	hm__count_rc(r, bytes_read, bytes);
	hm__count(&r->store->ctr, bytes_read, bytes);
}

/*
 * Loads pages [idx, idx+n) that this thread moved to LOADING: reserves
 * room, reads, maps. On failure the pages are EMPTY again. With `marker`
 * (asynchronous readahead) the first page stays unmapped, so that the
 * reader's touch of it is a minor fault that queues the next window: the
 * user-space form of the kernel's PG_readahead. With `populate` (a prefault
 * or WILLNEED) every page was asked for: none of them counts as read ahead.
 */
static int load(struct hm_region *r, uint64_t idx, uint32_t n, bool marker, bool populate)
{
	uint32_t demand;
	struct hm_cache *c = r->cache;
	uint32_t slots[MAX_WINDOW];
	int rc;

	rc = hm__cache_reserve(c, r, idx, n, slots);
	if (rc == -ENOMEM && n > 1) {
		/*
		 * No room for the window: the demand page alone. (Not after a
		 * failed write-back: that store had its whole timeout already.)
		 */
		finish(r, idx + 1, n - 1, HM_ST_EMPTY);
		n = 1;
		rc = hm__cache_reserve(c, r, idx, n, slots);
	}
	if (rc) {
		finish(r, idx, n, HM_ST_EMPTY);
		return rc;
	}
	if (marker && n < 2)
		marker = false;
	/* Pages asked for: a fault's first, a prefault's all; none of a marked window. */
	demand = marker ? 0 : populate ? n : 1;
	for (uint32_t i = 0; i < n; i++)
		hm__page(r, idx + i, false)->slot = slots[i];
	/* Read-ahead pages carry HM_PG_RA until seen used or evicted (stats). */
	if (hm__stats_enabled())
		for (uint32_t i = demand; i < n; i++)
			atomic_fetch_or(&hm__page(r, idx + i, false)->st, HM_PG_RA);
	count_load(r, n, demand, false);
	rc = hm__io_load(r, idx, n, marker);
	if (rc && n > 1) {
		/* Readahead must not turn a good page into SIGBUS: retry alone. */
		count_load(r, n, demand, true);
		drop_frames(r, idx, n);
		hm__cache_unreserve(c, r, n - 1, slots + 1);
		finish(r, idx + 1, n - 1, HM_ST_EMPTY);
		n = 1;
		marker = false; /* a demand page now, not read ahead */
		atomic_fetch_and(&hm__page(r, idx, false)->st, ~HM_PG_RA);
		demand = 1;
		count_load(r, 1, demand, false);
		rc = hm__io_load(r, idx, 1, false);
	}
	if (rc) {
		count_load(r, n, demand, true);
		drop_frames(r, idx, n);
		hm__cache_unreserve(c, r, n, slots);
		finish(r, idx, n, HM_ST_EMPTY);
		if (rc == -EPROTO)
			return rc; /* the message says what failed */
		hm__count(&r->ctr, read_errors, 1);
		hm__count(&c->ctr, read_errors, 1);
		hm__count(&r->store->ctr, read_errors, 1);
		return hm__error_wrap(rc, "cannot read page %llu of '%s'",
				       (unsigned long long)idx, r->store->uri);
	}
	hm__tier_loaded(r, idx, n); /* a chain: exclusive tiers, hotness */
	finish_ex(r, idx, n, HM_ST_RESIDENT, marker ? HM_PG_UNMAPPED | HM_PG_RAMARK : 0);
	hm__cache_insert(c, r, idx, n, slots);

	if (!marker) {
		atomic_store_explicit(&r->ra_next, idx + n, memory_order_relaxed);
		atomic_store_explicit(&r->ra_window, n, memory_order_relaxed);
	}
	return 0;
}

/* Claims EMPTY pages after idx for readahead, up to w-1 of them. */
static uint32_t claim_window(struct hm_region *r, uint64_t idx, uint32_t w)
{
	uint32_t n = 1;

	while (n < w) {
		struct hm_page *p = hm__page(r, idx + n, true);
		uint32_t st;
		if (!p)
			break;
		st = atomic_load(&p->st);
		if ((st & HM_ST_MASK) != HM_ST_EMPTY ||
		    !atomic_compare_exchange_strong(&p->st, &st, HM_ST_LOADING | (st & HM_PG_WAITERS)))
			break;
		n++;
	}
	return n;
}

/* Whether the queued windows' end is this stream's own (see below). */
static bool own_end(uint64_t end, uint64_t from, uint64_t limit, bool passes)
{
	return end >= from && !(passes && end > limit);
}

/*
 * Keeps RA_DEPTH windows of `w` pages in flight beyond what a sequential
 * reader has reached; `from` is where the reader is. gen is the region's
 * readahead generation when the fault began: in thread mode UFFDIO_COPY
 * wakes the faulting thread before the handler gets here, and that thread
 * may have cancelled readahead (DONTNEED) since. Windows queued with the
 * old generation are dropped, not read after the cancel returned.
 *
 * ra_end is where the queued windows end. One behind the reader belongs to
 * a stream before this one, and this stream starts its windows at `from`.
 * One more than the depth ahead of it belongs to another stream, or to an
 * earlier pass that ran to the end of the region: under SEQUENTIAL and
 * NOREUSE, the caller's word that the region is read in passes, this
 * stream then starts its own windows too. Taking that end for its own
 * queued nothing, so every pass after the first waited for every window
 * (STREAM with NOREUSE: 675-702 MB/s over two passes before, 739-760
 * after). Under the default advice a stream does not take over: one
 * region read by many streams at once (the sort benchmark's 17-way merge
 * through a 64 MiB cache) kept more windows in flight than the cache
 * holds, and read 1.5 million pages instead of 183 thousand. Readahead
 * that backs off when its windows are evicted unused would let every
 * advice restart; hmmap has none yet.
 */
static void stream_ahead(struct hm_region *r, uint64_t from, uint32_t w, uint32_t gen)
{
	uint64_t limit = from + (uint64_t)RA_DEPTH * w;
	uint64_t end = atomic_load(&r->ra_end);
	int advice = atomic_load_explicit(&r->advice, memory_order_relaxed);
	bool passes = advice == HM_ADV_SEQUENTIAL || advice == HM_ADV_NOREUSE;

	if (atomic_load(&r->ra_gen) != gen)
		return;
	if (limit > r->npages)
		limit = r->npages;
	for (;;) {
		uint64_t start = own_end(end, from, limit, passes) ? end : from;
		uint32_t n;

		if (start >= limit)
			break;
		n = (uint32_t)(r->npages - start < w ? r->npages - start : w);
		/* One thread extends the stream; the others see ra_end move. */
		if (!atomic_compare_exchange_strong(&r->ra_end, &end, start + n))
			continue;
		hm__prefetch_queue(r, start, n, gen);
		end = start + n;
	}
	atomic_store_explicit(&r->ra_next, own_end(end, from, limit, passes) ? end : from,
			      memory_order_relaxed);
}

void hm__readahead_cancel(struct hm_region *r)
{
	atomic_fetch_add(&r->ra_gen, 1);
	atomic_store(&r->ra_end, 0);
	atomic_store(&r->ra_next, 0);
	atomic_store(&r->ra_window, 0);
}

void hm__readahead(struct hm_region *r, uint64_t idx, uint32_t n, uint32_t gen)
{
	uint64_t end = idx + n;

	/* The reader may have faulted some pages in already: skip those. */
	while (idx < end) {
		struct hm_page *p = hm__page(r, idx, true);
		uint32_t st;

		if (!p)
			return;
		st = atomic_load(&p->st);
		if ((st & HM_ST_MASK) != HM_ST_EMPTY) {
			idx++;
			continue;
		}
		if (!atomic_compare_exchange_strong(&p->st, &st,
						    HM_ST_LOADING | (st & HM_PG_WAITERS)))
			continue;
		uint32_t got = claim_window(r, idx, (uint32_t)(end - idx));
		/*
		 * Checked with the pages held: a canceller bumps the generation
		 * before it scans, so it either sees them LOADING and waits, or
		 * this sees the new generation and lets them go.
		 */
		if (atomic_load(&r->ra_gen) != gen) {
			finish(r, idx, got, HM_ST_EMPTY);
			return;
		}
		if (load(r, idx, got, true, false))
			return;
		idx += got;
	}
}

static bool wp_async(void)
{
	const struct hm_engine_info *info;

	return !hm__engine_start(&info) && info->wp_async;
}

/* Maps a resident page whose PTE was zapped (a hint fault). */
static int remap(struct hm_region *r, uint64_t idx, struct hm_page *p, uint32_t st,
		 unsigned flags)
{
	int rc;
	bool was_unmapped = st & HM_PG_UNMAPPED;
	uint32_t gen = atomic_load(&r->ra_gen);

	if (st & HM_PG_RA)
		hm__ra_used(r, p);
	if (st & HM_PG_RAMARK) {
		hm__ra_passed(r, idx);
		/* The reader reached an async window: queue the next, larger. */
		uint32_t w = atomic_load_explicit(&r->ra_window, memory_order_relaxed) * 2;
		uint32_t max = max_window(r);
		if (w > max)
			w = max;
		atomic_store_explicit(&r->ra_window, w, memory_order_relaxed);
		atomic_fetch_and(&p->st, ~HM_PG_RAMARK);
		int advice = atomic_load_explicit(&r->advice, memory_order_relaxed);
		if (w > 1 && advice != HM_ADV_RANDOM)
			stream_ahead(r, idx, w, gen);
		if (advice == HM_ADV_NOREUSE)
			hm__cache_behind(r->cache, r, idx, w);
		was_unmapped = false; /* not a sampled reference */
	}
	rc = hm__uffd_continue(r->base + (idx << r->ps_shift), r->ps, r->wp);
	if (rc == -EEXIST && (flags & HM_FAULT_F_WRITE) && r->wp && !wp_async()) {
		/*
		 * Mapped and write-protected: in sigbus mode a write-protect
		 * fault arrives here without its own flag. Record the write.
		 */
		atomic_fetch_or(&p->st, HM_PG_DIRTY);
		hm__count(&r->ctr, faults_wp, 1);
		hm__count(&r->cache->ctr, faults_wp, 1);
		rc = hm__uffd_writeprotect(r->base + (idx << r->ps_shift), r->ps, false);
	} else if (rc == -EEXIST) {
		/* Mapped already: a stale fault, or another thread won. */
		hm__uffd_wake(r->base + (idx << r->ps_shift), r->ps);
		rc = 0;
	} else if (rc == 0) {
		hm__count(&r->ctr, faults_minor, 1);
		hm__count(&r->cache->ctr, faults_minor, 1);
		if (was_unmapped) {
			hm__trace_record(r, idx);
			hm__count(&r->ctr, hits, 1);
			hm__count(&r->cache->ctr, hits, 1);
			hm__cache_hit(r->cache, p);
			hm__tier_touch(r, idx);
		}
	}
	uint32_t old = atomic_fetch_and(&p->st, ~(HM_PG_BUSY | HM_PG_UNMAPPED | HM_PG_WAITERS));
	if (old & HM_PG_WAITERS)
		hm__page_wake(r, idx, 1);
	return rc < 0 ? hm__error_errno(rc, "UFFDIO_CONTINUE") : 0;
}

/* A synchronous write-protect fault: record the write and let it through. */
static int write_fault(struct hm_region *r, uint64_t idx, struct hm_page *p)
{
	hm__ra_used(r, p);
	atomic_fetch_or(&p->st, HM_PG_DIRTY);
	hm__count(&r->ctr, faults_wp, 1);
	hm__count(&r->cache->ctr, faults_wp, 1);
	return hm__uffd_writeprotect(r->base + (idx << r->ps_shift), r->ps, false);
}

/*
 * For hm__fault(): set when a fault only queued itself behind another
 * thread's load (not timed), and when it loaded pages (a missing fault).
 */
static __thread bool fault_deferred, fault_loaded;

static int fault_serve(struct hm_region *r, uintptr_t addr, unsigned flags)
{
	uint64_t idx = (addr - (uintptr_t)r->base) >> r->ps_shift;
	struct hm_page *p;

	if (idx >= r->npages)
		return hm__error(-EFAULT, "fault outside the region");
	p = hm__page(r, idx, true);
	if (!p)
		return hm__error(-ENOMEM, "cannot allocate page metadata");
	for (;;) {
		uint32_t st = atomic_load(&p->st);

		switch (st & HM_ST_MASK) {
		case HM_ST_EMPTY:
			if (!atomic_compare_exchange_weak(&p->st, &st,
							  HM_ST_LOADING | (st & HM_PG_WAITERS)))
				continue;
			hm__count(&r->ctr, faults_missing, 1);
			hm__count(&r->cache->ctr, faults_missing, 1);
			hm__trace_record(r, idx);
			uint32_t gen = atomic_load(&r->ra_gen);
			struct miss_ctx mc = { false, 0 };
			uint32_t w = window(r, idx, &mc);
			uint32_t n = claim_window(r, idx, w);
			if (mc.noted)
				sparse_note(r, idx, n, &mc);
			/*
			 * Queued windows the reader got to first give that part
			 * up. One queued meanwhile finds these pages taken
			 * (seq_cst after the claim: see hm__prefetch_queue()).
			 */
			if (atomic_load(&r->ra_queued))
				hm__prefetch_trim(r, idx, n);
			fault_loaded = true;
			int rc = load(r, idx, n, false, false);
			hm__ra_passed(r, idx);
			if (atomic_load_explicit(&r->advice, memory_order_relaxed) == HM_ADV_NOREUSE)
				hm__cache_behind(r->cache, r, idx, w);
			/*
			 * A stream: keep windows of the same size in flight ahead.
			 * Not a sparse scan's: it skips ahead, and its next miss
			 * tells how far.
			 */
			if (!rc && w >= 4 && idx + n < r->npages && !mc.noted)
				stream_ahead(r, idx + n, w, gen);
			return rc;
		case HM_ST_RESIDENT:
			if (st & HM_PG_BUSY)
				break;
			if ((flags & HM_FAULT_F_WP) && !(flags & HM_FAULT_F_MINOR))
				return write_fault(r, idx, p);
			if (!atomic_compare_exchange_weak(&p->st, &st, st | HM_PG_BUSY))
				continue;
			return remap(r, idx, p, st, flags);
		case HM_ST_GONE:
			/*
			 * hmunmap() took the page while this fault waited (the
			 * thread touched memory being unmapped), or someone made
			 * the range accessible again with mprotect(): a retry
			 * could only fault again. The thread gets SIGBUS.
			 */
			return hm__error(-EFAULT, "page %llu was unmapped by hmunmap()",
					 (unsigned long long)idx);
		default:
			break;
		}
		/* LOADING, EVICTING or BUSY: wait for the owner's wake-up. */
		if (!hm__page_set_waiters(p, st))
			continue;
		if (flags & HM_FAULT_F_SIGBUS)
			hm__page_wait(p, st | HM_PG_WAITERS);
		else
			fault_deferred = true; /* the owner's wake-up serves it */
		return 0;
	}
}

/*
 * Serves a fault and adds its service time to the region's and the cache's
 * latency histograms (and for a missing fault to fault_ns_total): two clock
 * reads (vDSO), skipped with HMMAP_STATS=0. A fault that only waits for
 * another thread's load in thread mode is not timed: the faulting thread
 * sleeps in the kernel until that load is done.
 */
int hm__fault(struct hm_region *r, uintptr_t addr, unsigned flags)
{
	uint64_t t0;
	int rc;

	if (!hm__stats_enabled())
		return fault_serve(r, addr, flags);
	t0 = hm__now_ns();
	fault_deferred = fault_loaded = false;
	rc = fault_serve(r, addr, flags);
	if (!fault_deferred) {
		uint64_t dt = hm__now_ns() - t0;
		hm__lat_record(&r->ctr, dt);
		hm__lat_record(&r->cache->ctr, dt);
		if (fault_loaded) {
			hm__count(&r->ctr, fault_ns_total, dt);
			hm__count(&r->cache->ctr, fault_ns_total, dt);
		}
	}
	return rc;
}

int hm__populate(struct hm_region *r, uint64_t idx, uint64_t n, bool pin, bool keep)
{
	uint64_t end = idx + n;
	int rc;

	while (idx < end) {
		struct hm_page *p = hm__page(r, idx, true);
		uint32_t st;

		if (!p)
			return hm__error(-ENOMEM, "cannot allocate page metadata");
		st = atomic_load(&p->st);
		switch (st & HM_ST_MASK) {
		case HM_ST_EMPTY: {
			uint32_t w = end - idx > MAX_WINDOW ? MAX_WINDOW : (uint32_t)(end - idx);
			if (!atomic_compare_exchange_strong(&p->st, &st,
							    HM_ST_LOADING | (st & HM_PG_WAITERS)))
				continue;
			/* Asked for, every page of it: misses, not readahead. */
			rc = load(r, idx, claim_window(r, idx, w), false, true);
			if (rc)
				return rc;
			continue; /* pins it, if asked, on the next pass */
		}
		case HM_ST_GONE:
			return hm__error(-ENOMEM, "page %llu was unmapped by hmunmap()",
					 (unsigned long long)idx);
		case HM_ST_RESIDENT:
			if (st & HM_PG_UNMAPPED && !(st & HM_PG_BUSY)) {
				if (!atomic_compare_exchange_strong(&p->st, &st, st | HM_PG_BUSY))
					continue;
				rc = remap(r, idx, p, st, 0);
				if (rc)
					return rc;
				continue;
			}
			if (st & HM_PG_BUSY)
				break;
			/*
			 * Mapped, and kept mapped: a sampler that loaded the state
			 * before this fails its compare-and-swap into BUSY.
			 */
			if (keep && !(st & HM_PG_KEEPMAP) &&
			    !atomic_compare_exchange_strong(&p->st, &st, st | HM_PG_KEEPMAP))
				continue;
			if (pin) {
				rc = hm__cache_pin(r->cache, r, idx);
				if (rc == -EAGAIN) {
					sched_yield(); /* its loader is about to insert it */
					continue;
				}
				if (rc)
					return rc;
			}
			idx++;
			continue;
		default:
			break;
		}
		/* In flight: wait for it. */
		if (hm__page_set_waiters(p, st))
			hm__page_wait(p, st | HM_PG_WAITERS);
	}
	return 0;
}
