"""Prose numbers come from the run that shows them: ``prose(name=...)`` in a cell, ``{eval}`name``` in the text.

Held in both places a chapter is read, with the real tools: a real kernel (nbclient), a real
Jupyter Book build with the book's own extension and its execution cache, and a real JupyterLab
with jupyterlab-myst in Chromium.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")
TEXT = "The rate is {eval}`lr_text` and the run took {eval}`n_steps` steps."


def _notebook(path: Path, code: str, markdown: str = TEXT) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code), nbformat.v4.new_markdown_cell(markdown)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


CODE = "from coursekit.prose import prose\nlr = 0.0031416\nprose(lr_text=f'{lr:.2g}', n_steps=122)"


def test_prose_defines_each_name_and_glues_its_text_in_a_real_kernel(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(_notebook(tmp_path / "n.ipynb", CODE + "\nprint(repr(lr_text), type(n_steps).__name__)"),
                       as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    glued = {o.metadata["scrapbook"]["name"]: o.data for o in outputs if "scrapbook" in o.get("metadata", {})}
    assert glued == {"lr_text": {"application/papermill.record/text/plain": "0.0031"},
                     "n_steps": {"application/papermill.record/text/plain": "122"}}
    # In the kernel each name is a string that shows without quotes (what jupyterlab-myst displays).
    assert [o.text for o in outputs if o.output_type == "stream"] == ["0.0031 Text\n"]


def test_prose_refuses_a_name_that_is_not_an_identifier():
    from coursekit.prose import prose

    with pytest.raises(ValueError, match="prose name must be a Python identifier; got 'my-gain'"):
        prose(**{"my-gain": "1"})
    with pytest.raises(ValueError, match="prose\\(\\) needs at least one name=value"):
        prose()


def _book(tmp_path: Path, markdown: str = TEXT) -> subprocess.CompletedProcess:
    (tmp_path / "_config.yml").write_text(
        "title: t\nexecute:\n  execute_notebooks: cache\n"
        f"sphinx:\n  local_extensions:\n    coursekit_book: {ROOT / 'book' / '_ext'}\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    _notebook(tmp_path / "page.ipynb", CODE, markdown)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    return subprocess.run([str(JUPYTER_BOOK), "build", str(tmp_path), "--warningiserror"],
                          capture_output=True, text=True, timeout=600, env=env)


def test_the_web_book_shows_the_value_of_the_cached_run(tmp_path):
    proc = _book(tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    sentence = re.compile(r'The rate is <span class="pasted-text prose-value">0.0031</span> and the run took '
                          r'<span class="pasted-text prose-value">122</span> steps')
    page = tmp_path / "_build" / "html" / "page.html"
    assert sentence.search(page.read_text()), page.read_text()[-2000:]
    # A second build of a changed page reads the values from the execution cache (no kernel runs).
    (tmp_path / "page.ipynb").write_text((tmp_path / "page.ipynb").read_text().replace("The rate", "The  rate"))
    again = subprocess.run([str(JUPYTER_BOOK), "build", str(tmp_path), "--warningiserror"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Executing" not in again.stdout, again.stdout[-2000:]
    assert sentence.search(page.read_text().replace("The  rate", "The rate"))


def test_a_value_no_cell_computes_fails_the_build_and_names_it(tmp_path):
    proc = _book(tmp_path, "The gain is {eval}`gain_text`.")
    assert proc.returncode != 0
    assert "no value named 'gain_text' in this chapter" in proc.stdout + proc.stderr


@pytest.mark.browser
def test_jupyterlab_shows_the_value_once_the_cells_run(tmp_path):
    from browser import browser_page, jupyterlab_server

    nb = _notebook(tmp_path / "prose.ipynb", CODE)
    with jupyterlab_server(tmp_path, [nb]) as url, browser_page(offline=True) as (page, log):
        page.set_default_timeout(60_000)
        page.goto(f"{url}/lab/tree/prose.ipynb")
        page.wait_for_function("window.jupyterapp !== undefined")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget; const k = w && "
                               "w.sessionContext.session && w.sessionContext.session.kernel; "
                               "return k && k.status === 'idle'; }", timeout=120_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        markdown = page.locator(".jp-MarkdownCell").first
        page.wait_for_function("el => el.innerText.includes('122 steps')", arg=markdown.element_handle(),
                               timeout=60_000)
        text = markdown.inner_text()
        assert "The rate is 0.0031 and the run took 122 steps." in " ".join(text.split()), text
        assert "{eval}" not in text
        assert log["page_errors"] == [], log["page_errors"]
