"""Write the course as students get it: everything committed except the instructor material.

    python tools/student_release.py OUT_DIR [--rev HEAD]      (or: make student-release)

Left out: ``labs/source/`` (solutions and hidden tests), the grader (``autograder/``),
its tests and its benchmark, and this tool with its test. The student notebooks
``labs/<lab>.ipynb`` and their self-check data ``labs/checks/`` stay. The copy's
``README.md`` is ``tools/student_README.md``, written for students. The copy is taken from a git revision, so
uncommitted work never leaks into it, and it is checked for solution or hidden-test
markers before the command reports success.
"""
from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTOR_ONLY = ("labs/source/", "autograder/", "tests/autograder/", "benchmarks/bench_grading.py",
                   "tools/student_release.py", "tests/test_student_release.py", "tools/student_README.md")
STUDENT_README = "tools/student_README.md"
# Any other Python file that uses the grader (a benchmark, a tool) is instructor-only too.
USES_GRADER = re.compile(rb"^\s*(from|import)\s+autograder\b", re.MULTILINE)
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def release(out: Path, rev: str = "HEAD") -> list[str]:
    """Extract ``rev`` into ``out`` without the instructor-only paths; return the files written."""
    inside = out.resolve() == ROOT or ROOT in out.resolve().parents
    if inside and not out.resolve().is_relative_to(ROOT / "_build"):
        raise ValueError(f"OUT_DIR must be outside the repository, or under _build/; got {out}")
    tar = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True).stdout
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = [m for m in archive.getmembers()
                   if not any(m.name == p.rstrip("/") or m.name.startswith(p) for p in INSTRUCTOR_ONLY)
                   and not (m.isfile() and m.name.endswith(".py") and USES_GRADER.search(archive.extractfile(m).read()))]
        archive.extractall(out, members=members, filter="data")
        written = [m.name for m in members if m.isfile()]
        (out / "README.md").write_bytes(archive.extractfile(STUDENT_README).read())
    # The labs are where a solution could slip through (docs elsewhere name the markers).
    leaks = [name for name in written if name.startswith("labs/")
             and any(marker in (out / name).read_text(errors="replace") for marker in MARKERS)]
    if leaks:
        raise RuntimeError(f"solution or hidden-test markers in the student copy: {leaks}")
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    parser.add_argument("--rev", default="HEAD", help="git revision to release (default HEAD)")
    args = parser.parse_args(argv)
    files = release(args.out, args.rev)
    print(f"student copy of {args.rev}: {len(files)} files in {args.out} "
          f"(left out: {', '.join(INSTRUCTOR_ONLY)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
