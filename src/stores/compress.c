/* SPDX-License-Identifier: MIT */
/*
 * lz4: and zstd: - stores that keep pages compressed in a RAM pool, the
 * user-space zswap/zram. Both schemes share this file; only the codec
 * differs.
 *
 *   lz4:[SIZE][,level=N][,accel=N][,space=SIZE]
 *   zstd:[SIZE][,level=N][,space=SIZE]
 *
 * lz4's level 0 (the default) is LZ4's fast mode, where accel trades ratio
 * for speed; levels 1 to 12 are LZ4HC's, slower to compress and denser, as
 * fast to decompress. zstd's levels are its own, 0 meaning its default (3).
 *
 * Without SIZE the pool may take a fifth of the machine's RAM (zswap's
 * default limit).
 *
 * SIZE is the RAM the pool may use: what the tier costs. `space` is the
 * address space the store offers (default 4 x SIZE), since compressed pages
 * take less room than their address range; a write that does not fit in the
 * pool fails with -ENOSPC and leaves the old contents. Each 4 KiB page is
 * compressed on its own. A page of zeros takes no pool room; a page that
 * does not compress below 4 KiB - 64 bytes is kept raw (an incompressible
 * page costs one copy, not a failed compression on every read).
 *
 * The pool is one MAP_NORESERVE mapping of SIZE bytes carved into objects
 * of 64-byte classes (64 .. 4096) with a free list per class: the write path
 * may run inside eviction on the fault path (even in a SIGBUS handler), so
 * nothing here calls malloc after open. Compression contexts are made at
 * open, a few of them, each behind its own lock, with all the memory any
 * level will need (zstd's are static contexts on a workspace of their own,
 * so that no level, whenever it is set, makes them allocate).
 */
#include <lz4.h>
#include <lz4hc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_initStaticCCtx: exported by Debian's libzstd */
#include <zstd.h>

#include "core/internal.h"
#include "core/tier.h"
#include "stores/paged.h"


#define ZPAGE 4096u
_Static_assert(ZPAGE == HM_PAGED_SIZE, "the read loop works in pages of this size");
#define ZUNIT 64u
#define NCLASS (ZPAGE / ZUNIT) /* class c holds objects of c * 64 bytes, 1..64 */
#define NCTX 8
#define NSTRIPE 64
#define NONE UINT32_MAX

enum { K_ABSENT = 0, K_ZERO, K_COMP, K_RAW };

/* One page of the address space: where its bytes are in the pool. */
struct zent {
	uint32_t obj;  /* pool offset / 64 */
	uint16_t len;  /* compressed bytes (K_COMP) */
	uint8_t kind;
	uint8_t cls;   /* object class */
};

struct zctx {
	pthread_mutex_t lock;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	void *wksp; /* the zstd context's workspace, or room for either LZ4 state */
	char out[ZPAGE * 2]; /* compression output, larger than any bound */
};

struct zstore {
	bool zstd;
	/* Atomic: hm_store_ctl() changes them while evictions compress. */
	_Atomic int level; /* zstd level; lz4: 0 fast, else the LZ4HC level */
	_Atomic int accel; /* lz4 acceleration (level 0) */
	uint64_t cap, space, npages;
	char *pool;
	struct zent *map;
	pthread_mutex_t pool_lock;
	uint64_t top;            /* bytes carved from the pool */
	uint32_t free_head[NCLASS + 1];
	pthread_mutex_t stripe[NSTRIPE];
	struct zctx *ctx;
	_Atomic unsigned next_ctx;
	/* Contents now, under pool_lock. */
	uint64_t used;           /* bytes of live objects */
	uint64_t payload;        /* compressed bytes of live K_COMP pages */
	uint64_t n_comp, n_raw, n_zero;
};

static uint64_t *obj_next(struct zstore *z, uint32_t obj)
{
	return (uint64_t *)(z->pool + (uint64_t)obj * ZUNIT);
}

/*
 * Takes an object of class cls (or a larger free one: better a little waste
 * than a failed write). Returns its unit index, or NONE when the pool is
 * full. Caller holds pool_lock.
 */
static uint32_t pool_alloc(struct zstore *z, unsigned cls, unsigned *got)
{
	for (unsigned c = cls; c <= NCLASS; c++) {
		uint32_t h = z->free_head[c];
		if (h == NONE)
			continue;
		z->free_head[c] = (uint32_t)*obj_next(z, h);
		*got = c;
		return h;
	}
	uint64_t bytes = (uint64_t)cls * ZUNIT;
	if (z->top + bytes > z->cap)
		return NONE;
	uint32_t obj = (uint32_t)(z->top / ZUNIT);
	z->top += bytes;
	*got = cls;
	return obj;
}

static void pool_free(struct zstore *z, uint32_t obj, unsigned cls)
{
	*obj_next(z, obj) = z->free_head[cls];
	z->free_head[cls] = obj;
}

static struct zctx *ctx_get(struct zstore *z)
{
	unsigned start = atomic_fetch_add_explicit(&z->next_ctx, 1, memory_order_relaxed);

	for (unsigned i = 0; i < NCTX; i++) {
		struct zctx *c = &z->ctx[(start + i) % NCTX];
		if (!pthread_mutex_trylock(&c->lock))
			return c;
	}
	struct zctx *c = &z->ctx[start % NCTX];
	pthread_mutex_lock(&c->lock);
	return c;
}

/*
 * The workspace a zstd context needs to compress a 4 KiB page at any level.
 * A context made static on it never calls malloc(): compression runs on the
 * eviction path, which may be inside the SIGBUS handler of sigbus fault
 * mode, where malloc() is not safe. Should a level ever need more, zstd
 * returns an error and the page is kept raw.
 */
static size_t zstd_wksp_size(void)
{
	size_t most = 0;

	for (int l = ZSTD_minCLevel(); l <= ZSTD_maxCLevel(); l = l < -1 ? -1 : l + 1) {
		size_t n = ZSTD_estimateCCtxSize_usingCParams(ZSTD_getCParams(l, ZPAGE, 0));
		if (n > most)
			most = n;
	}
	return most;
}

static void ctx_put(struct zctx *c)
{
	pthread_mutex_unlock(&c->lock);
}

static bool all_zero(const char *p)
{
	const uint64_t *q = (const uint64_t *)p;

	for (unsigned i = 0; i < ZPAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

/* Decompresses page pg into dst (4 KiB). Caller holds the page's stripe. */
static int get_page(struct zstore *z, uint64_t pg, char *dst)
{
	struct zent e = z->map[pg];
	const char *src = z->pool + (uint64_t)e.obj * ZUNIT;

	switch (e.kind) {
	case K_ABSENT:
	case K_ZERO:
		memset(dst, 0, ZPAGE);
		return 0;
	case K_RAW:
		memcpy(dst, src, ZPAGE);
		return 0;
	}
	if (z->zstd) {
		struct zctx *c = ctx_get(z);
		size_t n = ZSTD_decompressDCtx(c->dctx, dst, ZPAGE, src, e.len);
		ctx_put(c);
		if (ZSTD_isError(n) || n != ZPAGE)
			return -EIO;
		return 0;
	}
	if (LZ4_decompress_safe(src, dst, (int)e.len, (int)ZPAGE) != (int)ZPAGE)
		return -EIO;
	return 0;
}

/* Releases page pg's object. Caller holds the stripe. */
static void drop_page(struct zstore *z, uint64_t pg)
{
	struct zent *e = &z->map[pg];

	pthread_mutex_lock(&z->pool_lock);
	switch (e->kind) {
	case K_ZERO:
		z->n_zero--;
		break;
	case K_RAW:
		pool_free(z, e->obj, e->cls);
		z->used -= (uint64_t)e->cls * ZUNIT;
		z->n_raw--;
		break;
	case K_COMP:
		pool_free(z, e->obj, e->cls);
		z->used -= (uint64_t)e->cls * ZUNIT;
		z->payload -= e->len;
		z->n_comp--;
		break;
	}
	pthread_mutex_unlock(&z->pool_lock);
	e->kind = K_ABSENT;
}

/*
 * Stores a whole page. The new object is taken before the old one is
 * released, so a write that does not fit leaves the old contents.
 * Caller holds the stripe.
 */
static int put_page(struct zstore *z, uint64_t pg, const char *src)
{
	struct zent ne = { 0 };
	struct zctx *c = NULL;
	const char *data = src;
	size_t n = ZPAGE;
	unsigned got;

	if (all_zero(src)) {
		ne.kind = K_ZERO;
	} else {
		c = ctx_get(z);
		if (z->zstd) {
			size_t k = ZSTD_compressCCtx(c->cctx, c->out, sizeof c->out, src, ZPAGE, z->level);
			n = ZSTD_isError(k) ? ZPAGE : k;
		} else {
			int k = z->level ? LZ4_compress_HC_extStateHC(c->wksp, src, c->out,
								      (int)ZPAGE, (int)sizeof c->out,
								      z->level)
					 : LZ4_compress_fast_extState(c->wksp, src, c->out,
								      (int)ZPAGE, (int)sizeof c->out,
								      z->accel);
			n = k > 0 ? (size_t)k : ZPAGE;
		}
		if (n > ZPAGE - ZUNIT) {
			ne.kind = K_RAW;
			n = ZPAGE;
		} else {
			ne.kind = K_COMP;
			data = c->out;
		}
		ne.len = (uint16_t)(ne.kind == K_COMP ? n : 0);
	}
	pthread_mutex_lock(&z->pool_lock);
	if (ne.kind != K_ZERO) {
		unsigned cls = (unsigned)((n + ZUNIT - 1) / ZUNIT);
		ne.obj = pool_alloc(z, cls, &got);
		if (ne.obj == NONE) {
			pthread_mutex_unlock(&z->pool_lock);
			if (c)
				ctx_put(c);
			return -ENOSPC;
		}
		ne.cls = (uint8_t)got;
		z->used += (uint64_t)got * ZUNIT;
		if (ne.kind == K_COMP) {
			z->payload += n;
			z->n_comp++;
		} else {
			z->n_raw++;
		}
	} else {
		z->n_zero++;
	}
	pthread_mutex_unlock(&z->pool_lock);
	if (ne.kind != K_ZERO)
		memcpy(z->pool + (uint64_t)ne.obj * ZUNIT, data, n);
	if (c)
		ctx_put(c);
	drop_page(z, pg);
	z->map[pg] = ne;
	return 0;
}

static pthread_mutex_t *stripe(struct zstore *z, uint64_t pg)
{
	return &z->stripe[pg % NSTRIPE];
}

static pthread_mutex_t *z_lock(void *ctx, uint64_t pg)
{
	return stripe(ctx, pg);
}

static int z_get(void *ctx, uint64_t pg, char *dst)
{
	return get_page(ctx, pg, dst);
}

static int z_read(void *priv, void *buf, size_t len, uint64_t off)
{
	static const struct hm_paged_ops ops = { z_lock, z_get };
	struct zstore *z = priv;

	return hm__paged_read(&ops, z, z->npages, buf, len, off);
}

static int z_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	struct zstore *z = priv;
	const char *in = buf;
	int rc = 0;

	if (off >= z->space || len > z->space - off)
		return -ENOSPC;
	while (len) {
		uint64_t pg = off / ZPAGE;
		size_t at = (size_t)(off % ZPAGE), n = ZPAGE - at < len ? ZPAGE - at : len;

		pthread_mutex_lock(stripe(z, pg));
		if (at == 0 && n == ZPAGE) {
			rc = put_page(z, pg, in);
		} else {
			/* A partial page: merge with what is there. */
			char page[ZPAGE] __attribute__((aligned(64)));
			rc = get_page(z, pg, page);
			if (!rc) {
				memcpy(page + at, in, n);
				rc = put_page(z, pg, page);
			}
		}
		pthread_mutex_unlock(stripe(z, pg));
		if (rc)
			return rc;
		in += n;
		off += n;
		len -= n;
	}
	return 0;
}

void hm__zstore_discard(void *priv, uint64_t off, size_t len)
{
	struct zstore *z = priv;

	for (uint64_t pg = off / ZPAGE; pg < (off + len + ZPAGE - 1) / ZPAGE && pg < z->npages; pg++) {
		pthread_mutex_lock(stripe(z, pg));
		drop_page(z, pg);
		pthread_mutex_unlock(stripe(z, pg));
	}
}

void hm__zstore_info(void *priv, struct hm_tier_stats *st)
{
	struct zstore *z = priv;

	pthread_mutex_lock(&z->pool_lock);
	st->capacity_bytes = z->cap;
	st->used_bytes = z->used;
	st->compressed_pages = z->n_comp;
	st->raw_pages = z->n_raw;
	st->zero_pages = z->n_zero;
	st->pages = z->n_comp + z->n_raw + z->n_zero;
	st->compressed_bytes = z->payload;
	pthread_mutex_unlock(&z->pool_lock);
}

struct zopts {
	struct zstore *z;
	bool has_space;
};

static int z_opt(void *ctx, const char *k, const char *v)
{
	struct zopts *o = ctx;
	struct zstore *z = o->z;
	const char *name = z->zstd ? "zstd" : "lz4";
	uint64_t u;

	if (z->zstd && !strcmp(k, "level")) {
		char *end;
		long l = strtol(v, &end, 10);
		if (!*v || *end || l < ZSTD_minCLevel() || l > ZSTD_maxCLevel())
			return hm__error(-EINVAL, "zstd store: level='%s' is not a level from %d to "
						  "%d",
					 v, ZSTD_minCLevel(), ZSTD_maxCLevel());
		z->level = (int)l;
		return 0;
	}
	if (!z->zstd && !strcmp(k, "level")) {
		if (hm_parse_u64(v, &u) || u > LZ4HC_CLEVEL_MAX)
			return hm__error(-EINVAL, "lz4 store: level='%s' is not from 0 (fast) to %d "
						  "(LZ4HC)",
					 v, LZ4HC_CLEVEL_MAX);
		z->level = (int)u;
		return 0;
	}
	if (!z->zstd && !strcmp(k, "accel")) {
		if (hm_parse_u64(v, &u) || u < 1 || u > 65537)
			return hm__error(-EINVAL, "lz4 store: accel='%s' is not from 1 to 65537", v);
		z->accel = (int)u;
		return 0;
	}
	if (!strcmp(k, "space")) {
		if (hm_parse_size(v, &u) || u < ZPAGE || u > (1ull << 44))
			return hm__error(-EINVAL, "%s store: space='%s' is not a size from 4K to 16T",
					 name, v);
		z->space = u & ~(uint64_t)(ZPAGE - 1);
		o->has_space = true;
		return 0;
	}
	return hm__error(-EINVAL, "%s store: unknown option '%s' (known: %s, space)", name, k,
			 z->zstd ? "level" : "level, accel");
}

static void z_close(void *priv)
{
	struct zstore *z = priv;

	if (z->ctx) {
		for (int i = 0; i < NCTX; i++) {
			ZSTD_freeDCtx(z->ctx[i].dctx); /* the static CCtx lives in wksp */
			free(z->ctx[i].wksp);
			pthread_mutex_destroy(&z->ctx[i].lock);
		}
		free(z->ctx);
	}
	if (z->pool && z->pool != MAP_FAILED)
		munmap(z->pool, z->cap);
	if (z->map && z->map != MAP_FAILED)
		munmap(z->map, z->npages * sizeof *z->map);
	free(z);
}

static int z_open(void **priv, const char *rest, struct hm_store_info *info, bool zstd)
{
	const char *name = zstd ? "zstd" : "lz4";
	const char *comma = strchr(rest, ',');
	size_t n = comma ? (size_t)(comma - rest) : strlen(rest);
	struct zopts o = { 0 };
	char sizebuf[64];
	struct zstore *z;
	uint64_t size;
	int rc;

	if (n >= sizeof sizebuf)
		return hm__error(-EINVAL, "%s store: '%.*s' is not a pool size", name, (int)n, rest);
	memcpy(sizebuf, rest, n);
	sizebuf[n] = 0;
	if (n == 0 || strchr(sizebuf, '=')) {
		/*
		 * No size: a fifth of the machine's RAM, zswap's default pool
		 * limit. The pool is MAP_NORESERVE and costs only what it holds.
		 */
		long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
		if (pages <= 0 || psz <= 0)
			return hm__error(-EINVAL, "%s store: give a pool size (%s:1G)", name, name);
		size = (uint64_t)pages * (uint64_t)psz / 5;
		if (size > (1ull << 40))
			size = 1ull << 40;
		snprintf(sizebuf, sizeof sizebuf, "%llu", (unsigned long long)size);
		if (n)
			comma = rest - 1; /* the whole rest is options */
	} else if (hm_parse_size(sizebuf, &size) || size < 64 * 1024)
		return hm__error(-EINVAL, "%s store: '%s' is not a pool size of at least 64K", name,
				 sizebuf);
	if (size > (1ull << 40))
		return hm__error(-EINVAL, "%s store: pool size %s is larger than 1 TiB", name, sizebuf);
	if (comma && !comma[1])
		return hm__error(-EINVAL, "%s store: empty option after ',' in '%s'", name, rest);
	z = calloc(1, sizeof *z);
	if (!z)
		return hm__error(-ENOMEM, "out of memory");
	z->zstd = zstd;
	z->level = zstd ? 1 : 0;
	z->accel = 1;
	z->cap = size & ~(uint64_t)(ZUNIT - 1);
	o.z = z;
	rc = hm_opts_parse(comma ? comma + 1 : "", z_opt, &o);
	if (rc) {
		free(z);
		return rc;
	}
	if (!o.has_space)
		z->space = 4 * z->cap & ~(uint64_t)(ZPAGE - 1);
	z->npages = z->space / ZPAGE;
	z->pool = mmap(NULL, z->cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	z->map = mmap(NULL, z->npages * sizeof *z->map, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	z->ctx = calloc(NCTX, sizeof *z->ctx);
	if (z->pool == MAP_FAILED || z->map == MAP_FAILED || !z->ctx) {
		z_close(z);
		return hm__error(-ENOMEM, "%s store: cannot reserve a pool of %s", name, sizebuf);
	}
	pthread_mutex_init(&z->pool_lock, NULL);
	for (int i = 0; i < NSTRIPE; i++)
		pthread_mutex_init(&z->stripe[i], NULL);
	for (unsigned c = 0; c <= NCLASS; c++)
		z->free_head[c] = NONE;
	size_t wksp = zstd ? zstd_wksp_size() : 0;
	for (int i = 0; i < NCTX; i++) {
		struct zctx *c = &z->ctx[i];
		pthread_mutex_init(&c->lock, NULL);
		if (zstd) {
			c->wksp = malloc(wksp);
			c->cctx = c->wksp ? ZSTD_initStaticCCtx(c->wksp, wksp) : NULL;
			c->dctx = ZSTD_createDCtx();
			if (!c->cctx || !c->dctx)
				goto nomem;
		} else {
			int fast = LZ4_sizeofState(), hc = LZ4_sizeofStateHC();
			c->wksp = malloc((size_t)(fast > hc ? fast : hc));
			if (!c->wksp)
				goto nomem;
		}
	}
	memset(info, 0, sizeof *info);
	info->size = z->space;
	info->props = HM_PROP_COHERENT;
	info->align = ZPAGE;
	*priv = z;
	return 0;
nomem:
	z_close(z);
	return hm__error(-ENOMEM, "%s store: cannot create compression contexts", name);
}

static int lz4_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return z_open(priv, rest, info, false);
}

static int zstd_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	return z_open(priv, rest, info, true);
}

/*
 * "level=N" or (lz4) "accel=N" changes the codec setting for later writes.
 * The contexts are ready for every level, so the new one may be used the
 * moment it is stored.
 */
static int z_ctl(void *priv, const char *key, const char *value)
{
	struct zstore *z = priv;
	struct zopts o = { .z = z };

	if (!value || strcmp(key, "space") == 0)
		return hm__error(-EINVAL, "%s store: control '%s' needs a value (known: %s)",
				 z->zstd ? "zstd" : "lz4", key, z->zstd ? "level=N" : "level=N, accel=N");
	return z_opt(&o, key, value);
}

const struct hm_store_ops hm__store_lz4 = {
	.abi = HM_STORE_ABI,
	.scheme = "lz4",
	.summary = "pages compressed with LZ4 (level=N: LZ4HC) in a RAM pool (zswap-like tier)",
	.open = lz4_open,
	.close = z_close,
	.read = z_read,
	.write = z_write,
	.ctl = z_ctl,
};

const struct hm_store_ops hm__store_zstd = {
	.abi = HM_STORE_ABI,
	.scheme = "zstd",
	.summary = "pages compressed with Zstandard (level=N) in a RAM pool",
	.open = zstd_open,
	.close = z_close,
	.read = z_read,
	.write = z_write,
	.ctl = z_ctl,
};
