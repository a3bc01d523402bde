#!/bin/bash
# Adversarial checks: hostile inputs, hostile conditions, hostile records.
#
# Checks that pass today are regression tests. Checks of known bugs are
# marked "BUG:" in their failure line, which says what is expected; they
# fail until the library or vmctl is fixed.
#
# Everything lives under $T (lib.sh): state directories, small tmpfs
# mounts, fake firecracker binaries, the `sleep` processes posing as
# strangers. Namespaces carry the run's prefix. Nothing is aimed at pid 1,
# at this shell, at any host device or at any file outside $T: "stranger"
# processes are `sleep`s this test starts.
. "$(dirname "$0")/lib.sh"

P=adv$P
mounts=()
strangers=()

adv_cleanup() {
    local m pid
    for pid in "${strangers[@]}"; do kill -9 "$pid" 2>/dev/null; done
    for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
    cleanup
}
trap adv_cleanup EXIT

bug() { fail "BUG: $*"; }

# state NAME: "STATE PID" from show --json, or "" when show fails.
state() {
    vmctl show "$1" --json 2>/dev/null |
        json '"%s %s" % (d["state"], d["pid"] or 0)' 2>/dev/null
}

# emulators NAME: pids of emulators serving NAME's socket in $STATE.
emulators() {
    local d args
    for d in /proc/[0-9]*; do
        mapfile -d "" args 2>/dev/null <"$d/cmdline" || continue
        [[ ${args[0]:-} == *fc-emulator* ]] || continue
        [[ "${args[*]}" == *"--api-sock $STATE/vms/$1/api.sock"* ]] && echo "${d#/proc/}"
    done
}

# truthful WHAT NAME: show's state agrees with the processes that exist.
truthful() {
    local what=$1 name=$2 s e
    s=$(state "$name")
    e=$(emulators "$name" | tr '\n' ' ')
    case $s in
    "running "*) [ "$e" = "${s#running } " ] ||
        fail "$what: show says '$s' but the emulators of $name are [$e]" ;;
    "stopped "*) [ -z "$e" ] ||
        fail "$what: show says stopped but emulators [$e] serve $name" ;;
    "") [ -z "$e" ] || fail "$what: no VM $name, but emulators [$e] serve it" ;;
    *) fail "$what: unexpected state '$s'" ;;
    esac
}

# setrec NAME PYTHON: edits NAME's record through d (the parsed JSON).
setrec() {
    "$PY" - "$STATE/vms/$1/vm.json" "$2" <<'EOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
exec(sys.argv[2])
json.dump(d, open(p, "w"))
EOF
}

start_time() { awk '{print $22}' "/proc/$1/stat"; }

# group_ours PGID: a live process of this test is in process group PGID.
group_ours() {
    local pid
    for pid in $(our_pids); do
        [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f3)" = "$1" ] &&
            return 0
    done
    return 1
}

# no_vm WHAT NAME: NAME has no directory and no process.
no_vm() {
    [ -e "$STATE/vms/$2" ] && fail "$2: $1 left $STATE/vms/$2" && rm -rf "${STATE:?}/vms/$2"
    [ -n "$(emulators "$2")" ] && fail "$1: left an emulator for $2"
    return 0
}

# === state directories =================================================
# A state dir so long that the API socket path cannot fit.
long=$T/$(printf 'd%.0s' $(seq 1 60))
n63=$P-$(printf 'x%.0s' $(seq 1 $((63 - ${#P} - 1))))
expect_error "63-byte name in a too-long state dir" "api.sock.*107|socket" \
    "$VMCTL" --state-dir "$long" --firecracker "$FCEMU" create "$n63" \
    --kernel "$KERNEL" --rootfs "$ROOTFS" --no-net
[ -n "$(ls -A "$long/vms" 2>/dev/null)" ] && fail "too-long state dir: left $(ls "$long/vms")"

# A symlinked state directory works end to end.
mkdir "$T/real" && ln -s "$T/real" "$T/slink"
SL() { "$VMCTL" --state-dir "$T/slink" --firecracker "$FCEMU" "$@"; }
if expect_ok "create in a symlinked state dir" SL create "$P-sl" --kernel "$KERNEL" \
    --rootfs "$ROOTFS" --no-net --start; then
    expect_ok "delete in a symlinked state dir" SL delete --force "$P-sl" &&
        pass "symlinked state dir round trip"
fi

# Read-only and full state directories.
if mkdir "$T/ro" && mount -t tmpfs -o size=1M,ro adv-ro "$T/ro"; then
    mounts+=("$T/ro")
    expect_error "create in a read-only state dir" "read-only" \
        "$VMCTL" --state-dir "$T/ro/s" --firecracker "$FCEMU" create "$P-ro" \
        --kernel "$KERNEL" --rootfs "$ROOTFS" --no-net
fi
if mkdir "$T/full" && mount -t tmpfs -o size=2M adv-full "$T/full"; then
    mounts+=("$T/full")
    FS() { "$VMCTL" --state-dir "$T/full/s" --firecracker "$FCEMU" "$@"; }
    mkdir -p "$T/bigtree/root" && cp -r "$T/tree/." "$T/bigtree/" &&
        head -c 3M /dev/urandom >"$T/bigtree/root/blob" &&
        mkfs.ext4 -q -F -d "$T/bigtree" "$T/big.ext4" 32M >/dev/null 2>&1
    expect_error "create on a full tmpfs" "no space" FS create "$P-full" \
        --kernel "$KERNEL" --rootfs "$T/big.ext4" --no-net
    [ -n "$(ls -A "$T/full/s/vms" 2>/dev/null)" ] &&
        fail "create on a full tmpfs left $(ls -A "$T/full/s/vms")"
    if expect_ok "create on a nearly full tmpfs" FS create "$P-full" \
        --kernel "$KERNEL" --rootfs "$ROOTFS" --no-net; then
        head -c 10M /dev/zero >"$T/full/filler" 2>/dev/null
        run FS start "$P-full"
        [ "$rc" -ne 0 ] && [[ $err == *"No space"* ]] &&
            pass "start on a full tmpfs fails naming it: $err" ||
            fail "start on a full tmpfs: exit $rc: $err"
        [[ $(FS show "$P-full" 2>/dev/null) == *"stopped"* ]] ||
            fail "start on a full tmpfs did not leave the VM stopped"
        rm -f "$T/full/filler"
        expect_ok "start once space is back" FS start "$P-full" &&
            pass "a start that failed on ENOSPC can be retried"
        expect_ok "delete on tmpfs" FS delete --force "$P-full"
    fi
fi

# A VM directory that is a symlink to a directory outside the state dir.
mkdir -p "$T/victim" "$STATE/vms" && echo keep >"$T/victim/other"
ln -s "$T/victim" "$STATE/vms/$P-vic"
run vmctl delete --force "$P-vic"
[ -e "$T/victim/other" ] || fail "delete --force of a symlinked VM dir removed a file outside the state dir"
[ -e "$T/victim/lock" ] &&
    bug "delete --force of a symlinked VM dir $STATE/vms/$P-vic made $T/victim/lock outside the state dir (expected: nothing written through the symlink)"
rm -f "$STATE/vms/$P-vic"

# === base images =======================================================
mkfifo "$T/fifo"
: >"$T/empty.img"
head -c 1048576 /dev/urandom >"$T/garbage.img"
cp "$ROOTFS" "$T/feat.img" && debugfs -w -R "feature FEATURE_I20" "$T/feat.img" >/dev/null 2>&1
vm=$P-b
for r in "$T/fifo" /dev/zero /dev/null "$T/empty.img" "$T/garbage.img" "$T/feat.img"; do
    expect_error "rootfs $r" "${r//./\\.}" timeout 20 "$VMCTL" --state-dir "$STATE" \
        --firecracker "$FCEMU" create "$vm" --kernel "$KERNEL" --rootfs "$r" --no-net
    no_vm "rootfs $r" "$vm"
done
for k in "$T/fifo" /dev/zero; do
    expect_error "kernel $k" "$k" timeout 20 "$VMCTL" --state-dir "$STATE" \
        --firecracker "$FCEMU" create "$vm" --kernel "$k" --rootfs "$ROOTFS" --no-net
    no_vm "kernel $k" "$vm"
done
ln -s "$ROOTFS" "$T/rootlink"
expect_ok "rootfs through a symlink" create "$vm" --rootfs "$T/rootlink" --no-net &&
    vmctl delete "$vm" >/dev/null 2>&1
cp "$ROOTFS" "$T/csum.img" && debugfs -w -R "set_bg 0 inode_bitmap_csum 0" "$T/csum.img" >/dev/null 2>&1
if expect_ok "create over a base with a bad bitmap checksum" create "$vm" --rootfs "$T/csum.img" --no-net; then
    expect_ok "start repairs the bad checksum (e2fsck)" vmctl start "$vm"
    vmctl delete --force "$vm" >/dev/null 2>&1
fi
truncate -s 100G "$T/huge.img" && mkfs.ext4 -q -F "$T/huge.img" >/dev/null 2>&1 &&
    expect_ok "create over a 100G sparse base" create "$vm" --rootfs "$T/huge.img" --no-net &&
    expect_ok "start over a 100G sparse base" vmctl start "$vm" &&
    vmctl delete --force "$vm" >/dev/null
rm -f "$T/huge.img"

# A VM's own disk broken after create: start fails, nothing runs.
if expect_ok "create for a broken disk" create "$vm" --no-net; then
    debugfs -w -R "feature FEATURE_I20" "$STATE/vms/$vm/disk.img" >/dev/null 2>&1
    run vmctl start "$vm"
    [ "$rc" -ne 0 ] && [[ $err == *"$STATE/vms/$vm/disk.img"* ]] && pass "start on a broken disk names the disk" ||
        fail "start on a broken disk: exit $rc: $err"
    [[ $err == *"8 (8 ("* ]] &&
        bug "e2fsck failure message repeats the status: '$(head -n1 <<<"$err")' (expected 'exit status 8 (operational error)')"
    truthful "broken disk" "$vm"
    [ "$(state "$vm")" = "stopped 0" ] || fail "broken disk: state $(state "$vm")"
    vmctl delete --force "$vm" >/dev/null 2>&1
fi

# === sizes and boot args ===============================================
bad_size() {
    expect_error "disk-size $1" "$2" create "$vm" --no-net --disk-size "$1"
    no_vm "disk-size $1" "$vm"
}
bad_size 33554431 "smaller"
run create "$vm" --no-net --disk-size 1T
if [ "$rc" -ne 1 ]; then
    fail "disk-size 1T: exit $rc: $err"
elif [ "$(grep -c . <<<"$err")" -ne 1 ]; then
    bug "disk-size 1T: the error is $(grep -c . <<<"$err") lines with a blank tail (expected one line, as every other vmctl error): $(tr '\n' '|' <<<"$err")"
else
    pass "disk-size 1T refused: $err"
fi
no_vm "disk-size 1T" "$vm"
bad_size 9223372036854775807 "too large|disk"
bad_size 8E "--disk-size"
if expect_ok "disk-size not a multiple of 4096" create "$vm" --no-net --disk-size 33558529; then
    shown=$(field "$vm" disk_size)
    real=$(stat -c %s "$STATE/vms/$vm/disk.img")
    [ "$shown" = "$real" ] || bug "--disk-size 33558529: show says disk_size $shown but the disk is $real bytes (expected: refused, or rounded and shown as it is)"
    vmctl delete "$vm" >/dev/null 2>&1
fi
expect_error "boot args over 1900 bytes" "boot_args" \
    create "$vm" --no-net --boot-args "$(printf 'a%.0s' $(seq 1 1901))"
no_vm "long boot args" "$vm"
# Firecracker refuses a kernel command line with non-printable characters;
# vmctl should refuse it at create, not let the VM fail at every start.
for ba in $'console=ttyS0\nfoo' $'a\x01b'; do
    run create "$vm" --no-net --boot-args "$ba"
    if [ "$rc" -eq 0 ]; then
        bug "--boot-args $(printf %q "$ba") accepted (expected: exit 1 naming boot_args; Firecracker rejects non-printable command lines)"
    else
        pass "boot args $(printf %q "$ba") refused: $err"
    fi
    vmctl delete --force "$vm" >/dev/null 2>&1
done

# Non-UTF-8 bytes in any string must not make create write a record the
# library cannot read back.
cp "$KERNEL" "$T/vml"$'\xff'
head -c 3000 /dev/urandom >"$T/garbage.pub"
for how in "boot-args" "kernel" "ssh-key"; do
    case $how in
    boot-args) run create "$vm" --no-net --boot-args $'a\xffb' ;;
    kernel) run vmctl create "$vm" --kernel "$T/vml"$'\xff' --rootfs "$ROOTFS" --no-net ;;
    ssh-key) run create "$vm" --no-net --ssh-key "$T/garbage.pub" ;;
    esac
    crc=$rc
    run vmctl show "$vm"
    if [ "$crc" -eq 0 ] && [ "$rc" -ne 0 ]; then
        bug "create with non-UTF-8 $how succeeded but the VM is unreadable at once: $err (expected: create refuses it naming $how, or the record round-trips)"
    elif [ "$crc" -ne 0 ]; then
        pass "non-UTF-8 $how refused"
    else
        pass "non-UTF-8 $how round-trips"
    fi
    vmctl delete --force "$vm" >/dev/null 2>&1
    no_vm "non-UTF-8 $how" "$vm"
done

# === ssh keys ==========================================================
ssh-keygen -q -t ed25519 -N '' -f "$T/k" >/dev/null 2>&1
: >"$T/empty.pub"
expect_error "private key as --ssh-key" "private" create "$vm" --no-net --ssh-key "$T/k"
expect_error "empty key file" "no key" create "$vm" --no-net --ssh-key "$T/empty.pub"
expect_error "directory as key" "$T" create "$vm" --no-net --ssh-key "$T"
expect_error "/dev/zero as key" "/dev/zero" create "$vm" --no-net --ssh-key /dev/zero
no_vm "ssh keys" "$vm"
run timeout 5 "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" create "$vm" \
    --kernel "$KERNEL" --rootfs "$ROOTFS" --no-net --ssh-key "$T/fifo"
if [ "$rc" -eq 124 ]; then
    bug "--ssh-key FIFO: create hangs forever (expected: 'not a regular file', as for --kernel)"
else
    pass "--ssh-key FIFO: exit $rc: $err"
fi
rm -rf "${STATE:?}/vms/$vm"
run create "$vm" --no-net --kernel "$T/empty.img"
[ "$rc" -eq 0 ] && bug "a zero-length --kernel is accepted (expected: refused at create naming the kernel)"
vmctl delete --force "$vm" >/dev/null 2>&1

# === firecracker binaries ==============================================
printf '#!/bin/sh\nexit 0\n' >"$T/fc-exit0"
printf '#!/bin/sh\nexit 3\n' >"$T/fc-exit3"
printf '#!/bin/sh\necho garbage; head -c 300 /dev/urandom; exec sleep 600\n' >"$T/fc-garbage"
cat >"$T/fc-nonsense" <<'EOF'
#!/usr/bin/python3
import socket, sys
p = sys.argv[sys.argv.index("--api-sock") + 1]
s = socket.socket(socket.AF_UNIX)
s.bind(p)
s.listen(5)
while True:
    c, _ = s.accept()
    try:
        c.recv(65536)
        c.sendall(b"HELLO NONSENSE\r\n\x00\xff\r\n\r\n")
    except Exception:
        pass
    c.close()
EOF
cp "$KERNEL" "$T/fc-noexec"
chmod +x "$T/fc-exit0" "$T/fc-exit3" "$T/fc-garbage" "$T/fc-nonsense"
fcvm=$P-fc
expect_ok "create for bad binaries" create "$fcvm" --no-net
for f in "$T/nonexist" "$T/fc-noexec" "$T" "$T/fc-exit0" "$T/fc-exit3" "$T/fc-garbage" "$T/fc-nonsense"; do
    run timeout 30 "$VMCTL" --state-dir "$STATE" --firecracker "$f" start "$fcvm" --timeout 2
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [[ $err != *"$fcvm"* ]]; then
        fail "firecracker $f: exit $rc: $err"
    else
        pass "firecracker $f refused: $(head -n1 <<<"$err" | cut -c1-160)"
    fi
    [ "$(state "$fcvm")" = "stopped 0" ] || fail "firecracker $f: state $(state "$fcvm")"
    [ -e "$STATE/vms/$fcvm/api.sock" ] && fail "firecracker $f: api.sock left"
done
sleep 0.2
[ -n "$(our_pids)" ] && fail "bad firecracker binaries left processes: $(our_pids | tr '\n' ' ')"

for knob in "FCEMU_START_FAULT=boom bad" "FCEMU_EXIT_EARLY=1" "FCEMU_NEVER_BIND=1" \
    "FCEMU_HANG_ON=PUT /boot-source" "FCEMU_HANG_ON=PUT /actions"; do
    run env "$knob" "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" start "$fcvm" --timeout 2
    [ "$rc" -ne 0 ] && pass "$knob: $(head -n1 <<<"$err" | cut -c1-160)" || fail "$knob: start succeeded"
    [ "$(state "$fcvm")" = "stopped 0" ] || fail "$knob: state $(state "$fcvm")"
    [ -n "$(emulators "$fcvm")" ] && fail "$knob: emulator left"
done
s=$(date +%s%N)
run env "FCEMU_HANG_ON=PUT /actions" "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" \
    start "$fcvm" --timeout 1
ms=$((($(date +%s%N) - s) / 1000000))
[ "$ms" -gt 2500 ] &&
    bug "start --timeout 1 against a VMM hanging on InstanceStart took $ms ms (expected: bounded by about the --timeout)"
run env FCEMU_DAEMONIZE=1 "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" start "$fcvm"
[ "$rc" -eq 0 ] && pass "a daemonizing VMM is adopted" || fail "FCEMU_DAEMONIZE: $err"
truthful "daemonized VMM" "$fcvm"
expect_ok "stop a daemonized VMM" vmctl stop "$fcvm"
truthful "daemonized VMM stopped" "$fcvm"
vmctl delete --force "$fcvm" >/dev/null 2>&1

# === hostile records ===================================================
sleep 600 &
victim=$!
strangers+=("$victim")
vstart=$(start_time "$victim")
hv=$P-h
if expect_ok "create for hostile records" create "$hv" --no-net; then
    # A dead VMM whose pid now belongs to a stranger (another start time).
    for v in "$victim" "$$" 1 0 2147483647; do
        [ "$v" = 1 ] && who="pid 1" || who="pid $v"
        setrec "$hv" "d['vmm']={'pid':$v,'start_time':$((vstart + 7)),'booted':True}"
        run vmctl show "$hv"
        [[ $out == *stopped* ]] || fail "record naming $who (wrong start time): show: $out $err"
        for c in "stop --timeout 1" kill start kill; do
            # shellcheck disable=SC2086
            vmctl $c "$hv" >/dev/null 2>&1
            [ "$c" = start ] && setrec "$hv" "d['vmm']={'pid':$v,'start_time':$((vstart + 7)),'booted':True}"
        done
        kill -0 "$victim" 2>/dev/null || { fail "the stranger sleep $victim was signalled (record naming $who)"; break; }
    done
    vmctl delete --force "$hv" >/dev/null 2>&1
    kill -0 "$victim" 2>/dev/null || fail "delete --force signalled the stranger sleep $victim"
    kill -0 "$victim" 2>/dev/null && pass "a recycled pid (sleep $victim, pid 1, this shell) is never signalled"
    [ -e "$STATE/vms/$hv" ] && fail "delete --force left $hv"
fi
if expect_ok "create for bad record types" create "$hv" --no-net; then
    for v in -5 2147483648 '"12"' 1.5 None '[]'; do
        setrec "$hv" "d['vmm']={'pid':$v,'start_time':1,'booted':True}"
        expect_error "record with pid $v" "$STATE/vms/$hv/vm.json.*pid" vmctl show "$hv"
    done
    setrec "$hv" "d['files']=[{'path':'/x','blob':'../../../etc/passwd','mode':420,'uid':0,'gid':0}]"
    expect_error "record with a blob path with .." "blob" vmctl start "$hv"
    expect_ok "delete --force a record with bad types" vmctl delete --force "$hv"
    no_vm "hostile types" "$hv"
fi
# The exact start time of a live stranger, and no API socket: the
# record names a process that serves nothing, so it is not the VMM.
if expect_ok "create for a stranger's identity" create "$hv" --no-net; then
    setrec "$hv" "d['vmm']={'pid':$victim,'start_time':$vstart,'booted':True}"
    vmctl stop "$hv" --timeout 1 >/dev/null 2>&1
    if kill -0 "$victim" 2>/dev/null; then
        pass "a stranger with the recorded start time but no API socket is not signalled"
    else
        bug "stop SIGKILLed the stranger sleep $victim: its pid and start time were in the record, but it serves no API socket (expected: pid + start time + socket identify a VMM; the same record with pid 1 or a shell's pid would signal them)"
        sleep 600 &
        victim=$!
        strangers+=("$victim")
    fi
    vmctl delete --force "$hv" >/dev/null 2>&1
fi
# Whatever listens on a VM's socket is not a VMM for that alone: a
# read-only show must not kill it.
if expect_ok "create for a socket squatter" create "$hv" --no-net; then
    "$T/fc-nonsense" --api-sock "$STATE/vms/$hv/api.sock" &
    squat=$!
    strangers+=("$squat")
    for ((i = 0; i < 40; i++)); do [ -S "$STATE/vms/$hv/api.sock" ] && break; sleep 0.05; done
    vmctl show "$hv" >/dev/null 2>&1
    sleep 0.2
    if kill -0 "$squat" 2>/dev/null; then
        pass "show leaves a non-VMM socket listener alone"
    else
        bug "'vmctl show' SIGKILLed pid $squat, a python process listening on $STATE/vms/$hv/api.sock that no record names (expected: a read-only command signals nothing it has not verified as the VM's firecracker)"
    fi
    kill -9 "$squat" 2>/dev/null
    rm -f "$STATE/vms/$hv/api.sock"
    vmctl delete --force "$hv" >/dev/null 2>&1
fi
# A netns name with '/' is refused; the VM must still be deletable.
if expect_ok "create for a hostile netns" create "$hv" --no-net; then
    setrec "$hv" "d['netns']='../../etc'; d['own_netns']=True"
    run vmctl start "$hv"
    [ "$rc" -ne 0 ] || fail "start with netns ../../etc succeeded"
    run vmctl delete --force "$hv"
    [ -d /etc ] && [ -d /run/netns ] || fail "netns ../../etc: /etc or /run/netns is gone"
    if [ -e "$STATE/vms/$hv" ]; then
        bug "delete --force cannot remove a VM whose record has netns '../../etc': $err (expected: the record is refused as corrupt and --force removes it)"
        rm -rf "${STATE:?}/vms/$hv"
    else
        pass "delete --force removes a record with a hostile netns"
    fi
fi
# A tap name of an existing non-tap device ("lo") in our namespace.
ns=$P-ns
if ip netns add "$ns"; then
    if expect_ok "create in $ns" create "$hv" --netns "$ns"; then
        setrec "$hv" "d['net']['tap']='lo'"
        expect_error "start with tap lo" "not a tap" vmctl start "$hv"
        expect_ok "delete --force with tap lo" vmctl delete --force "$hv"
        ip -n "$ns" link show lo >/dev/null 2>&1 && pass "lo survives a record naming it as tap" ||
            fail "lo is gone from $ns"
    fi

    # Two state directories, one namespace: both allocate slot 0.
    S2=$T/s2
    V2() { "$VMCTL" --state-dir "$S2" --firecracker "$FCEMU" "$@"; }
    if expect_ok "VM A in $ns" create "$P-a" --netns "$ns" --start &&
        expect_ok "VM B in $ns (other state dir)" V2 create "$P-b" --kernel "$KERNEL" \
            --rootfs "$ROOTFS" --netns "$ns"; then
        tapa=$(field "$P-a" tap)
        run V2 start "$P-b"
        tapb=$(V2 show "$P-b" --json 2>/dev/null | json 'd["tap"]')
        if [ "$rc" -eq 0 ] && [ "$tapa" = "$tapb" ]; then
            bug "VM $P-b (state dir $S2) started on tap $tapb, which running VM $P-a already uses, in namespace $ns (expected: refused, or a distinct tap)"
        fi
        V2 stop "$P-b" >/dev/null 2>&1
        if ! ip -n "$ns" link show "$tapa" >/dev/null 2>&1; then
            bug "stopping $P-b deleted tap $tapa of the running VM $P-a (expected: a VM removes only its own tap)"
        else
            pass "another state dir's VM leaves $P-a's tap alone"
        fi
        V2 delete --force "$P-b" >/dev/null 2>&1
        vmctl delete --force "$P-a" >/dev/null 2>&1
    fi
    ip netns delete "$ns"
fi

# === concurrency =======================================================
pids=()
for i in $(seq 1 30); do
    create "$P-c$i" --netns --start >"$T/c$i.out" 2>&1 &
    pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
[ "$ok" = 30 ] && pass "30 parallel create --netns --start" ||
    fail "30 parallel creates: $ok succeeded: $(cat "$T"/c*.out | sort | uniq -c)"
run vmctl list --json
uniq=$(printf '%s' "$out" | json "[len(set(v['guest_ip'] for v in d if v['name'].startswith('$P-c'))), len(set(v['tap'] + (v['netns'] or '') for v in d if v['name'].startswith('$P-c'))), len([v for v in d if v['name'].startswith('$P-c') and v['state'] == 'running'])]")
[ "$uniq" = "[30, 30, 30]" ] && pass "30 VMs: distinct IPs and taps, all running" ||
    fail "30 parallel creates: [ips, taps, running] = $uniq"
for i in $(seq 1 30); do truthful "parallel VM $i" "$P-c$i"; done
pids=()
for i in $(seq 1 30); do
    vmctl delete --force "$P-c$i" >/dev/null 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
for i in $(seq 1 30); do no_vm "parallel delete" "$P-c$i"; done

cv=$P-cc
if expect_ok "create for concurrent starts" create "$cv" --no-net; then
    pids=()
    for i in 1 2 3 4; do
        vmctl start "$cv" >/dev/null 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    [ "$(emulators "$cv" | wc -l)" = 1 ] && pass "4 concurrent starts: one VMM" ||
        fail "4 concurrent starts: VMMs $(emulators "$cv" | tr '\n' ' ')"
    truthful "concurrent starts" "$cv"
    vmctl delete --force "$cv" >/dev/null 2>&1
fi
for k in 1 2 3 4 5; do
    create "$cv" --netns >/dev/null 2>&1
    vmctl start "$cv" >/dev/null 2>&1 &
    p1=$!
    vmctl delete --force "$cv" >/dev/null 2>&1 &
    wait "$p1" "$!"
    vmctl delete --force "$cv" >/dev/null 2>&1
    no_vm "start racing delete ($k)" "$cv"
done
if expect_ok "create for stop during start" create "$cv" --no-net; then
    FCEMU_DELAY_BIND_MS=1500 "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" start "$cv" >/dev/null 2>&1 &
    sp=$!
    sleep 0.3
    expect_ok "stop during a slow start" vmctl stop "$cv"
    wait "$sp"
    truthful "stop during start" "$cv"
    vmctl delete --force "$cv" >/dev/null 2>&1
fi

# === kill -9 of vmctl at random moments ================================
kv=$P-k9
k9() { # DELAY CMD...: runs vmctl CMD, SIGKILLs it after DELAY seconds
    local d=$1 p
    shift
    "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" "$@" >/dev/null 2>&1 &
    p=$!
    sleep "$d"
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
}
for d in 0.005 0.02 0.05 0.1 0.2; do
    k9 "$d" create "$kv" --kernel "$KERNEL" --rootfs "$ROOTFS" --netns --start
    vmctl list >/dev/null 2>&1
    truthful "create killed at $d" "$kv"
    vmctl delete --force "$kv" >/dev/null 2>&1
    no_vm "create killed at $d" "$kv"
done
create "$kv" --netns >/dev/null
for knob in FCEMU_DELAY_BIND_MS=300 "FCEMU_HANG_ON=PUT /actions" X=1; do
    for d in 0.01 0.05 0.2 0.5; do
        export "${knob%%=*}=${knob#*=}"
        k9 "$d" start "$kv"
        unset "${knob%%=*}"
        truthful "start [$knob] killed at $d" "$kv"
        vmctl stop "$kv" >/dev/null 2>&1
        truthful "stop after start [$knob] killed at $d" "$kv"
        [ -n "$(ip netns exec "libvmm-$kv" ip -o link show type tun 2>/dev/null)" ] &&
            fail "start [$knob] killed at $d, then stop: tap left in libvmm-$kv"
    done
done
for d in 0.01 0.1 0.5; do
    FCEMU_CTRLALTDEL_MS=-1 vmctl start "$kv" >/dev/null 2>&1
    k9 "$d" stop "$kv" --timeout 5
    truthful "stop killed at $d" "$kv"
    [ "$(state "$kv" | cut -d' ' -f1)" = running ] ||
        fail "a stop killed at $d ended the VM: $(state "$kv")"
    vmctl kill "$kv" >/dev/null 2>&1
done
for d in 0.005 0.02 0.05 0.1; do
    [ -d "$STATE/vms/$kv" ] || create "$kv" --netns >/dev/null 2>&1
    vmctl start "$kv" >/dev/null 2>&1
    k9 "$d" delete --force "$kv"
    vmctl list >/dev/null 2>&1
    truthful "delete killed at $d" "$kv"
done
vmctl delete --force "$kv" >/dev/null 2>&1
no_vm "kill -9 series" "$kv"

# Signals to the caller's whole process group never reach the VMM.
if expect_ok "create for group signals" create "$kv" --no-net; then
    for sig in INT HUP TERM KILL; do
        setsid "$VMCTL" --state-dir "$STATE" --firecracker "$FCEMU" start "$kv" >/dev/null 2>&1 &
        pg=$!
        # The start must be over first (a signal in the middle of it is
        # the kill -9 series' business); its group then holds only what
        # the start left in it, which must not be the VMM. An empty group
        # is not signalled: its number may belong to a stranger by now.
        wait_gone "$pg" 10 || fail "SIG$sig: vmctl start still runs after 10 s"
        wait "$pg" || fail "SIG$sig: vmctl start failed"
        group_ours "$pg" && kill "-$sig" -- "-$pg" 2>/dev/null
        sleep 0.3
        [ "$(state "$kv" | cut -d' ' -f1)" = running ] && pass "SIG$sig to the caller's group: VM runs" ||
            fail "SIG$sig to the caller's process group: $(state "$kv")"
        truthful "SIG$sig to the group" "$kv"
        vmctl stop "$kv" >/dev/null 2>&1
    done
    vmctl delete --force "$kv" >/dev/null 2>&1
fi

check_clean "adversarial"
finish
