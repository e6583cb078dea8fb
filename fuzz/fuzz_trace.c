/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the trace readers. Byte 0 picks the format (lines,
 * CSV, oracleGeneral), the CSV column (1..8) and header skipping; the rest is
 * the trace. A parsed trace must be self-consistent (dense ids below nids,
 * equal keys with equal ids) and replay through LRU; a rejected one must
 * leave a message.
 */
#include <stdint.h>
#include <stdlib.h>

#include "hmmap.h"
#include "core/replay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hm__trace_opts o;
	struct hm__replay_result r;
	struct hm__trace t;
	uint64_t i;

	if (!size)
		return 0;
	o.format = HM_TRACE_LINES + data[0] % 3;
	o.column = 1 + (data[0] >> 2) % 8;
	o.header = data[0] >> 7;
	if (hm__trace_parse(&t, "fuzz", data + 1, size - 1, &o)) {
		if (!*hm_errormsg())
			abort();
		return 0;
	}
	for (i = 0; i < t.n; i++) {
		if (t.ids[i] >= t.nids)
			abort();
		if (i && (t.keys[i] == t.keys[i - 1]) != (t.ids[i] == t.ids[i - 1]))
			abort();
	}
	if (hm__replay_run(&t, "lru", 4, &r) || r.requests != t.n || r.misses > t.n)
		abort();
	hm__trace_free(&t);
	return 0;
}
