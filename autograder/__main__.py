"""Command line: ``python -m autograder {assign,grade,export,written,export-gradescope}``.

    python -m autograder assign [--lab LAB]
    python -m autograder grade --lab LAB SUBMISSION... --out DIR [--roster CSV] [--policy TOML] [--newest]
    python -m autograder export --lab LAB --out DIR
    python -m autograder written collect --lab LAB --out DIR
    python -m autograder written marks --lab LAB --out DIR MARKS.csv
    python -m autograder export-gradescope --lab LAB [--out ZIP] [--hidden-visibility V]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .source import DEFAULT_LABS_DIR, LabError, SourceError, find_lab

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assign", help="make the student notebooks (labs/<lab>.ipynb) from labs/source")
    a.add_argument("--lab", action="append", help="only this lab (repeatable); default: all")
    a.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR)

    g = sub.add_parser("grade", help="grade submissions into the gradebook in --out, then export the lab")
    g.add_argument("--lab", required=True)
    g.add_argument("submissions", nargs="+", help="folders (one subfolder per student), notebooks, or LMS .zip files")
    g.add_argument("--out", required=True, type=Path)
    g.add_argument("--roster", type=Path, help="CSV student,file[,submitted_at,name,email,canvas_id,sis_id,section]")
    g.add_argument("--student", help="all submissions belong to this one student (as on Gradescope)")
    g.add_argument("--newest", action="store_true", help="grade the newest of several notebooks of a student "
                                                          "(default: stop and name them)")
    g.add_argument("--policy", type=Path, help="TOML file with due dates and late policies (see autograder/late.py)")
    g.add_argument("--hidden-visibility", choices=VISIBILITIES, default=None,
                   help="Gradescope visibility of hidden tests (default: visible; see autograder/README.md)")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--timeout", type=float, default=300.0, help="wall-clock seconds per submission (default 300)")
    g.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell (default min(30, timeout))")
    g.add_argument("--probe-timeout", type=float, default=None, help="seconds per probe (default min(10, timeout))")
    g.add_argument("--memory-mb", type=int, default=1024)
    g.add_argument("--seed", type=int, default=None, help="seed of the test inputs (default: fresh each run)")
    g.add_argument("--regrade", action="store_true", help="grade again even what the gradebook already has")
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR)

    x = sub.add_parser("export", help="write grades.csv, results/, feedback/, canvas.csv, nbgrader.csv "
                                      "from the gradebook in --out alone")
    x.add_argument("--lab", required=True)
    x.add_argument("--out", required=True, type=Path)

    w = sub.add_parser("written", help="hand-marked written answers")
    wsub = w.add_subparsers(dest="action", required=True)
    wc = wsub.add_parser("collect", help="write out/written/<question>.md (every answer) and <question>-marks.csv")
    wm = wsub.add_parser("marks", help="read marks (CSV student,question,points,comment) into the gradebook")
    for q in (wc, wm):
        q.add_argument("--lab", required=True)
        q.add_argument("--out", required=True, type=Path)
    wm.add_argument("marks", nargs="+", type=Path, help="CSV files with columns student,question,points[,comment]")
    wi = wsub.add_parser("mark", help="mark the answers to one question at a prompt")
    wi.add_argument("--lab", required=True)
    wi.add_argument("--out", required=True, type=Path)
    wi.add_argument("--question", required=True)

    e = sub.add_parser("export-gradescope", help="write a Gradescope autograder bundle for a lab")
    e.add_argument("--lab", required=True)
    e.add_argument("--out", type=Path, default=None, help="zip file to write (default: <lab>-gradescope.zip)")
    e.add_argument("--hidden-visibility", choices=VISIBILITIES, default="visible",
                   help="Gradescope visibility of hidden tests (default: visible; see autograder/README.md)")
    e.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR)
    return p


def _gradebook(out: Path):
    from .gradebook import Gradebook
    path = out / "gradebook.sqlite"
    if not path.is_file():
        raise ValueError(f"no gradebook at {path}; run `python -m autograder grade ... --out {out}` first")
    return Gradebook(path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "assign":
            from .lab import assign
            for path in assign(args.labs_dir, args.lab):
                print(f"wrote {path}")
            return 0
        if args.command == "grade":
            return _grade(args)
        if args.command == "export":
            from .export import export_lab
            book = _gradebook(args.out)
            try:
                problems = export_lab(args.out, book, args.lab)
                n = len(book.current(args.lab))
            finally:
                book.close()
            for p in problems:
                print(f"autograder: error: {p}", file=sys.stderr)
            print(f"exported {n} student(s) of {args.lab} from {args.out / 'gradebook.sqlite'} into {args.out}")
            return int(bool(problems))
        if args.command == "written":
            from . import written
            book = _gradebook(args.out)
            try:
                if args.action == "collect":
                    for path in written.collect(book, args.lab, args.out):
                        print(f"wrote {path}")
                    return 0
                if args.action == "marks":
                    n = sum(written.read_marks(book, args.lab, path) for path in args.marks)
                    print(f"stored {n} mark(s) for {args.lab}")
                else:
                    n = written.prompt_marks(book, args.lab, args.question)
                    print(f"stored {n} mark(s) for {args.lab} {args.question}")
                from .export import export_lab
                book.refresh_final(args.lab)
                problems = export_lab(args.out, book, args.lab)
            finally:
                book.close()
            print(f"exported {args.lab} into {args.out}")
            return int(bool(problems))
        if args.command == "export-gradescope":
            from .gradescope import export_bundle
            path = export_bundle(args.lab, args.out or Path(f"{args.lab}-gradescope.zip"), args.labs_dir,
                                 hidden_visibility=args.hidden_visibility)
            print(f"wrote {path}")
            return 0
    except (LabError, SourceError, ValueError, OSError) as err:
        print(f"autograder: error: {err}", file=sys.stderr)
        return 2
    return 2


def _grade(args) -> int:
    find_lab(args.lab, args.labs_dir)        # fail fast, before torch is even imported
    missing = [p for p in args.submissions if not Path(p).exists() and not Path(p).is_symlink()]
    if missing:
        raise ValueError(f"submission path(s) not found: {', '.join(missing)}")
    from .grader import check_out_dir, grade
    check_out_dir(args.out)
    from .sandbox import Limits
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds; got {args.timeout}")
    limits = Limits(timeout=args.timeout, cell_timeout=args.cell_timeout or min(30.0, args.timeout),
                    probe_timeout=args.probe_timeout or min(10.0, args.timeout), memory_mb=args.memory_mb,
                    cpu_seconds=int(args.timeout) + 60)
    report = grade(args.lab, args.submissions, args.out, workers=args.workers, labs_dir=args.labs_dir,
                   limits=limits, seed=args.seed, progress=not args.no_progress, regrade=args.regrade,
                   roster=args.roster, student=args.student, newest=args.newest, policy=args.policy,
                   hidden_visibility=args.hidden_visibility)
    bad = [r for r in report.records if r.status != "graded"]
    for r in bad:
        if r.status == "internal_error":
            print(f"autograder: error: {r.message}", file=sys.stderr)
    print(f"graded {len(report.records)} submission(s) of {args.lab} "
          f"({report.graded_now} now, {report.reused} from the gradebook; isolation: {report.isolation}) "
          f"in {report.wall_s:.1f} s; {len(bad)} not fully graded; see {args.out / 'grades.csv'}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
