/* SPDX-License-Identifier: MIT */
/*
 * `hmmap probe URI`: measures a store through its plug-in (hm_store_read(),
 * hm_store_write()) and prints the figures beside the properties the store
 * declares.
 *
 *   latency    4 KiB requests at random 4 KiB-aligned offsets, one at a
 *              time (queue depth 1): p50, p99 and mean of every request.
 *              A set of 1024 offsets is touched once untimed first, so
 *              one-time costs (a RAM store's first write allocating memory)
 *              are not taken for the medium's latency.
 *   bandwidth  1 MiB sequential requests from several threads at once (the
 *              queue depth is the thread count), each thread cycling over
 *              its own part of the first 256 MiB.
 *
 * Writes never change the store's contents: each write puts back the bytes
 * just read from the same place. Even so a write races with any other
 * writer of the store, so a store that holds the user's data
 * (HM_PROP_SHARED: a file: or pmem: store, a device, on tmpfs as on a
 * disk) is written only with --write; a store without it (mem:, fault:,
 * lz4:, a remote store's keys of this run) is private to this process and
 * is always written. Persistence does not decide it: a pmem: file on tmpfs
 * is not persistent, and is still the user's file.
 *
 * Such a store serves a block it holds no data for without its medium: a
 * remote store fills a never-written page locally, with no request; a
 * compressed store keeps no zero page. Reading those would time a memset.
 * So before the reads, the probe writes data (text-like, compressible as
 * pages often are) into every block of a private store that reads as zeros:
 * the 1024 latency offsets and the first 64 MiB the read bandwidth cycles
 * over.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "hmmap.h"
#include "core/discover.h"
#include "cli.h"

#define LAT_BLOCK 4096u
#define LAT_OFFSETS 1024u
#define BW_BLOCK (1u << 20)
#define BW_RANGE (256ull << 20)
#define PRIME_RANGE (64ull << 20)
#define MAX_THREADS 64
#define MAX_SAMPLES (1u << 22)

/*
 * Why the measurement stopped, in a sentence: the first failure of any
 * thread, written where it happens, since a bandwidth thread's store error
 * is in that thread's hm_errormsg() and an allocation names no buffer.
 */
static char why_failed[512];
static pthread_mutex_t why_lock = PTHREAD_MUTEX_INITIALIZER;

static int __attribute__((format(printf, 2, 3))) failed(int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&why_lock);
	if (!why_failed[0]) {
		va_start(ap, fmt);
		vsnprintf(why_failed, sizeof why_failed, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&why_lock);
	return rc;
}

/* A failed request: what it was, then the store's sentence for it. */
static int request_failed(int rc, bool write, size_t len, uint64_t off)
{
	return failed(rc, "%s %zu bytes at offset %" PRIu64 ": %s", write ? "writing" : "reading",
		      len, off, *hm_errormsg() ? hm_errormsg() : strerror(-rc));
}

static void probe_usage(FILE *f)
{
	fprintf(f,
		"usage: hmmap probe URI [--json] [--write] [--save NAME] [--size SIZE] [--seconds S] "
		"[--threads N]\n"
		"\n"
		"Measures a store's read and write latency (4 KiB at random offsets, one\n"
		"request at a time: p50, p99, mean) and bandwidth (1 MiB sequential\n"
		"requests from N threads at once), and prints them with the properties the\n"
		"store declares (byte-addressable, persistent, coherent, capacity).\n"
		"\n"
		"Writes put back the bytes just read, so the contents never change; still,\n"
		"a store of the user's data (file:, pmem:, a device, on tmpfs too) is\n"
		"written only with --write, since another writer at the same moment could\n"
		"lose its write. Other stores (mem:, fault:, lz4:, a remote store's keys of\n"
		"this run) are private to the probe and always written; blocks of theirs\n"
		"that hold no data are written first (\"primed\"), so that reads time\n"
		"stored data, not a never-written page served locally.\n"
		"\n"
		"  --json         print one JSON object instead (fields in docs/stats.md)\n"
		"  --write        also measure writes on a store of the user's data\n"
		"  --save NAME    record the store and its figures as NAME in the stores file\n"
		"                 that `hmmap ls` lists ($HMMAP_STORES, or\n"
		"                 ~/.config/hmmap/stores), replacing a line of that name\n"
		"  --size SIZE    the part of the store used, from offset 0 (all of it, at\n"
		"                 most 1G)\n"
		"  --seconds S    total measuring time, split over the tests (2)\n"
		"  --threads N    threads for the bandwidth tests, 1 to 64 (4)\n"
		"  -h, --help     this text\n"
		"\n"
		"Exit status: 0 success, 1 the store cannot be opened or fails, 2 bad usage.\n");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/*
 * What timing one request costs by itself: the median of back-to-back clock
 * reads. It is taken off every latency sample, so that a store that answers
 * in 1 us is not reported as the clock's 1 us plus its overhead.
 */
static uint64_t clock_overhead_ns(void)
{
	uint64_t d[1001];

	for (int i = 0; i < 1001; i++) {
		uint64_t a = now_ns();
		d[i] = now_ns() - a;
	}
	qsort(d, 1001, sizeof d[0], cmp_u64);
	return d[500];
}

struct lat {
	bool done;
	uint64_t n, p50, p99, min, max;
	uint64_t clock_ns; /* timing overhead taken off each sample */
	uint64_t preempted; /* samples left out: the probe lost the CPU meanwhile */
	double mean;
};

struct bw {
	bool done;
	double mbps; /* 10^6 bytes per second */
	uint64_t bytes;
	double seconds;
};

static bool all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Makes block [off, off+len) of a private store hold data (see the top of
 * the file): read it, fill each 4 KiB page of it that reads as zeros with
 * lines of text, and write it back if any was. Returns 0 or -errno;
 * *primed counts the bytes filled.
 */
static int prime_block(struct hm_store *s, char *buf, size_t len, uint64_t off, uint64_t *primed)
{
	uint64_t filled = 0;
	int rc = hm_store_read(s, buf, len, off);

	if (rc)
		return request_failed(rc, false, len, off);
	for (size_t pg = 0; pg + LAT_BLOCK <= len; pg += LAT_BLOCK) {
		char *p = buf + pg;
		if (!all_zero(p, LAT_BLOCK))
			continue;
		for (size_t k = 0; k + 64 <= LAT_BLOCK; k += 64) {
			char line[128];
			int n = snprintf(line, sizeof line, "probe page %" PRIu64 ", line %zu: the "
							    "quick brown fox", (off + pg) / LAT_BLOCK, k / 64);
			memcpy(p + k, line, n < 63 ? (size_t)n : 63); /* then zeros, as it was */
		}
		filled += LAT_BLOCK;
	}
	if (!filled)
		return 0;
	rc = hm_store_write(s, buf, len, off);
	if (rc)
		return request_failed(rc, true, len, off);
	*primed += filled;
	return 0;
}

/* Involuntary context switches of the calling thread so far. */
static long preemptions(void)
{
	struct rusage u;

	return getrusage(RUSAGE_THREAD, &u) ? 0 : u.ru_nivcsw;
}

/*
 * What hmsync does to make this store's data durable, as a word for
 * --json ("map_sync+clwb+sfence", "msync", "fsync", "store", "none"), and
 * in *why a few words on why (text output).
 */
static const char *sync_method(struct hm_store *s, const struct hm_store_info *info,
			       const char **why)
{
	static char buf[64];
	const char *scheme = hm_store_scheme(s), *w = "";

	if (info->props & HM_PROP_MAP_SYNC) {
		snprintf(buf, sizeof buf, "map_sync+%s",
			 hm_persistence_name(HM_PERSIST_FLUSH));
		w = "MAP_SYNC mapping: stores are durable once flushed from the CPU caches";
	} else if (!strcmp(scheme, "pmem")) {
		snprintf(buf, sizeof buf, "msync");
		w = info->props & HM_PROP_PERSISTENT ?
			    "no MAP_SYNC here: the page cache sits in between" :
			    "no MAP_SYNC here; the file system is volatile, as tmpfs is";
	} else if (!strcmp(scheme, "file")) {
		snprintf(buf, sizeof buf, "fsync");
		w = "dirty pages are written back, then the file is flushed";
	} else if (info->props & HM_PROP_PERSISTENT) {
		snprintf(buf, sizeof buf, "store");
		w = "dirty pages are written back and the store flushed its own way";
	} else {
		snprintf(buf, sizeof buf, "none");
		w = "a volatile store: nothing outlives the process";
	}
	if (why)
		*why = w;
	return buf;
}

/*
 * Queue-depth-1 latency of 4 KiB requests at random offsets for `secs`.
 * A write first reads the block (untimed) and writes those bytes back.
 * Requests run in batches, and a batch during which this thread was
 * preempted (another process took the CPU) measures the machine's load,
 * not the store: it is left out, and counted. Waiting for I/O is a
 * voluntary switch and stays in. The check is a system call, which on a
 * kernel with page-table isolation flushes the TLB; made before every
 * request it added 30 ns or more to a 300 ns one. So a batch of fast
 * requests is about 20 us long and only a request of 20 us or more
 * stands alone.
 */
static int measure_latency(struct hm_store *s, uint64_t size, bool write, bool prime,
			   double secs, struct lat *out, uint64_t *primed)
{
	enum { BATCH_NS = 20000, MAX_BATCH = 256 };
	uint64_t nblk = size / LAT_BLOCK, offs[LAT_OFFSETS], seed = 0x9E3779B97F4A7C15ull;
	uint64_t *samples = malloc(MAX_SAMPLES * sizeof *samples);
	void *buf = NULL;
	uint64_t n = 0, ovh = clock_overhead_ns(), dropped = 0, kept_any = 0, batch = 1;
	double sum = 0, end;
	unsigned i = 0;
	int rc = 0;

	if (!samples || posix_memalign(&buf, 4096, LAT_BLOCK)) {
		free(samples);
		return failed(-ENOMEM, "cannot allocate %s for the latency samples",
			      samples ? "a 4 KiB buffer" : "32 MiB");
	}
	for (unsigned k = 0; k < LAT_OFFSETS; k++)
		offs[k] = (xs(&seed) % nblk) * LAT_BLOCK;
	/*
	 * Untimed pass: one-time costs of first touches stay out of the
	 * figures. It takes at most the time of a measurement: on a slow store
	 * the requests then cycle over the offsets it reached.
	 */
	unsigned noffs = 0;
	end = now_s() + secs;
	for (; noffs < LAT_OFFSETS && !rc && (noffs < 16 || now_s() < end); noffs++) {
		if (prime) {
			rc = prime_block(s, buf, LAT_BLOCK, offs[noffs], primed);
			continue;
		}
		rc = hm_store_read(s, buf, LAT_BLOCK, offs[noffs]);
		if (rc) {
			request_failed(rc, false, LAT_BLOCK, offs[noffs]);
			break;
		}
		if (write && (rc = hm_store_write(s, buf, LAT_BLOCK, offs[noffs]))) {
			request_failed(rc, true, LAT_BLOCK, offs[noffs]);
			break;
		}
	}
	end = now_s() + secs;
	while (!rc && n + batch <= MAX_SAMPLES) {
		uint64_t first = n, bsum = 0;
		long pre = preemptions();

		for (uint64_t k = 0; k < batch && !rc; k++, i = (i + 1) % noffs) {
			uint64_t t0, t1;
			if (write) {
				rc = hm_store_read(s, buf, LAT_BLOCK, offs[i]);
				if (rc) {
					request_failed(rc, false, LAT_BLOCK, offs[i]);
					break;
				}
				t0 = now_ns();
				rc = hm_store_write(s, buf, LAT_BLOCK, offs[i]);
			} else {
				t0 = now_ns();
				rc = hm_store_read(s, buf, LAT_BLOCK, offs[i]);
			}
			t1 = now_ns();
			if (rc) {
				request_failed(rc, write, LAT_BLOCK, offs[i]);
				break;
			}
			samples[n] = t1 - t0 > ovh ? t1 - t0 - ovh : 0;
			bsum += samples[n++];
		}
		if (rc)
			break;
		if (preemptions() != pre) {
			/* Kept aside, used only if nothing else could be measured. */
			dropped += n - first;
			if (kept_any)
				n = first;
			else
				sum += (double)bsum;
		} else {
			if (!kept_any) {
				/* The first clean batch: forget the preempted ones before it. */
				kept_any = 1;
				memmove(samples, samples + first, (n - first) * sizeof *samples);
				n -= first;
				sum = 0;
			}
			sum += (double)bsum;
		}
		/* Next batch: about BATCH_NS of requests at this batch's pace. */
		uint64_t per = bsum / batch + 1;
		batch = BATCH_NS / per;
		batch = batch < 1 ? 1 : batch > MAX_BATCH ? MAX_BATCH : batch;
		/* At least 20 requests, however slow the store. */
		if (n >= 20 && now_s() >= end)
			break;
		if (n < 20 && now_s() >= end + 10 * secs)
			break; /* a machine so busy that clean samples are rare */
	}
	if (!rc && n) {
		qsort(samples, n, sizeof *samples, cmp_u64);
		out->preempted = kept_any ? dropped : 0;
		out->n = n;
		out->min = samples[0];
		out->max = samples[n - 1];
		/* Nearest rank: the smallest sample with at least q of them at or below. */
		out->p50 = samples[(n * 50 + 99) / 100 - 1];
		out->p99 = samples[(n * 99 + 99) / 100 - 1];
		out->mean = sum / (double)n;
		out->clock_ns = ovh;
		out->done = true;
	}
	free(buf);
	free(samples);
	return rc;
}

/*
 * The time at least one thread was in a timed write: the writes' bytes over
 * it are what the store moved while writing, however the threads' untimed
 * reads fell between them.
 */
struct bw_busy {
	pthread_mutex_t lock;
	int inflight;
	uint64_t since, total_ns;
};

struct bw_thread {
	struct hm_store *s;
	struct bw_busy *busy;
	uint64_t first, count; /* blocks of this thread */
	bool write;
	double end;
	uint64_t bytes;
	int rc;
};

static void busy_enter(struct bw_busy *b)
{
	pthread_mutex_lock(&b->lock);
	if (!b->inflight++)
		b->since = now_ns();
	pthread_mutex_unlock(&b->lock);
}

static void busy_leave(struct bw_busy *b)
{
	pthread_mutex_lock(&b->lock);
	if (!--b->inflight)
		b->total_ns += now_ns() - b->since;
	pthread_mutex_unlock(&b->lock);
}

static void *bw_main(void *arg)
{
	struct bw_thread *t = arg;
	void *buf;
	uint64_t i = 0;

	if (!(buf = hm_io_alloc(BW_BLOCK))) {
		t->rc = failed(-ENOMEM, "cannot allocate a 1 MiB buffer for a bandwidth thread");
		return NULL;
	}
	memset(buf, 0, BW_BLOCK);
	while (!t->rc) {
		uint64_t off = (t->first + i) * BW_BLOCK;
		if (t->write) {
			/* Put back what is there; only the write is timed. */
			t->rc = hm_store_read(t->s, buf, BW_BLOCK, off);
			if (t->rc) {
				request_failed(t->rc, false, BW_BLOCK, off);
				break;
			}
			busy_enter(t->busy);
			t->rc = hm_store_write(t->s, buf, BW_BLOCK, off);
			busy_leave(t->busy);
		} else {
			t->rc = hm_store_read(t->s, buf, BW_BLOCK, off);
		}
		if (t->rc) {
			request_failed(t->rc, t->write, BW_BLOCK, off);
			break;
		}
		t->bytes += BW_BLOCK;
		i = (i + 1) % t->count;
		if (now_s() >= t->end)
			break;
	}
	hm_io_free(buf, BW_BLOCK);
	return NULL;
}

/*
 * Bandwidth of 1 MiB sequential requests from `nt` threads at once for
 * `secs`. Reads: bytes over wall time. Writes, each after an untimed read
 * of its block: bytes over the time some thread was writing (a sum of the
 * threads' own rates would count a store's bandwidth once per thread).
 */
/*
 * Primes [0, *range) of a private store in 1 MiB blocks (see the top of the
 * file) for at most secs, and at least `min` blocks; *range becomes the part
 * primed, over which bandwidth is then measured, so that a slow store's
 * priming takes no longer than a measurement does.
 */
static int prime_range(struct hm_store *s, uint64_t *range, uint64_t min, double secs,
		       uint64_t *primed)
{
	char *buf = hm_io_alloc(BW_BLOCK);
	double end = now_s() + secs;
	uint64_t off = 0;
	int rc = 0;

	if (!buf)
		return failed(-ENOMEM, "cannot allocate a 1 MiB buffer to fill the store");
	for (; off + BW_BLOCK <= *range && !rc && (off < min * BW_BLOCK || now_s() < end);
	     off += BW_BLOCK)
		rc = prime_block(s, buf, BW_BLOCK, off, primed);
	hm_io_free(buf, BW_BLOCK);
	*range = off;
	return rc;
}

/* The requests cycle over [0, range). */
static int measure_bw(struct hm_store *s, uint64_t range, bool write, int nt, double secs,
		      struct bw *out)
{
	struct bw_thread t[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	struct bw_busy busy = {.lock = PTHREAD_MUTEX_INITIALIZER};
	uint64_t nblk = range / BW_BLOCK, per, bytes = 0;
	double t0, t1;
	int rc = 0, started = 0;

	if (nblk < (uint64_t)nt)
		nt = (int)nblk;
	per = nblk / (uint64_t)nt;
	t0 = now_s();
	for (int i = 0; i < nt; i++) {
		t[i] = (struct bw_thread){ .s = s, .busy = &busy, .first = (uint64_t)i * per,
					   .count = per, .write = write, .end = t0 + secs };
		int err = pthread_create(&th[i], NULL, bw_main, &t[i]);
		if (err) {
			rc = failed(-err, "cannot start bandwidth thread %d of %d: %s", i + 1, nt,
				    strerror(err));
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	t1 = now_s();
	if (rc)
		return rc;
	for (int i = 0; i < nt; i++) {
		if (t[i].rc)
			return t[i].rc;
		bytes += t[i].bytes;
	}
	out->bytes = bytes;
	out->seconds = t1 - t0;
	if (write)
		out->mbps = busy.total_ns ? (double)bytes / ((double)busy.total_ns / 1e9) / 1e6 : 0;
	else
		out->mbps = (double)bytes / out->seconds / 1e6;
	out->done = true;
	return 0;
}

static void print_lat_text(const char *what, const struct lat *l, const char *why)
{
	char a[32], b[32], c[32];

	if (!l->done) {
		printf("  %-22s not measured: %s\n", what, why);
		return;
	}
	hm_cli_ns(a, sizeof a, l->p50);
	hm_cli_ns(b, sizeof b, l->p99);
	hm_cli_ns(c, sizeof c, (uint64_t)l->mean);
	printf("  %-22s p50 %-9s p99 %-9s mean %-9s (%" PRIu64 " requests; %" PRIu64
	       " preempted left out; clock %" PRIu64 " ns taken off)\n",
	       what, a, b, c, l->n, l->preempted, l->clock_ns);
}

static void print_bw_text(const char *what, const struct bw *w, int nt, const char *why)
{
	if (!w->done) {
		printf("  %-22s not measured: %s\n", what, why);
		return;
	}
	printf("  %-22s %.1f MB/s (%d thread%s, %.0f MiB in %.2f s)\n", what, w->mbps, nt,
	       nt == 1 ? "" : "s", (double)w->bytes / (1 << 20), w->seconds);
}

static void json_lat(const char *key, const struct lat *l)
{
	if (!l->done) {
		printf(", \"%s\": null", key);
		return;
	}
	printf(", \"%s\": {\"p50_ns\": %" PRIu64 ", \"p99_ns\": %" PRIu64 ", \"mean_ns\": %.0f, "
	       "\"min_ns\": %" PRIu64 ", \"max_ns\": %" PRIu64 ", \"requests\": %" PRIu64
	       ", \"clock_overhead_ns\": %" PRIu64 ", \"preempted_left_out\": %" PRIu64 "}",
	       key, l->p50, l->p99, l->mean, l->min, l->max, l->n, l->clock_ns, l->preempted);
}

static void json_bw(const char *key, const struct bw *w)
{
	if (!w->done) {
		printf(", \"%s\": null", key);
		return;
	}
	printf(", \"%s\": {\"mb_per_s\": %.1f, \"bytes\": %" PRIu64 ", \"seconds\": %.3f}", key,
	       w->mbps, w->bytes, w->seconds);
}


int hm_cli_probe(int argc, char **argv)
{
	const char *uri = NULL, *save = NULL;
	bool json = false, allow_write = false;
	uint64_t size = 0;
	double secs = 2.0;
	int nt = 4, rc;
	struct hm_store *s;
	struct hm_store_info info;
	struct lat rl = { 0 }, wl = { 0 };
	struct bw rb = { 0 }, wb = { 0 };
	const char *nowrite = "";

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--json")) {
			json = true;
		} else if (!strcmp(a, "--write")) {
			allow_write = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			probe_usage(stdout);
			return 0;
		} else if (!strcmp(a, "--save")) {
			save = i + 1 < argc ? argv[++i] : NULL;
			if (!save || !*save) {
				fprintf(stderr, "hmmap probe: --save needs a store name\n\n");
				probe_usage(stderr);
				return 2;
			}
			/* The stores file's rule, checked before minutes of measuring. */
			for (const char *c = save; *c; c++)
				if (!isalnum((unsigned char)*c) && !strchr("_-.", *c)) {
					fprintf(stderr, "hmmap probe: --save '%s' is not a store name "
							"(letters, digits, '_', '-', '.')\n", save);
					return 2;
				}
		} else if (!strcmp(a, "--size") || !strcmp(a, "--seconds") ||
			   !strcmp(a, "--threads")) {
			const char *v = i + 1 < argc ? argv[++i] : NULL;
			char *end;
			uint64_t u;
			if (!v) {
				fprintf(stderr, "hmmap probe: %s needs a value\n\n", a);
				probe_usage(stderr);
				return 2;
			}
			if (!strcmp(a, "--size")) {
				if (hm_parse_size(v, &u) || u < BW_BLOCK) {
					fprintf(stderr, "hmmap probe: --size '%s' is not a size of "
							"at least 1M\n", v);
					return 2;
				}
				size = u;
			} else if (!strcmp(a, "--seconds")) {
				secs = strtod(v, &end);
				if (*end || end == v || !isfinite(secs) || secs < 0.1 ||
				    secs > 3600) {
					fprintf(stderr, "hmmap probe: --seconds '%s' is not a time "
							"from 0.1 to 3600\n", v);
					return 2;
				}
			} else {
				if (hm_parse_u64(v, &u) || u < 1 || u > MAX_THREADS) {
					fprintf(stderr, "hmmap probe: --threads '%s' is not a count "
							"from 1 to %d\n", v, MAX_THREADS);
					return 2;
				}
				nt = (int)u;
			}
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "hmmap probe: unknown option '%s'\n\n", a);
			probe_usage(stderr);
			return 2;
		} else if (uri) {
			fprintf(stderr, "hmmap probe: one URI only ('%s' is extra)\n\n", a);
			probe_usage(stderr);
			return 2;
		} else {
			uri = a;
		}
	}
	if (!uri) {
		fprintf(stderr, "hmmap probe: missing URI\n\n");
		probe_usage(stderr);
		return 2;
	}
	/*
	 * Opened writable when the store allows it (opening changes nothing),
	 * so that "read-only" is what the store says; written only as below.
	 */
	rc = hm_store_open(&s, uri, 0);
	if (rc == -EACCES || rc == -EROFS || rc == -EPERM)
		rc = hm_store_open(&s, uri, HM_STORE_RDONLY);
	if (rc) {
		fprintf(stderr, "hmmap probe: %s\n", hm_errormsg());
		return 1;
	}
	hm_store_info(s, &info);
	bool do_write = !(info.props & HM_PROP_READONLY) &&
			(allow_write || !(info.props & HM_PROP_SHARED));
	if (info.props & HM_PROP_READONLY)
		nowrite = "the store is read-only";
	else if (!do_write)
		nowrite = "a store of the user's data is written only with --write";
	if (!size)
		size = info.size < (1ull << 30) ? info.size : (1ull << 30);
	if (size > info.size) {
		fprintf(stderr, "hmmap probe: --size is larger than the store (%" PRIu64 " bytes)\n",
			info.size);
		hm_store_close(s);
		return 2;
	}
	if (size < BW_BLOCK) {
		fprintf(stderr, "hmmap probe: the store holds %" PRIu64 " bytes; at least 1 MiB is "
				"needed\n", info.size);
		hm_store_close(s);
		return 1;
	}

	double part = secs / (do_write ? 4 : 2);
	/* Reads of a private store are of blocks it holds data for (top of the file). */
	bool prime = do_write && !(info.props & HM_PROP_SHARED);
	uint64_t primed = 0;
	/*
	 * Bandwidth cycles over at most 256 MiB (a RAM store need not allocate
	 * more); over a private store, over the part primed to hold data, where
	 * the writes then put back data, not zero pages a store may skip.
	 */
	uint64_t bw_range = size < BW_RANGE ? size : BW_RANGE;
	if (prime && bw_range > PRIME_RANGE)
		bw_range = PRIME_RANGE;
	rc = measure_latency(s, size, false, prime, part, &rl, &primed);
	if (!rc && prime)
		rc = prime_range(s, &bw_range, (uint64_t)nt, part, &primed);
	if (!rc)
		rc = measure_bw(s, bw_range, false, nt, part, &rb);
	if (!rc && do_write)
		rc = measure_latency(s, size, true, false, part, &wl, &primed);
	if (!rc && do_write)
		rc = measure_bw(s, bw_range, true, nt, part, &wb);
	if (rc) {
		fprintf(stderr, "hmmap probe: %s\n", why_failed[0] ? why_failed : strerror(-rc));
		hm_store_close(s);
		return 1;
	}

	if (json) {
		printf("{\"uri\": ");
		hm_cli_json_str(hm_store_uri(s));
		printf(", \"scheme\": ");
		hm_cli_json_str(hm_store_scheme(s));
		printf(", \"capacity\": %" PRIu64 ", \"byte_addressable\": %s, \"persistent\": %s, "
		       "\"coherent\": %s, \"read_only\": %s, \"block_device\": %s, \"tested_bytes\": "
		       "%" PRIu64 ", \"threads\": %d",
		       info.size, info.props & HM_PROP_BYTE_ADDRESSABLE ? "true" : "false",
		       info.props & HM_PROP_PERSISTENT ? "true" : "false",
		       info.props & HM_PROP_COHERENT ? "true" : "false",
		       info.props & HM_PROP_READONLY ? "true" : "false",
		       info.props & HM_PROP_BLOCKDEV ? "true" : "false", size, nt);
		printf(", \"primed_bytes\": %" PRIu64, primed);
		printf(", \"persistence\": ");
		hm_cli_json_str(hm_persistence_name(hm_store_persistence(s)));
		printf(", \"map_sync\": %s, \"sync_method\": ",
		       info.props & HM_PROP_MAP_SYNC ? "true" : "false");
		hm_cli_json_str(sync_method(s, &info, NULL));
		json_lat("read_latency", &rl);
		json_lat("write_latency", &wl);
		json_bw("read_bandwidth", &rb);
		json_bw("write_bandwidth", &wb);
		printf("}\n");
	} else {
		char cap[32], tested[32];
		hm_cli_bytes(cap, sizeof cap, info.size);
		hm_cli_bytes(tested, sizeof tested, size);
		printf("store %s (%s)\n", hm_store_uri(s), hm_store_scheme(s));
		printf("  declared: capacity %s, byte-addressable %s, persistent %s, coherent %s, "
		       "read-only %s%s\n",
		       cap, info.props & HM_PROP_BYTE_ADDRESSABLE ? "yes" : "no",
		       info.props & HM_PROP_PERSISTENT ? "yes" : "no",
		       info.props & HM_PROP_COHERENT ? "yes" : "no",
		       info.props & HM_PROP_READONLY ? "yes" : "no",
		       info.props & HM_PROP_BLOCKDEV ? ", block device" : "");
		/* What makes a store durable: MAP_SYNC + CPU cache flush, or msync/fsync. */
		const char *why;
		const char *how = sync_method(s, &info, &why);
		printf("  persistence: %s; hmsync: %s%s%s%s\n",
		       hm_persistence_name(hm_store_persistence(s)), how, *why ? " (" : "", why,
		       *why ? ")" : "");
		printf("  measured over the first %s:\n", tested);
		if (primed) {
			char pb[32];
			hm_cli_bytes(pb, sizeof pb, primed);
			printf("  primed: %s of blocks that held no data were written first, so that "
			       "reads reach stored data\n",
			       pb);
		}
		print_lat_text("read 4K, depth 1", &rl, "");
		print_lat_text("write 4K, depth 1", &wl, nowrite);
		print_bw_text("read 1M sequential", &rb, nt, "");
		print_bw_text("write 1M sequential", &wb, nt, nowrite);
	}
	hm_store_close(s);
	if (save) {
		/* The figures `hmmap ls` shows for the store: p50 latencies, MB/s. */
		char fig[256], path[4096];
		int n = 0;
		if (rl.done)
			n += snprintf(fig + n, sizeof fig - (size_t)n, "read_latency_ns=%" PRIu64 " ",
				      rl.p50);
		if (wl.done)
			n += snprintf(fig + n, sizeof fig - (size_t)n, "write_latency_ns=%" PRIu64 " ",
				      wl.p50);
		if (rb.done)
			n += snprintf(fig + n, sizeof fig - (size_t)n, "read_bandwidth_mbps=%.0f ",
				      rb.mbps);
		if (wb.done)
			n += snprintf(fig + n, sizeof fig - (size_t)n, "write_bandwidth_mbps=%.0f ",
				      wb.mbps);
		if (n > 0)
			fig[n - 1] = 0;
		else
			fig[0] = 0;
		if (hm__stores_save(save, uri, fig, path, sizeof path)) {
			fprintf(stderr, "hmmap probe: cannot save '%s': %s\n", save, hm_errormsg());
			return 1;
		}
		if (!json)
			printf("  saved as store '%s' in %s (hmmap ls lists it)\n", save, path);
	}
	return 0;
}
