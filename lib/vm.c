/*
 * The VM: its record, and the life it goes through from create to delete.
 *
 * Every operation that changes a VM holds the VM's lock for its whole
 * length, and writes the record before and after each step that a crash
 * could interrupt, so the next program to open the VM either finishes the
 * interrupted work or reports the VM's true state.
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
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "net.h"
#include "overlay.h"
#include "prep.h"
#include "process.h"
#include "store.h"

#define NAME_MAX_LEN 63
#define DEFAULT_BOOT_ARGS "console=ttyS0 reboot=k panic=1"
#define DEFAULT_VCPUS 1
#define DEFAULT_MEMORY_MIB 512
#define MIN_MEMORY_MIB 128
#define MAX_MEMORY_MIB (1024u * 1024u)
#define MAX_VCPUS 32
#define DEFAULT_START_TIMEOUT_MS 10000
#define DEFAULT_STOP_TIMEOUT_MS 10000
#define LOCK_WAIT_MS 5000
/* Linux's x86 command line holds 2048 bytes; leave room for root= and ip=. */
#define BOOT_ARGS_MAX 1900
#define KEYS_MAX (64u * 1024u)
#define FILE_MAX (16u * 1024u * 1024u)
#define FILES_MAX 256
#define STATE_QUERY_MS 1000

struct vmm_vm {
    vmm_context *ctx;
    char *name;
    char *dir;
    char *record_path;
    char *lock_path;
    char *api_socket;
    char *log_path;
    char *exit_path;
    char *booted_path;
    char *known_hosts;
    struct vm_record rec;
    int32_t state;
    int32_t pid;
    char disk[PATH_MAX];
    char last_exit[256];
    bool has_last_exit;
    bool spawn_recorded; /* record_spawned's write reached the disk */
};

struct vmm_vm_list {
    uint32_t count;
    struct list_entry {
        char *name;
        vmm_vm *vm;
        char *error;
    } *entries;
};

/* --- names, paths, handles ------------------------------------------------ */

static int check_name(const char *name)
{
    size_t len;

    if (name == NULL)
        return error_set(VMM_EINVAL, "VM name is NULL");
    len = strnlen(name, NAME_MAX_LEN + 1);
    if (len == 0)
        return error_set(VMM_EINVAL, "VM name is empty");
    if (len > NAME_MAX_LEN)
        return error_set(VMM_EINVAL, "VM name is longer than %d bytes",
                         NAME_MAX_LEN);
    if (name[0] == '-' || name[0] == '.')
        return error_set(VMM_EINVAL, "VM name \"%s\" starts with '%c'",
                         name, name[0]);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')
            continue;
        if (c < 0x20 || c == 0x7f)
            return error_set(VMM_EINVAL, "VM name holds control character "
                             "0x%02x at byte %zu", c, i);
        if (c >= 0x80)
            return error_set(VMM_EINVAL, "VM name holds a non-ASCII byte "
                             "at byte %zu", i);
        return error_set(VMM_EINVAL, "VM name \"%s\" holds '%c'; use "
                         "letters, digits, '-', '_' and '.'", name, c);
    }
    return 0;
}

static void vm_free_fields(vmm_vm *vm)
{
    free(vm->name);
    free(vm->dir);
    free(vm->record_path);
    free(vm->lock_path);
    free(vm->api_socket);
    free(vm->log_path);
    free(vm->exit_path);
    free(vm->booted_path);
    free(vm->known_hosts);
    record_clear(&vm->rec);
}

VMM_EXPORT void vmm_vm_free(vmm_vm *vm)
{
    if (vm == NULL)
        return;
    vm_free_fields(vm);
    context_unref(vm->ctx);
    free(vm);
}

/* A handle with every path of the VM derived from its name. */
static int vm_new(vmm_context *ctx, const char *name, vmm_vm **out)
{
    struct sockaddr_un sun;
    vmm_vm *vm;

    vm = calloc(1, sizeof(*vm));
    if (vm == NULL)
        return error_set(VMM_ENOMEM, "allocating VM %s", name);
    vm->ctx = context_ref(ctx);
    vm->name = xstrdup(name);
    vm->dir = xasprintf("%s/vms/%s", ctx->state_dir, name);
    if (vm->name == NULL || vm->dir == NULL)
        goto nomem;
    vm->record_path = xasprintf("%s/vm.json", vm->dir);
    vm->lock_path = xasprintf("%s/lock", vm->dir);
    vm->api_socket = xasprintf("%s/api.sock", vm->dir);
    vm->log_path = xasprintf("%s/vmm.log", vm->dir);
    vm->exit_path = xasprintf("%s/vmm.exit", vm->dir);
    vm->booted_path = xasprintf("%s/booted", vm->dir);
    vm->known_hosts = xasprintf("%s/known_hosts", vm->dir);
    if (!vm->record_path || !vm->lock_path || !vm->api_socket ||
        !vm->log_path || !vm->exit_path || !vm->booted_path ||
        !vm->known_hosts)
        goto nomem;

    if (strlen(vm->api_socket) >= sizeof(sun.sun_path)) {
        int r = error_set(VMM_EINVAL, "VM %s: its API socket %s would be "
                          "longer than the %zu bytes a Unix socket path "
                          "allows; use a shorter state directory", name,
                          vm->api_socket, sizeof(sun.sun_path) - 1);

        vmm_vm_free(vm);
        return r;
    }
    *out = vm;
    return 0;

nomem:
    vmm_vm_free(vm);
    return VMM_ENOMEM;
}

static struct overlay_spec overlay_spec_of(const vmm_vm *vm)
{
    struct overlay_spec s = {
        .vm_name = vm->name,
        .driver = vm->rec.overlay,
        .base_image = vm->rec.base_image,
        .dir = vm->dir,
        .disk_size = vm->rec.disk_size,
    };
    return s;
}

/* The disk as the VMM opens it: a running dm-snapshot VM's is its device. */
static void default_disk_path(vmm_vm *vm)
{
    char dm[OVERLAY_DM_NAME_MAX + 1];

    if (vm->rec.overlay == OVERLAY_DM_SNAPSHOT &&
        vm->state != VMM_VM_STOPPED &&
        overlay_dm_name(vm->name, dm, sizeof(dm)) == 0)
        snprintf(vm->disk, sizeof(vm->disk), "/dev/mapper/%s", dm);
    else
        snprintf(vm->disk, sizeof(vm->disk), "%s/%s", vm->dir,
                 vm->rec.overlay == OVERLAY_DM_SNAPSHOT ? "cow.img"
                                                        : "disk.img");
}

static bool path_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* --- state ---------------------------------------------------------------- */

static void note_last_exit(vmm_vm *vm)
{
    vm->has_last_exit = path_exists(vm->exit_path);
    if (vm->has_last_exit)
        process_describe_exit(vm->exit_path, vm->last_exit,
                              sizeof(vm->last_exit));
}

static int vm_lock(vmm_vm *vm, uint32_t wait_ms, int *fd);
static void release_runtime(vmm_vm *vm);

/*
 * Ends a VMM that a start left behind when the program running it died:
 * one recorded before InstanceStart, or one serving the VM's socket that
 * no record names. The caller holds the VM's lock, so no start is under
 * way in another program. Returns whether the VMM was ended.
 */
static bool settle_orphan(vmm_vm *vm, struct vmm_process *p)
{
    pid_t pid = p ? process_pid(p) : 0;
    int r;

    /* Without a VMM to name (none came up yet), its keeper's is ended;
     * VMM_ENOTFOUND: the start ended on its own meanwhile. */
    r = p != NULL ? process_kill(p)
                  : process_end_start(vm->ctx, vm->name, vm->exit_path);
    if (r < 0 && !(p == NULL && r == VMM_ENOTFOUND)) {
        log_warning(vm->ctx, "vm", vm->name, "ending VMM pid %d left by an "
                    "interrupted start: %s", (int)pid,
                    vmm_error_last()->message);
        error_reset();
        return false;
    }
    if (p != NULL)
        log_info(vm->ctx, "vm", vm->name, "ended VMM pid %d, left by an "
                 "interrupted start of VM %s", (int)pid, vm->name);
    unlink(vm->api_socket);
    release_runtime(vm);
    vm->rec.has_vmm = false;
    if (record_write(vm->record_path, &vm->rec) < 0)
        log_warning(vm->ctx, "vm", vm->name, "%s", vmm_error_last()->message);
    error_reset();
    return true;
}

static void probe_vmm(vmm_vm *vm, bool locked);

/*
 * What looked like a start left behind, seen without the VM's lock: the
 * start may have been under way in another program, and finished since.
 * With the lock (at once or not at all: a program holding it is still
 * starting), the record is read again and the VMM probed again before
 * anything is ended. False when the lock was not to be had.
 */
static bool probe_again_locked(vmm_vm *vm)
{
    struct vm_record fresh = {0};
    int lock_fd;

    if (vm_lock(vm, 0, &lock_fd) < 0) {
        error_reset();
        return false;
    }
    if (record_read(vm->record_path, &fresh) == 0) {
        record_clear(&vm->rec);
        vm->rec = fresh;
        if (vm->rec.phase == PHASE_READY)
            probe_vmm(vm, true);
    } else {
        record_clear(&fresh);
        error_reset();
    }
    store_unlock(lock_fd);
    return true;
}

/*
 * Works out whether the VM's VMM runs. Attach verifies pid, start time and
 * socket, so a recycled pid reads as stopped and is never signalled. A VMM
 * an interrupted start left behind is ended (see settle_orphan), so the VM
 * reads as what it is: stopped.
 */
static void probe_vmm(vmm_vm *vm, bool locked)
{
    struct api_instance_info info;
    struct api_client *client;
    struct vmm_process *p = NULL;
    bool unfinished;

    vm->state = VMM_VM_STOPPED;
    vm->pid = 0;
    if (vm->rec.has_vmm &&
        process_attach(vm->ctx, vm->name, vm->rec.pid, vm->rec.start_time,
                       vm->api_socket, &p) < 0)
        p = NULL;
    if (p == NULL && path_exists(vm->api_socket) &&
        process_attach_socket(vm->ctx, vm->name, vm->api_socket, &p) < 0)
        p = NULL;
    error_reset();
    if (p == NULL) {
        /* A keeper still running with no VMM recorded nor serving: a start
         * in flight, or one whose program died before the VMM came up. */
        if (process_start_in_flight(vm->exit_path)) {
            if (!locked && probe_again_locked(vm))
                return;
            if (locked)
                settle_orphan(vm, NULL);
        }
        note_last_exit(vm);
        return;
    }

    /* The VMM itself says whether InstanceStart was ever accepted. One
     * that cannot answer is left alone once its start marked the boot (a
     * busy or stopped VMM); without the mark, it is a start's that never
     * got there (one that has not even bound its socket, say). */
    unfinished = !vm->rec.has_vmm || process_pid(p) != vm->rec.pid;
    /* Through the client attach already made, bounded tighter. */
    client = process_api(p);
    api_client_set_timeout(client, STATE_QUERY_MS);
    if (api_get_instance_info(client, &info) < 0)
        info.state = path_exists(vm->booted_path) ? API_STATE_RUNNING
                                                  : API_STATE_NOT_STARTED;
    error_reset();
    if (info.state == API_STATE_NOT_STARTED)
        unfinished = true;

    if (unfinished && !locked) {
        /* Probed again under the lock, which decides; without the lock a
         * start is still under way, and the VMM reads as it answered. */
        if (probe_again_locked(vm)) {
            process_free(p);
            return;
        }
    } else if (unfinished && settle_orphan(vm, p)) {
        process_free(p);
        note_last_exit(vm);
        return;
    }
    vm->pid = process_pid(p);
    vm->state = info.state == API_STATE_PAUSED ? VMM_VM_PAUSED
                                               : VMM_VM_RUNNING;
    process_free(p);
}

/* A VM directory is one libvmm made: never a link to somewhere else. */
static int check_dir(const vmm_vm *vm)
{
    struct stat st;

    if (lstat(vm->dir, &st) < 0)
        return errno == ENOENT ? error_set(VMM_ENOTFOUND, "no VM named %s",
                                           vm->name)
                               : error_set_os(VMM_EIO, errno, "%s", vm->dir);
    if (!S_ISDIR(st.st_mode))
        return error_set(VMM_ECORRUPT, "VM directory %s is not a directory "
                         "(a link or file libvmm did not make)", vm->dir);
    return 0;
}

/* Reads the record and probes the VMM; `locked`: we hold the VM's lock. */
static int vm_load(vmm_vm *vm, bool locked)
{
    int r;

    record_clear(&vm->rec);
    r = check_dir(vm);
    if (r < 0)
        return r;
    r = record_read(vm->record_path, &vm->rec);
    if (r == VMM_ENOTFOUND)
        return error_set(VMM_ENOTFOUND, "no VM named %s", vm->name);
    if (r < 0)
        return r;
    if (strcmp(vm->rec.name, vm->name) != 0)
        return error_set(VMM_ECORRUPT, "VM record %s names VM \"%s\"",
                         vm->record_path, vm->rec.name);
    if (vm->rec.phase == PHASE_READY)
        probe_vmm(vm, locked);
    default_disk_path(vm);
    return 0;
}

static int vm_lock(vmm_vm *vm, uint32_t wait_ms, int *fd)
{
    char what[96];
    int r;

    *fd = -1;
    r = check_dir(vm);
    if (r < 0)
        return r;

    snprintf(what, sizeof(what), "VM %s", vm->name);
    return store_lock(vm->lock_path, wait_ms, what, fd);
}

/* Kills the recorded VMM if it still runs, and records that it is gone. */
static int end_vmm(vmm_vm *vm, bool graceful, uint32_t timeout_ms)
{
    struct vmm_process *p;
    int r;

    if (!vm->rec.has_vmm)
        return 0;
    if (process_attach(vm->ctx, vm->name, vm->rec.pid, vm->rec.start_time,
                       vm->api_socket, &p) == 0) {
        r = graceful ? process_stop(p, timeout_ms) : process_kill(p);
        process_free(p);
        if (r < 0)
            return r;
    }
    error_reset();
    vm->rec.has_vmm = false;
    vm->state = VMM_VM_STOPPED;
    vm->pid = 0;
    note_last_exit(vm);
    unlink(vm->api_socket);
    return 0;
}

/* Opens the VM's network namespace, or gives -1 for the host's. */
static int open_netns(const vmm_vm *vm, int *fd)
{
    *fd = -1;
    if (vm->rec.netns == NULL)
        return 0;
    return net_netns_open(vm->rec.netns, fd);
}

static void release_tap(vmm_vm *vm)
{
    char owner[PATH_MAX + 8];
    int netns_fd = -1;

    /* As start_locked() names it: a tap of another VM is left alone. */
    snprintf(owner, sizeof(owner), "libvmm:%s", vm->dir);
    if (vm->rec.has_net && open_netns(vm, &netns_fd) == 0) {
        if (net_tap_delete(vm->rec.lease.tap, owner, netns_fd) < 0)
            log_warning(vm->ctx, "net", vm->name, "removing tap %s: %s",
                        vm->rec.lease.tap, vmm_error_last()->message);
    }
    if (netns_fd >= 0)
        close(netns_fd);
    error_reset();
}

/* Takes down what a start set up: tap and overlay device. */
static void release_runtime(vmm_vm *vm)
{
    struct overlay_spec ospec = overlay_spec_of(vm);

    release_tap(vm);
    if (overlay_deactivate(vm->ctx, &ospec) < 0)
        log_warning(vm->ctx, "overlay", vm->name, "%s",
                    vmm_error_last()->message);
    default_disk_path(vm);
    error_reset();
}

/*
 * Removes everything a VM owns, in the reverse order create made it. Used
 * by delete, by a failed create, and to finish an interrupted create or
 * delete. The VM's lock must be held; the record may be partial.
 */
static int teardown(vmm_vm *vm)
{
    struct overlay_spec ospec = overlay_spec_of(vm);
    int r;

    r = end_vmm(vm, false, 0);
    if (r < 0)
        return r;
    release_tap(vm);
    /* Without a record the driver is unknown; destroy finds dm leftovers
     * by the VM's name whatever driver it is given. */
    if (ospec.driver != OVERLAY_DM_SNAPSHOT)
        ospec.driver = OVERLAY_COPY;
    r = overlay_destroy(vm->ctx, &ospec);
    if (r < 0)
        return r;
    if (vm->rec.own_netns && vm->rec.netns != NULL) {
        r = net_netns_delete(vm->rec.netns);
        if (r < 0)
            return r;
    }
    return store_remove_tree(vm->dir);
}

/*
 * A VM directory whose record says "creating" or "deleting", or has no
 * record at all, belongs to a create or delete that is running or died.
 * If its lock is free the program died: finish the job.
 */
static int settle_unfinished(vmm_vm *vm, enum record_phase *settled)
{
    const char *what = vm->rec.phase == PHASE_DELETING ? "delete" : "create";
    int r;

    log_info(vm->ctx, "store", vm->name, "finishing an interrupted %s of "
             "VM %s", what, vm->name);
    r = teardown(vm);
    if (r < 0) {
        error_prefix("VM %s: cleaning up an interrupted %s: ", vm->name, what);
        return r;
    }
    if (settled != NULL)
        *settled = vm->rec.phase;
    return error_set(VMM_ENOTFOUND, "no VM named %s (an interrupted %s was "
                     "cleaned up)", vm->name, what);
}

/*
 * Opens a VM by name: the record must be complete. Records of interrupted
 * operations are settled on the way; *settled (may be NULL) then says
 * which kind was finished, and the result is VMM_ENOTFOUND.
 */
static int vm_open_settling(vmm_context *ctx, const char *name, vmm_vm **out,
                            enum record_phase *settled)
{
    vmm_vm *vm;
    int lock_fd, r;

    r = vm_new(ctx, name, &vm);
    if (r < 0)
        return r;

    r = vm_load(vm, false);
    if (r == VMM_ENOTFOUND && !path_exists(vm->dir))
        goto fail;
    if (r == 0 && vm->rec.phase == PHASE_READY) {
        *out = vm;
        return 0;
    }
    if (r < 0 && r != VMM_ENOTFOUND)
        goto fail;

    /* Unfinished: settle it if nobody is working on it. */
    r = vm_lock(vm, 0, &lock_fd);
    if (r == VMM_EBUSY) {
        r = error_set(VMM_EBUSY, "VM %s is being %s by another program",
                      name, vm->rec.phase == PHASE_DELETING ? "deleted"
                                                             : "created");
        goto fail;
    }
    if (r < 0)
        goto fail;
    r = vm_load(vm, true);
    if (r == 0 && vm->rec.phase == PHASE_READY) {
        store_unlock(lock_fd);
        *out = vm;
        return 0;
    }
    if (r < 0 && r != VMM_ENOTFOUND) {
        store_unlock(lock_fd);
        goto fail;
    }
    r = settle_unfinished(vm, settled);
    store_unlock(lock_fd);

fail:
    vmm_vm_free(vm);
    return r;
}

static int vm_open(vmm_context *ctx, const char *name, vmm_vm **out)
{
    return vm_open_settling(ctx, name, out, NULL);
}

VMM_EXPORT int vmm_open(vmm_vm **out, vmm_context *ctx, const char *name)
{
    int r;

    error_reset();
    if (out == NULL || ctx == NULL)
        return error_set(VMM_EINVAL, "vmm_open: %s is NULL",
                         out == NULL ? "out" : "ctx");
    r = check_name(name);
    if (r < 0)
        return r;
    return vm_open(ctx, name, out);
}

VMM_EXPORT int vmm_vm_refresh(vmm_vm *vm)
{
    int r;

    error_reset();
    if (vm == NULL)
        return error_set(VMM_EINVAL, "vmm_vm_refresh: vm is NULL");
    r = vm_load(vm, false);
    if (r == 0 && vm->rec.phase != PHASE_READY)
        r = error_set(VMM_ENOTFOUND, "VM %s is being %s", vm->name,
                      vm->rec.phase == PHASE_DELETING ? "deleted"
                                                      : "created");
    return r;
}

/*
 * Locks a handle's VM for an operation and reloads its record, which
 * another program may have changed since the handle was made.
 */
static int begin_op(vmm_vm *vm, const char *op, int *lock_fd)
{
    int r;

    r = vm_lock(vm, LOCK_WAIT_MS, lock_fd);
    if (r < 0) {
        if (r == VMM_ENOTFOUND)
            r = error_set(VMM_ENOTFOUND, "no VM named %s", vm->name);
        return r;
    }
    r = vm_load(vm, true);
    if (r == 0 && vm->rec.phase != PHASE_READY)
        r = error_set(VMM_ESTATE, "%s %s: an earlier create or delete was "
                      "interrupted; open the VM again to settle it", op,
                      vm->name);
    if (r < 0) {
        store_unlock(*lock_fd);
        *lock_fd = -1;
    }
    return r;
}

/* --- create --------------------------------------------------------------- */

/* Checks a readable, non-empty regular file (or block device, for images);
 * with out, also gives its real path (caller frees). */
static int resolve_input(const char *what, const char *path, bool allow_block,
                         char **out)
{
    struct stat st;
    char *real;

    if (path == NULL || path[0] == '\0')
        return error_set(VMM_EINVAL, "no %s given", what);
    if (strnlen(path, PATH_MAX) >= PATH_MAX)
        return error_set(VMM_EINVAL, "%s path is longer than PATH_MAX", what);
    if (stat(path, &st) < 0)
        return error_set_os(errno == ENOENT ? VMM_ENOTFOUND : VMM_EIO, errno,
                            "%s %s", what, path);
    if (!S_ISREG(st.st_mode) && !(allow_block && S_ISBLK(st.st_mode)))
        return error_set(VMM_EINVAL, "%s %s is not a regular file%s", what,
                         path, allow_block ? " or block device" : "");
    if (S_ISREG(st.st_mode) && st.st_size == 0)
        return error_set(VMM_EINVAL, "%s %s is empty", what, path);
    if (access(path, R_OK) < 0)
        return error_set_os(VMM_EIO, errno, "%s %s is not readable", what,
                            path);
    if (out == NULL)
        return 0;
    real = realpath(path, NULL);
    if (real == NULL)
        return error_set_os(VMM_EIO, errno, "resolving %s %s", what, path);
    *out = real;
    return 0;
}

/*
 * Whether text is valid UTF-8 without control characters; `extra` lists
 * the control characters allowed anyway. Everything recorded must be, to
 * round-trip through the JSON record and reach Firecracker intact.
 */
static bool text_ok(const char *text, const char *extra)
{
    const unsigned char *p = (const unsigned char *)text;

    while (*p != '\0') {
        int follow = 0;

        if (*p < 0x20 || *p == 0x7f) {
            if (strchr(extra, *p) == NULL)
                return false;
        } else if (*p >= 0xc2 && *p <= 0xdf) {
            follow = 1;
        } else if (*p >= 0xe0 && *p <= 0xef) {
            follow = 2;
        } else if (*p >= 0xf0 && *p <= 0xf4) {
            follow = 3;
        } else if (*p >= 0x80) {
            return false;
        }
        p++;
        for (; follow > 0; follow--, p++)
            if ((*p & 0xc0) != 0x80)
                return false;
    }
    return true;
}

static int check_field_text(const char *what, const char *text,
                            const char *extra)
{
    if (text != NULL && !text_ok(text, extra))
        return error_set(VMM_EINVAL, "%s holds control characters or is not "
                         "valid UTF-8", what);
    return 0;
}

/* Firecracker takes a kernel command line of printable ASCII only. */
static int check_boot_args(const char *args)
{
    for (const char *p = args; p != NULL && *p != '\0'; p++)
        if (*p < 0x20 || *p > 0x7e)
            return error_set(VMM_EINVAL, "boot_args holds byte 0x%02x at "
                             "%zu; only printable ASCII is allowed",
                             (unsigned char)*p, (size_t)(p - args));
    return 0;
}

static int check_vcpus(uint32_t vcpus)
{
    if (vcpus == 0 || vcpus > MAX_VCPUS || (vcpus > 1 && vcpus % 2 != 0))
        return error_set(VMM_EINVAL, "vcpus %u: must be 1 or an even number "
                         "up to %d", vcpus, MAX_VCPUS);
    return 0;
}

static int check_memory(uint32_t mib)
{
    if (mib < MIN_MEMORY_MIB || mib > MAX_MEMORY_MIB)
        return error_set(VMM_EINVAL, "memory %u MiB: must be from %d to %u "
                         "MiB", mib, MIN_MEMORY_MIB, MAX_MEMORY_MIB);
    return 0;
}

static int check_text(const char *what, const char *text, size_t max)
{
    if (text != NULL && strnlen(text, max + 1) > max)
        return error_set(VMM_EINVAL, "%s is longer than %zu bytes", what, max);
    return 0;
}

static int check_files(const vmm_guest_file *files, uint32_t n)
{
    if (n > FILES_MAX)
        return error_set(VMM_EINVAL, "%u guest files: at most %d", n,
                         FILES_MAX);
    if (n > 0 && files == NULL)
        return error_set(VMM_EINVAL, "n_files is %u but files is NULL", n);
    for (uint32_t i = 0; i < n; i++) {
        const vmm_guest_file *f = &files[i];

        if (f->path == NULL || f->path[0] != '/' ||
            strnlen(f->path, PATH_MAX) >= PATH_MAX)
            return error_set(VMM_EINVAL, "guest file %u: path must be "
                             "absolute", i);
        if (!text_ok(f->path, ""))
            return error_set(VMM_EINVAL, "guest file %u: path holds control "
                             "characters or is not valid UTF-8", i);
        if (f->size > FILE_MAX)
            return error_set(VMM_EINVAL, "guest file %s: %" PRIu64 " bytes, "
                             "at most %u", f->path, f->size, FILE_MAX);
        if (f->size > 0 && f->data == NULL)
            return error_set(VMM_EINVAL, "guest file %s: data is NULL",
                             f->path);
        if (f->mode > 07777 || f->reserved != 0)
            return error_set(VMM_EINVAL, "guest file %s: mode %#o or "
                             "reserved field invalid", f->path, f->mode);
    }
    return 0;
}

/* Validates a spec and fills the record's settings; touches nothing. */
static int record_from_spec(const char *name, const vmm_vm_spec *spec,
                            struct vm_record *rec, uint64_t *base_size)
{
    const uint32_t known_flags = VMM_VM_NO_NET | VMM_VM_OWN_NETNS;
    int r;

    if (spec->flags & ~known_flags)
        return error_set(VMM_EINVAL, "spec flags %#x: unknown bits %#x",
                         spec->flags, spec->flags & ~known_flags);
    if (spec->reserved != 0 || spec->reserved2 != 0)
        return error_set(VMM_EINVAL, "spec reserved fields must be 0");
    if ((spec->flags & VMM_VM_OWN_NETNS) && spec->netns != NULL)
        return error_set(VMM_EINVAL, "spec names netns \"%s\" and asks for "
                         "its own namespace too", spec->netns);
    if (spec->overlay < VMM_OVERLAY_AUTO || spec->overlay > VMM_OVERLAY_COPY)
        return error_set(VMM_EINVAL, "overlay driver %d is unknown",
                         spec->overlay);

    rec->vcpus = spec->vcpus ? spec->vcpus : DEFAULT_VCPUS;
    rec->memory_mib = spec->memory_mib ? spec->memory_mib
                                       : DEFAULT_MEMORY_MIB;
    if ((r = check_vcpus(rec->vcpus)) < 0 ||
        (r = check_memory(rec->memory_mib)) < 0 ||
        (r = check_text("boot_args", spec->boot_args, BOOT_ARGS_MAX)) < 0 ||
        (r = check_boot_args(spec->boot_args)) < 0 ||
        (r = check_text("ssh_authorized_keys", spec->ssh_authorized_keys,
                        KEYS_MAX)) < 0 ||
        (r = check_field_text("ssh_authorized_keys",
                              spec->ssh_authorized_keys, "\n\r\t")) < 0 ||
        (r = check_field_text("kernel path", spec->kernel, "")) < 0 ||
        (r = check_field_text("initrd path", spec->initrd, "")) < 0 ||
        (r = check_field_text("base image path", spec->base_image, "")) < 0 ||
        (r = check_files(spec->files, spec->n_files)) < 0)
        return r;
    if (spec->netns != NULL && !net_netns_name_valid(spec->netns))
        return error_set(VMM_EINVAL, "network namespace name \"%s\" is "
                         "invalid", spec->netns);

    if ((r = resolve_input("kernel", spec->kernel, false,
                           &rec->kernel)) < 0 ||
        (spec->initrd != NULL &&
         (r = resolve_input("initrd", spec->initrd, false,
                            &rec->initrd)) < 0) ||
        (r = resolve_input("base image", spec->base_image, true,
                           &rec->base_image)) < 0)
        return r;

    r = overlay_check_base(rec->base_image, base_size);
    if (r < 0)
        return r;
    if (spec->disk_size != 0 && spec->disk_size < *base_size)
        return error_set(VMM_EINVAL, "disk size %" PRIu64 " is smaller than "
                         "base image %s (%" PRIu64 " bytes)", spec->disk_size,
                         rec->base_image, *base_size);
    /* Whole filesystem blocks: what the disk really holds is recorded. */
    rec->disk_size = spec->disk_size ? (spec->disk_size + 4095) & ~4095ull
                                     : *base_size;

    rec->name = xstrdup(name);
    rec->boot_args = xstrdup(spec->boot_args ? spec->boot_args
                                             : DEFAULT_BOOT_ARGS);
    if (rec->name == NULL || rec->boot_args == NULL)
        return VMM_ENOMEM;
    if (spec->ssh_authorized_keys != NULL &&
        (rec->ssh_authorized_keys = xstrdup(spec->ssh_authorized_keys)) ==
            NULL)
        return VMM_ENOMEM;
    rec->has_net = !(spec->flags & VMM_VM_NO_NET);
    rec->own_netns = spec->flags & VMM_VM_OWN_NETNS;
    if (spec->netns != NULL && (rec->netns = xstrdup(spec->netns)) == NULL)
        return VMM_ENOMEM;
    if (rec->own_netns && (rec->netns = xasprintf("libvmm-%s", name)) == NULL)
        return VMM_ENOMEM;
    return 0;
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

/*
 * The lowest network slot no record holds. Called under the state
 * directory's lock, so two creates there never take the same slot. When
 * check_taps, a slot whose tap already exists in the namespace netns_fd
 * (-1: the caller's) is skipped too: another state directory's VM, or
 * someone else, holds it there.
 */
static int free_slot(vmm_context *ctx, bool check_taps, int netns_fd,
                     uint32_t *slot_out)
{
    uint32_t *used = NULL, n = 0, cap = 0, slot = 0, taken = 0;
    uint32_t slots = net_pool_slots(ctx);
    char *dir_path;
    struct dirent *e;
    DIR *dir;
    int r = 0;

    dir_path = xasprintf("%s/vms", ctx->state_dir);
    if (dir_path == NULL)
        return VMM_ENOMEM;
    dir = opendir(dir_path);
    if (dir == NULL) {
        r = error_set_os(VMM_EIO, errno, "reading %s", dir_path);
        free(dir_path);
        return r;
    }
    while ((e = readdir(dir)) != NULL) {
        struct vm_record rec;
        char *path;

        if (e->d_name[0] == '.')
            continue;
        path = xasprintf("%s/%s/vm.json", dir_path, e->d_name);
        if (path == NULL) {
            r = VMM_ENOMEM;
            break;
        }
        /* An unreadable record's slot stays unknown: nothing to avoid. */
        if (record_read(path, &rec) == 0 && rec.has_net) {
            if (n == cap) {
                uint32_t *grown;

                cap = cap ? cap * 2 : 64;
                grown = realloc(used, cap * sizeof(*used));
                if (grown == NULL) {
                    record_clear(&rec);
                    free(path);
                    r = error_set(VMM_ENOMEM, "allocating network slots");
                    break;
                }
                used = grown;
            }
            used[n++] = rec.lease.slot;
        }
        record_clear(&rec);
        free(path);
    }
    closedir(dir);
    free(dir_path);
    error_reset();
    if (r < 0) {
        free(used);
        return r;
    }

    if (n > 1)
        qsort(used, n, sizeof(*used), compare_u32);
    for (uint32_t i = 0; slot < slots; slot++) {
        struct net_lease l;

        while (i < n && used[i] < slot)
            i++;
        if (i < n && used[i] == slot)
            continue;
        /* One probe per candidate, and the first free one ends it. */
        if (!check_taps || net_lease_for_slot(ctx, slot, &l) < 0 ||
            !net_tap_exists(l.tap, netns_fd))
            break;
        taken++;
    }
    free(used);
    error_reset();
    if (slot >= slots)
        return error_set(VMM_ENET, "the address pool has no free /30 left "
                         "(%u in use here, %u more by taps of others)", n,
                         taken);
    *slot_out = slot;
    return 0;
}

/*
 * Claims the name: under the host-wide lock, makes the VM's directory,
 * takes its lock, hands out a network slot and writes a "creating" record.
 * A leftover of an interrupted create of the same name is cleaned first.
 */
static int claim(vmm_vm *vm, int *lock_fd)
{
    char *host_lock_path;
    int host_fd, r;

    host_lock_path = xasprintf("%s/lock", vm->ctx->state_dir);
    if (host_lock_path == NULL)
        return VMM_ENOMEM;
    r = store_lock(host_lock_path, LOCK_WAIT_MS * 2, "the state directory's "
                   "lock", &host_fd);
    free(host_lock_path);
    if (r < 0)
        return r;

    if (mkdir(vm->dir, 0700) < 0) {
        vmm_vm *old;

        if (errno != EEXIST) {
            r = error_set_os(VMM_EIO, errno, "creating %s", vm->dir);
            goto out;
        }
        /* Taken, unless it is the leftover of a dead create. */
        r = vm_open(vm->ctx, vm->name, &old);
        if (r == 0) {
            vmm_vm_free(old);
            r = error_set(VMM_EEXIST, "a VM named %s exists", vm->name);
            goto out;
        }
        if (r == VMM_EBUSY) {
            r = error_set(VMM_EEXIST, "a VM named %s exists (another "
                          "program is creating or deleting it)", vm->name);
            goto out;
        }
        if (r != VMM_ENOTFOUND)
            goto out;
        if (mkdir(vm->dir, 0700) < 0) {
            r = error_set_os(errno == EEXIST ? VMM_EEXIST : VMM_EIO, errno,
                             "creating %s", vm->dir);
            goto out;
        }
    }

    r = vm_lock(vm, 0, lock_fd);
    if (r < 0) {
        rmdir(vm->dir);
        goto out;
    }
    vm->rec.phase = PHASE_CREATING;
    if (vm->rec.has_net) {
        bool shared = !vm->rec.own_netns;
        uint32_t slot = 0;
        int netns_fd = -1;

        /* Taps of VMs from other state directories can only be met in a
         * namespace VMs share: the host's or a named one. */
        if (shared && vm->rec.netns != NULL)
            r = net_netns_open(vm->rec.netns, &netns_fd);
        if (r == 0)
            r = free_slot(vm->ctx, shared, netns_fd, &slot);
        if (netns_fd >= 0)
            close(netns_fd);
        if (r == 0)
            r = net_lease_for_slot(vm->ctx, slot, &vm->rec.lease);
    }
    if (r == 0)
        r = record_write(vm->record_path, &vm->rec);
    if (r < 0) {
        store_remove_tree(vm->dir);
        store_unlock(*lock_fd);
        *lock_fd = -1;
    }

out:
    store_unlock(host_fd);
    return r;
}

/* Copies the caller's guest files into the VM directory. */
static int save_files(vmm_vm *vm, const vmm_guest_file *files, uint32_t n)
{
    if (n == 0)
        return 0;
    vm->rec.files = calloc(n, sizeof(*vm->rec.files));
    if (vm->rec.files == NULL)
        return error_set(VMM_ENOMEM, "copying guest files");
    for (uint32_t i = 0; i < n; i++) {
        struct record_file *rf = &vm->rec.files[i];
        char *path;
        int r;

        vm->rec.n_files = i + 1;
        rf->path = xstrdup(files[i].path);
        rf->blob = xasprintf("file-%u", i);
        if (rf->path == NULL || rf->blob == NULL)
            return VMM_ENOMEM;
        rf->mode = files[i].mode;
        rf->uid = files[i].uid;
        rf->gid = files[i].gid;
        path = xasprintf("%s/%s", vm->dir, rf->blob);
        if (path == NULL)
            return VMM_ENOMEM;
        r = store_write_file(path, files[i].data, files[i].size, 0600);
        free(path);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The kernel's id of this boot of the host. */
static int current_boot_id(char *buf, size_t size)
{
    const char *path = "/proc/sys/kernel/random/boot_id";
    char *text;
    int r;

    r = store_read_file(path, 64, &text, NULL);
    if (r < 0)
        return r;
    text[strcspn(text, "\n")] = '\0';
    snprintf(buf, size, "%s", text);
    free(text);
    return 0;
}

/*
 * A copy made at create lives in the page cache until this first start
 * flushes it. If the host restarted in between, pages may be lost without
 * any trace e2fsck could find: such a disk is refused, never booted.
 */
static int flush_new_disk(vmm_vm *vm)
{
    struct overlay_spec ospec = overlay_spec_of(vm);
    char now[sizeof(vm->rec.boot_id)];
    int r;

    r = current_boot_id(now, sizeof(now));
    if (r < 0)
        return r;
    if (strcmp(now, vm->rec.boot_id) != 0)
        return error_set(VMM_EDISK, "the disk of VM %s was still being "
                         "written out when the host restarted; delete the "
                         "VM and create it again", vm->name);
    return overlay_flush(vm->ctx, &ospec);
}

/* What identifies one version of a base image's content. */
struct base_stamp {
    uint64_t dev, ino, size, mtime_ns, ctime_ns;
};

static int base_stamp(const char *path, struct base_stamp *st_out)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return error_set_os(VMM_EIO, errno, "base image %s", path);
    *st_out = (struct base_stamp){
        .dev = st.st_dev, .ino = st.st_ino, .size = (uint64_t)st.st_size,
        .mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u +
                    (uint64_t)st.st_mtim.tv_nsec,
        .ctime_ns = (uint64_t)st.st_ctim.tv_sec * 1000000000u +
                    (uint64_t)st.st_ctim.tv_nsec,
    };
    return 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3u;
    return h;
}

/*
 * Whether a base image, as it is now, passed `e2fsck -fn`. The answer is
 * kept per state directory under bases/, keyed by the image's path and
 * stamped with its device, inode, size and times, so each version of a
 * base is checked once, not at every create.
 */
static bool base_known_clean(vmm_vm *vm, const struct base_stamp *stamp)
{
    char *marker = NULL, *dir = NULL, *text = NULL, line[160];
    const char *base = vm->rec.base_image;
    bool clean = false;

    snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 " %" PRIu64 " %"
             PRIu64 " %" PRIu64 "\n", stamp->dev, stamp->ino, stamp->size,
             stamp->mtime_ns, stamp->ctime_ns);
    dir = xasprintf("%s/bases", vm->ctx->state_dir);
    if (dir == NULL)
        goto out;
    marker = xasprintf("%s/%016" PRIx64, dir, fnv1a(base));
    if (marker == NULL)
        goto out;
    if (store_read_file(marker, 4096, &text, NULL) == 0 &&
        strcmp(text, line) == 0) {
        clean = true;
        goto out;
    }

    if (prep_check_clean(vm->ctx, vm->name, base, &clean) < 0) {
        log_warning(vm->ctx, "prep", vm->name, "%s",
                    vmm_error_last()->message);
        clean = false;
    } else if (clean && store_mkdirs(dir, 0700) == 0) {
        store_write_file(marker, line, strlen(line), 0600);
    }

out:
    error_reset();
    free(text);
    free(marker);
    free(dir);
    return clean;
}

static int build(vmm_vm *vm, const vmm_vm_spec *spec)
{
    struct base_stamp before, after;
    struct overlay_spec ospec = overlay_spec_of(vm);
    const char *host;
    int r;

    if (vm->rec.own_netns) {
        r = net_netns_create(vm->rec.netns);
        if (r < 0)
            return r;
    } else if (vm->rec.netns != NULL) {
        int fd;

        r = net_netns_open(vm->rec.netns, &fd);
        if (r < 0)
            return r;
        close(fd);
    }

    r = base_stamp(vm->rec.base_image, &before);
    if (r < 0)
        return r;
    /* The copy is flushed at the first start, not here: creating stays as
     * fast as cp, and the record says which host boot must still hold
     * the copy's unwritten pages (see flush_new_disk). */
    ospec.defer_flush = vm->rec.overlay == OVERLAY_COPY;
    r = overlay_create(vm->ctx, &ospec);
    if (r < 0)
        return r;
    if (ospec.defer_flush) {
        r = current_boot_id(vm->rec.boot_id, sizeof(vm->rec.boot_id));
        if (r < 0)
            return r;
        vm->rec.unflushed = true;
    }
    /* A copy of a clean base needs no e2fsck before its first patch; the
     * base must not have changed while it was copied. */
    vm->rec.pristine = base_known_clean(vm, &before) &&
                       base_stamp(vm->rec.base_image, &after) == 0 &&
                       memcmp(&before, &after, sizeof(before)) == 0;
    error_reset();

    host = vm->rec.has_net ? vm->rec.lease.guest_ip : vm->name;
    r = prep_make_host_keys(vm->ctx, vm->name, vm->dir, host,
                            vm->known_hosts);
    if (r < 0)
        return r;
    return save_files(vm, spec->files, spec->n_files);
}

VMM_EXPORT int vmm_create(vmm_vm **out, vmm_context *ctx, const char *name,
                          const vmm_vm_spec *spec)
{
    vmm_vm_spec s;
    uint64_t base_size = 0;
    vmm_vm *vm = NULL;
    int lock_fd = -1, r;

    error_reset();
    if (out == NULL || ctx == NULL || spec == NULL)
        return error_set(VMM_EINVAL, "vmm_create: %s is NULL",
                         out == NULL ? "out" : ctx == NULL ? "ctx" : "spec");
    r = check_name(name);
    if (r < 0)
        return r;
    r = options_copy(&s, sizeof(s), spec, "vmm_vm_spec");
    if (r < 0)
        return r;
    r = vm_new(ctx, name, &vm);
    if (r < 0)
        return r;

    r = record_from_spec(name, &s, &vm->rec, &base_size);
    if (r < 0)
        goto fail;
    vm->rec.overlay = overlay_pick(ctx, name, (enum overlay_driver)s.overlay);
    r = store_mkdirs(ctx->state_dir, 0755);
    if (r == 0) {
        char *vms = xasprintf("%s/vms", ctx->state_dir);

        r = vms ? store_mkdirs(vms, 0700) : VMM_ENOMEM;
        free(vms);
    }
    if (r < 0)
        goto fail;

    r = claim(vm, &lock_fd);
    if (r < 0)
        goto fail;
    r = build(vm, &s);
    if (r == 0) {
        vm->rec.phase = PHASE_READY;
        r = record_write(vm->record_path, &vm->rec);
    }
    if (r < 0) {
        struct error_snapshot first;

        /* The caller wants the first failure, not the cleanup's. */
        error_save(&first);
        if (teardown(vm) < 0)
            log_error(ctx, "vm", name, "cleaning up a failed create: %s",
                      vmm_error_last()->message);
        error_restore(&first);
        goto fail;
    }

    default_disk_path(vm);
    vm->state = VMM_VM_STOPPED;
    log_info(ctx, "vm", name, "created VM %s (overlay %s%s%s)", name,
             overlay_driver_name(vm->rec.overlay),
             vm->rec.has_net ? ", guest " : "",
             vm->rec.has_net ? vm->rec.lease.guest_ip : "");
    store_unlock(lock_fd);
    *out = vm;
    return 0;

fail:
    store_unlock(lock_fd);
    vmm_vm_free(vm);
    return r;
}

/* --- start ---------------------------------------------------------------- */

/* Everything a start patches into the guest, with the storage behind it. */
struct patch_set {
    struct prep_patch *patches;
    size_t count;
    char *storage;
    char **blobs;
    size_t n_blobs;
};

static void patch_set_clear(struct patch_set *ps)
{
    free(ps->patches);
    free(ps->storage);
    for (size_t i = 0; i < ps->n_blobs; i++)
        free(ps->blobs[i]);
    free(ps->blobs);
    memset(ps, 0, sizeof(*ps));
}

static int make_patch_set(vmm_vm *vm, struct patch_set *ps)
{
    struct prep_guest_config cfg = {
        .hostname = vm->name,
        .authorized_keys = vm->rec.ssh_authorized_keys,
        .host_keys_dir = vm->dir,
    };
    const struct vm_record *rec = &vm->rec;
    struct prep_patch *all;
    int r;

    memset(ps, 0, sizeof(*ps));
    if (rec->has_net) {
        cfg.guest_ip = rec->lease.guest_ip;
        cfg.gateway_ip = rec->lease.host_ip;
        cfg.prefix_len = rec->lease.prefix_len;
        cfg.mac = rec->lease.mac;
        r = prep_detect_net_style(vm->disk, &cfg.net_style);
        if (r < 0)
            return r;
    } else {
        cfg.net_style = PREP_NET_NONE;
    }
    r = prep_standard_patches(&cfg, &ps->patches, &ps->count, &ps->storage);
    if (r < 0 || rec->n_files == 0)
        return r;

    all = realloc(ps->patches, (ps->count + rec->n_files) * sizeof(*all));
    ps->blobs = calloc(rec->n_files, sizeof(*ps->blobs));
    if (all == NULL || ps->blobs == NULL) {
        if (all != NULL)
            ps->patches = all;
        return error_set(VMM_ENOMEM, "preparing guest files");
    }
    ps->patches = all;
    for (size_t i = 0; i < rec->n_files; i++) {
        const struct record_file *rf = &rec->files[i];
        struct prep_patch *p = &ps->patches[ps->count];
        size_t size;
        char *path;

        path = xasprintf("%s/%s", vm->dir, rf->blob);
        if (path == NULL)
            return VMM_ENOMEM;
        r = store_read_file(path, FILE_MAX, &ps->blobs[i], &size);
        free(path);
        if (r < 0)
            return r;
        ps->n_blobs = i + 1;
        *p = (struct prep_patch){
            .op = PREP_WRITE_FILE, .path = rf->path, .data = ps->blobs[i],
            .size = size, .mode = rf->mode, .uid = rf->uid, .gid = rf->gid,
        };
        ps->count++;
    }
    return 0;
}

/* The kernel command line: the VM's arguments, its root disk, its ip=. */
static int boot_args(const vmm_vm *vm, char *buf, size_t size)
{
    char ip[128] = "";
    int n;

    if (vm->rec.has_net) {
        int r = net_boot_arg(&vm->rec.lease, ip, sizeof(ip));

        if (r < 0)
            return r;
    }
    n = snprintf(buf, size, "%s root=/dev/vda rw%s%s", vm->rec.boot_args,
                 ip[0] ? " " : "", ip);
    if (n < 0 || (size_t)n >= size)
        return error_set(VMM_EINVAL, "VM %s: boot arguments too long",
                         vm->name);
    return 0;
}

/* CLOCK_MONOTONIC in ms, for the start's deadline. */
static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Bounds the next request by the context's API timeout and what is left
 * of the start's own; false once nothing is left. */
static bool bound_request(vmm_vm *vm, struct api_client *c, uint64_t deadline)
{
    uint64_t now = now_ms();
    uint64_t left = deadline > now ? deadline - now : 0;

    if (left == 0)
        return false;
    api_client_set_timeout(c, (uint32_t)(left < vm->ctx->api_timeout_ms
                                         ? left : vm->ctx->api_timeout_ms));
    return true;
}

/*
 * Configures a freshly spawned VMM through its API and boots the guest,
 * all within the start's deadline (CLOCK_MONOTONIC, ms), on the connection
 * that saw it answer.
 */
static int configure_and_boot(vmm_vm *vm, struct api_client *c,
                              uint64_t deadline)
{
    struct api_machine_config mc = {
        .vcpu_count = vm->rec.vcpus, .mem_size_mib = vm->rec.memory_mib,
    };
    struct api_drive root = {
        .drive_id = "rootfs", .path_on_host = vm->disk,
        .is_root_device = true, .is_read_only = false,
    };
    struct api_network_interface nic = {
        .iface_id = "eth0", .host_dev_name = vm->rec.lease.tap,
        .guest_mac = vm->rec.lease.mac,
    };
    struct api_boot_source boot = {
        .kernel_image_path = vm->rec.kernel,
        .initrd_path = vm->rec.initrd,
    };
    char args[2048];
    int r;

    r = boot_args(vm, args, sizeof(args));
    if (r < 0)
        return r;
    boot.boot_args = args;

    if (!bound_request(vm, c, deadline))
        goto late;
    r = api_put_machine_config(c, &mc);
    if (r == 0 && !bound_request(vm, c, deadline))
        goto late;
    if (r == 0)
        r = api_put_boot_source(c, &boot);
    if (r == 0 && !bound_request(vm, c, deadline))
        goto late;
    if (r == 0)
        r = api_put_drive(c, &root);
    if (r == 0 && vm->rec.has_net) {
        if (!bound_request(vm, c, deadline))
            goto late;
        r = api_put_network_interface(c, &nic);
    }
    if (r == 0 && !bound_request(vm, c, deadline))
        goto late;
    if (r == 0)
        r = api_action(c, API_ACTION_INSTANCE_START);
    api_client_set_timeout(c, vm->ctx->api_timeout_ms);
    return r;

late:
    return error_set(VMM_ETIMEDOUT, "configuring the VMM of VM %s took "
                     "longer than the start's timeout", vm->name);
}

/*
 * Marks that the VMM accepted InstanceStart: one that later cannot answer
 * is then a running VM's, never what a dead start left (see probe_vmm).
 */
static void mark_booted(const vmm_vm *vm)
{
    int fd = open(vm->booted_path, O_WRONLY | O_CREAT | O_CLOEXEC |
                  O_NOFOLLOW, 0600);

    if (fd < 0)
        log_warning(vm->ctx, "vm", vm->name, "marking %s: %s",
                    vm->booted_path, strerror(errno));
    else
        close(fd);
}

/* Keeps the previous boot's log as vmm.log.1 for a look after a restart. */
static void rotate_log(const vmm_vm *vm)
{
    char old[PATH_MAX];

    snprintf(old, sizeof(old), "%s.1", vm->log_path);
    if (rename(vm->log_path, old) < 0 && errno != ENOENT)
        log_warning(vm->ctx, "vm", vm->name, "keeping the old log %s: %s",
                    vm->log_path, strerror(errno));
}

/*
 * Records a VMM the moment it is forked: if this program dies while the
 * VMM comes up, the next one finds and ends it (settle_orphan).
 */
static void record_spawned(pid_t pid, uint64_t start_time, void *user)
{
    vmm_vm *vm = user;
    struct error_snapshot saved;

    vm->rec.has_vmm = true;
    vm->rec.pid = pid;
    vm->rec.start_time = start_time;
    error_save(&saved);
    vm->spawn_recorded = record_write(vm->record_path, &vm->rec) == 0;
    if (!vm->spawn_recorded)
        log_warning(vm->ctx, "vm", vm->name, "%s", vmm_error_last()->message);
    error_restore(&saved);
}

static int start_locked(vmm_vm *vm, uint32_t timeout_ms)
{
    struct overlay_spec ospec = overlay_spec_of(vm);
    struct prep_fsck_result fsck;
    struct patch_set ps = {0};
    struct vmm_process *p = NULL;
    struct error_snapshot first;
    uint64_t deadline;
    bool pristine, flushed;
    int netns_fd = -1, r;

    if (vm->state != VMM_VM_STOPPED)
        return error_set(VMM_ESTATE, "VM %s is already running (pid %d)",
                         vm->name, vm->pid);
    if ((r = resolve_input("kernel", vm->rec.kernel, false, NULL)) < 0 ||
        (vm->rec.initrd != NULL &&
         (r = resolve_input("initrd", vm->rec.initrd, false, NULL)) < 0))
        return r;
    /*
     * A VMM that died unseen is recorded as gone before anything new, and
     * a pristine disk stops being one before it is patched: a crash while
     * patching must not spare the next start its e2fsck.
     */
    flushed = vm->rec.unflushed;
    if (flushed) {
        r = flush_new_disk(vm);
        if (r < 0)
            return r;
        vm->rec.unflushed = false;
    }
    pristine = vm->rec.pristine;
    if (vm->rec.has_vmm || pristine || flushed) {
        vm->rec.has_vmm = false;
        vm->rec.pristine = false;
        r = record_write(vm->record_path, &vm->rec);
        if (r < 0)
            return r;
    }

    r = overlay_activate(vm->ctx, &ospec, vm->disk, sizeof(vm->disk));
    if (r < 0)
        goto fail;
    r = make_patch_set(vm, &ps);
    if (r == 0 && pristine) {
        log_debug(vm->ctx, "prep", vm->name, "no e2fsck before the first "
                  "patch: the disk is an untouched copy of a base image "
                  "that passed e2fsck -fn");
        r = prep_patch(vm->ctx, vm->name, vm->disk, ps.patches, ps.count);
    } else if (r == 0) {
        r = prep_run(vm->ctx, vm->name, vm->disk, ps.patches, ps.count,
                     &fsck);
    }
    patch_set_clear(&ps);
    if (r < 0)
        goto fail;

    r = open_netns(vm, &netns_fd);
    if (r < 0)
        goto fail;
    if (vm->rec.has_net) {
        char owner[PATH_MAX + 8];

        /* The VM's directory tells it from VMs of other state dirs. */
        snprintf(owner, sizeof(owner), "libvmm:%s", vm->dir);
        r = net_tap_create(vm->ctx, vm->name, &vm->rec.lease, owner,
                           netns_fd);
        if (r < 0)
            goto fail;
    }

    rotate_log(vm);
    unlink(vm->exit_path);
    unlink(vm->booted_path);
    struct process_spawn_spec spawn = {
        .binary = vm->ctx->firecracker,
        .id = vm->name,
        .api_socket = vm->api_socket,
        .log_path = vm->log_path,
        .exit_path = vm->exit_path,
        .netns_fd = netns_fd,
        .ready_timeout_ms = timeout_ms,
        .vm_name = vm->name,
        .on_spawned = record_spawned,
        .user = vm,
    };
    vm->spawn_recorded = false;
    /* The timeout bounds waiting for the VMM: its readiness, then its
     * configuration, not the disk work before. */
    deadline = now_ms() + timeout_ms;
    r = process_spawn(vm->ctx, &spawn, &p);
    if (r < 0)
        goto fail;

    /*
     * A firecracker that daemonized serves from another pid: record that
     * one. When the forked VMM is the one serving, record_spawned already
     * wrote exactly this, and each fsync'ed write costs a start about
     * 0.5 CPU ms and several ms of wall time.
     */
    r = 0;
    if (!vm->spawn_recorded || vm->rec.pid != process_pid(p) ||
        vm->rec.start_time != process_start_time(p)) {
        vm->rec.has_vmm = true;
        vm->rec.pid = process_pid(p);
        vm->rec.start_time = process_start_time(p);
        r = record_write(vm->record_path, &vm->rec);
    }
    if (r == 0)
        r = configure_and_boot(vm, process_api(p), deadline);
    if (r < 0)
        goto fail;

    mark_booted(vm);
    vm->state = VMM_VM_RUNNING;
    vm->pid = vm->rec.pid;
    vm->has_last_exit = false;
    log_info(vm->ctx, "vm", vm->name, "started VM %s: VMM pid %d", vm->name,
             vm->pid);
    process_free(p);
    if (netns_fd >= 0)
        close(netns_fd);
    return 0;

fail:
    error_save(&first);
    if (p != NULL) {
        process_kill(p);
        process_free(p);
    }
    unlink(vm->api_socket);
    if (vm->rec.has_vmm) {
        vm->rec.has_vmm = false;
        record_write(vm->record_path, &vm->rec);
    }
    if (netns_fd >= 0)
        close(netns_fd);
    release_runtime(vm);
    note_last_exit(vm);
    error_restore(&first);
    error_prefix("starting VM %s: ", vm->name);
    return error_code();
}

VMM_EXPORT int vmm_start(vmm_vm *vm, const vmm_start_options *opts)
{
    vmm_start_options o = VMM_START_OPTIONS_INIT;
    int lock_fd, r;

    error_reset();
    if (vm == NULL)
        return error_set(VMM_EINVAL, "vmm_start: vm is NULL");
    if (opts != NULL) {
        r = options_copy(&o, sizeof(o), opts, "vmm_start_options");
        if (r < 0)
            return r;
        if (o.flags != 0 || o.reserved != 0)
            return error_set(VMM_EINVAL, "vmm_start_options: flags and "
                             "reserved must be 0");
    }

    r = begin_op(vm, "start", &lock_fd);
    if (r < 0)
        return r;
    r = start_locked(vm, o.timeout_ms ? o.timeout_ms
                                      : DEFAULT_START_TIMEOUT_MS);
    store_unlock(lock_fd);
    return r;
}

/* --- stop, kill, pause, delete, set ---------------------------------------- */

static int stop_locked(vmm_vm *vm, bool graceful, uint32_t timeout_ms)
{
    bool was_running = vm->rec.has_vmm && vm->state != VMM_VM_STOPPED;
    int r;

    r = end_vmm(vm, graceful, timeout_ms);
    if (r < 0)
        return r;
    release_runtime(vm);
    r = record_write(vm->record_path, &vm->rec);
    if (r == 0 && was_running)
        log_info(vm->ctx, "vm", vm->name, "%s VM %s: %s",
                 graceful ? "stopped" : "killed", vm->name,
                 vm->has_last_exit ? vm->last_exit : "gone");
    return r;
}

VMM_EXPORT int vmm_stop(vmm_vm *vm, uint32_t timeout_ms)
{
    int lock_fd, r;

    error_reset();
    if (vm == NULL)
        return error_set(VMM_EINVAL, "vmm_stop: vm is NULL");
    r = begin_op(vm, "stop", &lock_fd);
    if (r < 0)
        return r;
    r = stop_locked(vm, true, timeout_ms ? timeout_ms
                                         : DEFAULT_STOP_TIMEOUT_MS);
    store_unlock(lock_fd);
    return r;
}

VMM_EXPORT int vmm_kill(vmm_vm *vm)
{
    int lock_fd, r;

    error_reset();
    if (vm == NULL)
        return error_set(VMM_EINVAL, "vmm_kill: vm is NULL");
    r = begin_op(vm, "kill", &lock_fd);
    if (r < 0)
        return r;
    r = stop_locked(vm, false, 0);
    store_unlock(lock_fd);
    return r;
}

static int set_paused(vmm_vm *vm, bool paused)
{
    struct api_client *c;
    int lock_fd, r;

    error_reset();
    if (vm == NULL)
        return error_set(VMM_EINVAL, "%s: vm is NULL",
                         paused ? "vmm_pause" : "vmm_resume");
    r = begin_op(vm, paused ? "pause" : "resume", &lock_fd);
    if (r < 0)
        return r;
    if (vm->state == VMM_VM_STOPPED) {
        r = error_set(VMM_ESTATE, "VM %s is not running", vm->name);
        goto out;
    }
    r = api_client_new(&c, vm->api_socket, vm->ctx->api_timeout_ms);
    if (r < 0)
        goto out;
    r = api_patch_vm_state(c, paused);
    api_client_free(c);
    if (r == 0)
        vm->state = paused ? VMM_VM_PAUSED : VMM_VM_RUNNING;

out:
    store_unlock(lock_fd);
    return r;
}

VMM_EXPORT int vmm_pause(vmm_vm *vm)
{
    return set_paused(vm, true);
}

VMM_EXPORT int vmm_resume(vmm_vm *vm)
{
    return set_paused(vm, false);
}

VMM_EXPORT int vmm_delete(vmm_vm *vm, uint32_t flags)
{
    int lock_fd, r;

    error_reset();
    if (vm == NULL)
        return error_set(VMM_EINVAL, "vmm_delete: vm is NULL");
    if (flags & ~VMM_DELETE_FORCE)
        return error_set(VMM_EINVAL, "vmm_delete: unknown flags %#x", flags);
    r = begin_op(vm, "delete", &lock_fd);
    if (r < 0)
        return r;
    if (vm->state != VMM_VM_STOPPED && !(flags & VMM_DELETE_FORCE)) {
        r = error_set(VMM_ESTATE, "VM %s is running (pid %d); stop it "
                      "first or force the delete", vm->name, vm->pid);
        goto out;
    }

    vm->rec.phase = PHASE_DELETING;
    r = record_write(vm->record_path, &vm->rec);
    if (r == 0)
        r = teardown(vm);
    if (r == 0) {
        vm->state = VMM_VM_STOPPED;
        vm->pid = 0;
        log_info(vm->ctx, "vm", vm->name, "deleted VM %s", vm->name);
    }

out:
    store_unlock(lock_fd);
    return r;
}

/*
 * Removes a VM whose record cannot be read, from what its name alone
 * tells: the VMM serving its socket, its disks and dm leftovers, and the
 * namespace libvmm would have made for it. A tap it had in a namespace
 * not its own cannot be identified and stays.
 */
static int purge(vmm_context *ctx, const char *name)
{
    struct vmm_process *p;
    struct overlay_spec ospec;
    char own_netns[80];
    vmm_vm *vm;
    int lock_fd, r, fd;

    r = vm_new(ctx, name, &vm);
    if (r < 0)
        return r;
    /* A link in place of the VM's directory: remove the link alone. */
    if (check_dir(vm) == VMM_ECORRUPT) {
        r = unlink(vm->dir) == 0 ? 0 : error_set_os(VMM_EIO, errno,
                                                   "removing %s", vm->dir);
        goto out;
    }
    r = vm_lock(vm, LOCK_WAIT_MS, &lock_fd);
    if (r < 0)
        goto out;

    if (process_attach_socket(ctx, name, vm->api_socket, &p) == 0) {
        r = process_kill(p);
        process_free(p);
        if (r < 0)
            goto unlock;
    }
    ospec = (struct overlay_spec){
        .vm_name = name, .driver = OVERLAY_COPY, .dir = vm->dir,
    };
    r = overlay_destroy(ctx, &ospec);
    if (r < 0)
        goto unlock;
    snprintf(own_netns, sizeof(own_netns), "libvmm-%s", name);
    if (net_netns_open(own_netns, &fd) == 0) {
        close(fd);
        r = net_netns_delete(own_netns);
        if (r < 0)
            goto unlock;
    }
    log_warning(ctx, "vm", name, "deleted VM %s from its name alone: its "
                "record was unreadable, so a tap it had outside its own "
                "namespace cannot be identified", name);
    r = store_remove_tree(vm->dir);

unlock:
    store_unlock(lock_fd);
out:
    vmm_vm_free(vm);
    return r;
}

VMM_EXPORT int vmm_delete_by_name(vmm_context *ctx, const char *name,
                                  uint32_t flags)
{
    enum record_phase settled;
    vmm_vm *vm;
    int r;

    error_reset();
    if (ctx == NULL)
        return error_set(VMM_EINVAL, "vmm_delete_by_name: ctx is NULL");
    if (flags & ~VMM_DELETE_FORCE)
        return error_set(VMM_EINVAL, "vmm_delete_by_name: unknown flags "
                         "%#x", flags);
    r = check_name(name);
    if (r < 0)
        return r;

    settled = PHASE_READY;
    r = vm_open_settling(ctx, name, &vm, &settled);
    if (r == 0) {
        r = vmm_delete(vm, flags);
        vmm_vm_free(vm);
        return r;
    }
    if (r == VMM_ENOTFOUND && settled == PHASE_DELETING) {
        /* An earlier delete's remains were just removed: done. */
        error_reset();
        return 0;
    }
    if (r != VMM_ECORRUPT)
        return r;
    if (!(flags & VMM_DELETE_FORCE)) {
        error_prefix("cannot delete VM %s without force: ", name);
        return VMM_ECORRUPT;
    }
    return purge(ctx, name);
}

/* Changes the vCPUs (is_vcpus) or the memory of a stopped VM. */
static int set_stopped(vmm_vm *vm, const char *op, bool is_vcpus,
                       uint32_t value)
{
    int lock_fd, r;

    error_reset();
    if (vm == NULL)
        return error_set(VMM_EINVAL, "%s: vm is NULL", op);
    r = is_vcpus ? check_vcpus(value) : check_memory(value);
    if (r < 0)
        return r;
    r = begin_op(vm, op, &lock_fd);
    if (r < 0)
        return r;
    if (vm->state != VMM_VM_STOPPED) {
        r = error_set(VMM_ESTATE, "VM %s is running; stop it before "
                      "changing its %s", vm->name,
                      is_vcpus ? "vCPUs" : "memory");
        goto out;
    }
    if (is_vcpus)
        vm->rec.vcpus = value;
    else
        vm->rec.memory_mib = value;
    r = record_write(vm->record_path, &vm->rec);

out:
    store_unlock(lock_fd);
    return r;
}

VMM_EXPORT int vmm_set_vcpus(vmm_vm *vm, uint32_t vcpus)
{
    return set_stopped(vm, "vmm_set_vcpus", true, vcpus);
}

VMM_EXPORT int vmm_set_memory(vmm_vm *vm, uint32_t memory_mib)
{
    return set_stopped(vm, "vmm_set_memory", false, memory_mib);
}

/* --- list ----------------------------------------------------------------- */

static int compare_entries(const void *a, const void *b)
{
    const struct list_entry *x = a, *y = b;

    return strcmp(x->name, y->name);
}

static int list_add(vmm_vm_list *list, size_t *cap, vmm_context *ctx,
                    const char *name)
{
    struct list_entry *e;
    int r;

    if (list->count == *cap) {
        struct list_entry *grown;

        *cap = *cap ? *cap * 2 : 16;
        grown = realloc(list->entries, *cap * sizeof(*grown));
        if (grown == NULL)
            return error_set(VMM_ENOMEM, "listing VMs");
        list->entries = grown;
    }
    e = &list->entries[list->count];
    memset(e, 0, sizeof(*e));
    e->name = xstrdup(name);
    if (e->name == NULL)
        return VMM_ENOMEM;

    r = vm_open(ctx, name, &e->vm);
    if (r == VMM_ENOTFOUND) {
        /* Deleted meanwhile, or an interrupted create now cleaned up. */
        free(e->name);
        error_reset();
        return 0;
    }
    if (r == VMM_ENOMEM) {
        free(e->name);
        return r;
    }
    if (r < 0) {
        e->error = xstrdup(vmm_error_last()->message);
        if (e->error == NULL) {
            free(e->name);
            return VMM_ENOMEM;
        }
    }
    list->count++;
    error_reset();
    return 0;
}

VMM_EXPORT int vmm_list(vmm_vm_list **out, vmm_context *ctx)
{
    vmm_vm_list *list;
    struct dirent *e;
    size_t cap = 0;
    char *path;
    DIR *dir;
    int r = 0;

    error_reset();
    if (out == NULL || ctx == NULL)
        return error_set(VMM_EINVAL, "vmm_list: %s is NULL",
                         out == NULL ? "out" : "ctx");
    list = calloc(1, sizeof(*list));
    if (list == NULL)
        return error_set(VMM_ENOMEM, "listing VMs");

    path = xasprintf("%s/vms", ctx->state_dir);
    if (path == NULL) {
        free(list);
        return VMM_ENOMEM;
    }
    dir = opendir(path);
    if (dir == NULL) {
        if (errno != ENOENT)
            r = error_set_os(VMM_EIO, errno, "reading %s", path);
        free(path);
        goto done;
    }
    free(path);
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.' || check_name(e->d_name) < 0)
            continue;
        r = list_add(list, &cap, ctx, e->d_name);
        if (r < 0)
            break;
    }
    closedir(dir);
    if (list->count > 1)
        qsort(list->entries, list->count, sizeof(*list->entries),
              compare_entries);

done:
    if (r < 0) {
        struct error_snapshot first;

        error_save(&first);
        vmm_vm_list_free(list);
        error_restore(&first);
        return r;
    }
    error_reset();
    *out = list;
    return 0;
}

VMM_EXPORT uint32_t vmm_vm_list_count(const vmm_vm_list *list)
{
    return list ? list->count : 0;
}

VMM_EXPORT const char *vmm_vm_list_name(const vmm_vm_list *list, uint32_t i)
{
    return list && i < list->count ? list->entries[i].name : NULL;
}

VMM_EXPORT vmm_vm *vmm_vm_list_vm(const vmm_vm_list *list, uint32_t i)
{
    return list && i < list->count ? list->entries[i].vm : NULL;
}

VMM_EXPORT const char *vmm_vm_list_error(const vmm_vm_list *list, uint32_t i)
{
    return list && i < list->count ? list->entries[i].error : NULL;
}

VMM_EXPORT void vmm_vm_list_free(vmm_vm_list *list)
{
    if (list == NULL)
        return;
    for (uint32_t i = 0; i < list->count; i++) {
        free(list->entries[i].name);
        vmm_vm_free(list->entries[i].vm);
        free(list->entries[i].error);
    }
    free(list->entries);
    free(list);
}

/* --- getters -------------------------------------------------------------- */

VMM_EXPORT const char *vmm_vm_name(const vmm_vm *vm)
{
    return vm ? vm->name : NULL;
}

VMM_EXPORT int32_t vmm_vm_state(const vmm_vm *vm)
{
    return vm ? vm->state : VMM_VM_STOPPED;
}

VMM_EXPORT int32_t vmm_vm_pid(const vmm_vm *vm)
{
    return vm ? vm->pid : 0;
}

VMM_EXPORT uint32_t vmm_vm_vcpus(const vmm_vm *vm)
{
    return vm ? vm->rec.vcpus : 0;
}

VMM_EXPORT uint32_t vmm_vm_memory_mib(const vmm_vm *vm)
{
    return vm ? vm->rec.memory_mib : 0;
}

VMM_EXPORT uint64_t vmm_vm_disk_size(const vmm_vm *vm)
{
    return vm ? vm->rec.disk_size : 0;
}

VMM_EXPORT const char *vmm_vm_kernel(const vmm_vm *vm)
{
    return vm ? vm->rec.kernel : NULL;
}

VMM_EXPORT const char *vmm_vm_initrd(const vmm_vm *vm)
{
    return vm ? vm->rec.initrd : NULL;
}

VMM_EXPORT const char *vmm_vm_base_image(const vmm_vm *vm)
{
    return vm ? vm->rec.base_image : NULL;
}

VMM_EXPORT const char *vmm_vm_boot_args(const vmm_vm *vm)
{
    return vm ? vm->rec.boot_args : NULL;
}

VMM_EXPORT const char *vmm_vm_guest_ip(const vmm_vm *vm)
{
    return vm && vm->rec.has_net ? vm->rec.lease.guest_ip : NULL;
}

VMM_EXPORT const char *vmm_vm_host_ip(const vmm_vm *vm)
{
    return vm && vm->rec.has_net ? vm->rec.lease.host_ip : NULL;
}

VMM_EXPORT const char *vmm_vm_mac(const vmm_vm *vm)
{
    return vm && vm->rec.has_net ? vm->rec.lease.mac : NULL;
}

VMM_EXPORT const char *vmm_vm_tap(const vmm_vm *vm)
{
    return vm && vm->rec.has_net ? vm->rec.lease.tap : NULL;
}

VMM_EXPORT const char *vmm_vm_netns(const vmm_vm *vm)
{
    return vm ? vm->rec.netns : NULL;
}

VMM_EXPORT const char *vmm_vm_api_socket(const vmm_vm *vm)
{
    return vm ? vm->api_socket : NULL;
}

VMM_EXPORT const char *vmm_vm_overlay_driver(const vmm_vm *vm)
{
    return vm ? overlay_driver_name(vm->rec.overlay) : NULL;
}

VMM_EXPORT const char *vmm_vm_disk(const vmm_vm *vm)
{
    return vm ? vm->disk : NULL;
}

VMM_EXPORT const char *vmm_vm_log_path(const vmm_vm *vm)
{
    return vm ? vm->log_path : NULL;
}

VMM_EXPORT const char *vmm_vm_known_hosts(const vmm_vm *vm)
{
    return vm ? vm->known_hosts : NULL;
}

VMM_EXPORT const char *vmm_vm_last_exit(const vmm_vm *vm)
{
    return vm && vm->has_last_exit ? vm->last_exit : NULL;
}
