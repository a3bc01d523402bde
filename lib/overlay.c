/*
 * Per-VM root disks over a shared base image: driver choice, base image
 * checks, and the copy driver. The dm-snapshot driver is overlay-dm.c.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <e2p/e2p.h>
#include <ext2fs/ext2fs.h>

#include "overlay.h"
#include "prep.h"

#define COMPONENT "overlay"
#define DISK_FILE "disk.img"
#define COW_FILE "cow.img"
#define TMP_PREFIX ".disk.img.tmp."
#define COPY_CHUNK (16u << 20)
#define BUF_SIZE (128u << 10)

static const char *const driver_names[] = {
    [OVERLAY_AUTO] = "auto",
    [OVERLAY_DM_SNAPSHOT] = "dm-snapshot",
    [OVERLAY_COPY] = "copy",
};

const char *overlay_driver_name(enum overlay_driver d)
{
    if ((unsigned)d >= ARRAY_SIZE(driver_names))
        return "unknown";
    return driver_names[d];
}

int overlay_driver_parse(const char *name, enum overlay_driver *out)
{
    for (size_t i = 0; name != NULL && i < ARRAY_SIZE(driver_names); i++) {
        if (strcmp(name, driver_names[i]) == 0) {
            *out = (enum overlay_driver)i;
            return 0;
        }
    }
    return error_set(VMM_EINVAL, "overlay driver \"%s\" is not one of "
                     "auto, dm-snapshot, copy", name ? name : "(null)");
}

/* Names the first set bit of `bits` for a feature class of libe2p. */
static void feature_name(int compat_type, uint32_t bits, char *buf,
                         size_t size)
{
    for (int b = 0; b < 32; b++) {
        if (bits & (1u << b)) {
            snprintf(buf, size, "%s", e2p_feature2string(compat_type,
                                                         1u << b));
            return;
        }
    }
    buf[0] = '\0';
}

int overlay_check_base(const char *base_image, uint64_t *size_out)
{
    const char *version = NULL;
    uint32_t incompat, ro_compat;
    ext2_filsys fs = NULL;
    char feature[64];
    struct stat st;
    uint64_t size;
    errcode_t err;
    int fd, r = 0;

    if (base_image == NULL || base_image[0] == '\0')
        return error_set(VMM_EINVAL, "base image: no path given");
    if (stat(base_image, &st) < 0)
        return error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                            "base image %s", base_image);
    if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        fd = open(base_image, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0) {
            r = error_set_os(VMM_EIO, errno, "base image %s: reading the "
                             "device's size", base_image);
            if (fd >= 0)
                close(fd);
            return r;
        }
        close(fd);
    } else {
        return error_set(VMM_EINVAL, "base image %s is neither a regular "
                         "file nor a block device", base_image);
    }

    /* FORCE: open despite unknown features, so they can be named. */
    err = ext2fs_open2(base_image, NULL, EXT2_FLAG_64BITS | EXT2_FLAG_FORCE,
                       0, 0, unix_io_manager, &fs);
    if (err)
        return error_set(VMM_EDISK, "base image %s does not hold an ext4 "
                         "filesystem: %s", base_image,
                         prep_ext2_strerror(err));
    incompat = fs->super->s_feature_incompat &
               ~(uint32_t)EXT2_LIB_FEATURE_INCOMPAT_SUPP;
    ro_compat = fs->super->s_feature_ro_compat &
                ~(uint32_t)EXT2_LIB_FEATURE_RO_COMPAT_SUPP;
    ext2fs_get_library_version(&version, NULL);
    if (incompat != 0) {
        feature_name(E2P_FEATURE_INCOMPAT, incompat, feature,
                     sizeof(feature));
        r = error_set(VMM_EDISK, "base image %s uses ext4 feature %s, which "
                      "the installed e2fsprogs %s does not know", base_image,
                      feature, version ? version : "?");
    } else if (ro_compat != 0) {
        feature_name(E2P_FEATURE_RO_INCOMPAT, ro_compat, feature,
                     sizeof(feature));
        r = error_set(VMM_EDISK, "base image %s uses ext4 feature %s, which "
                      "the installed e2fsprogs %s does not know", base_image,
                      feature, version ? version : "?");
    }
    ext2fs_close_free(&fs);
    if (r == 0 && size_out != NULL)
        *size_out = size;
    return r;
}

enum overlay_driver overlay_pick(const vmm_context *ctx, const char *vm_name,
                                 enum overlay_driver requested)
{
    char why[256];

    if (requested != OVERLAY_AUTO)
        return requested;
    if (overlay_dm_available(why, sizeof(why))) {
        log_info(ctx, COMPONENT, vm_name, "overlay driver dm-snapshot: %s",
                 why);
        return OVERLAY_DM_SNAPSHOT;
    }
    log_info(ctx, COMPONENT, vm_name, "overlay driver copy: no "
             "device-mapper (%s)", why);
    return OVERLAY_COPY;
}

static int check_spec(const struct overlay_spec *spec, bool need_base)
{
    if (spec == NULL || spec->vm_name == NULL || spec->vm_name[0] == '\0' ||
        spec->dir == NULL || spec->dir[0] == '\0')
        return error_set(VMM_EINVAL, "overlay: spec, VM name or directory "
                         "missing");
    if (need_base && (spec->base_image == NULL ||
                      spec->base_image[0] == '\0'))
        return error_set(VMM_EINVAL, "overlay of VM %s: no base image",
                         spec->vm_name);
    if (spec->driver != OVERLAY_DM_SNAPSHOT && spec->driver != OVERLAY_COPY)
        return error_set(VMM_EINVAL, "overlay of VM %s: driver %s is not "
                         "resolved (call overlay_pick)", spec->vm_name,
                         overlay_driver_name(spec->driver));
    return 0;
}

static char *dir_file(const struct overlay_spec *spec, const char *name)
{
    return xasprintf("%s/%s", spec->dir, name);
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* --- the copy driver ------------------------------------------------------ */

static bool all_zero(const char *buf, size_t len)
{
    return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

/* pwrite all of buf; a short write is retried, so errno tells why one
 * stopped (ENOSPC comes on the write after the one that filled the disk). */
static int pwrite_all(int fd, const char *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = ENOSPC;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Bytes of the 4 KiB block at `at` in a buffer of n bytes. */
static size_t block_len(ssize_t n, size_t at)
{
    return (size_t)n - at < 4096 ? (size_t)n - at : 4096;
}

/* read/write for [off, end), leaving all-zero 4 KiB blocks as holes. */
static int copy_rw(int in, int out, uint64_t off, uint64_t end, char *buf,
                   const char *base, const char *dst)
{
    while (off < end) {
        size_t want = end - off > BUF_SIZE ? BUF_SIZE : (size_t)(end - off);
        ssize_t n = pread(in, buf, want, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_set_os(VMM_EIO, errno, "reading base image %s",
                                base);
        if (n == 0)
            return error_set(VMM_EIO, "base image %s shrank while being "
                             "copied", base);
        /* One write per run of data blocks, not one per block. */
        for (size_t at = 0; at < (size_t)n;) {
            size_t run = at;

            while (run < (size_t)n && !all_zero(buf + run, block_len(n, run)))
                run += block_len(n, run);
            if (run > at && pwrite_all(out, buf + at, run - at, off + at) < 0)
                return error_set_os(errno == ENOSPC ? VMM_EDISK : VMM_EIO,
                                    errno, "writing %s", dst);
            at = run;
            while (at < (size_t)n && all_zero(buf + at, block_len(n, at)))
                at += block_len(n, at);
        }
        off += (uint64_t)n;
    }
    return 0;
}

/* Copies the base's data extents, block runs at a time; see overlay.h. */
static int copy_sparse(const vmm_context *ctx, const char *vm_name, int in,
                       int out, uint64_t size, bool flush_soon,
                       const char *base, const char *dst)
{
    uint64_t off = 0;
    char *buf;
    int r = 0;

    if (ftruncate(out, (off_t)size) < 0)
        return error_set_os(VMM_EIO, errno, "sizing %s", dst);
    buf = malloc(BUF_SIZE);
    if (buf == NULL)
        return error_set(VMM_ENOMEM, "copy buffer");
    while (off < size) {
        off_t data = lseek(in, (off_t)off, SEEK_DATA);
        off_t hole;
        uint64_t end;

        if (data < 0 && errno == ENXIO)
            break; /* only a hole remains */
        if (data < 0) {
            data = (off_t)off; /* no SEEK_DATA: all of it is data */
            hole = (off_t)size;
        } else {
            hole = lseek(in, data, SEEK_HOLE);
            if (hole < 0)
                hole = (off_t)size;
        }
        end = (uint64_t)hole > size ? size : (uint64_t)hole;

        /* In steps, so progress moves on a large extent too. */
        for (uint64_t at = (uint64_t)data; at < end;) {
            uint64_t step = end - at > COPY_CHUNK ? at + COPY_CHUNK : end;

            r = copy_rw(in, out, at, step, buf, base, dst);
            if (r < 0)
                goto out;
            /* Start writeback now, so the fsync at the end has little
             * left; a deferred flush leaves it to the kernel's pace. */
            if (flush_soon)
                sync_file_range(out, (off64_t)at, (off64_t)(step - at),
                                SYNC_FILE_RANGE_WRITE);
            at = step;
            progress_emit(ctx, vm_name, "copy", at, size);
        }
        off = end;
    }
    progress_emit(ctx, vm_name, "copy", size, size);

out:
    free(buf);
    return r;
}

static int create_copy(const vmm_context *ctx, const struct overlay_spec *spec,
                       uint64_t base_size)
{
    char *disk = NULL, *tmp = NULL;
    int in = -1, out = -1, r;
    bool cloned = false;
    struct stat st;

    disk = dir_file(spec, DISK_FILE);
    tmp = xasprintf("%s/" TMP_PREFIX "XXXXXX", spec->dir);
    if (disk == NULL || tmp == NULL) {
        r = VMM_ENOMEM;
        goto out;
    }
    if (lstat(disk, &st) == 0) {
        r = error_set(VMM_EEXIST, "overlay of VM %s: %s already exists",
                      spec->vm_name, disk);
        goto out;
    }
    in = open(spec->base_image, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        r = error_set_os(VMM_EIO, errno, "opening base image %s",
                         spec->base_image);
        goto out;
    }
    out = mkostemp(tmp, O_CLOEXEC);
    if (out < 0) {
        r = error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                         "creating a disk in %s", spec->dir);
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (fchmod(out, 0600) < 0) {
        r = error_set_os(VMM_EIO, errno, "chmod %s", tmp);
        goto out;
    }

    if (ioctl(out, FICLONE, in) == 0) {
        cloned = true;
        progress_emit(ctx, spec->vm_name, "copy", base_size, base_size);
        r = 0;
    } else {
        r = copy_sparse(ctx, spec->vm_name, in, out, base_size,
                        !spec->defer_flush,
                        spec->base_image, tmp);
    }
    if (r < 0)
        goto out;
    if (spec->disk_size > base_size &&
        ftruncate(out, (off_t)spec->disk_size) < 0) {
        r = error_set_os(errno == ENOSPC || errno == EFBIG ? VMM_EDISK
                         : VMM_EIO, errno, "growing %s to %llu bytes", tmp,
                         (unsigned long long)spec->disk_size);
        goto out;
    }
    if (!spec->defer_flush && fsync(out) < 0) {
        r = error_set_os(errno == ENOSPC ? VMM_EDISK : VMM_EIO, errno,
                         "flushing %s", tmp);
        goto out;
    }
    close(out);
    out = -1;
    if (spec->disk_size > base_size) {
        r = prep_grow_fs(ctx, spec->vm_name, tmp);
        if (r < 0) {
            error_prefix("growing the disk of VM %s: ", spec->vm_name);
            goto out;
        }
    }

    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, disk, RENAME_NOREPLACE) < 0) {
        r = error_set_os(errno == EEXIST ? VMM_EEXIST : VMM_EIO, errno,
                         "renaming %s to %s", tmp, disk);
        goto out;
    }
    free(tmp);
    tmp = NULL;
    fsync_dir(spec->dir);
    log_info(ctx, COMPONENT, spec->vm_name, "made %s from %s by %s", disk,
             spec->base_image, cloned ? "reflink" : "sparse copy");

out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (tmp != NULL)
        unlink(tmp);
    free(tmp);
    free(disk);
    return r;
}

/* --- the dm-snapshot driver's files ------------------------------------- */

static int create_cow(const vmm_context *ctx, const struct overlay_spec *spec,
                      uint64_t base_size)
{
    /* Every chunk of the origin, plus the exception tables (16 bytes per
     * 4 KiB chunk) and the header: it can never fill. Sparse. */
    uint64_t size = base_size + base_size / 256 + (1u << 20);
    char *cow = dir_file(spec, COW_FILE);
    int fd, r = 0;

    if (cow == NULL)
        return VMM_ENOMEM;
    fd = open(cow, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = error_set_os(errno == EEXIST ? VMM_EEXIST : errno == ENOENT ?
                         VMM_ENOTFOUND : VMM_EIO, errno, "creating COW %s",
                         cow);
        free(cow);
        return r;
    }
    if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
        r = error_set_os(VMM_EIO, errno, "sizing COW %s", cow);
        close(fd);
        unlink(cow);
        free(cow);
        return r;
    }
    close(fd);
    fsync_dir(spec->dir);
    log_info(ctx, COMPONENT, spec->vm_name, "made COW %s over %s", cow,
             spec->base_image);
    free(cow);
    return 0;
}

int overlay_create(const vmm_context *ctx, const struct overlay_spec *spec)
{
    uint64_t base_size = 0;
    int r;

    r = check_spec(spec, true);
    if (r < 0)
        return r;
    r = overlay_check_base(spec->base_image, &base_size);
    if (r < 0)
        return r;
    if (spec->disk_size != 0 && spec->disk_size < base_size)
        return error_set(VMM_EINVAL, "disk size %llu bytes of VM %s is "
                         "smaller than its base image %s (%llu bytes)",
                         (unsigned long long)spec->disk_size, spec->vm_name,
                         spec->base_image, (unsigned long long)base_size);
    if (spec->driver == OVERLAY_DM_SNAPSHOT) {
        if (spec->disk_size > base_size)
            return error_set(VMM_EUNSUPPORTED, "disk size %llu bytes of VM "
                             "%s: dm-snapshot cannot grow past its base "
                             "image (%llu bytes); use the copy driver",
                             (unsigned long long)spec->disk_size,
                             spec->vm_name, (unsigned long long)base_size);
        return create_cow(ctx, spec, base_size);
    }
    return create_copy(ctx, spec, base_size);
}

int overlay_flush(const vmm_context *ctx, const struct overlay_spec *spec)
{
    char *disk;
    int fd, r = 0;

    r = check_spec(spec, false);
    if (r < 0 || spec->driver != OVERLAY_COPY)
        return r;
    disk = dir_file(spec, DISK_FILE);
    if (disk == NULL)
        return VMM_ENOMEM;
    fd = open(disk, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        r = error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                         "opening %s", disk);
    else if (fsync(fd) < 0)
        r = error_set_os(errno == ENOSPC ? VMM_EDISK : VMM_EIO, errno,
                         "flushing %s", disk);
    if (fd >= 0)
        close(fd);
    free(disk);
    return r;
}

int overlay_activate(const vmm_context *ctx, const struct overlay_spec *spec,
                     char *path_out, size_t size)
{
    char *file;
    int r;

    r = check_spec(spec, spec != NULL && spec->driver == OVERLAY_DM_SNAPSHOT);
    if (r < 0)
        return r;
    if (path_out == NULL || size == 0)
        return error_set(VMM_EINVAL, "overlay of VM %s: no buffer for the "
                         "disk path", spec->vm_name);
    file = dir_file(spec, spec->driver == OVERLAY_COPY ? DISK_FILE
                                                       : COW_FILE);
    if (file == NULL)
        return VMM_ENOMEM;
    if (access(file, F_OK) < 0) {
        r = error_set_os(VMM_ENOTFOUND, errno, "disk of VM %s: %s",
                         spec->vm_name, file);
    } else if (spec->driver == OVERLAY_DM_SNAPSHOT) {
        r = overlay_dm_activate(ctx, spec, file, path_out, size);
    } else if ((size_t)snprintf(path_out, size, "%s", file) >= size) {
        r = error_set(VMM_EINVAL, "disk path %s does not fit %zu bytes",
                      file, size);
    }
    free(file);
    return r;
}

int overlay_deactivate(const vmm_context *ctx,
                       const struct overlay_spec *spec)
{
    char *cow;
    int r;

    r = check_spec(spec, false);
    if (r < 0)
        return r;
    if (spec->driver == OVERLAY_COPY)
        return 0;
    cow = dir_file(spec, COW_FILE);
    if (cow == NULL)
        return VMM_ENOMEM;
    r = overlay_dm_deactivate(ctx, spec, cow);
    free(cow);
    return r;
}

static int unlink_quiet(const char *dir, const char *name)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (unlink(path) < 0 && errno != ENOENT)
        return error_set_os(VMM_EIO, errno, "removing %s", path);
    return 0;
}

int overlay_destroy(const vmm_context *ctx, const struct overlay_spec *spec)
{
    struct overlay_spec dm;
    struct dirent *de;
    DIR *d;
    int r;

    r = check_spec(spec, false);
    if (r < 0)
        return r;
    /* Whatever driver made it, dm leftovers of this VM go too. */
    dm = *spec;
    dm.driver = OVERLAY_DM_SNAPSHOT;
    r = overlay_deactivate(ctx, &dm);
    if (r < 0)
        return r;

    r = unlink_quiet(spec->dir, DISK_FILE);
    if (r == 0)
        r = unlink_quiet(spec->dir, COW_FILE);
    if (r < 0)
        return r;
    /* Temp files of a copy that a crash interrupted. */
    d = opendir(spec->dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : error_set_os(VMM_EIO, errno,
                                                  "listing %s", spec->dir);
    while (r == 0 && (de = readdir(d)) != NULL)
        if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0)
            r = unlink_quiet(spec->dir, de->d_name);
    closedir(d);
    if (r == 0)
        fsync_dir(spec->dir);
    return r;
}
