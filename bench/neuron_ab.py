#!/usr/bin/env python3
"""bench/neuron.c built against two nabla libraries, run alternately process by
process (the noise of a shared machine hits both alike); prints, per case and
library, the medians over the runs of nabla's f, f+grad and f+grad / f.

  make && cc -O3 -march=native -ffast-math -Iinclude bench/neuron.c build/libnabla.a \\
      -lopenblas -lz -lm -lpthread -o /tmp/neuron_new
  (the same against another checkout's build/libnabla.a, -o /tmp/neuron_old)
  /usr/bin/python3 bench/neuron_ab.py --runs 7 /tmp/neuron_old /tmp/neuron_new
"""
import argparse
import os
import re
import statistics
import subprocess

CASES = ["10000 100 f64", "10000 100 f32", "1000 1000 f64", "1000 1000 f32"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=15, help="neuron's own rounds per run")
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    pat = re.compile(r"nabla f: ([\d.]+) us\s+f\+grad: ([\d.]+) us\s+ratio ([\d.]+)")
    for case in CASES:
        got = {b: [] for b in args.binaries}
        for _ in range(args.runs):
            for b in args.binaries:
                out = subprocess.run([b] + case.split() + [str(args.rounds)], capture_output=True, text=True,
                                     env=env, check=True).stdout
                got[b].append([float(x) for x in pat.search(out).groups()])
        for b in args.binaries:
            f, fg, r = (statistics.median(s[k] for s in got[b]) for k in range(3))
            lo, hi = min(s[2] for s in got[b]), max(s[2] for s in got[b])
            print("%-14s %-22s f %7.1f us  f+grad %7.1f us  f+grad/f %.2f (%.2f-%.2f)"
                  % (case, os.path.basename(b), f, fg, r, lo, hi))


if __name__ == "__main__":
    main()
