/* SPDX-License-Identifier: MIT */
/*
 * `hmmap ls`: one row per memory resource of the machine (NUMA nodes,
 * memory-only nodes, device-DAX, pmem namespaces, block devices), as a
 * table or, with --json, as an array of objects whose field names are
 * stable (docs/discovery.md). Unknown values are "-" in the table and null
 * in JSON. The rows are exactly those of hm_resources().
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hmmap.h"
#include "cli.h"

static void ls_usage(FILE *f)
{
	fprintf(f,
		"usage: hmmap ls [--json]\n"
		"\n"
		"Lists the machine's memory resources, read from sysfs (/sys, or the\n"
		"directory named by HMMAP_SYSFS_ROOT): NUMA nodes (mem-node: a node\n"
		"without CPUs, as CXL expanders appear), device-DAX devices, pmem\n"
		"namespaces and block devices (those of size 0 are left out), then the\n"
		"stores named in the stores file ($HMMAP_STORES, or\n"
		"~/.config/hmmap/stores: NAME URI [read_latency_ns=N ...] a line).\n"
		"\n"
		"Columns: kind, name, size, free, device, node, byte-addressable,\n"
		"persistent, coherent, read/write latency (ns) and read/write bandwidth\n"
		"(MB/s) from the firmware's HMAT, and memory tier (smaller is faster).\n"
		"A '-' is a value sysfs does not tell.\n"
		"\n"
		"  --json      print a JSON array of objects instead (docs/discovery.md)\n"
		"  -h, --help  this text\n"
		"\n"
		"Exit status: 0 success, 1 the sysfs root cannot be read, 2 bad usage.\n");
}

static const char *tri(enum hm_tristate t)
{
	return t == HM_YES ? "yes" : t == HM_NO ? "no" : "-";
}

static const char *tri_json(enum hm_tristate t)
{
	return t == HM_YES ? "true" : t == HM_NO ? "false" : "null";
}

/* A byte count as "64G", "1.5T", "512K"; "-" when unknown. */
static void human(char *out, size_t cap, uint64_t v)
{
	static const char units[] = "BKMGTPE";
	double x = (double)v;
	int u = 0;

	if (v == HM_RES_UNKNOWN) {
		snprintf(out, cap, "-");
		return;
	}
	while (x >= 1024 && u < 6) {
		x /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, cap, "%" PRIu64 "B", v);
	else if (x < 10 && x != (double)(uint64_t)x)
		snprintf(out, cap, "%.1f%c", x, units[u]);
	else
		snprintf(out, cap, "%.0f%c", x, units[u]);
}

static void num(char *out, size_t cap, uint64_t v)
{
	if (v == HM_RES_UNKNOWN)
		snprintf(out, cap, "-");
	else
		snprintf(out, cap, "%" PRIu64, v);
}

/* "r/w", "-" when both are unknown. */
static void pair(char *out, size_t cap, uint64_t r, uint64_t w)
{
	char a[24], b[24];

	if (r == HM_RES_UNKNOWN && w == HM_RES_UNKNOWN) {
		snprintf(out, cap, "-");
		return;
	}
	num(a, sizeof a, r);
	num(b, sizeof b, w);
	snprintf(out, cap, "%s/%s", a, b);
}

static void int_or_dash(char *out, size_t cap, int v)
{
	if (v < 0)
		snprintf(out, cap, "-");
	else
		snprintf(out, cap, "%d", v);
}

/*
 * A node's distance row, "10,21,14" (to nodes 0, 1, 2; "?" where unknown),
 * cut with "..." if long; "-" for other resources.
 */
static void distances(char *out, size_t cap, const struct hm_resource *r)
{
	size_t len = 0;

	if (!r->ndistances || !r->distances) {
		snprintf(out, cap, "-");
		return;
	}
	out[0] = 0;
	for (size_t i = 0; i < r->ndistances; i++) {
		char one[16];
		int k = r->distances[i] ? snprintf(one, sizeof one, "%s%u", i ? "," : "",
						   r->distances[i]) :
					  snprintf(one, sizeof one, "%s?", i ? "," : "");
		if (len + (size_t)k + 4 >= cap) {
			snprintf(out + len, cap - len, ",...");
			return;
		}
		memcpy(out + len, one, (size_t)k + 1);
		len += (size_t)k;
	}
}

static void print_table(const struct hm_resource *res, size_t n)
{
	int wname = 4, wdev = 6;
	size_t i;

	for (i = 0; i < n; i++) {
		int a = (int)strlen(res[i].name), b = (int)strlen(res[i].device);

		wname = a > wname ? a : wname;
		wdev = b > wdev ? b : wdev;
	}
	printf("%-8s %-*s %7s %7s %-*s %4s %4s %4s %4s %11s %13s %4s %s\n", "KIND", wname, "NAME",
	       "SIZE", "FREE", wdev, "DEVICE", "NODE", "BYTE", "PERS", "COH", "LAT_NS_R/W",
	       "BW_MBPS_R/W", "TIER", "DISTANCES");
	for (i = 0; i < n; i++) {
		const struct hm_resource *r = &res[i];
		char size[24], freeb[24], node[16], lat[48], bw[48], tier[16], dist[80];

		human(size, sizeof size, r->size);
		human(freeb, sizeof freeb, r->free);
		int_or_dash(node, sizeof node, r->node);
		int_or_dash(tier, sizeof tier, r->tier);
		pair(lat, sizeof lat, r->read_latency_ns, r->write_latency_ns);
		pair(bw, sizeof bw, r->read_bandwidth_mbps, r->write_bandwidth_mbps);
		distances(dist, sizeof dist, r);
		printf("%-8s %-*s %7s %7s %-*s %4s %4s %4s %4s %11s %13s %4s %s\n",
		       hm_resource_kind_name(r->kind), wname, r->name, size, freeb, wdev,
		       r->device[0] ? r->device : "-", node, tri(r->byte_addressable),
		       tri(r->persistent), tri(r->coherent), lat, bw, tier, dist);
	}
}


/* A string field: null when empty. */
static void json_str_or_null(const char *key, const char *v)
{
	printf(", \"%s\": ", key);
	if (*v)
		hm_cli_json_str(v);
	else
		printf("null");
}

static void json_u64(const char *key, uint64_t v)
{
	if (v == HM_RES_UNKNOWN)
		printf(", \"%s\": null", key);
	else
		printf(", \"%s\": %" PRIu64, key, v);
}

/* "key": {"a": x, "b": y}, or null when both are unknown. */
static void json_pair(const char *key, const char *a, uint64_t x, const char *b, uint64_t y)
{
	if (x == HM_RES_UNKNOWN && y == HM_RES_UNKNOWN) {
		printf(", \"%s\": null", key);
		return;
	}
	printf(", \"%s\": {\"%s\": ", key, a);
	if (x == HM_RES_UNKNOWN)
		printf("null");
	else
		printf("%" PRIu64, x);
	json_u64(b, y);
	printf("}");
}

static void json_int(const char *key, int v)
{
	if (v < 0)
		printf(", \"%s\": null", key);
	else
		printf(", \"%s\": %d", key, v);
}

/*
 * One object per line, so that line tools can pick rows; sysfs names are
 * escaped like any other string (they are not trusted to be printable).
 */
static void print_json(const struct hm_resource *res, size_t n)
{
	printf("[");
	for (size_t i = 0; i < n; i++) {
		const struct hm_resource *r = &res[i];

		printf("%s\n  {\"kind\": \"%s\", \"name\": ", i ? "," : "",
		       hm_resource_kind_name(r->kind));
		hm_cli_json_str(r->name);
		json_str_or_null("device", r->device);
		json_u64("size_bytes", r->size);
		json_u64("free_bytes", r->free);
		json_int("node", r->node);
		printf(", \"byte_addressable\": %s, \"persistent\": %s, \"coherent\": %s",
		       tri_json(r->byte_addressable), tri_json(r->persistent),
		       tri_json(r->coherent));
		json_u64("read_latency_ns", r->read_latency_ns);
		json_u64("write_latency_ns", r->write_latency_ns);
		json_u64("read_bandwidth_mbps", r->read_bandwidth_mbps);
		json_u64("write_bandwidth_mbps", r->write_bandwidth_mbps);
		json_int("tier", r->tier);
		printf(", \"distances\": ");
		if (!r->distances) {
			printf("null");
		} else {
			printf("[");
			for (size_t j = 0; j < r->ndistances; j++) {
				if (r->distances[j])
					printf("%s%" PRIu32, j ? ", " : "", r->distances[j]);
				else
					printf("%snull", j ? ", " : "");
			}
			printf("]");
		}
		json_str_or_null("mode", r->mode);
		printf(", \"rotational\": %s, \"removable\": %s", tri_json(r->rotational),
		       tri_json(r->removable));
		/* The column names, for readers that look for them. */
		json_u64("size", r->size);
		json_u64("free", r->free);
		json_pair("latency", "read_ns", r->read_latency_ns, "write_ns", r->write_latency_ns);
		json_pair("bandwidth", "read_mbps", r->read_bandwidth_mbps, "write_mbps",
			  r->write_bandwidth_mbps);
		printf("}");
	}
	printf("%s]\n", n ? "\n" : "");
}

int hm_cli_ls(int argc, char **argv)
{
	struct hm_resource *res;
	size_t n;
	int json = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			ls_usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--json")) {
			json = 1;
			continue;
		}
		fprintf(stderr, "hmmap ls: unexpected argument '%s'\n\n", argv[i]);
		ls_usage(stderr);
		return 2;
	}
	rc = hm_resources(&res, &n);
	if (rc) {
		fprintf(stderr, "hmmap ls: %s\n", hm_errormsg());
		return 1;
	}
	if (json)
		print_json(res, n);
	else
		print_table(res, n);
	hm_resources_free(res, n);
	return fflush(stdout) ? 1 : 0;
}
