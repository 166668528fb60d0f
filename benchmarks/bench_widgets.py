"""Live-mode redraw latency of the book's experiment widgets.

Runs each chapter's code in this process (as a kernel would), finds every
coursekit Experiment it built, and moves its controls through every
combination in a shuffled order, timing the Python callback from the control
change to the new PNG in the Image widget. The first visit to a frame is a
cold redraw (the figure is drawn and rendered); later visits hit the cache.

    python benchmarks/bench_widgets.py [book/ch01_how_a_network_learns.ipynb ...]

Target (issue 2): median redraw <= 150 ms. The last line is the median in ms.
This times the kernel only; benchmarks/bench_live_widgets.py times what the reader waits for.
"""
from __future__ import annotations

import itertools
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

os.environ["COURSEKIT_WIDGETS"] = "live"
os.environ.setdefault("MPLBACKEND", "Agg")

import nbformat  # noqa: E402

from coursekit.widgets import Experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def chapters_from_toc() -> list[Path]:
    files = re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


CREATED: list[Experiment] = []
_init = Experiment.__init__


def _recording_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    CREATED.append(self)


# Chapters often show an experiment as a cell's last expression without naming it: record them all.
Experiment.__init__ = _recording_init


def run_notebook(path: Path) -> list[Experiment]:
    """Execute a notebook's code cells in a fresh namespace; return the experiments it built."""
    ns: dict = {"__name__": "__main__"}
    CREATED.clear()
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                exec(compile(cell.source, f"{path.name}", "exec"), ns)
    finally:
        os.chdir(cwd)
    return list(CREATED)


def measure(exp: Experiment, seed: int = 0) -> tuple[list[float], list[float]]:
    # The kernel's own cost of a frame: no drawing ahead, which would make every frame a cache hit
    # here (what the reader waits for, drawing ahead included, is bench_live_widgets.py).
    exp.prefetch = False
    box = exp.widget(mode="live")
    controls = list(box.children[0].children)
    sizes = [len(c.options) for c in controls]
    combos = list(itertools.product(*map(range, sizes)))
    random.Random(seed).shuffle(combos)
    cold, warm, seen = [], [], {tuple(c.index for c in controls)}
    for combo in combos + combos[: len(combos) // 2]:
        for c, i in zip(controls, combo):
            if c.index == i:
                continue
            t0 = time.perf_counter()
            c.index = i  # fires the Python callback, which redraws
            dt = (time.perf_counter() - t0) * 1e3
            state = tuple(c.index for c in controls)
            (warm if state in seen else cold).append(dt)
            seen.add(state)
    return cold, warm


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or chapters_from_toc()
    all_cold, all_warm = [], []
    for path in paths:
        t0 = time.perf_counter()
        exps = {getattr(e.fn, "__name__", f"experiment {i}"): e for i, e in enumerate(run_notebook(path))}
        print(f"{path.name}: ran in {time.perf_counter() - t0:.1f} s, {len(exps)} experiment(s)")
        for name, exp in exps.items():
            cold, warm = measure(exp)
            all_cold += cold
            all_warm += warm
            print(f"  {name}: {exp.n_frames} frames; cold redraw median {statistics.median(cold):.1f} ms "
                  f"(max {max(cold):.1f}), cached median {statistics.median(warm) if warm else 0:.2f} ms")
    every = all_cold + all_warm
    print(f"cold redraws: n={len(all_cold)} median {statistics.median(all_cold):.1f} ms; "
          f"all moves: n={len(every)} median {statistics.median(every):.1f} ms")
    print(f"widget_redraw_median_ms={statistics.median(all_cold):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
