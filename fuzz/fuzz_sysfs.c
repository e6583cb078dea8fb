/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the sysfs file parsers behind hm_resources(). Byte 0
 * picks the parser (a number, a signed number, a node's meminfo, a CPU or
 * node list, a distance row); the rest is the file, copied to a buffer of
 * exactly its length so that reading one byte past it is caught. Results
 * must be self-consistent: a list's ranges are ordered, a row never
 * overfills, meminfo's "found" agrees with its values.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap.h"
#include "core/discover.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_range(void *arg, uint32_t lo, uint32_t hi)
{
	uint64_t *last = arg;

	if (lo > hi)
		abort();
	*last = hi;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t v, t, f, last = 0;
	uint32_t row[16];
	size_t len, n;
	int64_t s;
	char *buf;

	if (!size)
		return 0;
	len = size - 1;
	buf = malloc(len ? len : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, len);
	switch (data[0] % 5) {
	case 0:
		if (!hm__sysfs_parse_u64(buf, len, &v) && !len)
			abort();
		break;
	case 1:
		hm__sysfs_parse_s64(buf, len, &s);
		break;
	case 2:
		if (!hm__sysfs_parse_meminfo(buf, len, &t, &f) &&
		    (t == HM_RES_UNKNOWN || f == HM_RES_UNKNOWN))
			abort();
		break;
	case 3:
		hm__sysfs_parse_list(buf, len, check_range, &last);
		break;
	case 4:
		hm__sysfs_parse_row(buf, len, row, 16, &n);
		if (n > 16)
			abort();
		break;
	}
	free(buf);
	return 0;
}
