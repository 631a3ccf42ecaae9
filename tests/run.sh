#!/usr/bin/env bash
# Runs every test program and the CLI tests; prints one total line
# "N passed, N failed" and exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
bin_dir=${TEST_BIN_DIR:-build/tests}
export NABLA=${NABLA:-./nabla}
passed=0 failed=0 status=0
run_one() {
    local name=$1; shift
    local out
    out=$("$@" 2>&1); local rc=$?
    local line
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -n 20
        echo "$name: no result line (exit $rc)"
        failed=$((failed + 1)); status=1; return
    fi
    local p f
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
        printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed' | tail -n 40
        status=1
    fi
    echo "$name: $line"
}
for t in "$bin_dir"/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for s in tests/*_test.sh; do
    [ -f "$s" ] || continue
    run_one "$(basename "$s")" bash "$s"
done
echo "total: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
exit $status
