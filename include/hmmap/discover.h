/* SPDX-License-Identifier: MIT */
/*
 * hmmap/discover.h - what memory this machine has: the user-space form of
 * the proposed /sys/devices/system/hmemory, and the rows of `hmmap ls`.
 *
 * hm_resources() lists one row per memory resource: NUMA nodes (those
 * without CPUs marked memory-only - CXL expanders and persistent memory in
 * memory mode appear so), device-DAX devices, persistent-memory namespaces
 * and block devices. Everything is read from sysfs below a root that is
 * "/sys" unless the environment variable HMMAP_SYSFS_ROOT names another
 * directory (read at every call, so a program or a test may switch roots).
 *
 * Sysfs is trusted for nothing: a missing, unreadable or malformed file
 * makes the fields it feeds unknown, never a failure of the listing. Only
 * a root that cannot be read, or that holds none of the directories the
 * listing reads, is an error.
 */
#ifndef HMMAP_DISCOVER_H
#define HMMAP_DISCOVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum hm_resource_kind {
	HM_RES_NODE = 1, /* a NUMA node with CPUs */
	HM_RES_MEM_NODE, /* a memory-only (CPU-less) NUMA node: CXL, HBM, pmem as RAM */
	HM_RES_DAX,      /* a device-DAX character device (/dev/daxX.Y) */
	HM_RES_PMEM,     /* a persistent-memory namespace (namespaceX.Y) */
	HM_RES_BLOCK,    /* a block device (/sys/block/NAME) */
	HM_RES_STORE,    /* a store the user configured in the stores file (docs/discovery.md) */
};

/* A property that sysfs may or may not tell. Zero is never valid. */
enum hm_tristate {
	HM_UNKNOWN = 1,
	HM_NO,
	HM_YES,
};

/* The value of an unknown size, free size, latency or bandwidth. */
#define HM_RES_UNKNOWN UINT64_MAX

struct hm_resource {
	enum hm_resource_kind kind;
	char name[256];   /* "node2", "dax0.0", "namespace0.0", "pmem0" */
	char device[272]; /* "/dev/dax0.0", "/dev/pmem0"; "" if none or unknown */
	/* pmem namespaces, as ndctl names them: "fsdax", "devdax", "sector", "raw"; else "" */
	char mode[16];
	uint64_t size;    /* bytes, or HM_RES_UNKNOWN */
	uint64_t free;    /* bytes (NUMA nodes only), or HM_RES_UNKNOWN */
	/*
	 * The NUMA node the memory belongs to: the node itself; for DAX and
	 * pmem its target_node (where it would be onlined as RAM), else its
	 * numa_node; for a block device its device's numa_node. -1: unknown.
	 */
	int node;
	int tier; /* memory tier id (memory_tierN: smaller is faster); -1: unknown */
	enum hm_tristate byte_addressable; /* reachable with loads and stores */
	enum hm_tristate persistent;       /* survives power loss */
	enum hm_tristate coherent;         /* cache-coherent CPU memory */
	enum hm_tristate rotational;       /* block devices: queue/rotational */
	enum hm_tristate removable;        /* block devices: removable */
	/*
	 * Firmware (ACPI HMAT) figures for access from the node's nearest
	 * initiators (nodeN/access0/initiators), or HM_RES_UNKNOWN.
	 */
	uint64_t read_latency_ns, write_latency_ns;
	uint64_t read_bandwidth_mbps, write_bandwidth_mbps; /* MB/s */
	/*
	 * NUMA nodes: the distance (SLIT; 10 is local) from this node to node
	 * i is distances[i] for i < ndistances, 0 where unknown. NULL and 0
	 * for other kinds and when the node's distance file is unreadable.
	 */
	uint32_t *distances;
	size_t ndistances;
	uint64_t reserved[8];
};

/*
 * Lists the machine's memory resources: *out receives an array of *count
 * rows (NUMA nodes by id, then device-DAX, pmem namespaces, block devices,
 * each in name order, then the stores of the stores file in its order:
 * name, URI as device, scheme as mode, size and properties from opening
 * the store read-only, figures from the file), to be released with
 * hm_resources_free(). A malformed stores file fails with -EINVAL naming
 * the line. Block
 * devices of size 0 (unattached loop and ram devices, empty drives) are
 * left out. Returns 0, -EINVAL (a NULL argument), -ENOMEM, or the error of
 * a sysfs root that cannot be read or does not look like sysfs (-ENOENT);
 * on an error *out is NULL and *count 0.
 */
int hm_resources(struct hm_resource **out, size_t *count);
void hm_resources_free(struct hm_resource *res, size_t count);

/* "node", "mem-node", "dax", "pmem", "block", "store"; "?" for others. */
const char *hm_resource_kind_name(int kind);

#ifdef __cplusplus
}
#endif
#endif
