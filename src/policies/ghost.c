/* SPDX-License-Identifier: MIT */
/*
 * Ghost tables and queues for the policies; see ghost.h. The table uses
 * linear probing with backward-shift deletion, so there are no tombstones
 * and lookups stay short however long a replay runs.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "core/error.h"
#include "policies/ghost.h"

/* splitmix64's finaliser: page numbers are often sequential. */
static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

int hm__ghost_table_init(struct hm__ghost_table *t, uint32_t max)
{
	uint64_t n = 8;
	void *b;

	t->b = NULL;
	while (n < 2 * (uint64_t)max)
		n <<= 1;
	/* 2^32 buckets is the most a 32-bit mask names: a load of up to 3/4. */
	if (n > (1ull << 32)) {
		if (max > HM_GHOST_MAX)
			return -ENOMEM;
		n = 1ull << 32;
	}
	/*
	 * Mapped, not allocated: the kernel's zero pages are empty buckets, so
	 * the table costs memory only where ghosts land, and MAP_NORESERVE
	 * keeps a budget far above what the cache will hold (a 1 TiB cache's
	 * ARC tables come to 32 GiB) from being refused by overcommit.
	 */
	b = mmap(NULL, n * sizeof *t->b, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b == MAP_FAILED)
		return -ENOMEM;
	t->b = b;
	t->mask = (uint32_t)(n - 1);
	t->count = 0;
	t->max = max;
	return 0;
}

void hm__ghost_table_fini(struct hm__ghost_table *t)
{
	if (t->b)
		munmap(t->b, ((size_t)t->mask + 1) * sizeof *t->b);
	t->b = NULL;
}

uint32_t hm__ghost_table_find(const struct hm__ghost_table *t, uint64_t key)
{
	uint32_t i = (uint32_t)mix(key) & t->mask;

	for (;; i = (i + 1) & t->mask) {
		if (!t->b[i].val1)
			return HM_GHOST_NONE;
		if (t->b[i].key == key)
			return t->b[i].val1 - 1;
	}
}

void hm__ghost_table_add(struct hm__ghost_table *t, uint64_t key, uint32_t val)
{
	uint32_t i = (uint32_t)mix(key) & t->mask;

	while (t->b[i].val1)
		i = (i + 1) & t->mask;
	t->b[i].key = key;
	t->b[i].val1 = val + 1;
	t->count++;
}

uint32_t hm__ghost_table_del(struct hm__ghost_table *t, uint64_t key)
{
	uint32_t i = (uint32_t)mix(key) & t->mask, j, home, val;

	for (;; i = (i + 1) & t->mask) {
		if (!t->b[i].val1)
			return HM_GHOST_NONE;
		if (t->b[i].key == key)
			break;
	}
	val = t->b[i].val1 - 1;
	/*
	 * Backward shift: move later members of the probe run into the hole
	 * when their home bucket does not lie (cyclically) between the hole
	 * and their position.
	 */
	for (j = (i + 1) & t->mask; t->b[j].val1; j = (j + 1) & t->mask) {
		home = (uint32_t)mix(t->b[j].key) & t->mask;
		if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
			t->b[i] = t->b[j];
			i = j;
		}
	}
	t->b[i].val1 = 0;
	t->count--;
	return val;
}

int hm__ghost_size(const char *who, double ratio, uint32_t capacity, uint32_t slack,
		   uint32_t *cap)
{
	double want = ratio * capacity;

	if (want + slack > HM_GHOST_MAX)
		return hm__error(-EINVAL, "%s: %.0f ghost entries for %u slots are more than %u",
				 who, want, capacity, HM_GHOST_MAX - slack);
	*cap = (uint32_t)want;
	return 0;
}

int hm__ghost_init(struct hm__ghost *g, uint32_t cap, uint32_t slack)
{
	if ((uint64_t)cap + slack > HM_GHOST_MAX)
		return -ENOMEM;
	g->cap = cap;
	g->pool = cap + slack;
	g->count = 0;
	g->owed = 0;
	g->t.b = NULL;
	g->l.prev = g->l.next = NULL;
	g->keys = malloc(((size_t)g->pool + 1) * sizeof *g->keys);
	if (!g->keys || hm__links_alloc(&g->l, g->pool + 1) ||
	    hm__ghost_table_init(&g->t, g->pool)) {
		hm__ghost_fini(g);
		return -ENOMEM;
	}
	hm__links_init(&g->l, g->pool);
	/*
	 * Nodes come from `fresh` until each was used once, then from the
	 * free list (threaded through `next`, HM_GHOST_NONE ends it): a list
	 * threaded here would touch every node of a huge cache up front.
	 */
	g->free = HM_GHOST_NONE;
	g->fresh = 0;
	return 0;
}

void hm__ghost_fini(struct hm__ghost *g)
{
	hm__ghost_table_fini(&g->t);
	hm__links_free(&g->l);
	free(g->keys);
	g->keys = NULL;
}

int hm__ghost_has(const struct hm__ghost *g, uint64_t key)
{
	return g->count && hm__ghost_table_find(&g->t, key) != HM_GHOST_NONE;
}

static void release(struct hm__ghost *g, uint32_t n)
{
	hm__links_unlink(&g->l, n);
	g->l.next[n] = g->free;
	g->free = n;
	g->count--;
}

int hm__ghost_del(struct hm__ghost *g, uint64_t key)
{
	uint32_t n;

	if (!g->count)
		return 0;
	n = hm__ghost_table_del(&g->t, key);
	if (n == HM_GHOST_NONE)
		return 0;
	release(g, n);
	return 1;
}

int hm__ghost_pop(struct hm__ghost *g)
{
	uint32_t n;

	if (!g->count)
		return -ENOENT;
	n = hm__links_head(&g->l, g->pool);
	hm__ghost_table_del(&g->t, g->keys[n]);
	release(g, n);
	return 0;
}

void hm__ghost_push(struct hm__ghost *g, uint64_t key)
{
	uint32_t n;

	if (!g->pool)
		return;
	/* A key is a ghost at most once: re-pushing refreshes it. */
	hm__ghost_del(g, key);
	if (g->free == HM_GHOST_NONE && g->fresh == g->pool)
		hm__ghost_pop(g);
	if (g->free != HM_GHOST_NONE) {
		n = g->free;
		g->free = g->l.next[n];
	} else {
		n = g->fresh++;
	}
	g->keys[n] = key;
	hm__links_push_tail(&g->l, g->pool, n);
	hm__ghost_table_add(&g->t, key, n);
	g->count++;
}

void hm__ghost_victim(struct hm__ghost *g)
{
	if (g->owed < g->pool - g->cap)
		g->owed++;
}

void hm__ghost_trim(struct hm__ghost *g)
{
	if (g->owed)
		g->owed--;
	while (g->count > g->cap + g->owed)
		hm__ghost_pop(g);
}
