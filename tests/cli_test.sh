#!/usr/bin/env bash
# The nabla command end to end: formulas, values, checks, and every error
# path (message, caret, exit status, nothing on stdout).
. "$(dirname "$0")/expect.sh"

VEC='w, x: vector(n); z: scalar'
NEURON='w: vector(n); X: matrix(N, n); y: vector(N); b: scalar'

# formulas (the issue's examples)
expect_out "[6*x*y, 3*x^2]'" diff '3*x^2*y' --wrt x,y --format ascii
expect_out '[[6*x*y, 3*x^2], [2, 8*y^7]]' diff '[3*x^2*y, 2*x + y^8]' --wrt x,y --format ascii
expect_out '[[6*x*y, 2], [3*x^2, 8*y^7]]' diff '[3*x^2*y, 2*x + y^8]' --wrt x,y --format ascii --layout denominator
expect_out 'diag(x)' diff 'w .* x' --wrt w --let "$VEC" --format ascii
expect_out '-eye(n)' diff 'w - x' --wrt x --let "$VEC" --format ascii
expect_out 'eye(n)' diff 'x' --wrt x --let "$VEC" --format ascii
expect_out "ones(n)'" diff 'sum(x)' --wrt x --let "$VEC" --format ascii
expect_out "x'" diff 'dot(w, x)' --wrt w --let "$VEC" --format ascii
expect_out 'ones(n)' diff 'x + z' --wrt z --let "$VEC" --format ascii
expect_out '𝟏ᵀ' diff 'sum(x)' --wrt x --let "$VEC"
expect_out 'diag(-w ⊘ x²)' diff 'w ./ x' --wrt x --let "$VEC"
expect_out '0' diff '99' --wrt x --format ascii
expect_out '2*x' diff - --wrt x --format ascii <<<'x^2'
expect_out "2*((X*w + b > 0) .* (X*w + b - y))'*X/N" \
    diff 'u = X*w + b; v = y - max(0, u); sum(v.^2)/N' --wrt w --let "$NEURON" --format ascii
expect_out '\frac{2}{x}' diff 'ln(x^2)' --wrt x --format latex

# values
expect_out $'4 0 0\n0 5 0\n0 0 6' diff 'w .* x' --wrt w --let "$VEC" --at 'w=[1,2,3]; x=[4,5,6]'
expect_out '36 12' diff '3*x^2*y' --wrt x,y --at 'x=2; y=3'
expect_out $'36\n12' diff '3*x^2*y' --wrt x,y --at 'x=2; y=3' --layout denominator
expect_out $'1\n1' diff 'x + z' --wrt z --let "$VEC" --at 'x=[1,2]; z=3'
expect_out $'3\n7' eval 'X*w' --let 'X: matrix(N, n); w: vector(n)' --at 'X=[[1,2],[3,4]]; w=[1,1]'
expect_out '2.5' eval 'sum(v)/N' --let 'v: vector(N)' --at 'v=[1,2,3,4]'
expect_out '0.10000000000000001' eval 'x/10' --at 'x=1'
expect_out $'1 2 3\n1 2 3' diff 'sum(W*x)' --wrt W --let 'W: matrix(2, 3); x: vector(3)' --at 'W=[[1,2,3],[4,5,6]]; x=[1,2,3]'

# check
for f in 'sin(x^2)*y' 'ln(sin(x^3)^2)' 'exp(x)*tanh(y)/(1 + x^2)'; do
    out=$("$NABLA" check "$f" --wrt x,y --seed 3 2>&1); rc=$?
    if [ $rc -eq 0 ] && [[ $out == "max relative error: "* ]]; then passed=$((passed + 1)); else fail "check $f: rc=$rc $out"; fi
done
out=$("$NABLA" check 'sum((y - max(0, X*w + b)).^2)/N' --wrt w --let "$NEURON" --seed 7 2>&1); rc=$?
if [ $rc -eq 0 ]; then passed=$((passed + 1)); else fail "check neuron: rc=$rc $out"; fi

# errors: message, caret column, status 2, nothing on stdout
expect_status 2 'error: .*' diff 'w + ' --wrt w
expect_status 2 '^     \^$' diff 'w + ' --wrt w
expect_status 2 'vector\(n\).*vector\(m\)' diff 'w + v' --wrt w --let 'w: vector(n); v: vector(m)'
expect_status 2 'matrix\(N, n\).*vector\(m\)' eval 'X*v' --let 'X: matrix(N, n); v: vector(m)' --at 'X=[[1]]; v=[1]'
expect_status 2 "unknown function 'foo'" diff 'foo(x)' --wrt x
expect_status 2 "inner product write a'\\*b or dot" diff 'w*x' --wrt w --let 'w, x: vector(n)'
expect_status 2 'variable' diff 'x + 1' --wrt 'x+1'
expect_out '2*u' diff 'u = 2*x; u^2' --wrt u --format ascii   # a definition differentiated against is a variable
expect_status 2 "expected" eval 'x' --at 'x=[1,2'
expect_status 2 'log of a negative' eval 'log(x)' --at 'x=-1'
expect_status 2 'division by zero' eval '1/x' --at 'x=0'
expect_status 2 'no value' eval 'x + y' --at 'x=1'
expect_out '2·I' diff 'X*2' --wrt X --let 'X: matrix(2, 2)'
expect_status 2 '' diff '((((((x' --wrt x
expect_status 2 '' diff "$(printf '%0.s(' $(seq 1 20000))x" --wrt x
expect_status 2 '' diff $'\x01\x02\xff' --wrt x
expect_status 2 '' diff 'x' --wrt
expect_status 2 '' diff 'x' --bogus
expect_status 2 '' eval 'x' --at 'x=1e999'
# check: a large |f| is no false alarm, and a derivative that disagrees still fails
expect_out 'max relative error: 0' check '1e10 + x' --wrt x
expect_out 'max relative error: 0' check '1e10 + sin(x)*x' --wrt x --seed 5
out=$("$NABLA" check '1e10 + max(0, x)' --wrt x --at 'x=0' 2>&1); rc=$?
if [ $rc -eq 1 ] && [[ $out == "max relative error: 0.4"* ]]; then passed=$((passed + 1)); else fail "check kink: rc=$rc $out"; fi

# the paper's notation, rows, self-reference
expect_out "[6·x·y, 3·x²]ᵀ" diff '3*x^2*y' --wrt x,y
expect_out "[6·x·y, 3·x²]" diff '3*x^2*y' --wrt x,y --layout denominator
expect_out 'exp(x)' diff 'e^x' --wrt x --format ascii
expect_out '2·π·x' diff 'π*x^2' --wrt x
expect_out "2*sum(x)*ones(n)" diff "sum(x*x')" --wrt x --let 'x: vector(n)' --layout denominator --format ascii
expect_status 2 "Kronecker" diff 'x ⊗ y' --wrt x
expect_status 2 '^    \^$' diff 'x ⊗ y' --wrt x
expect_status 2 "'u' is used in its own definition" eval 'u = u*2; u*10' --at 'u=1'
expect_status 2 '^      \^$' eval 'u = u*2; u*10'

# output that cannot be written is an error: a full disk, a closed pipe
"$NABLA" diff 'x^2' --wrt x >/dev/full 2>"$err"; rc=$?
if [ $rc -eq 2 ] && grep -q 'writing the output failed' "$err"; then passed=$((passed + 1)); else fail "/dev/full: rc=$rc"; fi
"$NABLA" --help >/dev/full 2>/dev/null; rc=$?
if [ $rc -eq 2 ]; then passed=$((passed + 1)); else fail "--help >/dev/full: rc=$rc"; fi
# closed_pipe IGNORE_SIGPIPE: exit status of nabla writing into a pipe whose reader is gone
closed_pipe() {
    python3 -c 'import os, subprocess, sys
r, w = os.pipe(); os.close(r)
p = subprocess.run(sys.argv[2:], stdout=w, stderr=subprocess.DEVNULL, restore_signals=sys.argv[1] == "0")
print(p.returncode)' "$1" "$NABLA" eval 'x' --at 'x=1'
}
rc=$(closed_pipe 1)
if [ "$rc" = 2 ]; then passed=$((passed + 1)); else fail "closed pipe (SIGPIPE ignored): rc=$rc"; fi
rc=$(closed_pipe 0)
if [ "$rc" != 0 ]; then passed=$((passed + 1)); else fail "closed pipe: rc=$rc"; fi

expect_out "nabla $(sed -n 's/#define NABLA_VERSION "\(.*\)"/\1/p' include/nabla.h)" --version

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
