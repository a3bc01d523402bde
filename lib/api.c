/*
 * The Firecracker API client: HTTP/1.1 over the API Unix socket.
 *
 * One curl easy handle per client, so consecutive requests reuse one
 * connection. Bodies are built with yajl_gen from the typed structs, never
 * from caller text, so a request can only carry fields the API names.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "api.h"

/* Firecracker's answers are small; this only stops a runaway peer. */
#define RESPONSE_MAX (4u << 20)

/* Firecracker ids: ASCII letters, digits and '_', at most 64 of them. */
#define ID_MAX 64

struct api_client {
    CURL *curl;
    struct curl_slist *headers;
    char *socket_path;
    uint32_t timeout_ms;
    char *resp;
    size_t resp_len;
    size_t resp_cap;
    bool resp_overflow;
    char curl_error[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t collect(char *data, size_t size, size_t nmemb, void *user)
{
    struct api_client *c = user;
    size_t n = size * nmemb;
    size_t want;
    char *grown;

    if (c->resp_len + n + 1 > RESPONSE_MAX) {
        c->resp_overflow = true;
        return 0;
    }
    if (c->resp_len + n + 1 > c->resp_cap) {
        want = c->resp_cap ? c->resp_cap : 512;
        while (want < c->resp_len + n + 1)
            want *= 2;
        grown = realloc(c->resp, want);
        if (grown == NULL)
            return 0;
        c->resp = grown;
        c->resp_cap = want;
    }
    memcpy(c->resp + c->resp_len, data, n);
    c->resp_len += n;
    c->resp[c->resp_len] = '\0';
    return n;
}

int api_client_new(struct api_client **out, const char *socket_path,
                   uint32_t timeout_ms)
{
    struct api_client *c;
    int r = VMM_ENOMEM;

    if (out == NULL || socket_path == NULL || socket_path[0] == '\0')
        return error_set(VMM_EINVAL, "API client: no socket path");
    if (timeout_ms == 0)
        return error_set(VMM_EINVAL, "API client for %s: timeout must be "
                         "at least 1 ms", socket_path);

    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK)
        return error_set(VMM_EIO, "initialising libcurl: %s",
                         curl_easy_strerror(curl_init_result));

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return error_set(VMM_ENOMEM, "allocating an API client for %s",
                         socket_path);
    c->timeout_ms = timeout_ms;
    c->socket_path = strdup(socket_path);
    c->resp_cap = 512;
    c->resp = malloc(c->resp_cap);
    c->curl = curl_easy_init();
    if (c->socket_path == NULL || c->resp == NULL || c->curl == NULL)
        goto fail;
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (c->headers != NULL)
        c->headers = curl_slist_append(c->headers, "Accept: application/json");
    if (c->headers != NULL)
        /* Firecracker's server does not speak 100-continue. */
        c->headers = curl_slist_append(c->headers, "Expect:");
    if (c->headers == NULL)
        goto fail;

    if (curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH,
                         c->socket_path) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_HTTP_VERSION,
                         (long)CURL_HTTP_VERSION_1_1) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, collect) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c) != CURLE_OK ||
        curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER,
                         c->curl_error) != CURLE_OK) {
        r = error_set(VMM_EIO, "API client for %s: this libcurl lacks "
                      "Unix socket support", socket_path);
        goto fail_recorded;
    }
    *out = c;
    return 0;

fail:
    r = error_set(VMM_ENOMEM, "allocating an API client for %s", socket_path);
fail_recorded:
    api_client_free(c);
    return r;
}

void api_client_free(struct api_client *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->socket_path);
    free(c->resp);
    free(c);
}

void api_client_set_timeout(struct api_client *c, uint32_t timeout_ms)
{
    c->timeout_ms = timeout_ms ? timeout_ms : 1;
}

/* Firecracker's fault_message out of an error body, or NULL. */
static char *fault_of(const char *body)
{
    const char *path[] = { "fault_message", NULL };
    const char *text;
    yajl_val doc, v;
    char *fault = NULL;

    if (body == NULL)
        return NULL;
    doc = yajl_tree_parse(body, NULL, 0);
    if (doc == NULL)
        return NULL;
    v = yajl_tree_get(doc, path, yajl_t_string);
    text = v ? YAJL_GET_STRING(v) : NULL;
    if (text != NULL)
        fault = strdup(text);
    yajl_tree_free(doc);
    return fault;
}

/*
 * One request. On success the response body (NUL-terminated, possibly
 * empty) is in c->resp until the next request.
 */
static int request(struct api_client *c, const char *method, const char *path,
                   const char *body, size_t body_len)
{
    char url[256];
    long status = 0;
    long os_errno = 0;
    CURLcode rc;
    char *fault;

    snprintf(url, sizeof(url), "http://localhost%s", path);
    c->resp_len = 0;
    c->resp_overflow = false;
    c->resp[0] = '\0';
    c->curl_error[0] = '\0';

    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
    if (body == NULL) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, NULL);
    } else {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)body_len);
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    }

    rc = curl_easy_perform(c->curl);
    /* The body belongs to the caller; never let curl look at it again. */
    if (body != NULL)
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);

    switch (rc) {
    case CURLE_OK:
        break;
    case CURLE_OPERATION_TIMEDOUT:
        return error_set(VMM_ETIMEDOUT, "%s %s on %s: no answer within "
                         "%u ms", method, path, c->socket_path,
                         c->timeout_ms);
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
        return error_set_os(VMM_EIO, (int)os_errno, "%s %s on %s: cannot "
                            "connect", method, path, c->socket_path);
    case CURLE_WRITE_ERROR:
        if (c->resp_overflow)
            return error_set(VMM_EIO, "%s %s on %s: answer larger than "
                             "%u bytes", method, path, c->socket_path,
                             RESPONSE_MAX);
        return error_set(VMM_ENOMEM, "%s %s on %s: storing the answer",
                         method, path, c->socket_path);
    default:
        return error_set(VMM_EIO, "%s %s on %s: %s", method, path,
                         c->socket_path, c->curl_error[0] ? c->curl_error
                         : curl_easy_strerror(rc));
    }

    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300)
        return 0;

    fault = fault_of(c->resp);
    error_set_api((int)status, fault, "%s %s on %s: HTTP %ld", method, path,
                  c->socket_path, status);
    free(fault);
    return VMM_EAPI;
}

/* --- building bodies ------------------------------------------------- */

struct body {
    yajl_gen g;
    bool bad; /* a generator call failed: invalid UTF-8 or no memory */
};

static void body_open(struct body *b)
{
    b->g = yajl_gen_alloc(NULL);
    b->bad = b->g == NULL;
    if (b->bad)
        return;
    yajl_gen_config(b->g, yajl_gen_validate_utf8, 1);
    b->bad = yajl_gen_map_open(b->g) != yajl_gen_status_ok;
}

static void put_key(struct body *b, const char *key)
{
    if (!b->bad && yajl_gen_string(b->g, (const unsigned char *)key,
                                   strlen(key)) != yajl_gen_status_ok)
        b->bad = true;
}

static void put_str(struct body *b, const char *key, const char *value)
{
    put_key(b, key);
    if (!b->bad && yajl_gen_string(b->g, (const unsigned char *)value,
                                   strlen(value)) != yajl_gen_status_ok)
        b->bad = true;
}

static void put_bool(struct body *b, const char *key, bool value)
{
    put_key(b, key);
    if (!b->bad && yajl_gen_bool(b->g, value) != yajl_gen_status_ok)
        b->bad = true;
}

static void put_uint(struct body *b, const char *key, uint64_t value)
{
    put_key(b, key);
    if (!b->bad && yajl_gen_integer(b->g, (long long)value) !=
        yajl_gen_status_ok)
        b->bad = true;
}

/* Closes the body and sends it; frees the generator in every case. */
static int body_send(struct api_client *c, struct body *b, const char *method,
                     const char *path)
{
    const unsigned char *buf;
    size_t len;
    int r;

    if (!b->bad && (yajl_gen_map_close(b->g) != yajl_gen_status_ok ||
                    yajl_gen_get_buf(b->g, &buf, &len) != yajl_gen_status_ok))
        b->bad = true;
    if (b->bad)
        r = error_set(VMM_EINVAL, "%s %s on %s: a field is not valid UTF-8",
                      method, path, c->socket_path);
    else
        r = request(c, method, path, (const char *)buf, len);
    if (b->g != NULL)
        yajl_gen_free(b->g);
    return r;
}

/* Ids go into the URL, so only Firecracker's own alphabet is allowed. */
static int check_id(const struct api_client *c, const char *what,
                    const char *id)
{
    size_t n;

    if (id == NULL || id[0] == '\0')
        return error_set(VMM_EINVAL, "API request on %s: %s is empty",
                         c->socket_path, what);
    for (n = 0; id[n] != '\0'; n++) {
        char ch = id[n];

        if (n >= ID_MAX)
            return error_set(VMM_EINVAL, "%s \"%.64s...\" is longer than "
                             "%d characters", what, id, ID_MAX);
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_'))
            return error_set(VMM_EINVAL, "%s \"%s\" may hold only letters, "
                             "digits and '_'", what, id);
    }
    return 0;
}

static int need(const struct api_client *c, const char *request_name,
                const char *field, const void *value)
{
    if (value == NULL)
        return error_set(VMM_EINVAL, "%s on %s: %s is required",
                         request_name, c->socket_path, field);
    return 0;
}

#define CHECK_CLIENT(c, arg, what) do { \
        if ((c) == NULL || (arg) == NULL) \
            return error_set(VMM_EINVAL, "%s: NULL argument", (what)); \
    } while (0)

/* --- reading answers -------------------------------------------------- */

static yajl_val parse_answer(struct api_client *c, const char *what)
{
    char err[128];
    yajl_val doc = yajl_tree_parse(c->resp, err, sizeof(err));

    if (doc == NULL)
        error_set(VMM_EAPI, "%s on %s: answer is not JSON: %s", what,
                  c->socket_path, err);
    return doc;
}

static int copy_field(yajl_val doc, const char *key, char *dst, size_t size,
                      const struct api_client *c, const char *what)
{
    const char *path[] = { key, NULL };
    yajl_val v = yajl_tree_get(doc, path, yajl_t_string);
    const char *text = v ? YAJL_GET_STRING(v) : NULL;

    if (text == NULL)
        return error_set(VMM_EAPI, "%s on %s: answer lacks string \"%s\"",
                         what, c->socket_path, key);
    if (strlen(text) >= size)
        return error_set(VMM_EAPI, "%s on %s: \"%s\" is longer than %zu "
                         "bytes", what, c->socket_path, key, size - 1);
    strcpy(dst, text);
    return 0;
}

/* --- the typed calls -------------------------------------------------- */

int api_get_instance_info(struct api_client *c, struct api_instance_info *out)
{
    const char *state_path[] = { "state", NULL };
    struct api_instance_info info = { 0 };
    const char *state;
    yajl_val doc, v;
    int r;

    CHECK_CLIENT(c, out, "GET /");
    r = request(c, "GET", "/", NULL, 0);
    if (r < 0)
        return r;
    doc = parse_answer(c, "GET /");
    if (doc == NULL)
        return VMM_EAPI;

    r = copy_field(doc, "id", info.id, sizeof(info.id), c, "GET /");
    if (r == 0)
        r = copy_field(doc, "vmm_version", info.vmm_version,
                       sizeof(info.vmm_version), c, "GET /");
    if (r == 0)
        r = copy_field(doc, "app_name", info.app_name,
                       sizeof(info.app_name), c, "GET /");
    if (r < 0)
        goto out;

    v = yajl_tree_get(doc, state_path, yajl_t_string);
    state = v && YAJL_GET_STRING(v) ? YAJL_GET_STRING(v) : "";
    if (strcmp(state, "Not started") == 0) {
        info.state = API_STATE_NOT_STARTED;
    } else if (strcmp(state, "Running") == 0) {
        info.state = API_STATE_RUNNING;
    } else if (strcmp(state, "Paused") == 0) {
        info.state = API_STATE_PAUSED;
    } else {
        r = error_set(VMM_EAPI, "GET / on %s: unknown state \"%s\"",
                      c->socket_path, state);
        goto out;
    }
    *out = info;

out:
    yajl_tree_free(doc);
    return r;
}

int api_get_version(struct api_client *c, char *buf, size_t size)
{
    yajl_val doc;
    int r;

    CHECK_CLIENT(c, buf, "GET /version");
    if (size == 0)
        return error_set(VMM_EINVAL, "GET /version: buffer size is 0");
    r = request(c, "GET", "/version", NULL, 0);
    if (r < 0)
        return r;
    doc = parse_answer(c, "GET /version");
    if (doc == NULL)
        return VMM_EAPI;
    r = copy_field(doc, "firecracker_version", buf, size, c, "GET /version");
    yajl_tree_free(doc);
    return r;
}

int api_get_machine_config(struct api_client *c, struct api_machine_config *out)
{
    const char *vcpu[] = { "vcpu_count", NULL };
    const char *mem[] = { "mem_size_mib", NULL };
    const char *smt[] = { "smt", NULL };
    const char *dirty[] = { "track_dirty_pages", NULL };
    struct api_machine_config m = { 0 };
    yajl_val doc, v, w;
    int r = 0;

    CHECK_CLIENT(c, out, "GET /machine-config");
    r = request(c, "GET", "/machine-config", NULL, 0);
    if (r < 0)
        return r;
    doc = parse_answer(c, "GET /machine-config");
    if (doc == NULL)
        return VMM_EAPI;

    v = yajl_tree_get(doc, vcpu, yajl_t_number);
    w = yajl_tree_get(doc, mem, yajl_t_number);
    if (v == NULL || w == NULL || !YAJL_IS_INTEGER(v) || !YAJL_IS_INTEGER(w) ||
        YAJL_GET_INTEGER(v) < 0 || YAJL_GET_INTEGER(v) > UINT32_MAX ||
        YAJL_GET_INTEGER(w) < 0 || YAJL_GET_INTEGER(w) > UINT32_MAX) {
        r = error_set(VMM_EAPI, "GET /machine-config on %s: vcpu_count or "
                      "mem_size_mib missing or out of range", c->socket_path);
        goto out;
    }
    m.vcpu_count = (uint32_t)YAJL_GET_INTEGER(v);
    m.mem_size_mib = (uint32_t)YAJL_GET_INTEGER(w);
    /* Optional in the answer, false by default. */
    m.smt = YAJL_IS_TRUE(yajl_tree_get(doc, smt, yajl_t_true));
    m.track_dirty_pages = YAJL_IS_TRUE(yajl_tree_get(doc, dirty, yajl_t_true));
    *out = m;

out:
    yajl_tree_free(doc);
    return r;
}

int api_get_vm_config(struct api_client *c, char **json_out)
{
    char *copy;
    int r;

    CHECK_CLIENT(c, json_out, "GET /vm/config");
    r = request(c, "GET", "/vm/config", NULL, 0);
    if (r < 0)
        return r;
    copy = strdup(c->resp);
    if (copy == NULL)
        return error_set(VMM_ENOMEM, "GET /vm/config: copying the answer");
    *json_out = copy;
    return 0;
}

int api_put_boot_source(struct api_client *c, const struct api_boot_source *b)
{
    struct body body;
    int r;

    CHECK_CLIENT(c, b, "PUT /boot-source");
    r = need(c, "PUT /boot-source", "kernel_image_path", b->kernel_image_path);
    if (r < 0)
        return r;
    body_open(&body);
    put_str(&body, "kernel_image_path", b->kernel_image_path);
    if (b->initrd_path != NULL)
        put_str(&body, "initrd_path", b->initrd_path);
    if (b->boot_args != NULL)
        put_str(&body, "boot_args", b->boot_args);
    return body_send(c, &body, "PUT", "/boot-source");
}

int api_put_machine_config(struct api_client *c,
                           const struct api_machine_config *m)
{
    struct body body;

    CHECK_CLIENT(c, m, "PUT /machine-config");
    body_open(&body);
    put_uint(&body, "vcpu_count", m->vcpu_count);
    put_uint(&body, "mem_size_mib", m->mem_size_mib);
    put_bool(&body, "smt", m->smt);
    put_bool(&body, "track_dirty_pages", m->track_dirty_pages);
    return body_send(c, &body, "PUT", "/machine-config");
}

int api_put_drive(struct api_client *c, const struct api_drive *d)
{
    struct body body;
    char path[16 + ID_MAX];
    int r;

    CHECK_CLIENT(c, d, "PUT /drives");
    r = check_id(c, "drive_id", d->drive_id);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), "/drives/%s", d->drive_id);
    r = need(c, path, "path_on_host", d->path_on_host);
    if (r < 0)
        return r;
    body_open(&body);
    put_str(&body, "drive_id", d->drive_id);
    put_str(&body, "path_on_host", d->path_on_host);
    put_bool(&body, "is_root_device", d->is_root_device);
    put_bool(&body, "is_read_only", d->is_read_only);
    if (d->partuuid != NULL)
        put_str(&body, "partuuid", d->partuuid);
    return body_send(c, &body, "PUT", path);
}

int api_put_network_interface(struct api_client *c,
                              const struct api_network_interface *n)
{
    struct body body;
    char path[32 + ID_MAX];
    int r;

    CHECK_CLIENT(c, n, "PUT /network-interfaces");
    r = check_id(c, "iface_id", n->iface_id);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), "/network-interfaces/%s", n->iface_id);
    r = need(c, path, "host_dev_name", n->host_dev_name);
    if (r < 0)
        return r;
    body_open(&body);
    put_str(&body, "iface_id", n->iface_id);
    put_str(&body, "host_dev_name", n->host_dev_name);
    if (n->guest_mac != NULL)
        put_str(&body, "guest_mac", n->guest_mac);
    return body_send(c, &body, "PUT", path);
}

int api_put_logger(struct api_client *c, const struct api_logger *l)
{
    static const char *const levels[] = {
        "Error", "Warning", "Info", "Debug", "Trace",
    };
    struct body body;
    bool known = false;

    CHECK_CLIENT(c, l, "PUT /logger");
    for (size_t i = 0; l->level != NULL && i < ARRAY_SIZE(levels); i++)
        known = known || strcmp(l->level, levels[i]) == 0;
    if (l->level != NULL && !known)
        return error_set(VMM_EINVAL, "PUT /logger on %s: level \"%s\" is "
                         "not Error, Warning, Info, Debug or Trace",
                         c->socket_path, l->level);
    body_open(&body);
    if (l->log_path != NULL)
        put_str(&body, "log_path", l->log_path);
    if (l->level != NULL)
        put_str(&body, "level", l->level);
    put_bool(&body, "show_level", l->show_level);
    put_bool(&body, "show_log_origin", l->show_log_origin);
    return body_send(c, &body, "PUT", "/logger");
}

int api_put_metrics(struct api_client *c, const char *metrics_path)
{
    struct body body;

    CHECK_CLIENT(c, metrics_path, "PUT /metrics");
    body_open(&body);
    put_str(&body, "metrics_path", metrics_path);
    return body_send(c, &body, "PUT", "/metrics");
}

int api_put_vsock(struct api_client *c, const struct api_vsock *v)
{
    struct body body;
    int r;

    CHECK_CLIENT(c, v, "PUT /vsock");
    r = need(c, "PUT /vsock", "uds_path", v->uds_path);
    if (r < 0)
        return r;
    /* CIDs 0-2 are reserved for the hypervisor, loopback and the host. */
    if (v->guest_cid < 3)
        return error_set(VMM_EINVAL, "PUT /vsock on %s: guest_cid %u is "
                         "reserved (use 3 or more)", c->socket_path,
                         v->guest_cid);
    body_open(&body);
    put_uint(&body, "guest_cid", v->guest_cid);
    put_str(&body, "uds_path", v->uds_path);
    return body_send(c, &body, "PUT", "/vsock");
}

int api_put_entropy(struct api_client *c)
{
    struct body body;

    if (c == NULL)
        return error_set(VMM_EINVAL, "PUT /entropy: NULL client");
    body_open(&body);
    return body_send(c, &body, "PUT", "/entropy");
}

int api_action(struct api_client *c, enum api_action action)
{
    struct body body;
    const char *type;

    if (c == NULL)
        return error_set(VMM_EINVAL, "PUT /actions: NULL client");
    switch (action) {
    case API_ACTION_INSTANCE_START: type = "InstanceStart"; break;
    case API_ACTION_SEND_CTRL_ALT_DEL: type = "SendCtrlAltDel"; break;
    case API_ACTION_FLUSH_METRICS: type = "FlushMetrics"; break;
    default:
        return error_set(VMM_EINVAL, "PUT /actions on %s: unknown action %d",
                         c->socket_path, (int)action);
    }
    body_open(&body);
    put_str(&body, "action_type", type);
    return body_send(c, &body, "PUT", "/actions");
}

int api_patch_vm_state(struct api_client *c, bool paused)
{
    struct body body;

    if (c == NULL)
        return error_set(VMM_EINVAL, "PATCH /vm: NULL client");
    body_open(&body);
    put_str(&body, "state", paused ? "Paused" : "Resumed");
    return body_send(c, &body, "PATCH", "/vm");
}
