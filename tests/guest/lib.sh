# shellcheck shell=bash
# Shared by the guest image tests: finding the images, skipping, QEMU.
# Sourced, not run; the sourcing script sets test_name first.

readonly SKIP=77

test_name=${test_name:-guest-test}
image_dir=${LIBVMM_IMAGE_DIR:-/var/cache/libvmm/images}
tmp_dir=
qemu_pid=

note() {
	printf '%s %s: %s\n' "$(date +%T)" "$test_name" "$*" >&2
}

skip() {
	note "SKIP: $*"
	exit $SKIP
}

fail() {
	note "FAIL: $*"
	exit 1
}

# Arguments common to every test: --images DIR overrides the image
# directory.
parse_common_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--images) image_dir=${2:?--images needs a directory}; shift ;;
		--images=*) image_dir=${1#--images=} ;;
		*) echo "usage: $0 [--images DIR]" >&2; exit 2 ;;
		esac
		shift
	done
}

require_images() {
	local name

	[ -d "$image_dir" ] ||
		skip "no image directory $image_dir (run scripts/build-guest-images.sh)"
	for name in vmlinux initrd.img rootfs.ext4 manifest; do
		[ -f "$image_dir/$name" ] ||
			skip "$image_dir/$name is missing (run scripts/build-guest-images.sh)"
	done
}

require_tools() {
	local tool

	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 ||
			skip "$tool is not installed"
	done
}

# Ends the QEMU this test started, by its own pid only.
stop_qemu() {
	[ -n "$qemu_pid" ] || return 0
	if kill -0 "$qemu_pid" 2>/dev/null; then
		kill -TERM "$qemu_pid" 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$qemu_pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$qemu_pid" 2>/dev/null
	fi
	wait "$qemu_pid" 2>/dev/null
	qemu_pid=
}

# Prints the last lines of the guest's serial console.
show_console() {
	[ -f "$tmp_dir/console.log" ] || return 0
	echo "----- last lines of the guest console -----" >&2
	tail -n "${1:-40}" "$tmp_dir/console.log" | tr -d '\r' >&2
	echo "-------------------------------------------" >&2
}
