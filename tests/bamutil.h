/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the tests of byte-addressable media (direct, hybrid, numa,
 * coherence): error expectations, and catching the SIGSEGV of a write to a
 * protected page without dying.
 *
 * The catcher must be installed before the process's first hybrid map, so
 * that hmmap's SIGSEGV handler (installed then) chains to it. Include after
 * harness.h and testutil.h.
 */
#ifndef HMMAP_TEST_BAMUTIL_H
#define HMMAP_TEST_BAMUTIL_H

#include <setjmp.h>
#include <signal.h>

#define EXPECT_RC(call, err)                                                             \
	do {                                                                             \
		int rc_ = (call);                                                        \
		CHECKF(rc_ == (err), "%s = %d, want %d (%s)", #call, rc_, (err),         \
		       hm_errormsg());                                                   \
		CHECKF(*hm_errormsg(), "%s: no message", #call);                         \
	} while (0)

#define EXPECT_OPEN_FAILS(uri, flags, err)                                               \
	do {                                                                             \
		struct hm_store *s_ = (struct hm_store *)1;                              \
		EXPECT_RC(hm_store_open(&s_, (uri), (flags)), (err));                    \
		CHECKF(s_ == NULL, "%s: store set on failure", uri);                     \
	} while (0)

static sigjmp_buf bam_jb;
static void *volatile bam_fault_addr;
static volatile int bam_fault_code;

static void bam_on_segv(int sig, siginfo_t *si, void *uc)
{
	bam_fault_addr = si->si_addr;
	bam_fault_code = si->si_code;
	siglongjmp(bam_jb, 1);
}

static inline void bam_catch_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = bam_on_segv;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
}

/*
 * Writes v at p. Returns 0 if the write went through, 1 if it took SIGSEGV
 * (access error) at p, -1 for a SIGSEGV elsewhere or of another kind.
 */
static inline int bam_write_faults(char *p, char v)
{
	bam_fault_addr = NULL;
	if (sigsetjmp(bam_jb, 1))
		return bam_fault_addr == (void *)p && bam_fault_code == SEGV_ACCERR ? 1 : -1;
	*(volatile char *)p = v;
	return 0;
}

#endif
