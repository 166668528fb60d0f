"""Benchmark: one model alone vs K=16 models trained in one vectorized Sweep, on both paths.

- **fast path**: an MLP (64 -> 64 -> 64 -> 10, ReLU) on the digits with Adam; also 16
  models one after another, as before.
- **general path** (its wide network, ``coursekit.wide``; ``Sweep.engine == "wide"``), on
  MNIST-1D with Adam: a batch-norm + dropout MLP (40 -> 128 -> 128 -> 10, dropout 0.2) and
  a small CNN (three ``Conv1d`` layers of 25 channels, as in the MNIST-1D paper), the
  models of ``benchmarks/mnist1d_recipe.py``. ``--func`` also times the same sweeps on the
  general path's ``torch.func`` fallback (``path="func"``), for comparison.

Every run trains for the same number of steps with batch 64 and does the same
bookkeeping: the per-step loss is kept and the validation split is evaluated
after every epoch. The single runs use a plain ``torch.optim`` loop, the fastest
ordinary way to train one model. Timings are medians of interleaved repeats,
because a shared machine is noisy: each ratio compares runs taken side by side.

    python benchmarks/bench_sweep.py [--repeats 5] [--epochs 18] [--threads N]

The last line is the headline: ``vectorized_16_over_single threads=<n> fast=<r> bn_dropout_mlp=<r> cnn=<r>``.
Without ``--threads`` torch's default (one thread a core) is used, as in a notebook.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import torch
from torch.nn import functional as F

from coursekit import get_device, load_dataset, mlp
from coursekit.sweep import Sweep

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist1d_recipe import MODELS  # noqa: E402  (the recipe's models)

K = 16


def fast_mlp() -> torch.nn.Module:
    return mlp(64, 10, depth=2, width=64, activation="relu")


bn_dropout_mlp, cnn = MODELS["bn_dropout_mlp"], MODELS["cnn"]


def train_one(model_fn, data, lr: float, seed: int, epochs: int, batch_size: int, device) -> torch.Tensor:
    """The plain loop: what a student would write for one model."""
    torch.manual_seed(seed)
    net = model_fn().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    X, y = data.X_train.to(device), data.y_train.to(device)
    Xv, yv = data.X_val.to(device), data.y_val.to(device)
    gen = torch.Generator().manual_seed(0)
    losses, val = [], []
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(X), generator=gen).to(device)
        for start in range(0, len(X), batch_size):
            idx = perm[start:start + batch_size]
            loss = F.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        net.eval()
        with torch.no_grad():
            val.append(F.cross_entropy(net(Xv), yv))
    return torch.stack(losses)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(runs: dict[str, Callable[[], None]], repeats: int, device) -> tuple[dict, dict]:
    """Wall and CPU seconds of each run, ``repeats`` times, interleaved."""
    for fn in runs.values():  # warm-up: allocator, MKL/oneDNN kernels, lazy imports
        fn()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so a noisy spell hits all runs alike
        for name, fn in runs.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=18, help="digits: 18 epochs of 1,079 = 306 steps")
    ap.add_argument("--mnist1d-epochs", type=int, default=4, help="MNIST-1D: 4 epochs of 3,000 = 188 steps")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for every run")
    ap.add_argument("--no-sequential", action="store_true", help="skip the 16 one-after-another runs")
    ap.add_argument("--func", action="store_true", help="also time the general path's torch.func fallback")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device()
    bs = args.batch_size
    digits = load_dataset("digits", seed=0)
    seq = load_dataset("mnist1d", standardize=True)
    lrs = torch.logspace(-4, 0, K).tolist()
    lrs_general = torch.logspace(-4, -2, K).tolist()

    def sweep(model_fn, data, lr, epochs, path="auto"):
        return lambda: Sweep(model_fn, K, optimizer="adam", lr=lr, seed=list(range(K)), path=path,
                             device=device).fit(data, epochs, batch_size=bs, progress=False)

    def single(model_fn, data, lr, epochs):
        return lambda: train_one(model_fn, data, lr, 0, epochs, bs, device)

    runs = {
        "fast.single": single(fast_mlp, digits, lrs[K // 2], args.epochs),
        "fast.vectorized_16": sweep(fast_mlp, digits, lrs, args.epochs),
        "bn_dropout_mlp.single": single(bn_dropout_mlp, seq, lrs_general[K // 2], args.mnist1d_epochs),
        "bn_dropout_mlp.vectorized_16": sweep(bn_dropout_mlp, seq, lrs_general, args.mnist1d_epochs),
        "cnn.single": single(cnn, seq, lrs_general[K // 2], args.mnist1d_epochs),
        "cnn.vectorized_16": sweep(cnn, seq, lrs_general, args.mnist1d_epochs),
    }
    if args.func:
        runs["bn_dropout_mlp.func_16"] = sweep(bn_dropout_mlp, seq, lrs_general, args.mnist1d_epochs, "func")
        runs["cnn.func_16"] = sweep(cnn, seq, lrs_general, args.mnist1d_epochs, "func")
    if not args.no_sequential:
        runs["fast.sequential_16"] = lambda: [train_one(fast_mlp, digits, lrs[k], k, args.epochs, bs, device)
                                              for k in range(K)]
    wall, cpu = measure(runs, args.repeats, device)
    steps = {"fast": args.epochs * -(-len(digits.X_train) // bs),
             "bn_dropout_mlp": args.mnist1d_epochs * -(-len(seq.X_train) // bs)}
    steps["cnn"] = steps["bn_dropout_mlp"]
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"batch={bs} repeats={args.repeats} steps={steps}")
    med = {name: statistics.median(ts) for name, ts in wall.items()}
    med_cpu = {name: statistics.median(ts) for name, ts in cpu.items()}
    for name, t in med.items():
        spread = f"{min(wall[name]):.3f}-{max(wall[name]):.3f}"
        print(f"{name}: median {t:.3f} s wall (range {spread} s), {med_cpu[name]:.3f} s cpu, "
              f"{1e3 * t / steps[name.split('.')[0]]:.3f} ms/step")
    models = ("fast", "bn_dropout_mlp", "cnn")
    if not args.no_sequential:
        print(f"fast: sequential_16_over_single={med['fast.sequential_16'] / med['fast.single']:.2f} "
              f"sequential_16_over_vectorized_16={med['fast.sequential_16'] / med['fast.vectorized_16']:.2f}")
    if args.func:
        print("torch.func fallback over single, cpu time: " + " ".join(
            f"{m}={med_cpu[f'{m}.func_16'] / med_cpu[f'{m}.single']:.2f}" for m in models[1:]))
    print("cpu-time ratios (steadier on a shared machine; with 1 thread they measure the same work): "
          + " ".join(f"{m}={med_cpu[f'{m}.vectorized_16'] / med_cpu[f'{m}.single']:.2f}" for m in models))
    print("targets: fast <= 2.0, general (bn_dropout_mlp, cnn) <= 4.0")
    print(f"vectorized_16_over_single threads={torch.get_num_threads()} " + " ".join(
        f"{m}={med[f'{m}.vectorized_16'] / med[f'{m}.single']:.2f}" for m in models))

if __name__ == "__main__":
    main()
