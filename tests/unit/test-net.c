/*
 * Suite "net": address arithmetic, the ip= boot argument, taps and named
 * network namespaces.
 *
 * Every tap and address these tests make lives in a network namespace the
 * test made itself ("libvmm-test-<pid>..."); unchecked fixtures remove
 * those namespaces in the parent process, so they go even when a test
 * crashes. No test sends any traffic.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check-main.h"
#include "net.h"

static char tap_ns[64];   /* namespace of the "tap" case, made with ip */

/* Owners of taps, as vm.c names them: "libvmm:" and the VM's directory. */
#define ME "libvmm:/state-a/vms/web1"
#define OTHER "libvmm:/state-b/vms/web1"
static char own_ns[64];   /* name the "netns" case creates through net.c */

/* --- helpers ------------------------------------------------------------- */

static vmm_context *context_with_pool(const char *pool)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_context *ctx = NULL;

    o.net_pool = pool;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);
    return ctx;
}

static ino_t thread_netns(void)
{
    struct stat st;

    ck_assert_int_eq(stat("/proc/thread-self/ns/net", &st), 0);
    return st.st_ino;
}

/* Runs a shell command and returns its stdout (at most size - 1 bytes). */
static int run(char *out, size_t size, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

static int run(char *out, size_t size, const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    size_t n = 0;
    FILE *p;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    if (out != NULL) {
        n = fread(out, 1, size - 1, p);
        out[n] = '\0';
    } else {
        char sink[256];

        while (fread(sink, 1, sizeof(sink), p) > 0)
            ;
    }
    return pclose(p);
}

static int open_ns(const char *name)
{
    char path[128];
    int fd;

    snprintf(path, sizeof(path), "/run/netns/%s", name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "opening %s: %s", path, strerror(errno));
    return fd;
}

/* Whether `ip` sees a device of that name in the namespace. */
static bool ip_sees_link(const char *ns, const char *dev)
{
    return run(NULL, 0, "ip -n %s link show dev %s >/dev/null 2>&1", ns,
               dev) == 0;
}

static void remove_ns(const char *name)
{
    char path[128];

    if (name[0] == '\0')
        return;
    run(NULL, 0, "ip netns delete %s 2>/dev/null", name);
    /* In case ip left a half-made one (or is what broke). */
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    umount2(path, MNT_DETACH);
    unlink(path);
}

/* --- leases -------------------------------------------------------------- */

START_TEST(first_and_last_slot)
{
    vmm_context *ctx = context_with_pool("172.16.0.0/16");
    struct net_lease l;

    ck_assert_uint_eq(net_pool_slots(ctx), 16384);

    ck_assert_int_eq(net_lease_for_slot(ctx, 0, &l), 0);
    ck_assert_uint_eq(l.slot, 0);
    ck_assert_uint_eq(l.prefix_len, 30);
    ck_assert_str_eq(l.host_ip, "172.16.0.1");
    ck_assert_str_eq(l.guest_ip, "172.16.0.2");
    ck_assert_str_eq(l.netmask, "255.255.255.252");
    ck_assert_str_eq(l.mac, "06:00:AC:10:00:02");
    ck_assert_str_eq(l.tap, "vmtap0");

    ck_assert_int_eq(net_lease_for_slot(ctx, 16383, &l), 0);
    ck_assert_str_eq(l.host_ip, "172.16.255.253");
    ck_assert_str_eq(l.guest_ip, "172.16.255.254");
    ck_assert_str_eq(l.mac, "06:00:AC:10:FF:FE");
    ck_assert_str_eq(l.tap, "vmtap16383");

    ck_assert_int_eq(net_lease_for_slot(ctx, 65, &l), 0);
    ck_assert_str_eq(l.host_ip, "172.16.1.5");
    ck_assert_str_eq(l.guest_ip, "172.16.1.6");
    vmm_context_free(ctx);
}
END_TEST

START_TEST(slot_out_of_range)
{
    vmm_context *ctx = context_with_pool("172.16.0.0/16");
    struct net_lease l, before;

    memset(&l, 0x5a, sizeof(l));
    before = l;
    ck_assert_int_eq(net_lease_for_slot(ctx, 16384, &l), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "slot 16384");
    ck_assert_vmm_error(VMM_EINVAL, "172.16.0.0/16");
    ck_assert_int_eq(memcmp(&l, &before, sizeof(l)), 0);
    ck_assert_int_eq(net_lease_for_slot(ctx, UINT32_MAX, &l), VMM_EINVAL);

    ck_assert_int_eq(net_lease_for_slot(NULL, 0, &l), VMM_EINVAL);
    ck_assert_int_eq(net_lease_for_slot(ctx, 0, NULL), VMM_EINVAL);
    ck_assert_uint_eq(net_pool_slots(NULL), 0);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(pool_28)
{
    vmm_context *ctx = context_with_pool("10.9.8.16/28");
    struct net_lease l;

    ck_assert_uint_eq(net_pool_slots(ctx), 4);
    ck_assert_int_eq(net_lease_for_slot(ctx, 0, &l), 0);
    ck_assert_str_eq(l.host_ip, "10.9.8.17");
    ck_assert_str_eq(l.guest_ip, "10.9.8.18");
    ck_assert_int_eq(net_lease_for_slot(ctx, 3, &l), 0);
    ck_assert_str_eq(l.host_ip, "10.9.8.29");
    ck_assert_str_eq(l.guest_ip, "10.9.8.30");
    ck_assert_str_eq(l.mac, "06:00:0A:09:08:1E");
    ck_assert_str_eq(l.tap, "vmtap3");
    ck_assert_int_eq(net_lease_for_slot(ctx, 4, &l), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "4 slots");
    vmm_context_free(ctx);
}
END_TEST

START_TEST(pool_8_names_fit)
{
    vmm_context *ctx = context_with_pool("10.0.0.0/8");
    struct net_lease l;

    ck_assert_uint_eq(net_pool_slots(ctx), 1u << 22);
    ck_assert_int_eq(net_lease_for_slot(ctx, (1u << 22) - 1, &l), 0);
    ck_assert_str_eq(l.guest_ip, "10.255.255.254");
    ck_assert_str_eq(l.tap, "vmtap4194303");
    ck_assert_uint_lt(strlen(l.tap), 16);
    ck_assert_int_eq(net_lease_for_slot(ctx, 1u << 22, &l), VMM_EINVAL);
    vmm_context_free(ctx);
}
END_TEST

static int cmp_str18(const void *a, const void *b)
{
    return strcmp(a, b);
}

START_TEST(unique_across_a_16)
{
    vmm_context *ctx = context_with_pool("172.16.0.0/16");
    uint32_t n = net_pool_slots(ctx);
    char (*macs)[18], (*taps)[18], (*ips)[18];

    ck_assert_uint_eq(n, 16384);
    macs = calloc(n, sizeof(*macs));
    taps = calloc(n, sizeof(*taps));
    ips = calloc(n, sizeof(*ips));
    ck_assert(macs != NULL && taps != NULL && ips != NULL);
    for (uint32_t s = 0; s < n; s++) {
        struct net_lease l;

        ck_assert_int_eq(net_lease_for_slot(ctx, s, &l), 0);
        ck_assert_uint_le(strlen(l.tap), 15);
        ck_assert_uint_eq(strlen(l.mac), 17);
        ck_assert(strncmp(l.guest_ip, "172.16.", 7) == 0);
        memcpy(macs[s], l.mac, sizeof(l.mac));
        memcpy(taps[s], l.tap, sizeof(l.tap));
        memcpy(ips[s], l.guest_ip, sizeof(l.guest_ip));
    }
    qsort(macs, n, sizeof(*macs), cmp_str18);
    qsort(taps, n, sizeof(*taps), cmp_str18);
    qsort(ips, n, sizeof(*ips), cmp_str18);
    for (uint32_t s = 1; s < n; s++) {
        ck_assert_str_ne(macs[s - 1], macs[s]);
        ck_assert_str_ne(taps[s - 1], taps[s]);
        ck_assert_str_ne(ips[s - 1], ips[s]);
    }
    free(macs);
    free(taps);
    free(ips);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(boot_arg_text)
{
    vmm_context *ctx = context_with_pool("172.16.0.0/16");
    struct net_lease l;
    char buf[128], small[20];

    ck_assert_int_eq(net_lease_for_slot(ctx, 1, &l), 0);
    ck_assert_int_eq(net_boot_arg(&l, buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "ip=172.16.0.6::172.16.0.5:255.255.255.252::"
                     "eth0:off");
    ck_assert_int_eq(net_boot_arg(&l, small, sizeof(small)), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "does not fit");
    ck_assert_int_eq(net_boot_arg(NULL, buf, sizeof(buf)), VMM_EINVAL);
    ck_assert_int_eq(net_boot_arg(&l, NULL, 0), VMM_EINVAL);
    vmm_context_free(ctx);
}
END_TEST

START_TEST(netns_names)
{
    char long_name[NAME_MAX + 2];

    ck_assert(net_netns_name_valid("libvmm-test-1"));
    ck_assert(net_netns_name_valid("a.b_c"));
    ck_assert(net_netns_name_valid("..."));
    ck_assert(!net_netns_name_valid(NULL));
    ck_assert(!net_netns_name_valid(""));
    ck_assert(!net_netns_name_valid("."));
    ck_assert(!net_netns_name_valid(".."));
    ck_assert(!net_netns_name_valid("a/b"));
    ck_assert(!net_netns_name_valid("a b"));
    ck_assert(!net_netns_name_valid("tab\there"));
    ck_assert(!net_netns_name_valid("caf\xc3\xa9"));
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    ck_assert(!net_netns_name_valid(long_name));
    long_name[NAME_MAX] = '\0';
    ck_assert(net_netns_name_valid(long_name));
}
END_TEST

/* --- taps, in a namespace made by `ip netns add` ------------------------- */

static void tap_ns_setup(void)
{
    snprintf(tap_ns, sizeof(tap_ns), "libvmm-test-%ld-tap", (long)getpid());
    remove_ns(tap_ns);
    if (run(NULL, 0, "ip netns add %s 2>&1", tap_ns) != 0)
        fprintf(stderr, "test-net: ip netns add %s failed\n", tap_ns);
}

static void tap_ns_teardown(void)
{
    remove_ns(tap_ns);
}

static struct net_lease lease(uint32_t slot)
{
    vmm_context *ctx = context_with_pool("172.16.0.0/16");
    struct net_lease l;

    ck_assert_int_eq(net_lease_for_slot(ctx, slot, &l), 0);
    vmm_context_free(ctx);
    return l;
}

START_TEST(tap_create_configures_it)
{
    struct net_lease l = lease(5);
    ino_t self = thread_netns();
    char out[4096];
    int fd = open_ns(tap_ns);

    ck_assert(!net_tap_exists(l.tap, fd));
    ck_assert_int_eq(net_tap_create(NULL, "vm5", &l, ME, fd), 0);
    ck_assert_uint_eq(thread_netns(), self);

    ck_assert_int_eq(run(out, sizeof(out), "ip -n %s -d -o link show dev %s",
                         tap_ns, l.tap), 0);
    ck_assert_msg(strstr(out, ",UP") || strstr(out, "<UP"),
                  "not up: %s", out);
    ck_assert_msg(strstr(out, "tun type tap") != NULL, "not a tap: %s", out);
    ck_assert_msg(strstr(out, "persist on") != NULL, "not persistent: %s",
                  out);
    ck_assert_msg(strstr(out, "vnet_hdr on") != NULL, "no vnet_hdr: %s",
                  out);

    ck_assert_int_eq(run(out, sizeof(out), "ip -n %s -o -4 addr show dev %s",
                         tap_ns, l.tap), 0);
    ck_assert_msg(strstr(out, "inet 172.16.0.21/30 ") != NULL,
                  "address missing: %s", out);

    ck_assert(net_tap_exists(l.tap, fd));
    ck_assert_uint_eq(thread_netns(), self);
    /* Nothing leaked into the namespace the test runs in. */
    ck_assert(!net_tap_exists(l.tap, -1));
    close(fd);
}
END_TEST

struct log_capture {
    int calls;
    char message[512];
};

static void capture(int32_t level, const char *component, const char *vm,
                    const char *message, void *user)
{
    struct log_capture *c = user;

    c->calls++;
    snprintf(c->message, sizeof(c->message), "%s", message);
}

START_TEST(tap_create_again_reuses)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    struct log_capture cap = { 0 };
    struct net_lease l = lease(7), moved;
    vmm_context *ctx;
    char out[4096];
    int fd = open_ns(tap_ns);

    o.log_fn = capture;
    o.log_user = &cap;
    ck_assert_int_eq(vmm_context_new(&ctx, &o), 0);

    ck_assert_int_eq(net_tap_create(ctx, "vm7", &l, ME, fd), 0);
    ck_assert_int_eq(cap.calls, 0);
    ck_assert_int_eq(net_tap_create(ctx, "vm7", &l, ME, fd), 0);
    ck_assert_int_eq(cap.calls, 1);
    ck_assert_ptr_nonnull(strstr(cap.message, "reused existing tap vmtap7"));
    ck_assert_int_eq(run(out, sizeof(out), "ip -n %s -o -4 addr show dev %s"
                         " | wc -l", tap_ns, l.tap), 0);
    ck_assert_str_eq(out, "1\n");

    /* Same tap, another lease: the old address must not linger. */
    moved = lease(9);
    strcpy(moved.tap, l.tap);
    ck_assert_int_eq(net_tap_create(ctx, "vm7", &moved, ME, fd), 0);
    ck_assert_ptr_nonnull(strstr(cap.message, "older lease"));
    ck_assert_int_eq(run(out, sizeof(out), "ip -n %s -o -4 addr show dev %s",
                         tap_ns, l.tap), 0);
    ck_assert_msg(strstr(out, "inet 172.16.0.37/30 ") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "172.16.0.29") == NULL, "stale: %s", out);
    vmm_context_free(ctx);
    close(fd);
}
END_TEST

START_TEST(tap_delete_and_delete_missing)
{
    struct net_lease l = lease(11);
    ino_t self = thread_netns();
    int fd = open_ns(tap_ns);

    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), 0);
    ck_assert(ip_sees_link(tap_ns, l.tap));
    ck_assert_int_eq(net_tap_delete(l.tap, ME, fd), 0);
    ck_assert(!ip_sees_link(tap_ns, l.tap));
    ck_assert(!net_tap_exists(l.tap, fd));
    ck_assert_int_eq(net_tap_delete(l.tap, ME, fd), 0);
    ck_assert_int_eq(net_tap_delete("vmtap99999", ME, fd), 0);
    ck_assert_uint_eq(thread_netns(), self);
    close(fd);
}
END_TEST

static const char *fail_step;

static int fail_at(const char *step)
{
    return strcmp(step, fail_step) == 0 ? EPERM : 0;
}

static void check_failure_leaves_nothing(const char *step)
{
    struct net_lease l = lease(13);
    ino_t self = thread_netns();
    int fd = open_ns(tap_ns);

    fail_step = step;
    net_test_fail_hook = fail_at;
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), VMM_ENET);
    net_test_fail_hook = NULL;
    ck_assert_vmm_error(VMM_ENET, "tap vmtap13");
    ck_assert_vmm_error(VMM_ENET, tap_ns);
    ck_assert_vmm_error(VMM_ENET, "Operation not permitted");
    ck_assert_int_eq(vmm_error_last()->os_error, EPERM);
    ck_assert_uint_eq(thread_netns(), self);
    ck_assert(!ip_sees_link(tap_ns, l.tap));
    close(fd);
}

START_TEST(tap_failure_at_tun_leaves_nothing)
{
    check_failure_leaves_nothing("tun");
}
END_TEST

/* Before it is persistent: closing the tun fd is what removes it. */
START_TEST(tap_failure_at_owner_leaves_nothing)
{
    check_failure_leaves_nothing("owner");
}
END_TEST

START_TEST(tap_failure_at_address_leaves_nothing)
{
    check_failure_leaves_nothing("address");
}
END_TEST

START_TEST(tap_failure_at_up_leaves_nothing)
{
    check_failure_leaves_nothing("up");
}
END_TEST

START_TEST(tap_refuses_other_devices_and_bad_input)
{
    struct net_lease l = lease(15);
    ino_t self = thread_netns();
    int fd = open_ns(tap_ns);

    /* lo exists and is no tap: refused, and neither changed nor removed. */
    strcpy(l.tap, "lo");
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), VMM_EEXIST);
    ck_assert_vmm_error(VMM_EEXIST, "tap lo");
    ck_assert_vmm_error(VMM_EEXIST, "not a tap");
    ck_assert_int_eq(net_tap_delete("lo", ME, fd), VMM_ENET);
    ck_assert_vmm_error(VMM_ENET, "not a tap");
    ck_assert(ip_sees_link(tap_ns, "lo"));
    ck_assert(!net_tap_exists("lo", fd));

    strcpy(l.tap, "bad/name");
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "bad/name");
    strcpy(l.tap, "");
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), VMM_EINVAL);
    memset(l.tap, 'x', sizeof(l.tap));  /* no terminator within IFNAMSIZ */
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), VMM_EINVAL);
    ck_assert_int_eq(net_tap_delete("a b", ME, fd), VMM_EINVAL);
    ck_assert_int_eq(net_tap_delete(NULL, ME, fd), VMM_EINVAL);

    l = lease(15);
    strcpy(l.host_ip, "172.16.0.999");
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "172.16.0.999");
    l = lease(15);
    ck_assert_int_eq(net_tap_create(NULL, NULL, NULL, ME, fd), VMM_EINVAL);
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, -2), VMM_EINVAL);

    /* An fd that is no namespace: setns fails on the helper thread, and
     * the error comes back to this one. */
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, 0), VMM_ENET);
    ck_assert_vmm_error(VMM_ENET, "tap vmtap15 in ");
    ck_assert_vmm_error(VMM_ENET, "entering that network namespace");
    ck_assert_int_ne(vmm_error_last()->os_error, 0);

    ck_assert(!ip_sees_link(tap_ns, "vmtap15"));
    ck_assert_uint_eq(thread_netns(), self);
    close(fd);
}
END_TEST

/* --- owners -------------------------------------------------------------- */

/* The tap's alias as `ip` shows it, without the newline; "" for none. */
static void alias_of(const char *dev, char *out, size_t size)
{
    size_t n;

    ck_assert_int_eq(run(out, size, "ip -n %s link show dev %s | "
                         "sed -n 's/^    alias //p'", tap_ns, dev), 0);
    n = strlen(out);
    if (n > 0 && out[n - 1] == '\n')
        out[n - 1] = '\0';
}

START_TEST(tap_create_sets_owner_alias)
{
    struct net_lease l = lease(19);
    char alias[512];
    int fd = open_ns(tap_ns);

    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), 0);
    alias_of(l.tap, alias, sizeof(alias));
    ck_assert_str_eq(alias, ME);
    /* The owner's own second create reuses it and keeps the alias. */
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), 0);
    alias_of(l.tap, alias, sizeof(alias));
    ck_assert_str_eq(alias, ME);
    close(fd);
}
END_TEST

START_TEST(tap_of_another_owner_is_refused_and_untouched)
{
    struct net_lease mine = lease(21), theirs = lease(23);
    char alias[512], out[4096];
    int fd = open_ns(tap_ns);

    ck_assert_int_eq(net_tap_create(NULL, NULL, &mine, ME, fd), 0);
    strcpy(theirs.tap, mine.tap);
    ck_assert_int_eq(net_tap_create(NULL, NULL, &theirs, OTHER, fd),
                     VMM_EEXIST);
    ck_assert_vmm_error(VMM_EEXIST, "tap vmtap21 ");
    ck_assert_vmm_error(VMM_EEXIST, tap_ns);
    ck_assert_vmm_error(VMM_EEXIST, "\"" ME "\"");

    /* Same owner, same address, still up, and no address of the other. */
    alias_of(mine.tap, alias, sizeof(alias));
    ck_assert_str_eq(alias, ME);
    ck_assert_int_eq(run(out, sizeof(out), "ip -n %s -o -4 addr show dev %s",
                         tap_ns, mine.tap), 0);
    ck_assert_msg(strstr(out, "inet 172.16.0.85/30 ") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "172.16.0.93") == NULL, "taken over: %s", out);
    ck_assert_int_eq(run(out, sizeof(out), "ip -n %s -o link show dev %s",
                         tap_ns, mine.tap), 0);
    ck_assert_msg(strstr(out, ",UP") || strstr(out, "<UP"), "down: %s", out);
    close(fd);
}
END_TEST

START_TEST(tap_delete_by_another_owner_is_refused)
{
    struct net_lease l = lease(25);
    int fd = open_ns(tap_ns);

    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), 0);
    ck_assert_int_eq(net_tap_delete(l.tap, OTHER, fd), VMM_EBUSY);
    ck_assert_vmm_error(VMM_EBUSY, "tap vmtap25 ");
    ck_assert_vmm_error(VMM_EBUSY, "\"" ME "\"");
    ck_assert(ip_sees_link(tap_ns, l.tap));
    ck_assert(net_tap_exists(l.tap, fd));

    ck_assert_int_eq(net_tap_delete(l.tap, ME, fd), 0);
    ck_assert(!ip_sees_link(tap_ns, l.tap));
    close(fd);
}
END_TEST

START_TEST(tap_without_owner_is_nobody_s)
{
    struct net_lease l = lease(27);
    char alias[512];
    int fd = open_ns(tap_ns);

    /* What another program (or an older libvmm) leaves: no alias. */
    ck_assert_int_eq(run(NULL, 0, "ip -n %s tuntap add dev %s mode tap",
                         tap_ns, l.tap), 0);
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), VMM_EEXIST);
    ck_assert_vmm_error(VMM_EEXIST, "has no owner");
    ck_assert_int_eq(net_tap_delete(l.tap, ME, fd), VMM_EBUSY);
    ck_assert_vmm_error(VMM_EBUSY, "has no owner");
    ck_assert(ip_sees_link(tap_ns, l.tap));
    alias_of(l.tap, alias, sizeof(alias));
    ck_assert_str_eq(alias, "");
    ck_assert_int_eq(run(NULL, 0, "ip -n %s link delete %s", tap_ns, l.tap),
                     0);
    close(fd);
}
END_TEST

START_TEST(tap_long_owners)
{
    struct net_lease l = lease(29);
    char a[600], b[600], alias[600];
    int fd = open_ns(tap_ns);

    /* Two owners that differ only past what an alias holds. */
    memset(a, 'd', sizeof(a) - 1);
    memcpy(a, "libvmm:/", 8);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[sizeof(b) - 2] = 'e';

    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, a, fd), 0);
    alias_of(l.tap, alias, sizeof(alias));
    ck_assert_uint_eq(strlen(alias), 255);
    ck_assert(strncmp(alias, a, 200) == 0);
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, a, fd), 0);
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, b, fd), VMM_EEXIST);
    ck_assert_int_eq(net_tap_delete(l.tap, b, fd), VMM_EBUSY);
    ck_assert(ip_sees_link(tap_ns, l.tap));
    ck_assert_int_eq(net_tap_delete(l.tap, a, fd), 0);
    ck_assert(!ip_sees_link(tap_ns, l.tap));

    /* Exactly 255 bytes is kept as it is. */
    a[255] = '\0';
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, a, fd), 0);
    alias_of(l.tap, alias, sizeof(alias));
    ck_assert_str_eq(alias, a);
    ck_assert_int_eq(net_tap_delete(l.tap, a, fd), 0);
    close(fd);
}
END_TEST

START_TEST(tap_owner_must_be_given)
{
    struct net_lease l = lease(31);
    int fd = open_ns(tap_ns);

    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, NULL, fd), VMM_EINVAL);
    ck_assert_vmm_error(VMM_EINVAL, "owner");
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, "", fd), VMM_EINVAL);
    ck_assert_int_eq(net_tap_delete(l.tap, NULL, fd), VMM_EINVAL);
    ck_assert_int_eq(net_tap_delete(l.tap, "", fd), VMM_EINVAL);
    ck_assert(!ip_sees_link(tap_ns, l.tap));
    close(fd);
}
END_TEST

/* --- named namespaces through net.c -------------------------------------- */

static void own_ns_setup(void)
{
    snprintf(own_ns, sizeof(own_ns), "libvmm-test-%ld-ns", (long)getpid());
    remove_ns(own_ns);
}

static void own_ns_teardown(void)
{
    remove_ns(own_ns);
}

/* Checked: runs in the test's child, so the name must come from above. */
static void own_ns_clear(void)
{
    remove_ns(own_ns);
}

START_TEST(netns_lifecycle)
{
    ino_t self = thread_netns();
    char out[4096], path[128];
    struct stat st;
    int fd = -1;

    ck_assert_int_eq(net_netns_create(own_ns), 0);
    ck_assert_uint_eq(thread_netns(), self);
    snprintf(path, sizeof(path), "/run/netns/%s", own_ns);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_ne(st.st_ino, self);

    /* ip sees it, and lo is up inside. */
    ck_assert_int_eq(run(out, sizeof(out), "ip netns list"), 0);
    ck_assert_msg(strstr(out, own_ns) != NULL, "ip netns list: %s", out);
    ck_assert_int_eq(run(out, sizeof(out), "ip -n %s -o link show dev lo",
                         own_ns), 0);
    ck_assert_msg(strstr(out, ",UP") != NULL, "lo: %s", out);

    ck_assert_int_eq(net_netns_create(own_ns), VMM_EEXIST);
    ck_assert_vmm_error(VMM_EEXIST, own_ns);
    ck_assert_int_eq(run(out, sizeof(out), "ip -n %s -o link show dev lo",
                         own_ns), 0);

    ck_assert_int_eq(net_netns_open(own_ns, &fd), 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_uint_ne(st.st_ino, self);
    ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    close(fd);

    ck_assert_int_eq(net_netns_delete(own_ns), 0);
    ck_assert_int_eq(stat(path, &st), -1);
    fd = 1234;
    ck_assert_int_eq(net_netns_open(own_ns, &fd), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, own_ns);
    ck_assert_int_eq(fd, 1234);
    ck_assert_int_eq(net_netns_delete(own_ns), 0);
    ck_assert_uint_eq(thread_netns(), self);
}
END_TEST

START_TEST(netns_taps_inside_own_namespace)
{
    struct net_lease l = lease(17);
    ino_t self = thread_netns();
    int fd;

    ck_assert_int_eq(net_netns_create(own_ns), 0);
    ck_assert_int_eq(net_netns_open(own_ns, &fd), 0);
    ck_assert_int_eq(net_tap_create(NULL, NULL, &l, ME, fd), 0);
    ck_assert(ip_sees_link(own_ns, l.tap));
    ck_assert(net_tap_exists(l.tap, fd));
    close(fd);
    /* Removing the namespace removes its taps with it. */
    ck_assert_int_eq(net_netns_delete(own_ns), 0);
    ck_assert_uint_eq(thread_netns(), self);
}
END_TEST

START_TEST(netns_leftover_file_is_not_a_namespace)
{
    char path[128];
    int fd;

    /* What a create interrupted before its bind mount leaves. */
    snprintf(path, sizeof(path), "/run/netns/%s", own_ns);
    fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(net_netns_open(own_ns, &fd), VMM_ENOTFOUND);
    ck_assert_vmm_error(VMM_ENOTFOUND, "not a bound network namespace");
    ck_assert_int_eq(net_netns_delete(own_ns), 0);
    ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

START_TEST(netns_bad_names)
{
    const char *bad[] = { "", ".", "..", "a/b", "../etc", "sp ace", NULL };
    int fd = -7;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(net_netns_create(bad[i]), VMM_EINVAL);
        ck_assert_vmm_error(VMM_EINVAL, "invalid");
        ck_assert_int_eq(net_netns_delete(bad[i]), VMM_EINVAL);
        ck_assert_int_eq(net_netns_open(bad[i], &fd), VMM_EINVAL);
    }
    ck_assert_int_eq(fd, -7);
    ck_assert_int_eq(net_netns_open(own_ns, NULL), VMM_EINVAL);
    ck_assert_int_eq(access("/run/netns/sp ace", F_OK), -1);
}
END_TEST

START_TEST(netns_dir_becomes_shared_mount)
{
    char line[1024];
    bool shared = false;  /* of the topmost mount on /run/netns */
    FILE *f;
    int fd;

    /* Needs the test's own child: it changes the process' mounts. */
    if (getenv("CK_FORK") != NULL && strcmp(getenv("CK_FORK"), "no") == 0)
        return;
    /* A private copy of the mounts, and an empty /run over it: the host's
     * /run/netns is neither seen nor touched. */
    ck_assert_int_eq(unshare(CLONE_NEWNS), 0);
    ck_assert_int_eq(mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
    ck_assert_int_eq(mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), 0);

    ck_assert_int_eq(net_netns_create(own_ns), 0);
    f = fopen("/proc/self/mountinfo", "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        char point[256];

        /* id, parent, dev, root, mount point, options, tags..., "-" */
        if (sscanf(line, "%*s %*s %*s %*s %255s", point) == 1 &&
            strcmp(point, "/run/netns") == 0)
            shared = strstr(line, " shared:") != NULL;
    }
    fclose(f);
    ck_assert_msg(shared, "/run/netns is not a shared mount point");

    ck_assert_int_eq(net_netns_open(own_ns, &fd), 0);
    close(fd);
    ck_assert_int_eq(net_netns_create(own_ns), VMM_EEXIST);
    ck_assert_int_eq(net_netns_delete(own_ns), 0);
    ck_assert_int_eq(access("/run/netns", F_OK), 0);
}
END_TEST

Suite *suite_make(void)
{
    Suite *s = suite_create("net");
    TCase *lease_tc = tcase_create("lease");
    TCase *tap_tc = tcase_create("tap");
    TCase *ns_tc = tcase_create("netns");

    tcase_add_test(lease_tc, first_and_last_slot);
    tcase_add_test(lease_tc, slot_out_of_range);
    tcase_add_test(lease_tc, pool_28);
    tcase_add_test(lease_tc, pool_8_names_fit);
    tcase_add_test(lease_tc, unique_across_a_16);
    tcase_add_test(lease_tc, boot_arg_text);
    tcase_add_test(lease_tc, netns_names);
    suite_add_tcase(s, lease_tc);

    /* Unchecked: runs in the parent, so cleanup survives a crashed test. */
    tcase_add_unchecked_fixture(tap_tc, tap_ns_setup, tap_ns_teardown);
    tcase_add_test(tap_tc, tap_create_configures_it);
    tcase_add_test(tap_tc, tap_create_again_reuses);
    tcase_add_test(tap_tc, tap_delete_and_delete_missing);
    tcase_add_test(tap_tc, tap_failure_at_tun_leaves_nothing);
    tcase_add_test(tap_tc, tap_failure_at_owner_leaves_nothing);
    tcase_add_test(tap_tc, tap_failure_at_address_leaves_nothing);
    tcase_add_test(tap_tc, tap_failure_at_up_leaves_nothing);
    tcase_add_test(tap_tc, tap_refuses_other_devices_and_bad_input);
    tcase_add_test(tap_tc, tap_create_sets_owner_alias);
    tcase_add_test(tap_tc, tap_of_another_owner_is_refused_and_untouched);
    tcase_add_test(tap_tc, tap_delete_by_another_owner_is_refused);
    tcase_add_test(tap_tc, tap_without_owner_is_nobody_s);
    tcase_add_test(tap_tc, tap_long_owners);
    tcase_add_test(tap_tc, tap_owner_must_be_given);
    suite_add_tcase(s, tap_tc);

    tcase_add_unchecked_fixture(ns_tc, own_ns_setup, own_ns_teardown);
    /* Each test starts without the namespace, even after a failed one. */
    tcase_add_checked_fixture(ns_tc, own_ns_clear, NULL);
    tcase_add_test(ns_tc, netns_lifecycle);
    tcase_add_test(ns_tc, netns_taps_inside_own_namespace);
    tcase_add_test(ns_tc, netns_leftover_file_is_not_a_namespace);
    tcase_add_test(ns_tc, netns_bad_names);
    tcase_add_test(ns_tc, netns_dir_becomes_shared_mount);
    suite_add_tcase(s, ns_tc);
    return s;
}
