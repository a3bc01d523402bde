#!/bin/bash
# Lifecycle: create, start, stop, start, delete. After each start returns,
# the VMM must still be alive one second later and answer GET / with
# state "Running" (a VMM tied to the starting program would be gone).
. "$(dirname "$0")/lib.sh"

vm=$P-life

# started WHAT: the VM runs, its VMM is alive and answers "Running" a
# second after vmctl has exited.
started() {
    local what=$1 pid sock state
    sleep 1
    pid=$(field "$vm" pid)
    sock=$(field "$vm" api_socket)
    state=$(field "$vm" state)
    [ "$state" = running ] || fail "$what: show says state '$state', expected running"
    if ! is_vmm "$pid"; then
        fail "$what: pid '$pid' from show is not a live emulator of this test"
        return
    fi
    state=$(api "$sock" / | json 'd["state"]' 2>/dev/null)
    if [ "$state" = Running ]; then
        pass "$what: VMM $pid alive a second later, GET / says Running"
    else
        fail "$what: GET / on $sock: state '$state', expected Running"
    fi
}

expect_ok "create --netns" create "$vm" --netns --vcpus 2 --memory 256 &&
    pass "create $vm"
[ "$(field "$vm" state)" = stopped ] || fail "a new VM is not stopped"
[ "$(field "$vm" netns)" = "libvmm-$vm" ] ||
    note "own namespace is '$(field "$vm" netns)'"
ns=$(field "$vm" netns)
tap=$(field "$vm" tap)
if [ -n "$ns" ] && [ "$ns" != null ] && ip netns list | grep -qw -- "$ns"; then
    pass "own namespace $ns exists"
else
    fail "create --netns: namespace '$ns' does not exist"
fi

expect_ok "start (1)" vmctl start "$vm" && started "start (1)"
pid1=$(field "$vm" pid)
ip -n "$ns" link show "$tap" >/dev/null 2>&1 && pass "tap $tap is in $ns" ||
    fail "tap '$tap' not found in namespace '$ns'"

# A second start of a running VM is refused and leaves it running.
expect_error "start while running" "running" vmctl start "$vm"
[ "$(field "$vm" pid)" = "$pid1" ] || fail "a refused start changed the VMM"

expect_ok "stop" vmctl stop "$vm" --timeout 5 && pass "stop"
[ "$(field "$vm" state)" = stopped ] || fail "after stop: state $(field "$vm" state)"
wait_gone "$pid1" 5 || fail "after stop: VMM $pid1 still alive"
[ -e "$(dirname "$(field "$vm" api_socket)")/api.sock" ] &&
    fail "after stop: the API socket is still there"
expect_ok "stop again (stopped)" vmctl stop "$vm" && pass "stopping a stopped VM succeeds"

expect_ok "start (2)" vmctl start "$vm" --timeout 10 && started "start (2)"
pid2=$(field "$vm" pid)
[ "$pid2" != "$pid1" ] || fail "the second start reports the old pid"

# logs prints the VMM's log; the emulator logs its start-up line there.
if expect_ok "logs" vmctl logs "$vm"; then
    [ -n "$out" ] && pass "logs: $(printf '%s\n' "$out" | wc -l) lines" ||
        fail "logs printed nothing"
fi

# Deleting a running VM needs --force.
expect_error "delete while running" "running|force" vmctl delete "$vm"
is_vmm "$pid2" || fail "a refused delete ended the VMM"
expect_ok "delete --force" vmctl delete --force "$vm" && pass "delete --force"
wait_gone "$pid2" 5 || fail "after delete: VMM $pid2 still alive"
ip netns list | grep -qw -- "$ns" && fail "after delete: namespace $ns is still there"
expect_error "show after delete" "$vm|not found|no such" vmctl show "$vm"
check_clean "lifecycle"

finish
