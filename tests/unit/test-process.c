/*
 * Suite "process": the VMM ownership object, against the Firecracker API
 * emulator (FC_EMULATOR) standing in for the firecracker binary.
 *
 * Every test works in its own mktemp -d directory, removes it, and ends
 * every process it started. "Nothing left behind" is checked by looking
 * for any process whose command line names the test's API socket.
 *
 * The test cases about processes run twice: with pidfds, and as where
 * pidfd_open fails with ENOSYS (the "-no-pidfd" cases), where the library
 * checks /proc before each kill(2) and polls /proc for deaths.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check-main.h"
#include "api.h"
#include "internal.h"
#include "process.h"

static char suite_dir[64]; /* made by the runner for each test case */
static char dir[128];       /* one per test, inside suite_dir */
static char sock[192], log_path[192], exit_path[192];
static const char *emulator;
static vmm_context *ctx;
static char logged[8192]; /* what the library logged, lines joined */
static bool no_pidfd;     /* this test case does without pidfds */

static void capture_log(int level, const char *component, const char *vm,
                        const char *message, void *user)
{
    size_t len = strlen(logged);

    (void)level; (void)component; (void)vm; (void)user;
    snprintf(logged + len, sizeof(logged) - len, "%s\n", message);
}

static void setup(void)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;

    emulator = getenv("FC_EMULATOR");
    ck_assert_msg(emulator != NULL, "FC_EMULATOR is not set");
    snprintf(dir, sizeof(dir), "%s/t-XXXXXX", suite_dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/api.sock", dir);
    snprintf(log_path, sizeof(log_path), "%s/vmm.log", dir);
    snprintf(exit_path, sizeof(exit_path), "%s/vmm.exit", dir);
    logged[0] = '\0';
    o.log_fn = capture_log;
    o.log_level = VMM_LOG_DEBUG;
    o.state_dir = dir;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);

    for (const char *const *k = (const char *const[]){
             "FCEMU_DELAY_BIND_MS", "FCEMU_DAEMONIZE", "FCEMU_NEVER_BIND",
             "FCEMU_EXIT_EARLY", "FCEMU_START_FAULT", "FCEMU_HANG_ON",
             "FCEMU_EXIT_AFTER_START", "FCEMU_CTRLALTDEL_MS", "FCEMU_TRACE",
             NULL }; *k != NULL; k++)
        unsetenv(*k);
}

static void setup_no_pidfd(void)
{
    no_pidfd = true;
    process_test_force_no_pidfd(true);
}

static void teardown_no_pidfd(void)
{
    process_test_force_no_pidfd(false);
    no_pidfd = false;
}

/* Number of pidfds this process holds. */
static int pidfds_held(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int count = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        char path[300], link[64];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        n = readlink(path, link, sizeof(link) - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        if (strcmp(link, "anon_inode:[pidfd]") == 0)
            count++;
    }
    closedir(d);
    return count;
}

/* Number of live processes whose command line mentions `needle`. */
static int procs_naming(const char *needle)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int count = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        char path[300], buf[4096], stat_buf[512];
        ssize_t n;
        int fd;

        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue; /* kernel thread or zombie */
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[n] = '\0';
        if (strstr(buf, needle) == NULL)
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        fd = open(path, O_RDONLY);
        n = fd >= 0 ? read(fd, stat_buf, sizeof(stat_buf) - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            stat_buf[n] = '\0';
            if (strrchr(stat_buf, ')') && strrchr(stat_buf, ')')[2] == 'Z')
                continue;
        }
        count++;
    }
    closedir(d);
    return count;
}

/* Kills whatever is left running that names `needle`. */
static void kill_leftovers(const char *needle)
{
    DIR *d = opendir("/proc");
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char path[300], buf[4096];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[n] = '\0';
        if (strstr(buf, needle) != NULL)
            kill((pid_t)atoi(de->d_name), SIGKILL);
    }
    closedir(d);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    kill_leftovers(sock);
    vmm_context_free(ctx);
    ctx = NULL;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * In the runner, around each test case: a failed assertion ends a test
 * before its teardown, and the VMMs it spawned outlive it by design, so
 * the runner kills whatever still names the case's directory.
 */
static void case_setup(void)
{
    snprintf(suite_dir, sizeof(suite_dir), "/tmp/libvmm-process-XXXXXX");
    if (mkdtemp(suite_dir) == NULL)
        suite_dir[0] = '\0';
}

static void case_teardown(void)
{
    if (suite_dir[0] == '\0')
        return;
    kill_leftovers(suite_dir);
    usleep(100000);
    nftw(suite_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct process_spawn_spec spec_for(uint32_t timeout_ms)
{
    struct process_spawn_spec s = {
        .binary = emulator,
        .id = "vm1",
        .api_socket = sock,
        .log_path = log_path,
        .exit_path = exit_path,
        .netns_fd = -1,
        .ready_timeout_ms = timeout_ms,
        .vm_name = "vm1",
    };

    return s;
}

static struct vmm_process *spawn_ok(uint32_t timeout_ms)
{
    struct process_spawn_spec s = spec_for(timeout_ms);
    struct vmm_process *p = NULL;
    int r = process_spawn(ctx, &s, &p);

    ck_assert_msg(r == 0, "spawn: %d %s", r, vmm_error_last()->message);
    ck_assert_ptr_nonnull(p);
    return p;
}

static int read_stat(pid_t pid, char *state, pid_t *ppid,
                     unsigned long long *start)
{
    char path[64], buf[1024], *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime cutime cstime prio nice threads itreal start */
    if (sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
               "%*d %*d %*d %*d %*d %*d %llu", state, ppid, start) != 3)
        return -1;
    return 0;
}

static bool pid_gone(pid_t pid, unsigned long long start)
{
    unsigned long long s;
    pid_t ppid;
    char state;

    return read_stat(pid, &state, &ppid, &s) < 0 || s != start ||
           state == 'Z';
}

static void assert_nothing_left(void)
{
    ck_assert_int_eq(procs_naming(sock), 0);
    ck_assert_int_eq(access(sock, F_OK), -1);
}

static void ms_sleep(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* Waits up to 10 s until `count` live processes name `needle`. */
static bool wait_procs_naming(const char *needle, int count)
{
    for (int i = 0; i < 1000; i++) {
        if (procs_naming(needle) == count)
            return true;
        ms_sleep(10);
    }
    return false;
}

/* Configures a kernel (an empty file will do) and sends InstanceStart. */
static int start_vm(struct vmm_process *p)
{
    char kernel[160];
    struct api_boot_source boot = { kernel, NULL, NULL };

    snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
    close(open(kernel, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ck_assert_int_eq(api_put_boot_source(process_api(p), &boot), 0);
    return api_action(process_api(p), API_ACTION_INSTANCE_START);
}

/* --- spawning and readiness ---------------------------------------- */

START_TEST(spawn_identity_and_kill)
{
    struct vmm_process *p = spawn_ok(5000);
    struct api_instance_info info;
    unsigned long long start;
    char state, how[128], link[256], path[64];
    pid_t pid = process_pid(p), ppid;
    ssize_t n;

    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(read_stat(pid, &state, &ppid, &start), 0);
    ck_assert_uint_eq(process_start_time(p), start);
    ck_assert_int_ne(ppid, getpid());
    ck_assert(process_alive(p));
    /* The object holds its process by a pidfd, or by pid and start time. */
    ck_assert_int_eq(pidfds_held(), (no_pidfd ? 0 : 1));
    ck_assert_int_eq(api_get_instance_info(process_api(p), &info), 0);
    ck_assert_str_eq(info.id, "vm1");

    /* stdio: stdin /dev/null, stdout and stderr the log. */
    snprintf(path, sizeof(path), "/proc/%d/fd/0", (int)pid);
    n = readlink(path, link, sizeof(link) - 1);
    ck_assert_int_gt(n, 0);
    link[n] = '\0';
    ck_assert_str_eq(link, "/dev/null");
    snprintf(path, sizeof(path), "/proc/%d/fd/1", (int)pid);
    n = readlink(path, link, sizeof(link) - 1);
    ck_assert_int_gt(n, 0);
    link[n] = '\0';
    ck_assert_str_eq(link, log_path);

    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "unknown");
    ck_assert_int_eq(process_kill(p), 0);
    ck_assert(!process_alive(p));
    ck_assert(pid_gone(pid, start));
    assert_nothing_left();
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "killed by signal 9 (SIGKILL)");
    ck_assert_ptr_nonnull(strstr(logged, "SIGKILL"));
    process_free(p);
}
END_TEST

START_TEST(deadline_does_not_end_vmm)
{
    struct vmm_process *p = spawn_ok(1000);
    pid_t pid = process_pid(p);
    unsigned long long start;
    pid_t ppid;
    char state;

    sleep(3);
    ck_assert(process_alive(p));
    ck_assert_int_eq(read_stat(pid, &state, &ppid, &start), 0);
    ck_assert_int_ne(state, 'Z');
    ck_assert_uint_eq(start, process_start_time(p));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    assert_nothing_left();
}
END_TEST

START_TEST(free_leaves_vmm_running)
{
    struct vmm_process *p = spawn_ok(5000);
    pid_t pid = process_pid(p);
    uint64_t start = process_start_time(p);

    process_free(p);
    ms_sleep(100);
    ck_assert(!pid_gone(pid, start));
    ck_assert_int_eq(process_attach(ctx, "vm1", pid, start, sock, &p), 0);
    ck_assert_int_eq(pidfds_held(), (no_pidfd ? 0 : 1));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    assert_nothing_left();
}
END_TEST

START_TEST(survives_exit_of_spawner)
{
    unsigned long long info[2], start;
    struct vmm_process *p;
    int fds[2], status;
    pid_t spawner, pid, ppid, up;
    char state;

    ck_assert_int_eq(pipe(fds), 0);
    spawner = fork();
    ck_assert_int_ge(spawner, 0);
    if (spawner == 0) {
        struct process_spawn_spec s = spec_for(5000);

        close(fds[0]);
        if (process_spawn(ctx, &s, &p) < 0)
            _exit(1);
        info[0] = (unsigned long long)process_pid(p);
        info[1] = process_start_time(p);
        if (write(fds[1], info, sizeof(info)) != sizeof(info))
            _exit(2);
        _exit(0); /* no free, no stop: the program just goes away */
    }
    close(fds[1]);
    ck_assert_int_eq(read(fds[0], info, sizeof(info)), sizeof(info));
    close(fds[0]);
    ck_assert_int_eq(waitpid(spawner, &status, 0), spawner);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pid = (pid_t)info[0];

    ms_sleep(300);
    ck_assert_int_eq(read_stat(pid, &state, &ppid, &start), 0);
    ck_assert_msg(state != 'Z', "VMM is a zombie");
    ck_assert_uint_eq(start, info[1]);
    /* Neither this program nor the dead spawner is an ancestor. */
    for (up = ppid; up > 1; up = ppid) {
        unsigned long long s;

        ck_assert_int_ne(up, getpid());
        ck_assert_int_ne(up, spawner);
        if (read_stat(up, &state, &ppid, &s) < 0)
            break;
    }

    ck_assert_int_eq(process_attach(ctx, "vm1", pid, info[1], sock, &p), 0);
    ck_assert(process_alive(p));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    assert_nothing_left();
}
END_TEST

/*
 * A child process that spawns a VMM which binds its socket only after
 * 30 s, far beyond any wait of the tests: killed, it leaves a start in
 * flight.
 */
static pid_t fork_slow_spawner(void)
{
    pid_t spawner;

    setenv("FCEMU_DELAY_BIND_MS", "30000", 1);
    spawner = fork();
    ck_assert_int_ge(spawner, 0);
    if (spawner == 0) {
        struct process_spawn_spec s = spec_for(10000);
        struct vmm_process *p;

        _exit(process_spawn(ctx, &s, &p) < 0 ? 1 : 0);
    }
    unsetenv("FCEMU_DELAY_BIND_MS");
    return spawner;
}

/*
 * A spawner killed after the fork but before the VMM bound its socket
 * leaves a start in flight that no socket shows: its keeper, named in the
 * exit record, is found and ended with the VMM.
 */
START_TEST(unbound_orphan_is_ended)
{
    pid_t spawner;

    ck_assert(!process_start_in_flight(exit_path));
    spawner = fork_slow_spawner();
    /* The spawner dies once the VMM has exec'd, however slow the host. */
    ck_assert_msg(wait_procs_naming(sock, 1), "no VMM came up for %s", sock);
    kill(spawner, SIGKILL);
    waitpid(spawner, NULL, 0);
    ck_assert_int_eq(procs_naming(sock), 1);
    ck_assert_int_eq(access(sock, F_OK), -1);

    ck_assert(process_start_in_flight(exit_path));
    ck_assert_int_eq(process_end_start(ctx, "vm1", exit_path), 0);
    ck_assert(!process_start_in_flight(exit_path));
    ck_assert_int_eq(process_end_start(ctx, "vm1", exit_path), VMM_ENOTFOUND);
    assert_nothing_left();
}
END_TEST

/*
 * A spawner killed at any moment of its start leaves either a start on
 * record, which ends with everything it made, or nothing that will ever
 * run: never a VMM that comes up unrecorded. Killed at delays across the
 * fork, the session leader's hand-over and the keeper's.
 */
START_TEST(spawner_killed_anywhere_leaves_no_unrecorded_vmm)
{
    for (int i = 0; i < 24; i++) {
        pid_t spawner;

        spawner = fork_slow_spawner();
        usleep((useconds_t)(i * 125));
        kill(spawner, SIGKILL);
        waitpid(spawner, NULL, 0);

        if (process_start_in_flight(exit_path)) {
            /* Or it ended on its own: the spawner died between recording
             * the start and letting it go on. */
            int r = process_end_start(ctx, "vm1", exit_path);

            ck_assert_msg(r == 0 || r == VMM_ENOTFOUND, "delay %d us: %s",
                          i * 125, vmm_error_last()->message);
        } else {
            /* Whatever was forked had all the time it needs to exec. */
            ms_sleep(300);
            ck_assert_msg(procs_naming(sock) == 0, "delay %d us: a VMM "
                          "runs that no record names", i * 125);
        }
        ck_assert(!process_start_in_flight(exit_path));
        ck_assert_msg(procs_naming(sock) == 0, "delay %d us: a VMM is left",
                      i * 125);
        ck_assert_int_eq(access(sock, F_OK), -1);
    }
}
END_TEST

/*
 * A record that outlived its start (a host restart, a start ended here)
 * names a session id that another VM's keeper may hold by now: that
 * keeper holds its own exit file, not this one, and is left alone.
 */
START_TEST(stale_record_spares_another_vms_keeper)
{
    char other[PATH_MAX], text[128];
    struct vmm_process *p = spawn_ok(5000);
    FILE *f;

    f = fopen(exit_path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(text, sizeof(text), f));
    fclose(f);
    ck_assert_msg(strncmp(text, "keeper ", 7) == 0, "exit record: %s", text);
    snprintf(other, sizeof(other), "%s/other.exit", dir);
    f = fopen(other, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);

    ck_assert(process_start_in_flight(exit_path));
    ck_assert(!process_start_in_flight(other));
    ck_assert_int_eq(process_end_start(ctx, "vm2", other), VMM_ENOTFOUND);
    ck_assert(process_alive(p));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);

    /* With its VMM gone the keeper closes the record: nothing in flight
     * is left to look for. */
    for (int i = 0; i < 1000 && process_start_in_flight(exit_path); i++)
        ms_sleep(10);
    ck_assert(!process_start_in_flight(exit_path));
    f = fopen(exit_path, "r");
    ck_assert_ptr_nonnull(f);
    text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
    fclose(f);
    ck_assert_msg(strstr(text, "\nend\n") != NULL, "exit record: %s", text);
}
END_TEST

/*
 * A firecracker that daemonized (forked, then left for a session of its
 * own) before binding, its spawner killed: ending the start ends it too,
 * though no signal to the keeper's group reaches it.
 */
START_TEST(daemonized_orphan_is_ended)
{
    pid_t spawner;

    setenv("FCEMU_DAEMONIZE", "1", 1);
    spawner = fork_slow_spawner();
    unsetenv("FCEMU_DAEMONIZE");
    ck_assert_msg(wait_procs_naming(sock, 1), "no VMM came up for %s", sock);
    /* The daemon's parent is gone once the keeper reaped it. */
    for (int i = 0; i < 100 && !process_start_in_flight(exit_path); i++)
        ms_sleep(10);
    ms_sleep(100);
    kill(spawner, SIGKILL);
    waitpid(spawner, NULL, 0);

    ck_assert(process_start_in_flight(exit_path));
    ck_assert_int_eq(process_end_start(ctx, "vm1", exit_path), 0);
    ck_assert(!process_start_in_flight(exit_path));
    assert_nothing_left();
}
END_TEST

START_TEST(no_inherited_fds)
{
    struct vmm_process *p;
    struct pollfd pfd;
    int fds[2];

    /* A pipe without O_CLOEXEC: if any child kept its write end, the
     * read end would never see end of file. */
    ck_assert_int_eq(pipe(fds), 0);
    p = spawn_ok(5000);
    close(fds[1]);
    pfd.fd = fds[0];
    pfd.events = POLLIN;
    ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
    ck_assert(pfd.revents & POLLHUP);
    close(fds[0]);
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
}
END_TEST

START_TEST(joins_netns)
{
    char want[64], got[64], path[64];
    struct vmm_process *p;
    struct process_spawn_spec s = spec_for(5000);
    ssize_t n;

    /* The spawner's own namespace: enough to see the fd is used. */
    s.netns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(s.netns_fd, 0);
    ck_assert_int_eq(process_spawn(ctx, &s, &p), 0);
    close(s.netns_fd);
    n = readlink("/proc/self/ns/net", want, sizeof(want) - 1);
    ck_assert_int_gt(n, 0);
    want[n] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)process_pid(p));
    n = readlink(path, got, sizeof(got) - 1);
    ck_assert_int_gt(n, 0);
    got[n] = '\0';
    ck_assert_str_eq(got, want);
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
}
END_TEST

START_TEST(bind_delay_within_deadline)
{
    struct vmm_process *p;

    setenv("FCEMU_DELAY_BIND_MS", "300", 1);
    p = spawn_ok(5000);
    ck_assert(process_alive(p));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    assert_nothing_left();
}
END_TEST

START_TEST(daemonizing_binary_is_found)
{
    struct vmm_process *p;
    struct api_instance_info info;

    setenv("FCEMU_DAEMONIZE", "1", 1);
    setenv("FCEMU_DELAY_BIND_MS", "100", 1);
    p = spawn_ok(5000);
    ck_assert(process_alive(p));
    ck_assert_int_eq(api_get_instance_info(process_api(p), &info), 0);
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    assert_nothing_left();
}
END_TEST

/* Spawns expecting failure `code` whose message holds every needle. */
static void spawn_fails(uint32_t timeout_ms, int code, const char *needle1,
                        const char *needle2)
{
    struct process_spawn_spec s = spec_for(timeout_ms);
    struct vmm_process *p = NULL;
    const vmm_error *e;

    ck_assert_int_eq(process_spawn(ctx, &s, &p), code);
    ck_assert_ptr_null(p);
    e = vmm_error_last();
    ck_assert_int_eq(e->code, code);
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "--- %s\n", e->message);
    if (needle1)
        ck_assert_msg(strstr(e->message, needle1), "\"%s\" lacks \"%s\"",
                      e->message, needle1);
    if (needle2)
        ck_assert_msg(strstr(e->message, needle2), "\"%s\" lacks \"%s\"",
                      e->message, needle2);
    assert_nothing_left();
}

START_TEST(bind_delay_beyond_deadline)
{
    setenv("FCEMU_DELAY_BIND_MS", "5000", 1);
    spawn_fails(400, VMM_ETIMEDOUT, "within 400 ms", "SIGKILL");
}
END_TEST

START_TEST(never_binds)
{
    setenv("FCEMU_NEVER_BIND", "1", 1);
    spawn_fails(300, VMM_ETIMEDOUT, sock, "killed by signal 9");
}
END_TEST

START_TEST(daemon_never_binds)
{
    setenv("FCEMU_DAEMONIZE", "1", 1);
    setenv("FCEMU_NEVER_BIND", "1", 1);
    spawn_fails(300, VMM_ETIMEDOUT, "within 300 ms", NULL);
}
END_TEST

START_TEST(exits_early)
{
    setenv("FCEMU_EXIT_EARLY", "152", 1);
    spawn_fails(5000, VMM_EPROCESS, "exited with status 152 (bad "
                "configuration)", "FCEMU_EXIT_EARLY=152");
}
END_TEST

START_TEST(exits_early_generic)
{
    setenv("FCEMU_EXIT_EARLY", "1", 1);
    spawn_fails(5000, VMM_EPROCESS, "exited with status 1 (generic error)",
                log_path);
}
END_TEST

START_TEST(hangs_on_readiness_request)
{
    setenv("FCEMU_HANG_ON", "GET /", 1);
    spawn_fails(500, VMM_ETIMEDOUT, "GET /", "killed by signal 9");
}
END_TEST

START_TEST(start_fault_verbatim)
{
    const char *fault = "Injected: Cannot start microvm \"vm1\" (ünïcode)";
    struct vmm_process *p;
    const vmm_error *e;

    setenv("FCEMU_START_FAULT", fault, 1);
    p = spawn_ok(5000);
    ck_assert_int_eq(start_vm(p), VMM_EAPI);
    e = vmm_error_last();
    ck_assert_int_eq(e->http_status, 400);
    ck_assert_str_eq(e->fault_message, fault);
    ck_assert_ptr_nonnull(strstr(e->message, "PUT /actions on "));
    ck_assert_ptr_nonnull(strstr(e->message, sock));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    assert_nothing_left();
}
END_TEST

START_TEST(request_timeout_does_not_end_vmm)
{
    struct api_machine_config m = { 1, 128, false, false };
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    struct vmm_process *p;
    struct timespec a, b;
    double secs;

    vmm_context_free(ctx);
    o.api_timeout_ms = 300;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);
    setenv("FCEMU_HANG_ON", "PUT /machine-config", 1);
    p = spawn_ok(5000);
    clock_gettime(CLOCK_MONOTONIC, &a);
    ck_assert_int_eq(api_put_machine_config(process_api(p), &m),
                     VMM_ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_vmm_error(VMM_ETIMEDOUT, "PUT /machine-config");
    secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    ck_assert_msg(secs < 5.0, "the wait was not bounded: %.1f s", secs);
    ms_sleep(200);
    ck_assert(process_alive(p));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
}
END_TEST

/* --- stop ----------------------------------------------------------- */

START_TEST(stop_graceful)
{
    struct vmm_process *p = spawn_ok(5000);
    char how[128];

    ck_assert_int_eq(start_vm(p), 0);
    ck_assert_int_eq(process_stop(p, 5000), 0);
    ck_assert(!process_alive(p));
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "exited with status 0 (success)");
    ck_assert_ptr_nonnull(strstr(logged, "exited after SendCtrlAltDel"));
    process_free(p);
    assert_nothing_left();
}
END_TEST

START_TEST(stop_falls_back_to_sigkill)
{
    struct vmm_process *p;
    char how[128];

    setenv("FCEMU_CTRLALTDEL_MS", "-1", 1); /* the guest ignores it */
    p = spawn_ok(5000);
    ck_assert_int_eq(start_vm(p), 0);
    ck_assert_int_eq(process_stop(p, 300), 0);
    ck_assert(!process_alive(p));
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "killed by signal 9 (SIGKILL)");
    ck_assert_ptr_nonnull(strstr(logged, "ended by SIGKILL"));
    process_free(p);
    assert_nothing_left();
}
END_TEST

START_TEST(stop_of_dead_vmm)
{
    struct vmm_process *p;
    char how[128];

    setenv("FCEMU_EXIT_AFTER_START", "0", 1);
    p = spawn_ok(5000);
    ck_assert_int_eq(start_vm(p), 0);
    for (int i = 0; i < 1000 && process_alive(p); i++)
        ms_sleep(10);
    ck_assert(!process_alive(p));
    ck_assert_int_eq(process_stop(p, 1000), 0);
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "exited with status 0 (success)");
    process_free(p);
    assert_nothing_left();
}
END_TEST

START_TEST(killed_from_outside)
{
    struct vmm_process *p = spawn_ok(5000);
    pid_t pid = process_pid(p);
    uint64_t start = process_start_time(p);
    struct timespec a, b;
    char how[128];
    double secs;

    ck_assert_int_eq(start_vm(p), 0);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 1000 && process_alive(p); i++)
        ms_sleep(10);
    ck_assert(!process_alive(p));

    /* Nothing left to signal: both return at once, and clean up. */
    clock_gettime(CLOCK_MONOTONIC, &a);
    ck_assert_int_eq(process_stop(p, 5000), 0);
    ck_assert_int_eq(process_kill(p), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    ck_assert_msg(secs < 2.0, "stop of a dead VMM waited %.1f s", secs);
    ck_assert(pid_gone(pid, start));
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "killed by signal 9 (SIGKILL)");
    ck_assert_ptr_null(strstr(logged, "ended by SIGKILL"));
    process_free(p);
    assert_nothing_left();
}
END_TEST

/* --- attach ---------------------------------------------------------- */

static pid_t start_sleep(void)
{
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execlp("sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Ends the sleep with SIGTERM and checks nothing else had ended it. */
static void end_sleep(pid_t pid)
{
    int status;

    ck_assert_int_eq(waitpid(pid, &status, WNOHANG), 0);
    kill(pid, SIGTERM);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    ck_assert_int_eq(WTERMSIG(status), SIGTERM);
}

START_TEST(attach_refuses_recycled_pid)
{
    struct vmm_process *p = spawn_ok(5000), *q = (void *)1;
    uint64_t dead_start = process_start_time(p);
    unsigned long long sleep_start;
    pid_t sleeper, ppid;
    char state;

    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    sleeper = start_sleep();
    ms_sleep(50);
    ck_assert_int_eq(read_stat(sleeper, &state, &ppid, &sleep_start), 0);
    /* The pid "came back" as the sleep: the start time gives it away. */
    if (sleep_start == dead_start)
        dead_start--;
    ck_assert_int_eq(process_attach(ctx, "vm1", sleeper, dead_start, sock,
                                    &q), VMM_ENOTFOUND);
    ck_assert_ptr_eq(q, (void *)1);
    ck_assert_vmm_error(VMM_ENOTFOUND, "another process");
    ms_sleep(50);
    end_sleep(sleeper);
}
END_TEST

START_TEST(attach_refuses_foreign_listener)
{
    struct vmm_process *p = spawn_ok(5000), *q = NULL;
    unsigned long long sleep_start;
    pid_t sleeper, ppid;
    char state;

    sleeper = start_sleep();
    ms_sleep(50);
    ck_assert_int_eq(read_stat(sleeper, &state, &ppid, &sleep_start), 0);
    /* Right pid and start time, but the socket is served by the VMM. */
    ck_assert_int_eq(process_attach(ctx, "vm1", sleeper, sleep_start, sock,
                                    &q), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "is served by");
    end_sleep(sleeper);
    ck_assert(process_alive(p));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
}
END_TEST

START_TEST(attach_to_exited_vmm)
{
    struct vmm_process *p = spawn_ok(5000), *q = NULL;
    pid_t pid = process_pid(p);
    uint64_t start = process_start_time(p);

    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    ck_assert_int_eq(process_attach(ctx, "vm1", pid, start, sock, &q),
                     VMM_ENOTFOUND);
    ck_assert_ptr_null(q);
}
END_TEST

/* --- the API socket before a spawn --------------------------------- */

static int bind_socket(bool do_listen)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    strcpy(addr.sun_path, sock);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    if (do_listen)
        ck_assert_int_eq(listen(fd, 4), 0);
    return fd;
}

START_TEST(stale_socket_removed)
{
    struct vmm_process *p;

    close(bind_socket(false)); /* the file stays, nobody listens */
    ck_assert_int_eq(access(sock, F_OK), 0);
    p = spawn_ok(5000);
    ck_assert_ptr_nonnull(strstr(logged, "removed stale API socket"));
    ck_assert_int_eq(process_kill(p), 0);
    process_free(p);
    assert_nothing_left();
}
END_TEST

START_TEST(live_socket_refused)
{
    struct process_spawn_spec s = spec_for(5000);
    struct vmm_process *p = NULL;
    int fd = bind_socket(true);

    ck_assert_int_eq(process_spawn(ctx, &s, &p), VMM_EBUSY);
    ck_assert_vmm_error(VMM_EBUSY, sock);
    ck_assert_int_eq(access(sock, F_OK), 0); /* someone else's */
    ck_assert_int_eq(procs_naming(sock), 0);
    close(fd);
}
END_TEST

START_TEST(long_socket_path_refused)
{
    char longpath[200];
    struct process_spawn_spec s = spec_for(5000);
    struct vmm_process *p = NULL;

    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, dir, strlen(dir));
    longpath[strlen(dir)] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    s.api_socket = longpath;
    ck_assert_int_eq(process_spawn(ctx, &s, &p), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, longpath);
    ck_assert_int_eq(procs_naming(dir), 0);
}
END_TEST

START_TEST(socket_path_not_a_socket)
{
    int fd = open(sock, O_CREAT | O_WRONLY, 0600);
    struct process_spawn_spec s = spec_for(5000);
    struct vmm_process *p = NULL;

    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(process_spawn(ctx, &s, &p), VMM_EEXIST);
    ck_assert_vmm_error(VMM_EEXIST, sock);
    ck_assert_int_eq(access(sock, F_OK), 0); /* not ours to delete */
}
END_TEST

START_TEST(missing_binary)
{
    struct process_spawn_spec s = spec_for(5000);
    struct vmm_process *p = NULL;

    s.binary = "/nonexistent/firecracker";
    ck_assert_int_eq(process_spawn(ctx, &s, &p), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "/nonexistent/firecracker");
    s.binary = "no-such-firecracker-binary";
    ck_assert_int_eq(process_spawn(ctx, &s, &p), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "not found in PATH");
    ck_assert_ptr_null(p);
}
END_TEST

START_TEST(bad_spec)
{
    struct process_spawn_spec s = spec_for(5000);
    struct vmm_process *p = NULL;

    ck_assert_int_eq(process_spawn(ctx, NULL, &p), VMM_EINVAL);
    ck_assert_int_eq(process_spawn(ctx, &s, NULL), VMM_EINVAL);
    s.ready_timeout_ms = 0;
    ck_assert_int_eq(process_spawn(ctx, &s, &p), VMM_EINVAL);
    s = spec_for(5000);
    s.exit_path = NULL;
    ck_assert_int_eq(process_spawn(ctx, &s, &p), VMM_EINVAL);
    s = spec_for(5000);
    s.api_socket = "";
    ck_assert_int_eq(process_spawn(ctx, &s, &p), VMM_EINVAL);
    ck_assert_int_eq(process_attach(ctx, "vm1", 0, 1, sock, &p), VMM_EINVAL);
    ck_assert_int_eq(process_kill(NULL), VMM_EINVAL);
    ck_assert_int_eq(process_stop(NULL, 1), VMM_EINVAL);
    ck_assert_ptr_null(p);
    process_free(NULL);
}
END_TEST

/* --- exit records and logs ------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(exit_code_meanings)
{
    int known[] = { 0, 1, 2, 148, 149, 150, 151, 152, 153, 154, 155, 156,
                    157 };

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ck_assert_ptr_nonnull(process_exit_code_meaning(known[i]));
    ck_assert_ptr_null(process_exit_code_meaning(3));
    ck_assert_ptr_null(process_exit_code_meaning(147));
    ck_assert_ptr_null(process_exit_code_meaning(158));
    ck_assert_str_eq(process_exit_code_meaning(152), "bad configuration");
    ck_assert_ptr_nonnull(strstr(process_exit_code_meaning(148), "seccomp"));
}
END_TEST

START_TEST(describe_exit_records)
{
    char how[128];

    write_file(exit_path, "pid 42 exited 153\n");
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "exited with status 153 (command line arguments "
                     "parsing error)");
    write_file(exit_path, "pid 42 killed 11\n");
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "killed by signal 11 (SIGSEGV)");
    write_file(exit_path, "pid 42 exited 7\n");
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "exited with status 7");
    write_file(exit_path, "garbage");
    process_describe_exit(exit_path, how, sizeof(how));
    ck_assert_str_eq(how, "unknown");
    process_describe_exit("/nonexistent/exit", how, sizeof(how));
    ck_assert_str_eq(how, "unknown");
}
END_TEST

START_TEST(log_tail_lines)
{
    char tail[64];

    write_file(log_path, "one\ntwo\nthree\nfour\n");
    process_log_tail(log_path, 2, tail, sizeof(tail));
    ck_assert_str_eq(tail, "three\nfour");
    process_log_tail(log_path, 10, tail, sizeof(tail));
    ck_assert_str_eq(tail, "one\ntwo\nthree\nfour");
    process_log_tail(log_path, 2, tail, 5);
    ck_assert_str_eq(tail, "four");
    process_log_tail("/nonexistent/log", 2, tail, sizeof(tail));
    ck_assert_str_eq(tail, "");
}
END_TEST

/* The tests of one test case, run with pidfds and again without. */
struct case_tests {
    const char *name;
    const TTest *tests[12];
};

static TCase *add_case(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_add_unchecked_fixture(tc, case_setup, case_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return tc;
}

Suite *suite_make(void)
{
    const struct case_tests cases[] = {
        { "spawn", { spawn_identity_and_kill, deadline_does_not_end_vmm,
                     free_leaves_vmm_running, survives_exit_of_spawner,
                     no_inherited_fds, joins_netns,
                     bind_delay_within_deadline,
                     daemonizing_binary_is_found, unbound_orphan_is_ended,
                     spawner_killed_anywhere_leaves_no_unrecorded_vmm,
                     stale_record_spares_another_vms_keeper,
                     daemonized_orphan_is_ended } },
        { "failures", { bind_delay_beyond_deadline, never_binds,
                        daemon_never_binds, exits_early,
                        exits_early_generic, hangs_on_readiness_request,
                        start_fault_verbatim,
                        request_timeout_does_not_end_vmm } },
        { "stop", { stop_graceful, stop_falls_back_to_sigkill,
                    stop_of_dead_vmm, killed_from_outside } },
        { "attach", { attach_refuses_recycled_pid,
                      attach_refuses_foreign_listener,
                      attach_to_exited_vmm } },
    };
    static char names[ARRAY_SIZE(cases)][32]; /* Check keeps the pointer */
    Suite *s = suite_create("process");
    TCase *sockets, *records;

    for (int without = 0; without < 2; without++) {
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
            const char *name = cases[i].name;
            TCase *tc;

            if (without) {
                snprintf(names[i], sizeof(names[i]), "%s-no-pidfd", name);
                name = names[i];
            }
            tc = add_case(s, name);
            if (without)
                tcase_add_checked_fixture(tc, setup_no_pidfd,
                                          teardown_no_pidfd);
            for (size_t j = 0; j < ARRAY_SIZE(cases[i].tests) &&
                               cases[i].tests[j] != NULL; j++)
                tcase_add_test(tc, cases[i].tests[j]);
        }
    }

    sockets = add_case(s, "socket");
    tcase_add_test(sockets, stale_socket_removed);
    tcase_add_test(sockets, live_socket_refused);
    tcase_add_test(sockets, long_socket_path_refused);
    tcase_add_test(sockets, socket_path_not_a_socket);
    tcase_add_test(sockets, missing_binary);
    tcase_add_test(sockets, bad_spec);

    records = add_case(s, "records");
    tcase_add_test(records, exit_code_meanings);
    tcase_add_test(records, describe_exit_records);
    tcase_add_test(records, log_tail_lines);
    return s;
}
