/* SPDX-License-Identifier: MIT */
/*
 * Servers for the remote-store tests: redis-server and memcached from
 * Debian's packages, started on loopback on free ports with their own
 * directory under the test's scratch directory, and always stopped: every
 * pid is recorded and killed at exit (atexit), and each server gets
 * PR_SET_PDEATHSIG so that it dies with the test even if the test crashes.
 *
 * Also: running redis-cli and capturing its output, and a SIGBUS catcher
 * for the thread that touches a page (siglongjmp out of the fault).
 *
 * Include after harness.h and testutil.h.
 */
#ifndef HMMAP_TEST_REMOTE_UTIL_H
#define HMMAP_TEST_REMOTE_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define RU_MAX_PIDS 32

static pid_t ru_pids[RU_MAX_PIDS];
static int ru_npids;
static int ru_atexit_done;

static void ru_kill_all(void)
{
	for (int i = 0; i < ru_npids; i++) {
		if (ru_pids[i] > 0) {
			kill(ru_pids[i], SIGCONT);
			kill(ru_pids[i], SIGKILL);
			waitpid(ru_pids[i], NULL, 0);
			ru_pids[i] = 0;
		}
	}
	ru_npids = 0;
}

static inline void ru_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static inline int ru_port_free(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* A free loopback port whose +10000 (Redis Cluster's bus) is free too. */
static inline int ru_free_port(void)
{
	static uint64_t seed;

	if (!seed)
		seed = (uint64_t)getpid() * 2654435761u ^ (uint64_t)time(NULL);
	for (int tries = 0; tries < 1000; tries++) {
		int p = 20000 + (int)(tu_rnd(&seed) % 30000);
		if (ru_port_free(p) && ru_port_free(p + 10000))
			return p;
	}
	return -1;
}

/*
 * A loopback socket that takes connections and never answers (nobody
 * accepts on it): a server that hangs. Its fd, the port in *port; -1 on error.
 */
static inline int ru_silent_server(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 16) ||
	    getsockname(fd, (struct sockaddr *)&a, &al)) {
		close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/* True once something accepts connections on the port. */
static inline int ru_wait_port(int port, unsigned ms)
{
	for (unsigned t = 0; t < ms; t += 20) {
		struct sockaddr_in a;
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)port);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
			close(fd);
			return 1;
		}
		if (fd >= 0)
			close(fd);
		ru_sleep_ms(20);
	}
	return 0;
}

/* Starts argv[0] with output to `log`; records the pid. Returns it or -1. */
static inline pid_t ru_spawn(char *const argv[], const char *log)
{
	pid_t pid;

	if (!ru_atexit_done) {
		atexit(ru_kill_all);
		ru_atexit_done = 1;
	}
	if (ru_npids == RU_MAX_PIDS)
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	ru_pids[ru_npids++] = pid;
	return pid;
}

/* Stops one server (signal sig, then waits). */
static inline void ru_stop(pid_t pid, int sig)
{
	for (int i = 0; i < ru_npids; i++) {
		if (ru_pids[i] == pid) {
			kill(pid, SIGCONT);
			kill(pid, sig);
			waitpid(pid, NULL, 0);
			ru_pids[i] = 0;
		}
	}
}

static inline int ru_have(const char *prog)
{
	char cmd[256];

	snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

/*
 * Starts redis-server on `port` in its own directory DIR/redis-PORT with
 * extra "--name value" arguments (NULL-terminated). Returns the pid, -1.
 */
static inline pid_t ru_redis_start(int port, ...)
{
	char dir[512], log[600], ps[16];
	char *argv[64];
	int n = 0;
	va_list ap;
	pid_t pid;

	snprintf(dir, sizeof dir, "%s/redis-%d", tu_tmpdir(), port);
	mkdir(dir, 0700);
	snprintf(log, sizeof log, "%s/log", dir);
	snprintf(ps, sizeof ps, "%d", port);
	argv[n++] = "redis-server";
	argv[n++] = "--port";
	argv[n++] = ps;
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	argv[n++] = "--dir";
	argv[n++] = dir;
	argv[n++] = "--protected-mode";
	argv[n++] = "no";
	va_start(ap, port);
	for (char *a; n < 62 && (a = va_arg(ap, char *));)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	pid = ru_spawn(argv, log);
	if (pid < 0)
		return -1;
	if (!ru_wait_port(port, 5000)) {
		ru_stop(pid, SIGKILL);
		return -1;
	}
	return pid;
}

/* memcached on `port`; evict: 0 adds -M (no evictions). */
static inline pid_t ru_memcached_start(int port, int evict, const char *extra1, const char *extra2)
{
	char log[512], ps[16];
	char *argv[24];
	int n = 0;
	pid_t pid;

	snprintf(log, sizeof log, "%s/memcached-%d.log", tu_tmpdir(), port);
	snprintf(ps, sizeof ps, "%d", port);
	argv[n++] = "memcached";
	argv[n++] = "-p";
	argv[n++] = ps;
	argv[n++] = "-U";
	argv[n++] = "0";
	argv[n++] = "-l";
	argv[n++] = "127.0.0.1";
	argv[n++] = "-u";
	argv[n++] = "root";
	argv[n++] = "-m";
	argv[n++] = "64";
	if (!evict)
		argv[n++] = "-M";
	if (extra1)
		argv[n++] = (char *)extra1;
	if (extra2)
		argv[n++] = (char *)extra2;
	argv[n] = NULL;
	pid = ru_spawn(argv, log);
	if (pid < 0)
		return -1;
	if (!ru_wait_port(port, 5000)) {
		ru_stop(pid, SIGKILL);
		return -1;
	}
	return pid;
}

/* Runs a shell command; its output (up to cap-1 bytes) in out. Returns exit status. */
static inline int ru_sh(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *f;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	fflush(stdout);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (out && cap) {
		while (n + 1 < cap) {
			size_t k = fread(out + n, 1, cap - 1 - n, f);
			if (!k)
				break;
			n += k;
		}
		out[n] = 0;
	}
	{
		char sink[256];
		while (fread(sink, 1, sizeof sink, f) > 0)
			;
	}
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Removes the scratch directory with the servers' directories in it. */
static inline void ru_cleanup(void)
{
	const char *d = tu_tmpdir();
	char cmd[600];

	if (d && !strncmp(d, "/tmp/hmmap-test-", 16)) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
		if (system(cmd) == 0)
			tu_dir[0] = 0;
	}
}

/* ---- SIGBUS: catching it in the thread that touches a page ---- */

static __thread sigjmp_buf *ru_jb;
static _Atomic int ru_bus_count;

static void ru_on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	atomic_fetch_add(&ru_bus_count, 1);
	if (ru_jb)
		siglongjmp(*ru_jb, 1);
	signal(SIGBUS, SIG_DFL);
	raise(SIGBUS);
}

/* Install before the first hm_* call (hmmap chains to it). */
static inline void ru_install_bus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = ru_on_bus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

/* Copies len bytes from region memory; 1 if a SIGBUS stopped it, 0 if not. */
static inline int ru_try_copy(void *dst, const volatile void *src, size_t len)
{
	sigjmp_buf here;

	ru_jb = &here;
	if (sigsetjmp(here, 1)) {
		ru_jb = NULL;
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		((unsigned char *)dst)[i] = ((const volatile unsigned char *)src)[i];
	ru_jb = NULL;
	return 0;
}

static inline int ru_try_write(volatile void *dst, const void *src, size_t len)
{
	sigjmp_buf here;

	ru_jb = &here;
	if (sigsetjmp(here, 1)) {
		ru_jb = NULL;
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		((volatile unsigned char *)dst)[i] = ((const unsigned char *)src)[i];
	ru_jb = NULL;
	return 0;
}

/* ---- a store, a cache and a region on it ---- */

struct ru_env {
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	unsigned char *p;
	size_t len;
};

static inline int ru_env_open(struct ru_env *e, const char *uri, size_t len, size_t budget)
{
	int rc;

	memset(e, 0, sizeof *e);
	rc = hm_store_open(&e->s, uri, 0);
	if (rc)
		return rc;
	rc = hm_cache_new(&e->c, budget, "clock");
	if (!rc)
		rc = hm_region_map(&e->r, e->c, e->s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, 4096);
	if (rc) {
		if (e->c)
			hm_cache_free(e->c);
		hm_store_close(e->s);
		memset(e, 0, sizeof *e);
		return rc;
	}
	e->p = hm_region_addr(e->r);
	e->len = len;
	return 0;
}

static inline void ru_env_close(struct ru_env *e)
{
	if (e->r && hm_region_unmap(e->r)) {
		/* Write-back failed: drop the data on purpose so that close works. */
		hm_advise(e->p, e->len, HM_ADV_DONTNEED);
		hm_region_unmap(e->r);
	}
	if (e->c)
		hm_cache_free(e->c);
	if (e->s)
		hm_store_close(e->s);
	memset(e, 0, sizeof *e);
}

static inline double ru_secs(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/*
 * Out of descriptors (RLIMIT_NOFILE at the lowest free one), opening `uri`
 * fails with EMFILE, said as such, not as a refused connection; with
 * descriptors again, it opens.
 */
static inline void ru_check_out_of_descriptors(const char *uri)
{
	struct hm_store *s = NULL;
	struct rlimit old, rl;
	int fd = dup(0), rc;

	CHECK(fd >= 0 && getrlimit(RLIMIT_NOFILE, &old) == 0);
	close(fd);
	rl = old;
	rl.rlim_cur = (rlim_t)fd; /* the lowest free descriptor: no new one */
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	rc = hm_store_open(&s, uri, 0);
	setrlimit(RLIMIT_NOFILE, &old);
	if (!rc)
		hm_store_close(s);
	CHECKF(rc == -EMFILE && strstr(hm_errormsg(), "Too many open files"), "rc %d: %s", rc,
	       hm_errormsg());
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	CHECK(hm_store_close(s) == 0);
}

/*
 * Requests to a server that stopped answering fail at timeout=, not an
 * io_timeout (or more) later. uri names one server, run by pid, with
 * io_timeout at its default (1 s): a page is written, the server frozen
 * (SIGSTOP), then a read and a write of the page must each fail with
 * -ETIMEDOUT within [timeout, timeout + 0.4 s]; the same after
 * hm_store_ctl() lowers timeout= to 400 ms. The server is thawed after.
 */
static inline void ru_check_timeouts(const char *uri, pid_t pid, unsigned timeout_ms)
{
	/* A read of a page, a write of a page, and a write of 1024 pages (many batches). */
	static const char *const what[3] = { "read", "write", "4 MiB write" };
	const size_t big = 4u << 20;
	struct hm_store *s;
	unsigned char *buf = malloc(big);
	double dt[2][3], want[2] = { timeout_ms / 1000.0, 0.4 };
	int rc[2][3], ctl;
	char msg[2][3][256];

	if (!buf) {
		CHECK(0);
		return;
	}
	memset(buf, 0x42, big);
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	if (hm_store_write(s, buf, 4096, 0)) {
		CHECKF(0, "%s", hm_errormsg());
		hm_store_close(s);
		free(buf);
		return;
	}
	/* Measured first, checked after the server is thawed: a failed check returns. */
	kill(pid, SIGSTOP);
	ctl = 0;
	for (int round = 0; round < 2; round++) {
		if (round)
			ctl = hm_store_ctl(s, "timeout=400");
		for (int w = 0; w < 3; w++) {
			double t0 = ru_secs();
			rc[round][w] = w == 0 ? hm_store_read(s, buf, 4096, 0)
					      : hm_store_write(s, buf, w == 1 ? 4096 : big, 0);
			dt[round][w] = ru_secs() - t0;
			snprintf(msg[round][w], sizeof msg[round][w], "%s", hm_errormsg());
		}
	}
	kill(pid, SIGCONT);
	hm_store_close(s);
	free(buf);
	CHECK(ctl == 0);
	for (int round = 0; round < 2; round++)
		for (int w = 0; w < 3; w++) {
			CHECKF(rc[round][w] == -ETIMEDOUT, "%s: %d %s", what[w], rc[round][w],
			       msg[round][w]);
			CHECKF(dt[round][w] >= want[round] - 0.01 && dt[round][w] < want[round] + 0.4,
			       "%s failed after %.3f s with timeout=%.0f ms", what[w], dt[round][w],
			       want[round] * 1000);
		}
}

/* Compares region memory with ref page by page; -1 equal, -2 SIGBUS, else the offset. */
static inline long long ru_verify(const unsigned char *p, const unsigned char *ref, size_t len)
{
	unsigned char page[4096];

	for (size_t off = 0; off < len; off += 4096) {
		if (ru_try_copy(page, p + off, 4096))
			return -2;
		long long bad = tu_cmp_mem(page, ref + off, 4096);
		if (bad >= 0)
			return (long long)off + bad;
	}
	return -1;
}

#endif
