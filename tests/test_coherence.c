/* SPDX-License-Identifier: MIT */
/*
 * The memory model of docs/memory-model.md, one case per rule: direct,
 * hybrid and cached views of one pmem: store at once, in one process and in
 * two. Each case runs in a child of its own (fresh library state); a
 * two-process case forks its second process before either uses hmmap.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "bamutil.h"

#define LEN (1u << 20)
#define PG 4096

static char path[256], uri[300];
static unsigned char *ref;

static void make_data(void)
{
	free(ref);
	ref = tu_make_file(path, LEN, 31);
	snprintf(uri, sizeof uri, "pmem:%s", path);
}

static int child_fn(void *arg)
{
	t_case_failed = t_case_skipped = 0;
	t_reason[0] = 0;
	((void (*)(void))arg)();
	if (t_case_failed)
		printf("%s\n", t_reason);
	if (t_case_skipped)
		printf("skip: %s\n", t_reason);
	return t_case_failed ? 1 : t_case_skipped ? 77 : 0;
}

#define IN_CHILD(fn)                                                                     \
	static void fn##_child(void);                                                    \
	static void fn(void)                                                             \
	{                                                                                \
		TU_CHILD_RESULT(tu_child(NULL, child_fn, (void *)fn##_child));             \
	}                                                                                \
	static void fn##_child(void)

struct views {
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r[3];
	unsigned char *p[3];
};

/* Maps the store in each mode of modes[] (0 ends), through one cache of `budget`. */
static int views_map(struct views *v, size_t budget, const int *modes)
{
	memset(v, 0, sizeof *v);
	if (hm_cache_new(&v->c, budget, NULL) || hm_store_open(&v->s, uri, 0))
		return -1;
	for (int i = 0; i < 3 && modes[i]; i++) {
		if (hm_region_map(&v->r[i], v->c, v->s, 0, LEN, PROT_READ | PROT_WRITE, modes[i], 0))
			return -1;
		v->p[i] = hm_region_addr(v->r[i]);
	}
	return 0;
}

static int views_unmap(struct views *v)
{
	int rc = 0;

	for (int i = 0; i < 3; i++)
		if (v->r[i])
			rc |= hm_region_unmap(v->r[i]);
	rc |= hm_store_close(v->s);
	rc |= hm_cache_free(v->c);
	return rc;
}

/* Rule 1: direct to direct, no call needed. */
IN_CHILD(test_rule1_direct_direct)
{
	struct views v;
	const int modes[] = { HM_DIRECT, HM_DIRECT, 0 };

	make_data();
	CHECKF(views_map(&v, 1 << 20, modes) == 0, "%s", hm_errormsg());
	CHECK(v.p[0] != v.p[1]);
	for (size_t i = 0; i < LEN; i += PG) {
		v.p[0][i + 9] = (unsigned char)(i >> 12);
		CHECK(v.p[1][i + 9] == (unsigned char)(i >> 12));
	}
	CHECK(views_unmap(&v) == 0);
}

/* Rule 2: direct to a hybrid page not in DRAM, no call needed. */
IN_CHILD(test_rule2_direct_hybrid)
{
	struct views v;
	const int modes[] = { HM_DIRECT, HM_HYBRID, 0 };

	make_data();
	CHECKF(views_map(&v, 1 << 20, modes) == 0, "%s", hm_errormsg());
	for (size_t i = 0; i < LEN; i += PG) {
		v.p[0][i + 1] = 0xa5;
		CHECK(v.p[1][i + 1] == 0xa5);
	}
	CHECK(views_unmap(&v) == 0);
}

/*
 * Rule 3: a store through a cached view reaches the medium (and every
 * direct view) when hmsync of it returns, or when the page is evicted; not
 * before.
 */
IN_CHILD(test_rule3_cached_to_direct)
{
	struct views v;
	const int modes[] = { HM_CACHED, HM_DIRECT, 0 };
	unsigned char *cached, *direct;

	make_data();
	/* 16 pages of cache: eviction happens, and the budget is large enough to hold a few. */
	CHECKF(views_map(&v, 16 * PG, modes) == 0, "%s", hm_errormsg());
	cached = v.p[0];
	direct = v.p[1];
	cached[5] = (unsigned char)~ref[5];
	CHECK(direct[5] == ref[5]);
	CHECK(hm_sync(cached, PG, MS_ASYNC) == 0);
	CHECK(direct[5] == (unsigned char)~ref[5]);
	cached[PG + 5] = (unsigned char)~ref[PG + 5];
	CHECK(direct[PG + 5] == ref[PG + 5]);
	CHECK(hm_sync(cached, LEN, MS_SYNC) == 0);
	CHECK(direct[PG + 5] == (unsigned char)~ref[PG + 5]);
	/* Eviction: after writing every page through 16 pages of cache, the evicted ones are there. */
	for (size_t i = 2 * PG; i < LEN; i += PG)
		cached[i] = 0x77;
	int seen = 0;
	for (size_t i = 2 * PG; i < LEN; i += PG)
		seen += direct[i] == 0x77;
	CHECKF(seen >= (int)(LEN / PG) - 2 - 16, "only %d written-back pages visible", seen);
	CHECK(views_unmap(&v) == 0);
}

/*
 * Rule 4: a store through a direct view is seen by a cached view at the
 * page's next miss; a page already resident in the cached view keeps its
 * copy until hmsync(MS_INVALIDATE) of it returns.
 */
IN_CHILD(test_rule4_direct_to_cached)
{
	struct views v;
	const int modes[] = { HM_CACHED, HM_DIRECT, 0 };
	unsigned char *cached, *direct;
	volatile unsigned char sink;

	make_data();
	CHECKF(views_map(&v, 1 << 20, modes) == 0, "%s", hm_errormsg());
	cached = v.p[0];
	direct = v.p[1];
	CHECK(hm_advise(cached, LEN, HM_ADV_RANDOM) == 0); /* no readahead: page 7 stays absent */
	sink = cached[3 * PG];                             /* page 3 resident in the cached view */
	(void)sink;
	direct[3 * PG + 1] = (unsigned char)~ref[3 * PG + 1];
	direct[7 * PG + 1] = (unsigned char)~ref[7 * PG + 1];
	CHECK(cached[7 * PG + 1] == (unsigned char)~ref[7 * PG + 1]); /* a miss reads the medium */
	CHECK(cached[3 * PG + 1] == ref[3 * PG + 1]);                 /* the resident copy */
	CHECK(hm_sync(cached + 3 * PG, PG, MS_SYNC | MS_INVALIDATE) == 0);
	CHECK(cached[3 * PG + 1] == (unsigned char)~ref[3 * PG + 1]);
	CHECK(views_unmap(&v) == 0);
}

/*
 * Rule 5: write-back is whole pages. A cached view's write-back of a page
 * replaces what other views stored in that page since it was loaded.
 */
IN_CHILD(test_rule5_page_granularity)
{
	struct views v;
	const int modes[] = { HM_CACHED, HM_DIRECT, 0 };
	unsigned char *cached, *direct;

	make_data();
	CHECKF(views_map(&v, 1 << 20, modes) == 0, "%s", hm_errormsg());
	cached = v.p[0];
	direct = v.p[1];
	cached[0] = 1;                                    /* page 0 loaded and dirty */
	direct[100] = (unsigned char)~ref[100];           /* another byte of page 0, direct */
	CHECK(hm_sync(cached, PG, MS_SYNC) == 0);
	CHECK(direct[0] == 1);
	CHECK(direct[100] == ref[100]);                   /* overwritten by the write-back */
	/* A clean cached page is never written back: the direct store survives. */
	direct[PG + 100] = (unsigned char)~ref[PG + 100];
	volatile unsigned char sink = cached[PG];
	(void)sink;
	direct[PG + 101] = 0x11;
	CHECK(hm_sync(cached, LEN, MS_SYNC) == 0);
	CHECK(direct[PG + 100] == (unsigned char)~ref[PG + 100] && direct[PG + 101] == 0x11);
	CHECK(views_unmap(&v) == 0);
}

/*
 * Rule 6: a hybrid page in DRAM behaves as a cached page: its stores reach
 * the medium at hmsync (or its eviction), direct stores to it meanwhile are
 * replaced by that write-back, and afterwards the page is direct again.
 */
IN_CHILD(test_rule6_hybrid_held)
{
	struct views v;
	const int modes[] = { HM_HYBRID, HM_DIRECT, HM_CACHED };
	unsigned char *hy, *direct, *cached;

	make_data();
	CHECKF(views_map(&v, 1 << 20, modes) == 0, "%s", hm_errormsg());
	hy = v.p[0];
	direct = v.p[1];
	cached = v.p[2];
	CHECK(hm_advise(cached, LEN, HM_ADV_RANDOM) == 0); /* no readahead: page 2 stays absent */
	hy[2 * PG] = 0x42;                                 /* page 2 moves into DRAM */
	CHECK(direct[2 * PG] == ref[2 * PG]);
	direct[2 * PG + 50] = (unsigned char)~ref[2 * PG + 50];
	CHECK(hy[2 * PG + 50] == ref[2 * PG + 50]);        /* the DRAM copy */
	CHECK(hm_sync(hy, LEN, MS_SYNC) == 0);
	CHECK(direct[2 * PG] == 0x42);
	CHECK(direct[2 * PG + 50] == ref[2 * PG + 50]);    /* replaced by the write-back */
	/* Direct again: rule 2 holds for the page. */
	direct[2 * PG + 60] = 0x99;
	CHECK(hy[2 * PG + 60] == 0x99);
	/* A cached view sees the hybrid store after the hybrid hmsync (rules 3+4 combined). */
	CHECK(cached[2 * PG] == 0x42 && cached[2 * PG + 60] == 0x99);
	CHECK(views_unmap(&v) == 0);
}

/*
 * Writes `v` to page `pg` of a hybrid view (it moves into DRAM), then
 * hmsync(MS_INVALIDATE)s or hm_protect(PROT_READ)s the whole view: the
 * page must reach the medium and be the medium again.
 */
static void held_page_goes_back(unsigned char *hy, unsigned char *direct, size_t pg,
				unsigned char v, bool protect)
{
	hy[pg * PG] = v;
	CHECK(direct[pg * PG] == ref[pg * PG]);
	CHECK((protect ? hm_protect(hy, LEN, PROT_READ) : hm_sync(hy, LEN, MS_INVALIDATE)) == 0);
	CHECK(direct[pg * PG] == v);
	direct[pg * PG + 1] = (unsigned char)(v + 1);
	CHECK(hy[pg * PG + 1] == (unsigned char)(v + 1));
}

/*
 * What the calls guarantee: MS_INVALIDATE alone on a cached view writes
 * dirty pages back and drops the range; on a hybrid view the held pages
 * are written back and the range is the medium; on a direct view it is a
 * sync. hm_protect(PROT_READ) of a hybrid range writes its held pages back.
 */
IN_CHILD(test_calls_invalidate_protect)
{
	struct views v;
	const int modes[] = { HM_CACHED, HM_HYBRID, HM_DIRECT };
	unsigned char *cached, *hy, *direct;
	volatile unsigned char sink;

	make_data();
	CHECKF(views_map(&v, 1 << 20, modes) == 0, "%s", hm_errormsg());
	cached = v.p[0];
	hy = v.p[1];
	direct = v.p[2];
	CHECK(hm_advise(cached, LEN, HM_ADV_RANDOM) == 0);
	/* Cached, MS_INVALIDATE alone: the dirty page reaches the medium ... */
	cached[5 * PG] = 0x11;
	sink = cached[6 * PG]; /* page 6 resident and clean */
	(void)sink;
	direct[6 * PG + 1] = (unsigned char)~ref[6 * PG + 1];
	CHECK(cached[6 * PG + 1] == ref[6 * PG + 1]);
	CHECK(hm_sync(cached, LEN, MS_INVALIDATE) == 0);
	CHECK(direct[5 * PG] == 0x11);
	/* ... and every page reads the medium at its next touch. */
	CHECK(cached[6 * PG + 1] == (unsigned char)~ref[6 * PG + 1]);
	/* Hybrid, MS_INVALIDATE: the held page is written back; the range is the medium. */
	held_page_goes_back(hy, direct, 8, 0x33, false);
	/* Direct, MS_INVALIDATE: a sync, nothing lost. */
	direct[9 * PG] = 0x35;
	CHECK(hm_sync(direct, LEN, MS_SYNC | MS_INVALIDATE) == 0);
	CHECK(direct[9 * PG] == 0x35 && hy[9 * PG] == 0x35);
	/* hm_protect(PROT_READ) on hybrid: held pages written back, the range is the medium. */
	held_page_goes_back(hy, direct, 10, 0x36, true);
	CHECK(hm_protect(hy, LEN, PROT_READ | PROT_WRITE) == 0);
	hy[10 * PG + 2] = 0x38; /* writable again: into DRAM */
	CHECK(hm_sync(hy, LEN, MS_SYNC) == 0);
	CHECK(direct[10 * PG + 2] == 0x38);
	CHECK(views_unmap(&v) == 0);
}

/*
 * Rule 7: across processes the same rules hold, each process calling
 * hmsync for its own views. A writes through a cached view; B's direct view
 * sees the store only after A's hmsync returned. And B's direct stores are
 * seen by A's direct view at once.
 */
static int pipe_ab[2], pipe_ba[2];

static int proc_a(void)
{
	unsigned char *cached, *direct;
	char ch;

	cached = hmmap(NULL, LEN, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	direct = hmmap(NULL, LEN, PROT_READ | PROT_WRITE, HM_DIRECT, uri, 0);
	if (cached == MAP_FAILED || direct == MAP_FAILED)
		return 2;
	cached[10] = 0xee;
	if (write(pipe_ab[1], "1", 1) != 1 || read(pipe_ba[0], &ch, 1) != 1) /* B checks: old */
		return 3;
	if (hmsync(cached, LEN, MS_SYNC))
		return 4;
	if (write(pipe_ab[1], "2", 1) != 1 || read(pipe_ba[0], &ch, 1) != 1) /* B checks: new; writes */
		return 5;
	if (direct[20] != 0xdd)
		return 6;
	if (hmunmap(cached, LEN) || hmunmap(direct, LEN))
		return 7;
	return 0;
}

IN_CHILD(test_rule7_two_processes)
{
	unsigned char *direct;
	pid_t pid;
	int st;
	char ch;

	make_data();
	CHECK(pipe(pipe_ab) == 0 && pipe(pipe_ba) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(proc_a());
	direct = hmmap(NULL, LEN, PROT_READ | PROT_WRITE, HM_DIRECT, uri, 0);
	CHECKF(direct != MAP_FAILED, "%s", hm_errormsg());
	CHECK(read(pipe_ab[0], &ch, 1) == 1 && ch == '1');
	CHECK(direct[10] == ref[10]);
	CHECK(write(pipe_ba[1], "k", 1) == 1);
	CHECK(read(pipe_ab[0], &ch, 1) == 1 && ch == '2');
	CHECK(direct[10] == 0xee);
	direct[20] = 0xdd;
	CHECK(write(pipe_ba[1], "k", 1) == 1);
	waitpid(pid, &st, 0);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "process A: %s", tu_status_str(st));
	CHECK(hmunmap(direct, LEN) == 0);
}

/*
 * Rule 8: hmsync(MS_SYNC) on a direct view makes durable every store to
 * the range that is in the medium, whichever view or process made it: the
 * flush is by range of the medium. (kill -9 survival: test_direct.)
 * Checked here: after a cached view's hmsync and a direct view's hmsync, the
 * file read through another descriptor has both.
 */
IN_CHILD(test_rule8_sync_durability)
{
	struct views v;
	const int modes[] = { HM_CACHED, HM_DIRECT, HM_HYBRID };

	make_data();
	CHECKF(views_map(&v, 1 << 20, modes) == 0, "%s", hm_errormsg());
	v.p[0][0] = ref[0] = 1;
	v.p[1][PG] = ref[PG] = 2;
	v.p[2][2 * PG] = ref[2 * PG] = 3;
	CHECK(tu_cmp_file(path, ref, LEN) != -1); /* the cached and hybrid stores are not there yet */
	CHECK(hm_sync(v.p[0], LEN, MS_SYNC) == 0);
	CHECK(hm_sync(v.p[2], LEN, MS_SYNC) == 0);
	CHECK(hm_sync(v.p[1], LEN, MS_SYNC) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
	CHECK(views_unmap(&v) == 0);
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	RUN(test_rule1_direct_direct);
	RUN(test_rule2_direct_hybrid);
	RUN(test_rule3_cached_to_direct);
	RUN(test_rule4_direct_to_cached);
	RUN(test_rule5_page_granularity);
	RUN(test_rule6_hybrid_held);
	RUN(test_rule7_two_processes);
	RUN(test_rule8_sync_durability);
	RUN(test_calls_invalidate_protect);
	tu_cleanup();
	free(ref);
	return test_done();
}
