#!/usr/bin/python3
"""PyTorch side of the nabla benchmarks (run by bench/bench.py).

Usage: torch_side.py CASE SIZES DTYPE THREADS REPEAT
Prints one JSON object: {"f": seconds, "fd": seconds} -- the median seconds
per run of the function alone and of the function with its derivative
(gradient or Jacobian), computed the way a PyTorch user would.
"""
import json
import math
import sys
import time

import torch

import cases


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def timeit(fn, repeat, target=0.02):
    fn()  # warm-up
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= target or n >= 1 << 20:
            break
        n = max(n * 2, min(n * 16, int(n * target * 1.25 / max(t, 1e-9))))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return median(samples)


def gradient_case(fun, *inputs):
    """f: fun() without gradients; fd: fun() and backward() into the inputs that require a gradient."""

    def f():
        with torch.no_grad():
            return fun()

    def fd():
        for t in inputs:
            t.grad = None
        v = fun()
        v.backward()
        return v

    return f, fd


def neuron(sz, dt):
    N, n = sz["N"], sz["n"]
    g = torch.Generator().manual_seed(1)
    X = torch.rand(N, n, generator=g, dtype=dt) * 2 - 1
    y = torch.rand(N, generator=g, dtype=dt) * 2 - 1
    w = (torch.rand(n, generator=g, dtype=dt) * 2 - 1).requires_grad_()
    b = (torch.rand((), generator=g, dtype=dt) * 2 - 1).requires_grad_()
    return gradient_case(lambda: ((y - torch.relu(X @ w + b)) ** 2).sum() / N, w, b)


def mlp(sz, dt):
    B = sz["B"]
    g = torch.Generator().manual_seed(1)

    def r(*shape, grad=False):
        t = (torch.rand(*shape, generator=g, dtype=dt) * 2 - 1)
        return t.requires_grad_() if grad else t

    X, Y = r(B, 784), r(B, 10)
    W1, b1, W2, b2, W3, b3 = r(784, 256, grad=True), r(256, grad=True), r(256, 256, grad=True), r(256, grad=True), \
        r(256, 10, grad=True), r(10, grad=True)
    params = [W1, b1, W2, b2, W3, b3]

    def loss():
        H = torch.relu(X @ W1 + b1)
        G = torch.relu(H @ W2 + b2)
        Z = G @ W3 + b3
        return -(Y * torch.log_softmax(Z, 1)).sum(1).mean()  # softmax_xent(Z, Y)

    return gradient_case(loss, *params)


def jacobian_case(fun, x):
    """f: fun(x) without gradients; fd: fun(x) and its Jacobian, as a PyTorch user writes it."""

    def f():
        with torch.no_grad():
            return fun(x)

    def fd():
        return fun(x), torch.autograd.functional.jacobian(fun, x)

    return f, fd


def jac_elementwise(sz, dt):
    n = sz["n"]
    x = torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=dt) * 2 - 1

    def fun(x):
        return torch.exp(x) * torch.sin(x) + x ** 2

    return jacobian_case(fun, x)


def jac_tanh(sz, dt):
    n = sz["n"]
    g = torch.Generator().manual_seed(1)
    A = torch.rand(n, n, generator=g, dtype=dt) * 2 - 1
    x = torch.rand(n, generator=g, dtype=dt) * 2 - 1

    def fun(x):
        return torch.tanh(A @ x)

    return jacobian_case(fun, x)


def logistic(sz, dt):
    N, n = sz["N"], sz["n"]
    g = torch.Generator().manual_seed(1)
    X = torch.rand(N, n, generator=g, dtype=dt) * 2 - 1
    y = torch.sign(torch.rand(N, generator=g, dtype=dt) * 2 - 1)
    w = (torch.rand(n, generator=g, dtype=dt) * 2 - 1).requires_grad_()
    return gradient_case(lambda: torch.log(1 + torch.exp(-y * (X @ w))).sum() / N, w)


def elementwise(sz, dt):
    x = (torch.rand(sz["n"], generator=torch.Generator().manual_seed(1), dtype=dt) * 4 - 2).requires_grad_()
    return gradient_case(lambda: (torch.tanh(x) * torch.exp(-x ** 2) + torch.sigmoid(x) * torch.cos(x)).sum(), x)


def quadratic(sz, dt):
    n = sz["n"]
    g = torch.Generator().manual_seed(1)
    A = torch.rand(n, n, generator=g, dtype=dt) * 2 - 1
    x = (torch.rand(n, generator=g, dtype=dt) * 2 - 1).requires_grad_()
    return gradient_case(lambda: x @ A @ x, x)


def distance(sz, dt):
    n = sz["n"]
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(n, generator=g, dtype=dt) * 2 - 1).requires_grad_()
    y = torch.rand(n, generator=g, dtype=dt) * 2 - 1
    return gradient_case(lambda: torch.linalg.norm(x - y), x)


def smooth_abs(sz, dt):
    x = (torch.rand(sz["n"], generator=torch.Generator().manual_seed(1), dtype=dt) * 2 - 1).requires_grad_()
    return gradient_case(lambda: torch.sqrt(x ** 2 + 1).sum(), x)


CASES = {"neuron": neuron, "mlp": mlp, "jac_elementwise": jac_elementwise, "jac_tanh": jac_tanh,
         "logistic": logistic, "elementwise": elementwise, "quadratic": quadratic, "distance": distance,
         "smooth_abs": smooth_abs}


def main():
    case, sizes, dtype, threads, repeat = sys.argv[1:6]
    sz = {k: int(v) for k, v in (kv.split("=") for kv in sizes.split(","))}
    torch.set_num_threads(int(threads))
    dt = torch.float64 if dtype == "f64" else torch.float32
    f, fd = CASES[case](sz, dt)
    repeat = int(repeat)
    # interleave like nabla time does
    tf = timeit(f, repeat)
    tfd = timeit(fd, repeat if case not in ("jac_elementwise", "jac_tanh") or sz.get("n", 0) < 2048 else 3,
                 target=0.02)
    print(json.dumps({"f": tf, "fd": tfd}))


if __name__ == "__main__":
    main()
