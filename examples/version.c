/*
 * Prints the version of libvmm a program is built and run against, and
 * the state directory a default context would use.
 *
 * Build: cc version.c $(pkg-config --cflags --libs libvmm)
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include <libvmm/libvmm.h>

int main(void)
{
    vmm_context *ctx;
    uint32_t number;

    printf("libvmm %s (built against %s)\n", vmm_version(&number),
           VMM_VERSION_STRING);
    if (vmm_context_new(&ctx, NULL) < 0) {
        fprintf(stderr, "version: %s\n", vmm_error_last()->message);
        return 1;
    }
    printf("state directory: %s\n", vmm_context_state_dir(ctx));
    vmm_context_free(ctx);
    return number == VMM_VERSION_NUMBER ? 0 : 1;
}
