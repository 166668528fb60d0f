"""Every chapter starts with a hidden cell that installs coursekit when it is missing (Colab, Binder,
downloads), and that cell follows the repository set in _config.yml (tools/notebooks.py install-cell)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from notebooks import INSTALL_ID, install_cell, repository, strip, sync_install_cell  # noqa: E402


def chapters() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    return [ROOT / f"{f}.ipynb" for f in re.findall(r"file:\s*(\S+)", toc) if (ROOT / f"{f}.ipynb").exists()]


def test_every_chapter_starts_with_the_install_cell_of_the_configured_repository():
    assert len(chapters()) >= 10
    source = install_cell(*repository())
    for path in chapters():
        first = nbformat.read(path, as_version=4).cells[0]
        assert first.get("id") == INSTALL_ID, f"{path.name}: run `python tools/notebooks.py install-cell book/ch*.ipynb`"
        assert first.source == source, f"{path.name}: install cell out of date with _config.yml (make book updates it)"
        assert first.metadata.get("tags") == ["remove-cell"], f"{path.name}: the install cell must be hidden in the book"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "notebooks.py"), "install-cell", "--check",
                           *map(str, chapters())], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_with_a_repository_the_cell_pip_installs_coursekit_only_when_the_import_fails():
    from IPython.core.inputtransformer2 import TransformerManager

    source = install_cell("https://github.com/me/course/", "main")
    code = TransformerManager().transform_cell(source)
    compile(code, "install-cell", "exec")
    assert "except ImportError:" in code
    assert "run_line_magic('pip', 'install -q \"coursekit @ git+https://github.com/me/course@main\"')" in code
    assert "pip install -e ." in install_cell("") and "import coursekit" in install_cell("")


def test_the_tool_inserts_updates_and_checks_the_cell_without_touching_other_cells(tmp_path):
    path = tmp_path / "ch.ipynb"
    checked = nbformat.v4.new_code_cell("print(1)  # NBVAL_CHECK_OUTPUT", id="c001", execution_count=2,
                                        outputs=[nbformat.v4.new_output("stream", text="1\n")])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title", id="c000"), checked])
    nbformat.write(nb, path)
    assert not sync_install_cell(path, install_cell(""), check=True)  # missing
    assert not sync_install_cell(path, install_cell(""))  # inserted
    assert sync_install_cell(path, install_cell(""), check=True) and sync_install_cell(path, install_cell(""))
    cells = nbformat.read(path, as_version=4).cells
    assert [c.id for c in cells] == [INSTALL_ID, "c000", "c001"]
    # A new repository URL makes it stale; syncing replaces it in place.
    url_cell = install_cell("https://github.com/me/course", "main")
    assert not sync_install_cell(path, url_cell, check=True)
    sync_install_cell(path, url_cell)
    cells = nbformat.read(path, as_version=4).cells
    assert len(cells) == 3 and cells[0].source == url_cell
    # Positions (ids, checked cells' counts) still count from the first cell after it.
    strip(path, keep_checked=True)
    assert nbformat.read(path, as_version=4).cells[2].execution_count == 2


def test_make_book_drops_the_execution_cache_when_coursekit_changes(tmp_path):
    """jupyter-cache keys a chapter on its own code: a coursekit change must re-run every chapter."""
    from notebooks import BUILD_CACHES, fresh_cache

    package, build = tmp_path / "coursekit", tmp_path / "_build"
    package.mkdir()
    (package / "widgets.py").write_text("FRAMES = 1\n")

    def fill():
        for name in BUILD_CACHES:
            (build / name).mkdir(parents=True, exist_ok=True)
            (build / name / "entry").write_text("old")

    fill()
    assert fresh_cache(build, package)  # caches of unknown origin: dropped once
    assert not any((build / n).exists() for n in BUILD_CACHES)
    fill()
    assert not fresh_cache(build, package) and (build / ".jupyter_cache" / "entry").exists()
    (package / "widgets.py").write_text("FRAMES = 2\n")
    assert fresh_cache(build, package) and not (build / ".jupyter_cache").exists()
    fill()
    (package / "live_figure.js").write_text("// new\n")  # the browser side counts too
    assert fresh_cache(build, package)
    # The book rule runs it before every build.
    make = subprocess.run(["make", "-n", "book"], cwd=ROOT, capture_output=True, text=True).stdout
    assert make.index("notebooks.py fresh-cache _build") < make.index("jupyter-book build")
