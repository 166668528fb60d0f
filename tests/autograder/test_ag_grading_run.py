"""Whole grading runs through the command line: 50 mixed submissions, a killed run that
resumes, bad input, idempotent re-grading, the export formats and the Gradescope bundle."""
from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.grader import ROOT

from ag_helpers import add_cell, lab, needs_isolation, question_points, replace_solution, solved, student, write

LAB = "01_backprop"
PY = sys.executable
FAST = ["--timeout", "30", "--cell-timeout", "2", "--probe-timeout", "2", "--no-progress"]


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "autograder", *map(str, args)], cwd=ROOT, capture_output=True, text=True, **kw)


def make_fifty(folder: Path) -> dict[str, str]:
    """50 submissions; returns what each student should get: 'full', 'part', 'zero' or a bad status."""
    expect = {}
    for i in range(20):
        write(solved(LAB), folder / f"good{i:02d}.ipynb"); expect[f"good{i:02d}"] = "full"
    for i in range(10):
        write(solved(LAB, {"q1", "q2"}), folder / f"part{i:02d}.ipynb"); expect[f"part{i:02d}"] = "part"
    for i in range(6):
        write(student(LAB), folder / f"blank{i:02d}.ipynb"); expect[f"blank{i:02d}"] = "zero"
    (folder / "bad_json.ipynb").write_text('{"cells": [')
    (folder / "empty.ipynb").write_bytes(b"")
    (folder / "binary.ipynb").write_bytes(bytes(range(256)) * 40)
    write(lab("03_optimizers").student, folder / "other_lab.ipynb")
    (folder / "old_format.ipynb").write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "cells": []}))
    with open(folder / "huge.ipynb", "wb") as f:
        f.truncate(51 * 2**20)
    write(solved(LAB), folder / "zz_second_copy" / "good00.ipynb")       # the folder names the student, not the file
    expect.update(bad_json="invalid_json", empty="empty_file", binary="binary_file", other_lab="wrong_lab",
                  old_format="wrong_format", huge="too_large", zz_second_copy="full")
    evil = {
        "evil_loop": add_cell(solved(LAB), "while True:\n    pass", at=3),
        "evil_exit": add_cell(solved(LAB), "import os\nos._exit(1)", at=3),
        "evil_sysexit": add_cell(student(LAB), "import sys\nsys.exit(0)"),
        "evil_patch": add_cell(student(LAB), "import torch\ntorch.allclose = lambda *a, **k: True"),
        "evil_fork": add_cell(student(LAB), "import os\nfor _ in range(10**4):\n    try:\n        os.fork()\n    except OSError:\n        break"),
        "evil_print": add_cell(student(LAB), "print('x' * 10**8)"),
        "evil_q1_loop": replace_solution(solved(LAB), "q1-solution", "def forward(*a):\n    while True:\n        pass"),
    }
    for name, nb in evil.items():
        write(nb, folder / f"{name}.ipynb")
    expect.update(evil_loop="full", evil_exit="full", evil_sysexit="zero", evil_patch="zero", evil_fork="zero",
                  evil_print="zero", evil_q1_loop="no_q1")
    return expect


def rows_of(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "grades.csv")))


@needs_isolation
@pytest.mark.xdist_group(name="fifty")
def test_fifty_mixed_submissions_survive_a_kill_and_resume(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    expect = make_fifty(subs)
    assert sum(1 for _ in subs.rglob("*.ipynb")) == 50
    # Run 1: killed (SIGKILL, the whole process group) part-way through.
    proc = subprocess.Popen([PY, "-m", "autograder", "grade", "--lab", LAB, subs, "--out", out, "--workers", "2", *FAST],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db_path, before = out / "gradebook.sqlite", 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                before = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
            except sqlite3.Error:
                pass
            if before >= 20:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    db = sqlite3.connect(db_path)
    stored = dict(db.execute("SELECT student || ' ' || sha256, graded_at FROM submissions"))
    assert 20 <= len(stored) < 50, "the kill should land in the middle of the run"
    assert not (out / "grades.csv").exists(), "exports are written only after every result is stored"
    # Run 2: picks up where run 1 stopped.
    r = cli("grade", "--lab", LAB, subs, "--out", out, "--workers", "2", *FAST)
    assert r.returncode == 1, r.stderr       # bad input is in the folder
    assert f"{len(stored)} from the gradebook" in r.stdout
    rows = rows_of(out)
    assert len(rows) == 50
    assert db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 50
    after = dict(db.execute("SELECT student || ' ' || sha256, graded_at FROM submissions"))
    assert all(after[k] == v for k, v in stored.items()), "nothing stored by run 1 was graded again"
    full, pts = lab(LAB).max_score, question_points(LAB)
    assert {row["student"] for row in rows} == set(expect)
    for row in rows:
        want, score = expect.get(row["student"]), float(row["score"])
        if want == "full":
            assert score == full, row
        elif want == "part":
            assert score == pts["q1"] + pts["q2"], row
        elif want == "zero":
            assert score == 0, row
        elif want == "no_q1":
            assert score == full - pts["q1"] and row["status"] == "timeout", row
        else:
            assert row["status"] == want and score == 0 and row["message"], row
    # Run 3: the same files again change nothing.
    r = cli("grade", "--lab", LAB, subs, "--out", out, *FAST)
    assert "(0 now, 50 from the gradebook" in r.stdout
    assert db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 50
    # Exports: Gradescope JSON and feedback that reveal no hidden tests or reference answers.
    res = json.loads((out / "results" / "part00.json").read_text())
    assert res["score"] == pts["q1"] + pts["q2"] and len(res["tests"]) == len(lab(LAB).cases)
    assert {"name", "score", "max_score", "output", "visibility"} <= set(res["tests"][0])
    assert {t["visibility"] for t in res["tests"]} == {"visible"}           # hidden ones show pass/fail only
    assert {t["status"] for t in res["tests"]} == {"passed", "failed"} and "execution_time" in res
    feedback = (out / "feedback" / "part00.md").read_text()
    assert "not implemented" in feedback and "q3: 0 / 2" in feedback
    source_text = lab(LAB).source_path.read_text()
    for c in lab(LAB).cases:
        if c.hidden:
            assert c.name not in feedback and c.name not in json.dumps(res)
    assert "BUGGY_GRAD = " not in feedback and "expected [" not in feedback and "db1" not in feedback
    assert "BEGIN" not in feedback and len(source_text) > 0
    bad = (out / "feedback" / "bad_json.md").read_text()
    assert "not valid JSON" in bad
