/*
 * Suite "misuse": NULL, oversized and malformed arguments to public calls
 * give an error naming the argument, never a crash. Only the public API
 * is used here.
 *
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <string.h>

#include "check-main.h"

static vmm_context *sentinel(void)
{
    return (vmm_context *)(uintptr_t)0x5a5a;
}

START_TEST(context_null_out)
{
    ck_assert_int_eq(vmm_context_new(NULL, NULL), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "out is NULL");
}
END_TEST

START_TEST(context_bad_options)
{
    static const struct {
        const char *state_dir;
        const char *firecracker;
        const char *net_pool;
        int32_t log_level;
        uint32_t flags;
        const char *needle;
    } cases[] = {
        { "relative/dir", NULL, NULL, 0, 0, "absolute" },
        { "", NULL, NULL, 0, 0, "absolute" },
        { NULL, "", NULL, 0, 0, "firecracker" },
        { NULL, NULL, "172.16.0.0", 0, 0, "net_pool" },
        { NULL, NULL, "172.16.0.0/29", 0, 0, "net_pool" },
        { NULL, NULL, "172.16.0.1/16", 0, 0, "host bits" },
        { NULL, NULL, "300.1.1.1/16", 0, 0, "net_pool" },
        { NULL, NULL, "1.2.3.4/", 0, 0, "net_pool" },
        { NULL, NULL, "1.2.3.0/24x", 0, 0, "net_pool" },
        { NULL, NULL, NULL, 9, 0, "log_level" },
        { NULL, NULL, NULL, -1, 0, "log_level" },
        { NULL, NULL, NULL, 0, 1, "flags" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
        vmm_context *ctx = sentinel();

        o.state_dir = cases[i].state_dir;
        o.firecracker = cases[i].firecracker;
        o.net_pool = cases[i].net_pool;
        o.log_level = cases[i].log_level;
        o.flags = cases[i].flags;
        ck_assert_int_eq(vmm_context_new(&ctx, &o), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, cases[i].needle);
        ck_assert_ptr_eq(ctx, sentinel());
    }
}
END_TEST

START_TEST(context_oversized_strings)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    static char long_path[PATH_MAX * 2];
    vmm_context *ctx = sentinel();

    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    o.state_dir = long_path;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "state_dir");

    o.state_dir = NULL;
    o.firecracker = long_path;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), VMM_EINVAL);
    ck_assert_ptr_eq(ctx, sentinel());
}
END_TEST

START_TEST(context_bad_size)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_context *ctx = sentinel();

    o.size = 0;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "size");
    ck_assert_ptr_eq(ctx, sentinel());
}
END_TEST

START_TEST(null_handles)
{
    vmm_context_free(NULL);
    ck_assert_ptr_null(vmm_context_state_dir(NULL));
    ck_assert_ptr_null(vmm_context_firecracker(NULL));
    ck_assert_ptr_nonnull(vmm_version(NULL));
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("misuse");
    TCase *tc = tcase_create("context");

    tcase_add_test(tc, context_null_out);
    tcase_add_test(tc, context_bad_options);
    tcase_add_test(tc, context_oversized_strings);
    tcase_add_test(tc, context_bad_size);
    tcase_add_test(tc, null_handles);
    suite_add_tcase(s, tc);
    return s;
}
