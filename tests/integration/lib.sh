# Shared set-up for vmctl's integration tests; sourced, not run.
#
# Usage of a test: bash TEST.sh VMCTL FC_EMULATOR SOURCE_ROOT
#
# Everything a test makes lives in one temporary directory ($T): the state
# directory, the kernel and rootfs, the emulator's request trace. VM names
# and network namespaces carry a prefix unique to the test run ($P), so the
# clean-up trap removes exactly what this run made and nothing else.
# Every VM that gets a tap lives in a network namespace (its own, or one
# this test made), so the host's network is never touched.

set -u

VMCTL=$1
FCEMU=$2
SRCROOT=$3
PY=/usr/bin/python3
TEST=$(basename "$0" .sh)

for f in "$VMCTL" "$FCEMU"; do
    if [ ! -x "$f" ]; then
        echo "FAIL: $f is not an executable" >&2
        exit 1
    fi
done

# Short: the API socket lives at STATE/vms/NAME/api.sock and a Unix socket
# path must fit in 108 bytes even for a 63-byte VM name.
T=$(mktemp -d /tmp/vmit.XXXXXX) || exit 1
STATE=$T/s
TRACE=$T/trace.jsonl
KERNEL=$T/vmlinux
ROOTFS=$T/rootfs.ext4
# Prefix of every VM name and namespace of this run: "t" + 5 random hex
# digits is unique among concurrent runs and keeps names short.
P=t$(printf '%05x' $(( (RANDOM << 8 ^ RANDOM ^ $$) & 0xfffff )))
export FCEMU_TRACE=$TRACE
unset LIBVMM_STATE_DIR LIBVMM_FIRECRACKER

failures=0
out=
err=
rc=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

pass() {
    echo "ok: $*"
}

note() {
    echo "# $*"
}

vmctl() {
    "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" "$@"
}

# run CMD...: runs it with stdout in $out, stderr in $err, status in $rc.
run() {
    "$@" >"$T/.out" 2>"$T/.err"
    rc=$?
    out=$(cat "$T/.out")
    err=$(cat "$T/.err")
}

# expect_ok WHAT CMD...: the command must succeed.
expect_ok() {
    local what=$1
    shift
    run "$@"
    if [ "$rc" -ne 0 ]; then
        fail "$what: exit $rc, stderr: $err"
        return 1
    fi
    return 0
}

# expect_error WHAT PATTERN CMD...: the command must fail with exactly one
# line on stderr, starting "vmctl: ", matching the extended regex PATTERN
# (case-insensitive).
expect_error() {
    local what=$1 pattern=$2 lines
    shift 2
    run "$@"
    lines=$(printf '%s\n' "$err" | grep -c .)
    if [ "$rc" -eq 0 ]; then
        fail "$what: succeeded, expected an error matching /$pattern/"
        return 1
    fi
    if [ "$lines" -ne 1 ]; then
        fail "$what: expected one line on stderr, got $lines: $err"
        return 1
    fi
    if [[ $err != "vmctl: "* ]]; then
        fail "$what: stderr does not start with 'vmctl: ': $err"
        return 1
    fi
    if ! printf '%s\n' "$err" | grep -qiE -- "$pattern"; then
        fail "$what: stderr does not match /$pattern/: $err"
        return 1
    fi
    pass "$what (exit $rc): $err"
    return 0
}

# json EXPR: evaluates a Python expression over the JSON document on stdin,
# bound to `d`; prints strings bare, None as "null", others as JSON.
json() {
    "$PY" -c '
import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
if v is None:
    print("null")
elif isinstance(v, str):
    print(v)
else:
    print(json.dumps(v))
' "$1"
}

# field NAME KEY: one field of `vmctl show NAME --json`, or "" on failure.
field() {
    vmctl show "$1" --json 2>/dev/null | json "d[\"$2\"]" 2>/dev/null
}

# api SOCKET PATH: the emulator's answer to GET PATH.
api() {
    curl -s --max-time 5 --unix-socket "$1" "http://localhost$2"
}

# Pids of processes whose command line mentions our directory, except this
# shell and its subshells. Reads /proc with builtins only, so the scan does
# not find itself.
our_pids() {
    local d pid args
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [ "$pid" = "$$" ] && continue
        [ "$pid" = "$BASHPID" ] && continue
        mapfile -d "" args 2>/dev/null <"$d/cmdline" || continue
        [ "${#args[@]}" -eq 0 ] && continue
        case "${args[*]}" in
        *"$T"*) echo "$pid" ;;
        esac
    done
}

our_netns() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^(libvmm-)?$P" || true
}

our_loops() {
    losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v t="$T" 'index($0, t) {print $1}'
}

# wait_gone PID [SECONDS]: waits until PID has exited.
wait_gone() {
    local i
    for ((i = 0; i < ${2:-10} * 20; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.05
    done
    return 1
}

# is_vmm PID: PID is alive and is an emulator of this test.
is_vmm() {
    local args
    [ -n "$1" ] && [ "$1" != null ] || return 1
    mapfile -d "" args 2>/dev/null <"/proc/$1/cmdline" || return 1
    [[ ${args[0]} == *fc-emulator* && "${args[*]}" == *"$T"* ]]
}

# check_clean WHAT: nothing of ours may remain: no process, namespace or
# loop device, and (unless VMS_LEFT is set) no VM directory.
check_clean() {
    local what=$1 pids ns loops vms
    pids=$(our_pids | tr '\n' ' ')
    ns=$(our_netns | tr '\n' ' ')
    loops=$(our_loops | tr '\n' ' ')
    vms=$(ls -A "$STATE/vms" 2>/dev/null | tr '\n' ' ')
    [ -n "$pids" ] && fail "$what: processes left: $pids ($(for p in $pids; do
        tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline"
        echo
    done))"
    [ -n "$ns" ] && fail "$what: network namespaces left: $ns"
    [ -n "$loops" ] && fail "$what: loop devices left: $loops"
    [ -n "$vms" ] && fail "$what: VM directories left in $STATE/vms: $vms"
    [ -z "$pids$ns$loops$vms" ] && pass "$what: nothing left behind"
}

# make_images: a kernel (any file: the emulator only checks it exists)
# and a small ext4 rootfs with the files snapshot-prep patches.
make_images() {
    local tree=$T/tree
    head -c 65536 /dev/urandom >"$KERNEL"
    mkdir -p "$tree/etc/network" "$tree/etc/ssh" "$tree/root" "$tree/sbin"
    printf 'auto lo\niface lo inet loopback\n' >"$tree/etc/network/interfaces"
    echo base >"$tree/etc/hostname"
    printf '127.0.0.1 localhost\n' >"$tree/etc/hosts"
    echo 'PermitRootLogin prohibit-password' >"$tree/etc/ssh/sshd_config"
    if ! mkfs.ext4 -q -F -L root -d "$tree" "$ROOTFS" 32M >/dev/null 2>&1; then
        echo "FAIL: mkfs.ext4 could not make $ROOTFS" >&2
        exit 1
    fi
}

# create NAME [OPTIONS...]: create with the test's kernel and rootfs.
create() {
    local name=$1
    shift
    vmctl create "$name" --kernel "$KERNEL" --rootfs "$ROOTFS" "$@"
}

# Every request the emulators saw must conform to Firecracker's API.
check_trace() {
    local checker=$SRCROOT/../shared/tools/fc-api-check
    if [ ! -f "$checker" ]; then
        note "SKIP fc-api-check: $checker is absent (no ../shared beside the checkout)"
        return
    fi
    if [ ! -s "$TRACE" ]; then
        note "no API requests were recorded; fc-api-check has nothing to check"
        return
    fi
    if "$PY" "$checker" "$TRACE" >"$T/.check" 2>&1; then
        pass "fc-api-check: $(tail -n 1 "$T/.check")"
    else
        fail "fc-api-check: $(cat "$T/.check")"
    fi
}

cleanup() {
    local pid name ns loop
    set +e
    for pid in $(our_pids); do
        kill -9 "$pid" 2>/dev/null
    done
    for pid in $(our_pids); do
        wait_gone "$pid" 5
    done
    if [ -d "$STATE/vms" ]; then
        for name in $(ls -A "$STATE/vms"); do
            vmctl delete --force "$name" >/dev/null 2>&1
        done
    fi
    for ns in $(our_netns); do
        ip netns delete "$ns" 2>/dev/null
    done
    for loop in $(our_loops); do
        losetup -d "$loop" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# finish: the trace check, then the verdict as the exit status.
finish() {
    check_trace
    if [ "$failures" -gt 0 ]; then
        echo "$TEST: $failures failure(s)"
        exit 1
    fi
    echo "$TEST: all passed"
    exit 0
}

make_images
