/* SPDX-License-Identifier: MIT */
/*
 * In-memory fault service: how many first touches per second hmmap serves
 * when the data is already in RAM (store mem:, a cache that never evicts),
 * beside the cheapest possible userfaultfd program and the kernel's own
 * minor faults, all measured in this run.
 *
 *   random   every 4 KiB page of the range touched once, in a random order,
 *            by 1 and 2 threads (each thread owns a slice of the range):
 *              hmmap, HMMAP_FAULT_MODE=thread and =sigbus (a child process
 *                each: the mode is process-wide and fixed at first use);
 *              bare userfaultfd: an anonymous mapping registered MISSING,
 *                a handler thread per faulting thread doing UFFDIO_COPY of
 *                4 KiB from a source buffer; and the SIGBUS variant
 *                (UFFD_FEATURE_SIGBUS, the copy done in the SIGBUS handler);
 *              kernel minor faults on a cached file (tmpfs), MAP_SHARED,
 *                with MADV_RANDOM and without it; the minor-fault count
 *                printed beside says how many pages one fault mapped
 *                (fault-around may map up to 16, usually it maps one).
 *   seq      sequential first touch of every 4 KiB with region page sizes
 *            4K, 64K, 256K and 2M (hmmap's default readahead on), beside
 *            the kernel's fault-around.
 *
 * Each touch reads the first word of the page and checks it against the
 * generator, so a run that resolves faults with wrong data reports failure
 * instead of a figure. Not a pass/fail test: targets are printed beside.
 */
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "hmmap.h"
#include "bench_common.h"
#include "../tests/hugepool.h"

#define TARGET_RATIO 0.8
#define TARGET_2T 250e3
#define TARGET_SEQ 2e6

static const char usage[] =
	"usage: bench_fault [--threads 1,2] [--runs 5] [--size 256M] [--cache SIZE]\n"
	"                   [--file /dev/shm/hmmap-bench-fault.dat] [--quick]\n"
	"  --threads  thread counts to measure (comma list)\n"
	"  --runs     runs per figure; the median is printed\n"
	"  --size     bytes touched per run (one fault per 4 KiB)\n"
	"  --cache    hmmap cache budget (default 2x size: nothing is evicted)\n"
	"  --file     the cached file for the kernel minor-fault baseline\n"
	"  --quick    a short smoke run (16M, 3 runs)\n"
	"  --only rand|seq  with --child hmmap-thread|hmmap-sigbus: one part of one\n"
	"             mode, in this process (for perf record)\n";

static struct opts O;
static const size_t seq_ps[] = { 4096, 64 << 10, 256 << 10, 2 << 20 };
#define NSEQ (sizeof seq_ps / sizeof seq_ps[0])

/* ------------------------------------------------------------ touching */

struct touch {
	char *base;
	uint64_t npages;  /* 4 KiB pages in the range */
	uint32_t **perm;  /* per-thread random order of its slice, or NULL */
};

static void *touch_fn(void *arg)
{
	struct worker *w = arg;
	struct touch *t = w->arg;
	uint64_t lo = t->npages * (uint64_t)w->id / (uint64_t)w->n;
	uint64_t hi = t->npages * (uint64_t)(w->id + 1) / (uint64_t)w->n;
	uint32_t *perm = t->perm ? t->perm[w->id] : NULL;
	uint64_t bad = 0;
	struct rusage u0, u1;

	worker_start(w);
	getrusage(RUSAGE_THREAD, &u0);
	for (uint64_t i = 0; i < hi - lo; i++) {
		uint64_t p = lo + (perm ? perm[i] : i);
		if (*(volatile uint64_t *)(t->base + p * PG) != gen(p))
			bad++;
	}
	w->t_end = now();
	getrusage(RUSAGE_THREAD, &u1);
	w->minflt = (uint64_t)(u1.ru_minflt - u0.ru_minflt);
	w->done = hi - lo;
	w->bad = bad;
	return NULL;
}

/* Per-thread permutations of each slice, the same for every system. */
static uint32_t **make_perms(uint64_t npages, int n, unsigned run)
{
	uint32_t **perm = calloc((size_t)n, sizeof *perm);

	for (int t = 0; t < n; t++) {
		uint64_t lo = npages * (uint64_t)t / (uint64_t)n;
		uint64_t cnt = npages * (uint64_t)(t + 1) / (uint64_t)n - lo;
		uint64_t s = seed_of(run, (unsigned)t);
		perm[t] = malloc(cnt * sizeof **perm);
		for (uint64_t i = 0; i < cnt; i++)
			perm[t][i] = (uint32_t)i;
		for (uint64_t i = cnt; i > 1; i--) {
			uint64_t j = xs64(&s) % i;
			uint32_t x = perm[t][i - 1];
			perm[t][i - 1] = perm[t][j];
			perm[t][j] = x;
		}
	}
	return perm;
}

static void free_perms(uint32_t **perm, int n)
{
	for (int t = 0; t < n; t++)
		free(perm[t]);
	free(perm);
}

static uint64_t last_minflt; /* minor faults of the last touch_range() */

/* Touches [base, base+size) with n threads; returns pages/s, adds to *bad. */
static double touch_range(char *base, uint64_t size, int n, uint32_t **perm, uint64_t *bad)
{
	struct worker w[MAX_THREADS];
	struct touch t = { .base = base, .npages = size / PG, .perm = perm };
	double dt = run_threads(n, touch_fn, &t, w);
	uint64_t done = 0;

	last_minflt = 0;
	for (int i = 0; i < n; i++) {
		done += w[i].done;
		*bad += w[i].bad;
		last_minflt += w[i].minflt;
	}
	return (double)done / dt;
}

/* ------------------------------------------------ bare userfaultfd loop */

static struct {
	int uffd;
	char *dst;
	const char *src;
	uint64_t len;
	int sigbus;
} bare;

static int open_uffd(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd < 0) /* unprivileged: user-mode faults are all this bench makes */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* Copies the source page for addr into place. 0, or -errno. */
static int bare_resolve(uintptr_t addr)
{
	uintptr_t pa = addr & ~(uintptr_t)(PG - 1);
	struct uffdio_copy c = {
		.dst = pa,
		.src = (uintptr_t)(bare.src + (pa - (uintptr_t)bare.dst)),
		.len = PG,
		.mode = 0,
	};

	if (ioctl(bare.uffd, UFFDIO_COPY, &c) == 0)
		return 0;
	if (errno == EEXIST) {
		/* Someone else resolved it; a sleeping faulter still needs a wake. */
		struct uffdio_range r = { .start = pa, .len = PG };
		if (!bare.sigbus)
			ioctl(bare.uffd, UFFDIO_WAKE, &r);
		return 0;
	}
	return -errno;
}

static void *bare_handler(void *arg)
{
	struct uffd_msg m[16];

	(void)arg;
	for (;;) {
		ssize_t n = read(bare.uffd, m, sizeof m);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fprintf(stderr, "bare handler: read: %s\n", strerror(errno));
			return NULL;
		}
		for (ssize_t i = 0; i < n / (ssize_t)sizeof m[0]; i++)
			if (m[i].event == UFFD_EVENT_PAGEFAULT &&
			    bare_resolve((uintptr_t)m[i].arg.pagefault.address)) {
				fprintf(stderr, "bare handler: UFFDIO_COPY: %s\n", strerror(errno));
				abort();
			}
	}
}

static void bare_on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;

	(void)sig;
	(void)uc;
	if (a >= (uintptr_t)bare.dst && a < (uintptr_t)bare.dst + bare.len &&
	    bare_resolve(a) == 0)
		return;
	signal(SIGBUS, SIG_DFL); /* not ours: the retried access kills */
}

/* Random first touches through the bare loop; rates[run] in faults/s. */
static int bare_bench(int sigbus, int nthr, uint64_t size, const char *src, double *rates,
		      uint64_t *bad)
{
	pthread_t h[MAX_THREADS];
	int nh = sigbus ? 0 : nthr;
	struct sigaction sa, old;

	bare.uffd = open_uffd(sigbus ? UFFD_FEATURE_SIGBUS : 0);
	if (bare.uffd < 0)
		return bare.uffd;
	bare.src = src;
	bare.len = size;
	bare.sigbus = sigbus;
	if (sigbus) {
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = bare_on_sigbus;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigaction(SIGBUS, &sa, &old);
	}
	for (int i = 0; i < nh; i++)
		pthread_create(&h[i], NULL, bare_handler, NULL);
	for (int run = 0; run < O.runs; run++) {
		uint32_t **perm = make_perms(size / PG, nthr, (unsigned)run);
		struct uffdio_register reg;

		bare.dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				-1, 0);
		if (bare.dst == MAP_FAILED)
			return -errno;
		reg = (struct uffdio_register){
			.range = { .start = (uintptr_t)bare.dst, .len = size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(bare.uffd, UFFDIO_REGISTER, &reg))
			return -errno;
		rates[run] = touch_range(bare.dst, size, nthr, perm, bad);
		munmap(bare.dst, size);
		free_perms(perm, nthr);
	}
	for (int i = 0; i < nh; i++) {
		pthread_cancel(h[i]);
		pthread_join(h[i], NULL);
	}
	if (sigbus)
		sigaction(SIGBUS, &old, NULL);
	close(bare.uffd);
	return 0;
}

/* --------------------------------------------- kernel minor-fault baseline */

/* Touches of a cached file's pages, mapped afresh each run. */
static int kernel_bench(const char *path, int advice, int nthr, int seq, uint64_t size,
			double *rates, uint64_t *bad, double *faults)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -errno;
	for (int run = 0; run < O.runs; run++) {
		uint32_t **perm = seq ? NULL : make_perms(size / PG, nthr, (unsigned)run);
		char *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			close(fd);
			return -errno;
		}
		if (advice)
			madvise(p, size, advice);
		rates[run] = touch_range(p, size, nthr, perm, bad);
		faults[run] = (double)last_minflt;
		munmap(p, size);
		if (perm)
			free_perms(perm, nthr);
	}
	close(fd);
	return 0;
}

/* ------------------------------------------------------- hmmap (child) */

static int die_hm(const char *what, int rc)
{
	printf("%s: %s (%s)\n", what, strerror(-rc), hm_errormsg());
	return 1;
}

static int child_main(void)
{
	const char *mode = O.child; /* "hmmap-thread" or "hmmap-sigbus" */
	struct hm_store *st;
	struct hm_cache *c;
	struct hm_region *r;
	struct hm_stats s0, s1;
	char uri[64], key[96];
	double rates[MAX_RUNS], badv[1];
	int rc, fm = hm_fault_mode();
	const char *want = strstr(mode, "sigbus") ? "sigbus" : "thread";

	if (fm < 0)
		return die_hm("hm_fault_mode", fm);
	if ((fm == HM_FAULT_SIGBUS) != !strcmp(want, "sigbus")) {
		printf("fault mode is %d, not %s\n", fm, want);
		return 1;
	}
	snprintf(uri, sizeof uri, "mem:%llu", (unsigned long long)O.size);
	if ((rc = hm_store_open(&st, uri, 0)))
		return die_hm("hm_store_open", rc);
	if ((rc = hm_cache_new(&c, O.cache, NULL)))
		return die_hm("hm_cache_new", rc);

	/* Fill the store with the generator through a writable region. */
	if ((rc = hm_region_map(&r, c, st, 0, O.size, PROT_READ | PROT_WRITE, HM_CACHED,
				O.size % (2 << 20) ? 4096 : (2 << 20))))
		return die_hm("hm_region_map (fill)", rc);
	for (uint64_t p = 0; p < O.size / PG; p++)
		*(uint64_t *)((char *)hm_region_addr(r) + p * PG) = gen(p);
	if ((rc = hm_region_unmap(r)))
		return die_hm("hm_region_unmap (fill)", rc);

	for (int ti = 0; ti < O.nthreads && (!O.only || !strcmp(O.only, "rand")); ti++) {
		int n = O.threads[ti];
		uint64_t bad = 0, faults = 0, evict = 0;

		for (int run = 0; run < O.runs; run++) {
			uint32_t **perm = make_perms(O.size / PG, n, (unsigned)run);
			if ((rc = hm_region_map(&r, c, st, 0, O.size, PROT_READ, HM_CACHED, 4096)))
				return die_hm("hm_region_map", rc);
			hm_advise(hm_region_addr(r), O.size, HM_ADV_RANDOM);
			hm_cache_stats(c, &s0);
			rates[run] = touch_range(hm_region_addr(r), O.size, n, perm, &bad);
			hm_cache_stats(c, &s1);
			faults += s1.faults_missing - s0.faults_missing;
			evict += s1.evictions - s0.evictions;
			if ((rc = hm_region_unmap(r)))
				return die_hm("hm_region_unmap", rc);
			free_perms(perm, n);
		}
		snprintf(key, sizeof key, "%s.rand.%d", mode, n);
		res_emit(key, rates, O.runs);
		snprintf(key, sizeof key, "%s.rand.%d.bad", mode, n);
		badv[0] = (double)bad;
		res_emit(key, badv, 1);
		snprintf(key, sizeof key, "%s.rand.%d.faults_per_run", mode, n);
		badv[0] = (double)faults / O.runs;
		res_emit(key, badv, 1);
		snprintf(key, sizeof key, "%s.rand.%d.evictions", mode, n);
		badv[0] = (double)evict;
		res_emit(key, badv, 1);
	}

	/* The last pass: 2 MiB pages with frames from the huge page pool. */
	for (size_t k = 0; k <= NSEQ; k++) {
		size_t ps = k < NSEQ ? seq_ps[k] : (2 << 20);
		int flags = k < NSEQ ? HM_CACHED : HM_CACHED | HM_HUGETLB;
		const char *sfx = k < NSEQ ? "" : ".hugetlb";
		if (O.size % ps || (O.only && strcmp(O.only, "seq")))
			continue;
		if ((flags & HM_HUGETLB) && tu_hugetlb_free() < (long)(O.size / ps))
			continue; /* the parent said why */
		for (int ti = 0; ti < O.nthreads; ti++) {
			int n = O.threads[ti];
			uint64_t bad = 0, faults = 0;
			for (int run = 0; run < O.runs; run++) {
				if ((rc = hm_region_map(&r, c, st, 0, O.size, PROT_READ, flags,
							ps)))
					return die_hm("hm_region_map", rc);
				hm_cache_stats(c, &s0);
				rates[run] = touch_range(hm_region_addr(r), O.size, n, NULL, &bad);
				hm_cache_stats(c, &s1);
				faults += s1.faults_missing - s0.faults_missing;
				if ((rc = hm_region_unmap(r)))
					return die_hm("hm_region_unmap", rc);
			}
			snprintf(key, sizeof key, "%s.seq.%zu%s.%d", mode, ps >> 10, sfx, n);
			res_emit(key, rates, O.runs);
			snprintf(key, sizeof key, "%s.seq.%zu%s.%d.bad", mode, ps >> 10, sfx, n);
			badv[0] = (double)bad;
			res_emit(key, badv, 1);
			snprintf(key, sizeof key, "%s.seq.%zu%s.%d.faults_per_run", mode, ps >> 10,
				 sfx, n);
			badv[0] = (double)faults / O.runs;
			res_emit(key, badv, 1);
		}
	}
	hm_cache_free(c);
	hm_store_close(st);
	return 0;
}

/* -------------------------------------------------------------- report */

static struct results R;
static char huge_why[256]; /* why the HM_HUGETLB rows did not run */

static void put(const char *key, double *rates, uint64_t bad)
{
	char k[96];

	for (int i = 0; i < O.runs; i++)
		res_add(&R, key, rates[i]);
	snprintf(k, sizeof k, "%s.bad", key);
	res_add(&R, k, (double)bad);
}

/* One table row: median [min..max], ratio to a baseline key, target. */
static void row(const char *label, const char *key, const char *base, const char *target)
{
	char k[96], med[32], lo[32], hi[32], ratio[32];
	double m = res_med(&R, key), b = base ? res_med(&R, base) : -1;
	int i;

	snprintf(k, sizeof k, "%s.bad", key);
	for (i = 0; i < R.n && strcmp(R.e[i].key, key); i++)
		;
	if (i == R.n) {
		printf("  %-40s %12s\n", label, "(not run)");
		return;
	}
	if (res_med(&R, k) > 0) {
		printf("  %-40s %12s   %.0f pages had wrong contents: no figure\n", label,
		       "VERIFY FAIL", res_max(&R, k));
		return;
	}
	fmt_rate(med, sizeof med, m);
	fmt_rate(lo, sizeof lo, vmin(R.e[i].v, R.e[i].nv));
	fmt_rate(hi, sizeof hi, vmax(R.e[i].v, R.e[i].nv));
	fmt_ratio(ratio, sizeof ratio, m, b);
	printf("  %-40s %10s/s  [%s..%s]  %8s  %s\n", label, med, lo, hi, base ? ratio : "",
	       target ? target : "");
}

int main(int argc, char **argv)
{
	char *src;
	double rates[MAX_RUNS], kf[MAX_RUNS];
	char key[96], lab[96], tgt[96];
	const char *file;
	char lfile[4096];
	uint64_t bad;
	int rc;

	O.runs = 5;
	O.size = 256ull << 20;
	parse_threads(&O, "1,2");
	parse_opts(&O, argc, argv, usage);
	if (O.quick) {
		if (!O.size_set)
			O.size = 16ull << 20;
		if (!O.runs_set)
			O.runs = 3;
	}
	O.size &= ~(PG - 1);
	if (!O.cache_set)
		O.cache = 2 * O.size;
	file = O.file ? O.file : "/dev/shm/hmmap-bench-fault.dat";
	if (O.child)
		return child_main();

	print_header("bench_fault: in-memory fault service",
		     "First touches of pages whose data is already in RAM: hmmap (store mem:, a "
		     "cache that never evicts)\nbeside a bare userfaultfd loop and the kernel's "
		     "own minor faults, all in this run.");
	printf("size %llu MiB per run (%llu faults of 4 KiB), hmmap cache %llu MiB, %d runs per "
	       "figure (median [min..max])\n\n",
	       (unsigned long long)(O.size >> 20), (unsigned long long)(O.size / PG),
	       (unsigned long long)(O.cache >> 20), O.runs);

	/* Source data for the bare loop, and the cached file for the kernel. */
	src = aligned_alloc(PG, O.size);
	if (!src)
		return 1;
	for (uint64_t p = 0; p < O.size / PG; p++)
		fill_page(src + p * PG, p);
	snprintf(lfile, sizeof lfile, "%s.large", file);
	if ((rc = ensure_file_chunk(file, O.size, PG)) ||
	    (rc = ensure_file_chunk(lfile, O.size, 1 << 20))) {
		printf("cannot create %s: %s\n", file, strerror(-rc));
		return 1;
	}
	{ /* make sure it is cached (tmpfs always is) */
		int fd = open(file, O_RDONLY);
		char *b = malloc(1 << 20);
		while (fd >= 0 && read(fd, b, 1 << 20) > 0)
			;
		free(b);
		if (fd >= 0)
			close(fd);
	}

	for (int ti = 0; ti < O.nthreads; ti++) {
		int n = O.threads[ti];
		bad = 0;
		if ((rc = bare_bench(0, n, O.size, src, rates, &bad)) == 0) {
			snprintf(key, sizeof key, "bare-thread.rand.%d", n);
			put(key, rates, bad);
		} else {
			printf("bare userfaultfd (thread): %s\n", strerror(-rc));
		}
		bad = 0;
		if ((rc = bare_bench(1, n, O.size, src, rates, &bad)) == 0) {
			snprintf(key, sizeof key, "bare-sigbus.rand.%d", n);
			put(key, rates, bad);
		} else {
			printf("bare userfaultfd (sigbus): %s\n", strerror(-rc));
		}
		bad = 0;
		for (int k = 0; k < 4; k++) {
			static const char *const kn[] = { "kernel-random.rand", "kernel-around.rand",
							  "kernel-around.seq", "kernel-large.rand" };
			bad = 0;
			if (kernel_bench(k == 3 ? lfile : file, k == 0 || k == 3 ? MADV_RANDOM : 0,
					 n, k == 2, O.size, rates, &bad, kf))
				continue;
			snprintf(key, sizeof key, "%s.%d", kn[k], n);
			put(key, rates, bad);
			snprintf(key, sizeof key, "%s.%d.faults_per_run", kn[k], n);
			for (int i = 0; i < O.runs; i++)
				res_add(&R, key, kf[i]);
		}
	}
	free(src);
	/* Room for one region of 2 MiB frames; given back when this process exits. */
	tu_hugetlb_pool((long)(O.size >> 21), huge_why, sizeof huge_why);
	run_child(&O, "hmmap-thread", "thread", &R);
	run_child(&O, "hmmap-sigbus", "sigbus", &R);

	printf("\n-- random 4 KiB first touches: faults/s, median [min..max]; ratio column = "
	       "hmmap / bare loop of the same mode\n");
	for (int ti = 0; ti < O.nthreads; ti++) {
		int n = O.threads[ti];
		char tb[64], ts[64];
		printf(" %d thread%s:\n", n, n > 1 ? "s" : "");
		snprintf(tb, sizeof tb, "bare-thread.rand.%d", n);
		snprintf(ts, sizeof ts, "bare-sigbus.rand.%d", n);
		snprintf(tgt, sizeof tgt, "target >= %.1fx%s", TARGET_RATIO,
			 n >= 2 ? ", >= 250k/s" : "");
		row("bare uffd, handler thread, COPY 4K", tb, NULL, NULL);
		snprintf(key, sizeof key, "hmmap-thread.rand.%d", n);
		row("hmmap HMMAP_FAULT_MODE=thread", key, tb, tgt);
		row("bare uffd, SIGBUS handler, COPY 4K", ts, NULL, NULL);
		snprintf(key, sizeof key, "hmmap-sigbus.rand.%d", n);
		row("hmmap HMMAP_FAULT_MODE=sigbus", key, ts, tgt);
		snprintf(key, sizeof key, "kernel-random.rand.%d", n);
		snprintf(lab, sizeof lab, "kernel minor, MADV_RANDOM");
		row(lab, key, NULL, NULL);
		snprintf(key, sizeof key, "kernel-around.rand.%d", n);
		row("kernel minor, no MADV_RANDOM", key, NULL, NULL);
		snprintf(key, sizeof key, "kernel-large.rand.%d", n);
		row("kernel minor, 1M writes, MADV_RANDOM", key, NULL, NULL);
		snprintf(key, sizeof key, "hmmap-thread.rand.%d.faults_per_run", n);
		snprintf(lab, sizeof lab, "hmmap-sigbus.rand.%d.faults_per_run", n);
		printf("    faults per run (%llu pages): hmmap thread %.0f, sigbus %.0f (missing "
		       "faults);",
		       (unsigned long long)(O.size / PG), res_med(&R, key), res_med(&R, lab));
		snprintf(key, sizeof key, "kernel-random.rand.%d.faults_per_run", n);
		snprintf(lab, sizeof lab, "kernel-around.rand.%d.faults_per_run", n);
		printf("\n      kernel minflt: MADV_RANDOM %.0f, without %.0f, ", res_med(&R, key),
		       res_med(&R, lab));
		snprintf(key, sizeof key, "kernel-large.rand.%d.faults_per_run", n);
		printf("1M writes %.0f\n", res_med(&R, key));
	}
	printf("  Explanation: each figure is pages first-touched per second over all threads. "
	       "Bare loops are the floor cost\n  of userfaultfd in that service model. Kernel rows "
	       "are minor faults on a tmpfs file written in 4 KiB\n  pieces, with and without "
	       "MADV_RANDOM; the '1M writes' row is the same on a file written in\n  1 MiB "
	       "pieces, which gets large folios where tmpfs allows them (shmem_enabled). The minflt "
	       "line\n  says how many pages one kernel fault mapped: 65536 faults is one page per "
	       "fault, the in-kernel\n  bar; fewer means fault-around or large folios mapped "
	       "several. hmmap regions use HM_ADV_RANDOM\n  (one page per fault).\n");

	printf("\n-- sequential first touch (one word per 4 KiB): pages/s, median [min..max]; "
	       "target >= 2M pages/s for >= 64K pages\n");
	for (int ti = 0; ti < O.nthreads; ti++) {
		int n = O.threads[ti];
		printf(" %d thread%s:\n", n, n > 1 ? "s" : "");
		snprintf(key, sizeof key, "kernel-around.seq.%d", n);
		row("kernel minor, fault-around", key, NULL, NULL);
		snprintf(key, sizeof key, "kernel-around.seq.%d.faults_per_run", n);
		printf("    kernel minor faults per run: %.0f\n", res_med(&R, key));
		for (int m = 0; m < 2; m++) {
			const char *mode = m ? "hmmap-sigbus" : "hmmap-thread";
			for (size_t k = 0; k < NSEQ; k++) {
				snprintf(key, sizeof key, "%s.seq.%zu.%d", mode, seq_ps[k] >> 10, n);
				snprintf(lab, sizeof lab, "%s, page %zuK", mode, seq_ps[k] >> 10);
				snprintf(tgt, sizeof tgt, "%s",
					 seq_ps[k] >= (64 << 10) ? "target >= 2M/s" : "");
				row(lab, key, NULL, tgt);
			}
			snprintf(key, sizeof key, "%s.seq.2048.hugetlb.%d", mode, n);
			snprintf(lab, sizeof lab, "%s, page 2048K, HM_HUGETLB", mode);
			row(lab, key, NULL, "target >= 2M/s");
		}
	}
	if (huge_why[0])
		printf("  HM_HUGETLB rows not run: %s\n", huge_why);
	printf("  Explanation: pages are 4 KiB units touched per second; hmmap faults once per "
	       "region page (or per readahead\n  window: default advice, HMMAP_READAHEAD up to "
	       "1M), so larger pages amortise the fault delivery.\n  Shmem frames cost about "
	       "2 us per 4 KiB to fill whatever the page size, except the 2048K rows as root,\n  "
	       "whose frames are transparent huge pages of a private tmpfs (HMMAP_THP_FRAMES=0 "
	       "turns them off)\n  but still mapped by 512 PTEs; HM_HUGETLB rows take 2 MiB\n  "
	       "frames from the huge page pool (vm.nr_hugepages, raised for the run when root): "
	       "one copy, 0.4 us per 4 KiB.\n  The first run on freshly reserved huge pages is "
	       "slower in a VM (the host backs the memory on first use).\n");
	return 0;
}
