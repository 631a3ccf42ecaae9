#!/usr/bin/python3
"""Side-by-side benchmarks: nabla (`nabla time`) against PyTorch.

Usage (from the repository root, after `make`):
    /usr/bin/python3 bench/bench.py [--threads 1|2] [--rounds R] [--only a,b,c,d,e] [--quick]

For every case both sides run R rounds, alternating, each round reporting the
median of several timed samples; the table shows the median over rounds.
nabla's numbers are `nabla time`'s "f" and "f+derivative" (its defaults: generated
code where a pass over a matrix's rows allows it; (a) also with --no-native, the
interpreter alone); PyTorch's are the
function under torch.no_grad() and the function plus backward() (gradients) or
torch.autograd.functional.jacobian (Jacobians).  One thread against one thread
(torch.set_num_threads(1), OPENBLAS_NUM_THREADS=1) unless --threads 2, where
PyTorch runs with the OpenMP OpenBLAS (Debian's pthreads build thrashes).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import cases  # noqa: E402

NABLA = os.path.join(ROOT, "nabla")


def env_for(threads, torch_side):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["OPENBLAS_NUM_THREADS"] = "1" if not torch_side else str(threads)
    if torch_side and threads > 1:
        env["LD_LIBRARY_PATH"] = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
    return env


def run_nabla(expr, wrt, let, sizes, dtype, threads, repeat, extra=()):
    cmd = [NABLA, "time", "-", "--wrt", wrt, "--size", sizes, "--dtype", dtype, "--threads", str(threads),
           "--repeat", str(repeat)] + list(extra)
    if let:
        cmd += ["--let", let]
    out = subprocess.run(cmd, input=expr, capture_output=True, text=True, env=env_for(threads, False))
    if out.returncode != 0:
        raise RuntimeError("nabla time failed: %s\n%s" % (" ".join(cmd[:3]), out.stderr))
    vals = dict(re.findall(r"^(f|f\+derivative|ratio): (\S+)$", out.stdout, re.M))
    return float(vals["f"]), float(vals["f+derivative"])


def run_torch(case, sizes, dtype, threads, repeat):
    cmd = ["/usr/bin/python3", os.path.join(HERE, "torch_side.py"), case, sizes.replace(" ", ""), dtype,
           str(threads), str(repeat)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env_for(threads, True))
    if out.returncode != 0:
        raise RuntimeError("torch side failed: %s\n%s" % (" ".join(cmd), out.stderr))
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return d["f"], d["fd"]


def built(src, exe, extra=()):
    """Builds bench/SRC into /tmp/EXE (with -O3) and returns its path."""
    path = os.path.join("/tmp", exe)
    subprocess.run(["cc", "-O3", "-I", os.path.join(ROOT, "include"), "-I", os.path.join(ROOT, "src"),
                    os.path.join(HERE, src), "-o", path]
                   + list(extra) + ["-lopenblas", "-lz", "-lm", "-lpthread", "-ldl"], check=True)
    return path


def mlp_vs_sgemm(B, threads, rounds):
    """bench/mlp.c: nabla's MLP step against OpenBLAS sgemm (1024^3 and the step's products), in one process."""
    exe = built("mlp.c", "nabla_mlp", [os.path.join(ROOT, "build", "libnabla.a")])
    out = subprocess.run([exe, str(B), str(threads), str(rounds)], capture_output=True, text=True,
                         env=env_for(1, False), check=True).stdout
    d = {k: float(v) for k, v in re.findall(r"^([a-z0-9^ /]+ (?:GFLOP/s|seconds)|nabla / [a-z ]+) (\S+)$", out, re.M)}
    d["corename"] = re.search(r"corename (\S+)", out).group(1)
    d["kernel"] = re.search(r"nabla gemm kernel (\S+)", out).group(1)
    return d


def neuron_vs_c(N, n, dtype, rounds):
    """bench/neuron.c: nabla's neuron f and f+gradient against the hand-written fused C loop, in one process."""
    exe = built("neuron.c", "nabla_neuron", ["-march=native", "-ffast-math", os.path.join(ROOT, "build", "libnabla.a")])
    out = subprocess.run([exe, str(N), str(n), dtype, str(rounds)], capture_output=True, text=True,
                         env=env_for(1, False), check=True).stdout
    nab = re.search(r"nabla f: (\S+) us\s+f\+grad: (\S+) us", out)
    c = re.search(r"C\s+f: (\S+) us\s+f\+grad: (\S+) us", out)
    native = re.search(r"nabla native f\+grad: (\S+) us", out)
    return [float(v) * 1e-6 for v in nab.groups() + c.groups() + native.groups()]


def chain_vs_c(rounds):
    """bench/chain.c: nabla's compiled chain against the hand-written C chain, in one process."""
    exe = built("chain.c", "nabla_chain", [os.path.join(ROOT, "build", "libnabla.a")])
    out = subprocess.run([exe, str(rounds)], capture_output=True, text=True, env=env_for(1, False), check=True).stdout
    return {k: float(v) for k, v in re.findall(r"^(nabla f\+grad|C f\+grad|ratio): (\S+)", out, re.M)}


def fmt_t(s):
    if s >= 1:
        return "%.3g s" % s
    if s >= 1e-3:
        return "%.3g ms" % (s * 1e3)
    if s >= 1e-6:
        return "%.3g µs" % (s * 1e6)
    return "%.3g ns" % (s * 1e9)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=9, help="timed samples per round (each side)")
    ap.add_argument("--only", default="a,b,c,d,e")
    ap.add_argument("--quick", action="store_true", help="skip the slowest PyTorch Jacobians (n=4096 tanh)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    T = args.threads

    rows = []  # (group, label, dtype, nabla f, nabla fd, torch f, torch fd, note)

    def bench(group, label, case, nab, sizes, dtype, extra=(), note="", torch_rounds=None):
        nf, nfd, tf, tfd = [], [], [], []
        rounds = args.rounds
        for r in range(rounds):
            a, b = run_nabla(*nab, sizes, dtype, T, args.repeat, extra)
            nf.append(a)
            nfd.append(b)
            if case and r < (torch_rounds or rounds):
                c, d = run_torch(case, sizes, dtype, T, args.repeat)
                tf.append(c)
                tfd.append(d)
        med = statistics.median
        row = (group, label, dtype, med(nf), med(nfd), med(tf) if tf else None, med(tfd) if tfd else None, note)
        rows.append(row)
        print_row(row)

    def print_row(row):
        group, label, dtype, nf, nfd, tf, tfd, note = row
        s = "%-3s %-34s %-4s nabla f %-9s f+d %-9s (%.2fx f)" % (group, label, dtype, fmt_t(nf), fmt_t(nfd), nfd / nf)
        if tfd:
            s += " | torch f %-9s f+d %-9s | nabla/torch %.3f (%.1fx faster)" % (fmt_t(tf), fmt_t(tfd), nfd / tfd,
                                                                                  tfd / nfd)
        if note:
            s += " " + note
        print(s, flush=True)

    print("threads: %d, rounds: %d (medians)" % (T, args.rounds), flush=True)
    if "a" in only:
        for sizes in ("N=10000,n=100", "N=1000,n=1000"):
            for dt in ("f64", "f32"):
                bench("(a)", "neuron cost+gradient " + sizes, "neuron", cases.NEURON, sizes, dt)
                bench("(a)", "  the same, --no-native", "neuron", cases.NEURON, sizes, dt, extra=("--no-native",))
                N, n = (int(v.split("=")[1]) for v in sizes.split(","))
                if T == 1:
                    nf, nfd, cf, cfd, nnat = neuron_vs_c(N, n, dt, max(15, 5 * args.rounds))
                    print("    in one process, alternating: nabla f %s f+d %s (%.2fx f), native f+d %s (%.2fx f) | "
                          "hand-written fused C loop f %s f+d %s (%.2fx f)"
                          % (fmt_t(nf), fmt_t(nfd), nfd / nf, fmt_t(nnat), nnat / nf, fmt_t(cf), fmt_t(cfd), cfd / cf),
                          flush=True)
    if "b" in only:
        for B in (64, 256):
            bench("(b)", "MLP 784-256-256-10 B=%d" % B, "mlp", cases.MLP, "B=%d" % B, "f32")
            m = mlp_vs_sgemm(B, T, max(11, 4 * args.rounds + 1))
            print("    MLP B=%d, %d thread(s), measured in one process: nabla %.1f GFLOP/s = %.0f%% of OpenBLAS (%s) "
                  "sgemm on a 1024^3 square (%.1f), %.0f%% of sgemm on the step's own products (%.1f); "
                  "nabla's own product (%s) on the 1024^3 square, one thread: %.1f"
                  % (B, T, m["nabla GFLOP/s"], 100 * m["nabla / peak"], m["corename"], m["sgemm 1024^3 GFLOP/s"],
                     100 * m["nabla / step shapes"], m["sgemm step shapes GFLOP/s"], m["kernel"],
                     m["nabla gemm 1024^3 GFLOP/s"]), flush=True)
    if "c" in only:
        for n in (64, 256, 1024, 4096):
            bench("(c)", "J of exp(x).*sin(x)+x.^2 n=%d" % n, "jac_elementwise", cases.JAC_ELEMENTWISE, "n=%d" % n,
                  "f64", note="(J as its diagonal)")
        bench("(c)", "J of exp(x).*sin(x)+x.^2 n=4096 --dense", False, cases.JAC_ELEMENTWISE, "n=4096", "f64",
              extra=("--dense",), note="(J as a dense 4096x4096)")
        for n in (64, 256, 1024, 4096):
            if n == 4096 and args.quick:
                continue
            bench("(c)", "J of tanh(A*x) n=%d" % n, "jac_tanh", cases.JAC_TANH, "n=%d" % n, "f64",
                  torch_rounds=1 if n == 4096 else None)
    if "d" in only:
        d = chain_vs_c(max(31, 10 * args.rounds + 1))
        print("(d) chain of 1000 scalar ops (250 x  x*1.0001 + 0.5*sin(x)), f+gradient, f64: nabla %s, "
              "hand-written C (-O3, libm) %s | nabla/C %.3f" % (fmt_t(d["nabla f+grad"] * 1e-6),
                                                                  fmt_t(d["C f+grad"] * 1e-6), d["ratio"]), flush=True)
    if "e" in only:
        for dt in ("f64", "f32"):
            bench("(e)", "logistic loss N=10000,n=100", "logistic", cases.LOGISTIC, "N=10000,n=100", dt)
        for dt in ("f64", "f32"):
            bench("(e)", "element-wise chain n=1000000", "elementwise", cases.ELEMENTWISE, "n=1000000", dt)
        bench("(e)", "quadratic form x'*A*x n=2000", "quadratic", cases.QUADRATIC, "n=2000", "f64")
        bench("(e)", "distance norm2(x - y) n=1000000", "distance", cases.DISTANCE, "n=1000000", "f64")
        bench("(e)", "smooth |x|: sum(sqrt(x.^2+1)) n=1000000", "smooth_abs", cases.SMOOTH_ABS, "n=1000000", "f64")


if __name__ == "__main__":
    main()
