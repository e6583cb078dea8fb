/* SPDX-License-Identifier: MIT */
/*
 * The 2 MiB huge page pool that HM_HUGETLB regions take frames from, for
 * tests and benchmarks (no harness needed). tu_hugetlb_free() is its free
 * count, or -1 without a pool. tu_hugetlb_pool(n) makes at least n pages
 * free, raising vm.nr_hugepages if it must (as root) and putting it back
 * when the process that raised it exits, also when SIGTERM, SIGINT or SIGHUP
 * ends it; 0, or -1 with the reason in why.
 */
#ifndef HMMAP_TEST_HUGEPOOL_H
#define HMMAP_TEST_HUGEPOOL_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define TU_HUGETLB_SYS "/sys/kernel/mm/hugepages/hugepages-2048kB/"

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

static inline void tu_hugetlb_restore(void)
{
	if (tu_hugetlb_saved >= 0 && getpid() == tu_hugetlb_owner)
		tu_hugetlb_set(tu_hugetlb_saved);
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
		}
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static inline int tu_hugetlb_pool(long n, char *why, size_t cap)
{
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
