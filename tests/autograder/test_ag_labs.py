"""Every lab: the reference scores full marks, the untouched student version 0, and a
partial solution exactly the points of the questions it solves."""
from __future__ import annotations

import csv

import pytest

from autograder.grader import grade
from autograder.sandbox import Limits

from ag_helpers import LABS, lab, needs_isolation, question_points, solved, student, write

LIMITS = Limits(timeout=120, cell_timeout=60, probe_timeout=20)


@needs_isolation
@pytest.mark.parametrize("name", LABS)
def test_reference_full_blank_zero_partial_exact(name, tmp_path):
    qs = lab(name).questions
    part = set(qs[:(len(qs) + 1) // 2])   # a prefix: later questions may build on earlier ones
    subs = tmp_path / "subs"
    write(solved(name), subs / "ref.ipynb")
    write(student(name), subs / "blank.ipynb")
    write(solved(name, part), subs / "part.ipynb")
    report = grade(name, [subs], tmp_path / "out", workers=2, limits=LIMITS, progress=False)
    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
    total = lab(name).max_score
    pts = question_points(name)
    assert report.exit_code == 0
    assert float(rows["ref"]["score"]) == total, rows["ref"]
    assert rows["ref"]["status"] == "graded"
    assert float(rows["blank"]["score"]) == 0 and rows["blank"]["status"] == "graded"
    assert float(rows["part"]["score"]) == pytest.approx(sum(pts[q] for q in part))
    for q in qs:
        assert float(rows["part"][q]) == (pts[q] if q in part else 0)
