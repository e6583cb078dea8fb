/* SPDX-License-Identifier: MIT */
/*
 * `hmmap stat PID [--json]`: a snapshot of another process's caches,
 * regions and stores, read from the statistics segment it publishes
 * (hm_snapshot_read(); the process is never stopped or signalled). The JSON
 * field names are those of struct hm_stats and struct hm_obj_stats, and are
 * stable (docs/stats.md).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmmap.h"
#include "cli.h"

static void stat_usage(FILE *f)
{
	fprintf(f,
		"usage: hmmap stat PID [--json]\n"
		"\n"
		"Prints the live statistics of hmmap process PID: per cache, per region\n"
		"and per store, faults by kind, hits, misses, read-ahead pages used and\n"
		"wasted, evictions, write-backs, bytes read and written, resident and\n"
		"dirty pages, and fault-service latency percentiles. They are read from\n"
		"the segment /dev/shm/hmmap.PID that the process refreshes every 250 ms;\n"
		"the process is not stopped. A segment left by a process that is gone is\n"
		"removed and reported as stale.\n"
		"\n"
		"  --json      print one JSON object instead (fields in docs/stats.md)\n"
		"  -h, --help  this text\n"
		"\n"
		"Exit status: 0 success, 1 no such process / not an hmmap process / stale\n"
		"or unreadable statistics, 2 bad usage.\n");
}

/* "1.5G", "512K", "12" (bytes). */
void hm_cli_bytes(char *out, size_t cap, uint64_t v)
{
	static const char units[] = "BKMGTPE";
	double x = (double)v;
	int u = 0;

	while (x >= 1024 && u < 6) {
		x /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, cap, "%" PRIu64, v);
	else
		snprintf(out, cap, x < 10 ? "%.1f%c" : "%.0f%c", x, units[u]);
}

/* "850ns", "12.3us", "4.1ms", "2.0s"; "-" for 0. */
void hm_cli_ns(char *out, size_t cap, uint64_t ns)
{
	if (!ns)
		snprintf(out, cap, "-");
	else if (ns < 1000)
		snprintf(out, cap, "%" PRIu64 "ns", ns);
	else if (ns < 1000000)
		snprintf(out, cap, ns < 10000 ? "%.1fus" : "%.0fus", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(out, cap, ns < 10000000 ? "%.1fms" : "%.0fms", (double)ns / 1e6);
	else
		snprintf(out, cap, "%.1fs", (double)ns / 1e9);
}

const char *hm_cli_mode_name(uint32_t mode)
{
	switch (mode) {
	case HM_CACHED:
		return "cached";
	case HM_CACHED | HM_HUGETLB:
		return "hugetlb";
	case HM_DIRECT:
		return "direct";
	case HM_HYBRID:
		return "hybrid";
	}
	return "?";
}

static const char *fault_mode_name(int m)
{
	return m == HM_FAULT_THREAD ? "thread" : m == HM_FAULT_SIGBUS ? "sigbus" : "unknown";
}

static uint64_t now_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void print_counters(const struct hm_stats *s, bool cache_or_region)
{
	char a[32], b[32], c[32];

	if (cache_or_region) {
		printf("    faults     missing %" PRIu64 ", minor %" PRIu64 ", write-protect %" PRIu64
		       "; hits %" PRIu64 ", misses %" PRIu64 ", evictions %" PRIu64 "\n",
		       s->faults_missing, s->faults_minor, s->faults_wp, s->hits, s->misses,
		       s->evictions);
		printf("    prefetch   read ahead %" PRIu64 ", used %" PRIu64 ", wasted %" PRIu64
		       "\n",
		       s->readahead, s->prefetch_used, s->prefetch_wasted);
	}
	hm_cli_bytes(a, sizeof a, s->bytes_read);
	hm_cli_bytes(b, sizeof b, s->bytes_written);
	printf("    traffic    read %s, written %s, write-backs %" PRIu64 " pages; errors: read %" PRIu64
	       ", write %" PRIu64 "\n",
	       a, b, s->writebacks, s->read_errors, s->writeback_errors);
	if (cache_or_region) {
		hm_cli_ns(a, sizeof a, s->fault_ns_p50);
		hm_cli_ns(b, sizeof b, s->fault_ns_p99);
		hm_cli_ns(c, sizeof c, s->fault_ns_p999);
		printf("    latency    p50 %s, p99 %s, p999 %s over %" PRIu64 " faults\n", a, b, c,
		       s->faults_timed);
	}
}

static void print_text(const struct hm_snapshot *sn)
{
	char a[32], b[32], c[32];
	uint64_t now = now_realtime_ns();
	double age = sn->updated_ns && now > sn->updated_ns ? (double)(now - sn->updated_ns) / 1e9
							    : 0;
	int nc = 0, nr = 0, ns = 0;

	for (size_t i = 0; i < sn->nobjs; i++) {
		nc += sn->objs[i].kind == HM_OBJ_CACHE;
		nr += sn->objs[i].kind == HM_OBJ_REGION;
		ns += sn->objs[i].kind == HM_OBJ_STORE;
	}
	printf("process %d (%s): %d cache%s, %d region%s, %d store%s; fault mode %s; updated "
	       "%.1f s ago (every %u ms)\n",
	       (int)sn->pid, sn->comm, nc, nc == 1 ? "" : "s", nr, nr == 1 ? "" : "s", ns,
	       ns == 1 ? "" : "s", fault_mode_name(sn->fault_mode), age, sn->interval_ms);
	if (age > 2.0 + 8.0 * sn->interval_ms / 1000.0)
		printf("note: not updated for %.0f s: the process may be stopped\n", age);
	if (sn->truncated)
		printf("note: %u objects did not fit in the segment and are not shown\n",
		       sn->truncated);
	for (int kind = HM_OBJ_CACHE; kind <= HM_OBJ_STORE; kind++) {
		for (size_t i = 0; i < sn->nobjs; i++) {
			const struct hm_obj_stats *o = &sn->objs[i];
			const struct hm_stats *s = &o->stats;
			if ((int)o->kind != kind)
				continue;
			printf("\n");
			switch (kind) {
			case HM_OBJ_CACHE:
				hm_cli_bytes(a, sizeof a, s->budget_bytes);
				hm_cli_bytes(b, sizeof b, s->resident_bytes);
				printf("cache %u: policy %s, budget %s, resident %s, dirty %" PRIu64
				       " pages, pinned %" PRIu64 "\n",
				       o->id, o->name, a, b, s->dirty_pages, s->pinned_pages);
				print_counters(s, true);
				break;
			case HM_OBJ_REGION:
				hm_cli_bytes(a, sizeof a, o->length);
				hm_cli_bytes(b, sizeof b, o->page_size);
				hm_cli_bytes(c, sizeof c, s->resident_bytes);
				printf("region %u: %s, %s at 0x%" PRIx64 ", page %s, %s, cache %u, "
				       "store %u\n",
				       o->id, o->name, a, o->addr, b, hm_cli_mode_name(o->mode),
				       o->cache_id, o->store_id);
				printf("    memory     resident %s, dirty %" PRIu64 " pages, pinned %" PRIu64
				       "\n",
				       c, s->dirty_pages, s->pinned_pages);
				print_counters(s, true);
				break;
			case HM_OBJ_STORE:
				hm_cli_bytes(a, sizeof a, o->length);
				printf("store %u: %s, capacity %s%s%s%s%s\n", o->id, o->name, a,
				       o->props & HM_PROP_BYTE_ADDRESSABLE ? ", byte-addressable" : "",
				       o->props & HM_PROP_PERSISTENT ? ", persistent" : "",
				       o->props & HM_PROP_COHERENT ? ", coherent" : "",
				       o->props & HM_PROP_READONLY ? ", read-only" : "");
				print_counters(s, false);
				if (s->pool_bytes) {
					hm_cli_bytes(a, sizeof a, s->held_bytes);
					hm_cli_bytes(b, sizeof b, s->pool_bytes);
					printf("    pool       holds %s of pages in %s: compression ratio "
					       "%.2f\n",
					       a, b, (double)s->held_bytes / (double)s->pool_bytes);
				}
				break;
			}
		}
	}
}

void hm_cli_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* The fields of struct hm_stats, in order, as JSON members (after a comma). */
void hm_cli_json_stats(const struct hm_stats *s)
{
#define F(name) printf(", \"" #name "\": %" PRIu64, s->name)
	F(faults_missing);
	F(faults_minor);
	F(faults_wp);
	F(hits);
	F(misses);
	F(readahead);
	F(prefetch_used);
	F(prefetch_wasted);
	F(evictions);
	F(writebacks);
	F(writeback_errors);
	F(read_errors);
	F(bytes_read);
	F(bytes_written);
	F(resident_bytes);
	F(dirty_pages);
	F(pinned_pages);
	F(budget_bytes);
	F(fault_ns_total);
	F(faults_timed);
	F(fault_ns_p50);
	F(fault_ns_p99);
	F(fault_ns_p999);
	F(held_bytes);
	F(pool_bytes);
#undef F
}

static void print_json(const struct hm_snapshot *sn)
{
	static const char *const lists[] = { NULL, "caches", "regions", "stores" };
	uint64_t now = now_realtime_ns();

	printf("{\"version\": %d, \"pid\": %d, \"comm\": ", HM_SNAPSHOT_VERSION, (int)sn->pid);
	hm_cli_json_str(sn->comm);
	printf(", \"fault_mode\": \"%s\", \"start_time\": %" PRIu64 ", \"updated_ns\": %" PRIu64
	       ", \"age_ms\": %" PRIu64 ", \"interval_ms\": %u, \"truncated\": %u",
	       fault_mode_name(sn->fault_mode), sn->start_time, sn->updated_ns,
	       now > sn->updated_ns ? (now - sn->updated_ns) / 1000000 : 0, sn->interval_ms,
	       sn->truncated);
	for (int kind = HM_OBJ_CACHE; kind <= HM_OBJ_STORE; kind++) {
		int first = 1;
		printf(",\n \"%s\": [", lists[kind]);
		for (size_t i = 0; i < sn->nobjs; i++) {
			const struct hm_obj_stats *o = &sn->objs[i];
			if ((int)o->kind != kind)
				continue;
			printf("%s\n  {\"id\": %u", first ? "" : ",", o->id);
			first = 0;
			switch (kind) {
			case HM_OBJ_CACHE:
				printf(", \"policy\": ");
				hm_cli_json_str(o->name);
				break;
			case HM_OBJ_REGION:
				printf(", \"uri\": ");
				hm_cli_json_str(o->name);
				printf(", \"addr\": %" PRIu64 ", \"length\": %" PRIu64
				       ", \"page_size\": %" PRIu64 ", \"mode\": \"%s\", \"cache_id\": "
				       "%u, \"store_id\": %u",
				       o->addr, o->length, o->page_size, hm_cli_mode_name(o->mode),
				       o->cache_id, o->store_id);
				break;
			case HM_OBJ_STORE:
				printf(", \"uri\": ");
				hm_cli_json_str(o->name);
				printf(", \"capacity\": %" PRIu64 ", \"byte_addressable\": %s, "
				       "\"persistent\": %s, \"coherent\": %s, \"read_only\": %s",
				       o->length,
				       o->props & HM_PROP_BYTE_ADDRESSABLE ? "true" : "false",
				       o->props & HM_PROP_PERSISTENT ? "true" : "false",
				       o->props & HM_PROP_COHERENT ? "true" : "false",
				       o->props & HM_PROP_READONLY ? "true" : "false");
				/* held / pool: 0 where nothing is compressed or held. */
				printf(", \"compression_ratio\": %.3f",
				       o->stats.pool_bytes ? (double)o->stats.held_bytes /
								     (double)o->stats.pool_bytes
							   : 0.0);
				break;
			}
			hm_cli_json_stats(&o->stats);
			printf("}");
		}
		printf("%s]", first ? "" : "\n ");
	}
	printf("}\n");
}

int hm_cli_stat(int argc, char **argv)
{
	const char *pidarg = NULL;
	struct hm_snapshot *sn;
	bool json = false;
	char *end;
	long pid;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			stat_usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "hmmap stat: unknown option '%s'\n\n", argv[i]);
			stat_usage(stderr);
			return 2;
		} else if (pidarg) {
			fprintf(stderr, "hmmap stat: one PID only ('%s' is extra)\n\n", argv[i]);
			stat_usage(stderr);
			return 2;
		} else {
			pidarg = argv[i];
		}
	}
	if (!pidarg) {
		fprintf(stderr, "hmmap stat: missing PID\n\n");
		stat_usage(stderr);
		return 2;
	}
	pid = strtol(pidarg, &end, 10);
	if (*end || end == pidarg || pid <= 0 || pid > 0x7fffffffL) {
		fprintf(stderr, "hmmap stat: '%s' is not a process id\n", pidarg);
		return 2;
	}
	rc = hm_snapshot_read((pid_t)pid, &sn);
	if (rc) {
		fprintf(stderr, "hmmap stat: %s\n", hm_errormsg());
		return 1;
	}
	if (json)
		print_json(sn);
	else
		print_text(sn);
	hm_snapshot_free(sn);
	return 0;
}
