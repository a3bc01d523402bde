#!/bin/bash
# The README's main job, start to finish, on a fresh Debian 12 machine (as
# root): install the dependencies, build libvmm and vmctl, build the guest
# images, then create a microVM, start it, and ask it over ssh for its host
# name, which libvmm patched into its disk before the boot.  The VM is
# stopped and deleted afterwards unless --keep is given.
#
# The VMM is a real firecracker from PATH when one runs and /dev/kvm can be
# opened, else the project's Firecracker API emulator in QEMU mode; the
# script says which.  Everything lives in one state directory and in the
# VM's own network namespace.  On failure the VMM's log tail is printed
# and the exit status is non-zero; Ctrl-C removes the VM.

set -uo pipefail

src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly src_dir

name=demo
state_dir=${LIBVMM_STATE_DIR:-/var/lib/libvmm}
build_dir=$src_dir/build
image_dir=${LIBVMM_IMAGE_DIR:-/var/cache/libvmm/images}
vmm_choice=auto
keep=0
ssh_timeout=120
# Under QEMU's software emulation the kernel must not calibrate its TSC
# against the PIT (it hangs about one boot in three there); under KVM
# Firecracker's usual arguments do.  libvmm adds root= and ip= itself.
readonly QEMU_BOOT_ARGS="console=ttyS0 reboot=k panic=1 tsc_early_khz=2000000"
readonly FC_BOOT_ARGS="console=ttyS0 reboot=k panic=1 pci=off"

vm_created=0
started=$SECONDS

say() {
	printf '%s run-main-job: %s\n' "$(date +%T)" "$*" >&2
}

usage() {
	cat <<EOF
Usage: $0 [OPTIONS]

Installs libvmm's dependencies, builds it, builds the guest images, then
creates and starts a microVM and prints the host name it answers with over
ssh (which must be the VM's name).  Run as root.

  --name NAME         the VM's name (default: $name)
  --state-dir DIR     libvmm's state directory (default: \$LIBVMM_STATE_DIR
                      or /var/lib/libvmm)
  --build-dir DIR     meson build directory (default: build; reused)
  --images DIR        guest image directory (default: \$LIBVMM_IMAGE_DIR
                      or /var/cache/libvmm/images)
  --vmm WHICH         auto (default), firecracker or emulator
  --timeout SECONDS   how long to wait for ssh in the guest (default 120)
  --keep              leave the VM running at the end
  -h, --help          this text
EOF
}

die() {
	say "error: $*"
	exit 1
}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--name) name=${2:?--name needs a value}; shift ;;
		--state-dir) state_dir=${2:?--state-dir needs a directory}; shift ;;
		--build-dir) build_dir=${2:?--build-dir needs a directory}; shift ;;
		--images) image_dir=${2:?--images needs a directory}; shift ;;
		--vmm) vmm_choice=${2:?--vmm needs auto, firecracker or emulator}; shift ;;
		--timeout) ssh_timeout=${2:?--timeout needs seconds}; shift ;;
		--keep) keep=1 ;;
		-h | --help) usage; exit 0 ;;
		*) usage >&2; say "unknown argument: $1"; exit 2 ;;
		esac
		shift
	done
	case "$vmm_choice" in
	auto | firecracker | emulator) ;;
	*) say "--vmm: '$vmm_choice' is not auto, firecracker or emulator"; exit 2 ;;
	esac
	[[ $ssh_timeout =~ ^[1-9][0-9]*$ ]] || { say "--timeout: '$ssh_timeout' is not a number of seconds"; exit 2; }
	case "$build_dir" in /*) ;; *) build_dir=$src_dir/$build_dir ;; esac
	case "$state_dir" in /*) ;; *) state_dir=$PWD/$state_dir ;; esac
	case "$image_dir" in /*) ;; *) image_dir=$PWD/$image_dir ;; esac
}

vmctl() {
	"$build_dir/tools/vmctl" --state-dir "$state_dir" "$@"
}

# The VMM's own lines and the guest's console, both in the VMM log.
show_log_tail() {
	local log=$state_dir/vms/$name/vmm.log
	[ -f "$log" ] || { say "no VMM log at $log"; return 0; }
	say "last lines of the VMM log $log (VMM messages and guest console):"
	tr -d '\r' <"$log" | tail -n 40 >&2
}

# Fails the job: the log tail, then exit 1 (the EXIT trap removes the VM
# unless --keep).
fail() {
	say "FAILED: $*"
	[ $vm_created -eq 1 ] && show_log_tail
	exit 1
}

# Removes the VM this run created.  --keep keeps it, also after a failure
# (to look into it), but never after Ctrl-C or SIGTERM.
cleanup() {
	local status=$? pid left
	trap - EXIT INT TERM
	if [ $vm_created -eq 1 ] && [ $keep -eq 1 ] && [ $status -ne 130 ] &&
		[ $status -ne 143 ]; then
		say "keeping VM $name (--keep); remove it with:" \
			"$build_dir/tools/vmctl --state-dir $state_dir delete --force $name"
	elif [ $vm_created -eq 1 ]; then
		say "deleting VM $name"
		(vmctl delete --force "$name") >/dev/null 2>"$state_dir/.main-job.err" ||
			say "warning: vmctl delete --force $name: $(cat "$state_dir/.main-job.err")"
		rm -f "$state_dir/.main-job.err"
		# A VMM that outlived the delete (an interrupted start) is
		# found by its API socket path, reported, and ended by pid.
		left=$(pgrep -f -- "$state_dir/vms/$name/api.sock" || true)
		for pid in $left; do
			say "warning: VMM pid $pid of $name outlived the delete; killing it"
			kill -9 "$pid" 2>/dev/null
		done
	fi
	if [ $status -eq 0 ]; then
		say "done in $((SECONDS - started)) s"
	fi
	exit "$status"
}

step_deps() {
	local t0=$SECONDS
	say "installing dependencies (scripts/install-deps.sh)"
	"$src_dir/scripts/install-deps.sh" >&2 || die "scripts/install-deps.sh failed"
	say "dependencies ready in $((SECONDS - t0)) s"
}

step_build() {
	local t0=$SECONDS
	if [ -f "$build_dir/build.ninja" ]; then
		say "building in $build_dir (reused)"
	else
		say "configuring $build_dir"
		meson setup "$build_dir" "$src_dir" >&2 || die "meson setup $build_dir failed"
	fi
	meson compile -C "$build_dir" >&2 || die "building in $build_dir failed"
	[ -x "$build_dir/tools/vmctl" ] || die "the build made no $build_dir/tools/vmctl"
	say "built in $((SECONDS - t0)) s"
}

step_images() {
	local t0=$SECONDS
	say "building guest images in $image_dir (about a minute the first time)"
	LIBVMM_IMAGE_DIR=$image_dir "$src_dir/scripts/build-guest-images.sh" ||
		die "scripts/build-guest-images.sh failed"
	say "guest images ready in $((SECONDS - t0)) s"
}

# Sets vmm_path, kernel and boot_args for a real firecracker or the
# emulator, and says which it picked and why.
pick_vmm() {
	local fc why=""
	fc=$(command -v firecracker || true)
	if [ -z "$fc" ]; then
		why="no firecracker in PATH"
	elif ! (exec 3<>/dev/kvm) 2>/dev/null; then
		why="firecracker is $fc, but /dev/kvm cannot be opened for reading and writing"
	elif ! timeout 10 "$fc" --version >/dev/null 2>&1; then
		why="$fc --version fails"
	fi
	if [ "$vmm_choice" = firecracker ] && [ -n "$why" ]; then
		die "--vmm firecracker: $why"
	fi
	if [ "$vmm_choice" = emulator ]; then
		why="--vmm emulator"
	fi

	if [ -z "$why" ]; then
		vmm_path=$fc
		say "VMM: real Firecracker, $fc ($("$fc" --version 2>&1 | head -n 1))"
		kernel=$image_dir/vmlinux
		boot_args=$FC_BOOT_ARGS
		return 0
	fi

	vmm_path=$build_dir/tests/emulator/fc-emulator
	[ -x "$vmm_path" ] ||
		die "$why, and the emulator $vmm_path was not built (meson option tests=false?)"
	command -v qemu-system-x86_64 >/dev/null 2>&1 ||
		die "$why, and qemu-system-x86_64 is missing for the emulator's QEMU mode"
	say "VMM: the Firecracker API emulator in QEMU mode, $vmm_path ($why)"
	export FCEMU_QEMU=1
	kernel=$image_dir/vmlinux
	boot_args=$QEMU_BOOT_ARGS
}

step_vm() {
	local t0 answer state err_file=$state_dir/.main-job.ssh
	export LIBVMM_FIRECRACKER=$vmm_path

	mkdir -p "$state_dir" || die "cannot create $state_dir"
	if [ -d "$state_dir/vms/$name" ]; then
		die "a VM named $name already exists in $state_dir (kept by an" \
			"earlier --keep?); remove it with: $build_dir/tools/vmctl" \
			"--state-dir $state_dir delete --force $name, or pass --name"
	fi

	say "creating VM $name in $state_dir, in its own network namespace"
	vm_created=1
	vmctl -v create "$name" --kernel "$kernel" --initrd "$image_dir/initrd.img" \
		--rootfs "$image_dir/rootfs.ext4" --netns --boot-args "$boot_args" ||
		fail "vmctl create $name"

	t0=$SECONDS
	say "starting $name"
	vmctl -v start "$name" || fail "vmctl start $name"

	say "waiting for sshd in the guest (up to $ssh_timeout s)"
	# A subshell: a redirected function call would keep the shell's own
	# stderr pointed at the file while an interrupt's trap runs.
	while ! (vmctl ssh "$name" -- true) 2>"$err_file"; do
		state=$(vmctl show "$name" --json 2>/dev/null |
			sed -n 's/^ *"state": "\(.*\)",$/\1/p')
		[ "$state" = running ] ||
			fail "$name is '$state' while waiting for ssh: $(tail -n 1 "$err_file")"
		[ $((SECONDS - t0)) -lt "$ssh_timeout" ] ||
			fail "no ssh answer from $name within $ssh_timeout s: $(tail -n 1 "$err_file")"
		sleep 2
	done
	rm -f "$err_file"
	say "ssh answers $((SECONDS - t0)) s after the start"

	say "vmctl ssh $name -- cat /etc/hostname"
	answer=$(vmctl ssh "$name" -- cat /etc/hostname) ||
		fail "vmctl ssh $name -- cat /etc/hostname"
	printf '%s\n' "$answer"
	[ "$answer" = "$name" ] ||
		fail "the guest's host name is '$answer', expected '$name'"
	say "the guest answers with its VM name, $name"

	if [ $keep -eq 1 ]; then
		say "log in with: $build_dir/tools/vmctl --state-dir $state_dir ssh $name"
		return 0
	fi
	t0=$SECONDS
	vmctl -v stop "$name" || fail "vmctl stop $name"
	vmctl delete "$name" || fail "vmctl delete $name"
	vm_created=0
	say "stopped and deleted $name in $((SECONDS - t0)) s"
}

main() {
	parse_args "$@"
	[ "$(id -u)" -eq 0 ] || die "run as root (packages, network namespaces, taps)"
	trap cleanup EXIT
	trap 'say "interrupted"; exit 130' INT
	trap 'say "terminated"; exit 143' TERM

	step_deps
	step_build
	step_images
	pick_vmm
	step_vm
}

main "$@"
