"""The gradebook: one SQLite file that every result goes into before any export.

Each submission is keyed by (lab, student, content hash), so grading the same
file again is a no-op and a killed run, started again, picks up where it
stopped: each submission's row and its test rows are written in one transaction.

>>> gb = Gradebook(":memory:")
>>> gb.find("01_backprop", "alice", "abc") is None
True
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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
"""

#: Statuses that are worth trying again on the next run (our failures, not the student's).
RETRY = ("internal_error",)


@dataclass
class TestResult:
    question: str
    name: str
    score: float
    max_score: float
    status: str          # passed, failed, error, timeout, memory_limit, crash
    output: str
    visibility: str      # "visible" or "hidden"


@dataclass
class Record:
    """One graded (or rejected) submission."""
    lab: str
    student: str
    sha256: str
    origin: str
    status: str
    message: str
    score: float
    max_score: float
    tests: list[TestResult] = field(default_factory=list)
    tampered: list[str] = field(default_factory=list)
    logs: dict = field(default_factory=dict)
    run_seed: int | None = None
    graded_at: str = ""


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
        self.db.commit()

    def find(self, lab: str, student: str, sha256: str) -> Record | None:
        """The stored record of exactly this file, unless it must be retried."""
        with self.lock:
            row = self.db.execute(
                "SELECT id, lab, student, sha256, origin, status, message, score, max_score, tampered, logs, "
                "run_seed, graded_at FROM submissions WHERE lab=? AND student=? AND sha256=?",
                (lab, student, sha256)).fetchone()
            if row is None or row[5] in RETRY:
                return None
            tests = [TestResult(*t) for t in self.db.execute(
                "SELECT question, name, score, max_score, status, output, visibility FROM tests "
                "WHERE submission_id=? ORDER BY position", (row[0],))]
        return Record(*row[1:9], tests=tests, tampered=json.loads(row[9]), logs=json.loads(row[10]),
                      run_seed=row[11], graded_at=row[12])

    def put(self, rec: Record) -> None:
        """Store a record and its tests atomically, replacing an older record of the same file."""
        rec.graded_at = rec.graded_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock, self.db:
            self.db.execute("DELETE FROM submissions WHERE lab=? AND student=? AND sha256=?",
                            (rec.lab, rec.student, rec.sha256))
            cur = self.db.execute(
                "INSERT INTO submissions (lab, student, sha256, origin, graded_at, run_seed, status, message, "
                "score, max_score, tampered, logs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec.lab, rec.student, rec.sha256, rec.origin, rec.graded_at, rec.run_seed, rec.status,
                 rec.message, rec.score, rec.max_score, json.dumps(rec.tampered), json.dumps(rec.logs)))
            self.db.executemany(
                "INSERT INTO tests VALUES (?,?,?,?,?,?,?,?,?)",
                [(cur.lastrowid, i, t.question, t.name, t.score, t.max_score, t.status, t.output, t.visibility)
                 for i, t in enumerate(rec.tests)])

    def count(self, lab: str | None = None) -> int:
        with self.lock:
            q = "SELECT COUNT(*) FROM submissions" + (" WHERE lab=?" if lab else "")
            return self.db.execute(q, (lab,) if lab else ()).fetchone()[0]

    def close(self) -> None:
        self.db.close()
