/* SPDX-License-Identifier: MIT */
/*
 * `hmmap bench` - what its parts share: the workloads, the systems, the
 * generated data files, the memory accessor every workload reads through,
 * and the pread buffer pool.
 *
 * Every workload is written once against `struct bmem`: a system that maps
 * the data (hmmap, the kernel's mmap) gives a base pointer and the accessor
 * is a plain load; the pread buffer pool gives page frames through a
 * get/put pair. A span returned by bm_get() stays valid until bm_put().
 */
#ifndef HM_CLI_BENCH_H
#define HM_CLI_BENCH_H

#include <stddef.h>
#include <stdint.h>

enum bw {
	W_SEQ,
	W_RAND,
	W_ZIPF,
	W_HOTSET,
	W_HOTSCAN,
	W_CHASE,
	W_RWMIX,
	W_BFS,
	W_SORT,
	W_STREAM,
	W_COUNT
};

enum bs { S_HMMAP, S_MMAP_COLD, S_MMAP_WARM, S_PREAD, S_COUNT };

/* What a data file holds. */
enum bkind { D_ARRAY, D_GRAPH, D_KEYS, D_STREAM };

#define B_HDR_WORDS  512u                  /* the first 4 KiB of every data file */
#define B_ITEM_WORDS 512u                  /* random workloads touch 4 KiB items */
#define B_LINE_WORDS 8u                    /* pointer chasing and scans work in 64-byte lines */
#define B_FILE_ALIGN (2u << 20)            /* files are padded to the largest page size */
#define B_MAGIC      0x68626e6368303031ull /* "hbnch001" */

/* A generated data file and where each part of it lies (in 64-bit words). */
struct bdata {
	char path[4096];
	int kind;
	uint64_t file_bytes; /* a multiple of B_FILE_ALIGN */
	uint64_t data_bytes; /* what "the data" is for the default cache size */
	uint64_t param;      /* the size or the graph scale it was made for */
	/* array */
	uint64_t items, lines;
	/* graph: CSR, offsets[nv + 1] then adj[ne] */
	uint64_t nv, ne, root, off_w, adj_w;
	/* keys: input then output area */
	uint64_t nkeys, in_w, out_w, key_sum, key_xor;
	/* stream: a, b, c */
	uint64_t n, a_w, b_w, c_w;
};

/* The parameters of one workload run. */
struct bparams {
	int threads;
	uint64_t ops;           /* per thread, random workloads and chase */
	double alpha;           /* Zipf exponent */
	double hot_frac;        /* hot set: fraction of items */
	double hot_share;       /* hot set: fraction of operations that go to it */
	double wfrac;           /* fraction of writes; < 0 for the workload's default */
	uint64_t scan_every;    /* hotscan: operations between scans (0: ops / 4) */
	int passes;             /* stream: triad passes */
	uint64_t run_bytes;     /* sort: bytes per initial run (all threads together) */
	uint64_t seed;          /* differs per repetition, same for every system */
	const double *zipf_cdf; /* W_ZIPF: items entries, built by the parent */
};

/* What a run reports. */
struct bout {
	double secs;
	double units;      /* operations, edges or bytes, see bench_unit() */
	uint64_t bad;      /* verification failures */
	uint64_t check[2]; /* a result that must agree across systems (BFS) */
	double best_pass_secs; /* stream: the fastest pass after the first, or 0 */
	char err[240];
};

struct bpool;

struct bmem {
	uint64_t *base; /* the mapping, or NULL for the pool */
	struct bpool *pool;
	uint64_t nwords; /* words in the file */
	unsigned wshift; /* log2(words per pool page) */
	/* Makes every write durable (timed by the sort). 0 or -errno. */
	int (*sync)(struct bmem *m);
	void *sync_ctx;
	uint64_t sync_len;
};

/* The pool: budget / page frames, CLOCK replacement, pread/pwrite. */
int bpool_new(struct bpool **pool, const char *path, uint64_t budget, uint64_t page, int threads,
              char *err, size_t errlen);
/* The frame of page `pg` (read in if absent), pinned until bpool_put(). */
uint64_t *bpool_get(struct bpool *pool, uint64_t pg, int write, void **tok);
void bpool_put(struct bpool *pool, void *tok);
/* Writes every dirty frame back and fdatasyncs the file. 0 or -errno. */
int bpool_flush(struct bpool *pool);
void bpool_stats(struct bpool *pool, uint64_t *misses, uint64_t *evictions, uint64_t *writebacks,
                 uint64_t *bytes_read);
void bpool_free(struct bpool *pool);

static inline uint64_t *bm_get(struct bmem *m, uint64_t w, int write, uint64_t *avail, void **tok)
{
	if (m->base) {
		*avail = m->nwords - w;
		*tok = NULL;
		return m->base + w;
	}
	uint64_t in = w & ((1ull << m->wshift) - 1);
	uint64_t *f = bpool_get(m->pool, w >> m->wshift, write, tok);
	*avail = (1ull << m->wshift) - in;
	return f + in;
}

static inline void bm_put(struct bmem *m, void *tok)
{
	if (tok)
		bpool_put(m->pool, tok);
}

static inline uint64_t bm_load(struct bmem *m, uint64_t w)
{
	uint64_t avail, v;
	void *tok;

	if (m->base)
		return m->base[w];
	v = *bm_get(m, w, 0, &avail, &tok);
	bm_put(m, tok);
	return v;
}

/* The generator every workload verifies against. */
static inline uint64_t bmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Array files: word r (counted after the header) and its written value. */
static inline uint64_t barr_orig(uint64_t r)
{
	return bmix(r);
}

static inline uint64_t barr_upd(uint64_t r)
{
	return bmix(r) ^ 0x5555aaaa5555aaaaull;
}

/* The smallest 2^k - 1 >= lines - 1: the LCG's modulus, minus one. */
static inline uint64_t bchase_mask(uint64_t lines)
{
	uint64_t mask = 1;

	while (mask < lines)
		mask <<= 1;
	return mask - 1;
}

/*
 * The next line of the pointer chain: a full-period LCG modulo 2^k,
 * cycle-walked to stay below `lines`, so that the chain visits every line.
 */
static inline uint64_t bchase_next(uint64_t x, uint64_t lines, uint64_t mask)
{
	do
		x = (x * 6364136223846793005ull + 1442695040888963407ull) & mask;
	while (x >= lines);
	return x;
}

/* Stream arrays: exact in double, so a triad result can be compared with ==. */
static inline double bstream_b(uint64_t i)
{
	return (double)(i % 1021);
}

static inline double bstream_c(uint64_t i)
{
	return (double)(i % 1019);
}

#define B_STREAM_SCALAR 3.0

/* bench_data.c */
int bdata_make(struct bdata *d, int kind, const char *path, uint64_t param, int reuse, char *err,
               size_t errlen);
/* Writes the sort input again (a sort run leaves it in sorted runs). */
int bdata_reset_keys(const struct bdata *d, char *err, size_t errlen);
int bench_data_kind(int workload);

/* bench_work.c */
int bench_workload(int workload, struct bmem *m, const struct bdata *d, const struct bparams *p,
                   struct bout *o);
const char *bench_unit(int workload);
double *bench_zipf_cdf(uint64_t n, double alpha);

#endif
