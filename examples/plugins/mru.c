/* SPDX-License-Identifier: MIT */
/*
 * mru: a cache replacement policy as a plug-in library - most recently used
 * goes first.
 *
 * MRU is what a loop over data larger than the cache wants: LRU, FIFO and
 * CLOCK evict every page of such a scan just before it comes round again
 * and miss on every access, while MRU keeps most of the cache still and
 * misses only on the part of the loop that does not fit (Chou and DeWitt,
 * "An evaluation of buffer management strategies for relational database
 * systems", VLDB 1985).
 *
 * Plain MRU fights readahead: the page that came in last is most often one
 * read ahead and not yet used, and evicting it makes the reader miss on it
 * anyway. So the newest `guard` of the cache waits in a FIFO before it may
 * be chosen; the victim is the page that left that FIFO last (or was hit
 * last: a hit is a use).
 *
 *   cc -shared -fPIC -O2 -Iinclude -o mru.so examples/plugins/mru.c
 *   HMMAP_PLUGINS=./mru.so hmmap replay --policy mru,lru,clock --cache 1000 TRACE
 *
 * or, in a program: hm_plugin_load("./mru.so"), then
 * hm_cache_new(&cache, budget, "mru").
 *
 *   mru[:guard=F][,hits=1|0]
 *     guard  the fraction of the cache a new page waits in before it may
 *            be evicted, 0 to 0.9 (0.125); 0 is plain MRU
 *     hits   0: a hit changes nothing (order by arrival alone) (1)
 *
 * It uses only the public headers, and leaves the library's symbols to be
 * resolved against the process that loads it (no -lhmmap).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hmmap.h>

/*
 * Two circular doubly linked lists over slots: `young`, newest first, with
 * its head at index capacity; `old`, most recently used first, with its head
 * at capacity + 1.
 */
struct mru {
	uint32_t capacity;
	uint32_t resident;
	uint32_t guard, nyoung;
	int hits;
	uint32_t *prev, *next;
	unsigned char *young; /* per slot: 1 while in the young list */
};

struct options {
	double guard;
	int hits;
};

static int option(void *ctx, const char *key, const char *value)
{
	struct options *o = ctx;

	if (!strcmp(key, "hits")) {
		if (strcmp(value, "0") && strcmp(value, "1"))
			return hm_plugin_error(-EINVAL, "mru: hits='%s' is not 0 or 1", value);
		o->hits = value[0] == '1';
		return 0;
	}
	if (!strcmp(key, "guard")) {
		if (hm_parse_double(value, &o->guard) || !(o->guard >= 0 && o->guard <= 0.9))
			return hm_plugin_error(-EINVAL, "mru: guard='%s' is not a fraction "
							"from 0 to 0.9",
					       value);
		return 0;
	}
	return hm_plugin_error(-EINVAL, "mru: unknown option '%s'", key);
}

static void unlink_slot(struct mru *m, uint32_t s)
{
	m->next[m->prev[s]] = m->next[s];
	m->prev[m->next[s]] = m->prev[s];
	if (m->young[s]) {
		m->young[s] = 0;
		m->nyoung--;
	}
}

static void push_front(struct mru *m, uint32_t head, uint32_t s)
{
	m->next[s] = m->next[head];
	m->prev[s] = head;
	m->prev[m->next[head]] = s;
	m->next[head] = s;
	if (head == m->capacity) {
		m->young[s] = 1;
		m->nyoung++;
	}
}

static int mru_create(void **state, uint32_t capacity, const char *options)
{
	struct options o = { .guard = 0.125, .hits = 1 };
	struct mru *m;
	int rc = hm_opts_parse(options, option, &o);

	if (rc)
		return rc;
	m = calloc(1, sizeof *m);
	if (!m)
		return hm_plugin_error(-ENOMEM, "mru: out of memory");
	m->capacity = capacity;
	m->guard = (uint32_t)(o.guard * capacity);
	m->hits = o.hits;
	m->prev = malloc(((size_t)capacity + 2) * sizeof *m->prev);
	m->next = malloc(((size_t)capacity + 2) * sizeof *m->next);
	m->young = calloc((size_t)capacity + 2, 1);
	if (!m->prev || !m->next || !m->young) {
		free(m->prev);
		free(m->next);
		free(m->young);
		free(m);
		return hm_plugin_error(-ENOMEM, "mru: out of memory for %u slots", capacity);
	}
	for (uint32_t h = capacity; h < capacity + 2; h++)
		m->prev[h] = m->next[h] = h;
	*state = m;
	return 0;
}

static void mru_destroy(void *state)
{
	struct mru *m = state;

	if (!m)
		return;
	free(m->prev);
	free(m->next);
	free(m->young);
	free(m);
}

static void mru_insert(void *state, uint32_t slot, uint64_t key)
{
	struct mru *m = state;

	(void)key;
	push_front(m, m->capacity, slot);
	m->resident++;
	/* The oldest of the guard may be chosen from now on: it is the most recent there. */
	if (m->nyoung > m->guard) {
		uint32_t s = m->prev[m->capacity];
		unlink_slot(m, s);
		push_front(m, m->capacity + 1, s);
	}
}

static void mru_hit(void *state, uint32_t slot)
{
	struct mru *m = state;

	if (!m->hits)
		return;
	unlink_slot(m, slot);
	push_front(m, m->capacity + 1, slot);
}

static int mru_victim(void *state, uint32_t *slot)
{
	struct mru *m = state;
	uint32_t old = m->capacity + 1, s;

	if (!m->resident)
		return -ENOENT;
	/* The most recent page past the guard; the oldest of the guard if there is none. */
	s = m->next[old] != old ? m->next[old] : m->prev[m->capacity];
	unlink_slot(m, s);
	m->resident--;
	*slot = s;
	return 0;
}

static void mru_remove(void *state, uint32_t slot)
{
	struct mru *m = state;

	unlink_slot(m, slot);
	m->resident--;
}

static const struct hm_policy_ops mru = {
	.abi = HM_POLICY_ABI,
	.name = "mru",
	.summary = "most recently used first, past a guard for readahead: for loops (plug-in)",
	.slot_bytes = 2 * sizeof(uint32_t),
	.create = mru_create,
	.destroy = mru_destroy,
	.insert = mru_insert,
	.hit = mru_hit,
	.victim = mru_victim,
	.remove = mru_remove,
};

int hm_plugin_init(void)
{
	return hm_policy_register(&mru);
}
