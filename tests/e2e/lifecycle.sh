#!/bin/bash
# Lifecycle on a real guest, with vm-set folded in to spare a boot:
#
#   create --vcpus 2, start, ssh (hostname is the VM's name, nproc 2),
#   stop, set --vcpus 4, start, ssh (hostname again, nproc 4), delete.
#
# After the stop, and after the delete, nothing of the VM may remain: no
# VMM or QEMU process, no tap, no API socket; after the delete also no
# namespace and no VM directory.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

vm=$P-life

create_vm "$vm" --vcpus 2
ns=$(field "$vm" netns)
[ "$ns" = "libvmm-$vm" ] || fail "create --netns: namespace is '$ns', expected libvmm-$vm"
[ "$(field "$vm" state)" = stopped ] || fail "a new VM is not stopped"

# --- first boot: 2 vCPUs -------------------------------------------------
start_vm "$vm"
pid1=$(field "$vm" pid)
is_kind fc-emulator "$pid1" || fail "show names pid '$pid1', which is no VMM of this run"
qemu1=$(qemu_of "$vm")
[ -n "$qemu1" ] || fail "no QEMU runs for $vm after start"
tap=$(field "$vm" tap)
ip -n "$ns" link show "$tap" >/dev/null 2>&1 || fail "tap '$tap' is not in $ns"
wait_ssh "$vm"
expect_guest "$vm" "cat /etc/hostname" "$vm"
expect_guest "$vm" "hostname" "$vm"
expect_guest "$vm" nproc 2

t0=$SECONDS
run vmctl -v stop "$vm" --timeout 60
[ "$rc" -eq 0 ] || fail "vmctl stop $vm: exit $rc: $err"
note "stop took $((SECONDS - t0)) s: $(printf '%s\n' "$err" | tail -n 1)"
[ "$(field "$vm" state)" = stopped ] || fail "after stop: state is '$(field "$vm" state)'"
wait_gone "$pid1" 5 || fail "after stop: VMM $pid1 is still alive"
wait_gone "$qemu1" 5 || fail "after stop: QEMU $qemu1 is still alive"
expect_nothing_left "after stop" "$vm" "$ns"
# A graceful stop lets the guest unmount its root: the disk is clean.
disk=$(field "$vm" disk)
if e2fsck -fn "$disk" >"$T/fsck.out" 2>&1; then
	pass "after stop: e2fsck -fn finds the disk clean"
else
	fail "after stop: e2fsck -fn $disk: $(tail -n 5 "$T/fsck.out")"
fi

# --- vm-set, second boot: 4 vCPUs ----------------------------------------
run vmctl set "$vm" --vcpus 4
[ "$rc" -eq 0 ] || fail "vmctl set $vm --vcpus 4: exit $rc: $err"
[ "$(field "$vm" vcpus)" = 4 ] || fail "after set: show says vcpus '$(field "$vm" vcpus)'"

start_vm "$vm"
pid2=$(field "$vm" pid)
[ "$pid2" != "$pid1" ] || fail "the second start reports the first VMM's pid"
is_kind fc-emulator "$pid2" || fail "show names pid '$pid2', which is no VMM of this run"
wait_ssh "$vm"
expect_guest "$vm" "cat /etc/hostname" "$vm"
expect_guest "$vm" nproc 4
qemu2=$(qemu_of "$vm")

# --- delete: stop first, as a user would, then delete ---------------------
run vmctl stop "$vm" --timeout 60
[ "$rc" -eq 0 ] || fail "vmctl stop $vm (2): exit $rc: $err"
run vmctl delete "$vm"
[ "$rc" -eq 0 ] || fail "vmctl delete $vm: exit $rc: $err"
wait_gone "$pid2" 5 || fail "after delete: VMM $pid2 is still alive"
[ -z "$qemu2" ] || wait_gone "$qemu2" 5 || fail "after delete: QEMU $qemu2 is still alive"
expect_nothing_left "after delete" "$vm" "$ns"
[ -e "/run/netns/$ns" ] && fail "after delete: namespace $ns is still there"
[ -e "$STATE/vms/$vm" ] && fail "after delete: $STATE/vms/$vm is still there"
run vmctl show "$vm"
[ "$rc" -ne 0 ] || fail "show after delete succeeded: $out"

finish
