/*
 * Suite "context": creating contexts, their settings and logging.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "check-main.h"
#include "internal.h"

START_TEST(defaults)
{
    vmm_context *ctx = NULL;

    ck_assert_int_eq(vmm_context_new(&ctx, NULL), 0);
    ck_assert_str_eq(vmm_context_state_dir(ctx), "/var/lib/libvmm");
    ck_assert_str_eq(vmm_context_firecracker(ctx), "firecracker");
    ck_assert_uint_eq(ctx->api_timeout_ms, 5000);
    ck_assert_int_eq(ctx->log_level, VMM_LOG_INFO);
    ck_assert_uint_eq(ctx->net_pool_addr, 0xac100000u);
    ck_assert_uint_eq(ctx->net_pool_prefix, 16);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(settings_are_copied)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    char dir[] = "/tmp/state//";
    vmm_context *ctx;

    o.state_dir = dir;
    o.firecracker = "/opt/fc/firecracker";
    o.net_pool = "10.200.0.0/24";
    o.api_timeout_ms = 250;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);
    dir[1] = 'X';
    ck_assert_str_eq(vmm_context_state_dir(ctx), "/tmp/state");
    ck_assert_str_eq(vmm_context_firecracker(ctx), "/opt/fc/firecracker");
    ck_assert_uint_eq(ctx->net_pool_addr, 0x0ac80000u);
    ck_assert_uint_eq(ctx->net_pool_prefix, 24);
    ck_assert_uint_eq(ctx->api_timeout_ms, 250);
    vmm_context_free(ctx);
}
END_TEST

struct log_capture {
    int calls;
    int level;
    char component[32];
    char vm[32];
    char message[256];
};

static void capture(int32_t level, const char *component, const char *vm,
                    const char *message, void *user)
{
    struct log_capture *c = user;

    c->calls++;
    c->level = level;
    snprintf(c->component, sizeof(c->component), "%s", component);
    snprintf(c->vm, sizeof(c->vm), "%s", vm ? vm : "(none)");
    snprintf(c->message, sizeof(c->message), "%s", message);
}

START_TEST(log_callback_and_level)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    struct log_capture cap = {0};
    vmm_context *ctx;

    o.log_fn = capture;
    o.log_user = &cap;
    o.log_level = VMM_LOG_WARNING;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);

    log_info(ctx, "overlay", "vm1", "picked %s", "copy");
    ck_assert_int_eq(cap.calls, 0);

    log_warning(ctx, "prep", "vm1", "e2fsck repaired %d things", 3);
    ck_assert_int_eq(cap.calls, 1);
    ck_assert_int_eq(cap.level, VMM_LOG_WARNING);
    ck_assert_str_eq(cap.component, "prep");
    ck_assert_str_eq(cap.vm, "vm1");
    ck_assert_str_eq(cap.message, "e2fsck repaired 3 things");

    log_error(ctx, "vmm", NULL, "x");
    ck_assert_str_eq(cap.vm, "(none)");
    vmm_context_free(ctx);
}
END_TEST

START_TEST(silent_without_callback)
{
    vmm_context *ctx;

    ck_assert_int_eq(vmm_context_new(&ctx, NULL), 0);
    log_error(ctx, "vmm", NULL, "nobody hears this");
    log_error(NULL, "vmm", NULL, "nor this");
    vmm_context_free(ctx);
}
END_TEST

/* A program built against older headers passes a shorter struct. */
START_TEST(older_smaller_options)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_context *ctx;

    o.size = offsetof(vmm_context_options, log_fn);
    o.state_dir = "/srv/vms";
    o.log_level = 77; /* beyond the old size: never read */
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);
    ck_assert_str_eq(vmm_context_state_dir(ctx), "/srv/vms");
    ck_assert_int_eq(ctx->log_level, VMM_LOG_INFO);
    vmm_context_free(ctx);
}
END_TEST

/* A newer program's struct is fine while its extra fields are unset. */
START_TEST(newer_larger_options)
{
    struct {
        vmm_context_options o;
        uint64_t future;
    } big;
    vmm_context *ctx = NULL;

    memset(&big, 0, sizeof(big));
    big.o.size = sizeof(big);
    ck_assert_int_eq(vmm_context_new(&ctx, &big.o), 0);
    vmm_context_free(ctx);

    ctx = NULL;
    big.future = 1;
    ck_assert_int_eq(vmm_context_new(&ctx, &big.o), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "newer libvmm");
    ck_assert_ptr_null(ctx);
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("context");
    TCase *tc = tcase_create("context");

    tcase_add_test(tc, defaults);
    tcase_add_test(tc, settings_are_copied);
    tcase_add_test(tc, log_callback_and_level);
    tcase_add_test(tc, silent_without_callback);
    tcase_add_test(tc, older_smaller_options);
    tcase_add_test(tc, newer_larger_options);
    suite_add_tcase(s, tc);
    return s;
}
