/* SPDX-License-Identifier: MIT */
/*
 * The test harness: each test program runs cases with RUN(fn), each case
 * prints one line ("ok", "FAIL", "skip"), and main() ends with
 * `return test_done();`, which prints the closing line
 * "N passed, N failed[, N skipped]" and returns 0, 1, or 77 when every case
 * was skipped. A case fails on the first CHECK that does not hold; SKIP()
 * leaves the case with a visible reason.
 */
#ifndef HMMAP_TEST_HARNESS_H
#define HMMAP_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_passed, t_failed, t_skipped;
static int t_case_failed, t_case_skipped;
static char t_reason[512];

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			snprintf(t_reason, sizeof t_reason, "%s:%d: %s", __FILE__, __LINE__, \
				 #cond);                                                 \
			t_case_failed = 1;                                               \
			return;                                                          \
		}                                                                        \
	} while (0)

/* CHECK with a printf-style explanation added to the failure line. */
#define CHECKF(cond, ...)                                                                \
	do {                                                                             \
		if (!(cond)) {                                                           \
			int t_n = snprintf(t_reason, sizeof t_reason, "%s:%d: %s: ",     \
					   __FILE__, __LINE__, #cond);                   \
			if (t_n > 0 && (size_t)t_n < sizeof t_reason)                    \
				snprintf(t_reason + t_n, sizeof t_reason - (size_t)t_n,  \
					 __VA_ARGS__);                                   \
			t_case_failed = 1;                                               \
			return;                                                          \
		}                                                                        \
	} while (0)

#define SKIP(...)                                                                        \
	do {                                                                             \
		snprintf(t_reason, sizeof t_reason, __VA_ARGS__);                        \
		t_case_skipped = 1;                                                      \
		return;                                                                  \
	} while (0)

#define RUN(fn)                                                                          \
	do {                                                                             \
		t_case_failed = t_case_skipped = 0;                                      \
		t_reason[0] = 0;                                                         \
		fn();                                                                    \
		if (t_case_failed) {                                                     \
			t_failed++;                                                      \
			printf("FAIL %s: %s\n", #fn, t_reason);                          \
		} else if (t_case_skipped) {                                             \
			t_skipped++;                                                     \
			printf("skip %s: %s\n", #fn, t_reason);                          \
		} else {                                                                 \
			t_passed++;                                                      \
			printf("ok   %s\n", #fn);                                        \
		}                                                                        \
		fflush(stdout);                                                          \
	} while (0)

static inline int test_done(void)
{
	if (t_skipped)
		printf("%d passed, %d failed, %d skipped\n", t_passed, t_failed, t_skipped);
	else
		printf("%d passed, %d failed\n", t_passed, t_failed);
	fflush(stdout);
	if (t_failed)
		return 1;
	if (t_skipped && !t_passed)
		return 77;
	return 0;
}

#endif
