/* SPDX-License-Identifier: MIT */
/*
 * LRU: evict the page referenced least recently.
 *
 * Definition: least-recently-used replacement as analysed by Mattson,
 * Gecsei, Slutz and Traiger, "Evaluation techniques for storage
 * hierarchies", IBM Systems Journal 9(2), 1970 (the LRU stack), and as
 * libCacheSim's LRU implements it: a miss puts the page at the most recent
 * end, a hit moves it there, the victim is the least recent page.
 *
 * A hit is a list move, so hit() needs the cache lock (no
 * HM_POLICY_CONCURRENT_HIT).
 */
#include <errno.h>
#include <stdlib.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"
#include "policies/links.h"

struct lru {
	uint32_t capacity;
	uint32_t resident;
	struct hm__links q; /* head least recent; sentinel `capacity` */
};

static int no_option(void *ctx, const char *key, const char *value)
{
	return hm__error(-EINVAL, "lru: unknown option '%s'", key);
}

static int lru_create(void **state, uint32_t capacity, const char *options)
{
	struct lru *l;
	int rc;

	rc = hm_opts_parse(options, no_option, NULL);
	if (rc)
		return rc;
	l = calloc(1, sizeof *l);
	if (!l)
		return hm__error(-ENOMEM, "lru: out of memory");
	if (hm__links_alloc(&l->q, capacity + 1)) {
		free(l);
		return hm__error(-ENOMEM, "lru: out of memory for %u slots", capacity);
	}
	l->capacity = capacity;
	hm__links_init(&l->q, capacity);
	*state = l;
	return 0;
}

static void lru_destroy(void *state)
{
	struct lru *l = state;

	if (!l)
		return;
	hm__links_free(&l->q);
	free(l);
}

static void lru_insert(void *state, uint32_t slot, uint64_t key)
{
	struct lru *l = state;

	hm__links_push_tail(&l->q, l->capacity, slot);
	l->resident++;
}

static void lru_hit(void *state, uint32_t slot)
{
	struct lru *l = state;

	hm__links_move_tail(&l->q, l->capacity, slot);
}

static int lru_victim(void *state, uint32_t *slot)
{
	struct lru *l = state;
	uint32_t v;

	if (!l->resident)
		return -ENOENT;
	v = hm__links_head(&l->q, l->capacity);
	hm__links_unlink(&l->q, v);
	l->resident--;
	*slot = v;
	return 0;
}

static void lru_remove(void *state, uint32_t slot)
{
	struct lru *l = state;

	hm__links_unlink(&l->q, slot);
	l->resident--;
}

const struct hm_policy_ops hm__policy_lru = {
	.abi = HM_POLICY_ABI,
	.flags = 0,
	.name = "lru",
	.summary = "least recently used; a hit moves the page in a list",
	.slot_bytes = 2 * sizeof(uint32_t),
	.create = lru_create,
	.destroy = lru_destroy,
	.insert = lru_insert,
	.hit = lru_hit,
	.victim = lru_victim,
	.remove = lru_remove,
};
