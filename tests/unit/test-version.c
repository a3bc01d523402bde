/*
 * Suite "version": compile-time and run-time versions agree.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "check-main.h"

START_TEST(runtime_matches_headers)
{
    uint32_t number = 0;
    char expect[32];

    ck_assert_str_eq(vmm_version(&number), VMM_VERSION_STRING);
    ck_assert_uint_eq(number, VMM_VERSION_NUMBER);
    snprintf(expect, sizeof(expect), "%d.%d.%d", VMM_VERSION_MAJOR,
             VMM_VERSION_MINOR, VMM_VERSION_PATCH);
    ck_assert_str_eq(VMM_VERSION_STRING, expect);
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("version");
    TCase *tc = tcase_create("version");

    tcase_add_test(tc, runtime_matches_headers);
    suite_add_tcase(s, tc);
    return s;
}
