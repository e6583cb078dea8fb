/* SPDX-License-Identifier: MIT */
/*
 * The options table: every HMMAP_* environment variable, read once. A bad
 * value is an error that names the variable; it is reported by the first
 * call that needs the options and by every call after it (the process is
 * misconfigured, and guessing would hide it).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

enum kind { K_SIZE, K_U64, K_STR, K_MODE };

static struct hm_env env = {
	.cache_size = 256ull << 20,
	.policy = "clock",
	.page_size = 4096,
	.fault_mode = 0,
	.fault_threads = 0,
	.readahead = 2ull << 20,
	.evict_batch = 64,
	.sample_rate = 4096,
	.stats = 1,
};

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
	{ "HMMAP_READAHEAD", K_SIZE, offsetof(struct hm_env, readahead),
	  "largest readahead window, 0 disables (2M)" },
	{ "HMMAP_EVICT_BATCH", K_U64, offsetof(struct hm_env, evict_batch),
	  "pages evicted per batch (64)" },
	{ "HMMAP_SAMPLE_RATE", K_SIZE, offsetof(struct hm_env, sample_rate),
	  "resident pages unmapped per second to sample references (4096)" },
	{ "HMMAP_STATS", K_U64, offsetof(struct hm_env, stats),
	  "1 counts statistics and publishes them for `hmmap stat`, 0 turns both off (1)" },
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
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
	case K_MODE:
		if (!strcmp(v, "auto"))
			*(int *)field = 0;
		else if (!strcmp(v, "thread"))
			*(int *)field = HM_FAULT_THREAD;
		else if (!strcmp(v, "sigbus"))
			*(int *)field = HM_FAULT_SIGBUS;
		else
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

static void load(void)
{
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
	const struct hm_policy_ops *pops;
	const char *popts;
	if (hm_policy_lookup(env.policy, &pops, &popts) ||
	    (pops->flags & HM_POLICY_REPLAY_ONLY)) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg,
			 "HMMAP_POLICY='%s' is not valid: a live policy from `hmmap policies` "
			 "(%s)",
			 env.policy, hm_errormsg());
		return;
	}
	if (env.cache_size < env.page_size) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg,
			 "HMMAP_CACHE_SIZE=%llu is smaller than one page (%llu)",
			 (unsigned long long)env.cache_size, (unsigned long long)env.page_size);
		return;
	}
	if (env.stats > 1) {
		env_err = -EINVAL;
		snprintf(env_msg, sizeof env_msg, "HMMAP_STATS=%u is not valid: 0 or 1",
			 env.stats);
		return;
	}
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
	pthread_once(&once, load);
	if (env_err)
		return hm__error(env_err, "%s", env_msg);
	*out = &env;
	return 0;
}
