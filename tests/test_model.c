/* SPDX-License-Identifier: MIT */
/*
 * A model-based random tester: random sequences of API calls against
 * single-store regions, every byte checked against a shadow copy of the
 * store in ordinary memory.
 *
 * A *world* is one store (file:, pmem: on a tmpfs file, or mem:), its
 * shadow (what every byte of the store must read as through a mapping),
 * and the mappings of it that are alive: one at first, more after a piece
 * of one was unmapped and its file range mapped again elsewhere. Mappings of
 * one world never overlap in the store, so the shadow is exact for all of
 * them. Operations, chosen at random: writes of bytes, words and whole
 * region pages; reads compared with the shadow; hm_sync()/hmsync() (MS_SYNC,
 * MS_ASYNC, MS_INVALIDATE), after MS_SYNC the backing file read with
 * pread() and compared; hm_advise() with every advice; hm_prefault() with
 * and without a pin, hm_unpin(); hmunmap() of a piece (dropped from the
 * model, never touched again) and the piece's file range mapped elsewhere;
 * unmapping everything and mapping again; hm_cache_resize(); hm_protect()
 * and a probe that a write to a read-only page still faults, however the
 * page was evicted and brought back since; and a phase in
 * which a second thread reads and writes its own part of a mapping while
 * this one syncs, advises, prefaults, and unmaps pieces of other parts.
 *
 * Every run is fixed by HMMAP_TEST_SEED (default 1): the configuration of
 * each world (page size, policy, budget, mode, API) and every operation. A
 * mismatch prints the seed, the world, the operation's index and the last
 * operations before it. The fault mode, the default cache and the page size
 * of hmmap() are per process, so each page size runs in a forked child with
 * its own HMMAP_* settings, in both fault modes.
 *
 * To replay one failure: HMMAP_MODEL_CHILD=N (the child's index, 0-5) and
 * HMMAP_MODEL_WORLD=NAME (file-hmmap, mem-region, ...) run just that part of
 * the seed's run. HMMAP_MODEL_OPS=PERCENT scales the operation counts
 * (a loop over many seeds may run each shorter).
 *
 * Counts of operations bound the run, never time. Under sanitizers the
 * counts are smaller.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "model.h"

#define MAXMAPS 8

enum kind { K_FILE = 1, K_PMEM, K_MEM };

struct map {
	unsigned char *base;
	size_t len;          /* bytes mapped */
	uint64_t foff;       /* store offset of base */
	size_t npages;       /* region pages */
	uint8_t *gone;       /* per region page: unmapped by hmunmap() */
	uint8_t *ro;         /* per region page: read-only (hm_protect) */
	struct hm_region *r; /* hm_region_map() mappings; NULL for hmmap() ones */
};

struct world {
	const char *name;
	enum kind kind;
	int mode;      /* HM_CACHED, HM_HYBRID, HM_DIRECT */
	bool mmap_api; /* hmmap()/hmunmap()/hmsync() rather than hm_* */
	bool tmpfs;    /* the file on tmpfs (fast), not in the scratch directory */
	size_t ps;
	size_t size; /* the store's bytes */
	size_t budget;
	const char *policy;
	char path[512], uri[600];
	struct hm_store *store; /* hm_* worlds */
	struct hm_cache *cache; /* hm_* worlds */
	unsigned char *shadow;  /* what the store's bytes must read as */
	unsigned char *buf;     /* scratch of `size` bytes */
	struct map maps[MAXMAPS];
	int nmaps;
	bool pinned; /* a pin may be held */
	uint64_t rng, seed;
	unsigned op;
	struct model_hist hist;
	char err[400];
};

static uint64_t seed_arg = 1;
static unsigned ops_div = 1;

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

	va_start(ap, fmt);
	model_hist_vadd(&w->hist, w->op, fmt, ap);
	va_end(ap);
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
	printf("  world: %s uri %s mode %d %s page %zu budget %zu policy %s size %zu\n", w->name,
	       w->uri, w->mode, w->mmap_api ? "hmmap()" : "hm_*", w->ps, w->budget,
	       w->policy ? w->policy : "(default)", w->size);
	for (int i = 0; i < w->nmaps; i++)
		printf("  map %d: %p+%zu at store offset %llu\n", i, (void *)w->maps[i].base,
		       w->maps[i].len, (unsigned long long)w->maps[i].foff);
	printf("  last operations:\n");
	model_hist_print(&w->hist);
	fflush(stdout);
	return -1;
}

/* ---- mappings ---- */

static size_t map_pages(const struct world *w, size_t len)
{
	return model_pages(w->ps, len);
}

static size_t live_pages(const struct map *m)
{
	return model_live_pages(m->gone, m->npages);
}

/* Maps [foff, foff+len) of the store as map slot w->maps[w->nmaps]. */
static int map_add(struct world *w, uint64_t foff, size_t len)
{
	struct map *m = &w->maps[w->nmaps];
	int rc;

	memset(m, 0, sizeof *m);
	if (w->mmap_api) {
		void *p = hmmap(NULL, len, PROT_READ | PROT_WRITE, w->mode, w->uri, (off_t)foff);
		if (p == MAP_FAILED)
			return fail(w, "hmmap(%zu, %s, %llu): %s: %s", len, w->uri,
			            (unsigned long long)foff, strerror(errno), hm_errormsg());
		m->base = p;
	} else {
		rc = hm_region_map(&m->r, w->cache, w->store, foff, len, PROT_READ | PROT_WRITE,
		                   w->mode, w->ps);
		if (rc)
			return fail(w, "hm_region_map(%llu, %zu): %s: %s", (unsigned long long)foff,
			            len, strerror(-rc), hm_errormsg());
		m->base = hm_region_addr(m->r);
	}
	m->len = len;
	m->foff = foff;
	m->npages = map_pages(w, len);
	m->gone = calloc(m->npages, 1);
	m->ro = calloc(m->npages, 1);
	if (!m->gone || !m->ro)
		return fail(w, "out of memory");
	hist(w, "map %d: store %llu+%zu at %p", w->nmaps, (unsigned long long)foff, len,
	     (void *)m->base);
	w->nmaps++;
	return 0;
}

static void map_forget(struct world *w, int i)
{
	free(w->maps[i].gone);
	free(w->maps[i].ro);
	w->maps[i] = w->maps[--w->nmaps];
}

static int map_remove(struct world *w, int i)
{
	struct map *m = &w->maps[i];
	int rc;

	hist(w, "unmap map %d (%p+%zu)", i, (void *)m->base, m->len);
	if (m->r) {
		rc = hm_region_unmap(m->r);
		if (rc)
			return fail(w, "hm_region_unmap: %s: %s", strerror(-rc), hm_errormsg());
	} else {
		/* Whole, holes included: pages already unmapped are no error. */
		if (hmunmap(m->base, m->len))
			return fail(w, "hmunmap(%p, %zu): %s: %s", (void *)m->base, m->len,
			            strerror(errno), hm_errormsg());
	}
	map_forget(w, i);
	return 0;
}

/* A random live byte range of map m, at most max bytes, within one run of live pages. */
static bool pick_range(struct world *w, const struct map *m, size_t max, size_t *off, size_t *n)
{
	for (int tries = 0; tries < 16; tries++) {
		size_t pg = rndn(w, m->npages);
		if (m->gone[pg])
			continue;
		size_t o = pg * w->ps + rndn(w, w->ps);
		if (o >= m->len)
			o = m->len - 1 - rndn(w, m->len - pg * w->ps);
		size_t end = o;
		/* Extend over live pages. */
		while (end < m->len && !m->gone[end / w->ps])
			end = (end / w->ps + 1) * w->ps;
		if (end > m->len)
			end = m->len;
		size_t k = 1 + rndn(w, max);
		if (k > end - o)
			k = end - o;
		*off = o;
		*n = k;
		return true;
	}
	return false;
}

static void pick_span(struct world *w, const struct map *m, size_t *off, size_t *n)
{
	model_pick_span(&w->rng, m->len, off, n);
}

static bool span_holed(const struct world *w, const struct map *m, size_t off, size_t n)
{
	return model_span_holed(m->gone, m->npages, w->ps, off, n);
}

/* Whether [off, off+n) of m meets a page made read-only by hm_protect(). */
static bool span_ro(const struct world *w, const struct map *m, size_t off, size_t n)
{
	for (size_t pg = off / w->ps; pg * w->ps < off + n && pg < m->npages; pg++)
		if (m->ro[pg])
			return true;
	return false;
}

/* Compares m's live bytes [off, off+n) with the shadow. */
static int compare(struct world *w, const struct map *m, size_t off, size_t n, const char *what)
{
	const unsigned char *sh = w->shadow + m->foff;

	for (size_t pg = off / w->ps; pg * w->ps < off + n; pg++) {
		size_t a = pg * w->ps > off ? pg * w->ps : off;
		size_t b = (pg + 1) * w->ps < off + n ? (pg + 1) * w->ps : off + n;
		if (m->gone[pg])
			continue;
		memcpy(w->buf, m->base + a, b - a);
		long long bad = tu_cmp_mem(w->buf, sh + a, b - a);
		if (bad >= 0)
			return fail(w, "%s: map at %p byte %zu (store %llu) reads %#x, model %#x",
			            what, (void *)m->base, a + (size_t)bad,
			            (unsigned long long)(m->foff + a + (size_t)bad), w->buf[bad],
			            sh[a + (size_t)bad]);
	}
	return 0;
}

static int compare_all(struct world *w, const char *what)
{
	for (int i = 0; i < w->nmaps; i++)
		if (compare(w, &w->maps[i], 0, w->maps[i].len, what))
			return -1;
	return 0;
}

/* After MS_SYNC of [off, off+n) of m: the backing file holds the model there (live pages). */
static int compare_file(struct world *w, const struct map *m, size_t off, size_t n,
                        size_t skip_from, size_t skip_to)
{
	int fd;

	if (w->kind == K_MEM)
		return 0;
	if (off + n > m->len)
		n = m->len - off;
	fd = open(w->path, O_RDONLY);
	if (fd < 0)
		return fail(w, "open %s: %s", w->path, strerror(errno));
	if (tu_read_all(fd, w->buf, n, (off_t)(m->foff + off))) {
		close(fd);
		return fail(w, "pread %s: short", w->path);
	}
	close(fd);
	for (size_t i = 0; i < n; i++) {
		size_t pg = (off + i) / w->ps;
		if (m->gone[pg] || (pg >= skip_from && pg < skip_to))
			continue;
		if (w->buf[i] != w->shadow[m->foff + off + i])
			return fail(w, "after MS_SYNC the file's byte %llu is %#x, model %#x",
			            (unsigned long long)(m->foff + off + i), w->buf[i],
			            w->shadow[m->foff + off + i]);
	}
	return 0;
}

/* ---- the operations ---- */

static struct map *pick_map(struct world *w, int *idx)
{
	int i = (int)rndn(w, (size_t)w->nmaps);

	if (idx)
		*idx = i;
	return &w->maps[i];
}

static int op_write(struct world *w, int how)
{
	struct map *m = pick_map(w, NULL);
	size_t off, n;

	if (how == 2) { /* a whole region page */
		size_t pg = rndn(w, m->npages);
		if (m->gone[pg])
			return 0;
		off = pg * w->ps;
		n = off + w->ps <= m->len ? w->ps : m->len - off;
	} else if (!pick_range(w, m, how ? 8 : 300, &off, &n)) {
		return 0;
	}
	if ((how == 1 && n < 8) || span_ro(w, m, off & ~(size_t)7, n + (off & 7)))
		return 0;
	if (how == 1) {
		uint64_t v = rnd(w);
		if (rndn(w, 2))
			off &= ~(size_t)7;
		n = 8;
		hist(w, "write word %#llx at %p+%zu", (unsigned long long)v, (void *)m->base, off);
		memcpy(w->shadow + m->foff + off, &v, 8);
		if (!(off & 7))
			*(volatile uint64_t *)(m->base + off) = v;
		else
			memcpy(m->base + off, &v, 8);
		return 0;
	}
	tu_fill_bytes(w->shadow + m->foff + off, n, rnd(w));
	hist(w, "write %zu bytes at %p+%zu", n, (void *)m->base, off);
	memcpy(m->base + off, w->shadow + m->foff + off, n);
	return 0;
}

static int op_read(struct world *w)
{
	struct map *m = pick_map(w, NULL);
	size_t off, n;

	if (!pick_range(w, m, 2 * w->ps, &off, &n))
		return 0;
	hist(w, "read %zu bytes at %p+%zu", n, (void *)m->base, off);
	return compare(w, m, off, n, "read");
}

static const char *sync_name(int flags)
{
	switch (flags) {
	case MS_SYNC:
		return "MS_SYNC";
	case MS_ASYNC:
		return "MS_ASYNC";
	case MS_SYNC | MS_INVALIDATE:
		return "MS_SYNC|MS_INVALIDATE";
	case MS_ASYNC | MS_INVALIDATE:
		return "MS_ASYNC|MS_INVALIDATE";
	case MS_INVALIDATE:
		return "MS_INVALIDATE";
	}
	return "?";
}

/* hm_sync()/hmsync() as 0 / -errno. */
static int do_sync(struct world *w, void *a, size_t n, int flags)
{
	if (w->mmap_api)
		return hmsync(a, n, flags) ? -errno : 0;
	return hm_sync(a, n, flags);
}

static int op_sync(struct world *w, const struct map *m, size_t skip_from, size_t skip_to)
{
	static const int fl[] = {
	    MS_SYNC,      MS_SYNC, MS_ASYNC, MS_SYNC | MS_INVALIDATE, MS_ASYNC | MS_INVALIDATE,
	    MS_INVALIDATE};
	int flags = fl[rndn(w, sizeof fl / sizeof fl[0])];
	size_t off, n;
	int rc, want;

	pick_span(w, m, &off, &n);
	want = span_holed(w, m, off, n) ? -ENOMEM : 0;
	hist(w, "sync %p+%zu %s", (void *)(m->base + off), n, sync_name(flags));
	rc = do_sync(w, m->base + off, n, flags);
	if (rc != want)
		return fail(w, "sync of %p+%zu (%s) returned %d (%s), expected %d",
		            (void *)(m->base + off), n, sync_name(flags), rc, hm_errormsg(), want);
	if (!rc && (flags & MS_SYNC))
		return compare_file(w, m, off, n, skip_from, skip_to);
	return 0;
}

static int op_advise(struct world *w, const struct map *m)
{
	static const int adv[] = {HM_ADV_NORMAL,   HM_ADV_RANDOM,   HM_ADV_SEQUENTIAL,
	                          HM_ADV_WILLNEED, HM_ADV_DONTNEED, HM_ADV_NOREUSE};
	int a = adv[rndn(w, sizeof adv / sizeof adv[0])];
	size_t off, n;
	int rc, want;

	pick_span(w, m, &off, &n);
	want = span_holed(w, m, off, n) ? -ENOMEM : 0;
	hist(w, "advise %p+%zu %d", (void *)(m->base + off), n, a);
	rc = hm_advise(m->base + off, n, a);
	if (rc != want)
		return fail(w, "hm_advise(%p, %zu, %d) returned %d (%s), expected %d",
		            (void *)(m->base + off), n, a, rc, hm_errormsg(), want);
	return 0;
}

/* The cache's budget now (hm_cache_resize() changes it). */
static size_t cur_budget(struct world *w)
{
	struct hm_cache *c = w->cache;

	if (!c && hm_cache_default(&c))
		return 0;
	return hm_cache_budget(c);
}

static int op_prefault(struct world *w, const struct map *m, bool may_pin)
{
	int flags = may_pin && rndn(w, 2) ? HM_PREFAULT_PIN : 0;
	size_t off, n;
	int rc;

	pick_span(w, m, &off, &n);
	bool holed = span_holed(w, m, off, n);
	size_t pages = map_pages(w, off % w->ps + n);
	rc = hm_prefault(m->base + off, n, flags);
	hist(w, "prefault %p+%zu%s: %d", (void *)(m->base + off), n, flags ? " PIN" : "", rc);
	if (holed && rc != -ENOMEM)
		return fail(w, "hm_prefault of a range with a hole returned %d, expected %d", rc,
		            -ENOMEM);
	if (holed)
		return 0;
	if (rc == -EACCES && span_ro(w, m, off, n))
		return 0; /* a hybrid page that is read-only cannot move into DRAM */
	if (rc == 0 && flags)
		w->pinned = true;
	if (rc == 0 || rc == -ENOMEM) {
		/* A plain prefault within the budget, with no pins about, must succeed. */
		size_t budget = cur_budget(w);
		if (rc && !flags && !w->pinned && w->mode == HM_CACHED && pages * w->ps <= budget)
			return fail(w, "hm_prefault(%p, %zu) of %zu pages, budget %zu: %s",
			            (void *)(m->base + off), n, pages, budget, hm_errormsg());
		return 0;
	}
	return fail(w, "hm_prefault(%p, %zu, %d) returned %d (%s)", (void *)(m->base + off), n,
	            flags, rc, hm_errormsg());
}

static int unpin_map(struct world *w, const struct map *m)
{
	for (size_t pg = 0; pg < m->npages;) {
		if (m->gone[pg]) {
			pg++;
			continue;
		}
		size_t k = 1;
		while (pg + k < m->npages && !m->gone[pg + k])
			k++;
		size_t n = (pg + k) * w->ps > m->len ? m->len - pg * w->ps : k * w->ps;
		int rc = hm_unpin(m->base + pg * w->ps, n);
		if (rc)
			return fail(w, "hm_unpin(%p, %zu): %d (%s)", (void *)(m->base + pg * w->ps),
			            n, rc, hm_errormsg());
		pg += k;
	}
	return 0;
}

static int op_unpin(struct world *w, const struct map *m)
{
	size_t off, n;
	int rc, want;

	if (rndn(w, 3) == 0) {
		hist(w, "unpin every live part of %p", (void *)m->base);
		if (unpin_map(w, m))
			return -1;
		w->pinned = false;
		for (int i = 0; i < w->nmaps; i++)
			if (&w->maps[i] != m)
				w->pinned = true;
		return 0;
	}
	pick_span(w, m, &off, &n);
	want = span_holed(w, m, off, n) ? -ENOMEM : 0;
	hist(w, "unpin %p+%zu", (void *)(m->base + off), n);
	rc = hm_unpin(m->base + off, n);
	if (rc != want)
		return fail(w, "hm_unpin(%p, %zu) returned %d (%s), expected %d",
		            (void *)(m->base + off), n, rc, hm_errormsg(), want);
	return 0;
}

/*
 * hmunmap() of 1-3 region pages of map i (never all that is left of an
 * hm_region_map() region, which hm_region_unmap() ends); then, maybe, the
 * piece's store range is mapped elsewhere and must read as the model.
 */
static int op_punch(struct world *w, int i, size_t keep_from, size_t keep_to)
{
	struct map *m = &w->maps[i];
	size_t pg = rndn(w, m->npages), k = 1 + rndn(w, 3);
	size_t n, gone = 0;

	if (pg + k > m->npages)
		k = m->npages - pg;
	if (pg < keep_to && pg + k > keep_from)
		return 0;
	for (size_t j = pg; j < pg + k; j++)
		gone += !m->gone[j];
	if (m->r && gone >= live_pages(m))
		return 0;
	n = k * w->ps;
	if (pg * w->ps + n > m->len && rndn(w, 2))
		n = m->len - pg * w->ps; /* rounded up to the region's page */
	hist(w, "hmunmap %p+%zu (pages %zu-%zu of map %d)", (void *)(m->base + pg * w->ps), n, pg,
	     pg + k - 1, i);
	if (hmunmap(m->base + pg * w->ps, n))
		return fail(w, "hmunmap(%p, %zu): %s: %s", (void *)(m->base + pg * w->ps), n,
		            strerror(errno), hm_errormsg());
	memset(m->gone + pg, 1, k);
	uint64_t foff = m->foff + pg * w->ps;
	size_t len = pg * w->ps + k * w->ps > m->len ? m->len - pg * w->ps : k * w->ps;
	if (!live_pages(m))
		map_forget(w, i); /* that was the mapping's last part: it is gone */
	/* Only a piece that was all mapped: pieces of it may be mapped elsewhere already. */
	if (keep_to > keep_from || w->nmaps >= MAXMAPS || gone < k || rndn(w, 3) == 0)
		return 0;
	/* The piece's store range, mapped again elsewhere. */
	int slot = w->nmaps;
	if (map_add(w, foff, len))
		return -1;
	return compare(w, &w->maps[slot], 0, len, "piece mapped again after hmunmap");
}

/* Unmaps everything, maps a random store range again, compares. */
static int op_remap_all(struct world *w)
{
	while (w->nmaps)
		if (map_remove(w, 0))
			return -1;
	w->pinned = false;
	size_t pages = map_pages(w, w->size), first = rndn(w, pages / 4 + 1);
	size_t k = pages - first - rndn(w, pages / 4 + 1);
	size_t len = k * w->ps;
	if (len && rndn(w, 3) == 0)
		len -= rndn(w, 2) ? 4096 * rndn(w, w->ps / 4096) : rndn(w, 4095) + 1;
	if (!len)
		len = 4096;
	if (map_add(w, (uint64_t)first * w->ps, len))
		return -1;
	return compare_all(w, "mapped again");
}

static int op_resize(struct world *w)
{
	size_t b;
	int rc;

	if (w->mmap_api)
		return 0;
	b = w->ps * (2 + rndn(w, w->budget / w->ps - 1));
	if (b > w->budget)
		b = w->budget;
	hist(w, "hm_cache_resize %zu", b);
	rc = hm_cache_resize(w->cache, b);
	if (rc && !(w->pinned && rc == -ENOMEM) && rc != -EBUSY)
		return fail(w, "hm_cache_resize(%zu): %d (%s)", b, rc, hm_errormsg());
	return 0;
}

static int op_protect(struct world *w, struct map *m)
{
	int prot = rndn(w, 2) ? PROT_READ : PROT_READ | PROT_WRITE;
	size_t off, n;
	int rc, want;

	pick_span(w, m, &off, &n);
	want = span_holed(w, m, off, n) ? -ENOMEM : 0;
	hist(w, "protect %p+%zu %s", (void *)(m->base + off), n,
	     prot == PROT_READ ? "PROT_READ" : "PROT_READ|PROT_WRITE");
	rc = hm_protect(m->base + off, n, prot);
	if (rc != want)
		return fail(w, "hm_protect(%p, %zu, %d) returned %d (%s), expected %d",
		            (void *)(m->base + off), n, prot, rc, hm_errormsg(), want);
	for (size_t pg = off / w->ps; !rc && pg * w->ps < off + n && pg < m->npages; pg++)
		m->ro[pg] = prot == PROT_READ;
	return 0;
}

static sigjmp_buf *volatile probe_jb;
static void *volatile probe_addr;

/* A write to a read-only page must be SIGSEGV, however the page came and went. */
static int op_probe(struct world *w, struct map *m)
{
	size_t pg = rndn(w, m->npages);
	sigjmp_buf jb;

	if (m->gone[pg] || !m->ro[pg])
		return 0;
	size_t n = (pg + 1) * w->ps <= m->len ? w->ps : m->len - pg * w->ps;
	volatile unsigned char *q = m->base + pg * w->ps + rndn(w, n);
	unsigned char v = *q;
	hist(w, "probe a write to read-only %p", (void *)q);
	if (v != w->shadow[m->foff + (size_t)((unsigned char *)q - m->base)])
		return fail(w, "read-only byte at %p reads %#x, model %#x", (void *)q, v,
		            w->shadow[m->foff + (size_t)((unsigned char *)q - m->base)]);
	probe_addr = (void *)q;
	if (!sigsetjmp(jb, 1)) {
		probe_jb = &jb;
		*q = v; /* the same value: harmless if it lands */
		probe_jb = NULL;
		return fail(w, "a write to %p, read-only by hm_protect(), did not fault",
		            (void *)q);
	}
	probe_jb = NULL;
	return 0;
}

/* ---- the concurrent phase ---- */

struct partner {
	struct world *w;
	const struct map *m;
	size_t from, to; /* bytes of m it owns */
	unsigned ops;
	uint64_t rng;
	char err[300];
};

static void *partner_main(void *arg)
{
	struct partner *p = arg;
	const struct map *m = p->m;
	unsigned char *sh = p->w->shadow + m->foff;
	unsigned char buf[512];
	size_t span = p->to - p->from;

	for (unsigned i = 0; i < p->ops && !p->err[0]; i++) {
		size_t off = p->from + (size_t)(tu_rnd(&p->rng) % span);
		size_t n = 1 + (size_t)(tu_rnd(&p->rng) % sizeof buf);
		if (off + n > p->to)
			n = p->to - off;
		switch (tu_rnd(&p->rng) % 4) {
		case 0:
			tu_fill_bytes(sh + off, n, tu_rnd(&p->rng));
			memcpy(m->base + off, sh + off, n);
			break;
		case 1:
			off &= ~(size_t)7;
			if (off + 8 <= p->to) {
				uint64_t v = tu_rnd(&p->rng);
				memcpy(sh + off, &v, 8);
				*(volatile uint64_t *)(m->base + off) = v;
			}
			break;
		default:
			memcpy(buf, m->base + off, n);
			long long bad = tu_cmp_mem(buf, sh + off, n);
			if (bad >= 0)
				snprintf(p->err, sizeof p->err,
				         "second thread, its op %u: byte %zu of map %p reads %#x, "
				         "model %#x",
				         i, off + (size_t)bad, (void *)m->base, buf[bad],
				         sh[off + (size_t)bad]);
			break;
		}
	}
	return NULL;
}

static int op_concurrent(struct world *w, unsigned ops)
{
	int mi;
	struct map *m = pick_map(w, &mi);
	size_t pf, pt;
	struct partner p;
	pthread_t t;
	int rc = 0;

	if (m->npages < 4)
		return 0;
	/* A run of live pages, about a third of the map, for the second thread. */
	pf = rndn(w, m->npages - m->npages / 3);
	pt = pf + m->npages / 3;
	for (size_t j = pf; j < pt; j++)
		if (m->gone[j] || m->ro[j])
			return 0;
	memset(&p, 0, sizeof p);
	p.w = w;
	p.m = m;
	p.from = pf * w->ps;
	p.to = pt * w->ps < m->len ? pt * w->ps : m->len;
	p.ops = ops * 4;
	p.rng = rnd(w) | 1;
	hist(w, "concurrent: second thread owns pages %zu-%zu of %p", pf, pt - 1, (void *)m->base);
	if (pthread_create(&t, NULL, partner_main, &p))
		return fail(w, "pthread_create failed");
	for (unsigned i = 0; i < ops && !rc; i++) {
		switch (rndn(w, 8)) {
		case 0:
		case 1:
			rc = op_sync(w, m, pf, pt);
			break;
		case 2:
		case 3:
			rc = op_advise(w, m);
			break;
		case 4:
			rc = op_prefault(w, m, false);
			break;
		case 5: {
			/* Reads and writes of the main thread stay out of the second's part. */
			size_t off, n;
			if (pick_range(w, m, 64, &off, &n) && (off + n <= p.from || off >= p.to) &&
			    !span_ro(w, m, off, n)) {
				tu_fill_bytes(w->shadow + m->foff + off, n, rnd(w));
				hist(w, "write %zu bytes at %p+%zu", n, (void *)m->base, off);
				memcpy(m->base + off, w->shadow + m->foff + off, n);
			}
			break;
		}
		case 6: {
			size_t off, n;
			if (pick_range(w, m, 2 * w->ps, &off, &n) &&
			    (off + n <= p.from || off >= p.to)) {
				hist(w, "read %zu bytes at %p+%zu", n, (void *)m->base, off);
				rc = compare(w, m, off, n, "read during the concurrent phase");
			}
			break;
		}
		case 7:
			if (rndn(w, 3) == 0 && w->maps[mi].npages > 0)
				rc = op_punch(w, mi, pf, pt);
			break;
		}
	}
	pthread_join(t, NULL);
	if (!rc && p.err[0])
		rc = fail(w, "%s", p.err);
	hist(w, "concurrent phase ends");
	return rc;
}

/* ---- a world ---- */

static int world_open(struct world *w, const char *tag)
{
	int fd, rc;

	w->shadow = malloc(w->size);
	w->buf = malloc(w->size + 8);
	if (!w->shadow || !w->buf)
		return fail(w, "out of memory");
	tu_fill_bytes(w->shadow, w->size, rnd(w));
	if (w->kind == K_MEM) {
		snprintf(w->uri, sizeof w->uri, "mem:%zu", w->size);
	} else {
		if ((w->kind == K_PMEM || w->tmpfs) && !access("/dev/shm", W_OK))
			snprintf(w->path, sizeof w->path, "/dev/shm/hmmap-model-%d-%s",
			         (int)getpid(), tag);
		else
			tu_path(w->path, sizeof w->path, tag);
		fd = open(w->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || tu_write_all(fd, w->shadow, w->size, 0)) {
			if (fd >= 0)
				close(fd);
			return fail(w, "cannot write %s", w->path);
		}
		close(fd);
		snprintf(w->uri, sizeof w->uri, "%s:%s", w->kind == K_PMEM ? "pmem" : "file",
		         w->path);
	}
	if (!w->mmap_api) {
		rc = hm_store_open(&w->store, w->uri, 0);
		if (rc)
			return fail(w, "hm_store_open(%s): %s", w->uri, hm_errormsg());
		if (w->kind == K_MEM) {
			/* A mem: store starts as zeros. */
			rc = hm_store_write(w->store, w->shadow, w->size, 0);
			if (rc)
				return fail(w, "hm_store_write: %s", hm_errormsg());
		}
		rc = hm_cache_new(&w->cache, w->budget, w->policy);
		if (rc)
			return fail(w, "hm_cache_new(%zu, %s): %s", w->budget, w->policy,
			            hm_errormsg());
	}
	return map_add(w, 0, w->size);
}

static int world_close(struct world *w)
{
	int rc = 0;

	/* A final MS_SYNC of every live part, then the whole file. */
	for (int i = 0; i < w->nmaps && !rc; i++) {
		struct map *m = &w->maps[i];
		for (size_t pg = 0; pg < m->npages && !rc; pg++) {
			if (m->gone[pg])
				continue;
			size_t n = (pg + 1) * w->ps > m->len ? m->len - pg * w->ps : w->ps;
			rc = do_sync(w, m->base + pg * w->ps, n, MS_SYNC);
			if (rc)
				rc = fail(w, "final sync: %d (%s)", rc, hm_errormsg());
		}
	}
	if (!rc)
		rc = compare_all(w, "at the end");
	while (!rc && w->nmaps)
		rc = map_remove(w, 0);
	if (!rc && w->kind != K_MEM) {
		long long bad = tu_cmp_file(w->path, w->shadow, w->size);
		if (bad != -1)
			rc = fail(w, "after unmapping everything the file differs at %lld", bad);
	}
	if (!rc && w->kind != K_MEM && tu_file_size(w->path) != (off_t)w->size)
		rc = fail(w, "the file's size changed to %lld", (long long)tu_file_size(w->path));
	if (!rc && w->kind == K_MEM && w->store) {
		if (hm_store_read(w->store, w->buf, w->size, 0) ||
		    tu_cmp_mem(w->buf, w->shadow, w->size) >= 0)
			rc = fail(w, "the mem: store differs from the model at the end");
	}
	if (!rc && w->cache && hm_cache_free(w->cache))
		rc = fail(w, "hm_cache_free: %s", hm_errormsg());
	if (!rc && w->store && hm_store_close(w->store))
		rc = fail(w, "hm_store_close: %s", hm_errormsg());
	if (w->path[0])
		unlink(w->path);
	for (int i = 0; i < w->nmaps; i++) {
		free(w->maps[i].gone);
		free(w->maps[i].ro);
	}
	free(w->shadow);
	free(w->buf);
	return rc;
}

static int world_run(struct world *w, unsigned ops)
{
	for (w->op = 0; w->op < ops; w->op++) {
		int rc = 0;
		if (!w->nmaps) {
			rc = op_remap_all(w);
			if (rc)
				return rc;
			continue;
		}
		unsigned r = (unsigned)rndn(w, 100);
		if (r < 14)
			rc = op_write(w, 0);
		else if (r < 28)
			rc = op_write(w, 1);
		else if (r < 34)
			rc = op_write(w, 2);
		else if (r < 50)
			rc = op_read(w);
		else if (r < 60)
			rc = op_sync(w, pick_map(w, NULL), 0, 0);
		else if (r < 70)
			rc = op_advise(w, pick_map(w, NULL));
		else if (r < 76)
			rc = op_prefault(w, pick_map(w, NULL), true);
		else if (r < 80)
			rc = op_unpin(w, pick_map(w, NULL));
		else if (r < 87) {
			int i;
			pick_map(w, &i);
			rc = op_punch(w, i, 0, 0);
		} else if (r < 90)
			rc = op_remap_all(w);
		else if (r < 92)
			rc = op_resize(w);
		else if (r < 93)
			rc = op_concurrent(w, 40);
		else if (r < 96)
			rc = op_protect(w, pick_map(w, NULL));
		else if (r < 98)
			rc = op_probe(w, pick_map(w, NULL));
		else
			rc = compare_all(w, "full check");
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- configurations ---- */

struct child_cfg {
	size_t ps;
	const char *policy; /* of the default cache */
	size_t budget;      /* of the default cache */
	int index;
};

/* Budgets of a few pages, store sizes of tens of pages, per page size. */
static void shape(struct world *w, uint64_t *s)
{
	size_t pages, bpages;

	if (w->ps == 4096) {
		pages = 64 + tu_rnd(s) % 128;
		bpages = 4 + tu_rnd(s) % 9;
	} else if (w->ps == 65536) {
		pages = 16 + tu_rnd(s) % 24;
		bpages = 3 + tu_rnd(s) % 5;
	} else {
		pages = 5 + tu_rnd(s) % 4;
		bpages = 2 + tu_rnd(s) % 2;
	}
	w->size = pages * w->ps;
	w->budget = bpages * w->ps;
}

static unsigned ops_for(size_t ps)
{
	const char *e = getenv("HMMAP_MODEL_OPS");
	unsigned n = ps == 4096 ? 1000 : ps == 65536 ? 500 : 120;

	/* HMMAP_MODEL_OPS=PERCENT: more or fewer operations, for loops over many seeds. */
	if (e && atoi(e) > 0)
		n = (unsigned)((unsigned long)n * (unsigned long)atoi(e) / 100);
	return n / ops_div ? n / ops_div : 1;
}

static const struct child_cfg *cur;
static struct world *live_world;

static void run_world(struct world *w, const char *tag)
{
	const char *only = getenv("HMMAP_MODEL_WORLD");
	char id[64];
	int rc;

	if (only && *only && strcmp(only, tag))
		return;

	snprintf(id, sizeof id, "model-%d-%s", cur->index, tag);
	w->name = tag;
	w->seed = seed_arg;
	w->rng = tu_seed(0x6d6f64656cull + (uint64_t)cur->index * 131 + (uint64_t)strlen(tag) * 7 +
	                 (uint64_t)tag[0] * 1031 + (uint64_t)tag[strlen(tag) - 1]) |
	         1;
	live_world = w;
	rc = world_open(w, id);
	if (!rc)
		rc = world_run(w, ops_for(w->ps));
	if (!rc || w->shadow)
		rc = world_close(w) || rc;
	(void)rc;
	live_world = NULL;
}

#define WORLD_CASE(fn, body)                                                                       \
	static void fn(void)                                                                       \
	{                                                                                          \
		struct world w;                                                                    \
		memset(&w, 0, sizeof w);                                                           \
		w.ps = cur->ps;                                                                    \
		body;                                                                              \
		CHECKF(!w.err[0], "%s", w.err);                                                    \
	}

/* file:, HM_CACHED, through hmmap()/hmunmap()/hmsync() and the default cache. */
WORLD_CASE(test_file_hmmap, {
	uint64_t s = tu_seed(11 + (uint64_t)cur->index);
	w.kind = K_FILE;
	w.mode = HM_CACHED;
	w.mmap_api = true;
	w.tmpfs = true; /* test_file_region has the disk's O_DIRECT reads */
	shape(&w, &s);
	w.budget = cur->budget;
	w.policy = cur->policy;
	run_world(&w, "file-hmmap");
})

/* file:, HM_CACHED, through hm_region_map() and a cache of a random policy. */
WORLD_CASE(test_file_region, {
	uint64_t s = tu_seed(23 + (uint64_t)cur->index);
	w.kind = K_FILE;
	w.mode = HM_CACHED;
	shape(&w, &s);
	w.policy = model_policies[tu_rnd(&s) % MODEL_NPOLICIES];
	run_world(&w, "file-region");
})

/* mem:, HM_CACHED, hm_* calls. */
WORLD_CASE(test_mem_region, {
	uint64_t s = tu_seed(37 + (uint64_t)cur->index);
	w.kind = K_MEM;
	w.mode = HM_CACHED;
	shape(&w, &s);
	w.policy = model_policies[tu_rnd(&s) % MODEL_NPOLICIES];
	run_world(&w, "mem-region");
})

/* pmem: on a tmpfs file in `mode`, through either API. */
static void pmem_world(struct world *w, uint64_t seed, int mode, const char *name)
{
	uint64_t s = tu_seed(seed + (uint64_t)cur->index);

	w->kind = K_PMEM;
	w->mode = mode;
	w->mmap_api = tu_rnd(&s) % 2;
	shape(w, &s);
	if (w->mmap_api)
		w->budget = cur->budget;
	w->policy = w->mmap_api ? cur->policy : model_policies[tu_rnd(&s) % MODEL_NPOLICIES];
	run_world(w, name);
}

WORLD_CASE(test_pmem_hybrid, pmem_world(&w, 41, HM_HYBRID, "pmem-hybrid"))
WORLD_CASE(test_pmem_direct, pmem_world(&w, 53, HM_DIRECT, "pmem-direct"))
WORLD_CASE(test_pmem_cached, pmem_world(&w, 67, HM_CACHED, "pmem-cached"))

/*
 * A fatal SIGSEGV or SIGBUS (a touch hmmap did not serve): the seed and the
 * operations before it, then the default action. Not async-signal-safe, but
 * the process is ending anyway.
 */
static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	struct world *w = live_world;

	(void)uc;
	if (sig == SIGSEGV && probe_jb && si->si_addr == probe_addr) {
		sigjmp_buf *jb = probe_jb;
		probe_jb = NULL;
		siglongjmp(*jb, 1);
	}
	if (w) {
		printf("FATAL signal %d at %p: HMMAP_TEST_SEED=%llu world %s op %u; last "
		       "operations:\n",
		       sig, si->si_addr, (unsigned long long)w->seed, w->name, w->op);
		model_hist_print(&w->hist);
		fflush(stdout);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static int child_main(void *arg)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_fatal;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	cur = arg;
	RUN(test_file_hmmap);
	RUN(test_file_region);
	RUN(test_mem_region);
	RUN(test_pmem_cached);
	RUN(test_pmem_hybrid);
	RUN(test_pmem_direct);
	return test_done();
}

static void run_child(size_t ps, const char *mode, int index)
{
	static struct child_cfg cfg;
	char e_ps[64], e_pol[64], e_size[64], e_mode[64];
	uint64_t s = tu_seed(97 + (uint64_t)index);
	const char *env[] = {e_ps, e_pol, e_size, e_mode, "HMMAP_SAMPLE_RATE=4096", NULL};

	cfg.ps = ps;
	cfg.policy = model_policies[tu_rnd(&s) % MODEL_NPOLICIES];
	cfg.budget = ps * (ps == 2u << 20 ? 3 : 4 + tu_rnd(&s) % 5);
	cfg.index = index;
	snprintf(e_ps, sizeof e_ps, "HMMAP_PAGE_SIZE=%zu", ps);
	snprintf(e_pol, sizeof e_pol, "HMMAP_POLICY=%s", cfg.policy);
	snprintf(e_size, sizeof e_size, "HMMAP_CACHE_SIZE=%zu", cfg.budget);
	snprintf(e_mode, sizeof e_mode, "HMMAP_FAULT_MODE=%s", mode);
	printf("  page size %zu, %s mode, default cache %s of %zu bytes\n", ps, mode, cfg.policy,
	       cfg.budget);
	cur = &cfg;
	int st = tu_child(env, child_main, &cfg);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		t_skipped++;
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		t_passed++;
	else {
		t_failed++;
		printf("FAIL model with page size %zu, %s mode (HMMAP_TEST_SEED=%llu): %s\n", ps,
		       mode, (unsigned long long)seed_arg, tu_status_str(st));
	}
}

/* ---- focused cases: what the random runs found ---- */

/*
 * hm_cache_resize() below what the pinned pages leave room for: it used to
 * succeed, and then every fault of the cache failed (SIGBUS in sigbus mode,
 * -ENOMEM from hm_advise(WILLNEED)). Found by HMMAP_TEST_SEED=1, child 1.
 */
static void test_resize_keeps_room_beside_pins(void)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	size_t ps = 4096, budget = 8 * ps;
	unsigned char *p;

	CHECK(hm_store_open(&s, "mem:131072", 0) == 0);
	CHECK(hm_cache_new(&c, budget, "clock") == 0);
	CHECK(hm_region_map(&r, c, s, 0, 32 * ps, PROT_READ | PROT_WRITE, HM_CACHED, ps) == 0);
	p = hm_region_addr(r);
	/* Pins may hold the budget less two pages here: 6 of 8. */
	CHECKF(hm_prefault(p, 6 * ps, HM_PREFAULT_PIN) == 0, "%s", hm_errormsg());
	int rc = hm_cache_resize(c, 6 * ps);
	CHECKF(rc == -EBUSY, "resize to the pinned bytes returned %d", rc);
	CHECK(hm_cache_budget(c) == budget);
	p[20 * ps] = 1; /* a fault still finds room */
	CHECK(hm_unpin(p, 6 * ps) == 0);
	CHECKF(hm_cache_resize(c, 4 * ps) == 0, "%s", hm_errormsg());
	CHECK(p[20 * ps] == 1);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_store_close(s) == 0);
}

/*
 * A hybrid region of 32 pages over a pmem: file called `name`, on a cache
 * of 4 pages: *s, *c and *r, for hybrid_close() to undo; *p, its address.
 * A failed check returns early: the caller looks at t_case_failed.
 */
static void hybrid_open(const char *name, int fill, char *path, size_t pathlen,
			struct hm_store **s, struct hm_cache **c, struct hm_region **r,
			unsigned char **p)
{
	size_t ps = 4096;
	char uri[600];

	tu_path(path, pathlen, name);
	unsigned char *ref = tu_make_file(path, 32 * ps, fill);
	CHECK(ref);
	free(ref);
	snprintf(uri, sizeof uri, "pmem:%s", path);
	CHECK(hm_store_open(s, uri, 0) == 0);
	CHECK(hm_cache_new(c, 4 * ps, "clock") == 0);
	CHECKF(hm_region_map(r, *c, *s, 0, 32 * ps, PROT_READ | PROT_WRITE, HM_HYBRID, ps) == 0,
	       "%s", hm_errormsg());
	*p = hm_region_addr(*r);
}

static void hybrid_close(const char *path, struct hm_store *s, struct hm_cache *c,
			 struct hm_region *r)
{
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_store_close(s) == 0);
	unlink(path);
}

/*
 * HM_HYBRID pins were bounded only by the held set per call: pins could
 * take every slot, and then the first write to any other page found no
 * frame and was the application's SIGSEGV. Found by HMMAP_TEST_SEED=1,
 * child 4, world pmem-hybrid.
 */
static void test_hybrid_pins_leave_room(void)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	size_t ps = 4096;
	char path[512];
	unsigned char *p;
	int rc;

	hybrid_open("hybrid-pins", 5, path, sizeof path, &s, &c, &r, &p);
	if (t_case_failed)
		return;
	rc = hm_prefault(p, 4 * ps, HM_PREFAULT_PIN);
	CHECKF(rc == -ENOMEM, "pinning every page the region may hold returned %d", rc);
	CHECKF(hm_prefault(p, 2 * ps, HM_PREFAULT_PIN) == 0, "%s", hm_errormsg());
	rc = hm_prefault(p + 2 * ps, 2 * ps, HM_PREFAULT_PIN);
	CHECKF(rc == -ENOMEM, "pins of two calls that fill the region returned %d", rc);
	p[20 * ps] = 7; /* a write to another page still finds a frame */
	p[21 * ps] = 8;
	CHECK(p[20 * ps] == 7 && p[21 * ps] == 8);
	CHECK(hm_unpin(p, 2 * ps) == 0);
	hybrid_close(path, s, c, r);
}

/*
 * Pins left room for one page, and one instruction may need two: a copy
 * across a page boundary then faulted its two pages in turn, each evicting
 * the other, for ever (HMMAP_TEST_SEED=1, child 0, world pmem-cached: a
 * cache of two pages after hm_cache_resize(), one of them pinned). Pins
 * now leave at least two pages, in cached and in hybrid regions.
 */
static void test_pins_leave_two_pages(void)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;
	size_t ps = 4096;
	char path[512];
	unsigned char *p, buf[512];
	int rc;

	CHECK(hm_store_open(&s, "mem:131072", 0) == 0);
	CHECK(hm_cache_new(&c, 4 * ps, "lirs") == 0);
	CHECK(hm_region_map(&r, c, s, 0, 32 * ps, PROT_READ | PROT_WRITE, HM_CACHED, ps) == 0);
	p = hm_region_addr(r);
	rc = hm_prefault(p, 3 * ps, HM_PREFAULT_PIN);
	CHECKF(rc == -ENOMEM, "pinning 3 pages of a 4-page cache returned %d", rc);
	CHECKF(hm_prefault(p, 2 * ps, HM_PREFAULT_PIN) == 0, "%s", hm_errormsg());
	rc = hm_cache_resize(c, 3 * ps);
	CHECKF(rc == -EBUSY, "leaving one page beside two pinned returned %d", rc);
	memset(buf, 0x5a, sizeof buf);
	memcpy(p + 10 * ps - 200, buf, sizeof buf); /* two pages at once */
	CHECK(!memcmp(p + 10 * ps - 200, buf, sizeof buf));
	CHECK(hm_unpin(p, 2 * ps) == 0);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_store_close(s) == 0);

	/* Hybrid: a region that may hold 4 pages pins at most 2. */
	hybrid_open("hybrid-two", 6, path, sizeof path, &s, &c, &r, &p);
	if (t_case_failed)
		return;
	rc = hm_prefault(p, 3 * ps, HM_PREFAULT_PIN);
	CHECKF(rc == -ENOMEM, "pinning 3 of the 4 pages a hybrid region holds returned %d", rc);
	CHECKF(hm_prefault(p, 2 * ps, HM_PREFAULT_PIN) == 0, "%s", hm_errormsg());
	memcpy(p + 10 * ps - 200, buf, sizeof buf);
	CHECK(!memcmp(p + 10 * ps - 200, buf, sizeof buf));
	CHECK(hm_unpin(p, 2 * ps) == 0);
	hybrid_close(path, s, c, r);
}

int main(void)
{
	const char *e = getenv("HMMAP_TEST_SEED");
	static const size_t sizes[] = {4096, 65536, 2u << 20};

	seed_arg = e ? strtoull(e, NULL, 10) : 1;
	if (!e)
		setenv("HMMAP_TEST_SEED", "1", 1);
	if (tu_under("asan"))
		ops_div = 3;
	else if (tu_under("tsan"))
		ops_div = 6;
	if (!tu_tmpdir())
		return 1;
	printf("HMMAP_TEST_SEED=%llu\n", (unsigned long long)seed_arg);
	const char *only = getenv("HMMAP_MODEL_CHILD");
	for (int i = 0; i < 6; i++)
		if (!only || !*only || atoi(only) == i)
			run_child(sizes[i % 3], (i / 3 + seed_arg) % 2 ? "sigbus" : "thread", i);
	RUN(test_resize_keeps_room_beside_pins);
	RUN(test_hybrid_pins_leave_room);
	RUN(test_pins_leave_two_pages);
	tu_cleanup();
	return test_done();
}
