/*
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_TEST_CHECK_MAIN_H
#define LIBVMM_TEST_CHECK_MAIN_H

#include <check.h>
#include <string.h>

#include "libvmm/libvmm.h"

/* Defined by each test program: the suite it runs. */
Suite *suite_make(void);

/* Asserts that the last libvmm call failed with `code` and a message
 * containing `needle`. */
#define ck_assert_vmm_error(want, needle) do { \
        const vmm_error *e_ = vmm_error_last(); \
        ck_assert_int_eq(e_->code, (want)); \
        ck_assert_msg(strstr(e_->message, (needle)) != NULL, \
                      "message \"%s\" lacks \"%s\"", e_->message, (needle)); \
    } while (0)

#endif
