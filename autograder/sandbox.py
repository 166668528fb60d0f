"""Operating-system isolation for the child that runs student code.

Two steps, both done in forked processes of the worker (never in the grader):

1. :func:`isolate` (as root, in the guard process): new mount, network, PID, IPC
   and UTS namespaces; fresh empty tmpfs over every *hidden* path (the course
   repository, lab sources, output folder, submissions, home folders, /tmp), with
   the few *kept* paths (the Python install, coursekit) bound back read-only.
2. :func:`confine` (in the child, PID 1 of the new namespace): a private /proc,
   rlimits, an unprivileged uid/gid, a private working folder, a scrubbed
   environment, and death when the guard dies.

Linux only. Without root or namespaces the child still gets rlimits and a
private folder, and :func:`capabilities` says what is missing.

>>> Limits().memory_mb
1024
"""
from __future__ import annotations

import ctypes
import os
import resource
import signal
from dataclasses import dataclass, asdict
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]


@dataclass
class Limits:
    """Resource limits of one submission's child process.

    ``timeout`` is the wall-clock budget of the whole submission, ``cell_timeout``
    of one notebook cell and ``probe_timeout`` of one probe (a case may ask for more).
    """
    timeout: float = 300.0
    cell_timeout: float = 30.0
    probe_timeout: float = 10.0
    cpu_seconds: int = 600
    memory_mb: int = 1024       # address space on top of what the worker already maps
    processes: int = 64         # per child uid, threads included
    file_mb: int = 16           # largest file the child may write
    tmp_mb: int = 64            # size of its private /tmp
    output_bytes: int = 64_000  # captured output kept per cell
    answer_bytes: int = 32_000_000  # largest message the child may send

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"limit {name} must be a positive number; got {value!r}")

    def to_plain(self) -> dict:
        return asdict(self)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {target}")


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def isolate(hide: list[str], keep: list[str], tmp_mb: int) -> str:
    """Enter new namespaces and hide paths; returns the isolation level reached.

    Must run as root in a process that will only ever run the sandboxed child.
    """
    if os.geteuid() != 0:
        return "rlimits-only (not root)"
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    except OSError as e:
        return f"rlimits-only ({e})"
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    kept = sorted({Path(k).resolve() for k in keep if Path(k).is_dir()}, key=lambda p: len(p.parts))
    fds = {k: os.open(k, os.O_PATH | os.O_DIRECTORY) for k in kept}   # opened before anything is covered
    private = [Path(t) for t in ("/tmp", "/var/tmp", "/dev/shm") if Path(t).is_dir()]
    for t in private:
        _mount("tmpfs", str(t), "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=1777")
    hidden = sorted({Path(h).resolve() for h in hide if Path(h).exists()}, key=lambda p: len(p.parts))
    hidden = [h for h in hidden if not any(_under(h, t) for t in private)]    # already empty
    tops = [h for h in hidden if not any(_under(h, o) and h != o for o in hidden)]
    for h in tops:
        if h.is_dir():
            _mount("tmpfs", str(h), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        else:
            _mount("/dev/null", str(h), None, MS_BIND)
    for k, fd in fds.items():
        if any(_under(k, h) for h in tops + private):
            k.mkdir(parents=True, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", str(k), None, MS_BIND | MS_REC)
            _mount(None, str(k), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for h in hidden:  # a hidden path inside a kept one is hidden again
        if any(_under(h, k) and h != k for k in fds) and h.is_dir():
            _mount("tmpfs", str(h), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    return "namespaces"


def confine(uid: int, limits: Limits, isolated: bool) -> str:
    """Lock the current process down before it runs student code; returns its working folder."""
    if isolated:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    work = Path("/tmp/work") if isolated else Path(os.environ.get("AUTOGRADER_TMP", "/tmp")) / f"autograder-{os.getpid()}"
    work.mkdir(mode=0o700, exist_ok=True)
    vm_kb = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0])
    mem = vm_kb * 1024 + limits.memory_mb * 2**20
    for res, value in [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, int(limits.cpu_seconds)),
                       (resource.RLIMIT_FSIZE, limits.file_mb * 2**20), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_NPROC, limits.processes)]:
        resource.setrlimit(res, (value, value))
    if os.geteuid() == 0:
        os.chown(work, uid, uid)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)   # after setuid, which clears it
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)            # a too-big write fails instead of killing
    os.chdir(work)
    return str(work)


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def scrub_environ(work: str) -> None:
    """Replace the environment with a minimal one (no tokens, paths or proxies of the grader)."""
    keep = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    os.environ.clear()
    os.environ.update(keep, HOME=work, TMPDIR=work, MPLBACKEND="Agg", MPLCONFIGDIR=work,
                      OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COURSEKIT_CHECKS_MODE="grading")


def capabilities() -> dict:
    """What isolation this machine allows, found by trying it in a throw-away child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            level = isolate([], [], 1)
        except Exception as e:  # noqa: BLE001
            level = f"rlimits-only ({e})"
        os.write(w, level.encode()[:500])
        os._exit(0)
    os.close(w)
    level = os.read(r, 600).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return {"root": os.geteuid() == 0, "level": level, "namespaces": level == "namespaces"}
