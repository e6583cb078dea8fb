/* SPDX-License-Identifier: MIT */
/*
 * Intrusive doubly linked lists over dense index arrays, shared by the
 * policy plug-ins. A policy allocates one `prev` and one `next` array of
 * `nodes + lists` entries: indices below `nodes` are elements (usually
 * slots), and each list is named by a sentinel index at or above `nodes`.
 * Several lists may share the arrays as long as an element is on at most one
 * of them at a time (S3-FIFO's small and main queues, ARC's T1 and T2).
 *
 * Convention for every list: the head (next of the sentinel) is the oldest
 * element, the tail (prev of the sentinel) the newest. Every operation is
 * O(1) and never allocates.
 */
#ifndef HM_POLICIES_LINKS_H
#define HM_POLICIES_LINKS_H

#include <stdint.h>
#include <stdlib.h>

struct hm__links {
	uint32_t *prev;
	uint32_t *next;
};

/* Allocates arrays for `n` entries (elements plus sentinels): 0 or -1. */
static inline int hm__links_alloc(struct hm__links *l, uint32_t n)
{
	l->prev = malloc((size_t)n * sizeof *l->prev);
	l->next = malloc((size_t)n * sizeof *l->next);
	if (!l->prev || !l->next) {
		free(l->prev);
		free(l->next);
		l->prev = l->next = NULL;
		return -1;
	}
	return 0;
}

static inline void hm__links_free(struct hm__links *l)
{
	free(l->prev);
	free(l->next);
	l->prev = l->next = NULL;
}

/* Makes the list whose sentinel is `s` empty. */
static inline void hm__links_init(struct hm__links *l, uint32_t s)
{
	l->prev[s] = l->next[s] = s;
}

static inline int hm__links_empty(const struct hm__links *l, uint32_t s)
{
	return l->next[s] == s;
}

/* The oldest element of list `s`, or `s` itself when the list is empty. */
static inline uint32_t hm__links_head(const struct hm__links *l, uint32_t s)
{
	return l->next[s];
}

/* The newest element of list `s`, or `s` itself when the list is empty. */
static inline uint32_t hm__links_tail(const struct hm__links *l, uint32_t s)
{
	return l->prev[s];
}

/* Links `x` in front of `at` (an element or a sentinel). */
static inline void hm__links_insert_before(struct hm__links *l, uint32_t at, uint32_t x)
{
	uint32_t p = l->prev[at];

	l->prev[x] = p;
	l->next[x] = at;
	l->next[p] = x;
	l->prev[at] = x;
}

/* Appends `x` as the newest element of list `s`. */
static inline void hm__links_push_tail(struct hm__links *l, uint32_t s, uint32_t x)
{
	hm__links_insert_before(l, s, x);
}

/* Prepends `x` as the oldest element of list `s`. */
static inline void hm__links_push_head(struct hm__links *l, uint32_t s, uint32_t x)
{
	hm__links_insert_before(l, l->next[s], x);
}

static inline void hm__links_unlink(struct hm__links *l, uint32_t x)
{
	uint32_t p = l->prev[x], n = l->next[x];

	l->next[p] = n;
	l->prev[n] = p;
}

/* Moves element `x` (on any list) to the tail of list `s`. */
static inline void hm__links_move_tail(struct hm__links *l, uint32_t s, uint32_t x)
{
	hm__links_unlink(l, x);
	hm__links_push_tail(l, s, x);
}

#endif
