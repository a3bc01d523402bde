/*
 * Helpers of the overlay, prep and dm suites: a temp directory per test,
 * shell commands for mkfs.ext4/debugfs, and captured log messages. Each
 * of those programs #includes this file (static helpers, no own target).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_TEST_OVERLAY_FIXTURE_C
#define LIBVMM_TEST_OVERLAY_FIXTURE_C

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check-main.h"
#include "internal.h"

static char fx_dir[256];
static char fx_log[16384];

static void fx_setup(void)
{
    snprintf(fx_dir, sizeof(fx_dir), "/tmp/libvmm-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(fx_dir));
    fx_log[0] = '\0';
}

static void fx_teardown(void)
{
    char cmd[1024];

    /* Whatever a test mounted there goes first. */
    snprintf(cmd, sizeof(cmd), "grep -q ' %s/' /proc/mounts && "
             "umount -l %s/* 2>/dev/null; rm -rf %s", fx_dir, fx_dir,
             fx_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleaning %s failed\n", fx_dir);
}

/* Runs a shell command (sh -c); returns its exit status. */
static int PRINTF_LIKE(1, 2) fx_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs a shell command and returns its output (caller frees). */
static char *PRINTF_LIKE(1, 2) fx_out(const char *fmt, ...)
{
    char cmd[4096];
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    va_list ap;
    FILE *p;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    pclose(p);
    return buf;
}

static void fx_log_fn(int level, const char *component, const char *vm,
                      const char *message, void *user)
{
    size_t len = strlen(fx_log);

    snprintf(fx_log + len, sizeof(fx_log) - len, "%d %s %s: %s\n", level,
             component, vm ? vm : "-", message);
}

static vmm_context *fx_context(void)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_context *ctx = NULL;

    o.log_fn = fx_log_fn;
    o.log_level = VMM_LOG_DEBUG;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);
    return ctx;
}

/*
 * Makes IMAGE (under fx_dir) of `size` from a tree made by `populate`, a
 * shell snippet run inside the tree's directory.
 */
static void fx_image(const char *image, const char *size,
                     const char *populate)
{
    ck_assert_int_eq(fx_sh("set -e; cd %s; rm -rf tree-%s; mkdir tree-%s; "
                           "cd tree-%s; mkdir -p etc root; "
                           "echo base > etc/hostname; %s; cd ..; "
                           "mkfs.ext4 -q -F -d tree-%s %s %s >/dev/null",
                           fx_dir, image, image, image, populate, image,
                           image, size), 0);
}

#endif
