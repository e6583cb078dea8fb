/* SPDX-License-Identifier: MIT */
#ifndef HM_CORE_REGISTRY_H
#define HM_CORE_REGISTRY_H

#include <stddef.h>

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

#endif
