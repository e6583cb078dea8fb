/* SPDX-License-Identifier: MIT */
/*
 * Frames that the kernel swaps out keep their writes. Reclaim (swap under
 * memory pressure, MADV_PAGEOUT, a memory cgroup's limit) unmaps a frame
 * without hmmap: a written page's PTE then leaves nothing behind, which a
 * sync's harvest of mapped pages did not see, and hm_sync returned 0 with
 * 4030 of 4096 written pages never written back.
 *
 * The cases need swap. Without any, the parent (as root) makes a swap file
 * in /var/tmp for the run and removes it afterwards, however the child
 * running the cases ends; where that cannot be done the cases skip.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define SWAPFILE "/var/tmp/hmmap-test-swap"

static char path[512];

struct fx {
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	unsigned char *b;
	size_t len;
};

static int fx_open(struct fx *f, size_t len)
{
	unsigned char *ref = tu_make_file(path, len, 21);

	memset(f, 0, sizeof *f);
	f->len = len;
	free(ref);
	if (!ref || hm_cache_new(&f->c, 2 * len, "fifo") || hm_store_open(&f->s, path, 0) ||
	    hm_region_map(&f->r, f->c, f->s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096))
		return -1;
	f->b = hm_region_addr(f->r);
	for (size_t off = 0; off < len; off += 4096)
		(void)*(volatile unsigned char *)(f->b + off); /* every page resident, clean */
	return 0;
}

static void fx_close(struct fx *f)
{
	hm_region_unmap(f->r);
	hm_store_close(f->s);
	hm_cache_free(f->c);
}

static uint64_t writebacks(struct fx *f)
{
	struct hm_stats st;

	return hm_region_stats(f->r, &st) ? UINT64_MAX : st.writebacks;
}

/* Pages of the file whose first byte is not v. */
static size_t file_pages_not(size_t len, unsigned char v)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t bad = 0;
	unsigned char ch;

	if (fd < 0)
		return len / 4096;
	for (size_t off = 0; off < len; off += 4096)
		bad += pread(fd, &ch, 1, (off_t)off) != 1 || ch != v;
	close(fd);
	return bad;
}

/* Written, swapped out, synced: every page on the store; a second sync writes nothing. */
static void test_written_then_swapped(void)
{
	struct fx f;
	const size_t len = 16 << 20;

	CHECKF(fx_open(&f, len) == 0, "%s", hm_errormsg());
	for (size_t off = 0; off < len; off += 4096)
		f.b[off] = 0x5a;
	CHECK(madvise(f.b, len, MADV_PAGEOUT) == 0);
	CHECKF(hm_sync(f.b, len, MS_SYNC) == 0, "%s", hm_errormsg());
	size_t bad = file_pages_not(len, 0x5a);
	CHECKF(bad == 0, "%zu of %zu written pages not on the file after MS_SYNC", bad, len / 4096);
	uint64_t wb = writebacks(&f);
	CHECK(hm_sync(f.b, len, MS_SYNC) == 0);
	CHECKF(writebacks(&f) == wb, "a second sync wrote %llu pages again",
	       (unsigned long long)(writebacks(&f) - wb));
	/* Written again after all that: tracked as before. */
	for (size_t off = 0; off < len; off += 4096)
		f.b[off] = 0xa5;
	CHECK(hm_sync(f.b, len, MS_SYNC) == 0);
	bad = file_pages_not(len, 0xa5);
	CHECKF(bad == 0, "%zu pages of the second write not on the file", bad);
	fx_close(&f);
}

/* Clean pages swapped out are not written back; the data reads right. */
static void test_clean_then_swapped(void)
{
	struct fx f;
	const size_t len = 8 << 20;

	CHECKF(fx_open(&f, len) == 0, "%s", hm_errormsg());
	unsigned char *ref = malloc(len);
	CHECK(ref);
	memcpy(ref, f.b, len);
	uint64_t wb = writebacks(&f);
	CHECK(madvise(f.b, len, MADV_PAGEOUT) == 0);
	CHECK(hm_sync(f.b, len, MS_SYNC) == 0);
	CHECKF(writebacks(&f) == wb, "%llu clean pages written back",
	       (unsigned long long)(writebacks(&f) - wb));
	long long at = tu_cmp_mem(f.b, ref, len);
	CHECKF(at == -1, "wrong data at offset %lld", at);
	free(ref);
	fx_close(&f);
}

/* Written and swapped out, then unmapped without a sync: unmap writes everything back. */
static void test_swapped_then_unmapped(void)
{
	struct fx f;
	const size_t len = 8 << 20;

	CHECKF(fx_open(&f, len) == 0, "%s", hm_errormsg());
	for (size_t off = 0; off < len; off += 4096)
		f.b[off + 7] = 0x77;
	CHECK(madvise(f.b, len, MADV_PAGEOUT) == 0);
	fx_close(&f);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t bad = 0;
	unsigned char ch;
	for (size_t off = 0; off < len && fd >= 0; off += 4096)
		bad += pread(fd, &ch, 1, (off_t)off + 7) != 1 || ch != 0x77;
	CHECK(fd >= 0);
	close(fd);
	CHECKF(bad == 0, "%zu of %zu pages lost at unmap", bad, len / 4096);
}

static int cases(void *arg)
{
	RUN(test_written_then_swapped);
	RUN(test_clean_then_swapped);
	RUN(test_swapped_then_unmapped);
	return test_done();
}

/* 1 if /proc/swaps lists a swap area. */
static int have_swap(void)
{
	FILE *f = fopen("/proc/swaps", "re");
	char line[256];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		n++;
	fclose(f);
	return n > 1;
}

static void test_under_swap(void)
{
	char out[512];
	bool made = false;
	int st;

	if (!have_swap()) {
		if (geteuid())
			SKIP("no swap, and making a swap file needs root");
		if (tu_run("rm -f " SWAPFILE " && fallocate -l 256M " SWAPFILE " && chmod 600 "
			   SWAPFILE " && mkswap " SWAPFILE " && swapon " SWAPFILE, out,
			   sizeof out)) {
			tu_run("rm -f " SWAPFILE, NULL, 0);
			SKIP("no swap, and no swap file could be made here: %.200s", out);
		}
		made = true;
	}
	st = tu_child(NULL, cases, NULL);
	if (made && tu_run("swapoff " SWAPFILE " && rm -f " SWAPFILE, out, sizeof out))
		fprintf(stderr, "could not remove the swap file: %s\n", out);
	TU_CHILD_RESULT(st);
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	/* A file store on a disk: tmpfs pages would be swapped out too. */
	snprintf(path, sizeof path, "/var/tmp/hmmap-test-swap-data-%d", (int)getpid());
	RUN(test_under_swap);
	unlink(path);
	tu_cleanup();
	return test_done();
}
