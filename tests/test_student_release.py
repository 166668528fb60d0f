"""The student copy of the course leaves out every solution, hidden test and the grader."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import student_release  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.skipif(not (ROOT / "labs" / "source").is_dir() or not (ROOT / ".git").exists(),
                                reason="this is already a student copy (no instructor sources, no git)")

def test_student_copy_has_labs_but_no_instructor_material(tmp_path):
    out = tmp_path / "student"
    files = student_release.release(out)
    assert files and (out / "README.md").exists() and (out / "coursekit" / "checks.py").exists()
    labs = sorted(p.name for p in (out / "labs").glob("*.ipynb"))
    assert labs == sorted(p.name for p in (ROOT / "labs" / "source").glob("*.ipynb"))
    assert (out / "labs" / "checks").is_dir()
    for gone in ("labs/source", "autograder", "tests/autograder", "benchmarks/bench_grading.py"):
        assert not (out / gone).exists(), gone
    text = "".join(p.read_text() for p in (out / "labs").rglob("*") if p.is_file())
    for marker in student_release.MARKERS:
        assert marker not in text


def test_refuses_to_write_inside_the_repository():
    with pytest.raises(ValueError, match="OUT_DIR must be outside the repository"):
        student_release.release(ROOT / "labs")
