/* SPDX-License-Identifier: MIT */
/*
 * Prefetch workers: asynchronous readahead. A sequential reader queues
 * windows ahead of itself and goes on; workers read them into the cache so
 * that several large store requests are in flight at once, as the kernel's
 * readahead keeps them for mmap. Requests hold a reference on their region,
 * so a region is not unmapped under a worker. When the queue is full a
 * request is dropped: readahead is a hint, and the reader then faults
 * synchronously.
 */
#include <signal.h>

#include "core/internal.h"

#define QUEUE 128
#define WORKERS 4

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct {
		struct hm_region *r;
		uint64_t idx;
		uint32_t n, gen;
	} q[QUEUE];
	uint32_t head, count;
	int started;
} pf = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void *worker(void *arg)
{

	hm__block_signals();
	pthread_mutex_lock(&pf.lock);
	for (;;) {
		while (!pf.count)
			pthread_cond_wait(&pf.cond, &pf.lock);
		struct hm_region *r = pf.q[pf.head].r;
		uint64_t idx = pf.q[pf.head].idx;
		uint32_t n = pf.q[pf.head].n;
		uint32_t gen = pf.q[pf.head].gen;
		pf.head = (pf.head + 1) % QUEUE;
		pf.count--;
		atomic_fetch_sub(&r->ra_queued, 1);
		pthread_mutex_unlock(&pf.lock);
		hm__readahead(r, idx, n, gen);
		hm__region_put(r);
		pthread_mutex_lock(&pf.lock);
	}
	return NULL;
}

/*
 * Starts the workers, once, from an ordinary call (a region being mapped):
 * queueing happens on the fault path, possibly in a SIGBUS handler, where
 * creating a thread is not allowed.
 */
void hm__prefetch_start(void)
{
	pthread_mutex_lock(&pf.lock);
	if (!pf.started) {
		pf.started = 1;
		for (int i = 0; i < WORKERS; i++) {
			pthread_t t;
			if (!pthread_create(&t, NULL, worker, NULL))
				pthread_detach(t);
		}
	}
	pthread_mutex_unlock(&pf.lock);
}

/* Whether page idx of r holds data or is being loaded. */
static bool taken(struct hm_region *r, uint64_t idx)
{
	struct hm_page *p = hm__page(r, idx, false);

	return p && (atomic_load(&p->st) & HM_ST_MASK) != HM_ST_EMPTY;
}

/*
 * Queues [idx, idx+n) of r. In thread mode the handler queues a fault's
 * windows after UFFDIO_COPY woke the faulting thread, which may have gone
 * on and loaded the front of the window itself, and trimmed the queue
 * (hm__prefetch_trim()) before this window was in it. That front is behind
 * the reader: it is dropped here. The reader claims its pages, then reads
 * ra_queued to decide whether to trim; this counts the window in ra_queued,
 * then reads the pages (all seq_cst, and under the queue's lock, which the
 * trim takes): either the reader trims this window, or this sees the
 * reader's pages taken. (A worker that came to such a front after the
 * cache had evicted it read it again: 68 pages for a scan of 64, seen under
 * TSan.)
 */
void hm__prefetch_queue(struct hm_region *r, uint64_t idx, uint32_t n, uint32_t gen)
{
	pthread_mutex_lock(&pf.lock);
	if (pf.started && pf.count < QUEUE && !r->dying) {
		atomic_fetch_add(&r->ra_queued, 1);
		while (n && taken(r, idx)) {
			idx++;
			n--;
		}
		if (n) {
			uint32_t tail = (pf.head + pf.count) % QUEUE;
			hm__region_hold(r);
			pf.q[tail].r = r;
			pf.q[tail].idx = idx;
			pf.q[tail].n = n;
			pf.q[tail].gen = gen;
			pf.count++;
			pthread_cond_signal(&pf.cond);
		} else {
			atomic_fetch_sub(&r->ra_queued, 1);
		}
	}
	pthread_mutex_unlock(&pf.lock);
}

/*
 * A reader got to a window before a worker did and loads [idx, idx+n)
 * itself: windows of r still queued that overlap it lose what lies before
 * idx+n. That part is behind the reader now, and a worker that came to it
 * after the cache had evicted those pages (a worker can lag a fast reader
 * by the whole scan) would read them again for nobody and push pages in
 * use out. A window left empty stays queued; its worker only drops the
 * reference.
 */
void hm__prefetch_trim(struct hm_region *r, uint64_t idx, uint32_t n)
{
	uint64_t end = idx + n;

	pthread_mutex_lock(&pf.lock);
	for (uint32_t i = 0; i < pf.count; i++) {
		uint32_t k = (pf.head + i) % QUEUE;
		uint64_t wend = pf.q[k].idx + pf.q[k].n;
		if (pf.q[k].r != r || pf.q[k].idx >= end || wend <= idx)
			continue;
		pf.q[k].n = wend > end ? (uint32_t)(wend - end) : 0;
		pf.q[k].idx = end;
	}
	pthread_mutex_unlock(&pf.lock);
}

/*
 * fork(): the workers do not exist in the child and the queued windows
 * hold references on the parent's regions; the child starts with an empty
 * queue and starts its own workers at its first map.
 */
void hm__prefetch_fork(int phase)
{
	switch (phase) {
	case HM_FORK_PREPARE:
		pthread_mutex_lock(&pf.lock);
		break;
	case HM_FORK_PARENT:
		pthread_mutex_unlock(&pf.lock);
		break;
	case HM_FORK_CHILD:
		pf.head = pf.count = 0;
		pf.started = 0;
		/* The condition variable counted the parent's waiting workers. */
		pthread_cond_init(&pf.cond, NULL);
		pthread_mutex_unlock(&pf.lock);
		break;
	}
}
