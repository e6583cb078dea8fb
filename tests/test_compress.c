/* SPDX-License-Identifier: MIT */
/*
 * The compressed stores lz4: and zstd:. Pages of every kind (compressible,
 * incompressible, zeros) read back as written, at any offset and length;
 * the statistics count each kind and give the ratio; a full pool refuses a
 * write with -ENOSPC and keeps the old contents; freed room is used again;
 * the levels are settable (lz4's picks LZ4HC); bad URIs and controls are refused with a message;
 * and a region over a compressed store keeps its data through eviction.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define PG 4096u

static char page_a[PG] __attribute__((aligned(4096)));
static char page_b[PG] __attribute__((aligned(4096)));

static void text(char *p, uint64_t i)
{
	memset(p, 0, PG);
	for (unsigned k = 0; k < PG; k += 64)
		snprintf(p + k, 64, "record %llu field %u: the quick brown fox", (unsigned long long)i, k);
}

static void kinds(const char *uri)
{
	struct hm_store *s;
	struct hm_tier_stats st;

	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s: %s", uri, hm_errormsg());
	CHECK(hm_store_size(s) == 4u << 20); /* space: 4 x the 1 MiB pool */
	/* 10 text pages, 5 random, 3 zero. */
	for (uint64_t i = 0; i < 18; i++) {
		if (i < 10)
			text(page_a, i);
		else if (i < 15)
			tu_fill(page_a, PG, i);
		else
			memset(page_a, 0, PG);
		CHECK(hm_store_write(s, page_a, PG, i * PG) == 0);
	}
	for (uint64_t i = 0; i < 18; i++) {
		if (i < 10)
			text(page_a, i);
		else if (i < 15)
			tu_fill(page_a, PG, i);
		else
			memset(page_a, 0, PG);
		CHECK(hm_store_read(s, page_b, PG, i * PG) == 0);
		CHECKF(!memcmp(page_a, page_b, PG), "%s page %llu", uri, (unsigned long long)i);
	}
	/* Never written reads as zeros; so does past the end. */
	memset(page_b, 1, PG);
	CHECK(hm_store_read(s, page_b, PG, 100 * PG) == 0);
	CHECK(page_b[0] == 0 && page_b[PG - 1] == 0);
	CHECK(hm_store_read(s, page_b, PG, hm_store_size(s) + PG) == 0 && page_b[7] == 0);
	CHECK(hm_tier_stats(s, &st) == 0);
	CHECK(st.index == -1);
	CHECK(st.pages == 18 && st.compressed_pages == 10 && st.raw_pages == 5 && st.zero_pages == 3);
	CHECK(st.capacity_bytes == 1u << 20);
	CHECK(st.used_bytes >= 5 * PG + st.compressed_bytes && st.used_bytes < 15 * PG);
	CHECKF(st.ratio > 18.0 * PG / (15.0 * PG), "ratio %.2f", st.ratio);
	/* Overwriting a text page with random bytes turns it raw. */
	tu_fill(page_a, PG, 77);
	CHECK(hm_store_write(s, page_a, PG, 0) == 0);
	CHECK(hm_tier_stats(s, &st) == 0);
	CHECK(st.compressed_pages == 9 && st.raw_pages == 6);
	/* Unaligned pieces, across a page boundary. */
	char piece[300];
	tu_fill(piece, sizeof piece, 5);
	CHECK(hm_store_write(s, piece, sizeof piece, 3 * PG - 100) == 0);
	char back[300];
	CHECK(hm_store_read(s, back, sizeof back, 3 * PG - 100) == 0);
	CHECK(!memcmp(piece, back, sizeof back));
	text(page_a, 3);
	CHECK(hm_store_read(s, page_b, PG, 3 * PG) == 0);
	CHECK(!memcmp(page_a + 200, page_b + 200, PG - 200));
	/* Past the space: no room. */
	CHECK(hm_store_write(s, page_a, PG, hm_store_size(s)) == -ENOSPC);
	CHECK(hm_store_close(s) == 0);
}

static void t_lz4_kinds(void)
{
	kinds("lz4:1M");
}

static void t_zstd_kinds(void)
{
	kinds("zstd:1M,level=5");
}

/* *out: pool bytes that 64 pages of mixed text take in a store opened with `uri`. */
static void packed_bytes(const char *uri, uint64_t *out)
{
	struct hm_store *s;
	struct hm_tier_stats st = { 0 };

	*out = 0;
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s: %s", uri, hm_errormsg());
	for (uint64_t i = 0; i < 64; i++) {
		text(page_a, i * 7919);
		tu_fill(page_a + 1024 * (i % 4), 256, i); /* some noise in the text */
		CHECK(hm_store_write(s, page_a, PG, i * PG) == 0);
	}
	for (uint64_t i = 0; i < 64; i++) {
		text(page_a, i * 7919);
		tu_fill(page_a + 1024 * (i % 4), 256, i);
		CHECK(hm_store_read(s, page_b, PG, i * PG) == 0);
		CHECKF(!memcmp(page_a, page_b, PG), "%s: page %llu", uri, (unsigned long long)i);
	}
	CHECK(hm_tier_stats(s, &st) == 0 && st.compressed_pages == 64);
	CHECK(hm_store_close(s) == 0);
	*out = st.compressed_bytes;
}

/* lz4's level picks LZ4HC, denser than the fast mode; zstd's 0 is its default. */
static void t_levels(void)
{
	kinds("lz4:1M,level=9");
	uint64_t fast, hc, quick, z0, z3;
	packed_bytes("lz4:1M", &fast);
	packed_bytes("lz4:1M,level=12", &hc);
	packed_bytes("lz4:1M,accel=64", &quick);
	CHECKF(hc && hc < fast && fast < quick, "LZ4HC-12 %llu, fast %llu, accel=64 %llu bytes",
	       (unsigned long long)hc, (unsigned long long)fast, (unsigned long long)quick);
	packed_bytes("zstd:1M,level=0", &z0);
	packed_bytes("zstd:1M,level=3", &z3);
	CHECKF(z0 && z0 == z3, "zstd level 0: %llu bytes, level 3: %llu", (unsigned long long)z0,
	       (unsigned long long)z3);
	/* Every level compresses on the contexts made at open (none keeps pages raw). */
	uint64_t zlow, zhigh, zmax;
	packed_bytes("zstd:1M,level=-50", &zlow);
	packed_bytes("zstd:1M,level=19", &zhigh);
	packed_bytes("zstd:1M,level=22", &zmax);
	CHECKF(zmax && zhigh && zhigh < zlow, "zstd level -50: %llu bytes, 19: %llu, 22: %llu",
	       (unsigned long long)zlow, (unsigned long long)zhigh, (unsigned long long)zmax);
	/* At run time, for later writes. */
	struct hm_store *s;
	CHECK(hm_store_open(&s, "lz4:1M", 0) == 0);
	CHECK(hm_store_ctl(s, "level=12") == 0);
	text(page_a, 5);
	CHECK(hm_store_write(s, page_a, PG, 0) == 0);
	CHECK(hm_store_ctl(s, "level=0") == 0 && hm_store_ctl(s, "accel=4") == 0);
	CHECK(hm_store_write(s, page_a, PG, PG) == 0);
	CHECK(hm_store_read(s, page_b, PG, 0) == 0 && !memcmp(page_a, page_b, PG));
	CHECK(hm_store_read(s, page_b, PG, PG) == 0 && !memcmp(page_a, page_b, PG));
	CHECK(hm_store_ctl(s, "level=13") == -EINVAL && strstr(hm_errormsg(), "LZ4HC"));
	CHECK(hm_store_close(s) == 0);
}

static void t_pool_full(void)
{
	struct hm_store *s;
	struct hm_tier_stats st;
	uint64_t i;
	int rc = 0;

	/* 64 KiB of pool: 16 random pages at most. */
	CHECK(hm_store_open(&s, "lz4:64K,space=1M", 0) == 0);
	for (i = 0; i < 64; i++) {
		tu_fill(page_a, PG, i);
		rc = hm_store_write(s, page_a, PG, i * PG);
		if (rc)
			break;
	}
	CHECK(rc == -ENOSPC && i == 16);
	/* A refused overwrite leaves the old contents. */
	tu_fill(page_a, PG, 1000);
	CHECK(hm_store_write(s, page_a, PG, 20 * PG) == -ENOSPC);
	CHECK(hm_store_read(s, page_b, PG, 20 * PG) == 0 && page_b[0] == 0);
	/* Text still fits where random pages do not... */
	CHECK(hm_tier_stats(s, &st) == 0 && st.used_bytes == 16 * PG);
	/* ...once a page is freed: zeros give back its room. */
	memset(page_a, 0, PG);
	CHECK(hm_store_write(s, page_a, PG, 0) == 0);
	CHECK(hm_tier_stats(s, &st) == 0 && st.used_bytes == 15 * PG);
	text(page_a, 1);
	CHECK(hm_store_write(s, page_a, PG, 40 * PG) == 0);
	CHECK(hm_store_read(s, page_b, PG, 40 * PG) == 0 && !memcmp(page_a, page_b, PG));
	/* The store's own statistics say the same: what it holds and what that takes. */
	struct hm_stats ss;
	CHECK(hm_tier_stats(s, &st) == 0 && hm_store_stats(s, &ss) == 0);
	CHECKF(ss.held_bytes == st.pages * PG && ss.pool_bytes == st.used_bytes &&
		       ss.held_bytes > ss.pool_bytes,
	       "held %llu pool %llu; %llu pages in %llu bytes", (unsigned long long)ss.held_bytes,
	       (unsigned long long)ss.pool_bytes, (unsigned long long)st.pages,
	       (unsigned long long)st.used_bytes);
	for (i = 1; i < 16; i++) {
		tu_fill(page_a, PG, i);
		CHECK(hm_store_read(s, page_b, PG, i * PG) == 0);
		CHECKF(!memcmp(page_a, page_b, PG), "page %llu", (unsigned long long)i);
	}
	CHECK(hm_store_close(s) == 0);
}

static void t_bad_uris(void)
{
	static const char *bad[] = {
		"lz4:abc", "lz4:1K", "zstd:level=99", "lz4:2T", "zstd:1M,level=99", "zstd:1M,level=",
		"zstd:1M,level=x", "lz4:1M,level=13", "lz4:1M,level=-1", "lz4:1M,level=x",
		"zstd:1M,accel=2", "lz4:1M,accel=0",
		"zstd:1M,", "lz4:1M,space=1", "lz4:1M,nope=1", "lz4:1M,space",
	};
	struct hm_store *s;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = hm_store_open(&s, bad[i], 0);
		CHECKF(rc == -EINVAL, "%s gave %d", bad[i], rc);
		CHECKF(*hm_errormsg(), "%s: no message", bad[i]);
	}
	CHECK(hm_store_open(&s, "zstd:1M", 0) == 0);
	CHECK(hm_store_ctl(s, "level=19") == 0);
	CHECK(hm_store_ctl(s, "level=-5") == 0);
	CHECK(hm_store_ctl(s, "level=1000") == -EINVAL);
	CHECK(hm_store_ctl(s, "level") == -EINVAL);
	CHECK(hm_store_ctl(s, "space=1M") == -EINVAL);
	CHECK(hm_store_ctl(s, "accel=3") == -EINVAL);
	text(page_a, 9);
	CHECK(hm_store_write(s, page_a, PG, 0) == 0);
	CHECK(hm_store_read(s, page_b, PG, 0) == 0 && !memcmp(page_a, page_b, PG));
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_store_open(&s, "lz4:1M,accel=8", 0) == 0);
	CHECK(hm_store_ctl(s, "accel=1") == 0);
	CHECK(hm_store_ctl(s, "level=30") == -EINVAL);
	CHECK(hm_store_close(s) == 0);
	/* Listed with the other stores. */
	size_t n, found = 0;
	const struct hm_store_ops *const *l = hm_store_list(&n);
	for (size_t i = 0; i < n; i++)
		found += !strcmp(l[i]->scheme, "lz4") + !strcmp(l[i]->scheme, "zstd") +
			 !strcmp(l[i]->scheme, "tiers");
	CHECK(found == 3);
}

static void t_region_over_compressed(void)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	size_t len = 4u << 20;

	CHECK(hm_store_open(&s, "zstd:2M", 0) == 0);
	CHECK(hm_cache_new(&c, 256 << 10, "clock") == 0);
	CHECK(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 0) == 0);
	char *p = hm_region_addr(r);
	for (size_t i = 0; i < len / PG; i++)
		text(p + i * PG, i);
	for (size_t i = 0; i < len / PG; i++) {
		text(page_a, i);
		CHECKF(!memcmp(page_a, p + i * PG, PG), "page %zu", i);
	}
	struct hm_stats rs;
	CHECK(hm_region_stats(r, &rs) == 0 && rs.evictions > 0);
	CHECK(hm_region_unmap(r) == 0);
	struct hm_tier_stats st;
	CHECK(hm_tier_stats(s, &st) == 0);
	CHECKF(st.pages == len / PG && st.ratio > 4.0, "pages %llu ratio %.2f",
	       (unsigned long long)st.pages, st.ratio);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_store_close(s) == 0);
	/* hmmap() takes the URI too. */
	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, "lz4:1M", 0);
	CHECK(p != MAP_FAILED);
	memset(p, 'x', len);
	CHECK(hmsync(p, len, MS_SYNC) == 0);
	CHECK(p[len - 1] == 'x');
	CHECK(hmunmap(p, len) == 0);
	/* Without a size the pool may take a fifth of RAM (zswap's limit), options still apply. */
	const char *bare[] = { "lz4:", "zstd:", "zstd:level=3" };
	for (size_t i = 0; i < 3; i++) {
		p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, bare[i], 0);
		CHECKF(p != MAP_FAILED, "%s: %s", bare[i], hm_errormsg());
		if (p == MAP_FAILED)
			continue;
		memset(p, 'y', len);
		CHECK(hmsync(p, len, MS_SYNC) == 0);
		CHECK(p[0] == 'y' && p[len - 1] == 'y');
		CHECK(hmunmap(p, len) == 0);
	}
}

/*
 * In sigbus fault mode an eviction, and so a compression, runs inside the
 * SIGBUS handler of the faulting thread, where malloc() is not safe. A zstd
 * context allocated its workspace at its first compression, and again when
 * the level grew: TSan reported "signal-unsafe call inside of a signal".
 * The contexts are static, on workspaces made at open for every level: the
 * passes go through the default, high, negative and the highest levels.
 */
static int zstd_in_handler(void *arg)
{
	size_t n = 256, pg = 4096;
	char *p = hmmap(NULL, n * pg, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:128K,tiering=none > zstd:4M", 0);

	(void)arg;
	if (p == MAP_FAILED) {
		printf("hmmap: %s\n", hm_errormsg());
		return 1;
	}
	struct hm_store *z = hm_chain_tier(hm_region_store(hm_region_find(p)), 1);
	static const char *const level[] = { NULL, "level=19", "level=-50", "level=22", "level=3" };
	for (int pass = 0; pass < (int)(sizeof level / sizeof *level); pass++) {
		if (level[pass] && hm_store_ctl(z, level[pass])) {
			printf("%s: %s\n", level[pass], hm_errormsg());
			return 1;
		}
		for (size_t i = 0; i < n; i++)
			snprintf(p + i * pg, pg, "page %zu of pass %d, text that compresses", i, pass);
		for (size_t i = 0; i < n; i++) {
			char want[64];
			snprintf(want, sizeof want, "page %zu of pass %d, text that compresses", i, pass);
			if (strcmp(p + i * pg, want)) {
				printf("page %zu differs\n", i);
				return 1;
			}
		}
	}
	return hmunmap(p, n * pg) ? 1 : 0;
}

static void t_zstd_in_sigbus_handler(void)
{
	static const char *const env[] = { "HMMAP_FAULT_MODE=sigbus", NULL };

	TU_CHILD_RESULT(tu_child(env, zstd_in_handler, NULL));
}

int main(void)
{
	RUN(t_zstd_in_sigbus_handler); /* first: before this process starts hmmap's threads */
	RUN(t_lz4_kinds);
	RUN(t_zstd_kinds);
	RUN(t_levels);
	RUN(t_pool_full);
	RUN(t_bad_uris);
	RUN(t_region_over_compressed);
	tu_cleanup();
	return test_done();
}
