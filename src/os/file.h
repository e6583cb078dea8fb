/* SPDX-License-Identifier: MIT */
/* Opening files whose paths a user gave (src/os/file.c). */
#ifndef HMMAP_OS_FILE_H
#define HMMAP_OS_FILE_H

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

#endif
