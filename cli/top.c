/* SPDX-License-Identifier: MIT */
/*
 * `hmmap top`: every hmmap process and its caches and regions, live, in the
 * terminal. Each refresh reads every statistics segment (hm_snapshot_list(),
 * hm_snapshot_read()) and shows rates per second computed between the
 * publications of two refreshes. Plain ANSI escapes: the screen is
 * redrawn from the top; q or Ctrl-C quits and restores the terminal.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "hmmap.h"
#include "cli.h"

static void top_usage(FILE *f)
{
	fprintf(f,
		"usage: hmmap top [--once] [--interval SECONDS]\n"
		"\n"
		"Shows every process that uses hmmap, with its caches and regions,\n"
		"refreshed every second: resident memory (of the budget), dirty pages,\n"
		"faults, misses, evictions and write-backs per second, bytes read and\n"
		"written per second, and the p99 fault-service latency. Rates are\n"
		"computed between two refreshes; the first screen shows '-'.\n"
		"A terminal narrower than 145 columns gets a compact layout that\n"
		"fits in 80: short headers, a line per process, then its caches and\n"
		"regions.\n"
		"Press q (or Ctrl-C) to quit.\n"
		"\n"
		"  --once              print one screen, with rates over one interval, and exit\n"
		"  --interval SECONDS  time between refreshes, 0.2 to 60 (1)\n"
		"  -h, --help          this text\n"
		"\n"
		"Exit status: 0 success, 1 /dev/shm cannot be read, 2 bad usage.\n");
}

/* Columns of the wide layout; a narrower terminal gets a 79-column one. */
#define WIDE_COLS 145

/* The previous figures of one object, to compute rates. */
struct prev {
	pid_t pid;
	uint64_t start;
	uint32_t kind, id;
	uint64_t at; /* updated_ns of the publication */
	struct hm_stats s;
	double rate[6];
	bool have_rate;
	bool seen;
};

static struct prev *prevs;
static size_t nprev, cap_prev;
static volatile sig_atomic_t quit;
static struct termios saved_tio;
static bool tio_saved, screen_mode;
/* Lines of the frame so far and the most the terminal shows (0: no limit). */
static int nlines, max_lines, hidden;

static void on_signal(int sig)
{
	quit = 1;
}

static void restore_terminal(void)
{
	if (screen_mode) {
		fputs("\033[?25h\n", stdout);
		fflush(stdout);
		screen_mode = false;
	}
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
		tio_saved = false;
	}
}

static struct prev *prev_find(pid_t pid, uint64_t start, uint32_t kind, uint32_t id)
{
	for (size_t i = 0; i < nprev; i++)
		if (prevs[i].pid == pid && prevs[i].start == start && prevs[i].kind == kind &&
		    prevs[i].id == id)
			return &prevs[i];
	if (nprev == cap_prev) {
		size_t c = cap_prev ? cap_prev * 2 : 64;
		struct prev *p = realloc(prevs, c * sizeof *p);
		if (!p)
			return NULL;
		prevs = p;
		cap_prev = c;
	}
	memset(&prevs[nprev], 0, sizeof prevs[nprev]);
	prevs[nprev].pid = pid;
	prevs[nprev].start = start;
	prevs[nprev].kind = kind;
	prevs[nprev].id = id;
	return &prevs[nprev++];
}

/*
 * The rate of a count between two samples. A count read lower than before
 * (a sum of per-thread counters read while a failed load takes its count
 * back) has no rate this time: 0, not 2^64 less a little.
 */
static double per_s(uint64_t now, uint64_t before, double dt)
{
	return now >= before ? (double)(now - before) / dt : 0;
}

/* Rates: faults, misses, evictions, write-backs (per s), bytes read, written (per s). */
static void update_rates(struct prev *p, const struct hm_stats *s, uint64_t at)
{
	if (p->at && at > p->at) {
		double dt = (double)(at - p->at) / 1e9;
		const struct hm_stats *o = &p->s;
		p->rate[0] = per_s(s->faults_missing + s->faults_minor + s->faults_wp,
				   o->faults_missing + o->faults_minor + o->faults_wp, dt);
		p->rate[1] = per_s(s->misses, o->misses, dt);
		p->rate[2] = per_s(s->evictions, o->evictions, dt);
		p->rate[3] = per_s(s->writebacks, o->writebacks, dt);
		p->rate[4] = per_s(s->bytes_read, o->bytes_read, dt);
		p->rate[5] = per_s(s->bytes_written, o->bytes_written, dt);
		p->have_rate = true;
	}
	if (at != p->at) {
		p->s = *s;
		p->at = at;
	}
	p->seen = true;
}

/* A count in at most 5 characters: "850", "3.2k", "512k", "1.5M", "120M", "3.4G". */
static void fmt_count(char *out, size_t cap, double v)
{
	if (v < 999.5)
		snprintf(out, cap, "%.0f", v);
	else if (v < 9999.5)
		snprintf(out, cap, "%.1fk", v / 1e3);
	else if (v < 999.5e3)
		snprintf(out, cap, "%.0fk", v / 1e3);
	else if (v < 9999.5e3)
		snprintf(out, cap, "%.1fM", v / 1e6);
	else if (v < 999.5e6)
		snprintf(out, cap, "%.0fM", v / 1e6);
	else
		snprintf(out, cap, "%.1fG", v / 1e9);
}

static void fmt_rate(char *out, size_t cap, const struct prev *p, int i)
{
	double v;

	if (!p || !p->have_rate) {
		snprintf(out, cap, "-");
		return;
	}
	v = p->rate[i];
	if (i >= 4) {
		hm_cli_bytes(out, cap, (uint64_t)v);
		return;
	}
	if (v < 10000)
		snprintf(out, cap, "%.0f", v);
	else if (v < 10e6)
		snprintf(out, cap, "%.1fk", v / 1e3);
	else
		snprintf(out, cap, "%.1fM", v / 1e6);
}

/*
 * A count per second in at most 5 characters, for the narrow layout:
 * "850", "3.2k", "512k", "1.5M", "120M"; "-" before the first rate.
 */
static void fmt_rate_short(char *out, size_t cap, const struct prev *p, int i)
{
	double v;

	if (!p || !p->have_rate || i >= 4) {
		fmt_rate(out, cap, p, i); /* bytes: hm_cli_bytes() is 5 at most */
		return;
	}
	v = p->rate[i] < 0 ? 0 : p->rate[i];
	fmt_count(out, cap, v);
}

/* Appends one line to the frame, cut to the terminal's width. */
static void line(char **buf, size_t *len, size_t *cap, int width, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void line(char **buf, size_t *len, size_t *cap, int width, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	/* A frame taller than the terminal would scroll it: count what is left out. */
	if (max_lines && nlines >= max_lines - 1) {
		hidden++;
		return;
	}
	nlines++;
	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof tmp)
		n = sizeof tmp - 1;
	if (width > 0 && n > width)
		n = width;
	if (*len + (size_t)n + 8 > *cap) {
		size_t c = (*cap + (size_t)n + 8) * 2;
		char *p = realloc(*buf, c);
		if (!p)
			return;
		*buf = p;
		*cap = c;
	}
	memcpy(*buf + *len, tmp, (size_t)n);
	*len += (size_t)n;
	/* Clear the rest of the screen line, then a new line. */
	memcpy(*buf + *len, screen_mode ? "\033[K\n" : "\n", screen_mode ? 4 : 1);
	*len += screen_mode ? 4 : 1;
}

/* Reads every segment and draws one frame (into a buffer, written at once). */
static int frame(double interval, bool print)
{
	pid_t *pids = NULL;
	size_t npids = 0, len = 0, cap = 0;
	char *buf = NULL, tbuf[32];
	int width = 0, nproc = 0, nreg = 0;
	struct winsize ws;
	time_t t = time(NULL);
	struct tm tm;
	int rc;

	rc = hm_snapshot_list(&pids, &npids);
	if (rc) {
		fprintf(stderr, "hmmap top: %s\n", hm_errormsg());
		return rc;
	}
	nlines = max_lines = hidden = 0;
	if (screen_mode && !ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) && ws.ws_col) {
		width = ws.ws_col;
		max_lines = ws.ws_row > 4 ? ws.ws_row : 0;
	}
	for (size_t i = 0; i < nprev; i++)
		prevs[i].seen = false;

	struct hm_snapshot **snaps = calloc(npids ? npids : 1, sizeof *snaps);
	if (!snaps) {
		free(pids);
		return -ENOMEM;
	}
	for (size_t i = 0; i < npids; i++) {
		/* A process may exit between the listing and the read: skip it. */
		if (hm_snapshot_read(pids[i], &snaps[i]))
			continue;
		nproc++;
		for (size_t j = 0; j < snaps[i]->nobjs; j++) {
			const struct hm_obj_stats *o = &snaps[i]->objs[j];
			struct prev *p;
			nreg += o->kind == HM_OBJ_REGION;
			if (o->kind == HM_OBJ_STORE)
				continue;
			p = prev_find(snaps[i]->pid, snaps[i]->start_time, o->kind, o->id);
			if (p)
				update_rates(p, &o->stats, snaps[i]->updated_ns);
		}
	}
	/* Forget objects that are gone. */
	for (size_t i = 0; i < nprev;) {
		if (!prevs[i].seen)
			prevs[i] = prevs[--nprev];
		else
			i++;
	}
	if (!print)
		goto out;

	localtime_r(&t, &tm);
	strftime(tbuf, sizeof tbuf, "%H:%M:%S", &tm);
	line(&buf, &len, &cap, width,
	     "hmmap top - %s - %d process%s, %d region%s - every %.1f s - q quits", tbuf, nproc,
	     nproc == 1 ? "" : "es", nreg, nreg == 1 ? "" : "s", interval);
	/*
	 * The wide layout is one line per object with a PID and COMMAND
	 * column, WIDE_COLS columns. A narrower terminal (tmux's default pane
	 * is 80x24) gets the same figures in 79 columns: a line per
	 * process, then one per cache and region with the object and its
	 * policy or URI in one column, counts in at most five characters, and
	 * a legend for the short headers. It stays under 80 columns because
	 * clearing to the end of a line written to the last column would erase
	 * that column's character on most terminals.
	 */
	bool narrow = width > 0 && width < WIDE_COLS;
	if (narrow) {
		line(&buf, &len, &cap, width, "%s",
		     "rates per second (READ, WRITE in bytes); WB write-backs; P99 fault service");
		line(&buf, &len, &cap, width, "%-18s %11s %5s %5s %5s %5s %5s %5s %5s %6s",
		     "PID/OBJECT", "RESIDENT", "DIRTY", "FAULT", "MISS", "EVICT", "WB", "READ",
		     "WRITE", "P99");
	} else {
		line(&buf, &len, &cap, width, "%s", "");
		line(&buf, &len, &cap, width,
		     "%-7s %-15s %-10s %-24s %15s %7s %8s %8s %8s %7s %8s %8s %8s", "PID",
		     "COMMAND", "OBJECT", "POLICY/URI", "RESIDENT", "DIRTY", "FAULT/s", "MISS/s",
		     "EVICT/s", "WB/s", "READ/s", "WRITE/s", "P99");
	}
	for (size_t i = 0; i < npids; i++) {
		struct hm_snapshot *sn = snaps[i];
		bool first = true;
		if (!sn)
			continue;
		for (int kind = HM_OBJ_CACHE; kind <= HM_OBJ_REGION; kind++) {
			for (size_t j = 0; j < sn->nobjs; j++) {
				const struct hm_obj_stats *o = &sn->objs[j];
				const struct hm_stats *s = &o->stats;
				char obj[32], res[40], a[16], b[16], r[6][16], p99[16], dirty[16];
				struct prev *p;
				if ((int)o->kind != kind)
					continue;
				p = prev_find(sn->pid, sn->start_time, o->kind, o->id);
				snprintf(obj, sizeof obj, "%s %u",
					 kind == HM_OBJ_CACHE ? "cache" : "region", o->id);
				hm_cli_bytes(a, sizeof a, s->resident_bytes);
				if (kind == HM_OBJ_CACHE) {
					hm_cli_bytes(b, sizeof b, s->budget_bytes);
					snprintf(res, sizeof res, "%s/%s", a, b);
				} else {
					snprintf(res, sizeof res, "%s", a);
				}
				hm_cli_ns(p99, sizeof p99, s->fault_ns_p99);
				if (narrow) {
					char objname[96];
					if (first)
						line(&buf, &len, &cap, width, "%-7d %s",
						     (int)sn->pid, sn->comm);
					for (int k = 0; k < 6; k++)
						fmt_rate_short(r[k], sizeof r[k], p, k);
					fmt_count(dirty, sizeof dirty, (double)s->dirty_pages);
					snprintf(objname, sizeof objname, " %s %s", obj, o->name);
					line(&buf, &len, &cap, width,
					     "%-18.18s %11s %5s %5s %5s %5s %5s %5s %5s %6s",
					     objname, res, dirty, r[0], r[1], r[2], r[3], r[4],
					     r[5], p99);
					first = false;
					continue;
				}
				for (int k = 0; k < 6; k++)
					fmt_rate(r[k], sizeof r[k], p, k);
				char pidc[16];
				snprintf(pidc, sizeof pidc, "%d", (int)sn->pid);
				line(&buf, &len, &cap, width,
				     "%-7s %-15.15s %-10s %-24.24s %15s %7" PRIu64
				     " %8s %8s %8s %7s %8s %8s %8s",
				     first ? pidc : "", first ? sn->comm : "", obj, o->name, res,
				     s->dirty_pages, r[0], r[1], r[2], r[3], r[4], r[5], p99);
				first = false;
			}
		}
		if (first)
			line(&buf, &len, &cap, width, "%-7d %-15.15s (no caches or regions)",
			     (int)sn->pid, sn->comm);
	}
	if (!npids)
		line(&buf, &len, &cap, width, "(no process publishes hmmap statistics)");
	if (hidden) {
		max_lines = 0;
		line(&buf, &len, &cap, width, "... %d more line%s (a taller terminal shows them)",
		     hidden, hidden == 1 ? "" : "s");
	}
	if (screen_mode)
		fputs("\033[H", stdout);
	if (buf)
		fwrite(buf, 1, len, stdout);
	if (screen_mode)
		fputs("\033[J", stdout);
	else
		fputs("\n", stdout);
	fflush(stdout);
out:
	for (size_t i = 0; i < npids; i++)
		hm_snapshot_free(snaps[i]);
	free(snaps);
	free(pids);
	free(buf);
	return 0;
}

/* Waits up to `seconds` for a key; true if it asks to quit. */
static bool wait_key(double seconds, bool keys)
{
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		double spent;
		int ms;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		spent = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (quit)
			return true;
		if (spent >= seconds)
			return false;
		ms = (int)((seconds - spent) * 1000) + 1;
		if (!keys) {
			struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
			nanosleep(&ts, NULL);
			continue;
		}
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int n = poll(&pfd, 1, ms);
		if (n > 0 && (pfd.revents & POLLIN)) {
			char ch;
			ssize_t got = read(STDIN_FILENO, &ch, 1);
			if (got == 1 && (ch == 'q' || ch == 'Q' || ch == 3))
				return true;
			if (got == 0)
				keys = false; /* end of input: keep refreshing without keys */
		} else if (n > 0) {
			keys = false;
		}
	}
}

int hm_cli_top(int argc, char **argv)
{
	double interval = 1.0;
	bool once = false, keys;
	struct sigaction sa;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--once")) {
			once = true;
		} else if (!strcmp(argv[i], "--interval")) {
			char *end;
			if (i + 1 >= argc) {
				fprintf(stderr, "hmmap top: --interval needs a value\n\n");
				top_usage(stderr);
				return 2;
			}
			interval = strtod(argv[++i], &end);
			if (*end || end == argv[i] || !isfinite(interval) || interval < 0.2 ||
			    interval > 60) {
				fprintf(stderr, "hmmap top: --interval '%s' is not a number of "
						"seconds from 0.2 to 60\n",
					argv[i]);
				return 2;
			}
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			top_usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "hmmap top: unknown argument '%s'\n\n", argv[i]);
			top_usage(stderr);
			return 2;
		}
	}

	if (once) {
		/* Two samples an interval apart, so that the rates mean something. */
		if (frame(interval, false))
			return 1;
		wait_key(interval, false);
		rc = frame(interval, true);
		free(prevs);
		return rc ? 1 : 0;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	keys = isatty(STDIN_FILENO);
	if (keys && !tcgetattr(STDIN_FILENO, &saved_tio)) {
		struct termios raw = saved_tio;
		/* Keys without Enter, no echo; Ctrl-C still raises SIGINT. */
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		if (!tcsetattr(STDIN_FILENO, TCSANOW, &raw))
			tio_saved = true;
	}
	if (isatty(STDOUT_FILENO)) {
		screen_mode = true;
		fputs("\033[?25l\033[H\033[2J", stdout); /* hide the cursor, clear */
	}
	while (!quit) {
		if (frame(interval, true)) {
			rc = 1;
			break;
		}
		if (wait_key(interval, keys))
			break;
	}
	restore_terminal();
	free(prevs);
	return rc;
}
