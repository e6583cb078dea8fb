/* SPDX-License-Identifier: MIT */
/*
 * The redis:// store against real redis-server processes on loopback
 * (started here, stopped at exit even on failure):
 *
 *   - bad URIs, an unreachable server, wrong or missing credentials: clear
 *     errors that never contain the password; a password in a URI (or in
 *     both remote tiers of a chain) never shown in messages, the
 *     statistics segment or `hmmap probe`;
 *   - data through eviction, sync and re-read, byte for byte;
 *   - a never-written page reads as zeros with no round trip;
 *   - two stores on one namespace never see each other's pages;
 *   - a server with an evicting maxmemory-policy is refused;
 *   - encryption: a page modified on the server, moved to another key or
 *     replayed from an older version raises SIGBUS, never returns data; a
 *     replay is caught without encryption too (versions);
 *   - a server that stops answering (SIGSTOP): SIGBUS after timeout=, dirty
 *     pages kept, sync fails, then succeeds once it answers, nothing lost;
 *   - a server killed and restarted (AOF): faults wait for it, write-back
 *     resumes, every byte intact;
 *   - WAIT: a sync waits for the replica; asking for more replicas than
 *     exist fails the sync;
 *   - several threads at once.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "remote_util.h"

#define PS 4096u
#define NPAGES 512u
#define LEN ((size_t)NPAGES * PS)
#define BUDGET (64u * PS)
#define RM_TEST_KEYMAX 128

static int port1 = -1;
static pid_t pid1 = -1;

struct env {
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	unsigned char *p;
};

static int env_open(struct env *e, const char *uri, size_t budget)
{
	int rc;

	memset(e, 0, sizeof *e);
	rc = hm_store_open(&e->s, uri, 0);
	if (rc)
		return rc;
	rc = hm_cache_new(&e->c, budget, "clock");
	if (!rc)
		rc = hm_region_map(&e->r, e->c, e->s, 0, LEN, PROT_READ | PROT_WRITE, HM_CACHED, PS);
	if (rc) {
		if (e->c)
			hm_cache_free(e->c);
		hm_store_close(e->s);
		memset(e, 0, sizeof *e);
		return rc;
	}
	e->p = hm_region_addr(e->r);
	return 0;
}

static void env_close(struct env *e)
{
	if (e->r && hm_region_unmap(e->r)) {
		/* Write-back failed: drop the data on purpose so that close works. */
		hm_advise(e->p, LEN, HM_ADV_DONTNEED);
		hm_region_unmap(e->r);
	}
	if (e->c)
		hm_cache_free(e->c);
	if (e->s)
		hm_store_close(e->s);
	memset(e, 0, sizeof *e);
}

static void uri_of(char *buf, size_t n, int port, const char *ns, const char *opts)
{
	snprintf(buf, n, "redis://127.0.0.1:%d/%s%s%s", port, ns, opts ? "?" : "", opts ? opts : "");
}

/* Compares region memory with ref, catching SIGBUS; -1 if equal, -2 on SIGBUS, else offset. */
static long long verify(const unsigned char *p, const unsigned char *ref, size_t len)
{
	unsigned char page[PS];

	for (size_t off = 0; off < len; off += PS) {
		if (ru_try_copy(page, p + off, PS))
			return -2;
		long long bad = tu_cmp_mem(page, ref + off, PS);
		if (bad >= 0)
			return (long long)off + bad;
	}
	return -1;
}

static redisContext *cli(int port)
{
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	return c;
}

static long long count_keys(int port, const char *pattern)
{
	redisContext *c = cli(port);
	redisReply *r;
	long long n = -1;

	if (!c)
		return -1;
	r = redisCommand(c, "KEYS %s", pattern);
	if (r && r->type == REDIS_REPLY_ARRAY)
		n = (long long)r->elements;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return n;
}

/* The key of page idx under prefix (one version after a sync), or -1. */
static int cur_key(int port, const char *prefix, unsigned idx, char *out, size_t n)
{
	redisContext *c = cli(port);
	redisReply *r;
	int rc = -1;

	if (!c)
		return -1;
	r = redisCommand(c, "KEYS %s%x:*", prefix, idx);
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->len < n) {
		memcpy(out, r->element[0]->str, r->element[0]->len + 1);
		rc = 0;
	}
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return rc;
}

static int get_raw(int port, const char *key, unsigned char *buf, size_t cap, size_t *len)
{
	redisContext *c = cli(port);
	redisReply *r;
	int rc = -1;

	if (!c)
		return -1;
	r = redisCommand(c, "GET %s", key);
	if (r && r->type == REDIS_REPLY_STRING && r->len <= cap) {
		memcpy(buf, r->str, r->len);
		*len = r->len;
		rc = 0;
	}
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return rc;
}

static int set_raw(int port, const char *key, const unsigned char *buf, size_t len)
{
	redisContext *c = cli(port);
	redisReply *r;
	int rc = -1;

	if (!c)
		return -1;
	r = redisCommand(c, "SET %s %b", key, buf, len);
	rc = r && r->type == REDIS_REPLY_STATUS ? 0 : -1;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return rc;
}

static int redis_cmd(int port, const char *cmd)
{
	redisContext *c = cli(port);
	redisReply *r;
	int rc;

	if (!c)
		return -1;
	r = redisCommand(c, cmd);
	rc = r && r->type != REDIS_REPLY_ERROR ? 0 : -1;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return rc;
}

/* ------------------------------------------------------------------ cases */

static void t_bad_uris(void)
{
	static const struct {
		const char *uri;
		int err;
		const char *msg;
	} bad[] = {
		{ "redis:", -EINVAL, "must start with '//'" },
		{ "redis:127.0.0.1:6379", -EINVAL, "must start with '//'" },
		{ "redis://", -EINVAL, "no server" },
		{ "redis:///ns", -EINVAL, "no server" },
		{ "redis://127.0.0.1:0", -EINVAL, "port" },
		{ "redis://127.0.0.1:99999", -EINVAL, "port" },
		{ "redis://127.0.0.1:abc", -EINVAL, "port" },
		{ "redis://127.0.0.1:6379/", -EINVAL, "namespace" },
		{ "redis://127.0.0.1:6379/a b", -EINVAL, "namespace" },
		{ "redis://127.0.0.1:6379/a:b", -EINVAL, "namespace" },
		/* Several servers are seed nodes of a cluster, as with redis-cluster://. */
		{ "redis://127.0.0.1:1,127.0.0.1:2", -ECONNREFUSED, "no seed node answered" },
		{ "redis://127.0.0.1:6379/ns?", -EINVAL, "empty option" },
		{ "redis://127.0.0.1:6379/ns?bogus=1", -EINVAL, "unknown option 'bogus'" },
		{ "redis://127.0.0.1:6379/ns?timeout=x", -EINVAL, "timeout" },
		{ "redis://127.0.0.1:6379/ns?page=3000", -EINVAL, "power of two" },
		{ "redis://127.0.0.1:6379/ns?size=0", -EINVAL, "size" },
		{ "redis://127.0.0.1:6379/ns?conns=0", -EINVAL, "conns" },
		{ "redis://127.0.0.1:6379/ns?spin=soon", -EINVAL, "spin" },
		{ "redis://127.0.0.1:6379/ns?spin=10001", -EINVAL, "spin" },
		{ "redis://127.0.0.1:6379/ns?replicas=many", -EINVAL, "replicas" },
		{ "redis://127.0.0.1:6379/ns?key_file=/nonexistent/k", -ENOENT, "key_file" },
		{ "redis://127.0.0.1:6379/ns?password_file=/nonexistent/p", -ENOENT, "password_file" },
		/* %00 would cut the password short (and fall back to the environment's). */
		{ "redis://:%00x@127.0.0.1:6379/ns", -EINVAL, "bad password" },
		{ "redis://a%00b:pw@127.0.0.1:6379/ns", -EINVAL, "bad user name" },
		{ "redis://ho$t:6379", -EINVAL, "bad character" },
		{ "redis-cluster://", -EINVAL, "no server" },
		{ "memcached://127.0.0.1:11211/ns?timeout=", -EINVAL, "timeout" },
		{ "memcached://u:pw@127.0.0.1:11211", -EINVAL, "no credentials" },
	};
	struct hm_store *s;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = hm_store_open(&s, bad[i].uri, 0);
		CHECKF(rc == bad[i].err, "%s: rc %d (%s), want %d", bad[i].uri, rc, hm_errormsg(),
		       bad[i].err);
		CHECKF(strstr(hm_errormsg(), bad[i].msg), "%s: message '%s' lacks '%s'", bad[i].uri,
		       hm_errormsg(), bad[i].msg);
	}
	/* A bad key file: wrong length. */
	char kp[512];
	tu_path(kp, sizeof kp, "short.key");
	FILE *f = fopen(kp, "w");
	CHECK(f);
	fputs("abcd\n", f);
	fclose(f);
	chmod(kp, 0600);
	char uri[700];
	snprintf(uri, sizeof uri, "redis://127.0.0.1:6379/ns?key_file=%s", kp);
	CHECK(hm_store_open(&s, uri, 0) == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "32 raw bytes or 64 hex"), "%s", hm_errormsg());
}

static void t_unreachable(void)
{
	struct hm_store *s;
	char uri[256], want[64];
	int port = ru_free_port(), rc;

	CHECK(port > 0);
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/ns?io_timeout=500", port);
	snprintf(want, sizeof want, "127.0.0.1:%d", port);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -ECONNREFUSED, "rc %d: %s", rc, hm_errormsg());
	CHECKF(strstr(hm_errormsg(), want) && strstr(hm_errormsg(), "cannot connect"), "%s",
	       hm_errormsg());
	/* A name that does not resolve is not a refused connection. */
	rc = hm_store_open(&s, "redis://no-such-host.invalid:6379/ns?io_timeout=500", 0);
	CHECKF(rc == -EHOSTUNREACH, "rc %d: %s", rc, hm_errormsg());
	CHECKF(strstr(hm_errormsg(), "no-such-host.invalid"), "%s", hm_errormsg());
	rc = hm_store_open(&s, "redis-cluster://no-such-host.invalid:6379/ns?io_timeout=500", 0);
	CHECKF(rc == -EHOSTUNREACH, "rc %d: %s", rc, hm_errormsg());
	CHECKF(strstr(hm_errormsg(), "no-such-host.invalid"), "%s", hm_errormsg());
	/* A server that takes the connection and never answers: said in words. */
	int silent, ls = ru_silent_server(&silent);
	CHECK(ls >= 0);
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/ns?io_timeout=300,timeout=600", silent);
	rc = hm_store_open(&s, uri, 0);
	close(ls);
	CHECKF(rc == -ECONNREFUSED && strstr(hm_errormsg(), "no reply within io_timeout"),
	       "rc %d: %s", rc, hm_errormsg());
}

/* Out of descriptors (RLIMIT_NOFILE): EMFILE, said as such, not a refused connection. */
static void t_out_of_descriptors(void)
{
	char uri[256];

	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/ns?io_timeout=500", port1);
	ru_check_out_of_descriptors(uri);
}

static void t_roundtrip(void)
{
	struct env e;
	struct hm_remote_stats st;
	char uri[256];
	unsigned char *ref = malloc(LEN);
	int rc;

	CHECK(ref);
	uri_of(uri, sizeof uri, port1, "rt", NULL);
	rc = env_open(&e, uri, BUDGET);
	CHECKF(!rc, "%s", hm_errormsg());
	tu_fill(ref, LEN, 42);
	/* Twice the budget and more: pages are evicted and written back on the way. */
	CHECK(!ru_try_write(e.p, ref, LEN));
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = verify(e.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECKF(st.sets >= NPAGES && st.gets + st.prefetch_hits >= NPAGES,
	       "sets %llu gets %llu prefetch hits %llu", (unsigned long long)st.sets,
	       (unsigned long long)st.gets, (unsigned long long)st.prefetch_hits);
	CHECK(st.integrity_errors == 0);
	/* The server holds one key per page, under hm:NS:OBJECT:. */
	CHECKF(count_keys(port1, "hm:rt:*") == NPAGES, "%lld keys", count_keys(port1, "hm:rt:*"));
	env_close(&e);
	/* Closing gives the remote memory back. */
	CHECK(count_keys(port1, "hm:rt:*") == 0);
	/* Not a remote store. */
	struct hm_store *m;
	CHECK(hm_store_open(&m, "mem:1M", 0) == 0);
	CHECK(hm_remote_stats(m, &st) == -EINVAL);
	hm_store_close(m);
	free(ref);
}

static void t_zero_without_round_trip(void)
{
	struct env e;
	struct hm_remote_stats st;
	char uri[256];
	unsigned char page[PS], zero[PS] = { 0 };
	int rc;

	uri_of(uri, sizeof uri, port1, "zero", NULL);
	/* A budget that holds the region: no page is read twice because it was evicted. */
	rc = env_open(&e, uri, LEN);
	CHECKF(!rc, "%s", hm_errormsg());
	for (size_t off = 0; off < LEN; off += PS) {
		CHECK(!ru_try_copy(page, e.p + off, PS));
		CHECK(!memcmp(page, zero, PS));
	}
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECKF(st.round_trips == 0, "%llu round trips for never-written pages",
	       (unsigned long long)st.round_trips);
	CHECKF(st.zero_fills >= NPAGES, "zero_fills %llu", (unsigned long long)st.zero_fills);
	/* One written page costs exactly one GET when read again. */
	e.p[5 * PS + 7] = 0x5a;
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	CHECK(hm_store_ctl(e.s, "reset_stats") == 0);
	for (size_t off = 0; off < LEN; off += PS)
		CHECK(!ru_try_copy(page, e.p + off, PS));
	CHECK(e.p[5 * PS + 7] == 0x5a);
	CHECK(hm_remote_stats(e.s, &st) == 0);
	/*
	 * Every round trip was for the written page (the core may read it
	 * twice: a fault-around window, then the page alone).
	 */
	CHECKF(st.gets >= 1 && st.gets <= 2 && st.round_trips == st.gets,
	       "gets %llu round trips %llu", (unsigned long long)st.gets,
	       (unsigned long long)st.round_trips);
	CHECK(st.zero_fills >= NPAGES - 1);
	env_close(&e);
}

static void t_isolation(void)
{
	struct env a, b;
	char uri[256];
	unsigned char page[PS], zero[PS] = { 0 };

	uri_of(uri, sizeof uri, port1, "iso", NULL);
	CHECKF(!env_open(&a, uri, BUDGET), "%s", hm_errormsg());
	CHECKF(!env_open(&b, uri, BUDGET), "%s", hm_errormsg());
	for (int i = 0; i < 10; i++)
		memset(a.p + (size_t)i * PS, 0xa0 + i, PS);
	CHECK(hm_sync(a.p, LEN, MS_SYNC) == 0);
	for (int i = 0; i < 10; i++) {
		CHECK(!ru_try_copy(page, b.p + (size_t)i * PS, PS));
		CHECKF(!memcmp(page, zero, PS), "store B sees store A's page %d", i);
	}
	/* B writes the same page indexes: A keeps its own. */
	for (int i = 0; i < 10; i++)
		memset(b.p + (size_t)i * PS, 0xb0 + i, PS);
	CHECK(hm_sync(b.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(a.p, LEN, HM_ADV_DONTNEED) == 0);
	CHECK(hm_advise(b.p, LEN, HM_ADV_DONTNEED) == 0);
	for (int i = 0; i < 10; i++) {
		CHECK(!ru_try_copy(page, a.p + (size_t)i * PS, PS));
		CHECK(page[0] == 0xa0 + i && page[PS - 1] == 0xa0 + i);
		CHECK(!ru_try_copy(page, b.p + (size_t)i * PS, PS));
		CHECK(page[0] == 0xb0 + i && page[PS - 1] == 0xb0 + i);
	}
	/*
	 * Two objects under the namespace (the core may also write back some
	 * zero pages it read ahead, so count prefixes, not keys).
	 */
	char out[65536];
	CHECK(ru_sh(out, sizeof out, "redis-cli -p %d KEYS 'hm:iso:*' | cut -d: -f3 | sort -u | wc -l",
		    port1) == 0);
	CHECKF(atoi(out) == 2, "%d objects in the namespace", atoi(out));
	env_close(&a);
	CHECK(ru_sh(out, sizeof out, "redis-cli -p %d KEYS 'hm:iso:*' | cut -d: -f3 | sort -u | wc -l",
		    port1) == 0);
	CHECKF(atoi(out) == 1, "%d objects after closing one", atoi(out));
	CHECK(count_keys(port1, "hm:iso:*") >= 10);
	env_close(&b);
	CHECK(count_keys(port1, "hm:iso:*") == 0);
}

static void t_evicting_server_refused(void)
{
	struct hm_store *s;
	char uri[256];
	int rc;

	CHECK(redis_cmd(port1, "CONFIG SET maxmemory-policy allkeys-lru") == 0);
	uri_of(uri, sizeof uri, port1, "ev", NULL);
	rc = hm_store_open(&s, uri, 0);
	redis_cmd(port1, "CONFIG SET maxmemory-policy noeviction");
	CHECKF(rc == -EINVAL, "rc %d", rc);
	CHECKF(strstr(hm_errormsg(), "maxmemory-policy allkeys-lru") &&
		       strstr(hm_errormsg(), "noeviction"),
	       "%s", hm_errormsg());
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == 0, "%s", hm_errormsg());
	hm_store_close(s);
}

static void t_timeouts_kept(void)
{
	char uri[256];

	uri_of(uri, sizeof uri, port1, "tmo", "timeout=1500,prefetch=0");
	ru_check_timeouts(uri, pid1, 1500);
}

/*
 * A server that closes a connection while the store writes to it: the
 * write raises SIGPIPE, which ends a process by default. The store must
 * see an error and resend on a new connection; the application's own
 * SIGPIPE handler (counting here) must never run.
 */
static volatile sig_atomic_t pipes;

static void on_pipe(int sig)
{
	(void)sig;
	pipes++;
}

static void t_server_drops_mid_write(void)
{
	/* 1 MiB pages, 32 in one pipeline: more than the socket takes at once. */
	const size_t big = 32u << 20;
	struct sigaction sa = { .sa_handler = on_pipe }, old;
	unsigned char *buf = malloc(big), *back = malloc(big);
	struct hm_store *s = NULL;
	struct env e;
	char uri[256];

	if (!buf || !back) {
		CHECK(0);
		free(buf);
		free(back);
		return;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, &old);
	pipes = 0;
	uri_of(uri, sizeof uri, port1, "pipe", "timeout=5000&conns=1&page=1M");
	CHECKF(!hm_store_open(&s, uri, 0), "%s", hm_errormsg());
	for (int round = 0; s && round < 4; round++) {
		tu_fill(buf, big, (uint64_t)round + 1);
		CHECK(hm_store_write(s, buf, 1u << 20, 0) == 0); /* the connection is open */
		CHECK(redis_cmd(port1, "CLIENT KILL TYPE normal") == 0);
		CHECKF(hm_store_write(s, buf, big, 0) == 0, "round %d: %s", round, hm_errormsg());
		CHECK(hm_store_read(s, back, big, 0) == 0);
		CHECKF(memcmp(buf, back, big) == 0, "round %d: the pages read back differ", round);
	}
	if (s)
		hm_store_close(s);
	/* The same through a region: write-back in hm_sync. */
	uri_of(uri, sizeof uri, port1, "pipe2", "timeout=5000&conns=1");
	CHECKF(!env_open(&e, uri, LEN), "%s", hm_errormsg());
	if (e.p) {
		tu_fill(buf, LEN, 7);
		memcpy(e.p, buf, LEN);
		CHECK(hm_sync(e.p, PS, MS_SYNC) == 0);
		CHECK(redis_cmd(port1, "CLIENT KILL TYPE normal") == 0);
		CHECKF(hm_sync(e.p, LEN, MS_SYNC) == 0, "%s", hm_errormsg());
		CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
		CHECKF(memcmp(e.p, buf, LEN) == 0, "the region's pages differ after the sync");
		env_close(&e);
	}
	CHECKF(pipes == 0, "the application received %d SIGPIPE", (int)pipes);
	sigaction(SIGPIPE, &old, NULL);
	free(buf);
	free(back);
}

/*
 * The policy is checked on every connection: a server that comes back
 * (here: the store's connections killed) with an evicting policy gets no
 * page, and the sync says why; with noeviction again it succeeds.
 */
static void t_evicting_after_reconnect(void)
{
	struct env e;
	char uri[256];
	int rc;

	uri_of(uri, sizeof uri, port1, "evr", "timeout=2000");
	CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
	if (!e.p)
		return;
	memset(e.p, 0x11, 8 * PS);
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	long long n0 = count_keys(port1, "hm:evr:*");
	CHECK(redis_cmd(port1, "CONFIG SET maxmemory-policy allkeys-lru") == 0);
	CHECK(redis_cmd(port1, "CLIENT KILL TYPE normal") == 0);
	memset(e.p, 0x22, 8 * PS);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	long long n1 = count_keys(port1, "hm:evr:*");
	CHECK(redis_cmd(port1, "CONFIG SET maxmemory-policy noeviction") == 0);
	CHECKF(rc < 0 && strstr(hm_errormsg(), "allkeys-lru"), "sync to an evicting server: %d %s",
	       rc, hm_errormsg());
	CHECKF(n1 == n0, "%lld keys before, %lld after the refused sync", n0, n1);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync with noeviction again: %s", hm_errormsg());
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	for (size_t i = 0; i < 8 * PS; i++)
		if (e.p[i] != 0x22) {
			CHECKF(0, "byte %zu lost", i);
			break;
		}
	env_close(&e);
}

/*
 * A region on a chain whose remote tiers carry passwords in the URI (two,
 * in two namespaces): the statistics segment, which other processes read,
 * and a message about the store show "***" and never a password.
 */
static void uri_passwords_hidden(int port, const char *pw)
{
	char uri[700], bad[700];
	struct hm_snapshot *sn = NULL;
	int seen = 0;

	snprintf(uri, sizeof uri,
		 "tiers:dram:64K>redis://:%s@127.0.0.1:%d/auth1 > redis://alice:alice-PW-99@127.0.0.1:%d/auth2",
		 pw, port, port);
	char *p = hmmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	if (p == MAP_FAILED)
		return;
	for (size_t off = 0; off < 1 << 20; off += PS)
		p[off] = (char)(off >> 12);
	/* Published every 250 ms: wait for the region (bounded). */
	for (int tries = 0; tries < 100 && !seen; tries++) {
		if (hm_snapshot_read(getpid(), &sn)) {
			CHECKF(0, "hm_snapshot_read: %s", hm_errormsg());
			break;
		}
		for (size_t i = 0; i < sn->nobjs; i++) {
			const char *name = sn->objs[i].name;
			CHECKF(!strstr(name, pw) && !strstr(name, "alice-PW-99"),
			       "password published: %s", name);
			if (sn->objs[i].kind == HM_OBJ_REGION && strstr(name, "redis://:***@") &&
			    strstr(name, "redis://alice:***@"))
				seen = 1;
		}
		hm_snapshot_free(sn);
		if (!seen)
			usleep(50 * 1000);
	}
	CHECKF(seen, "no region with both passwords hidden in the statistics segment");
	for (size_t off = 0; off < 1 << 20; off += PS)
		if (p[off] != (char)(off >> 12)) {
			CHECKF(0, "page %zu lost", off >> 12);
			break;
		}
	CHECK(hmunmap(p, 1 << 20) == 0);
	/* A message that names the store: the password stays out of it. */
	snprintf(bad, sizeof bad, "redis://:%s@127.0.0.1:%d/auth1?size=1M", pw, port);
	p = hmmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, HM_CACHED, bad, 0);
	CHECK(p == MAP_FAILED);
	CHECKF(strstr(hm_errormsg(), "past the end of store 'redis://:***@127.0.0.1") &&
		       !strstr(hm_errormsg(), pw),
	       "%s", hm_errormsg());
	/* The tool that measures the store names it too. */
	const char *b = getenv("HMMAP_BUILD") ? getenv("HMMAP_BUILD") : "build";
	char cmd[1024], out[4096];
	snprintf(cmd, sizeof cmd, "%.200s/hmmap", b);
	if (access(cmd, X_OK))
		return;
	for (int json = 0; json < 2; json++) {
		snprintf(cmd, sizeof cmd,
			 "%.200s/hmmap probe redis://:%s@127.0.0.1:%d/auth3 --seconds 0.2%s 2>&1", b,
			 pw, port, json ? " --json" : "");
		CHECKF(tu_run(cmd, out, sizeof out) == 0, "%.300s", out);
		CHECKF(strstr(out, "redis://:***@127.0.0.1:") && !strstr(out, pw), "%.300s", out);
	}
	/* And the evacuation demo, which names its chain, also when the tier is wrong. */
	for (int tier = 1; tier <= 5; tier += 4) {
		snprintf(cmd, sizeof cmd,
			 "%.200s/hmmap tiers evacuate --no-writer --size 8M --tier %d "
			 "--chain 'tiers:dram:4M>redis://:%s@127.0.0.1:%d/auth5>mem:64M' 2>&1",
			 b, tier, pw, port);
		int st = tu_run(cmd, out, sizeof out);
		CHECKF(st == (tier == 1 ? 0 : 2), "tier %d: status %d: %.300s", tier, st, out);
		CHECKF(strstr(out, "redis://:***@127.0.0.1:") && !strstr(out, pw), "%.300s", out);
	}
	/*
	 * Its reads are of pages it wrote first, so each is a GET on the server,
	 * not a never-written page filled with zeros locally.
	 */
	char stats[8192];
	long long gets0 = -1, gets1 = -1, reads = 0;
	const char *q;
	CHECK(ru_sh(stats, sizeof stats, "redis-cli -p %d -a %s --no-auth-warning INFO commandstats",
		    port, pw) == 0);
	q = strstr(stats, "cmdstat_get:calls=");
	gets0 = q ? atoll(q + 18) : 0;
	snprintf(cmd, sizeof cmd, "%.200s/hmmap probe redis://:%s@127.0.0.1:%d/auth4 --seconds 0.2 --json",
		 b, pw, port);
	CHECKF(tu_run(cmd, out, sizeof out) == 0, "%.300s", out);
	CHECK(ru_sh(stats, sizeof stats, "redis-cli -p %d -a %s --no-auth-warning INFO commandstats",
		    port, pw) == 0);
	q = strstr(stats, "cmdstat_get:calls=");
	gets1 = q ? atoll(q + 18) : -1;
	q = strstr(out, "\"read_latency\"");
	q = q ? strstr(q, "\"requests\": ") : NULL;
	reads = q ? atoll(q + 12) : 0;
	CHECKF(strstr(out, "\"primed_bytes\": ") && !strstr(out, "\"primed_bytes\": 0,"), "%.400s",
	       out);
	CHECKF(reads > 0 && gets1 - gets0 >= reads, "%lld timed reads, %lld GETs on the server", reads,
	       gets1 - gets0);
}

static void t_auth(void)
{
	static const char pw[] = "Secret-PW-4711";
	struct hm_store *s;
	char uri[700], path[512];
	int port = ru_free_port(), rc;
	pid_t pid;

	CHECK(port > 0);
	pid = ru_redis_start(port, "--requirepass", pw, "--user", "alice", "on", ">alice-PW-99", "~*",
			     "&*", "+@all", NULL);
	CHECK(pid > 0);
	/* No password. */
	uri_of(uri, sizeof uri, port, "auth", NULL);
	unsetenv("HMMAP_REDIS_PASSWORD");
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -EACCES && strstr(hm_errormsg(), "requires a password"), "rc %d: %s", rc,
	       hm_errormsg());
	/* A wrong one: refused, and never echoed. */
	snprintf(uri, sizeof uri, "redis://:Wrong-PW-0815@127.0.0.1:%d/auth", port);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -EACCES && strstr(hm_errormsg(), "authentication"), "rc %d: %s", rc,
	       hm_errormsg());
	CHECKF(!strstr(hm_errormsg(), "Wrong-PW-0815"), "password printed: %s", hm_errormsg());
	/* The right one, from the URI. */
	snprintf(uri, sizeof uri, "redis://:%s@127.0.0.1:%d/auth", pw, port);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == 0, "%s", hm_errormsg());
	hm_store_close(s);
	/* A user and a password. */
	snprintf(uri, sizeof uri, "redis://alice:alice-PW-99@127.0.0.1:%d/auth", port);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == 0, "%s", hm_errormsg());
	hm_store_close(s);
	snprintf(uri, sizeof uri, "redis://alice:nope@127.0.0.1:%d/auth", port);
	CHECK(hm_store_open(&s, uri, 0) == -EACCES);
	/* From a file, which must not be readable by others. */
	tu_path(path, sizeof path, "redis.pw");
	FILE *f = fopen(path, "w");
	CHECK(f);
	fprintf(f, "%s\n", pw);
	fclose(f);
	chmod(path, 0644);
	snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/auth?password_file=%s", port, path);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -EACCES && strstr(hm_errormsg(), "readable by others"), "rc %d: %s", rc,
	       hm_errormsg());
	chmod(path, 0600);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == 0, "%s", hm_errormsg());
	hm_store_close(s);
	/* The URI comes first, then the file (docs/remote.md, "Credentials"). */
	snprintf(uri, sizeof uri, "redis://:wrong-PW@127.0.0.1:%d/auth?password_file=%s", port,
		 path);
	CHECKF(hm_store_open(&s, uri, 0) == -EACCES, "the file's password won over the URI's");
	snprintf(uri, sizeof uri, "redis://:%s@127.0.0.1:%d/auth?password_file=%s", pw, port,
		 path);
	f = fopen(path, "w");
	CHECK(f);
	fprintf(f, "wrong-PW\n");
	fclose(f);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == 0, "the URI's password did not win over the file's: %s", hm_errormsg());
	if (!rc)
		hm_store_close(s);
	/* From the environment. */
	setenv("HMMAP_REDIS_PASSWORD", pw, 1);
	uri_of(uri, sizeof uri, port, "auth", NULL);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == 0, "%s", hm_errormsg());
	hm_store_close(s);
	/* The same process opens a server that has no password: the default is not forced on it. */
	uri_of(uri, sizeof uri, port1, "nopw", NULL);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == 0, "a password-less server with HMMAP_REDIS_PASSWORD set: %s", hm_errormsg());
	if (!rc) {
		char page[PS] = { 7 }, back[PS];
		CHECK(hm_store_write(s, page, PS, 0) == 0 && hm_store_read(s, back, PS, 0) == 0 &&
		      !memcmp(page, back, PS));
		hm_store_close(s);
	}
	unsetenv("HMMAP_REDIS_PASSWORD");
	uri_passwords_hidden(port, pw);
	ru_stop(pid, SIGKILL);
}

static void write_key_file(char *path, size_t n)
{
	unsigned char key[32];
	FILE *f;

	tu_path(path, n, "pages.key");
	tu_fill(key, sizeof key, 7);
	f = fopen(path, "w");
	if (!f)
		return;
	for (int i = 0; i < 32; i++)
		fprintf(f, "%02x", key[i]);
	fputc('\n', f);
	fclose(f);
	chmod(path, 0600);
}

/*
 * Modified, moved and replayed pages raise SIGBUS. `encrypted` picks the
 * store; without encryption a replayed version is still caught (the version
 * in the frame), and the plaintext is visible on the server.
 */
static void tamper_case(bool encrypted)
{
	struct env e;
	char uri[700], kp[512], k0[160], k1[160], kold[160];
	struct hm_remote_stats st;
	unsigned char old0[PS + 100], cur0[PS + 100], cur1[PS + 100], page[PS];
	size_t l_old0, l_cur0, l_cur1;
	const char *ns = encrypted ? "crypt" : "plain";

	write_key_file(kp, sizeof kp);
	if (encrypted)
		snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/%s?key_file=%s", port1, ns, kp);
	else
		uri_of(uri, sizeof uri, port1, ns, NULL);
	CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
	memset(e.p, 'A', PS);
	memset(e.p + PS, 'Z', PS);
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECK(cur_key(port1, st.prefix, 0, kold, sizeof kold) == 0);
	CHECK(get_raw(port1, kold, old0, sizeof old0, &l_old0) == 0);
	CHECK(l_old0 == (encrypted ? PS + 56 : PS + 16));
	/* The server sees ciphertext only. */
	CHECK(encrypted == !memmem(old0, l_old0, "AAAAAAAAAAAAAAAA", 16));
	/* A newer version of page 0. */
	memset(e.p, 'B', PS);
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	/* Each version has its own key; the old one is gone after the sync. */
	CHECK(cur_key(port1, st.prefix, 0, k0, sizeof k0) == 0);
	CHECK(cur_key(port1, st.prefix, 1, k1, sizeof k1) == 0);
	CHECKF(strcmp(k0, kold), "a new version under the old key %s", k0);
	CHECK(get_raw(port1, k0, cur0, sizeof cur0, &l_cur0) == 0);
	CHECK(get_raw(port1, k1, cur1, sizeof cur1, &l_cur1) == 0);

	/* Replay: the old version back on the server. */
	CHECK(set_raw(port1, k0, old0, l_old0) == 0);
	int bus0 = atomic_load(&ru_bus_count);
	CHECKF(ru_try_copy(page, e.p, PS) == 1, "a replayed page was returned as data ('%c')",
	       page[0]);
	CHECK(atomic_load(&ru_bus_count) == bus0 + 1);
	/* Moved: page 1's frame under page 0's key. */
	CHECK(set_raw(port1, k0, cur1, l_cur1) == 0);
	CHECK(ru_try_copy(page, e.p, PS) == 1);
	if (encrypted) {
		/* Modified: one byte of the ciphertext (SETRANGE, as an attacker would). */
		unsigned char bad[PS + 100];
		memcpy(bad, cur0, l_cur0);
		bad[100] ^= 1;
		CHECK(set_raw(port1, k0, bad, l_cur0) == 0);
		CHECK(ru_try_copy(page, e.p, PS) == 1);
		char cmd[300];
		CHECK(set_raw(port1, k0, cur0, l_cur0) == 0);
		snprintf(cmd, sizeof cmd, "redis-cli -p %d SETRANGE %s 2000 XYZ >/dev/null", port1, k0);
		CHECK(ru_sh(NULL, 0, "%s", cmd) == 0);
		CHECK(ru_try_copy(page, e.p, PS) == 1);
	} else {
		/* A plain frame's data can be changed undetected: that is what key_file= is for. */
	}
	/* Deleted on the server (a flushed or restarted server). */
	CHECK(redis_cmd(port1, "DEL nothing") == 0);
	{
		char cmd[300];
		snprintf(cmd, sizeof cmd, "redis-cli -p %d DEL %s >/dev/null", port1, k0);
		CHECK(ru_sh(NULL, 0, "%s", cmd) == 0);
	}
	CHECK(ru_try_copy(page, e.p, PS) == 1);
	/* The genuine frame back: the page reads right again. */
	CHECK(set_raw(port1, k0, cur0, l_cur0) == 0);
	CHECK(ru_try_copy(page, e.p, PS) == 0);
	CHECK(page[0] == 'B' && page[PS - 1] == 'B');
	CHECK(!ru_try_copy(page, e.p + PS, PS) && page[0] == 'Z');
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECKF(st.integrity_errors >= (encrypted ? 5u : 3u), "%llu",
	       (unsigned long long)st.integrity_errors);
	env_close(&e);
}

static void t_encrypted_tamper_replay(void)
{
	tamper_case(true);
}

static void t_plain_replay(void)
{
	tamper_case(false);
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

static void t_server_stops_answering(void)
{
	struct env e;
	char uri[256];
	unsigned char *ref = malloc(LEN);
	struct toucher t;
	pthread_t th;
	int rc;

	CHECK(ref);
	uri_of(uri, sizeof uri, port1, "stop", "timeout=1500,io_timeout=300");
	CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
	tu_fill(ref, LEN, 9);
	CHECK(!ru_try_write(e.p, ref, LEN));
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	/* A few pages resident and then dirtied while the server is frozen. */
	unsigned char tmp[PS];
	for (int i = 0; i < 8; i++)
		CHECK(!ru_try_copy(tmp, e.p + (size_t)i * PS, PS));
	kill(pid1, SIGSTOP);
	for (int i = 0; i < 8; i++) {
		memset(ref + (size_t)i * PS, 0xc0 + i, 64);
		memset(e.p + (size_t)i * PS, 0xc0 + i, 64);
	}
	/* A fault on an absent page: SIGBUS in the touching thread after the timeout. */
	t.p = e.p + 300 * PS;
	pthread_create(&th, NULL, touch_thread, &t);
	pthread_join(th, NULL);
	CHECKF(t.bus == 1, "a fault on a frozen server did not raise SIGBUS");
	CHECKF(t.secs >= 1.0 && t.secs < 10, "SIGBUS after %.2f s (timeout=1.5 s)", t.secs);
	/* Write-back fails; the dirty pages stay. */
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc < 0, "sync succeeded on a frozen server");
	kill(pid1, SIGCONT);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync after the server answers again: %d %s", rc, hm_errormsg());
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = verify(e.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	struct hm_remote_stats st;
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECK(st.timeouts >= 1 && st.retries >= 1);
	env_close(&e);
	free(ref);
}

/*
 * A server that stops answering while the cache holds only dirty pages: a
 * fault that needs room waits for one failed write-back (the store's
 * timeout, with its retries), not for every evictor to fail in turn (it
 * took 12-24 s at timeout=1000 before, and over 100 s at the default).
 * Nothing written is lost.
 */
static void t_full_of_dirty_pages(void)
{
	struct env e;
	char uri[256];
	unsigned char *ref = calloc(1, LEN), *ok = calloc(NPAGES, 1);
	struct timespec a, b;
	double first_bus = -1;
	int nbus = 0, rc;

	CHECK(ref && ok);
	uri_of(uri, sizeof uri, port1, "full", "timeout=1000,io_timeout=300");
	CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
	kill(pid1, SIGSTOP);
	clock_gettime(CLOCK_MONOTONIC, &a);
	/* Pages never written are zeros without a round trip: only write-back needs the server. */
	for (uint32_t pg = 0; pg < 3 * BUDGET / PS && nbus < 2; pg++) {
		unsigned char v[64];
		memset(v, (int)(pg % 250) + 1, sizeof v);
		if (ru_try_write(e.p + (size_t)pg * PS, v, sizeof v)) {
			clock_gettime(CLOCK_MONOTONIC, &b);
			if (!nbus++)
				first_bus = (double)(b.tv_sec - a.tv_sec) +
					    (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
			continue;
		}
		memcpy(ref + (size_t)pg * PS, v, sizeof v);
		ok[pg] = 1;
	}
	kill(pid1, SIGCONT);
	CHECKF(nbus >= 1, "no SIGBUS while the server was frozen");
	CHECKF(first_bus < 10, "the first SIGBUS came after %.1f s (timeout=1 s)", first_bus);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync after the server answers again: %d %s", rc, hm_errormsg());
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = 0;
	for (uint32_t pg = 0; pg < NPAGES; pg++)
		if (ok[pg] && memcmp(e.p + (size_t)pg * PS, ref + (size_t)pg * PS, 64))
			bad++;
	CHECKF(bad == 0, "%lld written pages lost", bad);
	env_close(&e);
	free(ref);
	free(ok);
}

/*
 * A cache whose eviction batch failed (the server frozen) evicts again as
 * soon as the server answers: a batch that freed nothing for a failed
 * write-back made every make_room() of the next second fail at once,
 * without trying, so that after a short outage a fault (SIGBUS) or a
 * resize failed although the server was back and every page was clean
 * (test_remote_model, world chain: a fault right after the outage). Only a
 * thread that would wait for another's batch gives up at once now.
 */
static void t_evicts_once_the_server_is_back(void)
{
	struct env e;
	char uri[256];
	unsigned char page[PS];
	int rc;

	uri_of(uri, sizeof uri, port1, "back", "timeout=250,io_timeout=100");
	CHECKF(!env_open(&e, uri, 16 * PS), "%s", hm_errormsg());
	for (int i = 0; i < 8; i++)
		memset(e.p + (size_t)i * PS, 0x40 + i, PS);
	/* Half the budget resident: the background evictor has nothing to do. */
	kill(pid1, SIGSTOP);
	rc = hm_cache_resize(e.c, 4 * PS);
	kill(pid1, SIGCONT);
	CHECKF(rc == -ETIMEDOUT, "a shrink that must write back to a frozen server: %d", rc);
	CHECK(hm_cache_budget(e.c) == 16 * PS);
	CHECKF(hm_sync(e.p, LEN, MS_SYNC) == 0, "%s", hm_errormsg());
	/* Every page clean, the server answering: the shrink only drops pages. */
	rc = hm_cache_resize(e.c, 4 * PS);
	CHECKF(rc == 0, "shrink once the server is back: %d %s", rc, hm_errormsg());
	for (int i = 0; i < 16; i++) {
		CHECKF(!ru_try_copy(page, e.p + (size_t)i * PS, PS), "SIGBUS at page %d", i);
		CHECK(page[0] == (i < 8 ? 0x40 + i : 0) && page[PS - 1] == page[0]);
	}
	env_close(&e);
}

static void t_kill_and_restart(void)
{
	struct env e;
	char uri[256];
	unsigned char *ref = malloc(LEN);
	struct toucher t;
	pthread_t th;
	int rc;

	CHECK(ref);
	uri_of(uri, sizeof uri, port1, "restart", "timeout=8000,io_timeout=300");
	CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
	tu_fill(ref, LEN, 11);
	CHECK(!ru_try_write(e.p, ref, LEN));
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	/* Dirty pages in the cache when the server dies. */
	for (int i = 0; i < 16; i++) {
		size_t off = (size_t)(NPAGES - 1 - i) * PS;
		memset(ref + off, 0x33 + i, 100);
		memset(e.p + off, 0x33 + i, 100);
	}
	ru_stop(pid1, SIGKILL);
	pid1 = -1;
	rc = hm_store_ctl(e.s, "timeout=500");
	CHECK(rc == 0);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc < 0, "sync succeeded with the server dead");
	CHECK(hm_store_ctl(e.s, "timeout=8000") == 0);
	/* A fault while the server is down waits for it (restart within the timeout). */
	t.p = e.p + 10 * PS;
	CHECK(hm_advise(e.p, 64 * PS, HM_ADV_DONTNEED) == 0);
	pthread_create(&th, NULL, touch_thread, &t);
	/*
	 * Restarted from this thread: a server dies with the thread that
	 * started it (PR_SET_PDEATHSIG).
	 */
	ru_sleep_ms(700);
	pid1 = ru_redis_start(port1, "--appendonly", "yes", "--appendfsync", "always", NULL);
	pthread_join(th, NULL);
	CHECK(pid1 > 0);
	CHECKF(t.bus == 0, "fault during the restart raised SIGBUS: %s", hm_errormsg());
	CHECK(!memcmp(t.page, ref + 10 * PS, PS));
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync after restart: %s", hm_errormsg());
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = verify(e.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	env_close(&e);
	free(ref);
}

/*
 * A server killed and restarted (AOF) after write-back and before the
 * sync: the connection that wrote is dead when hm_sync() asks how many
 * replicas to WAIT for. That failed the sync (EIO, "lost ... before its
 * replicas confirmed the writes") although the master has no replica to
 * wait for, which docs/remote.md says a lost connection does not fail
 * (test_remote_model, HMMAP_TEST_SEED=10). The pages are all there.
 */
static void t_sync_after_restart(void)
{
	struct env e;
	char uri[256];
	unsigned char *ref = malloc(LEN);
	int rc;

	CHECK(ref);
	uri_of(uri, sizeof uri, port1, "rsync", "timeout=8000,io_timeout=300,conns=1");
	CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
	tu_fill(ref, LEN, 12);
	CHECK(!ru_try_write(e.p, ref, 32 * PS));
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	/*
	 * A page never written before, written back and not synced: the
	 * connection has written since its last WAIT, and no dead version
	 * is queued (deleting one would find the connection dead first).
	 */
	memset(ref + 40 * PS, 0x5c, PS);
	memset(e.p + 40 * PS, 0x5c, PS);
	CHECK(hm_advise(e.p + 40 * PS, PS, HM_ADV_DONTNEED) == 0);
	ru_stop(pid1, SIGKILL);
	pid1 = ru_redis_start(port1, "--appendonly", "yes", "--appendfsync", "always", NULL);
	CHECK(pid1 > 0);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync after a restart: %d %s", rc, hm_errormsg());
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = verify(e.p, ref, 32 * PS);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	bad = verify(e.p + 40 * PS, ref + 40 * PS, PS);
	CHECKF(bad == -1, "page 40: mismatch at %lld", bad);
	env_close(&e);
	free(ref);
}

struct half_writer {
	struct hm_store *s;
	int stop;
};

static void *half_writer_main(void *arg)
{
	struct half_writer *h = arg;
	unsigned char v[PS];

	for (int i = 0; !__atomic_load_n(&h->stop, __ATOMIC_RELAXED) && i < 4000; i++) {
		memset(v, i & 0xff, sizeof v);
		if (hm_store_write(h->s, v, PS, 0))
			break;
	}
	return NULL;
}

/*
 * Two halves of one key (page=8K, 4 KiB at a time): writes of one half
 * replace the key and delete the old version, while reads of the other
 * half go on. A read that looked up a version just before a write of the
 * other half replaced and deleted it found its key missing: an integrity
 * error (SIGBUS at a fault) for data that was never lost. Region pages
 * smaller than page= do that (test_remote_model, HMMAP_MODEL_PARTIAL=1).
 * A read whose version was superseded meanwhile reads the new one.
 */
static void t_read_beside_partial_writes(void)
{
	struct hm_store *s;
	struct hm_remote_stats st;
	struct half_writer h = { 0 };
	unsigned char v[PS], got[PS];
	char uri[256];
	pthread_t th;
	int bad = 0, rc = 0;

	uri_of(uri, sizeof uri, port1, "halves", "page=8K,prefetch=0,conns=1");
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	memset(v, 0xa5, sizeof v);
	CHECK(hm_store_write(s, v, PS, PS) == 0);
	h.s = s;
	pthread_create(&th, NULL, half_writer_main, &h);
	for (int i = 0; i < 4000 && !rc && !bad; i++) {
		rc = hm_store_read(s, got, PS, PS);
		bad = !rc && memcmp(got, v, PS);
	}
	__atomic_store_n(&h.stop, 1, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	CHECK(hm_remote_stats(s, &st) == 0);
	hm_store_close(s);
	CHECKF(rc == 0, "a read of the other half: %d %s", rc, hm_errormsg());
	CHECK(!bad);
	CHECKF(st.integrity_errors == 0, "%llu integrity errors",
	       (unsigned long long)st.integrity_errors);
}

struct worker {
	unsigned char *p;
	int id;
	int errors;
};

static void *worker(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = (uint64_t)w->id * 977 + 1;

	/* Each worker owns the pages i with i % 4 == id. */
	for (int round = 0; round < 400; round++) {
		size_t pg = (size_t)(tu_rnd(&seed) % (NPAGES / 4)) * 4 + (size_t)w->id;
		volatile uint32_t *q = (volatile uint32_t *)(w->p + pg * PS);
		uint32_t v = q[0];
		if (v && q[PS / 4 - 1] != v)
			w->errors++;
		q[0] = v + 1;
		q[PS / 4 - 1] = v + 1;
	}
	return NULL;
}

/*
 * Four threads fault, write and evict at once, sharing two connections:
 * with the default spin-wait for replies (at most one thread spins on two
 * CPUs, the others sleep in read()) and with spin=0 (everyone sleeps).
 */
static void threads_with(const char *ns, const char *opts)
{
	struct env e;
	struct worker w[4];
	pthread_t th[4];
	char uri[256];

	uri_of(uri, sizeof uri, port1, ns, opts);
	CHECKF(!env_open(&e, uri, 32 * PS), "%s: %s", uri, hm_errormsg());
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ e.p, i, 0 };
		pthread_create(&th[i], NULL, worker, &w[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++)
		CHECKF(w[i].errors == 0, "worker %d saw %d torn pages", i, w[i].errors);
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	for (size_t pg = 0; pg < NPAGES; pg++) {
		uint32_t a, b;
		CHECK(!ru_try_copy(&a, e.p + pg * PS, 4));
		CHECK(!ru_try_copy(&b, e.p + pg * PS + PS - 4, 4));
		CHECK(a == b);
	}
	env_close(&e);
}

static void t_threads(void)
{
	threads_with("mt", "conns=2");
	threads_with("mt0", "conns=2,spin=0");
}

/*
 * The store's strided prefetch: a scan with a stride of 5 pages (which the
 * core's sequential readahead does not follow) is fetched ahead in
 * batches; a random scan triggers nothing. Contents are right either way.
 */
static void t_strided_prefetch(void)
{
	struct ru_env e;
	struct hm_remote_stats st;
	char uri[256];
	unsigned char *ref = malloc(LEN), page[PS];
	uint64_t seed = 3;

	CHECK(ref);
	uri_of(uri, sizeof uri, port1, "leap", NULL);
	CHECKF(!ru_env_open(&e, uri, LEN, BUDGET), "%s", hm_errormsg());
	tu_fill(ref, LEN, 21);
	CHECK(!ru_try_write(e.p, ref, LEN));
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	CHECK(hm_advise(e.p, LEN, HM_ADV_RANDOM) == 0); /* no core readahead: the store alone */
	/*
	 * Three passes of a strided scan, each at the next residue (as
	 * bench_remote's stride-4 scan): each pass is a stream of its own,
	 * started by a jump back; every one is read ahead. A pass is about a
	 * hundred faults, a few milliseconds: on a loaded machine the prefetch
	 * thread may not run at all in one (once in an ASan run beside three
	 * other test loops: "0 prefetched, 0 hits"), so a pass that is not read
	 * ahead is tried again from its start, up to three times. A detector
	 * that loses the stream fails all three (as it did before the jump back
	 * restarted it).
	 */
	for (size_t r = 0; r < 3; r++) {
		char seen[160] = "";
		int len = 0;
		for (int attempt = 0; attempt < 3; attempt++) {
			CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
			CHECK(hm_store_ctl(e.s, "reset_stats") == 0);
			for (size_t pg = r; pg < NPAGES; pg += 5) {
				CHECK(!ru_try_copy(page, e.p + pg * PS, PS));
				CHECKF(!memcmp(page, ref + pg * PS, PS), "page %zu", pg);
			}
			CHECK(hm_remote_stats(e.s, &st) == 0);
			if (st.prefetch_hits > NPAGES / 5 / 2)
				break;
			len += snprintf(seen + len, sizeof seen - (size_t)len,
					"%s%llu prefetched, %llu hits", attempt ? "; " : "",
					(unsigned long long)st.prefetched,
					(unsigned long long)st.prefetch_hits);
		}
		CHECKF(st.prefetch_hits > NPAGES / 5 / 2, "strided scan, pass %zu, three tries: %s",
		       r, seen);
	}
	CHECK(hm_advise(e.p, LEN, HM_ADV_DONTNEED) == 0);
	CHECK(hm_store_ctl(e.s, "reset_stats") == 0);
	for (int i = 0; i < 100; i++) {
		size_t pg = (size_t)(tu_rnd(&seed) % NPAGES);
		CHECK(!ru_try_copy(page, e.p + pg * PS, PS));
		CHECK(!memcmp(page, ref + pg * PS, PS));
	}
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECKF(st.prefetched < 20, "random scan: %llu prefetched", (unsigned long long)st.prefetched);
	ru_env_close(&e);
	free(ref);
}

/*
 * A sync writes back what was written and nothing else, also while
 * readahead windows are still loading: a window that a worker mapped just
 * after the sync's walk saw its pages as holes made them look reclaimed
 * (written), and clean zero pages went to the server. Rare per round (a few
 * in a hundred under ASan), so many rounds.
 */
static void t_sync_writes_only_written(void)
{
	char uri[256], ns[32], pat[64];
	int bad = 0;

	for (int round = 0; round < 40; round++) {
		struct env e;
		snprintf(ns, sizeof ns, "only%d", round);
		uri_of(uri, sizeof uri, port1, ns, NULL);
		CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
		if (!e.p)
			return;
		memset(e.p, 1, 40 * PS);
		CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
		snprintf(pat, sizeof pat, "hm:%s:*", ns);
		long long n = count_keys(port1, pat);
		if (n != 40 && !bad++)
			CHECKF(n == 40, "round %d: %lld pages on the server after writing 40", round, n);
		env_close(&e);
	}
}

static void t_wait_for_replica(void)
{
	struct env e;
	struct hm_remote_stats st;
	char uri[256], out[4096], pstr[16];
	int port = ru_free_port(), rc;
	pid_t rp;

	CHECK(port > 0);
	snprintf(pstr, sizeof pstr, "%d", port1);
	rp = ru_redis_start(port, "--replicaof", "127.0.0.1", pstr, NULL);
	CHECK(rp > 0);
	/* A full resync can take seconds on a loaded machine (or under TSan): wait up to 30 s. */
	for (int i = 0; i < 600; i++) {
		ru_sh(out, sizeof out, "redis-cli -p %d INFO replication", port);
		if (strstr(out, "master_link_status:up"))
			break;
		ru_sleep_ms(50);
	}
	CHECKF(strstr(out, "master_link_status:up"), "replica did not connect");
	uri_of(uri, sizeof uri, port1, "wait", NULL);
	CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
	memset(e.p, 1, 40 * PS);
	CHECK(hm_sync(e.p, LEN, MS_SYNC) == 0);
	CHECK(hm_remote_stats(e.s, &st) == 0);
	CHECKF(st.waits >= 1, "no WAIT was sent");
	/* Synced means on the replica. */
	CHECKF(count_keys(port, "hm:wait:*") == 40, "replica holds %lld keys",
	       count_keys(port, "hm:wait:*"));
	/*
	 * A replica 2.5 s behind: WAIT gets the sync's timeout (10 s), not
	 * io_timeout (1 s), so the sync waits for it and succeeds, and so does
	 * the next one.
	 */
	kill(rp, SIGSTOP);
	memset(e.p, 3, 40 * PS);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	pid_t waker = fork();
	if (waker == 0) {
		usleep(2500 * 1000);
		kill(rp, SIGCONT);
		_exit(0);
	}
	rc = hm_sync(e.p, LEN, MS_SYNC);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double took = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	waitpid(waker, NULL, 0);
	kill(rp, SIGCONT);
	CHECKF(rc == 0, "sync with a replica 2.5 s behind: %d %s (%.2f s)", rc, hm_errormsg(),
	       took);
	memset(e.p, 4, PS);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "the next sync: %d %s", rc, hm_errormsg());
	env_close(&e);
	/* More replicas than exist: the sync fails rather than pretend. */
	uri_of(uri, sizeof uri, port1, "wait2", "replicas=2,timeout=1000");
	CHECKF(!env_open(&e, uri, BUDGET), "%s", hm_errormsg());
	memset(e.p, 2, PS);
	rc = hm_sync(e.p, LEN, MS_SYNC);
	CHECKF(rc == -EIO, "rc %d: %s", rc, hm_errormsg());
	env_close(&e);
	ru_stop(rp, SIGKILL);
}

/*
 * Pages of 1 MiB (a value read mostly straight from the socket into its
 * frame) and of 512 bytes (many values to a read): whole and partial reads.
 */
static void t_page_sizes(void)
{
	static const char *const pages[] = { "1M", "512" };
	const size_t len = 6u << 20;
	unsigned char *ref = malloc(len), *got = malloc(len);
	char uri[256], opts[64];

	CHECK(ref && got);
	for (size_t k = 0; ref && got && k < sizeof pages / sizeof pages[0]; k++) {
		struct hm_store *s;
		snprintf(opts, sizeof opts, "page=%s", pages[k]);
		uri_of(uri, sizeof uri, port1, "pages", opts);
		CHECKF(hm_store_open(&s, uri, 0) == 0, "%s: %s", uri, hm_errormsg());
		tu_fill(ref, len, (unsigned)k + 20);
		CHECKF(hm_store_write(s, ref, len, 0) == 0, "%s: %s", pages[k], hm_errormsg());
		memset(got, 0, len);
		CHECKF(hm_store_read(s, got, len, 0) == 0, "%s: %s", pages[k], hm_errormsg());
		CHECKF(!memcmp(got, ref, len), "page=%s: a whole read differs", pages[k]);
		/* Ranges that start and end inside pages. */
		const size_t off[] = { 1536u << 10, 100, (5u << 20) + 777 };
		const size_t n[] = { 100u << 10, (2u << 20) + 3, 300000 };
		for (int i = 0; i < 3; i++) {
			memset(got, 0, n[i]);
			CHECKF(hm_store_read(s, got, n[i], off[i]) == 0, "%s", hm_errormsg());
			CHECKF(!memcmp(got, ref + off[i], n[i]), "page=%s: range %d differs", pages[k],
			       i);
		}
		hm_store_close(s);
	}
	free(ref);
	free(got);
}

/*
 * Values of the wrong size or type under a page's key: the read fails with a
 * message, the replies after it in the same pipeline are still read in step
 * (no reconnect), and the genuine frame back reads right.
 */
static void t_wrong_values(void)
{
	struct hm_store *s;
	struct hm_remote_stats st;
	char uri[256], key[200], cmd[512];
	unsigned char *ref = malloc(4 * PS), *got = malloc(4 * PS);
	unsigned char frame[PS + 256], *big = malloc(200u << 10);
	size_t flen = 0;
	int rc;

	CHECK(ref && got && big);
	if (!ref || !got || !big)
		goto out;
	uri_of(uri, sizeof uri, port1, "wrong", "timeout=500");
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	tu_fill(ref, 4 * PS, 33);
	tu_fill(big, 200u << 10, 34);
	CHECK(hm_store_write(s, ref, 4 * PS, 0) == 0);
	CHECK(hm_remote_stats(s, &st) == 0);
	CHECK(cur_key(port1, st.prefix, 1, key, sizeof key) == 0);
	CHECK(get_raw(port1, key, frame, sizeof frame, &flen) == 0);
	uint64_t reconnects = st.reconnects;

	for (int c = 0; c < 4; c++) {
		const char *want = "bad header";
		if (c == 0) {
			CHECK(set_raw(port1, key, big, 200u << 10) == 0); /* more than a read buffer */
		} else if (c == 1) {
			CHECK(set_raw(port1, key, big, flen + 1) == 0);
		} else if (c == 2) {
			CHECK(set_raw(port1, key, frame, flen - 1) == 0);
		} else {
			snprintf(cmd, sizeof cmd, "redis-cli -p %d DEL %s >/dev/null && redis-cli -p %d "
				 "RPUSH %s x >/dev/null", port1, key, port1, key);
			CHECK(ru_sh(NULL, 0, "%s", cmd) == 0);
			want = "WRONGTYPE";
		}
		/* Pages 0..3 in one pipeline; page 1 is bad. */
		rc = hm_store_read(s, got, 4 * PS, 0);
		CHECKF(rc == -EIO, "case %d: rc %d", c, rc);
		CHECKF(strstr(hm_errormsg(), want), "case %d: %s", c, hm_errormsg());
		CHECKF(hm_store_read(s, got, 2 * PS, 2 * PS) == 0, "case %d: %s", c, hm_errormsg());
		CHECKF(!memcmp(got, ref + 2 * PS, 2 * PS), "case %d: pages after the bad one", c);
		if (c == 3)
			CHECK(redis_cmd(port1, "PING") == 0);
	}
	/* Not one connection was dropped for it. */
	CHECK(hm_remote_stats(s, &st) == 0);
	CHECKF(st.reconnects == reconnects, "%llu reconnects",
	       (unsigned long long)(st.reconnects - reconnects));
	snprintf(cmd, sizeof cmd, "redis-cli -p %d DEL %s >/dev/null", port1, key);
	CHECK(ru_sh(NULL, 0, "%s", cmd) == 0);
	CHECK(set_raw(port1, key, frame, flen) == 0);
	CHECKF(hm_store_read(s, got, 4 * PS, 0) == 0, "%s", hm_errormsg());
	CHECK(!memcmp(got, ref, 4 * PS));
	hm_store_close(s);
out:
	free(ref);
	free(got);
	free(big);
}

/* ------------------------------------------------ a server that misbehaves */

/*
 * Just enough of a Redis server to be a store's only server, with a table of
 * keys, whose replies to GET can be broken on demand: the reply parser must
 * turn every broken stream into an error with a message, drop the
 * connection, and read right once the server behaves again. FK_HOLD
 * answers nothing until the client has sent nothing more for FK_QUIET_MS,
 * and records the most commands it held: how far the client's pipeline
 * runs ahead of its replies.
 */
enum { FK_OK, FK_GARBAGE, FK_CUT, FK_BADLEN, FK_TRAILER, FK_LONGLINE, FK_EXTRA, FK_NMODES,
       FK_HOLD };
#define FK_KEYS 1024
#define FK_QUIET_MS 100

static struct {
	int lfd, port;
	_Atomic int mode;
	_Atomic bool stop;
	pthread_t th;
	struct {
		char key[RM_TEST_KEYMAX];
		unsigned char *val;
		size_t len;
	} kv[FK_KEYS];
	int nkv;
	char *held;        /* FK_HOLD: replies not sent yet */
	size_t held_len;
	int held_n;        /* ... and how many */
	_Atomic int max_held;
} fk;

static bool fk_send(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t k = write(fd, p, n);
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

/* Sends a reply, or under FK_HOLD keeps it for fk_release(). */
static bool fk_reply(int fd, const void *buf, size_t n)
{
	char *p;

	if (atomic_load(&fk.mode) != FK_HOLD)
		return fk_send(fd, buf, n);
	p = realloc(fk.held, fk.held_len + n);
	if (!p)
		return false;
	fk.held = p;
	memcpy(fk.held + fk.held_len, buf, n);
	fk.held_len += n;
	if (++fk.held_n > atomic_load(&fk.max_held))
		atomic_store(&fk.max_held, fk.held_n);
	return true;
}

static bool fk_release(int fd)
{
	bool ok = fk_send(fd, fk.held, fk.held_len);

	fk.held_len = 0;
	fk.held_n = 0;
	return ok;
}

/* One command as an array of bulk strings; argc 0 at the end of the stream. */
static int fk_command(FILE *in, char **argv, size_t *len, int max)
{
	char line[64];
	int argc;

	if (!fgets(line, sizeof line, in) || line[0] != '*')
		return 0;
	argc = atoi(line + 1);
	if (argc < 1 || argc > max)
		return 0;
	for (int i = 0; i < argc; i++) {
		if (!fgets(line, sizeof line, in) || line[0] != '$')
			return 0;
		len[i] = (size_t)atol(line + 1);
		argv[i] = malloc(len[i] + 3);
		if (!argv[i] || fread(argv[i], 1, len[i] + 2, in) != len[i] + 2)
			return 0;
		argv[i][len[i]] = 0;
	}
	return argc;
}

static int fk_slot(const char *key)
{
	for (int i = 0; i < fk.nkv; i++)
		if (!strcmp(fk.kv[i].key, key))
			return i;
	return -1;
}

/* Serves one connection until it ends, or until a fault mode cuts it. */
static void fk_serve(int fd)
{
	FILE *in = fdopen(dup(fd), "r");
	char *argv[3];
	size_t len[3];
	int argc;

	fk.held_len = 0;
	fk.held_n = 0;
	while (in) {
		bool hold = atomic_load(&fk.mode) == FK_HOLD;
		struct timeval tv = { 0, hold ? FK_QUIET_MS * 1000 : 0 };
		char hdr[64];

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		argc = fk_command(in, argv, len, 3);
		if (argc <= 0 && hold && ferror(in) && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* The client waits for replies: send what was held. */
			clearerr(in);
			if (fk_release(fd))
				continue;
		}
		if (argc <= 0)
			break;
		bool ok = true;
		int i = argc >= 2 ? fk_slot(argv[1]) : -1;
		if (!strcasecmp(argv[0], "CONFIG")) {
			static const char r[] = "*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n";
			ok = fk_send(fd, r, sizeof r - 1);
		} else if (!strcasecmp(argv[0], "INFO")) {
			static const char r[] = "$19\r\ncluster_enabled:0\r\n\r\n";
			ok = fk_send(fd, r, sizeof r - 1);
		} else if (!strcasecmp(argv[0], "SET") && argc == 3) {
			if (i < 0 && fk.nkv < FK_KEYS && strlen(argv[1]) < RM_TEST_KEYMAX) {
				i = fk.nkv++;
				strcpy(fk.kv[i].key, argv[1]);
			} else if (i >= 0) {
				free(fk.kv[i].val);
			}
			if (i >= 0) {
				fk.kv[i].val = (unsigned char *)argv[2];
				fk.kv[i].len = len[2];
				argv[2] = NULL;
			}
			ok = fk_reply(fd, i >= 0 ? "+OK\r\n" : "-ERR full\r\n", i >= 0 ? 5 : 11);
		} else if (!strcasecmp(argv[0], "DEL")) {
			ok = fk_reply(fd, ":0\r\n", 4);
		} else if (!strcasecmp(argv[0], "GET") && i < 0) {
			ok = fk_reply(fd, "$-1\r\n", 5);
		} else if (!strcasecmp(argv[0], "GET")) {
			int m = atomic_load(&fk.mode);
			size_t n = fk.kv[i].len;
			snprintf(hdr, sizeof hdr, "$%zu\r\n", n);
			if (m == FK_GARBAGE) {
				ok = fk_send(fd, "?huh\r\n", 6);
			} else if (m == FK_CUT) {
				fk_send(fd, hdr, strlen(hdr));
				fk_send(fd, fk.kv[i].val, n / 2);
				ok = false;
			} else if (m == FK_BADLEN) {
				ok = fk_send(fd, "$-5\r\n", 5);
			} else if (m == FK_LONGLINE) {
				char junk[5000];
				memset(junk, 'x', sizeof junk);
				ok = fk_send(fd, junk, sizeof junk);
			} else {
				/* A whole reply (with junk behind it for the last modes) in one write. */
				size_t h = strlen(hdr), t = h + n;
				unsigned char *b = malloc(h + n + 16);
				ok = b != NULL;
				if (b) {
					memcpy(b, hdr, h);
					memcpy(b + h, fk.kv[i].val, n);
					if (m == FK_TRAILER) {
						memcpy(b + t, "XY\r\n", 4);
						t += 4;
					} else {
						memcpy(b + t, "\r\n+OK\r\n", m == FK_EXTRA ? 7 : 2);
						t += m == FK_EXTRA ? 7 : 2;
					}
					ok = fk_reply(fd, b, t);
					free(b);
				}
			}
		} else {
			ok = fk_send(fd, "-ERR unknown command\r\n", 22);
		}
		for (int k = 0; k < argc; k++)
			free(argv[k]);
		if (!ok)
			break;
	}
	if (in)
		fclose(in);
}

static void *fk_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&fk.stop)) {
		int fd = accept(fk.lfd, NULL, NULL);
		if (fd < 0)
			continue;
		fk_serve(fd);
		close(fd);
	}
	return NULL;
}

static int fk_start(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	struct timeval tv = { 0, 200000 };

	fk.lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (fk.lfd < 0 || bind(fk.lfd, (struct sockaddr *)&a, sizeof a) || listen(fk.lfd, 8) ||
	    getsockname(fk.lfd, (struct sockaddr *)&a, &al))
		return -1;
	/* accept() wakes up now and then to see fk.stop. */
	setsockopt(fk.lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	fk.port = ntohs(a.sin_port);
	atomic_store(&fk.stop, false);
	atomic_store(&fk.mode, FK_OK);
	return pthread_create(&fk.th, NULL, fk_main, NULL) ? -1 : 0;
}

static void fk_stop(void)
{
	atomic_store(&fk.stop, true);
	pthread_join(fk.th, NULL);
	close(fk.lfd);
	for (int i = 0; i < fk.nkv; i++)
		free(fk.kv[i].val);
	fk.nkv = 0;
	free(fk.held);
	fk.held = NULL;
}

static void t_broken_replies(void)
{
	static const char *const why[FK_NMODES] = {
		[FK_GARBAGE] = "protocol error",
		[FK_CUT] = "closed by the server",
		[FK_BADLEN] = "protocol error",
		[FK_TRAILER] = "protocol error",
		[FK_LONGLINE] = "protocol error",
	};
	struct hm_store *s;
	char uri[256];
	unsigned char ref[2 * PS], got[2 * PS];

	CHECK(fk_start() == 0);
	if (fk.port <= 0)
		return;
	uri_of(uri, sizeof uri, fk.port, "fake", "conns=1,timeout=400,io_timeout=200,spin=0");
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	tu_fill(ref, sizeof ref, 71);
	CHECKF(hm_store_write(s, ref, sizeof ref, 0) == 0, "%s", hm_errormsg());
	CHECKF(hm_store_read(s, got, sizeof got, 0) == 0 && !memcmp(got, ref, sizeof ref), "%s",
	       hm_errormsg());
	for (int m = FK_GARBAGE; m < FK_NMODES; m++) {
		atomic_store(&fk.mode, m);
		memset(got, 0, sizeof got);
		int rc = hm_store_read(s, got, sizeof got, 0);
		if (m == FK_EXTRA) {
			/* Caught, or read in step: never wrong data. */
			CHECKF(rc < 0 || !memcmp(got, ref, sizeof ref), "mode %d: wrong data", m);
		} else {
			CHECKF(rc < 0, "mode %d: read succeeded", m);
			CHECKF(strstr(hm_errormsg(), why[m]), "mode %d: %s", m, hm_errormsg());
		}
		/* The server behaves again: the data is all there. */
		atomic_store(&fk.mode, FK_OK);
		memset(got, 0, sizeof got);
		CHECKF(hm_store_read(s, got, sizeof got, 0) == 0, "after mode %d: %s", m,
		       hm_errormsg());
		CHECKF(!memcmp(got, ref, sizeof ref), "after mode %d: wrong data", m);
	}
	hm_store_close(s);
	fk_stop();
}

/*
 * A batch of pages (a readahead window, a write-back batch: up to 512) goes
 * to a server at most PIPE_MAX commands ahead of the replies read. Redis
 * 7.0 answering 512 GETs pipelined on each of three connections at once
 * took about 13 us of CPU per GET, page-faulting in its reply buffers,
 * against 2-3 us at 256 or less; so sequential faults on one server ran at
 * half the rate this allows.
 */
#define PIPE_MAX 128 /* RB_PIPE_MAX of src/stores/redis.c */

static void t_pipeline_depth(void)
{
	struct hm_store *s;
	char uri[256];
	const size_t n = 512 * PS;
	unsigned char *ref = malloc(n), *got = malloc(n);

	CHECK(ref && got);
	CHECK(fk_start() == 0);
	if (fk.port <= 0)
		goto out;
	uri_of(uri, sizeof uri, fk.port, "hold", "conns=1,timeout=20000,io_timeout=10000,spin=0");
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	tu_fill(ref, n, 73);
	atomic_store(&fk.mode, FK_HOLD);
	atomic_store(&fk.max_held, 0);
	CHECKF(hm_store_write(s, ref, n, 0) == 0, "%s", hm_errormsg());
	int wr = atomic_load(&fk.max_held);
	atomic_store(&fk.max_held, 0);
	CHECKF(hm_store_read(s, got, n, 0) == 0, "%s", hm_errormsg());
	int rd = atomic_load(&fk.max_held);
	atomic_store(&fk.mode, FK_OK);
	CHECK(!memcmp(got, ref, n));
	/*
	 * Never more, and more than half of it: the pipeline still fills (a
	 * stall of the client mid-write makes the server answer early, so
	 * exactly PIPE_MAX is not certain on a loaded machine).
	 */
	CHECKF(wr > PIPE_MAX / 2 && wr <= PIPE_MAX, "512 SETs: %d sent ahead of their replies", wr);
	CHECKF(rd > PIPE_MAX / 2 && rd <= PIPE_MAX, "512 GETs: %d sent ahead of their replies", rd);
	hm_store_close(s);
out:
	fk_stop();
	free(ref);
	free(got);
}

int main(void)
{
	if (!ru_have("redis-server") || !ru_have("redis-cli")) {
		RUN(t_bad_uris);
		printf("skip redis tests: redis-server or redis-cli not installed\n");
		return test_done();
	}
	ru_install_bus();
	port1 = ru_free_port();
	if (port1 > 0)
		pid1 = ru_redis_start(port1, "--appendonly", "yes", "--appendfsync", "always", NULL);
	if (pid1 < 0) {
		printf("FAIL setup: cannot start redis-server on port %d\n", port1);
		t_failed++;
		return test_done();
	}
	RUN(t_bad_uris);
	RUN(t_unreachable);
	RUN(t_out_of_descriptors);
	RUN(t_roundtrip);
	RUN(t_zero_without_round_trip);
	RUN(t_isolation);
	RUN(t_evicting_server_refused);
	RUN(t_evicting_after_reconnect);
	RUN(t_server_drops_mid_write);
	RUN(t_timeouts_kept);
	RUN(t_auth);
	RUN(t_encrypted_tamper_replay);
	RUN(t_plain_replay);
	RUN(t_page_sizes);
	RUN(t_wrong_values);
	RUN(t_broken_replies);
	RUN(t_pipeline_depth);
	RUN(t_server_stops_answering);
	RUN(t_full_of_dirty_pages);
	RUN(t_evicts_once_the_server_is_back);
	RUN(t_kill_and_restart);
	RUN(t_sync_after_restart);
	RUN(t_read_beside_partial_writes);
	RUN(t_threads);
	RUN(t_strided_prefetch);
	RUN(t_sync_writes_only_written);
	RUN(t_wait_for_replica);
	ru_kill_all();
	ru_cleanup();
	return test_done();
}
