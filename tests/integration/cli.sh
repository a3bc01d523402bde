#!/bin/bash
# vmctl's own surface: --help everywhere, the environment standing in for
# the global options (flags win), show/list output, logs --follow, and the
# key pair made on first use.
. "$(dirname "$0")/lib.sh"

for cmd in "" create start stop kill delete show list set ssh logs; do
    # shellcheck disable=SC2086
    run "$VMCTL" $cmd --help
    if [ "$rc" -eq 0 ] && [[ $out == Usage:* ]] && [ -z "$err" ]; then
        pass "vmctl $cmd --help"
    else
        fail "vmctl $cmd --help: exit $rc, stdout '${out:0:60}', stderr '$err'"
    fi
done
run "$VMCTL" -h
[ "$rc" -eq 0 ] && [[ $out == Usage:* ]] || fail "vmctl -h: exit $rc"

# The environment stands in for --state-dir and --firecracker.
vm=$P-env
run env LIBVMM_STATE_DIR="$STATE" LIBVMM_FIRECRACKER="$FCEMU" "$VMCTL" create "$vm" \
    --kernel "$KERNEL" --rootfs "$ROOTFS" --no-net --start
[ "$rc" -eq 0 ] && pass "create --start through the environment" || fail "env create: $err"
[ -d "$STATE/vms/$vm" ] || fail "LIBVMM_STATE_DIR was not used: no $STATE/vms/$vm"
[ "$(field "$vm" state)" = running ] || fail "create --start: state $(field "$vm" state)"
# A flag wins over the environment.
run env LIBVMM_STATE_DIR="$T/elsewhere" "$VMCTL" --state-dir "$STATE" show "$vm"
[ "$rc" -eq 0 ] && pass "--state-dir wins over LIBVMM_STATE_DIR" || fail "flag vs env: $err"
[ -e "$T/elsewhere" ] && fail "LIBVMM_STATE_DIR was used despite --state-dir"

# A relative --state-dir works as well (it is made absolute).
(cd "$T" && "$VMCTL" --state-dir s --firecracker "$FCEMU" show "$vm" >/dev/null 2>&1) ||
    fail "a relative --state-dir does not work"

# Relative kernel and rootfs paths are recorded as absolute ones.
(cd "$T" && "$VMCTL" --state-dir s --firecracker "$FCEMU" create "$P-rel" --kernel vmlinux \
    --rootfs ./rootfs.ext4 --no-net >/dev/null 2>&1) || fail "create with relative paths"
[ "$(field "$P-rel" kernel)" = "$KERNEL" ] && [ "$(field "$P-rel" base_image)" = "$ROOTFS" ] &&
    pass "relative paths made absolute" ||
    fail "relative paths: kernel '$(field "$P-rel" kernel)', base '$(field "$P-rel" base_image)'"
vmctl delete "$P-rel" >/dev/null 2>&1 || fail "delete $P-rel"

# The key pair vmctl made on first use went to the guest as authorized keys.
[ -f "$STATE/ssh/id_ed25519" ] && [ -f "$STATE/ssh/id_ed25519.pub" ] &&
    pass "key pair made at $STATE/ssh/id_ed25519" || fail "no key pair under $STATE/ssh"
keyfp=$(ssh-keygen -lf "$STATE/ssh/id_ed25519.pub" 2>/dev/null)
expect_ok "create with --ssh-key" create "$P-key" --no-net --ssh-key "$STATE/ssh/id_ed25519.pub"
[ "$(ssh-keygen -lf "$STATE/ssh/id_ed25519.pub" 2>/dev/null)" = "$keyfp" ] ||
    fail "the key pair changed after a second create"
expect_error "--ssh-key given a private key" "private" \
    create "$P-priv" --no-net --ssh-key "$STATE/ssh/id_ed25519"

# show: text and JSON carry the same facts; every promised field exists.
expect_ok "show --json" vmctl show "$vm" --json
for key in name state pid vcpus memory_mib guest_ip tap netns api_socket overlay_driver disk \
    host_ip mac kernel base_image boot_args log last_exit; do
    printf '%s' "$out" | json "d['$key']" >/dev/null 2>&1 || fail "show --json lacks '$key'"
done
[ "$(printf '%s' "$out" | json 'd["vcpus"]')" = 1 ] || fail "show --json: vcpus"
[ "$(printf '%s' "$out" | json 'd["memory_mib"]')" = 512 ] || fail "show --json: memory_mib"
[ "$(printf '%s' "$out" | json 'd["kernel"]')" = "$KERNEL" ] || fail "show --json: kernel"
[ "$(printf '%s' "$out" | json 'd["guest_ip"]')" = null ] ||
    fail "show --json: a --no-net VM has a guest_ip"
pid=$(printf '%s' "$out" | json 'd["pid"]')
is_vmm "$pid" || fail "show --json: pid $pid is not the VMM"
expect_ok "show" vmctl show "$vm"
printf '%s\n' "$out" | grep -qE "^state: +running$" ||
    fail "plain show: no 'state: running' line: $out"
printf '%s\n' "$out" | grep -qE "^pid: +$pid$" || fail "plain show: no pid line"
expect_ok "list" vmctl list
printf '%s\n' "$out" | head -n 1 | grep -q '^NAME ' || fail "plain list: no header: $out"
printf '%s\n' "$out" | grep -qE "^$vm +running +$pid " || fail "plain list: no row for $vm: $out"
expect_ok "list --json" vmctl list --json
[ "$(printf '%s' "$out" | json 'sorted(v["name"] for v in d)')" = "[\"$vm\", \"$P-key\"]" ] ||
    fail "list --json names: $out"

# logs --follow prints what the VMM writes and ends when the VMM does.
vmctl logs "$vm" --follow >"$T/follow.out" 2>"$T/follow.err" &
fpid=$!
sleep 1
kill -0 "$fpid" 2>/dev/null && pass "logs --follow keeps following a running VM" ||
    fail "logs --follow ended while the VMM runs: $(cat "$T/follow.err")"
expect_ok "stop" vmctl stop "$vm"
if wait_gone "$fpid" 5; then
    wait "$fpid" && pass "logs --follow ended with the VMM" ||
        fail "logs --follow: $(cat "$T/follow.err")"
else
    fail "logs --follow did not end after the VMM stopped"
    kill "$fpid"
fi
[ -s "$T/follow.out" ] || fail "logs --follow printed nothing"
vmctl logs "$vm" >"$T/logs.out" 2>&1 || fail "logs after stop: $(cat "$T/logs.out")"

# -v prints the library's log lines on stderr; without it, stderr is quiet.
run vmctl start "$vm"
[ -z "$err" ] || fail "start without -v wrote to stderr: $err"
run vmctl -v kill "$vm"
note "vmctl -v kill printed: ${err:-nothing}"

# ssh: vmctl enters the VM's namespace and runs the system's ssh with the
# VM's known-hosts file, strict checking and vmctl's key. A stand-in ssh
# early in PATH records what it was given; nothing is sent anywhere.
mkdir -p "$T/bin"
cat >"$T/bin/ssh" <<'EOS'
#!/bin/bash
printf '%s\n' "$@" >"$SSH_ARGS_FILE"
stat -L -c %i /proc/self/ns/net >>"$SSH_ARGS_FILE"
exit 42
EOS
chmod +x "$T/bin/ssh"
vm2=$P-ssh
expect_ok "create in own netns" create "$vm2" --netns --start
run env PATH="$T/bin:$PATH" SSH_ARGS_FILE="$T/ssh.args" \
    "$VMCTL" --state-dir "$STATE" ssh "$vm2" -- uname -a
[ "$rc" -eq 42 ] && pass "vmctl ssh ran ssh and passed its exit status" ||
    fail "vmctl ssh: exit $rc, expected ssh's 42: $err"
if [ -f "$T/ssh.args" ]; then
    args=$(head -n -1 "$T/ssh.args" | tr '\n' ' ')
    nsino=$(tail -n 1 "$T/ssh.args")
    ns=$(field "$vm2" netns)
    [ "$nsino" = "$(stat -L -c %i "/run/netns/$ns")" ] && pass "ssh ran inside $ns" ||
        fail "ssh ran in netns inode $nsino, not in $ns"
    for want in "-i $STATE/ssh/id_ed25519" "UserKnownHostsFile=$(field "$vm2" known_hosts)" \
        "StrictHostKeyChecking=yes" "BatchMode=yes" "-- root@$(field "$vm2" guest_ip) 'uname' '-a'"; do
        [[ " $args" == *" $want"* ]] || fail "ssh arguments lack '$want': $args"
    done
else
    fail "vmctl ssh did not run ssh"
fi
# Several words arrive intact (quoted for the guest's shell); a single word
# is a command line for that shell, as ssh itself has it.
run env PATH="$T/bin:$PATH" SSH_ARGS_FILE="$T/ssh.args" \
    "$VMCTL" --state-dir "$STATE" ssh "$vm2" -- sh -c "echo it's > /tmp/f"
got=$(head -n -1 "$T/ssh.args" | tail -n 3 | tr '\n' ' ')
want="'sh' '-c' 'echo it'\\''s > /tmp/f' "
[ "$got" = "$want" ] && pass "ssh words quoted one by one" ||
    fail "ssh words: got [$got], want [$want]"
run env PATH="$T/bin:$PATH" SSH_ARGS_FILE="$T/ssh.args" \
    "$VMCTL" --state-dir "$STATE" ssh "$vm2" -- 'ls /root | wc -l'
got=$(head -n -1 "$T/ssh.args" | tail -n 1)
[ "$got" = "ls /root | wc -l" ] && pass "a single command word passes as is" ||
    fail "single command word: got [$got]"
expect_ok "delete --force ssh VM" vmctl delete --force "$vm2"

expect_ok "delete" vmctl delete "$vm"
expect_ok "delete key VM" vmctl delete "$P-key"
check_clean "cli"

finish
