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
	CHECK(HM_ADV_NORMAL == 1);
	CHECK(HM_FAULT_THREAD == 1);
	CHECK(HM_CACHED != 0);
}

int main(void)
{
	RUN(header_alone);
	RUN(errormsg_is_per_thread_and_empty_at_start);
	RUN(enums_start_at_one);
	return test_done();
}
