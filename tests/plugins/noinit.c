/* SPDX-License-Identifier: MIT */
/* A shared object without hm_plugin_init (tests/test_plugins.c). */
int hm_plugin_not_init(void);

int hm_plugin_not_init(void)
{
	return 0;
}
