/* SPDX-License-Identifier: MIT */
/*
 * Tier chains: the tiers: URI and its errors, anonymous memory that reads
 * zeros without touching a store, pages going down the chain in order when
 * DRAM is full and coming back intact, each page in exactly one tier,
 * explicit-only and emergency tiers, the API form (hm_chain_cache +
 * hm_region_map), run-time controls, and the automatic tiering engine
 * keeping a hot set in DRAM.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define PG 4096u

/* A page's pattern: incompressible (random) or compressible (text-like). */
static void pattern(char *p, uint64_t i, bool compressible)
{
	if (compressible) {
		memset(p, 0, PG);
		for (unsigned k = 0; k < PG; k += 64)
			snprintf(p + k, 64, "page %llu line %u of the compressible pattern ....",
				 (unsigned long long)i, k / 64);
	} else {
		tu_fill(p, PG, i * 7919 + 1);
	}
}

static bool check_page(const char *p, uint64_t i, bool compressible)
{
	char want[PG];

	pattern(want, i, compressible);
	return !memcmp(p, want, PG);
}

static int status_of(void *addr)
{
	int st = 99;
	void *pages[1] = { addr };

	if (hm_move(1, pages, NULL, &st, 0) < 0)
		return -1000;
	return st;
}

/* pages[i] = the address of page i of p, and room for its status; false if out of memory. */
static bool page_list(char *p, size_t n, void ***pages, int **status)
{
	*pages = malloc(n * sizeof **pages);
	*status = malloc(n * sizeof **status);
	for (size_t i = 0; *pages && i < n; i++)
		(*pages)[i] = p + i * PG;
	return *pages && *status;
}

/*
 * Counts where a chain region's n pages are, by tier (3 tiers), and the
 * tiers' own counts, taken when the background evictor is not moving a
 * batch: both agree and add up to n, or the last try is checked. *nowhere
 * gets the pages the query finds nowhere (-ENOENT); any other status fails.
 */
static void count_tiers(struct hm_store *ch, void **pages, int *status, size_t n,
			struct hm_tier_stats s[3], uint64_t per[3], size_t *nowhere)
{
	for (int tries = 0; tries < 100; tries++) {
		for (int t = 0; t < 3; t++)
			CHECK(hm_tier_stats(hm_chain_tier(ch, t), &s[t]) == 0);
		CHECK(hm_move(n, pages, NULL, status, 0) == 0);
		per[0] = per[1] = per[2] = *nowhere = 0;
		for (size_t i = 0; i < n; i++) {
			if (status[i] == -ENOENT) {
				++*nowhere;
				continue;
			}
			CHECKF(status[i] >= 0 && status[i] < 3, "page %zu status %d", i, status[i]);
			per[status[i]]++;
		}
		if (s[0].pages + s[1].pages + s[2].pages == n && per[1] == s[1].pages &&
		    per[2] == s[2].pages)
			break;
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	CHECKF(s[0].pages + s[1].pages + s[2].pages == n, "dram %llu + lz4 %llu + mem %llu != %zu",
	       (unsigned long long)s[0].pages, (unsigned long long)s[1].pages,
	       (unsigned long long)s[2].pages, n);
	CHECK(per[1] == s[1].pages && per[2] == s[2].pages);
}

static void t_uri_errors(void)
{
	static const char *bad[] = {
		"tiers:",
		"tiers:dram:1M>",
		"tiers:dram:1M>>lz4:1M",
		"tiers:dram:xyz>lz4:1M",
		"tiers:dram:1M,bogus=1>lz4:1M",
		"tiers:dram:1M,tiering=nope>lz4:1M",
		"tiers:dram:1M,tiering=hotness:threshold=0>lz4:1M",
		"tiers:dram:1M,rate=1>lz4:1M",
		"tiers:dram:1M,hot=2>lz4:1M",
		"tiers:dram:1M,>lz4:1M",
		"tiers:lz4:1M>dram:1M",
		"tiers:dram:1M>tiers:dram:1M",
		"tiers:dram:1M>nosuch:1M",
		"tiers:dram:1M>lz4:1M,level=13",
		"tiers:dram:1M>/nonexistent/dir/file",
		"tiers:dram:1M>explicit:",
		"tiers:dram:1M>mem:1M>mem:1M>mem:1M>mem:1M>mem:1M>mem:1M>mem:1M>mem:1M",
	};
	struct hm_store *s = (struct hm_store *)1;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = hm_store_open(&s, bad[i], 0);
		CHECKF(rc == -EINVAL || rc == -ENOENT, "%s gave %d", bad[i], rc);
		CHECKF(s == NULL, "%s", bad[i]);
		CHECKF(*hm_errormsg(), "no message for %s", bad[i]);
	}
	/* An empty file tier has no room. */
	char f[512];
	tu_path(f, sizeof f, "empty");
	FILE *fp = fopen(f, "w");
	CHECK(fp);
	fclose(fp);
	char uri[600];
	snprintf(uri, sizeof uri, "tiers:dram:1M>file:%s", f);
	CHECK(hm_store_open(&s, uri, 0) == -EINVAL);
	CHECK(strstr(hm_errormsg(), "truncate"));
	/* hmmap reports the error too. */
	void *p = hmmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, "tiers:dram:1M>lz4:abc", 0);
	CHECK(p == MAP_FAILED && errno == EINVAL);
}

static void t_zero_without_store(void)
{
	size_t len = 4 << 20;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M > lz4:2M > mem:8M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	CHECK(hm_chain_tiers(ch) == 3);
	/* Reading 4 MiB never written through a 1 MiB DRAM tier. */
	uint64_t sum = 0;
	for (size_t o = 0; o < len; o += PG)
		sum += (unsigned char)p[o];
	CHECK(sum == 0);
	struct hm_stats st;
	for (int t = 1; t < 3; t++) {
		CHECK(hm_store_stats(hm_chain_tier(ch, t), &st) == 0);
		CHECKF(st.bytes_read == 0 && st.bytes_written == 0, "tier %d read %llu wrote %llu", t,
		       (unsigned long long)st.bytes_read, (unsigned long long)st.bytes_written);
	}
	CHECK(status_of(p + len - PG) == 0 || status_of(p + len - PG) == -ENOENT);
	/* Read, not written: no tier counts them, and those out of DRAM are nowhere. */
	struct hm_tier_stats ts;
	for (int t = 1; t < 3; t++) {
		CHECK(hm_tier_stats(hm_chain_tier(ch, t), &ts) == 0);
		CHECKF(ts.pages == 0 && ts.zero_pages == 0, "tier %d counts %llu pages (%llu of zeros)",
		       t, (unsigned long long)ts.pages, (unsigned long long)ts.zero_pages);
	}
	CHECKF(status_of(p) == -ENOENT, "page 0, read and evicted, is in tier %d", status_of(p));
	int moved = hm_bind(p, len, hm_chain_tier(ch, 2), HM_MIGRATE);
	CHECKF(moved == 0, "hm_bind(HM_MIGRATE) of pages never written moved %d: %s", moved,
	       hm_errormsg());
	CHECK(hmunmap(p, len) == 0);
}

/*
 * A page written as all zeros was written: it is in a tier like any other
 * (the counts add up, the query names its tier, hm_move moves it), but it
 * takes no room there and moves without store traffic. The pattern is the
 * common one of a byte per page: (char)i is 0 on every 256th page.
 */
static void t_zero_pages_have_a_tier(void)
{
	size_t n = 1024, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M,tiering=none > lz4:1M > mem:16M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *z = hm_chain_tier(ch, 1), *m = hm_chain_tier(ch, 2);
	void **pages;
	int *status;
	struct hm_tier_stats s[3];
	uint64_t per[3];
	size_t nowhere;

	CHECK(page_list(p, n, &pages, &status));
	for (size_t i = 0; i < n; i++)
		p[i * PG] = (char)i;
	/* Out of DRAM, all of them. */
	CHECKF(hm_bind(p, len, m, HM_MIGRATE) >= 0, "%s", hm_errormsg());
	count_tiers(ch, pages, status, n, s, per, &nowhere);
	if (t_case_failed)
		return; /* the helper's reason stands */
	CHECKF(nowhere == 0, "%zu pages written are nowhere", nowhere);
	/* Page 0 (zeros) in mem: moved to lz4, it costs neither store a byte. */
	CHECKF(status[0] == 2, "page 0 is in tier %d", status[0]);
	struct hm_stats a1, a2, b1, b2;
	CHECK(hm_store_stats(z, &a1) == 0 && hm_store_stats(m, &a2) == 0);
	struct hm_store *to[1] = { z };
	int st = 99;
	CHECKF(hm_move(1, pages, to, &st, 0) == 0 && st == 1, "moved with status %d: %s", st,
	       hm_errormsg());
	CHECK(status_of(p) == 1);
	CHECK(hm_store_stats(z, &b1) == 0 && hm_store_stats(m, &b2) == 0);
	/* Counted in lz4 as a page of zeros; in mem the other three took no room. */
	struct hm_tier_stats t1, t2;
	CHECK(hm_tier_stats(z, &t1) == 0 && hm_tier_stats(m, &t2) == 0);
	CHECKF(t1.zero_pages >= 1 && t1.pages >= 1, "lz4: %llu pages, %llu of zeros",
	       (unsigned long long)t1.pages, (unsigned long long)t1.zero_pages);
	CHECKF(t2.used_bytes <= (t2.pages - 3) * PG, "mem: %llu pages in %llu bytes",
	       (unsigned long long)t2.pages, (unsigned long long)t2.used_bytes);
	CHECKF(b1.bytes_written == a1.bytes_written && b2.bytes_read == a2.bytes_read,
	       "a page of zeros moved with %llu bytes written and %llu read",
	       (unsigned long long)(b1.bytes_written - a1.bytes_written),
	       (unsigned long long)(b2.bytes_read - a2.bytes_read));
	/* Every page reads back as written. */
	for (size_t i = 0; i < n; i++) {
		CHECKF(p[i * PG] == (char)i, "page %zu", i);
		CHECKF(p[i * PG + PG - 1] == 0, "page %zu", i);
	}
	free(pages);
	free(status);
	CHECK(hmunmap(p, len) == 0);
}

static void t_chain_order_and_exclusive(void)
{
	/* 256 pages of DRAM, 1 MiB of lz4 pool, 16 MiB of mem. */
	size_t n = 2048, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M,tiering=none > lz4:1M > mem:16M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *z = hm_chain_tier(ch, 1), *m = hm_chain_tier(ch, 2);
	CHECK(z && m && hm_tier_index(z) == 1 && hm_tier_index(m) == 2);
	CHECK(hm_tier_index(hm_chain_tier(ch, 0)) == 0);
	/* Half the pages compress, half do not. */
	for (size_t i = 0; i < n; i++)
		pattern(p + i * PG, i, i & 1);
	for (size_t i = 0; i < n; i++)
		CHECKF(check_page(p + i * PG, i, i & 1), "page %zu", i);
	/* Every page is in exactly one tier: the counts add up. */
	struct hm_tier_stats s[3];
	uint64_t per[3];
	void **pages;
	int *status;
	CHECK(page_list(p, n, &pages, &status));
	size_t nowhere;
	count_tiers(ch, pages, status, n, s, per, &nowhere);
	if (t_case_failed)
		return; /* the helper's reason stands */
	CHECK(nowhere == 0);
	struct hm_tier_stats s0 = s[0], s1 = s[1], s2 = s[2];
	CHECK(s0.pages <= 256);
	/*
	 * A sync of anonymous memory makes nothing durable and moves nothing:
	 * every page is still in one tier, and the counts still add up.
	 */
	CHECK(hmsync(p, len, MS_SYNC) == 0);
	count_tiers(ch, pages, status, n, s, per, &nowhere);
	if (t_case_failed)
		return; /* the helper's reason stands */
	CHECK(nowhere == 0 && s[0].pages <= 256);
	/* lz4 took what fit first; the rest went on down. */
	CHECK(s1.pages > 0 && s2.pages > 0);
	CHECK(s1.used_bytes <= s1.capacity_bytes);
	CHECK(s1.compressed_pages > 0 && s1.raw_pages > 0);
	CHECK(s1.ratio > 1.0);
	/* A page read back up leaves its lower tier. */
	size_t victim = 0;
	while (victim < n && status_of(p + victim * PG) != 2)
		victim++;
	CHECK(victim < n);
	/*
	 * The read brings it to DRAM, full, and the background evictor may
	 * take it down again before the query looks (seen under load): read
	 * it again then. A page that does not leave its lower tier never
	 * shows in DRAM.
	 */
	int st = -1;
	for (int tries = 0; tries < 10 && st != 0; tries++) {
		CHECK(check_page(p + victim * PG, victim, victim & 1));
		st = status_of(p + victim * PG);
	}
	CHECKF(st == 0, "page %zu read back ten times, still in tier %d", victim, st);
	/*
	 * And only DRAM has it: the counts add up still. (The page it pushed
	 * out of DRAM may have pushed lz4's oldest into mem: mem's count alone
	 * says nothing.)
	 */
	count_tiers(ch, pages, status, n, s, per, &nowhere);
	if (t_case_failed)
		return; /* the helper's reason stands */
	free(pages);
	free(status);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * The tiers' counts add up at once after reads, with no retry: a page in a
 * load or an eviction (readahead goes on after the reads that started it,
 * the evictor after the faults) counts in both tiers while it moves, and
 * hm_tier_stats() waits for such moves to end. Before it did, the sum was
 * over by up to a batch in about 40% of rounds.
 */
/*
 * Readahead stays off for a chain region whatever hm_advise() says:
 * neighbouring anonymous pages are not a stream, and a window read in the
 * background brought back up pages that hm_move() or hm_bind() had just
 * sent down. HM_ADV_SEQUENTIAL, NORMAL and NOREUSE used to turn it on.
 */
static void t_no_readahead_after_advice(void)
{
	static const int advice[] = {HM_ADV_SEQUENTIAL, HM_ADV_NORMAL, HM_ADV_NOREUSE};
	size_t n = 64, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
	                "tiers:dram:1M,tiering=none > mem:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_region *r = hm_region_find(p);

	for (size_t i = 0; i < n; i++)
		pattern(p + i * PG, i, 0);
	for (int a = 0; a < 3; a++) {
		struct hm_stats st;
		void *pages[64];
		int status[64];
		CHECK(hm_advise(p, len, HM_ADV_DONTNEED) == 0);
		CHECK(hm_advise(p, len, advice[a]) == 0);
		for (size_t i = 0; i < 16; i++)
			CHECKF(check_page(p + i * PG, i, 0), "page %zu", i);
		CHECK(hm_region_stats(r, &st) == 0);
		CHECKF(st.readahead == 0, "advice %d: %llu pages read ahead", advice[a],
		       (unsigned long long)st.readahead);
		for (size_t i = 0; i < n; i++)
			pages[i] = p + i * PG;
		CHECK(hm_move(n, pages, NULL, status, 0) == 0);
		for (size_t i = 16; i < n; i++)
			CHECKF(status[i] == 1, "advice %d: page %zu in %d", advice[a], i,
			       status[i]);
	}
	CHECK(hmunmap(p, len) == 0);
}

static void t_counts_add_up_after_reads(void)
{
	size_t n = 400, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:256K,tiering=none > lz4:1M > mem:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	int off = 0;
	uint64_t worst = 0;

	for (size_t i = 0; i < n; i++)
		pattern(p + i * PG, i, i & 1);
	for (int round = 0; round < 100; round++) {
		uint64_t sum = 0;
		for (size_t i = 0; i < n; i += 3) {
			size_t pg = (i * 7 + (size_t)round) % n;
			CHECKF(check_page(p + pg * PG, pg, pg & 1), "page %zu", pg);
		}
		for (int t = 0; t < 3; t++) {
			struct hm_tier_stats st;
			CHECK(hm_tier_stats(hm_chain_tier(ch, t), &st) == 0);
			sum += st.pages;
		}
		if (sum != n) {
			off++;
			worst = sum > worst ? sum : worst;
		}
	}
	CHECKF(off == 0, "the tiers held %llu pages of %zu, or another wrong sum, in %d of 100 "
			 "rounds", (unsigned long long)worst, n, off);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * Cold pages go down, between lower tiers too: pages written in order
 * through a chain of two lower tiers end with the oldest at the bottom.
 * A page evicted toward the full first tier pushes that tier's oldest page
 * down; it used to pass it by, so the first pages evicted (the coldest) held
 * the fast tier and warmer ones went to the slow one.
 */
static void t_cold_pages_go_down(void)
{
	size_t n = 2048, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M,tiering=none > mem:2M > mem:16M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	void **pages;
	int *status;
	size_t in[3] = { 0 }, *idx[3];

	CHECK(page_list(p, n, &pages, &status));
	for (int t = 0; t < 3; t++) {
		idx[t] = malloc(n * sizeof *idx[t]);
		CHECK(idx[t]);
	}
	for (size_t i = 0; i < n; i++)
		pattern(p + i * PG, i, false);
	CHECK(hm_move(n, pages, NULL, status, 0) == 0);
	for (size_t i = 0; i < n; i++) {
		CHECKF(status[i] >= 0 && status[i] < 3, "page %zu status %d", i, status[i]);
		idx[status[i]][in[status[i]]++] = i; /* ascending */
	}
	/* mem:2M holds 512 pages: the most recently evicted ones. */
	CHECKF(in[1] >= 448 && in[2] > 0, "%zu pages in tier 1, %zu in tier 2", in[1], in[2]);
	/*
	 * Eviction is CLOCK's order, not exactly the order of the writes:
	 * compare the tiers' bulk, not their extremes.
	 */
	size_t p10 = idx[1][in[1] / 10], p90 = idx[2][in[2] * 9 / 10];
	printf("  tier 1: pages %zu..%zu (10th percentile %zu); tier 2: %zu..%zu (90th %zu)\n",
	       idx[1][0], idx[1][in[1] - 1], p10, idx[2][0], idx[2][in[2] - 1], p90);
	CHECKF(p10 > p90, "tier 1's 10th percentile page %zu, tier 2's 90th %zu", p10, p90);
	for (int t = 0; t < 3; t++)
		free(idx[t]);
	for (size_t i = 0; i < n; i++)
		CHECKF(check_page(p + i * PG, i, false), "page %zu", i);
	free(pages);
	free(status);
	CHECK(hmunmap(p, len) == 0);
}

/* Makes scratch file `name` of `size` bytes, a file tier's backing; its path in f. */
static void make_swap(char *f, size_t cap, const char *name, off_t size)
{
	tu_path(f, cap, name);
	FILE *fp = fopen(f, "w");
	CHECK(fp);
	if (fp) {
		CHECK(ftruncate(fileno(fp), size) == 0);
		fclose(fp);
	}
}

static void t_file_tier(void)
{
	/* The example shape: DRAM, compressed, a file standing for an SSD. */
	char f[512], uri[700];
	make_swap(f, sizeof f, "swap", 8 << 20);
	snprintf(uri, sizeof uri, "tiers:dram:256K,tiering=none > lz4:128K > file:%s", f);
	size_t n = 1024, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	for (size_t i = 0; i < n; i++)
		pattern(p + i * PG, i, i % 3 == 0);
	for (size_t i = 0; i < n; i++)
		CHECKF(check_page(p + i * PG, i, i % 3 == 0), "page %zu", i);
	struct hm_tier_stats fs;
	CHECK(hm_tier_stats(hm_chain_tier(ch, 2), &fs) == 0);
	CHECK(fs.pages > 0 && fs.capacity_bytes == 8u << 20);
	struct hm_stats st;
	CHECK(hm_store_stats(hm_chain_tier(ch, 2), &st) == 0);
	CHECK(st.bytes_written >= fs.pages * PG && st.bytes_read > 0);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * Two chains over one swap file would overwrite each other's pages (each
 * places pages in slots only it knows): the second is refused with EBUSY,
 * and once the first is gone the file can serve again.
 */
static void file_tier_one_chain(const char *scheme)
{
	char f[512], uri[700];
	size_t n = 512, len = n * PG;
	make_swap(f, sizeof f, "swap1", 4 << 20);
	snprintf(uri, sizeof uri, "tiers:dram:256K,tiering=none > %s:%s", scheme, f);
	char *a = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0);
	CHECKF(a != MAP_FAILED, "%s", hm_errormsg());
	errno = 0;
	char *b = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0);
	if (b != MAP_FAILED) {
		/* What the second chain does to the first's pages. */
		for (size_t i = 0; i < n; i++) {
			pattern(a + i * PG, i, false);
			pattern(b + i * PG, i + n, false);
		}
		size_t bad = 0;
		for (size_t i = 0; i < n; i++)
			bad += !check_page(a + i * PG, i, false);
		hmunmap(b, len);
		hmunmap(a, len);
		CHECKF(0, "a second chain over the same file was opened; %zu of %zu pages of "
			  "the first read wrong", bad, n);
	}
	CHECKF(errno == EBUSY && strstr(hm_errormsg(), "another chain"), "errno %d: %s", errno,
	       hm_errormsg());
	CHECK(hmunmap(a, len) == 0);
	b = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0);
	CHECKF(b != MAP_FAILED, "after the first chain closed: %s", hm_errormsg());
	CHECK(hmunmap(b, len) == 0);
}

static void t_file_tier_one_chain(void)
{
	file_tier_one_chain("file");
}

/* The same for a pmem: file, a tier as byte-addressable media. */
static void t_pmem_tier_one_chain(void)
{
	file_tier_one_chain("pmem");
}

static void t_api_form(void)
{
	struct hm_store *ch;
	struct hm_cache *c;
	struct hm_region *r;
	size_t len = 8 << 20;

	CHECK(hm_store_open(&ch, "tiers:dram:1M,tiering=none>zstd:2M,level=3>mem:8M", 0) == 0);
	CHECK(hm_chain_cache(ch, &c) == 0);
	CHECK(hm_cache_budget(c) == 1 << 20);
	CHECK(hm_region_map(&r, c, ch, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 0) == 0);
	/* One region at a time. */
	struct hm_region *r2;
	CHECK(hm_region_map(&r2, c, ch, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 0) == -EBUSY);
	char *p = hm_region_addr(r);
	for (size_t i = 0; i < len / PG; i += 3)
		pattern(p + i * PG, i, true);
	CHECK(hm_region_unmap(r) == 0);
	/* The data stays in the chain while it is open: map it again. */
	CHECK(hm_region_map(&r, c, ch, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 0) == 0);
	p = hm_region_addr(r);
	for (size_t i = 0; i < len / PG; i++) {
		if (i % 3) {
			CHECK(p[i * PG] == 0);
			continue;
		}
		CHECKF(check_page(p + i * PG, i, true), "page %zu", i);
	}
	struct hm_tier_stats zs;
	CHECK(hm_tier_stats(hm_chain_tier(ch, 1), &zs) == 0);
	CHECK(zs.ratio > 2.0);
	/* Tier stores belong to the chain. */
	CHECK(hm_store_close(hm_chain_tier(ch, 1)) == -EBUSY);
	CHECK(hm_store_close(ch) == -EBUSY);
	CHECK(hm_region_unmap(r) == 0);
	/* So does its cache: closing the chain frees it, hm_cache_free() refuses. */
	CHECK(hm_cache_free(c) == -EBUSY && strstr(hm_errormsg(), "hm_store_close"));
	CHECK(hm_store_close(ch) == 0);
	/* A cache still used by a region of another store outlives its chain. */
	struct hm_store *other;
	CHECK(hm_store_open(&ch, "tiers:dram:1M>mem:8M", 0) == 0);
	CHECK(hm_store_open(&other, "mem:1M", 0) == 0);
	CHECK(hm_chain_cache(ch, &c) == 0);
	CHECK(hm_region_map(&r, c, other, 0, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, 0) == 0);
	memset(hm_region_addr(r), 7, 1 << 20);
	CHECK(hm_store_close(ch) == 0);
	CHECK(((char *)hm_region_addr(r))[12345] == 7);
	CHECK(hm_cache_free(c) == -EBUSY);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_store_close(other) == 0);
	/* Bad arguments. */
	struct hm_store *mem;
	CHECK(hm_store_open(&mem, "mem:1M", 0) == 0);
	CHECK(hm_chain_tiers(mem) == -EINVAL);
	CHECK(hm_chain_tier(mem, 0) == NULL);
	CHECK(hm_chain_cache(mem, &c) == -EINVAL);
	CHECK(hm_tier_index(mem) == -ENOENT);
	CHECK(hm_tier_get(mem) == -ENOENT);
	CHECK(hm_tier_set(mem, 0) == -ENOENT);
	struct hm_tier_stats ts;
	CHECK(hm_tier_stats(mem, &ts) == -EINVAL);
	CHECK(hm_store_close(mem) == 0);
	CHECK(hm_store_open(&ch, "tiers:lz4:1M>mem:1M", 0) == 0);
	CHECK(hm_chain_cache(ch, &c) == -ENOENT);
	CHECK(hm_chain_tier(ch, 3) == NULL);
	CHECK(hm_chain_tier(ch, -1) == NULL);
	CHECK(hm_tier_set(hm_chain_tier(ch, 0), HM_TIER_EXPLICIT) == -EINVAL);
	CHECK(hm_tier_set(hm_chain_tier(ch, 1), HM_TIER_EMERGENCY) == -EINVAL);
	CHECK(hm_tier_set(hm_chain_tier(ch, 1), 0x80) == -EINVAL);
	CHECK(hm_store_close(ch) == 0);
}

static void t_explicit_emergency(void)
{
	/* lz4's pool holds 16 raw pages; the mem tier is explicit-only. */
	size_t n = 64, len = n * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M,tiering=none > lz4:64K > explicit:mem:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *z = hm_chain_tier(ch, 1), *m = hm_chain_tier(ch, 2);
	CHECK(hm_tier_get(m) == HM_TIER_EXPLICIT);
	for (size_t i = 0; i < n; i++)
		pattern(p + i * PG, i, false);
	/* Pushing everything down: lz4 fills, the explicit tier takes nothing. */
	CHECK(hm_advise(p, 8 * PG, HM_ADV_DONTNEED) == 0);
	CHECK(hm_advise(p, len, HM_ADV_DONTNEED) == -ENOSPC);
	struct hm_tier_stats zs, ms;
	CHECK(hm_tier_stats(z, &zs) == 0 && hm_tier_stats(m, &ms) == 0);
	CHECKF(ms.pages == 0, "explicit tier got %llu pages", (unsigned long long)ms.pages);
	CHECK(zs.pages > 0 && zs.pages < n);
	for (size_t i = 0; i < n; i++)
		CHECKF(check_page(p + i * PG, i, false), "page %zu lost", i);
	/* The emergency setting lets implicit pages in when the others are full. */
	CHECK(hm_tier_set(m, HM_TIER_EXPLICIT | HM_TIER_EMERGENCY) == 0);
	CHECK(hm_tier_get(m) == (HM_TIER_EXPLICIT | HM_TIER_EMERGENCY));
	CHECKF(hm_advise(p, len, HM_ADV_DONTNEED) == 0, "%s", hm_errormsg());
	CHECK(hm_tier_stats(z, &zs) == 0 && hm_tier_stats(m, &ms) == 0);
	CHECK(ms.pages > 0 && zs.pages + ms.pages == n);
	for (size_t i = 0; i < n; i++)
		CHECKF(check_page(p + i * PG, i, false), "page %zu lost", i);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * A tier whose writes fail (a dead device, a server gone) has no room: the
 * pages go to the next tier, as with a full one, instead of failing every
 * eviction while room is left below.
 */
static void t_failing_tier_skipped(void)
{
	size_t n = 200, len = 1024 * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M,tiering=none > fault:8M > mem:16M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	if (p == MAP_FAILED)
		return;
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *f = hm_chain_tier(ch, 1), *m = hm_chain_tier(ch, 2);
	struct hm_tier_stats fs, ms;
	for (size_t i = 0; i < n; i++)
		pattern(p + i * PG, i, false);
	CHECK(hm_store_ctl(f, "fail_write") == 0);
	CHECKF(hm_advise(p, n * PG, HM_ADV_DONTNEED) == 0, "eviction with a failing tier: %s",
	       hm_errormsg());
	CHECK(hm_tier_stats(f, &fs) == 0 && hm_tier_stats(m, &ms) == 0);
	CHECKF(fs.pages == 0 && ms.pages == n, "failing tier %llu pages, next tier %llu of %zu",
	       (unsigned long long)fs.pages, (unsigned long long)ms.pages, n);
	for (size_t i = 0; i < n; i++)
		CHECKF(check_page(p + i * PG, i, false), "page %zu lost", i);
	CHECK(hm_store_ctl(f, "fail_write=off") == 0);
	CHECK(hmunmap(p, len) == 0);
}

static void t_controls(void)
{
	size_t len = 4 << 20;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:1M>lz4:4M", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	CHECK(hm_store_ctl(ch, "tiering=none") == 0);
	CHECK(hm_store_ctl(ch, "tiering=hotness:threshold=2,decay=500") == 0);
	CHECK(hm_store_ctl(ch, "tiering=hotness:threshold=0") == -EINVAL);
	CHECK(hm_store_ctl(ch, "tiering=bogus") == -EINVAL);
	CHECK(hm_store_ctl(ch, "rate=64M") == 0);
	CHECK(hm_store_ctl(ch, "rate=12") == -EINVAL);
	CHECK(hm_store_ctl(ch, "hot=0.5") == 0);
	CHECK(hm_store_ctl(ch, "period=5") == -EINVAL);
	CHECK(hm_store_ctl(ch, "cache=lru") == -EINVAL);
	CHECK(hm_store_ctl(ch, "nokey=1") == -EINVAL);
	CHECK(hm_store_ctl(ch, "rate") == -EINVAL);
	memset(p, 1, len);
	CHECK(hmunmap(p, len) == 0);
	size_t n;
	const struct hm_tier_policy_ops *const *l = hm_tier_policy_list(&n);
	CHECK(n >= 2 && !strcmp(l[0]->name, "none") && !strcmp(l[1]->name, "hotness"));
}

struct hot_run {
	char *p;
	size_t hot_pages, pages;
	_Atomic size_t base; /* first page of the hot set */
	uint32_t *shadow;     /* if set, how many times each word was updated */
	_Atomic int stop;
};

static void *hot_worker(void *arg)
{
	struct hot_run *h = arg;
	uint64_t s = tu_seed(99);

	while (!atomic_load(&h->stop)) {
		uint64_t x = tu_rnd(&s);
		size_t i = (x % 10) ? (x >> 8) % h->hot_pages : h->hot_pages + (x >> 8) % (h->pages - h->hot_pages);
		i = (i + atomic_load_explicit(&h->base, memory_order_relaxed)) % h->pages;
		size_t word = i * (PG / 8) + (x >> 40) % (PG / 8);
		volatile uint64_t *w = (volatile uint64_t *)h->p + word;
		*w += 1;
		if (h->shadow)
			h->shadow[word]++;
	}
	return NULL;
}

/*
 * Placement, not speed: waits (up to 30 s) for 90% of pages [first, first+n)
 * to be in DRAM and as many pages to be hot, and for the engine to have
 * promoted at least that many more pages than `since` says - and, if `since`
 * is not the start, demoted n / 2 more. Returns how many are in DRAM.
 */
static size_t wait_tiered(char *p, size_t first, size_t n, struct hm_store *ch,
			  const struct hm_tier_stats *since, struct hm_tier_stats *st)
{
	size_t in_dram = 0;

	for (int w = 0; w < 300; w++) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		hm_tier_stats(hm_chain_tier(ch, 0), st);
		in_dram = 0;
		for (size_t i = first; i < first + n; i++)
			in_dram += status_of(p + i * PG) == 0;
		if (in_dram >= n * 9 / 10 && st->hot_pages >= n * 9 / 10 &&
		    st->promoted >= since->promoted + n * 9 / 10 &&
		    st->demoted >= since->demoted + (since->promoted ? n / 2 : 0))
			break;
	}
	return in_dram;
}

/* Maps len bytes over the chain `uri` at *pp, every page written (*pp NULL if it cannot). */
static void hot_region(const char *uri, size_t len, char **pp, struct hm_store **ch)
{
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0);

	*pp = NULL;
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	*ch = hm_region_store(hm_region_find(p));
	for (size_t i = 0; i < len / PG; i++)
		pattern(p + i * PG, i, true);
	*pp = p;
}

static void t_autotier_keeps_hot_set(void)
{
	/* 16 MiB over 4 MiB of DRAM; 90% of updates go to the first 1 MiB. */
	size_t pages = 4096, hot = 256, len = pages * PG;
	struct hm_store *ch;
	char *p;
	hot_region("tiers:dram:4M,tiering=hotness,period=50 > lz4:16M > mem:32M", len, &p, &ch);
	if (!p)
		return;
	struct hot_run h = { .p = p, .hot_pages = hot, .pages = pages };
	pthread_t th;
	CHECK(pthread_create(&th, NULL, hot_worker, &h) == 0);
	struct hm_tier_stats none = { 0 }, s0;
	size_t in_dram = wait_tiered(p, 0, hot, ch, &none, &s0);
	atomic_store(&h.stop, 1);
	pthread_join(th, NULL);
	CHECKF(s0.promoted > 0 && s0.sampled > 0, "promoted %llu sampled %llu",
	       (unsigned long long)s0.promoted, (unsigned long long)s0.sampled);
	CHECKF(s0.hot_pages >= hot * 9 / 10, "only %llu hot pages of %zu",
	       (unsigned long long)s0.hot_pages, hot);
	CHECKF(in_dram >= hot * 9 / 10, "only %zu of %zu hot pages in DRAM", in_dram, hot);
	/* Hot pages stay within their share of the budget. */
	CHECK(s0.hot_pages * PG <= (4u << 20) * 3 / 4);
	CHECK(hmunmap(p, len) == 0);
}

static void t_autotier_follows_moved_hot_set(void)
{
	/*
	 * As above, then the hot set moves to the middle of the region: the
	 * old hot pages, now cold, must leave the hot share (256 pages, room
	 * for one hot set) and the new ones take their place (placement, not
	 * speed).
	 */
	size_t pages = 4096, hot = 256, len = pages * PG;
	struct hm_store *ch;
	char *p;
	hot_region("tiers:dram:4M,tiering=hotness,period=50,hot=0.25 > lz4:16M", len, &p, &ch);
	if (!p)
		return;
	uint64_t *image = malloc(len);
	uint32_t *shadow = calloc(len / 8, sizeof *shadow);
	CHECK(image && shadow);
	memcpy(image, p, len);
	struct hot_run h = { .p = p, .hot_pages = hot, .pages = pages, .shadow = shadow };
	pthread_t th;
	CHECK(pthread_create(&th, NULL, hot_worker, &h) == 0);
	struct hm_tier_stats none = { 0 }, before, after;
	size_t n = wait_tiered(p, 0, hot, ch, &none, &before);
	CHECKF(n >= hot * 9 / 10 && before.promoted >= hot * 9 / 10,
	       "first hot set: %zu of %zu pages in DRAM, %llu promoted", n, hot,
	       (unsigned long long)before.promoted);
	atomic_store(&h.base, pages / 2);
	n = wait_tiered(p, pages / 2, hot, ch, &before, &after);
	atomic_store(&h.stop, 1);
	pthread_join(th, NULL);
	CHECKF(n >= hot * 9 / 10, "moved hot set: only %zu of %zu pages in DRAM", n, hot);
	CHECKF(after.demoted >= before.demoted + hot / 2 &&
	       after.promoted >= before.promoted + hot * 9 / 10,
	       "demoted %llu -> %llu, promoted %llu -> %llu", (unsigned long long)before.demoted,
	       (unsigned long long)after.demoted, (unsigned long long)before.promoted,
	       (unsigned long long)after.promoted);
	CHECK(after.hot_pages * PG <= (4u << 20) / 4);
	/* Every word is what the updates made of it: the moves lost nothing. */
	size_t bad = 0;
	for (size_t k = 0; k < len / 8; k++)
		bad += ((uint64_t *)p)[k] != image[k] + shadow[k];
	CHECKF(bad == 0, "%zu words differ from their updates", bad);
	free(image);
	free(shadow);
	CHECK(hmunmap(p, len) == 0);
}

/*
 * A tiering policy that, in one tick, samples every resident page and then
 * promotes pages from the lower tier: the promotions' loads need room that
 * only the sampled pages can give (the promoted ones are pinned).
 */
static _Atomic int sp_go, sp_done, sp_rc, sp_promoted;

static int sp_create(void **state, uint64_t npages, const char *opts)
{
	*state = (void *)(uintptr_t)npages;
	return 0;
}

static void sp_destroy(void *state)
{
}

static void sp_touch(void *state, uint64_t idx, int how)
{
}

static void sp_tick(void *state, struct hm_tier_ctx *ctx)
{
	uint64_t n = (uint64_t)(uintptr_t)state;
	int promoted = 0, rc = 0;

	if (!atomic_load(&sp_go) || atomic_load(&sp_done))
		return;
	for (uint64_t i = 0; i < n; i++)
		if (hm_tier_where(ctx, i) == 0)
			hm_tier_sample(ctx, i);
	for (uint64_t i = 0; i < n && promoted < 3 && !rc; i++) {
		if (hm_tier_where(ctx, i) <= 0)
			continue;
		/* -EBUSY: the evictor took the page between its load and its pin. */
		for (int tries = 0; tries < 100; tries++)
			if ((rc = hm_tier_promote(ctx, i)) != -EBUSY)
				break;
		promoted += !rc;
	}
	atomic_store(&sp_rc, rc);
	atomic_store(&sp_promoted, promoted);
	atomic_store(&sp_done, 1);
}

static const struct hm_tier_policy_ops sample_promote = {
	.abi = HM_TIER_POLICY_ABI,
	.name = "t-sample-promote",
	.summary = "test: samples every resident page, then promotes",
	.create = sp_create,
	.destroy = sp_destroy,
	.touch = sp_touch,
	.tick = sp_tick,
};

static int promote_beside_sampled(void *arg)
{
	/*
	 * 16 pages of DRAM: 11 pinned (pins leave two pages of room, and
	 * the three promoted pages are pinned too), the other resident pages
	 * sampled by the policy, so that each promotion must evict one of
	 * those.
	 */
	size_t pages = 64, len = pages * PG;
	char buf[PG];

	if (hm_tier_policy_register(&sample_promote)) {
		printf("register: %s\n", hm_errormsg());
		return 1;
	}
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:64K,tiering=t-sample-promote,hot=0.95,period=10 > mem:1M", 0);
	if (p == MAP_FAILED) {
		printf("hmmap: %s\n", hm_errormsg());
		return 1;
	}
	for (size_t i = 0; i < pages; i++) {
		pattern(buf, i, false);
		memcpy(p + i * PG, buf, PG);
	}
	if (hm_prefault(p + 49 * PG, 11 * PG, HM_PREFAULT_PIN)) {
		printf("pin: %s\n", hm_errormsg());
		return 1;
	}
	/* The rest of DRAM: pages the policy samples. */
	for (size_t i = 60; i < pages; i++)
		(void)*(volatile char *)(p + i * PG);
	atomic_store(&sp_go, 1);
	while (!atomic_load(&sp_done)) {
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	if (atomic_load(&sp_rc) || atomic_load(&sp_promoted) != 3) {
		printf("promotion %d of 3 returned %d: %s\n", atomic_load(&sp_promoted) + 1,
		       atomic_load(&sp_rc), hm_errormsg());
		return 1;
	}
	for (size_t i = 0; i < pages; i++) {
		if (!check_page(p + i * PG, i, false)) {
			printf("page %zu differs\n", i);
			return 1;
		}
	}
	return hmunmap(p, len) ? 1 : 0;
}

static void t_promote_beside_sampled_pages(void)
{
	/*
	 * The engine held the pages it sampled in a tick BUSY until the
	 * tick's end, and a promotion in that tick that had to evict to load
	 * its page found nothing but them and pins: the load waited for the
	 * engine, itself, and failed (-ENOMEM), and a fault of the program
	 * waiting for room meanwhile ended in SIGBUS. The cache's own sampler
	 * is off: a page it unmapped is not the policy's to sample.
	 */
	static const char *const env[] = { "HMMAP_SAMPLE_RATE=0", "HMMAP_EVICT_BATCH=1", NULL };

	TU_CHILD_RESULT(tu_child(env, promote_beside_sampled, NULL));
}

/*
 * A tiering policy that promotes page 5 whenever it is in a lower tier, over
 * and over within each tick: a promotion ready to slip into any migration
 * of that page.
 */
static _Atomic int pm_stop;

static void pm_tick(void *state, struct hm_tier_ctx *ctx)
{
	for (int k = 0; k < 100000 && !atomic_load(&pm_stop); k++)
		if (hm_tier_where(ctx, 5) > 0)
			hm_tier_promote(ctx, 5);
}

static const struct hm_tier_policy_ops promote_mover = {
	.abi = HM_TIER_POLICY_ABI,
	.name = "t-promote-mover",
	.summary = "test: promotes page 5 whenever it is in a lower tier",
	.create = sp_create,
	.destroy = sp_destroy,
	.touch = sp_touch,
	.tick = pm_tick,
};

/*
 * Registers a test policy and maps 16 pages over uri (its tiering), each
 * filled with its number plus one; prints why and returns NULL on failure.
 */
static char *hostile_map(const struct hm_tier_policy_ops *ops, const char *uri)
{
	if (hm_tier_policy_register(ops)) {
		printf("register: %s\n", hm_errormsg());
		return NULL;
	}
	char *p = hmmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0);
	if (p == MAP_FAILED) {
		printf("hmmap: %s\n", hm_errormsg());
		return NULL;
	}
	for (size_t i = 0; i < 16; i++)
		memset(p + i * PG, (int)i + 1, PG);
	return p;
}

/* Stops the policy; every page reads as hostile_map() wrote it. The child's exit status. */
static int hostile_end(char *p, int bad)
{
	atomic_store(&pm_stop, 1);
	for (size_t i = 0; i < 16 && !bad; i++) {
		if (p[i * PG] != (char)(i + 1) || p[i * PG + PG - 1] != (char)(i + 1)) {
			printf("page %zu differs\n", i);
			bad = 1;
		}
	}
	return hmunmap(p, 16 * PG) || bad;
}

static int migrate_against_promotions(void *arg)
{
	int rounds = tu_under("asan") || tu_under("tsan") ? 100000 : 300000;
	char *p = hostile_map(&promote_mover, "tiers:dram:64K,tiering=t-promote-mover,rate=1G,"
					      "period=10 > mem:1M > mem:1M > mem:1M");
	if (!p)
		return 1;
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	struct hm_store *t1 = hm_chain_tier(ch, 1), *t2 = hm_chain_tier(ch, 2);
	struct hm_store *t3 = hm_chain_tier(ch, 3);
	void *pg = p + 5 * PG;
	int bad = 0;

	if (hm_tier_set(t3, HM_TIER_CLOSED)) {
		printf("close: %s\n", hm_errormsg());
		return 1;
	}
	for (int i = 0; i < rounds && !bad; i++) {
		int st;
		if (hm_move(1, &pg, &t1, &st, 0) || status_of(pg) != 1)
			continue; /* the policy took it up first */
		long rc = hm_bind(pg, PG, t3, HM_MIGRATE);
		if (rc != -ENOSPC) {
			printf("round %d: a migration to the closed tier returned %ld\n", i, rc);
			bad = 1;
		}
		if (status_of(pg) != 1)
			continue;
		rc = hm_bind(pg, PG, t2, HM_MIGRATE);
		if (rc != 1) {
			printf("round %d: a migration from tier 1 to tier 2 returned %ld (%s)\n", i,
			       rc, rc < 0 ? hm_errormsg() : "the page is in DRAM");
			bad = 1;
		}
	}
	return hostile_end(p, bad);
}

static void t_migrate_against_promotions(void)
{
	/*
	 * A migration down took the range's hot pages out of the hot set,
	 * then dropped the range; a promotion of the engine that loaded and
	 * pinned a page in between left it in DRAM, and the drop skipped it
	 * (pinned): the migration returned without it - 0 toward a closed
	 * tier, where -ENOSPC was due (test_tier_model, seed 15, once), and
	 * one page short toward an open one. Before: it failed 3 runs of 3,
	 * at rounds 0, 3041 and 14580.
	 */
	TU_CHILD_RESULT(tu_child(NULL, migrate_against_promotions, NULL));
}

/* A tiering policy that promotes and demotes page 5 over and over within each tick. */
static void pd_tick(void *state, struct hm_tier_ctx *ctx)
{
	for (int k = 0; k < 100000 && !atomic_load(&pm_stop); k++) {
		hm_tier_promote(ctx, 5);
		hm_tier_demote(ctx, 5, false);
	}
}

static const struct hm_tier_policy_ops promote_demote = {
	.abi = HM_TIER_POLICY_ABI,
	.name = "t-promote-demote",
	.summary = "test: promotes and demotes page 5 over and over",
	.create = sp_create,
	.destroy = sp_destroy,
	.touch = sp_touch,
	.tick = pd_tick,
};

static int move_hot_page(void *arg)
{
	long rounds = tu_under("asan") || tu_under("tsan") ? 300000 : 2000000;
	char *p = hostile_map(&promote_demote,
			      "tiers:dram:64K,tiering=t-promote-demote,rate=1G,period=10 > mem:1M");
	if (!p)
		return 1;
	struct hm_store *t1 = hm_chain_tier(hm_region_store(hm_region_find(p)), 1);
	void *pg = p + 5 * PG;
	int bad = 0;

	for (long i = 0; i < rounds && !bad; i++) {
		int st = 0;
		hm_move(1, &pg, &t1, &st, 0);
		if (st == -EBUSY) {
			printf("round %ld: a page only the engine pins: -EBUSY\n", i);
			bad = 1;
		}
	}
	return hostile_end(p, bad);
}

static void t_move_page_the_engine_pins(void)
{
	/*
	 * A pinned page moves down only if the engine's hotness is all that
	 * pins it, and hm_move() told the two apart by the hot flag; but a
	 * promotion pins its page before it marks it hot, and a demotion
	 * cleared the mark before it unpinned: in between, the engine's pin
	 * looked like the program's, and the move said -EBUSY
	 * (test_tier_model under ASan, seed 17). Before: -EBUSY in 3 runs of
	 * 5 of a program doing this, at 10% to 20% of 300000 moves.
	 */
	TU_CHILD_RESULT(tu_child(NULL, move_hot_page, NULL));
}

static void *read_first_page(void *arg)
{
	return (void *)(uintptr_t)*(volatile unsigned char *)arg;
}

static void t_query_during_load(void)
{
	/*
	 * While a page is loaded from a lower tier, its only copy is there
	 * and the tier counts it; the query said DRAM from the moment the
	 * load claimed the page, so the counts and the query disagreed by a
	 * page for as long as the load took (a promotion of the tiering
	 * engine, in test_tier_model). The sleep only opens the window: a
	 * shorter one makes the case pass without testing it.
	 */
	size_t len = 16 * PG;
	char *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED,
			"tiers:dram:64K,tiering=none > mem:1M,read_ns=1000000000", 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	if (p == MAP_FAILED)
		return;
	struct hm_store *ch = hm_region_store(hm_region_find(p)), *t1 = hm_chain_tier(ch, 1);
	memset(p, 0x5a, PG);
	CHECK(hm_advise(p, PG, HM_ADV_DONTNEED) == 0);
	CHECK(status_of(p) == 1);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, read_first_page, p) == 0);
	usleep(200000);
	struct hm_tier_stats st;
	CHECK(hm_tier_stats(t1, &st) == 0);
	int where = status_of(p);
	void *v;
	pthread_join(th, &v);
	CHECKF((st.pages == 1) == (where == 1), "tier 1 holds %llu pages, the query says %d",
	       (unsigned long long)st.pages, where);
	CHECKF((uintptr_t)v == 0x5a, "read %#lx", (unsigned long)(uintptr_t)v);
	/* The reader goes on once the page is mapped; the stats wait for the load's end. */
	CHECK(hm_tier_stats(t1, &st) == 0);
	where = status_of(p);
	CHECKF(st.pages == 0 && where == 0, "after the load: tier 1 holds %llu pages, the page is in %d",
	       (unsigned long long)st.pages, where);
	CHECK(hmunmap(p, len) == 0);
}

int main(void)
{
	/* First, in a child forked before this process has threads (TSan needs it). */
	RUN(t_promote_beside_sampled_pages);
	RUN(t_migrate_against_promotions);
	RUN(t_move_page_the_engine_pins);
	RUN(t_uri_errors);
	RUN(t_zero_without_store);
	RUN(t_zero_pages_have_a_tier);
	RUN(t_chain_order_and_exclusive);
	RUN(t_counts_add_up_after_reads);
	RUN(t_query_during_load);
	RUN(t_no_readahead_after_advice);
	RUN(t_cold_pages_go_down);
	RUN(t_file_tier);
	RUN(t_file_tier_one_chain);
	RUN(t_pmem_tier_one_chain);
	RUN(t_api_form);
	RUN(t_explicit_emergency);
	RUN(t_failing_tier_skipped);
	RUN(t_controls);
	RUN(t_autotier_keeps_hot_set);
	RUN(t_autotier_follows_moved_hot_set);
	tu_cleanup();
	return test_done();
}
