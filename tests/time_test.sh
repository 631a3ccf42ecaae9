#!/usr/bin/env bash
# `nabla time` end to end: exactly three lines on stdout in the documented
# format, for the neuron, the issue's MLP and a vector function, in f32 and
# f64, 1 and 2 threads; errors exit 2 with nothing on stdout.  Small sizes and
# one sample each: this checks behaviour, not speed.
. "$(dirname "$0")/expect.sh" # its expect_err is redefined below for `nabla time`

# expect_time ARGS...: exit 0, stdout is "f: S", "f+derivative: S", "ratio: R"
expect_time() {
    local got rc
    got=$("$NABLA" time "$@" --repeat 1 2>"$err"); rc=$?
    local re='^f: [0-9.e+-]+
f\+derivative: [0-9.e+-]+
ratio: [0-9.e+-]+$'
    if [ "$rc" -eq 0 ] && [[ "$got" =~ $re ]]; then passed=$((passed + 1))
    else fail "nabla time $* -> rc=$rc out=[$got] err=[$(cat "$err")]"; fi
}

# expect_err PATTERN ARGS...: exit 2, nothing on stdout, stderr matches
expect_err() {
    local pattern=$1; shift
    local got rc
    got=$("$NABLA" time "$@" 2>"$err"); rc=$?
    if [ "$rc" -eq 2 ] && [ -z "$got" ] && grep -qE -- "$pattern" "$err"; then passed=$((passed + 1))
    else fail "nabla time $* -> rc=$rc out=[$got] err=[$(cat "$err")] want /$pattern/"; fi
}

NEURON='X: matrix(N, n); w: vector(n); y: vector(N); b: scalar'
MLP="X: matrix(B, 784); Y: matrix(B, 10); W1: matrix(784, 256); b1: vector(256); W2: matrix(256, 256); b2: vector(256); W3: matrix(256, 10); b3: vector(10)"

expect_time 'sum((y - max(0, X*w + b)).^2)/N' --wrt w,b --let "$NEURON" --size 'N=500, n=20'
expect_time 'sum((y - max(0, X*w + b)).^2)/N' --wrt w,b --let "$NEURON" --size 'N=500, n=20' --dtype f32 --threads 2
expect_time 'sum((y - max(0, X*w + b)).^2)/N' --wrt w,b --let "$NEURON" --size 'N=500, n=20' --no-native
# by default the neuron's pass over X is generated code; --no-native and a missing compiler: the interpreter
"$NABLA" time 'sum((y - max(0, X*w + b)).^2)/N' --wrt w,b --let "$NEURON" --size 'N=500, n=20' --repeat 1 --verbose \
    >/dev/null 2>"$err"
grep -q 'as one native row loop over 500 rows' "$err" && passed=$((passed + 1)) || fail "time: no native loop [$(cat "$err")]"
"$NABLA" time 'sum((y - max(0, X*w + b)).^2)/N' --wrt w,b --let "$NEURON" --size 'N=500, n=20' --repeat 1 --verbose \
    --no-native >/dev/null 2>"$err"
! grep -q 'native' "$err" && passed=$((passed + 1)) || fail "time --no-native: [$(cat "$err")]"
NABLA_CC=/nonexistent/cc "$NABLA" time 'sum((y - max(0, X*w + b)).^2)/N' --wrt w,b --let "$NEURON" --size 'N=500, n=20' \
    --repeat 1 --verbose >/dev/null 2>"$err"
grep -q "no native code (the C compiler '/nonexistent/cc' could not be run" "$err" && passed=$((passed + 1)) ||
    fail "time without a compiler: [$(cat "$err")]"
expect_time "H = relu(X*W1 + b1'); G = relu(H*W2 + b2'); Z = G*W3 + b3'; softmax_xent(Z, Y)" \
    --wrt W1,b1,W2,b2,W3,b3 --let "$MLP" --size B=8 --dtype f32
expect_time 'exp(x).*sin(x) + x.^2' --wrt x --let 'x: vector(n)' --size n=64
expect_time 'exp(x).*sin(x) + x.^2' --wrt x --let 'x: vector(n)' --size n=64 --dense
expect_time 'tanh(A*x)' --wrt x --let 'A: matrix(n, n); x: vector(n)' --size n=32 --threads 2
expect_time '3*x^2*y' --wrt x,y
expect_time - --wrt x <<<'t1 = sin(x); t2 = t1*x; t2 - 0.5'

# the stderr report names the structure of a diagonal Jacobian
"$NABLA" time 'exp(x).*sin(x)' --wrt x --let 'x: vector(n)' --size n=16 --repeat 1 >/dev/null 2>"$err"
if grep -q 'diagonal (16 entries computed)' "$err"; then passed=$((passed + 1)); else fail "no structure report: $(cat "$err")"; fi

expect_err 'missing --wrt' 'sum(x)' --let 'x: vector(n)' --size n=4
expect_err 'missing EXPR' --wrt x
expect_err 'dimension n has no size' 'sum(x)' --wrt x --let 'x: vector(n)'
expect_err "invalid --dtype value 'f16'" 'x^2' --wrt x --dtype f16
expect_err 'invalid --threads' 'x^2' --wrt x --threads 0
expect_err 'invalid --repeat' 'x^2' --wrt x --repeat 0
expect_err 'matrix' 'X' --wrt X --let 'X: matrix(m, n)' --size 'm=2, n=3'
expect_err 'unknown option' 'x^2' --wrt x --bogus

# sizes too large: an error before any buffer is sized (these crashed with a
# heap overflow when the plan's rejection went unchecked and rows*cols*8
# wrapped around), never a crash or an out-of-memory kill
expect_err 'too large' 'sum(X)' --wrt X --let 'X: matrix(N, n)' --size 'N=2147437309, n=1073764994'
expect_err 'too large' 'sum(X)' --wrt X --let 'X: matrix(N, n)' --size 'N=2147483647, n=2147483647' --dtype f32
expect_err 'too large' 'sum(X)' --wrt X --let 'X: matrix(N, n)' --size 'N=100000000, n=100000'
expect_err 'too large' 'exp(x)' --wrt x --let 'x: vector(n)' --size n=2147483647 --dense
expect_err 'too large' 'tanh(A*x)' --wrt x --let 'A: matrix(n, n); x: vector(n)' --size n=1073741824
expect_err 'too large' 'sum((y - max(0, X*w + b)).^2)/N' --wrt w,b --let "$NEURON" --size 'N=2147483647, n=1000000'
# each buffer fits, all of them together do not fit in any machine's memory (8 TiB for X)
expect_err 'more than this machine.s .* of memory' 'sum(X)' --wrt X --let 'X: matrix(N, n)' --size 'N=1048576, n=1048576'
# sizes that are not sizes
expect_err 'expected a size' 'sum(x)' --wrt x --let 'x: vector(n)' --size n=0
expect_err 'expected a size' 'sum(x)' --wrt x --let 'x: vector(n)' --size n=-3
expect_err 'expected a size' 'sum(x)' --wrt x --let 'x: vector(n)' --size n=99999999999999999999
expect_err 'expected a size' 'sum(x)' --wrt x --let 'x: vector(n)' --size n=abc
expect_err 'dimension n has no size' 'sum(x)' --wrt x --let 'x: vector(n)' --size m=3

out=$("$NABLA" time --help); rc=$?
if [ "$rc" -eq 0 ] && [[ "$out" == usage:* ]]; then passed=$((passed + 1)); else fail "time --help"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
