"""Benchmark: what MNIST-1D costs a chapter. Generating the data set (cold, and from the
caches), and the first training epoch of each model type on 1 and 2 threads.

The models are those of ``benchmarks/mnist1d_recipe.py``: a plain MLP, a batch-norm +
dropout MLP and the paper's small CNN, each trained alone by ``coursekit.Trainer``
with Adam, batch 64, on the 3,000 training sequences, validation included. Each
figure is the median over fresh models (a new model and Trainer every repeat, so
the first epoch's one-time costs are in it), repeats interleaved across models.
Wall and CPU seconds are both printed: on a shared machine the CPU time is the
steadier of the two.

    python benchmarks/bench_mnist1d.py [--repeats 5]

The last line is the headline: ``mnist1d_generate_s=<s> (cpu <s>) first_epoch_s_1_thread mlp=<s> ...``.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist1d_recipe import MODELS  # noqa: E402  (the recipe's model builders)

from coursekit import Trainer, load_dataset  # noqa: E402
from coursekit import data as D  # noqa: E402


def generation_times() -> dict[str, float]:
    """Seconds to load MNIST-1D: generated in a fresh process (import included; and that
    whole process's CPU time, torch's import too), generated in this process (wall and
    CPU, imports excluded), read from the disk cache, and from memory."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, COURSEKIT_CACHE_DIR=cache)
        code = ("import time, coursekit.data as D; t = time.perf_counter(); D.load_dataset('mnist1d'); "
                "print(time.perf_counter() - t)")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["fresh_process_with_import"] = float(subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["fresh_process_whole_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        args = {"num_samples": 5000, "train_split": 0.8, "seed": D.MNIST1D_SEED}
        D._mnist1d_generate({**args, "num_samples": 100})  # imports mnist1d, scipy
        t, c = time.perf_counter(), time.process_time()
        D._mnist1d_generate(args)
        out["generate_in_process"] = time.perf_counter() - t
        out["generate_in_process_cpu"] = time.process_time() - c
        os.environ[D.CACHE_ENV] = cache  # the file the fresh process wrote
        D._MNIST1D_MEMORY.clear()
        t = time.perf_counter()
        load_dataset("mnist1d")
        out["from_disk_cache"] = time.perf_counter() - t
        t = time.perf_counter()
        load_dataset("mnist1d")
        out["from_memory"] = time.perf_counter() - t
        del os.environ[D.CACHE_ENV]
    return out


def first_epoch(name: str, data) -> tuple[float, float]:
    torch.manual_seed(0)
    net = MODELS[name]()
    trainer = Trainer(net, data, torch.optim.Adam(net.parameters(), lr=1e-3), batch_size=64, progress=False)
    t, c = time.perf_counter(), time.process_time()
    trainer.fit(1)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    gen = generation_times()
    for k, v in gen.items():
        print(f"mnist1d {k}: {v:.3f} s")
    data = load_dataset("mnist1d", standardize=True)
    headline = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name in MODELS:  # warm-up: lazy imports and kernels, once per thread count
            first_epoch(name, data)
        walls: dict[str, list[float]] = {n: [] for n in MODELS}
        cpus: dict[str, list[float]] = {n: [] for n in MODELS}
        for _ in range(args.repeats):
            for name in MODELS:
                w, c = first_epoch(name, data)
                walls[name].append(w)
                cpus[name].append(c)
        for name in MODELS:
            w, c = statistics.median(walls[name]), statistics.median(cpus[name])
            print(f"threads={threads} {name}: first epoch {w:.3f} s wall, {c:.3f} s cpu "
                  f"(wall range {min(walls[name]):.3f}-{max(walls[name]):.3f})")
            headline[(threads, name)] = w
    print(f"torch={torch.__version__} repeats={args.repeats} train={len(data.X_train)} batch=64")
    print(f"mnist1d_generate_s={gen['generate_in_process']:.2f} (cpu {gen['generate_in_process_cpu']:.2f}) " + " ".join(
        f"first_epoch_s_{t}_thread{'s' if t > 1 else ''} " + " ".join(
            f"{n}={headline[(t, n)]:.3f}" for n in MODELS) for t in (1, 2)))


if __name__ == "__main__":
    main()
