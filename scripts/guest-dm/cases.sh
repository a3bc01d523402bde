#!/bin/bash
# The job of the dm-snapshot test guest, run by its init as root, on a
# kernel with dm-mod, dm-snapshot and loop: libvmm's Check suites that
# need device-mapper, then vmctl's dm-snapshot cases against the Firecracker
# API emulator in fast mode (no guest of its own, no network).
#
# Each check prints "ok: ..." or "FAIL: ..."; the exit status is 1 when
# any check failed.  Everything lives under $W; VM names start with "dg".

set -u

readonly OPT=/opt/libvmm-dm
readonly VMCTL=$OPT/bin/vmctl
readonly FCEMU=$OPT/bin/fc-emulator
readonly W=/var/tmp/dm-cases
readonly STATE=$W/s
# dm-snapshot's removal retries take about 6 s; allow for slow emulation.
readonly BUSY_BOUND=40
# Bugs outside the dm driver that these cases reproduce (see known()).
readonly KNOWN_BUGS=""
export LD_LIBRARY_PATH=$OPT/lib
# The emulator appends every API request it serves here.
export FCEMU_TRACE=$W/trace.jsonl

failures=0
err=
rc=0

ok() {
	echo "ok: $*"
}

fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# known NAME FAILURES-BEFORE WHY...: a bug outside the dm driver, listed
# in KNOWN_BUGS, does not count while it is listed; once it no longer
# reproduces, this says so, and its name should leave the list.
known() {
	local name=$1 before=$2

	shift 2
	case " $KNOWN_BUGS " in *" $name "*) ;; *) return 0 ;; esac
	if [ "$failures" -gt "$before" ]; then
		failures=$before
		echo "KNOWN: $name: the failure above is a known bug ($*);" \
			"not counted while KNOWN_BUGS lists it"
	else
		echo "NOTE: known bug $name no longer reproduces; remove it" \
			"from KNOWN_BUGS in $0"
	fi
}

section() {
	echo
	echo "=== $* ($(date +%T))"
}

vmctl() {
	"$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" "$@"
}

# run CMD...: stderr in $err, status in $rc (stdout is dropped).
run() {
	"$@" >/dev/null 2>"$W/.err"
	rc=$?
	err=$(cat "$W/.err")
}

# expect_eq WHAT GOT WANT
expect_eq() {
	if [ "$2" = "$3" ]; then
		ok "$1: $3"
	else
		fail "$1: '$2', expected '$3'"
	fi
}

# expect_match WHAT TEXT EXTENDED-REGEX
expect_match() {
	if grep -qE -- "$3" <<<"$2"; then
		ok "$1"
	else
		fail "$1: '$2' does not match /$3/"
	fi
}

# expect_ok WHAT CMD...
expect_ok() {
	local what=$1

	shift
	run "$@"
	if [ "$rc" -ne 0 ]; then
		fail "$what: exit $rc: $err"
		return 1
	fi
	ok "$what"
}

# expect_fail WHAT PATTERN CMD...: must fail, stderr matching PATTERN.
expect_fail() {
	local what=$1 pattern=$2

	shift 2
	run "$@"
	if [ "$rc" -eq 0 ]; then
		fail "$what: succeeded; expected an error matching /$pattern/"
		return 1
	fi
	if ! grep -qiE -- "$pattern" <<<"$err"; then
		fail "$what: exit $rc, but stderr does not match /$pattern/: $err"
		return 1
	fi
	ok "$what: $(head -n1 <<<"$err")"
}

# check WHAT CONDITION...: the command must succeed (quietly).
check() {
	local what=$1

	shift
	if "$@" >/dev/null 2>&1; then
		ok "$what"
	else
		fail "$what"
	fi
}

field() {
	vmctl show "$1" --json 2>/dev/null |
		sed -n "s/.*\"$2\": *\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" | head -n1
}

dm_name() {
	echo "libvmm-$1"
}

# Loop devices whose backing file is under $W, or whose lo_file_name is
# one of libvmm's for VM $1 ("libvmm-NAME:base", "libvmm-NAME:cow").
loops_of() {
	local l

	for l in /sys/block/loop*; do
		[ -r "$l/loop/backing_file" ] || continue
		if grep -q "^$W/" "$l/loop/backing_file" ||
			losetup -n -O NAME,BACK-FILE "/dev/${l##*/}" 2>/dev/null |
			grep -q "libvmm-$1:"; then
			echo "/dev/${l##*/}"
		fi
	done
}

# nothing_left NAME WHAT: no dm device, loop device or process of VM NAME.
nothing_left() {
	local name=$1 what=$2 dm loops procs

	dm=$(dmsetup ls 2>/dev/null | awk -v n="$(dm_name "$name")" '$1 == n')
	loops=$(loops_of "$name" | tr '\n' ' ')
	procs=$(pgrep -f "fc-emulator.*$STATE/vms/$name/" | tr '\n' ' ')
	if [ -n "$dm$loops$procs" ]; then
		fail "$what: left behind: dm '$dm' loops '$loops' processes '$procs'"
		dmsetup ls >&2
		losetup -a >&2
		return 1
	fi
	ok "$what: no dm device, loop device or VMM left"
}

# The loop device behind major:minor $1 and its backing file.
backing_of() {
	cat "/sys/dev/block/$1/loop/backing_file" 2>/dev/null
}

# The COW's backing file of VM $1's snapshot table ("" without a device).
table_cow_file() {
	local t

	t=$(dmsetup table "$(dm_name "$1")" 2>/dev/null) || return 0
	# 0 SECTORS snapshot ORIGIN COW P 8
	backing_of "$(awk '{print $5}' <<<"$t")"
}

make_base() {
	local tree=$W/tree

	rm -rf "$tree"
	mkdir -p "$tree/etc/network" "$tree/root/.ssh" "$tree/etc/ssh"
	echo base >"$tree/etc/hostname"
	printf '127.0.0.1 localhost\n' >"$tree/etc/hosts"
	printf 'auto lo\niface lo inet loopback\n' >"$tree/etc/network/interfaces"
	echo "from the base image" >"$tree/etc/motd"
	mkfs.ext4 -q -F -L dg-base -d "$tree" "$W/base.ext4" 128M ||
		return 1
	head -c 4096 /dev/urandom >"$W/vmlinux"
	echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRtLWd1ZXN0LXRlc3Qta2V5LW5vdC1yZWFsLWF0LWFsbA dm-guest" \
		>"$W/key.pub"
}

create() {
	vmctl create "$1" --kernel "$W/vmlinux" --rootfs "$W/base.ext4" \
		--ssh-key "$W/key.pub" --no-net --memory 128 "${@:2}"
}

# --- the environment --------------------------------------------------------

environment() {
	local prog missing

	section "environment"
	check "device-mapper is registered" grep -qw device-mapper /proc/misc
	check "dm-snapshot is loaded" test -d /sys/module/dm_snapshot
	check "loop is loaded" test -e /dev/loop-control
	check "/dev/mapper/control exists" test -c /dev/mapper/control
	check "dmsetup answers" dmsetup version
	for prog in "$VMCTL" "$FCEMU" "$OPT"/tests/*; do
		missing=$(ldd "$prog" 2>&1 | grep 'not found')
		if [ -n "$missing" ]; then
			fail "$prog lacks libraries: $missing"
		else
			ok "$(basename "$prog") finds all its libraries"
		fi
	done
}

# --- the Check suites ---------------------------------------------------------

# Here a skip (77) is a failure: this guest has everything they need.
check_suites() {
	local t status

	for t in "$OPT"/tests/*; do
		section "$(basename "$t")"
		(cd /var/tmp && CK_VERBOSITY=verbose CK_DEFAULT_TIMEOUT=300 "$t")
		status=$?
		if [ $status -eq 0 ]; then
			ok "$(basename "$t") passed"
		else
			fail "$(basename "$t") exited $status (77 is a skip, which" \
				"must not happen on this kernel)"
		fi
	done
}

# --- vmctl cases ------------------------------------------------------------

# create --overlay dm-snapshot, start, prep on the dm device, stop, start
# again with the COW's writes kept, delete.
vm_life() {
	local vm=dglife dev md5_before

	section "vmctl create --overlay dm-snapshot: life"
	md5_before=$(md5sum <"$W/base.ext4")
	expect_ok "create $vm --overlay dm-snapshot" create "$vm" \
		--overlay dm-snapshot || return
	expect_eq "show: overlay_driver" "$(field "$vm" overlay_driver)" dm-snapshot
	check "the COW exists" test -f "$STATE/vms/$vm/cow.img"
	check "the COW is sparse (under 1 MiB allocated)" \
		test "$(du -k "$STATE/vms/$vm/cow.img" | cut -f1)" -lt 1024
	nothing_left "$vm" "after create"

	expect_ok "start $vm" vmctl start "$vm" || return
	dev=/dev/mapper/$(dm_name "$vm")
	check "$dev exists" test -b "$dev"
	expect_match "the VMM was given $dev as its root drive" \
		"$(grep drives "$FCEMU_TRACE")" "\"path_on_host\": *\"$dev\""
	expect_match "table: persistent snapshot, 4 KiB chunks" \
		"$(dmsetup table "$(dm_name "$vm")")" ' snapshot .* P 8$'
	expect_eq "the snapshot's COW" "$(table_cow_file "$vm")" \
		"$STATE/vms/$vm/cow.img"
	expect_eq "prep patched /etc/hostname on the dm device" \
		"$(debugfs -R 'cat /etc/hostname' "$dev" 2>/dev/null)" "$vm"
	expect_match "prep wrote authorized_keys on the dm device" \
		"$(debugfs -R 'cat /root/.ssh/authorized_keys' "$dev" 2>/dev/null)" dm-guest
	# What the guest would write while it runs.
	echo "written by the guest" >"$W/guest-file"
	debugfs -w -R "write $W/guest-file /etc/guest-file" "$dev" >/dev/null 2>&1
	expect_eq "the base image is unchanged" "$(md5sum <"$W/base.ext4")" \
		"$md5_before"

	expect_ok "stop $vm" vmctl stop "$vm"
	nothing_left "$vm" "after stop"
	expect_ok "start $vm again" vmctl start "$vm" || return
	expect_eq "the COW kept the first boot's write across a restart" \
		"$(debugfs -R 'cat /etc/guest-file' "$dev" 2>/dev/null)" \
		"written by the guest"
	expect_ok "kill $vm" vmctl kill "$vm"
	expect_ok "delete $vm" vmctl delete "$vm"
	check "$vm's directory is gone" test ! -e "$STATE/vms/$vm"
	nothing_left "$vm" "after delete"
	expect_eq "the base image is still unchanged" \
		"$(md5sum <"$W/base.ext4")" "$md5_before"
}

vm_auto() {
	local vm=dgauto

	section "vmctl create --overlay auto"
	expect_ok "create $vm --overlay auto" vmctl -v create "$vm" \
		--kernel "$W/vmlinux" --rootfs "$W/base.ext4" \
		--ssh-key "$W/key.pub" --no-net --memory 128 --overlay auto || return
	expect_match "auto said it picked dm-snapshot" "$err" \
		"overlay driver dm-snapshot"
	expect_eq "auto picked" "$(field "$vm" overlay_driver)" dm-snapshot
	expect_ok "start $vm" vmctl start "$vm"
	check "/dev/mapper/$(dm_name "$vm") exists" \
		test -b "/dev/mapper/$(dm_name "$vm")"
	expect_ok "stop $vm" vmctl stop "$vm"
	expect_ok "delete $vm" vmctl delete "$vm"
	nothing_left "$vm" "auto: after delete"
}

# A process that holds the stopped VM's device open: removal retries a
# bounded time, then fails naming that pid; once it lets go, delete works.
vm_busy() {
	local vm=dgbusy dev holder started took

	section "removal while a process holds the device"
	expect_ok "create $vm" create "$vm" --overlay dm-snapshot || return
	expect_ok "start $vm" vmctl start "$vm" || return
	dev=/dev/mapper/$(dm_name "$vm")
	# A subshell that opens the device, then becomes sleep: one pid.
	(
		exec 7<"$dev"
		exec sleep 3600
	) &
	holder=$!
	sleep 0.5
	expect_ok "stop $vm while pid $holder holds $dev" vmctl stop "$vm"
	check "$dev is still there (held)" test -b "$dev"
	started=$(date +%s)
	expect_fail "delete while held names pid $holder" \
		"(busy|in use).*(^|[^0-9])$holder([^0-9]|$)" vmctl delete "$vm"
	took=$(($(date +%s) - started))
	check "the busy removal gave up after $took s (bound $BUSY_BOUND s)" \
		test "$took" -le "$BUSY_BOUND"
	kill "$holder"
	wait "$holder" 2>/dev/null
	# The failed delete left the VM "being deleted"; the next delete
	# finishes that and succeeds.
	run vmctl delete "$vm"
	if [ "$rc" -eq 0 ]; then
		ok "delete once the holder is gone${err:+: $err}"
	else
		fail "delete once the holder is gone: exit $rc: $err"
	fi
	check "$vm's directory is gone" test ! -e "$STATE/vms/$vm"
	nothing_left "$vm" "busy: after delete"
}

# A COW too small for the writes: the kernel invalidates the snapshot,
# and the next start refuses it, leaving nothing behind.
vm_small_cow() {
	local vm=dgsmall dev status

	section "a COW too small for the writes"
	expect_ok "create $vm" create "$vm" --overlay dm-snapshot || return
	truncate -s 1M "$STATE/vms/$vm/cow.img"
	expect_ok "start $vm with a 1 MiB COW" vmctl start "$vm" || return
	dev=/dev/mapper/$(dm_name "$vm")
	dd if=/dev/urandom of="$dev" bs=1M count=8 seek=16 oflag=direct \
		status=none 2>/dev/null
	status=$(dmsetup status "$(dm_name "$vm")" 2>&1)
	expect_match "the kernel invalidated the snapshot" "$status" Invalid
	expect_ok "stop $vm" vmctl stop "$vm"
	nothing_left "$vm" "small COW: after stop"
	expect_fail "start refuses the invalidated COW" "invalidated" \
		vmctl start "$vm"
	expect_eq "$vm's state after the refused start" \
		"$(field "$vm" state)" stopped
	nothing_left "$vm" "small COW: after the refused start"
	expect_ok "delete $vm" vmctl delete "$vm"
	nothing_left "$vm" "small COW: after delete"
}

# A crash leaves the dm device and its loop devices; then the VM's state
# (record, COW file and all) is lost.  A new VM of that name must not be
# given the stale snapshot, and its start and delete clean the leftovers.
vm_crash() {
	local vm=dgcrash pid old_loops cow

	section "leftovers of a crash, state gone"
	expect_ok "create $vm" create "$vm" --overlay dm-snapshot || return
	expect_ok "start $vm" vmctl start "$vm" || return
	pid=$(field "$vm" pid)
	kill -KILL "$pid" 2>/dev/null
	sleep 0.5
	old_loops=$(loops_of "$vm" | tr '\n' ' ')
	rm -rf "${STATE:?}/vms/$vm"
	check "the dm device outlived the crash" \
		test -b "/dev/mapper/$(dm_name "$vm")"
	expect_eq "loop devices that outlived it ($old_loops)" \
		"$(wc -w <<<"$old_loops")" 2

	expect_ok "create $vm again" create "$vm" --overlay dm-snapshot || return
	expect_ok "start the new $vm" vmctl start "$vm" || return
	cow=$(table_cow_file "$vm")
	expect_eq "the new $vm's snapshot is on its own COW" "$cow" \
		"$STATE/vms/$vm/cow.img"
	expect_ok "stop $vm" vmctl stop "$vm"
	expect_ok "delete $vm" vmctl delete "$vm"
	nothing_left "$vm" "crash: after delete"
}

# A crash leaves the dm device and its loop devices, and the VM's record
# is lost while its directory (with the COW) stays.  Opening the VM by
# name finds an unfinished VM and clears it away: the dm device and the
# loop devices must go with it.
vm_record_gone() {
	local vm=dgrecord pid before

	section "leftovers of a crash, record gone"
	expect_ok "create $vm" create "$vm" --overlay dm-snapshot || return
	expect_ok "start $vm" vmctl start "$vm" || return
	pid=$(field "$vm" pid)
	kill -KILL "$pid" 2>/dev/null
	sleep 0.5
	rm -f "$STATE/vms/$vm/vm.json"
	check "the dm device outlived the crash" \
		test -b "/dev/mapper/$(dm_name "$vm")"
	run vmctl delete "$vm"
	echo "# delete without a record: exit $rc: $err"
	check "$vm's directory is gone" test ! -e "$STATE/vms/$vm"
	before=$failures
	nothing_left "$vm" "record gone: after delete"
	known record-gone "$before" "lib/vm.c's teardown() skips" \
		"overlay_destroy() when vm.json is missing"

	# Whatever stayed, a new VM of that name must not inherit it, and
	# its start and delete clear it.
	expect_ok "create $vm again" create "$vm" --overlay dm-snapshot || return
	expect_ok "start the new $vm" vmctl start "$vm" || return
	expect_eq "the new $vm's snapshot is on its own COW" \
		"$(table_cow_file "$vm")" "$STATE/vms/$vm/cow.img"
	expect_ok "stop $vm" vmctl stop "$vm"
	expect_ok "delete $vm" vmctl delete "$vm"
	nothing_left "$vm" "record gone: after the new VM's delete"
}

main() {
	rm -rf "$W"
	mkdir -p "$W" "$STATE" || exit 1
	environment
	check_suites
	section "vmctl cases"
	if make_base; then
		ok "made a base image and a kernel file"
		vm_life
		vm_auto
		vm_busy
		vm_small_cow
		vm_crash
		vm_record_gone
	else
		fail "cannot make the base image"
	fi
	section "done"
	echo "$failures check(s) failed"
	[ "$failures" -eq 0 ]
}

main "$@"
