/* SPDX-License-Identifier: MIT */
/*
 * The classic user-space buffer pool that `hmmap bench` compares with: a
 * fixed array of budget / page frames, a hash table from page number to
 * frame, CLOCK replacement, pread to fill a frame and pwrite to clean one.
 * The file is opened O_DIRECT when the file system allows it, as hmmap's
 * file store does, so that pages are cached once, in the pool. The frames
 * ask for transparent huge pages, as hmmap's bounce buffers do: an O_DIRECT
 * read into contiguous memory is one segment for the device.
 *
 * Every access goes through bpool_get()/bpool_put() under one mutex; I/O
 * is done outside it. A frame being read or written back is BUSY: a thread
 * that wants its page waits on the condition variable. A dirty victim
 * stays in the table under its old page until its write-back is done, so
 * nobody reads that page from the file before it is there.
 *
 * The pool runs only in a benchmark child process: an I/O error or a pool
 * whose frames are all pinned ends the child with a message (the parent
 * reports the run as failed), which keeps the workloads' loops free of
 * error paths.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hmmap.h"
#include "bench.h"

#define NO_PAGE UINT64_MAX

enum { F_FREE, F_VALID, F_BUSY };

struct frame {
	uint64_t page;
	int32_t next; /* hash chain, -1 ends it */
	int32_t pin;
	uint8_t ref, dirty, state;
};

struct bpool {
	int fd;
	uint64_t page, nframes, hand;
	char *mem;
	struct frame *f;
	int32_t *bucket;
	uint64_t bmask;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t misses, evictions, writebacks, bytes_read;
};

static void fatal(const char *what, int e)
{
	fprintf(stderr, "hmmap bench: pread pool: %s: %s\n", what, strerror(e));
	_exit(3);
}

static uint64_t hash(struct bpool *p, uint64_t pg)
{
	return (pg * 0x9e3779b97f4a7c15ull >> 17) & p->bmask;
}

static int32_t find(struct bpool *p, uint64_t pg)
{
	for (int32_t i = p->bucket[hash(p, pg)]; i >= 0; i = p->f[i].next)
		if (p->f[i].page == pg)
			return i;
	return -1;
}

static void insert(struct bpool *p, int32_t i)
{
	uint64_t h = hash(p, p->f[i].page);

	p->f[i].next = p->bucket[h];
	p->bucket[h] = i;
}

static void unlink_frame(struct bpool *p, int32_t i)
{
	int32_t *pp = &p->bucket[hash(p, p->f[i].page)];

	while (*pp != i)
		pp = &p->f[*pp].next;
	*pp = p->f[i].next;
}

static char *frame_mem(struct bpool *p, int32_t i)
{
	return p->mem + (uint64_t)i * p->page;
}

static void io(struct bpool *p, int32_t i, uint64_t pg, int write)
{
	char *buf = frame_mem(p, i);
	uint64_t done = 0;

	while (done < p->page) {
		ssize_t n =
		    write ? pwrite(p->fd, buf + done, p->page - done, (off_t)(pg * p->page + done))
		          : pread(p->fd, buf + done, p->page - done, (off_t)(pg * p->page + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fatal(write ? "pwrite" : "pread", errno);
		if (n == 0) {
			if (write)
				fatal("pwrite", EIO);
			memset(buf + done, 0, p->page - done); /* past the end: zeros */
			break;
		}
		done += (uint64_t)n;
	}
}

/* CLOCK: the first unpinned, idle frame whose reference bit is clear. */
static int32_t victim(struct bpool *p)
{
	for (uint64_t step = 0; step < 3 * p->nframes; step++) {
		int32_t i = (int32_t)p->hand;
		struct frame *f = &p->f[i];

		p->hand = (p->hand + 1) % p->nframes;
		if (f->state == F_FREE)
			return i;
		if (f->pin || f->state == F_BUSY)
			continue;
		if (f->ref) {
			f->ref = 0;
			continue;
		}
		return i;
	}
	return -1;
}

uint64_t *bpool_get(struct bpool *p, uint64_t pg, int write, void **tok)
{
	int32_t i, v;

	pthread_mutex_lock(&p->lock);
retry:
	i = find(p, pg);
	if (i >= 0) {
		if (p->f[i].state == F_BUSY) {
			pthread_cond_wait(&p->cond, &p->lock);
			goto retry;
		}
		p->f[i].pin++;
		p->f[i].ref = 1;
		p->f[i].dirty |= (uint8_t)write;
		pthread_mutex_unlock(&p->lock);
		*tok = &p->f[i];
		return (uint64_t *)frame_mem(p, i);
	}
	v = victim(p);
	if (v < 0) {
		pthread_mutex_unlock(&p->lock);
		fatal("every frame is pinned", ENOMEM);
	}
	if (p->f[v].state == F_VALID) {
		struct frame *f = &p->f[v];
		if (f->dirty) {
			f->state = F_BUSY;
			f->pin = 1;
			pthread_mutex_unlock(&p->lock);
			io(p, v, f->page, 1);
			pthread_mutex_lock(&p->lock);
			p->writebacks++;
			f->dirty = 0;
			f->pin = 0;
		}
		unlink_frame(p, v);
		f->page = NO_PAGE;
		f->state = F_FREE;
		p->evictions++;
		pthread_cond_broadcast(&p->cond);
		/* Another thread may have read our page in while we wrote. */
		if (find(p, pg) >= 0)
			goto retry;
	}
	p->f[v].page = pg;
	p->f[v].state = F_BUSY;
	p->f[v].pin = 1;
	p->f[v].ref = 1;
	p->f[v].dirty = (uint8_t)write;
	insert(p, v);
	p->misses++;
	p->bytes_read += p->page;
	pthread_mutex_unlock(&p->lock);
	io(p, v, pg, 0);
	pthread_mutex_lock(&p->lock);
	p->f[v].state = F_VALID;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	*tok = &p->f[v];
	return (uint64_t *)frame_mem(p, v);
}

void bpool_put(struct bpool *p, void *tok)
{
	struct frame *f = tok;

	pthread_mutex_lock(&p->lock);
	f->pin--;
	pthread_mutex_unlock(&p->lock);
}

int bpool_flush(struct bpool *p)
{
	pthread_mutex_lock(&p->lock);
	for (uint64_t i = 0; i < p->nframes; i++) {
		struct frame *f = &p->f[i];
		if (f->state == F_VALID && f->dirty) {
			io(p, (int32_t)i, f->page, 1);
			f->dirty = 0;
			p->writebacks++;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return fdatasync(p->fd) ? -errno : 0;
}

void bpool_stats(struct bpool *p, uint64_t *misses, uint64_t *evictions, uint64_t *writebacks,
                 uint64_t *bytes_read)
{
	pthread_mutex_lock(&p->lock);
	*misses = p->misses;
	*evictions = p->evictions;
	*writebacks = p->writebacks;
	*bytes_read = p->bytes_read;
	pthread_mutex_unlock(&p->lock);
}

int bpool_new(struct bpool **out, const char *path, uint64_t budget, uint64_t page, int threads,
              char *err, size_t errlen)
{
	struct bpool *p = calloc(1, sizeof *p);
	uint64_t nb = 1;

	if (!p)
		return -ENOMEM;
	p->page = page;
	p->nframes = budget / page;
	if (p->nframes < 4 + 4 * (uint64_t)threads) {
		snprintf(err, errlen,
		         "pread pool: a budget of %llu bytes holds %llu pages of %llu "
		         "bytes; it needs at least %d",
		         (unsigned long long)budget, (unsigned long long)p->nframes,
		         (unsigned long long)page, 4 + 4 * threads);
		free(p);
		return -EINVAL;
	}
	p->fd = open(path, O_RDWR | O_CLOEXEC | O_DIRECT);
	if (p->fd < 0)
		p->fd = open(path, O_RDWR | O_CLOEXEC);
	if (p->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "pread pool: cannot open %.200s: %s", path, strerror(e));
		free(p);
		return -e;
	}
	while (nb < 2 * p->nframes)
		nb <<= 1;
	p->bmask = nb - 1;
	p->f = calloc(p->nframes, sizeof *p->f);
	p->bucket = malloc(nb * sizeof *p->bucket);
	if (!p->f || !p->bucket || !(p->mem = hm_io_alloc(p->nframes * page))) {
		snprintf(err, errlen, "pread pool: out of memory for %llu frames",
		         (unsigned long long)p->nframes);
		close(p->fd);
		free(p->f);
		free(p->bucket);
		free(p);
		return -ENOMEM;
	}
	memset(p->bucket, 0xff, nb * sizeof *p->bucket);
	for (uint64_t i = 0; i < p->nframes; i++)
		p->f[i].page = NO_PAGE;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	*out = p;
	return 0;
}

void bpool_free(struct bpool *p)
{
	if (!p)
		return;
	close(p->fd);
	hm_io_free(p->mem, p->nframes * p->page);
	free(p->f);
	free(p->bucket);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}
