/* SPDX-License-Identifier: MIT */
/*
 * tiers: - anonymous memory over an ordered chain of stores, fastest first.
 *
 *   tiers:dram:2G > lz4:8G > file:/ssd/swap
 *
 * The first element, dram:SIZE, is tier 0: the DRAM budget of the cache the
 * chain brings (hmmap() maps a chain through it; hm_chain_cache() gives it
 * to hm_region_map() users). Its options set the policies:
 *
 *   dram:SIZE[,cache=POLICY][,tiering=NAME][,rate=SIZE][,hot=F][,period=MS]
 *
 * cache is the replacement policy of the DRAM tier ("clock"), tiering the
 * automatic tiering policy ("hotness", or "none"), rate the most bytes per
 * second it promotes and demotes (256M), hot the fraction of the budget that
 * hot pages may hold (0.75), period its tick (100 ms). Each later element is
 * a store URI, optionally prefixed by "explicit:" (the tier receives pages
 * only from hm_bind()/hm_move()) or "emergency:" (explicit, but implicit
 * placement may use it when every other lower tier is full). Spaces around
 * '>' are ignored.
 *
 * The chain's address space is as large as all its tiers together. Each
 * 4 KiB page lives in exactly one tier: DRAM while it is resident (the
 * lower copy is forgotten when the page is loaded; see hm__chain_release()),
 * else one lower tier, else nowhere (never written: it reads as zeros
 * without touching any store). A page written as all zeros is in a lower
 * tier like any other, but without a slot (CE_ZERO): it reads as zeros with
 * no store traffic, takes no room, and moves between tiers for nothing. An
 * evicted page goes to its migration destination, else its bound tier, else
 * the highest lower tier with room.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/internal.h"
#include "core/tier.h"
#include "stores/paged.h"

_Static_assert(HM_CHAIN_PAGE == HM_PAGED_SIZE, "the read loop works in pages of this size");

/* Chains alive, so that a tier store can be traced back to its chain. */
static pthread_mutex_t chains_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hm_chain *chains[64];
static int nchains;

/* fork(): the parent's chains (and their tiering threads) stay the parent's. */
void hm__chain_fork(int phase)
{
	switch (phase) {
	case HM_FORK_PREPARE:
		pthread_mutex_lock(&chains_lock);
		break;
	case HM_FORK_PARENT:
		pthread_mutex_unlock(&chains_lock);
		break;
	case HM_FORK_CHILD:
		nchains = 0;
		pthread_mutex_unlock(&chains_lock);
		break;
	}
}

int hm__chain_find(const struct hm_store *tier, struct hm_chain **chain)
{
	int idx = -1;

	if (!tier)
		return -1;
	pthread_mutex_lock(&chains_lock);
	for (int i = 0; i < nchains && idx < 0; i++) {
		for (int t = 0; t < chains[i]->ntiers; t++) {
			if (chains[i]->tier[t].store == tier) {
				*chain = chains[i];
				idx = t;
				break;
			}
		}
	}
	pthread_mutex_unlock(&chains_lock);
	return idx;
}

/* ---- the DRAM pseudo-store: names tier 0 for hm_bind() and stats ---- */

static int dram_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return hm__error(-EINVAL, "dram: is the first element of a tiers: chain "
				  "(tiers:dram:1G>lz4:4G), not a store of its own");
}

static void dram_close(void *priv)
{
}

static int dram_io(void *priv, void *buf, size_t len, uint64_t off)
{
	return -ENOTSUP;
}

static int dram_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	return -ENOTSUP;
}

static const struct hm_store_ops dram_ops = {
	.abi = HM_STORE_ABI,
	.scheme = "dram",
	.summary = "the DRAM tier of a chain (its cache)",
	.open = dram_open,
	.close = dram_close,
	.read = dram_io,
	.write = dram_write,
};

/* ---- slots ---- */

static uint64_t slot_alloc(struct hm_chain_tier *t)
{
	uint64_t s = UINT64_MAX;

	pthread_mutex_lock(&t->lock);
	if (t->nfree)
		s = t->free[--t->nfree];
	else if (t->bump < t->nslots)
		s = t->bump++;
	pthread_mutex_unlock(&t->lock);
	return s;
}

/* Records the page now in slot s (push_down() finds it there). */
static void ct_own(struct hm_chain_tier *t, uint64_t s, uint64_t pg)
{
	__atomic_store_n(&t->owner[s], pg, __ATOMIC_RELAXED);
}

static void slot_free(struct hm_chain_tier *t, uint64_t s)
{
	if (s == CE_ZERO)
		return; /* a page of zeros has no slot */
	if (t->compressed)
		hm__zstore_discard(t->store->priv, s * HM_CHAIN_PAGE, HM_CHAIN_PAGE);
	pthread_mutex_lock(&t->lock);
	t->free[t->nfree++] = (uint32_t)s;
	pthread_mutex_unlock(&t->lock);
}

/*
 * Page entry e leaves tier `from` (0: nowhere) for tier `to`: frees its slot
 * and keeps the tiers' counts. The same tier (a page rewritten in place with
 * a new slot) only frees the old slot.
 */
static void leave(struct hm_chain *ch, uint64_t e, unsigned from, unsigned to, bool zero)
{
	if (from) {
		slot_free(&ch->tier[from], CE_SLOT(e));
		if (CE_SLOT(e) == CE_ZERO)
			atomic_fetch_sub(&ch->tier[from].zeros, 1);
	}
	if (to && zero)
		atomic_fetch_add(&ch->tier[to].zeros, 1);
	if (from == to)
		return;
	if (from) {
		atomic_fetch_sub(&ch->tier[from].pages, 1);
		atomic_fetch_add(&ch->tier[from].moved_out, 1);
	}
	if (to) {
		atomic_fetch_add(&ch->tier[to].pages, 1);
		atomic_fetch_add(&ch->tier[to].moved_in, 1);
	}
}

/* ---- pages ---- */

static bool page_zero(const char *p)
{
	const uint64_t *q = (const uint64_t *)p;

	for (unsigned i = 0; i < HM_CHAIN_PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

static int tier_read(struct hm_chain_tier *t, void *buf, size_t len, uint64_t off)
{
	int rc = t->store->ops->read(t->store->priv, buf, len, off);

	if (rc)
		hm__count(&t->store->ctr, read_errors, 1);
	else
		hm__count(&t->store->ctr, bytes_read, len);
	return rc;
}

static int tier_write(struct hm_chain_tier *t, const void *buf, uint64_t off)
{
	int rc = t->store->ops->write(t->store->priv, buf, HM_CHAIN_PAGE, off);

	if (rc && rc != -ENOSPC)
		hm__count(&t->store->ctr, writeback_errors, 1);
	if (!rc) {
		hm__count(&t->store->ctr, writebacks, 1);
		hm__count(&t->store->ctr, bytes_written, HM_CHAIN_PAGE);
	}
	return rc;
}

/*
 * Whether implicit placement may use tier t in pass 0 (normal), 1
 * (emergency) or 2 (the last resort: a tier being evacuated that was open,
 * for a page no other tier has room for; see HM_TIER_EVAC_OPEN).
 */
static bool implicit_ok(uint32_t f, unsigned t, unsigned avoid, int pass)
{
	if (t == avoid)
		return false;
	if (pass == 2)
		return (f & HM_TIER_EVAC_OPEN) &&
		       (!(f & HM_TIER_EXPLICIT) || (f & HM_TIER_EMERGENCY));
	if (f & (HM_TIER_CLOSED | HM_TIER_EVACUATING))
		return false;
	if (pass == 0)
		return !(f & HM_TIER_EXPLICIT);
	return (f & HM_TIER_EXPLICIT) && (f & HM_TIER_EMERGENCY);
}

/* Set by hm_bind()'s own drop of a range: see hm__chain_dest_strict in tier.h. */
__thread bool hm__chain_dest_strict;

static bool tier_open(struct hm_chain *ch, unsigned t)
{
	return !(atomic_load(&ch->tier[t].flags) & (HM_TIER_CLOSED | HM_TIER_EVACUATING));
}

static int place(struct hm_chain *ch, uint64_t pg, const char *data, unsigned to, unsigned avoid);
static int fetch(struct hm_chain *ch, uint64_t pg, char *buf);

/* Set while this thread pushes a page down: that page does not push another. */
static __thread bool pushing;
/*
 * Set by hm__chain_move_page(): a page of zeros that no other tier takes
 * stays where it is (-ENOSPC) instead of going nowhere, so that an
 * evacuation takes it up into DRAM as it does any other page; the page was
 * written, and going nowhere would make it one never written.
 */
static __thread bool keep_zeros;

/*
 * Cold pages go down. A page evicted from DRAM toward a full lower tier
 * pushes that tier's oldest page down to the next tier with room, rather than
 * passing it by: otherwise the first pages evicted, the coldest, held the
 * fast lower tier for good while warmer ones went to the slowest (pages 0-512
 * of 2048 written in order in tier 1 of dram > mem:2M > mem:16M, 513-1885 in
 * tier 2). "Oldest" is a hand going round the slots: a tier fills its slots
 * in order, and a freed slot is the next to be filled, so the hand meets
 * pages about in the order they came. A page bound to the tier or on its
 * way to a migration's destination stays. Returns whether a page went down.
 */
static bool push_down(struct hm_chain *ch, unsigned t, uint64_t self)
{
	struct hm_chain_tier *ct = &ch->tier[t];
	char page[HM_CHAIN_PAGE] __attribute__((aligned(4096)));
	pthread_mutex_t *mine = hm__chain_stripe(ch, self);

	for (int tries = 0; tries < 16; tries++) {
		uint64_t slot, vpg;
		pthread_mutex_lock(&ct->lock);
		if (!ct->bump) {
			pthread_mutex_unlock(&ct->lock);
			return false;
		}
		slot = ct->hand++ % ct->bump;
		vpg = __atomic_load_n(&ct->owner[slot], __ATOMIC_RELAXED);
		pthread_mutex_unlock(&ct->lock);
		if (vpg >= ch->npages || vpg == self)
			continue; /* (the page being placed stays where place() found it) */
		/*
		 * Stripe locks nest only by trylock: no order between them. The
		 * stripe of the page being placed is held already (a tier holding
		 * as many pages as there are stripes often offers its oldest page
		 * on the same stripe as the newest).
		 */
		pthread_mutex_t *l = hm__chain_stripe(ch, vpg);
		if (l != mine && pthread_mutex_trylock(l))
			continue;
		uint64_t e = atomic_load(&ch->map[vpg]);
		int rc = 1;
		if (CE_TIER(e) == t && CE_SLOT(e) == slot && !CE_BIND(e) && !CE_DEST(e)) {
			pushing = true;
			rc = fetch(ch, vpg, page);
			if (!rc)
				rc = place(ch, vpg, page, 0, t);
			pushing = false;
			if (!rc && CE_TIER(atomic_load(&ch->map[vpg])) == t)
				rc = -ENOSPC;
		}
		if (l != mine)
			pthread_mutex_unlock(l);
		if (!rc)
			return true;
		if (rc < 0)
			return false; /* nowhere below has room, or a store fails */
	}
	return false;
}

/*
 * Puts the 4 KiB page `data` of page pg somewhere, under its stripe lock.
 * `to` (a tier, or 0) overrides the entry's destination and binding;
 * `avoid` is a tier implicit placement must skip. Returns 0 or -errno
 * (-ENOSPC: no tier allowed for it has room); the old copy stays on error.
 *
 * A one-shot destination (a migration in progress) is tried first. Only
 * the migration's own drop insists on it (hm__chain_dest_strict: a page
 * that does not fit stays in DRAM, as hm_bind() promises); any other
 * eviction of the page - the cache making room for a fault of a thread
 * that keeps using the range - falls back to the binding or the chain's
 * order, since a failed eviction would end that fault in SIGBUS.
 */
static int place(struct hm_chain *ch, uint64_t pg, const char *data, unsigned to, unsigned avoid)
{
	uint64_t e = atomic_load(&ch->map[pg]);
	unsigned cur = CE_TIER(e), cand[3 * HM_CHAIN_MAX + 1], nc = 0, dest = to;
	unsigned first = UINT_MAX, pushes = 0;
	bool strict = to != 0, zero = page_zero(data);
	int err = -ENOSPC;

	if (!dest && CE_DEST(e) > 1) {
		dest = CE_DEST(e) - 1;
		strict = hm__chain_dest_strict;
	}
	if (dest && tier_open(ch, dest))
		cand[nc++] = dest;
	if (strict) {
		/* Only the destination. */
	} else if (CE_BIND(e) > 1 && tier_open(ch, CE_BIND(e) - 1)) {
		/* Bound: that tier only, as mbind(MPOL_BIND). */
		if (CE_BIND(e) - 1 != dest)
			cand[nc++] = CE_BIND(e) - 1;
	} else {
		/*
		 * Every pass judges the same flags: read per pass, a tier whose
		 * evacuation ended between two passes was closed to the first
		 * and no longer the last resort of the third, and an eviction
		 * that only it could take failed (SIGBUS for the writer).
		 */
		uint32_t fl[HM_CHAIN_MAX];
		for (int t = 1; t < ch->ntiers; t++)
			fl[t] = atomic_load(&ch->tier[t].flags);
		first = nc; /* the first tier of the chain's own order may push down */
		for (int pass = 0; pass < 3; pass++)
			for (int t = 1; t < ch->ntiers; t++)
				if ((unsigned)t != dest && implicit_ok(fl[t], (unsigned)t, avoid, pass) &&
				    /* a page pushed down goes down, to a tier that is open */
				    !(pushing && ((unsigned)t < avoid || pass == 2)))
					cand[nc++] = (unsigned)t;
	}
	for (unsigned i = 0; i < nc; i++) {
		struct hm_chain_tier *t = &ch->tier[cand[i]];
		uint64_t slot;
		int rc;

		if (zero) {
			/* Written, all zeros: in the first tier allowed, without a slot. */
			leave(ch, e, cur, cand[i], true);
			atomic_store(&ch->map[pg], CE_MAKE(CE_ZERO, cand[i], CE_BIND(e), CE_DEST(e)));
			atomic_fetch_add(&ch->zero_drops, 1);
			return 0;
		}
		/*
		 * A tier whose write fails (an I/O error, a server gone) has no
		 * room either: the next candidate is tried, and the error is
		 * what the placement returns if none takes the page.
		 */
		if (cand[i] == cur && CE_SLOT(e) != CE_ZERO) {
			/* Already there: overwrite in place. */
			rc = tier_write(t, data, CE_SLOT(e) * HM_CHAIN_PAGE);
			if (!rc) {
				ct_own(t, CE_SLOT(e), pg);
				atomic_store(&ch->map[pg], CE_MAKE(CE_SLOT(e), cur, CE_BIND(e), CE_DEST(e)));
				return 0;
			}
			if (rc != -ENOSPC) {
				err = err == -ENOSPC ? rc : err;
				continue;
			}
			goto no_room;
		}
		slot = slot_alloc(t);
		if (slot == UINT64_MAX)
			goto no_room;
		rc = tier_write(t, data, slot * HM_CHAIN_PAGE);
		if (rc) {
			slot_free(t, slot);
			if (rc != -ENOSPC) {
				err = err == -ENOSPC ? rc : err;
				continue;
			}
			goto no_room;
		}
		ct_own(t, slot, pg);
		leave(ch, e, cur, cand[i], false); /* the same tier: zeros get a slot */
		atomic_store(&ch->map[pg], CE_MAKE(slot, cand[i], CE_BIND(e), CE_DEST(e)));
		return 0;
no_room:
		/*
		 * The first tier of the chain's order is full: its oldest page
		 * goes down. Another thread may take the room first (the evictor
		 * beside a fault's own eviction): a few tries.
		 */
		if (i == first && i + 1 < nc && pushes < 4 && !pushing && push_down(ch, cand[i], pg)) {
			pushes++;
			i--; /* that tier again */
		}
	}
	if (zero && !strict && !keep_zeros) {
		/* No tier may take it: nowhere, which reads as zeros as well. */
		leave(ch, e, cur, 0, true);
		atomic_store(&ch->map[pg], CE_MAKE(0, 0, CE_BIND(e), CE_DEST(e)));
		atomic_fetch_add(&ch->zero_drops, 1);
		return 0;
	}
	if (CE_BIND(e) > 1 && !strict)
		atomic_fetch_add(&ch->bind_misses, 1);
	return err;
}

/* Reads page pg into a 4 KiB buffer, under its stripe lock. */
static int fetch(struct hm_chain *ch, uint64_t pg, char *buf)
{
	uint64_t e = atomic_load(&ch->map[pg]);

	if (!CE_TIER(e) || CE_SLOT(e) == CE_ZERO) {
		memset(buf, 0, HM_CHAIN_PAGE);
		return 0;
	}
	return tier_read(&ch->tier[CE_TIER(e)], buf, HM_CHAIN_PAGE, CE_SLOT(e) * HM_CHAIN_PAGE);
}

static pthread_mutex_t *chain_lock(void *ctx, uint64_t pg)
{
	return hm__chain_stripe(ctx, pg);
}

static int chain_get(void *ctx, uint64_t pg, char *dst)
{
	return fetch(ctx, pg, dst);
}

static int chain_read(void *priv, void *buf, size_t len, uint64_t off)
{
	static const struct hm_paged_ops ops = { chain_lock, chain_get };
	struct hm_chain *ch = priv;

	return hm__paged_read(&ops, ch, ch->npages, buf, len, off);
}

/*
 * Writes pages. The core takes a failed write as "nothing written" (the
 * pages stay dirty in DRAM), so a request that fails part-way takes back
 * the pages it placed: they must not live in two tiers.
 */
static int chain_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	struct hm_chain *ch = priv;
	const char *in = buf;
	uint64_t start = off;
	int rc = 0;

	while (len) {
		uint64_t pg = off / HM_CHAIN_PAGE;
		size_t at = (size_t)(off % HM_CHAIN_PAGE);
		size_t n = HM_CHAIN_PAGE - at < len ? HM_CHAIN_PAGE - at : len;

		if (pg >= ch->npages)
			return -ENOSPC;
		pthread_mutex_lock(hm__chain_stripe(ch, pg));
		if (at == 0 && n == HM_CHAIN_PAGE && !((uintptr_t)in & 7)) {
			rc = place(ch, pg, in, 0, 0);
		} else {
			/* A partial page (the clipped end of a mapping): merge. */
			char page[HM_CHAIN_PAGE] __attribute__((aligned(4096)));
			rc = fetch(ch, pg, page);
			if (!rc) {
				memcpy(page + at, in, n);
				rc = place(ch, pg, page, 0, 0);
			}
		}
		pthread_mutex_unlock(hm__chain_stripe(ch, pg));
		if (rc) {
			uint64_t first = (start + HM_CHAIN_PAGE - 1) / HM_CHAIN_PAGE;
			if (pg > first)
				hm__chain_release(ch, first * HM_CHAIN_PAGE, (pg - first) * HM_CHAIN_PAGE);
			return rc;
		}
		in += n;
		off += n;
		len -= n;
	}
	return 0;
}

bool hm__chain_release(struct hm_chain *ch, uint64_t off, uint64_t len)
{
	bool had = false;

	for (uint64_t pg = off / HM_CHAIN_PAGE; pg < (off + len) / HM_CHAIN_PAGE && pg < ch->npages;
	     pg++) {
		pthread_mutex_lock(hm__chain_stripe(ch, pg));
		uint64_t e = atomic_load(&ch->map[pg]);
		had |= CE_TIER(e) != 0;
		leave(ch, e, CE_TIER(e), 0, false);
		atomic_store(&ch->map[pg], CE_MAKE(0, 0, CE_BIND(e), CE_DEST(e)));
		pthread_mutex_unlock(hm__chain_stripe(ch, pg));
	}
	return had;
}

int hm__chain_move_page(struct hm_chain *ch, uint64_t pg, unsigned to, unsigned avoid)
{
	char page[HM_CHAIN_PAGE] __attribute__((aligned(4096)));
	int rc;

	if (pg >= ch->npages)
		return 0;
	pthread_mutex_lock(hm__chain_stripe(ch, pg));
	uint64_t e = atomic_load(&ch->map[pg]);
	unsigned cur = CE_TIER(e);
	if (!cur || (to && cur == to)) {
		pthread_mutex_unlock(hm__chain_stripe(ch, pg));
		return 0;
	}
	rc = fetch(ch, pg, page);
	keep_zeros = true;
	if (!rc)
		rc = place(ch, pg, page, to, avoid ? avoid : (to ? 0 : cur));
	keep_zeros = false;
	if (!rc && CE_TIER(atomic_load(&ch->map[pg])) == cur)
		rc = -ENOSPC; /* nowhere else to go */
	pthread_mutex_unlock(hm__chain_stripe(ch, pg));
	return rc ? rc : 1;
}

void hm__chain_set(struct hm_chain *ch, uint64_t pg, uint64_t n, bool dest, unsigned value)
{
	for (uint64_t i = pg; i < pg + n && i < ch->npages; i++) {
		pthread_mutex_lock(hm__chain_stripe(ch, i));
		uint64_t e = atomic_load(&ch->map[i]);
		if (dest)
			e = CE_MAKE(CE_SLOT(e), CE_TIER(e), CE_BIND(e), value);
		else
			e = CE_MAKE(CE_SLOT(e), CE_TIER(e), value, CE_DEST(e));
		atomic_store(&ch->map[i], e);
		pthread_mutex_unlock(hm__chain_stripe(ch, i));
	}
}

/* ---- opening ---- */

static int dram_opt(void *ctx, const char *k, const char *v)
{
	struct hm_chain *ch = ctx;
	uint64_t u;
	double d;

	if (!strcmp(k, "cache")) {
		const struct hm_policy_ops *ops;
		const char *o;
		if (strlen(v) >= sizeof ch->cache_policy || hm_policy_lookup(v, &ops, &o))
			return hm__error(-EINVAL, "tiers: cache='%s' is not a cache policy "
						  "(hmmap policies lists them)",
					 v);
		snprintf(ch->cache_policy, sizeof ch->cache_policy, "%s", v);
		return 0;
	}
	if (!strcmp(k, "tiering")) {
		const struct hm_tier_policy_ops *tops;
		const char *topts;
		void *st;
		if (strlen(v) >= sizeof ch->tier_policy)
			return hm__error(-EINVAL, "tiers: tiering='%.40s...' is too long", v);
		int found = hm__tier_policy_find(v, &tops, &topts);
		if (found == -ENOENT)
			return hm__error_wrap(-EINVAL, "tiers: tiering='%s'", v);
		if (found)
			return found; /* HMMAP_PLUGINS failed to load: its message */
		/* Its options are checked now, not when a region maps the chain. */
		if (tops) {
			int rc = tops->create(&st, 1, topts);
			if (rc)
				return rc == -EINVAL ? rc : hm__error(rc, "tiers: tiering='%s' failed", v);
			tops->destroy(st);
		}
		snprintf(ch->tier_policy, sizeof ch->tier_policy, "%s", v);
		return 0;
	}
	if (!strcmp(k, "rate")) {
		if (hm_parse_size(v, &u) || u < 4096)
			return hm__error(-EINVAL, "tiers: rate='%s' is not bytes per second (at "
						  "least 4K): write megabytes per second with their "
						  "suffix, rate=100M for 100 MiB/s",
					 v);
		ch->rate = u;
		return 0;
	}
	if (!strcmp(k, "hot")) {
		if (hm_parse_double(v, &d) || !(d >= 0.0 && d <= 0.95))
			return hm__error(-EINVAL, "tiers: hot='%s' is not a fraction from 0 to 0.95",
					 v);
		ch->hot_fraction = d;
		return 0;
	}
	if (!strcmp(k, "period")) {
		if (hm_parse_u64(v, &u) || u < 10 || u > 10000)
			return hm__error(-EINVAL, "tiers: period='%s' is not from 10 to 10000 ms", v);
		ch->period_ms = u;
		return 0;
	}
	return hm__error(-EINVAL, "tiers: unknown dram option '%s' (known: cache, tiering, rate, "
				  "hot, period)",
			 k);
}

static struct hm_store *dram_store(struct hm_chain *ch, const char *uri)
{
	struct hm_store *s;

	if (posix_memalign((void **)&s, 64, sizeof *s))
		return NULL;
	memset(s, 0, sizeof *s);
	s->uri = strdup(uri);
	if (!s->uri) {
		free(s);
		return NULL;
	}
	s->ops = &dram_ops;
	s->priv = ch;
	s->info.size = ch->dram_budget;
	s->info.props = HM_PROP_BYTE_ADDRESSABLE | HM_PROP_COHERENT;
	s->info.align = 4096;
	atomic_store(&s->maps, 1); /* owned by the chain: hm_store_close() refuses */
	return s;
}

static void chain_close(void *priv)
{
	struct hm_chain *ch = priv;

	pthread_mutex_lock(&chains_lock);
	for (int i = 0; i < nchains; i++) {
		if (chains[i] == ch) {
			chains[i] = chains[--nchains];
			break;
		}
	}
	pthread_mutex_unlock(&chains_lock);
	if (ch->cache && hm__cache_free_owned(ch->cache))
		hm__error_clear(); /* still used by a foreign region: left to it */
	for (int t = 0; t < ch->ntiers; t++) {
		struct hm_chain_tier *ct = &ch->tier[t];
		if (ct->store) {
			atomic_store(&ct->store->maps, 0);
			if (t == 0) {
				free(ct->store->uri);
				free(ct->store);
			} else {
				hm_store_close(ct->store);
			}
		}
		if (ct->free)
			munmap(ct->free, ct->nslots * sizeof *ct->free);
		if (ct->owner)
			munmap(ct->owner, ct->nslots * sizeof *ct->owner);
		pthread_mutex_destroy(&ct->lock);
	}
	if (ch->map)
		munmap(ch->map, ch->npages * sizeof *ch->map);
	free(ch);
}

/* Copies element [a, b) of the chain text, trimmed, into buf. */
static int element(const char *a, const char *b, char *buf, size_t n)
{
	while (a < b && (*a == ' ' || *a == '\t'))
		a++;
	while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
		b--;
	if (a == b)
		return hm__error(-EINVAL, "tiers: empty element in the chain (write "
					  "tiers:dram:1G>lz4:4G>file:PATH)");
	if ((size_t)(b - a) >= n)
		return hm__error(-EINVAL, "tiers: an element of the chain is longer than %zu bytes",
				 n - 1); /* not shown: it may hold a password */
	memcpy(buf, a, (size_t)(b - a));
	buf[b - a] = 0;
	return 0;
}

static int add_lower(struct hm_chain *ch, char *el, int flags)
{
	struct hm_chain_tier *t = &ch->tier[ch->ntiers];
	uint32_t tf = 0;
	int rc;

	if (!strncmp(el, "explicit:", 9)) {
		tf = HM_TIER_EXPLICIT;
		el += 9;
	} else if (!strncmp(el, "emergency:", 10)) {
		tf = HM_TIER_EXPLICIT | HM_TIER_EMERGENCY;
		el += 10;
	}
	if (!strncmp(el, "tiers:", 6) || !strncmp(el, "dram:", 5)) {
		char *shown = hm__uri_redact(el);
		rc = hm__error(-EINVAL, "tiers: '%s' cannot be a lower tier (dram: comes first; "
					"chains do not nest)",
			       shown ? shown : "?");
		free(shown);
		return rc;
	}
	if (ch->ntiers == HM_CHAIN_MAX)
		return hm__error(-EINVAL, "tiers: at most %d tiers", HM_CHAIN_MAX);
	rc = hm_store_open(&t->store, el, flags);
	if (rc)
		return rc;
	pthread_mutex_init(&t->lock, NULL);
	ch->ntiers++;
	if (t->store->info.props & HM_PROP_READONLY)
		return hm__error(-EINVAL, "tiers: tier '%s' is read-only", t->store->uri);
	rc = hm__file_tier_lock(t->store);
	if (rc)
		return rc;
	t->nslots = t->store->info.size / HM_CHAIN_PAGE;
	if (t->nslots == 0)
		return hm__error(-EINVAL, "tiers: tier '%s' has no room (size %llu); a file tier "
					  "needs a size (truncate -s 8G FILE)",
				 t->store->uri, (unsigned long long)t->store->info.size);
	if (t->nslots > UINT32_MAX)
		t->nslots = UINT32_MAX;
	t->free = mmap(NULL, t->nslots * sizeof *t->free, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	t->owner = mmap(NULL, t->nslots * sizeof *t->owner, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t->free == MAP_FAILED || t->owner == MAP_FAILED) {
		if (t->free != MAP_FAILED)
			munmap(t->free, t->nslots * sizeof *t->free);
		if (t->owner != MAP_FAILED)
			munmap(t->owner, t->nslots * sizeof *t->owner);
		t->free = NULL;
		t->owner = NULL;
		return hm__error(-ENOMEM, "tiers: cannot allocate the slots of '%s'", t->store->uri);
	}
	t->compressed = t->store->ops == &hm__store_lz4 || t->store->ops == &hm__store_zstd;
	atomic_store(&t->flags, tf);
	atomic_store(&t->store->maps, 1); /* owned by the chain */
	return 0;
}

static int chain_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	struct hm_chain *ch;
	char el[1024];
	const char *p = rest, *gt;
	uint64_t total = 0;
	int rc;

	/* Read-only mappings of a chain read zeros; its tiers are opened writable. */
	flags &= ~HM_STORE_RDONLY;
	if (!*rest)
		return hm__error(-EINVAL, "tiers: empty chain (write tiers:dram:1G>lz4:4G>file:PATH)");
	ch = calloc(1, sizeof *ch);
	if (!ch)
		return hm__error(-ENOMEM, "out of memory");
	snprintf(ch->cache_policy, sizeof ch->cache_policy, "clock");
	snprintf(ch->tier_policy, sizeof ch->tier_policy, "hotness");
	ch->rate = 256ull << 20;
	ch->hot_fraction = 0.75;
	ch->period_ms = 100;
	pthread_mutex_init(&ch->lock, NULL);
	for (int i = 0; i < HM_CHAIN_STRIPES; i++)
		pthread_mutex_init(&ch->stripe[i], NULL);
	ch->ntiers = 1;
	pthread_mutex_init(&ch->tier[0].lock, NULL);

	for (int n = 0;; n++) {
		gt = strchr(p, '>');
		rc = element(p, gt ? gt : p + strlen(p), el, sizeof el);
		if (rc)
			goto fail;
		if (n == 0 && !strncmp(el, "dram:", 5)) {
			char *comma = strchr(el + 5, ',');
			if (comma)
				*comma = 0;
			if (hm_parse_size(el + 5, &ch->dram_budget) || ch->dram_budget < 4096 ||
			    ch->dram_budget > (1ull << 44)) {
				rc = hm__error(-EINVAL, "tiers: dram:%s is not a DRAM budget from 4K "
							"to 16T",
					       el + 5);
				goto fail;
			}
			if (comma && !comma[1]) {
				rc = hm__error(-EINVAL, "tiers: empty option after ',' in dram:");
				goto fail;
			}
			rc = hm_opts_parse(comma ? comma + 1 : "", dram_opt, ch);
			if (rc)
				goto fail;
		} else {
			rc = add_lower(ch, el, flags);
			if (rc)
				goto fail;
			total += ch->tier[ch->ntiers - 1].nslots * HM_CHAIN_PAGE;
		}
		if (!gt)
			break;
		p = gt + 1;
	}
	total += ch->dram_budget & ~(uint64_t)(HM_CHAIN_PAGE - 1);
	if (total == 0) {
		rc = hm__error(-EINVAL, "tiers: the chain '%s' holds no memory", rest);
		goto fail;
	}
	ch->npages = total / HM_CHAIN_PAGE;
	ch->map = mmap(NULL, ch->npages * sizeof *ch->map, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ch->map == MAP_FAILED) {
		ch->map = NULL;
		rc = hm__error(-ENOMEM, "tiers: cannot allocate the page map");
		goto fail;
	}
	char name[96];
	snprintf(name, sizeof name, "dram:%llu", (unsigned long long)ch->dram_budget);
	ch->tier[0].store = dram_store(ch, name);
	if (!ch->tier[0].store) {
		rc = hm__error(-ENOMEM, "out of memory");
		goto fail;
	}
	pthread_mutex_lock(&chains_lock);
	if (nchains == (int)(sizeof chains / sizeof chains[0])) {
		pthread_mutex_unlock(&chains_lock);
		rc = hm__error(-EMFILE, "tiers: too many chains open (at most 64)");
		goto fail;
	}
	chains[nchains++] = ch;
	pthread_mutex_unlock(&chains_lock);
	memset(info, 0, sizeof *info);
	info->size = total;
	info->props = 0;
	info->align = HM_CHAIN_PAGE;
	*priv = ch;
	return 0;
fail:
	chain_close(ch);
	return rc;
}

/*
 * Run-time controls: "tiering=NAME[:opts]", "rate=SIZE", "hot=F",
 * "period=MS" restart the tiering engine with the new setting. The engine
 * is stopped while the settings change (its thread reads them).
 */
static int chain_ctl(void *priv, const char *key, const char *value)
{
	struct hm_chain *ch = priv;
	char old_policy[128];
	uint64_t rate, period;
	double hot;
	int rc;

	if (!value)
		return hm__error(-EINVAL, "tiers: control '%s' needs a value", key);
	if (!strcmp(key, "cache"))
		return hm__error(-EINVAL, "tiers: the cache policy is set when the chain opens");
	hm__tier_pause(ch);
	memcpy(old_policy, ch->tier_policy, sizeof old_policy);
	rate = ch->rate;
	period = ch->period_ms;
	hot = ch->hot_fraction;
	rc = dram_opt(ch, key, value);
	if (!rc) {
		rc = hm__tier_resume(ch);
		if (!rc)
			return 0;
		hm__tier_pause(ch); /* the new engine did not start: back to the old */
	}
	/* The old settings, and their engine, come back; the message stays. */
	char msg[512];
	snprintf(msg, sizeof msg, "%s", hm_errormsg());
	memcpy(ch->tier_policy, old_policy, sizeof old_policy);
	ch->rate = rate;
	ch->period_ms = period;
	ch->hot_fraction = hot;
	hm__tier_resume(ch);
	hm__error(rc, "%s", msg);
	return rc;
}

const struct hm_store_ops hm__store_chain = {
	.abi = HM_STORE_ABI,
	.scheme = "tiers",
	.summary = "anonymous memory over a chain: tiers:dram:2G>lz4:8G>file:/ssd/swap",
	.open = chain_open,
	.close = chain_close,
	.read = chain_read,
	.write = chain_write,
	.ctl = chain_ctl,
};
