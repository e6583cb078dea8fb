/* SPDX-License-Identifier: MIT */
/*
 * A plug-in library for tests/test_plugins.c whose init registers one
 * policy and then fails: the policy stays usable, the library stays loaded,
 * and hm_plugin_load() reports the failure with the library's message.
 */
#include <errno.h>

#include <hmmap.h>

static int create(void **state, uint32_t capacity, const char *options)
{
	(void)capacity;
	(void)options;
	*state = NULL;
	return 0;
}

static void destroy(void *state)
{
	(void)state;
}

static void insert(void *state, uint32_t slot, uint64_t key)
{
	(void)state;
	(void)slot;
	(void)key;
}

static void hit(void *state, uint32_t slot)
{
	(void)state;
	(void)slot;
}

static int victim(void *state, uint32_t *slot)
{
	(void)state;
	(void)slot;
	return -ENOENT;
}

static const struct hm_policy_ops half = {
	.abi = HM_POLICY_ABI,
	.name = "half-loaded",
	.summary = "registered by a plug-in whose init then failed (tests)",
	.create = create,
	.destroy = destroy,
	.insert = insert,
	.hit = hit,
	.victim = victim,
	.remove = hit,
};

int hm_plugin_init(void)
{
	int rc = hm_policy_register(&half);

	if (rc)
		return rc;
	return hm_plugin_error(-EPERM, "fails: refusing to start, as asked");
}
