/* SPDX-License-Identifier: MIT */
/*
 * HM_HUGETLB: regions of 2 MiB pages whose frames come from the kernel's
 * huge page pool.
 *
 * Bad requests are refused and change nothing: a page size other than
 * 2 MiB, a mode other than HM_CACHED, hmmap() on 4 KiB default pages, and a
 * pool too small for what the region can hold. A file whose size is not a
 * page multiple reads zeros past its end, is never extended, and reads back
 * what was written through a fresh read-only mapping. A fault that finds
 * the pool empty (another user took it) evicts the region's own pages to
 * get a frame, and only when none is left is it SIGBUS at the page, in
 * either fault mode; the page reads right once the pool has room again.
 * Every huge page goes back to the pool at unmap, and when the cache
 * shrinks. hmmap() takes the flag too, with HMMAP_PAGE_SIZE=2M.
 *
 * The pool is raised for the run (as root) and put back at exit; without
 * one the cases that need it skip. Random traffic with eviction, sync and
 * both fault modes is in test_integrity (test_2m_hugetlb_*).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define HP (2u << 20)

static char why[256]; /* why pool cases skip, if they do */
static char path[512];

static uint64_t word(uint64_t i)
{
	return i * 0x9e3779b97f4a7c15ull + 17;
}

/* With HM_FEAT_HUGETLB, 1; else a reason in why. */
static int have_feature(void)
{
	uint64_t f = 0;

	if (hm_features(&f)) {
		snprintf(why, sizeof why, "no userfaultfd: %s", hm_errormsg());
		return 0;
	}
	if (!(f & HM_FEAT_HUGETLB)) {
		snprintf(why, sizeof why, "this kernel lacks userfaultfd on hugetlbfs");
		return 0;
	}
	return 1;
}

static void test_bad_requests(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r = (void *)1;

	CHECK(hm_cache_new(&c, 8u << 20, "fifo") == 0);
	CHECK(hm_store_open(&s, "mem:8M", 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, 8u << 20, PROT_READ | PROT_WRITE, HM_CACHED | HM_HUGETLB,
			    4096) == -EINVAL);
	CHECK(r == NULL);
	CHECKF(strstr(hm_errormsg(), "HM_HUGETLB"), "%s", hm_errormsg());
	CHECK(hm_region_map(&r, c, s, 0, 8u << 20, PROT_READ, HM_CACHED | HM_HUGETLB, 1u << 20) ==
	      -EINVAL);
	/* The default page size (HMMAP_PAGE_SIZE, 4K here). */
	CHECK(hm_region_map(&r, c, s, 0, 8u << 20, PROT_READ, HM_CACHED | HM_HUGETLB, 0) == -EINVAL);
	CHECK(hm_region_map(&r, c, s, 0, 8u << 20, PROT_READ, HM_HUGETLB, HP) == -EINVAL);
	CHECK(hm_region_map(&r, c, s, 0, 8u << 20, PROT_READ, HM_HYBRID | HM_HUGETLB, HP) < 0);
	CHECK(hm_region_map(&r, c, s, 0, 8u << 20, PROT_READ, HM_CACHED | 0x200, HP) == -EINVAL);
	CHECK(r == NULL);
	errno = 0;
	CHECK(hmmap(NULL, 8u << 20, PROT_READ, HM_CACHED | HM_HUGETLB, "mem:8M", 0) == MAP_FAILED);
	CHECK(errno == EINVAL);
	CHECK(hm_store_close(s) == 0); /* nothing maps it */
	CHECK(hm_cache_free(c) == 0);
}

/* A pool with fewer free pages than the region can hold: -ENOMEM, nothing mapped. */
static void test_pool_too_small(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r = (void *)1;
	char uri[64];

	if (!have_feature())
		SKIP("%s", why);
	long avail = tu_hugetlb_free();
	if (avail < 0)
		SKIP("no 2 MiB huge page pool");
	size_t len = (size_t)(avail + 4) * HP;
	snprintf(uri, sizeof uri, "mem:%zu", len);
	CHECK(hm_cache_new(&c, len, "fifo") == 0);
	CHECK(hm_store_open(&s, uri, 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED | HM_HUGETLB, HP) ==
	      -ENOMEM);
	CHECK(r == NULL);
	CHECKF(strstr(hm_errormsg(), "nr_hugepages"), "%s", hm_errormsg());
	/* The same region through a smaller cache fits. */
	if (avail >= 2) {
		struct hm_cache *small;
		CHECK(hm_cache_new(&small, 2 * HP, "fifo") == 0);
		CHECKF(hm_region_map(&r, small, s, 0, len, PROT_READ, HM_CACHED | HM_HUGETLB, HP) ==
			       0,
		       "%s", hm_errormsg());
		CHECK(hm_region_unmap(r) == 0);
		CHECK(hm_cache_free(small) == 0);
	}
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/*
 * A file of 5 MiB + 1000 bytes through a 4 MiB cache (two frames): every
 * word written, the tail beyond the end reads zeros, MS_SYNC puts it on
 * disk without growing the file, a read-only mapping reads it back, and
 * the pool gets every page back.
 */
static void test_file_tail_and_pool(void)
{
	const size_t flen = (5u << 20) + 1000, span = 6u << 20;
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;

	if (why[0] || !have_feature())
		SKIP("%s", why);
	long before = tu_hugetlb_free();
	unsigned char *ref = tu_make_file(path, flen, 7);
	CHECK(ref);
	CHECK(hm_cache_new(&c, 4u << 20, "clock") == 0);
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 0, flen, PROT_READ | PROT_WRITE, HM_CACHED | HM_HUGETLB, HP) ==
		       0,
	       "%s", hm_errormsg());
	unsigned char *p = hm_region_addr(r);
	CHECK(((uintptr_t)p & (HP - 1)) == 0);
	long long bad = tu_cmp_mem(p, ref, flen);
	CHECKF(bad == -1, "first read differs at %lld", bad);
	for (size_t i = flen; i < span; i++)
		if (p[i]) {
			CHECKF(0, "byte %zu past the end reads %u", i, p[i]);
		}
	for (size_t i = 0; i + 8 <= flen; i += 8) {
		uint64_t v = word(i);
		memcpy(p + i, &v, 8);
		memcpy(ref + i, &v, 8);
	}
	memset(p + flen - flen % 8, 0xab, flen % 8);
	memset(ref + flen - flen % 8, 0xab, flen % 8);
	p[flen + 10] = 0xcd; /* past the end: never written back */
	CHECKF(hm_sync(p, flen, MS_SYNC) == 0, "%s", hm_errormsg());
	CHECK(tu_file_size(path) == (off_t)flen);
	bad = tu_cmp_file(path, ref, flen);
	CHECKF(bad == -1, "after MS_SYNC the file differs at %lld", bad);
	CHECK(hm_region_stats(r, &st) == 0);
	CHECKF(st.evictions > 0 && st.writebacks > 0, "evictions %llu writebacks %llu",
	       (unsigned long long)st.evictions, (unsigned long long)st.writebacks);
	CHECK(st.resident_bytes <= 4u << 20);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(tu_file_size(path) == (off_t)flen);

	CHECK(hm_store_open(&s, path, HM_STORE_RDONLY) == 0);
	CHECK(hm_region_map(&r, c, s, 0, flen, PROT_READ | PROT_WRITE, HM_CACHED | HM_HUGETLB, HP) ==
	      -EACCES);
	CHECK(hm_region_map(&r, c, s, 0, flen, PROT_READ, HM_CACHED | HM_HUGETLB, HP) == 0);
	bad = tu_cmp_mem(hm_region_addr(r), ref, flen);
	CHECKF(bad == -1, "read-only mapping differs at %lld", bad);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
	CHECKF(tu_hugetlb_free() == before, "free huge pages %ld before, %ld after",
	       before, tu_hugetlb_free());
}

/* Shrinking the cache gives its huge pages back to the pool, and nothing is lost. */
static void test_resize_gives_back(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;

	if (why[0] || !have_feature())
		SKIP("%s", why);
	long before = tu_hugetlb_free();
	CHECK(hm_cache_new(&c, 4 * HP, "fifo") == 0);
	CHECK(hm_store_open(&s, "mem:8M", 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 0, 8u << 20, PROT_READ | PROT_WRITE, HM_CACHED | HM_HUGETLB,
			     HP) == 0,
	       "%s", hm_errormsg());
	uint64_t *p = hm_region_addr(r);
	/*
	 * Three pages of four: a full cache would have its background
	 * evictor free one page at any moment, to keep room for the next miss.
	 */
	for (size_t pg = 0; pg < 3; pg++)
		p[pg * HP / 8] = pg + 100;
	CHECKF(tu_hugetlb_free() == before - 3, "free %ld, %ld before", tu_hugetlb_free(), before);
	CHECKF(hm_cache_resize(c, HP) == 0, "%s", hm_errormsg());
	CHECKF(tu_hugetlb_free() >= before - 1, "free %ld after shrinking to one page, %ld before",
	       tu_hugetlb_free(), before);
	CHECK(hm_cache_resize(c, 4 * HP) == 0);
	for (size_t pg = 0; pg < 3; pg++)
		CHECK(p[pg * HP / 8] == pg + 100); /* written back, read again */
	CHECK(hm_region_unmap(r) == 0);
	CHECK(tu_hugetlb_free() == before);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* ---- the pool runs dry under a mapped region (a child per fault mode) ---- */

static __thread void *volatile bus_addr;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
	if (!tu_jb) {
		fprintf(stderr, "unexpected SIGBUS at %p (code %d)\n", si->si_addr, si->si_code);
		_exit(3);
	}
	bus_addr = si->si_addr;
	siglongjmp(*tu_jb, 1);
}

/* Takes every free huge page into hog (another user of the pool). */
static int hog_rest(int hog)
{
	/* Again while pages come free (a frame of a load that just failed). */
	for (int tries = 0; tries < 100; tries++) {
		struct stat sb;
		long n = tu_hugetlb_free();

		if (n == 0)
			return 0;
		if (n < 0 || fstat(hog, &sb) || ftruncate(hog, sb.st_size + (off_t)n * HP))
			return -1;
		if (fallocate(hog, 0, sb.st_size, (off_t)n * HP) && errno != ENOSPC)
			return -1;
		usleep(1000);
	}
	return -1;
}

static void pool_dry(void)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	struct sigaction sa;
	uint64_t v = 0;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_bus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL); /* before the first hm_* call: hmmap chains to it */
	if (why[0] || !have_feature())
		SKIP("%s", why);

	CHECK(hm_cache_new(&c, 4 * HP, "fifo") == 0);
	CHECK(hm_store_open(&s, "mem:16M", 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 0, 16u << 20, PROT_READ | PROT_WRITE,
			     HM_CACHED | HM_HUGETLB, HP) == 0,
	       "%s", hm_errormsg());
	uint64_t *p = hm_region_addr(r), *q = p + (3 * HP) / 8;
	p[0] = 42; /* one frame taken while there is room */

	/* Another user takes every free huge page. */
	int hog = memfd_create("hog", MFD_HUGETLB);
	CHECK(hog >= 0);
	CHECK(hog_rest(hog) == 0);

	/* A fault gives the region's own page back to the pool, and uses it. */
	CHECK(tu_try_read64(q, &v) == 0 && v == 0);
	q[1] = 7;
	CHECK(tu_try_read64(p, &v) == 0 && v == 42); /* written back, read again */
	CHECK(tu_hugetlb_free() == 0);
	CHECK(hm_cache_stats(c, &st) == 0);
	CHECKF(st.evictions >= 2 && st.resident_bytes == HP, "evictions %llu, resident %llu",
	       (unsigned long long)st.evictions, (unsigned long long)st.resident_bytes);

	/* With nothing of its own left to give back, the fault is SIGBUS at the page. */
	CHECK(hm_advise(p, 16u << 20, HM_ADV_DONTNEED) == 0);
	CHECK(hog_rest(hog) == 0);
	CHECK(tu_try_read64(q, &v) == 1);
	CHECKF(bus_addr >= (void *)q && (char *)bus_addr < (char *)q + HP - ((uintptr_t)q & (HP - 1)),
	       "SIGBUS at %p, not in the page of %p", bus_addr, (void *)q);

	close(hog); /* the pool has room again */
	CHECK(tu_try_read64(q, &v) == 0 && v == 0);
	CHECK(q[1] == 7 && p[0] == 42);
	q[2] = 9;
	CHECKF(hm_sync(p, 16u << 20, MS_SYNC) == 0, "%s", hm_errormsg());
	CHECK(hm_advise(p, 16u << 20, HM_ADV_DONTNEED) == 0);
	CHECK(p[0] == 42 && q[1] == 7 && q[2] == 9);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

static int pool_dry_child(void *arg)
{
	RUN(pool_dry);
	return test_done();
}

static void pool_dry_mode(const char *mode)
{
	char env[64];
	const char *e[] = { env, NULL };

	if (why[0])
		SKIP("%s", why);
	snprintf(env, sizeof env, "HMMAP_FAULT_MODE=%s", mode);
	TU_CHILD_RESULT(tu_child(e, pool_dry_child, NULL));
}

/* hmmap() with HMMAP_PAGE_SIZE=2M: a file written, synced, unmapped and read back. */
static void hmmap_calls(void)
{
	const size_t len = 16u << 20;
	char uri[600];

	if (why[0] || !have_feature())
		SKIP("%s", why);
	unsigned char *ref = tu_make_file(path, len, 3);
	CHECK(ref);
	snprintf(uri, sizeof uri, "file:%s", path);
	unsigned char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED | HM_HUGETLB, uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(((uintptr_t)p & (HP - 1)) == 0);
	long long bad = tu_cmp_mem(p, ref, len);
	CHECKF(bad == -1, "differs at %lld", bad);
	for (size_t i = 0; i < len; i += 4096) {
		p[i] ^= 0xff;
		ref[i] ^= 0xff;
	}
	CHECKF(hmsync(p, len, MS_SYNC) == 0, "%s", hm_errormsg());
	bad = tu_cmp_file(path, ref, len);
	CHECKF(bad == -1, "after hmsync the file differs at %lld", bad);
	p[5] ^= 0x0f;
	ref[5] ^= 0x0f;
	/* The last huge page leaves first, written back on its way out; parts are whole pages. */
	p[len - HP + 7] ^= 0x0f;
	ref[len - HP + 7] ^= 0x0f;
	CHECK(hmunmap(p + 4096, 4096) == -1 && errno == EINVAL);
	CHECKF(hmunmap(p + len - HP, 4096) == 0, "%s", hm_errormsg());
	int fd = open(path, O_RDONLY);
	unsigned char b = 0;
	CHECK(fd >= 0 && tu_read_all(fd, &b, 1, (off_t)(len - HP + 7)) == 0);
	close(fd);
	CHECK(b == ref[len - HP + 7]);
	CHECK(p[len - HP - 1] == ref[len - HP - 1]);
	CHECKF(hmunmap(p, len) == 0, "%s", hm_errormsg());
	bad = tu_cmp_file(path, ref, len);
	CHECKF(bad == -1, "after hmunmap the file differs at %lld", bad);
	p = hmmap(NULL, len, PROT_READ, HM_CACHED | HM_HUGETLB, uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	bad = tu_cmp_mem(p, ref, len);
	CHECKF(bad == -1, "read back differs at %lld", bad);
	CHECK(hmunmap(p, len) == 0);
	free(ref);
}

static int hmmap_child(void *arg)
{
	RUN(hmmap_calls);
	return test_done();
}

static void test_hmmap_calls(void)
{
	const char *e[] = { "HMMAP_PAGE_SIZE=2M", "HMMAP_CACHE_SIZE=8M", NULL };

	if (why[0])
		SKIP("%s", why);
	TU_CHILD_RESULT(tu_child(e, hmmap_child, NULL));
}

static void test_pool_dry_thread(void)
{
	pool_dry_mode("thread");
}

static void test_pool_dry_sigbus(void)
{
	pool_dry_mode("sigbus");
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "tail");
	setenv("HMMAP_PAGE_SIZE", "4K", 1);
	tu_hugetlb_pool(8, why, sizeof why);
	/* The fault-mode children fork before this process touches the library. */
	RUN(test_pool_dry_thread);
	RUN(test_pool_dry_sigbus);
	RUN(test_hmmap_calls);
	RUN(test_bad_requests);
	RUN(test_pool_too_small);
	RUN(test_file_tail_and_pool);
	RUN(test_resize_gives_back);
	tu_cleanup();
	return test_done();
}
