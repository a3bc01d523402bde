/*
 * Suite "store": VM records on disk, atomic writes and locks.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check-main.h"
#include "store.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/libvmm-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    ck_assert_int_eq(store_remove_tree(dir), 0);
}

static char *path_in(const char *name)
{
    static char buf[256];

    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return buf;
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_in(name), "w");

    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void sample(struct vm_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->phase = PHASE_READY;
    rec->name = strdup("web-1");
    rec->kernel = strdup("/images/vmlinuz");
    rec->base_image = strdup("/images/rootfs.ext4");
    rec->boot_args = strdup("console=ttyS0 \"quoted\" \\ back");
    rec->vcpus = 2;
    rec->memory_mib = 1024;
    rec->disk_size = 4ull << 30;
    rec->overlay = OVERLAY_COPY;
    rec->ssh_authorized_keys = strdup("ssh-ed25519 AAAA user@host\n");
    rec->has_net = true;
    rec->lease.slot = 7;
    rec->lease.prefix_len = 30;
    strcpy(rec->lease.guest_ip, "172.16.0.30");
    strcpy(rec->lease.host_ip, "172.16.0.29");
    strcpy(rec->lease.netmask, "255.255.255.252");
    strcpy(rec->lease.mac, "06:00:ac:10:00:1e");
    strcpy(rec->lease.tap, "vmtap7");
    rec->netns = strdup("libvmm-web-1");
    rec->own_netns = true;
    rec->n_files = 1;
    rec->files = calloc(1, sizeof(*rec->files));
    rec->files[0].path = strdup("/etc/motd");
    rec->files[0].blob = strdup("file-0");
    rec->files[0].mode = 0644;
    rec->has_vmm = true;
    rec->pid = 4242;
    rec->start_time = 123456789;
}

START_TEST(round_trip)
{
    struct vm_record a, b;

    sample(&a);
    ck_assert_int_eq(record_write(path_in("vm.json"), &a), 0);
    ck_assert_int_eq(record_read(path_in("vm.json"), &b), 0);

    ck_assert_int_eq(b.phase, PHASE_READY);
    ck_assert_str_eq(b.name, a.name);
    ck_assert_str_eq(b.boot_args, a.boot_args);
    ck_assert_ptr_null(b.initrd);
    ck_assert_uint_eq(b.vcpus, 2);
    ck_assert_uint_eq(b.memory_mib, 1024);
    ck_assert_uint_eq(b.disk_size, 4ull << 30);
    ck_assert_int_eq(b.overlay, OVERLAY_COPY);
    ck_assert_str_eq(b.ssh_authorized_keys, a.ssh_authorized_keys);
    ck_assert(b.has_net);
    ck_assert_uint_eq(b.lease.slot, 7);
    ck_assert_str_eq(b.lease.guest_ip, "172.16.0.30");
    ck_assert_str_eq(b.lease.tap, "vmtap7");
    ck_assert_str_eq(b.netns, "libvmm-web-1");
    ck_assert(b.own_netns);
    ck_assert_uint_eq(b.n_files, 1);
    ck_assert_str_eq(b.files[0].path, "/etc/motd");
    ck_assert_uint_eq(b.files[0].mode, 0644);
    ck_assert(b.has_vmm);
    ck_assert_int_eq(b.pid, 4242);
    ck_assert_uint_eq(b.start_time, 123456789);
    record_clear(&a);
    record_clear(&b);
}
END_TEST

START_TEST(write_leaves_no_temp_files)
{
    struct vm_record a;
    struct dirent *e;
    int files = 0;
    DIR *d;

    sample(&a);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(record_write(path_in("vm.json"), &a), 0);
    record_clear(&a);

    d = opendir(dir);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') {
            ck_assert_str_eq(e->d_name, "vm.json");
            files++;
        }
    closedir(d);
    ck_assert_int_eq(files, 1);
}
END_TEST

/* Each unreadable record fails with VMM_ECORRUPT naming its path. */
START_TEST(corrupt_records)
{
    static const struct {
        const char *text;
        const char *needle;
    } cases[] = {
        { "", "not valid JSON" },
        { "{\"version\": 1, \"phase\": \"ready\", \"na", "not valid JSON" },
        { "[1, 2]", "not an object" },
        { "{\"version\": 2}", "version" },
        { "{\"version\": 1, \"phase\": \"weird\"}", "phase" },
        { "{\"version\": 1, \"phase\": \"ready\", \"name\": 5}", "name" },
    };
    struct vm_record rec;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_text("vm.json", cases[i].text);
        ck_assert_int_eq(record_read(path_in("vm.json"), &rec), VMM_ECORRUPT);
        ck_assert_vmm_error(VMM_ECORRUPT, cases[i].needle);
        ck_assert_vmm_error(VMM_ECORRUPT, path_in("vm.json"));
        ck_assert_ptr_null(rec.name);
    }
}
END_TEST

/* Every field of a valid record, broken one at a time, is caught. */
START_TEST(each_field_checked)
{
    static const char *const keys[] = {
        "\"name\"", "\"kernel\"", "\"base_image\"", "\"vcpus\"",
        "\"memory_mib\"", "\"disk_size\"", "\"overlay\"", "\"own_netns\"",
        "\"slot\"", "\"guest_ip\"", "\"tap\"", "\"pid\"", "\"mode\"",
        "\"blob\"",
    };
    struct vm_record a, rec;
    char *text;
    size_t len;

    sample(&a);
    ck_assert_int_eq(record_write(path_in("good.json"), &a), 0);
    record_clear(&a);
    ck_assert_int_eq(store_read_file(path_in("good.json"), 1 << 20, &text,
                                     &len), 0);

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *at = strstr(text, keys[i]);
        const char *colon, *rest;
        char *broken;

        ck_assert_ptr_nonnull(at);
        colon = strchr(at, ':');
        rest = colon + 1 + strcspn(colon + 1, ",}\n");
        /* The value replaced by an object: the wrong type for every field. */
        ck_assert_int_gt(asprintf(&broken, "%.*s {}%s",
                                  (int)(colon + 1 - text), text, rest), 0);
        write_text("vm.json", broken);
        ck_assert_msg(record_read(path_in("vm.json"), &rec) == VMM_ECORRUPT,
                      "breaking %s went unnoticed:\n%s", keys[i], broken);
        free(broken);
    }
    free(text);
}
END_TEST

START_TEST(missing_record)
{
    struct vm_record rec;

    ck_assert_int_eq(record_read(path_in("nope.json"), &rec), VMM_ENOTFOUND);
}
END_TEST

START_TEST(lock_busy_names_holder)
{
    int pipefd[2], fd;
    char c, pid_text[16];
    pid_t child;

    ck_assert_int_eq(pipe(pipefd), 0);
    child = fork();
    if (child == 0) {
        int held;

        if (store_lock(path_in("lock"), 0, "VM x", &held) != 0)
            _exit(1);
        write(pipefd[1], "k", 1);
        pause();
        _exit(0);
    }
    ck_assert_int_eq(read(pipefd[0], &c, 1), 1);

    ck_assert_int_eq(store_lock(path_in("lock"), 50, "VM x", &fd), VMM_EBUSY);
    snprintf(pid_text, sizeof(pid_text), "pid %d", (int)child);
    ck_assert_vmm_error(VMM_EBUSY, pid_text);
    ck_assert_vmm_error(VMM_EBUSY, "VM x");
    ck_assert_int_eq(fd, -1);

    /* The kernel drops the lock with its holder. */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    ck_assert_int_eq(store_lock(path_in("lock"), 0, "VM x", &fd), 0);
    ck_assert_int_ge(fd, 0);
    store_unlock(fd);
    close(pipefd[0]);
    close(pipefd[1]);
}
END_TEST

START_TEST(lock_waits_for_release)
{
    pid_t child;
    int fd;

    ck_assert_int_eq(store_lock(path_in("lock"), 0, "VM y", &fd), 0);
    child = fork();
    if (child == 0) {
        int other;

        /* The inherited descriptor shares the parent's lock: drop it. */
        close(fd);
        /* Blocks until the parent lets go, well within the wait. */
        _exit(store_lock(path_in("lock"), 5000, "VM y", &other) == 0 ? 0 : 1);
    }
    usleep(100 * 1000);
    store_unlock(fd);
    {
        int status;

        ck_assert_int_eq(waitpid(child, &status, 0), child);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}
END_TEST

/* Threads of one program queue on the same lock and never overlap. */
struct lock_worker {
    pthread_t thread;
    atomic_int *inside;
    atomic_int *overlaps;
    const char *path;
    int taken;
    char error[256];
};

static void *lock_worker_main(void *arg)
{
    struct lock_worker *w = arg;

    for (int i = 0; i < 25; i++) {
        int fd;

        if (store_lock(w->path, 10000, "VM t", &fd) != 0) {
            snprintf(w->error, sizeof(w->error), "%s",
                     vmm_error_last()->message);
            break;
        }
        if (atomic_fetch_add(w->inside, 1) != 0)
            atomic_fetch_add(w->overlaps, 1);
        usleep(200);
        atomic_fetch_sub(w->inside, 1);
        store_unlock(fd);
        w->taken++;
    }
    return NULL;
}

START_TEST(lock_excludes_threads)
{
    struct lock_worker w[8];
    atomic_int inside = 0, overlaps = 0;
    char path[PATH_MAX];

    /* path_in's buffer is not for threads. */
    snprintf(path, sizeof(path), "%s", path_in("lock"));

    for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
        w[i] = (struct lock_worker){ .inside = &inside, .overlaps = &overlaps,
                                     .path = path };
        ck_assert_int_eq(pthread_create(&w[i].thread, NULL, lock_worker_main,
                                        &w[i]), 0);
    }
    for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
        pthread_join(w[i].thread, NULL);
        ck_assert_msg(w[i].taken == 25, "thread %zu took the lock %d times: "
                      "%s", i, w[i].taken, w[i].error);
    }
    ck_assert_int_eq(atomic_load(&overlaps), 0);
}
END_TEST

/* A lock whose file was removed and made anew must not count as held. */
START_TEST(lock_follows_replaced_file)
{
    struct stat a, b;
    int fd1, fd2;

    ck_assert_int_eq(store_lock(path_in("lock"), 0, "VM z", &fd1), 0);
    ck_assert_int_eq(fstat(fd1, &a), 0);
    ck_assert_int_eq(unlink(path_in("lock")), 0);
    ck_assert_int_eq(store_lock(path_in("lock"), 0, "VM z", &fd2), 0);
    ck_assert_int_eq(fstat(fd2, &b), 0);
    ck_assert_int_ne(a.st_ino, b.st_ino);
    store_unlock(fd1);
    store_unlock(fd2);
}
END_TEST

/*
 * A record write killed between its temporary file and the rename leaves
 * that file; the next write replaces it instead of adding another.
 */
START_TEST(killed_record_write_leaves_no_pile)
{
    struct vm_record rec, back;
    int files = 0;
    DIR *d;

    sample(&rec);
    write_text("vm.json.tmp", "half a record");
    ck_assert_int_eq(record_write(path_in("vm.json"), &rec), 0);
    ck_assert_int_eq(record_read(path_in("vm.json"), &back), 0);
    record_clear(&back);
    record_clear(&rec);
    d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        files += e->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(files, 1);
}
END_TEST

START_TEST(mkdirs_and_remove_tree)
{
    struct stat st;

    ck_assert_int_eq(store_mkdirs(path_in("a/b/c"), 0700), 0);
    ck_assert_int_eq(store_mkdirs(path_in("a/b/c"), 0700), 0);
    write_text("a/b/c/file", "x");
    ck_assert_int_eq(symlink("/etc", path_in("a/b/link")), 0);
    ck_assert_int_eq(store_remove_tree(path_in("a")), 0);
    ck_assert_int_eq(stat("/etc/passwd", &st), 0); /* links not followed */
    ck_assert_int_ne(stat(path_in("a"), &st), 0);
    ck_assert_int_eq(store_remove_tree(path_in("a")), 0);
}
END_TEST

START_TEST(read_file_limit)
{
    char *data;
    size_t len;

    write_text("big", "0123456789");
    ck_assert_int_eq(store_read_file(path_in("big"), 5, &data, &len),
                     VMM_ECORRUPT);
    ck_assert_int_eq(store_read_file(path_in("big"), 10, &data, &len), 0);
    ck_assert_uint_eq(len, 10);
    ck_assert_str_eq(data, "0123456789");
    free(data);
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, write_leaves_no_temp_files);
    tcase_add_test(tc, corrupt_records);
    tcase_add_test(tc, each_field_checked);
    tcase_add_test(tc, missing_record);
    tcase_add_test(tc, lock_busy_names_holder);
    tcase_add_test(tc, lock_waits_for_release);
    tcase_add_test(tc, lock_follows_replaced_file);
    tcase_add_test(tc, lock_excludes_threads);
    tcase_add_test(tc, killed_record_write_leaves_no_pile);
    tcase_add_test(tc, mkdirs_and_remove_tree);
    tcase_add_test(tc, read_file_limit);
    suite_add_tcase(s, tc);
    return s;
}
