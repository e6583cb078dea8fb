/* SPDX-License-Identifier: MIT */
/*
 * The parsers behind hm_resources(), one per sysfs file format, exposed so
 * that the tests and fuzz/fuzz_sysfs.c can feed them arbitrary bytes. Each
 * reads exactly `len` bytes of `buf` (which need not be NUL-terminated),
 * never more, and trusts nothing in them.
 */
#ifndef HM_CORE_DISCOVER_H
#define HM_CORE_DISCOVER_H

#include <stddef.h>
#include <stdint.h>

/*
 * A number that is the whole of the file apart from leading and trailing
 * whitespace ("4096\n"). Decimal only, as sysfs prints sizes and ids.
 * Returns 0, -EINVAL (not a number) or -ERANGE (too large).
 */
int hm__sysfs_parse_u64(const char *buf, size_t len, uint64_t *v);
/* As hm__sysfs_parse_u64, with an optional '-' ("-1" is a common "none"). */
int hm__sysfs_parse_s64(const char *buf, size_t len, int64_t *v);

/*
 * A node's meminfo ("Node 0 MemTotal:  9135904 kB" lines): the MemTotal
 * and MemFree values in bytes, each HM_RES_UNKNOWN when absent or
 * malformed. Returns 0 when both were found, -EINVAL otherwise.
 */
int hm__sysfs_parse_meminfo(const char *buf, size_t len, uint64_t *total, uint64_t *free_bytes);

/*
 * A CPU or node list ("0-3,8,10-11\n"; empty or "\n" is the empty list):
 * calls fn(arg, lo, hi) for every range, lo <= hi, in the order written.
 * Stops at the first malformed range with -EINVAL, or when fn returns
 * non-zero, with that value; returns 0 after the last range.
 */
typedef int (*hm__sysfs_range_fn)(void *arg, uint32_t lo, uint32_t hi);
int hm__sysfs_parse_list(const char *buf, size_t len, hm__sysfs_range_fn fn, void *arg);

/*
 * A row of whitespace-separated decimal numbers (a node's distance file):
 * stores up to `cap` of them in row[] and their number in *n. A malformed
 * token ends the row: *n counts the well-formed ones before it and the
 * result is -EINVAL; more than `cap` numbers give -E2BIG with *n = cap.
 */
int hm__sysfs_parse_row(const char *buf, size_t len, uint32_t *row, size_t cap, size_t *n);

/*
 * Records store `name` at `uri` with `figures` ("read_latency_ns=N ...") in
 * the stores file `hmmap ls` reads, replacing a line of that name; the
 * file's path goes to path[cap]. `hmmap probe --save` uses it.
 */
int hm__stores_save(const char *name, const char *uri, const char *figures, char *path,
		    size_t cap);

#endif
