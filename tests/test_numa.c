/* SPDX-License-Identifier: MIT */
/*
 * numa: stores: the URI (nodes, ranges, size, policy) and its errors, a
 * node that does not exist, each placement policy as the kernel reports it
 * for the store's pages (get_mempolicy on a direct region), and data through
 * cached and direct regions.
 */
#include <numaif.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "bamutil.h"

#ifndef MPOL_PREFERRED_MANY
#define MPOL_PREFERRED_MANY 5
#endif
#ifndef MPOL_WEIGHTED_INTERLEAVE
#define MPOL_WEIGHTED_INTERLEAVE 6
#endif

/* The highest node number that exists here, from sysfs. */
static int max_node(void)
{
	char p[128];
	int n = -1;

	for (int i = 0; i < 1024; i++) {
		snprintf(p, sizeof p, "/sys/devices/system/node/node%d", i);
		if (access(p, F_OK) == 0)
			n = i;
	}
	return n;
}

static void test_numa_uri_errors(void)
{
	char u[128];
	int absent = max_node() + 1;

	if (max_node() < 0)
		SKIP("no NUMA information in /sys/devices/system/node");
	EXPECT_OPEN_FAILS("numa:", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:size=1M", 0, -EINVAL);         /* no node */
	EXPECT_OPEN_FAILS("numa:0,size=0", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0,size=1Q", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0,size=100T", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0,size=1M,", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:,0,size=1M", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0,,size=1M", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0,size=1M,policy=random", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0,size=1M,colour=blue", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0,size=1M,size=2M", 0, -EINVAL);   /* as hm_opts_parse() */
	EXPECT_OPEN_FAILS("numa:0,size=1M,policy=bind,policy=interleave", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0,size=1M,=3", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:size=1M,0", 0, -EINVAL);        /* nodes come first */
	EXPECT_OPEN_FAILS("numa:zero,size=1M", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0-,size=1M", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:1-0,size=1M", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:-1,size=1M", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:0x1,size=1M", 0, -EINVAL);
	EXPECT_OPEN_FAILS("numa:99999,size=1M", 0, -EINVAL);
	/* A node that does not exist: a clear error naming it. */
	snprintf(u, sizeof u, "numa:%d,size=1M", absent);
	EXPECT_OPEN_FAILS(u, 0, -ENODEV);
	snprintf(u, sizeof u, "node %d does not exist", absent);
	CHECKF(strstr(hm_errormsg(), u), "%s", hm_errormsg());
	snprintf(u, sizeof u, "numa:0,%d,size=1M,policy=interleave", absent);
	EXPECT_OPEN_FAILS(u, 0, -ENODEV);
	snprintf(u, sizeof u, "numa:0-%d,size=1M", absent);
	EXPECT_OPEN_FAILS(u, 0, -ENODEV);
	/* The mmap-shaped call reports it too. */
	snprintf(u, sizeof u, "numa:%d,size=1M", absent);
	errno = 0;
	CHECK(hmmap(NULL, 4096, PROT_READ, HM_DIRECT, u, 0) == MAP_FAILED && errno == ENODEV);
	snprintf(u, sizeof u, "numa:%d", absent);
	errno = 0;
	CHECK(hmmap(NULL, 4096, PROT_READ, HM_CACHED, u, 0) == MAP_FAILED && errno == ENODEV);
}

/* numa:N without size= spans the node's memory (MemTotal), allocated on touch. */
static void test_numa_bare(void)
{
	struct hm_store *s;
	const size_t len = 4 << 20;
	char *p;

	if (max_node() < 0)
		SKIP("no NUMA information in /sys/devices/system/node");
	CHECKF(hm_store_open(&s, "numa:0", 0) == 0, "%s", hm_errormsg());
	CHECK(hm_store_size(s) >= len);
	CHECK(hm_store_close(s) == 0);
	for (int mode = 0; mode < 2; mode++) {
		p = hmmap(NULL, len, PROT_READ | PROT_WRITE, mode ? HM_CACHED : HM_DIRECT, "numa:0", 0);
		CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
		if (p == MAP_FAILED)
			continue;
		for (size_t i = 0; i < len; i += 4096)
			p[i] = (char)(i >> 12);
		int bad = 0;
		for (size_t i = 0; i < len; i += 4096)
			bad += p[i] != (char)(i >> 12);
		CHECK(bad == 0);
		CHECK(hmsync(p, len, MS_SYNC) == 0);
		CHECK(hmunmap(p, len) == 0);
	}
}

/* Opens numa:0 with `policy`, maps it direct, and checks the kernel's view of a page. */
static int check_policy(const char *policy, int want_mode)
{
	char u[128];
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	unsigned long mask[16] = { 0 };
	int mode = -1, node = -1, rc;
	char *p;

	snprintf(u, sizeof u, "numa:0,size=4M%s%s", policy ? ",policy=" : "", policy ? policy : "");
	rc = hm_store_open(&s, u, 0);
	if (rc)
		return rc;
	if (hm_cache_new(&c, 1 << 20, NULL) ||
	    hm_region_map(&r, c, s, 0, 4 << 20, PROT_READ | PROT_WRITE, HM_DIRECT, 0))
		return -1000;
	p = hm_region_addr(r);
	memset(p, 0x5a, 4 << 20);
	/* The shared policy of the store's pages, seen through the region. */
	if (get_mempolicy(&mode, mask, 1024, p + 8192, MPOL_F_ADDR) < 0)
		return -1001;
	if (get_mempolicy(&node, NULL, 0, p + 8192, MPOL_F_ADDR | MPOL_F_NODE) < 0)
		return -1002;
	if (mode != want_mode || !(mask[0] & 1) || node != 0) {
		printf("policy %s: mode %d (want %d) mask %#lx node %d\n", policy ? policy : "(default)",
		       mode, want_mode, mask[0], node);
		return -1003;
	}
	for (size_t i = 0; i < 4 << 20; i += 4096)
		if (p[i] != 0x5a)
			return -1004;
	if (hm_region_unmap(r) || hm_store_close(s) || hm_cache_free(c))
		return -1005;
	return 0;
}

static void test_numa_policies(void)
{
	if (max_node() < 0)
		SKIP("no NUMA information");
	CHECK(check_policy(NULL, MPOL_BIND) == 0);
	CHECK(check_policy("bind", MPOL_BIND) == 0);
	CHECK(check_policy("preferred", MPOL_PREFERRED) == 0);
	CHECK(check_policy("interleave", MPOL_INTERLEAVE) == 0);
	int rc = check_policy("weighted", MPOL_WEIGHTED_INTERLEAVE);
	if (rc == -ENOTSUP)
		SKIP("this kernel lacks weighted interleave (%s)", hm_errormsg());
	CHECKF(rc == 0, "weighted: %d (%s)", rc, hm_errormsg());
}

static void test_numa_ranges(void)
{
	struct hm_store *s;

	if (max_node() < 0)
		SKIP("no NUMA information");
	CHECK(hm_store_open(&s, "numa:0-0,0,size=64K,policy=interleave", 0) == 0);
	CHECK(hm_store_size(s) == 64 << 10);
	CHECK(!strcmp(hm_store_scheme(s), "numa"));
	CHECK(hm_store_persistence(s) == HM_PERSIST_NONE);
	CHECK(hm_store_close(s) == 0);
	if (max_node() >= 1) {
		/* Several nodes, preferred: MPOL_PREFERRED_MANY. */
		CHECK(hm_store_open(&s, "numa:0,1,size=64K,policy=preferred", 0) == 0);
		CHECK(hm_store_close(s) == 0);
	}
}

/* The same store through a cached region: data round trip, store counters. */
static void test_numa_cached(void)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	struct hm_stats st;
	unsigned char *p, *ref = malloc(1 << 20);

	if (max_node() < 0)
		SKIP("no NUMA information");
	CHECK(ref);
	tu_fill(ref, 1 << 20, 3);
	CHECK(hm_store_open(&s, "numa:0,size=1M", 0) == 0);
	CHECK(hm_cache_new(&c, 256 << 10, NULL) == 0);
	CHECK(hm_region_map(&r, c, s, 0, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, 0) == 0);
	p = hm_region_addr(r);
	memcpy(p, ref, 1 << 20);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_stats(s, &st) == 0);
	CHECK(st.bytes_written >= 1 << 20);
	CHECK(hm_region_map(&r, c, s, 0, 1 << 20, PROT_READ, HM_DIRECT, 0) == 0);
	CHECK(tu_cmp_mem(hm_region_addr(r), ref, 1 << 20) == -1);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

int main(void)
{
	RUN(test_numa_uri_errors);
	RUN(test_numa_bare);
	RUN(test_numa_policies);
	RUN(test_numa_ranges);
	RUN(test_numa_cached);
	return test_done();
}
