# The end-to-end tests' harness, sourced by tests/*_test.sh (not a test
# itself): NABLA, the passed/failed counters, expect_out, expect_err.
set -u
NABLA=${NABLA:-./nabla}
passed=0 failed=0
fail() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*" >&2; }
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# expect_out WANT ARGS...: stdout equals WANT, exit 0
expect_out() {
    local want=$1; shift
    local got rc
    got=$("$NABLA" "$@" 2>"$err"); rc=$?
    if [ "$rc" -eq 0 ] && [ "$got" = "$want" ]; then passed=$((passed + 1))
    else fail "nabla $* -> rc=$rc out=[$got] err=[$(cat "$err")] want [$want]"; fi
}

# expect_status STATUS PATTERN ARGS...: exit STATUS, stderr matches PATTERN, stdout empty
expect_status() {
    local want_rc=$1 pattern=$2; shift 2
    local got rc
    got=$("$NABLA" "$@" 2>"$err"); rc=$?
    if [ "$rc" -eq "$want_rc" ] && [ -z "$got" ] && grep -qE -- "$pattern" "$err"; then passed=$((passed + 1))
    else fail "nabla $* -> rc=$rc out=[$got] err=[$(cat "$err")] want rc $want_rc /$pattern/"; fi
}

# expect_err PATTERN ARGS...: an error (exit 2) matching PATTERN, stdout empty
expect_err() { expect_status 2 "$@"; }
