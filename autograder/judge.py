"""The trusted judge: turn a child's plain answers into scores.

It never imports or calls student code. It compares the child's answers with
reference answers it computed itself (see :meth:`autograder.lab.Lab.expected`)
and checks that locked cells are intact.

>>> from autograder.judge import plan_cells             # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

from .gradebook import Record, TestResult
from coursekit.checks.plain import PlainDataError, decode

SEVERE = ("timeout", "memory_limit", "crash")


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
    """
    from .source import is_demo
    trusted_cells = {_gid(c): (i, c) for i, c in enumerate(trusted.cells) if _gid(c)}
    locked = {g: ic for g, ic in trusted_cells.items()
              if ic[1].metadata["autograder"].get("locked") and ic[1].cell_type == "code"}
    notes: list[str] = []
    seen: set[str] = set()
    plan: list[tuple[str, str, bool]] = []   # (label, source, demo)
    missing = sorted((ic[0], g) for g, ic in locked.items()
                     if g not in {_gid(c) for c in submission.cells})
    deleted = [f"locked cell {g!r} was deleted (the grader ran the original)" for _, g in missing]

    def put_back(before: int | None) -> None:
        while missing and (before is None or missing[0][0] < before):
            _, g = missing.pop(0)
            plan.append((g, locked[g][1].source, is_demo(locked[g][1])))

    for cell in submission.cells:
        g = _gid(cell)
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


def score_tests(probes: list[Probe], answers: list[dict]) -> list[TestResult]:
    """Score every case from the child's answers (plain data only)."""
    out = []
    counters: dict[str, int] = {}
    for probe, ans in zip(probes, answers):
        c = probe.case
        vis = "hidden" if c.hidden else "visible"
        if c.hidden:
            counters[c.question] = counters.get(c.question, 0) + 1
            name = f"{c.question}: hidden test {counters[c.question]}"
        else:
            name = f"{c.question}: {c.name}"
        status, output = "failed", ""
        ans = ans if isinstance(ans, dict) else {"status": "crash", "message": "no answer"}
        if ans.get("status") == "ok":
            try:
                actual = decode(ans.get("answer"))
                if type(actual) is not list:
                    raise PlainDataError("the answer is not a list of step results")
            except PlainDataError as e:
                status, output = "failed", f"the answer could not be read as plain data: {e}"
            else:
                try:
                    m = c.judge(probe.expected, actual, None, probe.steps)
                except Exception as e:  # noqa: BLE001 - a custom compare met an odd answer
                    status, output = "failed", f"the answer has an unexpected form ({type(e).__name__})"
                else:
                    status, output = ("passed", "") if m is None else ("failed", m.safe())
        else:
            status = ans.get("status") if ans.get("status") in ("error", *SEVERE) else "crash"
            output = str(ans.get("message") or status)[:2000]
        score = c.points if status == "passed" else 0.0
        out.append(TestResult(c.question, name, score, c.points, status, output, vis))
    return out


def submission_status(tests: list[TestResult]) -> str:
    """``graded``, or the first severe test status (timeout, memory_limit, crash)."""
    for s in SEVERE:
        if any(t.status == s for t in tests):
            return s
    return "graded"


def make_record(lab, sub, run_seed: int, probes: list[Probe], result: dict,
                cells: list, notes: list[str]) -> Record:
    tests = score_tests(probes, result.get("probes", []))
    labels = {i: label for i, label, _ in cells}
    cell_logs = []
    for key, info in sorted(result.get("cells", {}).items(), key=lambda kv: int(kv[0])):
        i = int(key)
        if not isinstance(info, dict) or info.get("status") == "ok":
            continue
        where = f"cell {i} ({labels.get(i, '?')})" if i >= 0 else "between cells"
        cell_logs.append({"cell": where, "status": str(info.get("status")), "message": str(info.get("message"))[:2000]})
    status = submission_status(tests)
    msg_parts = []
    if cell_logs:
        msg_parts.append(f"{len(cell_logs)} cell(s) failed")
    if notes:
        msg_parts.append("; ".join(notes))
    return Record(lab.name, sub.student, sub.sha256, sub.origin, status, "; ".join(msg_parts),
                  sum(t.score for t in tests), lab.max_score, tests, notes,
                  {"cells": cell_logs, "attempts": result.get("attempts"), "compute_s": result.get("compute_s"),
                   "wall_s": result.get("wall_s"), "isolation": result.get("isolation")}, run_seed)
