"""The student copy of the course: no instructor material, and a complete product on its own.

The slow test installs the copy the way its README says, into a fresh virtual
environment that has no ``autograder``, and runs every lab in a real kernel:
first as handed out (every self-check says "not implemented yet", Run All
reaches the end), then with the reference solutions pasted in (full marks on
every visible check).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import student_release  # noqa: E402

pytestmark = pytest.mark.skipif(not (ROOT / "labs" / "source").is_dir() or not (ROOT / ".git").exists(),
                                reason="this is already a student copy (no instructor sources, no git)")
LABS = sorted(p.stem for p in (ROOT / "labs" / "source").glob("*.ipynb"))
SCORE = re.compile(r"^(q\w+): ([\d.]+)/([\d.]+) points on the visible checks", re.MULTILINE)


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "student"
    student_release.release(out)
    return out


def test_student_copy_has_labs_but_no_instructor_material(copy):
    assert (copy / "README.md").exists() and (copy / "coursekit" / "checks" / "__init__.py").exists()
    assert sorted(p.stem for p in (copy / "labs").glob("*.ipynb")) == LABS
    assert (copy / "labs" / "checks").is_dir()
    for gone in ("labs/source", "autograder", "tests/autograder", "benchmarks/bench_grading.py",
                 "tools/student_release.py"):
        assert not (copy / gone).exists(), gone
    text = "".join(p.read_text() for p in (copy / "labs").rglob("*") if p.is_file())
    for marker in student_release.MARKERS:
        assert marker not in text


def test_nothing_in_the_copy_imports_the_grader(copy):
    users = [str(p.relative_to(copy)) for p in copy.rglob("*.py")
             if student_release.USES_GRADER.search(p.read_bytes())]
    assert users == []


def test_student_readme_is_for_students_and_has_no_dead_links(copy):
    readme = (copy / "README.md").read_text()
    assert "make lab" in readme and "autograder/" not in readme
    targets = re.findall(r"\]\(([^)#\s]+)", readme)
    dead = [t for t in targets if "://" not in t and not (copy / t).exists()]
    assert dead == []


def test_refuses_to_write_inside_the_repository():
    with pytest.raises(ValueError, match="OUT_DIR must be outside the repository"):
        student_release.release(ROOT / "labs")


# -- the copy installed alone ------------------------------------------------------

RUN_LAB = textwrap.dedent("""
    import json, sys, nbformat
    from nbclient import NotebookClient
    path, out = sys.argv[1], sys.argv[2]
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(__import__("pathlib").Path(path).parent)}}).execute()
    cells = [{"id": c.metadata.get("autograder", {}).get("grade_id"), "role": c.metadata.get("autograder", {}).get("role"),
              "text": "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")}
             for c in nb.cells if c.cell_type == "code"]
    json.dump(cells, open(out, "w"))
""")


def _solutions(lab: str) -> dict[str, str]:
    """The reference code of each solution cell, markers removed, by cell id."""
    source = nbformat.read(ROOT / "labs" / "source" / f"{lab}.ipynb", as_version=4)
    return {c.id: "\n".join(line for line in c.source.splitlines() if "### BEGIN SOLUTION" not in line
                            and "### END SOLUTION" not in line)
            for c in source.cells if "### BEGIN SOLUTION" in c.source}


def _run(python: Path, notebook: Path, tmp: Path) -> list[dict]:
    out = tmp / (notebook.stem + ".json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COURSEKIT_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1")
    proc = subprocess.run([str(python), "-c", RUN_LAB, str(notebook), str(out)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{notebook.name} does not run from top to bottom:\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def installed(copy) -> Path:
    """The copy's own `make lab` install (PyTorch, then `.[lab]`) in a fresh virtual environment."""
    base = getattr(sys, "_base_executable", sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    proc = subprocess.run(["make", "-C", str(copy), ".venv/.lab-installed", f"PYTHON={base}"],
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    python = copy / ".venv" / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import coursekit.checks, importlib.util as u;"
                            "print(coursekit.checks.__file__, u.find_spec('autograder'), u.find_spec('jupyter_book'))"],
                           env=env, capture_output=True, text=True, cwd="/")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [str(copy / "coursekit" / "checks" / "__init__.py"), "None", "None"]
    return python


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_every_lab_runs_alone_and_its_checks_say_not_implemented(installed, copy, lab, tmp_path):
    cells = _run(installed, copy / "labs" / f"{lab}.ipynb", tmp_path)
    tests = [c for c in cells if c["role"] == "tests"]
    assert tests
    for cell in tests:
        scores = SCORE.findall(cell["text"])
        assert len(scores) == 1 and float(scores[0][1]) == 0, (cell["id"], cell["text"])
        failures = [line for line in cell["text"].splitlines() if line.lstrip().startswith("✗")]
        assert failures and cell["text"].count("not implemented yet") == len(failures), (cell["id"], cell["text"])
    demos = [c for c in cells if "demo skipped: write" in c["text"]]
    assert demos, "every lab has a demo that waits for the student's functions"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_every_lab_with_the_reference_solutions_gets_full_marks(installed, copy, lab, tmp_path):
    nb = nbformat.read(copy / "labs" / f"{lab}.ipynb", as_version=4)
    solutions = _solutions(lab)
    for cell in nb.cells:
        if cell.metadata.get("autograder", {}).get("role") == "solution":
            cell.source = solutions[cell.metadata["autograder"]["grade_id"]]
    solved = copy / "labs" / f"solved_{lab}.ipynb"     # beside the lab, so it finds labs/checks the same way
    nbformat.write(nb, solved)
    try:
        cells = _run(installed, solved, tmp_path)
    finally:
        solved.unlink()
    scores = [s for c in cells for s in SCORE.findall(c["text"])]
    assert scores and all(got == total for _, got, total in scores), scores
    assert not any("demo skipped" in c["text"] or "not implemented" in c["text"] for c in cells)
