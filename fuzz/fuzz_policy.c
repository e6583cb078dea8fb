/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: random insert/hit/victim/remove/miss sequences through
 * every registered policy, checked against a model of the resident set. Any
 * broken invariant aborts: a victim that is not resident, a victim when the
 * model is empty that is not -ENOENT, a drain that does not return exactly
 * the resident slots.
 *
 * Input: byte 0 picks the policy, byte 1 the capacity (1..64), then one byte
 * per operation (low 3 bits the operation, the rest its argument).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXCAP 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct hm_policy_ops *const *pols, *o;
	uint8_t res[MAXCAP] = { 0 };
	uint32_t cap, n = 0, s, i;
	size_t npols, k;
	uint64_t t = 0;
	void *st;

	if (size < 2)
		return 0;
	pols = hm_policy_list(&npols);
	o = pols[data[0] % npols];
	cap = 1 + data[1] % MAXCAP;
	if (o->create(&st, cap, ""))
		abort();
	for (k = 2; k < size; k++) {
		uint32_t arg = data[k] >> 3;

		switch (data[k] & 7) {
		case 0:
		case 1:
		case 2: /* a miss for key arg: evict if full, insert in a free slot */
			if (o->miss)
				o->miss(st, arg);
			if (n == cap) {
				if (o->victim(st, &s) || s >= cap || !res[s])
					abort();
				res[s] = 0;
				n--;
			} else {
				for (s = arg % cap; res[s]; s = (s + 1) % cap)
					;
			}
			o->insert(st, s, arg);
			res[s] = 1;
			n++;
			if (o->next_use)
				o->next_use(st, s, t + arg);
			break;
		case 3:
		case 4: /* hit the first resident slot at or after arg */
			if (!n)
				break;
			for (s = arg % cap; !res[s]; s = (s + 1) % cap)
				;
			o->hit(st, s);
			if (o->next_use)
				o->next_use(st, s, t + arg);
			break;
		case 5: /* remove */
			if (!n)
				break;
			for (s = arg % cap; !res[s]; s = (s + 1) % cap)
				;
			o->remove(st, s);
			res[s] = 0;
			n--;
			break;
		default: /* evict */
			if (o->victim(st, &s)) {
				if (n)
					abort();
				break;
			}
			if (s >= cap || !res[s])
				abort();
			res[s] = 0;
			n--;
			break;
		}
		t++;
	}
	for (i = n; i > 0; i--) {
		if (o->victim(st, &s) || s >= cap || !res[s])
			abort();
		res[s] = 0;
	}
	if (o->victim(st, &s) != -ENOENT)
		abort();
	o->destroy(st);
	return 0;
}
