/*
 * Suite "api": the Firecracker API client against the API emulator
 * (FC_EMULATOR), started here directly so this suite does not depend on
 * the process module.
 *
 * Requests meant to be valid are recorded (FCEMU_TRACE) into one trace
 * for the whole suite, which the last test hands to fc-api-check with
 * the official API description from ../shared.
 *
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

#include <yajl/yajl_tree.h>

#include "check-main.h"
#include "api.h"
#include "internal.h"

static char suite_dir[64];   /* the trace lives here, for the whole run */
static char trace[128];
static pid_t main_pid;

static char dir[128];
static char sock[192];
static pid_t emu = -1;
static struct api_client *c;

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

/* Emulators a failed test left behind: their command line names the dir. */
static void kill_leftovers(void)
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
        fd = open(path, O_RDONLY | O_CLOEXEC);
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
        if (strstr(buf, suite_dir) != NULL)
            kill((pid_t)atoi(de->d_name), SIGKILL);
    }
    closedir(d);
}

/* Check forks a child per test; only the runner removes the suite dir. */
static void remove_suite_dir(void)
{
    if (getpid() != main_pid || suite_dir[0] == '\0')
        return;
    kill_leftovers();
    usleep(100000);
    nftw(suite_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Starts the emulator on a fresh socket; `knob`=`value` (both may be
 * NULL) injects a behaviour, `traced` records the requests for the spec
 * check. Waits until the socket accepts connections.
 */
static void start_emulator(const char *knob, const char *value, bool traced)
{
    const char *binary = getenv("FC_EMULATOR");
    struct sockaddr_un addr = { .sun_family = AF_UNIX };

    ck_assert_msg(binary != NULL, "FC_EMULATOR is not set");
    snprintf(dir, sizeof(dir), "%s/t-XXXXXX", suite_dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/api.sock", dir);
    strcpy(addr.sun_path, sock);

    emu = fork();
    ck_assert_int_ge(emu, 0);
    if (emu == 0) {
        char log[256];
        int fd;

        snprintf(log, sizeof(log), "%s/emulator.log", dir);
        fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (traced)
            setenv("FCEMU_TRACE", trace, 1);
        if (knob != NULL)
            setenv(knob, value, 1);
        execl(binary, binary, "--api-sock", sock, "--id", "apitest",
              (char *)NULL);
        _exit(127);
    }

    for (int i = 0; i < 5000; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));

        close(fd);
        if (r == 0)
            break;
        ck_assert_int_eq(waitpid(emu, NULL, WNOHANG), 0);
        usleep(1000);
    }
    ck_assert_int_eq(api_client_new(&c, sock, 5000), 0);
}

static void setup_traced(void)
{
    start_emulator(NULL, NULL, true);
}

static void teardown(void)
{
    api_client_free(c);
    c = NULL;
    if (emu > 0) {
        kill(emu, SIGKILL);
        waitpid(emu, NULL, 0);
        emu = -1;
    }
    if (dir[0] != '\0')
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* GET /vm/config, parsed; the caller frees it with yajl_tree_free. */
static yajl_val vm_config(void)
{
    char *json = NULL;
    yajl_val doc;

    ck_assert_int_eq(api_get_vm_config(c, &json), 0);
    doc = yajl_tree_parse(json, NULL, 0);
    ck_assert_msg(doc != NULL, "not JSON: %s", json);
    free(json);
    return doc;
}

static const char *str_at(yajl_val doc, const char *a, const char *b)
{
    const char *path[] = { a, b, NULL };
    yajl_val v = yajl_tree_get(doc, path, yajl_t_string);

    return v ? YAJL_GET_STRING(v) : NULL;
}

static yajl_val val_at(yajl_val doc, const char *a, const char *b)
{
    const char *path[] = { a, b, NULL };

    return yajl_tree_get(doc, path, yajl_t_any);
}

/* --- typed calls --------------------------------------------------- */

START_TEST(instance_info)
{
    struct api_instance_info info;

    ck_assert_int_eq(api_get_instance_info(c, &info), 0);
    ck_assert_int_eq(info.state, API_STATE_NOT_STARTED);
    ck_assert_str_eq(info.id, "apitest");
    ck_assert_str_eq(info.app_name, "Firecracker");
    ck_assert_uint_gt(strlen(info.vmm_version), 0);
}
END_TEST

START_TEST(version)
{
    char v[64], small[2];

    ck_assert_int_eq(api_get_version(c, v, sizeof(v)), 0);
    ck_assert_uint_gt(strlen(v), 0);
    ck_assert_int_eq(api_get_version(c, small, sizeof(small)), VMM_EAPI);
    ck_assert_vmm_error(VMM_EAPI, "firecracker_version");
}
END_TEST

START_TEST(machine_config_round_trip)
{
    struct api_machine_config want = { 2, 256, false, true }, got;

    ck_assert_int_eq(api_put_machine_config(c, &want), 0);
    ck_assert_int_eq(api_get_machine_config(c, &got), 0);
    ck_assert_uint_eq(got.vcpu_count, 2);
    ck_assert_uint_eq(got.mem_size_mib, 256);
    ck_assert(!got.smt);
    ck_assert(got.track_dirty_pages);
}
END_TEST

START_TEST(devices_round_trip)
{
    char kernel[256], rootfs[256], data[256], vsock_path[256];
    struct api_boot_source boot = { kernel, NULL, "console=ttyS0 quiet" };
    struct api_drive root = { "rootfs", rootfs, true, false, NULL };
    struct api_drive extra = { "data_1", data, false, true, NULL };
    struct api_network_interface net = { "eth0", "tap0",
                                         "06:00:ac:10:00:02" };
    struct api_vsock vsock = { 3, vsock_path };
    yajl_val doc, drives;

    snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", dir);
    snprintf(data, sizeof(data), "%s/data.ext4", dir);
    snprintf(vsock_path, sizeof(vsock_path), "%s/v.sock", dir);
    for (const char *f = kernel; f != NULL;
         f = f == kernel ? rootfs : f == rootfs ? data : NULL)
        close(open(f, O_CREAT | O_WRONLY, 0600));

    ck_assert_int_eq(api_put_boot_source(c, &boot), 0);
    ck_assert_int_eq(api_put_drive(c, &root), 0);
    ck_assert_int_eq(api_put_drive(c, &extra), 0);
    ck_assert_int_eq(api_put_network_interface(c, &net), 0);
    ck_assert_int_eq(api_put_vsock(c, &vsock), 0);
    ck_assert_int_eq(api_put_entropy(c), 0);

    doc = vm_config();
    ck_assert_str_eq(str_at(doc, "boot-source", "kernel_image_path"), kernel);
    ck_assert_str_eq(str_at(doc, "boot-source", "boot_args"),
                     "console=ttyS0 quiet");
    ck_assert_ptr_null(str_at(doc, "boot-source", "initrd_path"));
    drives = val_at(doc, "drives", NULL);
    ck_assert(YAJL_IS_ARRAY(drives));
    ck_assert_uint_eq(YAJL_GET_ARRAY(drives)->len, 2);
    ck_assert_str_eq(str_at(YAJL_GET_ARRAY(drives)->values[0], "drive_id",
                            NULL), "rootfs");
    ck_assert(YAJL_IS_TRUE(val_at(YAJL_GET_ARRAY(drives)->values[0],
                                  "is_root_device", NULL)));
    ck_assert(YAJL_IS_TRUE(val_at(YAJL_GET_ARRAY(drives)->values[1],
                                  "is_read_only", NULL)));
    ck_assert_str_eq(str_at(doc, "vsock", "uds_path"), vsock_path);
    ck_assert_ptr_nonnull(val_at(doc, "entropy", NULL));
    yajl_tree_free(doc);
}
END_TEST

START_TEST(logger_and_metrics)
{
    char log[256], metrics[256];
    struct api_logger l = { log, "Debug", true, false };

    snprintf(log, sizeof(log), "%s/fc.log", dir);
    snprintf(metrics, sizeof(metrics), "%s/fc.metrics", dir);
    close(open(log, O_CREAT | O_WRONLY, 0600));
    close(open(metrics, O_CREAT | O_WRONLY, 0600));
    ck_assert_int_eq(api_put_logger(c, &l), 0);
    ck_assert_int_eq(api_put_metrics(c, metrics), 0);
}
END_TEST

START_TEST(lifecycle_actions)
{
    char kernel[256], metrics[256];
    struct api_boot_source boot = { kernel, NULL, NULL };
    struct api_machine_config m = { 1, 128, false, false };
    struct api_instance_info info;

    snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
    snprintf(metrics, sizeof(metrics), "%s/fc.metrics", dir);
    close(open(kernel, O_CREAT | O_WRONLY, 0600));
    close(open(metrics, O_CREAT | O_WRONLY, 0600));
    ck_assert_int_eq(api_put_machine_config(c, &m), 0);
    ck_assert_int_eq(api_put_boot_source(c, &boot), 0);
    ck_assert_int_eq(api_put_metrics(c, metrics), 0);
    ck_assert_int_eq(api_action(c, API_ACTION_INSTANCE_START), 0);
    ck_assert_int_eq(api_get_instance_info(c, &info), 0);
    ck_assert_int_eq(info.state, API_STATE_RUNNING);

    ck_assert_int_eq(api_patch_vm_state(c, true), 0);
    ck_assert_int_eq(api_get_instance_info(c, &info), 0);
    ck_assert_int_eq(info.state, API_STATE_PAUSED);
    ck_assert_int_eq(api_patch_vm_state(c, false), 0);
    ck_assert_int_eq(api_get_instance_info(c, &info), 0);
    ck_assert_int_eq(info.state, API_STATE_RUNNING);
    ck_assert_int_eq(api_action(c, API_ACTION_FLUSH_METRICS), 0);

    /* Firecracker's own refusal, verbatim. */
    ck_assert_int_eq(api_put_boot_source(c, &boot), VMM_EAPI);
    ck_assert_int_eq(vmm_error_last()->http_status, 400);
    ck_assert_str_eq(vmm_error_last()->fault_message, "The requested "
                     "operation is not supported after starting the "
                     "microVM.");
    ck_assert_vmm_error(VMM_EAPI, "PUT /boot-source on ");
    ck_assert_vmm_error(VMM_EAPI, sock);
}
END_TEST

/* --- refusals and bad input ---------------------------------------- */

START_TEST(fault_message_verbatim)
{
    const char *fault = "Injected fault: \"quotes\", back\\slash, ünïcode";
    char kernel[256];
    struct api_boot_source boot = { kernel, NULL, NULL };
    const vmm_error *e;

    teardown();
    start_emulator("FCEMU_START_FAULT", fault, true);
    snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
    close(open(kernel, O_CREAT | O_WRONLY, 0600));
    ck_assert_int_eq(api_put_boot_source(c, &boot), 0);
    ck_assert_int_eq(api_action(c, API_ACTION_INSTANCE_START), VMM_EAPI);
    e = vmm_error_last();
    ck_assert_int_eq(e->code, VMM_EAPI);
    ck_assert_int_eq(e->http_status, 400);
    ck_assert_str_eq(e->fault_message, fault);
    ck_assert_ptr_nonnull(strstr(e->message, "PUT /actions on "));
    ck_assert_ptr_nonnull(strstr(e->message, fault));
}
END_TEST

START_TEST(invalid_value_refused)
{
    struct api_machine_config m = { 0, 128, false, false };

    /* Not traced: this request breaks the spec on purpose. */
    teardown();
    start_emulator(NULL, NULL, false);
    ck_assert_int_eq(api_put_machine_config(c, &m), VMM_EAPI);
    ck_assert_int_eq(vmm_error_last()->http_status, 400);
    ck_assert_ptr_nonnull(vmm_error_last()->fault_message);
    ck_assert_uint_gt(strlen(vmm_error_last()->fault_message), 0);
    ck_assert_vmm_error(VMM_EAPI, "PUT /machine-config on ");
}
END_TEST

START_TEST(hung_request_bounded)
{
    struct api_instance_info info;
    struct api_machine_config m;
    struct timespec a, b;
    double secs;

    teardown();
    start_emulator("FCEMU_HANG_ON", "GET /machine-config", true);
    api_client_set_timeout(c, 300);
    clock_gettime(CLOCK_MONOTONIC, &a);
    ck_assert_int_eq(api_get_machine_config(c, &m), VMM_ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_vmm_error(VMM_ETIMEDOUT, "GET /machine-config on ");
    ck_assert_vmm_error(VMM_ETIMEDOUT, "300 ms");
    secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    ck_assert_msg(secs < 5.0, "the wait was not bounded: %.1f s", secs);
    /* The emulator is still there and the client still usable. */
    ck_assert_int_eq(waitpid(emu, NULL, WNOHANG), 0);
    ck_assert_int_eq(api_get_instance_info(c, &info), 0);
}
END_TEST

START_TEST(no_listener)
{
    struct api_client *lone;
    struct api_instance_info info;
    char path[256];

    snprintf(path, sizeof(path), "%s/none.sock", dir);
    ck_assert_int_eq(api_client_new(&lone, path, 1000), 0);
    ck_assert_int_eq(api_get_instance_info(lone, &info), VMM_EIO);
    ck_assert_vmm_error(VMM_EIO, path);
    ck_assert_int_eq(vmm_error_last()->os_error, ENOENT);
    api_client_free(lone);
}
END_TEST

START_TEST(bad_arguments)
{
    struct api_drive d = { "../x", "/tmp/x", true, false, NULL };
    struct api_network_interface n = { "eth 0", "tap0", NULL };
    struct api_boot_source b = { NULL, NULL, NULL };
    struct api_logger l = { NULL, "Verbose", false, false };
    struct api_vsock v = { 2, "/tmp/v.sock" };
    struct api_client *x = NULL;
    char bad_utf8[] = { 'k', (char)0xff, 0 };

    ck_assert_int_eq(api_client_new(&x, "/tmp/s", 0), VMM_EINVAL);
    ck_assert_int_eq(api_client_new(&x, NULL, 10), VMM_EINVAL);
    ck_assert_int_eq(api_client_new(NULL, "/tmp/s", 10), VMM_EINVAL);
    ck_assert_ptr_null(x);

    ck_assert_int_eq(api_put_drive(c, &d), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "drive_id \"../x\"");
    d.drive_id = "";
    ck_assert_int_eq(api_put_drive(c, &d), VMM_EINVAL);
    d.drive_id = "rootfs";
    d.path_on_host = NULL;
    ck_assert_int_eq(api_put_drive(c, &d), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "path_on_host");
    ck_assert_int_eq(api_put_network_interface(c, &n), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "iface_id");
    ck_assert_int_eq(api_put_boot_source(c, &b), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "kernel_image_path");
    b.kernel_image_path = bad_utf8;
    ck_assert_int_eq(api_put_boot_source(c, &b), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "UTF-8");
    ck_assert_int_eq(api_put_logger(c, &l), VMM_EINVAL);
    ck_assert_int_eq(api_put_vsock(c, &v), VMM_EINVAL);
    ck_assert_int_eq(api_action(c, (enum api_action)42), VMM_EINVAL);
    ck_assert_int_eq(api_put_machine_config(NULL, NULL), VMM_EINVAL);
    ck_assert_int_eq(api_get_instance_info(c, NULL), VMM_EINVAL);
    api_client_free(NULL);
}
END_TEST

/* --- the whole suite's trace against the official description ------ */

START_TEST(trace_conforms_to_spec)
{
    const char *shared = getenv("FC_SHARED_DIR");
    char tool[512], cmd[1400];
    int status;

    if (shared == NULL || access(shared, F_OK) < 0) {
        fprintf(stderr, "api: SKIPPED spec check: ../shared (FC_SHARED_DIR) "
                "is absent\n");
        return;
    }
    snprintf(tool, sizeof(tool), "%s/tools/fc-api-check", shared);
    if (access(tool, R_OK) < 0) {
        fprintf(stderr, "api: SKIPPED spec check: %s is absent\n", tool);
        return;
    }
    ck_assert_msg(access(trace, R_OK) == 0, "no trace at %s", trace);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' '%s' 1>&2", tool,
             trace);
    status = system(cmd);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "fc-api-check found nonconforming requests in %s", trace);
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("api");
    TCase *calls = tcase_create("calls");
    TCase *refusals = tcase_create("refusals");
    TCase *spec = tcase_create("spec");

    main_pid = getpid();
    snprintf(suite_dir, sizeof(suite_dir), "/tmp/libvmm-api-XXXXXX");
    if (mkdtemp(suite_dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(trace, sizeof(trace), "%s/trace.jsonl", suite_dir);
    atexit(remove_suite_dir);

    tcase_add_checked_fixture(calls, setup_traced, teardown);
    tcase_set_timeout(calls, 60);
    tcase_add_test(calls, instance_info);
    tcase_add_test(calls, version);
    tcase_add_test(calls, machine_config_round_trip);
    tcase_add_test(calls, devices_round_trip);
    tcase_add_test(calls, logger_and_metrics);
    tcase_add_test(calls, lifecycle_actions);
    suite_add_tcase(s, calls);

    tcase_add_checked_fixture(refusals, setup_traced, teardown);
    tcase_set_timeout(refusals, 60);
    tcase_add_test(refusals, fault_message_verbatim);
    tcase_add_test(refusals, invalid_value_refused);
    tcase_add_test(refusals, hung_request_bounded);
    tcase_add_test(refusals, no_listener);
    tcase_add_test(refusals, bad_arguments);
    suite_add_tcase(s, refusals);

    /* Last: reads the trace the tests above left. */
    tcase_set_timeout(spec, 60);
    tcase_add_test(spec, trace_conforms_to_spec);
    suite_add_tcase(s, spec);
    return s;
}
