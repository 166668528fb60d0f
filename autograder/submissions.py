"""Find submissions, name their students, and turn bad input into clear statuses.

Who a submission belongs to comes from places the instructor trusts, never
from what a student named a file:

- a folder given on the command line holds one folder per student: every
  notebook under ``alice/`` belongs to ``alice``, whatever its file name;
- a notebook directly in that folder (an LMS download) is named by its file:
  ``alice.ipynb`` -> ``alice``; Canvas's ``name_1234_5678_file.ipynb`` -> ``name_1234``;
- a ``.zip`` given on the command line is read the same way, member by member;
  archives found *inside* a folder are never opened;
- a roster file (CSV with ``student,file[,submitted_at,name,email,canvas_id,sis_id,section]``)
  overrides all of this for the files it lists.

Symbolic links are never followed. Each file is read with a size cap, and
checked (JSON, notebook format, caps on cells and outputs, the lab) in a
separate, memory-limited process with a time-out (:class:`Validator`), one
rule at a time; each rule returns a :class:`~autograder.status.Status`.

>>> lms_student_id("doejane_1234_5678_01_backprop.ipynb")                   # Canvas export
'doejane_1234'
>>> lms_student_id("alice.ipynb")
'alice'
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import resource
import select
import stat
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from .status import Status

MAX_BYTES = 50 * 2**20          # one notebook
MAX_MEMBERS = 1000              # notebooks in one archive
MAX_ARCHIVE_BYTES = 2 * 2**30   # bytes read out of one archive, all members together
MAX_CELLS = 2000                # cells in one notebook
MAX_OUTPUTS = 10_000            # outputs in one notebook, all cells together
VALIDATE_TIMEOUT = 30.0         # seconds to check one notebook
VALIDATE_MEMORY = 2 * 2**30     # address space of the checking process
_CANVAS = re.compile(r"^(?P<name>[a-z0-9]+)_(?:late_)?(?P<user>\d+)_\d+_.+$", re.I)


class SubmissionError(ValueError):
    """A problem with the submissions as a whole (an archive over its caps, two files of one student)."""


@dataclass
class Submission:
    """One submitted notebook (not yet read), or the reason it could not be read."""
    student: str
    origin: str                          # path, or "archive.zip:member"
    path: Path | None = None             # a plain file, opened without following links
    archive: Path | None = None          # or a member of an archive given on the command line
    member: str | None = None
    submitted_at: str | None = None      # ISO 8601, from a roster
    mtime: float = 0.0
    sha256: str = ""
    status: Status = Status.PENDING
    message: str = ""
    notebook: object = None              # the parsed notebook, outputs dropped
    notes: list[str] = field(default_factory=list)

    def reject(self, status: Status, message: str, sha256: str | None = None) -> "Submission":
        self.status, self.message = status, message
        self.sha256 = self.sha256 or sha256 or f"{status}:{self.origin}"
        return self


def lms_student_id(name: str) -> str:
    """The student of a notebook an LMS downloaded flat: its file name (Canvas names parsed)."""
    stem = PurePosixPath(name).name.removesuffix(".ipynb").strip()
    m = _CANVAS.match(stem)
    return f"{m['name']}_{m['user']}" if m else stem


# ---------------------------------------------------------------- finding files

@dataclass
class Roster:
    """A CSV mapping files to students, with optional submission times and LMS ids."""
    by_file: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> "Roster":
        path = Path(path)
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"student", "file"} <= set(rows[0]):
            raise SubmissionError(f"roster {path} must be a CSV with the columns student,file "
                                  "(optional: submitted_at,name,email,canvas_id,sis_id,section)")
        out = cls()
        for k, row in enumerate(rows, start=2):
            student, file = (row.get("student") or "").strip(), (row.get("file") or "").strip()
            if not student or not file:
                raise SubmissionError(f"roster {path}, line {k}: student and file must not be empty")
            if row.get("submitted_at"):
                row["submitted_at"] = parse_time(row["submitted_at"], f"roster {path}, line {k}")
            if ".zip:" in file:             # a member of an archive: archive.zip:folder/file.ipynb
                archive, member = file.split(".zip:", 1)
                full = f"{Path(os.path.abspath(path.parent / (archive + '.zip'))).resolve()}:{member}"
            else:
                full = os.path.abspath(path.parent / file)
            out.by_file[full] = {**row, "student": student}
        return out

    def lookup(self, origin: str) -> dict | None:
        return self.by_file.get(origin)

    def students(self) -> dict[str, dict]:
        return {r["student"]: r for r in self.by_file.values()}


def parse_time(text: str, where: str) -> str:
    """An ISO 8601 time, in UTC; a time without a zone is taken as UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise SubmissionError(f"{where}: {text!r} is not a time such as 2026-03-01T23:59:00Z") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def counts(name: str) -> bool:
    """The one rule for which folder entries, and which parts of an archive member's path, are looked at,
    in every mode (folders, ``--student``, archives): nothing hidden (``.ipynb_checkpoints``, ``.git``,
    macOS's ``._name.ipynb``) and nothing in ``__MACOSX``.

    >>> [n for n in [".ipynb_checkpoints", "__MACOSX", "._lab.ipynb", "alice", "lab.ipynb"] if counts(n)]
    ['alice', 'lab.ipynb']
    """
    return not name.startswith(".") and name != "__MACOSX"


def _entry(entry: os.DirEntry, skip_archives: list[str]):
    """The notebooks one folder entry holds, as (path, is_link): links are returned as such, never followed."""
    if not counts(entry.name):
        return
    p = Path(entry.path)
    if entry.is_symlink():
        if entry.name.endswith(".ipynb") or entry.is_dir():
            yield p, True
    elif entry.is_dir(follow_symlinks=False):
        yield from _walk(p, skip_archives)
    elif entry.is_file(follow_symlinks=False):
        if entry.name.endswith(".ipynb"):
            yield p, False
        elif entry.name.endswith(".zip"):
            skip_archives.append(str(p))


def _walk(folder: Path, skip_archives: list[str]):
    """Every notebook under ``folder``, without following links; links are returned as such."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        yield from _entry(entry, skip_archives)


def collect(inputs: list[str | Path], lab: str, roster: Roster | None = None,
            student: str | None = None) -> tuple[list[Submission], list[str]]:
    """Every candidate submission in ``inputs``, and warnings for the instructor.

    ``student`` names the one student all inputs belong to (as on Gradescope).
    """
    subs: list[Submission] = []
    warnings: list[str] = []
    skipped: list[str] = []

    def add(path: Path, who: str, link: bool) -> None:
        sub = Submission(who, str(path), path=None if link else path)
        if link:
            sub.reject(Status.UNREADABLE, f"{path.name} is a symbolic link; the grader does not follow links, "
                                          "so submit the notebook itself")
        subs.append(sub)

    for item in map(Path, inputs):
        if item.is_symlink():
            raise SubmissionError(f"{item} is a symbolic link; pass the real path")
        if item.is_dir():
            for entry in sorted(os.scandir(item), key=lambda e: e.name):
                for q, link in _entry(entry, skipped):
                    if student is not None:
                        who = student
                    elif q == Path(entry.path):            # the entry itself: a notebook, or a link
                        who = entry.name if link and entry.is_dir() else lms_student_id(entry.name)
                    else:
                        who = entry.name                    # the folder names the student
                    add(q, who, link)
        elif item.suffix == ".zip":
            subs += _zip_members(item, student)
        else:
            add(item, student or lms_student_id(item.name), False)
    if skipped:
        warnings.append("archives found inside folders are not opened (pass them on the command line "
                        f"if they are LMS exports): {', '.join(skipped)}")
    from .gradebook import clean
    for sub in subs:
        sub.student = clean(sub.student)          # names that are not UTF-8 stay distinct, as \\udcXX
        if sub.archive is None:
            sub.origin = os.path.abspath(sub.origin)      # abspath, not resolve: links are not followed
        if sub.path is not None:
            try:
                sub.mtime = sub.path.lstat().st_mtime
            except OSError:
                pass
        row = roster.lookup(sub.origin) if roster else None
        if row:
            sub.student, sub.submitted_at = row["student"], row.get("submitted_at") or None
        elif roster is not None:
            warnings.append(f"{sub.origin} is not in the roster; named {sub.student!r} by its folder or file name")
    return subs, warnings


def _zip_members(path: Path, student: str | None) -> list[Submission]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise SubmissionError(f"{path} is not a readable zip file: {e}") from e
    with zf:
        infos = [i for i in zf.infolist() if i.filename.endswith(".ipynb") and not i.is_dir()
                 and all(counts(part) for part in PurePosixPath(i.filename).parts)]
    if len(infos) > MAX_MEMBERS:
        raise SubmissionError(f"{path} holds {len(infos)} notebooks, over the cap of {MAX_MEMBERS}; "
                              "split the archive")
    real = str(path.resolve())
    out = []
    for info in sorted(infos, key=lambda i: i.filename):
        parts = PurePosixPath(info.filename).parts
        who = student or (parts[0] if len(parts) > 1 else lms_student_id(parts[-1]))
        sub = Submission(who, f"{real}:{info.filename}", archive=path, member=info.filename,
                         mtime=datetime(*info.date_time).timestamp())
        if stat.S_ISLNK(info.external_attr >> 16):
            sub.reject(Status.UNREADABLE, f"{info.filename} is a symbolic link; the grader does not follow links")
        out.append(sub)
    return out


def _read_capped(f, cap: int) -> bytes:
    data = f.read(cap + 1)          # never trust a size the header claims
    if len(data) > cap:
        raise OverflowError(len(data))
    return data


def read_bytes(sub: Submission, budget: dict) -> bytes | None:
    """The submission's bytes (at most :data:`MAX_BYTES`), or ``None`` after setting a bad status."""
    over = f"over the {MAX_BYTES // 2**20} MB limit; clear the outputs (Kernel > Restart and clear) and resubmit"
    try:
        if sub.path is not None:
            fd = os.open(sub.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    sub.reject(Status.UNREADABLE, f"{sub.path.name} is not a regular file")
                    return None
                if st.st_size > MAX_BYTES:
                    sub.reject(Status.TOO_LARGE, f"{st.st_size / 2**20:.0f} MB is {over}", f"size:{st.st_size}")
                    return None
                return _read_capped(f, MAX_BYTES)
        with zipfile.ZipFile(sub.archive) as zf:
            info = zf.getinfo(sub.member)
            if info.file_size > MAX_BYTES:
                sub.reject(Status.TOO_LARGE, f"{info.file_size / 2**20:.0f} MB is {over}", f"size:{info.file_size}")
                return None
            room = MAX_ARCHIVE_BYTES - budget.get(str(sub.archive), 0)
            with zf.open(info) as f:
                data = _read_capped(f, min(MAX_BYTES, max(room, 0)))
            budget[str(sub.archive)] = budget.get(str(sub.archive), 0) + len(data)
            return data
    except OverflowError:
        sub.reject(Status.TOO_LARGE, f"the file is {over} (or its archive is over "
                                     f"{MAX_ARCHIVE_BYTES // 2**30} GB in all)", "size:big")
    except OSError as e:
        why = "it is a symbolic link, which the grader does not follow" if e.errno == 40 else (e.strerror or str(e))
        sub.reject(Status.UNREADABLE, f"cannot read {Path(sub.origin).name}: {why}")
    except (zipfile.BadZipFile, KeyError, RuntimeError, ValueError, EOFError) as e:   # corrupt or encrypted member
        sub.reject(Status.UNREADABLE, f"cannot read {sub.member} from its archive: {e}")
    return None


# ---------------------------------------------------------------- the rules, run in a limited process

Verdict = tuple[Status, str]


def rule_not_empty(data: bytes) -> Verdict | None:
    if not data.strip():
        return Status.EMPTY_FILE, "the file is empty; download the notebook again from JupyterLab and resubmit"
    return None


def rule_text(data: bytes) -> Verdict | None:
    if b"\x00" in data[:65536]:
        return Status.BINARY_FILE, "the file is binary, not a notebook (.ipynb is JSON text)"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return Status.BINARY_FILE, "the file is not UTF-8 text, so it is not a notebook"
    return None


def rule_notebook_shape(raw) -> Verdict | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list) or type(raw.get("nbformat")) is not int:
        return Status.WRONG_FORMAT, "the JSON is not a Jupyter notebook (no 'cells' or 'nbformat')"
    if raw["nbformat"] != 4:
        return Status.WRONG_FORMAT, f"nbformat {raw['nbformat']} is not supported; save it with JupyterLab (nbformat 4)"
    return None


def rule_caps(raw) -> Verdict | None:
    cells = raw["cells"]
    if len(cells) > MAX_CELLS:
        return Status.TOO_LARGE, f"{len(cells)} cells is over the limit of {MAX_CELLS}"
    outputs = sum(len(c["outputs"]) for c in cells if isinstance(c, dict) and isinstance(c.get("outputs"), list))
    if outputs > MAX_OUTPUTS:
        return Status.TOO_LARGE, f"{outputs} outputs is over the limit of {MAX_OUTPUTS}; clear the outputs and resubmit"
    return None


def trimmed(raw: dict) -> dict:
    """The notebook without outputs, attachments or foreign metadata: what the grader needs."""
    def meta(m, keys):
        return {k: m[k] for k in keys if isinstance(m, dict) and k in m}
    cells = []
    for c in raw["cells"]:
        if not isinstance(c, dict):
            cells.append(c)         # left for the format check to reject
            continue
        cell = {k: c[k] for k in ("cell_type", "id", "source") if k in c}
        src = cell.get("source")
        if isinstance(src, list) and all(isinstance(line, str) for line in src):
            cell["source"] = "".join(src)      # as nbformat.reads does
        cell["metadata"] = meta(c.get("metadata"), ("autograder", "tags"))
        if c.get("cell_type") == "code":
            cell.update(outputs=[], execution_count=None)
        cells.append(cell)
    return {"nbformat": 4, "nbformat_minor": raw.get("nbformat_minor", 5), "cells": cells,
            "metadata": meta(raw.get("metadata"), ("autograder", "kernelspec", "language_info"))}


def rule_format(nb: dict) -> Verdict | None:
    import nbformat
    try:
        nbformat.validate(nbformat.from_dict(nb))
    except Exception as e:  # noqa: BLE001 - nbformat raises several kinds
        return Status.WRONG_FORMAT, f"not a valid nbformat 4 notebook: {str(e).splitlines()[0][:300]}"
    return None


def notebook_lab(nb: dict) -> str | None:
    meta = nb.get("metadata", {}).get("autograder")
    return meta.get("lab") if isinstance(meta, dict) and isinstance(meta.get("lab"), str) else None


def rule_lab(nb: dict, lab: str) -> Verdict | None:
    named = notebook_lab(nb)
    if named is not None and named != lab:
        return Status.WRONG_LAB, f"this notebook is for lab {named!r}, not {lab!r}"
    if named is None and not any(f'use_lab("{lab}")' in _text(c.get("source")) or f"use_lab('{lab}')" in _text(c.get("source"))
                                 for c in nb["cells"] if c.get("cell_type") == "code"):
        return Status.WRONG_LAB, f"this notebook does not look like lab {lab!r} (no lab metadata or use_lab cell)"
    return None


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def check_notebook(data: bytes, lab: str) -> dict:
    """Apply every rule in order; the first that fails decides. Runs inside :class:`Validator`."""
    for rule in (rule_not_empty, rule_text):
        v = rule(data)
        if v:
            return {"status": v[0].value, "message": v[1]}
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        return {"status": Status.INVALID_JSON.value,
                "message": f"the file is not valid JSON ({str(e)[:200]}); was it edited by hand?"}
    del data
    for rule in (rule_notebook_shape, rule_caps):
        v = rule(raw)
        if v:
            return {"status": v[0].value, "message": v[1]}
    nb = trimmed(raw)
    del raw
    for rule in (rule_format, lambda n: rule_lab(n, lab)):
        v = rule(nb)
        if v:
            return {"status": v[0].value, "message": v[1]}
    return {"status": Status.PENDING.value, "message": "", "notebook": nb}


def _serve() -> None:
    """The validator's loop: a JSON header line and raw bytes in, one JSON line out."""
    inp, out = sys.stdin.buffer, sys.stdout
    import nbformat  # noqa: F401 - imported once, before the first notebook
    out.write('{"ready": true}\n')
    out.flush()
    while True:
        line = inp.readline()
        if not line:
            return
        head = json.loads(line)
        data = inp.read(head["n"])
        try:
            result = check_notebook(data, head["lab"])
        except MemoryError:
            result = {"status": Status.TOO_LARGE.value, "message": "checking the notebook ran out of memory"}
        except Exception as e:  # noqa: BLE001 - a structure no rule foresaw
            result = {"status": Status.WRONG_FORMAT.value, "message": f"not a valid notebook ({type(e).__name__})"}
        out.write(json.dumps(result) + "\n")
        out.flush()


class Validator:
    """A separate process that checks notebooks under a memory cap and a time-out per notebook.

    >>> with Validator() as v:                              # doctest: +SKIP
    ...     v.check(b"{}", "01_backprop")["status"]
    'wrong_format'
    """

    def __init__(self, timeout: float = VALIDATE_TIMEOUT, memory: int = VALIDATE_MEMORY):
        self.timeout, self.memory, self.proc, self.ready = timeout, memory, None, False

    def start(self) -> "Validator":
        """Start the process without waiting for it (it imports nbformat meanwhile)."""
        root = str(Path(__file__).resolve().parents[1])
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": root}

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        self.proc = subprocess.Popen([sys.executable, "-m", "autograder.submissions", "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, cwd="/", preexec_fn=limit)
        self.ready = False
        return self

    def _wait_ready(self) -> None:
        if not self.ready:
            if self._line(120.0) is None:
                raise RuntimeError("the notebook validator did not start")
            self.ready = True

    def _line(self, timeout: float) -> dict | None:
        fd, buf, end = self.proc.stdout.fileno(), b"", time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            buf += chunk
        return json.loads(buf)

    def check(self, data: bytes, lab: str) -> dict:
        """``{"status", "message"[, "notebook"]}`` for one notebook's bytes."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self._wait_ready()
        t0 = time.monotonic()
        try:
            self.proc.stdin.write(json.dumps({"lab": lab, "n": len(data)}).encode() + b"\n")
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            result = self._line(self.timeout)
        except (BrokenPipeError, OSError):
            result = None
        if result is None:
            timed_out = time.monotonic() - t0 >= self.timeout
            self.close()
            why = (f"checking it took longer than {self.timeout:g} s" if timed_out else
                   f"checking it needed more than {self.memory // 2**20} MB of memory")
            return {"status": Status.TOO_LARGE.value, "message": f"the notebook is too large or complex: {why}"}
        return result

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc, self.ready = None, False

    def __enter__(self) -> "Validator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def validate_all(subs: list[Submission], lab: str, validator: Validator | None = None) -> None:
    """Read and check every pending submission, one at a time (only one is in memory at once)."""
    import nbformat
    budget: dict = {}
    own = validator is None
    validator = validator or Validator()
    try:
        for sub in subs:
            if sub.status != Status.PENDING:
                continue
            try:
                data = read_bytes(sub, budget)
                if data is None:
                    continue
                sub.sha256 = hashlib.sha256(data).hexdigest()
                result = validator.check(data, lab)
                del data
                status = Status.of(result.get("status"), Status.INTERNAL_ERROR)
                if status == Status.PENDING:
                    sub.notebook = nbformat.from_dict(result["notebook"])
                else:
                    sub.reject(status, str(result.get("message", "")))
            except Exception as e:  # noqa: BLE001 - this submission's failure, not the run's
                sub.reject(Status.INTERNAL_ERROR, f"the grader failed on {sub.student!r} while validating it "
                                                  f"({type(e).__name__}: {e}); run the command again to retry it")
    finally:
        if own:
            validator.close()


# ---------------------------------------------------------------- one submission per student

def _named_for_lab(sub: Submission, lab: str) -> bool:
    return Path(sub.member or sub.origin).name == f"{lab}.ipynb"


def choose(subs: list[Submission], lab: str, newest: bool = False, by_name: bool = False) -> list[Submission]:
    """One submission per student, in a stable order.

    Notebooks that are not this lab's (drafts, other labs) give way to one that is,
    with a note. Two valid ones of one student stop the run (``SubmissionError``
    naming both) unless ``by_name`` (the one called ``<lab>.ipynb`` wins) or
    ``newest`` (the latest submission time, else file time) picks one.
    """
    by_student: dict[str, list[Submission]] = {}
    for s in subs:
        by_student.setdefault(s.student, []).append(s)
    chosen, clashes = [], []
    for student, mine in by_student.items():
        valid = [s for s in mine if s.status == Status.PENDING]
        pick, why = None, ""
        if len(valid) == 1:
            pick = valid[0]
        elif len(valid) > 1:
            named = [s for s in valid if _named_for_lab(s, lab)]
            if by_name and len(named) == 1:
                pick, why = named[0], f"its name is {lab}.ipynb"
            elif newest or by_name:
                pick = max(valid, key=lambda s: (s.submitted_at or "", s.mtime, s.origin))
                why = "it is the newest"
            else:
                clashes.append(f"{student!r}: " + " and ".join(s.origin for s in valid))
                continue
        else:   # nothing valid: report the most telling failure
            pick = next((s for s in mine if _named_for_lab(s, lab)), None) or next(
                (s for s in mine if s.status != Status.WRONG_LAB), mine[0])
        others = [s for s in mine if s is not pick]
        if others:
            listed = "; ".join(f"{Path(s.member or s.origin).name} ({s.status.value if s.status != Status.PENDING else 'valid'})"
                               for s in others)
            pick.notes.append(f"graded {Path(pick.member or pick.origin).name}"
                              + (f" because {why}" if why else "") + f"; also found, not graded: {listed}")
        chosen.append(pick)
    if clashes:
        raise SubmissionError("two or more notebooks of the same student for this lab (pass --newest to grade "
                              "the newest of each, or remove the others): " + "; ".join(clashes))
    return chosen


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
