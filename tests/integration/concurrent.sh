#!/bin/bash
# Twenty concurrent creates into one network namespace get twenty distinct
# guest addresses, taps, MACs and API sockets; two (here: four) concurrent
# creates of one name: one wins, the others are told the name exists, and
# nothing half-built remains.
. "$(dirname "$0")/lib.sh"

ns=$P-shared
ip netns add "$ns" || { fail "cannot make network namespace $ns"; finish; }

N=20
for i in $(seq 1 $N); do
    create "$P-$i" --netns "$ns" >"$T/c$i.out" 2>"$T/c$i.err" &
done
bad=0
for job in $(jobs -p); do
    wait "$job" || bad=$((bad + 1))
done
if [ "$bad" -ne 0 ]; then
    fail "$bad of $N concurrent creates failed: $(cat "$T"/c*.err | sort | uniq -c)"
else
    pass "$N concurrent creates succeeded"
fi

run vmctl list --json
for key in name guest_ip tap mac api_socket; do
    total=$(printf '%s' "$out" | json "len([v for v in d if v['name'].startswith('$P-')])")
    distinct=$(printf '%s' "$out" |
        json "len(set(v['$key'] for v in d if v['name'].startswith('$P-') and v['$key']))")
    if [ "$total" = $N ] && [ "$distinct" = $N ]; then
        pass "$N distinct ${key}s"
    else
        fail "$key: $distinct distinct values among $total VMs, expected $N"
    fi
done
printf '%s' "$out" | json "[v['netns'] for v in d]" | grep -q "$ns" ||
    fail "VMs do not report netns $ns"

# Start them all at once, too: twenty VMMs side by side.
for i in $(seq 1 $N); do
    vmctl start "$P-$i" >"$T/s$i.out" 2>"$T/s$i.err" &
done
bad=0
for job in $(jobs -p); do
    wait "$job" || bad=$((bad + 1))
done
[ "$bad" -eq 0 ] && pass "$N concurrent starts" ||
    fail "$bad of $N concurrent starts failed: $(cat "$T"/s*.err | sort | uniq -c)"
running=$(vmctl list --json | json "len([v for v in d if v['state'] == 'running'])")
[ "$running" = $N ] || fail "$running of $N VMs running after concurrent starts"
# Taps exist from the first start on; each VM's is in the shared namespace.
taps=$(ip -n "$ns" -o link show | grep -c 'tap')
links=$(ip -n "$ns" -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
[ "$taps" = $N ] && pass "$N taps in $ns" ||
    fail "$taps taps in namespace $ns, expected $N: $links"

for i in $(seq 1 $N); do
    vmctl delete --force "$P-$i" >"$T/d$i.out" 2>"$T/d$i.err" &
done
bad=0
for job in $(jobs -p); do
    wait "$job" || bad=$((bad + 1))
done
[ "$bad" -eq 0 ] && pass "$N concurrent deletes" ||
    fail "$bad of $N concurrent deletes failed: $(cat "$T"/d*.err | sort | uniq -c)"
taps=$(ip -n "$ns" -o link show | grep -c 'tap')
[ "$taps" = 0 ] || fail "$taps taps left in $ns after delete"
[ -z "$(ls -A "$STATE/vms" 2>/dev/null)" ] || fail "VM directories left: $(ls -A "$STATE/vms")"

# One name, four creators at once.
same=$P-same
for i in 1 2 3 4; do
    create "$same" --netns "$ns" >"$T/x$i.out" 2>"$T/x$i.err" &
    eval "xp$i=\$!"
done
won=0
for i in 1 2 3 4; do
    eval "wait \$xp$i"
    if [ $? -eq 0 ]; then
        won=$((won + 1))
    elif ! grep -qi 'exist' "$T/x$i.err"; then
        fail "a losing create of $same does not say the name exists: $(cat "$T/x$i.err")"
    fi
done
[ "$won" = 1 ] && pass "one of four creates of $same won" ||
    fail "$won of four concurrent creates of $same succeeded, expected 1"
n=$(vmctl list --json | json "len([v for v in d if v['name'] == '$same'])")
[ "$n" = 1 ] || fail "list shows $n VMs named $same"
[ "$(ls -A "$STATE/vms")" = "$same" ] || fail "state has: $(ls -A "$STATE/vms")"
taps=$(ip -n "$ns" -o link show | grep -c 'tap')
[ "$taps" -le 1 ] || fail "$taps taps in $ns after the same-name race, expected at most 1"
expect_ok "start the winner" vmctl start "$same"
taps=$(ip -n "$ns" -o link show | grep -c 'tap')
[ "$taps" = 1 ] || fail "$taps taps in $ns with the winner running, expected 1"
expect_ok "delete the winner" vmctl delete --force "$same"

ip netns delete "$ns"
check_clean "concurrent"

finish
