#!/usr/bin/env bash
# Tests of fc-emulator: command line, API behaviour and faults, failure
# injection knobs, concurrency, and finally fc-api-check over the trace of
# the valid requests it sent.
#
# usage: test-emulator.sh FC_EMULATOR [SHARED_DIR]
#   SHARED_DIR (or $FC_SHARED_DIR) holds tools/fc-api-check and
#   firecracker/firecracker-api.yaml; without it the spec check is skipped.
#
# Everything lives in a temporary directory removed on exit; every process
# started is killed by pid in the EXIT trap.
set -u

EMU=$(realpath "${1:?usage: test-emulator.sh FC_EMULATOR [SHARED_DIR]}")
SHARED=${2:-${FC_SHARED_DIR:-}}
TMP=$(mktemp -d /tmp/fcemu-test.XXXXXX)
PIDS=()
PASS=0
FAIL=0

# ours PID: PID is still an emulator of this run (its command line names
# $TMP), not a stranger that got the number of one already reaped.
ours() {
	local args
	mapfile -d "" args 2>/dev/null <"/proc/$1/cmdline" || return 1
	[[ "${args[*]}" == *"$TMP"* ]]
}

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		ours "$p" && kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then ok; else bad "$what"; fi
}

# Wait until $1 exists as a socket, at most $2 seconds (default 10).
wait_socket() {
	local i n=$(( ${2:-10} * 100 ))
	for ((i = 0; i < n; i++)); do
		[ -S "$1" ] && return 0
		sleep 0.01
	done
	return 1
}

# Wait for pid $1 to exit, at most $2 seconds (default 10); sets RC. Only
# for children.
wait_exit() {
	local i n=$(( ${2:-10} * 100 ))
	for ((i = 0; i < n; i++)); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1" 2>/dev/null
			RC=$?
			return 0
		fi
		sleep 0.01
	done
	RC=none
	return 1
}

# start NAME [VAR=VALUE...] [-- EXTRA ARGS]: runs the emulator on
# $TMP/NAME.sock in the background, sets PID and SOCK.
start() {
	local name=$1
	shift
	local envs=()
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		envs+=("$1")
		shift
	done
	[ "${1:-}" = "--" ] && shift
	SOCK=$TMP/$name.sock
	env "${envs[@]}" "$EMU" --api-sock "$SOCK" --id "$name" "$@" \
		>"$TMP/$name.out" 2>"$TMP/$name.err" &
	PID=$!
	PIDS+=("$PID")
}

# stop PID: SIGKILL a child and reap it without the shell's "Killed" note.
stop() {
	ours "$1" && kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# req METHOD PATH [BODY]: sets CODE and OUT; uses $SOCK.
req() {
	local args=(-s -o "$TMP/resp" -w '%{http_code}' --max-time 5
		--unix-socket "$SOCK" -X "$1")
	if [ $# -ge 3 ]; then
		args+=(-H 'Content-Type: application/json' --data-binary "$3")
	fi
	CODE=$(curl "${args[@]}" "http://localhost$2")
	OUT=$(cat "$TMP/resp" 2>/dev/null)
}

# expect STATUS METHOD PATH [BODY [FAULT SUBSTRING]]
expect() {
	local status=$1 method=$2 path=$3
	shift 3
	req "$method" "$path" "$@"
	if [ "$CODE" != "$status" ]; then
		bad "$method $path ${1:-}: got $CODE, want $status ($OUT)"
		return
	fi
	if [ $# -ge 2 ] && { [[ "$OUT" != '{"fault_message":"'* ]] ||
				[[ "$OUT" != *"$2"* ]]; }; then
		bad "$method $path: fault '$OUT' lacks '$2'"
		return
	fi
	ok
}

json_get() { # json_get KEY: prints a top-level string/number from $OUT
	/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' \
		"$OUT" "$1" 2>/dev/null
}

touch "$TMP/vmlinux" "$TMP/initrd" "$TMP/rootfs.ext4" "$TMP/data.img" \
	"$TMP/fc.log" "$TMP/metrics.json"
chmod 0444 "$TMP/data.img"

# A minimal valid configuration; BOOT is reused by several tests.
configure() {
	expect 204 PUT /boot-source \
		"{\"kernel_image_path\":\"$TMP/vmlinux\",\"boot_args\":\"console=ttyS0 reboot=k panic=1\"}"
	expect 204 PUT /drives/rootfs \
		"{\"drive_id\":\"rootfs\",\"path_on_host\":\"$TMP/rootfs.ext4\",\"is_root_device\":true,\"is_read_only\":false}"
}
instance_start() { expect 204 PUT /actions '{"action_type":"InstanceStart"}'; }
ctrl_alt_del() { expect 204 PUT /actions '{"action_type":"SendCtrlAltDel"}'; }

SER='An error occurred when deserializing the json body of a request: '
POST='The requested operation is not supported after starting the microVM.'
PRE='The requested operation is not supported before starting the microVM.'

# --- command line ------------------------------------------------------

out=$("$EMU" --version)
check "--version exits 0" [ $? -eq 0 ]
check "--version prints the version" grep -q '^Firecracker v1\.16\.1$' <<<"$out"

"$EMU" --bogus-flag >/dev/null 2>"$TMP/err"
check "unknown flag exits 153 (arg parsing)" [ $? -eq 153 ]
check "unknown flag is named on stderr" grep -q "bogus-flag" "$TMP/err"

"$EMU" --api-sock >/dev/null 2>&1
check "flag without value exits 153" [ $? -eq 153 ]

"$EMU" --api-sock "$TMP/x.sock" --level Loud >/dev/null 2>&1
check "bad --level exits 152 (bad configuration)" [ $? -eq 152 ]

"$EMU" --api-sock "$TMP/x.sock" --log-path "$TMP/missing.log" \
	>/dev/null 2>&1
check "--log-path must exist (exit 1)" [ $? -eq 1 ]
check "no socket after a failed start" [ ! -e "$TMP/x.sock" ]

{ "$EMU" --api-sock "$TMP/x.sock" --id 'bad_id!'; } >/dev/null 2>&1
check "bad --id dies of SIGABRT like a Rust panic" [ $? -eq 134 ]

touch "$TMP/taken.sock"
"$EMU" --api-sock "$TMP/taken.sock" >/dev/null 2>"$TMP/err"
check "existing socket path: exit 1" [ $? -eq 1 ]
check "existing socket path: left alone" [ -f "$TMP/taken.sock" ]
check "existing socket path: message" grep -q "taken.sock" "$TMP/err"

start flags -- --log-path "$TMP/fc.log" --level Debug --show-level \
	--show-log-origin --metrics-path "$TMP/metrics.json" --boot-timer \
	--no-seccomp --http-api-max-payload-size 4096 --mmds-size-limit 4096 \
	--start-time-us 1 --start-time-cpu-us 2 --parent-cpu-time-us 3
check "every firecracker flag accepted" wait_socket "$SOCK"
expect 200 GET /
check "--id is the instance id" [ "$(json_get id)" = flags ]
check "log file written" grep -q "Running Firecracker v1.16.1" "$TMP/fc.log"
check "stdout names the socket" grep -q "on socket $SOCK" "$TMP/flags.out"
big=$(printf '%*s' 5000 '' | tr ' ' x)
expect 400 PUT /boot-source "{\"kernel_image_path\":\"$big\"}" \
	"Request payload with size"
kill -TERM "$PID"
wait_exit "$PID"
check "SIGTERM keeps its default action (143)" [ "$RC" = 143 ]

# --- API: state machine, validation and faults -------------------------

start api
check "api: socket appears" wait_socket "$SOCK"

expect 200 GET /
check "state is Not started" [ "$(json_get state)" = "Not started" ]
check "app_name is Firecracker" [ "$(json_get app_name)" = Firecracker ]
check "vmm_version" [ "$(json_get vmm_version)" = 1.16.1 ]
expect 200 GET /version
check "firecracker_version" [ "$(json_get firecracker_version)" = 1.16.1 ]
expect 200 GET /machine-config
check "default vcpu_count 1" [ "$(json_get vcpu_count)" = 1 ]
check "default mem_size_mib 128" [ "$(json_get mem_size_mib)" = 128 ]

# Routing and framing faults.
expect 400 GET /nope '' # GET with a (empty) body is still routed
expect 400 GET /nowhere/at/all
expect 400 PUT /boot-source '' 'Empty PUT request.'
expect 400 PATCH /machine-config '' 'Empty PATCH request.'
expect 400 GET / '{}' 'GET request cannot have a body.'
expect 400 DELETE /drives/rootfs '' 'Invalid request method and/or path'
expect 400 PUT /unknown '{}' 'Invalid request method and/or path: PUT unknown.'
expect 400 PUT /boot-source '{"kernel_image_path": ' "$SER"

# machine-config
expect 400 PUT /machine-config '{"vcpu_count":2}' \
	"${SER}missing field \`mem_size_mib\`."
expect 400 PUT /machine-config '{"vcpu_count":2,"mem_size_mib":256,"x":1}' \
	"${SER}unknown field \`x\`, expected one of"
expect 400 PUT /machine-config '{"vcpu_count":"2","mem_size_mib":256}' \
	"${SER}invalid type: string \\\"2\\\", expected u8."
expect 400 PUT /machine-config '{"vcpu_count":300,"mem_size_mib":256}' \
	"${SER}invalid value: integer \`300\`, expected u8."
expect 400 PUT /machine-config '{"vcpu_count":2,"mem_size_mib":256,"smt":1}' \
	"${SER}invalid type: integer \`1\`, expected a boolean."
expect 400 PUT /machine-config '{"vcpu_count":0,"mem_size_mib":256}' \
	'The number of vCPUs must be greater than 0'
expect 400 PUT /machine-config '{"vcpu_count":33,"mem_size_mib":256}' \
	'The number of vCPUs must be greater than 0'
expect 400 PUT /machine-config '{"vcpu_count":3,"mem_size_mib":256,"smt":true}' \
	'The number of vCPUs must be greater than 0'
expect 204 PUT /machine-config '{"vcpu_count":4,"mem_size_mib":256,"smt":true}'
expect 400 PUT /machine-config '{"vcpu_count":1,"mem_size_mib":0}' \
	'The memory size (MiB) is either 0'
expect 400 PUT /machine-config \
	'{"vcpu_count":1,"mem_size_mib":129,"huge_pages":"2M"}' \
	'The memory size (MiB) is either 0'
expect 400 PUT /machine-config \
	'{"vcpu_count":1,"mem_size_mib":128,"cpu_template":"T9"}' \
	"${SER}unknown variant \`T9\`, expected one of"
expect 204 PUT /machine-config '{"vcpu_count":2,"mem_size_mib":512,"cpu_template":"None"}'
expect 400 PATCH /machine-config '{}' 'Empty PATCH request.'
expect 400 PATCH /machine-config '{"vcpu_count":3,"smt":true}' \
	'The number of vCPUs must be greater than 0'
expect 204 PATCH /machine-config '{"mem_size_mib":1024}'
expect 200 GET /machine-config
check "PATCH keeps vcpu_count" [ "$(json_get vcpu_count)" = 2 ]
check "PATCH sets mem_size_mib" [ "$(json_get mem_size_mib)" = 1024 ]
check "PUT reset smt" [ "$(json_get smt)" = False ]

# boot-source
expect 400 PUT /boot-source '{"boot_args":"x"}' \
	"${SER}missing field \`kernel_image_path\`."
expect 400 PUT /boot-source "{\"kernel_image_path\":\"$TMP/none\"}" \
	'The kernel file cannot be opened: No such file or directory (os error 2)'
expect 400 PUT /boot-source \
	"{\"kernel_image_path\":\"$TMP/vmlinux\",\"initrd_path\":\"$TMP/none\"}" \
	'The initrd file cannot be opened due to invalid path or invalid permissions.'
expect 400 PUT /actions '{"action_type":"InstanceStart"}' \
	'Cannot start microvm without kernel configuration.'
expect 204 PUT /boot-source \
	"{\"kernel_image_path\":\"$TMP/vmlinux\",\"initrd_path\":\"$TMP/initrd\",\"boot_args\":\"reboot=k\"}"

# drives
expect 400 PUT /drives/rootfs \
	"{\"drive_id\":\"other\",\"path_on_host\":\"$TMP/rootfs.ext4\",\"is_root_device\":true,\"is_read_only\":false}" \
	'The id from the path does not match the id from the body!'
expect 400 PUT /drives/bad-id '{"drive_id":"bad-id","is_root_device":false}' \
	'API Resource IDs can only contain alphanumeric characters and underscores.'
expect 400 PUT /drives/ '{"drive_id":"x","is_root_device":false}' \
	'The ID cannot be empty.'
expect 400 PUT /drives/rootfs '{"drive_id":"rootfs","path_on_host":"x"}' \
	"${SER}missing field \`is_root_device\`."
expect 400 PUT /drives/rootfs \
	'{"drive_id":"rootfs","path_on_host":"x","is_root_device":"yes"}' \
	"${SER}invalid type: string \\\"yes\\\", expected a boolean."
expect 400 PUT /drives/rootfs \
	"{\"drive_id\":\"rootfs\",\"path_on_host\":\"$TMP/rootfs.ext4\",\"is_root_device\":true,\"io_engine\":\"Fast\"}" \
	"${SER}unknown variant \`Fast\`, expected one of \`Sync\`, \`Async\`."
expect 400 PUT /drives/rootfs \
	"{\"drive_id\":\"rootfs\",\"path_on_host\":\"$TMP/none.ext4\",\"is_root_device\":true,\"is_read_only\":false}" \
	'Unable to create the virtio block device: Error manipulating the backing file: No such file or directory (os error 2)'
expect 400 PUT /drives/rootfs \
	"{\"drive_id\":\"rootfs\",\"path_on_host\":\"$TMP/rootfs.ext4\",\"is_root_device\":true,\"rate_limiter\":{\"ops\":{\"size\":1}}}" \
	"${SER}missing field \`refill_time\`."
expect 204 PUT /drives/rootfs \
	"{\"drive_id\":\"rootfs\",\"path_on_host\":\"$TMP/rootfs.ext4\",\"is_root_device\":true,\"is_read_only\":false}"
expect 400 PUT /drives/second \
	"{\"drive_id\":\"second\",\"path_on_host\":\"$TMP/rootfs.ext4\",\"is_root_device\":true,\"is_read_only\":false}" \
	'A root block device already exists!'
expect 204 PUT /drives/data \
	"{\"drive_id\":\"data\",\"path_on_host\":\"$TMP/data.img\",\"is_root_device\":false,\"is_read_only\":true,\"cache_type\":\"Writeback\"}"
expect 400 PATCH /drives/data "{\"drive_id\":\"data\",\"path_on_host\":\"$TMP/data.img\"}" "$PRE"

# network interfaces
expect 400 PUT /network-interfaces/eth0 '{"iface_id":"eth1","host_dev_name":"tap0"}' \
	'The id from the path does not match the id from the body!'
expect 400 PUT /network-interfaces/eth0 '{"iface_id":"eth0"}' \
	"${SER}missing field \`host_dev_name\`."
expect 400 PUT /network-interfaces/eth0 \
	'{"iface_id":"eth0","host_dev_name":"tap0","mtu":20}' "$SER"
expect 400 PUT /network-interfaces/eth0 \
	'{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"zz"}' "$SER"
expect 204 PUT /network-interfaces/eth0 \
	'{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:ac:10:00:02"}'
expect 400 PUT /network-interfaces/eth1 '{"iface_id":"eth1","host_dev_name":"tap0"}' \
	'The host device name tap0 is already in use.'
expect 400 PATCH /network-interfaces/eth0 '{"iface_id":"eth0"}' "$PRE"

# other pre-boot devices
expect 400 PUT /vsock '{"guest_cid":3}' "${SER}missing field \`uds_path\`."
expect 400 PUT /vsock "{\"guest_cid\":2,\"uds_path\":\"$TMP/v.sock\"}" "$SER"
expect 204 PUT /vsock "{\"guest_cid\":3,\"uds_path\":\"$TMP/v.sock\"}"
expect 204 PUT /entropy '{}'
expect 400 PUT /entropy '{"rate":1}' "${SER}unknown field \`rate\`, expected \`rate_limiter\`."
expect 400 PUT /logger '{"level":"Loud"}' "${SER}unknown variant \`Loud\`"
expect 400 PUT /logger "{\"log_path\":\"$TMP/nolog\"}" 'Failed to open target file'
expect 204 PUT /logger "{\"log_path\":\"$TMP/fc.log\",\"level\":\"debug\",\"show_level\":true}"
expect 204 PUT /metrics "{\"metrics_path\":\"$TMP/metrics.json\"}"
expect 400 PUT /metrics "{\"metrics_path\":\"$TMP/metrics.json\"}" \
	'Reinitialization of metrics not allowed.'
expect 400 PUT /mmds/config '{"network_interfaces":["eth9"]}' \
	'The list of network interface IDs provided contains'
expect 204 PUT /mmds/config '{"network_interfaces":["eth0"],"version":"V2"}'
expect 204 PUT /mmds '{"latest":{"meta-data":{"id":"x"}}}'
expect 200 GET /mmds
expect 400 PUT /balloon '{"amount_mib":0}' "${SER}missing field \`deflate_on_oom\`."
expect 400 GET /balloon '' 'No balloon device found.'
expect 204 PUT /balloon '{"amount_mib":0,"deflate_on_oom":true}'
expect 200 GET /balloon
expect 400 PUT /snapshot/load "{\"snapshot_path\":\"$TMP/s\"}" 'not supported by the Firecracker API emulator'
expect 400 PUT /snapshot/create "{\"snapshot_path\":\"$TMP/s\",\"mem_file_path\":\"$TMP/m\"}" "$PRE"

# actions and VM state before the start
expect 400 PUT /actions '{"action_type":"Reboot"}' \
	"${SER}unknown variant \`Reboot\`, expected one of \`FlushMetrics\`, \`InstanceStart\`, \`SendCtrlAltDel\`."
expect 400 PUT /actions '{}' "${SER}missing field \`action_type\`."
expect 400 PUT /actions '{"action_type":"SendCtrlAltDel"}' "$PRE"
expect 400 PATCH /vm '{"state":"Paused"}' "$PRE"
expect 400 PATCH /vm '{"state":"Stopped"}' "${SER}unknown variant \`Stopped\`"

# full configuration
expect 200 GET /vm/config
check "vm/config boot-source" grep -q "\"kernel_image_path\":\"$TMP/vmlinux\"" <<<"$OUT"
check "vm/config root drive first" grep -q '"drives":\[{"drive_id":"rootfs"' <<<"$OUT"
check "vm/config machine-config" grep -q '"machine-config":{"vcpu_count":2,"mem_size_mib":1024' <<<"$OUT"
check "vm/config network-interfaces" grep -q '"network-interfaces":\[{"iface_id":"eth0","host_dev_name":"tap0"' <<<"$OUT"
check "vm/config vsock" grep -q '"vsock":{"guest_cid":3' <<<"$OUT"

instance_start
expect 200 GET /
check "state is Running" [ "$(json_get state)" = Running ]
expect 400 PUT /actions '{"action_type":"InstanceStart"}' "$POST"
expect 400 PUT /boot-source "{\"kernel_image_path\":\"$TMP/vmlinux\"}" "$POST"
expect 400 PUT /machine-config '{"vcpu_count":1,"mem_size_mib":128}' "$POST"
expect 400 PATCH /machine-config '{"vcpu_count":1}' "$POST"
expect 400 PUT /drives/rootfs \
	"{\"drive_id\":\"rootfs\",\"path_on_host\":\"$TMP/rootfs.ext4\",\"is_root_device\":true,\"is_read_only\":false}" "$POST"
expect 400 PUT /network-interfaces/eth1 '{"iface_id":"eth1","host_dev_name":"tap1"}' "$POST"
expect 400 PUT /logger "{\"log_path\":\"$TMP/fc.log\"}" "$POST"
expect 400 PUT /metrics "{\"metrics_path\":\"$TMP/metrics.json\"}" "$POST"
expect 400 PUT /vsock "{\"guest_cid\":3,\"uds_path\":\"$TMP/v.sock\"}" "$POST"
expect 400 PUT /entropy '{}' "$POST"
expect 400 PUT /balloon '{"amount_mib":0,"deflate_on_oom":true}' "$POST"
# Body checks come before state checks, as in firecracker.
expect 400 PUT /boot-source '{}' "${SER}missing field \`kernel_image_path\`."
expect 204 PATCH /drives/data "{\"drive_id\":\"data\",\"path_on_host\":\"$TMP/data.img\"}"
expect 400 PATCH /drives/data "{\"drive_id\":\"data\",\"path_on_host\":\"$TMP/nothing\"}" \
	'The update operation failed'
expect 400 PATCH /drives/data '{"drive_id":"other"}' \
	'The id from the path does not match the id from the body!'
expect 204 PATCH /network-interfaces/eth0 \
	'{"iface_id":"eth0","rx_rate_limiter":{"bandwidth":{"size":1000,"refill_time":100}}}'
expect 400 PATCH /network-interfaces/eth7 '{"iface_id":"eth7"}' \
	'Invalid interface ID - not found.'
expect 204 PATCH /balloon '{"amount_mib":16}'
expect 204 PUT /actions '{"action_type":"FlushMetrics"}'
check "FlushMetrics wrote a line" grep -q utc_timestamp_ms "$TMP/metrics.json"
expect 204 PATCH /vm '{"state":"Paused"}'
expect 200 GET /
check "state is Paused" [ "$(json_get state)" = Paused ]
expect 204 PATCH /vm '{"state":"Resumed"}'
expect 200 GET /
check "state is Running again" [ "$(json_get state)" = Running ]
check "log shows API requests" grep -q 'The API server received a PUT request on "/actions"' "$TMP/fc.log"
ctrl_alt_del
wait_exit "$PID"
check "SendCtrlAltDel: exit 0" [ "$RC" = 0 ]
check "SendCtrlAltDel: socket removed" [ ! -e "$SOCK" ]

# Keep-alive: one connection for two requests.
start keepalive
wait_socket "$SOCK"
conns=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects} ' --unix-socket "$SOCK" \
	http://localhost/ http://localhost/version)
check "keep-alive: second request reuses the connection ($conns)" \
	[ "$conns" = "1 0 " ]
# Pipelined requests in one write, and one request in small pieces.
/usr/bin/python3 - "$SOCK" >"$TMP/raw" 2>&1 <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b'{"vcpu_count":2,"mem_size_mib":256}'
put = (b"PUT /machine-config HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
       b"\r\n%s" % (len(body), body))
get = b"GET /machine-config HTTP/1.1\r\nHost: x\r\n\r\n"
s.sendall(put + get)
for i in range(0, len(put), 7):
    s.sendall(put[i:i + 7])
    time.sleep(0.002)
s.settimeout(2)
data = b""
while data.count(b"HTTP/1.1 ") < 3:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode())
PY
check "pipelined: 204, 200, 204" \
	[ "$(grep -o 'HTTP/1.1 [0-9]*' "$TMP/raw" | tr '\n' ' ')" = \
	  "HTTP/1.1 204 HTTP/1.1 200 HTTP/1.1 204 " ]
check "pipelined: GET saw the PUT" grep -q '"vcpu_count":2,"mem_size_mib":256' "$TMP/raw"
stop "$PID"

# --- failure injection --------------------------------------------------

start early FCEMU_EXIT_EARLY=7
wait_exit "$PID"
check "FCEMU_EXIT_EARLY=7: exit 7" [ "$RC" = 7 ]
check "FCEMU_EXIT_EARLY: no socket" [ ! -e "$SOCK" ]

# The delay is long enough that the first look comes before the bind even
# on a slow, loaded host.
t0=$(date +%s%N)
start delayed FCEMU_DELAY_BIND_MS=1500
sleep 0.1
check "FCEMU_DELAY_BIND_MS: no socket at first" [ ! -e "$SOCK" ]
check "FCEMU_DELAY_BIND_MS: socket later" wait_socket "$SOCK"
t1=$(date +%s%N)
check "FCEMU_DELAY_BIND_MS: waited >= 1500 ms" [ $(( (t1 - t0) / 1000000 )) -ge 1500 ]
stop "$PID"

start never FCEMU_NEVER_BIND=1
sleep 0.3
check "FCEMU_NEVER_BIND: no socket" [ ! -e "$SOCK" ]
check "FCEMU_NEVER_BIND: still running" kill -0 "$PID"
stop "$PID"

# The child binds long after the parent's exit, which wait_exit notices
# only at its next poll.
start daemon FCEMU_DAEMONIZE=1 FCEMU_DELAY_BIND_MS=1500
wait_exit "$PID"
check "FCEMU_DAEMONIZE: parent exits 0" [ "$RC" = 0 ]
check "FCEMU_DAEMONIZE: parent exits before the socket" [ ! -e "$SOCK" ]
check "FCEMU_DAEMONIZE: child serves" wait_socket "$SOCK"
child=$(sed -n 's/.*on socket .*, pid \([0-9]*\)$/\1/p' "$TMP/daemon.out")
if [ -n "$child" ]; then
	PIDS+=("$child")
	expect 200 GET /
	stop "$child"
else
	bad "FCEMU_DAEMONIZE: child pid not logged"
fi

start fault "FCEMU_START_FAULT=Internal error: KVM is on strike"
wait_socket "$SOCK"
configure
expect 400 PUT /actions '{"action_type":"InstanceStart"}' \
	'Internal error: KVM is on strike'
expect 200 GET /
check "FCEMU_START_FAULT: still Not started" [ "$(json_get state)" = "Not started" ]
stop "$PID"

start hang "FCEMU_HANG_ON=PUT /drives/rootfs"
wait_socket "$SOCK"
curl -s --max-time 0.5 --unix-socket "$SOCK" -X PUT \
	--data '{"drive_id":"rootfs","path_on_host":"/x","is_root_device":true}' \
	http://localhost/drives/rootfs >/dev/null
check "FCEMU_HANG_ON: request times out (curl 28)" [ $? -eq 28 ]
expect 200 GET /
stop "$PID"

start exitcode FCEMU_EXIT_AFTER_START=0.2 FCEMU_EXIT_CODE=3
wait_socket "$SOCK"
configure
t0=$(date +%s%N)
instance_start
wait_exit "$PID"
t1=$(date +%s%N)
check "FCEMU_EXIT_AFTER_START: alive >= 200 ms after start" \
	[ $(( (t1 - t0) / 1000000 )) -ge 200 ]
check "FCEMU_EXIT_AFTER_START/EXIT_CODE=3: exit 3" [ "$RC" = 3 ]
check "FCEMU_EXIT_AFTER_START: socket removed" [ ! -e "$SOCK" ]

start exitdefault FCEMU_EXIT_AFTER_START=0
wait_socket "$SOCK"
configure
instance_start
wait_exit "$PID"
check "FCEMU_EXIT_AFTER_START=0: exit 0 (default code)" [ "$RC" = 0 ]

start crash FCEMU_EXIT_AFTER_START=0.1 FCEMU_EXIT_SIGNAL=9
wait_socket "$SOCK"
configure
instance_start
wait_exit "$PID"
check "FCEMU_EXIT_SIGNAL=9: killed by SIGKILL (137)" [ "$RC" = 137 ]
check "FCEMU_EXIT_SIGNAL: socket left behind like a crash" [ -S "$SOCK" ]

start stubborn FCEMU_CTRLALTDEL_MS=-1
wait_socket "$SOCK"
configure
instance_start
ctrl_alt_del
sleep 0.3
check "FCEMU_CTRLALTDEL_MS=-1: guest ignores Ctrl+Alt+Del" kill -0 "$PID"
kill -TERM "$PID"
wait_exit "$PID"
check "SIGTERM ends it (143)" [ "$RC" = 143 ]

start paused
wait_socket "$SOCK"
configure
instance_start
expect 204 PATCH /vm '{"state":"Paused"}'
ctrl_alt_del
sleep 0.3
check "paused guest does not react to Ctrl+Alt+Del" kill -0 "$PID"
expect 204 PATCH /vm '{"state":"Resumed"}'
wait_exit "$PID"
check "resumed guest shuts down: exit 0" [ "$RC" = 0 ]

# --- concurrency: 50 emulators sharing one trace -------------------------

N=50
for i in $(seq 1 $N); do
	start "c$i" "FCEMU_TRACE=$TMP/shared.trace"
	cpid[$i]=$PID
done
t0=$(date +%s%N)
for i in $(seq 1 $N); do
	SOCK=$TMP/c$i.sock
	wait_socket "$SOCK" || bad "c$i: no socket"
	(
		SOCK=$TMP/c$i.sock
		curl -s --unix-socket "$SOCK" -X PUT \
			-d "{\"kernel_image_path\":\"$TMP/vmlinux\"}" \
			http://localhost/boot-source
		curl -s --unix-socket "$SOCK" -X PUT \
			-d '{"action_type":"InstanceStart"}' http://localhost/actions
		curl -s --unix-socket "$SOCK" -X PUT \
			-d '{"action_type":"SendCtrlAltDel"}' http://localhost/actions
	) &
done
wait_all_ok=0
for i in $(seq 1 $N); do
	wait_exit "${cpid[$i]}" 10
	[ "$RC" = 0 ] && wait_all_ok=$((wait_all_ok + 1))
done
t1=$(date +%s%N)
check "50 concurrent emulators all exit 0 ($wait_all_ok/$N)" [ "$wait_all_ok" = $N ]
echo "50 emulators configured, started and stopped in $(( (t1 - t0) / 1000000 )) ms"
check "shared trace: one whole line per request" \
	[ "$(/usr/bin/python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)))' "$TMP/shared.trace" 2>/dev/null)" = $((N * 3)) ]

# --- the trace of valid requests against the official spec ---------------

start valid "FCEMU_TRACE=$TMP/valid.trace"
wait_socket "$SOCK"
expect 200 GET /
expect 200 GET /version
expect 200 GET /machine-config
expect 204 PUT /machine-config '{"vcpu_count":2,"mem_size_mib":256,"smt":false,"track_dirty_pages":false}'
# The spec's PATCH takes a whole MachineConfiguration; firecracker a part.
expect 204 PATCH /machine-config '{"vcpu_count":2,"mem_size_mib":512}'
expect 204 PUT /boot-source \
	"{\"kernel_image_path\":\"$TMP/vmlinux\",\"initrd_path\":\"$TMP/initrd\",\"boot_args\":\"console=ttyS0 reboot=k panic=1\"}"
configure
expect 204 PUT /drives/data \
	"{\"drive_id\":\"data\",\"path_on_host\":\"$TMP/data.img\",\"is_root_device\":false,\"is_read_only\":true,\"cache_type\":\"Unsafe\",\"io_engine\":\"Sync\",\"rate_limiter\":{\"bandwidth\":{\"size\":1048576,\"refill_time\":1000},\"ops\":{\"size\":100,\"one_time_burst\":10,\"refill_time\":1000}}}"
expect 204 PUT /network-interfaces/eth0 \
	'{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"06:00:ac:10:00:02","mtu":1500}'
expect 204 PUT /logger "{\"log_path\":\"$TMP/fc.log\",\"level\":\"Info\",\"show_level\":false,\"show_log_origin\":false}"
expect 204 PUT /metrics "{\"metrics_path\":\"$TMP/metrics.json\"}"
expect 204 PUT /vsock "{\"guest_cid\":3,\"uds_path\":\"$TMP/v.sock\"}"
expect 204 PUT /entropy '{}'
expect 204 PUT /mmds/config '{"network_interfaces":["eth0"]}'
expect 204 PUT /mmds '{"instance":{"id":"i-1"}}'
expect 200 GET /mmds
expect 200 GET /vm/config
instance_start
expect 200 GET /
expect 204 PATCH /drives/data "{\"drive_id\":\"data\",\"path_on_host\":\"$TMP/data.img\"}"
expect 204 PATCH /network-interfaces/eth0 '{"iface_id":"eth0"}'
expect 204 PUT /actions '{"action_type":"FlushMetrics"}'
expect 204 PATCH /vm '{"state":"Paused"}'
expect 204 PATCH /vm '{"state":"Resumed"}'
ctrl_alt_del
wait_exit "$PID"
check "valid session ends with exit 0" [ "$RC" = 0 ]

CHECKER=${SHARED:+$SHARED/tools/fc-api-check}
if [ -n "$SHARED" ] && [ -x "$CHECKER" ] && \
   [ -f "$SHARED/firecracker/firecracker-api.yaml" ]; then
	if /usr/bin/python3 "$CHECKER" "$TMP/valid.trace" >"$TMP/check.out" 2>&1; then
		ok
	else
		bad "fc-api-check rejects the emulator's valid requests:"
		cat "$TMP/check.out"
	fi
	tail -n 1 "$TMP/check.out"
	# The checker must also see the invalid ones: it is not vacuous.
	printf '%s\n' '{"method":"PUT","path":"/drives/a","body":{"drive_id":"b","is_root_device":true}}' \
		>"$TMP/invalid.trace"
	/usr/bin/python3 "$CHECKER" "$TMP/invalid.trace" >/dev/null 2>&1
	check "fc-api-check flags a mismatched drive id" [ $? -eq 1 ]
else
	echo "SKIP: fc-api-check: shared dir '${SHARED:-unset}' lacks" \
		"tools/fc-api-check or firecracker/firecracker-api.yaml"
fi

echo "emulator: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
