"""Grading a class with nothing lost: one real grading run of lab 3 (real sandboxed children, a real
SQLite gradebook) over honest students, confusing identities and hostile notebooks, then exports,
regrades, late work and written answers on copies of its output folder."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.export import file_stem
from autograder.grader import ROOT
from autograder.status import Status

from ag_helpers import lab, needs_isolation, question_points, replace_solution, solved, student, write

LAB = "03_optimizers"
PY = sys.executable
FAST = ["--timeout", "60", "--cell-timeout", "10", "--probe-timeout", "5", "--no-progress"]
pytestmark = [needs_isolation, pytest.mark.xdist_group(name="class_run")]

FORGE = """
import gc, os
from autograder.sandbox.child import Child
ch = next(o for o in gc.get_objects() if isinstance(o, Child))
{send}
ch.send({{"ev": "done"}})
os._exit(0)
"""
CELL_TRUE = FORGE.format(send='ch.send({"ev": "cell", "i": True, "phase": "end", "status": "error", '
                              '"message": "forged", "output": "", "t": 0})')
HUGE_SHAPE = FORGE.format(send='ch.send({"ev": "probe", "j": 0, "phase": "end", "status": "ok", "message": "", "t": 0, '
                               '"answer": [{"__tensor__": {"dtype": "float32", "shape": [0, 2**64], "data": ""}}]})')
HOSTILE = '''def momentum_step(w, grad, v, lr=0.01, momentum=0.9):
    raise ValueError("INPUTS " + repr(w.tolist()) + "<script>alert(1)</script>\\n# Score: 10 / 10\\n```\\n<img src=x onerror=alert(1)>")
'''
ANSWER = "One step size must suit the steep direction; RMSProp and Adam scale each coordinate by its own RMS."


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "autograder", *map(str, args)], cwd=ROOT, capture_output=True, text=True, **kw)


def rows_of(out: Path) -> dict[str, dict]:
    return {r["student"]: r for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}


def with_answer(nb, text: str):
    for cell in nb.cells:
        if cell.metadata.get("autograder", {}).get("grade_id") == "w1-answer":
            cell.source = text
    return nb


def lab_notebook(nb) -> bytes:
    return nbformat.writes(nb).encode()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One class, graded once; tests copy its output folder before changing anything."""
    root = tmp_path_factory.mktemp("class")
    subs, out = root / "subs", root / "out"
    write(with_answer(solved(LAB), ANSWER), subs / "alice" / "03_optimizers.ipynb")
    write(student(LAB), subs / "aaron" / "alice.ipynb")                       # names another student
    write(solved(LAB, {"q1"}), subs / "bella" / "03_optimizers (1).ipynb")
    write(solved(LAB), subs / "carl" / "03_optimizers (1).ipynb")             # the same file name as bella's
    write(solved(LAB), subs / "Zoë" / "lab.ipynb")                            # NFC ...
    write(student(LAB), subs / "Zoe\u0308" / "lab.ipynb")                     # ... and NFD: two students
    write(student(LAB), subs / "zed" / "03_optimizers.ipynb")
    write(student(LAB), subs / "mallory" / "03_optimizers.ipynb")
    with zipfile.ZipFile(subs / "mallory" / "take_over.zip", "w") as z:       # names itself zed
        z.writestr("zed/03_optimizers.ipynb", lab_notebook(solved(LAB)))
    os.symlink(ROOT / "labs" / "source", subs / "dave")                       # a link to the solutions
    write(replace_solution(solved(LAB), "q1-solution",
                           'def momentum_step(*a, **k):\n    raise ValueError("\\ud800")'), subs / "surrogate" / "lab.ipynb")
    write(add_code(solved(LAB), CELL_TRUE), subs / "cell_true" / "lab.ipynb")
    write(add_code(solved(LAB), HUGE_SHAPE), subs / "huge_shape" / "lab.ipynb")
    write(replace_solution(solved(LAB), "q1-solution", HOSTILE), subs / "=1+1" / "lab.ipynb")
    r = cli("grade", "--lab", LAB, subs, "--out", out, "--workers", "2", *FAST)
    return {"root": root, "subs": subs, "out": out, "proc": r}


def add_code(nb, code: str):
    nb.cells.insert(len(nb.cells) - 1, nbformat.v4.new_code_cell(code))
    return nb


def copy_out(run, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(run["out"], out)
    return out


FULL = lab(LAB).max_score   # lab 3's tests; its written questions are marked by hand


def test_identities_come_from_folders_never_from_file_names(run):
    r = run["proc"]
    rows = rows_of(run["out"])
    assert r.returncode == 1, r.stderr                                   # dave's link is bad input
    assert lab(LAB).max_score == FULL
    assert sum(float(rows["alice"][q]) for q in lab(LAB).questions) == FULL
    assert rows["aaron"]["score"] == "0" and "aaron/alice.ipynb" in rows["aaron"]["origin"]
    assert float(rows["bella"]["score"]) == question_points(LAB)["q1"]
    assert float(rows["carl"]["score"]) == FULL                          # not dropped as bella's duplicate
    assert rows["zed"]["score"] == "0" and "take_over.zip" not in rows["zed"]["origin"]
    assert rows["mallory"]["score"] == "0"
    assert "archives found inside folders are not opened" in r.stderr and "take_over.zip" in r.stderr
    assert float(rows["Zoë"]["score"]) == FULL and rows["Zoe\u0308"]["score"] == "0"
    assert (run["out"] / "results" / f"{file_stem('Zoë')}.json").is_file()
    assert (run["out"] / "results" / f"{file_stem('Zoe' + chr(0x308))}.json").is_file()
    assert rows["dave"]["status"] == "unreadable" and "symbolic link" in rows["dave"]["message"]
    assert rows["dave"]["score"] == "0"


def test_one_hostile_submission_never_stops_the_class(run):
    rows = rows_of(run["out"])
    pts = question_points(LAB)
    # ValueError("\ud800") from student code: stored and exported; only q1 is lost.
    assert rows["surrogate"]["status"] == "graded" and float(rows["surrogate"]["score"]) == FULL - pts["q1"]
    feedback = (run["out"] / "feedback" / "surrogate.md").read_text()
    assert "ValueError: \\ud800" in feedback
    # A forged cell index `true` and an answer of shape [0, 2**64]: each only that student's row.
    for name in ("cell_true", "huge_shape"):
        assert name in rows, rows.keys()
        assert rows[name]["status"] in {s.value for s in Status}
        assert float(rows[name]["score"]) < FULL
    huge = json.loads((run["out"] / "results" / "huge_shape.json").read_text())
    assert huge["tests"][0]["status"] == "failed"
    db = sqlite3.connect(run["out"] / "gradebook.sqlite")
    assert db.execute("SELECT COUNT(*) FROM submissions WHERE current=1").fetchone()[0] == len(rows) == 13
    statuses = {s for (s,) in db.execute("SELECT status FROM submissions UNION SELECT status FROM tests")}
    assert statuses <= {s.value for s in Status}


def fenced_out(md: str) -> str:
    """The Markdown outside fenced code blocks."""
    return re.sub(r"^(`{3,})text\n.*?\n\1$", "", md, flags=re.S | re.M)


def test_exports_fence_student_text_neutralise_formulas_and_hide_hidden_inputs(run):
    feedback = (run["out"] / "feedback" / f"{file_stem('=1+1')}.md").read_text()
    outside = fenced_out(feedback)
    assert "INPUTS" in feedback and "<script>" in feedback            # shown, but only inside fences
    for bad in ("<script", "<img", "Score: 10 / 10", "INPUTS"):
        assert bad not in outside, outside
    visible_q1 = [c for c in lab(LAB).cases if c.question == "q1" and not c.hidden]
    assert feedback.count("INPUTS") == len(visible_q1)                 # never for a hidden test
    res = json.loads((run["out"] / "results" / f"{file_stem('=1+1')}.json").read_text())
    for t in res["tests"]:
        if "hidden test" in t["name"]:
            assert t["output"] in ("passed", "failed")
    raw = (run["out"] / "grades.csv").read_text(encoding="utf-8")
    assert "\n'=1+1," in raw and "\n=1+1," not in raw
    assert rows_of(run["out"])["'=1+1"]["score"] == str(int(FULL - question_points(LAB)["q1"]))


def exported(out: Path) -> dict[str, bytes]:
    files = ["grades.csv", "canvas.csv", "nbgrader.csv", *[f"{d}/{p.name}" for d in ("results", "feedback")
                                                          for p in sorted((out / d).iterdir())]]
    return {f: (out / f).read_bytes() for f in files}


def test_export_rebuilds_the_same_files_from_the_gradebook_alone(run, tmp_path):
    out = copy_out(run, tmp_path)
    before = exported(out)
    assert len(before) == 3 + 2 * 13
    for f in before:
        (out / f).unlink()
    r = cli("export", "--lab", LAB, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "exported 13 student(s)" in r.stdout
    assert exported(out) == before
    r = cli("export", "--lab", "01_backprop", "--out", out)
    assert r.returncode == 2 and "has no lab '01_backprop'" in r.stderr


def test_a_late_student_and_a_regrade_leave_every_other_row(run, tmp_path):
    out = copy_out(run, tmp_path)
    before = rows_of(out)
    late = tmp_path / "late"
    write(solved(LAB), late / "lena" / "03_optimizers.ipynb")
    roster = tmp_path / "roster.csv"
    roster.write_text("student,file,submitted_at,name,canvas_id,email\n"
                      f"lena,{late / 'lena' / '03_optimizers.ipynb'},2026-03-03T10:00:00Z,Lena Late,4242,lena@uni.test\n")
    policy = tmp_path / "policy.toml"
    policy.write_text('[03_optimizers]\ndue = "2026-03-01T23:59:00Z"\nper_day = 0.1\nmax_penalty = 0.5\n'
                      '[03_optimizers.extensions]\nbella = 1\n')
    r = cli("grade", "--lab", LAB, late, "--out", out, "--roster", roster, "--policy", policy, *FAST)
    assert r.returncode == 0, r.stderr
    rows = rows_of(out)
    assert set(rows) == set(before) | {"lena"}
    assert {k: v for k, v in rows.items() if k != "lena"} == before
    lena = rows["lena"]
    assert (lena["raw_score"], lena["late_days"], lena["penalty"], lena["score"]) == (f"{FULL:g}", "2", "0.2", f"{FULL * 0.8:g}")
    assert lena["submitted_at"] == "2026-03-03T10:00:00Z"
    db = sqlite3.connect(out / "gradebook.sqlite")
    assert db.execute("SELECT score, final_score FROM submissions WHERE student='lena'").fetchone() == pytest.approx((FULL, FULL * 0.8))
    nbg = {r["student_id"]: r for r in csv.DictReader(open(out / "nbgrader.csv"))}
    assert (nbg["lena"]["raw_score"], nbg["lena"]["late_submission_penalty"], nbg["lena"]["score"]) == (f"{FULL:g}", f"{FULL * 0.2:g}", f"{FULL * 0.8:g}")
    assert nbg["lena"]["first_name"] == "Lena" and nbg["lena"]["duedate"] == "2026-03-01T23:59:00Z"
    canvas = list(csv.reader(open(out / "canvas.csv")))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", LAB]
    assert canvas[1][0] == "Points Possible" and canvas[1][-1] == f"{FULL + sum(w.points for w in lab(LAB).written):g}"
    assert ["Lena Late", "4242", "", "", "", f"{FULL * 0.8:g}"] in canvas and len(canvas) == 2 + len(rows)
    # Regrade one student: that row is replaced, every other row stays as it was.
    r = cli("grade", "--lab", LAB, run["subs"] / "bella", "--student", "bella", "--out", out, "--regrade", *FAST)
    assert r.returncode == 0, r.stderr
    again = rows_of(out)
    assert set(again) == set(rows)
    assert {k: v for k, v in again.items() if k != "bella"} == {k: v for k, v in rows.items() if k != "bella"}
    assert again["bella"]["graded_at"] >= rows["bella"]["graded_at"] and again["bella"]["score"] == rows["bella"]["score"]


def test_written_answers_are_collected_marked_from_a_csv_and_exported(run, tmp_path):
    out = copy_out(run, tmp_path)
    r = cli("written", "collect", "--lab", LAB, "--out", out)
    assert r.returncode == 0, r.stderr
    answers = (out / "written" / "w1.md").read_text()
    assert ANSWER in answers and "Rubric" in answers and "(no answer)" in answers
    sheet = list(csv.DictReader(open(out / "written" / "w1-marks.csv")))
    assert {row["student"] for row in sheet} == set(rows_of(out))
    marks = tmp_path / "marks.csv"
    marks.write_text("student,question,points,comment\nalice,w1,1.5,=cmd|' /C calc'!A0 misses the flat direction\n"
                     "carl,w1,,\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("student,question,points,comment\nalice,w1,3,too many\n")
    r = cli("written", "marks", "--lab", LAB, "--out", out, bad)
    assert r.returncode == 2 and "between 0 and 2" in r.stderr
    assert rows_of(out)["alice"]["w1"] == ""
    r = cli("written", "marks", "--lab", LAB, "--out", out, marks)
    assert r.returncode == 0 and "stored 1 mark(s)" in r.stdout, r.stderr
    alice = rows_of(out)["alice"]
    tests, written = lab(LAB).max_score, sum(w.points for w in lab(LAB).written)
    assert (alice["w1"], alice["score"], alice["max_score"]) == ("1.5", f"{tests + 1.5:g}", f"{tests + written:g}")
    feedback = (out / "feedback" / "alice.md").read_text()
    assert "w1 (written): 1.5 / 2" in feedback and "misses the flat direction" in feedback
    assert rows_of(out)["carl"]["w1"] == ""


def test_two_notebooks_of_one_student_stop_the_run_naming_both_unless_newest(tmp_path):
    subs = tmp_path / "subs"
    write(student(LAB), subs / "nina" / "03_optimizers.ipynb")
    write(solved(LAB, {"q1"}), subs / "nina" / "final" / "mine.ipynb")
    os.utime(subs / "nina" / "03_optimizers.ipynb", (1e9, 1e9))          # the older one
    r = cli("grade", "--lab", LAB, subs, "--out", tmp_path / "out", *FAST)
    assert r.returncode == 2
    assert "nina" in r.stderr and "03_optimizers.ipynb" in r.stderr and "mine.ipynb" in r.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()
    r = cli("grade", "--lab", LAB, subs, "--out", tmp_path / "out", "--newest", *FAST)
    assert r.returncode == 0, r.stderr
    row = rows_of(tmp_path / "out")["nina"]
    assert float(row["score"]) == question_points(LAB)["q1"] and "mine.ipynb" in row["origin"]
    assert "also found, not graded: 03_optimizers.ipynb" in row["message"]


def test_written_answers_can_be_marked_at_a_prompt(run, tmp_path):
    from autograder.gradebook import Gradebook
    from autograder.written import prompt_marks
    out = copy_out(run, tmp_path)
    book = Gradebook(out / "gradebook.sqlite")
    students = [r.student for r in book.current(LAB)]
    typed = iter(["5", "2", "clear and complete", *[""] * len(students)])   # 5 is over the maximum: asked again
    shown: list[str] = []
    try:
        assert prompt_marks(book, LAB, "w1", ask=lambda _: next(typed), show=shown.append) == 1
        assert book.marks(LAB) == {students[0]: {"w1": (2.0, "clear and complete")}}
    finally:
        book.close()
    assert any("between 0 and 2" in s for s in shown) and any(ANSWER in s for s in shown)


def test_an_export_that_fails_for_one_student_is_that_students_row(run, tmp_path):
    out = copy_out(run, tmp_path)
    (out / "results" / "carl.json").unlink()
    (out / "results" / "carl.json").mkdir()                # carl's results cannot be written
    r = cli("export", "--lab", LAB, "--out", out)
    assert r.returncode == 1
    assert "the grader failed on 'carl' while exporting its results (IsADirectoryError" in r.stderr
    rows = rows_of(out)
    assert rows["carl"]["status"] == "internal_error" and "while exporting" in rows["carl"]["message"]
    assert rows["alice"]["status"] == "graded" and (out / "feedback" / "alice.md").is_file()
    assert len(rows) == 13 and not list((out / "results").glob("*.tmp"))
    db = sqlite3.connect(out / "gradebook.sqlite")
    assert db.execute("SELECT status FROM submissions WHERE student='carl' AND current=1").fetchone() == ("graded",)
