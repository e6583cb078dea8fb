/* SPDX-License-Identifier: MIT */
/*
 * Placement over tier chains: the hooks the core calls for a region over a
 * chain, the explicit controls (hm_bind, hm_move, hm_store_evacuate), and
 * the automatic tiering engine that runs a tiering policy plug-in.
 *
 * Where a page of a region over a chain is: DRAM when its page state is not
 * EMPTY (the cache holds it), else the tier its chain entry names, else
 * nowhere. Moving a page down is an eviction (the core writes it to the
 * chain, which places it by the entry's destination, binding or order);
 * moving it between lower tiers is a chain-level copy under the page's
 * stripe lock; moving it up is a load (hm__populate). All three are the
 * paths faults already take, so the application keeps reading and writing
 * the range while it moves: a fault on a page being evicted waits for the
 * eviction and reads the page back; a fault on a page being copied between
 * lower tiers waits on the stripe lock.
 *
 * The engine keeps "hot" pages in DRAM by pinning them (out of the cache's
 * replacement, within a share of the budget) and lets them go when the
 * policy finds them cold. Hot pages are out of the cache's sampler, so the
 * engine samples them itself: it zaps the mapping of a bounded number per
 * period, and the next touch is a hint fault reported to the policy.
 */
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "core/internal.h"
#include "core/tier.h"

/* Sampled pages zapped together, in one call (hm__zap_runs()). */
#define TIER_SAMPLE_BATCH 64

struct hm_tier_engine {
	struct hm_chain *ch;
	struct hm_region *r;
	const struct hm_tier_policy_ops *ops;
	void *state;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	_Atomic uint8_t *hot; /* per region page: pinned by the engine */
	_Atomic uint64_t hot_pages;
	uint64_t hot_max;
	int64_t budget;       /* bytes this period may still move */
	uint32_t sample_left; /* hot pages this period may still sample */
	/* Pages sampled this tick and not zapped yet (held BUSY): see sample_flush(). */
	uint64_t sq[TIER_SAMPLE_BATCH];
	uint32_t nsq;
	/*
	 * The first chain page of the region page hm_tier_promote() works on,
	 * or UINT64_MAX: a migration down waits for it (see migrating()).
	 */
	_Atomic uint64_t promoting;
	/*
	 * A page's pin and hot mark change together under these: changes
	 * under way, and changes done (see pin_is_engines()).
	 */
	_Atomic uint32_t hot_busy;
	_Atomic uint64_t hot_seq;
	uint64_t t0_ns, now_ms;
	_Atomic uint64_t promoted, demoted, sampled;
};

/* Set around the engine's and hm_bind's own loads: they are not references. */
static __thread bool quiet;

/* ---- small helpers ---- */

static uint64_t chain_pg(const struct hm_region *r, uint64_t idx)
{
	return (r->offset + (idx << r->ps_shift)) / HM_CHAIN_PAGE;
}

static uint64_t pages_per(const struct hm_region *r)
{
	return r->ps / HM_CHAIN_PAGE;
}

/*
 * Where region page idx is: 0 DRAM, t lower tier, -ENOENT nowhere. A page
 * being loaded or evicted is where its lower copy is, if it has one: a load
 * forgets that copy only once it has read it, and an eviction makes it
 * before the page leaves DRAM, and the tier counts it all that time. The
 * query said DRAM for the whole move, so the tiers' counts were a page over
 * the query for as long as a load (a promotion of the engine, say) took.
 */
static int where(struct hm_chain *ch, struct hm_region *r, uint64_t idx)
{
	struct hm_page *p = hm__page(r, idx, false);
	uint32_t s = p ? atomic_load(&p->st) & HM_ST_MASK : HM_ST_EMPTY;

	if (s == HM_ST_RESIDENT || s == HM_ST_GONE)
		return 0;
	bool moving = s != HM_ST_EMPTY;
	uint64_t pg = chain_pg(r, idx);
	/* A large region page is where its first 4 KiB page is. */
	for (uint64_t k = 0; k < pages_per(r); k++) {
		if (pg + k >= ch->npages)
			break;
		unsigned t = CE_TIER(atomic_load(&ch->map[pg + k]));
		if (t)
			return (int)t;
	}
	return moving ? 0 : -ENOENT;
}

static struct hm_tier_engine *engine_get(struct hm_chain *ch)
{
	atomic_fetch_add(&ch->eng_users, 1);
	struct hm_tier_engine *e = atomic_load(&ch->engine);
	if (!e)
		atomic_fetch_sub(&ch->eng_users, 1);
	return e;
}

static void engine_put(struct hm_chain *ch)
{
	atomic_fetch_sub(&ch->eng_users, 1);
}

/* ---- hooks from the core ---- */

int hm__tier_pick_cache(struct hm_store *s, struct hm_cache **c)
{
	struct hm_chain *ch = hm__chain_of(s);

	if (!ch || !ch->dram_budget)
		return 0;
	return hm_chain_cache(s, c);
}

void hm__tier_loaded(struct hm_region *r, uint64_t idx, uint64_t n)
{
	struct hm_chain *ch = hm__chain_of(r->store);
	struct hm_tier_engine *e;

	if (!ch)
		return;
	/*
	 * Exclusive tiers: the page now lives in DRAM only. It is dirty with
	 * respect to the chain (which forgets its lower copy), so its eviction
	 * writes it down again. A page that had no lower copy (never written)
	 * stays clean, so that reading it stores nothing anywhere. A read-only
	 * region is never written back, so it keeps the lower copies instead.
	 */
	if (r->wp) {
		for (uint64_t i = idx; i < idx + n; i++)
			if (hm__chain_release(ch, r->offset + (i << r->ps_shift), r->ps))
				atomic_fetch_or(&hm__page(r, i, false)->st, HM_PG_DIRTY);
	}
	if (quiet)
		return;
	e = engine_get(ch);
	if (e) {
		e->ops->touch(e->state, idx, HM_TOUCH_MISS);
		engine_put(ch);
	}
}

void hm__tier_touch(struct hm_region *r, uint64_t idx)
{
	struct hm_chain *ch = hm__chain_of(r->store);
	struct hm_tier_engine *e;

	if (!ch || !(e = engine_get(ch)))
		return;
	e->ops->touch(e->state, idx, HM_TOUCH_HINT);
	engine_put(ch);
}

/* ---- the engine's services to policies ---- */

uint64_t hm_tier_now_ms(const struct hm_tier_ctx *ctx)
{
	return ((const struct hm_tier_engine *)ctx)->now_ms;
}

int hm_tier_where(const struct hm_tier_ctx *ctx, uint64_t idx)
{
	const struct hm_tier_engine *e = (const struct hm_tier_engine *)ctx;

	if (idx >= e->r->npages)
		return -EINVAL;
	return where(e->ch, e->r, idx);
}

bool hm_tier_is_hot(const struct hm_tier_ctx *ctx, uint64_t idx)
{
	const struct hm_tier_engine *e = (const struct hm_tier_engine *)ctx;

	return idx < e->r->npages && atomic_load(&e->hot[idx]);
}

/*
 * The hot pages the engine may hold now. The hot share (hot_max) is for
 * every pin of the cache - DRAM bindings, hm_prefault(HM_PREFAULT_PIN) and
 * a binding being made (ch->bind_reserve) - not for hot pages alone: pins
 * that took the whole budget would leave the next fault nowhere to go.
 */
static uint64_t hot_room(const struct hm_tier_engine *e)
{
	struct hm_region *r = e->r;
	uint64_t hot = atomic_load(&e->hot_pages) << r->ps_shift;
	uint64_t pinned = hm__cache_pinned(r->cache);
	uint64_t others = (pinned > hot ? pinned - hot : 0) + atomic_load(&e->ch->bind_reserve);
	uint64_t share = e->hot_max << r->ps_shift;

	return share > others ? (share - others) >> r->ps_shift : 0;
}

void hm_tier_hot_count(const struct hm_tier_ctx *ctx, uint64_t *hot, uint64_t *max)
{
	const struct hm_tier_engine *e = (const struct hm_tier_engine *)ctx;

	if (hot)
		*hot = atomic_load(&e->hot_pages);
	if (max)
		*max = hot_room(e);
}

static bool dram_bound(struct hm_chain *ch, struct hm_region *r, uint64_t idx)
{
	uint64_t pg = chain_pg(r, idx);

	return pg < ch->npages && CE_BIND(atomic_load(&ch->map[pg])) == 1;
}

/* Bound to a lower tier (HM_BIND): the engine leaves its placement alone. */
static bool lower_bound(struct hm_chain *ch, struct hm_region *r, uint64_t idx)
{
	uint64_t pg = chain_pg(r, idx);

	return pg < ch->npages && CE_BIND(atomic_load(&ch->map[pg])) > 1;
}

/* Takes idx out of the hot set, if it was in: unpins it unless a DRAM binding holds it. */
static bool unhot(struct hm_tier_engine *e, uint64_t idx)
{
	uint8_t hot = 1;
	bool was = false;

	atomic_fetch_add(&e->hot_busy, 1);
	/* 2 while it leaves: hm_tier_promote() answers -EBUSY until the pin is gone. */
	if (atomic_compare_exchange_strong(&e->hot[idx], &hot, 2)) {
		atomic_fetch_sub(&e->hot_pages, 1);
		if (!dram_bound(e->ch, e->r, idx))
			hm__cache_unpin(e->r->cache, e->r, idx);
		atomic_store(&e->hot[idx], 0);
		atomic_fetch_add(&e->demoted, 1);
		was = true;
	}
	atomic_fetch_add(&e->hot_seq, 1);
	atomic_fetch_sub(&e->hot_busy, 1);
	return was;
}

static void sample_flush(struct hm_tier_engine *e);

/*
 * A page sampled this tick is BUSY until its batch is zapped. A policy that
 * promotes or demotes it in the same tick would wait on the engine, which
 * is itself: zap the batch first.
 */
static void flush_if_sampled(struct hm_tier_engine *e, uint64_t idx)
{
	for (uint32_t i = 0; i < e->nsq; i++) {
		if (e->sq[i] == idx) {
			sample_flush(e);
			return;
		}
	}
}

/*
 * Whether a migration down holds a one-shot destination on a 4 KiB page of
 * region page idx: it takes the page down, and a promotion would undo it.
 */
static bool migrating(struct hm_chain *ch, struct hm_region *r, uint64_t idx)
{
	uint64_t pg = chain_pg(r, idx);

	for (uint64_t k = 0; k < pages_per(r) && pg + k < ch->npages; k++)
		if (CE_DEST(atomic_load(&ch->map[pg + k])) > 1)
			return true;
	return false;
}

static int promote(struct hm_tier_engine *e, uint64_t idx)
{
	struct hm_region *r = e->r;
	struct hm_page *p;
	int rc;

	uint8_t hot = atomic_load(&e->hot[idx]);
	if (hot)
		return hot == 1 ? 0 : -EBUSY; /* 2: leaving the hot set now */
	if (lower_bound(e->ch, r, idx))
		return -EPERM;
	if (atomic_load(&e->hot_pages) >= hot_room(e))
		return -ENOSPC;
	p = hm__page(r, idx, true);
	if (!p)
		return -ENOMEM;
	uint32_t st = atomic_load(&p->st);
	if ((st & HM_ST_MASK) == HM_ST_GONE)
		return -ENOENT; /* unmapped by hmunmap() */
	if (st & HM_PG_PINNED)
		return 0; /* pinned by the user or a DRAM binding: in DRAM anyway */
	if ((st & HM_ST_MASK) == HM_ST_EMPTY) {
		if (e->budget < (int64_t)r->ps)
			return -EAGAIN;
		e->budget -= (int64_t)r->ps;
		/*
		 * The load may have to evict to make room, and the pages this
		 * tick sampled are BUSY until their batch is zapped: the
		 * cache cannot evict them. When they and the pins were all
		 * the cache held, the load waited for the engine (itself)
		 * while faults of the application waited for the same pages,
		 * and gave up: SIGBUS ("every resident page is pinned or in
		 * flight"). Zap the batch first.
		 */
		sample_flush(e);
		quiet = true;
		rc = hm__populate(r, idx, 1, false, false);
		quiet = false;
		if (rc)
			return rc;
	}
	rc = hm__cache_pin(r->cache, r, idx);
	if (rc == -EAGAIN)
		return -EBUSY;
	if (rc)
		return -ENOSPC;
	atomic_store(&e->hot[idx], 1);
	atomic_fetch_add(&e->hot_pages, 1);
	/*
	 * A DRAM binding may have taken the room between the check above and
	 * the pin (hot_make_room() counted this page as not pinned yet): look
	 * again now that the pin is visible, and give the room back.
	 */
	/*
	 * Likewise a binding to a lower tier made meanwhile: hm_bind() sets
	 * it, then takes the range's hot pages out; one of the two sees the
	 * other (both seq_cst).
	 */
	bool bound = lower_bound(e->ch, r, idx);
	if (bound || atomic_load(&e->hot_pages) > hot_room(e)) {
		unhot(e, idx);
		atomic_fetch_sub(&e->demoted, 1); /* it was never promoted */
		return bound ? -EPERM : -ENOSPC;
	}
	atomic_fetch_add(&e->promoted, 1);
	return 0;
}

/*
 * A migration down and a promotion of the same page exclude each other: a
 * promotion that loaded and pinned the page after the migration had taken
 * the range's hot pages out left the page in DRAM, and the migration
 * skipped it (pinned) and returned without it - without -ENOSPC toward a
 * closed tier. The promotion names its page (e->promoting), then looks for
 * a migration's destination; the migration sets its destinations, then
 * waits while the engine promotes a page of its range (wait_promotion()).
 * Both seq_cst: either the promotion sees the destination and declines
 * (-EBUSY: try later), or the migration sees the promotion, waits for it
 * to end, and then finds the page hot and takes it out of the hot set.
 */
int hm_tier_promote(struct hm_tier_ctx *ctx, uint64_t idx)
{
	struct hm_tier_engine *e = (struct hm_tier_engine *)ctx;
	int rc = -EBUSY;

	flush_if_sampled(e, idx);

	if (idx >= e->r->npages)
		return -EINVAL;
	atomic_store(&e->promoting, chain_pg(e->r, idx));
	atomic_fetch_add(&e->hot_busy, 1);
	if (!migrating(e->ch, e->r, idx))
		rc = promote(e, idx);
	atomic_fetch_add(&e->hot_seq, 1);
	atomic_fetch_sub(&e->hot_busy, 1);
	atomic_store(&e->promoting, UINT64_MAX);
	return rc;
}

/* Waits while the engine promotes a page that overlaps chain pages [pg, pg+npg). */
static void wait_promotion(struct hm_chain *ch, uint64_t pg, uint64_t npg)
{
	struct hm_tier_engine *e = engine_get(ch);

	if (!e)
		return;
	for (;;) {
		uint64_t at = atomic_load(&e->promoting);
		if (at == UINT64_MAX || at >= pg + npg || at + pages_per(e->r) <= pg)
			break;
		sched_yield();
	}
	engine_put(ch);
}

int hm_tier_demote(struct hm_tier_ctx *ctx, uint64_t idx, bool evict)
{
	struct hm_tier_engine *e = (struct hm_tier_engine *)ctx;
	struct hm_region *r = e->r;

	flush_if_sampled(e, idx);

	if (idx >= r->npages)
		return -EINVAL;
	unhot(e, idx);
	if (!evict || dram_bound(e->ch, r, idx))
		return 0;
	if (e->budget < (int64_t)r->ps)
		return -EAGAIN;
	e->budget -= (int64_t)r->ps;
	/* The drop waits for the page if a fault is loading it, and that load may need room. */
	sample_flush(e);
	return hm__cache_drop_range(r->cache, r, idx, 1, false);
}

/*
 * Zaps the pages hm_tier_sample() held, all runs in one call: a zap per page
 * flushed the TLB once per page, which on a VM stalls the threads using the
 * region each time (docs/design.md, "Zapping in batches"). Then they are
 * resident and unmapped, and their waiters go on.
 */
static void sample_flush(struct hm_tier_engine *e)
{
	struct hm_region *r = e->r;
	struct hm_cache *c = r->cache;
	struct hm_run run[TIER_SAMPLE_BATCH];
	uint32_t n = e->nsq, nr = 0;

	if (!n)
		return;
	/* The policy's hands sample in page order, mostly; sort the rest. */
	for (uint32_t i = 1; i < n; i++) {
		uint64_t t = e->sq[i];
		uint32_t j = i;
		for (; j > 0 && e->sq[j - 1] > t; j--)
			e->sq[j] = e->sq[j - 1];
		e->sq[j] = t;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (nr && run[nr - 1].idx + run[nr - 1].n == e->sq[i]) {
			run[nr - 1].n++;
		} else {
			run[nr].idx = e->sq[i];
			run[nr].n = 1;
			nr++;
		}
	}
	hm__zap_runs(r, run, nr);
	for (uint32_t i = 0; i < n; i++) {
		struct hm_page *p = hm__page(r, e->sq[i], false);
		uint32_t old = atomic_load(&p->st);
		while (!atomic_compare_exchange_weak(&p->st, &old,
						     (old & ~(HM_PG_BUSY | HM_PG_WAITERS)) |
							     HM_PG_UNMAPPED))
			;
		if (old & HM_PG_WAITERS)
			hm__page_wake(r, e->sq[i], 1);
	}
	pthread_mutex_lock(&c->lock);
	atomic_fetch_sub(&r->evicting, n);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	e->nsq = 0;
}

int hm_tier_sample(struct hm_tier_ctx *ctx, uint64_t idx)
{
	struct hm_tier_engine *e = (struct hm_tier_engine *)ctx;
	struct hm_region *r = e->r;
	struct hm_cache *c = r->cache;
	struct hm_page *p;

	if (idx >= r->npages)
		return -EINVAL;
	if (!e->sample_left)
		return -EAGAIN;
	p = hm__page(r, idx, false);
	if (!p)
		return -EBUSY; /* never touched: not resident */
	uint32_t st = atomic_load(&p->st);
	if ((st & HM_ST_MASK) != HM_ST_RESIDENT || (st & (HM_PG_BUSY | HM_PG_UNMAPPED)) ||
	    !atomic_compare_exchange_strong(&p->st, &st, st | HM_PG_BUSY))
		return -EBUSY;
	e->sample_left--;
	pthread_mutex_lock(&c->lock);
	atomic_fetch_add(&r->evicting, 1); /* keeps the region mapped meanwhile */
	pthread_mutex_unlock(&c->lock);
	/* Held until the batch is zapped: at most TIER_SAMPLE_BATCH pages, or the tick's end. */
	e->sq[e->nsq++] = idx;
	if (e->nsq == TIER_SAMPLE_BATCH)
		sample_flush(e);
	atomic_fetch_add(&e->sampled, 1);
	return 0;
}

/* ---- the engine ---- */

static void *engine_main(void *arg)
{
	struct hm_tier_engine *e = arg;

	hm__block_signals();
	pthread_mutex_lock(&e->lock);
	while (!e->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(e->ch->period_ms % 1000) * 1000000;
		ts.tv_sec += (time_t)(e->ch->period_ms / 1000) + ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&e->cond, &e->lock, &ts);
		if (e->stop)
			break;
		pthread_mutex_unlock(&e->lock);
		e->now_ms = (hm__now_ns() - e->t0_ns) / 1000000;
		/*
		 * Unused budget does not pile up: a burst stays within one
		 * period's worth and a page. What is left of a period, less
		 * than a page, carries over: without it a rate of 1.5 pages a
		 * period moved one, and one under a page a period moved none.
		 */
		{
			int64_t tick = (int64_t)(e->ch->rate * e->ch->period_ms / 1000);
			int64_t cap = tick + (int64_t)e->r->ps;
			int64_t left = e->budget > 0 ? e->budget : 0;
			e->budget = left + tick < cap ? left + tick : cap;
		}
		/* Sampling: at most an eighth of the resident pages per period, at least 64. */
		uint64_t rp = atomic_load(&e->r->resident_pages);
		e->sample_left = (uint32_t)(rp / 8 > 64 ? rp / 8 : 64);
		e->ops->tick(e->state, (struct hm_tier_ctx *)e);
		sample_flush(e);
		pthread_mutex_lock(&e->lock);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

static void engine_free(struct hm_tier_engine *e)
{
	if (e->state)
		e->ops->destroy(e->state);
	if (e->hot)
		munmap((void *)e->hot, e->r->npages);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	free(e);
}

/* Starts the chain's policy on region r. Caller holds ch->lock. */
static int engine_start(struct hm_chain *ch, struct hm_region *r)
{
	const struct hm_tier_policy_ops *ops;
	struct hm_tier_engine *e;
	const char *opts;
	int rc;

	rc = hm__tier_policy_find(ch->tier_policy, &ops, &opts);
	if (rc)
		return rc;
	if (!ops)
		return 0; /* "none": demand paging through the cache alone */
	e = calloc(1, sizeof *e);
	if (!e)
		return hm__error(-ENOMEM, "out of memory");
	e->ch = ch;
	e->r = r;
	e->ops = ops;
	e->promoting = UINT64_MAX;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	e->hot = mmap(NULL, r->npages, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (e->hot == MAP_FAILED) {
		e->hot = NULL;
		engine_free(e);
		return hm__error(-ENOMEM, "tiers: cannot allocate the hot-page map");
	}
	e->hot_max = (uint64_t)((double)hm__budget(r->cache) * ch->hot_fraction) >> r->ps_shift;
	rc = ops->create(&e->state, r->npages, opts);
	if (rc) {
		e->state = NULL;
		engine_free(e);
		if (!*hm_errormsg())
			hm__error(rc, "tiering policy '%s' rejected options '%s'", ops->name, opts);
		return rc;
	}
	e->t0_ns = hm__now_ns();
	if (pthread_create(&e->thread, NULL, engine_main, e)) {
		engine_free(e);
		return hm__error(-EAGAIN, "tiers: cannot start the tiering thread");
	}
	atomic_store(&ch->engine, e);
	return 0;
}

/* Stops the engine, giving its hot pages back to the cache. Caller holds ch->lock. */
static void engine_stop(struct hm_chain *ch)
{
	struct hm_tier_engine *e = atomic_exchange(&ch->engine, NULL);

	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stop = true;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->lock);
	pthread_join(e->thread, NULL);
	/* Faults that read the engine before it was withdrawn finish with it. */
	while (atomic_load(&ch->eng_users))
		sched_yield();
	for (uint64_t i = 0; i < e->r->npages && atomic_load(&e->hot_pages); i++)
		unhot(e, i);
	engine_free(e);
}

void hm__tier_pause(struct hm_chain *ch)
{
	pthread_mutex_lock(&ch->lock);
	engine_stop(ch);
}

int hm__tier_resume(struct hm_chain *ch)
{
	int rc = ch->region ? engine_start(ch, ch->region) : 0;

	pthread_mutex_unlock(&ch->lock);
	return rc;
}

int hm__tier_attach(struct hm_region *r)
{
	struct hm_chain *ch = hm__chain_of(r->store);
	int rc;

	if (!ch)
		return 0;
	pthread_mutex_lock(&ch->lock);
	if (ch->region) {
		pthread_mutex_unlock(&ch->lock);
		return hm__error(-EBUSY, "tiers: chain '%s' is mapped by another region already",
				 r->store->uri);
	}
	/* Anonymous pages have no sequential home to read ahead from. */
	atomic_store(&r->advice, HM_ADV_RANDOM);
	rc = engine_start(ch, r);
	if (!rc)
		ch->region = r;
	pthread_mutex_unlock(&ch->lock);
	return rc;
}

void hm__tier_unbind(struct hm_region *r, uint64_t idx, uint64_t n)
{
	struct hm_chain *ch = hm__chain_of(r->store);

	if (!ch)
		return;
	/* DRAM bindings were pins: release them. */
	for (uint64_t i = idx; i < idx + n; i++)
		if (dram_bound(ch, r, i))
			hm__cache_unpin(r->cache, r, i);
	hm__chain_set(ch, chain_pg(r, idx), n * pages_per(r), false, 0);
}

void hm__tier_forget(struct hm_region *r, uint64_t idx, uint64_t n, bool discard)
{
	struct hm_chain *ch = hm__chain_of(r->store);
	struct hm_tier_engine *e;

	if (!ch)
		return;
	hm__tier_unbind(r, idx, n);
	pthread_mutex_lock(&ch->lock);
	e = atomic_load(&ch->engine);
	for (uint64_t i = idx; e && e->r == r && i < idx + n; i++)
		unhot(e, i);
	pthread_mutex_unlock(&ch->lock);
	if (!discard)
		return;
	uint64_t pg = chain_pg(r, idx), npg = n * pages_per(r);
	hm__chain_set(ch, pg, npg, true, 0);
	hm__chain_release(ch, pg * HM_CHAIN_PAGE, npg * HM_CHAIN_PAGE);
}

bool hm__tier_detach(struct hm_region *r)
{
	struct hm_chain *ch = hm__chain_of(r->store);

	if (!ch)
		return false;
	pthread_mutex_lock(&ch->lock);
	if (ch->region == r) {
		engine_stop(ch);
		ch->region = NULL;
	}
	pthread_mutex_unlock(&ch->lock);
	/* hmmap()'s own chain closes with the region: its pages go with it. */
	return r->own_store;
}

/* ---- chains and tiers ---- */

int hm_chain_tiers(const struct hm_store *chain)
{
	struct hm_chain *ch = hm__chain_of(chain);

	if (!ch)
		return hm__error(-EINVAL, "hm_chain_tiers: not a tiers: store");
	return ch->ntiers;
}

struct hm_store *hm_chain_tier(const struct hm_store *chain, int index)
{
	struct hm_chain *ch = hm__chain_of(chain);

	if (!ch) {
		hm__error(-EINVAL, "hm_chain_tier: not a tiers: store");
		return NULL;
	}
	if (index < 0 || index >= ch->ntiers) {
		hm__error(-EINVAL, "hm_chain_tier: tier %d is outside 0..%d", index, ch->ntiers - 1);
		return NULL;
	}
	return ch->tier[index].store;
}

int hm_chain_cache(struct hm_store *chain, struct hm_cache **cache)
{
	struct hm_chain *ch = hm__chain_of(chain);
	int rc = 0;

	if (!ch || !cache)
		return hm__error(-EINVAL, "hm_chain_cache: not a tiers: store, or NULL cache");
	if (!ch->dram_budget)
		return hm__error(-ENOENT, "chain '%s' has no dram: tier; map it through any cache",
				 chain->uri);
	pthread_mutex_lock(&ch->lock);
	if (!ch->cache && !(rc = hm_cache_new(&ch->cache, ch->dram_budget, ch->cache_policy)))
		ch->cache->chain_owned = true; /* not yet seen by anyone else */
	*cache = ch->cache;
	pthread_mutex_unlock(&ch->lock);
	return rc;
}

int hm_tier_index(const struct hm_store *tier)
{
	struct hm_chain *ch;
	int t = hm__chain_find(tier, &ch);

	return t < 0 ? hm__error(-ENOENT, "store is not a tier of an open chain") : t;
}

int hm_tier_get(const struct hm_store *tier)
{
	struct hm_chain *ch;
	int t = hm__chain_find(tier, &ch);

	if (t < 0)
		return hm__error(-ENOENT, "hm_tier_get: store is not a tier of an open chain");
	return (int)(atomic_load(&ch->tier[t].flags) & (HM_TIER_EXPLICIT | HM_TIER_EMERGENCY |
							 HM_TIER_CLOSED));
}

int hm_tier_set(struct hm_store *tier, int flags)
{
	struct hm_chain *ch;
	int t = hm__chain_find(tier, &ch);

	if (t < 0)
		return hm__error(-ENOENT, "hm_tier_set: store is not a tier of an open chain");
	if (flags & ~(HM_TIER_EXPLICIT | HM_TIER_EMERGENCY | HM_TIER_CLOSED))
		return hm__error(-EINVAL, "hm_tier_set: unknown flags %#x", flags);
	if ((flags & HM_TIER_EMERGENCY) && !(flags & HM_TIER_EXPLICIT))
		return hm__error(-EINVAL, "hm_tier_set: HM_TIER_EMERGENCY needs HM_TIER_EXPLICIT");
	if (t == 0)
		return hm__error(-EINVAL, "hm_tier_set: the DRAM tier takes no flags (it is the "
					  "cache)");
	uint32_t old = atomic_load(&ch->tier[t].flags);
	if (old & HM_TIER_EVACUATING)
		return hm__error(-EBUSY, "hm_tier_set: '%s' is being evacuated", tier->uri);
	atomic_store(&ch->tier[t].flags, (uint32_t)flags);
	return 0;
}

static int tier_stats(const struct hm_store *tier, struct hm_tier_stats *st);

void hm__store_space(const struct hm_store *s, uint64_t *held, uint64_t *pool)
{
	struct hm_chain *ch = hm__chain_of(s);
	struct hm_tier_stats ts;

	*held = *pool = 0;
	if (s->ops == &hm__store_lz4 || s->ops == &hm__store_zstd) {
		memset(&ts, 0, sizeof ts);
		hm__zstore_info(s->priv, &ts);
		*held = ts.pages * HM_CHAIN_PAGE;
		*pool = ts.used_bytes;
		return;
	}
	/* A chain: its lower tiers (DRAM is the cache, with stats of its own). */
	for (int t = 1; ch && t < ch->ntiers; t++) {
		if (!ch->tier[t].store || tier_stats(ch->tier[t].store, &ts))
			continue;
		*held += ts.pages * HM_CHAIN_PAGE;
		*pool += ts.used_bytes;
	}
}

static int tier_stats(const struct hm_store *tier, struct hm_tier_stats *st)
{
	struct hm_chain *ch = NULL;
	int t;

	if (!tier || !st)
		return hm__error(-EINVAL, "hm_tier_stats: NULL argument");
	memset(st, 0, sizeof *st);
	t = hm__chain_find(tier, &ch);
	st->index = t;
	if (tier->ops == &hm__store_lz4 || tier->ops == &hm__store_zstd) {
		hm__zstore_info(tier->priv, st);
		if (t > 0) {
			/* A chain's pages of zeros never reach the store: add them. */
			uint64_t z = atomic_load(&ch->tier[t].zeros);
			st->pages += z;
			st->zero_pages += z;
		}
		uint64_t logical = st->pages * HM_CHAIN_PAGE;
		st->ratio = st->used_bytes ? (double)logical / (double)st->used_bytes : 0.0;
	} else if (t < 0) {
		return hm__error(-EINVAL, "hm_tier_stats: '%s' is neither a tier of an open chain "
					  "nor a compressed store",
				 tier->uri);
	}
	if (t < 0)
		return 0;
	struct hm_chain_tier *ct = &ch->tier[t];
	st->flags = atomic_load(&ct->flags) & (HM_TIER_EXPLICIT | HM_TIER_EMERGENCY | HM_TIER_CLOSED);
	st->moved_in = atomic_load(&ct->moved_in);
	st->moved_out = atomic_load(&ct->moved_out);
	if (t == 0) {
		pthread_mutex_lock(&ch->lock);
		struct hm_region *r = ch->region;
		st->capacity_bytes = r ? hm__budget(r->cache) : ch->dram_budget;
		if (r) {
			st->pages = atomic_load(&r->resident_pages) * pages_per(r);
			st->used_bytes = atomic_load(&r->resident_pages) << r->ps_shift;
		}
		struct hm_tier_engine *e = atomic_load(&ch->engine);
		if (e) {
			st->hot_pages = atomic_load(&e->hot_pages);
			st->promoted = atomic_load(&e->promoted);
			st->demoted = atomic_load(&e->demoted);
			st->sampled = atomic_load(&e->sampled);
		}
		pthread_mutex_unlock(&ch->lock);
		return 0;
	}
	if (!ct->compressed) {
		st->pages = atomic_load(&ct->pages);
		st->capacity_bytes = ct->nslots * HM_CHAIN_PAGE;
		/* Pages of zeros take no slot (read apart: never below zero). */
		uint64_t z = atomic_load(&ct->zeros);
		st->zero_pages = z;
		st->used_bytes = (st->pages > z ? st->pages - z : 0) * HM_CHAIN_PAGE;
		st->ratio = st->pages ? 1.0 : 0.0;
	}
	return 0;
}

/*
 * A page being loaded or evicted is counted in DRAM and in the lower tier
 * at once, for as long as its move takes. The caller's view settles first
 * (at most 100 ms of loads and evictions under way or owed, e.g. readahead
 * that goes on after the reads that started it, or the evictor's next
 * reclaim), so that the tiers' pages add up whenever nothing else moves
 * them. The statistics segment reads
 * tier_stats() as is: it must not wait.
 */
int hm_tier_stats(const struct hm_store *tier, struct hm_tier_stats *st)
{
	struct hm_chain *ch = NULL;
	struct hm_cache *c = NULL;

	if (tier && st && hm__chain_find(tier, &ch) >= 0) {
		pthread_mutex_lock(&ch->lock);
		c = ch->cache;
		pthread_mutex_unlock(&ch->lock);
	}
	if (c)
		hm__cache_settle(c, 100);
	return tier_stats(tier, st);
}

/* ---- bind and move ---- */

/*
 * Whether page idx is pinned, and by the engine's hotness alone (then a
 * move may take it down). A promotion pins its page before it marks it
 * hot, and a demotion unpins it after: the two are read while no such
 * change is under way, or the reading is taken again (a sequence count).
 */
static bool pin_is_engines(struct hm_chain *ch, struct hm_region *r, uint64_t idx, bool *pinned)
{
	struct hm_page *p = hm__page(r, idx, false);
	struct hm_tier_engine *e = engine_get(ch);
	bool hot = false;

	*pinned = p && (atomic_load(&p->st) & HM_PG_PINNED);
	if (!e)
		return false;
	for (;;) {
		while (atomic_load(&e->hot_busy))
			sched_yield();
		uint64_t seq = atomic_load(&e->hot_seq);
		*pinned = p && (atomic_load(&p->st) & HM_PG_PINNED);
		hot = e->r == r && idx < r->npages && atomic_load(&e->hot[idx]);
		if (!atomic_load(&e->hot_busy) && atomic_load(&e->hot_seq) == seq)
			break;
	}
	engine_put(ch);
	return *pinned && hot;
}

/* The region over a chain holding [addr, addr+len), held; or an error. */
static int range_region(void *addr, size_t len, const char *what, struct hm_region **out,
			struct hm_chain **chain)
{
	uintptr_t a = (uintptr_t)addr;
	struct hm_region *r;

	if (a & 4095)
		return hm__error(-EINVAL, "%s: address %p is not page-aligned", what, addr);
	if (len == 0)
		return hm__error(-EINVAL, "%s: length is zero", what);
	if (a + len < a)
		return hm__error(-EINVAL, "%s: range wraps around", what);
	r = hm__region_get(a);
	if (!r)
		return hm__error(-EFAULT, "%s: %p is not in an hmmap region", what, addr);
	if (a + len > (uintptr_t)r->base + r->span) {
		hm__region_put(r);
		return hm__error(-EINVAL, "%s: the range %p+%zu runs past its region", what, addr,
				 len);
	}
	if (hm__region_holed_at(r, a, a + len)) {
		hm__region_put(r);
		return hm__error(-EFAULT, "%s: part of %p+%zu was unmapped by hmunmap()", what,
				 addr, len);
	}
	*chain = hm__chain_of(r->store);
	if (!*chain) {
		hm__region_put(r);
		return hm__error(-EINVAL, "%s: the region at %p maps '%s', not a tier chain", what,
				 addr, r->store->uri);
	}
	*out = r;
	return 0;
}

/* Count of pages of [i0, i0+n) in tier t (or, for t < 0, in no lower tier and not in DRAM). */
static uint64_t count_in(struct hm_chain *ch, struct hm_region *r, uint64_t i0, uint64_t n, int t,
			 uint8_t *mark)
{
	uint64_t k = 0;

	for (uint64_t i = 0; i < n; i++) {
		bool in = where(ch, r, i0 + i) == t;
		if (mark)
			mark[i] = in;
		k += in;
	}
	return k;
}

/* Pages of [i0, i0+n) in tier t that were not (before[i] false). */
static long count_new(struct hm_chain *ch, struct hm_region *r, uint64_t i0, uint64_t n, int t,
		      const uint8_t *before)
{
	long k = 0;

	for (uint64_t i = 0; i < n; i++)
		k += !before[i] && where(ch, r, i0 + i) == t;
	return k;
}

/*
 * Moves pages [i0, i0+n) of r to tier t now. Returns the pages that are in
 * t now and were not before, or -errno (-ENOSPC: t had no room for some).
 */
static long migrate(struct hm_chain *ch, struct hm_region *r, uint64_t i0, uint64_t n, int t)
{
	uint8_t *before = calloc(n ? n : 1, 1);
	long moved = 0;
	int rc = 0;

	if (!before)
		return hm__error(-ENOMEM, "out of memory");
	count_in(ch, r, i0, n, t, before);
	if (t == 0) {
		/* Up: loads, in windows the budget holds. */
		uint64_t cap = (hm__budget(r->cache) / 2) >> r->ps_shift;
		if (n > cap) {
			free(before);
			return hm__error(-ENOMEM, "hm_bind: %llu bytes do not fit in the DRAM tier "
						  "(%llu bytes, half of which a migration may fill)",
					 (unsigned long long)(n << r->ps_shift),
					 (unsigned long long)hm__budget(r->cache));
		}
		/*
		 * Only pages in a lower tier move: one never written is nowhere,
		 * and stays so (move_pages(2) leaves a page never touched alone).
		 */
		quiet = true;
		for (uint64_t i = 0, j; i < n && !rc; i = j) {
			for (j = i + 1; j < n && (where(ch, r, i0 + j) > 0) == (where(ch, r, i0 + i) > 0);
			     j++)
				;
			if (where(ch, r, i0 + i) > 0)
				rc = hm__populate(r, i0 + i, j - i, false, false);
		}
		quiet = false;
	} else {
		uint64_t pg = chain_pg(r, i0), npg = n * pages_per(r);
		struct hm_tier_engine *e;
		/*
		 * Down: the destination first, so that the engine promotes no
		 * page of the range from now on (a promotion under way ends
		 * first); then hot pages go back to the cache, and evictions
		 * place at t.
		 */
		hm__chain_set(ch, pg, npg, true, (unsigned)t + 1);
		wait_promotion(ch, pg, npg);
		pthread_mutex_lock(&ch->lock);
		e = atomic_load(&ch->engine);
		for (uint64_t i = i0; e && i < i0 + n; i++)
			unhot(e, i);
		pthread_mutex_unlock(&ch->lock);
		hm__chain_dest_strict = true;
		rc = hm__cache_drop_range(r->cache, r, i0, n, false);
		if (rc == -ENOSPC) {
			/*
			 * A write-back run fails whole; page by page, those that
			 * fit still move.
			 */
			rc = 0;
			for (uint64_t i = i0; i < i0 + n; i++) {
				int one = hm__cache_drop_range(r->cache, r, i, 1, false);
				if (one && one != -ENOSPC && !rc)
					rc = one;
				if (one == -ENOSPC)
					rc = rc ? rc : -ENOSPC;
			}
		}
		hm__chain_dest_strict = false;
		for (uint64_t k = 0; k < npg && (!rc || rc == -ENOSPC); k++) {
			int m = hm__chain_move_page(ch, pg + k, (unsigned)t, 0);
			if (m < 0 && (!rc || m != -ENOSPC))
				rc = m;
		}
		/* Counted while the destination holds off the engine's promotions. */
		moved = count_new(ch, r, i0, n, t, before);
		hm__chain_set(ch, pg, npg, true, 0);
	}
	if (t == 0)
		moved = count_new(ch, r, i0, n, t, before);
	free(before);
	if (rc == -ENOSPC)
		return hm__error(-ENOSPC, "tier %d ('%s') has no room for every page of the range "
					  "(%ld moved; the others stay where they were)",
				 t, ch->tier[t].store->uri, moved);
	if (rc)
		return rc;
	return moved;
}

/*
 * A DRAM binding takes its room from the engine's hot pages first: the hot
 * share holds hot pages and DRAM bindings together, and an explicit
 * placement outranks a guess from access counts. Demotes hot pages outside
 * [i0, i0+n) until the pins and `need` more bytes fit in the share, or the
 * engine holds none. The engine does not take the room back meanwhile:
 * `need` is in ch->bind_reserve, which hot_room() counts.
 */
static void hot_make_room(struct hm_chain *ch, struct hm_region *r, uint64_t i0, uint64_t n,
			  uint64_t need)
{
	pthread_mutex_lock(&ch->lock);
	struct hm_tier_engine *e = atomic_load(&ch->engine);
	if (e && e->r == r) {
		uint64_t share = e->hot_max << r->ps_shift, pinned = hm__cache_pinned(r->cache);
		uint64_t excess = pinned + need > share ? pinned + need - share : 0;
		for (uint64_t i = 0; i < r->npages && excess && atomic_load(&e->hot_pages); i++) {
			if (i >= i0 && i < i0 + n)
				continue;
			if (unhot(e, i) && !dram_bound(ch, r, i))
				excess = excess > r->ps ? excess - r->ps : 0;
		}
	}
	pthread_mutex_unlock(&ch->lock);
}

long hm_bind(void *addr, size_t length, struct hm_store *store, int flags)
{
	struct hm_region *r = NULL;
	struct hm_chain *ch, *sch = NULL;
	long rc;
	int t = -1;

	if (flags & ~(HM_BIND | HM_MIGRATE | HM_BIND_DEFAULT))
		return hm__error(-EINVAL, "hm_bind: unknown flags %#x", flags);
	if (!flags)
		return hm__error(-EINVAL, "hm_bind: flags must be HM_BIND, HM_MIGRATE (or both), or "
					  "HM_BIND_DEFAULT");
	if ((flags & HM_BIND_DEFAULT) && (flags & ~HM_BIND_DEFAULT))
		return hm__error(-EINVAL, "hm_bind: HM_BIND_DEFAULT goes alone");
	if (!(flags & HM_BIND_DEFAULT) && !store)
		return hm__error(-EINVAL, "hm_bind: NULL store");
	rc = range_region(addr, length, "hm_bind", &r, &ch);
	if (rc)
		return rc;
	if (store) {
		t = hm__chain_find(store, &sch);
		if (t < 0 || sch != ch) {
			hm__region_put(r);
			return hm__error(-EINVAL, "hm_bind: store '%s' is not a tier of the chain "
						  "mapped at %p ('%s')",
					 store->uri, addr, r->store->uri);
		}
	}
	uint64_t i0 = ((uintptr_t)addr - (uintptr_t)r->base) >> r->ps_shift;
	uint64_t i1 = ((uintptr_t)addr + length - 1 - (uintptr_t)r->base) >> r->ps_shift;
	uint64_t n = i1 - i0 + 1;
	uint64_t pg = chain_pg(r, i0), npg = n * pages_per(r);
	void *a = r->base + (i0 << r->ps_shift);
	size_t len = (size_t)n << r->ps_shift;

	if (flags & HM_BIND_DEFAULT) {
		hm__tier_unbind(r, i0, n);
		hm__region_put(r);
		return 0;
	}
	if (t == 0 && (flags & HM_BIND)) {
		/* DRAM binding: bring the range in and pin it, or fail whole. */
		uint64_t was = count_in(ch, r, i0, n, 0, NULL), need = 0;
		for (uint64_t i = i0; i < i1 + 1; i++) {
			struct hm_page *p = hm__page(r, i, false);
			if (!p || !(atomic_load(&p->st) & HM_PG_PINNED))
				need += r->ps;
		}
		atomic_fetch_add(&ch->bind_reserve, need);
		hot_make_room(ch, r, i0, n, need);
		quiet = true;
		rc = hm_prefault(a, len, HM_PREFAULT_PIN);
		quiet = false;
		atomic_fetch_sub(&ch->bind_reserve, need);
		if (!rc) {
			hm__chain_set(ch, pg, npg, false, 1);
			rc = (flags & HM_MIGRATE) ? (long)(count_in(ch, r, i0, n, 0, NULL) - was) : 0;
			if (rc < 0)
				rc = 0;
		}
		hm__region_put(r);
		return rc;
	}
	if (t != 0 && !(flags & HM_BIND)) {
		/* Moving pages down that a DRAM binding holds would undo it behind its back. */
		for (uint64_t i = i0; i < i1 + 1; i++) {
			if (dram_bound(ch, r, i)) {
				hm__region_put(r);
				return hm__error(-EBUSY, "hm_bind: page %p is bound to DRAM; bind the "
							 "range to '%s' (HM_BIND | HM_MIGRATE) or "
							 "release it (HM_BIND_DEFAULT) first",
						 (void *)(r->base + (i << r->ps_shift)), store->uri);
			}
		}
	}
	if (flags & HM_BIND) {
		/* A DRAM binding of the range ends: its pins go. */
		for (uint64_t i = i0; i < i1 + 1; i++)
			if (dram_bound(ch, r, i))
				hm__cache_unpin(r->cache, r, i);
		hm__chain_set(ch, pg, npg, false, (unsigned)t + 1);
		/*
		 * Hot pages of the range are the engine's no longer: the binding
		 * decides where they go when the cache evicts them.
		 */
		pthread_mutex_lock(&ch->lock);
		struct hm_tier_engine *e = atomic_load(&ch->engine);
		for (uint64_t i = i0; e && i < i1 + 1; i++)
			unhot(e, i);
		pthread_mutex_unlock(&ch->lock);
	}
	rc = (flags & HM_MIGRATE) ? migrate(ch, r, i0, n, t) : 0;
	hm__region_put(r);
	return rc;
}

long hm_move(size_t count, void *const *pages, struct hm_store *const *stores, int *status,
	     int flags)
{
	long failed = 0;

	if (flags)
		return hm__error(-EINVAL, "hm_move: flags must be 0");
	if (count && (!pages || !status))
		return hm__error(-EINVAL, "hm_move: NULL pages or status");
	/* No array of this many pointers fits in memory, nor its count in the result. */
	if (count > (size_t)LONG_MAX / sizeof(void *))
		return hm__error(-EINVAL, "hm_move: count %zu is too large", count);
	for (size_t i = 0; i < count; i++) {
		struct hm_region *r = hm__region_get((uintptr_t)pages[i]);
		struct hm_chain *ch = r ? hm__chain_of(r->store) : NULL, *sch = NULL;

		if (!ch) {
			status[i] = -EFAULT;
			failed += stores != NULL; /* a query moves nothing: it returns 0 */
			if (r)
				hm__region_put(r);
			continue;
		}
		uint64_t idx = ((uintptr_t)pages[i] - (uintptr_t)r->base) >> r->ps_shift;
		if (hm__region_holed(r, idx, 1)) {
			status[i] = -EFAULT; /* unmapped by hmunmap(), as move_pages(2) says */
			failed += stores != NULL;
			hm__region_put(r);
			continue;
		}
		if (!stores) {
			status[i] = where(ch, r, idx);
			hm__region_put(r);
			continue;
		}
		int t = stores[i] ? hm__chain_find(stores[i], &sch) : -1;
		if (t < 0 || sch != ch) {
			status[i] = -EINVAL;
			failed++;
			hm__region_put(r);
			continue;
		}
		int w = where(ch, r, idx);
		struct hm_page *p = hm__page(r, idx, false);
		/*
		 * A pinned page moves down only if the engine's hotness is all
		 * that pins it: a DRAM binding (the engine may hold the page
		 * hot as well, from before the binding) keeps it.
		 */
		bool pinned = false, engines = w == 0 && t != 0 && p &&
					      pin_is_engines(ch, r, idx, &pinned);
		if (w == 0 && t != 0 && pinned && (!engines || dram_bound(ch, r, idx))) {
			status[i] = -EBUSY;
		} else if (w == -ENOENT) {
			status[i] = -ENOENT; /* never written: nothing to move */
		} else if (w == t) {
			status[i] = t;
		} else {
			long m = migrate(ch, r, idx, 1, t);
			status[i] = m < 0 ? (int)m : where(ch, r, idx);
		}
		if (status[i] != t)
			failed++;
		hm__region_put(r);
	}
	return failed;
}

/* ---- evacuation ---- */

/*
 * The last refuge of a page being evacuated from tier t when every other
 * lower tier is full: DRAM, if the region over the chain covers the page
 * and its cache has room for it above the evictor's low watermark, since
 * an eviction would have nowhere to put what it evicts. Loading the region
 * page takes its 4 KiB pages out of t (tiers are exclusive). Returns how
 * many of them left t, or -ENOSPC.
 */
static int evacuate_up(struct hm_chain *ch, uint64_t pg, unsigned t)
{
	struct hm_region *r = NULL;
	uintptr_t base = 0;
	int moved = -ENOSPC;

	pthread_mutex_lock(&ch->lock);
	if (ch->region)
		base = (uintptr_t)ch->region->base;
	pthread_mutex_unlock(&ch->lock);
	if (!base || !(r = hm__region_get(base)))
		return -ENOSPC;
	uint64_t off = pg * HM_CHAIN_PAGE;
	if (hm__chain_of(r->store) == ch && off >= r->offset && off - r->offset < r->span &&
	    hm__cache_room(r->cache, r->ps)) {
		uint64_t idx = (off - r->offset) >> r->ps_shift;
		uint64_t first = chain_pg(r, idx), n = pages_per(r), before = 0, after = 0;
		for (uint64_t k = 0; k < n && first + k < ch->npages; k++)
			before += CE_TIER(atomic_load(&ch->map[first + k])) == t;
		quiet = true;
		int rc = hm__populate(r, idx, 1, false, false);
		quiet = false;
		for (uint64_t k = 0; k < n && first + k < ch->npages; k++)
			after += CE_TIER(atomic_load(&ch->map[first + k])) == t;
		if (!rc && after < before)
			moved = (int)(before - after);
	}
	hm__region_put(r);
	hm__error_clear(); /* a load that failed leaves the page where it was: -ENOSPC says it */
	return moved;
}

/*
 * The scan found tier ct empty: it stops being the last resort of placement
 * (HM_TIER_EVAC_OPEN), then every placement that chose it before that lands
 * or gives up. place() reads the tier flags and writes the page under the
 * page's stripe lock, so once each stripe lock has been taken and released,
 * none that read the flags before is still under way. Returns whether the
 * tier is still empty: a placement that read the flags while the tier was
 * the last resort may have put a page there after the scan (an eviction no
 * other tier had room for), and an evacuation that returned 0 then left a
 * page in a closed tier.
 */
static bool last_resort_off(struct hm_chain *ch, struct hm_chain_tier *ct)
{
	atomic_fetch_and(&ct->flags, ~(uint32_t)HM_TIER_EVAC_OPEN);
	for (int i = 0; i < HM_CHAIN_STRIPES; i++) {
		pthread_mutex_lock(&ch->stripe[i]);
		pthread_mutex_unlock(&ch->stripe[i]);
	}
	return !atomic_load(&ct->pages);
}

int hm_store_evacuate(struct hm_store *store,
		      void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx)
{
	struct hm_chain *ch;
	int t = hm__chain_find(store, &ch);
	uint64_t done = 0, total, total0, step, next;
	uint32_t old;
	int rc = 0, rounds = 0;

	if (!store)
		return hm__error(-EINVAL, "hm_store_evacuate: NULL store");
	if (t < 0)
		return hm__error(-EINVAL, "hm_store_evacuate: '%s' is not a tier of an open chain",
				 store->uri);
	if (t == 0)
		return hm__error(-EINVAL, "hm_store_evacuate: the DRAM tier is the cache; shrink it "
					  "with hm_cache_resize()");
	struct hm_chain_tier *ct = &ch->tier[t];
	old = atomic_load(&ct->flags);
	do {
		if (old & HM_TIER_EVACUATING)
			return hm__error(-EBUSY, "hm_store_evacuate: '%s' is being evacuated already",
					 store->uri);
	} while (!atomic_compare_exchange_weak(
		&ct->flags, &old,
		old | HM_TIER_CLOSED | HM_TIER_EVACUATING |
			(old & HM_TIER_CLOSED ? 0u : (uint32_t)HM_TIER_EVAC_OPEN)));
	total = total0 = atomic_load(&ct->pages);
	step = total / 100 ? total / 100 : 1;
	next = step;
	if (progress)
		progress(ctx, 0, total);
	/*
	 * A write-back that picked this tier before it closed may still land:
	 * scan again until the tier is empty. So may one that took the tier
	 * as its last resort (HM_TIER_EVAC_OPEN) after the scan found it
	 * empty: see last_resort_off().
	 */
again:
	for (int pass = 0; pass < 1000 && !rc && atomic_load(&ct->pages); pass++) {
		for (uint64_t pg = 0; pg < ch->npages && !rc; pg++) {
			if (CE_TIER(atomic_load(&ch->map[pg])) != (unsigned)t)
				continue;
			int m = hm__chain_move_page(ch, pg, 0, (unsigned)t);
			if (m == -ENOSPC)
				m = evacuate_up(ch, pg, (unsigned)t);
			if (m < 0) {
				rc = m;
				break;
			}
			done += (uint64_t)m;
			if (done > total)
				total = done;
			if (progress && done >= next) {
				progress(ctx, done, total);
				next = done + step;
			}
		}
		if (!rc && atomic_load(&ct->pages)) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	}
	if (!rc && !atomic_load(&ct->pages) && !last_resort_off(ch, ct) && ++rounds < 1000) {
		/* A placement landed meanwhile: the tier is the last resort again. */
		atomic_fetch_or(&ct->flags, old & HM_TIER_CLOSED ? 0u : (uint32_t)HM_TIER_EVAC_OPEN);
		goto again;
	}
	if (!rc && atomic_load(&ct->pages))
		rc = -EBUSY;
	if (rc) {
		/* Open again, with the flags it had: nothing was lost. */
		atomic_store(&ct->flags, old);
		if (progress)
			progress(ctx, done, total);
		/*
		 * What is left, not `done`: the evictor may have sent some of the
		 * moved pages back down here, and they were counted as they left.
		 */
		unsigned long long left = atomic_load(&ct->pages), had = total0;

		if (left > had)
			had = left;
		if (rc == -ENOSPC)
			return hm__error(-ENOSPC, "evacuation of '%s' stopped with %llu of its %llu "
						  "pages still in it: the other tiers, DRAM included, "
						  "are full; no page was lost and the store takes pages "
						  "again", store->uri, left, had);
		return hm__error_errno(rc, "evacuation of '%s' stopped with %llu of its %llu pages "
					   "still in it (no page was lost; the store takes pages "
					   "again)", store->uri, left, had);
	}
	atomic_store(&ct->flags, (old | HM_TIER_CLOSED) & ~(uint32_t)HM_TIER_EVACUATING);
	if (progress)
		progress(ctx, total, total);
	return 0;
}
