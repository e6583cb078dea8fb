/* SPDX-License-Identifier: MIT */
/*
 * `hmmap tiers`: tier chains from the command line, and the evacuation
 * example.
 *
 *   hmmap tiers policies
 *   hmmap tiers show CHAIN
 *   hmmap tiers evacuate [--chain CHAIN] [--size SIZE] [--tier N] [--no-writer]
 *
 * `evacuate` fills anonymous memory over a chain, keeps a thread writing it,
 * moves every page off one tier with a progress bar (hm_store_evacuate()),
 * checks every page, and shows where the pages were before and after: what
 * taking a device offline under a running application looks like.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hmmap.h"
#include "cli.h"

#define PG 4096u

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hmmap tiers policies\n"
		"       hmmap tiers show CHAIN\n"
		"       hmmap tiers evacuate [--chain CHAIN] [--size SIZE] [--tier N] [--no-writer]\n"
		"\n"
		"A chain is anonymous memory over stores, fastest first:\n"
		"  tiers:dram:2G > lz4:8G > file:/ssd/swap\n"
		"\n"
		"  policies   list the automatic tiering policies\n"
		"  show       open CHAIN and print its tiers\n"
		"  evacuate   the evacuation example: fill SIZE (default 160M) of memory over\n"
		"             CHAIN (default \"tiers:dram:16M > lz4:64M > mem:512M,write_ns=20000\",\n"
		"             the last standing for an SSD), keep a thread writing it, move\n"
		"             every page off tier N (default 1) with a progress bar, check\n"
		"             every page, and show the tiers before and after\n"
		"\n"
		"Exit status: 0 success, 1 failure (the evacuation or a check failed), 2 bad usage.\n");
}

static void show_tiers(struct hm_store *ch)
{
	printf("  %-4s %-8s %10s %12s %8s  %s\n", "tier", "store", "pages", "capacity", "ratio",
	       "flags");
	for (int t = 0; t < hm_chain_tiers(ch); t++) {
		struct hm_store *s = hm_chain_tier(ch, t);
		struct hm_tier_stats st;
		char cap[32], flags[64] = "";
		if (!s || hm_tier_stats(s, &st))
			continue;
		snprintf(cap, sizeof cap, "%llu MiB", (unsigned long long)(st.capacity_bytes >> 20));
		if (st.flags & HM_TIER_EXPLICIT)
			strcat(flags, "explicit ");
		if (st.flags & HM_TIER_EMERGENCY)
			strcat(flags, "emergency ");
		if (st.flags & HM_TIER_CLOSED)
			strcat(flags, "closed ");
		if (t == 0)
			strcat(flags, "(the cache)");
		printf("  %-4d %-8s %10llu %12s %8.2f  %s\n", t, hm_store_scheme(s),
		       (unsigned long long)st.pages, cap, st.ratio, flags);
	}
}

static int cmd_policies(void)
{
	size_t n;
	const struct hm_tier_policy_ops *const *l = hm_tier_policy_list(&n);

	printf("%-10s %s\n", "policy", "summary");
	for (size_t i = 0; i < n; i++)
		printf("%-10s %s\n", l[i]->name, l[i]->summary);
	return 0;
}

static int cmd_show(const char *uri)
{
	struct hm_store *ch;
	int rc = hm_store_open(&ch, uri, 0);

	if (rc) {
		fprintf(stderr, "hmmap tiers show: %s\n", hm_errormsg());
		return 1;
	}
	if (hm_chain_tiers(ch) < 0) {
		fprintf(stderr, "hmmap tiers show: '%s' is not a tiers: chain\n", hm_store_uri(ch));
		hm_store_close(ch);
		return 1;
	}
	printf("%s: %llu MiB of anonymous memory\n", hm_store_uri(ch),
	       (unsigned long long)(hm_store_size(ch) >> 20));
	show_tiers(ch);
	hm_store_close(ch);
	return 0;
}

/* ---- evacuate ---- */

struct bar {
	bool tty;
	int last_pct;
	double t0;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
	struct bar *b = ctx;
	int pct = total ? (int)(done * 100 / total) : 100;
	char line[41];

	/* Off a terminal (logs, tests) one line per 10%. */
	if (!b->tty && pct / 10 == b->last_pct / 10 && b->last_pct >= 0)
		return;
	if (b->tty && pct == b->last_pct)
		return;
	b->last_pct = pct;
	for (int i = 0; i < 40; i++)
		line[i] = i < pct * 40 / 100 ? '#' : '.';
	line[40] = 0;
	printf("%s  [%s] %3d%%  %llu/%llu pages  %.1f s%s", b->tty ? "\r" : "", line, pct,
	       (unsigned long long)done, (unsigned long long)total, now_s() - b->t0,
	       b->tty ? "" : "\n");
	fflush(stdout);
}

struct writer {
	char *p;
	size_t n;
	_Atomic int stop;
	uint64_t passes;
};

/* Stamps word 1 of every page with the pass number, over and over. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load(&w->stop)) {
		/* Whole passes only, so that the final check is exact. */
		for (size_t i = 0; i < w->n; i++)
			((volatile uint64_t *)(w->p + i * PG))[1] = w->passes + 1;
		w->passes++;
	}
	return NULL;
}

/* Page i: word 0 its number, word 1 the writer's stamp, the rest text. */
static void fill_page(char *p, uint64_t i)
{
	static const char *const words[] = { "ingress", "egress", "status=ok", "latency",
					      "bytes", "user", "GET", "PUT", "200", "404" };
	uint64_t s = i + 1;
	size_t k = 16;

	while (k < PG) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		const char *w = words[(s >> 33) % 10];
		size_t n = strlen(w);
		if (k + n + 1 > PG) {
			memset(p + k, ' ', PG - k);
			break;
		}
		memcpy(p + k, w, n);
		p[k + n] = ' ';
		k += n + 1;
	}
	((uint64_t *)p)[0] = i;
	((uint64_t *)p)[1] = 0;
}

static int cmd_evacuate(int argc, char **argv)
{
	const char *chain = "tiers:dram:16M > lz4:64M > mem:512M,write_ns=20000";
	uint64_t size = 160ull << 20;
	int tier = 1, writer = 1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--chain") && i + 1 < argc) {
			chain = argv[++i];
		} else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			if (hm_parse_size(argv[++i], &size) || size < PG || size > (1ull << 40)) {
				fprintf(stderr, "hmmap tiers evacuate: --size '%s' is not a size from "
						"4K to 1T\n",
					argv[i]);
				return 2;
			}
		} else if (!strcmp(argv[i], "--tier") && i + 1 < argc) {
			char *end;
			long t = strtol(argv[++i], &end, 10);
			if (*end || t < 1 || t > 7) {
				fprintf(stderr, "hmmap tiers evacuate: --tier '%s' is not a lower tier "
						"(1..7)\n",
					argv[i]);
				return 2;
			}
			tier = (int)t;
		} else if (!strcmp(argv[i], "--no-writer")) {
			writer = 0;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "hmmap tiers evacuate: unknown or incomplete argument '%s'\n",
				argv[i]);
			usage(stderr);
			return 2;
		}
	}
	/* Not echoed: a URI may hold a password (hm_store_uri() shows it as ***). */
	if (strncmp(chain, "tiers:", 6)) {
		fprintf(stderr, "hmmap tiers evacuate: --chain is not a tier chain: it must start "
				"with 'tiers:'\n");
		return 2;
	}
	size = (size + PG - 1) & ~(uint64_t)(PG - 1);
	char *p = hmmap(NULL, size, PROT_READ | PROT_WRITE, HM_CACHED, chain, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "hmmap tiers evacuate: %s\n", hm_errormsg());
		return 1;
	}
	struct hm_store *ch = hm_region_store(hm_region_find(p));
	int rc = 1;
	chain = hm_store_uri(ch);
	if (hm_chain_tiers(ch) < 0 || tier >= hm_chain_tiers(ch)) {
		fprintf(stderr, "hmmap tiers evacuate: '%s' has no tier %d\n", chain, tier);
		hmunmap(p, size);
		return 2;
	}
	size_t n = size / PG;
	printf("%s: %zu MiB of anonymous memory; writing it...\n", chain, (size_t)(size >> 20));
	for (size_t i = 0; i < n; i++)
		fill_page(p + i * PG, i);
	/* Everything down, so that the tiers hold what DRAM cannot. */
	hm_advise(p, size, HM_ADV_DONTNEED);
	printf("before:\n");
	show_tiers(ch);

	struct writer w = { .p = p, .n = n };
	pthread_t th;
	if (writer && pthread_create(&th, NULL, writer_main, &w)) {
		fprintf(stderr, "hmmap tiers evacuate: cannot start the writer thread\n");
		goto out;
	}
	if (writer)
		printf("a thread keeps writing every page; evacuating tier %d (%s):\n", tier,
		       hm_store_scheme(hm_chain_tier(ch, tier)));
	else
		printf("evacuating tier %d (%s):\n", tier, hm_store_scheme(hm_chain_tier(ch, tier)));
	struct bar b = { .tty = isatty(1), .last_pct = -1, .t0 = now_s() };
	int erc = hm_store_evacuate(hm_chain_tier(ch, tier), progress, &b);
	if (b.tty)
		printf("\n");
	if (writer) {
		atomic_store(&w.stop, 1);
		pthread_join(th, NULL);
	}
	if (erc)
		printf("evacuation failed: %s\n", hm_errormsg());
	else
		printf("tier %d is empty and closed to new pages: its device can go offline\n", tier);
	if (writer)
		printf("the writer made %llu pass(es) over the memory meanwhile\n",
		       (unsigned long long)w.passes);
	printf("after:\n");
	show_tiers(ch);
	/* Check: every page's number, text and last stamp. */
	char want[PG];
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		fill_page(want, i);
		((uint64_t *)want)[1] = w.passes;
		if (memcmp(want, p + i * PG, PG))
			bad++;
	}
	if (bad)
		printf("CHECK FAILED: %zu of %zu pages differ\n", bad, n);
	else
		printf("checked: all %zu pages intact\n", n);
	rc = erc || bad ? 1 : 0;
out:
	if (hmunmap(p, size)) {
		fprintf(stderr, "hmmap tiers evacuate: unmap: %s\n", hm_errormsg());
		rc = 1;
	}
	return rc;
}

int hm_cli_tiers(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "policies")) {
		if (argc > 2) {
			fprintf(stderr, "hmmap tiers policies: unexpected argument '%s'\n", argv[2]);
			return 2;
		}
		return cmd_policies();
	}
	if (!strcmp(argv[1], "show")) {
		if (argc != 3) {
			fprintf(stderr, "hmmap tiers show: give one chain URI\n");
			return 2;
		}
		return cmd_show(argv[2]);
	}
	if (!strcmp(argv[1], "evacuate"))
		return cmd_evacuate(argc - 1, argv + 1);
	fprintf(stderr, "hmmap tiers: unknown subcommand '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
