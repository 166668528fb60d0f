"""Repository hygiene: clean notebooks, a conda environment that agrees with pyproject.toml."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks  # noqa: E402


def committed_notebooks() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True).stdout
    return [ROOT / p for p in out.split()]


@pytest.mark.parametrize("path", committed_notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_notebook_is_clean(path):
    assert notebooks.problems(path) == [], (
        f"{path.relative_to(ROOT)}: run `python tools/notebooks.py strip --keep-checked {path.relative_to(ROOT)}`")
    assert path.stat().st_size < 200_000


def test_strip_keeps_only_checked_text(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    nb = new_notebook(cells=[
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)", outputs=[
            new_output("stream", name="stdout", text="1\n"),
            new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})]),
        new_code_cell("print(2)", outputs=[new_output("stream", name="stdout", text="2\n")]),
    ])
    nb.metadata["widgets"] = {"state": {}}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert len(notebooks.problems(path)) == 3
    notebooks.strip(path, keep_checked=True)
    assert notebooks.problems(path) == []
    cells = nbformat.read(path, as_version=4).cells
    assert [o.get("text") for o in cells[0].outputs] == ["1\n", None] and cells[1].outputs == []


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra if not r.startswith("coursekit")}
    env = (ROOT / "environment.yml").read_text()
    pip_lines = re.findall(r"^\s+- (?!-e)([A-Za-z][\w.-]*[^\n#]*)", env.split("- pip:")[1], re.M)
    listed = {_name(x) for x in pip_lines}
    assert wanted == listed, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_the_bibliography_parses_and_its_keys_are_unique():
    """A merge that drops a closing brace breaks the whole book build; catch it here in a second."""
    from pybtex.database import parse_string

    text = (ROOT / "book" / "references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,\s]+),", text, flags=re.MULTILINE)
    assert len(parse_string(text, "bibtex").entries) == len(keys) == len(set(keys))
