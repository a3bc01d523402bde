/*
 * vmctl: the commands that change a VM: create, start, stop, kill,
 * delete and set.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmctl.h"

/* The longest --timeout whose milliseconds still fit in 32 bits. */
#define MAX_TIMEOUT_S (UINT32_MAX / 1000)
/* An authorized_keys file larger than this is not one. */
#define MAX_KEY_FILE 65536

static const char create_help[] =
    "Usage: vmctl create NAME --kernel FILE --rootfs FILE [OPTIONS]\n"
    "\n"
    "Record a VM and build its root disk over the base image FILE. The VM is\n"
    "left stopped unless --start is given.\n"
    "\n"
    "NAME: 1 to 63 ASCII letters, digits, '-', '_' and '.', not starting\n"
    "with '-' or '.'.\n"
    "\n"
    "  --kernel FILE         guest kernel image (required)\n"
    "  --rootfs FILE         base image of the root disk, ext4 (required);\n"
    "                        never written to\n"
    "  --initrd FILE         initial ramdisk\n"
    "  --vcpus N             1, or an even number up to 32 (default 1)\n"
    "  --memory MIB          guest memory, at least 128 (default 512)\n"
    "  --disk-size SIZE      root disk size, e.g. 4G, 512M (K, M, G, T are\n"
    "                        powers of 1024; default: the base image's)\n"
    "  --boot-args ARGS      kernel command line (root= and ip= are added)\n"
    "  --ssh-key FILE.pub    public key(s) for root in the guest (default:\n"
    "                        vmctl's own key, made on first use)\n"
    "  --overlay DRIVER      auto, dm-snapshot or copy (default auto)\n"
    "  --no-net              no network device\n"
    "  --netns [NAME]        put the tap and the VMM in network namespace\n"
    "                        NAME (which must exist), or without NAME in a\n"
    "                        namespace of the VM's own\n"
    "  --start               start the VM once created\n";

static const char start_help[] =
    "Usage: vmctl start NAME [--timeout SECONDS]\n"
    "\n"
    "Start a stopped VM: prepare its disk, bring up its tap, spawn its VMM\n"
    "and boot the guest. The VMM keeps running after vmctl exits.\n"
    "\n"
    "  --timeout SECONDS     how long to wait for the VMM (default 10); it\n"
    "                        never limits how long the VM runs\n";

static const char stop_help[] =
    "Usage: vmctl stop NAME [--timeout SECONDS]\n"
    "\n"
    "Stop a VM gracefully: send Ctrl-Alt-Del, wait, then kill the VMM.\n"
    "Stopping a stopped VM succeeds.\n"
    "\n"
    "  --timeout SECONDS     how long the guest may take to shut down\n"
    "                        (default 10)\n";

static const char kill_help[] =
    "Usage: vmctl kill NAME\n"
    "\n"
    "Kill the VM's VMM at once (SIGKILL) and wait until it is gone.\n";

static const char delete_help[] =
    "Usage: vmctl delete NAME [--force]\n"
    "\n"
    "Delete a stopped VM: its record, disk, tap, own network namespace and\n"
    "keys.\n"
    "\n"
    "  --force               kill the VM first if it is running; also\n"
    "                        removes a VM whose record is unreadable\n";

static const char set_help[] =
    "Usage: vmctl set NAME [--vcpus N] [--memory MIB]\n"
    "\n"
    "Change a stopped VM; the change applies from its next start.\n"
    "\n"
    "  --vcpus N             1, or an even number up to 32\n"
    "  --memory MIB          guest memory, at least 128\n";

/* --- create --------------------------------------------------------- */

enum {
    C_KERNEL = 1, C_ROOTFS, C_INITRD, C_VCPUS, C_MEMORY, C_DISK_SIZE, C_BOOT_ARGS,
    C_SSH_KEY, C_OVERLAY, C_NO_NET, C_NETNS, C_START,
};

static const struct vmctl_option create_opts[] = {
    {"kernel", 0, VMCTL_ARG_REQUIRED, C_KERNEL},
    {"rootfs", 0, VMCTL_ARG_REQUIRED, C_ROOTFS},
    {"initrd", 0, VMCTL_ARG_REQUIRED, C_INITRD},
    {"vcpus", 0, VMCTL_ARG_REQUIRED, C_VCPUS},
    {"memory", 0, VMCTL_ARG_REQUIRED, C_MEMORY},
    {"disk-size", 0, VMCTL_ARG_REQUIRED, C_DISK_SIZE},
    {"boot-args", 0, VMCTL_ARG_REQUIRED, C_BOOT_ARGS},
    {"ssh-key", 0, VMCTL_ARG_REQUIRED, C_SSH_KEY},
    {"overlay", 0, VMCTL_ARG_REQUIRED, C_OVERLAY},
    {"no-net", 0, VMCTL_ARG_NONE, C_NO_NET},
    {"netns", 0, VMCTL_ARG_OPTIONAL, C_NETNS},
    {"start", 0, VMCTL_ARG_NONE, C_START},
    {NULL, 0, 0, 0},
};

struct create_args {
    const char *name;
    const char *kernel, *rootfs, *initrd, *ssh_key;
    bool no_net, netns, start;
    const char *netns_name;
    vmm_vm_spec spec;
};

static int parse_overlay(struct vmctl *v, const char *text, int32_t *out)
{
    if (strcmp(text, "auto") == 0)
        *out = VMM_OVERLAY_AUTO;
    else if (strcmp(text, "dm-snapshot") == 0)
        *out = VMM_OVERLAY_DM_SNAPSHOT;
    else if (strcmp(text, "copy") == 0)
        *out = VMM_OVERLAY_COPY;
    else
        return vmctl_usage_error(v, "--overlay: '%s' is not auto, dm-snapshot or copy", text);
    return 0;
}

static int create_option(struct vmctl *v, int id, const char *val, void *user)
{
    struct create_args *a = user;

    switch (id) {
    case C_KERNEL:
        a->kernel = val;
        break;
    case C_ROOTFS:
        a->rootfs = val;
        break;
    case C_INITRD:
        a->initrd = val;
        break;
    case C_VCPUS:
        /* 0 would mean "default" to the library; refuse it here. */
        return vmctl_parse_u32(v, "--vcpus", val, 1, UINT32_MAX, &a->spec.vcpus);
    case C_MEMORY:
        return vmctl_parse_u32(v, "--memory", val, 1, UINT32_MAX, &a->spec.memory_mib);
    case C_DISK_SIZE:
        return vmctl_parse_size(v, "--disk-size", val, &a->spec.disk_size);
    case C_BOOT_ARGS:
        a->spec.boot_args = val;
        break;
    case C_SSH_KEY:
        a->ssh_key = val;
        break;
    case C_OVERLAY:
        return parse_overlay(v, val, &a->spec.overlay);
    case C_NO_NET:
        a->no_net = true;
        break;
    case C_NETNS:
        a->netns = true;
        a->netns_name = val;
        break;
    case C_START:
        a->start = true;
        break;
    }
    return 0;
}

static int parse_create(struct vmctl *v, int argc, char **argv, struct create_args *a)
{
    int r = vmctl_parse(v, argc, argv, create_opts, &a->name, create_option, a);

    if (r != 0)
        return r;
    if (a->kernel == NULL)
        return vmctl_usage_error(v, "--kernel FILE is required");
    if (a->rootfs == NULL)
        return vmctl_usage_error(v, "--rootfs FILE is required");
    if (a->no_net && a->netns)
        return vmctl_usage_error(v, "--no-net and --netns exclude each other");
    if (a->netns_name != NULL && a->netns_name[0] == '\0')
        return vmctl_usage_error(v, "--netns: the namespace name is empty");
    return 0;
}

/* Length of the well-formed UTF-8 sequence at s (n bytes left), or 0:
 * no overlong forms, surrogates or code points past U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    uint32_t cp, min;
    size_t len;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2, cp = s[0] & 0x1f, min = 0x80;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3, cp = s[0] & 0x0f, min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    /* C1 controls are as foreign to a key file as C0 ones. */
    if (cp >= 0x80 && cp <= 0x9f)
        return 0;
    return len;
}

/* Offset of the first byte that keeps text from being a key file (not
 * UTF-8, or a control character other than newline and tab), or -1. */
static long key_text_bad_byte(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;

    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq_len(s + i, n - i);

        if (len == 0 || s[i] == 0x7f ||
            (s[i] < 0x20 && s[i] != '\n' && s[i] != '\t'))
            return (long)i;
        i += len;
    }
    return -1;
}

/*
 * Reads a public key file whole. Opened without blocking and checked on
 * the open fd, so a FIFO or device fails at once instead of waiting for a
 * writer, and the file checked is the file read.
 */
static int read_key_file(struct vmctl *v, const char *name, const char *path, char **out)
{
    char *buf = NULL;
    struct stat st;
    size_t n = 0;
    long bad;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return vmctl_fail(v, name, "--ssh-key %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        r = vmctl_fail(v, name, "--ssh-key %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = vmctl_fail(v, name, "--ssh-key %s is not a regular file", path);
        goto out;
    }
    if (st.st_size > MAX_KEY_FILE) {
        r = vmctl_fail(v, name, "--ssh-key %s: too large for a public key file (over %d KiB)",
                       path, MAX_KEY_FILE / 1024);
        goto out;
    }

    /* One byte more than allowed tells a file that grew since fstat. */
    buf = malloc(MAX_KEY_FILE + 2);
    if (buf == NULL) {
        r = vmctl_fail(v, name, "--ssh-key %s: %s", path, strerror(ENOMEM));
        goto out;
    }
    while (n <= MAX_KEY_FILE) {
        ssize_t got = read(fd, buf + n, MAX_KEY_FILE + 1 - n);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = vmctl_fail(v, name, "--ssh-key %s: %s", path, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n > MAX_KEY_FILE) {
        r = vmctl_fail(v, name, "--ssh-key %s: too large for a public key file (over %d KiB)",
                       path, MAX_KEY_FILE / 1024);
        goto out;
    }
    bad = key_text_bad_byte(buf, n);
    if (bad >= 0) {
        r = vmctl_fail(v, name, "--ssh-key %s is not a text key file: byte %ld is 0x%02x "
                       "(expected UTF-8 without control characters other than newline and tab)",
                       path, bad, (unsigned char)buf[bad]);
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    r = 0;

out:
    free(buf);
    close(fd);
    return r;
}

/* The public key text for the guest: the --ssh-key file, or vmctl's own
 * key pair, made on first use. */
static int load_ssh_key(struct vmctl *v, struct create_args *a, char **keys)
{
    char *own = NULL;
    const char *path = a->ssh_key;
    int r;

    if (path == NULL) {
        r = vmctl_default_key(v, a->name, &own);
        if (r != 0)
            return r;
        path = own;
    }
    *keys = NULL;
    r = read_key_file(v, a->name, path, keys);
    if (r == 0 && strstr(*keys, "PRIVATE KEY") != NULL)
        r = vmctl_fail(v, a->name, "--ssh-key %s: this is a private key; give the .pub file",
                       path);
    else if (r == 0 && strspn(*keys, " \t\n") == strlen(*keys))
        r = vmctl_fail(v, a->name, "--ssh-key %s: the file holds no key", path);
    if (r != 0) {
        free(*keys);
        *keys = NULL;
    }
    free(own);
    return r;
}

int cmd_create(struct vmctl *v, int argc, char **argv)
{
    struct create_args a = {.spec = VMM_VM_SPEC_INIT};
    char *kernel = NULL, *rootfs = NULL, *initrd = NULL, *keys = NULL;
    vmm_vm *vm = NULL;
    int r;

    r = parse_create(v, argc, argv, &a);
    if (r < 0)
        return vmctl_help(create_help);
    if (r != 0)
        return r;

    kernel = vmctl_absolute(a.kernel);
    rootfs = vmctl_absolute(a.rootfs);
    initrd = a.initrd ? vmctl_absolute(a.initrd) : NULL;
    if (kernel == NULL || rootfs == NULL || (a.initrd != NULL && initrd == NULL)) {
        r = vmctl_fail(v, a.name, "resolving paths: %s", strerror(errno));
        goto out;
    }
    a.spec.kernel = kernel;
    a.spec.base_image = rootfs;
    a.spec.initrd = initrd;
    if (a.no_net)
        a.spec.flags |= VMM_VM_NO_NET;
    if (a.netns && a.netns_name == NULL)
        a.spec.flags |= VMM_VM_OWN_NETNS;
    a.spec.netns = a.netns_name;

    if ((r = vmctl_context(v)) != 0)
        goto out;
    if ((r = load_ssh_key(v, &a, &keys)) != 0)
        goto out;
    a.spec.ssh_authorized_keys = keys;

    if (vmm_create(&vm, v->ctx, a.name, &a.spec) < 0) {
        r = vmctl_fail_lib(v, a.name);
        goto out;
    }
    if (a.start && vmm_start(vm, NULL) < 0) {
        const vmm_error *e = vmm_error_last();

        r = vmctl_fail(v, a.name, "created, but not started: %s",
                       e->message && e->message[0] ? e->message : vmm_strerror(e->code));
        goto out;
    }
    r = VMCTL_EXIT_OK;

out:
    vmm_vm_free(vm);
    free(kernel);
    free(rootfs);
    free(initrd);
    free(keys);
    return r;
}

/* --- start, stop, kill, delete --------------------------------------- */

enum { S_TIMEOUT = 1, S_FORCE };

static const struct vmctl_option timeout_opts[] = {
    {"timeout", 0, VMCTL_ARG_REQUIRED, S_TIMEOUT},
    {NULL, 0, 0, 0},
};

static const struct vmctl_option force_opts[] = {
    {"force", 0, VMCTL_ARG_NONE, S_FORCE},
    {NULL, 0, 0, 0},
};

static const struct vmctl_option no_opts[] = {
    {NULL, 0, 0, 0},
};

struct simple_args {
    const char *name;
    uint32_t timeout_ms;
    bool force;
};

static int simple_option(struct vmctl *v, int id, const char *val, void *user)
{
    struct simple_args *a = user;
    uint32_t seconds = 0;
    int r = 0;

    if (id == S_TIMEOUT) {
        r = vmctl_parse_u32(v, "--timeout", val, 1, MAX_TIMEOUT_S, &seconds);
        a->timeout_ms = seconds * 1000;
    } else if (id == S_FORCE) {
        a->force = true;
    }
    return r;
}

/* NAME with the options of start, stop, kill or delete. -1: --help. */
static int parse_simple(struct vmctl *v, int argc, char **argv,
                        const struct vmctl_option *opts, struct simple_args *a)
{
    return vmctl_parse(v, argc, argv, opts, &a->name, simple_option, a);
}

/* What start, stop and kill do to the VM they open. */
static int start_vm(vmm_vm *vm, const struct simple_args *a)
{
    vmm_start_options opts = VMM_START_OPTIONS_INIT;

    opts.timeout_ms = a->timeout_ms;
    return vmm_start(vm, &opts);
}

static int stop_vm(vmm_vm *vm, const struct simple_args *a)
{
    return vmm_stop(vm, a->timeout_ms);
}

static int kill_vm(vmm_vm *vm, const struct simple_args *a)
{
    (void)a;
    return vmm_kill(vm);
}

/* Parses NAME and opts, opens the VM, acts on it, reports the library's
 * error. */
static int act_on_vm(struct vmctl *v, int argc, char **argv, const struct vmctl_option *opts,
                     const char *help_text,
                     int (*act)(vmm_vm *vm, const struct simple_args *a))
{
    struct simple_args a = {0};
    vmm_vm *vm = NULL;
    int r = parse_simple(v, argc, argv, opts, &a);

    if (r < 0)
        return vmctl_help(help_text);
    if (r != 0 || (r = vmctl_open(v, a.name, &vm)) != 0)
        return r;
    if (act(vm, &a) < 0)
        r = vmctl_fail_lib(v, a.name);
    vmm_vm_free(vm);
    return r;
}

int cmd_start(struct vmctl *v, int argc, char **argv)
{
    return act_on_vm(v, argc, argv, timeout_opts, start_help, start_vm);
}

int cmd_stop(struct vmctl *v, int argc, char **argv)
{
    return act_on_vm(v, argc, argv, timeout_opts, stop_help, stop_vm);
}

int cmd_kill(struct vmctl *v, int argc, char **argv)
{
    return act_on_vm(v, argc, argv, no_opts, kill_help, kill_vm);
}

/* By name, so that --force also removes a VM whose record is unreadable. */
int cmd_delete(struct vmctl *v, int argc, char **argv)
{
    struct simple_args a = {0};
    int r = parse_simple(v, argc, argv, force_opts, &a);

    if (r < 0)
        return vmctl_help(delete_help);
    if (r != 0 || (r = vmctl_context(v)) != 0)
        return r;
    if (vmm_delete_by_name(v->ctx, a.name, a.force ? VMM_DELETE_FORCE : 0) < 0)
        return vmctl_fail_lib(v, a.name);
    return VMCTL_EXIT_OK;
}

/* --- set ------------------------------------------------------------- */

enum { SET_VCPUS = 1, SET_MEMORY };

static const struct vmctl_option set_opts[] = {
    {"vcpus", 0, VMCTL_ARG_REQUIRED, SET_VCPUS},
    {"memory", 0, VMCTL_ARG_REQUIRED, SET_MEMORY},
    {NULL, 0, 0, 0},
};

struct set_args {
    uint32_t vcpus, memory;
};

static int set_option(struct vmctl *v, int id, const char *val, void *user)
{
    struct set_args *a = user;

    if (id == SET_VCPUS)
        return vmctl_parse_u32(v, "--vcpus", val, 1, UINT32_MAX, &a->vcpus);
    return vmctl_parse_u32(v, "--memory", val, 1, UINT32_MAX, &a->memory);
}

int cmd_set(struct vmctl *v, int argc, char **argv)
{
    struct set_args a = {0};
    const char *name = NULL;
    vmm_vm *vm = NULL;
    int r = vmctl_parse(v, argc, argv, set_opts, &name, set_option, &a);

    if (r < 0)
        return vmctl_help(set_help);
    if (r != 0)
        return r;
    if (a.vcpus == 0 && a.memory == 0)
        return vmctl_usage_error(v, "nothing to set: give --vcpus and/or --memory");

    if ((r = vmctl_open(v, name, &vm)) != 0)
        return r;
    if (a.vcpus != 0 && vmm_set_vcpus(vm, a.vcpus) < 0)
        r = vmctl_fail_lib(v, name);
    else if (a.memory != 0 && vmm_set_memory(vm, a.memory) < 0)
        r = vmctl_fail_lib(v, name);
    vmm_vm_free(vm);
    return r;
}
