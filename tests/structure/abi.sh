#!/bin/bash
# The exported dynamic symbols of libvmm.so must be exactly those named in
# the version script, each must start with vmm_, and each must be declared
# with VMM_EXPORT in a public header (and the other way round).
# Usage: abi.sh LIBVMM_SO VERSION_SCRIPT HEADER...
set -u
so=$1 map=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

nm -D --defined-only "$so" | awk '$2 ~ /^[TDBR]$/ { print $3 }' |
    sed 's/@.*//' | sort -u >"$work/exported"
sed -n '/global:/,/local:/p' "$map" | grep -Eo '^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*;' |
    tr -d ' \t;' | sort -u >"$work/script"
grep -hv '^#' "$@" | tr '\n' ' ' | grep -Eo 'VMM_EXPORT[^;{]*\(' |
    grep -Eo '[A-Za-z_][A-Za-z0-9_]*[[:space:]]*\($' | tr -d ' (' |
    sort -u >"$work/declared"

report() {
    if [ -s "$3" ]; then
        echo "FAIL: $1 but not $2:"
        sed 's/^/    /' "$3"
        failed=1
    fi
}
comm -23 "$work/exported" "$work/script" >"$work/d"; report exported "in the version script" "$work/d"
comm -13 "$work/exported" "$work/script" >"$work/d"; report "in the version script" exported "$work/d"
comm -23 "$work/script" "$work/declared" >"$work/d"; report "in the version script" "declared VMM_EXPORT" "$work/d"
comm -13 "$work/script" "$work/declared" >"$work/d"; report "declared VMM_EXPORT" "in the version script" "$work/d"
grep -v '^vmm_' "$work/exported" >"$work/d"; report "exported" "prefixed vmm_" "$work/d"

[ -s "$work/exported" ] || { echo "FAIL: no exported symbol found in $so"; failed=1; }
[ "$failed" -eq 0 ] && echo "$(wc -l <"$work/exported") symbols: exported = version script = declared"
exit "$failed"
