"""One control group per submission: memory, processes and CPU share for all its processes together.

Runs in the worker (root, outside the sandbox). cgroup v1 (separate ``memory``,
``pids`` and ``cpu`` hierarchies) and cgroup v2 (one unified tree) are both
supported; :func:`find` says which one this machine allows, or why neither.

>>> tree = find()                                        # doctest: +SKIP
>>> cg = tree.create("sub-1", Limits(memory_mb=512))     # doctest: +SKIP
>>> cg.procs_files()   # opened for the child, which writes "0" to each to join  # doctest: +SKIP
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .limits import Limits

V1_CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _own_path(controller: str | None) -> str:
    """This process's cgroup in a v1 hierarchy (``controller``) or in v2 (``None``)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if (controller is None and names == "") or (controller in names.split(",")):
            return path
    return "/"


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, options) of every cgroup mount."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            out.append((parts[1], parts[2], set(parts[3].split(","))))
    return out


class Tree:
    """Where this worker makes its submissions' cgroups: one base folder per controller."""

    def __init__(self, version: int, bases: dict[str, Path]):
        self.version, self.bases = version, bases

    def create(self, name: str, limits: Limits) -> "Group":
        dirs = {c: b / name for c, b in self.bases.items()}
        for d in set(dirs.values()):
            d.mkdir()
        group = Group(self.version, dirs)
        try:
            group.limit(limits)
        except OSError:
            group.remove()
            raise
        return group

    def remove(self) -> None:
        for b in set(self.bases.values()):
            for leaf in b.glob("*/"):
                Group(self.version, {"unified" if self.version == 2 else "leaf": leaf}).remove()
            try:
                b.rmdir()
            except OSError:
                pass


class Group:
    """The cgroup(s) of one submission attempt."""

    def __init__(self, version: int, dirs: dict[str, Path]):
        self.version, self.dirs = version, dirs

    def limit(self, limits: Limits) -> None:
        mem = limits.memory_mb * 2**20
        quota = int(limits.cpus * CPU_PERIOD_US)
        if self.version == 1:
            m, p, c = self.dirs["memory"], self.dirs["pids"], self.dirs["cpu"]
            _write(m / "memory.limit_in_bytes", str(mem))
            if (m / "memory.memsw.limit_in_bytes").exists():       # no escape into swap
                _write(m / "memory.memsw.limit_in_bytes", str(mem))
            if (m / "memory.swappiness").exists():
                _write(m / "memory.swappiness", "0")
            _write(p / "pids.max", str(limits.processes))
            _write(c / "cpu.shares", "1024")                        # every submission the same share
            _write(c / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(c / "cpu.cfs_quota_us", str(quota))
        else:
            d = self.dirs["unified"]
            _write(d / "memory.max", str(mem))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(limits.processes))
            _write(d / "cpu.weight", "100")
            _write(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    def procs_files(self) -> list[int]:
        """Open file descriptors of ``cgroup.procs``; a process joins by writing ``0`` to each."""
        return [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in set(self.dirs.values())]

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in set(self.dirs.values()):
            try:
                out |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return out

    def kill_all(self, wait: float = 10.0) -> bool:
        """SIGKILL every process of the group until it is empty; True when it is."""
        end = time.monotonic() + wait
        while True:
            pids = self.pids()
            if not pids:
                return True
            if self.version == 2 and (self.dirs["unified"] / "cgroup.kill").exists():
                _write(self.dirs["unified"] / "cgroup.kill", "1")
            else:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if time.monotonic() > end:
                return False
            time.sleep(0.002)

    def _stat(self, controller: str, file: str) -> dict[str, int]:
        try:
            text = (self.dirs[controller] / file).read_text()
        except (OSError, KeyError):
            return {}
        return {k: int(v) for k, v in (line.split()[:2] for line in text.splitlines() if len(line.split()) >= 2)
                if v.lstrip("-").isdigit()}

    def out_of_memory(self) -> bool:
        """Did the kernel kill a process of this group for using too much memory?"""
        if self.version == 1:
            return self._stat("memory", "memory.oom_control").get("oom_kill", 0) > 0
        return self._stat("unified", "memory.events").get("oom_kill", 0) > 0

    def hit_process_limit(self) -> bool:
        c = "pids" if self.version == 1 else "unified"
        return self._stat(c, "pids.events").get("max", 0) > 0

    def remove(self) -> None:
        self.kill_all(wait=5.0)
        for d in set(self.dirs.values()):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)


def find(name: str) -> Tree | str:
    """A :class:`Tree` under this process's own cgroups, or a sentence saying why there is none."""
    if os.geteuid() != 0:
        return "not root"
    mounts = _mounts()
    v1 = {}
    for point, fstype, opts in mounts:
        if fstype == "cgroup":
            for c in V1_CONTROLLERS:
                if c in opts and c not in v1:
                    v1[c] = Path(point)
    why = []
    if set(v1) == set(V1_CONTROLLERS):
        bases = {c: v1[c] / _own_path(c).lstrip("/") / name for c in V1_CONTROLLERS}
        made = []
        try:
            for b in bases.values():
                b.mkdir(exist_ok=False)
                made.append(b)
            probe = Tree(1, bases).create("probe", Limits())
            probe.remove()
            return Tree(1, bases)
        except OSError as e:
            for b in made:
                b.rmdir()
            why.append(f"v1: {e.strerror or e}")
    else:
        why.append(f"v1: controllers {sorted(set(V1_CONTROLLERS) - set(v1))} are not mounted")
    for point, fstype, _ in mounts:
        if fstype != "cgroup2":
            continue
        root = Path(point)
        ctrl = set((root / "cgroup.controllers").read_text().split())
        if not {"memory", "pids", "cpu"} <= ctrl:
            why.append(f"v2 at {point}: controllers {sorted({'memory', 'pids', 'cpu'} - ctrl)} are missing")
            continue
        # v2 keeps processes in leaves only: the parent of our base must enable the controllers, which
        # our own cgroup cannot while it holds processes; the root cgroup always can.
        for parent in dict.fromkeys([root / _own_path(None).lstrip("/"), root]):
            base = parent / name
            try:
                _write(parent / "cgroup.subtree_control", "+memory +pids +cpu")
                base.mkdir()
                _write(base / "cgroup.subtree_control", "+memory +pids +cpu")
                tree = Tree(2, {"unified": base})
                tree.create("probe", Limits()).remove()
                return tree
            except OSError as e:
                if base.exists():
                    base.rmdir()
                why.append(f"v2 at {parent}: {e.strerror or e}")
    return "; ".join(why) or "no cgroup file system is mounted"
