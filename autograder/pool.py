"""The grader's side of the workers (see :mod:`autograder.sandbox.worker`); trusted code.

Each submission gets a fresh uid here, unique in this grading run, so nothing a
submission leaves behind (processes, files, kernel keys) belongs to the next one.

>>> with WorkerProcess(hide=[], keep=[]) as w:                    # doctest: +SKIP
...     result = w.run(cells=[(0, "x = 1")], probes=[], limits=Limits(), probe_timeouts=[])
"""
from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
import time

from .sandbox import Limits
from .sandbox.wire import FrameReader, WireError, frame

PRELOAD = ["torch", "numpy", "coursekit", "coursekit.checks", "autograder.sandbox.child"]

#: Submission uids: a random block of this run in [2**30, 2**31), counted up one per submission.
_UIDS = itertools.count(2**30 + secrets.randbelow(2**29))


def next_uid() -> int:
    """A uid no earlier submission of this run had (and, with high probability, of any concurrent run)."""
    return next(_UIDS)


class WorkerError(RuntimeError):
    """The worker process itself failed (a bug or a killed worker, not the student's code)."""


def worker_env() -> dict:
    """A minimal environment for workers: no tokens or secrets of the grader's shell."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
           "COURSEKIT_CHECKS_MODE": "grading"}
    if "PYTHONPATH" in os.environ:      # so a checkout that is not installed still imports
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


class WorkerProcess:
    """One ``python -m autograder.sandbox.worker`` process (and its fork server, with torch imported).

    ``keep``: paths the child may read besides the Python runtime (read-only); ``hide``: paths
    that must stay out of its reach even inside those.
    """

    def __init__(self, hide: list[str], keep: list[str], preload: list[str] = PRELOAD):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = worker_env()
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
        self.proc = subprocess.Popen([sys.executable, "-m", "autograder.sandbox.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/",
                                     start_new_session=True)
        self.reader = FrameReader(self.proc.stdout.fileno())
        self._send(frame({"hide": hide, "keep": keep, "preload": preload}))
        self.hello: dict | None = None

    def _send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerError(f"worker {self.proc.pid} is gone: {e}") from e

    def ready(self, timeout: float = 120.0) -> dict:
        """Wait for the worker to finish importing; returns its hello (with the isolation level)."""
        if self.hello is None:
            try:
                self.hello = self.reader.read(time.monotonic() + timeout)
            except WireError as e:
                raise WorkerError(f"worker {self.proc.pid} did not start: {e}") from e
        return self.hello

    def run(self, cells: list, probes: list, limits: Limits, probe_timeouts: list[float]) -> dict:
        """Grade one submission's cells and probes as a fresh uid; returns the worker's raw result.

        The result has ``cells``, ``probes`` (plain data from the child), ``attempts``,
        ``compute_s``, ``wall_s``, ``uid`` and ``protocol_error`` (``None`` unless the
        child broke the protocol, in which case no answer of it counts).
        """
        self.ready()
        payload = json.dumps({"cells": cells, "probes": probes}, allow_nan=False).encode()
        header = {"limits": limits.to_plain(), "probe_timeouts": [float(t) for t in probe_timeouts],
                  "cells": [i for i, _ in cells], "uid": next_uid(), "payload_bytes": len(payload)}
        self._send(frame(header) + payload)
        try:
            return self.reader.read(time.monotonic() + limits.timeout + 120)   # + teardown of restarts
        except WireError as e:
            self.close()
            raise WorkerError(f"worker {self.proc.pid} failed: {e}") from e

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
