"""Grade 100 submissions of one lab and report the grader's overhead per submission.

Overhead is everything beyond the student's own compute (the time the child spends
inside notebook cells and probe calls): starting workers (torch imports), forking
and sandboxing each child, validation, judging, the gradebook and the exports.
It is measured in CPU time of the grader and all its descendants, so that other
load on the machine does not count, with one-time start-up spread over the run:

    overhead = (CPU seconds of the whole run - student compute) / submissions

The wall-clock version, (wall x workers - student compute) / submissions, is printed too.

Run: ``python benchmarks/bench_grading.py [--lab 03_optimizers] [--n 100] [--workers 2]``.
The last line is ``overhead_ms_per_submission=<n>``; the target is at most 300.
"""
from __future__ import annotations

import argparse
import copy
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from autograder.grader import grade  # noqa: E402
from autograder.lab import load_lab  # noqa: E402


def solved_notebook(lab):
    nb = copy.deepcopy(lab.student)
    source = {c.get("id"): c for c in lab.source.cells}
    for cell in nb.cells:
        if cell.metadata["autograder"]["role"] == "solution":
            cell.source = source[cell.metadata["autograder"]["grade_id"]].source
    return nb


def cpu_seconds() -> float:
    """CPU time of this process and of every descendant it has reaped."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", default="03_optimizers")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    lab = load_lab(args.lab)
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        subs = Path(tmp) / "subs"
        subs.mkdir()
        text = nbformat.writes(solved_notebook(lab))
        for i in range(args.n):
            (subs / f"student{i:03d}.ipynb").write_text(text)
        t, cpu0 = time.perf_counter(), cpu_seconds()
        report = grade(args.lab, [subs], Path(tmp) / "out", workers=args.workers, progress=False)
        wall, cpu = time.perf_counter() - t, cpu_seconds() - cpu0
    assert len(report.records) == args.n and all(r.score == lab.max_score for r in report.records), \
        "every submission should get full marks"
    compute = report.stats["compute_s"]
    sandbox = (report.stats["child_wall_s"] - compute) / args.n
    wall_overhead = (wall * args.workers - compute) / args.n
    overhead = (cpu - compute) / args.n
    print(f"lab={args.lab} submissions={args.n} workers={args.workers} isolation={report.isolation}")
    print(f"wall_s={wall:.2f} cpu_s={cpu:.2f} student_compute_s={compute:.2f} "
          f"child_wall_minus_compute_ms={sandbox * 1000:.0f} judge_ms={report.stats['judge_s'] * 1000 / args.n:.0f} "
          f"wall_overhead_ms_per_submission={wall_overhead * 1000:.0f}")
    print(f"overhead_ms_per_submission={overhead * 1000:.0f}")


if __name__ == "__main__":
    main()
