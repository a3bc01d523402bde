/*
 * The Firecracker API client: typed HTTP/1.1 calls over a VM's API Unix
 * socket (libcurl), JSON built and parsed with yajl.
 *
 * Requests follow Firecracker's rules: required fields always sent,
 * booleans included; ids in the path equal the ids in the body; no field
 * the API description does not name. A refused request fails with
 * VMM_EAPI, the HTTP status and Firecracker's fault_message verbatim
 * (error_set_api). Every request is bounded by the client's timeout; an
 * expired wait is VMM_ETIMEDOUT for the caller and nothing more.
 *
 * A client is used by one thread at a time.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_API_H
#define LIBVMM_API_H

#include "internal.h"

struct api_client;

/*
 * Opens a client for `socket_path` (copied; no connection is made yet).
 * timeout_ms (>= 1) bounds each request, connecting included. VMM_EINVAL,
 * VMM_ENOMEM, VMM_EIO (libcurl unusable). Free with api_client_free().
 *
 * Errors of the calls below: VMM_EINVAL (missing required field, id not
 * made of letters, digits and '_', string not UTF-8), VMM_ETIMEDOUT (no
 * answer within the bound; the request is named), VMM_EIO (cannot
 * connect, connection lost), VMM_EAPI (refused: http_status and
 * fault_message set, or an answer that is not what the API describes).
 */
int api_client_new(struct api_client **out, const char *socket_path,
                   uint32_t timeout_ms);
void api_client_free(struct api_client *c);

/* Changes the bound of the following requests (0 is taken as 1 ms). */
void api_client_set_timeout(struct api_client *c, uint32_t timeout_ms);

enum api_instance_state {
    API_STATE_NOT_STARTED,
    API_STATE_RUNNING,
    API_STATE_PAUSED,
};

struct api_instance_info {
    enum api_instance_state state;
    char id[128];
    char vmm_version[64];
    char app_name[64];
};

struct api_machine_config {
    uint32_t vcpu_count;
    uint32_t mem_size_mib;
    bool smt;
    bool track_dirty_pages;
};

struct api_boot_source {
    const char *kernel_image_path;
    const char *initrd_path; /* NULL: not sent */
    const char *boot_args;   /* NULL: not sent */
};

struct api_drive {
    const char *drive_id;
    const char *path_on_host;
    bool is_root_device;
    bool is_read_only;
    const char *partuuid; /* NULL: not sent */
};

struct api_network_interface {
    const char *iface_id;
    const char *host_dev_name;
    const char *guest_mac; /* NULL: not sent */
};

struct api_logger {
    const char *log_path;
    const char *level; /* "Error", "Warning", "Info", "Debug", NULL */
    bool show_level;
    bool show_log_origin;
};

struct api_vsock {
    uint32_t guest_cid;
    const char *uds_path;
};

enum api_action {
    API_ACTION_INSTANCE_START,
    API_ACTION_SEND_CTRL_ALT_DEL,
    API_ACTION_FLUSH_METRICS,
};

/* GET / */
int api_get_instance_info(struct api_client *c, struct api_instance_info *out);
/* GET /version: firecracker_version, into buf. */
int api_get_version(struct api_client *c, char *buf, size_t size);
/* GET /machine-config */
int api_get_machine_config(struct api_client *c, struct api_machine_config *out);
/* GET /vm/config: the whole configuration as JSON text; caller frees. */
int api_get_vm_config(struct api_client *c, char **json_out);

int api_put_boot_source(struct api_client *c, const struct api_boot_source *b);
int api_put_machine_config(struct api_client *c, const struct api_machine_config *m);
int api_put_drive(struct api_client *c, const struct api_drive *d);
int api_put_network_interface(struct api_client *c,
                              const struct api_network_interface *n);
int api_put_logger(struct api_client *c, const struct api_logger *l);
int api_put_metrics(struct api_client *c, const char *metrics_path);
int api_put_vsock(struct api_client *c, const struct api_vsock *v);
int api_put_entropy(struct api_client *c);
int api_action(struct api_client *c, enum api_action action);
/* PATCH /vm: paused true -> "Paused", false -> "Resumed". */
int api_patch_vm_state(struct api_client *c, bool paused);

#endif /* LIBVMM_API_H */
