/* SPDX-License-Identifier: MIT */
/*
 * checksum FILE - sums a file of any size through a small hmmap cache and
 * prints the sum with the cache's statistics. The loop is what it would be
 * with mmap(2); only the call that maps the file differs.
 *
 *   HMMAP_CACHE_SIZE=16M ./build/examples/checksum /path/to/big.file
 */
#include <hmmap.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
	struct stat st;
	struct hm_stats s;
	uint64_t sum = 0;
	const unsigned char *p;

	if (argc != 2) {
		fprintf(stderr, "usage: checksum FILE\n");
		return 2;
	}
	if (stat(argv[1], &st) < 0 || st.st_size == 0) {
		perror(argv[1]);
		return 1;
	}
	p = hmmap(NULL, (size_t)st.st_size, PROT_READ, HM_CACHED, argv[1], 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "hmmap: %s\n", hm_errormsg());
		return 1;
	}
	hm_advise((void *)p, (size_t)st.st_size, HM_ADV_SEQUENTIAL);
	for (off_t i = 0; i < st.st_size; i++)
		sum = sum * 31 + p[i];
	hm_region_stats(hm_region_find(p), &s);
	printf("%016llx  %s\n", (unsigned long long)sum, argv[1]);
	printf("faults %llu, pages read %llu, evicted %llu, resident %llu KiB\n",
	       (unsigned long long)(s.faults_missing + s.faults_minor),
	       (unsigned long long)(s.misses + s.readahead), (unsigned long long)s.evictions,
	       (unsigned long long)(s.resident_bytes >> 10));
	return hmunmap((void *)p, (size_t)st.st_size) ? 1 : 0;
}
