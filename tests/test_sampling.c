/* SPDX-License-Identifier: MIT */
/*
 * Reference sampling: HMMAP_SAMPLE_RATE and the sampler it drives.
 *
 * The variable takes `auto` (the default: a cost budget, resolved per fault
 * mode by hm__sample_rate(), and raised while a cache evicts), a number of
 * pages per second (with the size
 * suffixes of every HMMAP_* number), or 0 (no sampler); anything else is an
 * error naming the variable. Then, in each fault mode, the default rate
 * really samples (a working set of resident pages sees hint faults that reach
 * the policy), 0 samples nothing, and a rate above one batch per tick keeps
 * every word intact; auto samples less when sampling is measured to cost
 * more than its budget.
 *
 * The options are read once per process, so every case runs in a child.
 * There are no timing thresholds: cases wait (bounded) for an event, or
 * count events over a period where the right count is exactly zero, or (the
 * measured cost) where it is about 30 times below what the old rule gave.
 */
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"

#include "hmmap.h"
#include "core/internal.h"

#define PG 4096u

/* ---- parsing, and the rate each fault mode gets ---- */

struct rate_case {
	const char *var;   /* "HMMAP_SAMPLE_RATE=v", or "HMMAP_SAMPLE_RATE" to unset */
	bool ok;
	bool is_auto;
	uint64_t thread_rate, sigbus_rate;
};

static int rate_child(void *arg)
{
	const struct rate_case *rc = arg;
	const struct hm_env *e = NULL;
	struct hm_cache *c = NULL;
	int err = hm__env(&e);

	if (!rc->ok) {
		if (err != -EINVAL) {
			printf("%s: hm__env returned %d, not -EINVAL\n", rc->var, err);
			return 1;
		}
		if (!strstr(hm_errormsg(), "HMMAP_SAMPLE_RATE")) {
			printf("%s: message does not name the variable: '%s'\n", rc->var,
			       hm_errormsg());
			return 1;
		}
		/* Every entry point reports it, not only the first. */
		if (hm_cache_new(&c, 1 << 20, NULL) != -EINVAL || c ||
		    !strstr(hm_errormsg(), "HMMAP_SAMPLE_RATE")) {
			printf("%s: hm_cache_new: '%s'\n", rc->var, hm_errormsg());
			return 1;
		}
		printf("rejected: %s\n", hm_errormsg());
		return 0;
	}
	if (err) {
		printf("%s: rejected: %s\n", rc->var, hm_errormsg());
		return 1;
	}
	uint64_t t = hm__sample_rate(e, HM_FAULT_THREAD, false);
	uint64_t s = hm__sample_rate(e, HM_FAULT_SIGBUS, false);
	if (e->sample_auto != rc->is_auto || t != rc->thread_rate || s != rc->sigbus_rate) {
		printf("%s: auto %d, thread %llu, sigbus %llu; expected auto %d, %llu, %llu\n",
		       rc->var, e->sample_auto, (unsigned long long)t, (unsigned long long)s,
		       rc->is_auto, (unsigned long long)rc->thread_rate,
		       (unsigned long long)rc->sigbus_rate);
		return 1;
	}
	/*
	 * While a cache evicts, auto samples at least 4096 pages/s (the old
	 * fixed default) and never less than its budget; explicit rates stay.
	 */
	uint64_t te = hm__sample_rate(e, HM_FAULT_THREAD, true);
	uint64_t se = hm__sample_rate(e, HM_FAULT_SIGBUS, true);
	uint64_t want_te = rc->is_auto ? (t > 4096 ? t : 4096) : t;
	uint64_t want_se = rc->is_auto ? (s > 4096 ? s : 4096) : s;
	if (te != want_te || se != want_se) {
		printf("%s: evicting: thread %llu, sigbus %llu; expected %llu, %llu\n", rc->var,
		       (unsigned long long)te, (unsigned long long)se,
		       (unsigned long long)want_te, (unsigned long long)want_se);
		return 1;
	}
	/*
	 * A measured cost per sampled page bounds auto's budget rate (1% of a
	 * CPU over the cost, at least 128/s); 0 means not measured yet. It
	 * never raises a rate, and changes neither the evicting floor nor an
	 * explicit rate.
	 */
	static const struct {
		uint64_t ns, thread, sigbus; /* expected for auto */
	} costs[] = {
		{ 0, 1250, 4000 },        { 1, 1250, 4000 },   { 2500, 1250, 4000 },
		{ 5000, 1250, 2000 },     { 20000, 500, 500 }, { 78125, 128, 128 },
		{ 100000, 128, 128 },     { 1000000000, 128, 128 }, { UINT64_MAX, 128, 128 },
	};
	for (size_t i = 0; i < sizeof costs / sizeof costs[0]; i++) {
		uint64_t ns = costs[i].ns;
		uint64_t ta = hm__sample_rate_at(e, HM_FAULT_THREAD, false, ns);
		uint64_t sa = hm__sample_rate_at(e, HM_FAULT_SIGBUS, false, ns);
		uint64_t tw = rc->is_auto ? costs[i].thread : t;
		uint64_t sw = rc->is_auto ? costs[i].sigbus : s;
		if (ta != tw || sa != sw ||
		    hm__sample_rate_at(e, HM_FAULT_THREAD, true, ns) != want_te ||
		    hm__sample_rate_at(e, HM_FAULT_SIGBUS, true, ns) != want_se) {
			printf("%s: cost %llu ns: thread %llu, sigbus %llu; expected %llu, %llu\n",
			       rc->var, (unsigned long long)ns, (unsigned long long)ta,
			       (unsigned long long)sa, (unsigned long long)tw,
			       (unsigned long long)sw);
			return 1;
		}
	}
	/* sample_rate is nonzero exactly when a sampler is to run. */
	if ((e->sample_rate != 0) != (t != 0 || s != 0)) {
		printf("%s: sample_rate %llu\n", rc->var, (unsigned long long)e->sample_rate);
		return 1;
	}
	if (hm_cache_new(&c, 1 << 20, NULL) || hm_cache_free(c)) {
		printf("%s: hm_cache_new: %s\n", rc->var, hm_errormsg());
		return 1;
	}
	return 0;
}

static void run_rate_cases(const struct rate_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *env[] = { cases[i].var, NULL };
		int st = tu_child(env, rate_child, (void *)&cases[i]);
		CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: child %s", cases[i].var,
		       tu_status_str(st));
	}
}

/*
 * auto: 2% of a CPU in hint faults, at ~16 us per hint fault in thread mode
 * and ~5 us in sigbus mode (src/core/env.c). Explicit numbers mean exactly
 * themselves in both modes, as before `auto` existed.
 */
static void test_rate_values(void)
{
	static const struct rate_case cases[] = {
		{ "HMMAP_SAMPLE_RATE", true, true, 1250, 4000 },
		{ "HMMAP_SAMPLE_RATE=auto", true, true, 1250, 4000 },
		{ "HMMAP_SAMPLE_RATE=0", true, false, 0, 0 },
		{ "HMMAP_SAMPLE_RATE=4096", true, false, 4096, 4096 },
		{ "HMMAP_SAMPLE_RATE=4K", true, false, 4096, 4096 },
		{ "HMMAP_SAMPLE_RATE=1", true, false, 1, 1 },
		{ "HMMAP_SAMPLE_RATE=100000", true, false, 100000, 100000 },
	};

	run_rate_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_rate_bad(void)
{
	static const struct rate_case cases[] = {
		{ "HMMAP_SAMPLE_RATE=fast", false, false, 0, 0 },
		{ "HMMAP_SAMPLE_RATE=", false, false, 0, 0 },
		{ "HMMAP_SAMPLE_RATE=-1", false, false, 0, 0 },
		{ "HMMAP_SAMPLE_RATE=1X", false, false, 0, 0 },
		{ "HMMAP_SAMPLE_RATE=autox", false, false, 0, 0 },
		{ "HMMAP_SAMPLE_RATE= auto", false, false, 0, 0 },
		{ "HMMAP_SAMPLE_RATE=99999999999999999999999", false, false, 0, 0 },
	};

	run_rate_cases(cases, sizeof cases / sizeof cases[0]);
}

/* ---- the sampler at work ---- */

/* Hints: stop at the first sampled hit; hints after: read for secs, then expect some. */
enum expect { EXPECT_HINTS, EXPECT_HINTS_AFTER, EXPECT_NONE };

struct work_case {
	const char *mode; /* HMMAP_FAULT_MODE */
	const char *rate; /* HMMAP_SAMPLE_RATE=..., or the bare name to unset */
	enum expect expect;
	double secs;      /* EXPECT_HINTS: the most to wait; otherwise how long to read */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t word_of(uint64_t page)
{
	return page * 0x9e3779b97f4a7c15ull + 1;
}

/* A writable 4 MiB region over mem:4M on an 8 MiB cache (nothing is ever evicted). */
struct written {
	struct hm_store *st;
	struct hm_cache *c;
	struct hm_region *r;
	char *base;
	uint64_t np;
};

/* Maps w's region and writes every page once; 0, or -1 after saying why. */
static int map_written(struct written *w)
{
	const size_t len = 4u << 20;

	memset(w, 0, sizeof *w);
	if (hm_store_open(&w->st, "mem:4M", 0) || hm_cache_new(&w->c, 2 * len, "clock") ||
	    hm_region_map(&w->r, w->c, w->st, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, PG)) {
		printf("setup: %s\n", hm_errormsg());
		return -1;
	}
	w->base = hm_region_addr(w->r);
	w->np = len / PG;
	for (uint64_t p = 0; p < w->np; p++)
		*(volatile uint64_t *)(w->base + p * PG) = word_of(p);
	return 0;
}

/* Undoes map_written(): 0, or 1 after saying what failed. */
static int unmap_written(struct written *w)
{
	int rc = 0;

	if (hm_region_unmap(w->r) || hm_cache_free(w->c)) {
		printf("teardown: %s\n", hm_errormsg());
		rc = 1;
	}
	hm_store_close(w->st);
	return rc;
}

/* 4096 checked reads of random pages of w; returns how many read wrong. */
static uint64_t read_random(const struct written *w, uint64_t *rng)
{
	uint64_t bad = 0;

	for (int i = 0; i < 4096; i++) {
		uint64_t p = (tu_rnd(rng) >> 16) % w->np;
		if (*(const volatile uint64_t *)(w->base + p * PG) != word_of(p))
			bad++;
	}
	return bad;
}

/*
 * A writable 4 MiB region over a mem: store on an 8 MiB cache (nothing is
 * ever evicted): every page is written once, then pages are read in random
 * order and checked. Returns 0 when the case's expectation holds.
 */
static int work_child(void *arg)
{
	const struct work_case *wc = arg;
	struct written w;
	struct hm_stats s0, s1;
	uint64_t rng = 42, bad = 0, reads = 0;
	int want = !strcmp(wc->mode, "sigbus") ? HM_FAULT_SIGBUS : HM_FAULT_THREAD;
	int mode = hm_fault_mode();

	if (mode < 0) {
		printf("skip: fault mode %s unavailable: %s\n", wc->mode, hm_errormsg());
		return 77;
	}
	if (mode != want) {
		printf("fault mode %d, asked for %s\n", mode, wc->mode);
		return 1;
	}
	if (map_written(&w))
		return 1;
	hm_region_stats(w.r, &s0);
	double t0 = now_s();
	for (;;) {
		bad += read_random(&w, &rng);
		reads += 4096;
		hm_region_stats(w.r, &s1);
		if (wc->expect == EXPECT_HINTS && s1.hits > s0.hits)
			break;
		if (now_s() - t0 > wc->secs)
			break;
	}
	hm_region_stats(w.r, &s1);
	printf("%s %s: %llu reads, %llu hint faults, %llu sampled hits, %llu missing faults\n",
	       wc->mode, wc->rate, (unsigned long long)reads,
	       (unsigned long long)(s1.faults_minor - s0.faults_minor),
	       (unsigned long long)(s1.hits - s0.hits),
	       (unsigned long long)(s1.faults_missing - s0.faults_missing));
	int rc = 0;
	if (bad) {
		printf("%llu words read wrong\n", (unsigned long long)bad);
		rc = 1;
	}
	if (s1.faults_missing != s0.faults_missing) {
		printf("pages left a cache that holds them all\n");
		rc = 1;
	}
	if (wc->expect != EXPECT_NONE && !(s1.hits > s0.hits && s1.faults_minor > s0.faults_minor)) {
		printf("no sampled reference reached the policy in %.0f s\n", wc->secs);
		rc = 1;
	}
	if (wc->expect == EXPECT_NONE && (s1.faults_minor != s0.faults_minor || s1.hits != s0.hits)) {
		printf("the sampler ran although it is off\n");
		rc = 1;
	}
	/* The written words are still there through the store after an unmap. */
	return rc | unmap_written(&w);
}

static void run_work(const struct work_case *wc)
{
	char mode[64];
	const char *env[] = { mode, wc->rate, "HMMAP_READAHEAD=0", NULL };

	snprintf(mode, sizeof mode, "HMMAP_FAULT_MODE=%s", wc->mode);
	TU_CHILD_RESULT(tu_child(env, work_child, (void *)wc));
}

/* The default (auto) samples in thread mode: the rate was resolved. */
static void test_default_samples_thread(void)
{
	static const struct work_case wc = { "thread", "HMMAP_SAMPLE_RATE", EXPECT_HINTS, 30 };
	run_work(&wc);
}

static void test_default_samples_sigbus(void)
{
	static const struct work_case wc = { "sigbus", "HMMAP_SAMPLE_RATE", EXPECT_HINTS, 30 };
	run_work(&wc);
}

static void test_auto_samples_sigbus(void)
{
	static const struct work_case wc = { "sigbus", "HMMAP_SAMPLE_RATE=auto", EXPECT_HINTS,
					     30 };
	run_work(&wc);
}

/* 0 starts no sampler: a second of reads of resident pages faults nothing. */
static void test_zero_samples_nothing(void)
{
	static const struct work_case t = { "thread", "HMMAP_SAMPLE_RATE=0", EXPECT_NONE, 1 };
	static const struct work_case s = { "sigbus", "HMMAP_SAMPLE_RATE=0", EXPECT_NONE, 1 };
	run_work(&t);
	if (t_case_failed)
		return;
	run_work(&s);
}

/*
 * A rate of several batches per tick (40,960 pages/s is 2,048 a tick, four
 * batches; the whole 1,024-page cache each tick): two seconds of reads in
 * each mode, every word right, and sampled references reach the policy.
 */
static void test_high_rate_keeps_data(void)
{
	static const struct work_case s = { "sigbus", "HMMAP_SAMPLE_RATE=40960", EXPECT_HINTS_AFTER,
					    2 };
	static const struct work_case t = { "thread", "HMMAP_SAMPLE_RATE=40960", EXPECT_HINTS_AFTER,
					    2 };
	run_work(&s);
	if (t_case_failed)
		return;
	run_work(&t);
}

/*
 * auto keeps to its budget by what sampling is measured to cost: a process
 * whose kernel time is already far beyond 1% of a CPU (here a thread that
 * reads /dev/zero all the time) samples at the floor, 128 pages/s per cache,
 * not at sigbus mode's 4000. The reads of resident pages touch every sampled
 * page again at once, so hint faults count the pages sampled. The first
 * window of a second may still run at the full rate; the count is taken
 * after two more.
 */
static atomic_bool spin_stop;

static void *kernel_spinner(void *arg)
{
	static char buf[1 << 20];
	int fd = *(int *)arg;

	while (!atomic_load(&spin_stop))
		if (pread(fd, buf, sizeof buf, 0) < 0)
			break;
	return NULL;
}

static int yields_child(void *arg)
{
	struct written w;
	struct hm_stats s0, s1;
	uint64_t rng = 7, bad = 0;
	pthread_t th;
	int fd, rc = 0;

	(void)arg;
	if (hm_fault_mode() != HM_FAULT_SIGBUS) {
		printf("skip: sigbus mode unavailable: %s\n", hm_errormsg());
		return 77;
	}
	if (map_written(&w))
		return 1;
	fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pthread_create(&th, NULL, kernel_spinner, &fd)) {
		printf("cannot start the spinner\n");
		return 1;
	}
	double t0 = now_s(), t1 = 0;
	while (now_s() - t0 < 4.5) {
		bad += read_random(&w, &rng);
		if (!t1 && now_s() - t0 >= 2.5) {
			t1 = now_s();
			hm_region_stats(w.r, &s0);
		}
	}
	hm_region_stats(w.r, &s1);
	double secs = now_s() - t1;
	atomic_store(&spin_stop, true);
	pthread_join(th, NULL);
	close(fd);
	double hints = (double)(s1.faults_minor - s0.faults_minor) / secs;
	printf("hint faults %.0f/s with the kernel busy (auto would be 4000/s at its constant)\n",
	       hints);
	if (bad) {
		printf("%llu words read wrong\n", (unsigned long long)bad);
		rc = 1;
	}
	if (hints > 600) {
		printf("auto did not yield to the measured cost\n");
		rc = 1;
	}
	if (s1.faults_minor == s0.faults_minor) {
		printf("the sampler stopped altogether\n");
		rc = 1;
	}
	return rc | unmap_written(&w);
}

static void test_auto_yields_to_cost(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=sigbus", "HMMAP_SAMPLE_RATE=auto",
			      "HMMAP_READAHEAD=0", NULL };

	TU_CHILD_RESULT(tu_child(env, yields_child, NULL));
}

int main(void)
{
	RUN(test_rate_values);
	RUN(test_rate_bad);
	RUN(test_default_samples_thread);
	RUN(test_default_samples_sigbus);
	RUN(test_auto_samples_sigbus);
	RUN(test_zero_samples_nothing);
	RUN(test_high_rate_keeps_data);
	RUN(test_auto_yields_to_cost);
	return test_done();
}
