/* SPDX-License-Identifier: MIT */
#ifndef HM_CORE_REGISTRY_H
#define HM_CORE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmmap/policy.h"
#include "hmmap/store.h"

/* Policies: one file each in src/policies/. */
extern const struct hm_policy_ops hm__policy_fifo;
extern const struct hm_policy_ops hm__policy_clock;
extern const struct hm_policy_ops hm__policy_lru;
extern const struct hm_policy_ops hm__policy_twoq;
extern const struct hm_policy_ops hm__policy_arc;
extern const struct hm_policy_ops hm__policy_lirs;
extern const struct hm_policy_ops hm__policy_s3fifo;
extern const struct hm_policy_ops hm__policy_sieve;
extern const struct hm_policy_ops hm__policy_opt;

/* Stores: one file each in src/stores/. */
extern const struct hm_store_ops hm__store_file;
extern const struct hm_store_ops hm__store_mem;
extern const struct hm_store_ops hm__store_fault;
extern const struct hm_store_ops hm__store_lz4;   /* src/stores/compress.c */
extern const struct hm_store_ops hm__store_zstd;
extern const struct hm_store_ops hm__store_chain; /* src/stores/chain.c */
extern const struct hm_store_ops hm__store_redis;
extern const struct hm_store_ops hm__store_redis_cluster;
extern const struct hm_store_ops hm__store_memcached;
extern const struct hm_store_ops hm__store_pmem;
extern const struct hm_store_ops hm__store_numa;

/* The store ops for a scheme of `len` bytes, or NULL. */
const struct hm_store_ops *hm__store_lookup(const char *scheme, size_t len);

/*
 * Run-time registration (src/core/registry.c). A list of registered ops:
 * `cap` slots, the first *count in use; name_at(i) is the name of slot i,
 * put(i, ops) fills slot i. hm__registry_add() appends ops under the one
 * registry lock and publishes the new count: 0, -EEXIST or -ENOSPC with a
 * message naming the `kind` ("policy"; plural `kinds`).
 */
struct hm__reg_list {
	const char *kind, *kinds;
	size_t cap;
	_Atomic size_t *count;
	const char *(*name_at)(size_t i);
	void (*put)(size_t i, const void *ops);
};
int hm__registry_add(const struct hm__reg_list *l, const char *name, const void *ops);
/* The number of pointers in a list of built-ins: HM__COUNT(&a, &b) is 2. */
#define HM__COUNT(...) (sizeof((const void *[]){ __VA_ARGS__ }) / sizeof(const void *))
/* "a, b, c": the names of slots [0, count), cut to fit buf, for messages. */
void hm__registry_names(char *buf, size_t len, size_t count, const char *(*name_at)(size_t i));
/* -EINVAL naming the first of the n required hooks that is NULL, or 0. */
int hm__plugin_hooks_check(const char *what, const char *name, const char *const *names,
			   const void *const *hooks, size_t n);
/*
 * 0 if `name` may name a plug-in: a lowercase letter, then lowercase
 * letters, digits, '_' and '-' (and '+', '.' for a URI scheme), at most
 * HM_PLUGIN_NAME_MAX characters; else -EINVAL with a message for `what`.
 */
int hm__plugin_name_check(const char *what, const char *name, bool scheme);
/*
 * 0 if fn may register `ops` (not NULL, of ABI `abi` where the library has
 * `want`, named `name` as hm__plugin_name_check() allows, with a summary:
 * the listings print it); else -EINVAL.
 */
int hm__plugin_check(const char *fn, const void *ops, uint32_t abi, uint32_t want,
		     const char *name, const char *summary, bool scheme);
/*
 * Loads the libraries of HMMAP_PLUGINS once; 0, or that loading's error
 * (with its message) on every call.
 */
int hm__plugins_env(void);

#endif
