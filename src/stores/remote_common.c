/* SPDX-License-Identifier: MIT */
/*
 * The shared part of the remote stores; see remote_common.h for the key and
 * frame formats and the rules they enforce.
 */
#include <ctype.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stores/remote_common.h"

static void *scratch_get(int i, size_t len);
static void make_key(const struct rm_store *s, struct rm_op *op, uint64_t idx, uint32_t ver);

#define META_SHIFT 12
#define META_CHUNK (1u << META_SHIFT)

uint64_t rm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void rm_sleep_ms(uint32_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ------------------------------------------------------- waiting for replies */

static _Atomic int spinners;
static _Atomic int spin_limit = 1; /* CPUs less one, at least 1; set by rm_store_init() */

void rm_spin_wait(struct rm_store *s, int fd, uint64_t sent_ns)
{
	uint64_t budget = (uint64_t)s->cfg.spin_us * 1000;
	uint32_t skip = atomic_load_explicit(&s->spin_skip, memory_order_relaxed);
	int saved = errno;
	char b;

	if (!budget)
		return;
	if (skip) {
		/* Backing off after a spin that did not pay (racing threads may skip one less). */
		atomic_store_explicit(&s->spin_skip, skip - 1, memory_order_relaxed);
		return;
	}
	if (atomic_fetch_add(&spinners, 1) < atomic_load_explicit(&spin_limit, memory_order_relaxed)) {
		for (;;) {
			ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
			if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
				atomic_store_explicit(&s->spin_fails, 0, memory_order_relaxed);
				break;
			}
			if (rm_now_ns() - sent_ns >= budget) {
				/* Skip 2, 4, ... up to 256 requests after consecutive misses. */
				uint32_t f = atomic_load_explicit(&s->spin_fails, memory_order_relaxed);
				if (f < 8)
					f++;
				atomic_store_explicit(&s->spin_fails, f, memory_order_relaxed);
				atomic_store_explicit(&s->spin_skip, 1u << f, memory_order_relaxed);
				break;
			}
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause();
#endif
		}
	}
	atomic_fetch_sub(&spinners, 1);
	errno = saved;
}

/* ------------------------------------------------------------------ URIs */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decodes src[0..n) into dst (NUL-terminated); -EINVAL if it does not fit. */
static int pct_decode(char *dst, size_t cap, const char *src, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		int c = (unsigned char)src[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= n)
				return -EINVAL;
			h = hexval((unsigned char)src[i + 1]);
			l = hexval((unsigned char)src[i + 2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = h * 16 + l;
			i += 2;
			if (!c) /* %00 would cut the name or password short */
				return -EINVAL;
		}
		if (o + 1 >= cap)
			return -EINVAL;
		dst[o++] = (char)c;
	}
	dst[o] = 0;
	return 0;
}

/* Reads a small secret file that only its owner may read; strips a trailing newline. */
static int read_secret(const char *what, const char *opt, const char *path, unsigned char *buf,
		       size_t cap, size_t *len)
{
	struct stat st;
	ssize_t n;
	int fd, rc;

	/* Non-blocking: a FIFO is refused, not waited on for a writer (src/os/file.c). */
	fd = hm__open_file(path, O_RDONLY, 0);
	if (fd < 0)
		return hm__error_errno(fd, "%s: cannot open %s '%s'", what, opt, path);
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return hm__error_errno(rc, "%s: cannot stat %s '%s'", what, opt, path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return hm__error(-EINVAL, "%s: %s '%s' is not a regular file", what, opt, path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return hm__error(-EACCES,
				 "%s: %s '%s' is readable by others (mode %03o); make it 0600",
				 what, opt, path, (unsigned)(st.st_mode & 0777));
	}
	n = read(fd, buf, cap);
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc)
		return hm__error_errno(rc, "%s: cannot read %s '%s'", what, opt, path);
	if ((size_t)n == cap)
		return hm__error(-EINVAL, "%s: %s '%s' is too large", what, opt, path);
	*len = (size_t)n;
	return 0;
}

static int load_key(struct rm_config *c, const char *path)
{
	unsigned char buf[200];
	size_t n, i, o = 0;
	int rc;

	rc = read_secret(c->what, "key_file", path, buf, sizeof buf, &n);
	if (rc)
		return rc;
	if (n == 32) {
		memcpy(c->key, buf, 32);
	} else {
		/* 64 hex digits, whitespace allowed around them. */
		for (i = 0; i < n; i++) {
			int h, l;
			if (isspace(buf[i]))
				continue;
			if (o == 32 || i + 1 >= n)
				goto bad;
			h = hexval(buf[i]);
			l = hexval(buf[i + 1]);
			if (h < 0 || l < 0)
				goto bad;
			c->key[o++] = (unsigned char)(h * 16 + l);
			i++;
		}
		if (o != 32)
			goto bad;
	}
	sodium_memzero(buf, sizeof buf);
	c->encrypt = true;
	return 0;
bad:
	sodium_memzero(buf, sizeof buf);
	sodium_memzero(c->key, sizeof c->key);
	return hm__error(-EINVAL, "%s: key_file '%s' must hold 32 raw bytes or 64 hex digits",
			 c->what, path);
}

static int parse_ms(struct rm_config *c, const char *k, const char *v, uint32_t *out,
		    uint32_t min, uint32_t max)
{
	uint64_t u;

	if (hm_parse_u64(v, &u) || u < min || u > max)
		return hm__error(-EINVAL, "%s: %s='%s' must be a number from %u to %u", c->what, k,
				 v, min, max);
	*out = (uint32_t)u;
	return 0;
}

static int opt_cb(void *ctx, const char *k, const char *v)
{
	struct rm_config *c = ctx;
	uint64_t u;

	if (!strcmp(k, "size")) {
		if (hm_parse_size(v, &u) || u == 0 || u > (1ull << 50))
			return hm__error(-EINVAL, "%s: size='%s' is not a size up to 1P", c->what, v);
		c->size = u;
		return 0;
	}
	if (!strcmp(k, "page")) {
		if (hm_parse_size(v, &u) || u < 512 || u > (1u << 20) || (u & (u - 1)))
			return hm__error(-EINVAL,
					 "%s: page='%s' must be a power of two from 512 to 1M",
					 c->what, v);
		c->block = (uint32_t)u;
		return 0;
	}
	if (!strcmp(k, "timeout"))
		return parse_ms(c, k, v, &c->timeout_ms, 1, 3600000);
	if (!strcmp(k, "io_timeout"))
		return parse_ms(c, k, v, &c->io_timeout_ms, 1, 600000);
	if (!strcmp(k, "conns"))
		return parse_ms(c, k, v, &c->conns, 1, 64);
	if (!strcmp(k, "prefetch"))
		return parse_ms(c, k, v, &c->prefetch, 0, 65536);
	if (!strcmp(k, "spin"))
		return parse_ms(c, k, v, &c->spin_us, 0, 10000);
	if (!strcmp(k, "replicas")) {
		uint32_t n = 0;
		if (!strcmp(v, "auto")) {
			c->replicas = -1;
			return 0;
		}
		if (parse_ms(c, k, v, &n, 0, 64))
			return hm__error(-EINVAL, "%s: replicas='%s' must be 'auto' or 0..64",
					 c->what, v);
		c->replicas = (int)n;
		return 0;
	}
	/* Credentials in the URI come first (docs/remote.md): the options only add. */
	if (!strcmp(k, "user")) {
		if (!*v || strlen(v) >= sizeof c->user)
			return hm__error(-EINVAL, "%s: bad user name", c->what);
		if (!c->user[0])
			strcpy(c->user, v);
		return 0;
	}
	if (!strcmp(k, "password_file")) {
		char pw[sizeof c->password];
		size_t n;
		int rc = read_secret(c->what, "password_file", v, (unsigned char *)pw, sizeof pw, &n);
		if (rc)
			return rc;
		while (n && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
			n--;
		pw[n] = 0;
		if (!n)
			rc = hm__error(-EINVAL, "%s: password_file '%s' is empty", c->what, v);
		else if (!c->have_password)
			memcpy(c->password, pw, n + 1);
		c->have_password = c->have_password || n;
		sodium_memzero(pw, sizeof pw);
		return rc;
	}
	if (!strcmp(k, "key_file"))
		return load_key(c, v);
	return hm__error(-EINVAL,
			 "%s: unknown option '%s' (known: size, page, timeout, io_timeout, conns, "
			 "prefetch, spin, replicas, user, password_file, key_file)",
			 c->what, k);
}

static int parse_host(struct rm_config *c, const char *s, size_t n, int default_port)
{
	struct rm_host *h;
	const char *colon;
	size_t hl;

	if (c->nhosts == RM_MAX_HOSTS)
		return hm__error(-EINVAL, "%s: more than %d servers", c->what, RM_MAX_HOSTS);
	h = &c->hosts[c->nhosts];
	if (n && s[0] == '[') {
		const char *e = memchr(s, ']', n);
		if (!e)
			return hm__error(-EINVAL, "%s: unterminated '[' in a server address", c->what);
		hl = (size_t)(e - s - 1);
		if (!hl || hl >= sizeof h->name)
			return hm__error(-EINVAL, "%s: bad IPv6 address", c->what);
		memcpy(h->name, s + 1, hl);
		h->name[hl] = 0;
		colon = (size_t)(e + 1 - s) < n && e[1] == ':' ? e + 1 : NULL;
		if (!colon && (size_t)(e + 1 - s) != n)
			return hm__error(-EINVAL, "%s: junk after ']' in a server address", c->what);
	} else {
		colon = memchr(s, ':', n);
		hl = colon ? (size_t)(colon - s) : n;
		if (!hl || hl >= sizeof h->name)
			return hm__error(-EINVAL, "%s: empty or too long host name in the URI",
					 c->what);
		memcpy(h->name, s, hl);
		h->name[hl] = 0;
		for (size_t i = 0; i < hl; i++)
			if (!isalnum((unsigned char)s[i]) && !strchr(".-_", s[i]))
				return hm__error(-EINVAL, "%s: bad character '%c' in host '%s'",
						 c->what, s[i], h->name);
	}
	h->port = default_port;
	if (colon) {
		char pb[8];
		uint64_t p;
		size_t pl = n - (size_t)(colon + 1 - s);
		if (!pl || pl >= sizeof pb)
			return hm__error(-EINVAL, "%s: bad port for host '%s'", c->what, h->name);
		memcpy(pb, colon + 1, pl);
		pb[pl] = 0;
		if (hm_parse_u64(pb, &p) || p == 0 || p > 65535)
			return hm__error(-EINVAL, "%s: port '%s' of host '%s' is not 1..65535",
					 c->what, pb, h->name);
		h->port = (int)p;
	}
	for (int i = 0; i < c->nhosts; i++)
		if (c->hosts[i].port == h->port && !strcmp(c->hosts[i].name, h->name))
			return hm__error(-EINVAL, "%s: server %s:%d is listed twice", c->what,
					 h->name, h->port);
	c->nhosts++;
	return 0;
}

int rm_parse_uri(struct rm_config *c, const char *what, const char *rest, int default_port)
{
	const char *auth, *end, *q, *slash, *at, *p;
	char opts[1024];
	int rc;

	memset(c, 0, sizeof *c);
	c->what = what;
	strcpy(c->ns, "hmmap");
	c->size = 1ull << 40;
	c->block = 4096;
	c->timeout_ms = 10000;
	c->io_timeout_ms = 1000;
	c->conns = 4;
	c->prefetch = 256;
	c->spin_us = 50;
	c->replicas = -1;

	if (strncmp(rest, "//", 2))
		return hm__error(-EINVAL, "%s: the URI must start with '//' after the scheme "
					  "(e.g. redis://127.0.0.1:6379/ns)",
				 what);
	auth = rest + 2;
	q = strchr(auth, '?');
	end = q ? q : auth + strlen(auth);
	slash = memchr(auth, '/', (size_t)(end - auth));
	/* The user info ends at the last '@' before the path. */
	at = NULL;
	for (p = auth; p < (slash ? slash : end); p++)
		if (*p == '@')
			at = p;
	if (at) {
		const char *colon = memchr(auth, ':', (size_t)(at - auth));
		size_t ul = colon ? (size_t)(colon - auth) : (size_t)(at - auth);
		if (pct_decode(c->user, sizeof c->user, auth, ul))
			return hm__error(-EINVAL, "%s: bad user name in the URI", what);
		if (colon) {
			if (pct_decode(c->password, sizeof c->password, colon + 1,
				       (size_t)(at - colon - 1)))
				return hm__error(-EINVAL, "%s: bad password in the URI", what);
			c->have_password = c->password[0] != 0;
		}
		auth = at + 1;
	}
	/* Servers. */
	{
		const char *hend = slash ? slash : end, *s = auth;
		if (s == hend)
			return hm__error(-EINVAL, "%s: no server in the URI", what);
		while (s < hend) {
			const char *comma = memchr(s, ',', (size_t)(hend - s));
			const char *e = comma ? comma : hend;
			rc = parse_host(c, s, (size_t)(e - s), default_port);
			/*
			 * A password with an unencoded '/' or '?' ends the user
			 * information early, and its pieces reach parse_host() as a
			 * host and a port: say what is wrong without showing them.
			 */
			if (rc && strchr(rest, '@'))
				return hm__error(rc, "%s: bad server address in the URI (in a user "
						     "name or password, write '/' as %%2F, '?' as "
						     "%%3F and '@' as %%40)",
						 what);
			if (rc)
				return rc;
			s = comma ? comma + 1 : hend;
			if (comma && s == hend)
				return hm__error(-EINVAL, "%s: empty server after ','", what);
		}
	}
	if (slash) {
		size_t nl = (size_t)(end - slash - 1);
		if (!nl || nl >= sizeof c->ns)
			return hm__error(-EINVAL, "%s: the namespace after '/' must be 1 to %zu "
						  "characters",
					 what, sizeof c->ns - 1);
		for (size_t i = 0; i < nl; i++) {
			char ch = slash[1 + i];
			if (!isalnum((unsigned char)ch) && !strchr("-_.", ch))
				return hm__error(-EINVAL, "%s: bad character '%c' in the namespace "
							  "(letters, digits, '-', '_', '.')",
						 what, ch);
		}
		memcpy(c->ns, slash + 1, nl);
		c->ns[nl] = 0;
	}
	if (q) {
		size_t ol = strlen(q + 1);
		if (!ol)
			return hm__error(-EINVAL, "%s: empty option list after '?'", what);
		if (ol >= sizeof opts)
			return hm__error(-EINVAL, "%s: option list too long", what);
		memcpy(opts, q + 1, ol + 1);
		for (char *o = opts; *o; o++)
			if (*o == '&')
				*o = ',';
		rc = hm_opts_parse(opts, opt_cb, c);
		if (rc)
			return rc;
	}
	if (c->io_timeout_ms > c->timeout_ms)
		c->io_timeout_ms = c->timeout_ms;
	if (c->size % c->block)
		return hm__error(-EINVAL, "%s: size must be a multiple of page=%u", what, c->block);
	return 0;
}

/* -------------------------------------------------------------- versions */

static _Atomic uint64_t *meta_word(struct rm_meta *m, uint64_t idx, bool alloc)
{
	size_t d = (size_t)(idx >> META_SHIFT);
	_Atomic uint64_t *chunk;

	if (d >= m->ndir)
		return NULL;
	chunk = atomic_load_explicit(&m->dir[d], memory_order_acquire);
	if (!chunk && alloc) {
		/*
		 * mmap, not malloc: a write may run on the fault path (a fault
		 * that evicts), in a signal handler in sigbus mode.
		 */
		pthread_mutex_lock(&m->lock);
		chunk = atomic_load(&m->dir[d]);
		if (!chunk) {
			void *p = mmap(NULL, META_CHUNK * sizeof(uint64_t), PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p != MAP_FAILED) {
				chunk = p;
				atomic_store_explicit(&m->dir[d], chunk, memory_order_release);
			}
		}
		pthread_mutex_unlock(&m->lock);
	}
	return chunk ? &chunk[idx & (META_CHUNK - 1)] : NULL;
}

static uint32_t committed(struct rm_store *s, uint64_t idx)
{
	_Atomic uint64_t *w = meta_word(&s->meta, idx, false);

	return w ? (uint32_t)atomic_load_explicit(w, memory_order_acquire) : 0;
}

/* A new version for a write of idx (never reused, even if the write fails). */
static int issue(struct rm_store *s, uint64_t idx, uint32_t *ver)
{
	_Atomic uint64_t *w = meta_word(&s->meta, idx, true);
	uint64_t old;

	if (!w)
		return hm__error(-ENOMEM, "%s: out of memory for page versions", s->cfg.what);
	old = atomic_fetch_add(w, 1ull << 32);
	if ((old >> 32) == UINT32_MAX)
		return hm__error(-EOVERFLOW, "%s: page %llu was written 2^32 times", s->cfg.what,
				 (unsigned long long)idx);
	*ver = (uint32_t)(old >> 32) + 1;
	return 0;
}

/* Makes ver the committed version of idx; returns the version it replaced (0: none). */
static uint32_t commit(struct rm_store *s, uint64_t idx, uint32_t ver)
{
	_Atomic uint64_t *w = meta_word(&s->meta, idx, false);
	uint64_t old = atomic_load(w), nw;

	do {
		if ((uint32_t)old >= ver)
			return 0;
		nw = (old & ~0xffffffffull) | ver;
	} while (!atomic_compare_exchange_weak(w, &old, nw));
	return (uint32_t)old;
}

/* ------------------------------------------------------- dead versions */

static void gc_push(struct rm_store *s, uint64_t idx, uint32_t ver)
{
	pthread_mutex_lock(&s->gc_lock);
	if (s->gc_n < s->gc_cap) {
		s->gc[s->gc_n].idx = idx;
		s->gc[s->gc_n].ver = ver;
		s->gc_n++;
	} else {
		rm_count(s, leaked, 1);
	}
	pthread_mutex_unlock(&s->gc_lock);
}

/*
 * Fills up to max DEL ops (every copy) from the queue, if it holds at least
 * min dead versions; returns how many.
 */
static size_t gc_take(struct rm_store *s, struct rm_op *ops, size_t max, uint32_t min)
{
	uint32_t copies = s->cfg.copies > 1 ? s->cfg.copies : 1;
	size_t n = 0;

	pthread_mutex_lock(&s->gc_lock);
	if (s->gc_n < min) {
		pthread_mutex_unlock(&s->gc_lock);
		return 0;
	}
	while (s->gc_n && n + copies <= max) {
		struct rm_dead d = s->gc[--s->gc_n];
		for (uint32_t c = 0; c < copies; c++, n++) {
			make_key(s, &ops[n], d.idx, d.ver);
			ops[n].kind = RM_DEL;
			ops[n].copy = c;
		}
	}
	pthread_mutex_unlock(&s->gc_lock);
	return n;
}

/* Puts back the deletes that did not happen (their first copy stands for all). */
static void gc_requeue(struct rm_store *s, struct rm_op *ops, size_t n)
{
	uint32_t copies = s->cfg.copies > 1 ? s->cfg.copies : 1;

	for (size_t i = 0; i < n; i += copies) {
		bool done = true;
		for (uint32_t c = 0; c < copies; c++)
			done &= ops[i + c].st == 0;
		if (done)
			rm_count(s, dels, copies);
		else
			gc_push(s, ops[i].idx, ops[i].ver);
	}
}

/* Deletes every queued dead version (hm_sync, close); best effort. */
static void gc_drain(struct rm_store *s, uint64_t deadline)
{
	struct rm_op *ops = scratch_get(0, 256 * sizeof *ops);
	size_t n;

	if (!ops)
		return;
	while ((n = gc_take(s, ops, 256, 1))) {
		int rc = rm_run(s, ops, n, deadline);
		gc_requeue(s, ops, n);
		if (rc)
			break;
	}
}

/* ---------------------------------------------------------------- frames */

static void make_key(const struct rm_store *s, struct rm_op *op, uint64_t idx, uint32_t ver)
{
	memcpy(op->key, s->prefix, s->prefix_len);
	op->klen = s->prefix_len +
		   (size_t)snprintf(op->key + s->prefix_len, RM_KEYMAX - s->prefix_len, "%llx:%x",
				    (unsigned long long)idx, ver);
	op->idx = idx;
	op->ver = ver;
	op->st = RM_PENDING;
	op->copy = 0;
	op->tries = 0;
	op->owner = NULL;
}

/* Gives the backend's reply buffers back. */
static void release_all(struct rm_store *s, struct rm_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ops[i].owner) {
			s->bops->release(s->be, &ops[i]);
			ops[i].owner = NULL;
		}
	}
}

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

/* Additional data of the AEAD: the header and the key prefix (namespace, object). */
static size_t make_ad(const struct rm_store *s, const unsigned char *hdr, unsigned char *ad)
{
	memcpy(ad, hdr, RM_HDR);
	memcpy(ad + RM_HDR, s->prefix, s->prefix_len);
	return RM_HDR + s->prefix_len;
}

static void encode(struct rm_store *s, unsigned char *frame, const void *data, uint64_t idx,
		   uint32_t ver)
{
	put32(frame, s->cfg.encrypt ? RM_MAGIC_CRYPT : RM_MAGIC_PLAIN);
	put32(frame + 4, ver);
	memcpy(frame + 8, &idx, 8);
	if (!s->cfg.encrypt) {
		memcpy(frame + RM_HDR, data, s->cfg.block);
	} else {
		unsigned char ad[RM_HDR + 96];
		size_t adl = make_ad(s, frame, ad);
		unsigned char *nonce = frame + RM_HDR;
		randombytes_buf(nonce, RM_NONCE);
		crypto_aead_xchacha20poly1305_ietf_encrypt(frame + RM_HDR + RM_NONCE, NULL, data,
							   s->cfg.block, ad, adl, NULL, nonce,
							   s->cfg.key);
	}
}

/* Checks and decodes a frame into out (one block); -EIO with a message if it is not the one written. */
static int decode(struct rm_store *s, const unsigned char *frame, size_t len, uint64_t idx,
		  uint32_t ver, void *out)
{
	uint64_t fidx;
	uint32_t fver;

	if (len != s->frame || get32(frame) != (s->cfg.encrypt ? RM_MAGIC_CRYPT : RM_MAGIC_PLAIN)) {
		rm_count(s, integrity_errors, 1);
		return hm__error(-EIO, "%s: page %llu on the server is not a page of this store "
				       "(%zu bytes, bad header): modified on the server",
				 s->cfg.what, (unsigned long long)idx, len);
	}
	fver = get32(frame + 4);
	memcpy(&fidx, frame + 8, 8);
	if (fidx != idx || fver != ver) {
		rm_count(s, integrity_errors, 1);
		return hm__error(-EIO, "%s: page %llu on the server is version %u of page %llu, "
				       "expected version %u: a stale, lost or replayed copy",
				 s->cfg.what, (unsigned long long)idx, fver,
				 (unsigned long long)fidx, ver);
	}
	if (!s->cfg.encrypt) {
		memcpy(out, frame + RM_HDR, s->cfg.block);
		return 0;
	}
	unsigned char ad[RM_HDR + 96];
	size_t adl = make_ad(s, frame, ad);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, frame + RM_HDR + RM_NONCE,
						       s->cfg.block + RM_MAC, ad, adl,
						       frame + RM_HDR, s->cfg.key)) {
		rm_count(s, integrity_errors, 1);
		return hm__error(-EIO, "%s: page %llu failed authentication: modified on the server",
				 s->cfg.what, (unsigned long long)idx);
	}
	return 0;
}

/* ------------------------------------------------------------- scratch */

/*
 * Per-thread scratch from mmap (async-signal-safe: reads run in a SIGBUS
 * handler in sigbus mode). Two slots: ops and frames.
 */
static __thread struct {
	void *p;
	size_t cap;
} scratch[3];

static void *scratch_get(int i, size_t len)
{
	if (scratch[i].cap < len) {
		size_t cap = (len + 65535) & ~(size_t)65535;
		void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		if (scratch[i].p)
			munmap(scratch[i].p, scratch[i].cap);
		scratch[i].p = p;
		scratch[i].cap = cap;
	}
	return scratch[i].p;
}

/* -------------------------------------------------------------- running */

/* The deadline of the rm_run() on this thread's stack, or 0. */
static __thread uint64_t attempt_deadline;

uint32_t rm_attempt_ms(const struct rm_store *s)
{
	uint32_t io = __atomic_load_n(&s->cfg.io_timeout_ms, __ATOMIC_RELAXED);
	uint64_t now = rm_now_ns(), left;

	if (!attempt_deadline)
		return io;
	left = attempt_deadline > now ? (attempt_deadline - now + 999999) / 1000000 : 1;
	return left < io ? (uint32_t)(left ? left : 1) : io;
}

/*
 * rm_run(); `quiet` for the best-effort deletes of dead versions: running
 * out of time is neither counted as a timeout nor made the thread's error.
 */
static int run_ops(struct rm_store *s, struct rm_op *ops, size_t n, uint64_t deadline,
		   bool quiet)
{
	uint64_t outer = attempt_deadline;
	uint32_t backoff = 2;
	size_t i, pending;
	int err = 0;

	for (i = 0; i < n; i++) {
		ops[i].node = -1;
		ops[i].ask = -1;
	}
	for (;;) {
		attempt_deadline = deadline;
		s->bops->exec(s->be, ops, n);
		attempt_deadline = outer;
		for (i = pending = 0; i < n; i++)
			pending += ops[i].st == RM_PENDING;
		if (!pending)
			break;
		uint64_t now = rm_now_ns();
		if (now >= deadline) {
			char last[256];
			snprintf(last, sizeof last, "%s", hm_errormsg());
			for (i = 0; i < n; i++)
				if (ops[i].st == RM_PENDING)
					ops[i].st = -ETIMEDOUT;
			if (quiet)
				return -ETIMEDOUT;
			rm_count(s, timeouts, 1);
			return hm__error(-ETIMEDOUT, "%s: no answer within timeout=%u ms (%s)",
					 s->cfg.what, s->cfg.timeout_ms, last);
		}
		uint64_t left = (deadline - now) / 1000000 + 1;
		rm_count(s, retries, 1);
		rm_sleep_ms(backoff < left ? backoff : (uint32_t)left);
		backoff = backoff * 2 > 500 ? 500 : backoff * 2;
	}
	for (i = 0; i < n; i++)
		if (ops[i].st < 0 && !err)
			err = ops[i].st;
	return err;
}

int rm_run(struct rm_store *s, struct rm_op *ops, size_t n, uint64_t deadline)
{
	return run_ops(s, ops, n, deadline, false);
}

static uint64_t deadline_of(const struct rm_store *s)
{
	/* timeout= may change at run time (hm_store_ctl). */
	return rm_now_ns() + (uint64_t)__atomic_load_n(&s->cfg.timeout_ms, __ATOMIC_RELAXED) * 1000000ull;
}

/* ------------------------------------------------------------- prefetch */

/*
 * The buffer slot of block idx: the blocks of the stream being prefetched
 * (map_base + k * map_stride + j, j < map_span) take consecutive slots, so
 * that a window never collides with itself whatever the stride (a slot by
 * idx modulo the size would put every 64th page of a stride-4 scan on the
 * same slot). -1 if idx is not on the stream. Under pf->lock.
 */
static int64_t pf_slot(const struct rm_prefetch *pf, uint64_t idx)
{
	int64_t d = (int64_t)(idx - pf->map_base), st = pf->map_stride;

	if (!st)
		return -1;
	for (int64_t j = 0; j < (int64_t)pf->map_span; j++) {
		if ((d - j) % st == 0 && (d - j) / st >= 0) {
			int64_t k = (d - j) / st;
			return (int64_t)(((uint64_t)k * pf->map_span + (uint64_t)j) % pf->nslots);
		}
	}
	return -1;
}

/* Copies block idx (version ver) from the prefetch buffer into out; false if absent. */
static bool pf_take(struct rm_store *s, uint64_t idx, uint32_t ver, void *out, size_t from,
		    size_t len)
{
	struct rm_prefetch *pf = &s->pf;
	struct rm_pfslot *sl;
	bool got = false;

	if (!pf->nslots)
		return false;
	pthread_mutex_lock(&pf->lock);
	int64_t k = pf_slot(pf, idx);
	if (k < 0) {
		pthread_mutex_unlock(&pf->lock);
		return false;
	}
	sl = &pf->slots[k];
	if (sl->idx == idx && sl->state == 1) {
		/* In flight: wait for it rather than asking twice (bounded). */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += s->cfg.io_timeout_ms / 1000 + 1;
		while (sl->idx == idx && sl->state == 1)
			if (pthread_cond_timedwait(&pf->done, &pf->lock, &ts))
				break;
	}
	if (sl->idx == idx && sl->state == 2) {
		if (sl->ver == ver) {
			memcpy(out, pf->data + (size_t)(sl - pf->slots) * s->cfg.block + from, len);
			got = true;
		}
		sl->state = 0;
	}
	pthread_mutex_unlock(&pf->lock);
	if (got)
		rm_count(s, prefetch_hits, 1);
	return got;
}

/*
 * The detector, in the spirit of Leap (Al Maruf and Chowdhury, ATC'20): the
 * strides between the last requests are put to a majority vote
 * (Boyer-Moore); a stride with a strict majority is a trend, and the next
 * `window` requests along it are fetched in one pipelined batch, the window
 * doubling while the trend holds. Contiguous streams (a stride of one
 * request) are left to the core's readahead, which already reads them ahead
 * in growing windows; this catches what it does not: strided and backward
 * scans.
 */
static void pf_observe(struct rm_store *s, uint64_t b0, uint32_t nb)
{
	struct rm_prefetch *pf = &s->pf;
	int64_t d[8], cand = 0;
	uint32_t i, nd, votes = 0, maxwin;
	uint64_t nblocks = s->cfg.size / s->cfg.block;

	if (!pf->nslots)
		return;
	pthread_mutex_lock(&pf->lock);
	pf->hist[pf->hpos++ % 8] = b0;
	if (pf->hn < 8)
		pf->hn++;
	if (pf->hn < 4)
		goto out;
	nd = pf->hn - 1;
	for (i = 0; i < nd; i++) {
		uint64_t a = pf->hist[(pf->hpos - 1 - i) % 8], b = pf->hist[(pf->hpos - 2 - i) % 8];
		d[i] = (int64_t)(a - b);
	}
	for (i = 0; i < nd; i++) {
		if (!votes) {
			cand = d[i];
			votes = 1;
		} else {
			votes += d[i] == cand ? 1 : (uint32_t)-1;
		}
	}
	for (i = votes = 0; i < nd; i++)
		votes += d[i] == cand;
	if (votes * 2 <= nd || (cand >= -(int64_t)nb && cand <= (int64_t)nb)) {
		pf->stride = 0;
		goto out;
	}
	maxwin = pf->nslots / nb / 2;
	if (!maxwin)
		goto out;
	/*
	 * A new trend, or a jump off this one (d[0], the step to b0, is not
	 * the stride: the next pass of a strided scan starting at the next
	 * residue, say): the stream starts over at b0. Without the jump, the
	 * next request scheduled stayed at the end of the pass before, more
	 * than a window ahead of every request of the next pass, and nothing
	 * was prefetched after the first pass.
	 */
	if (cand != pf->stride || nb != pf->span || d[0] != cand) {
		pf->stride = cand;
		pf->span = nb;
		pf->next = b0 + (uint64_t)cand;
		pf->window = maxwin < 4 ? maxwin : 4;
	}
	if (cand != pf->map_stride || nb != pf->map_span ||
	    pf_slot(pf, pf->next) < 0) {
		/* A new stream: its blocks take the slots from 0 on. */
		pf->map_stride = cand;
		pf->map_span = nb;
		pf->map_base = pf->next;
	}
	/* Steps already scheduled ahead of b0. */
	int64_t ahead = ((int64_t)(pf->next - b0)) / cand - 1;
	if (ahead < 0) {
		pf->next = b0 + (uint64_t)cand;
		ahead = 0;
	}
	if ((uint32_t)ahead * 2 > pf->window || pf->job)
		goto out;
	uint32_t count = pf->window - (uint32_t)ahead;
	/* Stay inside the store. */
	while (count) {
		uint64_t last = pf->next + (uint64_t)(cand * (int64_t)(count - 1));
		if (last < nblocks && last + nb <= nblocks)
			break;
		count--;
	}
	if (!count)
		goto out;
	pf->job = true;
	pf->job_start = pf->next;
	pf->job_stride = cand;
	pf->job_count = count;
	pf->job_span = nb;
	pf->next += (uint64_t)(cand * (int64_t)count);
	pf->window = pf->window * 2 > maxwin ? maxwin : pf->window * 2;
	pthread_cond_signal(&pf->work);
out:
	pthread_mutex_unlock(&pf->lock);
}

static void *pf_thread(void *arg)
{
	struct rm_store *s = arg;
	struct rm_prefetch *pf = &s->pf;
	struct rm_op *ops = calloc(pf->nslots, sizeof *ops);
	unsigned char *frames = malloc((size_t)pf->nslots * s->frame);
	uint32_t *slotof = calloc(pf->nslots, sizeof *slotof);

	hm__block_signals();
	pthread_mutex_lock(&pf->lock);
	while (!pf->stop) {
		if (!pf->job || !ops || !frames || !slotof) {
			pthread_cond_wait(&pf->work, &pf->lock);
			continue;
		}
		size_t n = 0;
		for (uint32_t k = 0; k < pf->job_count; k++) {
			for (uint32_t j = 0; j < pf->job_span && n < pf->nslots; j++) {
				uint64_t idx = pf->job_start + (uint64_t)(pf->job_stride * k) + j;
				uint32_t ver = committed(s, idx);
				int64_t slot = pf_slot(pf, idx);
				if (slot < 0)
					continue;
				struct rm_pfslot *sl = &pf->slots[slot];
				if (!ver || sl->state == 1)
					continue;
				sl->idx = idx;
				sl->ver = ver;
				sl->state = 1;
				make_key(s, &ops[n], idx, ver);
				ops[n].kind = RM_GET;
				ops[n].val = frames + n * s->frame;
				ops[n].cap = s->frame;
				slotof[n] = (uint32_t)(sl - pf->slots);
				n++;
			}
		}
		pf->job = false;
		pthread_mutex_unlock(&pf->lock);
		if (n) {
			/* One attempt's worth of patience: a prefetch is never worth a retry. */
			rm_run(s, ops, n, rm_now_ns() + (uint64_t)s->cfg.io_timeout_ms * 1000000ull);
			rm_count(s, prefetched, n);
		}
		pthread_mutex_lock(&pf->lock);
		for (size_t i = 0; i < n; i++) {
			struct rm_pfslot *sl = &pf->slots[slotof[i]];
			if (sl->idx != ops[i].idx || sl->state != 1)
				continue;
			sl->state = 0;
			if (ops[i].st == 0 &&
			    !decode(s, ops[i].val, ops[i].vlen, ops[i].idx, ops[i].ver,
				    pf->data + (size_t)slotof[i] * s->cfg.block))
				sl->state = 2;
		}
		release_all(s, ops, n);
		pthread_cond_broadcast(&pf->done);
	}
	pthread_mutex_unlock(&pf->lock);
	free(ops);
	free(frames);
	free(slotof);
	return NULL;
}

/* ------------------------------------------------------------ the store */

int rm_store_init(struct rm_store *s, const struct rm_backend_ops *bops, void *be)
{
	uint64_t id;
	size_t nblocks;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	/* Spinning threads leave a CPU to the rest of the process (and a local server). */
	atomic_store_explicit(&spin_limit, cpus > 2 ? (int)cpus - 1 : 1, memory_order_relaxed);
	if (sodium_init() < 0)
		return hm__error(-EIO, "%s: libsodium failed to initialise", s->cfg.what);
	randombytes_buf(&id, sizeof id);
	snprintf(s->obj, sizeof s->obj, "%016llx", (unsigned long long)id);
	s->prefix_len = (size_t)snprintf(s->prefix, sizeof s->prefix, "hm:%s:%s:", s->cfg.ns,
					 s->obj);
	s->frame = RM_HDR + s->cfg.block + (s->cfg.encrypt ? RM_NONCE + RM_MAC : 0);
	nblocks = (size_t)(s->cfg.size / s->cfg.block);
	s->meta.ndir = (nblocks + META_CHUNK - 1) >> META_SHIFT;
	s->meta.dir = calloc(s->meta.ndir, sizeof *s->meta.dir);
	if (!s->meta.dir)
		return hm__error(-ENOMEM, "%s: out of memory", s->cfg.what);
	pthread_mutex_init(&s->meta.lock, NULL);
	pthread_mutex_init(&s->gc_lock, NULL);
	s->gc_cap = 65536;
	s->gc = malloc(s->gc_cap * sizeof *s->gc);
	if (!s->gc)
		return hm__error(-ENOMEM, "%s: out of memory", s->cfg.what);
	for (int i = 0; i < 64; i++)
		pthread_mutex_init(&s->stripes[i], NULL);
	s->bops = bops;
	s->be = be;
	pthread_mutex_init(&s->pf.lock, NULL);
	pthread_cond_init(&s->pf.done, NULL);
	pthread_cond_init(&s->pf.work, NULL);
	if (s->cfg.prefetch) {
		s->pf.slots = calloc(s->cfg.prefetch, sizeof *s->pf.slots);
		s->pf.data = malloc((size_t)s->cfg.prefetch * s->cfg.block);
		if (!s->pf.slots || !s->pf.data)
			return hm__error(-ENOMEM, "%s: out of memory for prefetch=%u", s->cfg.what,
					 s->cfg.prefetch);
		s->pf.nslots = s->cfg.prefetch;
		if (pthread_create(&s->pf.thread, NULL, pf_thread, s))
			return hm__error(-EAGAIN, "%s: cannot start the prefetch thread",
					 s->cfg.what);
		s->pf.running = true;
	}
	return 0;
}

/*
 * Deletes every key this store wrote: remote memory is given back when the
 * store closes. Per page: the committed version and any newer ones whose
 * write failed (up to 16), then the queue of dead versions.
 */
static void delete_all(struct rm_store *s)
{
	uint32_t copies = s->cfg.copies > 1 ? s->cfg.copies : 1;
	struct rm_op *ops = calloc(256, sizeof *ops);
	uint64_t deadline = rm_now_ns() + 2000000000ull;
	size_t n = 0;

	if (!ops)
		return;
	for (size_t d = 0; d < s->meta.ndir; d++) {
		_Atomic uint64_t *chunk = atomic_load(&s->meta.dir[d]);
		if (!chunk)
			continue;
		for (uint32_t i = 0; i < META_CHUNK; i++) {
			uint64_t w = atomic_load(&chunk[i]);
			uint32_t issued = (uint32_t)(w >> 32), com = (uint32_t)w;
			uint32_t first = com ? com : 1, last = issued;
			if (!issued)
				continue;
			if (last - first > 16)
				last = first + 16;
			for (uint32_t v = first; v <= last; v++) {
				for (uint32_t c = 0; c < copies; c++) {
					make_key(s, &ops[n], ((uint64_t)d << META_SHIFT) | i, v);
					ops[n].kind = RM_DEL;
					ops[n].copy = c;
					n++;
				}
				if (n + 16 >= 256) {
					rm_count(s, dels, n);
					if (rm_run(s, ops, n, deadline) == -ETIMEDOUT)
						goto out;
					n = 0;
				}
			}
		}
	}
	if (n)
		rm_run(s, ops, n, deadline);
	gc_drain(s, deadline);
out:
	free(ops);
}

void rm_store_close(struct rm_store *s)
{
	if (s->pf.running) {
		pthread_mutex_lock(&s->pf.lock);
		s->pf.stop = true;
		pthread_cond_broadcast(&s->pf.work);
		pthread_mutex_unlock(&s->pf.lock);
		pthread_join(s->pf.thread, NULL);
		s->pf.running = false;
	}
	if (s->be) {
		int saved_err = errno;
		delete_all(s);
		s->bops->close(s->be);
		s->be = NULL;
		errno = saved_err;
	}
}

void rm_store_free(struct rm_store *s)
{
	if (s->meta.dir) {
		for (size_t d = 0; d < s->meta.ndir; d++)
			if (s->meta.dir[d])
				munmap((void *)s->meta.dir[d], META_CHUNK * sizeof(uint64_t));
		free(s->meta.dir);
	}
	free(s->pf.slots);
	free(s->pf.data);
	free(s->gc);
	sodium_memzero(&s->cfg, sizeof s->cfg);
	free(s);
}

#define RM_DONE 3

/* Decodes a fetched GET into its place in buf[off, end); 0 or -EIO with a message. */
static int place(struct rm_store *s, struct rm_op *op, void *buf, uint64_t off, uint64_t end,
		 unsigned char *tmp)
{
	const uint32_t bs = s->cfg.block;
	uint64_t bstart = op->idx * bs;
	uint64_t from = off > bstart ? off - bstart : 0;
	uint64_t to = end < bstart + bs ? end - bstart : bs;
	char *dst = (char *)buf + (bstart + from - off);
	bool whole = from == 0 && to == bs;
	int rc;

	if (op->st == RM_MISSING) {
		rm_count(s, integrity_errors, 1);
		return hm__error(-EIO, "%s: page %llu (version %u) is missing on the server: its "
				       "contents were lost (server restarted or flushed)",
				 s->cfg.what, (unsigned long long)op->idx, op->ver);
	}
	rc = decode(s, op->val, op->vlen, op->idx, op->ver, whole ? dst : (char *)tmp);
	if (!rc && !whole)
		memcpy(dst, tmp + from, (size_t)(to - from));
	return rc;
}

/*
 * Read repair: a page read from one copy after another copy was found
 * missing or bad is written back to the bad copies (the same frame, so the
 * same version), best effort, so that a restarted memcached regains its
 * share of the redundancy as pages are read. The core never reads a page
 * while it writes it back, so no newer version can be overwritten.
 */
static void repair(struct rm_store *s, struct rm_op *ops, size_t n)
{
	struct rm_op fix[16];
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		struct rm_op *op = &ops[i];
		for (uint32_t c = 0; op->tries && c < s->cfg.copies; c++) {
			if (!(op->tries & (1u << c)))
				continue;
			fix[k] = *op;
			fix[k].kind = RM_SET;
			fix[k].copy = c;
			fix[k].st = RM_PENDING;
			if (++k == 16) {
				rm_run(s, fix, k, rm_now_ns() + (uint64_t)s->cfg.io_timeout_ms * 1000000ull);
				rm_count(s, repairs, k);
				k = 0;
			}
		}
	}
	if (k) {
		rm_run(s, fix, k, rm_now_ns() + (uint64_t)s->cfg.io_timeout_ms * 1000000ull);
		rm_count(s, repairs, k);
	}
}

/*
 * Fetches the GETs and places them. With copies (memcached replicas=N), a
 * copy that is missing, stale or fails authentication is read from the next
 * server holding one, and a server that does not answer within io_timeout
 * is passed over for the next copy (and tried again in turn) until
 * timeout= passes; the page fails only when no copy is good.
 */
static int fetch_copies(struct rm_store *s, struct rm_op *ops, size_t n, void *buf, uint64_t off,
			uint64_t end, unsigned char *tmp)
{
	uint64_t total = deadline_of(s), io = (uint64_t)s->cfg.io_timeout_ms * 1000000ull;
	uint32_t copies = s->cfg.copies > 1 ? s->cfg.copies : 1;
	int err = 0;

	for (;;) {
		uint64_t now = rm_now_ns(), dl = total;
		size_t pending = 0;
		int rc;

		if (copies > 1 && now + io < total)
			dl = now + io;
		rm_run(s, ops, n, dl);
		for (size_t i = 0; i < n; i++) {
			struct rm_op *op = &ops[i];
			if (op->st == RM_DONE)
				continue;
			if (op->st == RM_MISSING) {
				/*
				 * Superseded since it was looked up: a write of the
				 * key's other part (a region page smaller than
				 * page=) replaced it and deleted this version. Not a
				 * loss: the new version is read instead.
				 */
				uint32_t ver = committed(s, op->idx);
				if (ver && ver != op->ver) {
					release_all(s, op, 1);
					make_key(s, op, op->idx, ver);
					pending++;
					continue;
				}
			}
			if (op->st == 0 || op->st == RM_MISSING) {
				if (op->st == 0)
					rm_count(s, gets, 1);
				rc = place(s, op, buf, off, end, tmp);
				if (!rc) {
					op->st = RM_DONE;
					continue;
				}
				/* op->tries: a bit per copy found bad. */
				op->tries |= 1u << op->copy;
				if (op->tries == (1u << copies) - 1)
					return rc;
			} else if (op->st == -ETIMEDOUT && copies > 1 && now < total) {
				rc = op->st;
			} else {
				return op->st;
			}
			/* The next copy not known to be bad. */
			err = err ? err : rc;
			release_all(s, op, 1);
			do
				op->copy = (op->copy + 1) % copies;
			while (op->tries & (1u << op->copy));
			op->st = RM_PENDING;
			pending++;
		}
		if (!pending) {
			repair(s, ops, n);
			return 0;
		}
		if (rm_now_ns() >= total)
			return hm__error(err ? err : -ETIMEDOUT, "%s: no good copy of a page within "
								 "timeout=%u ms (%s)",
					 s->cfg.what, s->cfg.timeout_ms, hm_errormsg());
	}
}

static int fetch(struct rm_store *s, struct rm_op *ops, size_t n, void *buf, uint64_t off,
		 uint64_t end, unsigned char *tmp)
{
	int rc = fetch_copies(s, ops, n, buf, off, end, tmp);

	release_all(s, ops, n);
	return rc;
}

int rm_read(struct rm_store *s, void *buf, size_t len, uint64_t off)
{
	const uint32_t bs = s->cfg.block;
	uint64_t b0, b1, end = off + len;
	struct rm_op *ops;
	unsigned char *frames, *tmp;
	size_t n = 0;
	int rc;

	if (!len)
		return 0;
	if (end > s->cfg.size) {
		uint64_t keep = off < s->cfg.size ? s->cfg.size - off : 0;
		memset((char *)buf + keep, 0, (size_t)(len - keep));
		if (!keep)
			return 0;
		end = s->cfg.size;
	}
	b0 = off / bs;
	b1 = (end - 1) / bs;
	ops = scratch_get(0, (size_t)(b1 - b0 + 1) * sizeof *ops);
	frames = scratch_get(1, (size_t)(b1 - b0 + 1) * s->frame);
	tmp = scratch_get(2, bs);
	if (!ops || !frames || !tmp)
		return hm__error(-ENOMEM, "%s: out of memory", s->cfg.what);
	for (uint64_t b = b0; b <= b1; b++) {
		uint64_t bstart = b * bs, from = off > bstart ? off - bstart : 0;
		uint64_t to = end < bstart + bs ? end - bstart : bs;
		char *dst = (char *)buf + (bstart + from - off);
		uint32_t ver = committed(s, b);

		if (!ver) {
			memset(dst, 0, (size_t)(to - from));
			rm_count(s, zero_fills, 1);
			continue;
		}
		if (pf_take(s, b, ver, dst, (size_t)from, (size_t)(to - from)))
			continue;
		make_key(s, &ops[n], b, ver);
		ops[n].kind = RM_GET;
		ops[n].val = frames + n * s->frame;
		ops[n].cap = s->frame;
		n++;
	}
	if (n) {
		rc = fetch(s, ops, n, buf, off, end, tmp);
		if (rc)
			return rc;
	}
	pf_observe(s, b0, (uint32_t)(b1 - b0 + 1));
	return 0;
}

/*
 * After a batch of writes, once GC_BATCH deletes of dead versions are
 * queued: up to `max` of them, in one more pipeline that waits at most
 * GC_WAIT_MS. Deletes that did not happen go back in the queue. Run apart
 * from the writes, so that a server that stopped answering holds up no
 * write to the others; and once such a pipeline went unanswered, none runs
 * for an io_timeout, so that an outage costs a write stream one short wait
 * a second, not one per write. Single-page writes (random write-back) pay
 * the extra round trip once per GC_BATCH of them.
 */
#define GC_WAIT_MS 50u
#define GC_BATCH 64u

static void gc_after_write(struct rm_store *s, struct rm_op *ops, size_t max)
{
	uint32_t ms = s->cfg.io_timeout_ms < GC_WAIT_MS ? s->cfg.io_timeout_ms : GC_WAIT_MS;
	uint64_t now = rm_now_ns();
	size_t n;

	if (now < atomic_load_explicit(&s->gc_quiet_until, memory_order_relaxed))
		return;
	if (!(n = gc_take(s, ops, max, GC_BATCH)))
		return;
	if (run_ops(s, ops, n, now + (uint64_t)ms * 1000000ull, true) == -ETIMEDOUT)
		atomic_store_explicit(&s->gc_quiet_until,
				      rm_now_ns() + (uint64_t)s->cfg.io_timeout_ms * 1000000ull,
				      memory_order_relaxed);
	gc_requeue(s, ops, n);
}

/*
 * Writes whole blocks [b0, b0+nb) from data (to every copy), each to the key
 * of its new version; then deletes up to nb + 64 dead versions: as many as
 * the batch can make dead, and some to spare, so that the queue shrinks
 * while pages are rewritten.
 */
static int write_blocks(struct rm_store *s, const unsigned char *data, uint64_t b0, size_t nb)
{
	uint32_t copies = s->cfg.copies > 1 ? s->cfg.copies : 1;
	struct rm_op *ops = scratch_get(0, (nb + 64) * copies * sizeof *ops);
	unsigned char *frames = scratch_get(1, nb * s->frame);
	size_t n = 0;
	int rc;

	if (!ops || !frames)
		return hm__error(-ENOMEM, "%s: out of memory", s->cfg.what);
	for (size_t i = 0; i < nb; i++) {
		uint32_t ver = 0;
		rc = issue(s, b0 + i, &ver);
		if (rc)
			return rc;
		encode(s, frames + i * s->frame, data + i * s->cfg.block, b0 + i, ver);
		for (uint32_t c = 0; c < copies; c++, n++) {
			make_key(s, &ops[n], b0 + i, ver);
			ops[n].kind = RM_SET;
			ops[n].copy = c;
			ops[n].val = frames + i * s->frame;
			ops[n].vlen = s->frame;
		}
	}
	rc = rm_run(s, ops, n, deadline_of(s));
	for (size_t i = 0; i < n; i += copies) {
		bool ok = true;
		for (uint32_t c = 0; c < copies; c++)
			ok &= ops[i + c].st == 0;
		if (ok) {
			uint32_t old = commit(s, ops[i].idx, ops[i].ver);
			rm_count(s, sets, copies);
			if (old)
				gc_push(s, ops[i].idx, old);
		} else {
			/* It may still land (a frozen server): its key is dead either way. */
			gc_push(s, ops[i].idx, ops[i].ver);
			if (!rc)
				rc = -EIO;
		}
	}
	/* Not after a failure: the deletes' messages would replace its reason. */
	if (!rc)
		gc_after_write(s, ops, (nb + GC_BATCH) * copies);
	return rc;
}

/* A write covering part of block b: read, patch, write, under the block's stripe lock. */
static int write_partial(struct rm_store *s, const char *src, uint64_t b, size_t from, size_t n)
{
	pthread_mutex_t *m = &s->stripes[b % 64];
	unsigned char *blk;
	int rc;

	/* Scratch slot 2 is rm_read's; this block needs its own buffer. */
	blk = mmap(NULL, s->cfg.block, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (blk == MAP_FAILED)
		return hm__error(-ENOMEM, "%s: out of memory", s->cfg.what);
	pthread_mutex_lock(m);
	rc = rm_read(s, blk, s->cfg.block, b * s->cfg.block);
	if (!rc) {
		memcpy(blk + from, src, n);
		rc = write_blocks(s, blk, b, 1);
	}
	pthread_mutex_unlock(m);
	munmap(blk, s->cfg.block);
	return rc;
}

int rm_write(struct rm_store *s, const void *buf, size_t len, uint64_t off)
{
	const uint32_t bs = s->cfg.block;
	const char *p = buf;
	uint64_t end = off + len;
	int rc;

	if (!len)
		return 0;
	if (end > s->cfg.size || end < off)
		return hm__error(-ENOSPC, "%s: write at %llu+%zu is past the store's size=%llu",
				 s->cfg.what, (unsigned long long)off, len,
				 (unsigned long long)s->cfg.size);
	if (off % bs) {
		uint64_t b = off / bs;
		size_t from = (size_t)(off - b * bs);
		size_t n = len < bs - from ? len : bs - from;
		rc = write_partial(s, p, b, from, n);
		if (rc)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	if (len >= bs) {
		size_t nb = len / bs;
		/* In batches, so that the scratch stays small for huge write-backs. */
		for (size_t i = 0; i < nb; i += 1024) {
			size_t k = nb - i < 1024 ? nb - i : 1024;
			rc = write_blocks(s, (const unsigned char *)p + i * bs, off / bs + i, k);
			if (rc)
				return rc;
		}
		p += nb * bs;
		off += nb * bs;
		len -= nb * bs;
	}
	if (len)
		return write_partial(s, p, off / bs, 0, len);
	return 0;
}

int rm_flush(struct rm_store *s)
{
	uint64_t deadline = deadline_of(s);

	/* Dead versions go too, so that a synced store holds one key per page. */
	gc_drain(s, deadline);
	if (!s->bops->flush)
		return 0;
	return s->bops->flush(s->be, deadline);
}

int rm_ctl(struct rm_store *s, const char *key, const char *value)
{
	if (!strcmp(key, "timeout") && value) {
		uint32_t ms = 0;
		int rc = parse_ms(&s->cfg, key, value, &ms, 1, 3600000);
		if (!rc)
			__atomic_store_n(&s->cfg.timeout_ms, ms, __ATOMIC_RELAXED);
		return rc;
	}
	if (!strcmp(key, "reset_stats") && !value) {
		_Atomic uint64_t *c = (_Atomic uint64_t *)&s->ctr;
		for (size_t i = 0; i < sizeof s->ctr / sizeof *c; i++)
			atomic_store_explicit(&c[i], 0, memory_order_relaxed);
		return 0;
	}
	return hm__error(-EINVAL, "%s: unknown control '%s' (known: timeout=MS, reset_stats)",
			 s->cfg.what, key);
}

/* ---------------------------------------------------------- public stats */

int hm_remote_stats(const struct hm_store *store, struct hm_remote_stats *st)
{
	const struct rm_store *s;
	const char *sc;

	if (!store || !st)
		return hm__error(-EINVAL, "hm_remote_stats: NULL argument");
	sc = store->ops->scheme;
	if (strcmp(sc, "redis") && strcmp(sc, "redis-cluster") && strcmp(sc, "memcached"))
		return hm__error(-EINVAL, "hm_remote_stats: '%s' is not a remote store", sc);
	s = store->priv;
	memset(st, 0, sizeof *st);
#define RM_X(f) st->f = atomic_load(&s->ctr.f);
	RM_X(round_trips) RM_X(gets) RM_X(sets) RM_X(dels) RM_X(zero_fills) RM_X(prefetched)
	RM_X(prefetch_hits) RM_X(retries) RM_X(reconnects) RM_X(redirects) RM_X(refreshes)
	RM_X(waits) RM_X(integrity_errors) RM_X(timeouts) RM_X(repairs) RM_X(leaked)
#undef RM_X
	snprintf(st->prefix, sizeof st->prefix, "%s", s->prefix);
	return 0;
}
