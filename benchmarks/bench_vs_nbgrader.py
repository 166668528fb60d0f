"""Grade the same submissions with nbgrader's ``autograde`` and with our grader; compare throughput.

nbgrader gets its own version of the lab, made from our instructor source: the
same solution cells (nbgrader reads the same ``### BEGIN SOLUTION`` markers),
the same locked cells, and test cells that declare our cases and then *assert*
our self-checks (``assert run_check("q1", globals())``) instead of printing them.
Demo cells are left out of both. nbgrader checks only the visible cases, so it
does less work per submission than our grader, which runs every case, hidden ones
included, in its sandbox: the ratio is conservative.

Both grade ``--n`` copies of the solved lab, one after the other, in this run on
this machine: nbgrader with one ``nbgrader autograde`` command (it grades one
notebook at a time, each in a fresh Jupyter kernel), ours with ``--workers``
workers. Wall-clock times include every start-up. Both must give full marks.

Run: ``python benchmarks/bench_vs_nbgrader.py [--lab 03_optimizers] [--n 100] [--workers 2]``
(needs the ``bench`` extra: ``pip install -e .[bench]``). The last line is
``throughput_vs_nbgrader=<ratio>`` (submissions per second, ours over nbgrader's).
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from autograder.grader import grade  # noqa: E402
from autograder.lab import load_lab  # noqa: E402
from autograder.source import is_demo, role_of  # noqa: E402

ASSIGNMENT = "lab"


def solved_notebook(lab):
    """The student version with the instructor's solutions pasted in (what an honest student submits)."""
    nb = copy.deepcopy(lab.student)
    source = {c.get("id"): c for c in lab.source.cells}
    for cell in nb.cells:
        if cell.metadata["autograder"]["role"] == "solution":
            cell.source = source[cell.metadata["autograder"]["grade_id"]].source
    return nb


def nbgrader_source(lab):
    """Our instructor source as an nbgrader source notebook (schema 3 cell metadata)."""
    nb = copy.deepcopy(lab.source)
    nb.cells = [c for c in nb.cells if not is_demo(c)]
    points = {}
    for c in lab.cases:
        points[c.question] = points.get(c.question, 0.0) + c.points
    for k, cell in enumerate(nb.cells):
        gid = cell.get("id") or f"cell-{k}"
        role = role_of(cell)
        meta = {"schema_version": 3, "grade_id": gid, "grade": False, "solution": False, "locked": True}
        if role == "solution":
            meta.update(solution=True, locked=False)
        elif role == "tests":
            questions = re.findall(r'check\("([^"]+)"\)', cell.source)
            cell.source = re.sub(r'check\("([^"]+)"\)', r'assert run_check("\1", globals()), "self-check \1 failed"',
                                 cell.source)
            meta.update(grade=True, points=sum(points.get(q, 0.0) for q in questions))
        elif gid == "setup":
            cell.source += "\nfrom coursekit.checks import run_check\n"
        cell.metadata["nbgrader"] = meta
        cell.metadata.pop("autograder", None)
    return nb


def time_nbgrader(lab, n: int, tmp: Path) -> tuple[float, list[float]]:
    """Wall seconds of ``nbgrader autograde`` over ``n`` submissions, and the scores it gave."""
    from nbgrader.api import Gradebook
    course = tmp / "nbgrader-course"
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'bench'\n"
        "c.ExecutePreprocessor.timeout = 300\n"
        "c.Execute.timeout = 300\n")
    nbformat.write(nbgrader_source(lab), str(course / "source" / ASSIGNMENT / f"{lab.name}.ipynb"))
    env = {**os.environ, "OMP_NUM_THREADS": "1",      # nbgrader runs `alembic` from PATH
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "COURSEKIT_CHECKS_DIR": str(ROOT / "labs" / "checks")}          # the self-checks' expected values
    nbg = [sys.executable, "-m", "nbgrader"]
    out = subprocess.run([*nbg, "generate_assignment", ASSIGNMENT, "--create", "--force"], cwd=course, env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{out.stdout}\n{out.stderr}")
    students = [f"student{i:03d}" for i in range(n)]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:      # one call each, not n CLI start-ups
        for s in students:
            gb.update_or_create_student(s)
    # An honest student's submission: nbgrader's release with the solutions filled in.
    release = nbformat.read(str(course / "release" / ASSIGNMENT / f"{lab.name}.ipynb"), 4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbgrader_source(lab).cells
                 if c.metadata["nbgrader"].get("solution")}
    for cell in release.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in solutions:
            cell.source = solutions[gid]
    text = nbformat.writes(release)
    for s in students:
        folder = course / "submitted" / s / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{lab.name}.ipynb").write_text(text)
    t = time.perf_counter()
    out = subprocess.run([*nbg, "autograde", ASSIGNMENT, "--force"], cwd=course, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode:
        raise RuntimeError(f"nbgrader autograde failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = [gb.find_submission(ASSIGNMENT, s).score for s in students]
    return wall, scores


def time_ours(lab, n: int, workers: int, tmp: Path) -> tuple[float, list[float], str]:
    subs = tmp / "ours" / "subs"
    subs.mkdir(parents=True)
    text = nbformat.writes(solved_notebook(lab))
    for i in range(n):
        (subs / f"student{i:03d}.ipynb").write_text(text)
    t = time.perf_counter()
    report = grade(lab.name, [subs], tmp / "ours" / "out", workers=workers, progress=False)
    return time.perf_counter() - t, [r.score for r in report.records], report.isolation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", default="03_optimizers")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    lab = load_lab(args.lab)
    visible = sum(c.points for c in lab.cases if not c.hidden)
    with tempfile.TemporaryDirectory(prefix="bench-vs-nbgrader-") as tmp:
        ours, our_scores, isolation = time_ours(lab, args.n, args.workers, Path(tmp))
        theirs, their_scores = time_nbgrader(lab, args.n, Path(tmp))
    assert all(s == lab.max_score for s in our_scores), "our grader should give every submission full marks"
    nb_max = sum(nbformat.v4.nbbase.NotebookNode(c.metadata).get("nbgrader", {}).get("points", 0)
                 for c in nbgrader_source(lab).cells)
    assert all(s == nb_max for s in their_scores), f"nbgrader should give full marks ({nb_max}); got {their_scores[:5]}"
    print(f"lab={args.lab} submissions={args.n} ours_workers={args.workers} isolation={isolation} "
          f"nbgrader_checks_visible_points={visible:g}_of_{lab.max_score:g}")
    print(f"nbgrader_autograde_s={theirs:.1f} ({theirs / args.n:.2f} s per submission) "
          f"ours_s={ours:.1f} ({ours / args.n:.3f} s per submission)")
    print(f"throughput_vs_nbgrader={theirs / ours:.1f}")


if __name__ == "__main__":
    main()
