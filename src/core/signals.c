/* SPDX-License-Identifier: MIT */
/*
 * Signals and hmmap's own I/O.
 *
 * hmmap's threads never take the application's signals: each blocks them
 * all when it starts (hm__block_signals()).
 *
 * A write to a connection whose peer has gone raises SIGPIPE in the
 * writing thread, and its default action ends the process. A remote
 * store must instead see the error, reconnect and retry, but hiredis
 * writes with write(), which cannot pass MSG_NOSIGNAL. So a store's I/O
 * runs between hm__nosigpipe_begin() and hm__nosigpipe_end(), with
 * SIGPIPE blocked in the calling thread, and where a connection fails
 * the store takes the SIGPIPE it may have raised (hm__sigpipe_take())
 * before the mask is restored. Threads where SIGPIPE is blocked already
 * pay nothing: hmmap's own, and the application's while hmmap's SIGBUS
 * handler runs (its mask holds SIGPIPE).
 */
#include <signal.h>
#include <time.h>

#include "core/internal.h"

__thread bool hm__sigpipe_blocked;

void hm__block_signals(void)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	hm__sigpipe_blocked = true;
}

void hm__nosigpipe_begin(struct hm_nosigpipe *g)
{
	sigset_t pipe;

	g->unblock = false;
	if (hm__sigpipe_blocked)
		return;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, &pipe, &g->old))
		return;
	g->unblock = !sigismember(&g->old, SIGPIPE);
	hm__sigpipe_blocked = g->unblock;
}

void hm__sigpipe_take(void)
{
	const struct timespec zero = { 0, 0 };
	sigset_t pipe;

	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	while (sigtimedwait(&pipe, NULL, &zero) == SIGPIPE)
		;
}

void hm__nosigpipe_end(struct hm_nosigpipe *g)
{
	sigset_t pipe;

	if (!g->unblock)
		return;
	/* Whatever failed without saying so: unblocked, it would end the process. */
	hm__sigpipe_take();
	hm__sigpipe_blocked = false;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_UNBLOCK, &pipe, NULL);
}
