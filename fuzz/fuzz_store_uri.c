/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the URI parsers of the byte-addressable stores.
 *
 * Byte 0 picks the scheme: even bytes give "numa:" + the rest (nodes,
 * ranges, size, policy), odd bytes "pmem:/dev/null," + the rest (the option
 * parser; /dev/null is not device-DAX, so an open that parses fails after
 * the options, and the read-only flag keeps size= from creating anything).
 * A successful open must give a store with a size, readable and writable at
 * offset 0; a failed one must leave *store NULL and a message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char uri[320];
	struct hm_store *s = (struct hm_store *)1;
	const char *prefix;
	size_t n;
	int rc;

	if (size < 1)
		return 0;
	prefix = (data[0] & 1) ? "pmem:/dev/null," : "numa:";
	n = size - 1 < 256 ? size - 1 : 256;
	strcpy(uri, prefix);
	memcpy(uri + strlen(prefix), data + 1, n);
	uri[strlen(prefix) + n] = 0;
	rc = hm_store_open(&s, uri, (data[0] & 1) ? HM_STORE_RDONLY : 0);
	if (rc) {
		if (s != NULL || !*hm_errormsg())
			abort();
		return 0;
	}
	if (!s || hm_store_size(s) == 0)
		abort();
	{
		char b = 7, c = 0;
		if (hm_store_write(s, &b, 1, 0) || hm_store_read(s, &c, 1, 0) || c != 7)
			abort();
	}
	if (hm_store_close(s))
		abort();
	return 0;
}
