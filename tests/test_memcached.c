/* SPDX-License-Identifier: MIT */
/*
 * The memcached:// store against two real memcached instances (-M) on
 * loopback, started here and stopped at exit even on failure:
 *
 *   - a server without -M (it would evict pages) and an unreachable server
 *     are refused with clear errors;
 *   - pages spread over both servers (consistent hashing), through
 *     eviction, sync and re-read; never-written pages cost no round trip;
 *   - a server that stops answering (SIGSTOP): SIGBUS after timeout=, dirty
 *     pages kept, sync fails, then succeeds, nothing lost;
 *   - a server killed and restarted (memcached keeps nothing): its pages
 *     raise SIGBUS, never read as zeros or old data; the other server's
 *     pages and the pages that were dirty in the cache are intact;
 *   - replicas=1 (a copy on the other server): killing and restarting a
 *     server loses nothing, a page tampered with on one server is read from
 *     the other, and a page bad on both raises SIGBUS;
 *   - a synced store holds exactly one key per page, however often pages
 *     were rewritten;
 *   - deletes of dead versions on a frozen server hold up no write to the
 *     other server;
 *   - a server restarted without -M at the same address receives no page:
 *     sync fails with a clear error until it runs with -M again;
 *   - a frozen server's requests fail at timeout=, not up to an io_timeout
 *     or more later.
 */
#include <libmemcached/memcached.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "remote_util.h"

#define PS 4096u
#define NPAGES 512u
#define LEN ((size_t)NPAGES * PS)
#define BUDGET (64u * PS)

static int mport[2];
static pid_t mpid[2];

static pid_t start_mc(int i)
{
	mpid[i] = ru_memcached_start(mport[i], 0, NULL, NULL);
	return mpid[i];
}

static void uri2(char *buf, size_t n, const char *ns, const char *opts)
{
	snprintf(buf, n, "memcached://127.0.0.1:%d,127.0.0.1:%d/%s%s%s", mport[0], mport[1], ns,
		 opts ? "?" : "", opts ? opts : "");
}

/* curr_items of the server on port (via libmemcached's stats), or -1. */
static long long items(int port)
{
	memcached_st *m = memcached_create(NULL);
	memcached_return_t rc;
	memcached_stat_st *st;
	long long n = -1;

	memcached_server_add(m, "127.0.0.1", (in_port_t)port);
	st = memcached_stat(m, NULL, &rc);
	if (st && rc == MEMCACHED_SUCCESS)
		n = (long long)st[0].curr_items;
	if (st)
		memcached_stat_free(m, st);
	memcached_free(m);
	return n;
}

/* Stores a raw value under key on the server on port. */
static int raw_set(int port, const char *key, const void *val, size_t len)
{
	memcached_st *m = memcached_create(NULL);
	memcached_return_t rc;

	memcached_server_add(m, "127.0.0.1", (in_port_t)port);
	rc = memcached_set(m, key, strlen(key), val, len, 0, 0);
	memcached_free(m);
	return rc == MEMCACHED_SUCCESS ? 0 : -1;
}

static int raw_get(int port, const char *key, void *val, size_t cap, size_t *len)
{
	memcached_st *m = memcached_create(NULL);
	memcached_return_t rc;
	uint32_t fl;
	char *v;

	memcached_server_add(m, "127.0.0.1", (in_port_t)port);
	v = memcached_get(m, key, strlen(key), len, &fl, &rc);
	memcached_free(m);
	if (!v)
		return -1;
	if (*len <= cap)
		memcpy(val, v, *len);
	free(v);
	return *len <= cap ? 0 : -1;
}

/* ------------------------------------------------------------------ cases */

static void t_refused(void)
{
	struct hm_store *s;
	char uri[256], want[64];
	int port = ru_free_port(), rc;
	pid_t pid;

	CHECK(port > 0);
	pid = ru_memcached_start(port, 1, NULL, NULL);
	CHECK(pid > 0);
	snprintf(uri, sizeof uri, "memcached://127.0.0.1:%d,127.0.0.1:%d/ns", mport[0], port);
	rc = hm_store_open(&s, uri, 0);
	ru_stop(pid, SIGKILL);
	snprintf(want, sizeof want, "127.0.0.1:%d", port);
	CHECKF(rc == -EINVAL && strstr(hm_errormsg(), "-M") && strstr(hm_errormsg(), want),
	       "rc %d: %s", rc, hm_errormsg());
	/* Unreachable (the same port, now closed). */
	snprintf(uri, sizeof uri, "memcached://127.0.0.1:%d/ns?io_timeout=300", port);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -ECONNREFUSED && strstr(hm_errormsg(), "cannot reach") &&
		       strstr(hm_errormsg(), want),
	       "rc %d: %s", rc, hm_errormsg());
	/* In words: no object address or libmemcached source line. */
	CHECKF(!strstr(hm_errormsg(), "(0x") && !strstr(hm_errormsg(), ".cc:"), "%s",
	       hm_errormsg());
	/*
	 * A server that takes connections and never answers (a socket nobody
	 * accepts on), after a healthy one: the message names the silent one.
	 */
	int silent, ls = ru_silent_server(&silent);
	CHECK(ls >= 0);
	snprintf(uri, sizeof uri, "memcached://127.0.0.1:%d,127.0.0.1:%d/ns?io_timeout=300",
		 mport[0], silent);
	rc = hm_store_open(&s, uri, 0);
	close(ls);
	snprintf(want, sizeof want, "cannot reach 127.0.0.1:%d", silent);
	CHECKF(rc == -ECONNREFUSED && strstr(hm_errormsg(), want), "rc %d: %s", rc, hm_errormsg());
	/* A server listed twice is a mistake, not a second server. */
	snprintf(uri, sizeof uri, "memcached://127.0.0.1:%d,127.0.0.1:%d/ns", mport[0], mport[0]);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -EINVAL && strstr(hm_errormsg(), "listed twice"), "rc %d: %s", rc,
	       hm_errormsg());
	/* A name that does not resolve is not a refused connection. */
	rc = hm_store_open(&s, "memcached://no-such-host.invalid:11211/ns?io_timeout=300", 0);
	CHECKF(rc == -EHOSTUNREACH && strstr(hm_errormsg(), "no-such-host.invalid"), "rc %d: %s",
	       rc, hm_errormsg());
	/* More copies than servers. */
	uri2(uri, sizeof uri, "ns", "replicas=2");
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -EINVAL && strstr(hm_errormsg(), "replicas=2"), "rc %d: %s", rc,
	       hm_errormsg());
	/* A page larger than the servers' largest item. */
	uri2(uri, sizeof uri, "ns", "page=1M");
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -EINVAL && strstr(hm_errormsg(), "-I"), "rc %d: %s", rc, hm_errormsg());
}

/* Out of descriptors (RLIMIT_NOFILE): EMFILE, said as such, not a refused connection. */
static void t_out_of_descriptors(void)
{
	char uri[256];

	snprintf(uri, sizeof uri, "memcached://127.0.0.1:%d/ns?io_timeout=300", mport[0]);
	ru_check_out_of_descriptors(uri);
}

static void t_spread_roundtrip(void)
{
	struct ru_env e;
	struct hm_remote_stats st;
	char uri[256];
	unsigned char *ref = malloc(LEN), page[PS];
	long long i0 = items(mport[0]), i1 = items(mport[1]);

	CHECK(ref);
	uri2(uri, sizeof uri, "mc", NULL);
	/*
	 * Never written: zeros, and no round trip. (A budget that holds the
	 * region: the core may write back clean pages it read ahead when it
	 * evicts them, which would be round trips of its own.)
	 */
	CHECKF(!ru_env_open(&e, uri, LEN, LEN), "%s", hm_errormsg());
	for (size_t off = 0; off < LEN; off += PS)
		CHECK(!ru_try_copy(page, e.p + off, PS) && !page[0] && !page[PS - 1]);
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECKF(st.round_trips == 0 && st.zero_fills >= NPAGES, "round trips %llu",
	       (unsigned long long)st.round_trips);
	ru_env_close(&e);
	CHECKF(!ru_env_open(&e, uri, LEN, BUDGET), "%s", hm_errormsg());
	tu_fill(ref, LEN, 5);
	CHECK(!ru_try_write(e.p, ref, LEN));
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = ru_verify(e.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	/* Both servers got a fair share (consistent hashing). */
	long long d0 = items(mport[0]) - i0, d1 = items(mport[1]) - i1;
	CHECKF(d0 > NPAGES / 8 && d1 > NPAGES / 8, "items: %lld and %lld", d0, d1);
	ru_env_close(&e);
	/* Closing deletes them. */
	CHECKF(items(mport[0]) == i0 && items(mport[1]) == i1, "items left after close");
	free(ref);
}

struct toucher {
	unsigned char *p;
	unsigned char page[PS];
	int bus;
	double secs;
};

static void *touch_thread(void *arg)
{
	struct toucher *t = arg;
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	t->bus = ru_try_copy(t->page, t->p, PS);
	clock_gettime(CLOCK_MONOTONIC, &b);
	t->secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
	return NULL;
}

static void t_server_frozen(void)
{
	struct ru_env e;
	char uri[256];
	unsigned char *ref = malloc(LEN), tmp[PS];
	int sigbus = 0, wrong = 0, rc;
	double bus_secs = 0;

	CHECK(ref);
	uri2(uri, sizeof uri, "frz", "timeout=1200,io_timeout=300");
	CHECKF(!ru_env_open(&e, uri, LEN, BUDGET), "%s", hm_errormsg());
	tu_fill(ref, LEN, 6);
	CHECK(!ru_try_write(e.p, ref, LEN));
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	/*
	 * Pages go to servers by a hash of keys that hold a random object id:
	 * 24 dirty pages all miss the frozen server once in 2^24 runs (8 did
	 * once in 256, and the sync then rightly succeeded).
	 */
	for (int i = 0; i < 24; i++)
		CHECK(!ru_try_copy(tmp, e.p + (size_t)i * PS, PS));
	kill(mpid[0], SIGSTOP);
	/* Dirty pages while a server is frozen. */
	for (int i = 0; i < 24; i++) {
		memset(ref + (size_t)i * PS, 0x70 + i, 32);
		memset(e.p + (size_t)i * PS, 0x70 + i, 32);
	}
	/* Faults on absent pages: those on the frozen server raise SIGBUS after the timeout. */
	for (int pg = 100; pg < 110 && !sigbus; pg++) {
		struct toucher t = { .p = e.p + (size_t)pg * PS };
		pthread_t th;
		pthread_create(&th, NULL, touch_thread, &t);
		pthread_join(th, NULL);
		if (t.bus) {
			sigbus = 1;
			bus_secs = t.secs;
		} else {
			wrong += memcmp(t.page, ref + (size_t)pg * PS, PS) != 0;
		}
	}
	rc = sigbus ? hm_sync(e.p, LEN, MS_SYNC) : 0;
	/* Thawed before any check can end the case: the next cases need the server. */
	kill(mpid[0], SIGCONT);
	CHECKF(!wrong, "%d pages read wrong", wrong);
	CHECKF(sigbus, "no page on the frozen server among 10");
	CHECKF(bus_secs >= 0.9 && bus_secs < 10, "SIGBUS after %.2f s", bus_secs);
	CHECKF(rc < 0, "sync succeeded with a frozen server");
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync once the server answers: %s", hm_errormsg());
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = ru_verify(e.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	ru_env_close(&e);
	free(ref);
}

/*
 * A region of the pool (namespace ns), written from ref (seed) and synced;
 * then its last `dirty` pages, which are resident, are changed in both.
 * 0, or -1 (and nothing left open) if the region could not be opened,
 * written or synced.
 */
static int open_synced_dirty(struct ru_env *e, unsigned char *ref, const char *ns, int seed,
			     int dirty, int mark)
{
	char uri[256];

	uri2(uri, sizeof uri, ns, "timeout=3000,io_timeout=300");
	if (ru_env_open(e, uri, LEN, BUDGET))
		return -1;
	tu_fill(ref, LEN, seed);
	if (ru_try_write(e->p, ref, LEN) || hm_sync(e->p, LEN, MS_SYNC)) {
		ru_env_close(e);
		return -1;
	}
	for (int i = 0; i < dirty; i++) {
		size_t off = (size_t)(NPAGES - 1 - i) * PS;
		memset(ref + off, mark + i, 64);
		memset(e->p + off, mark + i, 64);
	}
	return 0;
}

static void t_server_restarted(void)
{
	struct ru_env e;
	unsigned char *ref = malloc(LEN), page[PS];
	int lost = 0, good = 0, rc;

	CHECK(ref);
	if (open_synced_dirty(&e, ref, "rst", 8, 16, 0x90)) {
		CHECKF(0, "%s", hm_errormsg());
		free(ref);
		return;
	}
	ru_stop(mpid[0], SIGKILL);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	/* With half the pages on the dead server, some of the 16 dirty pages go there. */
	CHECKF(rc < 0, "sync succeeded with a server dead");
	CHECK(start_mc(0) > 0);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync after the restart: %s", hm_errormsg());
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	for (size_t pg = 0; pg < NPAGES; pg++) {
		if (ru_try_copy(page, e.p + pg * PS, PS)) {
			lost++;
			CHECKF(pg < NPAGES - 16, "page %zu, dirty at the kill, was lost", pg);
			continue;
		}
		CHECKF(!memcmp(page, ref + pg * PS, PS), "page %zu read wrong data", pg);
		good++;
	}
	/* The restarted server's pages are gone and say so; the others are intact. */
	CHECKF(lost > 0 && good > (int)NPAGES / 4, "%d lost, %d good", lost, good);
	struct hm_remote_stats st;
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECK(st.integrity_errors >= (uint64_t)lost);
	ru_env_close(&e);
	free(ref);
}

static void t_replicas(void)
{
	struct ru_env e;
	struct hm_remote_stats st;
	char uri[256], key[160];
	unsigned char *ref = malloc(LEN), page[PS], frame[PS + 64];
	size_t fl;
	int rc;

	CHECK(ref);
	uri2(uri, sizeof uri, "rep", "replicas=1,timeout=3000,io_timeout=300");
	CHECKF(!ru_env_open(&e, uri, LEN, BUDGET), "%s", hm_errormsg());
	tu_fill(ref, LEN, 10);
	CHECK(!ru_try_write(e.p, ref, LEN));
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	/* Killed: reads go to the copy at once; restarted empty: nothing is lost. */
	ru_stop(mpid[1], SIGKILL);
	long long bad = ru_verify(e.p, ref, LEN / 2);
	CHECKF(bad == -1, "mismatch at %lld with a server down", bad);
	CHECK(start_mc(1) > 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	bad = ru_verify(e.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld after the restart", bad);
	/* Reading repaired the copies the restarted server had lost. */
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECKF(st.repairs > NPAGES / 8, "%llu copies repaired", (unsigned long long)st.repairs);
	/*
	 * A page stale on one server (its version changed): the other copy is
	 * read. The page is one whose copy on the restarted server exists
	 * (written there as its primary, or repaired by a read).
	 */
	CHECK(hm_remote_stats(e.s, &st) == 0);
	size_t pg;
	for (pg = 0; pg < NPAGES; pg++) {
		/* Written once: version 1 ("hm:NS:OBJ:IDX:VER"). */
		snprintf(key, sizeof key, "%s%zx:1", st.prefix, pg);
		if (raw_get(mport[1], key, frame, sizeof frame, &fl) == 0)
			break;
	}
	CHECK(pg < NPAGES);
	frame[5] ^= 0xff; /* the version in the frame's header */
	CHECK(raw_set(mport[1], key, frame, fl) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	CHECKF(!ru_try_copy(page, e.p + pg * PS, PS), "SIGBUS: %s", hm_errormsg());
	CHECK(!memcmp(page, ref + pg * PS, PS));
	/* The read repaired the stale copy; now make both stale: SIGBUS. */
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECK(st.repairs >= 1);
	CHECK(raw_set(mport[0], key, frame, fl) == 0);
	CHECK(raw_set(mport[1], key, frame, fl) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	CHECK(ru_try_copy(page, e.p + pg * PS, PS) == 1);
	/* Rewritten by the application: good again everywhere. */
	memset(ref + pg * PS, 0x3c, PS);
	rc = ru_try_write(e.p + pg * PS, ref + pg * PS, PS);
	CHECK(rc == 1); /* the write touches the absent page first: SIGBUS again */
	ru_env_close(&e);
	free(ref);
}

static long long items_both(void)
{
	long long a = items(mport[0]), b = items(mport[1]);

	return a < 0 || b < 0 ? -1 : a + b;
}

static void t_sync_one_key_per_page(void)
{
	struct ru_env e;
	char uri[256];
	unsigned char *ref = malloc(LEN);
	long long before = items_both(), after;

	CHECK(ref && before >= 0);
	uri2(uri, sizeof uri, "gc", "timeout=3000");
	CHECKF(!ru_env_open(&e, uri, LEN, BUDGET), "%s", hm_errormsg());
	/* Every page written, then rewritten twice: three versions each. */
	for (int round = 0; round < 3; round++) {
		tu_fill(ref, LEN, 20 + round);
		CHECK(!ru_try_write(e.p, ref, LEN));
		CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	}
	after = items_both();
	CHECKF(after - before == NPAGES, "%lld keys for %u pages after sync", after - before,
	       NPAGES);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = ru_verify(e.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	ru_env_close(&e);
	/* Closing gives the memory back. */
	after = items_both();
	CHECKF(after == before, "%lld keys left after close (%lld before)", after, before);
	free(ref);
}

/*
 * Pages rewritten while one server is frozen: the deletes of their dead
 * versions that go to it must not fail, nor hold up for long, a write whose
 * new version went to the other server. 63 dead versions are queued before
 * the freeze; the first write that succeeds then makes 64, and the deletes
 * run, as many as a write of one page takes (about half to the frozen
 * server): each of them on the live server goes.
 */
static void t_deletes_to_frozen_server(void)
{
	enum { N = 128, LIVE = 100 };
	struct hm_store *s;
	struct hm_remote_stats st;
	char uri[256], key[160];
	unsigned char *buf = malloc((size_t)N * PS), frame[PS + 64], want[PS];
	int rc[N], on1[N], dead1[63], ndead1 = 0, ok = 0, failed = 0, n;
	size_t fl;

	CHECK(buf);
	uri2(uri, sizeof uri, "fzd", "timeout=2000,io_timeout=300,prefetch=0");
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	for (int i = 0; i < N; i++)
		memset(buf + (size_t)i * PS, 0x10 + i, PS);
	CHECKF(hm_store_write(s, buf, (size_t)N * PS, 0) == 0, "%s", hm_errormsg());
	for (int i = 0; i < 63; i++)
		memset(buf + (size_t)i * PS, 0x90 + i, PS);
	CHECKF(hm_store_write(s, buf, 63 * PS, 0) == 0, "%s", hm_errormsg());
	CHECK(hm_remote_stats(s, &st) == 0);
	CHECKF(st.dels == 0, "%llu deletes before the freeze", (unsigned long long)st.dels);
	/* The dead versions the live server holds. */
	for (int i = 0; i < 63; i++) {
		snprintf(key, sizeof key, "%s%x:1", st.prefix, i);
		dead1[i] = raw_get(mport[1], key, frame, sizeof frame, &fl) == 0;
		ndead1 += dead1[i];
	}
	kill(mpid[0], SIGSTOP);
	/*
	 * Rewrites until three went to the live server: each new version goes
	 * to either server by the hash of its key, and a write to the frozen
	 * one fails after timeout=. All 28 miss the live server once in 2^28.
	 */
	for (n = LIVE; n < N && ok < 3; n++) {
		memset(buf, 0x50 + n, PS);
		rc[n] = hm_store_write(s, buf, PS, (uint64_t)n * PS);
		/* Version 2 of the page, if it went to the server that answers. */
		snprintf(key, sizeof key, "%s%x:2", st.prefix, n);
		on1[n] = raw_get(mport[1], key, frame, sizeof frame, &fl) == 0;
		ok += on1[n];
		failed += !ok && rc[n] != 0;
	}
	kill(mpid[0], SIGCONT);
	CHECKF(ok > 0, "no new version on the live server in %d writes", n - LIVE);
	for (int i = 0; i < N; i++) {
		int w = i >= LIVE && i < n;
		if (w)
			CHECKF(!on1[i] || rc[i] == 0, "page %d stored on the live server, write said %d",
			       i, rc[i]);
		/* A write that failed left the page as it was. */
		memset(want, i < 63 ? 0x90 + i : w && rc[i] == 0 ? 0x50 + i : 0x10 + i, PS);
		CHECKF(hm_store_read(s, frame, PS, (uint64_t)i * PS) == 0, "%s", hm_errormsg());
		CHECKF(!memcmp(frame, want, PS), "page %d read wrong", i);
	}
	/* The deletes ran: those to the live server went through. */
	CHECK(hm_remote_stats(s, &st) == 0);
	CHECKF(st.dels > 0, "no delete ran");
	/*
	 * The first write to the live server ran the deletes: of a queue of
	 * the 63, the versions of the `failed` writes before it (dead too: they
	 * may still land) and its own dead version, it took 65, newest first,
	 * so all but the oldest failed - 1 of the 63. Each of those that was
	 * on the live server is gone.
	 */
	for (int i = failed > 1 ? failed - 1 : 0; i < 63; i++) {
		snprintf(key, sizeof key, "%s%x:1", st.prefix, i);
		CHECKF(!dead1[i] || raw_get(mport[1], key, frame, sizeof frame, &fl) != 0,
		       "dead version of page %d still on the live server (%d there before)", i,
		       ndead1);
	}
	hm_store_close(s);
	free(buf);
}

static void t_restarted_evicting(void)
{
	struct ru_env e;
	unsigned char *ref = malloc(LEN), page[PS];
	int rc;

	CHECK(ref);
	/* Dirty resident pages, then server 0 comes back without -M. */
	if (open_synced_dirty(&e, ref, "rev", 30, 32, 0xa0)) {
		CHECKF(0, "%s", hm_errormsg());
		free(ref);
		return;
	}
	ru_stop(mpid[0], SIGKILL);
	mpid[0] = ru_memcached_start(mport[0], 1, NULL, NULL);
	CHECK(mpid[0] > 0);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc < 0 && strstr(hm_errormsg(), "-M"), "sync to an evicting server: %d %s", rc,
	       hm_errormsg());
	CHECKF(items(mport[0]) == 0, "the evicting server received %lld items", items(mport[0]));
	/* Back with -M: the dirty pages go out, nothing of them lost. */
	ru_stop(mpid[0], SIGKILL);
	CHECK(start_mc(0) > 0);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync with -M again: %s", hm_errormsg());
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	for (int i = 0; i < 32; i++) {
		size_t off = (size_t)(NPAGES - 1 - i) * PS;
		CHECKF(!ru_try_copy(page, e.p + off, PS) && !memcmp(page, ref + off, PS),
		       "dirty page %zu lost", off / PS);
	}
	ru_env_close(&e);
	free(ref);
}

static void t_timeouts_kept(void)
{
	char uri[256];

	snprintf(uri, sizeof uri, "memcached://127.0.0.1:%d/tmo?timeout=1500,prefetch=0", mport[0]);
	ru_check_timeouts(uri, mpid[0], 1500);
}

int main(void)
{
	if (!ru_have("memcached")) {
		printf("skip memcached tests: memcached not installed\n");
		t_skipped++;
		return test_done();
	}
	ru_install_bus();
	for (int i = 0; i < 2; i++) {
		mport[i] = ru_free_port();
		if (mport[i] < 0 || (i && mport[1] == mport[0]) || start_mc(i) < 0) {
			printf("FAIL setup: cannot start memcached\n");
			t_failed++;
			ru_kill_all();
			ru_cleanup();
			return test_done();
		}
	}
	RUN(t_refused);
	RUN(t_out_of_descriptors);
	RUN(t_spread_roundtrip);
	RUN(t_server_frozen);
	RUN(t_server_restarted);
	RUN(t_replicas);
	RUN(t_sync_one_key_per_page);
	RUN(t_deletes_to_frozen_server);
	RUN(t_restarted_evicting);
	RUN(t_timeouts_kept);
	ru_kill_all();
	ru_cleanup();
	return test_done();
}
