/* SPDX-License-Identifier: MIT */
/*
 * Replay throughput per policy: the cloudphysics trace, looped to at least
 * 10 million requests and loaded into memory first, replayed at a cache of
 * 5000 pages (about 10% of its distinct pages). Prints the median of five
 * runs in requests per second beside the 10 M/s target that fifo, lru, clock
 * and sieve must reach. Not a pass/fail test.
 *
 * usage: bench_replay [TRACE] [CACHE_PAGES]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hmmap.h"
#include "core/replay.h"

#define TARGET 10e6
#define RUNS 5

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	static const char *const defaults[] = {
		"../shared/traces/cloudphysics.txt",
		"/work/shared/traces/cloudphysics.txt",
	};
	const char *path = argc > 1 ? argv[1] : NULL;
	uint32_t cap = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 5000;
	const struct hm_policy_ops *const *pols;
	struct hm__trace_opts o = { 0 };
	struct hm__trace one, t;
	uint64_t *keys, i, loops;
	size_t np, p;
	int r;

	for (i = 0; !path && i < sizeof defaults / sizeof defaults[0]; i++)
		if (!access(defaults[i], R_OK))
			path = defaults[i];
	if (!path) {
		fprintf(stderr, "bench_replay: no trace (give a path)\n");
		return 77;
	}
	if (hm__trace_load(&one, path, &o) || !one.n) {
		fprintf(stderr, "bench_replay: %s\n", hm_errormsg());
		return 1;
	}
	loops = (10000000 + one.n - 1) / one.n;
	keys = malloc(loops * one.n * sizeof *keys);
	if (!keys)
		return 1;
	for (i = 0; i < loops; i++)
		memcpy(keys + i * one.n, one.keys, one.n * sizeof *keys);
	if (hm__trace_from_keys(&t, keys, loops * one.n) || hm__trace_next_use(&t))
		return 1;
	free(keys);

	printf("trace %s looped %llu times: %llu requests, cache %u pages, median of %d\n", path,
	       (unsigned long long)loops, (unsigned long long)t.n, cap, RUNS);
	printf("%-8s %14s %14s %12s\n", "policy", "requests/s", "target", "miss_ratio");
	pols = hm_policy_list(&np);
	for (p = 0; p < np; p++) {
		const char *n = pols[p]->name;
		int must = !strcmp(n, "fifo") || !strcmp(n, "lru") || !strcmp(n, "clock") ||
			   !strcmp(n, "sieve");
		struct hm__replay_result res = { 0, 0 };
		double rate[RUNS];

		for (r = 0; r < RUNS; r++) {
			double t0 = now();

			if (hm__replay_run(&t, n, cap, &res)) {
				fprintf(stderr, "bench_replay: %s\n", hm_errormsg());
				return 1;
			}
			rate[r] = (double)res.requests / (now() - t0);
		}
		qsort(rate, RUNS, sizeof rate[0], cmp);
		printf("%-8s %12.2f M %12s %12.6f\n", n, rate[RUNS / 2] / 1e6,
		       must ? "10.00 M" : "-", (double)res.misses / (double)res.requests);
	}
	hm__trace_free(&t);
	hm__trace_free(&one);
	return 0;
}
