/* SPDX-License-Identifier: MIT */
/*
 * Page metadata: 8 bytes per page of mapping, allocated a chunk of 4096
 * entries at a time when a page in it is first touched. The directory of
 * chunk pointers is the only up-front cost (8 bytes per 16 MiB of a 4 KiB
 * page region), so a 1 TiB sparse mapping costs 512 KiB before any touch.
 * Chunks come from mmap, which is safe in a signal handler, and are
 * installed with a compare-and-swap so that racing faults agree.
 */
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

struct hm_page *hm__page(struct hm_region *r, uint64_t idx, bool alloc)
{
	size_t d = (size_t)(idx >> HM_CHUNK_SHIFT);
	struct hm_page *chunk;

	if (idx >= r->npages)
		return NULL;
	chunk = atomic_load_explicit(&r->dir[d], memory_order_acquire);
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

void hm__pages_free(struct hm_region *r)
{
	if (!r->dir)
		return;
	for (size_t d = 0; d < r->ndir; d++) {
		struct hm_page *c = atomic_load(&r->dir[d]);
		if (c)
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
