#!/usr/bin/python3
"""PyTorch side of bench/train_bench.py: the same MLP on Fashion-MNIST.

Usage: torch_train.py LAYERS OPTIMIZER LR BATCH EPOCHS SEED THREADS DATA_DIR [INIT.nbm]
With INIT.nbm (written by `nabla train --epochs 0 --save INIT.nbm --seed SEED`)
the network starts from nabla's initial weights and each epoch visits the
examples in nabla's order (its Fisher-Yates shuffle from (seed, epoch)), so
that the two sides train the same way and differ only in arithmetic.
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


MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def nabla_order(seed, epoch, n):
    """The examples' order in nabla's epoch `epoch` (0-based; src/train.c nb_trainer_epoch)."""
    rng = (seed ^ ((0x5851F42D4C957F2D * (epoch + 1)) & MASK)) & MASK
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        rng, r = splitmix64(rng)
        j = r % (i + 1)
        order[i], order[j] = order[j], order[i]
    return torch.tensor(order)


def nabla_weights(path, sizes):
    """W1, b1, ... of an f32 .nbm checkpoint (docs/nbm.md), W as nabla stores it (inputs x outputs)."""
    data = open(path, "rb").read()
    assert data[:8] == b"NABLANBM" and int.from_bytes(data[12:16], "little") == 1, "not an f32 checkpoint"
    layers = int.from_bytes(data[24:28], "little")
    assert layers == len(sizes) - 1
    off = 28 + 8 * (layers + 1) + 5 * 8 + 4 * 8
    out = []
    for i in range(layers):
        for shape in ((sizes[i], sizes[i + 1]), (sizes[i + 1],)):
            count = int(np.prod(shape))
            out.append(torch.tensor(np.frombuffer(data, dtype="<f4", count=count, offset=off).reshape(shape).copy()))
            off += 4 * count
    return out


def main():
    layers, opt, lr, batch, epochs, seed, threads, data_dir = sys.argv[1:9]
    init = sys.argv[9] if len(sys.argv) > 9 else None
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
    if init:
        weights = nabla_weights(init, sizes)
        with torch.no_grad():
            for i, layer in enumerate(m for m in mods if isinstance(m, torch.nn.Linear)):
                layer.weight.copy_(weights[2 * i].t())
                layer.bias.copy_(weights[2 * i + 1])
    if opt == "sgd":
        optim = torch.optim.SGD(model.parameters(), lr=lr)
    elif opt == "momentum":
        optim = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        optim = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    times, cpu = [], []
    n = Xtr.shape[0]
    orders = [nabla_order(seed, e, n) for e in range(epochs)] if init else None
    for e in range(epochs):
        perm = orders[e] if init else torch.randperm(n)
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
