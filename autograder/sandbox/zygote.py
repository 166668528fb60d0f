"""The pristine fork server: torch imported once, a fresh fork for every attempt.

The worker forks this process *before* it reads any submission, so the fork
server's memory never holds a student's code, answers or output. It imports the
preloaded modules, moves into the allow-list root (:func:`jail.build_root`),
builds the seccomp filter, and then serves requests on a Unix socket:

    request  {"uid": ..., "limits": {...}, "skip": [...], "todo": [...]}
             + file descriptors: the submission (a sealed memfd), the event pipe,
               the status pipe, and the cgroup.procs files to join
    reply    {"pid": <guard pid>}

For each request it forks a *guard* (root) that joins the cgroups, enters new
namespaces and forks the *child* (PID 1 there). Only the child reads the
submission, after it dropped root; the guard reports the child's exit status.
"""
from __future__ import annotations

import importlib
import os
import signal
import socket
import sys

from . import jail
from .child import run as run_child
from .limits import Limits
from .wire import frame, loads, write_frame

MAX_FDS = 8


def _reap(*_) -> None:
    """Collect finished guards (so their CPU time counts in the grader's rusage)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _only_fds(keep: list[int]) -> None:
    """Close every file descriptor except ``keep``; 0, 1 and 2 become /dev/null."""
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(devnull, fd)
    keep = sorted(set(keep) | {0, 1, 2})
    lo = 3
    for fd in keep:
        if fd >= lo:
            os.closerange(lo, fd)
            lo = fd + 1
    os.closerange(lo, 65536)


def _read_payload(fd: int) -> bytes:
    size, parts, off = os.fstat(fd).st_size, [], 0
    while off < size:
        chunk = os.pread(fd, min(1 << 22, size - off), off)
        if not chunk:
            break
        parts.append(chunk)
        off += len(chunk)
    return b"".join(parts)


def child_main(req: dict, memfd: int, events: int, seccomp_filter, jailed: bool) -> None:
    """PID 1 of the attempt's namespaces: confine, then read the submission and run it."""
    limits = Limits(**req["limits"])
    work = jail.confine(req["uid"], limits, jailed)
    jail.scrub_environ(work)
    if seccomp_filter is not None:
        seccomp_filter.load()
    task = loads(_read_payload(memfd))     # the first time this process tree sees the submission
    os.close(memfd)
    run_child(task, events, set(req["skip"]), req["todo"], limits.output_bytes, limits.answer_bytes)


def guard(req: dict, fds: list[int], seccomp_filter, jailed: bool) -> None:
    """Join the cgroups, enter namespaces, fork the child, report its exit status; never returns."""
    code = 70
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        jail.die_with_parent()
        memfd, events, status, *procs = fds
        if jailed:
            jail.enter_namespaces()
        cpid = os.fork()
        if cpid == 0:
            try:
                jail.die_with_parent()    # at once (and again in confine, after setuid clears it)
                os.close(status)
                for fd in procs:          # "0" is this process; its children follow it. The guard stays
                    os.write(fd, b"0")    # outside, so that killing the group never orphans the child.
                    os.close(fd)
                child_main(req, memfd, events, seccomp_filter, jailed)
            finally:
                os._exit(70)
        for fd in (memfd, events, *procs):
            os.close(fd)
        # On SIGUSR1 from the worker: kill the child. Waiting for it then also waits until the kernel
        # has killed every process in its PID namespace.
        signal.signal(signal.SIGUSR1, lambda *_: os.kill(cpid, signal.SIGKILL))
        _, st = os.waitpid(cpid, 0)
        write_frame(status, {"status": st})
        code = 0
    finally:
        os._exit(code)


def serve(sock: socket.socket, config: dict) -> None:
    """Preload, jail this process, then fork a guard per request until the socket closes."""
    jail.die_with_parent()
    jail.become_subreaper()       # an orphan of an attempt is reaped here, never left as a zombie
    os.environ["COURSEKIT_CHECKS_MODE"] = "grading"
    problems = []
    for name in config.get("preload", []):
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001
            print(f"autograder fork server: could not preload {name}: {e}", file=sys.stderr)
    try:
        seccomp_filter = __import__("autograder.sandbox.seccomp", fromlist=["build"]).build()
    except Exception as e:  # noqa: BLE001
        seccomp_filter = None
        problems.append(f"seccomp: {type(e).__name__}: {e}")
    host_dir, jailed = None, False
    if os.geteuid() != 0:
        problems.append("namespaces: not root")
    else:
        try:
            host_dir = jail.build_root(jail.allow_list(config["keep"], config["hide"]), config["hide"])
            jailed = True
        except OSError as e:
            problems.append(f"namespaces: {e}")
    _only_fds([sock.fileno()])
    signal.signal(signal.SIGCHLD, _reap)
    sock.send(frame({"ready": True, "root": host_dir, "missing": problems}))
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, MAX_FDS)
        except OSError:
            return
        if not data:
            return
        try:
            req = loads(data[data.index(b"\n") + 1:])
        except ValueError:
            for fd in fds:
                os.close(fd)
            return
        pid = os.fork()
        if pid == 0:
            sock.close()
            guard(req, fds, seccomp_filter, jailed)
        for fd in fds:
            os.close(fd)
        sock.send(frame({"pid": pid}))
