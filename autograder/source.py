"""Instructor sources and the student versions made from them.

An instructor source is an ordinary notebook (``labs/source/<lab>.ipynb``) with
nbgrader-style markers:

- ``### BEGIN SOLUTION`` / ``### END SOLUTION`` around the reference code; the
  student version gets ``raise NotImplementedError()`` in its place inside a
  function, and only ``# YOUR CODE HERE`` at the top level of a cell;
- ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` around cases declared
  with ``hidden=True``; the student version drops them.

Every other cell is *locked*: the grader remembers its text and flags edits.

>>> from autograder.source import strip_markers
>>> print(strip_markers("def f(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION\\n", "c"))
def f(x):
    # YOUR CODE HERE
    raise NotImplementedError()
<BLANKLINE>
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from pathlib import Path

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
DEMO_TAG = "demo"   # cells tagged "demo" are skipped by the grader (plots, long experiments)


# First line of every test cell in the student's copy (see coursekit.checks.require_setup).
SETUP_GUARD = 'from coursekit.checks import require_setup; require_setup("{lab}")\n'

DEFAULT_LABS_DIR = Path(__file__).resolve().parents[1] / "labs"


class SourceError(ValueError):
    """An instructor source that cannot be turned into a student version."""


class LabError(ValueError):
    """A lab that is missing or whose source does not run."""


def available_labs(labs_dir: Path = DEFAULT_LABS_DIR) -> list[str]:
    """Names of the labs that have an instructor source in ``labs_dir/source``."""
    return sorted(p.stem for p in (Path(labs_dir) / "source").glob("*.ipynb"))


def find_lab(name: str, labs_dir: Path = DEFAULT_LABS_DIR) -> Path:
    """Path of the lab's instructor source, or a ``LabError`` listing the labs there are."""
    path = Path(labs_dir) / "source" / f"{name}.ipynb"
    if not path.is_file():
        raise LabError(f"lab {name!r} not found: no {path}. Available labs: {available_labs(labs_dir) or 'none'}")
    return path


def _blocks(text: str, begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """Line ranges (begin, end) of marked blocks, checked for balance."""
    spans, start = [], None
    for i, line in enumerate(text.splitlines()):
        s = line.strip()
        if s == begin:
            if start is not None:
                raise SourceError(f"{where}: line {i + 1} opens '{begin}' inside another; close the first with '{end}'")
            start = i
        elif s == end:
            if start is None:
                raise SourceError(f"{where}: line {i + 1} has '{end}' with no '{begin}' before it")
            spans.append((start, i))
            start = None
    if start is not None:
        raise SourceError(f"{where}: '{begin}' on line {start + 1} is never closed; add '{end}'")
    return spans


def strip_markers(text: str, where: str, markdown: bool = False) -> str:
    """The student's text: solutions replaced by a placeholder, hidden tests removed."""
    lines = text.splitlines(keepends=True)
    drop: set[int] = set()
    replace: dict[int, str] = {}
    for a, b in _blocks(text, BEGIN_SOLUTION, END_SOLUTION, where):
        indent = lines[a][: len(lines[a]) - len(lines[a].lstrip())]
        drop.update(range(a, b + 1))
        if markdown:
            replace[a] = "YOUR ANSWER HERE\n"
        elif indent:     # a function body: calling it says it is not written yet
            replace[a] = f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\n"
        else:            # top level (an answer such as BUGGY_GRAD = ...): raising would stop "Run All" here
            replace[a] = "# YOUR CODE HERE\n"
    for a, b in _blocks(text, BEGIN_HIDDEN, END_HIDDEN, where):
        drop.update(range(a, b + 1))
    return "".join(replace.get(i, "") if i in drop else line for i, line in enumerate(lines))


def segments(text: str, where: str) -> list[tuple[str, bool]]:
    """Split a test cell into (code, hidden) pieces, keeping line numbers for tracebacks."""
    lines = text.splitlines(keepends=True)
    hidden = _blocks(text, BEGIN_HIDDEN, END_HIDDEN, where)
    out, pos = [], 0
    for a, b in hidden:
        out.append(("\n" * pos + "".join(lines[pos:a]), False))
        out.append(("\n" * a + "".join(lines[a:b + 1]), True))
        pos = b + 1
    out.append(("\n" * pos + "".join(lines[pos:]), False))
    for code, is_hidden in out:
        if is_hidden:
            _require_hidden_flag(code, where)
    return [(c, h) for c, h in out if c.strip()]


def _require_hidden_flag(code: str, where: str) -> None:
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "case":
            ok = any(k.arg == "hidden" and isinstance(k.value, ast.Constant) and k.value.value is True
                     for k in node.keywords)
            if not ok:
                raise SourceError(f"{where}: line {node.lineno}: a case inside '{BEGIN_HIDDEN}' must say hidden=True")


@dataclass
class CellInfo:
    """What the grader needs to know about one cell of a lab."""
    grade_id: str
    role: str          # "solution", "tests", "written", "code" or "markdown"
    locked: bool
    demo: bool


def role_of(cell) -> str:
    text = cell.source
    if BEGIN_SOLUTION in text:
        return "solution"
    if cell.cell_type != "code":
        return "markdown"
    if "check(" in text or "case(" in text:
        return "tests"
    if "written(" in text:
        return "written"   # declares a hand-marked question; its hidden block keeps the rubric from students
    if BEGIN_HIDDEN in text:
        return "tests"
    return "code"


def is_demo(cell) -> bool:
    return DEMO_TAG in cell.get("metadata", {}).get("tags", [])


def read_notebook(path: Path):
    """Read a notebook as nbformat 4, naming the file in any error."""
    import nbformat   # imported here: it takes seconds to import, and the CLI checks arguments first
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as e:  # noqa: BLE001
        raise SourceError(f"{path}: not a readable notebook ({e})") from e


def student_version(source, lab: str, path: str = "source"):
    """Make the student notebook: solutions and hidden tests removed, outputs cleared."""
    nb = copy.deepcopy(source)
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        where = f"{path}, cell {i} (id {cell.get('id')})"
        gid = cell.get("id") or f"cell-{i}"
        if gid in seen:
            raise SourceError(f"{where}: duplicate cell id {gid!r}; give each cell its own id")
        seen.add(gid)
        role = role_of(cell)
        cell.source = strip_markers(cell.source, where, markdown=cell.cell_type != "code")
        if role == "tests":   # run too early, a self-check cell says to run the lab's first cell
            cell.source = SETUP_GUARD.format(lab=lab) + cell.source
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata["autograder"] = {"grade_id": gid, "role": role, "locked": role != "solution"}
        if any(m in cell.source for m in MARKERS):
            raise SourceError(f"{where}: a marker is left in the student text; put markers on lines of their own")
    nb.metadata["autograder"] = {"lab": lab}
    nb.metadata.pop("widgets", None)
    return nb


def code_cells(nb) -> list[tuple[int, str, bool]]:
    """(index, source, demo) for each code cell."""
    return [(i, c.source, is_demo(c)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
