/* SPDX-License-Identifier: MIT */
/*
 * The cache layer: a byte budget shared by regions, slots for resident pages,
 * the replacement policy, and eviction.
 *
 * Budget: `resident` counts every page that holds DRAM, including pages
 * being loaded, and a load reserves its room before it reads. So the pages
 * of all regions on a cache never exceed the budget; the only transient
 * excess is none at all (eviction frees before the reservation is granted).
 *
 * Eviction of a batch, outside the cache lock, per region and per run of
 * contiguous victims:
 *   1. the victims are EVICTING: faults on them wait;
 *   2. their PTEs are zapped (the data stays in the region's memfd), every
 *      run of the region in one call and so with one TLB flush;
 *   3. PAGEMAP_SCAN over the zapped runs reports the pages written since
 *      they were last write-protected: a zapped write-protected PTE leaves a
 *      uffd-wp marker, a written one leaves nothing, and the scan tells the
 *      two apart. Doing it after the zap closes the race with a write that
 *      lands between a scan and a zap;
 *   4. dirty victims are written back in runs;
 *   5. the frames are freed (a hole punched in the memfd) and the victims
 *      are EMPTY. A victim whose write-back failed stays resident, dirty,
 *      and goes back to the policy: nothing is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/tier.h"

struct victim {
	struct hm_region *r;
	uint64_t idx;
	uint32_t slot;
	bool failed;
	bool waiters;
	bool discard; /* anonymous memory being unmapped: never written back */
};

#define MAX_BATCH 512
/* The most slots is 2^32 - 64: policies name sentinels above their capacity. */
#define MAX_BUDGET ((((uint64_t)1 << 32) - 64) * 4096)
_Static_assert(MAX_BATCH <= HM_ZAP_RUNS, "a batch of victims is zapped in one call");

/* Caches alive, for the sampler. */
static pthread_mutex_t caches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hm_cache *caches[64];
static int ncaches;
static pthread_t sampler;
static bool sampler_started;

static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hm_cache *default_cache;

static uint64_t page_key(const struct hm_region *r, uint64_t idx)
{
	return ((uint64_t)r->id << 40) ^ idx;
}

/* With the cache lock held: gives a resident page's slot to the policy. */
static void list_page(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint32_t slot)
{
	struct hm_page *p = hm__page(r, idx, false);

	c->pops->insert(c->pstate, slot, page_key(r, idx));
	atomic_fetch_or(&p->st, HM_PG_LISTED);
}

/* With the cache lock held: takes a page out of the policy, if it is in. */
static void unlist_page(struct hm_cache *c, struct hm_page *p)
{
	if (atomic_fetch_and(&p->st, ~HM_PG_LISTED) & HM_PG_LISTED)
		c->pops->remove(c->pstate, p->slot);
}

static bool victim_before(const struct victim *x, const struct victim *y)
{
	if (x->r != y->r)
		return (uintptr_t)x->r < (uintptr_t)y->r;
	return x->idx < y->idx;
}

/*
 * Sorts victims by region and page, in place: eviction may run in a SIGBUS
 * handler, where qsort (which may allocate) is not allowed. Shell sort with
 * Ciura's gaps; batches are at most MAX_BATCH long.
 */
static void sort_victims(struct victim *v, uint32_t n)
{
	static const uint32_t gaps[] = { 301, 132, 57, 23, 10, 4, 1 };

	for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
		uint32_t gap = gaps[g];
		for (uint32_t i = gap; i < n; i++) {
			struct victim t = v[i];
			uint32_t j = i;
			for (; j >= gap && victim_before(&t, &v[j - gap]); j -= gap)
				v[j] = v[j - gap];
			v[j] = t;
		}
	}
}

#ifndef PIDFD_SELF_THREAD_GROUP
#define PIDFD_SELF_THREAD_GROUP (-10001) /* <linux/pidfd.h> of recent kernels: this process */
#endif

/* 0: not tried yet; 1: process_madvise() of our own pages works; -1: it does not. */
static _Atomic int vec_zap;

int hm__zap_vector(int set)
{
	if (set)
		atomic_store(&vec_zap, set > 0 ? 0 : -1);
	return atomic_load(&vec_zap);
}

/* MADV_DONTNEED of the runs: in one call when the kernel allows it, else one per run. */
static void dontneed_runs(struct hm_region *r, const struct hm_run *run, uint32_t n)
{
	static __thread struct iovec iov[HM_ZAP_RUNS];
	int saved = errno, ok = atomic_load_explicit(&vec_zap, memory_order_relaxed);
	size_t total = 0;

	if (n > 1 && n <= HM_ZAP_RUNS && ok >= 0) {
		for (uint32_t i = 0; i < n; i++) {
			iov[i].iov_base = r->base + (run[i].idx << r->ps_shift);
			iov[i].iov_len = (size_t)run[i].n << r->ps_shift;
			total += iov[i].iov_len;
		}
		/* The kernel takes at most about 2 GiB per call. */
		if (total <= (1ul << 30)) {
			long done = syscall(SYS_process_madvise, PIDFD_SELF_THREAD_GROUP, iov,
					    (size_t)n, MADV_DONTNEED, 0u);
			if (done == (long)total) {
				if (!ok)
					atomic_store(&vec_zap, 1);
				errno = saved;
				return;
			}
			/* Refused the first time: this kernel cannot (an older one). */
			if (done < 0 && !ok &&
			    (errno == EINVAL || errno == EBADF || errno == ENOSYS ||
			     errno == EPERM || errno == ESRCH))
				atomic_store(&vec_zap, -1);
		}
	}
	/* One call per run; a run zapped twice after a partial success is harmless. */
	for (uint32_t i = 0; i < n; i++)
		madvise(r->base + (run[i].idx << r->ps_shift), (size_t)run[i].n << r->ps_shift,
			MADV_DONTNEED);
	errno = saved;
}

void hm__zap_runs(struct hm_region *r, const struct hm_run *run, uint32_t n)
{
	const struct hm_engine_info *info;
	bool scan;

	if (!n)
		return;
	if (!r->wp) {
		dontneed_runs(r, run, n);
		return;
	}
	/* See harvest_lock: a sync's scan must not fall between the zap and ours. */
	pthread_mutex_lock(&r->harvest_lock);
	dontneed_runs(r, run, n);
	scan = !hm__engine_start(&info) && info->wp_async;
	for (uint32_t i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)r->base + (run[i].idx << r->ps_shift);
		size_t len = (size_t)run[i].n << r->ps_shift;
		/* A scan that fails has lost what the zap knew: take every page as written. */
		if (scan && ((r->flags & HM_HUGETLB)
				     ? hm__pagemap_unmarked(a, a + len, hm__mark_written, r)
				     : hm__pagemap_harvest(a, a + len, false, hm__mark_written, r)))
			hm__mark_written(r, a, len);
	}
	pthread_mutex_unlock(&r->harvest_lock);
}

void hm__zap(struct hm_region *r, uint64_t idx, uint64_t n)
{
	const struct hm_run one = { idx, n };

	hm__zap_runs(r, &one, 1);
}

/*
 * Runs of contiguous pages among victims v[a..b) of one region, sorted by
 * page, into run[]; returns how many.
 */
static uint32_t victim_runs(const struct victim *v, uint32_t a, uint32_t b, struct hm_run *run)
{
	uint32_t n = 0;

	for (uint32_t i = a, j; i < b; i = j) {
		for (j = i + 1; j < b && v[j].idx == v[j - 1].idx + 1; j++)
			;
		run[n].idx = v[i].idx;
		run[n].n = v[j - 1].idx - v[i].idx + 1;
		n++;
	}
	return n;
}

/* Frees the frames of pages [idx, idx+n) of r. */
static void punch(struct hm_region *r, uint64_t idx, uint64_t n)
{
	fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  (off_t)(idx << r->ps_shift), (off_t)(n << r->ps_shift));
}

/*
 * Evicts held victims (EVICTING). Returns 0 if every victim was freed, or
 * the first write-back error (those victims stay resident and dirty).
 */
static int evict(struct hm_cache *c, struct victim *v, uint32_t n, uint32_t *nfreed)
{
	static __thread struct hm_run runs[MAX_BATCH];
	/*
	 * A store that failed a write-back of this batch has had its whole
	 * timeout, with its retries: the batch's other runs to it fail at once
	 * (they stay dirty), or a batch of k runs would hold its pages, and a
	 * fault waiting for room, for k timeouts.
	 */
	struct hm_store *failed_store = NULL;
	int failed_rc = 0;
	int err = 0;
	uint32_t a, b, i, j;
	uint64_t ok0 = atomic_load_explicit(&c->wb_ok, memory_order_relaxed);

	sort_victims(v, n);
	for (a = 0; a < n; a = b) {
		struct hm_region *r = v[a].r;

		for (b = a; b < n && v[b].r == r; b++)
			;
		/*
		 * Steps 2 and 3: zap and harvest every run at once. A read-only
		 * region has nothing to harvest and the punch would unmap its
		 * pages, but a punch per run flushes the TLB once per run; after
		 * one batched zap the punches find nothing mapped.
		 */
		uint32_t nr = victim_runs(v, a, b, runs);
		if (r->wp || nr > 1)
			hm__zap_runs(r, runs, nr);
		/* Step 4: write back runs of dirty victims. */
		for (i = a; i < b; i = j) {
			struct hm_page *p = hm__page(r, v[i].idx, false);
			if (!(atomic_load(&p->st) & HM_PG_DIRTY) || v[i].discard) {
				j = i + 1;
				continue;
			}
			for (j = i + 1; j < b && v[j].idx == v[j - 1].idx + 1 && !v[j].discard &&
					(atomic_load(&hm__page(r, v[j].idx, false)->st) & HM_PG_DIRTY);
			     j++)
				;
			int rc = r->store == failed_store
					 ? failed_rc
					 : hm__writeback_run(r, v[i].idx, v[j - 1].idx - v[i].idx + 1);
			if (rc == -ENOSPC) {
				/*
				 * No room for some page of the run (a tier chain whose
				 * tier for it is full: a binding). The others may fit,
				 * and trying them costs no store timeout: page by page,
				 * and the batch's later runs are tried too.
				 */
				for (uint32_t k = i; k < j; k++) {
					struct hm_page *q = hm__page(r, v[k].idx, false);
					int one = j - i > 1 ? hm__writeback_run(r, v[k].idx, 1) : rc;
					if (one) {
						v[k].failed = true;
						if (!err)
							err = one;
					} else {
						atomic_fetch_and(&q->st, ~HM_PG_DIRTY);
					}
				}
				continue;
			}
			if (rc && !failed_store) {
				failed_store = r->store;
				failed_rc = rc;
			}
			for (uint32_t k = i; k < j; k++) {
				struct hm_page *q = hm__page(r, v[k].idx, false);
				if (rc) {
					v[k].failed = true;
				} else {
					atomic_fetch_and(&q->st, ~HM_PG_DIRTY);
				}
			}
			if (rc && !err)
				err = rc;
		}
		/* Step 5: free the frames of the victims that are clean now. */
		for (i = a; i < b; i = j) {
			if (v[i].failed) {
				j = i + 1;
				continue;
			}
			for (j = i + 1; j < b && !v[j].failed && v[j].idx == v[j - 1].idx + 1; j++)
				;
			punch(r, v[i].idx, v[j - 1].idx - v[i].idx + 1);
		}
		for (i = a; i < b; i++) {
			struct hm_page *p = hm__page(r, v[i].idx, false);
			uint32_t old;
			if (v[i].failed)
				old = atomic_exchange(&p->st, HM_ST_RESIDENT | HM_PG_DIRTY |
								  HM_PG_UNMAPPED);
			else
				old = atomic_exchange(&p->st, HM_ST_EMPTY);
			v[i].waiters = old & HM_PG_WAITERS;
			if (!v[i].failed && (old & HM_PG_RA)) {
				hm__count(&r->ctr, prefetch_wasted, 1);
				hm__count(&c->ctr, prefetch_wasted, 1);
			}
		}
	}

	/*
	 * Wake before `evicting` drops: once it is zero an unmap may free the
	 * region's page directory, which hm__page_wake() reads.
	 */
	for (i = 0; i < n; i++)
		if (v[i].waiters)
			hm__page_wake(v[i].r, v[i].idx, 1);

	pthread_mutex_lock(&c->lock);
	*nfreed = 0;
	for (i = 0; i < n; i++) {
		struct hm_region *r = v[i].r;
		if (v[i].failed) {
			list_page(c, r, v[i].idx, v[i].slot);
		} else {
			c->slots[v[i].slot].region = NULL;
			c->free_slots[c->nfree++] = v[i].slot;
			c->resident -= r->ps;
			atomic_fetch_sub(&r->resident_pages, 1);
			hm__count(&r->ctr, evictions, 1);
			hm__count(&c->ctr, evictions, 1);
			(*nfreed)++;
		}
		atomic_fetch_sub(&r->evicting, 1);
	}
	/*
	 * hm_bind()'s own drop toward a full tier fails by design (its pages
	 * stay in DRAM): that says nothing of the store, and must not make
	 * other threads' faults give up.
	 */
	/*
	 * Nor does -ENOSPC: a tier chain with no room for these pages (bound
	 * to a full tier, say) may well have room for others, and trying
	 * them costs no store timeout; make_room() bounds its own tries.
	 */
	if (err && !*nfreed && !hm__chain_dest_strict && err != -ENOSPC) {
		c->wb_stuck++;
		c->wb_stuck_err = err;
		c->wb_stuck_ok = ok0;
		c->wb_stuck_ns = hm__now_ns();
	} else if (*nfreed) {
		c->wb_stuck_ns = 0;
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return err;
}

/*
 * Under the lock: takes victims from the drop-behind runs, newest run first
 * and its last page first, so that a loop over more data than the cache
 * keeps what it read first (as MRU would) and a scan does not push other
 * regions' pages out. Pages that are not resident and listed, or are busy,
 * are passed over: the run only says where the reader has been.
 */
static uint32_t pick_behind(struct hm_cache *c, struct victim *v, uint32_t k, uint64_t *got,
			    uint64_t want, uint32_t max)
{
	while (*got < want && k < max && c->behind_len) {
		struct hm_behind *b =
		    &c->behind[(c->behind_head + c->behind_len - 1) % HM_BEHIND_RUNS];
		if (!b->n || b->r->dying) {
			c->behind_len--;
			continue;
		}
		uint64_t idx = b->idx + --b->n;
		struct hm_page *p = hm__page(b->r, idx, false);
		if (!p)
			continue;
		uint32_t st = atomic_load(&p->st);
		bool taken = false;
		while ((st & HM_ST_MASK) == HM_ST_RESIDENT && (st & HM_PG_LISTED) &&
		       !(st & (HM_PG_BUSY | HM_PG_PINNED))) {
			if (atomic_compare_exchange_weak(
				&p->st, &st, (st & ~(HM_ST_MASK | HM_PG_LISTED)) | HM_ST_EVICTING)) {
				taken = true;
				break;
			}
		}
		if (!taken)
			continue;
		c->pops->remove(c->pstate, p->slot);
		atomic_fetch_add(&b->r->evicting, 1);
		v[k].r = b->r;
		v[k].idx = idx;
		v[k].slot = p->slot;
		v[k].failed = v[k].waiters = v[k].discard = false;
		k++;
		*got += b->r->ps;
	}
	return k;
}

void hm__cache_behind(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint32_t w)
{
	uint64_t lo;

	if (idx <= w)
		return;
	lo = idx > 2ull * w ? idx - 2ull * w : 0;
	pthread_mutex_lock(&c->lock);
	if (c->behind_len == HM_BEHIND_RUNS) {
		c->behind_head = (c->behind_head + 1) % HM_BEHIND_RUNS;
		c->behind_len--;
	}
	c->behind[(c->behind_head + c->behind_len++) % HM_BEHIND_RUNS] =
	    (struct hm_behind){.r = r, .idx = lo, .n = (uint32_t)(idx - w - lo)};
	pthread_mutex_unlock(&c->lock);
}

/* Under the lock: forgets a region's drop-behind runs. */
static void behind_forget(struct hm_cache *c, struct hm_region *r)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < c->behind_len; i++) {
		struct hm_behind b = c->behind[(c->behind_head + i) % HM_BEHIND_RUNS];
		if (b.r != r)
			c->behind[(c->behind_head + n++) % HM_BEHIND_RUNS] = b;
	}
	c->behind_len = n;
}

/*
 * Under the lock: a policy's answer that victim() may not give, said once
 * per cache on stderr (the fault path, or the background evictor, has
 * nobody to return it to) and in this thread's hm_errormsg().
 */
static void victim_broken(struct hm_cache *c, int rc, uint32_t s)
{
	char what[96];

	if (rc)
		snprintf(what, sizeof what, "returned %d (nothing resident) while pages are resident",
			 rc);
	else if (s >= c->capacity)
		snprintf(what, sizeof what, "returned slot %u, out of range (capacity %u)", s,
			 c->capacity);
	else
		snprintf(what, sizeof what, "returned slot %u, which it does not hold (free, or "
					    "chosen already)", s);
	hm__error(-EPROTO, "cache policy '%s' is broken: victim() %s; the cache evicts pages "
			   "it finds itself instead", c->pops->name, what);
	if (!c->victim_warned) {
		/* One write(2), not stdio: this may run in a SIGBUS handler. */
		char line[512];
		int n = snprintf(line, sizeof line, "hmmap: %s\n", hm_errormsg());
		c->victim_warned = true;
		if (n > 0) {
			ssize_t w = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
			(void)w; /* nothing to do about a failed message */
		}
	}
}

/*
 * Under the lock: the policy's next victim, its page taken out of the
 * policy's resident set (LISTED cleared), or -ENOENT if none is listed.
 * policy.h promises a resident slot the policy has just forgotten; a
 * plug-in that breaks the promise (a slot out of range, or free, or chosen
 * already, or -ENOENT while pages are listed) must not crash the process on
 * the fault path, as a wild slot would, nor fail faults with a cache that
 * could make room. Its answer is reported and replaced by the next listed
 * page a scan of the slots finds, which the policy is told to forget.
 */
static int next_victim(struct hm_cache *c, uint32_t *slot)
{
	uint32_t s = UINT32_MAX;
	int rc = c->pops->victim(c->pstate, &s);

	if (!rc && s < c->capacity && c->slots[s].region) {
		struct hm_page *p = hm__page(c->slots[s].region, c->slots[s].idx, false);
		if (p && (atomic_fetch_and(&p->st, ~HM_PG_LISTED) & HM_PG_LISTED)) {
			*slot = s;
			return 0;
		}
	}
	/* Nothing, or a wrong answer: rare for -ENOENT, since make_room() waits after one. */
	/* Slots from c->fresh on were never used. */
	for (uint32_t i = 0; i < c->fresh; i++) {
		uint32_t f = (c->victim_hand + i) % c->fresh;
		struct hm_region *r = c->slots[f].region;
		struct hm_page *p = r ? hm__page(r, c->slots[f].idx, false) : NULL;
		if (!p || !(atomic_load(&p->st) & HM_PG_LISTED))
			continue;
		victim_broken(c, rc, s);
		c->victim_hand = f + 1;
		atomic_fetch_and(&p->st, ~HM_PG_LISTED);
		c->pops->remove(c->pstate, f);
		*slot = f;
		return 0;
	}
	if (!rc)
		victim_broken(c, rc, s);
	return -ENOENT;
}

/*
 * Under the lock: asks the policy for victims until they hold `want` bytes
 * (at least one page, at most max pages) and holds each (RESIDENT ->
 * EVICTING). A page that is busy right now goes back to the policy as if
 * inserted again. Batches are bytes, not pages: a batch of 64 pages of
 * 2 MiB would empty a small cache of large pages at every miss.
 */
static uint32_t pick_victims(struct hm_cache *c, struct victim *v, uint64_t want, uint32_t max,
			     uint32_t *busy)
{
	uint32_t k = 0, skipped = 0, skip_max;
	uint64_t got = 0;

	if (max > MAX_BATCH)
		max = MAX_BATCH;
	/* Busy pages passed over: as many as 4 KiB pages wanted, up to max. */
	skip_max = want / 4096 < max ? (uint32_t)(want / 4096) : max;
	k = pick_behind(c, v, k, &got, want, max);
	while (got < want && k < max && skipped <= skip_max) {
		uint32_t s;
		if (next_victim(c, &s))
			break;
		struct hm_region *r = c->slots[s].region;
		uint64_t idx = c->slots[s].idx;
		struct hm_page *p = hm__page(r, idx, false);
		uint32_t st = atomic_load(&p->st);
		for (;;) {
			if ((st & HM_ST_MASK) != HM_ST_RESIDENT || (st & (HM_PG_BUSY | HM_PG_PINNED)))
				break;
			if (atomic_compare_exchange_weak(&p->st, &st,
							 (st & ~HM_ST_MASK) | HM_ST_EVICTING))
				break;
		}
		if ((st & HM_ST_MASK) != HM_ST_RESIDENT || (st & (HM_PG_BUSY | HM_PG_PINNED))) {
			list_page(c, r, idx, s);
			skipped++;
			continue;
		}
		atomic_fetch_add(&r->evicting, 1);
		v[k].r = r;
		v[k].idx = idx;
		v[k].slot = s;
		v[k].failed = v[k].waiters = v[k].discard = false;
		k++;
		got += r->ps;
	}
	*busy = skipped;
	return k;
}

static void timed_wait(struct hm_cache *c, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)ms * 1000 * 1000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&c->cond, &c->lock, &ts);
}

/*
 * With the lock held: evicts until `need` more bytes fit in the budget.
 * Returns 0, or an error with the lock still held.
 */
static int make_room(struct hm_cache *c, uint64_t need)
{
	static __thread struct victim v[MAX_BATCH];
	int waits = 0;
	uint64_t stuck0 = c->wb_stuck;
	bool mine = false; /* this thread's last batch freed nothing: write-back failed */
	/*
	 * Batches in a row that freed nothing because the store had no room
	 * for them (-ENOSPC): failed pages go back to the policy, so the next
	 * batches take others; once they could have gone round every page,
	 * there is no room.
	 */
	uint64_t barren = 0, barren_max = c->budget / 4096 / (c->batch ? c->batch : 1) + 16;

	while (c->resident + need > c->budget) {
		/*
		 * A batch (this thread's or another's) freed nothing because its
		 * write-back failed: the store has already had its whole timeout,
		 * with its own retries, and the pages left are the same dirty
		 * ones. Trying them again, or waiting for other evictors to try,
		 * would make a fault wait several times the store's timeout.
		 * Another thread's batch counts only if no write-back has
		 * succeeded since it began: then the store works again (an
		 * hmsync() after it recovered, which a batch that began before
		 * may end after), and a fault must find room.
		 */
		bool fresh = atomic_load(&c->wb_ok) == c->wb_stuck_ok;
		if (mine || (fresh && c->wb_stuck != stuck0))
			return hm__error_errno(c->wb_stuck_err, "cannot make room in the cache: "
							       "write-back failed");
		/*
		 * A batch that freed nothing less than a second ago, and
		 * another in flight: batches are taken in the policy's order,
		 * and one that freed nothing found dirty pages only, which the
		 * next batch would find too; a batch of this thread's own would
		 * pay one timeout more. The batch in flight says whether the
		 * store is back: its failure ends this call above, and a batch
		 * that frees anything clears the mark. With none in flight this
		 * thread tries one itself: the server may be back (a fault or a
		 * resize right after a short outage used to fail here without
		 * trying, every page clean). A write-back that succeeded since
		 * that batch began ends the second at once.
		 */
		if (fresh && c->wb_stuck_ns && c->evictors &&
		    hm__now_ns() - c->wb_stuck_ns < 1000000000ull) {
			timed_wait(c, 50);
			continue;
		}
		uint64_t deficit = c->resident + need - c->budget;
		uint64_t want = (uint64_t)c->batch * 4096;
		uint32_t k, freed, busy;

		/* A batch, or the deficit if that is more. */
		if (deficit > want)
			want = deficit;
		k = pick_victims(c, v, want, MAX_BATCH, &busy);
		if (!k) {
			/* Pages held briefly (sampled, synced, loading) come back. */
			if ((c->loading || c->evictors || busy) && waits++ < 400) {
				timed_wait(c, 50);
				continue;
			}
			return hm__error(-ENOMEM, "cache budget of %llu bytes is exhausted: every "
						  "resident page is pinned or in flight (resident %llu, "
						  "loading %u, pinned %u, evicting %u, need %llu)",
					 (unsigned long long)c->budget,
					 (unsigned long long)c->resident, c->loading, c->pinned,
					 c->evictors, (unsigned long long)need);
		}
		c->evictors++;
		pthread_mutex_unlock(&c->lock);
		/* A batch that freed nothing ends the loop above, unless for -ENOSPC. */
		int erc = evict(c, v, k, &freed);
		pthread_mutex_lock(&c->lock);
		c->evictors--;
		/* As evict() counts a failed batch in wb_stuck. */
		mine = erc && !freed && !hm__chain_dest_strict && erc != -ENOSPC;
		if (freed) {
			barren = 0;
		} else if (erc == -ENOSPC) {
			if (++barren >= barren_max)
				return hm__error(-ENOSPC, "cannot make room in the cache: write-back "
							  "failed: no room in the store for any page "
							  "it could evict");
			/* Pages being loaded reach the policy soon: the next batch may take them. */
			if (c->loading || c->evictors)
				timed_wait(c, 5);
		}
	}
	return 0;
}

int hm__cache_shed(struct hm_cache *c, uint32_t n, uint32_t held)
{
	static __thread struct victim v[MAX_BATCH];
	uint32_t k, busy, freed = 0;

	pthread_mutex_lock(&c->lock);
	/*
	 * Pages held briefly come back: sampled ones, ones being evicted,
	 * and loads of other threads, whose pages reach the policy only after
	 * their faulting thread has gone on. Wait for them, up to 2 s.
	 */
	for (int waits = 0;; waits++) {
		k = pick_victims(c, v, UINT64_MAX, n, &busy);
		if (k || (!busy && !c->evictors && c->loading <= held) || waits >= 40)
			break;
		timed_wait(c, 50);
	}
	if (k) {
		c->evictors++;
		pthread_mutex_unlock(&c->lock);
		evict(c, v, k, &freed);
		pthread_mutex_lock(&c->lock);
		c->evictors--;
	}
	pthread_mutex_unlock(&c->lock);
	return freed ? 0 : -ENOMEM;
}

int hm__cache_reserve(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint32_t n,
		      uint32_t *slots)
{
	uint64_t need = (uint64_t)r->ps * n;
	int rc;

	pthread_mutex_lock(&c->lock);
	if (c->pops->miss)
		for (uint32_t i = 0; i < n; i++)
			c->pops->miss(c->pstate, page_key(r, idx + i));
	rc = make_room(c, need);
	if (!rc && (uint64_t)c->nfree + (c->capacity - c->fresh) < n)
		rc = hm__error(-ENOMEM, "cache is out of slots");
	if (!rc) {
		for (uint32_t i = 0; i < n; i++)
			slots[i] = c->nfree ? c->free_slots[--c->nfree] : c->fresh++;
		c->resident += need;
		c->loading += n;
		/* Counted with the cache's: the pages are visible before insert(). */
		atomic_fetch_add(&r->resident_pages, n);
		if (c->reclaimer_on && c->resident + c->low > c->budget)
			pthread_cond_signal(&c->reclaim_cond);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/*
 * The background evictor: when free room falls under the low watermark it
 * evicts batches until the high watermark is free, so that faults find room
 * without evicting themselves. It never lets the budget be exceeded (a
 * fault that finds no room still evicts directly); it only moves the work
 * off the fault path, into time a disk-bound workload leaves idle.
 */
static void *reclaim_main(void *arg)
{
	static __thread struct victim v[MAX_BATCH];
	struct hm_cache *c = arg;

	hm__block_signals();
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		struct timespec ts;
		uint32_t k, busy, freed;
		int rc = 0;

		while (!c->stop && c->resident + c->high > c->budget) {
			k = pick_victims(c, v, (uint64_t)c->batch * 4096, MAX_BATCH, &busy);
			if (!k)
				break;
			c->evictors++;
			pthread_mutex_unlock(&c->lock);
			rc = evict(c, v, k, &freed);
			pthread_mutex_lock(&c->lock);
			c->evictors--;
			if (rc && !freed)
				break; /* the store fails: do not spin, retry later */
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (!c->stop)
			pthread_cond_timedwait(&c->reclaim_cond, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void set_watermarks(struct hm_cache *c)
{
	uint64_t batch = (uint64_t)c->batch * 4096;

	c->low = 2 * batch;
	if (c->low > c->budget / 16)
		c->low = c->budget / 16;
	c->high = 2 * c->low;
}

void hm__cache_settle(struct hm_cache *c, unsigned max_ms)
{
	uint64_t end = hm__now_ns() + (uint64_t)max_ms * 1000000;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		/* A reclaim the background evictor owes: asked for now, not at its tick. */
		bool reclaim = c->reclaimer_on && c->resident + c->high > c->budget;
		if ((!c->loading && !c->evictors && !reclaim) || hm__now_ns() >= end)
			break;
		if (reclaim)
			pthread_cond_signal(&c->reclaim_cond);
		timed_wait(c, 2);
	}
	pthread_mutex_unlock(&c->lock);
}

bool hm__cache_room(struct hm_cache *c, uint64_t bytes)
{
	pthread_mutex_lock(&c->lock);
	bool room = c->resident + bytes + c->low <= c->budget;
	pthread_mutex_unlock(&c->lock);
	return room;
}

void hm__cache_unreserve(struct hm_cache *c, struct hm_region *r, uint32_t n,
			  const uint32_t *slots)
{
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < n; i++) {
		c->slots[slots[i]].region = NULL;
		c->free_slots[c->nfree++] = slots[i];
	}
	c->resident -= (uint64_t)r->ps * n;
	c->loading -= n;
	atomic_fetch_sub(&r->resident_pages, n);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void hm__cache_insert(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint32_t n,
		      const uint32_t *slots)
{
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < n; i++) {
		c->slots[slots[i]].region = r;
		c->slots[slots[i]].idx = idx + i;
		list_page(c, r, idx + i, slots[i]);
	}
	c->loading -= n;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void hm__cache_hit(struct hm_cache *c, struct hm_page *p)
{
	/*
	 * A lock-free hit is a flag store into the slot's own data, harmless
	 * even if the page left the policy a moment ago (insert() resets it).
	 */
	if (c->concurrent_hit) {
		if (atomic_load(&p->st) & HM_PG_LISTED)
			c->pops->hit(c->pstate, p->slot);
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (atomic_load(&p->st) & HM_PG_LISTED)
		c->pops->hit(c->pstate, p->slot);
	pthread_mutex_unlock(&c->lock);
}

/* Under c->lock: gives back slot s, which holds a page of r being detached. */
static void detach_slot(struct hm_cache *c, struct hm_region *r, uint32_t s)
{
	struct hm_page *p = hm__page(r, c->slots[s].idx, false);

	unlist_page(c, p);
	uint32_t st = atomic_exchange(&p->st, HM_ST_EMPTY);
	if (st & HM_PG_PINNED) {
		c->pinned--;
		c->pinned_bytes -= r->ps;
		if (!c->pinned)
			c->pin_ps = 0;
	}
	c->slots[s].region = NULL;
	c->free_slots[c->nfree++] = s;
	c->resident -= r->ps;
}

void hm__cache_detach(struct hm_cache *c, struct hm_region *r)
{
	pthread_mutex_lock(&c->lock);
	r->dying = true;
	behind_forget(c, r);
	while (atomic_load(&r->evicting))
		timed_wait(c, 50);
	/*
	 * Whichever is shorter: the region's pages (its table, skipping the
	 * chunks never touched) or the cache's slots. A budget far above the
	 * region's size (HMMAP_CACHE_SIZE=1T) made every unmap walk hundreds
	 * of millions of slots. A slot is the page's when it names the page
	 * back: a page's own slot field is stale once the page left.
	 */
	if (r->npages < c->capacity) {
		for (uint64_t i = 0; i < r->npages; i++) {
			struct hm_page *p = hm__page(r, i, false);
			if (!p) {
				i |= HM_CHUNK_PAGES - 1; /* a chunk never allocated */
				continue;
			}
			uint32_t s = p->slot;
			if (s < c->capacity && c->slots[s].region == r && c->slots[s].idx == i)
				detach_slot(c, r, s);
		}
	} else {
		for (uint32_t s = 0; s < c->capacity; s++)
			if (c->slots[s].region == r)
				detach_slot(c, r, s);
	}
	atomic_store(&r->resident_pages, 0);
	c->nregions--;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int hm__cache_drop_range(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint64_t n,
			 unsigned how)
{
	static __thread struct victim v[MAX_BATCH];
	int err = 0;

	/*
	 * Pages held for a moment (sampled, mapped again after a hint fault,
	 * loading) are waited for, not skipped: a page left behind would be
	 * read from the cache where the caller asked for the store.
	 */
	for (int pass = 0; pass < 1000; pass++) {
		uint64_t i = idx, end = idx + n;
		struct hm_page *held = NULL;
		uint32_t held_st = 0;

		while (i < end) {
			uint32_t k = 0, freed;

			pthread_mutex_lock(&c->lock);
			for (; i < end && k < MAX_BATCH; i++) {
				struct hm_page *p = hm__page(r, i, false);
				if (!p) {
					/* A whole absent chunk: skip to the next one. */
					i = (i | (HM_CHUNK_PAGES - 1));
					continue;
				}
				uint32_t st = atomic_load(&p->st);
				if ((st & HM_PG_PINNED) || (st & HM_ST_MASK) == HM_ST_EMPTY ||
				    (st & HM_ST_MASK) == HM_ST_GONE)
					continue;
				/* Loading, evicting, held, or not yet (again) in the policy. */
				if ((st & HM_ST_MASK) != HM_ST_RESIDENT || (st & HM_PG_BUSY) ||
				    !(st & HM_PG_LISTED)) {
					if (!held) {
						held = p;
						held_st = st;
					}
					continue;
				}
				if ((how & HM_DROP_CLEAN) && (st & HM_PG_DIRTY))
					continue;
				if (!atomic_compare_exchange_strong(
					    &p->st, &st,
					    (st & ~(HM_ST_MASK | HM_PG_LISTED)) | HM_ST_EVICTING)) {
					i--; /* changed under us: look again */
					continue;
				}
				c->pops->remove(c->pstate, p->slot);
				atomic_fetch_add(&r->evicting, 1);
				v[k].r = r;
				v[k].idx = i;
				v[k].slot = p->slot;
				v[k].failed = v[k].waiters = false;
				v[k].discard = how & HM_DROP_DISCARD;
				k++;
			}
			c->evictors++;
			pthread_mutex_unlock(&c->lock);
			if (k) {
				int rc = evict(c, v, k, &freed);
				if (rc && !err)
					err = rc;
			}
			pthread_mutex_lock(&c->lock);
			c->evictors--;
			pthread_mutex_unlock(&c->lock);
		}
		if (!held || err)
			break;
		if (hm__page_set_waiters(held, held_st))
			hm__page_wait(held, held_st | HM_PG_WAITERS);
	}
	return err;
}

/*
 * Under the lock. What pins may hold: the budget less the room faults need,
 * the low watermark and at least two pages. One instruction may touch two
 * pages (an unaligned store, a vector copy across a page boundary), and
 * both must be resident at once for it to complete: with room for one
 * page, its two faults evict each other for ever.
 */
static uint64_t pin_limit(const struct hm_cache *c, uint64_t ps)
{
	uint64_t reserve = c->low > 2 * ps ? c->low : 2 * ps;

	return c->budget > reserve ? c->budget - reserve : 0;
}

uint64_t hm__cache_pin_limit(struct hm_cache *c, uint64_t ps)
{
	pthread_mutex_lock(&c->lock);
	uint64_t lim = pin_limit(c, ps);
	pthread_mutex_unlock(&c->lock);
	return lim;
}

uint64_t hm__cache_pinned(struct hm_cache *c)
{
	pthread_mutex_lock(&c->lock);
	uint64_t b = c->pinned_bytes;
	pthread_mutex_unlock(&c->lock);
	return b;
}

int hm__cache_pin(struct hm_cache *c, struct hm_region *r, uint64_t idx)
{
	struct hm_page *p = hm__page(r, idx, false);
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	uint32_t st = p ? atomic_load(&p->st) : 0;
	/*
	 * A page is RESIDENT a moment before its loader inserts it into the
	 * policy. Pinned then, it would be listed by the insert while pinned
	 * and again by the unpin: a slot inserted twice breaks the policy's
	 * lists. Such a page is still in flight.
	 */
	if (!p || (st & HM_ST_MASK) != HM_ST_RESIDENT || c->slots[p->slot].region != r ||
	    c->slots[p->slot].idx != idx) {
		rc = -EAGAIN;
	} else if (!(st & HM_PG_PINNED)) {
		if (c->pinned_bytes + r->ps > pin_limit(c, r->ps)) {
			rc = hm__error(-ENOMEM, "pinning would leave faults no room in the cache "
						"budget of %llu bytes (%llu pinned; pins may hold %llu)",
				       (unsigned long long)c->budget,
				       (unsigned long long)c->pinned_bytes,
				       (unsigned long long)pin_limit(c, r->ps));
		} else {
			atomic_fetch_or(&p->st, HM_PG_PINNED);
			unlist_page(c, p);
			c->pinned++;
			c->pinned_bytes += r->ps;
			if (r->ps > c->pin_ps)
				c->pin_ps = r->ps;
			atomic_fetch_add(&r->pinned_pages, 1);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void hm__cache_unpin(struct hm_cache *c, struct hm_region *r, uint64_t idx)
{
	struct hm_page *p = hm__page(r, idx, false);

	if (!p)
		return;
	pthread_mutex_lock(&c->lock);
	if (atomic_load(&p->st) & HM_PG_PINNED) {
		atomic_fetch_and(&p->st, ~HM_PG_PINNED);
		list_page(c, r, idx, p->slot);
		c->pinned--;
		c->pinned_bytes -= r->ps;
		if (!c->pinned)
			c->pin_ps = 0;
		atomic_fetch_sub(&r->pinned_pages, 1);
	}
	pthread_mutex_unlock(&c->lock);
}

/*
 * The sampler: CLOCK and its kin learn about references only from faults,
 * because a hit on a mapped page is invisible. Each tick it unmaps a bounded
 * number of resident pages (HMMAP_SAMPLE_RATE per second), sweeping the
 * slots in order; the next touch of such a page is a cheap minor fault that
 * maps it again and reports a hit to the policy.
 *
 * The rate is per cache. With HMMAP_SAMPLE_RATE=auto (the default) it is a
 * cost budget: hm__sample_rate_at() picks it from the fault mode, from
 * whether the cache evicted in the last 5 s (its eviction counter, so with
 * HMMAP_STATS=0 a cache never counts as evicting) and from the kernel time
 * the process spent per sampled page, measured here each second. The mode is known once
 * the engine has started; the sampler asks only when some cache holds
 * resident pages (so a region, and the engine, exist) and never starts the
 * engine itself. An explicit rate is honoured as given, in batches of at
 * most MAX_BATCH pages, up to one sweep of each cache per tick.
 *
 * sample_cache() unmaps up to budget_pages (<= MAX_BATCH) pages of c from
 * *hand on, adds the slots it looked at to *swept and returns how many pages
 * it unmapped.
 */
static uint32_t sample_cache(struct hm_cache *c, uint32_t budget_pages, uint32_t *hand,
			     uint64_t *swept)
{
	static struct victim v[MAX_BATCH];
	uint32_t k = 0, scanned = 0, max_scan;

	pthread_mutex_lock(&c->lock);
	/* Never hold more than an eighth of the cache at once. */
	uint32_t limit = (uint32_t)((c->resident / 4096) / 8);
	if (budget_pages > limit)
		budget_pages = limit;
	/*
	 * The lock is held while the hand moves, and faults need it: look at
	 * a bounded number of slots per tick, however sparse the cache is.
	 */
	max_scan = budget_pages * 4 < c->capacity ? budget_pages * 4 : c->capacity;
	while (k < budget_pages && k < MAX_BATCH && scanned < max_scan) {
		uint32_t s = (*hand)++ % c->capacity;
		struct hm_region *r = c->slots[s].region;
		scanned++;
		if (!r || r->dying)
			continue;
		struct hm_page *p = hm__page(r, c->slots[s].idx, false);
		uint32_t st = atomic_load(&p->st);
		if ((st & HM_ST_MASK) != HM_ST_RESIDENT ||
		    (st & (HM_PG_BUSY | HM_PG_PINNED | HM_PG_UNMAPPED | HM_PG_KEEPMAP)))
			continue;
		if (!atomic_compare_exchange_strong(&p->st, &st, st | HM_PG_BUSY))
			continue;
		atomic_fetch_add(&r->evicting, 1); /* keeps r mapped meanwhile */
		v[k].r = r;
		v[k].idx = c->slots[s].idx;
		k++;
	}
	pthread_mutex_unlock(&c->lock);
	*swept += scanned;
	if (!k)
		return 0;
	sort_victims(v, k);
	for (uint32_t a = 0, b; a < k; a = b) {
		static struct hm_run runs[MAX_BATCH];
		for (b = a + 1; b < k && v[b].r == v[a].r; b++)
			;
		hm__zap_runs(v[a].r, runs, victim_runs(v, a, b, runs));
	}
	for (uint32_t i = 0; i < k; i++) {
		struct hm_page *p = hm__page(v[i].r, v[i].idx, false);
		uint32_t old = atomic_load(&p->st);
		while (!atomic_compare_exchange_weak(&p->st, &old,
						     (old & ~(HM_PG_BUSY | HM_PG_WAITERS)) |
							     HM_PG_UNMAPPED))
			;
		if (old & HM_PG_WAITERS)
			hm__page_wake(v[i].r, v[i].idx, 1);
	}
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < k; i++)
		atomic_fetch_sub(&v[i].r->evicting, 1);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return k;
}

/* With caches_lock held: whether any cache holds a resident page. */
static bool any_resident(void)
{
	bool yes = false;

	for (int i = 0; i < ncaches && !yes; i++) {
		pthread_mutex_lock(&caches[i]->lock);
		yes = caches[i]->resident > 0;
		pthread_mutex_unlock(&caches[i]->lock);
	}
	return yes;
}

/* Pages the cache has evicted so far (counted only with statistics on). */
static uint64_t evictions_of(struct hm_cache *c)
{
	uint64_t n = 0;

	for (int k = 0; k < HM_SHARDS; k++)
		n += atomic_load_explicit(&c->ctr.s[k].evictions, memory_order_relaxed);
	return n;
}

/* A cache counts as evicting for this many ticks (5 s) after an eviction. */
#define EVICTING_TICKS 100

/*
 * auto measures what sampling costs (hm__sample_rate_at()): the process's
 * kernel time over the pages sampled, per window of COST_TICKS ticks (1 s)
 * in which at least COST_MIN_PAGES were sampled, averaged with the previous
 * figure so that one odd second moves it only halfway.
 */
#define COST_TICKS 20
#define COST_MIN_PAGES 32

static uint64_t kernel_time_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (uint64_t)ru.ru_stime.tv_sec * 1000000000ull + (uint64_t)ru.ru_stime.tv_usec * 1000;
}

static void *sampler_main(void *arg)
{
	/* Per cache, matched by address: caches[] is reordered when one is freed. */
	static struct {
		struct hm_cache *c;
		uint32_t hand;
		uint32_t quiet; /* ticks since the cache last evicted */
		uint64_t evictions, carry;
	} st[64];
	const struct hm_env *env;
	const struct hm_engine_info *info;
	int mode = 0;
	bool known;
	/* auto: kernel ns per sampled page (0: not yet known), and its window. */
	uint64_t cost_ns = 0, win_pages = 0, win_t0 = 0;
	unsigned win_ticks = 0;

	hm__block_signals();
	if (hm__env(&env))
		return NULL;
	known = !env->sample_auto;
	for (;;) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		if (!known) {
			pthread_mutex_lock(&caches_lock);
			bool ready = any_resident();
			pthread_mutex_unlock(&caches_lock);
			if (!ready)
				continue;
			mode = hm__engine_start(&info) ? 0 : info->mode;
			known = true;
			win_t0 = kernel_time_ns();
		}
		uint64_t tick_pages = 0;
		pthread_mutex_lock(&caches_lock);
		for (int i = 0; i < ncaches; i++) {
			struct hm_cache *c = caches[i];
			uint64_t ev = evictions_of(c), rate, per_tick, left, swept = 0, before;

			if (st[i].c != c) {
				st[i].c = c;
				st[i].hand = 0;
				st[i].quiet = EVICTING_TICKS;
				st[i].evictions = ev;
				st[i].carry = 0;
			}
			if (ev != st[i].evictions) {
				st[i].evictions = ev;
				st[i].quiet = 0;
			} else if (st[i].quiet < EVICTING_TICKS) {
				st[i].quiet++;
			}
			rate = hm__sample_rate_at(env, mode, st[i].quiet < EVICTING_TICKS, cost_ns);
			/* Beyond every slot every tick, a higher rate changes nothing. */
			if (rate > (uint64_t)c->capacity * 20)
				rate = (uint64_t)c->capacity * 20;
			/* 20 ticks a second; the remainder carries, so 1250/s is not 1240/s. */
			st[i].carry += rate;
			per_tick = st[i].carry / 20;
			st[i].carry %= 20;
			/* Batches until the tick's share is unmapped or the hand went round. */
			for (left = per_tick; left && swept < c->capacity;) {
				before = swept;
				left -= sample_cache(c, left < MAX_BATCH ? (uint32_t)left : MAX_BATCH,
						     &st[i].hand, &swept);
				if (swept == before)
					break; /* nothing resident */
			}
			tick_pages += per_tick - left;
		}
		pthread_mutex_unlock(&caches_lock);
		if (!env->sample_auto)
			continue;
		win_pages += tick_pages;
		if (++win_ticks < COST_TICKS)
			continue;
		uint64_t t = kernel_time_ns();
		if (win_pages >= COST_MIN_PAGES && t >= win_t0) {
			uint64_t per = (t - win_t0) / win_pages;
			per = per ? per : 1;
			cost_ns = cost_ns ? (cost_ns + per) / 2 : per;
		}
		win_t0 = t;
		win_pages = 0;
		win_ticks = 0;
	}
	return NULL;
}

int hm_cache_new(struct hm_cache **out, size_t budget, const char *policy)
{
	const struct hm_policy_ops *ops;
	const struct hm_env *env;
	const char *opts;
	struct hm_cache *c;
	int rc;

	if (!out)
		return hm__error(-EINVAL, "hm_cache_new: NULL out-parameter");
	*out = NULL;
	rc = hm__env(&env);
	if (rc)
		return rc;
	if (budget < 4096)
		return hm__error(-EINVAL, "cache budget %zu is smaller than one page (4096)", budget);
	/*
	 * Slots are 32-bit, and a policy may name a few sentinels above its
	 * capacity (policy.h): 2^32 slots wrapped to none, and one fewer
	 * overflowed clock's arrays.
	 */
	if (budget > MAX_BUDGET)
		return hm__error(-EINVAL, "cache budget %zu is more than the most, %llu (16 TiB less 256 KiB)",
				 budget, (unsigned long long)MAX_BUDGET);
	rc = hm_policy_lookup(policy ? policy : "clock", &ops, &opts);
	if (rc)
		return rc;
	if (ops->abi != HM_POLICY_ABI)
		return hm__error(-EINVAL, "policy '%s' was built for ABI %u, not %u", ops->name,
				 ops->abi, HM_POLICY_ABI);
	if (ops->flags & HM_POLICY_REPLAY_ONLY)
		return hm__error(-EINVAL, "policy '%s' needs the future and works only in replay",
				 ops->name);
	/* Aligned for the counter shards, one cache line each. */
	if (posix_memalign((void **)&c, 64, sizeof *c))
		c = NULL;
	else
		memset(c, 0, sizeof *c);
	if (!c)
		return hm__error(-ENOMEM, "out of memory");
	c->budget = c->max_budget = budget;
	c->capacity = (uint32_t)(budget / 4096);
	c->slots = mmap(NULL, (size_t)c->capacity * sizeof *c->slots, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	c->free_slots = mmap(NULL, (size_t)c->capacity * sizeof *c->free_slots,
			     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->slots == MAP_FAILED || c->free_slots == MAP_FAILED) {
		rc = hm__error(-ENOMEM, "cannot allocate %u cache slots", c->capacity);
		goto fail;
	}
	/*
	 * Slots are handed out in order from `fresh` until they have all been
	 * used once, and from free_slots after: filling free_slots here wrote
	 * 4 bytes per 4 KiB of budget (1 GB for a budget of 1 TiB).
	 */
	c->nfree = 0;
	c->fresh = 0;
	c->batch = env->evict_batch < MAX_BATCH ? env->evict_batch : MAX_BATCH;
	if (c->batch > c->capacity / 2 && c->capacity >= 2)
		c->batch = c->capacity / 2;
	if (!c->batch)
		c->batch = 1;
	rc = ops->create(&c->pstate, c->capacity, opts);
	if (rc) {
		if (!*hm_errormsg())
			hm__error(rc, "policy '%s' rejected options '%s'", ops->name, opts);
		goto fail;
	}
	c->pops = ops;
	c->concurrent_hit = ops->flags & HM_POLICY_CONCURRENT_HIT;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	pthread_cond_init(&c->reclaim_cond, NULL);
	set_watermarks(c);
	if (c->low >= 4096 && !pthread_create(&c->reclaimer, NULL, reclaim_main, c))
		c->reclaimer_on = true;

	pthread_mutex_lock(&caches_lock);
	if (ncaches == (int)(sizeof caches / sizeof caches[0])) {
		pthread_mutex_unlock(&caches_lock);
		/* The reclaimer started above must not outlive c. */
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		pthread_cond_signal(&c->reclaim_cond);
		pthread_mutex_unlock(&c->lock);
		if (c->reclaimer_on)
			pthread_join(c->reclaimer, NULL);
		ops->destroy(c->pstate);
		rc = hm__error(-EMFILE, "too many caches (at most 64)");
		goto fail;
	}
	caches[ncaches++] = c;
	hm__stats_cache_add(c);
	if (!sampler_started && env->sample_rate) {
		if (!pthread_create(&sampler, NULL, sampler_main, NULL)) {
			pthread_detach(sampler);
			sampler_started = true;
		}
	}
	pthread_mutex_unlock(&caches_lock);
	*out = c;
	return 0;
fail:
	if (c->slots && c->slots != MAP_FAILED)
		munmap(c->slots, (size_t)c->capacity * sizeof *c->slots);
	if (c->free_slots && c->free_slots != MAP_FAILED)
		munmap(c->free_slots, (size_t)c->capacity * sizeof *c->free_slots);
	free(c);
	return rc;
}

static int cache_free(struct hm_cache *c, bool owner)
{
	pthread_mutex_lock(&c->lock);
	if (c->nregions) {
		pthread_mutex_unlock(&c->lock);
		return hm__error(-EBUSY, "cache still has %d region(s)", c->nregions);
	}
	if (c->chain_owned && !owner) {
		pthread_mutex_unlock(&c->lock);
		return hm__error(-EBUSY, "the cache belongs to a tier chain (hm_chain_cache()): "
					 "hm_store_close() of the chain frees it");
	}
	c->stop = true;
	pthread_cond_signal(&c->reclaim_cond);
	pthread_mutex_unlock(&c->lock);
	hm__stats_cache_del(c);
	if (c->reclaimer_on)
		pthread_join(c->reclaimer, NULL);
	pthread_mutex_lock(&caches_lock);
	for (int i = 0; i < ncaches; i++) {
		if (caches[i] == c) {
			caches[i] = caches[--ncaches];
			break;
		}
	}
	pthread_mutex_unlock(&caches_lock);
	pthread_mutex_lock(&default_lock);
	if (default_cache == c)
		default_cache = NULL;
	pthread_mutex_unlock(&default_lock);
	c->pops->destroy(c->pstate);
	munmap(c->slots, (size_t)c->capacity * sizeof *c->slots);
	munmap(c->free_slots, (size_t)c->capacity * sizeof *c->free_slots);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->reclaim_cond);
	free(c);
	return 0;
}

int hm_cache_free(struct hm_cache *c)
{
	if (!c)
		return hm__error(-EINVAL, "hm_cache_free: NULL cache");
	return cache_free(c, false);
}

int hm__cache_free_owned(struct hm_cache *c)
{
	int rc = cache_free(c, true);

	if (rc) {
		/* Regions of other stores still use it: theirs to free now. */
		pthread_mutex_lock(&c->lock);
		c->chain_owned = false;
		pthread_mutex_unlock(&c->lock);
	}
	return rc;
}

int hm_cache_resize(struct hm_cache *c, size_t budget)
{
	int rc;

	if (!c)
		return hm__error(-EINVAL, "hm_cache_resize: NULL cache");
	if (budget < 4096 || budget > c->max_budget)
		return hm__error(-EINVAL, "budget %zu is outside 4096..%llu (the budget the cache "
					  "was created with)",
				 budget, (unsigned long long)c->max_budget);
	pthread_mutex_lock(&c->lock);
	uint64_t old = c->budget;
	atomic_store_explicit((_Atomic uint64_t *)&c->budget, budget, memory_order_relaxed);
	set_watermarks(c);
	/*
	 * Pinned pages cannot be evicted: a budget they would fill, or leave
	 * less room than a fault needs, would make every later fault fail
	 * (SIGBUS). The pins' own limit holds for the new budget too.
	 */
	if (c->pinned && c->pinned_bytes > pin_limit(c, c->pin_ps)) {
		uint64_t lim = pin_limit(c, c->pin_ps);
		atomic_store_explicit((_Atomic uint64_t *)&c->budget, old, memory_order_relaxed);
		set_watermarks(c);
		pthread_mutex_unlock(&c->lock);
		return hm__error(-EBUSY, "budget %zu is too small for the %llu pinned bytes (pins "
					 "may hold %llu of it; hm_unpin() first)",
				 budget, (unsigned long long)c->pinned_bytes,
				 (unsigned long long)lim);
	}
	rc = make_room(c, 0);
	if (rc) {
		atomic_store_explicit((_Atomic uint64_t *)&c->budget,
				      old > c->resident ? old : c->resident, memory_order_relaxed);
		set_watermarks(c);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

size_t hm_cache_budget(const struct hm_cache *c)
{
	return c ? (size_t)hm__budget(c) : 0;
}

int hm_cache_default(struct hm_cache **out)
{
	const struct hm_env *env;
	int rc = 0;

	if (!out)
		return hm__error(-EINVAL, "hm_cache_default: NULL out-parameter");
	rc = hm__env(&env);
	if (rc)
		return rc;
	pthread_mutex_lock(&default_lock);
	if (!default_cache) {
		rc = hm_cache_new(&default_cache, env->cache_size, env->policy);
		if (!rc)
			default_cache->is_default = true;
		else /* the variables say what it was made of: name them */
			rc = hm__error_wrap(rc, "the default cache (HMMAP_CACHE_SIZE=%llu, "
						"HMMAP_POLICY='%s')",
					    (unsigned long long)env->cache_size, env->policy);
	}
	*out = default_cache;
	pthread_mutex_unlock(&default_lock);
	return rc;
}

/*
 * fork(): the child forgets the parent's caches, the default one among
 * them. Their reclaimers and the sampler do not exist in the child and
 * their locks may be held, so they are neither used nor freed (fork.c).
 */
void hm__cache_fork(int phase)
{
	switch (phase) {
	case HM_FORK_PREPARE:
		pthread_mutex_lock(&default_lock);
		pthread_mutex_lock(&caches_lock);
		break;
	case HM_FORK_PARENT:
		pthread_mutex_unlock(&caches_lock);
		pthread_mutex_unlock(&default_lock);
		break;
	case HM_FORK_CHILD:
		default_cache = NULL;
		ncaches = 0;
		sampler_started = false;
		pthread_mutex_unlock(&caches_lock);
		pthread_mutex_unlock(&default_lock);
		break;
	}
}

int hm_cache_stats(const struct hm_cache *c, struct hm_stats *s)
{
	if (!c || !s)
		return hm__error(-EINVAL, "hm_cache_stats: NULL argument");
	memset(s, 0, sizeof *s);
	hm__stats_fill(&c->ctr, s);
	s->dirty_pages = hm__stats_cache_dirty(c);
	pthread_mutex_lock((pthread_mutex_t *)&c->lock);
	s->resident_bytes = c->resident;
	s->pinned_pages = c->pinned;
	s->budget_bytes = c->budget;
	pthread_mutex_unlock((pthread_mutex_t *)&c->lock);
	return 0;
}
