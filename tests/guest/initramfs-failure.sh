#!/bin/bash
# Boots the cached kernel and initramfs with kernel command lines the
# initramfs cannot honour and checks that each time it says why on the
# console and ends the VM, rather than hanging: QEMU (run with -no-reboot,
# as Firecracker ends on a guest reboot) must exit within END_TIMEOUT
# seconds (default 40).  The guest gets no network device, and the root
# image, where a case needs it, read-only.
#
# Exit status: 0 pass, 1 fail, 77 skip (no images or no QEMU).

set -uo pipefail

test_name=initramfs-failure
# shellcheck source=tests/guest/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly END_TIMEOUT=${END_TIMEOUT:-40}
readonly BASE_ARGS="console=ttyS0 reboot=k panic=1 tsc_early_khz=2000000"

passed=0
failed=0

cleanup() {
	local status=$?

	stop_qemu
	[ -n "$tmp_dir" ] && rm -rf "$tmp_dir"
	exit $status
}

# Boots with kernel arguments $2 (after BASE_ARGS) and QEMU arguments $4...
# and expects message $3 on the console.
expect_failure() {
	local label=$1 args="$BASE_ARGS $2" message=$3 started=$SECONDS

	shift 3
	qemu-system-x86_64 -M microvm -m 256 -smp 1 -nographic -no-reboot \
		-nic none -kernel "$image_dir/vmlinux" \
		-initrd "$image_dir/initrd.img" -append "$args" "$@" \
		</dev/null >"$tmp_dir/console.log" 2>&1 &
	qemu_pid=$!
	while kill -0 "$qemu_pid" 2>/dev/null &&
		[ $((SECONDS - started)) -lt "$END_TIMEOUT" ]; do
		sleep 0.5
	done
	if kill -0 "$qemu_pid" 2>/dev/null; then
		stop_qemu
		show_console 40
		note "not ok: $label: the VM still ran after $END_TIMEOUT s"
		failed=$((failed + 1))
		return
	fi
	qemu_pid=
	if ! tr -d '\r' <"$tmp_dir/console.log" |
		grep -q "libvmm-initramfs: FATAL: $message"; then
		show_console 40
		note "not ok: $label: no 'FATAL: $message' on the console"
		failed=$((failed + 1))
		return
	fi
	note "ok: $label: ended after $((SECONDS - started)) s with '$message'"
	passed=$((passed + 1))
}

main() {
	parse_common_args "$@"
	require_images
	require_tools qemu-system-x86_64

	tmp_dir=$(mktemp -d /tmp/libvmm-initramfs-failure.XXXXXX) || fail "mktemp"
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	expect_failure "missing root device" "root=/dev/vdz" \
		"root device /dev/vdz did not appear"
	expect_failure "no root= argument" "" \
		"no root= on the kernel command line"
	expect_failure "ip= names a missing device" \
		"root=/dev/vda ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off" \
		"network device eth0 named by ip= does not exist"
	expect_failure "ip= with a bad netmask" \
		"root=/dev/vda ip=172.16.0.2::172.16.0.1:255.0.255.0::lo:off" \
		"ip=.* '255.0.255.0' is not a netmask"
	# Gets as far as mounting the real root disk (read-only, as asked).
	expect_failure "init= names a missing program" \
		"root=/dev/vda ro init=/sbin/no-such-init" \
		"/sbin/no-such-init does not exist on /dev/vda" \
		-drive "id=rootfs,file=$image_dir/rootfs.ext4,format=raw,if=none,readonly=on" \
		-device virtio-blk-device,drive=rootfs

	echo "$passed passed, $failed failed"
	[ $failed -eq 0 ]
}

main "$@"
