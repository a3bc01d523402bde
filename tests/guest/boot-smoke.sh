#!/bin/bash
# Boots the cached guest images under QEMU's microvm machine, without
# libvmm, and checks that sshd in the guest answers over a tap device.
#
# Everything network lives in a namespace this test creates: the tap, the
# host side's 172.16.0.1/30 and QEMU itself.  The root image is used
# through a private sparse copy into which the test writes an authorized
# key and a host name of its own, and the guest must answer with exactly
# that name within BOOT_TIMEOUT seconds (default 90).
#
# Exit status: 0 pass, 1 fail, 77 skip (no images, not root, no tools).

set -uo pipefail

test_name=boot-smoke
# shellcheck source=tests/guest/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly HOST_IP=172.16.0.1
readonly GUEST_IP=172.16.0.2
readonly NETMASK=255.255.255.252
readonly BOOT_TIMEOUT=${BOOT_TIMEOUT:-90}
readonly BOOT_ARGS="console=ttyS0 reboot=k panic=1 tsc_early_khz=2000000 root=/dev/vda rw ip=$GUEST_IP::$HOST_IP:$NETMASK::eth0:off"

netns=libvmm-smoke-$$
netns_made=0
tap=tap0

cleanup() {
	local status=$?

	stop_qemu
	if [ $netns_made -eq 1 ]; then
		ip netns exec "$netns" ip link del "$tap" 2>/dev/null
		ip netns del "$netns" || note "warning: cannot delete netns $netns"
	fi
	[ -n "$tmp_dir" ] && rm -rf "$tmp_dir"
	exit $status
}

# Writes $2 (a host file) to path $3 inside ext4 image $1, mode $4.
put_file() {
	local image=$1 src=$2 dst=$3 mode=$4

	debugfs -w -f - "$image" >/dev/null 2>"$tmp_dir/debugfs.err" <<EOF
rm $dst
write $src $dst
set_inode_field $dst mode 0100$mode
set_inode_field $dst uid 0
set_inode_field $dst gid 0
EOF
	# debugfs exits 0 even when a request fails; "rm" of a missing file
	# is expected, anything else is not.
	if grep -v -e 'File not found by ext2_lookup' -e '^debugfs ' \
		"$tmp_dir/debugfs.err" | grep -q .; then
		cat "$tmp_dir/debugfs.err" >&2
		fail "cannot write $dst into the image copy"
	fi
}

prepare_disk() {
	local disk=$tmp_dir/rootfs.ext4

	cp --sparse=always --reflink=auto "$image_dir/rootfs.ext4" "$disk" ||
		fail "cannot copy rootfs.ext4"
	ssh-keygen -q -t ed25519 -N '' -C boot-smoke -f "$tmp_dir/id" ||
		fail "ssh-keygen failed"
	expected_host=smoke-$$-$RANDOM
	echo "$expected_host" >"$tmp_dir/hostname"
	put_file "$disk" "$tmp_dir/id.pub" /root/.ssh/authorized_keys 600
	put_file "$disk" "$tmp_dir/hostname" /etc/hostname 644
}

prepare_network() {
	ip netns add "$netns" || fail "cannot create network namespace $netns"
	netns_made=1
	if ! { ip netns exec "$netns" ip link set lo up &&
		ip netns exec "$netns" ip tuntap add dev "$tap" mode tap &&
		ip netns exec "$netns" ip addr add "$HOST_IP/30" dev "$tap" &&
		ip netns exec "$netns" ip link set "$tap" up; }; then
		fail "cannot set up $tap in $netns"
	fi
}

start_guest() {
	ip netns exec "$netns" qemu-system-x86_64 \
		-M microvm -m 512 -smp 2 -nographic -no-reboot \
		-kernel "$image_dir/vmlinux" -initrd "$image_dir/initrd.img" \
		-append "$BOOT_ARGS" \
		-drive "id=rootfs,file=$tmp_dir/rootfs.ext4,format=raw,if=none" \
		-device virtio-blk-device,drive=rootfs \
		-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
		-device virtio-net-device,netdev=n0 \
		</dev/null >"$tmp_dir/console.log" 2>&1 &
	qemu_pid=$!
}

guest_ssh() {
	ip netns exec "$netns" ssh -F /dev/null -i "$tmp_dir/id" \
		-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o BatchMode=yes -o ConnectTimeout=3 -o LogLevel=ERROR \
		"root@$GUEST_IP" "$@"
}

wait_for_ssh() {
	local started=$SECONDS answer

	while [ $((SECONDS - started)) -lt "$BOOT_TIMEOUT" ]; do
		if ! kill -0 "$qemu_pid" 2>/dev/null; then
			show_console
			fail "QEMU exited before sshd answered"
		fi
		if answer=$(guest_ssh cat /etc/hostname 2>"$tmp_dir/ssh.err"); then
			[ "$answer" = "$expected_host" ] || {
				show_console
				fail "guest answered '$answer', expected '$expected_host'"
			}
			note "ssh answered '$answer' $((SECONDS - started)) s after QEMU started"
			return 0
		fi
		sleep 1
	done
	show_console 60
	note "last ssh error: $(tail -n1 "$tmp_dir/ssh.err")"
	fail "no ssh answer from $GUEST_IP within $BOOT_TIMEOUT s"
}

# What the images promise beyond "sshd answers": the initramfs loaded the
# drivers, applied ip= and mounted the root read-write; no unit failed; sshd
# made itself a host key although the disk carried none; a login prompt
# waits on the serial console.
check_guest() {
	local report

	# shellcheck disable=SC2016 # expanded by the guest's shell
	report=$(guest_ssh '
		echo "modules=$(grep -c -E "^(virtio_net|loop|dm_snapshot) " /proc/modules)"
		echo "addr=$(ip -4 -o addr show dev eth0 | awk "{print \$4}")"
		echo "root=$(awk "\$2 == \"/\" {split(\$4, o, \",\"); print o[1]}" /proc/mounts)"
		echo "state=$(timeout 60 systemctl is-system-running --wait)"
		echo "hostkey=$(ls /etc/ssh/ssh_host_*_key 2>/dev/null | wc -l)"
		echo "console=$(systemctl is-active serial-getty@ttyS0.service)"
	') || fail "ssh to the guest failed after it had answered"
	expect_line "$report" "modules=3"
	expect_line "$report" "addr=$GUEST_IP/30"
	expect_line "$report" "root=rw"
	expect_line "$report" "state=running"
	expect_line "$report" "hostkey=1"
	expect_line "$report" "console=active"
}

expect_line() {
	if ! grep -qx -- "$2" <<<"$1"; then
		printf '%s\n' "$1" >&2
		guest_ssh 'systemctl --failed --no-legend' >&2
		fail "guest check: expected '$2'"
	fi
	note "guest: $2"
}

main() {
	parse_common_args "$@"
	require_images
	[ "$(id -u)" -eq 0 ] || skip "needs root (network namespace, tap)"
	require_tools qemu-system-x86_64 ip ssh ssh-keygen debugfs

	tmp_dir=$(mktemp -d /tmp/libvmm-boot-smoke.XXXXXX) || fail "mktemp"
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	prepare_disk
	prepare_network
	note "booting: $BOOT_ARGS"
	start_guest
	wait_for_ssh

	check_guest
	if [ "${VERBOSE:-0}" = 1 ]; then
		guest_ssh 'systemd-analyze; systemd-analyze blame | head -15' >&2
	fi
	note "PASS"
}

main "$@"
