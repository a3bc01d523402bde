#!/bin/sh
# Instruction counts of one VM's create, start and kill, from callgrind:
# stable across runs on a noisy machine, unlike times. Children (e2fsck,
# ssh-keygen, the emulator) are not traced: the figures are the calling
# process's, the library and what it calls in-process (libc, libcurl,
# libext2fs, yajl).
#
# Usage: bench-callgrind.sh BENCH-ONE-START FC-EMULATOR
# SPDX-License-Identifier: MIT
set -eu
prog=$1
export FC_EMULATOR=$2

if ! command -v valgrind >/dev/null 2>&1 ||
   ! command -v callgrind_annotate >/dev/null 2>&1; then
    echo "skipped: valgrind (callgrind, callgrind_annotate) is not installed"
    exit 77
fi
dir=$(mktemp -d /tmp/libvmm-cg-XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM

# Forked children (the keeper, before e2fsck's exec) stay under valgrind
# and dump profiles of their own: %p keeps them apart from ours.
valgrind --tool=callgrind --trace-children=no --collect-atstart=no \
    --toggle-collect=measured_create --toggle-collect=measured_start \
    --toggle-collect=measured_kill --callgrind-out-file="$dir/cg.out.%p" \
    "$prog" "$dir" >"$dir/prog.log" 2>"$dir/valgrind.log" &
vg=$!
rc=0
wait "$vg" || rc=$?
if [ "$rc" -ne 0 ] || [ ! -s "$dir/cg.out.$vg" ]; then
    # pidfd_open (434) missing from valgrind is not fatal: the library
    # falls back to /proc. Another unemulated syscall would show here.
    grep -E 'unhandled .* syscall' "$dir/valgrind.log" | sort -u >&2 || :
    cat "$dir/prog.log" "$dir/valgrind.log" >&2
    exit 1
fi
mv "$dir/cg.out.$vg" "$dir/cg.out"
callgrind_annotate --inclusive=yes --threshold=100 "$dir/cg.out" \
    >"$dir/incl.txt"
callgrind_annotate --inclusive=no --threshold=100 "$dir/cg.out" \
    >"$dir/self.txt"

# "123,456 (12.34%)  file:function [object]" -> the count, without commas.
count() {
    grep -E "[: ]$1( |\$)" "$2" | head -n 1 | awk '{gsub(",", "", $1); print $1}'
}
total=$(grep -E '^[0-9,]+ .*PROGRAM TOTALS' "$dir/self.txt" |
        awk '{gsub(",", "", $1); print $1}')
create=$(count measured_create "$dir/incl.txt")
start=$(count measured_start "$dir/incl.txt")
kill=$(count measured_kill "$dir/incl.txt")
# Instructions executed in libvmm's own code (not libc, libcurl, ...).
own=$(grep -E 'libvmm\.so' "$dir/self.txt" |
      awk '{gsub(",", "", $1); s += $1} END {print s + 0}')

echo "callgrind, one VM (no network, copy overlay of a 32 MiB base), the"
echo "calling process only (e2fsck, ssh-keygen, the emulator not traced):"
printf '  vmm_create: %12s Ir (inclusive)\n' "${create:-?}"
printf '  vmm_start:  %12s Ir (inclusive)\n' "${start:-?}"
printf '  vmm_kill:   %12s Ir (inclusive)\n' "${kill:-?}"
printf '  all three:  %12s Ir, of which in libvmm.so itself: %s Ir\n' \
    "${total:-?}" "$own"
echo "  libvmm functions by inclusive Ir (with what they call):"
grep -F 'libvmm.so' "$dir/incl.txt" | head -n 12 |
    sed -E 's|^ *([0-9,]+) +\( *([0-9.]+%)\) +.*/(lib/[^ ]+) \[.*$|\1 \2 \3|' |
    awk '{gsub(",", "", $1); printf "  %12s Ir %7s  %s\n", $1, $2, $3}'
