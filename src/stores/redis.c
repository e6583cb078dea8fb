/* SPDX-License-Identifier: MIT */
/*
 * redis:// and redis-cluster:// - remote memory on Redis.
 *
 *   redis://[user:password@]host:port[/namespace][?opts]
 *   redis-cluster://[user:password@]host:port[,host:port...][/namespace][?opts]
 *
 * The frame format, versions, encryption, retries and prefetch are shared
 * with memcached (remote_common.c); this file executes batches of GET, SET
 * and DEL on Redis with hiredis (Debian's 0.14, which has no cluster
 * support, so the cluster client is here):
 *
 * - A pool of up to conns= connections per server; each batch takes one
 *   connection per server it touches, sends all of its commands (one
 *   pipeline per server, every server's pipeline in flight at once) and then
 *   reads the replies. Many faulting threads thus have several connections
 *   in flight.
 * - Redis Cluster: the key's slot is CRC16(key) mod 16384 (Redis's
 *   hash-tag rule included); a slot map from CLUSTER SLOTS sends each key to
 *   its master. MOVED updates the slot and schedules a refresh of the whole
 *   map; ASK sends ASKING and the command to the importing node once. A
 *   server that cannot be reached, CLUSTERDOWN or READONLY refresh the map
 *   too, so when a replica is promoted after its master died, the retries of
 *   the common layer find it.
 * - flush() (hmsync MS_SYNC) sends WAIT on every connection that wrote since
 *   the last flush, for the replicas its master has (INFO replication), or
 *   replicas=N: a synced page is on the replicas, and survives a failover.
 * - Every server is checked on the first connection: a maxmemory-policy
 *   other than noeviction is refused (it could drop pages).
 */
#include <hiredis/hiredis.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "stores/remote_common.h"

#define RN_MAX 64
#define SLOTS 16384

struct rconn {
	redisContext *c;
	bool busy;
	bool wrote; /* writes not yet confirmed by WAIT */
};

struct rnode {
	char host[256];
	int port;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rconn *conns;
	_Atomic bool checked; /* eviction policy (and mode) verified */
	_Atomic bool ever;    /* a connection was made before */
	bool lost_wrote; /* a connection with unconfirmed writes was lost */
};

struct redis_be {
	struct rm_store *s;
	bool cluster;
	pthread_mutex_t nodes_lock;
	struct rnode *nodes[RN_MAX];
	_Atomic int nnodes;
	pthread_rwlock_t map_lock;
	int16_t map[SLOTS];
	pthread_mutex_t refresh_lock;
	_Atomic bool need_refresh;
	uint64_t last_refresh;
};

/* ---------------------------------------------------------------- slots */

static uint16_t crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;

	/* CRC16-CCITT (XMODEM), as Redis Cluster specifies. */
	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int k = 0; k < 8; k++)
			crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
	}
	return crc;
}

static uint16_t key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open) {
		const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
		if (close && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) & (SLOTS - 1);
	}
	return crc16(key, len) & (SLOTS - 1);
}

/* ---------------------------------------------------------------- nodes */

/* The node for host:port, added if new; -1 if the table is full. */
static int node_get(struct redis_be *b, const char *host, int port)
{
	int i, n;

	pthread_mutex_lock(&b->nodes_lock);
	n = atomic_load(&b->nnodes);
	for (i = 0; i < n; i++)
		if (b->nodes[i]->port == port && !strcmp(b->nodes[i]->host, host))
			goto out;
	i = -1;
	if (n < RN_MAX && strlen(host) < sizeof b->nodes[0]->host) {
		struct rnode *nd = calloc(1, sizeof *nd);
		if (nd)
			nd->conns = calloc(b->s->cfg.conns, sizeof *nd->conns);
		if (nd && nd->conns) {
			strcpy(nd->host, host);
			nd->port = port;
			pthread_mutex_init(&nd->lock, NULL);
			pthread_cond_init(&nd->cond, NULL);
			b->nodes[n] = nd;
			atomic_store(&b->nnodes, n + 1);
			i = n;
		} else if (nd) {
			free(nd);
		}
	}
out:
	pthread_mutex_unlock(&b->nodes_lock);
	return i;
}

static struct timeval ms_tv(uint32_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

/*
 * Verifies a server on the first connection to it: that it cannot evict
 * pages, and that it is (or is not) a cluster node as the scheme says.
 * Returns 0 or a final -errno with a message.
 */
static int check_server(struct redis_be *b, struct rnode *n, redisContext *c)
{
	const char *what = b->s->cfg.what;
	redisReply *r;
	char policy[64] = "";
	int rc = 0;

	r = redisCommand(c, "CONFIG GET maxmemory-policy");
	if (!r)
		return hm__error(-ECONNRESET, "%s: %s:%d: %s", what, n->host, n->port, c->errstr);
	if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOAUTH", 6)) {
		rc = hm__error(-EACCES, "%s: %s:%d requires a password (give it in the URI, "
					"password_file= or HMMAP_REDIS_PASSWORD)",
			       what, n->host, n->port);
		goto out;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_STRING)
		snprintf(policy, sizeof policy, "%s", r->element[1]->str);
	freeReplyObject(r);
	if (!policy[0]) {
		/* CONFIG may be renamed away; INFO memory says it too. */
		r = redisCommand(c, "INFO memory");
		if (!r)
			return hm__error(-ECONNRESET, "%s: %s:%d: %s", what, n->host, n->port,
					 c->errstr);
		const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "maxmemory_policy:")
							      : NULL;
		if (p)
			sscanf(p + 17, "%63[^\r\n]", policy);
		freeReplyObject(r);
	}
	if (!policy[0])
		return hm__error(-EPROTO, "%s: cannot read the maxmemory-policy of %s:%d", what,
				 n->host, n->port);
	if (strcmp(policy, "noeviction"))
		return hm__error(-EINVAL,
				 "%s: %s:%d has maxmemory-policy %s and could evict pages; remote "
				 "memory needs maxmemory-policy noeviction",
				 what, n->host, n->port, policy);
	r = redisCommand(c, "INFO cluster");
	if (!r)
		return hm__error(-ECONNRESET, "%s: %s:%d: %s", what, n->host, n->port, c->errstr);
	if (r->type == REDIS_REPLY_STRING) {
		bool on = strstr(r->str, "cluster_enabled:1") != NULL;
		if (on && !b->cluster)
			rc = hm__error(-EINVAL, "%s: %s:%d is a Redis Cluster node; use "
						"redis-cluster://",
				       what, n->host, n->port);
		else if (!on && b->cluster)
			rc = hm__error(-EINVAL, "%s: %s:%d is not in cluster mode; use redis://",
				       what, n->host, n->port);
	}
out:
	freeReplyObject(r);
	return rc;
}

/* Opens a connection: 0, RM_PENDING (cannot reach it now) or a final -errno. */
static int conn_open(struct redis_be *b, struct rnode *n, struct rconn *cn)
{
	struct rm_config *cfg = &b->s->cfg;
	struct timeval tv = ms_tv(cfg->io_timeout_ms);
	redisContext *c = redisConnectWithTimeout(n->host, n->port, tv);
	redisReply *r;
	int rc;

	if (!c || c->err) {
		hm__error(-ECONNREFUSED, "%s: cannot connect to %s:%d: %s", cfg->what, n->host,
			  n->port, c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return RM_PENDING;
	}
	redisSetTimeout(c, tv);
	if (cfg->have_password) {
		if (cfg->user[0])
			r = redisCommand(c, "AUTH %s %s", cfg->user, cfg->password);
		else
			r = redisCommand(c, "AUTH %s", cfg->password);
		if (!r) {
			hm__error(-ECONNRESET, "%s: %s:%d: %s", cfg->what, n->host, n->port, c->errstr);
			redisFree(c);
			return RM_PENDING;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			/* The server's text names no secret ("WRONGPASS invalid username-password pair"). */
			rc = hm__error(-EACCES, "%s: authentication to %s:%d failed: %s", cfg->what,
				       n->host, n->port, r->str);
			freeReplyObject(r);
			redisFree(c);
			return rc;
		}
		freeReplyObject(r);
	}
	if (!n->checked) {
		rc = check_server(b, n, c);
		if (rc == -ECONNRESET || rc == -EPROTO) {
			redisFree(c);
			return RM_PENDING;
		}
		if (rc) {
			redisFree(c);
			return rc;
		}
		n->checked = true;
	}
	if (atomic_exchange(&n->ever, true))
		rm_count(b->s, reconnects, 1);
	cn->c = c;
	return 0;
}

/* Takes a connection to n (opening one if allowed): 0, RM_PENDING or -errno. */
static int conn_get(struct redis_be *b, struct rnode *n, struct rconn **out)
{
	uint32_t i, max = b->s->cfg.conns;
	struct rconn *free_slot;
	int rc;

	pthread_mutex_lock(&n->lock);
	for (;;) {
		free_slot = NULL;
		for (i = 0; i < max; i++) {
			struct rconn *cn = &n->conns[i];
			if (cn->busy)
				continue;
			if (cn->c) {
				cn->busy = true;
				pthread_mutex_unlock(&n->lock);
				*out = cn;
				return 0;
			}
			if (!free_slot)
				free_slot = cn;
		}
		if (free_slot)
			break;
		pthread_cond_wait(&n->cond, &n->lock);
	}
	free_slot->busy = true;
	pthread_mutex_unlock(&n->lock);
	rc = conn_open(b, n, free_slot);
	if (rc) {
		pthread_mutex_lock(&n->lock);
		free_slot->busy = false;
		pthread_cond_signal(&n->cond);
		pthread_mutex_unlock(&n->lock);
		return rc;
	}
	*out = free_slot;
	return 0;
}

static void conn_put(struct rnode *n, struct rconn *cn, bool ok)
{
	pthread_mutex_lock(&n->lock);
	if (!ok) {
		if (cn->wrote)
			n->lost_wrote = true;
		redisFree(cn->c);
		cn->c = NULL;
		cn->wrote = false;
	}
	cn->busy = false;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
}

/* ------------------------------------------------------------- topology */

static int16_t slot_node(struct redis_be *b, uint16_t slot)
{
	int16_t v;

	pthread_rwlock_rdlock(&b->map_lock);
	v = b->map[slot];
	pthread_rwlock_unlock(&b->map_lock);
	return v;
}

/* Parses a CLUSTER SLOTS reply into map; 0 or -EPROTO. */
static int parse_slots(struct redis_be *b, struct rnode *from, redisReply *r, int16_t *map)
{
	if (r->type != REDIS_REPLY_ARRAY)
		return -EPROTO;
	for (int i = 0; i < SLOTS; i++)
		map[i] = -1;
	for (size_t i = 0; i < r->elements; i++) {
		redisReply *e = r->element[i], *m;
		const char *host;
		int id;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER)
			return -EPROTO;
		m = e->element[2];
		if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
		    m->element[0]->type != REDIS_REPLY_STRING ||
		    m->element[1]->type != REDIS_REPLY_INTEGER)
			return -EPROTO;
		host = m->element[0]->len ? m->element[0]->str : from->host;
		id = node_get(b, host, (int)m->element[1]->integer);
		if (id < 0)
			return -EPROTO;
		for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
			if (s >= 0 && s < SLOTS)
				map[s] = (int16_t)id;
	}
	return 0;
}

/*
 * Fetches the slot map from the first node that answers (at most every
 * 20 ms; concurrent callers share one refresh). 0 or -errno.
 */
static int refresh(struct redis_be *b, bool force)
{
	int16_t *map;
	int rc = -EAGAIN;

	pthread_mutex_lock(&b->refresh_lock);
	if (!force && rm_now_ns() - b->last_refresh < 20000000ull) {
		pthread_mutex_unlock(&b->refresh_lock);
		return 0;
	}
	map = malloc(sizeof b->map);
	if (!map) {
		pthread_mutex_unlock(&b->refresh_lock);
		return hm__error(-ENOMEM, "out of memory");
	}
	atomic_store(&b->need_refresh, false);
	for (int i = 0; i < atomic_load(&b->nnodes) && rc; i++) {
		struct rnode *n = b->nodes[i];
		struct rconn *cn;
		redisReply *r;
		int g = conn_get(b, n, &cn);

		if (g < 0) {
			rc = g;
			break; /* authentication or an evicting server: final */
		}
		if (g)
			continue;
		r = redisCommand(cn->c, "CLUSTER SLOTS");
		if (!r) {
			conn_put(n, cn, false);
			continue;
		}
		rm_count(b->s, round_trips, 1);
		if (r->type == REDIS_REPLY_ERROR) {
			hm__error(-EPROTO, "%s: CLUSTER SLOTS on %s:%d: %s", b->s->cfg.what, n->host,
				  n->port, r->str);
		} else if (!parse_slots(b, n, r, map)) {
			rc = 0;
		}
		freeReplyObject(r);
		conn_put(n, cn, true);
	}
	if (!rc) {
		pthread_rwlock_wrlock(&b->map_lock);
		memcpy(b->map, map, sizeof b->map);
		pthread_rwlock_unlock(&b->map_lock);
		rm_count(b->s, refreshes, 1);
	} else {
		atomic_store(&b->need_refresh, true);
	}
	b->last_refresh = rm_now_ns();
	pthread_mutex_unlock(&b->refresh_lock);
	free(map);
	return rc;
}

/* ------------------------------------------------------------ batches */

/* "MOVED 3999 127.0.0.1:6381": the slot and node of a redirection, or -1. */
static int parse_redirect(struct redis_be *b, const char *msg, int *slot)
{
	char host[256];
	int port;
	const char *sp = strchr(msg, ' '), *colon;

	if (!sp || sscanf(sp + 1, "%d", slot) != 1)
		return -1;
	sp = strchr(sp + 1, ' ');
	if (!sp || !(colon = strrchr(sp, ':')) || (size_t)(colon - sp - 1) >= sizeof host)
		return -1;
	memcpy(host, sp + 1, (size_t)(colon - sp - 1));
	host[colon - sp - 1] = 0;
	port = atoi(colon + 1);
	if (!host[0] || port <= 0 || *slot < 0 || *slot >= SLOTS)
		return -1;
	return node_get(b, host, port);
}

/*
 * Applies one reply to op; sets *redirect when the op must go elsewhere now.
 * Returns true when op keeps the reply (a GET's value is used in place,
 * without a copy, and freed by release()).
 */
static bool apply_reply(struct redis_be *b, struct rnode *n, struct rm_op *op, redisReply *r,
			bool *redirect)
{
	const char *what = b->s->cfg.what;

	if (r->type == REDIS_REPLY_ERROR) {
		const char *e = r->str;
		int slot, id;

		if (!strncmp(e, "MOVED ", 6) || !strncmp(e, "ASK ", 4)) {
			if (!b->cluster) {
				op->st = hm__error(-EINVAL, "%s: %s:%d is a Redis Cluster node; use "
							    "redis-cluster://",
						   what, n->host, n->port);
				return false;
			}
			id = parse_redirect(b, e, &slot);
			if (id < 0) {
				op->st = hm__error(-EPROTO, "%s: bad redirection from %s:%d: %s",
						   what, n->host, n->port, e);
				return false;
			}
			rm_count(b->s, redirects, 1);
			if (e[0] == 'M') {
				pthread_rwlock_wrlock(&b->map_lock);
				b->map[slot] = (int16_t)id;
				pthread_rwlock_unlock(&b->map_lock);
				atomic_store(&b->need_refresh, true);
			} else {
				op->ask = id;
			}
			*redirect = true;
			return false;
		}
		if (!strncmp(e, "LOADING", 7) || !strncmp(e, "TRYAGAIN", 8) ||
		    !strncmp(e, "CLUSTERDOWN", 11) || !strncmp(e, "MASTERDOWN", 10) ||
		    !strncmp(e, "READONLY", 8) || !strncmp(e, "BUSY", 4)) {
			/* Transient: the server is starting, or the cluster is failing over. */
			hm__error(-EAGAIN, "%s: %s:%d: %s", what, n->host, n->port, e);
			if (b->cluster)
				atomic_store(&b->need_refresh, true);
			return false;
		}
		if (!strncmp(e, "OOM", 3)) {
			op->st = hm__error(-ENOSPC, "%s: %s:%d is out of memory (maxmemory): %s",
					   what, n->host, n->port, e);
			return false;
		}
		if (!strncmp(e, "NOAUTH", 6) || !strncmp(e, "WRONGPASS", 9) ||
		    !strncmp(e, "NOPERM", 6)) {
			op->st = hm__error(-EACCES, "%s: %s:%d refused: %s", what, n->host, n->port,
					   e);
			return false;
		}
		op->st = hm__error(-EIO, "%s: %s:%d: %s", what, n->host, n->port, e);
		return false;
	}
	switch (op->kind) {
	case RM_GET:
		if (r->type == REDIS_REPLY_NIL) {
			op->st = RM_MISSING;
		} else if (r->type == REDIS_REPLY_STRING) {
			op->vlen = r->len;
			op->val = (unsigned char *)r->str;
			op->owner = r;
			op->st = 0;
			return true;
		} else {
			op->st = hm__error(-EPROTO, "%s: unexpected reply to GET", what);
		}
		break;
	case RM_SET:
		op->st = r->type == REDIS_REPLY_STATUS
				 ? 0
				 : hm__error(-EPROTO, "%s: unexpected reply to SET", what);
		break;
	default:
		op->st = 0;
		break;
	}
	return false;
}

static void append_op(redisContext *c, struct rm_op *op)
{
	const char *argv[3];
	size_t len[3];
	int argc = 2;

	if (op->ask >= 0)
		redisAppendCommand(c, "ASKING");
	argv[1] = op->key;
	len[1] = op->klen;
	if (op->kind == RM_GET) {
		argv[0] = "GET";
	} else if (op->kind == RM_SET) {
		argv[0] = "SET";
		argv[2] = (const char *)op->val;
		len[2] = op->vlen;
		argc = 3;
	} else {
		argv[0] = "DEL";
	}
	len[0] = strlen(argv[0]);
	redisAppendCommandArgv(c, argc, argv, len);
}

static void redis_exec(void *be, struct rm_op *ops, size_t n)
{
	struct redis_be *b = be;
	struct {
		int node;
		struct rconn *cn;
		bool ok;
	} grp[RN_MAX];

	for (int round = 0; round < 8; round++) {
		int ng = 0;
		bool redirect = false;

		if (b->cluster && atomic_load(&b->need_refresh))
			refresh(b, false);
		/* Route every pending op. */
		for (size_t i = 0; i < n; i++) {
			struct rm_op *op = &ops[i];
			int g;
			if (op->st != RM_PENDING)
				continue;
			if (!b->cluster)
				op->node = 0;
			else if (op->ask >= 0)
				op->node = op->ask;
			else
				op->node = slot_node(b, key_slot(op->key, op->klen));
			if (op->node < 0) {
				atomic_store(&b->need_refresh, true);
				hm__error(-EAGAIN, "%s: no master serves the slot of page %llu",
					  b->s->cfg.what, (unsigned long long)op->idx);
				continue;
			}
			for (g = 0; g < ng && grp[g].node != op->node; g++)
				;
			if (g == ng) {
				grp[ng].node = op->node;
				grp[ng].cn = NULL;
				grp[ng].ok = false;
				ng++;
			}
		}
		/* Send each server its pipeline; all of them are in flight at once. */
		uint64_t sent = 0;
		for (int g = 0; g < ng; g++) {
			struct rnode *nd = b->nodes[grp[g].node];
			int rc = conn_get(b, nd, &grp[g].cn), done = 0;
			if (rc) {
				grp[g].cn = NULL;
				for (size_t i = 0; i < n; i++)
					if (ops[i].st == RM_PENDING && ops[i].node == grp[g].node &&
					    rc < 0)
						ops[i].st = rc;
				if (b->cluster)
					atomic_store(&b->need_refresh, true);
				continue;
			}
			redisContext *c = grp[g].cn->c;
			for (size_t i = 0; i < n; i++) {
				if (ops[i].st != RM_PENDING || ops[i].node != grp[g].node)
					continue;
				append_op(c, &ops[i]);
				if (ops[i].kind != RM_GET)
					grp[g].cn->wrote = true;
			}
			grp[g].ok = true;
			while (!done) {
				if (redisBufferWrite(c, &done) == REDIS_ERR) {
					grp[g].ok = false;
					break;
				}
			}
			sent = rm_now_ns();
		}
		/* Collect the replies. */
		for (int g = 0; g < ng; g++) {
			struct rnode *nd = b->nodes[grp[g].node];
			struct rconn *cn = grp[g].cn;
			if (!cn)
				continue;
			/*
			 * The first server's first reply is awaited polling when
			 * the batch is a page or two: someone waits for it. Larger
			 * batches (readahead, write-back) are about bandwidth, and
			 * a polling thread would take a CPU that the other threads
			 * and a local server can use.
			 */
			if (g == 0 && n <= RM_SPIN_OPS && grp[g].ok &&
			    cn->c->reader->pos >= cn->c->reader->len)
				rm_spin_wait(b->s, cn->c->fd, sent);
			for (size_t i = 0; i < n && grp[g].ok; i++) {
				struct rm_op *op = &ops[i];
				redisReply *r = NULL;
				if (op->st != RM_PENDING || op->node != grp[g].node)
					continue;
				if (op->ask >= 0) {
					if (redisGetReply(cn->c, (void **)&r) != REDIS_OK) {
						grp[g].ok = false;
						break;
					}
					freeReplyObject(r);
					op->ask = -1;
				}
				if (redisGetReply(cn->c, (void **)&r) != REDIS_OK) {
					grp[g].ok = false;
					break;
				}
				if (!apply_reply(b, nd, op, r, &redirect))
					freeReplyObject(r);
			}
			if (!grp[g].ok) {
				hm__error(-ECONNRESET, "%s: %s:%d: %s", b->s->cfg.what, nd->host,
					  nd->port, cn->c->errstr[0] ? cn->c->errstr : "connection lost");
				if (b->cluster)
					atomic_store(&b->need_refresh, true);
			} else {
				rm_count(b->s, round_trips, 1);
			}
			conn_put(nd, cn, grp[g].ok);
		}
		if (!redirect)
			break;
	}
}

/* ------------------------------------------------------------- flush */

/*
 * Replicas connected to the master behind c (INFO replication: every
 * replica, also one still in its first sync, which WAIT then waits for),
 * -1 if it is not a master, -2 if it did not answer.
 */
static long long connected_replicas(redisContext *c)
{
	redisReply *r = redisCommand(c, "INFO replication");
	long long n = -2;
	const char *p;

	if (!r)
		return -2;
	if (r->type == REDIS_REPLY_STRING) {
		if (strstr(r->str, "role:master") && (p = strstr(r->str, "connected_slaves:")))
			n = atoll(p + 17);
		else
			n = -1;
	}
	freeReplyObject(r);
	return n;
}

static int redis_flush(void *be, uint64_t deadline)
{
	struct redis_be *b = be;
	const char *what = b->s->cfg.what;
	int err = 0;

	for (int i = 0; i < atomic_load(&b->nnodes); i++) {
		struct rnode *nd = b->nodes[i];
		struct rconn *mine[64];
		uint32_t nm = 0, k;
		bool lost, waiting;

		pthread_mutex_lock(&nd->lock);
		/* Writes still on a busy connection finish first. */
		do {
			waiting = false;
			for (k = 0; k < b->s->cfg.conns; k++)
				waiting |= nd->conns[k].busy && nd->conns[k].wrote;
			if (waiting) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += 10000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&nd->cond, &nd->lock, &ts);
			}
		} while (waiting && rm_now_ns() < deadline);
		for (k = 0; k < b->s->cfg.conns && nm < 64; k++) {
			struct rconn *cn = &nd->conns[k];
			if (!cn->busy && cn->c && cn->wrote) {
				cn->busy = true;
				mine[nm++] = cn;
			}
		}
		lost = nd->lost_wrote;
		nd->lost_wrote = false;
		pthread_mutex_unlock(&nd->lock);

		if (waiting && !err)
			err = hm__error(-ETIMEDOUT, "%s: writes to %s:%d did not finish in time",
					what, nd->host, nd->port);
		for (k = 0; k < nm; k++) {
			struct rconn *cn = mine[k];
			long long want = b->s->cfg.replicas, got;
			bool ok = true;

			if (want < 0) {
				want = connected_replicas(cn->c);

				if (want == -2) {
					ok = false;
				} else if (want == -1) {
					if (!err)
						err = hm__error(-EIO, "%s: %s:%d became a replica; "
								      "writes to it may be lost",
								what, nd->host, nd->port);
					want = 0;
				}
			}
			if (ok && want > 0) {
				uint64_t now = rm_now_ns();
				long long ms = deadline > now ? (long long)((deadline - now) / 1000000) : 1;
				redisReply *r = redisCommand(cn->c, "WAIT %lld %lld", want, ms ? ms : 1);
				rm_count(b->s, waits, 1);
				if (!r || r->type != REDIS_REPLY_INTEGER) {
					ok = !r ? false : ok;
					got = -1;
				} else {
					got = r->integer;
				}
				if (r)
					freeReplyObject(r);
				if (got < want && !err)
					err = hm__error(-EIO, "%s: only %lld of %lld replicas of %s:%d "
							      "acknowledged the writes",
							what, got < 0 ? 0 : got, want, nd->host,
							nd->port);
				if (got >= want)
					cn->wrote = false;
			} else if (ok) {
				cn->wrote = false;
			}
			if (!ok && !err)
				err = hm__error(-EIO, "%s: lost %s:%d before its replicas confirmed "
						      "the writes",
						what, nd->host, nd->port);
			conn_put(nd, cn, ok);
		}
		if (lost && !err) {
			/*
			 * A connection that had written was dropped before WAIT:
			 * whether its writes reached a replica is unknown, unless
			 * the master has none to wait for.
			 */
			struct rconn *cn;
			if (conn_get(b, nd, &cn) == 0) {
				long long reps = connected_replicas(cn->c);
				conn_put(nd, cn, reps != -2);
				if (b->s->cfg.replicas > 0 || reps != 0)
					err = hm__error(-EIO, "%s: a connection to %s:%d was lost "
							      "before its replicas confirmed the writes",
							what, nd->host, nd->port);
			} else if (b->s->cfg.replicas != 0) {
				err = hm__error(-EIO, "%s: %s:%d is unreachable; its replicas did not "
						      "confirm the last writes",
						what, nd->host, nd->port);
			}
		}
	}
	return err;
}

/* ------------------------------------------------------------- open */

static void redis_be_close(void *be)
{
	struct redis_be *b = be;

	for (int i = 0; i < atomic_load(&b->nnodes); i++) {
		struct rnode *nd = b->nodes[i];
		for (uint32_t k = 0; k < b->s->cfg.conns; k++)
			if (nd->conns[k].c)
				redisFree(nd->conns[k].c);
		pthread_mutex_destroy(&nd->lock);
		pthread_cond_destroy(&nd->cond);
		free(nd->conns);
		free(nd);
	}
	pthread_rwlock_destroy(&b->map_lock);
	free(b);
}

static void redis_release(void *be, struct rm_op *op)
{
	freeReplyObject(op->owner);
}

static const struct rm_backend_ops redis_bops = {
	.exec = redis_exec,
	.flush = redis_flush,
	.close = redis_be_close,
	.release = redis_release,
};

static int open_any(void **priv, const char *rest, int flags, struct hm_store_info *info,
		    bool cluster)
{
	const char *what = cluster ? "redis-cluster store" : "redis store";
	struct rm_store *s = calloc(1, sizeof *s);
	struct redis_be *b = calloc(1, sizeof *b);
	int rc;

	if (!s || !b) {
		free(s);
		free(b);
		return hm__error(-ENOMEM, "out of memory");
	}
	rc = rm_parse_uri(&s->cfg, what, rest, 6379);
	if (rc)
		goto fail;
	/* redis:// listing several seed nodes is a cluster, as redis-cluster:// says outright. */
	if (s->cfg.nhosts > 1 && !cluster) {
		cluster = true;
		what = s->cfg.what = "redis-cluster store";
	}
	if (!s->cfg.have_password) {
		const char *pw = getenv("HMMAP_REDIS_PASSWORD"), *u = getenv("HMMAP_REDIS_USER");
		if (pw && *pw) {
			if (strlen(pw) >= sizeof s->cfg.password) {
				rc = hm__error(-EINVAL, "%s: HMMAP_REDIS_PASSWORD is too long", what);
				goto fail;
			}
			strcpy(s->cfg.password, pw);
			s->cfg.have_password = true;
			if (u && *u && !s->cfg.user[0] && strlen(u) < sizeof s->cfg.user)
				strcpy(s->cfg.user, u);
		}
	}
	b->s = s;
	b->cluster = cluster;
	pthread_mutex_init(&b->nodes_lock, NULL);
	pthread_rwlock_init(&b->map_lock, NULL);
	pthread_mutex_init(&b->refresh_lock, NULL);
	for (int i = 0; i < SLOTS; i++)
		b->map[i] = cluster ? -1 : 0;
	for (int i = 0; i < s->cfg.nhosts; i++)
		if (node_get(b, s->cfg.hosts[i].name, s->cfg.hosts[i].port) < 0) {
			rc = hm__error(-ENOMEM, "out of memory");
			goto fail_be;
		}
	if (cluster) {
		rc = refresh(b, true);
		if (rc) {
			if (rc == -EAGAIN)
				rc = hm__error_wrap(-ECONNREFUSED,
						    "%s: no seed node answered CLUSTER SLOTS", what);
			goto fail_be;
		}
		/* Check every master now, so that a bad server fails the open. */
		for (int i = 0; i < atomic_load(&b->nnodes); i++) {
			struct rconn *cn;
			bool used = false;
			for (int sl = 0; sl < SLOTS && !used; sl++)
				used = b->map[sl] == i;
			if (!used)
				continue;
			rc = conn_get(b, b->nodes[i], &cn);
			if (rc) {
				if (rc == RM_PENDING)
					rc = -ECONNREFUSED;
				goto fail_be;
			}
			conn_put(b->nodes[i], cn, true);
		}
	} else {
		struct rconn *cn;
		rc = conn_get(b, b->nodes[0], &cn);
		if (rc) {
			if (rc == RM_PENDING)
				rc = -ECONNREFUSED; /* the message names the server and the cause */
			goto fail_be;
		}
		conn_put(b->nodes[0], cn, true);
	}
	rc = rm_store_init(s, &redis_bops, b);
	if (rc) {
		rm_store_close(s);
		rm_store_free(s);
		return rc;
	}
	memset(info, 0, sizeof *info);
	info->size = s->cfg.size;
	info->props = 0;
	info->align = 1;
	/* Read-only: the core then refuses PROT_WRITE mappings. */
	if (flags & HM_STORE_RDONLY)
		info->props |= HM_PROP_READONLY;
	*priv = s;
	return 0;
fail_be:
	redis_be_close(b);
	b = NULL;
fail:
	free(b);
	sodium_memzero(&s->cfg, sizeof s->cfg);
	free(s);
	return rc;
}

static int redis_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return open_any(priv, rest, flags, info, false);
}

static int cluster_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return open_any(priv, rest, flags, info, true);
}

static void redis_close(void *priv)
{
	rm_store_close(priv);
	rm_store_free(priv);
}

static int redis_read(void *priv, void *buf, size_t len, uint64_t off)
{
	return rm_read(priv, buf, len, off);
}

static int redis_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	return rm_write(priv, buf, len, off);
}

static int redis_flush_store(void *priv)
{
	return rm_flush(priv);
}

static int redis_ctl(void *priv, const char *key, const char *value)
{
	return rm_ctl(priv, key, value);
}

const struct hm_store_ops hm__store_redis = {
	.abi = HM_STORE_ABI,
	.scheme = "redis",
	.summary = "remote memory on a Redis server (pipelined, WAIT on sync, optional encryption)",
	.open = redis_open,
	.close = redis_close,
	.read = redis_read,
	.write = redis_write,
	.flush = redis_flush_store,
	.ctl = redis_ctl,
};

const struct hm_store_ops hm__store_redis_cluster = {
	.abi = HM_STORE_ABI,
	.scheme = "redis-cluster",
	.summary = "remote memory on a Redis Cluster (slot map, MOVED/ASK, failover)",
	.open = cluster_open,
	.close = redis_close,
	.read = redis_read,
	.write = redis_write,
	.flush = redis_flush_store,
	.ctl = redis_ctl,
};
