#!/bin/bash
# Restart after a hard stop: the guest writes a file and syncs it, the VMM
# is killed (vmctl kill: SIGKILL, no shutdown), and the next start must
# repair the disk in snapshot-prep before it patches it.
#
# Whether a repair is needed is decided here, independently of libvmm: the
# killed guest never unmounted its root, so the disk still carries ext4's
# needs_recovery flag (its journal must be replayed).  When it does, the
# library's log (vmctl -v) must say that e2fsck repaired the disk; a start
# that skipped e2fsck, or repaired silently, fails this test.  Then ssh
# must work and the file written before the kill must hold its data.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

vm=$P-hard
marker=/root/marker

create_vm "$vm"
ns=$(field "$vm" netns)
start_vm "$vm"
wait_ssh "$vm"
expect_guest "$vm" "cat /etc/hostname" "$vm"

guest "$vm" "echo data > $marker; sync"
[ "$rc" -eq 0 ] || die "writing $marker in the guest: exit $rc: $err"
expect_guest "$vm" "cat $marker" data

pid=$(field "$vm" pid)
qemu=$(qemu_of "$vm")
[ -n "$qemu" ] || fail "no QEMU runs for $vm"
run vmctl -v kill "$vm"
[ "$rc" -eq 0 ] || die "vmctl kill $vm: exit $rc: $err"
pass "kill: $(printf '%s\n' "$err" | tail -n 1)"
wait_gone "$pid" 5 || fail "after kill: VMM $pid is still alive"
[ -z "$qemu" ] || wait_gone "$qemu" 5 || fail "after kill: QEMU $qemu is still alive"
[ "$(field "$vm" state)" = stopped ] || fail "after kill: state is '$(field "$vm" state)'"
last=$(field "$vm" last_exit)
case "$last" in
*SIGKILL* | *"signal 9"*) pass "after kill: last exit '$last'" ;;
*) fail "after kill: last_exit is '$last', expected the SIGKILL" ;;
esac
expect_nothing_left "after kill" "$vm" "$ns"

# The oracle: what the disk looks like to e2fsprogs, read-only.
disk=$(field "$vm" disk)
[ -f "$disk" ] || die "after kill: the VM's disk '$disk' is not a file"
features=$(dumpe2fs -h "$disk" 2>/dev/null | sed -n 's/^Filesystem features: *//p')
e2fsck -fn "$disk" >"$T/fsck.out" 2>&1
fsck_n=$?
journal=0
if [[ " $features " == *" needs_recovery "* ]]; then
	needs_repair=1
	journal=1
	note "after kill: the disk needs journal recovery (e2fsck -fn exit $fsck_n)"
elif [ "$fsck_n" -ne 0 ]; then
	needs_repair=1
	note "after kill: e2fsck -fn finds errors (exit $fsck_n)"
else
	# Seen never so far: a killed guest always leaves its journal dirty.
	needs_repair=0
	note "after kill: the disk is clean; no repair to look for in the log"
fi

start_vm "$vm"
start_log=$err
repaired=$(printf '%s\n' "$start_log" | grep -F "e2fsck repaired $disk")
if [ "$needs_repair" -eq 1 ]; then
	if [ -z "$repaired" ]; then
		printf '%s\n' "$start_log" >&2
		fail "start after kill: the disk needed a repair, but the log does not say 'e2fsck repaired $disk'"
	elif [ "$journal" -eq 1 ] && ! grep -q "recovering journal" <<<"$repaired"; then
		fail "start after kill: the repair line does not mention the journal: $repaired"
	else
		pass "start after kill logged: ${repaired#vmctl: }"
	fi
else
	[ -z "$repaired" ] || fail "a clean disk was reported repaired: $repaired"
fi

wait_ssh "$vm"
expect_guest "$vm" "cat /etc/hostname" "$vm"
expect_guest "$vm" "cat $marker" data
# The repaired disk is mounted read-write, as every boot's.
expect_guest "$vm" "awk '\$2 == \"/\" { split(\$4, o, \",\"); print o[1] }' /proc/mounts" rw

qemu=$(qemu_of "$vm")
pid=$(field "$vm" pid)
run vmctl delete --force "$vm"
[ "$rc" -eq 0 ] || fail "vmctl delete --force $vm: exit $rc: $err"
wait_gone "$pid" 5 || fail "after delete --force: VMM $pid is still alive"
[ -z "$qemu" ] || wait_gone "$qemu" 5 || fail "after delete --force: QEMU $qemu is still alive"
expect_nothing_left "after delete --force" "$vm" "$ns"
[ -e "/run/netns/$ns" ] && fail "after delete: namespace $ns is still there"

finish
