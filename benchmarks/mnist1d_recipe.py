"""The MNIST-1D measurement: with 5 seeds per setting, does a small CNN beat an MLP, and do
dropout and weight decay improve the MLP's test accuracy by more than the seeds' noise?

The recipe (chosen so that the effects show and a chapter can afford it on a CPU):
MNIST-1D standardised, 1,000 training sequences (``subset(1000)``; validation and test
keep 1,000 each), batch 64, Adam-family optimizers, seeds 0-4 shared by every
setting (same initial weights and batch order, so the comparison is paired), test
accuracy after the last epoch. With fewer training examples and enough epochs the
wide MLP overfits (training accuracy 100%), which is where regularizers can help.

- MLP: 40 -> 128 -> 128 -> 10, ReLU, lr 3e-3, 60 epochs.
- dropout 0.2 after each hidden layer vs none (one general-path sweep, K=10).
- weight decay: AdamW with weight_decay 1.0 vs 0 (one fast-path sweep, K=10).
- CNN: the paper's three strided Conv1d layers of 25 channels, lr 1e-2, 30 epochs (K=5),
  against the MLP of the weight-decay sweep's baseline (the same seeds).

    python benchmarks/mnist1d_recipe.py [--threads 1]

It prints each setting's mean ± spread, one verdict line per comparison, and the
wall and CPU seconds of each sweep. The last line is the headline.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from coursekit import load_dataset, mlp
from coursekit.stats import seed_grid, summarize, verdict
from coursekit.sweep import Sweep

SEEDS = 5
N_TRAIN = 1000
BATCH = 64
MLP = dict(width=128, lr=3e-3, epochs=60, dropout=0.2, weight_decay=1.0)
CNN = dict(lr=1e-2, epochs=30)


def cnn() -> nn.Module:
    """The MNIST-1D paper's small CNN: three strided Conv1d layers of 25 channels."""
    return nn.Sequential(nn.Unflatten(1, (1, 40)),
                         nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
                         nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(25 * 5, 10))


#: The model types of the MNIST-1D benchmarks.
MODELS = {
    "mlp": lambda: mlp(40, 10, depth=2, width=MLP["width"]),
    "bn_dropout_mlp": lambda: mlp(40, 10, depth=2, width=MLP["width"], batch_norm=True, dropout=MLP["dropout"]),
    "cnn": cnn,
}


def timed(label: str, sweep: Sweep, data, epochs: int) -> torch.Tensor:
    """Fit the sweep, print its time, return each model's test accuracy [K]."""
    t, c = time.perf_counter(), time.process_time()
    history = sweep.fit(data, epochs, batch_size=BATCH, progress=False)
    _, test_acc = sweep.evaluate(data, "test")
    print(f"time {label}: K={sweep.K}, {epochs} epochs, {time.perf_counter() - t:.1f} s wall, "
          f"{time.process_time() - c:.1f} s cpu; final train accuracy "
          f"{', '.join(f'{a:.2f}' for a in history.train_acc[:, -1].view(-1, SEEDS).mean(1).tolist())}")
    return test_acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist1d", standardize=True).subset(N_TRAIN)

    g = seed_grid(SEEDS, p=[0.0, MLP["dropout"]])
    dropout = timed("dropout sweep", Sweep(lambda: mlp(40, 10, depth=2, width=MLP["width"], dropout=0.5),
                                           len(g["seed"]), optimizer="adam", lr=MLP["lr"], dropout=g["p"],
                                           seed=g["seed"]), data, MLP["epochs"]).view(2, SEEDS)
    g = seed_grid(SEEDS, wd=[0.0, MLP["weight_decay"]])
    decay = timed("weight-decay sweep", Sweep(MODELS["mlp"], len(g["seed"]), optimizer="adamw", lr=MLP["lr"],
                                              weight_decay=g["wd"], seed=g["seed"]), data,
                  MLP["epochs"]).view(2, SEEDS)
    conv = timed("cnn sweep", Sweep(cnn, SEEDS, optimizer="adam", lr=CNN["lr"], seed=list(range(SEEDS))),
                 data, CNN["epochs"])

    print(f"MNIST-1D, {N_TRAIN} training sequences, test accuracy (%) over seeds 0-{SEEDS - 1}:")
    for name, acc in (("mlp", decay[0]), ("mlp + dropout", dropout[1]), ("mlp + weight decay", decay[1]),
                      ("cnn", conv)):
        print(f"  {name}: {summarize(acc, scale=100)}")
    lines = [verdict(conv, decay[0], "cnn", "mlp"),
             verdict(dropout[1], dropout[0], f"dropout {MLP['dropout']}", "none"),
             verdict(decay[1], decay[0], f"weight decay {MLP['weight_decay']} (adamw)", "none")]
    for line in lines:
        print(line)
    print(" | ".join(lines))


if __name__ == "__main__":
    main()
