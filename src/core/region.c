/* SPDX-License-Identifier: MIT */
/*
 * Regions: mapping and unmapping, the address lookup the fault path uses,
 * and the range calls (sync, advise, prefault, stats), plus the mmap-shaped
 * hmmap()/hmunmap()/hmsync().
 *
 * A region is a shared mapping of a memfd as long as the region, registered
 * with userfaultfd. The memfd is sparse: its pages are the region's frames
 * and the cache decides which exist. The mapping is MADV_DONTFORK: a child
 * process does not inherit it (it would see frames without a fault engine,
 * and fill the parent's memfd); touching it there is SIGSEGV.
 */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/tier.h"
#include "core/direct.h"

#ifndef MFD_HUGE_2MB /* <linux/memfd.h>, which clashes with <sys/mman.h> */
#define MFD_HUGE_2MB (21u << 26)
#endif
/* <linux/mount.h>, which clashes with <sys/mount.h> */
#define THP_FSOPEN_CLOEXEC 1u
#define THP_FSCONFIG_SET_STRING 1u
#define THP_FSCONFIG_CMD_CREATE 6u
#define THP_FSMOUNT_CLOEXEC 1u
#define THP_MOUNT_ATTR_NOSUID 0x2u
#define THP_MOUNT_ATTR_NODEV 0x4u
#define THP_MOUNT_ATTR_NOEXEC 0x8u


/*
 * Frames on transparent huge pages, for regions of 2 MiB pages. A memfd
 * follows the system's shmem_enabled, which is often `never`, and then a
 * 2 MiB page is 512 frames of 4 KiB: 512 allocations, page-cache entries
 * and frees per miss and eviction. A tmpfs instance mounted with
 * huge=always gives each write() of a whole 2 MiB page one huge folio when
 * the allocator has one (and small folios when it has not, which are only
 * slower), and a hole punched over the page frees it in one step; that is
 * what the hugetlbfs frames of HM_HUGETLB give, without a reserved pool.
 * Each region has an instance of its own, never attached to a path
 * (fsmount() without move_mount()): nothing appears in the mount table,
 * no descriptor is kept but the frame file's, and the instance goes away
 * with it. It has no size limit of its own; the cache's budget is the
 * limit, as for a memfd. Making one needs CAP_SYS_ADMIN; without it, or on
 * a kernel without the new mount API, regions keep memfd frames (and the
 * first refusal is remembered).
 */
static _Atomic bool thp_refused;

/* -1, and what says this process will never have the frames is remembered. */
static int thp_refusal(int e)
{
	if (e == EPERM || e == EACCES || e == ENOSYS || e == ENODEV || e == EINVAL ||
	    e == EOPNOTSUPP)
		atomic_store_explicit(&thp_refused, true, memory_order_relaxed);
	return -1;
}

int hm__thp_tmpfile(void)
{
	int fs = (int)syscall(SYS_fsopen, "tmpfs", THP_FSOPEN_CLOEXEC), mnt = -1, fd, e;

	if (fs < 0)
		return -errno;
	if (!syscall(SYS_fsconfig, fs, THP_FSCONFIG_SET_STRING, "huge", "always", 0) &&
	    !syscall(SYS_fsconfig, fs, THP_FSCONFIG_SET_STRING, "size", "0", 0) &&
	    !syscall(SYS_fsconfig, fs, THP_FSCONFIG_SET_STRING, "nr_inodes", "0", 0) &&
	    !syscall(SYS_fsconfig, fs, THP_FSCONFIG_SET_STRING, "mode", "0700", 0) &&
	    !syscall(SYS_fsconfig, fs, THP_FSCONFIG_CMD_CREATE, NULL, NULL, 0))
		mnt = (int)syscall(SYS_fsmount, fs, THP_FSMOUNT_CLOEXEC,
				   THP_MOUNT_ATTR_NOSUID | THP_MOUNT_ATTR_NODEV | THP_MOUNT_ATTR_NOEXEC);
	e = errno;
	close(fs);
	if (mnt < 0)
		return -e;
	fd = openat(mnt, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	e = errno;
	close(mnt); /* the open file keeps the instance */
	return fd >= 0 ? fd : -e;
}

/* An unnamed file of a new huge tmpfs for r's frames, or -1 (use a memfd). */
static int thp_frames_open(const struct hm_region *r)
{
	const struct hm_env *env;
	int fd;

	if (r->ps != HM_HUGE_SIZE || (r->flags & HM_HUGETLB) || hm__env(&env) ||
	    !env->thp_frames || atomic_load_explicit(&thp_refused, memory_order_relaxed))
		return -1;
	fd = hm__thp_tmpfile();
	return fd >= 0 ? fd : thp_refusal(-fd);
}

/* All regions, sorted by base address. */
static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct hm_region **table;
static size_t ntable, table_cap;
static _Atomic uint32_t next_id = 1;

static size_t table_pos(uintptr_t addr)
{
	size_t lo = 0, hi = ntable;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if ((uintptr_t)table[mid]->base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo; /* first region with base > addr */
}

static struct hm_region *table_find(uintptr_t addr)
{
	size_t pos = table_pos(addr);
	struct hm_region *r;

	if (!pos)
		return NULL;
	r = table[pos - 1];
	return addr < (uintptr_t)r->base + r->span ? r : NULL;
}

struct hm_region *hm__region_get(uintptr_t addr)
{
	struct hm_region *r;

	pthread_rwlock_rdlock(&table_lock);
	r = table_find(addr);
	if (r)
		hm__region_hold(r);
	pthread_rwlock_unlock(&table_lock);
	return r;
}

void hm__region_hold(struct hm_region *r)
{
	atomic_fetch_add_explicit(&r->ctr.s[hm__shard()].refs, 1, memory_order_acq_rel);
}

void hm__region_put(struct hm_region *r)
{
	atomic_fetch_sub_explicit(&r->ctr.s[hm__shard()].refs, 1, memory_order_acq_rel);
}

/*
 * References are spread over the shards (a prefetch may take one on one
 * shard and drop it on another), so only the sum means anything. After the
 * region left the table, new references come only from holders of one, so
 * a sum of zero, seen twice, means none is left.
 */
static bool region_idle(struct hm_region *r)
{
	for (int pass = 0; pass < 2; pass++) {
		int64_t sum = 0;
		for (int i = 0; i < HM_SHARDS; i++)
			sum += atomic_load(&r->ctr.s[i].refs);
		if (sum)
			return false;
	}
	return true;
}

struct hm_region *hm_region_find(const void *addr)
{
	struct hm_region *r;

	pthread_rwlock_rdlock(&table_lock);
	r = table_find((uintptr_t)addr);
	pthread_rwlock_unlock(&table_lock);
	return r;
}

static int table_insert(struct hm_region *r)
{
	size_t pos;

	pthread_rwlock_wrlock(&table_lock);
	if (ntable == table_cap) {
		size_t cap = table_cap ? table_cap * 2 : 16;
		struct hm_region **t = realloc(table, cap * sizeof *t);
		if (!t) {
			pthread_rwlock_unlock(&table_lock);
			return hm__error(-ENOMEM, "out of memory");
		}
		table = t;
		table_cap = cap;
	}
	pos = table_pos((uintptr_t)r->base);
	memmove(&table[pos + 1], &table[pos], (ntable - pos) * sizeof *table);
	table[pos] = r;
	ntable++;
	pthread_rwlock_unlock(&table_lock);
	return 0;
}

static void table_remove(struct hm_region *r)
{
	pthread_rwlock_wrlock(&table_lock);
	for (size_t i = 0; i < ntable; i++) {
		if (table[i] == r) {
			memmove(&table[i], &table[i + 1], (ntable - i - 1) * sizeof *table);
			ntable--;
			break;
		}
	}
	pthread_rwlock_unlock(&table_lock);
}

/*
 * At a normal exit (exit(), or a return from main) every writable region
 * of a store that holds the user's data (HM_PROP_SHARED: a file: or pmem:
 * store, on tmpfs too, where it is not persistent but still the user's
 * file) is synced, as the kernel keeps what a program
 * stored into a MAP_SHARED mapping when it exits: code ported from mmap
 * that never calls msync() must not lose its writes. Every fault trace
 * still open is written out and closed too (trace.c), as stdio flushes its
 * buffers. Only the process that mapped the regions does it (a forked
 * child forgets the parent's and syncs its own), and a failure is said on
 * stderr, since exit has nobody to return it to. _exit() and a fatal
 * signal skip it, as they skip stdio's buffers.
 */
static pid_t exit_pid;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static bool exit_syncs(const struct hm_region *r)
{
	return (r->prot & PROT_WRITE) && (r->store->info.props & HM_PROP_SHARED);
}

static void region_at_exit(void)
{
	struct hm_region **rs;
	size_t n = 0;

	if (getpid() != exit_pid)
		return;
	pthread_rwlock_rdlock(&table_lock);
	rs = ntable ? malloc(ntable * sizeof *rs) : NULL;
	for (size_t i = 0; rs && i < ntable; i++) {
		struct hm_region *r = table[i];
		if (exit_syncs(r) || atomic_load(&r->trace)) {
			hm__region_hold(r);
			rs[n++] = r;
		}
	}
	pthread_rwlock_unlock(&table_lock);
	for (size_t i = 0; i < n; i++) {
		int rc = exit_syncs(rs[i]) ? hm_sync(rs[i]->base, rs[i]->length, MS_SYNC) : 0;
		if (rc)
			fprintf(stderr, "hmmap: at exit, the writes to '%s' could not all be written "
					"back: %s\n",
				rs[i]->store->uri, hm_errormsg());
		hm__trace_region_exit(rs[i]);
		hm__region_put(rs[i]);
	}
	free(rs);
}

static void exit_register(void)
{
	exit_pid = getpid();
	atexit(region_at_exit);
}

/*
 * fork(): the child inherits no region mapping (MADV_DONTFORK; hybrid.c
 * unmaps hybrid ones), but it does inherit the regions' frame files. They
 * are closed, so that the parent's frames do not live on in the child; the
 * regions themselves are forgotten, not freed (fork.c).
 */
void hm__region_fork(int phase)
{
	switch (phase) {
	case HM_FORK_PREPARE:
		pthread_rwlock_wrlock(&table_lock);
		break;
	case HM_FORK_PARENT:
		pthread_rwlock_unlock(&table_lock);
		break;
	case HM_FORK_CHILD:
		for (size_t i = 0; i < ntable; i++)
			if (table[i]->memfd >= 0)
				close(table[i]->memfd);
		ntable = 0;
		hm__fork_released(&table_lock);
		pthread_rwlock_init(&table_lock, NULL);
		/* The exit handler came along: it syncs the child's own regions now. */
		if (exit_pid)
			exit_pid = getpid();
		break;
	}
}

static void teardown(struct hm_region *r)
{
	hm__trace_region_end(r); /* a map that failed after its trace began */
	hm__bam_teardown(r);
	if (r->base && r->base != MAP_FAILED) {
		hm__uffd_unregister(r->base, r->span);
		munmap(r->base, r->span);
	}
	if (r->view)
		munmap(r->view, r->span);
	if (r->memfd >= 0)
		close(r->memfd);
	hm__pages_free(r);
	pthread_mutex_destroy(&r->sync_lock);
	pthread_mutex_destroy(&r->harvest_lock);
	pthread_mutex_destroy(&r->holes_lock);
	free(r->holes);
	free(r);
}

int hm__region_view(struct hm_region *r)
{
	r->view = mmap(NULL, r->span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, r->memfd,
		       0);
	if (r->view == MAP_FAILED) {
		r->view = NULL;
		return hm__error_errno(-errno, "mmap of %zu bytes", r->span);
	}
	madvise(r->view, r->span, MADV_DONTFORK);
	if (!(r->flags & HM_HUGETLB))
		madvise(r->view, r->span, MADV_NOHUGEPAGE);
	return 0;
}

/*
 * HM_HUGETLB: the pool must have room for what the region can hold at once
 * (bytes), or its faults would fail as soon as they find it empty.
 */
static int hugetlb_check(uint64_t bytes)
{
	const char *path = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
	uint64_t need = (bytes + HM_HUGE_SIZE - 1) / HM_HUGE_SIZE;
	unsigned long long avail = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return hm__error(-ENOTSUP, "HM_HUGETLB: this kernel has no 2 MiB huge page pool "
					   "(%s: %s)", path, strerror(errno));
	if (fscanf(f, "%llu", &avail) != 1)
		avail = 0;
	fclose(f);
	if (avail < need)
		return hm__error(-ENOMEM, "HM_HUGETLB: the huge page pool has %llu free 2 MiB "
					  "pages; this region needs %llu (raise vm.nr_hugepages)",
				 avail, (unsigned long long)need);
	return 0;
}

int hm_region_map(struct hm_region **out, struct hm_cache *c, struct hm_store *s,
		  uint64_t offset, size_t length, int prot, int flags, size_t page_size)
{
	return hm__region_map(out, c, s, offset, length, prot, flags, page_size, NULL);
}

/*
 * The checks of a map's own arguments (flags without HM_HUGETLB, which is
 * `huge`); *page_size 0 becomes HMMAP_PAGE_SIZE. hmmap() makes them before
 * it creates the default cache, so that a bad call changes nothing.
 */
static int check_args(int flags, bool huge, int prot, size_t length, uint64_t offset,
		      size_t *page_size)
{
	const struct hm_env *env;
	int rc;

	if (flags != HM_CACHED && flags != HM_DIRECT && flags != HM_HYBRID)
		return hm__error(-EINVAL, "exactly one mode flag is needed (HM_CACHED, HM_DIRECT or "
					  "HM_HYBRID)");
	if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC))
		return hm__error(-EINVAL, "unknown prot bits %#x", prot);
	if (!(prot & PROT_READ))
		return hm__error(-EINVAL, "prot must include PROT_READ");
	if (length == 0)
		return hm__error(-EINVAL, "length is zero");
	rc = hm__env(&env);
	if (rc)
		return rc;
	if (!*page_size)
		*page_size = env->page_size;
	if (*page_size < 4096 || *page_size > (2u << 20) || (*page_size & (*page_size - 1)))
		return hm__error(-EINVAL, "page size %zu is not a power of two from 4K to 2M",
				 *page_size);
	if (huge && (flags != HM_CACHED || *page_size != HM_HUGE_SIZE))
		return hm__error(-EINVAL, "HM_HUGETLB needs HM_CACHED and 2 MiB pages (page size "
					  "%zu)", *page_size);
	if (offset & (*page_size - 1))
		return hm__error(-EINVAL, "offset %llu is not a multiple of the page size %zu",
				 (unsigned long long)offset, *page_size);
	return 0;
}

int hm__region_map(struct hm_region **out, struct hm_cache *c, struct hm_store *s,
		   uint64_t offset, size_t length, int prot, int flags, size_t page_size, void *hint)
{
	const struct hm_engine_info *info;
	const struct hm_env *env;
	struct hm_region *r;
	char name[64];
	bool huge;
	int rc;

	if (out)
		*out = NULL;
	if (!out || !c || !s)
		return hm__error(-EINVAL, "hm_region_map: NULL argument");
	if (flags & ~(HM_CACHED | HM_DIRECT | HM_HYBRID | HM_HUGETLB))
		return hm__error(-EINVAL, "unknown map flags %#x",
				 flags & ~(HM_CACHED | HM_DIRECT | HM_HYBRID | HM_HUGETLB));
	huge = flags & HM_HUGETLB;
	flags &= ~HM_HUGETLB;
	/* A store that cannot be mapped is the first thing to say about HM_DIRECT/HM_HYBRID. */
	if (flags & (HM_DIRECT | HM_HYBRID)) {
		rc = hm__bam_check(s, flags & HM_DIRECT ? HM_DIRECT : HM_HYBRID, prot);
		if (rc)
			return rc;
	}
	rc = check_args(flags, huge, prot, length, offset, &page_size);
	if (rc)
		return rc;
	rc = hm__env(&env);
	if (rc)
		return rc;
	if (length > (1ull << 46) || offset > (1ull << 62))
		return hm__error(-EOVERFLOW, "length or offset too large");
	if ((prot & PROT_WRITE) && (s->info.props & HM_PROP_READONLY))
		return hm__error(-EACCES, "store '%s' is read-only; map it PROT_READ", s->uri);
	if (!(s->info.props & HM_PROP_RESIZABLE) && (prot & PROT_WRITE) &&
	    offset + length > s->info.size)
		return hm__error(-EINVAL, "range %llu+%zu is past the end of store '%s' (%llu bytes)",
				 (unsigned long long)offset, length, s->uri,
				 (unsigned long long)s->info.size);
	if ((uint64_t)page_size > hm__budget(c))
		return hm__error(-EINVAL, "page size %zu is larger than the cache budget %llu",
				 page_size, (unsigned long long)hm__budget(c));
	/* Direct and hybrid regions take no userfaultfd faults: they map without it. */
	rc = flags == HM_CACHED ? hm__engine_start(&info) : 0;
	if (rc)
		return rc;
	if (flags == HM_CACHED && (prot & PROT_WRITE) && !(info->features & HM_FEAT_WP_SHMEM))
		return hm__error(-ENOTSUP, "this kernel cannot write-protect shmem through "
					   "userfaultfd (Linux 5.19 or later); writable regions need it");
	if (huge) {
		if (!(info->features & HM_FEAT_HUGETLB))
			return hm__error(-ENOTSUP, "HM_HUGETLB: this kernel lacks userfaultfd on "
						   "hugetlbfs");
		rc = hugetlb_check(length < hm__budget(c) ? length : hm__budget(c));
		if (rc)
			return rc;
	}

	/* Aligned for the counter shards, one cache line each. */
	if (posix_memalign((void **)&r, 64, sizeof *r))
		r = NULL;
	else
		memset(r, 0, sizeof *r);
	if (!r)
		return hm__error(-ENOMEM, "out of memory");
	r->memfd = -1;
	pthread_mutex_init(&r->sync_lock, NULL);
	pthread_mutex_init(&r->harvest_lock, NULL);
	pthread_mutex_init(&r->holes_lock, NULL);
	r->ps = page_size;
	r->ps_shift = (unsigned)__builtin_ctzll(page_size);
	r->length = length;
	r->span = (length + page_size - 1) & ~(page_size - 1);
	r->npages = r->span >> r->ps_shift;
	r->offset = offset;
	r->wb_limit = offset + length;
	r->prot = prot;
	r->flags = flags | (huge ? HM_HUGETLB : 0);
	r->wp = prot & PROT_WRITE;
	r->store = s;
	r->cache = c;
	r->hint = hint;
	r->id = atomic_fetch_add(&next_id, 1) & 0xffffff;
	atomic_store(&r->advice, HM_ADV_NORMAL);
	r->ndir = (size_t)((r->npages + HM_CHUNK_PAGES - 1) >> HM_CHUNK_SHIFT);
	r->dir = mmap(NULL, r->ndir * sizeof *r->dir, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->dir == MAP_FAILED) {
		r->dir = NULL;
		rc = hm__error(-ENOMEM, "cannot allocate the page directory");
		goto fail;
	}
	if (flags != HM_CACHED) {
		rc = hm__bam_map(r);
		if (rc)
			goto fail;
		goto mapped;
	}
	snprintf(name, sizeof name, "hmmap-%u", r->id);
	r->memfd = thp_frames_open(r);
	r->thp = r->memfd >= 0;
	if (!r->thp)
		r->memfd = memfd_create(name, MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
	if (r->memfd < 0) {
		rc = hm__error_errno(-errno, "memfd_create");
		goto fail;
	}
	if (ftruncate(r->memfd, (off_t)r->span) < 0) {
		rc = hm__error_errno(-errno, "ftruncate(memfd, %zu)", r->span);
		goto fail;
	}
	/* NORESERVE: hugetlbfs would otherwise reserve huge pages for the whole span. */
	r->base = mmap(r->hint, r->span, prot, MAP_SHARED | MAP_NORESERVE, r->memfd, 0);
	if (r->base == MAP_FAILED) {
		r->base = NULL;
		rc = hm__error_errno(-errno, "mmap of %zu bytes", r->span);
		goto fail;
	}
	if (huge) {
		/* hugetlbfs has no write(): frames without a mapping are filled here. */
		rc = hm__region_view(r);
		if (rc)
			goto fail;
	} else {
		/* Single-page frames whatever shmem_enabled says; khugepaged leaves them. */
		madvise(r->base, r->span, MADV_NOHUGEPAGE);
	}
	madvise(r->base, r->span, MADV_DONTFORK);
	rc = hm__uffd_register(r->base, r->span, r->wp);
	if (rc)
		goto fail;
mapped:
	rc = hm__trace_region_start(r);
	if (rc)
		goto fail;
	rc = hm__tier_attach(r); /* a chain starts its tiering engine */
	if (rc)
		goto fail;
	rc = table_insert(r);
	if (rc) {
		hm__tier_detach(r);
		goto fail;
	}
	pthread_once(&exit_once, exit_register);
	pthread_mutex_lock(&c->lock);
	c->nregions++;
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add(&s->maps, 1);
	hm__prefetch_start();
	hm__stats_region_add(r);
	*out = r;
	return 0;
fail:
	teardown(r);
	return rc;
}

int hm_region_unmap(struct hm_region *r)
{
	int rc;

	if (!r)
		return hm__error(-EINVAL, "hm_region_unmap: NULL region");
	/* hmmap()'s own tier chain closes with it: anonymous pages are dropped. */
	bool drop = hm__tier_detach(r);
	/* The bindings go with the mapping: the pages go down by the chain's order. */
	if (!drop)
		hm__tier_unbind(r, 0, r->npages);
	rc = drop ? 0 : hm__region_sync(r, 0, r->npages, true);
	if (rc)
		return rc;
	table_remove(r);
	while (!region_idle(r))
		sched_yield();
	/* Anything written between the first sync and the removal. */
	rc = drop ? 0 : hm__region_sync(r, 0, r->npages, true);
	if (rc) {
		table_insert(r);
		return rc;
	}
	hm__stats_region_del(r);
	hm__cache_detach(r->cache, r);
	hm__trace_region_end(r);
	atomic_fetch_sub(&r->store->maps, 1);
	if (r->own_store)
		hm_store_close(r->store);
	teardown(r);
	return 0;
}

void *hm_region_addr(const struct hm_region *r)
{
	return r ? r->base : NULL;
}

size_t hm_region_length(const struct hm_region *r)
{
	return r ? r->length : 0;
}

size_t hm_region_page_size(const struct hm_region *r)
{
	return r ? r->ps : 0;
}

struct hm_store *hm_region_store(const struct hm_region *r)
{
	return r ? r->store : NULL;
}

struct hm_cache *hm_region_cache(const struct hm_region *r)
{
	return r ? r->cache : NULL;
}

/*
 * Calls fn(r, first_page, npages, ctx) for each region piece of
 * [addr, addr+len). Fails with -ENOMEM if part of the range is not mapped by
 * hmmap (as msync does), before doing anything.
 */
static int for_range(void *addr, size_t len, int (*fn)(struct hm_region *, uint64_t, uint64_t, void *),
		     void *ctx, const char *what)
{
	uintptr_t a = (uintptr_t)addr, end;
	int err = 0;

	if (a & 4095)
		return hm__error(-EINVAL, "%s: address %p is not page-aligned", what, addr);
	if (len == 0)
		return 0;
	if (a + len < a)
		return hm__error(-EINVAL, "%s: range wraps around", what);
	end = a + len;
	/* Check the whole range first: change nothing on bad input. */
	for (uintptr_t cur = a; cur < end;) {
		struct hm_region *r = hm_region_find((void *)cur);
		if (!r)
			return hm__error(-ENOMEM, "%s: %p is not in an hmmap region", what,
					 (void *)cur);
		if (hm__region_holed_at(r, cur, end))
			return hm__error(-ENOMEM, "%s: part of %p+%zu was unmapped by hmunmap()",
					 what, addr, len);
		cur = (uintptr_t)r->base + r->span;
	}
	for (uintptr_t cur = a; cur < end;) {
		struct hm_region *r = hm__region_get(cur);
		if (!r)
			return hm__error(-ENOMEM, "%s: %p was unmapped meanwhile", what, (void *)cur);
		uintptr_t rend = (uintptr_t)r->base + r->span;
		uintptr_t stop = end < rend ? end : rend;
		uint64_t first = (cur - (uintptr_t)r->base) >> r->ps_shift;
		uint64_t last = (stop - 1 - (uintptr_t)r->base) >> r->ps_shift;
		int rc = fn(r, first, last - first + 1, ctx);
		hm__region_put(r);
		if (rc && !err)
			err = rc;
		cur = rend;
	}
	return err;
}

static int do_sync(struct hm_region *r, uint64_t idx, uint64_t n, void *ctx)
{
	int flags = *(int *)ctx;
	if (r->bam)
		return hm__bam_sync(r, idx, n, flags);
	/*
	 * Anonymous memory over a tier chain has nothing to make durable, as
	 * msync(2) of MAP_ANONYMOUS memory: writing its dirty pages down while
	 * they stay resident would put them in two tiers at once.
	 * MS_INVALIDATE still drops the range, which writes them down.
	 */
	bool chain = hm__chain_of(r->store);
	int rc = chain ? 0 : hm__region_sync(r, idx, n, flags & MS_SYNC);

	if (!rc && (flags & MS_INVALIDATE)) {
		hm__readahead_cancel(r);
		rc = hm__cache_drop_range(r->cache, r, idx, n, false);
	}
	return rc;
}

int hm_sync(void *addr, size_t length, int flags)
{
	if (flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE))
		return hm__error(-EINVAL, "hm_sync: unknown flags %#x", flags);
	if ((flags & MS_ASYNC) && (flags & MS_SYNC))
		return hm__error(-EINVAL, "hm_sync: MS_ASYNC and MS_SYNC together");
	return for_range(addr, length, do_sync, &flags, "hm_sync");
}

static int do_advise(struct hm_region *r, uint64_t idx, uint64_t n, void *ctx)
{
	int advice = *(int *)ctx;
	int rc;

	if (r->bam)
		return hm__bam_advise(r, idx, n, advice);
	switch (advice) {
	case HM_ADV_NORMAL:
	case HM_ADV_RANDOM:
	case HM_ADV_SEQUENTIAL:
	case HM_ADV_NOREUSE:
		/*
		 * Readahead advice applies to the whole region. A region over
		 * a tier chain keeps readahead off (hm__tier_attach()):
		 * neighbouring anonymous pages are not a stream, and a window
		 * read in the background would bring back up pages that
		 * hm_move() or hm_bind() has just sent down.
		 */
		if (!hm__chain_of(r->store))
			atomic_store(&r->advice, advice);
		return 0;
	case HM_ADV_WILLNEED: {
		/* Within half the budget, so a hint cannot flush the cache. */
		uint64_t cap = (hm__budget(r->cache) / 2) >> r->ps_shift;
		if (n > cap)
			n = cap ? cap : 1;
		return hm__populate(r, idx, n, false, false);
	}
	case HM_ADV_DONTNEED:
		/*
		 * Over a tier chain the drop below writes the dropped pages
		 * down; a sync first would also write down the pages it keeps
		 * (pinned: DRAM bindings, hot pages), which then sit in DRAM
		 * and in a lower tier at once.
		 */
		rc = hm__chain_of(r->store) ? 0 : hm__region_sync(r, idx, n, false);
		if (rc)
			return rc;
		hm__readahead_cancel(r);
		return hm__cache_drop_range(r->cache, r, idx, n, false);
	}
	return hm__error(-EINVAL, "unknown advice %d", advice);
}

int hm_advise(void *addr, size_t length, int advice)
{
	_Static_assert(HM_ADV_NORMAL == MADV_NORMAL && HM_ADV_RANDOM == MADV_RANDOM &&
			       HM_ADV_SEQUENTIAL == MADV_SEQUENTIAL &&
			       HM_ADV_WILLNEED == MADV_WILLNEED && HM_ADV_DONTNEED == MADV_DONTNEED,
		       "hm_advise() takes madvise()'s values");
	if ((advice < HM_ADV_NORMAL || advice > HM_ADV_DONTNEED) && advice != HM_ADV_NOREUSE)
		return hm__error(-EINVAL, "hm_advise: unknown advice %d", advice);
	return for_range(addr, length, do_advise, &advice, "hm_advise");
}

/*
 * With synchronous write tracking a resident page is write-protected until
 * its first write faults; a system call that writes into it (read(2)) would
 * take that fault in the kernel, which an unprivileged or sigbus-mode
 * process cannot serve. A prefault is a promise that system calls work, so
 * the pages are opened for writing now and counted dirty (they may be
 * written behind hmmap's back). Asynchronous tracking needs none of this:
 * the kernel resolves such a write by itself.
 */
static int open_for_kernel_writes(struct hm_region *r, uint64_t idx, uint64_t n)
{
	const struct hm_engine_info *info;
	int rc = hm__engine_start(&info);

	if (rc || info->wp_async)
		return rc;
	for (uint64_t i = idx; i < idx + n; i++) {
		struct hm_page *p = hm__page(r, i, false);
		if (!p || (atomic_load(&p->st) & HM_ST_MASK) != HM_ST_RESIDENT)
			continue;
		atomic_fetch_or(&p->st, HM_PG_DIRTY);
		rc = hm__uffd_writeprotect(r->base + (i << r->ps_shift), r->ps, false);
		if (rc)
			return hm__error_errno(rc, "UFFDIO_WRITEPROTECT");
	}
	return 0;
}

static int do_prefault(struct hm_region *r, uint64_t idx, uint64_t n, void *ctx)
{
	bool pin = *(int *)ctx & HM_PREFAULT_PIN;
	uint8_t *was = NULL;
	int rc;

	if (r->bam)
		return hm__bam_prefault(r, idx, n, *(int *)ctx);
	if ((n << r->ps_shift) > hm__budget(r->cache))
		return hm__error(-ENOMEM, "%s of %llu bytes exceeds the cache budget",
				 pin ? "pinning" : "prefault",
				 (unsigned long long)(n << r->ps_shift));
	if (pin && (n << r->ps_shift) > hm__cache_pin_limit(r->cache, r->ps))
		return hm__error(-ENOMEM, "pinning %llu bytes would leave faults no room in the "
					  "cache budget of %llu bytes (pins may hold %llu)",
				 (unsigned long long)(n << r->ps_shift),
				 (unsigned long long)hm__budget(r->cache),
				 (unsigned long long)hm__cache_pin_limit(r->cache, r->ps));
	if (pin) {
		/* Remember what was pinned already: a failed pin undoes only its own. */
		was = calloc((size_t)(n + 7) / 8, 1);
		if (!was)
			return hm__error(-ENOMEM, "out of memory");
		for (uint64_t i = 0; i < n; i++) {
			struct hm_page *p = hm__page(r, idx + i, false);
			if (p && (atomic_load(&p->st) & HM_PG_PINNED))
				was[i / 8] |= (uint8_t)(1u << (i % 8));
		}
	}
	rc = hm__populate(r, idx, n, pin, true);
	if (!rc && r->wp)
		rc = open_for_kernel_writes(r, idx, n);
	if (rc && pin) {
		for (uint64_t i = 0; i < n; i++)
			if (!(was[i / 8] & (1u << (i % 8))))
				hm__cache_unpin(r->cache, r, idx + i);
	}
	free(was);
	return rc;
}

int hm_prefault(void *addr, size_t length, int flags)
{
	if (flags & ~HM_PREFAULT_PIN)
		return hm__error(-EINVAL, "hm_prefault: unknown flags %#x", flags);
	if (length == 0)
		return hm__error(-EINVAL, "hm_prefault: length is zero");
	return for_range(addr, length, do_prefault, &flags, "hm_prefault");
}

static int do_unpin(struct hm_region *r, uint64_t idx, uint64_t n, void *ctx)
{
	if (r->bam)
		return hm__bam_unpin(r, idx, n);
	hm__unpin_range(r, idx, n);
	return 0;
}

int hm_unpin(void *addr, size_t length)
{
	return for_range(addr, length, do_unpin, NULL, "hm_unpin");
}

void hm__region_stats_fill(const struct hm_region *r, struct hm_stats *s)
{
	memset(s, 0, sizeof *s);
	hm__stats_fill(&r->ctr, s);
	s->resident_bytes = atomic_load(&r->resident_pages) << r->ps_shift;
	s->pinned_pages = atomic_load(&r->pinned_pages);
	if (r->bam && r->bam->hybrid)
		s->pinned_pages += hm__hybrid_pinned(r);
	s->budget_bytes = hm__budget(r->cache);
}

int hm_region_stats(const struct hm_region *r, struct hm_stats *s)
{
	if (!r || !s)
		return hm__error(-EINVAL, "hm_region_stats: NULL argument");
	hm__region_stats_fill(r, s);
	s->dirty_pages = hm__region_dirty(r);
	return 0;
}

/* ---- the mmap-shaped calls ---- */

void *hmmap(void *addr, size_t length, int prot, int flags, const char *uri, off_t offset)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	int rc, mode;

	hm__error_clear();
	if (!uri) {
		rc = hm__error(-EINVAL, "hmmap: NULL uri");
		goto fail;
	}
	if ((uintptr_t)addr & 4095) {
		rc = hm__error(-EINVAL, "hmmap: address %p is not page-aligned", addr);
		goto fail;
	}
	if (offset < 0) {
		rc = hm__error(-EINVAL, "hmmap: negative offset");
		goto fail;
	}
	if (length == 0) {
		rc = hm__error(-EINVAL, "hmmap: length is zero");
		goto fail;
	}
	if (flags & ~(HM_CACHED | HM_DIRECT | HM_HYBRID | HM_HUGETLB)) {
		rc = hm__error(-EINVAL, "hmmap: unknown flags %#x", flags);
		goto fail;
	}
	/* What holds for every store, before one is opened (pmem: may create its file). */
	mode = flags & ~HM_HUGETLB;
	if (mode != HM_CACHED && mode != HM_DIRECT && mode != HM_HYBRID) {
		rc = hm__error(-EINVAL, "hmmap: exactly one mode flag is needed (HM_CACHED, "
					"HM_DIRECT or HM_HYBRID)");
		goto fail;
	}
	if (offset & 4095) {
		rc = hm__error(-EINVAL, "hmmap: offset %lld is not page-aligned", (long long)offset);
		goto fail;
	}
	/*
	 * The store and the arguments first: a call that fails on them must
	 * not have made the default cache (its threads and mappings) either.
	 */
	rc = hm_store_open(&s, uri, (prot & PROT_WRITE) ? 0 : HM_STORE_RDONLY);
	if (rc)
		goto fail;
	c = NULL;
	rc = hm__tier_pick_cache(s, &c); /* a chain brings its DRAM tier */
	if (!rc && !c) {
		size_t ps = 0;
		/* hm__region_map() says first what a direct, hybrid or huge map needs. */
		if (!(flags & (HM_DIRECT | HM_HYBRID | HM_HUGETLB)))
			rc = check_args(flags, false, prot, length, (uint64_t)offset, &ps);
		if (!rc)
			rc = hm_cache_default(&c);
	}
	if (!rc)
		rc = hm__region_map(&r, c, s, (uint64_t)offset, length, prot, flags, 0, addr);
	if (rc) {
		hm__store_discard(s);
		goto fail;
	}
	r->own_store = true;
	return r->base;
fail:
	errno = -rc;
	return MAP_FAILED;
}

/*
 * The region, held, with the lowest base whose pages meet [a, end), or
 * NULL.
 */
static struct hm_region *region_from(uintptr_t a, uintptr_t end)
{
	struct hm_region *r = NULL;

	pthread_rwlock_rdlock(&table_lock);
	size_t pos = table_pos(a);
	if (pos && a < (uintptr_t)table[pos - 1]->base + table[pos - 1]->span)
		r = table[pos - 1];
	else if (pos < ntable && (uintptr_t)table[pos]->base < end)
		r = table[pos];
	if (r)
		hm__region_hold(r);
	pthread_rwlock_unlock(&table_lock);
	return r;
}

/* r's pages [*first, *first + *n) within [a, end), rounded out to whole region pages. */
static void region_part(const struct hm_region *r, uintptr_t a, uintptr_t end, uint64_t *first,
			uint64_t *n, bool *aligned)
{
	uintptr_t base = (uintptr_t)r->base, rend = base + r->span;
	uintptr_t from = a > base ? a : base, to = end < rend ? end : rend;

	*aligned = !((from - base) & (r->ps - 1));
	*first = (from - base) >> r->ps_shift;
	*n = ((to - base + r->ps - 1) >> r->ps_shift) - *first;
}

/*
 * As munmap(2): the range may cover parts of regions, whole regions and
 * memory that is not mapped (ignored); pages already unmapped are no error.
 * Each region part is checked before anything is unmapped.
 */
int hmunmap(void *addr, size_t length)
{
	uintptr_t a = (uintptr_t)addr, end;
	struct hm_region *r;
	uint64_t first, n;
	bool aligned, any = false;
	int rc = 0;

	if (a & 4095)
		rc = hm__error(-EINVAL, "hmunmap: address %p is not page-aligned", addr);
	else if (length == 0)
		rc = hm__error(-EINVAL, "hmunmap: length is zero");
	else if (length > UINTPTR_MAX - a - 4095)
		rc = hm__error(-EINVAL, "hmunmap: range %p+%zu wraps around", addr, length);
	if (rc) {
		errno = EINVAL;
		return -1;
	}
	end = a + ((length + 4095) & ~(size_t)4095);
	for (uintptr_t cur = a; cur < end && (r = region_from(cur, end)); ) {
		region_part(r, cur, end, &first, &n, &aligned);
		if (!aligned)
			rc = hm__error(-EINVAL, "hmunmap: %p is not aligned to the region's %zu-byte "
						"pages",
				       addr, r->ps);
		cur = (uintptr_t)r->base + r->span;
		hm__region_put(r);
		if (rc) {
			errno = EINVAL;
			return -1;
		}
		any = true;
	}
	if (!any) {
		hm__error(-EINVAL, "hmunmap: %p+%zu is not in an hmmap region", addr, length);
		errno = EINVAL;
		return -1;
	}
	/*
	 * Every cached part written back first: a write-back that fails then
	 * leaves the whole range mapped, as promised, not just the piece it
	 * failed in (the pieces and regions before it would be gone). The
	 * unmap below writes back again what was written since.
	 */
	for (uintptr_t cur = a; cur < end && !rc && (r = region_from(cur, end)); ) {
		region_part(r, cur, end, &first, &n, &aligned);
		cur = (uintptr_t)r->base + r->span;
		if (!r->bam && !hm__chain_of(r->store) && (rc = hm__region_sync(r, first, n, false)))
			rc = hm__error_wrap(rc, "hmunmap: writing back the range failed");
		hm__region_put(r);
	}
	for (uintptr_t cur = a; cur < end && !rc && (r = region_from(cur, end)); ) {
		region_part(r, cur, end, &first, &n, &aligned);
		cur = (uintptr_t)r->base + r->span;
		if (n - hm__region_hole_pages(r, first, n) == r->npages - hm__region_gone_pages(r)) {
			/* All that is left of it: the region goes. */
			hm__region_put(r);
			rc = hm_region_unmap(r);
			continue;
		}
		for (uint64_t i = first, k; !rc && hm__region_next_piece(r, &i, first + n, &k);
		     i += k)
			rc = hm__region_punch(r, i, k);
		hm__region_put(r);
	}
	if (rc) {
		errno = -rc;
		return -1;
	}
	return 0;
}

int hmsync(void *addr, size_t length, int flags)
{
	int rc = hm_sync(addr, length, flags);

	if (rc) {
		errno = -rc;
		return -1;
	}
	return 0;
}
