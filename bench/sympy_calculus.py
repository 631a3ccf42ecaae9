#!/usr/bin/env python3
"""nabla against SymPy and PyTorch on matrix calculus (issue 8).

  /usr/bin/python3 bench/sympy_calculus.py [--rounds R]

1. Symbolic derivatives, the Matrix Cookbook cases SymPy 1.11's
   MatrixSymbol.diff supports (it leaves det(X) unevaluated and gives 0 for
   log(det(X)), so those two are not compared).  nabla is timed in-process
   by bench/calculus.c: a fresh context, declarations, parsing, nb_derivative
   and printing, all counted (no process start); SymPy: building the
   expression and .diff(), in this process.  Medians of R rounds.
2. The compiled gradient of logdet(X) + tr(A·X) at n = 512 (LU-bound): nabla
   (bench/calculus.c, f64 and f32) against PyTorch 1.13 (torch.logdet +
   trace, backward()), one thread each (OPENBLAS_NUM_THREADS=1,
   torch.set_num_threads(1)), X = R + n·I with R uniform in [0, 1).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["OPENBLAS_NUM_THREADS"] = "1"


def build_driver():
    exe = os.path.join(ROOT, "build", "nabla_calculus_bench")
    subprocess.run(["make", "-C", ROOT, "-s", "build/libnabla.a"], check=True)
    subprocess.run(["cc", "-O2", "-std=c11", "-I" + os.path.join(ROOT, "include"), os.path.join(ROOT, "bench", "calculus.c"),
                    os.path.join(ROOT, "build", "libnabla.a"), "-lopenblas", "-lz", "-lm", "-lpthread", "-o", exe], check=True)
    return exe


def sympy_cases():
    from sympy import Inverse, MatrixSymbol, Trace, symbols
    n = symbols("n")
    X, A, B = (MatrixSymbol(s, n, n) for s in "XAB")
    a, b, c, x = (MatrixSymbol(s, n, 1) for s in "abcx")
    # (nabla expression, variable, SymPy builder)
    return [
        ("tr(A*X)", "X", lambda: Trace(A * X).diff(X)),
        ("tr(X'*A*X)", "X", lambda: Trace(X.T * A * X).diff(X)),
        ("a'*inv(X)*b", "X", lambda: (a.T * Inverse(X) * b).diff(X)),
        ("tr(X*X)", "X", lambda: Trace(X * X).diff(X)),
        ("tr(A*X*B)", "X", lambda: Trace(A * X * B).diff(X)),
        ("a'*X*b", "X", lambda: (a.T * X * b).diff(X)),
        ("b'*X'*X*c", "X", lambda: (b.T * X.T * X * c).diff(X)),
        ("x'*A*x", "x", lambda: (x.T * A * x).diff(x)),
        ("tr(inv(X))", "X", lambda: Trace(Inverse(X)).diff(X)),
        ("tr(A*inv(X)*B)", "X", lambda: Trace(A * Inverse(X) * B).diff(X)),
        ("A*X*B", "X", lambda: (A * X * B).diff(X)),
        ("inv(X)", "X", lambda: Inverse(X).diff(X)),
    ]


def time_sympy(fn, rounds):
    from sympy.core.cache import clear_cache
    samples = []
    for _ in range(rounds):
        clear_cache()  # every round derives from scratch, as nabla does
        t = time.perf_counter()
        r = fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), r


def time_torch(n, rounds, dtype):
    import torch
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(42)
    X0 = torch.rand(n, n, generator=g, dtype=dtype) + n * torch.eye(n, dtype=dtype)
    A = torch.rand(n, n, generator=g, dtype=dtype)
    samples = []
    for r in range(rounds + 1):
        X = X0.clone().requires_grad_(True)
        t = time.perf_counter()
        f = torch.logdet(X) + torch.trace(A @ X)
        f.backward()
        if r:  # the first is a warm-up
            samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()
    exe = build_driver()
    print("1. symbolic derivative, median of %d (nabla in-process: context + parse + derive + print)" % args.rounds)
    print("| case | nabla | SymPy | SymPy / nabla | nabla's result | SymPy's result |")
    print("|---|---|---|---|---|---|")
    worst = None
    for src, var, fn in sympy_cases():
        out = subprocess.run([exe, "symbolic", src, var, str(args.rounds)], capture_output=True, text=True, check=True)
        t_nabla, printed = out.stdout.split(" ", 1)
        t_nabla = float(t_nabla)
        t_sympy, r = time_sympy(fn, args.rounds)
        ratio = t_sympy / t_nabla
        worst = ratio if worst is None else min(worst, ratio)
        print("| `%s` d/d%s | %.1f µs | %.2f ms | %.0f× | %s | %s |" % (src, var, t_nabla * 1e6, t_sympy * 1e3, ratio,
                                                                     printed.strip(), r))
    print("smallest SymPy / nabla ratio: %.0f×" % worst)
    print()
    print("2. compiled f + gradient of logdet(X) + tr(A*X), n = 512, one thread, median of %d rounds "
          "(each the median of 5 runs), nabla and PyTorch alternating" % max(7, args.rounds // 3))
    import torch
    rounds = max(7, args.rounds // 3)
    for dt, tdt in (("f64", torch.float64), ("f32", torch.float32)):
        nabla, torch_t = [], []
        for _ in range(rounds):  # alternate the two, so that load on the machine hits both alike
            out = subprocess.run([exe, "logdet", "512", "5", dt], capture_output=True, text=True, check=True)
            nabla.append(float(out.stdout.split()[0]))
            torch_t.append(time_torch(512, 5, tdt))
        t_nabla, t_torch = statistics.median(nabla), statistics.median(torch_t)
        print("  %s: nabla %.2f ms, PyTorch %.2f ms, nabla / PyTorch %.2f" % (dt, t_nabla * 1e3, t_torch * 1e3,
                                                                           t_nabla / t_torch))


if __name__ == "__main__":
    sys.exit(main())
