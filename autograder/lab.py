"""Load a lab for the judge: the instructor's reference namespace and its cases.

This runs only trusted instructor code, in the grading process. Student code
never runs here (see :mod:`autograder.runner`).

>>> lab = load_lab("03_optimizers")                      # doctest: +SKIP
>>> [c.key for c in lab.cases][:1]                       # doctest: +SKIP
['q1/one step from zero velocity']
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from coursekit import checks

from coursekit.checks.plain import encode
from coursekit.checks.probe import run_steps
from .source import (DEFAULT_LABS_DIR, LabError, SourceError, available_labs, find_lab, is_demo,  # noqa: F401
                     read_notebook, role_of, segments, student_version)

@dataclass
class Lab:
    """A lab as the judge sees it."""
    name: str
    labs_dir: Path
    source_path: Path
    source: object            # nbformat NotebookNode (with solutions)
    student: object           # the student version, made in memory from the source
    cases: list = field(default_factory=list)
    reference: dict = field(default_factory=dict)
    written: list = field(default_factory=list)      # coursekit.checks.Written, marked by hand

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.cases)

    @property
    def questions(self) -> list[str]:
        return list(dict.fromkeys(c.question for c in self.cases))

    def expected(self, steps_list: list) -> list:
        """Reference answers (plain data) for each probe, computed here in the judge."""
        out = []
        with _quiet_cwd():
            for steps in steps_list:
                out.append(encode(run_steps(self.reference, steps)))
        return out


@contextlib.contextmanager
def _quiet_cwd():
    """Run instructor code in a throw-away folder with its printing swallowed."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="autograder-ref-") as tmp:
        os.chdir(tmp)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            os.chdir(old)


def load_lab(name: str, labs_dir: Path = DEFAULT_LABS_DIR) -> Lab:
    """Run the source's cells (but not ``demo`` cells) with checks in collect mode."""
    path = find_lab(name, labs_dir)
    source = read_notebook(path)
    student = student_version(source, name, str(path))
    ns: dict = {"__name__": "__main__"}
    old_mode = checks.MODE
    checks.MODE = "collect"
    try:
        with _quiet_cwd():
            for i, cell in enumerate(source.cells):
                if cell.cell_type != "code" or is_demo(cell):
                    continue
                where = f"{path}, cell {i} (id {cell.get('id')})"
                parts = segments(cell.source, where) if role_of(cell) == "tests" else [(cell.source, False)]
                for code, hidden in parts:
                    checks._hidden_block = hidden
                    try:
                        exec(compile(code, f"<{name} cell {i}>", "exec"), ns)
                    except Exception as e:  # noqa: BLE001
                        raise LabError(f"{where} fails in the reference run: {type(e).__name__}: {e}") from e
                    finally:
                        checks._hidden_block = False
    finally:
        checks.MODE = old_mode
    cases = [c for c in checks.cases() if c.lab == name]
    if not cases:
        raise LabError(f"{path}: declares no cases; call use_lab({name!r}) and case(...) in its test cells")
    written = [w for w in checks.written_questions() if w.lab == name]
    ids = {c.get("id") for c in source.cells}
    for w in written:
        if w.cell not in ids:
            raise LabError(f"{path}: written question {w.question!r} names the answer cell {w.cell!r}, "
                           f"which the notebook does not have; give the answer cell that id")
    return Lab(name, Path(labs_dir), path, source, student, cases, ns, written)


def lab_info(lab: Lab) -> dict:
    """What exports need to know about a lab, stored in the gradebook."""
    return {"questions": lab.questions, "max_score": lab.max_score,
            "written": [w.to_plain() for w in lab.written]}


def visible_expectations(lab: Lab) -> dict:
    """Expected results of the visible cases on their fixed seeds, for self-checks."""
    out = {}
    for c in lab.cases:
        if not c.hidden:
            out[c.key] = lab.expected([c.steps(c.seed())])[0]
    return out


def assign(labs_dir: Path = DEFAULT_LABS_DIR, names: list[str] | None = None) -> list[Path]:
    """Write ``labs/<lab>.ipynb`` and ``labs/checks/<lab>.json`` from each source."""
    labs_dir = Path(labs_dir)
    written = []
    for name in names or available_labs(labs_dir):
        lab = load_lab(name, labs_dir)
        nb_path = labs_dir / f"{name}.ipynb"
        nb_path.write_text(student_notebook_text(lab))
        checks_path = labs_dir / "checks" / f"{name}.json"
        checks_path.parent.mkdir(exist_ok=True)
        checks_path.write_text(json.dumps({"lab": name, "cases": visible_expectations(lab)},
                                          indent=1, sort_keys=True) + "\n")
        written += [nb_path, checks_path]
    return written


def student_notebook_text(lab: Lab) -> str:
    import nbformat
    return nbformat.writes(lab.student) + "\n"
