#!/bin/bash
# The VMM killed from outside (kill -9 of its pid): show says stopped and
# how it ended, ssh says the VM is not running instead of trying, start
# works again, and delete removes the tap, the disk and the VM directory.
. "$(dirname "$0")/lib.sh"

vm=$P-kld

expect_ok "create" create "$vm" --netns || finish
expect_ok "start" vmctl start "$vm"
pid=$(field "$vm" pid)
ns=$(field "$vm" netns)
tap=$(field "$vm" tap)
disk=$(field "$vm" disk)
dir=$(dirname "$(field "$vm" api_socket)")
is_vmm "$pid" || fail "after start: pid '$pid' is not a live emulator"

kill -9 "$pid"
wait_gone "$pid" 5 || fail "VMM $pid survived kill -9"

expect_ok "show after kill -9" vmctl show "$vm" --json
state=$(printf '%s' "$out" | json 'd["state"]')
last=$(printf '%s' "$out" | json 'd["last_exit"]')
spid=$(printf '%s' "$out" | json 'd["pid"]')
[ "$state" = stopped ] && pass "show: stopped after kill -9" ||
    fail "show after kill -9 of the VMM: state '$state', expected stopped"
[ "$spid" = null ] || fail "show after kill -9: pid '$spid', expected null"
if [[ $last == *9* || $last == *KILL* ]]; then
    pass "last_exit: $last"
else
    fail "show after kill -9: last_exit '$last' does not name signal 9"
fi
expect_ok "list after kill -9" vmctl list --json
states=$(printf '%s' "$out" | json "[v['state'] for v in d if v['name'] == '$vm']")
[ "$states" = '["stopped"]' ] ||
    fail "list after kill -9: $out"

# ssh must not try to connect to a dead VM.
run vmctl ssh "$vm" -- true
if [ "$rc" -eq 3 ] && [[ $err == *"is not running"* ]]; then
    pass "ssh: $err"
else
    fail "ssh to a killed VM: exit $rc, stderr '$err' (expected exit 3, 'is not running')"
fi
[[ $err == *"last exit"* ]] || fail "ssh's message does not give the last exit: $err"

expect_ok "start after kill -9" vmctl start "$vm"
sleep 1
pid2=$(field "$vm" pid)
is_vmm "$pid2" && pass "restarted: VMM $pid2" || fail "restart: pid '$pid2' is not a live emulator"
[ "$(api "$(field "$vm" api_socket)" / | json 'd["state"]' 2>/dev/null)" = Running ] ||
    fail "restart: GET / does not say Running"

# Kill it again, then delete: everything goes.
kill -9 "$pid2"
wait_gone "$pid2" 5
ip -n "$ns" link show "$tap" >/dev/null 2>&1 && pass "tap $tap exists in $ns before delete" ||
    fail "tap '$tap' missing from namespace '$ns' before delete"
[ -e "$disk" ] || fail "disk '$disk' missing before delete"
expect_ok "delete" vmctl delete "$vm"
if ip netns list | grep -qw -- "$ns"; then
    ip -n "$ns" link show "$tap" >/dev/null 2>&1 && fail "after delete: tap $tap still in $ns"
    fail "after delete: own namespace $ns still exists"
else
    pass "after delete: namespace $ns (and tap $tap with it) gone"
fi
[ -e "$disk" ] && fail "after delete: disk $disk still exists"
[ -e "$dir" ] && fail "after delete: VM directory $dir still exists"
check_clean "vmm-killed"

finish
