/* SPDX-License-Identifier: MIT */
/*
 * hmmap/tier.h - the interface of an automatic tiering policy plug-in.
 *
 * A region over a tier chain (tiers:dram:1G>lz4:4G>...) runs a tiering
 * engine: a thread that, every period, asks the chain's policy which pages
 * to keep in DRAM and which to send down. The DRAM tier is the region's
 * cache, so every page the application touches comes into DRAM on its own
 * (a fault); the policy's job is to decide which pages stay there beyond
 * the cache's replacement ("hot", kept out of it) and which leave early.
 *
 * The engine enforces the limits: promotions and demotions move at most
 * `rate` bytes per second, hot pages hold at most `hot` of the DRAM budget,
 * and sampling unmaps a bounded number of hot pages per period. Policies are
 * compared by swapping them (the URI's tiering= or hm_store_ctl(chain,
 * "tiering=NAME[:opts]")).
 */
#ifndef HMMAP_TIER_H
#define HMMAP_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HM_TIER_POLICY_ABI 1

/* How a page was seen referenced (touch()). */
#define HM_TOUCH_MISS 1 /* a missing fault: it came up from a lower tier or nowhere */
#define HM_TOUCH_HINT 2 /* a hint fault: a sampled resident page was touched again */

/* The engine a policy drives; valid during tick() only. */
struct hm_tier_ctx;

struct hm_tier_policy_ops {
	uint32_t abi;        /* HM_TIER_POLICY_ABI */
	const char *name;
	const char *summary; /* one line for `hmmap tiers policies` (required) */
	/*
	 * Makes the state for a region of npages pages; opts is "k=v,..." or
	 * "" (parse it with hm_opts_parse()). Ordinary context. 0 or -errno
	 * with a message.
	 */
	int (*create)(void **state, uint64_t npages, const char *opts);
	void (*destroy)(void *state);
	/*
	 * Page idx was referenced (HM_TOUCH_*). Called on the fault path, from
	 * any thread at once, possibly inside a signal handler: atomics only,
	 * no locks, no allocation, no blocking.
	 */
	void (*touch)(void *state, uint64_t idx, int how);
	/* Once per period, from the engine's thread; may take its time. */
	void (*tick)(void *state, struct hm_tier_ctx *ctx);
};

/* Milliseconds since the engine started. */
uint64_t hm_tier_now_ms(const struct hm_tier_ctx *ctx);
/* Where page idx is: 0 DRAM, 1.. a lower tier, -ENOENT nowhere (reads as zeros). */
int hm_tier_where(const struct hm_tier_ctx *ctx, uint64_t idx);
/* Whether the policy keeps idx in DRAM now (promoted and not demoted since). */
bool hm_tier_is_hot(const struct hm_tier_ctx *ctx, uint64_t idx);
/* Hot pages now and the most the engine allows now (the hot share less DRAM bindings and pins). */
void hm_tier_hot_count(const struct hm_tier_ctx *ctx, uint64_t *hot, uint64_t *max);
/*
 * Brings idx into DRAM if it is not there and keeps it there. Returns 0,
 * -EAGAIN (this period's rate budget is spent), -ENOSPC (hot pages hold
 * their whole share of DRAM), -EBUSY (the page is in flight, or hm_bind()
 * or hm_move() is migrating it down; try later),
 * -EPERM (hm_bind() bound it to a lower tier: its placement is the
 * program's), or the load error.
 */
int hm_tier_promote(struct hm_tier_ctx *ctx, uint64_t idx);
/*
 * Gives idx back to the cache's replacement; with `evict` also moves it to
 * the lower tiers now. 0, -EAGAIN (rate budget), or the write-back error.
 */
int hm_tier_demote(struct hm_tier_ctx *ctx, uint64_t idx, bool evict);
/*
 * Zaps the mapping of a resident page so that its next touch is a hint
 * fault (touch(HM_TOUCH_HINT)); hot pages are out of the cache's own
 * sampler, and hits on mapped pages are invisible otherwise. 0, -EAGAIN
 * (this period's sampling budget - an eighth of the resident pages - is
 * spent), -EBUSY (not a resident mapped page now).
 */
int hm_tier_sample(struct hm_tier_ctx *ctx, uint64_t idx);

/* Every tiering policy compiled in, then those registered. */
const struct hm_tier_policy_ops *const *hm_tier_policy_list(size_t *count);

/*
 * Adds a tiering policy of the program's or a plug-in library's own (see
 * "Plug-ins" in hmmap.h); chains take it by name (tiering=NAME[:opts]).
 * create, destroy, touch and tick are required. Returns 0, -EINVAL,
 * -EEXIST or -ENOSPC.
 */
int hm_tier_policy_register(const struct hm_tier_policy_ops *ops);

#ifdef __cplusplus
}
#endif
#endif
