/* SPDX-License-Identifier: MIT */
/*
 * Cached regions stay correct when the system hands out large shmem folios:
 * shmem_enabled set to always, within_size or force (a size's own
 * hugepages-NkB/shmem_enabled governs anonymous shmem only, not a memfd's
 * writes, on this kernel). A write() into a region's memfd then
 * allocates a large folio, whose other pages appear in the memfd as zeros;
 * a later fault on one of them found a frame and mapped it instead of
 * reading the store. Every readahead marker was filled that way, and the
 * integrity tests read zeros under each of these settings. A hybrid
 * region's frames, written the same way, each took a folio of up to 2 MiB.
 *
 * As root, the parent sets each setting, runs the cases in a child, and
 * puts the setting back however the child ends; otherwise the cases skip.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "core/internal.h"
#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define THP "/sys/kernel/mm/transparent_hugepage/"

static char path[512];

/* The bracketed word of a sysfs choice file into out; 0 or -1. */
static int thp_get(const char *file, char *out, size_t cap)
{
	char buf[256], *a, *b;
	FILE *f = fopen(file, "re");

	if (!f)
		return -1;
	a = fgets(buf, sizeof buf, f);
	fclose(f);
	if (!a || !(a = strchr(buf, '[')) || !(b = strchr(a, ']')) || (size_t)(b - a) > cap)
		return -1;
	snprintf(out, cap, "%.*s", (int)(b - a - 1), a + 1);
	return 0;
}

static int thp_set(const char *file, const char *v)
{
	FILE *f = fopen(file, "we");

	if (!f)
		return -1;
	int bad = fprintf(f, "%s\n", v) < 0;
	return (fclose(f) || bad) ? -1 : 0;
}

/* Every byte read back through regions of 4 KiB and 64 KiB pages, twice, with readahead. */
static void test_sequential_reads(void)
{
	const size_t len = 32 << 20;
	unsigned char *ref = tu_make_file(path, len, 11);
	static const size_t ps[] = { 4096, 65536 };
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;

	CHECK(ref);
	CHECK(hm_cache_new(&c, 8 << 20, "clock") == 0);
	CHECK(hm_store_open(&s, path, HM_STORE_RDONLY) == 0);
	for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
		CHECKF(hm_region_map(&r, c, s, 0, len, PROT_READ, HM_CACHED, ps[k]) == 0, "%s",
		       hm_errormsg());
		for (int pass = 0; pass < 2; pass++) {
			long long bad = tu_cmp_mem(hm_region_addr(r), ref, len);
			CHECKF(bad == -1, "%zu-byte pages, pass %d: wrong data at offset %lld", ps[k],
			       pass, bad);
		}
		CHECK(hm_region_unmap(r) == 0);
	}
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

/* Random writes and sequential reads through a small cache: the file ends as the reference. */
static void test_writes_evicted_and_read_back(void)
{
	const size_t len = 16 << 20;
	unsigned char *ref = tu_make_file(path, len, 12);
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	uint64_t seed = 99;

	CHECK(ref);
	CHECK(hm_cache_new(&c, 2 << 20, "fifo") == 0);
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0);
	unsigned char *b = hm_region_addr(r);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 5000; i++) {
			size_t off = (tu_rnd(&seed) % (len / 8)) * 8;
			uint64_t v = tu_rnd(&seed);
			memcpy(b + off, &v, 8);
			memcpy(ref + off, &v, 8);
		}
		long long bad = tu_cmp_mem(b, ref, len); /* a sequential pass: readahead */
		CHECKF(bad == -1, "round %d: wrong data at offset %lld", round, bad);
	}
	CHECKF(hm_sync(b, len, MS_SYNC) == 0, "%s", hm_errormsg());
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	long long bad = tu_cmp_file(path, ref, len);
	CHECKF(bad == -1, "the file differs at offset %lld", bad);
	free(ref);
}

/* A hybrid region's frames stay single pages: memory stays within the budget. */
static void test_hybrid_frames(void)
{
	const size_t len = 32 << 20, budget = 1 << 20;
	unsigned char *ref = tu_make_file(path, len, 13);
	char uri[600];
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct stat sb;

	CHECK(ref);
	snprintf(uri, sizeof uri, "pmem:%s", path);
	CHECK(hm_cache_new(&c, budget, NULL) == 0);
	CHECK(hm_store_open(&s, uri, 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_HYBRID, 0) == 0, "%s",
	       hm_errormsg());
	unsigned char *b = hm_region_addr(r);
	/* One write every 128 KiB: 256 pages held, in every 2 MiB of the region. */
	for (size_t off = 0; off < len; off += 128 << 10) {
		b[off + 100] ^= 0xff;
		ref[off + 100] ^= 0xff;
	}
	CHECK(fstat(r->memfd, &sb) == 0);
	CHECKF((uint64_t)sb.st_blocks * 512 <= 2 * budget,
	       "%llu bytes of frames for a budget of %zu", (unsigned long long)sb.st_blocks * 512,
	       budget);
	long long bad = tu_cmp_mem(b, ref, len);
	CHECKF(bad == -1, "wrong data at offset %lld", bad);
	CHECKF(hm_sync(b, len, MS_SYNC) == 0, "%s", hm_errormsg());
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	bad = tu_cmp_file(path, ref, len);
	CHECKF(bad == -1, "the file differs at offset %lld", bad);
	free(ref);
}

static int cases(void *arg)
{
	RUN(test_sequential_reads);
	RUN(test_writes_evicted_and_read_back);
	RUN(test_hybrid_frames);
	return test_done();
}

/* Sets file to v for a child running the cases, then puts it back. */
static void under(const char *file, const char *v)
{
	char old[32];
	int st;

	if (geteuid())
		SKIP("needs root to change %s", file);
	if (thp_get(file, old, sizeof old))
		SKIP("this kernel has no %s", file);
	if (thp_set(file, v))
		SKIP("cannot set %s to %s", file, v);
	st = tu_child(NULL, cases, NULL);
	if (thp_set(file, old))
		fprintf(stderr, "could not put %s back to %s\n", file, old);
	TU_CHILD_RESULT(st);
}

static void test_within_size(void)
{
	under(THP "shmem_enabled", "within_size");
}

static void test_always(void)
{
	under(THP "shmem_enabled", "always");
}

static void test_force(void)
{
	under(THP "shmem_enabled", "force");
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	RUN(test_within_size);
	RUN(test_always);
	RUN(test_force);
	tu_cleanup();
	return test_done();
}
