"""Exports, written only from what is in the gradebook (``python -m autograder export``).

For one lab, from the current record of every student the gradebook holds:

- ``grades.csv``: one row per student (final and raw score, late penalty, per question, written marks);
- ``results/<student>.json``: Gradescope's results.json format;
- ``feedback/<student>.md``: what failed and why; hidden tests show pass or fail and points only;
- ``canvas.csv`` (Canvas gradebook import) and ``nbgrader.csv`` (the columns of ``nbgrader export``).

Student text (messages of exceptions, notes, written answers) is fenced in the
Markdown, and CSV cells a spreadsheet would run as a formula are neutralised:

>>> csv_cell("=HYPERLINK(1)"), csv_cell("alice")
("'=HYPERLINK(1)", 'alice')
>>> file_stem("José"), file_stem("../x")
('Jos%C3%A9', '%2E.%2Fx')
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from urllib.parse import quote

from .gradebook import Gradebook, Record
from .status import Status

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")
DEFAULT_HIDDEN_VISIBILITY = "visible"


def file_stem(student: str) -> str:
    """A file name for ``student`` that is safe and reversible (``urllib.parse.unquote`` gives it back)."""
    stem = quote(student, safe="")
    return "%2E" + stem[1:] if stem.startswith(".") else (stem or "%00")


def csv_cell(x) -> str:
    """Text a spreadsheet would run as a formula (``= + - @``, tab, CR) gets a leading apostrophe."""
    text = x if isinstance(x, str) else ("" if x is None else str(x))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def fence(text: str) -> str:
    """``text`` as a fenced code block that nothing inside it can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    tick = "`" * max(3, longest + 1)
    return f"{tick}text\n{text.rstrip()}\n{tick}"


def md_escape(text: str) -> str:
    """``text`` on one Markdown line, with no markup or HTML."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]#|~])", r"\\\1", text)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _g(x: float) -> str:
    return f"{round(x, 4):g}"


def written_of(r: Record, info: dict, marks: dict) -> list[tuple[dict, tuple[float, str] | None]]:
    return [(w, marks.get(r.student, {}).get(w["question"])) for w in info.get("written", [])]


def totals(r: Record, info: dict, marks: dict) -> tuple[float, float, float]:
    """(raw score, final score, max score), written marks included."""
    written = sum(m[0] for _, m in written_of(r, info, marks) if m)
    raw = r.score + written
    final = r.final_score if r.final_score is not None else raw * (1 - r.penalty)
    return raw, final, info["max_score"] + sum(w["points"] for w in info.get("written", []))


def failed_cells_text(r: Record) -> list[str]:
    return [f"{c['cell']}: {c['status']}: {c['message']}" for c in (r.logs.get("cells") or [])]


# ------------------------------------------------------------------ grades.csv and LMS files

def _table(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([csv_cell(x) for x in row])
    return buf.getvalue()


def grades_csv(records: list[Record], info: dict, marks: dict) -> str:
    questions, written = info["questions"], [w["question"] for w in info.get("written", [])]
    header = ["student", "lab", "score", "max_score", "status", "message", *questions, *written,
              "raw_score", "late_days", "penalty", "submitted_at", "tampered", "sha256", "origin", "graded_at"]
    rows = []
    for r in records:
        raw, final, top = totals(r, info, marks)
        per_q = {q: sum(t.score for t in r.tests if t.question == q) for q in questions}
        mine = dict((w["question"], m) for w, m in written_of(r, info, marks))
        rows.append([r.student, r.lab, _g(final), _g(top), r.status.value, r.message,
                     *[_g(per_q[q]) if r.tests else "" for q in questions],
                     *[_g(mine[q][0]) if mine.get(q) else "" for q in written],
                     _g(raw), r.late_days, _g(r.penalty), r.submitted_at or "", "; ".join(r.tampered),
                     r.sha256, r.origin, r.graded_at])
    return _table(header, rows)


def canvas_csv(records: list[Record], info: dict, marks: dict, students: dict, lab: str) -> str:
    """A Canvas gradebook import: one assignment column, final scores."""
    rows = [["Points Possible", "", "", "", "", _g(totals(records[0], info, marks)[2]) if records else ""]]
    for r in records:
        who = students.get(r.student, {})
        m = re.fullmatch(r"(.+)_(\d+)", r.student)
        rows.append([who.get("name") or r.student, who.get("canvas_id") or (m[2] if m else ""),
                     who.get("sis_id", ""), who.get("sis_login_id", ""), who.get("section", ""),
                     _g(totals(r, info, marks)[1])])
    return _table(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", lab], rows)


def nbgrader_csv(records: list[Record], info: dict, marks: dict, students: dict, lab: str) -> str:
    """The columns of ``nbgrader export`` (penalty in points)."""
    due = (info.get("policy") or {}).get("due", "")
    rows = []
    for r in records:
        who = students.get(r.student, {})
        raw, final, top = totals(r, info, marks)
        first, _, last = (who.get("name") or "").partition(" ")
        rows.append([lab, due, r.submitted_at or "", r.student, last, first, who.get("email", ""),
                     _g(raw), _g(raw - final), _g(final), _g(top)])
    return _table(["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                   "raw_score", "late_submission_penalty", "score", "max_score"], rows)


# ------------------------------------------------------------------ Gradescope and feedback

def _cell_hint(r: Record) -> str:
    cells = failed_cells_text(r)
    if not cells:
        return ""
    return (f"\nA cell failed before the tests ran ({cells[0]}); whatever it defines is missing, "
            "which may be why this test failed.")


def test_output(r: Record, t) -> str:
    """What a student sees of one test: a hidden test shows pass or fail only."""
    if t.visibility == "hidden":
        return "passed" if t.status == Status.PASSED else "failed"
    if t.status == Status.PASSED:
        return "passed"
    return f"[{t.status.value}] {t.output}".strip() + _cell_hint(r)


def gradescope_json(r: Record, info: dict, marks: dict | None = None) -> dict:
    """A Gradescope results.json for one record (see the Gradescope autograder specification)."""
    marks = marks or {}
    hidden_vis = info.get("hidden_visibility", DEFAULT_HIDDEN_VISIBILITY)
    raw, final, _ = totals(r, info, marks)
    lines = [f"Status: {r.status.value}. Score {_g(final)}" + (f" (raw {_g(raw)}, late by {r.late_days} day(s), "
                                                              f"minus {_g(100 * r.penalty)}%)" if r.penalty else "")]
    if r.message:
        lines.append(r.message)
    cells = failed_cells_text(r)
    if cells:
        lines += ["Cells that failed (a failing cell does not stop the rest, but whatever it defines is missing):",
                  *[f"  {c}" for c in cells]]
    out = {"score": round(final, 4), "output": "\n".join(lines), "output_format": "text",
           "test_output_format": "text", "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
    wall = r.logs.get("wall_s")
    if isinstance(wall, (int, float)):
        out["execution_time"] = max(0, int(round(wall)))
    for t in r.tests:
        out["tests"].append({"name": t.name, "score": t.score, "max_score": t.max_score,
                             "status": "passed" if t.status == Status.PASSED else "failed",
                             "output": test_output(r, t), "output_format": "text",
                             "visibility": "visible" if t.visibility == "visible" else hidden_vis})
    return out


def feedback_markdown(r: Record, info: dict | None = None, marks: dict | None = None) -> str:
    """Feedback for the student: scores per question, failures and their reasons."""
    info = info or {"questions": sorted({t.question for t in r.tests}), "max_score": r.max_score}
    marks = marks or {}
    raw, final, top = totals(r, info, marks)
    lines = [f"# {md_escape(r.lab)}: feedback for {md_escape(r.student)}", "",
             f"**Score: {_g(final)} / {_g(top)}** (status: {r.status.value})", ""]
    if r.penalty:
        lines += [f"Submitted {r.submitted_at}, {r.late_days} day(s) late: {_g(100 * r.penalty)}% off "
                  f"(raw score {_g(raw)}).", ""]
    if r.message:
        lines += ["What the grader noted:", "", fence(r.message), ""]
    if not r.tests:
        lines += ["Your notebook could not be graded, so no tests ran. Fix the problem above and resubmit.", ""]
    for q in dict.fromkeys(t.question for t in r.tests):
        ts = [t for t in r.tests if t.question == q]
        lines += [f"## {md_escape(q)}: {_g(sum(t.score for t in ts))} / {_g(sum(t.max_score for t in ts))}", ""]
        for t in ts:
            mark = "✓" if t.status == Status.PASSED else "✗"
            title = md_escape(t.name.split(": ", 1)[-1])
            lines.append(f"- {mark} {title} ({_g(t.score)}/{_g(t.max_score)})"
                         + ("" if t.status == Status.PASSED or t.visibility == "hidden" else f": **{t.status.value}**"))
            if t.status != Status.PASSED and t.visibility != "hidden" and t.output:
                lines += ["", fence(t.output), ""]
        lines.append("")
    for w, m in written_of(r, info, marks):
        lines += [f"## {md_escape(w['question'])} (written): "
                  + (f"{_g(m[0])} / {_g(w['points'])}" if m else f"not marked yet / {_g(w['points'])}"), ""]
        if m and m[1]:
            lines += [fence(m[1]), ""]
    cells = failed_cells_text(r)
    if cells:
        lines += ["## Cells that failed", "", "A failing cell does not stop the rest, but whatever it defines is missing.",
                  "", fence("\n".join(cells)), ""]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------ everything, from the gradebook

def export_lab(out: str | Path, book: Gradebook, lab: str) -> list[str]:
    """Write every export of ``lab`` into ``out`` from ``book`` alone; returns the problems met.

    A student whose files cannot be written is named in the problems; the rest are still written.
    """
    out = Path(out)
    info = book.lab_info(lab)
    if info is None:
        raise ValueError(f"the gradebook has no lab {lab!r}; labs there: {book.labs() or 'none'}")
    records, marks, students = book.current(lab), book.marks(lab), book.students()
    problems = []
    for sub in ("results", "feedback"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    wanted = {file_stem(r.student) for r in records}
    for sub, ext in (("results", ".json"), ("feedback", ".md")):
        for p in (out / sub).glob(f"*{ext}"):
            if p.name[: -len(ext)] not in wanted:
                p.unlink()            # a student the gradebook no longer holds for this lab
    for r in records:
        try:
            _atomic_write(out / "results" / f"{file_stem(r.student)}.json",
                          json.dumps(gradescope_json(r, info, marks), indent=1) + "\n")
            _atomic_write(out / "feedback" / f"{file_stem(r.student)}.md", feedback_markdown(r, info, marks))
        except Exception as e:  # noqa: BLE001 - one student's export never stops the others'
            why = (f"the grader failed on {r.student!r} while exporting its results ({type(e).__name__}: {e}); "
                   "run `python -m autograder export` again to retry it")
            problems.append(why)
            r.status, r.message = Status.INTERNAL_ERROR, why     # in grades.csv; the gradebook keeps the result
    _atomic_write(out / "grades.csv", grades_csv(records, info, marks))
    _atomic_write(out / "canvas.csv", canvas_csv(records, info, marks, students, lab))
    _atomic_write(out / "nbgrader.csv", nbgrader_csv(records, info, marks, students, lab))
    return problems
