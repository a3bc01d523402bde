/*
 * Benchmark: memory. Peak RSS of vmctl (VMCTL) creating, starting and
 * listing 50 VMs against the API emulator (FC_EMULATOR), and the heap
 * libvmm holds per open VM handle.
 *
 * Peak RSS is GNU time's %M (the child's ru_maxrss). It is measured through
 * /usr/bin/time, a small program, because a child's ru_maxrss starts from
 * the RSS of the process that forked it; `time true` is printed as the
 * floor. Target: under 8 MiB.
 *
 * Heap per handle: mallinfo2()'s bytes in use before and after opening 50
 * handles (vmm_open) of running VMs, and before and after vmm_list() of
 * them, divided by 50. Target: under 16 KiB.
 *
 * VMs have --no-net (VMM_VM_NO_NET): no tap or netlink needed.
 *
 * SPDX-License-Identifier: MIT
 */
#include <malloc.h>

#include "bench-util.h"
#include <libvmm/libvmm.h>

#define VMS 50
#define RSS_TARGET_KIB (8 * 1024)
#define HEAP_TARGET_BYTES (16 * 1024)

static char dir[64];

/* Peak RSS in KiB of the command, via /usr/bin/time; -1 when it failed. */
static long peak_rss(const char *cmd)
{
    char line[4096], out[128];
    long kib = -1;
    FILE *f;

    snprintf(out, sizeof(out), "%s/rss", dir);
    snprintf(line, sizeof(line), "/usr/bin/time -f %%M -o %s %s "
             ">/dev/null 2>&1", out, cmd);
    if (bench_sh(line) != 0)
        return -1;
    f = fopen(out, "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld", &kib) != 1)
        kib = -1;
    fclose(f);
    return kib;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

static void fail(const char *what)
{
    fprintf(stderr, "bench-memory: %s\n", what);
    bench_rm_tree(dir);
    exit(1);
}

int main(void)
{
    const char *emulator = getenv("FC_EMULATOR");
    const char *vmctl = getenv("VMCTL");
    char kernel[128], image[128], state[128], key[128], cmd[1024];
    long floor_kib, create_max = 0, start_max = 0, list_kib;
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_vm *handles[VMS], *warm;
    vmm_vm_list *list;
    vmm_context *ctx;
    size_t before, after_open, after_list;

    if (emulator == NULL || vmctl == NULL)
        fail("FC_EMULATOR and VMCTL must be set");
    if (access("/usr/bin/time", X_OK) != 0) {
        printf("skipped: /usr/bin/time (GNU time) is missing\n");
        return 77;
    }
    snprintf(dir, sizeof(dir), "/tmp/libvmm-bm-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    if (bench_small_guest(dir, 32, kernel, sizeof(kernel), image,
                          sizeof(image)) < 0)
        fail("making the guest files");
    snprintf(state, sizeof(state), "%s/s", dir);
    snprintf(key, sizeof(key), "%s/key.pub", dir);
    snprintf(cmd, sizeof(cmd), "echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"
             "IBenchKey bench@host' > %s", key);
    if (bench_sh(cmd) != 0)
        fail("writing the key");
    setenv("LIBVMM_STATE_DIR", state, 1);
    setenv("LIBVMM_FIRECRACKER", emulator, 1);

    floor_kib = peak_rss("true");
    for (int i = 0; i < VMS; i++) {
        long kib;

        snprintf(cmd, sizeof(cmd), "%s create m%02d --kernel %s --rootfs %s "
                 "--no-net --overlay copy --memory 128 --ssh-key %s", vmctl,
                 i, kernel, image, key);
        kib = peak_rss(cmd);
        if (kib < 0)
            fail("vmctl create failed");
        create_max = kib > create_max ? kib : create_max;
    }
    for (int i = 0; i < VMS; i++) {
        long kib;

        snprintf(cmd, sizeof(cmd), "%s start m%02d", vmctl, i);
        kib = peak_rss(cmd);
        if (kib < 0)
            fail("vmctl start failed");
        start_max = kib > start_max ? kib : start_max;
    }
    snprintf(cmd, sizeof(cmd), "%s list", vmctl);
    list_kib = peak_rss(cmd);
    if (list_kib < 0)
        fail("vmctl list failed");

    o.state_dir = state;
    o.firecracker = emulator;
    if (vmm_context_new(&ctx, &o) < 0)
        fail(vmm_error_last()->message);
    /* One open first: what the library sets up once is not per handle. */
    if (vmm_open(&warm, ctx, "m00") < 0)
        fail(vmm_error_last()->message);
    vmm_vm_free(warm);
    before = heap_in_use();
    for (int i = 0; i < VMS; i++) {
        char name[16];

        snprintf(name, sizeof(name), "m%02d", i);
        if (vmm_open(&handles[i], ctx, name) < 0)
            fail(vmm_error_last()->message);
    }
    after_open = heap_in_use();
    if (vmm_list(&list, ctx) < 0)
        fail(vmm_error_last()->message);
    after_list = heap_in_use();
    vmm_vm_list_free(list);

    printf("memory, %d VMs (no network) against the emulator:\n", VMS);
    printf("  peak RSS of vmctl create: %ld KiB (max of %d), start: %ld "
           "KiB, list: %ld KiB; target %d KiB, ratio %.2f (%s)\n",
           create_max, VMS, start_max, list_kib, RSS_TARGET_KIB,
           (double)(create_max > start_max ? create_max : start_max) /
               RSS_TARGET_KIB,
           create_max < RSS_TARGET_KIB && start_max < RSS_TARGET_KIB &&
           list_kib < RSS_TARGET_KIB ? "met" : "MISSED");
    printf("  (floor: /usr/bin/time true peaks at %ld KiB)\n", floor_kib);
    printf("  heap per open handle (vmm_open): %zu bytes; target %d, ratio "
           "%.2f (%s)\n", (after_open - before) / VMS, HEAP_TARGET_BYTES,
           (double)(after_open - before) / VMS / HEAP_TARGET_BYTES,
           (after_open - before) / VMS < HEAP_TARGET_BYTES ? "met" :
                                                              "MISSED");
    printf("  heap per vmm_list() entry: %zu bytes\n",
           (after_list - after_open) / VMS);

    for (int i = 0; i < VMS; i++) {
        if (vmm_delete(handles[i], VMM_DELETE_FORCE) < 0)
            fail(vmm_error_last()->message);
        vmm_vm_free(handles[i]);
    }
    vmm_context_free(ctx);
    bench_rm_tree(dir);
    return 0;
}
