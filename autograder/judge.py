"""The trusted judge: turn a child's plain answers into scores.

It never imports or calls student code. It compares the child's answers with
reference answers it computed itself (see :meth:`autograder.lab.Lab.expected`)
and checks that locked cells are intact.

>>> from autograder.judge import plan_cells             # doctest: +SKIP
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from coursekit.checks.plain import PlainDataError, decode

from .gradebook import Record, TestResult
from .status import SEVERE, Status


@dataclass
class Probe:
    """One case turned into a probe for this grading run."""
    case: object
    steps: list
    plain: list          # the steps as plain data, sent to the child
    expected: object     # the decoded reference results

    @property
    def timeout(self) -> float | None:
        return self.case.timeout


def _gid(cell) -> str | None:
    meta = cell.get("metadata", {}).get("autograder")
    return meta.get("grade_id") if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str) else None


def plan_cells(submission, trusted) -> tuple[list[tuple[int, str, str]], list[str]]:
    """The code cells to run, as (index, label, source), and tamper notes.

    Locked cells run from the trusted student version, whatever the submission
    says; deleted ones are put back where they belong. Solution cells and cells
    the student added run as submitted. ``demo`` cells are skipped.

    A cell is known by its grade id, or, where an editor stripped the metadata, by its
    content: an unchanged locked cell is not "tampered" because its metadata is gone.
    """
    from .source import is_demo
    trusted_cells = {_gid(c): (i, c) for i, c in enumerate(trusted.cells) if _gid(c)}
    locked = {g: ic for g, ic in trusted_cells.items()
              if ic[1].metadata["autograder"].get("locked") and ic[1].cell_type == "code"}
    ids = _ids_by_content(submission, locked)
    notes: list[str] = []
    seen: set[str] = set()
    plan: list[tuple[str, str, bool]] = []   # (label, source, demo)
    missing = sorted((ic[0], g) for g, ic in locked.items() if g not in ids.values())
    deleted = [f"locked cell {g!r} was deleted (the grader ran the original)" for _, g in missing]

    def put_back(before: int | None) -> None:
        while missing and (before is None or missing[0][0] < before):
            _, g = missing.pop(0)
            plan.append((g, locked[g][1].source, is_demo(locked[g][1])))

    for k, cell in enumerate(submission.cells):
        g = ids.get(k)
        if g in trusted_cells:
            put_back(trusted_cells[g][0])
        if cell.cell_type != "code" or (g in seen):
            continue
        if g in locked:
            seen.add(g)
            original = locked[g][1]
            if cell.source.rstrip() != original.source.rstrip():
                notes.append(f"locked cell {g!r} was edited (the grader ran the original)")
            plan.append((g, original.source, is_demo(original)))
        else:
            if g:
                seen.add(g)
            demo = g in trusted_cells and is_demo(trusted_cells[g][1])
            plan.append((g or "added by the student", cell.source, demo))
    put_back(None)
    cells = [(i, label, src) for i, (label, src, demo) in enumerate(plan) if not demo]
    return cells, notes + deleted


def _ids_by_content(submission, locked: dict) -> dict[int, str]:
    """The grade id of each submission cell: from its metadata, or, for a code cell without one, the
    locked cell whose source it repeats exactly (each locked cell claimed once, in order)."""
    ids = {k: _gid(c) for k, c in enumerate(submission.cells) if _gid(c)}
    unclaimed = {g: ic[1].source.rstrip() for g, ic in locked.items() if g not in ids.values()}
    for k, cell in enumerate(submission.cells):
        if k in ids or cell.get("cell_type") != "code":
            continue
        g = next((g for g, src in unclaimed.items() if src == str(cell.get("source", "")).rstrip()), None)
        if g is not None:
            ids[k] = g
            del unclaimed[g]
    return ids


def _answer_of(ans) -> tuple[object, str | None]:
    """The decoded answer (a list of step results), or why it cannot be read. Never raises."""
    try:
        actual = decode(ans.get("answer"))
        if type(actual) is not list:
            raise PlainDataError("the answer is not a list of step results")
        return actual, None
    except PlainDataError as e:
        return None, f"the answer could not be read as plain data: {e}"
    except Exception as e:  # noqa: BLE001 - decoding raises only PlainDataError; this is a last guard
        return None, f"the answer could not be read as plain data ({type(e).__name__})"


def score_test(probe: Probe, ans) -> tuple[Status, str]:
    """Status and message of one case, from the child's answer (plain data only)."""
    c = probe.case
    ans = ans if isinstance(ans, dict) else {"status": "crash", "message": "no answer"}
    if ans.get("status") != "ok":
        status = Status.of(ans.get("status"), Status.CRASH)
        status = status if status in (Status.ERROR, *SEVERE) else Status.CRASH
        return status, str(ans.get("message") or status.value)[:2000]
    actual, why = _answer_of(ans)
    if why:
        return Status.FAILED, why
    try:
        m = c.judge(probe.expected, actual, None, probe.steps)
    except Exception as e:  # noqa: BLE001 - a custom compare met an odd answer
        return Status.FAILED, f"the answer has an unexpected form ({type(e).__name__})"
    return (Status.PASSED, "") if m is None else (Status.FAILED, m.safe())


def score_tests(probes: list[Probe], answers: list) -> list[TestResult]:
    """Score every case from the child's answers (plain data only)."""
    out = []
    counters: dict[str, int] = {}
    answers = answers if isinstance(answers, list) else []
    for k, probe in enumerate(probes):
        c = probe.case
        if c.hidden:
            counters[c.question] = counters.get(c.question, 0) + 1
            name = f"{c.question}: hidden test {counters[c.question]}"
        else:
            name = f"{c.question}: {c.name}"
        status, output = score_test(probe, answers[k] if k < len(answers) else None)
        score = c.points if status == Status.PASSED else 0.0
        out.append(TestResult(c.question, name, score, c.points, status, output, "hidden" if c.hidden else "visible"))
    return out


def submission_status(tests: list[TestResult]) -> Status:
    """``graded``, or the first severe test status (timeout, memory_limit, crash)."""
    for s in SEVERE:
        if any(t.status == s for t in tests):
            return s
    return Status.GRADED


def _cell_index(key) -> int | None:
    """A cell index from the child's result, or ``None`` for anything that is not one (``true``, ``"x"``)."""
    if type(key) is int:
        return key
    if isinstance(key, str) and re.fullmatch(r"-?[0-9]{1,9}", key):
        return int(key)
    return None


def failed_cells(result: dict, cells: list) -> list[dict]:
    """The cells that did not run cleanly, as ``{"cell", "status", "message"}``, in order."""
    labels = {i: label for i, label, _ in cells}
    raw = result.get("cells")
    found = []
    for key, info in (raw.items() if isinstance(raw, dict) else []):
        i = _cell_index(key)
        if i is None or not isinstance(info, dict) or info.get("status") == "ok":
            continue
        where = f"cell {i} ({labels.get(i, '?')})" if i >= 0 else "between cells"
        found.append((i, {"cell": where, "status": Status.of(info.get("status"), Status.CRASH).value,
                          "message": str(info.get("message"))[:2000]}))
    return [log for _, log in sorted(found, key=lambda t: t[0])]


def written_answers(submission, written: list) -> dict[str, str]:
    """The student's text for each written question (the cell its declaration names)."""
    by_id = {_gid(c): c for c in submission.cells if _gid(c)}
    out = {}
    for w in written:
        cell = by_id.get(w.cell)
        text = "" if cell is None else str(cell.source)
        out[w.question] = text if text.strip() != "YOUR ANSWER HERE" else ""
    return out


def make_record(lab, sub, run_seed: int, probes: list[Probe], result: dict,
                cells: list, notes: list[str]) -> Record:
    tests = score_tests(probes, result.get("probes", []))
    cell_logs = failed_cells(result, cells)
    status = submission_status(tests)
    msg_parts = []
    if cell_logs:
        msg_parts.append(f"{len(cell_logs)} cell(s) failed")
    if notes:
        msg_parts.append("; ".join(notes))
    number = lambda x: float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None  # noqa: E731
    return Record(lab.name, sub.student, sub.sha256, sub.origin, status, "; ".join(msg_parts),
                  sum(t.score for t in tests), lab.max_score, tests, notes,
                  {"cells": cell_logs, "attempts": number(result.get("attempts")),
                   "compute_s": number(result.get("compute_s")), "wall_s": number(result.get("wall_s")),
                   "isolation": str(result.get("isolation"))}, run_seed,
                  answers=written_answers(sub.notebook, getattr(lab, "written", [])))
