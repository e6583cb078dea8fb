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
 * - Every connection checks its server: a maxmemory-policy other than
 *   noeviction is refused (it could drop pages), also after a reconnect to
 *   a server restarted with another policy.
 */
#include <hiredis/hiredis.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "stores/remote_common.h"

#define RN_MAX 64
#define SLOTS 16384

/*
 * A batch's replies are read by rb_*() below, not by hiredis: hiredis's
 * reader copies every value three times (from a 16 KiB read into its buffer,
 * within the buffer as it discards what it parsed, into a reply object it
 * allocates) and a 4 KiB page is most of what crosses the socket. The
 * stream is read here in large chunks and a GET's value is copied once, into
 * the op's frame. Only whole batches are read this way and a batch reads all
 * of its replies, so between batches the buffer is empty and the hiredis
 * calls on the same connection (AUTH, INFO, WAIT) see the stream where they
 * expect it.
 */
#define RB_SIZE (128u << 10)
#define RB_DIRECT (32u << 10) /* the rest of a value this large goes straight to its frame */
#define RB_LINE_MAX 4096      /* longest header or error line accepted */
/* Commands a pipeline runs ahead of its replies (redis_exec(); -D to measure others). */
#ifndef RB_PIPE_MAX
#define RB_PIPE_MAX 128
#endif

struct rbuf {
	char *p;
	size_t pos, len;
};

struct rconn {
	redisContext *c;
	struct rbuf rb;
	bool busy;
	bool wrote; /* writes not yet confirmed by WAIT */
	uint32_t tmo_ms; /* the socket's timeout now */
	char err[128]; /* why the last batch on it failed */
};

struct rnode {
	char host[256];
	int port;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rconn *conns;
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
	bool seed_list; /* redis:// with several servers: taken for a cluster's seeds */
	/* Why the last connection failed: EHOSTUNREACH (the name did not resolve) or ECONNREFUSED. */
	_Atomic int conn_err;
	_Atomic bool cluster_node; /* redis:// found a cluster node */
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

/* Why a hiredis call on c failed, in words (a receive timeout is EAGAIN to it). */
static const char *why(const redisContext *c)
{
	if (c->err == REDIS_ERR_IO && !strcmp(c->errstr, strerror(EAGAIN)))
		return "no reply within io_timeout";
	return c->errstr[0] ? c->errstr : "connection lost";
}

/*
 * Verifies a server on each new connection to it: that it cannot evict
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
		return hm__error(-ECONNRESET, "%s: %s:%d: %s", what, n->host, n->port, why(c));
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
					 why(c));
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
		return hm__error(-ECONNRESET, "%s: %s:%d: %s", what, n->host, n->port, why(c));
	if (r->type == REDIS_REPLY_STRING) {
		bool on = strstr(r->str, "cluster_enabled:1") != NULL;
		if (on && !b->cluster) {
			/* At open, redis:// is then taken for the cluster's one seed (open_any()). */
			b->cluster_node = true;
			rc = hm__error(-EINVAL, "%s: %s:%d is a Redis Cluster node; use "
						"redis-cluster://",
				       what, n->host, n->port);
		} else if (!on && b->seed_list) {
			rc = hm__error(-EINVAL, "%s: %s:%d is not in cluster mode: a redis:// URI "
						"with several servers lists a Redis Cluster's seed "
						"nodes; a standalone server takes one",
				       what, n->host, n->port);
		} else if (!on && b->cluster) {
			rc = hm__error(-EINVAL, "%s: %s:%d is not in cluster mode; use redis://",
				       what, n->host, n->port);
		}
	}
out:
	freeReplyObject(r);
	return rc;
}

/* RM_PENDING, noting why for an open that ends on it (conn_err). */
static int pending(struct redis_be *b, int err)
{
	atomic_store(&b->conn_err, err);
	return RM_PENDING;
}

/* Opens a connection: 0, RM_PENDING (cannot reach it now) or a final -errno. */
/*
 * Frees a connection that failed: a write to it may have raised SIGPIPE,
 * blocked while the store works (hm__nosigpipe_begin()); take it here.
 */
static void conn_free(redisContext *c)
{
	hm__sigpipe_take();
	redisFree(c);
}

static int conn_open(struct redis_be *b, struct rnode *n, struct rconn *cn)
{
	struct rm_config *cfg = &b->s->cfg;
	uint32_t ms = rm_attempt_ms(b->s);
	struct timeval tv = ms_tv(ms);
	redisContext *c;
	redisReply *r;
	int rc, saved;

	/* Cleared first: a name that does not resolve leaves errno as it was. */
	errno = 0;
	c = redisConnectWithTimeout(n->host, n->port, tv);
	saved = errno;

	if (!c || c->err) {
		/*
		 * hiredis says REDIS_ERR_OTHER for a name getaddrinfo() cannot
		 * resolve, and for a socket() that failed (EMFILE): errno tells.
		 */
		int err = c && c->err == REDIS_ERR_OTHER ? EHOSTUNREACH : ECONNREFUSED;
		if (!c)
			err = ENOMEM;
		else if (c->err != REDIS_ERR_EOF && rm_local_errno(saved))
			err = saved;
		hm__error(-err, "%s: cannot connect to %s:%d: %s", cfg->what, n->host, n->port,
			  c ? c->errstr : "out of memory");
		if (c)
			conn_free(c);
		return pending(b, err);
	}
	redisSetTimeout(c, tv);
	if (cfg->have_password) {
		if (cfg->user[0])
			r = redisCommand(c, "AUTH %s %s", cfg->user, cfg->password);
		else
			r = redisCommand(c, "AUTH %s", cfg->password);
		if (!r) {
			hm__error(-ECONNRESET, "%s: %s:%d: %s", cfg->what, n->host, n->port, why(c));
			conn_free(c);
			return pending(b, ECONNREFUSED);
		}
		if (r->type == REDIS_REPLY_ERROR && cfg->password_default && !cfg->user[0] &&
		    strstr(r->str, "without any password configured")) {
			/*
			 * HMMAP_REDIS_PASSWORD is a default for servers that want one;
			 * a server with none takes the connection as it is.
			 */
			freeReplyObject(r);
			r = NULL;
		} else if (r->type == REDIS_REPLY_ERROR) {
			/* The server's text names no secret ("WRONGPASS invalid username-password pair"). */
			rc = hm__error(-EACCES, "%s: authentication to %s:%d failed: %s", cfg->what,
				       n->host, n->port, r->str);
			freeReplyObject(r);
			conn_free(c);
			return rc;
		}
		if (r)
			freeReplyObject(r);
	}
	/*
	 * Every connection, not only the first: a server restarted at the same
	 * address with another maxmemory-policy must not receive pages.
	 */
	rc = check_server(b, n, c);
	if (rc == -ECONNRESET || rc == -EPROTO) {
		conn_free(c);
		return pending(b, ECONNREFUSED);
	}
	if (rc) {
		conn_free(c);
		return rc;
	}
	if (!cn->rb.p && !(cn->rb.p = malloc(RB_SIZE))) {
		conn_free(c);
		return hm__error(-ENOMEM, "%s: out of memory", cfg->what);
	}
	cn->rb.pos = cn->rb.len = 0;
	if (atomic_exchange(&n->ever, true))
		rm_count(b->s, reconnects, 1);
	cn->c = c;
	cn->tmo_ms = ms;
	return 0;
}

/* Gives cn's socket the timeout of the attempt under way (rm_attempt_ms). */
static void conn_timeout(struct redis_be *b, struct rconn *cn)
{
	uint32_t ms = rm_attempt_ms(b->s);

	if (cn->tmo_ms != ms && redisSetTimeout(cn->c, ms_tv(ms)) == REDIS_OK)
		cn->tmo_ms = ms;
}

/*
 * Takes a connection to n (opening one if allowed), its timeout that of the
 * attempt under way: 0, RM_PENDING or -errno.
 */
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
				conn_timeout(b, cn);
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
		conn_free(cn->c);
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

/* ------------------------------------------------------------- replies */

/* One reply of a batch; a bulk value has gone to its op's frame, if any. */
struct rreply {
	int type;      /* REDIS_REPLY_STATUS, _ERROR, _INTEGER, _NIL or _STRING */
	size_t len;    /* _STRING: bytes of the value */
	char str[256]; /* _STATUS, _ERROR: the line, NUL-terminated (cut short if longer) */
};

/* Receives up to cap bytes into buf: how many, or 0 with cn->err set. */
static size_t rb_recv(struct rconn *cn, void *buf, size_t cap)
{
	for (;;) {
		ssize_t k = recv(cn->c->fd, buf, cap, 0);
		if (k > 0)
			return (size_t)k;
		if (k < 0 && errno == EINTR)
			continue;
		if (!k)
			snprintf(cn->err, sizeof cn->err, "connection closed by the server");
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			snprintf(cn->err, sizeof cn->err, "no reply within io_timeout");
		else
			snprintf(cn->err, sizeof cn->err, "%s", strerror(errno));
		return 0;
	}
}

/* Reads more of the stream into the buffer; false with cn->err set on error. */
static bool rb_fill(struct rconn *cn)
{
	struct rbuf *rb = &cn->rb;
	size_t k;

	if (rb->pos == rb->len) {
		rb->pos = rb->len = 0;
	} else if (rb->len == RB_SIZE) {
		/* Only a line can be incomplete here, and lines are short. */
		memmove(rb->p, rb->p + rb->pos, rb->len - rb->pos);
		rb->len -= rb->pos;
		rb->pos = 0;
	}
	k = rb_recv(cn, rb->p + rb->len, RB_SIZE - rb->len);
	rb->len += k;
	return k > 0;
}

/* The next line, without its CRLF (valid until the next read); NULL on error. */
static const char *rb_line(struct rconn *cn, size_t *n)
{
	struct rbuf *rb = &cn->rb;

	for (;;) {
		const char *s = rb->p + rb->pos;
		const char *e = memchr(s, '\n', rb->len - rb->pos);
		if (e) {
			if (e == s || e[-1] != '\r')
				break;
			*n = (size_t)(e - 1 - s);
			rb->pos = (size_t)(e + 1 - rb->p);
			return s;
		}
		if (rb->len - rb->pos > RB_LINE_MAX)
			break;
		if (!rb_fill(cn))
			return NULL;
	}
	snprintf(cn->err, sizeof cn->err, "protocol error: a reply line without CRLF");
	return NULL;
}

/* Takes n bytes of the stream into dst (NULL: drops them); false on error. */
static bool rb_take(struct rconn *cn, unsigned char *dst, size_t n)
{
	struct rbuf *rb = &cn->rb;

	while (n) {
		size_t have = rb->len - rb->pos;
		if (!have && dst && n >= RB_DIRECT) {
			size_t k = rb_recv(cn, dst, n);
			if (!k)
				return false;
			dst += k;
			n -= k;
			continue;
		}
		if (!have) {
			if (!rb_fill(cn))
				return false;
			continue;
		}
		if (have > n)
			have = n;
		if (dst) {
			memcpy(dst, rb->p + rb->pos, have);
			dst += have;
		}
		rb->pos += have;
		n -= have;
	}
	return true;
}

/* Parses a decimal length of a reply line; -2 if it is not one. */
static long long rb_num(const char *s, size_t n)
{
	long long v = 0;
	size_t i = 0;

	if (n == 2 && s[0] == '-' && s[1] == '1')
		return -1;
	if (!n || n > 18)
		return -2;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -2;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/*
 * Reads one reply. A bulk value goes to op's frame when op is a GET with
 * room for it, and is dropped otherwise (r->len still says its size, which
 * decode() rejects). False, with cn->err set, when the stream is broken.
 */
static bool rb_reply(struct rconn *cn, struct rm_op *op, struct rreply *r)
{
	size_t n, k;
	const char *s = rb_line(cn, &n);
	long long v;

	if (!s)
		return false;
	r->len = 0;
	r->str[0] = 0;
	switch (n ? s[0] : 0) {
	case '+':
	case '-':
		r->type = s[0] == '+' ? REDIS_REPLY_STATUS : REDIS_REPLY_ERROR;
		k = n - 1 < sizeof r->str - 1 ? n - 1 : sizeof r->str - 1;
		memcpy(r->str, s + 1, k);
		r->str[k] = 0;
		return true;
	case ':':
		r->type = REDIS_REPLY_INTEGER;
		return true;
	case '$':
		v = rb_num(s + 1, n - 1);
		if (v == -1) {
			r->type = REDIS_REPLY_NIL;
			return true;
		}
		if (v < 0)
			break;
		r->type = REDIS_REPLY_STRING;
		r->len = (size_t)v;
		if (!rb_take(cn, op && op->kind == RM_GET && r->len <= op->cap ? op->val : NULL,
			     r->len))
			return false;
		s = rb_line(cn, &n);
		if (!s)
			return false;
		if (!n)
			return true;
		break;
	default:
		break;
	}
	snprintf(cn->err, sizeof cn->err, "protocol error: unexpected reply");
	return false;
}

/*
 * Applies one reply to op; sets *redirect when the op must go elsewhere now.
 * A GET's value is already in op->val. False when the reply is of a type
 * the command never answers with: the stream is out of step (a reply too
 * many) and the connection must go; op stays pending.
 */
static bool apply_reply(struct redis_be *b, struct rnode *n, struct rconn *cn, struct rm_op *op,
			const struct rreply *r, bool *redirect)
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
				return true;
			}
			id = parse_redirect(b, e, &slot);
			if (id < 0) {
				op->st = hm__error(-EPROTO, "%s: bad redirection from %s:%d: %s",
						   what, n->host, n->port, e);
				return true;
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
			return true;
		}
		if (!strncmp(e, "LOADING", 7) || !strncmp(e, "TRYAGAIN", 8) ||
		    !strncmp(e, "CLUSTERDOWN", 11) || !strncmp(e, "MASTERDOWN", 10) ||
		    !strncmp(e, "READONLY", 8) || !strncmp(e, "BUSY", 4)) {
			/* Transient: the server is starting, or the cluster is failing over. */
			hm__error(-EAGAIN, "%s: %s:%d: %s", what, n->host, n->port, e);
			if (b->cluster)
				atomic_store(&b->need_refresh, true);
			return true;
		}
		if (!strncmp(e, "OOM", 3)) {
			op->st = hm__error(-ENOSPC, "%s: %s:%d is out of memory (maxmemory): %s",
					   what, n->host, n->port, e);
			return true;
		}
		if (!strncmp(e, "NOAUTH", 6) || !strncmp(e, "WRONGPASS", 9) ||
		    !strncmp(e, "NOPERM", 6)) {
			op->st = hm__error(-EACCES, "%s: %s:%d refused: %s", what, n->host, n->port,
					   e);
			return true;
		}
		op->st = hm__error(-EIO, "%s: %s:%d: %s", what, n->host, n->port, e);
		return true;
	}
	if (op->kind == RM_GET && r->type == REDIS_REPLY_NIL) {
		op->st = RM_MISSING;
	} else if (op->kind == RM_GET && r->type == REDIS_REPLY_STRING) {
		op->vlen = r->len;
		op->st = 0;
	} else if ((op->kind == RM_SET && r->type == REDIS_REPLY_STATUS) ||
		   (op->kind == RM_DEL && r->type == REDIS_REPLY_INTEGER)) {
		op->st = 0;
	} else {
		snprintf(cn->err, sizeof cn->err, "protocol error: a reply of the wrong type to %s",
			 op->kind == RM_GET ? "GET" : op->kind == RM_SET ? "SET" : "DEL");
		return false;
	}
	return true;
}

/* Writes v in decimal at p; returns the end. */
static char *put_num(char *p, size_t v)
{
	char t[24];
	int k = 0;

	do
		t[k++] = (char)('0' + v % 10);
	while (v /= 10);
	while (k)
		*p++ = t[--k];
	return p;
}

/* Appends "$len\r\n" + s + "\r\n" (s may be NULL: the header only). */
static char *put_bulk(char *p, const char *s, size_t len)
{
	*p++ = '$';
	p = put_num(p, len);
	*p++ = '\r';
	*p++ = '\n';
	if (s) {
		memcpy(p, s, len);
		p += len;
		*p++ = '\r';
		*p++ = '\n';
	}
	return p;
}

/*
 * Queues op's command on c, formatted here (hiredis formats through
 * sdscatfmt, a printf per argument); false if c is out of memory.
 */
static bool append_op(redisContext *c, struct rm_op *op)
{
	static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
	char cmd[64 + RM_KEYMAX], *p = cmd;

	if (op->ask >= 0 && redisAppendFormattedCommand(c, asking, sizeof asking - 1) != REDIS_OK)
		return false;
	memcpy(p, op->kind == RM_SET ? "*3\r\n" : "*2\r\n", 4);
	p = put_bulk(p + 4, op->kind == RM_GET ? "GET" : op->kind == RM_SET ? "SET" : "DEL", 3);
	p = put_bulk(p, op->key, op->klen);
	if (op->kind != RM_SET)
		return redisAppendFormattedCommand(c, cmd, (size_t)(p - cmd)) == REDIS_OK;
	p = put_bulk(p, NULL, op->vlen);
	return redisAppendFormattedCommand(c, cmd, (size_t)(p - cmd)) == REDIS_OK &&
	       redisAppendFormattedCommand(c, (const char *)op->val, op->vlen) == REDIS_OK &&
	       redisAppendFormattedCommand(c, "\r\n", 2) == REDIS_OK;
}

/*
 * Whether hiredis's reader holds no bytes it has not parsed. It reads only
 * for the commands sent through it (AUTH, INFO, WAIT), one reply each, so
 * bytes left there came before this batch's replies and answer nothing it
 * sent: the stream is out of step.
 */
static bool hiredis_drained(struct rconn *cn)
{
	redisReader *rd = cn->c->reader;

	if (rd->len <= rd->pos)
		return true;
	snprintf(cn->err, sizeof cn->err, "protocol error: a reply nothing asked for");
	return false;
}

/*
 * A server's share of a batch: its connection, and how far its pipeline has
 * been sent (ops before `next` are sent; `inflight` of them await replies).
 */
struct rgroup {
	int node;
	struct rconn *cn;
	bool ok;
	size_t next, inflight;
};

/*
 * Tops g's pipeline up to RB_PIPE_MAX commands awaiting replies (from op
 * g->next on) and sends them; g->ok false if the connection failed.
 */
static void send_more(struct rgroup *g, struct rm_op *ops, size_t n)
{
	redisContext *c = g->cn->c;
	size_t before = g->inflight;
	int done = 0;

	for (; g->next < n && g->inflight < RB_PIPE_MAX && g->ok; g->next++) {
		struct rm_op *op = &ops[g->next];
		if (op->st != RM_PENDING || op->node != g->node)
			continue;
		g->ok = append_op(c, op);
		if (op->kind != RM_GET)
			g->cn->wrote = true;
		g->inflight++;
	}
	if (g->inflight == before)
		return;
	while (!done && g->ok)
		if (redisBufferWrite(c, &done) == REDIS_ERR)
			g->ok = false;
}

static void redis_exec(void *be, struct rm_op *ops, size_t n)
{
	struct redis_be *b = be;
	struct rgroup grp[RN_MAX];

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
				grp[ng] = (struct rgroup){ .node = op->node };
				ng++;
			}
		}
		/* Send each server its pipeline; all of them are in flight at once. */
		uint64_t sent = 0;
		for (int g = 0; g < ng; g++) {
			struct rnode *nd = b->nodes[grp[g].node];
			int rc = conn_get(b, nd, &grp[g].cn);
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
			grp[g].ok = true;
			grp[g].cn->err[0] = 0;
			send_more(&grp[g], ops, n);
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
			if (grp[g].ok)
				grp[g].ok = hiredis_drained(cn);
			if (g == 0 && n <= RM_SPIN_OPS && grp[g].ok && cn->rb.pos >= cn->rb.len)
				rm_spin_wait(b->s, cn->c->fd, sent);
			for (size_t i = 0; i < n && grp[g].ok; i++) {
				struct rm_op *op = &ops[i];
				struct rreply r;
				if (op->st != RM_PENDING || op->node != grp[g].node)
					continue;
				if (grp[g].inflight <= RB_PIPE_MAX / 2 && grp[g].next < n) {
					send_more(&grp[g], ops, n);
					if (!grp[g].ok)
						break;
				}
				grp[g].inflight--;
				if (op->ask >= 0) {
					if (!rb_reply(cn, NULL, &r)) {
						grp[g].ok = false;
						break;
					}
					op->ask = -1;
				}
				if (!rb_reply(cn, op, &r)) {
					grp[g].ok = false;
					break;
				}
				if (!apply_reply(b, nd, cn, op, &r, &redirect)) {
					grp[g].ok = false;
					break;
				}
			}
			if (grp[g].ok && cn->rb.pos != cn->rb.len) {
				snprintf(cn->err, sizeof cn->err, "protocol error: a reply nothing asked for");
				grp[g].ok = false;
			}
			if (!grp[g].ok) {
				const char *cause = cn->err[0] ? cn->err : why(cn->c);
				hm__error(-ECONNRESET, "%s: %s:%d: %s", b->s->cfg.what, nd->host,
					  nd->port, cause);
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
					/*
					 * Dead since it wrote (the server restarted,
					 * say): a connection lost before its WAIT,
					 * as below, which a master without replicas
					 * does not fail.
					 */
					conn_put(nd, cn, false);
					lost = true;
					continue;
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
				/*
				 * WAIT itself may take up to ms: its reply's timeout is
				 * that plus one io_timeout, not io_timeout alone (a
				 * replica a second behind failed the sync, and the
				 * dropped connection failed the next one too).
				 */
				redisSetTimeout(cn->c, ms_tv((uint32_t)(ms ? ms : 1) +
							     b->s->cfg.io_timeout_ms));
				redisReply *r = redisCommand(cn->c, "WAIT %lld %lld", want, ms ? ms : 1);
				redisSetTimeout(cn->c, ms_tv(b->s->cfg.io_timeout_ms));
				cn->tmo_ms = b->s->cfg.io_timeout_ms;
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
		for (uint32_t k = 0; k < b->s->cfg.conns; k++) {
			if (nd->conns[k].c)
				redisFree(nd->conns[k].c);
			free(nd->conns[k].rb.p);
		}
		pthread_mutex_destroy(&nd->lock);
		pthread_cond_destroy(&nd->cond);
		free(nd->conns);
		free(nd);
	}
	pthread_rwlock_destroy(&b->map_lock);
	free(b);
}

static const struct rm_backend_ops redis_bops = {
	.exec = redis_exec,
	.flush = redis_flush,
	.close = redis_be_close,
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
		b->seed_list = true;
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
			s->cfg.password_default = true;
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
			int e = atomic_load(&b->conn_err);
			if (rc == -EAGAIN)
				rc = hm__error_wrap(e ? -e : -ECONNREFUSED,
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
					rc = -atomic_load(&b->conn_err);
				goto fail_be;
			}
			conn_put(b->nodes[i], cn, true);
		}
	} else {
		struct rconn *cn;
		rc = conn_get(b, b->nodes[0], &cn);
		if (rc && b->cluster_node) {
			/* One cluster node named by redis://: the seed of a cluster, as with several. */
			redis_be_close(b);
			sodium_memzero(&s->cfg, sizeof s->cfg);
			free(s);
			return open_any(priv, rest, flags, info, true);
		}
		if (rc) {
			if (rc == RM_PENDING) /* the message names the server and the cause */
				rc = -atomic_load(&b->conn_err);
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

/*
 * The store's entry points: each runs with SIGPIPE blocked (signals.c), so
 * a server that drops a connection mid-write is an error to retry, not the
 * end of the process.
 */
#define NOSIGPIPE(call)                     \
	({                                  \
		struct hm_nosigpipe g_;     \
		hm__nosigpipe_begin(&g_);   \
		__typeof__(call) rc_ = call; \
		hm__nosigpipe_end(&g_);     \
		rc_;                        \
	})

static int redis_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return NOSIGPIPE(open_any(priv, rest, flags, info, false));
}

static int cluster_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return NOSIGPIPE(open_any(priv, rest, flags, info, true));
}

static void redis_close(void *priv)
{
	struct hm_nosigpipe g;

	hm__nosigpipe_begin(&g);
	rm_store_close(priv);
	rm_store_free(priv);
	hm__nosigpipe_end(&g);
}

static int redis_read(void *priv, void *buf, size_t len, uint64_t off)
{
	return NOSIGPIPE(rm_read(priv, buf, len, off));
}

static int redis_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	return NOSIGPIPE(rm_write(priv, buf, len, off));
}

static int redis_flush_store(void *priv)
{
	return NOSIGPIPE(rm_flush(priv));
}

static int redis_ctl(void *priv, const char *key, const char *value)
{
	return NOSIGPIPE(rm_ctl(priv, key, value));
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
