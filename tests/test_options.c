/* SPDX-License-Identifier: MIT */
/*
 * Options: the strict number parsers, the shared "k=v,k=v" parser, and the
 * HMMAP_* environment variables. The environment is read once per process,
 * so each variable is tried in a child with its own environment.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

static void test_parse_size(void)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ "0", 0 },
		{ "4096", 4096 },
		{ "4K", 4096 },
		{ "4k", 4096 },
		{ "4KB", 4096 },
		{ "4KiB", 4096 },
		{ "4kib", 4096 },
		{ "4Ki", 4096 },
		{ "1M", 1ull << 20 },
		{ "64m", 64ull << 20 },
		{ "1MiB", 1ull << 20 },
		{ "2G", 2ull << 30 },
		{ "2GB", 2ull << 30 },
		{ "1T", 1ull << 40 },
		{ "1TiB", 1ull << 40 },
		{ "10B", 10 },
		{ "16777215T", 16777215ull << 40 },
		{ "18446744073709551615", UINT64_MAX },
	};
	static const char *const bad[] = {
		"",	  "abc",    "K",     "-1",  "+1",	    " 1",     "1 ",
		"1 K",	  "1.5M",   "1KX",   "1Kii", "1KBB",    "10BB",   "1E",
		"1P",	  "0x10",   "1iB",   "M1",  "16777216T", "17179869184G",
		"18446744073709551616", "99999999999999999999999",
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = 12345;
		CHECKF(hm_parse_size(good[i].s, &v) == 0, "'%s'", good[i].s);
		CHECKF(v == good[i].v, "'%s' gave %llu", good[i].s, (unsigned long long)v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 12345;
		CHECKF(hm_parse_size(bad[i], &v) == -EINVAL, "'%s' was accepted", bad[i]);
		CHECKF(v == 12345, "'%s' changed the output on error", bad[i]);
	}
	CHECK(hm_parse_size(NULL, &v) == -EINVAL);
}

static void test_parse_u64(void)
{
	uint64_t v;
	static const char *const bad[] = { "",	 "abc", "-1", "+1",  " 1", "1 ", "12a",
					   "1K", "1.0", "0x", "18446744073709551616" };

	CHECK(hm_parse_u64("0", &v) == 0 && v == 0);
	CHECK(hm_parse_u64("42", &v) == 0 && v == 42);
	CHECK(hm_parse_u64("18446744073709551615", &v) == 0 && v == UINT64_MAX);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		v = 7;
		CHECKF(hm_parse_u64(bad[i], &v) == -EINVAL, "'%s' was accepted", bad[i]);
		CHECKF(v == 7, "'%s' changed the output on error", bad[i]);
	}
	CHECK(hm_parse_u64(NULL, &v) == -EINVAL);
}

static void test_parse_double(void)
{
	double d;
	static const char *const bad[] = { "", "abc", " 1", "1.5x", "1e999", "nan", "1,5", "." };

	CHECK(hm_parse_double("1.5", &d) == 0 && d == 1.5);
	CHECK(hm_parse_double("0", &d) == 0 && d == 0);
	CHECK(hm_parse_double("-0.25", &d) == 0 && d == -0.25);
	CHECK(hm_parse_double("1e3", &d) == 0 && d == 1000);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		d = 7;
		CHECKF(hm_parse_double(bad[i], &d) == -EINVAL, "'%s' was accepted", bad[i]);
		CHECKF(d == 7, "'%s' changed the output on error", bad[i]);
	}
	CHECK(hm_parse_double(NULL, &d) == -EINVAL);
}

struct kv {
	int n;
	char keys[8][32];
	char vals[8][32];
	const char *reject; /* the callback fails on this key */
};

static int kv_cb(void *ctx, const char *k, const char *v)
{
	struct kv *kv = ctx;

	if (kv->reject && !strcmp(k, kv->reject))
		return -ERANGE;
	if (kv->n < 8) {
		snprintf(kv->keys[kv->n], sizeof kv->keys[0], "%s", k);
		snprintf(kv->vals[kv->n], sizeof kv->vals[0], "%s", v);
	}
	kv->n++;
	return 0;
}

static void test_opts_parse(void)
{
	struct kv kv;
	static const char *const bad[] = { "a",	  "=1",	 "a=1,,b=2", "a=1,", ",a=1",
					   ",",	  ",,",	 "a=1,b",    "a=1,=2" };
	char big[2048];

	memset(&kv, 0, sizeof kv);
	CHECK(hm_opts_parse("a=1,bb=two", kv_cb, &kv) == 0);
	CHECK(kv.n == 2);
	CHECK(!strcmp(kv.keys[0], "a") && !strcmp(kv.vals[0], "1"));
	CHECK(!strcmp(kv.keys[1], "bb") && !strcmp(kv.vals[1], "two"));

	memset(&kv, 0, sizeof kv);
	CHECK(hm_opts_parse("", kv_cb, &kv) == 0 && kv.n == 0);
	CHECK(hm_opts_parse(NULL, kv_cb, &kv) == 0 && kv.n == 0);

	/* An empty value is the callback's to judge. */
	memset(&kv, 0, sizeof kv);
	CHECK(hm_opts_parse("k=", kv_cb, &kv) == 0 && kv.n == 1 && !kv.vals[0][0]);
	/* '=' inside a value belongs to the value. */
	memset(&kv, 0, sizeof kv);
	CHECK(hm_opts_parse("k=a=b", kv_cb, &kv) == 0 && !strcmp(kv.vals[0], "a=b"));

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&kv, 0, sizeof kv);
		CHECKF(hm_opts_parse(bad[i], kv_cb, &kv) == -EINVAL, "'%s' was accepted", bad[i]);
		CHECKF(*hm_errormsg(), "'%s': no message", bad[i]);
	}

	/* The callback's error comes back unchanged and stops the parse. */
	memset(&kv, 0, sizeof kv);
	kv.reject = "b";
	CHECK(hm_opts_parse("a=1,b=2,c=3", kv_cb, &kv) == -ERANGE);
	CHECK(kv.n == 1);

	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	big[1] = '=';
	CHECK(hm_opts_parse(big, kv_cb, &kv) == -EINVAL);
}

/* Plug-in option strings reach the shared parser and name the bad key. */
static void test_plugin_options(void)
{
	struct hm_store *s = NULL;
	struct hm_cache *c = NULL;

	CHECK(hm_store_open(&s, "mem:1M,bogus=1", 0) == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "bogus"), "message: %s", hm_errormsg());
	CHECK(s == NULL);
	CHECK(hm_store_open(&s, "mem:1M,read_ns=abc", 0) == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "read_ns"), "message: %s", hm_errormsg());
	CHECK(hm_store_open(&s, "mem:1M,read_ns=1,", 0) == -EINVAL);
	CHECK(hm_store_open(&s, "mem:1M,read_bw=10Q", 0) == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "read_bw"), "message: %s", hm_errormsg());

	CHECK(hm_cache_new(&c, 1 << 20, "nosuchpolicy") < 0);
	CHECKF(strstr(hm_errormsg(), "nosuchpolicy"), "message: %s", hm_errormsg());
	CHECK(c == NULL);
	CHECK(hm_cache_new(&c, 1 << 20, "s3fifo:bogus=1") == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "bogus"), "message: %s", hm_errormsg());
	CHECK(c == NULL);
	/* A key given twice is a typo, not an override; numbers are decimal. */
	CHECK(hm_cache_new(&c, 1 << 20, "s3fifo:small=0.1,small=0.2") == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "'small' is given twice"), "message: %s", hm_errormsg());
	CHECK(hm_store_open(&s, "mem:1M,read_ns=1,read_ns=2", 0) == -EINVAL);
	CHECKF(strstr(hm_errormsg(), "'read_ns' is given twice"), "message: %s", hm_errormsg());
	CHECK(hm_cache_new(&c, 1 << 20, "s3fifo:small=0x0.1p0") == -EINVAL);
	CHECK(hm_cache_new(&c, 1 << 20, "2q:kin=inf") == -EINVAL);
	CHECK(hm_cache_new(&c, 1 << 20, "lirs:hir= 0.1") == -EINVAL);
	CHECK(hm_cache_new(&c, 1 << 20, "s3fifo:small=1e-1,threshold=2") == 0);
	CHECK(hm_cache_free(c) == 0);
	CHECK(hm_cache_new(&c, 1 << 20, "clock") == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* ---- HMMAP_* variables, each in a child process ---- */

struct env_case {
	const char *var;   /* "NAME=value" */
	bool ok;           /* the value is valid */
	const char *named; /* the message must contain this */
};

static int env_child(void *arg)
{
	const struct env_case *ec = arg;
	struct hm_cache *c = NULL;
	void *p;

	/* hmmap() is where an application meets the options first. */
	p = hmmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, "mem:1M", 0);
	if (ec->ok) {
		if (p == MAP_FAILED) {
			printf("hmmap failed with %s: %s\n", ec->var, hm_errormsg());
			return 1;
		}
		((volatile char *)p)[0] = 1;
		if (hmunmap(p, 1 << 20)) {
			printf("hmunmap failed: %s\n", hm_errormsg());
			return 1;
		}
		return 0;
	}
	if (p != MAP_FAILED) {
		printf("hmmap accepted %s\n", ec->var);
		return 1;
	}
	if (errno != EINVAL) {
		printf("errno %d, not EINVAL, for %s (%s)\n", errno, ec->var, hm_errormsg());
		return 1;
	}
	if (!strstr(hm_errormsg(), ec->named)) {
		printf("message for %s does not name %s: '%s'\n", ec->var, ec->named,
		       hm_errormsg());
		return 1;
	}
	/* The process stays misconfigured: later calls fail the same way. */
	if (hm_cache_default(&c) >= 0 || !strstr(hm_errormsg(), ec->named)) {
		printf("second call for %s: '%s'\n", ec->var, hm_errormsg());
		return 1;
	}
	if (hm_cache_new(&c, 1 << 20, NULL) >= 0) {
		printf("hm_cache_new succeeded with %s\n", ec->var);
		return 1;
	}
	return 0;
}

static void run_env_cases(const struct env_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *env[] = { cases[i].var, NULL };
		int st = tu_child(env, env_child, (void *)&cases[i]);
		CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: child %s", cases[i].var,
		       tu_status_str(st));
	}
}

static void test_env_bad(void)
{
	static const struct env_case cases[] = {
		{ "HMMAP_CACHE_SIZE=abc", false, "HMMAP_CACHE_SIZE" },
		{ "HMMAP_CACHE_SIZE=", false, "HMMAP_CACHE_SIZE" },
		{ "HMMAP_CACHE_SIZE=1K", false, "HMMAP_CACHE_SIZE" },
		{ "HMMAP_CACHE_SIZE=-5M", false, "HMMAP_CACHE_SIZE" },
		{ "HMMAP_PAGE_SIZE=3000", false, "HMMAP_PAGE_SIZE" },
		{ "HMMAP_PAGE_SIZE=4M", false, "HMMAP_PAGE_SIZE" },
		{ "HMMAP_PAGE_SIZE=2K", false, "HMMAP_PAGE_SIZE" },
		{ "HMMAP_PAGE_SIZE=12K", false, "HMMAP_PAGE_SIZE" },
		{ "HMMAP_FAULT_MODE=bogus", false, "HMMAP_FAULT_MODE" },
		{ "HMMAP_FAULT_MODE=", false, "HMMAP_FAULT_MODE" },
		{ "HMMAP_FAULT_THREADS=many", false, "HMMAP_FAULT_THREADS" },
		{ "HMMAP_FAULT_THREADS=99999999999", false, "HMMAP_FAULT_THREADS" },
		{ "HMMAP_FAULT_SPIN=soon", false, "HMMAP_FAULT_SPIN" },
		{ "HMMAP_FAULT_SPIN=10001", false, "HMMAP_FAULT_SPIN" },
		{ "HMMAP_FAULT_SPIN=-1", false, "HMMAP_FAULT_SPIN" },
		{ "HMMAP_EVICT_BATCH=-1", false, "HMMAP_EVICT_BATCH" },
		{ "HMMAP_READAHEAD=1X", false, "HMMAP_READAHEAD" },
		{ "HMMAP_SAMPLE_RATE=fast", false, "HMMAP_SAMPLE_RATE" },
		{ "HMMAP_POLICY=", false, "HMMAP_POLICY" },
		{ "HMMAP_THP_FRAMES=2", false, "HMMAP_THP_FRAMES" },
		{ "HMMAP_THP_FRAMES=on", false, "HMMAP_THP_FRAMES" },
	};

	run_env_cases(cases, sizeof cases / sizeof cases[0]);
}

/* A policy name the registry does not know is an option error too. */
static void test_env_bad_policy(void)
{
	static const struct env_case cases[] = {
		{ "HMMAP_POLICY=nosuchpolicy", false, "HMMAP_POLICY" },
		{ "HMMAP_POLICY=opt", false,
		  "HMMAP_POLICY='opt' is not valid: a live policy from `hmmap policies` "
		  "(this one needs the future" },
		{ "HMMAP_POLICY=clock:bogus=1", false, "HMMAP_POLICY" }, /* found making the cache */
		{ "HMMAP_POLICY=s3fifo:small=2", false, "HMMAP_POLICY" },
	};

	run_env_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_env_good(void)
{
	static const struct env_case cases[] = {
		{ "HMMAP_CACHE_SIZE=8M", true, NULL },
		{ "HMMAP_CACHE_SIZE=4096", true, NULL },
		{ "HMMAP_PAGE_SIZE=64K", true, NULL },
		{ "HMMAP_PAGE_SIZE=2M", true, NULL },
		{ "HMMAP_FAULT_MODE=auto", true, NULL },
		{ "HMMAP_POLICY=fifo", true, NULL },
		{ "HMMAP_POLICY=s3fifo:small=0.2,threshold=1", true, NULL },
		{ "HMMAP_POLICY=lirs:hir=0.05", true, NULL },
		{ "HMMAP_READAHEAD=0", true, NULL },
		{ "HMMAP_EVICT_BATCH=0", true, NULL },
		{ "HMMAP_SAMPLE_RATE=0", true, NULL },
		{ "HMMAP_FAULT_SPIN=0", true, NULL },
		{ "HMMAP_FAULT_SPIN=10000", true, NULL },
		{ "HMMAP_THP_FRAMES=0", true, NULL },
	};

	run_env_cases(cases, sizeof cases / sizeof cases[0]);
}

/* Valid values take effect: budget, page size, policy, fault mode. */
static int env_effect_child(void *arg)
{
	struct hm_cache *c;
	struct hm_stats st;
	void *p;
	int want_mode = *(int *)arg;

	if (hm_cache_default(&c)) {
		printf("hm_cache_default: %s\n", hm_errormsg());
		return 1;
	}
	if (hm_cache_budget(c) != (6u << 20)) {
		printf("budget %zu, not 6M\n", hm_cache_budget(c));
		return 1;
	}
	if (hm_cache_stats(c, &st) || st.budget_bytes != (6u << 20))
		return 1;
	p = hmmap(NULL, 1 << 20, PROT_READ, HM_CACHED, "mem:1M", 0);
	if (p == MAP_FAILED) {
		printf("hmmap: %s\n", hm_errormsg());
		return 1;
	}
	if (hm_region_page_size(hm_region_find(p)) != (64u << 10)) {
		printf("page size %zu, not 64K\n", hm_region_page_size(hm_region_find(p)));
		return 1;
	}
	if (hm_region_cache(hm_region_find(p)) != c)
		return 1;
	if (hm_fault_mode() != want_mode) {
		printf("fault mode %d, not %d\n", hm_fault_mode(), want_mode);
		return 1;
	}
	return hmunmap(p, 1 << 20) ? 1 : 0;
}

static void test_env_effect(void)
{
	static int thread = HM_FAULT_THREAD, sigbus = HM_FAULT_SIGBUS;
	const char *e1[] = { "HMMAP_CACHE_SIZE=6M", "HMMAP_PAGE_SIZE=64K",
			     "HMMAP_FAULT_MODE=thread", NULL };
	const char *e2[] = { "HMMAP_CACHE_SIZE=6MiB", "HMMAP_PAGE_SIZE=65536",
			     "HMMAP_FAULT_MODE=sigbus", NULL };
	int st;

	st = tu_child(e1, env_effect_child, &thread);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "thread: %s", tu_status_str(st));
	st = tu_child(e2, env_effect_child, &sigbus);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sigbus: %s", tu_status_str(st));
}

int main(void)
{
	RUN(test_parse_size);
	RUN(test_parse_u64);
	RUN(test_parse_double);
	RUN(test_opts_parse);
	/* Children first: the parent must not have read the options yet. */
	RUN(test_env_bad);
	RUN(test_env_bad_policy);
	RUN(test_env_good);
	RUN(test_env_effect);
	RUN(test_plugin_options);
	return test_done();
}
