#!/bin/bash
# Only the modules that must start programs may: the VMM process module
# (process.c) runs firecracker, snapshot-prep (prep.c) runs e2fsck. Any
# other file of lib/ that forks, execs, spawns or runs a shell fails this.
# Usage: process-policy.sh LIB_DIR
set -u
dir=$1
allowed='^(process|prep)\.c$'
pattern='\b(fork|vfork|clone|clone3|execl|execle|execlp|execv|execve|execvp|execvpe|fexecve|posix_spawn|posix_spawnp|system|popen)[[:space:]]*\('
failed=0

for f in "$dir"/*.[ch]; do
    [ -e "$f" ] || continue
    base=$(basename "$f")
    [[ $base =~ $allowed ]] && continue
    # Comments may name the calls; code may not. Strip /* */ and // first.
    hits=$(sed -e 's://.*$::' "$f" | perl -0pe 's{/\*.*?\*/}{ "\n" x ($& =~ tr/\n//) }gse' |
        grep -nE "$pattern")
    if [ -n "$hits" ]; then
        echo "FAIL: $f starts processes but is not allowed to:"
        echo "$hits" | sed 's/^/    /'
        failed=1
    fi
done
[ "$failed" -eq 0 ] && echo "no file of $dir outside process.c and prep.c starts a process"
exit "$failed"
