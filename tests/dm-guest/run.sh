#!/bin/bash
# The dm-snapshot overlay driver for real: boots a guest whose kernel has
# dm-mod, dm-snapshot and loop, runs libvmm's test programs and a job of
# vmctl cases there, and reports the guest's result as this test's.
#
# Usage: run.sh SOURCE_ROOT IMAGE_DIR LIBVMM_SO VMCTL FC_EMULATOR TEST...
#
#   SOURCE_ROOT  the checkout (scripts/build-dm-test-image.sh,
#                scripts/guest-dm/)
#   IMAGE_DIR    the guest image cache ($LIBVMM_IMAGE_DIR overrides it)
#   LIBVMM_SO    the built shared library; every libvmm.so* beside it goes
#   VMCTL, FC_EMULATOR, TEST...  built programs (TEST: Check suites such
#                as test-dm), copied to /opt/libvmm-dm/{bin,tests}
#
# The image of scripts/build-dm-test-image.sh (built or verified here,
# unless LIBVMM_DM_IMAGE_BUILD=0) is copied per run; the programs and
# scripts/guest-dm/ go into the copy through a loop mount, and QEMU boots
# it with init=/opt/libvmm-dm/init and a second disk for the results.
# Nothing is networked (-nic none).
#
# Exit status: 0 pass, 1 fail (the guest's log tail is printed), 77 skip
# (not root, no QEMU, no base images).  DM_GUEST_TIMEOUT bounds the guest
# (seconds, default 480); DM_GUEST_KEEP=1 keeps the run's directory.

set -uo pipefail

readonly SKIP=77
readonly MAGIC=LIBVMM-DM-RESULTS
readonly GUEST_TIMEOUT=${DM_GUEST_TIMEOUT:-480}
readonly BOOT_ARGS="console=ttyS0 reboot=k panic=1 tsc_early_khz=2000000 root=LABEL=libvmm-root rw init=/opt/libvmm-dm/init"

tmp_dir=
mnt=
qemu_pid=

note() {
	printf '%s dm-guest: %s\n' "$(date +%T)" "$*" >&2
}

skip() {
	note "SKIP: $*"
	exit $SKIP
}

fail() {
	note "FAIL: $*"
	exit 1
}

usage_fail() {
	fail "usage: run.sh SOURCE_ROOT IMAGE_DIR LIBVMM_SO VMCTL FC_EMULATOR TEST..."
}

cleanup() {
	local status=$?

	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -KILL "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
	fi
	if [ -n "$mnt" ] && mountpoint -q "$mnt"; then
		umount "$mnt" || umount -l "$mnt" || note "warning: cannot unmount $mnt"
	fi
	if [ -n "$tmp_dir" ]; then
		if [ "${DM_GUEST_KEEP:-0}" = 1 ]; then
			note "kept $tmp_dir"
		else
			rm -rf --one-file-system "$tmp_dir"
		fi
	fi
	exit $status
}

check_host() {
	local f

	[ "${DM_GUEST_SANITIZED:-0}" = 0 ] ||
		skip "a sanitized build: the guest has no sanitizer runtime (the plain build runs this test)"
	[ "$(id -u)" -eq 0 ] || skip "needs root (loop mount of the image copy)"
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
	for f in mount umount losetup b2sum; do
		command -v "$f" >/dev/null 2>&1 || skip "$f is not installed"
	done
	for f in vmlinux initrd.img rootfs.ext4; do
		[ -f "$image_dir/$f" ] ||
			skip "no guest image $image_dir/$f (run scripts/build-guest-images.sh, or set LIBVMM_IMAGE_DIR)"
	done
	for f in "$libvmm_so" "$vmctl" "$fcemu" "${tests[@]}"; do
		[ -x "$f" ] || [ -f "$f" ] || fail "$f does not exist (build first)"
	done
}

# The dm-test root image: built or verified by its script (a warm cache
# takes seconds), or only looked for with LIBVMM_DM_IMAGE_BUILD=0.
ensure_image() {
	local started=$SECONDS

	if [ "${LIBVMM_DM_IMAGE_BUILD:-1}" = 0 ]; then
		[ -f "$image_dir/dm-test/manifest" ] ||
			skip "no $image_dir/dm-test image (run scripts/build-dm-test-image.sh)"
		return 0
	fi
	if ! "$src_root/scripts/build-dm-test-image.sh" --out "$image_dir" \
		>"$tmp_dir/image.log" 2>&1; then
		tail -n 30 "$tmp_dir/image.log" >&2
		fail "scripts/build-dm-test-image.sh failed (log above)"
	fi
	note "dm-test image ready in $((SECONDS - started)) s"
}

# The run's root disk: a sparse copy of the cached image with the built
# programs and the guest scripts in /opt/libvmm-dm.
prepare_root() {
	local disk=$tmp_dir/rootfs.ext4 opt lib

	cp --sparse=always --reflink=auto "$image_dir/dm-test/rootfs.ext4" "$disk" ||
		fail "cannot copy the dm-test image"
	mnt=$tmp_dir/mnt
	mkdir "$mnt" || fail "mkdir $mnt"
	mount -o loop -t ext4 "$disk" "$mnt" || fail "cannot loop-mount $disk"
	opt=$mnt/opt/libvmm-dm
	mkdir -p "$opt/bin" "$opt/lib" "$opt/tests" || fail "mkdir in the image"
	lib=$(dirname "$libvmm_so")
	find "$lib" -maxdepth 1 -name 'libvmm.so*' \( -type f -o -type l \) \
		-exec cp -P {} "$opt/lib/" \; || fail "cannot copy libvmm.so*"
	[ -e "$opt/lib/$(basename "$libvmm_so")" ] || fail "no $libvmm_so copied"
	cp "$vmctl" "$fcemu" "$opt/bin/" || fail "cannot copy vmctl, fc-emulator"
	cp "${tests[@]}" "$opt/tests/" || fail "cannot copy the test programs"
	cp "$src_root"/scripts/guest-dm/* "$opt/" || fail "cannot copy scripts/guest-dm"
	chmod 0755 "$opt"/init "$opt"/cases.sh
	umount "$mnt" || fail "cannot unmount $mnt"
	mnt=

	truncate -s 8M "$tmp_dir/results.img" || fail "cannot make the results disk"
	printf '%s\n' "$MAGIC" | dd of="$tmp_dir/results.img" conv=notrunc \
		status=none || fail "cannot write the results disk's header"
}

run_guest() {
	local started=$SECONDS

	note "booting: $BOOT_ARGS"
	qemu-system-x86_64 -M microvm -m 1024 -smp 2 -nodefaults -nographic \
		-no-reboot -nic none -serial stdio \
		-kernel "$image_dir/vmlinux" -initrd "$image_dir/initrd.img" \
		-append "$BOOT_ARGS" \
		-drive "id=root,file=$tmp_dir/rootfs.ext4,format=raw,if=none" \
		-device virtio-blk-device,drive=root \
		-drive "id=results,file=$tmp_dir/results.img,format=raw,if=none" \
		-device virtio-blk-device,drive=results \
		</dev/null >"$tmp_dir/console.log" 2>&1 &
	qemu_pid=$!
	while kill -0 "$qemu_pid" 2>/dev/null; do
		if [ $((SECONDS - started)) -ge "$GUEST_TIMEOUT" ]; then
			kill -KILL "$qemu_pid" 2>/dev/null
			wait "$qemu_pid" 2>/dev/null
			qemu_pid=
			tail -n 60 "$tmp_dir/console.log" >&2
			fail "the guest did not finish within $GUEST_TIMEOUT s (console tail above)"
		fi
		sleep 1
	done
	wait "$qemu_pid"
	note "QEMU exited with status $? after $((SECONDS - started)) s"
	qemu_pid=
}

# Reads the results disk; the guest's log is shown on failure (its tail)
# or, with VERBOSE=1, always.
report() {
	local res=$tmp_dir/results.txt status

	tr -d '\000' <"$tmp_dir/results.img" >"$res"
	status=$(sed -n '2s/^status //p' "$res")
	if [ -z "$status" ]; then
		tail -n 60 "$tmp_dir/console.log" >&2
		fail "the guest wrote no result (console tail above)"
	fi
	grep -q '^LIBVMM-DM-END$' "$res" ||
		note "warning: the guest's log on the results disk is incomplete"
	if [ "$status" != 0 ]; then
		sed -e '1,2d' -e '/^LIBVMM-DM-END$/d' "$res" | tail -n 80 >&2
		note "the guest's failed checks:"
		grep -E '^FAIL:|:[0-9]+:[EF]:' "$res" >&2
		fail "the guest's job failed with status $status (log tail and failures above)"
	fi
	if [ "${VERBOSE:-0}" = 1 ]; then
		sed -e '1,2d' -e '/^LIBVMM-DM-END$/d' "$res" >&2
	fi
	grep -E '^(ok|FAIL|SKIP|KNOWN|NOTE):' "$res" >&2
	note "PASS: $(grep -c '^ok:' "$res") checks passed in the guest"
}

main() {
	[ $# -ge 6 ] || usage_fail
	src_root=$1
	image_dir=${LIBVMM_IMAGE_DIR:-$2}
	libvmm_so=$3
	vmctl=$4
	fcemu=$5
	shift 5
	tests=("$@")

	check_host
	tmp_dir=$(mktemp -d /var/tmp/libvmm-dm-guest.XXXXXX) || fail "mktemp"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	ensure_image
	prepare_root
	run_guest
	report
}

main "$@"
