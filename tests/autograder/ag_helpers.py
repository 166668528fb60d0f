"""Shared helpers for the autograder tests: real notebooks, real child processes, real SQLite."""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import nbformat
import pytest

from autograder.lab import DEFAULT_LABS_DIR, available_labs, load_lab
from autograder.sandbox import capabilities
from autograder.source import BEGIN_SOLUTION

LABS = available_labs(DEFAULT_LABS_DIR)


@functools.lru_cache(maxsize=None)
def lab(name: str):
    return load_lab(name)


@functools.lru_cache(maxsize=None)
def isolation() -> dict:
    return capabilities()


needs_isolation = pytest.mark.skipif(
    not isolation()["namespaces"],
    reason="needs root and Linux namespaces (unshare of mount/net/pid) for the sandbox: "
           f"this machine gives {isolation()['level']!r}")


def student(name: str):
    """The student version, as a student would download it."""
    return copy.deepcopy(lab(name).student)


def solved(name: str, questions: set[str] | None = None):
    """The student version with the instructor's solutions pasted in (only ``questions``, if given)."""
    nb = student(name)
    source = {c.get("id"): c for c in lab(name).source.cells}
    for cell in nb.cells:
        meta = cell.metadata["autograder"]
        if meta["role"] == "solution" and (questions is None or meta["grade_id"].split("-")[0] in questions):
            cell.source = source[meta["grade_id"]].source
            assert BEGIN_SOLUTION in cell.source
    return nb


def replace_solution(nb, grade_id: str, code: str):
    """Put ``code`` into the solution cell ``grade_id``."""
    for cell in nb.cells:
        if cell.metadata.get("autograder", {}).get("grade_id") == grade_id:
            cell.source = code
            return nb
    raise KeyError(grade_id)


def add_cell(nb, code: str, at: int | None = None):
    """Add a student code cell (without a grade id) at position ``at`` (default: the end)."""
    cell = nbformat.v4.new_code_cell(code)
    nb.cells.insert(len(nb.cells) if at is None else at, cell)
    return nb


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def question_points(name: str) -> dict[str, float]:
    pts: dict[str, float] = {}
    for c in lab(name).cases:
        pts[c.question] = pts.get(c.question, 0.0) + c.points
    return pts
