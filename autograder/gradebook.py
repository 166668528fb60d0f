"""The gradebook: one SQLite file that every result goes into before any export.

Each submission is keyed by (lab, student, content hash), so grading the same
file again is a no-op and a killed run, started again, picks up where it
stopped: each submission's row and its test rows are written in one transaction.
One row per (lab, student) is *current*: the one every export shows. Storing a
new row of a student makes it current and leaves every other student alone.

The gradebook also holds what exports need besides results, so that
``python -m autograder export`` can rebuild every file from it alone: each
lab's questions, points, written questions and late policy (table ``labs``),
the marks of written answers (``marks``) and LMS ids from a roster (``students``).

>>> gb = Gradebook(":memory:")
>>> gb.find("01_backprop", "alice", "abc") is None
True
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .status import RETRY, Status

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY,
    lab TEXT NOT NULL,
    student TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    origin TEXT NOT NULL,
    graded_at TEXT NOT NULL,
    run_seed INTEGER,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    tampered TEXT NOT NULL,
    logs TEXT NOT NULL,
    current INTEGER NOT NULL DEFAULT 1,
    submitted_at TEXT,
    late_days INTEGER NOT NULL DEFAULT 0,
    penalty REAL NOT NULL DEFAULT 0,
    final_score REAL,
    answers TEXT NOT NULL DEFAULT '{}',
    UNIQUE (lab, student, sha256)
);
CREATE TABLE IF NOT EXISTS tests (
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    question TEXT NOT NULL,
    name TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    status TEXT NOT NULL,
    output TEXT NOT NULL,
    visibility TEXT NOT NULL,
    PRIMARY KEY (submission_id, position)
);
CREATE TABLE IF NOT EXISTS labs (
    lab TEXT PRIMARY KEY,
    info TEXT NOT NULL            -- JSON: questions, max_score, written, policy, hidden_visibility
);
CREATE TABLE IF NOT EXISTS marks (
    lab TEXT NOT NULL,
    student TEXT NOT NULL,
    question TEXT NOT NULL,
    points REAL NOT NULL,
    comment TEXT NOT NULL,
    marked_at TEXT NOT NULL,
    PRIMARY KEY (lab, student, question)
);
CREATE TABLE IF NOT EXISTS students (
    student TEXT PRIMARY KEY,
    info TEXT NOT NULL            -- JSON: name, email, canvas_id, sis_id, section (from a roster)
);
"""
_NEW_COLUMNS = {"current": "INTEGER NOT NULL DEFAULT 1", "submitted_at": "TEXT",
                "late_days": "INTEGER NOT NULL DEFAULT 0", "penalty": "REAL NOT NULL DEFAULT 0",
                "final_score": "REAL", "answers": "TEXT NOT NULL DEFAULT '{}'"}
_COLS = ("id, lab, student, sha256, origin, status, message, score, max_score, tampered, logs, run_seed, "
         "graded_at, submitted_at, late_days, penalty, final_score, answers")


def clean(x):
    """``x`` with every string made encodable (lone surrogates from student code become ``\\udXXX``)."""
    if isinstance(x, str):
        try:
            x.encode("utf-8")
            return x
        except UnicodeEncodeError:
            return x.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(x, dict):
        return {clean(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class TestResult:
    question: str
    name: str
    score: float
    max_score: float
    status: Status       # passed, failed, error, timeout, memory_limit, crash
    output: str
    visibility: str      # "visible" or "hidden"


@dataclass
class Record:
    """One graded (or rejected) submission."""
    lab: str
    student: str
    sha256: str
    origin: str
    status: Status
    message: str
    score: float                 # what the tests earned (raw)
    max_score: float
    tests: list[TestResult] = field(default_factory=list)
    tampered: list[str] = field(default_factory=list)
    logs: dict = field(default_factory=dict)
    run_seed: int | None = None
    graded_at: str = ""
    submitted_at: str | None = None
    late_days: int = 0
    penalty: float = 0.0         # fraction of the score lost for lateness
    final_score: float | None = None
    answers: dict = field(default_factory=dict)   # written question -> the student's text


class Gradebook:
    """A thread-safe wrapper around the SQLite gradebook file."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self.db.execute("PRAGMA foreign_keys = ON")
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(SCHEMA)
        have = {r[1] for r in self.db.execute("PRAGMA table_info(submissions)")}
        for name, decl in _NEW_COLUMNS.items():      # a gradebook of an earlier version
            if name not in have:
                self.db.execute(f"ALTER TABLE submissions ADD COLUMN {name} {decl}")
        self.db.commit()

    # ------------------------------------------------------------ submissions
    def _record(self, row) -> Record:
        tests = [TestResult(q, n, s, m, Status.of(st, Status.CRASH), o, v) for q, n, s, m, st, o, v in self.db.execute(
            "SELECT question, name, score, max_score, status, output, visibility FROM tests "
            "WHERE submission_id=? ORDER BY position", (row[0],))]
        return Record(row[1], row[2], row[3], row[4], Status.of(row[5], Status.INTERNAL_ERROR), row[6], row[7],
                      row[8], tests, json.loads(row[9]), json.loads(row[10]), row[11], row[12], row[13],
                      row[14], row[15], row[16], json.loads(row[17] or "{}"))

    def find(self, lab: str, student: str, sha256: str) -> Record | None:
        """The stored record of exactly this file, unless it must be retried."""
        with self.lock:
            row = self.db.execute(f"SELECT {_COLS} FROM submissions WHERE lab=? AND student=? AND sha256=?",
                                  (lab, student, sha256)).fetchone()
            if row is None or row[5] in RETRY:
                return None
            return self._record(row)

    def current(self, lab: str) -> list[Record]:
        """The current record of every student of ``lab``, by student."""
        with self.lock:
            rows = self.db.execute(f"SELECT {_COLS} FROM submissions WHERE lab=? AND current=1 ORDER BY student",
                                   (lab,)).fetchall()
            return [self._record(r) for r in rows]

    def put(self, rec: Record) -> None:
        """Store a record and its tests atomically as the student's current one.

        It replaces an older record of the same file; the student's other records
        stay as history, and no other student's row is touched.
        """
        rec.graded_at = rec.graded_at or now()
        r = replace(rec, **{k: clean(getattr(rec, k)) for k in ("lab", "student", "sha256", "origin", "message",
                                                                  "tampered", "logs", "answers")},
                    tests=[replace(t, question=clean(t.question), name=clean(t.name), output=clean(t.output))
                           for t in rec.tests])   # a copy made safe for SQLite's UTF-8
        with self.lock, self.db:
            self.db.execute("DELETE FROM submissions WHERE lab=? AND student=? AND sha256=?",
                            (r.lab, r.student, r.sha256))
            self.db.execute("UPDATE submissions SET current=0 WHERE lab=? AND student=?", (r.lab, r.student))
            cur = self.db.execute(
                "INSERT INTO submissions (lab, student, sha256, origin, graded_at, run_seed, status, message, "
                "score, max_score, tampered, logs, current, submitted_at, late_days, penalty, final_score, answers) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1,?,?,?,?,?)",
                (r.lab, r.student, r.sha256, r.origin, r.graded_at, rec.run_seed, str(r.status), r.message,
                 float(rec.score), float(rec.max_score), json.dumps(r.tampered), json.dumps(r.logs),
                 rec.submitted_at, int(rec.late_days), float(rec.penalty), rec.final_score, json.dumps(r.answers)))
            self.db.executemany(
                "INSERT INTO tests VALUES (?,?,?,?,?,?,?,?,?)",
                [(cur.lastrowid, i, t.question, t.name, float(t.score), float(t.max_score), str(t.status), t.output,
                  t.visibility) for i, t in enumerate(r.tests)])

    def make_current(self, lab: str, student: str, sha256: str) -> None:
        """Make the stored record of this file the student's current one (a resubmitted old file)."""
        with self.lock, self.db:
            self.db.execute("UPDATE submissions SET current = (sha256 = ?) WHERE lab=? AND student=?",
                            (sha256, lab, student))

    def set_late(self, lab: str, student: str, submitted_at: str | None, late_days: int, penalty: float) -> None:
        with self.lock, self.db:
            self.db.execute("UPDATE submissions SET submitted_at=?, late_days=?, penalty=? "
                            "WHERE lab=? AND student=? AND current=1",
                            (submitted_at, int(late_days), float(penalty), lab, student))

    def refresh_final(self, lab: str) -> None:
        """final_score = (tests + marked written answers) * (1 - penalty), for every current row of ``lab``."""
        with self.lock, self.db:
            marks = dict(self.db.execute("SELECT student, SUM(points) FROM marks WHERE lab=? GROUP BY student", (lab,)))
            rows = self.db.execute("SELECT id, student, score, penalty FROM submissions WHERE lab=? AND current=1",
                                   (lab,)).fetchall()
            self.db.executemany("UPDATE submissions SET final_score=? WHERE id=?",
                                [(round((score + (marks.get(s) or 0.0)) * (1.0 - penalty), 6), i)
                                 for i, s, score, penalty in rows])

    def count(self, lab: str | None = None) -> int:
        with self.lock:
            q = "SELECT COUNT(*) FROM submissions" + (" WHERE lab=?" if lab else "")
            return self.db.execute(q, (lab,) if lab else ()).fetchone()[0]

    # ------------------------------------------------------------ what exports need besides results
    def put_lab(self, lab: str, info: dict) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO labs VALUES (?, ?)", (lab, json.dumps(clean(info))))

    def lab_info(self, lab: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT info FROM labs WHERE lab=?", (lab,)).fetchone()
        return json.loads(row[0]) if row else None

    def labs(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT lab FROM labs ORDER BY lab")]

    def put_students(self, info: dict[str, dict]) -> None:
        with self.lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO students VALUES (?, ?)",
                                [(s, json.dumps(clean(i))) for s, i in info.items()])

    def students(self) -> dict[str, dict]:
        with self.lock:
            return {s: json.loads(i) for s, i in self.db.execute("SELECT student, info FROM students")}

    def put_mark(self, lab: str, student: str, question: str, points: float, comment: str) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO marks VALUES (?,?,?,?,?,?)",
                            (lab, student, question, float(points), clean(comment), now()))

    def marks(self, lab: str) -> dict[str, dict[str, tuple[float, str]]]:
        """student -> question -> (points, comment)."""
        out: dict = {}
        with self.lock:
            for s, q, p, c in self.db.execute("SELECT student, question, points, comment FROM marks WHERE lab=?", (lab,)):
                out.setdefault(s, {})[q] = (p, c)
        return out

    def close(self) -> None:
        self.db.close()
