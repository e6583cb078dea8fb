/* SPDX-License-Identifier: MIT */
/*
 * hmmap - the command-line tool. Each subcommand lives in its own file and
 * uses the library's public interface.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap.h"
#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "demo", hm_cli_demo, "map a 1 GiB file through a small cache; compare with mmap" },
	{ "replay", hm_cli_replay, "replay a page trace through cache policies" },
	{ "policies", hm_cli_policies, "list the cache policies" },
	{ "stores", hm_cli_stores, "list the store kinds (URI schemes)" },
	{ "ls", hm_cli_ls, "list the machine's memory: NUMA/CXL nodes, DAX, pmem, block" },
	{ "tiers", hm_cli_tiers, "tier chains: policies, show a chain, the evacuation example" },
	{ "bench", hm_cli_bench, "workloads on hmmap beside kernel mmap and a pread pool" },
	{ "stat", hm_cli_stat, "print the live statistics of an hmmap process" },
	{ "top", hm_cli_top, "show every hmmap process and region, live" },
	{ "probe", hm_cli_probe, "measure a store's latency and bandwidth" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: hmmap COMMAND [ARGS...]\n\n"
		   "hmmap maps files and other memory through a user-space page cache.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "  %-10s %s\n", "version", "print the version");
	fprintf(f, "  %-10s %s\n", "help", "this text; `help COMMAND` describes a command");
	fprintf(f, "\n`hmmap COMMAND --help` describes a command. Environment variables\n"
		   "(HMMAP_CACHE_SIZE, HMMAP_POLICY, ...) are listed in the README.\n");
}

static int version_usage(void)
{
	printf("usage: hmmap version\n\nPrints the version of hmmap and its library.\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "help") && argc == 3) {
		/* "hmmap help COMMAND" is "hmmap COMMAND --help". */
		for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
			if (!strcmp(argv[2], commands[i].name)) {
				char *args[] = { argv[2], "--help", NULL };
				return commands[i].fn(2, args);
			}
		if (!strcmp(argv[2], "version"))
			return version_usage();
		if (strcmp(argv[2], "help") &&
		    strcmp(argv[2], "--help") && strcmp(argv[2], "-h")) {
			fprintf(stderr, "hmmap help: unknown command '%s'\n\n", argv[2]);
			usage(stderr);
			return 2;
		}
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		if (argc > 3) {
			fprintf(stderr, "hmmap help: one command at most\n");
			return 2;
		}
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
			return version_usage();
		}
		if (argc > 2) {
			fprintf(stderr, "hmmap version: unexpected argument '%s'\n", argv[2]);
			return 2;
		}
		printf("hmmap %s\n", hm_version());
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		/*
		 * HMMAP_PLUGINS loads with the first lookup, whose error every
		 * lookup repeats: say it before a listing could leave a plug-in
		 * out without a word.
		 */
		const struct hm_policy_ops *ops;
		const char *opts;
		if (getenv("HMMAP_PLUGINS") && hm_policy_lookup("fifo", &ops, &opts)) {
			fprintf(stderr, "hmmap: %s\n", hm_errormsg());
			return 1;
		}
		return commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "hmmap: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
