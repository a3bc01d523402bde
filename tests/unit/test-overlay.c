/*
 * Suite "overlay": base image checks, the copy driver on real images, the
 * dm-snapshot driver's pure parts (names, tables, status), and real loop
 * devices. The full dm driver runs in test-dm, which skips without DM.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "overlay.h"
#include "test-overlay-fixture.c"

static char *path_in(const char *name)
{
    static char path[4][512];
    static int next;

    next = (next + 1) % 4;
    snprintf(path[next], sizeof(path[next]), "%s/%s", fx_dir, name);
    return path[next];
}

static char *listing(const char *dir)
{
    return fx_out("ls -A %s | tr '\\n' ' '", dir);
}

/* --- pure parts -------------------------------------------------------- */

START_TEST(driver_names)
{
    enum overlay_driver d = OVERLAY_COPY;

    for (int i = OVERLAY_AUTO; i <= OVERLAY_COPY; i++) {
        ck_assert_int_eq(overlay_driver_parse(overlay_driver_name(i), &d), 0);
        ck_assert_int_eq(d, i);
    }
    ck_assert_str_eq(overlay_driver_name(OVERLAY_DM_SNAPSHOT), "dm-snapshot");
    ck_assert_int_eq(overlay_driver_parse("zfs", &d), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "\"zfs\"");
    ck_assert_int_eq(overlay_driver_parse(NULL, &d), VMM_EINVAL);
    ck_assert_str_eq(overlay_driver_name(7), "unknown");
}
END_TEST

START_TEST(dm_names)
{
    char a[OVERLAY_DM_NAME_MAX + 1], b[OVERLAY_DM_NAME_MAX + 1];
    char longname[300];

    ck_assert_int_eq(overlay_dm_name("web-1.prod_x", a, sizeof(a)), 0);
    ck_assert_str_eq(a, "libvmm-web-1.prod_x");

    memset(longname, 'v', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ck_assert_int_eq(overlay_dm_name(longname, a, sizeof(a)), 0);
    ck_assert_uint_le(strlen(a), OVERLAY_DM_NAME_MAX);
    ck_assert_int_eq(strncmp(a, "libvmm-vvvvvvvvvvvvvvvv-", 24), 0);
    /* Deterministic, and distinct for names differing past the prefix. */
    ck_assert_int_eq(overlay_dm_name(longname, b, sizeof(b)), 0);
    ck_assert_str_eq(a, b);
    longname[200] = 'w';
    ck_assert_int_eq(overlay_dm_name(longname, b, sizeof(b)), 0);
    ck_assert_str_ne(a, b);

    /* Characters dm or a shell would trip on are replaced and hashed. */
    ck_assert_int_eq(overlay_dm_name("a/b c", a, sizeof(a)), 0);
    ck_assert_ptr_null(strpbrk(a, "/ "));
    ck_assert_int_eq(strncmp(a, "libvmm-a_b_c-", 13), 0);
    ck_assert_int_eq(overlay_dm_name("a_b_c", b, sizeof(b)), 0);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(overlay_dm_name("..", a, sizeof(a)), 0);
    ck_assert_str_ne(a, "libvmm-..");
    /* 32 plain characters stay plain; 33 are hashed. */
    ck_assert_int_eq(overlay_dm_name("abcdefghijklmnopqrstuvwxyz012345", a,
                                     sizeof(a)), 0);
    ck_assert_str_eq(a, "libvmm-abcdefghijklmnopqrstuvwxyz012345");
    ck_assert_int_eq(overlay_dm_name("abcdefghijklmnopqrstuvwxyz0123456", a,
                                     sizeof(a)), 0);
    ck_assert_uint_eq(strlen(a), 7 + 16 + 1 + 16);

    ck_assert_int_eq(overlay_dm_name("", a, sizeof(a)), VMM_EINVAL);
    ck_assert_int_eq(overlay_dm_name(NULL, a, sizeof(a)), VMM_EINVAL);
    ck_assert_int_eq(overlay_dm_name("x", a, 10), VMM_EINVAL);
}
END_TEST

START_TEST(dm_table)
{
    char t[128];

    ck_assert_int_eq(overlay_dm_table(4194304, "7:0", "7:1", t, sizeof(t)),
                     0);
    ck_assert_str_eq(t, "0 4194304 snapshot 7:0 7:1 P 8");
    ck_assert_int_eq(overlay_dm_table(0, "7:0", "7:1", t, sizeof(t)),
                     VMM_EINVAL);
    ck_assert_int_eq(overlay_dm_table(8, "7:0 x", "7:1", t, sizeof(t)),
                     VMM_EINVAL);
    ck_assert_int_eq(overlay_dm_table(8, "", "7:1", t, sizeof(t)),
                     VMM_EINVAL);
    ck_assert_int_eq(overlay_dm_table(8, "7:0", "7:1", t, 10), VMM_EINVAL);
}
END_TEST

START_TEST(dm_status)
{
    struct overlay_dm_status st;

    ck_assert_int_eq(overlay_dm_parse_status("16/2105344 16", &st), 0);
    ck_assert_int_eq(st.state, OVERLAY_DM_VALID);
    ck_assert_uint_eq(st.used_sectors, 16);
    ck_assert_uint_eq(st.total_sectors, 2105344);
    ck_assert_uint_eq(st.metadata_sectors, 16);
    ck_assert_int_eq(overlay_dm_check_status(&st, "libvmm-a"), 0);

    ck_assert_int_eq(overlay_dm_parse_status("Invalid", &st), 0);
    ck_assert_int_eq(st.state, OVERLAY_DM_INVALID);
    ck_assert_int_eq(overlay_dm_check_status(&st, "libvmm-a"), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "libvmm-a is invalidated");

    ck_assert_int_eq(overlay_dm_parse_status("Overflow", &st), 0);
    ck_assert_int_eq(overlay_dm_check_status(&st, "libvmm-a"), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "full");

    ck_assert_int_eq(overlay_dm_parse_status("2048/2048 16", &st), 0);
    ck_assert_int_eq(overlay_dm_check_status(&st, "libvmm-a"), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "COW is full (2048 of 2048");

    ck_assert_int_eq(overlay_dm_parse_status("Merge failed", &st), 0);
    ck_assert_int_eq(st.state, OVERLAY_DM_MERGE_FAILED);

    ck_assert_int_eq(overlay_dm_parse_status("", &st), VMM_EDISK);
    ck_assert_int_eq(overlay_dm_parse_status("16/0 0", &st), VMM_EDISK);
    ck_assert_int_eq(overlay_dm_parse_status("17/16 1", &st), VMM_EDISK);
    ck_assert_int_eq(overlay_dm_parse_status("1/16 1 x", &st), VMM_EDISK);
    ck_assert_int_eq(overlay_dm_parse_status("0 10 linear", &st), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "not a snapshot status");
}
END_TEST

START_TEST(cow_header)
{
    unsigned char h[16] = { 0 };

    ck_assert_int_eq(overlay_cow_header_check(h, sizeof(h), "c"), 0);
    memcpy(h, "SnAp", 4);
    h[4] = 1;
    ck_assert_int_eq(overlay_cow_header_check(h, sizeof(h), "c"), 0);
    h[4] = 0;
    ck_assert_int_eq(overlay_cow_header_check(h, sizeof(h), "/vm/cow.img"),
                     VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "/vm/cow.img was invalidated");
    ck_assert_int_eq(overlay_cow_header_check(h, 3, "c"), 0);
}
END_TEST

START_TEST(pick_without_dm)
{
    vmm_context *ctx = fx_context();
    char why[256];
    bool dm = overlay_dm_available(why, sizeof(why));
    enum overlay_driver d = overlay_pick(ctx, "vm1", OVERLAY_AUTO);

    ck_assert_int_eq(d, dm ? OVERLAY_DM_SNAPSHOT : OVERLAY_COPY);
    ck_assert_ptr_nonnull(strstr(fx_log, dm ? "dm-snapshot" : "driver copy"));
    ck_assert_ptr_nonnull(strstr(fx_log, "vm1"));
    ck_assert_int_eq(overlay_pick(ctx, "vm1", OVERLAY_COPY), OVERLAY_COPY);
    ck_assert_int_eq(overlay_pick(ctx, "vm1", OVERLAY_DM_SNAPSHOT),
                     OVERLAY_DM_SNAPSHOT);
    vmm_context_free(ctx);
}
END_TEST

/* --- base checks -------------------------------------------------------- */

START_TEST(check_base)
{
    uint64_t size = 0;

    ck_assert_int_eq(overlay_check_base(path_in("missing.img"), &size),
                     VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "missing.img");
    ck_assert_int_eq(overlay_check_base(fx_dir, &size), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "neither a regular file nor a block");
    ck_assert_int_eq(overlay_check_base(NULL, &size), VMM_EINVAL);

    ck_assert_int_eq(fx_sh("truncate -s 4M %s", path_in("zero.img")), 0);
    ck_assert_int_eq(overlay_check_base(path_in("zero.img"), &size),
                     VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "does not hold an ext4 filesystem");

    fx_image("b.img", "16M", "true");
    ck_assert_int_eq(overlay_check_base(path_in("b.img"), &size), 0);
    ck_assert_uint_eq(size, 16u << 20);

    ck_assert_int_eq(fx_sh("debugfs -w -R 'feature FEATURE_I20' %s "
                           ">/dev/null 2>&1", path_in("b.img")), 0);
    ck_assert_int_eq(overlay_check_base(path_in("b.img"), &size), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "FEATURE_I20");
    ck_assert_vmm_error(VMM_EDISK, "e2fsprogs 1.");
    ck_assert_vmm_error(VMM_EDISK, "b.img");
}
END_TEST

/* --- the copy driver ---------------------------------------------------- */

static uint64_t progress_done, progress_total;
static unsigned progress_calls;

static void progress_fn(const char *vm, const char *stage, uint64_t done,
                        uint64_t total, void *user)
{
    ck_assert_str_eq(stage, "copy");
    ck_assert_uint_ge(done, progress_done);
    progress_done = done;
    progress_total = total;
    progress_calls++;
}

static vmm_context *progress_context(void)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_context *ctx = NULL;

    o.log_fn = fx_log_fn;
    o.progress_fn = progress_fn;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);
    progress_done = progress_total = 0;
    progress_calls = 0;
    return ctx;
}

/* A base with 40 MiB of data spread over a 256 MiB sparse image. */
static void make_data_base(const char *name)
{
    fx_image(name, "256M", "mkdir -p srv; for i in 1 2 3 4 5; do "
             "head -c 8M /dev/urandom > srv/data$i; done");
}

static uint64_t allocated(const char *path)
{
    struct stat st;

    ck_assert_int_eq(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

START_TEST(copy_keeps_holes_and_content)
{
    struct overlay_spec spec = {
        .vm_name = "c1", .driver = OVERLAY_COPY,
        .base_image = path_in("base.img"), .dir = path_in("vm"),
    };
    vmm_context *ctx = progress_context();
    char disk[600];
    uint64_t base_alloc, copy_alloc;

    make_data_base("base.img");
    mkdir(spec.dir, 0700);
    ck_assert_int_eq(overlay_create(ctx, &spec), 0);
    snprintf(disk, sizeof(disk), "%s/disk.img", spec.dir);
    ck_assert_int_eq(fx_sh("cmp %s %s", spec.base_image, disk), 0);
    base_alloc = allocated(spec.base_image);
    copy_alloc = allocated(disk);
    ck_assert_uint_le(copy_alloc, base_alloc + base_alloc / 10);
    ck_assert_uint_lt(copy_alloc, (256u << 20) / 2);
    ck_assert_uint_eq(progress_total, 256u << 20);
    ck_assert_uint_eq(progress_done, 256u << 20);
    ck_assert_uint_ge(progress_calls, 2);
    ck_assert_ptr_nonnull(strstr(fx_log, "disk.img"));
    {
        char *l = listing(spec.dir);

        ck_assert_str_eq(l, "disk.img ");
        free(l);
    }

    /* Activate names the file; a second create refuses to clobber it. */
    {
        char out[600];

        ck_assert_int_eq(overlay_activate(ctx, &spec, out, sizeof(out)), 0);
        ck_assert_str_eq(out, disk);
        ck_assert_int_eq(overlay_activate(ctx, &spec, out, 4), VMM_EINVAL);
        ck_assert_int_eq(overlay_deactivate(ctx, &spec), 0);
    }
    ck_assert_int_eq(overlay_create(ctx, &spec), VMM_EEXIST);
    ck_assert_vmm_error(VMM_EEXIST, "disk.img");

    /* Destroy removes it and what an interrupted copy left. */
    ck_assert_int_eq(fx_sh("touch %s/.disk.img.tmp.abc123", spec.dir), 0);
    ck_assert_int_eq(overlay_destroy(ctx, &spec), 0);
    {
        char *l = listing(spec.dir);

        ck_assert_str_eq(l, "");
        free(l);
    }
    ck_assert_int_eq(overlay_destroy(ctx, &spec), 0);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(copy_grows_disk_and_filesystem)
{
    struct overlay_spec spec = {
        .vm_name = "g1", .driver = OVERLAY_COPY,
        .base_image = path_in("base.img"), .dir = path_in("vm"),
        .disk_size = 64u << 20,
    };
    vmm_context *ctx = fx_context();
    char disk[600], *blocks;

    fx_image("base.img", "-b 4096 24M", "echo keep > etc/keep");
    mkdir(spec.dir, 0700);
    ck_assert_int_eq(overlay_create(ctx, &spec), 0);
    snprintf(disk, sizeof(disk), "%s/disk.img", spec.dir);
    {
        struct stat st;

        ck_assert_int_eq(stat(disk, &st), 0);
        ck_assert_uint_eq((uint64_t)st.st_size, 64u << 20);
    }
    blocks = fx_out("dumpe2fs -h %s 2>/dev/null | "
                    "sed -n 's/^Block count: *//p'", disk);
    ck_assert_str_eq(blocks, "16384\n");
    free(blocks);
    ck_assert_int_eq(fx_sh("e2fsck -fn %s >/dev/null 2>&1", disk), 0);
    blocks = fx_out("debugfs -R 'cat /etc/keep' %s 2>/dev/null", disk);
    ck_assert_str_eq(blocks, "keep\n");
    free(blocks);
    ck_assert_ptr_nonnull(strstr(fx_log, "grew the filesystem"));
    vmm_context_free(ctx);
}
END_TEST

START_TEST(copy_refuses_smaller_disk_and_bad_base)
{
    struct overlay_spec spec = {
        .vm_name = "s1", .driver = OVERLAY_COPY,
        .base_image = path_in("base.img"), .dir = path_in("vm"),
        .disk_size = 8u << 20,
    };
    char *l;

    fx_image("base.img", "16M", "true");
    mkdir(spec.dir, 0700);
    ck_assert_int_eq(overlay_create(NULL, &spec), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "8388608 bytes");
    ck_assert_vmm_error(VMM_EINVAL, "16777216 bytes");

    /* dm-snapshot cannot grow past its base. */
    spec.driver = OVERLAY_DM_SNAPSHOT;
    spec.disk_size = 32u << 20;
    ck_assert_int_eq(overlay_create(NULL, &spec), VMM_EUNSUPPORTED);

    /* A zeroed superblock: refused before anything is made. */
    spec.driver = OVERLAY_COPY;
    spec.disk_size = 0;
    fx_image("z.img", "-b 4096 8M", "true");
    ck_assert_int_eq(fx_sh("dd if=/dev/zero of=%s bs=1024 seek=1 count=1 "
                           "conv=notrunc status=none", path_in("z.img")), 0);
    spec.base_image = path_in("z.img");
    ck_assert_int_eq(overlay_create(NULL, &spec), VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "z.img");
    l = listing(spec.dir);
    ck_assert_str_eq(l, "");
    free(l);

    spec.driver = OVERLAY_AUTO;
    ck_assert_int_eq(overlay_create(NULL, &spec), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "not resolved");
    ck_assert_int_eq(overlay_create(NULL, NULL), VMM_EINVAL);
    spec.driver = OVERLAY_COPY;
    spec.base_image = path_in("base.img");
    spec.dir = path_in("no-such-dir");
    ck_assert_int_eq(overlay_create(NULL, &spec), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "no-such-dir");
}
END_TEST

START_TEST(copy_out_of_space_leaves_nothing)
{
    struct overlay_spec spec = {
        .vm_name = "full", .driver = OVERLAY_COPY,
        .base_image = path_in("base.img"), .dir = path_in("small"),
    };
    char *l;
    int r;

    make_data_base("base.img");
    mkdir(spec.dir, 0700);
    if (mount("tmpfs", spec.dir, "tmpfs", 0, "size=8m") < 0) {
        fprintf(stderr, "copy_out_of_space_leaves_nothing: cannot mount a "
                "tmpfs (%s): not run\n", strerror(errno));
        return;
    }
    r = overlay_create(NULL, &spec);
    l = listing(spec.dir);
    ck_assert_int_eq(umount(spec.dir), 0);
    ck_assert_int_eq(r, VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "No space left on device");
    ck_assert_str_eq(l, "");
    free(l);
}
END_TEST

/* --- loop devices, for real ---------------------------------------------- */

static bool loops_work(void)
{
    return access("/dev/loop-control", R_OK | W_OK) == 0;
}

static char *sys_attr(const char *dev, const char *attr)
{
    return fx_out("cat /sys/block/%s/loop/%s 2>/dev/null", dev + 5, attr);
}

START_TEST(loop_attach_autoclear)
{
    char dev[64], tag[64], *s;
    struct stat st;
    pid_t pids[4];
    int fd = -1;

    if (!loops_work()) {
        fprintf(stderr, "loop_attach_autoclear: no /dev/loop-control\n");
        return;
    }
    ck_assert_int_eq(fx_sh("truncate -s 8M %s", path_in("f.img")), 0);
    snprintf(tag, sizeof(tag), "libvmm-t%d:base", (int)getpid());
    ck_assert_int_eq(overlay_loop_attach(path_in("f.img"), true, tag, &fd,
                                         dev, sizeof(dev)), 0);
    ck_assert_int_ge(fd, 0);
    s = fx_out("cat /sys/block/%s/loop/backing_file", dev + 5);
    ck_assert_ptr_nonnull(strstr(s, "f.img"));
    free(s);
    s = sys_attr(dev, "autoclear");
    ck_assert_str_eq(s, "1\n");
    free(s);
    s = fx_out("cat /sys/block/%s/ro", dev + 5);
    ck_assert_str_eq(s, "1\n");
    free(s);
    s = fx_out("losetup -nO NAME,BACK-FILE %s", dev);
    ck_assert_ptr_nonnull(strstr(s, "f.img"));
    free(s);

    /* Whoever holds it is named. */
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_uint_ge(overlay_block_holders(st.st_rdev, pids, 4), 1);
    ck_assert_int_eq(pids[0], getpid());

    /* The last close detaches it: at once, or when another opener (udev's
     * probe) lets go too, so it is waited for. */
    close(fd);
    s = sys_attr(dev, "backing_file");
    for (int i = 0; i < 1000 && strcmp(s, "") != 0; i++) {
        free(s);
        usleep(10 * 1000);
        s = sys_attr(dev, "backing_file");
    }
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

START_TEST(loop_leftovers_found_and_detached)
{
    struct overlay_spec spec = {
        .vm_name = "left", .driver = OVERLAY_DM_SNAPSHOT,
        .base_image = path_in("base.img"), .dir = path_in("vm"),
    };
    vmm_context *ctx = fx_context();
    char *dev, *s;

    if (!loops_work()) {
        fprintf(stderr, "loop_leftovers: no /dev/loop-control\n");
        vmm_context_free(ctx);
        return;
    }
    fx_image("base.img", "16M", "true");
    mkdir(spec.dir, 0700);
    ck_assert_int_eq(overlay_create(ctx, &spec), 0);
    s = listing(spec.dir);
    ck_assert_str_eq(s, "cow.img ");
    free(s);

    /* What a crash between attach and dm leaves: a non-autoclear loop on
     * the VM's COW. */
    dev = fx_out("losetup -f --show %s/cow.img | tr -d '\\n'", spec.dir);
    ck_assert_int_eq(strncmp(dev, "/dev/loop", 9), 0);
    ck_assert_int_eq(overlay_destroy(ctx, &spec), 0);
    s = fx_out("losetup -j %s/cow.img 2>/dev/null; "
               "cat /sys/block/%s/loop/backing_file 2>/dev/null", spec.dir,
               dev + 5);
    ck_assert_str_eq(s, "");
    free(s);
    ck_assert_ptr_nonnull(strstr(fx_log, "detached 1 leftover loop"));
    s = listing(spec.dir);
    ck_assert_str_eq(s, "");
    free(s);
    free(dev);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(dm_activate_without_dm_says_why)
{
    struct overlay_spec spec = {
        .vm_name = "nodm", .driver = OVERLAY_DM_SNAPSHOT,
        .base_image = path_in("base.img"), .dir = path_in("vm"),
    };
    char why[256], out[256];

    if (overlay_dm_available(why, sizeof(why)))
        return; /* test-dm covers it */
    fx_image("base.img", "16M", "true");
    mkdir(spec.dir, 0700);
    ck_assert_int_eq(overlay_create(NULL, &spec), 0);
    ck_assert_int_eq(overlay_activate(NULL, &spec, out, sizeof(out)),
                     VMM_EUNSUPPORTED);
    ck_assert_vmm_error(VMM_EUNSUPPORTED, "/dev/mapper/control");
    ck_assert_int_eq(overlay_destroy(NULL, &spec), 0);
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("overlay");
    TCase *pure = tcase_create("pure");
    TCase *copy = tcase_create("copy");
    TCase *loop = tcase_create("loop");

    tcase_add_checked_fixture(pure, fx_setup, fx_teardown);
    tcase_add_test(pure, driver_names);
    tcase_add_test(pure, dm_names);
    tcase_add_test(pure, dm_table);
    tcase_add_test(pure, dm_status);
    tcase_add_test(pure, cow_header);
    tcase_add_test(pure, pick_without_dm);
    tcase_add_test(pure, check_base);
    suite_add_tcase(s, pure);

    tcase_add_checked_fixture(copy, fx_setup, fx_teardown);
    tcase_set_timeout(copy, 90);
    tcase_add_test(copy, copy_keeps_holes_and_content);
    tcase_add_test(copy, copy_grows_disk_and_filesystem);
    tcase_add_test(copy, copy_refuses_smaller_disk_and_bad_base);
    tcase_add_test(copy, copy_out_of_space_leaves_nothing);
    suite_add_tcase(s, copy);

    tcase_add_checked_fixture(loop, fx_setup, fx_teardown);
    tcase_add_test(loop, loop_attach_autoclear);
    tcase_add_test(loop, loop_leftovers_found_and_detached);
    tcase_add_test(loop, dm_activate_without_dm_says_why);
    suite_add_tcase(s, loop);
    return s;
}
