"""Exports, written only from what is already in the gradebook.

- ``grades.csv``: one row per submission (student, lab, score, max_score, status, ...);
- ``results/<student>.json``: Gradescope's results.json format;
- ``feedback/<student>.md``: what failed and why, without hidden test code or reference answers.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .gradebook import Record

CSV_COLUMNS = ["student", "lab", "score", "max_score", "status", "message"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv(path: Path, records: list[Record], questions: list[str]) -> None:
    cols = CSV_COLUMNS + questions + ["tampered", "sha256", "origin", "graded_at"]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in records:
            per_q = {q: sum(t.score for t in r.tests if t.question == q) for q in questions}
            w.writerow([r.student, r.lab, f"{r.score:g}", f"{r.max_score:g}", r.status, r.message,
                        *[f"{per_q[q]:g}" if r.tests else "" for q in questions],
                        "; ".join(r.tampered), r.sha256, r.origin, r.graded_at])
    os.replace(tmp, path)


def gradescope_json(r: Record) -> dict:
    """A Gradescope results.json for one record."""
    return {
        "score": r.score,
        "output": f"Status: {r.status}. {r.message}".strip(),
        "tests": [{"name": t.name, "score": t.score, "max_score": t.max_score,
                   "output": (f"[{t.status}] " + t.output).strip() if t.status != "passed" else "passed",
                   "visibility": "visible" if t.visibility == "visible" else "after_published"}
                  for t in r.tests],
    }


def feedback_markdown(r: Record) -> str:
    """Feedback for the student: scores per question, failures and their reasons."""
    lines = [f"# {r.lab}: feedback for {r.student}", "",
             f"**Score: {r.score:g} / {r.max_score:g}** (status: {r.status})", ""]
    if r.message:
        lines += [r.message, ""]
    if not r.tests:
        lines += ["Your notebook could not be graded, so no tests ran. Fix the problem above and resubmit."]
        return "\n".join(lines) + "\n"
    questions = list(dict.fromkeys(t.question for t in r.tests))
    for q in questions:
        ts = [t for t in r.tests if t.question == q]
        lines += [f"## {q}: {sum(t.score for t in ts):g} / {sum(t.max_score for t in ts):g}", ""]
        for t in ts:
            mark = "✓" if t.status == "passed" else "✗"
            title = t.name.split(": ", 1)[1]
            lines.append(f"- {mark} {title} ({t.score:g}/{t.max_score:g})"
                         + ("" if t.status == "passed" else f": **{t.status}**: {t.output}"))
        lines.append("")
    cells = r.logs.get("cells") or []
    if cells:
        lines += ["## Cells that failed", "", "A failing cell does not stop the rest, but whatever it defines is missing.", ""]
        lines += [f"- {c['cell']}: **{c['status']}**: {c['message']}" for c in cells]
        lines.append("")
    return "\n".join(lines) + "\n"


def write_all(out: Path, records: list[Record], questions: list[str]) -> None:
    """Write the CSV, one results JSON and one feedback file per student."""
    (out / "results").mkdir(exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    for r in records:
        if r.status == "duplicate_student":
            continue   # the student's file names belong to the submission that was graded
        _atomic_write(out / "results" / f"{r.student}.json", json.dumps(gradescope_json(r), indent=1) + "\n")
        _atomic_write(out / "feedback" / f"{r.student}.md", feedback_markdown(r))
    write_csv(out / "grades.csv", records, questions)
