/* SPDX-License-Identifier: MIT */
/*
 * Regions that map a byte-addressable medium itself: HM_DIRECT (the medium,
 * read-write) and HM_HYBRID (the medium read-only, written pages moved into
 * DRAM frames). region.c and sync.c call these hooks for such regions
 * instead of the page-cache machinery, which never sees their pages: they
 * have no cache slots, no page entries in r->dir, and no userfaultfd faults
 * other than asynchronous write protection (direct mode's dirty tracking).
 */
#ifndef HM_CORE_DIRECT_H
#define HM_CORE_DIRECT_H

#include "core/internal.h"

/* Per-region state of a direct or hybrid region (r->bam). */
struct hm_bam {
	uint64_t medium_len;   /* bytes of the span backed by the medium (page-rounded) */
	bool track;            /* written pages are tracked (asynchronous WP) */
	struct hm_hybrid *hybrid;
};

static inline bool hm__region_is_bam(const struct hm_region *r)
{
	return r->flags & (HM_DIRECT | HM_HYBRID);
}

/* Whether store s can back a region of mode `flags` with `prot`: 0 or -errno (message set). */
int hm__bam_check(const struct hm_store *s, int flags, int prot);
/*
 * Maps the medium for r (its fields set, base not yet mapped): reserves the
 * span, maps the store over it, starts dirty tracking (direct) or the
 * hybrid state. On failure r->base may be set; teardown unmaps it.
 */
int hm__bam_map(struct hm_region *r);
/* Reserves r's span and maps the medium over it with prot (sets medium_len). */
int hm__bam_map_medium(struct hm_region *r, int prot);
/* Frees what hm__bam_map() made besides the mapping (called by teardown). */
void hm__bam_teardown(struct hm_region *r);
/*
 * hmsync for [idx, idx+n): hybrid pages go back to the medium, written
 * bytes are counted, and with MS_SYNC the store makes the range durable.
 */
int hm__bam_sync(struct hm_region *r, uint64_t idx, uint64_t n, int flags);
int hm__bam_advise(struct hm_region *r, uint64_t idx, uint64_t n, int advice);
int hm__bam_prefault(struct hm_region *r, uint64_t idx, uint64_t n, int flags);
int hm__bam_unpin(struct hm_region *r, uint64_t idx, uint64_t n);

/* ---- hybrid (src/core/hybrid.c) ---- */
/* Maps a hybrid region's medium and sets up its state (from hm__bam_map). */
int hm__hybrid_init(struct hm_region *r);
void hm__hybrid_free(struct hm_region *r);
/* Writes back and returns to the medium every held page of [idx, idx+n). */
int hm__hybrid_writeback(struct hm_region *r, uint64_t idx, uint64_t n);
/*
 * Moves pages [idx, idx+n) into DRAM now, so that system calls may write
 * them; with pin they stay until hm__hybrid_unpin() (never victims).
 */
int hm__hybrid_take(struct hm_region *r, uint64_t idx, uint64_t n, bool pin);
void hm__hybrid_unpin(struct hm_region *r, uint64_t idx, uint64_t n);
/* Held pages that are pinned now (for hm_region_stats). */
uint64_t hm__hybrid_pinned(const struct hm_region *r);
/* Marks [idx, idx+n) read-only (no copy on write: SIGSEGV) or writable again. */
int hm__hybrid_protect(struct hm_region *r, uint64_t idx, uint64_t n, bool ro);
/*
 * hmunmap of [idx, idx+n): no write takes those pages into DRAM again, and
 * the held ones are written back to the medium (pins dropped). On failure
 * nothing is marked and the error is returned; hm__hybrid_ungone() undoes
 * a success (the caller failed later).
 */
int hm__hybrid_gone(struct hm_region *r, uint64_t idx, uint64_t n);
void hm__hybrid_ungone(struct hm_region *r, uint64_t idx, uint64_t n);
/* Pages a hybrid region may hold in DRAM at once. */
uint64_t hm__hybrid_capacity(const struct hm_region *r);

/* ---- CPU cache flushing (src/stores/pmem.c) ---- */
void hm__cpu_flush(const void *addr, size_t len);
const char *hm__cpu_flush_name(void);

#endif
