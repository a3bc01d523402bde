/*
 * Per-VM copy-on-write root disks over a shared, read-only base image.
 *
 * Drivers:
 *  - dm-snapshot: the base on a read-only loop device, a sparse COW file on
 *    a read-write loop device (both autoclear, attached with the
 *    loop-control ioctls), and a persistent snapshot target over them.
 *    Device names derive from the VM name so a crash's leftovers are found.
 *  - copy: a reflink (FICLONE) clone where the filesystem supports it, else
 *    a copy that keeps holes (SEEK_DATA/SEEK_HOLE) and leaves the base's
 *    all-zero blocks out (as `cp --sparse=always` does): copy_file_range
 *    would write them, a quarter more data on a typical ext4 image.
 *  - auto: dm-snapshot when /dev/mapper/control works, else copy.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_OVERLAY_H
#define LIBVMM_OVERLAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
    bool defer_flush;           /* copy: leave the data to the page cache;
                                   overlay_flush() before trusting it */
};

/*
 * Builds the VM's disk in spec->dir. On failure nothing is left behind.
 * For copy, the disk is `dir`/disk.img, grown (file and ext4 filesystem)
 * to disk_size when that is larger than the base: the filesystem is grown
 * by prep_grow_fs (e2fsck, then resize2fs) before the file takes its
 * name. For dm-snapshot, the COW is `dir`/cow.img; the device is not
 * activated yet, and a disk_size larger than the base is VMM_EUNSUPPORTED
 * (the snapshot is as large as its origin). A disk_size smaller than the
 * base is VMM_EINVAL naming both sizes; an existing disk is VMM_EEXIST.
 * Progress is reported as stage "copy".
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

/*
 * Makes a copy made with defer_flush durable: fsync of its data. Writeback
 * began while it was copied, so little is usually left. No-op for
 * dm-snapshot, whose COW starts empty.
 */
int overlay_flush(const vmm_context *ctx, const struct overlay_spec *spec);

/* Deactivates and removes the disk files. Missing parts are not errors. */
int overlay_destroy(const vmm_context *ctx, const struct overlay_spec *spec);

/* --- overlay-dm.c: dm-snapshot pieces, exposed for tests ----------------- */

/* Longest device name made: "libvmm-" and at most 40 more bytes, so that
 * "NAME:base" also fits a loop device's 64-byte lo_file_name. */
#define OVERLAY_DM_NAME_MAX 48

/*
 * The device-mapper name of a VM: "libvmm-NAME" when NAME is 1 to 32 of
 * [A-Za-z0-9_.+-] (and not "." or ".."), else "libvmm-" + up to 16
 * sanitised bytes + "-" + 16 hex digits of a hash of the whole name.
 * VMM_EINVAL for an empty name or a buffer under OVERLAY_DM_NAME_MAX + 1.
 */
int overlay_dm_name(const char *vm_name, char *buf, size_t size);

/* "0 SECTORS snapshot ORIGIN COW P 8": persistent, 4 KiB chunks. */
int overlay_dm_table(uint64_t sectors, const char *origin, const char *cow,
                     char *buf, size_t size);

enum overlay_dm_state {
    OVERLAY_DM_VALID,
    OVERLAY_DM_INVALID,      /* the kernel invalidated the snapshot */
    OVERLAY_DM_OVERFLOW,     /* the COW filled up */
    OVERLAY_DM_MERGE_FAILED,
};

struct overlay_dm_status {
    enum overlay_dm_state state;
    uint64_t used_sectors;     /* COW sectors in use, data and metadata */
    uint64_t total_sectors;    /* COW size */
    uint64_t metadata_sectors;
};

/* Parses a snapshot target's status line ("USED/TOTAL META", "Invalid",
 * "Overflow", "Merge failed"). VMM_EDISK for anything else. */
int overlay_dm_parse_status(const char *params,
                            struct overlay_dm_status *out);

/* 0 for a usable snapshot; VMM_EDISK saying why (invalidated, full). */
int overlay_dm_check_status(const struct overlay_dm_status *st,
                            const char *device);

/* Reads a persistent COW's on-disk header (its first 16 bytes): 0 when it
 * is blank or valid, VMM_EDISK when the kernel marked it invalid. */
int overlay_cow_header_check(const void *header, size_t len,
                             const char *cow);

/* Whether /dev/mapper/control opens and answers DM_VERSION; if not, the
 * reason is written to why. */
bool overlay_dm_available(char *why, size_t size);

/*
 * Attaches file to a free loop device (LOOP_CTL_GET_FREE + LOOP_CONFIGURE,
 * or LOOP_SET_FD + LOOP_SET_STATUS64 on older kernels), autoclear, with
 * lo_file_name set to tag. The open device is returned in *fd_out: being
 * autoclear, the device goes away when the last descriptor closes, so the
 * caller keeps it open until something else (a dm table) holds it.
 */
int overlay_loop_attach(const char *file, bool read_only, const char *tag,
                        int *fd_out, char *dev_out, size_t dev_size);

/* Detaches every loop device whose lo_file_name starts with tag_prefix or
 * whose backing file is backing (either may be NULL); *count_out (may be
 * NULL) gets how many. */
int overlay_loop_detach_leftovers(const char *tag_prefix, const char *backing,
                                  unsigned *count_out);

/* Pids of processes with an open descriptor on block device dev, at most
 * max of them. */
size_t overlay_block_holders(dev_t dev, pid_t *pids, size_t max);

/* The dm-snapshot driver behind overlay_activate/deactivate. */
int overlay_dm_activate(const vmm_context *ctx,
                        const struct overlay_spec *spec, const char *cow,
                        char *path_out, size_t size);
int overlay_dm_deactivate(const vmm_context *ctx,
                          const struct overlay_spec *spec, const char *cow);

#endif /* LIBVMM_OVERLAY_H */
