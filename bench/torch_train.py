#!/usr/bin/python3
"""PyTorch side of bench/train_bench.py: the same MLP on Fashion-MNIST.

Usage: torch_train.py LAYERS OPTIMIZER LR BATCH EPOCHS SEED THREADS DATA_DIR
Prints one JSON object: {"epoch_seconds": [...], "epoch_cpu_seconds": [...],
"test_accuracy": a} -- the wall-clock and processor time of each epoch (steps
only) and the test accuracy at the end.
"""
import gzip
import json
import sys
import time

import numpy as np
import torch


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndims = data[3]
    dims = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(ndims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def main():
    layers, opt, lr, batch, epochs, seed, threads, data_dir = sys.argv[1:9]
    sizes = [int(s) for s in layers.split("-")]
    lr, batch, epochs, seed, threads = float(lr), int(batch), int(epochs), int(seed), int(threads)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    load = lambda name: idx("%s/%s" % (data_dir, name))
    Xtr = torch.tensor(load("train-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    ytr = torch.tensor(load("train-labels-idx1-ubyte.gz"), dtype=torch.long)
    Xte = torch.tensor(load("t10k-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    yte = torch.tensor(load("t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    if opt == "sgd":
        optim = torch.optim.SGD(model.parameters(), lr=lr)
    elif opt == "momentum":
        optim = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        optim = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    times, cpu = [], []
    n = Xtr.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n)
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, n, batch):
            idx_ = perm[s:s + batch]
            optim.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xtr[idx_]), ytr[idx_])
            loss.backward()
            optim.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    with torch.no_grad():
        acc = (model(Xte).argmax(1) == yte).float().mean().item()
    print(json.dumps({"epoch_seconds": times, "epoch_cpu_seconds": cpu, "test_accuracy": acc}))


if __name__ == "__main__":
    main()
