/* SPDX-License-Identifier: MIT */
/*
 * The 2 MiB huge page pool that HM_HUGETLB regions take frames from, for
 * tests and benchmarks (no harness needed). tu_hugetlb_free() is its free
 * count, or -1 without a pool. tu_hugetlb_pool(n) makes at least n pages
 * free, raising vm.nr_hugepages if it must (as root) and putting it back
 * when the process that raised it exits, also when SIGTERM, SIGINT or SIGHUP
 * ends it; 0, or -1 with the reason in why.
 *
 * The pool is the whole machine's. Two programs that used it at once (make
 * test beside make asan) took each other's pages, and one put the pool back
 * under the other: maps failed, and nr_hugepages could stay raised. So the
 * first tu_hugetlb_pool() of a process takes an exclusive flock on
 * TU_HUGETLB_LOCK and keeps it until the process ends (its forked children
 * share it): programs that use the pool run one after another, waiting up
 * to TU_HUGETLB_WAIT_S seconds. The lock file holds the value to put back
 * while the pool is raised, so a holder killed with SIGKILL is undone by
 * the next one.
 */
#ifndef HMMAP_TEST_HUGEPOOL_H
#define HMMAP_TEST_HUGEPOOL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/types.h>
#include <unistd.h>

#define TU_HUGETLB_SYS "/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define TU_HUGETLB_LOCK "/tmp/hmmap-hugepool.lock"
#define TU_HUGETLB_WAIT_S 900

static inline long tu_hugetlb_read(const char *name)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof path, TU_HUGETLB_SYS "%s", name);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static inline long tu_hugetlb_free(void)
{
	return tu_hugetlb_read("free_hugepages");
}

static long tu_hugetlb_saved = -1;
static pid_t tu_hugetlb_owner;

static inline int tu_hugetlb_set(long n)
{
	FILE *f = fopen(TU_HUGETLB_SYS "nr_hugepages", "we");

	if (!f)
		return -1;
	int bad = fprintf(f, "%ld\n", n) < 0;
	return (fclose(f) || bad) ? -1 : 0;
}

static int tu_hugetlb_fd = -1; /* the lock, held until exit; inherited by fork */

/* Empties the lock file: nothing to put back (async-signal-safe). */
static inline void tu_hugetlb_clear(void)
{
	if (tu_hugetlb_fd >= 0 && ftruncate(tu_hugetlb_fd, 0)) {
		/* the next holder would put back the same value again: harmless */
	}
}

static inline void tu_hugetlb_restore(void)
{
	if (tu_hugetlb_saved >= 0 && getpid() == tu_hugetlb_owner) {
		tu_hugetlb_set(tu_hugetlb_saved);
		tu_hugetlb_clear();
	}
}

/*
 * Takes the pool for this process (see the top). 0, or -1 with the reason
 * in why; a lock file that cannot be opened is no reason to fail.
 */
static inline int tu_hugetlb_lock(char *why, size_t cap)
{
	int fd;

	if (tu_hugetlb_fd >= 0)
		return 0;
	fd = open(TU_HUGETLB_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0)
		fd = open(TU_HUGETLB_LOCK, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	for (int i = 0; flock(fd, LOCK_EX | LOCK_NB); i++) {
		if (errno != EWOULDBLOCK || i >= TU_HUGETLB_WAIT_S * 10) {
			close(fd);
			snprintf(why, cap, "another program has held the huge page pool (%s) for "
				 "%d s", TU_HUGETLB_LOCK, TU_HUGETLB_WAIT_S);
			return -1;
		}
		usleep(100 * 1000);
	}
	/* A holder that died without putting the pool back left what to put back. */
	char buf[32];
	ssize_t r = pread(fd, buf, sizeof buf - 1, 0);
	if (r > 0) {
		char *end;
		buf[r] = 0;
		long old = strtol(buf, &end, 10);
		if (end != buf && old >= 0)
			tu_hugetlb_set(old);
	}
	tu_hugetlb_fd = fd;
	tu_hugetlb_clear();
	return 0;
}

/*
 * A process stopped by a signal (make soak stopped, a test killed by its
 * time limit, ^C) runs no atexit(): put the pool back from the handler,
 * with the value written out beforehand (async-signal-safe calls only),
 * then die of the signal as before.
 */
static char tu_hugetlb_saved_text[32];

static inline void tu_hugetlb_on_signal(int sig)
{
	if (getpid() == tu_hugetlb_owner) {
		int fd = open(TU_HUGETLB_SYS "nr_hugepages", O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t w = write(fd, tu_hugetlb_saved_text, strlen(tu_hugetlb_saved_text));
			(void)w;
			close(fd);
			tu_hugetlb_clear();
		}
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static inline int tu_hugetlb_pool(long n, char *why, size_t cap)
{
	if (tu_hugetlb_lock(why, cap))
		return -1;
	long total = tu_hugetlb_read("nr_hugepages"), avail = tu_hugetlb_free();

	if (total < 0 || avail < 0) {
		snprintf(why, cap, "no 2 MiB huge page pool in this kernel");
		return -1;
	}
	if (avail >= n)
		return 0;
	if (tu_hugetlb_saved < 0) {
		tu_hugetlb_saved = total;
		tu_hugetlb_owner = getpid();
		atexit(tu_hugetlb_restore);
		snprintf(tu_hugetlb_saved_text, sizeof tu_hugetlb_saved_text, "%ld\n", total);
		if (tu_hugetlb_fd >= 0 &&
		    pwrite(tu_hugetlb_fd, tu_hugetlb_saved_text, strlen(tu_hugetlb_saved_text), 0) <
			    0) {
			/* without it a SIGKILL leaves the pool raised, as before */
		}
		static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
		for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
			struct sigaction sa, old;
			memset(&sa, 0, sizeof sa);
			sa.sa_handler = tu_hugetlb_on_signal;
			/* A handler the program installed stays; only the default is replaced. */
			if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
				sigaction(sigs[i], &sa, NULL);
		}
	}
	if (tu_hugetlb_set(total + (n - avail)) || tu_hugetlb_free() < n) {
		snprintf(why, cap, "the huge page pool has %ld free 2 MiB pages, %ld needed, and "
			 "vm.nr_hugepages cannot be raised (%s)", tu_hugetlb_free(), n,
			 geteuid() ? "not root" : "no memory");
		return -1;
	}
	return 0;
}

#endif
