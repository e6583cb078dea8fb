/* SPDX-License-Identifier: MIT */
/*
 * S3-FIFO: a small FIFO that filters one-hit wonders, a main FIFO with
 * reinsertion, and a ghost FIFO that lets returning pages skip the filter.
 *
 * Definition: Yang, Zhang, Qiu, Yue and Rashmi, "FIFO queues are all you need
 * for cache eviction", SOSP 2023 (Algorithm 1), in the form libCacheSim's
 * S3FIFO implements it, which is the reference for the miss counts:
 *
 *   sizes      small S = floor(small * capacity), main M = capacity - S,
 *              ghost G = floor(ghost * capacity) keys (default 0.9: the size
 *              of M);
 *   hit        freq = min(freq + 1, 3) (a two-bit counter, no list work);
 *   miss       a key found in G leaves G and the page enters M; otherwise it
 *              enters S, except that before the first eviction a page that
 *              finds S full enters M (libCacheSim's S3FIFO, not S3FIFOv0);
 *              freq starts at 0;
 *   evict      from M if M holds more than its share or S is empty, else
 *              from S;
 *   from S     the oldest page of S moves to M (freq reset to 0) if its freq
 *              reached the move-to-main threshold (default 2, the paper's
 *              "freq > 1"), and the next oldest is tried; the first page
 *              below the threshold is evicted and its key joins G;
 *   from M     the oldest page of M is reinserted at M's tail with freq - 1
 *              while freq > 0; the first page with freq 0 is evicted.
 *
 * The ghost lookup precedes the eviction in the algorithm; victim() runs
 * before insert() tells us the key, so G keeps one ghost of slack and trims
 * only in insert(), after the lookup (see ghost.h), which gives the same
 * result. Deviation forced by the slot interface: libCacheSim does not admit
 * a page when S would hold fewer than two pages (caches under 20 pages with
 * the defaults); here every page is admitted.
 *
 * hit() is a relaxed load and store of a byte: HM_POLICY_CONCURRENT_HIT (a
 * racing pair of hits may count once).
 *
 * Options: small=RATIO (0 <= small < 1), ghost=RATIO (0 <= ghost <= 16),
 * threshold=N (1..3, freq needed to move from S to M).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap/policy.h"
#include "core/error.h"
#include "core/registry.h"
#include "policies/ghost.h"
#include "policies/links.h"

enum { Q_NONE, Q_SMALL, Q_MAIN };

struct s3fifo {
	uint32_t capacity;
	uint32_t small_size, main_size;
	uint32_t n_small, n_main;
	uint32_t s_small, s_main; /* sentinels */
	uint8_t threshold;
	uint8_t has_evicted;
	struct hm__links q;
	uint64_t *key;
	uint8_t *freq;
	uint8_t *where;
	struct hm__ghost ghost;
};

struct s3_opts {
	double small, ghost;
	uint64_t threshold;
};

static int parse_opt(void *ctx, const char *key, const char *value)
{
	struct s3_opts *o = ctx;
	double v;

	if (!strcmp(key, "small")) {
		if (hm_parse_double(value, &v) || !(v >= 0 && v < 1))
			return hm__error(-EINVAL,
					 "s3fifo: small must be a ratio in [0, 1), not '%s'", value);
		o->small = v;
	} else if (!strcmp(key, "ghost")) {
		if (hm_parse_double(value, &v) || !(v >= 0 && v <= 16))
			return hm__error(-EINVAL,
					 "s3fifo: ghost must be a ratio in [0, 16], not '%s'", value);
		o->ghost = v;
	} else if (!strcmp(key, "threshold")) {
		if (hm_parse_u64(value, &o->threshold) || o->threshold < 1 || o->threshold > 3)
			return hm__error(-EINVAL, "s3fifo: threshold must be 1, 2 or 3, not '%s'",
					 value);
	} else {
		return hm__error(-EINVAL,
				 "s3fifo: unknown option '%s' (known: small, ghost, threshold)", key);
	}
	return 0;
}

static void s3_destroy(void *state)
{
	struct s3fifo *s = state;

	if (!s)
		return;
	hm__ghost_fini(&s->ghost);
	hm__links_free(&s->q);
	free(s->key);
	free(s->freq);
	free(s->where);
	free(s);
}

static int s3_create(void **state, uint32_t capacity, const char *options)
{
	struct s3_opts o = { .small = 0.1, .ghost = 0.9, .threshold = 2 };
	struct s3fifo *s;
	uint32_t ghosts;
	int rc;

	rc = hm_opts_parse(options, parse_opt, &o);
	if (!rc)
		rc = hm__ghost_size("s3fifo", o.ghost, capacity, HM_GHOST_SLACK, &ghosts);
	if (rc)
		return rc;
	s = calloc(1, sizeof *s);
	if (!s)
		return hm__error(-ENOMEM, "s3fifo: out of memory");
	s->capacity = capacity;
	s->small_size = (uint32_t)(o.small * capacity);
	s->main_size = capacity - s->small_size;
	s->threshold = (uint8_t)o.threshold;
	s->s_small = capacity;
	s->s_main = capacity + 1;
	s->key = malloc(((size_t)capacity + 1) * sizeof *s->key);
	s->freq = calloc((size_t)capacity + 1, 1);
	s->where = calloc((size_t)capacity + 1, 1);
	if (!s->key || !s->freq || !s->where || hm__links_alloc(&s->q, capacity + 2) ||
	    hm__ghost_init(&s->ghost, ghosts, HM_GHOST_SLACK)) {
		s3_destroy(s);
		return hm__error(-ENOMEM, "s3fifo: out of memory for %u slots", capacity);
	}
	hm__links_init(&s->q, s->s_small);
	hm__links_init(&s->q, s->s_main);
	*state = s;
	return 0;
}

static void s3_insert(void *state, uint32_t slot, uint64_t key)
{
	struct s3fifo *s = state;

	s->key[slot] = key;
	__atomic_store_n(&s->freq[slot], 0, __ATOMIC_RELAXED);
	if (hm__ghost_del(&s->ghost, key) ||
	    (!s->has_evicted && s->n_small >= s->small_size)) {
		hm__links_push_tail(&s->q, s->s_main, slot);
		s->where[slot] = Q_MAIN;
		s->n_main++;
	} else {
		hm__links_push_tail(&s->q, s->s_small, slot);
		s->where[slot] = Q_SMALL;
		s->n_small++;
	}
	hm__ghost_trim(&s->ghost);
}

static void s3_hit(void *state, uint32_t slot)
{
	struct s3fifo *s = state;
	uint8_t f = __atomic_load_n(&s->freq[slot], __ATOMIC_RELAXED);

	if (f < 3)
		__atomic_store_n(&s->freq[slot], f + 1, __ATOMIC_RELAXED);
}

/* Evicts from M: reinserts pages with freq > 0, returns the first without. */
static uint32_t evict_main(struct s3fifo *s)
{
	uint32_t v, passes = 0;
	uint8_t f;

	for (;;) {
		v = hm__links_head(&s->q, s->s_main);
		f = __atomic_load_n(&s->freq[v], __ATOMIC_RELAXED);
		/* Four sweeps drain every counter unless hits race with us. */
		if (!f || passes++ > 4 * s->n_main)
			break;
		__atomic_store_n(&s->freq[v], f - 1, __ATOMIC_RELAXED);
		hm__links_move_tail(&s->q, s->s_main, v);
	}
	hm__links_unlink(&s->q, v);
	s->n_main--;
	return v;
}

static int s3_victim(void *state, uint32_t *slot)
{
	struct s3fifo *s = state;
	uint32_t v;

	if (!s->n_small && !s->n_main)
		return -ENOENT;
	s->has_evicted = 1;
	hm__ghost_victim(&s->ghost);
	if (s->n_main > s->main_size || !s->n_small) {
		v = evict_main(s);
		goto out;
	}
	for (;;) {
		v = hm__links_head(&s->q, s->s_small);
		hm__links_unlink(&s->q, v);
		s->n_small--;
		if (__atomic_load_n(&s->freq[v], __ATOMIC_RELAXED) < s->threshold) {
			hm__ghost_push(&s->ghost, s->key[v]);
			break;
		}
		__atomic_store_n(&s->freq[v], 0, __ATOMIC_RELAXED);
		hm__links_push_tail(&s->q, s->s_main, v);
		s->where[v] = Q_MAIN;
		s->n_main++;
		if (!s->n_small) {
			/* Everything in S was promoted: M gives up a page instead. */
			v = evict_main(s);
			break;
		}
	}
out:
	s->where[v] = Q_NONE;
	*slot = v;
	return 0;
}

static void s3_remove(void *state, uint32_t slot)
{
	struct s3fifo *s = state;

	hm__links_unlink(&s->q, slot);
	if (s->where[slot] == Q_SMALL)
		s->n_small--;
	else
		s->n_main--;
	s->where[slot] = Q_NONE;
}

const struct hm_policy_ops hm__policy_s3fifo = {
	.abi = HM_POLICY_ABI,
	.flags = HM_POLICY_CONCURRENT_HIT,
	.name = "s3fifo",
	.summary = "S3-FIFO (SOSP'23): small FIFO filter, main FIFO, ghost FIFO",
	.slot_bytes = 2 * sizeof(uint32_t) + sizeof(uint64_t) + 2,
	.create = s3_create,
	.destroy = s3_destroy,
	.insert = s3_insert,
	.hit = s3_hit,
	.victim = s3_victim,
	.remove = s3_remove,
};
