/* SPDX-License-Identifier: MIT */
/*
 * Tier chains, inside the library: the chain store (src/stores/chain.c),
 * the placement engine and the controls built on it (src/core/tier.c).
 *
 * A chain is a store whose pages have no fixed home. Its tier 0 is DRAM:
 * the cache of the region that maps it. Tiers 1..n are lower stores, each
 * addressed in 4 KiB slots. The chain keeps one 64-bit entry per 4 KiB page
 * of its address space:
 *
 *   bits  0..39  slot in the lower tier holding the page
 *   bits 40..47  tier holding it (0: none - the page reads as zeros)
 *   bits 48..55  bound tier + 1 (hm_bind BIND; 0: the chain's order)
 *   bits 56..63  one-shot destination tier + 1 (a migration in progress)
 *
 * A page's entry, and the bytes of its slot, change only under the page's
 * stripe lock. Loaded pages leave their lower tier (exclusive tiers): the
 * core calls hm__chain_release() and marks those that had a lower copy
 * dirty before they become RESIDENT, so an eviction writes them back down.
 * A page never written stays clean: evicted, it is stored nowhere again.
 */
#ifndef HM_CORE_TIER_H
#define HM_CORE_TIER_H

#include "core/internal.h"

#define HM_CHAIN_MAX 8       /* tiers, DRAM included */
#define HM_CHAIN_PAGE 4096u
#define HM_CHAIN_STRIPES 256

#define CE_SLOT(e) ((e) & ((1ull << 40) - 1))
#define CE_TIER(e) ((unsigned)(((e) >> 40) & 0xff))
#define CE_BIND(e) ((unsigned)(((e) >> 48) & 0xff))
#define CE_DEST(e) ((unsigned)(((e) >> 56) & 0xff))
/* The slot of a page written as all zeros: in its tier, but taking no room there. */
#define CE_ZERO ((1ull << 40) - 1)
#define CE_MAKE(slot, tier, bind, dest)                                                 \
	((uint64_t)(slot) | ((uint64_t)(tier) << 40) | ((uint64_t)(bind) << 48) |       \
	 ((uint64_t)(dest) << 56))

/* Internal tier flag beside the public HM_TIER_*: evacuation running. */
#define HM_TIER_EVACUATING 0x100
/*
 * With EVACUATING: the tier was open before the evacuation. Placement may
 * still use it as the last resort, when no other tier has room: the
 * evacuation then fails with -ENOSPC (it would anyway), where refusing the
 * page would fail the eviction and end a fault of the application in SIGBUS.
 */
#define HM_TIER_EVAC_OPEN 0x200

struct hm_chain_tier {
	struct hm_store *store;  /* tier 0: a pseudo-store standing for DRAM */
	uint64_t nslots;
	uint32_t *free;          /* stack of freed slots */
	uint64_t nfree, bump;    /* bump: slots never used yet start here */
	pthread_mutex_t lock;    /* the slot allocator, and the hand */
	uint64_t *owner;         /* per slot: the page last placed in it */
	uint64_t hand;           /* the next slot push_down() looks at */
	_Atomic uint32_t flags;  /* HM_TIER_* */
	_Atomic uint64_t pages;  /* pages held now */
	_Atomic uint64_t zeros;  /* of them, pages of zeros (no slot: CE_ZERO) */
	_Atomic uint64_t moved_in, moved_out;
	bool compressed;         /* lz4:/zstd: (returns freed room) */
};

struct hm_tier_engine;

struct hm_chain {
	struct hm_chain_tier tier[HM_CHAIN_MAX];
	int ntiers;              /* DRAM included */
	uint64_t npages;         /* 4 KiB pages of the address space */
	_Atomic uint64_t *map;
	pthread_mutex_t stripe[HM_CHAIN_STRIPES];
	/* The DRAM tier: budget and policies from "dram:SIZE[,opts]". */
	uint64_t dram_budget;    /* 0: the chain was written without dram: */
	char cache_policy[128];
	char tier_policy[128];   /* "name[:opts]" or "none" */
	uint64_t rate;           /* bytes per second of promotion + demotion */
	double hot_fraction;     /* of the budget that hot pages may hold */
	uint64_t period_ms;
	struct hm_cache *cache;  /* made by hm__chain_cache() */
	pthread_mutex_t lock;    /* cache, region */
	struct hm_region *region;
	/* The tiering engine; the fault path reads it counted in eng_users. */
	struct hm_tier_engine *_Atomic engine;
	_Atomic int eng_users;
	_Atomic uint64_t zero_drops; /* written pages found all zeros, kept without a slot */
	_Atomic uint64_t bind_misses; /* writes a bound tier had no room for */
	_Atomic uint64_t bind_reserve; /* bytes hm_bind() is pinning into DRAM right now */
};

extern const struct hm_store_ops hm__store_chain;

static inline struct hm_chain *hm__chain_of(const struct hm_store *s)
{
	return s && s->ops == &hm__store_chain ? s->priv : NULL;
}

/* ---- src/stores/chain.c ---- */
static inline pthread_mutex_t *hm__chain_stripe(struct hm_chain *ch, uint64_t pg)
{
	return &ch->stripe[pg % HM_CHAIN_STRIPES];
}
/* The tier of a store in a chain (0 = DRAM), or -1; *chain gets the chain. */
int hm__chain_find(const struct hm_store *tier, struct hm_chain **chain);
/*
 * Forgets the lower copies of pages [off, off+len): they were loaded into
 * DRAM. Whether any of them had one (was ever written).
 */
bool hm__chain_release(struct hm_chain *ch, uint64_t off, uint64_t len);
/*
 * Moves page pg (4 KiB) to lower tier `to`, or to the chain's order
 * skipping tier `avoid` when to == 0. Caller holds no lock. Returns 1 if it
 * moved, 0 if it was not in a lower tier (or already in `to`), -ENOSPC.
 */
int hm__chain_move_page(struct hm_chain *ch, uint64_t pg, unsigned to, unsigned avoid);
/*
 * Set by hm_bind() around its own drop of a range being migrated down: the
 * evictions this thread makes place pages with a one-shot destination there
 * or fail (the page stays in DRAM, counted as not moved). Evictions made by
 * other threads fall back to the binding or the chain's order instead.
 */
extern __thread bool hm__chain_dest_strict;
/* Sets (dest or bind) fields of pages [pg, pg+n): value is tier + 1, or 0. */
void hm__chain_set(struct hm_chain *ch, uint64_t pg, uint64_t n, bool dest, unsigned value);

/* ---- src/stores/compress.c ---- */
struct hm_tier_stats;
void hm__zstore_discard(void *priv, uint64_t off, size_t len);
void hm__zstore_info(void *priv, struct hm_tier_stats *st);
extern const struct hm_store_ops hm__store_lz4;
extern const struct hm_store_ops hm__store_zstd;

/* ---- src/core/tier.c: hooks the core calls ---- */
/* hmmap(): the cache a chain brings (its dram: tier), else *c unchanged. */
int hm__tier_pick_cache(struct hm_store *s, struct hm_cache **c);
/* hm_region_map(): a region over a chain starts its tiering engine. */
int hm__tier_attach(struct hm_region *r);
/* hm_region_unmap(): stops it; true if the region's data is to be dropped unsynced. */
bool hm__tier_detach(struct hm_region *r);
/*
 * Pages [idx, idx+n) of r lose their bindings (hm_bind()), DRAM bindings
 * their pins: HM_BIND_DEFAULT, and an unmap of the pages.
 */
void hm__tier_unbind(struct hm_region *r, uint64_t idx, uint64_t n);
/*
 * Pages [idx, idx+n) of r leave the region (hmunmap()): out of the hot set
 * and their bindings; with `discard` (hmmap()'s own chain) also out of
 * every tier.
 */
void hm__tier_forget(struct hm_region *r, uint64_t idx, uint64_t n, bool discard);
/* load(): pages [idx, idx+n) are read and mapped, still LOADING. */
void hm__tier_loaded(struct hm_region *r, uint64_t idx, uint64_t n);
/* remap(): a sampled page was touched again (a hint fault). */
void hm__tier_touch(struct hm_region *r, uint64_t idx);
/*
 * Changing the chain's tiering settings: pause stops the engine and takes
 * the chain's lock; resume starts the engine again with the settings now
 * in place (if a region maps the chain) and releases the lock.
 */
void hm__tier_pause(struct hm_chain *ch);
int hm__tier_resume(struct hm_chain *ch);
/* Finds a tiering policy by "name[:opts]"; ops/opts may be NULL. 0 or -ENOENT. */
int hm__tier_policy_find(const char *spec, const struct hm_tier_policy_ops **ops,
			 const char **opts);

#endif
