#!/bin/bash
# A start whose kernel is gone must fail with one clear error that names
# the kernel, and leave nothing behind: no VMM, no QEMU, no tap, no API
# socket, and the VM recorded as stopped.  No guest boots in this test.
#
# Two ways to lose the kernel:
#   deleted   the file no longer exists (the library or the VMM notices);
#   garbage   the file exists but is no kernel, so only the VMM (QEMU,
#             behind the emulator's InstanceStart) can refuse it.
# Afterwards the kernel comes back and the VM is deleted cleanly.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

vm=$P-nokern
kernel=$T/vmlinux-$P

cp "$IMAGES/vmlinux" "$kernel" || die "cannot copy the kernel to $kernel"
# The disk build is the slow part of create; done once for both cases.
vms+=("$vm")
run vmctl create "$vm" --kernel "$kernel" --initrd "$IMAGES/initrd.img" \
	--rootfs "$IMAGES/rootfs.ext4" --netns --boot-args "$BOOT_ARGS"
[ "$rc" -eq 0 ] || die "vmctl create $vm: exit $rc: $err"
ns=$(field "$vm" netns)

# after_refused_start WHAT: the state a refused start must leave.
after_refused_start() {
	local what=$1 state
	state=$(field "$vm" state)
	[ "$state" = stopped ] || fail "$what: state is '$state', expected stopped"
	[ "$(field "$vm" pid)" = null ] || fail "$what: show still names a pid"
	expect_nothing_left "$what" "$vm" "$ns"
}

# --- deleted ---------------------------------------------------------------
rm -f "$kernel"
run vmctl start "$vm"
lines=$(printf '%s\n' "$err" | grep -c .)
if [ "$rc" -eq 0 ]; then
	fail "start with a deleted kernel succeeded"
elif [ "$lines" -ne 1 ] || [[ $err != "vmctl: start $vm: "* ]]; then
	fail "start with a deleted kernel: expected one 'vmctl: start $vm: ' line, got: $err"
elif [[ $err != *"$kernel"* ]] || ! grep -qiE 'no such file|not exist|not found|missing' <<<"$err"; then
	fail "start with a deleted kernel: the error does not say $kernel is missing: $err"
else
	pass "deleted kernel refused (exit $rc): $err"
fi
after_refused_start "deleted kernel"

# --- garbage -----------------------------------------------------------------
head -c 1048576 /dev/urandom >"$kernel"
run vmctl start "$vm"
lines=$(printf '%s\n' "$err" | grep -c .)
if [ "$rc" -eq 0 ]; then
	fail "start with a kernel that is random bytes succeeded"
elif [[ $err != "vmctl: start $vm: "* ]]; then
	fail "start with a garbage kernel: the error does not start 'vmctl: start $vm: ': $err"
elif ! grep -qiE 'kernel' <<<"$err"; then
	fail "start with a garbage kernel: the error does not mention the kernel: $err"
else
	pass "garbage kernel refused (exit $rc, $lines line(s)): $(head -n 3 <<<"$err")"
fi
after_refused_start "garbage kernel"

# --- the kernel is back: the VM deletes cleanly -----------------------------
cp "$IMAGES/vmlinux" "$kernel" || die "cannot restore $kernel"
run vmctl delete "$vm"
[ "$rc" -eq 0 ] || fail "vmctl delete $vm: exit $rc: $err"
[ -e "/run/netns/$ns" ] && fail "after delete: namespace $ns is still there"
[ -e "$STATE/vms/$vm" ] && fail "after delete: $STATE/vms/$vm is still there"
expect_nothing_left "after delete" "$vm" "$ns"

finish
