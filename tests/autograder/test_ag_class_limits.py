"""Caps before parsing, validation rules with one status type, and the Gradescope bundle run
in a simulated /autograder layout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import submissions
from autograder.grader import ROOT
from autograder.status import Status
from autograder.submissions import MAX_BYTES, MAX_MEMBERS, Validator, check_notebook

from ag_helpers import lab, needs_isolation, solved, student, write

LAB = "03_optimizers"
PY = sys.executable
FAST = ["--timeout", "60", "--cell-timeout", "10", "--probe-timeout", "5", "--no-progress"]


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "autograder", *map(str, args)], cwd=ROOT, capture_output=True, text=True, **kw)


def test_every_validation_rule_returns_the_one_status_type():
    good = nbformat.writes(student(LAB)).encode()
    cases = {b"  \n": Status.EMPTY_FILE, b"\x00\x01": Status.BINARY_FILE, b"\xff\xfe{": Status.BINARY_FILE,
             b'{"cells": [': Status.INVALID_JSON, b'{"a": 1}': Status.WRONG_FORMAT,
             b'{"cells": [], "nbformat": 3}': Status.WRONG_FORMAT,
             json.dumps({"cells": [{}] * (submissions.MAX_CELLS + 1), "nbformat": 4}).encode(): Status.TOO_LARGE,
             json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
                 {"cell_type": "code", "id": "a", "source": "", "metadata": {}, "execution_count": None,
                  "outputs": [{"output_type": "stream", "name": "stdout", "text": ""}] * (submissions.MAX_OUTPUTS + 1)}]}
                        ).encode(): Status.TOO_LARGE,
             json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "nope"}]}
                        ).encode(): Status.WRONG_FORMAT,
             nbformat.writes(student("01_backprop")).encode(): Status.WRONG_LAB,
             good: Status.PENDING}
    for data, want in cases.items():
        got = check_notebook(data, LAB)
        assert Status(got["status"]) is want, (data[:60], got)
        assert want == Status.PENDING or got["message"]
    # The notebook the grader keeps has no outputs, whatever the file held.
    nb = solved(LAB)
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="x" * 1000)]
    kept = check_notebook(nbformat.writes(nb).encode(), LAB)["notebook"]
    assert all(c.get("outputs", []) == [] for c in kept["cells"]) and "x" * 1000 not in json.dumps(kept)


def test_validation_runs_in_a_separate_process_with_a_time_out(tmp_path):
    big = nbformat.writes(student(LAB)).replace('"cells": [', '"padding": "' + "a" * 30_000_000 + '", "cells": [', 1)
    with Validator(timeout=0.05) as v:
        slow = v.check(big.encode(), LAB)
        assert Status(slow["status"]) is Status.TOO_LARGE and "longer than 0.05 s" in slow["message"]
        pid = v.proc
        assert pid is None                          # killed; the next notebook gets a fresh process
        v.timeout = 30
        assert v.check(nbformat.writes(student(LAB)).encode(), LAB)["status"] == "pending"
        assert v.proc.pid != os.getpid()


def test_an_archive_over_the_member_cap_stops_the_run_before_grading(tmp_path):
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as f:
        for i in range(MAX_MEMBERS + 1):
            f.writestr(f"s{i}_1{i}_2_{LAB}.ipynb", "{}")
    r = cli("grade", "--lab", LAB, z, "--out", tmp_path / "out", *FAST)
    assert r.returncode == 2 and f"over the cap of {MAX_MEMBERS}" in r.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()


def test_a_zip_bomb_of_large_members_is_read_one_member_at_a_time(tmp_path):
    """Old code held every member in memory at once (2.1 GB for a 1.9 MB zip of 40 members)."""
    z = tmp_path / "bomb.zip"
    member = b'{"nbformat": 4, "cells": [], "x": "' + b" " * (MAX_BYTES - 100) + b'"}'
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
        for i in range(6):
            f.writestr(f"s{i}_1{i}_2_{LAB}.ipynb", member)
        f.writestr(f"big_19_2_{LAB}.ipynb", member + b" " * 200)       # one over the size cap
    assert z.stat().st_size < 1_000_000
    code = ("import resource; from autograder.grader import grade; from autograder.lab import load_lab; "
            f"load_lab({LAB!r}); before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"rep = grade({LAB!r}, [{str(z)!r}], {str(tmp_path / 'out')!r}, progress=False); "
            "print(sorted({r.status.value for r in rep.records}), len(rep.records)); "
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    r = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    statuses, growth_mb = r.stdout.splitlines()
    assert statuses == "['too_large', 'wrong_lab'] 7"
    assert int(growth_mb) < 150, f"grading held {growth_mb} MB more for 6 members of 50 MB"


# ------------------------------------------------------------------ Gradescope, simulated

ALLOWED_TOP = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
               "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
ALLOWED_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
                "tags", "visibility", "extra_data"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}


def check_gradescope_format(res: dict) -> None:
    """results.json as Gradescope's autograder specification documents it."""
    assert set(res) <= ALLOWED_TOP, set(res) - ALLOWED_TOP
    assert isinstance(res["score"], (int, float))
    assert isinstance(res.get("execution_time", 0), (int, float))
    for key in ("visibility", "stdout_visibility"):
        assert res.get(key, "visible") in VISIBILITY
    for key in ("output_format", "test_output_format"):
        assert res.get(key, "text") in FORMATS
    for t in res.get("tests", []):
        assert set(t) <= ALLOWED_TEST, set(t) - ALLOWED_TEST
        assert isinstance(t["score"], (int, float)) and isinstance(t["max_score"], (int, float))
        assert t.get("status", "passed") in ("passed", "failed")
        assert t.get("visibility", "visible") in VISIBILITY and t.get("output_format", "text") in FORMATS
        assert isinstance(t.get("output", ""), str) and isinstance(t["name"], str)
    if res.get("tests"):
        assert res["score"] == pytest.approx(sum(t["score"] for t in res["tests"]))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "bundle.zip"
    r = cli("export-gradescope", "--lab", LAB, "--out", path, "--hidden-visibility", "after_due_date")
    assert r.returncode == 0, r.stderr
    return path


def gradescope_run(bundle: Path, home: Path, files: dict[str, object], python: str = PY) -> tuple[dict, str]:
    with zipfile.ZipFile(bundle) as z:
        z.extractall(home / "source")
    (home / "submission").mkdir(parents=True)
    for name, nb in files.items():
        write(nb, home / "submission" / name)
    env = {**os.environ, "AUTOGRADER_HOME": str(home), "AUTOGRADER_PYTHON": python}
    run = subprocess.run(["bash", str(home / "source" / "run_autograder")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return json.loads((home / "results" / "results.json").read_text()), run.stderr


def test_gradescope_setup_installs_the_sandbox_and_every_dependency(bundle, monkeypatch):
    """setup.sh gets libseccomp (the sandbox's filter) and every package pyproject.toml lists for the
    course and the grader, on Python 3.11 (tomllib) and on 3.10 (installed metadata) alike."""
    import tomllib
    from autograder import gradescope
    with zipfile.ZipFile(bundle) as z:
        setup = z.read("setup.sh").decode()
    assert "libseccomp2" in setup
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["grader"]:
        if not req.startswith("torch"):
            assert f"'{req}'" in setup, f"setup.sh does not install {req}"
    from_toml = gradescope.grader_packages()
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10
    assert sorted(gradescope.grader_packages()) == sorted(from_toml)


@needs_isolation
def test_gradescope_bundle_grades_the_lab_notebook_beside_drafts(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
    assert {"setup.sh", "run_autograder", "autograder/status.py", "coursekit/checks/plain.py"} <= names
    draft = student(LAB)                                   # has the lab's metadata, but not its name
    res, err = gradescope_run(bundle, tmp_path / "autograder", {"00_draft.ipynb": draft, "Untitled.ipynb": student("01_backprop"),
                                                                f"{LAB}.ipynb": solved(LAB)})
    check_gradescope_format(res)
    assert res["score"] == lab(LAB).max_score
    assert f"graded {LAB}.ipynb because its name is {LAB}.ipynb" in res["output"]
    assert "00_draft.ipynb (valid)" in res["output"] and "Untitled.ipynb (wrong_lab)" in res["output"]
    assert isinstance(res["execution_time"], int)
    hidden = [t for t in res["tests"] if "hidden test" in t["name"]]
    assert hidden and all(t["visibility"] == "after_due_date" and t["output"] == "passed" for t in hidden)
    assert all(t["status"] == "passed" for t in res["tests"])


@needs_isolation
def test_gradescope_explains_a_failed_cell_in_the_test_output(bundle, tmp_path):
    nb = solved(LAB)
    for cell in nb.cells:
        if cell.metadata["autograder"]["grade_id"] == "q2-solution":
            cell.source = "def rmsprop_step(w, grad, s:\n    pass"
    res, _ = gradescope_run(bundle, tmp_path / "autograder", {"renamed.ipynb": nb})   # found by its metadata
    check_gradescope_format(res)
    q2 = [t for t in res["tests"] if t["name"].startswith("q2") and "hidden" not in t["name"]]
    assert q2 and all(t["status"] == "failed" and "SyntaxError" in t["output"] and "q2-solution" in t["output"]
                      for t in q2)
    assert "Cells that failed" in res["output"]


def test_gradescope_says_when_its_set_up_is_broken_or_no_notebook_came(bundle, tmp_path):
    res, _ = gradescope_run(bundle, tmp_path / "a", {f"{LAB}.ipynb": solved(LAB)}, python="/nonexistent/python")
    check_gradescope_format(res)
    assert res["score"] == 0 and "set-up problem, not a problem with your notebook" in res["output"]
    home = tmp_path / "b"
    res, _ = gradescope_run(bundle, home, {})
    check_gradescope_format(res)
    assert res["score"] == 0 and "no notebook (.ipynb) was found" in res["output"]
