/* SPDX-License-Identifier: MIT */
/*
 * The fault engine: one userfaultfd per process, probed once, and the two
 * ways of serving its faults.
 *
 * HM_FAULT_THREAD: a pool of handler threads reads fault messages and
 * resolves them; the faulting thread sleeps in the kernel meanwhile. System
 * calls that touch region memory wait for the page like any mmap page (when
 * the process may handle kernel-mode faults).
 *
 * HM_FAULT_SIGBUS: UFFD_FEATURE_SIGBUS turns every fault into a SIGBUS in
 * the faulting thread, whose handler resolves it and returns; the access is
 * retried. No cross-CPU wake-up: about 2.7x cheaper per fault on this kernel.
 * The catch: a system call that touches an absent page fails with EFAULT,
 * so ranges handed to the kernel must be prefaulted (hm_prefault).
 *
 * Feature handshake: UFFDIO_API may be called once per descriptor, so the
 * probe asks for the kernel's feature set on a throw-away descriptor and then
 * enables what the design needs on the real one.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <ucontext.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/internal.h"
#include "uffd/compat.h"

static struct {
	pthread_mutex_t lock;
	bool started;
	int uffd;
	int pagemap;
	uint64_t kfeatures; /* UFFD_FEATURE_* enabled */
	uint64_t ioctls;
	struct hm_engine_info info;
	pthread_t *threads;
	int *eps; /* each handler thread's epoll set */
	uint32_t nthreads;
	int stopfd;
	/*
	 * hmmap's SIGBUS handler is installed, chaining to old_bus. Kept by a
	 * forked child, which inherits the disposition: installing it again
	 * there would make it its own previous handler.
	 */
	bool bus_installed;
	struct sigaction old_bus;
} eng = { .lock = PTHREAD_MUTEX_INITIALIZER, .uffd = -1, .pagemap = -1, .stopfd = -1 };

/*
 * Thread mode reports an unreadable page from a handler thread, and the
 * kernel lets one thread send another a signal with a kernel si_code only
 * from the thread-group leader. So the handler thread sends SI_QUEUE (which
 * carries si_addr) to the faulting thread and notes (tid, address) here;
 * hmmap's SIGBUS handler in that thread finds the note and hands the
 * application a siginfo shaped as the kernel's for an mmap I/O error
 * (BUS_ADRERR at the address), or takes the default action.
 */
#define PENDING 64
static struct {
	_Atomic pid_t tid;
	uintptr_t addr;
} pending[PENDING];

static bool pending_put(pid_t tid, uintptr_t addr)
{
	for (int i = 0; i < PENDING; i++) {
		pid_t free_tid = 0;
		if (atomic_compare_exchange_strong(&pending[i].tid, &free_tid, -1)) {
			pending[i].addr = addr;
			atomic_store(&pending[i].tid, tid);
			return true;
		}
	}
	return false;
}

static bool pending_take(pid_t tid, uintptr_t *addr)
{
	for (int i = 0; i < PENDING; i++) {
		if (atomic_load(&pending[i].tid) == tid) {
			*addr = pending[i].addr;
			atomic_store(&pending[i].tid, 0);
			return true;
		}
	}
	return false;
}

static int open_uffd(bool user_only, bool *privileged)
{
	int fd, flags = O_CLOEXEC | O_NONBLOCK;

	if (!user_only) {
		fd = (int)syscall(SYS_userfaultfd, flags);
		if (fd >= 0) {
			*privileged = true;
			return fd;
		}
		/* /dev/userfaultfd grants kernel-mode faults to its group. */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
			close(dev);
			if (fd >= 0) {
				*privileged = true;
				return fd;
			}
		}
	}
	*privileged = false;
	fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
	return fd >= 0 ? fd : -errno;
}

static int probe_pagemap_scan(void)
{
	struct pm_scan_arg a;
	struct page_region v[1];
	static char probe_page[4096] __attribute__((aligned(4096)));
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	memset(&a, 0, sizeof a);
	a.size = sizeof a;
	a.start = (uintptr_t)probe_page;
	a.end = a.start + sizeof probe_page;
	a.vec = (uintptr_t)v;
	a.vec_len = 1;
	a.return_mask = PAGE_IS_PRESENT;
	if (ioctl(fd, PAGEMAP_SCAN, &a) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static int serve_one(const struct uffd_msg *m)
{
	uintptr_t addr = (uintptr_t)m->arg.pagefault.address;
	unsigned fl = 0;
	struct hm_region *r;
	int rc;

	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE)
		fl |= HM_FAULT_F_WRITE;
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
		fl |= HM_FAULT_F_WP;
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)
		fl |= HM_FAULT_F_MINOR;
	r = hm__region_get(addr);
	if (!r) {
		/* Unmapped meanwhile: let the thread retry and meet SIGSEGV. */
		hm__uffd_wake((void *)(addr & ~(uintptr_t)4095), 4096);
		return 0;
	}
	rc = hm__fault(r, addr, fl);
	hm__region_put(r);
	if (rc < 0) {
		if (getenv("HMMAP_DEBUG"))
			fprintf(stderr, "hmmap: SIGBUS at %p: %s\n", (void *)addr, hm_errormsg());
		/*
		 * The page cannot be read: the thread that touched it gets
		 * SIGBUS at that address, as the kernel reports mmap I/O
		 * errors. A signal from our own process may carry a kernel
		 * si_code; it interrupts the thread's wait in the fault.
		 */
		siginfo_t si;
		memset(&si, 0, sizeof si);
		si.si_signo = SIGBUS;
		si.si_code = SI_QUEUE;
		si.si_addr = (void *)addr;
		pid_t tid = (pid_t)m->arg.pagefault.feat.ptid;
		if (tid > 0 && pending_put(tid, addr) &&
		    syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, SIGBUS, &si) == 0)
			return 0;
		/* No thread id or no room to note it: the process must not run on. */
		kill(getpid(), SIGBUS);
	}
	return 0;
}

/*
 * Polling for the next fault. A handler thread sleeping in epoll_wait()
 * costs every fault a cross-CPU wake-up before anything is served, and a
 * thread that faults again at once (random first touches, a remote store
 * read one page at a time) pays it on each fault. So after serving, one
 * handler thread at a time keeps reading the descriptor for up to
 * HMMAP_FAULT_SPIN microseconds before it sleeps, yielding the CPU between
 * reads to any thread that can run (the application's, a server's), so
 * that it only uses a CPU nobody else wants. A poll that ends with no
 * fault makes the next ones rarer: after it, 1, then 2, 4, ... up to
 * POLL_SKIP_MAX sleeps go without a poll; a poll that catches a fault starts
 * over. A program that faults now and then thus pays about one empty poll
 * in POLL_SKIP_MAX faults.
 */
#define POLL_SKIP_MAX 256

static struct {
	_Atomic int busy;          /* a handler thread is polling */
	_Atomic uint32_t skip;     /* sleeps left before the next poll */
	_Atomic uint32_t next_skip; /* skip after the next empty poll */
} poller = { .next_skip = 1 };

/* Serves what the descriptor holds; returns the number of messages read. */
static size_t drain(struct uffd_msg *msgs, size_t cap)
{
	size_t total = 0;

	for (;;) {
		ssize_t got = read(eng.uffd, msgs, cap * sizeof msgs[0]);
		if (got <= 0)
			return total;
		for (size_t k = 0; k < (size_t)got / sizeof msgs[0]; k++)
			if (msgs[k].event == UFFD_EVENT_PAGEFAULT)
				serve_one(&msgs[k]);
		total += (size_t)got / sizeof msgs[0];
	}
}

/* Polls for up to spin_ns while faults keep coming; see above. */
static void poll_faults(struct uffd_msg *msgs, size_t cap, uint64_t spin_ns)
{
	uint32_t skip = atomic_load_explicit(&poller.skip, memory_order_relaxed);

	if (skip) {
		atomic_compare_exchange_strong(&poller.skip, &skip, skip - 1);
		return;
	}
	if (atomic_exchange(&poller.busy, 1))
		return;
	uint64_t end = hm__now_ns() + spin_ns;
	bool caught = false;
	while (hm__now_ns() < end) {
		if (drain(msgs, cap)) {
			caught = true;
			end = hm__now_ns() + spin_ns;
			continue;
		}
		/* The CPU to whoever can run; the next read at once if nobody. */
		sched_yield();
	}
	uint32_t next = atomic_load_explicit(&poller.next_skip, memory_order_relaxed);
	if (caught) {
		atomic_store_explicit(&poller.next_skip, 1, memory_order_relaxed);
	} else {
		atomic_store_explicit(&poller.skip, next, memory_order_relaxed);
		atomic_store_explicit(&poller.next_skip, next < POLL_SKIP_MAX ? next * 2 : next,
				      memory_order_relaxed);
	}
	atomic_store(&poller.busy, 0);
}

static void *handler_main(void *arg)
{
	int ep = (int)(intptr_t)arg;
	struct uffd_msg msgs[16];
	const struct hm_env *env;
	uint64_t spin_ns = hm__env(&env) ? 0 : (uint64_t)env->fault_spin_us * 1000;

	/* Handler threads never take the application's signals. */
	hm__block_signals();
	for (;;) {
		struct epoll_event ev[2];
		int n = epoll_wait(ep, ev, 2, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < n; i++)
			if (ev[i].data.fd == eng.stopfd)
				goto out;
		drain(msgs, sizeof msgs / sizeof msgs[0]);
		if (spin_ns)
			poll_faults(msgs, sizeof msgs / sizeof msgs[0], spin_ns);
	}
out:
	close(ep);
	return NULL;
}

/* Hands a SIGBUS to the handler the application had before hmmap's. */
static void chain(int sig, siginfo_t *si, void *uc, bool raise_default)
{
	if (eng.old_bus.sa_flags & SA_SIGINFO) {
		eng.old_bus.sa_sigaction(sig, si, uc);
	} else if (eng.old_bus.sa_handler != SIG_DFL && eng.old_bus.sa_handler != SIG_IGN) {
		eng.old_bus.sa_handler(sig);
	} else {
		/*
		 * The default action. A faulting access that returns is retried
		 * and faults again; a signal that came from a handler thread is
		 * raised again, to arrive once this handler returns.
		 */
		signal(SIGBUS, SIG_DFL);
		if (raise_default)
			syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGBUS);
	}
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	uintptr_t addr;

	if (si->si_code == SI_QUEUE && pending_take((pid_t)syscall(SYS_gettid), &addr)) {
		/* Thread mode: a page this thread touched could not be read. */
		siginfo_t k;
		memset(&k, 0, sizeof k);
		k.si_signo = SIGBUS;
		k.si_code = BUS_ADRERR;
		k.si_addr = (void *)addr;
		errno = saved;
		chain(sig, &k, uc, true);
		return;
	}
	if (eng.info.mode == HM_FAULT_SIGBUS && si->si_code == BUS_ADRERR && si->si_addr) {
		struct hm_region *r;
		unsigned flags = HM_FAULT_F_SIGBUS;

		addr = (uintptr_t)si->si_addr;
#if defined(__x86_64__)
		/* The page-fault error code says whether the access was a write. */
		if (uc && (((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2))
			flags |= HM_FAULT_F_WRITE;
#endif
		r = hm__region_get(addr);
		if (r) {
			/* The handler's mask holds SIGPIPE (signals.c). */
			bool pipe_was = hm__sigpipe_blocked;
			hm__sigpipe_blocked = true;
			int rc = hm__fault(r, addr, flags);
			hm__sigpipe_blocked = pipe_was;
			hm__region_put(r);
			if (rc >= 0) {
				errno = saved;
				return;
			}
		}
	}
	/* Not ours, or a page that cannot be read: the previous handler. */
	errno = saved;
	chain(sig, si, uc, false);
}

static int start_threads(uint32_t n)
{
	int rc;

	eng.stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (eng.stopfd < 0)
		return hm__error_errno(-errno, "eventfd");
	eng.threads = calloc(n, sizeof *eng.threads);
	eng.eps = calloc(n, sizeof *eng.eps);
	if (!eng.threads || !eng.eps)
		return hm__error(-ENOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		int ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = eng.uffd };
		if (ep < 0)
			return hm__error_errno(-errno, "epoll_create1");
		/* EPOLLEXCLUSIVE: one fault wakes one handler, not the herd. */
		if (epoll_ctl(ep, EPOLL_CTL_ADD, eng.uffd, &ev) < 0) {
			rc = -errno;
			close(ep);
			return hm__error_errno(rc, "epoll_ctl(userfaultfd)");
		}
		ev.events = EPOLLIN;
		ev.data.fd = eng.stopfd;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, eng.stopfd, &ev) < 0) {
			rc = -errno;
			close(ep);
			return hm__error_errno(rc, "epoll_ctl(eventfd)");
		}
		rc = pthread_create(&eng.threads[i], NULL, handler_main, (void *)(intptr_t)ep);
		if (rc) {
			close(ep);
			return hm__error(-rc, "cannot start fault handler thread");
		}
		eng.eps[eng.nthreads++] = ep;
	}
	return 0;
}

static int engine_init(void)
{
	const struct hm_env *env;
	struct uffdio_api api;
	bool privileged;
	uint64_t have, want;
	int fd, rc, mode;

	rc = hm__env(&env);
	if (rc)
		return rc;
	fd = open_uffd(false, &privileged);
	/* Out of descriptors or memory is this process's state, not the system's. */
	if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM)
		return hm__error_errno(fd, "cannot open a userfaultfd");
	if (fd < 0)
		return hm__error_errno(fd, "userfaultfd is not available (seccomp, or "
					   "vm.unprivileged_userfaultfd=0 with an old kernel)");
	memset(&api, 0, sizeof api);
	api.api = UFFD_API;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		rc = -errno;
		close(fd);
		return hm__error_errno(rc, "UFFDIO_API handshake failed");
	}
	close(fd);
	have = api.features;
	if (!(have & UFFD_FEATURE_MINOR_SHMEM) || !(have & UFFD_FEATURE_MISSING_SHMEM))
		return hm__error(-ENOTSUP, "this kernel lacks userfaultfd minor/missing faults on "
					   "shmem (Linux 5.14 or later is needed)");

	mode = env->fault_mode;
	if (!mode)
		mode = privileged ? HM_FAULT_THREAD : HM_FAULT_SIGBUS;
	if (mode == HM_FAULT_SIGBUS && !(have & UFFD_FEATURE_SIGBUS))
		return hm__error(-ENOTSUP, "HMMAP_FAULT_MODE=sigbus: the kernel lacks "
					   "UFFD_FEATURE_SIGBUS");

	want = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MISSING_SHMEM;
	want |= have & (UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	/* HM_HUGETLB regions: frames from the huge page pool. */
	if ((have & UFFD_FEATURE_MISSING_HUGETLBFS) && (have & UFFD_FEATURE_MINOR_HUGETLBFS))
		want |= UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_MINOR_HUGETLBFS;
	/*
	 * Dirty tracking without faults needs all three: asynchronous WP,
	 * markers on unpopulated PTEs (a zapped written page reads as
	 * written), and PAGEMAP_SCAN to collect and re-protect.
	 */
	eng.pagemap = probe_pagemap_scan();
	if ((have & UFFD_FEATURE_WP_ASYNC) && (have & UFFD_FEATURE_WP_UNPOPULATED) &&
	    (have & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) && eng.pagemap >= 0)
		want |= UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
	if (mode == HM_FAULT_SIGBUS)
		want |= UFFD_FEATURE_SIGBUS;

	fd = open_uffd(!privileged, &privileged);
	if (fd < 0)
		return hm__error_errno(fd, "userfaultfd");
	memset(&api, 0, sizeof api);
	api.api = UFFD_API;
	api.features = want;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		rc = -errno;
		close(fd);
		return hm__error_errno(rc, "UFFDIO_API with features %#llx",
				       (unsigned long long)want);
	}
	eng.uffd = fd;
	eng.kfeatures = want;
	eng.info.mode = mode;
	eng.info.wp_async = !!(want & UFFD_FEATURE_WP_ASYNC);
	eng.info.features = HM_FEAT_MINOR_SHMEM |
			    (privileged ? 0 : HM_FEAT_USER_MODE_ONLY) |
			    ((have & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) ? HM_FEAT_WP_SHMEM : 0) |
			    ((have & UFFD_FEATURE_WP_ASYNC) ? HM_FEAT_WP_ASYNC : 0) |
			    (eng.pagemap >= 0 ? HM_FEAT_PAGEMAP_SCAN : 0) |
			    ((have & UFFD_FEATURE_SIGBUS) ? HM_FEAT_SIGBUS : 0) |
			    ((have & UFFD_FEATURE_THREAD_ID) ? HM_FEAT_THREAD_ID : 0) |
			    ((have & UFFD_FEATURE_MOVE) ? HM_FEAT_MOVE : 0) |
			    ((want & UFFD_FEATURE_MINOR_HUGETLBFS) ? HM_FEAT_HUGETLB : 0);

	/*
	 * Both modes install a SIGBUS handler that chains to the previous one:
	 * sigbus mode serves faults in it, thread mode uses it to report
	 * unreadable pages with the kernel's siginfo.
	 */
	if (!eng.bus_installed) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_sigbus;
		sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		sigaddset(&sa.sa_mask, SIGPIPE);
		if (sigaction(SIGBUS, &sa, &eng.old_bus) < 0)
			return hm__error_errno(-errno, "sigaction(SIGBUS)");
		eng.bus_installed = true;
	}
	if (mode == HM_FAULT_SIGBUS)
		return 0;
	return start_threads(env->fault_threads);
}

/*
 * Closes the engine's descriptors and frees its tables (the handler
 * threads are gone: joined, or not in a forked child), leaving it as if it
 * had never started.
 */
static void engine_forget(void)
{
	if (eng.uffd >= 0)
		close(eng.uffd);
	if (eng.pagemap >= 0)
		close(eng.pagemap);
	if (eng.stopfd >= 0)
		close(eng.stopfd);
	free(eng.threads);
	free(eng.eps);
	eng.threads = NULL;
	eng.eps = NULL;
	eng.nthreads = 0;
	eng.uffd = eng.pagemap = eng.stopfd = -1;
	eng.kfeatures = eng.ioctls = 0;
	memset(&eng.info, 0, sizeof eng.info);
}

/*
 * Undoes what a failed engine_init() had set up: the handler threads it
 * started (stopped and joined; each closes its epoll set), the eventfd, the
 * userfaultfd and pagemap. The SIGBUS handler stays, as after fork().
 */
static void engine_undo(void)
{
	uint64_t one = 1;

	/* The eventfd stays readable: every handler sees it and returns. */
	if (eng.nthreads && write(eng.stopfd, &one, sizeof one) == sizeof one)
		for (uint32_t i = 0; i < eng.nthreads; i++)
			pthread_join(eng.threads[i], NULL);
	engine_forget();
}

/*
 * A failure is not kept: it releases what it took and the next call tries
 * again, since most causes pass (EMFILE, EAGAIN for a thread, ENOMEM) and
 * the call that fails sets the message that explains it.
 */
int hm__engine_start(const struct hm_engine_info **info)
{
	int rc = 0;

	pthread_mutex_lock(&eng.lock);
	if (!eng.started) {
		rc = engine_init();
		if (rc)
			engine_undo();
		else
			eng.started = true;
	}
	pthread_mutex_unlock(&eng.lock);
	if (rc)
		return rc;
	if (info)
		*info = &eng.info;
	return 0;
}

/*
 * fork(): the userfaultfd belongs to the parent's address space, pagemap was
 * opened on it, and the handler threads were not copied. The child closes
 * them (its copies of the descriptors; the parent's are untouched) and
 * starts the engine again at its first map, in the mode its own
 * environment asks for. The SIGBUS handler stays installed: until then it
 * hands every SIGBUS to the previous handler.
 */
void hm__engine_fork(int phase)
{
	switch (phase) {
	case HM_FORK_PREPARE:
		pthread_mutex_lock(&eng.lock);
		break;
	case HM_FORK_PARENT:
		pthread_mutex_unlock(&eng.lock);
		break;
	case HM_FORK_CHILD:
		for (uint32_t i = 0; i < eng.nthreads; i++)
			close(eng.eps[i]);
		engine_forget();
		eng.started = false;
		for (int i = 0; i < PENDING; i++)
			atomic_store(&pending[i].tid, 0);
		atomic_store(&poller.busy, 0);
		atomic_store(&poller.skip, 0);
		atomic_store(&poller.next_skip, 1);
		pthread_mutex_unlock(&eng.lock);
		break;
	}
}

int hm_fault_mode(void)
{
	const struct hm_engine_info *info;
	int rc = hm__engine_start(&info);

	return rc ? rc : info->mode;
}

int hm_features(uint64_t *features)
{
	const struct hm_engine_info *info;
	int rc;

	if (!features)
		return hm__error(-EINVAL, "hm_features: NULL out-parameter");
	rc = hm__engine_start(&info);

	if (rc)
		return rc;
	*features = info->features;
	return 0;
}

int hm__uffd_register(void *addr, size_t len, bool wp)
{
	struct uffdio_register reg;

	memset(&reg, 0, sizeof reg);
	reg.range.start = (uintptr_t)addr;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
	if (wp)
		reg.mode |= UFFDIO_REGISTER_MODE_WP;
	if (ioctl(eng.uffd, UFFDIO_REGISTER, &reg) < 0)
		return hm__error_errno(-errno, "UFFDIO_REGISTER");
	if (!(reg.ioctls & (1ull << _UFFDIO_CONTINUE)))
		return hm__error(-ENOTSUP, "UFFDIO_CONTINUE is not offered for this range");
	return 0;
}

int hm__uffd_register_wp_async(void *addr, size_t len)
{
	struct uffdio_register reg;
	int rc;

	if (!eng.info.wp_async)
		return -ENOTSUP;
	memset(&reg, 0, sizeof reg);
	reg.range.start = (uintptr_t)addr;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(eng.uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	rc = hm__uffd_writeprotect(addr, len, true);
	if (rc)
		hm__uffd_unregister(addr, len);
	return rc;
}

int hm__uffd_unregister(void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	if (ioctl(eng.uffd, UFFDIO_UNREGISTER, &r) < 0)
		return -errno;
	return 0;
}

int hm__uffd_continue(void *addr, size_t len, bool wp)
{
	struct uffdio_continue c;

	for (;;) {
		memset(&c, 0, sizeof c);
		c.range.start = (uintptr_t)addr;
		c.range.len = len;
		c.mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0;
		if (ioctl(eng.uffd, UFFDIO_CONTINUE, &c) == 0)
			return 0;
		int e = errno;
		if (c.mapped > 0 && (size_t)c.mapped < len) {
			/* A short map: go on with the rest. */
			addr = (char *)addr + c.mapped;
			len -= (size_t)c.mapped;
			continue;
		}
		if (e == EAGAIN)
			continue;
		return -e;
	}
}

int hm__uffd_copy(void *dst, const void *src, size_t len, bool wp)
{
	struct uffdio_copy c;

	for (;;) {
		memset(&c, 0, sizeof c);
		c.dst = (uintptr_t)dst;
		c.src = (uintptr_t)src;
		c.len = len;
		c.mode = wp ? UFFDIO_COPY_MODE_WP : 0;
		if (ioctl(eng.uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		int e = errno;
		if (c.copy > 0 && (size_t)c.copy < len) {
			dst = (char *)dst + c.copy;
			src = (const char *)src + c.copy;
			len -= (size_t)c.copy;
			continue;
		}
		if (e == EAGAIN)
			continue;
		return -e;
	}
}

int hm__uffd_wake(void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	if (eng.uffd < 0 || eng.info.mode != HM_FAULT_THREAD)
		return 0;
	return ioctl(eng.uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

int hm__uffd_writeprotect(void *addr, size_t len, bool protect)
{
	struct uffdio_writeprotect w;

	memset(&w, 0, sizeof w);
	w.range.start = (uintptr_t)addr;
	w.range.len = len;
	w.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
	return ioctl(eng.uffd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

/* One PAGEMAP_SCAN walk of [start, end) with a's flags and categories. */
static int pagemap_walk(struct pm_scan_arg *a, uintptr_t start, uintptr_t end,
			void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx)
{
	struct page_region v[64];

	while (start < end) {
		long n;

		a->size = sizeof *a;
		a->start = start;
		a->end = end;
		a->vec = (uintptr_t)v;
		a->vec_len = sizeof v / sizeof v[0];
		a->walk_end = 0;
		n = ioctl(eng.pagemap, PAGEMAP_SCAN, a);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return hm__error_errno(-errno, "PAGEMAP_SCAN");
		}
		for (long i = 0; i < n; i++)
			cb(ctx, (uintptr_t)v[i].start, (size_t)(v[i].end - v[i].start));
		if (a->walk_end <= start)
			break;
		start = a->walk_end;
	}
	return 0;
}

int hm__pagemap_harvest(uintptr_t start, uintptr_t end, bool present_only,
			void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx)
{
	struct pm_scan_arg a;

	memset(&a, 0, sizeof a);
	a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
	/*
	 * Present-only keeps the walk off holes: re-protecting a hole
	 * would fill page tables with markers across a sparse region. A
	 * swap entry is not a hole: a page being migrated (compaction, NUMA)
	 * has one for a moment, written or not, and is taken like a present
	 * page (its protection comes back with the page).
	 */
	a.category_mask = PAGE_IS_WRITTEN;
	if (present_only)
		a.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	a.return_mask = PAGE_IS_WRITTEN;
	return pagemap_walk(&a, start, end, cb, ctx);
}

int hm__pagemap_written(uintptr_t start, uintptr_t end,
			void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx)
{
	struct pm_scan_arg a;

	/* As a harvest of present pages, but it only looks: nothing is protected. */
	memset(&a, 0, sizeof a);
	a.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT;
	a.return_mask = PAGE_IS_WRITTEN;
	return pagemap_walk(&a, start, end, cb, ctx);
}

int hm__pagemap_holes(uintptr_t start, uintptr_t end,
		      void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx)
{
	struct pm_scan_arg a;

	/* Neither mapped nor holding a marker (or a swap entry). */
	memset(&a, 0, sizeof a);
	a.category_inverted = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	a.category_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	a.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	return pagemap_walk(&a, start, end, cb, ctx);
}

int hm__pagemap_unmarked(uintptr_t start, uintptr_t end,
			 void (*cb)(void *ctx, uintptr_t addr, size_t len), void *ctx)
{
	struct pm_scan_arg a;

	/* A clean page zapped under write protection left a marker: SWAPPED. */
	memset(&a, 0, sizeof a);
	a.category_inverted = PAGE_IS_SWAPPED;
	a.category_mask = PAGE_IS_SWAPPED;
	a.return_mask = PAGE_IS_SWAPPED;
	return pagemap_walk(&a, start, end, cb, ctx);
}
