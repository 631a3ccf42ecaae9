"""The benchmark cases, shared by bench.py (nabla side) and torch_side.py."""

NEURON = ("sum((y - max(0, X*w + b)).^2)/N", "w,b", "X: matrix(N, n); w: vector(n); y: vector(N); b: scalar")
MLP = ("H = relu(X*W1 + b1'); G = relu(H*W2 + b2'); Z = G*W3 + b3'; softmax_xent(Z, Y)",
       "W1,b1,W2,b2,W3,b3",
       "X: matrix(B, 784); Y: matrix(B, 10); W1: matrix(784, 256); b1: vector(256); W2: matrix(256, 256); "
       "b2: vector(256); W3: matrix(256, 10); b3: vector(10)")
JAC_ELEMENTWISE = ("exp(x).*sin(x) + x.^2", "x", "x: vector(n)")
JAC_TANH = ("tanh(A*x)", "x", "A: matrix(n, n); x: vector(n)")
# (e) functions beyond the issues' cases: the logistic-regression loss, an element-wise chain of
# transcendental functions, a quadratic form, a distance, a smooth absolute value
LOGISTIC = ("sum(log(1 + exp(-y .* (X*w))))/N", "w", "X: matrix(N, n); w: vector(n); y: vector(N)")
ELEMENTWISE = ("sum(tanh(x) .* exp(-x.^2) + sigmoid(x) .* cos(x))", "x", "x: vector(n)")
QUADRATIC = ("x'*A*x", "x", "A: matrix(n, n); x: vector(n)")
DISTANCE = ("norm2(x - y)", "x", "x, y: vector(n)")
SMOOTH_ABS = ("sum(sqrt(x.^2 + 1))", "x", "x: vector(n)")
