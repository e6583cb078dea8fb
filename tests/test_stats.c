/* SPDX-License-Identifier: MIT */
/*
 * Live statistics: latency histograms and percentiles, prefetches used and
 * wasted, the HMMAP_STATS switch, direct store access, and the shared-memory
 * segment - snapshots of a live process, stale segments of dead processes,
 * recycled PIDs, foreign and future segments, and bad arguments.
 *
 * Workload processes are this program re-executed with --workload, so that
 * each starts with a fresh library (no fork of a process whose library
 * threads may hold locks).
 */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <time.h>

#include "harness.h"
#include "testutil.h"

#include "hmmap.h"
#include "core/internal.h"

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static bool seg_exists(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof path, "/dev/shm/hmmap.%d", (int)pid);
	return access(path, F_OK) == 0;
}

/* ---- the workload child ---- */

/* Maps a mem: region and touches pages until killed; says "ready" on stdout. */
static int workload(const char *uri)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	uint64_t seed = 7;

	if (hm_store_open(&s, uri, 0) || hm_cache_new(&c, 1 << 20, "clock") ||
	    hm_region_map(&r, c, s, 0, 8 << 20, PROT_READ | PROT_WRITE, HM_CACHED, 4096)) {
		fprintf(stderr, "workload: %s\n", hm_errormsg());
		return 1;
	}
	hm_advise(hm_region_addr(r), 8 << 20, HM_ADV_RANDOM);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		volatile char *p = hm_region_addr(r);
		struct pollfd pfd = { .fd = 0, .events = POLLIN };
		p[(tu_rnd(&seed) % 2048) * 4096] += 1;
		/* Standard input closed: exit cleanly (atexit removes the segment). */
		if (poll(&pfd, 1, 1) > 0)
			return 0;
	}
}

static char self[512];

/*
 * Starts `self --workload URI` (or a plain sleeper if uri is NULL) and waits
 * until it is ready. *in (if not NULL) gets the write end of its standard
 * input: closing it makes the workload exit cleanly.
 */
static pid_t spawn_in(const char *uri, int *in)
{
	int pfd[2], ifd[2];
	pid_t pid;
	char line[64] = "";

	if (pipe(pfd))
		return -1;
	if (pipe(ifd)) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		tu_child_stdio(pfd, ifd);
		if (!uri) {
			/* Not an hmmap process: never touches the library. */
			printf("ready\n");
			fflush(stdout);
			for (;;)
				pause();
		}
		execl(self, self, "--workload", uri, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	close(ifd[0]);
	if (in)
		*in = ifd[1];
	else
		fcntl(ifd[1], F_SETFD, FD_CLOEXEC); /* kept open: the child runs on */
	FILE *f = fdopen(pfd[0], "r");
	if (!f || !fgets(line, sizeof line, f) || strncmp(line, "ready", 5)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	return pid;
}

static pid_t spawn(const char *uri)
{
	return spawn_in(uri, NULL);
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* ---- histograms ---- */

static struct hm_counters *new_counters(void)
{
	struct hm_counters *k = NULL;

	if (posix_memalign((void **)&k, 64, sizeof *k))
		return NULL;
	memset(k, 0, sizeof *k);
	return k;
}

static bool within(uint64_t got, double want, double tol)
{
	return (double)got >= want * (1 - tol) && (double)got <= want * (1 + tol);
}

static void latency_buckets(void)
{
	struct hm_counters *k = new_counters();
	struct hm_stats s;
	unsigned prev = 0;

	CHECK(k);
	/* Buckets grow with the value and stay in range. */
	for (uint64_t v = 0; v < (1ull << 42); v = v < 64 ? v + 1 : v + v / 7) {
		unsigned b = hm__lat_bucket(v);
		CHECKF(b >= prev && b < HM_LAT_BUCKETS, "value %llu bucket %u after %u",
		       (unsigned long long)v, b, prev);
		prev = b;
	}
	/* Empty: no percentiles. */
	memset(&s, 0xff, sizeof s);
	hm__lat_fill(k, &s);
	CHECK(s.faults_timed == 0 && s.fault_ns_p50 == 0 && s.fault_ns_p999 == 0);
	free(k);
}

static void latency_percentiles(void)
{
	static const uint64_t values[] = { 5, 100, 1234, 5000, 77777, 1000000, 123456789 };
	struct hm_counters *k = new_counters();
	struct hm_stats s;

	CHECK(k);
	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		memset(k, 0, sizeof *k);
		for (int j = 0; j < 100; j++)
			hm__lat_record(k, values[i]);
		hm__lat_fill(k, &s);
		CHECK(s.faults_timed == 100);
		CHECKF(within(s.fault_ns_p50, (double)values[i], 0.0625) &&
			       s.fault_ns_p50 == s.fault_ns_p99 && s.fault_ns_p99 == s.fault_ns_p999,
		       "value %llu: p50 %llu p99 %llu p999 %llu", (unsigned long long)values[i],
		       (unsigned long long)s.fault_ns_p50, (unsigned long long)s.fault_ns_p99,
		       (unsigned long long)s.fault_ns_p999);
	}
	/* 1..100000 once each: the percentiles are 50000, 99000, 99900 within 1/16. */
	memset(k, 0, sizeof *k);
	for (uint64_t v = 1; v <= 100000; v++)
		hm__lat_record(k, v);
	hm__lat_fill(k, &s);
	CHECK(s.faults_timed == 100000);
	CHECKF(within(s.fault_ns_p50, 50000, 0.0625), "p50 %llu", (unsigned long long)s.fault_ns_p50);
	CHECKF(within(s.fault_ns_p99, 99000, 0.0625), "p99 %llu", (unsigned long long)s.fault_ns_p99);
	CHECKF(within(s.fault_ns_p999, 99900, 0.0625), "p999 %llu",
	       (unsigned long long)s.fault_ns_p999);
	/* A tail: 990 fast, 10 slow. p50 fast, p99 fast (rank 990), p999 slow. */
	memset(k, 0, sizeof *k);
	for (int j = 0; j < 990; j++)
		hm__lat_record(k, 2000);
	for (int j = 0; j < 10; j++)
		hm__lat_record(k, 900000);
	hm__lat_fill(k, &s);
	CHECK(within(s.fault_ns_p50, 2000, 0.0625) && within(s.fault_ns_p99, 2000, 0.0625));
	CHECK(within(s.fault_ns_p999, 900000, 0.0625));
	/* Values past the last bucket are clamped, not lost. */
	memset(k, 0, sizeof *k);
	hm__lat_record(k, UINT64_MAX);
	hm__lat_fill(k, &s);
	CHECK(s.faults_timed == 1 && s.fault_ns_p50 > (1ull << 39));
	free(k);
}

/* ---- counters on a live region ---- */

struct fixture {
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	char *p;
	size_t len;
};

static int fx_open(struct fixture *f, size_t len, size_t budget)
{
	char uri[64];
	int rc;

	memset(f, 0, sizeof *f);
	snprintf(uri, sizeof uri, "mem:%zu", len);
	f->len = len;
	if ((rc = hm_store_open(&f->s, uri, 0)))
		return rc;
	if ((rc = hm_cache_new(&f->c, budget, "clock")))
		return rc;
	if ((rc = hm_region_map(&f->r, f->c, f->s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED,
				4096)))
		return rc;
	f->p = hm_region_addr(f->r);
	return 0;
}

static void fx_close(struct fixture *f)
{
	if (f->r)
		hm_region_unmap(f->r);
	if (f->c)
		hm_cache_free(f->c);
	if (f->s)
		hm_store_close(f->s);
}

/* Waits until the region's read-ahead count stops moving (prefetch workers done). */
static void settle(struct hm_region *r)
{
	struct hm_stats a, b;

	hm_region_stats(r, &a);
	for (int i = 0; i < 200; i++) {
		sleep_ms(10);
		hm_region_stats(r, &b);
		if (b.readahead == a.readahead && b.bytes_read == a.bytes_read)
			return;
		a = b;
	}
}

static void counters_and_latency(void)
{
	struct fixture f;
	struct hm_stats rs, cs, ss, ps, as;
	int rc = fx_open(&f, 16 << 20, 64 << 20);

	CHECKF(rc == 0, "%s", hm_errormsg());
	CHECK(hm_advise(f.p, f.len, HM_ADV_RANDOM) == 0);
	for (int i = 0; i < 256; i++)
		(void)*(volatile char *)(f.p + (size_t)((i * 37) % 4096) * 4096);
	/*
	 * A fault's time is known only once its page is mapped, and in thread
	 * mode the handler counts it after waking the faulting thread: let the
	 * last one land.
	 */
	for (int i = 0; i < 500; i++) {
		CHECK(hm_region_stats(f.r, &rs) == 0);
		if (rs.faults_timed >= 256)
			break;
		sleep_ms(2);
	}
	CHECK(hm_region_stats(f.r, &rs) == 0);
	CHECK(hm_cache_stats(f.c, &cs) == 0);
	CHECK(hm_store_stats(f.s, &ss) == 0);
	CHECKF(rs.faults_missing == 256 && rs.misses == 256, "missing %llu misses %llu",
	       (unsigned long long)rs.faults_missing, (unsigned long long)rs.misses);
	CHECK(rs.readahead == 0 && rs.prefetch_used == 0 && rs.prefetch_wasted == 0);
	CHECK(rs.bytes_read == 256 * 4096 && ss.bytes_read == 256 * 4096);
	CHECK(rs.resident_bytes == 256 * 4096 && cs.resident_bytes == 256 * 4096);
	/* Every fault served is timed: missing ones, and hint faults of the sampler. */
	CHECKF(rs.faults_timed >= 256 &&
		       rs.faults_timed <= rs.faults_missing + rs.faults_minor + rs.faults_wp,
	       "timed %llu", (unsigned long long)rs.faults_timed);
	CHECK(rs.fault_ns_p50 > 0 && rs.fault_ns_p50 <= rs.fault_ns_p99 &&
	      rs.fault_ns_p99 <= rs.fault_ns_p999);
	CHECK(cs.faults_timed >= rs.faults_timed && cs.fault_ns_p50 > 0);
	/* Dirty pages: written pages are found dirty by the cache too. */
	for (int i = 0; i < 10; i++)
		f.p[(size_t)i * 4096] = 1;
	CHECK(hm_stats(f.p + 4096, &ps) == 0);
	CHECK(ps.faults_missing >= 256 && ps.budget_bytes == 64 << 20);
	CHECK(hm_stats(NULL, &as) == 0);
	CHECK(as.faults_missing >= 256 && as.faults_timed >= rs.faults_timed);
	CHECK(as.budget_bytes >= 64 << 20);
	/* Bad input. */
	CHECK(hm_stats(NULL, NULL) == -EINVAL);
	CHECK(hm_stats(&rc, &ps) == -ENOENT && strstr(hm_errormsg(), "not in an hmmap region"));
	fx_close(&f);
}

static void prefetch_used_when_scanned(void)
{
	struct fixture f;
	struct hm_stats s;
	uint64_t sum = 0;
	int rc = fx_open(&f, 32 << 20, 64 << 20);

	CHECKF(rc == 0, "%s", hm_errormsg());
	for (size_t off = 0; off < f.len; off += 4096)
		sum += *(volatile unsigned char *)(f.p + off);
	settle(f.r);
	CHECK(hm_region_stats(f.r, &s) == 0);
	CHECKF(s.readahead > 1000, "readahead %llu", (unsigned long long)s.readahead);
	/* Nothing was evicted, so nothing was wasted. */
	CHECK(s.prefetch_wasted == 0 && s.evictions == 0);
	CHECKF(s.prefetch_used <= s.readahead, "used %llu > readahead %llu",
	       (unsigned long long)s.prefetch_used, (unsigned long long)s.readahead);
	/* All but the windows still ahead of the reader at the end were passed over. */
	CHECKF(s.prefetch_used + 4 * 512 >= s.readahead, "used %llu of %llu",
	       (unsigned long long)s.prefetch_used, (unsigned long long)s.readahead);
	fx_close(&f);
	(void)sum;
}

/*
 * A thread that has touched every page finds them all in the statistics at
 * once, without waiting for the prefetch workers: a window is counted
 * before its pages are mapped. Several rounds, since the window between a
 * worker's mapping and its counting was short.
 */
static void counts_current_after_scan(void)
{
	const uint64_t len = 8 << 20, pages = len / 4096;

	for (int round = 0; round < 24; round++) {
		struct fixture f;
		struct hm_stats rs, cs, ss;
		uint64_t sum = 0;
		int rc = fx_open(&f, len, 64 << 20);

		CHECKF(rc == 0, "%s", hm_errormsg());
		for (size_t off = 0; off < len; off += 4096)
			sum += *(volatile unsigned char *)(f.p + off);
		CHECK(hm_region_stats(f.r, &rs) == 0 && hm_cache_stats(f.c, &cs) == 0 &&
		      hm_store_stats(f.s, &ss) == 0);
		CHECKF(rs.misses + rs.readahead == pages && rs.bytes_read == len &&
			       rs.resident_bytes == len,
		       "round %d, region: misses %llu + readahead %llu of %llu pages, read %llu, "
		       "resident %llu of %llu bytes",
		       round, (unsigned long long)rs.misses, (unsigned long long)rs.readahead,
		       (unsigned long long)pages, (unsigned long long)rs.bytes_read,
		       (unsigned long long)rs.resident_bytes, (unsigned long long)len);
		CHECKF(cs.misses + cs.readahead == pages && cs.bytes_read == len &&
			       cs.resident_bytes == len && ss.bytes_read == len,
		       "round %d, cache: %llu + %llu pages, read %llu, resident %llu; store read %llu",
		       round, (unsigned long long)cs.misses, (unsigned long long)cs.readahead,
		       (unsigned long long)cs.bytes_read, (unsigned long long)cs.resident_bytes,
		       (unsigned long long)ss.bytes_read);
		fx_close(&f);
		(void)sum;
	}
}

/*
 * Written pages are dirty in the statistics at once, before any harvest
 * (asynchronous write protection lets writes through unseen), in the
 * region's, the cache's and hm_stats()'s figures, and clean after a sync.
 */
static void dirty_counts_written_pages(void)
{
	const uint64_t len = 8 << 20, pages = len / 4096;
	struct fixture f;
	struct hm_stats rs, cs, as;
	int rc = fx_open(&f, len, 64 << 20);

	CHECKF(rc == 0, "%s", hm_errormsg());
	if (rc)
		return;
	for (uint64_t i = 0; i < 10; i++)
		f.p[i * 4096 * 3 + 5] = 1;
	CHECK(hm_region_stats(f.r, &rs) == 0 && hm_cache_stats(f.c, &cs) == 0 &&
	      hm_stats(f.p, &as) == 0);
	CHECKF(rs.dirty_pages == 10 && cs.dirty_pages == 10 && as.dirty_pages == 10,
	       "10 pages written: region %llu, cache %llu, hm_stats %llu dirty",
	       (unsigned long long)rs.dirty_pages, (unsigned long long)cs.dirty_pages,
	       (unsigned long long)as.dirty_pages);
	/* Read pages are not dirty; all written ones are. */
	for (uint64_t off = 0; off < len; off += 4096)
		(void)*(volatile char *)(f.p + off);
	for (uint64_t off = 0; off < len / 2; off += 4096)
		f.p[off + 9] = 2;
	CHECK(hm_region_stats(f.r, &rs) == 0);
	/* (the first ten are among them) */
	CHECKF(rs.dirty_pages == pages / 2, "%llu dirty of %llu written",
	       (unsigned long long)rs.dirty_pages, (unsigned long long)(pages / 2));
	CHECK(hm_sync(f.p, len, MS_SYNC) == 0);
	CHECK(hm_region_stats(f.r, &rs) == 0);
	CHECKF(rs.dirty_pages == 0, "%llu dirty after a sync", (unsigned long long)rs.dirty_pages);
	fx_close(&f);
}

static void prefetch_wasted_when_dropped(void)
{
	struct fixture f;
	struct hm_stats s;
	int rc = fx_open(&f, 32 << 20, 64 << 20);

	CHECKF(rc == 0, "%s", hm_errormsg());
	/* Two sequential touches start a stream: the second reads ahead. */
	(void)*(volatile char *)f.p;
	(void)*(volatile char *)(f.p + 4096);
	settle(f.r);
	CHECK(hm_region_stats(f.r, &s) == 0);
	CHECKF(s.readahead >= 3, "readahead %llu", (unsigned long long)s.readahead);
	uint64_t ra = s.readahead;
	/* Dropped untouched: every read-ahead page is wasted. */
	CHECK(hm_advise(f.p, f.len, HM_ADV_DONTNEED) == 0);
	CHECK(hm_region_stats(f.r, &s) == 0);
	CHECKF(s.prefetch_wasted == ra && s.prefetch_used == 0, "wasted %llu used %llu of %llu",
	       (unsigned long long)s.prefetch_wasted, (unsigned long long)s.prefetch_used,
	       (unsigned long long)ra);
	struct hm_stats cs;
	CHECK(hm_cache_stats(f.c, &cs) == 0 && cs.prefetch_wasted == ra);
	/* A written read-ahead page is used, found at eviction. */
	(void)*(volatile char *)f.p;
	(void)*(volatile char *)(f.p + 4096);
	settle(f.r);
	f.p[3 * 4096] = 1;
	CHECK(hm_advise(f.p, f.len, HM_ADV_DONTNEED) == 0);
	CHECK(hm_region_stats(f.r, &s) == 0);
	CHECKF(s.prefetch_used >= 1, "used %llu", (unsigned long long)s.prefetch_used);
	CHECK(s.prefetch_used + s.prefetch_wasted <= s.readahead);
	fx_close(&f);
}

/*
 * A prefault (and WILLNEED) asks for every page it loads: they count as
 * misses, none as read ahead, and none is wasted when dropped untouched.
 * Every page after the first of a load used to count as read ahead.
 */
static void prefault_counts_demand(void)
{
	struct fixture f;
	struct hm_stats s;
	int rc = fx_open(&f, 32 << 20, 64 << 20);
	const uint64_t n = 256;

	CHECKF(rc == 0, "%s", hm_errormsg());
	CHECK(hm_prefault(f.p, n * 4096, 0) == 0);
	CHECK(hm_advise(f.p + n * 4096, n * 4096, HM_ADV_WILLNEED) == 0);
	CHECK(hm_region_stats(f.r, &s) == 0);
	CHECKF(s.misses == 2 * n && s.readahead == 0, "misses %llu, readahead %llu for %llu pages",
	       (unsigned long long)s.misses, (unsigned long long)s.readahead,
	       (unsigned long long)(2 * n));
	CHECK(hm_advise(f.p, f.len, HM_ADV_DONTNEED) == 0);
	CHECK(hm_region_stats(f.r, &s) == 0);
	CHECKF(s.prefetch_wasted == 0, "wasted %llu", (unsigned long long)s.prefetch_wasted);
	fx_close(&f);
}

/* ---- children with their own options ---- */

static int stats_off_child(void *arg)
{
	struct fixture f;
	struct hm_stats s;
	struct hm_snapshot *sn;
	int rc = fx_open(&f, 4 << 20, 8 << 20);

	if (rc) {
		printf("open: %s\n", hm_errormsg());
		return 1;
	}
	for (int i = 0; i < 64; i++)
		(void)*(volatile char *)(f.p + (size_t)i * 4096);
	hm_region_stats(f.r, &s);
	if (s.faults_missing || s.misses || s.faults_timed || s.bytes_read) {
		printf("counted with HMMAP_STATS=0: missing %llu timed %llu\n",
		       (unsigned long long)s.faults_missing, (unsigned long long)s.faults_timed);
		return 1;
	}
	/* Current values are still there: they are not counters. */
	if (s.resident_bytes == 0) {
		printf("no resident bytes\n");
		return 1;
	}
	rc = hm_snapshot_read(getpid(), &sn);
	if (rc != -ENOENT) {
		printf("segment published with HMMAP_STATS=0 (%d)\n", rc);
		return 1;
	}
	fx_close(&f);
	return 0;
}

static void stats_off(void)
{
	static const char *const env[] = { "HMMAP_STATS=0", NULL };
	int st = tu_child(env, stats_off_child, NULL);

	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
}

static int stats_bad_child(void *arg)
{
	struct hm_cache *c;
	int rc = hm_cache_new(&c, 1 << 20, NULL);

	if (rc != -EINVAL || !strstr(hm_errormsg(), "HMMAP_STATS")) {
		printf("HMMAP_STATS=2 gave %d '%s'\n", rc, hm_errormsg());
		return 1;
	}
	return 0;
}

static void stats_bad_value(void)
{
	static const char *const env[] = { "HMMAP_STATS=2", NULL };
	int st = tu_child(env, stats_bad_child, NULL);

	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
}

/* In a fresh process: its own segment follows its regions. */
static int own_segment_child(void *arg)
{
	struct fixture f;
	struct hm_snapshot *sn;
	struct hm_stats rs;
	int rc, found = 0;

	if (hm_snapshot_read(getpid(), &sn) != -ENOENT) {
		printf("a segment before any map\n");
		return 1;
	}
	rc = fx_open(&f, 4 << 20, 8 << 20);
	if (rc) {
		printf("open: %s\n", hm_errormsg());
		return 1;
	}
	hm_advise(f.p, f.len, HM_ADV_RANDOM);
	for (int i = 0; i < 100; i++)
		(void)*(volatile char *)(f.p + (size_t)i * 4096);
	hm_region_stats(f.r, &rs);
	/* Published every 250 ms: wait until the figures arrive (bounded). */
	for (int tries = 0; tries < 100 && found != 3; tries++) {
		found = 0;
		rc = hm_snapshot_read(getpid(), &sn);
		if (rc) {
			printf("hm_snapshot_read: %d %s\n", rc, hm_errormsg());
			return 1;
		}
		if (sn->pid != getpid() || sn->start_time != tu_start_time(getpid()) ||
		    !sn->comm[0] || sn->interval_ms != HM_SNAPSHOT_INTERVAL_MS) {
			printf("bad header\n");
			return 1;
		}
		for (size_t i = 0; i < sn->nobjs; i++) {
			const struct hm_obj_stats *o = &sn->objs[i];
			if (o->kind == HM_OBJ_REGION && !strcmp(o->name, "mem:4194304") &&
			    o->addr == (uintptr_t)f.p && o->length == f.len && o->page_size == 4096 &&
			    o->mode == HM_CACHED && o->stats.faults_missing == rs.faults_missing &&
			    o->stats.fault_ns_p50 > 0)
				found |= 1;
			if (o->kind == HM_OBJ_CACHE && !strcmp(o->name, "clock") &&
			    o->stats.budget_bytes == 8 << 20 && o->stats.faults_missing >= 100)
				found |= 2;
		}
		hm_snapshot_free(sn);
		if (found != 3)
			sleep_ms(50);
	}
	if (found != 3) {
		printf("region or cache not found in the segment (%d)\n", found);
		return 1;
	}
	/* A forked child that exits normally leaves its parent's segment alone. */
	fflush(stdout);
	pid_t kid = fork();
	if (kid == 0)
		exit(0);
	waitpid(kid, NULL, 0);
	if (!seg_exists(getpid())) {
		printf("a child's exit removed its parent's segment\n");
		return 1;
	}
	/* Unmapped: gone from the segment at once. */
	hm_region_unmap(f.r);
	f.r = NULL;
	if (hm_snapshot_read(getpid(), &sn)) {
		printf("read after unmap: %s\n", hm_errormsg());
		return 1;
	}
	for (size_t i = 0; i < sn->nobjs; i++)
		if (sn->objs[i].kind == HM_OBJ_REGION || sn->objs[i].kind == HM_OBJ_STORE) {
			printf("region or store still listed after unmap\n");
			return 1;
		}
	hm_snapshot_free(sn);
	fx_close(&f);
	return 0;
}

static void own_segment(void)
{
	int st = tu_child(NULL, own_segment_child, NULL);

	TU_CHILD_RESULT(st);
}

/*
 * A full /dev/shm: the segment cannot be made, so the process publishes
 * nothing, and its first map and touches work (they took SIGBUS when the
 * segment was only sized, not allocated).
 */
static int shm_full_child(void *arg)
{
	static char block[4096];
	unsigned char *p;
	struct hm_snapshot *sn = NULL;
	int fd, rc;

	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k")) {
		printf("skip: no private /dev/shm here: %s\n", strerror(errno));
		return 77;
	}
	fd = open("/dev/shm/filler", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	while (fd >= 0 && write(fd, block, sizeof block) == (ssize_t)sizeof block)
		;
	if (fd >= 0)
		close(fd);
	p = hmmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, "mem:1M", 0);
	if (p == MAP_FAILED) {
		printf("hmmap with /dev/shm full: %s\n", hm_errormsg());
		return 1;
	}
	memset(p, 0x3c, 1 << 20);
	usleep(2 * HM_SNAPSHOT_INTERVAL_MS * 1000); /* a publisher would have written */
	rc = hm_snapshot_read(getpid(), &sn);
	if (rc != -ENOENT) {
		printf("snapshot of a process with no segment: %d (%s), want -ENOENT\n", rc,
		       hm_errormsg());
		return 1;
	}
	if (p[12345] != 0x3c || hmunmap(p, 1 << 20)) {
		printf("data or unmap: %s\n", hm_errormsg());
		return 1;
	}
	return 0;
}

static void shm_full(void)
{
	if (getuid() != 0)
		SKIP("a private /dev/shm needs root here");
	int st = tu_child(NULL, shm_full_child, NULL);

	TU_CHILD_RESULT(st);
}

/* ---- other processes ---- */

static void live_and_dead_process(void)
{
	struct hm_snapshot *sn = NULL;
	pid_t *pids;
	size_t n;
	bool listed = false;
	pid_t pid = spawn("mem:8M");

	CHECK(pid > 0);
	CHECK(seg_exists(pid));
	int rc = hm_snapshot_read(pid, &sn);
	if (rc)
		reap(pid);
	CHECKF(rc == 0, "%d %s", rc, hm_errormsg());
	bool region = false;
	for (size_t i = 0; i < sn->nobjs; i++)
		region |= sn->objs[i].kind == HM_OBJ_REGION && !strcmp(sn->objs[i].name, "mem:8M");
	hm_snapshot_free(sn);
	CHECK(hm_snapshot_list(&pids, &n) == 0);
	for (size_t i = 0; i < n; i++)
		listed |= pids[i] == pid;
	free(pids);
	reap(pid);
	CHECK(region && listed);
	/* Killed: the segment stayed behind; a reader removes it and says so. */
	CHECK(seg_exists(pid));
	rc = hm_snapshot_read(pid, &sn);
	CHECKF(rc == -ESTALE && strstr(hm_errormsg(), "stale"), "%d %s", rc, hm_errormsg());
	CHECK(!seg_exists(pid));
	CHECK(hm_snapshot_read(pid, &sn) == -ESRCH);
	CHECK(sn == NULL);
}

/*
 * A process in a PID namespace whose /proc is its parent's: getpid() says
 * 1, which /proc gives to the parent's init. Its segment must carry the
 * number /proc knows it by, or readers take init's start time for its own
 * and show the segment as live for good after it is gone.
 */
static void pid_namespace_segment(void)
{
	int pfd[2], ifd[2];
	char line[64] = "", path[64];
	bool one_before = seg_exists(1);

	if (getuid() != 0)
		SKIP("a PID namespace needs root here");
	/* Its standard input stays open until the end: at end of file a workload exits. */
	CHECK(pipe(pfd) == 0 && pipe(ifd) == 0);
	fflush(stdout);
	pid_t mid = fork();
	CHECK(mid >= 0);
	if (mid == 0) {
		if (unshare(CLONE_NEWPID))
			_exit(77);
		pid_t g = fork(); /* PID 1 of the new namespace */
		if (g == 0) {
			tu_child_stdio(pfd, ifd);
			execl(self, self, "--workload", "mem:8M", (char *)NULL);
			_exit(127);
		}
		int st = 0;
		waitpid(g, &st, 0);
		_exit(0);
	}
	close(pfd[1]);
	close(ifd[0]);
	FILE *f = fdopen(pfd[0], "r");
	bool ready = f && fgets(line, sizeof line, f) && !strncmp(line, "ready", 5);
	if (f)
		fclose(f);
	int st = 0;
	if (!ready) {
		close(ifd[1]);
		kill(mid, SIGKILL);
		waitpid(mid, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
			SKIP("unshare(CLONE_NEWPID): not allowed here");
		CHECKF(0, "the workload in a PID namespace did not start");
	}
	/* The workload is the only child of `mid`, known here by another number. */
	pid_t g = 0;
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)mid, (int)mid);
	f = fopen(path, "r");
	if (f) {
		int v = 0;
		if (fscanf(f, "%d", &v) == 1)
			g = v;
		fclose(f);
	}
	struct hm_snapshot *sn = NULL;
	int rc = g > 1 ? hm_snapshot_read(g, &sn) : -ESRCH;
	bool one_after = seg_exists(1);
	if (g > 1)
		kill(g, SIGKILL);
	close(ifd[1]);
	waitpid(mid, &st, 0);
	CHECKF(g > 1, "no workload under %d", (int)mid);
	CHECKF(rc == 0 && sn && sn->pid == g, "segment of %d: %d %s", (int)g, rc, hm_errormsg());
	hm_snapshot_free(sn);
	CHECKF(one_before || !one_after, "a segment under PID 1 appeared");
	/* Gone: its segment is seen stale and removed (by us, or by a process making its own). */
	rc = hm_snapshot_read(g, &sn);
	CHECKF((rc == -ESTALE || rc == -ESRCH) && !seg_exists(g), "%d %s", rc, hm_errormsg());
}

/* A compressed store's holdings and ratio reach the segment, and hmmap stat prints them. */
static void compressed_store_in_snapshot(void)
{
	struct hm_snapshot *sn = NULL;
	pid_t pid = spawn("lz4:8M");
	bool found = false;

	CHECK(pid > 0);
	/* The workload's 1 MiB cache evicts its written pages into the pool. */
	for (int tries = 0; tries < 200 && !found; tries++) {
		sleep_ms(20);
		if (hm_snapshot_read(pid, &sn))
			break;
		for (size_t i = 0; i < sn->nobjs; i++) {
			const struct hm_obj_stats *o = &sn->objs[i];
			if (o->kind == HM_OBJ_STORE && !strcmp(o->name, "lz4:8M") &&
			    o->stats.held_bytes > (1 << 20) && o->stats.pool_bytes &&
			    o->stats.pool_bytes * 4 < o->stats.held_bytes)
				found = true;
		}
		hm_snapshot_free(sn);
		sn = NULL;
	}
	const char *b = getenv("HMMAP_BUILD");
	char tool[512], cmd[600], out[16384] = "";
	snprintf(tool, sizeof tool, "%s/hmmap", b ? b : "build");
	bool have_tool = access(tool, X_OK) == 0;
	snprintf(cmd, sizeof cmd, "%s stat %d", tool, (int)pid);
	int rc = have_tool ? tu_run(cmd, out, sizeof out) : 0;
	reap(pid);
	CHECKF(found, "no lz4 store holding pages at a ratio above 4 in the snapshot");
	CHECKF(!have_tool || (rc == 0 && strstr(out, "compression ratio")), "hmmap stat: %d\n%.300s",
	       rc, out);
}

static void dead_process_never_listed(void)
{
	pid_t *pids;
	size_t n;
	pid_t pid = spawn("mem:8M");

	CHECK(pid > 0);
	reap(pid);
	CHECK(seg_exists(pid));
	CHECK(hm_snapshot_list(&pids, &n) == 0);
	for (size_t i = 0; i < n; i++)
		CHECKF(pids[i] != pid, "dead pid %d listed", (int)pid);
	free(pids);
	CHECK(!seg_exists(pid));
}

static void exit_removes_segment(void)
{
	int in = -1, st;
	pid_t pid = spawn_in("mem:8M", &in);

	CHECK(pid > 0);
	CHECK(seg_exists(pid));
	close(in);
	waitpid(pid, &st, 0);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "workload: %s", tu_status_str(st));
	CHECK(!seg_exists(pid));
}

static void publisher_cleans_stale(void)
{
	pid_t pid = spawn("mem:8M");

	CHECK(pid > 0);
	CHECK(seg_exists(pid));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* The next process to publish cleans stale segments on the way. */
	pid_t other = spawn("mem:8M");
	CHECK(other > 0);
	bool gone = !seg_exists(pid);
	reap(other);
	hm_snapshot_read(other, &(struct hm_snapshot *){ NULL });
	CHECK(gone);
}

/* Writes a crafted segment for pid: header h, then zeros up to size bytes. */
static int craft_header(pid_t pid, const struct tu_seg_header *h, off_t size)
{
	char path[64];
	int fd;

	snprintf(path, sizeof path, "/dev/shm/hmmap.%d", (int)pid);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, h, sizeof *h) != (ssize_t)sizeof *h || ftruncate(fd, size)) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* A well-formed header of 4 entries. */
static void craft_init(struct tu_seg_header *h, const char *magic, uint32_t version, pid_t pid,
		       uint64_t start)
{
	memset(h, 0, sizeof *h);
	memcpy(h->magic, magic, 8);
	h->version = version;
	h->header_size = 128;
	h->entry_size = sizeof(struct hm_obj_stats);
	h->capacity = 4;
	h->pid = pid;
	h->start_time = start;
	h->interval_ms = 250;
}

#define CRAFT_SIZE (128 + 4 * (off_t)sizeof(struct hm_obj_stats))

/* Writes a crafted segment for pid. */
static int craft(pid_t pid, const char *magic, uint32_t version, uint64_t start)
{
	struct tu_seg_header h;

	craft_init(&h, magic, version, pid, start);
	return craft_header(pid, &h, CRAFT_SIZE);
}

static void recycled_and_foreign_segments(void)
{
	struct hm_snapshot *sn;
	pid_t pid = spawn(NULL); /* alive, never uses hmmap */
	int rc;

	CHECK(pid > 0);
	/* Not an hmmap process. */
	rc = hm_snapshot_read(pid, &sn);
	if (rc != -ENOENT)
		reap(pid);
	CHECKF(rc == -ENOENT && strstr(hm_errormsg(), "publishes no hmmap statistics"), "%d %s",
	       rc, hm_errormsg());
	/* A segment of an earlier process with the same pid: another start time. */
	if (craft(pid, "HMMAPSTS", 1, tu_start_time(pid) + 1)) {
		reap(pid);
		CHECK(!"cannot craft a segment");
	}
	rc = hm_snapshot_read(pid, &sn);
	bool gone = !seg_exists(pid);
	/* The right start time, but the process does not map it (it ran exec). */
	craft(pid, "HMMAPSTS", 1, tu_start_time(pid));
	int rc2 = hm_snapshot_read(pid, &sn);
	bool gone2 = !seg_exists(pid);
	/* Not a statistics segment: an error, and left alone (the process is alive). */
	craft(pid, "GARBAGE!", 1, tu_start_time(pid));
	int rc3 = hm_snapshot_read(pid, &sn);
	bool kept3 = seg_exists(pid);
	/* A newer format than this library reads. */
	craft(pid, "HMMAPSTS", 99, tu_start_time(pid));
	int rc4 = hm_snapshot_read(pid, &sn);
	char msg4[256];
	snprintf(msg4, sizeof msg4, "%s", hm_errormsg());
	char path[64];
	snprintf(path, sizeof path, "/dev/shm/hmmap.%d", (int)pid);
	unlink(path);
	reap(pid);
	CHECKF(rc == -ESTALE && gone, "recycled pid: %d", rc);
	CHECKF(rc2 == -ESTALE && gone2, "after exec: %d", rc2);
	CHECKF(rc3 == -EPROTO && kept3, "garbage: %d", rc3);
	CHECKF(rc4 == -EPROTONOSUPPORT && strstr(msg4, "version 99"), "future: %d %s", rc4, msg4);
}

/*
 * A segment of version 1 whose layout contradicts itself is malformed
 * (-EPROTO, saying what is wrong), never "a newer version" nor a table
 * read short: entries shorter than version 1's, a header outside the
 * file, more entries than the file holds, more in use than the capacity.
 * A version this library does not know yet stays -EPROTONOSUPPORT.
 */
static void malformed_segments(void)
{
	static const struct {
		const char *what, *says;
		uint32_t version, header_size, entry_size, capacity, nobjs;
		int want;
	} cases[] = {
		{ "entry_size 16", "entry_size 16", 1, 128, 16, 4, 0, -EPROTO },
		{ "header_size 1<<30", "header_size 1073741824", 1, 1u << 30, 512, 4, 0, -EPROTO },
		{ "header_size 64", "header_size 64", 1, 64, 512, 4, 0, -EPROTO },
		{ "capacity past the file", "capacity 100", 1, 128, 512, 100, 0, -EPROTO },
		{ "nobjs past capacity", "nobjs 100000", 1, 128, 512, 4, 100000, -EPROTO },
		{ "capacity 0, nobjs 5", "nobjs 5", 1, 128, 512, 0, 5, -EPROTO },
		{ "version 0", "version 0", 0, 128, 512, 4, 0, -EPROTO },
		{ "version 2", "version 2", 2, 128, 16, 4, 0, -EPROTONOSUPPORT },
	};
	enum { N = sizeof cases / sizeof cases[0] };
	struct hm_snapshot *sn = NULL;
	struct tu_seg_header h;
	int rc[N];
	bool null_out[N];
	char msg[N][256];
	pid_t pid = spawn(NULL); /* alive: a malformed segment is left alone */
	char path[64];

	CHECK(pid > 0);
	snprintf(path, sizeof path, "/dev/shm/hmmap.%d", (int)pid);
	/* Read every case, then stop the process, then check: a failed check returns. */
	for (size_t i = 0; i < N; i++) {
		craft_init(&h, "HMMAPSTS", cases[i].version, pid, tu_start_time(pid));
		h.header_size = cases[i].header_size;
		h.entry_size = cases[i].entry_size;
		h.capacity = cases[i].capacity;
		h.nobjs = cases[i].nobjs;
		rc[i] = craft_header(pid, &h, CRAFT_SIZE) ? 1 : hm_snapshot_read(pid, &sn);
		snprintf(msg[i], sizeof msg[i], "%s", hm_errormsg());
		null_out[i] = sn == NULL;
		if (sn)
			hm_snapshot_free(sn);
		sn = NULL;
	}
	unlink(path);
	reap(pid);
	for (size_t i = 0; i < N; i++) {
		CHECKF(rc[i] != 1, "cannot craft %s", cases[i].what);
		CHECKF(rc[i] == cases[i].want && strstr(msg[i], cases[i].says) && null_out[i],
		       "%s: %d '%s'", cases[i].what, rc[i], msg[i]);
		/* Never "version 1; this library reads version 1". */
		CHECKF(rc[i] == -EPROTONOSUPPORT || !strstr(msg[i], "reads version"), "%s: '%s'",
		       cases[i].what, msg[i]);
	}
}

static void bad_arguments(void)
{
	struct hm_snapshot *sn = (void *)1;
	pid_t *pids;
	size_t n;

	CHECK(hm_snapshot_read(0, &sn) == -EINVAL && sn == NULL);
	CHECK(hm_snapshot_read(-5, &sn) == -EINVAL);
	CHECK(hm_snapshot_read(getpid(), NULL) == -EINVAL);
	CHECK(hm_snapshot_list(NULL, &n) == -EINVAL);
	CHECK(hm_snapshot_list(&pids, NULL) == -EINVAL);
	hm_snapshot_free(NULL);
}

/* ---- direct store access ---- */

static void store_access(void)
{
	struct hm_store *s, *ro;
	struct hm_store_info info;
	struct hm_stats st;
	char *buf = aligned_alloc(4096, 8192), *back = aligned_alloc(4096, 8192);
	char path[512];

	CHECK(buf && back);
	CHECK(hm_store_open(&s, "mem:1M", 0) == 0);
	CHECK(hm_store_info(s, &info) == 0 && info.size == 1 << 20 &&
	      (info.props & HM_PROP_BYTE_ADDRESSABLE) && !(info.props & HM_PROP_PERSISTENT));
	tu_fill(buf, 8192, 3);
	CHECK(hm_store_write(s, buf, 8192, 4096) == 0);
	CHECK(hm_store_read(s, back, 8192, 4096) == 0 && !memcmp(buf, back, 8192));
	/* Odd lengths and offsets pass through. */
	CHECK(hm_store_read(s, back, 100, 4096 + 7) == 0 && !memcmp(buf + 7, back, 100));
	CHECK(hm_store_write(s, buf, 4096, (1 << 20) - 100) == -ENOSPC);
	CHECK(strstr(hm_errormsg(), "past the end"));
	CHECK(hm_store_read(s, NULL, 10, 0) == -EINVAL);
	CHECK(hm_store_write(NULL, buf, 10, 0) == -EINVAL);
	CHECK(hm_store_read(s, back, 10, UINT64_MAX - 3) == -EINVAL);
	CHECK(hm_store_read(s, back, 0, 0) == 0);
	CHECK(hm_store_info(NULL, &info) == -EINVAL && hm_store_info(s, NULL) == -EINVAL);
	CHECK(hm_store_stats(s, &st) == 0 && st.bytes_written == 8192 && st.bytes_read == 8292);
	CHECK(hm_store_close(s) == 0);

	/* A read-only file store refuses writes and keeps its bytes. */
	tu_path(path, sizeof path, "ro.bin");
	unsigned char *ref = tu_make_file(path, 16384, 11);
	CHECK(ref);
	CHECK(hm_store_open(&ro, path, HM_STORE_RDONLY) == 0);
	CHECK(hm_store_info(ro, &info) == 0 && (info.props & HM_PROP_PERSISTENT) &&
	      (info.props & HM_PROP_READONLY));
	CHECK(hm_store_write(ro, buf, 4096, 0) == -EACCES);
	CHECK(hm_store_read(ro, back, 4096, 4096) == 0 && !memcmp(back, ref + 4096, 4096));
	CHECK(hm_store_close(ro) == 0);
	CHECK(tu_cmp_file(path, ref, 16384) == -1);
	free(ref);
	free(buf);
	free(back);
}

/*
 * hm_io_alloc(): 2 MiB-aligned, zeroed, writable to the rounded length,
 * usable for O_DIRECT requests of the file store; bad sizes and pointers
 * are refused.
 */
static void io_buffers(void)
{
	const size_t huge = 2u << 20, want = (3u << 20) + 5;
	char path[512];
	struct hm_store *s;
	unsigned char *p, *ref;

	errno = 0;
	CHECK(hm_io_alloc(0) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(hm_io_alloc(SIZE_MAX) == NULL && errno == ENOMEM);
	p = hm_io_alloc(want);
	CHECK(p && ((uintptr_t)p & (huge - 1)) == 0);
	if (!p)
		return;
	size_t zero = 0;
	for (size_t i = 0; i < want; i += 4096)
		zero += p[i] == 0;
	CHECK(zero == (want + 4095) / 4096 && p[want - 1] == 0);
	p[2 * huge - 1] = 1; /* the rounded length is the caller's too */

	tu_path(path, sizeof path, "io.bin");
	ref = tu_make_file(path, 4u << 20, 21);
	CHECK(ref);
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECK(hm_store_read(s, p, 1u << 20, 4096) == 0 && !memcmp(p, ref + 4096, 1u << 20));
	memset(p, 0x5a, 1u << 20);
	CHECK(hm_store_write(s, p, 1u << 20, 2u << 20) == 0);
	memset(ref + (2u << 20), 0x5a, 1u << 20);
	CHECK(hm_store_close(s) == 0);
	CHECK(tu_cmp_file(path, ref, 4u << 20) == -1);
	free(ref);

	CHECK(hm_io_free(p + 4096, want) == -EINVAL);
	CHECK(hm_io_free(p, 0) == -EINVAL);
	CHECK(hm_io_free(NULL, want) == 0);
	CHECK(hm_io_free(p, want) == 0);
}

/*
 * Every map and unmap publishes the segment at once. Each publish walked
 * the dirty pages of every region of the cache (a PAGEMAP_SCAN each), so
 * mapping N regions made N^2 walks: 2000 regions took 30 s to map with
 * statistics on, 1.4 s without. A region is now walked at most once per
 * half publishing interval, so N regions mapped, written and unmapped in
 * E seconds make at most N x (2 + E / interval x 2) walks, whatever the
 * speed of the host (the old code made about N^2).
 */
#define MANY_REGIONS 400

static int many_regions_child(void *arg)
{
	static struct hm_region *r[MANY_REGIONS];
	struct hm_cache *c;
	struct hm_store *s;
	struct timespec a, b;

	(void)arg;
	if (hm_cache_new(&c, 64 << 20, NULL) || hm_store_open(&s, "mem:64M", 0)) {
		printf("%s\n", hm_errormsg());
		return 1;
	}
	uint64_t w0 = atomic_load(&hm__stats_dirty_walks);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < MANY_REGIONS; i++) {
		if (hm_region_map(&r[i], c, s, (uint64_t)i << 14, 16384, PROT_READ | PROT_WRITE,
				  HM_CACHED, 4096)) {
			printf("map %d: %s\n", i, hm_errormsg());
			return 1;
		}
		memset(hm_region_addr(r[i]), i, 16384);
	}
	for (int i = 0; i < MANY_REGIONS; i++) {
		if (hm_region_unmap(r[i])) {
			printf("unmap %d: %s\n", i, hm_errormsg());
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	uint64_t walks = atomic_load(&hm__stats_dirty_walks) - w0;
	double e = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	double most = MANY_REGIONS * (2 + e * 2000.0 / HM_SNAPSHOT_INTERVAL_MS);
	if ((double)walks > most) {
		printf("%d regions mapped and unmapped in %.2f s made %llu dirty walks, "
		       "more than %.0f\n", MANY_REGIONS, e, (unsigned long long)walks, most);
		return 1;
	}
	if (!walks) {
		printf("no dirty walk was counted: is the segment published?\n");
		return 1;
	}
	return hm_store_close(s) || hm_cache_free(c);
}

static void many_regions(void)
{
	static const char *const on[] = { "HMMAP_STATS=1", NULL };

	/* The walks are counted per process: a child, which TSan kills when forked here. */
	if (tu_under("tsan"))
		SKIP("TSan kills a child forked from a multi-threaded parent");
	int st = tu_child(on, many_regions_child, NULL);

	TU_CHILD_RESULT(st);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--workload"))
		return workload(argv[2]);
	if (readlink("/proc/self/exe", self, sizeof self - 1) <= 0)
		snprintf(self, sizeof self, "%s", argv[0]);
	signal(SIGPIPE, SIG_IGN);
	RUN(latency_buckets);
	RUN(latency_percentiles);
	RUN(bad_arguments);
	RUN(store_access);
	RUN(io_buffers);
	RUN(stats_off);
	RUN(stats_bad_value);
	RUN(own_segment);
	RUN(shm_full);
	RUN(live_and_dead_process);
	RUN(compressed_store_in_snapshot);
	RUN(dead_process_never_listed);
	RUN(exit_removes_segment);
	RUN(publisher_cleans_stale);
	RUN(recycled_and_foreign_segments);
	RUN(malformed_segments);
	RUN(pid_namespace_segment);
	RUN(counters_and_latency);
	RUN(prefetch_used_when_scanned);
	RUN(counts_current_after_scan);
	RUN(prefetch_wasted_when_dropped);
	RUN(prefault_counts_demand);
	RUN(dirty_counts_written_pages);
	RUN(many_regions);
	tu_cleanup();
	return test_done();
}
