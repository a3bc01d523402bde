/*
 * The dm-snapshot overlay driver: loop devices through the loop-control
 * ioctls, a persistent snapshot target through libdevmapper.
 *
 * Names derive from the VM so that what a crash leaves (a dm device, loop
 * devices still attached) is found again: the dm device is
 * overlay_dm_name(), the loop devices carry "NAME:base" and "NAME:cow" as
 * lo_file_name, and the COW loop is also found by its backing file.
 *
 * libdevmapper keeps process-wide settings: on first use this file turns
 * its udev synchronisation off (the library creates /dev/mapper nodes
 * itself, no udev cookie waits that could hang) and routes its log, which
 * would otherwise go to stderr, into the error record.
 *
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/dm-ioctl.h>
#include <linux/loop.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <libdevmapper.h>

#include "overlay.h"

#define COMPONENT "overlay"
#define DM_PREFIX "libvmm-"
#define PLAIN_NAME_MAX 32
#define HASHED_PREFIX_MAX 16
#define COW_MAGIC 0x70416e53u /* "SnAp", little endian */
#define REMOVE_TRIES 12
#define HOLDERS_MAX 16

static bool name_char_ok(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '.' || c == '+' || c == '-';
}

/* FNV-1a, 64 bits: stable across builds and hosts, which a leftover
 * search after an upgrade needs. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

int overlay_dm_name(const char *vm_name, char *buf, size_t size)
{
    char prefix[HASHED_PREFIX_MAX + 1];
    size_t len, n = 0;
    bool plain;

    if (vm_name == NULL || vm_name[0] == '\0')
        return error_set(VMM_EINVAL, "dm name: the VM name is empty");
    if (buf == NULL || size < OVERLAY_DM_NAME_MAX + 1)
        return error_set(VMM_EINVAL, "dm name: buffer of %zu bytes is too "
                         "small", size);
    len = strlen(vm_name);
    plain = len <= PLAIN_NAME_MAX && strcmp(vm_name, ".") != 0 &&
            strcmp(vm_name, "..") != 0;
    for (size_t i = 0; plain && i < len; i++)
        plain = name_char_ok((unsigned char)vm_name[i]);
    if (plain) {
        snprintf(buf, size, DM_PREFIX "%s", vm_name);
        return 0;
    }

    for (size_t i = 0; i < len && n < HASHED_PREFIX_MAX; i++) {
        unsigned char c = (unsigned char)vm_name[i];

        prefix[n++] = name_char_ok(c) ? (char)c : '_';
    }
    prefix[n] = '\0';
    snprintf(buf, size, DM_PREFIX "%s-%016" PRIx64, prefix,
             name_hash(vm_name));
    return 0;
}

int overlay_dm_table(uint64_t sectors, const char *origin, const char *cow,
                     char *buf, size_t size)
{
    int n;

    if (sectors == 0 || origin == NULL || cow == NULL || origin[0] == '\0' ||
        cow[0] == '\0' || strpbrk(origin, " \t\n") != NULL ||
        strpbrk(cow, " \t\n") != NULL)
        return error_set(VMM_EINVAL, "dm table: empty size or a device "
                         "name that is empty or holds whitespace");
    n = snprintf(buf, size, "0 %" PRIu64 " snapshot %s %s P 8", sectors,
                 origin, cow);
    if (n < 0 || (size_t)n >= size)
        return error_set(VMM_EINVAL, "dm table: buffer too small");
    return 0;
}

int overlay_dm_parse_status(const char *params, struct overlay_dm_status *out)
{
    uint64_t used, total, meta;
    int consumed = 0;

    if (params == NULL || out == NULL)
        return error_set(VMM_EINVAL, "dm status: nothing to parse");
    memset(out, 0, sizeof(*out));
    if (strcmp(params, "Invalid") == 0) {
        out->state = OVERLAY_DM_INVALID;
        return 0;
    }
    if (strcmp(params, "Overflow") == 0) {
        out->state = OVERLAY_DM_OVERFLOW;
        return 0;
    }
    if (strcmp(params, "Merge failed") == 0) {
        out->state = OVERLAY_DM_MERGE_FAILED;
        return 0;
    }
    if (sscanf(params, "%" SCNu64 "/%" SCNu64 " %" SCNu64 "%n", &used,
               &total, &meta, &consumed) != 3 || params[consumed] != '\0' ||
        total == 0 || used > total || meta > used)
        return error_set(VMM_EDISK, "dm status \"%s\" is not a snapshot "
                         "status", params);
    out->state = OVERLAY_DM_VALID;
    out->used_sectors = used;
    out->total_sectors = total;
    out->metadata_sectors = meta;
    return 0;
}

int overlay_dm_check_status(const struct overlay_dm_status *st,
                            const char *device)
{
    switch (st->state) {
    case OVERLAY_DM_INVALID:
        return error_set(VMM_EDISK, "snapshot %s is invalidated (its COW "
                         "filled up or failed); the disk's writes are lost, "
                         "recreate the VM's disk", device);
    case OVERLAY_DM_OVERFLOW:
        return error_set(VMM_EDISK, "snapshot %s overflowed: its COW is "
                         "full", device);
    case OVERLAY_DM_MERGE_FAILED:
        return error_set(VMM_EDISK, "snapshot %s: a merge failed", device);
    case OVERLAY_DM_VALID:
        break;
    }
    if (st->used_sectors >= st->total_sectors)
        return error_set(VMM_EDISK, "snapshot %s: its COW is full (%" PRIu64
                         " of %" PRIu64 " sectors used)", device,
                         st->used_sectors, st->total_sectors);
    return 0;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

int overlay_cow_header_check(const void *header, size_t len, const char *cow)
{
    const unsigned char *h = header;

    if (len < 16 || le32(h) != COW_MAGIC)
        return 0; /* blank: the kernel formats it */
    if (le32(h + 4) == 0)
        return error_set(VMM_EDISK, "COW %s was invalidated by the kernel "
                         "(it filled up or failed); the disk's writes are "
                         "lost, recreate the VM's disk", cow);
    return 0;
}

bool overlay_dm_available(char *why, size_t size)
{
    struct dm_ioctl io;
    int fd;

    fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, size, "/dev/mapper/control: %s", strerror(errno));
        return false;
    }
    memset(&io, 0, sizeof(io));
    io.version[0] = DM_VERSION_MAJOR;
    io.data_size = sizeof(io);
    if (ioctl(fd, DM_VERSION, &io) < 0) {
        snprintf(why, size, "DM_VERSION on /dev/mapper/control: %s",
                 strerror(errno));
        close(fd);
        return false;
    }
    close(fd);
    snprintf(why, size, "device-mapper %u.%u.%u answers", io.version[0],
             io.version[1], io.version[2]);
    return true;
}

/* --- loop devices ------------------------------------------------------ */

static int loop_configure(int dev_fd, int file_fd, bool read_only,
                          const char *tag)
{
    struct loop_config cfg;
    struct loop_info64 info;

    memset(&cfg, 0, sizeof(cfg));
    cfg.fd = (uint32_t)file_fd;
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR |
                        (read_only ? LO_FLAGS_READ_ONLY : 0);
    snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%s", tag);
    if (ioctl(dev_fd, LOOP_CONFIGURE, &cfg) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOTTY)
        return -errno;

    /* Before Linux 5.8: two steps. */
    if (ioctl(dev_fd, LOOP_SET_FD, file_fd) < 0)
        return -errno;
    memset(&info, 0, sizeof(info));
    info.lo_flags = LO_FLAGS_AUTOCLEAR;
    snprintf((char *)info.lo_file_name, LO_NAME_SIZE, "%s", tag);
    if (ioctl(dev_fd, LOOP_SET_STATUS64, &info) < 0) {
        int e = errno;

        ioctl(dev_fd, LOOP_CLR_FD, 0);
        return -e;
    }
    return 0;
}

int overlay_loop_attach(const char *file, bool read_only, const char *tag,
                        int *fd_out, char *dev_out, size_t dev_size)
{
    int ctl = -1, file_fd = -1, dev_fd = -1, r = 0;
    int mode = read_only ? O_RDONLY : O_RDWR;
    char dev[64];

    if (file == NULL || tag == NULL || fd_out == NULL ||
        strlen(tag) >= LO_NAME_SIZE)
        return error_set(VMM_EINVAL, "loop attach: bad arguments");
    file_fd = open(file, mode | O_CLOEXEC);
    if (file_fd < 0)
        return error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                            "opening %s for a loop device", file);
    ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        r = error_set_os(VMM_EUNSUPPORTED, errno, "/dev/loop-control");
        goto out;
    }

    /* Another program may take the free device first: try again. */
    for (int attempt = 0; attempt < 8; attempt++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);

        if (n < 0) {
            r = error_set_os(VMM_EIO, errno, "LOOP_CTL_GET_FREE");
            goto out;
        }
        snprintf(dev, sizeof(dev), "/dev/loop%d", n);
        dev_fd = open(dev, mode | O_CLOEXEC);
        if (dev_fd < 0) {
            r = error_set_os(VMM_EIO, errno, "opening %s", dev);
            goto out;
        }
        r = loop_configure(dev_fd, file_fd, read_only, tag);
        if (r == 0)
            break;
        close(dev_fd);
        dev_fd = -1;
        if (r != -EBUSY) {
            r = error_set_os(VMM_EIO, -r, "attaching %s to %s", file, dev);
            goto out;
        }
    }
    if (dev_fd < 0) {
        r = error_set(VMM_EBUSY, "attaching %s: every free loop device was "
                      "taken by someone else first", file);
        goto out;
    }
    if (dev_out != NULL)
        snprintf(dev_out, dev_size, "%s", dev);
    *fd_out = dev_fd;
    r = 0;

out:
    if (ctl >= 0)
        close(ctl);
    close(file_fd);
    return r;
}

static bool read_sys_line(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    bool ok;

    if (f == NULL)
        return false;
    ok = fgets(buf, (int)size, f) != NULL;
    fclose(f);
    if (ok)
        buf[strcspn(buf, "\n")] = '\0';
    return ok;
}

int overlay_loop_detach_leftovers(const char *tag_prefix, const char *backing,
                                  unsigned *count_out)
{
    char real[4096] = "";
    unsigned count = 0;
    struct dirent *de;
    DIR *d;

    if (backing != NULL && realpath(backing, real) == NULL)
        real[0] = '\0';
    d = opendir("/sys/block");
    if (d == NULL)
        return error_set_os(VMM_EIO, errno, "listing /sys/block");
    while ((de = readdir(d)) != NULL) {
        struct loop_info64 info;
        char path[512], file[4096], dev[300];
        bool match = false;
        int fd;

        if (strncmp(de->d_name, "loop", 4) != 0 ||
            !isdigit((unsigned char)de->d_name[4]))
            continue;
        snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file",
                 de->d_name);
        if (!read_sys_line(path, file, sizeof(file)))
            continue; /* not attached */
        if (real[0] != '\0' && strcmp(file, real) == 0)
            match = true;
        snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
        fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        memset(&info, 0, sizeof(info));
        if (!match && tag_prefix != NULL &&
            ioctl(fd, LOOP_GET_STATUS64, &info) == 0 &&
            strncmp((const char *)info.lo_file_name, tag_prefix,
                    strlen(tag_prefix)) == 0)
            match = true;
        /* On a device still in use this only marks it autoclear. */
        if (match && ioctl(fd, LOOP_CLR_FD, 0) == 0)
            count++;
        close(fd);
    }
    closedir(d);
    if (count_out != NULL)
        *count_out = count;
    return 0;
}

size_t overlay_block_holders(dev_t dev, pid_t *pids, size_t max)
{
    struct dirent *pe;
    size_t n = 0;
    DIR *proc;

    proc = opendir("/proc");
    if (proc == NULL)
        return 0;
    while ((pe = readdir(proc)) != NULL && n < max) {
        char fd_dir[300];
        struct dirent *fe;
        DIR *fds;

        if (!isdigit((unsigned char)pe->d_name[0]))
            continue;
        snprintf(fd_dir, sizeof(fd_dir), "/proc/%s/fd", pe->d_name);
        fds = opendir(fd_dir);
        if (fds == NULL)
            continue;
        while ((fe = readdir(fds)) != NULL) {
            char link[600];
            struct stat st;

            if (fe->d_name[0] == '.')
                continue;
            snprintf(link, sizeof(link), "%s/%s", fd_dir, fe->d_name);
            if (stat(link, &st) == 0 && S_ISBLK(st.st_mode) &&
                st.st_rdev == dev) {
                pids[n++] = (pid_t)atoi(pe->d_name);
                break;
            }
        }
        closedir(fds);
    }
    closedir(proc);
    return n;
}

/* --- libdevmapper ------------------------------------------------------ */

static _Thread_local char dm_message[256];

static void dm_log_capture(int level, const char *file, int line,
                           int dm_errno_or_class, const char *f, ...)
{
    va_list ap;

    if (level > 3) /* errors only; warnings and debug are dropped */
        return;
    va_start(ap, f);
    vsnprintf(dm_message, sizeof(dm_message), f, ap);
    va_end(ap);
}

static void dm_setup_once(void)
{
    dm_log_with_errno_init(dm_log_capture);
    dm_udev_set_sync_support(0);
}

static void dm_setup(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, dm_setup_once);
    dm_message[0] = '\0';
}

static const char *dm_why(void)
{
    return dm_message[0] ? dm_message : "device-mapper refused it";
}

/*
 * libdevmapper only queues its /dev/mapper node changes; with udev
 * synchronisation off they run when asked to. Where that did not leave a
 * node of the device's number (no udev rules, a node left by an earlier
 * device of the same name), the node is made here.
 */
static int dm_node_ensure(const char *name, const struct dm_info *info)
{
    dev_t want = makedev(info->major, info->minor);
    char path[sizeof("/dev/mapper/") + OVERLAY_DM_NAME_MAX];
    struct stat st;

    dm_task_update_nodes();
    snprintf(path, sizeof(path), "/dev/mapper/%s", name);
    if (stat(path, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == want)
        return 0;
    if (unlink(path) < 0 && errno != ENOENT)
        return error_set_os(VMM_EIO, errno, "removing stale node %s", path);
    if (mknod(path, S_IFBLK | 0600, want) < 0)
        return error_set_os(VMM_EIO, errno, "making device node %s (%u:%u)",
                            path, info->major, info->minor);
    return 0;
}

/* After a removal: the queued node deletion, and any node it missed. */
static void dm_node_drop(const char *name)
{
    char path[sizeof("/dev/mapper/") + OVERLAY_DM_NAME_MAX];
    struct stat st;

    dm_task_update_nodes();
    snprintf(path, sizeof(path), "/dev/mapper/%s", name);
    if (lstat(path, &st) == 0 && (S_ISBLK(st.st_mode) ||
                                  S_ISLNK(st.st_mode)))
        unlink(path);
}

static int dm_info_of(const char *name, struct dm_info *info)
{
    struct dm_task *dmt = dm_task_create(DM_DEVICE_INFO);
    int r = 0;

    memset(info, 0, sizeof(*info));
    if (dmt == NULL)
        return error_set(VMM_ENOMEM, "dm task for %s", name);
    if (!dm_task_set_name(dmt, name) || !dm_task_run(dmt) ||
        !dm_task_get_info(dmt, info))
        r = error_set(VMM_EIO, "dm info of %s: %s", name, dm_why());
    dm_task_destroy(dmt);
    return r;
}

/*
 * Runs a STATUS or TABLE task (what: "status", "table") on dm device name,
 * whose one target must be a snapshot, and gives its parameters: *params
 * points into *out, which the caller destroys (also on failure, when set).
 * A device that is not a snapshot is not libvmm's: VMM_EDISK.
 */
static int snapshot_task(int task_type, const char *what, const char *name,
                         struct dm_task **out, const char **params)
{
    struct dm_task *dmt = dm_task_create(task_type);
    char *type = NULL, *p = NULL;
    uint64_t start, length;

    *out = dmt;
    if (dmt == NULL)
        return error_set(VMM_ENOMEM, "dm task for %s", name);
    if (!dm_task_set_name(dmt, name) || !dm_task_run(dmt))
        return error_set(VMM_EIO, "dm %s of %s: %s", what, name, dm_why());
    dm_get_next_target(dmt, NULL, &start, &length, &type, &p);
    if (type == NULL || strcmp(type, "snapshot") != 0)
        return error_set(VMM_EDISK, "dm device %s is not a snapshot (%s); "
                         "not libvmm's", name, type ? type : "no table");
    *params = p ? p : "";
    return 0;
}

static int dm_status_of(const char *name, struct overlay_dm_status *st)
{
    struct dm_task *dmt;
    const char *params;
    int r;

    r = snapshot_task(DM_DEVICE_STATUS, "status", name, &dmt, &params);
    if (r == 0)
        r = overlay_dm_parse_status(params, st);
    if (dmt != NULL)
        dm_task_destroy(dmt);
    return r;
}

/* Whether the loop device MAJ:MIN is backed by file (compared by path:
 * the kernel's record of a deleted file ends in " (deleted)"). */
static bool loop_backed_by(const char *majmin, const char *file)
{
    char path[128], backing[4096], real[4096];

    snprintf(path, sizeof(path), "/sys/dev/block/%s/loop/backing_file",
             majmin);
    return realpath(file, real) != NULL &&
           read_sys_line(path, backing, sizeof(backing)) &&
           strcmp(backing, real) == 0;
}

/*
 * Whether the snapshot device `name` is the one of this base image and
 * COW. A crash that also lost the VM's directory leaves a device whose
 * COW is a deleted file; a later VM of the same name must not inherit it.
 * A device that is not a snapshot is not libvmm's: VMM_EDISK.
 */
static int dm_table_is_for(const char *name, const char *base,
                           const char *cow, bool *match)
{
    char origin[32], cow_dev[32];
    struct dm_task *dmt;
    const char *params;
    int r;

    *match = false;
    r = snapshot_task(DM_DEVICE_TABLE, "table", name, &dmt, &params);
    if (r == 0 && sscanf(params, "%31s %31s", origin, cow_dev) == 2)
        *match = loop_backed_by(origin, base) && loop_backed_by(cow_dev, cow);
    if (dmt != NULL)
        dm_task_destroy(dmt);
    return r;
}

static int dm_create_snapshot(const char *name, uint64_t sectors,
                              const char *table_params)
{
    struct dm_task *dmt = dm_task_create(DM_DEVICE_CREATE);
    char uuid[OVERLAY_DM_NAME_MAX + 8];
    int r = 0;

    if (dmt == NULL)
        return error_set(VMM_ENOMEM, "dm task for %s", name);
    snprintf(uuid, sizeof(uuid), "LIBVMM-%s", name);
    if (!dm_task_set_name(dmt, name) || !dm_task_set_uuid(dmt, uuid) ||
        !dm_task_add_target(dmt, 0, sectors, "snapshot", table_params) ||
        !dm_task_run(dmt))
        r = error_set(VMM_EIO, "creating dm device %s (%s): %s", name,
                      table_params, dm_why());
    dm_task_destroy(dmt);
    return r;
}

static int dm_remove_once(const char *name, int *os_error)
{
    struct dm_task *dmt = dm_task_create(DM_DEVICE_REMOVE);
    int ok;

    if (dmt == NULL)
        return error_set(VMM_ENOMEM, "dm task for %s", name);
    ok = dm_task_set_name(dmt, name) && dm_task_run(dmt);
    *os_error = ok ? 0 : dm_task_get_errno(dmt);
    dm_task_destroy(dmt);
    return ok ? 0 : -1;
}

/* Removes the device, retrying while it is busy; then names the holders. */
static int dm_remove(const char *name)
{
    struct dm_info info;
    int os_error = 0, delay_ms = 20;
    pid_t pids[HOLDERS_MAX];
    char who[256] = "";
    size_t n, len = 0;

    for (int attempt = 0; attempt < REMOVE_TRIES; attempt++) {
        if (dm_remove_once(name, &os_error) == 0) {
            dm_node_drop(name);
            return 0;
        }
        if (dm_info_of(name, &info) == 0 && !info.exists) {
            dm_node_drop(name);
            return 0; /* someone else removed it */
        }
        if (os_error != EBUSY && info.open_count == 0)
            return error_set_os(VMM_EIO, os_error, "removing dm device %s: "
                                "%s", name, dm_why());
        usleep((useconds_t)delay_ms * 1000);
        if (delay_ms < 800)
            delay_ms *= 2;
    }

    if (dm_info_of(name, &info) < 0)
        return VMM_EIO;
    n = overlay_block_holders(makedev(info.major, info.minor), pids,
                              HOLDERS_MAX);
    for (size_t i = 0; i < n && len < sizeof(who); i++)
        len += (size_t)snprintf(who + len, sizeof(who) - len, "%s%d",
                                i ? ", " : "", (int)pids[i]);
    if (n == 0)
        snprintf(who, sizeof(who), "no process (a kernel user: see "
                 "/sys/dev/block/%u:%u/holders)", info.major, info.minor);
    return error_set(VMM_EBUSY, "dm device %s is still in use after %d "
                     "attempts; held by pid %s", name, REMOVE_TRIES, who);
}

static int read_cow_header(const char *cow)
{
    unsigned char header[16];
    ssize_t n;
    int fd;

    fd = open(cow, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                            "opening COW %s", cow);
    n = pread(fd, header, sizeof(header), 0);
    close(fd);
    if (n < 0)
        return error_set_os(VMM_EIO, errno, "reading COW %s", cow);
    return overlay_cow_header_check(header, (size_t)n, cow);
}

int overlay_dm_activate(const vmm_context *ctx,
                        const struct overlay_spec *spec, const char *cow,
                        char *path_out, size_t size)
{
    char name[OVERLAY_DM_NAME_MAX + 1], tag[LO_NAME_SIZE], why[256];
    char table[256], origin[32], cow_dev[32];
    struct overlay_dm_status st;
    int base_fd = -1, cow_fd = -1, r;
    struct dm_info info;
    struct stat sb, sc;
    uint64_t base_size;

    r = overlay_dm_name(spec->vm_name, name, sizeof(name));
    if (r < 0)
        return r;
    if (!overlay_dm_available(why, sizeof(why)))
        return error_set(VMM_EUNSUPPORTED, "dm-snapshot for VM %s: %s",
                         spec->vm_name, why);
    dm_setup();

    r = dm_info_of(name, &info);
    if (r < 0)
        return r;
    if (info.exists) {
        bool ours;

        r = dm_table_is_for(name, spec->base_image, cow, &ours);
        if (r < 0)
            return r;
        if (ours) {
            r = dm_status_of(name, &st);
            if (r == 0)
                r = overlay_dm_check_status(&st, name);
            if (r == 0)
                r = dm_node_ensure(name, &info);
            if (r == 0)
                snprintf(path_out, size, "/dev/mapper/%s", name);
            return r;
        }
        log_warning(ctx, COMPONENT, spec->vm_name, "dm device %s is left "
                    "over from an earlier disk of that name (another COW "
                    "or base image); removing it", name);
        r = dm_remove(name);
        if (r < 0)
            return r;
    }

    /* No device: loop devices of ours still attached are a crash's. */
    snprintf(tag, sizeof(tag), "%s:", name);
    overlay_loop_detach_leftovers(tag, cow, NULL);
    r = read_cow_header(cow);
    if (r < 0)
        return r;
    r = overlay_check_base(spec->base_image, &base_size);
    if (r < 0)
        return r;

    snprintf(tag, sizeof(tag), "%s:base", name);
    r = overlay_loop_attach(spec->base_image, true, tag, &base_fd, NULL, 0);
    if (r < 0)
        goto out;
    snprintf(tag, sizeof(tag), "%s:cow", name);
    r = overlay_loop_attach(cow, false, tag, &cow_fd, NULL, 0);
    if (r < 0)
        goto out;
    if (fstat(base_fd, &sb) < 0 || fstat(cow_fd, &sc) < 0) {
        r = error_set_os(VMM_EIO, errno, "stat of a loop device");
        goto out;
    }
    snprintf(origin, sizeof(origin), "%u:%u", major(sb.st_rdev),
             minor(sb.st_rdev));
    snprintf(cow_dev, sizeof(cow_dev), "%u:%u", major(sc.st_rdev),
             minor(sc.st_rdev));
    r = overlay_dm_table(base_size / 512, origin, cow_dev, table,
                         sizeof(table));
    if (r < 0)
        goto out;
    /* dm_task_add_target takes the parameters after the target type. */
    r = dm_create_snapshot(name, base_size / 512,
                           strstr(table, "snapshot ") + strlen("snapshot "));
    if (r < 0)
        goto out;

    r = dm_status_of(name, &st);
    if (r == 0)
        r = overlay_dm_check_status(&st, name);
    if (r == 0)
        r = dm_info_of(name, &info);
    if (r == 0)
        r = dm_node_ensure(name, &info);
    if (r < 0) {
        char keep[1024];

        snprintf(keep, sizeof(keep), "%s", vmm_error_last()->message);
        dm_remove(name);
        error_set(VMM_EDISK, "%s", keep);
        r = VMM_EDISK;
        goto out;
    }
    snprintf(path_out, size, "/dev/mapper/%s", name);
    log_info(ctx, COMPONENT, spec->vm_name, "activated %s: snapshot of %s "
             "with COW %s", path_out, spec->base_image, cow);

out:
    /* Autoclear: once dm holds them, closing ours keeps them; on failure
     * closing detaches them. */
    if (base_fd >= 0)
        close(base_fd);
    if (cow_fd >= 0)
        close(cow_fd);
    return r;
}

int overlay_dm_deactivate(const vmm_context *ctx,
                          const struct overlay_spec *spec, const char *cow)
{
    char name[OVERLAY_DM_NAME_MAX + 1], tag[LO_NAME_SIZE], why[256];
    struct dm_info info;
    unsigned count = 0;
    int r;

    r = overlay_dm_name(spec->vm_name, name, sizeof(name));
    if (r < 0)
        return r;
    if (overlay_dm_available(why, sizeof(why))) {
        dm_setup();
        r = dm_info_of(name, &info);
        if (r == 0 && info.exists)
            r = dm_remove(name);
        if (r < 0)
            return r;
    }
    snprintf(tag, sizeof(tag), "%s:", name);
    r = overlay_loop_detach_leftovers(tag, cow, &count);
    if (r == 0 && count > 0)
        log_info(ctx, COMPONENT, spec->vm_name, "detached %u leftover loop "
                 "device(s) of %s", count, name);
    return r;
}
