/* SPDX-License-Identifier: MIT */
/*
 * `hmmap replay` and `hmmap policies`: run a page trace through cache
 * policies offline and list the policies compiled in.
 *
 * The replay engine and the trace readers are internal (src/core/replay.h);
 * the tool links the static library, and the miss counts it prints are what
 * the same policy code does in a live cache.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap.h"
#include "cli.h"
#include "core/replay.h"

static void replay_usage(FILE *f)
{
	fprintf(f,
		"usage: hmmap replay [--policy P[,P...]]... --cache N[,N...] [options] TRACE\n"
		"\n"
		"Replays TRACE through each policy at each cache size (in pages) and prints\n"
		"policy, cache_pages, requests, misses and miss_ratio.\n"
		"\n"
		"  --policy LIST   policies to run (default: all). A policy is NAME or\n"
		"                  NAME:k=v,k=v (see `hmmap policies`); `all` means every\n"
		"                  policy. The list is split at a comma only where the next\n"
		"                  token is a policy name (or `all`), so option commas stay\n"
		"                  with their policy: \"s3fifo:small=0.2,ghost=0.9,lru\" is\n"
		"                  two policies. Names are taken in any case and reported\n"
		"                  in lowercase. --policy may also be repeated.\n"
		"  --cache LIST    cache sizes in pages, comma-separated, each >= 1\n"
		"  --format F      lines (one decimal page id a line; blank and '#' lines\n"
		"                  skipped), csv, or oracle (libCacheSim oracleGeneral\n"
		"                  binary). Default: .csv -> csv, oracleGeneral or .bin ->\n"
		"                  oracle, anything else -> lines (a .zst suffix aside:\n"
		"                  zstd-compressed traces are read as they are)\n"
		"  --column K      CSV column holding the page id, 1-based (default 1);\n"
		"                  implies --format csv\n"
		"  --header        CSV: skip the first line; implies --format csv\n"
		"  --json          print a JSON array of {policy, cache_pages, requests,\n"
		"                  misses, miss_ratio} objects instead of a table\n"
		"  -h, --help      this text\n"
		"\n"
		"Exit status: 0 success, 1 the trace could not be read or parsed (the\n"
		"message names the line or record) or a policy failed, 2 bad usage\n"
		"(an unknown policy or bad options included).\n");
}

/* A strict decimal page count in [1, UINT32_MAX]. */
static int parse_pages(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (!len)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	if (!v)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int add_caches(uint32_t **caches, size_t *n, const char *arg)
{
	const char *p = arg;

	for (;;) {
		size_t len = strcspn(p, ",");
		uint32_t *v;

		v = realloc(*caches, (*n + 1) * sizeof *v);
		if (!v)
			return -ENOMEM;
		*caches = v;
		if (parse_pages(p, len, &v[*n])) {
			fprintf(stderr, "hmmap replay: bad cache size '%.*s' (pages, 1 to %u)\n",
				(int)len, p, UINT32_MAX);
			return -EINVAL;
		}
		(*n)++;
		if (!p[len])
			return 0;
		p += len + 1;
	}
}


/* Takes the value of option `name` from "--name=value" or the next argument. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);

	if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (!strcmp(argv[*i], name)) {
		if (*i + 1 >= argc) {
			fprintf(stderr, "hmmap replay: %s needs a value\n", name);
			return NULL;
		}
		return argv[++*i];
	}
	return NULL;
}

static int is_opt(const char *arg, const char *name)
{
	size_t n = strlen(name);

	return !strncmp(arg, name, n) && (arg[n] == 0 || arg[n] == '=');
}

static double miss_ratio(const struct hm__replay_result *r)
{
	return r->requests ? (double)r->misses / (double)r->requests : 0.0;
}

int hm_cli_replay(int argc, char **argv)
{
	struct hm__trace_opts topts = { 0 };
	struct hm_cli_strs policies = { 0 };
	struct hm__trace trace;
	uint32_t *caches = NULL;
	size_t ncaches = 0, i, j, width = 6;
	const char *path = NULL, *v;
	struct hm__replay_result *res = NULL;
	int json = 0, rc = 2, loaded = 0, k;

	for (k = 1; k < argc; k++) {
		const char *a = argv[k];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			replay_usage(stdout);
			rc = 0;
			goto out;
		} else if (is_opt(a, "--policy")) {
			if (!(v = opt_value(argc, argv, &k, "--policy")))
				goto out;
			if (hm_cli_policy_split(&policies, "replay", v, 0))
				goto out;
		} else if (is_opt(a, "--cache")) {
			if (!(v = opt_value(argc, argv, &k, "--cache")))
				goto out;
			if (add_caches(&caches, &ncaches, v))
				goto out;
		} else if (is_opt(a, "--format")) {
			if (!(v = opt_value(argc, argv, &k, "--format")))
				goto out;
			if (!strcmp(v, "lines")) {
				topts.format = HM_TRACE_LINES;
			} else if (!strcmp(v, "csv")) {
				topts.format = HM_TRACE_CSV;
			} else if (!strcmp(v, "oracle")) {
				topts.format = HM_TRACE_ORACLE;
			} else {
				fprintf(stderr, "hmmap replay: unknown format '%s' "
						"(lines, csv, oracle)\n", v);
				goto out;
			}
		} else if (is_opt(a, "--column")) {
			uint32_t col;

			if (!(v = opt_value(argc, argv, &k, "--column")))
				goto out;
			if (parse_pages(v, strlen(v), &col)) {
				fprintf(stderr, "hmmap replay: bad column '%s' (1, 2, ...)\n", v);
				goto out;
			}
			topts.column = col;
		} else if (!strcmp(a, "--header")) {
			topts.header = 1;
		} else if (!strcmp(a, "--json")) {
			json = 1;
		} else if (!strcmp(a, "--")) {
			if (k + 1 < argc && !path)
				path = argv[++k];
			if (k + 1 < argc) {
				fprintf(stderr, "hmmap replay: more than one trace\n");
				goto out;
			}
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "hmmap replay: unknown option '%s' (see --help)\n", a);
			goto out;
		} else if (path) {
			fprintf(stderr, "hmmap replay: more than one trace ('%s', '%s')\n", path, a);
			goto out;
		} else {
			path = a;
		}
	}
	if (!path) {
		fprintf(stderr, "hmmap replay: no trace given (see --help)\n");
		goto out;
	}
	/* --column and --header are CSV's: they say the format, or contradict it. */
	if ((topts.column || topts.header) && !topts.format) {
		topts.format = HM_TRACE_CSV;
	} else if ((topts.column || topts.header) && topts.format != HM_TRACE_CSV) {
		fprintf(stderr, "hmmap replay: %s is for --format csv\n",
			topts.column ? "--column" : "--header");
		goto out;
	}
	if (!ncaches) {
		fprintf(stderr, "hmmap replay: --cache is required (see --help)\n");
		goto out;
	}
	if (!policies.n && hm_cli_policy_split(&policies, "replay", "all", 0))
		goto out;
	/*
	 * Reject unknown policies and bad options before reading the trace; a
	 * policy that fails otherwise (out of memory) is a failed run.
	 */
	for (i = 0; i < policies.n; i++) {
		int bad = hm_cli_policy_check(policies.v[i], 0);

		if (bad) {
			fprintf(stderr, "hmmap replay: %s\n", hm_errormsg());
			rc = bad;
			goto out;
		}
	}

	if (hm__trace_load(&trace, path, &topts)) {
		fprintf(stderr, "hmmap replay: %s\n", hm_errormsg());
		rc = 1;
		goto out;
	}
	loaded = 1;
	for (i = 0; i < policies.n; i++)
		if (strlen(policies.v[i]) > width)
			width = strlen(policies.v[i]);
	/* JSON is printed whole or not at all; the table row by row. */
	res = calloc(policies.n * ncaches, sizeof *res);
	if (!res) {
		fprintf(stderr, "hmmap replay: out of memory\n");
		rc = 1;
		goto out;
	}
	if (!json)
		printf("%-*s %12s %12s %12s %10s\n", (int)width, "policy", "cache_pages",
		       "requests", "misses", "miss_ratio");
	for (i = 0; i < policies.n; i++) {
		for (j = 0; j < ncaches; j++) {
			struct hm__replay_result *r = &res[i * ncaches + j];

			if (hm__replay_run(&trace, policies.v[i], caches[j], r)) {
				fflush(stdout);
				fprintf(stderr, "hmmap replay: %s\n", hm_errormsg());
				rc = 1;
				goto out;
			}
			if (json)
				continue;
			printf("%-*s %12u %12llu %12llu %10.6f\n", (int)width, policies.v[i],
			       caches[j], (unsigned long long)r->requests,
			       (unsigned long long)r->misses, miss_ratio(r));
		}
	}
	if (json) {
		printf("[");
		for (i = 0; i < policies.n; i++) {
			for (j = 0; j < ncaches; j++) {
				const struct hm__replay_result *r = &res[i * ncaches + j];

				printf("%s\n  {\"policy\": ", i || j ? "," : "");
				hm_cli_json_str(policies.v[i]);
				printf(", \"cache_pages\": %u, \"requests\": %llu, \"misses\": %llu, "
				       "\"miss_ratio\": %.6f}",
				       caches[j], (unsigned long long)r->requests,
				       (unsigned long long)r->misses, miss_ratio(r));
			}
		}
		printf("\n]\n");
	}
	rc = 0;
out:
	free(res);
	if (loaded)
		hm__trace_free(&trace);
	hm_cli_strs_free(&policies);
	free(caches);
	return rc;
}

int hm_cli_policies(int argc, char **argv)
{
	const struct hm_policy_ops *const *ops;
	size_t i, count;

	if (argc > 1) {
		if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
			printf("usage: hmmap policies\n\nLists the cache policies compiled in.\n");
			return 0;
		}
		fprintf(stderr, "hmmap policies: unexpected argument '%s'\n", argv[1]);
		return 2;
	}
	ops = hm_policy_list(&count);
	printf("%-8s %-14s %s\n", "name", "hit", "summary");
	for (i = 0; i < count; i++) {
		const char *hit = ops[i]->flags & HM_POLICY_REPLAY_ONLY ? "replay only" :
				  ops[i]->flags & HM_POLICY_CONCURRENT_HIT ? "lock-free" :
									     "under lock";

		printf("%-8s %-14s %s\n", ops[i]->name, hit, ops[i]->summary);
	}
	return 0;
}
