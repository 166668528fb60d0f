"""Honest code gets its marks however it is written: formatted by black or ruff, with IPython magics.

The child reads a cell as IPython does (``autograder.sandbox.child.as_python``, IPython's own
transformer), not with line rules: a line rule blanked black's wrapped ``!= ...`` line as a shell
escape, and a correct answer lost every test of its question.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.grader import grade
from autograder.sandbox import Limits
from autograder.sandbox.child import NoShell, as_python

from ag_helpers import LABS, lab, needs_isolation, question_points, replace_solution, solved, write

LIMITS = Limits(timeout=120, cell_timeout=60, probe_timeout=20)
RUFF = Path(sys.executable).with_name("ruff")
ROOT = Path(__file__).resolve().parents[2]


def _reference(name: str, grade_id: str) -> str:
    return next(c.source for c in lab(name).source.cells if c.get("id") == grade_id)


# A correct answer whose guard black wrapped: the continuation line starts with "!=".
WRAPPED = '''def momentum_step(w, grad, v, lr=0.01, momentum=0.9):
    if (
        momentum
        != momentum  # NaN is the one value not equal to itself
    ):
        raise ValueError("momentum is NaN")
{body}'''


def _momentum_body() -> str:
    ref = _reference("03_optimizers", "q1-solution")
    return ref.split("\n", 1)[1]  # the reference's body, after its def line


def test_a_wrapped_condition_is_python_and_magics_become_calls():
    src = WRAPPED.format(body=_momentum_body())
    assert as_python(src).rstrip("\n") == src.rstrip("\n")  # nothing to change: it is plain Python
    compile(as_python(src), "<cell>", "exec")
    cell = "%matplotlib inline\n!pip install torch\nfiles = !ls\n%time y = 2 * 3\nprint(y)\n"
    ns: dict = {"get_ipython": lambda: NoShell(ns)}
    exec(compile(as_python(cell), "<cell>", "exec"), ns)
    assert ns["y"] == 6 and ns["files"] == []
    timed = "%%time\nz = 7\n"
    exec(compile(as_python(timed), "<cell>", "exec"), ns)
    assert ns["z"] == 7  # a timing cell magic still runs its cell
    exec(compile(as_python("%%writefile x.py\nprint('not run')\n"), "<cell>", "exec"), ns)  # does nothing


def _formatted(nb, formatter: str):
    """Every code cell of ``nb`` reformatted by black or by ruff (cells they cannot parse stay as they are)."""
    import black

    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if formatter == "black":
            try:
                cell.source = black.format_str(cell.source, mode=black.Mode()).rstrip("\n")
            except black.InvalidInput:
                pass
        else:
            proc = subprocess.run([str(RUFF), "format", "--stdin-filename", "cell.py", "-"], input=cell.source,
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                cell.source = proc.stdout.rstrip("\n")
    return nb


@needs_isolation
@pytest.mark.parametrize("name", LABS)
def test_the_reference_formatted_by_black_or_ruff_gets_full_marks(name, tmp_path):
    subs = tmp_path / "subs"
    for formatter in ("black", "ruff"):
        write(_formatted(solved(name), formatter), subs / f"{formatter}.ipynb")
    report = grade(name, [subs], tmp_path / "out", workers=2, limits=LIMITS, progress=False)
    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
    assert report.exit_code == 0
    for formatter in ("black", "ruff"):
        assert float(rows[formatter]["score"]) == lab(name).max_score, (formatter, rows[formatter])


@needs_isolation
def test_a_black_wrapped_condition_and_magics_keep_their_marks(tmp_path):
    name = "03_optimizers"
    wrapped = replace_solution(solved(name), "q1-solution", WRAPPED.format(body=_momentum_body()))
    magics = replace_solution(solved(name), "q1-solution",
                              "%time _ = 1\n!echo hello\n" + _reference(name, "q1-solution"))
    subs = tmp_path / "subs"
    write(wrapped, subs / "wrapped.ipynb")
    write(magics, subs / "magics.ipynb")
    grade(name, [subs], tmp_path / "out", workers=2, limits=LIMITS, progress=False)
    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
    for who in ("wrapped", "magics"):
        assert float(rows[who]["q1"]) == question_points(name)["q1"], rows[who]
        assert float(rows[who]["score"]) == lab(name).max_score, rows[who]


@needs_isolation
@pytest.mark.parametrize("where, labs", [
    ("/tmp", ["06_regularization", "07_hyperparameter_search", "08_capstone"]),
    ("/home", ["08_capstone"]),
])
def test_the_reference_gets_full_marks_with_the_python_environment_under(where, labs, tmp_path):
    """The runtime is visible wherever it lives. The child's private /tmp once covered an environment
    under /tmp: imports done before the fork worked, lazy ones failed (numpy.random, torch._dynamo),
    and honest lab-8 students got 8/16. Here the environment is bound at ``where`` in a private
    mount namespace and graded from there."""
    import shutil
    import tempfile

    if sys.prefix == sys.base_prefix:
        pytest.skip("needs the tests to run in a virtual environment (it is moved under " + where + ")")
    if not os.path.isdir(where) or not shutil.which("unshare"):
        pytest.skip(f"needs {where} and util-linux's unshare")
    subs, out = tmp_path / "subs", tmp_path / "out"
    for name in labs:
        write(solved(name), subs / name / "ref.ipynb")
    spot = Path(tempfile.mkdtemp(prefix="ag-env-", dir=where))
    python = spot / "venv" / "bin" / Path(sys.executable).name
    script = f"mkdir -p {spot}/venv && mount --bind {sys.prefix} {spot}/venv && " + " && ".join(
        f"{python} -m autograder grade --lab {name} --out {out / name} {subs / name} --workers 2 --seed 1 "
        f"--no-progress --timeout 120" for name in labs)
    try:
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, text=True, timeout=900, cwd=ROOT)
    finally:
        shutil.rmtree(spot, ignore_errors=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for name in labs:
        row = next(csv.DictReader(open(out / name / "grades.csv")))
        assert float(row["score"]) == lab(name).max_score, (name, where, row)


@needs_isolation
def test_a_notebook_whose_editor_stripped_the_cell_metadata_is_not_tampered(tmp_path):
    """Locked cells are known by their content when their ids and metadata are gone."""
    name = "03_optimizers"
    stripped = solved(name)
    for cell in stripped.cells:
        cell.metadata = {}
    edited = solved(name)
    setup = next(c for c in edited.cells if c.metadata["autograder"]["grade_id"] == "setup")
    setup.metadata, setup.source = {}, setup.source + "\nprint('changed')"
    subs = tmp_path / "subs"
    write(stripped, subs / "stripped.ipynb")
    write(edited, subs / "edited.ipynb")
    grade(name, [subs], tmp_path / "out", workers=2, limits=LIMITS, progress=False)
    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
    assert float(rows["stripped"]["score"]) == lab(name).max_score, rows["stripped"]
    assert rows["stripped"]["tampered"] == "", rows["stripped"]["tampered"]
    # A locked cell that was changed is still noticed (it no longer matches, so the original ran).
    assert "'setup'" in rows["edited"]["tampered"], rows["edited"]


def _class_folder(root: Path) -> Path:
    """A folder as instructors get them: editor debris, macOS archive debris and links beside real work."""
    import os

    subs = root / "subs"
    (subs / "alice" / ".ipynb_checkpoints").mkdir(parents=True)
    (subs / "alice" / "lab.ipynb").write_text("{}")
    (subs / "alice" / ".ipynb_checkpoints" / "lab-checkpoint.ipynb").write_text("{}")
    (subs / "alice" / "._lab.ipynb").write_text("junk")
    (subs / "__MACOSX" / "alice").mkdir(parents=True)
    (subs / "__MACOSX" / "alice" / "._lab.ipynb").write_text("junk")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lab.ipynb").write_text("{}")
    os.symlink(elsewhere, subs / "bob")
    os.symlink(elsewhere / "lab.ipynb", subs / "carol.ipynb")
    return subs


@pytest.mark.parametrize("mode", ["folder", "student", "archive"])
def test_one_rule_for_which_files_are_candidates_in_every_mode(mode, tmp_path):
    """Checkpoints, hidden files and __MACOSX are never candidates; a link is reported, never dropped."""
    import zipfile

    from autograder.status import Status
    from autograder.submissions import collect

    subs = _class_folder(tmp_path)
    if mode == "archive":
        archive = tmp_path / "export.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for path in sorted(subs.rglob("*")):
                rel = str(path.relative_to(subs))
                if path.is_symlink():
                    info = zipfile.ZipInfo(rel + ("/lab.ipynb" if path.is_dir() else ""))
                    info.external_attr = (0o120777) << 16
                    z.writestr(info, str(path.resolve()))
                elif path.is_file():
                    z.write(path, rel)
        found, _ = collect([archive], "03_optimizers")
    else:
        found, _ = collect([subs], "03_optimizers", student="s1" if mode == "student" else None)
    names = sorted((s.member or str(Path(s.origin).relative_to(subs))) for s in found)
    assert names == ["alice/lab.ipynb", "bob" if mode != "archive" else "bob/lab.ipynb", "carol.ipynb"], names
    links = [s for s in found if "alice" not in (s.member or s.origin)]
    assert all(s.status == Status.UNREADABLE and "symbolic link" in s.message for s in links), \
        [(s.origin, s.status, s.message) for s in links]
