/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the core tests: a scratch directory, pattern files with a
 * reference copy, a deterministic generator, child processes whose output is
 * shown indented under the parent's case, and the process's resident size.
 *
 * The fault mode and the HMMAP_* options are read once per process (a
 * forked child reads them again: it starts hmmap afresh), so every variant
 * that needs its own options runs in a forked child, which sets its
 * environment before its first hm_* call.
 *
 * Include after harness.h.
 */
#ifndef HMMAP_TEST_UTIL_H
#define HMMAP_TEST_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hugepool.h"

static char tu_dir[256];

/* Creates the scratch directory (once); returns its path or NULL. */
static inline const char *tu_tmpdir(void)
{
	if (!tu_dir[0]) {
		snprintf(tu_dir, sizeof tu_dir, "/tmp/hmmap-test-XXXXXX");
		if (!mkdtemp(tu_dir)) {
			tu_dir[0] = 0;
			return NULL;
		}
	}
	return tu_dir;
}

/* Removes the scratch directory and the files in it (no subdirectories). */
static inline void tu_cleanup(void)
{
	DIR *d;
	struct dirent *e;
	char p[512];

	if (!tu_dir[0])
		return;
	d = opendir(tu_dir);
	if (d) {
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(p, sizeof p, "%s/%s", tu_dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(tu_dir);
	tu_dir[0] = 0;
}

static inline void tu_path(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", tu_tmpdir(), name);
}

/*
 * Runs a shell command with stderr joined to stdout; returns its exit status
 * (-1 if it did not exit) and up to cap-1 bytes of its output in out (NULL:
 * discarded). The rest is read and dropped so the command never blocks.
 */
static inline int tu_run(const char *cmd, char *out, size_t cap)
{
	char full[4096], sink[4096];
	FILE *f;
	int st;

	snprintf(full, sizeof full, "%s 2>&1", cmd);
	f = popen(full, "r");
	if (!f)
		return -1;
	if (out && cap) {
		size_t n = fread(out, 1, cap - 1, f);
		out[n] = 0;
	}
	while (fread(sink, 1, sizeof sink, f) > 0)
		;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* xorshift64*: deterministic and cheap. */
static inline uint64_t tu_rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/*
 * A random-traffic seed: `base` as written, or mixed with HMMAP_TEST_SEED
 * when it is set, so that `make soak` runs each test with new traffic.
 * Never 0 (xorshift would stay there).
 */
static inline uint64_t tu_seed(uint64_t base)
{
	const char *e = getenv("HMMAP_TEST_SEED");
	uint64_t k = e ? strtoull(e, NULL, 10) : 0;

	return (base ^ (k * 0x9E3779B97F4A7C15ull)) | 1;
}

static inline void tu_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t s = seed | 1, *w = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		w[i] = tu_rnd(&s);
	for (i = len & ~(size_t)7; i < len; i++)
		((unsigned char *)buf)[i] = (unsigned char)tu_rnd(&s);
}

/* Pseudo-random bytes from seed, at any alignment (tu_fill() wants words). */
static inline void tu_fill_bytes(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t s = seed | 1;

	while (n) {
		uint64_t v = tu_rnd(&s);
		size_t k = n < 8 ? n : 8;
		memcpy(p, &v, k);
		p += k;
		n -= k;
	}
}

static inline int tu_write_all(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static inline int tu_read_all(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int)(done == len ? 0 : -1);
}

/*
 * Creates `path` with `len` pseudo-random bytes from `seed`; returns a
 * malloc'd reference copy (or NULL).
 */
static inline unsigned char *tu_make_file(const char *path, size_t len, uint64_t seed)
{
	unsigned char *ref = malloc(len ? len : 1);
	int fd;

	if (!ref)
		return NULL;
	tu_fill(ref, len, seed);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || tu_write_all(fd, ref, len, 0) || fsync(fd)) {
		if (fd >= 0)
			close(fd);
		free(ref);
		return NULL;
	}
	close(fd);
	return ref;
}

/* Compares `path` with ref[0..len); returns the first differing offset or -1. */
static inline long long tu_cmp_file(const char *path, const unsigned char *ref, size_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	long long bad = -1;
	int fd = open(path, O_RDONLY);

	if (!buf || fd < 0 || tu_read_all(fd, buf, len, 0)) {
		bad = -2;
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != ref[i]) {
			bad = (long long)i;
			break;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return bad;
}

static inline long long tu_cmp_mem(const unsigned char *a, const unsigned char *b, size_t len)
{
	if (!memcmp(a, b, len))
		return -1;
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return (long long)i;
	return -1;
}

static inline off_t tu_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? -1 : st.st_size;
}

/* The documented header of a statistics segment (docs/stats.md), to craft segments. */
struct tu_seg_header {
	char magic[8];
	uint32_t version, header_size, entry_size, capacity;
	int32_t pid, fault_mode;
	uint64_t start_time, seq, updated_ns;
	uint32_t interval_ms, nobjs, truncated, pad;
	char comm[16];
	uint8_t reserved[40];
};

/* A process's start time (field 22 of /proc/PID/stat), or 0. */
static inline uint64_t tu_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	p += 2;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return 0;
		p++;
	}
	return strtoull(p, NULL, 10);
}

/* Resident set size of this process in bytes, from /proc/self/statm. */
static inline uint64_t tu_rss(void)
{
	unsigned long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static inline int tu_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/*
 * Touching memory that may raise SIGBUS. A test's SIGBUS handler leaves by
 * siglongjmp(*tu_jb, 1) when tu_jb is set (install it before the first
 * hm_* call, so that sigbus mode chains to it). Each returns 1 if the
 * access raised SIGBUS, 0 if it completed.
 */
static __thread sigjmp_buf *tu_jb;

#define TU_TRY(access)                                                                   \
	({                                                                               \
		sigjmp_buf tu_here_;                                                     \
		int tu_hit_ = 0;                                                         \
		tu_jb = &tu_here_;                                                       \
		if (sigsetjmp(tu_here_, 1))                                              \
			tu_hit_ = 1;                                                     \
		else                                                                     \
			access;                                                          \
		tu_jb = NULL;                                                            \
		tu_hit_;                                                                 \
	})

static inline int tu_try_read8(const volatile unsigned char *p, unsigned char *out)
{
	return TU_TRY(*out = *p);
}

static inline int tu_try_read64(const volatile uint64_t *p, uint64_t *out)
{
	return TU_TRY(*out = *p);
}

static inline int tu_try_write64(volatile uint64_t *p, uint64_t v)
{
	return TU_TRY(*p = v);
}

/*
 * In a forked child: standard output to the write end of `out`, standard
 * input from the read end of `in`, and all four ends closed.
 */
static inline void tu_child_stdio(const int out[2], const int in[2])
{
	dup2(out[1], 1);
	dup2(in[0], 0);
	close(out[0]);
	close(out[1]);
	close(in[0]);
	close(in[1]);
}

static inline const char *tu_sanitizer(void)
{
	const char *s = getenv("HMMAP_TEST_SANITIZER");

	return s && *s ? s : NULL;
}

/* Whether this run is under sanitizer `name` ("asan", "tsan"). */
static inline bool tu_under(const char *name)
{
	const char *s = tu_sanitizer();

	return s && !strcmp(s, name);
}

/*
 * Runs fn(arg) in a forked child whose stdout and stderr are shown indented
 * ("    | ") after it ends. `env` is a NULL-terminated list of "NAME=value"
 * strings (a value-less "NAME" unsets it) applied in the child before fn.
 * The child exits with fn's return value. Returns the wait status, or -1.
 */
static inline int tu_child(const char *const *env, int (*fn)(void *), void *arg)
{
	int pfd[2], status = -1;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		close(pfd[0]);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[1]);
		for (const char *const *e = env; e && *e; e++) {
			char name[128];
			const char *eq = strchr(*e, '=');
			size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
			if (n >= sizeof name)
				_exit(126);
			memcpy(name, *e, n);
			name[n] = 0;
			if (eq)
				setenv(name, eq + 1, 1);
			else
				unsetenv(name);
		}
		/* The child's harness counts its own cases (harness.h comes first). */
		t_passed = t_failed = t_skipped = 0;
		int rc = fn(arg);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	close(pfd[1]);
	{
		FILE *f = fdopen(pfd[0], "r");
		char line[1024];
		while (f && fgets(line, sizeof line, f))
			printf("    | %s", line[0] ? line : "\n"), fflush(stdout);
		if (f)
			fclose(f);
		else
			close(pfd[0]);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	fflush(stdout);
	return status;
}

/* A readable description of a wait status, for failure messages. */
static inline const char *tu_status_str(int st)
{
	static char buf[64];

	if (st == -1)
		snprintf(buf, sizeof buf, "fork failed");
	else if (WIFEXITED(st))
		snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, sizeof buf, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, sizeof buf, "status %#x", st);
	return buf;
}

/*
 * For a parent case that ran a child harness: passes if it exited 0, skips
 * if it exited 77, fails otherwise. Used as TU_CHILD_RESULT(status).
 */
#define TU_CHILD_RESULT(st)                                                              \
	do {                                                                             \
		int tu_st_ = (st);                                                       \
		if (WIFEXITED(tu_st_) && WEXITSTATUS(tu_st_) == 77)                      \
			SKIP("every case in the child was skipped");                     \
		CHECKF(WIFEXITED(tu_st_) && WEXITSTATUS(tu_st_) == 0, "child: %s",       \
		       tu_status_str(tu_st_));                                           \
	} while (0)

#endif
