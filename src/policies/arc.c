/* SPDX-License-Identifier: MIT */
/*
 * ARC: two LRU lists, one for pages seen once recently (T1) and one for
 * pages seen at least twice (T2), with ghost lists B1 and B2 of their recent
 * evictions steering the target size p of T1.
 *
 * Definition: Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead
 * Replacement Cache", FAST 2003, Figure 4, with c = capacity:
 *
 *   Case I    x in T1 or T2: move x to the MRU end of T2.
 *   Case II   x in B1: p = min(p + d1, c), d1 = max(|B2| / |B1|, 1);
 *             REPLACE(x, p); x moves from B1 to the MRU end of T2.
 *   Case III  x in B2: p = max(p - d2, 0), d2 = max(|B1| / |B2|, 1);
 *             REPLACE(x, p); x moves from B2 to the MRU end of T2.
 *   Case IV   x nowhere: if |T1| + |B1| = c then (if |T1| < c delete the
 *             LRU of B1 and REPLACE, else evict the LRU of T1 without a
 *             ghost); else, when the directory holds c or more pages, delete
 *             the LRU of B2 if it holds 2c, and REPLACE. x goes to the MRU
 *             end of T1.
 *   REPLACE   if |T1| >= 1 and (|T1| > p or (x in B2 and |T1| = p)), the
 *             LRU of T1 becomes the MRU of B1, else the LRU of T2 becomes
 *             the MRU of B2.
 *
 * p and the deltas are integers (floor division), as in libCacheSim's ARC.
 *
 * The choice of victim depends on where x was, so ARC implements the
 * optional miss() hook: it classifies x (and adapts p) before victim(). If a
 * caller never calls miss(), insert() classifies x itself, after the
 * eviction; the cache still works but is not exactly the paper's ARC. A
 * live cache loading a readahead window calls miss() for every page of it
 * before the inserts: the ghost hits among them are remembered (up to
 * PENDING of them), so that each such page still goes to T2.
 *
 * A hit moves the page between lists: no HM_POLICY_CONCURRENT_HIT.
 * ARC has no options.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"
#include "policies/ghost.h"
#include "policies/links.h"

enum { L_NONE, L_T1, L_T2 };
enum { X_UNKNOWN, X_NEW, X_B1, X_B2 };
enum { PENDING = 64 };

struct arc {
	uint32_t c;
	uint32_t p;
	uint32_t n1, n2;       /* |T1|, |T2| */
	uint32_t s_t1, s_t2;   /* sentinels */
	struct hm__links q;
	uint64_t *key;
	uint8_t *where;
	struct hm__ghost b1, b2;
	int pending;           /* X_*: what miss() learned about pending_key */
	uint64_t pending_key;
	/* Ghost hits that miss() took out of B1/B2, not inserted yet. */
	uint32_t nhits;
	uint64_t hit_key[PENDING];
	uint8_t hit_x[PENDING];
};

static int no_option(void *ctx, const char *key, const char *value)
{
	return hm__error(-EINVAL, "arc: unknown option '%s' (arc has none)", key);
}

static void arc_destroy(void *state)
{
	struct arc *a = state;

	if (!a)
		return;
	hm__ghost_fini(&a->b1);
	hm__ghost_fini(&a->b2);
	hm__links_free(&a->q);
	free(a->key);
	free(a->where);
	free(a);
}

static int arc_create(void **state, uint32_t capacity, const char *options)
{
	struct arc *a;
	uint32_t b2;
	int rc;

	rc = hm_opts_parse(options, no_option, NULL);
	if (!rc)
		rc = hm__ghost_size("arc", 2, capacity, 4, &b2);
	if (rc)
		return rc;
	a = calloc(1, sizeof *a);
	if (!a)
		return hm__error(-ENOMEM, "arc: out of memory");
	a->c = capacity;
	a->s_t1 = capacity;
	a->s_t2 = capacity + 1;
	a->key = malloc(((size_t)capacity + 1) * sizeof *a->key);
	a->where = calloc((size_t)capacity + 1, 1);
	/* |B1| <= c and |B2| <= 2c; the slack absorbs victims without miss(). */
	if (!a->key || !a->where || hm__links_alloc(&a->q, capacity + 2) ||
	    hm__ghost_init(&a->b1, capacity, 4) || hm__ghost_init(&a->b2, b2, 4)) {
		arc_destroy(a);
		return hm__error(-ENOMEM, "arc: out of memory for %u slots", capacity);
	}
	hm__links_init(&a->q, a->s_t1);
	hm__links_init(&a->q, a->s_t2);
	*state = a;
	return 0;
}

/* Cases II and III up to REPLACE: adapt p and take x out of its ghost list. */
static int classify(struct arc *a, uint64_t key)
{
	uint32_t b1 = a->b1.count, b2 = a->b2.count, d;

	if (hm__ghost_del(&a->b1, key)) {
		d = b1 >= b2 ? 1 : b2 / b1;
		a->p = a->p + d < a->c ? a->p + d : a->c;
		return X_B1;
	}
	if (hm__ghost_del(&a->b2, key)) {
		d = b2 >= b1 ? 1 : b1 / b2;
		a->p = a->p > d ? a->p - d : 0;
		return X_B2;
	}
	return X_NEW;
}

static void arc_miss(void *state, uint64_t key)
{
	struct arc *a = state;

	a->pending = classify(a, key);
	a->pending_key = key;
	if (a->pending == X_NEW)
		return;
	if (a->nhits == PENDING) {
		/* Full: the oldest is forgotten (it will go to T1). */
		memmove(a->hit_key, a->hit_key + 1, (PENDING - 1) * sizeof a->hit_key[0]);
		memmove(a->hit_x, a->hit_x + 1, PENDING - 1);
		a->nhits--;
	}
	a->hit_key[a->nhits] = key;
	a->hit_x[a->nhits++] = (uint8_t)a->pending;
}

/* What miss() found for key if it was a ghost hit (and forgets it), else X_UNKNOWN. */
static int take_hit(struct arc *a, uint64_t key)
{
	for (uint32_t i = a->nhits; i-- > 0;) {
		if (a->hit_key[i] != key)
			continue;
		int x = a->hit_x[i];
		a->nhits--;
		memmove(a->hit_key + i, a->hit_key + i + 1, (a->nhits - i) * sizeof a->hit_key[0]);
		memmove(a->hit_x + i, a->hit_x + i + 1, a->nhits - i);
		return x;
	}
	return X_UNKNOWN;
}

static uint32_t take_lru(struct arc *a, int list)
{
	uint32_t v;

	if (list == L_T1) {
		v = hm__links_head(&a->q, a->s_t1);
		a->n1--;
	} else {
		v = hm__links_head(&a->q, a->s_t2);
		a->n2--;
	}
	hm__links_unlink(&a->q, v);
	a->where[v] = L_NONE;
	return v;
}

static uint32_t replace(struct arc *a, int in_b2)
{
	uint32_t v;
	int from_t1 = a->n1 >= 1 && (a->n1 > a->p || (in_b2 && a->n1 == a->p));

	/* The paper never reaches an empty T2 here; after remove() we might. */
	if (from_t1 || !a->n2) {
		v = take_lru(a, L_T1);
		hm__ghost_push(&a->b1, a->key[v]);
	} else {
		v = take_lru(a, L_T2);
		hm__ghost_push(&a->b2, a->key[v]);
	}
	return v;
}

static int arc_victim(void *state, uint32_t *slot)
{
	struct arc *a = state;
	uint32_t v;

	if (!a->n1 && !a->n2)
		return -ENOENT;
	if (a->pending == X_B1 || a->pending == X_B2) {
		v = replace(a, a->pending == X_B2);
	} else if (a->n1 + a->b1.count >= a->c) {
		/* Case IV A. */
		if (a->n1 < a->c && a->b1.count) {
			hm__ghost_pop(&a->b1);
			v = replace(a, 0);
		} else {
			v = take_lru(a, a->n1 ? L_T1 : L_T2);
		}
	} else {
		/* Case IV B: the directory is full when the cache is. */
		if (a->n1 + a->n2 + a->b1.count + a->b2.count >= 2 * a->c)
			hm__ghost_pop(&a->b2);
		v = replace(a, 0);
	}
	*slot = v;
	return 0;
}

static void arc_insert(void *state, uint32_t slot, uint64_t key)
{
	struct arc *a = state;
	int x = a->pending != X_UNKNOWN && a->pending_key == key ? a->pending : X_UNKNOWN;
	int hit = a->nhits ? take_hit(a, key) : X_UNKNOWN;

	if (x == X_UNKNOWN)
		x = hit;
	if (x == X_UNKNOWN)
		x = classify(a, key);
	a->pending = X_UNKNOWN;
	a->key[slot] = key;
	if (x == X_B1 || x == X_B2) {
		hm__links_push_tail(&a->q, a->s_t2, slot);
		a->where[slot] = L_T2;
		a->n2++;
	} else {
		hm__links_push_tail(&a->q, a->s_t1, slot);
		a->where[slot] = L_T1;
		a->n1++;
	}
	/*
	 * Keep the directory bounds (|T1| + |B1| <= c, total <= 2c) when pages
	 * were inserted without a victim (after remove()) or without miss().
	 */
	while (a->n1 + a->b1.count > a->c && a->b1.count)
		hm__ghost_pop(&a->b1);
	while (a->n1 + a->n2 + a->b1.count + a->b2.count > 2 * a->c && a->b2.count)
		hm__ghost_pop(&a->b2);
}

static void arc_hit(void *state, uint32_t slot)
{
	struct arc *a = state;

	if (a->where[slot] == L_T1) {
		a->n1--;
		a->n2++;
		a->where[slot] = L_T2;
	}
	hm__links_move_tail(&a->q, a->s_t2, slot);
}

static void arc_remove(void *state, uint32_t slot)
{
	struct arc *a = state;

	hm__links_unlink(&a->q, slot);
	if (a->where[slot] == L_T1)
		a->n1--;
	else
		a->n2--;
	a->where[slot] = L_NONE;
}

const struct hm_policy_ops hm__policy_arc = {
	.abi = HM_POLICY_ABI,
	.flags = 0,
	.name = "arc",
	.summary = "ARC (FAST'03): adaptive split between recency and frequency",
	.slot_bytes = 2 * sizeof(uint32_t) + sizeof(uint64_t) + 1,
	.create = arc_create,
	.destroy = arc_destroy,
	.insert = arc_insert,
	.hit = arc_hit,
	.victim = arc_victim,
	.remove = arc_remove,
	.miss = arc_miss,
};
