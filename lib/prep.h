/*
 * Snapshot-prep: make a VM's disk safe, then patch files into it.
 *
 * Every patch is preceded by `e2fsck -fy` on the disk. e2fsck's exit
 * status is a bit mask: 0-3 are success (what was repaired is logged);
 * 4, 8, 16, 32 or 128 set is failure (VMM_EDISK with the tail of its
 * output). A filesystem that still needs journal recovery afterwards is
 * never written to. Patches are applied in-process with libext2fs, one
 * open of the filesystem for the whole set.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_PREP_H
#define LIBVMM_PREP_H

#include <sys/types.h>

#include "internal.h"

enum prep_op {
    PREP_WRITE_FILE, /* create or replace a regular file */
    PREP_MKDIR,      /* make a directory, with its parents */
    PREP_SYMLINK,    /* make a symlink: data is the target */
    PREP_REMOVE,     /* remove a file, symlink or empty directory; a
                        missing path is not an error */
};

struct prep_patch {
    enum prep_op op;
    const char *path; /* absolute path in the guest */
    const void *data; /* file content or symlink target */
    size_t size;
    mode_t mode;      /* permission bits */
    uid_t uid;
    gid_t gid;
};

/* Result of the e2fsck step, for logs and tests. */
struct prep_fsck_result {
    int exit_status;  /* e2fsck's exit status bit mask */
    bool repaired;    /* bit 1 or 2 set */
};

/* Maps an e2fsck exit status: 0 when it is success, else VMM_EDISK with a
 * message naming each failure bit. */
int prep_fsck_status(int exit_status, const char *disk);

/*
 * Runs `e2fsck -fy` on disk (a file or block device), bounded to 10
 * minutes, and maps its status with prep_fsck_status (the error then also
 * carries the tail of e2fsck's output). A repair is logged as a warning
 * summarising what e2fsck fixed. Afterwards a filesystem that still needs
 * journal recovery is refused: VMM_EDISK. result may be NULL; it is filled
 * whenever e2fsck ran, even when it failed.
 */
int prep_fsck(const vmm_context *ctx, const char *vm_name, const char *disk,
              struct prep_fsck_result *result);

/*
 * Runs `e2fsck -fn` on disk, which changes nothing, and sets *clean when
 * it found nothing to fix (no error, no question asked, nothing to
 * replay). A failure to run e2fsck at all
 * (exit status 8 and above) is an error; a dirty filesystem is not.
 */
int prep_check_clean(const vmm_context *ctx, const char *vm_name,
                     const char *disk, bool *clean);

/*
 * Opens the filesystem once and applies the patches in order.
 *
 * Paths resolve inside the guest, component by component: symlinks are
 * followed (an absolute target from the guest's root), ".." above the root
 * is refused (VMM_EINVAL naming the path), and so is replacing a directory
 * with a file or symlink. PREP_WRITE_FILE follows a symlink in the last
 * component and makes missing parent directories (0755, root); PREP_MKDIR
 * sets mode/uid/gid on the last directory only; PREP_SYMLINK and
 * PREP_REMOVE act on a last-component symlink itself. A disk that needs
 * journal recovery, or whose bitmaps do not read back (run e2fsck first),
 * is refused before anything is written: VMM_EDISK. Arguments are checked
 * before the disk is opened. If a patch fails half-way (ENOSPC, I/O), the
 * patches before it stay applied and the bitmaps and counters are still
 * flushed, so the filesystem is consistent; the error names the path.
 */
int prep_patch(const vmm_context *ctx, const char *vm_name, const char *disk,
               const struct prep_patch *patches, size_t count);

/*
 * Grows the ext4 filesystem on disk to the size of its file or device:
 * prep_fsck, then `resize2fs DISK` (libext2fs has no resize; the program
 * call lives here, with the other helper programs). Used by the copy
 * overlay for a disk_size larger than the base.
 */
int prep_grow_fs(const vmm_context *ctx, const char *vm_name,
                 const char *disk);

/* com_err's text for a libext2fs error code. */
const char *prep_ext2_strerror(long code);

/* Tests only: run this program instead of e2fsck (NULL: e2fsck again). */
void prep_test_set_e2fsck(const char *path);

/* fsck, then patch: what every start runs. */
int prep_run(const vmm_context *ctx, const char *vm_name, const char *disk,
             const struct prep_patch *patches, size_t count,
             struct prep_fsck_result *result);

/*
 * The guest's network configuration style, detected from the image:
 * systemd-networkd (an enabled systemd-networkd and /etc/systemd/network)
 * or ifupdown (/etc/network/interfaces).
 */
enum prep_net_style {
    PREP_NET_IFUPDOWN,
    PREP_NET_NETWORKD,
    PREP_NET_NONE,
};
int prep_detect_net_style(const char *disk, enum prep_net_style *out);
/* (Enabled means a link in /etc/systemd/system/{multi-user,sockets,
 * network-online}.target.wants; the disk is opened read-only.) */

/* Inputs of the standard patch set. */
struct prep_guest_config {
    const char *hostname;
    const char *guest_ip;      /* dotted quad, or NULL: no network */
    const char *gateway_ip;
    uint32_t prefix_len;       /* 30 */
    const char *mac;           /* "06:00:ac:10:00:02" */
    const char *authorized_keys; /* text, or NULL */
    const char *host_keys_dir; /* holds ssh_host_*_key{,.pub}, or NULL */
    enum prep_net_style net_style;
};

/*
 * Builds the standard patch set: /etc/hostname, /etc/hosts, the network
 * configuration in the image's style, /root/.ssh (0700) with
 * authorized_keys (0600), and /etc/ssh/ssh_host_* (replacing any keys the
 * image carries: the image's rsa/ecdsa/dsa keys are removed so clones never
 * share them). With guest_ip NULL or net_style PREP_NET_NONE no network
 * file is written; with authorized_keys NULL no /root/.ssh; with
 * host_keys_dir NULL no host keys. Strings in the patches point into
 * *storage_out, which the caller frees (free()) together with
 * *patches_out. VMM_EINVAL for a missing hostname, whitespace in a
 * one-word field or a prefix length outside 1-32; VMM_ENOTFOUND when
 * host_keys_dir lacks ssh_host_ed25519_key{,.pub}.
 */
int prep_standard_patches(const struct prep_guest_config *cfg,
                          struct prep_patch **patches_out, size_t *count_out,
                          char **storage_out);

/*
 * Makes the VM's ssh host key (ed25519) in dir with ssh-keygen, unless
 * dir already holds one (a VM keeps its identity across starts), and
 * writes its public half, as the known-hosts line "HOST ssh-ed25519 KEY",
 * to known_hosts_path atomically.
 */
int prep_make_host_keys(const vmm_context *ctx, const char *vm_name,
                        const char *dir, const char *host,
                        const char *known_hosts_path);

#endif /* LIBVMM_PREP_H */
