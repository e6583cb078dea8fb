/* SPDX-License-Identifier: MIT */
/*
 * The one parser for "k=v,k=v" option strings and for the numbers in them.
 * Every parser is strict: the whole text must be consumed, so "10x" or
 * "1.5.2" is an error rather than a silent 10 or 1.5.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hmmap.h"
#include "core/error.h"

int hm_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

int hm_parse_double(const char *s, double *out)
{
	char *end;
	double v;

	/* Decimal only: strtod() would also take hex floats, inf and nan. */
	if (!s || !*s || s[strspn(s, "0123456789+-.eE")])
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || v != v)
		return -EINVAL;
	*out = v;
	return 0;
}

int hm_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 0:
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	case 'B':
		if (end[1])
			return -EINVAL;
		end++;
		break;
	default:
		return -EINVAL;
	}
	if (shift) {
		end++;
		/* Accept K, KB, KiB. */
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'b' || *end == 'B')
			end++;
	}
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int hm_opts_parse(const char *text, int (*cb)(void *ctx, const char *key, const char *value),
		  void *ctx)
{
	char buf[1024];
	char *p, *save = NULL, *tok, *seen[64];
	size_t n, nseen = 0;

	if (!text || !*text)
		return 0;
	n = strlen(text);
	if (n >= sizeof buf)
		return hm__error(-EINVAL, "option string too long (%zu bytes)", n);
	memcpy(buf, text, n + 1);
	for (p = buf; (tok = strtok_r(p, ",", &save)); p = NULL) {
		char *eq = strchr(tok, '=');
		int rc;

		if (!eq || eq == tok)
			return hm__error(-EINVAL, "option '%s' is not of the form key=value", tok);
		*eq = 0;
		/* Every option takes one value: a second one is a typo, not an override. */
		for (size_t i = 0; i < nseen; i++)
			if (!strcmp(seen[i], tok))
				return hm__error(-EINVAL, "option '%s' is given twice", tok);
		if (nseen < sizeof seen / sizeof seen[0])
			seen[nseen++] = tok;
		rc = cb(ctx, tok, eq + 1);
		if (rc)
			return rc;
	}
	/* strtok_r skips empty fields; ",," or a trailing ',' is still a typo. */
	if (buf[0] == ',' || text[n - 1] == ',' || strstr(text, ",,"))
		return hm__error(-EINVAL, "empty option in '%s'", text);
	return 0;
}
