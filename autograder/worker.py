"""A pre-forked grading worker: torch is imported once, each submission is a fork.

Started by the grader as ``python -m autograder.worker`` with a scrubbed
environment. It speaks frames (:mod:`autograder.wire`) on stdin/stdout:

1. config ``{"hide": [...], "keep": [...], "preload": [...]}`` -> ``{"ready": ..., "isolation": ...}``
2. per submission: a header ``{"limits": ..., "probe_timeouts": [...], "payload_bytes": n}``,
   then ``n`` raw bytes of payload (cells and probes, which the worker itself never
   parses), -> the result.

For each attempt it forks a *guard* (root, trusted) that enters new namespaces
and forks the *child* (PID 1 there, unprivileged) that runs student code. When a
cell or probe times out or crashes the child, only that item is charged: the
worker starts a fresh child that skips it and carries on with the rest.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time

from . import child as child_mod
from .sandbox import Limits, confine, die_with_parent, isolate, scrub_environ
from .wire import FrameReader, WireClosed, WireError, WireTimeout, write_frame

MAX_ATTEMPTS = 6


def _read_exact(fd: int, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise WireClosed("stdin closed in the middle of a payload")
        got += k
    return buf


def _exit_reason(status: int) -> tuple[str, str]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return "timeout", "the process used up its CPU-time limit"
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return "crash", f"the process was killed by signal {name}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if code >= 128:
        sig = code - 128
        if sig == signal.SIGXCPU:
            return "timeout", "the process used up its CPU-time limit"
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return "crash", f"the process was killed by signal {name}"
    return "crash", f"the process exited early with code {code} (sys.exit or os._exit in the code?)"


def _reap(pid: int, grace: float) -> int:
    """Wait up to ``grace`` seconds for ``pid`` to exit, then kill it; returns its wait status."""
    end = time.monotonic() + grace
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


class Worker:
    def __init__(self, config: dict):
        self.hide, self.keep = config["hide"], config["keep"]
        self.uid = 200_000 + os.getpid()     # one uid per worker (see Report.stats["uids"]): limits are not shared

    def attempt(self, payload: bytearray, skip: set, todo: list, limits: Limits,
                probe_timeouts: list, deadline: float, on_event) -> tuple | None:
        """Run one child. Returns ``None`` when it finished, else ``(kind, index, status, message)``."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # guard
            code = 70
            try:
                die_with_parent()
                os.close(r)
                devnull = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, w)
                os.closerange(w + 1, 65536)
                task = json.loads(bytes(payload))
                level = isolate(self.hide, self.keep, limits.tmp_mb)
                cpid = os.fork()
                if cpid == 0:
                    work = confine(self.uid, limits, level == "namespaces")
                    scrub_environ(work)
                    child_mod.run(task, w, skip, todo, limits.output_bytes, limits.answer_bytes)
                del task
                os.close(w)
                # On SIGUSR1 from the worker: kill the child. Waiting for it then also waits until
                # the kernel has killed every process in its PID namespace, so that none of them
                # still counts against the uid's process limit when the next attempt starts.
                signal.signal(signal.SIGUSR1, lambda *_: os.kill(cpid, signal.SIGKILL))
                _, status = os.waitpid(cpid, 0)
                code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            finally:
                os._exit(code)
        os.close(w)
        reader = FrameReader(r, limits.answer_bytes + 1024)
        current: tuple | None = ("setup", -1)
        item_deadline = min(deadline, time.monotonic() + limits.cell_timeout)
        failure = None
        try:
            while True:
                try:
                    msg = reader.read(min(deadline, item_deadline))
                except WireTimeout:
                    failure = (*current, "timeout", "the time limit ran out"
                               + (" (the whole submission's)" if time.monotonic() >= deadline else ""))
                    break
                except WireClosed:
                    status = _reap(pid, grace=2.0)
                    pid = None
                    failure = (*current, *_exit_reason(status))
                    break
                except WireError as e:
                    failure = (*current, "crash", f"the child sent a malformed message ({e})")
                    break
                if not isinstance(msg, dict):
                    failure = (*current, "crash", "the child sent a malformed message")
                    break
                ev, phase = msg.get("ev"), msg.get("phase")
                if ev == "done":
                    break
                if ev == "cell" and phase == "start":
                    current = ("cell", msg.get("i"))
                    item_deadline = time.monotonic() + limits.cell_timeout
                elif ev == "probe" and phase == "start":
                    j = msg.get("j")
                    current = ("probe", j)
                    t = probe_timeouts[j] if isinstance(j, int) and 0 <= j < len(probe_timeouts) else limits.probe_timeout
                    item_deadline = time.monotonic() + t
                elif phase == "end":
                    on_event(msg)
                    current = ("between", -1)
                    item_deadline = time.monotonic() + limits.cell_timeout
        finally:
            os.close(r)
            if pid is not None and failure is None:
                _reap(pid, grace=2.0)              # the child said "done" and exits; so does the guard
            elif pid is not None:
                try:
                    os.kill(pid, signal.SIGUSR1)   # the guard kills the child and waits for it
                except ProcessLookupError:
                    pass
                _reap(pid, grace=10.0)             # else SIGKILL: the child dies with it (PDEATHSIG)
        return failure

    def grade(self, header: dict, payload: bytearray) -> dict:
        limits = Limits(**header["limits"])
        probe_timeouts = header["probe_timeouts"]
        n_probes = len(probe_timeouts)
        cells: dict[int, dict] = {}
        probes: list = [None] * n_probes
        skip: set = set()
        compute = 0.0
        t0 = time.monotonic()
        deadline = t0 + limits.timeout

        def on_event(msg: dict) -> None:
            nonlocal compute
            compute += float(msg.get("t", 0.0)) if isinstance(msg.get("t"), (int, float)) else 0.0
            if msg.get("ev") == "cell" and isinstance(msg.get("i"), int):
                cells[msg["i"]] = {k: msg.get(k) for k in ("status", "message", "output")}
            elif msg.get("ev") == "probe" and isinstance(msg.get("j"), int) and 0 <= msg["j"] < n_probes:
                probes[msg["j"]] = {k: msg.get(k) for k in ("status", "message", "answer")}

        attempts = 0
        while True:
            todo = [j for j in range(n_probes) if probes[j] is None]
            attempts += 1
            failure = self.attempt(payload, skip, todo, limits, probe_timeouts, deadline, on_event)
            if failure is None:
                break
            kind, index, status, message = failure
            if kind == "cell":
                cells[index] = {"status": status, "message": message, "output": ""}
                skip.add(index)
            elif kind == "probe":
                probes[index] = {"status": status, "message": message, "answer": None}
            else:
                cells[-1] = {"status": status, "message": f"between items: {message}", "output": ""}
            if time.monotonic() >= deadline or attempts >= MAX_ATTEMPTS or kind not in ("cell", "probe"):
                break
        for j in range(n_probes):
            if probes[j] is None:
                why = ("the submission's time limit ran out first" if time.monotonic() >= deadline
                       else "the child kept failing before it got here")
                probes[j] = {"status": "timeout" if "time" in why else "crash", "message": f"not run: {why}",
                             "answer": None}
        payload[:] = bytes(len(payload))   # forget this student's code before the next fork
        return {"cells": {str(k): v for k, v in cells.items()}, "probes": probes, "attempts": attempts,
                "compute_s": compute, "wall_s": time.monotonic() - t0}


def main() -> None:
    die_with_parent()           # a killed grader takes its workers (and their children) with it
    out = os.dup(1)
    os.dup2(2, 1)               # stray prints must not corrupt the protocol
    reader = FrameReader(0)
    config = reader.read(None)
    for name in config.get("preload", []):
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001
            print(f"autograder worker: could not preload {name}: {e}", file=sys.stderr)
    from .sandbox import capabilities
    worker = Worker(config)
    write_frame(out, {"ready": True, "pid": os.getpid(), "isolation": capabilities()["level"]})
    while True:
        try:
            header = reader.read(None)
        except WireClosed:
            return
        payload = bytearray(reader.buf[:header["payload_bytes"]])
        del reader.buf[:header["payload_bytes"]]
        if len(payload) < header["payload_bytes"]:
            payload += _read_exact(0, header["payload_bytes"] - len(payload))
        try:
            result = worker.grade(header, payload)
        except Exception as e:  # noqa: BLE001 - report and keep serving
            result = {"internal_error": f"{type(e).__name__}: {e}"}
        write_frame(out, result)


if __name__ == "__main__":
    main()
