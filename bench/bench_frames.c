/* SPDX-License-Identifier: MIT */
/*
 * bench_frames: what one cached page's frame costs on this kernel, without
 * hmmap around it — the floor under every miss of the copy design.
 *
 * For each way of giving a userfaultfd-registered range its frames, fills
 * --size bytes in batches of --batch pages (4 KiB units) from a hot buffer,
 * then frees them, and prints microseconds per 4 KiB for each half:
 *
 *   shmem COPY        UFFDIO_COPY (WP) into a shared memfd mapping; freed
 *                     by MADV_DONTNEED and a punched hole (hmmap's frames)
 *   shmem pwrite+CONT pwrite() into the memfd, then UFFDIO_CONTINUE
 *   shmem view+CONT   memcpy through a second mapping, then CONTINUE
 *   anon COPY         UFFDIO_COPY into private anonymous memory; freed by
 *                     MADV_DONTNEED (cannot keep data across a zap)
 *   anon COPY, MOVE   the same fill; freed by UFFDIO_MOVE of the pages out
 *                     into a parking range (where eviction would write them
 *                     back), then MADV_DONTNEED of that range: the way an
 *                     anonymous frame could keep its data across eviction
 *   hugetlb COPY      UFFDIO_COPY of 2 MiB pages into a hugetlbfs memfd
 *                     (HM_HUGETLB's frames); freed by zap and punch
 *   tmpfs THP pwrite  pwrite() of 2 MiB pages into a file of a private
 *                     huge=always tmpfs, then CONTINUE (the frames of
 *                     2 MiB-page regions without HM_HUGETLB, as root)
 *
 * Medians of --runs, min and max beside them, and each row's total as a
 * ratio to shmem COPY. The hugetlb row needs the huge page pool: it is
 * raised for the run when root and put back at exit.
 */
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "hmmap.h"
#include "core/internal.h"
#include "bench_common.h"
#include "../tests/hugepool.h"
#include "../src/uffd/compat.h"

#define HUGE (2u << 20)

static const char usage[] =
	"usage: bench_frames [--size BYTES] [--runs N] [--reads PAGES]\n"
	"  --size   bytes filled per run (default 256M, a multiple of 2M)\n"
	"  --runs   runs per figure (default 5)\n"
	"  --reads  batch: 4 KiB pages per call (default 64; hugetlb uses 2 MiB)\n";

enum kind { K_COPY, K_PWRITE, K_VIEW, K_ANON, K_MOVE, K_HUGE, K_THP, NKIND };

static const char *const names[NKIND] = {
	"shmem COPY (hmmap's frames)", "shmem pwrite + CONTINUE", "shmem view memcpy + CONTINUE",
	"anon COPY", "anon COPY, MOVE out", "hugetlb COPY (HM_HUGETLB)",
	"tmpfs THP pwrite + CONTINUE",
};

static struct opts O;

static int uffd_open(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	api.features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM |
		       UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_MINOR_HUGETLBFS |
		       UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_UNPOPULATED |
		       UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_MOVE;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* One run: fill and free `size` bytes the `k` way; seconds of each in *fill, *free. */
static int one_run(enum kind k, const char *src, double *fill, double *freed)
{
	size_t size = O.size, batch = k == K_HUGE || k == K_THP ? HUGE : (size_t)O.reads * PG;
	int uffd = uffd_open(), mfd = -1, rc = 0;
	char *p = MAP_FAILED, *q = MAP_FAILED;
	struct uffdio_register reg = { 0 };

	if (uffd < 0)
		return uffd;
	bool anon = k == K_ANON || k == K_MOVE;

	if (anon) {
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		madvise(p, size, MADV_NOHUGEPAGE); /* small folios: what COPY makes, and MOVE needs */
		if (k == K_MOVE) /* the parking range: MOVE wants its target registered too */
			q = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
	} else {
		if (k == K_THP) {
			mfd = hm__thp_tmpfile(); /* the library's own */
			if (mfd < 0) {
				rc = mfd;
				goto out;
			}
		} else {
			mfd = memfd_create("bench-frames",
					   MFD_CLOEXEC | (k == K_HUGE ? MFD_HUGETLB : 0));
		}
		if (mfd < 0 || ftruncate(mfd, (off_t)size)) {
			rc = -errno;
			goto out;
		}
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mfd, 0);
		q = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mfd, 0);
	}
	if (p == MAP_FAILED || (k != K_ANON && q == MAP_FAILED)) {
		rc = -ENOMEM;
		goto out;
	}
	reg.range.start = (uintptr_t)p;
	reg.range.len = size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP |
		   (anon ? 0 : UFFDIO_REGISTER_MODE_MINOR);
	if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		rc = -errno;
		goto out;
	}
	if (k == K_MOVE) {
		struct uffdio_register pr = { .range = { (uintptr_t)q, size },
					      .mode = UFFDIO_REGISTER_MODE_MISSING };
		if (ioctl(uffd, UFFDIO_REGISTER, &pr)) {
			rc = -errno;
			goto out;
		}
	}
	double t0 = now();
	for (size_t off = 0; off < size && !rc; off += batch) {
		struct uffdio_copy c = { .dst = (uintptr_t)p + off, .src = (uintptr_t)src,
					 .len = batch, .mode = UFFDIO_COPY_MODE_WP };
		struct uffdio_continue ct = { .range = { (uintptr_t)p + off, batch },
					      .mode = UFFDIO_CONTINUE_MODE_WP };
		switch (k) {
		case K_COPY:
		case K_ANON:
		case K_MOVE:
		case K_HUGE:
			rc = ioctl(uffd, UFFDIO_COPY, &c) ? -errno : 0;
			break;
		case K_PWRITE:
		case K_THP:
			if (pwrite(mfd, src, batch, (off_t)off) != (ssize_t)batch)
				rc = -EIO;
			else
				rc = ioctl(uffd, UFFDIO_CONTINUE, &ct) ? -errno : 0;
			break;
		case K_VIEW:
			memcpy(q + off, src, batch);
			rc = ioctl(uffd, UFFDIO_CONTINUE, &ct) ? -errno : 0;
			break;
		default:
			rc = -EINVAL;
		}
	}
	double t1 = now();
	if (k == K_VIEW)
		madvise(q, size, MADV_DONTNEED); /* the view's PTEs: part of filling that way */
	double t2 = now();
	for (size_t off = 0; off < size && !rc; off += batch) {
		if (k == K_MOVE) {
			struct uffdio_move mv = { .dst = (uintptr_t)q + off,
						  .src = (uintptr_t)p + off, .len = batch };
			if (ioctl(uffd, UFFDIO_MOVE, &mv))
				rc = -errno;
			else if (q[off] != src[0]) /* the data came along */
				rc = -EIO;
			madvise(q + off, batch, MADV_DONTNEED);
			continue;
		}
		madvise(p + off, batch, MADV_DONTNEED);
		if (mfd >= 0)
			fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				  (off_t)batch);
	}
	double t3 = now();
	*fill = (t1 - t0) + (t2 - t1);
	*freed = t3 - t2;
out:
	if (p != MAP_FAILED)
		munmap(p, size);
	if (q != MAP_FAILED)
		munmap(q, size);
	if (mfd >= 0)
		close(mfd);
	close(uffd);
	return rc;
}

int main(int argc, char **argv)
{
	double fill[NKIND][MAX_RUNS], freed[NKIND][MAX_RUNS], base = 0;
	char why[256] = "";
	int ok[NKIND] = { 0 };

	O.runs = 5;
	O.size = 256ull << 20;
	O.reads = 64;
	parse_opts(&O, argc, argv, usage);
	if (O.size % HUGE || O.reads * PG > HUGE) {
		fputs(usage, stderr);
		return 2;
	}
	print_header("bench_frames: the cost of a frame",
		     "Fill a userfaultfd range from a hot buffer, then free it, in each way a "
		     "user-space page cache\ncan give pages their frames; microseconds per 4 KiB.");
	printf("%llu MiB per run, batches of %llu pages (hugetlb, THP: 2 MiB), %d runs per figure "
	       "(median [min..max])\n\n",
	       (unsigned long long)(O.size >> 20), (unsigned long long)O.reads, O.runs);

	char *src = aligned_alloc(HUGE, HUGE);
	if (!src)
		return 1;
	madvise(src, HUGE, MADV_HUGEPAGE);
	memset(src, 0x5a, HUGE);
	if (tu_hugetlb_pool((long)(O.size / HUGE), why, sizeof why) == 0) {
		/* Reserved pages are backed by the host on first use: touch them once. */
		double f, r;
		one_run(K_HUGE, src, &f, &r);
	}
	/* Kinds take turns, run by run, so that drift in the machine hits all alike. */
	for (int run = 0; run < O.runs; run++)
		for (int k = 0; k < NKIND; k++) {
			if (k == K_HUGE && why[0])
				continue;
			int rc = one_run((enum kind)k, src, &fill[k][run], &freed[k][run]);
			if (rc) {
				if (!why[0] || k != K_HUGE)
					printf("  %s: %s\n", names[k], strerror(-rc));
				ok[k] = -1;
			} else if (ok[k] >= 0) {
				ok[k]++;
			}
		}
	double pages = (double)(O.size / PG);
	printf("  %-32s %22s %22s %8s\n", "frames", "fill us/4K", "free us/4K", "total");
	for (int k = 0; k < NKIND; k++) {
		if (ok[k] != O.runs) {
			printf("  %-32s %22s\n", names[k], k == K_HUGE && why[0] ? "(not run)" : "(failed)");
			continue;
		}
		double fu[MAX_RUNS], ru[MAX_RUNS], tot;
		for (int i = 0; i < O.runs; i++) {
			fu[i] = fill[k][i] / pages * 1e6;
			ru[i] = freed[k][i] / pages * 1e6;
		}
		tot = median(fu, O.runs) + median(ru, O.runs);
		if (k == K_COPY)
			base = tot;
		printf("  %-32s %6.3f [%.3f..%.3f] %6.3f [%.3f..%.3f] %7.2fx\n", names[k],
		       median(fu, O.runs), vmin(fu, O.runs), vmax(fu, O.runs), median(ru, O.runs),
		       vmin(ru, O.runs), vmax(ru, O.runs), base > 0 ? tot / base : 0);
	}
	if (why[0])
		printf("  hugetlb not run: %s\n", why);
	printf("  Explanation: 'total' is fill + free as a multiple of shmem COPY's (lower is "
	       "cheaper). Every miss of a\n  cached region pays shmem COPY's fill and, at "
	       "eviction, its free; HM_HUGETLB regions pay the hugetlb row,\n  other regions of "
	       "2 MiB pages the THP row when root (HMMAP_THP_FRAMES). A huge page the VM's host\n  "
	       "has not backed yet (the guest gives free huge pages back to it) costs several us per "
	       "4 KiB the\n  first time: the THP row's range. anon cannot keep a frame's data across a zap, "
	       "which eviction and\n  sampling need; moving the pages out first (UFFDIO_MOVE) keeps "
	       "it, for write-back, at the cost\n  the 'MOVE out' row shows.\n");
	free(src);
	return 0;
}
