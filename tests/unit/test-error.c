/*
 * Suite "error": the last-error record and error strings.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "check-main.h"
#include "internal.h"

START_TEST(set_and_read)
{
    int r = error_set(VMM_ENOTFOUND, "VM \"%s\" not found", "web1");
    const vmm_error *e = vmm_error_last();

    ck_assert_int_eq(r, VMM_ENOTFOUND);
    ck_assert_int_eq(e->code, VMM_ENOTFOUND);
    ck_assert_str_eq(e->message, "VM \"web1\" not found");
    ck_assert_ptr_null(e->fault_message);
    ck_assert_int_eq(e->http_status, 0);
}
END_TEST

START_TEST(os_error_appends_strerror)
{
    error_set_os(VMM_EIO, ENOENT, "opening %s", "/nope");
    ck_assert_int_eq(vmm_error_last()->os_error, ENOENT);
    ck_assert_str_eq(vmm_error_last()->message,
                     "opening /nope: No such file or directory");
}
END_TEST

START_TEST(api_error_keeps_fault_verbatim)
{
    const char *fault = "Invalid kernel path: /x";
    const vmm_error *e;

    error_set_api(400, fault, "PUT /boot-source");
    e = vmm_error_last();
    ck_assert_int_eq(e->code, VMM_EAPI);
    ck_assert_int_eq(e->http_status, 400);
    ck_assert_str_eq(e->fault_message, fault);
    ck_assert_ptr_nonnull(strstr(e->message, fault));
}
END_TEST

START_TEST(reset_on_public_call)
{
    vmm_context *ctx;

    error_set(VMM_EINVAL, "something");
    ck_assert_int_eq(vmm_context_new(&ctx, NULL), 0);
    ck_assert_int_eq(vmm_error_last()->code, 0);
    ck_assert_str_eq(vmm_error_last()->message, "");
    vmm_context_free(ctx);
}
END_TEST

/* Getters and releases may be called while an error is being read. */
START_TEST(getters_keep_the_record)
{
    vmm_context *ctx;

    ck_assert_int_eq(vmm_context_new(&ctx, NULL), 0);
    error_set(VMM_EBUSY, "kept");
    vmm_version(NULL);
    vmm_strerror(VMM_EIO);
    vmm_context_state_dir(ctx);
    vmm_context_firecracker(NULL);
    vmm_context_free(ctx);
    ck_assert_int_eq(vmm_error_last()->code, VMM_EBUSY);
    ck_assert_str_eq(vmm_error_last()->message, "kept");
}
END_TEST

START_TEST(prefix)
{
    error_set(VMM_EDISK, "e2fsck exited 8");
    error_prefix("starting %s: ", "db");
    ck_assert_str_eq(vmm_error_last()->message, "starting db: e2fsck exited 8");
    ck_assert_int_eq(vmm_error_last()->code, VMM_EDISK);
}
END_TEST

START_TEST(long_message_truncated_not_overflowing)
{
    char big[4096];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    error_set(VMM_EINVAL, "%s", big);
    ck_assert_uint_lt(strlen(vmm_error_last()->message), sizeof(big));
    error_set_api(500, big, "%s", big);
    ck_assert_uint_lt(strlen(vmm_error_last()->fault_message), sizeof(big));
}
END_TEST

static void *other_thread(void *arg)
{
    (void)arg;
    error_set(VMM_EBUSY, "other thread");
    return NULL;
}

START_TEST(thread_local)
{
    pthread_t t;

    error_set(VMM_EINVAL, "this thread");
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(vmm_error_last()->code, VMM_EINVAL);
    ck_assert_str_eq(vmm_error_last()->message, "this thread");
}
END_TEST

START_TEST(strerror_covers_every_code)
{
    for (int c = 0; c >= VMM_ECORRUPT; c--) {
        const char *s = vmm_strerror(c);

        ck_assert_ptr_nonnull(s);
        ck_assert_str_ne(s, "unknown error");
    }
    ck_assert_str_eq(vmm_strerror(VMM_ECORRUPT - 1), "unknown error");
    ck_assert_str_eq(vmm_strerror(12345), "unknown error");
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("record");

    tcase_add_test(tc, set_and_read);
    tcase_add_test(tc, os_error_appends_strerror);
    tcase_add_test(tc, api_error_keeps_fault_verbatim);
    tcase_add_test(tc, reset_on_public_call);
    tcase_add_test(tc, getters_keep_the_record);
    tcase_add_test(tc, prefix);
    tcase_add_test(tc, long_message_truncated_not_overflowing);
    tcase_add_test(tc, thread_local);
    tcase_add_test(tc, strerror_covers_every_code);
    suite_add_tcase(s, tc);
    return s;
}
