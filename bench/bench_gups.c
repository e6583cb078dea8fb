/* SPDX-License-Identifier: MIT */
/*
 * GUPS over a tier chain, as in HeMem's evaluation (issue 6): a table of
 * --ws bytes of 8-byte words, updated at random (x ^= r), 90% of the updates
 * to a --hot set, over a --fast DRAM tier and a slower tier (--slow: a
 * compressed store, or mem: with emulated latency). Three runs, one process,
 * the same updates:
 *
 *   all-fast  DRAM holds the whole table (the ceiling).
 *   static    DRAM holds a fixed part of the table (its first fast - window
 *             bytes, bound there; the hot set is elsewhere, as it is for a
 *             first-touch allocator that placed other data first), and the
 *             rest goes through a window of DRAM (--window) on demand.
 *   tiered    the chain's automatic tiering (--policy, default hotness).
 *
 * The hot set starts at the middle of the table; in the tiered run it moves
 * (to the first quarter) after --phase seconds, and the run goes on for
 * --phase more: the time until throughput is back to 90% of what it was is
 * the recovery time. Each run prints one throughput sample per second; the
 * samples go to OUT.dat and a gnuplot plot to OUT.png (the warm-up curve).
 *
 * Printed: the steady throughput of each run (median of its last 5
 * samples, before the move for the tiered run), tiered / all-fast,
 * tiered / static, the recovery time, and the tier statistics.
 */
#include "hmmap.h"
#include "bench_common.h"

static const char usage[] =
	"usage: bench_gups [--ws 4G] [--fast 1G] [--hot 512M] [--window 64M] [--phase 40]\n"
	"                  [--slow lz4] [--policy hotness] [--out /tmp/hmmap-gups] [--quick]\n"
	"  --ws      table size                --fast    DRAM tier (cache budget)\n"
	"  --hot     hot set (90% of updates)  --window  DRAM left to the static run's misses\n"
	"  --phase   seconds before and after the hot set moves (all-fast and static: one phase)\n"
	"  --slow    the lower tier: lz4, zstd, or mem (with --slow-ns N emulated ns per page)\n"
	"  --policy  the tiering policy spec (hotness[:opts])\n"
	"  --runs    which runs: any of fast,static,tiered (default all)\n"
	"  --out     prefix of the .dat and .png files\n"
	"  --quick   256M table, 64M fast, 32M hot, 10 s phases\n";

static uint64_t ws = 4ull << 30, fast = 1ull << 30, hot = 512ull << 20, window = 64ull << 20;
static double phase = 40;
static uint64_t slow_ns = 2000;
static char slow[32] = "lz4", policy[128] = "hotness", out[256] = "/tmp/hmmap-gups",
	    which[64] = "fast,static,tiered";

struct series {
	double t[4096], rate[4096];
	int n;
};

static const char *slow_uri(char *buf, size_t n)
{
	uint64_t cap = ws + ws / 8;

	if (!strcmp(slow, "mem"))
		snprintf(buf, n, "mem:%llu,read_ns=%llu,write_ns=%llu", (unsigned long long)ws,
			 (unsigned long long)slow_ns, (unsigned long long)slow_ns);
	else
		snprintf(buf, n, "%s:%llu", slow, (unsigned long long)cap);
	return buf;
}

/*
 * Updates for `secs` seconds with the hot set at hot_off; appends one
 * sample per second (time from t0) to s.
 */
static void updates(uint64_t *tab, uint64_t hot_off, double secs, double t0, uint64_t *seed,
		    struct series *s, struct hm_store *ch)
{
	struct hm_tier_stats ts0, ts1;
	uint64_t words = ws / 8, hot_words = hot / 8, hot_first = hot_off / 8, n = 0;
	double start = now(), last = start;

	if (hm_tier_stats(hm_chain_tier(ch, 0), &ts0))
		memset(&ts0, 0, sizeof ts0);
	for (;;) {
		for (int k = 0; k < 4096; k++) {
			uint64_t r = xs64(seed);
			uint64_t i = (r % 10 < 9) ? hot_first + (r >> 8) % hot_words : (r >> 8) % words;
			tab[i] ^= r;
		}
		n += 4096;
		double t = now();
		if (t - last >= 1.0) {
			if (s->n < 4096) {
				s->t[s->n] = t - t0;
				s->rate[s->n] = (double)n / (t - last);
				s->n++;
			}
			printf("    t=%6.1f s  %8.3f M updates/s", t - t0, (double)n / (t - last) / 1e6);
			/* What the tiering engine did in that second. */
			if (!hm_tier_stats(hm_chain_tier(ch, 0), &ts1) && ts1.promoted + ts1.sampled) {
				printf("   hot %7llu  promoted %+7lld  demoted %+7lld  sampled %+8lld",
				       (unsigned long long)ts1.hot_pages,
				       (long long)(ts1.promoted - ts0.promoted),
				       (long long)(ts1.demoted - ts0.demoted),
				       (long long)(ts1.sampled - ts0.sampled));
				ts0 = ts1;
			}
			printf("\n");
			fflush(stdout);
			n = 0;
			last = t;
		}
		if (t - start >= secs)
			break;
	}
}

static double tail_median(const struct series *s, int from, int to)
{
	int a = to - 5 > from ? to - 5 : from;

	return to > a ? median(s->rate + a, to - a) : 0;
}

static void tier_report(struct hm_store *ch)
{
	for (int t = 0; t < hm_chain_tiers(ch); t++) {
		struct hm_tier_stats st;
		if (hm_tier_stats(hm_chain_tier(ch, t), &st))
			continue;
		printf("    tier %d %-28.28s pages %8llu", t, "",
		       (unsigned long long)st.pages);
		if (t == 0)
			printf("  hot %llu promoted %llu demoted %llu sampled %llu\n",
			       (unsigned long long)st.hot_pages, (unsigned long long)st.promoted,
			       (unsigned long long)st.demoted, (unsigned long long)st.sampled);
		else
			printf("  used %llu MiB  ratio %.2f\n", (unsigned long long)(st.used_bytes >> 20),
			       st.ratio);
	}
}

/* kind: 0 all-fast, 1 static, 2 tiered. Returns the steady rate; *recovery for tiered. */
static double run(int kind, struct series *s, double *recovery)
{
	static const char *names[] = { "all-fast", "static", "tiered" };
	char uri[512], su[128];
	struct hm_store *ch;
	struct hm_cache *c;
	struct hm_region *r;
	uint64_t seed = 12345;
	uint64_t dram = kind == 0 ? ws + (64ull << 20) : fast;

	/* Tiering starts (tiered run) when the measurement does. */
	snprintf(uri, sizeof uri, "tiers:dram:%llu,tiering=none > %s", (unsigned long long)dram,
		 slow_uri(su, sizeof su));
	if (hm_store_open(&ch, uri, 0) || hm_chain_cache(ch, &c) ||
	    hm_region_map(&r, c, ch, 0, ws, PROT_READ | PROT_WRITE, HM_CACHED, 0)) {
		fprintf(stderr, "bench_gups: %s: %s\n", uri, hm_errormsg());
		exit(1);
	}
	uint64_t *tab = hm_region_addr(r);
	printf("  %s: %s\n", names[kind], uri);
	if (kind == 1) {
		/* Static: the first fast - window bytes stay in DRAM for good. */
		long rc = hm_bind(tab, fast - window, hm_chain_tier(ch, 0), HM_BIND);
		if (rc < 0) {
			fprintf(stderr, "bench_gups: static bind: %s\n", hm_errormsg());
			exit(1);
		}
	}
	double t_init = now();
	for (uint64_t i = 0; i < ws / 8; i++)
		tab[i] = i;
	printf("    table written in %.1f s\n", now() - t_init);
	if (kind == 2) {
		/* Tiering starts with the measurement: the warm-up curve shows it. */
		char ctl[160];
		snprintf(ctl, sizeof ctl, "tiering=%s", policy);
		if (hm_store_ctl(ch, ctl)) {
			fprintf(stderr, "bench_gups: %s: %s\n", ctl, hm_errormsg());
			exit(1);
		}
	}
	double t0 = now();
	updates(tab, ws / 2, phase, t0, &seed, s, ch);
	int before = s->n;
	double steady = tail_median(s, 0, before);
	*recovery = -1;
	if (kind == 2) {
		tier_report(ch);
		printf("    the hot set moves\n");
		double tm = now() - t0;
		updates(tab, ws / 4 - hot / 2, phase, t0, &seed, s, ch);
		for (int i = before; i + 1 < s->n; i++) {
			if (s->rate[i] >= 0.9 * steady && s->rate[i + 1] >= 0.9 * steady) {
				*recovery = s->t[i] - tm;
				break;
			}
		}
	}
	tier_report(ch);
	if (hm_region_unmap(r) || hm_store_close(ch)) {
		fprintf(stderr, "bench_gups: unmap: %s\n", hm_errormsg());
		exit(1);
	}
	return steady;
}

static void plot(struct series *s, const bool *ran)
{
	static const char *names[] = { "all-fast", "static", "tiered" };
	char path[300], png[300];
	FILE *f;

	snprintf(path, sizeof path, "%s.dat", out);
	snprintf(png, sizeof png, "%s.png", out);
	f = fopen(path, "w");
	if (!f)
		return;
	for (int k = 0; k < 3; k++) {
		if (!ran[k])
			continue;
		fprintf(f, "# %s\n", names[k]);
		for (int i = 0; i < s[k].n; i++)
			fprintf(f, "%.2f %.5f\n", s[k].t[i], s[k].rate[i] / 1e6);
		fprintf(f, "\n\n");
	}
	fclose(f);
	char cmd[2048];
	int n = snprintf(cmd, sizeof cmd,
			 "gnuplot -e \"set terminal png size 900,500; set output '%s'; "
			 "set title 'GUPS: %llu MiB table, %llu MiB DRAM, %llu MiB hot set (90%%), "
			 "slow tier %s'; set xlabel 'seconds'; set ylabel 'M updates/s'; "
			 "set key outside; set logscale y; "
			 "set arrow from %.1f, graph 0 to %.1f, graph 1 nohead dashtype 2; "
			 "set label 'hot set moves (tiered)' at %.1f, graph 0.95; plot ",
			 png, (unsigned long long)(ws >> 20), (unsigned long long)(fast >> 20),
			 (unsigned long long)(hot >> 20), slow, phase, phase, phase + 1);
	for (int k = 0, idx = 0; k < 3; k++) {
		if (!ran[k])
			continue;
		n += snprintf(cmd + n, sizeof cmd - (size_t)n, "%s'%s' index %d with linespoints title '%s'",
			      idx ? ", " : "", path, idx, names[k]);
		idx++;
	}
	snprintf(cmd + n, sizeof cmd - (size_t)n, "\" 2>/dev/null");
	if (system(cmd) == 0)
		printf("warm-up curve: %s (data %s)\n", png, path);
	else
		printf("gnuplot failed; data in %s\n", path);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "ws", required_argument, NULL, 'w' },     { "fast", required_argument, NULL, 'f' },
		{ "hot", required_argument, NULL, 'H' },    { "window", required_argument, NULL, 'W' },
		{ "phase", required_argument, NULL, 'p' },  { "slow", required_argument, NULL, 's' },
		{ "slow-ns", required_argument, NULL, 'n' }, { "policy", required_argument, NULL, 'P' },
		{ "out", required_argument, NULL, 'o' },    { "runs", required_argument, NULL, 'r' },
		{ "quick", no_argument, NULL, 'q' },        { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct series s[3];
	double steady[3] = { 0 }, rec = -1, dummy;
	bool ran[3] = { false };
	int o;

	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		uint64_t *sz = NULL;
		switch (o) {
		case 'w':
			sz = &ws;
			break;
		case 'f':
			sz = &fast;
			break;
		case 'H':
			sz = &hot;
			break;
		case 'W':
			sz = &window;
			break;
		case 'p':
			phase = atof(optarg);
			if (phase < 2 || phase > 3600) {
				fprintf(stderr, "bench_gups: --phase from 2 to 3600 s\n");
				return 2;
			}
			break;
		case 's':
			if (strcmp(optarg, "lz4") && strcmp(optarg, "zstd") && strcmp(optarg, "mem")) {
				fprintf(stderr, "bench_gups: --slow is lz4, zstd or mem\n");
				return 2;
			}
			snprintf(slow, sizeof slow, "%s", optarg);
			break;
		case 'n':
			slow_ns = strtoull(optarg, NULL, 10);
			break;
		case 'P':
			snprintf(policy, sizeof policy, "%s", optarg);
			break;
		case 'o':
			snprintf(out, sizeof out, "%s", optarg);
			break;
		case 'r':
			snprintf(which, sizeof which, "%s", optarg);
			break;
		case 'q':
			ws = 256ull << 20;
			fast = 64ull << 20;
			hot = 32ull << 20;
			window = 8ull << 20;
			phase = 10;
			break;
		case 'h':
			printf("%s", usage);
			return 0;
		default:
			fprintf(stderr, "%s", usage);
			return 2;
		}
		if (sz && (parse_size(optarg, sz) || *sz < (1 << 20))) {
			fprintf(stderr, "bench_gups: bad size '%s'\n%s", optarg, usage);
			return 2;
		}
	}
	if (hot * 2 > fast * 2 || hot > ws / 4 || window >= fast || fast >= ws) {
		fprintf(stderr, "bench_gups: need hot <= fast, hot <= ws/4, window < fast < ws\n");
		return 2;
	}
	printf("bench_gups: %llu MiB table, %llu MiB DRAM tier, %llu MiB hot set (90%% of updates), "
	       "slow tier %s, policy %s, fault mode %d, 1 thread\n",
	       (unsigned long long)(ws >> 20), (unsigned long long)(fast >> 20),
	       (unsigned long long)(hot >> 20), slow, policy, hm_fault_mode());
	if (strstr(which, "fast")) {
		steady[0] = run(0, &s[0], &dummy);
		ran[0] = true;
	}
	if (strstr(which, "static")) {
		steady[1] = run(1, &s[1], &dummy);
		ran[1] = true;
	}
	if (strstr(which, "tiered")) {
		steady[2] = run(2, &s[2], &rec);
		ran[2] = true;
	}
	printf("\nsteady throughput (median of the last 5 s before any move), M updates/s:\n");
	printf("  all-fast %.3f   static %.3f   tiered %.3f\n", steady[0] / 1e6, steady[1] / 1e6,
	       steady[2] / 1e6);
	if (ran[0] && ran[2])
		printf("  tiered / all-fast = %.3f   (target >= 0.8)\n", steady[2] / steady[0]);
	if (ran[1] && ran[2])
		printf("  tiered / static   = %.2f    (target >= 3)\n", steady[2] / steady[1]);
	if (ran[2])
		printf("  recovery after the hot set moved: %s%.0f s (target <= 10 s)\n",
		       rec < 0 ? "not within the phase, > " : "", rec < 0 ? phase : rec);
	plot(s, ran);
	return 0;
}
