/* SPDX-License-Identifier: MIT */
/*
 * Automatic tiering policies (include/hmmap/tier.h), and their registry.
 *
 * none     no engine at all: pages come up on their faults and go down when
 *          the cache's replacement policy evicts them (demand paging).
 * hotness  HeMem-like: per-page counters of references (missing faults and
 *          sampled hint faults), all halved once `epoch` references have
 *          been seen since the last halving (and at least `decay` ms
 *          passed). Counting time in references rather than seconds keeps
 *          "hot" relative: a slow, fault-bound phase and a fast one rank
 *          pages alike. A page whose count reaches `threshold` is promoted:
 *          kept in DRAM out of the cache's replacement, within the engine's
 *          share of the budget. A promoted page is sampled once per `sweep`
 *          ms (twice as often while pages at the threshold wait for room);
 *          one still untouched at its next visit is cold and demoted.
 *          Resident pages seen but not yet hot are sampled too, so that
 *          their next touch can be seen at all: hits on mapped pages are
 *          invisible otherwise.
 *
 *   hotness[:threshold=N][,epoch=N][,decay=MS][,sweep=MS][,sample=N][,evict=0|1]
 *
 * epoch defaults to twice the pages hot pages may hold.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "core/tier.h"
#include "core/registry.h"

struct hot {
	uint64_t npages;
	_Atomic uint8_t *count;
	_Atomic uint8_t *sampled; /* unmapped by a sample and not touched since */
	unsigned threshold;
	uint64_t decay_ms, sweep_ms, last_decay;
	uint64_t epoch;             /* references per halving; 0: twice the hot share */
	_Atomic uint64_t touches;   /* references since the last halving */
	uint64_t sample_rate;     /* samples per second, all kinds */
	bool evict;
	uint64_t cool_hand, warm_hand, last_ms;
	bool pressure;              /* last tick, a page at the threshold found no room */
	uint64_t pressure_since;    /* ms when the current spell of pressure began */
};

static int hot_opt(void *ctx, const char *k, const char *v)
{
	struct hot *h = ctx;
	uint64_t u;

	if (hm_parse_u64(v, &u))
		return hm__error(-EINVAL, "hotness: %s='%s' is not a number", k, v);
	if (!strcmp(k, "threshold") && u >= 1 && u <= 200)
		h->threshold = (unsigned)u;
	else if (!strcmp(k, "decay") && u >= 10 && u <= 600000)
		h->decay_ms = u;
	else if (!strcmp(k, "epoch") && u >= 1 && u <= (1ull << 40))
		h->epoch = u;
	else if (!strcmp(k, "sweep") && u >= 100 && u <= 600000)
		h->sweep_ms = u;
	else if (!strcmp(k, "sample") && u >= 1 && u <= 10000000)
		h->sample_rate = u;
	else if (!strcmp(k, "evict") && u <= 1)
		h->evict = u;
	else
		return hm__error(-EINVAL, "hotness: bad option %s=%s (threshold 1..200, epoch in "
					  "references, decay and sweep in ms, sample per second, "
					  "evict 0|1)",
				 k, v);
	return 0;
}

static void hot_destroy(void *state)
{
	struct hot *h = state;

	if (h->count)
		munmap((void *)h->count, h->npages);
	if (h->sampled)
		munmap((void *)h->sampled, h->npages);
	free(h);
}

static int hot_create(void **state, uint64_t npages, const char *opts)
{
	struct hot *h = calloc(1, sizeof *h);
	int rc;

	if (!h)
		return hm__error(-ENOMEM, "out of memory");
	h->npages = npages;
	h->threshold = 2;
	h->decay_ms = 200;
	h->sweep_ms = 20000;
	h->sample_rate = 12288;
	rc = hm_opts_parse(opts, hot_opt, h);
	if (rc) {
		free(h);
		return rc;
	}
	h->count = mmap(NULL, npages, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	h->sampled = mmap(NULL, npages, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (h->count == MAP_FAILED || h->sampled == MAP_FAILED) {
		if (h->count == MAP_FAILED)
			h->count = NULL;
		if (h->sampled == MAP_FAILED)
			h->sampled = NULL;
		hot_destroy(h);
		return hm__error(-ENOMEM, "hotness: cannot allocate counters");
	}
	*state = h;
	return 0;
}

static void hot_touch(void *state, uint64_t idx, int how)
{
	struct hot *h = state;

	if (idx >= h->npages)
		return;
	atomic_fetch_add_explicit(&h->touches, 1, memory_order_relaxed);
	if (atomic_load_explicit(&h->count[idx], memory_order_relaxed) < 255)
		atomic_fetch_add_explicit(&h->count[idx], 1, memory_order_relaxed);
	if (atomic_load_explicit(&h->sampled[idx], memory_order_relaxed))
		atomic_store_explicit(&h->sampled[idx], 0, memory_order_relaxed);
}

static void hot_tick(void *state, struct hm_tier_ctx *ctx)
{
	struct hot *h = state;
	uint64_t now = hm_tier_now_ms(ctx), hot, max;
	uint64_t period = now > h->last_ms ? now - h->last_ms : 1;
	int64_t samples = (int64_t)(h->sample_rate * period / 1000);
	bool full = false;

	h->last_ms = now;
	hm_tier_hot_count(ctx, &hot, &max);
	uint64_t epoch = h->epoch ? h->epoch : 2 * (max ? max : 1);
	if (now - h->last_decay >= h->decay_ms && atomic_load(&h->touches) >= epoch) {
		atomic_store(&h->touches, 0);
		for (uint64_t i = 0; i < h->npages; i++) {
			uint8_t c = atomic_load_explicit(&h->count[i], memory_order_relaxed);
			if (c)
				atomic_store_explicit(&h->count[i], c >> 1, memory_order_relaxed);
		}
		h->last_decay = now;
	}

	/*
	 * Cooling: visit promoted pages at the pace that covers them all once
	 * per sweep. One sampled at the last visit and untouched since is cold.
	 */
	int64_t cool = samples / 2 > 0 ? samples / 2 : 1;
	uint64_t window = h->npages * period / h->sweep_ms + 64;
	if (h->pressure) {
		/*
		 * Hot pages wait for room: cool twice as fast, with the whole
		 * sampling budget. A page sampled on one visit and untouched at
		 * the next is cold, so cold hot pages leave within two turns.
		 * For the first sweep of a spell of pressure - the hot set has
		 * just moved - four times faster again: the old hot pages are
		 * cold now, so sampling them costs a zap each and no hint
		 * fault. A spell that lasts longer is a hot set larger than the
		 * share, where sampling hot pages fast would only buy faults.
		 */
		uint64_t boost = now - h->pressure_since < h->sweep_ms ? 4 : 1;
		cool = (samples > 0 ? samples : 1) * (int64_t)boost;
		window *= 2 * boost;
	}
	for (uint64_t seen = 0; cool > 0 && seen < window && seen < h->npages; seen++) {
		uint64_t i = h->cool_hand++ % h->npages;
		if (!hm_tier_is_hot(ctx, i))
			continue;
		cool--;
		if (atomic_load_explicit(&h->sampled[i], memory_order_relaxed)) {
			if (hm_tier_demote(ctx, i, h->evict) == -EAGAIN)
				break;
			atomic_store_explicit(&h->sampled[i], 0, memory_order_relaxed);
			atomic_store_explicit(&h->count[i], 0, memory_order_relaxed);
			continue;
		}
		int rc = hm_tier_sample(ctx, i);
		if (rc == -EAGAIN)
			break;
		if (!rc) {
			atomic_store_explicit(&h->sampled[i], 1, memory_order_relaxed);
			samples--;
		}
	}

	/*
	 * Warming: promote pages at the threshold; sample pages seen but not
	 * yet hot, so that their next touches count.
	 */
	/* A bounded share of the pages per tick: the hand goes round in about a second. */
	uint64_t scan = h->npages * period / 1000 + 1024;
	for (uint64_t seen = 0; seen < h->npages && seen < scan; seen++) {
		uint64_t i = h->warm_hand++ % h->npages;
		uint8_t c = atomic_load_explicit(&h->count[i], memory_order_relaxed);
		if (!c || hm_tier_is_hot(ctx, i))
			continue;
		if (c >= h->threshold && !full) {
			int rc = hm_tier_promote(ctx, i);
			if (rc == -EAGAIN)
				break;
			if (rc == -ENOSPC)
				full = true;
			if (!rc)
				continue;
		}
		if (samples > 0 && !atomic_load_explicit(&h->sampled[i], memory_order_relaxed) &&
		    hm_tier_where(ctx, i) == 0) {
			int rc = hm_tier_sample(ctx, i);
			if (!rc) {
				atomic_store_explicit(&h->sampled[i], 1, memory_order_relaxed);
				samples--;
			}
		}
		if (full && samples <= 0)
			break;
	}
	if (full && !h->pressure)
		h->pressure_since = now;
	h->pressure = full;
}

static const struct hm_tier_policy_ops hotness = {
	.abi = HM_TIER_POLICY_ABI,
	.name = "hotness",
	.summary = "decayed fault and hint-fault counts; hot pages kept in DRAM, cold ones demoted",
	.create = hot_create,
	.destroy = hot_destroy,
	.touch = hot_touch,
	.tick = hot_tick,
};

/* "none" is listed by name only: it runs no engine. */
static const struct hm_tier_policy_ops none = {
	.abi = HM_TIER_POLICY_ABI,
	.name = "none",
	.summary = "no automatic tiering: demand paging through the cache's replacement only",
};

/* The registry of tiering policies: one line each; then those registered. */
#define BUILTIN_TIER_POLICIES &none, &hotness
#define NTIER_POLICIES HM__COUNT(BUILTIN_TIER_POLICIES)
static const struct hm_tier_policy_ops *tier_policies[NTIER_POLICIES + HM_PLUGINS_MAX] = {
	BUILTIN_TIER_POLICIES
};
static _Atomic size_t ntier_policies = NTIER_POLICIES;

const struct hm_tier_policy_ops *const *hm_tier_policy_list(size_t *count)
{
	hm__plugins_env();
	*count = atomic_load_explicit(&ntier_policies, memory_order_acquire);
	return tier_policies;
}

static const char *tier_policy_name(size_t i)
{
	return tier_policies[i]->name;
}

static void tier_policy_put(size_t i, const void *ops)
{
	tier_policies[i] = ops;
}

int hm_tier_policy_register(const struct hm_tier_policy_ops *ops)
{
	static const struct hm__reg_list list = {
		"tiering policy", "tiering policies", NTIER_POLICIES + HM_PLUGINS_MAX,
		&ntier_policies, tier_policy_name, tier_policy_put
	};
	static const char *const names[] = { "create", "destroy", "touch", "tick" };
	int rc;

	rc = hm__plugin_check("hm_tier_policy_register", ops, ops ? ops->abi : 0,
			      HM_TIER_POLICY_ABI, ops ? ops->name : NULL, ops ? ops->summary : NULL,
			      false);
	if (rc)
		return rc;
	const void *hooks[] = { (const void *)ops->create, (const void *)ops->destroy,
				(const void *)ops->touch, (const void *)ops->tick };
	rc = hm__plugin_hooks_check("tiering policy", ops->name, names, hooks, 4);
	return rc ? rc : hm__registry_add(&list, ops->name, ops);
}

int hm__tier_policy_find(const char *spec, const struct hm_tier_policy_ops **ops,
			 const char **opts)
{
	const char *colon = strchr(spec, ':');
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
	size_t count;
	int rc = hm__plugins_env();

	if (rc)
		return rc;
	count = atomic_load_explicit(&ntier_policies, memory_order_acquire);
	for (size_t i = 0; i < count; i++) {
		const struct hm_tier_policy_ops *p = tier_policies[i];
		if (strlen(p->name) != n || strncmp(p->name, spec, n))
			continue;
		if (ops)
			*ops = p->tick ? p : NULL;
		if (opts)
			*opts = colon ? colon + 1 : "";
		return 0;
	}
	char names[512];
	hm__registry_names(names, sizeof names, count, tier_policy_name);
	return hm__error(-ENOENT, "'%.*s' is not a tiering policy (known: %s)", (int)n, spec,
			 names);
}
