/* SPDX-License-Identifier: MIT */
/*
 * Stores a user configured, in `hmmap ls` and hm_resources(): the stores
 * file ($HMMAP_STORES), its rows (name, URI, scheme, node, figures, size
 * and properties from the store), a store that cannot be opened, and every
 * malformed line as a clear error naming the line. Runs against a fixture
 * sysfs root, so the machine's own rows are known.
 */
#include <stdint.h>
#include <string.h>

#include "hmmap.h"
#include "harness.h"
#include "testutil.h"
#include "bamutil.h"

#define FIX "tests/fixtures/sysfs/"

static char stores[256], data[256];

static int write_stores(const char *text)
{
	FILE *f = fopen(stores, "w");

	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* The rows of kind store, with the total row count. */
static const struct hm_resource *find(const struct hm_resource *res, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (res[i].kind == HM_RES_STORE && !strcmp(res[i].name, name))
			return &res[i];
	return NULL;
}

static void test_store_rows(void)
{
	struct hm_resource *res, *base;
	size_t n, nbase;
	const struct hm_resource *r;
	char text[1024];

	unsetenv("HMMAP_STORES");
	CHECK(hm_resources(&base, &nbase) == 0);
	snprintf(text, sizeof text,
		 "# name uri figures\n"
		 "\n"
		 "fast   numa:0,size=1M,policy=bind   read_latency_ns=95 write_latency_ns=110 "
		 "read_bandwidth_mbps=20000 write_bandwidth_mbps=15000\n"
		 "   log  pmem:%s  read_latency_ns=300   # measured with hmmap probe\n"
		 "gone   pmem:%s.missing\n"
		 "plain\t%s\n",
		 data, data, data);
	CHECK(write_stores(text) == 0);
	setenv("HMMAP_STORES", stores, 1);
	CHECKF(hm_resources(&res, &n) == 0, "%s", hm_errormsg());
	CHECKF(n == nbase + 4, "%zu rows, %zu without stores", n, nbase);
	/* The machine's rows first, unchanged; the stores after them, in order. */
	for (size_t i = 0; i < nbase; i++)
		CHECK(res[i].kind == base[i].kind && !strcmp(res[i].name, base[i].name));
	CHECK(!strcmp(res[nbase].name, "fast") && !strcmp(res[nbase + 3].name, "plain"));
	r = find(res, n, "fast");
	CHECK(r && !strcmp(r->device, "numa:0,size=1M,policy=bind") && !strcmp(r->mode, "numa"));
	CHECK(r->node == 0 && r->size == 1 << 20);
	CHECK(r->byte_addressable == HM_YES && r->persistent == HM_NO && r->coherent == HM_YES);
	CHECK(r->read_latency_ns == 95 && r->write_latency_ns == 110);
	CHECK(r->read_bandwidth_mbps == 20000 && r->write_bandwidth_mbps == 15000);
	CHECK(!strcmp(hm_resource_kind_name(r->kind), "store"));
	r = find(res, n, "log");
	CHECK(r && !strcmp(r->mode, "pmem") && r->size == 8192 && r->node == -1);
	CHECK(r->byte_addressable == HM_YES && r->persistent == HM_YES);
	CHECK(r->read_latency_ns == 300 && r->write_latency_ns == HM_RES_UNKNOWN);
	CHECK(r->read_bandwidth_mbps == HM_RES_UNKNOWN);
	/* A store that cannot be opened is listed, its facts unknown. */
	r = find(res, n, "gone");
	CHECK(r && r->size == HM_RES_UNKNOWN && r->byte_addressable == HM_UNKNOWN);
	r = find(res, n, "plain");
	CHECK(r && !strcmp(r->mode, "file") && r->size == 8192 && r->byte_addressable == HM_NO);
	hm_resources_free(res, n);
	hm_resources_free(base, nbase);
	/* Set and empty: no stores file. */
	setenv("HMMAP_STORES", "", 1);
	CHECK(hm_resources(&res, &n) == 0 && n == nbase);
	hm_resources_free(res, n);
}

static void test_bad_stores_files(void)
{
	static const struct {
		const char *text, *says;
	} bad[] = {
		{ "onlyname\n", "line 1: store 'onlyname' has no URI" },
		{ "ok mem:1M\nbad/name mem:1M\n", "line 2" },
		{ "a mem:1M read_latency_ns=fast\n", "is not a number" },
		{ "a mem:1M read_latency_ns=-1\n", "is not a number" },
		{ "a mem:1M latency=5\n", "unknown figure" },
		{ "a mem:1M 5\n", "unknown figure" },
		{ "a mem:1M\n\n# c\na mem:2M\n", "line 4: store 'a' is named twice" },
		{ "a # no uri\n", "has no URI" },
	};
	struct hm_resource *res = (struct hm_resource *)1;
	size_t n = 7;
	char big[6000];

	setenv("HMMAP_STORES", stores, 1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK(write_stores(bad[i].text) == 0);
		EXPECT_RC(hm_resources(&res, &n), -EINVAL);
		CHECK(res == NULL && n == 0);
		CHECKF(strstr(hm_errormsg(), bad[i].says) && strstr(hm_errormsg(), stores),
		       "case %zu: %s", i, hm_errormsg());
	}
	memset(big, 'x', sizeof big - 2);
	big[sizeof big - 2] = '\n';
	big[sizeof big - 1] = 0;
	memcpy(big, "a mem:1M ", 9);
	CHECK(write_stores(big) == 0);
	EXPECT_RC(hm_resources(&res, &n), -EINVAL);
	CHECK(strstr(hm_errormsg(), "longer than"));
	/* A named file that does not exist is an error; the default one is optional. */
	setenv("HMMAP_STORES", "/nonexistent/hmmap-stores", 1);
	EXPECT_RC(hm_resources(&res, &n), -ENOENT);
	CHECK(strstr(hm_errormsg(), "HMMAP_STORES"));
	/* So is one that is not a regular file: a directory lists nothing, says nothing. */
	setenv("HMMAP_STORES", tu_tmpdir(), 1);
	EXPECT_RC(hm_resources(&res, &n), -EINVAL);
	CHECKF(res == NULL && n == 0 && strstr(hm_errormsg(), tu_tmpdir()) &&
		       strstr(hm_errormsg(), "not a regular file"),
	       "%s", hm_errormsg());
	unsetenv("HMMAP_STORES");
	CHECK(hm_resources(&res, &n) == 0);
	hm_resources_free(res, n);
}

/* The tool shows them, in the table and in JSON, and fails clearly on a bad file. */
static void test_ls_cli(void)
{
	char cmd[1024], out[8192];
	const char *b = getenv("HMMAP_BUILD") ? getenv("HMMAP_BUILD") : "build";
	FILE *p;
	size_t len;
	int st;

	snprintf(cmd, sizeof cmd, "%.200s/hmmap", b);
	if (access(cmd, X_OK))
		SKIP("%.300s is not built", cmd);
	CHECK(write_stores("fast numa:0,size=1M read_latency_ns=95\n") == 0);
	snprintf(cmd, sizeof cmd, "HMMAP_STORES=%.250s %.200s/hmmap ls --json 2>&1", stores, b);
	p = popen(cmd, "r");
	CHECK(p);
	len = fread(out, 1, sizeof out - 1, p);
	out[len] = 0;
	st = pclose(p);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%.300s", out);
	CHECKF(strstr(out, "\"kind\": \"store\", \"name\": \"fast\", \"device\": "
			   "\"numa:0,size=1M\", \"size_bytes\": 1048576"),
	       "%.300s", out);
	CHECK(strstr(out, "\"read_latency_ns\": 95"));
	snprintf(cmd, sizeof cmd, "HMMAP_STORES=%.250s %.200s/hmmap ls 2>&1", stores, b);
	p = popen(cmd, "r");
	len = fread(out, 1, sizeof out - 1, p);
	out[len] = 0;
	st = pclose(p);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECKF(strstr(out, "store") && strstr(out, "fast") && strstr(out, "numa:0,size=1M"), "%.300s",
	       out);
	/* A password in a listed URI is never shown (the server need not answer). */
	CHECK(write_stores("remote redis://ann:Ls-PW-31@127.0.0.1:1/ns\n") == 0);
	for (int json = 0; json < 2; json++) {
		snprintf(cmd, sizeof cmd, "HMMAP_STORES=%.250s %.200s/hmmap ls%s 2>&1", stores, b,
			 json ? " --json" : "");
		CHECKF(tu_run(cmd, out, sizeof out) == 0, "%.300s", out);
		CHECKF(strstr(out, "redis://ann:***@127.0.0.1:1/ns") && !strstr(out, "Ls-PW-31"),
		       "%.300s", out);
	}
	/*
	 * Nor a password with an unencoded '/', '>' or '?', which parsers take
	 * for a path, a chain or options: neither in the listing nor in the
	 * error of opening it.
	 */
	CHECK(write_stores("r1 redis://ann:Ls/PW-32@127.0.0.1:1/ns\n"
			   "r2 redis://ann:Ls>PW-33@127.0.0.1:1/ns\n"
			   "r3 redis://ann:Ls?PW-34@127.0.0.1:1\n") == 0);
	snprintf(cmd, sizeof cmd, "HMMAP_STORES=%.250s %.200s/hmmap ls --json 2>&1", stores, b);
	tu_run(cmd, out, sizeof out);
	CHECKF(!strstr(out, "PW-32") && !strstr(out, "PW-33") && !strstr(out, "PW-34") &&
		       !strstr(out, "Ls/") && !strstr(out, "Ls>") && !strstr(out, "Ls?"),
	       "%.300s", out);
	{
		struct hm_store *s = NULL;
		CHECK(hm_store_open(&s, "redis://ann:Ls/PW-32@127.0.0.1:1/ns", 0) < 0);
		CHECKF(!strstr(hm_errormsg(), "PW-32") && !strstr(hm_errormsg(), "Ls"), "%s",
		       hm_errormsg());
		CHECK(hm_store_open(&s, "tiers:dram:1M > redis://:Ls-PW-35@127.0.0.1:1?size=1K",
				    0) < 0);
		CHECKF(!strstr(hm_errormsg(), "PW-35"), "%s", hm_errormsg());
	}
	/* A directory named as the stores file is an error, not an empty list. */
	snprintf(cmd, sizeof cmd, "HMMAP_STORES=%.250s %.200s/hmmap ls 2>&1", tu_tmpdir(), b);
	st = tu_run(cmd, out, sizeof out);
	CHECKF(st == 1 && strstr(out, "not a regular file"), "exit %d: %.300s", st, out);
	snprintf(cmd, sizeof cmd, "HMMAP_STORES=%.250s %.200s/hmmap ls 2>&1", stores, b);
	CHECK(write_stores("fast\n") == 0);
	p = popen(cmd, "r");
	len = fread(out, 1, sizeof out - 1, p);
	out[len] = 0;
	st = pclose(p);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(out, "has no URI"), "%.300s", out);
}

/* hmmap probe --save records a store with its figures where hmmap ls finds it. */
static void test_probe_save(void)
{
	char cmd[1024], out[8192];
	const char *b = getenv("HMMAP_BUILD") ? getenv("HMMAP_BUILD") : "build";
	FILE *f;

	snprintf(cmd, sizeof cmd, "%.200s/hmmap", b);
	if (access(cmd, X_OK))
		SKIP("%.300s is not built", cmd);
	CHECK(write_stores("# kept\nold mem:1M read_latency_ns=5\nslow mem:2M\n") == 0);
	snprintf(cmd, sizeof cmd,
		 "HMMAP_STORES=%.250s %.200s/hmmap probe mem:16M,read_ns=50000 --seconds 0.3 "
		 "--save slow 2>&1", stores, b);
	CHECKF(tu_run(cmd, out, sizeof out) == 0 && strstr(out, "saved as store 'slow'"), "%.300s", out);
	/* Saving again replaces the line: a name given twice would make ls fail. */
	CHECKF(tu_run(cmd, out, sizeof out) == 0, "%.300s", out);
	snprintf(cmd, sizeof cmd, "HMMAP_STORES=%.250s %.200s/hmmap ls --json 2>&1", stores, b);
	CHECKF(tu_run(cmd, out, sizeof out) == 0, "%.300s", out);
	const char *row = strstr(out, "\"name\": \"slow\"");
	CHECKF(row && strstr(row, "\"device\": \"mem:16M,read_ns=50000\""), "%.300s", out);
	/* The delay the store was given, as probe measured it (within 10%; never 0 or null). */
	const char *lat = row ? strstr(row, "\"read_latency_ns\": ") : NULL;
	CHECKF(lat && strtoull(lat + 19, NULL, 10) >= 45000, "%.300s", row ? row : out);
	CHECK(strstr(out, "\"name\": \"old\"") && strstr(out, "\"read_latency_ns\": 5"));
	f = fopen(stores, "r");
	CHECK(f);
	if (f) {
		size_t n = fread(out, 1, sizeof out - 1, f);
		out[n] = 0;
		fclose(f);
		CHECKF(!strncmp(out, "# kept\nold mem:1M read_latency_ns=5\nslow mem:16M", 48),
		       "%.300s", out);
	}
	/* Bad names and nowhere to save: clear errors, nothing measured in vain. */
	snprintf(cmd, sizeof cmd, "HMMAP_STORES=%.250s %.200s/hmmap probe mem:1M --save 'a b' 2>&1",
		 stores, b);
	CHECKF(tu_run(cmd, out, sizeof out) == 2 && strstr(out, "not a store name"), "%.300s", out);
	snprintf(cmd, sizeof cmd, "HMMAP_STORES= %.200s/hmmap probe mem:1M --seconds 0.1 --save x 2>&1",
		 b);
	CHECKF(tu_run(cmd, out, sizeof out) == 1 && strstr(out, "no stores file"), "%.300s", out);
}

int main(void)
{
	unsigned char *ref;

	if (!tu_tmpdir())
		return 1;
	tu_path(stores, sizeof stores, "stores");
	tu_path(data, sizeof data, "data");
	ref = tu_make_file(data, 8192, 1);
	if (!ref)
		return 1;
	free(ref);
	setenv("HMMAP_SYSFS_ROOT", FIX "two-socket-cxl", 1);
	RUN(test_store_rows);
	RUN(test_bad_stores_files);
	RUN(test_ls_cli);
	RUN(test_probe_save);
	tu_cleanup();
	return test_done();
}
