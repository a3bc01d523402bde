#!/bin/bash
# Installs everything libvmm needs to build and to run its tests from
# Debian's archive. Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(
    # build
    meson ninja-build pkg-config gcc g++ libc6-dev cmake
    libyajl-dev libcurl4-openssl-dev libdevmapper-dev libext2fs-dev
    comerr-dev check
    # run time: e2fsck for snapshot-prep, ssh for vmctl ssh, ip for tests
    e2fsprogs openssh-client iproute2 util-linux
    # tests: fixtures, the emulator's checks and its QEMU mode, guest images
    curl perl python3 python3-yaml qemu-system-x86 busybox-static cpio lz4
    debootstrap e2tools procps psmisc kmod
    # benchmarks
    valgrind
)

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (it calls apt-get)" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps.sh: all ${#packages[@]} packages present"
    exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
