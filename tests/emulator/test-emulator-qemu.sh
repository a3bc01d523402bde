#!/usr/bin/env bash
# End-to-end tests of fc-emulator's QEMU mode (FCEMU_QEMU=1): a real Debian
# guest from scripts/build-guest-images.sh boots under qemu-system-x86_64,
# driven only through the Firecracker API with curl.
#
# usage: test-emulator-qemu.sh FC_EMULATOR [IMAGE_DIR]
#   The images come from $LIBVMM_IMAGE_DIR, else IMAGE_DIR, else
#   /var/cache/libvmm/images. Exits 77 (skipped) when QEMU, the images,
#   root or network namespaces are missing.
#
# The guest's tap and all its traffic stay inside a network namespace made
# here (libvmm-test-qemu-PID); the root disk is a copy in a temporary
# directory. The EXIT trap kills every emulator and QEMU started, by pid,
# and removes the tap, the namespace and the directory.
set -u

EMU=$(realpath "${1:?usage: test-emulator-qemu.sh FC_EMULATOR [IMAGE_DIR]}")
IMAGES=${LIBVMM_IMAGE_DIR:-${2:-/var/cache/libvmm/images}}
QEMU=${FCEMU_QEMU_BIN:-qemu-system-x86_64}
NS=libvmm-test-qemu-$$
TAP=fcemu-tap0
HOST_IP=172.16.0.1
GUEST_IP=172.16.0.2
GUEST_MAC=06:00:ac:10:00:02
# What boots reliably under software emulation (see
# ../shared/notes/guest-boot.md), plus the guest's address.
BOOT_ARGS="console=ttyS0 reboot=k panic=1 tsc_early_khz=2000000"
BOOT_ARGS+=" root=/dev/vda rw ip=$GUEST_IP::$HOST_IP:255.255.255.252::eth0:off"

TMP=
NS_MADE=0
PIDS=()
PASS=0
FAIL=0

skip() {
	echo "SKIP: $*"
	exit 77
}

command -v "$QEMU" >/dev/null 2>&1 ||
	skip "$QEMU is not installed (apt-get install qemu-system-x86)"
for f in vmlinux initrd.img rootfs.ext4; do
	[ -r "$IMAGES/$f" ] ||
		skip "no $IMAGES/$f; build the guest images with" \
			"scripts/build-guest-images.sh (as root) or set" \
			"LIBVMM_IMAGE_DIR"
done
for cmd in curl ip timeout; do
	command -v "$cmd" >/dev/null 2>&1 || skip "$cmd is not installed"
done
[ "$(id -u)" -eq 0 ] || skip "needs root for a network namespace and a tap"

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	{ wait; } 2>/dev/null
	if [ $NS_MADE -eq 1 ]; then
		ip -n "$NS" link del "$TAP" 2>/dev/null
		ip netns del "$NS"
	fi
	[ -n "$TMP" ] && rm -rf "$TMP"
}
trap cleanup EXIT

TMP=$(mktemp -d /tmp/fcemu-qemu-test.XXXXXX)
ip netns add "$NS" 2>"$TMP/netns.err" ||
	skip "cannot create a network namespace: $(cat "$TMP/netns.err")"
NS_MADE=1

ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then ok; else bad "$what"; fi
}
ms() { echo $(( $(date +%s%N) / 1000000 )); }
say() { echo "--- $*"; }

# The guest's disks: a private copy of the root image (the cache stays
# untouched), and a small data disk attached read-only.
cp --reflink=auto --sparse=always "$IMAGES/rootfs.ext4" "$TMP/rootfs.ext4" ||
	{ echo "cannot copy rootfs.ext4"; exit 1; }
truncate -s 8M "$TMP/data.img"
mkdir "$TMP/tmpdir"

# The tap lives in the namespace, and so does every emulator that uses it.
ip -n "$NS" link set lo up &&
	ip -n "$NS" tuntap add dev "$TAP" mode tap &&
	ip -n "$NS" addr add "$HOST_IP/30" dev "$TAP" &&
	ip -n "$NS" link set "$TAP" up ||
	{ echo "cannot set up $TAP in $NS"; exit 1; }

# start NAME [VAR=VALUE...]: a QEMU-mode emulator inside the namespace on
# $TMP/NAME.sock, its stdout (the VMM log and guest console) in
# $TMP/NAME.log; sets PID, SOCK and LOG.
start() {
	local name=$1 i
	shift
	SOCK=$TMP/$name.sock
	LOG=$TMP/$name.log
	ip netns exec "$NS" env FCEMU_QEMU=1 TMPDIR="$TMP/tmpdir" "$@" \
		"$EMU" --api-sock "$SOCK" --id "$name" \
		>"$LOG" 2>"$TMP/$name.err" &
	PID=$!
	PIDS+=("$PID")
	for ((i = 0; i < 300; i++)); do
		[ -S "$SOCK" ] && return 0
		sleep 0.01
	done
	bad "$name: the API socket did not appear"
}

# api METHOD PATH [BODY]: sets CODE and BODY from the answer.
api() {
	local args=(-sS --max-time 30 --unix-socket "$SOCK" -X "$1"
		-o "$TMP/resp" -w '%{http_code}')
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' -d "$3")
	CODE=$(curl "${args[@]}" "http://localhost$2" 2>"$TMP/curl.err")
	BODY=$(cat "$TMP/resp" 2>/dev/null)
}

expect() { # expect CODE METHOD PATH [BODY]
	local want=$1
	shift
	api "$@"
	[ "$CODE" = "$want" ] && return 0
	echo "  $1 $2 answered $CODE, expected $want: $BODY $(cat "$TMP/curl.err")"
	return 1
}

state_is() {
	api GET /
	case "$BODY" in
	*"\"state\":\"$1\""*) return 0 ;;
	esac
	echo "  GET / says $BODY, expected state $1"
	return 1
}

# configure [BOOT_ARGS]: kernel, initrd, 2 vCPUs, 384 MiB, the root disk
# (read-write) and the data disk (read-only).
configure() {
	local args=${1:-$BOOT_ARGS}
	expect 204 PUT /machine-config \
		'{"vcpu_count": 2, "mem_size_mib": 384}' &&
	expect 204 PUT /boot-source "{\"kernel_image_path\":
		\"$IMAGES/vmlinux\", \"initrd_path\": \"$IMAGES/initrd.img\",
		\"boot_args\": \"$args\"}" &&
	expect 204 PUT /drives/data "{\"drive_id\": \"data\",
		\"path_on_host\": \"$TMP/data.img\", \"is_root_device\": false,
		\"is_read_only\": true}" &&
	expect 204 PUT /drives/rootfs "{\"drive_id\": \"rootfs\",
		\"path_on_host\": \"$TMP/rootfs.ext4\", \"is_root_device\": true,
		\"is_read_only\": false}"
}

add_nic() {
	expect 204 PUT /network-interfaces/eth0 "{\"iface_id\": \"eth0\",
		\"host_dev_name\": \"$TAP\", \"guest_mac\": \"$GUEST_MAC\"}"
}

# The QEMU the emulator $1 runs (its only child), or nothing.
qemu_of() {
	pgrep -P "$1" | head -n1
}

# Whether pid $1 is gone (a zombie waiting for a reaper counts as gone).
gone() {
	[ ! -e "/proc/$1" ] ||
		[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# wait_gone PID MS: whether PID is gone within MS milliseconds.
wait_gone() {
	local deadline=$(( $(ms) + $2 ))
	while [ "$(ms)" -lt "$deadline" ]; do
		gone "$1" && return 0
		sleep 0.02
	done
	gone "$1"
}

# wait_exit PID SECONDS: waits for the emulator to exit; sets RC.
wait_exit() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1" 2>/dev/null
			RC=$?
			return 0
		fi
		sleep 0.05
	done
	RC=none
	return 1
}

# wait_log PATTERN SECONDS: whether $LOG shows PATTERN within SECONDS.
wait_log() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		grep -aqF -- "$1" "$LOG" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	grep -aqF -- "$1" "$LOG" && return 0
	echo "  no \"$1\" in $LOG after $2 s; its tail:"
	tail -n 15 "$LOG" | sed 's/^/  | /'
	return 1
}

# cmdline_has PID ARG...: QEMU's command line holds these args in a row.
cmdline_has() {
	local pid=$1 i j
	local -a argv
	shift
	mapfile -d '' argv <"/proc/$pid/cmdline"
	for ((i = 0; i + $# <= ${#argv[@]}; i++)); do
		for ((j = 0; j < $#; j++)); do
			[ "${argv[i + j]}" = "${*:j + 1:1}" ] || continue 2
		done
		return 0
	done
	echo "  QEMU's command line lacks: $*"
	return 1
}

no_children() {
	[ -z "$(pgrep -P "$1")" ] || { echo "  $1 still has a child"; return 1; }
}

tmpdir_empty() {
	[ -z "$(ls -A "$TMP/tmpdir")" ] ||
		{ echo "  left behind: $(ls -A "$TMP/tmpdir")"; return 1; }
}

# --- InstanceStart failures: 400 with QEMU's reason, no QEMU left --------

say "start failures"
start fail1
check "missing drive file: 400 at PUT" \
	expect 400 PUT /drives/gone "{\"drive_id\": \"gone\",
		\"path_on_host\": \"$TMP/no-such.img\", \"is_root_device\": false,
		\"is_read_only\": true}"
check "missing drive file: fault_message names it" \
	grep -q "Unable to create the virtio block device.*no-such.img" \
	"$TMP/resp"
cp "$TMP/data.img" "$TMP/data2.img"
check "drive configured" expect 204 PUT /drives/gone "{\"drive_id\":
	\"gone\", \"path_on_host\": \"$TMP/data2.img\",
	\"is_root_device\": false, \"is_read_only\": true}"
check "boot source configured" expect 204 PUT /boot-source \
	"{\"kernel_image_path\": \"$IMAGES/vmlinux\"}"
rm -f "$TMP/data2.img"
t0=$(ms)
check "drive file removed before InstanceStart: 400" \
	expect 400 PUT /actions '{"action_type": "InstanceStart"}'
echo "  InstanceStart failed in $(( $(ms) - t0 )) ms: $BODY"
check "the fault carries QEMU's stderr" grep -q "stderr: .*data2.img" \
	"$TMP/resp"
check "no QEMU left after a failed start" no_children "$PID"
check "still not started" state_is "Not started"
check "no QMP directory left" tmpdir_empty
kill -9 "$PID"; { wait "$PID"; } 2>/dev/null

printf 'not a kernel\n' >"$TMP/bad-kernel"
start fail2
check "bad kernel configured" expect 204 PUT /boot-source \
	"{\"kernel_image_path\": \"$TMP/bad-kernel\"}"
check "a kernel QEMU cannot load: 400" \
	expect 400 PUT /actions '{"action_type": "InstanceStart"}'
echo "  $BODY"
check "no QEMU left after a kernel QEMU refused" no_children "$PID"
kill -9 "$PID"; { wait "$PID"; } 2>/dev/null

start fail3 FCEMU_QEMU_BIN="$TMP/no-such-qemu"
check "boot source configured" expect 204 PUT /boot-source \
	"{\"kernel_image_path\": \"$IMAGES/vmlinux\"}"
check "QEMU that cannot run: 400" \
	expect 400 PUT /actions '{"action_type": "InstanceStart"}'
check "the fault says why" grep -q "cannot run .*no-such-qemu" "$TMP/resp"
check "nothing left after QEMU could not run" no_children "$PID"
check "no QMP directory left" tmpdir_empty
kill -9 "$PID"; { wait "$PID"; } 2>/dev/null

# --- a full boot: console, pause, resume, network, Ctrl+Alt+Del ----------

say "boot"
start boot
check "configure" configure
check "network interface" add_nic
t_start=$(ms)
check "InstanceStart: 204" \
	expect 204 PUT /actions '{"action_type": "InstanceStart"}'
echo "  InstanceStart answered in $(( $(ms) - t_start )) ms"
check "GET / says Running" state_is Running
QPID=$(qemu_of "$PID")
PIDS+=($QPID)
if [ -z "$QPID" ]; then
	bad "no QEMU runs under the emulator"
else
	check "-smp from vcpu_count" cmdline_has "$QPID" -smp 2
	check "-m from mem_size_mib" cmdline_has "$QPID" -m 384M
	check "-accel defaults to tcg" cmdline_has "$QPID" -accel tcg
	check "kernel, initrd and boot args" cmdline_has "$QPID" \
		-kernel "$IMAGES/vmlinux" -initrd "$IMAGES/initrd.img" \
		-append "$BOOT_ARGS"
	check "root drive first, read-write" cmdline_has "$QPID" -drive \
		"id=drive0,file=$TMP/rootfs.ext4,format=raw,if=none"
	check "data drive second, read-only" cmdline_has "$QPID" -drive \
		"id=drive1,file=$TMP/data.img,format=raw,if=none,readonly=on"
	check "tap and MAC" cmdline_has "$QPID" -netdev \
		"tap,id=net0,ifname=$TAP,script=no,downscript=no" -device \
		"virtio-net-device,netdev=net0,mac=$GUEST_MAC"
	check "QEMU's stdin is /dev/null" \
		test "$(readlink "/proc/$QPID/fd/0")" = /dev/null
	check "QEMU's stdout is the VMM log" \
		test "$(readlink "/proc/$QPID/fd/1")" = "$LOG"
	check "QEMU holds no API socket" \
		test "$(find "/proc/$QPID/fd" -lname 'socket:*' | wc -l)" -le 1
fi
check "no QMP directory left" tmpdir_empty

# Pause while the kernel is still printing: the console must stop.
if wait_log "Linux version" 30; then
	ok
	echo "  kernel banner after $(( $(ms) - t_start )) ms"
	check "PATCH Paused: 204" expect 204 PATCH /vm '{"state": "Paused"}'
	check "GET / says Paused" state_is Paused
	size1=$(stat -c %s "$LOG")
	sleep 2
	size2=$(stat -c %s "$LOG")
	check "the console does not advance while paused" \
		test "$size1" -eq "$size2"
	check "PATCH Resumed: 204" expect 204 PATCH /vm '{"state": "Resumed"}'
	check "GET / says Running again" state_is Running
	advanced=0
	for ((i = 0; i < 100; i++)); do
		[ "$(stat -c %s "$LOG")" -gt "$size2" ] && { advanced=1; break; }
		sleep 0.1
	done
	check "the console advances after Resumed" test $advanced -eq 1
else
	bad "no kernel boot messages in the VMM log"
fi

if wait_log "libvmm-initramfs: mounted /dev/vda" 90; then
	ok
	echo "  root mounted after $(( $(ms) - t_start )) ms"
else
	bad "the initramfs did not mount the root disk"
fi
check "vda is the root disk (2 GiB)" \
	grep -aq "\[vda\] 4194304 512-byte" "$LOG"
check "vdb is the data disk (8 MiB)" grep -aq "\[vdb\] 16384 512-byte" "$LOG"
if wait_log "Multi-User System" 180; then
	ok
	echo "  systemd reached multi-user after $(( $(ms) - t_start )) ms"
else
	bad "systemd did not reach multi-user.target"
fi

# The guest answers on its tap, with the MAC given through the API: sshd's
# banner read over TCP from inside the namespace.
ssh_banner() {
	ip netns exec "$NS" timeout "$1" bash -c \
		"exec 3<>/dev/tcp/$GUEST_IP/22 && head -c 4 <&3" 2>/dev/null |
		grep -q '^SSH-'
}
no_banner() { ! ssh_banner "$@"; }
answered=0
for ((i = 0; i < 30; i++)); do
	ssh_banner 2 && { answered=1; break; }
	sleep 0.5
done
check "the guest's sshd answers over $TAP" test $answered -eq 1
check "the guest's MAC is guest_mac" \
	bash -c "ip -n '$NS' neigh show '$GUEST_IP' | grep -qi 'lladdr $GUEST_MAC'"
check "PATCH Paused again" expect 204 PATCH /vm '{"state": "Paused"}'
check "a paused guest does not answer" no_banner 2
check "PATCH Resumed again" expect 204 PATCH /vm '{"state": "Resumed"}'
answered=0
for ((i = 0; i < 10; i++)); do
	ssh_banner 2 && { answered=1; break; }
	sleep 0.5
done
check "the resumed guest answers again" test $answered -eq 1

# Ctrl+Alt+Del reaches a paused guest only once it is resumed.
check "PATCH Paused before Ctrl+Alt+Del" expect 204 PATCH /vm \
	'{"state": "Paused"}'
check "SendCtrlAltDel to a paused guest: 204" \
	expect 204 PUT /actions '{"action_type": "SendCtrlAltDel"}'
sleep 2
check "a paused guest does not act on Ctrl+Alt+Del" kill -0 "$PID"
check "still Paused" state_is Paused
t_cad=$(ms)
check "PATCH Resumed after Ctrl+Alt+Del" expect 204 PATCH /vm \
	'{"state": "Resumed"}'
if wait_exit "$PID" 60; then
	ok
	echo "  emulator exited $RC $(( $(ms) - t_cad )) ms after the guest" \
		"with Ctrl+Alt+Del pending was resumed"
	check "exit status 0 after Ctrl+Alt+Del" test "$RC" = 0
else
	bad "the emulator still runs 60 s after SendCtrlAltDel"
fi
[ -n "$QPID" ] && check "no QEMU remains after Ctrl+Alt+Del" gone "$QPID"
check "the guest rebooted (reboot=k), so QEMU exited" \
	grep -aq "reboot: Restarting system" "$LOG"
check "the API socket is removed" test ! -e "$SOCK"
# Whatever went wrong above, the later cases need the root disk free.
kill -9 "$PID" $QPID 2>/dev/null
{ wait "$PID"; } 2>/dev/null

# --- the guest ending on its own ends the emulator ---------------------

say "guest ends on its own"
start selfend
# No network interface, and root=/dev/vdz: the initramfs gives up.
check "configure a guest that cannot boot" \
	configure "${BOOT_ARGS/root=\/dev\/vda/root=/dev/vdz rootdelay=1}"
t0=$(ms)
check "InstanceStart: 204" \
	expect 204 PUT /actions '{"action_type": "InstanceStart"}'
QPID=$(qemu_of "$PID")
PIDS+=($QPID)
if wait_exit "$PID" 60; then
	ok
	echo "  emulator exited $RC $(( $(ms) - t0 )) ms after InstanceStart"
	check "exit status 0 when the guest resets itself" test "$RC" = 0
	check "the initramfs said why" \
		grep -aq "libvmm-initramfs: cannot boot; ending the VM" "$LOG"
else
	bad "the emulator still runs 60 s after its guest gave up"
fi
[ -n "$QPID" ] && check "no QEMU remains" gone "$QPID"
kill -9 "$PID" $QPID 2>/dev/null
{ wait "$PID"; } 2>/dev/null

# --- signals to the emulator end its QEMU ------------------------------

for sig in KILL TERM; do
	say "SIG$sig"
	start "sig$sig"
	check "configure" configure
	check "InstanceStart: 204" \
		expect 204 PUT /actions '{"action_type": "InstanceStart"}'
	QPID=$(qemu_of "$PID")
	PIDS+=($QPID)
	if [ -z "$QPID" ]; then
		bad "no QEMU runs under the emulator"
		continue
	fi
	sleep 0.5
	t0=$(ms)
	kill -"$sig" "$PID"
	{ wait "$PID"; } 2>/dev/null
	if wait_gone "$QPID" 1000; then
		ok
		echo "  QEMU gone $(( $(ms) - t0 )) ms after SIG$sig"
	else
		bad "QEMU $QPID outlives its emulator killed by SIG$sig"
	fi
	kill -9 "$QPID" 2>/dev/null
done

echo "emulator-qemu: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
