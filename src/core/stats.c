/* SPDX-License-Identifier: MIT */
/*
 * Statistics beyond the counters: fault-latency percentiles, prefetch
 * accounting, direct store access for probes, and the live-statistics
 * segment that other processes read.
 *
 * The segment. A process that maps a region publishes its caches, regions
 * and stores in the POSIX shared-memory object /hmmap.PID (the file
 * /dev/shm/hmmap.PID): a 128-byte header and a table of fixed-size entries
 * (struct hm_obj_stats), laid out as docs/stats.md describes. A publisher
 * thread rewrites the table every HM_SNAPSHOT_INTERVAL_MS under a sequence
 * lock: the header's `seq` is odd while the table changes, so a reader that
 * sees the same even value before and after its copy has a consistent
 * snapshot, and the process never waits for a reader. The header carries the
 * process's start time (field 22 of /proc/PID/stat): a reader that finds the
 * PID dead, or alive with another start time (a recycled PID), or a process
 * that no longer maps the segment (it called exec), removes the segment and
 * reports it stale. The process removes its own segment at exit.
 *
 * Everything here runs in ordinary context: objects are added and removed
 * by map/unmap and cache creation, never by the fault path.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/direct.h"

_Atomic int hm__stats_on = 1;

void hm__stats_set(bool on)
{
	atomic_store_explicit(&hm__stats_on, on, memory_order_relaxed);
}

/* ---- latency percentiles ---- */

/* The middle of bucket b: the value a percentile in it is reported as. */
static uint64_t bucket_mid(unsigned b)
{
	unsigned k, sub;
	uint64_t lo, width;

	if (b < HM_LAT_SUB)
		return b;
	k = (b - HM_LAT_SUB) / HM_LAT_SUB + 3;
	sub = (b - HM_LAT_SUB) % HM_LAT_SUB;
	width = 1ull << (k - 3);
	lo = (uint64_t)(HM_LAT_SUB + sub) << (k - 3);
	return lo + width / 2;
}

/* The value below which a fraction q (per mille, per 100000) of n samples lie. */
static uint64_t percentile(const uint64_t *h, uint64_t n, uint64_t num, uint64_t den)
{
	/* The smallest rank r with r >= q * n, counted from 1. */
	uint64_t rank = (n * num + den - 1) / den, seen = 0;

	if (rank == 0)
		rank = 1;
	for (unsigned b = 0; b < HM_LAT_BUCKETS; b++) {
		seen += h[b];
		if (seen >= rank)
			return bucket_mid(b);
	}
	return bucket_mid(HM_LAT_BUCKETS - 1);
}

static void lat_from_hist(const uint64_t *h, struct hm_stats *s)
{
	uint64_t n = 0;

	for (unsigned b = 0; b < HM_LAT_BUCKETS; b++)
		n += h[b];
	s->faults_timed = n;
	if (!n) {
		s->fault_ns_p50 = s->fault_ns_p99 = s->fault_ns_p999 = 0;
		return;
	}
	s->fault_ns_p50 = percentile(h, n, 50, 100);
	s->fault_ns_p99 = percentile(h, n, 99, 100);
	s->fault_ns_p999 = percentile(h, n, 999, 1000);
}

static void lat_sum(const struct hm_counters *k, uint64_t *h)
{
	for (int i = 0; i < HM_SHARDS; i++)
		for (unsigned b = 0; b < HM_LAT_BUCKETS; b++)
			h[b] += atomic_load_explicit(&k->s[i].lat[b], memory_order_relaxed);
}

void hm__lat_fill(const struct hm_counters *k, struct hm_stats *s)
{
	uint64_t h[HM_LAT_BUCKETS] = { 0 };

	lat_sum(k, h);
	lat_from_hist(h, s);
}

/* ---- prefetch accounting ---- */

void hm__ra_used(struct hm_region *r, struct hm_page *p)
{
	if (!(atomic_load_explicit(&p->st, memory_order_relaxed) & HM_PG_RA))
		return;
	if (atomic_fetch_and(&p->st, ~HM_PG_RA) & HM_PG_RA) {
		hm__count(&r->ctr, prefetch_used, 1);
		hm__count(&r->cache->ctr, prefetch_used, 1);
	}
}

/*
 * A page is read ahead only when faults look sequential, so a reader that
 * faults at idx right after read-ahead pages has gone over them: they count
 * as used. The walk stops at the first page that is not such a page, and
 * after a bound (the most a stream keeps read ahead).
 */
void hm__ra_passed(struct hm_region *r, uint64_t idx)
{
	uint64_t used = 0;

	if (!hm__stats_enabled())
		return;
	for (uint64_t i = idx, n = 0; i > 0 && n < 4096; i--, n++) {
		struct hm_page *p = hm__page(r, i - 1, false);
		if (!p || !(atomic_load_explicit(&p->st, memory_order_relaxed) & HM_PG_RA))
			break;
		if (atomic_fetch_and(&p->st, ~HM_PG_RA) & HM_PG_RA)
			used++;
	}
	if (used) {
		hm__count(&r->ctr, prefetch_used, used);
		hm__count(&r->cache->ctr, prefetch_used, used);
	}
}

/* ---- direct store access ---- */

int hm_store_info(const struct hm_store *s, struct hm_store_info *info)
{
	if (!s || !info)
		return hm__error(-EINVAL, "hm_store_info: NULL argument");
	*info = s->info;
	return 0;
}

static int check_io(const struct hm_store *s, const void *buf, size_t len, uint64_t off,
		    const char *what)
{
	if (!s || !buf)
		return hm__error(-EINVAL, "%s: NULL argument", what);
	if (off + len < off || len > (1ull << 40))
		return hm__error(-EINVAL, "%s: range %llu+%zu overflows", what,
				 (unsigned long long)off, len);
	return 0;
}

int hm_store_read(struct hm_store *s, void *buf, size_t len, uint64_t off)
{
	int rc = check_io(s, buf, len, off, "hm_store_read");

	if (rc || !len)
		return rc;
	int saved = errno;
	hm__error_clear();
	rc = s->ops->read(s->priv, buf, len, off);
	errno = saved;
	if (rc) {
		hm__count(&s->ctr, read_errors, 1);
		return hm__error_wrap(rc, "read of %zu bytes at %llu from '%s' failed", len,
				       (unsigned long long)off, s->uri);
	}
	hm__count(&s->ctr, bytes_read, len);
	return 0;
}

int hm_store_write(struct hm_store *s, const void *buf, size_t len, uint64_t off)
{
	int rc = check_io(s, buf, len, off, "hm_store_write");

	if (rc || !len)
		return rc;
	if (s->info.props & HM_PROP_READONLY)
		return hm__error(-EACCES, "store '%s' is open read-only", s->uri);
	if (!(s->info.props & HM_PROP_RESIZABLE) && off + len > s->info.size)
		return hm__error(-ENOSPC, "write of %zu bytes at %llu is past the end of '%s' "
					  "(%llu bytes)",
				 len, (unsigned long long)off, s->uri,
				 (unsigned long long)s->info.size);
	int saved = errno;
	hm__error_clear();
	rc = s->ops->write(s->priv, buf, len, off);
	errno = saved;
	if (rc) {
		hm__count(&s->ctr, writeback_errors, 1);
		return hm__error_wrap(rc, "write of %zu bytes at %llu to '%s' failed", len,
				       (unsigned long long)off, s->uri);
	}
	hm__count(&s->ctr, bytes_written, len);
	return 0;
}

/* ---- the registry of published objects ---- */

struct reg_cache {
	struct hm_cache *c;
	uint32_t id;
};

struct reg_store {
	struct hm_store *s;
	uint32_t id;
	uint32_t users; /* regions on it */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hm_region **reg_regions;
static size_t nregions, cap_regions;
static struct reg_cache *reg_caches;
static size_t ncaches, cap_caches;
static struct reg_store *reg_stores;
static size_t nstores, cap_stores;
static uint32_t next_cache_id = 1, next_store_id = 1;

/* Grows *arr (of *cap elements of size sz) to hold one more; false if out of memory. */
static bool grow(void **arr, size_t n, size_t *cap, size_t sz)
{
	void *p;
	size_t c;

	if (n < *cap)
		return true;
	c = *cap ? *cap * 2 : 16;
	p = realloc(*arr, c * sz);
	if (!p)
		return false;
	*arr = p;
	*cap = c;
	return true;
}

struct written_walk {
	struct hm_region *r;
	uint64_t next; /* pages below this one are counted */
	uint64_t n;
};

/* Counts the pages of a written run that no harvest has marked DIRTY yet. */
static void count_written(void *ctx, uintptr_t addr, size_t len)
{
	struct written_walk *w = ctx;
	struct hm_region *r = w->r;
	uint64_t a = (addr - (uintptr_t)r->base) >> r->ps_shift;
	uint64_t b = (addr + len - 1 - (uintptr_t)r->base) >> r->ps_shift;

	for (uint64_t i = a > w->next ? a : w->next; i <= b; i++) {
		struct hm_page *p = r->bam ? NULL : hm__page(r, i, false);
		if (!p || !(atomic_load_explicit(&p->st, memory_order_relaxed) & HM_PG_DIRTY))
			w->n++;
	}
	if (b + 1 > w->next)
		w->next = b + 1;
}

/*
 * Pages written since their last harvest: with asynchronous write
 * protection the kernel lets a write through without telling anyone, and
 * only the PTE knows until a sync, an eviction or the sampler harvests it.
 * A look at the PTEs (which protects nothing) finds those.
 */
static uint64_t written_unharvested(const struct hm_region *r)
{
	struct written_walk w = {.r = (struct hm_region *)r};

	if (hm__pagemap_written((uintptr_t)r->base, (uintptr_t)r->base + r->span, count_written,
				&w))
		return 0; /* no PAGEMAP_SCAN: the harvested count alone */
	return w.n;
}

uint64_t hm__region_dirty(const struct hm_region *r)
{
	uint64_t dirty = 0;

	if (r->bam) {
		/* A hybrid region holds in DRAM exactly the pages written since write-back. */
		if (r->bam->hybrid)
			return atomic_load(&r->resident_pages);
		return r->bam->track ? written_unharvested(r) : 0;
	}
	/*
	 * Under the harvest lock: a harvest (a sampler's zap and scan, say)
	 * between the look at the PTEs and the walk of the flags would move a
	 * page from the one to the other unseen, and the count would miss it.
	 */
	pthread_mutex_t *hl = (pthread_mutex_t *)&r->harvest_lock;
	pthread_mutex_lock(hl);
	if (r->wp)
		dirty = written_unharvested(r);
	for (size_t d = 0; d < r->ndir; d++) {
		struct hm_page *c = atomic_load(&r->dir[d]);
		if (!c || hm__chunk_all_gone(c))
			continue;
		for (uint32_t i = 0; i < HM_CHUNK_PAGES; i++)
			if (atomic_load_explicit(&c[i].st, memory_order_relaxed) & HM_PG_DIRTY)
				dirty++;
	}
	pthread_mutex_unlock(hl);
	return dirty;
}

/* Set while this thread holds reg_lock and fills cache statistics itself. */
static __thread bool filling;

uint64_t hm__stats_cache_dirty(const struct hm_cache *c)
{
	uint64_t dirty = 0;

	if (filling)
		return 0;
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < nregions; i++)
		if (reg_regions[i]->cache == c)
			dirty += hm__region_dirty(reg_regions[i]);
	pthread_mutex_unlock(&reg_lock);
	return dirty;
}

/*
 * Under reg_lock, for the live segment: r's dirty pages, walked for at most
 * 1% of a CPU. The walk reads every page entry of the chunks in use - 16
 * bytes a page, 256 MiB for 64 GiB of touched 4 KiB pages - and the
 * publisher runs four times a second: walking a large region at every
 * publish kept an idle process busy (10% of a CPU at 64 GiB, a whole CPU
 * past 1 TiB). A walk that took more than a millisecond is not repeated
 * for a hundred times as long; the segment shows the last count meanwhile.
 * Nor is any walk repeated within half a publishing interval: every map
 * and unmap publishes at once, and each publish walked every region of
 * each cache, so mapping or unmapping N regions made N^2 walks (2000
 * regions on one cache took 30 s to map, against 1.4 s with
 * HMMAP_STATS=0). The periodic publish, an interval apart, still walks.
 * hm_region_stats() and hm_cache_stats() still walk at every call.
 */
_Atomic uint64_t hm__stats_dirty_walks;

static uint64_t region_dirty_paced(struct hm_region *r)
{
	uint64_t t0 = hm__now_ns(), dt;

	if (t0 < r->pub_dirty_next_ns)
		return r->pub_dirty;
	atomic_fetch_add_explicit(&hm__stats_dirty_walks, 1, memory_order_relaxed);
	r->pub_dirty = hm__region_dirty(r);
	dt = hm__now_ns() - t0;
	r->pub_dirty_next_ns = t0 + (dt > 1000000 ? 100 * dt
						   : HM_SNAPSHOT_INTERVAL_MS * 1000000ull / 2);
	return r->pub_dirty;
}

/* Under reg_lock: a cache's statistics, dirty pages summed over its regions. */
static void cache_fill_locked(struct hm_cache *c, struct hm_stats *s)
{
	filling = true;
	hm_cache_stats(c, s);
	filling = false;
	s->dirty_pages = 0;
	for (size_t i = 0; i < nregions; i++)
		if (reg_regions[i]->cache == c)
			s->dirty_pages += region_dirty_paced(reg_regions[i]);
}

/* ---- the segment (writer) ---- */

#define SEG_MAGIC "HMMAPSTS"
#define SEG_HEADER 128
#define SEG_CAPACITY 256

struct seg_header {
	char magic[8];         /* "HMMAPSTS", written last at creation */
	uint32_t version;      /* HM_SNAPSHOT_VERSION */
	uint32_t header_size;  /* SEG_HEADER: where the entries start */
	uint32_t entry_size;   /* sizeof(struct hm_obj_stats) */
	uint32_t capacity;     /* entries the segment holds */
	int32_t pid;
	int32_t fault_mode;
	uint64_t start_time;   /* field 22 of /proc/PID/stat */
	_Atomic uint64_t seq;  /* odd while the table changes */
	uint64_t updated_ns;   /* CLOCK_REALTIME of the last publication */
	uint32_t interval_ms;
	uint32_t nobjs;
	uint32_t truncated;
	uint32_t pad;
	char comm[16];
	uint8_t reserved[40];
};

_Static_assert(sizeof(struct seg_header) == SEG_HEADER, "segment header is 128 bytes");
_Static_assert(sizeof(struct hm_obj_stats) == 512, "segment entries are 512 bytes");
_Static_assert(sizeof(struct hm_stats) == 256, "struct hm_stats keeps its size");

#define SEG_SIZE (SEG_HEADER + SEG_CAPACITY * sizeof(struct hm_obj_stats))

static struct seg_header *seg;  /* under reg_lock */
static pid_t seg_pid;           /* the process that made seg (getpid()) */
static pid_t seg_proc_pid;      /* the same, as /proc names it: the segment's number */
static bool seg_failed;         /* creation failed: do not retry on every map */
static pthread_t publisher;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static void seg_name(char *buf, size_t n, pid_t pid)
{
	snprintf(buf, n, "/hmmap.%d", (int)pid);
}

/*
 * This process's PID as /proc names it, which is what readers check a
 * segment against. In a PID namespace whose /proc is the parent's, getpid()
 * names another process there (1 is the parent's init): a segment under that
 * number would carry that process's start time and name and look alive to
 * every reader long after this process is gone.
 */
static pid_t proc_self_pid(void)
{
	char buf[32], *end;
	ssize_t n = readlink("/proc/self", buf, sizeof buf - 1);
	long v;

	if (n <= 0)
		return getpid();
	buf[n] = 0;
	v = strtol(buf, &end, 10);
	return *end || v <= 0 ? getpid() : (pid_t)v;
}

/* Field 22 of /proc/PID/stat (start time in clock ticks after boot), or 0. */
static uint64_t proc_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long v = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* The name (field 2) may hold spaces and parentheses: start after the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	for (int field = 3; field <= 22; field++) {
		while (*p == ' ')
			p++;
		if (field == 22) {
			v = strtoull(p, NULL, 10);
			break;
		}
		p = strchr(p, ' ');
		if (!p)
			return 0;
	}
	return v;
}

static void publish_locked(void)
{
	struct hm_obj_stats *e = (struct hm_obj_stats *)((char *)seg + SEG_HEADER);
	const struct hm_engine_info *info;
	uint32_t n = 0, dropped = 0;
	struct timespec ts;
	uint64_t seq = atomic_load_explicit(&seg->seq, memory_order_relaxed);

	atomic_store_explicit(&seg->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);

	for (size_t i = 0; i < ncaches; i++) {
		if (n == SEG_CAPACITY) {
			dropped++;
			continue;
		}
		struct hm_obj_stats *o = &e[n++];
		memset(o, 0, sizeof *o);
		o->kind = HM_OBJ_CACHE;
		o->id = reg_caches[i].id;
		snprintf(o->name, sizeof o->name, "%s", reg_caches[i].c->pops->name);
		cache_fill_locked(reg_caches[i].c, &o->stats);
	}
	for (size_t i = 0; i < nregions; i++) {
		struct hm_region *r = reg_regions[i];
		if (n == SEG_CAPACITY) {
			dropped++;
			continue;
		}
		struct hm_obj_stats *o = &e[n++];
		memset(o, 0, sizeof *o);
		o->kind = HM_OBJ_REGION;
		o->id = r->id;
		for (size_t j = 0; j < ncaches; j++)
			if (reg_caches[j].c == r->cache)
				o->cache_id = reg_caches[j].id;
		for (size_t j = 0; j < nstores; j++)
			if (reg_stores[j].s == r->store)
				o->store_id = reg_stores[j].id;
		o->addr = (uint64_t)(uintptr_t)r->base;
		o->length = r->length;
		o->page_size = r->ps;
		o->mode = (uint32_t)r->flags;
		snprintf(o->name, sizeof o->name, "%s", r->store->uri);
		hm__region_stats_fill(r, &o->stats);
		o->stats.dirty_pages = region_dirty_paced(r);
	}
	for (size_t i = 0; i < nstores; i++) {
		struct hm_store *s = reg_stores[i].s;
		if (n == SEG_CAPACITY) {
			dropped++;
			continue;
		}
		struct hm_obj_stats *o = &e[n++];
		memset(o, 0, sizeof *o);
		o->kind = HM_OBJ_STORE;
		o->id = reg_stores[i].id;
		o->length = s->info.size;
		o->props = s->info.props;
		snprintf(o->name, sizeof o->name, "%s", s->uri);
		hm_store_stats(s, &o->stats);
	}
	seg->nobjs = n;
	seg->truncated = dropped;
	clock_gettime(CLOCK_REALTIME, &ts);
	seg->updated_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	/* The engine is running once a region was mapped; this only reads its mode. */
	seg->fault_mode = hm__engine_start(&info) ? 0 : info->mode;

	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&seg->seq, seq + 2, memory_order_release);
}

static void publish(void)
{
	pthread_mutex_lock(&reg_lock);
	if (seg && seg_pid == getpid())
		publish_locked();
	pthread_mutex_unlock(&reg_lock);
}

static void *publisher_main(void *arg)
{

	hm__block_signals();
	for (;;) {
		struct timespec ts = { 0, HM_SNAPSHOT_INTERVAL_MS * 1000000L };
		nanosleep(&ts, NULL);
		publish();
	}
	return NULL;
}

static void seg_remove(void)
{
	char name[64];

	/* A forked child that never published must not remove its parent's segment. */
	if (!seg || seg_pid != getpid())
		return;
	seg_name(name, sizeof name, seg_proc_pid);
	shm_unlink(name);
}

/*
 * fork() (fork.c): reg_lock is held across it so that the child's copy is
 * consistent and not locked forever. The child forgets the parent's
 * objects and segment: its regions are not inherited (MADV_DONTFORK), its
 * caches belong to the parent, and its first map publishes anew in a
 * segment of its own PID. seg_remove() at the child's exit leaves the
 * parent's segment alone (seg_pid).
 */
void hm__stats_fork(int phase)
{
	switch (phase) {
	case HM_FORK_PREPARE:
		pthread_mutex_lock(&reg_lock);
		break;
	case HM_FORK_PARENT:
		pthread_mutex_unlock(&reg_lock);
		break;
	case HM_FORK_CHILD:
		if (seg)
			munmap(seg, SEG_SIZE);
		seg = NULL;
		seg_failed = false;
		nregions = nstores = ncaches = 0;
		pthread_mutex_unlock(&reg_lock);
		break;
	}
}

static void install_hooks(void)
{
	atexit(seg_remove);
}

static void clean_stale(void);

/* Under reg_lock: creates this process's segment and its publisher. */
static void seg_create(void)
{
	char name[64];
	struct seg_header *h;
	const struct hm_env *env;
	pid_t me;
	int fd;

	if (seg_failed || hm__env(&env) || !env->stats)
		return;
	pthread_once(&hooks_once, install_hooks);
	clean_stale();
	me = proc_self_pid();
	seg_name(name, sizeof name, me);
	fd = shm_open(name, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	/*
	 * Allocated, not only sized: on a full /dev/shm the first store to a
	 * sparse page would raise SIGBUS in the application.
	 */
	if (posix_fallocate(fd, 0, (off_t)SEG_SIZE)) {
		close(fd);
		shm_unlink(name);
		goto fail;
	}
	h = mmap(NULL, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (h == MAP_FAILED) {
		shm_unlink(name);
		goto fail;
	}
	h->version = HM_SNAPSHOT_VERSION;
	h->header_size = SEG_HEADER;
	h->entry_size = sizeof(struct hm_obj_stats);
	h->capacity = SEG_CAPACITY;
	h->pid = me;
	h->start_time = proc_start_time(me);
	h->interval_ms = HM_SNAPSHOT_INTERVAL_MS;
	{
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/comm", (int)me);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, h->comm, sizeof h->comm - 1);
			close(fd);
			if (n > 0 && h->comm[n - 1] == '\n')
				h->comm[n - 1] = 0;
		}
	}
	atomic_thread_fence(memory_order_release);
	memcpy(h->magic, SEG_MAGIC, 8);
	seg = h;
	seg_pid = getpid();
	seg_proc_pid = me;
	if (pthread_create(&publisher, NULL, publisher_main, NULL)) {
		/* Published once below, never refreshed: remove rather than mislead. */
		munmap(h, SEG_SIZE);
		shm_unlink(name);
		seg = NULL;
		goto fail;
	}
	pthread_detach(publisher);
	return;
fail:
	seg_failed = true;
}

static struct reg_store *store_find(struct hm_store *s)
{
	for (size_t i = 0; i < nstores; i++)
		if (reg_stores[i].s == s)
			return &reg_stores[i];
	return NULL;
}

void hm__stats_region_add(struct hm_region *r)
{
	struct reg_store *rs;

	pthread_mutex_lock(&reg_lock);
	if (!grow((void **)&reg_regions, nregions, &cap_regions, sizeof *reg_regions))
		goto out;
	rs = store_find(r->store);
	if (!rs) {
		if (!grow((void **)&reg_stores, nstores, &cap_stores, sizeof *reg_stores))
			goto out;
		rs = &reg_stores[nstores++];
		rs->s = r->store;
		rs->id = next_store_id++;
		rs->users = 0;
	}
	rs->users++;
	reg_regions[nregions++] = r;
	if (!seg)
		seg_create();
	if (seg)
		publish_locked();
out:
	pthread_mutex_unlock(&reg_lock);
}

void hm__stats_region_del(struct hm_region *r)
{
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < nregions; i++) {
		if (reg_regions[i] != r)
			continue;
		reg_regions[i] = reg_regions[--nregions];
		struct reg_store *rs = store_find(r->store);
		if (rs && --rs->users == 0)
			*rs = reg_stores[--nstores];
		break;
	}
	/* Readers see the region gone now, not a quarter second later. */
	if (seg && seg_pid == getpid())
		publish_locked();
	pthread_mutex_unlock(&reg_lock);
}

void hm__stats_cache_add(struct hm_cache *c)
{
	pthread_mutex_lock(&reg_lock);
	if (grow((void **)&reg_caches, ncaches, &cap_caches, sizeof *reg_caches)) {
		reg_caches[ncaches].c = c;
		reg_caches[ncaches].id = next_cache_id++;
		ncaches++;
	}
	pthread_mutex_unlock(&reg_lock);
}

void hm__stats_cache_del(struct hm_cache *c)
{
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < ncaches; i++) {
		if (reg_caches[i].c == c) {
			reg_caches[i] = reg_caches[--ncaches];
			break;
		}
	}
	if (seg && seg_pid == getpid())
		publish_locked();
	pthread_mutex_unlock(&reg_lock);
}

/* ---- hm_stats ---- */

int hm_stats(const void *addr, struct hm_stats *st)
{
	uint64_t h[HM_LAT_BUCKETS] = { 0 };
	struct hm_region *r;

	if (!st)
		return hm__error(-EINVAL, "hm_stats: NULL stats");
	if (addr) {
		r = hm_region_find(addr);
		if (!r)
			return hm__error(-ENOENT, "hm_stats: %p is not in an hmmap region", addr);
		return hm_region_stats(r, st);
	}
	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < ncaches; i++) {
		struct hm_stats one;
		const uint64_t *src = (const uint64_t *)&one;
		uint64_t *dst = (uint64_t *)st;

		cache_fill_locked(reg_caches[i].c, &one);
		/* Every field up to the percentiles is a sum. */
		for (size_t f = 0; f < offsetof(struct hm_stats, faults_timed) / 8; f++)
			dst[f] += src[f];
		lat_sum(&reg_caches[i].c->ctr, h);
	}
	pthread_mutex_unlock(&reg_lock);
	lat_from_hist(h, st);
	return 0;
}

/* ---- the segment (readers) ---- */

static bool pid_alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

/* Whether process pid still maps its segment (false after exec); true if unknown. */
static bool maps_segment(pid_t pid)
{
	char path[64], line[512], want[64];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	snprintf(want, sizeof want, "/dev/shm/hmmap.%d", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return true;
	while (fgets(line, sizeof line, f)) {
		char *p = strstr(line, want);
		if (p && (p[strlen(want)] == '\n' || p[strlen(want)] == ' ' || !p[strlen(want)])) {
			found = true;
			break;
		}
	}
	if (ferror(f))
		found = true; /* could not tell */
	fclose(f);
	return found;
}

static void unlink_seg(pid_t pid)
{
	char name[64];

	seg_name(name, sizeof name, pid);
	shm_unlink(name);
}

/*
 * Maps the segment of pid read-only and checks it belongs to the live
 * process; removes it if stale. Returns 0 with *out (SEG_SIZE mapped bytes
 * or fewer: *len), or -errno with a message.
 */
/*
 * A segment of a version this library knows must be laid out as that
 * version says: the entries start after the header and inside the file,
 * are no shorter than this version's (a later version may make them
 * longer, never shorter: docs/stats.md), `capacity` of them fit in the
 * file, and no more than `capacity` are in use (the publisher never
 * writes more, so even a torn read cannot see more). Anything else is no
 * segment a publisher wrote: -EPROTO, with what is wrong in `why`.
 */
static int seg_check(const struct seg_header *h, size_t len, char *why, size_t cap)
{
	uint32_t nobjs = h->nobjs;

	if (!h->version)
		snprintf(why, cap, "version 0");
	else if (h->header_size < SEG_HEADER || h->header_size > len)
		snprintf(why, cap, "header_size %u is outside [%d, %zu], the segment's size",
			 h->header_size, SEG_HEADER, len);
	else if (h->entry_size < sizeof(struct hm_obj_stats))
		snprintf(why, cap, "entry_size %u is shorter than the %zu bytes of a version %u "
				   "entry",
			 h->entry_size, sizeof(struct hm_obj_stats), h->version);
	else if ((uint64_t)h->capacity * h->entry_size > len - h->header_size)
		snprintf(why, cap, "capacity %u entries of %u bytes do not fit in its %zu bytes",
			 h->capacity, h->entry_size, len);
	else if (nobjs > h->capacity)
		snprintf(why, cap, "nobjs %u is more than its capacity of %u entries", nobjs,
			 h->capacity);
	else
		return 0;
	return -EPROTO;
}

static int seg_open(pid_t pid, const struct seg_header **out, size_t *len)
{
	char name[64], why[160];
	struct stat sb;
	const struct seg_header *h;
	bool alive = pid_alive(pid);
	int fd, e, rc;

	seg_name(name, sizeof name, pid);
	fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		if (e == ENOENT && !alive)
			return hm__error(-ESRCH, "no process %d", (int)pid);
		if (e == ENOENT)
			return hm__error(-ENOENT, "process %d publishes no hmmap statistics (not an "
						  "hmmap process, no region mapped yet, or "
						  "HMMAP_STATS=0)",
					 (int)pid);
		if (e == EACCES)
			return hm__error(-EACCES, "the statistics of process %d belong to another "
						  "user",
					 (int)pid);
		return hm__error_errno(-e, "cannot open /dev/shm/hmmap.%d", (int)pid);
	}
	if (fstat(fd, &sb) || (size_t)sb.st_size < SEG_HEADER) {
		close(fd);
		if (!alive) {
			unlink_seg(pid);
			return hm__error(-ESTALE, "process %d is gone; its stale statistics "
						  "segment was removed",
					 (int)pid);
		}
		return hm__error(-ENOENT, "process %d has not published statistics yet",
				 (int)pid);
	}
	*len = (size_t)sb.st_size;
	h = mmap(NULL, *len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (h == MAP_FAILED)
		return hm__error_errno(-errno, "cannot map /dev/shm/hmmap.%d", (int)pid);
	if (!alive) {
		/* Whatever it holds, nobody updates it any more. */
		munmap((void *)h, *len);
		unlink_seg(pid);
		return hm__error(-ESTALE, "process %d is gone; its stale statistics segment was "
					  "removed",
				 (int)pid);
	}
	if (memcmp(h->magic, SEG_MAGIC, 8)) {
		bool blank = !h->magic[0];
		munmap((void *)h, *len);
		if (blank)
			return hm__error(-ENOENT, "process %d has not published statistics yet",
					 (int)pid);
		return hm__error(-EPROTO, "/dev/shm/hmmap.%d is not an hmmap statistics segment",
				 (int)pid);
	}
	if (h->version > HM_SNAPSHOT_VERSION) {
		uint32_t v = h->version;
		munmap((void *)h, *len);
		return hm__error(-EPROTONOSUPPORT, "the statistics segment of process %d has "
						   "version %u; this library reads version %d",
				 (int)pid, v, HM_SNAPSHOT_VERSION);
	}
	rc = seg_check(h, *len, why, sizeof why);
	if (rc) {
		munmap((void *)h, *len);
		return hm__error(rc, "/dev/shm/hmmap.%d is not a valid statistics segment: %s",
				 (int)pid, why);
	}
	if (h->pid != pid || h->start_time != proc_start_time(pid) || !maps_segment(pid)) {
		munmap((void *)h, *len);
		unlink_seg(pid);
		return hm__error(-ESTALE, "the statistics segment of process %d is stale (the "
					  "process that wrote it is gone) and was removed",
				 (int)pid);
	}
	*out = h;
	return 0;
}

int hm_snapshot_read(pid_t pid, struct hm_snapshot **out)
{
	const struct seg_header *h;
	struct hm_snapshot *snap;
	size_t len, cap;
	int rc;

	if (!out)
		return hm__error(-EINVAL, "hm_snapshot_read: NULL out-parameter");
	*out = NULL;
	if (pid <= 0)
		return hm__error(-EINVAL, "hm_snapshot_read: bad pid %d", (int)pid);
	rc = seg_open(pid, &h, &len);
	if (rc)
		return rc;
	cap = (len - h->header_size) / h->entry_size;
	if (cap > h->capacity)
		cap = h->capacity;
	snap = malloc(sizeof *snap + cap * sizeof snap->objs[0]);
	if (!snap) {
		munmap((void *)h, len);
		return hm__error(-ENOMEM, "out of memory");
	}
	rc = -EBUSY;
	for (int tries = 0; tries < 1000; tries++) {
		uint64_t s1 = atomic_load_explicit((_Atomic uint64_t *)&h->seq,
						   memory_order_acquire);
		if (s1 & 1) {
			struct timespec ts = { 0, 200 * 1000 };
			nanosleep(&ts, NULL);
			continue;
		}
		uint32_t nobjs = h->nobjs;
		if (nobjs > cap) {
			/* Checked at open; a segment rewritten since then by no publisher. */
			rc = -EPROTO;
			break;
		}
		size_t n = nobjs;
		snap->pid = h->pid;
		snap->fault_mode = h->fault_mode;
		snap->start_time = h->start_time;
		snap->updated_ns = h->updated_ns;
		snap->interval_ms = h->interval_ms;
		snap->truncated = h->truncated;
		memcpy(snap->comm, h->comm, sizeof snap->comm);
		snap->comm[sizeof snap->comm - 1] = 0;
		for (size_t i = 0; i < n; i++)
			memcpy(&snap->objs[i],
			       (const char *)h + h->header_size + i * h->entry_size,
			       sizeof snap->objs[i]);
		snap->nobjs = n;
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit((_Atomic uint64_t *)&h->seq, memory_order_relaxed) == s1) {
			rc = 0;
			break;
		}
	}
	munmap((void *)h, len);
	if (rc) {
		free(snap);
		if (rc == -EPROTO)
			return hm__error(rc, "/dev/shm/hmmap.%d is not a valid statistics segment: "
					     "more entries in use than its capacity of %zu",
					 (int)pid, cap);
		return hm__error(rc, "the statistics of process %d kept changing while read",
				 (int)pid);
	}
	for (size_t i = 0; i < snap->nobjs; i++)
		snap->objs[i].name[sizeof snap->objs[i].name - 1] = 0;
	*out = snap;
	return 0;
}

void hm_snapshot_free(struct hm_snapshot *snap)
{
	free(snap);
}

/* The pid of a segment name "hmmap.PID", or 0. */
static pid_t seg_pid_of(const char *name)
{
	char *end;
	long v;

	if (strncmp(name, "hmmap.", 6) || !name[6])
		return 0;
	v = strtol(name + 6, &end, 10);
	if (*end || v <= 0 || v > 0x7fffffff)
		return 0;
	return (pid_t)v;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

int hm_snapshot_list(pid_t **pids, size_t *count)
{
	DIR *d;
	struct dirent *de;
	pid_t *v = NULL;
	size_t n = 0, cap = 0;

	if (!pids || !count)
		return hm__error(-EINVAL, "hm_snapshot_list: NULL out-parameter");
	*pids = NULL;
	*count = 0;
	d = opendir("/dev/shm");
	if (!d)
		return hm__error_errno(-errno, "cannot list /dev/shm");
	while ((de = readdir(d))) {
		pid_t pid = seg_pid_of(de->d_name);
		const struct seg_header *h;
		size_t len;

		if (!pid || seg_open(pid, &h, &len))
			continue;
		munmap((void *)h, len);
		if (!grow((void **)&v, n, &cap, sizeof *v)) {
			closedir(d);
			free(v);
			return hm__error(-ENOMEM, "out of memory");
		}
		v[n++] = pid;
	}
	closedir(d);
	hm__error_clear();
	if (n)
		qsort(v, n, sizeof *v, cmp_pid);
	*pids = v;
	*count = n;
	return 0;
}

/* Removes the segments of processes that are gone (run when a segment is made). */
static void clean_stale(void)
{
	DIR *d;
	struct dirent *de;
	pid_t me = proc_self_pid();

	/*
	 * In a PID namespace whose /proc is not its own, kill(pid, 0) cannot
	 * see the processes /proc names: every other segment would look dead.
	 */
	if (me != getpid())
		return;
	d = opendir("/dev/shm");
	if (!d)
		return;
	while ((de = readdir(d))) {
		pid_t pid = seg_pid_of(de->d_name);
		if (pid && pid != getpid() && pid != me && !pid_alive(pid))
			unlink_seg(pid);
	}
	closedir(d);
}
