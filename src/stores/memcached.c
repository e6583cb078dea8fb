/* SPDX-License-Identifier: MIT */
/*
 * memcached:// - remote memory on a memcached pool.
 *
 *   memcached://host:port[,host:port...][/namespace][?opts]
 *
 * libmemcached with consistent hashing (ketama) spreads the pages over the
 * servers; a server that stops answering is never ejected from the ring
 * (its pages would be looked for elsewhere): requests to it wait, with the
 * common layer's retries and back-off, until it is back or timeout= passes.
 * A pool of conns= libmemcached handles lets several threads talk at once;
 * a read of many pages is one mget per server. Writes are pipelined:
 * libmemcached's text protocol can only buffer stores without reading their
 * replies (an error would go unseen), so a batch of writes goes to each
 * server as one burst of "set" commands on a socket of our own (the server
 * chosen by libmemcached's ring) and every "STORED" is read back: one round
 * trip per server per batch, each page confirmed.
 *
 * memcached is a cache: a server started without -M evicts items when full,
 * which would silently drop pages, so such a server is refused at open
 * ("stats settings" reports "evictions on"), and asked again on every write
 * socket, so that one restarted without -M at the same address receives no
 * page: its writes fail with EINVAL. A restarted memcached has lost
 * its items: a page that was written but is missing is an error (SIGBUS at
 * the fault), never zeros - see remote_common.h. memcached has no
 * authentication that libmemcached's text protocol speaks, so credentials
 * in the URI are refused rather than ignored.
 */
#include <fcntl.h>
#include <libmemcached/memcached.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "stores/remote_common.h"

struct mc_be {
	struct rm_store *s;
	memcached_st **pool;
	bool *busy;
	uint32_t n;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t nservers;
	/* A group key per server: libmemcached's *_by_key calls route by it. */
	char group[RM_MAX_HOSTS][24];
	size_t glen[RM_MAX_HOSTS];
	/* Per pool slot and server: the socket that pipelines writes, or -1. */
	int (*fds)[RM_MAX_HOSTS];
	/* Per pool slot: the wait limit its handle and sockets have now, ms. */
	uint32_t *tmo;
};

/* The server holding copy op->copy of op's page: the ring's choice, then the next ones. */
static uint32_t target(const struct mc_be *b, memcached_st *m, const struct rm_op *op)
{
	return (memcached_generate_hash(m, op->key, op->klen) + op->copy) % b->nservers;
}

static memcached_st *mc_get(struct mc_be *b, uint32_t *slot)
{
	pthread_mutex_lock(&b->lock);
	for (;;) {
		for (uint32_t i = 0; i < b->n; i++) {
			if (!b->busy[i]) {
				b->busy[i] = true;
				*slot = i;
				pthread_mutex_unlock(&b->lock);
				return b->pool[i];
			}
		}
		pthread_cond_wait(&b->cond, &b->lock);
	}
}

static void mc_put(struct mc_be *b, uint32_t slot)
{
	pthread_mutex_lock(&b->lock);
	b->busy[slot] = false;
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

/* Whether rc means the server could not be reached (retry) rather than a refusal. */
static bool transient(memcached_return_t rc)
{
	switch (rc) {
	case MEMCACHED_CONNECTION_FAILURE:
	case MEMCACHED_CONNECTION_SOCKET_CREATE_FAILURE:
	case MEMCACHED_ERRNO:
	case MEMCACHED_TIMEOUT:
	case MEMCACHED_SERVER_MARKED_DEAD:
	case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
	case MEMCACHED_WRITE_FAILURE:
	case MEMCACHED_READ_FAILURE:
	case MEMCACHED_UNKNOWN_READ_FAILURE:
	case MEMCACHED_PARTIAL_READ:
	case MEMCACHED_SOME_ERRORS:
	case MEMCACHED_HOST_LOOKUP_FAILURE:
	case MEMCACHED_FAILURE:
		return true;
	default:
		return false;
	}
}

/*
 * libmemcached's last error, fit for a message: its text reads
 * "(0x55d0c0de1234) CONNECTION FAILURE,  host: h:p -> ./src/file.cc:40"; the
 * object's address and the library's source line mean nothing to a user,
 * and the host is the last one tried, not always the one the message
 * names: only the words are kept.
 */
static const char *last_error(memcached_st *m)
{
	static __thread char buf[256];
	const char *t = memcached_last_error_message(m);
	char *o = buf;

	if (!t)
		return "no details";
	if (t[0] == '(' && t[1] == '0' && t[2] == 'x') {
		const char *close = strstr(t, ") ");
		if (close)
			t = close + 2;
	}
	size_t n = strlen(t);
	const char *cut = strstr(t, " -> "), *host = strstr(t, "host: ");
	if (cut)
		n = (size_t)(cut - t);
	if (host && (size_t)(host - t) < n)
		n = (size_t)(host - t);
	while (n && (t[n - 1] == ' ' || t[n - 1] == ','))
		n--;
	for (size_t i = 0; i < n && o < buf + sizeof buf - 1; i++)
		if (t[i] != ' ' || o == buf || o[-1] != ' ')
			*o++ = t[i];
	*o = 0;
	return buf;
}

static void fail_op(struct mc_be *b, memcached_st *m, struct rm_op *op, memcached_return_t rc)
{
	const char *what = b->s->cfg.what;
	const memcached_instance_st *in = memcached_server_instance_by_position(m, target(b, m, op));
	const char *host = in ? memcached_server_name(in) : "?";
	int port = in ? (int)memcached_server_port(in) : 0;

	if (transient(rc)) {
		hm__error(-ECONNREFUSED, "%s: %s:%d: %s", what, host, port,
			  memcached_strerror(m, rc));
		return; /* stays RM_PENDING */
	}
	if (rc == MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE || rc == MEMCACHED_MEMORY_ALLOCATION_FAILURE ||
	    rc == MEMCACHED_SERVER_ERROR || rc == MEMCACHED_E2BIG)
		op->st = hm__error(-ENOSPC, "%s: %s:%d cannot store page %llu: %s (memory full?)",
				   what, host, port, (unsigned long long)op->idx,
				   last_error(m));
	else
		op->st = hm__error(-EIO, "%s: %s:%d: %s (%s)", what, host, port,
				   memcached_strerror(m, rc), last_error(m));
}

static void sock_timeout(int fd, uint32_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/*
 * Gives pool slot `slot` (handle m and its write sockets) the wait limit of
 * the attempt under way (rm_attempt_ms): a request then fails at timeout=,
 * not up to an io_timeout later.
 */
static void slot_timeout_ms(struct mc_be *b, memcached_st *m, uint32_t slot, uint32_t ms)
{
	if (b->tmo[slot] == ms)
		return;
	b->tmo[slot] = ms;
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
	for (uint32_t k = 0; k < b->nservers; k++)
		if (b->fds[slot][k] >= 0)
			sock_timeout(b->fds[slot][k], ms);
}

static void slot_timeout(struct mc_be *b, memcached_st *m, uint32_t slot)
{
	slot_timeout_ms(b, m, slot, rm_attempt_ms(b->s));
}

/*
 * Before each batch to a server: the waits are cut to what is left of the
 * attempt, but never below BATCH_MIN_MS (or io_timeout if shorter), so
 * that a server tried after a silent one, once the time is up, still gets
 * the moment a healthy server needs to answer.
 */
#define BATCH_MIN_MS 20u

static void batch_timeout(struct mc_be *b, memcached_st *m, uint32_t slot)
{
	uint32_t io = __atomic_load_n(&b->s->cfg.io_timeout_ms, __ATOMIC_RELAXED);
	uint32_t floor = io < BATCH_MIN_MS ? io : BATCH_MIN_MS, ms = rm_attempt_ms(b->s);

	slot_timeout_ms(b, m, slot, ms > floor ? ms : floor);
}

/* One mget for up to 256 pending GETs; settles each op. */
static void run_mget(struct mc_be *b, memcached_st *m, uint32_t slot, uint32_t srv,
		     struct rm_op *ops, const size_t *idx, const char *const *keys,
		     const size_t *lens, size_t k)
{
	memcached_result_st res;
	memcached_return_t rc;
	size_t cursor = 0;

	if (!memcached_result_create(m, &res))
		return;
	rc = memcached_mget_by_key(m, b->group[srv], b->glen[srv], keys, lens, k);
	if (rc != MEMCACHED_SUCCESS && !transient(rc)) {
		for (size_t j = 0; j < k; j++)
			fail_op(b, m, &ops[idx[j]], rc);
		memcached_result_free(&res);
		return;
	}
	while (memcached_fetch_result(m, &res, &rc)) {
		const char *rk = memcached_result_key_value(&res);
		size_t rl = memcached_result_key_length(&res);
		/* Replies mostly come in request order: search from the last match. */
		for (size_t t = 0; t < k; t++) {
			struct rm_op *op = &ops[idx[(cursor + t) % k]];
			if (op->klen == rl && !memcmp(op->key, rk, rl)) {
				size_t vl = memcached_result_length(&res);
				op->vlen = vl;
				memcpy(op->val, memcached_result_value(&res), vl < op->cap ? vl : op->cap);
				op->st = 0;
				op->node = 1;
				cursor = (cursor + t + 1) % k;
				break;
			}
		}
	}
	memcached_result_free(&res);
	rm_count(b->s, round_trips, 1);
	/*
	 * A key absent from the reply is either missing or on a server that
	 * did not answer; only a single get tells them apart (rare: a written
	 * page is normally there). Those gets wait no longer than what is left
	 * of the attempt, and once one finds the server silent the others stay
	 * pending: each would wait as long again.
	 */
	bool silent = false, first = true;
	for (size_t j = 0; j < k; j++) {
		struct rm_op *op = &ops[idx[j]];
		size_t vl;
		uint32_t fl;
		char *v;
		if (op->node)
			continue;
		if (silent) {
			fail_op(b, m, op, MEMCACHED_TIMEOUT);
			continue;
		}
		if (first)
			slot_timeout(b, m, slot);
		first = false;
		v = memcached_get_by_key(m, b->group[srv], b->glen[srv], op->key, op->klen, &vl, &fl,
					 &rc);
		rm_count(b->s, round_trips, 1);
		if (v) {
			op->vlen = vl;
			memcpy(op->val, v, vl < op->cap ? vl : op->cap);
			op->st = 0;
			free(v);
		} else if (rc == MEMCACHED_NOTFOUND) {
			op->st = RM_MISSING;
		} else {
			fail_op(b, m, op, rc);
			silent = transient(rc);
		}
	}
}

static void mget(struct mc_be *b, memcached_st *m, uint32_t slot, uint32_t srv,
		 struct rm_op *ops, const size_t *idx, const char *const *keys, const size_t *lens,
		 size_t k)
{
	batch_timeout(b, m, slot);
	run_mget(b, m, slot, srv, ops, idx, keys, lens, k);
}

/* The pending GETs, one mget per server (up to 256 keys each). */
static void exec_gets(struct mc_be *b, memcached_st *m, uint32_t slot, struct rm_op *ops,
		      size_t n)
{
	const char *keys[256];
	size_t lens[256], idx[256];

	for (uint32_t srv = 0; srv < b->nservers; srv++) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			if (ops[i].st != RM_PENDING || ops[i].kind != RM_GET ||
			    target(b, m, &ops[i]) != srv)
				continue;
			keys[k] = ops[i].key;
			lens[k] = ops[i].klen;
			idx[k] = i;
			ops[i].node = 0; /* set to 1 when the reply holds it */
			if (++k == 256) {
				mget(b, m, slot, srv, ops, idx, keys, lens, k);
				k = 0;
			}
		}
		if (k)
			mget(b, m, slot, srv, ops, idx, keys, lens, k);
	}
}

/*
 * Whether the server behind a new write socket evicts ("stats settings"
 * says "evictions on"): 1 if it does, 0 if not, -1 if it did not answer.
 * Every connection asks, not only the first at open: a server restarted at
 * the same address without -M must not receive pages either.
 */
static int raw_evicts(int fd)
{
	static const char cmd[] = "stats settings\r\n";
	char buf[16384];
	size_t have = 0;

	if (send(fd, cmd, sizeof cmd - 1, MSG_NOSIGNAL) != (ssize_t)sizeof cmd - 1)
		return -1;
	for (;;) {
		ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		have += (size_t)r;
		buf[have] = 0;
		if (have >= 5 && !strcmp(buf + have - 5, "END\r\n"))
			break;
		if (have == sizeof buf - 1)
			return -1;
	}
	return strstr(buf, "STAT evictions on\r\n") ? 1 : 0;
}

/*
 * Connects the write socket of pool slot `slot` to server srv: fd; -EINVAL
 * if the server evicts (refused for good); another -errno if it cannot be
 * reached now (a message is set either way).
 */
static int raw_connect(struct mc_be *b, memcached_st *m, uint32_t slot, uint32_t srv)
{
	const memcached_instance_st *in = memcached_server_instance_by_position(m, srv);
	const char *what = b->s->cfg.what;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char port[8];
	int fd = -1, one = 1, err = ECONNREFUSED;
	uint32_t ms = b->tmo[slot];

	if (b->fds[slot][srv] >= 0)
		return b->fds[slot][srv];
	snprintf(port, sizeof port, "%u", (unsigned)memcached_server_port(in));
	if (getaddrinfo(memcached_server_name(in), port, &hints, &ai) || !ai)
		return hm__error(-EHOSTUNREACH, "%s: cannot resolve %s", what,
				 memcached_server_name(in));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		err = errno;
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		socklen_t l = sizeof err;
		err = errno;
		if (err == EINPROGRESS && poll(&p, 1, (int)ms) == 1 &&
		    !getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) && !err)
			err = 0;
		else if (err == EINPROGRESS)
			err = err ? err : ETIMEDOUT;
	} else if (fd >= 0) {
		err = 0;
	}
	freeaddrinfo(ai);
	if (fd < 0 || err) {
		if (fd >= 0)
			close(fd);
		return hm__error(rm_local_errno(err) ? -err : -ECONNREFUSED,
				 "%s: cannot connect to %s:%s: %s", what,
				 memcached_server_name(in), port, strerror(err));
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	sock_timeout(fd, ms);
	switch (raw_evicts(fd)) {
	case 0:
		break;
	case 1:
		close(fd);
		return hm__error(-EINVAL, "%s: %s:%s evicts items when full and could drop pages "
					  "(restarted without -M?); remote memory needs memcached -M",
				 what, memcached_server_name(in), port);
	default:
		close(fd);
		return hm__error(-ECONNRESET, "%s: %s:%s: no answer to stats settings", what,
				 memcached_server_name(in), port);
	}
	b->fds[slot][srv] = fd;
	return fd;
}

static void raw_drop(struct mc_be *b, uint32_t slot, uint32_t srv)
{
	if (b->fds[slot][srv] >= 0)
		close(b->fds[slot][srv]);
	b->fds[slot][srv] = -1;
}

/* Sends every iovec (blocking, bounded by SO_SNDTIMEO); 0 or -1. */
static int send_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt) {
		int k = cnt > 1024 ? 1024 : cnt;
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)k };
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (cnt && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt && w) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/*
 * One pipelined burst of up to 128 stores or deletes (ops idx[0..k)) to
 * server srv, and their replies. Ops not answered stay RM_PENDING; false
 * then (the server did not answer).
 */
static bool raw_burst(struct mc_be *b, memcached_st *m, uint32_t slot, uint32_t srv,
		      struct rm_op *ops, const size_t *idx, size_t k)
{
	const memcached_instance_st *in = memcached_server_instance_by_position(m, srv);
	const char *what = b->s->cfg.what;
	static const char crlf[] = "\r\n";
	char hdr[128][RM_KEYMAX + 48], buf[4096];
	struct iovec iov[128 * 3];
	size_t got = 0, have = 0;
	int cnt = 0, fd = raw_connect(b, m, slot, srv);

	if (fd == -EINVAL) /* the server evicts: these commands fail, not wait */
		for (size_t j = 0; j < k; j++)
			ops[idx[j]].st = -EINVAL;
	if (fd < 0)
		return fd == -EINVAL;
	for (size_t j = 0; j < k; j++) {
		struct rm_op *op = &ops[idx[j]];
		int hl;
		if (op->kind == RM_SET)
			hl = snprintf(hdr[j], sizeof hdr[j], "set %.*s 0 0 %zu\r\n", (int)op->klen,
				      op->key, op->vlen);
		else
			hl = snprintf(hdr[j], sizeof hdr[j], "delete %.*s\r\n", (int)op->klen, op->key);
		iov[cnt++] = (struct iovec){ hdr[j], (size_t)hl };
		if (op->kind == RM_SET) {
			iov[cnt++] = (struct iovec){ op->val, op->vlen };
			iov[cnt++] = (struct iovec){ (void *)crlf, 2 };
		}
	}
	if (send_all(fd, iov, cnt))
		goto lost;
	/* One reply line per command, in order. */
	while (got < k) {
		char *nl = memchr(buf, '\n', have);
		if (!nl) {
			ssize_t r;
			if (have == sizeof buf)
				goto lost;
			r = recv(fd, buf + have, sizeof buf - have, 0);
			if (r <= 0) {
				if (r < 0 && errno == EINTR)
					continue;
				goto lost;
			}
			have += (size_t)r;
			continue;
		}
		size_t ll = (size_t)(nl - buf) + 1;
		struct rm_op *op = &ops[idx[got++]];
		if (!strncmp(buf, "STORED\r", 7) || !strncmp(buf, "DELETED\r", 8) ||
		    (op->kind == RM_DEL && !strncmp(buf, "NOT_FOUND\r", 10)))
			op->st = 0;
		else if (!strncmp(buf, "SERVER_ERROR out of memory", 26))
			op->st = hm__error(-ENOSPC, "%s: %s:%u is full (memcached -m): cannot store "
						    "page %llu",
					   what, memcached_server_name(in),
					   (unsigned)memcached_server_port(in),
					   (unsigned long long)op->idx);
		else
			op->st = hm__error(-EIO, "%s: %s:%u refused page %llu: %.*s", what,
					   memcached_server_name(in),
					   (unsigned)memcached_server_port(in),
					   (unsigned long long)op->idx, (int)(ll > 2 ? ll - 2 : 0), buf);
		memmove(buf, buf + ll, have - ll);
		have -= ll;
	}
	rm_count(b->s, round_trips, 1);
	return true;
lost:
	hm__error(-ECONNRESET, "%s: %s:%u: %s", what, memcached_server_name(in),
		  (unsigned)memcached_server_port(in), errno ? strerror(errno) : "connection lost");
	raw_drop(b, slot, srv);
	return false;
}

/*
 * A burst's waits (connect, "stats settings", send, replies) are cut to what
 * is left of the attempt (batch_timeout()), and once a server has not
 * answered, its other bursts stay pending for the next attempt: each would
 * wait as long again, and a write of many pages failed one timeout= per 128
 * of them.
 */
static bool burst(struct mc_be *b, memcached_st *m, uint32_t slot, uint32_t srv,
		  struct rm_op *ops, const size_t *idx, size_t k)
{
	batch_timeout(b, m, slot);
	return raw_burst(b, m, slot, srv, ops, idx, k);
}

static void exec_stores(struct mc_be *b, memcached_st *m, uint32_t slot, struct rm_op *ops,
			size_t n)
{
	size_t idx[128];

	for (uint32_t srv = 0; srv < b->nservers; srv++) {
		size_t k = 0;
		bool ok = true;
		for (size_t i = 0; i < n && ok; i++) {
			if (ops[i].st != RM_PENDING || ops[i].kind == RM_GET ||
			    target(b, m, &ops[i]) != srv)
				continue;
			idx[k++] = i;
			if (k == 128) {
				ok = burst(b, m, slot, srv, ops, idx, k);
				k = 0;
			}
		}
		if (k && ok)
			burst(b, m, slot, srv, ops, idx, k);
	}
}

static void mc_exec(void *be, struct rm_op *ops, size_t n)
{
	struct mc_be *b = be;
	uint32_t slot;
	memcached_st *m = mc_get(b, &slot);

	slot_timeout(b, m, slot);
	exec_gets(b, m, slot, ops, n);
	exec_stores(b, m, slot, ops, n);
	mc_put(b, slot);
}

static void mc_be_close(void *be)
{
	struct mc_be *b = be;

	for (uint32_t i = 0; i < b->n; i++) {
		if (b->pool[i])
			memcached_free(b->pool[i]);
		for (uint32_t k = 0; b->fds && k < RM_MAX_HOSTS; k++)
			if (b->fds[i][k] >= 0)
				close(b->fds[i][k]);
	}
	free(b->fds);
	free(b->tmo);
	free(b->pool);
	free(b->busy);
	free(b);
}

static const struct rm_backend_ops mc_bops = {
	.exec = mc_exec,
	.close = mc_be_close,
};

struct settings_ctx {
	struct rm_store *s;
	int answered[RM_MAX_HOSTS];
	char why[RM_MAX_HOSTS][128]; /* why a server did not answer */
	int err[RM_MAX_HOSTS];        /* and the errno, when it was local (EMFILE) */
	char bad[300];
	uint64_t item_max[RM_MAX_HOSTS];
};

static memcached_return_t settings_cb(const memcached_instance_st *in, const char *key,
				      size_t klen, const char *val, size_t vlen, void *arg)
{
	struct settings_ctx *c = arg;
	const char *host = memcached_server_name(in);
	int port = (int)memcached_server_port(in);
	int h;

	for (h = 0; h < c->s->cfg.nhosts; h++)
		if (c->s->cfg.hosts[h].port == port && !strcmp(c->s->cfg.hosts[h].name, host))
			break;
	if (h == c->s->cfg.nhosts)
		return MEMCACHED_SUCCESS;
	c->answered[h] = 1;
	if (klen == 9 && !memcmp(key, "evictions", 9) && vlen >= 2 && !memcmp(val, "on", 2) &&
	    !c->bad[0])
		snprintf(c->bad, sizeof c->bad, "%s:%d", host, port);
	if (klen == 13 && !memcmp(key, "item_size_max", 13))
		c->item_max[h] = strtoull(val, NULL, 10);
	return MEMCACHED_SUCCESS;
}

static int mc_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	const char *what = "memcached store";
	struct rm_store *s = calloc(1, sizeof *s);
	struct mc_be *b = calloc(1, sizeof *b);
	struct settings_ctx ctx;
	memcached_st *t = NULL;
	int rc;

	if (!s || !b) {
		rc = hm__error(-ENOMEM, "out of memory");
		goto fail;
	}
	rc = rm_parse_uri(&s->cfg, what, rest, 11211);
	if (rc)
		goto fail;
	if (s->cfg.have_password || s->cfg.user[0]) {
		rc = hm__error(-EINVAL, "%s: memcached takes no credentials (remove user:password@ "
					"or password_file=)",
			       what);
		goto fail;
	}
	t = memcached_create(NULL);
	if (!t) {
		rc = hm__error(-ENOMEM, "out of memory");
		goto fail;
	}
	for (int i = 0; i < s->cfg.nhosts; i++)
		if (memcached_server_add(t, s->cfg.hosts[i].name, (in_port_t)s->cfg.hosts[i].port) !=
		    MEMCACHED_SUCCESS) {
			rc = hm__error(-EINVAL, "%s: bad server %s:%d", what, s->cfg.hosts[i].name,
				       s->cfg.hosts[i].port);
			goto fail;
		}
	/* Consistent hashing; a dead server keeps its share of the ring. */
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_DISTRIBUTION,
			       MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, 0);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1000000);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, s->cfg.io_timeout_ms);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, s->cfg.io_timeout_ms);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, (uint64_t)s->cfg.io_timeout_ms * 1000);
	memcached_behavior_set(t, MEMCACHED_BEHAVIOR_SND_TIMEOUT, (uint64_t)s->cfg.io_timeout_ms * 1000);

	/*
	 * Refuse servers that could evict pages, or cannot hold one. Each
	 * server is asked on its own: over the whole list, one silent server
	 * ended the round, and the error named a server that was fine.
	 */
	memset(&ctx, 0, sizeof ctx);
	ctx.s = s;
	for (uint32_t i = 0; i < memcached_server_count(t); i++) {
		const memcached_instance_st *in = memcached_server_instance_by_position(t, i);
		memcached_st *one = memcached_create(NULL);
		if (!one) {
			rc = hm__error(-ENOMEM, "out of memory");
			goto fail;
		}
		memcached_behavior_set(one, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, s->cfg.io_timeout_ms);
		memcached_behavior_set(one, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, s->cfg.io_timeout_ms);
		memcached_behavior_set(one, MEMCACHED_BEHAVIOR_RCV_TIMEOUT,
				       (uint64_t)s->cfg.io_timeout_ms * 1000);
		memcached_behavior_set(one, MEMCACHED_BEHAVIOR_SND_TIMEOUT,
				       (uint64_t)s->cfg.io_timeout_ms * 1000);
		if (memcached_server_add(one, memcached_server_name(in), memcached_server_port(in)) ==
		    MEMCACHED_SUCCESS)
			memcached_stat_execute(one, "settings", settings_cb, &ctx);
		for (int h = 0; h < s->cfg.nhosts; h++)
			if (s->cfg.hosts[h].port == (int)memcached_server_port(in) &&
			    !strcmp(s->cfg.hosts[h].name, memcached_server_name(in)) &&
			    !ctx.answered[h]) {
				snprintf(ctx.why[h], sizeof ctx.why[h], "%s", last_error(one));
				if (rm_local_errno(memcached_last_error_errno(one)))
					ctx.err[h] = memcached_last_error_errno(one);
			}
		memcached_free(one);
	}
	for (int i = 0; i < s->cfg.nhosts; i++) {
		if (!ctx.answered[i]) {
			/* A name that does not resolve is not a refused connection. */
			struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
			int err = getaddrinfo(s->cfg.hosts[i].name, NULL, &hints, &ai) ? EHOSTUNREACH
										 : ECONNREFUSED;
			if (ai)
				freeaddrinfo(ai);
			if (ctx.err[i])
				err = ctx.err[i];
			rc = hm__error(-err, "%s: cannot reach %s:%d (%s)", what,
				       s->cfg.hosts[i].name, s->cfg.hosts[i].port,
				       ctx.why[i][0] ? ctx.why[i] : "no answer");
			goto fail;
		}
	}
	if (ctx.bad[0]) {
		rc = hm__error(-EINVAL, "%s: %s evicts items when full and could lose pages; "
					"start memcached with -M",
			       what, ctx.bad);
		goto fail;
	}
	if (s->cfg.replicas >= s->cfg.nhosts) {
		rc = hm__error(-EINVAL, "%s: replicas=%d needs at least %d servers", what,
			       s->cfg.replicas, s->cfg.replicas + 1);
		goto fail;
	}
	s->cfg.copies = s->cfg.replicas > 0 ? (uint32_t)s->cfg.replicas + 1 : 1;
	b->nservers = memcached_server_count(t);
	{
		/* A group key that the ring sends to each server, found by trying names. */
		uint32_t found = 0;
		for (uint32_t k = 0; k < 1000000 && found < b->nservers; k++) {
			char g[24];
			int gl = snprintf(g, sizeof g, "hmgrp%u", k);
			uint32_t h = memcached_generate_hash(t, g, (size_t)gl);
			if (h < b->nservers && !b->glen[h]) {
				memcpy(b->group[h], g, (size_t)gl + 1);
				b->glen[h] = (size_t)gl;
				found++;
			}
		}
		if (found < b->nservers) {
			rc = hm__error(-EPROTO, "%s: cannot route keys to every server", what);
			goto fail;
		}
	}
	b->s = s;
	b->n = s->cfg.conns;
	b->pool = calloc(b->n, sizeof *b->pool);
	b->busy = calloc(b->n, sizeof *b->busy);
	b->fds = malloc(b->n * sizeof *b->fds);
	b->tmo = malloc(b->n * sizeof *b->tmo);
	for (uint32_t i = 0; b->fds && b->tmo && i < b->n; i++) {
		for (uint32_t k = 0; k < RM_MAX_HOSTS; k++)
			b->fds[i][k] = -1;
		b->tmo[i] = s->cfg.io_timeout_ms; /* as the clones of t have */
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	if (!b->pool || !b->busy || !b->fds || !b->tmo) {
		rc = hm__error(-ENOMEM, "out of memory");
		goto fail;
	}
	for (uint32_t i = 0; i < b->n; i++) {
		b->pool[i] = memcached_clone(NULL, t);
		if (!b->pool[i]) {
			rc = hm__error(-ENOMEM, "out of memory");
			goto fail;
		}
	}
	memcached_free(t);
	t = NULL;
	rc = rm_store_init(s, &mc_bops, b);
	if (rc) {
		rm_store_close(s);
		rm_store_free(s);
		return rc;
	}
	for (int i = 0; i < s->cfg.nhosts; i++) {
		if (ctx.item_max[i] && ctx.item_max[i] < s->frame) {
			rc = hm__error(-EINVAL, "%s: %s:%d stores items up to %llu bytes; a page "
						"takes %zu (lower page= or raise memcached -I)",
				       what, s->cfg.hosts[i].name, s->cfg.hosts[i].port,
				       (unsigned long long)ctx.item_max[i], s->frame);
			rm_store_close(s);
			rm_store_free(s);
			return rc;
		}
	}
	memset(info, 0, sizeof *info);
	info->size = s->cfg.size;
	info->align = 1;
	/* Read-only: the core then refuses PROT_WRITE mappings. */
	if (flags & HM_STORE_RDONLY)
		info->props |= HM_PROP_READONLY;
	*priv = s;
	return 0;
fail:
	if (t)
		memcached_free(t);
	if (b && b->pool)
		mc_be_close(b);
	else if (b) {
		free(b->busy);
		free(b);
	}
	if (s) {
		memset(&s->cfg, 0, sizeof s->cfg);
		free(s);
	}
	return rc;
}

static void mc_close(void *priv)
{
	rm_store_close(priv);
	rm_store_free(priv);
}

static int mc_read(void *priv, void *buf, size_t len, uint64_t off)
{
	return rm_read(priv, buf, len, off);
}

static int mc_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	return rm_write(priv, buf, len, off);
}

static int mc_ctl(void *priv, const char *key, const char *value)
{
	return rm_ctl(priv, key, value);
}

/* hmsync: memcached writes nothing lazily; the dead versions of pages go. */
static int mc_flush(void *priv)
{
	return rm_flush(priv);
}

const struct hm_store_ops hm__store_memcached = {
	.abi = HM_STORE_ABI,
	.scheme = "memcached",
	.summary = "remote memory on a memcached pool (consistent hashing, servers with -M only)",
	.open = mc_open,
	.close = mc_close,
	.read = mc_read,
	.write = mc_write,
	.ctl = mc_ctl,
	.flush = mc_flush,
};
