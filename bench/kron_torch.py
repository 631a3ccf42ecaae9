#!/usr/bin/python3
"""PyTorch's side of bench/kron.c: the Jacobian-vector products
J·vec(V) of F(X) = A·X·B and F(X) = X⁻¹ (torch.autograd.functional.jvp,
f64, one thread), median seconds of one product.

  /usr/bin/python3 bench/kron_torch.py N REPEAT
"""
import statistics
import sys
import time

import torch

torch.set_num_threads(1)


def main():
    n, repeat = int(sys.argv[1]), int(sys.argv[2])
    g = torch.Generator().manual_seed(42)
    A, B, V = (torch.rand(n, n, generator=g, dtype=torch.float64) for _ in range(3))
    X = torch.rand(n, n, generator=g, dtype=torch.float64) + n * torch.eye(n, dtype=torch.float64)
    cases = {"A*X*B": lambda X: A @ X @ B, "inv(X)": torch.linalg.inv}
    for name, F in cases.items():
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            torch.autograd.functional.jvp(F, X, V)
            times.append(time.perf_counter() - t0)
        print(f"{name:8s} n={n:<4d} torch jvp  median {statistics.median(times):.6f} s")


if __name__ == "__main__":
    main()
