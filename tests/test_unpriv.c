/* SPDX-License-Identifier: MIT */
/*
 * Unprivileged use: a child becomes `nobody` and maps a file it owns with
 * hmmap(), reads, writes, syncs and verifies; the engine must report
 * HM_FEAT_USER_MODE_ONLY and the sigbus fault mode, and hm_prefault() must
 * make a buffer usable for write(2).
 *
 * A second child stays non-dumpable after setuid (as a set-uid program
 * would), so /proc/self/pagemap is closed to it: dirty tracking falls back
 * to synchronous write-protect faults, and the data must still be right.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

static char path[512], out[512];
static uid_t nobody_uid;
static gid_t nobody_gid;

#define FAIL_CHILD(...)                                                                  \
	do {                                                                             \
		printf(__VA_ARGS__);                                                     \
		printf(" (%s)\n", hm_errormsg());                                        \
		return 1;                                                                \
	} while (0)

static int unpriv_child(void *arg)
{
	bool dumpable = arg != NULL;
	const size_t len = 8 << 20;
	uint64_t feat = 0;
	unsigned char *p, *ref, *buf;
	int fd;

	/*
	 * A hang guard, not a time limit: the case takes well under a second,
	 * and a fault that is never resolved would otherwise hang until the
	 * runner's timeout. SIGALRM's default action ends the child.
	 */
	alarm(20);
	unsetenv("HMMAP_FAULT_MODE");
	setenv("HMMAP_CACHE_SIZE", "1M", 1);
	if (setgroups(0, NULL) || setgid(nobody_gid) || setuid(nobody_uid))
		FAIL_CHILD("cannot become nobody");
	if (getuid() == 0 || geteuid() == 0)
		FAIL_CHILD("still root");
	prctl(PR_SET_DUMPABLE, dumpable ? 1 : 0);

	if (hm_features(&feat))
		FAIL_CHILD("hm_features failed");
	if (!(feat & HM_FEAT_USER_MODE_ONLY))
		FAIL_CHILD("features %#llx lack HM_FEAT_USER_MODE_ONLY", (unsigned long long)feat);
	if (hm_fault_mode() != HM_FAULT_SIGBUS)
		FAIL_CHILD("fault mode %d, not sigbus", hm_fault_mode());
	if (!dumpable && (feat & HM_FEAT_PAGEMAP_SCAN))
		printf("note: PAGEMAP_SCAN is open to a non-dumpable process here\n");

	ref = malloc(len);
	buf = malloc(len);
	if (!ref || !buf)
		return 1;
	fd = open(path, O_RDONLY);
	if (fd < 0 || tu_read_all(fd, ref, len, 0))
		FAIL_CHILD("cannot read %s as nobody", path);
	close(fd);

	p = hmmap(NULL, len, PROT_READ | PROT_WRITE, HM_CACHED, path, 0);
	if (p == MAP_FAILED)
		FAIL_CHILD("hmmap as nobody: errno %d", errno);
	if (tu_cmp_mem(p, ref, len) != -1)
		FAIL_CHILD("the mapping differs from the file at %lld", tu_cmp_mem(p, ref, len));
	uint64_t s = 3;
	for (int i = 0; i < 20000; i++) {
		size_t off = (tu_rnd(&s) % (len / 8)) * 8;
		uint64_t v = tu_rnd(&s);
		memcpy(p + off, &v, 8);
		memcpy(ref + off, &v, 8);
	}
	if (hmsync(p, len, MS_SYNC))
		FAIL_CHILD("hmsync");
	if (tu_cmp_file(path, ref, len) != -1)
		FAIL_CHILD("after hmsync the file differs at %lld", tu_cmp_file(path, ref, len));

	/* System calls: EFAULT on absent pages (documented), fine after a prefault. */
	fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		FAIL_CHILD("cannot create %s", out);
	if (hm_advise(p, len, HM_ADV_DONTNEED))
		FAIL_CHILD("DONTNEED");
	errno = 0;
	if (write(fd, p + (2 << 20), 65536) != -1 || errno != EFAULT)
		printf("note: write(2) from an absent range did not fail with EFAULT\n");
	if (hm_prefault(p + (2 << 20), 256 << 10, 0))
		FAIL_CHILD("hm_prefault");
	if (pwrite(fd, p + (2 << 20), 256 << 10, 0) != 256 << 10)
		FAIL_CHILD("write(2) from a prefaulted range: errno %d", errno);
	if (pread(fd, buf, 256 << 10, 0) != 256 << 10 || memcmp(buf, ref + (2 << 20), 256 << 10))
		FAIL_CHILD("write(2) wrote the wrong bytes");
	/* read(2) into a pinned range. */
	if (hm_prefault(p + (4 << 20), 128 << 10, HM_PREFAULT_PIN))
		FAIL_CHILD("hm_prefault(PIN)");
	if (pread(fd, p + (4 << 20), 128 << 10, 0) != 128 << 10)
		FAIL_CHILD("read(2) into a pinned range: errno %d", errno);
	memcpy(ref + (4 << 20), ref + (2 << 20), 128 << 10);
	if (hm_unpin(p + (4 << 20), 128 << 10))
		FAIL_CHILD("hm_unpin");
	close(fd);

	if (hmunmap(p, len))
		FAIL_CHILD("hmunmap");
	if (tu_cmp_file(path, ref, len) != -1)
		FAIL_CHILD("after hmunmap the file differs at %lld", tu_cmp_file(path, ref, len));
	p = hmmap(NULL, len, PROT_READ, HM_CACHED, path, 0);
	if (p == MAP_FAILED || tu_cmp_mem(p, ref, len) != -1)
		FAIL_CHILD("after remap the mapping differs");
	hmunmap(p, len);
	free(ref);
	free(buf);
	return 0;
}

static void run_as_nobody(bool dumpable)
{
	struct passwd *pw = getpwnam("nobody");
	unsigned char *ref;

	if (geteuid() != 0)
		SKIP("not root: cannot switch to nobody");
	CHECK(pw);
	nobody_uid = pw->pw_uid;
	nobody_gid = pw->pw_gid;
	ref = tu_make_file(path, 8 << 20, dumpable ? 31 : 32);
	CHECK(ref);
	free(ref);
	CHECK(chmod(tu_tmpdir(), 0755) == 0);
	CHECK(chown(tu_tmpdir(), nobody_uid, nobody_gid) == 0);
	CHECK(chown(path, nobody_uid, nobody_gid) == 0);
	unlink(out);
	int st = tu_child(NULL, unpriv_child, dumpable ? (void *)1 : NULL);
	CHECK(chown(tu_tmpdir(), 0, 0) == 0 && chmod(tu_tmpdir(), 0700) == 0);
	TU_CHILD_RESULT(st);
}

static void test_nobody(void)
{
	run_as_nobody(true);
}

static void test_nobody_nondumpable(void)
{
	run_as_nobody(false);
}

int main(void)
{
	if (!tu_tmpdir())
		return 1;
	tu_path(path, sizeof path, "data");
	tu_path(out, sizeof out, "out");
	RUN(test_nobody);
	RUN(test_nobody_nondumpable);
	tu_cleanup();
	return test_done();
}
