/* SPDX-License-Identifier: MIT */
/*
 * pmem: stores and HM_DIRECT regions: opening (bad paths, sizes, options),
 * properties and persistence, direct loads and stores reaching the file
 * with no fault, durability across kill -9 after hmsync, endurance counting,
 * and hm_protect on direct and cached regions.
 *
 * Every case runs in a child of its own (fresh library state, so that
 * SIGSEGV catchers go in before anything of hmmap's).
 */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "bamutil.h"
#include "core/direct.h"

#define LEN (1u << 20)

static char path[256], uri[300];
static unsigned char *ref;

static void make_data(void)
{
	free(ref);
	ref = tu_make_file(path, LEN, 11);
	snprintf(uri, sizeof uri, "pmem:%s", path);
}

static int run(void (*fn)(void))
{
	t_case_failed = t_case_skipped = 0;
	t_reason[0] = 0;
	fn();
	if (t_case_failed)
		printf("%s\n", t_reason);
	if (t_case_skipped)
		printf("skip: %s\n", t_reason);
	return t_case_failed ? 1 : t_case_skipped ? 77 : 0;
}

static int child_fn(void *arg)
{
	return run((void (*)(void))arg);
}

/* Runs fn in a fresh child and folds its verdict into the parent's case. */
#define IN_CHILD(fn)                                                                     \
	static void fn##_child(void);                                                    \
	static void fn(void)                                                             \
	{                                                                                \
		TU_CHILD_RESULT(tu_child(NULL, child_fn, (void *)fn##_child));             \
	}                                                                                \
	static void fn##_child(void)

IN_CHILD(test_pmem_open_errors)
{
	char u[400], empty[256], dir[256];
	int fd;

	make_data();
	tu_path(empty, sizeof empty, "empty");
	fd = open(empty, O_CREAT | O_TRUNC | O_RDWR, 0644);
	CHECK(fd >= 0);
	close(fd);
	snprintf(dir, sizeof dir, "%s", tu_tmpdir());

	EXPECT_OPEN_FAILS("pmem:", 0, -EINVAL);
	snprintf(u, sizeof u, "pmem:%s/does-not-exist", tu_tmpdir());
	EXPECT_OPEN_FAILS(u, 0, -ENOENT);
	snprintf(u, sizeof u, "pmem:%s", dir);
	EXPECT_OPEN_FAILS(u, 0, -EISDIR);
	EXPECT_OPEN_FAILS(u, HM_STORE_RDONLY, -EINVAL);
	snprintf(u, sizeof u, "pmem:%s", empty);
	EXPECT_OPEN_FAILS(u, 0, -EINVAL);
	EXPECT_OPEN_FAILS("pmem:/dev/null", 0, -EINVAL);
	snprintf(u, sizeof u, "%s,size=0", uri);
	EXPECT_OPEN_FAILS(u, 0, -EINVAL);
	snprintf(u, sizeof u, "%s,size=12Q", uri);
	EXPECT_OPEN_FAILS(u, 0, -EINVAL);
	snprintf(u, sizeof u, "%s,size=100T", uri);
	EXPECT_OPEN_FAILS(u, 0, -EINVAL);
	snprintf(u, sizeof u, "%s,", uri);
	EXPECT_OPEN_FAILS(u, 0, -EINVAL);
	snprintf(u, sizeof u, "%s,colour=blue", uri);
	EXPECT_OPEN_FAILS(u, 0, -EINVAL);
	snprintf(u, sizeof u, "%s,sync=sometimes", uri);
	EXPECT_OPEN_FAILS(u, 0, -EINVAL);
	/* Read-only, size= may only name the size the file already has. */
	snprintf(u, sizeof u, "%s,size=%u", uri, LEN + 4096);
	EXPECT_OPEN_FAILS(u, HM_STORE_RDONLY, -EINVAL);
	snprintf(u, sizeof u, "pmem:%s/does-not-exist,size=1M", tu_tmpdir());
	EXPECT_OPEN_FAILS(u, HM_STORE_RDONLY, -ENOENT);
	{
		struct hm_store *rs;
		snprintf(u, sizeof u, "%s,size=%u", uri, LEN);
		CHECKF(hm_store_open(&rs, u, HM_STORE_RDONLY) == 0, "%s", hm_errormsg());
		CHECK(hm_store_close(rs) == 0);
	}
	/* Nothing failed half-way: the file is as it was. */
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
	CHECK(tu_file_size(path) == LEN);
}

IN_CHILD(test_pmem_props)
{
	struct hm_store *s;
	char u[400], created[256];
	int p;

	make_data();
	CHECK(hm_store_open(&s, uri, 0) == 0);
	CHECK(hm_store_size(s) == LEN);
	CHECK(!strcmp(hm_store_scheme(s), "pmem"));
	p = hm_store_persistence(s);
	/* ext4 without DAX refuses MAP_SYNC: msync it is. */
	CHECKF(p == HM_PERSIST_MSYNC || p == HM_PERSIST_FLUSH || p == HM_PERSIST_NONE,
	       "persistence %d", p);
	if (p == HM_PERSIST_MSYNC)
		CHECK(!strcmp(hm_persistence_name(p), "msync"));
	CHECK(hm_store_close(s) == 0);

	/* size= creates and extends. */
	tu_path(created, sizeof created, "created");
	snprintf(u, sizeof u, "pmem:%s,size=3M", created);
	CHECK(hm_store_open(&s, u, 0) == 0);
	CHECK(hm_store_size(s) == 3u << 20);
	CHECK(tu_file_size(created) == 3 << 20);
	CHECK(hm_store_close(s) == 0);
	unlink(created);

	/* sync=map_sync insists, and this file system is not DAX. */
	snprintf(u, sizeof u, "%s,sync=map_sync", uri);
	int rc = hm_store_open(&s, u, 0);
	if (rc == 0) {
		CHECK(hm_store_persistence(s) == HM_PERSIST_FLUSH);
		hm_store_close(s);
	} else {
		CHECKF(rc == -EOPNOTSUPP, "rc %d (%s)", rc, hm_errormsg());
		CHECK(strstr(hm_errormsg(), "MAP_SYNC"));
		/* An open that fails after size= made or grew its file takes that back. */
		snprintf(u, sizeof u, "pmem:%s,size=3M,sync=map_sync", created);
		CHECK(hm_store_open(&s, u, 0) == -EOPNOTSUPP);
		CHECKF(tu_file_size(created) == -1, "the failed open left a file of %lld bytes",
		       (long long)tu_file_size(created));
		snprintf(u, sizeof u, "%s,size=%u,sync=map_sync", uri, LEN + 8192);
		CHECK(hm_store_open(&s, u, 0) == -EOPNOTSUPP);
		CHECK(tu_file_size(path) == LEN);
	}
	snprintf(u, sizeof u, "%s,sync=msync", uri);
	CHECK(hm_store_open(&s, u, 0) == 0);
	CHECK(hm_store_persistence(s) != HM_PERSIST_FLUSH);
	CHECK(hm_store_close(s) == 0);

	/* tmpfs is byte-addressable but forgets at reboot: not persistent. */
	char shm[256];
	snprintf(shm, sizeof shm, "/dev/shm/hmmap-test-pmem-%d", (int)getpid());
	snprintf(u, sizeof u, "pmem:%s,size=1M", shm);
	if (hm_store_open(&s, u, 0) == 0) {
		CHECK(hm_store_persistence(s) == HM_PERSIST_NONE);
		CHECK(hm_store_close(s) == 0);
		unlink(shm);
	}
	CHECK(hm_store_persistence(NULL) == -EINVAL);
	CHECK(!strcmp(hm_persistence_name(HM_PERSIST_NONE), "none"));
	CHECK(strstr(hm_persistence_name(HM_PERSIST_FLUSH), "fence") ||
	      !strcmp(hm_persistence_name(HM_PERSIST_FLUSH), "clflush"));
}

/* The CPU cache flush of MAP_SYNC stores runs on this CPU and changes no data. */
IN_CHILD(test_cpu_flush)
{
	char *buf = malloc(1 << 16);

	CHECK(buf);
	tu_fill(buf, 1 << 16, 5);
	unsigned char *copy = malloc(1 << 16);
	memcpy(copy, buf, 1 << 16);
	hm__cpu_flush(buf + 3, (1 << 16) - 3);
	hm__cpu_flush(buf, 1);
	CHECK(!memcmp(buf, copy, 1 << 16));
	free(buf);
	free(copy);
}

IN_CHILD(test_direct_map_errors)
{
	struct hm_cache *c;
	struct hm_store *s, *f, *m, *ro;
	struct hm_region *r = (struct hm_region *)1;
	const int rw = PROT_READ | PROT_WRITE;

	make_data();
	CHECK(hm_cache_new(&c, 1 << 20, NULL) == 0);
	CHECK(hm_store_open(&s, uri, 0) == 0);
	CHECK(hm_store_open(&f, path, 0) == 0);
	CHECK(hm_store_open(&m, "mem:1M", 0) == 0);
	CHECK(hm_store_open(&ro, uri, HM_STORE_RDONLY) == 0);
	/* file: is not byte-addressable; mem: is, but cannot be mapped elsewhere. */
	EXPECT_RC(hm_region_map(&r, c, f, 0, LEN, rw, HM_DIRECT, 0), -ENOTSUP);
	CHECK(r == NULL);
	CHECK(strstr(hm_errormsg(), "pmem:"));
	EXPECT_RC(hm_region_map(&r, c, f, 0, LEN, rw, HM_HYBRID, 0), -ENOTSUP);
	EXPECT_RC(hm_region_map(&r, c, m, 0, LEN, rw, HM_DIRECT, 0), -ENOTSUP);
	EXPECT_RC(hm_region_map(&r, c, s, 0, LEN, rw, HM_DIRECT | HM_CACHED, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 0, LEN, rw, HM_DIRECT | HM_HYBRID, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 100, 4096, rw, HM_DIRECT, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 0, LEN + 4096, rw, HM_DIRECT, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 0, 0, rw, HM_DIRECT, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, ro, 0, LEN, rw, HM_DIRECT, 0), -EACCES);
	CHECK(r == NULL);
	/* The mmap-shaped call too. */
	errno = 0;
	CHECK(hmmap(NULL, LEN, rw, HM_DIRECT, path, 0) == MAP_FAILED && errno == ENOTSUP);
	char u2[400];
	snprintf(u2, sizeof u2, "pmem:%s/missing", tu_tmpdir());
	errno = 0;
	CHECK(hmmap(NULL, LEN, rw, HM_DIRECT, u2, 0) == MAP_FAILED && errno == ENOENT);
	CHECK(hm_store_close(s) == 0 && hm_store_close(f) == 0 && hm_store_close(m) == 0 &&
	      hm_store_close(ro) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
}

IN_CHILD(test_direct_rw)
{
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	struct hm_stats st;
	unsigned char *p;
	int fd;

	make_data();
	CHECK(hm_cache_new(&c, 64 << 10, NULL) == 0);
	CHECK(hm_store_open(&s, uri, 0) == 0);
	/* A direct region needs no cache room: 1 MiB through a 64 KiB cache. */
	CHECK(hm_region_map(&r, c, s, 0, LEN, PROT_READ | PROT_WRITE, HM_DIRECT, 0) == 0);
	p = hm_region_addr(r);
	CHECK(hm_region_find(p + LEN - 1) == r);
	CHECK(tu_cmp_mem(p, ref, LEN) == -1);
	/* Stores reach the file itself: another descriptor sees them before any sync. */
	for (size_t i = 0; i < LEN; i += 4096)
		p[i + 7] = ref[i + 7] ^= 0xff;
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
	/* Written and not yet synced: every page is dirty (when writes are tracked). */
	CHECK(hm_region_stats(r, &st) == 0);
	CHECKF(!r->bam->track || st.dirty_pages == LEN / 4096, "dirty %llu of %u",
	       (unsigned long long)st.dirty_pages, LEN / 4096);
	/* And the other way: a pwrite to the file is in the region at once. */
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, "hello", 5, 12345) == 5);
	close(fd);
	memcpy(ref + 12345, "hello", 5);
	CHECK(!memcmp(p + 12345, "hello", 5));
	CHECK(hm_region_stats(r, &st) == 0);
	CHECK(st.faults_missing == 0 && st.misses == 0 && st.resident_bytes == 0);
	CHECK(hm_sync(p, LEN, MS_SYNC) == 0);
	CHECK(hm_region_stats(r, &st) == 0);
	CHECKF(st.dirty_pages == 0, "dirty %llu after sync", (unsigned long long)st.dirty_pages);
	CHECK(hm_advise(p, LEN, HM_ADV_SEQUENTIAL) == 0);
	CHECK(hm_advise(p, LEN, HM_ADV_WILLNEED) == 0);
	CHECK(hm_prefault(p, LEN, HM_PREFAULT_PIN) == 0);
	CHECK(hm_unpin(p, LEN) == 0);
	CHECK(hm_advise(p, LEN, HM_ADV_DONTNEED) == 0);
	CHECK(tu_cmp_mem(p, ref, LEN) == -1);
	/* A system call writes into direct memory like into any mapping. */
	fd = open(path, O_RDONLY);
	CHECK(pread(fd, p + 8192, 100, 0) == 100);
	close(fd);
	memcpy(ref + 8192, ref, 100);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* A read-only direct region may pass the end: zeros there, as in cached mode. */
IN_CHILD(test_direct_past_end)
{
	unsigned char *p;

	make_data();
	p = hmmap(NULL, LEN + 3 * 4096, PROT_READ, HM_DIRECT, uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(tu_cmp_mem(p, ref, LEN) == -1);
	for (size_t i = LEN; i < LEN + 3 * 4096; i++)
		CHECK(p[i] == 0);
	CHECK(hmsync(p, LEN, MS_SYNC) == 0);
	CHECK(hmunmap(p, LEN + 3 * 4096) == 0);
	/* An offset inside the file. */
	p = hmmap(NULL, 8192, PROT_READ, HM_DIRECT, uri, 65536);
	CHECK(p != MAP_FAILED);
	CHECK(!memcmp(p, ref + 65536, 8192));
	CHECK(hmunmap(p, 8192) == 0);
}

/*
 * Endurance: bytes_written of the store counts each page written between
 * two syncs once, at the region's page size.
 */
IN_CHILD(test_direct_endurance)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	struct hm_stats st;
	uint64_t feat = 0;
	char *p;

	make_data();
	if (hm_features(&feat) || !(feat & HM_FEAT_WP_ASYNC) || !(feat & HM_FEAT_PAGEMAP_SCAN))
		SKIP("no asynchronous write protection: direct writes are not counted");
	CHECK(hm_cache_new(&c, 1 << 20, NULL) == 0);
	CHECK(hm_store_open(&s, uri, 0) == 0);
	CHECK(hm_region_map(&r, c, s, 0, LEN, PROT_READ | PROT_WRITE, HM_DIRECT, 0) == 0);
	p = hm_region_addr(r);
	/* Reads are not writes. */
	volatile char sink = 0;
	for (size_t i = 0; i < LEN; i += 4096)
		sink += p[i];
	CHECK(hm_sync(p, LEN, MS_SYNC) == 0);
	CHECK(hm_store_stats(s, &st) == 0);
	CHECKF(st.bytes_written == 0, "%llu", (unsigned long long)st.bytes_written);
	/* 10 pages, one of them written 1000 times. */
	for (int k = 0; k < 10; k++)
		p[k * 3 * 4096 + 5] = (char)k;
	for (int k = 0; k < 1000; k++)
		p[100] = (char)k;
	CHECK(hm_sync(p, LEN, MS_SYNC) == 0);
	CHECK(hm_store_stats(s, &st) == 0);
	CHECKF(st.bytes_written == 10 * 4096, "%llu", (unsigned long long)st.bytes_written);
	/* The region's cache, and the process's totals, count them too. */
	CHECK(hm_cache_stats(c, &st) == 0);
	CHECKF(st.bytes_written == 10 * 4096, "%llu", (unsigned long long)st.bytes_written);
	CHECK(hm_stats(NULL, &st) == 0);
	CHECKF(st.bytes_written == 10 * 4096, "%llu", (unsigned long long)st.bytes_written);
	/* A sync with nothing written adds nothing; a write after it counts again. */
	CHECK(hm_sync(p, LEN, MS_SYNC) == 0);
	CHECK(hm_store_stats(s, &st) == 0);
	CHECK(st.bytes_written == 10 * 4096);
	p[LEN - 1] = 1;
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_stats(s, &st) == 0);
	CHECKF(st.bytes_written == 11 * 4096, "%llu", (unsigned long long)st.bytes_written);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* The VmFlags of the mapping that holds addr, from /proc/self/smaps ("" if none). */
static void vma_flags(const void *addr, char *out, size_t cap)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;

	out[0] = 0;
	while (f && fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		bool range = strchr(line, '-') < strchr(line, ' ');
		if (range && sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, cap, "%s", line + 8);
			break;
		}
	}
	if (f)
		fclose(f);
}

/*
 * With HMMAP_STATS=0 nothing counts direct writes, so a direct region is
 * not registered for write protection: stores take no fault at all.
 */
static void stats_off_child(void)
{
	char flags[512];
	uint64_t *p;

	make_data();
	p = hmmap(NULL, LEN, PROT_READ | PROT_WRITE, HM_DIRECT, uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	if (p == MAP_FAILED)
		return;
	p[7] = 42;
	vma_flags(p, flags, sizeof flags);
	CHECKF(flags[0] && !strstr(flags, " uw"), "VmFlags:%.300s", flags);
	CHECK(hmsync(p, LEN, MS_SYNC) == 0 && hmunmap(p, LEN) == 0);
}

static void test_direct_stats_off(void)
{
	static const char *const env[] = { "HMMAP_STATS=0", NULL };

	TU_CHILD_RESULT(tu_child(env, child_fn, (void *)stats_off_child));
}

/* ---- kill -9 after hmsync ---- */

static uint64_t val(uint64_t i, uint64_t k)
{
	return (i * 0x9E3779B97F4A7C15ull) ^ (k << 56) ^ 0x5555000000000000ull;
}

static int crash_writer(int wfd)
{
	uint64_t *p = hmmap(NULL, LEN, PROT_READ | PROT_WRITE, HM_DIRECT, uri, 0);
	uint64_t s = 7;

	if ((void *)p == MAP_FAILED)
		return 2;
	for (uint64_t i = 0; i < LEN / 16; i++)
		p[i] = val(i, 1);
	if (hmsync(p, LEN, MS_SYNC))
		return 3;
	if (write(wfd, "S", 1) != 1)
		return 4;
	for (uint64_t k = 2;; k++) {
		for (int j = 0; j < 5000; j++) {
			uint64_t i = LEN / 16 + tu_rnd(&s) % (LEN / 16);
			p[i] = val(i, k & 0x7f);
		}
		if (k % 8 == 0)
			hmsync(p, LEN, MS_SYNC);
		if (k == 20 && write(wfd, "W", 1) != 1)
			return 5;
	}
}

IN_CHILD(test_direct_kill9)
{
	int pfd[2], st;
	pid_t pid;
	char ch;

	make_data();
	CHECK(pipe(pfd) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		_exit(crash_writer(pfd[1]));
	}
	close(pfd[1]);
	CHECKF(read(pfd[0], &ch, 1) == 1, "the writer died before its sync");
	CHECK(read(pfd[0], &ch, 1) == 1);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(pfd[0]);
	CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "%s", tu_status_str(st));
	uint64_t *buf = malloc(LEN);
	int fd = open(path, O_RDONLY);
	CHECK(buf && fd >= 0 && tu_read_all(fd, buf, LEN, 0) == 0);
	close(fd);
	for (uint64_t i = 0; i < LEN / 16; i++)
		CHECKF(buf[i] == val(i, 1), "synced word %llu lost", (unsigned long long)i);
	const uint64_t *o = (const uint64_t *)ref;
	for (uint64_t i = LEN / 16; i < LEN / 8; i++)
		CHECKF(buf[i] == o[i] || (buf[i] & ~(0x7full << 56)) ==
						 (val(i, 0) & ~(0x7full << 56)),
		       "word %llu is neither old nor written", (unsigned long long)i);
	free(buf);
}

/* ---- hm_protect ---- */

static void protect_cycle(int mode, const char *u)
{
	char *p;

	bam_catch_install();
	p = hmmap(NULL, LEN, PROT_READ | PROT_WRITE, mode, u, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(bam_write_faults(p + 4096, 1) == 0);
	CHECK(hm_protect(p + 4096, 3 * 4096, PROT_READ) == 0);
	/* Reads still work, and the written byte is kept. */
	CHECK(p[4096] == 1);
	CHECK(!memcmp(p + 8192 + 9, ref + 8192 + 9, 100));
	CHECK(bam_write_faults(p + 4096, 2) == 1);
	CHECK(bam_write_faults(p + 3 * 4096 + 77, 2) == 1);
	CHECK(p[4096] == 1);
	/* Outside the range writes go through. */
	CHECK(bam_write_faults(p, 3) == 0);
	CHECK(bam_write_faults(p + 4 * 4096, 4) == 0);
	/* Writable again, everywhere in the range. */
	CHECK(hm_protect(p + 4096, 3 * 4096, PROT_READ | PROT_WRITE) == 0);
	CHECK(bam_write_faults(p + 4096, 5) == 0);
	CHECK(bam_write_faults(p + 3 * 4096 + 77, 6) == 0);
	CHECK(hmsync(p, LEN, MS_SYNC) == 0);
	CHECK(hmunmap(p, LEN) == 0);
	ref[0] = 3;
	ref[4096] = 5;
	ref[4 * 4096] = 4;
	ref[3 * 4096 + 77] = 6;
	CHECK(tu_cmp_file(path, ref, LEN) == -1);
}

IN_CHILD(test_protect_direct)
{
	make_data();
	protect_cycle(HM_DIRECT, uri);
}

IN_CHILD(test_protect_cached)
{
	make_data();
	protect_cycle(HM_CACHED, path);
}

/* In sigbus mode the cached region's misses inside a protected range are served in-thread. */
static void protect_cached_sigbus_child(void)
{
	make_data();
	protect_cycle(HM_CACHED, path);
}

static void test_protect_cached_sigbus(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=sigbus", NULL };

	TU_CHILD_RESULT(tu_child(env, child_fn, (void *)protect_cached_sigbus_child));
}

IN_CHILD(test_protect_hybrid)
{
	make_data();
	protect_cycle(HM_HYBRID, uri);
}

IN_CHILD(test_protect_errors)
{
	char *p, *ro;

	make_data();
	p = hmmap(NULL, LEN, PROT_READ | PROT_WRITE, HM_DIRECT, uri, 0);
	CHECK(p != MAP_FAILED);
	ro = hmmap(NULL, LEN, PROT_READ, HM_DIRECT, uri, 0);
	CHECK(ro != MAP_FAILED);
	EXPECT_RC(hm_protect(p + 1, 4096, PROT_READ), -EINVAL);
	EXPECT_RC(hm_protect(p, 0, PROT_READ), -EINVAL);
	EXPECT_RC(hm_protect(p, 4096, PROT_WRITE), -EINVAL);
	EXPECT_RC(hm_protect(p, 4096, PROT_NONE), -EINVAL);
	EXPECT_RC(hm_protect(p, 4096, PROT_READ | 0x100), -EINVAL);
	EXPECT_RC(hm_protect(p, LEN + 4096, PROT_READ), -ENOMEM);
	EXPECT_RC(hm_protect(ro, 4096, PROT_READ | PROT_WRITE), -EACCES);
	char local[8192] __attribute__((aligned(4096)));
	EXPECT_RC(hm_protect(local, 4096, PROT_READ), -ENOMEM);
	/* Nothing changed on failure: the first page is still writable. */
	p[0] = 1;
	CHECK(hm_protect(ro, 4096, PROT_READ) == 0);
	CHECK(hmunmap(ro, LEN) == 0);
	CHECK(hmunmap(p, LEN) == 0);
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	RUN(test_pmem_open_errors);
	RUN(test_pmem_props);
	RUN(test_cpu_flush);
	RUN(test_direct_map_errors);
	RUN(test_direct_rw);
	RUN(test_direct_past_end);
	RUN(test_direct_endurance);
	RUN(test_direct_stats_off);
	RUN(test_direct_kill9);
	RUN(test_protect_direct);
	RUN(test_protect_cached);
	RUN(test_protect_cached_sigbus);
	RUN(test_protect_hybrid);
	RUN(test_protect_errors);
	tu_cleanup();
	free(ref);
	return test_done();
}
