"""A grading worker: the grader's contact with one fork server, and the judge of the child's protocol.

Started by the grader as ``python -m autograder.sandbox.worker`` (root, scrubbed
environment). It speaks frames (:mod:`autograder.sandbox.wire`) on stdin/stdout:

1. config ``{"hide": [...], "keep": [...], "preload": [...]}`` -> ``{"ready": ..., "isolation": ...}``
2. per submission: a header ``{"limits": ..., "probe_timeouts": [...], "cells": [...], "uid": n,
   "payload_bytes": n}``, then ``n`` raw bytes of payload (cells and probes, which the worker
   never parses), -> the result.

Before it reads anything else it forks the fork server (:mod:`.zygote`), which
therefore never sees a submission. Per attempt the worker makes a cgroup
(:mod:`.cgroups`), hands the fork server the submission as a sealed memfd, and
reads the child's frames in the one order the protocol allows: ``start`` and
``end`` of each cell, then of each probe, then ``done``. Each item's deadline is
fixed when it starts. A frame out of order or off the schema is a protocol error,
and then nothing of that submission counts. When a cell or probe times out or
crashes the child, only that item is charged: a fresh child skips it and carries on.
"""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import time

from . import cgroups, jail
from .limits import Limits
from .wire import (FrameReader, WireClosed, WireError, WireTimeout, check_child_frame, frame, loads, write_all,
                   write_frame)

MAX_ATTEMPTS = 6


class ProtocolError(Exception):
    """The child broke the protocol: nothing it said in this submission counts."""


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
    return "crash", f"the process exited early with code {code} (sys.exit or os._exit in the code?)"


def _sealed_memfd(payload: bytes | bytearray) -> int:
    """The submission in a memory file that nobody can change any more."""
    fd = os.memfd_create("submission", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_SEAL)
    return fd


class Worker:
    def __init__(self, sock: socket.socket, tree: cgroups.Tree | None):
        self.sock, self.tree = sock, tree

    def _ask_fork(self, req: dict, fds: list[int]) -> int:
        socket.send_fds(self.sock, [frame(req)], fds)
        reply = loads(self.sock.recv(4096).partition(b"\n")[2])
        return reply["pid"]

    def attempt(self, memfd: int, uid: int, items: list[tuple[str, int]], skip: set, todo: list,
                limits: Limits, probe_timeouts: list, deadline: float, attempt_no: int, on_event) -> tuple | None:
        """Run one child. Returns ``None`` when it finished, else ``(kind, index, status, message)``."""
        group = self.tree.create(f"u{uid}-{attempt_no}", limits) if self.tree else None
        er, ew = os.pipe()
        sr, sw = os.pipe()
        procs = group.procs_files() if group else []
        req = {"uid": uid, "limits": limits.to_plain(), "skip": sorted(skip), "todo": todo}
        try:
            gpid = self._ask_fork(req, [memfd, ew, sw, *procs])
        except BaseException:
            for fd in (er, sr):
                os.close(fd)
            if group is not None:
                group.remove()
            raise
        finally:
            for fd in (ew, sw, *procs):
                os.close(fd)
        events = FrameReader(er, limits.answer_bytes + 4096)
        current: tuple = ("setup", -1)
        k, started = 0, False
        item_deadline = min(deadline, time.monotonic() + limits.cell_timeout)
        failure = None
        try:
            while True:
                try:
                    msg = events.read(item_deadline)
                    ev, phase = check_child_frame(msg)
                except WireTimeout:
                    failure = (*current, "timeout", "the time limit ran out"
                               + (" (the whole submission's)" if time.monotonic() >= deadline else ""))
                    break
                except WireClosed:
                    failure = (*current, *self._died(sr, gpid, group))
                    break
                except WireError as e:
                    raise ProtocolError(str(e)) from None
                if k == len(items):
                    if ev != "done":
                        raise ProtocolError(f"expected 'done', got {ev!r} {phase!r}")
                    break
                kind, index = items[k]
                key = "i" if kind == "cell" else "j"
                if ev != kind or msg.get(key) != index or phase != ("end" if started else "start"):
                    raise ProtocolError(f"expected {kind} {index} to {'end' if started else 'start'}, got "
                                        f"{ev!r} {msg.get(key, '')!r} {phase!r}")
                if not started:
                    current, started = (kind, index), True
                    item_start = time.monotonic()
                    budget = probe_timeouts[index] if kind == "probe" else limits.cell_timeout
                    item_deadline = min(deadline, item_start + budget)   # fixed until this item ends
                else:
                    # The item's time as measured here, from its start frame to its end frame: the child's own
                    # "t" is never read (a patched clock reported 1e308 s and broke the gradebook's JSON).
                    on_event(msg, time.monotonic() - item_start)
                    current, started, k = ("between", -1), False, k + 1
                    item_deadline = min(deadline, time.monotonic() + limits.cell_timeout)
        finally:
            os.close(er)
            self._end(sr, gpid, group, kill=failure is not None or sys.exc_info()[0] is not None)
        return failure

    def _died(self, sr: int, gpid: int, group) -> tuple[str, str]:
        """Why the child closed its pipe, from the guard's report and the cgroup's counters."""
        try:
            status = FrameReader(sr, 4096).read(time.monotonic() + 10)["status"]
        except (WireError, KeyError, TypeError):
            status = None
        if group is not None and group.out_of_memory():
            return "memory_limit", "the submission's processes used more memory than allowed"
        if status is None or type(status) is not int:
            return "crash", "the process ended without a report"
        return _exit_reason(status)

    def _end(self, sr: int, gpid: int, group, kill: bool) -> None:
        """Make sure nothing of this attempt is left, then remove its cgroup."""
        if kill:
            if group is not None:
                group.kill_all()
            try:
                os.kill(gpid, signal.SIGUSR1)    # the guard kills the child, waits for its namespace
            except ProcessLookupError:
                pass
        try:
            FrameReader(sr, 4096).read(time.monotonic() + 10)
        except WireTimeout:
            try:
                os.kill(gpid, signal.SIGKILL)    # the child dies with it (PDEATHSIG)
            except ProcessLookupError:
                pass
        except WireError:
            pass
        os.close(sr)
        if group is not None:
            group.remove()

    def grade(self, header: dict, payload: bytearray) -> dict:
        limits = Limits(**header["limits"])
        probe_timeouts = header["probe_timeouts"]
        cell_ids = header["cells"]
        uid = header["uid"]
        n_probes = len(probe_timeouts)
        cells: dict[int, dict] = {}
        probes: list = [None] * n_probes
        skip: set = set()
        compute = 0.0
        t0 = time.monotonic()
        deadline = t0 + limits.timeout

        def on_event(msg: dict, seconds: float) -> None:
            nonlocal compute
            compute += seconds
            if msg["ev"] == "cell":
                cells[msg["i"]] = {k: msg[k] for k in ("status", "message", "output")}
            else:
                probes[msg["j"]] = {k: msg[k] for k in ("status", "message", "answer")}

        memfd = _sealed_memfd(payload)
        payload[:] = bytes(len(payload))
        attempts, protocol = 0, None
        try:
            while True:
                todo = [j for j in range(n_probes) if probes[j] is None]
                items = [("cell", i) for i in cell_ids if i not in skip] + [("probe", j) for j in todo]
                attempts += 1
                try:
                    failure = self.attempt(memfd, uid, items, skip, todo, limits, probe_timeouts, deadline,
                                           attempts, on_event)
                except ProtocolError as e:
                    protocol = str(e)
                    break
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
        finally:
            os.close(memfd)
        if protocol is not None:      # nothing this child said can be trusted, earlier answers included
            why = f"the child broke the grading protocol ({protocol[:300]}); no answer of this submission counts"
            probes = [{"status": "crash", "message": why, "answer": None}] * n_probes
            cells[-1] = {"status": "crash", "message": why, "output": ""}
        for j in range(n_probes):
            if probes[j] is None:
                why = ("the submission's time limit ran out first" if time.monotonic() >= deadline
                       else "the child kept failing before it got here")
                probes[j] = {"status": "timeout" if "time" in why else "crash", "message": f"not run: {why}",
                             "answer": None}
        return {"cells": {str(k): v for k, v in cells.items()}, "probes": probes, "attempts": attempts,
                "compute_s": compute, "wall_s": time.monotonic() - t0, "uid": uid,
                "protocol_error": protocol}


def main() -> None:
    jail.die_with_parent()      # a killed grader takes its workers (and their children) with it
    out = os.dup(1)
    os.dup2(2, 1)               # stray prints must not corrupt the protocol
    reader = FrameReader(0)
    config = reader.read(None)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zpid = os.fork()
    if zpid == 0:               # the fork server: forked before any submission was read
        try:
            mine.close()
            os.close(out)
            from . import zygote
            zygote.serve(theirs, config)
        finally:
            os._exit(0)
    theirs.close()
    hello = FrameReader(mine.fileno()).read(time.monotonic() + 300)
    mine.settimeout(60)         # a fork takes milliseconds; a silent fork server is a dead one
    if hello.get("root"):
        try:
            os.rmdir(hello["root"])    # the fork server's mount point, empty out here
        except OSError:
            pass
    missing = list(hello.get("missing", []))
    tree = cgroups.find(f"autograder-{os.getpid()}")
    if isinstance(tree, str):
        missing.append(f"cgroups: {tree}")
        tree = None
    worker = Worker(mine, tree)
    try:
        write_frame(out, {"ready": True, "pid": os.getpid(), "isolation": jail.describe_level(missing),
                          "missing": missing})
        while True:
            try:
                header = reader.read(None)
            except WireClosed:
                return
            n = header["payload_bytes"]
            payload = bytearray(reader.buf[:n])
            del reader.buf[:n]
            if len(payload) < n:
                payload += _read_exact(0, n - len(payload))
            try:
                result = frame(worker.grade(header, payload))
            except Exception as e:  # noqa: BLE001 - report and keep serving
                result = frame({"internal_error": f"{type(e).__name__}: {e}"})
                if os.waitpid(zpid, os.WNOHANG) != (0, 0):   # the fork server is gone: so is this worker,
                    write_all(out, result)                   # and the grader starts a fresh one
                    return
            write_all(out, result)
    finally:
        mine.close()
        if tree is not None:
            tree.remove()
        try:
            os.waitpid(zpid, 0)
        except ChildProcessError:
            pass


if __name__ == "__main__":
    main()
