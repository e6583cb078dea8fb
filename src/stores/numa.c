/* SPDX-License-Identifier: MIT */
/*
 * numa: - memory from chosen NUMA nodes. Memory-only nodes (no CPUs) are how
 * CXL memory expanders, and persistent memory in memory mode, appear to
 * Linux, so this is the store for them.
 *
 *   numa:NODES[,size=SIZE][,policy=bind|preferred|interleave|weighted]
 *
 * Without size= the store is as large as the nodes' memory (MemTotal).
 *
 * NODES is a node number or a range (0, 2-3), repeated: numa:0,2-3,size=1G.
 * Placement (set_mempolicy(2) modes, applied with mbind):
 *   bind        pages only on those nodes; allocation fails (SIGBUS at first
 *               touch) when they are full. The default.
 *   preferred   the given node first, others when it is full
 *               (MPOL_PREFERRED, or MPOL_PREFERRED_MANY for several nodes).
 *   interleave  page by page round robin over the nodes.
 *   weighted    interleave in the proportions of the kernel's per-node
 *               weights, /sys/kernel/mm/mempolicy/weighted_interleave/nodeN
 *               (MPOL_WEIGHTED_INTERLEAVE, Linux 6.9 and later).
 *
 * The memory is a memfd: the policy, set once on the store's own mapping,
 * becomes the shared policy of the memfd's pages, so that direct and hybrid
 * regions (which map the same memfd at their own addresses) allocate on the
 * same nodes. Pages are allocated at first touch, through any view. The
 * store is byte-addressable and volatile.
 */
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/internal.h"

#ifndef MPOL_PREFERRED_MANY
#define MPOL_PREFERRED_MANY 5
#endif
#ifndef MPOL_WEIGHTED_INTERLEAVE
#define MPOL_WEIGHTED_INTERLEAVE 6
#endif

#define MAX_NODES 1024

struct numa_store {
	int fd;
	char *map;
	uint64_t size;
	int mode;
	unsigned long mask[MAX_NODES / (8 * sizeof(unsigned long))];
	int nnodes;
	bool have_policy;
	uint64_t node_bytes; /* MemTotal of the nodes given: the default size */
};

static const char *sysfs_node_dir(void)
{
	return "/sys/devices/system/node";
}

/*
 * 1 when node n exists and has memory (*bytes: its MemTotal, 0 if unknown),
 * 0 when it exists without, -1 when absent.
 */
static int node_memory(int n, uint64_t *bytes)
{
	char path[256], line[256];
	int rc = -1;
	FILE *f;

	snprintf(path, sizeof path, "%s/node%d/meminfo", sysfs_node_dir(), n);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		unsigned long long kb;
		const char *t = strstr(line, "MemTotal:");
		if (t && sscanf(t + 9, "%llu", &kb) == 1) {
			rc = kb ? 1 : 0;
			*bytes = (uint64_t)kb << 10;
			break;
		}
	}
	fclose(f);
	return rc < 0 ? 1 : rc; /* unreadable: let mbind decide */
}

static int add_node(struct numa_store *m, long n)
{
	uint64_t bytes = 0;
	int mem = node_memory((int)n, &bytes);

	if (mem < 0)
		return hm__error(-ENODEV, "numa store: node %ld does not exist (see %s, or `hmmap "
					  "ls`)", n, sysfs_node_dir());
	if (mem == 0)
		return hm__error(-ENODEV, "numa store: node %ld has no memory", n);
	if (!(m->mask[n / (8 * sizeof(unsigned long))] & (1ul << (n % (8 * sizeof(unsigned long)))))) {
		m->nnodes++;
		m->node_bytes += bytes;
	}
	m->mask[n / (8 * sizeof(unsigned long))] |= 1ul << (n % (8 * sizeof(unsigned long)));
	return 0;
}

/* "N" or "A-B"; returns 1 if tok is a node item, 0 if not one (an option). */
static int parse_nodes(struct numa_store *m, const char *tok, int *rc)
{
	char *end;
	long a, b;

	*rc = 0;
	if (!(tok[0] >= '0' && tok[0] <= '9'))
		return 0;
	a = strtol(tok, &end, 10);
	b = a;
	if (*end == '-') {
		const char *s = end + 1;
		if (!(s[0] >= '0' && s[0] <= '9')) {
			*rc = hm__error(-EINVAL, "numa store: '%s' is not a node range", tok);
			return 1;
		}
		b = strtol(s, &end, 10);
	}
	if (*end || a > b || b >= MAX_NODES) {
		*rc = hm__error(-EINVAL, "numa store: '%s' is not a node number or range (0..%d)",
				tok, MAX_NODES - 1);
		return 1;
	}
	for (long n = a; n <= b && !*rc; n++)
		*rc = add_node(m, n);
	return 1;
}

static int numa_opt(struct numa_store *m, const char *k, const char *v)
{
	if ((!strcmp(k, "size") && m->size) || (!strcmp(k, "policy") && m->have_policy))
		return hm__error(-EINVAL, "numa store: option '%s' is given twice", k);
	if (!strcmp(k, "size")) {
		if (hm_parse_size(v, &m->size) || m->size == 0 || m->size > (1ull << 46))
			return hm__error(-EINVAL, "numa store: size='%s' is not a size from 1 byte to "
						  "64T", v);
		return 0;
	}
	if (!strcmp(k, "policy")) {
		if (!strcmp(v, "bind"))
			m->mode = MPOL_BIND;
		else if (!strcmp(v, "preferred"))
			m->mode = MPOL_PREFERRED;
		else if (!strcmp(v, "interleave"))
			m->mode = MPOL_INTERLEAVE;
		else if (!strcmp(v, "weighted"))
			m->mode = MPOL_WEIGHTED_INTERLEAVE;
		else
			return hm__error(-EINVAL, "numa store: policy='%s' is not bind, preferred, "
						  "interleave or weighted", v);
		m->have_policy = true;
		return 0;
	}
	return hm__error(-EINVAL, "numa store: unknown option '%s' (known: size, policy)", k);
}

static int parse(struct numa_store *m, const char *rest)
{
	char buf[1024];
	char *tok, *save = NULL;
	size_t n = strlen(rest);
	bool seen_opt = false;
	int rc;

	if (n == 0)
		return hm__error(-EINVAL, "numa store: missing nodes (numa:0,size=1G)");
	if (n >= sizeof buf)
		return hm__error(-EINVAL, "numa store: URI too long");
	if (rest[0] == ',' || rest[n - 1] == ',' || strstr(rest, ",,"))
		return hm__error(-EINVAL, "numa store: empty item in '%s'", rest);
	memcpy(buf, rest, n + 1);
	for (char *p = buf; (tok = strtok_r(p, ",", &save)); p = NULL) {
		char *eq = strchr(tok, '=');
		if (eq) {
			if (eq == tok)
				return hm__error(-EINVAL, "numa store: '%s' has no key", tok);
			*eq = 0;
			rc = numa_opt(m, tok, eq + 1);
			if (rc)
				return rc;
			seen_opt = true;
			continue;
		}
		if (seen_opt)
			return hm__error(-EINVAL, "numa store: node '%s' after the options; nodes come "
						  "first (numa:0,1,size=1G)", tok);
		if (!parse_nodes(m, tok, &rc))
			return hm__error(-EINVAL, "numa store: '%s' is neither a node nor key=value", tok);
		if (rc)
			return rc;
	}
	if (!m->nnodes)
		return hm__error(-EINVAL, "numa store: no node given (numa:0,size=1G)");
	/*
	 * Without size= the store spans the memory of its nodes, as the URI
	 * numa:N of the issue reads; the memfd is sparse, so nothing is
	 * allocated before it is touched.
	 */
	if (!m->size)
		m->size = m->node_bytes;
	if (!m->size)
		return hm__error(-EINVAL, "numa store: the nodes' memory size is unknown; give "
					  "size=SIZE (numa:0,size=1G)");
	return 0;
}

static const char *mode_name(int mode)
{
	switch (mode) {
	case MPOL_BIND:
		return "bind";
	case MPOL_PREFERRED:
	case MPOL_PREFERRED_MANY:
		return "preferred";
	case MPOL_INTERLEAVE:
		return "interleave";
	case MPOL_WEIGHTED_INTERLEAVE:
		return "weighted";
	}
	return "?";
}

static int numa_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	struct numa_store *m;
	int rc;

	m = calloc(1, sizeof *m);
	if (!m)
		return hm__error(-ENOMEM, "out of memory");
	m->fd = -1;
	m->mode = MPOL_BIND;
	rc = parse(m, rest);
	if (rc)
		goto fail;
	if (m->mode == MPOL_PREFERRED && m->nnodes > 1)
		m->mode = MPOL_PREFERRED_MANY;
	m->fd = memfd_create("hmmap-numa", MFD_CLOEXEC);
	if (m->fd < 0) {
		rc = hm__error_errno(-errno, "numa store: memfd_create");
		goto fail;
	}
	if (ftruncate(m->fd, (off_t)m->size) < 0) {
		rc = hm__error_errno(-errno, "numa store: cannot size the memory to %llu bytes",
				     (unsigned long long)m->size);
		goto fail;
	}
	m->map = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->fd, 0);
	if (m->map == MAP_FAILED) {
		rc = hm__error_errno(-errno, "numa store: cannot map %llu bytes",
				     (unsigned long long)m->size);
		goto fail;
	}
	/* On shmem, mbind sets the policy of the memfd's pages, whatever maps them. */
	if (mbind(m->map, m->size, m->mode, m->mask, MAX_NODES, 0) < 0) {
		rc = -errno;
		munmap(m->map, m->size);
		if (rc == -EINVAL && m->mode == MPOL_WEIGHTED_INTERLEAVE)
			rc = hm__error(-ENOTSUP, "numa store: this kernel lacks weighted interleave "
						 "(MPOL_WEIGHTED_INTERLEAVE, Linux 6.9 and later)");
		else
			rc = hm__error_errno(rc, "numa store: mbind(%s) refused the nodes (outside "
						 "this process's cpuset?)", mode_name(m->mode));
		goto fail;
	}
	memset(info, 0, sizeof *info);
	info->size = m->size;
	info->align = 1;
	info->props = HM_PROP_BYTE_ADDRESSABLE | HM_PROP_COHERENT;
	*priv = m;
	return 0;
fail:
	if (m->fd >= 0)
		close(m->fd);
	free(m);
	return rc;
}

static void numa_close(void *priv)
{
	struct numa_store *m = priv;

	munmap(m->map, m->size);
	close(m->fd);
	free(m);
}

static int numa_read(void *priv, void *buf, size_t len, uint64_t off)
{
	struct numa_store *m = priv;
	size_t n = len;

	if (off >= m->size)
		n = 0;
	else if (len > m->size - off)
		n = (size_t)(m->size - off);
	memcpy(buf, m->map + off, n);
	if (n < len)
		memset((char *)buf + n, 0, len - n);
	return 0;
}

static int numa_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	struct numa_store *m = priv;

	if (off >= m->size || len > m->size - off)
		return -ENOSPC;
	memcpy(m->map + off, buf, len);
	return 0;
}

static const void *numa_addr(void *priv, uint64_t off, size_t len)
{
	struct numa_store *m = priv;

	if (off >= m->size || len > m->size - off)
		return NULL;
	return m->map + off;
}

static int numa_map(void *priv, void *addr, size_t len, uint64_t off, int prot)
{
	struct numa_store *m = priv;

	if (off >= m->size)
		return -EINVAL;
	return mmap(addr, len, prot, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, m->fd, (off_t)off) ==
			       MAP_FAILED
		       ? -errno
		       : 0;
}

static int numa_persist(void *priv, uint64_t off, size_t len)
{
	return 0; /* volatile memory: nothing to make durable */
}

const struct hm_store_ops hm__store_numa = {
	.abi = HM_STORE_ABI,
	.scheme = "numa",
	.summary = "memory of chosen NUMA nodes (CXL and memory-only nodes): bind, preferred, "
		   "interleave, weighted",
	.open = numa_open,
	.close = numa_close,
	.read = numa_read,
	.write = numa_write,
	.addr = numa_addr,
	.map = numa_map,
	.persist = numa_persist,
};
