#!/bin/bash
# Installs the build into a temporary destdir and builds the examples from
# the installed headers and libvmm.pc alone, then runs them against the
# installed library.
# Usage: install.sh BUILD_DIR SANITIZE EXAMPLE.c...
# SANITIZE is meson's b_sanitize: the examples must link the same runtime.
set -eu
build=$1 sanitize=$2
shift 2
extra=()
[ "$sanitize" = none ] || extra=(-fsanitize="$sanitize")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

meson install -C "$build" --destdir "$work/root" --no-rebuild --quiet >/dev/null
pc=$(find "$work/root" -name libvmm.pc | head -n 1)
[ -n "$pc" ] || { echo "FAIL: libvmm.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$work/root
libdir=$(dirname "$(dirname "$pc")")

for example in "$@"; do
    name=$(basename "$example" .c)
    # shellcheck disable=SC2046
    cc -std=c99 -Wall -Wextra -Werror "${extra[@]}" -o "$work/$name" "$example" \
        $(pkg-config --cflags --libs libvmm)
    LD_LIBRARY_PATH=$libdir "$work/$name" >"$work/$name.out"
    ldd_lib=$(LD_LIBRARY_PATH=$libdir ldd "$work/$name" | awk '/libvmm/ { print $3 }')
    case $ldd_lib in
        "$work"/root/*) ;;
        *) echo "FAIL: $name did not run against the installed library ($ldd_lib)"; exit 1 ;;
    esac
    echo "$name: $(head -n 1 "$work/$name.out")"
done

# The static library, with the shared libraries libvmm.pc says it needs,
# where the build installs one (default_library is not shared).
if [ ! -f "$libdir/libvmm.a" ]; then
    echo "no libvmm.a installed: the static library was not built"
    exit 0
fi
# It defines no global symbol libvmm.so does not export: neither internal
# functions nor a bundled libcurl may meet the linking program's own.
extra_globals=$(nm -g --defined-only "$libdir/libvmm.a" |
    awk 'NF == 3 { print $3 }' | grep -v '^vmm_' | head -n 5)
if [ -n "$extra_globals" ]; then
    echo "FAIL: libvmm.a defines global symbols besides vmm_*: $extra_globals"
    exit 1
fi
example=$1
name=$(basename "$example" .c)-static
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror "${extra[@]}" -o "$work/$name" "$example" \
    $(pkg-config --cflags libvmm) "$libdir/libvmm.a" \
    $(pkg-config --libs $(pkg-config --print-requires-private libvmm)) -pthread
"$work/$name" >"$work/$name.out"
if ldd "$work/$name" | grep -q libvmm; then
    echo "FAIL: $name is linked against a shared libvmm"
    exit 1
fi
echo "$name: $(head -n 1 "$work/$name.out")"
