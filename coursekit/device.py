"""Where tensors live, and how to make runs repeatable.

Every chapter and lab asks this module for its device, so the same notebook
runs on a laptop CPU and on a GPU without edits.

>>> from coursekit.device import get_device, seed_everything
>>> _ = seed_everything(0)
>>> get_device().type in {"cpu", "cuda", "mps"}
True
"""
from __future__ import annotations

import ctypes
import os
import random
import sys

import numpy as np
import torch

#: Forces the experiments' mode: ``live`` (Python redraws) or ``static`` (precomputed frames).
MODE_ENV = "COURSEKIT_WIDGETS"

#: Environment variable that overrides the automatic choice, e.g. ``COURSEKIT_DEVICE=cpu``.
DEVICE_ENV = "COURSEKIT_DEVICE"
_ALLOWED = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device to train on: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the ``COURSEKIT_DEVICE`` environment variable) forces a
    choice, such as ``"cpu"`` or ``"cuda:1"``.

    >>> get_device("cpu")
    device(type='cpu')
    """
    choice = prefer if prefer is not None else os.environ.get(DEVICE_ENV, "").strip()
    if choice:
        kind = choice.split(":", 1)[0]
        if kind not in _ALLOWED:
            source = "prefer" if prefer is not None else DEVICE_ENV
            raise ValueError(
                f"{source} must be one of 'cpu', 'cuda', 'cuda:N', 'mps'; got {choice!r}"
            )
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{choice!r} was requested but torch sees no CUDA device; use 'cpu'")
        if kind == "mps" and not _mps_available():
            raise ValueError("'mps' was requested but this machine has no Apple MPS device; use 'cpu'")
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and all GPUs); return a seeded CPU generator.

    With ``deterministic=True`` torch is asked for deterministic kernels, so a
    seeded run prints the same numbers twice (which nbval relies on).

    >>> g = seed_everything(42)
    >>> a = torch.rand(2, generator=g); b = torch.rand(2, generator=seed_everything(42))
    >>> bool((a == b).all())
    True
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
    return torch.Generator().manual_seed(seed)


def describe_device(device: torch.device | None = None) -> str:
    """A one-line description such as ``'cuda (NVIDIA H100, 80 GiB)'`` or ``'cpu (2 threads)'``."""
    device = device or get_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def live_mode() -> bool:
    """True when a live kernel sits behind a Jupyter server (JupyterLab, Notebook)."""
    forced = os.environ.get(MODE_ENV, "").strip().lower()
    if forced:
        if forced not in ("live", "static"):
            raise ValueError(f"{MODE_ENV} must be 'live' or 'static'; got {forced!r}")
        return forced == "live"
    # jupyter_server sets this for every kernel it starts; nbclient (book build, nbval) does not.
    return "JPY_SESSION_NAME" in os.environ


#: Set to ``0`` to leave the C allocator as it is (see :func:`keep_freed_memory`).
ALLOCATOR_ENV = "COURSEKIT_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3   # glibc's mallopt parameters
_allocator_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Let this process's C allocator keep the memory it frees, for reuse: True if it now does.

    A CPU training step allocates and frees tensors of a few hundred KiB to a few MiB.
    glibc's malloc gives memory of that size back to the kernel when it is freed, so the
    next step pays a page fault for every 4 KiB page it touches again: 30,000-57,000 faults
    and 12-18% of the time of a 16-model ``Sweep`` of a batch-norm MLP or a CNN on MNIST-1D
    (measured with ``getrusage``; ``benchmarks/bench_sweep.py``). With this, blocks under
    32 MiB come from the heap, and the free memory at the top of a heap is kept until it
    passes 256 MiB instead of 128 KiB, as the PyTorch CPU tuning guide's jemalloc/tcmalloc
    advice also achieves. ``Sweep.fit`` calls it on a CPU.

    It changes the whole process, once: the process may keep a few hundred MiB it no
    longer uses (per allocator arena). It does nothing (and returns False) off Linux, where
    the C library has no ``mallopt`` or refuses a setting, or when the environment variable
    ``COURSEKIT_KEEP_FREED_MEMORY=0`` is set. With another allocator preloaded (jemalloc,
    tcmalloc), glibc's settings may be accepted and have no effect.
    """
    global _allocator_kept
    if _allocator_kept is None:
        _allocator_kept = False
        if sys.platform.startswith("linux") and os.environ.get(ALLOCATOR_ENV, "1") != "0":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            accepted = [mallopt(param, value) == 1 for param, value in (   # all three, even if one fails
                (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 256 << 20), (_M_TOP_PAD, 16 << 20))]
            _allocator_kept = all(accepted)
    return _allocator_kept
