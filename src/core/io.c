/* SPDX-License-Identifier: MIT */
/*
 * Moving pages between a store and a region's frames.
 *
 * Frames are pages of the region's memfd: shmem, or hugetlbfs for
 * HM_HUGETLB, or for 2 MiB pages a file of a huge tmpfs (src/core/region.c),
 * filled by write() and mapped by UFFDIO_CONTINUE. Data goes through a
 * per-thread bounce buffer (or comes straight from a byte-addressable
 * store), and one UFFDIO_COPY allocates the frames, fills them and maps
 * them; write-back is pread() from the memfd into the buffer, then the
 * store's write. The readahead marker, a
 * frame left unmapped, is filled through a second mapping of the memfd:
 * hugetlbfs has no write(), and a shmem write() may allocate a large folio
 * whose other pages would appear in the memfd as zeros, where a mapping
 * with MADV_NOHUGEPAGE keeps every frame one page. Reading straight into
 * frames through such a mapping would save a copy, but every page touched
 * through it gets a PTE that must later be zapped, and on this kernel each
 * zap of a scattered page costs a TLB-shootdown IPI (5 us with another
 * thread running), several times the cost of copying 4 KiB.
 */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/internal.h"

#define BOUNCE_SIZE HM_HUGE_SIZE
#define SMALL_SIZE (64u << 10)

static __thread char *bounce, *bounce_small;
static pthread_key_t bounce_key, small_key;
static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;

void *hm_io_alloc(size_t size)
{
	if (!size || size > SIZE_MAX - 2 * (size_t)HM_HUGE_SIZE) {
		errno = size ? ENOMEM : EINVAL;
		return NULL;
	}
	size_t len = (size + HM_HUGE_SIZE - 1) & ~(size_t)(HM_HUGE_SIZE - 1);
	char *m = mmap(NULL, len + HM_HUGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		errno = ENOMEM;
		return NULL;
	}
	/* Keep the 2 MiB-aligned part; the huge page can only back an aligned extent. */
	char *p = (char *)(((uintptr_t)m + HM_HUGE_SIZE - 1) & ~(uintptr_t)(HM_HUGE_SIZE - 1));
	if (p > m)
		munmap(m, (size_t)(p - m));
	munmap(p + len, (size_t)(m + HM_HUGE_SIZE - p));
	madvise(p, len, MADV_HUGEPAGE);
	return p;
}

int hm_io_free(void *p, size_t size)
{
	if (!p)
		return 0;
	if (!size || ((uintptr_t)p & (HM_HUGE_SIZE - 1)) || size > SIZE_MAX - HM_HUGE_SIZE)
		return -EINVAL;
	return munmap(p, (size + HM_HUGE_SIZE - 1) & ~(size_t)(HM_HUGE_SIZE - 1)) ? -EINVAL : 0;
}

static void bounce_free(void *p)
{
	hm_io_free(p, BOUNCE_SIZE);
}

static void small_free(void *p)
{
	munmap(p, SMALL_SIZE);
}

static void bounce_init(void)
{
	pthread_key_create(&bounce_key, bounce_free);
	pthread_key_create(&small_key, small_free);
}

/*
 * The calling thread's buffer for a transfer of len bytes (at most
 * BOUNCE_SIZE are moved through it at a time). Large transfers use a 2 MiB
 * buffer from hm_io_alloc(): a 2 MiB read into a huge page runs at about
 * 6.5 GB/s on this machine's virtio disk, against 1.7 GB/s into 512
 * scattered 4 KiB pages (the device handles each segment on its own). A
 * transfer of up to 64 KiB has few segments either way and uses a 64 KiB
 * buffer of ordinary pages, so that a thread serving only random 4 KiB
 * misses never holds a whole huge page. mmap and TLS only, so a signal
 * handler may call it.
 */
static char *get_bounce(uint64_t len, uint64_t ps, size_t *cap)
{
	char **slot = len <= SMALL_SIZE ? &bounce_small : &bounce;

	if (!*slot) {
		char *p;
		if (slot == &bounce) {
			p = hm_io_alloc(BOUNCE_SIZE);
			/*
			 * Short of memory (RLIMIT_AS): pages that fit move 64 KiB
			 * at a time rather than fail the fault or the write-back.
			 */
			if (!p && ps <= SMALL_SIZE)
				return get_bounce(SMALL_SIZE, ps, cap);
		} else {
			p = mmap(NULL, SMALL_SIZE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				p = NULL;
		}
		if (!p)
			return NULL;
		pthread_once(&bounce_once, bounce_init);
		pthread_setspecific(slot == &bounce ? bounce_key : small_key, p);
		*slot = p;
	}
	*cap = slot == &bounce ? BOUNCE_SIZE : SMALL_SIZE;
	return *slot;
}

int hm__pread_all(int fd, char *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/*
 * A frame of a huge tmpfs (r->thp) is written with one write() of the whole
 * page, which gives it one huge folio; UFFDIO_COPY would allocate 512
 * single pages. A frame already there is kept, as UFFDIO_COPY keeps it.
 */
static int thp_fill(struct hm_region *r, const char *src, uint64_t at)
{
	size_t done = 0;

	if (lseek(r->memfd, (off_t)at, SEEK_DATA) == (off_t)at)
		return 0;
	while (done < r->ps) {
		ssize_t w = pwrite(r->memfd, src + done, r->ps - done, (off_t)(at + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		done += (size_t)w;
	}
	return 0;
}

/* Makes frames for pages [idx, idx+n) from buf and maps them. */
static int map_pages(struct hm_region *r, uint64_t idx, uint64_t n, const char *buf)
{
	int rc;

	if (r->thp) {
		for (uint64_t i = 0; i < n; i++) {
			char *dst = r->base + ((idx + i) << r->ps_shift);
			rc = thp_fill(r, buf + (i << r->ps_shift), (idx + i) << r->ps_shift);
			if (!rc)
				rc = hm__uffd_continue(dst, r->ps, r->wp);
			if (rc && rc != -EEXIST)
				return rc;
		}
		return 0;
	}

	/*
	 * hugetlbfs copies from a source it cannot read without faulting
	 * (a mem: store's untouched bytes) through a second, temporary huge
	 * page: it then needs two free pages instead of one, and copies
	 * twice. Reading one byte per 4 KiB maps the source first.
	 */
	if (r->flags & HM_HUGETLB)
		for (size_t o = 0; o < (size_t)n << r->ps_shift; o += 4096)
			(void)*(const volatile char *)(buf + o);
	rc = hm__uffd_copy(r->base + (idx << r->ps_shift), buf, (size_t)n << r->ps_shift, r->wp);

	if (rc != -EEXIST)
		return rc;
	/* A frame or PTE was there already: page by page, keeping what exists. */
	for (uint64_t i = 0; i < n; i++) {
		char *dst = r->base + ((idx + i) << r->ps_shift);
		rc = hm__uffd_copy(dst, buf + (i << r->ps_shift), r->ps, r->wp);
		if (rc == -EEXIST)
			rc = hm__uffd_continue(dst, r->ps, r->wp);
		if (rc && rc != -EEXIST)
			return rc;
	}
	return 0;
}

/*
 * Fills the frame at memfd offset `at` without mapping it in the region.
 * A hugetlb frame is allocated first, so that an empty pool is an error
 * here and not a SIGBUS in the copy through the view. A shmem frame is
 * filled through a mapping of that one frame, NOHUGEPAGE before its first
 * touch: write() into the memfd could allocate a large folio, whose other
 * pages would appear in the memfd as zeros and be mapped by later faults.
 */
static int fill_unmapped(struct hm_region *r, const char *src, uint64_t at)
{
	char *dst;

	if (r->thp)
		return thp_fill(r, src, at);
	if (r->flags & HM_HUGETLB) {
		if (fallocate(r->memfd, FALLOC_FL_KEEP_SIZE, (off_t)at, (off_t)r->ps) < 0)
			return -errno;
		memcpy(r->view + at, src, r->ps);
		madvise(r->view + at, r->ps, MADV_DONTNEED);
		return 0;
	}
	dst = mmap(NULL, r->ps, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, (off_t)at);
	if (dst == MAP_FAILED)
		return -errno;
	madvise(dst, r->ps, MADV_NOHUGEPAGE);
	memcpy(dst, src, r->ps);
	munmap(dst, r->ps);
	return 0;
}

/*
 * A huge page frame could not be allocated: another program took the pool's
 * free pages. hugetlbfs says EFAULT from UFFDIO_COPY when it finds none.
 * The load then evicts pages of its own cache, one at a time, to give
 * their huge pages back, up to SHED_TRIES times.
 */
#define SHED_TRIES 8

static bool pool_empty(const struct hm_region *r, int rc)
{
	return (r->flags & HM_HUGETLB) && (rc == -ENOMEM || rc == -ENOSPC || rc == -EFAULT);
}

/*
 * After an attempt to fill frames that returned rc (the tries-th retry of
 * a load of `held` pages): true if it found the pool empty and a page of
 * the cache was given back, so that trying again can succeed.
 */
static bool shed_and_retry(struct hm_region *r, int rc, int tries, uint64_t held)
{
	return pool_empty(r, rc) && tries < SHED_TRIES &&
	       !hm__cache_shed(r->cache, 1, (uint32_t)held);
}

/* A frame could not be had: -EPROTO, with what failed (the load's caller says which page). */
static int frame_error(const struct hm_region *r, const char *what, int rc)
{
	if (pool_empty(r, rc))
		return hm__error_errno(-EPROTO, "%s: %s; is the 2 MiB huge page pool "
						"empty? (vm.nr_hugepages)", what, strerror(-rc));
	return hm__error_errno(-EPROTO, "%s: %s", what, strerror(-rc));
}

int hm__io_load(struct hm_region *r, uint64_t idx, uint64_t n, bool unmapped_first)
{
	char *b = NULL;
	uint64_t done = 0, len = n << r->ps_shift;
	size_t cap = BOUNCE_SIZE;
	int rc;

	while (done < len) {
		size_t chunk = len - done < cap ? (size_t)(len - done) : cap;
		uint64_t at = (idx << r->ps_shift) + done;
		uint64_t first = at >> r->ps_shift, pages = chunk >> r->ps_shift;
		const char *src = NULL;

		/* A byte-addressable store is copied from where it lies. */
		if (r->store->ops->addr)
			src = r->store->ops->addr(r->store->priv, r->offset + at, chunk);
		if (!src) {
			if (!b && !(b = get_bounce(len, r->ps, &cap)))
				return -ENOMEM;
			if (chunk > cap) {
				chunk = cap;
				pages = chunk >> r->ps_shift;
			}
			/* Chunks are whole pages: cap is a multiple of the page size. */
			hm__error_clear(); /* the store's own message, if it sets one, is the cause */
			rc = r->store->ops->read(r->store->priv, b, chunk, r->offset + at);
			if (rc)
				return rc;
			src = b;
		}
		if (unmapped_first && first == idx) {
			/* The readahead marker: a frame, but no mapping yet. */
			int tries = 0;
			do
				rc = fill_unmapped(r, src, at);
			while (shed_and_retry(r, rc, tries++, n));
			if (rc)
				return frame_error(r, "filling a frame", rc);
			src += r->ps;
			first++;
			pages--;
		}
		if (pages) {
			int tries = 0;
			do
				rc = map_pages(r, first, pages, src);
			while (shed_and_retry(r, rc, tries++, n));
			if (rc)
				return frame_error(r, r->thp ? "filling a frame" : "UFFDIO_COPY", rc);
		}
		done += chunk;
	}
	return 0;
}

/*
 * How much of the chunk at store offset `off` to write: all of it up to
 * where the store's data ends (wb_eof), and past that up to its last
 * non-zero byte. A page that straddles the end of a file whose size is not
 * a page multiple thus does not pad the file with zeros to the page's end
 * (or the mapped end): as with mmap, writing inside the file leaves its
 * size alone, while bytes written past the end extend it to the last of
 * them.
 */
static size_t past_eof_trim(struct hm_store *s, const char *b, size_t len, uint64_t off)
{
	uint64_t eof = atomic_load(&s->wb_eof);
	size_t keep = eof > off ? (eof - off < len ? (size_t)(eof - off) : len) : 0;

	while (len > keep && !b[len - 1])
		len--;
	return len;
}

static void raise_eof(struct hm_store *s, uint64_t end)
{
	uint64_t eof = atomic_load(&s->wb_eof);

	while (end > eof && !atomic_compare_exchange_weak(&s->wb_eof, &eof, end))
		;
}

int hm__writeback_run(struct hm_region *r, uint64_t idx, uint64_t n)
{
	uint64_t off = r->offset + (idx << r->ps_shift);
	uint64_t len = n << r->ps_shift, done = 0;
	size_t cap;
	char *b;
	int rc = 0;

	/* Never write past the mapped end: the file must not grow beyond it. */
	if (off >= r->wb_limit)
		return 0;
	if (off + len > r->wb_limit)
		len = r->wb_limit - off;
	if (!(b = get_bounce(len, r->ps, &cap)))
		return hm__error(-ENOMEM, "cannot allocate a bounce buffer");
	hm__error_clear();
	while (done < len) {
		size_t chunk = len - done < cap ? (size_t)(len - done) : cap;

		rc = hm__pread_all(r->memfd, b, chunk, (off_t)((idx << r->ps_shift) + done));
		size_t w = rc ? 0 : past_eof_trim(r->store, b, chunk, off + done);
		if (!rc && w)
			rc = r->store->ops->write(r->store->priv, b, w, off + done);
		if (rc)
			break;
		raise_eof(r->store, off + done + w);
		done += chunk;
	}
	if (rc) {
		hm__count(&r->ctr, writeback_errors, 1);
		hm__count(&r->cache->ctr, writeback_errors, 1);
		hm__count(&r->store->ctr, writeback_errors, 1);
		return hm__error_wrap(rc, "write-back of %llu bytes at offset %llu of '%s' failed",
				       (unsigned long long)len, (unsigned long long)off,
				       r->store->uri);
	}
	atomic_fetch_add_explicit(&r->cache->wb_ok, 1, memory_order_relaxed);
	hm__count(&r->ctr, writebacks, n);
	hm__count(&r->cache->ctr, writebacks, n);
	hm__count(&r->ctr, bytes_written, len);
	hm__count(&r->cache->ctr, bytes_written, len);
	hm__count(&r->store->ctr, writebacks, n);
	hm__count(&r->store->ctr, bytes_written, len);
	return 0;
}
