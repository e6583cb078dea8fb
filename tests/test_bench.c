/* SPDX-License-Identifier: MIT */
/*
 * `hmmap bench` on tiny data: every workload runs and verifies on every
 * system; --json parses and carries the fields it promises with positive
 * figures; --csv has one row per grid point; a grid shows a progress bar;
 * --store copies the data into another store; a corrupted data file is
 * caught as BAD (so the verification can fail); bad usage exits 2 with a
 * message; --plot draws a PNG (skipped when gnuplot is missing). No timing
 * is checked.
 */
#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static char tool[256], dir[256];
static char out[1 << 17];

/* Runs a shell command; returns its exit status, output (stdout then stderr if asked) in out. */
static int run(const char *args, int with_stderr)
{
	char full[4096];
	FILE *f;
	size_t n = 0, k;
	int st;

	snprintf(full, sizeof full, "%s %s %s", tool, args, with_stderr ? "2>&1" : "2>/dev/null");
	f = popen(full, "r");
	if (!f)
		return -1;
	while ((k = fread(out + n, 1, sizeof out - 1 - n, f)) > 0)
		n += k;
	out[n] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The last part of the output: a failed row's reason is printed after the table. */
static const char *tail(void)
{
	size_t n = strlen(out);

	return n > 400 ? out + n - 400 : out;
}

static int count_lines_with(const char *text, const char *needle_at_end)
{
	int n = 0;
	const char *l = text;

	while (*l) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) : strlen(l);
		size_t nl = strlen(needle_at_end);
		if (len >= nl && !memcmp(l + len - nl, needle_at_end, nl))
			n++;
		if (!e)
			break;
		l = e + 1;
	}
	return n;
}

/* ------------------------------------------------------------ a tiny JSON checker */

static const char *js;
static int jerr;

static void ws(void)
{
	while (*js == ' ' || *js == '\n' || *js == '\t' || *js == '\r')
		js++;
}

static void jvalue(void);

static void jstring(void)
{
	if (*js != '"') {
		jerr = 1;
		return;
	}
	for (js++; *js && *js != '"'; js++) {
		if ((unsigned char)*js < 0x20)
			jerr = 1;
		if (*js == '\\') {
			js++;
			if (*js == 'u') {
				for (int i = 0; i < 4; i++)
					if (!isxdigit((unsigned char)*++js))
						jerr = 1;
			} else if (!strchr("\"\\/bfnrt", *js)) {
				jerr = 1;
			}
		}
	}
	if (*js != '"')
		jerr = 1;
	else
		js++;
}

static void jvalue(void)
{
	ws();
	if (jerr)
		return;
	if (*js == '{' || *js == '[') {
		char close = *js == '{' ? '}' : ']';
		int obj = *js == '{';
		js++;
		ws();
		if (*js == close) {
			js++;
			return;
		}
		for (;;) {
			if (obj) {
				ws();
				jstring();
				ws();
				if (*js++ != ':') {
					jerr = 1;
					return;
				}
			}
			jvalue();
			ws();
			if (jerr)
				return;
			if (*js == ',') {
				js++;
				continue;
			}
			if (*js == close) {
				js++;
				return;
			}
			jerr = 1;
			return;
		}
	} else if (*js == '"') {
		jstring();
	} else if (!strncmp(js, "true", 4) || !strncmp(js, "null", 4)) {
		js += 4;
	} else if (!strncmp(js, "false", 5)) {
		js += 5;
	} else {
		char *end;
		strtod(js, &end);
		if (end == js)
			jerr = 1;
		js = end;
	}
}

static int json_valid(const char *text)
{
	js = text;
	jerr = 0;
	jvalue();
	ws();
	return !jerr && !*js;
}

/* The number after each occurrence of "key": ; returns how many, all > 0 in *allpos. */
static int numbers_of(const char *text, const char *key, int *allpos)
{
	char pat[64];
	int n = 0;

	snprintf(pat, sizeof pat, "\"%s\": ", key);
	*allpos = 1;
	for (const char *p = strstr(text, pat); p; p = strstr(p + 1, pat)) {
		char *end;
		double v = strtod(p + strlen(pat), &end);
		if (end == p + strlen(pat) || !(v > 0))
			*allpos = 0;
		n++;
	}
	return n;
}

/* ------------------------------------------------------------ cases */

static int have_tool(void)
{
	return access(tool, X_OK) == 0;
}

static void help(void)
{
	if (!have_tool())
		SKIP("%.200s is not built", tool);
	CHECK(run("bench --help", 0) == 0);
	static const char *const words[] = {
	    "--workload", "--system",    "--store",        "--size",     "--cache",
	    "--policy",   "--page-size", "--fault-mode",   "--threads",  "--runs",
	    "--baseline", "--alpha",     "--hot-fraction", "--scale",    "--rw",
	    "--csv",      "--json",      "--plot",         "--progress", "--keep",
	    "--file",     "mmap-cold",   "pread",          "hotscan",    "stream"};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		CHECKF(strstr(out, words[i]), "--help does not mention %s", words[i]);
	CHECK(run("--help", 0) == 0 && strstr(out, "bench"));
}

static void every_workload_verifies(void)
{
	char args[1024];

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 2M --scale 10 --ops 1500 --runs 1 --threads 2 --passes 2",
	         dir);
	int rc = run(args, 1);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	/* 10 workloads x 4 systems, each verified. */
	CHECKF(count_lines_with(out, " ok") == 40, "%d rows ok:\n%.400s",
	       count_lines_with(out, " ok"), out);
	CHECK(!strstr(out, "BAD") && !strstr(out, "FAILED"));
	static const char *const wl[] = {"seq ",   "rand ",  "zipf ", "hotset ", "hotscan ",
	                                 "chase ", "rwmix ", "bfs ",  "sort ",   "stream "};
	for (size_t i = 0; i < sizeof wl / sizeof wl[0]; i++)
		CHECKF(strstr(out, wl[i]), "no row for %s", wl[i]);
	CHECK(strstr(out, "medians of 1 run"));
}

static void sigbus_and_policies(void)
{
	char args[1024];

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 1M --ops 800 --runs 1 --workload rand,sort --system hmmap "
	         "--fault-mode thread,sigbus --policy clock,lru --page-size 4K,16K --csv",
	         dir);
	int rc = run(args, 1);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	/* 2 workloads x 2 modes x 2 policies x 2 page sizes (the header ends without a quote) */
	CHECKF(count_lines_with(out, "\"") == 16, "%.400s", out);
	CHECK(strstr(out, ",sigbus,") && strstr(out, ",thread,") && strstr(out, ",lru,"));
	CHECK(strstr(out, ",16384,"));
}

/*
 * --policy is split as `hmmap replay` splits it: option commas stay with
 * their policy, and a repeated --policy adds to the list.
 */
static void policy_lists(void)
{
	char args[1024];

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 1M --ops 800 --runs 1 --workload rand --system hmmap "
	         "--policy 's3fifo:small=0.2,threshold=1,lru' --policy clock --csv",
	         dir);
	int rc = run(args, 1);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	CHECKF(count_lines_with(out, "\"") == 3, "%.300s", out);
	CHECKF(strstr(out, ",\"s3fifo:small=0.2,threshold=1\",") && strstr(out, ",lru,") &&
	           strstr(out, ",clock,"),
	       "%.300s", out);
}

static void json_output(void)
{
	char args[1024];
	int pos, n;

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(
	    args, sizeof args,
	    "bench --dir %s --size 1M --scale 9 --ops 1000 --runs 2 --workload zipf,bfs,stream "
	    "--system hmmap,mmap-warm,pread --baseline mmap-warm --json --passes 1",
	    dir);
	int rc = run(args, 0);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	CHECKF(json_valid(out), "not valid JSON:\n%.400s", out);
	CHECK(strstr(out, "\"results\": ["));
	CHECK(strstr(out, "\"baseline\": \"mmap-warm\""));
	n = numbers_of(out, "seconds", &pos);
	CHECKF(n == 9 && pos, "%d seconds fields, all positive %d", n, pos);
	n = numbers_of(out, "rate", &pos);
	CHECK(n == 9 && pos);
	n = numbers_of(out, "ratio", &pos);
	CHECK(n == 9 && pos);
	n = numbers_of(out, "runs", &pos);
	CHECK(n == 10 && pos); /* the top-level count and one per row */
	CHECK(numbers_of(out, "cpus", &pos) == 1 && pos);
	/* hmmap reported its faults and misses; every row verified. */
	CHECK(strstr(out, "\"system\": \"hmmap\""));
	CHECK(strstr(out, "\"unit\": \"edges/s\"") && strstr(out, "\"unit\": \"MB/s\""));
	CHECK(!strstr(out, "\"verified\": false"));
	CHECK(strstr(out, "\"seconds_all\": [") && strstr(out, "\"faults\": "));
	const char *h = strstr(out, "\"system\": \"hmmap\"");
	CHECK(h && (numbers_of(h, "misses", &pos), 1));
	/* One pass has no pass after the first. */
	CHECK(numbers_of(out, "best_pass_rate", &pos) == 9 && !pos);
}

/* stream times every pass and reports the best after the first, as STREAM does. */
static void stream_best_pass(void)
{
	char args[1024];
	int pos;

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 3M --runs 1 --workload stream,seq --system hmmap,mmap-warm "
	         "--passes 3 --advice sequential --json",
	         dir);
	int rc = run(args, 0);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	CHECKF(json_valid(out), "not valid JSON:\n%.400s", out);
	/* stream's two rows have a figure, seq's two have null. */
	CHECKF(numbers_of(out, "best_pass_rate", &pos) == 4 && !pos, "%.300s", out);
	const char *st = strstr(out, "\"workload\": \"stream\"");
	CHECK(st && strstr(st, "\"best_pass_rate\": ") &&
	      strtod(strstr(st, "\"best_pass_rate\": ") + 18, NULL) > 0);
	CHECK(strstr(out, "\"best_pass_rate\": null"));
	snprintf(args, sizeof args,
	         "bench --dir %s --size 3M --runs 1 --workload stream --system hmmap --passes 2",
	         dir);
	rc = run(args, 0);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	CHECKF(strstr(out, "best pass after the first") && strstr(out, " MB/s "), "%.300s", out);
}

static void csv_rows(void)
{
	char args[1024];

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 1M --ops 500 --runs 1 --workload seq,hotscan "
	         "--system hmmap,pread,mmap-cold --cache 25%%,512K --csv",
	         dir);
	int rc = run(args, 0);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	/* header + 2 workloads x (2 caches x 2 systems + mmap-cold) */
	int lines = 0;
	for (const char *p = out; *p; p++)
		lines += *p == '\n';
	CHECKF(lines == 11, "%d lines:\n%.400s", lines, out);
	CHECK(!strncmp(out, "workload,system,cache_bytes,page_size,", 38));
	CHECK(strstr(out, "hotscan,pread,524288,4096,"));
	CHECK(strstr(out, "seq,mmap-cold,0,4096,"));
	CHECK(!strstr(out, ",false,"));
}

/* The comma-separated field k (from 0) of line, into f. */
static void csv_field(const char *line, int k, char *f, size_t cap)
{
	for (; k > 0 && line; k--) {
		line = strpbrk(line, ",\n");
		if (line && *line == ',')
			line++;
		else
			line = NULL;
	}
	if (!line) {
		f[0] = 0;
		return;
	}
	snprintf(f, cap, "%.*s", (int)strcspn(line, ",\n"), line);
}

/*
 * Each grid point is divided by the baseline's row of the same cache and
 * page size: the pool against itself is 1, hmmap's ratio is its rate over
 * the pool's at the same budget; mmap-warm (no budget) uses the first.
 */
static void ratio_per_grid_point(void)
{
	char args[1024], f[64];
	double prate[2] = {0, 0}, hrate[2] = {0, 0}, hratio[2] = {0, 0}, mrate = 0, mratio = 0;
	int npread = 0, nhmmap = 0;

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 16M --ops 500 --runs 1 --workload rand "
	         "--system hmmap,pread,mmap-warm --baseline pread --cache 2M,16M --csv",
	         dir);
	int rc = run(args, 0);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	CHECK(!strncmp(out, "workload,system,cache_bytes,page_size,", 38));
	csv_field(out, 12, f, sizeof f);
	CHECKF(!strcmp(f, "rate"), "field 12 is %s", f);
	csv_field(out, 14, f, sizeof f);
	CHECKF(!strcmp(f, "ratio"), "field 14 is %s", f);
	for (const char *l = strchr(out, '\n'); l && l[1]; l = strchr(l + 1, '\n')) {
		const char *line = l + 1;
		char sys[32], cache[32], rate[32], ratio[32];
		csv_field(line, 1, sys, sizeof sys);
		csv_field(line, 2, cache, sizeof cache);
		csv_field(line, 12, rate, sizeof rate);
		csv_field(line, 14, ratio, sizeof ratio);
		int big = !strcmp(cache, "16777216");
		if (!strcmp(sys, "pread")) {
			CHECKF(!strcmp(ratio, "1.0000"), "pread at %s: ratio %s", cache, ratio);
			prate[big] = strtod(rate, NULL);
			npread++;
		} else if (!strcmp(sys, "hmmap")) {
			hrate[big] = strtod(rate, NULL);
			hratio[big] = strtod(ratio, NULL);
			nhmmap++;
		} else if (!strcmp(sys, "mmap-warm")) {
			mrate = strtod(rate, NULL);
			mratio = strtod(ratio, NULL);
		}
	}
	CHECKF(npread == 2 && nhmmap == 2 && mrate > 0, "%.400s", out);
	/* The CSV rounds the ratio to 4 decimals and rates to 6 digits. */
	for (int k = 0; k < 2; k++)
		CHECKF(prate[k] > 0 &&
		           fabs(hratio[k] - hrate[k] / prate[k]) <= 1e-3 * hratio[k] + 1e-4,
		       "hmmap %d: ratio %.4f, rates %g / %g", k, hratio[k], hrate[k], prate[k]);
	CHECKF(fabs(mratio - mrate / prate[0]) <= 1e-3 * mratio + 1e-4,
	       "mmap-warm: ratio %.4f, rates %g / %g (the first pread row)", mratio, mrate,
	       prate[0]);
}

/* The number after "key": following from, or -1. */
static double json_after(const char *from, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof k, "\"%s\": ", key);
	p = from ? strstr(from, k) : NULL;
	return p ? strtod(p + strlen(k), NULL) : -1;
}

/*
 * seq checks and sums each item in one pass, so with a cache of a quarter
 * of the data hmmap reads the data from its store about once (readahead
 * may add a little), as the pool does - not twice, once per pass.
 */
static void seq_reads_once(void)
{
	char args[1024];

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 4M --runs 1 --workload seq --system hmmap,pread "
	         "--cache 25%% --json",
	         dir);
	int rc = run(args, 0);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	double h = json_after(strstr(out, "\"system\": \"hmmap\""), "bytes_read");
	double p = json_after(strstr(out, "\"system\": \"pread\""), "bytes_read");
	CHECKF(p == 4 << 20, "pread read %.0f bytes of 4 MiB", p);
	CHECKF(h >= 4 << 20 && h < 1.5 * (4 << 20), "hmmap read %.0f bytes of 4 MiB", h);
}

static void grid_progress_and_store(void)
{
	char args[1024];

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(
	    args, sizeof args,
	    "bench --dir %s --size 1M --ops 500 --runs 2 --workload rwmix --system hmmap "
	    "--cache 256K,512K --page-size 4K,64K --fault-mode thread,sigbus --store 'mem:%%s' "
	    "--progress",
	    dir);
	int rc = run(args, 1);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	CHECKF(count_lines_with(out, " ok") == 8, "%.400s", tail());
	CHECK(strstr(out, "16/16 runs"));
	CHECK(strstr(out, "left"));
	/* Not a terminal: every redraw fits 80 columns (79, the last one left free). */
	for (const char *p = strchr(out, '\r'); p; p = strchr(p + 1, '\r')) {
		size_t n = strcspn(p + 1, "\r\n");
		CHECKF(n <= 79, "a %zu-column status line: %.*s", n, (int)(n > 200 ? 200 : n),
		       p + 1);
	}
	/* A store too small for the data is a clear failure, not a crash. */
	snprintf(args, sizeof args,
	         "bench --dir %s --size 1M --ops 100 --runs 1 --workload rand --system hmmap "
	         "--store mem:64K",
	         dir);
	rc = run(args, 1);
	CHECKF(rc == 1 && strstr(out, "the data needs"), "exit %d:\n%.400s", rc, tail());
	/*
	 * Data larger than the free space is refused before anything is
	 * written (checked only where the disk has less than --size's 1T
	 * maximum free, so the test can never fill a disk).
	 */
	struct statvfs sv;
	if (!statvfs(dir, &sv) && (unsigned long long)sv.f_bavail * sv.f_frsize < (1ull << 39)) {
		snprintf(args, sizeof args, "bench --dir %s --size 1T --runs 1 --workload seq",
		         dir);
		rc = run(args, 1);
		CHECKF(rc == 1 && strstr(out, "free"), "exit %d:\n%.400s", rc, tail());
	}
}

/*
 * Several --store options: each is a row of hmmap's grid, named in the
 * table (hmmap[1], hmmap[2] and a list below) and in CSV and JSON, with a
 * password hidden; a store that fails fails its rows only.
 */
static void several_stores(void)
{
	char args[1024];

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(args, sizeof args,
		 "bench --dir %s --size 1M --ops 300 --runs 1 --workload rand,seq "
		 "--system hmmap,pread --store 'mem:%%s' --store 'mem:%%s,read_ns=2000' "
		 "--store 'redis://u:Secret-9@127.0.0.1:1/x?timeout=200' --json",
		 dir);
	int rc = run(args, 0);
	CHECKF(rc == 1, "exit %d (a store failed):\n%.400s", rc, tail());
	CHECKF(json_valid(out), "not valid JSON:\n%.400s", out);
	int pos;
	CHECK(numbers_of(out, "rate", &pos) == 8); /* 2 workloads x (3 stores + pread) */
	const char *a = strstr(out, "\"store\": \"mem:%s\"");
	const char *b = strstr(out, "\"store\": \"mem:%s,read_ns=2000\"");
	const char *c = strstr(out, "\"store\": \"redis://u:***@127.0.0.1:1/x?timeout=200\"");
	CHECKF(a && b && c && a < b && b < c, "%.300s", out);
	CHECK(strstr(out, "\"store\": null")); /* the pool's rows */
	CHECK(!strstr(out, "Secret-9"));
	CHECK(strstr(c, "\"verified\": false") && strstr(a, "\"verified\": true"));
	/* The table numbers the stores; CSV names them last. */
	strstr(args, " --json")[0] = 0;
	rc = run(args, 0);
	CHECKF(rc == 1, "exit %d:\n%.400s", rc, tail());
	CHECKF(count_lines_with(out, " ok") == 6 && count_lines_with(out, " FAILED") == 2,
	       "%.300s", out);
	CHECK(strstr(out, "rand     hmmap[2] ") && strstr(out, "seq      hmmap[3] "));
	CHECK(strstr(out, "stores:\n  hmmap[1] mem:%s\n  hmmap[2] mem:%s,read_ns=2000\n"));
	CHECK(strstr(out, "seq hmmap[3]: store redis://u:***@") && !strstr(out, "Secret-9"));
	strcat(args, " --csv");
	rc = run(args, 0);
	CHECKF(rc == 1, "exit %d:\n%.400s", rc, tail());
	CHECK(strstr(out, ",error,store\n"));
	CHECK(count_lines_with(out, ",\"mem:%s,read_ns=2000\"") == 2);
	CHECK(count_lines_with(out, ",\"\"") == 2); /* the pool: no store */
}

/*
 * In a 60-column terminal (a tmux pane) the bar is fitted to the width: it
 * never wraps, so the redraws leave exactly one line behind, the last.
 */
static void progress_fits_terminal(void)
{
	char cmd[2048], sess[64], pane[8192], o[256];
	FILE *f;
	size_t n;
	int lines = 0, bars = 0;

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	if (system("tmux -V >/dev/null 2>&1"))
		SKIP("tmux is not installed");
	snprintf(sess, sizeof sess, "hmmap-bench-bar-%d", (int)getpid());
	/* Own server socket (-L); stdout goes away, stderr is the pane. */
	snprintf(cmd, sizeof cmd,
	         "tmux -L %s new-session -d -s %s -x 60 -y 20 '%s bench --dir %s --size 1M "
	         "--ops 300 --runs 3 --workload rand,hotset --system hmmap,mmap-warm,pread "
	         ">/dev/null; sleep 60'",
	         sess, sess, tool, dir);
	CHECKF(system(cmd) == 0, "%.200s", cmd);
	snprintf(cmd, sizeof cmd, "tmux -L %s capture-pane -p -t %s", sess, sess);
	pane[0] = 0;
	for (int i = 0; i < 600 && !strstr(pane, "18/18 runs"); i++) {
		usleep(100000);
		f = popen(cmd, "r");
		if (!f)
			break;
		n = fread(pane, 1, sizeof pane - 1, f);
		pane[n] = 0;
		pclose(f);
	}
	snprintf(o, sizeof o, "tmux -L %s kill-server", sess);
	if (system(o))
		(void)0;
	for (const char *l = pane; *l;) {
		size_t len = strcspn(l, "\n");
		int blank = 1;
		for (size_t k = 0; k < len; k++)
			blank &= l[k] == ' ';
		/* A note (a tmpfs data directory) is a line of its own. */
		lines += !blank && strncmp(l, "hmmap bench:", 12);
		bars += len && memmem(l, len, "runs,", 5) != NULL;
		l += len + (l[len] == '\n');
	}
	CHECKF(strstr(pane, "18/18 runs") && strstr(pane, "left"), "pane:\n%.400s", pane);
	CHECKF(lines == 1 && bars == 1, "%d lines, %d bars:\n%.400s", lines, bars, pane);
}

static void corrupt_data_is_caught(void)
{
	char args[1024], path[512];
	uint64_t junk = 0x0123456789abcdefull;
	int fd;

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	snprintf(path, sizeof path, "%s/kept.dat", dir);
	unlink(path);
	snprintf(args, sizeof args,
	         "bench --file %s --size 1M --runs 1 --workload seq --system mmap-warm", path);
	CHECKF(run(args, 1) == 0, "%.400s", out);
	/* Word 1 of item 7 (after the 4 KiB header) is what every reader checks. */
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, &junk, 8, 4096 + 7 * 4096 + 8) == 8);
	close(fd);
	snprintf(args, sizeof args,
	         "bench --file %s --size 1M --runs 1 --workload seq --system hmmap,mmap-cold,pread",
	         path);
	int rc = run(args, 1);
	CHECKF(rc == 1, "exit %d:\n%.400s", rc, tail());
	CHECKF(count_lines_with(out, " BAD") == 3, "%.400s", out);
	/* A file that is not ours is never overwritten. */
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, "precious", 8) == 8);
	close(fd);
	rc = run(args, 1);
	CHECKF(rc == 1 && strstr(out, "not overwriting"), "exit %d:\n%.400s", rc, tail());
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 8);
	unlink(path);
}

static void bad_usage(void)
{
	static const char *const bad[] = {
	    "bench --bogus",
	    "bench extra",
	    "bench --workload nosuch",
	    "bench --workload ''",
	    "bench --system nosuch",
	    "bench --size abc",
	    "bench --size 1K",
	    "bench --cache 0",
	    "bench --cache 12%%x",
	    "bench --cache 0%",
	    "bench --page-size 3K",
	    "bench --page-size 4M",
	    "bench --policy nosuch",
	    "bench --fault-mode fast",
	    "bench --mode weird",
	    "bench --threads 0",
	    "bench --threads 65",
	    "bench --runs 0",
	    "bench --baseline nosuch",
	    "bench --alpha -1",
	    "bench --hot-fraction 2",
	    "bench --hot-share 1.5",
	    "bench --scale 2",
	    "bench --scale 99",
	    "bench --rw 3",
	    "bench --rw 0:0",
	    "bench --rw a:b",
	    "bench --ops 0",
	    "bench --passes 0",
	    "bench --timeout 0",
	    "bench --advice fast",
	    "bench --csv --json",
	    "bench --file /tmp/x --workload seq,bfs",
	    "bench --size",
	    "bench --plot /nonexistent/dir/x.png", /* refused before any run */
	    /* A baseline that is not run; a plot path gnuplot cannot take. */
	    "bench --system hmmap --baseline pread",
	    "bench --system hmmap,mmap-warm --baseline pread --plot /tmp/x.png",
	    "bench --plot \"$(printf '/tmp/a\\nb.png')\"",
	    "bench --store ''",
	    /*
	     * Refused before the grid runs, not reported as failed rows: bad
	     * options, a replay-only policy, an unknown store scheme.
	     */
	    "bench --size 1M --ops 100 --runs 1 --workload rand --system hmmap "
	    "--policy s3fifo:small=2",
	    "bench --size 1M --ops 100 --runs 1 --workload rand --system hmmap --policy opt",
	    "bench --size 1M --ops 100 --runs 1 --workload rand --system hmmap "
	    "--policy clock --policy lru:bogus=1",
	    "bench --size 1M --ops 100 --runs 1 --workload rand --system hmmap --store nosuch:x",
	    /* Seventeen stores: more than a list holds. */
	    "bench $(for i in $(seq 17); do printf -- '--store mem:%%%%s,read_ns=%d ' $i; done)",
	};

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = run(bad[i], 1);
		CHECKF(rc == 2, "'%s' exited %d: %.300s", bad[i], rc, out);
		CHECKF(strstr(out, "hmmap bench: "), "'%s' printed no message: %.300s", bad[i],
		       out);
	}
}

/* Reads the file that the tool's last output names after `marker` (a --keep message). */
static int read_kept(const char *marker, char *buf, size_t cap)
{
	const char *k = strstr(out, marker);
	char name[512];
	FILE *f;

	if (!k || sscanf(k + strlen(marker), "%511s", name) != 1 || !(f = fopen(name, "r")))
		return -1;
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = 0;
	return 0;
}

static void plot_png(void)
{
	char args[1024], path[512];
	unsigned char magic[8];
	int fd;

	if (!have_tool())
		SKIP("%.200s is not built", tool);
	if (system("command -v gnuplot >/dev/null 2>&1"))
		SKIP("gnuplot is not installed");
	snprintf(path, sizeof path, "%s/plot.png", dir);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 1M --ops 500 --runs 1 --workload seq,rand "
	         "--system hmmap,mmap-warm,pread --plot %s",
	         dir, path);
	int rc = run(args, 1);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	CHECK(read(fd, magic, 8) == 8);
	close(fd);
	CHECK(!memcmp(magic, "\x89PNG\r\n\x1a\n", 8));
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size > 2000);
	unlink(path);
	/*
	 * A path with a quote, and hmmap as the baseline, whose own bars (1)
	 * must rise above the axis's bottom: --keep keeps the script to read.
	 */
	snprintf(path, sizeof path, "%s/it's.png", dir);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 1M --ops 300 --runs 1 --workload rand "
	         "--system hmmap,mmap-warm --baseline hmmap --keep --plot \"%s\"",
	         dir, path);
	rc = run(args, 1);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	CHECK(read(fd, magic, 8) == 8);
	close(fd);
	CHECK(!memcmp(magic, "\x89PNG\r\n\x1a\n", 8));
	unlink(path);
	char script[8192];
	CHECKF(read_kept("gnuplot script ", script, sizeof script) == 0, "%.400s", tail());
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -f %s/hmmap-bench-*", dir);
	if (system(cmd))
		(void)0;
	CHECKF(strstr(script, "it''s.png'"), "%.300s", script);
	const char *y = strstr(script, "set yrange [");
	CHECKF(y && strtod(y + 12, NULL) > 0 && strtod(y + 12, NULL) < 1, "%.300s", y ? y : script);
	/* Rows that differ by their thread count only are told apart on the axis. */
	snprintf(path, sizeof path, "%s/threads.png", dir);
	snprintf(args, sizeof args,
	         "bench --dir %s --size 1M --ops 300 --runs 1 --workload rand --threads 1,2 "
	         "--system hmmap,mmap-warm --keep --plot %s",
	         dir, path);
	rc = run(args, 1);
	CHECKF(rc == 0, "exit %d:\n%.400s", rc, tail());
	unlink(path);
	char labels[4096];
	CHECKF(read_kept(" and data ", labels, sizeof labels) == 0, "%.400s", tail());
	if (system(cmd))
		(void)0;
	CHECKF(strstr(labels, "rand hmmap") && strstr(labels, " 1T\"") && strstr(labels, " 2T\""),
	       "%.400s", labels);
}

static void no_files_left(void)
{
	char cmd[600];

	snprintf(cmd, sizeof cmd, "ls %s | grep -q hmmap-bench", dir);
	CHECKF(system(cmd) != 0, "data files were left in %s", dir);
}

int main(void)
{
	const char *b = getenv("HMMAP_BUILD");

	snprintf(tool, sizeof tool, "./%.200s/hmmap", b && *b ? b : "build");
	snprintf(dir, sizeof dir, "/var/tmp/hmmap-test-bench-XXXXXX");
	if (!mkdtemp(dir)) {
		snprintf(dir, sizeof dir, "/tmp/hmmap-test-bench-XXXXXX");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			return 1;
		}
	}
	RUN(help);
	RUN(bad_usage);
	RUN(every_workload_verifies);
	RUN(sigbus_and_policies);
	RUN(policy_lists);
	RUN(json_output);
	RUN(stream_best_pass);
	RUN(csv_rows);
	RUN(ratio_per_grid_point);
	RUN(seq_reads_once);
	RUN(grid_progress_and_store);
	RUN(several_stores);
	RUN(progress_fits_terminal);
	RUN(corrupt_data_is_caught);
	RUN(plot_png);
	RUN(no_files_left);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		(void)0;
	return test_done();
}
