/* SPDX-License-Identifier: MIT */
/*
 * kill -9 after a sync: a child maps a file through a cache much smaller
 * than it, writes the first half, calls hmsync(MS_SYNC), tells the parent,
 * and goes on writing the second half until the parent kills it with
 * SIGKILL. Everything written before the sync must be in the file; every
 * word of the second half holds its old value or one the child wrote (a
 * write-back is a snapshot of whole words, never garbage). Once in each
 * fault mode, and once with the child killing itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define FILE_LEN (8u << 20)
#define HALF (FILE_LEN / 2)

static char path[512];

/* The value the child writes to word i in round k (never 0, never the seed). */
static uint64_t val(uint64_t i, uint64_t k)
{
	return (i * 0x9E3779B97F4A7C15ull) ^ (k << 56) ^ 0x5555000000000000ull;
}

static int child_main(int wfd, bool self_kill)
{
	uint64_t *p = hmmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	uint64_t s = 7;
	char c = 'S';

	if ((void *)p == MAP_FAILED) {
		fprintf(stderr, "hmmap: %s\n", hm_errormsg());
		return 2;
	}
	/* The first half, round 1, then MS_SYNC. */
	for (uint64_t i = 0; i < HALF / 8; i++)
		p[i] = val(i, 1);
	if (hmsync(p, FILE_LEN, MS_SYNC)) {
		fprintf(stderr, "hmsync: %s\n", hm_errormsg());
		return 3;
	}
	if (write(wfd, &c, 1) != 1)
		return 4;
	/* The second half, forever, with periodic asynchronous syncs. */
	for (uint64_t k = 2;; k++) {
		for (int j = 0; j < 2000; j++) {
			uint64_t i = HALF / 8 + tu_rnd(&s) % (HALF / 8);
			p[i] = val(i, k & 0x7f);
		}
		if (k % 4 == 0)
			hmsync(p, FILE_LEN, MS_ASYNC);
		if (k == 3 && write(wfd, "W", 1) != 1)
			return 5;
		if (self_kill && k == 8)
			raise(SIGKILL);
	}
}

struct crash_arg {
	bool self_kill;
};

/*
 * The grandchild does the work: tu_child's child is the process whose
 * output is shown, and it kills the worker and checks the file.
 */
static int run_crash(void *arg)
{
	struct crash_arg *a = arg;
	int pfd[2], st;
	pid_t pid;
	char c;

	if (pipe(pfd))
		return 1;
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		close(pfd[0]);
		_exit(child_main(pfd[1], a->self_kill));
	}
	close(pfd[1]);
	if (read(pfd[0], &c, 1) != 1) {
		waitpid(pid, &st, 0);
		printf("the writer died before its sync: %s\n", tu_status_str(st));
		return 1;
	}
	/* Kill it once it has written (and evicted) past the sync for a while. */
	if (read(pfd[0], &c, 1) == 1 && !a->self_kill)
		kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(pfd[0]);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
		printf("the writer ended with %s, not SIGKILL\n", tu_status_str(st));
		return 1;
	}
	return 0;
}

static void check_file(const unsigned char *orig)
{
	uint64_t *buf = malloc(FILE_LEN);
	const uint64_t *o = (const uint64_t *)orig;
	int fd = open(path, O_RDONLY);

	CHECK(buf && fd >= 0);
	CHECK(tu_read_all(fd, buf, FILE_LEN, 0) == 0);
	close(fd);
	CHECK(tu_file_size(path) == FILE_LEN);
	for (uint64_t i = 0; i < HALF / 8; i++)
		CHECKF(buf[i] == val(i, 1), "synced word %llu lost: %#llx", (unsigned long long)i,
		       (unsigned long long)buf[i]);
	for (uint64_t i = HALF / 8; i < FILE_LEN / 8; i++) {
		if (buf[i] == o[i])
			continue;
		CHECKF((buf[i] & ~(0x7full << 56)) == (val(i, 0) & ~(0x7full << 56)),
		       "word %llu is neither old nor written: %#llx", (unsigned long long)i,
		       (unsigned long long)buf[i]);
	}
	free(buf);
}

static void crash_case(const char *mode, bool self_kill)
{
	const char *env[] = { mode, "HMMAP_CACHE_SIZE=1M", NULL };
	struct crash_arg a = { .self_kill = self_kill };
	unsigned char *orig = tu_make_file(path, FILE_LEN, 3);
	int st;

	CHECK(orig);
	st = tu_child(env, run_crash, &a);
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		free(orig);
		CHECKF(0, "child: %s", tu_status_str(st));
	}
	check_file(orig);
	free(orig);
}

static void test_kill_thread_mode(void)
{
	crash_case("HMMAP_FAULT_MODE=thread", false);
}

static void test_kill_sigbus_mode(void)
{
	crash_case("HMMAP_FAULT_MODE=sigbus", false);
}

static void test_self_kill(void)
{
	crash_case("HMMAP_FAULT_MODE=auto", true);
}

/*
 * A normal exit keeps the writes, as it does for a MAP_SHARED mapping: the
 * child writes all 8 MiB through a 1 MiB cache (most pages leave by
 * eviction, the last ones are still dirty) and calls exit() without
 * hmsync() or hmunmap(); every word must be in the file. _exit() keeps
 * what eviction wrote, no more (that is not checked: it is not promised).
 */
static int exit_writer(void *arg)
{
	uint64_t *p = hmmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);

	(void)arg;
	if ((void *)p == MAP_FAILED) {
		printf("hmmap: %s\n", hm_errormsg());
		return 2;
	}
	for (uint64_t i = 0; i < FILE_LEN / 8; i++)
		p[i] = val(i, 2);
	exit(0);
}

static void exit_case(const char *mode)
{
	const char *env[] = { mode, "HMMAP_CACHE_SIZE=1M", NULL };
	unsigned char *orig = tu_make_file(path, FILE_LEN, 4);
	uint64_t *buf = malloc(FILE_LEN), bad = 0;
	int st, fd;

	CHECK(orig && buf);
	st = tu_child(env, exit_writer, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && tu_read_all(fd, buf, FILE_LEN, 0) == 0);
	close(fd);
	for (uint64_t i = 0; i < FILE_LEN / 8; i++)
		bad += buf[i] != val(i, 2);
	CHECKF(bad == 0, "%llu of %u words not written at exit", (unsigned long long)bad,
	       FILE_LEN / 8);
	free(buf);
	free(orig);
}

static void test_exit_thread_mode(void)
{
	exit_case("HMMAP_FAULT_MODE=thread");
}

static void test_exit_sigbus_mode(void)
{
	exit_case("HMMAP_FAULT_MODE=sigbus");
}

/*
 * The same for a pmem: file on tmpfs, in the cached and hybrid modes: the
 * medium is not persistent, but the file is the user's, and a MAP_SHARED
 * mapping of it would keep the writes.
 */
#define PMEM_LEN (1u << 20)
static const char pmem_msg[16] = "written at exit";

struct pmem_exit {
	char path[256];
	int mode;
};

static int pmem_exit_writer(void *arg)
{
	const struct pmem_exit *e = arg;
	char uri[300];
	char *p;

	snprintf(uri, sizeof uri, "pmem:%s", e->path);
	p = hmmap(NULL, PMEM_LEN, PROT_READ | PROT_WRITE, e->mode, uri, 0);
	if (p == MAP_FAILED) {
		printf("hmmap: %s\n", hm_errormsg());
		return 2;
	}
	memcpy(p + 4096, pmem_msg, sizeof pmem_msg);
	exit(0);
}

static void pmem_exit_case(int mode)
{
	struct pmem_exit e = { .mode = mode };
	char got[sizeof pmem_msg] = { 0 };
	int st, fd;

	snprintf(e.path, sizeof e.path, "/dev/shm/hmmap-test-exit-%d", (int)getpid());
	fd = open(e.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, PMEM_LEN) == 0);
	close(fd);
	st = tu_child(NULL, pmem_exit_writer, &e);
	fd = open(e.path, O_RDONLY);
	unlink(e.path);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
	CHECK(fd >= 0 && tu_read_all(fd, got, sizeof got, 4096) == 0);
	close(fd);
	CHECKF(!memcmp(got, pmem_msg, sizeof got), "the file holds '%.16s' after exit", got);
}

static void test_exit_pmem_tmpfs_cached(void)
{
	pmem_exit_case(HM_CACHED);
}

static void test_exit_pmem_tmpfs_hybrid(void)
{
	pmem_exit_case(HM_HYBRID);
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	RUN(test_kill_thread_mode);
	RUN(test_kill_sigbus_mode);
	RUN(test_self_kill);
	RUN(test_exit_thread_mode);
	RUN(test_exit_sigbus_mode);
	RUN(test_exit_pmem_tmpfs_cached);
	RUN(test_exit_pmem_tmpfs_hybrid);
	tu_cleanup();
	return test_done();
}
