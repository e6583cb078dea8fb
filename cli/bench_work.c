/* SPDX-License-Identifier: MIT */
/*
 * `hmmap bench` workloads. Each is written once against `struct bmem` and
 * runs on `threads` threads released together by a barrier; the time is
 * taken from the release to the last thread's end. Every workload checks
 * what it reads against the generator, so that a fast wrong answer shows
 * up as failures ("BAD" in the table) instead of a figure:
 *
 *   seq      every word of the data is read (summed); words 0 and 1 of
 *            each 4 KiB item are compared with the generator.
 *   rand, zipf, hotset, hotscan, rwmix
 *            operations on 4 KiB items: a read compares word 1 of the item
 *            with the generator (original or written value); a write does
 *            the same and then stores the written value (GUPS-style
 *            read-modify-write, idempotent so that any order is legal).
 *   chase    pointer chasing through 64-byte lines: every loaded pointer
 *            must be the chain's next line.
 *   bfs      level-synchronous top-down BFS on the CSR graph, each level
 *            expanding its frontier in vertex order; levels and frontier
 *            bitmaps live in private memory. After the timed part, 1024 sampled
 *            vertices are validated (neighbours' levels differ by at most
 *            one, a parent exists one level up) and the count of reached
 *            vertices and the sum of levels are returned for the parent to
 *            compare across systems.
 *   sort     external merge sort: threads sort runs of run_bytes / threads
 *            in place (the pool pins a run while sorting it), then one
 *            thread merges them into the output area and makes it durable.
 *            The output must be non-decreasing with the input's count, sum
 *            and xor.
 *   stream   STREAM's triad a = b + 3c, `passes` times, each pass timed
 *            (the best after the first is STREAM's own figure); afterwards one
 *            element per 4 KiB of a is compared with b + 3c.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define ZIPF_MUL 2654435761ull /* a prime: rank * it mod items scatters hot items */

struct job {
	int wl;
	struct bmem *m;
	const struct bdata *d;
	const struct bparams *p;
	pthread_barrier_t start, bar;
	double wfrac;
	uint64_t chase_mask;
	/* bfs */
	int32_t *lvl;
	uint64_t *fcur, *fnext; /* frontier bitmaps */
	uint64_t cur_n, level;
	uint64_t next_n, idx; /* atomics */
	/* sort */
	uint64_t run_words, nruns, run_idx; /* run_idx: atomic */
	uint64_t sort_bad;
	/* stream: when each pass ended (the last thread through its barrier) */
	double *pass_end;
};

struct tctx {
	struct job *j;
	int tid;
	pthread_t th;
	uint64_t units, bad;
	double t0, t1; /* this thread's start and end */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *bench_unit(int w)
{
	switch (w) {
	case W_SEQ:
	case W_SORT:
	case W_STREAM:
		return "MB/s";
	case W_BFS:
		return "edges/s";
	default:
		return "ops/s";
	}
}

/* splitmix64 */
static uint64_t rnd(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return bmix(*s);
}

static uint64_t below(uint64_t r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

static double unit01(uint64_t r)
{
	return (double)(r >> 11) * 0x1p-53;
}

double *bench_zipf_cdf(uint64_t n, double alpha)
{
	double *cdf = malloc(n * sizeof *cdf), sum = 0;

	if (!cdf)
		return NULL;
	for (uint64_t i = 0; i < n; i++) {
		sum += 1.0 / pow((double)(i + 1), alpha);
		cdf[i] = sum;
	}
	for (uint64_t i = 0; i < n; i++)
		cdf[i] /= sum;
	return cdf;
}

static uint64_t zipf_rank(const double *cdf, uint64_t n, double u)
{
	uint64_t lo = 0, hi = n - 1;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---------------------------------------------------------------- arrays */

static uint64_t item_op(struct bmem *m, uint64_t item, int write)
{
	uint64_t r = item * B_ITEM_WORDS + 1, avail, v, bad;
	void *tok;
	uint64_t *p = bm_get(m, B_HDR_WORDS + r, write, &avail, &tok);

	/*
	 * Threads may update the same item at once, as in GUPS; relaxed
	 * atomics (plain moves on x86) make that a defined race.
	 */
	v = __atomic_load_n(p, __ATOMIC_RELAXED);
	bad = v != barr_orig(r) && v != barr_upd(r);
	if (write)
		__atomic_store_n(p, barr_upd(r), __ATOMIC_RELAXED);
	bm_put(m, tok);
	return bad;
}

static uint64_t sink;

/*
 * Reads `count` items from `first`: every word summed, two checked per
 * item, in one pass - each item is checked and summed before the next is
 * touched - so hmmap and mmap, which get the whole range from bm_get(),
 * read every byte once, as the pool (a page at a time) does.
 */
static uint64_t scan_items(struct job *j, uint64_t first, uint64_t count, uint64_t *bad)
{
	struct bmem *m = j->m;
	uint64_t w = B_HDR_WORDS + first * B_ITEM_WORDS, end = w + count * B_ITEM_WORDS;
	uint64_t sum = 0, b = 0;

	while (w < end) {
		uint64_t avail, n;
		void *tok;
		const uint64_t *p = bm_get(m, w, 0, &avail, &tok);
		n = avail < end - w ? avail : end - w;
		for (uint64_t k = 0; k < n; k += B_ITEM_WORDS) {
			uint64_t r = w + k - B_HDR_WORDS, v = p[k + 1];
			uint64_t e = k + B_ITEM_WORDS < n ? k + B_ITEM_WORDS : n;
			if (p[k] != bchase_next(r / B_LINE_WORDS, j->d->lines, j->chase_mask))
				b++;
			if (v != barr_orig(r + 1) && v != barr_upd(r + 1))
				b++;
			for (uint64_t i = k; i < e; i++)
				sum += p[i];
		}
		bm_put(m, tok);
		w += n;
	}
	__atomic_fetch_add(&sink, sum,
	                   __ATOMIC_RELAXED); /* keeps the sum from being optimised away */
	*bad += b;
	return count;
}

static void seq_work(struct tctx *t)
{
	struct job *j = t->j;
	uint64_t n = j->d->items, T = (uint64_t)j->p->threads;
	uint64_t a = n * (uint64_t)t->tid / T, b = n * (uint64_t)(t->tid + 1) / T;

	scan_items(j, a, b - a, &t->bad);
	t->units = (b - a) * 4096;
}

static void random_work(struct tctx *t)
{
	struct job *j = t->j;
	const struct bparams *p = j->p;
	uint64_t n = j->d->items, s = p->seed ^ ((uint64_t)(t->tid + 1) << 32), bad = 0;
	uint64_t hot = (uint64_t)(p->hot_frac * (double)n), units = 0;
	uint64_t every = p->scan_every ? p->scan_every : p->ops / 4;
	uint64_t scan_len = n / (4 * (uint64_t)p->threads), scan_at;

	if (hot < 1)
		hot = 1;
	if (scan_len < 1)
		scan_len = 1;
	if (every < 1)
		every = 1;
	scan_at = n * (uint64_t)t->tid / (uint64_t)p->threads;
	for (uint64_t i = 0; i < p->ops; i++) {
		uint64_t r = rnd(&s), item;
		switch (j->wl) {
		case W_ZIPF:
			item = zipf_rank(p->zipf_cdf, n, unit01(r)) * ZIPF_MUL % n;
			break;
		case W_HOTSET:
		case W_HOTSCAN:
			item = unit01(rnd(&s)) < p->hot_share ? below(r, hot) : below(r, n);
			break;
		default:
			item = below(r, n);
			break;
		}
		int write = j->wfrac > 0 && unit01(rnd(&s)) < j->wfrac;
		bad += item_op(j->m, item, write);
		units++;
		if (j->wl == W_HOTSCAN && i % every == every - 1) {
			if (scan_at + scan_len > n)
				scan_at = 0;
			units += scan_items(j, scan_at, scan_len, &bad);
			scan_at += scan_len;
		}
	}
	t->bad += bad;
	t->units = units;
}

static void chase_work(struct tctx *t)
{
	struct job *j = t->j;
	uint64_t s = j->p->seed ^ ((uint64_t)(t->tid + 1) << 40), lines = j->d->lines;
	uint64_t x = below(rnd(&s), lines), bad = 0;

	for (uint64_t i = 0; i < j->p->ops; i++) {
		uint64_t v = bm_load(j->m, B_HDR_WORDS + x * B_LINE_WORDS);
		uint64_t e = bchase_next(x, lines, j->chase_mask);
		if (v != e) {
			bad++;
			v = e;
		}
		x = v;
	}
	t->bad += bad;
	t->units = j->p->ops;
}

/* ---------------------------------------------------------------- bfs */

/*
 * One level expands the frontier in vertex order: the frontier is a bitmap,
 * and threads take 1024-vertex chunks of it in order. This is the access
 * order of the simple level-synchronous BFS that scans every vertex per
 * level (the kernel UMap's and Metall's BFS benchmarks use): the CSR file
 * is read front to back once per level, not in the order vertices were
 * discovered.
 */
#define BFS_CHUNK_WORDS 16

static void bfs_work(struct tctx *t)
{
	struct job *j = t->j;
	struct bmem *m = j->m;
	const struct bdata *d = j->d;
	uint64_t nwords = (d->nv + 63) / 64, edges = 0, bad = 0;

	for (;;) {
		pthread_barrier_wait(&j->bar);
		if (!j->cur_n)
			break;
		int32_t nl = (int32_t)j->level + 1;
		uint64_t found = 0;
		for (;;) {
			uint64_t w0 =
			    __atomic_fetch_add(&j->idx, BFS_CHUNK_WORDS, __ATOMIC_RELAXED);
			if (w0 >= nwords)
				break;
			uint64_t w1 = w0 + BFS_CHUNK_WORDS < nwords ? w0 + BFS_CHUNK_WORDS : nwords;
			for (uint64_t w = w0; w < w1; w++) {
				for (uint64_t bits = j->fcur[w]; bits; bits &= bits - 1) {
					uint64_t v = w * 64 + (uint64_t)__builtin_ctzll(bits);
					uint64_t e = bm_load(m, d->off_w + v);
					uint64_t e1 = bm_load(m, d->off_w + v + 1);
					if (e1 < e || e1 > d->ne) {
						bad++;
						continue;
					}
					edges += e1 - e;
					while (e < e1) {
						uint64_t avail, n;
						void *tok;
						const uint64_t *a =
						    bm_get(m, d->adj_w + e, 0, &avail, &tok);
						n = avail < e1 - e ? avail : e1 - e;
						for (uint64_t i = 0; i < n; i++) {
							uint64_t u = a[i];
							int32_t exp = -1;
							if (u >= d->nv) {
								bad++;
								continue;
							}
							if (__atomic_load_n(&j->lvl[u],
							                    __ATOMIC_RELAXED) >=
							        0 ||
							    !__atomic_compare_exchange_n(
							        &j->lvl[u], &exp, nl, 0,
							        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
								continue;
							__atomic_fetch_or(&j->fnext[u / 64],
							                  1ull << (u % 64),
							                  __ATOMIC_RELAXED);
							found++;
						}
						bm_put(m, tok);
						e += n;
					}
				}
			}
		}
		__atomic_fetch_add(&j->next_n, found, __ATOMIC_RELAXED);
		pthread_barrier_wait(&j->bar);
		if (t->tid == 0) {
			uint64_t *tmp = j->fcur;
			j->fcur = j->fnext;
			j->fnext = tmp;
			memset(j->fnext, 0, nwords * 8);
			j->cur_n = j->next_n;
			j->next_n = 0;
			j->idx = 0;
			j->level++;
		}
	}
	t->units = edges;
	t->bad += bad;
}

/* Graph500-style checks on sampled vertices, after the timed part. */
static uint64_t bfs_validate(struct job *j)
{
	struct bmem *m = j->m;
	const struct bdata *d = j->d;
	uint64_t bad = j->lvl[d->root] != 0;

	for (uint64_t k = 0; k < 1024; k++) {
		uint64_t v = bmix(j->p->seed + k) & (d->nv - 1);
		uint64_t e = bm_load(m, d->off_w + v), e1 = bm_load(m, d->off_w + v + 1);
		int32_t lv = j->lvl[v];
		int parent = lv <= 0;
		if (e1 < e || e1 > d->ne)
			return bad + 1;
		for (; e < e1; e++) {
			uint64_t u = bm_load(m, d->adj_w + e);
			if (u >= d->nv)
				return bad + 1;
			int32_t lu = j->lvl[u];
			if ((lv < 0) != (lu < 0) || (lv >= 0 && (lu > lv + 1 || lu < lv - 1)))
				bad++;
			if (lu == lv - 1)
				parent = 1;
		}
		bad += !parent;
	}
	return bad;
}

/* ---------------------------------------------------------------- sort */

/* A run seen through its pages: the pool's frames need not be adjacent. */
struct parr {
	uint64_t **pg;
	unsigned sh;
	uint64_t mask;
};

#define PA(a, i) ((a)->pg[(i) >> (a)->sh][(i) & (a)->mask])

static void pa_swap(struct parr *a, uint64_t i, uint64_t k)
{
	uint64_t x = PA(a, i);

	PA(a, i) = PA(a, k);
	PA(a, k) = x;
}

/* Quicksort of [lo, hi): median-of-three pivot, three-way partition. */
static void pa_sort(struct parr *a, uint64_t lo, uint64_t hi)
{
	while (hi - lo > 24) {
		uint64_t x = PA(a, lo), y = PA(a, lo + (hi - lo) / 2), z = PA(a, hi - 1);
		uint64_t pv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
		uint64_t lt = lo, i = lo, gt = hi;
		while (i < gt) {
			uint64_t v = PA(a, i);
			if (v < pv)
				pa_swap(a, lt++, i++);
			else if (v > pv)
				pa_swap(a, i, --gt);
			else
				i++;
		}
		if (lt - lo < hi - gt) {
			pa_sort(a, lo, lt);
			lo = gt;
		} else {
			pa_sort(a, gt, hi);
			hi = lt;
		}
	}
	for (uint64_t i = lo + 1; i < hi; i++) {
		uint64_t v = PA(a, i), k = i;
		while (k > lo && PA(a, k - 1) > v) {
			PA(a, k) = PA(a, k - 1);
			k--;
		}
		PA(a, k) = v;
	}
}

/*
 * A merge cursor. Mapped systems read and write the data in place. The
 * pool copies 4 KiB at a time through a private buffer instead of holding
 * a pin per run, as a real external sort does: a merge of k runs would
 * otherwise need k pinned frames, more than a small pool of large pages
 * has.
 */
#define MBUF 512

struct mcur {
	uint64_t w, end, n;
	uint64_t *p;
	void *tok;
	uint64_t buf[MBUF];
	uint64_t out_w; /* pool output: where buf goes */
};

static int mcur_fill(struct bmem *m, struct mcur *c)
{
	uint64_t avail;

	bm_put(m, c->tok);
	c->tok = NULL;
	if (c->w >= c->end)
		return 0;
	c->p = bm_get(m, c->w, 0, &avail, &c->tok);
	c->n = avail < c->end - c->w ? avail : c->end - c->w;
	if (!m->base) {
		if (c->n > MBUF)
			c->n = MBUF;
		memcpy(c->buf, c->p, c->n * 8);
		bm_put(m, c->tok);
		c->tok = NULL;
		c->p = c->buf;
	}
	c->w += c->n;
	return 1;
}

/* The output cursor: writes what was filled since the last call, then opens room. */
static int mout_next(struct bmem *m, struct mcur *c)
{
	uint64_t avail;

	if (!m->base) {
		uint64_t done = (uint64_t)(c->p - c->buf);
		for (uint64_t k = 0; k < done;) {
			uint64_t *dst = bm_get(m, c->out_w + k, 1, &avail, &c->tok);
			uint64_t n = avail < done - k ? avail : done - k;
			memcpy(dst, c->buf + k, n * 8);
			bm_put(m, c->tok);
			c->tok = NULL;
			k += n;
		}
		c->out_w += done;
		if (c->w >= c->end)
			return 0;
		c->n = c->end - c->w < MBUF ? c->end - c->w : MBUF;
		c->p = c->buf;
		c->w += c->n;
		return 1;
	}
	bm_put(m, c->tok);
	c->tok = NULL;
	if (c->w >= c->end)
		return 0;
	c->p = bm_get(m, c->w, 1, &avail, &c->tok);
	c->n = avail < c->end - c->w ? avail : c->end - c->w;
	c->w += c->n;
	return 1;
}

struct hent {
	uint64_t key;
	uint64_t run;
};

static void sift(struct hent *h, uint64_t n, uint64_t i)
{
	for (;;) {
		uint64_t l = 2 * i + 1, s = i;
		if (l < n && h[l].key < h[s].key)
			s = l;
		if (l + 1 < n && h[l + 1].key < h[s].key)
			s = l + 1;
		if (s == i)
			return;
		struct hent t = h[i];
		h[i] = h[s];
		h[s] = t;
		i = s;
	}
}

static uint64_t sort_merge(struct job *j)
{
	struct bmem *m = j->m;
	const struct bdata *d = j->d;
	uint64_t k = j->nruns, hn = 0, sum = 0, x = 0, count = 0, prev = 0, bad = 0;
	struct mcur *c = calloc(k, sizeof *c), *out = calloc(1, sizeof *out);
	struct hent *h = calloc(k, sizeof *h);

	if (!c || !h || !out) {
		free(c);
		free(h);
		free(out);
		return 1;
	}
	for (uint64_t r = 0; r < k; r++) {
		c[r].w = d->in_w + r * j->run_words;
		c[r].end = c[r].w + j->run_words;
		if (c[r].end > d->in_w + d->nkeys)
			c[r].end = d->in_w + d->nkeys;
		if (mcur_fill(m, &c[r])) {
			h[hn].key = c[r].p[0];
			h[hn].run = r;
			hn++;
		}
	}
	for (uint64_t i = hn; i-- > 0;)
		sift(h, hn, i);
	out->w = out->out_w = d->out_w;
	out->end = d->out_w + d->nkeys;
	out->p = out->buf;
	while (hn) {
		uint64_t key = h[0].key, r = h[0].run;
		if (!out->n && !mout_next(m, out)) {
			bad++;
			break;
		}
		*out->p++ = key;
		out->n--;
		bad += count && key < prev;
		prev = key;
		sum += key;
		x ^= key;
		count++;
		struct mcur *cr = &c[r];
		cr->p++;
		if (--cr->n == 0 && !mcur_fill(m, cr)) {
			h[0] = h[--hn];
		} else {
			h[0].key = cr->p[0];
		}
		sift(h, hn, 0);
	}
	out->n = 0;
	mout_next(m, out); /* the pool's last buffer; the mapped systems' last span */
	bm_put(m, out->tok);
	for (uint64_t r = 0; r < k; r++)
		bm_put(m, c[r].tok);
	if (m->sync(m))
		bad++;
	free(c);
	free(h);
	free(out);
	bad += count != d->nkeys || sum != d->key_sum || x != d->key_xor;
	return bad;
}

static void sort_work(struct tctx *t)
{
	struct job *j = t->j;
	struct bmem *m = j->m;
	const struct bdata *d = j->d;
	unsigned sh = m->base ? 9 : m->wshift;
	uint64_t wpp = 1ull << sh, npg = j->run_words / wpp;
	uint64_t **pg = calloc(npg, sizeof *pg);
	void **tok = calloc(npg, sizeof *tok);

	if (!pg || !tok) {
		t->bad++;
		goto out;
	}
	for (;;) {
		uint64_t r = __atomic_fetch_add(&j->run_idx, 1, __ATOMIC_RELAXED);
		if (r >= j->nruns)
			break;
		uint64_t w0 = d->in_w + r * j->run_words, len = j->run_words;
		if (r * j->run_words + len > d->nkeys)
			len = d->nkeys - r * j->run_words;
		uint64_t np = (len + wpp - 1) / wpp;
		for (uint64_t i = 0; i < np; i++) {
			uint64_t avail;
			pg[i] = bm_get(m, w0 + i * wpp, 1, &avail, &tok[i]);
		}
		struct parr a = {pg, sh, wpp - 1};
		pa_sort(&a, 0, len);
		for (uint64_t i = 0; i < np; i++)
			bm_put(m, tok[i]);
	}
	pthread_barrier_wait(&j->bar);
	if (t->tid == 0) {
		t->bad += sort_merge(j);
		t->units = d->nkeys * 8;
	}
out:
	free(pg);
	free(tok);
}

/* ---------------------------------------------------------------- stream */

static void stream_work(struct tctx *t)
{
	struct job *j = t->j;
	struct bmem *m = j->m;
	const struct bdata *d = j->d;
	uint64_t T = (uint64_t)j->p->threads, blocks = d->n / 512;
	uint64_t i0 = blocks * (uint64_t)t->tid / T * 512,
	         i1 = blocks * (uint64_t)(t->tid + 1) / T * 512;

	for (int pass = 0; pass < j->p->passes; pass++) {
		for (uint64_t i = i0; i < i1;) {
			uint64_t na, nb, nc, n;
			void *ta, *tb, *tc;
			double *a = (double *)bm_get(m, d->a_w + i, 1, &na, &ta);
			const double *b = (const double *)bm_get(m, d->b_w + i, 0, &nb, &tb);
			const double *c = (const double *)bm_get(m, d->c_w + i, 0, &nc, &tc);
			n = i1 - i;
			n = na < n ? na : n;
			n = nb < n ? nb : n;
			n = nc < n ? nc : n;
			for (uint64_t k = 0; k < n; k++)
				a[k] = b[k] + B_STREAM_SCALAR * c[k];
			bm_put(m, ta);
			bm_put(m, tb);
			bm_put(m, tc);
			i += n;
		}
		if (pthread_barrier_wait(&j->bar) == PTHREAD_BARRIER_SERIAL_THREAD)
			j->pass_end[pass] = now();
	}
	t->units = (uint64_t)j->p->passes * (i1 - i0) * 24;
}

static uint64_t stream_validate(struct job *j)
{
	const struct bdata *d = j->d;
	uint64_t bad = 0;

	for (uint64_t i = 0; i < d->n; i += 509) {
		uint64_t bits = bm_load(j->m, d->a_w + i);
		double a;
		memcpy(&a, &bits, sizeof a);
		bad += a != bstream_b(i) + B_STREAM_SCALAR * bstream_c(i);
	}
	return bad;
}

/* ---------------------------------------------------------------- driver */

static void *worker(void *arg)
{
	struct tctx *t = arg;
	struct job *j = t->j;

	pthread_barrier_wait(&j->start);
	t->t0 = now();
	switch (j->wl) {
	case W_SEQ:
		seq_work(t);
		break;
	case W_CHASE:
		chase_work(t);
		break;
	case W_BFS:
		bfs_work(t);
		break;
	case W_SORT:
		sort_work(t);
		break;
	case W_STREAM:
		stream_work(t);
		break;
	default:
		random_work(t);
		break;
	}
	t->t1 = now();
	return NULL;
}

static double default_wfrac(int w)
{
	switch (w) {
	case W_HOTSET:
		return 1.0; /* GUPS: every operation is an update */
	case W_RWMIX:
		return 0.5;
	default:
		return 0.0;
	}
}

int bench_workload(int wl, struct bmem *m, const struct bdata *d, const struct bparams *p,
                   struct bout *o)
{
	int T = p->threads, rc = 0;
	struct tctx *t = calloc((size_t)T, sizeof *t);
	struct job j = {.wl = wl, .m = m, .d = d, .p = p};
	double t0, t1;

	memset(o, 0, sizeof *o);
	if (!t)
		return -ENOMEM;
	j.wfrac = p->wfrac >= 0 ? p->wfrac : default_wfrac(wl);
	if (d->kind == D_ARRAY)
		j.chase_mask = bchase_mask(d->lines);
	if (wl == W_BFS) {
		j.lvl = malloc(d->nv * sizeof *j.lvl);
		j.fcur = calloc((d->nv + 63) / 64, 8);
		j.fnext = calloc((d->nv + 63) / 64, 8);
		if (!j.lvl || !j.fcur || !j.fnext) {
			rc = -ENOMEM;
			goto out;
		}
		memset(j.lvl, 0xff, d->nv * sizeof *j.lvl);
		j.lvl[d->root] = 0;
		j.fcur[d->root / 64] = 1ull << (d->root % 64);
		j.cur_n = 1;
	}
	if (wl == W_STREAM && !(j.pass_end = calloc((size_t)p->passes, sizeof *j.pass_end))) {
		rc = -ENOMEM;
		goto out;
	}
	if (wl == W_SORT) {
		uint64_t wpp = m->base ? 512 : 1ull << m->wshift;
		j.run_words = p->run_bytes / 8 / (uint64_t)T / wpp * wpp;
		if (j.run_words < wpp)
			j.run_words = wpp;
		j.nruns = (d->nkeys + j.run_words - 1) / j.run_words;
	}
	pthread_barrier_init(&j.start, NULL, (unsigned)T + 1);
	pthread_barrier_init(&j.bar, NULL, (unsigned)T);
	for (int i = 0; i < T; i++) {
		t[i].j = &j;
		t[i].tid = i;
		if (pthread_create(&t[i].th, NULL, worker, &t[i])) {
			/* Cannot happen for the thread counts allowed; stop cleanly if it does. */
			fprintf(stderr, "hmmap bench: cannot start thread %d\n", i);
			_exit(3);
		}
	}
	pthread_barrier_wait(&j.start);
	for (int i = 0; i < T; i++)
		pthread_join(t[i].th, NULL);
	/*
	 * The time runs from the first worker's start to the last one's end,
	 * taken by the workers: the main thread may be scheduled late after
	 * the barrier, and a clock read there could miss work already done.
	 */
	t0 = t[0].t0;
	t1 = t[0].t1;
	for (int i = 1; i < T; i++) {
		t0 = t[i].t0 < t0 ? t[i].t0 : t0;
		t1 = t[i].t1 > t1 ? t[i].t1 : t1;
	}
	o->secs = t1 - t0;
	for (int i = 0; i < T; i++) {
		o->units += (double)t[i].units;
		o->bad += t[i].bad;
	}
	if (wl == W_BFS) {
		o->bad += bfs_validate(&j);
		for (uint64_t v = 0; v < d->nv; v++)
			if (j.lvl[v] >= 0) {
				o->check[0]++;
				o->check[1] += (uint64_t)j.lvl[v];
			}
	}
	if (wl == W_STREAM) {
		o->bad += stream_validate(&j);
		/*
		 * STREAM's own rule: the best pass after the first, which is
		 * what STREAM (and UMap's port of it) reports. The barrier
		 * after each pass makes the passes' times add up to the run's.
		 */
		for (int k = 1; k < p->passes; k++) {
			double s = j.pass_end[k] - j.pass_end[k - 1];
			if (s > 0 && (!o->best_pass_secs || s < o->best_pass_secs))
				o->best_pass_secs = s;
		}
	}
	pthread_barrier_destroy(&j.start);
	pthread_barrier_destroy(&j.bar);
out:
	free(j.lvl);
	free(j.fcur);
	free(j.fnext);
	free(j.pass_end);
	free(t);
	return rc;
}
