/* SPDX-License-Identifier: MIT */
/*
 * Every registered policy against the same invariants, through its ops table
 * only: victims are resident and distinct, nothing is evicted twice, a
 * removed slot never comes back as a victim, an empty policy has no victim,
 * capacity 1 works, results are deterministic, and bad option strings are
 * rejected with a message naming the key. A new policy in the registry is
 * picked up without touching this file.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap.h"
#include "core/replay.h"
#include "harness.h"

static const struct hm_policy_ops *const *pols;
static size_t npols;

/* xorshift64*: deterministic, no libc rand state. */
static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static void test_registry(void)
{
	size_t i, j;

	pols = hm_policy_list(&npols);
	CHECK(npols >= 9);
	CHECK(!strcmp(pols[0]->name, "fifo"));
	CHECK(!strcmp(pols[1]->name, "clock"));
	for (i = 0; i < npols; i++) {
		const struct hm_policy_ops *o = pols[i];

		CHECKF(o->abi == HM_POLICY_ABI, "%s", o->name);
		CHECKF(o->create && o->destroy && o->insert && o->hit && o->victim && o->remove,
		       "%s lacks a mandatory hook", o->name);
		CHECKF(o->summary && *o->summary, "%s", o->name);
		CHECKF(!(o->flags & HM_POLICY_REPLAY_ONLY) || o->next_use, "%s", o->name);
		for (j = 0; j < i; j++)
			CHECKF(strcmp(o->name, pols[j]->name), "duplicate %s", o->name);
	}
}

static void test_empty_victim(void)
{
	uint32_t caps[] = { 1, 2, 7, 100 };
	size_t i, c;

	for (i = 0; i < npols; i++) {
		for (c = 0; c < sizeof caps / sizeof caps[0]; c++) {
			void *st;
			uint32_t s = 12345;

			CHECKF(!pols[i]->create(&st, caps[c], ""), "%s: %s", pols[i]->name,
			       hm_errormsg());
			CHECKF(pols[i]->victim(st, &s) == -ENOENT, "%s cap %u", pols[i]->name,
			       caps[c]);
			pols[i]->destroy(st);
		}
	}
}

/*
 * Random insert/hit/victim/remove sequences against a model of the resident
 * set. The model is the truth: a victim must be resident in it.
 */
static void run_random(const struct hm_policy_ops *o, uint32_t cap, unsigned steps,
		       uint64_t *evictions, int *fail)
{
	uint8_t *res = calloc(cap, 1);
	uint32_t *list = malloc(cap * sizeof *list); /* resident slots */
	uint32_t n = 0, s, k;
	uint64_t key = 1, t = 0;
	void *st;
	unsigned i;

	*fail = 0;
	*evictions = 0;
	if (!res || !list || o->create(&st, cap, "")) {
		*fail = 1;
		goto out;
	}
	for (i = 0; i < steps && !*fail; i++) {
		unsigned op = (unsigned)(rnd() % 10);

		if (op < 4) {
			/* A miss: make room when full, then insert in a free slot. */
			uint64_t k64 = rnd() % 4 ? key++ : rnd() % (key + 1) + 1;

			if (o->miss)
				o->miss(st, k64);
			if (n == cap) {
				if (o->victim(st, &s) || s >= cap || !res[s]) {
					*fail = 2;
					break;
				}
				res[s] = 0;
				for (k = 0; list[k] != s; k++)
					;
				list[k] = list[--n];
				(*evictions) += s;
			} else {
				do
					s = (uint32_t)(rnd() % cap);
				while (res[s]);
			}
			o->insert(st, s, k64);
			res[s] = 1;
			list[n++] = s;
			if (o->next_use)
				o->next_use(st, s, ++t + rnd() % 64);
		} else if (op < 8 && n) {
			s = list[rnd() % n];
			o->hit(st, s);
			if (o->next_use)
				o->next_use(st, s, ++t + rnd() % 64);
		} else if (op == 8 && n) {
			k = (uint32_t)(rnd() % n);
			s = list[k];
			o->remove(st, s);
			res[s] = 0;
			list[k] = list[--n];
		} else if (n) {
			if (o->victim(st, &s) || s >= cap || !res[s]) {
				*fail = 3;
				break;
			}
			res[s] = 0;
			for (k = 0; list[k] != s; k++)
				;
			list[k] = list[--n];
		}
	}
	/* Drain: exactly the resident slots come out, each once, then -ENOENT. */
	while (!*fail && n) {
		if (o->victim(st, &s) || s >= cap || !res[s]) {
			*fail = 4;
			break;
		}
		res[s] = 0;
		n--;
	}
	if (!*fail && o->victim(st, &s) != -ENOENT)
		*fail = 5;
	o->destroy(st);
out:
	free(res);
	free(list);
}

static void test_random_sequences(void)
{
	uint32_t caps[] = { 1, 2, 3, 5, 16, 100, 1000 };
	size_t i, c;

	for (i = 0; i < npols; i++) {
		for (c = 0; c < sizeof caps / sizeof caps[0]; c++) {
			uint64_t e1, e2, seed = rng;
			int fail;

			run_random(pols[i], caps[c], 20000, &e1, &fail);
			CHECKF(!fail, "%s cap %u: invariant %d broken", pols[i]->name, caps[c],
			       fail);
			/* Same seed, same choices. */
			rng = seed;
			run_random(pols[i], caps[c], 20000, &e2, &fail);
			CHECKF(!fail && e1 == e2, "%s cap %u is not deterministic", pols[i]->name,
			       caps[c]);
		}
	}
}

/* A removed slot is gone: the victims that follow never name it. */
static void test_remove_then_victim(void)
{
	size_t i;
	uint32_t s, cap = 8, k;

	for (i = 0; i < npols; i++) {
		const struct hm_policy_ops *o = pols[i];
		void *st;
		int seen[8] = { 0 };

		CHECK(!o->create(&st, cap, ""));
		for (k = 0; k < cap; k++) {
			o->insert(st, k, 100 + k);
			if (o->next_use)
				o->next_use(st, k, k);
		}
		o->hit(st, 3);
		o->remove(st, 0);
		o->remove(st, 5);
		for (k = 0; k < cap - 2; k++) {
			CHECKF(!o->victim(st, &s), "%s", o->name);
			CHECKF(s < cap && s != 0 && s != 5 && !seen[s], "%s returned %u", o->name, s);
			seen[s] = 1;
		}
		CHECKF(o->victim(st, &s) == -ENOENT, "%s", o->name);
		o->destroy(st);
	}
}

/* With one page of cache, a request hits exactly when it repeats the last. */
static void test_capacity_one(void)
{
	uint64_t keys[4000], expect = 0;
	struct hm__trace t;
	size_t i;

	for (i = 0; i < 4000; i++) {
		keys[i] = rnd() % 3 ? rnd() % 7 : keys[i ? i - 1 : 0];
		expect += !i || keys[i] != keys[i - 1];
	}
	CHECK(!hm__trace_from_keys(&t, keys, 4000));
	for (i = 0; i < npols; i++) {
		struct hm__replay_result r;

		CHECKF(!hm__replay_run(&t, pols[i]->name, 1, &r), "%s: %s", pols[i]->name,
		       hm_errormsg());
		CHECKF(r.misses == expect, "%s: %llu misses, expected %llu", pols[i]->name,
		       (unsigned long long)r.misses, (unsigned long long)expect);
	}
	hm__trace_free(&t);
}

static void test_deterministic_replay(void)
{
	static uint64_t keys[50000];
	struct hm__trace t;
	size_t i;

	for (i = 0; i < 50000; i++)
		keys[i] = (rnd() % 1000) * (rnd() % 4 + 1) * 7919;
	CHECK(!hm__trace_from_keys(&t, keys, 50000));
	for (i = 0; i < npols; i++) {
		struct hm__replay_result a, b;

		CHECK(!hm__replay_run(&t, pols[i]->name, 300, &a));
		CHECK(!hm__replay_run(&t, pols[i]->name, 300, &b));
		CHECKF(a.misses == b.misses && a.requests == 50000, "%s", pols[i]->name);
		CHECKF(a.misses >= t.nids && a.misses <= a.requests, "%s", pols[i]->name);
	}
	hm__trace_free(&t);
}

/* Option strings: unknown keys everywhere, bad values where there are keys. */
static void test_bad_options(void)
{
	static const struct {
		const char *name, *good, *bad[4];
	} known[] = {
		{ "2q", "kin=0.3,kout=0.6", { "kin=abc", "kin=1.5", "kout=-1", "kin=" } },
		{ "s3fifo", "small=0.2,ghost=0.8,threshold=1",
		  { "small=1", "ghost=x", "threshold=0", "threshold=9" } },
		{ "lirs", "hir=0.05", { "hir=0", "hir=1", "hir=abc", "hir=0.5x" } },
	};
	size_t i, k, b;

	for (i = 0; i < npols; i++) {
		void *st;

		CHECKF(pols[i]->create(&st, 16, "bogus=1") == -EINVAL, "%s", pols[i]->name);
		CHECKF(strstr(hm_errormsg(), "bogus"), "%s: message '%s' does not name the key",
		       pols[i]->name, hm_errormsg());
		CHECKF(pols[i]->create(&st, 16, "novalue") == -EINVAL, "%s", pols[i]->name);
		for (k = 0; k < sizeof known / sizeof known[0]; k++) {
			if (strcmp(known[k].name, pols[i]->name))
				continue;
			CHECKF(!pols[i]->create(&st, 16, known[k].good), "%s: %s", pols[i]->name,
			       hm_errormsg());
			pols[i]->destroy(st);
			for (b = 0; b < 4; b++) {
				char key[32];

				snprintf(key, sizeof key, "%.*s", (int)strcspn(known[k].bad[b], "="),
					 known[k].bad[b]);
				CHECKF(pols[i]->create(&st, 16, known[k].bad[b]) == -EINVAL,
				       "%s accepted '%s'", pols[i]->name, known[k].bad[b]);
				CHECKF(strstr(hm_errormsg(), key), "%s: '%s' does not name '%s'",
				       pols[i]->name, hm_errormsg(), key);
			}
		}
	}
}

/* Hooks that may run without the lock are flagged only on cheap policies. */
static void test_flags(void)
{
	size_t i;

	for (i = 0; i < npols; i++) {
		const char *n = pols[i]->name;
		int lockfree = !!(pols[i]->flags & HM_POLICY_CONCURRENT_HIT);

		if (!strcmp(n, "fifo") || !strcmp(n, "clock") || !strcmp(n, "sieve") ||
		    !strcmp(n, "s3fifo"))
			CHECKF(lockfree, "%s should allow concurrent hits", n);
		if (!strcmp(n, "lru") || !strcmp(n, "arc") || !strcmp(n, "lirs") ||
		    !strcmp(n, "2q"))
			CHECKF(!lockfree, "%s moves lists on a hit", n);
		if (!strcmp(n, "opt"))
			CHECK(pols[i]->flags & HM_POLICY_REPLAY_ONLY);
	}
}

/*
 * ARC with a readahead window's calls: miss() for every page of it, then
 * the victims, then the inserts (how a live cache calls a policy). A page
 * that was in B1 must still go to T2, which the next victims show.
 * c = 2: 1, 1, 2, 3 leaves T1 = [3], T2 = [1], B1 = [2]. The window 2, 4
 * evicts 1 and then 3; with 2 in T2 and 4 in T1, a hit on 4 and a miss of
 * 5 evict 2 (from T2, B1 being short); had 2 gone to T1, 4 would go.
 */
static void test_arc_window_ghost_hit(void)
{
	const struct hm_policy_ops *o;
	const char *opts;
	uint32_t slot_of[6], v1, v2, v;
	void *st;

	CHECK(hm_policy_lookup("arc", &o, &opts) == 0 && o->miss);
	CHECK(o->create(&st, 2, opts) == 0);
	o->miss(st, 1);
	o->insert(st, slot_of[1] = 0, 1);
	o->hit(st, slot_of[1]);
	o->miss(st, 2);
	o->insert(st, slot_of[2] = 1, 2);
	o->miss(st, 3);
	CHECK(o->victim(st, &v) == 0 && v == slot_of[2]);
	o->insert(st, slot_of[3] = v, 3);
	/* The window. */
	o->miss(st, 2);
	o->miss(st, 4);
	CHECK(o->victim(st, &v1) == 0 && v1 == slot_of[1]);
	CHECK(o->victim(st, &v2) == 0 && v2 == slot_of[3]);
	o->insert(st, slot_of[2] = v1, 2);
	o->insert(st, slot_of[4] = v2, 4);
	o->hit(st, slot_of[4]);
	o->miss(st, 5);
	CHECK(o->victim(st, &v) == 0);
	CHECKF(v == slot_of[2], "evicted slot %u (page %d), not page 2", v,
	       v == slot_of[4] ? 4 : -1);
	o->destroy(st);
}

/*
 * 2Q with a live cache's batch: six victims, then the inserts. Capacity 8
 * (Kin 2, Kout 4). Pages 1-8, then 9-12 one at a time, leave A1out =
 * [1, 2, 3, 4]. Evicting 5, 6, 7, 8, 9 and 10 before inserting 1 must not
 * forget that 1 is a ghost: 1 goes to Am, so the third victim after the
 * batch is 13 (A1in holds 11, 12, 13, ...), not 1.
 */
static void test_2q_batch_keeps_ghosts(void)
{
	const struct hm_policy_ops *o;
	const char *opts;
	uint64_t key_of[8];
	uint32_t v, freed[6];
	void *st;

	CHECK(hm_policy_lookup("2q", &o, &opts) == 0);
	CHECK(o->create(&st, 8, opts) == 0);
	for (uint32_t k = 1; k <= 8; k++)
		o->insert(st, k - 1, key_of[k - 1] = k);
	for (uint64_t k = 9; k <= 12; k++) {
		CHECK(o->victim(st, &v) == 0 && key_of[v] == k - 8);
		o->insert(st, v, key_of[v] = k);
	}
	for (int i = 0; i < 6; i++)
		CHECK(o->victim(st, &freed[i]) == 0);
	static const uint64_t batch[] = { 1, 13, 14, 15, 16, 17 };
	for (int i = 0; i < 6; i++)
		o->insert(st, freed[i], key_of[freed[i]] = batch[i]);
	for (int i = 0; i < 3; i++)
		CHECK(o->victim(st, &v) == 0);
	CHECKF(key_of[v] == 13, "third victim after the batch: page %llu, not 13",
	       (unsigned long long)key_of[v]);
	o->destroy(st);
}

int main(void)
{
	RUN(test_registry);
	RUN(test_empty_victim);
	RUN(test_random_sequences);
	RUN(test_remove_then_victim);
	RUN(test_capacity_one);
	RUN(test_deterministic_replay);
	RUN(test_bad_options);
	RUN(test_flags);
	RUN(test_arc_window_ghost_hit);
	RUN(test_2q_batch_keeps_ghosts);
	return test_done();
}
