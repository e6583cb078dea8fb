/* SPDX-License-Identifier: MIT */
/*
 * A plug-in library for tests/test_plugins.c: policies whose victim()
 * breaks policy.h's promise of "a victim among the resident slots", which
 * a live cache must survive. Each keeps a byte per slot (no overflow
 * whatever the core does) and, when honest, evicts the highest slot.
 *
 *   bad-range  answers a slot past the capacity
 *   bad-none   answers -ENOENT, "nothing resident", while pages are
 *   bad-twice  answers a slot but does not forget it, so the next answer
 *              is a slot chosen already
 *
 * and bad-nomem, whose create() fails as out of memory: a run that fails,
 * not bad usage.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hmmap.h>

enum mode { RANGE = 1, NONE, TWICE };

struct bad {
	enum mode mode;
	uint32_t capacity;
	unsigned char in[];
};

static int create(void **state, uint32_t capacity, const char *options, enum mode mode)
{
	struct bad *b = calloc(1, sizeof *b + capacity);

	(void)options;
	if (!b)
		return hm_plugin_error(-ENOMEM, "bad-victim: out of memory");
	b->mode = mode;
	b->capacity = capacity;
	*state = b;
	return 0;
}

static int create_range(void **state, uint32_t capacity, const char *options)
{
	return create(state, capacity, options, RANGE);
}

static int create_none(void **state, uint32_t capacity, const char *options)
{
	return create(state, capacity, options, NONE);
}

static int create_twice(void **state, uint32_t capacity, const char *options)
{
	return create(state, capacity, options, TWICE);
}

static int create_nomem(void **state, uint32_t capacity, const char *options)
{
	(void)state;
	(void)capacity;
	(void)options;
	return hm_plugin_error(-ENOMEM, "bad-nomem: out of memory, as asked");
}

static void destroy(void *state)
{
	free(state);
}

static void insert(void *state, uint32_t slot, uint64_t key)
{
	struct bad *b = state;

	(void)key;
	if (slot < b->capacity)
		b->in[slot] = 1;
}

static void hit(void *state, uint32_t slot)
{
	(void)state;
	(void)slot;
}

static void remove_slot(void *state, uint32_t slot)
{
	struct bad *b = state;

	if (slot < b->capacity)
		b->in[slot] = 0;
}

static int victim(void *state, uint32_t *slot)
{
	struct bad *b = state;

	if (b->mode == NONE)
		return -ENOENT;
	if (b->mode == RANGE) {
		*slot = b->capacity + 5;
		return 0;
	}
	for (uint32_t s = b->capacity; s-- > 0;) {
		if (b->in[s]) {
			*slot = s; /* and left in: the next answer is the same */
			return 0;
		}
	}
	return -ENOENT;
}

#define BAD(NAME, CREATE, SUMMARY)                                                       \
	{                                                                                \
		.abi = HM_POLICY_ABI, .name = NAME, .summary = SUMMARY, .slot_bytes = 1, \
		.create = CREATE, .destroy = destroy, .insert = insert, .hit = hit,      \
		.victim = victim, .remove = remove_slot,                                 \
	}

static const struct hm_policy_ops bad[] = {
	BAD("bad-range", create_range, "victim() answers a slot out of range (tests)"),
	BAD("bad-none", create_none, "victim() answers -ENOENT with pages resident (tests)"),
	BAD("bad-twice", create_twice, "victim() answers a slot chosen already (tests)"),
	BAD("bad-nomem", create_nomem, "create() fails with -ENOMEM (tests)"),
};

int hm_plugin_init(void)
{
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = hm_policy_register(&bad[i]);
		if (rc)
			return rc;
	}
	return 0;
}
