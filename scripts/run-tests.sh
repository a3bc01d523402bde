#!/bin/bash
# The README's test command: installs what is missing, builds libvmm, and
# runs every test suite twice, once as built and once under
# AddressSanitizer and UndefinedBehaviorSanitizer. Ends with one line,
# "N passed, N failed, N skipped", counted from meson's test logs.
#
# Usage: scripts/run-tests.sh [--no-sanitize] [--no-images] [MESON TEST ARGS...]
#   --no-sanitize  skip the sanitizer build
#   --no-images    do not build the guest images (end-to-end suites skip)
set -uo pipefail
cd "$(dirname "$0")/.."

sanitize=1 images=1
while [ $# -gt 0 ]; do
    case $1 in
    --no-sanitize) sanitize=0 ;;
    --no-images) images=0 ;;
    *) break ;;
    esac
    shift
done

scripts/install-deps.sh || exit 1

# The end-to-end suites boot real Debian guests; without images they skip,
# so a failed image build fails the run rather than hiding behind skips.
status=0
if [ "$images" -eq 1 ] && ! scripts/build-guest-images.sh; then
    echo "run-tests: building the guest images failed" >&2
    status=1
fi

logs=()

# run_suites DIR SETUP-ARGS...: configure DIR if needed, build, test.
run_suites() {
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" || return 1
    fi
    ninja -C "$dir" || return 1
    logs+=("$dir/meson-logs/testlog.json")
    meson test -C "$dir" --print-errorlogs --num-processes 2 "${test_args[@]}"
}

test_args=("$@")
run_suites build || status=1

if [ "$sanitize" -eq 1 ]; then
    # Any sanitizer report aborts the test program, so it fails its test.
    export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:strict_string_checks=1
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
    # The end-to-end suite boots real guests; once is enough.
    test_args=("${test_args[@]}" --no-suite e2e)
    run_suites build-sanitize -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debug || status=1
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

# On a whole run, a build with the distribution's libcurl (-Dcurl=system)
# too: the API client's suite, the exported symbols and the install, where
# it differs from the default build.
if [ $# -eq 0 ]; then
    test_args=(api abi install-examples)
    run_suites build-system-curl -Dcurl=system || status=1
fi

/usr/bin/env python3 - "${logs[@]}" <<'PY' || status=1
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        failed += 1
        print(f"run-tests: no test log at {path}")
        continue
    for line in lines:
        result = json.loads(line).get("result")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
exit "$status"
