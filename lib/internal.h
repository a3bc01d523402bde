/*
 * Declarations shared by the modules of libvmm; never installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_INTERNAL_H
#define LIBVMM_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>

#include "libvmm/libvmm.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))

/* --- error.c: the thread's last-error record ----------------------------- */

/* Clears the record; every public entry point calls it first. */
void error_reset(void);

/* Record a failure and return `code`, so callers can `return error_set(...)`. */
int error_set(int code, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* As error_set(), appending ": <strerror(errnum)>" and keeping errnum. */
int error_set_os(int code, int errnum, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* A Firecracker API refusal: HTTP status and fault_message (may be NULL). */
int error_set_api(int http_status, const char *fault, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

/* Prepend context ("starting vm1: ") to the message already recorded. */
void error_prefix(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Code of the record, for callers deciding whether to go on. */
int error_code(void);

/* A copy of the record, to keep a first failure across cleanup work. */
struct error_snapshot {
    vmm_error pub;
    bool has_fault;
    char message[1024];
    char fault[1024];
};
void error_save(struct error_snapshot *s);
void error_restore(const struct error_snapshot *s);

/* --- context.c: settings and logging ------------------------------------- */

struct vmm_context {
    int refs; /* the caller's, and one per VM handle made through it */
    char *state_dir;
    char *firecracker;
    vmm_log_fn log_fn;
    void *log_user;
    int32_t log_level;
    uint32_t api_timeout_ms;
    vmm_progress_fn progress_fn;
    void *progress_user;
    uint32_t net_pool_addr; /* host byte order */
    uint32_t net_pool_prefix;
};

/* Handles keep their context alive: vmm_context_free only drops a ref. */
vmm_context *context_ref(vmm_context *ctx);
void context_unref(vmm_context *ctx);

/* Deliver a message to the context's log callback, if any. ctx may be NULL. */
void log_emit(const vmm_context *ctx, int level, const char *component,
              const char *vm_name, const char *fmt, ...) PRINTF_LIKE(5, 6);

#define log_error(ctx, comp, vm, ...) log_emit(ctx, VMM_LOG_ERROR, comp, vm, __VA_ARGS__)
#define log_warning(ctx, comp, vm, ...) log_emit(ctx, VMM_LOG_WARNING, comp, vm, __VA_ARGS__)
#define log_info(ctx, comp, vm, ...) log_emit(ctx, VMM_LOG_INFO, comp, vm, __VA_ARGS__)
#define log_debug(ctx, comp, vm, ...) log_emit(ctx, VMM_LOG_DEBUG, comp, vm, __VA_ARGS__)

/* Report progress of a long operation; ctx may be NULL. */
void progress_emit(const vmm_context *ctx, const char *vm_name,
                   const char *stage, uint64_t done, uint64_t total);

/* --- options structs ----------------------------------------------------- */

/*
 * Copy a caller's size-prefixed options struct into `dst` (of `dst_size`
 * bytes, zero-filled first). Refuses a size too small to hold the size
 * field itself, and a larger struct whose unknown tail is not zero: such a
 * caller asks for something this library cannot do. `what` names the
 * struct in the error.
 */
int options_copy(void *dst, size_t dst_size, const void *src, const char *what);

/* --- small helpers (util.c) ---------------------------------------------- */

/* strdup that records VMM_ENOMEM on failure. */
char *xstrdup(const char *s);

/* asprintf returning the string, recording VMM_ENOMEM on failure. */
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* An inotify instance (non-blocking, close-on-exec), a spare one when
 * there is; -1 with errno on failure. Give it back with its watch (or -1):
 * the watch is removed, pending events dropped, the instance kept. */
int inotify_take(void);
void inotify_give_back(int fd, int wd);

#endif /* LIBVMM_INTERNAL_H */
