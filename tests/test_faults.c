/* SPDX-License-Identifier: MIT */
/*
 * Store failures, through the fault: store.
 *
 * Reads: a page that cannot be read reaches the thread that touched it as
 * SIGBUS with si_addr inside the page, never as wrong data: with the
 * default action the process dies by SIGBUS; with a handler that leaves by
 * siglongjmp the address is checked, the good pages around it read right,
 * and once the store recovers the page reads its real contents.
 *
 * Writes: a failed write-back keeps the page dirty and hm_sync() returns
 * the error; after "fail_write=off" a retry succeeds and the store holds
 * everything. Eviction under failing writes never drops dirty data (faults
 * may fail with SIGBUS while the cache cannot make room; that is allowed).
 *
 * Every case runs in a child per fault mode (the mode is process-wide). The
 * SIGBUS handler is installed before the first hm_* call, so that in sigbus
 * mode hmmap chains to it for faults it cannot serve.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "core/internal.h"
#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

static const char *mode_env;

static __thread void *volatile bus_addr;
static __thread volatile int bus_code;
static _Atomic int bus_count;
static _Atomic int bus_wrong_thread;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
	atomic_fetch_add(&bus_count, 1);
	if (!tu_jb) {
		/* Not a thread that expects it. */
		atomic_store(&bus_wrong_thread, 1);
		return;
	}
	bus_addr = si->si_addr;
	bus_code = si->si_code;
	siglongjmp(*tu_jb, 1);
}

static void install_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_bus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

static unsigned char pat(size_t off)
{
	return (unsigned char)((off * 131) >> 3 ^ 0x5a);
}

/* A fault: store of `len` bytes holding pat(), mapped through its own cache. */
struct fx {
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	unsigned char *b;
	size_t len;
};

static int fx_open(struct fx *f, size_t len, size_t budget, size_t ps)
{
	unsigned char *buf = malloc(len);
	int rc;

	memset(f, 0, sizeof *f);
	f->len = len;
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		buf[i] = pat(i);
	rc = hm_cache_new(&f->c, budget, "fifo");
	if (!rc) {
		char uri[64];
		snprintf(uri, sizeof uri, "fault:%zu", len);
		rc = hm_store_open(&f->s, uri, 0);
	}
	if (!rc)
		rc = f->s->ops->write(f->s->priv, buf, len, 0); /* straight into the store */
	free(buf);
	if (!rc)
		rc = hm_region_map(&f->r, f->c, f->s, 0, len, PROT_READ | PROT_WRITE, HM_CACHED, ps);
	if (!rc)
		f->b = hm_region_addr(f->r);
	return rc;
}

static void fx_close(struct fx *f)
{
	if (f->r)
		hm_region_unmap(f->r);
	if (f->s)
		hm_store_close(f->s);
	if (f->c)
		hm_cache_free(f->c);
}

/* ---- reads ---- */

static int default_action_child(void *arg)
{
	struct fx f;
	unsigned char v;

	/* The default action, whatever a sanitizer installed. */
	signal(SIGBUS, SIG_DFL);
	if (fx_open(&f, 1 << 20, 256 << 10, 4096)) {
		printf("setup: %s\n", hm_errormsg());
		return 2;
	}
	if (hm_store_ctl(f.s, "fail_read_at=40960"))
		return 2;
	v = *(volatile unsigned char *)(f.b + 4096);
	if (v != pat(4096))
		return 3;
	v = *(volatile unsigned char *)(f.b + 40960 + 100);
	printf("read a page that cannot be read and got %u (pattern %u)\n", v, pat(40960 + 100));
	return 4;
}

static void test_read_error_kills(void)
{
	const char *env[] = { mode_env, NULL };
	int st = tu_child(env, default_action_child, NULL);

	CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "child: %s", tu_status_str(st));
}

static void test_read_error_handler(void)
{
	struct fx f;
	unsigned char v = 0;
	const size_t bad = 10;

	CHECKF(fx_open(&f, 1 << 20, 256 << 10, 4096) == 0, "%s", hm_errormsg());
	CHECK(hm_store_ctl(f.s, "fail_read_at=40962") == 0);
	/* Sequential reads: readahead windows run into the bad page. */
	for (size_t pg = 0; pg < 32; pg++) {
		size_t off = pg * 4096 + 77;
		int hit = tu_try_read8(f.b + off, &v);
		if (pg == bad) {
			CHECKF(hit, "page %zu read %u instead of SIGBUS", pg, v);
			CHECKF((char *)bus_addr >= (char *)f.b + bad * 4096 &&
				       (char *)bus_addr < (char *)f.b + (bad + 1) * 4096,
			       "si_addr %p outside the page at %p (si_code %d)", bus_addr,
			       (void *)(f.b + bad * 4096), bus_code);
		} else {
			CHECKF(!hit, "good page %zu raised SIGBUS", pg);
			CHECKF(v == pat(off), "page %zu: %u, want %u", pg, v, pat(off));
		}
	}
	/* Still failing: SIGBUS again, never zeros. */
	CHECK(tu_try_read8(f.b + bad * 4096, &v) == 1);
	struct hm_stats st;
	CHECK(hm_region_stats(f.r, &st) == 0 && st.read_errors >= 2);
	/* Recovered: the real contents. */
	CHECK(hm_store_ctl(f.s, "fail_read_at=off") == 0);
	CHECK(tu_try_read8(f.b + bad * 4096 + 5, &v) == 0);
	CHECK(v == pat(bad * 4096 + 5));
	/* A counted failure: the next read fails, the one after works. */
	CHECK(hm_advise(f.b, f.len, HM_ADV_DONTNEED) == 0);
	CHECK(hm_store_ctl(f.s, "fail_read=1") == 0);
	CHECK(tu_try_read8(f.b + 3 * 4096, &v) == 1);
	CHECK(tu_try_read8(f.b + 3 * 4096, &v) == 0 && v == pat(3 * 4096));
	fx_close(&f);
}

/* A larger page: si_addr is inside the 64 KiB page; neighbours are fine. */
static void test_read_error_64k(void)
{
	struct fx f;
	unsigned char v = 0;

	CHECKF(fx_open(&f, 1 << 20, 256 << 10, 65536) == 0, "%s", hm_errormsg());
	CHECK(hm_store_ctl(f.s, "fail_read_at=200000") == 0); /* page 3 */
	CHECK(tu_try_read8(f.b + 3 * 65536 + 12345, &v) == 1);
	CHECK((char *)bus_addr >= (char *)f.b + 3 * 65536 &&
	      (char *)bus_addr < (char *)f.b + 4 * 65536);
	CHECK(tu_try_read8(f.b + 2 * 65536, &v) == 0 && v == pat(2 * 65536));
	CHECK(tu_try_read8(f.b + 4 * 65536 + 1, &v) == 0 && v == pat(4 * 65536 + 1));
	fx_close(&f);
}

struct other_arg {
	struct fx *f;
	sem_t done;
	int hit;
	void *addr;
};

static void *other_main(void *arg)
{
	struct other_arg *a = arg;
	unsigned char v;

	a->hit = tu_try_read8(a->f->b + 5 * 4096 + 9, &v);
	a->addr = bus_addr;
	sem_post(&a->done);
	return NULL;
}

/*
 * The SIGBUS goes to the thread that touched the page, not to another
 * thread of the process (here the main thread, which waits and does not
 * block SIGBUS).
 */
static void test_read_error_other_thread(void)
{
	struct fx f;
	struct other_arg a = { .f = &f };
	pthread_t t;

	CHECKF(fx_open(&f, 1 << 20, 256 << 10, 4096) == 0, "%s", hm_errormsg());
	CHECK(hm_store_ctl(f.s, "fail_read_at=20480") == 0);
	sem_init(&a.done, 0, 0);
	atomic_store(&bus_wrong_thread, 0);
	CHECK(pthread_create(&t, NULL, other_main, &a) == 0);
	while (sem_wait(&a.done) && errno == EINTR) {
		if (atomic_load(&bus_wrong_thread)) {
			/* The worker is stuck in its fault: end here. */
			printf("SIGBUS went to the main thread, not the faulting one\n");
			fflush(stdout);
			_exit(1);
		}
	}
	pthread_join(t, NULL);
	CHECK(!atomic_load(&bus_wrong_thread));
	CHECK(a.hit == 1);
	CHECKF((char *)a.addr >= (char *)f.b + 5 * 4096 && (char *)a.addr < (char *)f.b + 6 * 4096,
	       "si_addr %p", a.addr);
	fx_close(&f);
}

/* ---- writes ---- */

static void test_sync_error_and_retry(void)
{
	struct fx f;
	unsigned char buf[4096];

	CHECKF(fx_open(&f, 1 << 20, 512 << 10, 4096) == 0, "%s", hm_errormsg());
	memset(f.b + 8192, 0xee, 4096);
	CHECK(hm_store_ctl(f.s, "fail_write") == 0);
	int rc = hm_sync(f.b, f.len, MS_SYNC);
	CHECKF(rc == -EIO, "hm_sync = %d (%s)", rc, hm_errormsg());
	CHECK(*hm_errormsg());
	errno = 0;
	CHECK(hmsync(f.b, f.len, MS_SYNC) == -1 && errno == EIO);
	struct hm_stats st;
	CHECK(hm_region_stats(f.r, &st) == 0 && st.writeback_errors >= 2 && st.dirty_pages == 1);
	/* The store still has the old bytes; the mapping has the new ones. */
	CHECK(f.s->ops->read(f.s->priv, buf, 4096, 8192) == 0 && buf[0] == pat(8192));
	CHECK(f.b[8192] == 0xee);
	/* One more failure, then recovery. */
	CHECK(hm_store_ctl(f.s, "fail_write=1") == 0);
	CHECK(hm_sync(f.b, f.len, MS_SYNC) == -EIO);
	CHECKF(hm_sync(f.b, f.len, MS_SYNC) == 0, "%s", hm_errormsg());
	CHECK(f.s->ops->read(f.s->priv, buf, 4096, 8192) == 0);
	for (int i = 0; i < 4096; i++)
		CHECK(buf[i] == 0xee);
	CHECK(hm_region_stats(f.r, &st) == 0 && st.dirty_pages == 0);
	/* DONTNEED also reports the write-back error and keeps the page. */
	f.b[12288] = 0x11;
	CHECK(hm_store_ctl(f.s, "fail_write") == 0);
	CHECK(hm_advise(f.b, f.len, HM_ADV_DONTNEED) < 0);
	CHECK(f.b[12288] == 0x11);
	CHECK(hm_store_ctl(f.s, "fail_write=off") == 0);
	CHECK(hm_advise(f.b, f.len, HM_ADV_DONTNEED) == 0);
	struct hm_stats cs;
	CHECK(hm_region_stats(f.r, &st) == 0 && hm_cache_stats(f.c, &cs) == 0);
	CHECKF(st.resident_bytes == 0, "after DONTNEED: region resident %llu dirty %llu, cache "
	       "resident %llu", (unsigned long long)st.resident_bytes,
	       (unsigned long long)st.dirty_pages, (unsigned long long)cs.resident_bytes);
	CHECK(f.b[12288] == 0x11);
	fx_close(&f);
}

/* hmunmap() with a failing store: -1/EIO, and the mapping stays with its data. */
/* 1 MiB of fault: store mapped by hmmap(), page i's first byte (i | 1); NULL on failure. */
static unsigned char *fault_region(struct hm_store **s)
{
	unsigned char *p = hmmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, "fault:1M", 0);

	if (p == MAP_FAILED)
		return NULL;
	*s = hm_region_store(hm_region_find(p));
	for (size_t i = 0; i < (1u << 20); i += 4096)
		p[i] = (unsigned char)(i >> 12) | 1;
	return p;
}

static void test_unmap_error(void)
{
	struct hm_store *s = NULL;
	unsigned char *p = fault_region(&s);

	CHECKF(p && s, "%s", hm_errormsg());
	CHECK(hm_store_ctl(s, "fail_write") == 0);
	errno = 0;
	CHECK(hmunmap(p, 1 << 20) == -1 && errno == EIO);
	CHECK(*hm_errormsg());
	CHECK(hm_region_find(p) != NULL);
	for (size_t i = 0; i < (1u << 20); i += 4096)
		CHECK(p[i] == ((unsigned char)(i >> 12) | 1));
	CHECK(hm_store_ctl(s, "fail_write=off") == 0);
	CHECKF(hmunmap(p, 1 << 20) == 0, "%s", hm_errormsg());
	CHECK(hm_region_find(p) == NULL);
}

/*
 * Once a write-back to a store fails, the other runs of the same batch or
 * sync fail at once and stay dirty: a store that has had its whole timeout
 * is not made to wait it once per run (a fault waiting for room behind a
 * batch of k runs waited k timeouts). 16 dirty pages, no two adjacent.
 */
static void test_failed_runs_fail_fast(void)
{
	struct fx f;
	struct hm_stats st;

	CHECKF(fx_open(&f, 64 * 4096, 64 * 4096, 4096) == 0, "%s", hm_errormsg());
	for (size_t pg = 0; pg < 32; pg += 2)
		f.b[pg * 4096] = 0x5a;
	CHECK(hm_store_ctl(f.s, "fail_write") == 0);
	CHECK(hm_sync(f.b, f.len, MS_SYNC) == -EIO);
	CHECK(hm_region_stats(f.r, &st) == 0);
	CHECKF(st.writeback_errors == 1 && st.dirty_pages == 16, "%llu failed write-backs, %llu "
	       "dirty", (unsigned long long)st.writeback_errors, (unsigned long long)st.dirty_pages);
	CHECK(hm_advise(f.b, f.len, HM_ADV_DONTNEED) == -EIO);
	CHECK(hm_region_stats(f.r, &st) == 0);
	CHECKF(st.writeback_errors == 2 && st.dirty_pages == 16, "%llu failed write-backs, %llu "
	       "dirty", (unsigned long long)st.writeback_errors, (unsigned long long)st.dirty_pages);
	CHECK(hm_store_ctl(f.s, "fail_write=off") == 0);
	CHECKF(hm_sync(f.b, f.len, MS_SYNC) == 0, "%s", hm_errormsg());
	unsigned char b;
	for (size_t pg = 0; pg < 32; pg++) {
		CHECK(f.s->ops->read(f.s->priv, &b, 1, pg * 4096) == 0);
		CHECKF(b == (pg % 2 ? pat(pg * 4096) : 0x5a), "page %zu", pg);
	}
	fx_close(&f);
}

/*
 * A part of a region that cannot be written back does not leave: hmunmap()
 * says EIO and the part stays mapped with its data; once the store
 * recovers, it leaves with its writes on the store.
 */
static void test_partial_unmap_error(void)
{
	struct hm_store *s = NULL;
	unsigned char *p = fault_region(&s), b = 0;

	CHECKF(p && s, "%s", hm_errormsg());
	CHECK(hm_store_ctl(s, "fail_write") == 0);
	errno = 0;
	CHECK(hmunmap(p + (512 << 10), 256 << 10) == -1 && errno == EIO);
	CHECK(strstr(hm_errormsg(), "hmunmap") != NULL);
	for (size_t i = 0; i < (1u << 20); i += 4096)
		CHECK(p[i] == ((unsigned char)(i >> 12) | 1));
	p[512 << 10] = 0xee; /* writable again */
	CHECK(hm_store_ctl(s, "fail_write=off") == 0);
	CHECKF(hmunmap(p + (512 << 10), 256 << 10) == 0, "%s", hm_errormsg());
	for (size_t i = 512 << 10; i < (768u << 10); i += 4096) {
		CHECK(hm_store_read(s, &b, 1, i) == 0);
		CHECK(b == (i == (512u << 10) ? 0xee : ((unsigned char)(i >> 12) | 1)));
	}
	CHECK(p[8192] == 3 && p[(1 << 20) - 4096] == 255);
	CHECKF(hmunmap(p, 1 << 20) == 0, "%s", hm_errormsg());
	CHECK(hm_region_find(p) == NULL);
}

/*
 * A range of several pieces (a hole between them): the write-back of the
 * last fails, and every piece stays mapped, the first one too, which is
 * clean and used to leave before the failure was met.
 */
static void test_unmap_error_keeps_every_piece(void)
{
	struct hm_store *s = NULL;
	unsigned char *p = fault_region(&s), b = 0;

	CHECKF(p && s, "%s", hm_errormsg());
	CHECK(hmunmap(p + 8 * 4096, 4096) == 0);
	CHECK(hm_sync(p, 1 << 20, MS_SYNC) == -ENOMEM); /* the hole */
	CHECK(hm_sync(p, 8 * 4096, MS_SYNC) == 0);      /* page 7 clean */
	CHECK(hm_store_ctl(s, "fail_write") == 0);
	p[9 * 4096] = 0xee;
	errno = 0;
	CHECK(hmunmap(p + 7 * 4096, 3 * 4096) == -1 && errno == EIO);
	int rc = hm_sync(p + 7 * 4096, 4096, MS_ASYNC);
	CHECKF(rc == 0, "page 7 of the range that failed to unmap: hm_sync = %d (%s)", rc,
	       hm_errormsg());
	CHECK(p[7 * 4096] == 7 && p[9 * 4096] == 0xee);
	CHECK(hm_store_ctl(s, "fail_write=off") == 0);
	CHECKF(hmunmap(p + 7 * 4096, 3 * 4096) == 0, "%s", hm_errormsg());
	CHECK(hm_store_read(s, &b, 1, 9 * 4096) == 0 && b == 0xee);
	CHECKF(hmunmap(p, 1 << 20) == 0, "%s", hm_errormsg());
}

/*
 * Eviction under failing writes: write one word in every page of a store
 * 16 times the cache while every write-back fails. Faults that find no room
 * may raise SIGBUS (the write did not happen); every write that did happen
 * must be in the store after recovery.
 */
static void test_evict_under_write_failure(void)
{
	struct fx f;
	const size_t len = 4 << 20, npg = len / 4096;
	unsigned char *done = calloc(npg, 1);
	unsigned failed = 0, ok = 0;

	CHECK(done);
	CHECKF(fx_open(&f, len, 256 << 10, 4096) == 0, "%s", hm_errormsg());
	CHECK(hm_store_ctl(f.s, "fail_write") == 0);
	for (size_t pg = 0; pg < npg; pg++) {
		volatile uint64_t *w = (volatile uint64_t *)(f.b + pg * 4096 + (pg % 512) * 8);
		if (tu_try_write64(w, 0xabc0000000000000ull | pg)) {
			failed++;
		} else {
			done[pg] = 1;
			ok++;
		}
	}
	CHECKF(ok >= 256 / 4, "only %u writes succeeded", ok);
	CHECK(hm_sync(f.b, len, MS_SYNC) < 0);
	struct hm_stats st;
	CHECK(hm_cache_stats(f.c, &st) == 0 && st.resident_bytes <= (256 << 10));
	CHECK(st.writeback_errors > 0);
	/* Recovery: a retry writes everything back. */
	CHECK(hm_store_ctl(f.s, "fail_write=off") == 0);
	CHECKF(hm_sync(f.b, len, MS_SYNC) == 0, "%s", hm_errormsg());
	for (size_t pg = 0; pg < npg; pg++) {
		uint64_t v, off = pg * 4096 + (pg % 512) * 8;
		CHECK(f.s->ops->read(f.s->priv, &v, 8, off) == 0);
		if (done[pg])
			CHECKF(v == (0xabc0000000000000ull | pg), "page %zu lost its write: %#llx",
			       pg, (unsigned long long)v);
		else {
			uint64_t orig;
			unsigned char *o = (unsigned char *)&orig;
			for (int k = 0; k < 8; k++)
				o[k] = pat(off + (uint64_t)k);
			CHECKF(v == orig, "page %zu changed without a write", pg);
		}
	}
	/* And through the mapping, after dropping everything. */
	CHECK(hm_advise(f.b, len, HM_ADV_DONTNEED) == 0);
	for (size_t pg = 0; pg < npg; pg++)
		if (done[pg])
			CHECK(*(uint64_t *)(f.b + pg * 4096 + (pg % 512) * 8) ==
			      (0xabc0000000000000ull | pg));
	printf("%u writes raised SIGBUS while the store failed, %u went through\n", failed, ok);
	free(done);
	fx_close(&f);
}

/*
 * Once the store recovers and hm_sync() has written everything back,
 * faults find room again at once. A write-back that failed used to make
 * the cache refuse to evict for a second after it, clean pages or not, so
 * that the first touches after recovery raised SIGBUS.
 */
static void test_room_after_recovery(void)
{
	const size_t ps = 4096, npg = 64;
	struct fx f;
	unsigned char v = 0;
	size_t pg;

	CHECKF(fx_open(&f, npg * ps, 8 * ps, ps) == 0, "%s", hm_errormsg());
	CHECK(hm_store_ctl(f.s, "fail_write") == 0);
	/* Dirty pages until a fault finds no room: none can be written back. */
	for (pg = 0; pg < npg; pg++)
		if (tu_try_write64((volatile uint64_t *)(f.b + pg * ps), pg))
			break;
	CHECKF(pg < npg, "all %zu writes went through a cache of 8 pages", npg);
	CHECK(hm_store_ctl(f.s, "fail_write=off") == 0);
	CHECKF(hm_sync(f.b, f.len, MS_SYNC) == 0, "%s", hm_errormsg());
	for (size_t i = 0; i < npg; i++) {
		CHECKF(tu_try_read8(f.b + i * ps + 8, &v) == 0,
		       "page %zu raised SIGBUS after the store recovered (%s)", i, hm_errormsg());
		CHECKF(v == pat(i * ps + 8), "page %zu reads %u", i, v);
	}
	fx_close(&f);
}

static int mode_child(void *arg)
{
	const char *mode = arg;
	int want = !strcmp(mode, "sigbus") ? HM_FAULT_SIGBUS : HM_FAULT_THREAD;

	install_handler();
	if (hm_fault_mode() != want) {
		printf("fault mode %d, want %s: %s\n", hm_fault_mode(), mode, hm_errormsg());
		return 1;
	}
	RUN(test_read_error_handler);
	RUN(test_read_error_64k);
	RUN(test_read_error_other_thread);
	RUN(test_sync_error_and_retry);
	RUN(test_unmap_error);
	RUN(test_partial_unmap_error);
	RUN(test_unmap_error_keeps_every_piece);
	RUN(test_failed_runs_fail_fast);
	RUN(test_evict_under_write_failure);
	RUN(test_room_after_recovery);
	return test_done();
}

static void test_thread_mode_kill(void)
{
	mode_env = "HMMAP_FAULT_MODE=thread";
	test_read_error_kills();
}

static void test_sigbus_mode_kill(void)
{
	mode_env = "HMMAP_FAULT_MODE=sigbus";
	test_read_error_kills();
}

static void test_thread_mode(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=thread", NULL };

	TU_CHILD_RESULT(tu_child(env, mode_child, "thread"));
}

static void test_sigbus_mode(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=sigbus", NULL };

	TU_CHILD_RESULT(tu_child(env, mode_child, "sigbus"));
}

/* The same with a handler thread polling for faults (HMMAP_FAULT_SPIN). */
static void test_thread_mode_polling(void)
{
	const char *env[] = { "HMMAP_FAULT_MODE=thread", "HMMAP_FAULT_SPIN=200", NULL };

	TU_CHILD_RESULT(tu_child(env, mode_child, "thread"));
}

int main(void)
{
	RUN(test_thread_mode_kill);
	RUN(test_sigbus_mode_kill);
	RUN(test_thread_mode);
	RUN(test_sigbus_mode);
	RUN(test_thread_mode_polling);
	return test_done();
}
