"""Grade a class: validate, run each submission in a sandboxed child, judge, store, export.

>>> report = grade("01_backprop", ["submissions/"], "out/", workers=2)   # doctest: +SKIP
>>> report.exit_code                                                     # doctest: +SKIP
0
"""
from __future__ import annotations

import hashlib
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .export import write_all
from .gradebook import Gradebook, Record
from .judge import Probe, make_record, plan_cells
from .lab import DEFAULT_LABS_DIR, Lab, find_lab, load_lab
from coursekit.checks.plain import decode
from .pool import WorkerError, WorkerProcess
from .sandbox import Limits
from .submissions import BAD_INPUT, Submission, collect, mark_duplicates, validate

ROOT = Path(__file__).resolve().parents[1]


class GradingError(ValueError):
    """A problem with the command itself (lab, output folder), found before any work starts."""


@dataclass
class Report:
    """What one ``grade`` call did."""
    records: list[Record]
    graded_now: int
    reused: int
    isolation: str
    wall_s: float
    stats: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """1 when any submission could not be graded (bad input or an internal error), else 0."""
        return int(any(r.status in BAD_INPUT or r.status == "internal_error" for r in self.records))


def check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise GradingError(f"cannot write to the output folder {out}: {e.strerror or e}; "
                           "pass --out with a folder you can write") from e


def sandbox_paths(lab_dir: Path, out: Path, inputs: list[Path]) -> tuple[list[str], list[str]]:
    """Paths to hide from the child, and the few to keep (read-only) inside hidden ones."""
    hide = {ROOT, ROOT.parent if ROOT.parent != Path("/") else ROOT, lab_dir, lab_dir / "source", out,
            Path(tempfile.gettempdir()), Path("/root"), Path("/home"), Path("/run"), Path("/mnt"), Path("/media")}
    hide |= {p.resolve().parent if p.is_file() else p.resolve() for p in inputs}
    keep = {str(ROOT / "coursekit"), str(ROOT / "autograder")}   # the sandbox adds the Python runtime itself
    import coursekit
    keep.add(str(Path(coursekit.__file__).resolve().parent))
    return [str(Path(h).resolve()) for h in hide if h.exists()], sorted(str(Path(k).resolve()) for k in keep)


def make_probes(lab: Lab, run_seed: int) -> list[Probe]:
    """Fresh inputs for every case from ``run_seed``, with reference answers computed here."""
    probes = []
    for c in lab.cases:
        steps = c.steps(c.seed(run_seed))
        plain = [s.to_plain() for s in steps]       # before the reference can touch the inputs
        expected = decode(lab.expected([steps])[0])
        probes.append(Probe(c, steps, plain, expected))
    return probes


def submission_seed(run_seed: int, student: str) -> int:
    """Each submission's own input seed, so that answers cannot be copied between students."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}/{student}".encode()).digest()[:8], "big") >> 2


def grade(lab_name: str, inputs: list[str | Path], out: str | Path, workers: int = 1,
          timeout: float = 300.0, labs_dir: str | Path = DEFAULT_LABS_DIR, limits: Limits | None = None,
          seed: int | None = None, progress: bool = True, regrade: bool = False) -> Report:
    """Grade every submission in ``inputs`` for ``lab_name`` and write the exports into ``out``."""
    t0 = time.monotonic()
    labs_dir, out = Path(labs_dir), Path(out)
    if not isinstance(workers, int) or workers < 1:
        raise GradingError(f"workers must be a whole number >= 1; got {workers!r}")
    find_lab(lab_name, labs_dir)                     # LabError (a ValueError) if missing
    check_out_dir(out)
    if not inputs:
        raise GradingError("no submissions given; pass notebooks, folders or .zip files")
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        raise GradingError(f"submission path(s) not found: {', '.join(missing)}")
    limits = limits or Limits(timeout=timeout, cell_timeout=min(30.0, timeout), probe_timeout=min(10.0, timeout),
                              cpu_seconds=int(timeout) + 60)

    subs = collect(list(inputs), lab_name)
    for s in subs:
        validate(s, lab_name)
    mark_duplicates(subs)
    book = Gradebook(out / "gradebook.sqlite")
    lab = load_lab(lab_name, labs_dir)
    records: dict[int, Record] = {}
    todo: list[tuple[int, Submission]] = []
    reused = 0
    for k, s in enumerate(subs):
        old = None if regrade else book.find(lab_name, s.student, s.sha256)
        if old is not None and (s.status == "pending" or old.status == s.status):
            records[k], reused = old, reused + 1
        elif s.status != "pending":
            rec = Record(lab_name, s.student, s.sha256, s.origin, s.status, s.message, 0.0, lab.max_score)
            book.put(rec)
            records[k] = rec
        else:
            todo.append((k, s))

    isolation = "not needed"
    stats = {"judge_s": 0.0, "compute_s": 0.0, "child_wall_s": 0.0}
    if todo:
        hide, keep = sandbox_paths(labs_dir.resolve(), out.resolve(), [Path(p) for p in inputs])
        pool = [WorkerProcess(hide, keep) for _ in range(min(workers, len(todo)))]   # they import torch meanwhile
        try:
            run_seed = seed if seed is not None else secrets.randbits(62)
            isolation = pool[0].ready()["isolation"]
            stats["uids"] = []
            if isolation != "full":
                print(f"autograder: WARNING: weak isolation: {isolation}. Student code is less contained "
                      "than it should be (see autograder/README.md)", file=sys.stderr)
            ref_lock = threading.Lock()     # reference answers run instructor code in a scratch cwd
            free = list(range(len(pool)))
            lock = threading.Lock()

            def one(k: int, sub: Submission) -> Record:
                with lock:
                    w = free.pop()
                try:
                    sub_seed = submission_seed(run_seed, sub.student)
                    with ref_lock:
                        probes = make_probes(lab, sub_seed)
                    cells, notes = plan_cells(sub.notebook, lab.student)
                    limits_here = limits
                    try:
                        result = pool[w].run([(i, src) for i, _, src in cells], [p.plain for p in probes],
                                             limits_here, [p.timeout or limits.probe_timeout for p in probes])
                    except WorkerError as e:
                        pool[w] = WorkerProcess(hide, keep)
                        result = {"internal_error": str(e)}
                    if "internal_error" in result:
                        rec = Record(lab_name, sub.student, sub.sha256, sub.origin, "internal_error",
                                     f"the grader failed on this submission ({result['internal_error']}); "
                                     "run the command again to retry it", 0.0, lab.max_score)
                    else:
                        t = time.perf_counter()
                        result["isolation"] = isolation
                        rec = make_record(lab, sub, sub_seed, probes, result, cells, notes)
                        with lock:
                            stats["uids"].append(result["uid"])
                            stats["judge_s"] += time.perf_counter() - t
                            stats["compute_s"] += float(result.get("compute_s") or 0)
                            stats["child_wall_s"] += float(result.get("wall_s") or 0)
                    book.put(rec)                      # stored before anything is exported
                    return rec
                finally:
                    with lock:
                        free.append(w)

            bar = _progress(len(todo), progress)
            with ThreadPoolExecutor(len(pool)) as ex:
                futures = {ex.submit(one, k, s): k for k, s in todo}
                for f in as_completed(futures):
                    records[futures[f]] = f.result()
                    bar.update(1)
            bar.close()
        finally:
            for w in pool:
                w.close()
    book.close()
    ordered = [records[k] for k in range(len(subs))]
    write_all(out, ordered, lab.questions)
    return Report(ordered, len(todo), reused, isolation, time.monotonic() - t0, stats)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="nb", desc="grading", disable=not enabled, file=sys.stderr,
                bar_format="{desc}: {n}/{total} |{bar}| {elapsed}<{remaining} (ETA), {rate_fmt}")
