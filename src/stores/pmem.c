/* SPDX-License-Identifier: MIT */
/*
 * pmem: - byte-addressable memory behind a file: a file on a DAX file system
 * (persistent memory in app-direct mode), a device-DAX node (/dev/daxX.Y),
 * or, where there is no such hardware, any regular file (tmpfs, ext4).
 *
 *   pmem:PATH[,size=SIZE][,sync=auto|map_sync|msync]
 *
 * The whole store is mapped shared once, at open: reads and writes of the
 * cached mode are memcpy to and from that mapping, and direct and hybrid
 * regions map the same file pages again at their own addresses, so every
 * view of the store meets in the same physical memory (the page cache, or
 * the persistent memory itself under DAX).
 *
 * Persistence. The mapping is first tried with MAP_SHARED_VALIDATE |
 * MAP_SYNC, which only a DAX file system accepts: then the page tables point
 * at the medium, metadata is kept durable by the file system at fault time,
 * and a store is durable once its cache lines are written back (clwb, else
 * clflushopt, else clflush) and fenced (sfence). A device-DAX node is always
 * synchronous. Anywhere else the page cache sits in between and msync/fsync
 * makes stores durable. Which of the two applies is the store property
 * HM_PROP_MAP_SYNC, read by hm_store_persistence() and `hmmap probe`.
 *
 * sync=map_sync insists on MAP_SYNC (an error where the file system refuses
 * it); sync=msync never tries it.
 */
#include <cpuid.h>
#include <fcntl.h>
#include <immintrin.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/direct.h"

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

enum { SYNC_AUTO, SYNC_MAP_SYNC, SYNC_MSYNC };

struct pmem_store {
	int fd;
	char *map;      /* the whole store, shared */
	uint64_t size;
	int prot;
	int map_flags;  /* MAP_SHARED, or MAP_SHARED_VALIDATE | MAP_SYNC */
	bool sync;      /* stores are durable after a CPU cache flush */
	bool devdax;
	int want;       /* SYNC_* */
	uint64_t want_size;
	/* What size= did to the file, so that a failed hmmap() can undo it. */
	char *made;        /* the path of a file this open created, else NULL */
	bool grew;         /* the open extended an existing file */
	uint64_t old_size; /* its size before */
};

/* ---- CPU cache flushing ---- */

enum { FLUSH_CLFLUSH, FLUSH_CLFLUSHOPT, FLUSH_CLWB };
static int flush_insn = -1;

static int detect_flush(void)
{
	unsigned a, b, c, d;

	if (flush_insn >= 0)
		return flush_insn;
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 24)))
		flush_insn = FLUSH_CLWB;
	else if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 23)))
		flush_insn = FLUSH_CLFLUSHOPT;
	else
		flush_insn = FLUSH_CLFLUSH;
	return flush_insn;
}

__attribute__((target("clwb"))) static void flush_clwb(const char *p, const char *end)
{
	for (; p < end; p += 64)
		_mm_clwb((void *)p);
}

__attribute__((target("clflushopt"))) static void flush_clflushopt(const char *p, const char *end)
{
	for (; p < end; p += 64)
		_mm_clflushopt((void *)p);
}

/*
 * Writes the cache lines of [addr, addr+len) back to memory and fences: the
 * persistence step of a MAP_SYNC or device-DAX mapping. clwb keeps the lines
 * in the cache (the data is likely read again); clflush is ordered by itself
 * and needs no fence, but one costs nothing here.
 */
void hm__cpu_flush(const void *addr, size_t len)
{
	const char *p = (const char *)((uintptr_t)addr & ~(uintptr_t)63);
	const char *end = (const char *)addr + len;

	switch (detect_flush()) {
	case FLUSH_CLWB:
		flush_clwb(p, end);
		break;
	case FLUSH_CLFLUSHOPT:
		flush_clflushopt(p, end);
		break;
	default:
		for (; p < end; p += 64)
			_mm_clflush(p);
	}
	_mm_sfence();
}

const char *hm__cpu_flush_name(void)
{
	switch (detect_flush()) {
	case FLUSH_CLWB:
		return "clwb+sfence";
	case FLUSH_CLFLUSHOPT:
		return "clflushopt+sfence";
	}
	return "clflush";
}

/* ---- opening ---- */

static int pmem_opt(void *ctx, const char *k, const char *v)
{
	struct pmem_store *p = ctx;

	if (!strcmp(k, "size")) {
		if (hm_parse_size(v, &p->want_size) || p->want_size == 0 ||
		    p->want_size > (1ull << 46))
			return hm__error(-EINVAL, "pmem store: size='%s' is not a size from 1 byte to "
						  "64T", v);
		return 0;
	}
	if (!strcmp(k, "sync")) {
		if (!strcmp(v, "auto"))
			p->want = SYNC_AUTO;
		else if (!strcmp(v, "map_sync"))
			p->want = SYNC_MAP_SYNC;
		else if (!strcmp(v, "msync"))
			p->want = SYNC_MSYNC;
		else
			return hm__error(-EINVAL, "pmem store: sync='%s' is not auto, map_sync or msync",
					 v);
		return 0;
	}
	return hm__error(-EINVAL, "pmem store: unknown option '%s' (known: size, sync)", k);
}

/* The size of a device-DAX node, from sysfs. */
static int devdax_size(const struct stat *st, uint64_t *size)
{
	char path[128];
	unsigned long long v;
	FILE *f;
	int n;

	snprintf(path, sizeof path, "/sys/dev/char/%u:%u/size", major(st->st_rdev),
		 minor(st->st_rdev));
	f = fopen(path, "re");
	if (!f)
		return -ENOTSUP;
	n = fscanf(f, "%llu", &v);
	fclose(f);
	if (n != 1 || !v)
		return -EINVAL;
	*size = v;
	return 0;
}

/*
 * Takes back what size= did to the file: removes a file the open created,
 * or shrinks one it extended to its old size.
 */
static void undo_size(struct pmem_store *p)
{
	if (p->made)
		unlink(p->made);
	else if (p->grew && p->fd >= 0)
		(void)ftruncate(p->fd, (off_t)p->old_size);
}

static int pmem_open(void **priv, const char *rest, int flags, struct hm_store_info *info)
{
	char path[4096];
	const char *comma = strchr(rest, ',');
	size_t n = comma ? (size_t)(comma - rest) : strlen(rest);
	bool ro = flags & HM_STORE_RDONLY;
	struct pmem_store *p;
	struct statfs sfs;
	struct stat st;
	int rc, mrc = 0;

	if (n == 0)
		return hm__error(-EINVAL, "pmem store: missing path (pmem:/mnt/pmem/file)");
	if (n >= sizeof path)
		return hm__error(-ENAMETOOLONG, "pmem store: path too long");
	if (comma && !comma[1])
		return hm__error(-EINVAL, "pmem store: empty option after ',' in '%s'", rest);
	memcpy(path, rest, n);
	path[n] = 0;
	p = calloc(1, sizeof *p);
	if (!p)
		return hm__error(-ENOMEM, "out of memory");
	p->fd = -1;
	p->map = MAP_FAILED;
	rc = hm_opts_parse(comma ? comma + 1 : "", pmem_opt, p);
	if (rc)
		goto fail;
	/*
	 * size= creates or extends the file; a read-only open accepts it for a
	 * file that is already that large (the URI that made it opens it again).
	 * As for file: (src/os/file.c), a file that is not writable, a mode
	 * without a write bit included (even for root), opens read-only, and a
	 * FIFO is refused below, not waited on.
	 */
	p->fd = hm__open_store_file(path, &ro, &st);
	if (p->fd < 0 && errno == ENOENT && p->want_size && !ro) {
		p->fd = hm__open_file(path, O_RDWR | O_CREAT | O_EXCL, 0644);
		if (p->fd < 0 && errno == EEXIST) /* made by someone else meanwhile */
			p->fd = hm__open_store_file(path, &ro, &st);
		else if (p->fd >= 0 && !(p->made = strdup(path))) {
			rc = hm__error(-ENOMEM, "out of memory");
			goto fail;
		}
	}
	if (p->fd < 0) {
		rc = errno == ENOENT && ro && p->want_size ?
			     hm__error(-ENOENT, "pmem store: '%s' does not exist, and a read-only "
						"open cannot create it (size=)", path) :
			     hm__error_errno(-errno, "pmem store: cannot open '%s'", path);
		goto fail;
	}
	if (fstat(p->fd, &st) < 0) {
		rc = hm__error_errno(-errno, "pmem store: cannot stat '%s'", path);
		goto fail;
	}
	if (S_ISCHR(st.st_mode)) {
		if (p->want_size) {
			rc = hm__error(-EINVAL, "pmem store: '%s' is a device; size= applies to files",
				       path);
			goto fail;
		}
		rc = devdax_size(&st, &p->size);
		if (rc) {
			rc = hm__error(-EINVAL, "pmem store: '%s' is a character device but not "
						"device-DAX (no size in /sys/dev/char)", path);
			goto fail;
		}
		p->devdax = true;
	} else if (S_ISREG(st.st_mode)) {
		p->size = (uint64_t)st.st_size;
		if (p->want_size > p->size && ro) {
			rc = hm__error(-EINVAL, "pmem store: size= would extend '%s' (%llu bytes), "
						"which a read-only open cannot", path,
				       (unsigned long long)p->size);
			goto fail;
		}
		if (p->want_size > p->size) {
			p->old_size = p->size;
			p->grew = !p->made;
			if (ftruncate(p->fd, (off_t)p->want_size) < 0) {
				rc = hm__error_errno(-errno, "pmem store: cannot extend '%s' to %llu "
							     "bytes", path,
						     (unsigned long long)p->want_size);
				goto fail;
			}
			p->size = p->want_size;
		}
		if (p->size == 0) {
			rc = hm__error(-EINVAL, "pmem store: '%s' is empty (give size=SIZE to extend "
						"it)", path);
			goto fail;
		}
		if (p->size > (1ull << 46)) {
			rc = hm__error(-EFBIG, "pmem store: '%s' is larger than 64 TiB", path);
			goto fail;
		}
	} else {
		rc = hm__error(-EINVAL, "pmem store: '%s' is neither a regular file nor a "
					"device-DAX node", path);
		goto fail;
	}
	p->prot = PROT_READ | (ro ? 0 : PROT_WRITE);
	if (p->want != SYNC_MSYNC) {
		p->map = mmap(NULL, p->size, p->prot, MAP_SHARED_VALIDATE | MAP_SYNC, p->fd, 0);
		if (p->map != MAP_FAILED) {
			p->map_flags = MAP_SHARED_VALIDATE | MAP_SYNC;
			p->sync = true;
		} else {
			mrc = errno;
		}
	}
	if (p->map == MAP_FAILED && p->want == SYNC_MAP_SYNC) {
		rc = hm__error(-EOPNOTSUPP, "pmem store: the file system of '%s' refuses MAP_SYNC "
					    "(%s): it is not DAX; use sync=auto to fall back to msync",
			       path, strerror(mrc));
		goto fail;
	}
	if (p->map == MAP_FAILED) {
		p->map = mmap(NULL, p->size, p->prot, MAP_SHARED, p->fd, 0);
		p->map_flags = MAP_SHARED;
		if (p->map == MAP_FAILED) {
			rc = hm__error_errno(-errno, "pmem store: cannot map '%s'", path);
			goto fail;
		}
	}
	/* Device-DAX maps the medium without a page cache in every case. */
	if (p->devdax)
		p->sync = true;
	memset(info, 0, sizeof *info);
	info->size = p->size;
	info->align = 1;
	info->props = HM_PROP_BYTE_ADDRESSABLE | HM_PROP_COHERENT | HM_PROP_SHARED |
		      (ro ? HM_PROP_READONLY : 0) | (p->sync ? HM_PROP_MAP_SYNC : 0);
	/*
	 * tmpfs and ramfs forget everything at reboot: byte-addressable, not
	 * persistent, but the file is still the user's (HM_PROP_SHARED).
	 */
	if (p->devdax || fstatfs(p->fd, &sfs) < 0 ||
	    (sfs.f_type != TMPFS_MAGIC && sfs.f_type != RAMFS_MAGIC))
		info->props |= HM_PROP_PERSISTENT;
	*priv = p;
	return 0;
fail:
	undo_size(p);
	if (p->fd >= 0)
		close(p->fd);
	free(p->made);
	free(p);
	return rc;
}

static void pmem_close(void *priv)
{
	struct pmem_store *p = priv;

	munmap(p->map, p->size);
	close(p->fd);
	free(p->made);
	free(p);
}

/* For an hmmap() that failed: takes back what the open did to the file. */
void hm__pmem_undo_open(void *priv)
{
	undo_size(priv);
}

static int pmem_read(void *priv, void *buf, size_t len, uint64_t off)
{
	struct pmem_store *p = priv;
	size_t n = len;

	if (off >= p->size)
		n = 0;
	else if (len > p->size - off)
		n = (size_t)(p->size - off);
	memcpy(buf, p->map + off, n);
	if (n < len)
		memset((char *)buf + n, 0, len - n);
	return 0;
}

static int pmem_write(void *priv, const void *buf, size_t len, uint64_t off)
{
	struct pmem_store *p = priv;

	if (!(p->prot & PROT_WRITE))
		return -EROFS;
	if (off >= p->size || len > p->size - off)
		return -ENOSPC;
	memcpy(p->map + off, buf, len);
	/* Durable now under MAP_SYNC; flush() is the fence that orders it. */
	if (p->sync)
		hm__cpu_flush(p->map + off, len);
	return 0;
}

static int pmem_flush(void *priv)
{
	struct pmem_store *p = priv;

	if (p->sync) {
		_mm_sfence();
		return 0;
	}
	return fsync(p->fd) < 0 ? -errno : 0;
}

static const void *pmem_addr(void *priv, uint64_t off, size_t len)
{
	struct pmem_store *p = priv;

	if (off >= p->size || len > p->size - off)
		return NULL;
	return p->map + off;
}

static int pmem_map(void *priv, void *addr, size_t len, uint64_t off, int prot)
{
	struct pmem_store *p = priv;
	void *m;

	if ((prot & PROT_WRITE) && !(p->prot & PROT_WRITE))
		return -EACCES;
	if (off >= p->size)
		return -EINVAL;
	m = mmap(addr, len, prot, p->map_flags | MAP_FIXED, p->fd, (off_t)off);
	return m == MAP_FAILED ? -errno : 0;
}

static int pmem_persist(void *priv, uint64_t off, size_t len)
{
	struct pmem_store *p = priv;
	uint64_t a, e;

	if (off >= p->size)
		return 0;
	if (len > p->size - off)
		len = (size_t)(p->size - off);
	if (p->sync) {
		hm__cpu_flush(p->map + off, len);
		return 0;
	}
	/* msync of any shared mapping of the file range writes that range back. */
	a = off & ~4095ull;
	e = off + len;
	return msync(p->map + a, (size_t)(e - a), MS_SYNC) < 0 ? -errno : 0;
}

const struct hm_store_ops hm__store_pmem = {
	.abi = HM_STORE_ABI,
	.scheme = "pmem",
	.summary = "a DAX file, device-DAX node or any file, byte-addressable (MAP_SYNC when "
		   "offered)",
	.open = pmem_open,
	.close = pmem_close,
	.read = pmem_read,
	.write = pmem_write,
	.flush = pmem_flush,
	.addr = pmem_addr,
	.map = pmem_map,
	.persist = pmem_persist,
};

/* The descriptor of a pmem: store, -1 for any other. */
int hm__pmem_fd(struct hm_store *s)
{
	return s->ops == &hm__store_pmem ? ((struct pmem_store *)s->priv)->fd : -1;
}
