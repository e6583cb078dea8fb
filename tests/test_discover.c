/* SPDX-License-Identifier: MIT */
/*
 * Discovery (hm_resources, `hmmap ls`) against the sysfs trees kept in
 * tests/fixtures/sysfs/ - machines this one is not - and against this
 * machine's own /sys. Run from the repository root, as tests/run.sh does.
 *
 *   two-socket-cxl  two sockets (nodes 0, 1) and two CXL memory-only nodes
 *                   (2, 3) with HMAT figures, memory tiers, a 4x4 SLIT
 *   devdax          a soft-reserved device-DAX (dax0.0) for node 2
 *   pmem            an fsdax namespace (namespace0.0) and its pmem0
 *   broken          malformed, missing and unreadable files
 *
 * Also: the file parsers on random bytes, random files in a scratch tree,
 * and the errors of a root that is not sysfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hmmap.h>

#include "core/discover.h"
#include "harness.h"

#define FIX "tests/fixtures/sysfs/"
#define GiB (1ull << 30)
#define KiB 1024ull
#define U HM_RES_UNKNOWN

static struct hm_resource *res;
static size_t nres;

static void drop(void)
{
	hm_resources_free(res, nres);
	res = NULL;
	nres = 0;
}

/* Lists the fixture `name` into res/nres; returns hm_resources' result. */
static int list_fixture(const char *name)
{
	char root[PATH_MAX];

	drop();
	snprintf(root, sizeof root, FIX "%s", name);
	setenv("HMMAP_SYSFS_ROOT", root, 1);
	return hm_resources(&res, &nres);
}

static const struct hm_resource *find(const char *name)
{
	for (size_t i = 0; i < nres; i++)
		if (!strcmp(res[i].name, name))
			return &res[i];
	return NULL;
}

static void fixture_two_socket_cxl(void)
{
	static const uint32_t slit[4][4] = {
		{ 10, 21, 14, 24 }, { 21, 10, 24, 14 }, { 14, 24, 10, 26 }, { 24, 14, 26, 10 }
	};
	static const uint64_t lat[4][2] = { { 90, 90 }, { 92, 92 }, { 250, 270 }, { 260, 280 } };
	static const uint64_t bw[4][2] = {
		{ 204800, 204800 }, { 204800, 204800 }, { 32768, 28672 }, { 30720, 26624 }
	};
	static const uint64_t free_kb[4] = { 60817408, 62914560, 134086656, 130023424 };
	const struct hm_resource *r;
	int rc = list_fixture("two-socket-cxl");

	CHECKF(rc == 0, "%d %s", rc, hm_errormsg());
	/* Four nodes and the NVMe drive; the two empty loop devices are left out. */
	CHECKF(nres == 5, "%zu rows", nres);
	for (int i = 0; i < 4; i++) {
		char name[16];

		snprintf(name, sizeof name, "node%d", i);
		r = &res[i];
		CHECKF(!strcmp(r->name, name), "row %d is %s", i, r->name);
		CHECK(r->kind == (i < 2 ? HM_RES_NODE : HM_RES_MEM_NODE));
		CHECK(r->node == i);
		CHECK(r->size == (i < 2 ? 64 : 128) * GiB);
		CHECK(r->free == free_kb[i] * KiB);
		CHECK(r->device[0] == 0);
		CHECK(r->byte_addressable == HM_YES && r->coherent == HM_YES);
		CHECK(r->persistent == (i < 2 ? HM_NO : HM_UNKNOWN));
		CHECKF(r->read_latency_ns == lat[i][0] && r->write_latency_ns == lat[i][1],
		       "node%d %llu/%llu", i, (unsigned long long)r->read_latency_ns,
		       (unsigned long long)r->write_latency_ns);
		CHECK(r->read_bandwidth_mbps == bw[i][0] && r->write_bandwidth_mbps == bw[i][1]);
		CHECKF(r->tier == (i < 2 ? 4 : 22), "node%d tier %d", i, r->tier);
		CHECKF(r->ndistances == 4 && r->distances, "node%d %zu distances", i,
		       r->ndistances);
		for (int j = 0; j < 4; j++)
			CHECKF(r->distances[j] == slit[i][j], "distance %d->%d is %u", i, j,
			       r->distances[j]);
	}
	r = &res[4];
	CHECK(r->kind == HM_RES_BLOCK && !strcmp(r->name, "nvme0n1"));
	CHECK(!strcmp(r->device, "/dev/nvme0n1"));
	CHECK(r->size == 1953525168ull * 512);
	CHECK(r->free == U && r->node == -1 && r->tier == -1 && !r->distances);
	CHECK(r->rotational == HM_NO && r->removable == HM_NO);
	CHECK(r->byte_addressable == HM_NO && r->persistent == HM_YES && r->coherent == HM_NO);
	CHECK(r->read_latency_ns == U && r->read_bandwidth_mbps == U);
	CHECK(!find("loop0") && !find("loop1"));
	drop();
}

static void fixture_devdax(void)
{
	const struct hm_resource *r;
	int rc = list_fixture("devdax");

	CHECKF(rc == 0, "%d %s", rc, hm_errormsg());
	CHECKF(nres == 2, "%zu rows", nres);
	CHECK(res[0].kind == HM_RES_NODE && !strcmp(res[0].name, "node0"));
	CHECK(res[0].size == 16 * GiB && res[0].tier == 4);
	r = &res[1];
	CHECK(r->kind == HM_RES_DAX && !strcmp(r->name, "dax0.0"));
	CHECK(!strcmp(r->device, "/dev/dax0.0"));
	CHECK(r->size == 16 * GiB);
	CHECK(r->free == U);
	CHECKF(r->node == 2, "node %d (target_node 2, numa_node 0)", r->node);
	CHECK(r->byte_addressable == HM_YES && r->coherent == HM_YES);
	/* Soft-reserved memory (hmem) may be volatile or not: sysfs does not say. */
	CHECK(r->persistent == HM_UNKNOWN);
	/* Node 2 is not online: no HMAT figures, no tier. */
	CHECK(r->read_latency_ns == U && r->write_bandwidth_mbps == U && r->tier == -1);
	CHECK(!r->distances && r->ndistances == 0);
	drop();
}

static void fixture_pmem(void)
{
	const struct hm_resource *r;
	int rc = list_fixture("pmem");

	CHECKF(rc == 0, "%d %s", rc, hm_errormsg());
	CHECKF(nres == 3, "%zu rows", nres);
	CHECK(res[0].kind == HM_RES_NODE && res[0].size == 8 * GiB && res[0].tier == -1);
	r = &res[1];
	CHECK(r->kind == HM_RES_PMEM && !strcmp(r->name, "namespace0.0"));
	CHECK(!strcmp(r->mode, "fsdax"));
	CHECKF(!strcmp(r->device, "/dev/pmem0"), "device '%s' (via holder pfn0.1)", r->device);
	CHECK(r->size == 8 * GiB && r->free == U);
	CHECK(r->node == 0);
	CHECK(r->byte_addressable == HM_YES && r->persistent == HM_YES && r->coherent == HM_YES);
	r = &res[2];
	CHECK(r->kind == HM_RES_BLOCK && !strcmp(r->name, "pmem0"));
	CHECK(!strcmp(r->device, "/dev/pmem0"));
	CHECK(r->size == 16384000ull * 512);
	CHECK(r->byte_addressable == HM_YES); /* queue/dax */
	CHECK(r->persistent == HM_YES && r->rotational == HM_NO && r->removable == HM_NO);
	CHECKF(r->node == 0, "node %d (device/numa_node)", r->node);
	drop();
}

static void fixture_broken_degrades(void)
{
	const struct hm_resource *r;
	int rc = list_fixture("broken");

	CHECKF(rc == 0, "%d %s", rc, hm_errormsg());
	/* 3 nodes (node99999, nodeX, node01 are not node names), 2 dax, 2 pmem, 3 block. */
	CHECKF(nres == 10, "%zu rows", nres);
	for (size_t i = 0; i < nres; i++) {
		CHECK(res[i].kind >= HM_RES_NODE && res[i].kind <= HM_RES_STORE);
		CHECK(res[i].byte_addressable >= HM_UNKNOWN && res[i].byte_addressable <= HM_YES);
		CHECK(res[i].persistent >= HM_UNKNOWN && res[i].persistent <= HM_YES);
		CHECK(res[i].coherent >= HM_UNKNOWN && res[i].coherent <= HM_YES);
	}

	CHECK((r = find("node0")) && r->kind == HM_RES_NODE);
	CHECK(r->size == U && r->free == U); /* "abc kB", and a MemFree without its unit */
	CHECK(r->tier == 4);                  /* "0,x": the range before the fault holds */
	CHECKF(r->ndistances == 1 && r->distances[0] == 10, "%zu", r->ndistances);

	CHECK((r = find("node1")) && r->kind == HM_RES_MEM_NODE); /* no cpulist; has_cpu=0 */
	CHECK(r->size == U && r->free == U);                       /* meminfo is a directory */
	CHECK(r->read_latency_ns == U && r->write_latency_ns == U);
	CHECK(r->read_bandwidth_mbps == U && r->write_bandwidth_mbps == U);
	CHECK(r->tier == -1);
	CHECK(r->ndistances == 2 && r->distances[0] == 21 && r->distances[1] == 10);

	CHECK((r = find("node2")) && r->kind == HM_RES_MEM_NODE); /* bad cpulist; has_cpu */
	CHECK(r->size == U && !r->distances && r->read_latency_ns == U);

	CHECK((r = find("dax0.0")) && r->size == U && r->node == -1);
	CHECK((r = find("dax1.0")) && r->size == U && r->node == -1); /* dangling link */

	CHECK((r = find("namespace0.0")) && r->size == U && r->mode[0] == 0);
	CHECK(r->device[0] == 0); /* holder "../../etc" is refused */
	CHECK(r->byte_addressable == HM_UNKNOWN && r->persistent == HM_YES);
	CHECK((r = find("namespace1.0")) && r->size == 1048576 && !strcmp(r->mode, "sector"));
	CHECK(r->byte_addressable == HM_NO && r->device[0] == 0 && r->node == -1);

	CHECK((r = find("sda")) && r->size == U && r->removable == HM_UNKNOWN);
	CHECK((r = find("sdb")) && r->size == U); /* sectors * 512 overflows */
	CHECK((r = find("vdb")) && r->size == GiB && r->rotational == HM_UNKNOWN);
	CHECK(r->removable == HM_NO);
	CHECK(!find("loop0") && !find("region0"));
	drop();
}

static void bad_roots_are_clear_errors(void)
{
	char dir[] = "/tmp/hmmap-discover-XXXXXX";
	struct hm_resource *r = (void *)1;
	size_t n = 7;
	int rc;

	setenv("HMMAP_SYSFS_ROOT", FIX "no-such-machine", 1);
	rc = hm_resources(&r, &n);
	CHECKF(rc == -ENOENT, "%d", rc);
	CHECK(r == NULL && n == 0);
	CHECKF(strstr(hm_errormsg(), "no-such-machine") && strstr(hm_errormsg(), "HMMAP_SYSFS_ROOT"),
	       "'%s'", hm_errormsg());

	setenv("HMMAP_SYSFS_ROOT", "tests/test_discover.c", 1);
	CHECK(hm_resources(&r, &n) == -ENOTDIR);

	CHECK(mkdtemp(dir));
	setenv("HMMAP_SYSFS_ROOT", dir, 1);
	rc = hm_resources(&r, &n);
	rmdir(dir);
	CHECKF(rc == -ENOENT, "%d", rc);
	CHECKF(strstr(hm_errormsg(), "does not look like sysfs"), "'%s'", hm_errormsg());

	CHECK(hm_resources(NULL, &n) == -EINVAL);
	CHECK(hm_resources(&r, NULL) == -EINVAL);
	hm_resources_free(NULL, 0);
}

/* The root is read at every call: switching it switches the machine. */
static void root_is_read_at_each_call(void)
{
	CHECK(list_fixture("pmem") == 0 && nres == 3);
	CHECK(list_fixture("two-socket-cxl") == 0 && nres == 5);
	setenv("HMMAP_SYSFS_ROOT", FIX "two-socket-cxl///", 1);
	drop();
	CHECK(hm_resources(&res, &nres) == 0 && nres == 5);
	drop();
}

static void this_machine(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	const struct hm_resource *r;
	struct stat st;
	int rc;

	unsetenv("HMMAP_SYSFS_ROOT");
	if (stat("/sys/devices/system/node/node0", &st))
		SKIP("no /sys/devices/system/node/node0 (kernel without NUMA, or no sysfs)");
	drop();
	rc = hm_resources(&res, &nres);
	CHECKF(rc == 0, "%d %s", rc, hm_errormsg());
	CHECK((r = find("node0")) && r == &res[0]);
	CHECK(r->kind == HM_RES_NODE); /* this machine's CPUs live on node 0 */
	CHECKF(r->size != U && r->size >= (64ull << 20) &&
		       r->size <= (uint64_t)pages * (uint64_t)psz,
	       "node0 %llu bytes, RAM %llu", (unsigned long long)r->size,
	       (unsigned long long)pages * (unsigned long long)psz);
	CHECK(r->free != U && r->free <= r->size);
	CHECK(r->ndistances >= 1 && r->distances[0] == 10);
	for (size_t i = 0; i < nres; i++)
		CHECKF(res[i].kind != HM_RES_PMEM, "%s", res[i].name); /* no pmem here */
	drop();
}

static int count_range(void *arg, uint32_t lo, uint32_t hi)
{
	*(uint64_t *)arg += (uint64_t)hi - lo + 1;
	return 0;
}

static int stop_at_two(void *arg, uint32_t lo, uint32_t hi)
{
	return ++*(int *)arg == 2 ? 42 : 0;
}

#define S(x) x, sizeof(x) - 1

static void parsers(void)
{
	uint64_t v, t, f, cpus;
	int64_t s;
	uint32_t row[4];
	size_t n;
	int calls = 0;

	CHECK(hm__sysfs_parse_u64(S("4096\n"), &v) == 0 && v == 4096);
	CHECK(hm__sysfs_parse_u64(S(" 18446744073709551615 "), &v) == 0 && v == UINT64_MAX);
	CHECK(hm__sysfs_parse_u64(S("18446744073709551616"), &v) == -ERANGE);
	CHECK(hm__sysfs_parse_u64(S(""), &v) == -EINVAL);
	CHECK(hm__sysfs_parse_u64(S("12 3"), &v) == -EINVAL);
	CHECK(hm__sysfs_parse_u64(S("0x10"), &v) == -EINVAL);
	CHECK(hm__sysfs_parse_u64(S("-1"), &v) == -EINVAL);
	CHECK(hm__sysfs_parse_u64("12345", 2, &v) == 0 && v == 12); /* reads only len bytes */
	CHECK(hm__sysfs_parse_s64(S("-1\n"), &s) == 0 && s == -1);
	CHECK(hm__sysfs_parse_s64(S("-9223372036854775808"), &s) == 0 && s == INT64_MIN);
	CHECK(hm__sysfs_parse_s64(S("9223372036854775808"), &s) == -ERANGE);
	CHECK(hm__sysfs_parse_s64(S("-"), &s) == -EINVAL);

	CHECK(hm__sysfs_parse_meminfo(S("Node 3 MemTotal:  4 kB\nNode 3 MemFree: 2 kB\n"), &t, &f) ==
	      0);
	CHECK(t == 4096 && f == 2048);
	CHECK(hm__sysfs_parse_meminfo(S("Node 3 MemTotal:  4 kB\n"), &t, &f) == -EINVAL);
	CHECK(t == 4096 && f == U);
	CHECK(hm__sysfs_parse_meminfo(S("Node 0 XMemTotal: 4 kB\nNode 0 MemFree: 8 MB\n"), &t, &f) ==
	      -EINVAL);
	CHECK(t == U && f == U);
	CHECK(hm__sysfs_parse_meminfo(S("MemTotal: 18014398509481984 kB\n"), &t, &f) == -EINVAL);
	CHECK(t == U); /* overflows in bytes */

	cpus = 0;
	CHECK(hm__sysfs_parse_list(S("0-3,8,10-11\n"), count_range, &cpus) == 0 && cpus == 7);
	cpus = 0;
	CHECK(hm__sysfs_parse_list(S("\n"), count_range, &cpus) == 0 && cpus == 0);
	CHECK(hm__sysfs_parse_list(S("3-1"), count_range, &cpus) == -EINVAL);
	CHECK(hm__sysfs_parse_list(S("1,"), count_range, &cpus) == -EINVAL);
	CHECK(hm__sysfs_parse_list(S("0-4294967296"), count_range, &cpus) == -EINVAL);
	CHECK(hm__sysfs_parse_list(S("0-7:2/4"), count_range, &cpus) == -EINVAL);
	CHECK(hm__sysfs_parse_list(S("1,2,3"), stop_at_two, &calls) == 42 && calls == 2);

	CHECK(hm__sysfs_parse_row(S("10 21 14\n"), row, 4, &n) == 0 && n == 3 && row[2] == 14);
	CHECK(hm__sysfs_parse_row(S("10 2x 14"), row, 4, &n) == -EINVAL && n == 1);
	CHECK(hm__sysfs_parse_row(S("1 2 3 4 5"), row, 4, &n) == -E2BIG && n == 4);
	CHECK(hm__sysfs_parse_row(S(""), row, 4, &n) == 0 && n == 0);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Bytes that look like sysfs often enough to reach deep into the parsers. */
static size_t random_text(char *buf, size_t cap)
{
	static const char alphabet[] = "0123456789 ,-\n\tkBx:MemTotalFreNode\xff";
	size_t n = next() % cap;

	for (size_t i = 0; i < n; i++)
		buf[i] = (next() & 7) ? alphabet[next() % (sizeof alphabet - 1)] : (char)next();
	return n;
}

static int ignore_range(void *arg, uint32_t lo, uint32_t hi)
{
	if (lo > hi)
		abort();
	return 0;
}

/* Every parser on random input, each in a buffer of exactly its length. */
static void parsers_on_random_bytes(void)
{
	char tmp[96];

	for (int i = 0; i < 20000; i++) {
		size_t len = random_text(tmp, sizeof tmp), n;
		char *buf = malloc(len ? len : 1);
		uint64_t v, t, f;
		uint32_t row[8];
		int64_t s;

		CHECK(buf);
		memcpy(buf, tmp, len);
		hm__sysfs_parse_u64(buf, len, &v);
		hm__sysfs_parse_s64(buf, len, &s);
		hm__sysfs_parse_meminfo(buf, len, &t, &f);
		hm__sysfs_parse_list(buf, len, ignore_range, NULL);
		hm__sysfs_parse_row(buf, len, row, 8, &n);
		free(buf);
		CHECK(n <= 8);
	}
}

static int put(const char *root, const char *rel, const char *data, size_t len)
{
	char path[PATH_MAX], *slash;
	int fd;

	snprintf(path, sizeof path, "%s/%s", root, rel);
	for (slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = 0;
		mkdir(path, 0755);
		*slash = '/';
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	if (len && write(fd, data, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/*
 * A scratch tree whose every parsed file holds random bytes (and one file
 * larger than any sysfs attribute, one FIFO where a file belongs), listed
 * again and again: no crash, no error, every row well-formed.
 */
static void random_files_in_a_tree(void)
{
	static const char *const files[] = {
		"devices/system/node/online",
		"devices/system/node/has_cpu",
		"devices/system/node/node0/cpulist",
		"devices/system/node/node0/meminfo",
		"devices/system/node/node0/distance",
		"devices/system/node/node0/access0/initiators/read_latency",
		"devices/system/node/node0/access0/initiators/write_bandwidth",
		"devices/system/node/node1/meminfo",
		"devices/system/node/node1/distance",
		"devices/virtual/memory_tiering/memory_tier4/nodelist",
		"bus/dax/devices/dax0.0/size",
		"bus/dax/devices/dax0.0/target_node",
		"bus/nd/devices/namespace0.0/mode",
		"bus/nd/devices/namespace0.0/size",
		"bus/nd/devices/namespace0.0/holder",
		"block/sda/size",
		"block/sda/queue/rotational",
	};
	char root[] = "/tmp/hmmap-discover-XXXXXX", path[PATH_MAX], data[200];
	char *big = malloc(256 << 10);
	int rc = 0;

	CHECK(big);
	memset(big, '1', 256 << 10);
	CHECK(mkdtemp(root));
	setenv("HMMAP_SYSFS_ROOT", root, 1);
	for (int round = 0; round < 200 && !rc; round++) {
		for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
			size_t len = random_text(data, sizeof data);

			CHECK(put(root, files[i], data, len) == 0);
		}
		if (round == 0) {
			CHECK(put(root, "devices/system/node/node1/cpulist", big, 256 << 10) == 0);
			snprintf(path, sizeof path, "%s/block/sda/removable", root);
			CHECK(mkfifo(path, 0644) == 0); /* opening it must not block */
		}
		drop();
		rc = hm_resources(&res, &nres);
		for (size_t i = 0; !rc && i < nres; i++) {
			CHECK(res[i].kind >= HM_RES_NODE && res[i].kind <= HM_RES_STORE);
			CHECK(res[i].ndistances == 0 || res[i].distances);
			CHECK(memchr(res[i].name, 0, sizeof res[i].name));
		}
	}
	drop();
	free(big);
	snprintf(path, sizeof path, "rm -rf '%s'", root);
	CHECK(system(path) == 0);
	CHECKF(rc == 0, "%d %s", rc, hm_errormsg());
}

static void kind_names(void)
{
	CHECK(HM_RES_NODE == 1 && HM_UNKNOWN == 1);
	CHECK(!strcmp(hm_resource_kind_name(HM_RES_NODE), "node"));
	CHECK(!strcmp(hm_resource_kind_name(HM_RES_MEM_NODE), "mem-node"));
	CHECK(!strcmp(hm_resource_kind_name(HM_RES_DAX), "dax"));
	CHECK(!strcmp(hm_resource_kind_name(HM_RES_PMEM), "pmem"));
	CHECK(!strcmp(hm_resource_kind_name(HM_RES_BLOCK), "block"));
	CHECK(!strcmp(hm_resource_kind_name(0), "?"));
}

/* Runs the tool with HMMAP_SYSFS_ROOT=root; its stdout into out. */
static int run_tool(const char *tool, const char *root, const char *args, char *out, size_t cap)
{
	char cmd[PATH_MAX * 2];
	size_t n = 0;
	FILE *p;
	int st;

	snprintf(cmd, sizeof cmd, "HMMAP_SYSFS_ROOT='%s' '%s' ls %s 2>/dev/null", root, tool, args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (n + 1 < cap) {
		size_t r = fread(out + n, 1, cap - 1 - n, p);

		if (!r)
			break;
		n += r;
	}
	out[n] = 0;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The line of the JSON output that holds "name": "NAME". */
static const char *json_row(const char *out, const char *name, char *line, size_t cap)
{
	char key[64];
	const char *p, *b, *e;

	snprintf(key, sizeof key, "\"name\": \"%s\"", name);
	p = strstr(out, key);
	if (!p)
		return NULL;
	for (b = p; b > out && b[-1] != '\n'; b--)
		;
	e = strchr(p, '\n');
	if (!e)
		e = p + strlen(p);
	snprintf(line, cap, "%.*s", (int)(e - b), b);
	return line;
}

static void cli_json(void)
{
	static const char *const fields[] = {
		"kind", "name", "device", "size_bytes", "free_bytes", "node",
		"byte_addressable", "persistent", "coherent", "read_latency_ns",
		"write_latency_ns", "read_bandwidth_mbps", "write_bandwidth_mbps", "tier",
		"distances", "size", "free", "latency", "bandwidth",
	};
	static const char *const node2[] = {
		"\"kind\": \"mem-node\"", "\"device\": null", "\"size_bytes\": 137438953472,",
		"\"free_bytes\": 137304735744,", "\"node\": 2,", "\"persistent\": null",
		"\"byte_addressable\": true", "\"coherent\": true", "\"read_latency_ns\": 250,",
		"\"write_latency_ns\": 270,", "\"read_bandwidth_mbps\": 32768,",
		"\"write_bandwidth_mbps\": 28672,", "\"tier\": 22,",
		"\"distances\": [14, 24, 10, 26]", "\"size\": 137438953472,",
		"\"latency\": {\"read_ns\": 250, \"write_ns\": 270}",
		"\"bandwidth\": {\"read_mbps\": 32768, \"write_mbps\": 28672}",
	};
	static const char *const nvme[] = {
		"\"kind\": \"block\"", "\"device\": \"/dev/nvme0n1\"", "\"free_bytes\": null",
		"\"size_bytes\": 1000204886016,", "\"tier\": null", "\"distances\": null",
		"\"rotational\": false", "\"byte_addressable\": false", "\"latency\": null",
		"\"free\": null",
	};
	static const char *const ns[] = {
		"\"kind\": \"pmem\"", "\"mode\": \"fsdax\"", "\"device\": \"/dev/pmem0\"",
		"\"persistent\": true", "\"size_bytes\": 8589934592,", "\"node\": 0,",
	};
	const char *build = getenv("HMMAP_BUILD");
	char tool[PATH_MAX], line[2048], key[64];
	static char out[1 << 16];
	const char *p;
	int rc, objects = 0;

	snprintf(tool, sizeof tool, "./%s/hmmap", build && *build ? build : "build");
	if (access(tool, X_OK))
		SKIP("%.200s not built", tool);
	rc = run_tool(tool, FIX "two-socket-cxl", "--json", out, sizeof out);
	CHECKF(rc == 0, "exit %d", rc);
	CHECK(out[0] == '[' && strstr(out, "\n]\n"));
	for (p = out; (p = strstr(p, "\n  {")); p++)
		objects++;
	CHECKF(objects == 5, "%d objects", objects);
	/* Every object has every stable field, in order. */
	for (p = out; (p = strstr(p, "\n  {")); p++) {
		const char *q = p;

		for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
			snprintf(key, sizeof key, "\"%s\": ", fields[i]);
			q = strstr(q, key);
			CHECKF(q && !memchr(p + 1, '\n', (size_t)(q - p - 1)), "field %s",
			       fields[i]);
		}
	}
	CHECK(json_row(out, "node2", line, sizeof line));
	for (size_t i = 0; i < sizeof node2 / sizeof node2[0]; i++)
		CHECKF(strstr(line, node2[i]), "%s not in %.300s", node2[i], line);
	CHECK(json_row(out, "node0", line, sizeof line));
	CHECK(strstr(line, "\"kind\": \"node\"") && strstr(line, "\"persistent\": false"));
	CHECK(json_row(out, "nvme0n1", line, sizeof line));
	for (size_t i = 0; i < sizeof nvme / sizeof nvme[0]; i++)
		CHECKF(strstr(line, nvme[i]), "%s not in %.300s", nvme[i], line);

	rc = run_tool(tool, FIX "pmem", "--json", out, sizeof out);
	CHECK(rc == 0 && json_row(out, "namespace0.0", line, sizeof line));
	for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
		CHECKF(strstr(line, ns[i]), "%s not in %.300s", ns[i], line);

	/* The table has each node's distance row. */
	rc = run_tool(tool, FIX "two-socket-cxl", "", out, sizeof out);
	CHECKF(rc == 0 && strstr(out, "DISTANCES") && strstr(out, " 14,24,10,26\n"),
	       "exit %d: %.300s", rc, out);

	/* The table shows unknown as "-"; a bad root exits 1. */
	rc = run_tool(tool, FIX "broken", "", out, sizeof out);
	CHECKF(rc == 0 && strstr(out, "KIND") && strstr(out, "namespace0.0"), "exit %d", rc);
	CHECK(run_tool(tool, FIX "no-such-machine", "--json", out, sizeof out) == 1);
	CHECK(run_tool(tool, FIX "pmem", "--bogus", out, sizeof out) == 2);
}

int main(void)
{
	RUN(fixture_two_socket_cxl);
	RUN(fixture_devdax);
	RUN(fixture_pmem);
	RUN(fixture_broken_degrades);
	RUN(bad_roots_are_clear_errors);
	RUN(root_is_read_at_each_call);
	RUN(this_machine);
	RUN(parsers);
	RUN(parsers_on_random_bytes);
	RUN(random_files_in_a_tree);
	RUN(kind_names);
	RUN(cli_json);
	drop();
	return test_done();
}
