/* SPDX-License-Identifier: MIT */
/*
 * The registry: the one place that lists every store and policy compiled
 * in. Adding a plug-in is one line here; the CLI listings, the docs table and
 * the conformance tests all iterate these lists.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hmmap.h"
#include "core/error.h"
#include "core/registry.h"

static const struct hm_policy_ops *const policies[] = {
	&hm__policy_fifo,
	&hm__policy_clock,
	&hm__policy_lru,
	&hm__policy_twoq,
	&hm__policy_arc,
	&hm__policy_lirs,
	&hm__policy_s3fifo,
	&hm__policy_sieve,
	&hm__policy_opt,
};

static const struct hm_store_ops *const stores[] = {
	&hm__store_file,
	&hm__store_mem,
	&hm__store_fault,
	&hm__store_lz4,
	&hm__store_zstd,
	&hm__store_chain,
	&hm__store_redis,
	&hm__store_redis_cluster,
	&hm__store_memcached,
	&hm__store_pmem,
	&hm__store_numa,
};

const struct hm_policy_ops *const *hm_policy_list(size_t *count)
{
	*count = sizeof policies / sizeof policies[0];
	return policies;
}

const struct hm_store_ops *const *hm_store_list(size_t *count)
{
	*count = sizeof stores / sizeof stores[0];
	return stores;
}

static void list_names(char *buf, size_t len)
{
	size_t i, n = 0;

	buf[0] = 0;
	for (i = 0; i < sizeof policies / sizeof policies[0] && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", policies[i]->name);
}

int hm_policy_lookup(const char *spec, const struct hm_policy_ops **ops, const char **options)
{
	size_t i, n;
	const char *colon;
	char names[512];

	if (!spec || !*spec)
		return hm__error(-EINVAL, "empty policy name");
	colon = strchr(spec, ':');
	n = colon ? (size_t)(colon - spec) : strlen(spec);
	for (i = 0; i < sizeof policies / sizeof policies[0]; i++) {
		if (strlen(policies[i]->name) == n && !strncmp(policies[i]->name, spec, n)) {
			*ops = policies[i];
			*options = colon ? colon + 1 : "";
			return 0;
		}
	}
	list_names(names, sizeof names);
	return hm__error(-ENOENT, "unknown policy '%.*s' (known: %s)", (int)n, spec, names);
}

const struct hm_store_ops *hm__store_lookup(const char *scheme, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof stores / sizeof stores[0]; i++)
		if (strlen(stores[i]->scheme) == len && !strncmp(stores[i]->scheme, scheme, len))
			return stores[i];
	return NULL;
}
