/* SPDX-License-Identifier: MIT */
/* The public header compiles on its own, first, and says what it promises. */
#include <hmmap.h>

#include <errno.h>

#include "harness.h"

static void header_alone(void)
{
	char want[32];

	snprintf(want, sizeof want, "%d.%d.%d", HM_VERSION_MAJOR, HM_VERSION_MINOR,
		 HM_VERSION_PATCH);
	CHECKF(!strcmp(hm_version(), want), "library %s, header %s", hm_version(), want);
}

static void errormsg_is_per_thread_and_empty_at_start(void)
{
	CHECK(hm_errormsg() != NULL);
	CHECK(hm_errormsg()[0] == 0);
	CHECK(hm_store_open(NULL, "mem:1M", 0) == -EINVAL);
	CHECK(hm_errormsg()[0] != 0);
}

static void enums_start_at_one(void)
{
	CHECK(HM_FAULT_THREAD == 1);
	CHECK(HM_CACHED != 0);
}

/* mmap code ports with the names it has: the header brings them, and the values agree. */
static void mmap_names_and_values(void)
{
	void *p = hmmap(NULL, 4096, PROT_READ | PROT_WRITE, HM_CACHED, "mem:4096", 0);

	CHECKF(p != MAP_FAILED, "%s", hm_errormsg());
	CHECK(hm_advise(p, 4096, MADV_SEQUENTIAL) == 0 && hm_advise(p, 4096, MADV_WILLNEED) == 0);
	CHECK(hmsync(p, 4096, MS_SYNC) == 0 && hmunmap(p, 4096) == 0);
	CHECK(HM_ADV_NORMAL == MADV_NORMAL && HM_ADV_RANDOM == MADV_RANDOM &&
	      HM_ADV_SEQUENTIAL == MADV_SEQUENTIAL && HM_ADV_WILLNEED == MADV_WILLNEED &&
	      HM_ADV_DONTNEED == MADV_DONTNEED);
	CHECK(HM_SYNC_SYNC == MS_SYNC && HM_SYNC_ASYNC == MS_ASYNC &&
	      HM_SYNC_INVALIDATE == MS_INVALIDATE);
}

int main(void)
{
	RUN(header_alone);
	RUN(errormsg_is_per_thread_and_empty_at_start);
	RUN(enums_start_at_one);
	RUN(mmap_names_and_values);
	return test_done();
}
