# shellcheck shell=bash
# The image cache both image scripts keep, sourced by them.
#
# A cache directory holds the files named in OUTPUTS and a manifest: the
# lines of manifest_inputs (what the files are made from), then one line
# "file NAME SIZE BLAKE2B" a file. The manifest is written last, so its
# presence and its agreement with the files is what marks the cache valid.
# One build runs at a time per directory (DIR/.lock); a build works in
# DIR/.build.* and renames its files into place.
#
# The sourcing script sets OUTPUTS and defines log, die and manifest_inputs.

# Unmounts whatever is mounted below $1 (deepest first; a chroot's /proc,
# a loop-mounted image), then removes $1 without crossing into another
# file system. $1 must be a physical path (pwd -P), as mountinfo lists
# them; the scripts resolve their cache directory so.
remove_tree() {
	local dir=$1 mnt

	[ -d "$dir" ] || return 0
	awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r mnt; do
		umount "$mnt" 2>/dev/null || umount -l "$mnt" ||
			log "warning: cannot unmount $mnt"
	done
	rm -rf --one-file-system "$dir"
}

# Lines "file NAME SIZE BLAKE2B" for the outputs in directory $1. BLAKE2b
# because it reads a 2 GiB root image in under half sha256sum's time.
manifest_files() {
	local dir=$1 name

	for name in "${OUTPUTS[@]}"; do
		printf 'file %s %s %s\n' "$name" "$(stat -c %s "$dir/$name")" \
			"$(b2sum <"$dir/$name" | cut -d' ' -f1)"
	done
}

# Whether cache directory $1 holds the outputs of today's inputs.
cache_is_valid() {
	local dir=$1 manifest=$1/manifest name

	[ -f "$manifest" ] || { log "no manifest in $dir"; return 1; }
	if [ "$(grep -v '^file ' "$manifest")" != "$(manifest_inputs)" ]; then
		log "inputs changed since the cached build:"
		diff <(grep -v '^file ' "$manifest") <(manifest_inputs) |
			sed -n 's/^[<>] /  /p' >&2 || true
		return 1
	fi
	for name in "${OUTPUTS[@]}"; do
		[ -f "$dir/$name" ] || { log "$name is missing"; return 1; }
	done
	if [ "$(grep '^file ' "$manifest")" != "$(manifest_files "$dir")" ]; then
		log "cached files do not match their manifest checksums"
		return 1
	fi
}

# Takes cache directory $1's lock on descriptor 9 for the rest of the
# script, waiting for a build that holds it (the waiter then finds the
# cache that build filled), and removes what interrupted builds left.
cache_lock() {
	local dir=$1 stale

	exec 9>"$dir/.lock"
	if ! flock -n 9; then
		log "another build holds $dir/.lock; waiting"
		flock 9
	fi
	for stale in "$dir"/.build.*; do
		[ -e "$stale" ] || continue
		log "removing $stale left by an interrupted build"
		remove_tree "$stale"
	done
}

# Moves the outputs built in $2 into cache directory $1 with their
# manifest. The old manifest goes first and the new one last, so a crash
# in between leaves a cache without a manifest, which the next run
# rebuilds.
cache_publish() {
	local dir=$1 built=$2 name

	manifest_inputs >"$built/manifest"
	manifest_files "$built" >>"$built/manifest"
	sync -f "$built"/*
	rm -f "$dir/manifest"
	sync -f "$dir"
	for name in "${OUTPUTS[@]}"; do
		mv -f "$built/$name" "$dir/$name"
	done
	sync -f "$dir"
	mv -f "$built/manifest" "$dir/manifest"
	sync -f "$dir"
}
