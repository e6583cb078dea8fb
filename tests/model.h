/* SPDX-License-Identifier: MIT */
/*
 * What the model-based random testers (test_model.c, test_fault_model.c)
 * share: the cache policies they draw from, the ring of last operations a
 * failure report prints, and the random spans of a mapping their calls
 * take. Pseudo-random bytes are testutil.h's tu_fill_bytes(). Include after
 * harness.h and testutil.h.
 */
#ifndef HMMAP_TEST_MODEL_H
#define HMMAP_TEST_MODEL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *const model_policies[] = {"fifo",   "clock", "lru",  "sieve",
                                             "s3fifo", "arc",   "lirs", "2q"};
#define MODEL_NPOLICIES (sizeof model_policies / sizeof model_policies[0])

/* The last operations, each prefixed with its index, for a failure report. */
#define MODEL_HIST    32
#define MODEL_HISTLEN 160

struct model_hist {
	char line[MODEL_HIST][MODEL_HISTLEN];
	unsigned n;
};

static inline void model_hist_vadd(struct model_hist *h, unsigned op, const char *fmt, va_list ap)
{
	char *l = h->line[h->n++ % MODEL_HIST];
	int k = snprintf(l, MODEL_HISTLEN, "#%u ", op);

	vsnprintf(l + k, MODEL_HISTLEN - (size_t)k, fmt, ap);
}

static inline void model_hist_print(const struct model_hist *h)
{
	unsigned from = h->n > MODEL_HIST ? h->n - MODEL_HIST : 0;

	for (unsigned i = from; i < h->n; i++)
		printf("    %s\n", h->line[i % MODEL_HIST]);
}

/* Region pages of ps bytes that len bytes take. */
static inline size_t model_pages(size_t ps, size_t len)
{
	return (len + ps - 1) / ps;
}

/* Pages of a mapping not unmapped (gone[i] is set for those that are). */
static inline size_t model_live_pages(const uint8_t *gone, size_t npages)
{
	size_t n = 0;

	for (size_t i = 0; i < npages; i++)
		n += !gone[i];
	return n;
}

static inline size_t model_rndn(uint64_t *rng, size_t n)
{
	return n ? (size_t)(tu_rnd(rng) % n) : 0;
}

/*
 * A random 4 KiB-aligned span of a mapping of len bytes (holes allowed),
 * at times all of it, at times with an unaligned length that the call
 * rounds up.
 */
static inline void model_pick_span(uint64_t *rng, size_t len, size_t *off, size_t *n)
{
	size_t blocks = (len + 4095) / 4096;

	if (model_rndn(rng, 6) == 0) {
		*off = 0;
		*n = len;
		return;
	}
	size_t b = model_rndn(rng, blocks);
	size_t k = 1 + model_rndn(rng, model_rndn(rng, 3) ? blocks / 4 + 1 : blocks);
	if (b + k > blocks)
		k = blocks - b;
	*off = b * 4096;
	*n = k * 4096;
	if (*off + *n > len && model_rndn(rng, 2))
		*n = len - *off;
}

/* Whether [off, off+n) of a mapping, extended to region pages of ps bytes, meets a hole. */
static inline bool model_span_holed(const uint8_t *gone, size_t npages, size_t ps, size_t off,
                                    size_t n)
{
	for (size_t pg = off / ps; pg * ps < off + n && pg < npages; pg++)
		if (gone[pg])
			return true;
	return false;
}

#endif
