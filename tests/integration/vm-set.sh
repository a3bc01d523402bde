#!/bin/bash
# vm-set: create --vcpus 2, start, stop, set --vcpus 4 (and --memory),
# start: the VMM must be configured with the new values, as GET
# /machine-config reports them. set on a running VM is refused.
. "$(dirname "$0")/lib.sh"

vm=$P-set

machine() {
    api "$(field "$vm" api_socket)" /machine-config | json "d[\"$1\"]" 2>/dev/null
}

expect_ok "create --vcpus 2" create "$vm" --no-net --vcpus 2 --memory 256 || finish
[ "$(field "$vm" vcpus)" = 2 ] || fail "show: vcpus $(field "$vm" vcpus), expected 2"
expect_ok "start" vmctl start "$vm"
[ "$(machine vcpu_count)" = 2 ] && pass "machine-config: 2 vCPUs" ||
    fail "machine-config after the first start: vcpu_count '$(machine vcpu_count)', expected 2"
[ "$(machine mem_size_mib)" = 256 ] ||
    fail "machine-config: mem_size_mib '$(machine mem_size_mib)', expected 256"

# Refused while running, and nothing changes.
expect_error "set --vcpus on a running VM" "running|stop" vmctl set "$vm" --vcpus 4
[ "$(field "$vm" vcpus)" = 2 ] || fail "a refused set changed vcpus to $(field "$vm" vcpus)"

expect_ok "stop" vmctl stop "$vm"
expect_ok "set --vcpus 4 --memory 384" vmctl set "$vm" --vcpus 4 --memory 384 &&
    pass "set on a stopped VM"
[ "$(field "$vm" vcpus)" = 4 ] || fail "show after set: vcpus $(field "$vm" vcpus), expected 4"
[ "$(field "$vm" memory_mib)" = 384 ] ||
    fail "show after set: memory_mib $(field "$vm" memory_mib), expected 384"

# Bad values are refused and change nothing.
expect_error "set --vcpus 3" "vcpu" vmctl set "$vm" --vcpus 3
expect_error "set --vcpus 34" "vcpu" vmctl set "$vm" --vcpus 34
expect_error "set --memory 127" "memory|128" vmctl set "$vm" --memory 127
expect_error "set without a value" "nothing to set|vcpus|memory" vmctl set "$vm"
[ "$(field "$vm" vcpus)" = 4 ] || fail "refused sets changed vcpus to $(field "$vm" vcpus)"

expect_ok "start again" vmctl start "$vm"
[ "$(machine vcpu_count)" = 4 ] && pass "machine-config: 4 vCPUs after set" ||
    fail "machine-config after set --vcpus 4: vcpu_count '$(machine vcpu_count)', expected 4"
[ "$(machine mem_size_mib)" = 384 ] && pass "machine-config: 384 MiB after set" ||
    fail "machine-config after set --memory 384:" \
        "mem_size_mib '$(machine mem_size_mib)', expected 384"

expect_ok "kill" vmctl kill "$vm"
[ "$(field "$vm" state)" = stopped ] || fail "after kill: state $(field "$vm" state)"
expect_ok "delete" vmctl delete "$vm"
check_clean "vm-set"

finish
