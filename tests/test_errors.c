/* SPDX-License-Identifier: MIT */
/*
 * Every bad-argument path: the documented error, errno for the mmap-shaped
 * calls, a non-empty hm_errormsg(), and nothing changed (no descriptor
 * leaked, an existing mapping still usable, nothing written).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hmmap.h"
#include "hmmap/discover.h"
#include "harness.h"
#include "testutil.h"

static char path[512];

#define EXPECT_MAP_FAILED(call, err)                                                     \
	do {                                                                             \
		errno = 0;                                                               \
		void *p_ = (call);                                                       \
		CHECKF(p_ == MAP_FAILED, "%s succeeded", #call);                         \
		CHECKF(errno == (err), "%s: errno %d, want %d", #call, errno, (err));    \
		CHECKF(*hm_errormsg(), "%s: no message", #call);                         \
	} while (0)

#define EXPECT_RC(call, err)                                                             \
	do {                                                                             \
		int rc_ = (call);                                                        \
		CHECKF(rc_ == (err), "%s = %d, want %d (%s)", #call, rc_, (err),         \
		       hm_errormsg());                                                   \
		CHECKF(*hm_errormsg(), "%s: no message", #call);                         \
	} while (0)

#define EXPECT_M1(call, err)                                                             \
	do {                                                                             \
		errno = 0;                                                               \
		int rc_ = (call);                                                        \
		CHECKF(rc_ == -1 && errno == (err), "%s = %d errno %d, want -1/%d (%s)", \
		       #call, rc_, errno, (err), hm_errormsg());                         \
		CHECKF(*hm_errormsg(), "%s: no message", #call);                         \
	} while (0)

static void test_hmmap_args(void)
{
	const int rw = PROT_READ | PROT_WRITE;
	int fds = tu_count_fds();
	char missing[600];

	snprintf(missing, sizeof missing, "%s/does-not-exist", tu_tmpdir());
	EXPECT_MAP_FAILED(hmmap(NULL, 0, rw, HM_CACHED, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap((void *)0x10001, 4096, rw, HM_CACHED, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, path, 100), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, path, 2048), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, path, -4096), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, 0, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, 0x100, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED | 0x100, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_DIRECT, path, 0), ENOTSUP);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_HYBRID, path, 0), ENOTSUP);
	/* Two modes are wrong whatever the store: EINVAL before ENOTSUP. */
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED | HM_DIRECT, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED | HM_HYBRID, "mem:1M", 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_DIRECT | HM_HYBRID, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, 0, HM_CACHED, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, PROT_WRITE, HM_CACHED, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, PROT_READ | 0x100, HM_CACHED, path, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, NULL, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, "", 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, "bogus:x", 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, missing, 0), ENOENT);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, "mem:0", 0), EINVAL);
	/* Writable and past the end of a store that cannot grow. */
	EXPECT_MAP_FAILED(hmmap(NULL, 2 << 20, rw, HM_CACHED, "mem:1M", 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED, "mem:1M", 1 << 20), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, SIZE_MAX - 4095, rw, HM_CACHED, path, 0), EOVERFLOW);
	/* Nothing was left open by the failures (stores, memfds). */
	CHECKF(tu_count_fds() == fds, "fds %d, were %d", tu_count_fds(), fds);
}

/* The size of the file at p, or -1 when there is none. */
static long long file_size(const char *p)
{
	struct stat st;

	return stat(p, &st) ? -1 : (long long)st.st_size;
}

/*
 * pmem: with size= creates or extends its file when the store opens. An
 * hmmap() that then fails on its arguments leaves the file as it was.
 */
static void test_hmmap_pmem_changes_nothing(void)
{
	const int rw = PROT_READ | PROT_WRITE;
	char made[600], grown[600], uri[700];
	unsigned char *ref;
	void *p;

	snprintf(made, sizeof made, "%s/errors-pmem-new", tu_tmpdir());
	snprintf(grown, sizeof grown, "%s/errors-pmem-small", tu_tmpdir());
	unlink(made);
	ref = tu_make_file(grown, 4096, 3);
	CHECK(ref);
	free(ref);
	snprintf(uri, sizeof uri, "pmem:%s,size=1M", made);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_CACHED | HM_DIRECT, uri, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_DIRECT, uri, 100), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 8 << 20, rw, HM_DIRECT, uri, 0), EINVAL);
	EXPECT_MAP_FAILED(hmmap(NULL, 4096, rw, HM_DIRECT, uri, 2 << 20), EINVAL);
	CHECKF(file_size(made) == -1, "a failed hmmap() made the file (%lld bytes)",
	       file_size(made));
	snprintf(uri, sizeof uri, "pmem:%s,size=1M", grown);
	EXPECT_MAP_FAILED(hmmap(NULL, 8 << 20, rw, HM_DIRECT, uri, 0), EINVAL);
	CHECKF(file_size(grown) == 4096, "a failed hmmap() grew the file to %lld bytes",
	       file_size(grown));
	/* The same URIs in a good call make and grow the files. */
	p = hmmap(NULL, 1 << 20, rw, HM_DIRECT, uri, 0);
	CHECKF(p != MAP_FAILED, "pmem: %s", hm_errormsg());
	CHECK(hmunmap(p, 1 << 20) == 0);
	CHECK(file_size(grown) == 1 << 20);
	snprintf(uri, sizeof uri, "pmem:%s,size=1M", made);
	p = hmmap(NULL, 1 << 20, rw, HM_DIRECT, uri, 0);
	CHECKF(p != MAP_FAILED, "pmem: %s", hm_errormsg());
	CHECK(hmunmap(p, 1 << 20) == 0);
	CHECK(file_size(made) == 1 << 20);
	unlink(made);
	unlink(grown);
}

/* Threads and mappings of this process now (malloc's heap growing is not counted). */
static void process_state(int *threads, int *maps)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	*threads = *maps = 0;
	while (f && fgets(line, sizeof line, f))
		*maps += !strstr(line, "[heap]");
	while (d && (e = readdir(d)))
		*threads += e->d_name[0] != '.';
	if (f)
		fclose(f);
	if (d)
		closedir(d);
}

/*
 * In a fresh process, an hmmap() that fails on its arguments or its store
 * starts nothing: no default cache, no thread, no mapping.
 */
static int fresh_failures_child(void *arg)
{
	const int rw = PROT_READ | PROT_WRITE;
	const char *missing = arg;
	int t0, m0, t1, m1;
	void *p;

	process_state(&t0, &m0);
	p = hmmap(NULL, 4096, rw, HM_CACHED, missing, 0);
	p = p == MAP_FAILED ? hmmap(NULL, 4096, rw, HM_CACHED, "bogus:x", 0) : p;
	p = p == MAP_FAILED ? hmmap(NULL, 4096, rw, HM_CACHED, path, 100) : p;
	p = p == MAP_FAILED ? hmmap(NULL, 4096, 0, HM_CACHED, path, 0) : p;
	p = p == MAP_FAILED ? hmmap(NULL, 4096, PROT_WRITE, HM_CACHED, path, 0) : p;
	if (p != MAP_FAILED) {
		printf("a bad hmmap() succeeded\n");
		return 1;
	}
	process_state(&t1, &m1);
	/* A sanitizer's allocator maps memory of its own on malloc: count threads only. */
	if (getenv("HMMAP_TEST_SANITIZER"))
		m1 = m0;
	if (t1 != t0 || m1 != m0) {
		printf("failed calls changed the process: threads %d -> %d, mappings %d -> %d\n",
		       t0, t1, m0, m1);
		return 1;
	}
	/* The measure sees what a good call starts. */
	p = hmmap(NULL, 4096, rw, HM_CACHED, path, 0);
	process_state(&t1, &m1);
	if (p == MAP_FAILED || m1 <= m0) {
		printf("a good hmmap(): %s, mappings %d -> %d\n", hm_errormsg(), m0, m1);
		return 1;
	}
	return 0;
}

static void test_fresh_failures_start_nothing(void)
{
	char missing[600];

	snprintf(missing, sizeof missing, "%s/does-not-exist", tu_tmpdir());
	int st = tu_child(NULL, fresh_failures_child, missing);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
}

static void test_cache_args(void)
{
	struct hm_cache *c = (struct hm_cache *)1;

	EXPECT_RC(hm_cache_new(NULL, 1 << 20, NULL), -EINVAL);
	EXPECT_RC(hm_cache_new(&c, 0, NULL), -EINVAL);
	CHECK(c == NULL);
	EXPECT_RC(hm_cache_new(&c, 4095, NULL), -EINVAL);
	EXPECT_RC(hm_cache_new(&c, 1 << 20, "nosuch"), -ENOENT);
	EXPECT_RC(hm_cache_new(&c, 1 << 20, "opt"), -EINVAL); /* replay only */
	EXPECT_RC(hm_cache_new(&c, 1 << 20, "clock:bogus=1"), -EINVAL);
	/* Names as the papers write them work too. */
	CHECK(hm_cache_new(&c, 1 << 20, "FIFO") == 0 && hm_cache_free(c) == 0);
	CHECK(hm_cache_new(&c, 1 << 20, "Clock") == 0 && hm_cache_free(c) == 0);
	EXPECT_RC(hm_cache_free(NULL), -EINVAL);
	EXPECT_RC(hm_cache_resize(NULL, 4096), -EINVAL);
	CHECK(hm_cache_new(&c, 1 << 20, NULL) == 0);
	EXPECT_RC(hm_cache_resize(c, 0), -EINVAL);
	EXPECT_RC(hm_cache_resize(c, 4095), -EINVAL);
	EXPECT_RC(hm_cache_resize(c, 2 << 20), -EINVAL);
	CHECK(hm_cache_budget(c) == 1 << 20);
	EXPECT_RC(hm_cache_stats(c, NULL), -EINVAL);
	EXPECT_RC(hm_cache_stats(NULL, NULL), -EINVAL);
	EXPECT_RC(hm_cache_default(NULL), -EINVAL);
	CHECK(hm_cache_free(c) == 0);
}

/* Past the limit of 64 caches: -EMFILE, and a refused cache leaves no thread behind. */
static void test_cache_limit(void)
{
	struct hm_cache *c[64], *x = NULL;
	int n = 0, t0, m0, t1, m1, rc = 0;

	while (n < 64 && !(rc = hm_cache_new(&c[n], 1 << 20, NULL)))
		n++;
	if (n == 64)
		rc = hm_cache_new(&x, 1 << 20, NULL);
	process_state(&t0, &m0);
	for (int i = 0; i < 20 && rc == -EMFILE; i++)
		rc = hm_cache_new(&x, 1 << 20, NULL);
	process_state(&t1, &m1);
	while (n > 0)
		CHECK(hm_cache_free(c[--n]) == 0);
	CHECKF(rc == -EMFILE && !x, "past the limit: %d (%s)", rc, hm_errormsg());
	CHECKF(strstr(hm_errormsg(), "at most 64"), "message: %s", hm_errormsg());
	CHECKF(t1 == t0, "20 refused caches left %d thread(s)", t1 - t0);
}

static void test_region_args(void)
{
	struct hm_cache *c, *small;
	struct hm_store *s;
	struct hm_region *r = (struct hm_region *)1;
	const int rw = PROT_READ | PROT_WRITE;
	int fds;

	CHECK(hm_cache_new(&c, 1 << 20, NULL) == 0);
	CHECK(hm_cache_new(&small, 32 << 10, NULL) == 0);
	CHECK(hm_store_open(&s, path, 0) == 0);
	fds = tu_count_fds();
	EXPECT_RC(hm_region_map(NULL, c, s, 0, 4096, rw, HM_CACHED, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, NULL, s, 0, 4096, rw, HM_CACHED, 0), -EINVAL);
	CHECK(r == NULL);
	EXPECT_RC(hm_region_map(&r, c, NULL, 0, 4096, rw, HM_CACHED, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 0, 0, rw, HM_CACHED, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 0, 4096, rw, 0, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 0, 4096, rw, 0x80, 0), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 0, 4096, rw, HM_DIRECT, 0), -ENOTSUP);
	EXPECT_RC(hm_region_map(&r, c, s, 0, 4096, 0, HM_CACHED, 0), -EINVAL);
	/* Page sizes: powers of two from 4K to 2M only. */
	static const size_t bad_ps[] = { 1, 512, 2048, 3000, 4097, 12288, 65535, 4u << 20,
					 1u << 30 };
	for (size_t i = 0; i < sizeof bad_ps / sizeof bad_ps[0]; i++)
		EXPECT_RC(hm_region_map(&r, c, s, 0, 1 << 20, rw, HM_CACHED, bad_ps[i]), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 4096, 1 << 20, rw, HM_CACHED, 65536), -EINVAL);
	EXPECT_RC(hm_region_map(&r, c, s, 100, 4096, rw, HM_CACHED, 4096), -EINVAL);
	/* A budget smaller than one page. */
	EXPECT_RC(hm_region_map(&r, small, s, 0, 1 << 20, rw, HM_CACHED, 65536), -EINVAL);
	EXPECT_RC(hm_region_map(&r, small, s, 0, 1 << 20, rw, HM_CACHED, 2 << 20), -EINVAL);
	CHECK(tu_count_fds() == fds);
	/* Neither the cache nor the store thinks it is in use. */
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(small) == 0);
	CHECK(hm_cache_free(c) == 0);
	EXPECT_RC(hm_region_unmap(NULL), -EINVAL);
	struct hm_stats st;
	EXPECT_RC(hm_region_stats(NULL, &st), -EINVAL);
	CHECK(hm_region_find(NULL) == NULL);
	CHECK(hm_region_addr(NULL) == NULL && hm_region_length(NULL) == 0);
}

static void test_unmap_args(void)
{
	unsigned char *p = hmmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	unsigned char stack[8192];

	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	p[0] = 0x42;
	/* Partial unmaps are allowed (tests/test_unmap.c); these are not. */
	EXPECT_M1(hmunmap(p + 1, 64 << 10), EINVAL);
	EXPECT_M1(hmunmap(p, 0), EINVAL);
	EXPECT_M1(hmunmap(p, SIZE_MAX - 4096), EINVAL);
	EXPECT_M1(hmunmap(NULL, 4096), EINVAL);
	EXPECT_M1(hmunmap(stack, 4096), EINVAL);
	/* The mapping survived every refusal, with its data. */
	CHECK(hm_region_find(p) != NULL);
	CHECK(p[0] == 0x42);
	p[4096] = 0x43;
	CHECK(hmsync(p, 64 << 10, MS_SYNC) == 0);
	CHECK(hmunmap(p, 64 << 10) == 0);
	CHECK(hm_region_find(p) == NULL);
	EXPECT_M1(hmunmap(p, 64 << 10), EINVAL); /* twice */
}

static void test_sync_args(void)
{
	unsigned char *p = hmmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	unsigned char before[8192], after[8192];
	void *anon = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open(path, O_RDONLY);

	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(anon != MAP_FAILED && fd >= 0);
	CHECK(tu_read_all(fd, before, sizeof before, 0) == 0);
	p[0] ^= 0xff;
	EXPECT_M1(hmsync(anon, 8192, MS_SYNC), ENOMEM);
	EXPECT_M1(hmsync(p + 1, 4096, MS_SYNC), EINVAL);
	EXPECT_M1(hmsync(p, 4096, 0x100), EINVAL);
	EXPECT_M1(hmsync(p, 4096, MS_SYNC | MS_ASYNC), EINVAL);
	/* Partly outside any region: refused before anything is written. */
	EXPECT_M1(hmsync(p, (64 << 10) + 4096, MS_SYNC), ENOMEM);
	EXPECT_M1(hmsync(p - 4096, 8192, MS_SYNC), ENOMEM);
	CHECK(tu_read_all(fd, after, sizeof after, 0) == 0);
	CHECK(!memcmp(before, after, sizeof before));
	/* The negative hm_* forms. */
	EXPECT_RC(hm_sync(anon, 8192, MS_SYNC), -ENOMEM);
	EXPECT_RC(hm_advise(anon, 8192, HM_ADV_DONTNEED), -ENOMEM);
	EXPECT_RC(hm_advise(p, 4096, -1), -EINVAL);
	EXPECT_RC(hm_advise(p, 4096, 99), -EINVAL);
	EXPECT_RC(hm_advise(p, 4096, MADV_FREE), -EINVAL); /* madvise's, not one of ours */
	EXPECT_RC(hm_advise(p + 8, 4096, HM_ADV_WILLNEED), -EINVAL);
	EXPECT_RC(hm_prefault(p, 4096, 0x80), -EINVAL);
	EXPECT_RC(hm_prefault(p, 0, 0), -EINVAL);
	EXPECT_RC(hm_prefault(anon, 4096, 0), -ENOMEM);
	EXPECT_RC(hm_unpin(anon, 4096), -ENOMEM);
	CHECK(tu_read_all(fd, after, sizeof after, 0) == 0);
	CHECK(!memcmp(before, after, sizeof before));
	/* A sync of length 0 is a no-op, as for msync. */
	CHECK(hmsync(p, 0, MS_SYNC) == 0);
	CHECK(hmsync(p, 64 << 10, MS_SYNC) == 0);
	CHECK(tu_read_all(fd, after, sizeof after, 0) == 0);
	CHECK(after[0] == (unsigned char)(before[0] ^ 0xff));
	CHECK(hmunmap(p, 64 << 10) == 0);
	/* After unmap the range is not mapped. */
	EXPECT_M1(hmsync(p, 4096, MS_SYNC), ENOMEM);
	munmap(anon, 8192);
	close(fd);
}

static int null_features_child(void *arg)
{
	int rc = hm_features(NULL);

	if (rc != -EINVAL) {
		printf("hm_features(NULL) = %d, want -EINVAL\n", rc);
		return 1;
	}
	return 0;
}

static void test_null_features(void)
{
	uint64_t f = 0;

	CHECK(hm_features(&f) == 0);
	CHECK(f & HM_FEAT_MINOR_SHMEM);
	CHECK(hm_fault_mode() == HM_FAULT_THREAD || hm_fault_mode() == HM_FAULT_SIGBUS);
	/* In a child: a NULL dereference must not take the other cases down. */
	int st = tu_child(NULL, null_features_child, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hm_features(NULL): child %s",
	       tu_status_str(st));
}

/* The hm_* calls return -errno and leave errno alone (hmmap.h). */
static void test_errno_untouched(void)
{
	struct hm_store *s;
	struct hm_cache *c;

	errno = 12345;
	CHECK(hm_store_open(&s, "/nonexistent-hmmap/x", 0) == -ENOENT);
	CHECKF(errno == 12345, "hm_store_open set errno to %d", errno);
	CHECK(hm_cache_new(&c, 0, NULL) == -EINVAL);
	CHECKF(errno == 12345, "hm_cache_new set errno to %d", errno);
}

/*
 * A FIFO wherever a path is taken is an error, never a call that waits for
 * the other end forever: a store's file in every form, a key or password
 * file, a trace, the stores file and a store it names. The checks run in a
 * child with a watchdog (alarm), which only a hang reaches.
 */
static char fifo[512];

static void fifo_checks(void)
{
	static const char *const schemes[] = { "", "file:", "pmem:" };
	char uri[700], stores[600];
	struct hm_store *s = NULL, *m = NULL;
	struct hm_cache *c = NULL;
	struct hm_region *r = NULL;
	struct hm_resource *res = NULL;
	size_t n = 0;
	FILE *f;

	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
		snprintf(uri, sizeof uri, "%s%s", schemes[i], fifo);
		EXPECT_MAP_FAILED(hmmap(NULL, 4096, PROT_READ, HM_CACHED, uri, 0), EINVAL);
		EXPECT_MAP_FAILED(hmmap(NULL, 4096, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0),
				  EINVAL);
		EXPECT_RC(hm_store_open(&s, uri, HM_STORE_RDONLY), -EINVAL);
		CHECKF(strstr(hm_errormsg(), "neither a regular file"), "%.200s: %.200s", uri,
		       hm_errormsg());
	}
	snprintf(uri, sizeof uri, "redis://127.0.0.1:1/x?key_file=%s", fifo);
	EXPECT_RC(hm_store_open(&s, uri, 0), -EINVAL);
	CHECKF(strstr(hm_errormsg(), "not a regular file"), "%s", hm_errormsg());
	snprintf(uri, sizeof uri, "redis://127.0.0.1:1/x?password_file=%s", fifo);
	EXPECT_RC(hm_store_open(&s, uri, 0), -EINVAL);
	CHECKF(strstr(hm_errormsg(), "not a regular file"), "%s", hm_errormsg());
	/* A trace into a FIFO nobody reads. */
	CHECK(hm_store_open(&m, "mem:1M", 0) == 0 && hm_cache_new(&c, 1 << 20, NULL) == 0);
	CHECK(hm_region_map(&r, c, m, 0, 1 << 20, PROT_READ, HM_CACHED, 0) == 0);
	EXPECT_RC(hm_region_trace(r, fifo), -ENXIO);
	CHECK(hm_region_unmap(r) == 0 && hm_cache_free(c) == 0 && hm_store_close(m) == 0);
	/* The stores file, and a store it names. */
	setenv("HMMAP_STORES", fifo, 1);
	EXPECT_RC(hm_resources(&res, &n), -EINVAL);
	CHECKF(strstr(hm_errormsg(), "not a regular file"), "%s", hm_errormsg());
	tu_path(stores, sizeof stores, "stores");
	f = fopen(stores, "w");
	CHECK(f);
	fprintf(f, "a %s\nb file:%s\nc pmem:%s\n", fifo, fifo, fifo);
	CHECK(fclose(f) == 0);
	setenv("HMMAP_STORES", stores, 1);
	CHECKF(hm_resources(&res, &n) == 0 && n >= 3, "%s", hm_errormsg());
	hm_resources_free(res, n);
	unsetenv("HMMAP_STORES");
	unlink(stores);
}

static int fifo_child(void *arg)
{
	(void)arg;
	alarm(60);
	fifo_checks();
	if (t_case_failed)
		printf("%s\n", t_reason);
	return t_case_failed;
}

/*
 * Out of descriptors at the first map, which starts the fault engine: a
 * clean -EMFILE that leaves no descriptor or thread behind, and a later map
 * with descriptors to spare works (the failure is not remembered).
 */
static int engine_emfile_child(void *arg)
{
	const int rw = PROT_READ | PROT_WRITE;
	struct hm_cache *cache;
	struct hm_store *store;
	struct hm_region *region;
	struct rlimit old, rl;
	int room = (int)(intptr_t)arg, fds[3], t0, m0, t1, m1, f0, f1, rc;

	if (hm_cache_new(&cache, 1 << 20, NULL) || hm_store_open(&store, "mem:1M", 0)) {
		printf("set-up: %s\n", hm_errormsg());
		return 1;
	}
	/* Room for `room` more descriptors: too few for the engine. */
	for (int i = 0; i < room; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (getrlimit(RLIMIT_NOFILE, &old) || fds[room - 1] < 0)
		return 1;
	for (int i = 0; i < room; i++)
		close(fds[i]);
	process_state(&t0, &m0);
	f0 = tu_count_fds();
	rl = old;
	rl.rlim_cur = (rlim_t)fds[room - 1] + 1;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		return 1;
	rc = hm_region_map(&region, cache, store, 0, 1 << 16, rw, HM_CACHED, 0);
	setrlimit(RLIMIT_NOFILE, &old);
	process_state(&t1, &m1);
	f1 = tu_count_fds();
	if (rc != -EMFILE || !*hm_errormsg()) {
		printf("map with %d descriptor(s) left = %d (%s), want -EMFILE\n", room, rc,
		       hm_errormsg());
		return 1;
	}
	if (f1 != f0 || t1 != t0) {
		printf("the failed map left descriptors %d -> %d, threads %d -> %d\n", f0, f1, t0,
		       t1);
		return 1;
	}
	rc = hm_region_map(&region, cache, store, 0, 1 << 16, rw, HM_CACHED, 0);
	if (rc) {
		printf("map with descriptors to spare = %d (%s)\n", rc, hm_errormsg());
		return 1;
	}
	memset(hm_region_addr(region), 0x5a, 1 << 16);
	if (hm_region_unmap(region) || hm_store_read(store, fds, sizeof fds, 4096) ||
	    fds[0] != 0x5a5a5a5a) {
		printf("data: %s\n", hm_errormsg());
		return 1;
	}
	hm_store_close(store);
	hm_cache_free(cache);
	return 0;
}

static void test_engine_emfile_not_sticky(void)
{
	/* Three: the handler threads' epoll sets fail; one: the userfaultfd. */
	static const char *const thread[] = { "HMMAP_FAULT_MODE=thread", NULL };
	static const char *const sigbus[] = { "HMMAP_FAULT_MODE=sigbus", NULL };
	int st = tu_child(thread, engine_emfile_child, (void *)(intptr_t)3);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "thread mode: %s", tu_status_str(st));
	st = tu_child(sigbus, engine_emfile_child, (void *)(intptr_t)1);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sigbus mode: %s", tu_status_str(st));
}

/*
 * With no descriptor to spare the userfaultfd itself cannot be opened: the
 * message says so and blames neither seccomp nor the kernel's settings.
 */
static int uffd_emfile_child(void *arg)
{
	struct hm_cache *cache;
	struct hm_store *store;
	struct hm_region *region;
	struct rlimit old, rl;
	int fd = dup(0), rc;

	(void)arg;
	if (hm_cache_new(&cache, 1 << 20, NULL) || hm_store_open(&store, "mem:1M", 0) || fd < 0 ||
	    getrlimit(RLIMIT_NOFILE, &old))
		return 1;
	close(fd);
	rl = old;
	rl.rlim_cur = (rlim_t)fd; /* the lowest free descriptor: no new one */
	if (setrlimit(RLIMIT_NOFILE, &rl))
		return 1;
	rc = hm_region_map(&region, cache, store, 0, 1 << 16, PROT_READ | PROT_WRITE, HM_CACHED, 0);
	setrlimit(RLIMIT_NOFILE, &old);
	if (rc != -EMFILE || !strstr(hm_errormsg(), "cannot open a userfaultfd") ||
	    strstr(hm_errormsg(), "seccomp")) {
		printf("map with no descriptor left = %d (%s)\n", rc, hm_errormsg());
		return 1;
	}
	return 0;
}

static void test_uffd_emfile_message(void)
{
	int st = tu_child(NULL, uffd_emfile_child, NULL);

	TU_CHILD_RESULT(st);
}

/* This process's address space now, in bytes (VmSize). */
static rlim_t vm_size(void)
{
	char line[256];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (rlim_t)kb << 10;
}

/*
 * Short of address space (RLIMIT_AS) once mapped: no room for a thread's
 * 2 MiB transfer buffer. Faults and write-backs of 4 KiB pages still work,
 * through the small buffer, rather than end in SIGBUS.
 */
static int low_as_child(void *arg)
{
	const size_t len = 8u << 20;
	struct hm_cache *cache;
	struct hm_store *store;
	struct hm_region *region;
	struct rlimit rl;
	unsigned char *p;
	int rc;

	if (hm_cache_new(&cache, 1 << 20, "fifo") || hm_store_open(&store, "mem:8M", 0) ||
	    hm_region_map(&region, cache, store, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 0)) {
		printf("set-up: %s\n", hm_errormsg());
		return 1;
	}
	p = hm_region_addr(region);
	p[0] = 1; /* the engine and its threads are up */
	if (getrlimit(RLIMIT_AS, &rl))
		return 1;
	rl.rlim_cur = vm_size() + (2u << 20);
	if (setrlimit(RLIMIT_AS, &rl))
		return 1;
	for (size_t i = 0; i < len; i += 4096)
		memset(p + i, (int)(i >> 12) | 1, 4096);
	for (size_t i = 0; i < len; i += 4096)
		if (p[i] != (((i >> 12) & 0xff) | 1) || p[i + 4095] != (((i >> 12) & 0xff) | 1)) {
			printf("page %zu reads wrong\n", i >> 12);
			return 1;
		}
	rc = hm_sync(p, len, HM_SYNC_SYNC);
	if (rc) {
		printf("hm_sync: %d (%s)\n", rc, hm_errormsg());
		return 1;
	}
	return 0;
}

static void test_low_address_space(void)
{
	if (tu_sanitizer())
		SKIP("a sanitizer's shadow memory does not fit under RLIMIT_AS");
	int st = tu_child(NULL, low_as_child, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
}

static void test_fifo_paths(void)
{
	int st;

	tu_path(fifo, sizeof fifo, "fifo");
	CHECK(mkfifo(fifo, 0600) == 0);
	st = tu_child(NULL, fifo_child, NULL);
	unlink(fifo);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s%s", tu_status_str(st),
	       WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (it hung on the FIFO)" : "");
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	unsigned char *ref = tu_make_file(path, 1 << 20, 9);
	if (!ref)
		return 1;
	free(ref);
	RUN(test_fresh_failures_start_nothing); /* first: before this process maps anything */
	/* Second, while this process has no other thread: TSan kills a child of one that does. */
	RUN(test_fifo_paths);
	RUN(test_engine_emfile_not_sticky); /* in a child, while this process has no thread */
	RUN(test_uffd_emfile_message); /* the same */
	RUN(test_low_address_space);
	RUN(test_hmmap_args);
	RUN(test_hmmap_pmem_changes_nothing);
	RUN(test_cache_args);
	RUN(test_cache_limit);
	RUN(test_region_args);
	RUN(test_unmap_args);
	RUN(test_sync_args);
	RUN(test_errno_untouched);
	RUN(test_null_features);
	tu_cleanup();
	return test_done();
}
