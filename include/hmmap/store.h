/* SPDX-License-Identifier: MIT */
/*
 * hmmap/store.h - the interface of a store plug-in (the media layer).
 *
 * A store moves bytes between a buffer and its medium at byte offsets. The
 * core calls it only through these hooks and never learns what the medium is.
 * Buffers are page-aligned and lengths are multiples of the region's page
 * size, except a last write that is clipped to the mapped end.
 *
 * Threading: read, write and flush may be called from many threads at once,
 * on the fault path (read) and the eviction path (write); they may block on
 * I/O but must not touch memory that hmmap manages other than the buffer
 * they are given, and must not call back into hmmap.
 */
#ifndef HMMAP_STORE_H
#define HMMAP_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HM_STORE_ABI 1

/* Properties a store declares. */
#define HM_PROP_BYTE_ADDRESSABLE 0x01
#define HM_PROP_PERSISTENT 0x02
#define HM_PROP_COHERENT 0x04
#define HM_PROP_READONLY 0x08 /* opened read-only */
#define HM_PROP_BLOCKDEV 0x10
#define HM_PROP_RESIZABLE 0x20 /* writes past the end extend it (files) */
/*
 * Direct mappings of the medium are synchronous (MAP_SYNC on a DAX file
 * system, or device-DAX): a CPU cache flush (clwb/clflushopt + sfence) makes
 * a store durable. Without it a persistent byte-addressable store needs
 * msync/fsync, as the page cache sits between the mapping and the medium.
 */
#define HM_PROP_MAP_SYNC 0x40
/*
 * The contents are the user's, not this open's: a file or a device that
 * others may read and that outlives the process, whatever its medium (a
 * file on tmpfs is not persistent, and is still the user's file). As with
 * a MAP_SHARED mapping, the writes of a writable region over it are synced
 * at a normal exit, and tools (`hmmap probe`) never change its contents
 * unasked. A store without it (mem:, lz4:, a remote store's keys of one
 * open) is private to the process that opened it. HM_PROP_PERSISTENT
 * implies it: hm_store_open() adds it to a store that declares that.
 */
#define HM_PROP_SHARED 0x80

struct hm_store_info {
	uint64_t size;   /* bytes; reads past it give zeros */
	uint32_t props;  /* HM_PROP_* */
	uint32_t align;  /* preferred I/O alignment in bytes (512 for O_DIRECT) */
};

struct hm_store_ops {
	uint32_t abi;        /* HM_STORE_ABI */
	const char *scheme;  /* "file", "mem" */
	const char *summary; /* one line for listings and docs (required) */

	/*
	 * Opens the store named by `rest`, the URI text after "scheme:".
	 * `flags` holds HM_STORE_RDONLY. Fills *info. Returns 0 or -errno with
	 * a message set through hm_plugin_error() (hmmap.h).
	 */
	int (*open)(void **priv, const char *rest, int flags, struct hm_store_info *info);
	void (*close)(void *priv);

	/*
	 * Reads len bytes at off into buf. Bytes past the end of the store are
	 * zero-filled. Returns 0 or -errno; never a short success.
	 */
	int (*read)(void *priv, void *buf, size_t len, uint64_t off);
	/* Writes len bytes at off. Returns 0 or -errno; never a short success. */
	int (*write)(void *priv, const void *buf, size_t len, uint64_t off);
	/* Makes completed writes durable (fsync). Optional. */
	int (*flush)(void *priv);
	/* Optional run-time control ("key" or "key=value"); see hm_store_ctl(). */
	int (*ctl)(void *priv, const char *key, const char *value);
	/*
	 * Optional, for byte-addressable stores: the address of the len bytes
	 * at off, or NULL when they cannot be reached directly (past the end,
	 * or the store emulates a delay that read() must apply). The core then
	 * copies from it without a bounce buffer. The memory must stay valid
	 * while the store is open.
	 */
	const void *(*addr)(void *priv, uint64_t off, size_t len);
	/*
	 * Optional, for stores a region may map itself (HM_DIRECT, HM_HYBRID):
	 * maps len bytes of the medium from off at addr, replacing what is
	 * there (MAP_FIXED), shared, with prot. off is page-aligned and
	 * off + len may pass the end only within its last page. Returns 0 or
	 * -errno. Called from ordinary context and from the hybrid write-back
	 * path, which may run in a SIGSEGV handler: use only async-signal-safe
	 * calls (mmap).
	 */
	int (*map)(void *priv, void *addr, size_t len, uint64_t off, int prot);
	/*
	 * Optional, with map: makes stores to [off, off+len) made through any
	 * mapping of the medium durable (a CPU cache flush under MAP_SYNC, msync
	 * otherwise); 0 at once for a volatile medium. Returns 0 or -errno.
	 */
	int (*persist)(void *priv, uint64_t off, size_t len);
};

/* Every store compiled in, in a stable order, then those registered. */
const struct hm_store_ops *const *hm_store_list(size_t *count);

/*
 * Adds a store of the program's or a plug-in library's own (see "Plug-ins"
 * in hmmap.h): URIs "SCHEME:..." open it, `rest` being the text after the
 * colon. open, close, read and write are required; persist needs map.
 * Returns 0, -EINVAL, -EEXIST or -ENOSPC.
 */
int hm_store_register(const struct hm_store_ops *ops);

#ifdef __cplusplus
}
#endif
#endif
