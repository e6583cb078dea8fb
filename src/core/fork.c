/* SPDX-License-Identifier: MIT */
/*
 * fork(): a child starts hmmap afresh.
 *
 * Everything the engine has made belongs to the process that made it: the
 * userfaultfd is bound to the parent's address space (UFFDIO_REGISTER in a
 * child fails with EINVAL), /proc/self/pagemap was opened on the parent's,
 * and the handler, reclaimer, sampler, prefetch and publisher threads are
 * not copied. Region mappings are MADV_DONTFORK (hybrid ones are unmapped
 * by hybrid.c's own handler), so a child that touches a parent's region
 * gets SIGSEGV rather than frames of the parent's memfd.
 *
 * So the child's handler forgets the parent's engine, default cache,
 * caches, regions, chains, sampler, prefetch queue and live segment, and
 * reads the HMMAP_* variables again at its first call; its first map starts
 * everything anew. It closes the descriptors it can name (the userfaultfd
 * and its epoll sets, pagemap, the regions' frame files) and frees nothing
 * else: the parent's objects may have been in the middle of a change in a
 * thread that does not exist here, and their locks may be held forever.
 * They stay in the child's copy of the heap, unreachable by the library.
 *
 * Every global lock the reset touches is taken before the fork, in the
 * order in which the library nests them (outermost first), so that no
 * other thread is inside one of them when the child's copy is made:
 *
 *   default_lock -> caches_lock      (cache.c: hm_cache_default -> hm_cache_new)
 *   -> stats reg_lock                (hm_cache_new -> hm__stats_cache_add)
 *   -> eng.lock                      (the publisher reads the fault mode)
 *   -> registry lock                 (engine start -> HMMAP_POLICY/HMMAP_PLUGINS)
 *   -> region table, prefetch queue, chain list (leaves)
 *
 * The parent releases them, and so does the child, whose one thread is
 * the one that took them: a plain mutex is unlocked. A recursive or
 * read-write lock records its owner's thread id, which the child's thread
 * does not have, so those (the registry's and the region table's) are
 * initialised again instead. Initialising a held plain mutex again is
 * undefined, and ThreadSanitizer saw every later lock of one as a second
 * lock of a held mutex. Hybrid regions keep their own handler: its lock
 * nests inside none of these.
 */
#include <pthread.h>

#include "core/internal.h"

static void prepare(void)
{
	hm__cache_fork(HM_FORK_PREPARE);
	hm__stats_fork(HM_FORK_PREPARE);
	hm__engine_fork(HM_FORK_PREPARE);
	hm__registry_fork(HM_FORK_PREPARE);
	hm__region_fork(HM_FORK_PREPARE);
	hm__prefetch_fork(HM_FORK_PREPARE);
	hm__chain_fork(HM_FORK_PREPARE);
}

static void run(int phase)
{
	hm__chain_fork(phase);
	hm__prefetch_fork(phase);
	hm__region_fork(phase);
	hm__registry_fork(phase);
	hm__engine_fork(phase);
	hm__stats_fork(phase);
	hm__cache_fork(phase);
	if (phase == HM_FORK_CHILD)
		hm__env_fork_child();
}

static void parent(void)
{
	run(HM_FORK_PARENT);
}

static void child(void)
{
	run(HM_FORK_CHILD);
}

static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static void install(void)
{
	/* Without memory for the hooks a child cannot map; the parent is unaffected. */
	pthread_atfork(prepare, parent, child);
}

void hm__fork_hooks(void)
{
	pthread_once(&hooks_once, install);
}

/*
 * At load, before the program can have threads inside the library. A
 * static link pulls this file in through hm__env(), which calls
 * hm__fork_hooks() too.
 */
__attribute__((constructor)) static void fork_hooks_at_load(void)
{
	hm__fork_hooks();
}
