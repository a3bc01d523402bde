/*
 * On-disk state: records as JSON (yajl), atomic writes, flock()-based
 * locks. See store.h for the layout.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "store.h"

#define RECORD_VERSION 1
#define RECORD_MAX (4u << 20)

void record_clear(struct vm_record *rec)
{
    free(rec->name);
    free(rec->kernel);
    free(rec->initrd);
    free(rec->base_image);
    free(rec->boot_args);
    free(rec->ssh_authorized_keys);
    free(rec->netns);
    for (size_t i = 0; i < rec->n_files; i++) {
        free(rec->files[i].path);
        free(rec->files[i].blob);
    }
    free(rec->files);
    memset(rec, 0, sizeof(*rec));
}

/* --- files and directories ----------------------------------------------- */

static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    char *slash;
    int fd, r = 0;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_set_os(VMM_EIO, errno, "opening directory %s", dir);
    if (fsync(fd) < 0)
        r = error_set_os(VMM_EIO, errno, "syncing directory %s", dir);
    close(fd);
    return r;
}

/*
 * Writes path atomically: temp, fsync, rename, fsync dir. The temporary
 * file is path.tmp.PID, or path.tmp for a caller whose lock every writer
 * of path holds.
 */
static int write_via(const char *path, bool locked, const void *data,
                     size_t size, mode_t mode)
{
    char tmp[PATH_MAX];
    const char *p = data;
    int fd, r;

    r = locked ? snprintf(tmp, sizeof(tmp), "%s.tmp", path)
               : snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    if (r < 0 || (size_t)r >= sizeof(tmp))
        return error_set(VMM_EINVAL, "path too long: %s", path);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return error_set_os(VMM_EIO, errno, "creating %s", tmp);
    if (fchmod(fd, mode) < 0) {
        r = error_set_os(VMM_EIO, errno, "setting the mode of %s", tmp);
        goto fail;
    }

    while (size > 0) {
        ssize_t n = write(fd, p, size);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = error_set_os(VMM_EIO, errno, "writing %s", tmp);
            goto fail;
        }
        p += n;
        size -= (size_t)n;
    }
    if (fsync(fd) < 0) {
        r = error_set_os(VMM_EIO, errno, "syncing %s", tmp);
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        r = error_set_os(VMM_EIO, errno, "closing %s", tmp);
        goto fail;
    }
    fd = -1;

    if (rename(tmp, path) < 0) {
        r = error_set_os(VMM_EIO, errno, "renaming %s to %s", tmp, path);
        goto fail;
    }
    return fsync_parent(path);

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return r;
}

int store_read_file(const char *path, size_t max, char **data_out,
                    size_t *size_out)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd, r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                            "opening %s", path);
    for (;;) {
        ssize_t n;

        if (cap - len < 4096) {
            char *grown;

            if (cap >= max + 1) {
                r = error_set(VMM_ECORRUPT, "%s is larger than %zu bytes",
                              path, max);
                goto out;
            }
            cap = cap ? cap * 2 : 8192;
            grown = realloc(buf, cap + 1);
            if (grown == NULL) {
                r = error_set(VMM_ENOMEM, "reading %s", path);
                goto out;
            }
            buf = grown;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = error_set_os(VMM_EIO, errno, "reading %s", path);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        r = error_set(VMM_ECORRUPT, "%s is larger than %zu bytes", path, max);
        goto out;
    }
    buf[len] = '\0';
    *data_out = buf;
    if (size_out != NULL)
        *size_out = len;
    buf = NULL;

out:
    free(buf);
    close(fd);
    return r;
}

int store_mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return error_set(VMM_EINVAL, "bad directory path \"%s\"", path);
    memcpy(buf, path, len + 1);

    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;

        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return error_set_os(VMM_EIO, errno, "creating directory %s", buf);
        *p = saved;
        if (saved == '\0')
            break;
    }
    return 0;
}

int store_write_file(const char *path, const void *data, size_t size,
                     mode_t mode)
{
    return write_via(path, false, data, size, mode);
}

static int remove_at(int dirfd, const char *name)
{
    struct dirent *e;
    DIR *dir;
    int fd, r = 0;

    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return error_set_os(VMM_EIO, errno, "removing %s", name);

    /*
     * Emptied again if something appears meanwhile: a program opening a
     * VM while it is deleted creates the VM's lock file anew (and, finding
     * no record, leaves).
     */
    for (int pass = 0;; pass++) {
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                    O_CLOEXEC);
        if (fd < 0)
            return errno == ENOENT ? 0 : error_set_os(VMM_EIO, errno,
                                                      "opening %s", name);
        dir = fdopendir(fd);
        if (dir == NULL) {
            close(fd);
            return error_set_os(VMM_EIO, errno, "reading %s", name);
        }
        while ((e = readdir(dir)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            r = remove_at(fd, e->d_name);
            if (r < 0)
                break;
        }
        closedir(dir);
        if (r < 0 || unlinkat(dirfd, name, AT_REMOVEDIR) == 0 ||
            errno == ENOENT)
            return r;
        if (errno != ENOTEMPTY || pass == 4)
            return error_set_os(VMM_EIO, errno, "removing directory %s",
                                name);
    }
}

int store_remove_tree(const char *path)
{
    return remove_at(AT_FDCWD, path);
}


/* --- locks ---------------------------------------------------------------- */

static void read_holder(int fd, char *buf, size_t size)
{
    ssize_t n = pread(fd, buf, size - 1, 0);

    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * Waits for the flock on fd until deadline_ms. A holder lets go by closing
 * its descriptor (store_unlock, or its death), which inotify reports on
 * the lock file: waiters wake at once instead of on a poll's next tick.
 * The watch is in place before each attempt, so no release goes unseen.
 * Without a watch (no inotify instance left) it polls every 5 ms; with
 * one, every 50 ms, for file systems whose other users inotify cannot see.
 * The instance is borrowed from util.c's spares: closing one can take
 * milliseconds, which would be spent holding the lock just won.
 * 0, or -1 with errno (EWOULDBLOCK once the deadline passed).
 */
static int lock_wait(int fd, const char *path, uint64_t deadline_ms)
{
    int ino = inotify_take();
    int wd = -1, r = -1, saved;

    if (ino >= 0)
        wd = inotify_add_watch(ino, path, IN_CLOSE | IN_DELETE_SELF |
                               IN_MOVE_SELF);
    for (;;) {
        struct pollfd pfd = { .fd = wd >= 0 ? ino : -1, .events = POLLIN };
        char events[1024];
        uint64_t now, tick;

        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            r = 0;
            break;
        }
        if (errno != EWOULDBLOCK && errno != EINTR)
            break;
        now = monotonic_ms();
        if (now >= deadline_ms) {
            errno = EWOULDBLOCK;
            break;
        }
        tick = wd >= 0 ? 50 : 5;
        if (poll(&pfd, 1, (int)(deadline_ms - now < tick ? deadline_ms - now
                                : tick)) > 0)
            while (read(ino, events, sizeof(events)) > 0) {
            }
    }
    saved = errno;
    inotify_give_back(ino, wd);
    errno = saved;
    return r;
}

int store_lock(const char *path, uint32_t wait_ms, const char *what,
               int *fd_out)
{
    uint64_t deadline = monotonic_ms() + wait_ms;
    struct stat held, now;
    char pid[24], holder[24];
    int fd, r;

    *fd_out = -1;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                            "opening lock %s", path);

retry:
    r = flock(fd, LOCK_EX | LOCK_NB);
    if (r < 0 && errno == EWOULDBLOCK && wait_ms > 0)
        r = lock_wait(fd, path, deadline);
    if (r < 0 && errno != EWOULDBLOCK) {
        r = error_set_os(VMM_EIO, errno, "locking %s", path);
        close(fd);
        return r;
    }
    if (r < 0) {
        read_holder(fd, holder, sizeof(holder));
        close(fd);
        return error_set(VMM_EBUSY, "%s is locked by another program "
                         "(pid %s)", what, holder[0] ? holder : "unknown");
    }

    /*
     * Whoever held the lock may have removed the file (a delete) and
     * another program may have made a new one: a lock on the old inode
     * would then guard nothing.
     */
    if (fstat(fd, &held) < 0 || stat(path, &now) < 0 ||
        held.st_ino != now.st_ino || held.st_dev != now.st_dev) {
        close(fd);
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO,
                                errno, "opening lock %s", path);
        goto retry;
    }

    snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, strlen(pid), 0) < 0) {
        /* The pid is a courtesy for error messages; the lock holds anyway. */
    }
    *fd_out = fd;
    return 0;
}

void store_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* --- records: writing ------------------------------------------------------ */

static const char *phase_name(enum record_phase p)
{
    switch (p) {
    case PHASE_CREATING: return "creating";
    case PHASE_READY: return "ready";
    case PHASE_DELETING: return "deleting";
    }
    return "creating";
}

static void gen_str(yajl_gen g, const char *key, const char *value)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    if (value == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)value, strlen(value));
}

static void gen_int(yajl_gen g, const char *key, long long value)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    yajl_gen_integer(g, value);
}

static void gen_bool(yajl_gen g, const char *key, bool value)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    yajl_gen_bool(g, value);
}

static void gen_key(yajl_gen g, const char *key)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
}

int record_write(const char *path, const struct vm_record *rec)
{
    const unsigned char *buf;
    size_t len;
    yajl_gen g;
    int r;

    g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return error_set(VMM_ENOMEM, "writing %s", path);
    yajl_gen_config(g, yajl_gen_beautify, 1);

    yajl_gen_map_open(g);
    gen_int(g, "version", RECORD_VERSION);
    gen_str(g, "phase", phase_name(rec->phase));
    gen_str(g, "name", rec->name);
    gen_str(g, "kernel", rec->kernel);
    gen_str(g, "initrd", rec->initrd);
    gen_str(g, "base_image", rec->base_image);
    gen_str(g, "boot_args", rec->boot_args);
    gen_int(g, "vcpus", rec->vcpus);
    gen_int(g, "memory_mib", rec->memory_mib);
    gen_int(g, "disk_size", (long long)rec->disk_size);
    gen_str(g, "overlay", overlay_driver_name(rec->overlay));
    gen_str(g, "ssh_authorized_keys", rec->ssh_authorized_keys);
    gen_str(g, "netns", rec->netns);
    gen_bool(g, "own_netns", rec->own_netns);
    gen_bool(g, "pristine", rec->pristine);
    gen_bool(g, "unflushed", rec->unflushed);
    gen_str(g, "boot_id", rec->boot_id);

    gen_key(g, "net");
    if (rec->has_net) {
        yajl_gen_map_open(g);
        gen_int(g, "slot", rec->lease.slot);
        gen_int(g, "prefix_len", rec->lease.prefix_len);
        gen_str(g, "guest_ip", rec->lease.guest_ip);
        gen_str(g, "host_ip", rec->lease.host_ip);
        gen_str(g, "netmask", rec->lease.netmask);
        gen_str(g, "mac", rec->lease.mac);
        gen_str(g, "tap", rec->lease.tap);
        yajl_gen_map_close(g);
    } else {
        yajl_gen_null(g);
    }

    gen_key(g, "files");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < rec->n_files; i++) {
        yajl_gen_map_open(g);
        gen_str(g, "path", rec->files[i].path);
        gen_str(g, "blob", rec->files[i].blob);
        gen_int(g, "mode", rec->files[i].mode);
        gen_int(g, "uid", rec->files[i].uid);
        gen_int(g, "gid", rec->files[i].gid);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);

    gen_key(g, "vmm");
    if (rec->has_vmm) {
        yajl_gen_map_open(g);
        gen_int(g, "pid", rec->pid);
        gen_int(g, "start_time", (long long)rec->start_time);
        yajl_gen_map_close(g);
    } else {
        yajl_gen_null(g);
    }
    yajl_gen_map_close(g);

    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        yajl_gen_free(g);
        return error_set(VMM_EIO, "encoding the record %s", path);
    }
    /* Records are written under the VM's lock only: one temporary name
     * does, and a write killed midway leaves it for the next to replace. */
    r = write_via(path, true, buf, len, 0600);
    yajl_gen_free(g);
    return r;
}

/* --- records: reading ------------------------------------------------------ */

struct reader {
    const char *path;
    yajl_val root;
    int error;
};

static yajl_val field(struct reader *rd, yajl_val obj, const char *key)
{
    const char *p[] = { key, NULL };

    return yajl_tree_get(obj, p, yajl_t_any);
}

static int bad(struct reader *rd, const char *key, const char *what)
{
    if (rd->error == 0)
        rd->error = error_set(VMM_ECORRUPT, "VM record %s: \"%s\" %s",
                              rd->path, key, what);
    return rd->error;
}

/* A string field; NULL stays NULL when allowed. */
static char *get_str(struct reader *rd, yajl_val obj, const char *key,
                     bool nullable)
{
    yajl_val v = field(rd, obj, key);
    char *s;

    if ((v == NULL || YAJL_IS_NULL(v)) && nullable)
        return NULL;
    if (v == NULL || !YAJL_IS_STRING(v)) {
        bad(rd, key, "is missing or not a string");
        return NULL;
    }
    s = strdup(v->u.string);
    if (s == NULL && rd->error == 0)
        rd->error = error_set(VMM_ENOMEM, "reading %s", rd->path);
    return s;
}

/* A string field copied into a fixed buffer it must fit. */
static void get_fixed(struct reader *rd, yajl_val obj, const char *key,
                      char *buf, size_t size)
{
    yajl_val v = field(rd, obj, key);

    if (v == NULL || !YAJL_IS_STRING(v) ||
        strlen(v->u.string) >= size) {
        bad(rd, key, "is missing, not a string or too long");
        return;
    }
    strcpy(buf, v->u.string);
}

static uint64_t get_uint(struct reader *rd, yajl_val obj, const char *key,
                         uint64_t max)
{
    yajl_val v = field(rd, obj, key);

    if (v == NULL || !YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 ||
        (uint64_t)YAJL_GET_INTEGER(v) > max) {
        bad(rd, key, "is missing or not an integer in range");
        return 0;
    }
    return (uint64_t)YAJL_GET_INTEGER(v);
}

static bool get_bool(struct reader *rd, yajl_val obj, const char *key)
{
    yajl_val v = field(rd, obj, key);

    if (v == NULL || !(YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))) {
        bad(rd, key, "is missing or not a boolean");
        return false;
    }
    return YAJL_IS_TRUE(v);
}

static void read_files(struct reader *rd, yajl_val arr, struct vm_record *rec)
{
    size_t n;

    if (arr == NULL || !YAJL_IS_ARRAY(arr)) {
        bad(rd, "files", "is missing or not an array");
        return;
    }
    n = YAJL_GET_ARRAY(arr)->len;
    if (n == 0)
        return;
    rec->files = calloc(n, sizeof(*rec->files));
    if (rec->files == NULL) {
        rd->error = error_set(VMM_ENOMEM, "reading %s", rd->path);
        return;
    }
    for (size_t i = 0; i < n && rd->error == 0; i++) {
        yajl_val f = YAJL_GET_ARRAY(arr)->values[i];
        struct record_file *rf = &rec->files[i];

        rec->n_files = i + 1;
        if (!YAJL_IS_OBJECT(f)) {
            bad(rd, "files", "holds a non-object");
            return;
        }
        rf->path = get_str(rd, f, "path", false);
        rf->blob = get_str(rd, f, "blob", false);
        rf->mode = (uint32_t)get_uint(rd, f, "mode", 07777);
        rf->uid = (uint32_t)get_uint(rd, f, "uid", UINT32_MAX);
        rf->gid = (uint32_t)get_uint(rd, f, "gid", UINT32_MAX);
        if (rf->blob != NULL && (strchr(rf->blob, '/') || rf->blob[0] == '.'))
            bad(rd, "blob", "is not a plain file name");
    }
}

static void read_fields(struct reader *rd, struct vm_record *rec)
{
    yajl_val root = rd->root, v;
    char *s;

    if (get_uint(rd, root, "version", UINT32_MAX) != RECORD_VERSION) {
        if (rd->error == 0)
            bad(rd, "version", "is not 1");
        return;
    }
    s = get_str(rd, root, "phase", false);
    if (s != NULL) {
        if (strcmp(s, "creating") == 0)
            rec->phase = PHASE_CREATING;
        else if (strcmp(s, "ready") == 0)
            rec->phase = PHASE_READY;
        else if (strcmp(s, "deleting") == 0)
            rec->phase = PHASE_DELETING;
        else
            bad(rd, "phase", "is not creating, ready or deleting");
        free(s);
    }
    rec->name = get_str(rd, root, "name", false);
    rec->kernel = get_str(rd, root, "kernel", false);
    rec->initrd = get_str(rd, root, "initrd", true);
    rec->base_image = get_str(rd, root, "base_image", false);
    rec->boot_args = get_str(rd, root, "boot_args", false);
    rec->vcpus = (uint32_t)get_uint(rd, root, "vcpus", 32);
    rec->memory_mib = (uint32_t)get_uint(rd, root, "memory_mib", UINT32_MAX);
    rec->disk_size = get_uint(rd, root, "disk_size", INT64_MAX);
    s = get_str(rd, root, "overlay", false);
    if (s != NULL) {
        if (overlay_driver_parse(s, &rec->overlay) < 0 && rd->error == 0)
            bad(rd, "overlay", "names no overlay driver");
        free(s);
    }
    rec->ssh_authorized_keys = get_str(rd, root, "ssh_authorized_keys", true);
    rec->netns = get_str(rd, root, "netns", true);
    if (rec->netns != NULL && !net_netns_name_valid(rec->netns))
        bad(rd, "netns", "is not a valid namespace name");
    rec->own_netns = get_bool(rd, root, "own_netns");
    rec->pristine = get_bool(rd, root, "pristine");
    rec->unflushed = get_bool(rd, root, "unflushed");
    get_fixed(rd, root, "boot_id", rec->boot_id, sizeof(rec->boot_id));

    v = field(rd, root, "net");
    if (v != NULL && YAJL_IS_OBJECT(v)) {
        rec->has_net = true;
        rec->lease.slot = (uint32_t)get_uint(rd, v, "slot", UINT32_MAX);
        rec->lease.prefix_len = (uint32_t)get_uint(rd, v, "prefix_len", 32);
        get_fixed(rd, v, "guest_ip", rec->lease.guest_ip,
                  sizeof(rec->lease.guest_ip));
        get_fixed(rd, v, "host_ip", rec->lease.host_ip,
                  sizeof(rec->lease.host_ip));
        get_fixed(rd, v, "netmask", rec->lease.netmask,
                  sizeof(rec->lease.netmask));
        get_fixed(rd, v, "mac", rec->lease.mac, sizeof(rec->lease.mac));
        get_fixed(rd, v, "tap", rec->lease.tap, sizeof(rec->lease.tap));
    } else if (v == NULL || !YAJL_IS_NULL(v)) {
        bad(rd, "net", "is missing or not an object");
    }

    read_files(rd, field(rd, root, "files"), rec);

    v = field(rd, root, "vmm");
    if (v != NULL && YAJL_IS_OBJECT(v)) {
        rec->has_vmm = true;
        rec->pid = (int32_t)get_uint(rd, v, "pid", INT32_MAX);
        rec->start_time = get_uint(rd, v, "start_time", INT64_MAX);
    } else if (v == NULL || !YAJL_IS_NULL(v)) {
        bad(rd, "vmm", "is missing or not an object");
    }
}

int record_read(const char *path, struct vm_record *rec)
{
    struct reader rd = { .path = path };
    char errbuf[256];
    char *text;
    int r;

    memset(rec, 0, sizeof(*rec));
    r = store_read_file(path, RECORD_MAX, &text, NULL);
    if (r < 0)
        return r;

    rd.root = yajl_tree_parse(text, errbuf, sizeof(errbuf));
    free(text);
    if (rd.root == NULL) {
        errbuf[strcspn(errbuf, "\n")] = '\0';
        return error_set(VMM_ECORRUPT, "VM record %s is not valid JSON: %s",
                         path, errbuf[0] ? errbuf : "parse error");
    }
    if (!YAJL_IS_OBJECT(rd.root))
        bad(&rd, "(top level)", "is not an object");
    else
        read_fields(&rd, rec);
    yajl_tree_free(rd.root);

    if (rd.error != 0) {
        record_clear(rec);
        return rd.error;
    }
    return 0;
}
