/* SPDX-License-Identifier: MIT */
/* Opening files whose paths a user gave (src/os/file.c). */
#ifndef HMMAP_OS_FILE_H
#define HMMAP_OS_FILE_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * open(2) that never waits: O_NONBLOCK is set for the open and cleared
 * after it (unless flags hold it), so that a FIFO with no writer (read-only)
 * or no reader (write-only: -ENXIO) cannot block the caller; O_CLOEXEC and
 * O_NOCTTY are added. For every path a user gives (stores, the stores file,
 * traces, key files); the caller then checks what it opened (fstat). Returns
 * the descriptor or -errno, with errno set as well.
 */
int hm__open_file(const char *path, int flags, mode_t mode);

struct stat;

/*
 * Opens the file or device behind a store (file:, pmem:) as hm__open_file()
 * does: for reading and writing, or for reading only when *ro is set or the
 * file is read-only. A file is read-only when the process may not write it
 * (EACCES, EROFS, EPERM), and also when it is a regular file whose mode has
 * no write bit: that is a read-only file as its owner meant it, although
 * root could open it for writing anyway. Sets *ro to what was opened and
 * fills *st. Returns the descriptor or -errno, with errno set as well.
 */
int hm__open_store_file(const char *path, bool *ro, struct stat *st);

#endif
