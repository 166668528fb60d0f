"""Keep committed notebooks as source: outputs cleared except the small checked ones.

    python tools/notebooks.py strip book/*.ipynb            # clear outputs in place
    python tools/notebooks.py strip --keep-checked book/x.ipynb   # keep '# NBVAL_CHECK_OUTPUT' text outputs
    python tools/notebooks.py check book/*.ipynb            # exit 1 if a notebook carries heavy outputs
    python tools/notebooks.py run book/x.ipynb              # execute, print outputs and time, strip

Checked outputs are kept as text only (stream and text/plain): never images or widget state.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

MARK = "# NBVAL_CHECK_OUTPUT"
TEXT_MIMES = {"text/plain"}


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and MARK in cell.source


def text_only(outputs):
    kept = []
    for o in outputs:
        if o.output_type == "stream":
            if kept and kept[-1].output_type == "stream" and kept[-1].name == o.name:
                kept[-1].text += o.text  # one block per stream, however the kernel chunked it
            else:
                kept.append(o)
        elif o.output_type in ("execute_result", "display_data"):
            data = {k: v for k, v in o.get("data", {}).items() if k in TEXT_MIMES}
            if data:
                o.data, o.metadata = data, {}
                kept.append(o)
    return kept


def strip(path: Path, keep_checked: bool) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("execution", None)
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        cell.outputs = text_only(cell.outputs) if keep_checked and is_checked(cell) else []
        # nbval skips a reference cell with outputs but no execution count ("unrun"), so
        # checked cells keep a count: the cell's position, which never changes between runs.
        cell.execution_count = i + 1 if cell.outputs else None
        for o in cell.outputs:
            if o.output_type == "execute_result":
                o.execution_count = cell.execution_count
    nbformat.write(nb, path)


def problems(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    found = []
    if "widgets" in nb.metadata:
        found.append("notebook metadata holds widget state")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.outputs:
            continue
        if not is_checked(cell):
            found.append(f"cell {i} has outputs but no {MARK} mark")
        for o in cell.outputs:
            extra = set(o.get("data", {})) - TEXT_MIMES
            if extra:
                found.append(f"cell {i} carries {sorted(extra)}")
    return found


def run(path: Path) -> float:
    """Execute a notebook in place (as nbval and the book do), print its text outputs, then strip it."""
    import time

    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:03d}"  # stable ids keep diffs small
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        elapsed = time.perf_counter() - t0
        for i, cell in enumerate(nb.cells):
            for o in cell.get("outputs", []):
                if o.output_type == "stream":
                    print(o.text, end="")
                elif o.output_type == "error":
                    print(f"ERROR in cell {i}: {o.ename}: {o.evalue}")
                elif "data" in o:
                    print(f"[cell {i}: {', '.join(k for k in o.data if k != 'text/plain')}]")
        nbformat.write(nb, path)
        strip(path, keep_checked=True)
    print(f"{path}: executed in {elapsed:.1f} s")
    return elapsed


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("strip", "check", "run"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    keep = "--keep-checked" in rest
    paths = [Path(p) for p in rest if p != "--keep-checked"]
    bad = 0
    for p in paths:
        if cmd == "strip":
            strip(p, keep)
        elif cmd == "run":
            run(p)
        else:
            for msg in problems(p):
                print(f"{p}: {msg}")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
