#!/usr/bin/env bash
# The derivations of Parr & Howard, "The Matrix Calculus You Need For Deep
# Learning" (arXiv 1802.01528), worked by nabla.  Each derivative is printed
# as a formula (numerator layout, as in the paper) and checked against
# central finite differences at a random point.  Run from the repository
# root after `make` (or via `make demo`).
set -euo pipefail

NABLA=${NABLA:-./nabla}
# The random test points come from this seed.  (With seed 1 every neuron of
# the cost below happens to be inactive, so both sides would be 0.)
SEED=2

section() { printf '\n== %s ==\n' "$1"; }

# derive F WRT [DECLS]: prints ∂F/∂WRT and checks it numerically (nabla
# check exits non-zero, stopping the demo, when the two disagree).
derive() {
    local f=$1 wrt=$2 args=(--wrt "$2")
    [ $# -ge 3 ] && args+=(--let "$3")
    local formula check
    formula=$("$NABLA" diff "$f" "${args[@]}")
    check=$("$NABLA" check "$f" "${args[@]}" --seed "$SEED")
    [[ $wrt == *,* ]] && wrt="($wrt)"
    printf '  ∂/∂%s  %s  =  %s    (%s)\n' "$wrt" "$f" "$formula" "$check"
}

section "Scalar functions of several scalars: the gradient is a row"
derive '3*x^2*y' 'x, y'
derive '2*x + y^8' 'x, y'

section "Vector functions of several scalars: the Jacobian stacks the gradients"
derive '[3*x^2*y, 2*x + y^8]' 'x, y'
printf '  denominator layout (the transpose): %s\n' \
    "$("$NABLA" diff '[3*x^2*y, 2*x + y^8]' --wrt 'x, y' --layout denominator)"

section "Single-variable rules and the chain rule"
for f in '99' '3*x' 'x^3' 'x^2 + 3*x' 'x^2 - 3*x' 'x^2*x' 'ln(x^2)' '9*(x + x^2)' 'sin(x^2)' \
    'ln(sin(x^3)^2)' 'x + x^2' 'sin(x + x^2)' '[ln(x^2), sin(3*x)]'; do
    derive "$f" x 'x: scalar'
done

vectors='w, x: vector(n); z: scalar'
section "Element-wise operations on vectors ($vectors)"
derive 'x' x "$vectors"
for f in 'w + x' 'w - x' 'w .* x' 'w ./ x'; do
    derive "$f" w "$vectors"
    derive "$f" x "$vectors"
done

section "Scalar expansion and reductions"
for f in 'x + z' 'x*z' 'sum(x*z)'; do
    derive "$f" x "$vectors"
    derive "$f" z "$vectors"
done
derive 'sum(x)' x "$vectors"
derive "w'*x" w "$vectors"
derive "w'*x" x "$vectors"
derive 'max(0, x)' x "$vectors"

section "The vector chain rule: element-wise functions give diagonal Jacobians"
derive 'sin(x .^ 2)' x "$vectors"
derive 'sum(exp(w .* x))' w "$vectors"

neuron='w, x: vector(n); b: scalar'
section "The neuron z = w·x + b and its activation ($neuron)"
derive "w'*x + b" w "$neuron"
derive "w'*x + b" b "$neuron"
derive "max(0, w'*x + b)" w "$neuron"
derive "max(0, w'*x + b)" b "$neuron"

data='X: matrix(N, n); w: vector(n); y: vector(N); b: scalar'
cost='sum((y - max(0, X*w + b)).^2)/N'
section "The cost C(w, b) = (1/N) Σᵢ (yᵢ − max(0, w·xᵢ + b))²  ($data)"
derive "$cost" w "$data"
derive "$cost" b "$data"
echo "  ∂C/∂w in LaTeX:"
echo "    $("$NABLA" diff "$cost" --wrt w --let "$data" --format latex)"
echo "  Definitions read like the paper: u = X*w + b; e = y - max(0, u); sum(e.^2)/N"
derive 'u = X*w + b; e = y - max(0, u); sum(e.^2)/N' w "$data"

section "The derivations as the paper writes them (nabla diff --steps)"
"$NABLA" diff "max(0, w'*x + b)" --wrt w --let "$neuron" --steps | sed 's/^/  /'
"$NABLA" diff 'u = X*w + b; e = y - max(0, u); C = sum(e.^2)/N; C' --wrt w --let "$data" --steps | sed 's/^/  /'

section "Numbers: the cost and one gradient-descent step on three samples"
at='X = [[1, 2], [3, 4], [5, 6]]; y = [1, 2, 3]; w = [0.5, -0.25]; b = 0.5'
echo "  at $at"
echo "  C ="
"$NABLA" eval "$cost" --let "$data" --at "$at" | sed 's/^/    /'
echo "  ∂C/∂w as a column (denominator layout), the direction of the step w ← w − η·∂C/∂w:"
"$NABLA" diff "$cost" --wrt w --let "$data" --at "$at" --layout denominator | sed 's/^/    /'
echo "  ∂C/∂b ="
"$NABLA" diff "$cost" --wrt b --let "$data" --at "$at" | sed 's/^/    /'
echo "  the Jacobian of w ⊙ x at w = [1, 2, 3], x = [4, 5, 6]:"
"$NABLA" diff 'w .* x' --wrt w --let "$vectors" --at 'w = [1, 2, 3]; x = [4, 5, 6]' | sed 's/^/    /'

section "Fitting the neuron: gradient descent with these derivatives (nabla fit)"
echo "  200 samples of 3 features from a known neuron; each epoch is w ← w − η·∂C/∂w, b ← b − η·∂C/∂b"
"$NABLA" fit --generate 200,3 --seed 1 --epochs 2000 --every 500 | sed 's/^/  /'

printf '\nAll derivatives agree with finite differences.\n'
