/* SPDX-License-Identifier: MIT */
/*
 * hmmap.h - the public interface of libhmmap, a user-space heterogeneous
 * memory mapper.
 *
 * A *store* is where bytes live (a file, RAM, ...), opened by URI. A *cache*
 * is a DRAM budget with a replacement policy. A *region* is a virtual address
 * range backed by a store at an offset and served through a cache: its pages
 * are read from the store on first touch (a userfaultfd fault), tracked for
 * writes, written back when dirty, and evicted when the cache needs room.
 *
 * Conventions: every hm_* call that can fail returns 0 or a negative errno
 * and never sets errno; hm_errormsg() gives a sentence about the last failure
 * of the calling thread. Constructors return the object through an
 * out-parameter. The three mmap-shaped calls hmmap(), hmunmap() and hmsync()
 * instead behave like mmap(2), munmap(2) and msync(2): MAP_FAILED or -1 with
 * errno set.
 */
#ifndef HMMAP_H
#define HMMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h> /* PROT_*, MAP_FAILED, MS_*, MADV_*: hmmap() is used as mmap() is */
#include <sys/types.h>

#include <hmmap/discover.h>
#include <hmmap/policy.h>
#include <hmmap/store.h>
#include <hmmap/tier.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HM_VERSION_MAJOR 0
#define HM_VERSION_MINOR 1
#define HM_VERSION_PATCH 0

/* "0.1.0" - the version of the library actually loaded. */
const char *hm_version(void);

/* The last error of the calling thread, as a sentence; "" if none. */
const char *hm_errormsg(void);

/* ------------------------------------------------------------------------
 * The mmap-shaped calls.
 *
 * hmmap() maps `length` bytes of the store named by `uri` at `offset`.
 *   addr    NULL, or a page-aligned hint (as mmap without MAP_FIXED): the
 *           mapping goes there if the range is free, elsewhere if not.
 *   prot    PROT_READ, optionally | PROT_WRITE.
 *   flags   exactly one mode: HM_CACHED, or HM_DIRECT / HM_HYBRID for a
 *           store that can be mapped (pmem:, numa:; see "Byte-addressable
 *           media" below). HM_CACHED | HM_HUGETLB with HMMAP_PAGE_SIZE=2M
 *           takes frames from the huge page pool.
 *   uri     "file:PATH" or a bare path; "mem:SIZE[,k=v...]"; see
 *           hm_store_open(). A store opened here belongs to the mapping.
 *   offset  a multiple of the region's page size.
 * The mapping uses the process-wide default cache (HMMAP_CACHE_SIZE,
 * HMMAP_POLICY) and page size HMMAP_PAGE_SIZE.
 *
 * hmunmap() writes back dirty pages and removes the mapping. As munmap(2),
 * it takes any page-aligned range: whole mappings, parts of them (at the
 * mapping's page size; the length is rounded up to it) and memory between
 * them (left alone), and pages already unmapped are no error; a range that
 * meets no hmmap mapping is EINVAL. A part unmapped is written back (over
 * hmmap()'s own tier chain: dropped), then reads and writes there raise
 * SIGSEGV and hmsync(), hm_advise() and hm_prefault() treat it as
 * unmapped; its addresses stay reserved until the rest of the mapping goes
 * with the last part (HM_DIRECT: the part's written pages are counted, its
 * data is the medium's; HM_HYBRID: the part's pages held in DRAM go back to
 * the medium first, pinned ones too). If write-back fails it returns -1 with the store's
 * errno (EIO for an I/O error) and the range stays mapped, with its data
 * (nothing is lost).
 *
 * At a normal exit (exit(), a return from main) every writable region of a
 * file: or pmem: store is synced, as a MAP_SHARED mapping keeps its writes
 * when its process exits; a failure is reported on stderr. _exit() and
 * fatal signals skip it.
 *
 * hmsync() with MS_SYNC returns once every page in the range that was dirty
 * when it was called is on the store and the store is flushed (fsync); with
 * MS_ASYNC it writes the pages back without flushing the store.
 * MS_INVALIDATE additionally drops clean pages so that the next touch reads
 * the store again. On a region over a tier chain (anonymous memory) it
 * writes nothing, as msync(2) of anonymous memory: every page stays in one
 * tier; MS_INVALIDATE drops the range from DRAM (its pages go down).
 * ------------------------------------------------------------------------ */
void *hmmap(void *addr, size_t length, int prot, int flags, const char *uri, off_t offset);
int hmunmap(void *addr, size_t length);
int hmsync(void *addr, size_t length, int flags);

/* Region modes (hmmap() flags and hm_region_map() flags). */
#define HM_CACHED 0x1
#define HM_DIRECT 0x2 /* the medium itself, no faults (pmem:, numa:) */
#define HM_HYBRID 0x4 /* the medium read-only; written pages move into DRAM */
/*
 * A modifier of HM_CACHED for regions with 2 MiB pages: frames come from the
 * kernel's pool of 2 MiB huge pages (vm.nr_hugepages) instead of shmem, so
 * that a fault fills and maps one huge page, and eviction frees it whole.
 * Mapping fails with -ENOMEM while the pool has fewer free pages than the
 * region could hold (its length or the cache budget, the smaller), and with
 * -ENOTSUP when the kernel lacks userfaultfd on hugetlbfs. A fault that
 * finds the pool empty later (another user took the pages) evicts pages of
 * its own cache to give their huge pages back; with none left to give it
 * is a read error: SIGBUS.
 */
#define HM_HUGETLB 0x100

/* ------------------------------------------------------------------------
 * Stores.
 *
 * URIs:
 *   file:PATH             a regular file or a block device; PATH may be
 *                         given bare. The file must exist. A read-only
 *                         file (or HM_STORE_RDONLY) can only be mapped
 *                         PROT_READ.
 *   mem:SIZE[,opts]       RAM. opts: read_ns=N, write_ns=N (added latency
 *                         per request), read_bw=SIZE, write_bw=SIZE (bytes
 *                         per second; 0 = unlimited) to stand in for slower
 *                         memory.
 *   pmem:PATH[,opts]      a file on a DAX file system, a device-DAX node,
 *                         or any regular file, byte-addressable (mappable
 *                         HM_DIRECT and HM_HYBRID). opts: size=SIZE
 *                         (create or extend the file to SIZE),
 *                         sync=auto|map_sync|msync (MAP_SYNC if offered,
 *                         required, or never; hm_store_persistence()).
 *   numa:N[,M...][,size=SIZE][,policy=P]
 *                         memory of NUMA nodes N, M (or ranges A-B), as
 *                         large as the nodes' memory unless size= says;
 *                         P: bind (default), preferred, interleave,
 *                         weighted. A node that does not exist or has no
 *                         memory is an error (-ENODEV). Byte-addressable,
 *                         volatile, and private to the open (a memfd): two
 *                         opens of one URI are two stores.
 *   fault:SIZE[,opts]     a mem: store whose failures tests switch on with
 *                         hm_store_ctl(): "fail_read", "fail_write" (0, 1,
 *                         or a count), "fail_read_at" / "fail_write_at" (a
 *                         byte offset; the page holding it fails).
 *   redis://[user:password@]host:port[/namespace][?opts]
 *   redis-cluster://host:port[,host:port...][/namespace][?opts]
 *   memcached://host:port[,host:port...][/namespace][?opts]
 *                         remote memory (see "Remote stores" below and
 *                         docs/remote.md). opts: size=, page=, timeout=MS,
 *                         io_timeout=MS, conns=N, prefetch=N, spin=US,
 *                         replicas=, user=, password_file=, key_file=
 *                         (encryption).
 * ------------------------------------------------------------------------ */
struct hm_store;

#define HM_STORE_RDONLY 0x1 /* open read-only even if writable */

int hm_store_open(struct hm_store **store, const char *uri, int flags);
/* Fails with -EBUSY while a region maps the store. */
int hm_store_close(struct hm_store *store);
/* Size in bytes (for files, the size when opened). */
uint64_t hm_store_size(const struct hm_store *store);
/* The scheme ("file", "mem"). */
const char *hm_store_scheme(const struct hm_store *store);
/*
 * The URI the store was opened with, as messages and statistics show it:
 * a password in it ("redis://user:password@host") reads "***". Valid until
 * the store is closed.
 */
const char *hm_store_uri(const struct hm_store *store);
/* Store-specific control ("key" or "key=value"): 0, -ENOTSUP, -EINVAL. */
int hm_store_ctl(struct hm_store *store, const char *command);

/* ------------------------------------------------------------------------
 * Caches.
 *
 * `budget` is the most DRAM, in bytes, that pages of all regions on the
 * cache may occupy; it is never exceeded. It is at least one page (4096)
 * and at most 16 TiB less 256 KiB; metadata sized by it is taken only as
 * pages become resident. `policy` is a spec
 * "name[:k=v,...]" from hm_policy_list() ("clock", "fifo"), or NULL for the
 * default ("clock").
 * ------------------------------------------------------------------------ */
struct hm_cache;

int hm_cache_new(struct hm_cache **cache, size_t budget, const char *policy);
/*
 * Fails with -EBUSY while regions use the cache, and for a chain's cache
 * (hm_chain_cache()), which closing the chain frees.
 */
int hm_cache_free(struct hm_cache *cache);
/*
 * Changes the budget at run time. Shrinking evicts (writing back dirty
 * pages) until the cache fits; growing is limited to the budget the cache
 * was created with. Pinned pages (hm_prefault) stay: a budget that would
 * leave them more than pins may hold (see hm_prefault) fails with -EBUSY,
 * changing nothing. Returns 0, -EINVAL, -EBUSY, or the write-back error.
 */
int hm_cache_resize(struct hm_cache *cache, size_t budget);
size_t hm_cache_budget(const struct hm_cache *cache);
/* The process-wide cache hmmap() uses (created on first use). */
int hm_cache_default(struct hm_cache **cache);

/* ------------------------------------------------------------------------
 * Regions.
 * ------------------------------------------------------------------------ */
struct hm_region;

/*
 * Maps `length` bytes of `store` from `offset` through `cache`.
 *   prot       PROT_READ [| PROT_WRITE].
 *   flags      HM_CACHED, optionally | HM_HUGETLB (page_size 2 MiB).
 *   page_size  0 for HMMAP_PAGE_SIZE, or a power of two from 4 KiB to
 *              2 MiB: the unit the region faults, reads, writes back and
 *              evicts in. `offset` must be a multiple of it.
 * The length need not be a multiple of the page size; the region is rounded
 * up, and bytes past the store's end read as zeros. Write-back never writes
 * past offset + length. A writable map of a store that cannot grow (pmem:,
 * numa:, mem:) must end within it, in every mode: -EINVAL otherwise.
 */
int hm_region_map(struct hm_region **region, struct hm_cache *cache, struct hm_store *store,
		  uint64_t offset, size_t length, int prot, int flags, size_t page_size);
/*
 * Writes back and unmaps; on a write-back error the region stays mapped.
 * hmunmap() works on these regions too: once it has unmapped every part of
 * one, the region is gone as if hm_region_unmap() had been called, and the
 * handle must not be used again (not even for hm_region_unmap()).
 */
int hm_region_unmap(struct hm_region *region);
void *hm_region_addr(const struct hm_region *region);
size_t hm_region_length(const struct hm_region *region);
size_t hm_region_page_size(const struct hm_region *region);
struct hm_store *hm_region_store(const struct hm_region *region);
struct hm_cache *hm_region_cache(const struct hm_region *region);
/* The region containing addr, or NULL. */
struct hm_region *hm_region_find(const void *addr);

/*
 * Records the region's fault sequence (demand misses and sampled references)
 * to `path`, one page index per line: a trace `hmmap replay` reads. NULL
 * stops recording and flushes the file; unmapping does too, and so does a
 * normal exit (exit() or a return from main, not _exit() or a fatal
 * signal), which says on stderr if the file could not be written in full;
 * faults after that point are not recorded. HMMAP_TRACE=PATH
 * records every region of the process (the first to PATH, later ones to
 * PATH.1, PATH.2, ...). Returns 0, -EBUSY if already recording, or the error
 * of creating or writing the file (-ENXIO for a FIFO that nobody reads: the
 * call never waits for a reader).
 */
int hm_region_trace(struct hm_region *region, const char *path);

/* Sync flags for hm_sync(); MS_* values are accepted too. */
#define HM_SYNC_SYNC 0x4       /* = MS_SYNC */
#define HM_SYNC_ASYNC 0x1      /* = MS_ASYNC */
#define HM_SYNC_INVALIDATE 0x2 /* = MS_INVALIDATE */

/* As hmsync(), with 0 / -errno. The range may span several regions. */
int hm_sync(void *addr, size_t length, int flags);

/* Advice for hm_advise(); the values are madvise()'s, so MADV_* work too. */
enum hm_advice {
	HM_ADV_NORMAL = 0,     /* = MADV_NORMAL */
	HM_ADV_RANDOM = 1,     /* = MADV_RANDOM: no readahead */
	HM_ADV_SEQUENTIAL = 2, /* = MADV_SEQUENTIAL: aggressive readahead */
	HM_ADV_WILLNEED = 3,   /* = MADV_WILLNEED: read the range in now (within the budget) */
	HM_ADV_DONTNEED = 4,   /* = MADV_DONTNEED: write back and drop the range's pages */
	/*
	 * hmmap's own: read ahead as SEQUENTIAL, and when room is needed the
	 * pages the region's readers have passed leave first (drop-behind),
	 * whatever the cache's policy says. For data used once per pass: a
	 * scan then evicts only its own pages, and a loop over more than the
	 * cache keeps what it read first. A direct region takes it as
	 * MADV_SEQUENTIAL.
	 */
	HM_ADV_NOREUSE = 64,
};
int hm_advise(void *addr, size_t length, int advice);

/*
 * Makes a range resident so that system calls may use it (read() into it,
 * write() from it) in modes where a system call cannot wait for a fault (an
 * unprivileged process, or HMMAP_FAULT_MODE=sigbus). The pages stay mapped
 * (the reference sampler leaves them alone) until the cache evicts them;
 * with HM_PREFAULT_PIN they also stay resident until hm_unpin(); pinned
 * pages count against the budget, and pinning more than it holds less the
 * room faults need (the evictor's low watermark, at most a sixteenth, at
 * least two pages: one instruction may touch two) fails with -ENOMEM. In a
 * hybrid region the same holds for the pages it may hold in DRAM: pins
 * leave a sixteenth of them, at least two, to writes.
 */
#define HM_PREFAULT_PIN 0x1
int hm_prefault(void *addr, size_t length, int flags);
int hm_unpin(void *addr, size_t length);

/* ------------------------------------------------------------------------
 * Statistics. Counters are cumulative since the object was created;
 * resident/dirty/pinned are current values.
 * ------------------------------------------------------------------------ */
struct hm_stats {
	uint64_t faults_missing; /* first touches of absent pages */
	uint64_t faults_minor;   /* touches of resident pages not mapped (hint faults) */
	uint64_t faults_wp;      /* write-protect faults (synchronous tracking only) */
	uint64_t hits;           /* references seen to resident pages */
	uint64_t misses;         /* pages read from the store on demand */
	uint64_t readahead;      /* pages read ahead of demand */
	uint64_t evictions;      /* pages evicted */
	uint64_t writebacks;     /* pages written back */
	uint64_t writeback_errors;
	uint64_t read_errors;
	uint64_t bytes_read;     /* from the store */
	uint64_t bytes_written;  /* to the store */
	uint64_t resident_bytes; /* pages in DRAM now */
	uint64_t dirty_pages;    /* written and not yet written back, now (docs/stats.md) */
	uint64_t pinned_pages;
	uint64_t budget_bytes;   /* caches only */
	uint64_t fault_ns_total; /* time spent serving missing faults */
	uint64_t prefetch_used;   /* read-ahead pages seen reached (docs/stats.md) */
	uint64_t prefetch_wasted; /* read-ahead pages evicted before being reached */
	uint64_t faults_timed;    /* faults in the latency histogram (every kind) */
	uint64_t fault_ns_p50;    /* fault-service latency percentiles, ns, within */
	uint64_t fault_ns_p99;    /* 6.25%: the middle of a log-linear bucket; */
	uint64_t fault_ns_p999;   /* cumulative since the object was created */
	/*
	 * Stores: what a compressed store (lz4:, zstd:), or a chain's lower
	 * tiers, hold (4 KiB x pages) and the RAM that takes; held_bytes /
	 * pool_bytes is the compression ratio. Zero for other stores.
	 */
	uint64_t held_bytes;
	uint64_t pool_bytes;
	uint64_t reserved[7];
};
int hm_region_stats(const struct hm_region *region, struct hm_stats *stats);
int hm_cache_stats(const struct hm_cache *cache, struct hm_stats *stats);
/*
 * A store's traffic from every region and cache that used it: bytes_read,
 * bytes_written (what the medium has absorbed: its endurance budget),
 * writebacks, read_errors, writeback_errors; and for compressed stores and
 * chains, held_bytes and pool_bytes. Other fields are zero. Writes through
 * a direct region count a page at a time, when hm_sync(), HM_ADV_DONTNEED or
 * the unmap collects the pages written since the last collection (never
 * with HMMAP_STATS=0); docs/byte-addressable.md.
 */
int hm_store_stats(const struct hm_store *store, struct hm_stats *stats);

/* ------------------------------------------------------------------------
 * The fault engine.
 * ------------------------------------------------------------------------ */
enum hm_fault_mode {
	HM_FAULT_THREAD = 1, /* handler threads serve faults; system calls wait */
	HM_FAULT_SIGBUS,     /* the faulting thread serves its own fault */
};
/* The mode in use (initialising the engine if needed), or -errno. */
int hm_fault_mode(void);

/*
 * fork(): a child starts hmmap afresh, whatever its parent had done. Its
 * first call reads the HMMAP_* variables again (its own fault mode, cache
 * size, ...) and its first map starts a fault engine, a default cache and a
 * live segment (under its own PID) of its own; the parent is unaffected,
 * and the child's exit leaves the parent's segment in place. Every store,
 * cache and region made before the fork belongs to the parent: the child
 * must not use or free them (their threads do not exist in the child). The
 * regions are not inherited (MADV_DONTFORK; hybrid ones are unmapped): a
 * child that touches one gets SIGSEGV, as for unmapped memory. Their
 * memory stays allocated, unused, in the child. A child made by a raw
 * clone() that skips the pthread_atfork handlers cannot use hmmap.
 */

/*
 * What the kernel offers, as probed at start: a bit set of HM_FEAT_*.
 * Returns 0 or -errno (userfaultfd unavailable).
 */
#define HM_FEAT_USER_MODE_ONLY 0x01 /* only user-mode faults (unprivileged) */
#define HM_FEAT_MINOR_SHMEM 0x02
#define HM_FEAT_WP_SHMEM 0x04
#define HM_FEAT_WP_ASYNC 0x08
#define HM_FEAT_PAGEMAP_SCAN 0x10
#define HM_FEAT_SIGBUS 0x20
#define HM_FEAT_THREAD_ID 0x40
#define HM_FEAT_MOVE 0x80
#define HM_FEAT_HUGETLB 0x100 /* missing, minor and WP faults on hugetlbfs */
int hm_features(uint64_t *features);

/* ------------------------------------------------------------------------
 * Live statistics and probes (shared-memory segment, hmmap stat/top/probe).
 *
 * Counting costs a few relaxed additions per fault to the calling thread's
 * shard; HMMAP_STATS=0 turns counting and the segment off. See
 * docs/stats.md.
 * ------------------------------------------------------------------------ */

/*
 * The statistics of the region containing `addr` (as hm_region_stats()),
 * or with addr NULL the sum over every cache of the process (percentiles
 * over the faults of all of them).
 * Returns 0, -EINVAL, or -ENOENT if addr is in no region.
 */
int hm_stats(const void *addr, struct hm_stats *stats);

/*
 * Direct access to a store, beside any mapping (hmmap probe uses it).
 * hm_store_read/hm_store_write move len bytes at byte offset off through the
 * store's plug-in, counted in hm_store_stats(). Bytes past the end read as
 * zeros; a write past the end fails with -ENOSPC unless the store is
 * resizable; a write to a read-only store fails with -EACCES. A write that
 * races with a region mapping the same bytes is not seen by the region
 * (it reads the store only on a miss) and may be overwritten by its
 * write-back. hm_store_info() copies the declared size and HM_PROP_* flags.
 */
int hm_store_read(struct hm_store *store, void *buf, size_t len, uint64_t off);
int hm_store_write(struct hm_store *store, const void *buf, size_t len, uint64_t off);
int hm_store_info(const struct hm_store *store, struct hm_store_info *info);

/*
 * Memory for large hm_store_read()/hm_store_write() requests: `size` bytes
 * (rounded up to a multiple of 2 MiB), 2 MiB-aligned, zero-filled, asking
 * the kernel for transparent huge pages (MADV_HUGEPAGE). The file store
 * moves aligned requests with O_DIRECT, and a request into physically
 * contiguous memory is one segment for the device: on a virtio disk, 2 MiB
 * reads into a huge page ran about four times as fast as into 4 KiB pages.
 * Any memory works as a buffer; this is only faster. hmmap's own buffers for
 * transfers over 64 KiB come from here. Async-signal-safe (mmap, munmap,
 * madvise only).
 * hm_io_alloc() returns NULL with errno EINVAL (size 0) or ENOMEM;
 * hm_io_free() takes the same size, does nothing for NULL, and returns 0 or
 * -EINVAL (a pointer hm_io_alloc() cannot have returned, or size 0).
 */
void *hm_io_alloc(size_t size);
int hm_io_free(void *p, size_t size);

/*
 * Another process's statistics, read from the shared-memory segment
 * /dev/shm/hmmap.PID that every process publishes while it maps a region
 * (refreshed every HM_SNAPSHOT_INTERVAL_MS, with a sequence lock so that a
 * reader never sees a half-written table). The segment's layout is
 * versioned (HM_SNAPSHOT_VERSION) and documented in docs/stats.md.
 */
#define HM_SNAPSHOT_VERSION 1
#define HM_SNAPSHOT_INTERVAL_MS 250

enum hm_obj_kind {
	HM_OBJ_CACHE = 1,
	HM_OBJ_REGION,
	HM_OBJ_STORE,
};

/* One cache, region or store of a process (a segment entry: 512 bytes). */
struct hm_obj_stats {
	uint32_t kind;      /* enum hm_obj_kind */
	uint32_t id;        /* unique per kind within the process */
	uint32_t cache_id;  /* regions: the id of their cache */
	uint32_t store_id;  /* regions: the id of their store */
	uint64_t addr;      /* regions: base address */
	uint64_t length;    /* regions: mapped bytes; stores: capacity */
	uint64_t page_size; /* regions */
	uint32_t mode;      /* regions: HM_CACHED [| HM_HUGETLB], HM_DIRECT, HM_HYBRID */
	uint32_t props;     /* stores: HM_PROP_* */
	char name[208];     /* regions and stores: the URI; caches: the policy */
	struct hm_stats stats;
};

struct hm_snapshot {
	pid_t pid;
	int fault_mode;        /* enum hm_fault_mode, 0 if not started */
	uint64_t start_time;   /* the process's start, clock ticks after boot */
	uint64_t updated_ns;   /* CLOCK_REALTIME of the last publication */
	uint32_t interval_ms;  /* publication period */
	uint32_t truncated;    /* objects left out (the table was full) */
	char comm[16];         /* the process's name */
	size_t nobjs;
	struct hm_obj_stats objs[];
};

/*
 * Takes a consistent snapshot of process pid's statistics into a new
 * object (free it with hm_snapshot_free()). Returns 0; -EINVAL for a bad
 * pid or NULL; -ESRCH if there is no such process; -ENOENT if the process
 * publishes no statistics (not an hmmap process, no region mapped yet, or
 * HMMAP_STATS=0); -ESTALE if the segment belonged to a process that is gone
 * (the segment is removed); -EACCES if it belongs to another user;
 * -EPROTO if it is not a statistics segment or is malformed (a header
 * that contradicts itself or the file's size; the message says what) or
 * -EPROTONOSUPPORT if its version is newer than this library's; -EBUSY if
 * the writer kept it changing.
 */
int hm_snapshot_read(pid_t pid, struct hm_snapshot **snap);
void hm_snapshot_free(struct hm_snapshot *snap);
/*
 * The pids of every live process that publishes statistics, sorted, in a
 * new array (free() it). Segments of dead processes found on the way are
 * removed and never listed.
 */
int hm_snapshot_list(pid_t **pids, size_t *count);

/* ------------------------------------------------------------------------
 * Byte-addressable media: direct and hybrid regions, protection.
 *
 * HM_DIRECT maps the store's medium at the region (loads and stores reach
 * it with no fault of hmmap's); hmsync(MS_SYNC) makes stores durable (a CPU
 * cache flush under MAP_SYNC or device-DAX, msync otherwise). HM_HYBRID maps
 * the medium read-only: the first write to a page copies it into a DRAM
 * frame (a SIGSEGV handled by hmmap in the faulting thread), and write-back
 * (when the bounded set of such pages is full, at hmsync, at unmap) copies
 * it back and maps the medium again. A hybrid region holds at most
 * min(budget of its cache / page size, what is left of a quarter of
 * vm.max_map_count for the whole process) pages in DRAM. Both modes need a
 * store with HM_PROP_BYTE_ADDRESSABLE that can be mapped (pmem:, numa:);
 * others fail with -ENOTSUP. A system call writing into a hybrid page that
 * is not in DRAM fails with EFAULT: hm_prefault() (with HM_PREFAULT_PIN to
 * keep them) moves pages in first. The coherence between direct, hybrid and
 * cached views of one store is docs/memory-model.md.
 *
 * hmmap installs a SIGSEGV handler at the first hybrid map and chains to
 * the one installed before it; a handler installed afterwards must call
 * hmmap's (sigaction returns it) for addresses it does not own.
 * ------------------------------------------------------------------------ */

/*
 * Makes [addr, addr+length) read-only (prot PROT_READ) or writable again
 * (PROT_READ | PROT_WRITE), in any region mode; the range is extended to
 * whole region pages and may span regions. Data is kept: a hybrid page in
 * DRAM is written back first, a cached page keeps its dirty state. A write
 * to a read-only range gets SIGSEGV (SEGV_ACCERR), as with mprotect(2).
 * Returns 0; -EINVAL (alignment, prot); -ENOMEM when part of the range is in
 * no region (nothing is changed); -EACCES for PROT_WRITE on a region mapped
 * without it; or a hybrid write-back error.
 */
int hm_protect(void *addr, size_t length, int prot);

/* How stores through a mapping of a store's medium become durable. */
enum hm_persistence {
	HM_PERSIST_NONE = 1, /* volatile medium (numa:, mem:, pmem: on tmpfs) */
	HM_PERSIST_MSYNC,    /* a page cache in between: hmsync runs msync/fsync */
	HM_PERSIST_FLUSH,    /* MAP_SYNC or device-DAX: hmsync flushes CPU caches */
};
/* The store's enum hm_persistence, or -EINVAL. */
int hm_store_persistence(const struct hm_store *store);
/* "none", "msync", or the flush in use ("clwb+sfence", "clflushopt+sfence", "clflush"). */
const char *hm_persistence_name(int persistence);

/* ------------------------------------------------------------------------
 * Tiers: chains of stores, bind and move, evacuation, automatic tiering.
 *
 * A tier chain is anonymous memory over an ordered list of stores, fastest
 * first, written as one URI that hmmap() and hm_store_open() take:
 *
 *   tiers:dram:2G > lz4:8G > file:/ssd/swap
 *
 * dram:SIZE is tier 0, the DRAM budget of the cache the chain brings (its
 * options: cache=POLICY, tiering=NAME, rate=SIZE per second, hot=FRACTION,
 * period=MS); each later element is a store, optionally prefixed
 * "explicit:" (it receives pages only from hm_bind()/hm_move()) or
 * "emergency:" (explicit, but implicit placement may use it when every
 * other lower tier is full). Each page lives in exactly one tier: DRAM while
 * resident, else one lower tier, else nowhere (never written: it reads as
 * zeros and costs nothing). Evicted pages go to the highest lower tier with
 * room; touched pages come up on their fault. Compressed tiers:
 *   lz4:[SIZE][,level=N][,accel=N][,space=SIZE]  zstd:[SIZE][,level=N][,space=SIZE]
 *   (lz4's level 0, the default, is LZ4's fast mode; 1 to 12 are LZ4HC's)
 * SIZE is the RAM pool (default a fifth of RAM, as zswap); `space` the
 * address range offered (4 x SIZE).
 * See docs/tiers.md.
 * ------------------------------------------------------------------------ */

/* Tier flags (hm_tier_get/hm_tier_set). */
#define HM_TIER_EXPLICIT 0x1  /* receives pages only from hm_bind()/hm_move() */
#define HM_TIER_EMERGENCY 0x2 /* with EXPLICIT: implicit pages when the others are full */
#define HM_TIER_CLOSED 0x4    /* takes no new pages (hm_store_evacuate sets it) */

/* Tiers in the chain, DRAM included; -EINVAL if `chain` is not a tiers: store. */
int hm_chain_tiers(const struct hm_store *chain);
/* Tier `index` of the chain (0 = DRAM), or NULL. The chain owns it: do not close it. */
struct hm_store *hm_chain_tier(const struct hm_store *chain, int index);
/*
 * The cache of the chain's dram: tier (made on first call, freed when the
 * chain closes: not by hm_cache_free()), for hm_region_map(). -ENOENT if the
 * chain has no dram:.
 */
int hm_chain_cache(struct hm_store *chain, struct hm_cache **cache);
/* The position of a tier store in its chain (0 = DRAM), or -ENOENT. */
int hm_tier_index(const struct hm_store *tier);
/* A tier's HM_TIER_* flags, or -errno. */
int hm_tier_get(const struct hm_store *tier);
/* Sets them (EMERGENCY needs EXPLICIT; clear CLOSED to reopen an evacuated tier). */
int hm_tier_set(struct hm_store *tier, int flags);

struct hm_tier_stats {
	int index;               /* in its chain (0 = DRAM), -1 for a store outside one */
	uint32_t flags;          /* HM_TIER_* */
	uint64_t pages;          /* pages held now */
	uint64_t capacity_bytes; /* room: DRAM budget, slots x 4 KiB, or a compressed pool */
	uint64_t used_bytes;     /* room in use */
	uint64_t moved_in;       /* pages placed here since the chain opened */
	uint64_t moved_out;      /* pages taken away */
	/* lz4: and zstd: stores (zero_pages: any lower tier's pages of zeros, which take no room): */
	uint64_t compressed_pages, raw_pages, zero_pages;
	uint64_t compressed_bytes; /* bytes the compressed pages take */
	double ratio;              /* 4 KiB x pages held / used_bytes (0 when empty) */
	/* Tier 0 of a chain being mapped: the automatic tiering engine. */
	uint64_t hot_pages, promoted, demoted, sampled;
	uint64_t reserved[8];
};
/*
 * Statistics of a tier, or of any lz4:/zstd: store. A page being loaded or
 * evicted counts in both of its tiers while it moves, so a chain's tier
 * first waits (at most 100 ms) for the loads and evictions under way, and
 * for a reclaim the background evictor owes: the tiers' pages then add up
 * whenever nothing else is moving pages.
 */
int hm_tier_stats(const struct hm_store *tier, struct hm_tier_stats *stats);

/*
 * hm_bind(): placement of [addr, addr+length), which must lie in one region
 * over a chain; `store` is one of that chain's tiers.
 *   HM_BIND          future evictions of the range go to `store` only (a
 *                    lower tier: as mbind(MPOL_BIND) - if it is full the
 *                    pages stay in DRAM); for the DRAM tier the range is
 *                    brought in and pinned (-ENOMEM if it would leave
 *                    faults no room: pins may hold the budget less its low
 *                    watermark); the tiering engine's hot pages make room.
 *   HM_MIGRATE       move the range's pages to `store` now; with HM_BIND
 *                    too, both. Returns the number of pages moved (pages
 *                    never written stay nowhere, even toward DRAM). Alone,
 *                    it fails with -EBUSY (changing nothing) if a page of
 *                    the range is bound to DRAM; alone toward DRAM, with
 *                    -ENOMEM (changing nothing) for a range larger than
 *                    half the DRAM budget, which migrated pages may fill
 *                    (HM_BIND | HM_MIGRATE pins the range instead).
 *   HM_BIND_DEFAULT  back to the chain's own placement (store may be NULL).
 * Bindings go with the mapping, as munmap() drops an mbind() policy: an
 * unmap (hmunmap() of a part or of the whole region, hm_region_unmap())
 * drops the bindings of what it unmaps, DRAM pins included, before it
 * writes the pages back, so they go down by the chain's order and a full
 * bound tier does not fail the unmap; a chain mapped again through the API
 * keeps its data but no binding. (They are the chain's, by offset: another
 * mapping of the same part of the chain loses them too.) A failed unmap
 * does not restore them.
 * The range stays readable and writable by other threads while it moves.
 * Returns the pages moved (0 without HM_MIGRATE) or -errno; -ENOSPC when
 * the target had no room for some page (those stay where they were).
 */
#define HM_BIND 0x1
#define HM_MIGRATE 0x2
#define HM_BIND_DEFAULT 0x4
/* Other names of the same flags: HM_BIND_MIGRATE is HM_MIGRATE alone (not with HM_BIND). */
#define HM_BIND_MIGRATE HM_MIGRATE
#define HM_DEFAULT HM_BIND_DEFAULT
long hm_bind(void *addr, size_t length, struct hm_store *store, int flags);

/*
 * hm_move(): per page, like move_pages(2). pages[i] is an address in a
 * region over a chain. With stores == NULL it only reports where each page
 * is: status[i] = tier index (0 = DRAM), -ENOENT (never written: nowhere),
 * -EFAULT (not in a chain region). Otherwise it moves page i to stores[i]
 * and sets status[i] to the tier it is in now, or -ENOSPC (no room),
 * -EBUSY (pinned), -ENOENT (never written: nothing to move, whatever the
 * target), -EINVAL (not a tier of that
 * page's chain). Returns the number of pages not moved (0 for a query, as
 * move_pages(2): the statuses say where each page is), or -errno for bad
 * arguments. flags must be 0.
 */
long hm_move(size_t count, void *const *pages, struct hm_store *const *stores, int *status,
	     int flags);

/*
 * Moves every page off a lower tier into the other tiers while the
 * application runs (the lower ones by the chain's order, then DRAM while
 * the chain's cache has room without evicting), then leaves it empty and
 * HM_TIER_CLOSED, so the device
 * behind it can go offline. progress(ctx, done, total) is called from the
 * calling thread as pages move (may be NULL). If the other tiers run out of
 * room it stops with -ENOSPC: nothing is lost (moved pages stay moved, the
 * rest stay), and the tier takes pages again.
 */
int hm_store_evacuate(struct hm_store *store,
		      void (*progress)(void *ctx, uint64_t done, uint64_t total), void *ctx);

/* ------------------------------------------------------------------------
 * Remote stores (redis://, memcached://).
 *
 * Pages of a remote store live as keys on Redis, a Redis Cluster or a
 * memcached pool (docs/remote.md). Each open store draws a random object id,
 * so no two stores (processes, runs) share a key; a page never written reads
 * as zeros without a network round trip; a page the server lost, changed or
 * replayed is reported as SIGBUS, never returned as data.
 * ------------------------------------------------------------------------ */
struct hm_remote_stats {
	uint64_t round_trips;      /* request batches sent to a server and answered */
	uint64_t gets, sets, dels; /* keys read, written, deleted */
	uint64_t zero_fills;       /* never-written pages served without the server */
	uint64_t prefetched;       /* pages fetched by the store's strided prefetch */
	uint64_t prefetch_hits;    /* reads served from that prefetch */
	uint64_t retries;          /* attempts repeated after a back-off */
	uint64_t reconnects;       /* connections opened after the first */
	uint64_t redirects;        /* Redis Cluster MOVED and ASK replies followed */
	uint64_t refreshes;        /* Redis Cluster slot maps fetched */
	uint64_t waits;            /* Redis WAITs for replicas (hm_sync) */
	uint64_t integrity_errors; /* pages lost, stale, modified or replayed */
	uint64_t timeouts;         /* requests that gave up after timeout= */
	uint64_t repairs;          /* memcached replicas: bad copies rewritten from a good one */
	uint64_t leaked;           /* old page versions left on the server (delete queue full) */
	uint64_t reserved[6];
	char prefix[96];           /* keys are PREFIX + "IDX:VERSION" in hex: "hm:NS:OBJECT:" */
};
/* The traffic of a redis, redis-cluster or memcached store; -EINVAL for others. */
int hm_remote_stats(const struct hm_store *store, struct hm_remote_stats *stats);

/* ------------------------------------------------------------------------
 * Plug-ins: cache policies, stores and tiering policies of your own.
 *
 * A program registers its own ops tables, built against the ABI of the
 * headers (hm_policy_register() in hmmap/policy.h, hm_store_register() in
 * hmmap/store.h, hm_tier_policy_register() in hmmap/tier.h); from then on
 * they are found by name exactly as the built-in ones: a cache's policy
 * spec, a store URI's scheme, a chain's tiering=, and every listing
 * (`hmmap policies`, `hmmap replay`, `hmmap bench --policy`). Names are a
 * lowercase letter, then lowercase letters, digits, '_' and '-' (a scheme
 * may also hold '+' and '.'), at most HM_PLUGIN_NAME_MAX characters, and
 * must not be taken. Registration is for the life of the process: the ops
 * table and its strings must stay valid, and nothing is unregistered.
 * Every ops table needs its one-line summary (the listings print it).
 * Registration fails with -EINVAL (NULL ops, another ABI, a bad name, no
 * summary, unknown flags, a required hook missing), -EEXIST (the name is taken,
 * built-in names included) or -ENOSPC (HM_PLUGINS_MAX of that kind are
 * registered), and changes nothing then.
 *
 * A plug-in library is a shared object that defines hm_plugin_init(),
 * which registers what it brings and returns 0 or -errno.
 * hm_plugin_load(path) loads one (a path, or a bare name searched as
 * dlopen() searches) and calls it; loading a loaded library again does
 * nothing. The environment variable HMMAP_PLUGINS, a ':'-separated list of
 * such paths, is loaded before the first lookup or listing, so the `hmmap`
 * tool and unchanged programs take plug-ins too; if one fails to load,
 * every lookup returns that error. The library's symbols are resolved
 * against the process: build a plug-in with `-shared -fPIC` and without
 * -lhmmap. examples/plugins/mru.c is a complete one.
 * ------------------------------------------------------------------------ */
#define HM_PLUGIN_NAME_MAX 31
#define HM_PLUGINS_MAX 32 /* of each kind, besides the built-in ones */

/*
 * 0, -EINVAL (empty path, or no hm_plugin_init in it), -ENOENT (no such
 * file), -ELIBBAD (dlopen refused it: not a shared object, a missing
 * symbol; the message has dlerror()'s words), -ENOSPC (64 libraries are
 * loaded), or what hm_plugin_init() returned, with its message. A library
 * whose init failed is unloaded unless it registered something first.
 */
int hm_plugin_load(const char *path);

/* Defined by a plug-in library, called by hm_plugin_load(). */
int hm_plugin_init(void);

/*
 * Sets the calling thread's error message (what hm_errormsg() returns) and
 * returns err: for plug-in hooks that fail, e.g.
 * `return hm_plugin_error(-EINVAL, "mru: unknown option '%s'", key);`.
 */
int hm_plugin_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
