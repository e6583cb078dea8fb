/* SPDX-License-Identifier: MIT */
/*
 * file: - a regular file or a block device.
 *
 * Reads go through O_DIRECT when the file system allows it, so that pages
 * are cached once (in hmmap's cache) and not twice (there and in the kernel
 * page cache), and so that a 4 KiB random read costs one device request
 * without kernel readahead. Writes whose length or offset is not a multiple
 * of the logical block size (a clipped last page) use a second, buffered
 * descriptor. A read past the end of the file is zero-filled.
 */
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"

struct file_store {
	int fd;      /* buffered */
	int dfd;     /* O_DIRECT, or -1 */
	uint32_t blk;
	bool blockdev;
};

static int file_open(void **priv, const char *path, int flags, struct hm_store_info *info)
{
	struct file_store *f;
	struct stat st;
	bool ro = flags & HM_STORE_RDONLY;
	int rc;

	if (!*path)
		return hm__error(-EINVAL, "file store: empty path");
	f = calloc(1, sizeof *f);
	if (!f)
		return hm__error(-ENOMEM, "out of memory");
	f->dfd = -1;
	/*
	 * A file that is not writable (a mode without a write bit included,
	 * even for root) opens read-only; a FIFO is refused below, not waited
	 * on (src/os/file.c).
	 */
	f->fd = hm__open_store_file(path, &ro, &st);
	if (f->fd < 0) {
		rc = f->fd;
		free(f);
		return hm__error_errno(rc, "cannot open '%s'", path);
	}
	memset(info, 0, sizeof *info);
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		if (ioctl(f->fd, BLKGETSIZE64, &sz) < 0) {
			rc = hm__error_errno(-errno, "BLKGETSIZE64 on '%s'", path);
			goto fail;
		}
		info->size = sz;
		f->blockdev = true;
		info->props |= HM_PROP_BLOCKDEV;
	} else if (S_ISREG(st.st_mode)) {
		info->size = (uint64_t)st.st_size;
	} else {
		rc = hm__error(-EINVAL, "'%s' is neither a regular file nor a block device", path);
		goto fail;
	}
	f->blk = 512;
	if (f->blockdev) {
		int bs;
		if (ioctl(f->fd, BLKSSZGET, &bs) == 0 && bs > 0)
			f->blk = (uint32_t)bs;
	}
	f->dfd = hm__open_file(path, (ro ? O_RDONLY : O_RDWR) | O_DIRECT, 0);
	info->props |= HM_PROP_PERSISTENT | HM_PROP_SHARED | (ro ? HM_PROP_READONLY : 0) |
		       (f->blockdev ? 0 : HM_PROP_RESIZABLE);
	info->align = f->dfd >= 0 ? f->blk : 1;
	*priv = f;
	return 0;
fail:
	close(f->fd);
	free(f);
	return rc;
}

static void file_close(void *priv)
{
	struct file_store *f = priv;

	if (f->dfd >= 0)
		close(f->dfd);
	close(f->fd);
	free(f);
}

static bool aligned(const struct file_store *f, const void *buf, size_t len, uint64_t off)
{
	return f->dfd >= 0 && !(((uintptr_t)buf | len | off) & (f->blk - 1));
}

static int file_read(void *priv, void *buf, size_t len, uint64_t off)
{
	struct file_store *f = priv;
	int fd = aligned(f, buf, len, off) ? f->dfd : f->fd;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EINVAL && fd == f->dfd) {
				/* The file system refused direct I/O after all. */
				fd = f->fd;
				continue;
			}
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
		/* A short direct read ends at EOF; anything after it is zeros. */
		if (fd == f->dfd && (done & (f->blk - 1)))
			break;
	}
	if (done < len)
		memset((char *)buf + done, 0, len - done);
	return 0;
}

static int file_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	struct file_store *f = priv;
	int fd = aligned(f, buf, len, off) ? f->dfd : f->fd;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EINVAL && fd == f->dfd) {
				fd = f->fd;
				continue;
			}
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int file_flush(void *priv)
{
	struct file_store *f = priv;

	return fsync(f->fd) < 0 ? -errno : 0;
}

const struct hm_store_ops hm__store_file = {
	.abi = HM_STORE_ABI,
	.scheme = "file",
	.summary = "a regular file or block device (O_DIRECT when possible)",
	.open = file_open,
	.close = file_close,
	.read = file_read,
	.write = file_write,
	.flush = file_flush,
};

/*
 * A file (or pmem: file or device) that is a tier of a chain holds the
 * chain's pages in slots only that chain knows: two chains over one file
 * (in this process or another) would overwrite each other's pages. An
 * exclusive flock() on the store's own descriptor, released when it closes,
 * refuses the second.
 */
int hm__file_tier_lock(struct hm_store *s)
{
	int fd = s->ops == &hm__store_file ? ((struct file_store *)s->priv)->fd : hm__pmem_fd(s);

	if (fd < 0)
		return 0;
	if (!flock(fd, LOCK_EX | LOCK_NB))
		return 0;
	if (errno == EWOULDBLOCK)
		return hm__error(-EBUSY, "tiers: '%s' is a tier of another chain already (in this "
					 "process or another): they would overwrite each other's pages",
				 s->uri);
	return hm__error_errno(-errno, "tiers: cannot lock '%s'", s->uri);
}
