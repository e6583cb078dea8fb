/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hmmap.h"
#include "core/error.h"

static __thread char errmsg[512];

static void vset(const char *fmt, va_list ap)
{
	vsnprintf(errmsg, sizeof errmsg, fmt, ap);
}

int hm__error(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	return err;
}

int hm__error_errno(int err, const char *fmt, ...)
{
	va_list ap;
	size_t n;
	char buf[64];

	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	n = strlen(errmsg);
	/* strerror_r (GNU) may return a static string instead of filling buf. */
	const char *s = strerror_r(err < 0 ? -err : err, buf, sizeof buf);
	snprintf(errmsg + n, sizeof errmsg - n, ": %s", s);
	return err;
}

void hm__error_clear(void)
{
	errmsg[0] = 0;
}

const char *hm_errormsg(void)
{
	return errmsg;
}

const char *hm_version(void)
{
	return HM_VERSION_STRING;
}
