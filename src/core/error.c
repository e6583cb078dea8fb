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

static int errno_append(int err)
{
	size_t n = strlen(errmsg);
	char buf[64];

	/* strerror_r (GNU) may return a static string instead of filling buf. */
	const char *s = strerror_r(err < 0 ? -err : err, buf, sizeof buf);
	snprintf(errmsg + n, sizeof errmsg - n, ": %s", s);
	return err;
}

int hm__error_errno(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	return errno_append(err);
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

int hm__error_wrap(int err, const char *fmt, ...)
{
	va_list ap;
	char cause[sizeof errmsg];
	size_t n;

	/* The cause a plug-in set, kept before the new sentence overwrites it. */
	snprintf(cause, sizeof cause, "%s", errmsg);
	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	if (!cause[0])
		return errno_append(err);
	n = strlen(errmsg);
	if (n + 2 < sizeof errmsg) {
		size_t c = strnlen(cause, sizeof errmsg - n - 3);
		memcpy(errmsg + n, ": ", 2);
		memcpy(errmsg + n + 2, cause, c);
		errmsg[n + 2 + c] = 0;
	}
	return err;
}

int hm_plugin_error(int err, const char *fmt, ...)
{
	va_list ap;

	if (!fmt)
		return err;
	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	return err;
}
