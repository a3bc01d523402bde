#!/bin/bash
# Compiles every public header on its own, as strict C99 and as C++, so
# that no header depends on another being included first or on GNU C.
# Usage: headers.sh SOURCE_INCLUDE_DIR BUILD_INCLUDE_DIR HEADER...
set -u
src_inc=$1 build_inc=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

for header in "$@"; do
    name=libvmm/$(basename "$header")
    printf '#include <%s>\n#include <%s>\nint libvmm_header_test;\n' \
        "$name" "$name" >"$work/t.c"
    cp "$work/t.c" "$work/t.cc"
    if ! cc -std=c99 -Wall -Wextra -pedantic -Werror -I"$src_inc" \
            -I"$build_inc" -c "$work/t.c" -o "$work/t.o"; then
        echo "FAIL: $name does not compile alone as C99"
        failed=1
    fi
    if ! c++ -std=c++11 -Wall -Wextra -pedantic -Werror -I"$src_inc" \
            -I"$build_inc" -c "$work/t.cc" -o "$work/t.o"; then
        echo "FAIL: $name does not compile alone as C++"
        failed=1
    fi
    if awk -v f="$name" '{ gsub(/\t/, "        ") } length > 80 {
            print f ":" FNR ": longer than 80 columns"; bad = 1 }
            END { exit bad ? 0 : 1 }' "$header"; then
        failed=1
    fi
done
[ "$failed" -eq 0 ] && echo "$# headers compile alone as C99 and C++"
exit "$failed"
