"""Benchmark: one model alone vs K=16 models one after another vs K=16 in one vectorized Sweep.

All three train the same MLP (64 -> 64 -> 64 -> 10, ReLU) on the digits with Adam,
batch 64, for the same number of steps, and each does the same bookkeeping: the
per-step loss is kept and the validation split is evaluated after every epoch.
The single and sequential runs use a plain ``torch.optim`` loop, the fastest
ordinary way to train one model. Timings are medians of interleaved repeats,
because a shared 2-core machine is noisy.

    python benchmarks/bench_sweep.py [--repeats 7] [--epochs 18] [--threads N]

The last line is ``vectorized_16_over_single=<ratio>``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from coursekit import get_device, load_dataset, mlp
from coursekit.sweep import Sweep

K = 16


def model_fn() -> torch.nn.Module:
    return mlp(64, 10, depth=2, width=64, activation="relu")


def train_one(data, lr: float, seed: int, epochs: int, batch_size: int, device) -> torch.Tensor:
    """The plain loop: what a student would write for one model."""
    torch.manual_seed(seed)
    net = model_fn().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    X, y = data.X_train.to(device), data.y_train.to(device)
    Xv, yv = data.X_val.to(device), data.y_val.to(device)
    gen = torch.Generator().manual_seed(0)
    losses, val = [], []
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=gen).to(device)
        for start in range(0, len(X), batch_size):
            idx = perm[start:start + batch_size]
            loss = F.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        with torch.no_grad():
            val.append(F.cross_entropy(net(Xv), yv))
    return torch.stack(losses)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=18, help="18 epochs of 1,079 digits = 306 steps")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for all three runs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device()
    data = load_dataset("digits", seed=0)
    lrs = torch.logspace(-4, 0, K).tolist()
    steps = args.epochs * -(-len(data.X_train) // args.batch_size)

    def single():
        train_one(data, lrs[K // 2], 0, args.epochs, args.batch_size, device)

    def sequential():
        for k in range(K):
            train_one(data, lrs[k], k, args.epochs, args.batch_size, device)

    def vectorized():
        sweep = Sweep(model_fn, K, optimizer="adam", lr=lrs, seed=list(range(K)), device=device)
        sweep.fit(data, args.epochs, batch_size=args.batch_size)

    runs = {"single": single, "sequential_16": sequential, "vectorized_16": vectorized}
    for fn in runs.values():  # warm-up: allocator, MKL/oneDNN kernels, lazy imports
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so a noisy spell hits all three alike
        for name, fn in runs.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"steps={steps} batch={args.batch_size} repeats={args.repeats}")
    for name, t in med.items():
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        print(f"{name}: median {t:.3f} s (range {spread} s), {1e3 * t / steps:.3f} ms/step")
    print(f"sequential_16_over_single={med['sequential_16'] / med['single']:.2f}")
    print(f"sequential_16_over_vectorized_16={med['sequential_16'] / med['vectorized_16']:.2f}")
    print(f"vectorized_16_over_single={med['vectorized_16'] / med['single']:.2f}")


if __name__ == "__main__":
    main()
