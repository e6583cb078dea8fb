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
 * The URI as messages, listings and the statistics segment show it: a
 * password in "scheme://user:password@host" becomes "***". The plug-in is
 * given the URI as written.
 */
static char *redact(const char *uri)
{
	const char *auth = strstr(uri, "//"), *at, *end, *colon;
	char *out;

	if (!auth)
		return strdup(uri);
	auth += 2;
	end = auth + strcspn(auth, "/?");
	at = memchr(auth, '@', (size_t)(end - auth));
	if (!at)
		return strdup(uri);
	/* Keep the user name; hide whatever follows it up to the '@'. */
	colon = memchr(auth, ':', (size_t)(at - auth));
	const char *cut = colon ? colon + 1 : auth;
	if (asprintf(&out, "%.*s***%s", (int)(cut - uri), uri, at) < 0)
		return NULL;
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
	s->uri = redact(uri);
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

uint64_t hm_store_size(const struct hm_store *s)
{
	return s ? s->info.size : 0;
}

const char *hm_store_scheme(const struct hm_store *s)
{
	return s ? s->ops->scheme : NULL;
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
	return 0;
}
