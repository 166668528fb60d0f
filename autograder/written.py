"""Written answers, marked by hand: collect them per question, read the marks back.

A lab declares a written question with :func:`coursekit.checks.written`; the
grader stores each student's answer in the gradebook. Then:

    python -m autograder written collect --lab 03_optimizers --out out/
        -> out/written/w1.md (every student's answer, with the rubric) and out/written/w1-marks.csv
    python -m autograder written marks --lab 03_optimizers --out out/ out/written/w1-marks.csv
        -> marks stored in the gradebook; every export written again with them

A marks CSV has the columns ``student,question,points,comment``; a row with no
points is skipped (not marked yet). Every row is checked before any is stored.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .export import _table, fence, file_stem, md_escape
from .gradebook import Gradebook


def _info(book: Gradebook, lab: str) -> dict:
    info = book.lab_info(lab)
    if info is None:
        raise ValueError(f"the gradebook has no lab {lab!r}; labs there: {book.labs() or 'none'}")
    if not info.get("written"):
        raise ValueError(f"lab {lab!r} declares no written questions (see coursekit.checks.written)")
    return info


def collect(book: Gradebook, lab: str, out: str | Path) -> list[Path]:
    """One Markdown file of answers and one marks CSV per written question; returns their paths."""
    info, records, marks = _info(book, lab), book.current(lab), book.marks(lab)
    folder = Path(out) / "written"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for w in info["written"]:
        q = w["question"]
        lines = [f"# {md_escape(lab)} {md_escape(q)} ({w['points']:g} points): written answers", "",
                 "Rubric:", "", fence(w["rubric"]), ""]
        rows = []
        for r in records:
            answer = r.answers.get(q, "")
            if not answer.strip():
                answer = "(no answer)" if r.tests or r.status == "graded" else f"(not graded: {r.status.value})"
            mark = marks.get(r.student, {}).get(q)
            lines += [f"## {md_escape(r.student)}" + (f" — marked {mark[0]:g}" if mark else ""), "", fence(answer), ""]
            rows.append([r.student, q, f"{mark[0]:g}" if mark else "", mark[1] if mark else ""])
        md, sheet = folder / f"{file_stem(q)}.md", folder / f"{file_stem(q)}-marks.csv"
        md.write_text("\n".join(lines), encoding="utf-8", errors="backslashreplace")
        sheet.write_text(_table(["student", "question", "points", "comment"], rows), encoding="utf-8")
        paths += [md, sheet]
    return paths


def _check_row(row: dict, where: str, questions: dict, students: set) -> tuple[str, str, float, str] | None:
    student, q = (row.get("student") or "").strip(), (row.get("question") or "").strip()
    text = (row.get("points") or "").strip()
    if not text:
        return None
    if q not in questions:
        raise ValueError(f"{where}: question must be one of {sorted(questions)}; got {q!r}")
    if student not in students:
        raise ValueError(f"{where}: student {student!r} has no submission of this lab in the gradebook")
    try:
        points = float(text)
    except ValueError:
        raise ValueError(f"{where}: points must be a number; got {text!r}") from None
    if not 0 <= points <= questions[q]:
        raise ValueError(f"{where}: points must be between 0 and {questions[q]:g} for {q}; got {points:g}")
    return student, q, points, (row.get("comment") or "").strip()


def read_marks(book: Gradebook, lab: str, path: str | Path) -> int:
    """Store the marks of a CSV (all rows checked first); returns how many were stored."""
    info = _info(book, lab)
    questions = {w["question"]: w["points"] for w in info["written"]}
    students = {r.student for r in book.current(lab)}
    text = Path(path).read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"student", "question", "points"} <= set(reader.fieldnames):
        raise ValueError(f"{path} must be a CSV with the columns student,question,points[,comment]")
    rows = [_check_row(row, f"{path}, line {k}", questions, students) for k, row in enumerate(reader, start=2)]
    rows = [r for r in rows if r]
    for student, q, points, comment in rows:
        book.put_mark(lab, student, q, points, comment)
    return len(rows)


def prompt_marks(book: Gradebook, lab: str, question: str, ask=input, show=print) -> int:
    """Mark one question's answers at a prompt (empty input skips a student); returns how many were stored."""
    info = _info(book, lab)
    questions = {w["question"]: w for w in info["written"]}
    if question not in questions:
        raise ValueError(f"question must be one of {sorted(questions)}; got {question!r}")
    w, n = questions[question], 0
    show(f"{lab} {question} ({w['points']:g} points). Rubric:\n{w['rubric']}\n")
    for r in book.current(lab):
        show(f"--- {r.student} ---\n{r.answers.get(question, '').strip() or '(no answer)'}\n")
        while True:
            text = ask(f"points for {r.student} (0-{w['points']:g}, empty to skip): ").strip()
            if not text:
                break
            try:
                row = _check_row({"student": r.student, "question": question, "points": text}, "input",
                                 {question: w["points"]}, {r.student})
            except ValueError as e:
                show(str(e))
                continue
            comment = ask("comment (optional): ").strip()
            book.put_mark(lab, r.student, question, row[2], comment)
            n += 1
            break
    return n
