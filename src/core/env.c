/* SPDX-License-Identifier: MIT */
/*
 * The options table: every HMMAP_* environment variable, read once (and
 * once more by a forked child, which starts hmmap afresh). A bad
 * value is an error that names the variable; it is reported by the first
 * call that needs the options and by every call after it (the process is
 * misconfigured, and guessing would hide it).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/internal.h"

enum kind { K_SIZE, K_U64, K_STR, K_MODE, K_RATE };

static const struct hm_env env_defaults = {
	.cache_size = 256ull << 20,
	.policy = "clock",
	.page_size = 4096,
	.fault_mode = 0,
	.fault_threads = 0,
	.fault_spin_us = 0,
	.readahead = 2ull << 20,
	.evict_batch = 64,
	.sample_rate = 0, /* set by load(): see sample_auto */
	.sample_auto = true,
	.stats = 1,
	.thp_frames = 1,
};

static struct hm_env env;

static const struct {
	const char *name;
	enum kind kind;
	size_t off;
	const char *help;
} table[] = {
	{ "HMMAP_CACHE_SIZE", K_SIZE, offsetof(struct hm_env, cache_size),
	  "budget of the default cache (256M)" },
	{ "HMMAP_POLICY", K_STR, offsetof(struct hm_env, policy),
	  "policy of the default cache (clock)" },
	{ "HMMAP_PAGE_SIZE", K_SIZE, offsetof(struct hm_env, page_size),
	  "page size of hmmap() regions, 4K..2M (4K)" },
	{ "HMMAP_FAULT_MODE", K_MODE, offsetof(struct hm_env, fault_mode),
	  "auto, thread or sigbus (auto)" },
	{ "HMMAP_FAULT_THREADS", K_U64, offsetof(struct hm_env, fault_threads),
	  "fault handler threads in thread mode (16)" },
	{ "HMMAP_FAULT_SPIN", K_U64, offsetof(struct hm_env, fault_spin_us),
	  "microseconds a handler thread polls for the next fault before it sleeps, "
	  "thread mode, up to 10000; 0 never polls (0)" },
	{ "HMMAP_READAHEAD", K_SIZE, offsetof(struct hm_env, readahead),
	  "largest readahead window (at least 4 pages), 0 disables (2M)" },
	{ "HMMAP_EVICT_BATCH", K_U64, offsetof(struct hm_env, evict_batch),
	  "eviction batch in 4 KiB pages, at least one page of the region (64)" },
	{ "HMMAP_SAMPLE_RATE", K_RATE, offsetof(struct hm_env, sample_rate),
	  "auto (about 2% of a CPU in hint faults: 4000 in sigbus mode, 1250 in thread "
	  "mode, at least 4096 while a cache evicts), or resident pages unmapped per "
	  "second to sample references, 0 disables (auto)" },
	{ "HMMAP_STATS", K_U64, offsetof(struct hm_env, stats),
	  "1 counts statistics and publishes them for `hmmap stat`, 0 turns both off (1)" },
	{ "HMMAP_THP_FRAMES", K_U64, offsetof(struct hm_env, thp_frames),
	  "1 gives regions of 2 MiB pages frames on transparent huge pages where the "
	  "process may mount a tmpfs (root), 0 keeps 4 KiB shmem frames (1)" },
};

/*
 * HMMAP_SAMPLE_RATE=auto, the default, is a cost budget rather than a number
 * of pages. A sampled page costs its zap (amortised over a run of pages by
 * the sampler) and, if the application touches it again, one hint fault; the
 * hint fault dominates, and what it costs the application depends on who
 * serves it. In sigbus mode the faulting thread serves it itself (signal
 * delivery, UFFDIO_CONTINUE, sigreturn: about 5 us); in thread mode the
 * faulting thread sleeps while a handler thread is woken, serves the fault
 * and wakes it again: two cross-CPU wake-ups, about 15 us of CPU time over
 * the process (bench/bench_sampling, docs/policies.md). `auto` picks, per
 * fault mode, the rate whose hint faults cost SAMPLE_BUDGET_PPM of one CPU
 * when every sampled page is touched again (the worst case: a workload that
 * touches only resident pages), i.e. rate = budget / cost per hint fault,
 * with the costs rounded up: 4000 pages/s in sigbus mode, 1250 in thread
 * mode. The budget is 2%, well inside the 5% the sampling overhead may take
 * (issue 3), leaving room for a loaded machine where a wake-up costs more.
 *
 * While a cache evicts, references are what its policy decides with, and
 * each miss a better decision avoids costs far more than a hint fault (a
 * read from the store, and a fault of its own). Scan-resistant policies
 * need each hot page sampled about once between two bursts of eviction:
 * ARC and SIEVE keep a hot set through a scan at 4096 pages/s over 16,384
 * pages, and lose a third of it at 2048 (docs/policies.md). So while the
 * cache is evicting, `auto` samples at least SAMPLE_EVICTING_RATE pages/s,
 * the fixed default of earlier versions; a cache that evicts nothing (a
 * workload that touches only resident pages) pays only the budget.
 */
#define SAMPLE_BUDGET_PPM 20000u
#define SAMPLE_EVICTING_RATE 4096u
#define SAMPLE_MIN_RATE 128u
#define SAMPLE_MEASURED_PPM 10000u

static uint64_t hint_fault_ns(int mode)
{
	return mode == HM_FAULT_SIGBUS ? 5000 : 16000;
}

uint64_t hm__sample_rate(const struct hm_env *e, int mode, bool evicting)
{
	uint64_t rate;

	if (!e->sample_auto)
		return e->sample_rate;
	/* ppm of a second of CPU per second, in ns, over ns per hint fault. */
	rate = (uint64_t)SAMPLE_BUDGET_PPM * 1000 / hint_fault_ns(mode);
	if (evicting && rate < SAMPLE_EVICTING_RATE)
		rate = SAMPLE_EVICTING_RATE;
	return rate;
}

/*
 * The constants above are one machine's costs. Under a hypervisor that
 * shadows page tables, or with page-table isolation, a zap and a hint fault
 * cost several times more: on such a VM sigbus mode's 4000 pages/s took 18%
 * of the reads of a resident workload, and thread mode's 1250 5%, where 2%
 * was meant. So the sampler measures the process's kernel time per page it
 * samples (src/core/cache.c) and `auto` keeps to a budget by that figure:
 * SAMPLE_MEASURED_PPM of a CPU over the measured cost, never more than the
 * constants' rate, never less than SAMPLE_MIN_RATE (so that references
 * still trickle in and the cost is still measured). The budget is half the
 * constants' because the measure misses part of the cost: what a zap's TLB
 * flush and the hypervisor's page-table work take from the other threads
 * shows up as their lost time, not as kernel time; on that VM the reads
 * lost were two to three times the kernel time measured. On the other hand
 * kernel time the process spends on anything else (its own system calls,
 * missing faults while a cache fills) counts against sampling too, so a
 * process busy in the kernel samples less. While a cache evicts the floor
 * SAMPLE_EVICTING_RATE applies as before, measured cost or not.
 */
uint64_t hm__sample_rate_at(const struct hm_env *e, int mode, bool evicting,
			    uint64_t ns_per_page)
{
	uint64_t rate = hm__sample_rate(e, mode, evicting), fit;

	if (!e->sample_auto || evicting || !ns_per_page)
		return rate;
	fit = (uint64_t)SAMPLE_MEASURED_PPM * 1000 / ns_per_page;
	if (fit < SAMPLE_MIN_RATE)
		fit = SAMPLE_MIN_RATE;
	return fit < rate ? fit : rate;
}

/*
 * Read once per process: at the first call, and again in a child after
 * fork() (hm__env_fork_child), whose hmmap starts afresh.
 */
static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool env_loaded;
static int env_err;
static char env_msg[256];

static int set_one(int i, const char *v)
{
	void *field = (char *)&env + table[i].off;
	uint64_t u;

	switch (table[i].kind) {
	case K_SIZE:
		if (hm_parse_size(v, &u))
			return -EINVAL;
		*(uint64_t *)field = u;
		return 0;
	case K_U64:
		if (hm_parse_u64(v, &u) || u > UINT32_MAX)
			return -EINVAL;
		*(uint32_t *)field = (uint32_t)u;
		return 0;
	case K_STR:
		if (!*v || strlen(v) >= sizeof env.policy)
			return -EINVAL;
		strcpy((char *)field, v);
		return 0;
	case K_RATE:
		if (!strcmp(v, "auto")) {
			env.sample_auto = true;
			return 0;
		}
		if (hm_parse_size(v, &u))
			return -EINVAL;
		env.sample_auto = false;
		*(uint64_t *)field = u;
		return 0;
	case K_MODE:
		if (!strcasecmp(v, "auto"))
			*(int *)field = 0;
		else if (!strcasecmp(v, "thread"))
			*(int *)field = HM_FAULT_THREAD;
		else if (!strcasecmp(v, "sigbus"))
			*(int *)field = HM_FAULT_SIGBUS;
		else
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

static void load(void)
{
	env = env_defaults;
	env_err = 0;
	env_msg[0] = 0;
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		const char *v = getenv(table[i].name);
		if (!v)
			continue;
		if (set_one((int)i, v)) {
			env_err = -EINVAL;
			snprintf(env_msg, sizeof env_msg, "%s='%s' is not valid: %s", table[i].name,
				 v, table[i].help);
			return;
		}
	}
	if (env.page_size < 4096 || env.page_size > (2u << 20) ||
	    (env.page_size & (env.page_size - 1))) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg,
			 "HMMAP_PAGE_SIZE=%llu is not a power of two from 4K to 2M",
			 (unsigned long long)env.page_size);
		return;
	}
	/*
	 * A policy the registry does not know (or one that works only in
	 * replay) is a bad value of the variable, not a missing file.
	 */
	const struct hm_policy_ops *pops = NULL;
	const char *popts;
	void *pstate = NULL;
	if (hm_policy_lookup(env.policy, &pops, &popts) ||
	    (pops->flags & HM_POLICY_REPLAY_ONLY)) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg,
			 "HMMAP_POLICY='%s' is not valid: a live policy from `hmmap policies` "
			 "(%s)",
			 env.policy,
			 pops && (pops->flags & HM_POLICY_REPLAY_ONLY) ?
				 "this one needs the future and works only in replay" :
				 hm_errormsg());
		return;
	}
	/* Its options too, on a small instance, rather than when the cache is made. */
	if (pops->create(&pstate, 64, popts)) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg, "HMMAP_POLICY='%s' is not valid: %s", env.policy,
			 hm_errormsg());
		return;
	}
	pops->destroy(pstate);
	if (env.cache_size < env.page_size) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg,
			 "HMMAP_CACHE_SIZE=%llu is smaller than one page (%llu)",
			 (unsigned long long)env.cache_size, (unsigned long long)env.page_size);
		return;
	}
	if (env.fault_spin_us > 10000) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg,
			 "HMMAP_FAULT_SPIN=%u is not valid: microseconds, 0 to 10000",
			 env.fault_spin_us);
		return;
	}
	if (env.stats > 1) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg, "HMMAP_STATS=%u is not valid: 0 or 1",
			 env.stats);
		return;
	}
	if (env.thp_frames > 1) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg, "HMMAP_THP_FRAMES=%u is not valid: 0 or 1",
			 env.thp_frames);
		return;
	}
	/* Nonzero means a sampler runs (hm_cache_new); auto's largest rate. */
	if (env.sample_auto)
		env.sample_rate = hm__sample_rate(&env, HM_FAULT_SIGBUS, true);
	hm__stats_set(env.stats);
	if (env.evict_batch == 0)
		env.evict_batch = 1;
	if (env.fault_threads == 0)
		env.fault_threads = 16;
	if (env.fault_threads > 256)
		env.fault_threads = 256;
}

int hm__env(const struct hm_env **out)
{
	if (!atomic_load_explicit(&env_loaded, memory_order_acquire)) {
		hm__fork_hooks();
		pthread_mutex_lock(&env_lock);
		if (!atomic_load_explicit(&env_loaded, memory_order_relaxed)) {
			load();
			atomic_store_explicit(&env_loaded, true, memory_order_release);
		}
		pthread_mutex_unlock(&env_lock);
	}
	if (env_err)
		return hm__error(env_err, "%s", env_msg);
	*out = &env;
	return 0;
}

void hm__env_fork_child(void)
{
	/* A load in progress in another thread of the parent is simply redone. */
	pthread_mutex_init(&env_lock, NULL);
	atomic_store_explicit(&env_loaded, false, memory_order_relaxed);
}
