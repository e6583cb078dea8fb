/* SPDX-License-Identifier: MIT */
/*
 * Ghost entries: pages a policy remembers by key after evicting them (ARC's
 * B1 and B2, 2Q's A1out, S3-FIFO's ghost queue, LIRS's non-resident HIR
 * blocks). Two pieces, both preallocated at create time so that the hot
 * paths never allocate:
 *
 *   hm__ghost_table  an open-addressing (linear probing, backward-shift
 *                    deletion) map from a 64-bit key to a 32-bit value, for
 *                    a fixed maximum number of entries;
 *   hm__ghost        a bounded queue of keys, oldest first, with O(1)
 *                    lookup, removal by key, append and drop-oldest.
 */
#ifndef HM_POLICIES_GHOST_H
#define HM_POLICIES_GHOST_H

#include <stdint.h>

#include "policies/links.h"

#define HM_GHOST_NONE UINT32_MAX
/* The most entries a table (2^32 buckets at most, loaded to 3/4) holds. */
#define HM_GHOST_MAX (3u << 30)

struct hm__ghost_entry {
	uint64_t key;
	uint32_t val1; /* the value plus one; 0 when the bucket is empty */
};

struct hm__ghost_table {
	struct hm__ghost_entry *b;
	uint32_t mask;
	uint32_t count;
	uint32_t max; /* the most entries the table was sized for */
};

/*
 * Sizes the table for `max` entries (load factor at most 1/2, or 3/4 past
 * 2^31 entries): 0 or -ENOMEM. Memory is taken only where entries land.
 */
int hm__ghost_table_init(struct hm__ghost_table *t, uint32_t max);
void hm__ghost_table_fini(struct hm__ghost_table *t);
/* The value stored for `key`, or HM_GHOST_NONE. */
uint32_t hm__ghost_table_find(const struct hm__ghost_table *t, uint64_t key);
/* Adds `key` (which must be absent; the table must not be full). */
void hm__ghost_table_add(struct hm__ghost_table *t, uint64_t key, uint32_t val);
/* Deletes `key`; returns its value or HM_GHOST_NONE if it was absent. */
uint32_t hm__ghost_table_del(struct hm__ghost_table *t, uint64_t key);

struct hm__ghost {
	uint32_t cap;   /* entries kept after hm__ghost_trim() */
	uint32_t pool;  /* nodes: cap plus slack */
	uint32_t count;
	uint32_t owed;  /* victims not yet followed by an insert (see trim) */
	uint32_t free;  /* free node list through links.next */
	uint32_t fresh; /* nodes below it were used at least once */
	uint64_t *keys; /* by node */
	struct hm__links l; /* pool nodes + sentinel `pool`; head is oldest */
	struct hm__ghost_table t;
};

/*
 * A queue that keeps `cap` keys, and up to `slack` more between two calls
 * of hm__ghost_trim(). The slack lets a policy record a ghost in victim()
 * and drop the oldest one only in the insert() that follows, after it has
 * looked up the missing key: that is the order the published algorithms
 * (and libCacheSim) use, where the lookup precedes the eviction.
 *
 * A live cache takes a batch of victims before the batch's inserts. So a
 * policy calls hm__ghost_victim() in every victim() and hm__ghost_trim()
 * in every insert(), and the queue keeps cap keys plus one for each victim
 * not yet followed by an insert: each insert then looks its key up in the
 * ghosts it would have seen had victims and inserts alternated (plus the
 * batch's own victims, which cannot be the key). HM_GHOST_SLACK covers a
 * batch of the core's (up to 512 pages).
 */
#define HM_GHOST_SLACK 516u
/*
 * floor(ratio x capacity) through `cap`, or -EINVAL, with a message naming
 * policy `who`, when that many ghosts plus `slack` are more than a queue
 * holds (only for budgets of terabytes).
 */
int hm__ghost_size(const char *who, double ratio, uint32_t capacity, uint32_t slack,
		   uint32_t *cap);
int hm__ghost_init(struct hm__ghost *g, uint32_t cap, uint32_t slack);
/* Frees a queue; safe on a zeroed one or after a failed init. */
void hm__ghost_fini(struct hm__ghost *g);
/* 1 if `key` is a ghost here. */
int hm__ghost_has(const struct hm__ghost *g, uint64_t key);
/* Forgets `key`; 1 if it was there. */
int hm__ghost_del(struct hm__ghost *g, uint64_t key);
/*
 * Appends `key` as the newest ghost (moving it if it was one already). When the pool is exhausted the
 * oldest ghost goes first; with cap 0 and no slack nothing is kept.
 */
void hm__ghost_push(struct hm__ghost *g, uint64_t key);
/* Drops the oldest ghost; 0, or -ENOENT when there is none. */
int hm__ghost_pop(struct hm__ghost *g);
/* A victim was taken (whether or not it became a ghost here). */
void hm__ghost_victim(struct hm__ghost *g);
/*
 * An insert looked its key up: drops the oldest ghosts until at most `cap`
 * plus the victims still owed an insert remain.
 */
void hm__ghost_trim(struct hm__ghost *g);

#endif
