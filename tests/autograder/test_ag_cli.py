"""The command line: errors before any work, LMS zip exports, and the Gradescope bundle."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile

import nbformat

from autograder.grader import ROOT

from ag_helpers import lab, needs_isolation, question_points, solved, student, write

LAB = "01_backprop"
PY = sys.executable
FAST = ["--timeout", "30", "--cell-timeout", "2", "--probe-timeout", "2", "--no-progress"]


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "autograder", *map(str, args)], cwd=ROOT, capture_output=True, text=True, **kw)


def rows_of(out):
    return list(csv.DictReader(open(out / "grades.csv")))


def test_missing_lab_is_an_error_before_any_work(tmp_path):
    r = cli("grade", "--lab", "99_nope", tmp_path, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert "lab '99_nope' not found" in r.stderr and "Available labs: ['01_backprop'" in r.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder_is_an_error_before_any_work(tmp_path):
    write(solved(LAB), tmp_path / "a.ipynb")
    (tmp_path / "file").write_text("not a folder")
    r = cli("grade", "--lab", LAB, tmp_path / "a.ipynb", "--out", tmp_path / "file" / "out")
    assert r.returncode == 2 and "cannot write to the output folder" in r.stderr
    r = cli("grade", "--lab", LAB, tmp_path / "missing.ipynb", "--out", tmp_path / "out")
    assert r.returncode == 2 and "not found" in r.stderr and not (tmp_path / "out" / "grades.csv").exists()


@needs_isolation
def test_zip_export_from_an_lms_is_graded_per_student(tmp_path):
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("smithjo_4411_9001_01_backprop.ipynb", nbformat.writes(solved(LAB)))
        f.writestr("doeja_4412_9002_01_backprop.ipynb", nbformat.writes(student(LAB)))
        f.writestr("__MACOSX/._junk.ipynb", "junk")
    r = cli("grade", "--lab", LAB, z, "--out", tmp_path / "out", "--workers", "2", *FAST)
    assert r.returncode == 0, r.stderr
    rows = {row["student"]: float(row["score"]) for row in rows_of(tmp_path / "out")}
    assert rows == {"smithjo_4411": lab(LAB).max_score, "doeja_4412": 0.0}


@needs_isolation
def test_gradescope_bundle_runs_the_same_grader(tmp_path):
    bundle = tmp_path / "bundle.zip"
    r = cli("export-gradescope", "--lab", "04_lr_schedules", "--out", bundle)
    assert r.returncode == 0, r.stderr
    home = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "autograder/grader.py", "labs/source/04_lr_schedules.ipynb"} <= names
        z.extractall(home / "source")
    write(solved("04_lr_schedules", {"q1", "q2"}), home / "submission" / "04_lr_schedules.ipynb")
    env = {**os.environ, "AUTOGRADER_HOME": str(home), "AUTOGRADER_PYTHON": PY}
    run = subprocess.run(["bash", str(home / "source" / "run_autograder")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    res = json.loads((home / "results" / "results.json").read_text())
    pts = question_points("04_lr_schedules")
    assert res["score"] == pts["q1"] + pts["q2"]
