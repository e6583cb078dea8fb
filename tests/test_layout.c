/* SPDX-License-Identifier: MIT */
/*
 * Where bytes go: a mapping at a non-zero offset, the tail of a file whose
 * size is not a page multiple (zeros past the end, never extended past
 * offset + length), read-only files, and a block device.
 *
 * Cases that need a process of their own (another user, a fatal signal) run
 * first, before this process starts the fault engine: a forked child must
 * not inherit it.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

static char path[512];

static void test_offset(void)
{
	const size_t flen = 1u << 20, off = 512u << 10, len = 256u << 10;
	unsigned char *ref = tu_make_file(path, flen, 11);
	unsigned char *p;

	CHECK(ref);
	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, path, (off_t)off);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(tu_cmp_mem(p, ref + off, len) == -1);
	/* Write at the start, in the middle and at the last byte of the mapping. */
	memset(p, 0xa1, 100);
	memset(p + 70000, 0xa2, 5000);
	p[len - 1] = 0xa3;
	memset(ref + off, 0xa1, 100);
	memset(ref + off + 70000, 0xa2, 5000);
	ref[off + len - 1] = 0xa3;
	CHECK(hmsync(p, len, MS_SYNC) == 0);
	CHECKF(tu_cmp_file(path, ref, flen) == -1, "differs at %lld", tu_cmp_file(path, ref, flen));
	CHECK(hmunmap(p, len) == 0);
	CHECK(tu_file_size(path) == (off_t)flen);

	/* A 64 KiB page region at a 64 KiB multiple. */
	struct hm_cache *c;
	struct hm_store *s;
	struct hm_region *r;
	CHECK(hm_cache_new(&c, 256u << 10, "clock") == 0);
	CHECK(hm_store_open(&s, path, 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 192u << 10, 512u << 10, PROT_READ | PROT_WRITE, HM_CACHED,
			     64u << 10) == 0,
	       "%s", hm_errormsg());
	p = hm_region_addr(r);
	CHECK(tu_cmp_mem(p, ref + (192u << 10), 512u << 10) == -1);
	for (size_t i = 0; i < (512u << 10); i += 4096) {
		p[i] = (unsigned char)(i >> 12);
		ref[(192u << 10) + i] = (unsigned char)(i >> 12);
	}
	CHECK(hm_region_unmap(r) == 0);
	CHECK(tu_cmp_file(path, ref, flen) == -1);
	/* Offsets that are not a multiple of the page size. */
	CHECK(hm_region_map(&r, c, s, 4096, 65536, PROT_READ, HM_CACHED, 64u << 10) == -EINVAL);
	CHECK(hmmap(NULL, 4096, PROT_READ, HM_CACHED, path, 100) == MAP_FAILED && errno == EINVAL);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
	free(ref);
}

/* A 10000-byte file: zeros past its end; write-back never extends it. */
static void test_tail(void)
{
	const size_t flen = 10000;
	unsigned char *ref = tu_make_file(path, flen, 12);
	unsigned char *p;

	CHECK(ref);
	p = hmmap(NULL, flen, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(tu_cmp_mem(p, ref, flen) == -1);
	for (size_t i = flen; i < 12288; i++)
		CHECKF(p[i] == 0, "byte %zu past the end is %u", i, p[i]);
	p[0] = 1;
	p[flen - 1] = 2;
	p[flen] = 3; /* inside the last page but past the mapped length */
	p[12287] = 4;
	ref[0] = 1;
	ref[flen - 1] = 2;
	CHECK(hmsync(p, flen, MS_SYNC) == 0);
	CHECKF(tu_file_size(path) == (off_t)flen, "size %lld", (long long)tu_file_size(path));
	CHECK(tu_cmp_file(path, ref, flen) == -1);
	/* After eviction the tail reads as the file says: zeros. */
	CHECK(hm_advise(p, flen, HM_ADV_DONTNEED) == 0);
	CHECK(p[flen - 1] == 2 && p[flen] == 0 && p[12287] == 0);
	CHECK(hmunmap(p, flen) == 0);
	CHECK(tu_file_size(path) == (off_t)flen);

	/*
	 * A mapping longer than the file: as with mmap, writing inside the
	 * file leaves its size alone (the last page is not padded with
	 * zeros); a byte written past the end extends it to that byte.
	 */
	p = hmmap(NULL, 12288, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	p[9000] = 5;
	ref[9000] = 5;
	CHECK(hmsync(p, 12288, MS_SYNC) == 0);
	CHECKF(tu_file_size(path) == (off_t)flen, "writing inside the file made it %lld bytes",
	       (long long)tu_file_size(path));
	CHECK(tu_cmp_file(path, ref, flen) == -1);
	p[10500] = 6;
	CHECK(hmsync(p, 12288, MS_SYNC) == 0);
	CHECKF(tu_file_size(path) == 10501, "size %lld, want 10501", (long long)tu_file_size(path));
	CHECK(hmunmap(p, 12288) == 0);
	CHECK(tu_file_size(path) == 10501);
	CHECK(tu_cmp_file(path, ref, flen) == -1);
	{
		unsigned char tail[501] = { 1 };
		int fd = open(path, O_RDONLY);
		CHECK(fd >= 0 && tu_read_all(fd, tail, sizeof tail, (off_t)flen) == 0);
		close(fd);
		for (size_t i = 0; i < 500; i++)
			CHECKF(tail[i] == 0, "byte %zu is %u", flen + i, tail[i]);
		CHECK(tail[500] == 6);
	}
	CHECK(truncate(path, (off_t)flen) == 0);

	/* A mapping that ends before the end of the file leaves the rest. */
	p = hmmap(NULL, 8192, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	CHECK(p != MAP_FAILED);
	memset(p, 0x77, 8192);
	memset(ref, 0x77, 8192);
	CHECK(hmunmap(p, 8192) == 0);
	CHECK(tu_file_size(path) == (off_t)flen);
	CHECK(tu_cmp_file(path, ref, flen) == -1);

	/* A mapping past the end: reads zeros, grows the file at most to offset+length. */
	p = hmmap(NULL, 5000, PROT_READ | PROT_WRITE, HM_CACHED, path, 8192);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(tu_cmp_mem(p, ref + 8192, flen - 8192) == -1);
	for (size_t i = flen - 8192; i < 8192; i++)
		CHECK(p[i] == 0);
	p[4999] = 9;
	p[5000] = 10; /* past the mapped length */
	CHECK(hmsync(p, 5000, MS_SYNC) == 0);
	CHECKF(tu_file_size(path) <= 8192 + 5000 && tu_file_size(path) >= 8192 + 5000,
	       "size %lld, want %d", (long long)tu_file_size(path), 8192 + 5000);
	CHECK(hmunmap(p, 5000) == 0);
	CHECK(tu_file_size(path) == 8192 + 5000);
	free(ref);
}

/* An empty file maps and reads zeros; it is not grown by a read-only map. */
static void test_empty_file(void)
{
	unsigned char *ref = tu_make_file(path, 0, 1);
	unsigned char *p;

	CHECK(ref);
	free(ref);
	p = hmmap(NULL, 8192, PROT_READ, HM_CACHED, path, 0);
	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(p[0] == 0 && p[8191] == 0);
	CHECK(hmunmap(p, 8192) == 0);
	CHECK(tu_file_size(path) == 0);
}

struct ro_arg {
	const char *file;
	bool nobody;
	const char *scheme; /* "" (a bare path: file:) or "pmem:" */
};

static int ro_child(void *arg)
{
	const struct ro_arg *a = arg;
	char file[600];
	struct passwd *pw = getpwnam("nobody");
	unsigned char *p;

	snprintf(file, sizeof file, "%s%s", a->scheme ? a->scheme : "", a->file);

	if (a->nobody) {
		if (!pw || setgroups(0, NULL) || setgid(pw->pw_gid) || setuid(pw->pw_uid)) {
			printf("cannot become nobody\n");
			return 1;
		}
		prctl(PR_SET_DUMPABLE, 1);
	}
	p = hmmap(NULL, 8192, PROT_READ | PROT_WRITE, HM_CACHED, file, 0);
	if (p != MAP_FAILED || errno != EACCES || !*hm_errormsg()) {
		printf("PROT_WRITE on a read-only file: %p errno %d '%s'\n", (void *)p, errno,
		       hm_errormsg());
		return 1;
	}
	/* pmem: maps the file itself in the other modes: refused there too. */
	for (int m = 0; a->scheme && !strcmp(a->scheme, "pmem:") && m < 2; m++) {
		p = hmmap(NULL, 8192, PROT_READ | PROT_WRITE, m ? HM_HYBRID : HM_DIRECT, file, 0);
		if (p != MAP_FAILED || errno != EACCES) {
			printf("PROT_WRITE %s on a read-only file: %p errno %d '%s'\n",
			       m ? "HM_HYBRID" : "HM_DIRECT", (void *)p, errno, hm_errormsg());
			return 1;
		}
	}
	p = hmmap(NULL, 8192, PROT_READ, HM_CACHED, file, 0);
	if (p == MAP_FAILED) {
		printf("PROT_READ: %s\n", hm_errormsg());
		return 1;
	}
	for (int i = 0; i < 8192; i++)
		if (p[i] != (unsigned char)(i * 7)) {
			printf("byte %d wrong\n", i);
			return 1;
		}
	if (hmsync(p, 8192, MS_SYNC) || hmunmap(p, 8192)) {
		printf("sync/unmap: %s\n", hm_errormsg());
		return 1;
	}
	return 0;
}

/*
 * Read-only files: mode 0444, and a file the mapping user cannot write. A
 * file whose mode has no write bit is read-only for root too, although
 * root may open it for writing. The same for file: (a bare path) and pmem:.
 */
static void readonly_case(const char *scheme)
{
	char ro[512];
	unsigned char buf[8192];
	int fd, st;
	struct ro_arg as_root = {.file = ro, .scheme = scheme},
		      as_nobody = {.file = ro, .nobody = true, .scheme = scheme};

	for (int i = 0; i < 8192; i++)
		buf[i] = (unsigned char)(i * 7);
	tu_path(ro, sizeof ro, *scheme ? "ro-pmem" : "ro");
	fd = open(ro, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && tu_write_all(fd, buf, sizeof buf, 0) == 0);
	close(fd);
	CHECK(chmod(ro, 0444) == 0);
	st = tu_child(NULL, ro_child, &as_root);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child (euid %d): %s", (int)geteuid(),
	       tu_status_str(st));
	CHECK(tu_cmp_file(ro, buf, sizeof buf) == -1);
	if (geteuid() != 0)
		return;
	/* Mode 0644 but another owner: nobody may only read it. */
	CHECK(chmod(ro, 0644) == 0);
	CHECK(chmod(tu_tmpdir(), 0755) == 0);
	st = tu_child(NULL, ro_child, &as_nobody);
	CHECK(chmod(tu_tmpdir(), 0700) == 0);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", tu_status_str(st));
	CHECK(tu_cmp_file(ro, buf, sizeof buf) == -1);
}

static void test_readonly_file(void)
{
	readonly_case("");
}

static void test_readonly_file_pmem(void)
{
	readonly_case("pmem:");
}

/* A read-only mapping cannot be written: the store is open read-only too. */
static int segv_child(void *arg)
{
	unsigned char *p;

	/* The default action, whatever a sanitizer installed. */
	signal(SIGSEGV, SIG_DFL);
	p = hmmap(NULL, 8192, PROT_READ, HM_CACHED, path, 0);
	if (p == MAP_FAILED)
		return 2;
	(void)*(volatile unsigned char *)p;
	*(volatile unsigned char *)p = 1;
	return 3;
}

static void test_write_to_prot_read(void)
{
	unsigned char *ref = tu_make_file(path, 8192, 5);
	int st;

	CHECK(ref);
	st = tu_child(NULL, segv_child, NULL);
	CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "child: %s", tu_status_str(st));
	CHECK(tu_cmp_file(path, ref, 8192) == -1);
	free(ref);
}

static void test_blockdev(void)
{
	char cmd[700], dev[128] = "", uri[200];
	const size_t len = 4u << 20;
	unsigned char *ref = tu_make_file(path, len, 21);
	unsigned char *p;
	FILE *f;

	CHECK(ref);
	if (geteuid() != 0) {
		free(ref);
		SKIP("not root: cannot set up a loop device");
	}
	snprintf(cmd, sizeof cmd, "losetup -f --show %s 2>/dev/null", path);
	f = popen(cmd, "r");
	if (f) {
		if (!fgets(dev, sizeof dev, f))
			dev[0] = 0;
		pclose(f);
	}
	dev[strcspn(dev, "\n")] = 0;
	if (!dev[0] || access(dev, R_OK | W_OK)) {
		free(ref);
		SKIP("losetup could not create a loop device here");
	}
	snprintf(uri, sizeof uri, "file:%s", dev);
	struct hm_store *s;
	int rc = hm_store_open(&s, uri, 0);
	if (rc == 0) {
		rc = hm_store_size(s) == len ? 0 : -1;
		hm_store_close(s);
	}
	p = rc ? MAP_FAILED : hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0);
	bool ok = p != MAP_FAILED && tu_cmp_mem(p, ref, len) == -1;
	if (p != MAP_FAILED) {
		for (size_t i = 0; i < len; i += 3 * 4096 + 8) {
			p[i] = (unsigned char)~ref[i];
			ref[i] = p[i];
		}
		ok = ok && hmsync(p, len, MS_SYNC) == 0;
		ok = ok && hmunmap(p, len) == 0;
	}
	/* Past the end of a device that cannot grow: refused. */
	bool past = hmmap(NULL, len + 4096, PROT_READ | PROT_WRITE, HM_CACHED, uri, 0) ==
			    MAP_FAILED &&
		    errno == EINVAL;
	snprintf(cmd, sizeof cmd, "losetup -d %s", dev);
	CHECK(system(cmd) == 0);
	CHECKF(rc == 0, "store open/size on %s: %s", dev, hm_errormsg());
	CHECKF(ok, "block device %s: %s", dev, hm_errormsg());
	CHECK(past);
	CHECK(tu_cmp_file(path, ref, len) == -1);
	free(ref);
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	/* Children first (see the top of the file). */
	RUN(test_readonly_file);
	RUN(test_readonly_file_pmem);
	RUN(test_write_to_prot_read);
	RUN(test_offset);
	RUN(test_tail);
	RUN(test_empty_file);
	RUN(test_blockdev);
	tu_cleanup();
	return test_done();
}
