/* SPDX-License-Identifier: MIT */
/*
 * The read loop of a store kept in 4 KiB pages that live apart (compressed
 * objects, tier slots): a request is split at page boundaries, each page is
 * produced whole under its page's lock, and a partial page goes through a
 * bounce page. Pages at or past `npages` read as zeros.
 */
#ifndef HM_STORES_PAGED_H
#define HM_STORES_PAGED_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define HM_PAGED_SIZE 4096u

struct hm_paged_ops {
	pthread_mutex_t *(*lock)(void *ctx, uint64_t pg);
	/* Fills dst with the HM_PAGED_SIZE bytes of page pg; 0 or -errno. */
	int (*get)(void *ctx, uint64_t pg, char *dst);
};

static inline int hm__paged_read(const struct hm_paged_ops *ops, void *ctx, uint64_t npages,
				 void *buf, size_t len, uint64_t off)
{
	char *out = buf;
	int rc = 0;

	while (len) {
		uint64_t pg = off / HM_PAGED_SIZE;
		size_t in = (size_t)(off % HM_PAGED_SIZE);
		size_t n = HM_PAGED_SIZE - in < len ? HM_PAGED_SIZE - in : len;

		if (pg >= npages) {
			memset(out, 0, len);
			return 0;
		}
		pthread_mutex_lock(ops->lock(ctx, pg));
		if (in == 0 && n == HM_PAGED_SIZE) {
			rc = ops->get(ctx, pg, out);
		} else {
			char page[HM_PAGED_SIZE] __attribute__((aligned(64)));
			rc = ops->get(ctx, pg, page);
			if (!rc)
				memcpy(out, page + in, n);
		}
		pthread_mutex_unlock(ops->lock(ctx, pg));
		if (rc)
			return rc;
		out += n;
		off += n;
		len -= n;
	}
	return 0;
}

#endif
