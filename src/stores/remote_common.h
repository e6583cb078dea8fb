/* SPDX-License-Identifier: MIT */
/*
 * What the remote stores (redis://, redis-cluster://, memcached://) share:
 * URI and option parsing, credentials, the per-page version table, the
 * framing and optional encryption of a page on the server, the retry loop,
 * and the store-side strided prefetch (a Leap-style majority-trend detector).
 *
 * A remote store keeps its pages as keys "hm:NS:OBJ:IDX:VER" where NS is
 * the namespace of the URI, OBJ a 64-bit random number drawn when the store
 * is opened (so two processes, or two runs of one, never share a key by
 * accident), IDX the page ("block") index and VER its version, in hex.
 * Every write of a page goes to a new key: a write that a frozen server
 * applies late (after the client gave up on it and wrote a newer version)
 * lands on its own, dead key and can never replace the newer page. The key
 * of the superseded version is deleted later: after a batch of writes, once
 * 64 are queued, in a pipeline of their own (gc_after_write), and on
 * hm_sync. Each value is a frame:
 *
 *   plain       magic 'HMP1' | version u32 | index u64 | data[block]
 *   encrypted   magic 'HMPE' | version u32 | index u64 | nonce[24] |
 *               XChaCha20-Poly1305(data[block]) | tag[16]
 *
 * The store remembers, per block, the version it last wrote successfully
 * (0: never written). A never-written block is zero-filled without asking
 * the server; a frame whose version or index is not the one expected is
 * rejected, so a stale copy (a restarted cache, a failover that lost an
 * unreplicated write) is an error (SIGBUS at the fault), never old data.
 * With encryption the header and the key's namespace and object are the
 * AEAD's associated data: a modified frame, a frame moved to another key, or
 * a replayed older version fails authentication.
 *
 * A backend (Redis, Redis Cluster, memcached) only executes batches of
 * GET/SET/DEL operations; this layer owns every policy above that.
 */
#ifndef HM_STORES_REMOTE_COMMON_H
#define HM_STORES_REMOTE_COMMON_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/internal.h"

#define RM_MAX_HOSTS 16
#define RM_KEYMAX 128
#define RM_HDR 16
#define RM_NONCE 24
#define RM_MAC 16
#define RM_MAGIC_PLAIN 0x31504d48u /* "HMP1" little-endian */
#define RM_MAGIC_CRYPT 0x45504d48u /* "HMPE" */

struct rm_host {
	char name[256];
	int port;
};

/* What a URI and its options say. */
struct rm_config {
	const char *what; /* "redis store", for messages */
	struct rm_host hosts[RM_MAX_HOSTS];
	int nhosts;
	char ns[64];
	char user[128];
	char password[256]; /* never printed */
	bool have_password;
	bool password_default; /* from the environment, not the URI or a file */
	uint64_t size;
	uint32_t block;
	uint32_t timeout_ms;    /* a request gives up after this long */
	uint32_t io_timeout_ms; /* one attempt (connect, send, receive) */
	uint32_t conns;         /* connections per server */
	uint32_t prefetch;      /* blocks in the strided-prefetch buffer; 0: off */
	uint32_t spin_us;       /* busy-wait this long for a reply before sleeping; 0: never */
	int replicas;           /* redis WAIT: -1 auto (every connected replica) */
	uint32_t copies;        /* memcached: servers holding each page (1 + replicas) */
	bool encrypt;
	unsigned char key[32]; /* never printed */
};

enum rm_kind { RM_GET = 1, RM_SET, RM_DEL };

/* Operation status: 0 done, RM_PENDING not yet, RM_MISSING (GET: no such key), or -errno. */
#define RM_PENDING 1
#define RM_MISSING 2

struct rm_op {
	uint64_t idx;
	int kind;
	int st;
	uint32_t ver;
	uint32_t copy;  /* which of cfg.copies servers (memcached); 0 the primary */
	uint32_t tries; /* reads: a bit per copy found bad */
	char key[RM_KEYMAX];
	size_t klen;
	unsigned char *val; /* SET: the frame; GET: room for one (cap bytes), or the backend's buffer */
	void *owner;        /* GET: the backend's buffer holding val, given back with release() */
	size_t vlen;
	size_t cap;
	/* Backend scratch. */
	int node;
	int ask; /* Redis Cluster: node to send ASKING + the command to, or -1 */
	uint16_t slot;
};

/* Traffic counters (struct hm_remote_stats). */
struct rm_counters {
	_Atomic uint64_t round_trips, gets, sets, dels, zero_fills, prefetched, prefetch_hits,
		retries, reconnects, redirects, refreshes, waits, integrity_errors, timeouts, repairs,
		leaked;
};

struct rm_backend_ops {
	/*
	 * One attempt at every op whose st is RM_PENDING: sets st to 0,
	 * RM_MISSING, -errno (final) or leaves RM_PENDING (retry after a
	 * back-off). Called from many threads at once.
	 */
	void (*exec)(void *be, struct rm_op *ops, size_t n);
	/* hm_store flush: confirm writes (Redis WAIT). May be NULL. */
	int (*flush)(void *be, uint64_t deadline_ns);
	void (*close)(void *be);
	/* Gives back a GET's buffer (op->owner) once its value was used. May be NULL. */
	void (*release)(void *be, struct rm_op *op);
};

struct rm_meta {
	_Atomic uint64_t *_Atomic *dir; /* chunks of (issued << 32 | committed) */
	size_t ndir;
	pthread_mutex_t lock;
};

struct rm_pfslot {
	uint64_t idx;
	uint32_t ver;
	uint8_t state; /* 0 empty, 1 in flight, 2 ready */
};

struct rm_prefetch {
	uint32_t nslots;
	struct rm_pfslot *slots;
	unsigned char *data;
	pthread_mutex_t lock;
	pthread_cond_t done, work;
	pthread_t thread;
	bool running, stop;
	/* The detector: the last request start blocks, newest at hist[(hpos-1)%8]. */
	uint64_t hist[8];
	uint32_t hn, hpos;
	int64_t stride;   /* of the stream being prefetched, 0 none */
	uint64_t next;    /* next block of the stream to prefetch */
	uint32_t span;    /* blocks per request of that stream */
	uint32_t window;  /* requests ahead */
	/* The stream whose blocks the slots hold (see pf_slot()). */
	uint64_t map_base;
	int64_t map_stride;
	uint32_t map_span;
	/* The one queued job. */
	bool job;
	uint64_t job_start;
	int64_t job_stride;
	uint32_t job_count, job_span;
};

struct rm_store {
	struct rm_config cfg;
	char obj[17];
	char prefix[96]; /* "hm:NS:OBJ:" */
	size_t prefix_len;
	size_t frame; /* bytes of one stored value */
	const struct rm_backend_ops *bops;
	void *be;
	struct rm_meta meta;
	struct rm_prefetch pf;
	pthread_mutex_t stripes[64]; /* partial-block read-modify-write */
	/* Keys of superseded or failed versions, to delete. */
	pthread_mutex_t gc_lock;
	struct rm_dead {
		uint64_t idx;
		uint32_t ver;
	} *gc;
	uint32_t gc_n, gc_cap;
	/* No deletes after writes before this (a delete pipeline went unanswered). */
	_Atomic uint64_t gc_quiet_until;
	struct rm_counters ctr;
	_Atomic uint32_t spin_skip;  /* requests left before spinning is tried again */
	_Atomic uint32_t spin_fails; /* polls in a row that ran out of time (at most 8) */
};

/*
 * Whether a connection failed for want of a local resource (descriptors,
 * memory), which the server has no part in: that errno, not ECONNREFUSED.
 */
static inline bool rm_local_errno(int e)
{
	return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/*
 * Parses "//[user[:password]@]host[:port][,host[:port]...][/namespace][?k=v,...]"
 * into cfg (defaults first); several hosts are allowed (seed nodes, a pool).
 */
int rm_parse_uri(struct rm_config *cfg, const char *what, const char *rest, int default_port);
/* Sets up the common part once the backend is connected; frees nothing on error. */
int rm_store_init(struct rm_store *s, const struct rm_backend_ops *bops, void *be);
/* Deletes the store's keys (best effort), stops prefetch, closes the backend. */
void rm_store_close(struct rm_store *s);
void rm_store_free(struct rm_store *s);

int rm_read(struct rm_store *s, void *buf, size_t len, uint64_t off);
int rm_write(struct rm_store *s, const void *buf, size_t len, uint64_t off);
int rm_flush(struct rm_store *s);
int rm_ctl(struct rm_store *s, const char *key, const char *value);

/*
 * Runs the ops whose st is RM_PENDING until each is final or the deadline
 * passes (then -ETIMEDOUT). Returns the first final error, or 0.
 */
int rm_run(struct rm_store *s, struct rm_op *ops, size_t n, uint64_t deadline_ns);

/*
 * How long one wait of the calling thread's current attempt may last, in
 * ms: io_timeout, cut to what is left until the deadline of the rm_run()
 * that called exec (at least 1 ms). A backend applies it to its sockets
 * before it waits, so that a request fails at timeout= and not up to an
 * io_timeout (or several waits) later.
 */
uint32_t rm_attempt_ms(const struct rm_store *s);

/*
 * Before a backend's blocking read of a batch's first reply on fd (its
 * requests sent at sent_ns): polls fd until it is readable, for at most
 * cfg.spin_us after sent_ns, when no more threads than CPUs less one are
 * polling already. Sleeping in read() and being woken by the reply costs
 * about 5 us on this kernel, a fifth of a loopback round trip; a thread that
 * polls pays none of it. A poll that runs out of time (a slow server, or
 * CPUs too busy to run a local one) makes the store's next 2 requests sleep
 * at once, then 4, ... up to 256 while polls keep running out; one reply
 * caught polling resets that.
 */
void rm_spin_wait(struct rm_store *s, int fd, uint64_t sent_ns);
/* Batches of at most this many operations are latency-bound: they spin. */
#define RM_SPIN_OPS 2

/* Helpers for backends. */
uint64_t rm_now_ns(void);
void rm_sleep_ms(uint32_t ms);
#define rm_count(s, f, n) atomic_fetch_add_explicit(&(s)->ctr.f, (n), memory_order_relaxed)

#endif
