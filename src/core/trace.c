/* SPDX-License-Identifier: MIT */
/*
 * Recording a region's fault sequence: one page index per line, the format
 * `hmmap replay` reads, so that a user can find the best policy for a real
 * run offline. What user space can see of the access stream is its faults:
 * demand misses and sampled references (hint faults); both are recorded,
 * readahead is not (nobody asked for those pages yet).
 *
 * Recording runs on the fault path, possibly in a SIGBUS handler: numbers
 * are formatted by hand into a buffer under a mutex and written with
 * write(2), with no stdio and no allocation. A region that is not traced
 * pays one relaxed load per fault. A recorder announces itself in
 * trace_users before it takes the trace, and stopping waits for the
 * recorders that may hold it before it frees it.
 *
 * The first write error ends recording (a trace with a gap would replay as
 * a different run) and is returned when the trace stops; a trace that
 * ends with its region says so on stderr, since nobody else can.
 *
 * A normal exit (exit(), or a return from main) ends every trace still
 * open, as it flushes stdio's buffers: a program that never unmaps its
 * regions must not lose its trace. Other threads may still be faulting
 * then, so the exit handler neither frees a trace nor waits for its
 * recorders: under the trace's lock it writes the buffer out, closes the
 * file and marks the trace closed, and a later recorder drops its record.
 * Faults after that point are not recorded (the program is ending).
 */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"

struct hm_trace {
	int fd;
	int err; /* the first write error (-errno), or 0 */
	char *path;
	pthread_mutex_t lock;
	bool closed; /* ended at exit: the file is closed, nothing more is recorded */
	uint32_t n;
	uint64_t records;
	char buf[64 * 1024];
};

static int flush_locked(struct hm_trace *t)
{
	uint32_t off = 0;

	while (off < t->n) {
		ssize_t w = write(t->fd, t->buf + off, t->n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			t->n = 0;
			t->err = -errno;
			return t->err;
		}
		off += (uint32_t)w;
	}
	t->n = 0;
	return 0;
}

void hm__trace_record(struct hm_region *r, uint64_t idx)
{
	struct hm_trace *t;
	char tmp[24];
	int k = 0;

	if (!atomic_load_explicit(&r->trace, memory_order_relaxed))
		return;
	/* Announced before the trace is taken: see trace_stop(). */
	atomic_fetch_add(&r->trace_users, 1);
	t = atomic_load(&r->trace);
	if (!t)
		goto out;
	do {
		tmp[k++] = (char)('0' + idx % 10);
		idx /= 10;
	} while (idx);
	pthread_mutex_lock(&t->lock);
	if (!t->err && !t->closed) {
		if (t->n + (uint32_t)k + 1 > sizeof t->buf)
			flush_locked(t);
		if (!t->err) {
			while (k)
				t->buf[t->n++] = tmp[--k];
			t->buf[t->n++] = '\n';
			t->records++;
		}
	}
	pthread_mutex_unlock(&t->lock);
out:
	atomic_fetch_sub(&r->trace_users, 1);
}

/*
 * Ends recording: returns the first write error, and sets *path (to free)
 * if asked. A recorder that loaded the trace before the exchange has
 * announced itself before that load; waiting for trace_users to drain
 * waits for it (both sides are sequentially consistent).
 */
static int trace_stop(struct hm_region *r, char **path)
{
	struct hm_trace *t = atomic_exchange(&r->trace, NULL);
	int rc;

	if (path)
		*path = NULL;
	if (!t)
		return 0;
	while (atomic_load(&r->trace_users))
		sched_yield();
	if (t->closed) {
		/* Ended at exit, which said so already if it was incomplete. */
		rc = 0;
	} else {
		rc = t->err ? t->err : flush_locked(t);
		if (close(t->fd) < 0 && !rc)
			rc = -errno;
	}
	pthread_mutex_destroy(&t->lock);
	if (path)
		*path = t->path;
	else
		free(t->path);
	free(t);
	return rc ? hm__error_errno(rc, "writing the fault trace failed") : 0;
}

int hm_region_trace(struct hm_region *r, const char *path)
{
	struct hm_trace *t;
	int fd;

	if (!r)
		return hm__error(-EINVAL, "hm_region_trace: NULL region");
	if (!path)
		return trace_stop(r, NULL);
	if (!*path)
		return hm__error(-EINVAL, "hm_region_trace: empty path");
	if (atomic_load(&r->trace))
		return hm__error(-EBUSY, "region is already being traced");
	/*
	 * Non-blocking (src/os/file.c): a FIFO with a reader takes the trace,
	 * one without fails with -ENXIO rather than blocking the caller.
	 */
	fd = hm__open_file(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd == -ENXIO)
		return hm__error(fd, "cannot write trace file '%s': a FIFO with no reader", path);
	if (fd < 0)
		return hm__error_errno(fd, "cannot create trace file '%s'", path);
	t = calloc(1, sizeof *t);
	if (!t || !(t->path = strdup(path))) {
		free(t);
		close(fd);
		return hm__error(-ENOMEM, "out of memory");
	}
	t->fd = fd;
	/* Error-checking: the exit handler must not wait for its own thread (trace_exit()). */
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(&t->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	struct hm_trace *expected = NULL;
	if (!atomic_compare_exchange_strong(&r->trace, &expected, t)) {
		close(fd);
		pthread_mutex_destroy(&t->lock);
		free(t->path);
		free(t);
		return hm__error(-EBUSY, "region is already being traced");
	}
	return 0;
}

int hm__trace_region_start(struct hm_region *r)
{
	static _Atomic int seq;
	const char *path = getenv("HMMAP_TRACE");
	char name[4096];
	int rc;

	if (!path || !*path)
		return 0;
	/* The first region traces to PATH, later ones to PATH.N. */
	int n = atomic_fetch_add(&seq, 1);
	if (n == 0)
		snprintf(name, sizeof name, "%s", path);
	else
		snprintf(name, sizeof name, "%s.%d", path, n);
	/* A trace asked for and not written would be lost in silence. */
	rc = hm_region_trace(r, name);
	return rc ? hm__error_wrap(rc, "HMMAP_TRACE='%s' is not valid", path) : 0;
}

void hm__trace_region_end(struct hm_region *r)
{
	char *path;

	if (trace_stop(r, &path) && path)
		fprintf(stderr, "hmmap: the fault trace '%s' is incomplete: %s\n", path,
			hm_errormsg());
	free(path);
}

/*
 * At a normal exit, called for every region of the process that is still
 * mapped (region.c's exit handler holds it): writes out and closes the
 * region's trace, and says on stderr if it is incomplete. The trace stays
 * attached and allocated, since a recorder in another thread may hold it;
 * it only records nothing more. A recorder on this very thread (exit()
 * from a signal handler that interrupted a fault) holds the lock: the
 * buffer is then mid-update, and the trace is reported incomplete.
 */
void hm__trace_region_exit(struct hm_region *r)
{
	struct hm_trace *t;
	int rc;

	atomic_fetch_add(&r->trace_users, 1);
	t = atomic_load(&r->trace);
	if (!t)
		goto out;
	rc = pthread_mutex_lock(&t->lock);
	if (rc) {
		fprintf(stderr, "hmmap: at exit, the fault trace '%s' is incomplete: exit() "
				"interrupted a fault that was recording to it\n",
			t->path);
		goto out;
	}
	if (!t->closed) {
		rc = t->err ? t->err : flush_locked(t);
		if (close(t->fd) < 0 && !rc)
			rc = -errno;
		t->fd = -1;
		t->closed = true;
		if (rc) {
			hm__error_errno(rc, "writing the fault trace failed");
			fprintf(stderr, "hmmap: at exit, the fault trace '%s' is incomplete: %s\n",
				t->path, hm_errormsg());
		}
	}
	pthread_mutex_unlock(&t->lock);
out:
	atomic_fetch_sub(&r->trace_users, 1);
}
