/* SPDX-License-Identifier: MIT */
/*
 * OPT: Belady's optimal offline policy, the lower bound on misses.
 *
 * Definition: Belady, "A study of replacement algorithms for a
 * virtual-storage computer", IBM Systems Journal 5(2), 1966 (algorithm MIN):
 * evict the resident page whose next reference lies farthest in the future;
 * pages never referenced again go first. Ties (only possible between pages
 * never referenced again, which does not change the miss count) go to the
 * lowest slot.
 *
 * It needs the future, so it is HM_POLICY_REPLAY_ONLY: replay calls
 * next_use() right after each insert() and hit(). A page inserted without a
 * next_use() is treated as never used again. The resident pages sit in a
 * binary max-heap keyed by next use, so every hook is O(log capacity).
 */
#include <errno.h>
#include <stdlib.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"

#define NOT_IN_HEAP UINT32_MAX

struct opt {
	uint32_t capacity;
	uint32_t n;
	uint32_t *heap; /* slots */
	uint32_t *pos;  /* heap index by slot, or NOT_IN_HEAP */
	uint64_t *next; /* next use by slot */
};

static int no_option(void *ctx, const char *key, const char *value)
{
	return hm__error(-EINVAL, "opt: unknown option '%s' (opt has none)", key);
}

static void opt_destroy(void *state)
{
	struct opt *o = state;

	if (!o)
		return;
	free(o->heap);
	free(o->pos);
	free(o->next);
	free(o);
}

static int opt_create(void **state, uint32_t capacity, const char *options)
{
	struct opt *o;
	uint32_t i;
	int rc;

	rc = hm_opts_parse(options, no_option, NULL);
	if (rc)
		return rc;
	o = calloc(1, sizeof *o);
	if (!o)
		return hm__error(-ENOMEM, "opt: out of memory");
	o->capacity = capacity;
	o->heap = malloc(((size_t)capacity + 1) * sizeof *o->heap);
	o->pos = malloc(((size_t)capacity + 1) * sizeof *o->pos);
	o->next = malloc(((size_t)capacity + 1) * sizeof *o->next);
	if (!o->heap || !o->pos || !o->next) {
		opt_destroy(o);
		return hm__error(-ENOMEM, "opt: out of memory for %u slots", capacity);
	}
	for (i = 0; i < capacity; i++)
		o->pos[i] = NOT_IN_HEAP;
	*state = o;
	return 0;
}

/* Whether slot a should be evicted before slot b. */
static inline int before(const struct opt *o, uint32_t a, uint32_t b)
{
	return o->next[a] > o->next[b] || (o->next[a] == o->next[b] && a < b);
}

static void place(struct opt *o, uint32_t i, uint32_t slot)
{
	o->heap[i] = slot;
	o->pos[slot] = i;
}

static void sift_up(struct opt *o, uint32_t i)
{
	uint32_t slot = o->heap[i], parent;

	while (i > 0) {
		parent = (i - 1) / 2;
		if (!before(o, slot, o->heap[parent]))
			break;
		place(o, i, o->heap[parent]);
		i = parent;
	}
	place(o, i, slot);
}

static void sift_down(struct opt *o, uint32_t i)
{
	uint32_t slot = o->heap[i], child;

	for (;;) {
		child = 2 * i + 1;
		if (child >= o->n)
			break;
		if (child + 1 < o->n && before(o, o->heap[child + 1], o->heap[child]))
			child++;
		if (!before(o, o->heap[child], slot))
			break;
		place(o, i, o->heap[child]);
		i = child;
	}
	place(o, i, slot);
}

static void heap_del(struct opt *o, uint32_t slot)
{
	uint32_t i = o->pos[slot], last;

	o->pos[slot] = NOT_IN_HEAP;
	last = o->heap[--o->n];
	if (last == slot)
		return;
	place(o, i, last);
	sift_up(o, i);
	sift_down(o, o->pos[last]);
}

static void opt_insert(void *state, uint32_t slot, uint64_t key)
{
	struct opt *o = state;

	o->next[slot] = UINT64_MAX;
	place(o, o->n++, slot);
	sift_up(o, o->n - 1);
}

static void opt_hit(void *state, uint32_t slot)
{
}

static void opt_next_use(void *state, uint32_t slot, uint64_t when)
{
	struct opt *o = state;
	uint32_t i = o->pos[slot];

	if (i == NOT_IN_HEAP)
		return;
	o->next[slot] = when;
	sift_up(o, i);
	sift_down(o, o->pos[slot]);
}

static int opt_victim(void *state, uint32_t *slot)
{
	struct opt *o = state;
	uint32_t v;

	if (!o->n)
		return -ENOENT;
	v = o->heap[0];
	heap_del(o, v);
	*slot = v;
	return 0;
}

static void opt_remove(void *state, uint32_t slot)
{
	struct opt *o = state;

	if (o->pos[slot] != NOT_IN_HEAP)
		heap_del(o, slot);
}

const struct hm_policy_ops hm__policy_opt = {
	.abi = HM_POLICY_ABI,
	.flags = HM_POLICY_REPLAY_ONLY,
	.name = "opt",
	.summary = "Belady's OPT (MIN): evicts the page used farthest in the future; replay only",
	.slot_bytes = 2 * sizeof(uint32_t) + sizeof(uint64_t),
	.create = opt_create,
	.destroy = opt_destroy,
	.insert = opt_insert,
	.hit = opt_hit,
	.victim = opt_victim,
	.remove = opt_remove,
	.next_use = opt_next_use,
};
