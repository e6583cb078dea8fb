/* SPDX-License-Identifier: MIT */
/*
 * Hybrid regions (HM_HYBRID): the medium mapped read-only, and written
 * pages moved into DRAM.
 *
 * The region starts as a read-only shared mapping of the medium, so reads
 * run at the medium's speed with no fault. The first write to a page takes
 * SIGSEGV (an access error on a read-only mapping), and hmmap's handler, in
 * the faulting thread, moves that page into DRAM: it copies the page from
 * the medium into a frame (a page of the region's memfd, at the page's own
 * offset) and maps the frame over the page, writable, with mmap(MAP_FIXED),
 * which replaces the medium's mapping of that one page atomically for the
 * other threads (it runs under the mmap write lock; a concurrent access
 * waits and then sees the frame). The write is then retried and lands in
 * DRAM. Other pages stay direct.
 *
 * Write-back (when the bounded set of held pages is full and a new page
 * needs a frame, and at hmsync or unmap): the page is made read-only first
 * (mprotect, which shoots down every CPU's writable TLB entry, so no write
 * can land in the frame after it), copied back into the medium, and the
 * medium is mapped over it again (MAP_FIXED, read-only); then the frame is
 * freed. A write in the meantime faults, waits for the write-back to end,
 * and moves the page in again from the medium, which by then holds its data.
 *
 * Why not userfaultfd: its write-protect faults on a file mapping that is
 * not shmem are asynchronous only (no message to serve), and MINOR faults
 * need shmem or hugetlbfs; a read-only mapping and SIGSEGV work for every
 * medium that can be mapped, DAX files and device-DAX included.
 *
 * The bound. Each held page splits the region's mapping: the frame is one
 * mapping between two pieces of the medium (neighbouring frames merge, as
 * they are contiguous in the memfd, and so do the medium's pieces). The
 * kernel allows vm.max_map_count mappings per process (65530 by default),
 * so all hybrid regions of a process together hold at most a quarter of it
 * (16382 pages, 64 MiB of 4 KiB pages, by default), leaving the rest to the
 * program; each region reserves its share at map time: min(its cache's
 * budget / page size, what is left of the quarter). A region that would get
 * nothing fails to map with ENOMEM. Victims are chosen by CLOCK over the
 * held set.
 *
 * Every call here may run inside the SIGSEGV handler: only system calls
 * (mmap, mprotect, pread/pwrite, fallocate, futex) and atomics, no malloc,
 * and no lock that a thread could hold while it touches region memory.
 */
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/direct.h"

/* Per page: state in the low bits, flags, and the held page's slot above. */
#define HY_DIRECT 0u
#define HY_LOADING 1u
#define HY_HELD 2u
#define HY_EVICTING 3u
#define HY_STATE 3u
#define HY_PINNED (1u << 2)
#define HY_RO (1u << 3)      /* hm_protect: a write is the application's SIGSEGV */
#define HY_WAITERS (1u << 4)
#define HY_GONE (1u << 5)    /* unmapped (hmunmap of a part): never taken again */
#define HY_SLOT_SHIFT 8

struct hm_hybrid {
	_Atomic uint32_t *st;    /* one word per page (a NORESERVE mapping) */
	size_t st_len;
	uint64_t npages;         /* pages backed by the medium */
	uint32_t cap;            /* pages held at most */
	_Atomic uint32_t spin;   /* guards the slot table */
	uint64_t *slot_idx;      /* slot -> page, for pages LOADING, HELD or EVICTING */
	uint32_t *free_slots;
	uint32_t nfree;
	uint32_t hand;
	size_t tables_len;
	bool listed;             /* in the fork list */
};

/* The process-wide bound, in pages, and what regions have reserved of it. */
static _Atomic uint64_t pool_left;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;
static struct sigaction old_segv;
static int segv_err;

static void pool_init(void)
{
	unsigned long maps = 65530;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");

	if (f) {
		if (fscanf(f, "%lu", &maps) != 1)
			maps = 65530;
		fclose(f);
	}
	atomic_store(&pool_left, maps / 4);
}

static void lock(struct hm_hybrid *h)
{
	for (;;) {
		uint32_t z = 0;
		if (atomic_compare_exchange_weak_explicit(&h->spin, &z, 1, memory_order_acquire,
							  memory_order_relaxed))
			return;
		sched_yield();
	}
}

static void unlock(struct hm_hybrid *h)
{
	atomic_store_explicit(&h->spin, 0, memory_order_release);
}

static void wait_change(_Atomic uint32_t *w, uint32_t seen)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	/* Ask for a wake-up; bounded, so a missed one costs 10 ms, never a hang. */
	if (!(seen & HY_WAITERS)) {
		if (!atomic_compare_exchange_strong(w, &seen, seen | HY_WAITERS))
			return;
		seen |= HY_WAITERS;
	}
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

/*
 * Moves the page's word to (old & ~clear) | set, keeping flags others may
 * change meanwhile (RO, PINNED), and wakes waiters.
 */
static void set_state(_Atomic uint32_t *w, uint32_t clear, uint32_t set)
{
	uint32_t old = atomic_load(w);

	while (!atomic_compare_exchange_weak(w, &old, (old & ~(clear | HY_WAITERS)) | set))
		;
	if (old & HY_WAITERS)
		syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

#define HY_SLOT_MASK (~0u << HY_SLOT_SHIFT)

static void free_slot(struct hm_hybrid *h, uint32_t slot)
{
	lock(h);
	h->slot_idx[slot] = UINT64_MAX;
	h->free_slots[h->nfree++] = slot;
	unlock(h);
}

/* Bytes of page i that the medium holds and write-back may write. */
static size_t page_bytes(struct hm_region *r, uint64_t i)
{
	uint64_t off = r->offset + (i << r->ps_shift);
	uint64_t lim = r->wb_limit < r->store->info.size ? r->wb_limit : r->store->info.size;

	if (off >= lim)
		return 0;
	return lim - off < r->ps ? (size_t)(lim - off) : r->ps;
}

/*
 * Writes held page i (EVICTING, owned by the caller) back to the medium.
 * With `keep` the page stays in DRAM (a pinned page at sync): it is copied
 * while writable, a snapshot as a cached region's write-back is. Otherwise
 * the medium is mapped again and the frame freed. On failure the page is
 * HELD again with its data, and the error is returned.
 */
static int writeback_page(struct hm_region *r, uint64_t i, bool keep)
{
	struct hm_hybrid *h = r->bam->hybrid;
	struct hm_store *s = r->store;
	_Atomic uint32_t *w = &h->st[i];
	uint32_t st = atomic_load(w);
	uint32_t slot = st >> HY_SLOT_SHIFT;
	char *a = r->base + (i << r->ps_shift);
	size_t n = page_bytes(r, i);
	uint64_t off = r->offset + (i << r->ps_shift);
	char *dst;
	int rc = 0, e;

	if (!keep && mprotect(a, r->ps, PROT_READ) < 0) {
		rc = -errno;
		goto fail;
	}
	dst = n ? (char *)s->ops->addr(s->priv, off, n) : NULL;
	if (n && !dst) {
		rc = -EIO;
		goto fail_prot;
	}
	if (n) {
		rc = hm__pread_all(r->memfd, dst, n, (off_t)(i << r->ps_shift));
		if (rc)
			goto fail_prot;
	}
	hm__count_rc(r, writebacks, 1);
	hm__count_rc(r, bytes_written, n);
	hm__count(&s->ctr, writebacks, 1);
	hm__count(&s->ctr, bytes_written, n);
	if (keep) {
		set_state(w, HY_STATE, HY_HELD);
		return 0;
	}
	/* The medium again; a page that passes its end keeps zeros after it, as at map time. */
	size_t mlen = r->bam->medium_len - (i << r->ps_shift);
	if (mlen > r->ps)
		mlen = r->ps;
	rc = s->ops->map(s->priv, a, mlen, off, PROT_READ);
	if (!rc && mlen < r->ps &&
	    mmap(a + mlen, r->ps - mlen, r->prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    MAP_FAILED)
		rc = -errno;
	if (rc)
		goto fail_prot;
	fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(i << r->ps_shift),
		  (off_t)r->ps);
	free_slot(h, slot);
	atomic_fetch_sub(&r->resident_pages, 1);
	hm__count_rc(r, evictions, 1);
	set_state(w, HY_STATE | HY_PINNED | HY_SLOT_MASK, HY_DIRECT);
	return 0;
fail_prot:
	e = errno;
	mprotect(a, r->ps, PROT_READ | PROT_WRITE);
	errno = e;
fail:
	hm__count_rc(r, writeback_errors, 1);
	hm__count(&s->ctr, writeback_errors, 1);
	set_state(w, HY_STATE, HY_HELD);
	return rc;
}

/*
 * A free slot for page i, evicting a victim when the held set is full.
 * Returns the slot or -errno (-ENOMEM when every held page is pinned).
 */
static int64_t get_slot(struct hm_region *r, uint64_t i)
{
	struct hm_hybrid *h = r->bam->hybrid;

	for (;;) {
		uint64_t victim = UINT64_MAX;
		bool all_pinned = true;

		lock(h);
		if (h->nfree) {
			uint32_t slot = h->free_slots[--h->nfree];
			h->slot_idx[slot] = i;
			unlock(h);
			return slot;
		}
		/* CLOCK without reference bits: the hand passes pages it cannot take. */
		for (uint32_t k = 0; k < h->cap && victim == UINT64_MAX; k++) {
			uint32_t s = h->hand++ % h->cap;
			uint64_t j = h->slot_idx[s];
			if (j == UINT64_MAX)
				continue;
			uint32_t st = atomic_load(&h->st[j]);
			if (!(st & HY_PINNED))
				all_pinned = false;
			if ((st & HY_STATE) != HY_HELD || (st & HY_PINNED))
				continue;
			if (atomic_compare_exchange_strong(&h->st[j], &st,
							   (st & ~HY_STATE) | HY_EVICTING))
				victim = j;
		}
		unlock(h);
		if (victim != UINT64_MAX) {
			int rc = writeback_page(r, victim, false);
			if (rc)
				return rc;
			continue;
		}
		if (all_pinned)
			return -ENOMEM;
		sched_yield(); /* every slot in flight: let their owners finish */
	}
}

/*
 * Moves page i into DRAM. Returns 0 when the page is held (by this thread
 * or another), -EACCES when it is protected (the write is the
 * application's SIGSEGV), or another -errno.
 */
static int take_page(struct hm_region *r, uint64_t i, bool pin)
{
	struct hm_hybrid *h = r->bam->hybrid;
	struct hm_store *s = r->store;
	_Atomic uint32_t *w = &h->st[i];
	char *a = r->base + (i << r->ps_shift);
	uint64_t off = r->offset + (i << r->ps_shift);
	size_t n = page_bytes(r, i);
	const char *src;
	int64_t slot;
	uint32_t st;
	void *m;
	int rc;

	for (;;) {
		st = atomic_load(w);
		if (st & (HY_RO | HY_GONE))
			return -EACCES;
		switch (st & HY_STATE) {
		case HY_HELD:
			if (pin && !(st & HY_PINNED) &&
			    !atomic_compare_exchange_strong(w, &st, st | HY_PINNED))
				continue;
			return 0;
		case HY_LOADING:
		case HY_EVICTING:
			wait_change(w, st);
			continue;
		}
		if (atomic_compare_exchange_strong(w, &st, (st & ~HY_STATE) | HY_LOADING))
			break;
	}
	slot = get_slot(r, i);
	if (slot < 0) {
		rc = (int)slot;
		goto fail;
	}
	src = n ? s->ops->addr(s->priv, off, n) : NULL;
	if (n && !src) {
		rc = -EIO;
		goto fail_slot;
	}
	/*
	 * The frame is made and filled through the view, whose NOHUGEPAGE
	 * keeps it one page: a write() into the memfd may allocate a large
	 * folio (shmem_enabled), up to 2 MiB of memory per page held. The
	 * view's PTE stays until the write-back punches the frame out.
	 */
	if (n)
		memcpy(r->view + (i << r->ps_shift), src, n);
	memset(r->view + (i << r->ps_shift) + n, 0, r->ps - n);
	/* Populated: the retried write finds its PTE and takes no second fault. */
	m = mmap(a, r->ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE, r->memfd,
		 (off_t)(i << r->ps_shift));
	if (m == MAP_FAILED) {
		rc = -errno;
		goto fail_hole;
	}
	atomic_fetch_add(&r->resident_pages, 1);
	hm__count_rc(r, faults_wp, 1);
	hm__count_rc(r, bytes_read, n);
	hm__count(&s->ctr, bytes_read, n);
	/*
	 * hm_protect sets RO (hmunmap GONE) and then writes back the held
	 * pages it finds in the slot table. This page had its slot before the
	 * check below, so either the check sees the bit, or the write-back
	 * finds the page.
	 */
	if (atomic_load(w) & (HY_RO | HY_GONE)) {
		set_state(w, HY_STATE | HY_SLOT_MASK, HY_EVICTING | ((uint32_t)slot << HY_SLOT_SHIFT));
		writeback_page(r, i, false);
		return -EACCES;
	}
	set_state(w, HY_STATE | HY_SLOT_MASK,
		  HY_HELD | (pin ? HY_PINNED : 0) | ((uint32_t)slot << HY_SLOT_SHIFT));
	return 0;
fail_hole:
	fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(i << r->ps_shift),
		  (off_t)r->ps);
fail_slot:
	free_slot(h, (uint32_t)slot);
fail:
	set_state(w, HY_STATE, HY_DIRECT);
	return rc;
}

static void chain(int sig, siginfo_t *si, void *uc)
{
	if (old_segv.sa_flags & SA_SIGINFO) {
		old_segv.sa_sigaction(sig, si, uc);
	} else if (old_segv.sa_handler != SIG_DFL && old_segv.sa_handler != SIG_IGN) {
		old_segv.sa_handler(sig);
	} else {
		/* The default action: the access is retried and faults again. */
		signal(SIGSEGV, SIG_DFL);
	}
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	bool write = true;

#if defined(__x86_64__)
	/* The page-fault error code: bit 1 is a write (an exec fault is not ours). */
	if (uc)
		write = ((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2;
#endif
	if (si->si_code == SEGV_ACCERR && write && si->si_addr) {
		uintptr_t addr = (uintptr_t)si->si_addr;
		struct hm_region *r = hm__region_get(addr);
		int rc = -EFAULT;

		if (r) {
			if (r->flags == HM_HYBRID && r->bam && r->bam->hybrid &&
			    (r->prot & PROT_WRITE)) {
				uint64_t i = (addr - (uintptr_t)r->base) >> r->ps_shift;
				if (i < r->bam->hybrid->npages)
					rc = take_page(r, i, false);
			}
			hm__region_put(r);
		}
		if (!rc) {
			errno = saved;
			return;
		}
		if (rc != -EACCES && rc != -EFAULT && getenv("HMMAP_DEBUG"))
			fprintf(stderr, "hmmap: hybrid write fault at %p failed: %s\n",
				(void *)addr, strerror(-rc));
	}
	errno = saved;
	chain(sig, si, uc);
}

/*
 * Fork. A child must not inherit a hybrid region: its frames are a shared
 * memfd, so a child's write would land in the parent's frames. Cached and
 * direct regions are MADV_DONTFORK, but that flag lives on each mapping,
 * and every page moved in or out is a new mapping: marking each one would
 * cost a system call per fault (a third of a first write's cost here), and
 * pieces of the medium without the mark would no longer merge with their
 * neighbours, so the count of mappings would grow past the bound. Instead
 * the child unmaps every hybrid region at once, in a pthread_atfork handler;
 * the list of regions is locked across the fork, and a region is listed, in
 * the same critical section, as soon as its mapping exists.
 */
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char *base;
	size_t span;
} *forklist;
static size_t nforklist, forklist_cap;

static void fork_prepare(void)
{
	pthread_mutex_lock(&fork_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&fork_lock);
}

static void fork_child(void)
{
	for (size_t i = 0; i < nforklist; i++)
		munmap(forklist[i].base, forklist[i].span);
	nforklist = 0;
	pthread_mutex_unlock(&fork_lock);
}

static void segv_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old_segv) < 0)
		segv_err = -errno;
	else if (pthread_atfork(fork_prepare, fork_parent, fork_child))
		segv_err = -ENOMEM;
}

int hm__hybrid_init(struct hm_region *r)
{
	struct hm_bam *b = r->bam;
	struct hm_hybrid *h;
	uint64_t want, left;
	char name[64];
	int rc;

	pthread_once(&pool_once, pool_init);
	pthread_once(&segv_once, segv_install);
	if (segv_err)
		return hm__error_errno(segv_err, "sigaction(SIGSEGV)");
	h = calloc(1, sizeof *h);
	if (!h)
		return hm__error(-ENOMEM, "out of memory");
	b->hybrid = h;
	pthread_mutex_lock(&fork_lock);
	if (nforklist == forklist_cap) {
		size_t cap = forklist_cap ? 2 * forklist_cap : 16;
		void *l = realloc(forklist, cap * sizeof *forklist);
		if (!l) {
			pthread_mutex_unlock(&fork_lock);
			return hm__error(-ENOMEM, "out of memory");
		}
		forklist = l;
		forklist_cap = cap;
	}
	rc = hm__bam_map_medium(r, PROT_READ);
	if (!rc) {
		forklist[nforklist].base = r->base;
		forklist[nforklist].span = r->span;
		nforklist++;
		h->listed = true;
	}
	pthread_mutex_unlock(&fork_lock);
	if (rc)
		return rc;
	h->npages = b->medium_len >> r->ps_shift;
	if (b->medium_len & (r->ps - 1))
		h->npages++;
	h->st_len = ((size_t)r->npages * sizeof *h->st + 4095) & ~(size_t)4095;
	h->st = mmap(NULL, h->st_len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (h->st == MAP_FAILED) {
		h->st = NULL;
		return hm__error(-ENOMEM, "cannot allocate the hybrid page states");
	}
	if (!(r->prot & PROT_WRITE))
		return 0; /* read-only: never holds a page */

	/* Reserve this region's share of the process-wide bound. */
	want = hm__budget(r->cache) >> r->ps_shift;
	if (want > h->npages)
		want = h->npages;
	if (want > UINT32_MAX >> HY_SLOT_SHIFT)
		want = UINT32_MAX >> HY_SLOT_SHIFT;
	left = atomic_load(&pool_left);
	do {
		h->cap = (uint32_t)(want < left ? want : left);
	} while (h->cap && !atomic_compare_exchange_weak(&pool_left, &left, left - h->cap));
	if (!h->cap)
		return hm__error(-ENOMEM, "hybrid regions of this process already hold the most "
					  "pages vm.max_map_count allows (a quarter of it); unmap one "
					  "or raise vm.max_map_count");
	h->tables_len = ((size_t)h->cap * (sizeof *h->slot_idx + sizeof *h->free_slots) + 4095) &
			~(size_t)4095;
	h->slot_idx = mmap(NULL, h->tables_len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h->slot_idx == MAP_FAILED) {
		h->slot_idx = NULL;
		return hm__error(-ENOMEM, "cannot allocate the hybrid slot table");
	}
	h->free_slots = (uint32_t *)(h->slot_idx + h->cap);
	for (uint32_t k = 0; k < h->cap; k++) {
		h->slot_idx[k] = UINT64_MAX;
		h->free_slots[k] = h->cap - 1 - k;
	}
	h->nfree = h->cap;
	snprintf(name, sizeof name, "hmmap-hybrid-%u", r->id);
	r->memfd = memfd_create(name, MFD_CLOEXEC);
	if (r->memfd < 0)
		return hm__error_errno(-errno, "memfd_create");
	if (ftruncate(r->memfd, (off_t)r->span) < 0)
		return hm__error_errno(-errno, "ftruncate(memfd, %zu)", r->span);
	return hm__region_view(r);
}

void hm__hybrid_free(struct hm_region *r)
{
	struct hm_hybrid *h = r->bam->hybrid;

	if (h->listed) {
		pthread_mutex_lock(&fork_lock);
		for (size_t i = 0; i < nforklist; i++) {
			if (forklist[i].base == r->base) {
				forklist[i] = forklist[--nforklist];
				break;
			}
		}
		pthread_mutex_unlock(&fork_lock);
	}
	if (h->cap)
		atomic_fetch_add(&pool_left, h->cap);
	if (h->slot_idx)
		munmap(h->slot_idx, h->tables_len);
	if (h->st)
		munmap((void *)h->st, h->st_len);
	free(h);
	r->bam->hybrid = NULL;
}

uint64_t hm__hybrid_capacity(const struct hm_region *r)
{
	return r->bam && r->bam->hybrid ? r->bam->hybrid->cap : 0;
}

/*
 * Writes back the held pages of [idx, idx+n), found through the slot table
 * (at most cap entries, however large the range). A page being moved in
 * may already be written (the application runs as soon as the frame is
 * mapped), so the pass waits for it and takes it too; a pinned page is
 * written back and stays. `unpin` drops pins (hm_protect).
 */
static int writeback_range(struct hm_region *r, uint64_t idx, uint64_t n, bool unpin)
{
	struct hm_hybrid *h = r->bam->hybrid;
	int err = 0;

	for (uint32_t k = 0; k < h->cap; k++) {
		for (;;) {
			lock(h);
			uint64_t j = h->slot_idx[k];
			unlock(h);
			if (j == UINT64_MAX || j < idx || j >= idx + n)
				break;
			_Atomic uint32_t *w = &h->st[j];
			uint32_t st = atomic_load(w);
			uint32_t state = st & HY_STATE;
			if (state == HY_LOADING || state == HY_EVICTING) {
				wait_change(w, st);
				continue;
			}
			if (state != HY_HELD || (st >> HY_SLOT_SHIFT) != k) {
				/* The slot changed hands meanwhile: look again. */
				sched_yield();
				continue;
			}
			uint32_t nst = (st & ~HY_STATE) | HY_EVICTING;
			if (unpin)
				nst &= ~HY_PINNED;
			if (!atomic_compare_exchange_strong(w, &st, nst))
				continue;
			int rc = writeback_page(r, j, (nst & HY_PINNED) != 0);
			if (rc && !err)
				err = hm__error_errno(rc, "hybrid write-back of page %llu to '%s' failed",
						      (unsigned long long)j, r->store->uri);
			break;
		}
	}
	return err;
}

int hm__hybrid_writeback(struct hm_region *r, uint64_t idx, uint64_t n)
{
	return writeback_range(r, idx, n, false);
}

int hm__hybrid_take(struct hm_region *r, uint64_t idx, uint64_t n, bool pin)
{
	struct hm_hybrid *h = r->bam->hybrid;

	if (!(r->prot & PROT_WRITE))
		return 0; /* read-only: reads are direct, nothing to move */
	if (idx + n > h->npages)
		n = idx < h->npages ? h->npages - idx : 0;
	if (n > h->cap)
		return hm__error(-ENOMEM, "prefault of %llu pages exceeds the %u pages this hybrid "
					  "region may hold", (unsigned long long)n, h->cap);
	if (pin) {
		/*
		 * As in a cached region, pins leave room for faults (a sixteenth
		 * of the held set, at least two pages: one store may cross into
		 * a second page): with every held page pinned, a write to any
		 * other page could not move it in and would be the
		 * application's SIGSEGV.
		 */
		uint64_t reserve = h->cap / 16 > 2 ? h->cap / 16 : 2, more = 0;
		uint64_t limit = h->cap > reserve ? h->cap - reserve : 0;
		for (uint64_t i = idx; i < idx + n; i++)
			more += !(atomic_load(&h->st[i]) & HY_PINNED);
		if (hm__hybrid_pinned(r) + more > limit)
			return hm__error(-ENOMEM, "pinning %llu more pages would leave writes no room "
						  "in the %u pages this hybrid region may hold "
						  "(pins may hold %llu)",
					 (unsigned long long)more, h->cap,
					 (unsigned long long)limit);
	}
	for (uint64_t i = idx; i < idx + n; i++) {
		int rc = take_page(r, i, pin);
		if (rc == -EACCES)
			return hm__error(-EACCES, "hm_prefault: page %llu is protected (hm_protect)",
					 (unsigned long long)i);
		if (rc)
			return hm__error_errno(rc, "hm_prefault: cannot move page %llu into DRAM",
					       (unsigned long long)i);
	}
	return 0;
}

void hm__hybrid_unpin(struct hm_region *r, uint64_t idx, uint64_t n)
{
	struct hm_hybrid *h = r->bam->hybrid;

	if (!h->cap)
		return;
	if (idx + n > h->npages)
		n = idx < h->npages ? h->npages - idx : 0;
	for (uint64_t i = idx; i < idx + n; i++)
		if (atomic_load_explicit(&h->st[i], memory_order_relaxed) & HY_PINNED)
			atomic_fetch_and(&h->st[i], ~HY_PINNED);
}

uint64_t hm__hybrid_pinned(const struct hm_region *r)
{
	struct hm_hybrid *h = r->bam->hybrid;
	uint64_t n = 0;

	/* The slot table is short (the held pages); the page states are not. */
	for (uint32_t k = 0; k < h->cap; k++) {
		lock(h);
		uint64_t j = h->slot_idx[k];
		unlock(h);
		if (j != UINT64_MAX && (atomic_load_explicit(&h->st[j], memory_order_relaxed) &
					HY_PINNED))
			n++;
	}
	return n;
}

/* The end of the pages of [idx, idx+n) that the medium backs. */
static uint64_t medium_end(const struct hm_region *r, uint64_t idx, uint64_t n)
{
	uint64_t np = r->bam->hybrid->npages;

	return idx + n < np ? idx + n : np;
}

static void clear_bit(struct hm_region *r, uint64_t idx, uint64_t n, uint32_t bit)
{
	struct hm_hybrid *h = r->bam->hybrid;

	for (uint64_t i = idx, end = medium_end(r, idx, n); i < end; i++)
		if (atomic_load_explicit(&h->st[i], memory_order_relaxed) & bit)
			atomic_fetch_and(&h->st[i], ~bit);
}

/*
 * Marks [idx, idx+n) with `bit` (RO: hm_protect; GONE: hmunmap), so that no
 * write moves a page into DRAM any more, then writes the held pages back to
 * the medium, pins and all. take_page() checks the bits after it got its
 * slot, so a page it moves in meanwhile is either seen there or found here.
 */
static int seal_range(struct hm_region *r, uint64_t idx, uint64_t n, uint32_t bit)
{
	struct hm_hybrid *h = r->bam->hybrid;
	int rc;

	for (uint64_t i = idx, end = medium_end(r, idx, n); i < end; i++)
		atomic_fetch_or(&h->st[i], bit);
	pthread_mutex_lock(&r->sync_lock);
	rc = writeback_range(r, idx, n, true);
	pthread_mutex_unlock(&r->sync_lock);
	return rc;
}

/*
 * An unmapped part (hmunmap): undone (the marks cleared) if a write-back
 * fails; the pages that went back are direct again, with their data on the
 * medium.
 */
int hm__hybrid_gone(struct hm_region *r, uint64_t idx, uint64_t n)
{
	int rc = seal_range(r, idx, n, HY_GONE);

	if (rc)
		hm__hybrid_ungone(r, idx, n);
	return rc;
}

void hm__hybrid_ungone(struct hm_region *r, uint64_t idx, uint64_t n)
{
	struct hm_hybrid *h = r->bam->hybrid;
	uint64_t end = medium_end(r, idx, n);

	/*
	 * The medium's pages read-only (a write moves one in), the zeros past
	 * its end as mapped; pages still held in DRAM are writable frames.
	 */
	for (uint64_t i = idx; i < idx + n; i++) {
		char *a = r->base + (i << r->ps_shift);
		bool held = i < end && (atomic_load(&h->st[i]) & HY_STATE) == HY_HELD;
		mprotect(a, r->ps, i >= end || held ? r->prot : PROT_READ);
	}
	clear_bit(r, idx, n, HY_GONE);
}

int hm__hybrid_protect(struct hm_region *r, uint64_t idx, uint64_t n, bool ro)
{
	if (!ro) {
		clear_bit(r, idx, n, HY_RO);
		return 0;
	}
	return seal_range(r, idx, n, HY_RO);
}
