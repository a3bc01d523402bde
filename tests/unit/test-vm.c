/*
 * Suite "vm": the public VM API against the Firecracker API emulator
 * (fast mode), through the shared library: create, open, list, start,
 * stop, kill, delete, set, and bad input leaving nothing behind.
 *
 * Needs root (loop-free, but taps and namespaces for the networked case)
 * and FC_EMULATOR naming the emulator binary.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check-main.h"

static char dir[64];
static char state_dir[128], kernel[128], rootfs[128];
static vmm_context *ctx;

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

static void setup(void)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    const char *emulator = getenv("FC_EMULATOR");

    ck_assert_msg(emulator != NULL, "FC_EMULATOR is not set");
    strcpy(dir, "/tmp/libvmm-vm-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(state_dir, sizeof(state_dir), "%s/state", dir);
    snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", dir);

    run("set -e; cd %s; mkdir -p tree/etc/network tree/etc/ssh tree/root;"
        "printf 'auto lo\\niface lo inet loopback\\n' >"
        " tree/etc/network/interfaces;"
        "echo base > tree/etc/hostname; head -c 4096 /dev/urandom > vmlinux;"
        "mkfs.ext4 -q -F -d tree rootfs.ext4 32M", dir);

    o.state_dir = state_dir;
    o.firecracker = emulator;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);
}

static void teardown(void)
{
    vmm_vm_list *list;

    /* Whatever a failed test left running is ended here. */
    if (vmm_list(&list, ctx) == 0) {
        for (uint32_t i = 0; i < vmm_vm_list_count(list); i++)
            if (vmm_vm_list_vm(list, i) != NULL)
                vmm_delete(vmm_vm_list_vm(list, i), VMM_DELETE_FORCE);
        vmm_vm_list_free(list);
    }
    vmm_context_free(ctx);
    run("rm -rf %s", dir);
}

static vmm_vm_spec base_spec(void)
{
    vmm_vm_spec s = VMM_VM_SPEC_INIT;

    s.kernel = kernel;
    s.base_image = rootfs;
    s.flags = VMM_VM_NO_NET;
    s.overlay = VMM_OVERLAY_COPY;
    return s;
}

/* How many entries a directory holds, "." and ".." aside; -1 if none. */
static int entries(const char *path)
{
    struct dirent *e;
    DIR *d = opendir(path);
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static bool process_alive(pid_t pid)
{
    char path[64], state = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return false;
    if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
        state = 0;
    fclose(f);
    return state != 0 && state != 'Z';
}

START_TEST(lifecycle)
{
    vmm_vm_spec s = base_spec();
    vmm_vm *vm, *again;
    struct stat st;
    pid_t pid;

    s.vcpus = 2;
    s.memory_mib = 256;
    ck_assert_int_eq(vmm_create(&vm, ctx, "life", &s), 0);
    ck_assert_str_eq(vmm_vm_name(vm), "life");
    ck_assert_int_eq(vmm_vm_state(vm), VMM_VM_STOPPED);
    ck_assert_str_eq(vmm_vm_overlay_driver(vm), "copy");
    ck_assert_int_eq(stat(vmm_vm_disk(vm), &st), 0);
    ck_assert_int_eq(stat(vmm_vm_known_hosts(vm), &st), 0);

    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    ck_assert_int_eq(vmm_vm_state(vm), VMM_VM_RUNNING);
    pid = vmm_vm_pid(vm);
    ck_assert_int_gt(pid, 0);
    ck_assert(process_alive(pid));

    /* A second handle sees the same running VM. */
    ck_assert_int_eq(vmm_open(&again, ctx, "life"), 0);
    ck_assert_int_eq(vmm_vm_state(again), VMM_VM_RUNNING);
    ck_assert_int_eq(vmm_vm_pid(again), pid);
    ck_assert_int_eq(vmm_start(again, NULL), VMM_ESTATE);
    ck_assert_vmm_error(VMM_ESTATE, "already running");
    vmm_vm_free(again);

    /* Freeing a handle never stops the VM. */
    vmm_vm_free(vm);
    ck_assert(process_alive(pid));
    ck_assert_int_eq(vmm_open(&vm, ctx, "life"), 0);

    ck_assert_int_eq(vmm_set_vcpus(vm, 4), VMM_ESTATE);
    ck_assert_vmm_error(VMM_ESTATE, "running");
    ck_assert_int_eq(vmm_delete(vm, 0), VMM_ESTATE);

    ck_assert_int_eq(vmm_stop(vm, 2000), 0);
    ck_assert_int_eq(vmm_vm_state(vm), VMM_VM_STOPPED);
    ck_assert(!process_alive(pid));
    ck_assert_ptr_nonnull(vmm_vm_last_exit(vm));

    ck_assert_int_eq(vmm_set_vcpus(vm, 4), 0);
    ck_assert_int_eq(vmm_set_memory(vm, 512), 0);
    ck_assert_uint_eq(vmm_vm_vcpus(vm), 4);
    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    pid = vmm_vm_pid(vm);
    ck_assert_int_eq(vmm_kill(vm), 0);
    ck_assert(!process_alive(pid));

    ck_assert_int_eq(vmm_delete(vm, 0), 0);
    vmm_vm_free(vm);
    ck_assert_int_eq(vmm_open(&vm, ctx, "life"), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "life");
    ck_assert_int_eq(entries(state_dir) >= 0, 1);
}
END_TEST

START_TEST(killed_from_outside_reads_stopped)
{
    vmm_vm_spec s = base_spec();
    char proc[32];
    vmm_vm *vm;
    pid_t pid;

    ck_assert_int_eq(vmm_create(&vm, ctx, "outside", &s), 0);
    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    pid = vmm_vm_pid(vm);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    /* Gone means reaped: the keeper records the exit before reaping. */
    snprintf(proc, sizeof(proc), "/proc/%d", (int)pid);
    for (int i = 0; i < 1000 && access(proc, F_OK) == 0; i++)
        usleep(10000);

    ck_assert_int_eq(vmm_vm_refresh(vm), 0);
    ck_assert_int_eq(vmm_vm_state(vm), VMM_VM_STOPPED);
    ck_assert_int_eq(vmm_vm_pid(vm), 0);
    ck_assert_ptr_nonnull(vmm_vm_last_exit(vm));
    ck_assert_msg(strstr(vmm_vm_last_exit(vm), "signal 9") != NULL,
                  "last exit: %s", vmm_vm_last_exit(vm));

    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    ck_assert_int_eq(vmm_delete(vm, VMM_DELETE_FORCE), 0);
    vmm_vm_free(vm);
}
END_TEST

START_TEST(list_survives_a_corrupt_record)
{
    vmm_vm_spec s = base_spec();
    vmm_vm_list *list;
    vmm_vm *a, *b;
    char path[256];
    FILE *f;

    ck_assert_int_eq(vmm_create(&a, ctx, "alpha", &s), 0);
    ck_assert_int_eq(vmm_create(&b, ctx, "beta", &s), 0);
    snprintf(path, sizeof(path), "%s/vms/alpha/vm.json", state_dir);
    f = fopen(path, "w");
    fputs("{\"version\": 1, \"phase\": \"rea", f);
    fclose(f);

    ck_assert_int_eq(vmm_list(&list, ctx), 0);
    ck_assert_uint_eq(vmm_vm_list_count(list), 2);
    ck_assert_str_eq(vmm_vm_list_name(list, 0), "alpha");
    ck_assert_ptr_null(vmm_vm_list_vm(list, 0));
    ck_assert_ptr_nonnull(strstr(vmm_vm_list_error(list, 0), path));
    ck_assert_str_eq(vmm_vm_list_name(list, 1), "beta");
    ck_assert_ptr_nonnull(vmm_vm_list_vm(list, 1));
    ck_assert_ptr_null(vmm_vm_list_error(list, 1));
    ck_assert_ptr_null(vmm_vm_list_name(list, 2));
    vmm_vm_list_free(list);

    ck_assert_int_eq(vmm_open(&a, ctx, "alpha"), VMM_ECORRUPT);
    ck_assert_vmm_error(VMM_ECORRUPT, path);
    vmm_vm_free(a);
    vmm_vm_free(b);

    /* Only a forced delete removes what it cannot read. */
    ck_assert_int_eq(vmm_delete_by_name(ctx, "alpha", 0), VMM_ECORRUPT);
    ck_assert_vmm_error(VMM_ECORRUPT, "without force");
    ck_assert_int_eq(access(path, F_OK), 0);
    ck_assert_int_eq(vmm_delete_by_name(ctx, "alpha", VMM_DELETE_FORCE), 0);
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(vmm_delete_by_name(ctx, "alpha", VMM_DELETE_FORCE),
                     VMM_ENOTFOUND);
}
END_TEST

/* A running VM whose record is lost is still ended by a forced delete. */
START_TEST(forced_delete_of_unreadable_running_vm)
{
    vmm_vm_spec s = base_spec();
    char path[256];
    vmm_vm *vm;
    pid_t pid;

    ck_assert_int_eq(vmm_create(&vm, ctx, "lost", &s), 0);
    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    pid = vmm_vm_pid(vm);
    vmm_vm_free(vm);
    snprintf(path, sizeof(path), "%s/vms/lost/vm.json", state_dir);
    ck_assert_int_eq(truncate(path, 10), 0);

    ck_assert_int_eq(vmm_delete_by_name(ctx, "lost", VMM_DELETE_FORCE), 0);
    ck_assert(!process_alive(pid));
    snprintf(path, sizeof(path), "%s/vms/lost", state_dir);
    ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

/* A delete that was interrupted is finished by the next one: success. */
START_TEST(delete_finishes_an_interrupted_delete)
{
    vmm_vm_spec s = base_spec();
    char path[256];
    vmm_vm *vm;

    ck_assert_int_eq(vmm_create(&vm, ctx, "halfgone", &s), 0);
    vmm_vm_free(vm);
    run("sed -i 's/\"phase\": \"ready\"/\"phase\": \"deleting\"/' "
        "%s/vms/halfgone/vm.json", state_dir);
    ck_assert_int_eq(vmm_delete_by_name(ctx, "halfgone", 0), 0);
    snprintf(path, sizeof(path), "%s/vms/halfgone", state_dir);
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(vmm_delete_by_name(ctx, "halfgone", 0), VMM_ENOTFOUND);
}
END_TEST

/* A readable VM goes the ordinary way: running needs force. */
START_TEST(delete_by_name_of_readable_vm)
{
    vmm_vm_spec s = base_spec();
    vmm_vm *vm;

    ck_assert_int_eq(vmm_create(&vm, ctx, "plain", &s), 0);
    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    vmm_vm_free(vm);
    ck_assert_int_eq(vmm_delete_by_name(ctx, "plain", 0), VMM_ESTATE);
    ck_assert_int_eq(vmm_delete_by_name(ctx, "plain", VMM_DELETE_FORCE), 0);
    ck_assert_int_eq(vmm_open(&vm, ctx, "plain"), VMM_ENOTFOUND);
    ck_assert_int_eq(vmm_delete_by_name(ctx, "bad/name", 0), VMM_EINVAL);
    ck_assert_int_eq(vmm_delete_by_name(NULL, "plain", 0), VMM_EINVAL);
    ck_assert_int_eq(vmm_delete_by_name(ctx, "plain", 0x10), VMM_EINVAL);
}
END_TEST

START_TEST(interrupted_create_is_settled)
{
    vmm_vm_spec s = base_spec();
    char path[256];
    vmm_vm *vm;

    /* What a create killed before its last record write leaves. */
    ck_assert_int_eq(vmm_create(&vm, ctx, "ghost", &s), 0);
    vmm_vm_free(vm);
    run("sed -i 's/\"phase\": \"ready\"/\"phase\": \"creating\"/' "
        "%s/vms/ghost/vm.json && grep -q creating %s/vms/ghost/vm.json",
        state_dir, state_dir);

    ck_assert_int_eq(vmm_open(&vm, ctx, "ghost"), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "interrupted create");
    snprintf(path, sizeof(path), "%s/vms/ghost", state_dir);
    ck_assert_int_eq(access(path, F_OK), -1);

    /* A directory with no record at all is settled the same way. */
    run("mkdir -p %s", path);
    ck_assert_int_eq(vmm_open(&vm, ctx, "ghost"), VMM_ENOTFOUND);
    ck_assert_int_eq(access(path, F_OK), -1);

    /* And the name is free again. */
    ck_assert_int_eq(vmm_create(&vm, ctx, "ghost", &s), 0);
    vmm_vm_free(vm);
}
END_TEST

START_TEST(create_twice_same_name)
{
    vmm_vm_spec s = base_spec();
    vmm_vm *a, *b = (vmm_vm *)0x1;

    ck_assert_int_eq(vmm_create(&a, ctx, "twin", &s), 0);
    ck_assert_int_eq(vmm_create(&b, ctx, "twin", &s), VMM_EEXIST);
    ck_assert_vmm_error(VMM_EEXIST, "twin");
    ck_assert_ptr_eq(b, (vmm_vm *)0x1);
    vmm_vm_free(a);
}
END_TEST

/* Every bad input fails naming the problem, and creates nothing. */
START_TEST(bad_input_leaves_nothing)
{
    static char long_name[65];
    const char *bad_names[] = {
        "", ".", "..", "a/b", "-dash", ".dot", "tab\there", "caf\xc3\xa9",
        long_name, "sp ace",
    };
    char missing[160], unreadable[160], vms[160];
    vmm_vm *vm = NULL;

    memset(long_name, 'n', 64);
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        vmm_vm_spec s = base_spec();

        ck_assert_int_eq(vmm_create(&vm, ctx, bad_names[i], &s), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "VM name");
    }

    snprintf(missing, sizeof(missing), "%s/none", dir);
    snprintf(unreadable, sizeof(unreadable), "%s", dir); /* a directory */
    {
        vmm_vm_spec s = base_spec();

        s.kernel = missing;
        ck_assert_int_eq(vmm_create(&vm, ctx, "k", &s), VMM_ENOTFOUND);
        ck_assert_vmm_error(VMM_ENOTFOUND, missing);
        s.kernel = unreadable;
        ck_assert_int_eq(vmm_create(&vm, ctx, "k", &s), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "not a regular file");
        s = base_spec();
        s.base_image = missing;
        ck_assert_int_eq(vmm_create(&vm, ctx, "k", &s), VMM_ENOTFOUND);
        ck_assert_vmm_error(VMM_ENOTFOUND, "base image");
        s.base_image = kernel; /* not ext4 */
        ck_assert_int_eq(vmm_create(&vm, ctx, "k", &s), VMM_EDISK);
        s = base_spec();
        s.kernel = NULL;
        ck_assert_int_eq(vmm_create(&vm, ctx, "k", &s), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "kernel");
    }
    {
        const uint32_t bad_vcpus[] = { 3, 33, 64, 31 };

        for (size_t i = 0; i < 4; i++) {
            vmm_vm_spec s = base_spec();

            s.vcpus = bad_vcpus[i];
            ck_assert_int_eq(vmm_create(&vm, ctx, "v", &s), VMM_EINVAL);
            ck_assert_vmm_error(VMM_EINVAL, "vcpus");
        }
    }
    {
        vmm_vm_spec s = base_spec();

        s.memory_mib = 127;
        ck_assert_int_eq(vmm_create(&vm, ctx, "m", &s), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "memory");
        s = base_spec();
        s.disk_size = 4096;
        ck_assert_int_eq(vmm_create(&vm, ctx, "d", &s), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "smaller");
        s = base_spec();
        s.flags = 0x80;
        ck_assert_int_eq(vmm_create(&vm, ctx, "f", &s), VMM_EINVAL);
        s = base_spec();
        s.overlay = 7;
        ck_assert_int_eq(vmm_create(&vm, ctx, "o", &s), VMM_EINVAL);
        s = base_spec();
        s.flags = VMM_VM_OWN_NETNS;
        s.netns = "other";
        ck_assert_int_eq(vmm_create(&vm, ctx, "n", &s), VMM_EINVAL);
        s = base_spec();
        s.boot_args = "console=ttyS0\nquiet";
        ck_assert_int_eq(vmm_create(&vm, ctx, "b", &s), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "boot_args");
        s = base_spec();
        s.ssh_authorized_keys = "ssh-ed25519 AAAA \xff\xfe";
        ck_assert_int_eq(vmm_create(&vm, ctx, "k", &s), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "ssh_authorized_keys");
        s = base_spec();
        s.kernel = "/tmp/\xffkernel";
        ck_assert_int_eq(vmm_create(&vm, ctx, "k", &s), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "kernel path");
        {
            char empty[160];

            snprintf(empty, sizeof(empty), "%s/empty", dir);
            run("touch %s", empty);
            s = base_spec();
            s.kernel = empty;
            ck_assert_int_eq(vmm_create(&vm, ctx, "k", &s), VMM_EINVAL);
            ck_assert_vmm_error(VMM_EINVAL, "is empty");
        }
        s = base_spec();
        s.netns = "libvmm-test-no-such-netns";
        ck_assert_int_eq(vmm_create(&vm, ctx, "n", &s), VMM_ENOTFOUND);
        ck_assert_vmm_error(VMM_ENOTFOUND, "libvmm-test-no-such-netns");
    }
    ck_assert_ptr_null(vm);

    /* Nothing was created: no VM directory, no temp file. */
    snprintf(vms, sizeof(vms), "%s/vms", state_dir);
    ck_assert_int_le(entries(vms), 0);
}
END_TEST

START_TEST(unknown_vm_and_bad_set)
{
    vmm_vm_spec s = base_spec();
    vmm_vm *vm;

    ck_assert_int_eq(vmm_open(&vm, ctx, "nobody"), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "nobody");

    ck_assert_int_eq(vmm_create(&vm, ctx, "setme", &s), 0);
    ck_assert_int_eq(vmm_set_vcpus(vm, 0), VMM_EINVAL);
    ck_assert_int_eq(vmm_set_vcpus(vm, 5), VMM_EINVAL);
    ck_assert_int_eq(vmm_set_memory(vm, 100), VMM_EINVAL);
    ck_assert_uint_eq(vmm_vm_vcpus(vm), 1);
    ck_assert_int_eq(vmm_stop(vm, 0), 0); /* stopping a stopped VM is fine */
    ck_assert_int_eq(vmm_kill(vm), 0);
    ck_assert_int_eq(vmm_delete(vm, 0x8), VMM_EINVAL);
    ck_assert_int_eq(vmm_delete(vm, 0), 0);
    ck_assert_int_eq(vmm_start(vm, NULL), VMM_ENOTFOUND);
    vmm_vm_free(vm);
}
END_TEST

START_TEST(failed_start_leaves_no_process)
{
    vmm_vm_spec s = base_spec();
    char sock[256], aside[160];
    vmm_vm *vm;

    ck_assert_int_eq(vmm_create(&vm, ctx, "faulty", &s), 0);
    setenv("FCEMU_START_FAULT", "Injected: cannot boot", 1);
    ck_assert_int_eq(vmm_start(vm, NULL), VMM_EAPI);
    unsetenv("FCEMU_START_FAULT");
    ck_assert_str_eq(vmm_error_last()->fault_message, "Injected: cannot boot");
    ck_assert_int_eq(vmm_error_last()->http_status, 400);
    ck_assert_vmm_error(VMM_EAPI, "starting VM faulty");
    ck_assert_int_eq(vmm_vm_state(vm), VMM_VM_STOPPED);
    snprintf(sock, sizeof(sock), "%s", vmm_vm_api_socket(vm));
    ck_assert_int_eq(access(sock, F_OK), -1);

    /* The kernel vanishing is named, and the next start works again.
     * Put aside in this test's own directory: a fixed path would be shared
     * with any other run of this suite on the host. */
    snprintf(aside, sizeof(aside), "%s/vmlinux.aside", dir);
    ck_assert_int_eq(rename(kernel, aside), 0);
    ck_assert_int_eq(vmm_start(vm, NULL), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "kernel");
    ck_assert_int_eq(rename(aside, kernel), 0);
    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    ck_assert_int_eq(vmm_kill(vm), 0);
    vmm_vm_free(vm);
}
END_TEST

/* Log lines of the library, for tests that check what it decided. */
static char log_text[16384];

static void capture_log(int32_t level, const char *component,
                        const char *vm_name, const char *message, void *user)
{
    size_t len = strlen(log_text);

    (void)level;
    (void)vm_name;
    (void)user;
    snprintf(log_text + len, sizeof(log_text) - len, "[%s] %s\n", component,
             message);
}

static vmm_context *logging_context(void)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_context *c;

    o.state_dir = state_dir;
    o.firecracker = getenv("FC_EMULATOR");
    o.log_fn = capture_log;
    o.log_level = VMM_LOG_DEBUG;
    ck_assert_int_eq(vmm_context_new(&c, &o), 0);
    log_text[0] = '\0';
    return c;
}

/*
 * The first start of a copy of a base image known clean patches without
 * e2fsck; every later start, and any copy of a dirty base, runs it.
 */
START_TEST(fsck_skipped_only_for_a_pristine_copy)
{
    vmm_context *c = logging_context();
    vmm_vm_spec s = base_spec();
    vmm_vm *a, *b, *d;

    ck_assert_int_eq(vmm_create(&a, c, "first", &s), 0);
    ck_assert_ptr_nonnull(strstr(log_text, "e2fsck -fn"));
    ck_assert_ptr_nonnull(strstr(log_text, ": clean"));

    /* The base's verdict is kept: a second copy does not check again. */
    log_text[0] = '\0';
    ck_assert_int_eq(vmm_create(&b, c, "second", &s), 0);
    ck_assert_ptr_null(strstr(log_text, "e2fsck -fn"));

    log_text[0] = '\0';
    ck_assert_int_eq(vmm_start(a, NULL), 0);
    ck_assert_ptr_nonnull(strstr(log_text, "no e2fsck before the first"));
    ck_assert_int_eq(vmm_kill(a), 0);
    log_text[0] = '\0';
    ck_assert_int_eq(vmm_start(a, NULL), 0);
    ck_assert_ptr_null(strstr(log_text, "no e2fsck before the first"));
    ck_assert_int_eq(vmm_kill(a), 0);

    /* A base that changed is checked again; a dirty one is not trusted. */
    run("debugfs -w -R 'ssv free_blocks_count 1' %s >/dev/null 2>&1",
        rootfs);
    log_text[0] = '\0';
    ck_assert_int_eq(vmm_create(&d, c, "dirty", &s), 0);
    ck_assert_ptr_nonnull(strstr(log_text, "not clean"));
    log_text[0] = '\0';
    ck_assert_int_eq(vmm_start(d, NULL), 0);
    ck_assert_ptr_null(strstr(log_text, "no e2fsck before the first"));
    ck_assert_ptr_nonnull(strstr(log_text, "e2fsck repaired"));
    ck_assert_int_eq(vmm_kill(d), 0);

    vmm_vm_free(a);
    vmm_vm_free(b);
    vmm_vm_free(d);
    vmm_context_free(c);
}
END_TEST

/* Processes whose command line names path, the VMM's API socket. */
static int vmms_serving(const char *path)
{
    char cmd[512], out[64] = "";
    FILE *f;

    snprintf(cmd, sizeof(cmd), "pgrep -cf -- '--api-sock %s( |$)'", path);
    f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    if (fgets(out, sizeof(out), f) == NULL)
        out[0] = '\0';
    pclose(f);
    return atoi(out);
}

/*
 * A program killed while its VMM comes up leaves a VMM nobody may have
 * recorded and that serves no socket yet: the next look at the VM finds
 * it and ends it, whenever the kill fell.
 */
START_TEST(start_killed_midway_leaves_no_vmm)
{
    static const int kill_after_ms[] = { 1, 5, 20, 60, 150 };
    vmm_vm_spec s = base_spec();
    char sock[256];
    vmm_vm *vm;

    ck_assert_int_eq(vmm_create(&vm, ctx, "midway", &s), 0);
    snprintf(sock, sizeof(sock), "%s", vmm_vm_api_socket(vm));
    setenv("FCEMU_DELAY_BIND_MS", "400", 1);
    for (size_t i = 0; i < sizeof(kill_after_ms) / sizeof(int); i++) {
        pid_t child = fork();

        if (child == 0)
            _exit(vmm_start(vm, NULL) == 0 ? 0 : 1);
        usleep((useconds_t)kill_after_ms[i] * 1000);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);

        /* Past the bind: the VMM, if any, now answers "Not started". */
        usleep(600 * 1000);
        ck_assert_int_eq(vmm_vm_refresh(vm), 0);
        ck_assert_msg(vmm_vm_state(vm) == VMM_VM_STOPPED,
                      "killed after %d ms: state %d", kill_after_ms[i],
                      vmm_vm_state(vm));
        ck_assert_msg(vmms_serving(sock) == 0, "killed after %d ms: a VMM "
                      "for %s lives on", kill_after_ms[i], sock);
    }
    unsetenv("FCEMU_DELAY_BIND_MS");

    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    ck_assert_int_eq(vmms_serving(sock), 1);
    ck_assert_int_eq(vmm_delete(vm, VMM_DELETE_FORCE), 0);
    vmm_vm_free(vm);
}
END_TEST

static int copy_reports, wait_reports;
static uint64_t last_copy_done, last_copy_total, last_wait_total;

static void capture_progress(const char *vm_name, const char *stage,
                             uint64_t done, uint64_t total, void *user)
{
    (void)vm_name;
    (void)user;
    if (strcmp(stage, "copy") == 0) {
        copy_reports++;
        last_copy_done = done;
        last_copy_total = total;
    } else if (strcmp(stage, "wait") == 0) {
        wait_reports++;
        last_wait_total = total;
        ck_assert_uint_le(done, total);
    }
}

/* Copying a disk and waiting for a slow VMM report progress. */
START_TEST(progress_of_copy_and_wait)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_start_options so = VMM_START_OPTIONS_INIT;
    vmm_vm_spec s = base_spec();
    vmm_context *c;
    vmm_vm *vm;

    o.state_dir = state_dir;
    o.firecracker = getenv("FC_EMULATOR");
    o.progress_fn = capture_progress;
    ck_assert_int_eq(vmm_context_new(&c, &o), 0);
    ck_assert_int_eq(vmm_create(&vm, c, "progress", &s), 0);
    ck_assert_int_gt(copy_reports, 0);
    ck_assert_uint_eq(last_copy_done, last_copy_total);
    ck_assert_uint_eq(last_copy_total, 32u << 20);

    setenv("FCEMU_DELAY_BIND_MS", "800", 1);
    so.timeout_ms = 5000;
    ck_assert_int_eq(vmm_start(vm, &so), 0);
    unsetenv("FCEMU_DELAY_BIND_MS");
    ck_assert_int_ge(wait_reports, 2);
    ck_assert_uint_eq(last_wait_total, 5000);

    ck_assert_int_eq(vmm_delete(vm, VMM_DELETE_FORCE), 0);
    vmm_vm_free(vm);
    vmm_context_free(c);
}
END_TEST

/*
 * A copy is flushed at its first start; one the host's restart may have
 * cut short is refused, never booted.
 */
START_TEST(unflushed_copy_after_host_restart_is_refused)
{
    vmm_vm_spec s = base_spec();
    char sock[256];
    vmm_vm *vm;

    ck_assert_int_eq(vmm_create(&vm, ctx, "reboot", &s), 0);
    snprintf(sock, sizeof(sock), "%s", vmm_vm_api_socket(vm));
    run("grep -q '\"unflushed\": true' %s/vms/reboot/vm.json && "
        "sed -i 's/\"boot_id\": \"[^\"]*\"/\"boot_id\": \"another-boot\"/' "
        "%s/vms/reboot/vm.json", state_dir, state_dir);
    ck_assert_int_eq(vmm_start(vm, NULL), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "host restarted");
    ck_assert_int_eq(vmm_vm_state(vm), VMM_VM_STOPPED);
    ck_assert_int_eq(access(sock, F_OK), -1);
    ck_assert_int_eq(vmm_delete(vm, 0), 0);
    vmm_vm_free(vm);

    /* The same boot: flushed at the first start, and recorded so. */
    ck_assert_int_eq(vmm_create(&vm, ctx, "sameboot", &s), 0);
    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    run("grep -q '\"unflushed\": false' %s/vms/sameboot/vm.json",
        state_dir);
    ck_assert_int_eq(vmm_delete(vm, VMM_DELETE_FORCE), 0);
    vmm_vm_free(vm);
}
END_TEST

/* A handle keeps its context alive after the caller releases it. */
START_TEST(handle_outlives_context)
{
    vmm_context *c = logging_context();
    vmm_vm_spec s = base_spec();
    vmm_vm *vm;

    ck_assert_int_eq(vmm_create(&vm, c, "orphan", &s), 0);
    vmm_context_free(c);
    log_text[0] = '\0';
    ck_assert_int_eq(vmm_start(vm, NULL), 0);
    ck_assert_ptr_nonnull(strstr(log_text, "started VM orphan"));
    ck_assert_int_eq(vmm_vm_refresh(vm), 0);
    ck_assert_int_eq(vmm_vm_state(vm), VMM_VM_RUNNING);
    ck_assert_int_eq(vmm_delete(vm, VMM_DELETE_FORCE), 0);
    vmm_vm_free(vm);
}
END_TEST

START_TEST(misuse)
{
    vmm_vm_spec s = base_spec();
    vmm_vm_list *list = (vmm_vm_list *)0x1;
    vmm_vm *vm = (vmm_vm *)0x1;

    ck_assert_int_eq(vmm_create(NULL, ctx, "x", &s), VMM_EINVAL);
    ck_assert_int_eq(vmm_create(&vm, NULL, "x", &s), VMM_EINVAL);
    ck_assert_int_eq(vmm_create(&vm, ctx, NULL, &s), VMM_EINVAL);
    ck_assert_int_eq(vmm_create(&vm, ctx, "x", NULL), VMM_EINVAL);
    s.size = 2;
    ck_assert_int_eq(vmm_create(&vm, ctx, "x", &s), VMM_EINVAL);
    ck_assert_ptr_eq(vm, (vmm_vm *)0x1);
    ck_assert_int_eq(vmm_open(NULL, ctx, "x"), VMM_EINVAL);
    ck_assert_int_eq(vmm_open(&vm, NULL, "x"), VMM_EINVAL);
    ck_assert_int_eq(vmm_list(NULL, ctx), VMM_EINVAL);
    ck_assert_int_eq(vmm_list(&list, NULL), VMM_EINVAL);
    ck_assert_ptr_eq(list, (vmm_vm_list *)0x1);
    ck_assert_int_eq(vmm_start(NULL, NULL), VMM_EINVAL);
    ck_assert_int_eq(vmm_stop(NULL, 0), VMM_EINVAL);
    ck_assert_int_eq(vmm_kill(NULL), VMM_EINVAL);
    ck_assert_int_eq(vmm_delete(NULL, 0), VMM_EINVAL);
    ck_assert_int_eq(vmm_pause(NULL), VMM_EINVAL);
    ck_assert_int_eq(vmm_resume(NULL), VMM_EINVAL);
    ck_assert_int_eq(vmm_set_vcpus(NULL, 2), VMM_EINVAL);
    ck_assert_int_eq(vmm_set_memory(NULL, 256), VMM_EINVAL);
    ck_assert_int_eq(vmm_vm_refresh(NULL), VMM_EINVAL);
    vmm_vm_free(NULL);
    vmm_vm_list_free(NULL);
    ck_assert_ptr_null(vmm_vm_name(NULL));
    ck_assert_int_eq(vmm_vm_state(NULL), VMM_VM_STOPPED);
    ck_assert_uint_eq(vmm_vm_list_count(NULL), 0);
    ck_assert_ptr_null(vmm_vm_list_vm(NULL, 0));
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("vm");
    TCase *tc = tcase_create("vm");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lifecycle);
    tcase_add_test(tc, killed_from_outside_reads_stopped);
    tcase_add_test(tc, list_survives_a_corrupt_record);
    tcase_add_test(tc, forced_delete_of_unreadable_running_vm);
    tcase_add_test(tc, delete_by_name_of_readable_vm);
    tcase_add_test(tc, delete_finishes_an_interrupted_delete);
    tcase_add_test(tc, interrupted_create_is_settled);
    tcase_add_test(tc, create_twice_same_name);
    tcase_add_test(tc, bad_input_leaves_nothing);
    tcase_add_test(tc, unknown_vm_and_bad_set);
    tcase_add_test(tc, failed_start_leaves_no_process);
    tcase_add_test(tc, fsck_skipped_only_for_a_pristine_copy);
    tcase_add_test(tc, handle_outlives_context);
    tcase_add_test(tc, unflushed_copy_after_host_restart_is_refused);
    tcase_add_test(tc, progress_of_copy_and_wait);
    tcase_add_test(tc, start_killed_midway_leaves_no_vmm);
    tcase_add_test(tc, misuse);
    suite_add_tcase(s, tc);
    return s;
}
