/* SPDX-License-Identifier: MIT */
/*
 * 2Q: a FIFO for pages seen once, an LRU for pages seen again, and a ghost
 * FIFO that tells the two apart.
 *
 * Definition: the full version of 2Q in Johnson and Shasha, "2Q: A Low
 * Overhead High Performance Buffer Management Replacement Algorithm", VLDB
 * 1994 (section 2.2), with the parameters the paper recommends and
 * libCacheSim's TwoQ uses: Kin = 25% of the cache, Kout = 50% of the cache
 * (in pages remembered):
 *
 *   hit in Am            move to the MRU end of Am;
 *   hit in A1in          nothing (A1in is a FIFO);
 *   miss, page in A1out  forget the ghost, insert at the MRU end of Am;
 *   miss, otherwise      insert at the tail of A1in;
 *   reclaim              if |A1in| > Kin, the head of A1in leaves and its
 *                        key joins A1out (dropping A1out's oldest when it
 *                        holds more than Kout), else the LRU page of Am.
 *
 * Sizes are floor(ratio * capacity) as in libCacheSim. One deviation that
 * the slot interface forces: libCacheSim refuses to admit pages when
 * Kin = 0 (caches of fewer than 4 pages); here every page is admitted.
 *
 * Options: kin=RATIO (0 <= kin < 1), kout=RATIO (0 <= kout <= 16).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"
#include "policies/ghost.h"
#include "policies/links.h"

enum { Q_NONE, Q_IN, Q_AM };

struct twoq {
	uint32_t capacity;
	uint32_t kin;
	uint32_t n_in, n_am;
	uint32_t s_in, s_am; /* sentinels: capacity, capacity + 1 */
	struct hm__links q;
	uint64_t *key;  /* by slot */
	uint8_t *where; /* Q_* by slot */
	struct hm__ghost out;
};

struct twoq_opts {
	double kin, kout;
};

static int parse_opt(void *ctx, const char *key, const char *value)
{
	struct twoq_opts *o = ctx;
	double v;

	if (!strcmp(key, "kin")) {
		if (hm_parse_double(value, &v) || !(v >= 0 && v < 1))
			return hm__error(-EINVAL, "2q: kin must be a ratio in [0, 1), not '%s'",
					 value);
		o->kin = v;
	} else if (!strcmp(key, "kout")) {
		if (hm_parse_double(value, &v) || !(v >= 0 && v <= 16))
			return hm__error(-EINVAL, "2q: kout must be a ratio in [0, 16], not '%s'",
					 value);
		o->kout = v;
	} else {
		return hm__error(-EINVAL, "2q: unknown option '%s' (known: kin, kout)", key);
	}
	return 0;
}

static void twoq_destroy(void *state)
{
	struct twoq *t = state;

	if (!t)
		return;
	hm__ghost_fini(&t->out);
	hm__links_free(&t->q);
	free(t->key);
	free(t->where);
	free(t);
}

static int twoq_create(void **state, uint32_t capacity, const char *options)
{
	struct twoq_opts o = { .kin = 0.25, .kout = 0.5 };
	struct twoq *t;
	uint32_t ghosts;
	int rc;

	rc = hm_opts_parse(options, parse_opt, &o);
	if (!rc)
		rc = hm__ghost_size("2q", o.kout, capacity, HM_GHOST_SLACK, &ghosts);
	if (rc)
		return rc;
	t = calloc(1, sizeof *t);
	if (!t)
		return hm__error(-ENOMEM, "2q: out of memory");
	t->capacity = capacity;
	t->kin = (uint32_t)(o.kin * capacity);
	t->s_in = capacity;
	t->s_am = capacity + 1;
	t->key = malloc(((size_t)capacity + 1) * sizeof *t->key);
	t->where = calloc((size_t)capacity + 1, 1);
	if (!t->key || !t->where || hm__links_alloc(&t->q, capacity + 2) ||
	    hm__ghost_init(&t->out, ghosts, HM_GHOST_SLACK)) {
		twoq_destroy(t);
		return hm__error(-ENOMEM, "2q: out of memory for %u slots", capacity);
	}
	hm__links_init(&t->q, t->s_in);
	hm__links_init(&t->q, t->s_am);
	*state = t;
	return 0;
}

static void twoq_insert(void *state, uint32_t slot, uint64_t key)
{
	struct twoq *t = state;

	t->key[slot] = key;
	if (hm__ghost_del(&t->out, key)) {
		hm__links_push_tail(&t->q, t->s_am, slot);
		t->where[slot] = Q_AM;
		t->n_am++;
	} else {
		hm__links_push_tail(&t->q, t->s_in, slot);
		t->where[slot] = Q_IN;
		t->n_in++;
	}
	/* The ghost a victim() just recorded may push out the oldest only now. */
	hm__ghost_trim(&t->out);
}

static void twoq_hit(void *state, uint32_t slot)
{
	struct twoq *t = state;

	if (t->where[slot] == Q_AM)
		hm__links_move_tail(&t->q, t->s_am, slot);
}

static int twoq_victim(void *state, uint32_t *slot)
{
	struct twoq *t = state;
	uint32_t v;

	if (!t->n_in && !t->n_am)
		return -ENOENT;
	hm__ghost_victim(&t->out);
	if (t->n_in > t->kin || !t->n_am) {
		v = hm__links_head(&t->q, t->s_in);
		hm__links_unlink(&t->q, v);
		t->n_in--;
		hm__ghost_push(&t->out, t->key[v]);
	} else {
		v = hm__links_head(&t->q, t->s_am);
		hm__links_unlink(&t->q, v);
		t->n_am--;
	}
	t->where[v] = Q_NONE;
	*slot = v;
	return 0;
}

static void twoq_remove(void *state, uint32_t slot)
{
	struct twoq *t = state;

	hm__links_unlink(&t->q, slot);
	if (t->where[slot] == Q_IN)
		t->n_in--;
	else
		t->n_am--;
	t->where[slot] = Q_NONE;
}

const struct hm_policy_ops hm__policy_twoq = {
	.abi = HM_POLICY_ABI,
	.flags = 0,
	.name = "2q",
	.summary = "2Q (VLDB'94, full version): A1in FIFO, A1out ghosts, Am LRU",
	.slot_bytes = 2 * sizeof(uint32_t) + sizeof(uint64_t) + 1,
	.create = twoq_create,
	.destroy = twoq_destroy,
	.insert = twoq_insert,
	.hit = twoq_hit,
	.victim = twoq_victim,
	.remove = twoq_remove,
};
