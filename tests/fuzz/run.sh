#!/usr/bin/env bash
# Builds a libFuzzer target (ASan, UBSan) into build-fuzz/ and runs it on a
# copy of tests/fuzz/corpus for a bounded time.  Exits non-zero if the fuzzer
# finds a crash, leak, sanitizer report, broken invariant or timeout; the
# offending input is left in build-fuzz/artifacts/ (build-fuzz/artifacts-TARGET/
# for targets other than parse; crash-*, leak-*, timeout-*; emptied at the
# start of each run) and can be replayed with tests/fuzz/run.sh TARGET replay FILE.
#
# Targets (tests/fuzz/fuzz_TARGET.c):
#   parse    parse → derivative → print → eval (the default)
#   compile  parse → derivative → nb_compile (f64) → run, compared with nb_eval
#
# usage: tests/fuzz/run.sh [TARGET] [SECONDS]          fuzz for SECONDS (default 60)
#        tests/fuzz/run.sh [TARGET] replay [FILE...]   run the target once on each
#                                                      FILE (default: the target's
#                                                      known inputs, tests/fuzz/known/
#                                                      for parse, known-TARGET/ else)
set -eu
cd "$(dirname "$0")/../.."
target=parse
if [ $# -gt 0 ] && [ -f "tests/fuzz/fuzz_$1.c" ]; then
    target=$1
    shift
fi
mode=fuzz
if [ "${1:-}" = replay ]; then
    mode=replay
    shift
fi
seconds=${1:-60}
CC=${CC:-clang}
out=build-fuzz
suffix=$([ "$target" = parse ] && echo "" || echo "-$target")
known=tests/fuzz/known$suffix
artifacts=$out/artifacts$suffix
bin=$out/fuzz_$target
mkdir -p "$out"
make -s O="$out" "$out/src/scalar_text.inc" # src/native.c's copy of src/scalar.h
"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_POSIX_C_SOURCE=200809L \
    -Iinclude -Isrc -I"$out/src" "tests/fuzz/fuzz_$target.c" src/*.c -lm -lpthread -ldl -o "$bin"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ "$mode" = replay ]; then
    [ $# -gt 0 ] || set -- $(ls "$known"/* 2>/dev/null | grep -v README)
    status=0
    for f in "$@"; do
        log="$out/replay-$target-$(basename "$f").log"
        if "$bin" -timeout=10 -rss_limit_mb=2048 "$f" >"$log" 2>&1; then
            echo "ok      $f"
        else
            echo "FAILED  $f (see $log)"
            status=1
        fi
    done
    exit $status
fi
rm -rf "$out/corpus-$target" "$artifacts"
cp -r tests/fuzz/corpus "$out/corpus-$target"
mkdir -p "$artifacts"
status=0
"$bin" -max_total_time="$seconds" -max_len=512 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 -dict=tests/fuzz/nabla.dict \
    "$out/corpus-$target" || status=$?
if [ "$status" -ne 0 ]; then
    echo "fuzz $target: FAILED (exit $status); inputs: $(ls "$artifacts"/* 2>/dev/null | tr '\n' ' ')"
    exit 1
fi
echo "fuzz $target: no crashes in ${seconds}s"
