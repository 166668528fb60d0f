"""Find submissions, name their students, and turn bad input into clear statuses.

Inputs may be notebooks, folders of them (searched recursively) or ``.zip``
files (an LMS export). The student id comes from the file name:

>>> student_id(Path("alice.ipynb"), "01_backprop")
'alice'
>>> student_id(Path("doejane_1234_5678_01_backprop.ipynb"), "01_backprop")    # Canvas export
'doejane_1234'
>>> student_id(Path("submission_991/01_backprop.ipynb"), "01_backprop")        # one folder per student
'submission_991'
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

MAX_BYTES = 50 * 2**20
_CANVAS = re.compile(r"^(?P<name>[a-z0-9]+)_(?:late_)?(?P<user>\d+)_\d+_.+$", re.I)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

#: Statuses of submissions the grader could not run at all (they make the exit code non-zero).
BAD_INPUT = ("unreadable", "empty_file", "binary_file", "too_large", "invalid_json", "wrong_format",
             "wrong_lab", "duplicate_student")


@dataclass
class Submission:
    """One submitted notebook, read into memory, or the reason it could not be."""
    student: str
    origin: str                 # path, or "archive.zip:member"
    data: bytes = b""
    sha256: str = ""
    status: str = "pending"     # "pending" until validated; a BAD_INPUT status otherwise
    message: str = ""
    notebook: object = None
    extra: dict = field(default_factory=dict)


def student_id(path: Path, lab: str) -> str:
    """The student's id from a submission's file name (see the module docstring)."""
    stem = path.stem
    m = _CANVAS.match(stem)
    if m:
        stem = f"{m['name']}_{m['user']}"
    elif stem in (lab, f"{lab}-student", "submission", "notebook") and path.parent.name:
        stem = path.parent.name
    return _SAFE.sub("_", stem).strip("._") or "unnamed"


def _read_file(path: Path, lab: str) -> Submission:
    sub = Submission(student_id(path, lab), str(path))
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            sub.status, sub.message = "too_large", f"{size / 2**20:.0f} MB is over the {MAX_BYTES // 2**20} MB limit; clear the outputs and resubmit"
            sub.sha256 = "size:" + str(size)
            return sub
        sub.data = path.read_bytes()
    except OSError as e:
        sub.status, sub.message, sub.sha256 = "unreadable", f"cannot read {path}: {e.strerror}", "unreadable"
    return sub


def collect(inputs: list[str | Path], lab: str) -> list[Submission]:
    """Every submission found in ``inputs`` (files, folders, zips), in a stable order."""
    subs: list[Submission] = []
    for item in map(Path, inputs):
        if item.is_dir():
            for p in sorted(item.rglob("*")):
                if p.is_file() and ".ipynb_checkpoints" not in p.parts and p.suffix in (".ipynb", ".zip"):
                    subs += collect([p], lab) if p.suffix == ".zip" else [_read_file(p, lab)]
        elif item.suffix == ".zip" and item.is_file():
            subs += _read_zip(item, lab)
        else:
            subs.append(_read_file(item, lab))
    return subs


def _read_zip(path: Path, lab: str) -> list[Submission]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        return [Submission(_SAFE.sub("_", path.stem), str(path), status="unreadable", sha256="unreadable",
                           message=f"{path} is not a readable zip file: {e}")]
    out = []
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            name = Path(info.filename)
            if info.is_dir() or name.suffix != ".ipynb" or "__MACOSX" in name.parts or ".ipynb_checkpoints" in name.parts:
                continue
            sub = Submission(student_id(name, lab), f"{path}:{info.filename}")
            if info.file_size > MAX_BYTES:
                sub.status, sub.sha256 = "too_large", f"size:{info.file_size}"
                sub.message = f"{info.file_size / 2**20:.0f} MB is over the {MAX_BYTES // 2**20} MB limit"
            else:
                with zf.open(info) as f:
                    sub.data = f.read(MAX_BYTES + 1)   # never trust the header's size
                if len(sub.data) > MAX_BYTES:
                    sub.status, sub.data = "too_large", b""
                    sub.message, sub.sha256 = f"over the {MAX_BYTES // 2**20} MB limit", "size:big"
            out.append(sub)
    return out


def validate(sub: Submission, lab: str) -> Submission:
    """Parse and check one submission; sets ``status``/``message`` when it is bad input."""
    if sub.status != "pending":
        return sub
    sub.sha256 = hashlib.sha256(sub.data).hexdigest()
    if not sub.data.strip():
        sub.status, sub.message = "empty_file", "the file is empty; download the notebook again from JupyterLab and resubmit"
        return sub
    if b"\x00" in sub.data[:65536]:
        sub.status, sub.message = "binary_file", "the file is binary, not a notebook (.ipynb is JSON text)"
        return sub
    try:
        text = sub.data.decode("utf-8")
    except UnicodeDecodeError:
        sub.status, sub.message = "binary_file", "the file is not UTF-8 text, so it is not a notebook"
        return sub
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as e:
        sub.status, sub.message = "invalid_json", f"the file is not valid JSON ({str(e)[:200]}); was it edited by hand?"
        return sub
    if not isinstance(raw, dict) or "cells" not in raw or not isinstance(raw.get("nbformat"), int):
        sub.status, sub.message = "wrong_format", "the JSON is not a Jupyter notebook (no 'cells' or 'nbformat')"
        return sub
    if raw["nbformat"] != 4:
        sub.status, sub.message = "wrong_format", f"nbformat {raw['nbformat']} is not supported; save it with JupyterLab (nbformat 4)"
        return sub
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - nbformat raises several kinds
        sub.status, sub.message = "wrong_format", f"not a valid nbformat 4 notebook: {str(e).splitlines()[0][:300]}"
        return sub
    named = nb.metadata.get("autograder", {}).get("lab") if isinstance(nb.metadata.get("autograder"), dict) else None
    if named is not None and named != lab:
        sub.status, sub.message = "wrong_lab", f"this notebook is for lab {named!r}, not {lab!r}"
        return sub
    if named is None and not any(f'use_lab("{lab}")' in c.source or f"use_lab('{lab}')" in c.source
                                 for c in nb.cells if c.cell_type == "code"):
        sub.status, sub.message = "wrong_lab", f"this notebook does not look like lab {lab!r} (no lab metadata or use_lab cell)"
        return sub
    sub.notebook = nb
    return sub


def mark_duplicates(subs: list[Submission]) -> None:
    """Grade the first valid submission of each student; later valid ones get ``duplicate_student``."""
    first: dict[str, Submission] = {}
    for sub in subs:
        if sub.status != "pending":
            continue
        if sub.student in first:
            sub.status, sub.notebook = "duplicate_student", None
            sub.sha256 = f"{sub.sha256}:duplicate:{sub.origin}"   # its own gradebook key, never the graded one's
            sub.message = f"student {sub.student!r} also submitted {first[sub.student].origin}; only that one is graded"
        else:
            first[sub.student] = sub
