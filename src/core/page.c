/* SPDX-License-Identifier: MIT */
/*
 * Page metadata: 8 bytes per page of mapping, allocated a chunk of 4096
 * entries at a time when a page in it is first touched. The directory of
 * chunk pointers is the only up-front cost (8 bytes per 16 MiB of a 4 KiB
 * page region), so a 1 TiB sparse mapping costs 512 KiB before any touch.
 * Chunks come from mmap, which is safe in a signal handler, and are
 * installed with a compare-and-swap so that racing faults agree.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

/* Set once by gone_init(); read by every walk, so atomic (plain loads on x86). */
static struct hm_page *_Atomic gone_chunk;

bool hm__chunk_all_gone(const struct hm_page *c)
{
	return c && c == gone_chunk;
}

struct hm_page *hm__page(struct hm_region *r, uint64_t idx, bool alloc)
{
	size_t d = (size_t)(idx >> HM_CHUNK_SHIFT);
	struct hm_page *chunk;

	if (idx >= r->npages)
		return NULL;
	chunk = atomic_load_explicit(&r->dir[d], memory_order_acquire);
	/*
	 * A chunk unmapped whole holds nothing a walk could want: every caller
	 * without `alloc` skips absent and GONE pages alike, and went through
	 * its 4096 entries one by one (hmunmap() of what was left of a sparse
	 * 32 TiB region took 44 s).
	 */
	if (!alloc && hm__chunk_all_gone(chunk))
		return NULL;
	if (!chunk) {
		struct hm_page *fresh, *expected = NULL;

		if (!alloc)
			return NULL;
		fresh = mmap(NULL, HM_CHUNK_PAGES * sizeof *fresh, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (fresh == MAP_FAILED)
			return NULL;
		if (atomic_compare_exchange_strong_explicit(&r->dir[d], &expected, fresh,
							    memory_order_acq_rel,
							    memory_order_acquire)) {
			chunk = fresh;
		} else {
			munmap(fresh, HM_CHUNK_PAGES * sizeof *fresh);
			chunk = expected;
		}
	}
	return &chunk[idx & (HM_CHUNK_PAGES - 1)];
}

/*
 * One chunk of GONE pages stands for every chunk that hmunmap() took out
 * whole before any page of it was touched: unmapping a sparse terabyte
 * allocates nothing. Nothing writes a GONE page, so regions share it.
 */
static pthread_once_t gone_once = PTHREAD_ONCE_INIT;

static void gone_init(void)
{
	struct hm_page *c = mmap(NULL, HM_CHUNK_PAGES * sizeof *c, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (c == MAP_FAILED)
		return;
	for (uint32_t i = 0; i < HM_CHUNK_PAGES; i++)
		atomic_init(&c[i].st, HM_ST_GONE);
	gone_chunk = c;
}

/* Marks EMPTY pages [i, end) of chunk c GONE; returns the pages that are neither. */
static int64_t chunk_gone(struct hm_region *r, struct hm_page *c, uint64_t base, uint64_t i,
			  uint64_t end)
{
	int64_t left = 0;

	for (; i < end; i++) {
		struct hm_page *p = &c[i - base];
		uint32_t st = atomic_load(&p->st);

		while ((st & HM_ST_MASK) == HM_ST_EMPTY &&
		       !atomic_compare_exchange_weak(&p->st, &st, HM_ST_GONE))
			;
		if ((st & HM_ST_MASK) == HM_ST_EMPTY) {
			if (st & HM_PG_WAITERS)
				hm__page_wake(r, i, 1);
		} else if ((st & HM_ST_MASK) != HM_ST_GONE) {
			left++;
		}
	}
	return left;
}

int64_t hm__pages_gone(struct hm_region *r, uint64_t idx, uint64_t n)
{
	uint64_t end = idx + n;
	int64_t left = 0;

	pthread_once(&gone_once, gone_init);
	if (!gone_chunk)
		return -ENOMEM;
	while (idx < end) {
		size_t d = (size_t)(idx >> HM_CHUNK_SHIFT);
		uint64_t base = (uint64_t)d << HM_CHUNK_SHIFT;
		uint64_t stop = base + HM_CHUNK_PAGES < end ? base + HM_CHUNK_PAGES : end;
		struct hm_page *c = atomic_load_explicit(&r->dir[d], memory_order_acquire);

		if (!c) {
			struct hm_page *fresh = gone_chunk;
			if (idx != base || stop - base < HM_CHUNK_PAGES) {
				/* Partly gone: a chunk of its own, the rest EMPTY. */
				fresh = mmap(NULL, HM_CHUNK_PAGES * sizeof *fresh,
					     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
					     0);
				if (fresh == MAP_FAILED)
					return -ENOMEM;
				for (uint64_t i = idx; i < stop; i++)
					atomic_init(&fresh[i - base].st, HM_ST_GONE);
			}
			if (atomic_compare_exchange_strong_explicit(&r->dir[d], &c, fresh,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				idx = stop;
				continue;
			}
			if (fresh != gone_chunk)
				munmap(fresh, HM_CHUNK_PAGES * sizeof *fresh);
		}
		if (c != gone_chunk)
			left += chunk_gone(r, c, base, idx, stop);
		idx = stop;
	}
	return left;
}

void hm__pages_ungone(struct hm_region *r, uint64_t idx, uint64_t n)
{
	uint64_t end = idx + n;

	while (idx < end) {
		size_t d = (size_t)(idx >> HM_CHUNK_SHIFT);
		uint64_t base = (uint64_t)d << HM_CHUNK_SHIFT;
		uint64_t stop = base + HM_CHUNK_PAGES < end ? base + HM_CHUNK_PAGES : end;
		struct hm_page *c = atomic_load(&r->dir[d]);

		if (c == gone_chunk) {
			/* Nothing reads a GONE chunk's pages but to skip them: unshare it. */
			struct hm_page *expected = c;
			if (idx == base && stop - base == HM_CHUNK_PAGES) {
				atomic_compare_exchange_strong(&r->dir[d], &expected, NULL);
				idx = stop;
				continue;
			}
			struct hm_page *fresh = mmap(NULL, HM_CHUNK_PAGES * sizeof *fresh,
						     PROT_READ | PROT_WRITE,
						     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (fresh == MAP_FAILED) {
				idx = stop; /* stays gone: unreachable, never wrong */
				continue;
			}
			for (uint64_t i = base; i < base + HM_CHUNK_PAGES; i++)
				atomic_init(&fresh[i - base].st,
					    i >= idx && i < stop ? HM_ST_EMPTY : HM_ST_GONE);
			if (!atomic_compare_exchange_strong(&r->dir[d], &expected, fresh))
				munmap(fresh, HM_CHUNK_PAGES * sizeof *fresh);
			idx = stop;
			continue;
		}
		for (uint64_t i = idx; c && i < stop; i++) {
			uint32_t st = HM_ST_GONE;
			atomic_compare_exchange_strong(&c[i - base].st, &st, HM_ST_EMPTY);
		}
		idx = stop;
	}
}

void hm__pages_free(struct hm_region *r)
{
	if (!r->dir)
		return;
	for (size_t d = 0; d < r->ndir; d++) {
		struct hm_page *c = atomic_load(&r->dir[d]);
		if (c && c != gone_chunk)
			munmap(c, HM_CHUNK_PAGES * sizeof *c);
	}
	munmap((void *)r->dir, r->ndir * sizeof *r->dir);
	r->dir = NULL;
}

bool hm__page_set_waiters(struct hm_page *p, uint32_t seen)
{
	if (seen & HM_PG_WAITERS)
		return true;
	return atomic_compare_exchange_strong(&p->st, &seen, seen | HM_PG_WAITERS);
}

void hm__page_wake(struct hm_region *r, uint64_t idx, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		struct hm_page *p = hm__page(r, idx + i, false);
		if (p)
			syscall(SYS_futex, &p->st, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
	}
	hm__uffd_wake(r->base + (idx << r->ps_shift), (size_t)n << r->ps_shift);
}

void hm__page_wait(struct hm_page *p, uint32_t seen)
{
	/* Bounded, so that a missed wake-up costs a retry, never a hang. */
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	syscall(SYS_futex, &p->st, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

__thread unsigned hm__shard_tls;

unsigned hm__shard_assign(void)
{
	static _Atomic unsigned next;
	unsigned s = atomic_fetch_add(&next, 1) % HM_SHARDS;

	hm__shard_tls = s + 1;
	return s;
}

void hm__stats_fill(const struct hm_counters *k, struct hm_stats *s)
{
#define HM_X(name)                                                                    \
	s->name = 0;                                                                  \
	for (int i = 0; i < HM_SHARDS; i++)                                           \
		s->name += atomic_load_explicit(&k->s[i].name, memory_order_relaxed);
	HM_COUNTERS(HM_X)
#undef HM_X
	hm__lat_fill(k, s);
}

uint64_t hm__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
