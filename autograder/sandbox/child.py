"""The sandboxed child: run a submission's cells, then answer the judge's probes.

Runs as PID 1 of its own namespaces, as an unprivileged user, under rlimits
(see :mod:`autograder.sandbox.jail`). It reports through one pipe, in plain data:

- ``{"ev": "cell", "i": k, "phase": "start"}`` and ``... "phase": "end", "status": ...}``
- ``{"ev": "probe", "j": k, "phase": "start"}`` and ``... "phase": "end", "answer": ...}``
- ``{"ev": "done"}``

A failing cell does not stop the next one. Student code can tamper with this
module in its own process, but that cannot earn points: the judge computes the
right answers elsewhere, on inputs the student has not seen before.
"""
from __future__ import annotations

import builtins
import io
import os
import re
import sys
import time
import traceback

from coursekit.checks.plain import PlainDataError, encode
from coursekit.checks.probe import Step, run_steps
from .wire import frame, write_all

_MAGIC = re.compile(r"^(\s*)[%!].*$", re.M)
# Bound before any student code runs: a cell that patches time.perf_counter must not make the "t" of
# the frames malformed (a negative time breaks the protocol). The worker times items itself anyway.
_clock = time.perf_counter
try:  # IPython reads a cell as Python plus magics; the fork server imports it once for every child
    from IPython.core.inputtransformer2 import TransformerManager as _IPythonReader
except ImportError:  # pragma: no cover - the grader's environment installs IPython with ipykernel
    _IPythonReader = None


class CappedText(io.TextIOBase):
    """A text stream that keeps only the first ``cap`` characters written to it."""

    def __init__(self, cap: int):
        self.cap, self.parts, self.size, self.dropped = cap, [], 0, 0

    def write(self, s) -> int:
        s = str(s)
        room = self.cap - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def writable(self) -> bool:
        return True

    def text(self) -> str:
        extra = f"\n[... {self.dropped} more characters of output dropped]" if self.dropped else ""
        return "".join(self.parts) + extra


def classify(e: BaseException) -> str:
    """Status of an exception: memory_limit for failed allocations, else error."""
    if isinstance(e, MemoryError):
        return "memory_limit"
    text = str(e)[:500].lower()
    if isinstance(e, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text):
        return "memory_limit"
    return "error"


def describe(e: BaseException, filename_prefix: str = "<cell") -> str:
    """``Type: message (line n)``, naming the line of the student's code where it happened."""
    line = ""
    for fr in traceback.extract_tb(e.__traceback__) if e.__traceback__ else []:
        if fr.filename.startswith(filename_prefix):
            line = f" (line {fr.lineno})"
    if isinstance(e, SystemExit):
        return f"SystemExit: {e.code!r}{line} (the code called sys.exit; the grader went on)"
    text = f"{type(e).__name__}: {e}"
    return (text if len(text) < 2000 else text[:2000] + "...") + line


def as_python(src: str) -> str:
    """A cell as IPython runs it: Python, with magics and shell escapes turned into calls on
    ``get_ipython()`` (see :class:`NoShell`). IPython's own transformer reads the cell, so honest
    code it accepts is never mangled by a line rule (black puts a wrapped condition's ``!=`` at
    the start of a line, which is no shell escape)."""
    if _IPythonReader is None:
        return _MAGIC.sub(lambda m: m.group(1) + "pass", src)
    return _IPythonReader().transform_cell(src)


class NoShell:
    """What a cell's ``get_ipython()`` returns in the sandbox: no shell, no pip, no files written by
    magics. Timing magics still run their code once (``%time model = fit()`` defines ``model``);
    every other magic does nothing."""

    RUNS_ITS_CODE = {"time", "timeit", "prun", "capture"}

    def __init__(self, ns: dict):
        self._ns = ns

    def _run(self, code: str) -> None:
        exec(compile(as_python(code), "<magic>", "exec"), self._ns)

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1):
        if name in self.RUNS_ITS_CODE and line.strip() and not line.lstrip().startswith("-"):
            self._run(line)  # (with options, e.g. "%timeit -n 10 f()", it does nothing)
        return None

    def run_cell_magic(self, name: str, line: str, cell: str):
        if name in self.RUNS_ITS_CODE:
            self._run(cell)
        return None

    def system(self, cmd: str) -> None:
        return None

    def getoutput(self, cmd: str, split: bool = True, depth: int = 0) -> list:
        return []


class Child:
    def __init__(self, out_fd: int, output_cap: int, answer_cap: int):
        self.fd, self.output_cap, self.answer_cap = out_fd, output_cap, answer_cap
        self.pid = os.getpid()

    def send(self, msg: dict) -> None:
        if os.getpid() != self.pid:   # a forked copy of the child must not speak
            os._exit(0)
        data = frame(msg)
        if len(data) > self.answer_cap:
            raise PlainDataError(f"answer of {len(data)} bytes is over the cap of {self.answer_cap}")
        write_all(self.fd, data)

    def run_cell(self, i: int, src: str, ns: dict) -> dict:
        out = CappedText(self.output_cap)
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        t = _clock()
        status, message = "ok", ""
        try:
            ns.setdefault("get_ipython", lambda: NoShell(ns))
            exec(compile(as_python(src), f"<cell {i}>", "exec"), ns)
        except BaseException as e:  # noqa: BLE001 - SystemExit too: the next cell still runs
            status, message = classify(e), describe(e)
        finally:
            sys.stdout, sys.stderr = old
        return {"ev": "cell", "i": i, "phase": "end", "status": status, "message": message,
                "output": out.text(), "t": _clock() - t}

    def run_probe(self, j: int, steps_plain: list, ns: dict) -> dict:
        out = CappedText(self.output_cap)
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        t = _clock()
        try:
            steps = [Step.from_plain(s) for s in steps_plain]
            answer, status, message = encode(run_steps(ns, steps)), "ok", ""
        except NotImplementedError:
            answer, status, message = None, "error", "not implemented (the function raises NotImplementedError)"
        except PlainDataError as e:
            answer, status, message = None, "error", f"the result cannot be graded: {e}"
        except BaseException as e:  # noqa: BLE001
            answer, status, message = None, classify(e), describe(e)
        finally:
            sys.stdout, sys.stderr = old
        return {"ev": "probe", "j": j, "phase": "end", "status": status, "message": message,
                "answer": answer, "t": _clock() - t}


def run(task: dict, out_fd: int, skip: set, todo: list, output_cap: int, answer_cap: int) -> None:
    """Run the cells (except ``skip``) and then the probes in ``todo``; never returns."""
    import torch
    torch.set_num_threads(1)
    child = Child(out_fd, output_cap, answer_cap)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        for i, src in task["cells"]:
            if i in skip:
                continue
            child.send({"ev": "cell", "i": i, "phase": "start"})
            child.send(child.run_cell(i, src, ns))
        for j in todo:
            child.send({"ev": "probe", "j": j, "phase": "start"})
            msg = child.run_probe(j, task["probes"][j], ns)
            try:
                child.send(msg)
            except (PlainDataError, ValueError) as e:
                child.send({**msg, "answer": None, "status": "error", "message": f"the result cannot be graded: {e}"})
        child.send({"ev": "done"})
    finally:
        os._exit(0)
