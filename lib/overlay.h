/*
 * Per-VM copy-on-write root disks over a shared, read-only base image.
 *
 * Drivers:
 *  - dm-snapshot: the base on a read-only loop device, a sparse COW file on
 *    a read-write loop device (both autoclear, attached with the
 *    loop-control ioctls), and a persistent snapshot target over them.
 *    Device names derive from the VM name so a crash's leftovers are found.
 *  - copy: a reflink (FICLONE) clone where the filesystem supports it, else
 *    a copy that keeps holes (SEEK_DATA/SEEK_HOLE, copy_file_range).
 *  - auto: dm-snapshot when /dev/mapper/control works, else copy.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_OVERLAY_H
#define LIBVMM_OVERLAY_H

#include "internal.h"

enum overlay_driver {
    OVERLAY_AUTO = 0,
    OVERLAY_DM_SNAPSHOT = 1,
    OVERLAY_COPY = 2,
};

/* "auto", "dm-snapshot", "copy"; and back (VMM_EINVAL for other names). */
const char *overlay_driver_name(enum overlay_driver d);
int overlay_driver_parse(const char *name, enum overlay_driver *out);

/*
 * Checks a base image before anything is built: it exists, is a regular
 * file or block device, holds ext4, and uses no feature the installed
 * libext2fs does not know (the error names the feature and the e2fsprogs
 * version). Writes its size in bytes to *size_out when not NULL.
 */
int overlay_check_base(const char *base_image, uint64_t *size_out);

/* Resolves OVERLAY_AUTO for this host, logging the choice. */
enum overlay_driver overlay_pick(const vmm_context *ctx, const char *vm_name,
                                 enum overlay_driver requested);

struct overlay_spec {
    const char *vm_name;
    enum overlay_driver driver; /* resolved: never OVERLAY_AUTO */
    const char *base_image;
    const char *dir;            /* the VM's directory: files go here */
    uint64_t disk_size;         /* bytes; 0: the base's size */
};

/*
 * Builds the VM's disk in spec->dir. On failure nothing is left behind.
 * For copy, the disk is `dir`/disk.img, grown (file and ext4 filesystem)
 * to disk_size when that is larger than the base. For dm-snapshot, the COW
 * is `dir`/cow.img; the device is not activated yet.
 */
int overlay_create(const vmm_context *ctx, const struct overlay_spec *spec);

/*
 * Makes the disk usable and writes the path a VMM should open (the copy's
 * file, or /dev/mapper/NAME) into path_out. For dm-snapshot this attaches
 * the loop devices and loads the table (idempotent when already active),
 * and refuses a snapshot whose COW is invalidated or full, saying so.
 */
int overlay_activate(const vmm_context *ctx, const struct overlay_spec *spec,
                     char *path_out, size_t size);

/*
 * Tears down what activate set up (dm device, loop devices); retries while
 * busy, then fails naming the pids holding the device. No-op for copy.
 */
int overlay_deactivate(const vmm_context *ctx, const struct overlay_spec *spec);

/* Deactivates and removes the disk files. Missing parts are not errors. */
int overlay_destroy(const vmm_context *ctx, const struct overlay_spec *spec);

#endif /* LIBVMM_OVERLAY_H */
