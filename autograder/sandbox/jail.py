"""Operating-system isolation of the processes that run student code (Linux, as root).

Three steps, each in the process that needs it:

1. :func:`build_root` (once per worker, in the fork server): a new mount namespace
   whose root is a fresh tmpfs holding only an *allow-list*, bound read-only: the
   Python runtime and its packages, coursekit, the system's shared libraries, and
   a few device nodes. Nothing else of the machine exists there (``pivot_root``,
   then the old root is detached), so no copy of the course, wherever it sits, can
   be read. The steps are the ones ``bwrap`` takes; they are done in-process so
   that the fork server keeps torch imported (``bwrap`` would exec a new Python).
2. :func:`enter_namespaces` (per attempt, in the root-owned *guard*): new mount,
   PID, network, IPC and UTS namespaces; its child is PID 1 there, so when it ends
   the kernel kills every process it left.
3. :func:`confine` (in that child): a private ``/proc``, ``/tmp`` and ``/dev/shm``,
   rlimits, the submission's own uid, ``no_new_privs``, death with the guard, and
   the seccomp filter of :mod:`autograder.sandbox.seccomp` last.

Without root the child gets rlimits and a private folder only, and
:func:`capabilities` says what is missing.

>>> capabilities()["level"]                                     # doctest: +SKIP
'full'
"""
from __future__ import annotations

import ctypes
import os
import platform
import resource
import signal
import sys
import tempfile
from pathlib import Path

from .limits import Limits  # noqa: F401  (re-exported for older imports)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 38, 36
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]

_ARCH = getattr(sys.implementation, "_multiarch", "") or f"{platform.machine()}-linux-gnu"
#: Shared libraries a lazily imported extension module may still load (the C library's own folders only).
SYSTEM_LIBS = (f"/lib/{_ARCH}", f"/usr/lib/{_ARCH}", "/lib64", "/usr/lib64", "/etc/ld.so.cache")
DEVICES = ("null", "zero", "full", "random", "urandom")
PASSWD = "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {target}")


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def python_paths() -> list[str]:
    """What this interpreter imports from: its ``sys.path`` folders and its executable."""
    paths = [p for p in sys.path if p and os.path.exists(p)]
    return paths + [sys.executable]


def allow_list(keep: list[str], hide: list[str]) -> list[str]:
    """The paths the child may read: the Python runtime, ``keep``, and the shared libraries.

    A path that *holds* a hidden one (say the course's root, on ``sys.path`` when it is
    not installed) is left out; the packages in it that the child needs come in
    through ``keep``.
    """
    hidden = [os.path.realpath(h) for h in hide]
    out = []
    for p in [*python_paths(), *keep, *SYSTEM_LIBS]:
        rp = os.path.realpath(p)
        if os.path.exists(rp) and not any(_under(h, rp) for h in hidden):
            out.append(p)
    return list(dict.fromkeys(out))


def _link_chain(new: str, path: str, depth: int = 0) -> None:
    """Recreate inside ``new`` the symbolic links on the way to ``path``, so the same name resolves."""
    parts = Path(path).parts
    for k in range(1, len(parts)):
        here = os.path.join(*parts[:k + 1])
        if os.path.islink(here):
            link, target = os.readlink(here), new + here
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(link, target)
            if depth < 8:
                resolved = os.path.normpath(os.path.join(os.path.dirname(here), link))
                _link_chain(new, os.path.join(resolved, *parts[k + 1:]), depth + 1)
            return


def _bind_at(source: str, target: str, read_only: bool = True) -> None:
    """Bind ``source`` (a folder or a file) at ``target``, making the mount point first."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _bind(new: str, source: str, read_only: bool = True) -> None:
    _bind_at(source, new + source, read_only)


def build_root(allow: list[str], hide: list[str]) -> str:
    """Make this process's ``/`` a fresh tmpfs with only ``allow`` in it (read-only).

    Returns the host folder it used as a mount point, for the caller to remove.
    Paths in ``hide`` that lie inside an allowed one are covered by empty tmpfs.
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    new = tempfile.mkdtemp(prefix="autograder-root-", dir="/tmp" if os.path.isdir("/tmp") else "/")
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    bound: list[str] = []
    for p in sorted({os.path.realpath(a) for a in allow}, key=lambda q: (q.count("/"), q)):
        if not any(_under(p, b) for b in bound):
            _bind(new, p)
            bound.append(p)
    for a in allow:
        _link_chain(new, a)
    for h in sorted({os.path.realpath(h) for h in hide}):
        if any(_under(h, b) and h != b for b in bound) and os.path.isdir(h):
            _mount("tmpfs", new + h, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=755")
    os.makedirs(new + "/dev", exist_ok=True)
    _mount("tmpfs", new + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for d in DEVICES:
        if os.path.exists(f"/dev/{d}"):
            _bind(new, f"/dev/{d}", read_only=False)
    os.mkdir(new + "/dev/shm")
    for name, link in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")]:
        os.symlink(link, f"{new}/dev/{name}")
    for d in ("proc", "tmp", "etc"):
        os.makedirs(f"{new}/{d}", exist_ok=True)
    if not os.path.lexists(new + "/etc/passwd"):
        Path(new + "/etc/passwd").write_text(PASSWD)
        Path(new + "/etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    os.mkdir(new + "/.old")
    if SYS_PIVOT_ROOT is None:
        raise OSError(f"pivot_root: unknown system call number on {platform.machine()}")
    _check(_libc.syscall(SYS_PIVOT_ROOT, new.encode(), (new + "/.old").encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount /.old")
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return new


def enter_namespaces() -> None:
    """New mount, PID, network, IPC and UTS namespaces (the next child is PID 1 there)."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")


def _runtime_under(folder: str) -> tuple[list[tuple[str, str]], list[str]]:
    """What :func:`build_root` put under ``folder``: its symbolic links (with their targets) and the
    bind mounts of the allow-list (not descended into)."""
    links, mounts = [], []
    for here, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(here, name)
            if os.path.islink(path):
                links.append((path, os.readlink(path)))
            elif os.path.ismount(path):
                mounts.append(path)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(here, d))
                   and not os.path.ismount(os.path.join(here, d))]
    return links, mounts


def private_tmp(size_mb: int) -> None:
    """A fresh, writable ``/tmp`` and ``/dev/shm`` for this attempt (its own mount namespace).

    A Python environment may live under ``/tmp`` (a clone in /tmp, a CI runner's tool cache): the
    allow-list then bound its folders there, and a plain tmpfs over ``/tmp`` would hide them, so
    that every import not done before the fork failed (``numpy.random``, ``torch._dynamo``). They
    are held aside, the tmpfs goes on, and they are bound back on top of it, read-only."""
    links, mounts = _runtime_under("/tmp")
    stash = "/dev/.autograder-runtime"
    held = [(f"{stash}/{k}", path) for k, path in enumerate(mounts)]
    for spot, path in held:
        _bind_at(path, spot, read_only=False)
    for t in ("/tmp", "/dev/shm"):
        _mount("tmpfs", t, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=1777")
    for spot, path in held:
        _bind_at(spot, path)
        _check(_libc.umount2(spot.encode(), MNT_DETACH), f"umount {spot}")
        os.rmdir(spot) if os.path.isdir(spot) else os.unlink(spot)
    for path, target in links:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            os.symlink(target, path)
    if mounts:
        os.rmdir(stash)


def confine(uid: int, limits: Limits, jailed: bool) -> str:
    """Lock the current process down before it runs student code; returns its working folder."""
    if jailed:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        private_tmp(limits.tmp_mb)
        work = Path("/tmp/work")
    else:
        work = Path(os.environ.get("AUTOGRADER_TMP", "/tmp")) / f"autograder-{os.getpid()}"
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


def become_subreaper() -> None:
    """Orphaned descendants of this process become its children (and are reaped by it)."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def scrub_environ(work: str) -> None:
    """Replace the environment with a minimal one (no tokens, paths or proxies of the grader)."""
    keep = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    os.environ.clear()
    os.environ.update(keep, HOME=work, TMPDIR=work, MPLBACKEND="Agg", MPLCONFIGDIR=work,
                      OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COURSEKIT_CHECKS_MODE="grading")


def capabilities() -> dict:
    """What isolation this machine allows, found by trying each part in a throw-away child.

    ``level`` is ``"full"`` (namespaces, allow-list root, cgroups, seccomp), else it
    names what is missing.
    """
    from . import cgroups
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        found = []
        try:
            try:
                from .seccomp import build
                build()
            except Exception as e:  # noqa: BLE001
                found.append(f"seccomp: {type(e).__name__}: {e}")
            if os.geteuid() != 0:
                found.append("namespaces: not root")
            else:
                try:
                    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
                           "unshare")
                except OSError as e:
                    found.append(f"namespaces: {e}")
        finally:
            os.write(w, "\n".join(found).encode()[:2000])
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    missing = [m for m in b"".join(chunks).decode().split("\n") if m]
    tree = cgroups.find(f"autograder-probe-{os.getpid()}")
    if isinstance(tree, str):
        missing.append(f"cgroups: {tree}")
    else:
        tree.remove()
    return {"root": os.geteuid() == 0, "namespaces": not any(m.startswith("namespaces") for m in missing),
            "cgroups": not isinstance(tree, str), "seccomp": not any(m.startswith("seccomp") for m in missing),
            "missing": missing, "level": describe_level(missing)}


def describe_level(missing: list[str]) -> str:
    """``full``, or ``partial (...)`` / ``rlimits-only (...)`` naming what is missing."""
    if not missing:
        return "full"
    kind = "rlimits-only" if any(m.startswith("namespaces") for m in missing) else "partial"
    return f"{kind} ({'; '.join(missing)})"
