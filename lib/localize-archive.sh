#!/bin/sh
# Usage: localize-archive.sh IN.a OUT.a VERSION_SCRIPT
#
# Makes the installed libvmm.a export what libvmm.so exports and nothing
# else: its objects (the bundled libcurl's among them) are linked into one
# relocatable object whose global symbols, but for those the version script
# lists, become local. A program linking libvmm.a statically then meets
# neither libvmm's internal functions nor a second libcurl, and keeps its
# own.
set -eu
in=$1 out=$2 map=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sed -n 's/^[[:space:]]*\(vmm_[A-Za-z0-9_]*\);.*/\1/p' "$map" >"$tmp/keep"
[ -s "$tmp/keep" ] || { echo "localize-archive: no vmm_ symbols in $map" >&2; exit 1; }
${LD:-ld} -r -o "$tmp/libvmm.o" --whole-archive "$in"
${OBJCOPY:-objcopy} --keep-global-symbols="$tmp/keep" "$tmp/libvmm.o"
rm -f "$out"
${AR:-ar} rcs "$out" "$tmp/libvmm.o"
