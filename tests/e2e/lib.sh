# shellcheck shell=bash
# Shared by the end-to-end tests; sourced, not run.
#
# Usage of a test: bash TEST.sh VMCTL FC_EMULATOR IMAGE_DIR
#
# The tests boot the guest images of scripts/build-guest-images.sh through
# vmctl and the Firecracker API emulator in QEMU mode.  $LIBVMM_IMAGE_DIR,
# when set, overrides IMAGE_DIR (meson passes the image_dir option).
#
# Everything a test makes carries this run's marks, so the clean-up trap
# ends exactly that and nothing else: files live in one temporary directory
# ($T, which holds the state directory and so appears in the command line
# of every VMM and QEMU of the run), and every VM name starts with a prefix
# unique to the run ($P).  Every VM is created with --netns: its tap, its
# VMM and all ssh traffic stay inside a namespace of its own.
#
# Exit status: 0 pass, 1 fail, 77 skip.

set -u

readonly SKIP=77
VMCTL=${1:?usage: TEST.sh VMCTL FC_EMULATOR IMAGE_DIR}
FCEMU=${2:?usage: TEST.sh VMCTL FC_EMULATOR IMAGE_DIR}
IMAGES=${LIBVMM_IMAGE_DIR:-${3:?usage: TEST.sh VMCTL FC_EMULATOR IMAGE_DIR}}
TEST=$(basename "$0" .sh)
# What reliably boots under QEMU's software emulation; libvmm adds root=
# and ip= itself.
BOOT_ARGS=${E2E_BOOT_ARGS:-console=ttyS0 reboot=k panic=1 tsc_early_khz=2000000}
BOOT_TIMEOUT=${E2E_BOOT_TIMEOUT:-120}

T=
P=
STATE=
failures=0
out=
err=
rc=0
vms=()

note() {
	printf '%s %s: %s\n' "$(date +%T)" "$TEST" "$*"
}

skip() {
	note "SKIP: $*"
	exit $SKIP
}

pass() {
	note "ok: $*"
}

# --- set-up -------------------------------------------------------------

for f in "$VMCTL" "$FCEMU"; do
	if [ ! -x "$f" ]; then
		echo "$TEST: FAIL: $f is not an executable" >&2
		exit 1
	fi
done
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, taps)"
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
for tool in ssh ssh-keygen ip e2fsck dumpe2fs; do
	command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
for f in vmlinux initrd.img rootfs.ext4; do
	[ -f "$IMAGES/$f" ] ||
		skip "no guest image $IMAGES/$f (run scripts/build-guest-images.sh, or set LIBVMM_IMAGE_DIR)"
done

# Short: a Unix socket path (STATE/vms/NAME/api.sock) must fit 108 bytes.
T=$(mktemp -d /tmp/vme2e.XXXXXX) || exit 1
STATE=$T/s
# "e" and 5 random hex digits: unique among concurrent runs, and short.
P=e$(printf '%05x' $(((RANDOM << 8 ^ RANDOM ^ $$) & 0xfffff)))
export FCEMU_QEMU=1
unset LIBVMM_STATE_DIR LIBVMM_FIRECRACKER
note "images $IMAGES, state $STATE, prefix $P"

vmctl() {
	"$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" "$@"
}

# run CMD...: stdout in $out, stderr in $err, exit status in $rc.  CMD
# runs in a subshell, so that a trap never runs with this shell's own
# output redirected (as it would around a redirected function call).
run() {
	("$@") >"$T/.out" 2>"$T/.err"
	rc=$?
	out=$(cat "$T/.out")
	err=$(cat "$T/.err")
}

# --- what a person needs when a test fails ------------------------------

field() {
	vmctl show "$1" --json 2>/dev/null |
		python3 -c 'import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("null" if v is None else v)' "$2" 2>/dev/null
}

# The pids with an open descriptor on the Unix socket bound at path $1,
# found through its inode in /proc/net/unix of the VM's namespace.
socket_holders() {
	local sock=$1 ns=$2 inodes fd link ino
	if [ -n "$ns" ] && [ "$ns" != null ] && [ -e "/run/netns/$ns" ]; then
		inodes=$(ip netns exec "$ns" cat /proc/net/unix 2>/dev/null |
			awk -v p="$sock" '$8 == p { print $7 }')
	else
		inodes=$(awk -v p="$sock" '$8 == p { print $7 }' /proc/net/unix)
	fi
	[ -n "$inodes" ] || return 0
	for fd in /proc/[0-9]*/fd/*; do
		link=$(readlink "$fd" 2>/dev/null) || continue
		for ino in $inodes; do
			[ "$link" = "socket:[$ino]" ] || continue
			fd=${fd#/proc/}
			echo "${fd%%/*} $(tr '\0' ' ' <"/proc/${fd%%/*}/cmdline" 2>/dev/null)"
		done
	done | sort -u
}

# diagnose NAME: the VM's log and console tails, its state record (as
# vmctl reads it and raw), who holds its API socket, and the socket itself.
diagnose() {
	local name=$1 dir=$STATE/vms/$1 log sock ns
	log=$dir/vmm.log
	sock=$dir/api.sock
	ns=$(field "$name" netns)
	{
		echo "======== diagnostics for VM $name ========"
		echo "--- vmctl show $name --json"
		vmctl show "$name" --json 2>&1
		echo "--- $dir/vm.json"
		cat "$dir/vm.json" 2>&1
		echo
		echo "--- VMM log (the emulator's own lines), last 20: vmctl logs $name"
		vmctl logs "$name" 2>&1 | grep -a "\[$name:" | tail -n 20
		echo "--- guest console, last 40"
		vmctl logs "$name" 2>&1 | grep -av "\[$name:" | tr -d '\r' | tail -n 40
		if [ -f "$log.1" ]; then
			echo "--- previous boot's log $log.1, last 15"
			tr -d '\r' <"$log.1" | tail -n 15
		fi
		echo "--- processes holding the API socket $sock"
		socket_holders "$sock" "$ns"
		# fuser's view too, without its complaints about processes
		# of other user namespaces it may not inspect.
		command -v fuser >/dev/null 2>&1 && [ -e "$sock" ] &&
			fuser -v "$sock" 2>&1 | grep -v '^Cannot stat '
		echo "--- stat $sock"
		stat "$sock" 2>&1
		echo "--- processes of this run"
		for pid in $(our_pids); do
			echo "$pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)"
		done
		echo "--- links in namespace $ns"
		[ -n "$ns" ] && [ "$ns" != null ] && ip -n "$ns" -br link 2>&1
		echo "======== end of diagnostics for VM $name ========"
	} >&2
}

# fail MESSAGE: counts a failure and shows the diagnostics of every VM
# this test has made that still has a directory.
fail() {
	local name
	note "FAIL: $*"
	failures=$((failures + 1))
	for name in "${vms[@]}"; do
		[ -d "$STATE/vms/$name" ] && diagnose "$name"
	done
}

# die MESSAGE: a failure after which the test cannot go on.
die() {
	fail "$@"
	finish
}

# --- what the run has made ----------------------------------------------

# Pids (other than this shell's own) whose command line mentions $T: the
# VMMs and QEMUs of this run.  Builtins only, so the scan never sees itself.
our_pids() {
	local d pid args
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		[ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
		mapfile -d '' args 2>/dev/null <"$d/cmdline" || continue
		[ "${#args[@]}" -gt 0 ] || continue
		case "${args[*]}" in *"$T"*) echo "$pid" ;; esac
	done
}

# is_qemu PID, is_vmm PID: a live process of this run of that kind.
is_kind() {
	local args
	[ -n "$2" ] && [ "$2" != null ] || return 1
	mapfile -d '' args 2>/dev/null <"/proc/$2/cmdline" || return 1
	[[ ${args[0]} == *"$1"* && "${args[*]}" == *"$T"* ]]
}

# The QEMU of this run whose command line names VM $1's disk.
qemu_of() {
	local pid
	for pid in $(our_pids); do
		is_kind qemu-system "$pid" || continue
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "/vms/$1/" && echo "$pid"
	done
}

our_netns() {
	ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^libvmm-$P" || true
}

wait_gone() {
	local i
	for ((i = 0; i < ${2:-10} * 10; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# expect_nothing_left WHAT NAME NETNS: no process of this run, no API
# socket, and either no namespace or (if it is kept) no tap in it.
expect_nothing_left() {
	local what=$1 name=$2 ns=$3 pids links left=""
	pids=$(our_pids | tr '\n' ' ')
	[ -n "$pids" ] && left+=" processes: $pids;"
	[ -e "$STATE/vms/$name/api.sock" ] &&
		left+=" API socket $STATE/vms/$name/api.sock;"
	if [ -e "/run/netns/$ns" ]; then
		links=$(ip -n "$ns" -o link show 2>/dev/null |
			awk -F': ' '$2 != "lo" { print $2 }' | tr '\n' ' ')
		[ -n "$links" ] && left+=" links in $ns: $links;"
	fi
	if [ -n "$left" ]; then
		fail "$what: left behind:$left"
		return 1
	fi
	pass "$what: no VMM, QEMU, tap or socket left"
}

# --- driving VMs ----------------------------------------------------------

# create_vm NAME [OPTIONS...]: vmctl create with the cached images, in a
# network namespace of the VM's own.
create_vm() {
	local name=$1
	shift
	vms+=("$name")
	run vmctl create "$name" --kernel "$IMAGES/vmlinux" \
		--initrd "$IMAGES/initrd.img" --rootfs "$IMAGES/rootfs.ext4" \
		--netns --boot-args "$BOOT_ARGS" "$@"
	[ "$rc" -eq 0 ] || die "vmctl create $name: exit $rc: $err"
	pass "created $name$([ $# -gt 0 ] && echo " ($*)")"
}

# guest NAME COMMAND: one shell command line in the guest, via vmctl ssh;
# stdout in $out, stderr in $err.  (ssh joins its arguments into one
# line for the guest's shell, so the command is given as one string.)
guest() {
	run vmctl ssh "$1" -- "$2"
}

# wait_ssh NAME: polls vmctl ssh until the guest answers, for at most
# BOOT_TIMEOUT seconds; gives up at once when the VM stops running.
wait_ssh() {
	local name=$1 started=$SECONDS state
	while [ $((SECONDS - started)) -lt "$BOOT_TIMEOUT" ]; do
		guest "$name" true
		if [ "$rc" -eq 0 ]; then
			pass "$name: ssh answers $((SECONDS - started)) s after start"
			return 0
		fi
		state=$(field "$name" state)
		[ "$state" = running ] ||
			die "$name: the VM is '$state' while waiting for ssh: $err"
		sleep 1
	done
	die "$name: no ssh answer within $BOOT_TIMEOUT s (last: $err)"
}

# start_vm NAME [OPTIONS...]: vmctl -v start; its stderr (the library's
# log) stays in $err.
start_vm() {
	local name=$1 t0=$SECONDS
	shift
	run vmctl -v start "$name" "$@"
	[ "$rc" -eq 0 ] || die "vmctl start $name: exit $rc: $err"
	pass "started $name in $((SECONDS - t0)) s"
}

# expect_guest NAME COMMAND EXPECTED: the command's output is exactly that.
expect_guest() {
	guest "$1" "$2"
	if [ "$rc" -ne 0 ]; then
		fail "$1: '$2' in the guest: exit $rc: $err"
		return 1
	fi
	if [ "$out" != "$3" ]; then
		fail "$1: '$2' printed '$out', expected '$3'"
		return 1
	fi
	pass "$1: '$2' prints '$3'"
}

cleanup() {
	local pid name ns
	set +e
	for pid in $(our_pids); do
		kill -9 "$pid" 2>/dev/null
	done
	for pid in $(our_pids); do
		wait_gone "$pid" 5
	done
	for name in "${vms[@]}"; do
		[ -d "$STATE/vms/$name" ] &&
			vmctl delete --force "$name" >/dev/null 2>&1
	done
	for ns in $(our_netns); do
		ip netns delete "$ns" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

finish() {
	if [ "$failures" -gt 0 ]; then
		note "$failures failure(s) in $((SECONDS)) s"
		exit 1
	fi
	note "all passed in $SECONDS s"
	exit 0
}
