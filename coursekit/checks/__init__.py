"""Self-checks for the labs, and the test cases the autograder grades with.

A lab's test cells declare cases; ``check`` runs the visible ones right away in
the student's notebook and prints what passed, what failed and why:

>>> from coursekit.checks import use_lab, case, check
>>> use_lab("demo")                                               # doctest: +SKIP
>>> case("q1", "doubles a tensor", points=1, fn="double",
...      inputs=lambda g: (torch.randn(3, generator=g),))         # doctest: +SKIP
>>> check("q1")                                                   # doctest: +SKIP
q1: 1/1 points
  ✓ doubles a tensor (1 pt)

The expected values of visible cases come from ``labs/checks/<lab>.json``, which
``python -m autograder assign`` computes from the instructor's solution. Hidden
cases (declared with ``hidden=True`` inside ``### BEGIN HIDDEN TESTS``) never
reach the student's copy; the autograder runs every case in a sandbox on fresh
random inputs instead.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .compare import Mismatch, compare as compare_values, nonfinite
from .hints import slip
from .plain import decode, encode
from .plain import Seed
from .probe import NotDefined, Step, call, get, named, ref, run_steps

__all__ = ["use_lab", "require_setup", "case", "check", "run_check", "needs", "call", "get", "ref", "named", "Seed",
           "Case", "CheckResult", "written", "Written"]

#: "student" (run self-checks), "collect" (the autograder reads the cases) or "grading" (sandboxed child).
MODE = os.environ.get("COURSEKIT_CHECKS_MODE", "student")
CHECKS_DIR_ENV = "COURSEKIT_CHECKS_DIR"

_lab: str | None = None
_cases: dict[str, "Case"] = {}
_written: dict[str, "Written"] = {}
_hidden_block = False   # set by the autograder while it runs a hidden-tests block


@dataclass
class Case:
    """One test case: a probe (built from seeded random inputs) and its points."""
    lab: str
    question: str
    name: str
    points: float
    fn: str | None = None
    inputs: Callable[[torch.Generator], Any] | None = None
    script: Callable[[torch.Generator], list] | None = None
    compare: Callable[[list, list], str | None] | None = None
    rtol: float = 1e-5
    atol: float = 1e-7
    timeout: float | None = None
    hidden: bool = False
    names: tuple[str, ...] | None = None    # names of a returned tuple's items, for messages ("dW1", not [1])

    @property
    def key(self) -> str:
        return f"{self.question}/{self.name}"

    def seed(self, run_seed: int | None = None) -> int:
        """The seed of this case's inputs: fixed for self-checks, fresh per grading run."""
        base = zlib.crc32(f"{self.lab}/{self.key}".encode())
        return base if run_seed is None else (base ^ run_seed) % (2**63)

    def steps(self, seed: int) -> list[Step]:
        """Build this case's probe from a ``torch.Generator`` seeded with ``seed``."""
        g = torch.Generator().manual_seed(seed)
        if self.script is not None:
            steps = list(self.script(g))
        else:
            args = self.inputs(g) if self.inputs is not None else ()
            steps = [call(self.fn, *(args if isinstance(args, tuple) else (args,)))]
        if not steps or not all(isinstance(s, Step) for s in steps):
            raise TypeError(f"case {self.key!r}: script must return a list of call(...)/get(...) steps")
        return steps

    def judge(self, expected: list, actual: list | None, error: str | None,
              steps: list[Step]) -> Mismatch | None:
        """Compare decoded results step by step; ``None`` means the case passed."""
        if error is not None:
            return Mismatch("", error)
        if len(actual) != len(expected):
            return Mismatch("", f"expected {len(expected)} results, got {len(actual)}")
        bad = nonfinite(expected, actual)      # before any custom compare, which NaN might slip through
        if bad is not None:
            return bad
        if self.compare is not None:
            reason = self.compare(expected, actual)
            return None if reason is None else Mismatch("", str(reason))
        for i, (e, a) in enumerate(zip(expected, actual)):
            where = steps[i].describe() if len(steps) == 1 else f"step {i} ({steps[i].describe()})"
            m = self._compare_step(e, a, where)
            if m:
                return m
        return None

    def _compare_step(self, e: Any, a: Any, where: str) -> Mismatch | None:
        """Compare one step's result; name tuple items by ``names`` and add a hint for common slips."""
        pairs = [(where, e, a)]
        if (self.names and isinstance(e, (tuple, list)) and isinstance(a, (tuple, list))
                and len(e) == len(a) == len(self.names)):
            pairs = [(f"{n} of {where}", ei, ai) for n, ei, ai in zip(self.names, e, a)]
        for label, ei, ai in pairs:
            m = compare_values(ei, ai, self.rtol, self.atol, label)
            if m is None:
                continue
            hint = slip(ei, ai)
            if hint:
                m.reason = f"{m.reason}; hint: {hint}"
            return m
        return None


SETUP_FIRST = "run the first cell of the lab (it calls use_lab), then this cell again"


def use_lab(name: str) -> None:
    """Start a lab: forget cases from earlier labs. Call it once at the top of a lab."""
    global _lab
    if not isinstance(name, str) or not name:
        raise ValueError(f"use_lab needs the lab's name, such as '03_optimizers'; got {name!r}")
    _lab = name
    _cases.clear()
    _written.clear()


def require_setup(lab: str) -> None:
    """Stop a self-check cell, with a hint, when the lab's first cell has not run yet.

    ``python -m autograder assign`` puts this call at the top of every test cell of
    the student's copy, so that running one too early says what to do instead of
    failing with ``NameError: name 'case' is not defined``.
    """
    if _lab != lab:
        raise RuntimeError(f"this is a self-check of lab {lab}: {SETUP_FIRST}") from None


class needs(contextlib.AbstractContextManager):
    """Run a demo only once the functions it uses are written.

    >>> def adam_step(*args):
    ...     raise NotImplementedError()
    >>> with needs("adam_step"):
    ...     adam_step(1.0)
    (demo skipped: write adam_step first, run its cell, then run this cell again)

    Inside the block, your unwritten functions raise ``NotImplementedError``; the
    block stops there quietly and says which functions are still to write, so
    "Run All" on a fresh lab reaches the end.
    """

    def __init__(self, *names: str):
        self.names = names
        self._namespace = inspect.currentframe().f_back.f_globals

    def __exit__(self, kind, error, tb) -> bool:
        if kind is None or not issubclass(kind, (NotImplementedError, NotDefined)):
            return False
        todo = [n for n in self.names if _unwritten(self._namespace.get(n))] or list(self.names)
        if isinstance(error, NotDefined) or not todo:
            todo = [error.name] if isinstance(error, NotDefined) else [_raiser(tb)]
        print(f"(demo skipped: write {', '.join(todo)} first, run {'its cell' if len(todo) == 1 else 'their cells'}, "
              "then run this cell again)")
        return True


def _unwritten(obj: Any) -> bool:
    """True for a missing name or a function whose body still raises NotImplementedError."""
    if obj is None:
        return True
    code = getattr(obj, "__code__", None)
    if code is None and isinstance(obj, type):     # a class: look at its methods
        return any(_unwritten(m) for m in vars(obj).values() if inspect.isfunction(m))
    return code is not None and "NotImplementedError" in code.co_names


def _raiser(tb) -> str:
    """The qualified name of the function that raised, from the innermost frame."""
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_qualname if tb is not None else "the function above"


def case(question: str, name: str, points: float, *, fn: str | None = None,
         inputs: Callable | None = None, script: Callable | None = None,
         compare: Callable | None = None, rtol: float = 1e-5, atol: float = 1e-7,
         timeout: float | None = None, hidden: bool = False, names: tuple[str, ...] | None = None) -> Case:
    """Declare a test case worth ``points`` for ``question``.

    Either ``fn`` and ``inputs`` (a function of a ``torch.Generator`` returning the
    positional arguments), or ``script`` (returning a list of ``call``/``get`` steps).
    ``compare(expected, actual)`` may replace the default element-wise comparison;
    it returns ``None`` when the results are acceptable, else the reason.
    ``names`` names the items of a returned tuple in messages, e.g.
    ``names=("loss", "dW1", "db1")``; a wrong tensor also gets a hint for common
    slips (see :mod:`coursekit.checks.hints`).
    """
    if _lab is None:
        raise RuntimeError(SETUP_FIRST)
    if (fn is None) == (script is None):
        raise ValueError(f"case {question}/{name}: give either fn= and inputs=, or script=")
    if not (isinstance(points, (int, float)) and points >= 0):
        raise ValueError(f"case {question}/{name}: points must be a number >= 0; got {points!r}")
    c = Case(_lab, question, name, float(points), fn, inputs, script, compare, rtol, atol,
             timeout, hidden or _hidden_block, tuple(names) if names else None)
    _cases[c.key] = c
    return c


@dataclass
class Written:
    """A free-text question the instructor marks by hand (see :func:`written`)."""
    lab: str
    question: str
    points: float
    rubric: str
    cell: str            # grade id of the (markdown) cell that holds the answer

    def to_plain(self) -> dict:
        return {"question": self.question, "points": self.points, "rubric": self.rubric, "cell": self.cell}


def written(question: str, points: float, rubric: str, cell: str | None = None) -> Written:
    """Declare a written question worth ``points``, marked by hand against ``rubric``.

    The answer is the cell with id ``cell`` (default ``"<question>-answer"``), a
    markdown cell whose text is inside ``### BEGIN SOLUTION`` / ``### END SOLUTION``
    in the instructor's source. The autograder collects the answers into one file
    per question and takes the marks back from a CSV.

    >>> use_lab("demo"); w = written("w1", 2, "2: names both effects; 1: one")   # doctest: +SKIP
    """
    if _lab is None:
        raise RuntimeError("call use_lab('<lab name>') before declaring written questions")
    if not (isinstance(question, str) and question):
        raise ValueError(f"written: question must be a non-empty string such as 'w1'; got {question!r}")
    if not (isinstance(points, (int, float)) and not isinstance(points, bool) and points > 0):
        raise ValueError(f"written {question}: points must be a number > 0; got {points!r}")
    if not (isinstance(rubric, str) and rubric.strip()):
        raise ValueError(f"written {question}: rubric must say how the points are given; got {rubric!r}")
    w = Written(_lab, question, float(points), rubric, cell or f"{question}-answer")
    _written[question] = w
    if MODE == "student":
        print(f"{question} ({points:g} point{'s' if points != 1 else ''}): a written answer, marked by the "
              f"instructor. Write it in the cell {w.cell!r} below.")
    return w


def written_questions() -> list[Written]:
    """All written questions declared so far in the current lab, in order."""
    return list(_written.values())


def cases() -> list[Case]:
    """All cases declared so far in the current lab, in order."""
    return list(_cases.values())


@dataclass
class CheckResult:
    """What ``check`` found; true when every visible case passed."""
    question: str
    score: float
    max_score: float
    lines: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.score == self.max_score

    def __repr__(self) -> str:
        return "\n".join([f"{self.question}: {self.score:g}/{self.max_score:g} points on the visible checks "
                          "(the autograder also runs hidden tests)", *self.lines])


def checks_dir() -> Path:
    """Where the expected values of visible cases live (``labs/checks``)."""
    env = os.environ.get(CHECKS_DIR_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / "checks", Path.cwd() / "labs" / "checks",
                   Path(__file__).resolve().parents[2] / "labs" / "checks"]   # coursekit/checks/ -> the repo
    for p in candidates:
        if p.is_dir():
            return p
    raise FileNotFoundError("cannot find the labs/checks folder; open the lab from the course's "
                            f"labs/ folder or set {CHECKS_DIR_ENV}")


def _expected(lab: str) -> dict:
    path = checks_dir() / f"{lab}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the instructor runs `python -m autograder assign`")
    return json.loads(path.read_text())["cases"]


def _error_text(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    line = f" (line {last[0].lineno} of {last[0].name})" if last else ""
    return f"raised {type(e).__name__}: {e}{line}"


def check(question: str) -> None:
    """Run the visible cases of ``question`` on your functions and print what passed and why not."""
    if MODE == "collect":
        return None
    if MODE == "grading":
        print(f"(self-check {question} skipped: the autograder runs its own tests)")
        return None
    print(repr(run_check(question, inspect.currentframe().f_back.f_globals)))


def run_check(question: str, namespace: dict, declared: list[Case] | None = None) -> CheckResult:
    """Like :func:`check`, but returns the :class:`CheckResult` instead of printing it.

    ``declared`` defaults to the cases of the current lab (see :func:`use_lab`).
    """
    declared = list(_cases.values()) if declared is None else declared
    if not declared:
        raise RuntimeError("run the lab's first cell (it calls use_lab) and the test cell before check()")
    mine = [c for c in declared if c.question == question and not c.hidden]
    if not mine:
        known = sorted({c.question for c in declared})
        raise ValueError(f"no self-checks for question {question!r}; run its test cell first. "
                         f"Questions with checks: {known}")
    ns = namespace
    stored = _expected(mine[0].lab)
    result = CheckResult(question, 0.0, sum(c.points for c in mine))
    for c in mine:
        pts = f"({c.points:g} pt{'s' if c.points != 1 else ''})"
        if c.key not in stored:
            result.lines.append(f"  ? {c.name} {pts}: no stored expectation; the instructor reruns assign")
            continue
        steps, actual, error = [], None, None
        here = os.getcwd()
        try:
            steps = c.steps(c.seed())      # inputs may already call the student's functions
            with tempfile.TemporaryDirectory(prefix="coursekit-check-") as scratch:
                os.chdir(scratch)          # files a probe writes (checkpoints) vanish afterwards
                actual = decode(encode(run_steps(ns, steps)))
        except NotImplementedError as e:
            error = f"not implemented yet: {_raiser(e.__traceback__)} raises NotImplementedError"
        except NotDefined as e:
            error = f"not implemented yet: {e.name} is not defined; write its cell and run it"
        except Exception as e:  # noqa: BLE001 - any failure of student code is reported
            error = _error_text(e)
        finally:
            os.chdir(here)
        m = c.judge(decode(stored[c.key]), actual, error, steps)
        if m is None:
            result.score += c.points
            result.lines.append(f"  ✓ {c.name} {pts}")
        else:
            result.lines.append(f"  ✗ {c.name} {pts}\n    " + m.full().replace("\n", "\n    "))
    return result
