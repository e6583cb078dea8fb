/* SPDX-License-Identifier: MIT */
/*
 * Discovery: the machine's memory resources, read from sysfs (see
 * include/hmmap/discover.h and docs/discovery.md).
 *
 * The root is "/sys" or $HMMAP_SYSFS_ROOT, looked up at every call. Every
 * file is read with one bounded read into a buffer of BUF_CAP bytes, only if
 * it is a regular file (a FIFO or a device planted in a fixture cannot block
 * or flood us), and parsed by one of the hm__sysfs_parse_* functions, which
 * look at no byte past the length read. A file that cannot be read or
 * parsed leaves the fields it feeds unknown; nothing but an unusable root
 * fails the listing.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hmmap.h"
#include "core/discover.h"
#include "core/error.h"
#include "os/file.h"

/* Sysfs attributes are at most a page; 64 KiB covers every page size. */
#define BUF_CAP (64u << 10)
/* Node ids at or above this are not a real kernel's (MAX_NUMNODES <= 1024). */
#define MAX_NODE 4096
/* Bounds on what one listing may hold, against a hostile tree. */
#define MAX_ROWS 16384
#define MAX_NAMES 16384
#define NAME_CAP 256

/* ------------------------------------------------------------------------
 * Parsers.
 * ------------------------------------------------------------------------ */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void trim(const char **p, const char **end)
{
	while (*p < *end && is_space(**p))
		(*p)++;
	while (*end > *p && is_space((*end)[-1]))
		(*end)--;
}

/* Decimal digits from *p up to end into *v; at least one digit. */
static int digits(const char **p, const char *end, uint64_t *v)
{
	uint64_t x = 0;
	const char *s = *p;

	if (s == end || *s < '0' || *s > '9')
		return -EINVAL;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (x > (UINT64_MAX - d) / 10)
			return -ERANGE;
		x = x * 10 + d;
	}
	*p = s;
	*v = x;
	return 0;
}

int hm__sysfs_parse_u64(const char *buf, size_t len, uint64_t *v)
{
	const char *p = buf, *end = buf + len;
	uint64_t x;
	int rc;

	trim(&p, &end);
	rc = digits(&p, end, &x);
	if (rc)
		return rc;
	if (p != end)
		return -EINVAL;
	*v = x;
	return 0;
}

int hm__sysfs_parse_s64(const char *buf, size_t len, int64_t *v)
{
	const char *p = buf, *end = buf + len;
	bool neg = false;
	uint64_t x;
	int rc;

	trim(&p, &end);
	if (p < end && *p == '-') {
		neg = true;
		p++;
	}
	rc = digits(&p, end, &x);
	if (rc)
		return rc;
	if (p != end)
		return -EINVAL;
	if (x > (uint64_t)INT64_MAX + neg)
		return -ERANGE;
	*v = neg ? (int64_t)(0 - x) : (int64_t)x;
	return 0;
}

/* The value of "KEY: N kB" on one line [p, end), in bytes. */
static int meminfo_value(const char *p, const char *end, const char *key, uint64_t *v)
{
	size_t klen = strlen(key);
	const char *q;
	uint64_t x;

	/* Find the key as a whole word followed by ':'. */
	for (q = p; q + klen < end; q++) {
		if ((q == p || is_space(q[-1])) && !memcmp(q, key, klen) && q[klen] == ':')
			break;
	}
	if (q + klen >= end)
		return -ENOENT;
	q += klen + 1;
	while (q < end && is_space(*q))
		q++;
	if (digits(&q, end, &x))
		return -EINVAL;
	while (q < end && is_space(*q))
		q++;
	/* The kernel always prints kB; anything else is not its file. */
	if (end - q != 2 || q[0] != 'k' || q[1] != 'B')
		return -EINVAL;
	if (x > UINT64_MAX / 1024)
		return -ERANGE;
	*v = x * 1024;
	return 0;
}

int hm__sysfs_parse_meminfo(const char *buf, size_t len, uint64_t *total, uint64_t *free_bytes)
{
	const char *p = buf, *end = buf + len;

	*total = *free_bytes = HM_RES_UNKNOWN;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		uint64_t v;

		if (*total == HM_RES_UNKNOWN && !meminfo_value(p, le, "MemTotal", &v))
			*total = v;
		else if (*free_bytes == HM_RES_UNKNOWN && !meminfo_value(p, le, "MemFree", &v))
			*free_bytes = v;
		p = nl ? nl + 1 : end;
	}
	return *total != HM_RES_UNKNOWN && *free_bytes != HM_RES_UNKNOWN ? 0 : -EINVAL;
}

int hm__sysfs_parse_list(const char *buf, size_t len, hm__sysfs_range_fn fn, void *arg)
{
	const char *p = buf, *end = buf + len;

	trim(&p, &end);
	while (p < end) {
		uint64_t lo, hi;
		int rc;

		if (digits(&p, end, &lo) || lo > UINT32_MAX)
			return -EINVAL;
		hi = lo;
		if (p < end && *p == '-') {
			p++;
			if (digits(&p, end, &hi) || hi > UINT32_MAX || hi < lo)
				return -EINVAL;
		}
		/* Bitmap lists may carry a stride ("0-7:2/4"); we do not. */
		if (p < end && *p != ',')
			return -EINVAL;
		if (p < end && ++p == end)
			return -EINVAL; /* a trailing comma */
		rc = fn(arg, (uint32_t)lo, (uint32_t)hi);
		if (rc)
			return rc;
	}
	return 0;
}

int hm__sysfs_parse_row(const char *buf, size_t len, uint32_t *row, size_t cap, size_t *n)
{
	const char *p = buf, *end = buf + len;

	*n = 0;
	for (;;) {
		uint64_t x;

		while (p < end && is_space(*p))
			p++;
		if (p == end)
			return 0;
		if (*n == cap)
			return -E2BIG;
		if (digits(&p, end, &x) || x > UINT32_MAX || (p < end && !is_space(*p)))
			return -EINVAL;
		row[(*n)++] = (uint32_t)x;
	}
}

/* ------------------------------------------------------------------------
 * Reading the tree.
 * ------------------------------------------------------------------------ */

struct names {
	char (*v)[NAME_CAP];
	size_t n, cap;
};

struct scan {
	char root[PATH_MAX];
	char *buf; /* BUF_CAP bytes: the file last read, NUL-terminated */
	size_t len;
	struct hm_resource *res;
	size_t n, cap;
	int tier_of[MAX_NODE];         /* -1: in no tier (or unknown) */
	uint32_t columns[MAX_NODE];    /* node id of each distance column */
	size_t ncolumns;
	uint32_t row[MAX_NODE];        /* scratch for one distance row */
	signed char has_cpu[MAX_NODE]; /* from node/has_cpu: 1, 0; -1 unknown */
};

/* root + "/" + the formatted rest into out. */
static int __attribute__((format(printf, 4, 5)))
path_of(const struct scan *s, char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int n, m;

	n = snprintf(out, cap, "%s/", s->root);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	va_start(ap, fmt);
	m = vsnprintf(out + n, cap - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= cap - (size_t)n)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * Reads the attribute at root/fmt... into s->buf (s->len bytes, then a
 * NUL). Returns 0 or -errno; a file that is not regular is -EINVAL, one
 * larger than BUF_CAP - 1 bytes is -EFBIG.
 */
static int __attribute__((format(printf, 2, 3))) attr(struct scan *s, const char *fmt, ...)
{
	char path[PATH_MAX], rest[PATH_MAX];
	struct stat st;
	va_list ap;
	int fd, m, rc = 0;

	s->len = 0;
	s->buf[0] = 0;
	va_start(ap, fmt);
	m = vsnprintf(rest, sizeof rest, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= sizeof rest)
		return -ENAMETOOLONG;
	rc = path_of(s, path, sizeof path, "%s", rest);
	if (rc)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out_close;
	}
	while (s->len < BUF_CAP - 1) {
		ssize_t r = read(fd, s->buf + s->len, BUF_CAP - 1 - s->len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out_close;
		}
		if (r == 0)
			break;
		s->len += (size_t)r;
	}
	if (s->len == BUF_CAP - 1) {
		char c;

		if (read(fd, &c, 1) > 0)
			rc = -EFBIG;
	}
out_close:
	close(fd);
	if (rc)
		s->len = 0;
	s->buf[s->len] = 0;
	return rc;
}

/* A decimal attribute, or HM_RES_UNKNOWN. */
static uint64_t __attribute__((format(printf, 2, 3))) attr_u64(struct scan *s, const char *fmt, ...)
{
	char rest[PATH_MAX];
	va_list ap;
	uint64_t v;
	int m;

	va_start(ap, fmt);
	m = vsnprintf(rest, sizeof rest, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= sizeof rest || attr(s, "%s", rest) ||
	    hm__sysfs_parse_u64(s->buf, s->len, &v))
		return HM_RES_UNKNOWN;
	return v;
}

/* A node id attribute (numa_node, target_node): -1 when absent, negative or absurd. */
static int __attribute__((format(printf, 2, 3))) attr_node(struct scan *s, const char *fmt, ...)
{
	char rest[PATH_MAX];
	va_list ap;
	int64_t v;
	int m;

	va_start(ap, fmt);
	m = vsnprintf(rest, sizeof rest, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= sizeof rest || attr(s, "%s", rest) ||
	    hm__sysfs_parse_s64(s->buf, s->len, &v) || v < 0 || v >= MAX_NODE)
		return -1;
	return (int)v;
}

/* The 0/1 attribute block/NAME/FILE as a tristate. */
static enum hm_tristate block_bool(struct scan *s, const char *name, const char *file)
{
	uint64_t v = attr_u64(s, "block/%s/%s", name, file);

	return v == 0 ? HM_NO : v == 1 ? HM_YES : HM_UNKNOWN;
}

static int names_add(struct names *l, const char *name)
{
	if (strlen(name) >= NAME_CAP || l->n >= MAX_NAMES)
		return 0; /* not a name a kernel makes; leave it out */
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		void *v = realloc(l->v, cap * sizeof *l->v);

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	strcpy(l->v[l->n++], name);
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strverscmp(a, b);
}

/*
 * The entries of root/dir whose names `keep` accepts, sorted in natural
 * order ("node2" before "node10"). A directory that cannot be opened is
 * an empty list; only -ENOMEM is an error.
 */
static int list_dir(const struct scan *s, const char *dir, bool (*keep)(const char *),
		    struct names *out)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int rc = 0;

	out->n = 0;
	if (path_of(s, path, sizeof path, "%s", dir))
		return 0;
	d = opendir(path);
	if (!d)
		return 0;
	while (!rc && (e = readdir(d)))
		if (e->d_name[0] != '.' && keep(e->d_name))
			rc = names_add(out, e->d_name);
	closedir(d);
	if (!rc && out->n > 1)
		qsort(out->v, out->n, sizeof *out->v, cmp_name);
	return rc;
}

/*
 * The number N of a name "prefixN" (N decimal, below MAX_NODE, without
 * leading zeros), or -1 for any other name.
 */
static int numbered(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	const char *p = name + n;
	int v = 0;

	if (strncmp(name, prefix, n) || !*p || (*p == '0' && p[1]))
		return -1;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
		if (v >= MAX_NODE)
			return -1;
	}
	return v;
}

static bool is_node(const char *name)
{
	return numbered(name, "node") >= 0;
}

static bool is_tier(const char *name)
{
	return numbered(name, "memory_tier") >= 0;
}

static bool is_dax(const char *name)
{
	return !strncmp(name, "dax", 3) && name[3];
}

static bool is_namespace(const char *name)
{
	return !strncmp(name, "namespace", 9) && name[9];
}

static bool is_any(const char *name)
{
	(void)name;
	return true;
}

static bool is_dir_at(const struct scan *s, const char *rel)
{
	char path[PATH_MAX];
	struct stat st;

	return !path_of(s, path, sizeof path, "%s", rel) && !stat(path, &st) &&
	       S_ISDIR(st.st_mode);
}

static struct hm_resource *row_new(struct scan *s, enum hm_resource_kind kind, const char *name)
{
	struct hm_resource *r;

	if (s->n == MAX_ROWS)
		return NULL;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		void *v = realloc(s->res, cap * sizeof *s->res);

		if (!v)
			return NULL;
		s->res = v;
		s->cap = cap;
	}
	r = &s->res[s->n++];
	memset(r, 0, sizeof *r);
	r->kind = kind;
	snprintf(r->name, sizeof r->name, "%s", name);
	r->size = r->free = HM_RES_UNKNOWN;
	r->read_latency_ns = r->write_latency_ns = HM_RES_UNKNOWN;
	r->read_bandwidth_mbps = r->write_bandwidth_mbps = HM_RES_UNKNOWN;
	r->node = r->tier = -1;
	r->byte_addressable = r->persistent = r->coherent = HM_UNKNOWN;
	r->rotational = r->removable = HM_UNKNOWN;
	return r;
}

/* ------------------------------------------------------------------------
 * NUMA nodes and memory tiers.
 * ------------------------------------------------------------------------ */

struct tier_arg {
	struct scan *s;
	int tier;
};

static int set_tier(void *arg, uint32_t lo, uint32_t hi)
{
	struct tier_arg *t = arg;

	for (uint64_t i = lo; i <= hi && i < MAX_NODE; i++)
		if (t->s->tier_of[i] < 0)
			t->s->tier_of[i] = t->tier;
	return 0;
}

/*
 * memory_tierN/nodelist for every tier, into tier_of[]. Tiers are visited
 * fastest first, so a node that a malformed tree puts in two tiers gets
 * the faster.
 */
static int read_tiers(struct scan *s)
{
	struct names l = { 0 };
	int rc;

	for (size_t i = 0; i < MAX_NODE; i++)
		s->tier_of[i] = -1;
	rc = list_dir(s, "devices/virtual/memory_tiering", is_tier, &l);
	for (size_t i = 0; !rc && i < l.n; i++) {
		struct tier_arg t = { s, numbered(l.v[i], "memory_tier") };

		if (attr(s, "devices/virtual/memory_tiering/%s/nodelist", l.v[i]))
			continue;
		/* A malformed list keeps the ranges before the fault. */
		hm__sysfs_parse_list(s->buf, s->len, set_tier, &t);
	}
	free(l.v);
	return rc;
}

static int add_column(void *arg, uint32_t lo, uint32_t hi)
{
	struct scan *s = arg;

	for (uint64_t i = lo; i <= hi; i++) {
		if (i >= MAX_NODE || s->ncolumns == MAX_NODE)
			return -ERANGE;
		s->columns[s->ncolumns++] = (uint32_t)i;
	}
	return 0;
}

static int set_cpu(void *arg, uint32_t lo, uint32_t hi)
{
	struct scan *s = arg;

	for (uint64_t i = lo; i <= hi && i < MAX_NODE; i++)
		s->has_cpu[i] = 1;
	return 0;
}

static int count_cpus(void *arg, uint32_t lo, uint32_t hi)
{
	*(uint64_t *)arg += (uint64_t)hi - lo + 1;
	return 0;
}

/*
 * The node lists at the top of devices/system/node: `online` names the node
 * of each column of a distance row (the kernel prints one per online node,
 * in order); `has_cpu` decides memory-only when a node's cpulist is
 * unreadable. Without `online`, the columns are the node directories found.
 */
static void read_node_lists(struct scan *s, const struct names *nodes)
{
	size_t i;

	s->ncolumns = 0;
	if (attr(s, "devices/system/node/online") ||
	    hm__sysfs_parse_list(s->buf, s->len, add_column, s) || !s->ncolumns) {
		s->ncolumns = 0;
		for (i = 0; i < nodes->n; i++)
			s->columns[s->ncolumns++] = (uint32_t)numbered(nodes->v[i], "node");
	}
	memset(s->has_cpu, -1, sizeof s->has_cpu);
	if (!attr(s, "devices/system/node/has_cpu")) {
		memset(s->has_cpu, 0, sizeof s->has_cpu);
		if (hm__sysfs_parse_list(s->buf, s->len, set_cpu, s))
			memset(s->has_cpu, -1, sizeof s->has_cpu);
	}
}

/* HMAT figures of node `id` as seen from its nearest initiators; 0 means none. */
static void read_hmat(struct scan *s, int id, struct hm_resource *r)
{
	static const char *const files[4] = { "read_latency", "write_latency", "read_bandwidth",
					      "write_bandwidth" };
	uint64_t *fields[4] = { &r->read_latency_ns, &r->write_latency_ns,
				&r->read_bandwidth_mbps, &r->write_bandwidth_mbps };

	for (int i = 0; i < 4; i++) {
		uint64_t v = attr_u64(s, "devices/system/node/node%d/access0/initiators/%s", id,
				      files[i]);

		*fields[i] = v == 0 ? HM_RES_UNKNOWN : v;
	}
}

/* The node's distance row, mapped to node ids through the column list. */
static int read_distances(struct scan *s, int id, struct hm_resource *r)
{
	size_t n = 0, i, width = 0;

	if (attr(s, "devices/system/node/node%d/distance", id))
		return 0;
	/* A malformed row keeps its well-formed prefix (a truncated file). */
	hm__sysfs_parse_row(s->buf, s->len, s->row, MAX_NODE, &n);
	if (n > s->ncolumns)
		n = s->ncolumns;
	for (i = 0; i < n; i++)
		if (s->columns[i] + 1 > width)
			width = s->columns[i] + 1;
	if (!width)
		return 0;
	r->distances = calloc(width, sizeof *r->distances);
	if (!r->distances)
		return -ENOMEM;
	r->ndistances = width;
	for (i = 0; i < n; i++)
		r->distances[s->columns[i]] = s->row[i];
	return 0;
}

static int list_nodes(struct scan *s)
{
	struct names l = { 0 };
	int rc;

	rc = list_dir(s, "devices/system/node", is_node, &l);
	if (rc)
		goto out;
	read_node_lists(s, &l);
	for (size_t i = 0; i < l.n; i++) {
		int id = numbered(l.v[i], "node");
		enum hm_resource_kind kind = HM_RES_NODE;
		struct hm_resource *r;
		uint64_t cpus = 0;

		if (!attr(s, "devices/system/node/%s/cpulist", l.v[i]) &&
		    !hm__sysfs_parse_list(s->buf, s->len, count_cpus, &cpus))
			kind = cpus ? HM_RES_NODE : HM_RES_MEM_NODE;
		else if (s->has_cpu[id] == 0)
			kind = HM_RES_MEM_NODE;
		r = row_new(s, kind, l.v[i]);
		if (!r) {
			rc = s->n == MAX_ROWS ? 0 : -ENOMEM;
			goto out;
		}
		r->node = id;
		r->tier = s->tier_of[id];
		r->byte_addressable = HM_YES;
		r->coherent = HM_YES;
		/* A CPU-less node may be CXL DRAM or pmem onlined as RAM. */
		r->persistent = kind == HM_RES_NODE ? HM_NO : HM_UNKNOWN;
		if (!attr(s, "devices/system/node/%s/meminfo", l.v[i]))
			hm__sysfs_parse_meminfo(s->buf, s->len, &r->size, &r->free);
		read_hmat(s, id, r);
		rc = read_distances(s, id, r);
		if (rc)
			goto out;
	}
out:
	free(l.v);
	return rc;
}

/* ------------------------------------------------------------------------
 * Device-DAX, pmem namespaces, block devices.
 * ------------------------------------------------------------------------ */

/* The memory's node: target_node when known, else numa_node. */
static int target_node(struct scan *s, const char *dir, const char *name)
{
	int node = attr_node(s, "%s/%s/target_node", dir, name);

	return node >= 0 ? node : attr_node(s, "%s/%s/numa_node", dir, name);
}

/* Tier and HMAT figures of the node the device's memory would join. */
static void node_perf(struct scan *s, struct hm_resource *r)
{
	char rel[64];

	if (r->node < 0)
		return;
	r->tier = s->tier_of[r->node];
	snprintf(rel, sizeof rel, "devices/system/node/node%d", r->node);
	if (is_dir_at(s, rel))
		read_hmat(s, r->node, r);
}

/*
 * Whether the device at root/rel sits below an NVDIMM bus (its real path
 * passes through "ndbus"): such device-DAX is persistent memory. Unknown
 * when the path cannot be resolved or leads elsewhere (soft-reserved
 * memory, often CXL or HBM, may be either).
 */
static enum hm_tristate on_nvdimm(const struct scan *s, const char *rel)
{
	char path[PATH_MAX], real[PATH_MAX], rroot[PATH_MAX];
	size_t n;

	if (path_of(s, path, sizeof path, "%s", rel) || !realpath(path, real) ||
	    !realpath(s->root, rroot))
		return HM_UNKNOWN;
	n = strlen(rroot);
	if (strncmp(real, rroot, n))
		return HM_UNKNOWN;
	return strstr(real + n, "/ndbus") ? HM_YES : HM_UNKNOWN;
}

static int list_dax(struct scan *s)
{
	struct names l = { 0 };
	int rc;

	rc = list_dir(s, "bus/dax/devices", is_dax, &l);
	for (size_t i = 0; !rc && i < l.n; i++) {
		struct hm_resource *r = row_new(s, HM_RES_DAX, l.v[i]);
		char rel[PATH_MAX];

		if (!r) {
			rc = s->n == MAX_ROWS ? 0 : -ENOMEM;
			break;
		}
		snprintf(r->device, sizeof r->device, "/dev/%s", l.v[i]);
		r->size = attr_u64(s, "bus/dax/devices/%s/size", l.v[i]);
		r->node = target_node(s, "bus/dax/devices", l.v[i]);
		r->byte_addressable = HM_YES;
		r->coherent = HM_YES;
		snprintf(rel, sizeof rel, "bus/dax/devices/%s", l.v[i]);
		r->persistent = on_nvdimm(s, rel);
		node_perf(s, r);
	}
	free(l.v);
	return rc;
}

/* Names from sysfs that we put into paths: no separators, no dot-dot. */
static bool safe_name(const char *s, size_t len)
{
	if (!len || len >= NAME_CAP || (s[0] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '/' || !isgraph((unsigned char)s[i]))
			return false;
	return true;
}

/* The first entry of root/dir accepted by keep, into out; false if none. */
static bool first_entry(struct scan *s, const char *dir, bool (*keep)(const char *), char *out)
{
	struct names l = { 0 };
	bool found = false;

	if (!list_dir(s, dir, keep, &l) && l.n) {
		strcpy(out, l.v[0]);
		found = true;
	}
	free(l.v);
	return found;
}

/*
 * The device node a namespace is reached through: its own block device
 * (raw mode: namespaceX.Y/block/pmemX), or that of its holder - the pfn
 * (fsdax), btt (sector) or dax (devdax) device that claims it, named in
 * namespaceX.Y/holder - as holder/block/NAME or holder/daxX.Y.
 */
static void namespace_device(struct scan *s, const char *ns, struct hm_resource *r)
{
	char rel[PATH_MAX], name[NAME_CAP], holder[NAME_CAP];

	snprintf(rel, sizeof rel, "bus/nd/devices/%s/block", ns);
	if (first_entry(s, rel, is_any, name))
		goto found;
	if (attr(s, "bus/nd/devices/%s/holder", ns))
		return;
	{
		const char *p = s->buf, *end = s->buf + s->len;

		trim(&p, &end);
		if (!safe_name(p, (size_t)(end - p)))
			return;
		memcpy(holder, p, (size_t)(end - p));
		holder[end - p] = 0;
	}
	snprintf(rel, sizeof rel, "bus/nd/devices/%s/block", holder);
	if (first_entry(s, rel, is_any, name))
		goto found;
	snprintf(rel, sizeof rel, "bus/nd/devices/%s", holder);
	if (first_entry(s, rel, is_dax, name))
		goto found;
	return;
found:
	snprintf(r->device, sizeof r->device, "/dev/%s", name);
}

/*
 * The namespace's mode, named as ndctl names it. The kernel's `mode` file
 * says how the namespace is claimed: "memory" (by a pfn device: fsdax),
 * "dax" (devdax), "safe" (by a btt: sector) or "raw"; ndctl's own names are
 * accepted too. Anything else leaves the mode unknown ("").
 */
static void namespace_mode(struct scan *s, const char *ns, struct hm_resource *r)
{
	static const char *const names[][2] = {
		{ "memory", "fsdax" }, { "dax", "devdax" }, { "safe", "sector" }, { "raw", "raw" },
		{ "fsdax", "fsdax" },   { "devdax", "devdax" }, { "sector", "sector" },
	};
	const char *p = s->buf, *end;

	if (attr(s, "bus/nd/devices/%s/mode", ns))
		return;
	end = s->buf + s->len;
	trim(&p, &end);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if ((size_t)(end - p) == strlen(names[i][0]) &&
		    !memcmp(p, names[i][0], (size_t)(end - p))) {
			snprintf(r->mode, sizeof r->mode, "%s", names[i][1]);
			return;
		}
}

static int list_pmem(struct scan *s)
{
	struct names l = { 0 };
	int rc;

	rc = list_dir(s, "bus/nd/devices", is_namespace, &l);
	for (size_t i = 0; !rc && i < l.n; i++) {
		struct hm_resource *r = row_new(s, HM_RES_PMEM, l.v[i]);

		if (!r) {
			rc = s->n == MAX_ROWS ? 0 : -ENOMEM;
			break;
		}
		r->size = attr_u64(s, "bus/nd/devices/%s/size", l.v[i]);
		r->node = target_node(s, "bus/nd/devices", l.v[i]);
		r->persistent = HM_YES;
		namespace_mode(s, l.v[i], r);
		/* fsdax and devdax map the medium; sector (BTT) and raw are block I/O. */
		if (!strcmp(r->mode, "fsdax") || !strcmp(r->mode, "devdax"))
			r->byte_addressable = r->coherent = HM_YES;
		else if (r->mode[0])
			r->byte_addressable = r->coherent = HM_NO;
		namespace_device(s, l.v[i], r);
		node_perf(s, r);
	}
	free(l.v);
	return rc;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static int list_block(struct scan *s)
{
	struct names l = { 0 };
	int rc;

	rc = list_dir(s, "block", is_any, &l);
	for (size_t i = 0; !rc && i < l.n; i++) {
		const char *name = l.v[i];
		uint64_t sectors = attr_u64(s, "block/%s/size", name);
		struct hm_resource *r;
		enum hm_tristate dax;

		/* Unattached loop devices, unused ram disks, empty drives. */
		if (sectors == 0)
			continue;
		r = row_new(s, HM_RES_BLOCK, name);
		if (!r) {
			rc = s->n == MAX_ROWS ? 0 : -ENOMEM;
			break;
		}
		if (sectors != HM_RES_UNKNOWN && sectors <= UINT64_MAX / 512)
			r->size = sectors * 512; /* always 512-byte units */
		/* The kernel writes '/' in a device name as '!' (cciss!c0d0). */
		snprintf(r->device, sizeof r->device, "/dev/%s", name);
		for (char *p = r->device; *p; p++)
			if (*p == '!')
				*p = '/';
		r->rotational = block_bool(s, name, "queue/rotational");
		r->removable = block_bool(s, name, "removable");
		dax = block_bool(s, name, "queue/dax");
		r->byte_addressable = dax;
		r->coherent = dax;
		if (has_prefix(name, "ram") || has_prefix(name, "zram"))
			r->persistent = HM_NO;
		else if (has_prefix(name, "loop"))
			r->persistent = HM_UNKNOWN; /* as persistent as its backing file */
		else
			r->persistent = HM_YES;
		r->node = attr_node(s, "block/%s/device/numa_node", name);
		if (dax == HM_YES)
			node_perf(s, r);
	}
	free(l.v);
	return rc;
}

/* ------------------------------------------------------------------------
 * Stores a user configured.
 *
 * The stores file ($HMMAP_STORES; else $XDG_CONFIG_HOME/hmmap/stores or
 * ~/.config/hmmap/stores, but only when HMMAP_SYSFS_ROOT is unset, as a
 * fixture root describes another machine) names stores, one a line:
 *
 *   NAME URI [read_latency_ns=N] [write_latency_ns=N]
 *            [read_bandwidth_mbps=N] [write_bandwidth_mbps=N]
 *
 * '#' starts a comment. The figures are what `hmmap probe URI` measured (or
 * any other measurement). Each store is opened read-only to learn its size
 * and properties; one that cannot be opened is listed with them unknown.
 * Unlike sysfs this file is the user's own: a malformed line is an error
 * naming the file and the line, not a silent unknown.
 * ------------------------------------------------------------------------ */

#define STORE_LINE_CAP 4096

static int stores_path(char *out, size_t cap, bool *explicit_path)
{
	const char *env = getenv("HMMAP_STORES"), *base;

	*explicit_path = env != NULL;
	if (env) {
		if (!*env)
			return 1; /* set and empty: no stores file */
		if (strlen(env) >= cap)
			return hm__error(-ENAMETOOLONG, "HMMAP_STORES is too long");
		snprintf(out, cap, "%s", env);
		return 0;
	}
	if (getenv("HMMAP_SYSFS_ROOT") && *getenv("HMMAP_SYSFS_ROOT"))
		return 1;
	base = getenv("XDG_CONFIG_HOME");
	if (base && *base) {
		if ((size_t)snprintf(out, cap, "%s/hmmap/stores", base) >= cap)
			return 1;
		return 0;
	}
	base = getenv("HOME");
	if (!base || !*base || (size_t)snprintf(out, cap, "%s/.config/hmmap/stores", base) >= cap)
		return 1;
	return 0;
}

static bool store_name_ok(const char *n)
{
	if (!*n || strlen(n) >= NAME_CAP)
		return false;
	for (; *n; n++)
		if (!isalnum((unsigned char)*n) && *n != '_' && *n != '-' && *n != '.')
			return false;
	return true;
}

/*
 * Records store `name` at `uri` with `figures` ("read_latency_ns=N ...") in
 * the stores file, replacing a line of the same name and keeping every other
 * line; the file (and its directory) is created if needed and replaced
 * atomically (rename). Fills path (cap bytes) with the file's name.
 */
int hm__stores_save(const char *name, const char *uri, const char *figures, char *path,
		    size_t cap)
{
	bool explicit_path;
	char tmp[PATH_MAX + 8], line[STORE_LINE_CAP];
	FILE *in, *out;
	int rc, fd;

	if (!store_name_ok(name))
		return hm__error(-EINVAL, "'%.64s' is not a store name (letters, digits, '_', '-', "
					  "'.')", name);
	if (!*uri || strpbrk(uri, " \t\r\n#") || strlen(uri) >= sizeof((struct hm_resource *)0)->device)
		return hm__error(-EINVAL, "the URI cannot be written on a line of the stores file "
					  "(empty, too long, or with blanks or '#')");
	rc = stores_path(path, cap, &explicit_path);
	if (rc < 0)
		return rc;
	if (rc > 0)
		return hm__error(-EINVAL, "no stores file: HMMAP_STORES is empty, or neither "
					  "XDG_CONFIG_HOME nor HOME is set");
	if (!explicit_path) {
		/* ~/.config/hmmap (or $XDG_CONFIG_HOME/hmmap): make what is missing. */
		char dir[PATH_MAX];
		snprintf(dir, sizeof dir, "%s", path);
		for (char *sl = strchr(dir + 1, '/'); sl; sl = strchr(sl + 1, '/')) {
			*sl = 0;
			if (mkdir(dir, 0755) && errno != EEXIST)
				return hm__error(-errno, "cannot create %s: %s", dir, strerror(errno));
			*sl = '/';
		}
	}
	snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return hm__error(-errno, "cannot write next to %s: %s", path, strerror(errno));
	out = fdopen(fd, "w");
	if (!out) {
		close(fd);
		unlink(tmp);
		return hm__error(-ENOMEM, "out of memory");
	}
	/* The old lines, from a regular file only (a FIFO must not hang the save). */
	fd = hm__open_file(path, O_RDONLY, 0);
	in = NULL;
	if (fd >= 0) {
		struct stat st;
		if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
			rc = hm__error(-EINVAL, "stores file %s is not a regular file", path);
		else if (!(in = fdopen(fd, "r")))
			rc = hm__error(-ENOMEM, "out of memory");
		if (!in) {
			close(fd);
			fclose(out);
			unlink(tmp);
			return rc;
		}
	}
	if (in) {
		while (fgets(line, sizeof line, in)) {
			char first[NAME_CAP + 1];
			size_t n = strcspn(line, " \t\r\n");
			snprintf(first, sizeof first, "%.*s", (int)(n < NAME_CAP ? n : NAME_CAP), line);
			if (n < NAME_CAP && !strcmp(first, name))
				continue; /* the old line of this store */
			fputs(line, out);
			if (!strchr(line, '\n'))
				fputc('\n', out);
		}
		fclose(in);
	} else if (fd != -ENOENT) {
		rc = hm__error(fd, "cannot read %s: %s", path, strerror(-fd));
		fclose(out);
		unlink(tmp);
		return rc;
	}
	fprintf(out, "%s %s%s%s\n", name, uri, *figures ? " " : "", figures);
	if (fflush(out) || fsync(fileno(out))) {
		rc = hm__error(-errno, "cannot write %s: %s", tmp, strerror(errno));
		fclose(out);
		unlink(tmp);
		return rc;
	}
	fclose(out);
	if (rename(tmp, path)) {
		rc = hm__error(-errno, "cannot replace %s: %s", path, strerror(errno));
		unlink(tmp);
		return rc;
	}
	return 0;
}

/* Size and properties of the store at uri, opened read-only; unknown if it cannot be. */
static void store_facts(struct hm_resource *r, const char *uri)
{
	struct hm_store *st;
	struct hm_store_info info;
	const char *colon = strchr(uri, ':'), *slash = strchr(uri, '/');
	size_t n = colon && (!slash || colon < slash) ? (size_t)(colon - uri) : 0;

	snprintf(r->mode, sizeof r->mode, "%.*s", n ? (int)n : 4, n ? uri : "file");
	if (!strncmp(uri, "numa:", 5) && isdigit((unsigned char)uri[5]))
		r->node = atoi(uri + 5);
	if (hm_store_open(&st, uri, HM_STORE_RDONLY))
		return;
	if (!hm_store_info(st, &info)) {
		r->size = info.size;
		r->byte_addressable = info.props & HM_PROP_BYTE_ADDRESSABLE ? HM_YES : HM_NO;
		r->persistent = info.props & HM_PROP_PERSISTENT ? HM_YES : HM_NO;
		r->coherent = info.props & HM_PROP_COHERENT ? HM_YES : HM_NO;
	}
	hm_store_close(st);
}

static int store_line(struct scan *s, const char *file, int lineno, char *line)
{
	char *save = NULL, *name, *uri, *kv;
	struct hm_resource *r;

	name = strtok_r(line, " \t\r\n", &save);
	if (!name || *name == '#')
		return 0;
	uri = strtok_r(NULL, " \t\r\n", &save);
	if (!store_name_ok(name))
		return hm__error(-EINVAL, "stores file %s line %d: '%.64s' is not a name (letters, "
					  "digits, '_', '-', '.')", file, lineno, name);
	if (!uri || *uri == '#')
		return hm__error(-EINVAL, "stores file %s line %d: store '%s' has no URI (NAME URI "
					  "[figures])", file, lineno, name);
	if (strlen(uri) >= sizeof r->device)
		return hm__error(-EINVAL, "stores file %s line %d: the URI is too long", file, lineno);
	for (size_t i = 0; i < s->n; i++)
		if (s->res[i].kind == HM_RES_STORE && !strcmp(s->res[i].name, name))
			return hm__error(-EINVAL, "stores file %s line %d: store '%s' is named twice",
					 file, lineno, name);
	r = row_new(s, HM_RES_STORE, name);
	if (!r)
		return -ENOMEM;
	/* Listed, never printed with its password; the store opens from the file's text. */
	char *shown = hm__uri_redact(uri);
	snprintf(r->device, sizeof r->device, "%s", shown ? shown : "");
	free(shown);
	while ((kv = strtok_r(NULL, " \t\r\n", &save))) {
		char *eq = strchr(kv, '=');
		uint64_t v, *field = NULL;

		if (*kv == '#')
			break;
		if (eq) {
			*eq = 0;
			if (!strcmp(kv, "read_latency_ns"))
				field = &r->read_latency_ns;
			else if (!strcmp(kv, "write_latency_ns"))
				field = &r->write_latency_ns;
			else if (!strcmp(kv, "read_bandwidth_mbps"))
				field = &r->read_bandwidth_mbps;
			else if (!strcmp(kv, "write_bandwidth_mbps"))
				field = &r->write_bandwidth_mbps;
		}
		if (!field) {
			s->n--;
			return hm__error(-EINVAL, "stores file %s line %d: unknown figure '%.64s' (known: "
						  "read_latency_ns, write_latency_ns, "
						  "read_bandwidth_mbps, write_bandwidth_mbps)",
					 file, lineno, kv);
		}
		if (hm_parse_u64(eq + 1, &v) || v == HM_RES_UNKNOWN) {
			s->n--;
			return hm__error(-EINVAL, "stores file %s line %d: %s='%.64s' is not a number",
					 file, lineno, kv, eq + 1);
		}
		*field = v;
	}
	store_facts(r, uri);
	return 0;
}

static int list_stores(struct scan *s)
{
	char path[PATH_MAX], *line;
	struct stat st;
	bool explicit_path;
	int rc, fd, lineno = 0;
	FILE *f;

	rc = stores_path(path, sizeof path, &explicit_path);
	if (rc)
		return rc < 0 ? rc : 0;
	/* Non-blocking: a FIFO must not hang `hmmap ls` (src/os/file.c). */
	fd = hm__open_file(path, O_RDONLY, 0);
	if (fd < 0) {
		if (fd == -ENOENT && !explicit_path)
			return 0;
		return hm__error_errno(fd, "stores file %s (%s) cannot be read", path,
				       explicit_path ? "HMMAP_STORES" : "the default");
	}
	/*
	 * A directory opens, and then reads as an error that fgets() takes for
	 * the end: it would list no stores and say nothing. A FIFO would give
	 * what a writer happens to send, or nothing.
	 */
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
		close(fd);
		return hm__error(-EINVAL, "stores file %s (%s) cannot be read: it is not a regular "
					  "file", path, explicit_path ? "HMMAP_STORES" : "the default");
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return hm__error(-ENOMEM, "out of memory");
	}
	line = malloc(STORE_LINE_CAP);
	if (!line) {
		fclose(f);
		return -ENOMEM;
	}
	rc = 0;
	while (!rc && fgets(line, STORE_LINE_CAP, f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			rc = hm__error(-EINVAL, "stores file %s line %d is longer than %u bytes", path,
				       lineno, STORE_LINE_CAP - 1);
			break;
		}
		rc = store_line(s, path, lineno, line);
	}
	if (!rc && ferror(f))
		rc = hm__error_errno(-(errno ? errno : EIO), "stores file %s (%s) cannot be read",
				     path, explicit_path ? "HMMAP_STORES" : "the default");
	free(line);
	fclose(f);
	return rc;
}

/* ------------------------------------------------------------------------
 * The public calls.
 * ------------------------------------------------------------------------ */

void hm_resources_free(struct hm_resource *res, size_t count)
{
	if (!res)
		return;
	for (size_t i = 0; i < count; i++)
		free(res[i].distances);
	free(res);
}

static int open_root(struct scan *s)
{
	const char *root = getenv("HMMAP_SYSFS_ROOT");
	const char *from = root && *root ? "HMMAP_SYSFS_ROOT" : "the default";
	struct stat st;
	size_t n;

	if (!root || !*root)
		root = "/sys";
	n = strlen(root);
	while (n > 1 && root[n - 1] == '/')
		n--;
	/* Leave room below the root for the longest relative path we build. */
	if (n >= sizeof s->root - 2 * NAME_CAP - 64)
		return hm__error(-ENAMETOOLONG, "sysfs root %.64s... (%s) is too long", root,
				 from);
	memcpy(s->root, root, n);
	s->root[n] = 0;
	if (stat(s->root, &st))
		return hm__error_errno(-errno, "sysfs root %s (%s) cannot be read", s->root,
				       from);
	if (!S_ISDIR(st.st_mode))
		return hm__error(-ENOTDIR, "sysfs root %s (%s) is not a directory", s->root,
				 from);
	if (access(s->root, R_OK | X_OK))
		return hm__error_errno(-errno, "sysfs root %s (%s) cannot be read", s->root,
				       from);
	if (!is_dir_at(s, "devices/system/node") && !is_dir_at(s, "bus/dax/devices") &&
	    !is_dir_at(s, "bus/nd/devices") && !is_dir_at(s, "block"))
		return hm__error(-ENOENT,
				 "sysfs root %s (%s) does not look like sysfs: it has none of "
				 "devices/system/node, bus/dax/devices, bus/nd/devices, block",
				 s->root, from);
	return 0;
}

int hm_resources(struct hm_resource **out, size_t *count)
{
	struct scan *s;
	int rc;

	if (!out || !count)
		return hm__error(-EINVAL, "hm_resources: out and count must not be NULL");
	*out = NULL;
	*count = 0;
	s = calloc(1, sizeof *s);
	if (!s)
		return hm__error(-ENOMEM, "hm_resources: out of memory");
	rc = open_root(s);
	if (rc)
		goto out_free;
	s->buf = malloc(BUF_CAP);
	if (!s->buf) {
		rc = -ENOMEM;
		goto out_nomem;
	}
	rc = read_tiers(s);
	if (!rc)
		rc = list_nodes(s);
	if (!rc)
		rc = list_dax(s);
	if (!rc)
		rc = list_pmem(s);
	if (!rc)
		rc = list_block(s);
	if (rc)
		goto out_nomem;
	rc = list_stores(s);
	if (rc == -ENOMEM)
		goto out_nomem;
	if (rc) {
		hm_resources_free(s->res, s->n);
		goto out_free;
	}
	*out = s->res;
	*count = s->n;
	s->res = NULL;
	goto out_free;
out_nomem:
	rc = hm__error(rc, "hm_resources: out of memory listing %s", s->root);
	hm_resources_free(s->res, s->n);
out_free:
	free(s->buf);
	free(s);
	return rc;
}

const char *hm_resource_kind_name(int kind)
{
	switch (kind) {
	case HM_RES_NODE:
		return "node";
	case HM_RES_MEM_NODE:
		return "mem-node";
	case HM_RES_DAX:
		return "dax";
	case HM_RES_PMEM:
		return "pmem";
	case HM_RES_BLOCK:
		return "block";
	case HM_RES_STORE:
		return "store";
	}
	return "?";
}
