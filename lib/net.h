/*
 * Tap networking: guest addresses from the context's pool, taps, network
 * namespaces, and the kernel's ip= boot argument. Done in-process with
 * ioctls and rtnetlink; no program is run.
 *
 * Each VM takes a /30 of the pool by slot number: network + 4 * slot. The
 * host side of the tap is the first address, the guest the second. The
 * MAC derives from the guest address (06:00:A:B:C:D), and the tap's name
 * from the slot ("vmtap<slot>"), so both are unique while slots are, and
 * fit IFNAMSIZ. Slots are handed out under the state directory's lock, so
 * they are unique within one state directory; VMs of other state
 * directories in the same namespace are kept apart by the taps' owners.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef LIBVMM_NET_H
#define LIBVMM_NET_H

#include "internal.h"

struct net_lease {
    uint32_t slot;
    uint32_t prefix_len;  /* 30 */
    char guest_ip[16];
    char host_ip[16];
    char netmask[16];     /* "255.255.255.252" */
    char mac[18];
    char tap[16];
};

/* Number of /30 slots in the context's pool. */
uint32_t net_pool_slots(const vmm_context *ctx);

/* Fills a lease for a slot; VMM_EINVAL when the slot is outside the pool. */
int net_lease_for_slot(const vmm_context *ctx, uint32_t slot,
                       struct net_lease *out);

/* The kernel's ip= argument for a lease:
 * "ip=GUEST::HOST:NETMASK::eth0:off". */
int net_boot_arg(const struct net_lease *l, char *buf, size_t size);

/*
 * Taps carry their owner in their interface alias (IFLA_IFALIAS), so
 * programs that share a namespace but not a state directory never take
 * each other's tap. owner is any non-empty string; one longer than
 * IFALIASZ - 1 bytes is stored as its start and a hash of the whole, and
 * compared the same way.
 *
 * Creates a persistent tap for the lease owned by owner (or reuses a tap
 * of that name with that owner, dropping any IPv4 address of an older
 * lease from it), addresses its host side and brings it up, inside the
 * namespace netns_fd (or the caller's when -1). The tap is made persistent
 * only once its alias is set, so no tap without an owner outlives a
 * program that dies half-way. The calling thread's namespace never
 * changes. Failure leaves no tap this call created. ctx and vm_name only
 * label log messages; both may be NULL.
 *
 * Errors: VMM_EINVAL (bad name, address, owner or fd), VMM_EEXIST (a
 * device of that name exists and is not a tap, or is a tap with another
 * owner or none; the message names the tap, its namespace and its owner;
 * it is left alone), VMM_EUNSUPPORTED (no /dev/net/tun), VMM_ENET (the
 * kernel refused a step), VMM_EIO.
 */
int net_tap_create(const vmm_context *ctx, const char *vm_name,
                   const struct net_lease *l, const char *owner,
                   int netns_fd);

/* Removes the tap if owner owns it; a missing one is not an error. A tap
 * with another owner or none is left alone (VMM_EBUSY, naming the owner),
 * and so is a device of that name that is not a tap (VMM_ENET). */
int net_tap_delete(const char *tap, const char *owner, int netns_fd);

/* Whether a tap of that name exists in the namespace (false on errors). */
bool net_tap_exists(const char *tap, int netns_fd);

/*
 * Named network namespaces, as `ip netns` keeps them: bound at
 * /run/netns/NAME, a shared mount point. Create fails with VMM_EEXIST when
 * the name is taken, and brings the new namespace's lo up; delete ignores
 * a missing one. Open gives an O_CLOEXEC fd of the namespace, which the
 * caller closes (VMM_ENOTFOUND when missing or not a bound namespace).
 * All give VMM_EINVAL for a name net_netns_name_valid() refuses.
 */
int net_netns_create(const char *name);
int net_netns_delete(const char *name);
int net_netns_open(const char *name, int *fd_out);

/* Whether a string is a usable namespace name (as for `ip netns`): 1 to
 * NAME_MAX visible ASCII characters, no '/', not "." or "..". */
bool net_netns_name_valid(const char *name);

/*
 * Tests only: when set, called before the steps of net_tap_create() named
 * "tun" (creating the device), "owner" (setting its alias, while it is not
 * yet persistent), "address" and "up"; a non-zero errno it returns fails
 * that step as if the kernel had refused it.
 */
extern int (*net_test_fail_hook)(const char *step);

#endif /* LIBVMM_NET_H */
