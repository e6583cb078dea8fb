/* SPDX-License-Identifier: MIT */
/*
 * Partial unmaps: hmunmap() of part of a region, as munmap(2) allows. What
 * leaves is written to the store first (anonymous memory over hmmap()'s own
 * chain is dropped), touching it raises SIGSEGV, the hm_* range calls treat
 * it as unmapped, and the rest of the region keeps working; the region goes
 * when its last part does. HM_HYBRID parts are in test_hybrid.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define PG 4096u

static char path[512];

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	if (!tu_jb)
		abort();
	siglongjmp(*tu_jb, 1);
}

/* A file of n pages, page i filled with byte i ^ seed. */
static int make_file(size_t n, unsigned seed)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	unsigned char buf[PG];

	if (fd < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		memset(buf, (int)((i ^ seed) & 0xff), PG);
		if (tu_write_all(fd, buf, PG, (off_t)(i * PG))) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* A region of n pages of a fresh file (make_file) on its own cache. */
struct setup {
	int fd;
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	unsigned char *p;
};

static int setup_open(struct setup *x, size_t n, unsigned seed, size_t cache, size_t ps,
		      const char *policy)
{
	memset(x, 0, sizeof *x);
	x->fd = make_file(n, seed);
	if (x->fd < 0 || hm_cache_new(&x->c, cache, policy) || hm_store_open(&x->s, path, 0) ||
	    hm_region_map(&x->r, x->c, x->s, 0, n * PG, PROT_READ | PROT_WRITE, HM_CACHED, ps))
		return -1;
	x->p = hm_region_addr(x->r);
	return 0;
}

/* The region must be gone already (unmapped whole, or a part at a time). */
static int setup_close(struct setup *x)
{
	int rc = hm_store_close(x->s) | hm_cache_free(x->c);

	close(x->fd);
	return rc;
}

/* The tail goes: its writes reach the file, it faults, the head stays. */
static void t_unmap_tail(void)
{
	size_t n = 256, len = n * PG;
	int fd = make_file(n, 0);
	CHECK(fd >= 0);
	unsigned char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	for (size_t i = 0; i < n; i++)
		p[i * PG + 7] = 0xa5;
	CHECKF(hmunmap(p + len / 2, len / 2) == 0, "%s", hm_errormsg());
	CHECK(hm_region_find(p) != NULL);
	/* Written back on the way out, not only at the end. */
	for (size_t i = n / 2; i < n; i++) {
		unsigned char b;
		CHECK(tu_read_all(fd, &b, 1, (off_t)(i * PG + 7)) == 0);
		CHECKF(b == 0xa5, "page %zu not written back before it left", i);
	}
	/* The head: its data, and it still takes writes. */
	for (size_t i = 0; i < n / 2; i++)
		CHECK(p[i * PG] == (unsigned char)i && p[i * PG + 7] == 0xa5);
	p[0] = 0x11;
	unsigned char v = 0;
	CHECK(tu_try_read8(p + len / 2, &v) == 1);
	CHECK(tu_try_read8(p + len - 1, &v) == 1);
	CHECK(tu_try_read8(p + len / 2 - 1, &v) == 0 && v == (unsigned char)(n / 2 - 1));
	/* The range calls see it unmapped, and refuse before doing anything. */
	CHECK(hmsync(p + len / 2, PG, MS_SYNC) == -1 && errno == ENOMEM);
	CHECK(hmsync(p, len, MS_SYNC) == -1 && errno == ENOMEM);
	CHECK(hm_advise(p + len / 2, PG, HM_ADV_WILLNEED) == -ENOMEM);
	CHECK(hm_prefault(p + len - PG, PG, 0) == -ENOMEM);
	CHECK(hm_protect(p, len, PROT_READ | PROT_WRITE) == -ENOMEM);
	CHECK(tu_try_read8(p + len / 2, &v) == 1);
	CHECK(hmsync(p, len / 2, MS_SYNC) == 0);
	unsigned char b0;
	CHECK(tu_read_all(fd, &b0, 1, 0) == 0 && b0 == 0x11);
	/* Unmapping it again is no error, as for munmap. */
	CHECK(hmunmap(p + len / 2, PG) == 0);
	/* The whole range: what is left goes, and the region with it. */
	CHECKF(hmunmap(p, len) == 0, "%s", hm_errormsg());
	CHECK(hm_region_find(p) == NULL);
	close(fd);
}

/*
 * A sparse region of 2^30 pages (4 TiB), three pages touched: its middle
 * half unmapped, then the rest. The middle's chunks become one shared
 * chunk of GONE pages, which every later walk went through entry by entry
 * (2.7 s and 4.4 s here, 44 s for a 32 TiB region); test_pagestate checks
 * that walks now skip it, this the calls' results.
 */
static void t_unmap_sparse_halves(void)
{
	const size_t len = 1ull << 42;
	unsigned char v = 0;

	unsigned char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, "mem:4T", 0);
	if (p == MAP_FAILED && errno == ENOMEM && tu_under("tsan"))
		SKIP("ThreadSanitizer cannot map 4 TiB of address space");
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	p[0] = 1;
	p[len / 2] = 2;
	p[len - 1] = 3;
	CHECKF(hmunmap(p + len / 4, len / 2) == 0, "%s", hm_errormsg());
	CHECK(tu_try_read8(p + len / 2, &v) == 1);
	CHECK(p[0] == 1 && p[len - 1] == 3);
	CHECK(hmsync(p, len / 4, MS_SYNC) == 0);
	CHECK(hm_advise(p + len / 4 * 3, len / 4, HM_ADV_DONTNEED) == 0);
	CHECK(p[len - 1] == 3);
	CHECKF(hmunmap(p, len) == 0, "%s", hm_errormsg());
	CHECK(hm_region_find(p) == NULL);
}

/* Head, middle and tail in turn, with a cache smaller than the region. */
static void t_unmap_pieces_under_eviction(void)
{
	size_t n = 1024, len = n * PG;
	struct setup x;
	CHECKF(setup_open(&x, n, 0x5a, 256 * PG, PG, "clock") == 0, "%s", hm_errormsg());
	unsigned char *p = x.p;
	struct hm_region *r = x.r;
	int fd = x.fd;
	for (size_t i = 0; i < n; i++)
		p[i * PG + 100] = (unsigned char)(i * 7);
	CHECKF(hmunmap(p + 300 * PG, 200 * PG) == 0, "%s", hm_errormsg());
	CHECKF(hmunmap(p, 100 * PG) == 0, "%s", hm_errormsg());
	struct hm_stats st;
	CHECK(hm_region_stats(r, &st) == 0);
	CHECK(st.resident_bytes <= 256 * PG);
	/* The pages left keep working through eviction. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 100; i < n; i++) {
			if (i >= 300 && i < 500)
				continue;
			CHECKF(p[i * PG + 100] == (unsigned char)(i * 7 + pass), "page %zu pass %d",
			       i, pass);
			p[i * PG + 100] = (unsigned char)(i * 7 + pass + 1);
		}
	}
	CHECKF(hmunmap(p + 100 * PG, 200 * PG) == 0, "%s", hm_errormsg());
	CHECK(hm_region_find(p + len - PG) == r);
	CHECKF(hmunmap(p + 500 * PG, (n - 500) * PG) == 0, "%s", hm_errormsg());
	CHECK(hm_region_find(p + len - PG) == NULL);
	for (size_t i = 0; i < n; i++) {
		unsigned char b;
		unsigned char want = i < 100 || (i >= 300 && i < 500) ? (unsigned char)(i * 7)
								      : (unsigned char)(i * 7 + 2);
		CHECK(tu_read_all(fd, &b, 1, (off_t)(i * PG + 100)) == 0);
		CHECKF(b == want, "page %zu: %u, not %u", i, b, want);
		CHECK(tu_read_all(fd, &b, 1, (off_t)(i * PG)) == 0 && b == (unsigned char)(i ^ 0x5a));
	}
	CHECK(setup_close(&x) == 0);
}

/* Pins and 64 KiB pages: a pin leaves with its page; a part must be whole pages. */
static void t_unmap_pinned_large_pages(void)
{
	size_t len = 64 * 65536;
	struct setup x;
	CHECKF(setup_open(&x, len / PG, 3, 32 * 65536, 65536, "fifo") == 0, "%s", hm_errormsg());
	unsigned char *p = x.p;
	struct hm_region *r = x.r;
	CHECKF(hm_prefault(p + 8 * 65536, 8 * 65536, HM_PREFAULT_PIN) == 0, "%s", hm_errormsg());
	struct hm_stats st;
	CHECK(hm_region_stats(r, &st) == 0 && st.pinned_pages == 8);
	/* Not on a page boundary of the region: refused, nothing changes. */
	CHECK(hmunmap(p + 8 * 65536 + PG, 65536) == -1 && errno == EINVAL);
	CHECK(hm_region_stats(r, &st) == 0 && st.pinned_pages == 8);
	/* A length inside a page takes the whole page, as munmap rounds up. */
	CHECKF(hmunmap(p + 8 * 65536, 4 * 65536 - PG) == 0, "%s", hm_errormsg());
	CHECK(hm_region_stats(r, &st) == 0);
	CHECKF(st.pinned_pages == 4, "%llu pinned", (unsigned long long)st.pinned_pages);
	unsigned char v;
	CHECK(tu_try_read8(p + 11 * 65536 + 65535, &v) == 1);
	CHECK(tu_try_read8(p + 12 * 65536, &v) == 0 && v == (unsigned char)((12 * 16) ^ 3));
	CHECK(hm_unpin(p + 12 * 65536, 4 * 65536) == 0);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(setup_close(&x) == 0);
}

/* Anonymous memory over hmmap()'s own chain: what leaves is dropped from every tier. */
static void t_unmap_anonymous_chain(void)
{
	size_t n = 1024, len = n * PG;
	/* DRAM holds it all: nothing moves but what the test moves. */
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:8M,tiering=none > mem:8M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_region *r = hm_region_find(p);
	struct hm_store *ch = hm_region_store(r);
	struct hm_store *m = hm_chain_tier(ch, 1);
	struct hm_tier_stats t1;
	struct hm_stats before, after, rs;
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, (int)(i % 251) + 1, PG);
	/* The first half down to mem:, the second dirty in DRAM. */
	CHECKF(hm_bind(p, len / 2, m, HM_MIGRATE) == (long)(n / 2), "%s", hm_errormsg());
	CHECK(hm_tier_stats(m, &t1) == 0 && t1.pages == n / 2);
	CHECK(hm_store_stats(m, &before) == 0);
	/* Half of each leaves. */
	CHECKF(hmunmap(p + len / 4, len / 2) == 0, "%s", hm_errormsg());
	CHECK(hm_store_stats(m, &after) == 0);
	CHECKF(after.bytes_written == before.bytes_written, "%llu bytes written down",
	       (unsigned long long)(after.bytes_written - before.bytes_written));
	CHECK(hm_tier_stats(m, &t1) == 0);
	CHECKF(t1.pages == n / 4, "%llu pages in mem:", (unsigned long long)t1.pages);
	CHECK(hm_region_stats(r, &rs) == 0);
	CHECKF(rs.resident_bytes == len / 4, "%llu bytes resident",
	       (unsigned long long)rs.resident_bytes);
	for (size_t i = 0; i < n; i += 7) {
		void *q = p + i * PG;
		int status = 99;
		bool gone = i >= n / 4 && i < 3 * n / 4;
		CHECK(hm_move(1, &q, NULL, &status, 0) == 0);
		CHECKF(gone ? status == -EFAULT : status == (i < n / 4 ? 1 : 0), "page %zu: status %d",
		       i, status);
	}
	CHECK(hm_bind(p + len / 4, PG, m, HM_MIGRATE) == -EFAULT);
	for (size_t i = 0; i < n; i++) {
		if (i >= n / 4 && i < 3 * n / 4)
			continue;
		CHECKF(p[i * PG + 9] == (char)((i % 251) + 1), "page %zu", i);
	}
	CHECK(hmunmap(p, len) == 0);
	CHECK(hm_region_find(p) == NULL);
}

struct race {
	unsigned char *p;
	size_t keep; /* pages [0, keep) stay */
	size_t len;  /* bytes of the whole mapping */
	_Atomic int stop;
	_Atomic long errors;
	_Atomic long refused; /* range calls over the whole mapping refused for its holes */
	char why[256];        /* the first unexpected result of a range call */
};

/* Writes a counter into each kept page in turn and checks what it wrote last time. */
static void *writer(void *arg)
{
	struct race *k = arg;
	unsigned round = 1;

	while (!atomic_load(&k->stop)) {
		for (size_t i = 0; i < k->keep; i++) {
			uint32_t *w = (uint32_t *)(k->p + i * PG);
			if (*w != round - 1)
				atomic_fetch_add(&k->errors, 1);
			*w = round;
		}
		round++;
	}
	return NULL;
}

/* Reads the kept pages in order, so that readahead runs up to the range leaving. */
static void *reader(void *arg)
{
	struct race *k = arg;
	volatile unsigned sum = 0;

	while (!atomic_load(&k->stop))
		for (size_t i = 0; i < k->keep; i++)
			sum += k->p[i * PG + 64];
	return NULL;
}

static void range_call(struct race *k, const char *what, int rc, bool whole)
{
	if (rc == 0)
		return;
	if (whole && rc == -ENOMEM) {
		atomic_fetch_add(&k->refused, 1);
		return;
	}
	if (atomic_fetch_add(&k->errors, 1) == 0)
		snprintf(k->why, sizeof k->why, "%s%s: %d %s", what, whole ? " (whole)" : "", rc,
			 hm_errormsg());
}

/*
 * The range calls, over the head (which stays: each must succeed) and over
 * the whole mapping (which may be losing its tail: success, or ENOMEM once
 * part of it is gone), while pieces leave.
 */
static void *ranger(void *arg)
{
	struct race *k = arg;
	size_t head = k->keep * PG;

	while (!atomic_load(&k->stop)) {
		range_call(k, "hm_sync", hm_sync(k->p, head, MS_SYNC), false);
		range_call(k, "hm_sync", hm_sync(k->p, k->len, MS_ASYNC), true);
		range_call(k, "hm_advise WILLNEED", hm_advise(k->p, k->len, HM_ADV_WILLNEED), true);
		range_call(k, "hm_advise DONTNEED", hm_advise(k->p, head / 4, HM_ADV_DONTNEED),
			   false);
		range_call(k, "hm_prefault", hm_prefault(k->p, head / 8, 0), false);
	}
	return NULL;
}

/*
 * The tail leaves a piece at a time while one thread writes the head,
 * another reads it through a cache that evicts, and a third syncs, drops
 * and prefaults the head and calls the range calls over the whole mapping:
 * no write is lost, every call over the head succeeds, and the pieces'
 * last contents are in the file.
 */
static void t_unmap_while_used(void)
{
	size_t n = 2048, len = n * PG;
	struct setup x;
	CHECKF(setup_open(&x, n, 0, 512 * PG, PG, "clock") == 0, "%s", hm_errormsg());
	unsigned char *p = x.p;
	struct hm_region *r = x.r;
	int fd = x.fd;
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, 0, 4); /* the counters start at 0 */
	for (size_t i = n / 2; i < n; i++)
		p[i * PG + 8] = 0x77;
	struct race k = { .p = p, .keep = n / 2, .len = len };
	pthread_t w, rd, rg;
	CHECK(pthread_create(&w, NULL, writer, &k) == 0);
	CHECK(pthread_create(&rd, NULL, reader, &k) == 0);
	CHECK(pthread_create(&rg, NULL, ranger, &k) == 0);
	int rc = 0;
	for (size_t i = n / 2; i < n && !rc; i += 64) {
		rc = hmunmap(p + i * PG, 64 * PG);
		usleep(2000);
	}
	/* Holes are there now: the whole-mapping calls must say so. */
	usleep(20000);
	atomic_store(&k.stop, 1);
	pthread_join(w, NULL);
	pthread_join(rd, NULL);
	pthread_join(rg, NULL);
	CHECKF(rc == 0, "%s", hm_errormsg());
	CHECKF(atomic_load(&k.errors) == 0, "%ld writes lost or calls failed (%s)",
	       atomic_load(&k.errors), k.why);
	CHECKF(atomic_load(&k.refused) > 0, "no call over the holes was refused");
	uint32_t last = *(uint32_t *)p;
	CHECK(hmsync(p, len / 2, MS_SYNC) == 0);
	for (size_t i = n / 2; i < n; i++) {
		unsigned char b;
		CHECK(tu_read_all(fd, &b, 1, (off_t)(i * PG + 8)) == 0);
		CHECKF(b == 0x77, "page %zu lost its write", i);
	}
	uint32_t f;
	CHECK(tu_read_all(fd, &f, 4, 0) == 0 && f == last);
	struct hm_stats st;
	CHECK(hm_region_stats(r, &st) == 0);
	CHECKF(st.resident_bytes <= 512 * PG, "%llu resident", (unsigned long long)st.resident_bytes);
	CHECK(hmunmap(p, len / 2) == 0);
	CHECK(hm_region_find(p) == NULL);
	CHECK(setup_close(&x) == 0);
}

/* A range over two regions and the gap between them: each part goes. */
static void t_unmap_across_regions(void)
{
	size_t n = 64, len = n * PG;
	int fd = make_file(2 * n, 9);
	CHECK(fd >= 0);
	/* Two regions with a gap: reserve, then map each where it should go. */
	unsigned char *res = mmap(NULL, 3 * len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(res != MAP_FAILED);
	munmap(res, 3 * len);
	unsigned char *a = hmmap(res, len, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	unsigned char *b = hmmap(res + 2 * len, len, PROT_READ | PROT_WRITE, HM_CACHED, path,
				 (off_t)len);
	CHECKF(a != MAP_FAILED && b != MAP_FAILED, "%s", hm_errormsg());
	if (a != res || b != res + 2 * len) {
		hmunmap(a, len);
		hmunmap(b, len);
		close(fd);
		SKIP("the address hints were not honoured (%p, %p for %p)", (void *)a, (void *)b,
		     (void *)res);
	}
	a[len - PG] = 1;
	b[0] = 2;
	CHECKF(hmunmap(a + len / 2, 2 * len) == 0, "%s", hm_errormsg());
	unsigned char v;
	CHECK(tu_try_read8(a + len - 1, &v) == 1);
	CHECK(tu_try_read8(b, &v) == 1);
	CHECK(tu_try_read8(b + len / 2, &v) == 0 && v == (unsigned char)((n + n / 2) ^ 9));
	CHECK(tu_read_all(fd, &v, 1, (off_t)(len - PG)) == 0 && v == 1);
	CHECK(tu_read_all(fd, &v, 1, (off_t)len) == 0 && v == 2);
	CHECK(hmunmap(a, 3 * len) == 0);
	CHECK(hm_region_find(a) == NULL && hm_region_find(b + len - 1) == NULL);
	close(fd);
}

/* HM_DIRECT: the medium keeps what was written; the part faults; endurance is counted. */
static void t_unmap_direct(void)
{
	size_t n = 64, len = n * PG;
	int fd = make_file(n, 0x21);
	CHECK(fd >= 0);
	char uri[600];
	snprintf(uri, sizeof uri, "pmem:%s", path);
	unsigned char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_DIRECT, uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	for (size_t i = 0; i < n; i++)
		p[i * PG + 1] = 0x99;
	/* Not on a page of the region: refused. */
	CHECK(hmunmap(p + 1, PG) == -1 && errno == EINVAL);
	CHECKF(hmunmap(p + len / 2, len / 2) == 0, "%s", hm_errormsg());
	unsigned char v, b;
	CHECK(tu_try_read8(p + len / 2, &v) == 1);
	CHECK(tu_try_read8(p + len / 2 - 1, &v) == 0 && v == (unsigned char)((n / 2 - 1) ^ 0x21));
	CHECK(hmsync(p + len / 2, PG, MS_SYNC) == -1 && errno == ENOMEM);
	CHECK(hm_protect(p + len / 2, PG, PROT_READ) == -ENOMEM);
	CHECK(hmsync(p, len / 2, MS_SYNC) == 0);
	for (size_t i = 0; i < n; i++)
		CHECK(tu_read_all(fd, &b, 1, (off_t)(i * PG + 1)) == 0 && b == 0x99);
	p[0] = 0x42;
	CHECK(hmunmap(p, len) == 0);
	CHECK(hm_region_find(p) == NULL);
	CHECK(tu_read_all(fd, &b, 1, 0) == 0 && b == 0x42);
	close(fd);
}

int main(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	tu_path(path, sizeof path, "unmap.dat");
	RUN(t_unmap_tail);
	RUN(t_unmap_pieces_under_eviction);
	RUN(t_unmap_pinned_large_pages);
	RUN(t_unmap_anonymous_chain);
	RUN(t_unmap_while_used);
	RUN(t_unmap_across_regions);
	RUN(t_unmap_direct);
	RUN(t_unmap_sparse_halves);
	tu_cleanup();
	return test_done();
}
