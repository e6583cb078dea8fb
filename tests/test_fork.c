/* SPDX-License-Identifier: MIT */
/*
 * fork(): a child starts hmmap afresh, whatever its parent did.
 *
 * A process uses hmmap (maps a file, writes, syncs, unmaps; then keeps one
 * region mapped) and forks children, one per fault mode. Each child maps
 * the file with hmmap() and with the full API (its own store, a cache
 * smaller than the file, a region), reads what the parent wrote, writes a
 * block of its own and syncs it, gets a default cache of its own made from
 * its own environment, and finds only its own objects in a live segment of
 * its own PID. Afterwards the parent finds every block in the file, and its
 * kept region, its default cache and its segment work as before. A child
 * that touches the parent's kept region dies of SIGSEGV and changes
 * nothing in it. The parent runs in each fault mode, and once more with a
 * thread taking faults and evictions while it forks.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define BLK (128u << 10)
#define NBLK 8
#define FILE_LEN (BLK * NBLK)
#define KEEP_LEN (256u << 10)

static char path[512];
static unsigned char *keep;              /* the parent's region, mapped across the forks */
static struct hm_cache *parent_default;  /* the parent's default cache */
static int child_mode;                   /* HM_FAULT_* the child's environment asks for */
static int child_k;                      /* which child: its blocks are 1 + 2k and 2 + 2k */

/* What block b of the file holds once its writer wrote it. */
static void block_pattern(unsigned char *buf, unsigned b)
{
	tu_fill(buf, BLK, 0xF0F0 + b);
}

/* The file as it should be after blocks [0, nwritten) have been written (the rest: seed 1). */
static unsigned char *expected(unsigned nwritten)
{
	unsigned char *ref = malloc(FILE_LEN);

	if (!ref)
		return NULL;
	tu_fill(ref, FILE_LEN, 1);
	for (unsigned b = 0; b < nwritten; b++)
		block_pattern(ref + (size_t)b * BLK, b);
	return ref;
}

static int mode_of(const char *s)
{
	return !strcmp(s, "sigbus") ? HM_FAULT_SIGBUS : HM_FAULT_THREAD;
}

/* ---- in a child ---- */

static void child_fault_mode(void)
{
	CHECKF(hm_fault_mode() == child_mode, "mode %d, wanted %d: %s", hm_fault_mode(), child_mode,
	       hm_errormsg());
}

/* hmmap(): the parent's block reads back; the child's own block is written and synced. */
static void child_hmmap(void)
{
	unsigned char *ref = expected(1), *want = malloc(BLK);
	unsigned b = 1 + 2 * (unsigned)child_k;
	unsigned char *p;

	CHECK(ref && want);
	p = hmmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "hmmap: %s (errno %d)", hm_errormsg(), errno);
	CHECKF(tu_cmp_mem(p, ref, BLK) < 0, "the parent's block differs at %lld",
	       tu_cmp_mem(p, ref, BLK));
	block_pattern(want, b);
	memcpy(p + (size_t)b * BLK, want, BLK);
	CHECK(hmsync(p, FILE_LEN, MS_SYNC) == 0);
	CHECK(hmunmap(p, FILE_LEN) == 0);
	{
		int fd = open(path, O_RDONLY);
		unsigned char *got = malloc(BLK);
		CHECK(fd >= 0 && got);
		CHECK(tu_read_all(fd, got, BLK, (off_t)b * BLK) == 0);
		close(fd);
		CHECKF(tu_cmp_mem(got, want, BLK) < 0, "block %u on disk differs", b);
		free(got);
	}
	free(ref);
	free(want);
}

/* The full API, with a cache a quarter of the file: faults, evictions, write-backs. */
static void child_full_api(void)
{
	unsigned b = 2 + 2 * (unsigned)child_k;
	unsigned char *want = malloc(BLK), *ref = expected(1);
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	struct hm_stats st;
	unsigned char *p;

	CHECK(want && ref);
	CHECKF(hm_store_open(&s, path, 0) == 0, "%s", hm_errormsg());
	CHECKF(hm_cache_new(&c, FILE_LEN / 4, "lru") == 0, "%s", hm_errormsg());
	CHECKF(hm_region_map(&r, c, s, 0, FILE_LEN, PROT_READ | PROT_WRITE, HM_CACHED, 4096) == 0,
	       "%s", hm_errormsg());
	p = hm_region_addr(r);
	CHECKF(tu_cmp_mem(p, ref, BLK) < 0, "the parent's block differs");
	/* Every other block once, so the cache evicts. */
	for (size_t off = 0; off < FILE_LEN; off += 4096)
		(void)*(volatile unsigned char *)(p + off);
	block_pattern(want, b);
	memcpy(p + (size_t)b * BLK, want, BLK);
	CHECK(hm_sync(p, FILE_LEN, MS_SYNC) == 0);
	CHECK(hm_region_stats(r, &st) == 0);
	CHECKF(st.faults_missing > 0 && st.evictions > 0, "faults %llu evictions %llu",
	       (unsigned long long)st.faults_missing, (unsigned long long)st.evictions);
	CHECKF(tu_cmp_mem(p + (size_t)b * BLK, want, BLK) < 0, "block %u reads back wrong", b);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_store_close(s) == 0);
	free(want);
	free(ref);
}

/* A default cache of the child's own, made from the child's HMMAP_CACHE_SIZE. */
static void child_default_cache(void)
{
	struct hm_cache *c;
	struct hm_stats st;

	CHECKF(hm_cache_default(&c) == 0, "%s", hm_errormsg());
	CHECK(c != parent_default);
	CHECKF(hm_cache_budget(c) == (1u << 20), "budget %zu", hm_cache_budget(c));
	CHECK(hm_cache_stats(c, &st) == 0);
}

/* The child's live segment: its PID, its mode, its objects only. */
static void child_segment(void)
{
	struct hm_snapshot *sn = NULL;
	int regions = 0, caches = 0, found = 0;
	char *q = hmmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, HM_CACHED, "mem:64K", 0);
	char shm[64];

	CHECKF(q != MAP_FAILED, "%s", hm_errormsg());
	memset(q, 7, 64 << 10);
	CHECKF(hm_snapshot_read(getpid(), &sn) == 0, "%s", hm_errormsg());
	for (size_t i = 0; i < sn->nobjs; i++) {
		if (sn->objs[i].kind == HM_OBJ_REGION) {
			regions++;
			found |= sn->objs[i].addr == (uintptr_t)q;
		}
		caches += sn->objs[i].kind == HM_OBJ_CACHE;
	}
	int pid_ok = sn->pid == getpid(), mode_ok = sn->fault_mode == child_mode;
	hm_snapshot_free(sn);
	CHECK(pid_ok && mode_ok);
	/* The parent's kept region and default cache are not the child's. */
	CHECKF(regions == 1 && found && caches == 1, "regions %d (ours %d), caches %d", regions,
	       found, caches);
	snprintf(shm, sizeof shm, "/dev/shm/hmmap.%d", (int)getpid());
	CHECK(access(shm, F_OK) == 0);
	CHECK(hmunmap(q, 64 << 10) == 0);
}

static int child_main(void *arg)
{
	child_k = *(int *)arg;
	child_mode = mode_of(getenv("HMMAP_FAULT_MODE"));
	RUN(child_fault_mode);
	RUN(child_hmmap);
	RUN(child_full_api);
	RUN(child_default_cache);
	RUN(child_segment);
	return test_done();
}

/* ---- in the parent ---- */

/* A child that touches the parent's region: SIGSEGV, and the region is unchanged. */
static int touch_in_child(bool write)
{
	int st;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* The default action, even under ASan, which reports SIGSEGV itself. */
		signal(SIGSEGV, SIG_DFL);
		if (write)
			memset(keep, 0x5a, KEEP_LEN);
		else
			(void)*(volatile unsigned char *)keep;
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

/* The first fork, from a process whose every region is unmapped: a child maps and works. */
static int after_unmap_child(void *arg)
{
	char *q = hmmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, "mem:1M", 0);

	if (q == MAP_FAILED) {
		printf("child hmmap: %s\n", hm_errormsg());
		return 1;
	}
	for (size_t off = 0; off < (1 << 20); off += 4096)
		q[off] = (char)(off >> 12);
	for (size_t off = 0; off < (1 << 20); off += 4096)
		if (q[off] != (char)(off >> 12))
			return 2;
	return hmunmap(q, 1 << 20) ? 3 : 0;
}

static int parent_main(void *arg)
{
	unsigned char *ref = NULL, *want = malloc(KEEP_LEN), *p;
	struct hm_stats st;
	struct hm_snapshot *sn = NULL;
	struct hm_cache *c;
	uint64_t features;
	int rc = 1, sig;
	const char *modes[2] = { "thread", "sigbus" };

	(void)arg;
	if (hm_features(&features)) {
		printf("no fault engine: %s\n", hm_errormsg());
		return 77;
	}
	tu_path(path, sizeof path, "fork.dat");
	ref = expected(0);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (!ref || !want || fd < 0 || tu_write_all(fd, ref, FILE_LEN, 0)) {
		printf("cannot make %s\n", path);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	/* Use hmmap: map, write block 0, sync, unmap. */
	p = hmmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	if (p == MAP_FAILED) {
		printf("hmmap: %s\n", hm_errormsg());
		goto out;
	}
	block_pattern(p, 0);
	if (hmsync(p, FILE_LEN, MS_SYNC) || hmunmap(p, FILE_LEN)) {
		printf("sync/unmap: %s\n", hm_errormsg());
		goto out;
	}
	/* Every region unmapped: a child maps afresh. */
	sig = tu_child(NULL, after_unmap_child, NULL);
	if (!WIFEXITED(sig) || WEXITSTATUS(sig)) {
		printf("child after unmapping everything: %s\n", tu_status_str(sig));
		goto out;
	}
	/* One region stays mapped across the forks below. */
	keep = hmmap(NULL, KEEP_LEN, PROT_READ | PROT_WRITE, HM_CACHED, "mem:256K", 0);
	if (keep == MAP_FAILED || hm_cache_default(&parent_default)) {
		printf("hmmap(mem:256K): %s\n", hm_errormsg());
		goto out;
	}
	tu_fill(want, KEEP_LEN, 77);
	memcpy(keep, want, KEEP_LEN);

	for (int k = 0; k < 2; k++) {
		char mode[64];
		const char *env[] = { mode, "HMMAP_CACHE_SIZE=1M", NULL };
		snprintf(mode, sizeof mode, "HMMAP_FAULT_MODE=%s", modes[k]);
		printf("child %d (%s):\n", k, modes[k]);
		int cst = tu_child(env, child_main, &k);
		if (!WIFEXITED(cst) || WEXITSTATUS(cst)) {
			printf("child %d (%s): %s\n", k, modes[k], tu_status_str(cst));
			goto out;
		}
	}
	if ((sig = touch_in_child(false)) != SIGSEGV || (sig = touch_in_child(true)) != SIGSEGV) {
		printf("a child touching the parent's region: signal %d, not SIGSEGV\n", sig);
		goto out;
	}

	/* The parent: its region, cache and segment as before. */
	if (tu_cmp_mem(keep, want, KEEP_LEN) >= 0) {
		printf("the kept region changed at %lld\n", tu_cmp_mem(keep, want, KEEP_LEN));
		goto out;
	}
	tu_fill(want, KEEP_LEN, 78);
	memcpy(keep, want, KEEP_LEN);
	if (tu_cmp_mem(keep, want, KEEP_LEN) >= 0 || hm_stats(keep, &st) || !st.faults_missing) {
		printf("the kept region after the children: %s\n", hm_errormsg());
		goto out;
	}
	if (hm_cache_default(&c) || c != parent_default) {
		printf("the parent's default cache changed\n");
		goto out;
	}
	if (hm_snapshot_read(getpid(), &sn)) {
		printf("the parent's segment after the children exited: %s\n", hm_errormsg());
		goto out;
	}
	bool listed = false;
	for (size_t i = 0; i < sn->nobjs; i++)
		listed |= sn->objs[i].kind == HM_OBJ_REGION && sn->objs[i].addr == (uintptr_t)keep;
	if (sn->pid != getpid() || !listed) {
		printf("the parent's segment: pid %d, kept region %s\n", (int)sn->pid,
		       listed ? "listed" : "missing");
		goto out;
	}
	/* Every child's blocks are in the file, and the parent maps it again. */
	free(ref);
	ref = expected(1 + 2 * 2);
	if (!ref || tu_cmp_file(path, ref, FILE_LEN) >= 0) {
		printf("the file differs at %lld\n", ref ? tu_cmp_file(path, ref, FILE_LEN) : -2);
		goto out;
	}
	p = hmmap(NULL, FILE_LEN, PROT_READ, HM_CACHED, path, 0);
	if (p == MAP_FAILED || tu_cmp_mem(p, ref, FILE_LEN) >= 0 || hmunmap(p, FILE_LEN)) {
		printf("the parent's map of the file after the children: %s\n", hm_errormsg());
		goto out;
	}
	rc = hmunmap(keep, KEEP_LEN) ? 1 : 0;
out:
	if (sn)
		hm_snapshot_free(sn);
	free(ref);
	free(want);
	return rc;
}

/*
 * TSan stops a child of a multi-threaded process that starts threads
 * (die_after_fork), and every child here starts the fault engine's.
 */
#define SKIP_UNDER_TSAN()                                                                \
	do {                                                                             \
		if (tu_under("tsan"))                                                   \
			SKIP("TSan kills a child of a multi-threaded parent that starts " \
			     "threads");                                                 \
	} while (0)

/*
 * In a child, ASan still lists the parent's other threads with their
 * stacks; once such a stack's memory is unmapped and its address reused
 * (here, by a region the child maps), ASan takes the stale stack shadow
 * for an error and then fails its own check describing it (about one run
 * in twenty under load: "CHECK failed: asan_thread.cpp:371 ...
 * kCurrentStackFrameMagic" in memset of the child's new region). The
 * normal build runs these cases.
 */
#define SKIP_UNDER_ASAN()                                                                \
	do {                                                                             \
		if (tu_under("asan"))                                                   \
			SKIP("ASan misreports a child's memory at a parent thread's old " \
			     "stack address");                                           \
	} while (0)

static void parent_thread_mode(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=thread", NULL };

	SKIP_UNDER_TSAN();
	SKIP_UNDER_ASAN();

	TU_CHILD_RESULT(tu_child(env, parent_main, NULL));
}

static void parent_sigbus_mode(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=sigbus", NULL };

	SKIP_UNDER_TSAN();
	SKIP_UNDER_ASAN();

	TU_CHILD_RESULT(tu_child(env, parent_main, NULL));
}

/* ---- forks while another thread faults and evicts ---- */

#define BUSY_LEN (4u << 20)
static _Atomic bool busy_stop;
static uint64_t *busy;

static void *busy_main(void *arg)
{
	uint64_t s = 99, bad = 0;

	while (!atomic_load(&busy_stop)) {
		uint64_t i = tu_rnd(&s) % (BUSY_LEN / 8);
		if (busy[i] != i * 3 + 1)
			bad++;
	}
	return (void *)(uintptr_t)bad;
}

static int busy_parent(void *arg)
{
	pthread_t t;
	void *bad;
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	int failures = 0;

	(void)arg;
	/* A cache of an eighth of the region: the reader evicts all the time. */
	if (hm_store_open(&s, "mem:4M", 0) || hm_cache_new(&c, BUSY_LEN / 8, "clock") ||
	    hm_region_map(&r, c, s, 0, BUSY_LEN, PROT_READ | PROT_WRITE, HM_CACHED, 4096)) {
		printf("map: %s\n", hm_errormsg());
		return 1;
	}
	busy = hm_region_addr(r);
	for (uint64_t i = 0; i < BUSY_LEN / 8; i++)
		busy[i] = i * 3 + 1;
	if (pthread_create(&t, NULL, busy_main, NULL))
		return 1;
	for (int k = 0; k < 8; k++) {
		char mode[64];
		const char *env[] = { mode, NULL };
		snprintf(mode, sizeof mode, "HMMAP_FAULT_MODE=%s", k % 2 ? "sigbus" : "thread");
		int st = tu_child(env, after_unmap_child, NULL);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			printf("child %d: %s\n", k, tu_status_str(st));
			failures++;
		}
	}
	atomic_store(&busy_stop, true);
	pthread_join(t, &bad);
	if (bad) {
		printf("the reader saw %llu wrong words\n", (unsigned long long)(uintptr_t)bad);
		failures++;
	}
	if (hm_region_unmap(r) || hm_cache_free(c) || hm_store_close(s))
		failures++;
	return failures ? 1 : 0;
}

static void fork_while_faulting(void)
{
	SKIP_UNDER_TSAN();
	/*
	 * GCC 12's ASan does not hold its allocator's locks across fork() as
	 * glibc's malloc does: one run in three here left the child's new
	 * threads waiting forever on an allocator lock held at the fork.
	 */
	if (tu_sanitizer())
		SKIP("the sanitizer's allocator is not fork-safe with other threads running");
	TU_CHILD_RESULT(tu_child(NULL, busy_parent, NULL));
}

int main(void)
{
	if (!tu_tmpdir()) {
		printf("cannot make a scratch directory\n");
		return 1;
	}
	RUN(parent_thread_mode);
	RUN(parent_sigbus_mode);
	RUN(fork_while_faulting);
	tu_cleanup();
	return test_done();
}
