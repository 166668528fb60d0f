"""Command line: ``python -m autograder {assign,grade,export-gradescope}``.

    python -m autograder assign [--lab LAB]
    python -m autograder grade --lab LAB SUBMISSION... --out DIR [--workers N] [--timeout SECONDS]
    python -m autograder export-gradescope --lab LAB [--out DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .source import DEFAULT_LABS_DIR, LabError, SourceError, find_lab


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assign", help="make the student notebooks (labs/<lab>.ipynb) from labs/source")
    a.add_argument("--lab", action="append", help="only this lab (repeatable); default: all")
    a.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR)
    g = sub.add_parser("grade", help="grade submissions into --out")
    g.add_argument("--lab", required=True)
    g.add_argument("submissions", nargs="+", help="notebooks, folders or .zip files")
    g.add_argument("--out", required=True, type=Path)
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--timeout", type=float, default=300.0, help="wall-clock seconds per submission (default 300)")
    g.add_argument("--cell-timeout", type=float, default=None, help="seconds per cell (default min(30, timeout))")
    g.add_argument("--probe-timeout", type=float, default=None, help="seconds per probe (default min(10, timeout))")
    g.add_argument("--memory-mb", type=int, default=1024)
    g.add_argument("--seed", type=int, default=None, help="seed of the test inputs (default: fresh each run)")
    g.add_argument("--regrade", action="store_true", help="grade again even what the gradebook already has")
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR)
    e = sub.add_parser("export-gradescope", help="write a Gradescope autograder bundle for a lab")
    e.add_argument("--lab", required=True)
    e.add_argument("--out", type=Path, default=None, help="zip file to write (default: <lab>-gradescope.zip)")
    e.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR)
    args = p.parse_args(argv)
    try:
        if args.command == "assign":
            from .lab import assign
            for path in assign(args.labs_dir, args.lab):
                print(f"wrote {path}")
            return 0
        if args.command == "grade":
            find_lab(args.lab, args.labs_dir)        # fail fast, before torch is even imported
            missing = [p for p in args.submissions if not Path(p).exists()]
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
                           limits=limits, seed=args.seed, progress=not args.no_progress, regrade=args.regrade)
            bad = [r for r in report.records if r.status != "graded"]
            print(f"graded {len(report.records)} submission(s) of {args.lab} "
                  f"({report.graded_now} now, {report.reused} from the gradebook; isolation: {report.isolation}) "
                  f"in {report.wall_s:.1f} s; {len(bad)} not fully graded; see {args.out / 'grades.csv'}")
            return report.exit_code
        if args.command == "export-gradescope":
            from .gradescope import export_bundle
            path = export_bundle(args.lab, args.out or Path(f"{args.lab}-gradescope.zip"), args.labs_dir)
            print(f"wrote {path}")
            return 0
    except (LabError, SourceError, ValueError, OSError) as err:
        print(f"autograder: error: {err}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
