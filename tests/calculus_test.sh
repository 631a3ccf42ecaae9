#!/usr/bin/env bash
# nabla diff/check with matrix functions end to end: Cookbook forms, a list
# of variables of any types (--wrt W1,b1,W2,b2: one labelled derivative
# each), values with --at, and the error paths (message, exit 2, no stdout).
. "$(dirname "$0")/expect.sh"
SQ='X, A: matrix(n, n); a, b: vector(n)'
expect_out 'det(X)·X⁻ᵀ' diff 'det(X)' --wrt X --let "$SQ"
expect_out "det(X)*inv(X)'" diff 'det(X)' --wrt X --let "$SQ" --format ascii
expect_out '\det\left(X\right) X^{-\top}' diff 'det(X)' --wrt X --let "$SQ" --format latex
expect_out '-X⁻ᵀ·a·bᵀ·X⁻ᵀ' diff "a'*inv(X)*b" --wrt X --let "$SQ"
expect_out $'0.5 0\n-0.125 0.25' diff 'logdet(X)' --wrt X --let "$SQ" --at 'X=[[2, 1], [0, 4]]'
expect_out '-2' eval 'det(X)' --let "$SQ" --at 'X=[[1, 2], [3, 4]]'

NET='W1: matrix(h, n); b1: vector(h); W2: row(h); b2: scalar; x: vector(n)'
F='sigmoid(W2*tanh(W1*x + b1) + b2)'
expect_out "$(printf '%s\n' \
    "df/dW1: t1 = sigmoid(W2*tanh(W1*x + b1) + b2); t1*(1 - t1)*((W2' .* (1 - tanh(W1*x + b1).^2))*x')" \
    "df/db1: t1 = sigmoid(W2*tanh(W1*x + b1) + b2); t1*(1 - t1)*(W2' .* (1 - tanh(W1*x + b1).^2))'" \
    "df/dW2: t1 = sigmoid(W2*tanh(W1*x + b1) + b2); t1*(1 - t1)*tanh(W1*x + b1)'" \
    "df/db2: t1 = sigmoid(W2*tanh(W1*x + b1) + b2); t1*(1 - t1)")" \
    diff "$F" --wrt W1,b1,W2,b2 --let "$NET" --format ascii
expect_out $'∂f/∂X:\n1 0\n0 1\n∂f/∂x:\n1 1' diff 'tr(X) + sum(x)' --wrt X,x --let 'X: matrix(2, 2); x: vector(2)' \
    --at 'X=[[1, 2], [3, 4]]; x=[1, 2]'
got=$("$NABLA" check "$F" --wrt W1,b1,W2,b2 --let "$NET" 2>"$err"); rc=$?
if [ "$rc" -eq 0 ] && [[ "$got" == "max relative error: "* ]]; then passed=$((passed + 1))
else fail "check --wrt W1,b1,W2,b2 -> rc=$rc out=[$got] err=[$(cat "$err")]"; fi

expect_err 'logdet of a matrix whose determinant is not positive \(det = -2\)' \
    eval 'logdet(X)' --let "$SQ" --at 'X=[[1, 2], [3, 4]]'
expect_err 'inverse of a singular matrix' eval 'inv(X)' --let "$SQ" --at 'X=[[1, 2], [2, 4]]'
expect_err 'det needs a square matrix, got matrix\(m, n\)' diff 'det(M)' --wrt M --let 'M: matrix(m, n)'
expect_out $'∂f/∂W1 = xᵀ ⊗ I\n∂f/∂b1 = I' diff 'W1*x + b1' --wrt W1,b1 --let "$NET"
expect_out 'Bᵀ ⊗ A' diff 'A*X*B' --wrt X --let 'A, B, X: matrix(n, n)'
expect_out '-(X⁻ᵀ ⊗ X⁻¹)' diff 'inv(X)' --wrt X --let "$SQ"
expect_out 'K' diff "X'" --wrt X --let "$SQ"
expect_out $'0 0 1 2\n0 0 3 4\n1 2 1 2\n3 4 3 4' diff 'A*X*B' --wrt X --let 'A, B, X: matrix(2, 2)' \
    --at 'A=[[1, 2], [3, 4]]; B=[[0, 1], [1, 1]]; X=[[1, 0], [0, 1]]'
expect_out 'diag(vec(2·X))' diff 'X .* X' --wrt X --let "$SQ"

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
