/* SPDX-License-Identifier: MIT */
/*
 * HM_HYBRID regions: reads stay direct, the first write moves a page into
 * DRAM, write-back (eviction, sync, unmap) puts it back and maps the medium
 * again; the number of pages held is bounded (by the cache budget and by a
 * quarter of vm.max_map_count for the process); write/evict/remap cycles
 * keep data exact under several threads; system calls and prefault.
 *
 * Every case runs in a child of its own.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "bamutil.h"

#define LEN (1u << 20)
#define PAGES (LEN / 4096)

static char path[256], uri[300];
static unsigned char *ref;

static void make_data(void)
{
	free(ref);
	ref = tu_make_file(path, LEN, 21);
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

struct setup {
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	unsigned char *p;
};

static int setup(struct setup *x, size_t budget, int prot)
{
	make_data();
	if (!ref || hm_cache_new(&x->c, budget, NULL) || hm_store_open(&x->s, uri, 0))
		return -1;
	if (hm_region_map(&x->r, x->c, x->s, 0, LEN, prot, HM_HYBRID, 0))
		return -1;
	x->p = hm_region_addr(x->r);
	return 0;
}

static int teardown(struct setup *x)
{
	int rc = hm_region_unmap(x->r);

	rc |= hm_store_close(x->s);
	rc |= hm_cache_free(x->c);
	return rc;
}

IN_CHILD(test_hybrid_basic)
{
	struct setup x;
	struct hm_stats st;
	int fd;

	CHECKF(setup(&x, 1 << 20, PROT_READ | PROT_WRITE) == 0, "%s", hm_errormsg());
	CHECK(tu_cmp_mem(x.p, ref, LEN) == -1);
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECK(st.resident_bytes == 0 && st.faults_wp == 0);
	/* Reads of pages not held are the medium itself. */
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, "direct", 6, 5 * 4096 + 10) == 6);
	memcpy(ref + 5 * 4096 + 10, "direct", 6);
	CHECK(!memcmp(x.p + 5 * 4096 + 10, "direct", 6));
	/* The first write moves the page into DRAM: the file keeps the old bytes. */
	x.p[3 * 4096 + 1] = (unsigned char)~ref[3 * 4096 + 1];
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECKF(st.resident_bytes == 4096 && st.faults_wp == 1, "resident %llu faults %llu",
	       (unsigned long long)st.resident_bytes, (unsigned long long)st.faults_wp);
	unsigned char b;
	CHECK(pread(fd, &b, 1, 3 * 4096 + 1) == 1 && b == ref[3 * 4096 + 1]);
	/* The rest of the page came along. */
	CHECK(!memcmp(x.p + 3 * 4096 + 2, ref + 3 * 4096 + 2, 4094));
	CHECK(x.p[3 * 4096] == ref[3 * 4096]);
	ref[3 * 4096 + 1] = (unsigned char)~ref[3 * 4096 + 1];
	/* More writes to that page are plain stores. */
	for (int i = 0; i < 4096; i += 64)
		x.p[3 * 4096 + i] = ref[3 * 4096 + i] = (unsigned char)i;
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECK(st.faults_wp == 1);
	/* The page held in DRAM is the one written: dirty until its write-back. */
	CHECKF(st.dirty_pages == 1, "dirty %llu", (unsigned long long)st.dirty_pages);
	/* hmsync writes it back and maps the medium again. */
	CHECK(hm_sync(x.p, LEN, MS_SYNC) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECK(st.resident_bytes == 0 && st.writebacks == 1 && st.bytes_written == 4096);
	CHECK(st.dirty_pages == 0);
	{
		struct hm_stats cs;
		CHECK(hm_cache_stats(hm_region_cache(x.r), &cs) == 0);
		CHECKF(cs.bytes_written == 4096 && cs.faults_wp == 1,
		       "cache: written %llu, wp %llu", (unsigned long long)cs.bytes_written,
		       (unsigned long long)cs.faults_wp);
	}
	CHECK(pwrite(fd, "again", 5, 3 * 4096 + 100) == 5);
	memcpy(ref + 3 * 4096 + 100, "again", 5);
	CHECK(!memcmp(x.p + 3 * 4096 + 100, "again", 5));
	/* Writing again moves it in again. */
	x.p[3 * 4096 + 200] = ref[3 * 4096 + 200] = 0x42;
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECK(st.faults_wp == 2 && st.resident_bytes == 4096);
	close(fd);
	/* Store counters: what reached the medium (endurance). */
	CHECK(teardown(&x) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
}

/* The cache budget bounds the pages held: writes to every page of a 1 MiB region. */
IN_CHILD(test_hybrid_bound)
{
	struct setup x;
	struct hm_stats st, ss;

	CHECKF(setup(&x, 16 * 4096, PROT_READ | PROT_WRITE) == 0, "%s", hm_errormsg());
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < LEN; i += 4096) {
			x.p[i + round] = ref[i + round] = (unsigned char)(i >> 12) + round;
			CHECK(hm_region_stats(x.r, &st) == 0);
			CHECKF(st.resident_bytes <= 16 * 4096, "%llu bytes held",
			       (unsigned long long)st.resident_bytes);
		}
	}
	CHECK(tu_cmp_mem(x.p, ref, LEN) == -1);
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECK(st.faults_wp == 3 * PAGES);
	CHECK(st.evictions >= 3 * PAGES - 16);
	CHECK(hm_store_stats(x.s, &ss) == 0);
	CHECK(ss.bytes_written == st.bytes_written && ss.bytes_written >= (3 * PAGES - 16) * 4096);
	CHECK(teardown(&x) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
}

/*
 * Several threads write and check their own words spread over every page of
 * a region that may hold 8 pages, so pages move in and out all the time,
 * while another thread syncs (write-back of pages being written).
 */
#define THREADS 3
#define OPS 20000

struct worker {
	uint64_t *p;
	uint64_t *mine; /* reference of words t, t+THREADS, ... */
	int t;
	int bad;
};

static _Atomic int stop_sync;

/*
 * Named for tests/tsan.supp's "race:toucher": ThreadSanitizer models the
 * library's mmap(MAP_FIXED) of a frame over a page as a write of the whole
 * page, racing with this thread's reads of its words on that page; the
 * kernel swaps the mapping atomically with identical contents, which is
 * what the test checks.
 */
static void *hybrid_toucher(void *arg)
{
	struct worker *w = arg;
	uint64_t s = 0x1234567 + (uint64_t)w->t;
	const uint64_t words = LEN / 8 / THREADS;

	for (int k = 0; k < OPS; k++) {
		uint64_t j = tu_rnd(&s) % words, i = j * THREADS + (uint64_t)w->t;
		if (w->p[i] != w->mine[j]) {
			w->bad++;
			break;
		}
		w->mine[j] = tu_rnd(&s);
		w->p[i] = w->mine[j];
	}
	return NULL;
}

static void *syncer(void *arg)
{
	uint64_t *p = arg;

	while (!atomic_load(&stop_sync)) {
		hm_sync(p, LEN, MS_SYNC);
		usleep(200);
	}
	return NULL;
}

IN_CHILD(test_hybrid_threads)
{
	struct setup x;
	struct worker w[THREADS];
	pthread_t th[THREADS], sy;
	struct hm_stats st;

	CHECKF(setup(&x, 8 * 4096, PROT_READ | PROT_WRITE) == 0, "%s", hm_errormsg());
	for (int t = 0; t < THREADS; t++) {
		w[t].p = (uint64_t *)x.p;
		w[t].t = t;
		w[t].bad = 0;
		w[t].mine = malloc(LEN / THREADS + 8);
		CHECK(w[t].mine);
		for (uint64_t j = 0; j < LEN / 8 / THREADS; j++)
			w[t].mine[j] = ((uint64_t *)ref)[j * THREADS + (uint64_t)t];
	}
	atomic_store(&stop_sync, 0);
	CHECK(pthread_create(&sy, NULL, syncer, x.p) == 0);
	for (int t = 0; t < THREADS; t++)
		CHECK(pthread_create(&th[t], NULL, hybrid_toucher, &w[t]) == 0);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	atomic_store(&stop_sync, 1);
	pthread_join(sy, NULL);
	for (int t = 0; t < THREADS; t++)
		CHECKF(!w[t].bad, "thread %d read back a wrong word", t);
	/* Every word is the last one its thread wrote, in the region and in the file. */
	for (int t = 0; t < THREADS; t++)
		for (uint64_t j = 0; j < LEN / 8 / THREADS; j++)
			((uint64_t *)ref)[j * THREADS + (uint64_t)t] = w[t].mine[j];
	CHECK(tu_cmp_mem(x.p, ref, (LEN / 8 / THREADS) * THREADS * 8) == -1);
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECKF(st.evictions > 500, "only %llu evictions: the test did not cycle",
	       (unsigned long long)st.evictions);
	CHECK(st.resident_bytes <= 8 * 4096);
	CHECK(teardown(&x) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
	for (int t = 0; t < THREADS; t++)
		free(w[t].mine);
}

/* Reads p: 0 if the read went through, 1 if it took SIGSEGV (access error) at p. */
static int read_faults(const char *p)
{
	bam_fault_addr = NULL;
	if (sigsetjmp(bam_jb, 1))
		return bam_fault_addr == (void *)p && bam_fault_code == SEGV_ACCERR ? 1 : -1;
	(void)*(const volatile char *)p;
	return 0;
}

/* A read-only hybrid region never moves a page: a write is the application's SIGSEGV. */
IN_CHILD(test_hybrid_readonly)
{
	unsigned char *p;

	bam_catch_install();
	make_data();
	p = hmmap(NULL, LEN, PROT_READ, HM_HYBRID, uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(tu_cmp_mem(p, ref, LEN) == -1);
	CHECK(bam_write_faults((char *)p + 4096, 1) == 1);
	CHECK(hm_sync(p, LEN, MS_SYNC) == 0);
	/* A part goes as with munmap: a touch there is SIGSEGV, the rest reads on. */
	CHECK(hmunmap(p + 4096, 4096) == 0);
	CHECK(read_faults((char *)p + 4096 + 7) == 1);
	CHECK(tu_cmp_mem(p, ref, 4096) == -1);
	CHECK(tu_cmp_mem(p + 8192, ref + 8192, LEN - 8192) == -1);
	CHECK(hmunmap(p, LEN) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
}

struct head_writer {
	unsigned char *p;
	size_t pages;
	_Atomic int stop;
	long lost;
};

/* Writes a counter into each page of the head in turn, checking the last one. */
static void *head_writer(void *arg)
{
	struct head_writer *h = arg;

	for (uint32_t round = 1; !atomic_load(&h->stop); round++)
		for (size_t i = 0; i < h->pages; i++) {
			uint32_t *w = (uint32_t *)(h->p + i * 4096 + 128);
			if (*w != round - 1)
				h->lost++;
			*w = round;
		}
	return NULL;
}

/*
 * hmunmap of parts of a writable hybrid region, as munmap: pages held in
 * DRAM (written, pinned) go back to the medium on the way out, a touch of
 * the part is SIGSEGV, the range calls refuse it, and a thread writing the
 * rest meanwhile loses nothing.
 */
IN_CHILD(test_hybrid_unmap_part)
{
	struct setup x;
	struct hm_stats st;
	const size_t half = LEN / 2;

	bam_catch_install();
	CHECKF(setup(&x, 1 << 20, PROT_READ | PROT_WRITE) == 0, "%s", hm_errormsg());
	/* In the tail: written pages, and pinned ones. */
	for (size_t off = half; off < LEN; off += 4 * 4096)
		x.p[off + 3] = ref[off + 3] = (unsigned char)(off >> 12);
	CHECK(hm_prefault(x.p + LEN - 8 * 4096, 8 * 4096, HM_PREFAULT_PIN) == 0);
	x.p[LEN - 4096] = ref[LEN - 4096] = 0xab;
	for (size_t i = 0; i < PAGES / 2; i++)
		memset(x.p + i * 4096 + 128, 0, 4); /* the head's counters start at 0 */
	for (size_t i = 0; i < PAGES / 2; i++)
		memset(ref + i * 4096 + 128, 0, 4);
	struct head_writer hw = { .p = x.p, .pages = 16 };
	pthread_t th;
	CHECK(pthread_create(&th, NULL, head_writer, &hw) == 0);
	/* The tail leaves in pieces while the head is written. */
	int rc = 0;
	for (size_t off = half; off < LEN && !rc; off += 32 * 4096)
		rc = hmunmap(x.p + off, 32 * 4096);
	atomic_store(&hw.stop, 1);
	pthread_join(th, NULL);
	CHECKF(rc == 0, "%s", hm_errormsg());
	CHECKF(hw.lost == 0, "%ld writes lost", hw.lost);
	/* What the tail held in DRAM is on the medium. */
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	unsigned char b;
	for (size_t off = half; off < LEN; off += 4 * 4096)
		CHECK(pread(fd, &b, 1, (off_t)off + 3) == 1 && b == ref[off + 3]);
	CHECK(pread(fd, &b, 1, LEN - 4096) == 1 && b == 0xab);
	close(fd);
	CHECK(read_faults((char *)x.p + half) == 1);
	CHECK(bam_write_faults((char *)x.p + LEN - 4096, 1) == 1);
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECKF(st.pinned_pages == 0, "%llu pages still pinned", (unsigned long long)st.pinned_pages);
	CHECK(hm_sync(x.p, LEN, MS_SYNC) == -ENOMEM);
	CHECK(hm_protect(x.p + half, 4096, PROT_READ | PROT_WRITE) < 0);
	CHECK(hm_prefault(x.p + half, 4096, 0) < 0);
	/* The head works as before: writes move pages in and sync writes them back. */
	x.p[5] = ref[5] = 0x5a;
	CHECK(hm_sync(x.p, half, MS_SYNC) == 0);
	uint32_t last;
	memcpy(&last, x.p + 128, 4);
	for (size_t i = 0; i < 16; i++)
		memcpy(ref + i * 4096 + 128, x.p + i * 4096 + 128, 4);
	CHECK(last > 0);
	CHECK(teardown(&x) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
}

/* System calls cannot take hmmap's SIGSEGV: EFAULT, unless the pages were moved in. */
IN_CHILD(test_hybrid_syscalls)
{
	struct setup x;
	struct hm_stats st;
	int fd;

	CHECKF(setup(&x, 64 * 4096, PROT_READ | PROT_WRITE) == 0, "%s", hm_errormsg());
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	errno = 0;
	CHECK(pread(fd, x.p + 8 * 4096, 4096, 0) == -1 && errno == EFAULT);
	CHECK(hm_prefault(x.p + 8 * 4096, 2 * 4096, HM_PREFAULT_PIN) == 0);
	CHECK(pread(fd, x.p + 8 * 4096, 8192, 0) == 8192);
	memcpy(ref + 8 * 4096, ref, 8192);
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECKF(st.resident_bytes == 8192 && st.pinned_pages == 2, "resident %llu, pinned %llu",
	       (unsigned long long)st.resident_bytes, (unsigned long long)st.pinned_pages);
	/* Pinned pages stay through a sync (written back, still held)... */
	CHECK(hm_sync(x.p, LEN, MS_SYNC) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECK(st.resident_bytes == 8192);
	CHECK(pread(fd, x.p + 9 * 4096, 100, 77) == 100);
	memcpy(ref + 9 * 4096, ref + 77, 100);
	/* ...and are never victims: 64 pages of writes elsewhere. */
	for (size_t i = 16; i < 16 + 100; i++)
		x.p[i * 4096] = ref[i * 4096] = 9;
	CHECK(pread(fd, x.p + 8 * 4096 + 5, 10, 500) == 10);
	memcpy(ref + 8 * 4096 + 5, ref + 500, 10);
	CHECK(hm_unpin(x.p + 8 * 4096, 2 * 4096) == 0);
	CHECK(hm_region_stats(x.r, &st) == 0);
	CHECKF(st.pinned_pages == 0, "pinned %llu", (unsigned long long)st.pinned_pages);
	/* More than the region may hold at once. */
	EXPECT_RC(hm_prefault(x.p, LEN, 0), -ENOMEM);
	close(fd);
	CHECK(teardown(&x) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
}

/*
 * The process-wide bound: all hybrid regions together hold at most a
 * quarter of vm.max_map_count pages. A region whose budget asks for all of
 * it leaves nothing for the next, which fails to map until it is unmapped.
 */
IN_CHILD(test_hybrid_map_count_bound)
{
	char big[256], u[400];
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r1, *r2;
	unsigned long maps = 0;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");

	CHECK(f && fscanf(f, "%lu", &maps) == 1);
	fclose(f);
	uint64_t pool = maps / 4, len = (pool + 16) * 4096;
	if (len > (4ull << 30))
		SKIP("vm.max_map_count %lu is too large for a quick test", maps);
	tu_path(big, sizeof big, "big");
	snprintf(u, sizeof u, "pmem:%s,size=%llu", big, (unsigned long long)len);
	CHECK(hm_store_open(&s, u, 0) == 0);
	CHECK(hm_cache_new(&c, len, NULL) == 0);
	CHECK(hm_region_map(&r1, c, s, 0, len, PROT_READ | PROT_WRITE, HM_HYBRID, 0) == 0);
	EXPECT_RC(hm_region_map(&r2, c, s, 0, 4096, PROT_READ | PROT_WRITE, HM_HYBRID, 0),
		  -ENOMEM);
	CHECK(strstr(hm_errormsg(), "max_map_count"));
	/* Read-only hybrid regions hold nothing and need no share. */
	CHECK(hm_region_map(&r2, c, s, 0, 4096, PROT_READ, HM_HYBRID, 0) == 0);
	CHECK(hm_region_unmap(r2) == 0);
	CHECK(hm_region_unmap(r1) == 0);
	CHECK(hm_region_map(&r2, c, s, 0, 4096, PROT_READ | PROT_WRITE, HM_HYBRID, 0) == 0);
	((char *)hm_region_addr(r2))[0] = 1;
	CHECK(hm_region_unmap(r2) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	unlink(big);
}

/*
 * A child process does not inherit a hybrid region (its frames are shared
 * memory): the child's access is SIGSEGV, and the parent's data is intact.
 * Also a region whose page size passes the file's end.
 */
IN_CHILD(test_hybrid_fork)
{
	struct setup x;
	pid_t pid;
	int st;

	CHECKF(setup(&x, 1 << 20, PROT_READ | PROT_WRITE) == 0, "%s", hm_errormsg());
	x.p[0] = ref[0] = 0x11;
	x.p[5 * 4096] = ref[5 * 4096] = 0x12;
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		((volatile unsigned char *)x.p)[0] = 0x22;
		_exit(0);
	}
	waitpid(pid, &st, 0);
	CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "child: %s", tu_status_str(st));
	CHECK(x.p[0] == 0x11);
	x.p[9 * 4096] = ref[9 * 4096] = 0x13;
	CHECK(teardown(&x) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
}

IN_CHILD(test_hybrid_large_pages)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	char u[400], odd[256];
	const size_t flen = 3 * 65536 + 5000;
	unsigned char *p, *want;

	tu_path(odd, sizeof odd, "odd");
	want = tu_make_file(odd, flen, 5);
	CHECK(want);
	snprintf(u, sizeof u, "pmem:%s", odd);
	CHECK(hm_store_open(&s, u, 0) == 0);
	CHECK(hm_cache_new(&c, 2 * 65536, NULL) == 0);
	CHECK(hm_region_map(&r, c, s, 0, flen, PROT_READ | PROT_WRITE, HM_HYBRID, 65536) == 0);
	p = hm_region_addr(r);
	CHECK(hm_region_page_size(r) == 65536);
	for (int round = 0; round < 3; round++) {
		/* Every 64 KiB page, the last one passing the end, with 2 pages held at most. */
		for (size_t i = 0; i < flen; i += 4096)
			p[i] = want[i] = (unsigned char)(i + round);
		CHECK(tu_cmp_mem(p, want, flen) == -1);
	}
	CHECK(hm_sync(p, flen, MS_SYNC) == 0);
	CHECK(tu_cmp_file(odd, want, flen) == -1);
	CHECK(tu_file_size(odd) == (off_t)flen);
	/* After the write-back the end of the last page reads zeros again. */
	for (size_t i = (flen + 4095) & ~(size_t)4095; i < 4 * 65536; i++)
		CHECKF(p[i] == 0, "byte %zu past the end", i);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(want);
	unlink(odd);
}

/* numa: memory works hybrid too (a memfd medium). */
IN_CHILD(test_hybrid_numa)
{
	unsigned char *p = hmmap(NULL, LEN, PROT_READ | PROT_WRITE, HM_HYBRID, "numa:0,size=1M",
				 0);

	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	for (size_t i = 0; i < LEN; i++)
		CHECK(p[i] == 0);
	for (size_t i = 0; i < LEN; i += 4096)
		p[i + 1] = (unsigned char)(i >> 12);
	CHECK(hmsync(p, LEN, MS_SYNC) == 0);
	for (size_t i = 0; i < LEN; i += 4096)
		CHECK(p[i + 1] == (unsigned char)(i >> 12));
	CHECK(hmunmap(p, LEN) == 0);
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	RUN(test_hybrid_basic);
	RUN(test_hybrid_bound);
	RUN(test_hybrid_threads);
	RUN(test_hybrid_readonly);
	RUN(test_hybrid_unmap_part);
	RUN(test_hybrid_syscalls);
	RUN(test_hybrid_map_count_bound);
	RUN(test_hybrid_fork);
	RUN(test_hybrid_large_pages);
	RUN(test_hybrid_numa);
	tu_cleanup();
	free(ref);
	return test_done();
}
