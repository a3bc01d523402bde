#!/bin/bash
# Builds the guest images libvmm's end-to-end tests boot, from Debian's
# archive only, and caches them in one directory:
#
#   vmlinux       Debian 12's cloud kernel (linux-image-cloud-amd64) as the
#                 uncompressed ELF file Firecracker loads on x86_64
#                 (QEMU's microvm boots it through its PVH entry)
#   initrd.img    a busybox initramfs that loads the virtio, loop and
#                 device-mapper modules Firecracker kernels have built in,
#                 applies ip=, mounts root= and switches to /sbin/init
#   rootfs.ext4   Debian 12 (systemd, sshd, ifupdown), 2 GiB sparse ext4
#   packages.txt  the root filesystem's package versions, for the record
#   manifest      inputs and checksums; written last, so its presence and
#                 agreement with the files is what marks the cache valid
#
# A second run whose inputs (kernel version, package list, mirror, this
# script and scripts/guest/) are unchanged only verifies the checksums.
# The images are built in a temporary directory beside the output and
# renamed into place, so an interrupted build never leaves a valid-looking
# half image.  Needs root (debootstrap, mkfs with root-owned files).

set -euo pipefail

readonly SUITE=bookworm
readonly KERNEL_META=linux-image-cloud-amd64
readonly ROOTFS_SIZE=2G
readonly ROOTFS_PACKAGES=openssh-server,iproute2,ifupdown,systemd-sysv,udev,procps,iputils-ping
# The drivers Firecracker's guest kernels build in, in load order;
# virtio_ring must precede virtio.  Dependencies are added automatically.
readonly MODULES=(virtio_ring virtio virtio_mmio virtio_pci virtio_blk
	failover net_failover virtio_net loop dm-mod dm-snapshot)
readonly OPTIONAL_MODULES=(virtio_pci)
# Units that cost seconds of boot under emulation, or whose work makes no
# sense in a short-lived microVM cloned from one image.
readonly MASKED_UNITS=(getty@tty1.service getty-static.service
	apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
	e2scrub_all.timer e2scrub_reap.service fstrim.timer
	systemd-hwdb-update.service ldconfig.service systemd-firstboot.service)
# What the build and the boot tests need on the host.
readonly HOST_PACKAGES=(qemu-system-x86 busybox-static cpio debootstrap lz4
	e2fsprogs openssh-client iproute2)
readonly OUTPUTS=(vmlinux initrd.img rootfs.ext4 packages.txt)
readonly MANIFEST_FORMAT=2

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly script_dir
readonly guest_dir=$script_dir/guest
# shellcheck source=scripts/image-cache.sh
. "$script_dir/image-cache.sh"

out_dir=${LIBVMM_IMAGE_DIR:-/var/cache/libvmm/images}
force=0
mirror=${LIBVMM_DEBIAN_MIRROR:-}
work_dir=

log() {
	printf '%s build-guest-images: %s\n' "$(date +%T)" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

usage() {
	cat <<EOF
Usage: $0 [--out DIR] [--force] [--mirror URL]

Builds vmlinux, initrd.img and rootfs.ext4 for libvmm's end-to-end tests
into DIR (default: \$LIBVMM_IMAGE_DIR or /var/cache/libvmm/images).
A valid cache is only verified; --force rebuilds it.  The Debian mirror is
the one this machine's apt sources use for $SUITE, unless --mirror (or
\$LIBVMM_DEBIAN_MIRROR) names another.  Must run as root.
EOF
}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--out) [ $# -ge 2 ] || die "--out needs a directory"; out_dir=$2; shift ;;
		--out=*) out_dir=${1#--out=} ;;
		--force) force=1 ;;
		--mirror) [ $# -ge 2 ] || die "--mirror needs a URL"; mirror=$2; shift ;;
		--mirror=*) mirror=${1#--mirror=} ;;
		-h | --help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $1" ;;
		esac
		shift
	done
	[ -n "$out_dir" ] || die "the output directory must not be empty"
}

cleanup() {
	local status=$?

	if [ -n "$work_dir" ]; then
		remove_tree "$work_dir"
	fi
	if [ $status -ne 0 ]; then
		log "failed; $out_dir keeps its previous contents"
	fi
}

apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends "$@" ||
		{ apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; }
}

ensure_host_tools() {
	local missing=() cmd

	for cmd in qemu-system-x86_64 cpio debootstrap mkfs.ext4 e2fsck ssh \
		ssh-keygen ip; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
	done
	# The initramfs needs a busybox that runs without a libc beside it.
	if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null |
		grep -q 'ok installed'; then
		missing+=(busybox-static)
	fi
	[ ${#missing[@]} -eq 0 ] && return 0

	log "missing ${missing[*]}; installing ${HOST_PACKAGES[*]}"
	apt_install "${HOST_PACKAGES[@]}" >&2 ||
		die "cannot install ${HOST_PACKAGES[*]}"
}

# The main archive's URI for $SUITE, as this machine's apt sources name it.
find_mirror() {
	# shellcheck disable=SC2016 # apt expands these, not the shell
	apt-get indextargets --format '$(REPO_URI) $(CODENAME)' \
		'Identifier: Packages' 2>/dev/null |
		awk -v s="$SUITE" '$2 == s { sub("/+$", "", $1); print $1; exit }'
}

resolve_inputs() {
	if [ -z "$mirror" ]; then
		mirror=$(find_mirror)
		if [ -z "$mirror" ]; then
			apt-get update -q >&2 || die "apt-get update failed"
			mirror=$(find_mirror)
		fi
		[ -n "$mirror" ] ||
			die "no apt source on this machine serves Debian $SUITE; pass --mirror"
	fi

	kernel_pkg=$(apt-cache depends "$KERNEL_META" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
	if [ -z "$kernel_pkg" ]; then
		apt-get update -q >&2 || die "apt-get update failed"
		kernel_pkg=$(apt-cache depends "$KERNEL_META" 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
	fi
	[ -n "$kernel_pkg" ] || die "apt knows no $KERNEL_META"
	kernel_version=$(apt-cache policy "$kernel_pkg" |
		awk '$1 == "Candidate:" { print $2; exit }')
	case "$kernel_version" in
	"" | "(none)") die "apt has no candidate for $kernel_pkg" ;;
	esac
	kernel_release=${kernel_pkg#linux-image-}

	script_hash=$( (cd "$script_dir" &&
		find build-guest-images.sh image-cache.sh guest \
		-type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
		sha256sum | cut -d' ' -f1)
}

# The manifest's first part: everything the images are made from.
manifest_inputs() {
	echo "format $MANIFEST_FORMAT"
	echo "suite $SUITE"
	echo "mirror $mirror"
	echo "kernel $kernel_pkg $kernel_version"
	echo "packages $ROOTFS_PACKAGES"
	echo "modules ${MODULES[*]}"
	echo "masked ${MASKED_UNITS[*]}"
	echo "rootfs-size $ROOTFS_SIZE"
	echo "script-sha256 $script_hash"
}

build_kernel() {
	local stage=$work_dir/kernel

	log "fetching $kernel_pkg $kernel_version"
	mkdir -p "$stage/deb"
	(cd "$stage/deb" &&
		apt-get download -q -o APT::Sandbox::User=root \
			"$kernel_pkg=$kernel_version") >&2 ||
		die "cannot download $kernel_pkg=$kernel_version"
	dpkg -x "$stage"/deb/*.deb "$stage/tree" || die "cannot unpack $kernel_pkg"
	[ -f "$stage/tree/boot/vmlinuz-$kernel_release" ] ||
		die "$kernel_pkg has no boot/vmlinuz-$kernel_release"
	"$guest_dir/extract-vmlinux" "$stage/tree/boot/vmlinuz-$kernel_release" \
		"$work_dir/out/vmlinux" || die "cannot unpack the kernel of $kernel_pkg"
}

module_path() {
	find "$work_dir/kernel/tree/lib/modules/$kernel_release/kernel" \
		-name "$1.ko" -print -quit
}

# Appends $1 to the load order after the modules it depends on, as
# recorded in the "depends=" field of its .modinfo section.
add_module() {
	local name=$1 path deps dep

	case " ${load_order[*]} " in *" $name "*) return 0 ;; esac
	path=$(module_path "$name")
	if [ -z "$path" ]; then
		case " ${OPTIONAL_MODULES[*]} " in
		*" $name "*) log "kernel has no $name module; skipping it"; return 0 ;;
		esac
		die "kernel $kernel_release has no module $name (built in or compressed?)"
	fi
	deps=$(tr '\0' '\n' <"$path" | sed -n 's/^depends=//p' | head -n1)
	for dep in ${deps//,/ }; do
		add_module "$dep"
	done
	load_order+=("$name")
	cp "$path" "$work_dir/initramfs/lib/modules/$name.ko"
}

build_initramfs() {
	local stage=$work_dir/initramfs applet busybox mod
	local load_order=()

	log "building initrd.img"
	busybox=$(dpkg -L busybox-static | grep -m1 '/busybox$') ||
		die "busybox-static ships no busybox binary"
	case "$(LC_ALL=C ldd "$busybox" 2>&1)" in
	*"not a dynamic executable"*) ;;
	*) die "$busybox is not statically linked" ;;
	esac
	mkdir -p "$stage"/{bin,dev,proc,sys,newroot,lib/modules}
	cp "$busybox" "$stage/bin/busybox"
	for applet in $("$stage/bin/busybox" --list); do
		[ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
	done
	ln -s bin "$stage/sbin"
	install -m 0755 "$guest_dir/init" "$stage/init"

	for mod in "${MODULES[@]}"; do
		add_module "$mod"
	done
	printf '%s\n' "${load_order[@]}" >"$stage/lib/modules/load-order"
	log "initramfs modules: ${load_order[*]}"

	(cd "$stage" && find . -print0 | LC_ALL=C sort -z |
		cpio --null --create --format=newc --quiet --reproducible) |
		gzip -9n >"$work_dir/out/initrd.img" || die "cannot pack the initramfs"
}

mask_units() {
	local tree=$1 unit

	for unit in "${MASKED_UNITS[@]}"; do
		ln -sfn /dev/null "$tree/etc/systemd/system/$unit"
	done
	rm -f "$tree/etc/systemd/system/getty.target.wants/getty@tty1.service"
}

configure_rootfs() {
	local tree=$1

	# Every VM gets its own host keys from libvmm (or, failing that, from
	# libvmm-ssh-host-keys at boot); none may be shared through the image.
	rm -f "$tree"/etc/ssh/ssh_host_*
	# An empty machine-id makes systemd invent one per boot rather than
	# every clone of the image sharing the one debootstrap wrote.
	: >"$tree/etc/machine-id"
	rm -f "$tree/var/lib/dbus/machine-id"
	# debootstrap copies the build host's resolver configuration.
	: >"$tree/etc/resolv.conf"

	cp -a --no-preserve=ownership "$guest_dir/rootfs/." "$tree/"
	install -d -m 0700 "$tree/root/.ssh"
	mask_units "$tree"

	rm -rf "$tree"/var/cache/apt/archives/*.deb \
		"$tree"/var/cache/apt/*.bin "$tree"/var/lib/apt/lists/*_* \
		"$tree"/var/log/bootstrap.log
	find "$tree/var/log" -type f -name '*.log' -exec truncate -s 0 {} +
}

build_rootfs() {
	local tree=$work_dir/rootfs image=$work_dir/out/rootfs.ext4

	log "debootstrap $SUITE from $mirror (about a minute)"
	debootstrap --variant=minbase --components=main \
		--include="$ROOTFS_PACKAGES" "$SUITE" "$tree" "$mirror" \
		>"$work_dir/debootstrap.log" 2>&1 || {
		tail -n 20 "$work_dir/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	}
	# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
	chroot "$tree" dpkg-query -W -f='${Package} ${Version}\n' \
		>"$work_dir/out/packages.txt" || die "cannot list the rootfs packages"
	configure_rootfs "$tree"

	log "making rootfs.ext4 ($ROOTFS_SIZE, sparse)"
	truncate -s "$ROOTFS_SIZE" "$image"
	mkfs.ext4 -q -F -L libvmm-root -d "$tree" "$image" ||
		die "mkfs.ext4 -d failed"
	e2fsck -fn "$image" >"$work_dir/e2fsck.log" 2>&1 || {
		cat "$work_dir/e2fsck.log" >&2
		die "the new rootfs.ext4 fails e2fsck"
	}
}

main() {
	local start=$SECONDS

	parse_args "$@"
	[ "$(id -u)" -eq 0 ] ||
		die "must run as root (debootstrap, device nodes, root-owned files)"
	mkdir -p "$out_dir" || die "cannot create $out_dir"
	out_dir=$(cd "$out_dir" && pwd -P)

	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	cache_lock "$out_dir"

	ensure_host_tools
	resolve_inputs
	if [ $force -eq 0 ] && cache_is_valid "$out_dir"; then
		log "$out_dir is up to date ($kernel_pkg $kernel_version);" \
			"verified in $((SECONDS - start)) s"
		return 0
	fi

	work_dir=$(mktemp -d "$out_dir/.build.XXXXXX")
	mkdir "$work_dir/out"
	build_kernel
	build_initramfs
	build_rootfs
	cache_publish "$out_dir" "$work_dir/out"
	log "built ${OUTPUTS[*]} in $out_dir in $((SECONDS - start)) s"
}

main "$@"
