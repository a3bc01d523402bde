#!/bin/bash
# scripts/guest/extract-vmlinux against bzImages made here: a small ELF
# kernel stand-in packed with gzip and with lz4's legacy format (Debian's),
# and broken inputs, each of which must fail naming what is wrong and
# leave no output or temporary file behind.
# Usage: extract-vmlinux.sh SCRIPT
set -u
script=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# make_elf OUT MACHINE FILESZ: an ELF64 file with one segment of FILESZ
# bytes at offset 4096 (the file holds 8192 bytes of it).
make_elf() {
	python3 - "$1" "$2" "$3" <<'EOF'
import struct, sys
out, machine, filesz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
header = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x1000000,
                             64, 0, 0, 64, 56, 1, 64, 0, 0)
phdr = struct.pack("<IIQQQQQQ", 1, 5, 4096, 0x1000000, 0x1000000,
                   filesz, filesz, 4096)
body = header + phdr
body += bytes(4096 - len(body)) + bytes((i * 7) % 251 for i in range(8192))
open(out, "wb").write(body)
EOF
}

# make_bzimage OUT PAYLOAD [PROTOCOL]: a boot sector and setup (2 sectors)
# with the boot protocol header pointing at PAYLOAD, followed by 4 bytes
# of padding as the kernel's build appends.
make_bzimage() {
	python3 - "$1" "$2" "${3:-0x20f}" <<'EOF'
import struct, sys
out, payload_path, protocol = sys.argv[1], sys.argv[2], int(sys.argv[3], 0)
payload = open(payload_path, "rb").read()
setup_sects = 2
head = bytearray((setup_sects + 1) * 512)
head[0x1f1] = setup_sects
head[0x202:0x206] = b"HdrS"
head[0x206:0x208] = struct.pack("<H", protocol)
head[0x248:0x24c] = struct.pack("<I", 64)      # payload_offset
head[0x24c:0x250] = struct.pack("<I", len(payload))
open(out, "wb").write(bytes(head) + bytes(64) + payload + b"\0\0\0\0")
EOF
}

# expect_ok NAME IMAGE ELF: extraction succeeds and gives back ELF.
expect_ok() {
	if ! "$script" "$2" "$work/out-$1" 2>"$work/err-$1"; then
		fail "$1: extraction failed: $(cat "$work/err-$1")"
	elif ! cmp -s "$3" "$work/out-$1"; then
		fail "$1: the extracted kernel differs from the one packed"
	else
		echo "ok: $1"
	fi
}

# expect_fail NAME IMAGE WORDS: extraction fails, says WORDS, leaves
# nothing behind.
expect_fail() {
	if "$script" "$2" "$work/out-$1" 2>"$work/err-$1"; then
		fail "$1: extraction of a bad image succeeded"
	elif ! grep -qF -- "$3" "$work/err-$1"; then
		fail "$1: message lacks \"$3\": $(cat "$work/err-$1")"
	elif compgen -G "$work/out-$1*" >/dev/null; then
		fail "$1: left $(echo "$work"/out-"$1"*) behind"
	else
		echo "ok: $1 ($(cat "$work/err-$1"))"
	fi
}

make_elf "$work/kernel.elf" 62 8192
gzip -9c "$work/kernel.elf" >"$work/kernel.gz"
make_bzimage "$work/gzip.bzImage" "$work/kernel.gz"
expect_ok gzip "$work/gzip.bzImage" "$work/kernel.elf"

if command -v lz4 >/dev/null; then
	lz4 -lq -9 -c "$work/kernel.elf" >"$work/kernel.lz4"
	make_bzimage "$work/lz4.bzImage" "$work/kernel.lz4"
	expect_ok lz4-legacy "$work/lz4.bzImage" "$work/kernel.elf"
else
	fail "lz4 is not installed (scripts/install-deps.sh installs it)"
fi

expect_fail missing "$work/no-such-file" "no such file"
printf 'not a kernel\n%.0s' $(seq 100) >"$work/text"
expect_fail not-a-bzimage "$work/text" "not an x86 bzImage"
make_bzimage "$work/old.bzImage" "$work/kernel.gz" 0x206
expect_fail old-protocol "$work/old.bzImage" "predates payload offsets"
head -c 2000 "$work/gzip.bzImage" >"$work/short.bzImage"
expect_fail truncated "$work/short.bzImage" "lies outside the file"
head -c 4096 /dev/zero >"$work/zeros"
make_bzimage "$work/unknown.bzImage" "$work/zeros"
expect_fail unknown-compression "$work/unknown.bzImage" "does not know"
make_elf "$work/arm.elf" 183 8192
gzip -c "$work/arm.elf" >"$work/arm.gz"
make_bzimage "$work/arm.bzImage" "$work/arm.gz"
expect_fail not-x86 "$work/arm.bzImage" "not an x86-64 ELF64"
make_elf "$work/cut.elf" 62 65536
gzip -c "$work/cut.elf" >"$work/cut.gz"
make_bzimage "$work/cut.bzImage" "$work/cut.gz"
expect_fail cut-short "$work/cut.bzImage" "cut short"
printf 'garbage%.0s' $(seq 600) | gzip -c >"$work/garbage.gz"
make_bzimage "$work/garbage.bzImage" "$work/garbage.gz"
expect_fail not-elf "$work/garbage.bzImage" "did not unpack to an ELF"

[ "$failures" -eq 0 ] || exit 1
