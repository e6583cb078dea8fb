/* SPDX-License-Identifier: MIT */
/*
 * The redis-cluster:// store against a real Redis Cluster of three masters
 * with one replica each (six redis-server processes on loopback, made with
 * `redis-cli --cluster create --cluster-replicas 1`, cluster-node-timeout
 * 1000 ms so that a failover takes seconds), stopped at exit even on failure:
 *
 *   - the wrong scheme for the server's mode, unreachable seeds: clear errors;
 *   - pages spread over the masters, through eviction, sync (WAIT on each
 *     master's replica) and re-read;
 *   - a slot migrated while pages live in it: ASK during the migration,
 *     MOVED after it, every byte right;
 *   - a master killed: its replica is promoted, faults wait for it, and
 *     every page synced before the kill reads back intact; writes go on.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "remote_util.h"

#define PS 4096u
#define NPAGES 1024u
#define LEN ((size_t)NPAGES * PS)
#define BUDGET (64u * PS)
#define NNODES 6

static int ports[NNODES];
static pid_t pids[NNODES];
static char seeds[128];
static unsigned char *ref;

static int cluster_start(void)
{
	char cmd[1024], out[8192];
	size_t n = 0;

	for (int i = 0; i < NNODES; i++) {
		char cf[64];
		ports[i] = ru_free_port();
		if (ports[i] < 0)
			return -1;
		/* ru_free_port() does not reserve: avoid handing out one port twice. */
		for (int j = 0; j < i; j++)
			if (ports[j] == ports[i] || ports[j] + 10000 == ports[i] ||
			    ports[j] == ports[i] + 10000)
				return -1;
		snprintf(cf, sizeof cf, "nodes-%d.conf", ports[i]);
		pids[i] = ru_redis_start(ports[i], "--cluster-enabled", "yes", "--cluster-config-file",
					 cf, "--cluster-node-timeout", "1000", "--appendonly", "no",
					 "--repl-diskless-sync-delay", "0", NULL);
		if (pids[i] < 0)
			return -1;
	}
	n = (size_t)snprintf(cmd, sizeof cmd, "redis-cli --cluster create");
	for (int i = 0; i < NNODES; i++)
		n += (size_t)snprintf(cmd + n, sizeof cmd - n, " 127.0.0.1:%d", ports[i]);
	snprintf(cmd + n, sizeof cmd - n, " --cluster-replicas 1 --cluster-yes 2>&1");
	if (ru_sh(out, sizeof out, "%s", cmd) != 0) {
		printf("redis-cli --cluster create failed:\n%s\n", out);
		return -1;
	}
	/* Every node agrees that the cluster is up, and every master has its replica. */
	for (int t = 0; t < 300; t++) {
		int ok = 0, masters_linked = 0;
		for (int i = 0; i < NNODES; i++) {
			ru_sh(out, sizeof out, "redis-cli -p %d CLUSTER INFO", ports[i]);
			ok += strstr(out, "cluster_state:ok") != NULL;
			ru_sh(out, sizeof out, "redis-cli -p %d INFO replication", ports[i]);
			masters_linked += strstr(out, "role:master") && strstr(out, "state=online");
		}
		if (ok == NNODES && masters_linked == 3)
			break;
		if (t == 299) {
			printf("cluster not ready: %d nodes ok, %d masters with a replica\n", ok,
			       masters_linked);
			return -1;
		}
		ru_sleep_ms(100);
	}
	snprintf(seeds, sizeof seeds, "127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1]);
	return 0;
}

/* Index of a node that is a master now (skipping `not`), or -1. */
static int find_master(int not)
{
	char out[4096];

	for (int i = 0; i < NNODES; i++) {
		if (i == not || pids[i] <= 0)
			continue;
		ru_sh(out, sizeof out, "redis-cli -p %d ROLE | head -1", ports[i]);
		if (!strncmp(out, "master", 6))
			return i;
	}
	return -1;
}

static int node_of_port(int port)
{
	for (int i = 0; i < NNODES; i++)
		if (ports[i] == port)
			return i;
	return -1;
}

/* The node serving `slot` (from CLUSTER SLOTS via redis-cli), or -1. */
static int slot_owner(int ask_node, int slot)
{
	char out[8192];
	const char *p;

	/* Lines of CLUSTER NODES: id addr flags master ping pong epoch state slots... */
	ru_sh(out, sizeof out, "redis-cli -p %d CLUSTER NODES", ports[ask_node]);
	for (p = out; p && *p;) {
		const char *nl = strchr(p, '\n');
		char line[1024], *tok, *save = NULL;
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		int field = 0, port = 0, master = 0;
		if (l >= sizeof line)
			l = sizeof line - 1;
		memcpy(line, p, l);
		line[l] = 0;
		for (tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save), field++) {
			if (field == 1) {
				const char *c = strchr(tok, ':');
				port = c ? atoi(c + 1) : 0;
			} else if (field == 2) {
				master = strstr(tok, "master") != NULL && !strstr(tok, "fail");
			} else if (field >= 8 && master && tok[0] != '[') {
				int a = atoi(tok), b = a;
				const char *dash = strchr(tok, '-');
				if (dash)
					b = atoi(dash + 1);
				if (slot >= a && slot <= b)
					return node_of_port(port);
			}
		}
		p = nl ? nl + 1 : NULL;
	}
	return -1;
}

static int node_id(int i, char *id, size_t n)
{
	char out[64];

	if (ru_sh(out, sizeof out, "redis-cli -p %d CLUSTER MYID", ports[i]) != 0)
		return -1;
	out[strcspn(out, "\r\n")] = 0;
	snprintf(id, n, "%.60s", out);
	return id[0] ? 0 : -1;
}

/* ------------------------------------------------------------------ cases */

static void t_open_errors(void)
{
	struct hm_store *s;
	char uri[256];
	int rc, port;
	pid_t pid;

	/*
	 * redis:// naming one node of a cluster takes it for the cluster's
	 * seed, as it takes several: pages go to every master, by slot.
	 */
	{
		const size_t n = 256 * 4096;
		char *w = malloc(n), *back = malloc(n), out[64];
		int masters = 0;
		CHECK(w && back);
		tu_fill(w, n, 5);
		snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/one?io_timeout=500", ports[0]);
		rc = hm_store_open(&s, uri, 0);
		CHECKF(rc == 0, "rc %d: %s", rc, hm_errormsg());
		CHECK(hm_store_write(s, w, n, 0) == 0);
		CHECK(hm_store_read(s, back, n, 0) == 0 && !memcmp(w, back, n));
		for (int i = 0; i < NNODES; i++) {
			ru_sh(out, sizeof out, "redis-cli -p %d ROLE | head -1", ports[i]);
			if (strncmp(out, "master", 6))
				continue;
			ru_sh(out, sizeof out, "redis-cli -p %d DBSIZE", ports[i]);
			masters += atoi(out) > 0;
		}
		CHECK(hm_store_close(s) == 0);
		free(w);
		free(back);
		CHECKF(masters == 3, "%d of 3 masters hold pages", masters);
	}
	port = ru_free_port();
	pid = ru_redis_start(port, NULL);
	CHECK(pid > 0);
	snprintf(uri, sizeof uri, "redis-cluster://127.0.0.1:%d/ns", port);
	rc = hm_store_open(&s, uri, 0);
	ru_stop(pid, SIGKILL);
	CHECKF(rc < 0 && strstr(hm_errormsg(), "cluster"), "rc %d: %s", rc, hm_errormsg());
	snprintf(uri, sizeof uri, "redis-cluster://127.0.0.1:%d,127.0.0.1:%d/ns?io_timeout=300",
		 port, port + 1);
	rc = hm_store_open(&s, uri, 0);
	CHECKF(rc == -ECONNREFUSED, "rc %d: %s", rc, hm_errormsg());
	CHECKF(strstr(hm_errormsg(), "no seed node answered"), "%s", hm_errormsg());
}

static struct ru_env E; /* the store the later cases share */

static void t_spread_and_sync(void)
{
	struct hm_remote_stats st;
	char uri[512], out[256];
	int rc, with_keys = 0;

	snprintf(uri, sizeof uri, "redis-cluster://%s/cl?timeout=30000,io_timeout=500", seeds);
	rc = ru_env_open(&E, uri, LEN, BUDGET);
	CHECKF(!rc, "%s", hm_errormsg());
	tu_fill(ref, LEN, 77);
	CHECK(!ru_try_write(E.p, ref, LEN));
	CHECK(hm_sync(E.p, LEN, MS_SYNC) == 0);
	CHECK(hm_remote_stats(E.s, &st) == 0);
	CHECKF(st.waits >= 3, "%llu WAITs for three masters (sets %llu, round trips %llu, refreshes %llu)",
	       (unsigned long long)st.waits, (unsigned long long)st.sets,
	       (unsigned long long)st.round_trips, (unsigned long long)st.refreshes);
	for (int i = 0; i < NNODES; i++) {
		ru_sh(out, sizeof out, "redis-cli -p %d DBSIZE", ports[i]);
		with_keys += atoi(out) > 100;
	}
	/* Three masters and their replicas hold pages: sharded and replicated. */
	CHECKF(with_keys == NNODES, "%d of %d nodes hold pages", with_keys, NNODES);
	CHECK(hm_advise(E.p, LEN, HM_ADV_DONTNEED) == 0);
	long long bad = ru_verify(E.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	/* redis:// listing several seed nodes is the same cluster store. */
	struct hm_store *s2;
	snprintf(uri, sizeof uri, "redis://%.400s/seeds?io_timeout=500", seeds);
	rc = hm_store_open(&s2, uri, 0);
	CHECKF(rc == 0, "%.100s: %.300s", uri, hm_errormsg());
	if (!rc) {
		char page[4096] = { 1 }, back[4096];
		CHECK(hm_store_write(s2, page, sizeof page, 1 << 20) == 0);
		CHECK(hm_store_read(s2, back, sizeof back, 1 << 20) == 0 && !memcmp(page, back, 4096));
		CHECK(hm_store_close(s2) == 0);
	}
}

static void t_ask_and_moved(void)
{
	struct hm_remote_stats st0, st1;
	char out[8192], prefix[256], key[300], srcid[64], dstid[64];
	int slot, src, dst, m;
	long long bad;

	if (!E.s)
		SKIP("no store (t_spread_and_sync failed)");
	/* The key of page 0 ("PREFIX0:VERSION") and the slot it lives in. */
	m = find_master(-1);
	CHECK(m >= 0);
	CHECK(hm_remote_stats(E.s, &st0) == 0);
	snprintf(prefix, sizeof prefix, "%s", st0.prefix);
	key[0] = 0;
	for (int i = 0; i < NNODES && !key[0]; i++) {
		ru_sh(out, sizeof out, "redis-cli -p %d --scan --pattern '%s0:*' | head -1", ports[i],
		      prefix);
		out[strcspn(out, "\r\n")] = 0;
		snprintf(key, sizeof key, "%.200s", out);
	}
	CHECKF(key[0], "no key for page 0 under %s", prefix);
	ru_sh(out, sizeof out, "redis-cli -p %d CLUSTER KEYSLOT %s", ports[m], key);
	slot = atoi(out);
	src = slot_owner(m, slot);
	CHECK(src >= 0);
	dst = find_master(src);
	CHECK(dst >= 0);
	CHECK(!node_id(src, srcid, sizeof srcid) && !node_id(dst, dstid, sizeof dstid));
	/* Migrating: page 0's key is on dst, the rest of the slot still on src. */
	CHECK(ru_sh(NULL, 0, "redis-cli -p %d CLUSTER SETSLOT %d IMPORTING %s", ports[dst], slot,
		    srcid) == 0);
	CHECK(ru_sh(NULL, 0, "redis-cli -p %d CLUSTER SETSLOT %d MIGRATING %s", ports[src], slot,
		    dstid) == 0);
	CHECK(ru_sh(out, sizeof out, "redis-cli -p %d MIGRATE 127.0.0.1 %d %s 0 5000", ports[src],
		    ports[dst], key) == 0);
	CHECKF(strstr(out, "OK"), "MIGRATE: %.200s", out);
	CHECK(hm_remote_stats(E.s, &st0) == 0);
	CHECK(hm_advise(E.p, LEN, HM_ADV_DONTNEED) == 0);
	bad = ru_verify(E.p, ref, 8 * PS);
	CHECKF(bad == -1, "mismatch at %lld during the migration", bad);
	CHECK(hm_remote_stats(E.s, &st1) == 0);
	CHECKF(st1.redirects > st0.redirects, "no ASK followed");
	/* The slot moves for good: the store's map is stale until MOVED. */
	ru_sh(out, sizeof out,
	      "for k in $(redis-cli -p %d CLUSTER GETKEYSINSLOT %d 10000); do "
	      "redis-cli -p %d MIGRATE 127.0.0.1 %d $k 0 5000 >/dev/null; done",
	      ports[src], slot, ports[src], ports[dst]);
	for (int i = 0; i < NNODES; i++)
		ru_sh(NULL, 0, "redis-cli -p %d CLUSTER SETSLOT %d NODE %s >/dev/null", ports[i], slot,
		      dstid);
	st0 = st1;
	CHECK(hm_advise(E.p, LEN, HM_ADV_DONTNEED) == 0);
	bad = ru_verify(E.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld after the migration", bad);
	CHECK(hm_remote_stats(E.s, &st1) == 0);
	CHECKF(st1.redirects > st0.redirects, "no MOVED followed");
	/* Writes follow the slot too. */
	memset(E.p, 0x6b, 64);
	memset(ref, 0x6b, 64);
	CHECK(hm_sync(E.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(E.p, LEN, HM_ADV_DONTNEED) == 0);
	bad = ru_verify(E.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
}

static void t_master_killed(void)
{
	struct hm_remote_stats st;
	char out[4096];
	int victim, rc;
	long long bad;

	if (!E.s)
		SKIP("no store (t_spread_and_sync failed)");
	/* Everything synced (WAIT): on the replicas too. */
	tu_fill(ref, LEN / 2, 99);
	CHECK(!ru_try_write(E.p, ref, LEN / 2));
	CHECK(hm_sync(E.p, LEN, MS_SYNC) == 0);
	CHECK(hm_advise(E.p, LEN, HM_ADV_DONTNEED) == 0);
	victim = find_master(-1);
	CHECK(victim >= 0);
	ru_stop(pids[victim], SIGKILL);
	pids[victim] = -1;
	/* Faults on the dead master's pages wait for the promotion (timeout=30 s). */
	bad = ru_verify(E.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld after the failover: %s", bad, hm_errormsg());
	CHECK(hm_remote_stats(E.s, &st) == 0);
	CHECKF(st.refreshes >= 2, "slot map refreshed %llu times", (unsigned long long)st.refreshes);
	/* The replica is a master now. */
	int promoted = 0;
	for (int i = 0; i < NNODES; i++) {
		if (pids[i] <= 0)
			continue;
		ru_sh(out, sizeof out, "redis-cli -p %d ROLE | head -1", ports[i]);
		promoted += !strncmp(out, "master", 6);
	}
	CHECKF(promoted == 3, "%d masters after the failover", promoted);
	/* Writes go on after the failover. */
	tu_fill(ref + LEN / 2, LEN / 2, 123);
	CHECK(!ru_try_write(E.p + LEN / 2, ref + LEN / 2, LEN / 2));
	rc = hm_sync(E.p, LEN, MS_SYNC);
	CHECKF(rc == 0, "sync after failover: %s", hm_errormsg());
	CHECK(hm_advise(E.p, LEN, HM_ADV_DONTNEED) == 0);
	bad = ru_verify(E.p, ref, LEN);
	CHECKF(bad == -1, "mismatch at %lld", bad);
	ru_env_close(&E);
}

int main(void)
{
	if (!ru_have("redis-server") || !ru_have("redis-cli")) {
		printf("skip redis cluster tests: redis-server or redis-cli not installed\n");
		t_skipped++;
		return test_done();
	}
	ru_install_bus();
	ref = malloc(LEN);
	for (int attempt = 0; attempt < 3; attempt++) {
		if (cluster_start() == 0)
			break;
		ru_kill_all();
		memset(ports, 0, sizeof ports);
		ports[0] = -1;
	}
	if (!ref || ports[0] <= 0) {
		printf("FAIL setup: cannot start a Redis Cluster\n");
		t_failed++;
		ru_kill_all();
		ru_cleanup();
		return test_done();
	}
	RUN(t_open_errors);
	RUN(t_spread_and_sync);
	RUN(t_ask_and_moved);
	RUN(t_master_killed);
	if (E.s)
		ru_env_close(&E);
	ru_kill_all();
	ru_cleanup();
	free(ref);
	return test_done();
}
