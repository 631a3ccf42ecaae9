#!/usr/bin/env bash
# Builds the parse → derivative → print → eval fuzzer (libFuzzer, ASan, UBSan)
# into build-fuzz/ and runs it on a copy of tests/fuzz/corpus for a bounded
# time.  Exits non-zero if the fuzzer finds a crash, leak, sanitizer report or
# timeout; the offending input is left in build-fuzz/artifacts/ (crash-*,
# leak-*, timeout-*; emptied at the start of each run) and can be replayed
# with tests/fuzz/run.sh replay FILE.
#
# usage: tests/fuzz/run.sh [SECONDS]          fuzz for SECONDS (default 60)
#        tests/fuzz/run.sh replay [FILE...]   run the target once on each FILE
#                                             (default: tests/fuzz/known/*)
set -eu
cd "$(dirname "$0")/../.."
mode=fuzz
if [ "${1:-}" = replay ]; then
    mode=replay
    shift
fi
seconds=${1:-60}
CC=${CC:-clang}
out=build-fuzz
mkdir -p "$out"
"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_POSIX_C_SOURCE=200809L \
    -Iinclude -Isrc tests/fuzz/fuzz_parse.c src/*.c -lm -lpthread -o "$out/fuzz_parse"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ "$mode" = replay ]; then
    [ $# -gt 0 ] || set -- $(ls tests/fuzz/known/* | grep -v README)
    status=0
    for f in "$@"; do
        log="$out/replay-$(basename "$f").log"
        if "$out/fuzz_parse" -timeout=10 -rss_limit_mb=2048 "$f" >"$log" 2>&1; then
            echo "ok      $f"
        else
            echo "FAILED  $f (see $log)"
            status=1
        fi
    done
    exit $status
fi
rm -rf "$out/corpus" "$out/artifacts"
cp -r tests/fuzz/corpus "$out/corpus"
mkdir -p "$out/artifacts"
status=0
"$out/fuzz_parse" -max_total_time="$seconds" -max_len=512 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$out/artifacts/" -print_final_stats=1 -dict=tests/fuzz/nabla.dict \
    "$out/corpus" || status=$?
if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED (exit $status); inputs: $(ls "$out"/artifacts/* 2>/dev/null | tr '\n' ' ')"
    exit 1
fi
echo "fuzz: no crashes in ${seconds}s"
