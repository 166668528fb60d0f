"""Grade a class: find, validate, run each submission in a sandboxed child, judge, store, export.

Every step of one submission runs under :func:`_step`: whatever goes wrong there
becomes that submission's ``internal_error`` row, naming the student and the
step, and the run goes on. Exports are written from the gradebook at the end.

>>> report = grade("01_backprop", ["submissions/"], "out/", workers=2)   # doctest: +SKIP
>>> report.exit_code                                                     # doctest: +SKIP
0
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from coursekit.checks.plain import decode

from .export import DEFAULT_HIDDEN_VISIBILITY, VISIBILITIES, export_lab
from .gradebook import Gradebook, Record
from .judge import Probe, make_record, plan_cells
from .lab import DEFAULT_LABS_DIR, Lab, find_lab, lab_info, load_lab
from .late import lateness, load_policy
from .pool import WorkerError, WorkerProcess
from .sandbox import Limits
from .status import BAD_INPUT, Status
from .submissions import Roster, Submission, SubmissionError, Validator, choose, collect, validate_all

ROOT = Path(__file__).resolve().parents[1]


class GradingError(ValueError):
    """A problem with the command itself (lab, output folder, submissions as a whole), found before grading."""


@dataclass
class Report:
    """What one ``grade`` call did."""
    records: list[Record]
    graded_now: int
    reused: int
    isolation: str
    wall_s: float
    stats: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)   # exports that failed

    @property
    def exit_code(self) -> int:
        """1 when any submission was not fully graded (bad input, an internal error, a failed export), else 0."""
        return int(bool(self.problems) or any(r.status in BAD_INPUT or r.status == Status.INTERNAL_ERROR
                                              for r in self.records))


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


def submission_seed(run_seed: int, student: str) -> int:
    """Each submission's own input seed, so that answers cannot be copied between students."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}/{student}".encode()).digest()[:8], "big") >> 2


def make_probes(lab: Lab, run_seed: int) -> list[Probe]:
    """Fresh inputs for every case from ``run_seed``, with reference answers computed here."""
    probes = []
    for c in lab.cases:
        steps = c.steps(c.seed(run_seed))
        plain = [s.to_plain() for s in steps]       # before the reference can touch the inputs
        expected = decode(lab.expected([steps])[0])
        probes.append(Probe(c, steps, plain, expected))
    return probes


class StepFailed(Exception):
    """A step of one submission failed; carries that submission's internal_error record."""

    def __init__(self, record: Record):
        super().__init__(record.message)
        self.record = record


@contextlib.contextmanager
def _step(lab: Lab | str, sub: Submission, step: str):
    """Turn any exception in ``step`` of ``sub`` into a :class:`StepFailed` naming the student and the step."""
    try:
        yield
    except StepFailed:
        raise
    except Exception as e:  # noqa: BLE001 - one submission's failure is never the run's
        name = lab if isinstance(lab, str) else lab.name
        max_score = 0.0 if isinstance(lab, str) else lab.max_score
        raise StepFailed(internal_error(name, sub, step, f"{type(e).__name__}: {e}", max_score)) from e


def internal_error(lab: str, sub: Submission, step: str, why: str, max_score: float) -> Record:
    return Record(lab, sub.student, sub.sha256 or f"error:{sub.origin}", sub.origin, Status.INTERNAL_ERROR,
                  f"the grader failed on {sub.student!r} while {step} ({why[:500]}); "
                  "run the command again to retry it", 0.0, max_score, submitted_at=sub.submitted_at)


def store(book: Gradebook, rec: Record, sub: Submission, max_score: float) -> Record:
    """Put ``rec`` in the gradebook; if even that fails, store an internal_error row instead."""
    try:
        book.put(rec)
        return rec
    except Exception as e:  # noqa: BLE001
        err = internal_error(rec.lab, sub, "storing the result", f"{type(e).__name__}: {e}", max_score)
        try:
            book.put(err)
        except Exception as e2:  # noqa: BLE001 - reported through the exit code and the returned record
            err.message += f"; it could not be stored either ({type(e2).__name__})"
        return err


class _Pool:
    """Pre-forked workers, handed out one per thread."""

    def __init__(self, n: int, hide: list[str], keep: list[str]):
        self.hide, self.keep = hide, keep
        self.workers = [WorkerProcess(hide, keep) for _ in range(n)]     # they import torch meanwhile
        self.free: queue.Queue[int] = queue.Queue()
        for i in range(n):
            self.free.put(i)
        self.lock = threading.Lock()
        self.uids: list[int] = []

    def hello(self) -> str:
        for w in self.workers:
            w.ready()
        return self.workers[0].ready()["isolation"]

    def run(self, cells: list, probes: list[Probe], limits: Limits) -> dict:
        i = self.free.get()
        try:
            return self.workers[i].run([(k, src) for k, _, src in cells], [p.plain for p in probes], limits,
                                       [p.timeout or limits.probe_timeout for p in probes])
        except WorkerError as e:
            self.workers[i] = WorkerProcess(self.hide, self.keep)
            return {"internal_error": str(e)}
        finally:
            self.free.put(i)

    def close(self, unused: bool = False) -> None:
        """Stop every worker (again is harmless); ``unused`` ones are killed without waiting for their imports."""
        for w in self.workers:
            if unused and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
            w.close()


def _check_command(lab_name: str, inputs: list, out: Path, workers, labs_dir: Path, hidden_visibility) -> None:
    if not isinstance(workers, int) or workers < 1:
        raise GradingError(f"workers must be a whole number >= 1; got {workers!r}")
    if hidden_visibility is not None and hidden_visibility not in VISIBILITIES:
        raise GradingError(f"hidden_visibility must be one of {', '.join(VISIBILITIES)}; got {hidden_visibility!r}")
    find_lab(lab_name, labs_dir)                     # LabError (a ValueError) if missing
    check_out_dir(out)
    if not inputs:
        raise GradingError("no submissions given; pass notebooks, folders or .zip files")
    missing = [str(p) for p in inputs if not Path(p).exists() and not Path(p).is_symlink()]
    if missing:
        raise GradingError(f"submission path(s) not found: {', '.join(missing)}")


def find_submissions(lab_name: str, inputs: list, roster: Roster | None, student: str | None) -> list[Submission]:
    """Every candidate notebook, named by trusted identities (nothing is read yet)."""
    try:
        subs, warnings = collect(inputs, lab_name, roster, student)
    except SubmissionError as e:
        raise GradingError(str(e)) from e
    for w in warnings:
        print(f"autograder: warning: {w}", file=sys.stderr)
    return subs


def validate_and_choose(subs: list[Submission], lab_name: str, inputs: list, student: str | None, newest: bool,
                        validator: Validator) -> list[Submission]:
    """Caps and validation (in the validator's process), then one submission per student; stops on clashes."""
    try:
        validate_all(subs, lab_name, validator)
        chosen = choose(subs, lab_name, newest=newest, by_name=student is not None)
    except SubmissionError as e:
        raise GradingError(str(e)) from e
    if student is not None and not chosen:
        sub = Submission(student, ", ".join(map(str, inputs)))
        files = sorted(f for i in map(Path, inputs) if i.is_dir() for _, _, names in os.walk(i) for f in names)
        chosen = [sub.reject(Status.NO_NOTEBOOK, "no notebook (.ipynb) was found in the submission"
                             + (f"; it holds: {', '.join(files[:20])}" if files else " (it is empty)"))]
    return chosen


def grade(lab_name: str, inputs: list[str | Path], out: str | Path, workers: int = 1,
          timeout: float = 300.0, labs_dir: str | Path = DEFAULT_LABS_DIR, limits: Limits | None = None,
          seed: int | None = None, progress: bool = True, regrade: bool = False,
          roster: str | Path | None = None, student: str | None = None, newest: bool = False,
          policy: str | Path | None = None, hidden_visibility: str | None = None) -> Report:
    """Grade every submission in ``inputs`` for ``lab_name``, then export the lab from the gradebook into ``out``.

    ``roster`` maps files to students (CSV); ``student`` says all inputs are one
    student's (as on Gradescope; their notebook is picked by name, metadata or age);
    ``newest`` grades the newest of several notebooks of a student instead of stopping;
    ``policy`` is a TOML file of due dates and late policies; ``hidden_visibility``
    is the Gradescope visibility of hidden tests.
    """
    t0 = time.monotonic()
    labs_dir, out = Path(labs_dir), Path(out)
    _check_command(lab_name, inputs, out, workers, labs_dir, hidden_visibility)
    limits = limits or Limits(timeout=timeout, cell_timeout=min(30.0, timeout), probe_timeout=min(10.0, timeout),
                              cpu_seconds=int(timeout) + 60)
    try:
        the_roster = Roster.read(roster) if roster else None
        late_policy = load_policy(policy, lab_name) if policy else None
    except (SubmissionError, OSError) as e:
        raise GradingError(str(e)) from e
    pool = None
    book = None
    # The validator and the workers start first: they import nbformat and torch while this
    # process loads the lab and reads the submissions.
    validator = Validator().start()
    try:
        subs = find_submissions(lab_name, inputs, the_roster, student)
        if subs:
            pool = _Pool(min(workers, len(subs)), *sandbox_paths(labs_dir.resolve(), out.resolve(),
                                                                 [Path(p) for p in inputs]))
        lab = load_lab(lab_name, labs_dir)
        chosen = validate_and_choose(subs, lab_name, inputs, student, newest, validator)
        validator.close()
        book = Gradebook(out / "gradebook.sqlite")
        old = book.lab_info(lab_name) or {}
        info = {**lab_info(lab), "policy": late_policy if policy else old.get("policy"),
                "hidden_visibility": hidden_visibility or old.get("hidden_visibility", DEFAULT_HIDDEN_VISIBILITY)}
        book.put_lab(lab_name, info)
        if the_roster:
            book.put_students({s: {k: v for k, v in row.items() if k not in ("student", "file", "submitted_at") and v}
                               for s, row in the_roster.students().items()})
        records, todo, reused = reuse_or_reject(book, lab, chosen, regrade)
        isolation, stats = "not needed", {}
        if todo:
            pool = pool or _Pool(1, *sandbox_paths(labs_dir.resolve(), out.resolve(), [Path(p) for p in inputs]))
            isolation, stats = run_all(book, lab, todo, records, pool, limits, seed, progress)
        if pool is not None:
            pool.close(unused=not todo)
        apply_late(book, lab_name, info["policy"], chosen)
        problems = export_lab(out, book, lab_name)
    finally:
        validator.close()
        if pool is not None:
            pool.close(unused=True)     # after an error: kill, do not wait for workers still importing
        if book is not None:
            book.close()
    for p in problems:
        print(f"autograder: error: {p}", file=sys.stderr)
    ordered = [records[k] for k in range(len(chosen))]
    return Report(ordered, len(todo), reused, isolation, time.monotonic() - t0, stats, problems)


def reuse_or_reject(book: Gradebook, lab: Lab, subs: list[Submission], regrade: bool):
    """Records of what needs no run (bad input, already graded), and the (index, submission) pairs to run."""
    records: dict[int, Record] = {}
    todo: list[tuple[int, Submission]] = []
    reused = 0
    for k, s in enumerate(subs):
        try:
            with _step(lab, s, "looking it up in the gradebook"):
                old = None if regrade else book.find(lab.name, s.student, s.sha256)
                if old is not None and (s.status == Status.PENDING or old.status == s.status):
                    book.make_current(lab.name, s.student, s.sha256)
                    records[k], reused = old, reused + 1
                elif s.status != Status.PENDING:
                    message = "; ".join([s.message, *s.notes])
                    rec = Record(lab.name, s.student, s.sha256, s.origin, s.status, message, 0.0, lab.max_score,
                                 submitted_at=s.submitted_at)
                    records[k] = store(book, rec, s, lab.max_score)
                else:
                    todo.append((k, s))
        except StepFailed as f:
            records[k] = store(book, f.record, s, lab.max_score)
    return records, todo, reused


def grade_one(pool: _Pool, book: Gradebook, lab: Lab, sub: Submission, ref_lock: threading.Lock, run_seed: int,
              limits: Limits, isolation: str, stats: dict, lock: threading.Lock) -> Record:
    """Plan, run, judge and store one submission; any failure is this submission's alone."""
    try:
        sub_seed = submission_seed(run_seed, sub.student)
        with _step(lab, sub, "computing its reference answers"), ref_lock:
            probes = make_probes(lab, sub_seed)     # reference answers run instructor code in a scratch cwd
        with _step(lab, sub, "planning the cells to run"):
            cells, notes = plan_cells(sub.notebook, lab.student)
            notes = sub.notes + notes
        with _step(lab, sub, "running it in the sandbox"):
            # Visible probes run before any hidden one, so nothing a hidden probe showed the student's code
            # (its inputs, walked to through the stack) can reach a visible test's message in the feedback.
            order = sorted(range(len(probes)), key=lambda k: probes[k].case.hidden)
            result = pool.run(cells, [probes[k] for k in order], limits)
            if isinstance(result, dict) and isinstance(result.get("probes"), list) and len(result["probes"]) == len(order):
                ran, result["probes"] = result["probes"], [None] * len(order)
                for position, k in enumerate(order):
                    result["probes"][k] = ran[position]
        if not isinstance(result, dict) or "internal_error" in result:
            why = result.get("internal_error") if isinstance(result, dict) else "no result"
            rec = internal_error(lab.name, sub, "running it in the sandbox", str(why), lab.max_score)
        else:
            with _step(lab, sub, "judging its answers"):
                t = time.perf_counter()
                result["isolation"] = isolation
                rec = make_record(lab, sub, sub_seed, probes, result, cells, notes)
                rec.submitted_at = sub.submitted_at
                with lock:
                    pool.uids.append(result["uid"])
                    stats["judge_s"] += time.perf_counter() - t
                    for key, src in (("compute_s", "compute_s"), ("child_wall_s", "wall_s")):
                        v = result.get(src)
                        stats[key] += float(v) if isinstance(v, (int, float)) else 0.0
    except StepFailed as f:
        rec = f.record
    return store(book, rec, sub, lab.max_score)             # stored before anything is exported


def run_all(book: Gradebook, lab: Lab, todo: list, records: dict, pool: "_Pool", limits: Limits,
            seed: int | None, progress: bool) -> tuple[str, dict]:
    """Run every submission in ``todo`` on the pool's workers; fills ``records``."""
    stats = {"judge_s": 0.0, "compute_s": 0.0, "child_wall_s": 0.0}
    try:
        run_seed = seed if seed is not None else secrets.randbits(62)
        isolation = pool.hello()
        if isolation != "full":
            print(f"autograder: WARNING: weak isolation: {isolation}. Student code is less contained "
                  "than it should be (see autograder/README.md)", file=sys.stderr)
        lock, ref_lock = threading.Lock(), threading.Lock()
        bar = _progress(len(todo), progress)
        with ThreadPoolExecutor(min(len(pool.workers), len(todo))) as ex:
            futures = {ex.submit(grade_one, pool, book, lab, s, ref_lock, run_seed, limits, isolation, stats, lock): (k, s)
                       for k, s in todo}
            for f in as_completed(futures):
                k, s = futures[f]
                try:
                    records[k] = f.result()
                except Exception as e:  # noqa: BLE001 - a last guard: grade_one already catches everything
                    records[k] = store(book, internal_error(lab.name, s, "grading", repr(e), lab.max_score),
                                       s, lab.max_score)
                bar.update(1)
        bar.close()
        stats["uids"] = pool.uids
    finally:
        pool.close()
    return isolation, stats


def apply_late(book: Gradebook, lab: str, policy: dict | None, chosen: list[Submission]) -> None:
    """Late days and penalty of every current row of ``lab`` under ``policy``; then the final scores."""
    times = {s.student: s.submitted_at for s in chosen if s.submitted_at}
    for rec in book.current(lab):
        at = times.get(rec.student, rec.submitted_at)
        days, penalty = lateness(at, policy, rec.student)
        book.set_late(lab, rec.student, at, days, penalty)
    book.refresh_final(lab)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="nb", desc="grading", disable=not enabled, file=sys.stderr,
                bar_format="{desc}: {n}/{total} |{bar}| {elapsed}<{remaining} (ETA), {rate_fmt}")
