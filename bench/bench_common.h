/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the benchmark programs: options, timing, medians, the
 * content generator that every benchmark verifies against, the data file,
 * dropping the kernel's caches, resident-memory sampling, and running one
 * configuration in a re-executed child (the fault mode of hmmap is
 * process-wide and fixed at first use, so each mode gets its own process).
 *
 * Child protocol: a child prints lines "R KEY V1 V2 ..." (one value per run)
 * which the parent collects by key; any other line is echoed by the parent,
 * indented, so that notes and errors of the child stay visible.
 *
 * Everything here is static inline so that a benchmark uses what it needs
 * without unused-function warnings.
 */
#ifndef HM_BENCH_COMMON_H
#define HM_BENCH_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096ull
#define MAX_RUNS 64
#define MAX_THREADS 64
#define MAX_KEYS 128

/* ---------------------------------------------------------------- time */

static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static inline double median(const double *v, int n)
{
	double s[MAX_RUNS];

	if (n <= 0)
		return 0;
	memcpy(s, v, (size_t)n * sizeof *s);
	qsort(s, (size_t)n, sizeof *s, cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The middle of n latency samples (sorted in place; any n, unlike median()). */
static inline double p50(double *v, int n)
{
	if (n <= 0)
		return 0;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[n / 2];
}

static inline double vmin(const double *v, int n)
{
	double m = n ? v[0] : 0;
	for (int i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static inline double vmax(const double *v, int n)
{
	double m = n ? v[0] : 0;
	for (int i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

/* ------------------------------------------------------- content, rng */

/*
 * The first 8-byte word of 4 KiB page p of every data set. Never zero, so a
 * page of zeros (a fault resolved with nothing) never verifies.
 */
static inline uint64_t gen(uint64_t p)
{
	uint64_t x = (p + 1) * 0x9E3779B97F4A7C15ull;

	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	return x | 1;
}

/* Fills one 4 KiB page: word 0 is gen(p), the rest non-zero filler. */
static inline void fill_page(void *dst, uint64_t p)
{
	uint64_t *w = dst;

	w[0] = gen(p);
	for (unsigned i = 1; i < PG / 8; i++)
		w[i] = 0x5a5a5a5a00000000ull | (p << 9) | i;
}

static inline uint64_t xs64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static inline uint64_t seed_of(unsigned run, unsigned thread)
{
	uint64_t s = gen(((uint64_t)run << 20) ^ thread ^ 0x1234567);
	return s ? s : 1;
}

/* ------------------------------------------------------------ options */

struct opts {
	int threads[16];
	int nthreads;
	int runs;
	uint64_t size;
	uint64_t cache;
	uint64_t reads;
	const char *file;
	int quick;
	const char *child; /* internal: --child MODE */
	const char *only;  /* --only PART: run one part (for profiling) */
	int argc;
	char **argv;
	int size_set, cache_set, runs_set, reads_set, threads_set;
};

static inline int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	case 't': case 'T': v <<= 40; end++; break;
	default: break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static inline int parse_threads(struct opts *o, const char *s)
{
	char buf[128], *save = NULL, *tok;

	snprintf(buf, sizeof buf, "%s", s);
	o->nthreads = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		long v = strtol(tok, NULL, 10);
		if (v < 1 || v > MAX_THREADS || o->nthreads == 16)
			return -1;
		o->threads[o->nthreads++] = (int)v;
	}
	return o->nthreads ? 0 : -1;
}

/*
 * Parses the common options. `usage` is printed for --help and on errors.
 * Returns 0, or exits (a benchmark is a program; exiting on bad options is
 * what its user expects).
 */
static inline void parse_opts(struct opts *o, int argc, char **argv, const char *usage)
{
	static const struct option lo[] = {
		{ "threads", required_argument, NULL, 't' },
		{ "runs", required_argument, NULL, 'r' },
		{ "size", required_argument, NULL, 's' },
		{ "cache", required_argument, NULL, 'c' },
		{ "file", required_argument, NULL, 'f' },
		{ "reads", required_argument, NULL, 'n' },
		{ "quick", no_argument, NULL, 'q' },
		{ "child", required_argument, NULL, 'C' },
		{ "only", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->argc = argc;
	o->argv = argv;
	while ((c = getopt_long(argc, argv, "t:r:s:c:f:n:qh", lo, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_threads(o, optarg))
				goto bad;
			o->threads_set = 1;
			break;
		case 'r':
			o->runs = atoi(optarg);
			if (o->runs < 1 || o->runs > MAX_RUNS)
				goto bad;
			o->runs_set = 1;
			break;
		case 's':
			if (parse_size(optarg, &o->size) || o->size < PG)
				goto bad;
			o->size_set = 1;
			break;
		case 'c':
			if (parse_size(optarg, &o->cache) || o->cache < PG)
				goto bad;
			o->cache_set = 1;
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'n':
			if (parse_size(optarg, &o->reads) || !o->reads)
				goto bad;
			o->reads_set = 1;
			break;
		case 'q':
			o->quick = 1;
			break;
		case 'C':
			o->child = optarg;
			break;
		case 'O':
			o->only = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (optind != argc)
		goto bad;
	return;
bad:
	fputs(usage, stderr);
	exit(2);
}

/* ------------------------------------------------------ machine facts */

static inline void read_line(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");

	buf[0] = 0;
	if (!f)
		return;
	if (fgets(buf, (int)n, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

/* "vda (rotational 0, scheduler [none] mq-deadline)" for the device holding path. */
static inline void disk_of(const char *path, char *out, size_t n)
{
	struct stat st;
	char p[512], name[256] = "?", rot[16] = "?", sched[128] = "?", line[256];
	FILE *f;

	snprintf(out, n, "unknown device");
	if (stat(path, &st))
		return;
	snprintf(p, sizeof p, "/sys/dev/block/%u:%u/uevent", major(st.st_dev), minor(st.st_dev));
	f = fopen(p, "r");
	if (f) {
		while (fgets(line, sizeof line, f))
			if (!strncmp(line, "DEVNAME=", 8)) {
				line[strcspn(line, "\n")] = 0;
				snprintf(name, sizeof name, "%s", line + 8);
			}
		fclose(f);
	}
	snprintf(p, sizeof p, "/sys/class/block/%s/queue/rotational", name);
	read_line(p, rot, sizeof rot);
	snprintf(p, sizeof p, "/sys/class/block/%s/queue/scheduler", name);
	read_line(p, sched, sizeof sched);
	snprintf(out, n, "/dev/%s (%u:%u, rotational %s, scheduler %s)", name, major(st.st_dev),
		 minor(st.st_dev), rot, sched);
}

static inline void print_header(const char *title, const char *what)
{
	struct utsname u;
	char model[256] = "?", line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	if (f) {
		while (fgets(line, sizeof line, f))
			if (!strncmp(line, "model name", 10)) {
				char *c = strchr(line, ':');
				if (c) {
					snprintf(model, sizeof model, "%s", c + 2);
					model[strcspn(model, "\n")] = 0;
				}
				break;
			}
		fclose(f);
	}
	char load[128];

	read_line("/proc/loadavg", load, sizeof load);
	uname(&u);
	printf("== %s\n%s\n", title, what);
	printf("machine: nproc %ld, kernel %s %s, cpu %s, RAM %.1f GiB, uid %d\n",
	       sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, model,
	       (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1 << 30),
	       (int)geteuid());
	printf("load average at start: %s (other work on the machine makes figures noisy)\n",
	       load);
	fflush(stdout);
}

/* --------------------------------------------------- kernel page cache */

/* 0 when the caches were dropped; -1 (with a note once) when not root. */
static inline int drop_caches(void)
{
	static int warned;
	int fd;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0 || write(fd, "3\n", 2) != 2) {
		if (!warned++)
			printf("NOTE: cannot drop the kernel caches (%s): not root? Figures "
			       "for 'cold' runs are warm.\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Resident set of this process in bytes (/proc/self/statm). */
static inline uint64_t rss_bytes(void)
{
	char buf[128];
	unsigned long size = 0, res = 0;
	int fd = open("/proc/self/statm", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	sscanf(buf, "%lu %lu", &size, &res);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------ data file */

static inline int file_ok(int fd, uint64_t size)
{
	uint64_t w, np = size / PG;

	for (uint64_t i = 0; i < 64; i++) {
		uint64_t p = i == 63 ? np - 1 : (gen(i) % np);
		if (pread(fd, &w, 8, (off_t)(p * PG)) != 8 || w != gen(p))
			return 0;
	}
	return 1;
}

/*
 * Makes sure `path` holds `size` bytes of generator content: reused when its
 * size and a sample of pages match, otherwise (re)written and fsync'ed.
 * Returns 0 or -errno. `chunk` is the write size: on tmpfs it decides the
 * folio size (4 KiB writes make 4 KiB folios, so that each later fault maps
 * one page, as on a file system without large folios).
 */
static inline int ensure_file_chunk(const char *path, uint64_t size, size_t chunk)
{
	struct stat st;
	char *buf;
	int fd;
	double t0;

	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		if (!fstat(fd, &st) && (uint64_t)st.st_size == size && file_ok(fd, size)) {
			close(fd);
			return 0;
		}
		close(fd);
	}
	printf("creating %s (%.0f MiB of generator content, %zu-byte writes) ...\n", path,
	       (double)size / (1 << 20), chunk);
	unlink(path);
	fflush(stdout);
	t0 = now();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	buf = aligned_alloc(PG, chunk);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
		for (size_t o = 0; o < len; o += PG)
			fill_page(buf + o, (off + o) / PG);
		if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
			int e = -errno;
			free(buf);
			close(fd);
			return e ? e : -EIO;
		}
	}
	free(buf);
	if (fsync(fd)) {
		int e = -errno;
		close(fd);
		return e;
	}
	close(fd);
	printf("  written in %.1f s\n", now() - t0);
	return 0;
}

static inline int ensure_file(const char *path, uint64_t size)
{
	return ensure_file_chunk(path, size, 1 << 20);
}

/* ------------------------------------------------------------- threads */

struct worker {
	int id, n;
	pthread_barrier_t *bar;
	void *arg;       /* the benchmark's shared state */
	uint64_t done;   /* operations done */
	uint64_t bad;    /* verification failures */
	uint64_t minflt; /* minor faults of this thread (RUSAGE_THREAD), if measured */
	uint64_t majflt;
	double t_start, t_end;
};

static inline void worker_start(struct worker *w)
{
	pthread_barrier_wait(w->bar);
	w->t_start = now();
}

/*
 * Runs fn on n threads that start together; returns the seconds from the
 * first thread's start until the last thread finished. Each fn must call
 * worker_start(w) once before its timed work and set w->t_end after it.
 * (Timing is taken in the workers: with more threads than CPUs the main
 * thread may not run again until they are done.)
 */
static inline double run_threads(int n, void *(*fn)(void *), void *arg, struct worker *w)
{
	pthread_t th[MAX_THREADS];
	pthread_barrier_t bar;
	double t0 = 1e300, t1 = 0;

	pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){ .id = i, .n = n, .bar = &bar, .arg = arg };
		if (pthread_create(&th[i], NULL, fn, &w[i])) {
			fprintf(stderr, "pthread_create failed\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&bar);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < n; i++) {
		t0 = w[i].t_start < t0 ? w[i].t_start : t0;
		t1 = w[i].t_end > t1 ? w[i].t_end : t1;
	}
	pthread_barrier_destroy(&bar);
	return t1 - t0;
}

/* ------------------------------------------------- results and children */

struct results {
	int n;
	struct {
		char key[128];
		double v[MAX_RUNS];
		int nv;
	} e[MAX_KEYS];
};

static inline void res_add(struct results *r, const char *key, double v)
{
	int i;

	for (i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].key, key))
			break;
	if (i == r->n) {
		if (r->n == MAX_KEYS)
			return;
		snprintf(r->e[r->n++].key, sizeof r->e[0].key, "%s", key);
		r->e[i].nv = 0;
	}
	if (r->e[i].nv < MAX_RUNS)
		r->e[i].v[r->e[i].nv++] = v;
}

/* Median of the values under key, or -1 when there are none. */
static inline double res_med(const struct results *r, const char *key)
{
	for (int i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].key, key))
			return median(r->e[i].v, r->e[i].nv);
	return -1;
}

static inline double res_max(const struct results *r, const char *key)
{
	for (int i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].key, key))
			return vmax(r->e[i].v, r->e[i].nv);
	return -1;
}

/* In a child: one line "R key v...". */
static inline void res_emit(const char *key, const double *v, int n)
{
	printf("R %s", key);
	for (int i = 0; i < n; i++)
		printf(" %.6g", v[i]);
	printf("\n");
	fflush(stdout);
}

/*
 * Re-executes this program with the parent's arguments plus "--child MODE"
 * and HMMAP_FAULT_MODE=fault_mode, collecting its "R" lines into r.
 * Returns the child's exit status (0 = fine).
 */
static inline int run_child(const struct opts *o, const char *mode, const char *fault_mode,
			    struct results *r)
{
	char **av = calloc((size_t)o->argc + 3, sizeof *av);
	char line[4096];
	int pfd[2], st;
	pid_t pid;
	FILE *f;

	if (!av || pipe(pfd))
		return -1;
	for (int i = 0; i < o->argc; i++)
		av[i] = o->argv[i];
	av[o->argc] = "--child";
	av[o->argc + 1] = (char *)mode;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(pfd[0]);
		dup2(pfd[1], 1);
		close(pfd[1]);
		if (fault_mode)
			setenv("HMMAP_FAULT_MODE", fault_mode, 1);
		execv("/proc/self/exe", av);
		fprintf(stderr, "execv: %s\n", strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "R ", 2)) {
			char *save = NULL, *key = strtok_r(line + 2, " \n", &save), *tok;
			while (key && (tok = strtok_r(NULL, " \n", &save)))
				res_add(r, key, strtod(tok, NULL));
		} else {
			printf("  [%s] %s", mode, line);
		}
	}
	fclose(f);
	free(av);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		printf("  [%s] child failed (%s %d)\n", mode,
		       WIFSIGNALED(st) ? "signal" : "exit",
		       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ printing */

static inline void fmt_rate(char *buf, size_t n, double v)
{
	if (v < 0)
		snprintf(buf, n, "-");
	else if (v >= 1e6)
		snprintf(buf, n, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, n, "%.1fk", v / 1e3);
	else
		snprintf(buf, n, "%.0f", v);
}

static inline void fmt_ratio(char *buf, size_t n, double a, double b)
{
	if (a < 0 || b <= 0)
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.2fx", a / b);
}

#endif
