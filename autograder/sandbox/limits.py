"""The limits of one submission, shared by the grader and the sandbox.

>>> Limits().memory_mb
1024
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Limits:
    """Resource limits of one submission.

    ``timeout`` is the wall-clock budget of the whole submission, ``cell_timeout``
    of one notebook cell and ``probe_timeout`` of one probe (a case may ask for more).
    Where cgroups are available, ``memory_mb``, ``processes`` and ``cpus`` cover all
    the submission's processes together; otherwise they are per-process rlimits.
    """
    timeout: float = 300.0
    cell_timeout: float = 30.0
    probe_timeout: float = 10.0
    cpu_seconds: int = 600
    memory_mb: int = 1024       # memory of all its processes together (cgroup); address space per process on top
    processes: int = 64         # processes and threads, all together (cgroup pids) and per uid (rlimit)
    cpus: float = 1.0           # CPU share: at most this many cores' worth of time, all processes together
    file_mb: int = 16           # largest file the child may write
    tmp_mb: int = 64            # size of its private /tmp
    output_bytes: int = 64_000  # captured output kept per cell
    answer_bytes: int = 32_000_000  # largest message the child may send

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (type(value) in (int, float) and 0 < value < float("inf")):
                raise ValueError(f"limit {name} must be a positive number; got {value!r}")

    def to_plain(self) -> dict:
        return asdict(self)
