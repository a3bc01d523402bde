/*
 * libvmm: the library context, its settings and its log callback.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_CONTEXT_H
#define LIBVMM_CONTEXT_H

#include <libvmm/common.h>

VMM_BEGIN_DECLS

/** Severity of a log message; lower is more severe. */
typedef enum vmm_log_level {
    VMM_LOG_ERROR = 1,
    VMM_LOG_WARNING = 2,
    VMM_LOG_INFO = 3,
    VMM_LOG_DEBUG = 4,
    VMM_LOG_LEVEL_MAX_ = INT32_MAX /* keeps the enum 32 bits wide */
} vmm_log_level;

/**
 * Receives the library's log messages.
 *
 * @param level      a vmm_log_level
 * @param component  the module speaking, e.g. "overlay"; never NULL
 * @param vm_name    the VM concerned, or NULL
 * @param message    the formatted message, without a trailing newline
 * @param user       the log_user pointer given in the options
 *
 * All strings are borrowed for the duration of the call; text is UTF-8
 * (in practice ASCII, plus file names as given). The callback is called on
 * the thread that made the libvmm call, and must not call back into
 * libvmm. It, and its user pointer, must stay valid while the context is
 * in use (see vmm_context_free()).
 */
typedef void (*vmm_log_fn)(int32_t level, const char *component,
                           const char *vm_name, const char *message,
                           void *user);

/**
 * Receives progress of long operations (copying a disk, waiting for a VMM).
 *
 * @param vm_name  the VM concerned; never NULL
 * @param stage    what is progressing, e.g. "copy" or "wait"; never NULL
 * @param done     units done so far
 * @param total    units in all, or 0 when unknown
 * @param user     the progress_user pointer given in the options
 *
 * Called on the thread that made the libvmm call; the rules of
 * vmm_log_fn apply.
 */
typedef void (*vmm_progress_fn)(const char *vm_name, const char *stage,
                                uint64_t done, uint64_t total, void *user);

/** An opaque library context: settings shared by the VMs it manages. */
typedef struct vmm_context vmm_context;

/**
 * Settings for vmm_context_new().
 *
 * Start from VMM_CONTEXT_OPTIONS_INIT so that `size` is set and every
 * other field means "default": a zero or NULL field always does, so a
 * program built against older headers gets defaults for newer fields.
 * Fields are only ever appended; the library reads the first `size` bytes
 * and refuses options whose unknown tail is not zero.
 */
typedef struct vmm_context_options {
    /** sizeof(vmm_context_options) as the program was compiled. */
    uint32_t size;
    /** Must be 0. */
    uint32_t flags;
    /** Where VM records live; NULL: "/var/lib/libvmm". Copied. */
    const char *state_dir;
    /** The firecracker binary: a path, or a name looked up in PATH;
     *  NULL: "firecracker". Copied. */
    const char *firecracker;
    /** Log callback, or NULL for silence. */
    vmm_log_fn log_fn;
    /** Passed to log_fn. */
    void *log_user;
    /** Most verbose level passed to log_fn; 0: VMM_LOG_INFO. */
    int32_t log_level;
    /** Bound on each Firecracker API request in ms; 0: 5000. */
    uint32_t api_timeout_ms;
    /** Progress callback, or NULL. */
    vmm_progress_fn progress_fn;
    /** Passed to progress_fn. */
    void *progress_user;
    /** IPv4 pool for guest addresses as "A.B.C.D/N" (N <= 28); each VM
     *  takes a /30. NULL: "172.16.0.0/16". Copied. */
    const char *net_pool;
} vmm_context_options;

/** Initializer for vmm_context_options: every setting at its default. */
#define VMM_CONTEXT_OPTIONS_INIT \
    { sizeof(vmm_context_options), 0, NULL, NULL, NULL, NULL, \
      0, 0, NULL, NULL, NULL }

/**
 * Create a library context.
 *
 * Nothing is written to disk until a VM is created; the state directory
 * need not exist yet.
 *
 * @param out   receives the new context, owned by the caller and released
 *              with vmm_context_free(); written only on success
 * @param opts  settings, or NULL for all defaults
 * @return 0, VMM_EINVAL (NULL out, bad size, non-zero flags or unknown
 *         tail, a relative or over-long state_dir, an invalid net_pool or
 *         log_level), or VMM_ENOMEM.
 *
 * A context may be used from several threads at once.
 */
VMM_EXPORT int vmm_context_new(vmm_context **out,
                               const vmm_context_options *opts);

/**
 * Release the caller's reference to a context. Running VMs are not
 * touched.
 *
 * VM handles and lists obtained through the context hold references of
 * their own, so the context's memory, with its callbacks and their user
 * pointers, stays in use until the last of them is released too.
 *
 * @param ctx  the context, or NULL (then nothing happens)
 */
VMM_EXPORT void vmm_context_free(vmm_context *ctx);

/**
 * The context's state directory.
 *
 * @return a borrowed string, valid while the context is in use; NULL only
 *         when ctx is NULL. Leaves the error record alone.
 */
VMM_EXPORT const char *vmm_context_state_dir(const vmm_context *ctx);

/**
 * The firecracker binary the context runs, as configured.
 *
 * @return a borrowed string, valid while the context is in use; NULL only
 *         when ctx is NULL. Leaves the error record alone.
 */
VMM_EXPORT const char *vmm_context_firecracker(const vmm_context *ctx);

VMM_END_DECLS

#endif /* LIBVMM_CONTEXT_H */
