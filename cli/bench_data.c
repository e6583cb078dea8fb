/* SPDX-License-Identifier: MIT */
/*
 * `hmmap bench` data files. Each is made by a deterministic generator, so
 * every system reads the same bytes and every workload knows what it must
 * see. The first 4 KiB hold a header (magic, kind, the size or scale it was
 * made for, where each part lies), so that a kept file (--keep, --file) is
 * recognised and reused, and a file that is not ours is never overwritten.
 *
 *   array   word r (after the header) is bmix(r), except word 0 of each
 *           64-byte line, which is the next line of one pointer chain that
 *           visits every line (bchase_next).
 *   graph   a CSR graph: offsets[nv + 1] then adj[ne], 64-bit each, made
 *           by an R-MAT generator (Graph500's A=0.57, B=C=0.19, edge factor
 *           16), symmetric, vertex labels scrambled. Scale 20 is 264 MiB.
 *   keys    n 64-bit keys bmix(i ^ K), then an output area of n words.
 *   stream  the arrays a (zeros), b and c of STREAM's triad.
 *
 * Files are padded to 2 MiB, the largest page size, so any page size reads
 * whole pages and a write-back never extends the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "bench.h"

#define KEY_SALT 0xabcdef12345ull
#define CHUNK    (4u << 20)

enum { H_MAGIC, H_KIND, H_PARAM, H_FILE, H_A, H_B, H_C, H_D, H_E, H_F };

int bench_data_kind(int w)
{
	switch (w) {
	case W_BFS:
		return D_GRAPH;
	case W_SORT:
		return D_KEYS;
	case W_STREAM:
		return D_STREAM;
	default:
		return D_ARRAY;
	}
}

static uint64_t pad(uint64_t b)
{
	return (b + B_FILE_ALIGN - 1) / B_FILE_ALIGN * B_FILE_ALIGN;
}

/* Fills in the layout of a file of `kind` made for `param`. */
static int layout(struct bdata *d, int kind, uint64_t param, char *err, size_t errlen)
{
	d->kind = kind;
	d->param = param;
	switch (kind) {
	case D_ARRAY:
		d->items = param / 4096;
		if (d->items < 4) {
			snprintf(err, errlen,
			         "--size must be at least 16K for the array workloads");
			return -EINVAL;
		}
		d->lines = d->items * (B_ITEM_WORDS / B_LINE_WORDS);
		d->data_bytes = d->items * 4096;
		d->file_bytes = pad(4096 + d->data_bytes);
		return 0;
	case D_GRAPH:
		if (param < 4 || param > 24) {
			snprintf(err, errlen, "--scale must be from 4 to 24");
			return -EINVAL;
		}
		d->nv = 1ull << param;
		d->ne = 2 * 16 * d->nv;
		d->off_w = B_HDR_WORDS;
		d->adj_w = d->off_w + d->nv + 1;
		d->data_bytes = (d->nv + 1 + d->ne) * 8;
		d->file_bytes = pad((d->adj_w + d->ne) * 8);
		return 0;
	case D_KEYS:
		d->nkeys = param / 8 / 512 * 512;
		if (d->nkeys < 1024) {
			snprintf(err, errlen, "--size must be at least 8K for the sort");
			return -EINVAL;
		}
		/* Both areas start on a 2 MiB boundary: a run is whole pages of any size. */
		d->in_w = B_FILE_ALIGN / 8;
		d->out_w = pad((d->in_w + d->nkeys) * 8) / 8;
		d->data_bytes = d->nkeys * 8;
		d->file_bytes = pad((d->out_w + d->nkeys) * 8);
		return 0;
	case D_STREAM:
		d->n = param / 24 / 512 * 512;
		if (d->n < 512) {
			snprintf(err, errlen, "--size must be at least 12K for stream");
			return -EINVAL;
		}
		d->a_w = B_HDR_WORDS;
		d->b_w = d->a_w + d->n;
		d->c_w = d->b_w + d->n;
		d->data_bytes = 3 * d->n * 8;
		d->file_bytes = pad((d->c_w + d->n) * 8);
		return 0;
	}
	return -EINVAL;
}

static void header(const struct bdata *d, uint64_t *h)
{
	memset(h, 0, 4096);
	h[H_MAGIC] = B_MAGIC;
	h[H_KIND] = (uint64_t)d->kind;
	h[H_PARAM] = d->param;
	h[H_FILE] = d->file_bytes;
	h[H_A] = d->root;
	h[H_B] = d->key_sum;
	h[H_C] = d->key_xor;
}

static int write_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const char *p = buf;

	while (n) {
		ssize_t k = pwrite(fd, p, n, (off_t)off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

static int gen_array(const struct bdata *d, int fd)
{
	uint64_t *buf = malloc(CHUNK);
	uint64_t words = d->items * B_ITEM_WORDS, mask = bchase_mask(d->lines);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t r0 = 0; r0 < words && !rc; r0 += CHUNK / 8) {
		uint64_t n = words - r0 < CHUNK / 8 ? words - r0 : CHUNK / 8;
		for (uint64_t k = 0; k < n; k++) {
			uint64_t r = r0 + k;
			buf[k] = r % B_LINE_WORDS ? barr_orig(r)
			                          : bchase_next(r / B_LINE_WORDS, d->lines, mask);
		}
		rc = write_all(fd, buf, n * 8, 4096 + r0 * 8);
	}
	free(buf);
	return rc;
}

static uint64_t scramble(uint64_t v, uint64_t mask)
{
	v = (v * 0x9e3779b97f4a7c15ull) & mask;
	v ^= 0x5bd1e9955bd1e995ull & mask;
	return (v * 0xbf58476d1ce4e5b9ull) & mask;
}

static int gen_graph(struct bdata *d, int fd)
{
	uint64_t nv = d->nv, m = d->ne / 2, mask = nv - 1, s = 0x5eed0000ull + d->param;
	uint32_t *src = malloc(m * 4), *dst = malloc(m * 4);
	uint64_t *off = calloc(nv + 1, 8), *adj = malloc(d->ne * 8), *cur = NULL;
	int rc = -ENOMEM;

	if (!src || !dst || !off || !adj)
		goto out;
	/*
	 * R-MAT: each edge picks a quadrant per level with probabilities
	 * A=0.57, B=0.19, C=0.19, D=0.05, using 16 random bits per level.
	 */
	for (uint64_t e = 0; e < m; e++) {
		uint64_t u = 0, v = 0, r = 0;
		for (uint64_t l = 0; l < d->param; l++) {
			if (l % 4 == 0)
				r = bmix(s++);
			uint32_t x = (uint32_t)(r & 0xffff);
			r >>= 16;
			u <<= 1;
			v <<= 1;
			if (x < 37355) /* A */
				;
			else if (x < 49807) /* B */
				v |= 1;
			else if (x < 62259) /* C */
				u |= 1;
			else
				u |= 1, v |= 1;
		}
		src[e] = (uint32_t)scramble(u, mask);
		dst[e] = (uint32_t)scramble(v, mask);
		off[src[e] + 1]++;
		off[dst[e] + 1]++;
	}
	for (uint64_t v = 0; v < nv; v++)
		off[v + 1] += off[v];
	cur = malloc(nv * 8);
	if (!cur)
		goto out;
	memcpy(cur, off, nv * 8);
	for (uint64_t e = 0; e < m; e++) {
		adj[cur[src[e]]++] = dst[e];
		adj[cur[dst[e]]++] = src[e];
	}
	/* The root: the first vertex, in a fixed pseudo-random order, with an edge. */
	for (uint64_t k = 0;; k++) {
		uint64_t v = bmix(k) & mask;
		if (off[v + 1] > off[v]) {
			d->root = v;
			break;
		}
	}
	if ((rc = write_all(fd, off, (nv + 1) * 8, d->off_w * 8)))
		goto out;
	rc = write_all(fd, adj, d->ne * 8, d->adj_w * 8);
out:
	free(src);
	free(dst);
	free(off);
	free(adj);
	free(cur);
	return rc;
}

static int gen_keys(struct bdata *d, int fd)
{
	uint64_t *buf = malloc(CHUNK), sum = 0, x = 0;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t i0 = 0; i0 < d->nkeys && !rc; i0 += CHUNK / 8) {
		uint64_t n = d->nkeys - i0 < CHUNK / 8 ? d->nkeys - i0 : CHUNK / 8;
		for (uint64_t k = 0; k < n; k++) {
			buf[k] = bmix((i0 + k) ^ KEY_SALT);
			sum += buf[k];
			x ^= buf[k];
		}
		rc = write_all(fd, buf, n * 8, (d->in_w + i0) * 8);
	}
	d->key_sum = sum;
	d->key_xor = x;
	free(buf);
	return rc;
}

static int gen_stream(const struct bdata *d, int fd)
{
	double *buf = malloc(CHUNK);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (int arr = 0; arr < 3 && !rc; arr++) {
		uint64_t base = arr == 0 ? d->a_w : arr == 1 ? d->b_w : d->c_w;
		for (uint64_t i0 = 0; i0 < d->n && !rc; i0 += CHUNK / 8) {
			uint64_t n = d->n - i0 < CHUNK / 8 ? d->n - i0 : CHUNK / 8;
			for (uint64_t k = 0; k < n; k++)
				buf[k] = arr == 0   ? 0.0
				         : arr == 1 ? bstream_b(i0 + k)
				                    : bstream_c(i0 + k);
			rc = write_all(fd, buf, n * 8, (base + i0) * 8);
		}
	}
	free(buf);
	return rc;
}

/* 1 if `path` holds a file this generator made for the same kind and param. */
static int reusable(struct bdata *d, const char *path, int *foreign)
{
	uint64_t h[8];
	/* O_NONBLOCK: a FIFO at --file is refused below, not waited on for a writer. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	struct stat st;
	int ok = 0;

	*foreign = 0;
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		*foreign = 1; /* a FIFO, a directory, a character device: never overwritten */
		close(fd);
		return 0;
	}
	if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || h[H_MAGIC] != B_MAGIC) {
		fstat(fd, &st);
		*foreign = st.st_size > 0;
		close(fd);
		return 0;
	}
	if (h[H_KIND] == (uint64_t)d->kind && h[H_PARAM] == d->param &&
	    h[H_FILE] == d->file_bytes && !fstat(fd, &st) &&
	    (uint64_t)st.st_size == d->file_bytes) {
		d->root = h[H_A];
		d->key_sum = h[H_B];
		d->key_xor = h[H_C];
		ok = 1;
	}
	close(fd);
	return ok;
}

int bdata_make(struct bdata *d, int kind, const char *path, uint64_t param, int reuse, char *err,
               size_t errlen)
{
	uint64_t *h = NULL;
	int fd, rc, foreign;

	memset(d, 0, sizeof *d);
	if (strlen(path) >= sizeof d->path) {
		snprintf(err, errlen, "path too long: %.100s", path);
		return -ENAMETOOLONG;
	}
	strcpy(d->path, path);
	if ((rc = layout(d, kind, param, err, errlen)))
		return rc;
	if (reusable(d, path, &foreign)) {
		if (reuse)
			return 0;
	} else if (foreign) {
		snprintf(err, errlen,
		         "%.200s exists and is not an hmmap bench data file; not "
		         "overwriting it",
		         path);
		return -EEXIST;
	}
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %.200s: %s", path, strerror(errno));
		return rc;
	}
	/* Refuse up front rather than fill the file system and fail half-way. */
	struct statvfs sv;
	if (!fstatvfs(fd, &sv) && (uint64_t)sv.f_bavail * sv.f_frsize < d->file_bytes) {
		snprintf(err, errlen,
		         "%.200s: the data needs %llu MiB, the file system has %llu MiB free", path,
		         (unsigned long long)(d->file_bytes >> 20),
		         (unsigned long long)(((uint64_t)sv.f_bavail * sv.f_frsize) >> 20));
		close(fd);
		unlink(path);
		return -ENOSPC;
	}
	if (ftruncate(fd, (off_t)d->file_bytes)) {
		rc = -errno;
		goto fail;
	}
	switch (kind) {
	case D_ARRAY:
		rc = gen_array(d, fd);
		break;
	case D_GRAPH:
		rc = gen_graph(d, fd);
		break;
	case D_KEYS:
		rc = gen_keys(d, fd);
		break;
	default:
		rc = gen_stream(d, fd);
		break;
	}
	if (rc)
		goto fail;
	/* The header last: a file cut short by a crash is never taken as complete. */
	h = malloc(4096);
	if (!h) {
		rc = -ENOMEM;
		goto fail;
	}
	header(d, h);
	if ((rc = write_all(fd, h, 4096, 0)) || (fsync(fd) && (rc = -errno)))
		goto fail;
	free(h);
	close(fd);
	return 0;
fail:
	snprintf(err, errlen, "cannot write %.200s: %s", path, strerror(-rc));
	free(h);
	close(fd);
	unlink(path);
	return rc;
}

int bdata_reset_keys(const struct bdata *d, char *err, size_t errlen)
{
	int fd = open(d->path, O_RDWR | O_CLOEXEC), rc;
	struct bdata tmp = *d;

	if (fd < 0) {
		snprintf(err, errlen, "cannot open %.200s: %s", d->path, strerror(errno));
		return -errno;
	}
	rc = gen_keys(&tmp, fd);
	if (!rc && fdatasync(fd))
		rc = -errno;
	close(fd);
	if (rc)
		snprintf(err, errlen, "cannot rewrite the keys of %.200s: %s", d->path,
		         strerror(-rc));
	return rc;
}
