/*
 * vmctl: show and list, as aligned text or as JSON.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#include "vmctl.h"

static const char show_help[] =
    "Usage: vmctl show NAME [--json]\n"
    "\n"
    "Show a VM's settings and state. A VMM that died is reported as\n"
    "stopped, with how it ended.\n"
    "\n"
    "  --json                one JSON object: name, state (stopped, running,\n"
    "                        paused), pid, vcpus, memory_mib, disk_size,\n"
    "                        guest_ip, host_ip, mac, tap, netns, api_socket,\n"
    "                        overlay_driver, disk, kernel, initrd,\n"
    "                        base_image, boot_args, log, known_hosts,\n"
    "                        last_exit (absent values are null)\n";

static const char list_help[] =
    "Usage: vmctl list [--json]\n"
    "\n"
    "List every VM. A record that cannot be read is listed with the reason\n"
    "(also printed on stderr) and does not hide the others; the exit status\n"
    "stays 0.\n"
    "\n"
    "  --json                an array of the objects 'vmctl show --json'\n"
    "                        prints; an unreadable record appears as\n"
    "                        {\"name\": ..., \"error\": ...}\n";

enum { O_JSON = 1 };

static const struct vmctl_option json_opts[] = {
    {"json", 0, VMCTL_ARG_NONE, O_JSON},
    {NULL, 0, 0, 0},
};

/* --- JSON ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n, i;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/*
 * Paths and messages are bytes, JSON is UTF-8: a byte that is not part of
 * valid UTF-8 becomes U+FFFD rather than breaking the document.
 */
static void json_string(yajl_gen g, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len, cap, n = 0;
    char *buf;

    if (s == NULL) {
        yajl_gen_null(g);
        return;
    }
    len = strlen(s);
    cap = len * 3 + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        yajl_gen_string(g, (const unsigned char *)"", 0);
        return;
    }
    while (*p != '\0') {
        size_t k = utf8_len(p);

        if (k == 0) {
            memcpy(buf + n, "\xef\xbf\xbd", 3);
            n += 3;
            p++;
            continue;
        }
        memcpy(buf + n, p, k);
        n += k;
        p += k;
    }
    yajl_gen_string(g, (const unsigned char *)buf, n);
    free(buf);
}

static void json_key(yajl_gen g, const char *key)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
}

static void json_field(yajl_gen g, const char *key, const char *value)
{
    json_key(g, key);
    json_string(g, value);
}

static void json_uint(yajl_gen g, const char *key, uint64_t value)
{
    json_key(g, key);
    yajl_gen_integer(g, (long long)value);
}

static void json_vm(yajl_gen g, const vmm_vm *vm)
{
    int32_t pid = vmm_vm_pid(vm);

    yajl_gen_map_open(g);
    json_field(g, "name", vmm_vm_name(vm));
    json_field(g, "state", vmctl_state_name(vmm_vm_state(vm)));
    json_key(g, "pid");
    if (pid > 0)
        yajl_gen_integer(g, pid);
    else
        yajl_gen_null(g);
    json_uint(g, "vcpus", vmm_vm_vcpus(vm));
    json_uint(g, "memory_mib", vmm_vm_memory_mib(vm));
    json_uint(g, "disk_size", vmm_vm_disk_size(vm));
    json_field(g, "guest_ip", vmm_vm_guest_ip(vm));
    json_field(g, "host_ip", vmm_vm_host_ip(vm));
    json_field(g, "mac", vmm_vm_mac(vm));
    json_field(g, "tap", vmm_vm_tap(vm));
    json_field(g, "netns", vmm_vm_netns(vm));
    json_field(g, "api_socket", vmm_vm_api_socket(vm));
    json_field(g, "overlay_driver", vmm_vm_overlay_driver(vm));
    json_field(g, "disk", vmm_vm_disk(vm));
    json_field(g, "kernel", vmm_vm_kernel(vm));
    json_field(g, "initrd", vmm_vm_initrd(vm));
    json_field(g, "base_image", vmm_vm_base_image(vm));
    json_field(g, "boot_args", vmm_vm_boot_args(vm));
    json_field(g, "log", vmm_vm_log_path(vm));
    json_field(g, "known_hosts", vmm_vm_known_hosts(vm));
    json_field(g, "last_exit", vmm_vm_last_exit(vm));
    yajl_gen_map_close(g);
}

static yajl_gen json_begin(void)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    if (g != NULL)
        yajl_gen_config(g, yajl_gen_beautify, 1);
    return g;
}

static int json_end(struct vmctl *v, yajl_gen g)
{
    const unsigned char *buf;
    size_t len;

    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        yajl_gen_free(g);
        return vmctl_fail(v, NULL, "could not format the JSON output");
    }
    fwrite(buf, 1, len, stdout);
    if (len == 0 || buf[len - 1] != '\n')
        fputc('\n', stdout);
    yajl_gen_free(g);
    return VMCTL_EXIT_OK;
}

/* --- text ------------------------------------------------------------ */

static const char *or_dash(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : "-";
}

static void text_vm(const vmm_vm *vm)
{
    char pid[16] = "-";
    char mem[32], size[32];

    if (vmm_vm_pid(vm) > 0)
        snprintf(pid, sizeof(pid), "%d", (int)vmm_vm_pid(vm));
    snprintf(mem, sizeof(mem), "%u MiB", (unsigned)vmm_vm_memory_mib(vm));
    snprintf(size, sizeof(size), "%llu bytes", (unsigned long long)vmm_vm_disk_size(vm));

    printf("%-15s %s\n", "name:", or_dash(vmm_vm_name(vm)));
    printf("%-15s %s\n", "state:", vmctl_state_name(vmm_vm_state(vm)));
    printf("%-15s %s\n", "pid:", pid);
    printf("%-15s %u\n", "vcpus:", (unsigned)vmm_vm_vcpus(vm));
    printf("%-15s %s\n", "memory:", mem);
    printf("%-15s %s\n", "disk size:", size);
    printf("%-15s %s\n", "guest ip:", or_dash(vmm_vm_guest_ip(vm)));
    printf("%-15s %s\n", "host ip:", or_dash(vmm_vm_host_ip(vm)));
    printf("%-15s %s\n", "mac:", or_dash(vmm_vm_mac(vm)));
    printf("%-15s %s\n", "tap:", or_dash(vmm_vm_tap(vm)));
    printf("%-15s %s\n", "netns:", or_dash(vmm_vm_netns(vm)));
    printf("%-15s %s\n", "api socket:", or_dash(vmm_vm_api_socket(vm)));
    printf("%-15s %s\n", "overlay:", or_dash(vmm_vm_overlay_driver(vm)));
    printf("%-15s %s\n", "disk:", or_dash(vmm_vm_disk(vm)));
    printf("%-15s %s\n", "kernel:", or_dash(vmm_vm_kernel(vm)));
    printf("%-15s %s\n", "initrd:", or_dash(vmm_vm_initrd(vm)));
    printf("%-15s %s\n", "base image:", or_dash(vmm_vm_base_image(vm)));
    printf("%-15s %s\n", "boot args:", or_dash(vmm_vm_boot_args(vm)));
    printf("%-15s %s\n", "log:", or_dash(vmm_vm_log_path(vm)));
    printf("%-15s %s\n", "known hosts:", or_dash(vmm_vm_known_hosts(vm)));
    printf("%-15s %s\n", "last exit:", or_dash(vmm_vm_last_exit(vm)));
}

/* One row of the list table; NULL vm: an unreadable record. */
struct row {
    const char *cells[7];
    char pid[16], vcpus[16], mem[16];
};

static void fill_row(struct row *r, const char *name, const vmm_vm *vm)
{
    memset(r, 0, sizeof(*r));
    r->cells[0] = name;
    if (vm == NULL) {
        r->cells[1] = "unreadable";
        for (int i = 2; i < 7; i++)
            r->cells[i] = "-";
        return;
    }
    strcpy(r->pid, "-");
    if (vmm_vm_pid(vm) > 0)
        snprintf(r->pid, sizeof(r->pid), "%d", (int)vmm_vm_pid(vm));
    snprintf(r->vcpus, sizeof(r->vcpus), "%u", (unsigned)vmm_vm_vcpus(vm));
    snprintf(r->mem, sizeof(r->mem), "%u", (unsigned)vmm_vm_memory_mib(vm));
    r->cells[1] = vmctl_state_name(vmm_vm_state(vm));
    r->cells[2] = r->pid;
    r->cells[3] = r->vcpus;
    r->cells[4] = r->mem;
    r->cells[5] = or_dash(vmm_vm_guest_ip(vm));
    r->cells[6] = or_dash(vmm_vm_netns(vm));
}

static void print_table(struct row *rows, uint32_t n)
{
    static const char *const heads[7] = {"NAME", "STATE", "PID", "VCPUS", "MEM(MiB)",
                                         "GUEST-IP", "NETNS"};
    int width[7];

    for (int c = 0; c < 7; c++) {
        width[c] = (int)strlen(heads[c]);
        for (uint32_t i = 0; i < n; i++)
            if ((int)strlen(rows[i].cells[c]) > width[c])
                width[c] = (int)strlen(rows[i].cells[c]);
    }
    for (int c = 0; c < 6; c++)
        printf("%-*s  ", width[c], heads[c]);
    printf("%s\n", heads[6]);
    for (uint32_t i = 0; i < n; i++)
        for (int c = 0; c < 7; c++)
            if (c < 6)
                printf("%-*s  ", width[c], rows[i].cells[c]);
            else
                printf("%s\n", rows[i].cells[c]);
}

/* --- commands -------------------------------------------------------- */

int cmd_show(struct vmctl *v, int argc, char **argv)
{
    const char *name = NULL;
    bool json = false;
    vmm_vm *vm = NULL;
    yajl_gen g;
    int r = vmctl_parse_flag(v, argc, argv, json_opts, &name, &json);

    if (r < 0)
        return vmctl_help(show_help);
    if (r != 0 || (r = vmctl_open(v, name, &vm)) != 0)
        return r;

    if (!json) {
        text_vm(vm);
        vmm_vm_free(vm);
        return VMCTL_EXIT_OK;
    }
    g = json_begin();
    if (g == NULL) {
        vmm_vm_free(vm);
        return vmctl_fail(v, name, "out of memory");
    }
    json_vm(g, vm);
    vmm_vm_free(vm);
    return json_end(v, g);
}

int cmd_list(struct vmctl *v, int argc, char **argv)
{
    bool json = false;
    vmm_vm_list *list = NULL;
    struct row *rows = NULL;
    uint32_t n;
    yajl_gen g = NULL;
    int r = vmctl_parse_flag(v, argc, argv, json_opts, NULL, &json);

    if (r < 0)
        return vmctl_help(list_help);
    if (r != 0 || (r = vmctl_context(v)) != 0)
        return r;
    if (vmm_list(&list, v->ctx) < 0)
        return vmctl_fail_lib(v, NULL);
    n = vmm_vm_list_count(list);

    if (json) {
        g = json_begin();
    } else {
        rows = calloc(n ? n : 1, sizeof(*rows));
    }
    if (json ? g == NULL : rows == NULL) {
        vmm_vm_list_free(list);
        return vmctl_fail(v, NULL, "out of memory");
    }
    if (json)
        yajl_gen_array_open(g);
    for (uint32_t i = 0; i < n; i++) {
        const vmm_vm *vm = vmm_vm_list_vm(list, i);
        const char *name = vmm_vm_list_name(list, i);
        const char *err = vmm_vm_list_error(list, i);

        if (vm == NULL)
            vmctl_fail(v, name, "%s", err ? err : "unreadable record");
        if (!json) {
            fill_row(&rows[i], name ? name : "?", vm);
        } else if (vm != NULL) {
            json_vm(g, vm);
        } else {
            yajl_gen_map_open(g);
            json_field(g, "name", name);
            json_field(g, "error", err ? err : "unreadable record");
            yajl_gen_map_close(g);
        }
    }
    if (json) {
        yajl_gen_array_close(g);
        r = json_end(v, g);
    } else {
        print_table(rows, n);
        free(rows);
        r = VMCTL_EXIT_OK;
    }
    vmm_vm_list_free(list);
    return r;
}
