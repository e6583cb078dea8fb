/* SPDX-License-Identifier: MIT */
/*
 * Frames on transparent huge pages: a region of 2 MiB pages without
 * HM_HUGETLB keeps its frames in a file of a private huge=always tmpfs, so
 * that each frame is one huge folio (src/core/region.c).
 *
 * The frames are looked at from outside: /proc/self/pagemap and
 * /proc/kpageflags say whether the page behind an address belongs to a
 * transparent huge page, and the frame file itself, reached through
 * /proc/self/map_files, says by its allocated blocks how much memory the
 * frames hold. With the frames huge, every byte still reads back right
 * through eviction and write-back; a file whose size is not a page multiple
 * reads zeros past its end and is never extended; the frames never hold
 * more than the budget and one eviction batch; unmapping frees them.
 * HMMAP_THP_FRAMES=0 keeps 4 KiB frames, and a bad value is refused.
 *
 * Needs root (CAP_SYS_ADMIN to make the tmpfs, and /proc/kpageflags); the
 * cases skip visibly without it, or when the system denies shmem huge pages.
 * Random traffic on 2 MiB pages in both fault modes is in test_integrity.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#define HP ((size_t)2 << 20)
#define KPF_THP 22

static char why[256]; /* why the cases skip, if they do */

/* Whether this process may have huge tmpfs frames; else a reason in why. */
static int thp_possible(void)
{
	char buf[256] = "";
	FILE *f;
	int fs;

	if (geteuid() != 0) {
		snprintf(why, sizeof why, "not root: no tmpfs of our own, no /proc/kpageflags");
		return 0;
	}
	f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
	if (!f) {
		snprintf(why, sizeof why, "no transparent huge pages in this kernel");
		return 0;
	}
	if (!fgets(buf, sizeof buf, f))
		buf[0] = 0;
	fclose(f);
	if (strstr(buf, "[deny]")) {
		snprintf(why, sizeof why, "shmem_enabled is deny: no huge pages for any tmpfs");
		return 0;
	}
	fs = (int)syscall(SYS_fsopen, "tmpfs", 1 /* FSOPEN_CLOEXEC */);
	if (fs < 0) {
		snprintf(why, sizeof why, "fsopen(tmpfs): %s", strerror(errno));
		return 0;
	}
	close(fs);
	return 1;
}

/* 1 if the page at p is part of a transparent huge page, 0 if not, -1 if unknown. */
static int is_thp(const void *p)
{
	uint64_t e = 0, flags = 0;
	int pm = open("/proc/self/pagemap", O_RDONLY);
	int kf = open("/proc/kpageflags", O_RDONLY);
	int rc = -1;

	if (pm >= 0 && kf >= 0 &&
	    pread(pm, &e, 8, (off_t)((uintptr_t)p / 4096 * 8)) == 8 && (e >> 63) &&
	    pread(kf, &flags, 8, (off_t)((e & ((1ull << 55) - 1)) * 8)) == 8)
		rc = (int)((flags >> KPF_THP) & 1);
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	return rc;
}

/* is_thp() of a page touched just before: the reference sampler unmaps pages now and then. */
static int touched_thp(const unsigned char *p)
{
	int t = -1;

	for (int i = 0; i < 100 && t < 0; i++) {
		(void)*(const volatile unsigned char *)p;
		t = is_thp(p);
	}
	return t;
}

/* Bytes the frame file behind the mapping at base holds, or -1. */
static long long frame_bytes(const void *base, size_t len)
{
	char link[128];
	struct stat st;

	snprintf(link, sizeof link, "/proc/self/map_files/%lx-%lx", (unsigned long)(uintptr_t)base,
		 (unsigned long)((uintptr_t)base + len));
	if (stat(link, &st))
		return -1;
	return (long long)st.st_blocks * 512;
}

static uint64_t word(uint64_t i)
{
	return i * 0x9e3779b97f4a7c15ull + 7;
}

/*
 * A 5 MiB + 123 byte file, 2 MiB pages through a cache of two pages: three
 * pages, so every pass evicts. Writes a word per 4 KiB in two passes, syncs,
 * and reads it all back through a fresh mapping.
 */
static void test_frames_are_huge_and_right(void)
{
	char path[512], uri[600];
	const size_t flen = (5u << 20) + 123, span = 3 * HP;
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	unsigned char *ref, *p;
	int huge = 0, small = 0;
	long long held, most = 0;

	if (!thp_possible())
		SKIP("%s", why);
	tu_path(path, sizeof path, "thp-tail.dat");
	ref = tu_make_file(path, flen, 41);
	CHECK(ref);
	snprintf(uri, sizeof uri, "file:%s", path);
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	CHECKF(hm_cache_new(&c, 2 * HP, "clock") == 0, "%s", hm_errormsg());
	CHECKF(hm_region_map(&r, c, s, 0, flen, PROT_READ | PROT_WRITE, HM_CACHED, HP) == 0, "%s",
	       hm_errormsg());
	p = hm_region_addr(r);
	for (int pass = 0; pass < 2; pass++) {
		for (size_t o = 0; o + 8 <= flen; o += 4096) {
			uint64_t v = word(o + (uint64_t)pass);
			memcpy(p + o, &v, 8);
			memcpy(ref + o, &v, 8);
			int t = is_thp(p + o);
			huge += t == 1;
			small += t == 0;
			held = frame_bytes(p, span);
			CHECKF(held >= 0, "cannot stat the frame file: %s", strerror(errno));
			if (held > most)
				most = held;
		}
	}
	/* Past the end of the file, to the end of the last page: zeros. */
	for (size_t o = flen; o < span; o += 997)
		CHECKF(p[o] == 0, "byte %zu past the end reads %u", o, p[o]);
	CHECKF(small == 0 && huge > 0, "%d of %d touched pages were not in a huge page", small,
	       small + huge);
	/* Two pages of budget, and at most one page of eviction batch beyond. */
	CHECKF(most <= (long long)(3 * HP), "the frames held %lld bytes", most);
	CHECKF(hm_sync(p, flen, MS_SYNC) == 0, "%s", hm_errormsg());
	CHECK(hm_region_unmap(r) == 0);
	CHECK(tu_file_size(path) == (off_t)flen);
	CHECKF(tu_cmp_file(path, ref, flen) < 0, "the file differs at %lld",
	       tu_cmp_file(path, ref, flen));

	/* A fresh read-only mapping reads what was written. */
	CHECKF(hm_region_map(&r, c, s, 0, flen, PROT_READ, HM_CACHED, HP) == 0, "%s",
	       hm_errormsg());
	p = hm_region_addr(r);
	CHECKF(tu_cmp_mem(p, ref, flen) < 0, "the mapping differs at %lld",
	       tu_cmp_mem(p, ref, flen));
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_store_close(s) == 0);
	free(ref);
	unlink(path);
}

/*
 * After DONTNEED and at the end, the frames are given back, not kept, and so
 * is every descriptor the region opened.
 */
static void test_frames_given_back(void)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	unsigned char *p;
	const size_t len = 8 * HP;

	int fds;

	if (!thp_possible())
		SKIP("%s", why);
	CHECKF(hm_store_open(&s, "mem:16M", 0) == 0, "%s", hm_errormsg());
	CHECKF(hm_cache_new(&c, 2 * len, "fifo") == 0, "%s", hm_errormsg());
	/* A region of 4 KiB pages first: what the library keeps open anyway is open now. */
	CHECKF(hm_region_map(&r, c, s, 0, len, PROT_READ, HM_CACHED, 4096) == 0, "%s",
	       hm_errormsg());
	CHECK(hm_region_unmap(r) == 0);
	fds = tu_count_fds();
	CHECKF(hm_region_map(&r, c, s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, HP) == 0, "%s",
	       hm_errormsg());
	p = hm_region_addr(r);
	for (size_t o = 0; o < len; o += 4096)
		p[o] = (unsigned char)(o >> 12);
	CHECKF(frame_bytes(p, len) == (long long)len, "%lld bytes of frames for %zu written",
	       frame_bytes(p, len), len);
	CHECKF(touched_thp(p + HP + 4096) == 1, "a written page is not in a huge page");
	CHECKF(hm_advise(p, len / 2, HM_ADV_DONTNEED) == 0, "%s", hm_errormsg());
	CHECKF(frame_bytes(p, len) == (long long)len / 2, "%lld bytes of frames after DONTNEED",
	       frame_bytes(p, len));
	for (size_t o = 0; o < len; o += 4096)
		CHECKF(p[o] == (unsigned char)(o >> 12), "byte %zu lost", o);
	CHECK(hm_region_unmap(r) == 0);
	/* No descriptor outlives the region: not the frame file, not its file system. */
	CHECKF(tu_count_fds() == fds, "%d descriptors open after unmap, %d before the map",
	       tu_count_fds(), fds);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_store_close(s) == 0);
}

static int small_child(void *arg)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	unsigned char *p;
	int thp;

	(void)arg;
	if (hm_store_open(&s, "mem:4M", 0) || hm_cache_new(&c, 4 * HP, "clock") ||
	    hm_region_map(&r, c, s, 0, 2 * HP, PROT_READ | PROT_WRITE, HM_CACHED, HP)) {
		printf("map: %s\n", hm_errormsg());
		return 2;
	}
	p = hm_region_addr(r);
	memset(p, 1, 2 * HP);
	thp = touched_thp(p + 4096);
	for (size_t o = 0; o < 2 * HP; o += 4096)
		if (p[o] != 1)
			return 3;
	hm_region_unmap(r);
	hm_cache_free(c);
	hm_store_close(s);
	printf("page in a huge page: %d\n", thp);
	return thp == 0 ? 0 : 4;
}

/* HMMAP_THP_FRAMES=0 keeps 4 KiB frames. */
static void test_off_keeps_small_frames(void)
{
	static const char *const env[] = { "HMMAP_THP_FRAMES=0", NULL };
	int st;

	if (!thp_possible())
		SKIP("%s", why);
	st = tu_child(env, small_child, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
}

static int bad_child(void *arg)
{
	struct hm_cache *c;

	(void)arg;
	if (!hm_cache_default(&c)) {
		printf("HMMAP_THP_FRAMES=%s was accepted\n", getenv("HMMAP_THP_FRAMES"));
		return 1;
	}
	printf("%s\n", hm_errormsg());
	return strstr(hm_errormsg(), "HMMAP_THP_FRAMES") ? 0 : 2;
}

/* A value other than 0 or 1 is an error that names the variable. */
static void test_bad_value(void)
{
	static const char *const env2[] = { "HMMAP_THP_FRAMES=2", NULL };
	static const char *const envw[] = { "HMMAP_THP_FRAMES=yes", NULL };
	int st;

	st = tu_child(env2, bad_child, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
	st = tu_child(envw, bad_child, NULL);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
}

int main(void)
{
	/* The children first: a child forked after the library started inherits its options. */
	RUN(test_bad_value);
	RUN(test_off_keeps_small_frames);
	RUN(test_frames_given_back); /* the first region of 2 MiB pages in this process */
	RUN(test_frames_are_huge_and_right);
	tu_cleanup();
	return test_done();
}
