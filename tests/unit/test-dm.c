/*
 * Suite "dm": the dm-snapshot overlay driver end to end. It needs a
 * working /dev/mapper/control and root; without them the program says why
 * and exits 77, which meson reports as a skip. tests/dm-guest runs it in a
 * guest whose kernel has dm-mod, dm-snapshot and loop.
 *
 * Every test gets a VM name of its own (the test runs in a child process,
 * so the pid tells them apart), and the teardown removes whatever dm
 * device or loop device of that name a failed test left.
 *
 * SPDX-License-Identifier: MIT
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "overlay.h"
#include "prep.h"
#include "test-overlay-fixture.c"

static char vm_name[64];

static void dm_setup(void)
{
    fx_setup();
    snprintf(vm_name, sizeof(vm_name), "dmtest-%d", (int)getpid());
}

static void dm_teardown(void)
{
    /* A failed test's device first: it holds the loop devices. */
    fx_sh("for d in $(dmsetup ls 2>/dev/null | awk '$1 ~ /^libvmm-%s$/ "
          "{print $1}'); do dmsetup remove --retry $d; done; "
          "for l in $(losetup -n -O NAME,BACK-FILE 2>/dev/null | "
          "awk 'index($2, \"%s/\") == 1 {print $1}'); do losetup -d $l; "
          "done", vm_name, fx_dir);
    fx_teardown();
}

static struct overlay_spec spec_in(char *base, char *dir, const char *sub)
{
    struct overlay_spec spec = {
        .vm_name = vm_name, .driver = OVERLAY_DM_SNAPSHOT,
        .base_image = base, .dir = dir,
    };

    snprintf(base, 512, "%s/base.img", fx_dir);
    snprintf(dir, 512, "%s/%s", fx_dir, sub);
    mkdir(dir, 0700);
    if (access(base, F_OK) != 0)
        fx_image("base.img", "64M", "echo from-base > etc/motd");
    return spec;
}

static struct overlay_spec make_spec(char *base, char *dir)
{
    return spec_in(base, dir, "vm");
}

/* Whether a dm device of this test's VM exists. */
static bool dm_exists(void)
{
    return fx_sh("dmsetup info libvmm-%s >/dev/null 2>&1", vm_name) == 0;
}

/* How many loop devices carry this test's VM name or a file of its dir. */
static int loop_count(void)
{
    char *s = fx_out("{ losetup -n -O NAME,BACK-FILE; for l in "
                     "/sys/block/loop*; do [ -r $l/loop/backing_file ] && "
                     "losetup -n -O NAME,BACK-FILE /dev/${l##*/}; done; } "
                     "2>/dev/null | grep -e 'libvmm-%s:' -e ' %s/' | "
                     "awk '{print $1}' | sort -u | wc -l", vm_name, fx_dir);
    int n = atoi(s);

    free(s);
    return n;
}

/* The backing file of the snapshot's COW device, from its table. */
static char *table_cow_file(void)
{
    return fx_out("cat /sys/dev/block/$(dmsetup table libvmm-%s | "
                  "awk '{print $5}')/loop/backing_file 2>/dev/null | "
                  "tr -d '\\n'", vm_name);
}

START_TEST(snapshot_life)
{
    char base[512], dir[512], dev[256], again[256], *out;
    struct overlay_spec spec = make_spec(base, dir);
    vmm_context *ctx = fx_context();
    struct stat st;
    int fd;

    ck_assert_int_eq(overlay_create(ctx, &spec), 0);
    ck_assert_int_eq(overlay_activate(ctx, &spec, dev, sizeof(dev)), 0);
    ck_assert_int_eq(strncmp(dev, "/dev/mapper/libvmm-", 19), 0);
    ck_assert_int_eq(stat(dev, &st), 0);
    ck_assert(S_ISBLK(st.st_mode));
    ck_assert_int_eq(loop_count(), 2);
    /* Idempotent. */
    ck_assert_int_eq(overlay_activate(ctx, &spec, again, sizeof(again)), 0);
    ck_assert_str_eq(dev, again);
    ck_assert_int_eq(loop_count(), 2);

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
    ck_assert(!dm_exists());
    ck_assert_int_eq(fx_sh("losetup -j %s | grep -q .", base), 1);
    ck_assert_int_eq(loop_count(), 0);

    /* The COW is persistent: a second activation sees the write. */
    ck_assert_int_eq(overlay_activate(ctx, &spec, dev, sizeof(dev)), 0);
    out = fx_out("debugfs -R 'cat /etc/new' %s 2>/dev/null", dev);
    ck_assert_str_eq(out, "dm-write\n");
    free(out);
    ck_assert_int_eq(overlay_destroy(ctx, &spec), 0);
    ck_assert(!dm_exists());
    ck_assert_int_eq(loop_count(), 0);
    vmm_context_free(ctx);
}
END_TEST

/* What every start runs, on the snapshot: e2fsck, then the patches. */
START_TEST(prep_on_snapshot)
{
    char base[512], dir[512], dev[256], *s, *before;
    struct overlay_spec spec = make_spec(base, dir);
    static const char hostname[] = "dm-prepped\n";
    static const char key[] = "ssh-ed25519 AAAA dm-test\n";
    const struct prep_patch patches[] = {
        {PREP_WRITE_FILE, "/etc/hostname", hostname, sizeof(hostname) - 1,
         0644, 0, 0},
        {PREP_MKDIR, "/root/.ssh", NULL, 0, 0700, 0, 0},
        {PREP_WRITE_FILE, "/root/.ssh/authorized_keys", key,
         sizeof(key) - 1, 0600, 0, 0},
    };
    struct prep_fsck_result fsck;
    vmm_context *ctx = fx_context();

    before = fx_out("md5sum < %s", base);
    ck_assert_int_eq(overlay_create(ctx, &spec), 0);
    ck_assert_int_eq(overlay_activate(ctx, &spec, dev, sizeof(dev)), 0);
    ck_assert_int_eq(prep_run(ctx, vm_name, dev, patches, 3, &fsck), 0);
    ck_assert_int_le(fsck.exit_status, 3);

    s = fx_out("debugfs -R 'cat /etc/hostname' %s 2>/dev/null", dev);
    ck_assert_str_eq(s, hostname);
    free(s);
    s = fx_out("debugfs -R 'cat /root/.ssh/authorized_keys' %s 2>/dev/null",
               dev);
    ck_assert_str_eq(s, key);
    free(s);
    s = fx_out("debugfs -R 'cat /etc/motd' %s 2>/dev/null", dev);
    ck_assert_str_eq(s, "from-base\n");
    free(s);
    ck_assert_int_eq(fx_sh("e2fsck -fn %s >/dev/null 2>&1", dev), 0);
    /* The base is never written. */
    s = fx_out("md5sum < %s", base);
    ck_assert_str_eq(s, before);
    free(s);
    s = fx_out("debugfs -R 'cat /etc/hostname' %s 2>/dev/null", base);
    ck_assert_str_eq(s, "base\n");
    free(s);
    free(before);

    /* A second start: fsck and patch again over the first one's writes. */
    ck_assert_int_eq(overlay_deactivate(ctx, &spec), 0);
    ck_assert_int_eq(overlay_activate(ctx, &spec, dev, sizeof(dev)), 0);
    ck_assert_int_eq(prep_run(ctx, vm_name, dev, patches, 3, &fsck), 0);
    ck_assert_int_eq(overlay_destroy(ctx, &spec), 0);
    vmm_context_free(ctx);
}
END_TEST

/* Another process holds the device: the error names that process. */
START_TEST(busy_names_other_process)
{
    char base[512], dir[512], dev[256], pid_text[32];
    struct overlay_spec spec = make_spec(base, dir);
    int ready[2], status;
    struct timespec t0, t1;
    pid_t holder;
    char c;

    ck_assert_int_eq(overlay_create(NULL, &spec), 0);
    ck_assert_int_eq(overlay_activate(NULL, &spec, dev, sizeof(dev)), 0);
    ck_assert_int_eq(pipe(ready), 0);
    holder = fork();
    ck_assert_int_ge(holder, 0);
    if (holder == 0) {
        int fd = open(dev, O_RDONLY);

        close(ready[0]);
        if (write(ready[1], fd >= 0 ? "y" : "n", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    close(ready[0]);
    ck_assert_int_eq(c, 'y');

    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(overlay_deactivate(NULL, &spec), VMM_EBUSY);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    snprintf(pid_text, sizeof(pid_text), "pid %d", (int)holder);
    ck_assert_vmm_error(VMM_EBUSY, pid_text);
    /* Bounded: a dozen tries, not forever. */
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 30);
    ck_assert(dm_exists());

    kill(holder, SIGKILL);
    ck_assert_int_eq(waitpid(holder, &status, 0), holder);
    ck_assert_int_eq(overlay_deactivate(NULL, &spec), 0);
    ck_assert(!dm_exists());
    ck_assert_int_eq(loop_count(), 0);
    ck_assert_int_eq(overlay_destroy(NULL, &spec), 0);
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
    ck_assert(!dm_exists());
    ck_assert_int_eq(loop_count(), 0);
    ck_assert_int_eq(overlay_destroy(NULL, &spec), 0);
}
END_TEST

/* A COW too small for the writes: the kernel invalidates the snapshot;
 * activation refuses it while active and again from the COW's header. */
START_TEST(cow_too_small)
{
    char base[512], dir[512], dev[256], *status;
    struct overlay_spec spec = make_spec(base, dir);

    ck_assert_int_eq(overlay_create(NULL, &spec), 0);
    ck_assert_int_eq(fx_sh("truncate -s 1M %s/cow.img", dir), 0);
    ck_assert_int_eq(overlay_activate(NULL, &spec, dev, sizeof(dev)), 0);
    /* 8 MiB of new data cannot fit; the writes fail once it fills. */
    fx_sh("dd if=/dev/urandom of=%s bs=1M count=8 seek=8 oflag=direct "
          "status=none 2>/dev/null", dev);
    status = fx_out("dmsetup status libvmm-%s", vm_name);
    ck_assert_msg(strstr(status, "Invalid") != NULL, "status: %s", status);
    free(status);

    ck_assert_int_eq(overlay_activate(NULL, &spec, dev, sizeof(dev)),
                     VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "invalidated");
    ck_assert_int_eq(overlay_deactivate(NULL, &spec), 0);
    ck_assert(!dm_exists());

    ck_assert_int_eq(overlay_activate(NULL, &spec, dev, sizeof(dev)),
                     VMM_EDISK);
    ck_assert_vmm_error(VMM_EDISK, "invalidated");
    ck_assert(!dm_exists());
    ck_assert_int_eq(loop_count(), 0);
    ck_assert_int_eq(overlay_destroy(NULL, &spec), 0);
}
END_TEST

/* Activates spec in a child that then exits without deactivating: what a
 * crashed program leaves. */
static void crash_after_activate(const struct overlay_spec *spec)
{
    pid_t pid = fork();
    int status;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char dev[256];

        _exit(overlay_activate(NULL, spec, dev, sizeof(dev)) == 0 ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The dm device and both loop devices outlive a crash; knowing only the
 * VM's name and directory, destroy finds and removes them. */
START_TEST(crash_leftovers_destroyed)
{
    char base[512], dir[512], dev[256];
    struct overlay_spec spec = make_spec(base, dir);
    struct overlay_spec fresh;
    vmm_context *ctx = fx_context();

    ck_assert_int_eq(overlay_create(NULL, &spec), 0);
    crash_after_activate(&spec);
    ck_assert(dm_exists());
    ck_assert_int_eq(loop_count(), 2);

    /* A restarted program may simply use it again... */
    fresh = (struct overlay_spec){
        .vm_name = vm_name, .driver = OVERLAY_DM_SNAPSHOT,
        .base_image = base, .dir = dir,
    };
    ck_assert_int_eq(overlay_activate(ctx, &fresh, dev, sizeof(dev)), 0);
    ck_assert_int_eq(loop_count(), 2);
    /* ...or remove it with no state but the name; even the driver it
     * recorded may be lost (destroy cleans dm leftovers for any). */
    fresh.driver = OVERLAY_COPY;
    fresh.base_image = NULL;
    ck_assert_int_eq(overlay_destroy(ctx, &fresh), 0);
    ck_assert(!dm_exists());
    ck_assert_int_eq(loop_count(), 0);
    ck_assert_int_ne(access(dev, F_OK), 0);
    vmm_context_free(ctx);
}
END_TEST

/* The VM's whole directory was lost after a crash (the COW the device
 * uses is a deleted file). A new disk of the same VM name must get a
 * snapshot of its own COW, not the stale device. */
START_TEST(stale_device_replaced)
{
    char base[512], old_dir[512], dir[512], dev[256], cow[600], *s;
    struct overlay_spec old = spec_in(base, old_dir, "old");
    struct overlay_spec spec;
    vmm_context *ctx = fx_context();

    ck_assert_int_eq(overlay_create(NULL, &old), 0);
    crash_after_activate(&old);
    ck_assert(dm_exists());
    ck_assert_int_eq(fx_sh("rm -rf %s", old_dir), 0);

    spec = spec_in(base, dir, "new");
    ck_assert_int_eq(overlay_create(ctx, &spec), 0);
    ck_assert_int_eq(overlay_activate(ctx, &spec, dev, sizeof(dev)), 0);
    snprintf(cow, sizeof(cow), "%s/cow.img", dir);
    s = table_cow_file();
    ck_assert_str_eq(s, cow);
    free(s);
    ck_assert_ptr_nonnull(strstr(fx_log, "left over"));
    /* The stale device's loop devices went with it. */
    ck_assert_int_eq(loop_count(), 2);
    ck_assert_int_eq(overlay_destroy(ctx, &spec), 0);
    ck_assert(!dm_exists());
    ck_assert_int_eq(loop_count(), 0);
    vmm_context_free(ctx);
}
END_TEST

/* Loop devices without a dm device (a crash between attach and create,
 * made here with losetup): activation detaches the COW's and carries on. */
START_TEST(loop_leftover_detached)
{
    char base[512], dir[512], dev[256], *s;
    struct overlay_spec spec = make_spec(base, dir);

    ck_assert_int_eq(overlay_create(NULL, &spec), 0);
    s = fx_out("losetup -f --show %s/cow.img | tr -d '\\n'", dir);
    ck_assert_int_eq(strncmp(s, "/dev/loop", 9), 0);
    ck_assert_int_eq(overlay_activate(NULL, &spec, dev, sizeof(dev)), 0);
    free(s);
    /* Base and COW of the snapshot; a third would be the leftover (the
     * new COW loop may well reuse its number). */
    ck_assert_int_eq(loop_count(), 2);
    ck_assert_int_eq(overlay_destroy(NULL, &spec), 0);
    ck_assert_int_eq(loop_count(), 0);
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
    tcase_add_checked_fixture(tc, dm_setup, dm_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, snapshot_life);
    tcase_add_test(tc, prep_on_snapshot);
    tcase_add_test(tc, busy_names_other_process);
    tcase_add_test(tc, invalid_cow_refused);
    tcase_add_test(tc, cow_too_small);
    tcase_add_test(tc, crash_leftovers_destroyed);
    tcase_add_test(tc, stale_device_replaced);
    tcase_add_test(tc, loop_leftover_detached);
    suite_add_tcase(s, tc);
    return s;
}
