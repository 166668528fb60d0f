"""Run coursekit's tests and chapter 1 on a CUDA GPU and report the device used.

    COURSEKIT_DEVICE=cuda python -m coursekit.gpu_check      (or: make gpu-check)

Exits non-zero, saying why, when there is no CUDA device or a check fails.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from .device import describe_device, get_device

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ["book/ch01_how_a_network_learns.ipynb"]


def run_chapter(path: Path) -> str:
    """Execute a chapter with nbclient on the GPU; return what it printed about its device."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    return next((line for line in printed.splitlines() if line.startswith("training on")), "")


def main() -> int:
    os.environ.setdefault("COURSEKIT_DEVICE", "cuda")
    if not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device (torch", torch.__version__, "); "
              "install a CUDA build of PyTorch on a GPU machine, e.g. `make gpu-check TORCH_SPEC=torch`")
        return 2
    device = get_device()
    print(f"gpu-check: torch {torch.__version__}, device {device}: {describe_device(device)}")
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/test_coursekit.py", "tests/test_sweep.py"],
                         cwd=ROOT)
    print(f"gpu-check: coursekit tests {'passed' if rc == 0 else 'FAILED'} in {time.perf_counter() - t0:.0f} s")
    failed = rc != 0
    for chapter in CHAPTERS:
        t0 = time.perf_counter()
        try:
            said = run_chapter(ROOT / chapter)
        except Exception as e:  # report and go on to the summary
            print(f"gpu-check: {chapter} FAILED: {type(e).__name__}: {str(e)[:500]}")
            failed = True
            continue
        ok = "cuda" in said
        failed |= not ok
        print(f"gpu-check: {chapter} ran in {time.perf_counter() - t0:.0f} s and said {said!r}"
              f"{'' if ok else ' (expected cuda)'}")
    print(f"gpu-check: {'FAILED' if failed else 'all passed'} on {describe_device(device)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
