/* SPDX-License-Identifier: MIT */
/*
 * A model-based random tester for the remote stores: random sequences of
 * API calls on regions cached over redis://, memcached:// (two servers) and
 * a tier chain whose bottom tier is redis://, every byte checked against a
 * model copy of the store in ordinary memory, while the servers are frozen,
 * thawed, killed and restarted under it.
 *
 * A *world* is one store, its cache (a few pages: eviction and write-back
 * happen all the time), one region mapping the whole store, and the model.
 * Store options (page=, conns=, prefetch=, spin=, key_file=),
 * the region's page size and the cache's policy are random. Operations:
 * writes; reads compared with the model; hm_sync() (MS_SYNC, MS_ASYNC,
 * MS_INVALIDATE), after a successful MS_SYNC the store itself read with
 * hm_store_read() and compared (what the server holds); hm_advise() with
 * every advice; hm_prefault() with and without a pin, hm_unpin();
 * sequential, backward and strided scans (the core's readahead and the
 * store's strided prefetch); hm_cache_resize(); the region unmapped and
 * mapped again at another page size (every page must come back); the store
 * closed and opened again (a new store is empty: docs/remote.md, "Keys and
 * pages", and closing gives the keys back); and a phase in which a second
 * thread writes and checks its own part of the region. At the end of a
 * world the store has no integrity error and no leaked version, and (with
 * no outage, whose late writes may land after their deletes) holds at most
 * one key per page.
 *
 * Faults on the servers, modelled by what docs/remote.md promises:
 *   - freeze: SIGSTOP of a server for up to 0.2 s, SIGCONT from another
 *     thread, while the test goes on (with the store's timeout= at 10 s):
 *     faults wait, nothing fails, nothing is lost;
 *   - outage: timeout= lowered to 250 ms with hm_store_ctl(), a server
 *     frozen while a few operations run: a read may raise SIGBUS (caught)
 *     or return the model's bytes, never other bytes; a word write lands or
 *     raises SIGBUS; a sync or DONTNEED may fail. Thawed, timeout= back,
 *     hm_sync() must succeed and the server hold the model;
 *   - Redis killed (SIGKILL) and restarted with its AOF: "A Redis server
 *     restarted with persistence (AOF) keeps the pages", so nothing of the
 *     model changes. (appendfsync no: Redis writes the AOF to the file
 *     before it sends the replies, and a killed process loses nothing it
 *     wrote to a file; an fsync per write-back is for machine crashes.)
 *     memcached keeps nothing across a restart (pages are lost, SIGBUS):
 *     not modelled here, test_memcached covers it.
 * Freezes and restarts also happen while the second thread works.
 *
 * Every run is fixed by HMMAP_TEST_SEED (default 1). A mismatch, or a
 * SIGBUS or SIGSEGV the model did not allow, prints the seed, the world,
 * the operation's index and the last operations. Each fault mode runs in a
 * forked child with servers of its own. To replay: HMMAP_MODEL_CHILD=N
 * (0, 1) and HMMAP_MODEL_WORLD=NAME (redis, memcached, chain);
 * HMMAP_MODEL_OPS=PERCENT scales the operation counts; HMMAP_MODEL_TRACE=1
 * prints every operation as it starts.
 *
 * Counts of operations bound the run, never time; the sleeps are the
 * lengths of the freezes, and no check depends on how long anything took.
 */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libmemcached/memcached.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "remote_util.h"

#define HIST          48
#define HISTLEN       200
#define LONG_TIMEOUT  10000 /* ms: far beyond any freeze */
#define SHORT_TIMEOUT 250   /* ms: an outage outlasts it */

enum kind { K_REDIS = 1, K_MC, K_CHAIN };

/* Which operations one_op() may choose. */
enum {
	A_FREEZE = 0x1,  /* freeze, outage, restart */
	A_REMAP = 0x2,   /* unmap and map again, reopen */
	A_PARTNER = 0x4, /* a second thread owns [pfrom, pto): stay out, no new phase */
	A_OUTAGE = 0x8,  /* timeout= is short and a server may be frozen */
};

struct world {
	const char *name;
	enum kind kind;
	char uri[900], opts[300], keyfile[512];
	size_t ps;     /* the region's page size */
	size_t spage;  /* the store's page= */
	size_t size;   /* bytes of the store, all mapped */
	size_t budget; /* of the cache */
	const char *policy;
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	unsigned char *p;
	unsigned char *model; /* what every byte of the region must read as */
	unsigned char *buf;
	bool outage_seen;  /* since the store opened: a late write may leave a key */
	size_t pfrom, pto; /* the second thread's bytes while A_PARTNER */
	uint64_t rng, seed;
	unsigned op;
	char hist[HIST][HISTLEN];
	unsigned nhist;
	char err[400];
};

static uint64_t seed_arg = 1;
static unsigned ops_div = 1;
static int rport = -1, mport[2] = {-1, -1};
static pid_t rpid = -1, mpid[2] = {-1, -1};
static struct world *live_world;
static bool trace; /* HMMAP_MODEL_TRACE=1: every operation as it starts */

static const char *const policies[] = {"fifo",   "clock", "lru",  "sieve",
                                       "s3fifo", "arc",   "lirs", "2q"};
#define NPOLICIES (sizeof policies / sizeof policies[0])

static uint64_t rnd(struct world *w)
{
	return tu_rnd(&w->rng);
}

static size_t rndn(struct world *w, size_t n)
{
	return n ? (size_t)(rnd(w) % n) : 0;
}

static void hist(struct world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hist(struct world *w, const char *fmt, ...)
{
	va_list ap;
	char *h = w->hist[w->nhist++ % HIST];
	int n = snprintf(h, HISTLEN, "#%u ", w->op);

	va_start(ap, fmt);
	vsnprintf(h + n, HISTLEN - (size_t)n, fmt, ap);
	va_end(ap);
	if (trace) {
		printf("%.3f %s: %s\n", ru_secs(), w->name, h);
		fflush(stdout);
	}
}

static void print_history(const struct world *w)
{
	unsigned from = w->nhist > HIST ? w->nhist - HIST : 0;

	printf("  world %s: %s, region page %zu, cache %s of %zu bytes, store %zu bytes\n", w->name,
	       w->uri, w->ps, w->policy, w->budget, w->size);
	printf("  last operations:\n");
	for (unsigned i = from; i < w->nhist; i++)
		printf("    %s\n", w->hist[i % HIST]);
	fflush(stdout);
}

/* Records the first failure with the history before it; returns -1. */
static int fail(struct world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct world *w, const char *fmt, ...)
{
	va_list ap;
	char msg[300];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (w->err[0])
		return -1;
	snprintf(w->err, sizeof w->err, "HMMAP_TEST_SEED=%llu world %s op %u: %s",
	         (unsigned long long)w->seed, w->name, w->op, msg);
	printf("MISMATCH %s\n", w->err);
	print_history(w);
	return -1;
}

/* ---- the servers ---- */

static pid_t redis_start(void)
{
	rpid = ru_redis_start(rport, "--appendonly", "yes", "--appendfsync", "no", NULL);
	return rpid;
}

static int servers_start(void)
{
	rport = ru_free_port();
	if (rport < 0 || redis_start() < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		mport[i] = ru_free_port();
		mpid[i] = mport[i] < 0 ? -1 : ru_memcached_start(mport[i], 0, NULL, NULL);
		if (mpid[i] < 0)
			return -1;
	}
	return 0;
}

/* Keys on the Redis server under prefix, or -1. */
static long long redis_keys(const char *prefix)
{
	struct timeval tv = {5, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", rport, tv);
	redisReply *r;
	long long n = -1;

	if (!c || c->err) {
		if (c)
			redisFree(c);
		return -1;
	}
	r = redisCommand(c, "KEYS %s*", prefix);
	if (r && r->type == REDIS_REPLY_ARRAY)
		n = (long long)r->elements;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return n;
}

/* Items on both memcached servers (only this child's stores use them), or -1. */
static long long mc_items(void)
{
	long long sum = 0;

	for (int i = 0; i < 2; i++) {
		memcached_st *m = memcached_create(NULL);
		memcached_return_t rc;
		memcached_stat_st *st;

		memcached_server_add(m, "127.0.0.1", (in_port_t)mport[i]);
		st = memcached_stat(m, NULL, &rc);
		if (st && rc == MEMCACHED_SUCCESS)
			sum += (long long)st[0].curr_items;
		else
			sum = -1;
		if (st)
			memcached_stat_free(m, st);
		memcached_free(m);
		if (sum < 0)
			return -1;
	}
	return sum;
}

/* Keys the world's store holds on its servers, or -1. */
static long long store_keys(struct world *w)
{
	struct hm_remote_stats st;

	if (w->kind == K_MC)
		return mc_items();
	if (w->kind != K_REDIS || hm_remote_stats(w->s, &st))
		return -1;
	return redis_keys(st.prefix);
}

/* ---- checks ---- */

static bool in_partner(const struct world *w, size_t off, size_t n, unsigned allow)
{
	return (allow & A_PARTNER) && off < w->pto && off + n > w->pfrom;
}

/* Region bytes [off, off+n) against the model, a region page at a time. */
static int compare(struct world *w, size_t off, size_t n, const char *what)
{
	for (size_t a = off; a < off + n;) {
		size_t b = (a / w->ps + 1) * w->ps;
		if (b > off + n)
			b = off + n;
		memcpy(w->buf, w->p + a, b - a);
		long long bad = tu_cmp_mem(w->buf, w->model + a, b - a);
		if (bad >= 0)
			return fail(w, "%s: byte %zu reads %#x, model %#x", what, a + (size_t)bad,
			            w->buf[bad], w->model[a + (size_t)bad]);
		a = b;
	}
	return 0;
}

static int compare_all(struct world *w, unsigned allow, const char *what)
{
	if (!(allow & A_PARTNER))
		return compare(w, 0, w->size, what);
	if (w->pfrom && compare(w, 0, w->pfrom, what))
		return -1;
	return w->pto < w->size ? compare(w, w->pto, w->size - w->pto, what) : 0;
}

/*
 * After a successful MS_SYNC of [off, off+n): what the store holds there,
 * read around the cache with hm_store_read(), is the model (less the
 * second thread's part). A chain's pages may be in any tier: not checked.
 */
static int compare_store(struct world *w, size_t off, size_t n, unsigned allow)
{
	size_t a = off / w->spage * w->spage, b = (off + n + w->spage - 1) / w->spage * w->spage;
	int rc;

	if (w->kind == K_CHAIN)
		return 0;
	if (b > w->size)
		b = w->size;
	rc = hm_store_read(w->s, w->buf, b - a, a);
	if (rc)
		return fail(w, "hm_store_read(%zu, %zu) after a sync: %d %s", b - a, a, rc,
		            hm_errormsg());
	for (size_t i = off; i < off + n; i++) {
		if (in_partner(w, i, 1, allow))
			continue;
		if (w->buf[i - a] != w->model[i])
			return fail(w, "after MS_SYNC the server's byte %zu is %#x, model %#x", i,
			            w->buf[i - a], w->model[i]);
	}
	return 0;
}

/* ---- operations ---- */

/* A random range of up to max bytes, outside the second thread's part. */
static bool pick_range(struct world *w, size_t max, unsigned allow, size_t *off, size_t *n)
{
	for (int tries = 0; tries < 8; tries++) {
		*off = rndn(w, w->size);
		*n = 1 + rndn(w, max);
		if (*off + *n > w->size)
			*n = w->size - *off;
		if (!in_partner(w, *off, *n, allow))
			return true;
	}
	return false;
}

static int op_write(struct world *w, unsigned allow)
{
	size_t off, n;

	if (!pick_range(w, rndn(w, 4) ? 300 : 3 * w->ps, allow, &off, &n))
		return 0;
	if (allow & A_OUTAGE) {
		/* One aligned word: one instruction that lands or raises SIGBUS. */
		uint64_t v = rnd(w);
		off &= ~(size_t)7;
		if (in_partner(w, off, 8, allow))
			return 0;
		int bus = ru_try_write(w->p + off, &v, 8);
		hist(w, "write word %#llx at %zu during an outage: %s", (unsigned long long)v, off,
		     bus ? "SIGBUS" : "done");
		if (!bus)
			memcpy(w->model + off, &v, 8);
		return 0;
	}
	tu_fill_bytes(w->model + off, n, rnd(w));
	hist(w, "write %zu bytes at %zu", n, off);
	memcpy(w->p + off, w->model + off, n);
	return 0;
}

static int op_read(struct world *w, unsigned allow)
{
	size_t off, n;

	if (!pick_range(w, 2 * w->ps, allow, &off, &n))
		return 0;
	if (allow & A_OUTAGE) {
		/* A page at a time: each either raises SIGBUS or reads the model. */
		int nbus = 0;
		for (size_t a = off; a < off + n;) {
			size_t b = (a / w->ps + 1) * w->ps;
			if (b > off + n)
				b = off + n;
			if (ru_try_copy(w->buf, w->p + a, b - a))
				nbus++;
			else if (tu_cmp_mem(w->buf, w->model + a, b - a) >= 0)
				return fail(w,
				            "read of %zu bytes at %zu during an outage: wrong data",
				            b - a, a);
			a = b;
		}
		hist(w, "read %zu bytes at %zu during an outage: %d SIGBUS", n, off, nbus);
		return 0;
	}
	hist(w, "read %zu bytes at %zu", n, off);
	return compare(w, off, n, "read");
}

static int op_sync(struct world *w, unsigned allow)
{
	static const int flags[] = {
	    MS_SYNC, MS_SYNC, MS_SYNC, MS_ASYNC, MS_SYNC | MS_INVALIDATE, MS_INVALIDATE};
	int fl = flags[rndn(w, sizeof flags / sizeof flags[0])];
	size_t off = 0, n = w->size;

	if (rndn(w, 2)) {
		off = rndn(w, w->size) & ~(size_t)4095; /* msync wants aligned addresses */
		n = 1 + rndn(w, w->size - off);
	}
	int rc = hm_sync(w->p + off, n, fl);
	hist(w, "hm_sync(%zu, %zu, %#x) = %d", off, n, fl, rc);
	if (allow & A_OUTAGE)
		return 0;
	if (rc)
		return fail(w, "hm_sync: %d %s", rc, hm_errormsg());
	if (fl & MS_SYNC)
		return compare_store(w, off, n, allow);
	return 0;
}

static int op_advise(struct world *w, unsigned allow)
{
	static const int adv[] = {HM_ADV_NORMAL,   HM_ADV_RANDOM,   HM_ADV_SEQUENTIAL,
	                          HM_ADV_WILLNEED, HM_ADV_DONTNEED, HM_ADV_NOREUSE};
	int a = adv[rndn(w, sizeof adv / sizeof adv[0])];
	size_t off = rndn(w, w->size) & ~(size_t)4095, n = 1 + rndn(w, w->size - off);

	if (rndn(w, 3) == 0) {
		off = 0;
		n = w->size;
	}
	int rc = hm_advise(w->p + off, n, a);
	hist(w, "hm_advise(%zu, %zu, %d) = %d", off, n, a, rc);
	/* WILLNEED may find no room beside pins; DONTNEED keeps pinned pages. */
	if (rc && !(allow & A_OUTAGE) && !(a == HM_ADV_WILLNEED && rc == -ENOMEM))
		return fail(w, "hm_advise(%d): %d %s", a, rc, hm_errormsg());
	return 0;
}

static int op_prefault(struct world *w, unsigned allow)
{
	size_t off = rndn(w, w->size) & ~(size_t)4095, n = 1 + rndn(w, 4 * w->ps);
	int pin = (int)rndn(w, 2) && !(allow & A_PARTNER) ? HM_PREFAULT_PIN : 0;

	if (off + n > w->size)
		n = w->size - off;
	int rc = hm_prefault(w->p + off, n, pin);
	hist(w, "hm_prefault(%zu, %zu, %d) = %d", off, n, pin, rc);
	if (rc && rc != -ENOMEM && !(allow & A_OUTAGE))
		return fail(w, "hm_prefault: %d %s", rc, hm_errormsg());
	return 0;
}

static int op_unpin(struct world *w)
{
	int rc = hm_unpin(w->p, w->size);

	hist(w, "hm_unpin(all) = %d", rc);
	if (rc)
		return fail(w, "hm_unpin: %d %s", rc, hm_errormsg());
	return 0;
}

/* Sequential, backward or strided passes over a range, compared page by page. */
static int op_scan(struct world *w, unsigned allow)
{
	size_t np = w->size / w->ps, first = rndn(w, np), count = 1 + rndn(w, np - first);
	size_t stride = 1 + rndn(w, 6);
	int how = (int)rndn(w, 3); /* 0 forward, 1 backward, 2 strided with passes */

	if (how != 2)
		stride = 1;
	hist(w, "scan %s pages %zu+%zu stride %zu", how == 1 ? "backward" : "forward", first, count,
	     stride);
	for (size_t pass = 0; pass < (how == 2 ? stride : 1); pass++) {
		for (size_t k = pass; k < count; k += stride) {
			size_t pg = how == 1 ? first + count - 1 - k : first + k;
			if (in_partner(w, pg * w->ps, w->ps, allow))
				continue;
			if (compare(w, pg * w->ps, w->ps, "scan"))
				return -1;
		}
	}
	return 0;
}

static int op_resize(struct world *w, unsigned allow)
{
	/* Four pages at least: two threads may each touch two at once. */
	size_t b = w->ps * (4 + rndn(w, w->budget / w->ps - 3));
	int rc = hm_cache_resize(w->c, b);

	hist(w, "hm_cache_resize(%zu) = %d", b, rc);
	if (rc && rc != -EBUSY && !(allow & A_OUTAGE))
		return fail(w, "hm_cache_resize(%zu): %d %s", b, rc, hm_errormsg());
	return 0;
}

static size_t pick_ps(struct world *w)
{
	static const size_t sizes[] = {4096, 8192, 16384, 65536};

	if (w->kind == K_CHAIN)
		return rndn(w, 2) ? 4096 : 16384;
	/* Smaller than page= too: region pages then share keys (partial writes). */
	return sizes[rndn(w, sizeof sizes / sizeof sizes[0])];
}

static int region_map(struct world *w)
{
	int rc =
	    hm_region_map(&w->r, w->c, w->s, 0, w->size, PROT_READ | PROT_WRITE, HM_CACHED, w->ps);

	if (rc)
		return fail(w, "hm_region_map(page %zu): %d %s", w->ps, rc, hm_errormsg());
	w->p = hm_region_addr(w->r);
	return 0;
}

/* Unmaps the region (everything written back) and maps the store again. */
static int op_remap(struct world *w)
{
	int rc = hm_region_unmap(w->r);
	size_t old = w->ps;

	w->r = NULL;
	w->p = NULL;
	if (rc)
		return fail(w, "hm_region_unmap: %d %s", rc, hm_errormsg());
	w->ps = pick_ps(w);
	if (hm_cache_budget(w->c) < 4 * w->ps)
		w->ps = old;
	hist(w, "unmapped, mapped again with page size %zu", w->ps);
	if (region_map(w))
		return -1;
	return compare(w, 0, w->size, "after mapping again");
}

static int store_open(struct world *w);
static int store_close(struct world *w);

/* Closes the store (its keys go) and opens a new one: it starts empty. */
static int op_reopen(struct world *w)
{
	hist(w, "store closed and opened again");
	if (store_close(w) || store_open(w))
		return -1;
	memset(w->model, 0, w->size);
	return compare(w, 0, w->size, "a new store");
}

/* ---- server faults ---- */

static pid_t pick_server(struct world *w)
{
	return w->kind == K_MC ? mpid[rndn(w, 2)] : rpid;
}

struct thawer {
	pid_t pid;
	unsigned ms;
};

static void *thaw_main(void *arg)
{
	struct thawer *t = arg;

	ru_sleep_ms(t->ms);
	kill(t->pid, SIGCONT);
	return NULL;
}

static int one_op(struct world *w, unsigned allow);

/*
 * A server frozen for up to 0.2 s, thawed by another thread while this one
 * goes on: with timeout= at 10 s every operation must simply wait.
 */
static int op_freeze(struct world *w, unsigned allow)
{
	struct thawer t = {pick_server(w), 20 + (unsigned)rndn(w, 180)};
	unsigned n = 2 + (unsigned)rndn(w, 6);
	pthread_t th;
	int rc = 0;

	hist(w, "freeze server %d for %u ms, %u operations meanwhile", (int)t.pid, t.ms, n);
	kill(t.pid, SIGSTOP);
	if (pthread_create(&th, NULL, thaw_main, &t)) {
		kill(t.pid, SIGCONT);
		return fail(w, "pthread_create failed");
	}
	for (unsigned i = 0; i < n && !rc; i++)
		rc = one_op(w, allow & ~A_FREEZE & ~A_REMAP);
	pthread_join(th, NULL);
	hist(w, "thawed");
	return rc;
}

/*
 * timeout= cut to 250 ms and a server frozen while a few operations run:
 * faults may raise SIGBUS and write-back may fail, but no read returns
 * other bytes than the model's, and once the server answers and timeout=
 * is back, one hm_sync() writes everything and the server holds the model.
 */
static int op_outage(struct world *w, unsigned allow)
{
	struct hm_store *s =
	    w->kind == K_CHAIN ? hm_chain_tier(w->s, hm_chain_tiers(w->s) - 1) : w->s;
	char cmd[64];
	pid_t pid = pick_server(w);
	unsigned n = 1 + (unsigned)rndn(w, 4);
	int rc = 0;

	snprintf(cmd, sizeof cmd, "timeout=%d", SHORT_TIMEOUT);
	if (hm_store_ctl(s, cmd))
		return fail(w, "hm_store_ctl(%s): %s", cmd, hm_errormsg());
	w->outage_seen = true;
	hist(w, "outage of server %d, %u operations", (int)pid, n);
	kill(pid, SIGSTOP);
	for (unsigned i = 0; i < n && !rc; i++) {
		switch (rndn(w, 7)) {
		case 0:
		case 1:
			rc = op_read(w, allow | A_OUTAGE);
			break;
		case 2:
		case 3:
			rc = op_write(w, allow | A_OUTAGE);
			break;
		case 4:
			rc = op_sync(w, allow | A_OUTAGE);
			break;
		case 5:
			rc = op_advise(w, allow | A_OUTAGE);
			break;
		default:
			rc = op_resize(w, allow | A_OUTAGE);
			break;
		}
	}
	/* Requests from now on have the long timeout; then the server answers. */
	snprintf(cmd, sizeof cmd, "timeout=%d", LONG_TIMEOUT);
	if (hm_store_ctl(s, cmd)) {
		kill(pid, SIGCONT);
		return fail(w, "hm_store_ctl(%s): %s", cmd, hm_errormsg());
	}
	kill(pid, SIGCONT);
	hist(w, "outage ends");
	if (rc)
		return rc;
	/*
	 * Written back, which also waits for the pages of eviction batches
	 * begun during the outage (with its short timeout: they may still
	 * fail). A chain's sync writes nothing (anonymous memory): dropping
	 * every page writes them down instead.
	 */
	rc = hm_sync(w->p, w->size, w->kind == K_CHAIN ? MS_SYNC | MS_INVALIDATE : MS_SYNC);
	hist(w, "hm_sync after the outage = %d", rc);
	if (rc)
		return fail(w, "hm_sync after the outage: %d %s", rc, hm_errormsg());
	if (compare_store(w, 0, w->size, allow))
		return -1;
	return compare_all(w, allow, "after the outage");
}

/*
 * Redis killed and restarted on its AOF (fsync always): faults in between
 * wait for it (timeout= is 10 s), and it keeps every page it acknowledged.
 * Restarted from this thread: a server dies with the thread that started it.
 */
static int op_restart(struct world *w)
{
	unsigned ms = (unsigned)rndn(w, 200);

	hist(w, "redis killed, restarted after %u ms", ms);
	ru_stop(rpid, SIGKILL);
	ru_sleep_ms(ms);
	if (redis_start() < 0)
		return fail(w, "redis-server did not start again");
	return 0;
}

/* ---- the second thread ---- */

struct partner {
	struct world *w;
	unsigned ops;
	uint64_t rng;
	char err[300];
};

static void *partner_main(void *arg)
{
	struct partner *p = arg;
	struct world *w = p->w;
	unsigned char buf[512];
	size_t span = w->pto - w->pfrom;

	for (unsigned i = 0; i < p->ops && !p->err[0]; i++) {
		size_t off = w->pfrom + (size_t)(tu_rnd(&p->rng) % span);
		size_t n = 1 + (size_t)(tu_rnd(&p->rng) % sizeof buf);
		if (off + n > w->pto)
			n = w->pto - off;
		if (tu_rnd(&p->rng) % 2) {
			tu_fill_bytes(w->model + off, n, tu_rnd(&p->rng));
			memcpy(w->p + off, w->model + off, n);
		} else {
			memcpy(buf, w->p + off, n);
			long long bad = tu_cmp_mem(buf, w->model + off, n);
			if (bad >= 0)
				snprintf(p->err, sizeof p->err,
				         "second thread, its op %u: byte %zu reads %#x, model %#x",
				         i, off + (size_t)bad, buf[bad],
				         w->model[off + (size_t)bad]);
		}
	}
	return NULL;
}

static int op_concurrent(struct world *w, unsigned allow)
{
	size_t np = w->size / w->ps, part = np / 3 ? np / 3 : 1;
	unsigned n = 4 + (unsigned)rndn(w, 12);
	struct partner p;
	pthread_t t;
	int rc = 0;

	if (np < 3)
		return 0;
	/* Pins leave two pages to faults: one thread's worth, not two threads'. */
	if (hm_unpin(w->p, w->size))
		return fail(w, "hm_unpin: %s", hm_errormsg());
	w->pfrom = rndn(w, np - part + 1) * w->ps;
	w->pto = w->pfrom + part * w->ps;
	memset(&p, 0, sizeof p);
	p.w = w;
	p.ops = n * 40;
	p.rng = rnd(w) | 1;
	hist(w, "concurrent: second thread owns bytes %zu-%zu", w->pfrom, w->pto - 1);
	if (pthread_create(&t, NULL, partner_main, &p))
		return fail(w, "pthread_create failed");
	for (unsigned i = 0; i < n && !rc; i++)
		rc = one_op(w, (allow | A_PARTNER) & ~A_REMAP);
	pthread_join(t, NULL);
	if (!rc && p.err[0])
		rc = fail(w, "%s", p.err);
	hist(w, "concurrent phase ends");
	return rc;
}

/*
 * One random operation among those `allow` permits. Freezes, outages and
 * restarts do not nest; an outage never runs beside the second thread
 * (its touches cannot catch SIGBUS).
 */
static int one_op(struct world *w, unsigned allow)
{
	unsigned r = (unsigned)rndn(w, 100);

	if (r < 18)
		return op_write(w, allow);
	if (r < 36)
		return op_read(w, allow);
	if (r < 46)
		return op_sync(w, allow);
	if (r < 54)
		return op_advise(w, allow);
	if (r < 58)
		return op_prefault(w, allow);
	if (r < 61)
		return op_unpin(w);
	if (r < 67)
		return op_scan(w, allow);
	if (r < 70)
		return op_resize(w, allow);
	if (r < 73)
		return allow & A_REMAP ? op_remap(w) : 0;
	if (r < 74)
		return allow & A_REMAP ? op_reopen(w) : 0;
	if (r < 79)
		return allow & A_PARTNER ? 0 : op_concurrent(w, allow);
	if (r < 85)
		return allow & A_FREEZE ? op_freeze(w, allow) : 0;
	if (r < 88)
		return (allow & (A_FREEZE | A_PARTNER)) == A_FREEZE ? op_outage(w, allow) : 0;
	if (r < 90)
		return (allow & A_FREEZE) && w->kind != K_MC ? op_restart(w) : 0;
	if (r < 95)
		return op_read(w, allow);
	hist(w, "full check");
	return compare_all(w, allow, "full check");
}

/* ---- a world ---- */

static int store_open(struct world *w)
{
	int rc = hm_store_open(&w->s, w->uri, 0);

	w->outage_seen = false;
	if (rc)
		return fail(w, "hm_store_open(%s): %d %s", w->uri, rc, hm_errormsg());
	if (w->kind == K_CHAIN)
		rc = hm_chain_cache(w->s, &w->c);
	else
		rc = hm_cache_new(&w->c, w->budget, w->policy);
	if (rc)
		return fail(w, "cache: %d %s", rc, hm_errormsg());
	return region_map(w);
}

/* Unmaps, frees and closes; the store's keys must be gone after. */
static int store_close(struct world *w)
{
	int rc = w->r ? hm_region_unmap(w->r) : 0;
	struct hm_remote_stats st;

	if (rc)
		return fail(w, "hm_region_unmap: %d %s", rc, hm_errormsg());
	if (w->kind != K_REDIS || hm_remote_stats(w->s, &st))
		st.prefix[0] = 0;
	w->r = NULL;
	w->p = NULL;
	if (w->kind != K_CHAIN && hm_cache_free(w->c))
		return fail(w, "hm_cache_free: %s", hm_errormsg());
	w->c = NULL;
	if (hm_store_close(w->s))
		return fail(w, "hm_store_close: %s", hm_errormsg());
	w->s = NULL;
	/*
	 * A write a frozen server applied after the store gave up on it may
	 * race with the delete of its dead key: counted only without outages.
	 */
	if (w->kind == K_MC && !w->outage_seen && mc_items() != 0)
		return fail(w, "%lld items on the memcached servers after close", mc_items());
	if (st.prefix[0] && !w->outage_seen && redis_keys(st.prefix) != 0)
		return fail(w, "%lld keys %s* on the server after close", redis_keys(st.prefix),
		            st.prefix);
	return 0;
}

static int world_run(struct world *w, unsigned ops)
{
	for (w->op = 0; w->op < ops; w->op++) {
		int rc = one_op(w, A_FREEZE | A_REMAP);
		if (rc)
			return rc;
	}
	int rc = hm_sync(w->p, w->size, MS_SYNC);
	if (rc)
		return fail(w, "final hm_sync: %d %s", rc, hm_errormsg());
	if (compare_store(w, 0, w->size, 0) || compare_all(w, 0, "at the end"))
		return -1;
	/* No page was ever lost, stale or foreign: nothing here may make one so. */
	struct hm_store *rs =
	    w->kind == K_CHAIN ? hm_chain_tier(w->s, hm_chain_tiers(w->s) - 1) : w->s;
	struct hm_remote_stats st;
	if (hm_remote_stats(rs, &st) || st.integrity_errors || st.leaked)
		return fail(w, "remote statistics: integrity errors %llu, leaked %llu",
		            (unsigned long long)st.integrity_errors, (unsigned long long)st.leaked);
	/* A synced store holds one key per page at most (docs/remote.md). */
	long long keys = store_keys(w);
	if (w->kind != K_CHAIN && !w->outage_seen && keys > (long long)(w->size / w->spage))
		return fail(w, "%lld keys for %zu pages after a sync", keys, w->size / w->spage);
	return 0;
}

static unsigned ops_for(void)
{
	const char *e = getenv("HMMAP_MODEL_OPS");
	unsigned n = 90;

	if (e && atoi(e) > 0)
		n = (unsigned)((unsigned long)n * (unsigned long)atoi(e) / 100);
	return n / ops_div ? n / ops_div : 1;
}

/* Store options and the shape of the world, from the world's own seed. */
static void shape(struct world *w, int index)
{
	static const size_t spages[] = {4096, 8192, 16384, 65536};
	char kf[600];
	int n = 0;

	w->seed = seed_arg;
	w->rng = tu_seed(0x72656d6f7465ull + (uint64_t)index * 131 + (uint64_t)w->kind * 7919) | 1;
	w->spage = w->kind == K_CHAIN ? 4096 : spages[rndn(w, 4)];
	w->ps = pick_ps(w);
	w->size = (4 + rndn(w, 9)) * 65536;
	w->budget = w->ps * (4 + rndn(w, 6));
	if (w->budget < 4 * 16384)
		w->budget = 4 * 16384; /* room for a 16 KiB page size after a remap */
	w->policy = policies[rndn(w, NPOLICIES)];
	kf[0] = 0;
	if (rndn(w, 3) == 0) {
		unsigned char key[32];
		tu_path(w->keyfile, sizeof w->keyfile, w->name);
		tu_fill_bytes(key, sizeof key, rnd(w));
		int fd = open(w->keyfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0 && write(fd, key, sizeof key) == (ssize_t)sizeof key)
			snprintf(kf, sizeof kf, ",key_file=%s", w->keyfile);
		if (fd >= 0)
			close(fd);
	}
	n = snprintf(w->opts, sizeof w->opts,
	             "timeout=%d,io_timeout=%d,size=%zu,page=%zu,conns=%d,prefetch=%d%s",
	             LONG_TIMEOUT, 1000, w->size, w->spage, 1 + (int)rndn(w, 4),
	             rndn(w, 3) ? 256 : (int)rndn(w, 2) * 8, kf);
	if (w->kind != K_MC && rndn(w, 2))
		snprintf(w->opts + n, sizeof w->opts - (size_t)n, ",spin=0");
	if (w->kind == K_REDIS)
		snprintf(w->uri, sizeof w->uri, "redis://127.0.0.1:%d/%s?%s", rport, w->name,
		         w->opts);
	else if (w->kind == K_MC)
		snprintf(w->uri, sizeof w->uri, "memcached://127.0.0.1:%d,127.0.0.1:%d/%s?%s",
		         mport[0], mport[1], w->name, w->opts);
	else
		snprintf(w->uri, sizeof w->uri,
		         "tiers:dram:%zu,cache=%s%s > redis://127.0.0.1:%d/%s?%s", w->budget,
		         w->policy, rndn(w, 2) ? " > lz4:64K" : "", rport, w->name, w->opts);
}

static void run_world(enum kind kind, const char *name, int index)
{
	struct world *w;
	int rc;

	w = calloc(1, sizeof *w);
	if (!w) {
		CHECK(0);
		return;
	}
	w->name = name;
	w->kind = kind;
	shape(w, index);
	w->model = calloc(1, w->size);
	w->buf = malloc(w->size);
	live_world = w;
	rc = w->model && w->buf ? store_open(w) : fail(w, "out of memory");
	if (!rc)
		rc = world_run(w, ops_for());
	if (!rc)
		rc = store_close(w);
	live_world = NULL;
	if (w->keyfile[0])
		unlink(w->keyfile);
	free(w->model);
	free(w->buf);
	char err[sizeof w->err];
	memcpy(err, w->err, sizeof err);
	free(w);
	CHECKF(!rc && !err[0], "%s", err);
}

static int cur_index;

/*
 * In sigbus mode an eviction, and so a write-back through hiredis or
 * libmemcached, runs in the SIGBUS handler, and both libraries allocate
 * with malloc() (docs/remote.md, "Threads and signals"). TSan reports that
 * as a signal-unsafe call in every world. Under ASan the memcached world
 * and the chain die in ASan's allocator (a SEGV, or "CHECK failed ...
 * num_freed_chunks", in a realloc of libmemcached's or hiredis's called
 * from a write-back; also test_memcached with HMMAP_FAULT_MODE=sigbus),
 * never without ASan. Those runs are left out, visibly.
 */
static const char *sanitizer_sigbus(enum kind k)
{
	if (hm_fault_mode() != HM_FAULT_SIGBUS)
		return NULL;
	if (tu_under("tsan"))
		return "sigbus mode under TSan: the remote libraries' malloc() in the SIGBUS handler";
	if (tu_under("asan") && k != K_REDIS)
		return "sigbus mode under ASan: SEGV in ASan's allocator";
	return NULL;
}

static void test_redis(void)
{
	const char *why = sanitizer_sigbus(K_REDIS);

	if (why)
		SKIP("redis, %s", why);
	run_world(K_REDIS, "redis", cur_index);
}

static void test_memcached(void)
{
	const char *why = sanitizer_sigbus(K_MC);

	if (why)
		SKIP("memcached, %s", why);
	run_world(K_MC, "memcached", cur_index);
}

static void test_chain(void)
{
	const char *why = sanitizer_sigbus(K_CHAIN);

	if (why)
		SKIP("a chain, %s", why);
	run_world(K_CHAIN, "chain", cur_index);
}

/*
 * A SIGBUS that a touch expects (ru_try_*) jumps back to it; any other
 * SIGBUS or SIGSEGV is a failure: the seed and the operations before it,
 * then the default action. Not async-signal-safe, but the process ends.
 */
static struct sigaction old_segv;

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGBUS && ru_jb)
		siglongjmp(*ru_jb, 1);
	printf("FATAL signal %d at %p: HMMAP_TEST_SEED=%llu\n", sig, si->si_addr,
	       (unsigned long long)seed_arg);
	if (live_world) {
		struct world *w = live_world;
		struct hm_store *s =
		    w->kind == K_CHAIN ? hm_chain_tier(w->s, hm_chain_tiers(w->s) - 1) : w->s;
		struct hm_remote_stats st;
		if (w->p && (unsigned char *)si->si_addr >= w->p &&
		    (unsigned char *)si->si_addr < w->p + w->size)
			printf("  at byte %zu of the region\n",
			       (size_t)((unsigned char *)si->si_addr - w->p));
		if (s && !hm_remote_stats(s, &st))
			printf("  remote: integrity errors %llu, timeouts %llu, retries %llu\n",
			       (unsigned long long)st.integrity_errors,
			       (unsigned long long)st.timeouts, (unsigned long long)st.retries);
		print_history(w);
	}
	if (sig == SIGSEGV) {
		/* The touch again, under the handler before ours (ASan's report, or death). */
		sigaction(SIGSEGV, &old_segv, NULL);
		return;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static int child_main(void *arg)
{
	struct sigaction sa;

	cur_index = *(int *)arg;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_fatal;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, NULL);
	if (servers_start()) {
		ru_kill_all();
		printf("skip: redis-server or memcached would not start\n");
		return 77;
	}
	const char *only = getenv("HMMAP_MODEL_WORLD");
	if (!only || !*only || !strcmp(only, "redis"))
		RUN(test_redis);
	if (!only || !*only || !strcmp(only, "memcached"))
		RUN(test_memcached);
	if (!only || !*only || !strcmp(only, "chain"))
		RUN(test_chain);
	ru_kill_all(); /* the child leaves by _exit(): no atexit */
	return test_done();
}

static void run_child(int index)
{
	static int idx;
	const char *mode = (index + seed_arg) % 2 ? "sigbus" : "thread";
	char e_mode[64];
	const char *env[] = {e_mode, NULL};

	idx = index;
	snprintf(e_mode, sizeof e_mode, "HMMAP_FAULT_MODE=%s", mode);
	printf("  child %d: %s fault mode\n", index, mode);
	int st = tu_child(env, child_main, &idx);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		t_skipped++;
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		t_passed++;
	else {
		t_failed++;
		printf("FAIL remote model, child %d, %s mode (HMMAP_TEST_SEED=%llu): %s\n", index,
		       mode, (unsigned long long)seed_arg, tu_status_str(st));
	}
}

int main(void)
{
	const char *e = getenv("HMMAP_TEST_SEED");
	const char *only = getenv("HMMAP_MODEL_CHILD");

	seed_arg = e ? strtoull(e, NULL, 10) : 1;
	trace = getenv("HMMAP_MODEL_TRACE") && atoi(getenv("HMMAP_MODEL_TRACE"));
	if (!e)
		setenv("HMMAP_TEST_SEED", "1", 1);
	if (!ru_have("redis-server") || !ru_have("memcached")) {
		printf("skip: redis-server or memcached is not installed\n");
		t_skipped++;
		return test_done();
	}
	if (tu_under("asan"))
		ops_div = 3;
	else if (tu_under("tsan"))
		ops_div = 6;
	if (!tu_tmpdir())
		return 1;
	printf("HMMAP_TEST_SEED=%llu\n", (unsigned long long)seed_arg);
	for (int i = 0; i < 2; i++)
		if (!only || !*only || atoi(only) == i)
			run_child(i);
	ru_cleanup();
	return test_done();
}
