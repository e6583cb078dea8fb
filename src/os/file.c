/* SPDX-License-Identifier: MIT */
/*
 * Opening files whose paths a user gave: a store's file or device, the
 * stores file, a trace being written, a key or password file.
 *
 * Any such path may name a FIFO, and open(2) of a FIFO waits for the other
 * end: a read-only open until a writer comes, a write-only one until a
 * reader does, which may be never. hmmap promises an error for a bad
 * argument, not a call that hangs, so these opens are non-blocking;
 * callers then check the type of what they opened and refuse what they
 * cannot use.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/file.h"

int hm__open_file(const char *path, int flags, mode_t mode)
{
	int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode);
	int fl;

	if (fd < 0)
		return -errno;
	/* Later reads and writes block as the caller expects. */
	if (!(flags & O_NONBLOCK) && ((fl = fcntl(fd, F_GETFL)) < 0 ||
				      fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)) {
		int rc = -errno;
		close(fd);
		errno = -rc;
		return rc;
	}
	return fd;
}

int hm__open_store_file(const char *path, bool *ro, struct stat *st)
{
	int fd = hm__open_file(path, *ro ? O_RDONLY : O_RDWR, 0);

	if (fd < 0 && !*ro && (fd == -EACCES || fd == -EROFS || fd == -EPERM)) {
		*ro = true;
		fd = hm__open_file(path, O_RDONLY, 0);
	}
	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0)
		goto fail;
	if (!*ro && S_ISREG(st->st_mode) && !(st->st_mode & 0222)) {
		int rfd = hm__open_file(path, O_RDONLY, 0);
		if (rfd < 0)
			goto fail;
		close(fd);
		fd = rfd;
		*ro = true;
		/* The same file, unless it was replaced in between: describe this one. */
		if (fstat(fd, st) < 0)
			goto fail;
	}
	return fd;
fail:
	{
		int rc = -errno;
		close(fd);
		errno = -rc;
		return rc;
	}
}
