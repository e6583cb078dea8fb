/* SPDX-License-Identifier: MIT */
/*
 * LIRS: rank pages by inter-reference recency. Pages with a short reuse
 * distance (LIR) keep most of the cache; the others (HIR) get a small
 * resident share and are evicted first.
 *
 * Definition: Jiang and Zhang, "LIRS: An Efficient Low Inter-reference
 * Recency Set Replacement Policy to Improve Buffer Cache Performance",
 * SIGMETRICS 2002, section 3.3:
 *
 *   Lhirs = max(1, floor(hir * capacity)) resident HIR pages (hir = 1%),
 *   Llirs = capacity - Lhirs LIR pages. Stack S holds LIR pages and recent
 *   HIR pages (resident or not) in recency order; list Q holds the resident
 *   HIR pages. Stack pruning removes HIR entries from the bottom of S until
 *   an LIR page is there.
 *
 *   hit, LIR page          move it to the top of S; prune.
 *   hit, HIR page in S     it becomes LIR, moves to the top of S and leaves
 *                          Q; the LIR page at the bottom of S becomes HIR
 *                          and goes to the end of Q; prune.
 *   hit, HIR page not in S move it to the top of S and the end of Q.
 *   miss                   the victim is the resident HIR page at the front
 *                          of Q (it stays in S, non-resident, if it was in
 *                          S); then the new page, if it was a non-resident
 *                          HIR page in S, becomes LIR at the top of S and
 *                          the bottom LIR page goes to the end of Q (prune);
 *                          otherwise it enters the top of S and the end of Q
 *                          as a resident HIR page. While fewer than Llirs
 *                          pages are LIR, new pages become LIR directly.
 *
 * Bound on non-resident entries (the paper leaves S unbounded): as in
 * libCacheSim's LIRS, after each request, while S holds more than 2 *
 * capacity entries, the non-resident entry that became non-resident longest
 * ago is removed from S. Where libCacheSim departs from the paper (it demotes
 * an LIR page, and so evicts a page, on a hit to a resident HIR page that is
 * not in S), this file follows the paper.
 *
 * If Q is empty when a victim is needed (possible only after remove()), the
 * bottom LIR page is demoted first. A hit reorders lists: no
 * HM_POLICY_CONCURRENT_HIT.
 *
 * Options: hir=RATIO (0 < hir < 1), the resident HIR share.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"
#include "policies/ghost.h"
#include "policies/links.h"

#define F_LIR 0x1
#define F_S 0x2 /* in stack S */
#define F_Q 0x4 /* in list Q (resident HIR) */

struct lirs {
	uint32_t c;
	uint32_t lir_limit, hir_limit;
	uint32_t n_lir, n_hir; /* resident LIR, resident HIR (in Q) */
	uint32_t s_count;      /* entries in S, resident or not */
	uint32_t s_max;        /* bound on s_count */
	uint32_t pool;         /* non-resident nodes */
	uint32_t n_nr;
	uint32_t nr_free;      /* free nodes through nh.next, then nr_fresh.. */
	uint32_t nr_fresh;     /* nodes below it were used at least once */
	uint32_t s_sent;       /* S sentinel: c + pool */
	struct hm__links s;    /* slots [0, c), non-resident c + [0, pool) */
	struct hm__links q;    /* slots; sentinel c */
	struct hm__links nh;   /* non-resident nodes [0, pool); sentinel pool */
	uint64_t *key;         /* by slot */
	uint64_t *nr_key;      /* by non-resident node */
	uint8_t *flags;        /* F_* by slot */
	struct hm__ghost_table nr; /* key -> non-resident node */
};

struct lirs_opts {
	double hir;
};

static int parse_opt(void *ctx, const char *key, const char *value)
{
	struct lirs_opts *o = ctx;
	double v;

	if (strcmp(key, "hir"))
		return hm__error(-EINVAL, "lirs: unknown option '%s' (known: hir)", key);
	if (hm_parse_double(value, &v) || !(v > 0 && v < 1))
		return hm__error(-EINVAL, "lirs: hir must be a ratio in (0, 1), not '%s'", value);
	o->hir = v;
	return 0;
}

static void lirs_destroy(void *state)
{
	struct lirs *l = state;

	if (!l)
		return;
	hm__ghost_table_fini(&l->nr);
	hm__links_free(&l->s);
	hm__links_free(&l->q);
	hm__links_free(&l->nh);
	free(l->key);
	free(l->nr_key);
	free(l->flags);
	free(l);
}

static int lirs_create(void **state, uint32_t capacity, const char *options)
{
	struct lirs_opts o = { .hir = 0.01 };
	struct lirs *l;
	int rc;

	rc = hm_opts_parse(options, parse_opt, &o);
	if (rc)
		return rc;
	if (capacity > UINT32_MAX / 4)
		return hm__error(-EINVAL, "lirs: capacity %u is too large", capacity);
	l = calloc(1, sizeof *l);
	if (!l)
		return hm__error(-ENOMEM, "lirs: out of memory");
	l->c = capacity;
	l->hir_limit = (uint32_t)(o.hir * capacity);
	if (l->hir_limit < 1)
		l->hir_limit = 1;
	l->lir_limit = capacity > l->hir_limit ? capacity - l->hir_limit : 0;
	l->s_max = 2 * capacity;
	l->pool = 2 * capacity + 4;
	l->s_sent = capacity + l->pool;
	l->key = malloc(((size_t)capacity + 1) * sizeof *l->key);
	l->nr_key = malloc((size_t)l->pool * sizeof *l->nr_key);
	l->flags = calloc((size_t)capacity + 1, 1);
	if (!l->key || !l->nr_key || !l->flags || hm__links_alloc(&l->s, l->s_sent + 1) ||
	    hm__links_alloc(&l->q, capacity + 1) || hm__links_alloc(&l->nh, l->pool + 1) ||
	    hm__ghost_table_init(&l->nr, l->pool)) {
		lirs_destroy(l);
		return hm__error(-ENOMEM, "lirs: out of memory for %u slots", capacity);
	}
	hm__links_init(&l->s, l->s_sent);
	hm__links_init(&l->q, capacity);
	hm__links_init(&l->nh, l->pool);
	/* Not threaded here: that touched every node of a huge cache up front. */
	l->nr_free = HM_GHOST_NONE;
	l->nr_fresh = 0;
	*state = l;
	return 0;
}

/* Forgets non-resident node `n` entirely (S, NH, table). */
static void drop_nr(struct lirs *l, uint32_t n)
{
	hm__links_unlink(&l->s, l->c + n);
	l->s_count--;
	hm__links_unlink(&l->nh, n);
	hm__ghost_table_del(&l->nr, l->nr_key[n]);
	l->nh.next[n] = l->nr_free;
	l->nr_free = n;
	l->n_nr--;
}

/* Stack pruning: HIR entries leave the bottom of S until an LIR page is there. */
static void prune(struct lirs *l)
{
	uint32_t h;

	while (!hm__links_empty(&l->s, l->s_sent)) {
		h = hm__links_head(&l->s, l->s_sent);
		if (h >= l->c) {
			drop_nr(l, h - l->c);
		} else if (l->flags[h] & F_LIR) {
			break;
		} else {
			hm__links_unlink(&l->s, h);
			l->flags[h] &= (uint8_t)~F_S;
			l->s_count--;
		}
	}
}

/* The LIR page at the bottom of S becomes a resident HIR page at Q's end. */
static void demote_bottom(struct lirs *l)
{
	uint32_t h;

	prune(l);
	if (hm__links_empty(&l->s, l->s_sent))
		return;
	h = hm__links_head(&l->s, l->s_sent);
	hm__links_unlink(&l->s, h);
	l->s_count--;
	l->flags[h] = F_Q;
	l->n_lir--;
	hm__links_push_tail(&l->q, l->c, h);
	l->n_hir++;
	prune(l);
}

static void fit_lir(struct lirs *l)
{
	while (l->n_lir > l->lir_limit)
		demote_bottom(l);
}

/* The libCacheSim-style bound on S: oldest non-resident entries go first. */
static void limit(struct lirs *l)
{
	while (l->s_count > l->s_max && l->n_nr)
		drop_nr(l, hm__links_head(&l->nh, l->pool));
}

static void lirs_hit(void *state, uint32_t slot)
{
	struct lirs *l = state;
	uint8_t f = l->flags[slot];

	if (f & F_LIR) {
		hm__links_move_tail(&l->s, l->s_sent, slot);
		prune(l);
	} else if (f & F_S) {
		hm__links_move_tail(&l->s, l->s_sent, slot);
		hm__links_unlink(&l->q, slot);
		l->n_hir--;
		l->flags[slot] = F_LIR | F_S;
		l->n_lir++;
		fit_lir(l);
	} else {
		hm__links_push_tail(&l->s, l->s_sent, slot);
		l->s_count++;
		hm__links_move_tail(&l->q, l->c, slot);
		l->flags[slot] = F_S | F_Q;
	}
	limit(l);
}

static void lirs_insert(void *state, uint32_t slot, uint64_t key)
{
	struct lirs *l = state;
	uint32_t n = l->n_nr ? hm__ghost_table_find(&l->nr, key) : HM_GHOST_NONE;

	l->key[slot] = key;
	hm__links_push_tail(&l->s, l->s_sent, slot);
	l->s_count++;
	if (n != HM_GHOST_NONE) {
		drop_nr(l, n);
		l->flags[slot] = F_LIR | F_S;
		l->n_lir++;
		fit_lir(l);
	} else if (l->n_lir < l->lir_limit) {
		l->flags[slot] = F_LIR | F_S;
		l->n_lir++;
	} else {
		hm__links_push_tail(&l->q, l->c, slot);
		l->flags[slot] = F_S | F_Q;
		l->n_hir++;
	}
	limit(l);
}

static int lirs_victim(void *state, uint32_t *slot)
{
	struct lirs *l = state;
	uint32_t v, n;

	if (!l->n_hir) {
		if (!l->n_lir)
			return -ENOENT;
		demote_bottom(l);
	}
	v = hm__links_head(&l->q, l->c);
	hm__links_unlink(&l->q, v);
	l->n_hir--;
	if (l->flags[v] & F_S) {
		/* It stays in S, in the same place, as a non-resident entry. */
		if (l->nr_free == HM_GHOST_NONE && l->nr_fresh == l->pool)
			drop_nr(l, hm__links_head(&l->nh, l->pool));
		if (l->nr_free != HM_GHOST_NONE) {
			n = l->nr_free;
			l->nr_free = l->nh.next[n];
		} else {
			n = l->nr_fresh++;
		}
		l->nr_key[n] = l->key[v];
		hm__links_insert_before(&l->s, v, l->c + n);
		hm__links_unlink(&l->s, v);
		hm__links_push_tail(&l->nh, l->pool, n);
		hm__ghost_table_add(&l->nr, l->key[v], n);
		l->n_nr++;
	}
	l->flags[v] = 0;
	*slot = v;
	return 0;
}

static void lirs_remove(void *state, uint32_t slot)
{
	struct lirs *l = state;
	uint8_t f = l->flags[slot];

	l->flags[slot] = 0;
	if (f & F_S) {
		hm__links_unlink(&l->s, slot);
		l->s_count--;
	}
	if (f & F_LIR) {
		l->n_lir--;
		prune(l);
	} else {
		hm__links_unlink(&l->q, slot);
		l->n_hir--;
	}
}

const struct hm_policy_ops hm__policy_lirs = {
	.abi = HM_POLICY_ABI,
	.flags = 0,
	.name = "lirs",
	.summary = "LIRS (SIGMETRICS'02): inter-reference recency, 1% resident HIR",
	.slot_bytes = 4 * sizeof(uint32_t) + sizeof(uint64_t) + 1,
	.create = lirs_create,
	.destroy = lirs_destroy,
	.insert = lirs_insert,
	.hit = lirs_hit,
	.victim = lirs_victim,
	.remove = lirs_remove,
};
