#!/bin/bash
# Corrupt and truncated state files: list still shows the other VMs and
# names each bad file's path (exit status 0, the errors also on stderr);
# show of a bad record fails naming its path; good VMs keep working; a bad
# record goes only with delete --force, and then completely.
. "$(dirname "$0")/lib.sh"

good=$P-good
for n in good garbage trunc empty; do
    expect_ok "create $P-$n" create "$P-$n" --no-net || finish
done
rec() { echo "$STATE/vms/$P-$1/vm.json"; }
for n in garbage trunc empty; do
    if [ ! -f "$(rec $n)" ]; then
        fail "no record at $(rec $n); the layout is not vms/NAME/vm.json"
        finish
    fi
done

printf '{"name": "%s", \x01\xff garbage' "$P-garbage" >"$(rec garbage)"
size=$(stat -c %s "$(rec trunc)")
truncate -s $((size / 2)) "$(rec trunc)"
: >"$(rec empty)"

run vmctl list --json
[ "$rc" -eq 0 ] && pass "list exits 0 with bad records" || fail "list --json: exit $rc: $err"
n=$(printf '%s' "$out" | json 'len(d)' 2>/dev/null)
[ "$n" = 4 ] || fail "list --json: $n entries, expected 4: $out"
states=$(printf '%s' "$out" | json "[v['state'] for v in d if v['name'] == '$good']")
[ "$states" = '["stopped"]' ] &&
    pass "the good VM is listed" || fail "list --json hides the good VM: $out"
for n in garbage trunc empty; do
    e=$(printf '%s' "$out" | json "[v.get('error') for v in d if v['name'] == '$P-$n']" 2>/dev/null)
    if [[ $e == *"$(rec $n)"* ]]; then
        pass "list names $(rec $n): $e"
    else
        fail "list --json: the entry of $P-$n does not name $(rec $n): $e"
    fi
    [[ $err == *"$(rec $n)"* ]] || fail "list: stderr does not name $(rec $n): $err"
done

run vmctl list
[ "$rc" -eq 0 ] || fail "plain list: exit $rc"
printf '%s\n' "$out" | grep -q "^$good " || fail "plain list does not show $good: $out"
printf '%s\n' "$out" | grep -q "^$P-trunc .*unreadable" ||
    fail "plain list does not mark $P-trunc: $out"

for n in garbage trunc empty; do
    expect_error "show $P-$n" "$(rec $n)" vmctl show "$P-$n"
    expect_error "start $P-$n" "$(rec $n)" vmctl start "$P-$n"
done

# The good VM and new ones are unaffected.
expect_ok "start $good" vmctl start "$good" && pass "a good VM starts beside bad records"
expect_ok "create beside bad records" create "$P-new" --no-net
expect_ok "stop $good" vmctl stop "$good"
expect_ok "delete $good" vmctl delete "$good"
expect_ok "delete $P-new" vmctl delete "$P-new"

# A bad record is deleted only with --force, and then completely.
for n in garbage trunc empty; do
    expect_error "delete $P-$n without --force" "$(rec $n)" vmctl delete "$P-$n"
    [ -d "$STATE/vms/$P-$n" ] || fail "delete without --force removed $P-$n"
    expect_ok "delete --force $P-$n" vmctl delete --force "$P-$n" &&
        pass "delete --force of bad record $P-$n"
    [ -e "$STATE/vms/$P-$n" ] && fail "delete --force left $STATE/vms/$P-$n"
done

# A running VM whose record breaks: delete --force still ends its VMM and
# removes its namespace.
run=$P-runbad
if expect_ok "create $run" create "$run" --netns --start; then
    pid=$(field "$run" pid)
    is_vmm "$pid" || fail "$run: pid '$pid' is not a live VMM"
    head -c 40 "$STATE/vms/$run/vm.json" >"$T/cut" && cp "$T/cut" "$STATE/vms/$run/vm.json"
    expect_error "show $run with a cut record" "vm.json" vmctl show "$run"
    expect_ok "delete --force $run" vmctl delete --force "$run"
    wait_gone "$pid" 5 && pass "the VMM of a VM with a broken record was ended" ||
        fail "delete --force of $run left its VMM $pid running"
    [ -e "$STATE/vms/$run" ] && fail "delete --force left $STATE/vms/$run"
    ip netns list | grep -qw -- "libvmm-$run" && fail "delete --force left namespace libvmm-$run"
fi
check_clean "corrupt-state"

finish
