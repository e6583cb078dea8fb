/* SPDX-License-Identifier: MIT */
/*
 * Trace readers, the replay engine and `hmmap replay`: hand-computed miss
 * counts on tiny traces for every policy, the cloudphysics sanity checks
 * (every policy misses exactly once per distinct page when the cache holds
 * them all; OPT is a lower bound), the three formats agreeing, and errors
 * that name the line or the record.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hmmap.h"
#include "core/replay.h"
#include "harness.h"

#define CLOUD_REQUESTS 113872
#define CLOUD_DISTINCT 48974

static const char *cloud_path(void)
{
	static const char *const paths[] = {
		"../shared/traces/cloudphysics.txt",
		"../../shared/traces/cloudphysics.txt",
		"/work/shared/traces/cloudphysics.txt",
	};
	const char *env = getenv("HMMAP_TRACE_CLOUDPHYSICS");
	size_t i;

	if (env && !access(env, R_OK))
		return env;
	for (i = 0; i < sizeof paths / sizeof paths[0]; i++)
		if (!access(paths[i], R_OK))
			return paths[i];
	return NULL;
}

static uint64_t misses(struct hm__trace *t, const char *spec, uint32_t cap)
{
	struct hm__replay_result r;

	if (hm__replay_run(t, spec, cap, &r)) {
		fprintf(stderr, "replay %s/%u: %s\n", spec, cap, hm_errormsg());
		return UINT64_MAX;
	}
	return r.misses;
}

struct expect {
	const char *policy;
	uint64_t misses;
};

static int check_table(const uint64_t *keys, size_t n, uint32_t cap, const struct expect *e,
		       size_t ne, char *why, size_t whylen)
{
	struct hm__trace t;
	size_t i;

	if (hm__trace_from_keys(&t, keys, n))
		return -1;
	for (i = 0; i < ne; i++) {
		uint64_t m = misses(&t, e[i].policy, cap);

		if (m != e[i].misses) {
			snprintf(why, whylen, "%s at %u pages: %llu misses, expected %llu",
				 e[i].policy, cap, (unsigned long long)m,
				 (unsigned long long)e[i].misses);
			hm__trace_free(&t);
			return -1;
		}
	}
	hm__trace_free(&t);
	return 0;
}

/*
 * Belady's anomaly: 1 2 3 4 1 2 5 1 2 3 4 5. FIFO misses 9 times with 3
 * frames and 10 times with 4; LRU (a stack algorithm) 10 and 8; OPT 7 and 6.
 * CLOCK and SIEVE behave as LRU here (each hit is followed by misses that
 * clear its bit before it would matter). The counts of the adaptive policies
 * were worked out from their definitions and agree with an independent model
 * of each (see docs/policies.md).
 */
static void test_belady_anomaly(void)
{
	static const uint64_t tr[] = { 1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5 };
	static const struct expect three[] = {
		{ "fifo", 9 }, { "lru", 10 }, { "clock", 10 }, { "sieve", 10 }, { "opt", 7 },
		{ "2q", 10 },  { "arc", 10 }, { "lirs", 8 },   { "s3fifo", 9 },
	};
	static const struct expect four[] = {
		{ "fifo", 10 }, { "lru", 8 }, { "clock", 8 }, { "sieve", 8 }, { "opt", 6 },
		{ "2q", 9 },    { "arc", 7 }, { "lirs", 7 },  { "s3fifo", 7 },
	};
	char why[256];

	CHECKF(!check_table(tr, 12, 3, three, 9, why, sizeof why), "%s", why);
	CHECKF(!check_table(tr, 12, 4, four, 9, why, sizeof why), "%s", why);
}

/*
 * 1 2 3 1 4 1 5 with 3 pages. FIFO evicts 1 for 4 although it was just used,
 * so the next 1 misses: 6 misses. LRU evicts 2 for 4 and 3 for 5: 5 misses.
 * CLOCK: the hit sets 1's bit; for 4 the hand clears it and moves 1 behind 2
 * and 3, evicting 2; for 5 it evicts 3: 5 misses. 2Q keeps 1 in the A1in
 * FIFO (Kin = 0, so A1in is reclaimed first): 6 misses.
 */
static void test_lru_vs_fifo(void)
{
	static const uint64_t tr[] = { 1, 2, 3, 1, 4, 1, 5 };
	static const struct expect e[] = {
		{ "fifo", 6 }, { "lru", 5 }, { "clock", 5 }, { "sieve", 5 }, { "opt", 5 },
		{ "2q", 6 },   { "arc", 5 }, { "lirs", 5 },  { "s3fifo", 5 },
	};
	char why[256];

	CHECKF(!check_table(tr, 7, 3, e, 9, why, sizeof why), "%s", why);
}

/*
 * A loop of 4 pages through 3: LRU, FIFO, CLOCK and SIEVE miss on every
 * request (12); OPT misses 6 (3 compulsory, then one every other request).
 */
static void test_loop(void)
{
	static const uint64_t tr[] = { 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4 };
	static const struct expect e[] = {
		{ "fifo", 12 }, { "lru", 12 }, { "clock", 12 }, { "sieve", 12 }, { "opt", 6 },
		{ "2q", 10 },   { "arc", 12 }, { "lirs", 8 },   { "s3fifo", 8 },
	};
	char why[256];

	CHECKF(!check_table(tr, 12, 3, e, 9, why, sizeof why), "%s", why);
}

/*
 * Five hot pages used four times, a scan of 40 one-time pages, the hot pages
 * again, through 10 pages of cache. LRU, FIFO and CLOCK let the scan flush
 * the hot pages (50 misses); ARC, LIRS, S3-FIFO and SIEVE keep them and miss
 * only the 45 first touches, as OPT does.
 */
static void test_scan_resistance(void)
{
	uint64_t tr[65];
	size_t i, n = 0;
	static const struct expect e[] = {
		{ "fifo", 50 }, { "lru", 50 }, { "clock", 50 }, { "sieve", 45 }, { "opt", 45 },
		{ "2q", 50 },   { "arc", 45 }, { "lirs", 45 },  { "s3fifo", 45 },
	};
	char why[256];

	for (i = 0; i < 20; i++)
		tr[n++] = 1 + i % 5;
	for (i = 0; i < 40; i++)
		tr[n++] = 100 + i;
	for (i = 0; i < 5; i++)
		tr[n++] = 1 + i;
	CHECKF(!check_table(tr, n, 10, e, 9, why, sizeof why), "%s", why);
}

static void test_cloudphysics_all_fit(void)
{
	const char *path = cloud_path();
	struct hm__trace_opts o = { 0 };
	const struct hm_policy_ops *const *p;
	struct hm__trace t;
	size_t i, np;
	uint32_t caps[] = { CLOUD_DISTINCT, 60000 };
	int c;

	if (!path)
		SKIP("cloudphysics.txt not found (../shared/traces)");
	CHECKF(!hm__trace_load(&t, path, &o), "%s", hm_errormsg());
	CHECK(t.n == CLOUD_REQUESTS);
	CHECK(t.nids == CLOUD_DISTINCT);
	p = hm_policy_list(&np);
	for (i = 0; i < np; i++) {
		for (c = 0; c < 2; c++) {
			struct hm__replay_result r;

			CHECK(!hm__replay_run(&t, p[i]->name, caps[c], &r));
			CHECKF(r.requests == CLOUD_REQUESTS && r.misses == CLOUD_DISTINCT,
			       "%s at %u: %llu misses", p[i]->name, caps[c],
			       (unsigned long long)r.misses);
		}
	}
	hm__trace_free(&t);
}

static void test_cloudphysics_opt_bound(void)
{
	const char *path = cloud_path();
	struct hm__trace_opts o = { 0 };
	const struct hm_policy_ops *const *p;
	struct hm__trace t;
	uint32_t caps[] = { 10, 100, 1000, 5000, 20000 };
	uint64_t prev_lru = UINT64_MAX, prev_opt = UINT64_MAX;
	size_t i, np, c;

	if (!path)
		SKIP("cloudphysics.txt not found (../shared/traces)");
	CHECK(!hm__trace_load(&t, path, &o));
	p = hm_policy_list(&np);
	for (c = 0; c < sizeof caps / sizeof caps[0]; c++) {
		uint64_t opt = misses(&t, "opt", caps[c]), lru = misses(&t, "lru", caps[c]);

		for (i = 0; i < np; i++) {
			uint64_t m = misses(&t, p[i]->name, caps[c]);

			CHECKF(m != UINT64_MAX && opt <= m, "%s at %u: %llu < opt %llu", p[i]->name,
			       caps[c], (unsigned long long)m, (unsigned long long)opt);
		}
		/* Stack algorithms never miss more with more memory. */
		CHECK(lru <= prev_lru && opt <= prev_opt);
		prev_lru = lru;
		prev_opt = opt;
	}
	hm__trace_free(&t);
}

/*
 * Recorded miss counts on cloudphysics, as libCacheSim's tests record theirs.
 * They were not taken from this code alone: an independent model of each
 * definition (written separately, from the papers and libCacheSim's
 * structure) gives the same numbers. A change here is a change of semantics.
 */
static void test_cloudphysics_recorded(void)
{
	static const struct {
		const char *policy;
		uint64_t m[3];
	} rec[] = {
		{ "fifo", { 95520, 91581, 72229 } },  { "clock", { 94727, 91458, 72151 } },
		{ "lru", { 94823, 91527, 72053 } },   { "2q", { 94117, 87879, 72103 } },
		{ "arc", { 94027, 87770, 64422 } },   { "lirs", { 94304, 85289, 58672 } },
		{ "s3fifo", { 94005, 85689, 59311 } }, { "sieve", { 93975, 89798, 64431 } },
		{ "opt", { 87025, 71311, 51843 } },
	};
	static const uint32_t caps[3] = { 1000, 5000, 20000 };
	const char *path = cloud_path();
	struct hm__trace_opts o = { 0 };
	struct hm__trace t;
	size_t i, c;

	if (!path)
		SKIP("cloudphysics.txt not found (../shared/traces)");
	CHECK(!hm__trace_load(&t, path, &o));
	for (i = 0; i < sizeof rec / sizeof rec[0]; i++) {
		for (c = 0; c < 3; c++) {
			uint64_t m = misses(&t, rec[i].policy, caps[c]);

			CHECKF(m == rec[i].m[c], "%s at %u: %llu misses, recorded %llu",
			       rec[i].policy, caps[c], (unsigned long long)m,
			       (unsigned long long)rec[i].m[c]);
		}
	}
	hm__trace_free(&t);
}

/* The same pages as lines, as CSV (column 2, header) and as oracleGeneral. */
static void test_formats_agree(void)
{
	static const uint64_t keys[] = { 7, 3, 7, 18446744073709551615ull, 0, 3, 42, 7, 9, 9 };
	const size_t n = sizeof keys / sizeof keys[0];
	char lines[512], csv[512];
	unsigned char bin[24 * 10];
	struct hm__trace a, b, c;
	struct hm__trace_opts lo = { HM_TRACE_LINES, 0, 0 }, co = { HM_TRACE_CSV, 2, 1 },
			      bo = { HM_TRACE_ORACLE, 0, 0 };
	size_t i, lp = 0, cp = 0;
	int k;

	lp += (size_t)snprintf(lines + lp, sizeof lines - lp, "# a comment\n\n");
	cp += (size_t)snprintf(csv + cp, sizeof csv - cp, "time,page,size\n");
	for (i = 0; i < n; i++) {
		lp += (size_t)snprintf(lines + lp, sizeof lines - lp, " %llu \r\n",
				       (unsigned long long)keys[i]);
		cp += (size_t)snprintf(csv + cp, sizeof csv - cp, "%zu, \"%llu\" ,4096\n", i,
				       (unsigned long long)keys[i]);
		memset(bin + 24 * i, 0, 24);
		for (k = 0; k < 8; k++)
			bin[24 * i + 4 + k] = (unsigned char)(keys[i] >> (8 * k));
		bin[24 * i] = (unsigned char)i; /* clock time, ignored */
		bin[24 * i + 12] = 1;           /* size, ignored */
	}
	CHECKF(!hm__trace_parse(&a, "t.txt", lines, lp, &lo), "%s", hm_errormsg());
	CHECKF(!hm__trace_parse(&b, "t.csv", csv, cp, &co), "%s", hm_errormsg());
	CHECKF(!hm__trace_parse(&c, "t.bin", bin, sizeof bin, &bo), "%s", hm_errormsg());
	CHECK(a.n == n && b.n == n && c.n == n);
	CHECK(a.nids == 6 && b.nids == 6 && c.nids == 6);
	for (i = 0; i < n; i++)
		CHECK(a.keys[i] == keys[i] && b.keys[i] == keys[i] && c.keys[i] == keys[i]);
	CHECK(misses(&a, "arc", 3) == misses(&c, "arc", 3));
	CHECK(misses(&b, "lirs", 2) == misses(&c, "lirs", 2));
	hm__trace_free(&a);
	hm__trace_free(&b);
	hm__trace_free(&c);
}

static int parse_error(const char *name, const void *buf, size_t len, int format, unsigned col,
		       const char *want)
{
	struct hm__trace_opts o = { format, col, 0 };
	struct hm__trace t;

	if (!hm__trace_parse(&t, name, buf, len, &o)) {
		hm__trace_free(&t);
		return 0;
	}
	return strstr(hm_errormsg(), want) != NULL;
}

static void test_malformed(void)
{
	static const char l1[] = "1\n2\n\n# ok\nabc\n";
	static const char l2[] = "5\n99999999999999999999\n";
	static const char l3[] = "5\n-3\n";
	static const char l4[] = "5 6\n";
	static const char c1[] = "1,2\n3\n";
	static const char c2[] = "1,2\n3,x\n";
	unsigned char bin[24 * 3 + 5] = { 0 };

	CHECKF(parse_error("trace.txt", l1, strlen(l1), HM_TRACE_LINES, 0,
			   "trace.txt:5: not a page id: 'abc'"),
	       "%s", hm_errormsg());
	CHECKF(parse_error("t", l2, strlen(l2), HM_TRACE_LINES, 0, "t:2:"), "%s", hm_errormsg());
	CHECKF(parse_error("t", l3, strlen(l3), HM_TRACE_LINES, 0, "t:2:"), "%s", hm_errormsg());
	CHECKF(parse_error("t", l4, strlen(l4), HM_TRACE_LINES, 0, "t:1:"), "%s", hm_errormsg());
	CHECKF(parse_error("t.csv", c1, strlen(c1), HM_TRACE_CSV, 2, "t.csv:2: no column 2"),
	       "%s", hm_errormsg());
	CHECKF(parse_error("t.csv", c2, strlen(c2), HM_TRACE_CSV, 2, "t.csv:2: not a page id"),
	       "%s", hm_errormsg());
	CHECKF(parse_error("t.bin", bin, sizeof bin, HM_TRACE_ORACLE, 0,
			   "record 4 is truncated"),
	       "%s", hm_errormsg());
	/* Binary records read as lines: said so, not shown as an empty id. */
	bin[0] = 1;
	CHECKF(parse_error("t.dat", bin, sizeof bin, HM_TRACE_LINES, 0,
			   "t.dat:1: not text (a binary trace? --format oracle"),
	       "%s", hm_errormsg());
}

/*
 * A cache larger than the trace's distinct pages never evicts: every
 * policy misses once per page, and asking for four billion pages must not
 * size the policy for them.
 */
static void test_huge_cache(void)
{
	const struct hm_policy_ops *const *ops;
	struct hm__replay_result r;
	struct hm__trace t;
	uint64_t k[] = { 1, 2, 1, 3, 2 };
	size_t n;

	CHECK(!hm__trace_from_keys(&t, k, 5));
	ops = hm_policy_list(&n);
	for (size_t i = 0; i < n; i++) {
		CHECKF(hm__replay_run(&t, ops[i]->name, UINT32_MAX, &r) == 0, "%s: %s",
		       ops[i]->name, hm_errormsg());
		CHECKF(r.requests == 5 && r.misses == 3, "%s: %llu misses", ops[i]->name,
		       (unsigned long long)r.misses);
	}
	hm__trace_free(&t);
}

static void test_guess_format(void)
{
	CHECK(hm__trace_guess_format("x/y.csv") == HM_TRACE_CSV);
	CHECK(hm__trace_guess_format("w82.oracleGeneral.zst") == HM_TRACE_ORACLE);
	CHECK(hm__trace_guess_format("a.bin") == HM_TRACE_ORACLE);
	CHECK(hm__trace_guess_format("cloudphysics.txt") == HM_TRACE_LINES);
	CHECK(hm__trace_guess_format("x/y.csv.zst") == HM_TRACE_CSV);
	CHECK(hm__trace_guess_format("y.bin.ZST") == HM_TRACE_ORACLE);
	CHECK(hm__trace_guess_format("t.txt.zst") == HM_TRACE_LINES);
	CHECK(hm__trace_guess_format(".zst") == HM_TRACE_LINES);
}

static void test_bad_spec(void)
{
	struct hm__trace t;
	struct hm__replay_result r;
	uint64_t k[] = { 1, 2 };

	CHECK(!hm__trace_from_keys(&t, k, 2));
	CHECK(hm__replay_run(&t, "nosuch", 4, &r) == -ENOENT);
	CHECK(hm__replay_run(&t, "lru:x=1", 4, &r) == -EINVAL);
	CHECK(hm__replay_run(&t, "lru", 0, &r) == -EINVAL);
	hm__trace_free(&t);
}

/* ---- the CLI -------------------------------------------------------------- */

static char tool[512];

/* Runs a shell command, captures stdout+stderr; returns the exit status. */
static int run(const char *cmd, char *out, size_t len)
{
	FILE *f = popen(cmd, "r");
	size_t n = 0, r;
	int st;

	if (!f)
		return -1;
	while (n + 1 < len && (r = fread(out + n, 1, len - 1 - n, f)) > 0)
		n += r;
	out[n] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int have_tool(void)
{
	const char *b = getenv("HMMAP_BUILD");

	snprintf(tool, sizeof tool, "./%s/hmmap", b && *b ? b : "build");
	return access(tool, X_OK) == 0;
}

/* The keys of a recorded trace (one page index per line), through the replay reader. */
static int load_keys(const char *path, struct hm__trace *t)
{
	struct hm__trace_opts o = { 0 };

	return hm__trace_load(t, path, &o);
}

/* Whether want[] appears in t's keys in that order (sampled references may come between). */
static bool in_order(const struct hm__trace *t, const uint64_t *want, size_t n)
{
	size_t k = 0;

	for (uint64_t i = 0; i < t->n && k < n; i++)
		k += t->keys[i] == want[k];
	return k == n;
}

/*
 * Recording: hm_region_trace() writes a region's demand misses as page
 * indexes that the replay reader loads; HMMAP_TRACE does it for every
 * region, PATH then PATH.1; a path that cannot be written is an error,
 * never a trace lost in silence.
 */
static void test_record_region(void)
{
	static const uint64_t order[] = { 5, 3, 9, 0, 63 };
	char dir[] = "/tmp/hmmap-record-XXXXXX", path[128], path1[160];
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	struct hm__trace t;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/t", dir);
	CHECK(hm_store_open(&s, "mem:256K", 0) == 0);
	CHECK(hm_cache_new(&c, 1 << 20, "clock") == 0);
	CHECK(hm_region_map(&r, c, s, 0, 256 << 10, PROT_READ, HM_CACHED, 4096) == 0);
	CHECK(hm_advise(hm_region_addr(r), 256 << 10, HM_ADV_RANDOM) == 0);
	CHECK(hm_region_trace(r, path) == 0);
	CHECK(hm_region_trace(r, path) == -EBUSY);
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
		(void)((volatile char *)hm_region_addr(r))[order[i] * 4096];
	CHECK(hm_region_trace(r, NULL) == 0); /* stops and flushes */
	CHECK(load_keys(path, &t) == 0);
	CHECKF(t.n >= 5 && in_order(&t, order, 5), "%llu records", (unsigned long long)t.n);
	for (uint64_t i = 0; i < t.n; i++)
		CHECK(t.keys[i] < 64);
	hm__trace_free(&t);
	CHECK(hm_region_trace(NULL, path) == -EINVAL);
	CHECK(hm_region_trace(r, "/nonexistent-dir/t") < 0 && *hm_errormsg());
	/* A trace that cannot be written: stopping says so ... */
	CHECK(hm_region_trace(r, "/dev/full") == 0);
	(void)((volatile char *)hm_region_addr(r))[20 * 4096];
	CHECK(hm_region_trace(r, NULL) == -ENOSPC);
	/* ... and so does its region's end, on stderr, if nobody stopped it. */
	CHECK(hm_region_trace(r, "/dev/full") == 0);
	(void)((volatile char *)hm_region_addr(r))[21 * 4096];
	char err[512] = "";
	FILE *f = tmpfile();
	int saved = dup(2);
	fflush(stderr);
	dup2(fileno(f), 2);
	CHECK(hm_region_unmap(r) == 0);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	err[fread(err, 1, sizeof err - 1, f)] = 0;
	fclose(f);
	CHECKF(strstr(err, "/dev/full") && strstr(err, "incomplete"), "stderr: '%.300s'", err);
	CHECK(hm_cache_free(c) == 0 && hm_store_close(s) == 0);

	/* Every region of the process. */
	CHECK(setenv("HMMAP_TRACE", path, 1) == 0);
	char *p = hmmap(NULL, 64 << 10, PROT_READ, HM_CACHED, "mem:64K", 0);
	char *q = hmmap(NULL, 64 << 10, PROT_READ, HM_CACHED, "mem:64K", 0);
	CHECKF(p != MAP_FAILED && q != MAP_FAILED, "%s", hm_errormsg());
	CHECK(hm_advise(p, 64 << 10, HM_ADV_RANDOM) == 0 && hm_advise(q, 64 << 10, HM_ADV_RANDOM) == 0);
	(void)((volatile char *)p)[7 * 4096];
	(void)((volatile char *)q)[2 * 4096];
	CHECK(hmunmap(p, 64 << 10) == 0 && hmunmap(q, 64 << 10) == 0);
	snprintf(path1, sizeof path1, "%s.1", path);
	static const uint64_t seven = 7, two = 2;
	CHECK(load_keys(path, &t) == 0);
	CHECK(in_order(&t, &seven, 1));
	hm__trace_free(&t);
	CHECK(load_keys(path1, &t) == 0);
	CHECK(in_order(&t, &two, 1));
	hm__trace_free(&t);
	/* A path that cannot be written: the mapping fails and says why. */
	CHECK(setenv("HMMAP_TRACE", "/nonexistent-dir/t", 1) == 0);
	errno = 0;
	p = hmmap(NULL, 64 << 10, PROT_READ, HM_CACHED, "mem:64K", 0);
	CHECKF(p == MAP_FAILED && errno && strstr(hm_errormsg(), "HMMAP_TRACE"), "%s",
	       hm_errormsg());
	CHECK(unsetenv("HMMAP_TRACE") == 0);
	p = hmmap(NULL, 64 << 10, PROT_READ, HM_CACHED, "mem:64K", 0);
	CHECK(p != MAP_FAILED && hmunmap(p, 64 << 10) == 0);
	unlink(path);
	unlink(path1);
	rmdir(dir);
}

struct racer {
	char *base;
	_Atomic bool stop;
	unsigned seed;
};

static void *race_reader(void *arg)
{
	struct racer *x = arg;
	unsigned seed = x->seed;

	while (!atomic_load(&x->stop)) {
		seed = seed * 1103515245u + 12345u;
		(void)((volatile char *)x->base)[(seed >> 8) % 256 * 4096];
	}
	return NULL;
}

/*
 * Starting and stopping a trace while other threads fault: a recorder
 * must never hold a trace that stopping has freed (ASan saw one).
 */
static void test_trace_stop_races(void)
{
	char dir[] = "/tmp/hmmap-trace-race-XXXXXX", path[128];
	struct racer x = { .seed = 1 }, y = { .seed = 7 };
	pthread_t a, b;
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/t", dir);
	CHECK(hm_store_open(&s, "mem:1M", 0) == 0);
	CHECK(hm_cache_new(&c, 64 << 10, "fifo") == 0);
	CHECK(hm_region_map(&r, c, s, 0, 1 << 20, PROT_READ, HM_CACHED, 4096) == 0);
	CHECK(hm_advise(hm_region_addr(r), 1 << 20, HM_ADV_RANDOM) == 0);
	x.base = y.base = hm_region_addr(r);
	CHECK(pthread_create(&a, NULL, race_reader, &x) == 0);
	CHECK(pthread_create(&b, NULL, race_reader, &y) == 0);
	time_t end = time(NULL) + 2;
	int rounds = 0, errs = 0;
	while (time(NULL) < end) {
		int rc = hm_region_trace(r, path);
		if (rc)
			printf("start: %d %s\n", rc, hm_errormsg()), errs++;
		rc = hm_region_trace(r, NULL);
		if (rc)
			printf("stop: %d %s\n", rc, hm_errormsg()), errs++;
		rounds++;
	}
	atomic_store(&x.stop, true);
	atomic_store(&y.stop, true);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CHECKF(errs == 0, "%d of %d rounds failed: %s", errs, rounds, hm_errormsg());
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(c) == 0 && hm_store_close(s) == 0);
	unlink(path);
	rmdir(dir);
}

/*
 * A program that returns from main without unmapping its regions still
 * gets its whole trace (the exit handler writes it out), a trace that
 * cannot be written says so on stderr at exit, and an exit while other
 * threads are faulting neither crashes nor hangs.
 */
struct exit_child {
	const char *trace; /* HMMAP_TRACE, or hm_region_trace()'s path if api */
	bool api;
	int threads;       /* faulting threads still running at exit */
	int out;           /* the pipe: faults counted, then stderr */
};

static void *exit_faulter(void *arg)
{
	struct racer *x = arg;
	unsigned seed = x->seed;

	for (;;) {
		seed = seed * 1103515245u + 12345u;
		(void)((volatile char *)x->base)[(seed >> 8) % 256 * 4096];
	}
	return NULL;
}

static void exit_child_run(const struct exit_child *e)
{
	struct racer x[2] = { { .seed = 3 }, { .seed = 11 } };
	struct hm_stats st;
	pthread_t tid;
	char *p;

	dup2(e->out, 2);
	if (!e->api)
		setenv("HMMAP_TRACE", e->trace, 1);
	if (e->threads)
		setenv("HMMAP_CACHE_SIZE", "64K", 1); /* 16 of 256 pages: they fault on */
	p = hmmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, "mem:1M", 0);
	if (p == MAP_FAILED || hm_advise(p, 1 << 20, HM_ADV_RANDOM))
		_exit(3);
	if (e->api && hm_region_trace(hm_region_find(p), e->trace))
		_exit(6);
	for (int i = 0; i < 50; i++)
		p[(size_t)(i * 37 % 256) * 4096] = 1;
	for (int i = 0; i < e->threads; i++) {
		x[i].base = p;
		if (pthread_create(&tid, NULL, exit_faulter, &x[i]))
			_exit(4);
	}
	if (hm_stats(p, &st))
		_exit(5);
	/* With threads, exit only once they are evicting and faulting again. */
	while (e->threads && st.faults_missing < 1000)
		if (hm_stats(p, &st))
			_exit(5);
	dprintf(e->out, "faults %llu\n",
		(unsigned long long)(st.faults_missing + st.faults_minor));
	/* A normal exit with the region mapped and, maybe, threads faulting. */
	exit(0);
}

static int exit_child_wait(const struct exit_child *e0, char *out, size_t len)
{
	struct exit_child e = *e0;
	int pfd[2], st = -1;
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	if (pipe(pfd))
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		e.out = pfd[1];
		exit_child_run(&e);
	}
	close(pfd[1]);
	while (pid > 0 && n + 1 < len && (r = read(pfd[0], out + n, len - 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		n += (size_t)r;
	}
	out[n] = 0;
	close(pfd[0]);
	while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

/* The one file in dir (the child's HMMAP_TRACE count goes on from this process's). */
static int only_file(const char *dir, char *path, size_t len)
{
	struct dirent *d;
	DIR *dp = opendir(dir);
	int n = 0;

	while (dp && (d = readdir(dp)))
		if (d->d_name[0] != '.' && n++ == 0)
			snprintf(path, len, "%s/%s", dir, d->d_name);
	if (dp)
		closedir(dp);
	return n == 1 ? 0 : -1;
}

static void test_trace_at_exit(void)
{
	char dir[] = "/tmp/hmmap-trace-exit-XXXXXX", path[128], file[400], out[1024];
	unsigned long long faults = 0;
	struct hm__trace t;
	int st;

	/* The exits happen in children; the parent has the engine's threads by now. */
	const char *san = getenv("HMMAP_TEST_SANITIZER");
	if (san && !strcmp(san, "tsan"))
		SKIP("TSan kills a child of a multi-threaded parent that starts threads");
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/t", dir);
	struct exit_child e = { .trace = path };
	st = exit_child_wait(&e, out, sizeof out);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x: %.300s", st, out);
	CHECKF(sscanf(out, "faults %llu", &faults) == 1 && faults >= 50, "%.300s", out);
	CHECKF(!strstr(out, "hmmap:"), "stderr: %.300s", out);
	CHECK(only_file(dir, file, sizeof file) == 0);
	CHECK(load_keys(file, &t) == 0);
	CHECKF(t.n == faults, "%llu lines in the trace for %llu faults", (unsigned long long)t.n,
	       faults);
	hm__trace_free(&t);

	unlink(file);
	/* Not written in full (hm_region_trace() this time): said on stderr at exit. */
	e.trace = "/dev/full";
	e.api = true;
	st = exit_child_wait(&e, out, sizeof out);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x: %.300s", st, out);
	CHECKF(strstr(out, "/dev/full") && strstr(out, "incomplete"), "stderr: '%.300s'", out);

	/* Threads still faulting while the exit handler writes the trace out. */
	e.trace = path;
	e.threads = 2;
	for (int round = 0; round < 5; round++) {
		st = exit_child_wait(&e, out, sizeof out);
		CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x: %.300s", st, out);
		CHECKF(!strstr(out, "hmmap:"), "stderr: %.300s", out);
		CHECK(load_keys(path, &t) == 0);
		CHECKF(t.n >= 50, "%llu lines", (unsigned long long)t.n);
		for (uint64_t i = 0; i < t.n; i++)
			if (t.keys[i] >= 256) {
				CHECKF(0, "line %llu: page %llu", (unsigned long long)i,
				       (unsigned long long)t.keys[i]);
				break;
			}
		hm__trace_free(&t);
	}
	unlink(path);
	rmdir(dir);
}

/*
 * The man page's synopsis of `hmmap replay` says what --help says: an
 * option is in brackets in both or in neither (--policy is optional, its
 * default all; --cache is required).
 */
static void test_man_synopsis(void)
{
	static char usage[4096], man[65536];
	char cmd[600];
	size_t n;
	FILE *f;

	if (!have_tool())
		SKIP("%.200s not built", tool);
	snprintf(cmd, sizeof cmd, "%s replay --help", tool);
	CHECK(run(cmd, usage, sizeof usage) == 0);
	f = fopen("man/hmmap.1", "r");
	if (!f)
		SKIP("man/hmmap.1 not found (run from the source tree)");
	n = fread(man, 1, sizeof man - 1, f);
	man[n] = 0;
	fclose(f);
	char *syn = strstr(man, ".B hmmap replay\n");
	CHECK(syn != NULL);
	char *end = syn ? strstr(syn, "\n.br") : NULL;
	CHECK(end != NULL);
	if (!syn || !end)
		return;
	*end = 0;
	char *uline = strstr(usage, "usage: hmmap replay");
	CHECK(uline != NULL);
	if (!uline)
		return;
	uline[strcspn(uline, "\n")] = 0;
	static const char *const opts[] = { "policy", "cache" };
	for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
		char u_opt[32], u_req[32], m_opt[48];
		snprintf(u_opt, sizeof u_opt, "[--%s ", opts[i]);
		snprintf(u_req, sizeof u_req, " --%s ", opts[i]);
		snprintf(m_opt, sizeof m_opt, ".RB [ \\-\\-%s ", opts[i]);
		bool u_optional = strstr(uline, u_opt) != NULL;
		CHECKF(u_optional || strstr(uline, u_req), "--%s not in '%s'", opts[i], uline);
		bool m_optional = strstr(syn, m_opt) != NULL;
		CHECKF(u_optional == m_optional, "--%s: --help says %s, the man page %s", opts[i],
		       u_optional ? "optional" : "required", m_optional ? "optional" : "required");
	}
}

static void test_cli(void)
{
	static char out[65536];
	char cmd[2048], path[] = "/tmp/hmmap-replay-XXXXXX";
	int fd;

	if (!have_tool())
		SKIP("%.200s not built", tool);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(write(fd, "1\n2\n3\n1\n4\n1\n5\n", 14) == 14);
	close(fd);

	snprintf(cmd, sizeof cmd, "%s replay --policy lru,fifo --cache 3 %s 2>&1", tool, path);
	CHECK(run(cmd, out, sizeof out) == 0);
	CHECKF(strstr(out, "cache_pages") && strstr(out, "miss_ratio"), "%.200s", out);
	CHECKF(strstr(out, "lru") && strstr(out, "fifo"), "%.200s", out);

	snprintf(cmd, sizeof cmd, "%s replay --json --policy lru --policy fifo --cache 3,10 %s",
		 tool, path);
	CHECK(run(cmd, out, sizeof out) == 0);
	CHECKF(out[0] == '[' && strstr(out, "\"policy\": \"lru\"") &&
		       strstr(out, "\"cache_pages\": 3") && strstr(out, "\"requests\": 7") &&
		       strstr(out, "\"misses\": 5") && strstr(out, "\"misses\": 6"),
	       "%.200s", out);

	/* Option commas stay with their policy. */
	snprintf(cmd, sizeof cmd,
		 "%s replay --json --policy s3fifo:small=0.2,ghost=0.5,lru --cache 3 %s", tool,
		 path);
	CHECK(run(cmd, out, sizeof out) == 0);
	CHECKF(strstr(out, "\"policy\": \"s3fifo:small=0.2,ghost=0.5\"") &&
		       strstr(out, "\"policy\": \"lru\""),
	       "%.200s", out);

	snprintf(cmd, sizeof cmd, "%s replay --policy all --cache 3 %s", tool, path);
	CHECK(run(cmd, out, sizeof out) == 0);
	CHECKF(strstr(out, "sieve") && strstr(out, "opt") && strstr(out, "arc"), "%.200s", out);

	/*
	 * Names in any case, as hm_policy_lookup() takes them, in a list too,
	 * and reported in their own spelling.
	 */
	snprintf(cmd, sizeof cmd,
		 "%s replay --json --policy s3fifo:small=0.2,LRU --policy S3FIFO:ghost=0.5 "
		 "--cache 3 %s 2>&1",
		 tool, path);
	CHECK(run(cmd, out, sizeof out) == 0);
	CHECKF(strstr(out, "\"policy\": \"s3fifo:small=0.2\"") &&
		       strstr(out, "\"policy\": \"lru\"") &&
		       strstr(out, "\"policy\": \"s3fifo:ghost=0.5\"") && !strstr(out, "LRU") &&
		       !strstr(out, "S3FIFO"),
	       "%.200s", out);
	snprintf(cmd, sizeof cmd, "%s replay --policy Lru --cache 3 %s 2>&1", tool, path);
	CHECK(run(cmd, out, sizeof out) == 0);
	CHECKF(strstr(out, "\nlru ") && !strstr(out, "Lru"), "%.200s", out);

	/* Bad usage: exit 2. */
	snprintf(cmd, sizeof cmd, "%s replay --policy nosuch --cache 3 %s 2>&1", tool, path);
	CHECK(run(cmd, out, sizeof out) == 2);
	snprintf(cmd, sizeof cmd, "%s replay --policy lru --cache 0 %s 2>&1", tool, path);
	CHECK(run(cmd, out, sizeof out) == 2);
	snprintf(cmd, sizeof cmd, "%s replay --policy lru %s 2>&1", tool, path);
	CHECK(run(cmd, out, sizeof out) == 2);
	snprintf(cmd, sizeof cmd, "%s replay --policy 2q:kin=7 --cache 3 %s 2>&1", tool, path);
	CHECK(run(cmd, out, sizeof out) == 2);
	CHECKF(strstr(out, "kin"), "%.200s", out);
	static const char *const empty[] = { "lru,,fifo", ",lru", "lru," };
	for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
		snprintf(cmd, sizeof cmd, "%s replay --policy '%s' --cache 3 %s 2>&1", tool,
			 empty[i], path);
		CHECK(run(cmd, out, sizeof out) == 2);
		CHECKF(strstr(out, "empty item"), "%s: %.200s", empty[i], out);
	}
	snprintf(cmd, sizeof cmd, "%s replay --cache 3 2>&1", tool);
	CHECK(run(cmd, out, sizeof out) == 2);

	/* A bad trace: exit 1, with the line. */
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	CHECK(write(fd, "1\n2\nxyz\n", 8) == 8);
	close(fd);
	snprintf(cmd, sizeof cmd, "%s replay --policy lru --cache 3 %s 2>&1", tool, path);
	CHECK(run(cmd, out, sizeof out) == 1);
	CHECKF(strstr(out, ":3: not a page id: 'xyz'"), "%.200s", out);
	snprintf(cmd, sizeof cmd, "%s replay --cache 3 /nonexistent/trace 2>&1", tool);
	CHECK(run(cmd, out, sizeof out) == 1);

	/* --column and --header say CSV, and contradict another format. */
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	{
		static const char csv[] = "id,page\n7,1\n8,2\n9,1\n";
		CHECK(write(fd, csv, strlen(csv)) == (ssize_t)strlen(csv));
	}
	close(fd);
	snprintf(cmd, sizeof cmd, "%s replay --json --policy lru --cache 1 --header --column 2 %s",
		 tool, path);
	CHECK(run(cmd, out, sizeof out) == 0);
	CHECKF(strstr(out, "\"requests\": 3") && strstr(out, "\"misses\": 3"), "%.200s", out);
	snprintf(cmd, sizeof cmd,
		 "%s replay --policy lru --cache 1 --header --format lines %s 2>&1", tool, path);
	CHECK(run(cmd, out, sizeof out) == 2);
	CHECKF(strstr(out, "--header"), "%.200s", out);
	unlink(path);

	/* zstd-compressed traces are read as they are; gzip is named. */
	CHECKF(system("command -v zstd >/dev/null 2>&1") == 0,
	       "no zstd tool (make deps installs it)");
	{
		char z[sizeof path + 8];
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0);
		CHECK(write(fd, "1\n2\n3\n1\n4\n1\n5\n", 14) == 14);
		close(fd);
		snprintf(z, sizeof z, "%s.zst", path);
		snprintf(cmd, sizeof cmd, "zstd -q -f %s -o %s && %s replay --json --policy lru "
					  "--cache 3 %s", path, z, tool, z);
		CHECK(run(cmd, out, sizeof out) == 0);
		CHECKF(strstr(out, "\"requests\": 7") && strstr(out, "\"misses\": 5"), "%.200s",
		       out);
		snprintf(cmd, sizeof cmd, "truncate -s 20 %s && %s replay --cache 3 %s 2>&1", z,
			 tool, z);
		CHECK(run(cmd, out, sizeof out) == 1);
		CHECKF(strstr(out, "zstd"), "%.200s", out);
		unlink(z);
		snprintf(cmd, sizeof cmd, "gzip -f %s && %s replay --cache 3 %s.gz 2>&1", path,
			 tool, path);
		CHECK(run(cmd, out, sizeof out) == 1);
		CHECKF(strstr(out, "gzip"), "%.200s", out);
		snprintf(z, sizeof z, "%s.gz", path);
		unlink(z);
	}
	unlink(path);

	snprintf(cmd, sizeof cmd, "%s policies", tool);
	CHECK(run(cmd, out, sizeof out) == 0);
	CHECKF(strstr(out, "s3fifo") && strstr(out, "lirs") && strstr(out, "2q"), "%.200s", out);
}

int main(void)
{
	RUN(test_belady_anomaly);
	RUN(test_lru_vs_fifo);
	RUN(test_loop);
	RUN(test_scan_resistance);
	RUN(test_cloudphysics_all_fit);
	RUN(test_cloudphysics_opt_bound);
	RUN(test_cloudphysics_recorded);
	RUN(test_formats_agree);
	RUN(test_malformed);
	RUN(test_guess_format);
	RUN(test_huge_cache);
	RUN(test_bad_spec);
	RUN(test_record_region);
	RUN(test_trace_stop_races);
	RUN(test_trace_at_exit);
	RUN(test_cli);
	RUN(test_man_synopsis);
	return test_done();
}
