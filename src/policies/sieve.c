/* SPDX-License-Identifier: MIT */
/*
 * SIEVE: a FIFO queue with a visited bit and a hand that sifts it.
 *
 * Definition: Zhang, Yang, Yue, Vigfusson and Rashmi, "SIEVE is Simpler than
 * LRU: an Efficient Turn-Key Eviction Algorithm for Web Caches", NSDI 2024,
 * Algorithm 1, with libCacheSim's Sieve semantics: a new page enters at the
 * head (newest end) with its visited bit clear; a hit sets the bit; to evict,
 * the hand starts where it last stopped (at the tail, the oldest page, the
 * first time or after passing the head), clears the bit of each visited page
 * and moves toward the head, and evicts the first page whose bit is clear;
 * the hand then rests on the next newer page. Unlike CLOCK, survivors are
 * not moved: new pages always enter behind the hand's sweep.
 *
 * In this file the list head (links head) is the oldest page, so the hand
 * moves from head to tail in links terms. hit() is one relaxed atomic byte
 * store (HM_POLICY_CONCURRENT_HIT).
 */
#include <errno.h>
#include <stdlib.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"
#include "policies/links.h"

struct sieve {
	uint32_t capacity;
	uint32_t resident;
	uint32_t hand;      /* a slot, or `capacity` (the sentinel) for none */
	struct hm__links q; /* oldest first; sentinel `capacity` */
	uint8_t *visited;
};

static int no_option(void *ctx, const char *key, const char *value)
{
	return hm__error(-EINVAL, "sieve: unknown option '%s'", key);
}

static int sieve_create(void **state, uint32_t capacity, const char *options)
{
	struct sieve *s;
	int rc;

	rc = hm_opts_parse(options, no_option, NULL);
	if (rc)
		return rc;
	s = calloc(1, sizeof *s);
	if (!s)
		return hm__error(-ENOMEM, "sieve: out of memory");
	s->visited = calloc(capacity + 1, 1);
	if (!s->visited || hm__links_alloc(&s->q, capacity + 1)) {
		free(s->visited);
		free(s);
		return hm__error(-ENOMEM, "sieve: out of memory for %u slots", capacity);
	}
	s->capacity = capacity;
	s->hand = capacity;
	hm__links_init(&s->q, capacity);
	*state = s;
	return 0;
}

static void sieve_destroy(void *state)
{
	struct sieve *s = state;

	if (!s)
		return;
	hm__links_free(&s->q);
	free(s->visited);
	free(s);
}

static void sieve_insert(void *state, uint32_t slot, uint64_t key)
{
	struct sieve *s = state;

	__atomic_store_n(&s->visited[slot], 0, __ATOMIC_RELAXED);
	hm__links_push_tail(&s->q, s->capacity, slot);
	s->resident++;
}

static void sieve_hit(void *state, uint32_t slot)
{
	struct sieve *s = state;

	__atomic_store_n(&s->visited[slot], 1, __ATOMIC_RELAXED);
}

static int sieve_victim(void *state, uint32_t *slot)
{
	struct sieve *s = state;
	uint32_t v, passed = 0;

	if (!s->resident)
		return -ENOENT;
	v = s->hand == s->capacity ? hm__links_head(&s->q, s->capacity) : s->hand;
	/*
	 * A serialised caller stops within one sweep; the bound only guards
	 * against concurrent hits setting bits forever behind the hand.
	 */
	while (__atomic_load_n(&s->visited[v], __ATOMIC_RELAXED) && passed++ <= s->resident) {
		__atomic_store_n(&s->visited[v], 0, __ATOMIC_RELAXED);
		v = s->q.next[v];
		if (v == s->capacity)
			v = hm__links_head(&s->q, s->capacity);
	}
	s->hand = s->q.next[v];
	hm__links_unlink(&s->q, v);
	s->resident--;
	*slot = v;
	return 0;
}

static void sieve_remove(void *state, uint32_t slot)
{
	struct sieve *s = state;

	if (s->hand == slot)
		s->hand = s->q.next[slot];
	hm__links_unlink(&s->q, slot);
	s->resident--;
}

const struct hm_policy_ops hm__policy_sieve = {
	.abi = HM_POLICY_ABI,
	.flags = HM_POLICY_CONCURRENT_HIT,
	.name = "sieve",
	.summary = "SIEVE (NSDI'24): FIFO with a visited bit and a sifting hand",
	.slot_bytes = 2 * sizeof(uint32_t) + 1,
	.create = sieve_create,
	.destroy = sieve_destroy,
	.insert = sieve_insert,
	.hit = sieve_hit,
	.victim = sieve_victim,
	.remove = sieve_remove,
};
