#!/bin/bash
# kill -9 of vmctl in the middle of create and of start. The next command
# must either finish the clean-up or report the VM's true state: no
# orphan VMM, namespace, tap, loop device or socket, and the VM (or its
# name) usable again.
. "$(dirname "$0")/lib.sh"

# Processes (VMMs) of one VM: their command line names its directory.
vm_pids() {
    local pid args
    for pid in $(our_pids); do
        mapfile -d "" args 2>/dev/null <"/proc/$pid/cmdline" || continue
        [[ "${args[*]}" == *"/vms/$1/"* ]] && echo "$pid"
    done
}

# A base image big enough that copying it takes a moment.
BIG=$T/big.ext4
mkdir -p "$T/bigtree/etc/network" "$T/bigtree/etc/ssh" "$T/bigtree/root"
printf 'auto lo\n' >"$T/bigtree/etc/network/interfaces"
head -c $((160 << 20)) /dev/urandom >"$T/bigtree/root/blob"
mkfs.ext4 -q -F -d "$T/bigtree" "$BIG" 256M >/dev/null 2>&1 || { fail "mkfs of $BIG"; finish; }
rm -rf "$T/bigtree"

# --- create --------------------------------------------------------------
i=0
for delay in 0.02 0.1 0.25 0.5 0.8; do
    i=$((i + 1))
    vm=$P-c$i
    # exec: $! must be vmctl itself, not a subshell waiting for it.
    (exec "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" create "$vm" \
        --kernel "$KERNEL" --rootfs "$BIG" --netns >/dev/null 2>&1) &
    cpid=$!
    sleep "$delay"
    kill -9 "$cpid" 2>/dev/null
    wait "$cpid" 2>/dev/null
    what="create killed after ${delay}s"

    # The next command: list must work and say what exists.
    run vmctl list --json
    if [ "$rc" -ne 0 ]; then
        fail "$what: list fails: $err"
        continue
    fi
    entry=$(printf '%s' "$out" | json "[v for v in d if v['name'] == '$vm']")
    case "$entry" in
    '[]')
        note "$what: the VM does not exist"
        [ -e "$STATE/vms/$vm" ] &&
            fail "$what: list omits $vm but $STATE/vms/$vm remains: $(ls -A "$STATE/vms/$vm")"
        ip netns list | grep -qw -- "libvmm-$vm" &&
            fail "$what: list omits $vm but namespace libvmm-$vm remains"
        ;;
    *'"error"'*)
        note "$what: listed as unreadable: $entry"
        expect_ok "$what: delete of the unfinished VM" vmctl delete --force "$vm" ||
            fail "$what: an unfinished create can be neither used nor deleted"
        ;;
    *)
        st=$(printf '%s' "$entry" | json 'd[0]["state"]')
        note "$what: the VM exists, state $st"
        [ "$st" = stopped ] || fail "$what: a VM whose create was killed says '$st'"
        expect_ok "$what: delete" vmctl delete "$vm"
        ;;
    esac
    [ -n "$(vm_pids "$vm")" ] && fail "$what: processes of $vm remain: $(vm_pids "$vm")"

    # The name is free again, and a full create works.
    if expect_ok "$what: create again" create "$vm" --netns; then
        [ "$(field "$vm" state)" = stopped ] || fail "$what: re-created VM not stopped"
        expect_ok "$what: delete the re-created VM" vmctl delete "$vm"
    fi
done
check_clean "after killed creates"

# --- start ---------------------------------------------------------------
# The emulator waits before binding its socket, so start is caught while
# it waits for the VMM.
i=0
for delay in 0.05 0.4 1.0; do
    i=$((i + 1))
    vm=$P-s$i
    what="start killed after ${delay}s"
    expect_ok "$what: create" create "$vm" --netns || continue
    (FCEMU_DELAY_BIND_MS=1500 exec "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" \
        start "$vm" >/dev/null 2>&1) &
    spid=$!
    sleep "$delay"
    kill -9 "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null

    # Right away (the VMM may still be waiting to bind) ...
    run vmctl show "$vm" --json
    if [ "$rc" -ne 0 ]; then
        fail "$what: show fails: $err"
        continue
    fi
    st=$(printf '%s' "$out" | json 'd["state"]')
    pid=$(printf '%s' "$out" | json 'd["pid"]')
    note "$what: show right after says $st (pid $pid)"
    # ... and once the VMM would have bound its socket.
    sleep 2
    run vmctl show "$vm" --json
    st2=$(printf '%s' "$out" | json 'd["state"]')
    pid2=$(printf '%s' "$out" | json 'd["pid"]')
    sock=$(printf '%s' "$out" | json 'd["api_socket"]')
    alive=$(vm_pids "$vm" | tr '\n' ' ')
    case "$st2" in
    stopped)
        [ -z "$alive" ] && pass "$what: stopped, and no VMM of it is alive" ||
            fail "$what: show says stopped, yet these processes of $vm live: $alive"
        [ -e "$sock" ] && fail "$what: show says stopped, yet the API socket $sock remains"
        ;;
    running)
        if ! is_vmm "$pid2"; then
            fail "$what: show says running with pid '$pid2', which is not a live emulator"
        elif [ "$(api "$sock" / | json 'd["state"]' 2>/dev/null)" != Running ]; then
            fail "$what: show says running but the VMM's GET / says" \
                "'$(api "$sock" / | json 'd["state"]' 2>/dev/null)' (never started)"
        else
            pass "$what: running, VMM $pid2 answers Running"
        fi
        [ "$(echo $alive)" = "$pid2" ] ||
            fail "$what: processes of $vm: '$alive', expected only $pid2"
        ;;
    *)
        fail "$what: show says state '$st2'"
        ;;
    esac
    if [ "$st" = stopped ] && [ -n "$alive" ]; then
        fail "$what: show said stopped right after the kill, but VMM(s) $alive of $vm live on"
    fi

    # Whatever happened, the VM can be stopped, started and deleted.
    expect_ok "$what: kill" vmctl kill "$vm"
    [ -z "$(vm_pids "$vm")" ] || fail "$what: after vmctl kill, processes remain: $(vm_pids "$vm")"
    expect_ok "$what: start again" vmctl start "$vm" &&
        [ "$(api "$(field "$vm" api_socket)" / | json 'd["state"]' 2>/dev/null)" = Running ] &&
        pass "$what: started again" || fail "$what: the VM does not start again"
    expect_ok "$what: delete" vmctl delete --force "$vm"
    [ -z "$(vm_pids "$vm")" ] || fail "$what: after delete, processes remain: $(vm_pids "$vm")"
done
check_clean "after killed starts"

finish
