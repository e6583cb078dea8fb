/* SPDX-License-Identifier: MIT */
/*
 * Store URIs: every scheme, bare paths, and each malformed form; store
 * control commands; and closing a store that a region still maps.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"

static char file_path[512];

static void test_file_uri(void)
{
	struct hm_store *s = NULL;
	char uri[600], rel[600];

	tu_path(file_path, sizeof file_path, "data");
	unsigned char *ref = tu_make_file(file_path, 12345, 1);
	CHECK(ref);
	free(ref);

	snprintf(uri, sizeof uri, "file:%s", file_path);
	CHECKF(hm_store_open(&s, uri, 0) == 0, "%s", hm_errormsg());
	CHECK(s && hm_store_size(s) == 12345);
	CHECK(!strcmp(hm_store_scheme(s), "file"));
	CHECKF(!strcmp(hm_store_uri(s), uri), "%s", hm_store_uri(s));
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_store_uri(NULL) == NULL);

	/* A path with "//" and "@" in it is not a user name: shown as written. */
	char odd[600];
	tu_path(odd, sizeof odd, "u:pw@host");
	ref = tu_make_file(odd, 4096, 2);
	CHECK(ref);
	free(ref);
	char twice[608];
	snprintf(twice, sizeof twice, "/%s", odd); /* "//tmp/.../u:pw@host" */
	CHECKF(hm_store_open(&s, twice, 0) == 0, "%s", hm_errormsg());
	CHECKF(!strcmp(hm_store_uri(s), twice), "%s", hm_store_uri(s));
	CHECK(hm_store_close(s) == 0);

	/* A bare path means the same. */
	s = NULL;
	CHECKF(hm_store_open(&s, file_path, 0) == 0, "%s", hm_errormsg());
	CHECK(hm_store_size(s) == 12345 && !strcmp(hm_store_scheme(s), "file"));
	CHECK(hm_store_close(s) == 0);

	/* A relative path, from the current directory. */
	CHECK(chdir(tu_tmpdir()) == 0);
	snprintf(rel, sizeof rel, "./data");
	CHECKF(hm_store_open(&s, rel, HM_STORE_RDONLY) == 0, "%s", hm_errormsg());
	CHECK(hm_store_size(s) == 12345);
	CHECK(hm_store_close(s) == 0);
	CHECKF(hm_store_open(&s, "data", 0) == 0, "%s", hm_errormsg());
	CHECK(hm_store_close(s) == 0);
	CHECK(chdir("/") == 0);
}

static void test_mem_uri(void)
{
	struct hm_store *s = NULL;

	CHECKF(hm_store_open(&s, "mem:64M", 0) == 0, "%s", hm_errormsg());
	CHECK(hm_store_size(s) == 64ull << 20);
	CHECK(!strcmp(hm_store_scheme(s), "mem"));
	CHECK(hm_store_close(s) == 0);

	CHECKF(hm_store_open(&s, "mem:4G,read_ns=300,write_ns=1000", 0) == 0, "%s",
	       hm_errormsg());
	CHECK(hm_store_size(s) == 4ull << 30);
	CHECK(hm_store_close(s) == 0);

	CHECKF(hm_store_open(&s, "mem:1G,read_bw=1G,write_bw=512M", 0) == 0, "%s",
	       hm_errormsg());
	CHECK(hm_store_close(s) == 0);
	CHECKF(hm_store_open(&s, "mem:4096", 0) == 0, "%s", hm_errormsg());
	CHECK(hm_store_size(s) == 4096);
	CHECK(hm_store_close(s) == 0);

	CHECKF(hm_store_open(&s, "fault:1M", 0) == 0, "%s", hm_errormsg());
	CHECK(hm_store_size(s) == 1u << 20);
	CHECK(!strcmp(hm_store_scheme(s), "fault"));
	CHECK(hm_store_close(s) == 0);
}

/* A mem: store with latency really serves data (and the delay is taken). */
static void test_mem_latency_data(void)
{
	void *p = hmmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED,
			"mem:1M,read_ns=1000,write_ns=1000,read_bw=1G", 0);
	unsigned char *b = p;

	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	for (size_t i = 0; i < (1u << 20); i += 4096)
		CHECK(b[i] == 0);
	for (size_t i = 0; i < (1u << 20); i += 4096)
		b[i + 7] = (unsigned char)(i >> 12);
	CHECK(hmsync(p, 1 << 20, MS_SYNC) == 0);
	CHECK(hm_advise(p, 1 << 20, HM_ADV_DONTNEED) == 0);
	for (size_t i = 0; i < (1u << 20); i += 4096)
		CHECKF(b[i + 7] == (unsigned char)(i >> 12), "offset %zu", i);
	CHECK(hmunmap(p, 1 << 20) == 0);
}

static void test_bad_uris(void)
{
	static const struct {
		const char *uri;
		int err; /* 1: any -errno */
		const char *named; /* the message names this */
	} bad[] = {
		{ "", -EINVAL, NULL },
		{ "bogus:/x", -EINVAL, "bogus" },
		{ "http://example.com/x", -EINVAL, "http" },
		{ "mem:", -EINVAL, NULL },
		{ "mem:0", -EINVAL, NULL },
		{ "mem:abc", -EINVAL, "abc" },
		{ "mem:-1", -EINVAL, NULL },
		{ "mem:1X", -EINVAL, NULL },
		{ "mem:,read_ns=1", -EINVAL, NULL },
		{ "mem:1G,", -EINVAL, NULL },
		{ "mem:1G,,read_ns=1", -EINVAL, NULL },
		{ "mem:1G,bogus=1", -EINVAL, "bogus" },
		{ "mem:1G,read_ns=abc", -EINVAL, "read_ns" },
		{ "mem:1G,read_ns", -EINVAL, "read_ns" },
		{ "mem:1G,write_bw=fast", -EINVAL, "write_bw" },
		{ "mem:100T", -EINVAL, NULL },
		{ "fault:", -EINVAL, NULL },
		{ "fault:1M,fail_read=1", -EINVAL, "fail_read" },
		{ "file:", -EINVAL, NULL },
		{ "file:/nonexistent-hmmap-test/x", -ENOENT, "nonexistent" },
		{ "/nonexistent-hmmap-test/x", -ENOENT, "nonexistent" },
		{ "file:/tmp", 1, "/tmp" }, /* EISDIR or EINVAL */
		{ "file:/dev/null", -EINVAL, NULL },
	};
	struct hm_store *s;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		s = (struct hm_store *)1;
		int rc = hm_store_open(&s, bad[i].uri, 0);
		CHECKF(bad[i].err == 1 ? rc < 0 : rc == bad[i].err, "'%s' gave %d, not %d (%s)", bad[i].uri, rc, bad[i].err,
		       hm_errormsg());
		CHECKF(s == NULL, "'%s': out-parameter not cleared", bad[i].uri);
		CHECKF(*hm_errormsg(), "'%s': no message", bad[i].uri);
		if (bad[i].named)
			CHECKF(strstr(hm_errormsg(), bad[i].named), "'%s': message '%s'",
			       bad[i].uri, hm_errormsg());
	}
	CHECK(hm_store_open(NULL, "mem:1M", 0) == -EINVAL);
	CHECK(hm_store_open(&s, NULL, 0) == -EINVAL);
	CHECK(hm_store_open(&s, "mem:1M", 0x80) == -EINVAL);
	CHECK(hm_store_close(NULL) == -EINVAL);
}

/* Every bad URI reaches hmmap() callers as MAP_FAILED with errno. */
static void test_bad_uris_hmmap(void)
{
	errno = 0;
	CHECK(hmmap(NULL, 4096, PROT_READ, HM_CACHED, "bogus:x", 0) == MAP_FAILED);
	CHECK(errno == EINVAL);
	errno = 0;
	CHECK(hmmap(NULL, 4096, PROT_READ, HM_CACHED, "/nonexistent-hmmap-test/x", 0) ==
	      MAP_FAILED);
	CHECK(errno == ENOENT);
	errno = 0;
	CHECK(hmmap(NULL, 4096, PROT_READ, HM_CACHED, "mem:1G,bogus=1", 0) == MAP_FAILED);
	CHECK(errno == EINVAL && strstr(hm_errormsg(), "bogus"));
}

static void test_store_ctl(void)
{
	struct hm_store *s;

	CHECK(hm_store_open(&s, "fault:1M", 0) == 0);
	CHECK(hm_store_ctl(s, "fail_read") == 0);
	CHECK(hm_store_ctl(s, "fail_read=off") == 0);
	CHECK(hm_store_ctl(s, "fail_read=3") == 0);
	CHECK(hm_store_ctl(s, "fail_read=always") == 0);
	CHECK(hm_store_ctl(s, "fail_write=0") == 0);
	CHECK(hm_store_ctl(s, "fail_write_at=8192") == 0);
	CHECK(hm_store_ctl(s, "fail_write_at=off") == 0);
	CHECK(hm_store_ctl(s, "fail_read_at=1M") == 0);
	CHECK(hm_store_ctl(s, "fail_read_at=off") == 0);
	CHECK(hm_store_ctl(s, "fail_read=off") == 0);

	static const char *const bad[] = { "bogus", "bogus=1", "fail_read=abc", "fail_read=-1",
					   "fail_read_at", "fail_read_at=xyz", "=1", "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECKF(hm_store_ctl(s, bad[i]) == -EINVAL, "'%s' accepted", bad[i]);
		CHECKF(*hm_errormsg(), "'%s': no message", bad[i]);
	}
	CHECK(hm_store_ctl(s, NULL) == -EINVAL);
	CHECK(hm_store_ctl(NULL, "fail_read") == -EINVAL);
	CHECK(hm_store_close(s) == 0);

	CHECK(hm_store_open(&s, "mem:1M", 0) == 0);
	CHECK(hm_store_ctl(s, "fail_read") == -ENOTSUP);
	CHECK(*hm_errormsg());
	CHECK(hm_store_close(s) == 0);

	CHECK(hm_store_open(&s, file_path, 0) == 0);
	CHECK(hm_store_ctl(s, "fail_read") == -ENOTSUP);
	CHECK(hm_store_close(s) == 0);
}

static void test_close_mapped(void)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r, *r2;

	CHECK(hm_cache_new(&c, 1 << 20, "fifo") == 0);
	CHECK(hm_store_open(&s, "mem:1M", 0) == 0);
	CHECKF(hm_region_map(&r, c, s, 0, 1 << 20, PROT_READ | PROT_WRITE, HM_CACHED, 0) == 0,
	       "%s", hm_errormsg());
	CHECKF(hm_region_map(&r2, c, s, 4096, 8192, PROT_READ, HM_CACHED, 4096) == 0, "%s",
	       hm_errormsg());
	CHECK(hm_region_store(r) == s && hm_region_cache(r) == c);
	CHECK(hm_store_close(s) == -EBUSY);
	CHECK(*hm_errormsg());
	CHECK(hm_cache_free(c) == -EBUSY);
	/* Still usable after the refused close. */
	((char *)hm_region_addr(r))[4096] = 42;
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == -EBUSY);
	CHECK(((char *)hm_region_addr(r2))[0] == 42);
	CHECK(hm_region_unmap(r2) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

/* A read-only open, and a store that hmmap() opened belongs to the mapping. */
static void test_rdonly_store(void)
{
	struct hm_store *s;
	struct hm_cache *c;
	struct hm_region *r;

	CHECK(hm_cache_new(&c, 1 << 20, NULL) == 0);
	CHECK(hm_store_open(&s, file_path, HM_STORE_RDONLY) == 0);
	CHECK(hm_region_map(&r, c, s, 0, 8192, PROT_READ | PROT_WRITE, HM_CACHED, 0) == -EACCES);
	CHECK(*hm_errormsg());
	CHECK(hm_region_map(&r, c, s, 0, 8192, PROT_READ, HM_CACHED, 0) == 0);
	CHECK(hm_region_unmap(r) == 0);
	CHECK(hm_store_close(s) == 0);
	CHECK(hm_cache_free(c) == 0);
}

int main(void)
{
	if (!tu_tmpdir()) {
		printf("mkdtemp failed\n");
		return 1;
	}
	RUN(test_file_uri);
	RUN(test_mem_uri);
	RUN(test_mem_latency_data);
	RUN(test_bad_uris);
	RUN(test_bad_uris_hmmap);
	RUN(test_store_ctl);
	RUN(test_close_mapped);
	RUN(test_rdonly_store);
	tu_cleanup();
	return test_done();
}
