/* SPDX-License-Identifier: MIT */
/*
 * The core's internal objects: stores, caches, regions and the per-page
 * state machine. Nothing here is part of the ABI.
 *
 * Page states (the low bits of hm_page.st):
 *
 *   EMPTY ──miss──▶ LOADING ──read+map──▶ RESIDENT ──victim──▶ EVICTING ──▶ EMPTY
 *                      │ read error                 ▲               │ write-back error
 *                      └────────▶ EMPTY             └───────────────┘
 *
 * GONE is a page of a range that hmunmap() took out of a region: only an
 * EMPTY page becomes GONE, and nothing leaves it (src/core/punch.c).
 *
 * Flags beside the state: DIRTY (harvested write; the page differs from the
 * store), BUSY (a short exclusive operation on a RESIDENT page: mapping it
 * again after a hint fault, writing it back for sync, sampling it), WAITERS
 * (a fault found the page in a transient state and waits for a wake-up),
 * PINNED (not evictable; out of the policy), UNMAPPED (resident but its PTE
 * was zapped, so the next touch is a hint fault), LISTED (the policy holds
 * the page's slot: a resident page is briefly unlisted after it loads and
 * after a failed write-back, and only LISTED pages may be given to the
 * policy's hit() or remove()).
 *
 * Only the thread that moved a page into LOADING or EVICTING, or set BUSY,
 * may leave that state; it wakes waiters when WAITERS was set.
 */
#ifndef HM_CORE_INTERNAL_H
#define HM_CORE_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hmmap.h"
#include "core/error.h"
#include "os/file.h"

/* A huge page: the I/O buffers, and the frames of HM_HUGETLB regions. */
#define HM_HUGE_SIZE ((size_t)2 << 20)

#define HM_ST_EMPTY 0u
#define HM_ST_LOADING 1u
#define HM_ST_RESIDENT 2u
#define HM_ST_EVICTING 3u
#define HM_ST_GONE 4u
#define HM_ST_MASK 7u
#define HM_PG_DIRTY (1u << 3)
#define HM_PG_BUSY (1u << 4)
#define HM_PG_WAITERS (1u << 5)
#define HM_PG_PINNED (1u << 6)
#define HM_PG_UNMAPPED (1u << 7)
#define HM_PG_RAMARK (1u << 8) /* first page of an async readahead window */
#define HM_PG_LISTED (1u << 9) /* in the policy; changed under the cache lock only */
/* Prefaulted for system calls (hm_prefault): the sampler leaves its PTE alone. */
#define HM_PG_KEEPMAP (1u << 10)
/* Read ahead and not yet seen used (statistics: prefetches used and wasted, src/core/stats.c). */
#define HM_PG_RA (1u << 15)

#define HM_NO_SLOT UINT32_MAX

struct hm_hole {
	uint64_t first, n; /* pages */
};

/* Per page of mapping: 8 bytes, allocated a chunk at a time on first touch. */
struct hm_page {
	_Atomic uint32_t st;
	uint32_t slot; /* valid unless EMPTY */
};

#define HM_CHUNK_SHIFT 12
#define HM_CHUNK_PAGES (1u << HM_CHUNK_SHIFT)

/*
 * Counters, declared once. Each region and cache keeps them in shards, one
 * cache line each, and a thread always adds to its own shard: two threads
 * faulting at once never bounce a counter's line between CPUs. A reader
 * sums the shards. The shard also holds the region's reference count.
 */
#define HM_COUNTERS(X)                                                                  \
	X(faults_missing) X(faults_minor) X(faults_wp) X(hits) X(misses) X(readahead)   \
	X(evictions) X(writebacks) X(writeback_errors) X(read_errors) X(bytes_read)     \
	X(bytes_written) X(fault_ns_total) X(prefetch_used) X(prefetch_wasted)

#define HM_SHARDS 8

/*
 * Latency buckets: exact below 8 ns, then 8 linear sub-buckets per power of
 * two up to 2^40 ns (18 minutes), so a bucket is at most 1/8 of its value
 * wide and a percentile read from its middle is within 1/16 (6.25%).
 */
#define HM_LAT_SUB 8
#define HM_LAT_MAXPOW 40
#define HM_LAT_BUCKETS (HM_LAT_SUB + (HM_LAT_MAXPOW - 3) * HM_LAT_SUB)

struct hm_ctr_shard {
#define HM_X(name) _Atomic uint64_t name;
	HM_COUNTERS(HM_X)
#undef HM_X
	_Atomic int64_t refs; /* regions: faults and prefetches in flight */
	/* Fault-service latency, log-linear buckets (hm__lat_bucket()). */
	_Atomic uint64_t lat[HM_LAT_BUCKETS];
} __attribute__((aligned(64)));

struct hm_counters {
	struct hm_ctr_shard s[HM_SHARDS];
};

/* Signals and hmmap's own I/O (signals.c). */
struct hm_nosigpipe {
	sigset_t old;
	bool unblock; /* begin blocked SIGPIPE: end unblocks it */
};
extern __thread bool hm__sigpipe_blocked;
/* Blocks every signal in one of hmmap's own threads, for good. */
void hm__block_signals(void);
/* SIGPIPE blocked in this thread from begin to end (no-op where it is already). */
void hm__nosigpipe_begin(struct hm_nosigpipe *g);
void hm__nosigpipe_end(struct hm_nosigpipe *g);
/* Takes a SIGPIPE pending for this thread: call where a connection failed. */
void hm__sigpipe_take(void);

extern __thread unsigned hm__shard_tls;
unsigned hm__shard_assign(void);

/* The calling thread's shard. */
static inline unsigned hm__shard(void)
{
	unsigned s = hm__shard_tls;

	return s ? s - 1 : hm__shard_assign();
}

/* Counting is on unless HMMAP_STATS=0 (src/core/stats.c); read on every count. */
extern _Atomic int hm__stats_on;

static inline bool hm__stats_enabled(void)
{
	return atomic_load_explicit(&hm__stats_on, memory_order_relaxed);
}

#define hm__count(c, field, n)                                                          \
	do {                                                                            \
		uint64_t hm_n_ = (n);                                                   \
		if (hm_n_ && hm__stats_enabled())                                       \
			atomic_fetch_add_explicit(&(c)->s[hm__shard()].field, hm_n_,    \
						  memory_order_relaxed);                \
	} while (0)

/* Counts on a region and on its cache (direct and hybrid regions may have none). */
#define hm__count_rc(r, field, n)                                                       \
	do {                                                                            \
		uint64_t hm_m_ = (n);                                                   \
		hm__count(&(r)->ctr, field, hm_m_);                                     \
		if ((r)->cache)                                                         \
			hm__count(&(r)->cache->ctr, field, hm_m_);                      \
	} while (0)

static inline unsigned hm__lat_bucket(uint64_t ns)
{
	unsigned k;

	if (ns < HM_LAT_SUB)
		return (unsigned)ns;
	k = 63u - (unsigned)__builtin_clzll(ns); /* >= 3 */
	if (k >= HM_LAT_MAXPOW)
		return HM_LAT_BUCKETS - 1;
	return HM_LAT_SUB + (k - 3) * HM_LAT_SUB + (unsigned)((ns >> (k - 3)) & (HM_LAT_SUB - 1));
}

/* Adds one fault-service time to the calling thread's shard of k. */
static inline void hm__lat_record(struct hm_counters *k, uint64_t ns)
{
	atomic_fetch_add_explicit(&k->s[hm__shard()].lat[hm__lat_bucket(ns)], 1,
				  memory_order_relaxed);
}

/* Sums the shards into the counter fields of *s. */
void hm__stats_fill(const struct hm_counters *k, struct hm_stats *s);

/* ---- statistics (src/core/stats.c) ---- */
/* The latency fields of *s (faults_timed, fault_p50/p99/p999_ns) from k's histogram. */
void hm__lat_fill(const struct hm_counters *k, struct hm_stats *s);
/* Turns counting on or off at run time (benchmarks; HMMAP_STATS sets it at start). */
void hm__stats_set(bool on);
/*
 * The live-statistics segment: objects come and go from ordinary context
 * (never the fault path). Adding the first region creates the segment and
 * its publisher thread. Removal waits for a publication in progress, so the
 * object may be freed once it returns.
 */
void hm__stats_region_add(struct hm_region *r);
void hm__stats_region_del(struct hm_region *r);
void hm__stats_cache_add(struct hm_cache *c);
void hm__stats_cache_del(struct hm_cache *c);
/* Dirty-page walks the statistics publisher made (for tests: it is paced). */
extern _Atomic uint64_t hm__stats_dirty_walks;
/* Pages of r known dirty now: a scan of its page entries (chunks in use only). */
uint64_t hm__region_dirty(const struct hm_region *r);
/* hm_region_stats() without that scan: dirty_pages is left 0. */
void hm__region_stats_fill(const struct hm_region *r, struct hm_stats *s);
/* Dirty pages of the cache's regions (hm_cache_stats). */
uint64_t hm__stats_cache_dirty(const struct hm_cache *c);
/* A read-ahead page (HM_PG_RA) was reached: count it used. */
void hm__ra_used(struct hm_region *r, struct hm_page *p);
/* A reader faulted at idx: read-ahead pages right before it were passed over, so used. */
void hm__ra_passed(struct hm_region *r, uint64_t idx);

struct hm_store {
	const struct hm_store_ops *ops;
	void *priv;
	struct hm_store_info info;
	char *uri; /* as written, but with passwords shown as "***" (hm__uri_redact) */
	_Atomic int maps; /* regions mapping it */
	/*
	 * Where its data ends as far as write-back knows: the size at open,
	 * raised by each write-back past it. Write-back does not pad a file
	 * with zeros beyond it (see hm__writeback_run()).
	 */
	_Atomic uint64_t wb_eof;
	/* Traffic of every region and cache on the store: bytes read and written
	 * (endurance), reads and write-backs, their errors. */
	struct hm_counters ctr;
};

struct hm_slot {
	struct hm_region *region;
	uint64_t idx;
};

#define HM_BEHIND_RUNS 64

struct hm_cache {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* evictions finished, slots freed */
	uint64_t budget;     /* bytes; read without the lock through hm__budget() */
	uint64_t max_budget;
	uint64_t resident;   /* bytes, including pages being loaded */
	uint32_t capacity;   /* slots */
	struct hm_slot *slots;
	uint32_t *free_slots;
	uint32_t nfree;
	uint32_t fresh; /* slots [fresh, capacity) were never used (not in free_slots) */
	uint32_t batch;      /* eviction batch, in 4 KiB units */
	uint32_t loading;    /* pages in LOADING */
	uint32_t evictors;   /* threads evicting now */
	uint32_t pinned;     /* pinned pages */
	uint64_t pinned_bytes; /* and their bytes (regions' page sizes differ) */
	uint64_t pin_ps;     /* the largest page size among them (0: none pinned) */
	int nregions;
	const struct hm_policy_ops *pops;
	void *pstate;
	uint32_t victim_hand;  /* where the scan for a broken victim() goes on (cache.c) */
	bool victim_warned;    /* that victim() broke its promise was said */
	bool concurrent_hit;
	bool is_default;
	bool chain_owned;    /* a chain's dram: cache, freed by the chain's close */
	/* The background evictor keeps [low, high] bytes free ahead of faults. */
	pthread_t reclaimer;
	pthread_cond_t reclaim_cond;
	bool reclaimer_on, stop;
	uint64_t low, high;
	/*
	 * Drop-behind: runs of pages that readers of HM_ADV_NOREUSE regions
	 * have passed, a ring whose newest run is taken first (cache.c).
	 */
	struct hm_behind {
		struct hm_region *r;
		uint64_t idx;
		uint32_t n;
	} behind[HM_BEHIND_RUNS];
	uint32_t behind_head, behind_len;
	/*
	 * Eviction batches that freed nothing because write-back failed, its
	 * error, and when the last one ended (0 once a batch frees something).
	 * wb_ok counts the write-backs that succeeded, wb_stuck_ok what it was
	 * when that batch began: one that succeeded since ends the window.
	 */
	uint64_t wb_stuck, wb_stuck_ns, wb_stuck_ok;
	_Atomic uint64_t wb_ok;
	int wb_stuck_err;
	struct hm_counters ctr;
};

struct hm_region {
	char *base;          /* the registered mapping the application uses */
	size_t length;       /* as asked */
	size_t span;         /* length rounded up to the page size */
	size_t ps;           /* region page size */
	unsigned ps_shift;
	uint64_t npages;
	uint64_t offset;     /* in the store */
	uint64_t wb_limit;   /* write-back never goes past this store offset */
	int prot;
	int flags;
	int memfd;           /* the frames: shmem, or hugetlbfs with HM_HUGETLB */
	bool thp;            /* memfd is a file of a huge=always tmpfs: filled by write() */
	bool wp;             /* dirty tracking on (writable region) */
	char *view;          /* HM_HUGETLB, HM_HYBRID: a second mapping of memfd, to fill frames */
	bool own_store;      /* opened by hmmap(); closed at unmap */
	struct hm_bam *bam;  /* HM_DIRECT/HM_HYBRID state (src/core/direct.h), else NULL */
	struct hm_store *store;
	struct hm_cache *cache;
	uint32_t id;

	struct hm_page *_Atomic *dir; /* chunks of pages */
	size_t ndir;

	/* Readahead: where a sequential stream would fault next, and its window. */
	_Atomic uint64_t ra_next;
	_Atomic uint32_t ra_window;
	_Atomic uint64_t ra_end; /* end of the area read ahead asynchronously */
	_Atomic uint32_t ra_gen; /* bumped to cancel queued readahead */
	_Atomic uint32_t ra_queued; /* windows in the prefetch queue */
	/* Recent misses without context: sparse forward scans (src/core/fault.c). */
	_Atomic uint64_t miss_hist[8];
	_Atomic uint32_t miss_pos;
	_Atomic int advice;

	_Atomic uint32_t evicting; /* pages of this region being evicted */
	_Atomic uint64_t resident_pages;
	_Atomic uint64_t pinned_pages;
	pthread_mutex_t sync_lock; /* one sync or unmap at a time */
	/*
	 * Held while a PAGEMAP_SCAN that write-protects what it finds (and so
	 * consumes the PTEs' "written" state) runs and its DIRTY flags are set:
	 * a sync's scan, an eviction's or a sample's zap and scan. Without it a
	 * sync could take the written state of a page being evicted and set
	 * DIRTY only after the eviction had found the page clean and freed it.
	 */
	pthread_mutex_t harvest_lock;
	struct hm_trace *_Atomic trace; /* fault recording, or NULL */
	_Atomic uint32_t trace_users;  /* recorders that may hold trace */
	bool dying;
	/* Ranges hmunmap() took out (src/core/punch.c), sorted, apart; under holes_lock. */
	pthread_mutex_t holes_lock;
	struct hm_hole *holes;
	uint32_t nholes;
	uint64_t gone_pages;
	/* The publisher's (under reg_lock): the segment's dirty count, and when to walk again. */
	uint64_t pub_dirty, pub_dirty_next_ns;
	void *hint; /* hmmap()'s addr: where base goes if that range is free (as mmap) */
	struct hm_counters ctr;
};

/* ---- options (src/core/env.c) ---- */
struct hm_env {
	uint64_t cache_size;
	char policy[128];
	uint64_t page_size;
	int fault_mode;       /* 0 auto, HM_FAULT_THREAD, HM_FAULT_SIGBUS */
	uint32_t fault_threads;
	uint32_t fault_spin_us; /* thread mode: a handler polls this long before it sleeps */
	uint64_t readahead;   /* max bytes per fault */
	uint32_t evict_batch; /* 4 KiB units */
	uint64_t sample_rate; /* pages per second zapped for hint faults; 0: no sampler */
	bool sample_auto;     /* HMMAP_SAMPLE_RATE=auto: sample_rate is auto's largest */
	uint32_t stats;       /* HMMAP_STATS: 0 off, 1 counters and the live segment */
	uint32_t thp_frames;  /* HMMAP_THP_FRAMES: 2 MiB pages on huge tmpfs frames if 1 */
};
/* Reads HMMAP_* once; returns 0 or -EINVAL naming the variable. */
int hm__env(const struct hm_env **env);
/*
 * The sampler's rate in pages per second for a cache under fault mode `mode`
 * (HM_FAULT_THREAD or HM_FAULT_SIGBUS): HMMAP_SAMPLE_RATE as given, or for
 * `auto` the rate whose hint faults cost about 2% of one CPU in that mode,
 * raised to 4096 while the cache is `evicting` (src/core/env.c).
 */
uint64_t hm__sample_rate(const struct hm_env *env, int mode, bool evicting);
/*
 * The same, given the measured kernel time of the process per sampled page
 * (0: not measured yet): for `auto` while not evicting, the rate that keeps
 * that cost within the budget, between 128 pages/s and hm__sample_rate().
 */
uint64_t hm__sample_rate_at(const struct hm_env *env, int mode, bool evicting,
			    uint64_t ns_per_page);

/* ---- pages (src/core/page.c) ---- */
/*
 * The page entry, allocating its chunk if `alloc`; NULL if absent or -ENOMEM.
 * Without `alloc`, a page of a chunk hmunmap() took out whole is absent too
 * (NULL, so that walks skip the chunk); with it, it is there, GONE.
 */
struct hm_page *hm__page(struct hm_region *r, uint64_t idx, bool alloc);
/* Whether dir chunk c holds no page but GONE ones shared by every region. */
bool hm__chunk_all_gone(const struct hm_page *c);
void hm__pages_free(struct hm_region *r);
/*
 * Makes the EMPTY pages of [idx, idx+n) GONE, chunks absent so far without
 * allocating them; returns how many pages are neither EMPTY nor GONE (still
 * to drop), or -ENOMEM. hm__pages_ungone() turns GONE pages back to EMPTY.
 */
int64_t hm__pages_gone(struct hm_region *r, uint64_t idx, uint64_t n);
void hm__pages_ungone(struct hm_region *r, uint64_t idx, uint64_t n);
/* Sets WAITERS unless the state changed from `seen`; returns false if it changed. */
bool hm__page_set_waiters(struct hm_page *p, uint32_t seen);
/* Wakes threads waiting on pages [idx, idx+n) of r (futex and userfaultfd). */
void hm__page_wake(struct hm_region *r, uint64_t idx, uint64_t n);
/* Sleeps until p->st differs from seen (bounded; the caller retries). */
void hm__page_wait(struct hm_page *p, uint32_t seen);

/* ---- cache (src/core/cache.c) ---- */
/* The budget, for readers outside the cache lock (resize changes it). */
static inline uint64_t hm__budget(const struct hm_cache *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)&c->budget, memory_order_relaxed);
}

/*
 * Reserves room for pages [idx, idx+n) of r, which missed, evicting if
 * needed; fills slots[].
 * Returns 0, -ENOMEM (everything is pinned or in flight for too long) or
 * the write-back error that kept eviction from making room.
 */
int hm__cache_reserve(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint32_t n,
		      uint32_t *slots);
/*
 * Maps r->view, a second mapping of r's whole memfd through which frames
 * are filled (not inherited by a child; NOHUGEPAGE unless HM_HUGETLB, so
 * that every shmem frame stays one page). 0 or -errno with a message.
 */
int hm__region_view(struct hm_region *r);
/*
 * An unnamed file (O_TMPFILE) of a new tmpfs instance mounted huge=always
 * and never attached to a path, which goes away with the file: the frames
 * of 2 MiB-page regions (src/core/region.c). An fd, or -errno (EPERM
 * without CAP_SYS_ADMIN).
 */
int hm__thp_tmpfile(void);
/* hm_region_map() with an address hint for the mapping (hmmap()'s addr), or NULL. */
int hm__region_map(struct hm_region **out, struct hm_cache *c, struct hm_store *s,
		   uint64_t offset, size_t length, int prot, int flags, size_t page_size, void *hint);
/*
 * Frees a chain's own cache (hm_cache_free() refuses it): 0, or -EBUSY if
 * regions still use it, which then may free it with hm_cache_free().
 */
int hm__cache_free_owned(struct hm_cache *c);
/* Whether `bytes` more fit in c without waking its evictor (nothing evicted). */
/*
 * Waits, at most max_ms, until no load or eviction of c is under way or
 * owed by the background evictor: a page in one is counted both where it
 * comes from and where it goes.
 */
void hm__cache_settle(struct hm_cache *c, unsigned max_ms);
bool hm__cache_room(struct hm_cache *c, uint64_t bytes);
/* Gives back reserved slots of r that were not used. */
void hm__cache_unreserve(struct hm_cache *c, struct hm_region *r, uint32_t n,
			 const uint32_t *slots);
/*
 * Evicts up to n pages the policy chooses, whatever the budget says: for a
 * load of `held` pages that finds no frame outside the cache (an empty huge
 * page pool). 0 if at least one page was freed, else -ENOMEM.
 */
int hm__cache_shed(struct hm_cache *c, uint32_t n, uint32_t held);
/* Pages [idx, idx+n) of r became resident in slots[]: hand them to the policy. */
void hm__cache_insert(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint32_t n,
		      const uint32_t *slots);
void hm__cache_hit(struct hm_cache *c, struct hm_page *p);
/*
 * A reader of an HM_ADV_NOREUSE region reached page idx with
 * windows of w pages: the pages a window or more behind it go first.
 */
void hm__cache_behind(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint32_t w);
/* Drops every page of r from the cache (unmap); r must be synced and quiet. */
void hm__cache_detach(struct hm_cache *c, struct hm_region *r);
/*
 * Evicts pages [idx, idx+n) of r now (DONTNEED, invalidate). `how`: 0, or
 * HM_DROP_CLEAN (dirty pages stay), or HM_DROP_DISCARD (dirty pages go
 * unwritten: anonymous memory being unmapped).
 */
#define HM_DROP_CLEAN 1u
#define HM_DROP_DISCARD 2u
int hm__cache_drop_range(struct hm_cache *c, struct hm_region *r, uint64_t idx, uint64_t n,
			 unsigned how);
/*
 * Pinning: pinned pages never take the whole budget. hm__cache_pin_limit()
 * is the most bytes pins may hold in c, leaving room for faults of pages of
 * `ps` bytes (the evictor's low watermark, at least one page): with every
 * frame pinned the next fault could only fail. hm__cache_pinned() is the
 * bytes pinned now.
 */
uint64_t hm__cache_pin_limit(struct hm_cache *c, uint64_t ps);
uint64_t hm__cache_pinned(struct hm_cache *c);
int hm__cache_pin(struct hm_cache *c, struct hm_region *r, uint64_t idx);
void hm__cache_unpin(struct hm_cache *c, struct hm_region *r, uint64_t idx);

/* ---- regions (src/core/region.c) ---- */
/* The region containing addr with a reference held, or NULL. */
struct hm_region *hm__region_get(uintptr_t addr);
void hm__region_put(struct hm_region *r);
/* Takes one more reference on a region the caller holds (a queued prefetch). */
void hm__region_hold(struct hm_region *r);
/* True if part of pages [idx, idx+n) of r was unmapped by hmunmap(). */
bool hm__region_holed(struct hm_region *r, uint64_t idx, uint64_t n);
/* The same for the addresses [a, end), clipped to r. */
bool hm__region_holed_at(struct hm_region *r, uintptr_t a, uintptr_t end);
/* How many pages of [idx, idx+n), and of all r, hmunmap() took out. */
uint64_t hm__region_hole_pages(struct hm_region *r, uint64_t idx, uint64_t n);
uint64_t hm__region_gone_pages(struct hm_region *r);
/*
 * The first run of pages still mapped in [*idx, end): sets *idx and *n and
 * returns true, or false if there is none.
 */
bool hm__region_next_piece(struct hm_region *r, uint64_t *idx, uint64_t end, uint64_t *n);
/* Takes pages [idx, idx+n), not all r has left, out of r (src/core/punch.c). */
int hm__region_punch(struct hm_region *r, uint64_t idx, uint64_t n);
/* Releases the user's pins on pages of [idx, idx+n) (src/core/punch.c). */
void hm__unpin_range(struct hm_region *r, uint64_t idx, uint64_t n);

/* ---- faults (src/core/fault.c) ---- */
#define HM_FAULT_F_WRITE 0x1
#define HM_FAULT_F_WP 0x2    /* a write-protect fault (synchronous tracking) */
#define HM_FAULT_F_MINOR 0x4
#define HM_FAULT_F_SIGBUS 0x8 /* served in the faulting thread */

/*
 * Serves a fault at addr in r. Returns 0 when the page is mapped (or will be
 * by the thread that owns its transition, which then wakes the faulting
 * thread), or -errno when the page cannot be read: the caller delivers
 * SIGBUS to the faulting thread.
 */
int hm__fault(struct hm_region *r, uintptr_t addr, unsigned flags);
/*
 * Reads window [idx, idx+n) ahead of the application (a prefetch worker),
 * unless the region's readahead generation moved past `gen`.
 */
void hm__readahead(struct hm_region *r, uint64_t idx, uint32_t n, uint32_t gen);
/* Starts the prefetch workers (from ordinary context, never the fault path). */
void hm__prefetch_start(void);
/* Queues an asynchronous readahead of [idx, idx+n); takes a reference on r. */
void hm__prefetch_queue(struct hm_region *r, uint64_t idx, uint32_t n, uint32_t gen);
/* A reader loads [idx, idx+n) itself: queued windows of r give up what is behind it. */
void hm__prefetch_trim(struct hm_region *r, uint64_t idx, uint32_t n);
/*
 * Cancels r's readahead stream: queued windows are dropped, and a window
 * being read is either waited for by the caller's scan or released.
 */
void hm__readahead_cancel(struct hm_region *r);
/*
 * Loads pages [idx, idx+n) that are absent (prefault, WILLNEED); pins if
 * asked; with `keep`, marks them HM_PG_KEEPMAP once mapped (hm_prefault).
 */
int hm__populate(struct hm_region *r, uint64_t idx, uint64_t n, bool pin, bool keep);

/* ---- write-back (src/core/sync.c) ---- */
/* PAGEMAP_SCAN callback (ctx is the region): marks the written pages DIRTY. */
void hm__mark_written(void *ctx, uintptr_t addr, size_t len);
/*
 * Zaps the PTEs of held pages [idx, idx+n) of r (EVICTING or BUSY) and, for
 * a writable region, folds what they said about writes into DIRTY under the
 * region's harvest_lock (src/core/cache.c). Every zap that must not lose a
 * write goes through here.
 */
void hm__zap(struct hm_region *r, uint64_t idx, uint64_t n);
/* A run of pages [idx, idx+n) of one region. */
struct hm_run {
	uint64_t idx, n;
};
/*
 * hm__zap() of n disjoint runs of r at once (n at most HM_ZAP_RUNS). One
 * process_madvise() zaps them all with one TLB flush; a madvise() per run
 * flushes once per run, and under a hypervisor every flush stalls the
 * other CPUs that run the process (docs/design.md, "Zapping in batches").
 */
#define HM_ZAP_RUNS 512u
void hm__zap_runs(struct hm_region *r, const struct hm_run *run, uint32_t n);
/*
 * For tests: set 1 lets hm__zap_runs() try process_madvise() again, -1
 * makes it zap a run at a time as on a kernel that refuses it, 0 changes
 * nothing. Returns the state: 1 in use, -1 off, 0 not tried yet.
 */
int hm__zap_vector(int set);
/* Collects written pages of [idx, idx+n) into DIRTY flags (present pages only). */
int hm__harvest(struct hm_region *r, uint64_t idx, uint64_t n);
/* Writes back DIRTY pages of [idx, idx+n); flushes the store if `flush`. */
int hm__region_sync(struct hm_region *r, uint64_t idx, uint64_t n, bool flush);
/* Writes pages [idx, idx+n) from their frames to the store, clipped. */
int hm__writeback_run(struct hm_region *r, uint64_t idx, uint64_t n);
/*
 * Reads pages [idx, idx+n) from the store into new frames and maps them,
 * except the first page when `unmapped_first` (it gets a frame only).
 * Returns 0, the store's error as is, or -EPROTO after hm__error() when
 * the frames could not be made or mapped.
 */
int hm__io_load(struct hm_region *r, uint64_t idx, uint64_t n, bool unmapped_first);

/*
 * What a compressed store, or a chain's lower tiers, hold (4 KiB x pages)
 * and the RAM it takes (src/core/tier.c); zeros for other stores.
 */
void hm__store_space(const struct hm_store *s, uint64_t *held, uint64_t *pool);
/* Closes a store opened for an hmmap() that failed, undoing what its open made (store.c). */
void hm__store_discard(struct hm_store *s);
void hm__pmem_undo_open(void *priv); /* src/stores/pmem.c */
int hm__file_tier_lock(struct hm_store *s); /* src/stores/file.c: one chain per file */
int hm__pmem_fd(struct hm_store *s);        /* src/stores/pmem.c: its fd, or -1 */

/* ---- fault traces (src/core/trace.c) ---- */
void hm__trace_record(struct hm_region *r, uint64_t idx);
/* HMMAP_TRACE: starts recording a new region (0, or an error naming the variable); stops at unmap. */
int hm__trace_region_start(struct hm_region *r);
void hm__trace_region_end(struct hm_region *r);
/* At a normal exit: writes out and closes the region's trace (region.c). */
void hm__trace_region_exit(struct hm_region *r);

/* ---- the fault engine (src/uffd/) ---- */
struct hm_engine_info {
	int mode;           /* HM_FAULT_THREAD or HM_FAULT_SIGBUS */
	uint64_t features;  /* HM_FEAT_* */
	bool wp_async;      /* dirty tracking without faults */
};
int hm__engine_start(const struct hm_engine_info **info);
int hm__uffd_register(void *addr, size_t len, bool wp);
int hm__uffd_unregister(void *addr, size_t len);
/* Maps [addr, addr+len) from the memfd's page cache; -EEXIST if any was mapped. */
int hm__uffd_continue(void *addr, size_t len, bool wp);
int hm__uffd_wake(void *addr, size_t len);
/*
 * Allocates frames for [dst, dst+len), fills them from src and maps them in
 * one step (UFFDIO_COPY), write-protected if wp; -EEXIST if one was there.
 */
int hm__uffd_copy(void *dst, const void *src, size_t len, bool wp);
/* Write-protects (or unprotects) a range: synchronous tracking only. */
int hm__uffd_writeprotect(void *addr, size_t len, bool protect);
/*
 * Registers [addr, addr+len) for asynchronous write protection only (any
 * memory, file mappings too: direct regions' endurance counting) and
 * write-protects it. -ENOTSUP without asynchronous WP.
 */
int hm__uffd_register_wp_async(void *addr, size_t len);
/*
 * Reports written pages in [start, end) and write-protects them again.
 * If present_only, only pages still mapped (or with a swap entry, as while
 * migrating) count; otherwise zapped pages whose PTE held no write
 * protection count as written too. Calls
 * cb(ctx, addr, len) for each written run. Returns 0 or -errno.
 */
int hm__pagemap_harvest(uintptr_t start, uintptr_t end, bool present_only,
			void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx);
/*
 * The same for a range just zapped in a hugetlb mapping, where a zapped
 * written page leaves an empty entry that the scan does not call written:
 * reports every page without a write-protect marker. Protects nothing.
 */
int hm__pagemap_unmarked(uintptr_t start, uintptr_t end,
			 void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx);
/*
 * Reports the runs of [start, end) mapped and written since they were last
 * write-protected, and changes nothing (for statistics).
 */
int hm__pagemap_written(uintptr_t start, uintptr_t end,
			void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx);
/* Reports the runs of [start, end) with neither a PTE nor a marker. */
int hm__pagemap_holes(uintptr_t start, uintptr_t end,
		      void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx);

/*
 * A whole read from a file descriptor (frames in a region's memfd):
 * retried on EINTR and short counts; 0 or -errno (-EIO at end of file).
 */
int hm__pread_all(int fd, char *buf, size_t len, off_t off);

/* ---- fork (src/core/fork.c) ---- */
/*
 * A lock the forking thread held, made usable in a fork child by being
 * initialised again (a recursive or read-write lock records an owner's
 * thread id that the child's thread does not have). ThreadSanitizer keeps
 * a lock's state across initialisation, so it is told the lock was let go.
 */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define hm__fork_released(lock) \
	(__tsan_mutex_pre_unlock((lock), 0), __tsan_mutex_post_unlock((lock), 0))
#else
#define hm__fork_released(lock) ((void)(lock))
#endif

/*
 * pthread_atfork phases. Before fork() each module takes its global locks
 * (PREPARE); the parent releases them (PARENT); the child forgets what
 * belongs to the parent and releases its locks (CHILD), so that
 * its first call starts hmmap afresh. The order is fork.c's.
 */
#define HM_FORK_PREPARE 1
#define HM_FORK_PARENT 2
#define HM_FORK_CHILD 3
/* Registers the handlers (once; also done when the library is loaded). */
void hm__fork_hooks(void);
void hm__cache_fork(int phase);    /* default cache, cache list, sampler */
void hm__stats_fork(int phase);    /* published objects, the live segment */
void hm__engine_fork(int phase);   /* userfaultfd, pagemap, handler threads */
void hm__registry_fork(int phase); /* the registration lock (registrations stay) */
void hm__region_fork(int phase);   /* the region table and the regions' frame files */
void hm__prefetch_fork(int phase); /* the readahead queue and its workers */
void hm__chain_fork(int phase);    /* tier chains */
/* The child reads the HMMAP_* variables again at its first call. */
void hm__env_fork_child(void);

/* ---- time ---- */
uint64_t hm__now_ns(void);

#endif
