"""``export-gradescope``: a Gradescope autograder bundle that runs this same grader.

The zip holds ``setup.sh`` (installs libseccomp and the Python packages of pyproject.toml), ``run_autograder`` (grades
``/autograder/submission`` into ``/autograder/results/results.json``), and the
code and lab files it needs. Upload it as a Gradescope "zip file upload"
autograder. Set ``AUTOGRADER_HOME``/``AUTOGRADER_PYTHON`` to try it locally.
"""
from __future__ import annotations

import shlex
import zipfile
from pathlib import Path

from .lab import DEFAULT_LABS_DIR, find_lab

ROOT = Path(__file__).resolve().parents[1]

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
# libseccomp2 is the grader sandbox's system-call filter; the Python packages are the
# course's own dependencies and the grader's extra, read from pyproject.toml at export time.
set -euo pipefail
apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip libseccomp2
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q torch=={torch} --index-url https://download.pytorch.org/whl/cpu \\
  || /autograder/venv/bin/pip install -q torch=={torch}
/autograder/venv/bin/pip install -q {packages}
"""


def grader_packages(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The pip requirements the bundle installs besides torch: the project's dependencies and
    its ``grader`` extra, as pyproject.toml states them (so the two cannot drift apart).

    >>> any(p.startswith("pyseccomp") for p in grader_packages())
    True
    """
    try:
        import tomllib                                   # Python >= 3.11
    except ImportError:                                  # 3.10: the installed package's metadata says the same
        from importlib.metadata import requires
        reqs = requires("coursekit") or []
        wanted = [r.split(";")[0].strip() for r in reqs
                  if ";" not in r or r.split(";", 1)[1].replace("'", '"').replace(" ", "") == 'extra=="grader"']
    else:
        project = tomllib.loads(pyproject.read_text())["project"]
        wanted = project["dependencies"] + project["optional-dependencies"]["grader"]
    return [req for req in wanted if not req.replace(" ", "").startswith("torch")]


RUN = """#!/usr/bin/env bash
# Gradescope runs this for each submission. It grades with the course's own autograder:
# student code runs in a sandboxed child; the judge and the hidden tests stay out of its reach.
# All of /autograder/submission is one student's; the grader picks the lab's notebook by its
# name ({lab}.ipynb), else by the lab id in its metadata, else the newest, and says so in the output.
set -uo pipefail
HOME_DIR="${{AUTOGRADER_HOME:-/autograder}}"
PY="${{AUTOGRADER_PYTHON:-$HOME_DIR/venv/bin/python}}"
OUT="$HOME_DIR/grading-out"
chmod -R go-rwx "$HOME_DIR/source/labs/source"      # hidden tests: root only, even without namespaces
rm -rf "$OUT" && mkdir -m 700 -p "$OUT" "$HOME_DIR/results"
cd "$HOME_DIR/source"
"$PY" -m autograder grade --lab {lab} "$HOME_DIR/submission" --student submission --out "$OUT" \\
  --workers 1 --timeout {timeout} --hidden-visibility {hidden_visibility} --no-progress 2> "$OUT/stderr.txt"
code=$?
cat "$OUT/stderr.txt" >&2
if [ -f "$OUT/results/submission.json" ]; then
  cp "$OUT/results/submission.json" "$HOME_DIR/results/results.json"
else
  # The grader did not run (broken set-up, missing packages): say so; it is not the student's fault.
  details=$(tail -n 5 "$OUT/stderr.txt" 2>/dev/null | tr '\\n\\t' '  ' | tr -d '\\000-\\037' \\
            | sed 's/\\\\/\\\\\\\\/g; s/"/\\\\"/g' | cut -c1-1500)
  printf '{{"score": 0, "output": "The autograder itself could not run (exit code %s). This is a set-up problem, not a problem with your notebook: please tell your instructor. Details: %s", "output_format": "text", "tests": []}}\\n' "$code" "$details" > "$HOME_DIR/results/results.json"
fi
"""


def export_bundle(lab: str, out: Path, labs_dir: Path = DEFAULT_LABS_DIR, timeout: float = 600,
                  hidden_visibility: str = "visible") -> Path:
    """Write the bundle for ``lab`` to the zip file ``out``; returns its path."""
    import torch
    from .export import VISIBILITIES
    if hidden_visibility not in VISIBILITIES:
        raise ValueError(f"hidden_visibility must be one of {', '.join(VISIBILITIES)}; got {hidden_visibility!r}")
    find_lab(lab, labs_dir)
    labs_dir, out = Path(labs_dir), Path(out)
    student = labs_dir / f"{lab}.ipynb"
    checks = labs_dir / "checks" / f"{lab}.json"
    for p in (student, checks):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing; run `python -m autograder assign --lab {lab}` first")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        def add_text(name: str, text: str, mode: int = 0o644) -> None:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)

        packages = " ".join(shlex.quote(p) for p in grader_packages())
        add_text("setup.sh", SETUP.format(torch=torch.__version__.split("+")[0], packages=packages), 0o755)
        add_text("run_autograder", RUN.format(lab=lab, timeout=int(timeout), hidden_visibility=hidden_visibility),
                 0o755)
        for pkg in ("autograder", "coursekit"):
            for f in sorted((ROOT / pkg).rglob("*.py")):       # subpackages too (coursekit/checks)
                if "__pycache__" not in f.parts:
                    z.write(f, f.relative_to(ROOT).as_posix())
        z.write(find_lab(lab, labs_dir), f"labs/source/{lab}.ipynb")
        z.write(student, f"labs/{lab}.ipynb")
        z.write(checks, f"labs/checks/{lab}.json")
    return out
