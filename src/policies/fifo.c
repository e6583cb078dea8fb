/* SPDX-License-Identifier: MIT */
/*
 * FIFO: evict the page that became resident first, whatever happened since.
 *
 * Definition: first-in first-out replacement as described by Belady, "A
 * study of replacement algorithms for a virtual-storage computer", IBM
 * Systems Journal 5(2), 1966, and as libCacheSim's FIFO implements it: a miss
 * appends the page to the queue, a hit changes nothing, the victim is the
 * head of the queue.
 *
 * Hits are free (hit() does nothing), so the policy is safe for concurrent
 * hits. The queue is a doubly linked list over slot indices so that remove()
 * of an arbitrary slot is O(1).
 */
#include <errno.h>
#include <stdlib.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"
#include "policies/links.h"

struct fifo {
	uint32_t capacity;
	uint32_t resident;
	struct hm__links q; /* capacity elements + one sentinel (capacity) */
};

static int no_option(void *ctx, const char *key, const char *value)
{
	return hm__error(-EINVAL, "fifo: unknown option '%s'", key);
}

static int fifo_create(void **state, uint32_t capacity, const char *options)
{
	struct fifo *f;
	int rc;

	rc = hm_opts_parse(options, no_option, NULL);
	if (rc)
		return rc;
	f = calloc(1, sizeof *f);
	if (!f)
		return hm__error(-ENOMEM, "fifo: out of memory");
	if (hm__links_alloc(&f->q, capacity + 1)) {
		free(f);
		return hm__error(-ENOMEM, "fifo: out of memory for %u slots", capacity);
	}
	f->capacity = capacity;
	hm__links_init(&f->q, capacity);
	*state = f;
	return 0;
}

static void fifo_destroy(void *state)
{
	struct fifo *f = state;

	if (!f)
		return;
	hm__links_free(&f->q);
	free(f);
}

static void fifo_insert(void *state, uint32_t slot, uint64_t key)
{
	struct fifo *f = state;

	hm__links_push_tail(&f->q, f->capacity, slot);
	f->resident++;
}

static void fifo_hit(void *state, uint32_t slot)
{
}

static int fifo_victim(void *state, uint32_t *slot)
{
	struct fifo *f = state;
	uint32_t v;

	if (!f->resident)
		return -ENOENT;
	v = hm__links_head(&f->q, f->capacity);
	hm__links_unlink(&f->q, v);
	f->resident--;
	*slot = v;
	return 0;
}

static void fifo_remove(void *state, uint32_t slot)
{
	struct fifo *f = state;

	hm__links_unlink(&f->q, slot);
	f->resident--;
}

const struct hm_policy_ops hm__policy_fifo = {
	.abi = HM_POLICY_ABI,
	.flags = HM_POLICY_CONCURRENT_HIT,
	.name = "fifo",
	.summary = "first in, first out; hits cost nothing",
	.slot_bytes = 2 * sizeof(uint32_t),
	.create = fifo_create,
	.destroy = fifo_destroy,
	.insert = fifo_insert,
	.hit = fifo_hit,
	.victim = fifo_victim,
	.remove = fifo_remove,
};
