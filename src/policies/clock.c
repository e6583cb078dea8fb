/* SPDX-License-Identifier: MIT */
/*
 * CLOCK: FIFO that gives a referenced page a second chance.
 *
 * Definition: the one-bit CLOCK of Corbató, "A paging experiment with the
 * Multics system" (MIT Project MAC, 1968), which is FIFO with reinsertion
 * ("second chance"), with the semantics of libCacheSim's Clock with its
 * default one-bit counter: a page is inserted with its reference bit clear;
 * a hit sets the bit; the hand starts at the oldest page, and while the page
 * under it is referenced it clears the bit and moves the page to the newest
 * end; the first unreferenced page is the victim.
 *
 * The queue is kept as a doubly linked list (oldest at the head) rather than
 * a ring of frames so that remove() is O(1); moving a referenced page from
 * the head to the tail is exactly the hand passing over it.
 *
 * hit() is one relaxed atomic byte store, so it may run without the cache
 * lock concurrently with victim(); a hit that races with the hand clearing
 * the same bit may be lost, which costs at most one early eviction.
 */
#include <errno.h>
#include <stdlib.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"
#include "policies/links.h"

struct clock {
	uint32_t capacity;
	uint32_t resident;
	struct hm__links q; /* capacity elements + one sentinel (capacity) */
	uint8_t *ref;       /* reference bits, indexed by slot */
};

static int no_option(void *ctx, const char *key, const char *value)
{
	return hm__error(-EINVAL, "clock: unknown option '%s'", key);
}

static int clock_create(void **state, uint32_t capacity, const char *options)
{
	struct clock *c;
	int rc;

	rc = hm_opts_parse(options, no_option, NULL);
	if (rc)
		return rc;
	c = calloc(1, sizeof *c);
	if (!c)
		return hm__error(-ENOMEM, "clock: out of memory");
	c->ref = calloc(capacity + 1, 1);
	if (!c->ref || hm__links_alloc(&c->q, capacity + 1)) {
		free(c->ref);
		free(c);
		return hm__error(-ENOMEM, "clock: out of memory for %u slots", capacity);
	}
	c->capacity = capacity;
	hm__links_init(&c->q, capacity);
	*state = c;
	return 0;
}

static void clock_destroy(void *state)
{
	struct clock *c = state;

	if (!c)
		return;
	hm__links_free(&c->q);
	free(c->ref);
	free(c);
}

static void clock_insert(void *state, uint32_t slot, uint64_t key)
{
	struct clock *c = state;

	__atomic_store_n(&c->ref[slot], 0, __ATOMIC_RELAXED);
	hm__links_push_tail(&c->q, c->capacity, slot);
	c->resident++;
}

static void clock_hit(void *state, uint32_t slot)
{
	struct clock *c = state;

	__atomic_store_n(&c->ref[slot], 1, __ATOMIC_RELAXED);
}

static int clock_victim(void *state, uint32_t *slot)
{
	struct clock *c = state;
	uint32_t v, passed = 0;

	if (!c->resident)
		return -ENOENT;
	/*
	 * After one full sweep every bit the hand saw is clear, so a serialised
	 * caller always stops within `resident` moves. The bound only matters
	 * when concurrent hits keep setting bits behind the hand: then the page
	 * under the hand after a full sweep goes, referenced or not.
	 */
	for (;;) {
		v = hm__links_head(&c->q, c->capacity);
		if (!__atomic_load_n(&c->ref[v], __ATOMIC_RELAXED) || passed++ == c->resident)
			break;
		__atomic_store_n(&c->ref[v], 0, __ATOMIC_RELAXED);
		hm__links_move_tail(&c->q, c->capacity, v);
	}
	hm__links_unlink(&c->q, v);
	c->resident--;
	*slot = v;
	return 0;
}

static void clock_remove(void *state, uint32_t slot)
{
	struct clock *c = state;

	hm__links_unlink(&c->q, slot);
	c->resident--;
}

const struct hm_policy_ops hm__policy_clock = {
	.abi = HM_POLICY_ABI,
	.flags = HM_POLICY_CONCURRENT_HIT,
	.name = "clock",
	.summary = "one-bit CLOCK (FIFO with second chance); a hit sets a bit",
	.slot_bytes = 2 * sizeof(uint32_t) + 1,
	.create = clock_create,
	.destroy = clock_destroy,
	.insert = clock_insert,
	.hit = clock_hit,
	.victim = clock_victim,
	.remove = clock_remove,
};
