/*
 * libvmm: microVMs, from create to delete.
 *
 * A VM is a persistent record in the context's state directory. A vmm_vm
 * is a handle to that record: releasing it never touches the VM, and
 * stopping the VM never releases it. Two programs never act on one VM at
 * once: every operation takes the VM's lock. A handle is used by one
 * thread at a time; distinct handles may be used from distinct threads.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_VM_H
#define LIBVMM_VM_H

#include <libvmm/common.h>
#include <libvmm/context.h>

VMM_BEGIN_DECLS

/** An opaque handle to one VM record. */
typedef struct vmm_vm vmm_vm;

/** How the VM's root disk is made over its base image. */
typedef enum vmm_overlay_driver {
    VMM_OVERLAY_AUTO = 0,        /**< dm-snapshot if usable, else copy */
    VMM_OVERLAY_DM_SNAPSHOT = 1, /**< device-mapper snapshot, sparse COW */
    VMM_OVERLAY_COPY = 2,        /**< reflink or hole-keeping copy */
    VMM_OVERLAY_DRIVER_MAX_ = INT32_MAX
} vmm_overlay_driver;

/** What a VM is doing, as far as the host can tell. */
typedef enum vmm_state {
    VMM_VM_STOPPED = 0, /**< no VMM process */
    VMM_VM_RUNNING = 1, /**< the VMM runs the guest */
    VMM_VM_PAUSED = 2,  /**< the VMM runs, the guest's vCPUs are paused */
    VMM_VM_STATE_MAX_ = INT32_MAX
} vmm_state;

/** vmm_vm_spec flags. */
#define VMM_VM_NO_NET UINT32_C(0x1)    /**< no tap, no network config */
#define VMM_VM_OWN_NETNS UINT32_C(0x2) /**< a new network namespace,
                                            removed with the VM */

/** A file libvmm writes into the guest's disk at every start. */
typedef struct vmm_guest_file {
    const char *path; /**< absolute path in the guest */
    const void *data; /**< content; copied at create */
    uint64_t size;    /**< bytes of data */
    uint32_t mode;    /**< permission bits, e.g. 0644 */
    uint32_t uid;
    uint32_t gid;
    uint32_t reserved; /**< must be 0 */
} vmm_guest_file;

/**
 * What vmm_create() builds.
 *
 * Start from VMM_VM_SPEC_INIT; a zero or NULL field means its default.
 * Strings and arrays are copied; the caller keeps ownership of its spec.
 */
typedef struct vmm_vm_spec {
    /** sizeof(vmm_vm_spec) as the program was compiled. */
    uint32_t size;
    /** VMM_VM_NO_NET, VMM_VM_OWN_NETNS. */
    uint32_t flags;
    /** Guest kernel image; required. */
    const char *kernel;
    /** Initial ramdisk, or NULL. */
    const char *initrd;
    /** Base image of the root disk (ext4, file or block device);
     *  required. Never written to. */
    const char *base_image;
    /** Kernel command line; NULL: "console=ttyS0 reboot=k panic=1".
     *  libvmm appends root= and ip= itself. */
    const char *boot_args;
    /** vCPUs: 1, or an even number up to 32; 0: 1. */
    uint32_t vcpus;
    /** Guest memory in MiB, at least 128; 0: 512. */
    uint32_t memory_mib;
    /** Root disk size in bytes, at least the base's; 0: the base's. */
    uint64_t disk_size;
    /** A vmm_overlay_driver. */
    int32_t overlay;
    /** Reserved; must be 0. */
    uint32_t reserved;
    /** authorized_keys lines for root in the guest, or NULL. */
    const char *ssh_authorized_keys;
    /** An existing network namespace (a name under /run/netns) to place
     *  the tap and the VMM in, or NULL. Excludes VMM_VM_OWN_NETNS. */
    const char *netns;
    /** Extra files written into the guest at every start. */
    const vmm_guest_file *files;
    /** Number of entries in files. */
    uint32_t n_files;
    /** Reserved; must be 0. Holds the place a later field will take. */
    uint32_t reserved2;
} vmm_vm_spec;

/** Initializer for vmm_vm_spec: every field at its default. */
#define VMM_VM_SPEC_INIT \
    { sizeof(vmm_vm_spec), 0, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, \
      NULL, NULL, NULL, 0, 0 }

/**
 * Create a VM: record it, build its root disk over the base image, make
 * its ssh host key, allocate its guest address, MAC and tap name, and make
 * its network namespace if it is to have its own. The VM is left stopped;
 * the tap device itself is made at each start and removed at each stop.
 *
 * @param out   receives a handle owned by the caller, released with
 *              vmm_vm_free(); written only on success
 * @param ctx   the context
 * @param name  1 to 63 bytes of ASCII letters, digits, '-', '_' and '.',
 *              not starting with '-' or '.'
 * @param spec  what to build
 * @return 0; VMM_EINVAL (bad name or spec, naming the field); VMM_EEXIST
 *         (a VM of that name exists); VMM_ENOTFOUND (kernel, initrd, base
 *         image or netns missing); VMM_EDISK (base image unusable);
 *         VMM_ENET; VMM_EIO; VMM_ENOMEM. On failure nothing is left
 *         behind: no record, disk, tap or namespace.
 */
VMM_EXPORT int vmm_create(vmm_vm **out, vmm_context *ctx, const char *name,
                          const vmm_vm_spec *spec);

/**
 * Open the VM called name.
 *
 * A VMM that is still running is attached to (its pid, start time and API
 * socket verified); one that died is reported as stopped.
 *
 * @param out  receives a handle owned by the caller (vmm_vm_free());
 *             written only on success
 * @return 0, VMM_EINVAL, VMM_ENOTFOUND, VMM_ECORRUPT (the record is
 *         unreadable; the message names its path), VMM_EIO, VMM_ENOMEM.
 */
VMM_EXPORT int vmm_open(vmm_vm **out, vmm_context *ctx, const char *name);

/** Options for vmm_start(); start from VMM_START_OPTIONS_INIT. */
typedef struct vmm_start_options {
    uint32_t size;        /**< sizeof(vmm_start_options) */
    uint32_t flags;       /**< must be 0 */
    uint32_t timeout_ms;  /**< bound on waiting for the VMM; 0: 10000 */
    uint32_t reserved;    /**< must be 0 */
} vmm_start_options;

/** Initializer for vmm_start_options. */
#define VMM_START_OPTIONS_INIT { sizeof(vmm_start_options), 0, 0, 0 }

/**
 * Start a stopped VM: overlay ready, e2fsck and patch the disk, tap up,
 * VMM spawned and configured, InstanceStart.
 *
 * The timeout bounds how long this call waits; it never limits how long
 * the VM lives. The VMM outlives the calling program.
 *
 * @param opts  NULL for defaults
 * @return 0; VMM_ESTATE (already running); VMM_EDISK (e2fsck failed or
 *         the disk is invalid); VMM_EAPI (Firecracker refused the
 *         configuration, with its fault_message); VMM_EPROCESS (the VMM
 *         exited; the message has its status and log tail);
 *         VMM_ETIMEDOUT; VMM_EBUSY (another program holds the VM);
 *         VMM_ENOTFOUND (kernel or base image gone); VMM_ENET; VMM_EIO.
 *         On failure no VMM process or socket is left.
 */
VMM_EXPORT int vmm_start(vmm_vm *vm, const vmm_start_options *opts);

/**
 * Stop a VM gracefully: Ctrl-Alt-Del, wait up to timeout_ms, then SIGKILL.
 *
 * @param timeout_ms  0: 10000
 * @return 0 (also when already stopped), VMM_EBUSY, VMM_EIO.
 */
VMM_EXPORT int vmm_stop(vmm_vm *vm, uint32_t timeout_ms);

/**
 * Kill a VM's VMM with SIGKILL and wait until it is gone.
 *
 * @return 0 (also when already stopped), VMM_EBUSY, VMM_EIO.
 */
VMM_EXPORT int vmm_kill(vmm_vm *vm);

/**
 * Pause a running VM's vCPUs.
 *
 * @return 0, VMM_ESTATE (not running), VMM_EAPI, VMM_ETIMEDOUT,
 *         VMM_EBUSY.
 */
VMM_EXPORT int vmm_pause(vmm_vm *vm);

/**
 * Resume a paused VM.
 *
 * @return 0, VMM_ESTATE (not running), VMM_EAPI, VMM_ETIMEDOUT,
 *         VMM_EBUSY.
 */
VMM_EXPORT int vmm_resume(vmm_vm *vm);

/** vmm_delete() flags. */
#define VMM_DELETE_FORCE UINT32_C(0x1) /**< kill a running VM first */

/**
 * Delete a VM: its record, disk, tap, namespace (if it owns one) and keys.
 * The handle stays valid for vmm_vm_free() only.
 *
 * @param flags  0 or VMM_DELETE_FORCE
 * @return 0, VMM_ESTATE (running and no VMM_DELETE_FORCE), VMM_EINVAL,
 *         VMM_EBUSY, VMM_EIO.
 */
VMM_EXPORT int vmm_delete(vmm_vm *vm, uint32_t flags);

/**
 * Delete the VM called name, even one whose record cannot be read.
 *
 * For a readable record this is vmm_open() then vmm_delete(). An
 * unreadable record (VMM_ECORRUPT from vmm_open()) is removed only with
 * VMM_DELETE_FORCE, from what the name alone tells: the VMM serving the
 * VM's API socket is killed, its disk and device-mapper leftovers and the
 * namespace libvmm made for it are removed. A tap it had in another
 * namespace cannot be identified then; the library logs so.
 *
 * @param flags  0 or VMM_DELETE_FORCE
 * @return 0, VMM_EINVAL, VMM_ENOTFOUND, VMM_ECORRUPT (unreadable and no
 *         force), VMM_ESTATE, VMM_EBUSY, VMM_EIO.
 */
VMM_EXPORT int vmm_delete_by_name(vmm_context *ctx, const char *name,
                                  uint32_t flags);

/**
 * Change the vCPU count of a stopped VM; used from its next start.
 *
 * @return 0, VMM_EINVAL (not 1 or even up to 32), VMM_ESTATE (running),
 *         VMM_EBUSY, VMM_EIO.
 */
VMM_EXPORT int vmm_set_vcpus(vmm_vm *vm, uint32_t vcpus);

/**
 * Change the memory of a stopped VM; used from its next start.
 *
 * @return 0, VMM_EINVAL (below 128 MiB), VMM_ESTATE, VMM_EBUSY, VMM_EIO.
 */
VMM_EXPORT int vmm_set_memory(vmm_vm *vm, uint32_t memory_mib);

/**
 * Re-read the VM's record and the liveness of its VMM.
 *
 * Getters report what the last open, refresh or operation saw.
 *
 * @return 0, VMM_ENOTFOUND (deleted meanwhile), VMM_ECORRUPT, VMM_EIO.
 */
VMM_EXPORT int vmm_vm_refresh(vmm_vm *vm);

/**
 * Release a handle. The VM itself is not touched.
 *
 * @param vm  a handle, or NULL
 */
VMM_EXPORT void vmm_vm_free(vmm_vm *vm);

/*
 * Getters. Strings are borrowed: valid until the handle is freed or the
 * next call that takes it (refresh, start, stop, set, delete). A getter
 * given NULL returns NULL or 0.
 */

/** The VM's name. */
VMM_EXPORT const char *vmm_vm_name(const vmm_vm *vm);
/** A vmm_state. */
VMM_EXPORT int32_t vmm_vm_state(const vmm_vm *vm);
/** The VMM's pid, or 0 when stopped. */
VMM_EXPORT int32_t vmm_vm_pid(const vmm_vm *vm);
/** Configured vCPUs. */
VMM_EXPORT uint32_t vmm_vm_vcpus(const vmm_vm *vm);
/** Configured memory in MiB. */
VMM_EXPORT uint32_t vmm_vm_memory_mib(const vmm_vm *vm);
/** Root disk size in bytes. */
VMM_EXPORT uint64_t vmm_vm_disk_size(const vmm_vm *vm);
/** The kernel image path. */
VMM_EXPORT const char *vmm_vm_kernel(const vmm_vm *vm);
/** The initrd path, or NULL. */
VMM_EXPORT const char *vmm_vm_initrd(const vmm_vm *vm);
/** The base image path. */
VMM_EXPORT const char *vmm_vm_base_image(const vmm_vm *vm);
/** The boot arguments as given (without root= and ip=). */
VMM_EXPORT const char *vmm_vm_boot_args(const vmm_vm *vm);
/** The guest's IPv4 address, or NULL without network. */
VMM_EXPORT const char *vmm_vm_guest_ip(const vmm_vm *vm);
/** The host side's IPv4 address on the tap, or NULL. */
VMM_EXPORT const char *vmm_vm_host_ip(const vmm_vm *vm);
/** The guest's MAC address, or NULL. */
VMM_EXPORT const char *vmm_vm_mac(const vmm_vm *vm);
/** The tap device's name, or NULL. */
VMM_EXPORT const char *vmm_vm_tap(const vmm_vm *vm);
/** The network namespace's name, or NULL when in the host's. */
VMM_EXPORT const char *vmm_vm_netns(const vmm_vm *vm);
/** The API socket's path. */
VMM_EXPORT const char *vmm_vm_api_socket(const vmm_vm *vm);
/** The overlay driver in use: "dm-snapshot" or "copy". */
VMM_EXPORT const char *vmm_vm_overlay_driver(const vmm_vm *vm);
/** The VM's root disk as the VMM opens it (a file or device path). */
VMM_EXPORT const char *vmm_vm_disk(const vmm_vm *vm);
/** The VMM's log file (firecracker's output and the guest console). */
VMM_EXPORT const char *vmm_vm_log_path(const vmm_vm *vm);
/** The known-hosts file holding the guest's ssh host key. */
VMM_EXPORT const char *vmm_vm_known_hosts(const vmm_vm *vm);
/** How the VMM last ended, e.g. "killed by signal 9 (SIGKILL)", or NULL. */
VMM_EXPORT const char *vmm_vm_last_exit(const vmm_vm *vm);

/** An opaque list of VMs, from vmm_list(). */
typedef struct vmm_vm_list vmm_vm_list;

/**
 * List every VM of the context.
 *
 * An unreadable record does not hide the others: it appears as an entry
 * with no handle and an error naming its path.
 *
 * @param out  receives a list owned by the caller (vmm_vm_list_free());
 *             written only on success
 * @return 0, VMM_EINVAL, VMM_EIO, VMM_ENOMEM.
 */
VMM_EXPORT int vmm_list(vmm_vm_list **out, vmm_context *ctx);
/** Number of entries. */
VMM_EXPORT uint32_t vmm_vm_list_count(const vmm_vm_list *list);
/** Entry i's VM name (borrowed, valid until vmm_vm_list_free()), or NULL
 *  when i is out of range. */
VMM_EXPORT const char *vmm_vm_list_name(const vmm_vm_list *list,
                                        uint32_t i);
/** Entry i's handle (borrowed, valid until vmm_vm_list_free()), or NULL when
 *  its record is unreadable. */
VMM_EXPORT vmm_vm *vmm_vm_list_vm(const vmm_vm_list *list, uint32_t i);
/** Why entry i is unreadable (borrowed), or NULL. */
VMM_EXPORT const char *vmm_vm_list_error(const vmm_vm_list *list,
                                         uint32_t i);
/** Release a list and its handles. NULL is allowed. */
VMM_EXPORT void vmm_vm_list_free(vmm_vm_list *list);

VMM_END_DECLS

#endif /* LIBVMM_VM_H */
