#!/usr/bin/env bash
# nabla hessian end to end: structured formulas, values, Hessian-vector
# products (--along), and the error paths (message, exit status, no stdout).
. "$(dirname "$0")/expect.sh"
QUAD='x: vector(n); A: matrix(n, n)'
expect_out 'A + Aᵀ' hessian "x'*A*x" --wrt x --let "$QUAD"
expect_out "A + A'" hessian "x'*A*x" --wrt x --let "$QUAD" --format ascii
expect_out '2·𝟏·𝟏ᵀ' hessian 'sum(x)^2' --wrt x --let "$QUAD"
expect_out 'diag(exp(x))' hessian 'sum(exp(x))' --wrt x --let "$QUAD"
expect_out '6·x·y' hessian 'x^3*y' --wrt x
expect_out $'2 6\n6 4' hessian "x'*A*x" --wrt x --let "$QUAD" --at 'x=[5, 6]; A=[[1, 2], [4, 2]]'
expect_out $'1\n0' hessian 'sum(exp(x))' --wrt x --let "$QUAD" --along '[1, 0]' --at 'x=[0, 1]'
expect_out $'2\n6' hessian "x'*A*x" --wrt x --let "$QUAD" --along '[1, 0]' --at 'A=[[1, 2], [4, 2]]'
expect_out '[[6·x·y, 3·x²], [3·x², 0]]' hessian 'x^3*y' --wrt x,y
expect_out $'8.3628102926972723 0.76525830980149401\n0.76525830980149401 -0.90929742682568171' \
    hessian 'x^3*y + sin(x*y)' --wrt x,y --at 'x=1; y=2'
expect_err 'one variable' hessian 'x*y' --wrt x,y --along 1
expect_out 'I ⊗ (A + Aᵀ)' hessian "tr(X'*A*X)" --wrt X --let 'X, A: matrix(n, n)'
expect_err 'scalar' hessian 'x' --wrt x --let "$QUAD"
expect_err 'scalar but the value given is 2x1' hessian 'x^2' --wrt x --along '[1, 2]'
expect_err "already uses" hessian 'x*along' --wrt x --along 1
expect_err 'missing --wrt' hessian 'x^2'
expect_err 'invalid --format' hessian 'x^2' --wrt x --format roman
"$NABLA" hessian --help | grep -q 'Hessian-vector product' && passed=$((passed + 1)) || fail "hessian --help"

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
