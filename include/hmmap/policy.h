/* SPDX-License-Identifier: MIT */
/*
 * hmmap/policy.h - the interface of a cache replacement policy plug-in.
 *
 * A policy decides which resident page leaves the cache when room is needed.
 * It never sees memory, addresses or stores: it sees slots. A slot is a small
 * dense integer in [0, capacity) that the core assigns to a resident page; the
 * core also passes a 64-bit key that names the page for as long as the policy
 * may want to remember it after eviction (ghost entries of ARC, LIRS, 2Q,
 * S3-FIFO are kept by key). The same code runs on live regions and in
 * `hmmap replay`, so a policy's miss counts on a trace are exactly what it
 * does on a live cache.
 *
 * Threading: the core serialises every call on one policy instance with the
 * cache lock, except hit() when the policy sets HM_POLICY_CONCURRENT_HIT: then
 * hit() may run concurrently with every other hook and must be a bit or
 * counter update (an atomic store), nothing more. No hook may block, sleep,
 * or touch memory that hmmap manages; hooks run on the fault path.
 */
#ifndef HMMAP_POLICY_H
#define HMMAP_POLICY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever struct hm_policy_ops changes incompatibly. */
#define HM_POLICY_ABI 1

/* hit() is safe without the cache lock (see above). */
#define HM_POLICY_CONCURRENT_HIT 0x1u
/* The policy needs the future (Belady's OPT): it works only in replay. */
#define HM_POLICY_REPLAY_ONLY 0x2u

struct hm_policy_ops {
	uint32_t abi;        /* HM_POLICY_ABI */
	uint32_t flags;      /* HM_POLICY_* */
	const char *name;    /* short lowercase name: "fifo", "s3fifo" */
	const char *summary; /* one line for `hmmap policies` and the docs (required) */
	/*
	 * Bytes of per-slot data the policy keeps for resident pages (the core
	 * reports it as the policy's metadata cost; ghosts are extra).
	 */
	size_t slot_bytes;

	/*
	 * Creates an instance for at most `capacity` resident slots (at most
	 * 2^32 - 64, so that indices up to capacity + 63 fit in 32 bits; tables
	 * sized by it should be taken lazily: a budget may be far above what
	 * the cache will hold). `options`
	 * is the text after the first ':' of the policy spec ("small=0.1,
	 * ghost=0.9"), or "" for none; parse it with hm_opts_parse() so that an
	 * unknown key or a bad value is rejected with a message naming it.
	 * Returns 0 or -errno (-EINVAL for bad options, -ENOMEM).
	 */
	int (*create)(void **state, uint32_t capacity, const char *options);
	void (*destroy)(void *state);

	/*
	 * A page became resident in `slot` after a miss. The slot is free in
	 * the policy (never inserted twice). `key` names the page.
	 */
	void (*insert)(void *state, uint32_t slot, uint64_t key);

	/* The resident page in `slot` was referenced. */
	void (*hit)(void *state, uint32_t slot);

	/*
	 * Chooses a victim among the resident slots, removes it from the
	 * policy's resident set (it may become a ghost, remembered by key) and
	 * stores it in *slot. Returns 0, or -ENOENT when nothing is resident.
	 * A live cache checks the answer: a slot out of range, not held by
	 * the policy or chosen already, or -ENOENT while pages are resident,
	 * is reported once on stderr and replaced by a page the cache finds
	 * itself (which it then remove()s); replay fails the run.
	 */
	int (*victim)(void *state, uint32_t *slot);

	/*
	 * The core drops a resident slot on its own (unmap, DONTNEED, a pinned
	 * page): forget it without treating it as an eviction (no ghost).
	 */
	void (*remove)(void *state, uint32_t slot);

	/*
	 * Optional (NULL for online policies). Replay tells a policy flagged
	 * HM_POLICY_REPLAY_ONLY the logical time of the next request for the
	 * page in `slot`, UINT64_MAX if there is none, right after insert() or
	 * hit() for that request.
	 */
	void (*next_use)(void *state, uint32_t slot, uint64_t when);

	/*
	 * Optional (NULL for most policies). A request for the page `key`
	 * missed: called first, before the victim() (if any) and the insert()
	 * that serve this miss. Policies whose choice of victim depends on the
	 * missing page's history need it (ARC adapts its target and picks T1 or
	 * T2 depending on whether the page is a B1 or B2 ghost); a policy must
	 * still work, less precisely, if the caller never calls it.
	 */
	void (*miss)(void *state, uint64_t key);
};

/*
 * The registry: every policy compiled in, in a stable order, then those
 * registered at run time in the order they came. Lookup takes a
 * spec "name[:k=v,...]" and returns the ops and a pointer to the options text
 * inside spec. Names match in any case. Returns 0, -EINVAL (NULL, or an
 * empty name: "" or ":k=v") or -ENOENT (unknown name, with a message listing
 * the known ones).
 */
const struct hm_policy_ops *const *hm_policy_list(size_t *count);
int hm_policy_lookup(const char *spec, const struct hm_policy_ops **ops, const char **options);

/*
 * Adds a policy of the program's or a plug-in library's own to the
 * registry (see "Plug-ins" in hmmap.h). create, destroy, insert, hit,
 * victim and remove are required; next_use too with HM_POLICY_REPLAY_ONLY.
 * Returns 0, -EINVAL, -EEXIST or -ENOSPC.
 */
int hm_policy_register(const struct hm_policy_ops *ops);

/*
 * Shared option-string parser for plug-ins. `text` is "k=v,k=v". For each
 * pair it calls cb(ctx, key, value); cb returns 0 or -EINVAL after setting a
 * message with hm_plugin_error() (hmmap.h) naming the key. Empty text is valid; an empty
 * item (",,"), an item without '=' and a key given twice are errors.
 * Returns 0 or the first error.
 */
int hm_opts_parse(const char *text, int (*cb)(void *ctx, const char *key, const char *value), void *ctx);

/*
 * Strict number parsers for option values: 0 or -EINVAL (never partial).
 * hm_parse_double() takes decimal notation only (no hex, inf or nan).
 */
int hm_parse_u64(const char *s, uint64_t *out);
int hm_parse_double(const char *s, double *out);
/* Sizes with optional K/M/G/T suffix (binary, case-insensitive, optional B/iB). */
int hm_parse_size(const char *s, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
