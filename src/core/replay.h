/* SPDX-License-Identifier: MIT */
/*
 * Trace replay: read a trace of page ids, then run it through a policy at a
 * given capacity and count the misses, exactly as a live cache would call
 * the policy (hit(), or miss(), victim() when full, insert()).
 *
 * Trace formats:
 *   HM_TRACE_LINES   one decimal page id a line; blank lines and lines whose
 *                    first non-blank character is '#' are skipped;
 *   HM_TRACE_CSV     comma-separated, the page id in column `column`
 *                    (1-based), optionally after one header line; blank and
 *                    '#' lines are skipped; fields may be double-quoted;
 *   HM_TRACE_ORACLE  libCacheSim's oracleGeneral binary format: packed
 *                    little-endian records of 24 bytes (uint32 clock_time,
 *                    uint64 obj_id, uint32 obj_size, int64
 *                    next_access_vtime); only obj_id is used.
 * Errors name the place: "trace.txt:17: not a page id: 'abc'", "trace.bin:
 * record 1234 is truncated" (lines and records count from 1).
 */
#ifndef HM_CORE_REPLAY_H
#define HM_CORE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

enum hm__trace_format {
	HM_TRACE_LINES = 1,
	HM_TRACE_CSV,
	HM_TRACE_ORACLE,
};

struct hm__trace_opts {
	int format;      /* enum hm__trace_format; 0 guesses from the name */
	unsigned column; /* CSV column, 1-based (0 means 1) */
	int header;      /* CSV: skip the first line */
};

/*
 * A loaded trace. keys[i] is the page id of request i; ids[i] a dense
 * number for it (0 .. nids - 1, in order of first appearance), so that
 * replay indexes arrays instead of hashing. next[i], once computed by
 * hm__trace_next_use(), is the index of the next request for the same page,
 * or UINT64_MAX.
 */
struct hm__trace {
	uint64_t n;
	uint32_t nids;
	uint64_t *keys;
	uint32_t *ids;
	uint64_t *next;
};

/* The format a file name suggests: .csv, oracleGeneral or .bin, else lines. */
int hm__trace_guess_format(const char *path);
/* Reads and parses a whole file; `t` is valid only on success. 0 or -errno. */
int hm__trace_load(struct hm__trace *t, const char *path, const struct hm__trace_opts *o);
/* Parses a buffer; `name` prefixes error messages. 0 or -errno. */
int hm__trace_parse(struct hm__trace *t, const char *name, const void *buf, size_t len,
		    const struct hm__trace_opts *o);
/* Builds a trace from page ids (tests, benchmarks). 0 or -ENOMEM. */
int hm__trace_from_keys(struct hm__trace *t, const uint64_t *keys, uint64_t n);
/* Computes next[] (idempotent). 0 or -ENOMEM. */
int hm__trace_next_use(struct hm__trace *t);
void hm__trace_free(struct hm__trace *t);

struct hm__replay_result {
	uint64_t requests;
	uint64_t misses;
};

/*
 * Replays `t` through the policy `spec` ("name[:k=v,...]") with `capacity`
 * pages (at least 1). Returns 0, -EINVAL/-ENOENT for a bad spec, -ENOMEM,
 * or -EIO if the policy misbehaves (a victim that is not resident).
 */
int hm__replay_run(struct hm__trace *t, const char *spec, uint32_t capacity,
		   struct hm__replay_result *r);

#endif
