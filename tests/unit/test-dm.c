/*
 * Suite "dm": the dm-snapshot overlay driver end to end. It needs a
 * working /dev/mapper/control and root; without them the program says why
 * and exits 77, which meson reports as a skip.
 *
 * SPDX-License-Identifier: MIT
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "overlay.h"
#include "test-overlay-fixture.c"

static char vm_name[64];

static struct overlay_spec make_spec(char *base, char *dir)
{
    struct overlay_spec spec = {
        .vm_name = vm_name, .driver = OVERLAY_DM_SNAPSHOT,
        .base_image = base, .dir = dir,
    };

    snprintf(base, 512, "%s/base.img", fx_dir);
    snprintf(dir, 512, "%s/vm", fx_dir);
    mkdir(dir, 0700);
    fx_image("base.img", "64M", "echo from-base > etc/motd");
    return spec;
}

START_TEST(snapshot_life)
{
    char base[512], dir[512], dev[256], again[256], *out;
    struct overlay_spec spec = make_spec(base, dir);
    vmm_context *ctx = fx_context();
    int fd;

    ck_assert_int_eq(overlay_create(ctx, &spec), 0);
    ck_assert_int_eq(overlay_activate(ctx, &spec, dev, sizeof(dev)), 0);
    ck_assert_int_eq(strncmp(dev, "/dev/mapper/libvmm-", 19), 0);
    /* Idempotent. */
    ck_assert_int_eq(overlay_activate(ctx, &spec, again, sizeof(again)), 0);
    ck_assert_str_eq(dev, again);

    /* Writes land in the COW, not in the base. */
    out = fx_out("md5sum < %s", base);
    ck_assert_int_eq(fx_sh("echo dm-write > %s/src && debugfs -w -R "
                           "'write %s/src /etc/new' %s >/dev/null 2>&1",
                           fx_dir, fx_dir, dev), 0);
    {
        char *now = fx_out("md5sum < %s", base);
        char *cat = fx_out("debugfs -R 'cat /etc/new' %s 2>/dev/null", dev);

        ck_assert_str_eq(now, out);
        ck_assert_str_eq(cat, "dm-write\n");
        free(now);
        free(cat);
    }
    free(out);

    /* Busy: removal retries, then names the holder. */
    fd = open(dev, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(overlay_deactivate(ctx, &spec), VMM_EBUSY);
    {
        char pid[32];

        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        ck_assert_vmm_error(VMM_EBUSY, pid);
    }
    close(fd);

    ck_assert_int_eq(overlay_deactivate(ctx, &spec), 0);
    ck_assert_int_ne(access(dev, F_OK), 0);
    ck_assert_int_eq(fx_sh("losetup -j %s | grep -q .", base), 1);
    ck_assert_int_eq(overlay_destroy(ctx, &spec), 0);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(invalid_cow_refused)
{
    char base[512], dir[512], dev[256], cow[600];
    struct overlay_spec spec = make_spec(base, dir);

    ck_assert_int_eq(overlay_create(NULL, &spec), 0);
    snprintf(cow, sizeof(cow), "%s/cow.img", dir);
    /* A persistent header marked invalid, as the kernel leaves it. */
    ck_assert_int_eq(fx_sh("printf 'SnAp\\0\\0\\0\\0\\1\\0\\0\\0\\10\\0\\0\\0' "
                           "| dd of=%s conv=notrunc status=none", cow), 0);
    ck_assert_int_eq(overlay_activate(NULL, &spec, dev, sizeof(dev)),
                     VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "invalidated");
    ck_assert_int_eq(overlay_destroy(NULL, &spec), 0);
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("dm");
    TCase *tc = tcase_create("snapshot");
    char why[256];

    if (geteuid() != 0) {
        printf("dm suite skipped: it needs root\n");
        exit(77);
    }
    if (!overlay_dm_available(why, sizeof(why))) {
        printf("dm suite skipped: no usable device-mapper here (%s)\n", why);
        exit(77);
    }
    snprintf(vm_name, sizeof(vm_name), "dmtest-%d", (int)getpid());
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, snapshot_life);
    tcase_add_test(tc, invalid_cow_refused);
    suite_add_tcase(s, tc);
    return s;
}
