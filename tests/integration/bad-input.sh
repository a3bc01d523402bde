#!/bin/bash
# Bad input: every bad name form, missing or unreadable kernel and rootfs,
# vcpus 0/3/33, memory 127, malformed numbers, set on a running VM, an
# unknown VM. Each is a non-zero exit with one line naming the problem,
# and nothing is created: no VM directory, namespace, tap or process.
# Namespaces are checked by name: ours carry the run's prefix, and a VM's
# own is "libvmm-NAME" (other programs may make namespaces meanwhile).
. "$(dirname "$0")/lib.sh"

# The VM name the current case tries; its own namespace must not appear.
tried=

nothing_made() {
    local what=$1 vms ns pids
    vms=$(ls -A "$STATE/vms" 2>/dev/null | tr '\n' ' ')
    ns=$(our_netns | tr '\n' ' ')
    if [ -n "$tried" ] && [ -e "/run/netns/libvmm-$tried" ]; then
        ns="$ns libvmm-$tried"
    fi
    pids=$(our_pids | tr '\n' ' ')
    [ -n "$vms" ] && fail "$what: left VM directories: $vms"
    [ -n "${ns// /}" ] && fail "$what: left network namespaces: $ns"
    [ -n "$pids" ] && fail "$what: left processes: $pids"
    # Clear what was left so one failure is reported once.
    for v in $vms; do rm -rf "${STATE:?}/vms/$v"; done
    for n in $ns; do ip netns delete "$n"; done
}

# bad STATUS WHAT PATTERN CMD...: the command fails with STATUS and one
# line matching PATTERN, and creates nothing.
bad() {
    local status=$1 what=$2
    shift 2
    if expect_error "$what" "$@"; then
        [ "$rc" -eq "$status" ] || fail "$what: exit status $rc, expected $status"
    fi
    nothing_made "$what"
}

# --- names -------------------------------------------------------------
long64=$P-$(printf 'x%.0s' $(seq 1 $((63 - ${#P}))))
long63=${long64:0:63}
declare -a names=("" "." ".." "a/b" "$P/x" ".$P" "$P"$'\t'x "$P"$'\x01' "$P"$'\n'x
    "$P-"$'\xc3\xa9' "$P "x "$long64")
for name in "${names[@]}"; do
    tried=$name
    shown=$(printf '%q' "$name")
    bad 1 "create with name $shown" "name" \
        vmctl create --kernel "$KERNEL" --rootfs "$ROOTFS" --netns -- "$name"
done
tried=-$P
bad 1 "create with name -$P (after --)" "name" \
    vmctl create --kernel "$KERNEL" --rootfs "$ROOTFS" --netns -- "-$P"
bad 2 "create with name -$P (taken as an option)" "unknown option" \
    vmctl create "-$P" --kernel "$KERNEL" --rootfs "$ROOTFS" --netns

tried=$long63
# The longest good name works (so the refusals above mean something).
expect_ok "create with a 63-byte name" create "$long63" --netns &&
    pass "63-byte name accepted" && expect_ok "delete 63-byte VM" vmctl delete "$long63"
nothing_made "63-byte name round trip"

# --- files -------------------------------------------------------------
mkdir "$T/adir"
head -c 1048576 /dev/urandom >"$T/garbage.img"
vm=$P-bad
tried=$vm
bad 1 "missing kernel" "$T/nokernel" create "$vm" --netns --kernel "$T/nokernel"
bad 1 "missing kernel (given last)" "$T/nokernel" \
    vmctl create "$vm" --rootfs "$ROOTFS" --netns --kernel "$T/nokernel"
bad 1 "kernel is a directory" "$T/adir|kernel" \
    vmctl create "$vm" --kernel "$T/adir" --rootfs "$ROOTFS" --netns
bad 1 "missing rootfs" "$T/norootfs" \
    vmctl create "$vm" --kernel "$KERNEL" --rootfs "$T/norootfs" --netns
bad 1 "rootfs is a directory" "$T/adir|rootfs|base" \
    vmctl create "$vm" --kernel "$KERNEL" --rootfs "$T/adir" --netns
bad 1 "rootfs is not a filesystem" "garbage.img|ext4|filesystem|base" \
    vmctl create "$vm" --kernel "$KERNEL" --rootfs "$T/garbage.img" --netns
bad 1 "missing initrd" "$T/noinitrd|initrd" create "$vm" --netns --initrd "$T/noinitrd"
bad 1 "missing ssh key" "$T/nokey.pub" create "$vm" --netns --ssh-key "$T/nokey.pub"
bad 1 "missing netns" "$P-nons|netns|namespace" create "$vm" --netns "$P-nons"
bad 2 "no --kernel" "--kernel" vmctl create "$vm" --rootfs "$ROOTFS" --netns
bad 2 "no --rootfs" "--rootfs" vmctl create "$vm" --kernel "$KERNEL" --netns
bad 2 "no name" "name" vmctl create --kernel "$KERNEL" --rootfs "$ROOTFS" --netns
bad 2 "two names" "unexpected" create "$vm" "$vm-2" --netns

# --- sizes -------------------------------------------------------------
bad 2 "vcpus 0" "--vcpus" create "$vm" --netns --vcpus 0
bad 1 "vcpus 3" "vcpu" create "$vm" --netns --vcpus 3
bad 1 "vcpus 33" "vcpu" create "$vm" --netns --vcpus 33
bad 1 "vcpus 34" "vcpu" create "$vm" --netns --vcpus 34
bad 1 "memory 127" "memory|128" create "$vm" --netns --memory 127
bad 2 "memory 0" "--memory" create "$vm" --netns --memory 0
bad 1 "disk smaller than the base" "disk|size" create "$vm" --netns --disk-size 1K
for v in 4x -1 +2 " 2" "" 0x4 99999999999 18446744073709551617 2.0; do
    bad 2 "vcpus '$v'" "--vcpus" create "$vm" --netns --vcpus "$v"
done
for v in 5Q 1GB -1G "" 17179869184T 99999999999999999999; do
    bad 2 "disk-size '$v'" "--disk-size" create "$vm" --netns --disk-size "$v"
done
bad 2 "overlay bogus" "--overlay" create "$vm" --netns --overlay bogus
bad 2 "--no-net with --netns" "no-net|netns" create "$vm" --no-net --netns
bad 2 "unknown option" "unknown option" create "$vm" --netns --bogus
bad 2 "unknown command" "unknown command" vmctl bogus
bad 2 "no command" "no command" vmctl
bad 2 "start --timeout 0" "--timeout" vmctl start "$vm" --timeout 0
bad 2 "stop --timeout 5s" "--timeout" vmctl stop "$vm" --timeout 5s

# --- unknown VM --------------------------------------------------------
for cmd in "show" "show --json" "start" "stop" "kill" "delete" "delete --force" \
    "set --vcpus 2" "ssh" "logs"; do
    # shellcheck disable=SC2086
    bad 1 "$cmd of an unknown VM" "$P-nope" vmctl $cmd "$P-nope"
done
bad 1 "show with a bad name" "name" vmctl show "a/b"

# --- set on a running VM -------------------------------------------------
if expect_ok "create for set" create "$vm" --no-net; then
    expect_ok "start for set" vmctl start "$vm"
    expect_error "set --vcpus on a running VM" "running|stop" vmctl set "$vm" --vcpus 2
    expect_error "set --memory on a running VM" "running|stop" vmctl set "$vm" --memory 256
    [ "$(field "$vm" vcpus)" = 1 ] || fail "a refused set changed vcpus"
    [ "$(field "$vm" memory_mib)" = 512 ] || fail "a refused set changed memory"
    expect_ok "delete --force" vmctl delete --force "$vm"
fi
nothing_made "set on a running VM"
check_clean "bad-input"

finish
