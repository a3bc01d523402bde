#!/bin/bash
# Builds the root filesystem of the dm-snapshot guest test (tests/dm-guest)
# and caches it beside the end-to-end images:
#
#   dm-test/rootfs.ext4   the Debian root filesystem of
#                         scripts/build-guest-images.sh, plus the run-time
#                         libraries and tools libvmm and its test programs
#                         need (libdevmapper, libext2fs, e2fsprogs, libcurl,
#                         yajl, subunit for Check), 2 GiB sparse ext4
#   dm-test/packages.txt  its package versions, for the record
#   dm-test/manifest      inputs and checksums, written last
#
# The kernel and initramfs are the end-to-end ones (vmlinux, initrd.img);
# the initramfs already loads loop, dm-mod and dm-snapshot.  The project's
# own programs are not in this image: the test copies it per run and puts
# the freshly built ones in the copy.
#
# The packages are added by apt-get in a chroot of a loop-mounted copy of
# the base image: nothing boots on the host.  A second run with unchanged
# inputs (the base image's manifest, the package list, this script) only
# verifies the checksums.  Needs root.

set -euo pipefail

readonly PACKAGES=(libdevmapper1.02.1 dmsetup libext2fs2 e2fsprogs libcurl4
	libyajl2 libcom-err2 libsubunit0 util-linux mount kmod procps)
readonly OUTPUTS=(rootfs.ext4 packages.txt)
readonly MANIFEST_FORMAT=1

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly script_dir
# shellcheck source=scripts/image-cache.sh
. "$script_dir/image-cache.sh"

out_dir=${LIBVMM_IMAGE_DIR:-/var/cache/libvmm/images}
force=0
base_args=()
work_dir=
mnt=

log() {
	printf '%s build-dm-test-image: %s\n' "$(date +%T)" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

usage() {
	cat <<EOF
Usage: $0 [--out DIR] [--force] [--mirror URL]

Makes sure DIR holds the end-to-end guest images (by running
build-guest-images.sh, which only verifies a valid cache), then builds
DIR/dm-test/rootfs.ext4 from DIR/rootfs.ext4 with the libraries libvmm's
test programs need.  DIR defaults to \$LIBVMM_IMAGE_DIR or
/var/cache/libvmm/images.  --force rebuilds the dm-test image (not the
base images); --mirror is passed to build-guest-images.sh.  Must run as
root.
EOF
}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--out) [ $# -ge 2 ] || die "--out needs a directory"; out_dir=$2; shift ;;
		--out=*) out_dir=${1#--out=} ;;
		--force) force=1 ;;
		--mirror) [ $# -ge 2 ] || die "--mirror needs a URL"
			base_args+=(--mirror "$2"); shift ;;
		--mirror=*) base_args+=("$1") ;;
		-h | --help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $1" ;;
		esac
		shift
	done
	[ -n "$out_dir" ] || die "the output directory must not be empty"
}

# Unmounts everything below $mnt (deepest first), then $mnt itself, whose
# loop device goes with it (mount -o loop sets autoclear); safe to call
# twice.
unmount_all() {
	local m

	if [ -n "$mnt" ]; then
		awk -v d="$mnt" '$5 == d || index($5, d "/") == 1 { print $5 }' \
			/proc/self/mountinfo | sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" ||
				log "warning: cannot unmount $m"
		done
	fi
}

cleanup() {
	local status=$?

	unmount_all
	if [ -n "$work_dir" ]; then
		remove_tree "$work_dir"
	fi
	if [ $status -ne 0 ]; then
		log "failed; $out_dir/dm-test keeps its previous contents"
	fi
}

script_hash() {
	cat "$script_dir/build-dm-test-image.sh" "$script_dir/image-cache.sh" |
		sha256sum | cut -d' ' -f1
}

manifest_inputs() {
	echo "format $MANIFEST_FORMAT"
	echo "base-manifest $(sha256sum <"$out_dir/manifest" | cut -d' ' -f1)"
	echo "packages ${PACKAGES[*]}"
	echo "script-sha256 $(script_hash)"
}

# apt-get in the chroot: its own sources (debootstrap's), the host's
# resolver for the duration, no service started by a maintainer script.
install_packages() {
	local tree=$1

	for m in proc sys dev; do
		mount --bind "/$m" "$tree/$m" || die "cannot bind /$m into the chroot"
	done
	cp /etc/resolv.conf "$tree/etc/resolv.conf" 2>/dev/null || true
	printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
	chmod 0755 "$tree/usr/sbin/policy-rc.d"

	log "apt-get install ${PACKAGES[*]} (in a chroot of the copy)"
	if ! chroot "$tree" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
		LC_ALL=C.UTF-8 sh -c 'apt-get update -q &&
			apt-get install -y -q --no-install-recommends "$@" &&
			apt-get clean' sh "${PACKAGES[@]}" \
		>"$work_dir/apt.log" 2>&1; then
		tail -n 20 "$work_dir/apt.log" >&2
		die "apt-get in the chroot failed (log above)"
	fi
	# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
	chroot "$tree" dpkg-query -W -f='${Package} ${Version}\n' \
		>"$work_dir/out/packages.txt" || die "cannot list the packages"

	rm -f "$tree/usr/sbin/policy-rc.d"
	: >"$tree/etc/resolv.conf"
	rm -rf "$tree"/var/lib/apt/lists/*_* "$tree"/var/cache/apt/*.bin
	find "$tree/var/log" -type f -name '*.log' -exec truncate -s 0 {} +
	unmount_all
}

build() {
	local image=$work_dir/out/rootfs.ext4

	log "copying $out_dir/rootfs.ext4"
	cp --sparse=always --reflink=auto "$out_dir/rootfs.ext4" "$image" ||
		die "cannot copy the base rootfs.ext4"
	mnt=$work_dir/mnt
	mkdir "$mnt"
	mount -t ext4 -o loop "$image" "$mnt" || die "cannot mount $image"
	install_packages "$mnt"

	e2fsck -fy "$image" >"$work_dir/e2fsck.log" 2>&1 || {
		# 1: corrected (e.g. the orphan list); anything above fails.
		[ $? -le 1 ] || { cat "$work_dir/e2fsck.log" >&2
			die "the new rootfs.ext4 fails e2fsck"; }
	}
}

main() {
	local start=$SECONDS

	parse_args "$@"
	[ "$(id -u)" -eq 0 ] || die "must run as root (loop mount, chroot)"
	"$script_dir/build-guest-images.sh" --out "$out_dir" "${base_args[@]}" ||
		die "the base guest images are not available"
	out_dir=$(cd "$out_dir" && pwd -P)
	dm_dir=$out_dir/dm-test
	mkdir -p "$dm_dir" || die "cannot create $dm_dir"

	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	cache_lock "$dm_dir"

	if [ $force -eq 0 ] && cache_is_valid "$dm_dir"; then
		log "$dm_dir is up to date; verified in $((SECONDS - start)) s"
		return 0
	fi
	work_dir=$(mktemp -d "$dm_dir/.build.XXXXXX")
	mkdir "$work_dir/out"
	build
	cache_publish "$dm_dir" "$work_dir/out"
	log "built $dm_dir/rootfs.ext4 in $((SECONDS - start)) s"
}

main "$@"
