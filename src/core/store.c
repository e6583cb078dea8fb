/* SPDX-License-Identifier: MIT */
/*
 * Opening stores by URI. "scheme:rest" picks a plug-in from the registry; a
 * URI with no known scheme is a file path ("/data/x", "./x", "x").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/registry.h"

/*
 * The URI as messages, listings and the statistics segment show it (and
 * hm_store_uri() gives it): the password in every "scheme://user:password@"
 * becomes "***" (a chain may name several remote stores). As the remote
 * plug-ins read it, the user information ends at the last '@' before the
 * path or the options, and the password starts after the first ':' in it.
 * A password may hold an unencoded '>', '/' or '?' that a parser takes for
 * something else; so where the authority has a ':' and no '@', an '@' later
 * in the same store's text (before the next "//" or '>') still ends a password:
 * better a namespace or an option shown as "***" than a password shown.
 * The plug-in is given the URI as written.
 */
char *hm__uri_redact(const char *uri)
{
	/* Each "***" comes with a "//" and an "@" of its own: at most twice as long. */
	char *out = malloc(strlen(uri) * 2 + 4), *o = out;
	const char *p = uri;

	if (!out)
		return NULL;
	while (*p) {
		const char *auth = strstr(p, "//");
		if (!auth) {
			o = stpcpy(o, p);
			break;
		}
		auth += 2;
		if (auth - 2 == uri || auth[-3] != ':') {
			/* Not "scheme://": a path ("file:/a//b@c"), shown as written. */
			memcpy(o, p, (size_t)(auth - p));
			o += auth - p;
			p = auth;
			continue;
		}
		/* An authority ends at a path or options. */
		const char *end = auth + strcspn(auth, "/?"), *at = NULL;
		for (const char *q = auth; q < end; q++)
			if (*q == '@')
				at = q;
		/* The host part proper ends at '>' too: the next store of a chain. */
		const char *hend = auth + strcspn(auth, "/?>");
		if (!at && memchr(auth, ':', (size_t)(hend - auth))) {
			const char *next = strstr(hend, "//");
			const char *gt = *hend ? strchr(hend + 1, '>') : NULL;
			const char *lim = next ? next : hend + strlen(hend);
			if (*hend == '>')
				lim = hend;
			else if (gt && gt < lim)
				lim = gt;
			for (const char *q = hend; q < lim; q++)
				if (*q == '@')
					at = q;
		}
		if (!at) {
			memcpy(o, p, (size_t)(end - p));
			o += end - p;
			p = end;
			continue;
		}
		const char *colon = memchr(auth, ':', (size_t)(at - auth));
		const char *cut = colon ? colon + 1 : auth;
		memcpy(o, p, (size_t)(cut - p));
		o += cut - p;
		o = stpcpy(o, "***");
		p = at;
	}
	*o = 0;
	return out;
}

int hm_store_open(struct hm_store **out, const char *uri, int flags)
{
	const struct hm_store_ops *ops = NULL;
	const char *rest = uri;
	struct hm_store *s;
	int rc;

	if (!out || !uri)
		return hm__error(-EINVAL, "hm_store_open: NULL argument");
	*out = NULL;
	if (flags & ~HM_STORE_RDONLY)
		return hm__error(-EINVAL, "hm_store_open: unknown flags %#x", flags);
	if (!*uri)
		return hm__error(-EINVAL, "empty store URI");
	rc = hm__plugins_env();
	if (rc)
		return rc;
	const char *colon = strchr(uri, ':');
	const char *slash = strchr(uri, '/');
	if (colon && (!slash || colon < slash)) {
		ops = hm__store_lookup(uri, (size_t)(colon - uri));
		if (!ops)
			return hm__error(-EINVAL, "unknown store scheme '%.*s'", (int)(colon - uri),
					 uri);
		rest = colon + 1;
	} else {
		ops = hm__store_lookup("file", 4);
	}
	/* Aligned for the counter shards inside. */
	if (posix_memalign((void **)&s, 64, sizeof *s))
		return hm__error(-ENOMEM, "out of memory");
	memset(s, 0, sizeof *s);
	s->uri = hm__uri_redact(uri);
	s->ops = ops;
	if (!s->uri) {
		free(s);
		return hm__error(-ENOMEM, "out of memory");
	}
	/* A plug-in's failing system calls must not leak into the caller's errno. */
	int saved = errno;
	rc = ops->open(&s->priv, rest, flags, &s->info);
	errno = saved;
	if (rc) {
		free(s->uri);
		free(s);
		return rc;
	}
	/* What outlives the process is the user's data (a plug-in may say only the first). */
	if (s->info.props & HM_PROP_PERSISTENT)
		s->info.props |= HM_PROP_SHARED;
	atomic_store(&s->wb_eof, s->info.size);
	*out = s;
	return 0;
}

int hm_store_close(struct hm_store *s)
{
	if (!s)
		return hm__error(-EINVAL, "hm_store_close: NULL store");
	if (atomic_load(&s->maps))
		return hm__error(-EBUSY, "store '%s' is still mapped", s->uri);
	s->ops->close(s->priv);
	free(s->uri);
	free(s);
	return 0;
}

/*
 * Closes a store that hmmap() opened for a call that then failed: as
 * hm_store_close(), but a store whose open made or grew a file (pmem:
 * with size=) takes that back, so that the failed call changed nothing.
 */
void hm__store_discard(struct hm_store *s)
{
	if (s->ops == &hm__store_pmem)
		hm__pmem_undo_open(s->priv);
	hm_store_close(s);
}

uint64_t hm_store_size(const struct hm_store *s)
{
	return s ? s->info.size : 0;
}

const char *hm_store_scheme(const struct hm_store *s)
{
	return s ? s->ops->scheme : NULL;
}

const char *hm_store_uri(const struct hm_store *s)
{
	return s ? s->uri : NULL;
}

int hm_store_ctl(struct hm_store *s, const char *command)
{
	char key[128];
	const char *eq, *val = NULL;
	size_t n;

	if (!s || !command || !*command)
		return hm__error(-EINVAL, "hm_store_ctl: NULL or empty argument");
	if (!s->ops->ctl)
		return hm__error(-ENOTSUP, "store '%s' takes no control commands", s->ops->scheme);
	eq = strchr(command, '=');
	n = eq ? (size_t)(eq - command) : strlen(command);
	if (n == 0 || n >= sizeof key)
		return hm__error(-EINVAL, "bad control command '%s'", command);
	memcpy(key, command, n);
	key[n] = 0;
	if (eq)
		val = eq + 1;
	return s->ops->ctl(s->priv, key, val);
}

int hm_store_stats(const struct hm_store *s, struct hm_stats *st)
{
	if (!s || !st)
		return hm__error(-EINVAL, "hm_store_stats: NULL argument");
	memset(st, 0, sizeof *st);
	hm__stats_fill(&s->ctr, st);
	hm__store_space(s, &st->held_bytes, &st->pool_bytes);
	return 0;
}
