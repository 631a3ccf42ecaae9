#!/usr/bin/env bash
# Runs every test program ($TEST_BIN_DIR/test_*) and every tests/*_test.sh, and
# prints exactly one summary line "N passed, N failed"; exits non-zero if
# anything failed.  A file that fails (a failed check, a non-zero exit, no
# result line) has its output printed above the summary.  TEST_VERBOSE=1
# (`make test V=1`) also prints each file's own output (coverage counters,
# statistics) and a line "NAME: N passed, N failed" per file.
set -u
cd "$(dirname "$0")/.."
bin_dir=${TEST_BIN_DIR:-build/tests}
verbose=${TEST_VERBOSE:-}
export NABLA=${NABLA:-./nabla}
passed=0 failed=0 status=0
result_re='^[0-9]+ passed, [0-9]+ failed$'

# show_output TEXT: the file's output without its result line; a long output
# keeps its head (the first failures) and its tail (a crash report).
show_output() {
    local body
    body=$(printf '%s\n' "$1" | grep -v -E "$result_re")
    [ -n "$body" ] || return 0
    local lines
    lines=$(printf '%s\n' "$body" | wc -l)
    if [ "$lines" -le 80 ]; then
        printf '%s\n' "$body"
    else
        printf '%s\n' "$body" | head -n 50
        echo "... ($((lines - 80)) lines left out)"
        printf '%s\n' "$body" | tail -n 30
    fi
}

run_one() {
    local name=$1; shift
    local out rc line
    out=$("$@" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E "$result_re" | tail -n 1)
    if [ -z "$line" ]; then
        show_output "$out"
        echo "$name: FAILED: no result line (exit $rc)"
        failed=$((failed + 1)); status=1
        return
    fi
    local p f
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
        show_output "$out"
        echo "$name: FAILED: $line (exit $rc)"
        [ "$f" -ne 0 ] || failed=$((failed + 1)) # a non-zero exit with no failed check still fails
        status=1
    elif [ -n "$verbose" ] && [ "$verbose" != 0 ]; then
        show_output "$out"
        echo "$name: $line"
    fi
}

for t in "$bin_dir"/test_*; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for s in tests/*_test.sh; do
    [ -f "$s" ] || continue
    run_one "$(basename "$s")" bash "$s"
done
echo "$passed passed, $failed failed"
exit $status
