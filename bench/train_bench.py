#!/usr/bin/python3
"""Training benchmark: `nabla train` and PyTorch 1.13 side by side, in one run.

Both train the same MLP (default 784-256-10 ReLU, softmax cross-entropy) on
Fashion-MNIST (Debian's dataset-fashion-mnist) with the same optimiser,
learning rate, batch, epochs, dtype (f32) and thread count, from the same
initial weights in the same data order: PyTorch starts from the network
`nabla train --epochs 0 --save` initialises and visits the examples in
nabla's shuffled order (bench/torch_train.py), so the two runs differ only in
their arithmetic and their accuracies can be compared seed by seed
(--independent: each side draws its own weights and order).  Prints, per
thread count, the median epoch time of each side (training steps only), their
ratio (and the same for processor time, which time-slicing on a shared
machine disturbs less), both test accuracies after the last epoch (one per
run, seeds 1, 2, ..., and their medians: a single seed's final accuracy moves
by +-0.015 on both sides, so compare medians of several --runs), and the fraction of OpenBLAS
sgemm's peak (one thread, a 1024^3 product, measured in the same run by
bench/mlp.c's 1024^3 sgemm) that one nabla epoch reaches.  Repeat with --runs for
medians over runs; the machine is shared, so single runs are noisy.

Usage: bench/train_bench.py [--threads 1,2] [--optimizer sgd] [--lr 0.1]
                            [--epochs 5] [--runs 1] [--layers 784-256-10]
                            [--coretype SkylakeX] [--independent]
Run from the repository root after `make`.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NABLA = os.path.join(ROOT, "nabla")
DATA = "/usr/share/datasets/fashion-mnist"
CORETYPE = None  # --coretype: OPENBLAS_CORETYPE for both sides (and the sgemm peak)


def env_for(threads, torch_side):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["OPENBLAS_NUM_THREADS"] = str(threads) if torch_side else "1"
    if torch_side and threads > 1:
        env["LD_LIBRARY_PATH"] = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
    if CORETYPE:
        env["OPENBLAS_CORETYPE"] = CORETYPE
    return env


def flops_per_epoch(sizes, n=60000):
    """Multiply-adds x2 of forward (X*W) and backward (dW = Hᵀ·dZ and dH = dZ·Wᵀ, none for the input)."""
    f = 0
    for i in range(len(sizes) - 1):
        mm = sizes[i] * sizes[i + 1]
        f += 2 * mm * (3 if i > 0 else 2)
    return f * n


def sgemm_peak():
    """One-thread 1024^3 products as bench/mlp.c measures them: OpenBLAS sgemm and nabla's own (AVX-512) kernel."""
    exe = os.path.join(tempfile.gettempdir(), "nabla_mlp_peak")
    subprocess.run(["cc", "-O3", "-I", os.path.join(ROOT, "include"), "-I", os.path.join(ROOT, "src"),
                    os.path.join(HERE, "mlp.c"), "-o", exe,
                    os.path.join(ROOT, "build", "libnabla.a"), "-lopenblas", "-lz", "-lm", "-lpthread"], check=True)
    out = subprocess.run([exe, "128", "1", "11"], capture_output=True, text=True, env=env_for(1, False), check=True).stdout
    return (float(re.search(r"sgemm 1024\^3 GFLOP/s (\S+)", out).group(1)),
            float(re.search(r"nabla gemm 1024\^3 GFLOP/s (\S+)", out).group(1)))


def nabla_train(a, seed, epochs):
    """`nabla train` of the benchmark's network, optimiser and batch (f32)."""
    return [NABLA, "train", "--data", "fashion-mnist", "--layers", a.layers, "--optimizer", a.optimizer,
            "--lr", str(a.lr), "--batch", str(a.batch), "--epochs", str(epochs), "--seed", str(seed), "--dtype", "f32"]


def run_nabla(a, threads, seed):
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "m.csv")
        cmd = nabla_train(a, seed, a.epochs) + ["--threads", str(threads), "--log", log, "--quiet"]
        subprocess.run(cmd, check=True, capture_output=True, env=env_for(threads, False))
        rows = [line.split(",") for line in open(log).read().splitlines()[1:]]
    return [float(r[4]) for r in rows], [float(r[5]) for r in rows], float(rows[-1][3])


def run_torch(a, threads, seed):
    cmd = ["/usr/bin/python3", os.path.join(HERE, "torch_train.py"), a.layers, a.optimizer, str(a.lr), str(a.batch),
           str(a.epochs), str(seed), str(threads), DATA]
    with tempfile.TemporaryDirectory() as d:
        if not a.independent:
            init = os.path.join(d, "init.nbm")
            subprocess.run(nabla_train(a, seed, 0) + ["--save", init], check=True, capture_output=True)
            cmd.append(init)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env_for(threads, True)).stdout
    r = json.loads(out)
    return r["epoch_seconds"], r["epoch_cpu_seconds"], r["test_accuracy"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", default="1,2")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--layers", default="784-256-10")
    p.add_argument("--coretype", default=None, help="OPENBLAS_CORETYPE for both sides, e.g. SkylakeX")
    p.add_argument("--independent", action="store_true",
                   help="PyTorch draws its own initial weights and data order (default: nabla's)")
    a = p.parse_args()
    global CORETYPE
    CORETYPE = a.coretype
    if a.lr is None:
        a.lr = 0.001 if a.optimizer == "adam" else 0.1
    sizes = [int(s) for s in a.layers.split("-")]
    peak, own_peak = sgemm_peak()
    gflop = flops_per_epoch(sizes) / 1e9
    print("%s %s lr %g batch %d, %d epochs, f32, %s; %.1f GFLOP per epoch; OpenBLAS sgemm peak (1 thread%s) %.1f GFLOP/s; "
          "nabla's own product on 1024^3 (1 thread) %.1f GFLOP/s"
          % (a.layers, a.optimizer, a.lr, a.batch, a.epochs,
             "each side its own initial weights and order" if a.independent else "same initial weights and order",
             gflop,
             ", OPENBLAS_CORETYPE=" + CORETYPE if CORETYPE else "", peak, own_peak))
    for threads in [int(t) for t in a.threads.split(",")]:
        nt, tt, nc, tc, na, ta = [], [], [], [], [], []
        for run in range(a.runs):
            for side, wall, cpu, accs in ((run_nabla, nt, nc, na), (run_torch, tt, tc, ta)):
                times, cpu_times, acc = side(a, threads, run + 1)
                wall.append(statistics.median(times))
                cpu.append(statistics.median(cpu_times))
                accs.append(acc)
        n_s, t_s = statistics.median(nt), statistics.median(tt)
        n_c, t_c = statistics.median(nc), statistics.median(tc)
        print("threads %d: epoch nabla %.3f s, PyTorch %.3f s, ratio %.2f (processor time: %.3f s, %.3f s, ratio %.2f); "
              "test accuracy median nabla %.4f (%s), PyTorch %.4f (%s), nabla - PyTorch by seed %s; "
              "nabla epoch at %.0f%% of sgemm peak x %d thread(s)"
              % (threads, n_s, t_s, n_s / t_s, n_c, t_c, n_c / t_c, statistics.median(na),
                 " ".join("%.4f" % x for x in na), statistics.median(ta), " ".join("%.4f" % x for x in ta),
                 " ".join("%+.4f" % (x - y) for x, y in zip(na, ta)), 100 * gflop / n_s / (peak * threads), threads))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
