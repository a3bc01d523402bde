/*
 * The library context: settings every VM of a program shares, and the log
 * callback through which the library speaks.
 *
 * SPDX-License-Identifier: MIT
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_STATE_DIR "/var/lib/libvmm"
#define DEFAULT_FIRECRACKER "firecracker"
#define DEFAULT_NET_POOL "172.16.0.0/16"
#define DEFAULT_API_TIMEOUT_MS 5000

/*
 * Leaves room below PATH_MAX for what the library puts under the state
 * directory (per-VM folders, sockets' names are checked on their own).
 */
#define STATE_DIR_MAX 3072

int options_copy(void *dst, size_t dst_size, const void *src, const char *what)
{
    const unsigned char *tail;
    uint32_t size;

    memset(dst, 0, dst_size);
    memcpy(&size, src, sizeof(size));
    if (size < sizeof(uint32_t))
        return error_set(VMM_EINVAL, "%s: size %u is too small (set it to "
                         "sizeof the struct, or use its _INIT macro)",
                         what, size);

    if (size > dst_size) {
        tail = (const unsigned char *)src + dst_size;
        for (size_t i = 0; i < size - dst_size; i++)
            if (tail[i] != 0)
                return error_set(VMM_EINVAL, "%s: a field beyond the %zu "
                                 "bytes this library knows is set; it "
                                 "needs a newer libvmm", what, dst_size);
        size = (uint32_t)dst_size;
    }
    memcpy(dst, src, size);
    return 0;
}

/* Parses "A.B.C.D/N" into a network address and prefix length. */
static int parse_pool(const char *text, uint32_t *addr, uint32_t *prefix)
{
    char buf[INET_ADDRSTRLEN + 4];
    struct in_addr in;
    char *slash, *end;
    unsigned long n;

    if (strlen(text) >= sizeof(buf))
        goto bad;
    strcpy(buf, text);
    slash = strchr(buf, '/');
    if (slash == NULL)
        goto bad;
    *slash = '\0';
    if (inet_pton(AF_INET, buf, &in) != 1)
        goto bad;

    n = strtoul(slash + 1, &end, 10);
    if (slash[1] == '\0' || *end != '\0' || n < 8 || n > 28)
        goto bad;

    *prefix = (uint32_t)n;
    *addr = ntohl(in.s_addr) & (0xffffffffu << (32 - n));
    if (*addr != ntohl(in.s_addr))
        return error_set(VMM_EINVAL, "net_pool \"%s\": host bits are set "
                         "below the /%lu prefix", text, n);
    return 0;

bad:
    return error_set(VMM_EINVAL, "net_pool \"%s\" is not an IPv4 network "
                     "of the form A.B.C.D/N with N from 8 to 28", text);
}

static int check_options(const vmm_context_options *o)
{
    if (o->flags != 0)
        return error_set(VMM_EINVAL, "context options: flags must be 0, "
                         "not %#x", o->flags);
    if (o->state_dir != NULL) {
        size_t len = strnlen(o->state_dir, STATE_DIR_MAX + 1);

        if (len == 0 || o->state_dir[0] != '/')
            return error_set(VMM_EINVAL, "state_dir \"%s\" is not an "
                             "absolute path", o->state_dir);
        if (len > STATE_DIR_MAX)
            return error_set(VMM_EINVAL, "state_dir is longer than %d "
                             "bytes", STATE_DIR_MAX);
    }
    if (o->firecracker != NULL &&
        (o->firecracker[0] == '\0' ||
         strnlen(o->firecracker, PATH_MAX) >= PATH_MAX))
        return error_set(VMM_EINVAL, "firecracker path is empty or longer "
                         "than PATH_MAX");
    if (o->log_level != 0 &&
        (o->log_level < VMM_LOG_ERROR || o->log_level > VMM_LOG_DEBUG))
        return error_set(VMM_EINVAL, "log_level %d is not a vmm_log_level",
                         o->log_level);
    return 0;
}

VMM_EXPORT int vmm_context_new(vmm_context **out,
                               const vmm_context_options *opts)
{
    vmm_context_options o = VMM_CONTEXT_OPTIONS_INIT;
    vmm_context *ctx;
    int r;

    error_reset();
    if (out == NULL)
        return error_set(VMM_EINVAL, "vmm_context_new: out is NULL");
    if (opts != NULL) {
        r = options_copy(&o, sizeof(o), opts, "vmm_context_options");
        if (r < 0)
            return r;
    }
    r = check_options(&o);
    if (r < 0)
        return r;

    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return error_set(VMM_ENOMEM, "allocating a context");
    ctx->refs = 1;

    r = parse_pool(o.net_pool ? o.net_pool : DEFAULT_NET_POOL,
                   &ctx->net_pool_addr, &ctx->net_pool_prefix);
    if (r < 0)
        goto fail;

    ctx->state_dir = xstrdup(o.state_dir ? o.state_dir : DEFAULT_STATE_DIR);
    ctx->firecracker = xstrdup(o.firecracker ? o.firecracker
                                             : DEFAULT_FIRECRACKER);
    if (ctx->state_dir == NULL || ctx->firecracker == NULL) {
        r = VMM_ENOMEM;
        goto fail;
    }
    /* A trailing slash would make every derived path differ by one byte. */
    for (size_t n = strlen(ctx->state_dir); n > 1 &&
         ctx->state_dir[n - 1] == '/'; n--)
        ctx->state_dir[n - 1] = '\0';

    ctx->log_fn = o.log_fn;
    ctx->log_user = o.log_user;
    ctx->log_level = o.log_level ? o.log_level : VMM_LOG_INFO;
    ctx->api_timeout_ms = o.api_timeout_ms ? o.api_timeout_ms
                                           : DEFAULT_API_TIMEOUT_MS;
    ctx->progress_fn = o.progress_fn;
    ctx->progress_user = o.progress_user;
    *out = ctx;
    return 0;

fail:
    context_unref(ctx);
    return r;
}

vmm_context *context_ref(vmm_context *ctx)
{
    __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED);
    return ctx;
}

void context_unref(vmm_context *ctx)
{
    if (ctx == NULL || __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free(ctx->state_dir);
    free(ctx->firecracker);
    free(ctx);
}

VMM_EXPORT void vmm_context_free(vmm_context *ctx)
{
    context_unref(ctx);
}

/* Getters leave the error record alone, so a binding may call them while
 * it reads an error. */
VMM_EXPORT const char *vmm_context_state_dir(const vmm_context *ctx)
{
    return ctx ? ctx->state_dir : NULL;
}

VMM_EXPORT const char *vmm_context_firecracker(const vmm_context *ctx)
{
    return ctx ? ctx->firecracker : NULL;
}

void log_emit(const vmm_context *ctx, int level, const char *component,
              const char *vm_name, const char *fmt, ...)
{
    char message[2048];
    va_list ap;

    if (ctx == NULL || ctx->log_fn == NULL || level > ctx->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    ctx->log_fn(level, component, vm_name, message, ctx->log_user);
}

void progress_emit(const vmm_context *ctx, const char *vm_name,
                   const char *stage, uint64_t done, uint64_t total)
{
    if (ctx == NULL || ctx->progress_fn == NULL)
        return;
    ctx->progress_fn(vm_name, stage, done, total, ctx->progress_user);
}
