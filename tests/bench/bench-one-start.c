/*
 * One VM's create, start and kill through the public API, against the API
 * emulator (FC_EMULATOR); run by bench-callgrind.sh under callgrind. A
 * first VM warms up (library loading, one-time set-up); the second is the
 * one measured (callgrind collects only inside vmm_* calls of VM "cg1").
 *
 * Usage: bench-one-start DIR (a scratch directory, removed by the caller)
 *
 * SPDX-License-Identifier: MIT
 */
#include "bench-util.h"
#include <libvmm/libvmm.h>

/* The measured calls go through these, so callgrind can toggle on them. */
__attribute__((noinline)) int measured_create(vmm_vm **out, vmm_context *ctx,
                                              const vmm_vm_spec *spec);
__attribute__((noinline)) int measured_start(vmm_vm *vm);
__attribute__((noinline)) int measured_kill(vmm_vm *vm);

__attribute__((noinline)) int measured_create(vmm_vm **out, vmm_context *ctx,
                                              const vmm_vm_spec *spec)
{
    return vmm_create(out, ctx, "cg1", spec);
}

__attribute__((noinline)) int measured_start(vmm_vm *vm)
{
    return vmm_start(vm, NULL);
}

__attribute__((noinline)) int measured_kill(vmm_vm *vm)
{
    return vmm_kill(vm);
}

int main(int argc, char **argv)
{
    const char *emulator = getenv("FC_EMULATOR");
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_vm_spec spec = VMM_VM_SPEC_INIT;
    char kernel[256], image[256], state[256];
    vmm_context *ctx;
    vmm_vm *vm;

    if (argc != 2 || emulator == NULL) {
        fprintf(stderr, "usage: FC_EMULATOR=... bench-one-start DIR\n");
        return 2;
    }
    if (bench_small_guest(argv[1], 32, kernel, sizeof(kernel), image,
                          sizeof(image)) < 0)
        return 1;
    snprintf(state, sizeof(state), "%s/s", argv[1]);
    o.state_dir = state;
    o.firecracker = emulator;
    spec.flags = VMM_VM_NO_NET;
    spec.kernel = kernel;
    spec.base_image = image;
    spec.overlay = VMM_OVERLAY_COPY;
    spec.memory_mib = 128;
    if (vmm_context_new(&ctx, &o) < 0)
        goto fail;
    if (vmm_create(&vm, ctx, "cg0", &spec) < 0 || vmm_start(vm, NULL) < 0 ||
        vmm_kill(vm) < 0 || vmm_delete(vm, 0) < 0)
        goto fail;
    vmm_vm_free(vm);
    if (measured_create(&vm, ctx, &spec) < 0 || measured_start(vm) < 0 ||
        measured_kill(vm) < 0 || vmm_delete(vm, 0) < 0)
        goto fail;
    vmm_vm_free(vm);
    vmm_context_free(ctx);
    return 0;

fail:
    fprintf(stderr, "bench-one-start: %s\n", vmm_error_last()->message);
    return 1;
}
