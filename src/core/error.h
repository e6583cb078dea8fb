/* SPDX-License-Identifier: MIT */
/*
 * Per-thread error messages. Every failing internal path that returns
 * -errno to the user sets a sentence first with hm__error(); hm_errormsg()
 * returns it. Messages are kept in a fixed thread-local buffer so that
 * setting one never allocates (it is used on the fault path too).
 */
#ifndef HM_CORE_ERROR_H
#define HM_CORE_ERROR_H

#include <errno.h>

/* Formats a message for the calling thread and returns `err` (a -errno). */
int hm__error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* As hm__error, appending ": strerror(-err)". */
int hm__error_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * As hm__error, appending ": " and the message the thread had before (what a
 * store plug-in said about its failure), or ": strerror(-err)" if none. Clear
 * the message before calling into the plug-in.
 */
int hm__error_wrap(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hm__error_clear(void);
/*
 * A copy of a store URI (malloc) fit for messages and listings: the
 * password in every "//user:password@host" becomes "***" (src/core/store.c).
 * NULL without memory.
 */
char *hm__uri_redact(const char *uri);

#endif
