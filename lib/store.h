/*
 * On-disk state: VM records, their locks, and the host-wide lock.
 *
 * Layout under the context's state directory:
 *   lock               host-wide lock: held while naming a VM and
 *                      handing out its network slot
 *   vms/NAME/          one directory per VM
 *   vms/NAME/vm.json   the record, replaced atomically
 *   vms/NAME/lock      the VM's lock; its content is the holder's pid
 *
 * Records are written to a temporary file, fsynced, renamed over the old
 * one, and the directory fsynced, so a reader sees the old or the new
 * record and never a mix. Locks are flock()s, released by the kernel when
 * their holder dies.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_STORE_H
#define LIBVMM_STORE_H

#include <sys/types.h>

#include "internal.h"
#include "net.h"
#include "overlay.h"

/* Where in its life a record is; a crash leaves the phase it was in. */
enum record_phase {
    PHASE_CREATING, /* create has not finished */
    PHASE_READY,    /* created; stopped or running */
    PHASE_DELETING, /* delete has begun */
};

struct record_file {
    char *path;      /* in the guest */
    char *blob;      /* file name under the VM directory */
    uint32_t mode, uid, gid;
};

struct vm_record {
    enum record_phase phase;
    char *name;
    char *kernel;
    char *initrd;     /* NULL: none */
    char *base_image;
    char *boot_args;
    uint32_t vcpus;
    uint32_t memory_mib;
    uint64_t disk_size;
    enum overlay_driver overlay;
    char *ssh_authorized_keys; /* NULL: none */
    bool has_net;
    struct net_lease lease;
    char *netns;      /* NULL: the host's namespace */
    bool own_netns;   /* created with the VM, removed with it */
    struct record_file *files;
    size_t n_files;
    bool pristine;    /* the disk is a copy or snapshot of a base image
                         known clean, and no start has touched it yet */
    bool unflushed;   /* the copy may still be in the page cache of the
                         host boot named by boot_id */
    char boot_id[40];
    bool has_vmm;     /* a VMM was started and not seen to end */
    int32_t pid;
    uint64_t start_time;
};

void record_clear(struct vm_record *rec);

/* Reads a record; VMM_ENOTFOUND when missing, VMM_ECORRUPT naming the
 * path and what is wrong when unreadable. */
int record_read(const char *path, struct vm_record *rec);

/* Writes a record atomically as `path`. */
int record_write(const char *path, const struct vm_record *rec);

/*
 * Takes an exclusive flock on `path` (created 0600 if missing), waiting up
 * to wait_ms (0: not at all), and writes our pid into it. VMM_EBUSY names
 * the holder's pid when the wait expires. *fd_out is -1 on failure.
 */
int store_lock(const char *path, uint32_t wait_ms, const char *what,
               int *fd_out);
void store_unlock(int fd);

/* Writes a file atomically (temp, fsync, rename, fsync dir). */
int store_write_file(const char *path, const void *data, size_t size,
                     mode_t mode);

/* Reads a whole file (at most max bytes) into a NUL-terminated buffer. */
int store_read_file(const char *path, size_t max, char **data_out,
                    size_t *size_out);

/* mkdir -p with mode for the directories it makes. */
int store_mkdirs(const char *path, mode_t mode);

/* Removes a directory tree; a missing one is not an error. */
int store_remove_tree(const char *path);


#endif /* LIBVMM_STORE_H */
