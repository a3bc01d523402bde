/*
 * libvmm: error codes and the per-thread last-error record.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_ERROR_H
#define LIBVMM_ERROR_H

#include <libvmm/common.h>

VMM_BEGIN_DECLS

/**
 * Results of libvmm calls.
 *
 * Every call that can fail returns 0 on success or one of these negative
 * codes. New codes may be added at the end; a program should treat an
 * unknown negative value as a failure and show vmm_error_last()->message.
 */
typedef enum vmm_error_code {
    VMM_OK = 0,
    VMM_EINVAL = -1,        /**< an argument is invalid */
    VMM_ENOMEM = -2,        /**< out of memory */
    VMM_ENOTFOUND = -3,     /**< a VM, file or device does not exist */
    VMM_EEXIST = -4,        /**< a VM or file of that name exists */
    VMM_EBUSY = -5,         /**< in use or locked by another program */
    VMM_ESTATE = -6,        /**< not allowed in the VM's current state */
    VMM_EIO = -7,           /**< a system call failed; see os_error */
    VMM_EAPI = -8,          /**< the Firecracker API refused a request */
    VMM_ETIMEDOUT = -9,     /**< a bounded wait expired */
    VMM_EPROCESS = -10,     /**< the VMM process failed or exited */
    VMM_EDISK = -11,        /**< a disk or filesystem is unusable */
    VMM_ENET = -12,         /**< a network device could not be set up */
    VMM_EUNSUPPORTED = -13, /**< not available on this host */
    VMM_ECORRUPT = -14,     /**< a state record is unreadable */
    VMM_ERROR_CODE_MAX_ = INT32_MIN /* keeps the enum 32 bits wide */
} vmm_error_code;

/**
 * What went wrong in the last failed libvmm call of the calling thread.
 *
 * Fields may be appended in later versions; the library allocates the
 * record, so programs only ever read it through a pointer.
 */
typedef struct vmm_error {
    /** One of vmm_error_code; 0 when the last call succeeded. */
    int32_t code;
    /** errno of the failed system call, or 0. */
    int32_t os_error;
    /** HTTP status of a refused Firecracker API request, or 0. */
    int32_t http_status;
    /** Reserved; 0. */
    int32_t reserved;
    /** What failed, naming the VM, file or device; "" after success. */
    const char *message;
    /** Firecracker's fault_message, verbatim, or NULL when none. */
    const char *fault_message;
} vmm_error;

/**
 * The calling thread's last-error record.
 *
 * Every public call that can fail resets it on entry, so it describes the
 * most recent such call made by this thread. Getters, release functions
 * (vmm_*_free), vmm_version() and vmm_strerror() never change it, so a
 * program or binding may call them while it reads an error.
 *
 * @return a borrowed pointer, valid until the next libvmm call on this
 *         thread; never NULL.
 */
VMM_EXPORT const vmm_error *vmm_error_last(void);

/**
 * A short, static description of an error code.
 *
 * @param code  a vmm_error_code value; any other value gives
 *              "unknown error"
 * @return a static string; never NULL. Thread-safe.
 */
VMM_EXPORT const char *vmm_strerror(int32_t code);

VMM_END_DECLS

#endif /* LIBVMM_ERROR_H */
