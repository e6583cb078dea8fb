/* SPDX-License-Identifier: MIT */
/*
 * Policy specs on the command line, shared by `hmmap replay` and `hmmap
 * bench` so that both read a --policy list the same way: split where the
 * next token names a policy, names matched in any case (as
 * hm_policy_lookup() matches them) and reported in their canonical,
 * registered spelling, and every spec checked before the first run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hmmap.h"
#include "cli.h"

int hm_cli_strs_add(struct hm_cli_strs *l, char *s)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		char **v = realloc(l->v, cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = s;
	return 0;
}

void hm_cli_strs_free(struct hm_cli_strs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/*
 * The registered policy whose name is tok's first len characters up to a
 * ':' (in any case), or NULL; *all is set if the token is "all" without
 * options.
 */
static const struct hm_policy_ops *named(const char *tok, size_t len, int *all)
{
	const struct hm_policy_ops *const *ops;
	const char *colon = memchr(tok, ':', len);
	size_t n = colon ? (size_t)(colon - tok) : len, count;

	*all = n == 3 && !colon && !strncasecmp(tok, "all", 3);
	ops = hm_policy_list(&count);
	for (size_t i = 0; i < count; i++)
		if (strlen(ops[i]->name) == n && !strncasecmp(ops[i]->name, tok, n))
			return ops[i];
	return NULL;
}

/*
 * Appends one spec, its name in the canonical spelling if it is known ("LRU"
 * is reported as "lru"), or every policy for "all" (with live, those a live
 * cache runs).
 */
static int add_spec(struct hm_cli_strs *out, const char *spec, size_t len, int live)
{
	const struct hm_policy_ops *const *list;
	const struct hm_policy_ops *ops;
	size_t count;
	int all;
	char *s;

	ops = named(spec, len, &all);
	if (all) {
		list = hm_policy_list(&count);
		for (size_t i = 0; i < count; i++) {
			if (live && (list[i]->flags & HM_POLICY_REPLAY_ONLY))
				continue;
			s = strdup(list[i]->name);
			if (!s || hm_cli_strs_add(out, s)) {
				free(s);
				return -ENOMEM;
			}
		}
		return 0;
	}
	s = strndup(spec, len);
	if (!s)
		return -ENOMEM;
	if (ops)
		memcpy(s, ops->name, strlen(ops->name)); /* the same length, in lowercase */
	if (hm_cli_strs_add(out, s)) {
		free(s);
		return -ENOMEM;
	}
	return 0;
}

int hm_cli_policy_split(struct hm_cli_strs *out, const char *cmd, const char *arg, int live)
{
	const char *p = arg, *start = arg, *comma;
	int all, rc;

	if (!*arg) {
		fprintf(stderr, "hmmap %s: empty --policy\n", cmd);
		return -EINVAL;
	}
	if (arg[0] == ',' || arg[strlen(arg) - 1] == ',' || strstr(arg, ",,")) {
		fprintf(stderr, "hmmap %s: an empty item in --policy '%s'\n", cmd, arg);
		return -EINVAL;
	}
	for (;;) {
		comma = strchr(p, ',');
		/* Extend the current spec while the next token does not name a policy. */
		if (comma) {
			const char *next = comma + 1;
			if (!named(next, strcspn(next, ","), &all) && !all) {
				p = next;
				continue;
			}
		}
		rc = add_spec(out, start, comma ? (size_t)(comma - start) : strlen(start), live);
		if (rc)
			return rc;
		if (!comma)
			return 0;
		start = p = comma + 1;
	}
}

int hm_cli_policy_check(const char *spec, int live)
{
	const struct hm_policy_ops *ops;
	const char *options;
	void *st;
	int rc;

	rc = hm_policy_lookup(spec, &ops, &options);
	if (rc)
		return rc == -ENOMEM ? 1 : 2;
	if (live && (ops->flags & HM_POLICY_REPLAY_ONLY)) {
		hm_plugin_error(-EINVAL, "policy '%s' needs the future: it runs only in "
					 "`hmmap replay`",
				ops->name);
		return 2;
	}
	/* Its options, as the policy itself reads them: an instance of one slot. */
	rc = ops->create(&st, 1, options);
	if (rc)
		return rc == -EINVAL ? 2 : 1;
	ops->destroy(st);
	return 0;
}
