"""The benchmark cases, shared by bench.py (nabla side) and torch_side.py."""

NEURON = ("sum((y - max(0, X*w + b)).^2)/N", "w,b", "X: matrix(N, n); w: vector(n); y: vector(N); b: scalar")
MLP = ("H = relu(X*W1 + b1'); G = relu(H*W2 + b2'); Z = G*W3 + b3'; softmax_xent(Z, Y)",
       "W1,b1,W2,b2,W3,b3",
       "X: matrix(B, 784); Y: matrix(B, 10); W1: matrix(784, 256); b1: vector(256); W2: matrix(256, 256); "
       "b2: vector(256); W3: matrix(256, 10); b3: vector(10)")
JAC_ELEMENTWISE = ("exp(x).*sin(x) + x.^2", "x", "x: vector(n)")
JAC_TANH = ("tanh(A*x)", "x", "A: matrix(n, n); x: vector(n)")

# floating-point operations of one MLP forward+backward step (784-256-256-10)
def mlp_flops(B):
    return 2 * B * (784 * 256 * 2 + 256 * 256 * 3 + 256 * 10 * 3)


def chain_ops(n):
    """A chain of n scalar operations t[i+1] = op(t[i]) (t[0] = x), cycling
    through multiply, add, sin, multiply-by-previous and subtract."""
    kinds = ["mul", "add", "sin", "mulprev", "sub"]
    return [(kinds[i % 5], i, 0.9 if kinds[i % 5] == "mul" else 0.25) for i in range(n)]


def chain_expr(n):
    """The same chain in nabla's language: 't1 = 0.9*x; t2 = t1 + x; ...; tn'."""
    name = lambda i: "x" if i == 0 else "t%d" % i
    defs = []
    for i, (kind, a, c) in enumerate(chain_ops(n)):
        u = name(a)
        rhs = {"mul": "%g*%s" % (c, u), "add": "%s + x" % u, "sin": "sin(%s)" % u,
               "mulprev": "%s*%s" % (u, name(a - 1)), "sub": "%s - %g" % (u, c)}[kind]
        defs.append("%s = %s" % (name(i + 1), rhs))
    return "; ".join(defs) + "; " + name(n)
