/* SPDX-License-Identifier: MIT */
/*
 * hm_bind() and hm_move(): migration counts and placement, bindings that
 * steer later evictions, DRAM bindings that pin, a full target that fails
 * cleanly, per-page moves with their statuses and the query form, bad
 * arguments, and - the point of the exercise - threads that keep writing
 * a range while it migrates back and forth between tiers lose no update.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define PG 4096u

static const char *chain_uri = "tiers:dram:2M,tiering=none > lz4:4M > mem:16M > explicit:mem:8M";

static int where(void *a)
{
	int st = 99;
	void *pages[1] = { a };

	return hm_move(1, pages, NULL, &st, 0) < 0 ? -1000 : st;
}

static size_t count_in(char *p, size_t n, int tier)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += where(p + i * PG) == tier;
	return k;
}

static void fill(char *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		tu_fill(p + i * PG, PG, seed + i);
}

static bool same(char *p, size_t n, uint64_t seed)
{
	char want[PG];

	for (size_t i = 0; i < n; i++) {
		tu_fill(want, PG, seed + i);
		if (memcmp(want, p + i * PG, PG))
			return false;
	}
	return true;
}

static void t_migrate_counts(void)
{
	size_t n = 256, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, chain_uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *dram = hm_chain_tier(ch, 0), *z = hm_chain_tier(ch, 1),
			*m = hm_chain_tier(ch, 2), *x = hm_chain_tier(ch, 3);
	fill(p, n, 1);
	CHECK(count_in(p, n, 0) == n);
	/* All 256 resident pages down to mem. */
	long moved = hm_bind(p, len, m, HM_MIGRATE);
	CHECKF(moved == (long)n, "moved %ld: %s", moved, hm_errormsg());
	CHECK(count_in(p, n, 2) == n);
	/* Moving again moves nothing. */
	CHECK(hm_bind(p, len, m, HM_MIGRATE) == 0);
	/* Half of them to the explicit tier (explicit moves are allowed). */
	moved = hm_bind(p, len / 2, x, HM_MIGRATE);
	CHECKF(moved == (long)n / 2, "moved %ld", moved);
	CHECK(count_in(p, n / 2, 3) == n / 2);
	/* Between lower tiers: to lz4. */
	moved = hm_bind(p + len / 2, len / 4, z, HM_MIGRATE);
	CHECK(moved == (long)n / 4);
	CHECK(count_in(p + len / 2, n / 4, 1) == n / 4);
	/* And all of it up. */
	moved = hm_bind(p, len, dram, HM_MIGRATE);
	CHECKF(moved == (long)n, "moved %ld: %s", moved, hm_errormsg());
	CHECK(count_in(p, n, 0) == n);
	CHECK(same(p, n, 1));
	/* A range unaligned at its end covers its last page. */
	CHECK(hm_bind(p, PG + 1, m, HM_MIGRATE) == 2);
	CHECK(hmunmap(p, len) == 0);
}

static void t_bind_steers_evictions(void)
{
	size_t n = 128, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, chain_uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *m = hm_chain_tier(ch, 2);
	fill(p, n, 7);
	/* Bound to mem: evictions skip lz4, which has room. */
	CHECK(hm_bind(p, len / 2, m, HM_BIND) == 0);
	CHECK(hm_advise(p, len, HM_ADV_DONTNEED) == 0);
	CHECK(count_in(p, n / 2, 2) == n / 2);
	CHECK(count_in(p + len / 2, n / 2, 1) == n / 2);
	/* Touched, they come up; evicted again, they go back to mem. */
	CHECK(same(p, n, 7));
	CHECK(hm_advise(p, len, HM_ADV_DONTNEED) == 0);
	CHECK(count_in(p, n / 2, 2) == n / 2);
	/* Back to the chain's order. */
	CHECK(hm_bind(p, len / 2, NULL, HM_BIND_DEFAULT) == 0);
	CHECK(same(p, n, 7));
	CHECK(hm_advise(p, len, HM_ADV_DONTNEED) == 0);
	CHECK(count_in(p, n, 1) == n);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * A range bound to a lower tier is the program's to place: the tiering
 * engine does not make its pages hot (pinned in DRAM), however often they
 * are touched, so the cache evicts them to their tier like any page. The
 * engine used to pin them among its hot pages, and they stayed in DRAM.
 */
static void t_bind_lower_not_hot(void)
{
	size_t n = 2048, nb = 256, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:4M,tiering=hotness,period=20 > lz4:16M > mem:16M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *m = hm_chain_tier(ch, 2);
	struct hm_tier_stats ts;
	uint64_t promoted = 0;

	fill(p, n, 11);
	CHECK(hm_bind(p, nb * PG, m, HM_BIND) == 0);
	CHECK(hm_tier_stats(hm_chain_tier(ch, 0), &ts) == 0);
	promoted = ts.promoted;
	/* The bound range, over and over: the hottest pages there are. */
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < nb; i++)
			p[i * PG + 8] = (char)round;
		struct timespec ts1 = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts1, NULL);
	}
	/*
	 * Only the bound range was touched: none of it became hot. (A page
	 * the fill made hot outside it may still be promoted late, on a slow
	 * machine or under TSan: a few.)
	 */
	CHECK(hm_tier_stats(hm_chain_tier(ch, 0), &ts) == 0);
	CHECKF(ts.hot_pages < nb / 16 && ts.promoted - promoted < nb / 16,
	       "%llu hot pages, %llu promoted while the bound range was in use",
	       (unsigned long long)ts.hot_pages, (unsigned long long)(ts.promoted - promoted));
	/* The rest of the region pushes them out, to their tier. */
	for (int round = 0; round < 3; round++)
		for (size_t i = nb; i < n; i++)
			p[i * PG + 8] = (char)round;
	size_t down = count_in(p, nb, 2);
	CHECKF(down >= nb * 9 / 10, "%zu of %zu bound pages in their tier", down, nb);
	for (size_t i = 0; i < nb; i++)
		CHECKF(p[i * PG + 8] == (char)199, "page %zu", i);
	CHECK(hmunmap(p, len) == 0);
}

static void t_bind_dram_pins(void)
{
	/* 512 pages of DRAM; 64 bound there survive a sweep of 2048 others. */
	size_t n = 2048 + 64, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, chain_uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *dram = hm_chain_tier(ch, 0);
	fill(p, 64, 3);
	CHECK(hm_advise(p, 64 * PG, HM_ADV_DONTNEED) == 0);
	CHECK(count_in(p, 64, 0) == 0);
	long moved = hm_bind(p, 64 * PG, dram, HM_BIND | HM_MIGRATE);
	CHECKF(moved == 64, "moved %ld: %s", moved, hm_errormsg());
	fill(p + 64 * PG, 2048, 1000);
	CHECK(count_in(p, 64, 0) == 64);
	/* Pinned pages cannot be moved down one by one either. */
	void *pages[1] = { p };
	struct hm_store *targets[1] = { hm_chain_tier(ch, 1) };
	int status[1];
	CHECK(hm_move(1, pages, targets, status, 0) == 1 && status[0] == -EBUSY);
	/* Nor by a migration alone, which says why; binding them down releases them. */
	CHECK(hm_bind(p, 64 * PG, targets[0], HM_MIGRATE) == -EBUSY &&
	      strstr(hm_errormsg(), "bound to DRAM"));
	CHECK(count_in(p, 64, 0) == 64);
	CHECK(hm_bind(p, 64 * PG, dram, HM_MIGRATE) == 0); /* up: they are there already */
	/* More than the budget cannot be bound to DRAM; nothing changes. */
	CHECK(hm_bind(p, len, dram, HM_BIND) == -ENOMEM);
	CHECK(hm_bind(p, 64 * PG, NULL, HM_DEFAULT) == 0); /* HM_BIND_DEFAULT's other name */
	fill(p + 64 * PG, 2048, 2000);
	CHECK(count_in(p, 64, 0) < 64);
	CHECK(same(p, 64, 3));
	CHECK(hmunmap(p, len) == 0);
}

static void t_full_target(void)
{
	/* A 64 KiB lz4 pool holds 16 incompressible pages, not 64. */
	size_t n = 64, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M,tiering=none > lz4:64K > mem:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	fill(p, n, 11);
	long rc = hm_bind(p, len, hm_chain_tier(ch, 1), HM_MIGRATE);
	CHECKF(rc == -ENOSPC, "rc %ld", rc);
	CHECK(strstr(hm_errormsg(), "no room"));
	size_t in_z = count_in(p, n, 1);
	CHECKF(in_z > 0 && in_z < n, "%zu pages in lz4", in_z);
	CHECK(count_in(p, n, 0) == n - in_z);
	CHECK(same(p, n, 11));
	/* The others went down by the chain's order and came back intact. */
	CHECK(hm_bind(p, len, hm_chain_tier(ch, 2), HM_MIGRATE) > 0);
	CHECK(count_in(p, n, 2) == n);
	CHECK(same(p, n, 11));
	CHECK(hmunmap(p, len) == 0);
}

static void t_move_pages(void)
{
	size_t n = 16, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, chain_uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	fill(p, 8, 5); /* pages 8..15 are never written */
	void *pages[6] = { p, p + PG + 100, p + 2 * PG, p + 9 * PG, (void *)&n, p + 3 * PG };
	struct hm_store *to[6] = { hm_chain_tier(ch, 2), hm_chain_tier(ch, 1), hm_chain_tier(ch, 3),
				   hm_chain_tier(ch, 2), hm_chain_tier(ch, 2), NULL };
	int status[6];
	long left = hm_move(6, pages, to, status, 0);
	CHECKF(left == 3, "left %ld", left);
	CHECK(status[0] == 2 && status[1] == 1 && status[2] == 3);
	CHECK(status[3] == -ENOENT); /* never written: nothing to move */
	CHECK(status[4] == -EFAULT); /* not hmmap memory */
	CHECK(status[5] == -EINVAL); /* not a tier */
	/* The query form: 0, as move_pages(2); the statuses say where. */
	CHECK(hm_move(6, pages, NULL, status, 0) == 0);
	CHECK(status[0] == 2 && status[1] == 1 && status[2] == 3 && status[3] == -ENOENT &&
	      status[4] == -EFAULT && status[5] == 0);
	/* Back up, one page. */
	to[0] = hm_chain_tier(ch, 0);
	CHECK(hm_move(1, pages, to, status, 0) == 0 && status[0] == 0);
	CHECK(same(p, 8, 5));
	/*
	 * Never written, toward DRAM too: nothing moves, nothing is loaded
	 * (move_pages(2) leaves a page never touched alone).
	 */
	struct hm_stats a, z;
	CHECK(hm_region_stats(hm_region_find(p), &a) == 0);
	CHECK(hm_move(1, &pages[3], to, status, 0) == 1 && status[0] == -ENOENT);
	long moved = hm_bind(p + 8 * PG, 8 * PG, hm_chain_tier(ch, 0), HM_MIGRATE);
	CHECKF(moved == 0, "%ld pages never written moved to DRAM", moved);
	CHECK(hm_region_stats(hm_region_find(p), &z) == 0);
	CHECKF(z.misses == a.misses, "%llu pages loaded",
	       (unsigned long long)(z.misses - a.misses));
	CHECK(where(p + 9 * PG) == -ENOENT);
	/* Written pages among them still move (same() read them all back up). */
	CHECK(hm_bind(p + PG, 2 * PG, hm_chain_tier(ch, 2), HM_MIGRATE) == 2);
	moved = hm_bind(p, 16 * PG, hm_chain_tier(ch, 0), HM_MIGRATE);
	CHECKF(moved == 2, "moved %ld", moved);
	CHECK(same(p, 8, 5));
	/* A store of another chain is not a target. */
	struct hm_store *other;
	CHECK(hm_store_open(&other, "tiers:dram:1M>mem:1M", 0) == 0);
	to[0] = hm_chain_tier(other, 1);
	CHECK(hm_move(1, pages, to, status, 0) == 1 && status[0] == -EINVAL);
	CHECK(hm_move(1, pages, to, status, 1) == -EINVAL);
	CHECK(hm_move(1, NULL, to, status, 0) == -EINVAL);
	CHECK(hm_move(1, pages, to, NULL, 0) == -EINVAL);
	CHECK(hm_move(SIZE_MAX, pages, to, status, 0) == -EINVAL); /* never read */
	CHECK(hm_move(0, NULL, NULL, NULL, 0) == 0);
	CHECK(hm_bind(p, len, hm_chain_tier(other, 1), HM_MIGRATE) == -EINVAL);
	CHECK(hm_store_close(other) == 0);
	CHECK(hmunmap(p, len) == 0);
}

static void t_bad_args(void)
{
	size_t len = 16 * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, chain_uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *m = hm_chain_tier(ch, 2);
	CHECK(hm_bind(p, len, m, 0) == -EINVAL);
	CHECK(hm_bind(p, len, m, 0x40) == -EINVAL);
	CHECK(hm_bind(p, len, m, HM_BIND_DEFAULT | HM_BIND) == -EINVAL);
	CHECK(hm_bind(p, len, NULL, HM_MIGRATE) == -EINVAL);
	CHECK(hm_bind(p + 1, len - PG, m, HM_MIGRATE) == -EINVAL);
	CHECK(hm_bind(p, 0, m, HM_MIGRATE) == -EINVAL);
	CHECK(hm_bind(p, len + PG, m, HM_MIGRATE) == -EINVAL);
	static char outside[PG] __attribute__((aligned(4096)));
	CHECK(hm_bind(outside, PG, m, HM_MIGRATE) == -EFAULT);
	CHECK(hm_bind(p, len, ch, HM_MIGRATE) == -EINVAL); /* the chain is not its own tier */
	CHECK(*hm_errormsg());
	/* A region that is not a chain. */
	char *q = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, "mem:1M", 0);
	CHECK(q != MAP_FAILED);
	CHECK(hm_bind(q, len, m, HM_MIGRATE) == -EINVAL);
	void *pages[1] = { q };
	int st;
	CHECK(hm_move(1, pages, NULL, &st, 0) == 0 && st == -EFAULT);
	CHECK(hmunmap(q, len) == 0);
	CHECK(hmunmap(p, len) == 0);
}

struct writer {
	size_t n;
	_Atomic uint64_t done;
	_Atomic int *stop;
	char *base;
	int id;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load(w->stop)) {
		for (size_t i = 0; i < w->n; i++) {
			/* A plain read-modify-write: a lost update shows as a short count. */
			uint64_t *word = (uint64_t *)(w->base + i * PG + (size_t)w->id * 64);
			*word = *word + 1;
		}
		w->done++;
	}
	return NULL;
}

static void t_migrate_while_writing(void)
{
	size_t n = 96, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, chain_uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	_Atomic int stop = 0;
	struct writer w[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		w[i] = (struct writer){ .n = n, .stop = &stop, .base = p, .id = i };
		CHECK(pthread_create(&th[i], NULL, writer_main, &w[i]) == 0);
	}
	long total_moved = 0;
	int rounds = 0;
	uint64_t start[2];
	/* Both writers are running before the first migration. */
	while (atomic_load(&w[0].done) < 1 || atomic_load(&w[1].done) < 1)
		sched_yield();
	start[0] = atomic_load(&w[0].done);
	start[1] = atomic_load(&w[1].done);
	/*
	 * Down to lz4, across to mem, to the explicit tier, up to DRAM: 60
	 * times over, and on until each writer made passes meanwhile.
	 */
	for (; rounds < 60 || ((atomic_load(&w[0].done) < start[0] + 3 ||
				atomic_load(&w[1].done) < start[1] + 3) && rounds < 100000);
	     rounds++) {
		int t = rounds % 4;
		long m = hm_bind(p, len, hm_chain_tier(ch, t), HM_MIGRATE);
		if (m < 0) {
			atomic_store(&stop, 1);
			pthread_join(th[0], NULL);
			pthread_join(th[1], NULL);
			CHECKF(m >= 0, "round %d: %ld %s", rounds, m, hm_errormsg());
		}
		total_moved += m;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK(total_moved > 0);
	for (int i = 0; i < 2; i++)
		for (size_t k = 0; k < n; k++) {
			uint64_t v = *(uint64_t *)(p + k * PG + (size_t)i * 64);
			CHECKF(v == w[i].done,
			       "thread %d page %zu: %llu updates, %llu made", i, k,
			       (unsigned long long)v, (unsigned long long)w[i].done);
		}
	CHECK(w[0].done >= start[0] + 3 && w[1].done >= start[1] + 3);
	printf("     %d migrations, %ld pages moved, %llu + %llu passes of writes\n", rounds,
	       total_moved, (unsigned long long)w[0].done, (unsigned long long)w[1].done);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * A migration toward a tier that cannot take the range (full, or closed to
 * new pages) fails with -ENOSPC; meanwhile a thread keeps writing every
 * page. Its own faults evict pages that carry the migration's one-shot
 * destination: those must go down by the chain's order instead of failing
 * (a failed eviction ends the fault in SIGBUS, which ends this program).
 */
static void unplaceable(int closed)
{
	size_t n = 2048, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M,tiering=none > mem:8M > mem:256K", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *t2 = hm_chain_tier(hm_region_store(hm_region_find(p)), 2);
	for (size_t i = 0; i < n; i++) {
		tu_fill(p + i * PG, PG, 500 + i);
		*(uint64_t *)(p + i * PG) = 0;
	}
	if (closed)
		CHECK(hm_tier_set(t2, HM_TIER_CLOSED) == 0);
	else
		CHECK(hm_bind(p, 64 * PG, t2, HM_MIGRATE) == 64); /* its 64 slots, full */
	_Atomic int stop = 0;
	struct writer w = { .n = n, .stop = &stop, .base = p, .id = 0 };
	pthread_t th;
	CHECK(pthread_create(&th, NULL, writer_main, &w) == 0);
	long rounds = 0, nospc = 0;
	while (rounds < 40 || (atomic_load(&w.done) < 10 && rounds < 100000)) {
		long m = hm_bind(p + 64 * PG, len - 64 * PG, t2, HM_MIGRATE);
		nospc += m == -ENOSPC;
		rounds++;
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	CHECKF(nospc == rounds, "%ld of %ld migrations failed with -ENOSPC", nospc, rounds);
	bool intact = true;
	char want[PG];
	for (size_t i = 0; i < n && intact; i++) {
		tu_fill(want, PG, 500 + i);
		uint64_t v = *(uint64_t *)(p + i * PG);
		intact = v == w.done && !memcmp(want + 8, p + i * PG + 8, PG - 8);
		CHECKF(intact, "page %zu: %llu updates of %llu, rest intact %d", i,
		       (unsigned long long)v, (unsigned long long)w.done,
		       !memcmp(want + 8, p + i * PG + 8, PG - 8));
	}
	printf("     %ld migrations toward the %s tier, %llu passes of writes\n", rounds,
	       closed ? "closed" : "full", (unsigned long long)w.done);
	CHECK(hmunmap(p, len) == 0);
}

static void t_migrate_unplaceable_while_writing(void)
{
	unplaceable(0);
	if (!t_case_failed)
		unplaceable(1);
}

/* Maps `pages` pages of an open chain in the API form at *addr (NULL on failure), no readahead. */
static struct hm_region *map_chain(struct hm_store *chain, size_t pages, char **addr)
{
	struct hm_cache *c;
	struct hm_region *r = NULL;

	*addr = NULL;
	if (hm_chain_cache(chain, &c) ||
	    hm_region_map(&r, c, chain, 0, pages * PG, PROT_READ | PROT_WRITE, HM_CACHED, PG))
		return NULL;
	*addr = hm_region_addr(r);
	/* No readahead: a page read must not bring its neighbours up behind the test's back. */
	hm_advise(*addr, pages * PG, HM_ADV_RANDOM);
	return r;
}

static void t_unmap_drops_bindings(void)
{
	/*
	 * Unmapping a part drops its bindings, as munmap() drops an mbind()
	 * policy. A chain mapped through the API kept them with the data:
	 * page 0, bound to tier 2 and unmapped, came back bound in the next
	 * mapping, and with tier 2 full (its one slot taken by page 5) the
	 * next unmap could not write page 0 back: -ENOSPC. The unmap of a
	 * whole region, likewise, wrote back its bound page 1 to tier 2 only.
	 */
	struct hm_store *ch;
	char *p;
	int rc = hm_store_open(&ch, "tiers:dram:1M,tiering=none > mem:1M > mem:4K", 0);
	CHECKF(rc == 0, "%d %s", rc, hm_errormsg());
	struct hm_store *t2 = hm_chain_tier(ch, 2);
	struct hm_region *r = map_chain(ch, 16, &p);
	CHECKF(r, "%s", hm_errormsg());
	memset(p, 1, 16 * PG);
	CHECK(hm_bind(p, PG, t2, HM_BIND) == 0);
	CHECK(hmunmap(p, PG) == 0);
	CHECK(hm_region_unmap(r) == 0);
	r = map_chain(ch, 16, &p);
	CHECKF(r, "%s", hm_errormsg());
	CHECK(p[0] == 1 && p[PG - 1] == 1); /* the data stays; page 0 is in DRAM now */
	CHECK(hm_bind(p + 5 * PG, PG, t2, HM_MIGRATE) == 1);
	CHECK(where(p) == 0 && where(p + 5 * PG) == 2);
	/* The whole region's unmap drops the bindings of what is mapped too. */
	CHECK(hm_bind(p + PG, PG, t2, HM_BIND) == 0);
	p[PG] = 2;
	rc = hm_region_unmap(r);
	CHECKF(rc == 0, "unmap: %d %s", rc, hm_errormsg());
	/* Page 0 went down by the chain's order. */
	r = map_chain(ch, 16, &p);
	CHECKF(r, "%s", hm_errormsg());
	CHECKF(where(p) == 1 && where(p + PG) == 1, "pages 0 and 1 are in %d and %d", where(p),
	       where(p + PG));
	CHECK(p[0] == 1 && p[PG] == 2 && p[5 * PG] == 1);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(ch) == 0);
}

static uint64_t hot_pages(struct hm_store *dram)
{
	struct hm_tier_stats st;

	return hm_tier_stats(dram, &st) == 0 ? st.hot_pages : 0;
}

/*
 * DRAM bindings and the tiering engine share the hot share of the budget,
 * and pins never take the whole budget: a fault always finds a frame to
 * evict. Each part used to end in SIGBUS at the next fault.
 */
static void t_bind_dram_leaves_room(void)
{
	/* A binding as large as the budget is refused; faults go on. */
	size_t n = 1024, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M,tiering=none > lz4:8M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *dram = hm_chain_tier(hm_region_store(hm_region_find(p)), 0);
	fill(p, n, 40);
	CHECK(hm_bind(p, 256 * PG, dram, HM_BIND) == -ENOMEM && strstr(hm_errormsg(), "no room"));
	struct hm_stats rs;
	CHECK(hm_region_stats(hm_region_find(p), &rs) == 0 && rs.pinned_pages == 0);
	CHECK(same(p, n, 40));
	CHECK(hmunmap(p, len) == 0);

	/* Bound first (half the budget), then the engine promotes a hot set. */
	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
		  "tiers:dram:1M,tiering=hotness,hot=0.75 > lz4:8M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	dram = hm_chain_tier(hm_region_store(hm_region_find(p)), 0);
	fill(p, n, 50);
	CHECK(hm_bind(p, 128 * PG, dram, HM_BIND) == 0);
	for (size_t i = 200; i < 400; i++)
		*(uint64_t *)(p + i * PG + 64) = 0;
	volatile char sink __attribute__((unused));
	uint64_t passes = 0;
	for (int after = 0; after < 100 && passes < 20000; passes++) {
		for (size_t i = 200; i < 400; i++)
			(*(uint64_t *)(p + i * PG + 64))++;
		for (size_t i = 400; i < n; i += 7)
			sink = p[i * PG + 100];
		after += hot_pages(dram) + 128 >= 192; /* the engine filled what it may */
	}
	CHECKF(hot_pages(dram) + 128 <= 192, "%llu hot pages beside 128 bound, share 192",
	       (unsigned long long)hot_pages(dram));
	printf("     128 pages bound, %llu hot after %llu passes\n",
	       (unsigned long long)hot_pages(dram), (unsigned long long)passes);
	CHECK(count_in(p, 128, 0) == 128);
	char want[PG];
	for (size_t i = 200; i < 400; i++) {
		CHECKF(*(uint64_t *)(p + i * PG + 64) == passes, "page %zu: %llu of %llu updates", i,
		       (unsigned long long)*(uint64_t *)(p + i * PG + 64),
		       (unsigned long long)passes);
		tu_fill(want, PG, 50 + i);
		memcpy(p + i * PG + 64, want + 64, 8); /* as filled, for the check below */
	}
	CHECK(same(p, n, 50));
	CHECK(hmunmap(p, len) == 0);

	/* The engine first, holding its share; then a cold quarter of the budget is bound. */
	n = 4096;
	len = n * PG;
	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
		  "tiers:dram:4M,tiering=hotness:threshold=1,hot=0.75 > lz4:32M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	dram = hm_chain_tier(hm_region_store(hm_region_find(p)), 0);
	fill(p, n, 60);
	for (passes = 0; hot_pages(dram) < 768 && passes < 20000; passes++)
		for (size_t i = 0; i < 768; i++)
			sink = p[i * PG + 100];
	uint64_t was_hot = hot_pages(dram);
	long m = hm_bind(p + 2048 * PG, 256 * PG, dram, HM_BIND);
	CHECKF(m == 0, "%ld %s", m, hm_errormsg());
	/*
	 * A promotion that raced the binding gives its page back once it sees
	 * the share exceeded (5b10051): a moment later, not at once.
	 */
	for (int i = 0; i < 200 && hot_pages(dram) + 256 > 768; i++)
		usleep(10 * 1000);
	CHECKF(hot_pages(dram) + 256 <= 768, "%llu hot pages beside 256 bound, share 768",
	       (unsigned long long)hot_pages(dram));
	printf("     %llu hot after %llu passes, %llu once 256 pages were bound\n",
	       (unsigned long long)was_hot, (unsigned long long)passes,
	       (unsigned long long)hot_pages(dram));
	CHECK(count_in(p + 2048 * PG, 256, 0) == 256);
	CHECK(same(p, n, 60)); /* every other page faults in through what is left */
	CHECK(count_in(p + 2048 * PG, 256, 0) == 256);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * HM_ADV_DONTNEED over a range bound to DRAM keeps the bound pages in DRAM
 * and sends the others down: each page in one tier. The advice used to
 * write the pinned pages down as well, and they counted in DRAM and in the
 * lower tier at once (the tier's pages and room grew with every advice).
 */
static void t_dontneed_over_dram_binding(void)
{
	size_t n = 8, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
	                "tiers:dram:512K,tiering=none > mem:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *dram = hm_chain_tier(ch, 0), *m = hm_chain_tier(ch, 1);
	struct hm_tier_stats st;

	fill(p, n, 70);
	CHECK(hm_bind(p, 4 * PG, dram, HM_BIND) == 0);
	for (int round = 0; round < 3; round++) {
		CHECK(hm_advise(p, len, HM_ADV_DONTNEED) == 0);
		CHECK(count_in(p, 4, 0) == 4 && count_in(p + 4 * PG, 4, 1) == 4);
		CHECK(hm_tier_stats(m, &st) == 0);
		CHECKF(st.pages == 4 && st.used_bytes == 4 * PG,
		       "round %d: the lower tier holds %llu pages in %llu bytes, 4 expected", round,
		       (unsigned long long)st.pages, (unsigned long long)st.used_bytes);
	}
	CHECK(same(p, n, 70));
	CHECK(hmunmap(p, len) == 0);
}

/*
 * Pages bound to a full lower tier stay in DRAM, and the cache evicts the
 * others around them: a failed eviction of bound pages (-ENOSPC) says
 * nothing of the pages beside them. It used to fail the batch's other runs
 * unwritten and stop every eviction for a second, so that the next fault
 * that needed room ended in SIGBUS while DRAM held pages that could go.
 */
static void t_bound_to_full_tier_faults_go_on(void)
{
	size_t n = 64, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
	                "tiers:dram:64K,tiering=none > mem:16K > mem:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *t1 = hm_chain_tier(hm_region_store(hm_region_find(p)), 1);

	fill(p, 12, 80);
	/* Tier 1 (4 slots) full, then 8 more pages bound to it. */
	CHECK(hm_bind(p, 4 * PG, t1, HM_BIND | HM_MIGRATE) == 4);
	CHECK(hm_bind(p + 4 * PG, 8 * PG, t1, HM_BIND) == 0);
	CHECK(hm_advise(p + 4 * PG, 8 * PG, HM_ADV_DONTNEED) == -ENOSPC);
	CHECK(count_in(p + 4 * PG, 8, 0) == 8);
	/* 52 more pages through the 8 frames left; none may fail. */
	for (int round = 0; round < 3; round++) {
		fill(p + 12 * PG, n - 12, 90 + (uint64_t)round);
		CHECK(same(p + 12 * PG, n - 12, 90 + (uint64_t)round));
	}
	CHECK(same(p, 12, 80));
	CHECK(hmunmap(p, len) == 0);
}

/*
 * A page bound to DRAM cannot be moved down one by one, even when the
 * tiering engine also holds it hot (promoted before the binding): -EBUSY,
 * and it stays. hm_move() used to let the engine's hotness decide, took
 * the page out of the hot set, failed to drop it (pinned) and said it was
 * in DRAM, as if the target had been DRAM.
 */
static void t_move_hot_dram_bound(void)
{
	size_t n = 256, nh = 32, len = n * PG;
	volatile char sink;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
	                "tiers:dram:4M,tiering=hotness:threshold=1,period=20 > lz4:8M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *dram = hm_chain_tier(ch, 0), *z = hm_chain_tier(ch, 1);
	void *pages[32];
	struct hm_store *to[32];
	int st[32];
	uint64_t passes;

	fill(p, n, 95);
	for (passes = 0; hot_pages(dram) < nh && passes < 20000; passes++) {
		for (size_t i = 0; i < nh; i++)
			sink = p[i * PG + 100];
		if (passes % 64 == 63)
			usleep(1000);
	}
	(void)sink;
	CHECKF(hot_pages(dram) > 0, "no page became hot in %llu passes",
	       (unsigned long long)passes);
	CHECK(hm_bind(p, nh * PG, dram, HM_BIND) == 0);
	for (size_t i = 0; i < nh; i++) {
		pages[i] = p + i * PG;
		to[i] = z;
	}
	CHECK(hm_move(nh, pages, to, st, 0) == (long)nh);
	for (size_t i = 0; i < nh; i++)
		CHECKF(st[i] == -EBUSY, "page %zu: status %d", i, st[i]);
	CHECK(count_in(p, nh, 0) == nh);
	CHECK(same(p, n, 95));
	CHECK(hmunmap(p, len) == 0);
}

static int sigbus_child(void *arg)
{
	RUN(t_migrate_counts);
	RUN(t_full_target);
	RUN(t_migrate_while_writing);
	RUN(t_migrate_unplaceable_while_writing);
	RUN(t_bound_to_full_tier_faults_go_on);
	return t_failed ? 1 : 0;
}

/* The fault mode is process-wide: the same moves with faults served in the faulting thread. */
static void t_sigbus_mode(void)
{
	static const char *const env[] = { "HMMAP_FAULT_MODE=sigbus", NULL };
	int st = tu_child(env, sigbus_child, NULL);

	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}

int main(void)
{
	RUN(t_sigbus_mode); /* first: before this process touches the library */
	RUN(t_migrate_counts);
	RUN(t_bind_steers_evictions);
	RUN(t_bind_lower_not_hot);
	RUN(t_bind_dram_pins);
	RUN(t_bind_dram_leaves_room);
	RUN(t_full_target);
	RUN(t_move_pages);
	RUN(t_dontneed_over_dram_binding);
	RUN(t_bound_to_full_tier_faults_go_on);
	RUN(t_move_hot_dram_bound);
	RUN(t_bad_args);
	RUN(t_migrate_while_writing);
	RUN(t_migrate_unplaceable_while_writing);
	RUN(t_unmap_drops_bindings);
	tu_cleanup();
	return test_done();
}
