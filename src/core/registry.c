/* SPDX-License-Identifier: MIT */
/*
 * The registry: every store and policy compiled in, and those a program or
 * a plug-in library registers at run time. Adding a built-in is one line
 * here; the CLI listings, the docs table and the conformance tests all
 * iterate these lists.
 *
 * A list is append-only: a registration writes its slot under the registry
 * lock and then publishes the new count with a release store, so lookups
 * and listings read without a lock, and a pointer returned by a listing
 * stays valid for the life of the process. Nothing is ever unregistered, and
 * a plug-in library that registered anything is never unloaded.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "hmmap.h"
#include "core/error.h"
#include "core/internal.h"
#include "core/registry.h"

#define BUILTIN_POLICIES                                                                 \
	&hm__policy_fifo, &hm__policy_clock, &hm__policy_lru, &hm__policy_twoq,          \
		&hm__policy_arc, &hm__policy_lirs, &hm__policy_s3fifo, &hm__policy_sieve, \
		&hm__policy_opt

#define BUILTIN_STORES                                                                   \
	&hm__store_file, &hm__store_mem, &hm__store_fault, &hm__store_lz4,               \
		&hm__store_zstd, &hm__store_chain, &hm__store_redis,                      \
		&hm__store_redis_cluster, &hm__store_memcached, &hm__store_pmem,          \
		&hm__store_numa

#define NPOLICIES HM__COUNT(BUILTIN_POLICIES)
#define NSTORES HM__COUNT(BUILTIN_STORES)

static const struct hm_policy_ops *policies[NPOLICIES + HM_PLUGINS_MAX] = { BUILTIN_POLICIES };
static const struct hm_store_ops *stores[NSTORES + HM_PLUGINS_MAX] = { BUILTIN_STORES };
static _Atomic size_t npolicies = NPOLICIES, nstores = NSTORES;

/* Serialises registrations and plug-in loading (a plug-in's init registers). */
static pthread_mutex_t reg_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
/* Registrations so far: a plug-in that registered something stays loaded. */
static _Atomic unsigned registrations;

static void registry_lock(void)
{
	pthread_mutex_lock(&reg_lock);
}

static void registry_unlock(void)
{
	pthread_mutex_unlock(&reg_lock);
}

/*
 * fork(): registrations belong to the program and stay in the child; only
 * the lock is made usable there (a recursive mutex taken by the forking
 * thread cannot be released under the child's new thread id).
 */
void hm__registry_fork(int phase)
{
	pthread_mutexattr_t a;

	switch (phase) {
	case HM_FORK_PREPARE:
		registry_lock();
		break;
	case HM_FORK_PARENT:
		registry_unlock();
		break;
	case HM_FORK_CHILD:
		hm__fork_released(&reg_lock);
		pthread_mutexattr_init(&a);
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&reg_lock, &a);
		pthread_mutexattr_destroy(&a);
		break;
	}
}

int hm__plugin_name_check(const char *what, const char *name, bool scheme)
{
	size_t n;

	if (!name || !*name)
		return hm__error(-EINVAL, "%s: empty name", what);
	n = strlen(name);
	if (n > HM_PLUGIN_NAME_MAX)
		return hm__error(-EINVAL, "%s: name '%.40s...' is longer than %d characters", what,
				 name, HM_PLUGIN_NAME_MAX);
	if (name[0] < 'a' || name[0] > 'z')
		return hm__error(-EINVAL, "%s: name '%s' must start with a lowercase letter",
				 what, name);
	for (size_t i = 1; i < n; i++) {
		char c = name[i];
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		    (scheme && (c == '+' || c == '.')))
			continue;
		return hm__error(-EINVAL, "%s: name '%s' has a character other than a-z, 0-9, "
					  "'_', '-'%s",
				 what, name, scheme ? ", '+', '.'" : "");
	}
	return 0;
}

int hm__plugin_check(const char *fn, const void *ops, uint32_t abi, uint32_t want,
		     const char *name, const char *summary, bool scheme)
{
	int rc;

	if (!ops)
		return hm__error(-EINVAL, "%s: NULL ops", fn);
	if (abi != want)
		return hm__error(-EINVAL, "%s: built for ABI %u, this library has ABI %u", fn,
				 abi, want);
	rc = hm__plugin_name_check(fn, name, scheme);
	if (rc)
		return rc;
	/* The listings (`hmmap policies`, `hmmap stores`, `hmmap tiers policies`) print it. */
	if (!summary)
		return hm__error(-EINVAL, "%s: '%s' has no summary (one line for the listings)",
				 fn, name);
	return 0;
}

int hm__plugin_hooks_check(const char *what, const char *name, const char *const *names,
			   const void *const *hooks, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!hooks[i])
			return hm__error(-EINVAL, "%s '%s': the %s hook is required", what, name,
					 names[i]);
	return 0;
}

int hm__registry_add(const struct hm__reg_list *l, const char *name, const void *ops)
{
	registry_lock();
	size_t n = atomic_load_explicit(l->count, memory_order_relaxed);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(l->name_at(i), name)) {
			registry_unlock();
			return hm__error(-EEXIST, "a %s named '%s' is already registered", l->kind,
					 name);
		}
	}
	if (n == l->cap) {
		registry_unlock();
		return hm__error(-ENOSPC, "cannot register %s '%s': %d plug-in %s are "
					  "registered already",
				 l->kind, name, HM_PLUGINS_MAX, l->kinds);
	}
	l->put(n, ops);
	atomic_store_explicit(l->count, n + 1, memory_order_release);
	atomic_fetch_add(&registrations, 1);
	registry_unlock();
	return 0;
}

static const char *policy_name(size_t i)
{
	return policies[i]->name;
}

static void policy_put(size_t i, const void *ops)
{
	policies[i] = ops;
}

static const char *store_name(size_t i)
{
	return stores[i]->scheme;
}

static void store_put(size_t i, const void *ops)
{
	stores[i] = ops;
}

int hm_policy_register(const struct hm_policy_ops *ops)
{
	static const struct hm__reg_list list = { "policy", "policies", NPOLICIES + HM_PLUGINS_MAX,
						  &npolicies, policy_name, policy_put };
	static const char *const names[] = { "create", "destroy", "insert",
					     "hit",    "victim",  "remove" };
	const uint32_t known = HM_POLICY_CONCURRENT_HIT | HM_POLICY_REPLAY_ONLY;
	int rc;

	rc = hm__plugin_check("hm_policy_register", ops, ops ? ops->abi : 0, HM_POLICY_ABI,
			      ops ? ops->name : NULL, ops ? ops->summary : NULL, false);
	if (rc)
		return rc;
	if (ops->flags & ~known)
		return hm__error(-EINVAL, "policy '%s': unknown flags %#x", ops->name,
				 ops->flags & ~known);
	const void *hooks[] = { (const void *)ops->create, (const void *)ops->destroy,
				(const void *)ops->insert, (const void *)ops->hit,
				(const void *)ops->victim, (const void *)ops->remove };
	rc = hm__plugin_hooks_check("policy", ops->name, names, hooks, 6);
	if (rc)
		return rc;
	if ((ops->flags & HM_POLICY_REPLAY_ONLY) && !ops->next_use)
		return hm__error(-EINVAL, "policy '%s': a replay-only policy needs next_use",
				 ops->name);
	return hm__registry_add(&list, ops->name, ops);
}

int hm_store_register(const struct hm_store_ops *ops)
{
	static const struct hm__reg_list list = { "store", "stores", NSTORES + HM_PLUGINS_MAX,
						  &nstores, store_name, store_put };
	static const char *const names[] = { "open", "close", "read", "write" };
	int rc;

	rc = hm__plugin_check("hm_store_register", ops, ops ? ops->abi : 0, HM_STORE_ABI,
			      ops ? ops->scheme : NULL, ops ? ops->summary : NULL, true);
	if (rc)
		return rc;
	const void *hooks[] = { (const void *)ops->open, (const void *)ops->close,
				(const void *)ops->read, (const void *)ops->write };
	rc = hm__plugin_hooks_check("store", ops->scheme, names, hooks, 4);
	if (rc)
		return rc;
	if (ops->persist && !ops->map)
		return hm__error(-EINVAL, "store '%s': persist needs map", ops->scheme);
	return hm__registry_add(&list, ops->scheme, ops);
}

const struct hm_policy_ops *const *hm_policy_list(size_t *count)
{
	hm__plugins_env();
	*count = atomic_load_explicit(&npolicies, memory_order_acquire);
	return policies;
}

const struct hm_store_ops *const *hm_store_list(size_t *count)
{
	hm__plugins_env();
	*count = atomic_load_explicit(&nstores, memory_order_acquire);
	return stores;
}

void hm__registry_names(char *buf, size_t len, size_t count, const char *(*name_at)(size_t i))
{
	size_t i, n = 0;

	buf[0] = 0;
	for (i = 0; i < count && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", name_at(i));
}

int hm_policy_lookup(const char *spec, const struct hm_policy_ops **ops, const char **options)
{
	size_t i, n, count;
	const char *colon;
	char names[768];
	int rc;

	if (!spec || !*spec)
		return hm__error(-EINVAL, "empty policy name");
	rc = hm__plugins_env();
	if (rc)
		return rc;
	count = atomic_load_explicit(&npolicies, memory_order_acquire);
	colon = strchr(spec, ':');
	n = colon ? (size_t)(colon - spec) : strlen(spec);
	/* ":k=v" names no policy, as "" does not: the same error. */
	if (!n)
		return hm__error(-EINVAL, "empty policy name in '%s'", spec);
	for (i = 0; i < count; i++) {
		if (strlen(policies[i]->name) == n && !strncasecmp(policies[i]->name, spec, n)) {
			*ops = policies[i];
			*options = colon ? colon + 1 : "";
			return 0;
		}
	}
	hm__registry_names(names, sizeof names, count, policy_name);
	return hm__error(-ENOENT, "unknown policy '%.*s' (known: %s)", (int)n, spec, names);
}

const struct hm_store_ops *hm__store_lookup(const char *scheme, size_t len)
{
	size_t i, count = atomic_load_explicit(&nstores, memory_order_acquire);

	for (i = 0; i < count; i++)
		if (strlen(stores[i]->scheme) == len && !strncmp(stores[i]->scheme, scheme, len))
			return stores[i];
	return NULL;
}

/*
 * Plug-in libraries. hm_plugin_load() opens a shared object and calls its
 * hm_plugin_init(), which registers what the library brings. Loading the
 * same library twice is a no-op.
 */
#define LOADED_MAX 64
static void *loaded[LOADED_MAX];
static size_t nloaded;

int hm_plugin_load(const char *path)
{
	void *h;
	int (*init)(void);
	unsigned before;
	int rc;

	if (!path || !*path)
		return hm__error(-EINVAL, "hm_plugin_load: empty path");
	/*
	 * HMMAP_PLUGINS first, before the lock: a library's init may look a
	 * name up, and the once that loads HMMAP_PLUGINS in another thread
	 * would wait for this lock while this thread waits for that once.
	 */
	hm__plugins_env();
	registry_lock();
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *why = dlerror();
		/* access() sees a path only: a bare name dlopen() did not find is -ENOENT too. */
		int e = access(path, F_OK) ? -ENOENT : -ELIBBAD;
		registry_unlock();
		return hm__error(e, "cannot load plug-in '%s': %s", path,
				 why ? why : "unknown dlopen error");
	}
	for (size_t i = 0; i < nloaded; i++) {
		if (loaded[i] == h) {
			dlclose(h); /* the reference this call took */
			registry_unlock();
			return 0;
		}
	}
	*(void **)&init = dlsym(h, "hm_plugin_init");
	if (!init) {
		dlclose(h);
		registry_unlock();
		return hm__error(-EINVAL, "'%s' is not an hmmap plug-in: it defines no "
					  "hm_plugin_init()",
				 path);
	}
	if (nloaded == LOADED_MAX) {
		dlclose(h);
		registry_unlock();
		return hm__error(-ENOSPC, "cannot load plug-in '%s': %d plug-in libraries are "
					  "loaded already",
				 path, LOADED_MAX);
	}
	before = atomic_load(&registrations);
	hm__error_clear();
	rc = init();
	if (rc) {
		if (rc > 0)
			rc = -EINVAL;
		rc = hm__error_wrap(rc, "plug-in '%s' failed to initialise", path);
		/* What it registered before failing stays usable, so the code stays too. */
		if (atomic_load(&registrations) == before)
			dlclose(h);
		else
			loaded[nloaded++] = h;
		registry_unlock();
		return rc;
	}
	loaded[nloaded++] = h;
	registry_unlock();
	return 0;
}

/*
 * HMMAP_PLUGINS: a ':'-separated list of plug-in libraries loaded before the
 * first lookup or listing. A failure is remembered and returned (with its
 * message) by every lookup, so that a mistyped path is an error, not a
 * policy or scheme silently missing. Ignored in set-user-ID programs.
 */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static int env_rc;
static char env_msg[512];
static __thread bool env_loading;

static void plugins_env_load(void)
{
	const char *v = secure_getenv("HMMAP_PLUGINS");
	char path[4096];

	if (!v)
		return;
	env_loading = true;
	while (*v) {
		const char *end = strchr(v, ':');
		size_t n = end ? (size_t)(end - v) : strlen(v);
		if (n >= sizeof path) {
			env_rc = hm__error(-ENAMETOOLONG, "HMMAP_PLUGINS: a path of %zu bytes",
					   n);
		} else if (n) {
			memcpy(path, v, n);
			path[n] = 0;
			int rc = hm_plugin_load(path);
			if (rc) {
				char why[400];
				snprintf(why, sizeof why, "%s", hm_errormsg());
				env_rc = hm__error(rc, "HMMAP_PLUGINS: %s", why);
			}
		}
		if (env_rc) {
			snprintf(env_msg, sizeof env_msg, "%s", hm_errormsg());
			break;
		}
		v += n + (end ? 1 : 0);
	}
	env_loading = false;
}

int hm__plugins_env(void)
{
	/* A plug-in's init may list or look up; its own loading is under way. */
	if (env_loading)
		return 0;
	pthread_once(&env_once, plugins_env_load);
	if (env_rc)
		return hm__error(env_rc, "%s", env_msg);
	return 0;
}
