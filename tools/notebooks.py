"""Keep committed notebooks as source: outputs cleared except the small checked ones.

    python tools/notebooks.py strip book/*.ipynb            # clear outputs in place
    python tools/notebooks.py strip --keep-checked book/x.ipynb   # keep '# NBVAL_CHECK_OUTPUT' text outputs
    python tools/notebooks.py check book/*.ipynb            # exit 1 if a notebook carries heavy outputs
    python tools/notebooks.py run book/x.ipynb              # execute, print outputs and time, strip
    python tools/notebooks.py install-cell book/ch*.ipynb   # first cell: install coursekit if missing
    python tools/notebooks.py install-cell --check book/ch*.ipynb   # exit 1 if one is missing or stale
    python tools/notebooks.py fresh-cache _build           # drop the book's caches if coursekit changed
    python tools/notebooks.py other-cpu-kernel             # the kernel `make test` runs nbval on (below)

**Another CPU's rounding.** Checked outputs must read the same on every CPU. ``make test`` builds
the book with this machine's own kernels and runs nbval on a Jupyter kernel, ``python3-other-cpu``,
whose environment picks PyTorch's generic CPU kernels and MKL's compatible path
(``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE``), which round as another CPU would. Both sets
of checked outputs must match the committed ones (nbval compares one, ``tests/test_book.py`` the other).

Checked outputs are kept as text only (stream and text/plain): never images or widget state.

Every chapter starts with a hidden cell (tagged ``remove-cell``) that installs coursekit when the
kernel lacks it, so a chapter opened on Colab or Binder, or downloaded, runs as it is. Its pip
requirement comes from ``repository.url`` (and ``branch``) in ``_config.yml``, the one place where
the repository is set; ``make book`` brings the cells up to date.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

MARK = "# NBVAL_CHECK_OUTPUT"
TEXT_MIMES = {"text/plain"}
ROOT = Path(__file__).resolve().parents[1]
#: The id of every chapter's first cell, the one that installs coursekit.
INSTALL_ID = "coursekit-install"


def repository(config: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """``repository.url`` and ``repository.branch`` from the book's configuration ('' when unset)."""
    import yaml

    repo = (yaml.safe_load(config.read_text()) or {}).get("repository") or {}
    return (repo.get("url") or "").strip(), (repo.get("branch") or "").strip()


def install_cell(repository_url: str, branch: str = "") -> str:
    """The source of a chapter's first cell: install coursekit when the kernel lacks it.

    >>> print(install_cell("https://github.com/me/course", "main").splitlines()[-1])
        %pip install -q "coursekit @ git+https://github.com/me/course@main"
    """
    if repository_url:
        ref = f"@{branch}" if branch else ""
        how = f'%pip install -q "coursekit @ git+{repository_url.rstrip("/")}{ref}"'
        return ("# This chapter uses the course's helper package, coursekit (on Colab or Binder: installed here).\n"
                "try:\n    import coursekit\nexcept ImportError:\n    " + how)
    return ("# This chapter uses the course's helper package, coursekit. If the import fails, install it\n"
            "# from a copy of the course repository with `pip install -e .` (or `make lab`).\n"
            "import coursekit")


def _offset(nb) -> int:
    """1 when the notebook starts with the install cell: positions below count from the cell after it,
    so adding that cell changed no other cell's id or count."""
    return int(bool(nb.cells) and nb.cells[0].get("id") == INSTALL_ID)


def sync_install_cell(path: Path, source: str, check: bool = False) -> bool:
    """Make the notebook's first cell the install cell with this ``source``; True if it was right."""
    nb = nbformat.read(path, as_version=4)
    if _offset(nb):
        cell = nb.cells[0]
        if cell.source == source and cell.metadata.get("tags") == ["remove-cell"] and not cell.outputs:
            return True
    if check:
        return False
    if not _offset(nb):
        nb.cells.insert(0, nbformat.v4.new_code_cell(id=INSTALL_ID))
    cell = nb.cells[0]
    cell.source, cell.outputs, cell.execution_count = source, [], None
    cell.metadata = {"tags": ["remove-cell"]}  # the book hides it; Colab, Binder and downloads run it
    nbformat.write(nb, path)
    return False


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


#: What the book's build keeps between runs: the execution cache (jupyter-cache), the executed
#: notebooks and their images (MyST-NB), and Sphinx's parsed pages (which it would not re-read).
BUILD_CACHES = (".jupyter_cache", "jupyter_execute", ".doctrees")
STAMP = ".coursekit-hash"


def package_hash(package: Path = ROOT / "coursekit") -> str:
    """A hash of every source file of the package (names and contents)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".js")):
        h.update(f.relative_to(package).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def fresh_cache(build: Path, package: Path = ROOT / "coursekit") -> bool:
    """Drop the book's caches when coursekit changed since they were filled; True if dropped.

    jupyter-cache keys a chapter on its own code only, so after a change to coursekit the book
    would show frames and numbers computed with the old one. The hash of coursekit's sources is
    kept next to the caches (``_build/.coursekit-hash``).
    """
    import shutil

    stamp, now = build / STAMP, package_hash(package)
    if stamp.exists() and stamp.read_text().strip() == now:
        return False
    dropped = False
    for name in BUILD_CACHES:
        if (build / name).exists():
            shutil.rmtree(build / name)
            dropped = True
    build.mkdir(parents=True, exist_ok=True)
    stamp.write_text(now + "\n")
    return dropped


def strip(path: Path, keep_checked: bool) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("execution", None)
    for i, cell in enumerate(nb.cells, start=-_offset(nb)):
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
    for i, cell in enumerate(nb.cells, start=-_offset(nb)):
        cell.id = f"c{i:03d}" if i >= 0 else INSTALL_ID  # stable ids keep diffs small
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


#: The kernel nbval runs on in `make test`, and the environment that makes it round as another CPU does.
OTHER_CPU_KERNEL = "python3-other-cpu"
OTHER_CPU_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def other_cpu_kernel(prefix: Path = Path(sys.prefix)) -> Path:
    """Install (in this environment's prefix) a kernel spec that runs this Python with OTHER_CPU_ENV."""
    import json

    spec = prefix / "share" / "jupyter" / "kernels" / OTHER_CPU_KERNEL / "kernel.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (another CPU's rounding)",
        "language": "python",
        "env": OTHER_CPU_ENV,
        "metadata": {"debugger": True},
    }, indent=1) + "\n")
    return spec


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("strip", "check", "run", "install-cell", "fresh-cache", "other-cpu-kernel"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "other-cpu-kernel":
        print(f"kernel {OTHER_CPU_KERNEL} ({' '.join(f'{k}={v}' for k, v in OTHER_CPU_ENV.items())}): "
              f"{other_cpu_kernel()}")
        return 0
    if cmd == "fresh-cache":
        build = Path(rest[0]) if rest else ROOT / "_build"
        if fresh_cache(build):
            print(f"coursekit changed since the last build: dropped {', '.join(BUILD_CACHES)} in {build}; "
                  "every chapter runs again")
        return 0
    keep = "--keep-checked" in rest
    paths = [Path(p) for p in rest if p not in ("--keep-checked", "--check")]
    bad = 0
    for p in paths:
        if cmd == "install-cell":
            if not sync_install_cell(p, install_cell(*repository()), check="--check" in rest):
                print(f"{p}: {'install cell missing or out of date with _config.yml' if '--check' in rest else 'install cell updated'}")
                bad += "--check" in rest
        elif cmd == "strip":
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
